/* bgs-gatt-transport.c: a GATT characteristic as a packet channel */
#include "bgs-gatt-transport.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <gio/gunixfdlist.h>

#include "bgs-error.h"

#define DEVICE_IFACE "org.bluez.Device1"
#define SERVICE_IFACE "org.bluez.GattService1"
#define CHAR_IFACE "org.bluez.GattCharacteristic1"
#define DEFAULT_CONNECT_TIMEOUT (30 * G_USEC_PER_SEC)
#define CONNECT_ATTEMPTS 3
/* bluetoothd can say ServicesResolved from its cached database and then
 * re-resolve (Service Changed, database hash): the characteristic may
 * vanish and come back. how long to wait for it before giving up */
#define CHRC_GRACE_MS 3000
#define ATT_HEADER 3
#define MAX_ATT_MTU 517
/* an attribute value is at most 512 bytes whatever the MTU (Core 5.3 Vol 3 F
 * 3.2.9), and bluetoothd 5.66 drops written values over 510: its length
 * check counts the 2-byte handle */
#define MAX_ATT_VALUE 510
/* bounded: a stalled link must not grow the queue without limit */
#define MAX_QUEUED_PACKETS 4096

struct _BgsGattTransport {
	BgsTransport parent_instance;
	GDBusObjectManager *manager;
	char *device_path;
	char *service_uuid;
	char *char_uuid;
	char *notify_uuid;
	gint64 connect_timeout;
	gboolean no_acquire;
	GDBusProxy *device;
	GDBusProxy *chrc;        /* written */
	GDBusProxy *nchrc;       /* notifies (may be chrc) */
	gulong device_changed_id;
	gulong chrc_changed_id;
	int write_fd;
	int notify_fd;
	GSource *notify_source;
	GSource *write_source;
	guint mtu;
	gboolean notifying;          /* StartNotify fallback active */
	GQueue *out;                 /* GBytes waiting for the link */
	gboolean write_in_flight;    /* WriteValue fallback: one at a time, in order */
	gsize in_flight_len;
	gboolean connected;
	GCancellable *cancellable;   /* everything in flight on this link */
};

G_DEFINE_TYPE (BgsGattTransport, bgs_gatt_transport, BGS_TYPE_TRANSPORT)

static void link_down (BgsGattTransport *self, const GError *error);
static void flush_out (BgsGattTransport *self);

/* ---- link teardown -------------------------------------------------------- */

static void
release_link (BgsGattTransport *self)
{
	if (self->cancellable != NULL) {
		g_cancellable_cancel (self->cancellable);
		g_clear_object (&self->cancellable);
	}
	if (self->notify_source != NULL) {
		g_source_destroy (self->notify_source);
		g_clear_pointer (&self->notify_source, g_source_unref);
	}
	if (self->write_source != NULL) {
		g_source_destroy (self->write_source);
		g_clear_pointer (&self->write_source, g_source_unref);
	}
	if (self->write_fd >= 0)
		close (self->write_fd);
	if (self->notify_fd >= 0)
		close (self->notify_fd);
	self->write_fd = self->notify_fd = -1;
	if (self->device_changed_id != 0)
		g_signal_handler_disconnect (self->device, self->device_changed_id);
	if (self->chrc_changed_id != 0)
		g_signal_handler_disconnect (self->nchrc, self->chrc_changed_id);
	self->device_changed_id = self->chrc_changed_id = 0;
	if (self->notifying && self->nchrc != NULL)
		g_dbus_proxy_call (self->nchrc, "StopNotify", NULL, G_DBUS_CALL_FLAGS_NONE, -1,
				   NULL, NULL, NULL);
	self->notifying = FALSE;
	self->write_in_flight = FALSE;
	g_clear_object (&self->device);
	g_clear_object (&self->chrc);
	g_clear_object (&self->nchrc);
	self->connected = FALSE;
}

static void
link_down (BgsGattTransport *self, const GError *error)
{
	g_autoptr(GError) local = NULL;

	if (!self->connected)
		return;
	if (error == NULL)
		error = local = g_error_new_literal (BGS_ERROR, BGS_ERROR_IO, "the link to the device dropped");
	g_debug ("%s: link down: %s", self->device_path, error->message);
	release_link (self);
	/* packets not yet on the air are stale after a reconnect: the profile
	 * resumes from what the device reports */
	g_queue_clear_full (self->out, (GDestroyNotify) g_bytes_unref);
	bgs_transport_emit_disconnected (BGS_TRANSPORT (self), error);
}

/* ---- receive ----------------------------------------------------------------- */

static gboolean
notify_readable_cb (GSocket *socket, GIOCondition cond, gpointer user_data)
{
	BgsGattTransport *self = user_data;
	guint8 buf[MAX_ATT_MTU];
	gssize n;

	n = recv (self->notify_fd, buf, sizeof buf, MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return G_SOURCE_CONTINUE;
	/* an empty notification is a 0-byte packet, not the end: only a hang
	 * up is (a device must not be able to drop our link with one) */
	if (n == 0 && !(cond & (G_IO_HUP | G_IO_ERR)))
		return G_SOURCE_CONTINUE;
	if (n <= 0 || (cond & (G_IO_HUP | G_IO_ERR))) {
		g_clear_pointer (&self->notify_source, g_source_unref);
		link_down (self, NULL);
		return G_SOURCE_REMOVE;
	}
	{
		g_autoptr(GBytes) packet = g_bytes_new (buf, n);
		bgs_transport_emit_packet (BGS_TRANSPORT (self), packet);
	}
	return G_SOURCE_CONTINUE;
}

static GSource *
fd_source_new (int fd, GIOCondition cond, GSourceFunc func, gpointer data)
{
	g_autoptr(GSocket) socket = NULL;
	GSource *source;
	int copy = dup (fd);

	if (copy < 0)
		return NULL;
	/* a GSocket that fails to wrap the fd leaves it to us */
	socket = g_socket_new_from_fd (copy, NULL);
	if (socket == NULL) {
		close (copy);
		return NULL;
	}
	source = g_socket_create_source (socket, cond, NULL);
	g_source_set_callback (source, func, data, NULL);
	g_source_attach (source, NULL);
	return source;
}

static void
chrc_changed_cb (GDBusProxy *proxy, GVariant *changed, const char *const *invalidated,
		 gpointer user_data)
{
	BgsGattTransport *self = user_data;
	g_autoptr(GVariant) value = g_variant_lookup_value (changed, "Value", G_VARIANT_TYPE_BYTESTRING);
	gsize len = 0;
	const guint8 *data;
	g_autoptr(GBytes) packet = NULL;

	if (value == NULL)
		return;
	data = g_variant_get_fixed_array (value, &len, 1);
	packet = g_bytes_new (data, len);
	bgs_transport_emit_packet (BGS_TRANSPORT (self), packet);
}

static void
device_changed_cb (GDBusProxy *proxy, GVariant *changed, const char *const *invalidated,
		   gpointer user_data)
{
	BgsGattTransport *self = user_data;
	gboolean connected = TRUE;

	if (g_variant_lookup (changed, "Connected", "b", &connected) && !connected)
		link_down (self, NULL);
}

/* ---- send ---------------------------------------------------------------------- */

static gboolean
write_ready_cb (GSocket *socket, GIOCondition cond, gpointer user_data)
{
	BgsGattTransport *self = user_data;

	g_clear_pointer (&self->write_source, g_source_unref);
	if (cond & (G_IO_HUP | G_IO_ERR)) {
		link_down (self, NULL);
		return G_SOURCE_REMOVE;
	}
	flush_out (self);
	return G_SOURCE_REMOVE;
}

static void
write_value_cb (GObject *source, GAsyncResult *res, gpointer user_data)
{
	BgsGattTransport *self = user_data;
	g_autoptr(GVariant) reply = NULL;
	g_autoptr(GError) error = NULL;

	reply = g_dbus_proxy_call_finish (G_DBUS_PROXY (source), res, &error);
	if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED)) {
		g_object_unref (self);
		return;
	}
	self->write_in_flight = FALSE;
	if (reply != NULL)
		bgs_transport_emit_sent (BGS_TRANSPORT (self), self->in_flight_len);
	if (reply == NULL) {
		g_autoptr(GError) e = g_error_new (BGS_ERROR, BGS_ERROR_IO, "write failed: %s",
						   error->message);
		link_down (self, e);
	} else {
		flush_out (self);
	}
	g_object_unref (self);
}

static void
flush_out (BgsGattTransport *self)
{
	while (self->connected && !g_queue_is_empty (self->out)) {
		GBytes *packet = g_queue_peek_head (self->out);
		gsize len = 0;
		const guint8 *data = g_bytes_get_data (packet, &len);

		if (self->write_fd >= 0) {
			gssize n = send (self->write_fd, data, len, MSG_DONTWAIT | MSG_NOSIGNAL);
			if (n < 0 && (errno == EAGAIN || errno == ENOBUFS || errno == EINTR)) {
				/* back-pressure: wait for room, never spin or drop */
				if (self->write_source == NULL)
					self->write_source = fd_source_new (self->write_fd, G_IO_OUT | G_IO_HUP | G_IO_ERR,
									    G_SOURCE_FUNC (write_ready_cb), self);
				return;
			}
			if (n < 0) {
				g_autoptr(GError) e = g_error_new (BGS_ERROR, BGS_ERROR_IO, "write failed: %s",
								   g_strerror (errno));
				link_down (self, e);
				return;
			}
			bgs_transport_emit_sent (BGS_TRANSPORT (self), len);
			g_bytes_unref (g_queue_pop_head (self->out));
		} else {
			GVariantBuilder opts;

			if (self->write_in_flight)
				return;
			g_variant_builder_init (&opts, G_VARIANT_TYPE_VARDICT);
			g_variant_builder_add (&opts, "{sv}", "type", g_variant_new_string ("command"));
			self->write_in_flight = TRUE;
			self->in_flight_len = len;
			g_dbus_proxy_call (self->chrc, "WriteValue",
					   g_variant_new ("(@aya{sv})",
							  g_variant_new_fixed_array (G_VARIANT_TYPE_BYTE, data, len, 1),
							  &opts),
					   G_DBUS_CALL_FLAGS_NONE, -1, self->cancellable,
					   write_value_cb, g_object_ref (self));
			g_bytes_unref (g_queue_pop_head (self->out));
			return;
		}
	}
}

static gboolean
gatt_send (BgsTransport *transport, GBytes *packet, GError **error)
{
	BgsGattTransport *self = BGS_GATT_TRANSPORT (transport);

	if (!self->connected) {
		g_set_error_literal (error, BGS_ERROR, BGS_ERROR_IO, "not connected to the device");
		return FALSE;
	}
	if (g_queue_get_length (self->out) >= MAX_QUEUED_PACKETS) {
		g_set_error_literal (error, BGS_ERROR, BGS_ERROR_BUSY, "the link's send queue is full");
		return FALSE;
	}
	g_queue_push_tail (self->out, g_bytes_ref (packet));
	flush_out (self);
	return TRUE;
}

static guint
gatt_get_payload_size (BgsTransport *transport)
{
	BgsGattTransport *self = BGS_GATT_TRANSPORT (transport);

	return self->mtu > ATT_HEADER ? MIN (self->mtu - ATT_HEADER, MAX_ATT_VALUE) : 20;
}

static void
gatt_close (BgsTransport *transport)
{
	BgsGattTransport *self = BGS_GATT_TRANSPORT (transport);

	release_link (self);
	g_queue_clear_full (self->out, (GDestroyNotify) g_bytes_unref);
}

/* ---- connect ------------------------------------------------------------------- */

typedef struct {
	BgsGattTransport *self;
	guint attempts;
	guint timeout_id;
	gulong resolved_id;
	gboolean done;
	gboolean connect_pending;  /* our Device1.Connect is in flight */
	GCancellable *caller;      /* the caller's: abandons the try */
	GSource *cancel_source;
	guint grace_id;           /* waiting for the characteristic to appear */
	gboolean grace_over;
	gulong added_id, iface_added_id;
} ConnectOp;

static void
grace_detach (ConnectOp *op)
{
	if (op->grace_id != 0)
		g_source_remove (op->grace_id);
	op->grace_id = 0;
	if (op->added_id != 0)
		g_signal_handler_disconnect (op->self->manager, op->added_id);
	if (op->iface_added_id != 0)
		g_signal_handler_disconnect (op->self->manager, op->iface_added_id);
	op->added_id = op->iface_added_id = 0;
}

static void
caller_detach (ConnectOp *op)
{
	if (op->cancel_source != NULL) {
		g_source_destroy (op->cancel_source);
		g_clear_pointer (&op->cancel_source, g_source_unref);
	}
	g_clear_object (&op->caller);
}

static void
connect_op_free (ConnectOp *op)
{
	caller_detach (op);
	if (op->timeout_id != 0)
		g_source_remove (op->timeout_id);
	if (op->resolved_id != 0 && op->self->device != NULL)
		g_signal_handler_disconnect (op->self->device, op->resolved_id);
	grace_detach (op);
	g_object_unref (op->self);
	g_free (op);
}

static gboolean
proxy_bool (GDBusProxy *proxy, const char *name)
{
	g_autoptr(GVariant) v = g_dbus_proxy_get_cached_property (proxy, name);

	return v != NULL && g_variant_is_of_type (v, G_VARIANT_TYPE_BOOLEAN) && g_variant_get_boolean (v);
}

static gboolean
uuid_equal (GDBusProxy *proxy, const char *uuid)
{
	g_autoptr(GVariant) v = g_dbus_proxy_get_cached_property (proxy, "UUID");

	return v != NULL && g_variant_is_of_type (v, G_VARIANT_TYPE_STRING) &&
	       g_ascii_strcasecmp (g_variant_get_string (v, NULL), uuid) == 0;
}

static GDBusProxy *
find_characteristic (BgsGattTransport *self, const char *char_uuid)
{
	GList *objects = g_dbus_object_manager_get_objects (self->manager);
	g_autofree char *prefix = g_strdup_printf ("%s/", self->device_path);
	GDBusProxy *found = NULL;

	for (GList *l = objects; l != NULL && found == NULL; l = l->next) {
		const char *path = g_dbus_object_get_object_path (l->data);
		g_autoptr(GDBusInterface) ci = NULL;
		g_autoptr(GDBusInterface) si = NULL;
		g_autoptr(GVariant) service = NULL;

		if (!g_str_has_prefix (path, prefix))
			continue;
		ci = g_dbus_object_get_interface (l->data, CHAR_IFACE);
		if (ci == NULL || !uuid_equal (G_DBUS_PROXY (ci), char_uuid))
			continue;
		service = g_dbus_proxy_get_cached_property (G_DBUS_PROXY (ci), "Service");
		if (service == NULL || !g_variant_is_of_type (service, G_VARIANT_TYPE_OBJECT_PATH))
			continue;
		si = g_dbus_object_manager_get_interface (self->manager,
							  g_variant_get_string (service, NULL),
							  SERVICE_IFACE);
		if (si == NULL || !uuid_equal (G_DBUS_PROXY (si), self->service_uuid))
			continue;
		found = G_DBUS_PROXY (g_object_ref (ci));
	}
	g_list_free_full (objects, g_object_unref);
	return found;
}

static void
connect_detach (ConnectOp *op)
{
	if (op->resolved_id != 0 && op->self->device != NULL)
		g_signal_handler_disconnect (op->self->device, op->resolved_id);
	op->resolved_id = 0;
	if (op->timeout_id != 0)
		g_source_remove (op->timeout_id);
	op->timeout_id = 0;
	caller_detach (op);
	grace_detach (op);
}

static void
connect_fail (GTask *task, GError *error)
{
	ConnectOp *op = g_task_get_task_data (task);

	if (op->done) {
		g_error_free (error);
		return;
	}
	op->done = TRUE;
	connect_detach (op);
	/* a Connect of ours still in flight would go on paging the device
	 * (holding the controller's connection attempt): call it off, as
	 * Device1.Disconnect does before Connect's reply */
	if (op->connect_pending && op->self->device != NULL)
		g_dbus_proxy_call (op->self->device, "Disconnect", NULL, G_DBUS_CALL_FLAGS_NONE, -1,
				   NULL, NULL, NULL);
	op->connect_pending = FALSE;
	release_link (op->self);
	g_task_return_error (task, error);
	g_object_unref (task);
}

static void
connect_succeed (GTask *task)
{
	ConnectOp *op = g_task_get_task_data (task);
	BgsGattTransport *self = op->self;

	if (op->done)
		return;
	op->done = TRUE;
	connect_detach (op);
	self->connected = TRUE;
	self->device_changed_id = g_signal_connect (self->device, "g-properties-changed",
						    G_CALLBACK (device_changed_cb), self);
	g_debug ("%s: GATT link up, MTU %u, %s", self->device_path, self->mtu,
		 self->write_fd >= 0 ? "fd path" : "WriteValue/notify path");
	g_task_return_boolean (task, TRUE);
	g_object_unref (task);
}

static int
take_fd (GVariant *reply, GUnixFDList *fds, guint16 *mtu)
{
	gint32 index;
	int fd, type = 0;
	socklen_t len = sizeof type;

	if (fds == NULL || !g_variant_is_of_type (reply, G_VARIANT_TYPE ("(hq)")))
		return -1;

	g_variant_get (reply, "(hq)", &index, mtu);
	if (index < 0 || index >= g_unix_fd_list_get_length (fds))
		return -1;
	fd = g_unix_fd_list_get (fds, index, NULL);
	/* bluetoothd hands a SOCK_SEQPACKET socket: anything else (a file, a
	 * stream) is refused and the D-Bus path used instead */
	if (fd >= 0 && (getsockopt (fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0 ||
			type != SOCK_SEQPACKET)) {
		close (fd);
		return -1;
	}
	return fd;
}

static void acquire_write_cb (GObject *source, GAsyncResult *res, gpointer user_data);

/* an Acquire* error saying the link is gone: bluetoothd answers so between
 * the sockets hanging up and Connected=false (5.66: Failed "Not connected").
 * That must fail the try, not fall back to WriteValue/StartNotify on a
 * device that is not there; only "not supported"-type errors fall back */
static gboolean
acquire_error_link_gone (const GError *error)
{
	g_autofree char *remote = NULL;
	g_autofree char *msg = NULL;

	if (error == NULL)
		return FALSE;
	if (g_error_matches (error, G_DBUS_ERROR, G_DBUS_ERROR_SERVICE_UNKNOWN) ||
	    g_error_matches (error, G_DBUS_ERROR, G_DBUS_ERROR_NAME_HAS_NO_OWNER))
		return TRUE;
	remote = g_dbus_error_get_remote_error (error);
	if (g_strcmp0 (remote, "org.bluez.Error.NotConnected") == 0)
		return TRUE;
	msg = g_ascii_strdown (error->message, -1);
	return strstr (msg, "not connected") != NULL;
}

static void
acquire_fail (GTask *task, const char *method, const GError *error)
{
	g_autoptr(GError) copy = g_error_copy (error);

	g_dbus_error_strip_remote_error (copy);
	connect_fail (task, g_error_new (BGS_ERROR, BGS_ERROR_IO, "the device is not connected (%s: %s)",
					 method, copy->message));
}

static void
start_notify_cb (GObject *source, GAsyncResult *res, gpointer user_data)
{
	g_autoptr(GTask) task = user_data;
	ConnectOp *op = g_task_get_task_data (task);
	g_autoptr(GVariant) reply = NULL;
	g_autoptr(GError) error = NULL;

	reply = g_dbus_proxy_call_finish (G_DBUS_PROXY (source), res, &error);
	if (op->done) {
		/* abandoned meanwhile (a cancelled call may still have reached
		 * bluetoothd): give the notify session back */
		g_dbus_proxy_call (G_DBUS_PROXY (source), "StopNotify", NULL, G_DBUS_CALL_FLAGS_NONE,
				   -1, NULL, NULL, NULL);
		return;
	}
	if (reply == NULL) {
		connect_fail (task, g_error_new (BGS_ERROR, BGS_ERROR_IO,
						 "cannot subscribe to notifications: %s", error->message));
		return;
	}
	op->self->notifying = TRUE;
	if (op->self->no_acquire) {
		connect_succeed (task);
		return;
	}
	g_dbus_proxy_call_with_unix_fd_list (op->self->chrc, "AcquireWrite",
					     g_variant_new ("(a{sv})", NULL),
					     G_DBUS_CALL_FLAGS_NONE, -1, NULL, op->self->cancellable,
					     acquire_write_cb, g_object_ref (task));
}

static void
acquire_write_cb (GObject *source, GAsyncResult *res, gpointer user_data)
{
	g_autoptr(GTask) task = user_data;
	ConnectOp *op = g_task_get_task_data (task);
	BgsGattTransport *self = op->self;
	g_autoptr(GUnixFDList) fds = NULL;
	g_autoptr(GVariant) reply = NULL;
	g_autoptr(GError) error = NULL;
	guint16 mtu = 0;

	if (op->done)
		return;
	reply = g_dbus_proxy_call_with_unix_fd_list_finish (G_DBUS_PROXY (source), &fds, res, &error);
	if (reply == NULL && acquire_error_link_gone (error)) {
		acquire_fail (task, "AcquireWrite", error);
		return;
	}
	if (reply != NULL)
		self->write_fd = take_fd (reply, fds, &mtu);
	if (self->write_fd >= 0) {
		/* an absurd MTU from the peer is clamped, never trusted */
		self->mtu = CLAMP (mtu, 23, MAX_ATT_MTU);
	} else {
		g_autoptr(GVariant) m = g_dbus_proxy_get_cached_property (self->chrc, "MTU");
		g_debug ("%s: AcquireWrite unavailable (%s): using WriteValue", self->device_path,
			 error != NULL ? error->message : "bad reply");
		if (self->mtu == 0)
			self->mtu = m != NULL && g_variant_is_of_type (m, G_VARIANT_TYPE_UINT16)
				    ? CLAMP (g_variant_get_uint16 (m), 23, MAX_ATT_MTU) : 23;
	}
	connect_succeed (task);
}

static void
acquire_notify_cb (GObject *source, GAsyncResult *res, gpointer user_data)
{
	g_autoptr(GTask) task = user_data;
	ConnectOp *op = g_task_get_task_data (task);
	BgsGattTransport *self = op->self;
	g_autoptr(GUnixFDList) fds = NULL;
	g_autoptr(GVariant) reply = NULL;
	g_autoptr(GError) error = NULL;
	guint16 mtu = 0;

	if (op->done)
		return;
	reply = g_dbus_proxy_call_with_unix_fd_list_finish (G_DBUS_PROXY (source), &fds, res, &error);
	if (reply == NULL && acquire_error_link_gone (error)) {
		acquire_fail (task, "AcquireNotify", error);
		return;
	}
	if (reply != NULL)
		self->notify_fd = take_fd (reply, fds, &mtu);
	if (self->notify_fd >= 0) {
		self->mtu = CLAMP (mtu, 23, MAX_ATT_MTU);
		self->notify_source = fd_source_new (self->notify_fd, G_IO_IN | G_IO_HUP | G_IO_ERR,
						     G_SOURCE_FUNC (notify_readable_cb), self);
	} else {
		g_debug ("%s: AcquireNotify unavailable (%s): using StartNotify", self->device_path,
			 error != NULL ? error->message : "bad reply");
		self->chrc_changed_id = g_signal_connect (self->nchrc, "g-properties-changed",
							  G_CALLBACK (chrc_changed_cb), self);
		g_dbus_proxy_call (self->nchrc, "StartNotify", NULL, G_DBUS_CALL_FLAGS_NONE, -1,
				   self->cancellable, start_notify_cb, g_object_ref (task));
		return;
	}
	g_dbus_proxy_call_with_unix_fd_list (self->chrc, "AcquireWrite",
					     g_variant_new ("(a{sv})", NULL),
					     G_DBUS_CALL_FLAGS_NONE, -1, NULL, self->cancellable,
					     acquire_write_cb, g_object_ref (task));
}

static void setup_characteristic (GTask *task);

static gboolean
chrc_grace_cb (gpointer user_data)
{
	GTask *task = user_data;
	ConnectOp *op = g_task_get_task_data (task);

	op->grace_id = 0;
	op->grace_over = TRUE;
	setup_characteristic (task);
	return G_SOURCE_REMOVE;
}

static void
chrc_added_cb (GDBusObjectManager *manager, GDBusObject *object, gpointer user_data)
{
	GTask *task = user_data;
	ConnectOp *op = g_task_get_task_data (task);
	g_autofree char *prefix = g_strdup_printf ("%s/", op->self->device_path);

	if (!op->done && g_str_has_prefix (g_dbus_object_get_object_path (object), prefix))
		setup_characteristic (task);
}

static void
chrc_iface_added_cb (GDBusObjectManager *manager, GDBusObject *object,
		     GDBusInterface *iface, gpointer user_data)
{
	chrc_added_cb (manager, object, user_data);
}

static void
setup_characteristic (GTask *task)
{
	ConnectOp *op = g_task_get_task_data (task);
	BgsGattTransport *self = op->self;

	if (op->done)
		return;
	if (op->timeout_id != 0) {
		g_source_remove (op->timeout_id);
		op->timeout_id = 0;
	}
	g_clear_object (&self->chrc);
	g_clear_object (&self->nchrc);
	self->chrc = find_characteristic (self, self->char_uuid);
	self->nchrc = self->notify_uuid != NULL ? find_characteristic (self, self->notify_uuid)
						 : (self->chrc != NULL ? g_object_ref (self->chrc) : NULL);
	if ((self->chrc == NULL || self->nchrc == NULL) && !op->grace_over) {
		/* wait, bounded, for bluetoothd's objects: one more look on
		 * every object it adds under the device */
		if (op->grace_id == 0) {
			g_debug ("%s: no characteristic %s yet although services are resolved: "
				 "waiting up to %u ms", self->device_path,
				 self->chrc == NULL ? self->char_uuid : self->notify_uuid, CHRC_GRACE_MS);
			op->grace_id = g_timeout_add (CHRC_GRACE_MS, chrc_grace_cb, task);
			op->added_id = g_signal_connect (self->manager, "object-added",
							 G_CALLBACK (chrc_added_cb), task);
			op->iface_added_id = g_signal_connect (self->manager, "interface-added",
							       G_CALLBACK (chrc_iface_added_cb), task);
		}
		return;
	}
	grace_detach (op);
	if (self->chrc == NULL || self->nchrc == NULL) {
		connect_fail (task, g_error_new (BGS_ERROR, BGS_ERROR_NOT_SUPPORTED,
						 "the device has no characteristic %s in service %s",
						 self->chrc == NULL ? self->char_uuid : self->notify_uuid,
						 self->service_uuid));
		return;
	}
	if (self->no_acquire) {
		self->chrc_changed_id = g_signal_connect (self->nchrc, "g-properties-changed",
							  G_CALLBACK (chrc_changed_cb), self);
		{
			g_autoptr(GVariant) m = g_dbus_proxy_get_cached_property (self->chrc, "MTU");
			self->mtu = m != NULL && g_variant_is_of_type (m, G_VARIANT_TYPE_UINT16)
				    ? CLAMP (g_variant_get_uint16 (m), 23, MAX_ATT_MTU) : 23;
		}
		g_dbus_proxy_call (self->nchrc, "StartNotify", NULL, G_DBUS_CALL_FLAGS_NONE, -1,
				   self->cancellable, start_notify_cb, g_object_ref (task));
		return;
	}
	g_dbus_proxy_call_with_unix_fd_list (self->nchrc, "AcquireNotify",
					     g_variant_new ("(a{sv})", NULL),
					     G_DBUS_CALL_FLAGS_NONE, -1, NULL, self->cancellable,
					     acquire_notify_cb, g_object_ref (task));
}

static void
resolved_changed_cb (GDBusProxy *proxy, GVariant *changed, const char *const *invalidated,
		     gpointer user_data)
{
	GTask *task = user_data; /* the signal handler's ref, dropped on disconnect */
	ConnectOp *op = g_task_get_task_data (task);
	gboolean value;

	if (op->done)
		return;
	if (g_variant_lookup (changed, "Connected", "b", &value) && !value) {
		connect_fail (task, g_error_new_literal (BGS_ERROR, BGS_ERROR_IO,
							 "the device disconnected while its services were resolved"));
		return;
	}
	if (g_variant_lookup (changed, "ServicesResolved", "b", &value) && value) {
		g_signal_handler_disconnect (proxy, op->resolved_id);
		op->resolved_id = 0;
		setup_characteristic (task);
	}
}

static gboolean
connect_timeout_cb (gpointer user_data)
{
	GTask *task = user_data;
	ConnectOp *op = g_task_get_task_data (task);

	op->timeout_id = 0;
	connect_fail (task, g_error_new_literal (BGS_ERROR, BGS_ERROR_TIMED_OUT,
						 "timed out connecting to the device and resolving its services"));
	return G_SOURCE_REMOVE;
}

static void device_connect (GTask *task);

static void
connect_cb (GObject *source, GAsyncResult *res, gpointer user_data)
{
	g_autoptr(GTask) task = user_data;
	ConnectOp *op = g_task_get_task_data (task);
	g_autoptr(GVariant) reply = NULL;
	g_autoptr(GError) error = NULL;

	op->connect_pending = FALSE;
	if (op->done)
		return;
	reply = g_dbus_proxy_call_finish (G_DBUS_PROXY (source), res, &error);
	if (reply == NULL && (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED) ||
			      op->self->device == NULL)) {
		/* the link was closed meanwhile (release_link): no retry on a
		 * proxy that is gone */
		connect_fail (task, g_error_new_literal (G_IO_ERROR, G_IO_ERROR_CANCELLED,
							 "the link was closed while connecting"));
		return;
	}
	if (reply == NULL) {
		g_autofree char *remote = g_dbus_error_get_remote_error (error);
		if (g_strcmp0 (remote, "org.bluez.Error.AlreadyConnected") != 0 &&
		    g_strcmp0 (remote, "org.bluez.Error.InProgress") != 0) {
			if (++op->attempts < CONNECT_ATTEMPTS) {
				g_debug ("%s: connect attempt %u failed: %s", op->self->device_path,
					 op->attempts, error->message);
				device_connect (task);
				return;
			}
			connect_fail (task, g_error_new (BGS_ERROR, BGS_ERROR_IO,
							 "cannot connect to the device: %s",
							 error->message));
			return;
		}
	}
	/* Connect returns before discovery ends: wait for ServicesResolved,
	 * unless it already flipped (the race the signal would miss) */
	if (proxy_bool (op->self->device, "ServicesResolved") && op->resolved_id != 0) {
		g_signal_handler_disconnect (op->self->device, op->resolved_id);
		op->resolved_id = 0;
		setup_characteristic (task);
	}
}

static void
device_connect (GTask *task)
{
	ConnectOp *op = g_task_get_task_data (task);

	op->connect_pending = TRUE;
	g_dbus_proxy_call (op->self->device, "Connect", NULL, G_DBUS_CALL_FLAGS_NONE,
			   (gint) (op->self->connect_timeout / 1000), op->self->cancellable,
			   connect_cb, g_object_ref (task));
}

static gboolean
caller_cancelled_cb (GCancellable *cancellable, gpointer user_data)
{
	GTask *task = user_data; /* alive: the task's data owns this source */

	connect_fail (task, g_error_new_literal (G_IO_ERROR, G_IO_ERROR_CANCELLED,
						 "the connect was cancelled"));
	return G_SOURCE_REMOVE;
}

static void
connect_start (BgsGattTransport *self, GCancellable *cancellable, GTask *task)
{
	ConnectOp *op = g_new0 (ConnectOp, 1);
	GDBusInterface *iface;

	op->self = g_object_ref (self);
	g_task_set_task_data (task, op, (GDestroyNotify) connect_op_free);
	/* the caller abandons the try at any step (Connect, ServicesResolved,
	 * Acquire*): a source, not a cancelled handler, so failing (which
	 * detaches it) never runs inside g_cancellable_cancel(); ahead of
	 * D-Bus traffic already queued */
	if (cancellable != NULL) {
		op->caller = g_object_ref (cancellable);
		op->cancel_source = g_cancellable_source_new (cancellable);
		g_source_set_priority (op->cancel_source, G_PRIORITY_HIGH);
		g_source_set_callback (op->cancel_source, G_SOURCE_FUNC (caller_cancelled_cb), task, NULL);
		g_source_attach (op->cancel_source, NULL);
	}
	release_link (self);
	self->cancellable = g_cancellable_new ();
	iface = g_dbus_object_manager_get_interface (self->manager, self->device_path, DEVICE_IFACE);
	if (iface == NULL) {
		connect_fail (task, g_error_new (BGS_ERROR, BGS_ERROR_NOT_FOUND,
						 "BlueZ has no device %s", self->device_path));
		return;
	}
	self->device = G_DBUS_PROXY (iface);
	op->timeout_id = g_timeout_add_full (G_PRIORITY_DEFAULT,
					     (guint) (self->connect_timeout / 1000),
					     connect_timeout_cb, task, NULL);
	/* the timeout is removed in connect_op_free, which the task runs */
	if (proxy_bool (self->device, "Connected") && proxy_bool (self->device, "ServicesResolved")) {
		setup_characteristic (task);
		return;
	}
	op->resolved_id = g_signal_connect_data (self->device, "g-properties-changed",
						 G_CALLBACK (resolved_changed_cb), g_object_ref (task),
						 (GClosureNotify) (void (*) (void)) g_object_unref, 0);
	device_connect (task);
}

/* ---- public -------------------------------------------------------------------- */

static void
open_done_cb (GObject *source, GAsyncResult *res, gpointer user_data)
{
	g_autoptr(GTask) outer = user_data;
	g_autoptr(GError) error = NULL;

	if (!g_task_propagate_boolean (G_TASK (res), &error))
		g_task_return_error (outer, g_steal_pointer (&error));
	else
		g_task_return_pointer (outer, g_object_ref (source), g_object_unref);
}

void
bgs_gatt_transport_open_async (GDBusObjectManager *manager, const char *device_path,
			       const BgsGattTransportOptions *options, GCancellable *cancellable,
			       GAsyncReadyCallback callback, gpointer user_data)
{
	g_autoptr(BgsGattTransport) self = g_object_new (BGS_TYPE_GATT_TRANSPORT, NULL);
	GTask *outer = g_task_new (NULL, cancellable, callback, user_data);
	GTask *task;

	self->manager = g_object_ref (manager);
	self->device_path = g_strdup (device_path);
	self->service_uuid = g_strdup (options->service_uuid);
	self->char_uuid = g_strdup (options->characteristic_uuid);
	self->notify_uuid = g_strdup (options->notify_characteristic_uuid);
	self->connect_timeout = options->connect_timeout > 0 ? options->connect_timeout
							      : DEFAULT_CONNECT_TIMEOUT;
	self->no_acquire = options->no_acquire;
	task = g_task_new (self, cancellable, open_done_cb, outer);
	connect_start (self, cancellable, task);
}

BgsGattTransport *
bgs_gatt_transport_open_finish (GAsyncResult *res, GError **error)
{
	return g_task_propagate_pointer (G_TASK (res), error);
}

static void
gatt_reconnect (BgsTransport *transport, const char *device_path, GCancellable *cancellable,
		GTask *task)
{
	BgsGattTransport *self = BGS_GATT_TRANSPORT (transport);

	g_free (self->device_path);
	self->device_path = g_strdup (device_path);
	connect_start (self, cancellable, task);
}

void
bgs_gatt_transport_reconnect_async (BgsGattTransport *self, const char *device_path,
				    GCancellable *cancellable, GAsyncReadyCallback callback,
				    gpointer user_data)
{
	bgs_transport_reconnect_async (BGS_TRANSPORT (self), device_path, cancellable, callback,
				       user_data);
}

gboolean
bgs_gatt_transport_reconnect_finish (BgsGattTransport *self, GAsyncResult *res, GError **error)
{
	return bgs_transport_reconnect_finish (BGS_TRANSPORT (self), res, error);
}

const char *
bgs_gatt_transport_get_device_path (BgsGattTransport *self)
{
	return self->device_path;
}

gboolean
bgs_gatt_transport_uses_fds (BgsGattTransport *self)
{
	return self->write_fd >= 0 && self->notify_fd >= 0;
}

guint
bgs_gatt_transport_get_mtu (BgsGattTransport *self)
{
	return self->mtu;
}

static void
bgs_gatt_transport_finalize (GObject *object)
{
	BgsGattTransport *self = BGS_GATT_TRANSPORT (object);

	release_link (self);
	g_queue_free_full (self->out, (GDestroyNotify) g_bytes_unref);
	g_clear_object (&self->manager);
	g_free (self->device_path);
	g_free (self->service_uuid);
	g_free (self->char_uuid);
	g_free (self->notify_uuid);
	G_OBJECT_CLASS (bgs_gatt_transport_parent_class)->finalize (object);
}

static void
bgs_gatt_transport_class_init (BgsGattTransportClass *klass)
{
	BgsTransportClass *transport_class = BGS_TRANSPORT_CLASS (klass);

	G_OBJECT_CLASS (klass)->finalize = bgs_gatt_transport_finalize;
	transport_class->send = gatt_send;
	transport_class->get_payload_size = gatt_get_payload_size;
	transport_class->close = gatt_close;
	transport_class->reconnect = gatt_reconnect;
}

static void
bgs_gatt_transport_init (BgsGattTransport *self)
{
	self->write_fd = self->notify_fd = -1;
	self->out = g_queue_new ();
}
