/* bgs-sim-gatt.c: GATT databases and the client side objects of a device
 * (GattService1, GattCharacteristic1, GattDescriptor1) with reads, writes,
 * notifications and acquired sockets, bridged to the peer's server */
#include "config.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <glib-unix.h>

#include "bgs-sim.h"

/* bluetoothd asks the app for the socket: AcquireNotify(a{sv}) -> (h, q) */
typedef struct {
	SimGattChrc *c;		/* NULL once the characteristic is gone */
} SimNotifyAcq;

static GPtrArray *live_nacqs;

static void ops_orphan (SimDevice *dev, SimRChrc *rc, SimGattChrc *chrc);

/* AcquireWrite(a{sv}) -> (h, q) to the app, for its write io */
typedef struct {
	SimGattChrc *c;		/* NULL once the characteristic is gone */
	Sim *sim;
} SimWriteAcq;

static GPtrArray *live_wacqs;
static gint app_write (SimGattChrc *c, SimDevice *dev, GBytes *data);
static GVariant *app_acquire_options (SimDevice *dev);

#define ATT_MAX_VALUE 512
/* bluetoothd 5.66's gatt-server checks a write's length with the handle
 * still counted (check_length (length, 0), fixed later): its largest
 * written value is 510 bytes; longer write commands vanish
 * (Sim->server_max_write, Configure "server-max-write") */

gboolean
sim_flags_has (const gchar *const *flags, const gchar *flag)
{
	return flags != NULL && g_strv_contains (flags, flag);
}

/* ---- databases ---- */

SimGattSvc *
sim_gatt_svc_new (const gchar *uuid, gboolean primary)
{
	SimGattSvc *svc = g_new0 (SimGattSvc, 1);

	svc->uuid = g_ascii_strdown (uuid, -1);
	svc->primary = primary;
	svc->chrcs = g_ptr_array_new ();
	return svc;
}

static void
desc_free (SimGattDesc *d)
{
	g_free (d->uuid);
	g_strfreev (d->flags);
	g_clear_pointer (&d->value, g_bytes_unref);
	g_free (d->app_path);
	g_free (d);
}

static void
chrc_free (SimGattChrc *c)
{
	if (c->svc->app != NULL) {
		Sim *sim = c->svc->app->adapter->sim;
		for (guint i = 0; i < sim->links->len; i++) {
			SimLink *l = g_ptr_array_index (sim->links, i);
			sim_queue_unwait (l->up, c);
			sim_queue_unwait (l->down, c);
		}
	}
	g_clear_handle_id (&c->app_notify_src, g_source_remove);
	if (c->app_notify_fd >= 0)
		close (c->app_notify_fd);
	g_clear_handle_id (&c->app_write_hup, g_source_remove);
	if (c->app_write_fd >= 0)
		close (c->app_write_fd);
	for (guint i = 0; live_wacqs != NULL && i < live_wacqs->len; i++) {
		SimWriteAcq *a = g_ptr_array_index (live_wacqs, i);
		if (a->c == c)
			a->c = NULL;
	}
	for (guint i = 0; live_nacqs != NULL && i < live_nacqs->len; i++) {
		SimNotifyAcq *a = g_ptr_array_index (live_nacqs, i);
		if (a->c == c)
			a->c = NULL;
	}
	ops_orphan (NULL, NULL, c);
	for (guint i = 0; i < c->descs->len; i++)
		desc_free (g_ptr_array_index (c->descs, i));
	g_ptr_array_unref (c->descs);
	g_free (c->uuid);
	g_strfreev (c->flags);
	g_clear_pointer (&c->value, g_bytes_unref);
	g_free (c->app_path);
	g_free (c);
}

void
sim_gatt_svc_free (SimGattSvc *svc)
{
	for (guint i = 0; i < svc->chrcs->len; i++)
		chrc_free (g_ptr_array_index (svc->chrcs, i));
	g_ptr_array_unref (svc->chrcs);
	g_free (svc->uuid);
	g_free (svc->app_path);
	g_free (svc);
}

SimGattChrc *
sim_gatt_chrc_add (SimGattSvc *svc, const gchar *uuid, const gchar *const *flags,
		   GBytes *value)
{
	SimGattChrc *c = g_new0 (SimGattChrc, 1);

	c->svc = svc;
	c->uuid = g_ascii_strdown (uuid, -1);
	c->flags = g_strdupv ((GStrv) flags);
	c->value = value != NULL ? g_bytes_ref (value) : g_bytes_new (NULL, 0);
	c->descs = g_ptr_array_new ();
	c->app_notify_fd = -1;
	c->app_write_fd = -1;
	g_ptr_array_add (svc->chrcs, c);
	return c;
}

SimGattDesc *
sim_gatt_desc_add (SimGattChrc *chrc, const gchar *uuid, const gchar *const *flags,
		   GBytes *value)
{
	SimGattDesc *d = g_new0 (SimGattDesc, 1);

	d->chrc = chrc;
	d->uuid = g_ascii_strdown (uuid, -1);
	d->flags = g_strdupv ((GStrv) flags);
	d->value = value != NULL ? g_bytes_ref (value) : g_bytes_new (NULL, 0);
	g_ptr_array_add (chrc->descs, d);
	return d;
}

/* handles like a real server: service, then declaration+value per
 * characteristic, then its descriptors */
void
sim_gatt_assign_handles (GPtrArray *services)
{
	guint16 h = 1;

	/* 0x0001-0x0009 belong to GAP and GATT, which bluetoothd hides */
	h = 0x000a;
	for (guint i = 0; i < services->len; i++) {
		SimGattSvc *svc = g_ptr_array_index (services, i);
		svc->handle = h++;
		for (guint j = 0; j < svc->chrcs->len; j++) {
			SimGattChrc *c = g_ptr_array_index (svc->chrcs, j);
			c->handle = h;
			h += 2;
			for (guint k = 0; k < c->descs->len; k++)
				((SimGattDesc *) g_ptr_array_index (c->descs, k))->handle = h++;
		}
	}
}

void
sim_peer_collect_services (SimPeer *peer, GPtrArray *out)
{
	if (peer->host != NULL) {
		for (guint i = 0; i < peer->host->apps->len; i++) {
			SimApp *app = g_ptr_array_index (peer->host->apps, i);
			for (guint j = 0; j < app->services->len; j++)
				g_ptr_array_add (out, g_ptr_array_index (app->services, j));
		}
		sim_gatt_assign_handles (out);
	} else if (peer->services != NULL) {
		for (guint j = 0; j < peer->services->len; j++)
			g_ptr_array_add (out, g_ptr_array_index (peer->services, j));
	}
}

/* ---- helpers ---- */

/* the peer serving @dev's GATT database over its link */
static SimPeer *
server_peer (SimDevice *dev)
{
	SimLink *link = dev->link;

	if (link == NULL)
		return NULL;
	return dev == link->central ? link->peer : link->central->adapter->peer;
}

/* the view of the client on the server's adapter ("device" for apps) */
static SimDevice *
client_view_at_server (SimDevice *dev)
{
	SimLink *link = dev->link;

	if (link == NULL)
		return NULL;
	return dev == link->central ? link->remote : link->central;
}

/* the queue carrying data from the client (@dev's side) to the server */
static SimQueue *
queue_to_server (SimDevice *dev)
{
	return dev == dev->link->central ? dev->link->up : dev->link->down;
}

static SimQueue *
queue_to_client (SimDevice *dev)
{
	return dev == dev->link->central ? dev->link->down : dev->link->up;
}

static GVariant *
app_options (SimDevice *dev, guint16 offset, const gchar *type)
{
	GVariantBuilder b;
	SimDevice *view = client_view_at_server (dev);

	g_variant_builder_init (&b, G_VARIANT_TYPE ("a{sv}"));
	if (view != NULL)
		g_variant_builder_add (&b, "{sv}", "device", g_variant_new_object_path (view->path));
	g_variant_builder_add (&b, "{sv}", "link", g_variant_new_string ("LE"));
	g_variant_builder_add (&b, "{sv}", "mtu", g_variant_new_uint16 (dev->link->mtu));
	/* bluetoothd 5.66 sends no "type" to the app, and "offset" only when
	 * there is one (seen in the VM tier) */
	(void) type;
	if (offset > 0)
		g_variant_builder_add (&b, "{sv}", "offset", g_variant_new_uint16 (offset));
	return g_variant_builder_end (&b);
}

static GVariant *
bytes_variant (GBytes *b)
{
	gsize len;
	gconstpointer data = g_bytes_get_data (b, &len);

	return g_variant_new_fixed_array (G_VARIANT_TYPE_BYTE, data != NULL ? data : "", len, 1);
}

static GBytes *
variant_bytes (GVariant *v)
{
	gsize len;
	gconstpointer data = g_variant_get_fixed_array (v, &len, 1);

	return g_bytes_new (data, len);
}

static guint16
option_u16 (GVariant *opts, const gchar *key, guint16 def)
{
	guint16 v;

	if (g_variant_lookup (opts, key, "q", &v))
		return v;
	return def;
}

static GBytes *
bytes_write_at (GBytes *old, guint16 offset, GBytes *data)
{
	gsize olen, dlen;
	const guint8 *o = g_bytes_get_data (old, &olen);
	const guint8 *d = g_bytes_get_data (data, &dlen);
	GByteArray *a = g_byte_array_new ();

	g_byte_array_append (a, o, MIN (olen, offset));
	if (offset > olen) {
		guint8 zero = 0;
		for (gsize i = olen; i < offset; i++)
			g_byte_array_append (a, &zero, 1);
	}
	g_byte_array_append (a, d, dlen);
	return g_byte_array_free_to_bytes (a);
}

static void
return_app_error (GDBusMethodInvocation *inv, GError *error)
{
	g_autofree gchar *remote = g_dbus_error_get_remote_error (error);

	if (remote != NULL && g_str_has_prefix (remote, "org.bluez.Error.")) {
		g_dbus_error_strip_remote_error (error);
		g_dbus_method_invocation_return_dbus_error (inv, remote, error->message);
		return;
	}
	sim_return_error (inv, "Failed", "Operation failed with ATT error: 0x0e");
}

/* ---- operations in flight ---- */

typedef struct {
	SimDevice *dev;		/* client side view */
	SimRChrc *rc;
	SimGattChrc *chrc;
	SimGattDesc *desc;
	GDBusMethodInvocation *inv;
	GBytes *data;
	guint16 offset;
	gchar *type;
	gboolean done;
	gboolean timed_out;
	gboolean orphan;	/* its attribute or device went away */
	guint att_timer;	/* a request unanswered this long ends the link */
} SimOp;

/* ops in flight, so what they point at can tell them it is gone */
static GPtrArray *live_ops;

static SimOp *
op_new (SimDevice *dev, SimRChrc *rc, GDBusMethodInvocation *inv)
{
	SimOp *op = g_new0 (SimOp, 1);

	op->dev = dev;
	op->rc = rc;
	op->inv = g_object_ref (inv);
	if (live_ops == NULL)
		live_ops = g_ptr_array_new ();
	g_ptr_array_add (live_ops, op);
	return op;
}

/* what @dev, @rc or @chrc referred to is being freed */
static void
ops_orphan (SimDevice *dev, SimRChrc *rc, SimGattChrc *chrc)
{
	for (guint i = 0; live_ops != NULL && i < live_ops->len; i++) {
		SimOp *op = g_ptr_array_index (live_ops, i);
		if (rc != NULL && op->rc == rc)
			op->rc = NULL;
		if ((dev != NULL && op->dev == dev) ||
		    (chrc != NULL && (op->chrc == chrc || (op->desc != NULL && op->desc->chrc == chrc)))) {
			op->orphan = TRUE;
			op->rc = NULL;
			op->chrc = NULL;
			op->desc = NULL;
			if (dev != NULL && op->dev == dev)
				op->dev = NULL;
		}
	}
}

static void
op_free (SimOp *op)
{
	g_ptr_array_remove_fast (live_ops, op);
	g_clear_handle_id (&op->att_timer, g_source_remove);
	if (!op->done && op->inv != NULL)
		sim_return_error (op->inv, "Failed", "%s",
				  op->timed_out ? "Operation timed out" : "Not connected");
	g_clear_object (&op->inv);
	g_clear_pointer (&op->data, g_bytes_unref);
	g_free (op->type);
	g_free (op);
}

/* ATT has no retry: a request without a response within 30 s kills the
 * bearer, and bluetoothd disconnects (a long stall ends like this) */
static gboolean
op_att_timeout (gpointer data)
{
	SimOp *op = data;

	op->att_timer = 0;
	op->timed_out = TRUE;
	if (op->dev != NULL && op->dev->link != NULL)
		sim_link_drop (op->dev->link, "ATT timeout");
	return G_SOURCE_REMOVE;
}

static void
op_start_timer (SimOp *op)
{
	guint ms = op->dev->adapter->sim->att_timeout_ms;

	if (ms > 0)
		op->att_timer = g_timeout_add (ms, op_att_timeout, op);
}

static void
op_destroy (gpointer data)
{
	op_free (data);
}

static gint
op_reply_deliver (gpointer data)
{
	SimOp *op = data;

	op->done = TRUE;
	if (op->data != NULL) {
		/* bluetoothd caches what it read at its offset */
		if (op->rc != NULL && op->desc == NULL && !op->orphan) {
			GVariant *old = sim_iface_get (op->rc->iface, "Value");
			g_autoptr(GBytes) ob = old != NULL ? variant_bytes (old) : g_bytes_new (NULL, 0);
			g_autoptr(GBytes) nb = bytes_write_at (ob, op->offset, op->data);
			sim_iface_set (op->rc->iface, "Value", bytes_variant (nb));
		}
		g_dbus_method_invocation_return_value (op->inv,
				g_variant_new ("(@ay)", bytes_variant (op->data)));
	} else {
		g_dbus_method_invocation_return_value (op->inv, NULL);
	}
	op_free (op);
	return -1;
}

/* the answer travels back over the link */
static void
op_answer (SimOp *op, GBytes *value)
{
	gsize len = value != NULL ? g_bytes_get_size (value) : 0;

	if (op->dev == NULL || op->dev->link == NULL) {
		op_free (op);
		return;
	}
	g_clear_pointer (&op->data, g_bytes_unref);
	op->data = value != NULL ? g_bytes_ref (value) : NULL;
	sim_queue_push (queue_to_client (op->dev), len + 1, op_reply_deliver, op_destroy, op);
}

static void
op_app_read_cb (GObject *source, GAsyncResult *res, gpointer data)
{
	SimOp *op = data;
	g_autoptr(GError) error = NULL;
	g_autoptr(GVariant) ret = g_dbus_connection_call_finish (G_DBUS_CONNECTION (source), res, &error);
	g_autoptr(GVariant) v = NULL;
	g_autoptr(GBytes) b = NULL;

	if (ret == NULL) {
		op->done = TRUE;
		return_app_error (op->inv, error);
		op_free (op);
		return;
	}
	v = g_variant_get_child_value (ret, 0);
	b = variant_bytes (v);
	op_answer (op, b);
}

static void
op_app_write_cb (GObject *source, GAsyncResult *res, gpointer data)
{
	SimOp *op = data;
	g_autoptr(GError) error = NULL;
	g_autoptr(GVariant) ret = g_dbus_connection_call_finish (G_DBUS_CONNECTION (source), res, &error);

	if (ret == NULL) {
		op->done = TRUE;
		return_app_error (op->inv, error);
		op_free (op);
		return;
	}
	op_answer (op, NULL);
}

static SimApp *
op_app (SimOp *op)
{
	SimGattChrc *c = op->desc != NULL ? op->desc->chrc : op->chrc;

	return c->svc->app;
}

/* the request reached the server */
static gint
op_read_deliver_real (gpointer data)
{
	SimOp *op = data;
	SimApp *app = op_app (op);
	const gchar *path = op->desc != NULL ? op->desc->app_path : op->chrc->app_path;
	const gchar *iface = op->desc != NULL ? "org.bluez.GattDescriptor1" : "org.bluez.GattCharacteristic1";

	if (op->dev->link == NULL) {
		op_free (op);
		return -1;
	}
	if (app == NULL) {
		GBytes *v = op->desc != NULL ? op->desc->value : op->chrc->value;
		gsize len = g_bytes_get_size (v);
		g_autoptr(GBytes) slice = NULL;
		if (op->offset > len) {
			op->done = TRUE;
			sim_return_error (op->inv, "Failed", "Operation failed with ATT error: 0x07");
			op_free (op);
			return -1;
		}
		slice = g_bytes_new_from_bytes (v, op->offset, len - op->offset);
		op_answer (op, slice);
		return -1;
	}
	g_dbus_connection_call (app->adapter->sim->conn, app->owner, path, iface, "ReadValue",
				g_variant_new ("(@a{sv})", app_options (op->dev, op->offset, NULL)),
				G_VARIANT_TYPE ("(ay)"), G_DBUS_CALL_FLAGS_NONE,
				op->dev->adapter->sim->att_timeout_ms, NULL, op_app_read_cb, op);
	return -1;
}

static gint
op_read_deliver (gpointer data)
{
	SimOp *op = data;

	/* the attribute, its service or the device went away meanwhile */
	if (op->orphan || op->dev == NULL || op->dev->link == NULL) {
		op_free (op);
		return -1;
	}
	return op_read_deliver_real (data);
}

static gboolean
app_write_hup_cb (gint fd, GIOCondition cond, gpointer data)
{
	SimGattChrc *c = data;

	/* the app let go of its socket: the next write asks again */
	c->app_write_hup = 0;
	close (c->app_write_fd);
	c->app_write_fd = -1;
	return G_SOURCE_REMOVE;
}

static void
app_acquire_write_cb (GObject *source, GAsyncResult *res, gpointer data)
{
	SimWriteAcq *a = data;
	SimGattChrc *c = a->c;
	Sim *sim = a->sim;
	g_autoptr(GError) error = NULL;
	g_autoptr(GUnixFDList) fds = NULL;
	g_autoptr(GVariant) ret = g_dbus_connection_call_with_unix_fd_list_finish (
			G_DBUS_CONNECTION (source), &fds, res, &error);
	gint32 handle = -1;
	gint fd = -1;

	g_ptr_array_remove_fast (live_wacqs, a);
	g_free (a);
	if (ret != NULL) {
		g_variant_get (ret, "(hq)", &handle, NULL);
		if (fds != NULL && handle >= 0 && handle < g_unix_fd_list_get_length (fds))
			fd = g_unix_fd_list_get (fds, handle, NULL);
	}
	if (c == NULL) {
		if (fd >= 0)
			close (fd);
		return;
	}
	c->app_write_pending = FALSE;
	if (fd < 0) {
		g_debug ("app AcquireWrite failed (%s): WriteValue instead",
			 error != NULL ? error->message : "no fd");
		c->app_write_failed = TRUE;
	} else {
		g_unix_set_fd_nonblocking (fd, TRUE, NULL);
		c->app_write_fd = fd;
		c->app_write_hup = g_unix_fd_add (fd, G_IO_HUP | G_IO_ERR, app_write_hup_cb, c);
	}
	/* the writes held for it go now */
	sim_links_kick (sim);
}

/* a write for an app characteristic with WriteAcquired: through its
 * socket, asked for on the first write (bluetoothd's gatt-database does
 * this for requests and commands alike). -1 handled, an fd or
 * SIM_QUEUE_HOLD to wait; 1 when the caller must use WriteValue */
static gint
app_write (SimGattChrc *c, SimDevice *dev, GBytes *data)
{
	SimApp *app = c->svc->app;

	if (!c->app_write_acquired || c->app_write_failed)
		return 1;
	if (c->app_write_fd >= 0) {
		gsize len;
		gconstpointer d = g_bytes_get_data (data, &len);
		if (send (c->app_write_fd, d, len, MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return c->app_write_fd;
			g_debug ("app write socket: %s", g_strerror (errno));
			g_clear_handle_id (&c->app_write_hup, g_source_remove);
			close (c->app_write_fd);
			c->app_write_fd = -1;
		} else {
			c->write_count++;
			return -1;
		}
	}
	if (!c->app_write_pending) {
		SimWriteAcq *a = g_new0 (SimWriteAcq, 1);
		a->c = c;
		a->sim = app->adapter->sim;
		if (live_wacqs == NULL)
			live_wacqs = g_ptr_array_new ();
		g_ptr_array_add (live_wacqs, a);
		c->app_write_pending = TRUE;
		g_dbus_connection_call_with_unix_fd_list (app->adapter->sim->conn, app->owner,
				c->app_path, "org.bluez.GattCharacteristic1", "AcquireWrite",
				g_variant_new ("(@a{sv})", app_acquire_options (dev)),
				G_VARIANT_TYPE ("(hq)"), G_DBUS_CALL_FLAGS_NONE, -1, NULL, NULL,
				app_acquire_write_cb, a);
	}
	return SIM_QUEUE_HOLD;
}

static gint
op_write_deliver_real (gpointer data)
{
	SimOp *op = data;
	SimApp *app = op_app (op);
	const gchar *path = op->desc != NULL ? op->desc->app_path : op->chrc->app_path;
	const gchar *iface = op->desc != NULL ? "org.bluez.GattDescriptor1" : "org.bluez.GattCharacteristic1";
	gboolean command = g_strcmp0 (op->type, "command") == 0;

	if (op->dev->link == NULL) {
		op_free (op);
		return -1;
	}
	if (command && g_bytes_get_size (op->data) > op->dev->adapter->sim->server_max_write) {
		/* refused by the server, silently: commands have no response */
		op->done = TRUE;
		g_dbus_method_invocation_return_value (op->inv, NULL);
		op_free (op);
		return -1;
	}
	if (app == NULL) {
		if (op->desc != NULL) {
			GBytes *n = bytes_write_at (op->desc->value, op->offset, op->data);
			g_bytes_unref (op->desc->value);
			op->desc->value = n;
		} else {
			GBytes *n = bytes_write_at (op->chrc->value, op->offset, op->data);
			g_bytes_unref (op->chrc->value);
			op->chrc->value = n;
			op->chrc->write_count++;
		}
		if (command) {
			/* no response on the air for a write command */
			op->done = TRUE;
			if (op->inv != NULL)
				g_dbus_method_invocation_return_value (op->inv, NULL);
			op_free (op);
			return -1;
		}
		op_answer (op, NULL);
		return -1;
	}
	if (op->desc == NULL && op->offset == 0) {
		gint r = app_write (op->chrc, op->dev, op->data);
		if (r == -1) {
			if (command) {
				op->done = TRUE;
				g_dbus_method_invocation_return_value (op->inv, NULL);
				op_free (op);
			} else {
				op_answer (op, NULL);
			}
			return -1;
		}
		if (r != 1)
			return r;
	}
	if (op->desc == NULL)
		op->chrc->write_count++;
	if (command && op->inv != NULL) {
		op->done = TRUE;
		g_dbus_method_invocation_return_value (op->inv, NULL);
		g_clear_object (&op->inv);
	}
	g_dbus_connection_call (app->adapter->sim->conn, app->owner, path, iface, "WriteValue",
				g_variant_new ("(@ay@a{sv})", bytes_variant (op->data),
					       app_options (op->dev, op->offset, op->type)),
				NULL, G_DBUS_CALL_FLAGS_NONE,
				op->dev->adapter->sim->att_timeout_ms, NULL,
				command ? NULL : op_app_write_cb, command ? NULL : op);
	if (command)
		op_free (op);
	return -1;
}

static gint
op_write_deliver (gpointer data)
{
	SimOp *op = data;

	/* the attribute, its service or the device went away meanwhile */
	if (op->orphan || op->dev == NULL || op->dev->link == NULL) {
		op_free (op);
		return -1;
	}
	return op_write_deliver_real (data);
}

/* ---- notifications ---- */

static gboolean
rchrc_subscribed (SimRChrc *rc)
{
	return rc->notify_fd >= 0 || g_hash_table_size (rc->notify_clients) > 0;
}

typedef struct {
	SimRChrc *rc;
	GBytes *value;
	gboolean gone;
	gboolean fd_sent;
} SimNote;

static GPtrArray *live_notes;	/* SimNote waiting in queues */

static void
note_free (gpointer data)
{
	SimNote *n = data;

	g_ptr_array_remove_fast (live_notes, n);
	g_bytes_unref (n->value);
	g_free (n);
}

static gint
note_deliver (gpointer data)
{
	SimNote *n = data;
	SimRChrc *rc = n->rc;

	if (!n->gone) {
		if (rc->notify_fd >= 0 && !n->fd_sent) {
			gsize len;
			gconstpointer p = g_bytes_get_data (n->value, &len);
			if (send (rc->notify_fd, p != NULL ? p : "", len, MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
				/* a full reader holds the link, it does not lose data */
				if (errno == EAGAIN || errno == EWOULDBLOCK)
					return rc->notify_fd;
				g_debug ("notification dropped: %s", g_strerror (errno));
			}
			n->fd_sent = TRUE;
		}
		if (g_hash_table_size (rc->notify_clients) > 0)
			sim_iface_set_force (rc->iface, "Value", bytes_variant (n->value));
	}
	note_free (n);
	return -1;
}

/* @peer's server sends a notification of @chrc to every subscribed client */
void
sim_gatt_notify (SimPeer *peer, SimGattChrc *chrc, GBytes *value)
{
	Sim *sim = peer->sim;

	if (live_notes == NULL)
		live_notes = g_ptr_array_new ();
	for (guint i = 0; i < sim->links->len; i++) {
		SimLink *link = g_ptr_array_index (sim->links, i);
		SimDevice *views[2] = { link->central, link->remote };
		for (guint v = 0; v < 2; v++) {
			SimDevice *dev = views[v];
			if (dev == NULL || server_peer (dev) != peer)
				continue;
			for (guint k = 0; k < dev->rchrcs->len; k++) {
				SimRChrc *rc = g_ptr_array_index (dev->rchrcs, k);
				SimNote *n;
				gsize len = g_bytes_get_size (value);
				if (rc->chrc != chrc || !rchrc_subscribed (rc))
					continue;
				n = g_new0 (SimNote, 1);
				n->rc = rc;
				/* a notification carries at most MTU - 3 bytes, and
				 * an attribute value no more than 512 */
				n->value = g_bytes_new_from_bytes (value, 0,
						MIN (MIN (len, (gsize) link->mtu - 3), ATT_MAX_VALUE));
				g_ptr_array_add (live_notes, n);
				sim_queue_push (queue_to_client (dev), g_bytes_get_size (n->value) + 3,
						note_deliver, note_free, n);
			}
		}
	}
}

/* a queue towards a subscriber of @chrc that cannot take more now */
static SimQueue *
notify_congested (SimPeer *peer, SimGattChrc *chrc)
{
	Sim *sim = peer->sim;

	for (guint i = 0; i < sim->links->len; i++) {
		SimLink *link = g_ptr_array_index (sim->links, i);
		SimDevice *views[2] = { link->central, link->remote };
		for (guint v = 0; v < 2; v++) {
			SimDevice *dev = views[v];
			if (dev == NULL || server_peer (dev) != peer)
				continue;
			for (guint k = 0; k < dev->rchrcs->len; k++) {
				SimRChrc *rc = g_ptr_array_index (dev->rchrcs, k);
				if (rc->chrc == chrc && rchrc_subscribed (rc) &&
				    sim_queue_congested (queue_to_client (dev)))
					return queue_to_client (dev);
			}
		}
	}
	return NULL;
}

static gboolean app_notify_readable (gint fd, GIOCondition cond, gpointer data);

static gboolean
app_notify_resume (gpointer data)
{
	SimGattChrc *c = data;

	if (c->app_notify_fd >= 0 && c->app_notify_src == 0)
		c->app_notify_src = g_unix_fd_add (c->app_notify_fd, G_IO_IN | G_IO_HUP | G_IO_ERR,
						   app_notify_readable, c);
	return G_SOURCE_REMOVE;
}

static gboolean
app_notify_readable (gint fd, GIOCondition cond, gpointer data)
{
	SimGattChrc *c = data;
	guint8 buf[1024];
	gssize n;
	SimQueue *busy = notify_congested (c->svc->app->adapter->peer, c);

	if (busy != NULL && (cond & G_IO_IN)) {
		/* leave it in the app's socket: the app sees EAGAIN, as over air */
		c->app_notify_src = 0;
		sim_queue_wait (busy, app_notify_resume, c);
		return G_SOURCE_REMOVE;
	}
	if (cond & G_IO_IN) {
		n = recv (fd, buf, sizeof buf, MSG_DONTWAIT);
		if (n > 0) {
			g_autoptr(GBytes) b = g_bytes_new (buf, n);
			SimPeer *peer = c->svc->app->adapter->peer;
			sim_gatt_notify (peer, c, b);
			return G_SOURCE_CONTINUE;
		}
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return G_SOURCE_CONTINUE;
	}
	/* the app closed its end */
	c->app_notify_src = 0;
	close (c->app_notify_fd);
	c->app_notify_fd = -1;
	c->app_notifying = FALSE;
	return G_SOURCE_REMOVE;
}


static void
app_start_notify (SimGattChrc *c)
{
	SimApp *app = c->svc->app;

	g_dbus_connection_call (app->adapter->sim->conn, app->owner, c->app_path,
				"org.bluez.GattCharacteristic1", "StartNotify", NULL, NULL,
				G_DBUS_CALL_FLAGS_NONE, -1, NULL, NULL, NULL);
}

static void
app_acquire_notify_cb (GObject *source, GAsyncResult *res, gpointer data)
{
	SimNotifyAcq *a = data;
	SimGattChrc *c = a->c;
	g_autoptr(GError) error = NULL;
	g_autoptr(GUnixFDList) fds = NULL;
	g_autoptr(GVariant) ret = g_dbus_connection_call_with_unix_fd_list_finish (
			G_DBUS_CONNECTION (source), &fds, res, &error);
	gint32 handle = -1;
	gint fd = -1;

	g_ptr_array_remove_fast (live_nacqs, a);
	g_free (a);
	if (ret != NULL) {
		g_variant_get (ret, "(hq)", &handle, NULL);
		if (fds != NULL && handle >= 0 && handle < g_unix_fd_list_get_length (fds))
			fd = g_unix_fd_list_get (fds, handle, NULL);
	}
	if (c == NULL) {
		if (fd >= 0)
			close (fd);
		return;
	}
	c->app_notify_pending = FALSE;
	if (fd < 0) {
		/* like bluetoothd, fall back to notifications through Value */
		g_debug ("app AcquireNotify failed (%s): StartNotify instead",
			 error != NULL ? error->message : "no fd");
		if (c->app_notifying)
			app_start_notify (c);
		return;
	}
	if (!c->app_notifying) {
		close (fd);
		return;
	}
	g_unix_set_fd_nonblocking (fd, TRUE, NULL);
	c->app_notify_fd = fd;
	c->app_notify_src = g_unix_fd_add (fd, G_IO_IN | G_IO_HUP | G_IO_ERR,
					   app_notify_readable, c);
}

static GVariant *
app_acquire_options (SimDevice *dev)
{
	GVariantBuilder b;
	SimDevice *view = client_view_at_server (dev);

	g_variant_builder_init (&b, G_VARIANT_TYPE ("a{sv}"));
	if (view != NULL)
		g_variant_builder_add (&b, "{sv}", "device", g_variant_new_object_path (view->path));
	g_variant_builder_add (&b, "{sv}", "link", g_variant_new_string ("LE"));
	g_variant_builder_add (&b, "{sv}", "mtu", g_variant_new_uint16 (dev->link->mtu));
	return g_variant_builder_end (&b);
}

static void
chrc_app_subscribe (SimGattChrc *c, SimDevice *dev)
{
	SimApp *app = c->svc->app;
	SimNotifyAcq *a;

	if (app == NULL || c->app_notifying)
		return;
	c->app_notifying = TRUE;
	if (c->app_notify_pending || c->app_notify_fd >= 0)
		return;
	if (!c->app_notify_acquired) {
		app_start_notify (c);
		return;
	}
	a = g_new0 (SimNotifyAcq, 1);
	a->c = c;
	if (live_nacqs == NULL)
		live_nacqs = g_ptr_array_new ();
	g_ptr_array_add (live_nacqs, a);
	c->app_notify_pending = TRUE;
	g_dbus_connection_call_with_unix_fd_list (app->adapter->sim->conn, app->owner,
			c->app_path, "org.bluez.GattCharacteristic1", "AcquireNotify",
			g_variant_new ("(@a{sv})", app_acquire_options (dev)),
			G_VARIANT_TYPE ("(hq)"), G_DBUS_CALL_FLAGS_NONE, -1, NULL, NULL,
			app_acquire_notify_cb, a);
}

static void
chrc_app_unsubscribe (SimGattChrc *c)
{
	SimApp *app = c->svc->app;

	if (app == NULL || !c->app_notifying)
		return;
	c->app_notifying = FALSE;
	if (c->app_notify_fd >= 0) {
		/* closing the socket is how bluetoothd tells the app */
		g_clear_handle_id (&c->app_notify_src, g_source_remove);
		close (c->app_notify_fd);
		c->app_notify_fd = -1;
		return;
	}
	if (c->app_notify_pending)
		return;	/* the reply finds app_notifying off and closes it */
	g_dbus_connection_call (app->adapter->sim->conn, app->owner, c->app_path,
				"org.bluez.GattCharacteristic1", "StopNotify", NULL, NULL,
				G_DBUS_CALL_FLAGS_NONE, -1, NULL, NULL, NULL);
}

/* counted in the server's subscribers while a client wants notifications
 * and the link is up; StartNotify sessions outlive a disconnection, like
 * bluetoothd re-registering its notify clients on reconnection */
static void
rchrc_update_subscription (SimRChrc *rc, gboolean was)
{
	gboolean active = rchrc_subscribed (rc) && rc->dev->link != NULL && !rc->dev->link->dead;

	(void) was;
	if (sim_flags_has ((const gchar *const *) rc->chrc->flags, "notify") ||
	    sim_flags_has ((const gchar *const *) rc->chrc->flags, "indicate"))
		sim_iface_set (rc->iface, "Notifying",
			       g_variant_new_boolean (g_hash_table_size (rc->notify_clients) > 0));
	if (active == rc->counted)
		return;
	rc->counted = active;
	if (active) {
		if (rc->chrc->subscribers++ == 0)
			chrc_app_subscribe (rc->chrc, rc->dev);
	} else if (rc->chrc->subscribers > 0 && --rc->chrc->subscribers == 0) {
		chrc_app_unsubscribe (rc->chrc);
	}
}

static void
notify_client_vanished (GDBusConnection *conn, const gchar *name, gpointer data)
{
	SimRChrc *rc = data;
	gboolean was = rchrc_subscribed (rc);

	g_hash_table_remove (rc->notify_clients, name);
	rchrc_update_subscription (rc, was);
}

static void
rchrc_close_notify (SimRChrc *rc)
{
	gboolean was = rchrc_subscribed (rc);

	if (rc->notify_fd < 0)
		return;
	g_clear_handle_id (&rc->notify_hup, g_source_remove);
	close (rc->notify_fd);
	rc->notify_fd = -1;
	if (rc->dev->link != NULL && !rc->dev->link->dead)
		sim_queue_kick (queue_to_client (rc->dev));
	sim_iface_set (rc->iface, "NotifyAcquired", g_variant_new_boolean (FALSE));
	rchrc_update_subscription (rc, was);
}

static gboolean
notify_fd_hup (gint fd, GIOCondition cond, gpointer data)
{
	SimRChrc *rc = data;

	rc->notify_hup = 0;
	rchrc_close_notify (rc);
	return G_SOURCE_REMOVE;
}

/* ---- acquired write ---- */

static void rchrc_close_write (SimRChrc *rc);
static gboolean write_fd_readable (gint fd, GIOCondition cond, gpointer data);

typedef struct {
	SimRChrc *rc;
	GBytes *data;
} SimPkt;

static GPtrArray *live_pkts;

static void
pkt_free (gpointer data)
{
	SimPkt *p = data;

	g_ptr_array_remove_fast (live_pkts, p);
	g_bytes_unref (p->data);
	g_free (p);
}

static gint
pkt_deliver (gpointer data)
{
	SimPkt *p = data;
	SimRChrc *rc = p->rc;

	if (rc != NULL && g_bytes_get_size (p->data) > rc->dev->adapter->sim->server_max_write) {
		/* the server refuses a longer value; a command gets no answer */
		g_debug ("write command of %zu bytes dropped", g_bytes_get_size (p->data));
		rc = NULL;
	}
	if (rc != NULL) {
		SimGattChrc *c = rc->chrc;
		SimApp *app = c->svc->app;
		if (app == NULL) {
			g_bytes_unref (c->value);
			c->value = g_bytes_ref (p->data);
		} else {
			gint r = rc->dev->link != NULL ? app_write (c, rc->dev, p->data) : 1;
			if (r == -1) {
				pkt_free (p);
				return -1;
			}
			if (r != 1)
				return r;
		}
		if (app != NULL && rc->dev->link != NULL) {
			g_dbus_connection_call (app->adapter->sim->conn, app->owner, c->app_path,
						"org.bluez.GattCharacteristic1", "WriteValue",
						g_variant_new ("(@ay@a{sv})", bytes_variant (p->data),
							       app_options (rc->dev, 0, "command")),
						NULL, G_DBUS_CALL_FLAGS_NONE, -1, NULL, NULL, NULL);
		}
		c->write_count++;
	}
	pkt_free (p);
	return -1;
}

static gboolean
write_fd_resume (gpointer data)
{
	SimRChrc *rc = data;

	if (rc->write_fd >= 0 && rc->write_src == 0)
		rc->write_src = g_unix_fd_add (rc->write_fd, G_IO_IN | G_IO_HUP | G_IO_ERR,
					       write_fd_readable, rc);
	return G_SOURCE_REMOVE;
}

static gboolean
write_fd_readable (gint fd, GIOCondition cond, gpointer data)
{
	SimRChrc *rc = data;
	guint8 buf[1024];
	gssize n;
	SimQueue *q;

	if (rc->dev->link == NULL)
		goto closed;
	q = queue_to_server (rc->dev);
	if (cond & G_IO_IN) {
		/* backpressure: leave it in the socket while the link is busy */
		if (sim_queue_congested (q)) {
			rc->write_src = 0;
			sim_queue_wait (q, write_fd_resume, rc);
			return G_SOURCE_REMOVE;
		}
		n = recv (fd, buf, sizeof buf, MSG_DONTWAIT);
		if (n > 0) {
			SimPkt *p = g_new0 (SimPkt, 1);
			p->rc = rc;
			p->data = g_bytes_new (buf, MIN ((gsize) n, (gsize) rc->write_mtu - 3));
			if (live_pkts == NULL)
				live_pkts = g_ptr_array_new ();
			g_ptr_array_add (live_pkts, p);
			sim_queue_push (q, n + 3, pkt_deliver, pkt_free, p);
			return G_SOURCE_CONTINUE;
		}
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return G_SOURCE_CONTINUE;
	}
closed:
	rc->write_src = 0;
	rchrc_close_write (rc);
	return G_SOURCE_REMOVE;
}

static void
rchrc_close_write (SimRChrc *rc)
{
	if (rc->write_fd < 0)
		return;
	if (rc->dev->link != NULL)
		sim_queue_unwait (queue_to_server (rc->dev), rc);
	g_clear_handle_id (&rc->write_src, g_source_remove);
	close (rc->write_fd);
	rc->write_fd = -1;
	if (rc->dev->link != NULL && !rc->dev->link->dead)
		sim_queue_kick (queue_to_server (rc->dev));
	sim_iface_set (rc->iface, "WriteAcquired", g_variant_new_boolean (FALSE));
}

/* ---- faults (org.bgsync.Sim1.SetAcquireMTU, CloseAcquired) ---- */

/* device address -> reported MTU + 1: what a hostile or buggy stack says,
 * the socket itself is unchanged (the device still cuts at the real MTU) */
static GHashTable *mtu_faults;

void
sim_gatt_set_acquire_mtu (const gchar *address, gint mtu)
{
	g_autofree gchar *key = g_ascii_strup (address, -1);

	if (mtu_faults == NULL)
		mtu_faults = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
	if (mtu < 0)
		g_hash_table_remove (mtu_faults, key);
	else
		g_hash_table_insert (mtu_faults, g_steal_pointer (&key),
				     GUINT_TO_POINTER ((guint) MIN (mtu, G_MAXUINT16) + 1));
}

/* device address -> org.bluez.Error.<name> that Acquire* answer: what
 * bluetoothd says after the link is lost but before Connected=false */
static GHashTable *acquire_errors;

void
sim_gatt_set_acquire_error (const gchar *address, const gchar *error)
{
	g_autofree gchar *key = g_ascii_strup (address, -1);

	if (acquire_errors == NULL)
		acquire_errors = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
	if (error == NULL || *error == '\0')
		g_hash_table_remove (acquire_errors, key);
	else
		g_hash_table_insert (acquire_errors, g_steal_pointer (&key), g_strdup (error));
}

static gboolean
acquire_fault (SimRChrc *rc, GDBusMethodInvocation *inv)
{
	const gchar *name = acquire_errors != NULL ? g_hash_table_lookup (acquire_errors, rc->dev->address)
						   : NULL;

	if (name == NULL)
		return FALSE;
	if (g_strcmp0 (name, "NotSupported") == 0)
		sim_return_error (inv, name, "Operation is not supported");
	else if (g_strcmp0 (name, "NotPermitted") == 0)
		sim_return_error (inv, name, "Operation is not permitted");
	else
		sim_return_error (inv, name, "Not connected");
	return TRUE;
}

static guint16
fault_mtu (SimRChrc *rc, guint16 mtu)
{
	gpointer v = mtu_faults != NULL ? g_hash_table_lookup (mtu_faults, rc->dev->address) : NULL;

	return v != NULL ? (guint16) (GPOINTER_TO_UINT (v) - 1) : mtu;
}

/* closes the simulator's ends of the sockets acquired on @address's
 * characteristics, as a device or bluetoothd dropping them mid-transfer;
 * returns how many it closed */
guint
sim_gatt_close_acquired (Sim *sim, const gchar *address, gboolean notify, gboolean write)
{
	g_autofree gchar *key = g_ascii_strup (address, -1);
	guint n = 0;

	for (guint i = 0; i < sim->adapters->len; i++) {
		SimAdapter *a = g_ptr_array_index (sim->adapters, i);
		SimDevice *dev = g_hash_table_lookup (a->devices, key);

		if (dev == NULL || dev->rchrcs == NULL)
			continue;
		for (guint k = 0; k < dev->rchrcs->len; k++) {
			SimRChrc *rc = g_ptr_array_index (dev->rchrcs, k);
			if (notify && rc->notify_fd >= 0) {
				rchrc_close_notify (rc);
				n++;
			}
			if (write && rc->write_fd >= 0) {
				rchrc_close_write (rc);
				n++;
			}
		}
	}
	return n;
}

static gboolean
make_pair (gint fds[2], GDBusMethodInvocation *inv)
{
	if (socketpair (AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) < 0) {
		sim_return_error (inv, "Failed", "%s", g_strerror (errno));
		return FALSE;
	}
	return TRUE;
}

static void
return_fd (GDBusMethodInvocation *inv, gint fd, guint16 mtu)
{
	g_autoptr(GUnixFDList) list = g_unix_fd_list_new_from_array (&fd, 1);

	g_dbus_method_invocation_return_value_with_unix_fd_list (inv,
			g_variant_new ("(hq)", 0, mtu), list);
}

static void
acquire_write (SimRChrc *rc, GDBusMethodInvocation *inv)
{
	gint fds[2];

	if (!make_pair (fds, inv))
		return;
	rc->write_fd = fds[0];
	rc->write_src = g_unix_fd_add (rc->write_fd, G_IO_IN | G_IO_HUP | G_IO_ERR,
				       write_fd_readable, rc);
	sim_iface_set (rc->iface, "WriteAcquired", g_variant_new_boolean (TRUE));
	return_fd (inv, fds[1], fault_mtu (rc, rc->write_mtu));
}

/* ---- GattCharacteristic1 / GattDescriptor1 ---- */

/* an "mtu" option asks for at most that much; never below the ATT minimum */
static guint16
negotiated_mtu (guint16 link_mtu, guint16 asked)
{
	if (asked == 0)
		return link_mtu;
	return MAX (23, MIN (link_mtu, asked));
}

static gboolean
check_connected (SimDevice *dev, GDBusMethodInvocation *inv)
{
	if (dev->link == NULL) {
		sim_return_error (inv, "Failed", "Not connected");
		return FALSE;
	}
	return TRUE;
}

static void
chrc_method (SimIface *iface, const gchar *sender, const gchar *method,
	     GVariant *params, GDBusMethodInvocation *inv)
{
	SimRChrc *rc = iface->user_data;
	SimGattChrc *c = rc->chrc;
	const gchar *const *flags = (const gchar *const *) c->flags;

	if (g_strcmp0 (method, "ReadValue") == 0) {
		g_autoptr(GVariant) opts = g_variant_get_child_value (params, 0);
		SimOp *op;
		if (!check_connected (rc->dev, inv))
			return;
		if (!sim_flags_has (flags, "read") && !sim_flags_has (flags, "encrypt-read") &&
		    !sim_flags_has (flags, "encrypt-authenticated-read")) {
			sim_return_error (inv, "NotPermitted", "Read not permitted");
			return;
		}
		op = op_new (rc->dev, rc, inv);
		op->chrc = c;
		op->offset = option_u16 (opts, "offset", 0);
		op_start_timer (op);
		sim_queue_push (queue_to_server (rc->dev), 3, op_read_deliver, op_destroy, op);
	} else if (g_strcmp0 (method, "WriteValue") == 0) {
		g_autoptr(GVariant) val = g_variant_get_child_value (params, 0);
		g_autoptr(GVariant) opts = g_variant_get_child_value (params, 1);
		const gchar *type = NULL;
		gboolean can_req = sim_flags_has (flags, "write") ||
				   sim_flags_has (flags, "encrypt-write") ||
				   sim_flags_has (flags, "encrypt-authenticated-write");
		gboolean can_cmd = sim_flags_has (flags, "write-without-response");
		SimOp *op;
		gsize len;

		if (!check_connected (rc->dev, inv))
			return;
		g_variant_lookup (opts, "type", "&s", &type);
		if (type == NULL)
			type = can_req ? "request" : "command";
		if (g_strcmp0 (type, "reliable") == 0)
			type = "request";
		if ((g_strcmp0 (type, "request") == 0 && !can_req) ||
		    (g_strcmp0 (type, "command") == 0 && !can_cmd)) {
			sim_return_error (inv, "NotSupported", "Operation is not supported");
			return;
		}
		if (g_strcmp0 (type, "request") != 0 && g_strcmp0 (type, "command") != 0) {
			sim_return_error (inv, "InvalidArguments", "Invalid arguments in method call");
			return;
		}
		g_variant_get_fixed_array (val, &len, 1);
		if (g_strcmp0 (type, "command") == 0 && len > (gsize) rc->dev->link->mtu - 3) {
			sim_return_error (inv, "Failed", "Failed to initiate write");
			return;
		}
		/* attribute values are at most 512 bytes; a command is bounded by
		 * the MTU alone, like bluetoothd's write without response */
		if (g_strcmp0 (type, "request") == 0 && (gsize) option_u16 (opts, "offset", 0) + len > 512) {
			sim_return_error (inv, "InvalidValueLength", "Invalid value length");
			return;
		}
		g_debug ("%s: WriteValue %s %zu bytes from %s", rc->obj->path, type, len, sender);
		op = op_new (rc->dev, rc, inv);
		op->chrc = c;
		op->data = variant_bytes (val);
		op->type = g_strdup (type);
		op->offset = option_u16 (opts, "offset", 0);
		if (g_strcmp0 (type, "request") == 0)
			op_start_timer (op);
		sim_queue_push (queue_to_server (rc->dev), len + 3, op_write_deliver, op_destroy, op);
	} else if (g_strcmp0 (method, "StartNotify") == 0) {
		gboolean was = rchrc_subscribed (rc);
		guint watch;
		if (rc->dev->link != NULL && rc->dev->link->dead) {
			sim_return_error (inv, "NotConnected", "Not Connected");
			return;
		}
		if (rc->notify_fd >= 0) {
			sim_return_error (inv, "NotPermitted", "Notify acquired");
			return;
		}
		if (!sim_flags_has (flags, "notify") && !sim_flags_has (flags, "indicate")) {
			sim_return_error (inv, "NotSupported", "Operation is not supported");
			return;
		}
		if (g_hash_table_contains (rc->notify_clients, sender)) {
			g_dbus_method_invocation_return_value (inv, NULL);
			return;
		}
		watch = g_bus_watch_name_on_connection (rc->dev->adapter->sim->conn, sender,
							G_BUS_NAME_WATCHER_FLAGS_NONE, NULL,
							notify_client_vanished, rc, NULL);
		g_hash_table_insert (rc->notify_clients, g_strdup (sender), GUINT_TO_POINTER (watch));
		rchrc_update_subscription (rc, was);
		g_dbus_method_invocation_return_value (inv, NULL);
	} else if (g_strcmp0 (method, "StopNotify") == 0) {
		gboolean was = rchrc_subscribed (rc);
		if (rc->notify_fd >= 0) {
			rchrc_close_notify (rc);
			g_dbus_method_invocation_return_value (inv, NULL);
			return;
		}
		if (!g_hash_table_remove (rc->notify_clients, sender)) {
			sim_return_error (inv, "Failed", "No notify session started");
			return;
		}
		rchrc_update_subscription (rc, was);
		g_dbus_method_invocation_return_value (inv, NULL);
	} else if (g_strcmp0 (method, "AcquireNotify") == 0) {
		gint fds[2];
		guint16 acquire_mtu = 0;
		gboolean was = rchrc_subscribed (rc);
		if (!check_connected (rc->dev, inv) || acquire_fault (rc, inv))
			return;
		if (rc->notify_fd >= 0) {
			sim_return_error (inv, "NotPermitted", "Notify acquired");
			return;
		}
		if (g_hash_table_size (rc->notify_clients) > 0) {
			sim_return_error (inv, "InProgress", "In Progress");
			return;
		}
		if (!sim_flags_has (flags, "notify")) {
			sim_return_error (inv, "NotSupported", "Operation is not supported");
			return;
		}
		if (!make_pair (fds, inv))
			return;
		{
			g_autoptr(GVariant) opts = g_variant_get_child_value (params, 0);
			acquire_mtu = option_u16 (opts, "mtu", 0);
		}
		rc->notify_fd = fds[0];
		rc->notify_hup = g_unix_fd_add (fds[0], G_IO_HUP | G_IO_ERR, notify_fd_hup, rc);
		sim_iface_set (rc->iface, "NotifyAcquired", g_variant_new_boolean (TRUE));
		rchrc_update_subscription (rc, was);
		return_fd (inv, fds[1], fault_mtu (rc, negotiated_mtu (rc->dev->link->mtu, acquire_mtu)));
	} else if (g_strcmp0 (method, "AcquireWrite") == 0) {
		if (!check_connected (rc->dev, inv) || acquire_fault (rc, inv))
			return;
		if (rc->write_fd >= 0) {
			sim_return_error (inv, "NotPermitted", "Write acquired");
			return;
		}
		if (!sim_flags_has (flags, "write-without-response")) {
			sim_return_error (inv, "NotSupported", "Operation is not supported");
			return;
		}
		{
			g_autoptr(GVariant) opts = g_variant_get_child_value (params, 0);
			rc->write_mtu = negotiated_mtu (rc->dev->link->mtu, option_u16 (opts, "mtu", 0));
		}
		acquire_write (rc, inv);
	} else if (g_strcmp0 (method, "Confirm") == 0) {
		g_dbus_method_invocation_return_value (inv, NULL);
	} else {
		sim_return_error (inv, "NotSupported", "Operation is not supported");
	}
}

typedef struct {
	SimDevice *dev;
	SimGattDesc *desc;
} SimRDesc;

static void
desc_method (SimIface *iface, const gchar *sender, const gchar *method,
	     GVariant *params, GDBusMethodInvocation *inv)
{
	SimRDesc *rd = iface->user_data;
	SimOp *op;

	if (!check_connected (rd->dev, inv))
		return;
	op = op_new (rd->dev, NULL, inv);
	op->desc = rd->desc;
	op_start_timer (op);
	if (g_strcmp0 (method, "ReadValue") == 0) {
		g_autoptr(GVariant) opts = g_variant_get_child_value (params, 0);
		op->offset = option_u16 (opts, "offset", 0);
		sim_queue_push (queue_to_server (rd->dev), 3, op_read_deliver, op_destroy, op);
	} else {
		g_autoptr(GVariant) val = g_variant_get_child_value (params, 0);
		g_autoptr(GVariant) opts = g_variant_get_child_value (params, 1);
		op->offset = option_u16 (opts, "offset", 0);
		op->data = variant_bytes (val);
		op->type = g_strdup ("request");
		sim_queue_push (queue_to_server (rd->dev), g_bytes_get_size (op->data) + 3,
				op_write_deliver, op_destroy, op);
	}
}

/* ---- building and tearing down the client side objects ---- */

static void
rchrc_free (SimRChrc *rc)
{
	GHashTableIter it;
	gpointer v;
	gboolean was = rchrc_subscribed (rc);

	rchrc_close_write (rc);
	if (rc->notify_fd >= 0) {
		g_clear_handle_id (&rc->notify_hup, g_source_remove);
		close (rc->notify_fd);
		rc->notify_fd = -1;
	}
	g_hash_table_iter_init (&it, rc->notify_clients);
	while (g_hash_table_iter_next (&it, NULL, &v))
		g_bus_unwatch_name (GPOINTER_TO_UINT (v));
	g_hash_table_remove_all (rc->notify_clients);
	(void) was;
	if (rc->counted && rc->chrc->subscribers > 0 && --rc->chrc->subscribers == 0)
		chrc_app_unsubscribe (rc->chrc);
	rc->counted = FALSE;
	for (guint i = 0; live_notes != NULL && i < live_notes->len; i++) {
		SimNote *n = g_ptr_array_index (live_notes, i);
		if (n->rc == rc)
			n->gone = TRUE;
	}
	for (guint i = 0; live_pkts != NULL && i < live_pkts->len; i++) {
		SimPkt *p = g_ptr_array_index (live_pkts, i);
		if (p->rc == rc)
			p->rc = NULL;
	}
	if (rc->dev->link != NULL && !rc->dev->link->dead) {
		sim_queue_kick (rc->dev->link->up);
		sim_queue_kick (rc->dev->link->down);
	}
	ops_orphan (NULL, rc, NULL);
	g_hash_table_unref (rc->notify_clients);
	g_free (rc);
}

void
sim_gatt_orphan_device (SimDevice *dev)
{
	ops_orphan (dev, NULL, NULL);
}

void
sim_gatt_clear (SimDevice *dev, gboolean keep_objects)
{
	g_autoptr(GPtrArray) objs = NULL;

	for (guint i = 0; i < dev->rchrcs->len; i++)
		rchrc_free (g_ptr_array_index (dev->rchrcs, i));
	g_ptr_array_set_size (dev->rchrcs, 0);
	/* children first, like bluetoothd */
	objs = g_ptr_array_copy (dev->gatt_objs, NULL, NULL);
	g_ptr_array_set_size (dev->gatt_objs, 0);
	for (guint i = objs->len; i > 0; i--) {
		SimObject *o = g_ptr_array_index (objs, i - 1);
		for (guint k = 0; k < o->ifaces->len; k++) {
			SimIface *iface = g_ptr_array_index (o->ifaces, k);
			if (g_strcmp0 (iface->info->name, "org.bluez.GattDescriptor1") == 0)
				g_free (iface->user_data);
		}
		sim_object_free (o);
	}
}

void
sim_gatt_link_down (SimDevice *dev)
{
	/* acquired sockets end with the link; StartNotify sessions stay */
	for (guint i = 0; i < dev->rchrcs->len; i++) {
		SimRChrc *rc = g_ptr_array_index (dev->rchrcs, i);

		rchrc_close_write (rc);
		rchrc_close_notify (rc);
		rchrc_update_subscription (rc, FALSE);
	}
}

/* services about to be freed: every device object built from them goes
 * (and is built again from what is left if its link is up) */
void
sim_gatt_forget (Sim *sim, GPtrArray *services)
{
	for (guint i = 0; services != NULL && i < sim->adapters->len; i++) {
		SimAdapter *a = g_ptr_array_index (sim->adapters, i);
		GHashTableIter it;
		gpointer v;

		g_hash_table_iter_init (&it, a->devices);
		while (g_hash_table_iter_next (&it, NULL, &v)) {
			SimDevice *dev = v;
			gboolean uses = FALSE;
			for (guint k = 0; k < dev->rchrcs->len && !uses; k++) {
				SimRChrc *rc = g_ptr_array_index (dev->rchrcs, k);
				uses = g_ptr_array_find (services, rc->chrc->svc, NULL);
			}
			if (!uses)
				continue;
			sim_gatt_clear (dev, FALSE);
			if (dev->link != NULL && !dev->link->dead)
				sim_gatt_resolve (dev);
		}
	}
}

void
sim_gatt_resolve (SimDevice *dev)
{
	SimPeer *peer = server_peer (dev);
	g_autoptr(GPtrArray) svcs = g_ptr_array_new ();
	g_autoptr(GPtrArray) uuids = g_ptr_array_new ();

	if (peer == NULL)
		return;
	/* bluetoothd caches attributes (Cache=always): same database, same
	 * objects */
	if (dev->gatt_objs->len > 0 && dev->gatt_peer == peer &&
	    dev->gatt_generation == peer->db_generation) {
		for (guint i = 0; i < dev->rchrcs->len; i++) {
			SimRChrc *rc = g_ptr_array_index (dev->rchrcs, i);
			sim_iface_set (rc->iface, "MTU", g_variant_new_uint16 (dev->link->mtu));
			rchrc_update_subscription (rc, FALSE);
		}
		sim_iface_set (dev->iface, "ServicesResolved", g_variant_new_boolean (TRUE));
		sim_device_read_pnp_id (dev, peer);
		return;
	}
	sim_gatt_clear (dev, FALSE);
	dev->gatt_peer = peer;
	dev->gatt_generation = peer->db_generation;
	sim_peer_collect_services (peer, svcs);
	for (guint i = 0; i < svcs->len; i++) {
		SimGattSvc *svc = g_ptr_array_index (svcs, i);
		g_autofree gchar *spath = g_strdup_printf ("%s/service%04x", dev->path, svc->handle);
		SimObject *so = sim_object_new (dev->adapter->sim->bus, spath, TRUE);
		SimIface *si = sim_object_add_iface (so, "org.bluez.GattService1", NULL, NULL, NULL);

		sim_iface_set (si, "UUID", g_variant_new_string (svc->uuid));
		sim_iface_set (si, "Device", g_variant_new_object_path (dev->path));
		sim_iface_set (si, "Primary", g_variant_new_boolean (svc->primary));
		sim_iface_set (si, "Includes", g_variant_new_objv (NULL, 0));
		sim_iface_set (si, "Handle", g_variant_new_uint16 (svc->handle));
		sim_object_export (so);
		g_ptr_array_add (dev->gatt_objs, so);
		if (svc->primary)
			g_ptr_array_add (uuids, svc->uuid);
		for (guint j = 0; j < svc->chrcs->len; j++) {
			SimGattChrc *c = g_ptr_array_index (svc->chrcs, j);
			g_autofree gchar *cpath = g_strdup_printf ("%s/char%04x", spath, c->handle);
			SimRChrc *rc = g_new0 (SimRChrc, 1);
			const gchar *const *flags = (const gchar *const *) c->flags;

			rc->dev = dev;
			rc->chrc = c;
			rc->notify_fd = -1;
			rc->write_fd = -1;
			rc->notify_clients = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
			rc->obj = sim_object_new (dev->adapter->sim->bus, cpath, TRUE);
			rc->iface = sim_object_add_iface (rc->obj, "org.bluez.GattCharacteristic1",
							  chrc_method, NULL, rc);
			sim_iface_set (rc->iface, "UUID", g_variant_new_string (c->uuid));
			sim_iface_set (rc->iface, "Service", g_variant_new_object_path (spath));
			sim_iface_set (rc->iface, "Value", g_variant_new_fixed_array (G_VARIANT_TYPE_BYTE, "", 0, 1));
			if (sim_flags_has (flags, "notify") || sim_flags_has (flags, "indicate"))
				sim_iface_set (rc->iface, "Notifying", g_variant_new_boolean (FALSE));
			sim_iface_set (rc->iface, "Flags", g_variant_new_strv (flags, -1));
			if (sim_flags_has (flags, "write-without-response"))
				sim_iface_set (rc->iface, "WriteAcquired", g_variant_new_boolean (FALSE));
			if (sim_flags_has (flags, "notify"))
				sim_iface_set (rc->iface, "NotifyAcquired", g_variant_new_boolean (FALSE));
			sim_iface_set (rc->iface, "Handle", g_variant_new_uint16 (c->handle + 1));
			sim_iface_set (rc->iface, "MTU", g_variant_new_uint16 (dev->link->mtu));
			sim_object_export (rc->obj);
			g_ptr_array_add (dev->gatt_objs, rc->obj);
			g_ptr_array_add (dev->rchrcs, rc);
			for (guint k = 0; k < c->descs->len; k++) {
				SimGattDesc *d = g_ptr_array_index (c->descs, k);
				g_autofree gchar *dpath = g_strdup_printf ("%s/desc%04x", cpath, d->handle);
				SimObject *dobj = sim_object_new (dev->adapter->sim->bus, dpath, TRUE);
				SimRDesc *rd = g_new0 (SimRDesc, 1);
				SimIface *di;

				rd->dev = dev;
				rd->desc = d;
				di = sim_object_add_iface (dobj, "org.bluez.GattDescriptor1", desc_method, NULL, rd);
				sim_iface_set (di, "UUID", g_variant_new_string (d->uuid));
				sim_iface_set (di, "Characteristic", g_variant_new_object_path (cpath));
				sim_iface_set (di, "Value", g_variant_new_fixed_array (G_VARIANT_TYPE_BYTE, "", 0, 1));
				sim_iface_set (di, "Flags", g_variant_new_strv ((const gchar *const *) d->flags, -1));
				sim_iface_set (di, "Handle", g_variant_new_uint16 (d->handle));
				sim_object_export (dobj);
				g_ptr_array_add (dev->gatt_objs, dobj);
			}
		}
	}
	g_ptr_array_add (uuids, NULL);
	if (uuids->len > 1) {
		/* resolved primary services join the advertised UUIDs */
		sim_device_add_uuids (dev, (const gchar *const *) uuids->pdata);
	}
	sim_iface_set (dev->iface, "ServicesResolved", g_variant_new_boolean (TRUE));
	sim_device_read_pnp_id (dev, peer);
}

