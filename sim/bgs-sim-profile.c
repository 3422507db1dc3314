/* bgs-sim-profile.c: ProfileManager1 and Profile1 connections; a
 * ConnectProfile pairs the local (client) profile with the peer's server
 * profile, or with an echo service the simulator answers itself, through
 * stream sockets carried over the link */
#include "config.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <glib-unix.h>

#include "bgs-sim.h"

#define BASE_UUID_SUFFIX "-0000-1000-8000-00805f9b34fb"
#define STREAM_CHUNK 4096
#define OUTBUF_MAX (256 * 1024)

typedef struct _SimStream SimStream;
typedef struct {
	SimStream *st;
	gint fd;		/* our end */
	guint src;		/* read watch */
	guint out_src;		/* write watch while outbuf has data */
	GByteArray *outbuf;	/* bytes for this end not yet written */
} SimEnd;

struct _SimStream {
	SimLink *link;
	SimDevice *dev;		/* client view */
	gchar *uuid;
	SimProfile *client;
	SimProfile *server;	/* NULL: the simulator echoes */
	SimEnd c;		/* towards the client app */
	SimEnd s;		/* towards the server app */
	GDBusMethodInvocation *inv;
	gint client_app_fd;
	gint server_app_fd;
	gboolean open;
	gboolean closed;
	guint refs;		/* owner + bytes in flight + calls */
};

static GPtrArray *all_streams;

gchar *
sim_uuid_normalize (const gchar *uuid)
{
	gsize len = strlen (uuid);

	if ((len == 4 || len == 8) && strspn (uuid, "0123456789abcdefABCDEF") == len) {
		g_autofree gchar *l = g_ascii_strdown (uuid, -1);
		return g_strdup_printf ("%s%s%s", len == 4 ? "0000" : "", l, BASE_UUID_SUFFIX);
	}
	if (!g_uuid_string_is_valid (uuid))
		return NULL;
	return g_ascii_strdown (uuid, -1);
}

/* ---- profiles ---- */

static void stream_close (SimStream *st);

static void
profile_free (SimProfile *p)
{
	if (p->watch != 0)
		g_bus_unwatch_name (p->watch);
	g_free (p->owner);
	g_free (p->path);
	g_free (p->uuid);
	g_free (p->role);
	g_free (p->record);
	g_free (p);
}

static void
profile_remove (SimProfile *p)
{
	Sim *sim = p->sim;

	for (guint i = 0; all_streams != NULL && i < all_streams->len; ) {
		SimStream *st = g_ptr_array_index (all_streams, i);
		if (st->client == p || st->server == p)
			stream_close (st);
		else
			i++;
	}
	g_ptr_array_remove (sim->profiles, p);
	profile_free (p);
}

static void
profile_vanished (GDBusConnection *conn, const gchar *name, gpointer data)
{
	profile_remove (data);
}

static void
profile_manager_method (SimIface *iface, const gchar *sender, const gchar *method,
			GVariant *params, GDBusMethodInvocation *inv)
{
	Sim *sim = iface->user_data;
	const gchar *path;

	if (g_strcmp0 (method, "RegisterProfile") == 0) {
		const gchar *uuid_in;
		g_autoptr(GVariant) opts = NULL;
		g_autofree gchar *uuid = NULL;
		SimProfile *p;
		const gchar *s;
		guint16 q;

		g_variant_get (params, "(&o&s@a{sv})", &path, &uuid_in, &opts);
		uuid = sim_uuid_normalize (uuid_in);
		if (uuid == NULL) {
			sim_return_error (inv, "InvalidArguments", "Invalid arguments in method call");
			return;
		}
		for (guint i = 0; i < sim->profiles->len; i++) {
			SimProfile *o = g_ptr_array_index (sim->profiles, i);
			if ((g_strcmp0 (o->owner, sender) == 0 && g_strcmp0 (o->path, path) == 0) ||
			    g_strcmp0 (o->uuid, uuid) == 0) {
				sim_return_error (inv, "AlreadyExists", "Already Exists");
				return;
			}
		}
		p = g_new0 (SimProfile, 1);
		p->sim = sim;
		p->owner = g_strdup (sender);
		p->path = g_strdup (path);
		p->uuid = g_steal_pointer (&uuid);
		if (g_variant_lookup (opts, "Role", "&s", &s)) {
			if (g_strcmp0 (s, "client") != 0 && g_strcmp0 (s, "server") != 0) {
				sim_return_error (inv, "InvalidArguments", "Invalid arguments in method call");
				profile_free (p);
				return;
			}
			p->role = g_strdup (s);
		}
		if (g_variant_lookup (opts, "ServiceRecord", "&s", &s))
			p->record = g_ascii_strdown (s, -1);
		if (g_variant_lookup (opts, "Channel", "q", &q))
			p->channel = q;
		p->watch = g_bus_watch_name_on_connection (sim->conn, sender,
							   G_BUS_NAME_WATCHER_FLAGS_NONE, NULL,
							   profile_vanished, p, NULL);
		g_ptr_array_add (sim->profiles, p);
		g_info ("profile %s registered by %s%s (%s)", p->uuid, sender, path,
			p->role != NULL ? p->role : "client+server");
		g_dbus_method_invocation_return_value (inv, NULL);
	} else if (g_strcmp0 (method, "UnregisterProfile") == 0) {
		g_variant_get (params, "(&o)", &path);
		for (guint i = 0; i < sim->profiles->len; i++) {
			SimProfile *p = g_ptr_array_index (sim->profiles, i);
			if (g_strcmp0 (p->owner, sender) == 0 && g_strcmp0 (p->path, path) == 0) {
				profile_remove (p);
				g_dbus_method_invocation_return_value (inv, NULL);
				return;
			}
		}
		sim_return_error (inv, "DoesNotExist", "Does Not Exist");
	} else {
		sim_return_error (inv, "NotSupported", "Operation is not supported");
	}
}

void
sim_profile_manager_register (Sim *sim, SimObject *root)
{
	sim_object_add_iface (root, "org.bluez.ProfileManager1", profile_manager_method, NULL, sim);
}

/* bluetoothd going down releases every profile */
void
sim_profile_release_all (Sim *sim)
{
	while (sim->profiles->len > 0) {
		SimProfile *p = g_ptr_array_index (sim->profiles, 0);
		g_dbus_connection_call (sim->conn, p->owner, p->path, "org.bluez.Profile1",
					"Release", NULL, NULL, G_DBUS_CALL_FLAGS_NO_AUTO_START,
					-1, NULL, NULL, NULL);
		profile_remove (p);
	}
}

static SimProfile *
find_local (Sim *sim, const gchar *uuid)
{
	for (guint i = 0; i < sim->profiles->len; i++) {
		SimProfile *p = g_ptr_array_index (sim->profiles, i);
		if (g_strcmp0 (p->uuid, uuid) == 0 && g_strcmp0 (p->role, "server") != 0)
			return p;
	}
	return NULL;
}

/* the server that answers @uuid: its own UUID or one its SDP record lists */
static SimProfile *
find_server (Sim *sim, const gchar *uuid, SimProfile *local)
{
	SimProfile *fallback = NULL;
	g_autofree gchar *short_uuid = NULL;

	if (g_str_has_prefix (uuid, "0000") && g_str_has_suffix (uuid, BASE_UUID_SUFFIX))
		short_uuid = g_strndup (uuid + 4, 4);
	for (guint i = 0; i < sim->profiles->len; i++) {
		SimProfile *p = g_ptr_array_index (sim->profiles, i);
		gboolean match;
		if (g_strcmp0 (p->role, "client") == 0)
			continue;
		match = g_strcmp0 (p->uuid, uuid) == 0;
		if (!match && p->record != NULL) {
			g_autofree gchar *pat = g_strdup_printf ("\"%s\"", uuid);
			g_autofree gchar *pat16 = short_uuid != NULL ?
				g_strdup_printf ("\"0x%s\"", short_uuid) : NULL;
			match = strstr (p->record, pat) != NULL ||
				(pat16 != NULL && strstr (p->record, pat16) != NULL);
		}
		if (!match)
			continue;
		if (p != local)
			return p;
		fallback = p;
	}
	return fallback;
}

gboolean
sim_profile_has_remote (SimPeer *peer, const gchar *uuid)
{
	g_autofree gchar *u = sim_uuid_normalize (uuid);

	if (u == NULL)
		return FALSE;
	if (peer->host != NULL)
		return find_server (peer->sim, u, NULL) != NULL;
	for (guint i = 0; peer->rfcomm_echo != NULL && peer->rfcomm_echo[i] != NULL; i++) {
		g_autofree gchar *e = sim_uuid_normalize (peer->rfcomm_echo[i]);
		if (g_strcmp0 (e, u) == 0)
			return TRUE;
	}
	return FALSE;
}

/* ---- streams ---- */

static void end_arm (SimEnd *e);

static SimEnd *
other_end (SimEnd *e)
{
	return e == &e->st->c ? &e->st->s : &e->st->c;
}

/* data read at end @from travels in this queue */
static SimQueue *
queue_from (SimEnd *from)
{
	SimStream *st = from->st;
	gboolean from_client_side = from == &st->c;
	gboolean client_is_central = st->dev == st->link->central;

	return from_client_side == client_is_central ? st->link->up : st->link->down;
}

static void
end_free (SimEnd *e)
{
	g_clear_handle_id (&e->src, g_source_remove);
	g_clear_handle_id (&e->out_src, g_source_remove);
	if (e->fd >= 0)
		close (e->fd);
	e->fd = -1;
	g_clear_pointer (&e->outbuf, g_byte_array_unref);
}

static void
stream_unref (SimStream *st)
{
	if (--st->refs == 0)
		g_free (st);
}

static void
stream_close (SimStream *st)
{
	if (st->closed)
		return;
	st->closed = TRUE;
	g_debug ("profile stream %s closed", st->uuid);
	if (st->link != NULL && !st->link->dead) {
		sim_queue_unwait (st->link->up, &st->c);
		sim_queue_unwait (st->link->down, &st->c);
		sim_queue_unwait (st->link->up, &st->s);
		sim_queue_unwait (st->link->down, &st->s);
	}
	if (st->link != NULL)
		g_ptr_array_remove (st->link->streams, st);
	g_ptr_array_remove (all_streams, st);
	end_free (&st->c);
	end_free (&st->s);
	if (st->client_app_fd >= 0)
		close (st->client_app_fd);
	if (st->server_app_fd >= 0)
		close (st->server_app_fd);
	if (st->inv != NULL) {
		sim_return_error (st->inv, "Failed", "Connection closed");
		g_clear_object (&st->inv);
	}
	g_clear_pointer (&st->uuid, g_free);
	stream_unref (st);
}

typedef struct {
	SimStream *st;
	SimEnd *to;
	GBytes *data;
} SimChunk;

static void
chunk_free (gpointer data)
{
	SimChunk *c = data;

	g_bytes_unref (c->data);
	stream_unref (c->st);
	g_free (c);
}

static gboolean
end_writable (gint fd, GIOCondition cond, gpointer data)
{
	SimEnd *e = data;
	gssize n;

	if (e->outbuf == NULL || e->outbuf->len == 0) {
		e->out_src = 0;
		return G_SOURCE_REMOVE;
	}
	n = send (fd, e->outbuf->data, e->outbuf->len, MSG_NOSIGNAL | MSG_DONTWAIT);
	if (n < 0 && errno != EAGAIN && errno != EINTR) {
		e->out_src = 0;
		stream_close (e->st);
		return G_SOURCE_REMOVE;
	}
	if (n > 0)
		g_byte_array_remove_range (e->outbuf, 0, n);
	if (e->outbuf->len == 0) {
		e->out_src = 0;
		/* room again: the other side may read more */
		end_arm (other_end (e));
		return G_SOURCE_REMOVE;
	}
	return G_SOURCE_CONTINUE;
}

static void
end_write (SimEnd *e, GBytes *data)
{
	gsize len;
	const guint8 *p = g_bytes_get_data (data, &len);
	gssize n = 0;

	if (e->fd < 0 || e->st->closed)
		return;
	if (e->outbuf == NULL || e->outbuf->len == 0) {
		n = send (e->fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && errno != EAGAIN && errno != EINTR) {
			stream_close (e->st);
			return;
		}
		if (n < 0)
			n = 0;
	}
	if ((gsize) n < len) {
		if (e->outbuf == NULL)
			e->outbuf = g_byte_array_new ();
		g_byte_array_append (e->outbuf, p + n, len - n);
		if (e->out_src == 0)
			e->out_src = g_unix_fd_add (e->fd, G_IO_OUT, end_writable, e);
	}
}

static gint chunk_echo_deliver (gpointer data);

static gint
chunk_deliver (gpointer data)
{
	SimChunk *c = data;

	if (!c->st->closed) {
		if (c->to == NULL) {
			/* the simulator's echo service sends it straight back */
			SimChunk *back = g_new0 (SimChunk, 1);
			back->st = c->st;
			c->st->refs++;
			back->to = &c->st->c;
			back->data = g_bytes_ref (c->data);
			sim_queue_push (c->st->dev == c->st->link->central ? c->st->link->down : c->st->link->up,
					g_bytes_get_size (back->data), chunk_echo_deliver, chunk_free, back);
		} else {
			end_write (c->to, c->data);
		}
	}
	chunk_free (c);
	return -1;
}

static gint
chunk_echo_deliver (gpointer data)
{
	SimChunk *c = data;

	if (!c->st->closed)
		end_write (c->to, c->data);
	chunk_free (c);
	return -1;
}

static gboolean end_readable (gint fd, GIOCondition cond, gpointer data);

static gboolean
end_resume (gpointer data)
{
	end_arm (data);
	return G_SOURCE_REMOVE;
}

/* read from @e only while the link and the far end can take more */
static void
end_arm (SimEnd *e)
{
	SimEnd *o;
	SimQueue *q;

	if (e->fd < 0 || e->st->closed || e->src != 0 || !e->st->open)
		return;
	o = other_end (e);
	q = queue_from (e);
	if (o->outbuf != NULL && o->outbuf->len >= OUTBUF_MAX)
		return;	/* end_writable re-arms us */
	if (sim_queue_congested (q)) {
		sim_queue_wait (q, end_resume, e);
		return;
	}
	e->src = g_unix_fd_add (e->fd, G_IO_IN | G_IO_HUP | G_IO_ERR, end_readable, e);
}

static gboolean
end_readable (gint fd, GIOCondition cond, gpointer data)
{
	SimEnd *e = data;
	SimStream *st = e->st;
	SimEnd *o = other_end (e);
	guint8 buf[STREAM_CHUNK];
	gssize n;
	SimChunk *c;
	SimQueue *q = queue_from (e);

	if (sim_queue_congested (q) || (o->outbuf != NULL && o->outbuf->len >= OUTBUF_MAX)) {
		e->src = 0;
		end_arm (e);
		return G_SOURCE_REMOVE;
	}
	n = recv (fd, buf, sizeof buf, MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return G_SOURCE_CONTINUE;
	if (n <= 0) {
		e->src = 0;
		stream_close (st);
		return G_SOURCE_REMOVE;
	}
	c = g_new0 (SimChunk, 1);
	c->st = st;
	st->refs++;
	c->to = st->server == NULL ? NULL : o;
	c->data = g_bytes_new (buf, n);
	sim_queue_push (q, n, chunk_deliver, chunk_free, c);
	return G_SOURCE_CONTINUE;
}

static gboolean
make_stream_pair (gint fds[2])
{
	gint size = 1024 * 1024;

	if (socketpair (AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) < 0)
		return FALSE;
	for (guint i = 0; i < 2; i++) {
		setsockopt (fds[i], SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
		setsockopt (fds[i], SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
	}
	return TRUE;
}

static void
stream_start (SimStream *st)
{
	st->open = TRUE;
	end_arm (&st->c);
	if (st->server != NULL)
		end_arm (&st->s);
}

static void
call_new_connection (SimStream *st, SimProfile *p, const gchar *device, gint *app_fd,
		     GAsyncReadyCallback cb)
{
	g_autoptr(GUnixFDList) list = g_unix_fd_list_new_from_array (app_fd, 1);
	GVariantBuilder b;

	/* the list owns the fd now */
	*app_fd = -1;
	st->refs++;
	g_variant_builder_init (&b, G_VARIANT_TYPE ("a{sv}"));
	g_dbus_connection_call_with_unix_fd_list (st->dev->adapter->sim->conn, p->owner, p->path,
						  "org.bluez.Profile1", "NewConnection",
						  g_variant_new ("(oh@a{sv})", device, 0,
								 g_variant_builder_end (&b)),
						  NULL, G_DBUS_CALL_FLAGS_NONE, 25000, list, NULL,
						  cb, st);
}

static void
client_connected_cb (GObject *source, GAsyncResult *res, gpointer data)
{
	SimStream *st = data;
	g_autoptr(GError) error = NULL;
	g_autoptr(GVariant) ret = g_dbus_connection_call_with_unix_fd_list_finish (
			G_DBUS_CONNECTION (source), NULL, res, &error);

	if (!st->closed && ret == NULL) {
		g_debug ("client NewConnection failed: %s", error->message);
		stream_close (st);
	} else if (!st->closed) {
		g_dbus_method_invocation_return_value (st->inv, NULL);
		g_clear_object (&st->inv);
		stream_start (st);
	}
	stream_unref (st);
}

static void
server_connected_cb (GObject *source, GAsyncResult *res, gpointer data)
{
	SimStream *st = data;
	g_autoptr(GError) error = NULL;
	g_autoptr(GVariant) ret = g_dbus_connection_call_with_unix_fd_list_finish (
			G_DBUS_CONNECTION (source), NULL, res, &error);

	if (!st->closed && ret == NULL) {
		g_debug ("server NewConnection failed: %s", error->message);
		stream_close (st);
	} else if (!st->closed) {
		call_new_connection (st, st->client, st->dev->path, &st->client_app_fd,
				     client_connected_cb);
	}
	stream_unref (st);
}

void
sim_profile_connect (SimDevice *dev, const gchar *uuid_in, GDBusMethodInvocation *inv)
{
	Sim *sim = dev->adapter->sim;
	g_autofree gchar *uuid = sim_uuid_normalize (uuid_in);
	SimLink *link = dev->link;
	SimPeer *peer;
	SimProfile *local, *server = NULL;
	SimStream *st;
	gint cfds[2], sfds[2] = { -1, -1 };
	gboolean echo = FALSE;

	if (uuid == NULL) {
		sim_return_error (inv, "InvalidArguments", "Invalid arguments in method call");
		return;
	}
	if (link == NULL) {
		sim_return_error (inv, "NotConnected", "Not Connected");
		return;
	}
	for (guint i = 0; i < link->streams->len; i++) {
		SimStream *o = g_ptr_array_index (link->streams, i);
		if (o->dev == dev && g_strcmp0 (o->uuid, uuid) == 0) {
			/* bluetoothd 5.66 answers a connected profile with
			 * success and no new connection (seen in the VM tier) */
			if (o->open)
				g_dbus_method_invocation_return_value (inv, NULL);
			else
				sim_return_error (inv, "InProgress", "In Progress");
			return;
		}
	}
	local = find_local (sim, uuid);
	peer = dev == link->central ? link->peer : link->central->adapter->peer;
	if (peer->host != NULL)
		server = find_server (sim, uuid, local);
	else
		echo = sim_profile_has_remote (peer, uuid);
	if (local == NULL || (server == NULL && !echo)) {
		sim_return_error (inv, "InvalidArguments", "Invalid arguments in method call");
		return;
	}
	if (!make_stream_pair (cfds) || (!echo && !make_stream_pair (sfds))) {
		sim_return_error (inv, "Failed", "%s", g_strerror (errno));
		return;
	}
	st = g_new0 (SimStream, 1);
	st->refs = 1;
	st->link = link;
	st->dev = dev;
	st->uuid = g_steal_pointer (&uuid);
	st->client = local;
	st->server = server;
	st->inv = g_object_ref (inv);
	st->c.st = st;
	st->s.st = st;
	st->c.fd = cfds[0];
	st->client_app_fd = cfds[1];
	st->s.fd = sfds[0];
	st->server_app_fd = sfds[1];
	if (all_streams == NULL)
		all_streams = g_ptr_array_new ();
	g_ptr_array_add (all_streams, st);
	g_ptr_array_add (link->streams, st);
	if (server != NULL) {
		SimDevice *far = dev == link->central ? link->remote : link->central;
		call_new_connection (st, server, far != NULL ? far->path : dev->path,
				     &st->server_app_fd, server_connected_cb);
	} else {
		call_new_connection (st, local, dev->path, &st->client_app_fd, client_connected_cb);
	}
}

gboolean
sim_profile_disconnect (SimDevice *dev, const gchar *uuid_in, GError **error)
{
	g_autofree gchar *uuid = sim_uuid_normalize (uuid_in);
	SimLink *link = dev->link;

	if (uuid == NULL) {
		g_dbus_error_set_dbus_error (error, "org.bluez.Error.InvalidArguments",
					     "Invalid arguments in method call", NULL);
		return FALSE;
	}
	for (guint i = 0; link != NULL && i < link->streams->len; i++) {
		SimStream *st = g_ptr_array_index (link->streams, i);
		if (st->dev != dev || g_strcmp0 (st->uuid, uuid) != 0)
			continue;
		g_dbus_connection_call (dev->adapter->sim->conn, st->client->owner, st->client->path,
					"org.bluez.Profile1", "RequestDisconnection",
					g_variant_new ("(o)", dev->path), NULL,
					G_DBUS_CALL_FLAGS_NONE, -1, NULL, NULL, NULL);
		stream_close (st);
		return TRUE;
	}
	g_dbus_error_set_dbus_error (error, "org.bluez.Error.NotConnected", "Not Connected", NULL);
	return FALSE;
}

/* the link is gone: every stream over it ends (the apps see a hangup) */
void
sim_profile_link_down (SimLink *link)
{
	while (link->streams->len > 0)
		stream_close (g_ptr_array_index (link->streams, 0));
}
