/* bgs-presence.h: watching for known devices in range, only when needed */
#pragma once

#include "bgs-config.h"
#include "bgs-device-model.h"
#include "bgs-devices.h"

G_BEGIN_DECLS

#define BGS_TYPE_PRESENCE (bgs_presence_get_type ())
G_DECLARE_FINAL_TYPE (BgsPresence, bgs_presence, BGS, PRESENCE, GObject)

BgsPresence *bgs_presence_new (GDBusConnection *bluez_bus, BgsDevices *devices,
			       BgsModelRegistry *models, const BgsConfig *config);
/* something needs presence (a registered device task, a running one) */
void bgs_presence_set_needed (BgsPresence *self, gboolean needed);
void bgs_presence_refresh (BgsPresence *self);
gboolean bgs_presence_is_scanning (BgsPresence *self);

G_END_DECLS
