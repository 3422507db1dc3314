/* bgs-device-info.c: GATT Device Information Service reads and cache */
#include "bgs-device-info.h"

#include <stdio.h>
#include <string.h>

#include "bgs-error.h"

#define GATT_SERVICE_IFACE "org.bluez.GattService1"
#define GATT_CHRC_IFACE "org.bluez.GattCharacteristic1"
#define DIS_UUID "0000180a-0000-1000-8000-00805f9b34fb"
#define MANUFACTURER_UUID "00002a29-0000-1000-8000-00805f9b34fb"
#define MODEL_UUID "00002a24-0000-1000-8000-00805f9b34fb"
#define PNP_UUID "00002a50-0000-1000-8000-00805f9b34fb"
#define DIS_STRING_MAX 64

/* store keys */
#define KEY_STATE "dis"              /* "read" or "none" */
#define KEY_PNP "dis-pnp"            /* "<source>:<vendor>:<product>:<version>", hex */
#define KEY_MANUFACTURER "dis-manufacturer"
#define KEY_MODEL "dis-model"

void
bgs_device_info_free (BgsDeviceInfo *info)
{
	if (info == NULL)
		return;
	g_free (info->manufacturer);
	g_free (info->model);
	g_free (info);
}

gboolean
bgs_pnp_id_parse (const guint8 *data, gsize len, guint8 *source, guint16 *vendor,
		  guint16 *product, guint16 *version)
{
	if (data == NULL || len != 7)
		return FALSE;
	if (data[0] != 1 && data[0] != 2)
		return FALSE;
	*source = data[0];
	*vendor = (guint16) (data[1] | (data[2] << 8));
	*product = (guint16) (data[3] | (data[4] << 8));
	*version = (guint16) (data[5] | (data[6] << 8));
	return TRUE;
}

gboolean
bgs_pnp_id_parse_variant (GVariant *value, guint8 *source, guint16 *vendor,
			  guint16 *product, guint16 *version)
{
	gsize len = 0;
	const guint8 *data;

	if (value == NULL || !g_variant_is_of_type (value, G_VARIANT_TYPE_BYTESTRING))
		return FALSE;
	data = g_variant_get_fixed_array (value, &len, 1);
	return bgs_pnp_id_parse (data, len, source, vendor, product, version);
}

char *
bgs_dis_string_sanitize (const guint8 *data, gsize len)
{
	g_autoptr(GString) out = NULL;
	g_autofree char *valid = NULL;
	const char *p;

	if (data == NULL || len == 0)
		return NULL;
	/* a DIS string may carry a trailing NUL: stop there */
	for (gsize i = 0; i < len; i++) {
		if (data[i] == 0) {
			len = i;
			break;
		}
	}
	valid = g_utf8_make_valid ((const char *) data, (gssize) len);
	out = g_string_new (NULL);
	for (p = valid; *p != '\0'; p = g_utf8_next_char (p)) {
		gunichar c = g_utf8_get_char (p);
		gsize clen = (gsize) (g_utf8_next_char (p) - p);

		if (g_unichar_iscntrl (c) || c == 0xfffd)
			continue;
		if (out->len + clen > DIS_STRING_MAX)
			break;
		g_string_append_len (out, p, (gssize) clen);
	}
	g_strstrip (out->str);
	if (out->str[0] == '\0')
		return NULL;
	return g_strdup (out->str);
}

/* ---- reading ---- */

typedef enum { READ_MANUFACTURER, READ_MODEL, READ_PNP, N_READS } ReadKind;

static const char *const read_uuids[N_READS] = { MANUFACTURER_UUID, MODEL_UUID, PNP_UUID };

typedef struct {
	BgsDeviceInfo *info;
	guint pending;
	guint failed;       /* reads that failed (not malformed: failed) */
	guint started;
	GError *first_error;
} ReadData;

static void
read_data_free (ReadData *d)
{
	bgs_device_info_free (d->info);
	g_clear_error (&d->first_error);
	g_free (d);
}

static char *
proxy_string (GDBusProxy *proxy, const char *name)
{
	g_autoptr(GVariant) v = g_dbus_proxy_get_cached_property (proxy, name);

	if (v == NULL || !g_variant_is_of_type (v, G_VARIANT_TYPE_STRING))
		return NULL;
	return g_ascii_strdown (g_variant_get_string (v, NULL), -1);
}

static char *
proxy_path (GDBusProxy *proxy, const char *name)
{
	g_autoptr(GVariant) v = g_dbus_proxy_get_cached_property (proxy, name);

	if (v == NULL || !g_variant_is_of_type (v, G_VARIANT_TYPE_OBJECT_PATH))
		return NULL;
	return g_variant_dup_string (v, NULL);
}

static void
read_finish_one (GTask *task)
{
	ReadData *d = g_task_get_task_data (task);

	if (--d->pending > 0)
		return;
	/* every read failing (rather than being malformed) is a transport
	 * problem: tell the caller so it tries again on another connection */
	if (d->started > 0 && d->failed == d->started && d->first_error != NULL) {
		g_task_return_error (task, g_steal_pointer (&d->first_error));
		return;
	}
	g_task_return_pointer (task, g_steal_pointer (&d->info),
			       (GDestroyNotify) bgs_device_info_free);
}

typedef struct {
	GTask *task;
	ReadKind kind;
} ReadOne;

static void
read_one_cb (GObject *source, GAsyncResult *res, gpointer user_data)
{
	ReadOne *one = user_data;
	g_autoptr(GTask) task = one->task;
	ReadKind kind = one->kind;
	ReadData *d = g_task_get_task_data (task);
	g_autoptr(GError) error = NULL;
	g_autoptr(GVariant) reply = NULL;
	g_autoptr(GVariant) value = NULL;

	g_free (one);
	reply = g_dbus_connection_call_finish (G_DBUS_CONNECTION (source), res, &error);
	if (reply == NULL) {
		g_debug ("DIS read of %s failed: %s", read_uuids[kind], error->message);
		d->failed++;
		if (d->first_error == NULL)
			d->first_error = g_steal_pointer (&error);
		read_finish_one (task);
		return;
	}
	/* the reply type is checked by GDBus ("(ay)"), the content is not */
	g_variant_get (reply, "(@ay)", &value);
	if (kind == READ_PNP) {
		BgsDeviceInfo *info = d->info;

		if (bgs_pnp_id_parse_variant (value, &info->vendor_source, &info->vendor,
					      &info->product, &info->version))
			info->has_pnp = TRUE;
		else
			g_debug ("ignoring a malformed PnP ID (%" G_GSIZE_FORMAT " bytes)",
				 g_variant_get_size (value));
	} else {
		gsize len = 0;
		const guint8 *data = g_variant_get_fixed_array (value, &len, 1);
		char *s = bgs_dis_string_sanitize (data, len);

		if (kind == READ_MANUFACTURER) {
			g_free (d->info->manufacturer);
			d->info->manufacturer = s;
		} else {
			g_free (d->info->model);
			d->info->model = s;
		}
	}
	read_finish_one (task);
}

void
bgs_device_info_read_async (GDBusObjectManager *manager, GDBusConnection *bus,
			    const char *device_path, guint timeout_msec,
			    GCancellable *cancellable, GAsyncReadyCallback callback,
			    gpointer user_data)
{
	g_autoptr(GTask) task = g_task_new (NULL, cancellable, callback, user_data);
	g_autofree char *prefix = g_strconcat (device_path, "/", NULL);
	g_autofree char *service = NULL;
	char *chrc_paths[N_READS] = { NULL };
	const char *bus_name;
	ReadData *d;
	GList *objects;

	g_task_set_source_tag (task, bgs_device_info_read_async);
	if (manager == NULL) {
		g_task_return_new_error (task, BGS_ERROR, BGS_ERROR_FAILED, "BlueZ is not there");
		return;
	}
	bus_name = g_dbus_object_manager_client_get_name (G_DBUS_OBJECT_MANAGER_CLIENT (manager));
	objects = g_dbus_object_manager_get_objects (manager);
	for (GList *l = objects; l != NULL && service == NULL; l = l->next) {
		const char *path = g_dbus_object_get_object_path (l->data);
		g_autoptr(GDBusInterface) iface = NULL;
		g_autofree char *uuid = NULL;

		if (!g_str_has_prefix (path, prefix))
			continue;
		iface = g_dbus_object_get_interface (l->data, GATT_SERVICE_IFACE);
		if (iface == NULL)
			continue;
		uuid = proxy_string (G_DBUS_PROXY (iface), "UUID");
		if (g_strcmp0 (uuid, DIS_UUID) == 0)
			service = g_strdup (path);
	}
	for (GList *l = objects; l != NULL && service != NULL; l = l->next) {
		const char *path = g_dbus_object_get_object_path (l->data);
		g_autoptr(GDBusInterface) iface = NULL;
		g_autofree char *uuid = NULL;
		g_autofree char *owner = NULL;

		if (!g_str_has_prefix (path, prefix))
			continue;
		iface = g_dbus_object_get_interface (l->data, GATT_CHRC_IFACE);
		if (iface == NULL)
			continue;
		owner = proxy_path (G_DBUS_PROXY (iface), "Service");
		if (g_strcmp0 (owner, service) != 0)
			continue;
		uuid = proxy_string (G_DBUS_PROXY (iface), "UUID");
		for (guint k = 0; k < N_READS; k++) {
			if (chrc_paths[k] == NULL && g_strcmp0 (uuid, read_uuids[k]) == 0)
				chrc_paths[k] = g_strdup (path);
		}
	}
	g_list_free_full (objects, g_object_unref);
	if (service == NULL) {
		for (guint k = 0; k < N_READS; k++)
			g_free (chrc_paths[k]);
		g_task_return_new_error (task, BGS_ERROR, BGS_ERROR_NOT_FOUND,
					 "%s has no Device Information Service", device_path);
		return;
	}

	d = g_new0 (ReadData, 1);
	d->info = g_new0 (BgsDeviceInfo, 1);
	d->pending = 1; /* held until every read is started */
	g_task_set_task_data (task, d, (GDestroyNotify) read_data_free);
	for (guint k = 0; k < N_READS; k++) {
		ReadOne *one;

		if (chrc_paths[k] == NULL)
			continue;
		one = g_new0 (ReadOne, 1);
		one->task = g_object_ref (task);
		one->kind = k;
		d->pending++;
		d->started++;
		g_dbus_connection_call (bus, bus_name, chrc_paths[k], GATT_CHRC_IFACE, "ReadValue",
					g_variant_new ("(a{sv})", NULL), G_VARIANT_TYPE ("(ay)"),
					G_DBUS_CALL_FLAGS_NONE, (gint) timeout_msec, cancellable,
					read_one_cb, one);
	}
	for (guint k = 0; k < N_READS; k++)
		g_free (chrc_paths[k]);
	read_finish_one (task);
}

BgsDeviceInfo *
bgs_device_info_read_finish (GAsyncResult *res, GError **error)
{
	return g_task_propagate_pointer (G_TASK (res), error);
}

/* ---- cache ---- */

gboolean
bgs_device_info_load (BgsStore *store, const char *device_key, BgsDeviceInfo **info)
{
	g_autoptr(GError) error = NULL;
	g_autofree char *state = NULL;
	g_autofree char *pnp = NULL;
	g_autoptr(BgsDeviceInfo) out = NULL;

	*info = NULL;
	if (store == NULL || device_key == NULL)
		return FALSE;
	state = bgs_store_get_device_info (store, device_key, KEY_STATE, &error);
	if (state == NULL) {
		if (error != NULL)
			g_warning ("cannot read the device cache of %s: %s", device_key,
				   error->message);
		return FALSE;
	}
	if (g_strcmp0 (state, "none") == 0)
		return TRUE;
	if (g_strcmp0 (state, "read") != 0) {
		g_debug ("ignoring an unknown device cache state '%s' of %s", state, device_key);
		return FALSE;
	}
	out = g_new0 (BgsDeviceInfo, 1);
	pnp = bgs_store_get_device_info (store, device_key, KEY_PNP, NULL);
	if (pnp != NULL) {
		guint s, v, p, ver;
		char tail;

		if (sscanf (pnp, "%2x:%4x:%4x:%4x%c", &s, &v, &p, &ver, &tail) == 4 &&
		    (s == 1 || s == 2)) {
			out->has_pnp = TRUE;
			out->vendor_source = (guint8) s;
			out->vendor = (guint16) v;
			out->product = (guint16) p;
			out->version = (guint16) ver;
		} else {
			g_debug ("ignoring a malformed cached PnP ID '%s' of %s", pnp, device_key);
		}
	}
	out->manufacturer = bgs_store_get_device_info (store, device_key, KEY_MANUFACTURER, NULL);
	out->model = bgs_store_get_device_info (store, device_key, KEY_MODEL, NULL);
	*info = g_steal_pointer (&out);
	return TRUE;
}

gboolean
bgs_device_info_save (BgsStore *store, const char *device_key, const BgsDeviceInfo *info,
		      GError **error)
{
	g_autofree char *pnp = NULL;

	if (info != NULL && info->has_pnp)
		pnp = g_strdup_printf ("%02x:%04x:%04x:%04x", info->vendor_source, info->vendor,
				       info->product, info->version);
	/* the state last: a half-written cache reads as nothing cached */
	if (!bgs_store_set_device_info (store, device_key, KEY_PNP, pnp, error) ||
	    !bgs_store_set_device_info (store, device_key, KEY_MANUFACTURER,
					info != NULL ? info->manufacturer : NULL, error) ||
	    !bgs_store_set_device_info (store, device_key, KEY_MODEL,
					info != NULL ? info->model : NULL, error))
		return FALSE;
	return bgs_store_set_device_info (store, device_key, KEY_STATE,
					  info != NULL ? "read" : "none", error);
}
