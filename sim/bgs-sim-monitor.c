/* bgs-sim-monitor.c: AdvertisementMonitorManager1 (or_patterns) with RSSI
 * thresholds and timeouts, driven by the adverts an adapter receives */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "bgs-sim.h"

#define UNSET_RSSI 127
#define UNSET_TIMEOUT 0
#define DEFAULT_LOW_TIMEOUT_S 5

typedef struct {
	SimMonitorApp *app;
	gchar *path;
	gint16 low, high;
	guint16 low_timeout, high_timeout;
	GPtrArray *patterns;	/* GBytes: start, type, content... */
	GHashTable *state;	/* address -> SimMonState */
	gboolean active;
} SimMonitor;

typedef struct {
	SimMonitor *mon;
	gchar *address;
	gboolean found;
	guint found_id;
	guint lost_id;
} SimMonState;

struct _SimMonitorApp {
	SimAdapter *adapter;
	gchar *owner;
	gchar *root;
	guint watch;
	guint sig_added;
	guint sig_removed;
	GPtrArray *monitors;	/* SimMonitor */
	GDBusMethodInvocation *inv;	/* RegisterMonitor in progress */
	gboolean pending;		/* GetManagedObjects in flight */
	gboolean removed;		/* freed when it comes back */
};

static void
state_free (SimMonState *s)
{
	g_clear_handle_id (&s->found_id, g_source_remove);
	g_clear_handle_id (&s->lost_id, g_source_remove);
	g_free (s->address);
	g_free (s);
}

static void
monitor_free (SimMonitor *m)
{
	g_hash_table_unref (m->state);
	g_ptr_array_unref (m->patterns);
	g_free (m->path);
	g_free (m);
}

static void
monitor_call (SimMonitor *m, const gchar *method, GVariant *params)
{
	SimMonitorApp *app = m->app;

	g_dbus_connection_call (app->adapter->sim->conn, app->owner, m->path,
				"org.bluez.AdvertisementMonitor1", method, params, NULL,
				G_DBUS_CALL_FLAGS_NO_AUTO_START, -1, NULL, NULL, NULL);
}

/* ---- matching ---- */

static void
ad_add (GPtrArray *ads, guint8 type, const guint8 *data, gsize len)
{
	GByteArray *a = g_byte_array_new ();

	g_byte_array_append (a, &type, 1);
	g_byte_array_append (a, data, len);
	g_ptr_array_add (ads, g_byte_array_free_to_bytes (a));
}

static gboolean
uuid16 (const gchar *uuid, guint16 *out)
{
	guint v;

	if (strlen (uuid) != 36 || !g_str_has_prefix (uuid, "0000") ||
	    g_ascii_strcasecmp (uuid + 8, "-0000-1000-8000-00805f9b34fb") != 0)
		return FALSE;
	if (sscanf (uuid + 4, "%04x", &v) != 1)
		return FALSE;
	*out = v;
	return TRUE;
}

static void
uuid128_le (const gchar *uuid, guint8 out[16])
{
	guint8 be[16];
	guint j = 0;

	memset (be, 0, sizeof be);
	for (const gchar *p = uuid; *p != '\0' && j < 32; p++) {
		if (!g_ascii_isxdigit (*p))
			continue;
		be[j / 2] |= g_ascii_xdigit_value (*p) << (j % 2 == 0 ? 4 : 0);
		j++;
	}
	for (guint i = 0; i < 16; i++)
		out[i] = be[15 - i];
}

/* the AD structures (type byte first) that @peer's adverts carry; with
 * @scan_rsp also what its scan responses do */
static GPtrArray *
peer_ad (SimPeer *peer, gboolean scan_rsp)
{
	GPtrArray *ads = g_ptr_array_new_with_free_func ((GDestroyNotify) g_bytes_unref);
	const gchar *name = sim_peer_adv_name (peer);
	g_auto(GStrv) uuids = sim_peer_adv_uuids (peer);
	GVariant *mfr = sim_peer_adv_mfr (peer);
	GVariant *svc = sim_peer_adv_svc (peer);
	GByteArray *u16 = g_byte_array_new ();
	GByteArray *u128 = g_byte_array_new ();
	guint8 flags = 0x06;

	ad_add (ads, 0x01, &flags, 1);
	/* bluetoothd puts an app's LocalName in the scan response, which only
	 * active scanning asks for: monitors alone scan passively and never
	 * see it (seen in the VM tier) */
	if (name != NULL && (peer->host == NULL || scan_rsp))
		ad_add (ads, 0x09, (const guint8 *) name, strlen (name));
	for (guint i = 0; uuids != NULL && uuids[i] != NULL; i++) {
		guint16 v;
		if (uuid16 (uuids[i], &v)) {
			guint8 le[2] = { v & 0xff, v >> 8 };
			g_byte_array_append (u16, le, 2);
		} else {
			guint8 le[16];
			uuid128_le (uuids[i], le);
			g_byte_array_append (u128, le, 16);
		}
	}
	if (u16->len > 0)
		ad_add (ads, 0x03, u16->data, u16->len);
	if (u128->len > 0)
		ad_add (ads, 0x07, u128->data, u128->len);
	g_byte_array_unref (u16);
	g_byte_array_unref (u128);
	if (mfr != NULL) {
		GVariantIter it;
		guint16 company;
		GVariant *v;
		g_variant_iter_init (&it, mfr);
		while (g_variant_iter_loop (&it, "{qv}", &company, &v)) {
			GByteArray *a = g_byte_array_new ();
			guint8 le[2] = { company & 0xff, company >> 8 };
			gsize len = 0;
			gconstpointer d = g_variant_is_of_type (v, G_VARIANT_TYPE_BYTESTRING) ?
				g_variant_get_fixed_array (v, &len, 1) : NULL;
			g_byte_array_append (a, le, 2);
			if (d != NULL)
				g_byte_array_append (a, d, len);
			ad_add (ads, 0xff, a->data, a->len);
			g_byte_array_unref (a);
		}
	}
	if (svc != NULL) {
		GVariantIter it;
		const gchar *uuid;
		GVariant *v;
		g_variant_iter_init (&it, svc);
		while (g_variant_iter_loop (&it, "{&sv}", &uuid, &v)) {
			GByteArray *a = g_byte_array_new ();
			gsize len = 0;
			gconstpointer d = g_variant_is_of_type (v, G_VARIANT_TYPE_BYTESTRING) ?
				g_variant_get_fixed_array (v, &len, 1) : NULL;
			guint16 s16;
			guint8 type = 0x16;
			if (uuid16 (uuid, &s16)) {
				guint8 le[2] = { s16 & 0xff, s16 >> 8 };
				g_byte_array_append (a, le, 2);
			} else {
				guint8 le[16];
				uuid128_le (uuid, le);
				g_byte_array_append (a, le, 16);
				type = 0x21;
			}
			if (d != NULL)
				g_byte_array_append (a, d, len);
			ad_add (ads, type, a->data, a->len);
			g_byte_array_unref (a);
		}
	}
	return ads;
}

/* a discovery session scans actively (scan responses too) */
static gboolean
active_scan (SimAdapter *adapter)
{
	GVariant *v = adapter->iface != NULL ? sim_iface_get (adapter->iface, "Discovering") : NULL;

	return v != NULL && g_variant_get_boolean (v);
}

static gboolean
monitor_matches (SimMonitor *m, GPtrArray *ads)
{
	for (guint i = 0; i < m->patterns->len; i++) {
		gsize plen;
		const guint8 *p = g_bytes_get_data (g_ptr_array_index (m->patterns, i), &plen);
		guint8 start = p[0], type = p[1];
		for (guint k = 0; k < ads->len; k++) {
			gsize alen;
			const guint8 *a = g_bytes_get_data (g_ptr_array_index (ads, k), &alen);
			if (a[0] != type || alen - 1 < (gsize) start + (plen - 2))
				continue;
			if (memcmp (a + 1 + start, p + 2, plen - 2) == 0)
				return TRUE;
		}
	}
	return FALSE;
}

/* ---- found / lost ---- */

static gboolean
found_cb (gpointer data)
{
	SimMonState *s = data;
	SimMonitor *m = s->mon;
	SimDevice *dev;

	s->found_id = 0;
	s->found = TRUE;
	dev = sim_device_ensure (m->app->adapter, s->address, TRUE);
	sim_device_maybe_remove (dev);
	g_debug ("monitor %s: found %s", m->path, s->address);
	monitor_call (m, "DeviceFound", g_variant_new ("(o)", dev->path));
	return G_SOURCE_REMOVE;
}

static gboolean
lost_cb (gpointer data)
{
	SimMonState *s = data;
	SimMonitor *m = s->mon;
	g_autofree gchar *path = NULL;
	g_autofree gchar *a = g_strdup (s->address);

	s->lost_id = 0;
	s->found = FALSE;
	g_strdelimit (a, ":", '_');
	path = g_strdup_printf ("%s/dev_%s", m->app->adapter->path, a);
	g_debug ("monitor %s: lost %s", m->path, s->address);
	monitor_call (m, "DeviceLost", g_variant_new ("(o)", path));
	return G_SOURCE_REMOVE;
}

static SimMonState *
state_get (SimMonitor *m, const gchar *address)
{
	SimMonState *s = g_hash_table_lookup (m->state, address);

	if (s == NULL) {
		s = g_new0 (SimMonState, 1);
		s->mon = m;
		s->address = g_strdup (address);
		g_hash_table_insert (m->state, s->address, s);
	}
	return s;
}

static guint
low_timeout_ms (SimMonitor *m)
{
	return (m->low_timeout != UNSET_TIMEOUT ? m->low_timeout : DEFAULT_LOW_TIMEOUT_S) * 1000;
}

static void
monitor_not_seen (SimMonitor *m, const gchar *address)
{
	SimMonState *s = g_hash_table_lookup (m->state, address);

	if (s == NULL)
		return;
	g_clear_handle_id (&s->found_id, g_source_remove);
	if (s->found && s->lost_id == 0)
		s->lost_id = g_timeout_add (low_timeout_ms (m), lost_cb, s);
}

static void
monitor_seen (SimMonitor *m, SimPeer *peer, GPtrArray *ads)
{
	SimMonState *s;
	gint16 high = m->high != UNSET_RSSI ? m->high : -127;
	gint16 low = m->low != UNSET_RSSI ? m->low : -127;

	if (!m->active)
		return;
	if (!monitor_matches (m, ads)) {
		monitor_not_seen (m, peer->address);
		return;
	}
	s = state_get (m, peer->address);
	if (peer->rssi >= high) {
		if (!s->found && s->found_id == 0) {
			if (m->high_timeout == 0)
				found_cb (s);
			else
				s->found_id = g_timeout_add (m->high_timeout * 1000, found_cb, s);
		}
	} else {
		g_clear_handle_id (&s->found_id, g_source_remove);
	}
	if (peer->rssi < low) {
		if (s->found && s->lost_id == 0)
			s->lost_id = g_timeout_add (low_timeout_ms (m), lost_cb, s);
	} else {
		g_clear_handle_id (&s->lost_id, g_source_remove);
	}
}

void
sim_monitor_seen (SimAdapter *adapter, SimPeer *peer)
{
	g_autoptr(GPtrArray) ads = NULL;

	if (adapter->monitors->len == 0)
		return;
	ads = peer_ad (peer, active_scan (adapter));
	for (guint i = 0; i < adapter->monitors->len; i++) {
		SimMonitorApp *app = g_ptr_array_index (adapter->monitors, i);
		for (guint j = 0; j < app->monitors->len; j++)
			monitor_seen (g_ptr_array_index (app->monitors, j), peer, ads);
	}
}

void
sim_monitor_lost (SimAdapter *adapter, SimPeer *peer)
{
	for (guint i = 0; i < adapter->monitors->len; i++) {
		SimMonitorApp *app = g_ptr_array_index (adapter->monitors, i);
		for (guint j = 0; j < app->monitors->len; j++)
			monitor_not_seen (g_ptr_array_index (app->monitors, j), peer->address);
	}
}

/* ---- registration ---- */

static SimMonitor *
monitor_parse (SimMonitorApp *app, const gchar *path, GVariant *props)
{
	SimMonitor *m = g_new0 (SimMonitor, 1);
	const gchar *type = NULL;
	g_autoptr(GVariant) pats = NULL;
	GVariantIter it;
	guint8 start, adtype;
	GVariant *content;
	gboolean ok = TRUE;

	m->app = app;
	m->path = g_strdup (path);
	m->low = m->high = UNSET_RSSI;
	m->patterns = g_ptr_array_new_with_free_func ((GDestroyNotify) g_bytes_unref);
	m->state = g_hash_table_new_full (g_str_hash, g_str_equal, NULL, (GDestroyNotify) state_free);
	g_variant_lookup (props, "Type", "&s", &type);
	g_variant_lookup (props, "RSSILowThreshold", "n", &m->low);
	g_variant_lookup (props, "RSSIHighThreshold", "n", &m->high);
	g_variant_lookup (props, "RSSILowTimeout", "q", &m->low_timeout);
	g_variant_lookup (props, "RSSIHighTimeout", "q", &m->high_timeout);
	pats = g_variant_lookup_value (props, "Patterns", G_VARIANT_TYPE ("a(yyay)"));
	if (g_strcmp0 (type, "or_patterns") != 0 || pats == NULL || g_variant_n_children (pats) == 0)
		ok = FALSE;
	if ((m->low != UNSET_RSSI && (m->low < -127 || m->low > 20)) ||
	    (m->high != UNSET_RSSI && (m->high < -127 || m->high > 20)) ||
	    (m->low != UNSET_RSSI && m->high != UNSET_RSSI && m->low > m->high) ||
	    m->low_timeout > 300 || m->high_timeout > 300)
		ok = FALSE;
	if (pats != NULL) {
		g_variant_iter_init (&it, pats);
		while (g_variant_iter_loop (&it, "(yy@ay)", &start, &adtype, &content)) {
			gsize len;
			gconstpointer d = g_variant_get_fixed_array (content, &len, 1);
			GByteArray *a;
			if (len == 0 || len + start > 31) {
				ok = FALSE;
				continue;
			}
			a = g_byte_array_new ();
			g_byte_array_append (a, &start, 1);
			g_byte_array_append (a, &adtype, 1);
			g_byte_array_append (a, d, len);
			g_ptr_array_add (m->patterns, g_byte_array_free_to_bytes (a));
		}
	}
	if (!ok) {
		/* bluetoothd tells the app its monitor could not be activated */
		monitor_call (m, "Release", NULL);
		monitor_free (m);
		return NULL;
	}
	return m;
}

static void
monitor_activate (SimMonitor *m)
{
	SimAdapter *adapter = m->app->adapter;
	GHashTableIter it;
	gpointer v;

	m->active = TRUE;
	monitor_call (m, "Activate", NULL);
	/* what is on the air now counts as received */
	g_hash_table_iter_init (&it, adapter->sim->peers);
	while (g_hash_table_iter_next (&it, NULL, &v)) {
		SimPeer *peer = v;
		if (peer->host != adapter && sim_peer_visible (peer)) {
			g_autoptr(GPtrArray) ads = peer_ad (peer, active_scan (adapter));
			monitor_seen (m, peer, ads);
		}
	}
}

static void
app_add_objects (SimMonitorApp *app, GVariant *objects)
{
	GVariantIter it;
	const gchar *path;
	GVariant *ifaces;

	g_variant_iter_init (&it, objects);
	while (g_variant_iter_next (&it, "{&o@a{sa{sv}}}", &path, &ifaces)) {
		g_autoptr(GVariant) props = g_variant_lookup_value (ifaces,
				"org.bluez.AdvertisementMonitor1", G_VARIANT_TYPE ("a{sv}"));
		SimMonitor *m;
		gboolean dup = FALSE;

		g_variant_unref (ifaces);
		if (props == NULL || !g_str_has_prefix (path, app->root))
			continue;
		for (guint i = 0; i < app->monitors->len; i++)
			dup |= g_strcmp0 (((SimMonitor *) g_ptr_array_index (app->monitors, i))->path, path) == 0;
		if (dup)
			continue;
		m = monitor_parse (app, path, props);
		if (m == NULL)
			continue;
		g_ptr_array_add (app->monitors, m);
		monitor_activate (m);
	}
}

static void
app_free (SimMonitorApp *app)
{
	g_ptr_array_unref (app->monitors);
	g_clear_object (&app->inv);
	g_free (app->owner);
	g_free (app->root);
	g_free (app);
}

static void
app_remove (SimMonitorApp *app, gboolean release)
{
	GDBusConnection *conn = app->adapter->sim->conn;

	if (release)
		for (guint i = 0; i < app->monitors->len; i++)
			monitor_call (g_ptr_array_index (app->monitors, i), "Release", NULL);
	g_ptr_array_remove (app->adapter->monitors, app);
	if (app->watch != 0)
		g_bus_unwatch_name (app->watch);
	if (app->sig_added != 0)
		g_dbus_connection_signal_unsubscribe (conn, app->sig_added);
	if (app->sig_removed != 0)
		g_dbus_connection_signal_unsubscribe (conn, app->sig_removed);
	app->watch = app->sig_added = app->sig_removed = 0;
	if (app->pending) {
		app->removed = TRUE;
		return;
	}
	app_free (app);
}

static void
app_vanished (GDBusConnection *conn, const gchar *name, gpointer data)
{
	app_remove (data, FALSE);
}

static void
app_signal (GDBusConnection *conn, const gchar *sender, const gchar *path,
	    const gchar *iface, const gchar *signal, GVariant *params, gpointer data)
{
	SimMonitorApp *app = data;

	if (g_strcmp0 (signal, "InterfacesAdded") == 0 &&
	    g_variant_is_of_type (params, G_VARIANT_TYPE ("(oa{sa{sv}})"))) {
		GVariantBuilder b;
		const gchar *obj;
		g_autoptr(GVariant) ifaces = NULL;
		g_variant_get (params, "(&o@a{sa{sv}})", &obj, &ifaces);
		g_variant_builder_init (&b, G_VARIANT_TYPE ("a{oa{sa{sv}}}"));
		g_variant_builder_add (&b, "{o@a{sa{sv}}}", obj, ifaces);
		{
			g_autoptr(GVariant) objs = g_variant_ref_sink (g_variant_builder_end (&b));
			app_add_objects (app, objs);
		}
	} else if (g_strcmp0 (signal, "InterfacesRemoved") == 0 &&
		   g_variant_is_of_type (params, G_VARIANT_TYPE ("(oas)"))) {
		const gchar *obj;
		g_autofree const gchar **names = NULL;
		g_variant_get (params, "(&o^a&s)", &obj, &names);
		if (!g_strv_contains (names, "org.bluez.AdvertisementMonitor1"))
			return;
		for (guint i = 0; i < app->monitors->len; i++) {
			SimMonitor *m = g_ptr_array_index (app->monitors, i);
			if (g_strcmp0 (m->path, obj) == 0) {
				g_ptr_array_remove_index (app->monitors, i);
				break;
			}
		}
	}
}

static void
objects_cb (GObject *source, GAsyncResult *res, gpointer data)
{
	SimMonitorApp *app = data;
	g_autoptr(GError) error = NULL;
	g_autoptr(GVariant) ret = g_dbus_connection_call_finish (G_DBUS_CONNECTION (source), res, &error);
	g_autoptr(GVariant) objects = NULL;
	GDBusMethodInvocation *inv = g_steal_pointer (&app->inv);

	app->pending = FALSE;
	if (app->removed) {
		if (inv != NULL) {
			sim_return_error (inv, "Failed", "Monitor application gone");
			g_object_unref (inv);
		}
		app_free (app);
		return;
	}
	if (ret == NULL) {
		sim_return_error (inv, "Failed", "Failed to read monitors: %s", error->message);
		g_object_unref (inv);
		app_remove (app, FALSE);
		return;
	}
	g_dbus_method_invocation_return_value (inv, NULL);
	g_object_unref (inv);
	objects = g_variant_get_child_value (ret, 0);
	app_add_objects (app, objects);
}

static void
monitor_manager_method (SimIface *iface, const gchar *sender, const gchar *method,
			GVariant *params, GDBusMethodInvocation *inv)
{
	SimAdapter *adapter = iface->user_data;
	const gchar *root;
	SimMonitorApp *app = NULL;

	g_variant_get (params, "(&o)", &root);
	for (guint i = 0; i < adapter->monitors->len; i++) {
		SimMonitorApp *a = g_ptr_array_index (adapter->monitors, i);
		if (g_strcmp0 (a->owner, sender) == 0 && g_strcmp0 (a->root, root) == 0)
			app = a;
	}
	if (g_strcmp0 (method, "RegisterMonitor") == 0) {
		if (app != NULL) {
			sim_return_error (inv, "AlreadyExists", "Already Exists");
			return;
		}
		app = g_new0 (SimMonitorApp, 1);
		app->adapter = adapter;
		app->owner = g_strdup (sender);
		app->root = g_strdup (root);
		app->monitors = g_ptr_array_new_with_free_func ((GDestroyNotify) monitor_free);
		app->inv = g_object_ref (inv);
		app->pending = TRUE;
		app->watch = g_bus_watch_name_on_connection (adapter->sim->conn, sender,
							     G_BUS_NAME_WATCHER_FLAGS_NONE, NULL,
							     app_vanished, app, NULL);
		app->sig_added = g_dbus_connection_signal_subscribe (adapter->sim->conn, sender,
				"org.freedesktop.DBus.ObjectManager", "InterfacesAdded", root, NULL,
				G_DBUS_SIGNAL_FLAGS_NONE, app_signal, app, NULL);
		app->sig_removed = g_dbus_connection_signal_subscribe (adapter->sim->conn, sender,
				"org.freedesktop.DBus.ObjectManager", "InterfacesRemoved", root, NULL,
				G_DBUS_SIGNAL_FLAGS_NONE, app_signal, app, NULL);
		g_ptr_array_add (adapter->monitors, app);
		g_dbus_connection_call (adapter->sim->conn, sender, root,
					"org.freedesktop.DBus.ObjectManager", "GetManagedObjects",
					NULL, G_VARIANT_TYPE ("(a{oa{sa{sv}}})"),
					G_DBUS_CALL_FLAGS_NONE, 10000, NULL, objects_cb, app);
	} else {
		if (app == NULL) {
			sim_return_error (inv, "DoesNotExist", "Does Not Exist");
			return;
		}
		if (app->pending) {
			sim_return_error (inv, "InProgress", "In Progress");
			return;
		}
		app_remove (app, TRUE);
		g_dbus_method_invocation_return_value (inv, NULL);
	}
}

void
sim_monitor_adapter_down (SimAdapter *adapter)
{
	/* monitors stay registered across power cycles; they just stop
	 * seeing adverts, and found devices are lost */
	for (guint i = 0; i < adapter->monitors->len; i++) {
		SimMonitorApp *app = g_ptr_array_index (adapter->monitors, i);
		for (guint j = 0; j < app->monitors->len; j++) {
			SimMonitor *m = g_ptr_array_index (app->monitors, j);
			GHashTableIter it;
			gpointer v;
			g_hash_table_iter_init (&it, m->state);
			while (g_hash_table_iter_next (&it, NULL, &v)) {
				SimMonState *s = v;
				g_clear_handle_id (&s->found_id, g_source_remove);
				g_clear_handle_id (&s->lost_id, g_source_remove);
				if (s->found)
					lost_cb (s);
			}
			g_hash_table_remove_all (m->state);
		}
	}
}

void
sim_monitor_drop_all (SimAdapter *adapter)
{
	while (adapter->monitors->len > 0) {
		SimMonitorApp *app = g_ptr_array_index (adapter->monitors, 0);
		if (app->inv != NULL) {
			sim_return_error (app->inv, "Failed", "Adapter gone");
			g_clear_object (&app->inv);
		}
		app_remove (app, FALSE);
	}
}

void
sim_monitor_add_iface (SimAdapter *adapter)
{
	SimIface *i = sim_object_add_iface (adapter->obj, "org.bluez.AdvertisementMonitorManager1",
					    monitor_manager_method, NULL, adapter);
	const gchar *types[] = { "or_patterns", NULL };

	sim_iface_set (i, "SupportedMonitorTypes", g_variant_new_strv (types, -1));
	sim_iface_set (i, "SupportedFeatures", g_variant_new_strv (NULL, 0));
}
