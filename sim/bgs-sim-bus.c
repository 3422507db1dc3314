/* bgs-sim-bus.c: exported objects with properties and an ObjectManager at /,
 * shaped like bluetoothd's gdbus layer */
#include "config.h"

#include "bgs-sim.h"

static const gchar introspection_xml[] =
"<node>"
" <interface name='org.freedesktop.DBus.ObjectManager'>"
"  <method name='GetManagedObjects'>"
"   <arg name='objects' type='a{oa{sa{sv}}}' direction='out'/>"
"  </method>"
"  <signal name='InterfacesAdded'>"
"   <arg name='object' type='o'/><arg name='interfaces' type='a{sa{sv}}'/>"
"  </signal>"
"  <signal name='InterfacesRemoved'>"
"   <arg name='object' type='o'/><arg name='interfaces' type='as'/>"
"  </signal>"
" </interface>"
" <interface name='org.bluez.AgentManager1'>"
"  <method name='RegisterAgent'><arg name='agent' type='o'/><arg name='capability' type='s'/></method>"
"  <method name='UnregisterAgent'><arg name='agent' type='o'/></method>"
"  <method name='RequestDefaultAgent'><arg name='agent' type='o'/></method>"
" </interface>"
" <interface name='org.bluez.ProfileManager1'>"
"  <method name='RegisterProfile'><arg name='profile' type='o'/><arg name='UUID' type='s'/><arg name='options' type='a{sv}'/></method>"
"  <method name='UnregisterProfile'><arg name='profile' type='o'/></method>"
" </interface>"
" <interface name='org.bluez.Adapter1'>"
"  <method name='StartDiscovery'/>"
"  <method name='SetDiscoveryFilter'><arg name='properties' type='a{sv}'/></method>"
"  <method name='StopDiscovery'/>"
"  <method name='RemoveDevice'><arg name='device' type='o'/></method>"
"  <method name='GetDiscoveryFilters'><arg name='filters' type='as' direction='out'/></method>"
"  <property name='Address' type='s' access='read'/>"
"  <property name='AddressType' type='s' access='read'/>"
"  <property name='Name' type='s' access='read'/>"
"  <property name='Alias' type='s' access='readwrite'/>"
"  <property name='Class' type='u' access='read'/>"
"  <property name='Powered' type='b' access='readwrite'/>"
"  <property name='Discoverable' type='b' access='readwrite'/>"
"  <property name='DiscoverableTimeout' type='u' access='readwrite'/>"
"  <property name='Pairable' type='b' access='readwrite'/>"
"  <property name='PairableTimeout' type='u' access='readwrite'/>"
"  <property name='Discovering' type='b' access='read'/>"
"  <property name='UUIDs' type='as' access='read'/>"
"  <property name='Modalias' type='s' access='read'/>"
"  <property name='Roles' type='as' access='read'/>"
"  <property name='ExperimentalFeatures' type='as' access='read'/>"
" </interface>"
" <interface name='org.bluez.GattManager1'>"
"  <method name='RegisterApplication'><arg name='application' type='o'/><arg name='options' type='a{sv}'/></method>"
"  <method name='UnregisterApplication'><arg name='application' type='o'/></method>"
" </interface>"
" <interface name='org.bluez.LEAdvertisingManager1'>"
"  <method name='RegisterAdvertisement'><arg name='advertisement' type='o'/><arg name='options' type='a{sv}'/></method>"
"  <method name='UnregisterAdvertisement'><arg name='service' type='o'/></method>"
"  <property name='ActiveInstances' type='y' access='read'/>"
"  <property name='SupportedInstances' type='y' access='read'/>"
"  <property name='SupportedIncludes' type='as' access='read'/>"
"  <property name='SupportedSecondaryChannels' type='as' access='read'/>"
"  <property name='SupportedFeatures' type='as' access='read'/>"
" </interface>"
" <interface name='org.bluez.AdvertisementMonitorManager1'>"
"  <method name='RegisterMonitor'><arg name='application' type='o'/></method>"
"  <method name='UnregisterMonitor'><arg name='application' type='o'/></method>"
"  <property name='SupportedMonitorTypes' type='as' access='read'/>"
"  <property name='SupportedFeatures' type='as' access='read'/>"
" </interface>"
" <interface name='org.bluez.Device1'>"
"  <method name='Disconnect'/>"
"  <method name='Connect'/>"
"  <method name='ConnectProfile'><arg name='UUID' type='s'/></method>"
"  <method name='DisconnectProfile'><arg name='UUID' type='s'/></method>"
"  <method name='Pair'/>"
"  <method name='CancelPairing'/>"
"  <property name='Address' type='s' access='read'/>"
"  <property name='AddressType' type='s' access='read'/>"
"  <property name='Name' type='s' access='read'/>"
"  <property name='Alias' type='s' access='readwrite'/>"
"  <property name='Class' type='u' access='read'/>"
"  <property name='Appearance' type='q' access='read'/>"
"  <property name='Icon' type='s' access='read'/>"
"  <property name='Paired' type='b' access='read'/>"
"  <property name='Bonded' type='b' access='read'/>"
"  <property name='Trusted' type='b' access='readwrite'/>"
"  <property name='Blocked' type='b' access='readwrite'/>"
"  <property name='LegacyPairing' type='b' access='read'/>"
"  <property name='RSSI' type='n' access='read'/>"
"  <property name='Connected' type='b' access='read'/>"
"  <property name='UUIDs' type='as' access='read'/>"
"  <property name='Modalias' type='s' access='read'/>"
"  <property name='Adapter' type='o' access='read'/>"
"  <property name='ManufacturerData' type='a{qv}' access='read'/>"
"  <property name='ServiceData' type='a{sv}' access='read'/>"
"  <property name='TxPower' type='n' access='read'/>"
"  <property name='ServicesResolved' type='b' access='read'/>"
"  <property name='WakeAllowed' type='b' access='readwrite'/>"
" </interface>"
" <interface name='org.bluez.GattService1'>"
"  <property name='UUID' type='s' access='read'/>"
"  <property name='Device' type='o' access='read'/>"
"  <property name='Primary' type='b' access='read'/>"
"  <property name='Includes' type='ao' access='read'/>"
"  <property name='Handle' type='q' access='read'/>"
" </interface>"
" <interface name='org.bluez.GattCharacteristic1'>"
"  <method name='ReadValue'><arg name='options' type='a{sv}'/><arg name='value' type='ay' direction='out'/></method>"
"  <method name='WriteValue'><arg name='value' type='ay'/><arg name='options' type='a{sv}'/></method>"
"  <method name='AcquireWrite'><arg name='options' type='a{sv}'/><arg name='fd' type='h' direction='out'/><arg name='mtu' type='q' direction='out'/></method>"
"  <method name='AcquireNotify'><arg name='options' type='a{sv}'/><arg name='fd' type='h' direction='out'/><arg name='mtu' type='q' direction='out'/></method>"
"  <method name='StartNotify'/>"
"  <method name='StopNotify'/>"
"  <method name='Confirm'/>"
"  <property name='UUID' type='s' access='read'/>"
"  <property name='Service' type='o' access='read'/>"
"  <property name='Value' type='ay' access='read'/>"
"  <property name='Notifying' type='b' access='read'/>"
"  <property name='Flags' type='as' access='read'/>"
"  <property name='WriteAcquired' type='b' access='read'/>"
"  <property name='NotifyAcquired' type='b' access='read'/>"
"  <property name='Handle' type='q' access='read'/>"
"  <property name='MTU' type='q' access='read'/>"
" </interface>"
" <interface name='org.bluez.GattDescriptor1'>"
"  <method name='ReadValue'><arg name='options' type='a{sv}'/><arg name='value' type='ay' direction='out'/></method>"
"  <method name='WriteValue'><arg name='value' type='ay'/><arg name='options' type='a{sv}'/></method>"
"  <property name='UUID' type='s' access='read'/>"
"  <property name='Characteristic' type='o' access='read'/>"
"  <property name='Value' type='ay' access='read'/>"
"  <property name='Flags' type='as' access='read'/>"
"  <property name='Handle' type='q' access='read'/>"
" </interface>"
" <interface name='org.bgsync.Sim1'>"
"  <method name='AddAdapter'><arg name='address' type='s'/><arg name='name' type='s'/><arg name='adapter' type='o' direction='out'/></method>"
"  <method name='RemoveAdapter'><arg name='adapter' type='o'/></method>"
"  <method name='AddDevice'><arg name='description' type='a{sv}'/><arg name='address' type='s' direction='out'/></method>"
"  <method name='RemoveDevice'><arg name='address' type='s'/></method>"
"  <method name='ListDevices'><arg name='devices' type='aa{sv}' direction='out'/></method>"
"  <method name='SetInRange'><arg name='address' type='s'/><arg name='in_range' type='b'/></method>"
"  <method name='SetAdvertising'><arg name='address' type='s'/><arg name='advertising' type='b'/></method>"
"  <method name='SetAdvertisingData'><arg name='address' type='s'/><arg name='data' type='a{sv}'/></method>"
"  <method name='SetRSSI'><arg name='address' type='s'/><arg name='rssi' type='n'/></method>"
"  <method name='SetLinkRate'><arg name='address' type='s'/><arg name='bytes_per_second' type='t'/></method>"
"  <method name='SetLatency'><arg name='address' type='s'/><arg name='milliseconds' type='u'/></method>"
"  <method name='Stall'><arg name='address' type='s'/><arg name='stalled' type='b'/></method>"
"  <method name='DropLink'><arg name='address' type='s'/></method>"
"  <method name='Reboot'><arg name='address' type='s'/><arg name='seconds' type='d'/><arg name='new_address' type='s'/><arg name='new_name' type='s'/><arg name='address_after' type='s' direction='out'/></method>"
"  <method name='RestartBluez'/>"
"  <method name='Notify'><arg name='address' type='s'/><arg name='characteristic' type='s'/><arg name='value' type='ay'/></method>"
"  <method name='SetValue'><arg name='address' type='s'/><arg name='characteristic' type='s'/><arg name='value' type='ay'/></method>"
"  <method name='GetValue'><arg name='address' type='s'/><arg name='characteristic' type='s'/><arg name='value' type='ay' direction='out'/></method>"
"  <method name='Configure'><arg name='options' type='a{sv}'/></method>"
"  <method name='SetAcquireMTU'><arg name='address' type='s'/><arg name='mtu' type='i'/></method>"
"  <method name='SetAcquireError'><arg name='address' type='s'/><arg name='error' type='s'/></method>"
"  <method name='CloseAcquired'><arg name='address' type='s'/><arg name='which' type='s'/><arg name='closed' type='u' direction='out'/></method>"
"  <property name='Version' type='s' access='read'/>"
"  <property name='BluezRunning' type='b' access='read'/>"
" </interface>"
"</node>";

static GDBusNodeInfo *node_info;

GDBusInterfaceInfo *
sim_iface_info (const gchar *name)
{
	if (node_info == NULL) {
		g_autoptr(GError) error = NULL;
		node_info = g_dbus_node_info_new_for_xml (introspection_xml, &error);
		g_assert_no_error (error);
	}
	return g_dbus_node_info_lookup_interface (node_info, name);
}

void
sim_return_error (GDBusMethodInvocation *inv, const gchar *name,
		  const gchar *fmt, ...)
{
	va_list args;
	g_autofree gchar *msg = NULL;
	g_autofree gchar *full = g_strconcat ("org.bluez.Error.", name, NULL);

	va_start (args, fmt);
	msg = g_strdup_vprintf (fmt, args);
	va_end (args);
	if (g_str_has_prefix (name, "org."))
		g_dbus_method_invocation_return_dbus_error (inv, name, msg);
	else
		g_dbus_method_invocation_return_dbus_error (inv, full, msg);
}

static GVariant *
iface_props_variant (SimIface *iface)
{
	GVariantBuilder b;

	g_variant_builder_init (&b, G_VARIANT_TYPE ("a{sv}"));
	/* stable order: introspection order */
	for (guint i = 0; iface->info->properties && iface->info->properties[i]; i++) {
		const gchar *name = iface->info->properties[i]->name;
		GVariant *val = g_hash_table_lookup (iface->props, name);
		if (val != NULL)
			g_variant_builder_add (&b, "{sv}", name, val);
	}
	return g_variant_builder_end (&b);
}

static void
emit_props_changed (SimIface *iface, const gchar *prop, GVariant *value)
{
	GVariantBuilder changed;
	GVariantBuilder inval;
	SimObject *obj = iface->obj;

	if (!obj->exported || (obj->managed && !obj->bus->online))
		return;
	g_variant_builder_init (&changed, G_VARIANT_TYPE ("a{sv}"));
	g_variant_builder_init (&inval, G_VARIANT_TYPE ("as"));
	if (value != NULL)
		g_variant_builder_add (&changed, "{sv}", prop, value);
	else
		g_variant_builder_add (&inval, "s", prop);
	g_dbus_connection_emit_signal (obj->bus->conn, NULL, obj->path,
				       "org.freedesktop.DBus.Properties",
				       "PropertiesChanged",
				       g_variant_new ("(s@a{sv}@as)",
						      iface->info->name,
						      g_variant_builder_end (&changed),
						      g_variant_builder_end (&inval)),
				       NULL);
}

static void
iface_set (SimIface *iface, const gchar *prop, GVariant *value, gboolean force)
{
	GVariant *old = g_hash_table_lookup (iface->props, prop);

	if (value != NULL)
		g_variant_ref_sink (value);
	if (!force) {
		if (old == NULL && value == NULL)
			return;
		if (old != NULL && value != NULL && g_variant_equal (old, value)) {
			g_variant_unref (value);
			return;
		}
	}
	if (value != NULL)
		g_hash_table_replace (iface->props, g_strdup (prop), value);
	else
		g_hash_table_remove (iface->props, prop);
	emit_props_changed (iface, prop, value);
}

void
sim_iface_set (SimIface *iface, const gchar *prop, GVariant *value)
{
	iface_set (iface, prop, value, FALSE);
}

void
sim_iface_set_force (SimIface *iface, const gchar *prop, GVariant *value)
{
	iface_set (iface, prop, value, TRUE);
}

GVariant *
sim_iface_get (SimIface *iface, const gchar *prop)
{
	return g_hash_table_lookup (iface->props, prop);
}

static void
vt_method_call (GDBusConnection *conn, const gchar *sender, const gchar *path,
		const gchar *iface_name, const gchar *method, GVariant *params,
		GDBusMethodInvocation *inv, gpointer user_data)
{
	SimIface *iface = user_data;

	if (iface->method == NULL) {
		sim_return_error (inv, "NotSupported", "Operation is not supported");
		return;
	}
	iface->method (iface, sender, method, params, inv);
}

static GVariant *
vt_get_property (GDBusConnection *conn, const gchar *sender, const gchar *path,
		 const gchar *iface_name, const gchar *prop, GError **error,
		 gpointer user_data)
{
	SimIface *iface = user_data;
	GVariant *v = g_hash_table_lookup (iface->props, prop);

	if (v == NULL) {
		g_set_error (error, G_DBUS_ERROR, G_DBUS_ERROR_INVALID_ARGS,
			     "No such property '%s'", prop);
		return NULL;
	}
	return g_variant_ref (v);
}

static gboolean
vt_set_property (GDBusConnection *conn, const gchar *sender, const gchar *path,
		 const gchar *iface_name, const gchar *prop, GVariant *value,
		 GError **error, gpointer user_data)
{
	SimIface *iface = user_data;

	if (iface->set == NULL) {
		g_set_error (error, G_DBUS_ERROR, G_DBUS_ERROR_PROPERTY_READ_ONLY,
			     "Property '%s' is not writable", prop);
		return FALSE;
	}
	return iface->set (iface, prop, value, error);
}

static const GDBusInterfaceVTable iface_vtable = {
	vt_method_call, vt_get_property, vt_set_property, { 0 }
};

static void
om_method_call (GDBusConnection *conn, const gchar *sender, const gchar *path,
		const gchar *iface_name, const gchar *method, GVariant *params,
		GDBusMethodInvocation *inv, gpointer user_data)
{
	SimBus *bus = user_data;
	GVariantBuilder b;
	GHashTableIter it;
	gpointer k, v;

	g_variant_builder_init (&b, G_VARIANT_TYPE ("a{oa{sa{sv}}}"));
	g_hash_table_iter_init (&it, bus->objects);
	while (g_hash_table_iter_next (&it, &k, &v)) {
		SimObject *obj = v;
		GVariantBuilder ib;

		if (!obj->exported)
			continue;
		g_variant_builder_init (&ib, G_VARIANT_TYPE ("a{sa{sv}}"));
		for (guint i = 0; i < obj->ifaces->len; i++) {
			SimIface *iface = g_ptr_array_index (obj->ifaces, i);
			g_variant_builder_add (&ib, "{s@a{sv}}", iface->info->name,
					       iface_props_variant (iface));
		}
		g_variant_builder_add (&b, "{oa{sa{sv}}}", obj->path, &ib);
	}
	g_dbus_method_invocation_return_value (inv, g_variant_new ("(a{oa{sa{sv}}})", &b));
}

static const GDBusInterfaceVTable om_vtable = { om_method_call, NULL, NULL, { 0 } };

SimBus *
sim_bus_new (GDBusConnection *conn)
{
	SimBus *bus = g_new0 (SimBus, 1);

	bus->conn = g_object_ref (conn);
	bus->objects = g_hash_table_new (g_str_hash, g_str_equal);
	return bus;
}

static void
iface_register (SimIface *iface)
{
	g_autoptr(GError) error = NULL;
	SimObject *obj = iface->obj;

	if (iface->reg_id != 0)
		return;
	iface->reg_id = g_dbus_connection_register_object (obj->bus->conn, obj->path,
							   iface->info, &iface_vtable,
							   iface, NULL, &error);
	if (iface->reg_id == 0)
		g_warning ("cannot export %s on %s: %s", iface->info->name,
			   obj->path, error->message);
}

static void
iface_unregister (SimIface *iface)
{
	if (iface->reg_id == 0)
		return;
	g_dbus_connection_unregister_object (iface->obj->bus->conn, iface->reg_id);
	iface->reg_id = 0;
}

static void
emit_added (SimObject *obj, SimIface *only)
{
	GVariantBuilder ib;

	if (!obj->managed || !obj->bus->online)
		return;
	g_variant_builder_init (&ib, G_VARIANT_TYPE ("a{sa{sv}}"));
	for (guint i = 0; i < obj->ifaces->len; i++) {
		SimIface *iface = g_ptr_array_index (obj->ifaces, i);
		if (only != NULL && iface != only)
			continue;
		g_variant_builder_add (&ib, "{s@a{sv}}", iface->info->name,
				       iface_props_variant (iface));
	}
	g_dbus_connection_emit_signal (obj->bus->conn, NULL, "/",
				       "org.freedesktop.DBus.ObjectManager",
				       "InterfacesAdded",
				       g_variant_new ("(oa{sa{sv}})", obj->path, &ib),
				       NULL);
}

static void
emit_removed (SimObject *obj, SimIface *only)
{
	GVariantBuilder b;

	if (!obj->managed || !obj->bus->online)
		return;
	g_variant_builder_init (&b, G_VARIANT_TYPE ("as"));
	for (guint i = 0; i < obj->ifaces->len; i++) {
		SimIface *iface = g_ptr_array_index (obj->ifaces, i);
		if (only != NULL && iface != only)
			continue;
		g_variant_builder_add (&b, "s", iface->info->name);
	}
	g_dbus_connection_emit_signal (obj->bus->conn, NULL, "/",
				       "org.freedesktop.DBus.ObjectManager",
				       "InterfacesRemoved",
				       g_variant_new ("(oas)", obj->path, &b), NULL);
}

/* bluetoothd going away and coming back: all managed objects leave the bus
 * silently (clients see the name owner change) and return with it */
void
sim_bus_set_online (SimBus *bus, gboolean online)
{
	GHashTableIter it;
	gpointer k, v;

	if (bus->online == online)
		return;
	bus->online = online;
	if (online) {
		g_autoptr(GError) error = NULL;
		bus->om_reg = g_dbus_connection_register_object (bus->conn, "/",
				sim_iface_info ("org.freedesktop.DBus.ObjectManager"),
				&om_vtable, bus, NULL, &error);
		if (bus->om_reg == 0)
			g_warning ("cannot export the ObjectManager: %s", error->message);
	} else if (bus->om_reg != 0) {
		g_dbus_connection_unregister_object (bus->conn, bus->om_reg);
		bus->om_reg = 0;
	}
	g_hash_table_iter_init (&it, bus->objects);
	while (g_hash_table_iter_next (&it, &k, &v)) {
		SimObject *obj = v;
		if (!obj->exported)
			continue;
		for (guint i = 0; i < obj->ifaces->len; i++) {
			if (online)
				iface_register (g_ptr_array_index (obj->ifaces, i));
			else
				iface_unregister (g_ptr_array_index (obj->ifaces, i));
		}
	}
}

SimObject *
sim_object_new (SimBus *bus, const gchar *path, gboolean managed)
{
	SimObject *obj = g_new0 (SimObject, 1);

	obj->bus = bus;
	obj->path = g_strdup (path);
	obj->managed = managed;
	obj->ifaces = g_ptr_array_new ();
	return obj;
}

static gboolean
obj_live (SimObject *obj)
{
	return obj->exported && (!obj->managed || obj->bus->online);
}

SimIface *
sim_object_add_iface (SimObject *obj, const gchar *name, SimMethodFunc method,
		      SimSetFunc set, gpointer user_data)
{
	SimIface *iface = g_new0 (SimIface, 1);

	iface->obj = obj;
	iface->info = sim_iface_info (name);
	g_assert (iface->info != NULL);
	iface->props = g_hash_table_new_full (g_str_hash, g_str_equal, g_free,
					      (GDestroyNotify) g_variant_unref);
	iface->method = method;
	iface->set = set;
	iface->user_data = user_data;
	g_ptr_array_add (obj->ifaces, iface);
	if (obj_live (obj)) {
		iface_register (iface);
		emit_added (obj, iface);
	}
	return iface;
}

SimIface *
sim_object_get_iface (SimObject *obj, const gchar *name)
{
	for (guint i = 0; i < obj->ifaces->len; i++) {
		SimIface *iface = g_ptr_array_index (obj->ifaces, i);
		if (g_strcmp0 (iface->info->name, name) == 0)
			return iface;
	}
	return NULL;
}

static void
iface_free (SimIface *iface)
{
	iface_unregister (iface);
	g_hash_table_unref (iface->props);
	g_free (iface);
}

void
sim_object_remove_iface (SimObject *obj, const gchar *name)
{
	SimIface *iface = sim_object_get_iface (obj, name);

	if (iface == NULL)
		return;
	if (obj_live (obj))
		emit_removed (obj, iface);
	g_ptr_array_remove (obj->ifaces, iface);
	iface_free (iface);
}

void
sim_object_export (SimObject *obj)
{
	if (obj->exported)
		return;
	obj->exported = TRUE;
	if (obj->managed)
		g_hash_table_insert (obj->bus->objects, obj->path, obj);
	if (!obj_live (obj))
		return;
	for (guint i = 0; i < obj->ifaces->len; i++)
		iface_register (g_ptr_array_index (obj->ifaces, i));
	emit_added (obj, NULL);
}

void
sim_object_unexport (SimObject *obj)
{
	if (!obj->exported)
		return;
	if (obj_live (obj))
		emit_removed (obj, NULL);
	for (guint i = 0; i < obj->ifaces->len; i++)
		iface_unregister (g_ptr_array_index (obj->ifaces, i));
	if (obj->managed)
		g_hash_table_remove (obj->bus->objects, obj->path);
	obj->exported = FALSE;
}

void
sim_object_free (SimObject *obj)
{
	if (obj == NULL)
		return;
	sim_object_unexport (obj);
	for (guint i = 0; i < obj->ifaces->len; i++)
		iface_free (g_ptr_array_index (obj->ifaces, i));
	g_ptr_array_unref (obj->ifaces);
	g_free (obj->path);
	g_free (obj);
}
