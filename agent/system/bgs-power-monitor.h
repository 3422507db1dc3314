/* bgs-power-monitor.h: UPower facts from the system bus.
 *
 * on_battery: UPower's OnBattery, but only when its DisplayDevice is a
 * present battery (or UPS); percent: that device's Percentage. No UPower,
 * no battery or not loaded yet all read as mains power at 100 %.
 *
 * The state loads asynchronously after bgs_power_monitor_new(); wait for
 * it with bgs_power_monitor_ready_async() (completes once the first load
 * finished, whether UPower is there or not). Afterwards UPower appearing,
 * vanishing or changing emits "changed" (void) when on_battery or percent
 * changed. No polling: a name watch and PropertiesChanged only. */
#pragma once

#include <gio/gio.h>

G_BEGIN_DECLS

#define BGS_TYPE_POWER_MONITOR (bgs_power_monitor_get_type ())
G_DECLARE_FINAL_TYPE (BgsPowerMonitor, bgs_power_monitor, BGS, POWER_MONITOR, GObject)

/* @system_bus: NULL gets the system bus asynchronously */
BgsPowerMonitor *bgs_power_monitor_new (GDBusConnection *system_bus);

void bgs_power_monitor_ready_async (BgsPowerMonitor *self, GCancellable *cancellable,
				    GAsyncReadyCallback callback, gpointer user_data);
/* FALSE only when canceled */
gboolean bgs_power_monitor_ready_finish (BgsPowerMonitor *self, GAsyncResult *result,
					 GError **error);
gboolean bgs_power_monitor_is_ready (BgsPowerMonitor *self);

/* either out argument may be NULL */
void bgs_power_monitor_get_state (BgsPowerMonitor *self, gboolean *on_battery, gdouble *percent);

G_END_DECLS
