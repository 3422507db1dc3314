/* bgs-rfcomm-transport.c: an RFCOMM profile connection as a packet channel */
#include "bgs-rfcomm-transport.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <glib-unix.h>
#include <gio/gunixfdlist.h>

#include "bgs-error.h"

#define DEVICE_IFACE "org.bluez.Device1"
#define PROFILE_IFACE "org.bluez.Profile1"
#define PROFILE_MANAGER_IFACE "org.bluez.ProfileManager1"
#define PROFILE_PATH_PREFIX "/org/bgsync/rfcomm/profile"
#define DEFAULT_CONNECT_TIMEOUT (30 * G_USEC_PER_SEC)
#define DEFAULT_PAYLOAD 4096
#define MAX_PAYLOAD 65536
/* BR/EDR connects race the security block in bluetoothd now and then */
#define CONNECT_RETRIES 3
#define RETRY_BACKOFF_MS 250
/* how long a NewConnection may trail ConnectProfile's reply */
#define STALE_GRACE_MS 1000
/* bounded: a stalled link must not grow the queue without limit */
#define MAX_QUEUED_BYTES (8 * 1024 * 1024)
#define BASE_UUID_SUFFIX "-0000-1000-8000-00805f9b34fb"

static const char profile_xml[] =
	"<node><interface name='org.bluez.Profile1'>"
	" <method name='Release'/>"
	" <method name='NewConnection'><arg name='device' type='o'/><arg name='fd' type='h'/>"
	"  <arg name='fd_properties' type='a{sv}'/></method>"
	" <method name='RequestDisconnection'><arg name='device' type='o'/></method>"
	"</interface></node>";

/* one Profile1 registration, shared by the transports of one UUID on one
 * connection: bluetoothd takes a UUID once */
typedef struct {
	GDBusConnection *conn;
	char *key;
	char *uuid;
	char *path;
	guint object_id;
	gboolean registered;
	gboolean failed;     /* RegisterProfile refused: the next open tries again */
	gboolean released;   /* bluetoothd let go of it: nothing to unregister */
	gboolean in_table;
	GList *waiters;      /* GTask, waiting for RegisterProfile */
	GList *transports;   /* BgsRfcommTransport, not owned */
	guint refs;
} ProfileReg;

static GHashTable *registrations; /* key -> ProfileReg */
static guint next_profile_id;

struct _BgsRfcommTransport {
	BgsTransport parent_instance;
	GDBusObjectManager *manager;
	ProfileReg *reg;
	char *device_path;
	char *uuid;
	gint64 connect_timeout;
	guint payload_size;
	GDBusProxy *device;
	gulong device_changed_id;
	int fd;
	GSource *read_source;
	GSource *write_source;
	GQueue *out;                 /* GBytes waiting for the link */
	gsize out_offset;            /* bytes of the head already written */
	gsize out_bytes;             /* queued, not yet written */
	gboolean connected;
	GTask *connect_task;         /* a connect waiting for NewConnection (not owned) */
	guint attempts;
	GCancellable *cancellable;   /* everything in flight on this link */
};

G_DEFINE_TYPE (BgsRfcommTransport, bgs_rfcomm_transport, BGS_TYPE_TRANSPORT)

static void link_down (BgsRfcommTransport *self, const GError *error);
static void flush_out (BgsRfcommTransport *self);
static void connect_fail (GTask *task, GError *error);
static void connect_succeed (GTask *task);
static void connect_profile (GTask *task);

/* "1101" and "0000110a" are short forms of the Bluetooth base UUID */
static char *
uuid_normalize (const char *uuid)
{
	gsize len;

	if (uuid == NULL)
		return NULL;
	len = strlen (uuid);
	if ((len == 4 || len == 8) && strspn (uuid, "0123456789abcdefABCDEF") == len) {
		g_autofree char *l = g_ascii_strdown (uuid, -1);
		return g_strdup_printf ("%s%s%s", len == 4 ? "0000" : "", l, BASE_UUID_SUFFIX);
	}
	if (!g_uuid_string_is_valid (uuid))
		return NULL;
	return g_ascii_strdown (uuid, -1);
}

/* ---- the shared profile registration ---------------------------------------- */

static void
reg_unref (ProfileReg *reg)
{
	if (--reg->refs > 0)
		return;
	if (reg->registered && !reg->released)
		g_dbus_connection_call (reg->conn, "org.bluez", "/org/bluez", PROFILE_MANAGER_IFACE,
					"UnregisterProfile", g_variant_new ("(o)", reg->path), NULL,
					G_DBUS_CALL_FLAGS_NO_AUTO_START, -1, NULL, NULL, NULL);
	if (reg->object_id != 0)
		g_dbus_connection_unregister_object (reg->conn, reg->object_id);
	if (reg->in_table)
		g_hash_table_remove (registrations, reg->key);
	g_debug ("profile %s (%s) unregistered", reg->uuid, reg->path);
	g_list_free_full (reg->waiters, g_object_unref);
	g_list_free (reg->transports);
	g_object_unref (reg->conn);
	g_free (reg->key);
	g_free (reg->uuid);
	g_free (reg->path);
	g_free (reg);
}

/* the registration is no good any more: later opens make a new one */
static void
reg_forget (ProfileReg *reg)
{
	if (reg->in_table) {
		g_hash_table_remove (registrations, reg->key);
		reg->in_table = FALSE;
	}
}

static BgsRfcommTransport *
reg_find (ProfileReg *reg, const char *device, gboolean connecting)
{
	for (GList *l = reg->transports; l != NULL; l = l->next) {
		BgsRfcommTransport *t = l->data;

		if (g_strcmp0 (t->device_path, device) != 0)
			continue;
		if (connecting ? (t->connect_task != NULL && t->fd < 0) : t->connected)
			return t;
	}
	return NULL;
}

static gboolean
from_bluez (ProfileReg *reg, const char *sender)
{
	for (GList *l = reg->transports; l != NULL; l = l->next) {
		BgsRfcommTransport *t = l->data;
		g_autofree char *owner = NULL;

		if (t->manager == NULL)
			continue;
		owner = g_dbus_object_manager_client_get_name_owner (G_DBUS_OBJECT_MANAGER_CLIENT (t->manager));
		if (g_strcmp0 (owner, sender) == 0)
			return TRUE;
	}
	return FALSE;
}

static void
profile_new_connection (ProfileReg *reg, GVariant *params, GDBusMethodInvocation *inv)
{
	GUnixFDList *fds = g_dbus_message_get_unix_fd_list (g_dbus_method_invocation_get_message (inv));
	const char *device;
	gint32 index;
	g_autoptr(GVariant) props = NULL;
	g_autoptr(GError) error = NULL;
	BgsRfcommTransport *t;
	int fd;

	g_variant_get (params, "(&oh@a{sv})", &device, &index, &props);
	if (fds == NULL || index < 0 || index >= g_unix_fd_list_get_length (fds)) {
		g_dbus_method_invocation_return_dbus_error (inv, "org.bluez.Error.InvalidArguments",
							    "no file descriptor");
		return;
	}
	/* the fd in the message closes with it unless taken */
	t = reg_find (reg, device, TRUE);
	if (t == NULL) {
		g_debug ("profile %s: NewConnection from %s that nobody asked for", reg->uuid, device);
		g_dbus_method_invocation_return_dbus_error (inv, "org.bluez.Error.Rejected",
							    "no connection was asked for on this device");
		return;
	}
	fd = g_unix_fd_list_get (fds, index, &error);
	if (fd < 0 || !g_unix_set_fd_nonblocking (fd, TRUE, NULL)) {
		if (fd >= 0)
			close (fd);
		g_dbus_method_invocation_return_dbus_error (inv, "org.bluez.Error.Failed",
							    "cannot take the file descriptor");
		connect_fail (t->connect_task, g_error_new (BGS_ERROR, BGS_ERROR_IO,
							    "unusable RFCOMM socket: %s",
							    error != NULL ? error->message : g_strerror (errno)));
		return;
	}
	t->fd = fd;
	g_dbus_method_invocation_return_value (inv, NULL);
	connect_succeed (t->connect_task);
}

static void
profile_method_call (GDBusConnection *conn, const char *sender, const char *path,
		     const char *iface, const char *method, GVariant *params,
		     GDBusMethodInvocation *inv, gpointer user_data)
{
	ProfileReg *reg = user_data;

	/* only bluetoothd talks to a profile */
	if (!from_bluez (reg, sender)) {
		g_dbus_method_invocation_return_dbus_error (inv, "org.bluez.Error.Rejected",
							    "not from bluetoothd");
		return;
	}
	if (g_strcmp0 (method, "NewConnection") == 0) {
		profile_new_connection (reg, params, inv);
	} else if (g_strcmp0 (method, "RequestDisconnection") == 0) {
		const char *device;
		BgsRfcommTransport *t;

		g_variant_get (params, "(&o)", &device);
		g_dbus_method_invocation_return_value (inv, NULL);
		while ((t = reg_find (reg, device, FALSE)) != NULL) {
			g_autoptr(GError) e = g_error_new_literal (BGS_ERROR, BGS_ERROR_IO,
								   "BlueZ disconnected the RFCOMM profile");
			link_down (t, e);
		}
	} else if (g_strcmp0 (method, "Release") == 0) {
		GList *copy;

		g_debug ("profile %s released by bluetoothd", reg->uuid);
		g_dbus_method_invocation_return_value (inv, NULL);
		reg->released = TRUE;
		reg->refs++;
		reg_forget (reg);
		copy = g_list_copy (reg->transports);
		g_list_foreach (copy, (GFunc) (void (*) (void)) g_object_ref, NULL);
		for (GList *l = copy; l != NULL; l = l->next) {
			BgsRfcommTransport *t = l->data;
			g_autoptr(GError) e = g_error_new_literal (BGS_ERROR, BGS_ERROR_IO,
								   "bluetoothd released the RFCOMM profile");
			if (t->connect_task != NULL)
				connect_fail (t->connect_task, g_error_copy (e));
			else
				link_down (t, e);
		}
		g_list_free_full (copy, g_object_unref);
		reg_unref (reg);
	} else {
		g_dbus_method_invocation_return_dbus_error (inv, "org.freedesktop.DBus.Error.UnknownMethod",
							    "unknown method");
	}
}

static const GDBusInterfaceVTable profile_vtable = { profile_method_call, NULL, NULL, { 0 } };

static void
register_profile_cb (GObject *source, GAsyncResult *res, gpointer user_data)
{
	ProfileReg *reg = user_data;
	g_autoptr(GVariant) reply = NULL;
	g_autoptr(GError) error = NULL;
	GList *waiters;

	reply = g_dbus_connection_call_finish (G_DBUS_CONNECTION (source), res, &error);
	if (reply != NULL) {
		reg->registered = TRUE;
		g_debug ("profile %s registered at %s", reg->uuid, reg->path);
	} else {
		reg->failed = TRUE;
		reg_forget (reg);
		g_debug ("RegisterProfile %s failed: %s", reg->uuid, error->message);
	}
	waiters = g_steal_pointer (&reg->waiters);
	for (GList *l = waiters; l != NULL; l = l->next) {
		if (reply != NULL) {
			connect_profile (l->data);
		} else {
			g_autofree char *remote = g_dbus_error_get_remote_error (error);
			g_dbus_error_strip_remote_error (error);
			connect_fail (l->data, g_error_new (BGS_ERROR,
							    g_strcmp0 (remote, "org.freedesktop.DBus.Error.ServiceUnknown") == 0
							    ? BGS_ERROR_NOT_FOUND : BGS_ERROR_FAILED,
							    "cannot register the RFCOMM profile %s with BlueZ: %s",
							    reg->uuid, error->message));
		}
	}
	g_list_free_full (waiters, g_object_unref);
	reg_unref (reg);
}

static ProfileReg *
reg_get (GDBusConnection *conn, const char *uuid, GError **error)
{
	static GDBusNodeInfo *info;
	g_autofree char *key = g_strdup_printf ("%p %s", (void *) conn, uuid);
	ProfileReg *reg;
	GVariantBuilder opts;

	if (registrations == NULL)
		registrations = g_hash_table_new (g_str_hash, g_str_equal);
	reg = g_hash_table_lookup (registrations, key);
	if (reg != NULL) {
		reg->refs++;
		return reg;
	}
	if (info == NULL)
		info = g_dbus_node_info_new_for_xml (profile_xml, NULL);
	reg = g_new0 (ProfileReg, 1);
	reg->conn = g_object_ref (conn);
	reg->key = g_steal_pointer (&key);
	reg->uuid = g_strdup (uuid);
	reg->path = g_strdup_printf (PROFILE_PATH_PREFIX "%u", ++next_profile_id);
	reg->refs = 1;
	reg->object_id = g_dbus_connection_register_object (conn, reg->path, info->interfaces[0],
							    &profile_vtable, reg, NULL, error);
	if (reg->object_id == 0) {
		reg_unref (reg);
		return NULL;
	}
	g_hash_table_insert (registrations, reg->key, reg);
	reg->in_table = TRUE;
	/* client role: bluetoothd finds the remote channel by SDP on the UUID
	 * when we call ConnectProfile; no local SDP record, no listening */
	g_variant_builder_init (&opts, G_VARIANT_TYPE_VARDICT);
	g_variant_builder_add (&opts, "{sv}", "Role", g_variant_new_string ("client"));
	g_variant_builder_add (&opts, "{sv}", "Name", g_variant_new_string ("bgsync"));
	g_variant_builder_add (&opts, "{sv}", "AutoConnect", g_variant_new_boolean (FALSE));
	reg->refs++;
	g_dbus_connection_call (conn, "org.bluez", "/org/bluez", PROFILE_MANAGER_IFACE,
				"RegisterProfile",
				g_variant_new ("(osa{sv})", reg->path, uuid, &opts), NULL,
				G_DBUS_CALL_FLAGS_NO_AUTO_START, -1, NULL, register_profile_cb, reg);
	return reg;
}

static void
reg_add_transport (BgsRfcommTransport *self, GError **error)
{
	GDBusConnection *conn;

	if (self->reg != NULL && !self->reg->failed && !self->reg->released)
		return;
	if (self->reg != NULL) {
		self->reg->transports = g_list_remove (self->reg->transports, self);
		g_clear_pointer (&self->reg, reg_unref);
	}
	conn = g_dbus_object_manager_client_get_connection (G_DBUS_OBJECT_MANAGER_CLIENT (self->manager));
	self->reg = reg_get (conn, self->uuid, error);
	if (self->reg != NULL)
		self->reg->transports = g_list_prepend (self->reg->transports, self);
}

static void
reg_remove_transport (BgsRfcommTransport *self)
{
	if (self->reg == NULL)
		return;
	self->reg->transports = g_list_remove (self->reg->transports, self);
	g_clear_pointer (&self->reg, reg_unref);
}

/* ---- link teardown -------------------------------------------------------- */

static void
release_link (BgsRfcommTransport *self)
{
	if (self->cancellable != NULL) {
		g_cancellable_cancel (self->cancellable);
		g_clear_object (&self->cancellable);
	}
	if (self->read_source != NULL) {
		g_source_destroy (self->read_source);
		g_clear_pointer (&self->read_source, g_source_unref);
	}
	if (self->write_source != NULL) {
		g_source_destroy (self->write_source);
		g_clear_pointer (&self->write_source, g_source_unref);
	}
	/* closing the socket is what ends the RFCOMM channel in bluetoothd */
	if (self->fd >= 0)
		close (self->fd);
	self->fd = -1;
	if (self->device_changed_id != 0)
		g_signal_handler_disconnect (self->device, self->device_changed_id);
	self->device_changed_id = 0;
	g_clear_object (&self->device);
	self->connected = FALSE;
}

static void
clear_queue (BgsRfcommTransport *self)
{
	g_queue_clear_full (self->out, (GDestroyNotify) g_bytes_unref);
	self->out_offset = 0;
	self->out_bytes = 0;
}

static void
link_down (BgsRfcommTransport *self, const GError *error)
{
	g_autoptr(GError) local = NULL;

	if (!self->connected)
		return;
	if (error == NULL)
		error = local = g_error_new_literal (BGS_ERROR, BGS_ERROR_IO, "the link to the device dropped");
	g_debug ("%s: RFCOMM %s down: %s", self->device_path, self->uuid, error->message);
	g_object_ref (self);
	release_link (self);
	/* bytes not yet on the air are stale after a reconnect: the profile
	 * resumes from what the device reports */
	clear_queue (self);
	bgs_transport_emit_disconnected (BGS_TRANSPORT (self), error);
	g_object_unref (self);
}

/* ---- receive ----------------------------------------------------------------- */

static gboolean
readable_cb (int fd, GIOCondition cond, gpointer user_data)
{
	BgsRfcommTransport *self = user_data;
	g_autofree guint8 *buf = g_malloc (self->payload_size);
	gssize n;

	/* read even on HUP: what the device sent before hanging up counts */
	n = recv (fd, buf, self->payload_size, MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return G_SOURCE_CONTINUE;
	if (n <= 0) {
		g_autoptr(GError) e = n < 0 ? g_error_new (BGS_ERROR, BGS_ERROR_IO,
							   "RFCOMM read failed: %s", g_strerror (errno))
					    : NULL;
		g_clear_pointer (&self->read_source, g_source_unref);
		link_down (self, e);
		return G_SOURCE_REMOVE;
	}
	{
		g_autoptr(GBytes) packet = g_bytes_new (buf, n);
		gboolean alive;

		g_object_ref (self);
		bgs_transport_emit_packet (BGS_TRANSPORT (self), packet);
		/* the handler may have closed us */
		alive = self->read_source != NULL;
		g_object_unref (self);
		return alive ? G_SOURCE_CONTINUE : G_SOURCE_REMOVE;
	}
}

static void
device_changed_cb (GDBusProxy *proxy, GVariant *changed, const char *const *invalidated,
		   gpointer user_data)
{
	BgsRfcommTransport *self = user_data;
	gboolean connected = TRUE;

	if (g_variant_lookup (changed, "Connected", "b", &connected) && !connected)
		link_down (self, NULL);
}

/* ---- send ---------------------------------------------------------------------- */

static gboolean
writable_cb (int fd, GIOCondition cond, gpointer user_data)
{
	BgsRfcommTransport *self = user_data;

	g_clear_pointer (&self->write_source, g_source_unref);
	/* a hangup is the reader's to report, after it drained what came in */
	if (cond & G_IO_OUT)
		flush_out (self);
	return G_SOURCE_REMOVE;
}

static void
flush_out (BgsRfcommTransport *self)
{
	g_object_ref (self);
	while (self->connected && !g_queue_is_empty (self->out)) {
		GBytes *packet = g_queue_peek_head (self->out);
		gsize len = 0;
		const guint8 *data = g_bytes_get_data (packet, &len);
		gssize n;

		n = send (self->fd, data + self->out_offset, len - self->out_offset,
			  MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS ||
			      errno == EINTR)) {
			/* back-pressure: wait for room, never spin or drop */
			if (self->write_source == NULL) {
				self->write_source = g_unix_fd_source_new (self->fd, G_IO_OUT | G_IO_ERR | G_IO_HUP);
				g_source_set_callback (self->write_source, G_SOURCE_FUNC (writable_cb), self, NULL);
				g_source_attach (self->write_source, NULL);
			}
			break;
		}
		if (n < 0) {
			g_autoptr(GError) e = g_error_new (BGS_ERROR, BGS_ERROR_IO, "RFCOMM write failed: %s",
							   g_strerror (errno));
			link_down (self, e);
			break;
		}
		self->out_offset += n;
		self->out_bytes -= n;
		if (self->out_offset == len) {
			g_bytes_unref (g_queue_pop_head (self->out));
			self->out_offset = 0;
		}
		bgs_transport_emit_sent (BGS_TRANSPORT (self), n);
	}
	g_object_unref (self);
}

static gboolean
rfcomm_send (BgsTransport *transport, GBytes *packet, GError **error)
{
	BgsRfcommTransport *self = BGS_RFCOMM_TRANSPORT (transport);
	gsize len = g_bytes_get_size (packet);

	if (!self->connected) {
		g_set_error_literal (error, BGS_ERROR, BGS_ERROR_IO, "not connected to the device");
		return FALSE;
	}
	if (self->out_bytes + len > MAX_QUEUED_BYTES) {
		g_set_error_literal (error, BGS_ERROR, BGS_ERROR_BUSY, "the link's send queue is full");
		return FALSE;
	}
	if (len == 0)
		return TRUE;
	g_queue_push_tail (self->out, g_bytes_ref (packet));
	self->out_bytes += len;
	/* something already waits for room: keep the order, the watch flushes */
	if (self->write_source == NULL)
		flush_out (self);
	return TRUE;
}

static guint
rfcomm_get_payload_size (BgsTransport *transport)
{
	return BGS_RFCOMM_TRANSPORT (transport)->payload_size;
}

static void
rfcomm_close (BgsTransport *transport)
{
	BgsRfcommTransport *self = BGS_RFCOMM_TRANSPORT (transport);

	if (self->connect_task != NULL)
		connect_fail (self->connect_task, g_error_new_literal (BGS_ERROR, BGS_ERROR_CANCELED,
									"the transport was closed"));
	release_link (self);
	clear_queue (self);
	reg_remove_transport (self);
}

/* ---- connect ------------------------------------------------------------------- */

typedef struct {
	BgsRfcommTransport *self;
	guint timeout_id;
	guint retry_id;
	GCancellable *caller;   /* the caller's cancellable */
	gulong cancel_id;
	gboolean done;
	gboolean stale_reset;   /* DisconnectProfile tried for a connection we never got */
} ConnectOp;

static void
connect_detach (ConnectOp *op)
{
	g_clear_handle_id (&op->timeout_id, g_source_remove);
	g_clear_handle_id (&op->retry_id, g_source_remove);
	if (op->cancel_id != 0)
		g_cancellable_disconnect (op->caller, op->cancel_id);
	op->cancel_id = 0;
	g_clear_object (&op->caller);
}

static void
connect_op_free (ConnectOp *op)
{
	connect_detach (op);
	g_object_unref (op->self);
	g_free (op);
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
	if (op->self->connect_task == task)
		op->self->connect_task = NULL;
	release_link (op->self);
	g_task_return_error (task, error);
	g_object_unref (task);
}

static void
connect_succeed (GTask *task)
{
	ConnectOp *op = g_task_get_task_data (task);
	BgsRfcommTransport *self = op->self;

	if (op->done)
		return;
	op->done = TRUE;
	connect_detach (op);
	self->connect_task = NULL;
	self->connected = TRUE;
	self->device_changed_id = g_signal_connect (self->device, "g-properties-changed",
						    G_CALLBACK (device_changed_cb), self);
	self->read_source = g_unix_fd_source_new (self->fd, G_IO_IN | G_IO_HUP | G_IO_ERR);
	g_source_set_callback (self->read_source, G_SOURCE_FUNC (readable_cb), self, NULL);
	g_source_attach (self->read_source, NULL);
	g_debug ("%s: RFCOMM %s up after %u attempt(s)", self->device_path, self->uuid,
		 self->attempts);
	g_task_return_boolean (task, TRUE);
	g_object_unref (task);
}

static gboolean
retry_cb (gpointer user_data)
{
	GTask *task = user_data;
	ConnectOp *op = g_task_get_task_data (task);

	op->retry_id = 0;
	connect_profile (task);
	return G_SOURCE_REMOVE;
}

/* another transport of this process holds a session of this profile with
 * the device: bluetoothd answers ConnectProfile with success and no new
 * connection then (5.66), so asking would only wait for the timeout */
static BgsRfcommTransport *
reg_find_other_session (BgsRfcommTransport *self)
{
	for (GList *l = self->reg != NULL ? self->reg->transports : NULL; l != NULL; l = l->next) {
		BgsRfcommTransport *t = l->data;

		if (t != self && t->fd >= 0 && g_strcmp0 (t->device_path, self->device_path) == 0)
			return t;
	}
	return NULL;
}

static void
stale_disconnected_cb (GObject *source, GAsyncResult *res, gpointer user_data)
{
	g_autoptr(GTask) task = user_data;
	ConnectOp *op = g_task_get_task_data (task);
	g_autoptr(GVariant) reply = NULL;
	g_autoptr(GError) error = NULL;

	reply = g_dbus_connection_call_finish (G_DBUS_CONNECTION (source), res, &error);
	if (op->done)
		return;
	if (reply == NULL)
		g_debug ("DisconnectProfile %s: %s", op->self->uuid, error->message);
	connect_profile (task);
}

/* ConnectProfile said yes but no NewConnection came: bluetoothd believes
 * the profile connected (a session nobody here holds). Disconnect it once
 * and connect again; if that happens twice, give up */
static gboolean
stale_cb (gpointer user_data)
{
	GTask *task = user_data;
	ConnectOp *op = g_task_get_task_data (task);
	BgsRfcommTransport *self = op->self;

	op->retry_id = 0;
	if (op->done || self->fd >= 0)
		return G_SOURCE_REMOVE;
	if (op->stale_reset) {
		connect_fail (task, g_error_new (BGS_ERROR, BGS_ERROR_BUSY,
						 "BlueZ reports the RFCOMM profile %s connected but hands over "
						 "no connection", self->uuid));
		return G_SOURCE_REMOVE;
	}
	op->stale_reset = TRUE;
	g_info ("%s: ConnectProfile %s succeeded without a connection: disconnecting the stale one",
		self->device_path, self->uuid);
	g_dbus_connection_call (g_dbus_proxy_get_connection (self->device),
				g_dbus_proxy_get_name (self->device), self->device_path, DEVICE_IFACE,
				"DisconnectProfile", g_variant_new ("(s)", self->uuid), NULL,
				G_DBUS_CALL_FLAGS_NO_AUTO_START, 10000, self->cancellable,
				stale_disconnected_cb, g_object_ref (task));
	return G_SOURCE_REMOVE;
}

static gboolean
retriable (const char *remote, const char *message)
{
	/* deterministic answers: the device has no such profile */
	if (strstr (message, "profile-unavailable") != NULL ||
	    strstr (message, "not-supported") != NULL)
		return FALSE;
	return g_strcmp0 (remote, "org.bluez.Error.Failed") == 0 ||
	       g_strcmp0 (remote, "org.bluez.Error.InProgress") == 0 ||
	       strstr (message, "br-connection-") != NULL;
}

static void
connect_profile_cb (GObject *source, GAsyncResult *res, gpointer user_data)
{
	g_autoptr(GTask) task = user_data;
	ConnectOp *op = g_task_get_task_data (task);
	BgsRfcommTransport *self = op->self;
	g_autoptr(GVariant) reply = NULL;
	g_autoptr(GError) error = NULL;
	g_autofree char *remote = NULL;

	reply = g_dbus_connection_call_finish (G_DBUS_CONNECTION (source), res, &error);
	if (op->done)
		return;
	if (reply != NULL || self->fd >= 0) {
		/* NewConnection normally comes first; if not, it may be on its way */
		if (self->fd >= 0)
			connect_succeed (task);
		else
			op->retry_id = g_timeout_add (STALE_GRACE_MS, stale_cb, task);
		return;
	}
	remote = g_dbus_error_get_remote_error (error);
	g_dbus_error_strip_remote_error (error);
	if (g_strcmp0 (remote, "org.bluez.Error.AlreadyConnected") == 0) {
		connect_fail (task, g_error_new (BGS_ERROR, BGS_ERROR_BUSY,
						 "the RFCOMM profile %s is already connected to the device",
						 self->uuid));
		return;
	}
	if (retriable (remote, error->message) && self->attempts <= CONNECT_RETRIES) {
		g_debug ("%s: ConnectProfile %s attempt %u failed (%s): retrying", self->device_path,
			 self->uuid, self->attempts, error->message);
		op->retry_id = g_timeout_add (RETRY_BACKOFF_MS * self->attempts, retry_cb, task);
		return;
	}
	if (g_strcmp0 (remote, "org.bluez.Error.InvalidArguments") == 0 ||
	    g_strcmp0 (remote, "org.bluez.Error.NotAvailable") == 0 ||
	    g_strcmp0 (remote, "org.bluez.Error.NotSupported") == 0 ||
	    g_strcmp0 (remote, "org.bluez.Error.DoesNotExist") == 0 ||
	    strstr (error->message, "profile-unavailable") != NULL) {
		connect_fail (task, g_error_new (BGS_ERROR, BGS_ERROR_NOT_SUPPORTED,
						 "the device does not offer the RFCOMM profile %s (%s)",
						 self->uuid, error->message));
		return;
	}
	if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT)) {
		connect_fail (task, g_error_new (BGS_ERROR, BGS_ERROR_TIMED_OUT,
						 "timed out connecting the RFCOMM profile %s", self->uuid));
		return;
	}
	connect_fail (task, g_error_new (BGS_ERROR, BGS_ERROR_IO,
					 "cannot connect the RFCOMM profile %s: %s (after %u attempts)",
					 self->uuid, error->message, self->attempts));
}

static void
connect_profile (GTask *task)
{
	ConnectOp *op = g_task_get_task_data (task);
	BgsRfcommTransport *self = op->self;

	if (op->done)
		return;
	self->attempts++;
	/* the SDP lookup of the remote channel by UUID is bluetoothd's part of
	 * ConnectProfile: it hands us a connected socket in NewConnection */
	g_dbus_connection_call (g_dbus_proxy_get_connection (self->device),
				g_dbus_proxy_get_name (self->device), self->device_path, DEVICE_IFACE,
				"ConnectProfile", g_variant_new ("(s)", self->uuid), NULL,
				G_DBUS_CALL_FLAGS_NO_AUTO_START,
				(gint) (self->connect_timeout / 1000), self->cancellable,
				connect_profile_cb, g_object_ref (task));
}

static gboolean
connect_timeout_cb (gpointer user_data)
{
	GTask *task = user_data;
	ConnectOp *op = g_task_get_task_data (task);

	op->timeout_id = 0;
	connect_fail (task, g_error_new (BGS_ERROR, BGS_ERROR_TIMED_OUT,
					 "timed out connecting the RFCOMM profile %s", op->self->uuid));
	return G_SOURCE_REMOVE;
}

static void
connect_start (BgsRfcommTransport *self, GTask *task)
{
	ConnectOp *op = g_new0 (ConnectOp, 1);
	g_autoptr(GError) error = NULL;
	GDBusInterface *iface;

	op->self = g_object_ref (self);
	g_task_set_task_data (task, op, (GDestroyNotify) connect_op_free);
	if (self->connect_task != NULL)
		connect_fail (self->connect_task, g_error_new_literal (BGS_ERROR, BGS_ERROR_CANCELED,
									"superseded by a new connect"));
	release_link (self);
	clear_queue (self);
	self->cancellable = g_cancellable_new ();
	self->attempts = 0;
	self->connect_task = task;
	iface = g_dbus_object_manager_get_interface (self->manager, self->device_path, DEVICE_IFACE);
	if (iface == NULL) {
		connect_fail (task, g_error_new (BGS_ERROR, BGS_ERROR_NOT_FOUND,
						 "BlueZ has no device %s", self->device_path));
		return;
	}
	self->device = G_DBUS_PROXY (iface);
	reg_add_transport (self, &error);
	if (self->reg == NULL) {
		connect_fail (task, g_error_new (BGS_ERROR, BGS_ERROR_FAILED,
						 "cannot export the RFCOMM profile: %s", error->message));
		return;
	}
	op->timeout_id = g_timeout_add_full (G_PRIORITY_DEFAULT,
					     (guint) (self->connect_timeout / 1000),
					     connect_timeout_cb, task, NULL);
	if (reg_find_other_session (self) != NULL) {
		connect_fail (task, g_error_new (BGS_ERROR, BGS_ERROR_BUSY,
						 "the RFCOMM profile %s is already connected to the device "
						 "by another session", self->uuid));
		return;
	}
	if (self->reg->registered)
		connect_profile (task);
	else
		self->reg->waiters = g_list_append (self->reg->waiters, g_object_ref (task));
}

static gboolean
caller_cancelled_idle (gpointer user_data)
{
	GTask *task = user_data;
	ConnectOp *op = g_task_get_task_data (task);

	if (!op->done)
		connect_fail (task, g_error_new_literal (G_IO_ERROR, G_IO_ERROR_CANCELLED,
							 "the connect was cancelled"));
	g_object_unref (task);
	return G_SOURCE_REMOVE;
}

static void
caller_cancelled_cb (GCancellable *cancellable, gpointer user_data)
{
	/* disconnecting from inside the handler would deadlock: fail from an idle */
	g_idle_add (caller_cancelled_idle, g_object_ref (user_data));
}

/* connect, abandoning it (closing whatever came of it) when @cancellable fires */
static void
connect_run (BgsRfcommTransport *self, GTask *task, GCancellable *cancellable)
{
	ConnectOp *op;

	g_object_ref (task);
	connect_start (self, task);
	op = g_task_get_task_data (task);
	if (!op->done && cancellable != NULL) {
		op->caller = g_object_ref (cancellable);
		op->cancel_id = g_cancellable_connect (cancellable, G_CALLBACK (caller_cancelled_cb),
						       task, NULL);
	}
	g_object_unref (task);
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
bgs_rfcomm_transport_open_async (GDBusObjectManager *manager, const char *device_path,
				 const BgsRfcommTransportOptions *options, GCancellable *cancellable,
				 GAsyncReadyCallback callback, gpointer user_data)
{
	g_autoptr(BgsRfcommTransport) self = NULL;
	GTask *outer = g_task_new (NULL, cancellable, callback, user_data);
	g_autofree char *uuid = uuid_normalize (options->uuid);
	GTask *task;

	if (uuid == NULL) {
		g_task_return_new_error (outer, BGS_ERROR, BGS_ERROR_INVALID_ARGS,
					 "not a UUID: %s", options->uuid != NULL ? options->uuid : "(none)");
		g_object_unref (outer);
		return;
	}
	if (!G_IS_DBUS_OBJECT_MANAGER_CLIENT (manager)) {
		g_task_return_new_error (outer, BGS_ERROR, BGS_ERROR_INVALID_ARGS,
					 "RFCOMM needs an object manager client on org.bluez");
		g_object_unref (outer);
		return;
	}
	self = g_object_new (BGS_TYPE_RFCOMM_TRANSPORT, NULL);
	self->manager = g_object_ref (manager);
	self->device_path = g_strdup (device_path);
	self->uuid = g_steal_pointer (&uuid);
	self->connect_timeout = options->connect_timeout > 0 ? options->connect_timeout
							      : DEFAULT_CONNECT_TIMEOUT;
	self->payload_size = options->payload_size > 0 ? MIN (options->payload_size, MAX_PAYLOAD)
						       : DEFAULT_PAYLOAD;
	task = g_task_new (self, NULL, open_done_cb, outer);
	connect_run (self, task, cancellable);
}

BgsRfcommTransport *
bgs_rfcomm_transport_open_finish (GAsyncResult *res, GError **error)
{
	return g_task_propagate_pointer (G_TASK (res), error);
}

static void
rfcomm_reconnect (BgsTransport *transport, const char *device_path, GCancellable *cancellable,
		  GTask *task)
{
	BgsRfcommTransport *self = BGS_RFCOMM_TRANSPORT (transport);

	g_free (self->device_path);
	self->device_path = g_strdup (device_path);
	connect_run (self, task, cancellable);
}

void
bgs_rfcomm_transport_reconnect_async (BgsRfcommTransport *self, const char *device_path,
				      GCancellable *cancellable, GAsyncReadyCallback callback,
				      gpointer user_data)
{
	bgs_transport_reconnect_async (BGS_TRANSPORT (self), device_path, cancellable, callback,
				       user_data);
}

gboolean
bgs_rfcomm_transport_reconnect_finish (BgsRfcommTransport *self, GAsyncResult *res, GError **error)
{
	return bgs_transport_reconnect_finish (BGS_TRANSPORT (self), res, error);
}

const char *
bgs_rfcomm_transport_get_device_path (BgsRfcommTransport *self)
{
	return self->device_path;
}

const char *
bgs_rfcomm_transport_get_uuid (BgsRfcommTransport *self)
{
	return self->uuid;
}

guint
bgs_rfcomm_transport_get_connect_attempts (BgsRfcommTransport *self)
{
	return self->attempts;
}

static void
bgs_rfcomm_transport_finalize (GObject *object)
{
	BgsRfcommTransport *self = BGS_RFCOMM_TRANSPORT (object);

	release_link (self);
	reg_remove_transport (self);
	g_queue_free_full (self->out, (GDestroyNotify) g_bytes_unref);
	g_clear_object (&self->manager);
	g_free (self->device_path);
	g_free (self->uuid);
	G_OBJECT_CLASS (bgs_rfcomm_transport_parent_class)->finalize (object);
}

static void
bgs_rfcomm_transport_class_init (BgsRfcommTransportClass *klass)
{
	BgsTransportClass *transport_class = BGS_TRANSPORT_CLASS (klass);

	G_OBJECT_CLASS (klass)->finalize = bgs_rfcomm_transport_finalize;
	transport_class->send = rfcomm_send;
	transport_class->get_payload_size = rfcomm_get_payload_size;
	transport_class->close = rfcomm_close;
	transport_class->reconnect = rfcomm_reconnect;
}

static void
bgs_rfcomm_transport_init (BgsRfcommTransport *self)
{
	self->fd = -1;
	self->payload_size = DEFAULT_PAYLOAD;
	self->out = g_queue_new ();
}

guint
bgs_rfcomm_transport_count_registrations (void)
{
	return registrations != NULL ? g_hash_table_size (registrations) : 0;
}
