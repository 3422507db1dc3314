/* bgs-sim-peripheral.c: GattManager1 and LEAdvertisingManager1; the apps
 * registered on an adapter become that adapter's GATT server and adverts
 * as the other adapters see them */
#include "config.h"

#include <string.h>

#include "bgs-sim.h"

#define MAX_ADVERTS 5

typedef struct {
	Sim *sim;
	SimAdapter *adapter;	/* check it is still in sim->adapters first */
	GDBusMethodInvocation *inv;
	gchar *owner;
	gchar *path;
} SimPendingReg;

static void
pending_free (SimPendingReg *p)
{
	g_object_unref (p->inv);
	g_free (p->owner);
	g_free (p->path);
	g_free (p);
}

/* every connected client of @peer's GATT server sees the new database */
void
sim_peripheral_refresh (SimPeer *peer)
{
	Sim *sim = peer->sim;

	for (guint i = 0; i < sim->links->len; i++) {
		SimLink *l = g_ptr_array_index (sim->links, i);
		if (l->peer == peer)
			sim_gatt_resolve (l->central);
		else if (l->remote != NULL && l->central->adapter->peer == peer)
			sim_gatt_resolve (l->remote);
	}
}

/* ---- GATT applications ---- */

static void
app_free (SimApp *app)
{
	if (app->watch != 0)
		g_bus_unwatch_name (app->watch);
	if (app->sig_id != 0)
		g_dbus_connection_signal_unsubscribe (app->adapter->sim->conn, app->sig_id);
	g_ptr_array_unref (app->services);
	g_free (app->owner);
	g_free (app->path);
	g_free (app);
}

static void
app_remove (SimApp *app)
{
	SimAdapter *adapter = app->adapter;

	g_info ("%s: application %s%s removed", adapter->path, app->owner, app->path);
	g_ptr_array_remove (adapter->apps, app);
	adapter->peer->db_generation++;
	/* clients drop their references to the old database first */
	sim_gatt_forget (adapter->sim, app->services);
	sim_peripheral_refresh (adapter->peer);
	app_free (app);
}

static void
app_vanished (GDBusConnection *conn, const gchar *name, gpointer data)
{
	app_remove (data);
}

static SimGattChrc *
app_find_chrc (SimApp *app, const gchar *path)
{
	for (guint i = 0; i < app->services->len; i++) {
		SimGattSvc *svc = g_ptr_array_index (app->services, i);
		for (guint j = 0; j < svc->chrcs->len; j++) {
			SimGattChrc *c = g_ptr_array_index (svc->chrcs, j);
			if (g_strcmp0 (c->app_path, path) == 0)
				return c;
		}
	}
	return NULL;
}

static void
app_props_changed (GDBusConnection *conn, const gchar *sender, const gchar *path,
		   const gchar *iface, const gchar *signal, GVariant *params,
		   gpointer data)
{
	SimApp *app = data;
	const gchar *name;
	g_autoptr(GVariant) changed = NULL;
	g_autoptr(GVariant) value = NULL;
	SimGattChrc *c;
	gsize len;
	gconstpointer bytes;
	g_autoptr(GBytes) b = NULL;

	if (!g_variant_is_of_type (params, G_VARIANT_TYPE ("(sa{sv}as)")))
		return;
	g_variant_get (params, "(&s@a{sv}@as)", &name, &changed, NULL);
	if (g_strcmp0 (name, "org.bluez.GattCharacteristic1") != 0)
		return;
	c = app_find_chrc (app, path);
	if (c == NULL)
		return;
	value = g_variant_lookup_value (changed, "Value", G_VARIANT_TYPE_BYTESTRING);
	if (value == NULL || !c->app_notifying)
		return;
	bytes = g_variant_get_fixed_array (value, &len, 1);
	b = g_bytes_new (bytes, len);
	sim_gatt_notify (app->adapter->peer, c, b);
}

static gint
cmp_path (gconstpointer a, gconstpointer b)
{
	return g_strcmp0 (*(const gchar **) a, *(const gchar **) b);
}

static gboolean
parse_app (SimApp *app, GVariant *objects, GError **error)
{
	g_autoptr(GPtrArray) paths = g_ptr_array_new ();
	g_autoptr(GHashTable) svc_by_path = g_hash_table_new (g_str_hash, g_str_equal);
	g_autoptr(GHashTable) chrc_by_path = g_hash_table_new (g_str_hash, g_str_equal);
	GVariantIter it;
	const gchar *path;
	GVariant *ifaces;

	g_variant_iter_init (&it, objects);
	while (g_variant_iter_next (&it, "{&o@a{sa{sv}}}", &path, &ifaces)) {
		g_ptr_array_add (paths, (gpointer) path);
		g_variant_unref (ifaces);
	}
	/* parents sort before children */
	g_ptr_array_sort (paths, cmp_path);
	for (gint pass = 0; pass < 3; pass++) {
		for (guint i = 0; i < paths->len; i++) {
			const gchar *p = g_ptr_array_index (paths, i);
			g_autoptr(GVariant) obj = g_variant_lookup_value (objects, p, G_VARIANT_TYPE ("a{sa{sv}}"));
			g_autoptr(GVariant) props = NULL;
			const gchar *uuid = NULL;
			const gchar *parent = NULL;
			g_autofree const gchar **flags = NULL;

			if (obj == NULL)
				continue;
			if (pass == 0) {
				gboolean primary = TRUE;
				SimGattSvc *svc;
				props = g_variant_lookup_value (obj, "org.bluez.GattService1", NULL);
				if (props == NULL)
					continue;
				g_autofree gchar *full = NULL;
				if (!g_variant_lookup (props, "UUID", "&s", &uuid) ||
				    (full = sim_uuid_normalize (uuid)) == NULL) {
					g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
						     "service %s has no valid UUID", p);
					return FALSE;
				}
				g_variant_lookup (props, "Primary", "b", &primary);
				svc = sim_gatt_svc_new (full, primary);
				svc->app = app;
				svc->app_path = g_strdup (p);
				g_ptr_array_add (app->services, svc);
				g_hash_table_insert (svc_by_path, svc->app_path, svc);
			} else if (pass == 1) {
				SimGattSvc *svc;
				SimGattChrc *c;
				props = g_variant_lookup_value (obj, "org.bluez.GattCharacteristic1", NULL);
				if (props == NULL)
					continue;
				if (!g_variant_lookup (props, "UUID", "&s", &uuid) ||
				    !g_variant_lookup (props, "Service", "&o", &parent) ||
				    !g_variant_lookup (props, "Flags", "^a&s", &flags)) {
					g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
						     "characteristic %s lacks UUID, Service or Flags", p);
					return FALSE;
				}
				g_autofree gchar *full = sim_uuid_normalize (uuid);
				if (full == NULL) {
					g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
						     "characteristic %s has an invalid UUID", p);
					return FALSE;
				}
				svc = g_hash_table_lookup (svc_by_path, parent);
				if (svc == NULL) {
					g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
						     "characteristic %s: no service %s", p, parent);
					return FALSE;
				}
				c = sim_gatt_chrc_add (svc, full, flags, NULL);
				c->app_path = g_strdup (p);
				{
					g_autoptr(GVariant) wa = g_variant_lookup_value (props, "WriteAcquired", NULL);
					g_autoptr(GVariant) na = g_variant_lookup_value (props, "NotifyAcquired", NULL);
					c->app_write_acquired = wa != NULL;
					c->app_notify_acquired = na != NULL;
				}
				g_hash_table_insert (chrc_by_path, c->app_path, c);
			} else {
				SimGattChrc *c;
				SimGattDesc *d;
				props = g_variant_lookup_value (obj, "org.bluez.GattDescriptor1", NULL);
				if (props == NULL)
					continue;
				if (!g_variant_lookup (props, "UUID", "&s", &uuid) ||
				    !g_variant_lookup (props, "Characteristic", "&o", &parent) ||
				    !g_variant_lookup (props, "Flags", "^a&s", &flags)) {
					g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
						     "descriptor %s lacks UUID, Characteristic or Flags", p);
					return FALSE;
				}
				g_autofree gchar *full = sim_uuid_normalize (uuid);
				if (full == NULL) {
					g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
						     "descriptor %s has an invalid UUID", p);
					return FALSE;
				}
				c = g_hash_table_lookup (chrc_by_path, parent);
				if (c == NULL) {
					g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
						     "descriptor %s: no characteristic %s", p, parent);
					return FALSE;
				}
				d = sim_gatt_desc_add (c, full, flags, NULL);
				d->app_path = g_strdup (p);
			}
		}
	}
	return TRUE;
}

static void
app_objects_cb (GObject *source, GAsyncResult *res, gpointer data)
{
	SimPendingReg *p = data;
	g_autoptr(GError) error = NULL;
	g_autoptr(GVariant) ret = g_dbus_connection_call_finish (G_DBUS_CONNECTION (source), res, &error);
	g_autoptr(GVariant) objects = NULL;
	SimAdapter *adapter = p->adapter;
	SimApp *app;

	if (ret == NULL) {
		sim_return_error (p->inv, "Failed", "Failed to read application objects: %s",
				  error->message);
		pending_free (p);
		return;
	}
	if (!g_ptr_array_find (p->sim->adapters, adapter, NULL) || !p->sim->bluez_up) {
		sim_return_error (p->inv, "Failed", "Adapter gone");
		pending_free (p);
		return;
	}
	objects = g_variant_get_child_value (ret, 0);
	app = g_new0 (SimApp, 1);
	app->adapter = adapter;
	app->owner = g_strdup (p->owner);
	app->path = g_strdup (p->path);
	app->services = g_ptr_array_new_with_free_func ((GDestroyNotify) sim_gatt_svc_free);
	if (!parse_app (app, objects, &error)) {
		sim_return_error (p->inv, "Failed", "%s", error->message);
		app_free (app);
		pending_free (p);
		return;
	}
	if (app->services->len == 0) {
		sim_return_error (p->inv, "Failed", "No object received");
		app_free (app);
		pending_free (p);
		return;
	}
	app->watch = g_bus_watch_name_on_connection (adapter->sim->conn, app->owner,
						     G_BUS_NAME_WATCHER_FLAGS_NONE, NULL,
						     app_vanished, app, NULL);
	app->sig_id = g_dbus_connection_signal_subscribe (adapter->sim->conn, app->owner,
							  "org.freedesktop.DBus.Properties",
							  "PropertiesChanged", NULL,
							  "org.bluez.GattCharacteristic1",
							  G_DBUS_SIGNAL_FLAGS_NONE,
							  app_props_changed, app, NULL);
	g_ptr_array_add (adapter->apps, app);
	adapter->peer->db_generation++;
	g_info ("%s: application %s%s registered (%u services)", adapter->path,
		app->owner, app->path, app->services->len);
	g_dbus_method_invocation_return_value (p->inv, NULL);
	pending_free (p);
	sim_peripheral_refresh (adapter->peer);
}

static SimApp *
find_app (SimAdapter *adapter, const gchar *owner, const gchar *path)
{
	for (guint i = 0; i < adapter->apps->len; i++) {
		SimApp *app = g_ptr_array_index (adapter->apps, i);
		if (g_strcmp0 (app->owner, owner) == 0 && g_strcmp0 (app->path, path) == 0)
			return app;
	}
	return NULL;
}

static void
gatt_manager_method (SimIface *iface, const gchar *sender, const gchar *method,
		     GVariant *params, GDBusMethodInvocation *inv)
{
	SimAdapter *adapter = iface->user_data;
	const gchar *path;

	g_variant_get_child (params, 0, "&o", &path);
	if (g_strcmp0 (method, "RegisterApplication") == 0) {
		SimPendingReg *p;
		if (find_app (adapter, sender, path) != NULL) {
			sim_return_error (inv, "AlreadyExists", "Already Exists");
			return;
		}
		p = g_new0 (SimPendingReg, 1);
		p->sim = adapter->sim;
		p->adapter = adapter;
		p->inv = g_object_ref (inv);
		p->owner = g_strdup (sender);
		p->path = g_strdup (path);
		g_dbus_connection_call (adapter->sim->conn, sender, path,
					"org.freedesktop.DBus.ObjectManager", "GetManagedObjects",
					NULL, G_VARIANT_TYPE ("(a{oa{sa{sv}}})"),
					G_DBUS_CALL_FLAGS_NONE, 10000, NULL, app_objects_cb, p);
	} else if (g_strcmp0 (method, "UnregisterApplication") == 0) {
		SimApp *app = find_app (adapter, sender, path);
		if (app == NULL) {
			sim_return_error (inv, "DoesNotExist", "Does Not Exist");
			return;
		}
		app_remove (app);
		g_dbus_method_invocation_return_value (inv, NULL);
	}
}

static void advert_remove (SimAdvert *adv, gboolean release);

/* the adapter or the whole service goes away: its applications and
 * advertisements with it */
void
sim_peripheral_drop_apps (SimAdapter *adapter)
{
	while (adapter->apps->len > 0)
		app_remove (g_ptr_array_index (adapter->apps, 0));
	while (adapter->adverts->len > 0)
		advert_remove (g_ptr_array_index (adapter->adverts, 0), TRUE);
}

/* ---- advertisements ---- */

static void
advert_free (SimAdvert *adv)
{
	if (adv->watch != 0)
		g_bus_unwatch_name (adv->watch);
	g_strfreev (adv->uuids);
	g_free (adv->type);
	g_free (adv->local_name);
	g_clear_pointer (&adv->mfr_data, g_variant_unref);
	g_clear_pointer (&adv->svc_data, g_variant_unref);
	g_free (adv->owner);
	g_free (adv->path);
	g_free (adv);
}

static SimIface *
adv_manager_iface (SimAdapter *adapter)
{
	return sim_object_get_iface (adapter->obj, "org.bluez.LEAdvertisingManager1");
}

static void
adverts_changed (SimAdapter *adapter)
{
	SimIface *iface = adv_manager_iface (adapter);

	if (iface != NULL) {
		sim_iface_set (iface, "ActiveInstances", g_variant_new_byte (adapter->adverts->len));
		sim_iface_set (iface, "SupportedInstances",
			       g_variant_new_byte (MAX_ADVERTS - adapter->adverts->len));
	}
	sim_peer_changed (adapter->peer);
}

static void
advert_remove (SimAdvert *adv, gboolean release)
{
	SimAdapter *adapter = adv->adapter;

	if (release)
		g_dbus_connection_call (adapter->sim->conn, adv->owner, adv->path,
					"org.bluez.LEAdvertisement1", "Release", NULL, NULL,
					G_DBUS_CALL_FLAGS_NO_AUTO_START, -1, NULL, NULL, NULL);
	g_ptr_array_remove (adapter->adverts, adv);
	advert_free (adv);
	adverts_changed (adapter);
}

static void
advert_vanished (GDBusConnection *conn, const gchar *name, gpointer data)
{
	advert_remove (data, FALSE);
}

static SimAdvert *
find_advert (SimAdapter *adapter, const gchar *owner, const gchar *path)
{
	for (guint i = 0; i < adapter->adverts->len; i++) {
		SimAdvert *a = g_ptr_array_index (adapter->adverts, i);
		if (g_strcmp0 (a->owner, owner) == 0 && g_strcmp0 (a->path, path) == 0)
			return a;
	}
	return NULL;
}

static void
advert_props_cb (GObject *source, GAsyncResult *res, gpointer data)
{
	SimPendingReg *p = data;
	g_autoptr(GError) error = NULL;
	g_autoptr(GVariant) ret = g_dbus_connection_call_finish (G_DBUS_CONNECTION (source), res, &error);
	g_autoptr(GVariant) props = NULL;
	SimAdapter *adapter = p->adapter;
	SimAdvert *adv;
	const gchar *type = NULL;
	g_autofree const gchar **includes = NULL;

	if (ret == NULL) {
		sim_return_error (p->inv, "Failed", "Failed to parse advertisement.");
		pending_free (p);
		return;
	}
	if (!g_ptr_array_find (p->sim->adapters, adapter, NULL) || !adapter->powered) {
		sim_return_error (p->inv, "Failed", "Failed to register advertisement");
		pending_free (p);
		return;
	}
	props = g_variant_get_child_value (ret, 0);
	if (!g_variant_lookup (props, "Type", "&s", &type) ||
	    (g_strcmp0 (type, "peripheral") != 0 && g_strcmp0 (type, "broadcast") != 0)) {
		sim_return_error (p->inv, "InvalidArguments", "Invalid arguments in method call");
		pending_free (p);
		return;
	}
	adv = g_new0 (SimAdvert, 1);
	adv->adapter = adapter;
	adv->owner = g_strdup (p->owner);
	adv->path = g_strdup (p->path);
	adv->type = g_strdup (type);
	if (g_variant_lookup (props, "ServiceUUIDs", "^as", &adv->uuids)) {
		for (guint i = 0; adv->uuids[i] != NULL; i++) {
			gchar *full = sim_uuid_normalize (adv->uuids[i]);
			if (full == NULL) {
				sim_return_error (p->inv, "Failed", "Failed to parse advertisement.");
				advert_free (adv);
				pending_free (p);
				return;
			}
			g_free (adv->uuids[i]);
			adv->uuids[i] = full;
		}
	}
	g_variant_lookup (props, "LocalName", "s", &adv->local_name);
	adv->mfr_data = g_variant_lookup_value (props, "ManufacturerData", G_VARIANT_TYPE ("a{qv}"));
	adv->svc_data = g_variant_lookup_value (props, "ServiceData", G_VARIANT_TYPE ("a{sv}"));
	if (g_variant_lookup (props, "Includes", "^a&s", &includes)) {
		if (adv->local_name == NULL && g_strv_contains (includes, "local-name"))
			adv->local_name = g_strdup (adapter->alias);
		adv->include_tx_power = g_strv_contains (includes, "tx-power");
	}
	/* an empty ManufacturerData or ServiceData is no data */
	if (adv->mfr_data != NULL && g_variant_n_children (adv->mfr_data) == 0)
		g_clear_pointer (&adv->mfr_data, g_variant_unref);
	if (adv->svc_data != NULL && g_variant_n_children (adv->svc_data) == 0)
		g_clear_pointer (&adv->svc_data, g_variant_unref);
	adv->watch = g_bus_watch_name_on_connection (adapter->sim->conn, adv->owner,
						     G_BUS_NAME_WATCHER_FLAGS_NONE, NULL,
						     advert_vanished, adv, NULL);
	g_ptr_array_add (adapter->adverts, adv);
	g_info ("%s: advertisement %s%s registered", adapter->path, adv->owner, adv->path);
	g_dbus_method_invocation_return_value (p->inv, NULL);
	pending_free (p);
	adverts_changed (adapter);
}

static void
adv_manager_method (SimIface *iface, const gchar *sender, const gchar *method,
		    GVariant *params, GDBusMethodInvocation *inv)
{
	SimAdapter *adapter = iface->user_data;
	const gchar *path;

	g_variant_get_child (params, 0, "&o", &path);
	if (g_strcmp0 (method, "RegisterAdvertisement") == 0) {
		SimPendingReg *p;
		/* bluetoothd 5.66 answers Failed here (seen in the VM tier) */
		if (!adapter->powered) {
			sim_return_error (inv, "Failed", "Failed to register advertisement");
			return;
		}
		if (find_advert (adapter, sender, path) != NULL) {
			sim_return_error (inv, "AlreadyExists", "Already Exists");
			return;
		}
		if (adapter->adverts->len >= MAX_ADVERTS) {
			sim_return_error (inv, "NotPermitted", "Maximum advertisements reached");
			return;
		}
		p = g_new0 (SimPendingReg, 1);
		p->sim = adapter->sim;
		p->adapter = adapter;
		p->inv = g_object_ref (inv);
		p->owner = g_strdup (sender);
		p->path = g_strdup (path);
		g_dbus_connection_call (adapter->sim->conn, sender, path,
					"org.freedesktop.DBus.Properties", "GetAll",
					g_variant_new ("(s)", "org.bluez.LEAdvertisement1"),
					G_VARIANT_TYPE ("(a{sv})"), G_DBUS_CALL_FLAGS_NONE,
					10000, NULL, advert_props_cb, p);
	} else if (g_strcmp0 (method, "UnregisterAdvertisement") == 0) {
		SimAdvert *adv = find_advert (adapter, sender, path);
		if (adv == NULL) {
			sim_return_error (inv, "DoesNotExist", "Does Not Exist");
			return;
		}
		g_dbus_method_invocation_return_value (inv, NULL);
		advert_remove (adv, FALSE);
	}
}

/* powering off ends every advertising instance, but bluetoothd 5.66 keeps
 * the registrations (no Release, ActiveInstances unchanged) and does not
 * advertise them after power on: the app has to unregister and register
 * again (RegisterAdvertisement alone fails with AlreadyExists). seen in the
 * VM tier with kernel 6.1 */
void
sim_peripheral_adapter_down (SimAdapter *adapter)
{
	for (guint i = 0; i < adapter->adverts->len; i++)
		((SimAdvert *) g_ptr_array_index (adapter->adverts, i))->off_air = TRUE;
	adverts_changed (adapter);
}

void
sim_peripheral_add_ifaces (SimAdapter *adapter)
{
	SimIface *i;
	const gchar *includes[] = { "tx-power", "appearance", "local-name", NULL };
	const gchar *channels[] = { "1M", "2M", "Coded", NULL };
	const gchar *features[] = { "CanSetTxPower", "HardwareOffload", NULL };

	sim_object_add_iface (adapter->obj, "org.bluez.GattManager1",
			      gatt_manager_method, NULL, adapter);
	i = sim_object_add_iface (adapter->obj, "org.bluez.LEAdvertisingManager1",
				  adv_manager_method, NULL, adapter);
	sim_iface_set (i, "ActiveInstances", g_variant_new_byte (0));
	sim_iface_set (i, "SupportedInstances", g_variant_new_byte (MAX_ADVERTS));
	sim_iface_set (i, "SupportedIncludes", g_variant_new_strv (includes, -1));
	sim_iface_set (i, "SupportedSecondaryChannels", g_variant_new_strv (channels, -1));
	sim_iface_set (i, "SupportedFeatures", g_variant_new_strv (features, -1));
}
