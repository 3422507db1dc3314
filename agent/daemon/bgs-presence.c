/* bgs-presence.c: finding known devices in radio range.
 *
 * Where BlueZ offers AdvertisementMonitorManager1, bgsyncd registers one
 * AdvertisementMonitor1 per device model (or_patterns from the model's
 * match rules, RSSI thresholds and timeouts from the model or main.conf),
 * so the controller can filter and BlueZ reports DeviceFound / DeviceLost.
 * Otherwise it runs LE discovery with a filter (every RSSI change is then
 * reported) and BgsDevices times sightings out. Either runs only while the
 * daemon says presence is needed; an agent with nothing to watch does not
 * scan. */
#include "bgs-presence.h"

#include "bgs-error.h"

#define ROOT_PATH "/org/bgsync/presence"
#define MONITOR_IFACE "org.bluez.AdvertisementMonitor1"
#define MANAGER_IFACE "org.bluez.AdvertisementMonitorManager1"
#define ADAPTER_IFACE "org.bluez.Adapter1"

static const char introspection_xml[] =
	"<node>"
	" <interface name='org.freedesktop.DBus.ObjectManager'>"
	"  <method name='GetManagedObjects'><arg type='a{oa{sa{sv}}}' direction='out'/></method>"
	"  <signal name='InterfacesAdded'><arg type='o'/><arg type='a{sa{sv}}'/></signal>"
	"  <signal name='InterfacesRemoved'><arg type='o'/><arg type='as'/></signal>"
	" </interface>"
	" <interface name='org.bluez.AdvertisementMonitor1'>"
	"  <method name='Release'/>"
	"  <method name='Activate'/>"
	"  <method name='DeviceFound'><arg name='device' type='o'/></method>"
	"  <method name='DeviceLost'><arg name='device' type='o'/></method>"
	"  <property name='Type' type='s' access='read'/>"
	"  <property name='RSSILowThreshold' type='n' access='read'/>"
	"  <property name='RSSIHighThreshold' type='n' access='read'/>"
	"  <property name='RSSILowTimeout' type='q' access='read'/>"
	"  <property name='RSSIHighTimeout' type='q' access='read'/>"
	"  <property name='Patterns' type='a(yyay)' access='read'/>"
	" </interface>"
	"</node>";

typedef struct {
	char *path;
	char *model_id;
	gint16 low, high;
	guint16 low_timeout, high_timeout;
	GVariant *patterns; /* a(yyay), sunk */
	guint reg_id;
} Monitor;

struct _BgsPresence {
	GObject parent_instance;
	GDBusConnection *bus;
	BgsDevices *devices;
	BgsModelRegistry *models;
	const BgsConfig *config;
	GDBusNodeInfo *node_info;
	GPtrArray *monitors;        /* Monitor */
	guint root_id;
	gboolean needed;
	gboolean fallback_discovery; /* some model has no advertisement pattern */
	GHashTable *active;          /* adapter path -> "monitor" / "discovery" */
};

G_DEFINE_TYPE (BgsPresence, bgs_presence, G_TYPE_OBJECT)

static void
monitor_free (gpointer data)
{
	Monitor *m = data;

	g_free (m->path);
	g_free (m->model_id);
	g_clear_pointer (&m->patterns, g_variant_unref);
	g_free (m);
}

static GVariant *
monitor_props (Monitor *m)
{
	GVariantBuilder b;

	g_variant_builder_init (&b, G_VARIANT_TYPE_VARDICT);
	g_variant_builder_add (&b, "{sv}", "Type", g_variant_new_string ("or_patterns"));
	g_variant_builder_add (&b, "{sv}", "RSSILowThreshold", g_variant_new_int16 (m->low));
	g_variant_builder_add (&b, "{sv}", "RSSIHighThreshold", g_variant_new_int16 (m->high));
	g_variant_builder_add (&b, "{sv}", "RSSILowTimeout", g_variant_new_uint16 (m->low_timeout));
	g_variant_builder_add (&b, "{sv}", "RSSIHighTimeout", g_variant_new_uint16 (m->high_timeout));
	g_variant_builder_add (&b, "{sv}", "Patterns", m->patterns);
	return g_variant_builder_end (&b);
}

static Monitor *
find_monitor (BgsPresence *self, const char *path)
{
	for (guint i = 0; i < self->monitors->len; i++) {
		Monitor *m = self->monitors->pdata[i];
		if (g_strcmp0 (m->path, path) == 0)
			return m;
	}
	return NULL;
}

static void
monitor_method_call (GDBusConnection *connection, const char *sender, const char *object_path,
		     const char *interface_name, const char *method_name, GVariant *parameters,
		     GDBusMethodInvocation *invocation, gpointer user_data)
{
	BgsPresence *self = user_data;
	Monitor *m = find_monitor (self, object_path);
	const char *device;

	/* only bluetoothd may tell us what it sees */
	if (g_strcmp0 (sender, g_object_get_data (G_OBJECT (self), "bluez-owner")) != 0 &&
	    g_object_get_data (G_OBJECT (self), "bluez-owner") != NULL) {
		g_dbus_method_invocation_return_dbus_error (invocation, "org.bluez.Error.Rejected",
							    "not from bluetoothd");
		return;
	}
	if (m == NULL) {
		g_dbus_method_invocation_return_dbus_error (invocation, "org.bluez.Error.DoesNotExist",
							    "no such monitor");
		return;
	}
	if (g_strcmp0 (method_name, "DeviceFound") == 0 || g_strcmp0 (method_name, "DeviceLost") == 0) {
		gboolean found = g_strcmp0 (method_name, "DeviceFound") == 0;

		g_variant_get (parameters, "(&o)", &device);
		g_debug ("monitor %s: %s %s", m->model_id, found ? "found" : "lost", device);
		bgs_devices_set_monitor_seen (self->devices, device, found);
	} else {
		g_debug ("monitor %s: %s", m->model_id, method_name);
	}
	g_dbus_method_invocation_return_value (invocation, NULL);
}

static GVariant *
monitor_get_property (GDBusConnection *connection, const char *sender, const char *object_path,
		      const char *interface_name, const char *property_name, GError **error,
		      gpointer user_data)
{
	BgsPresence *self = user_data;
	Monitor *m = find_monitor (self, object_path);
	g_autoptr(GVariant) props = NULL;
	GVariant *v;

	if (m == NULL) {
		g_set_error (error, G_DBUS_ERROR, G_DBUS_ERROR_UNKNOWN_OBJECT, "no such monitor");
		return NULL;
	}
	props = monitor_props (m);
	v = g_variant_lookup_value (props, property_name, NULL);
	if (v == NULL)
		g_set_error (error, G_DBUS_ERROR, G_DBUS_ERROR_UNKNOWN_PROPERTY, "no property %s",
			     property_name);
	return v;
}

static const GDBusInterfaceVTable monitor_vtable = { monitor_method_call, monitor_get_property, NULL, { 0 } };

static void
root_method_call (GDBusConnection *connection, const char *sender, const char *object_path,
		  const char *interface_name, const char *method_name, GVariant *parameters,
		  GDBusMethodInvocation *invocation, gpointer user_data)
{
	BgsPresence *self = user_data;
	GVariantBuilder b;

	g_variant_builder_init (&b, G_VARIANT_TYPE ("a{oa{sa{sv}}}"));
	for (guint i = 0; i < self->monitors->len; i++) {
		Monitor *m = self->monitors->pdata[i];
		GVariantBuilder ifaces;

		g_variant_builder_init (&ifaces, G_VARIANT_TYPE ("a{sa{sv}}"));
		g_variant_builder_add (&ifaces, "{s@a{sv}}", MONITOR_IFACE, monitor_props (m));
		g_variant_builder_add (&b, "{oa{sa{sv}}}", m->path, &ifaces);
	}
	g_dbus_method_invocation_return_value (invocation, g_variant_new ("(a{oa{sa{sv}}})", &b));
}

static const GDBusInterfaceVTable root_vtable = { root_method_call, NULL, NULL, { 0 } };

static void
unexport (BgsPresence *self)
{
	for (guint i = 0; i < self->monitors->len; i++) {
		Monitor *m = self->monitors->pdata[i];
		if (m->reg_id != 0)
			g_dbus_connection_unregister_object (self->bus, m->reg_id);
		m->reg_id = 0;
	}
	if (self->root_id != 0)
		g_dbus_connection_unregister_object (self->bus, self->root_id);
	self->root_id = 0;
	g_ptr_array_set_size (self->monitors, 0);
}

/* one monitor per model that advertises something we can match */
static void
build_monitors (BgsPresence *self)
{
	g_autoptr(GPtrArray) models = bgs_model_registry_list (self->models);
	g_autoptr(GError) error = NULL;
	guint n = 0;

	unexport (self);
	self->fallback_discovery = FALSE;
	for (guint i = 0; i < models->len; i++) {
		const BgsDeviceModel *model = models->pdata[i];
		g_autoptr(GPtrArray) pats = bgs_device_model_get_adv_patterns (model);
		GVariantBuilder pb;
		Monitor *m;

		if (pats->len == 0) {
			/* modalias-only models are found by discovery */
			self->fallback_discovery = TRUE;
			continue;
		}
		/* and models known by name only: an active scan asks for the
		 * scan response, where devices often put their name */
		if (bgs_device_model_needs_scan_response (model))
			self->fallback_discovery = TRUE;
		g_variant_builder_init (&pb, G_VARIANT_TYPE ("a(yyay)"));
		for (guint j = 0; j < pats->len; j++) {
			BgsAdvPattern *p = pats->pdata[j];
			gsize len = 0;
			const guint8 *data = g_bytes_get_data (p->content, &len);
			g_variant_builder_add (&pb, "(yy@ay)", p->start, p->ad_type,
					       g_variant_new_fixed_array (G_VARIANT_TYPE_BYTE, data, len, 1));
		}
		m = g_new0 (Monitor, 1);
		m->path = g_strdup_printf ("%s/m%u", ROOT_PATH, n++);
		m->model_id = g_strdup (model->id);
		m->patterns = g_variant_ref_sink (g_variant_builder_end (&pb));
		m->high = model->presence.has_found_rssi ? model->presence.found_rssi
							 : self->config->presence_found_rssi;
		m->low = model->presence.has_lost_rssi ? model->presence.lost_rssi
						       : self->config->presence_lost_rssi;
		m->low_timeout = model->presence.lost_timeout > 0 ? model->presence.lost_timeout
			: (guint16) CLAMP (self->config->presence_lost_timeout_usec / G_USEC_PER_SEC, 1, 300);
		m->high_timeout = model->presence.found_timeout > 0 ? model->presence.found_timeout
			: (guint16) CLAMP (self->config->presence_found_timeout_usec / G_USEC_PER_SEC, 1, 300);
		g_ptr_array_add (self->monitors, m);
	}
	if (self->monitors->len == 0)
		return;
	self->root_id = g_dbus_connection_register_object (self->bus, ROOT_PATH,
		g_dbus_node_info_lookup_interface (self->node_info, "org.freedesktop.DBus.ObjectManager"),
		&root_vtable, self, NULL, &error);
	if (self->root_id == 0) {
		g_warning ("cannot export advertisement monitors: %s", error->message);
		return;
	}
	for (guint i = 0; i < self->monitors->len; i++) {
		Monitor *m = self->monitors->pdata[i];
		m->reg_id = g_dbus_connection_register_object (self->bus, m->path,
			g_dbus_node_info_lookup_interface (self->node_info, MONITOR_IFACE),
			&monitor_vtable, self, NULL, NULL);
	}
}

static void
call_done_cb (GObject *source, GAsyncResult *res, gpointer user_data)
{
	g_autofree char *what = user_data;
	g_autoptr(GVariant) reply = NULL;
	g_autoptr(GError) error = NULL;

	reply = g_dbus_connection_call_finish (G_DBUS_CONNECTION (source), res, &error);
	if (reply == NULL)
		g_info ("%s: %s", what, error->message);
	else
		g_debug ("%s: done", what);
}

static void
adapter_call (BgsPresence *self, const char *adapter, const char *iface, const char *method,
	      GVariant *params)
{
	g_dbus_connection_call (self->bus, "org.bluez", adapter, iface, method, params, NULL,
				G_DBUS_CALL_FLAGS_NONE, -1, NULL, call_done_cb,
				g_strdup_printf ("%s %s.%s", adapter, iface, method));
}

static void
adapter_start (BgsPresence *self, GDBusObject *object)
{
	const char *path = g_dbus_object_get_object_path (object);
	g_autoptr(GDBusInterface) mgr = g_dbus_object_get_interface (object, MANAGER_IFACE);
	g_autoptr(GDBusInterface) adapter = g_dbus_object_get_interface (object, ADAPTER_IFACE);

	if (adapter == NULL || g_hash_table_contains (self->active, path))
		return;
	if (mgr != NULL && self->monitors->len > 0) {
		adapter_call (self, path, MANAGER_IFACE, "RegisterMonitor",
			      g_variant_new ("(o)", ROOT_PATH));
		g_hash_table_insert (self->active, g_strdup (path), (gpointer) "monitor");
		g_info ("presence on %s: %u advertisement monitor(s)", path, self->monitors->len);
		if (!self->fallback_discovery)
			return;
	}
	/* every RSSI change is reported once a discovery filter is set */
	{
		GVariantBuilder f;

		g_variant_builder_init (&f, G_VARIANT_TYPE_VARDICT);
		g_variant_builder_add (&f, "{sv}", "Transport", g_variant_new_string ("le"));
		g_variant_builder_add (&f, "{sv}", "DuplicateData", g_variant_new_boolean (TRUE));
		adapter_call (self, path, ADAPTER_IFACE, "SetDiscoveryFilter", g_variant_new ("(a{sv})", &f));
		adapter_call (self, path, ADAPTER_IFACE, "StartDiscovery", NULL);
		g_hash_table_insert (self->active, g_strdup (path),
				     (gpointer) (mgr != NULL && self->monitors->len > 0 ? "both" : "discovery"));
		g_info ("presence on %s: LE discovery", path);
	}
}

static void
adapter_stop (BgsPresence *self, const char *path, const char *how)
{
	if (g_strcmp0 (how, "monitor") == 0 || g_strcmp0 (how, "both") == 0)
		adapter_call (self, path, MANAGER_IFACE, "UnregisterMonitor",
			      g_variant_new ("(o)", ROOT_PATH));
	if (g_strcmp0 (how, "discovery") == 0 || g_strcmp0 (how, "both") == 0)
		adapter_call (self, path, ADAPTER_IFACE, "StopDiscovery", NULL);
}

void
bgs_presence_refresh (BgsPresence *self)
{
	GDBusObjectManager *manager = bgs_devices_get_object_manager (self->devices);
	g_autoptr(GDBusObjectManagerClient) keep = NULL;
	g_autofree char *owner = NULL;
	GList *objects;

	if (manager == NULL)
		return;
	owner = g_dbus_object_manager_client_get_name_owner (G_DBUS_OBJECT_MANAGER_CLIENT (manager));
	g_object_set_data_full (G_OBJECT (self), "bluez-owner", g_strdup (owner), g_free);
	if (owner == NULL) {
		/* bluetoothd is gone and took our registrations with it */
		g_hash_table_remove_all (self->active);
		return;
	}
	if (!self->needed) {
		GHashTableIter iter;
		gpointer key, value;

		g_hash_table_iter_init (&iter, self->active);
		while (g_hash_table_iter_next (&iter, &key, &value))
			adapter_stop (self, key, value);
		g_hash_table_remove_all (self->active);
		return;
	}
	objects = g_dbus_object_manager_get_objects (manager);
	for (GList *l = objects; l != NULL; l = l->next)
		if (bgs_devices_adapter_allowed (self->devices, g_dbus_object_get_object_path (l->data)))
			adapter_start (self, l->data);
	g_list_free_full (objects, g_object_unref);
}

void
bgs_presence_set_needed (BgsPresence *self, gboolean needed)
{
	if (self->needed == needed)
		return;
	self->needed = needed;
	g_info ("presence %s", needed ? "needed: watching for known devices" : "not needed: not scanning");
	bgs_presence_refresh (self);
}

gboolean
bgs_presence_is_scanning (BgsPresence *self)
{
	return g_hash_table_size (self->active) > 0;
}

static void
models_changed_cb (BgsModelRegistry *models, gpointer user_data)
{
	BgsPresence *self = user_data;
	gboolean was = self->needed;

	/* re-register with the new patterns */
	bgs_presence_set_needed (self, FALSE);
	build_monitors (self);
	bgs_presence_set_needed (self, was);
}

static void
bluez_changed_cb (BgsDevices *devices, gpointer user_data)
{
	BgsPresence *self = user_data;
	GDBusObjectManager *manager = bgs_devices_get_object_manager (devices);
	g_autofree char *owner = NULL;
	GHashTableIter iter;
	gpointer key;

	if (manager != NULL)
		owner = g_dbus_object_manager_client_get_name_owner (G_DBUS_OBJECT_MANAGER_CLIENT (manager));
	/* a restarted bluetoothd forgot our registrations; removed adapters too */
	if (g_strcmp0 (owner, g_object_get_data (G_OBJECT (self), "bluez-owner")) != 0)
		g_hash_table_remove_all (self->active);
	g_hash_table_iter_init (&iter, self->active);
	while (manager != NULL && g_hash_table_iter_next (&iter, &key, NULL)) {
		g_autoptr(GDBusObject) obj = g_dbus_object_manager_get_object (manager, key);
		if (obj == NULL)
			g_hash_table_iter_remove (&iter);
	}
	bgs_presence_refresh (self);
}

static void
bgs_presence_finalize (GObject *object)
{
	BgsPresence *self = BGS_PRESENCE (object);

	g_signal_handlers_disconnect_by_data (self->models, self);
	g_signal_handlers_disconnect_by_data (self->devices, self);
	unexport (self);
	g_ptr_array_unref (self->monitors);
	g_hash_table_unref (self->active);
	g_dbus_node_info_unref (self->node_info);
	g_object_unref (self->models);
	g_object_unref (self->devices);
	g_object_unref (self->bus);
	G_OBJECT_CLASS (bgs_presence_parent_class)->finalize (object);
}

static void
bgs_presence_class_init (BgsPresenceClass *klass)
{
	G_OBJECT_CLASS (klass)->finalize = bgs_presence_finalize;
}

static void
bgs_presence_init (BgsPresence *self)
{
	self->monitors = g_ptr_array_new_with_free_func (monitor_free);
	self->active = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
}

BgsPresence *
bgs_presence_new (GDBusConnection *bluez_bus, BgsDevices *devices, BgsModelRegistry *models,
		  const BgsConfig *config)
{
	BgsPresence *self = g_object_new (BGS_TYPE_PRESENCE, NULL);

	self->bus = g_object_ref (bluez_bus);
	self->devices = g_object_ref (devices);
	self->models = g_object_ref (models);
	self->config = config;
	self->node_info = g_dbus_node_info_new_for_xml (introspection_xml, NULL);
	build_monitors (self);
	g_signal_connect (models, "changed", G_CALLBACK (models_changed_cb), self);
	g_signal_connect (devices, "bluez-changed", G_CALLBACK (bluez_changed_cb), self);
	return self;
}
