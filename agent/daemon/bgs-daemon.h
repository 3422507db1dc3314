/* bgs-daemon.h: bgsyncd's core object — the bus front and the request flow.
 *
 * Owns the modules (store, engine, registries, monitors, devices, agents),
 * exports org.bgsync.Manager1 and the Task1 objects, and turns D-Bus calls
 * into policy decisions and running instances. */
#pragma once

#include <gio/gio.h>

#include "bgs-config.h"

G_BEGIN_DECLS

#define BGS_TYPE_DAEMON (bgs_daemon_get_type ())
G_DECLARE_FINAL_TYPE (BgsDaemon, bgs_daemon, BGS, DAEMON, GObject)

/* @bus: where org.bgsync is served; @system_bus: where logind, UPower and
 * BlueZ live. Opens the store (a corrupt one is an error) and exports the
 * objects, but does not own the name. */
BgsDaemon *bgs_daemon_new (const BgsConfig *config, GDBusConnection *bus,
			   GDBusConnection *system_bus, GError **error);
/* cancels every instance (reason terminating, recorded), releases agents */
void bgs_daemon_shutdown (BgsDaemon *self);

G_END_DECLS
