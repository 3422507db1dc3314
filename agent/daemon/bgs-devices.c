/* bgs-devices.c: devices from BlueZ, their presence and model */
#include "bgs-devices.h"

#include "bgs-dbus.h"
#include "bgs-device-info.h"
#include "bgs-error.h"

#define BLUEZ_NAME "org.bluez"
#define ADAPTER_IFACE "org.bluez.Adapter1"
#define DEVICE_IFACE "org.bluez.Device1"
/* each DIS ReadValue; BlueZ's own ATT timeout is 30 s */
#define DIS_READ_TIMEOUT_MSEC 10000
#define DIS_RETRY_SETTLE_MSEC 500

/* where a device stands with its Device Information Service */
typedef enum {
	DIS_UNKNOWN,   /* not cached: read on the next connection */
	DIS_READING,
	DIS_RETRY,     /* a read failed on this connection: try on the next */
	DIS_KNOWN,     /* cached (possibly "no DIS") */
} DisState;

struct _BgsDevice {
	BgsDevices *devices; /* unowned */
	char *id;
	char *object_path;
	char *bluez_path;
	char *adapter;       /* "hci0" */
	char *adapter_path;
	char *address;
	char *name;
	char *model_id;
	char *model_name;
	BgsDeviceModel *model; /* owned ref, NULL when unidentified */
	DisState dis_state;
	BgsDeviceInfo *dis;  /* NULL when unknown or the device has none */
	GCancellable *dis_cancel;
	guint dis_retry_id;  /* DIS not found yet: look again once services settle */
	gboolean services_resolved;
	gboolean connected;
	gboolean blocked;
	gboolean paired;
	gboolean sighted;    /* seen advertising within the lost timeout */
	gboolean monitored;  /* an advertisement monitor reports it found */
	gint16 rssi;
	guint64 last_seen;   /* unix usec */
	gboolean present;
	guint lost_timer;
	BgsDBusDevice1 *skeleton;
};

struct _BgsDevices {
	GObject parent_instance;
	GDBusConnection *bluez_bus;
	guint signal_filter;
	GDBusConnection *export_bus;
	BgsModelRegistry *models;
	BgsStore *store;     /* the DIS cache, may be NULL */
	char **adapters;
	gint64 lost_timeout;
	GDBusObjectManager *manager;
	GHashTable *devices; /* bluez path -> BgsDevice */
	GHashTable *monitored; /* bluez paths found by a monitor */
	GHashTable *power_off; /* adapter path -> grace timer id */
	gint64 power_off_grace; /* usec */
	gboolean ready;
	GPtrArray *waiters;    /* (GFunc, data) pairs */
};

enum { SIGNAL_PRESENCE_CHANGED, SIGNAL_REMOVED, SIGNAL_BLUEZ_CHANGED, SIGNAL_LAST };
static guint signals[SIGNAL_LAST];

G_DEFINE_TYPE (BgsDevices, bgs_devices, G_TYPE_OBJECT)

static void
device_free (BgsDevice *dev)
{
	if (dev->lost_timer != 0)
		g_source_remove (dev->lost_timer);
	if (dev->dis_retry_id != 0)
		g_source_remove (dev->dis_retry_id);
	if (dev->dis_cancel != NULL) {
		g_cancellable_cancel (dev->dis_cancel);
		g_object_unref (dev->dis_cancel);
	}
	bgs_device_info_free (dev->dis);
	if (dev->skeleton != NULL) {
		if (g_dbus_interface_skeleton_get_connection (G_DBUS_INTERFACE_SKELETON (dev->skeleton)) != NULL)
			g_dbus_interface_skeleton_unexport (G_DBUS_INTERFACE_SKELETON (dev->skeleton));
		g_object_unref (dev->skeleton);
	}
	g_clear_pointer (&dev->model, bgs_device_model_unref);
	g_free (dev->id);
	g_free (dev->object_path);
	g_free (dev->bluez_path);
	g_free (dev->adapter);
	g_free (dev->adapter_path);
	g_free (dev->address);
	g_free (dev->name);
	g_free (dev->model_id);
	g_free (dev->model_name);
	g_free (dev);
}

/* typed reads of BlueZ properties: BlueZ is untrusted input too */
static GVariant *
proxy_prop (GDBusProxy *proxy, const char *name, const GVariantType *type)
{
	g_autoptr(GVariant) v = g_dbus_proxy_get_cached_property (proxy, name);

	if (v == NULL || !g_variant_is_of_type (v, type))
		return NULL;
	return g_steal_pointer (&v);
}

static gboolean
prop_bool (GDBusProxy *proxy, const char *name)
{
	g_autoptr(GVariant) v = proxy_prop (proxy, name, G_VARIANT_TYPE_BOOLEAN);

	return v != NULL && g_variant_get_boolean (v);
}

static char *
prop_string (GDBusProxy *proxy, const char *name)
{
	g_autoptr(GVariant) v = proxy_prop (proxy, name, G_VARIANT_TYPE_STRING);

	if (v == NULL)
		return NULL;
	return g_variant_dup_string (v, NULL);
}

static GDBusProxy *
get_proxy (BgsDevices *self, const char *path, const char *iface)
{
	GDBusInterface *i;

	if (self->manager == NULL)
		return NULL;
	i = g_dbus_object_manager_get_interface (self->manager, path, iface);
	return i != NULL ? G_DBUS_PROXY (i) : NULL;
}

static gboolean
adapter_allowed (BgsDevices *self, const char *adapter)
{
	if (self->adapters == NULL || self->adapters[0] == NULL)
		return TRUE;
	return g_strv_contains ((const char *const *) self->adapters, adapter);
}

static gboolean
adapter_powered (BgsDevices *self, const char *adapter_path)
{
	g_autoptr(GDBusProxy) adapter = get_proxy (self, adapter_path, ADAPTER_IFACE);

	return adapter != NULL && prop_bool (adapter, "Powered");
}

static gboolean
adapter_discovering (BgsDevices *self, const char *adapter_path)
{
	g_autoptr(GDBusProxy) adapter = get_proxy (self, adapter_path, ADAPTER_IFACE);

	return adapter != NULL && prop_bool (adapter, "Discovering");
}

/* The order the issue asks for (metadata rules, then Modalias, then DIS,
 * then manufacturer data, then service UUIDs) comes from two places:
 * - any [Match] rule of a metadata file wins over every built-in way of
 *   naming a device: the registry is asked first, the fallback id only
 *   when no rule matched;
 * - between rules, BgsModelRegistry ranks Modalias= and Vendor=/Product=
 *   highest; a Vendor= rule looks at the Modalias first and at the DIS PnP
 *   ID only when the Modalias does not match, so Modalias comes before DIS.
 *   Below that the registry ranks ServiceUUIDs= over ManufacturerData=
 *   (doc/manifests.md), the reverse of the list;
 * - the fallback id likewise takes the Modalias, else the DIS PnP ID
 *   ("pnp-bluetooth-05f1-5742"), before name, service UUIDs and
 *   manufacturer data. */
static void
device_identify (BgsDevices *self, BgsDevice *dev, GDBusProxy *proxy)
{
	BgsDeviceFacts facts = { 0 };
	g_autofree char *modalias = prop_string (proxy, "Modalias");
	g_autoptr(GVariant) uuids_v = proxy_prop (proxy, "UUIDs", G_VARIANT_TYPE_STRING_ARRAY);
	g_autoptr(GVariant) mfr = proxy_prop (proxy, "ManufacturerData", G_VARIANT_TYPE ("a{qv}"));
	g_autofree const char **uuids = NULL;
	const BgsDeviceModel *model;

	facts.address = dev->address;
	facts.name = dev->name;
	facts.modalias = modalias;
	if (uuids_v != NULL)
		uuids = g_variant_get_strv (uuids_v, NULL);
	facts.uuids = uuids;
	facts.manufacturer_data = mfr;
	if (dev->dis != NULL && dev->dis->has_pnp) {
		facts.dis_vendor_source = dev->dis->vendor_source;
		facts.dis_vendor = dev->dis->vendor;
		facts.dis_product = dev->dis->product;
	}
	if (dev->dis != NULL) {
		facts.dis_manufacturer = dev->dis->manufacturer;
		facts.dis_model = dev->dis->model;
	}

	model = bgs_model_registry_match (self->models, &facts);
	g_clear_pointer (&dev->model, bgs_device_model_unref);
	g_free (dev->model_id);
	g_free (dev->model_name);
	if (model != NULL) {
		dev->model = bgs_device_model_ref (model);
		dev->model_id = g_strdup (model->id);
		dev->model_name = g_strdup (model->name);
	} else {
		dev->model_id = bgs_device_model_fallback_id (&facts);
		if (dev->dis != NULL && dev->dis->model != NULL)
			dev->model_name = dev->dis->manufacturer != NULL
				? g_strdup_printf ("%s %s", dev->dis->manufacturer, dev->dis->model)
				: g_strdup (dev->dis->model);
		else
			dev->model_name = g_strdup (dev->name != NULL ? dev->name : dev->model_id);
	}
}

static void device_update_presence (BgsDevices *self, BgsDevice *dev);

static gboolean
lost_timer_cb (gpointer user_data)
{
	BgsDevice *dev = user_data;

	dev->lost_timer = 0;
	dev->sighted = FALSE;
	device_update_presence (dev->devices, dev);
	return G_SOURCE_REMOVE;
}

static void
device_sighting (BgsDevices *self, BgsDevice *dev)
{
	dev->sighted = TRUE;
	dev->last_seen = g_get_real_time ();
	/* one timer per sighted device, re-armed on the next sighting */
	if (dev->lost_timer != 0)
		g_source_remove (dev->lost_timer);
	dev->lost_timer = g_timeout_add_full (G_PRIORITY_DEFAULT,
					      (guint) MAX (self->lost_timeout / 1000, 1),
					      lost_timer_cb, dev, NULL);
}

static void
device_sync_skeleton (BgsDevice *dev)
{
	BgsDBusDevice1 *s = dev->skeleton;

	if (s == NULL)
		return;
	bgs_dbus_device1_set_address (s, dev->address);
	bgs_dbus_device1_set_name (s, dev->name != NULL ? dev->name : "");
	bgs_dbus_device1_set_adapter (s, dev->adapter);
	bgs_dbus_device1_set_model (s, dev->model_id);
	bgs_dbus_device1_set_model_name (s, dev->model_name);
	bgs_dbus_device1_set_present (s, dev->present);
	bgs_dbus_device1_set_connected (s, dev->connected);
	bgs_dbus_device1_set_rssi (s, dev->rssi);
	bgs_dbus_device1_set_last_seen (s, dev->last_seen);
}

static void
device_update_presence (BgsDevices *self, BgsDevice *dev)
{
	gboolean present = dev->connected || dev->sighted || dev->monitored;

	if (dev->connected)
		dev->last_seen = g_get_real_time ();
	device_sync_skeleton (dev);
	if (present == dev->present)
		return;
	dev->present = present;
	bgs_dbus_device1_set_present (dev->skeleton, present);
	g_info ("device %s (%s) %s", dev->address, dev->model_id,
		present ? "present" : "no longer present");
	g_signal_emit (self, signals[SIGNAL_PRESENCE_CHANGED], 0, dev->id, present);
}

/* identifies again and shows the result on Device1 */
static void
device_reidentify (BgsDevices *self, BgsDevice *dev)
{
	g_autoptr(GDBusProxy) proxy = get_proxy (self, dev->bluez_path, DEVICE_IFACE);
	g_autofree char *old = NULL;

	if (proxy == NULL)
		return;
	old = g_strdup (dev->model_id);
	device_identify (self, dev, proxy);
	device_sync_skeleton (dev);
	if (g_strcmp0 (old, dev->model_id) != 0)
		g_info ("device %s on %s: model %s (was %s)", dev->address, dev->adapter,
			dev->model_id, old);
}

typedef struct {
	BgsDevices *self;
	char *bluez_path;
	GCancellable *cancel;
} DisRead;

static void
dis_read_free (DisRead *r)
{
	g_object_unref (r->self);
	g_free (r->bluez_path);
	g_object_unref (r->cancel);
	g_free (r);
}

static void
dis_read_cb (GObject *source, GAsyncResult *res, gpointer user_data)
{
	DisRead *r = user_data;
	BgsDevices *self = r->self;
	BgsDevice *dev;
	g_autoptr(GError) error = NULL;
	g_autoptr(BgsDeviceInfo) info = bgs_device_info_read_finish (res, &error);
	g_autoptr(GError) store_error = NULL;
	g_autofree char *address = NULL;
	GHashTableIter iter;
	gpointer value;

	dev = g_hash_table_lookup (self->devices, r->bluez_path);
	/* the device went away or this read was superseded */
	if (dev == NULL || dev->dis_cancel != r->cancel ||
	    g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED)) {
		dis_read_free (r);
		return;
	}
	g_clear_object (&dev->dis_cancel);
	dis_read_free (r);
	/* no DIS among the objects (yet): bluetoothd 5.66 said ServicesResolved
	 * before it had exported them again (VM tier); look again once a GATT
	 * object of the device appears, or on the next connection */
	if (info == NULL && g_error_matches (error, BGS_ERROR, BGS_ERROR_NOT_FOUND) &&
	    dev->connected) {
		g_debug ("device %s: %s, for now", dev->address, error->message);
		dev->dis_state = DIS_RETRY;
		return;
	}
	if (info == NULL && !g_error_matches (error, BGS_ERROR, BGS_ERROR_NOT_FOUND)) {
		g_debug ("device %s: cannot read its Device Information: %s", dev->address,
			 error->message);
		dev->dis_state = dev->connected ? DIS_RETRY : DIS_UNKNOWN;
		return;
	}
	if (info != NULL)
		g_debug ("device %s: DIS PnP ID %s%u:%04x:%04x:%04x, '%s' '%s'", dev->address,
			 info->has_pnp ? "" : "(none) ", info->vendor_source, info->vendor,
			 info->product, info->version,
			 info->manufacturer != NULL ? info->manufacturer : "",
			 info->model != NULL ? info->model : "");
	else
		g_debug ("device %s: %s", dev->address, error->message);
	if (self->store != NULL &&
	    !bgs_device_info_save (self->store, dev->address, info, &store_error))
		g_warning ("cannot cache the Device Information of %s: %s", dev->address,
			   store_error->message);
	/* the cache is per address: every adapter's view of it learns it */
	address = g_strdup (dev->address);
	g_hash_table_iter_init (&iter, self->devices);
	while (g_hash_table_iter_next (&iter, NULL, &value)) {
		BgsDevice *d = value;

		if (g_strcmp0 (d->address, address) != 0 || d->dis_state == DIS_READING)
			continue;
		bgs_device_info_free (d->dis);
		d->dis = NULL;
		if (info != NULL) {
			d->dis = g_new0 (BgsDeviceInfo, 1);
			*d->dis = *info;
			d->dis->manufacturer = g_strdup (info->manufacturer);
			d->dis->model = g_strdup (info->model);
		}
		d->dis_state = DIS_KNOWN;
		device_reidentify (self, d);
	}
	if (dev->dis_state == DIS_READING) {
		dev->dis = g_steal_pointer (&info);
		dev->dis_state = DIS_KNOWN;
		device_reidentify (self, dev);
	}
}

/* read once: on the first connection with resolved services of a device
 * whose DIS is not cached. Never connects by itself. */
static void
device_maybe_read_dis (BgsDevices *self, BgsDevice *dev)
{
	DisRead *r;

	if (!dev->connected)
		dev->services_resolved = FALSE;
	if (dev->dis_state == DIS_RETRY && !dev->connected)
		dev->dis_state = DIS_UNKNOWN;
	if (dev->dis_state != DIS_UNKNOWN || !dev->services_resolved || self->manager == NULL)
		return;
	dev->dis_state = DIS_READING;
	g_clear_object (&dev->dis_cancel);
	dev->dis_cancel = g_cancellable_new ();
	r = g_new0 (DisRead, 1);
	r->self = g_object_ref (self);
	r->bluez_path = g_strdup (dev->bluez_path);
	r->cancel = g_object_ref (dev->dis_cancel);
	g_debug ("device %s: reading its Device Information", dev->address);
	bgs_device_info_read_async (self->manager, self->bluez_bus, dev->bluez_path,
				    DIS_READ_TIMEOUT_MSEC, dev->dis_cancel, dis_read_cb, r);
}

static void
device_read_props (BgsDevices *self, BgsDevice *dev, GDBusProxy *proxy, gboolean initial)
{
	g_autoptr(GVariant) rssi = proxy_prop (proxy, "RSSI", G_VARIANT_TYPE_INT16);
	g_autofree char *alias = prop_string (proxy, "Alias");
	g_autofree char *name = prop_string (proxy, "Name");

	g_free (dev->name);
	dev->name = g_strdup (alias != NULL ? alias : name);
	/* bluetoothd 5.66 may never signal Connected=true for an LE link it
	 * made as central (VM tier: only UUIDs+ServicesResolved came), and
	 * resolved services need a link */
	dev->services_resolved = prop_bool (proxy, "ServicesResolved");
	dev->connected = prop_bool (proxy, "Connected") || dev->services_resolved;
	dev->blocked = prop_bool (proxy, "Blocked");
	dev->paired = prop_bool (proxy, "Paired");
	if (rssi != NULL) {
		dev->rssi = g_variant_get_int16 (rssi);
		/* an RSSI counts as a sighting only while the adapter scans:
		 * BlueZ keeps stale values on known devices */
		if (!initial || adapter_discovering (self, dev->adapter_path))
			device_sighting (self, dev);
	}
}

static void
device_add (BgsDevices *self, GDBusProxy *proxy)
{
	const char *path = g_dbus_proxy_get_object_path (proxy);
	g_autofree char *address = prop_string (proxy, "Address");
	g_autofree char *adapter_path = NULL;
	g_autoptr(GVariant) adapter_v = proxy_prop (proxy, "Adapter", G_VARIANT_TYPE_OBJECT_PATH);
	const char *adapter;
	BgsDevice *dev;
	g_autoptr(GError) error = NULL;
	g_autofree char *addr_id = NULL;
	g_autofree char *id = NULL;

	if (g_hash_table_contains (self->devices, path))
		return;
	if (address == NULL || !g_regex_match_simple ("^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$",
						       address, 0, 0)) {
		g_warning ("ignoring BlueZ device %s: missing or malformed Address", path);
		return;
	}
	adapter_path = adapter_v != NULL ? g_variant_dup_string (adapter_v, NULL)
					 : g_path_get_dirname (path);
	adapter = strrchr (adapter_path, '/');
	adapter = adapter != NULL ? adapter + 1 : adapter_path;
	if (!adapter_allowed (self, adapter)) {
		g_debug ("ignoring %s: adapter %s not configured", path, adapter);
		return;
	}
	addr_id = g_strdelimit (g_ascii_strup (address, -1), ":", '_');
	id = g_strdup_printf ("%s_%s", adapter, addr_id);
	g_strcanon (id, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_", '_');
	/* bluetoothd has one object per address and adapter: a second one
	 * claiming it must neither take over the device nor, when it goes,
	 * revoke the first one's tasks; it is picked up if the first goes */
	if (bgs_devices_lookup_id (self, id) != NULL) {
		g_warning ("ignoring BlueZ device %s: address %s on %s is already %s", path,
			   address, adapter, bgs_devices_lookup_id (self, id)->bluez_path);
		return;
	}
	dev = g_new0 (BgsDevice, 1);
	dev->devices = self;
	dev->bluez_path = g_strdup (path);
	dev->adapter = g_strdup (adapter);
	dev->adapter_path = g_steal_pointer (&adapter_path);
	dev->address = g_ascii_strup (address, -1);
	dev->id = g_steal_pointer (&id);
	dev->object_path = g_strdup_printf ("/org/bgsync/device/%s", dev->id);
	device_read_props (self, dev, proxy, TRUE);
	/* read once: a cached DIS (or "none") is used without a connection */
	if (bgs_device_info_load (self->store, dev->address, &dev->dis))
		dev->dis_state = DIS_KNOWN;
	device_identify (self, dev, proxy);
	dev->monitored = g_hash_table_contains (self->monitored, path);
	dev->present = dev->connected || dev->sighted || dev->monitored;
	if (dev->connected)
		dev->last_seen = g_get_real_time ();
	dev->skeleton = bgs_dbus_device1_skeleton_new ();
	device_sync_skeleton (dev);
	if (!g_dbus_interface_skeleton_export (G_DBUS_INTERFACE_SKELETON (dev->skeleton),
					       self->export_bus, dev->object_path, &error))
		g_warning ("cannot export %s: %s", dev->object_path, error->message);
	g_hash_table_insert (self->devices, dev->bluez_path, dev);
	g_info ("device %s on %s: model %s, %s", dev->address, dev->adapter, dev->model_id,
		dev->present ? "present" : "not present");
	if (dev->present)
		g_signal_emit (self, signals[SIGNAL_PRESENCE_CHANGED], 0, dev->id, TRUE);
	device_maybe_read_dis (self, dev);
}

/* a Device1 ignored as a duplicate of @gone_path's address gets its turn */
static void
device_adopt_duplicate (BgsDevices *self, const char *gone_path)
{
	GList *objects;

	if (self->manager == NULL)
		return;
	objects = g_dbus_object_manager_get_objects (self->manager);
	for (GList *l = objects; l != NULL; l = l->next) {
		const char *path = g_dbus_object_get_object_path (l->data);
		g_autoptr(GDBusInterface) i = NULL;

		if (g_strcmp0 (path, gone_path) == 0 || g_hash_table_contains (self->devices, path))
			continue;
		i = g_dbus_object_get_interface (l->data, DEVICE_IFACE);
		if (i != NULL)
			device_add (self, G_DBUS_PROXY (i));
	}
	g_list_free_full (objects, g_object_unref);
}

/* @may_return: the object went away but the device may come back (a
 * temporary device expired, bluetoothd restarted), as opposed to the user
 * removing a paired device or its adapter going away */
static void
device_remove (BgsDevices *self, const char *bluez_path, gboolean may_return)
{
	BgsDevice *dev = g_hash_table_lookup (self->devices, bluez_path);
	g_autofree char *id = NULL;

	if (dev == NULL)
		return;
	id = g_strdup (dev->id);
	if (dev->paired)
		may_return = FALSE;
	g_info ("device %s removed%s", dev->address, may_return ? " (may come back)" : "");
	g_hash_table_remove (self->devices, bluez_path);
	g_signal_emit (self, signals[SIGNAL_REMOVED], 0, id, may_return);
	device_adopt_duplicate (self, bluez_path);
}

/* bluetoothd powers its adapters off when it stops: wait PowerOffGrace
 * before taking a power-off as the user's (tasks revoked) rather than a
 * restart */

typedef struct {
	BgsDevices *self;
	char *adapter_path;
} PowerOff;

static void
power_off_free (gpointer data)
{
	PowerOff *po = data;

	g_free (po->adapter_path);
	g_free (po);
}

static gboolean
power_off_cb (gpointer data)
{
	PowerOff *po = data;
	BgsDevices *self = po->self;
	g_autoptr(GPtrArray) gone = g_ptr_array_new_with_free_func (g_free);
	GHashTableIter iter;
	gpointer value;

	g_hash_table_remove (self->power_off, po->adapter_path);
	/* bluetoothd left meanwhile (its devices were withdrawn), or powered back */
	if (adapter_powered (self, po->adapter_path))
		return G_SOURCE_REMOVE;
	g_hash_table_iter_init (&iter, self->devices);
	while (g_hash_table_iter_next (&iter, NULL, &value)) {
		BgsDevice *dev = value;
		if (g_strcmp0 (dev->adapter_path, po->adapter_path) == 0)
			g_ptr_array_add (gone, g_strdup (dev->id));
	}
	for (guint i = 0; i < gone->len; i++) {
		g_info ("adapter %s powered off: revoking %s", po->adapter_path,
			(const char *) gone->pdata[i]);
		g_signal_emit (self, signals[SIGNAL_REMOVED], 0, gone->pdata[i], FALSE);
	}
	return G_SOURCE_REMOVE;
}

static void
adapter_changed (BgsDevices *self, const char *adapter_path)
{
	PowerOff *po;
	guint id;

	if (adapter_powered (self, adapter_path)) {
		g_signal_emit (self, signals[SIGNAL_BLUEZ_CHANGED], 0);
		return;
	}
	/* a powered-off adapter revokes its devices: their tasks must stop */
	if (g_hash_table_contains (self->power_off, adapter_path))
		return;
	po = g_new0 (PowerOff, 1);
	po->self = self;
	po->adapter_path = g_strdup (adapter_path);
	id = g_timeout_add_full (G_PRIORITY_DEFAULT, (guint) (self->power_off_grace / 1000),
				 power_off_cb, po, power_off_free);
	g_hash_table_insert (self->power_off, g_strdup (adapter_path), GUINT_TO_POINTER (id));
}

static gboolean
dis_retry_cb (gpointer user_data)
{
	BgsDevice *dev = user_data;

	dev->dis_retry_id = 0;
	if (dev->connected && dev->dis_state == DIS_RETRY) {
		dev->dis_state = DIS_UNKNOWN;
		device_maybe_read_dis (dev->devices, dev);
	}
	return G_SOURCE_REMOVE;
}

/* a GATT object of a connected device whose DIS was not found yet: look
 * again once bluetoothd has exported the rest (a service comes before its
 * characteristics, each in its own signal) */
static void
dis_retry_soon (BgsDevices *self, const char *object_path)
{
	GHashTableIter iter;
	gpointer value;

	g_hash_table_iter_init (&iter, self->devices);
	while (g_hash_table_iter_next (&iter, NULL, &value)) {
		BgsDevice *dev = value;
		gsize n = strlen (dev->bluez_path);

		if (strncmp (object_path, dev->bluez_path, n) != 0 || object_path[n] != '/' ||
		    !dev->connected || dev->dis_state != DIS_RETRY)
			continue;
		if (dev->dis_retry_id != 0)
			g_source_remove (dev->dis_retry_id);
		dev->dis_retry_id = g_timeout_add (DIS_RETRY_SETTLE_MSEC, dis_retry_cb, dev);
	}
}

static void
interface_added (BgsDevices *self, GDBusObject *object, GDBusInterface *iface)
{
	const char *name = g_dbus_proxy_get_interface_name (G_DBUS_PROXY (iface));

	if (g_strcmp0 (name, DEVICE_IFACE) == 0) {
		device_add (self, G_DBUS_PROXY (iface));
	} else if (g_strcmp0 (name, "org.bluez.GattService1") == 0 ||
		   g_strcmp0 (name, "org.bluez.GattCharacteristic1") == 0) {
		dis_retry_soon (self, g_dbus_object_get_object_path (object));
	} else if (g_strcmp0 (name, ADAPTER_IFACE) == 0 ||
		 g_strcmp0 (name, "org.bluez.AdvertisementMonitorManager1") == 0)
		g_signal_emit (self, signals[SIGNAL_BLUEZ_CHANGED], 0);
}

static void
object_added_cb (GDBusObjectManager *manager, GDBusObject *object, gpointer user_data)
{
	BgsDevices *self = user_data;
	GList *ifaces = g_dbus_object_get_interfaces (object);

	for (GList *l = ifaces; l != NULL; l = l->next)
		interface_added (self, object, l->data);
	g_list_free_full (ifaces, g_object_unref);
}

static void
interface_added_cb (GDBusObjectManager *manager, GDBusObject *object,
		    GDBusInterface *iface, gpointer user_data)
{
	interface_added (user_data, object, iface);
}

static void
interface_removed_cb (GDBusObjectManager *manager, GDBusObject *object,
		      GDBusInterface *iface, gpointer user_data)
{
	BgsDevices *self = user_data;
	const char *name = g_dbus_proxy_get_interface_name (G_DBUS_PROXY (iface));
	const char *path = g_dbus_object_get_object_path (object);

	if (g_strcmp0 (name, DEVICE_IFACE) == 0) {
		device_remove (self, path, TRUE);
	} else if (g_strcmp0 (name, ADAPTER_IFACE) == 0) {
		g_autoptr(GPtrArray) gone = g_ptr_array_new_with_free_func (g_free);
		GHashTableIter iter;
		gpointer value;

		g_hash_table_iter_init (&iter, self->devices);
		while (g_hash_table_iter_next (&iter, NULL, &value)) {
			BgsDevice *dev = value;
			if (g_strcmp0 (dev->adapter_path, path) == 0)
				g_ptr_array_add (gone, g_strdup (dev->bluez_path));
		}
		/* an adapter removed while bluetoothd stays is gone for good;
		 * bluetoothd itself leaving (its objects go with it) may come back */
		g_autofree char *owner = g_dbus_object_manager_client_get_name_owner (
			G_DBUS_OBJECT_MANAGER_CLIENT (manager));
		for (guint i = 0; i < gone->len; i++)
			device_remove (self, gone->pdata[i], owner == NULL);
		g_signal_emit (self, signals[SIGNAL_BLUEZ_CHANGED], 0);
	}
}

static void
object_removed_cb (GDBusObjectManager *manager, GDBusObject *object, gpointer user_data)
{
	BgsDevices *self = user_data;
	GList *ifaces = g_dbus_object_get_interfaces (object);

	for (GList *l = ifaces; l != NULL; l = l->next)
		interface_removed_cb (manager, object, l->data, self);
	g_list_free_full (ifaces, g_object_unref);
}

static gboolean
changed_has (GVariant *changed, const char *key)
{
	g_autoptr(GVariant) v = g_variant_lookup_value (changed, key, NULL);

	return v != NULL;
}

static void
properties_changed_cb (GDBusObjectManagerClient *manager, GDBusObjectProxy *object,
		       GDBusProxy *proxy, GVariant *changed, const char *const *invalidated,
		       gpointer user_data)
{
	BgsDevices *self = user_data;
	const char *iface = g_dbus_proxy_get_interface_name (proxy);
	const char *path = g_dbus_proxy_get_object_path (proxy);

	if (g_strcmp0 (iface, DEVICE_IFACE) == 0) {
		BgsDevice *dev = g_hash_table_lookup (self->devices, path);
		if (dev == NULL) {
			device_add (self, proxy);
			return;
		}
		device_read_props (self, dev, proxy, FALSE);
		if (changed_has (changed, "UUIDs") || changed_has (changed, "Modalias") ||
		    changed_has (changed, "ManufacturerData") || changed_has (changed, "Name") ||
		    changed_has (changed, "Alias"))
			device_identify (self, dev, proxy);
		device_update_presence (self, dev);
		device_maybe_read_dis (self, dev);
	} else if (g_strcmp0 (iface, ADAPTER_IFACE) == 0) {
		adapter_changed (self, path);
	}
}

static void
name_owner_cb (GObject *object, GParamSpec *pspec, gpointer user_data)
{
	BgsDevices *self = user_data;
	g_autofree char *owner = g_dbus_object_manager_client_get_name_owner (
		G_DBUS_OBJECT_MANAGER_CLIENT (object));

	if (owner == NULL) {
		/* bluetoothd went away: every device is gone with it */
		g_autoptr(GList) paths = g_hash_table_get_keys (self->devices);
		g_autoptr(GPtrArray) copy = g_ptr_array_new_with_free_func (g_free);

		GHashTableIter iter;
		gpointer id;

		g_info ("BlueZ left the bus");
		for (GList *l = paths; l != NULL; l = l->next)
			g_ptr_array_add (copy, g_strdup (l->data));
		for (guint i = 0; i < copy->len; i++)
			device_remove (self, copy->pdata[i], TRUE);
		/* its power-offs were its stopping, not the user's: a restarted
		 * bluetoothd's adapters start off until AutoEnable (seen on 5.66) */
		g_hash_table_iter_init (&iter, self->power_off);
		while (g_hash_table_iter_next (&iter, NULL, &id))
			g_source_remove (GPOINTER_TO_UINT (id));
		g_hash_table_remove_all (self->power_off);
	} else {
		g_info ("BlueZ is on the bus as %s", owner);
	}
	g_hash_table_remove_all (self->monitored);
	g_signal_emit (self, signals[SIGNAL_BLUEZ_CHANGED], 0);
}

static void
set_ready (BgsDevices *self)
{
	g_autoptr(GPtrArray) waiters = g_steal_pointer (&self->waiters);

	self->ready = TRUE;
	self->waiters = g_ptr_array_new ();
	for (guint i = 0; i + 1 < waiters->len; i += 2)
		((GFunc) waiters->pdata[i]) (self, waiters->pdata[i + 1]);
}

gboolean
bgs_devices_is_ready (BgsDevices *self)
{
	return self->ready;
}

void
bgs_devices_when_ready (BgsDevices *self, GFunc func, gpointer data)
{
	if (self->ready) {
		func (self, data);
		return;
	}
	g_ptr_array_add (self->waiters, func);
	g_ptr_array_add (self->waiters, data);
}

static void
manager_ready_cb (GObject *source, GAsyncResult *res, gpointer user_data)
{
	g_autoptr(BgsDevices) self = user_data;
	g_autoptr(GError) error = NULL;
	GList *objects;

	self->manager = g_dbus_object_manager_client_new_finish (res, &error);
	if (self->manager == NULL) {
		g_warning ("cannot follow BlueZ: %s", error->message);
		set_ready (self);
		return;
	}
	g_signal_connect (self->manager, "object-added", G_CALLBACK (object_added_cb), self);
	g_signal_connect (self->manager, "object-removed", G_CALLBACK (object_removed_cb), self);
	g_signal_connect (self->manager, "interface-added", G_CALLBACK (interface_added_cb), self);
	g_signal_connect (self->manager, "interface-removed", G_CALLBACK (interface_removed_cb), self);
	g_signal_connect (self->manager, "interface-proxy-properties-changed",
			  G_CALLBACK (properties_changed_cb), self);
	g_signal_connect (self->manager, "notify::name-owner", G_CALLBACK (name_owner_cb), self);
	objects = g_dbus_object_manager_get_objects (self->manager);
	for (GList *l = objects; l != NULL; l = l->next)
		object_added_cb (self->manager, l->data, self);
	g_list_free_full (objects, g_object_unref);
	set_ready (self);
	g_signal_emit (self, signals[SIGNAL_BLUEZ_CHANGED], 0);
}

/* GLib 2.74's object manager client and proxies unpack these signals with
 * g_variant_get() without checking their type: one with another signature
 * from a broken or hostile BlueZ crashes the process. They are dropped
 * here, on GDBus' worker thread, before anything sees them. */
static GDBusMessage *
signal_filter (GDBusConnection *connection, GDBusMessage *message, gboolean incoming,
	       gpointer user_data)
{
	const char *iface, *member, *sig, *want = NULL;

	if (!incoming || g_dbus_message_get_message_type (message) != G_DBUS_MESSAGE_TYPE_SIGNAL)
		return message;
	iface = g_dbus_message_get_interface (message);
	member = g_dbus_message_get_member (message);
	if (g_strcmp0 (iface, "org.freedesktop.DBus.ObjectManager") == 0) {
		if (g_strcmp0 (member, "InterfacesAdded") == 0)
			want = "oa{sa{sv}}";
		else if (g_strcmp0 (member, "InterfacesRemoved") == 0)
			want = "oas";
	} else if (g_strcmp0 (iface, "org.freedesktop.DBus.Properties") == 0 &&
		   g_strcmp0 (member, "PropertiesChanged") == 0) {
		want = "sa{sv}as";
	}
	sig = g_dbus_message_get_signature (message);
	if (want == NULL || g_strcmp0 (sig != NULL ? sig : "", want) == 0)
		return message;
	g_warning ("dropping %s.%s from %s with signature '%s' (expected '%s')", iface, member,
		   g_dbus_message_get_sender (message), sig != NULL ? sig : "", want);
	g_object_unref (message);
	return NULL;
}

void
bgs_devices_start (BgsDevices *self)
{
	if (self->signal_filter == 0)
		self->signal_filter = g_dbus_connection_add_filter (self->bluez_bus, signal_filter,
								    NULL, NULL);
	/* created on the main context: subscriptions from another thread's
	 * context silently lose signals (fwupd #10862) */
	g_dbus_object_manager_client_new (self->bluez_bus,
					  G_DBUS_OBJECT_MANAGER_CLIENT_FLAGS_NONE,
					  BLUEZ_NAME, "/", NULL, NULL, NULL, NULL,
					  manager_ready_cb, g_object_ref (self));
}

void
bgs_devices_rematch (BgsDevices *self)
{
	GHashTableIter iter;
	gpointer value;

	g_hash_table_iter_init (&iter, self->devices);
	while (g_hash_table_iter_next (&iter, NULL, &value)) {
		BgsDevice *dev = value;
		g_autoptr(GDBusProxy) proxy = get_proxy (self, dev->bluez_path, DEVICE_IFACE);
		if (proxy != NULL) {
			device_identify (self, dev, proxy);
			device_sync_skeleton (dev);
		}
	}
}

BgsDevice *
bgs_devices_lookup_id (BgsDevices *self, const char *id)
{
	GHashTableIter iter;
	gpointer value;

	g_hash_table_iter_init (&iter, self->devices);
	while (g_hash_table_iter_next (&iter, NULL, &value)) {
		BgsDevice *dev = value;
		if (g_strcmp0 (dev->id, id) == 0 || g_strcmp0 (dev->object_path, id) == 0)
			return dev;
	}
	return NULL;
}

BgsDevice *
bgs_devices_lookup (BgsDevices *self, const char *key)
{
	GHashTableIter iter;
	gpointer value;
	BgsDevice *best = NULL;

	if (key == NULL || *key == '\0')
		return NULL;
	g_hash_table_iter_init (&iter, self->devices);
	while (g_hash_table_iter_next (&iter, NULL, &value)) {
		BgsDevice *dev = value;
		if (g_strcmp0 (dev->id, key) == 0 || g_strcmp0 (dev->object_path, key) == 0)
			return dev;
		if (g_ascii_strcasecmp (dev->address, key) == 0 &&
		    (best == NULL || (!best->present && dev->present)))
			best = dev;
	}
	return best;
}

GPtrArray *
bgs_devices_list (BgsDevices *self)
{
	GPtrArray *list = g_ptr_array_new ();
	GHashTableIter iter;
	gpointer value;

	g_hash_table_iter_init (&iter, self->devices);
	while (g_hash_table_iter_next (&iter, NULL, &value))
		g_ptr_array_add (list, value);
	return list;
}

const char *bgs_device_get_id (BgsDevice *dev) { return dev->id; }
const char *bgs_device_get_object_path (BgsDevice *dev) { return dev->object_path; }
const char *bgs_device_get_bluez_path (BgsDevice *dev) { return dev->bluez_path; }
const char *bgs_device_get_address (BgsDevice *dev) { return dev->address; }
const char *bgs_device_get_adapter (BgsDevice *dev) { return dev->adapter; }
const char *bgs_device_get_name (BgsDevice *dev) { return dev->name; }
const char *bgs_device_get_model_id (BgsDevice *dev) { return dev->model_id; }
const char *bgs_device_get_model_name (BgsDevice *dev) { return dev->model_name; }
const BgsDeviceModel *bgs_device_get_model (BgsDevice *dev) { return dev->model; }
gboolean bgs_device_is_present (BgsDevice *dev) { return dev->present; }
gboolean bgs_device_is_connected (BgsDevice *dev) { return dev->connected; }

gboolean
bgs_device_is_accessible (BgsDevice *dev)
{
	return !dev->blocked && adapter_powered (dev->devices, dev->adapter_path);
}

GVariant *
bgs_device_to_variant (BgsDevice *dev)
{
	GVariantBuilder b;

	g_variant_builder_init (&b, G_VARIANT_TYPE_VARDICT);
	g_variant_builder_add (&b, "{sv}", "Address", g_variant_new_string (dev->address));
	g_variant_builder_add (&b, "{sv}", "Name", g_variant_new_string (dev->name != NULL ? dev->name : ""));
	g_variant_builder_add (&b, "{sv}", "Adapter", g_variant_new_string (dev->adapter));
	g_variant_builder_add (&b, "{sv}", "Model", g_variant_new_string (dev->model_id));
	g_variant_builder_add (&b, "{sv}", "ModelName", g_variant_new_string (dev->model_name));
	g_variant_builder_add (&b, "{sv}", "Present", g_variant_new_boolean (dev->present));
	g_variant_builder_add (&b, "{sv}", "Connected", g_variant_new_boolean (dev->connected));
	g_variant_builder_add (&b, "{sv}", "RSSI", g_variant_new_int16 (dev->rssi));
	g_variant_builder_add (&b, "{sv}", "LastSeen", g_variant_new_uint64 (dev->last_seen));
	return g_variant_builder_end (&b);
}

static void
bgs_devices_finalize (GObject *object)
{
	BgsDevices *self = BGS_DEVICES (object);

	g_hash_table_unref (self->devices);
	g_hash_table_unref (self->monitored);
	{
		GHashTableIter iter;
		gpointer id;

		g_hash_table_iter_init (&iter, self->power_off);
		while (g_hash_table_iter_next (&iter, NULL, &id))
			g_source_remove (GPOINTER_TO_UINT (id));
		g_hash_table_unref (self->power_off);
	}
	g_ptr_array_unref (self->waiters);
	g_clear_object (&self->manager);
	g_object_unref (self->models);
	g_clear_object (&self->store);
	if (self->signal_filter != 0)
		g_dbus_connection_remove_filter (self->bluez_bus, self->signal_filter);
	g_object_unref (self->bluez_bus);
	g_object_unref (self->export_bus);
	g_strfreev (self->adapters);
	G_OBJECT_CLASS (bgs_devices_parent_class)->finalize (object);
}

static void
bgs_devices_class_init (BgsDevicesClass *klass)
{
	G_OBJECT_CLASS (klass)->finalize = bgs_devices_finalize;
	signals[SIGNAL_PRESENCE_CHANGED] = g_signal_new ("presence-changed",
							 G_TYPE_FROM_CLASS (klass),
							 G_SIGNAL_RUN_LAST, 0, NULL, NULL, NULL,
							 G_TYPE_NONE, 2, G_TYPE_STRING,
							 G_TYPE_BOOLEAN);
	signals[SIGNAL_BLUEZ_CHANGED] = g_signal_new ("bluez-changed", G_TYPE_FROM_CLASS (klass),
						     G_SIGNAL_RUN_LAST, 0, NULL, NULL, NULL,
						     G_TYPE_NONE, 0);
	signals[SIGNAL_REMOVED] = g_signal_new ("removed", G_TYPE_FROM_CLASS (klass),
						G_SIGNAL_RUN_LAST, 0, NULL, NULL, NULL,
						G_TYPE_NONE, 2, G_TYPE_STRING, G_TYPE_BOOLEAN);
}

static void
bgs_devices_init (BgsDevices *self)
{
	self->devices = g_hash_table_new_full (g_str_hash, g_str_equal, NULL,
					       (GDestroyNotify) device_free);
	self->monitored = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
	self->power_off = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
	self->power_off_grace = 1500 * 1000;
	self->waiters = g_ptr_array_new ();
}

BgsDevices *
bgs_devices_new (GDBusConnection *bluez_bus, GDBusConnection *export_bus,
		 BgsModelRegistry *models, BgsStore *store, const char *const *adapters,
		 gint64 lost_timeout_usec)
{
	BgsDevices *self = g_object_new (BGS_TYPE_DEVICES, NULL);

	self->bluez_bus = g_object_ref (bluez_bus);
	self->export_bus = g_object_ref (export_bus);
	self->models = g_object_ref (models);
	self->store = store != NULL ? g_object_ref (store) : NULL;
	self->adapters = g_strdupv ((char **) adapters);
	self->lost_timeout = lost_timeout_usec > 0 ? lost_timeout_usec : 10 * G_USEC_PER_SEC;
	return self;
}

GDBusObjectManager *
bgs_devices_get_object_manager (BgsDevices *self)
{
	return self->manager;
}

const char *
bgs_device_get_adapter_path (BgsDevice *dev)
{
	return dev->adapter_path;
}

void
bgs_devices_set_monitor_seen (BgsDevices *self, const char *bluez_path, gboolean seen)
{
	BgsDevice *dev;

	/* bounded by what bluetoothd reports; cleared when it restarts */
	if (seen)
		g_hash_table_add (self->monitored, g_strdup (bluez_path));
	else
		g_hash_table_remove (self->monitored, bluez_path);
	dev = g_hash_table_lookup (self->devices, bluez_path);
	if (dev == NULL)
		return;
	dev->monitored = seen;
	if (seen)
		dev->last_seen = g_get_real_time ();
	device_update_presence (self, dev);
}

gboolean
bgs_devices_adapter_allowed (BgsDevices *self, const char *adapter_path)
{
	const char *name = strrchr (adapter_path, '/');

	return adapter_allowed (self, name != NULL ? name + 1 : adapter_path);
}

void
bgs_devices_set_power_off_grace (BgsDevices *self, gint64 usec)
{
	self->power_off_grace = MAX (usec, 0);
}
