/* bgs-network-monitor.h: the "network" condition.
 *
 * A thin wrapper of GNetworkMonitor:network-available that emits "changed"
 * (void) only when availability actually flips (GNetworkMonitor's own
 * network-changed fires on every route change). */
#pragma once

#include <gio/gio.h>

G_BEGIN_DECLS

#define BGS_TYPE_NETWORK_MONITOR (bgs_network_monitor_get_type ())
G_DECLARE_FINAL_TYPE (BgsNetworkMonitor, bgs_network_monitor, BGS, NETWORK_MONITOR, GObject)

/* @monitor: NULL uses g_network_monitor_get_default() */
BgsNetworkMonitor *bgs_network_monitor_new (GNetworkMonitor *monitor);
gboolean bgs_network_monitor_get_available (BgsNetworkMonitor *self);

G_END_DECLS
