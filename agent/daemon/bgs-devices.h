/* bgs-devices.h: Bluetooth devices as the agent knows them.
 *
 * Follows BlueZ with a GDBusObjectManagerClient on org.bluez (on the main
 * context), works out each device's presence and model, and exports one
 * org.bgsync.Device1 object per device. bgsyncd starts fine without
 * bluetoothd and picks it up when it appears. */
#pragma once

#include <gio/gio.h>

#include "bgs-device-model.h"
#include "bgs-store.h"

G_BEGIN_DECLS

#define BGS_TYPE_DEVICES (bgs_devices_get_type ())
G_DECLARE_FINAL_TYPE (BgsDevices, bgs_devices, BGS, DEVICES, GObject)

typedef struct _BgsDevice BgsDevice;

/* @store (may be NULL) caches what the GATT Device Information Service of
 * each device said: read once, on its first connection (bgs-device-info.h) */
BgsDevices *bgs_devices_new (GDBusConnection *bluez_bus, GDBusConnection *export_bus,
			     BgsModelRegistry *models, BgsStore *store,
			     const char *const *adapters, gint64 lost_timeout_usec);
void bgs_devices_start (BgsDevices *self);
/* how long an adapter power-off waits for bluetoothd to leave (a restart)
 * before it counts as the user's and revokes tasks */
void bgs_devices_set_power_off_grace (BgsDevices *self, gint64 usec);
/* re-identifies every device (device metadata reloaded) */
void bgs_devices_rematch (BgsDevices *self);

/* by address ("AA:BB:..."), agent id or agent object path; prefers a
 * present device when an address is seen by several adapters */
BgsDevice *bgs_devices_lookup (BgsDevices *self, const char *key);
BgsDevice *bgs_devices_lookup_id (BgsDevices *self, const char *id);
/* element-type BgsDevice, unowned */
GPtrArray *bgs_devices_list (BgsDevices *self);

const char *bgs_device_get_id (BgsDevice *dev);          /* "hci0_AA_BB_CC_DD_EE_FF" */
const char *bgs_device_get_object_path (BgsDevice *dev); /* /org/bgsync/device/<id> */
const char *bgs_device_get_bluez_path (BgsDevice *dev);
const char *bgs_device_get_address (BgsDevice *dev);
const char *bgs_device_get_adapter (BgsDevice *dev);
const char *bgs_device_get_name (BgsDevice *dev);
const char *bgs_device_get_model_id (BgsDevice *dev);
const char *bgs_device_get_model_name (BgsDevice *dev);
/* NULL for an unidentified device (fallback model id) */
const BgsDeviceModel *bgs_device_get_model (BgsDevice *dev);
gboolean bgs_device_is_present (BgsDevice *dev);
gboolean bgs_device_is_connected (BgsDevice *dev);
/* adapter powered and device not blocked */
gboolean bgs_device_is_accessible (BgsDevice *dev);
/* Device1 properties as a{sv} (for GetDevices) */
GVariant *bgs_device_to_variant (BgsDevice *dev);

/* TRUE once BlueZ's objects were read (or BlueZ is known to be absent) */
gboolean bgs_devices_is_ready (BgsDevices *self);
/* calls @func once ready (at once if it is) */
void bgs_devices_when_ready (BgsDevices *self, GFunc func, gpointer data);

/* an advertisement monitor found (or lost) the device at @bluez_path */
void bgs_devices_set_monitor_seen (BgsDevices *self, const char *bluez_path, gboolean seen);
/* the adapter at @adapter_path is one bgsyncd may use (Adapters=) */
gboolean bgs_devices_adapter_allowed (BgsDevices *self, const char *adapter_path);

/* the BlueZ object manager client, NULL until BlueZ was first seen */
GDBusObjectManager *bgs_devices_get_object_manager (BgsDevices *self);
/* the BlueZ adapter object path of a device */
const char *bgs_device_get_adapter_path (BgsDevice *dev);

/* signals: "presence-changed" (const char *id, gboolean present),
 *          "removed" (const char *id, gboolean may_return): the device's
 *          object went away; may_return when it may come back (temporary
 *          device expired, bluetoothd restarting) rather than the user
 *          removing a paired device or its adapter going away
 *          "bluez-changed" (): bluetoothd or its adapters came or went */

G_END_DECLS
