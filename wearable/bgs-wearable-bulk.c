/* bgs-wearable-bulk.c: the wearable's RFCOMM "bulk" service (server role)
 *
 * ProfileManager1.RegisterProfile (doc/org.bluez.ProfileManager.rst) with
 * Role "server", an explicit Channel and a ServiceRecord, and Profile1
 * (doc/org.bluez.Profile.rst): NewConnection hands us the connected RFCOMM
 * socket, served here without blocking: frames in, replies out, paced by
 * the socket (a slow link never grows our buffers without bound). */
#include "config.h"

#include "bgs-wearable-bulk.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <gio/gunixfdlist.h>
#include <glib-unix.h>

#define BLUEZ "org.bluez"
#define PROFILE_PATH "/org/bgsync/wearable/bulk"
#define READ_CHUNK 65536
#define SOURCE_CHUNK 16384
/* stop reading while this much waits for the link; read again below LOW */
#define OUT_HIGH (1024 * 1024)
#define OUT_LOW (256 * 1024)
#define RESET_DELAY_MS 250

static const char profile_xml[] =
	"<node><interface name='org.bluez.Profile1'>"
	" <method name='Release'/>"
	" <method name='NewConnection'><arg name='device' type='o'/><arg name='fd' type='h'/>"
	"  <arg name='fd_properties' type='a{sv}'/></method>"
	" <method name='RequestDisconnection'><arg name='device' type='o'/></method>"
	"</interface></node>";

/* the record bluetoothd publishes: the central's UUID on our channel */
static const char record_fmt[] =
	"<?xml version=\"1.0\" encoding=\"UTF-8\" ?>"
	"<record>"
	" <attribute id=\"0x0001\"><sequence><uuid value=\"%s\" /></sequence></attribute>"
	" <attribute id=\"0x0004\"><sequence>"
	"  <sequence><uuid value=\"0x0100\" /></sequence>"
	"  <sequence><uuid value=\"0x0003\" /><uint8 value=\"0x%02x\" /></sequence>"
	" </sequence></attribute>"
	" <attribute id=\"0x0100\"><text value=\"bgsync-wearable bulk\" /></attribute>"
	"</record>";

typedef struct {
	BgsWearableBulk *bulk;
	char *device;
	int fd;
	GSource *in_src;
	GSource *out_src;
	GByteArray *in;   /* bytes not yet parsed into frames */
	GByteArray *out;  /* bytes not yet on the link, from out_off */
	gsize out_off;
	guint64 sink_count;
	GChecksum *sink_sum;
	gboolean source_active;
	guint64 source_left;
	guint64 source_pos;
	guint32 source_seed;
	GChecksum *source_sum;
	gboolean closed;
	guint refs;
} BulkConn;

struct _BgsWearableBulk {
	GDBusConnection *bus;
	guint channel;
	guint object_id;
	char *bluez_owner;
	gboolean registered;
	gboolean registering;
	gboolean wanted;     /* on the air: registered, or about to be */
	GList *conns;
	guint boots;
	guint reset_id;
	BgsWearableBulkResetFunc reset;
	gpointer reset_data;
};

static void conn_flush (BulkConn *c);

static void
conn_unref (BulkConn *c)
{
	if (--c->refs > 0)
		return;
	g_byte_array_unref (c->in);
	g_byte_array_unref (c->out);
	g_checksum_free (c->sink_sum);
	g_clear_pointer (&c->source_sum, g_checksum_free);
	g_free (c->device);
	g_free (c);
}

static void
conn_close (BulkConn *c, const char *why)
{
	BgsWearableBulk *b = c->bulk;

	if (c->closed)
		return;
	c->closed = TRUE;
	g_info ("bulk connection from %s closed: %s", c->device, why);
	if (c->in_src != NULL) {
		g_source_destroy (c->in_src);
		g_clear_pointer (&c->in_src, g_source_unref);
	}
	if (c->out_src != NULL) {
		g_source_destroy (c->out_src);
		g_clear_pointer (&c->out_src, g_source_unref);
	}
	if (c->fd >= 0)
		close (c->fd);
	c->fd = -1;
	b->conns = g_list_remove (b->conns, c);
	conn_unref (c);
}

static void
close_all (BgsWearableBulk *b, const char *why)
{
	while (b->conns != NULL)
		conn_close (b->conns->data, why);
}

static gsize
out_pending (BulkConn *c)
{
	return c->out->len - c->out_off;
}

static void
conn_queue (BulkConn *c, guint8 op, const void *data, gsize len)
{
	guint8 hdr[BGS_BULK_HEADER] = { op, 0, 0, 0 };
	guint32 be = GUINT32_TO_BE ((guint32) len);

	memcpy (hdr + 4, &be, 4);
	g_byte_array_append (c->out, hdr, sizeof hdr);
	if (len > 0)
		g_byte_array_append (c->out, data, len);
}

static void
conn_queue_text (BulkConn *c, guint8 op, const char *text)
{
	conn_queue (c, op, text, strlen (text));
}

static void
conn_queue_digest (BulkConn *c, guint8 op, guint64 count, GChecksum *sum)
{
	guint8 payload[8 + 32];
	guint64 be = GUINT64_TO_BE (count);
	gsize dlen = 32;

	memcpy (payload, &be, 8);
	g_checksum_get_digest (sum, payload + 8, &dlen);
	conn_queue (c, op, payload, sizeof payload);
}

/* tops the send buffer up with the pattern the central asked for */
static void
source_fill (BulkConn *c)
{
	guint8 chunk[SOURCE_CHUNK];

	while (c->source_active && out_pending (c) < OUT_LOW) {
		gsize n = (gsize) MIN (c->source_left, (guint64) SOURCE_CHUNK);

		if (n == 0) {
			conn_queue_digest (c, BGS_BULK_OP_SOURCE_END | BGS_BULK_REPLY, c->source_pos,
					   c->source_sum);
			g_clear_pointer (&c->source_sum, g_checksum_free);
			c->source_active = FALSE;
			break;
		}
		for (gsize i = 0; i < n; i++)
			chunk[i] = bgs_bulk_pattern (c->source_pos + i, c->source_seed);
		g_checksum_update (c->source_sum, chunk, n);
		conn_queue (c, BGS_BULK_OP_SOURCE | BGS_BULK_REPLY, chunk, n);
		c->source_pos += n;
		c->source_left -= n;
	}
}

static gboolean in_cb (int fd, GIOCondition cond, gpointer user_data);

static void
watch_in (BulkConn *c)
{
	if (c->closed || c->in_src != NULL)
		return;
	c->in_src = g_unix_fd_source_new (c->fd, G_IO_IN | G_IO_HUP | G_IO_ERR);
	g_source_set_callback (c->in_src, G_SOURCE_FUNC (in_cb), c, NULL);
	g_source_attach (c->in_src, NULL);
}

static gboolean
out_cb (int fd, GIOCondition cond, gpointer user_data)
{
	BulkConn *c = user_data;

	g_clear_pointer (&c->out_src, g_source_unref);
	conn_flush (c);
	return G_SOURCE_REMOVE;
}

static void
conn_flush (BulkConn *c)
{
	c->refs++;
	while (!c->closed) {
		gssize n;

		source_fill (c);
		if (out_pending (c) == 0)
			break;
		n = send (c->fd, c->out->data + c->out_off, out_pending (c), MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS)) {
			if (c->out_src == NULL) {
				c->out_src = g_unix_fd_source_new (c->fd, G_IO_OUT | G_IO_ERR | G_IO_HUP);
				g_source_set_callback (c->out_src, G_SOURCE_FUNC (out_cb), c, NULL);
				g_source_attach (c->out_src, NULL);
			}
			break;
		}
		if (n <= 0) {
			conn_close (c, g_strerror (errno));
			break;
		}
		c->out_off += n;
		if (c->out_off == c->out->len) {
			g_byte_array_set_size (c->out, 0);
			c->out_off = 0;
		} else if (c->out_off > OUT_HIGH) {
			g_byte_array_remove_range (c->out, 0, c->out_off);
			c->out_off = 0;
		}
	}
	/* room again: take more requests */
	if (!c->closed && out_pending (c) < OUT_LOW)
		watch_in (c);
	conn_unref (c);
}

static gboolean
reset_cb (gpointer user_data)
{
	BgsWearableBulk *b = user_data;

	b->reset_id = 0;
	if (b->reset != NULL)
		b->reset (b->reset_data);
	return G_SOURCE_REMOVE;
}

BgsBulkParse
bgs_bulk_frame_parse (const guint8 *data, gsize len, BgsBulkFrame *frame)
{
	guint32 plen;

	if (len < BGS_BULK_HEADER)
		return BGS_BULK_NEED_MORE;
	memcpy (&plen, data + 4, 4);
	plen = GUINT32_FROM_BE (plen);
	if (plen > BGS_BULK_MAX_PAYLOAD || data[1] != 0)
		return BGS_BULK_MALFORMED;
	if (len - BGS_BULK_HEADER < plen)
		return BGS_BULK_NEED_MORE;
	frame->op = data[0];
	frame->payload = data + BGS_BULK_HEADER;
	frame->len = plen;
	frame->size = BGS_BULK_HEADER + (gsize) plen;
	return BGS_BULK_FRAME;
}

gboolean
bgs_bulk_source_parse (const guint8 *payload, gsize len, guint32 *size, guint32 *seed,
		       const char **why)
{
	guint32 s, d;

	if (len != 8) {
		*why = "source takes u32 bytes, u32 seed";
		return FALSE;
	}
	memcpy (&s, payload, 4);
	memcpy (&d, payload + 4, 4);
	s = GUINT32_FROM_BE (s);
	d = GUINT32_FROM_BE (d);
	if (s > BGS_BULK_MAX_SOURCE) {
		*why = "source too large";
		return FALSE;
	}
	*size = s;
	*seed = d;
	return TRUE;
}

static void
handle_frame (BulkConn *c, guint8 op, const guint8 *p, gsize len)
{
	BgsWearableBulk *b = c->bulk;

	switch (op) {
	case BGS_BULK_OP_ECHO:
		conn_queue (c, op | BGS_BULK_REPLY, p, len);
		break;
	case BGS_BULK_OP_SINK:
		g_checksum_update (c->sink_sum, p, len);
		c->sink_count += len;
		break;
	case BGS_BULK_OP_SINK_END:
		conn_queue_digest (c, op | BGS_BULK_REPLY, c->sink_count, c->sink_sum);
		g_checksum_reset (c->sink_sum);
		c->sink_count = 0;
		break;
	case BGS_BULK_OP_SOURCE: {
		guint32 size, seed;
		const char *why = "source busy";

		if (c->source_active || !bgs_bulk_source_parse (p, len, &size, &seed, &why)) {
			conn_queue_text (c, BGS_BULK_OP_ERROR | BGS_BULK_REPLY, why);
			break;
		}
		c->source_active = TRUE;
		c->source_left = size;
		c->source_pos = 0;
		c->source_seed = seed;
		c->source_sum = g_checksum_new (G_CHECKSUM_SHA256);
		break;
	}
	case BGS_BULK_OP_INFO: {
		g_autofree char *text = g_strdup_printf ("boot=%u channel=%u", b->boots, b->channel);

		conn_queue_text (c, op | BGS_BULK_REPLY, text);
		break;
	}
	case BGS_BULK_OP_RESET:
		conn_queue (c, op | BGS_BULK_REPLY, NULL, 0);
		/* answer first, then go down, as the SMP reset does */
		if (b->reset_id == 0)
			b->reset_id = g_timeout_add (RESET_DELAY_MS, reset_cb, b);
		break;
	default:
		conn_queue_text (c, BGS_BULK_OP_ERROR | BGS_BULK_REPLY, "unknown op");
		break;
	}
}

/* parses and answers what came in; FALSE once the connection is closed */
static gboolean
conn_receive (BulkConn *c, const guint8 *buf, gsize n)
{
	gsize used = 0;

	g_byte_array_append (c->in, buf, n);
	for (;;) {
		BgsBulkFrame f;
		BgsBulkParse p = bgs_bulk_frame_parse (c->in->data + used, c->in->len - used, &f);

		if (p == BGS_BULK_MALFORMED) {
			/* no way to find the next frame: hang up */
			conn_close (c, "malformed frame");
			return FALSE;
		}
		if (p == BGS_BULK_NEED_MORE)
			break;
		handle_frame (c, f.op, f.payload, f.len);
		used += f.size;
	}
	g_byte_array_remove_range (c->in, 0, used);
	conn_flush (c);
	return !c->closed;
}

static gboolean
in_cb (int fd, GIOCondition cond, gpointer user_data)
{
	BulkConn *c = user_data;
	g_autofree guint8 *buf = NULL;
	gssize n;
	gboolean alive;

	if (out_pending (c) >= OUT_HIGH) {
		/* the central does not read: stop reading until it does */
		g_clear_pointer (&c->in_src, g_source_unref);
		return G_SOURCE_REMOVE;
	}
	buf = g_malloc (READ_CHUNK);
	n = recv (fd, buf, READ_CHUNK, MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return G_SOURCE_CONTINUE;
	if (n <= 0) {
		conn_close (c, n == 0 ? "hung up" : g_strerror (errno));
		return G_SOURCE_REMOVE;
	}
	c->refs++;
	alive = conn_receive (c, buf, (gsize) n);
	conn_unref (c);
	return alive ? G_SOURCE_CONTINUE : G_SOURCE_REMOVE;
}

static void
new_connection (BgsWearableBulk *b, GVariant *params, GDBusMethodInvocation *inv)
{
	GUnixFDList *fds = g_dbus_message_get_unix_fd_list (g_dbus_method_invocation_get_message (inv));
	const char *device;
	gint32 index;
	g_autoptr(GVariant) props = NULL;
	g_autoptr(GError) error = NULL;
	BulkConn *c;
	int fd;

	g_variant_get (params, "(&oh@a{sv})", &device, &index, &props);
	if (fds == NULL || index < 0 || index >= g_unix_fd_list_get_length (fds) ||
	    (fd = g_unix_fd_list_get (fds, index, &error)) < 0) {
		g_dbus_method_invocation_return_dbus_error (inv, "org.bluez.Error.InvalidArguments",
							    "no file descriptor");
		return;
	}
	if (!b->registered) {
		/* resetting: nobody home */
		close (fd);
		g_dbus_method_invocation_return_dbus_error (inv, "org.bluez.Error.Rejected",
							    "the device is resetting");
		return;
	}
	if (!g_unix_set_fd_nonblocking (fd, TRUE, NULL)) {
		close (fd);
		g_dbus_method_invocation_return_dbus_error (inv, "org.bluez.Error.Failed",
							    "cannot use the socket");
		return;
	}
	c = g_new0 (BulkConn, 1);
	c->bulk = b;
	c->refs = 1;
	c->device = g_strdup (device);
	c->fd = fd;
	c->in = g_byte_array_new ();
	c->out = g_byte_array_new ();
	c->sink_sum = g_checksum_new (G_CHECKSUM_SHA256);
	b->conns = g_list_append (b->conns, c);
	g_info ("bulk connection from %s", device);
	g_dbus_method_invocation_return_value (inv, NULL);
	watch_in (c);
}

static void
profile_call (GDBusConnection *conn, const char *sender, const char *path, const char *iface,
	      const char *method, GVariant *params, GDBusMethodInvocation *inv, gpointer user_data)
{
	BgsWearableBulk *b = user_data;

	/* only bluetoothd hands out connections */
	if (b->bluez_owner == NULL || g_strcmp0 (sender, b->bluez_owner) != 0) {
		g_dbus_method_invocation_return_dbus_error (inv, "org.bluez.Error.Rejected",
							    "not from bluetoothd");
		return;
	}
	if (g_strcmp0 (method, "NewConnection") == 0) {
		new_connection (b, params, inv);
	} else if (g_strcmp0 (method, "RequestDisconnection") == 0) {
		const char *device;
		GList *copy;

		g_variant_get (params, "(&o)", &device);
		g_dbus_method_invocation_return_value (inv, NULL);
		copy = g_list_copy (b->conns);
		for (GList *l = copy; l != NULL; l = l->next) {
			BulkConn *c = l->data;

			if (g_strcmp0 (c->device, device) == 0)
				conn_close (c, "bluetoothd asked");
		}
		g_list_free (copy);
	} else if (g_strcmp0 (method, "Release") == 0) {
		g_info ("bulk profile released by bluetoothd");
		b->registered = FALSE;
		g_dbus_method_invocation_return_value (inv, NULL);
	} else {
		g_dbus_method_invocation_return_dbus_error (inv, "org.freedesktop.DBus.Error.UnknownMethod",
							    "unknown method");
	}
}

static const GDBusInterfaceVTable profile_vtable = { profile_call, NULL, NULL, { 0 } };

BgsWearableBulk *
bgs_wearable_bulk_new (GDBusConnection *bus, guint channel, BgsWearableBulkResetFunc reset,
		       gpointer reset_data, GError **error)
{
	g_autoptr(GDBusNodeInfo) info = g_dbus_node_info_new_for_xml (profile_xml, error);
	BgsWearableBulk *b;

	if (info == NULL)
		return NULL;
	b = g_new0 (BgsWearableBulk, 1);
	b->bus = g_object_ref (bus);
	b->channel = channel;
	b->reset = reset;
	b->reset_data = reset_data;
	b->object_id = g_dbus_connection_register_object (bus, PROFILE_PATH, info->interfaces[0],
							  &profile_vtable, b, NULL, error);
	if (b->object_id == 0) {
		g_object_unref (b->bus);
		g_free (b);
		return NULL;
	}
	return b;
}

static void
registered_cb (GObject *source, GAsyncResult *res, gpointer user_data)
{
	BgsWearableBulk *b = user_data;
	g_autoptr(GError) error = NULL;
	g_autoptr(GVariant) r = g_dbus_connection_call_finish (G_DBUS_CONNECTION (source), res, &error);

	b->registering = FALSE;
	if (r == NULL) {
		g_warning ("RegisterProfile (RFCOMM bulk, channel %u): %s", b->channel, error->message);
		return;
	}
	b->registered = TRUE;
	/* reset while the call was in flight: off the air again */
	if (!b->wanted) {
		bgs_wearable_bulk_unregister (b);
		return;
	}
	g_info ("RFCOMM bulk service %s on channel %u", BGS_BULK_UUID, b->channel);
}

void
bgs_wearable_bulk_register (BgsWearableBulk *b, const char *bluez_owner)
{
	g_autofree char *record = NULL;
	GVariantBuilder opts;

	g_free (b->bluez_owner);
	b->bluez_owner = g_strdup (bluez_owner);
	b->wanted = TRUE;
	if (b->registered || b->registering)
		return;
	record = g_strdup_printf (record_fmt, BGS_BULK_UUID, b->channel);
	g_variant_builder_init (&opts, G_VARIANT_TYPE_VARDICT);
	g_variant_builder_add (&opts, "{sv}", "Name", g_variant_new_string ("bgsync-wearable bulk"));
	g_variant_builder_add (&opts, "{sv}", "Role", g_variant_new_string ("server"));
	/* explicit: with one bluetoothd for both adapters an automatic channel
	 * may collide with the central's own profiles */
	g_variant_builder_add (&opts, "{sv}", "Channel", g_variant_new_uint16 ((guint16) b->channel));
	g_variant_builder_add (&opts, "{sv}", "RequireAuthentication", g_variant_new_boolean (FALSE));
	g_variant_builder_add (&opts, "{sv}", "RequireAuthorization", g_variant_new_boolean (FALSE));
	g_variant_builder_add (&opts, "{sv}", "AutoConnect", g_variant_new_boolean (FALSE));
	g_variant_builder_add (&opts, "{sv}", "ServiceRecord", g_variant_new_string (record));
	b->registering = TRUE;
	g_dbus_connection_call (b->bus, BLUEZ, "/org/bluez", "org.bluez.ProfileManager1",
				"RegisterProfile",
				g_variant_new ("(osa{sv})", PROFILE_PATH, BGS_BULK_SERVER_UUID, &opts),
				NULL, G_DBUS_CALL_FLAGS_NO_AUTO_START, 10000, NULL, registered_cb, b);
}

void
bgs_wearable_bulk_unregister (BgsWearableBulk *b)
{
	g_clear_handle_id (&b->reset_id, g_source_remove);
	b->wanted = FALSE;
	close_all (b, "the device resets");
	if (!b->registered)
		return;
	b->registered = FALSE;
	g_dbus_connection_call (b->bus, BLUEZ, "/org/bluez", "org.bluez.ProfileManager1",
				"UnregisterProfile", g_variant_new ("(o)", PROFILE_PATH), NULL,
				G_DBUS_CALL_FLAGS_NO_AUTO_START, 5000, NULL, NULL, NULL);
}

void
bgs_wearable_bulk_bluez_gone (BgsWearableBulk *b)
{
	close_all (b, "bluetoothd went away");
	b->registered = FALSE;
	b->wanted = FALSE;
	g_clear_pointer (&b->bluez_owner, g_free);
}

void
bgs_wearable_bulk_booted (BgsWearableBulk *b)
{
	b->boots++;
}

guint
bgs_wearable_bulk_count_connections (BgsWearableBulk *b)
{
	return g_list_length (b->conns);
}

void
bgs_wearable_bulk_free (BgsWearableBulk *b)
{
	if (b == NULL)
		return;
	g_clear_handle_id (&b->reset_id, g_source_remove);
	close_all (b, "exiting");
	if (b->registered) {
		g_autoptr(GVariant) r = NULL;

		r = g_dbus_connection_call_sync (b->bus, BLUEZ, "/org/bluez", "org.bluez.ProfileManager1",
						 "UnregisterProfile", g_variant_new ("(o)", PROFILE_PATH),
						 NULL, G_DBUS_CALL_FLAGS_NO_AUTO_START, 2000, NULL, NULL);
	}
	g_dbus_connection_unregister_object (b->bus, b->object_id);
	g_object_unref (b->bus);
	g_free (b->bluez_owner);
	g_free (b);
}
