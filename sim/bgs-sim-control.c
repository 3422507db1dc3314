/* bgs-sim-control.c: org.bgsync.Sim1, the radio model's control interface
 * at /org/bgsync/sim (bus name org.bgsync.Sim) */
#include "config.h"

#include <string.h>

#include "bgs-sim.h"

#define ERR_INVALID   "org.bgsync.Sim.Error.InvalidArgs"
#define ERR_NOT_FOUND "org.bgsync.Sim.Error.NotFound"
#define ERR_FAILED    "org.bgsync.Sim.Error.Failed"

static gboolean
bad (GError **error, const gchar *fmt, const gchar *what)
{
	g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT, fmt, what);
	return FALSE;
}

static GStrv
flags_from (GVariant *d)
{
	g_autofree const gchar **f = NULL;

	if (!g_variant_lookup (d, "flags", "^a&s", &f))
		return g_strdupv ((gchar *[]) { "read", NULL });
	return g_strdupv ((GStrv) f);
}

static GBytes *
value_from (GVariant *d)
{
	g_autoptr(GVariant) v = g_variant_lookup_value (d, "value", G_VARIANT_TYPE_BYTESTRING);
	gsize len;
	gconstpointer p;
	const gchar *s;

	if (v == NULL) {
		if (g_variant_lookup (d, "value", "&s", &s))
			return g_bytes_new (s, strlen (s));
		return g_bytes_new (NULL, 0);
	}
	p = g_variant_get_fixed_array (v, &len, 1);
	return g_bytes_new (p, len);
}

static gboolean
parse_services (SimPeer *peer, GVariant *list, GError **error)
{
	GVariantIter it;
	GVariant *sd;

	peer->services = g_ptr_array_new_with_free_func ((GDestroyNotify) sim_gatt_svc_free);
	g_variant_iter_init (&it, list);
	while ((sd = g_variant_iter_next_value (&it)) != NULL) {
		g_autoptr(GVariant) sdict = sd;
		g_autoptr(GVariant) chrcs = NULL;
		const gchar *uuid;
		gboolean primary = TRUE;
		SimGattSvc *svc;
		GVariantIter cit;
		GVariant *cd;

		g_autofree gchar *sfull = NULL;

		if (!g_variant_lookup (sdict, "uuid", "&s", &uuid) ||
		    (sfull = sim_uuid_normalize (uuid)) == NULL)
			return bad (error, "service without a valid uuid%s", "");
		g_variant_lookup (sdict, "primary", "b", &primary);
		svc = sim_gatt_svc_new (sfull, primary);
		g_ptr_array_add (peer->services, svc);
		chrcs = g_variant_lookup_value (sdict, "characteristics", G_VARIANT_TYPE ("aa{sv}"));
		if (chrcs == NULL)
			continue;
		g_variant_iter_init (&cit, chrcs);
		while ((cd = g_variant_iter_next_value (&cit)) != NULL) {
			g_autoptr(GVariant) cdict = cd;
			g_autoptr(GVariant) descs = NULL;
			g_auto(GStrv) flags = flags_from (cdict);
			g_autoptr(GBytes) value = value_from (cdict);
			SimGattChrc *c;
			GVariantIter dit;
			GVariant *dd;

			g_autofree gchar *cfull = NULL;

			if (!g_variant_lookup (cdict, "uuid", "&s", &uuid) ||
			    (cfull = sim_uuid_normalize (uuid)) == NULL)
				return bad (error, "characteristic without a valid uuid%s", "");
			c = sim_gatt_chrc_add (svc, cfull, (const gchar *const *) flags, value);
			descs = g_variant_lookup_value (cdict, "descriptors", G_VARIANT_TYPE ("aa{sv}"));
			if (descs == NULL)
				continue;
			g_variant_iter_init (&dit, descs);
			while ((dd = g_variant_iter_next_value (&dit)) != NULL) {
				g_autoptr(GVariant) ddict = dd;
				g_auto(GStrv) dflags = flags_from (ddict);
				g_autoptr(GBytes) dvalue = value_from (ddict);
				g_autofree gchar *dfull = NULL;

				if (!g_variant_lookup (ddict, "uuid", "&s", &uuid) ||
				    (dfull = sim_uuid_normalize (uuid)) == NULL)
					return bad (error, "descriptor without a valid uuid%s", "");
				sim_gatt_desc_add (c, dfull, (const gchar *const *) dflags, dvalue);
			}
		}
	}
	sim_gatt_assign_handles (peer->services);
	return TRUE;
}

static gboolean
apply_adv_data (SimPeer *peer, GVariant *desc, GError **error)
{
	const gchar *s;
	g_autofree const gchar **uuids = NULL;
	GVariant *v;

	if (g_variant_lookup (desc, "name", "&s", &s)) {
		g_free (peer->name);
		peer->name = s[0] != '\0' ? g_strdup (s) : NULL;
	}
	if (g_variant_lookup (desc, "uuids", "^a&s", &uuids)) {
		g_autoptr(GPtrArray) full = g_ptr_array_new_with_free_func (g_free);
		for (guint i = 0; uuids[i] != NULL; i++) {
			gchar *f = sim_uuid_normalize (uuids[i]);
			if (f == NULL)
				return bad (error, "invalid uuid %s", uuids[i]);
			g_ptr_array_add (full, f);
		}
		g_ptr_array_add (full, NULL);
		g_strfreev (peer->uuids);
		peer->uuids = (GStrv) g_ptr_array_steal (full, NULL);
	}
	if ((v = g_variant_lookup_value (desc, "manufacturer-data", NULL)) != NULL) {
		if (!g_variant_is_of_type (v, G_VARIANT_TYPE ("a{qv}"))) {
			g_variant_unref (v);
			return bad (error, "manufacturer-data must be a{qv}%s", "");
		}
		g_clear_pointer (&peer->mfr_data, g_variant_unref);
		peer->mfr_data = g_variant_n_children (v) > 0 ? v : (g_variant_unref (v), NULL);
	}
	if ((v = g_variant_lookup_value (desc, "service-data", NULL)) != NULL) {
		if (!g_variant_is_of_type (v, G_VARIANT_TYPE ("a{sv}"))) {
			g_variant_unref (v);
			return bad (error, "service-data must be a{sv}%s", "");
		}
		g_clear_pointer (&peer->svc_data, g_variant_unref);
		peer->svc_data = g_variant_n_children (v) > 0 ? v : (g_variant_unref (v), NULL);
	}
	return TRUE;
}

static gchar *
next_free_address (Sim *sim)
{
	static guint counter = 1;
	gchar *a = NULL;

	do {
		g_free (a);
		a = g_strdup_printf ("C0:00:00:%02X:%02X:%02X", (counter >> 16) & 0xff,
				     (counter >> 8) & 0xff, counter & 0xff);
		counter++;
	} while (sim_peer_find (sim, a) != NULL);
	return a;
}

SimPeer *
sim_peer_new_from_desc (Sim *sim, GVariant *desc, GError **error)
{
	g_autofree gchar *address = NULL;
	const gchar *s;
	SimPeer *peer;
	g_autoptr(GVariant) services = NULL;
	g_autofree const gchar **echo = NULL;
	gint16 n;
	guint16 q;
	gboolean b;

	if (g_variant_lookup (desc, "address", "&s", &s) && s[0] != '\0')
		address = g_ascii_strup (s, -1);
	else
		address = next_free_address (sim);
	if (!sim_address_valid (address)) {
		bad (error, "invalid address '%s'", address);
		return NULL;
	}
	if (sim_peer_find (sim, address) != NULL) {
		g_set_error (error, G_IO_ERROR, G_IO_ERROR_EXISTS, "address %s is in use", address);
		return NULL;
	}
	peer = g_new0 (SimPeer, 1);
	peer->sim = sim;
	peer->address = g_steal_pointer (&address);
	peer->address_type = g_strdup ("public");
	peer->type = SIM_TYPE_LE;
	peer->rssi = -60;
	peer->tx_power = 127;
	peer->in_range = TRUE;
	peer->advertising = TRUE;
	peer->connectable = TRUE;
	peer->mtu = sim->default_mtu;
	if (g_variant_lookup (desc, "address-type", "&s", &s)) {
		if (g_strcmp0 (s, "public") != 0 && g_strcmp0 (s, "random") != 0)
			goto bad_type;
		g_free (peer->address_type);
		peer->address_type = g_strdup (s);
	}
	if (g_variant_lookup (desc, "type", "&s", &s)) {
		if (g_ascii_strcasecmp (s, "le") == 0)
			peer->type = SIM_TYPE_LE;
		else if (g_ascii_strcasecmp (s, "bredr") == 0)
			peer->type = SIM_TYPE_BREDR;
		else if (g_ascii_strcasecmp (s, "dual") == 0)
			peer->type = SIM_TYPE_DUAL;
		else
			goto bad_type;
	}
	if (g_variant_lookup (desc, "modalias", "&s", &s))
		peer->modalias = g_strdup (s);
	if (g_variant_lookup (desc, "rssi", "n", &n))
		peer->rssi = n;
	if (g_variant_lookup (desc, "tx-power", "n", &n))
		peer->tx_power = n;
	if (g_variant_lookup (desc, "appearance", "q", &q))
		peer->appearance = q;
	if (g_variant_lookup (desc, "mtu", "q", &q))
		peer->mtu = CLAMP (q, 23, 517);
	if (g_variant_lookup (desc, "in-range", "b", &b))
		peer->in_range = b;
	if (g_variant_lookup (desc, "advertising", "b", &b))
		peer->advertising = b;
	if (g_variant_lookup (desc, "connectable", "b", &b))
		peer->connectable = b;
	if (g_variant_lookup (desc, "rfcomm-echo", "^a&s", &echo))
		peer->rfcomm_echo = g_strdupv ((GStrv) echo);
	if (!apply_adv_data (peer, desc, error))
		goto fail;
	services = g_variant_lookup_value (desc, "services", G_VARIANT_TYPE ("aa{sv}"));
	if (services != NULL && !parse_services (peer, services, error))
		goto fail;
	g_hash_table_insert (sim->peers, peer->address, peer);
	return peer;
bad_type:
	bad (error, "invalid value in '%s'", "type/address-type");
fail:
	/* not yet known to anyone: free directly */
	g_hash_table_insert (sim->peers, peer->address, peer);
	sim_peer_remove (peer);
	return NULL;
}

static SimGattChrc *
peer_find_chrc (SimPeer *peer, const gchar *uuid)
{
	g_autoptr(GPtrArray) svcs = g_ptr_array_new ();
	g_autofree gchar *full = sim_uuid_normalize (uuid);

	if (full == NULL)
		return NULL;
	uuid = full;
	sim_peer_collect_services (peer, svcs);
	for (guint i = 0; i < svcs->len; i++) {
		SimGattSvc *svc = g_ptr_array_index (svcs, i);
		for (guint j = 0; j < svc->chrcs->len; j++) {
			SimGattChrc *c = g_ptr_array_index (svc->chrcs, j);
			if (g_ascii_strcasecmp (c->uuid, uuid) == 0)
				return c;
		}
	}
	return NULL;
}

static GVariant *
peer_summary (Sim *sim, SimPeer *peer)
{
	GVariantBuilder b;
	guint links = 0;
	const gchar *name = sim_peer_adv_name (peer);

	for (guint i = 0; i < sim->links->len; i++) {
		SimLink *l = g_ptr_array_index (sim->links, i);
		if (l->peer == peer || l->central->adapter->peer == peer)
			links++;
	}
	g_variant_builder_init (&b, G_VARIANT_TYPE ("a{sv}"));
	g_variant_builder_add (&b, "{sv}", "address", g_variant_new_string (peer->address));
	if (name != NULL)
		g_variant_builder_add (&b, "{sv}", "name", g_variant_new_string (name));
	if (peer->host != NULL)
		g_variant_builder_add (&b, "{sv}", "adapter", g_variant_new_object_path (peer->host->path));
	g_variant_builder_add (&b, "{sv}", "in-range", g_variant_new_boolean (peer->in_range));
	g_variant_builder_add (&b, "{sv}", "visible", g_variant_new_boolean (sim_peer_visible (peer)));
	g_variant_builder_add (&b, "{sv}", "rebooting", g_variant_new_boolean (peer->rebooting));
	g_variant_builder_add (&b, "{sv}", "stalled", g_variant_new_boolean (peer->stalled));
	g_variant_builder_add (&b, "{sv}", "rssi", g_variant_new_int16 (peer->rssi));
	g_variant_builder_add (&b, "{sv}", "rate", g_variant_new_uint64 (peer->rate));
	g_variant_builder_add (&b, "{sv}", "latency-ms", g_variant_new_uint32 (peer->latency_ms));
	g_variant_builder_add (&b, "{sv}", "links", g_variant_new_uint32 (links));
	return g_variant_builder_end (&b);
}

static void
return_gerror (GDBusMethodInvocation *inv, GError *error)
{
	const gchar *name = ERR_FAILED;

	if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT))
		name = ERR_INVALID;
	else if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND))
		name = ERR_NOT_FOUND;
	g_dbus_method_invocation_return_dbus_error (inv, name, error->message);
}

static void
control_method (SimIface *iface, const gchar *sender, const gchar *method,
		GVariant *params, GDBusMethodInvocation *inv)
{
	Sim *sim = iface->user_data;
	g_autoptr(GError) error = NULL;
	const gchar *address = NULL;
	SimPeer *peer = NULL;

	if (g_strcmp0 (method, "AddAdapter") == 0) {
		const gchar *name;
		SimAdapter *a;
		g_variant_get (params, "(&s&s)", &address, &name);
		a = sim_adapter_add (sim, address, name, &error);
		if (a == NULL) {
			return_gerror (inv, error);
			return;
		}
		g_dbus_method_invocation_return_value (inv, g_variant_new ("(o)", a->path));
		return;
	}
	if (g_strcmp0 (method, "RemoveAdapter") == 0) {
		const gchar *path;
		g_variant_get (params, "(&o)", &path);
		if (!sim_adapter_remove (sim, path, &error)) {
			return_gerror (inv, error);
			return;
		}
		g_dbus_method_invocation_return_value (inv, NULL);
		return;
	}
	if (g_strcmp0 (method, "AddDevice") == 0) {
		g_autoptr(GVariant) desc = g_variant_get_child_value (params, 0);
		peer = sim_peer_new_from_desc (sim, desc, &error);
		if (peer == NULL) {
			return_gerror (inv, error);
			return;
		}
		g_info ("device %s added", peer->address);
		g_dbus_method_invocation_return_value (inv, g_variant_new ("(s)", peer->address));
		sim_peer_changed (peer);
		return;
	}
	if (g_strcmp0 (method, "ListDevices") == 0) {
		GVariantBuilder b;
		GHashTableIter it;
		gpointer v;
		g_variant_builder_init (&b, G_VARIANT_TYPE ("aa{sv}"));
		g_hash_table_iter_init (&it, sim->peers);
		while (g_hash_table_iter_next (&it, NULL, &v))
			g_variant_builder_add_value (&b, peer_summary (sim, v));
		g_dbus_method_invocation_return_value (inv, g_variant_new ("(aa{sv})", &b));
		return;
	}
	if (g_strcmp0 (method, "RestartBluez") == 0) {
		if (!sim->bluez_up) {
			g_dbus_method_invocation_return_dbus_error (inv, ERR_FAILED, "org.bluez is restarting");
			return;
		}
		g_dbus_method_invocation_return_value (inv, NULL);
		sim_restart_bluez (sim);
		return;
	}
	if (g_strcmp0 (method, "Configure") == 0) {
		g_autoptr(GVariant) opts = g_variant_get_child_value (params, 0);
		GVariantIter it;
		const gchar *key;
		GVariant *val;
		g_variant_iter_init (&it, opts);
		while (g_variant_iter_loop (&it, "{&sv}", &key, &val)) {
			guint32 u;
			if (!g_variant_is_of_type (val, G_VARIANT_TYPE_UINT32)) {
				g_dbus_method_invocation_return_dbus_error (inv, ERR_INVALID,
						"options are u (milliseconds) or q (mtu)");
				return;
			}
			u = g_variant_get_uint32 (val);
			if (g_strcmp0 (key, "supervision-timeout-ms") == 0)
				sim->supervision_timeout_ms = u;
			else if (g_strcmp0 (key, "connect-timeout-ms") == 0)
				sim->connect_timeout_ms = u;
			else if (g_strcmp0 (key, "temporary-timeout-ms") == 0)
				sim->temporary_timeout_ms = u;
			else if (g_strcmp0 (key, "restart-delay-ms") == 0)
				sim->restart_delay_ms = u;
			else if (g_strcmp0 (key, "att-timeout-ms") == 0)
				sim->att_timeout_ms = u;
			else if (g_strcmp0 (key, "mtu") == 0)
				sim->default_mtu = CLAMP (u, 23, 517);
			else if (g_strcmp0 (key, "server-max-write") == 0)
				sim->server_max_write = CLAMP (u, 20, 512);
			else {
				g_dbus_method_invocation_return_dbus_error (inv, ERR_INVALID,
						"unknown option");
				return;
			}
		}
		g_dbus_method_invocation_return_value (inv, NULL);
		return;
	}

	/* faults of the GATT sockets; they name a device the adapters may
	 * not know yet, so no peer lookup */
	if (g_strcmp0 (method, "SetAcquireMTU") == 0) {
		gint32 mtu;
		g_variant_get (params, "(&si)", &address, &mtu);
		if (!sim_address_valid (address) || mtu > G_MAXUINT16) {
			g_dbus_method_invocation_return_dbus_error (inv, ERR_INVALID,
					"an address and an MTU up to 65535 (negative: the real one)");
			return;
		}
		sim_gatt_set_acquire_mtu (address, mtu);
		g_dbus_method_invocation_return_value (inv, NULL);
		return;
	}
	if (g_strcmp0 (method, "SetAcquireError") == 0) {
		const gchar *name;
		g_variant_get (params, "(&s&s)", &address, &name);
		if (!sim_address_valid (address) || strlen (name) > 64 ||
		    strspn (name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz") != strlen (name)) {
			g_dbus_method_invocation_return_dbus_error (inv, ERR_INVALID,
					"an address and an org.bluez.Error name like NotConnected (empty: none)");
			return;
		}
		sim_gatt_set_acquire_error (address, name);
		g_dbus_method_invocation_return_value (inv, NULL);
		return;
	}
	if (g_strcmp0 (method, "CloseAcquired") == 0) {
		const gchar *which;
		gboolean notify, write;
		g_variant_get (params, "(&s&s)", &address, &which);
		notify = g_strcmp0 (which, "notify") == 0 || g_strcmp0 (which, "all") == 0;
		write = g_strcmp0 (which, "write") == 0 || g_strcmp0 (which, "all") == 0;
		if (!notify && !write) {
			g_dbus_method_invocation_return_dbus_error (inv, ERR_INVALID,
					"which is notify, write or all");
			return;
		}
		g_dbus_method_invocation_return_value (inv, g_variant_new ("(u)",
				sim_gatt_close_acquired (sim, address, notify, write)));
		return;
	}

	/* everything else acts on one device */
	g_variant_get_child (params, 0, "&s", &address);
	peer = sim_peer_find (sim, address);
	if (peer == NULL) {
		g_dbus_method_invocation_return_dbus_error (inv, ERR_NOT_FOUND, "no such device");
		return;
	}
	if (g_strcmp0 (method, "RemoveDevice") == 0) {
		if (peer->host != NULL) {
			g_dbus_method_invocation_return_dbus_error (inv, ERR_INVALID,
					"that is an adapter: use RemoveAdapter");
			return;
		}
		sim_peer_remove (peer);
	} else if (g_strcmp0 (method, "SetInRange") == 0) {
		gboolean b;
		g_variant_get (params, "(&sb)", NULL, &b);
		sim_peer_set_in_range (peer, b);
	} else if (g_strcmp0 (method, "SetAdvertising") == 0) {
		gboolean b;
		g_variant_get (params, "(&sb)", NULL, &b);
		if (peer->host != NULL) {
			g_dbus_method_invocation_return_dbus_error (inv, ERR_INVALID,
					"adapters advertise through LEAdvertisingManager1");
			return;
		}
		peer->advertising = b;
		sim_peer_changed (peer);
	} else if (g_strcmp0 (method, "SetAdvertisingData") == 0) {
		g_autoptr(GVariant) data = g_variant_get_child_value (params, 1);
		if (peer->host != NULL) {
			g_dbus_method_invocation_return_dbus_error (inv, ERR_INVALID,
					"adapters advertise through LEAdvertisingManager1");
			return;
		}
		if (!apply_adv_data (peer, data, &error)) {
			return_gerror (inv, error);
			return;
		}
		sim_peer_changed (peer);
	} else if (g_strcmp0 (method, "SetRSSI") == 0) {
		gint16 rssi;
		g_variant_get (params, "(&sn)", NULL, &rssi);
		peer->rssi = rssi;
		sim_peer_changed (peer);
	} else if (g_strcmp0 (method, "SetLinkRate") == 0) {
		g_variant_get (params, "(&st)", NULL, &peer->rate);
		sim_links_kick (sim);
	} else if (g_strcmp0 (method, "SetLatency") == 0) {
		guint32 ms;
		g_variant_get (params, "(&su)", NULL, &ms);
		peer->latency_ms = MIN (ms, 60000);
		sim_links_kick (sim);
	} else if (g_strcmp0 (method, "Stall") == 0) {
		g_variant_get (params, "(&sb)", NULL, &peer->stalled);
		sim_links_kick (sim);
	} else if (g_strcmp0 (method, "DropLink") == 0) {
		sim_peer_drop_links (peer, "dropped on request");
	} else if (g_strcmp0 (method, "Reboot") == 0) {
		gdouble secs;
		const gchar *new_address, *new_name;
		g_autofree gchar *after = NULL;
		g_variant_get (params, "(&sd&s&s)", NULL, &secs, &new_address, &new_name);
		if (secs < 0 || secs > 3600) {
			g_dbus_method_invocation_return_dbus_error (inv, ERR_INVALID, "seconds out of range");
			return;
		}
		if (g_strcmp0 (new_address, "+1") == 0) {
			after = sim_address_add (peer->address, 1);
		} else if (new_address[0] != '\0') {
			after = g_ascii_strup (new_address, -1);
			if (!sim_address_valid (after)) {
				g_dbus_method_invocation_return_dbus_error (inv, ERR_INVALID, "invalid address");
				return;
			}
		}
		if (after != NULL && sim_peer_find (sim, after) != NULL && sim_peer_find (sim, after) != peer) {
			g_dbus_method_invocation_return_dbus_error (inv, ERR_INVALID, "new address in use");
			return;
		}
		g_dbus_method_invocation_return_value (inv, g_variant_new ("(s)",
						       after != NULL ? after : peer->address));
		sim_peer_reboot (peer, (guint) (secs * 1000), after, new_name);
		return;
	} else if (g_strcmp0 (method, "Notify") == 0 || g_strcmp0 (method, "SetValue") == 0 ||
		   g_strcmp0 (method, "GetValue") == 0) {
		const gchar *uuid;
		SimGattChrc *c;
		g_variant_get_child (params, 1, "&s", &uuid);
		c = peer_find_chrc (peer, uuid);
		if (c == NULL) {
			g_dbus_method_invocation_return_dbus_error (inv, ERR_NOT_FOUND, "no such characteristic");
			return;
		}
		if (c->svc->app != NULL) {
			g_dbus_method_invocation_return_dbus_error (inv, ERR_INVALID,
					"served by an application, not by the simulator");
			return;
		}
		if (g_strcmp0 (method, "GetValue") == 0) {
			gsize len;
			gconstpointer p = g_bytes_get_data (c->value, &len);
			g_dbus_method_invocation_return_value (inv, g_variant_new ("(@ay)",
					g_variant_new_fixed_array (G_VARIANT_TYPE_BYTE, p != NULL ? p : "", len, 1)));
			return;
		} else {
			g_autoptr(GVariant) v = g_variant_get_child_value (params, 2);
			gsize len;
			gconstpointer p = g_variant_get_fixed_array (v, &len, 1);
			g_bytes_unref (c->value);
			c->value = g_bytes_new (p, len);
			if (g_strcmp0 (method, "Notify") == 0)
				sim_gatt_notify (peer, c, c->value);
		}
	} else {
		g_dbus_method_invocation_return_dbus_error (inv, ERR_INVALID, "unknown method");
		return;
	}
	g_dbus_method_invocation_return_value (inv, NULL);
}

void
sim_control_register (Sim *sim)
{
	SimObject *obj = sim_object_new (sim->bus, SIM_CONTROL_PATH, FALSE);
	SimIface *iface = sim_object_add_iface (obj, SIM_CONTROL_IFACE, control_method, NULL, sim);

	sim_iface_set (iface, "Version", g_variant_new_string (PACKAGE_VERSION));
	sim_iface_set (iface, "BluezRunning", g_variant_new_boolean (TRUE));
	sim->control = iface;
	sim_object_export (obj);
}
