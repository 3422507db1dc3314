/* bgs-sim.c: adapters, device views, discovery, links and the radio model */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "bgs-sim.h"

typedef struct {
	SimAdapter *adapter;
	gchar *owner;
	guint watch;
	gboolean started;
	GStrv uuids;
	gint16 rssi;		/* G_MININT16: none */
	gchar *transport;
	gchar *pattern;
} SimDiscoveryClient;

static void adapter_update_discovering (SimAdapter *adapter);
static void device_connect_attempt (SimDevice *dev);
static void device_check_temporary (SimDevice *dev);

gboolean
sim_address_valid (const gchar *address)
{
	if (address == NULL || strlen (address) != 17)
		return FALSE;
	for (guint i = 0; i < 17; i++) {
		if (i % 3 == 2) {
			if (address[i] != ':')
				return FALSE;
		} else if (!g_ascii_isxdigit (address[i])) {
			return FALSE;
		}
	}
	return TRUE;
}

gchar *
sim_address_add (const gchar *address, gint delta)
{
	guint64 v = 0;
	guint b[6];

	if (sscanf (address, "%02x:%02x:%02x:%02x:%02x:%02x",
		    &b[0], &b[1], &b[2], &b[3], &b[4], &b[5]) != 6)
		return g_strdup (address);
	for (guint i = 0; i < 6; i++)
		v = (v << 8) | b[i];
	v = (v + delta) & 0xffffffffffffULL;
	return g_strdup_printf ("%02X:%02X:%02X:%02X:%02X:%02X",
				(guint) (v >> 40) & 0xff, (guint) (v >> 32) & 0xff,
				(guint) (v >> 24) & 0xff, (guint) (v >> 16) & 0xff,
				(guint) (v >> 8) & 0xff, (guint) v & 0xff);
}

static gchar *
device_path (SimAdapter *adapter, const gchar *address)
{
	g_autofree gchar *a = g_ascii_strup (address, -1);

	g_strdelimit (a, ":", '_');
	return g_strdup_printf ("%s/dev_%s", adapter->path, a);
}

SimPeer *
sim_peer_find (Sim *sim, const gchar *address)
{
	g_autofree gchar *up = NULL;

	if (address == NULL)
		return NULL;
	if (g_str_has_prefix (address, "/org/bluez/")) {
		SimAdapter *a = sim_adapter_find (sim, address);
		return a != NULL ? a->peer : NULL;
	}
	up = g_ascii_strup (address, -1);
	return g_hash_table_lookup (sim->peers, up);
}

SimAdapter *
sim_adapter_find (Sim *sim, const gchar *path_or_address)
{
	for (guint i = 0; i < sim->adapters->len; i++) {
		SimAdapter *a = g_ptr_array_index (sim->adapters, i);
		if (g_strcmp0 (a->path, path_or_address) == 0 ||
		    g_ascii_strcasecmp (a->address, path_or_address) == 0 ||
		    g_strcmp0 (a->path + strlen ("/org/bluez/"), path_or_address) == 0)
			return a;
	}
	return NULL;
}

/* ---- what a peer advertises ---- */

/* the @i-th advert of a hosting adapter that is on the air, or NULL */
static SimAdvert *
host_advert (SimPeer *peer, guint i)
{
	if (peer->host == NULL)
		return NULL;
	for (guint k = 0; k < peer->host->adverts->len; k++) {
		SimAdvert *a = g_ptr_array_index (peer->host->adverts, k);
		if (!a->off_air && i-- == 0)
			return a;
	}
	return NULL;
}

const gchar *
sim_peer_adv_name (SimPeer *peer)
{
	if (peer->host != NULL) {
		SimAdvert *a;
		for (guint i = 0; (a = host_advert (peer, i)) != NULL; i++)
			if (a->local_name != NULL)
				return a->local_name;
		return peer->host->alias;
	}
	return peer->name;
}

GStrv
sim_peer_adv_uuids (SimPeer *peer)
{
	g_autoptr(GPtrArray) all = NULL;

	if (peer->host == NULL)
		return g_strdupv (peer->uuids);
	all = g_ptr_array_new ();
	for (guint i = 0; host_advert (peer, i) != NULL; i++) {
		SimAdvert *a = host_advert (peer, i);
		for (guint j = 0; a->uuids != NULL && a->uuids[j] != NULL; j++) {
			gboolean dup = FALSE;
			for (guint k = 0; k < all->len; k++)
				dup |= g_ascii_strcasecmp (all->pdata[k], a->uuids[j]) == 0;
			if (!dup)
				g_ptr_array_add (all, g_ascii_strdown (a->uuids[j], -1));
		}
	}
	g_ptr_array_add (all, NULL);
	return (GStrv) g_ptr_array_free (g_steal_pointer (&all), FALSE);
}

GVariant *
sim_peer_adv_mfr (SimPeer *peer)
{
	if (peer->host == NULL)
		return peer->mfr_data;
	for (guint i = 0; host_advert (peer, i) != NULL; i++) {
		SimAdvert *a = host_advert (peer, i);
		if (a->mfr_data != NULL)
			return a->mfr_data;
	}
	return NULL;
}

GVariant *
sim_peer_adv_svc (SimPeer *peer)
{
	if (peer->host == NULL)
		return peer->svc_data;
	for (guint i = 0; host_advert (peer, i) != NULL; i++) {
		SimAdvert *a = host_advert (peer, i);
		if (a->svc_data != NULL)
			return a->svc_data;
	}
	return NULL;
}

/* in range, up, and sending adverts (or inquiry-scannable) */
gboolean
sim_peer_visible (SimPeer *peer)
{
	if (!peer->in_range || peer->rebooting)
		return FALSE;
	if (peer->host != NULL)
		return peer->host->powered && peer->host->sim->bluez_up &&
		       (host_advert (peer, 0) != NULL || peer->host->discoverable);
	return peer->advertising;
}

static gboolean
peer_connectable (SimPeer *peer)
{
	if (!peer->in_range || peer->rebooting)
		return FALSE;
	if (peer->host != NULL)
		return peer->host->powered && peer->host->sim->bluez_up;
	return peer->connectable;
}

/* ---- device views ---- */

static void
device_set_bool (SimDevice *dev, const gchar *prop, gboolean v)
{
	sim_iface_set (dev->iface, prop, g_variant_new_boolean (v));
}

static void
device_update_alias (SimDevice *dev)
{
	if (dev->alias != NULL)
		return;
	if (dev->name != NULL) {
		sim_iface_set (dev->iface, "Alias", g_variant_new_string (dev->name));
	} else {
		g_autofree gchar *a = g_strdup (dev->address);
		g_strdelimit (a, ":", '-');
		sim_iface_set (dev->iface, "Alias", g_variant_new_string (a));
	}
}

static gboolean
device_set_prop (SimIface *iface, const gchar *prop, GVariant *value, GError **error)
{
	SimDevice *dev = iface->user_data;

	if (g_strcmp0 (prop, "Trusted") == 0) {
		dev->trusted = g_variant_get_boolean (value);
		device_set_bool (dev, "Trusted", dev->trusted);
		device_check_temporary (dev);
	} else if (g_strcmp0 (prop, "Blocked") == 0) {
		dev->blocked = g_variant_get_boolean (value);
		device_set_bool (dev, "Blocked", dev->blocked);
		if (dev->blocked && dev->link != NULL)
			sim_link_drop (dev->link, "blocked");
	} else if (g_strcmp0 (prop, "Alias") == 0) {
		const gchar *alias = g_variant_get_string (value, NULL);
		g_clear_pointer (&dev->alias, g_free);
		if (alias[0] == '\0') {
			device_update_alias (dev);
		} else {
			sim_iface_set (dev->iface, "Alias", g_variant_new_string (alias));
			dev->alias = g_strdup (alias);
		}
	} else if (g_strcmp0 (prop, "WakeAllowed") == 0) {
		sim_iface_set (dev->iface, "WakeAllowed", g_variant_ref (value));
	} else {
		g_set_error (error, G_DBUS_ERROR, G_DBUS_ERROR_PROPERTY_READ_ONLY,
			     "Property '%s' is not writable", prop);
		return FALSE;
	}
	return TRUE;
}

static void device_method (SimIface *iface, const gchar *sender, const gchar *method,
			   GVariant *params, GDBusMethodInvocation *inv);

SimDevice *
sim_device_ensure (SimAdapter *adapter, const gchar *address, gboolean seen)
{
	SimDevice *dev;
	g_autofree gchar *up = g_ascii_strup (address, -1);
	SimPeer *peer;

	dev = g_hash_table_lookup (adapter->devices, up);
	if (dev != NULL)
		return dev;
	dev = g_new0 (SimDevice, 1);
	dev->adapter = adapter;
	dev->address = g_steal_pointer (&up);
	dev->path = device_path (adapter, dev->address);
	dev->gatt_objs = g_ptr_array_new ();
	dev->rchrcs = g_ptr_array_new ();
	dev->pending = g_ptr_array_new_with_free_func (g_object_unref);
	dev->obj = sim_object_new (adapter->sim->bus, dev->path, TRUE);
	dev->iface = sim_object_add_iface (dev->obj, "org.bluez.Device1",
					   device_method, device_set_prop, dev);
	peer = sim_peer_find (adapter->sim, dev->address);
	sim_iface_set (dev->iface, "Address", g_variant_new_string (dev->address));
	sim_iface_set (dev->iface, "AddressType",
		       g_variant_new_string (peer != NULL ? peer->address_type : "public"));
	device_update_alias (dev);
	device_set_bool (dev, "Paired", FALSE);
	device_set_bool (dev, "Bonded", FALSE);
	device_set_bool (dev, "Trusted", FALSE);
	device_set_bool (dev, "Blocked", FALSE);
	device_set_bool (dev, "LegacyPairing", FALSE);
	device_set_bool (dev, "Connected", FALSE);
	sim_iface_set (dev->iface, "UUIDs", g_variant_new_strv (NULL, 0));
	sim_iface_set (dev->iface, "Adapter", g_variant_new_object_path (adapter->path));
	device_set_bool (dev, "ServicesResolved", FALSE);
	if (peer != NULL)
		sim_device_update_from_peer (dev, peer, seen);
	g_hash_table_insert (adapter->devices, dev->address, dev);
	sim_object_export (dev->obj);
	g_debug ("%s: device %s created", adapter->path, dev->address);
	return dev;
}

static void
device_free (SimDevice *dev)
{
	if (dev->link != NULL)
		sim_link_drop (dev->link, "device removed");
	sim_gatt_clear (dev, FALSE);
	sim_gatt_orphan_device (dev);
	for (guint i = 0; i < dev->pending->len; i++)
		sim_return_error (g_ptr_array_index (dev->pending, i), "Failed",
				  "Device removed");
	g_ptr_array_unref (dev->pending);
	g_clear_handle_id (&dev->temp_id, g_source_remove);
	g_clear_handle_id (&dev->connect_id, g_source_remove);
	g_free (dev->alias);
	sim_object_free (dev->obj);
	g_ptr_array_unref (dev->gatt_objs);
	g_ptr_array_unref (dev->rchrcs);
	g_free (dev->connect_profile);
	g_free (dev->name);
	g_strfreev (dev->uuids);
	g_free (dev->path);
	g_free (dev->address);
	g_free (dev);
}

static void
device_remove (SimDevice *dev)
{
	g_debug ("%s: device %s removed", dev->adapter->path, dev->address);
	g_hash_table_steal (dev->adapter->devices, dev->address);
	device_free (dev);
}

static gboolean
device_is_temporary (SimDevice *dev)
{
	return !dev->paired && !dev->trusted && !dev->connected &&
	       dev->pending->len == 0;
}

static gboolean
device_temp_cb (gpointer data)
{
	SimDevice *dev = data;

	dev->temp_id = 0;
	if (device_is_temporary (dev) && g_hash_table_size (dev->adapter->discovery) == 0)
		device_remove (dev);
	return G_SOURCE_REMOVE;
}

/* bluetoothd drops temporary devices a while after discovery ends */
static void
device_check_temporary (SimDevice *dev)
{
	gboolean discovering = FALSE;
	GHashTableIter it;
	gpointer v;

	g_hash_table_iter_init (&it, dev->adapter->discovery);
	while (g_hash_table_iter_next (&it, NULL, &v))
		discovering |= ((SimDiscoveryClient *) v)->started;
	if (device_is_temporary (dev) && !discovering) {
		if (dev->temp_id == 0)
			dev->temp_id = g_timeout_add (dev->adapter->sim->temporary_timeout_ms,
						      device_temp_cb, dev);
	} else {
		g_clear_handle_id (&dev->temp_id, g_source_remove);
	}
}

void
sim_device_maybe_remove (SimDevice *dev)
{
	device_check_temporary (dev);
}

void
sim_device_add_uuids (SimDevice *dev, const gchar *const *uuids)
{
	/* union of advertised and resolved service uuids, like bluetoothd */
	g_autoptr(GPtrArray) all = g_ptr_array_new_with_free_func (g_free);

	for (guint i = 0; dev->uuids != NULL && dev->uuids[i] != NULL; i++)
		g_ptr_array_add (all, g_strdup (dev->uuids[i]));
	for (guint i = 0; uuids != NULL && uuids[i] != NULL; i++) {
		gboolean dup = FALSE;
		for (guint k = 0; k < all->len; k++)
			dup |= g_ascii_strcasecmp (all->pdata[k], uuids[i]) == 0;
		if (!dup)
			g_ptr_array_add (all, g_ascii_strdown (uuids[i], -1));
	}
	g_ptr_array_sort (all, (GCompareFunc) g_strcmp0);
	g_ptr_array_add (all, NULL);
	g_strfreev (dev->uuids);
	dev->uuids = g_strdupv ((GStrv) all->pdata);
	sim_iface_set (dev->iface, "UUIDs",
		       g_variant_new_strv ((const gchar *const *) dev->uuids, -1));
}

void
sim_device_update_from_peer (SimDevice *dev, SimPeer *peer, gboolean seen)
{
	const gchar *name = sim_peer_adv_name (peer);
	g_auto(GStrv) uuids = sim_peer_adv_uuids (peer);
	GVariant *mfr = sim_peer_adv_mfr (peer);
	GVariant *svc = sim_peer_adv_svc (peer);

	if (name != NULL && g_strcmp0 (name, dev->name) != 0) {
		g_free (dev->name);
		dev->name = g_strdup (name);
		sim_iface_set (dev->iface, "Name", g_variant_new_string (name));
		device_update_alias (dev);
	}
	sim_device_add_uuids (dev, (const gchar *const *) uuids);
	if (peer->modalias != NULL)
		sim_iface_set (dev->iface, "Modalias", g_variant_new_string (peer->modalias));
	if (peer->appearance != 0)
		sim_iface_set (dev->iface, "Appearance", g_variant_new_uint16 (peer->appearance));
	if (peer->type != SIM_TYPE_LE)
		sim_iface_set (dev->iface, "Class", g_variant_new_uint32 (0x240404));
	if (!seen)
		return;
	if (mfr != NULL)
		sim_iface_set (dev->iface, "ManufacturerData", g_variant_ref (mfr));
	if (svc != NULL)
		sim_iface_set (dev->iface, "ServiceData", g_variant_ref (svc));
	{
		/* bluetoothd reports RSSI changes of 8 dBm or more only */
		GVariant *old = sim_iface_get (dev->iface, "RSSI");
		if (old == NULL || ABS (g_variant_get_int16 (old) - peer->rssi) >= 8)
			sim_iface_set (dev->iface, "RSSI", g_variant_new_int16 (peer->rssi));
	}
	if (peer->tx_power != 127)
		sim_iface_set (dev->iface, "TxPower", g_variant_new_int16 (peer->tx_power));
}

/* ---- discovery ---- */

static gboolean
client_matches (SimDiscoveryClient *c, SimPeer *peer)
{
	if (!c->started)
		return FALSE;
	if (c->transport != NULL) {
		if (g_strcmp0 (c->transport, "le") == 0 && peer->type == SIM_TYPE_BREDR)
			return FALSE;
		if (g_strcmp0 (c->transport, "bredr") == 0 && peer->type == SIM_TYPE_LE)
			return FALSE;
	}
	if (c->rssi != G_MININT16 && peer->rssi < c->rssi)
		return FALSE;
	if (c->pattern != NULL && c->pattern[0] != '\0') {
		const gchar *name = sim_peer_adv_name (peer);
		if (!g_str_has_prefix (peer->address, c->pattern) &&
		    (name == NULL || !g_str_has_prefix (name, c->pattern)))
			return FALSE;
	}
	if (c->uuids != NULL && c->uuids[0] != NULL) {
		g_auto(GStrv) uuids = sim_peer_adv_uuids (peer);
		gboolean any = FALSE;
		for (guint i = 0; c->uuids[i] != NULL; i++)
			for (guint j = 0; uuids != NULL && uuids[j] != NULL; j++)
				any |= g_ascii_strcasecmp (c->uuids[i], uuids[j]) == 0;
		if (!any)
			return FALSE;
	}
	return TRUE;
}

static gboolean
adapter_discovering (SimAdapter *adapter)
{
	GHashTableIter it;
	gpointer v;

	g_hash_table_iter_init (&it, adapter->discovery);
	while (g_hash_table_iter_next (&it, NULL, &v))
		if (((SimDiscoveryClient *) v)->started)
			return TRUE;
	return FALSE;
}

/* ---- bluetoothd's deviceinfo plugin ---- */

typedef struct {
	Sim *sim;
	SimAdapter *adapter;
	gchar *address;
} SimPnpRead;

/* a Modalias of a DIS PnP ID, as bluetoothd 5.66 makes it (source 1 is the
 * Bluetooth SIG's vendor ids, 2 USB's; others and short values: none) */
static void
device_set_pnp_id (SimDevice *dev, const guint8 *v, gsize len)
{
	g_autofree gchar *modalias = NULL;
	const gchar *source;

	if (len < 7)
		return;
	source = v[0] == 1 ? "bluetooth" : v[0] == 2 ? "usb" : NULL;
	if (source == NULL)
		return;
	modalias = g_strdup_printf ("%s:v%04Xp%04Xd%04X", source, v[1] | v[2] << 8,
				    v[3] | v[4] << 8, v[5] | v[6] << 8);
	sim_iface_set (dev->iface, "Modalias", g_variant_new_string (modalias));
}

static void
pnp_read_cb (GObject *source, GAsyncResult *res, gpointer data)
{
	SimPnpRead *r = data;
	g_autoptr(GError) error = NULL;
	g_autoptr(GVariant) ret = g_dbus_connection_call_finish (G_DBUS_CONNECTION (source), res, &error);
	SimDevice *dev = NULL;

	if (ret != NULL && g_ptr_array_find (r->sim->adapters, r->adapter, NULL))
		dev = g_hash_table_lookup (r->adapter->devices, r->address);
	if (dev != NULL && dev->iface != NULL && dev->link != NULL) {
		g_autoptr(GVariant) v = g_variant_get_child_value (ret, 0);
		gsize len = 0;
		const guint8 *b = g_variant_get_fixed_array (v, &len, 1);
		device_set_pnp_id (dev, b, len);
	} else if (ret == NULL) {
		g_debug ("PnP ID read from %s failed: %s", r->address, error->message);
	}
	g_free (r->address);
	g_free (r);
}

/* on every connection bluetoothd's deviceinfo plugin reads the peer's
 * Device Information PnP ID and sets Modalias from it (seen in the VM tier
 * with bgsync-wearable) */
void
sim_device_read_pnp_id (SimDevice *dev, SimPeer *peer)
{
	g_autoptr(GPtrArray) svcs = g_ptr_array_new ();
	SimGattChrc *pnp = NULL;

	sim_peer_collect_services (peer, svcs);
	for (guint i = 0; i < svcs->len && pnp == NULL; i++) {
		SimGattSvc *svc = g_ptr_array_index (svcs, i);
		if (g_ascii_strcasecmp (svc->uuid, "0000180a-0000-1000-8000-00805f9b34fb") != 0)
			continue;
		for (guint j = 0; j < svc->chrcs->len && pnp == NULL; j++) {
			SimGattChrc *c = g_ptr_array_index (svc->chrcs, j);
			if (g_ascii_strcasecmp (c->uuid, "00002a50-0000-1000-8000-00805f9b34fb") == 0)
				pnp = c;
		}
	}
	if (pnp == NULL)
		return;
	if (pnp->svc->app == NULL) {
		gsize len = 0;
		const guint8 *b = pnp->value != NULL ? g_bytes_get_data (pnp->value, &len) : NULL;
		device_set_pnp_id (dev, b, len);
	} else {
		SimApp *app = pnp->svc->app;
		SimPnpRead *r = g_new0 (SimPnpRead, 1);
		GVariantBuilder o;

		r->sim = dev->adapter->sim;
		r->adapter = dev->adapter;
		r->address = g_strdup (dev->address);
		g_variant_builder_init (&o, G_VARIANT_TYPE ("a{sv}"));
		g_variant_builder_add (&o, "{sv}", "link", g_variant_new_string ("LE"));
		if (dev->link != NULL)
			g_variant_builder_add (&o, "{sv}", "mtu", g_variant_new_uint16 (dev->link->mtu));
		g_dbus_connection_call (app->adapter->sim->conn, app->owner, pnp->app_path,
					"org.bluez.GattCharacteristic1", "ReadValue",
					g_variant_new ("(a{sv})", &o), G_VARIANT_TYPE ("(ay)"),
					G_DBUS_CALL_FLAGS_NO_AUTO_START, 10000, NULL, pnp_read_cb, r);
	}
}

/* one advertising report (or inquiry result) of @peer reaching @adapter */
static void
adapter_sees (SimAdapter *adapter, SimPeer *peer)
{
	GHashTableIter it;
	gpointer v;
	gboolean match = FALSE;
	SimDevice *dev;

	if (!adapter->powered || peer->host == adapter)
		return;
	g_hash_table_iter_init (&it, adapter->discovery);
	while (g_hash_table_iter_next (&it, NULL, &v))
		match |= client_matches (v, peer);
	dev = g_hash_table_lookup (adapter->devices, peer->address);
	if (match) {
		dev = sim_device_ensure (adapter, peer->address, TRUE);
		sim_device_update_from_peer (dev, peer, TRUE);
		device_check_temporary (dev);
	} else if (dev != NULL) {
		sim_device_update_from_peer (dev, peer, FALSE);
	}
	if (dev != NULL && dev->connect_id != 0)
		device_connect_attempt (dev);
	sim_monitor_seen (adapter, peer);
}

static gboolean
link_peer_gone (SimLink *link)
{
	SimPeer *a = link->central->adapter->peer;

	return !link->peer->in_range || !a->in_range;
}

static gboolean
supervision_cb (gpointer data)
{
	SimLink *link = data;

	link->supervision_id = 0;
	sim_link_drop (link, "supervision timeout");
	return G_SOURCE_REMOVE;
}

static void
links_check_range (Sim *sim)
{
	g_autoptr(GPtrArray) copy = g_ptr_array_copy (sim->links, NULL, NULL);

	for (guint i = 0; i < copy->len; i++) {
		SimLink *link = g_ptr_array_index (copy, i);
		if (link_peer_gone (link)) {
			if (link->supervision_id == 0)
				link->supervision_id = g_timeout_add (sim->supervision_timeout_ms,
								      supervision_cb, link);
		} else {
			g_clear_handle_id (&link->supervision_id, g_source_remove);
		}
	}
}

/* something observable about @peer changed: tell every adapter */
void
sim_peer_changed (SimPeer *peer)
{
	Sim *sim = peer->sim;
	gboolean visible = sim_peer_visible (peer);

	for (guint i = 0; i < sim->adapters->len; i++) {
		SimAdapter *a = g_ptr_array_index (sim->adapters, i);
		if (a == peer->host || !a->powered)
			continue;
		if (visible) {
			adapter_sees (a, peer);
		} else {
			SimDevice *dev = g_hash_table_lookup (a->devices, peer->address);
			sim_monitor_lost (a, peer);
			if (dev != NULL && peer_connectable (peer) && dev->connect_id != 0)
				device_connect_attempt (dev);
		}
	}
	links_check_range (sim);
}

static void
discovery_client_free (SimDiscoveryClient *c)
{
	if (c->watch != 0)
		g_bus_unwatch_name (c->watch);
	g_strfreev (c->uuids);
	g_free (c->transport);
	g_free (c->pattern);
	g_free (c->owner);
	g_free (c);
}

static void
adapter_update_discovering (SimAdapter *adapter)
{
	gboolean on = adapter_discovering (adapter) && adapter->powered;
	GVariant *old = sim_iface_get (adapter->iface, "Discovering");
	gboolean was = old != NULL && g_variant_get_boolean (old);
	GHashTableIter it;
	gpointer v;
	g_autoptr(GPtrArray) devs = NULL;

	sim_iface_set (adapter->iface, "Discovering", g_variant_new_boolean (on));
	if (on) {
		/* every visible peer reports at once: filters may have changed */
		GHashTableIter pit;
		gpointer pv;
		g_hash_table_iter_init (&pit, adapter->sim->peers);
		while (g_hash_table_iter_next (&pit, NULL, &pv))
			if (sim_peer_visible (pv))
				adapter_sees (adapter, pv);
		return;
	}
	if (!was)
		return;
	/* discovery ended: RSSI is no longer valid, temporary devices expire */
	devs = g_ptr_array_new ();
	g_hash_table_iter_init (&it, adapter->devices);
	while (g_hash_table_iter_next (&it, NULL, &v))
		g_ptr_array_add (devs, v);
	for (guint i = 0; i < devs->len; i++) {
		SimDevice *dev = g_ptr_array_index (devs, i);
		sim_iface_set (dev->iface, "RSSI", NULL);
		sim_iface_set (dev->iface, "TxPower", NULL);
		device_check_temporary (dev);
	}
}

static void
discovery_owner_vanished (GDBusConnection *conn, const gchar *name, gpointer data)
{
	SimDiscoveryClient *c = data;
	SimAdapter *adapter = c->adapter;

	g_debug ("%s: discovery client %s left", adapter->path, name);
	g_hash_table_remove (adapter->discovery, name);
	adapter_update_discovering (adapter);
}

static SimDiscoveryClient *
discovery_client_get (SimAdapter *adapter, const gchar *sender)
{
	SimDiscoveryClient *c = g_hash_table_lookup (adapter->discovery, sender);

	if (c != NULL)
		return c;
	c = g_new0 (SimDiscoveryClient, 1);
	c->adapter = adapter;
	c->owner = g_strdup (sender);
	c->rssi = G_MININT16;
	c->watch = g_bus_watch_name_on_connection (adapter->sim->conn, sender,
						   G_BUS_NAME_WATCHER_FLAGS_NONE,
						   NULL, discovery_owner_vanished,
						   c, NULL);
	g_hash_table_insert (adapter->discovery, c->owner, c);
	return c;
}

static gboolean
parse_filter (SimDiscoveryClient *c, GVariant *dict, GDBusMethodInvocation *inv)
{
	GVariantIter it;
	const gchar *key;
	GVariant *val;

	g_clear_pointer (&c->uuids, g_strfreev);
	g_clear_pointer (&c->transport, g_free);
	g_clear_pointer (&c->pattern, g_free);
	c->rssi = G_MININT16;
	g_variant_iter_init (&it, dict);
	while (g_variant_iter_loop (&it, "{&sv}", &key, &val)) {
		if (g_strcmp0 (key, "UUIDs") == 0 && g_variant_is_of_type (val, G_VARIANT_TYPE_STRING_ARRAY)) {
			c->uuids = g_variant_dup_strv (val, NULL);
		} else if (g_strcmp0 (key, "RSSI") == 0 && g_variant_is_of_type (val, G_VARIANT_TYPE_INT16)) {
			c->rssi = g_variant_get_int16 (val);
		} else if (g_strcmp0 (key, "Pathloss") == 0 && g_variant_is_of_type (val, G_VARIANT_TYPE_UINT16)) {
			/* accepted, not modelled */
		} else if (g_strcmp0 (key, "Transport") == 0 && g_variant_is_of_type (val, G_VARIANT_TYPE_STRING)) {
			const gchar *t = g_variant_get_string (val, NULL);
			if (g_strcmp0 (t, "auto") != 0 && g_strcmp0 (t, "le") != 0 &&
			    g_strcmp0 (t, "bredr") != 0)
				goto bad;
			c->transport = g_strdup (t);
		} else if (g_strcmp0 (key, "DuplicateData") == 0 && g_variant_is_of_type (val, G_VARIANT_TYPE_BOOLEAN)) {
		} else if (g_strcmp0 (key, "Discoverable") == 0 && g_variant_is_of_type (val, G_VARIANT_TYPE_BOOLEAN)) {
		} else if (g_strcmp0 (key, "Pattern") == 0 && g_variant_is_of_type (val, G_VARIANT_TYPE_STRING)) {
			c->pattern = g_variant_dup_string (val, NULL);
		} else {
			goto bad;
		}
	}
	return TRUE;
bad:
	sim_return_error (inv, "InvalidArguments", "Invalid arguments in method call");
	return FALSE;
}

static gboolean
adapter_set_prop (SimIface *iface, const gchar *prop, GVariant *value, GError **error);

static void
adapter_method (SimIface *iface, const gchar *sender, const gchar *method,
		GVariant *params, GDBusMethodInvocation *inv)
{
	SimAdapter *adapter = iface->user_data;

	if (g_strcmp0 (method, "StartDiscovery") == 0) {
		SimDiscoveryClient *c;
		if (!adapter->powered) {
			sim_return_error (inv, "NotReady", "Resource Not Ready");
			return;
		}
		c = g_hash_table_lookup (adapter->discovery, sender);
		if (c != NULL && c->started) {
			sim_return_error (inv, "InProgress", "Operation already in progress");
			return;
		}
		c = discovery_client_get (adapter, sender);
		c->started = TRUE;
		g_dbus_method_invocation_return_value (inv, NULL);
		adapter_update_discovering (adapter);
	} else if (g_strcmp0 (method, "StopDiscovery") == 0) {
		SimDiscoveryClient *c = g_hash_table_lookup (adapter->discovery, sender);
		if (!adapter->powered) {
			sim_return_error (inv, "NotReady", "Resource Not Ready");
			return;
		}
		if (c == NULL || !c->started) {
			sim_return_error (inv, "Failed", "No discovery started");
			return;
		}
		g_hash_table_remove (adapter->discovery, sender);
		g_dbus_method_invocation_return_value (inv, NULL);
		adapter_update_discovering (adapter);
	} else if (g_strcmp0 (method, "SetDiscoveryFilter") == 0) {
		g_autoptr(GVariant) dict = g_variant_get_child_value (params, 0);
		SimDiscoveryClient *c = discovery_client_get (adapter, sender);
		if (!parse_filter (c, dict, inv))
			return;
		/* an empty filter from a client that is not discovering clears it */
		if (!c->started && g_variant_n_children (dict) == 0)
			g_hash_table_remove (adapter->discovery, sender);
		g_dbus_method_invocation_return_value (inv, NULL);
		if (adapter_discovering (adapter))
			adapter_update_discovering (adapter);
	} else if (g_strcmp0 (method, "GetDiscoveryFilters") == 0) {
		const gchar *f[] = { "UUIDs", "RSSI", "Pathloss", "Transport",
				     "DuplicateData", "Discoverable", "Pattern", NULL };
		g_dbus_method_invocation_return_value (inv, g_variant_new ("(^as)", f));
	} else if (g_strcmp0 (method, "RemoveDevice") == 0) {
		const gchar *path;
		SimDevice *dev = NULL;
		GHashTableIter it;
		gpointer v;
		g_variant_get (params, "(&o)", &path);
		g_hash_table_iter_init (&it, adapter->devices);
		while (g_hash_table_iter_next (&it, NULL, &v))
			if (g_strcmp0 (((SimDevice *) v)->path, path) == 0)
				dev = v;
		if (dev == NULL) {
			sim_return_error (inv, "DoesNotExist", "Does Not Exist");
			return;
		}
		device_remove (dev);
		g_dbus_method_invocation_return_value (inv, NULL);
	} else {
		sim_return_error (inv, "NotSupported", "Operation is not supported");
	}
}

static void
adapter_set_powered (SimAdapter *adapter, gboolean powered)
{
	if (adapter->powered == powered)
		return;
	adapter->powered = powered;
	sim_iface_set (adapter->iface, "Powered", g_variant_new_boolean (powered));
	if (!powered) {
		g_autoptr(GPtrArray) copy = g_ptr_array_copy (adapter->sim->links, NULL, NULL);
		for (guint i = 0; i < copy->len; i++) {
			SimLink *l = g_ptr_array_index (copy, i);
			if (l->central->adapter == adapter || l->peer->host == adapter)
				sim_link_drop (l, "adapter powered off");
		}
		g_hash_table_remove_all (adapter->discovery);
		adapter_update_discovering (adapter);
		sim_peripheral_adapter_down (adapter);
		sim_monitor_adapter_down (adapter);
		if (adapter->discoverable) {
			adapter->discoverable = FALSE;
			sim_iface_set (adapter->iface, "Discoverable", g_variant_new_boolean (FALSE));
		}
	}
	sim_peer_changed (adapter->peer);
}

static gboolean
adapter_set_prop (SimIface *iface, const gchar *prop, GVariant *value, GError **error)
{
	SimAdapter *adapter = iface->user_data;

	if (g_strcmp0 (prop, "Powered") == 0) {
		adapter_set_powered (adapter, g_variant_get_boolean (value));
	} else if (g_strcmp0 (prop, "Alias") == 0) {
		const gchar *alias = g_variant_get_string (value, NULL);
		g_free (adapter->alias);
		adapter->alias = g_strdup (alias[0] != '\0' ? alias : adapter->name);
		sim_iface_set (iface, "Alias", g_variant_new_string (adapter->alias));
		sim_peer_changed (adapter->peer);
	} else if (g_strcmp0 (prop, "Discoverable") == 0) {
		if (!adapter->powered) {
			g_set_error (error, G_DBUS_ERROR, G_DBUS_ERROR_FAILED, "Not Powered");
			g_dbus_error_set_dbus_error (error, "org.bluez.Error.NotReady",
						     "Resource Not Ready", NULL);
			return FALSE;
		}
		adapter->discoverable = g_variant_get_boolean (value);
		sim_iface_set (iface, "Discoverable", g_variant_ref (value));
		sim_peer_changed (adapter->peer);
	} else if (g_strcmp0 (prop, "Pairable") == 0) {
		adapter->pairable = g_variant_get_boolean (value);
		sim_iface_set (iface, "Pairable", g_variant_ref (value));
	} else if (g_strcmp0 (prop, "DiscoverableTimeout") == 0 ||
		   g_strcmp0 (prop, "PairableTimeout") == 0) {
		sim_iface_set (iface, prop, g_variant_ref (value));
	} else {
		g_set_error (error, G_DBUS_ERROR, G_DBUS_ERROR_PROPERTY_READ_ONLY,
			     "Property '%s' is not writable", prop);
		return FALSE;
	}
	return TRUE;
}

static void
adapter_export_props (SimAdapter *adapter)
{
	SimIface *i = adapter->iface;
	const gchar *roles[] = { "central", "peripheral", NULL };
	const gchar *uuids[] = { "00001800-0000-1000-8000-00805f9b34fb",
				 "00001801-0000-1000-8000-00805f9b34fb",
				 "0000110e-0000-1000-8000-00805f9b34fb",
				 "0000110c-0000-1000-8000-00805f9b34fb",
				 "00001200-0000-1000-8000-00805f9b34fb", NULL };

	sim_iface_set (i, "Address", g_variant_new_string (adapter->address));
	sim_iface_set (i, "AddressType", g_variant_new_string ("public"));
	sim_iface_set (i, "Name", g_variant_new_string (adapter->name));
	sim_iface_set (i, "Alias", g_variant_new_string (adapter->alias));
	sim_iface_set (i, "Class", g_variant_new_uint32 (0x000000));
	sim_iface_set (i, "Powered", g_variant_new_boolean (adapter->powered));
	sim_iface_set (i, "Discoverable", g_variant_new_boolean (adapter->discoverable));
	sim_iface_set (i, "DiscoverableTimeout", g_variant_new_uint32 (180));
	sim_iface_set (i, "Pairable", g_variant_new_boolean (adapter->pairable));
	sim_iface_set (i, "PairableTimeout", g_variant_new_uint32 (0));
	sim_iface_set (i, "Discovering", g_variant_new_boolean (FALSE));
	sim_iface_set (i, "UUIDs", g_variant_new_strv (uuids, -1));
	sim_iface_set (i, "Modalias", g_variant_new_string ("usb:v1D6Bp0246d0542"));
	sim_iface_set (i, "Roles", g_variant_new_strv (roles, -1));
	sim_iface_set (i, "ExperimentalFeatures", g_variant_new_strv (NULL, 0));
}

/* the adapter object as bluetoothd would create it at start */
static void
adapter_publish (SimAdapter *adapter)
{
	adapter->obj = sim_object_new (adapter->sim->bus, adapter->path, TRUE);
	adapter->iface = sim_object_add_iface (adapter->obj, "org.bluez.Adapter1",
					       adapter_method, adapter_set_prop, adapter);
	adapter_export_props (adapter);
	sim_peripheral_add_ifaces (adapter);
	sim_monitor_add_iface (adapter);
	sim_object_export (adapter->obj);
}

SimAdapter *
sim_adapter_add (Sim *sim, const gchar *address, const gchar *name, GError **error)
{
	SimAdapter *adapter;
	guint index = 0;
	g_autofree gchar *addr = NULL;

	if (address == NULL || address[0] == '\0') {
		addr = g_strdup_printf ("00:AA:01:00:00:%02X", sim->adapters->len);
		while (sim_peer_find (sim, addr) != NULL) {
			gchar *n = sim_address_add (addr, 1);
			g_free (addr);
			addr = n;
		}
	} else {
		addr = g_ascii_strup (address, -1);
	}
	if (!sim_address_valid (addr)) {
		g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
			     "invalid address '%s'", addr);
		return NULL;
	}
	if (sim_peer_find (sim, addr) != NULL) {
		g_set_error (error, G_IO_ERROR, G_IO_ERROR_EXISTS,
			     "address %s is in use", addr);
		return NULL;
	}
	/* the lowest free hciN */
	for (gboolean taken = TRUE; taken; ) {
		taken = FALSE;
		for (guint i = 0; i < sim->adapters->len; i++)
			if (((SimAdapter *) g_ptr_array_index (sim->adapters, i))->index == index)
				taken = TRUE;
		if (taken)
			index++;
	}
	adapter = g_new0 (SimAdapter, 1);
	adapter->sim = sim;
	adapter->index = index;
	adapter->path = g_strdup_printf ("/org/bluez/hci%u", index);
	adapter->address = g_steal_pointer (&addr);
	adapter->name = g_strdup (name != NULL && name[0] != '\0' ? name : "bgsync-sim");
	adapter->alias = g_strdup (adapter->name);
	adapter->powered = TRUE;
	adapter->pairable = TRUE;
	adapter->discovery = g_hash_table_new_full (g_str_hash, g_str_equal, NULL,
						    (GDestroyNotify) discovery_client_free);
	adapter->devices = g_hash_table_new (g_str_hash, g_str_equal);
	adapter->apps = g_ptr_array_new ();
	adapter->adverts = g_ptr_array_new ();
	adapter->monitors = g_ptr_array_new ();
	adapter->peer = g_new0 (SimPeer, 1);
	adapter->peer->sim = sim;
	adapter->peer->address = g_strdup (adapter->address);
	adapter->peer->address_type = g_strdup ("public");
	adapter->peer->type = SIM_TYPE_DUAL;
	adapter->peer->rssi = -50;
	adapter->peer->tx_power = 127;
	adapter->peer->in_range = TRUE;
	adapter->peer->connectable = TRUE;
	adapter->peer->mtu = sim->default_mtu;
	adapter->peer->host = adapter;
	g_hash_table_insert (sim->peers, adapter->peer->address, adapter->peer);
	g_ptr_array_add (sim->adapters, adapter);
	if (sim->bluez_up)
		adapter_publish (adapter);
	g_info ("adapter %s at %s", adapter->path, adapter->address);
	return adapter;
}

static void
adapter_unpublish (SimAdapter *adapter)
{
	g_autoptr(GPtrArray) devs = g_ptr_array_new ();
	GHashTableIter it;
	gpointer v;

	adapter_set_powered (adapter, FALSE);
	sim_peripheral_drop_apps (adapter);
	sim_monitor_drop_all (adapter);
	g_hash_table_iter_init (&it, adapter->devices);
	while (g_hash_table_iter_next (&it, NULL, &v))
		g_ptr_array_add (devs, v);
	for (guint i = 0; i < devs->len; i++)
		device_remove (g_ptr_array_index (devs, i));
	g_clear_pointer (&adapter->obj, sim_object_free);
	adapter->iface = NULL;
}

gboolean
sim_adapter_remove (Sim *sim, const gchar *path, GError **error)
{
	SimAdapter *adapter = sim_adapter_find (sim, path);

	if (adapter == NULL) {
		g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND, "no adapter %s", path);
		return FALSE;
	}
	if (adapter->obj != NULL)
		adapter_unpublish (adapter);
	/* other adapters stop hearing it */
	sim_peer_remove (adapter->peer);
	adapter->peer = NULL;
	g_ptr_array_remove (sim->adapters, adapter);
	g_hash_table_unref (adapter->discovery);
	g_hash_table_unref (adapter->devices);
	g_ptr_array_unref (adapter->apps);
	g_ptr_array_unref (adapter->adverts);
	g_ptr_array_unref (adapter->monitors);
	g_free (adapter->path);
	g_free (adapter->address);
	g_free (adapter->name);
	g_free (adapter->alias);
	g_free (adapter);
	return TRUE;
}

/* ---- links ---- */

static void
link_params (SimLink *link, guint64 *rate, guint *latency, gboolean *stalled)
{
	SimPeer *a = link->peer;
	SimPeer *b = link->central->adapter->peer;

	*rate = a->rate;
	if (b->rate != 0 && (*rate == 0 || b->rate < *rate))
		*rate = b->rate;
	*latency = MAX (a->latency_ms, b->latency_ms);
	*stalled = a->stalled || b->stalled;
}

void
sim_link_get_params (SimLink *link, guint64 *rate, guint *latency, gboolean *stalled)
{
	link_params (link, rate, latency, stalled);
}

void
sim_links_kick (Sim *sim)
{
	for (guint i = 0; i < sim->links->len; i++) {
		SimLink *l = g_ptr_array_index (sim->links, i);
		sim_queue_kick (l->up);
		sim_queue_kick (l->down);
	}
}

static void
device_set_connected (SimDevice *dev, gboolean connected)
{
	dev->connected = connected;
	device_set_bool (dev, "Connected", connected);
	if (connected)
		g_clear_handle_id (&dev->temp_id, g_source_remove);
}

static SimLink *
link_new (SimDevice *central, SimPeer *peer)
{
	Sim *sim = central->adapter->sim;
	SimLink *link = g_new0 (SimLink, 1);

	link->sim = sim;
	link->central = central;
	link->peer = peer;
	link->mtu = MIN (peer->mtu, sim->default_mtu);
	link->up = sim_queue_new (link);
	link->down = sim_queue_new (link);
	link->streams = g_ptr_array_new ();
	central->link = link;
	g_ptr_array_add (sim->links, link);
	device_set_connected (central, TRUE);
	if (peer->host != NULL) {
		link->remote = sim_device_ensure (peer->host, central->adapter->peer->address, FALSE);
		link->remote->link = link;
		sim_device_update_from_peer (link->remote, central->adapter->peer, FALSE);
		device_set_connected (link->remote, TRUE);
	}
	sim_gatt_resolve (central);
	if (link->remote != NULL)
		sim_gatt_resolve (link->remote);
	g_info ("%s: connected to %s", central->adapter->path, peer->address);
	return link;
}

static void
link_view_down (SimDevice *dev)
{
	if (dev == NULL)
		return;
	sim_gatt_link_down (dev);
	device_set_bool (dev, "ServicesResolved", FALSE);
	dev->link = NULL;
	device_set_connected (dev, FALSE);
	device_check_temporary (dev);
}

static gboolean
link_free_cb (gpointer data)
{
	SimLink *link = data;

	sim_queue_free (link->up);
	sim_queue_free (link->down);
	g_ptr_array_unref (link->streams);
	g_free (link);
	return G_SOURCE_REMOVE;
}

void
sim_link_drop (SimLink *link, const gchar *why)
{
	Sim *sim = link->sim;

	if (link->dead)
		return;
	link->dead = TRUE;
	g_info ("%s: link to %s dropped (%s)", link->central->adapter->path,
		link->peer->address, why);
	g_clear_handle_id (&link->supervision_id, g_source_remove);
	g_ptr_array_remove (sim->links, link);
	sim_profile_link_down (link);
	sim_queue_shutdown (link->up);
	sim_queue_shutdown (link->down);
	link_view_down (link->central);
	link_view_down (link->remote);
	g_idle_add (link_free_cb, link);
}

void
sim_peer_drop_links (SimPeer *peer, const gchar *why)
{
	g_autoptr(GPtrArray) copy = g_ptr_array_copy (peer->sim->links, NULL, NULL);

	for (guint i = 0; i < copy->len; i++) {
		SimLink *l = g_ptr_array_index (copy, i);
		if (l->peer == peer || l->central->adapter->peer == peer)
			sim_link_drop (l, why);
	}
}

/* ---- Device1 methods ---- */

static void
device_reply_pending (SimDevice *dev, const gchar *error_name, const gchar *msg)
{
	g_autoptr(GPtrArray) pending = dev->pending;

	dev->pending = g_ptr_array_new_with_free_func (g_object_unref);
	g_clear_handle_id (&dev->connect_id, g_source_remove);
	for (guint i = 0; i < pending->len; i++) {
		GDBusMethodInvocation *inv = g_ptr_array_index (pending, i);
		const gchar *member = g_dbus_method_invocation_get_method_name (inv);
		if (error_name != NULL) {
			sim_return_error (inv, error_name, "%s", msg);
		} else if (g_strcmp0 (member, "Pair") == 0) {
			if (dev->paired) {
				sim_return_error (inv, "AlreadyExists", "Already Paired");
				continue;
			}
			dev->paired = dev->bonded = TRUE;
			device_set_bool (dev, "Paired", TRUE);
			device_set_bool (dev, "Bonded", TRUE);
			if (dev->link != NULL && dev->link->remote != NULL) {
				SimDevice *r = dev->link->remote;
				r->paired = r->bonded = TRUE;
				device_set_bool (r, "Paired", TRUE);
				device_set_bool (r, "Bonded", TRUE);
			}
			g_dbus_method_invocation_return_value (inv, NULL);
		} else if (g_strcmp0 (member, "ConnectProfile") == 0) {
			const gchar *uuid;
			g_variant_get (g_dbus_method_invocation_get_parameters (inv), "(&s)", &uuid);
			sim_profile_connect (dev, uuid, inv);
		} else {
			g_dbus_method_invocation_return_value (inv, NULL);
		}
	}
	device_check_temporary (dev);
}

static gboolean
connect_timeout_cb (gpointer data)
{
	SimDevice *dev = data;

	dev->connect_id = 0;
	device_reply_pending (dev, "Failed", "le-connection-abort-by-local");
	return G_SOURCE_REMOVE;
}

/* page / initiate: succeeds once the peer is connectable and in range */
static void
device_connect_attempt (SimDevice *dev)
{
	SimPeer *peer = sim_peer_find (dev->adapter->sim, dev->address);

	if (dev->link != NULL) {
		device_reply_pending (dev, NULL, NULL);
		return;
	}
	if (peer == NULL || !peer_connectable (peer) || !dev->adapter->peer->in_range ||
	    !dev->adapter->powered)
		return;
	link_new (dev, peer);
	device_reply_pending (dev, NULL, NULL);
}

static void
device_queue_connect (SimDevice *dev, GDBusMethodInvocation *inv)
{
	g_ptr_array_add (dev->pending, g_object_ref (inv));
	g_clear_handle_id (&dev->temp_id, g_source_remove);
	if (dev->connect_id == 0)
		dev->connect_id = g_timeout_add (dev->adapter->sim->connect_timeout_ms,
						 connect_timeout_cb, dev);
	device_connect_attempt (dev);
}

static void
device_method (SimIface *iface, const gchar *sender, const gchar *method,
	       GVariant *params, GDBusMethodInvocation *inv)
{
	SimDevice *dev = iface->user_data;

	if (!dev->adapter->powered && g_strcmp0 (method, "Disconnect") != 0) {
		sim_return_error (inv, "NotReady", "Resource Not Ready");
		return;
	}
	if (g_strcmp0 (method, "Connect") == 0) {
		if (dev->blocked) {
			sim_return_error (inv, "Failed", "Blocked through rfkill");
			return;
		}
		if (dev->link != NULL) {
			g_dbus_method_invocation_return_value (inv, NULL);
			return;
		}
		for (guint i = 0; i < dev->pending->len; i++) {
			const gchar *m = g_dbus_method_invocation_get_method_name (dev->pending->pdata[i]);
			if (g_strcmp0 (m, "Connect") == 0) {
				sim_return_error (inv, "InProgress", "In Progress");
				return;
			}
		}
		device_queue_connect (dev, inv);
	} else if (g_strcmp0 (method, "Disconnect") == 0) {
		if (dev->pending->len > 0)
			device_reply_pending (dev, "Failed", "Cancelled");
		if (dev->link == NULL) {
			sim_return_error (inv, "NotConnected", "Not Connected");
			return;
		}
		sim_link_drop (dev->link, "local disconnect");
		g_dbus_method_invocation_return_value (inv, NULL);
	} else if (g_strcmp0 (method, "Pair") == 0) {
		if (dev->paired) {
			sim_return_error (inv, "AlreadyExists", "Already Paired");
			return;
		}
		for (guint i = 0; i < dev->pending->len; i++) {
			const gchar *m = g_dbus_method_invocation_get_method_name (dev->pending->pdata[i]);
			if (g_strcmp0 (m, "Pair") == 0) {
				sim_return_error (inv, "InProgress", "In Progress");
				return;
			}
		}
		device_queue_connect (dev, inv);
	} else if (g_strcmp0 (method, "CancelPairing") == 0) {
		gboolean any = FALSE;
		for (guint i = 0; i < dev->pending->len; i++) {
			GDBusMethodInvocation *p = dev->pending->pdata[i];
			if (g_strcmp0 (g_dbus_method_invocation_get_method_name (p), "Pair") == 0) {
				g_ptr_array_steal_index (dev->pending, i);
				sim_return_error (p, "AuthenticationCanceled", "Authentication Canceled");
				g_object_unref (p);
				any = TRUE;
				break;
			}
		}
		if (!any)
			sim_return_error (inv, "DoesNotExist", "Does Not Exist");
		else
			g_dbus_method_invocation_return_value (inv, NULL);
	} else if (g_strcmp0 (method, "ConnectProfile") == 0) {
		const gchar *uuid;
		g_variant_get (params, "(&s)", &uuid);
		if (dev->link != NULL)
			sim_profile_connect (dev, uuid, inv);
		else
			device_queue_connect (dev, inv);
	} else if (g_strcmp0 (method, "DisconnectProfile") == 0) {
		const gchar *uuid;
		g_autoptr(GError) error = NULL;
		g_variant_get (params, "(&s)", &uuid);
		if (!sim_profile_disconnect (dev, uuid, &error)) {
			g_dbus_method_invocation_return_gerror (inv, error);
			return;
		}
		g_dbus_method_invocation_return_value (inv, NULL);
	} else {
		sim_return_error (inv, "NotSupported", "Operation is not supported");
	}
}

/* ---- peers ---- */

void
sim_peer_remove (SimPeer *peer)
{
	Sim *sim = peer->sim;

	sim_peer_drop_links (peer, "peer removed");
	peer->in_range = FALSE;
	sim_peer_changed (peer);
	g_hash_table_remove (sim->peers, peer->address);
	g_clear_handle_id (&peer->reboot_id, g_source_remove);
	/* views of it stay (paired ones) or expire like any temporary device */
	for (guint i = 0; i < sim->adapters->len; i++) {
		SimAdapter *a = g_ptr_array_index (sim->adapters, i);
		SimDevice *dev = g_hash_table_lookup (a->devices, peer->address);
		if (dev != NULL)
			device_check_temporary (dev);
	}
	if (peer->services != NULL) {
		sim_gatt_forget (sim, peer->services);
		g_ptr_array_unref (peer->services);
	}
	g_strfreev (peer->uuids);
	g_strfreev (peer->rfcomm_echo);
	g_clear_pointer (&peer->mfr_data, g_variant_unref);
	g_clear_pointer (&peer->svc_data, g_variant_unref);
	g_free (peer->reboot_address);
	g_free (peer->reboot_name);
	g_free (peer->address);
	g_free (peer->address_type);
	g_free (peer->name);
	g_free (peer->modalias);
	g_free (peer);
}

void
sim_peer_set_in_range (SimPeer *peer, gboolean in_range)
{
	if (peer->in_range == in_range)
		return;
	peer->in_range = in_range;
	sim_peer_changed (peer);
}

static gboolean
reboot_done_cb (gpointer data)
{
	SimPeer *peer = data;
	Sim *sim = peer->sim;

	peer->reboot_id = 0;
	if (peer->reboot_address != NULL) {
		g_hash_table_steal (sim->peers, peer->address);
		g_free (peer->address);
		peer->address = g_steal_pointer (&peer->reboot_address);
		g_hash_table_insert (sim->peers, peer->address, peer);
	}
	if (peer->reboot_name != NULL) {
		if (peer->host != NULL) {
			g_free (peer->host->alias);
			peer->host->alias = g_strdup (peer->reboot_name);
			sim_iface_set (peer->host->iface, "Alias", g_variant_new_string (peer->host->alias));
		}
		g_free (peer->name);
		peer->name = g_steal_pointer (&peer->reboot_name);
	}
	peer->rebooting = FALSE;
	g_info ("peer %s is back", peer->address);
	sim_peer_changed (peer);
	return G_SOURCE_REMOVE;
}

void
sim_peer_reboot (SimPeer *peer, guint ms, const gchar *new_address, const gchar *new_name)
{
	g_clear_pointer (&peer->reboot_address, g_free);
	g_clear_pointer (&peer->reboot_name, g_free);
	if (new_address != NULL && new_address[0] != '\0')
		peer->reboot_address = g_ascii_strup (new_address, -1);
	if (new_name != NULL && new_name[0] != '\0')
		peer->reboot_name = g_strdup (new_name);
	peer->rebooting = TRUE;
	sim_peer_drop_links (peer, "peer reboot");
	sim_peer_changed (peer);
	g_clear_handle_id (&peer->reboot_id, g_source_remove);
	peer->reboot_id = g_timeout_add (ms, reboot_done_cb, peer);
}

/* ---- bluetoothd restart ---- */

static void name_acquired (GDBusConnection *conn, const gchar *name, gpointer data);
static void name_lost (GDBusConnection *conn, const gchar *name, gpointer data);

static void
bluez_root_method (SimIface *iface, const gchar *sender, const gchar *method,
		   GVariant *params, GDBusMethodInvocation *inv)
{
	/* AgentManager1: agents are accepted; pairing is always Just Works */
	g_dbus_method_invocation_return_value (inv, NULL);
}

static SimObject *bluez_root;

static void
bluez_start (Sim *sim)
{
	sim->bluez_up = TRUE;
	bluez_root = sim_object_new (sim->bus, "/org/bluez", TRUE);
	sim_object_add_iface (bluez_root, "org.bluez.AgentManager1", bluez_root_method, NULL, sim);
	sim_profile_manager_register (sim, bluez_root);
	sim_object_export (bluez_root);
	for (guint i = 0; i < sim->adapters->len; i++) {
		SimAdapter *a = g_ptr_array_index (sim->adapters, i);
		if (a->obj == NULL)
			adapter_publish (a);
		a->powered = FALSE;
		adapter_set_powered (a, TRUE);
	}
	sim_bus_set_online (sim->bus, TRUE);
	sim->name_id = g_bus_own_name_on_connection (sim->conn, SIM_BLUEZ_NAME,
						     G_BUS_NAME_OWNER_FLAGS_NONE,
						     name_acquired, name_lost, sim, NULL);
}

static void
name_acquired (GDBusConnection *conn, const gchar *name, gpointer data)
{
	g_info ("owning %s", name);
}

static void
name_lost (GDBusConnection *conn, const gchar *name, gpointer data)
{
	if (conn == NULL || g_dbus_connection_is_closed (conn))
		return;
	g_warning ("cannot own %s (is another bluetoothd running?)", name);
}

static gboolean
restart_cb (gpointer data)
{
	Sim *sim = data;

	sim->restart_id = 0;
	bluez_start (sim);
	sim_iface_set (sim->control, "BluezRunning", g_variant_new_boolean (TRUE));
	g_info ("org.bluez is back");
	return G_SOURCE_REMOVE;
}

void
sim_restart_bluez (Sim *sim)
{
	g_autoptr(GPtrArray) devs = g_ptr_array_new ();

	if (!sim->bluez_up)
		return;
	g_info ("restarting org.bluez");
	for (guint i = 0; i < sim->adapters->len; i++) {
		SimAdapter *a = g_ptr_array_index (sim->adapters, i);
		GHashTableIter it;
		gpointer v;

		adapter_set_powered (a, FALSE);
		sim_peripheral_drop_apps (a);
		sim_monitor_drop_all (a);
		g_hash_table_iter_init (&it, a->devices);
		while (g_hash_table_iter_next (&it, NULL, &v)) {
			SimDevice *dev = v;
			if (!dev->paired && !dev->trusted)
				g_ptr_array_add (devs, dev);
		}
	}
	sim_profile_release_all (sim);
	for (guint i = 0; i < devs->len; i++)
		device_remove (g_ptr_array_index (devs, i));
	sim->bluez_up = FALSE;
	/* the peers that are adapters stop being visible while we are down */
	for (guint i = 0; i < sim->adapters->len; i++)
		sim_peer_changed (((SimAdapter *) g_ptr_array_index (sim->adapters, i))->peer);
	g_bus_unown_name (sim->name_id);
	sim->name_id = 0;
	sim_bus_set_online (sim->bus, FALSE);
	g_clear_pointer (&bluez_root, sim_object_free);
	sim_iface_set (sim->control, "BluezRunning", g_variant_new_boolean (FALSE));
	sim->restart_id = g_timeout_add (sim->restart_delay_ms, restart_cb, sim);
}

Sim *
sim_new (GDBusConnection *conn)
{
	Sim *sim = g_new0 (Sim, 1);

	sim->conn = g_object_ref (conn);
	sim->bus = sim_bus_new (conn);
	sim->adapters = g_ptr_array_new ();
	sim->peers = g_hash_table_new (g_str_hash, g_str_equal);
	sim->links = g_ptr_array_new ();
	sim->profiles = g_ptr_array_new ();
	sim->supervision_timeout_ms = 2000;
	sim->connect_timeout_ms = 5000;
	sim->temporary_timeout_ms = 30000;
	sim->restart_delay_ms = 500;
	sim->att_timeout_ms = 30000;
	sim->default_mtu = 517;
	sim->server_max_write = 510;
	sim_control_register (sim);
	bluez_start (sim);
	return sim;
}
