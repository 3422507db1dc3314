/* bgs-device-info.h: the GATT Device Information Service (0x180A) of a
 * connected device, read through BlueZ's GATT objects, and its cache in the
 * store.
 *
 * Read once: bgs-devices.c reads it the first time a device is connected
 * with its services resolved, caches the result (also "no DIS") under the
 * device's address, and uses the cache from then on. Never connects. */
#pragma once

#include <gio/gio.h>

#include "bgs-store.h"

G_BEGIN_DECLS

typedef struct {
	gboolean has_pnp;
	guint8 vendor_source;  /* 1 bluetooth SIG, 2 USB-IF */
	guint16 vendor, product, version;
	char *manufacturer;    /* 0x2A29, sanitised UTF-8 or NULL */
	char *model;           /* 0x2A24, sanitised UTF-8 or NULL */
} BgsDeviceInfo;

void bgs_device_info_free (BgsDeviceInfo *info);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (BgsDeviceInfo, bgs_device_info_free)

/* PnP ID characteristic value: exactly 7 bytes, source u8, vendor, product,
 * version u16 little endian; vendor source 1 or 2. FALSE for anything else. */
gboolean bgs_pnp_id_parse (const guint8 *data, gsize len, guint8 *source, guint16 *vendor,
			   guint16 *product, guint16 *version);
/* same from a GVariant that must be "ay" */
gboolean bgs_pnp_id_parse_variant (GVariant *value, guint8 *source, guint16 *vendor,
				   guint16 *product, guint16 *version);
/* a DIS string (not NUL terminated on the air): valid UTF-8, no control
 * characters, at most 64 bytes, trimmed. NULL when nothing is left. */
char *bgs_dis_string_sanitize (const guint8 *data, gsize len);

/* reads DIS of the device at @device_path from the GATT objects @manager
 * knows; each ReadValue is bounded by @timeout_msec. Fails with
 * BGS_ERROR_NOT_FOUND when the device has no DIS (a result to cache), other
 * errors (disconnected, timeout) are worth another try on the next
 * connection. A DIS with unreadable or malformed characteristics gives an
 * info with those fields unset. */
void bgs_device_info_read_async (GDBusObjectManager *manager, GDBusConnection *bus,
				 const char *device_path, guint timeout_msec,
				 GCancellable *cancellable, GAsyncReadyCallback callback,
				 gpointer user_data);
BgsDeviceInfo *bgs_device_info_read_finish (GAsyncResult *res, GError **error);

/* the cache. @device_key: the device address (upper case); it is what we
 * have that survives restarts (a device with a resolvable private address
 * changes it and is simply read again). TRUE + *@info NULL: cached "this
 * device has no DIS"; FALSE: nothing cached (or unreadable). */
gboolean bgs_device_info_load (BgsStore *store, const char *device_key, BgsDeviceInfo **info);
/* @info NULL caches "no DIS" */
gboolean bgs_device_info_save (BgsStore *store, const char *device_key,
			       const BgsDeviceInfo *info, GError **error);

G_END_DECLS
