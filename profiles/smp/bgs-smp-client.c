/* bgs-smp-client.c: request queue, fragmentation, reassembly, timeouts */
#include "bgs-smp-client.h"

#include <errno.h>
#include <glib-unix.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bgs-error.h"

typedef struct {
	BgsSmpClient *client; /* unowned; the client owns requests */
	GTask *task;
	guint8 op;
	guint8 version;
	guint16 group;
	guint8 id;
	guint8 seq;
	gboolean seq_set;
	GBytes *body;
	GBytes *frame;
	guint attempts;
	guint timer;
	gint64 busy_since; /* 0 when not busy */
	gboolean busy_wait; /* the timer is the busy delay, not the timeout */
	gulong cancel_id;
} Request;

struct _BgsSmpClient {
	gint ref_count;
	BgsClock *clock;
	guint8 version;
	guint8 next_seq;
	gint64 timeout;
	guint retries;
	gint64 busy_delay;
	gint64 busy_limit;
	gsize max_frame;
	guint window; /* requests in flight at most */

	guint mtu;
	BgsSmpSendFunc send;
	gpointer send_data;
	GDestroyNotify send_notify;
	guint link_gen; /* bumped when the transport is dropped */

	/* fd transport */
	int write_fd;
	int notify_fd;
	GSource *notify_source;
	GSource *write_source;
	GQueue out_packets; /* GBytes */
	GCallback link_lost;
	gpointer link_lost_data;

	GQueue queue;    /* Request, not yet sent */
	GQueue inflight; /* Request, sent and not answered, oldest first */
	GByteArray *rx;
	BgsSmpClientStats stats;
};

static void pump (BgsSmpClient *client);

static void
request_free (Request *req)
{
	if (req->timer != 0)
		bgs_clock_remove (req->client->clock, req->timer);
	if (req->cancel_id != 0)
		g_cancellable_disconnect (g_task_get_cancellable (req->task), req->cancel_id);
	g_clear_object (&req->task);
	g_clear_pointer (&req->body, g_bytes_unref);
	g_clear_pointer (&req->frame, g_bytes_unref);
	g_free (req);
}

/* completes and frees @req, which must be out of the queue and not in flight */
static void
request_return_error (Request *req, GError *error)
{
	GTask *task = g_object_ref (req->task);

	request_free (req);
	g_task_return_error (task, error);
	g_object_unref (task);
}

BgsSmpClient *
bgs_smp_client_new (BgsClock *clock, BgsSmpVersion version)
{
	BgsSmpClient *client = g_new0 (BgsSmpClient, 1);

	client->ref_count = 1;
	client->clock = bgs_clock_ref (clock);
	client->version = version;
	client->timeout = BGS_SMP_DEFAULT_TIMEOUT;
	client->retries = BGS_SMP_DEFAULT_RETRIES;
	client->busy_delay = BGS_SMP_DEFAULT_BUSY_DELAY;
	client->busy_limit = BGS_SMP_DEFAULT_BUSY_LIMIT;
	client->max_frame = BGS_SMP_DEFAULT_MAX_FRAME;
	client->window = 1;
	client->mtu = 23;
	client->write_fd = -1;
	client->notify_fd = -1;
	client->rx = g_byte_array_new ();
	g_queue_init (&client->queue);
	g_queue_init (&client->inflight);
	g_queue_init (&client->out_packets);
	return client;
}

BgsSmpClient *
bgs_smp_client_ref (BgsSmpClient *client)
{
	g_atomic_int_inc (&client->ref_count);
	return client;
}

static void
fail_all (BgsSmpClient *client, BgsError code, const char *message)
{
	Request *req;

	while ((req = g_queue_pop_head (&client->inflight)) != NULL)
		request_return_error (req, g_error_new_literal (BGS_ERROR, code, message));
	while ((req = g_queue_pop_head (&client->queue)) != NULL)
		request_return_error (req, g_error_new_literal (BGS_ERROR, code, message));
}

static void
drop_transport (BgsSmpClient *client)
{
	if (client->notify_source != NULL) {
		g_source_destroy (client->notify_source);
		g_clear_pointer (&client->notify_source, g_source_unref);
	}
	if (client->write_source != NULL) {
		g_source_destroy (client->write_source);
		g_clear_pointer (&client->write_source, g_source_unref);
	}
	g_queue_clear_full (&client->out_packets, (GDestroyNotify) g_bytes_unref);
	if (client->notify_fd >= 0 && client->notify_fd != client->write_fd)
		close (client->notify_fd);
	if (client->write_fd >= 0)
		close (client->write_fd);
	client->notify_fd = -1;
	client->write_fd = -1;
	if (client->send_notify != NULL)
		client->send_notify (client->send_data);
	client->send = NULL;
	client->send_data = NULL;
	client->send_notify = NULL;
	client->link_gen++;
	g_byte_array_set_size (client->rx, 0);
}

void
bgs_smp_client_unref (BgsSmpClient *client)
{
	if (client == NULL || !g_atomic_int_dec_and_test (&client->ref_count))
		return;
	/* keep the struct alive while tasks complete */
	client->ref_count = 1;
	drop_transport (client);
	fail_all (client, BGS_ERROR_CANCELED, "SMP client closed");
	g_byte_array_unref (client->rx);
	bgs_clock_unref (client->clock);
	g_free (client);
}

void
bgs_smp_client_set_transport (BgsSmpClient *client, guint mtu, BgsSmpSendFunc send,
			      gpointer user_data, GDestroyNotify notify)
{
	drop_transport (client);
	client->mtu = CLAMP (mtu, 23, 517);
	client->send = send;
	client->send_data = user_data;
	client->send_notify = notify;
	pump (client);
}

guint
bgs_smp_client_get_mtu (BgsSmpClient *client)
{
	return client->mtu;
}

void
bgs_smp_client_set_timeout (BgsSmpClient *client, gint64 timeout_usec, guint retries)
{
	client->timeout = MAX (timeout_usec, 1);
	client->retries = retries;
}

void
bgs_smp_client_set_busy (BgsSmpClient *client, gint64 delay_usec, gint64 limit_usec)
{
	client->busy_delay = MAX (delay_usec, 1);
	client->busy_limit = MAX (limit_usec, 0);
}

void
bgs_smp_client_set_max_frame (BgsSmpClient *client, gsize max_frame)
{
	client->max_frame = CLAMP (max_frame, 64, BGS_SMP_HEADER_SIZE + BGS_SMP_MAX_BODY);
}

gsize
bgs_smp_client_get_max_frame (BgsSmpClient *client)
{
	return client->max_frame;
}

void
bgs_smp_client_set_window (BgsSmpClient *client, guint window)
{
	client->window = CLAMP (window, 1, BGS_SMP_MAX_WINDOW);
	pump (client);
}

guint
bgs_smp_client_get_window (BgsSmpClient *client)
{
	return client->window;
}

void
bgs_smp_client_get_stats (BgsSmpClient *client, BgsSmpClientStats *stats)
{
	*stats = client->stats;
}

void
bgs_smp_client_set_link_lost_func (BgsSmpClient *client, GCallback func, gpointer user_data)
{
	client->link_lost = func;
	client->link_lost_data = user_data;
}

gboolean
bgs_smp_client_is_attached (BgsSmpClient *client)
{
	return client->send != NULL;
}

void
bgs_smp_client_detach (BgsSmpClient *client)
{
	g_autoptr(BgsSmpClient) keep G_GNUC_UNUSED = bgs_smp_client_ref (client);

	drop_transport (client);
	fail_all (client, BGS_ERROR_IO, "SMP link lost");
}

/* sending */

static gboolean
send_frame (BgsSmpClient *client, GBytes *frame, GError **error)
{
	gsize len = 0;
	const guint8 *data = g_bytes_get_data (frame, &len);
	/* one ATT write carries MTU - 3 bytes, but bluetoothd 5.66 drops written
	 * values over 510 (its length check counts the handle) */
	gsize chunk = MIN (client->mtu - 3, 510);

	for (gsize off = 0; off < len; off += chunk) {
		gsize n = MIN (chunk, len - off);

		/* a send may find the link gone and detach us on the spot */
		if (client->send == NULL) {
			g_set_error_literal (error, BGS_ERROR, BGS_ERROR_IO, "the link dropped");
			return FALSE;
		}
		if (!client->send (data + off, n, client->send_data, error))
			return FALSE;
		client->stats.packets_sent++;
		client->stats.bytes_sent += n;
	}
	return TRUE;
}

static void on_timeout (gpointer user_data);

static void
transmit (BgsSmpClient *client, Request *req)
{
	g_autoptr(GError) error = NULL;
	g_autoptr(BgsSmpClient) keep G_GNUC_UNUSED = bgs_smp_client_ref (client);
	guint gen = client->link_gen;
	gboolean sent;

	req->attempts++;
	/* lets bgs_smp_client_reset_finish() tell "went out, then the link
	 * dropped" from "never sent" */
	g_object_set_data (G_OBJECT (req->task), "bgs-smp-sent", GINT_TO_POINTER (1));
	sent = send_frame (client, req->frame, &error);
	/* the transport reported the link lost from inside the send (a closed
	 * socket): the detach failed and freed every request, @req included */
	if (client->link_gen != gen)
		return;
	if (!sent) {
		g_object_set_data (G_OBJECT (req->task), "bgs-smp-sent", NULL);
		g_queue_remove (&client->inflight, req);
		g_prefix_error (&error, "SMP send failed: ");
		if (error->domain != BGS_ERROR) {
			error->domain = BGS_ERROR;
			error->code = BGS_ERROR_IO;
		}
		request_return_error (req, g_steal_pointer (&error));
		/* the link is gone: nothing queued can go out either */
		fail_all (client, BGS_ERROR_IO, "SMP link lost");
		return;
	}
	req->timer = bgs_clock_add_timeout (client->clock, client->timeout, on_timeout, req);
}

static void
pump (BgsSmpClient *client)
{
	g_autoptr(BgsSmpClient) keep G_GNUC_UNUSED = bgs_smp_client_ref (client);

	while (g_queue_get_length (&client->inflight) < client->window && client->send != NULL &&
	       !g_queue_is_empty (&client->queue)) {
		Request *req = g_queue_pop_head (&client->queue);

		if (!req->seq_set) {
			req->seq = client->next_seq++;
			req->seq_set = TRUE;
			req->frame = bgs_smp_frame_build (req->op, req->version, req->group, req->id,
							  req->seq, req->body);
		}
		g_queue_push_tail (&client->inflight, req);
		client->stats.requests++;
		client->stats.max_inflight = MAX (client->stats.max_inflight,
						  g_queue_get_length (&client->inflight));
		transmit (client, req);
	}
}

static void
on_timeout (gpointer user_data)
{
	Request *req = user_data;
	BgsSmpClient *client = req->client;
	g_autoptr(BgsSmpClient) keep G_GNUC_UNUSED = bgs_smp_client_ref (client);

	req->timer = 0;
	g_return_if_fail (g_queue_find (&client->inflight, req) != NULL);
	if (req->busy_wait) {
		/* a busy device asked us to come back: not a failed attempt */
		req->busy_wait = FALSE;
		req->attempts--;
		client->stats.busy_retries++;
		transmit (client, req);
		return;
	}
	client->stats.timeouts++;
	if (req->attempts <= client->retries) {
		g_debug ("SMP group %u command %u seq %u: no answer, sending again (%u)",
			 req->group, req->id, req->seq, req->attempts);
		client->stats.retransmits++;
		/* a half-received answer to the lost attempt would garble the next */
		g_byte_array_set_size (client->rx, 0);
		transmit (client, req);
		return;
	}
	g_queue_remove (&client->inflight, req);
	g_byte_array_set_size (client->rx, 0);
	request_return_error (req, g_error_new (BGS_ERROR, BGS_ERROR_TIMED_OUT,
						"device did not answer SMP group %u command %u in %.1f s (%u attempts)",
						req->group, req->id,
						(double) client->timeout / BGS_USEC_PER_SEC,
						req->attempts));
	pump (client);
}

static void
on_cancelled (GCancellable *cancellable, gpointer user_data)
{
	Request *req = user_data;
	BgsSmpClient *client = req->client;
	g_autoptr(BgsSmpClient) keep G_GNUC_UNUSED = bgs_smp_client_ref (client);

	/* runs in the cancelling thread; bgsync cancels on the main context */
	if (!g_queue_remove (&client->inflight, req))
		g_queue_remove (&client->queue, req);
	req->cancel_id = 0; /* disconnecting from inside the handler would deadlock */
	request_return_error (req, g_error_new_literal (BGS_ERROR, BGS_ERROR_CANCELED,
							"SMP request cancelled"));
	pump (client);
}

void
bgs_smp_client_call_async (BgsSmpClient *client, guint8 op, guint16 group, guint8 id,
			   GBytes *body, GCancellable *cancellable,
			   GAsyncReadyCallback callback, gpointer user_data)
{
	Request *req;
	GTask *task = g_task_new (NULL, cancellable, callback, user_data);

	g_task_set_source_tag (task, bgs_smp_client_call_async);
	/* report cancellation as BGS_ERROR_CANCELED, like every other error here */
	g_task_set_check_cancellable (task, FALSE);
	if (body != NULL && g_bytes_get_size (body) > BGS_SMP_MAX_BODY) {
		g_task_return_new_error (task, BGS_ERROR, BGS_ERROR_INVALID_ARGS,
					 "SMP body of %" G_GSIZE_FORMAT " bytes is too large",
					 g_bytes_get_size (body));
		g_object_unref (task);
		return;
	}
	if (g_cancellable_is_cancelled (cancellable)) {
		g_task_return_new_error (task, BGS_ERROR, BGS_ERROR_CANCELED, "SMP request cancelled");
		g_object_unref (task);
		return;
	}
	if (client->send == NULL) {
		g_task_return_new_error (task, BGS_ERROR, BGS_ERROR_IO, "SMP link is not connected");
		g_object_unref (task);
		return;
	}
	req = g_new0 (Request, 1);
	req->client = client;
	req->task = task;
	req->op = op;
	req->version = client->version;
	req->group = group;
	req->id = id;
	req->body = body != NULL ? g_bytes_ref (body) : bgs_smp_build_empty ();
	g_queue_push_tail (&client->queue, req);
	if (cancellable != NULL)
		req->cancel_id = g_cancellable_connect (cancellable, G_CALLBACK (on_cancelled), req, NULL);
	pump (client);
}

BgsSmpResponse *
bgs_smp_client_call_finish (BgsSmpClient *client, GAsyncResult *result, GError **error)
{
	g_return_val_if_fail (g_task_is_valid (result, NULL), NULL);
	return g_task_propagate_pointer (G_TASK (result), error);
}

/* receiving */

static gboolean
rc_is (const BgsSmpResponse *resp, gint64 want)
{
	guint64 group = 0;
	gint64 rc = 0;

	return bgs_smp_body_get_error (resp->body, &group, &rc) &&
	       group == G_MAXUINT64 && rc == want;
}

static gboolean
is_busy (const BgsSmpResponse *resp)
{
	return rc_is (resp, BGS_SMP_RC_EBUSY);
}

static void
handle_frame (BgsSmpClient *client, const guint8 *frame, gsize len)
{
	g_autoptr(GError) error = NULL;
	g_autoptr(BgsSmpResponse) resp = NULL;
	BgsSmpHeader hdr = { 0 };
	Request *req = NULL;
	GTask *task;

	if (bgs_smp_header_decode (frame, len, &hdr, NULL) && bgs_smp_op_is_response (hdr.op)) {
		/* matched by sequence number; group, command and op must agree */
		for (GList *l = client->inflight.head; l != NULL; l = l->next) {
			Request *r = l->data;

			if (hdr.seq == r->seq && hdr.group == r->group && hdr.id == r->id &&
			    hdr.op == r->op + 1) {
				req = r;
				break;
			}
		}
	}
	if (req == NULL) {
		g_debug ("SMP: dropping unsolicited frame (op %u group %u id %u seq %u)",
			 hdr.op, hdr.group, hdr.id, hdr.seq);
		client->stats.dropped_frames++;
		return;
	}
	if (req->timer != 0)
		bgs_clock_remove (client->clock, req->timer);
	req->timer = 0;
	req->busy_wait = FALSE;
	g_queue_remove (&client->inflight, req);
	resp = bgs_smp_response_parse (frame, len, &error);
	if (resp == NULL) {
		g_prefix_error (&error, "bad SMP response to group %u command %u: ", req->group, req->id);
		request_return_error (req, g_steal_pointer (&error));
		pump (client);
		return;
	}
	if (req->version == BGS_SMP_V2 && rc_is (resp, BGS_SMP_RC_UNSUPPORTED_TOO_NEW)) {
		/* a device that only speaks the original protocol: fall back to
		 * v1 for this and every later request */
		g_debug ("SMP: device does not speak SMP version 2, using version 1");
		client->version = BGS_SMP_V1;
		req->version = BGS_SMP_V1;
		g_bytes_unref (req->frame);
		req->frame = bgs_smp_frame_build (req->op, req->version, req->group, req->id,
						  req->seq, req->body);
		for (GList *l = client->queue.head; l != NULL; l = l->next)
			((Request *) l->data)->version = BGS_SMP_V1;
		g_queue_push_tail (&client->inflight, req);
		req->attempts--;
		transmit (client, req);
		return;
	}
	if (is_busy (resp)) {
		gint64 now = bgs_clock_now (client->clock);

		if (req->busy_since == 0)
			req->busy_since = now;
		if (now - req->busy_since < client->busy_limit) {
			g_debug ("SMP group %u command %u: device busy, asking again", req->group, req->id);
			g_queue_push_tail (&client->inflight, req);
			req->busy_wait = TRUE;
			req->timer = bgs_clock_add_timeout (client->clock, client->busy_delay,
							    on_timeout, req);
			return;
		}
	} else {
		req->busy_since = 0;
	}
	task = g_object_ref (req->task);
	request_free (req);
	g_task_return_pointer (task, g_steal_pointer (&resp), (GDestroyNotify) bgs_smp_response_free);
	g_object_unref (task);
	pump (client);
}

void
bgs_smp_client_receive (BgsSmpClient *client, const guint8 *data, gsize len)
{
	/* a completion callback may drop the caller's last reference */
	g_autoptr(BgsSmpClient) keep G_GNUC_UNUSED = bgs_smp_client_ref (client);

	client->stats.bytes_received += len;
	g_byte_array_append (client->rx, data, (guint) len);
	while (client->rx->len >= BGS_SMP_HEADER_SIZE) {
		BgsSmpHeader hdr;
		gsize need;

		if (!bgs_smp_header_decode (client->rx->data, client->rx->len, &hdr, NULL)) {
			/* lost framing: drop what we have and resync on the next packet */
			g_debug ("SMP: bad header in the notification stream, dropping %u bytes",
				 client->rx->len);
			client->stats.dropped_frames++;
			g_byte_array_set_size (client->rx, 0);
			return;
		}
		need = BGS_SMP_HEADER_SIZE + hdr.len;
		if (client->rx->len < need)
			return;
		{
			g_autofree guint8 *frame = g_memdup2 (client->rx->data, need);

			g_byte_array_remove_range (client->rx, 0, (guint) need);
			handle_frame (client, frame, need);
		}
	}
}

/* fd transport */

static gboolean on_write_ready (gint fd, GIOCondition cond, gpointer user_data);

static gboolean
flush_out (BgsSmpClient *client, GError **error)
{
	GBytes *pkt;

	while ((pkt = g_queue_peek_head (&client->out_packets)) != NULL) {
		gsize len = 0;
		const guint8 *data = g_bytes_get_data (pkt, &len);
		/* MSG_NOSIGNAL: a peer that hung up must not SIGPIPE the agent */
		ssize_t n = send (client->write_fd, data, len, MSG_NOSIGNAL);

		if (n < 0 && errno == ENOTSOCK)
			n = write (client->write_fd, data, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			if (client->write_source == NULL) {
				client->write_source = g_unix_fd_source_new (client->write_fd, G_IO_OUT);
				g_source_set_callback (client->write_source, (GSourceFunc) (void (*) (void)) on_write_ready,
						       client, NULL);
				g_source_attach (client->write_source, g_main_context_get_thread_default ());
			}
			return TRUE;
		}
		if (n < 0) {
			int saved = errno;

			g_set_error (error, BGS_ERROR, BGS_ERROR_IO, "write: %s", g_strerror (saved));
			return FALSE;
		}
		g_queue_pop_head (&client->out_packets);
		g_bytes_unref (pkt);
	}
	return TRUE;
}

static void
link_lost (BgsSmpClient *client)
{
	GCallback cb = client->link_lost;

	bgs_smp_client_detach (client);
	if (cb != NULL)
		((void (*) (BgsSmpClient *, gpointer)) cb) (client, client->link_lost_data);
}

static gboolean
on_write_ready (gint fd, GIOCondition cond, gpointer user_data)
{
	BgsSmpClient *client = user_data;
	g_autoptr(BgsSmpClient) keep G_GNUC_UNUSED = bgs_smp_client_ref (client);
	g_autoptr(GError) error = NULL;

	g_clear_pointer (&client->write_source, g_source_unref);
	if (!flush_out (client, &error)) {
		g_debug ("SMP: %s", error->message);
		link_lost (client);
	}
	return G_SOURCE_REMOVE;
}

static gboolean
fd_send (const guint8 *data, gsize len, gpointer user_data, GError **error)
{
	BgsSmpClient *client = user_data;

	g_queue_push_tail (&client->out_packets, g_bytes_new (data, len));
	if (client->write_source != NULL)
		return TRUE;
	return flush_out (client, error);
}

static gboolean
on_notify_ready (gint fd, GIOCondition cond, gpointer user_data)
{
	BgsSmpClient *client = user_data;
	g_autoptr(BgsSmpClient) keep G_GNUC_UNUSED = bgs_smp_client_ref (client);
	guint8 buf[1024];
	ssize_t n;

	n = read (fd, buf, sizeof (buf));
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return G_SOURCE_CONTINUE;
	if (n <= 0) {
		g_debug ("SMP: notify fd closed");
		g_clear_pointer (&client->notify_source, g_source_unref);
		link_lost (client);
		return G_SOURCE_REMOVE;
	}
	bgs_smp_client_receive (client, buf, (gsize) n);
	return G_SOURCE_CONTINUE;
}

gboolean
bgs_smp_client_attach_fds (BgsSmpClient *client, int write_fd, int notify_fd, guint mtu,
			   GError **error)
{
	g_autoptr(GError) local = NULL;

	if (!g_unix_set_fd_nonblocking (write_fd, TRUE, &local) ||
	    !g_unix_set_fd_nonblocking (notify_fd, TRUE, &local)) {
		g_set_error (error, BGS_ERROR, BGS_ERROR_IO, "SMP fds: %s", local->message);
		return FALSE;
	}
	drop_transport (client);
	client->write_fd = write_fd;
	client->notify_fd = notify_fd;
	client->notify_source = g_unix_fd_source_new (notify_fd, G_IO_IN | G_IO_HUP | G_IO_ERR);
	g_source_set_callback (client->notify_source, (GSourceFunc) (void (*) (void)) on_notify_ready,
			       client, NULL);
	g_source_attach (client->notify_source, g_main_context_get_thread_default ());
	client->mtu = CLAMP (mtu, 23, 517);
	client->send = fd_send;
	client->send_data = client;
	client->send_notify = NULL;
	pump (client);
	return TRUE;
}

/* image upload */

gsize
bgs_smp_upload_chunk_size (gsize max_frame, const char *name, guint64 off, guint64 total)
{
	static const guint8 zero_sha[32] = { 0 };
	g_autoptr(GBytes) empty = NULL;
	gsize base, avail, l;

	if (name != NULL)
		empty = bgs_smp_build_fs_upload (name, off, NULL, 0, total);
	else
		empty = bgs_smp_build_image_upload (0, off, NULL, 0, total, zero_sha, TRUE);
	base = BGS_SMP_HEADER_SIZE + g_bytes_get_size (empty);
	if (max_frame <= base + 3)
		return 0;
	avail = max_frame - base;
	/* the byte string head grows from 1 to 2 or 3 bytes with the data */
	l = avail;
	if (l > 23)
		l -= 1;
	if (l > 255)
		l -= 1;
	return l;
}

typedef struct {
	BgsSmpClient *client;
	char *name;     /* file upload; NULL for an image */
	GBytes *image;
	guint image_num;
	gboolean upgrade;
	guint8 sha[32];
	guint64 next_off; /* where the next chunk starts */
	guint64 reported; /* last offset the device reported */
	guint64 best;     /* highest offset the device reported */
	guint stuck;      /* answers in a row that did not move "best" */
	guint restarts;
	gboolean answered; /* the first chunk was answered: open the window */
	GList *chunks;    /* Chunk, in flight, in sending order */
	guint64 sent;     /* chunks sent so far */
	gboolean finished; /* the result is set; waiting for chunks in flight */
	gboolean returned;
	GError *error;
	GCancellable *outer;
	gulong outer_id;
	BgsSmpProgressFunc progress;
	gpointer progress_data;
} Upload;

typedef struct {
	GTask *task; /* owned */
	GCancellable *cancel; /* this chunk's call alone */
	guint64 order;        /* sending order */
	guint64 off;
	gsize len;
} Chunk;

static void
upload_free (Upload *up)
{
	if (up->outer_id != 0)
		g_cancellable_disconnect (up->outer, up->outer_id);
	g_clear_object (&up->outer);
	g_clear_error (&up->error);
	bgs_smp_client_unref (up->client);
	g_bytes_unref (up->image);
	g_free (up->name);
	g_free (up);
}

/* takes back the calls of chunks sent before @order (G_MAXUINT64: all);
 * their answers complete from an idle, as GTask does for cancellations */
static void
upload_cancel_chunks (Upload *up, guint64 order)
{
	g_autoptr(GPtrArray) c = g_ptr_array_new_with_free_func (g_object_unref);

	for (GList *l = up->chunks; l != NULL; l = l->next) {
		Chunk *chunk = l->data;

		if (chunk->order < order)
			g_ptr_array_add (c, g_object_ref (chunk->cancel));
	}
	for (guint i = 0; i < c->len; i++)
		g_cancellable_cancel (c->pdata[i]);
}

static void
upload_outer_cancelled (GCancellable *outer, gpointer user_data)
{
	upload_cancel_chunks (user_data, G_MAXUINT64);
}

/* the first result wins; it goes out when nothing is in flight. Chunks
 * still in flight at the end are stale: taking them back also stops their
 * retransmission, which could reach the device after the next command. */
static void
upload_finish (GTask *task, GError *error)
{
	Upload *up = g_task_get_task_data (task);

	if (up->finished) {
		g_clear_error (&error);
		return;
	}
	up->finished = TRUE;
	up->error = error;
	upload_cancel_chunks (up, G_MAXUINT64);
}

static void
upload_maybe_return (GTask *task)
{
	Upload *up = g_task_get_task_data (task);

	/* cancelling chunks may complete them (and us) from inside a callback */
	if (!up->finished || up->chunks != NULL || up->returned)
		return;
	up->returned = TRUE;
	if (up->error != NULL)
		g_task_return_error (task, g_steal_pointer (&up->error));
	else
		g_task_return_boolean (task, TRUE);
}

static void upload_fill (GTask *task);

/* will a chunk sent after @order (or the next one) bring the device on
 * from @off? the device handles requests in order, so chunks sent before
 * are already handled (or lost) by the time it answered @order */
static gboolean
upload_covered (Upload *up, guint64 off, guint64 order)
{
	if (off == up->next_off)
		return TRUE;
	for (GList *l = up->chunks; l != NULL; l = l->next) {
		Chunk *chunk = l->data;

		if (chunk->order > order && chunk->off == off)
			return TRUE;
	}
	return FALSE;
}

static void
upload_cb (GObject *source, GAsyncResult *result, gpointer user_data)
{
	Chunk *chunk = user_data;
	g_autoptr(GTask) task = chunk->task;
	Upload *up = g_task_get_task_data (task);
	g_autoptr(GError) error = NULL;
	g_autoptr(BgsSmpResponse) resp = NULL;
	guint64 off = 0;
	int match = -1;
	gsize total = g_bytes_get_size (up->image);

	up->chunks = g_list_remove (up->chunks, chunk);
	resp = bgs_smp_client_call_finish (up->client, result, &error);
	if (up->finished)
		goto out; /* late answers to chunks sent before the end */
	if (up->outer != NULL && g_cancellable_is_cancelled (up->outer)) {
		upload_finish (task, g_error_new_literal (BGS_ERROR, BGS_ERROR_CANCELED,
							  "SMP upload cancelled"));
		goto out;
	}
	if (g_cancellable_is_cancelled (chunk->cancel)) {
		/* taken back as lost: its slot is free */
		upload_fill (task);
		goto out;
	}
	if (resp == NULL || !bgs_smp_body_check (resp->body, &error) ||
	    !bgs_smp_parse_image_upload (resp->body, &off, &match, &error)) {
		g_prefix_error (&error, "%s upload at offset %" G_GUINT64_FORMAT ": ",
				up->name != NULL ? up->name : "image", chunk->off);
		upload_finish (task, g_steal_pointer (&error));
		goto out;
	}
	up->answered = TRUE;
	if (off > total) {
		upload_finish (task, g_error_new (BGS_ERROR, BGS_ERROR_PROTOCOL,
						  "device reports upload offset %" G_GUINT64_FORMAT " past the image end (%" G_GSIZE_FORMAT ")",
						  off, total));
		goto out;
	}
	if (off > up->best || (off == total && total > 0)) {
		up->best = off;
		up->stuck = 0;
	} else if (++up->stuck > 8 + 4 * BGS_SMP_MAX_WINDOW) {
		/* a device that never moves on would keep us sending forever */
		upload_finish (task, g_error_new (BGS_ERROR, BGS_ERROR_PROTOCOL,
						  "device does not take the upload at offset %" G_GUINT64_FORMAT,
						  off));
		goto out;
	}
	if (off != up->reported && up->progress != NULL)
		up->progress (off, total, up->progress_data);
	up->reported = off;
	if (off == total) {
		if (match == 0)
			upload_finish (task, g_error_new_literal (BGS_ERROR, BGS_ERROR_CORRUPT,
								  "device reports the uploaded image does not match its SHA-256"));
		else
			upload_finish (task, NULL);
		goto out;
	}
	if (off != chunk->off + chunk->len && !upload_covered (up, off, chunk->order)) {
		/* not what we expected and nothing on its way fills it: go on
		 * from where the device is. Chunks sent before this one and
		 * not answered were lost (or their answers were): take them
		 * back rather than wait for their timeouts. */
		if (off == 0 && ++up->restarts > 3) {
			upload_finish (task, g_error_new_literal (BGS_ERROR, BGS_ERROR_PROTOCOL,
								  "device keeps restarting the upload from offset 0"));
			goto out;
		}
		g_debug ("SMP upload: device is at offset %" G_GUINT64_FORMAT ", expected %" G_GUINT64_FORMAT ", going on from there",
			 off, chunk->off + chunk->len);
		up->client->stats.rewinds++;
		up->next_off = off;
		upload_cancel_chunks (up, chunk->order);
	}
	upload_fill (task);
out:
	upload_maybe_return (task);
	g_object_unref (chunk->cancel);
	g_free (chunk);
}

static void
upload_fill (GTask *task)
{
	Upload *up = g_task_get_task_data (task);
	gsize total = 0;
	const guint8 *data = g_bytes_get_data (up->image, &total);
	/* the first chunk goes alone: its answer may resume elsewhere, or be busy */
	guint window = up->answered ? bgs_smp_client_get_window (up->client) : 1;

	if (!up->finished && up->outer != NULL && g_cancellable_is_cancelled (up->outer)) {
		upload_finish (task, g_error_new_literal (BGS_ERROR, BGS_ERROR_CANCELED,
							  "SMP upload cancelled"));
		return;
	}
	while (!up->finished && g_list_length (up->chunks) < window &&
	       (up->next_off < total || (total == 0 && !up->answered && up->chunks == NULL))) {
		gsize n = bgs_smp_upload_chunk_size (up->client->max_frame, up->name, up->next_off, total);
		g_autoptr(GBytes) body = NULL;
		Chunk *chunk;

		if (n == 0) {
			upload_finish (task, g_error_new (BGS_ERROR, BGS_ERROR_INVALID_ARGS,
							  "SMP frame limit %" G_GSIZE_FORMAT " too small for an upload",
							  up->client->max_frame));
			return;
		}
		n = MIN (n, total - up->next_off);
		chunk = g_new0 (Chunk, 1);
		chunk->task = g_object_ref (task);
		chunk->cancel = g_cancellable_new ();
		chunk->order = up->sent++;
		chunk->off = up->next_off;
		chunk->len = n;
		up->chunks = g_list_append (up->chunks, chunk);
		up->next_off += n;
		if (up->name != NULL) {
			body = bgs_smp_build_fs_upload (up->name, chunk->off, total > 0 ? data + chunk->off : NULL,
							n, total);
			bgs_smp_client_call_async (up->client, BGS_SMP_OP_WRITE, BGS_SMP_GROUP_FS,
						   BGS_SMP_FS_FILE, body, chunk->cancel, upload_cb, chunk);
		} else {
			body = bgs_smp_build_image_upload (up->image_num, chunk->off, data + chunk->off, n,
							   total, up->sha, up->upgrade);
			bgs_smp_client_call_async (up->client, BGS_SMP_OP_WRITE, BGS_SMP_GROUP_IMAGE,
						   BGS_SMP_IMAGE_UPLOAD, body, chunk->cancel, upload_cb, chunk);
		}
	}
}

/* starts @task (which owns @up) and drops the caller's reference */
static void
upload_start (GTask *task, Upload *up)
{
	GCancellable *outer = g_task_get_cancellable (task);

	if (outer != NULL) {
		up->outer = g_object_ref (outer);
		up->outer_id = g_cancellable_connect (outer, G_CALLBACK (upload_outer_cancelled), up, NULL);
	}
	g_task_set_task_data (task, up, (GDestroyNotify) upload_free);
	upload_fill (task);
	upload_maybe_return (task);
	g_object_unref (task);
}

void
bgs_smp_client_upload_image_async (BgsSmpClient *client, GBytes *image, guint image_num,
				   gboolean upgrade, BgsSmpProgressFunc progress,
				   gpointer progress_data, GCancellable *cancellable,
				   GAsyncReadyCallback callback, gpointer user_data)
{
	GTask *task = g_task_new (NULL, cancellable, callback, user_data);
	Upload *up = g_new0 (Upload, 1);
	gsize sha_len = sizeof (up->sha);
	g_autoptr(GChecksum) sum = g_checksum_new (G_CHECKSUM_SHA256);

	g_task_set_source_tag (task, bgs_smp_client_upload_image_async);
	g_task_set_check_cancellable (task, FALSE);
	up->client = bgs_smp_client_ref (client);
	up->image = g_bytes_ref (image);
	up->image_num = image_num;
	up->upgrade = upgrade;
	up->progress = progress;
	up->progress_data = progress_data;
	g_checksum_update (sum, g_bytes_get_data (image, NULL), (gssize) g_bytes_get_size (image));
	g_checksum_get_digest (sum, up->sha, &sha_len);
	if (g_bytes_get_size (image) == 0) {
		g_task_set_task_data (task, up, (GDestroyNotify) upload_free);
		g_task_return_new_error (task, BGS_ERROR, BGS_ERROR_INVALID_ARGS, "empty image");
		g_object_unref (task);
		return;
	}
	upload_start (task, up);
}

gboolean
bgs_smp_client_upload_image_finish (BgsSmpClient *client, GAsyncResult *result, GError **error)
{
	return g_task_propagate_boolean (G_TASK (result), error);
}

void
bgs_smp_client_upload_file_async (BgsSmpClient *client, const char *name, GBytes *data,
				  BgsSmpProgressFunc progress, gpointer progress_data,
				  GCancellable *cancellable, GAsyncReadyCallback callback,
				  gpointer user_data)
{
	GTask *task = g_task_new (NULL, cancellable, callback, user_data);
	Upload *up = g_new0 (Upload, 1);

	g_task_set_source_tag (task, bgs_smp_client_upload_file_async);
	g_task_set_check_cancellable (task, FALSE);
	up->client = bgs_smp_client_ref (client);
	up->name = g_strdup (name);
	up->image = g_bytes_ref (data);
	up->progress = progress;
	up->progress_data = progress_data;
	/* an empty file is one request with no data */
	upload_start (task, up);
}

gboolean
bgs_smp_client_upload_file_finish (BgsSmpClient *client, GAsyncResult *result, GError **error)
{
	return g_task_propagate_boolean (G_TASK (result), error);
}

/* file download */

typedef struct {
	BgsSmpClient *client;
	char *name;
	int fd;
	guint64 off;      /* the file is complete up to here */
	guint64 total;    /* G_MAXUINT64 until the device says */
	guint64 next_req; /* next request's offset, once pipelined */
	gsize chunk;      /* the device's chunk size, learned from its answers */
	GList *reqs;      /* DlReq, in flight, in sending order */
	guint64 sent;     /* requests sent so far */
	gboolean finished;
	gboolean returned;
	GError *error;
	GCancellable *outer;
	gulong outer_id;
	BgsSmpProgressFunc progress;
	gpointer progress_data;
} Download;

typedef struct {
	GTask *task; /* owned */
	GCancellable *cancel; /* this request's call alone */
	guint64 order;        /* sending order */
	guint64 off;
} DlReq;

static void
download_free (Download *dl)
{
	if (dl->outer_id != 0)
		g_cancellable_disconnect (dl->outer, dl->outer_id);
	g_clear_object (&dl->outer);
	g_clear_error (&dl->error);
	bgs_smp_client_unref (dl->client);
	g_free (dl->name);
	g_free (dl);
}

static gboolean
write_at (int fd, guint64 off, const guint8 *data, gsize len, GError **error)
{
	while (len > 0) {
		ssize_t n = pwrite (fd, data, len, (off_t) off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			int saved = errno;

			g_set_error (error, BGS_ERROR, BGS_ERROR_IO, "cannot write download: %s",
				     g_strerror (saved));
			return FALSE;
		}
		data += n;
		len -= (gsize) n;
		off += (guint64) n;
	}
	return TRUE;
}

/* takes back the requests sent before @order (G_MAXUINT64: all) */
static void
download_cancel_reqs (Download *dl, guint64 order)
{
	g_autoptr(GPtrArray) c = g_ptr_array_new_with_free_func (g_object_unref);

	for (GList *l = dl->reqs; l != NULL; l = l->next) {
		DlReq *r = l->data;

		if (r->order < order)
			g_ptr_array_add (c, g_object_ref (r->cancel));
	}
	for (guint i = 0; i < c->len; i++)
		g_cancellable_cancel (c->pdata[i]);
}

static void
download_outer_cancelled (GCancellable *outer, gpointer user_data)
{
	download_cancel_reqs (user_data, G_MAXUINT64);
}

static void
download_finish (Download *dl, GError *error)
{
	if (dl->finished) {
		g_clear_error (&error);
		return;
	}
	dl->finished = TRUE;
	dl->error = error;
	download_cancel_reqs (dl, G_MAXUINT64);
}

static void
download_maybe_return (GTask *task)
{
	Download *dl = g_task_get_task_data (task);

	if (!dl->finished || dl->reqs != NULL || dl->returned)
		return;
	dl->returned = TRUE;
	if (dl->error != NULL)
		g_task_return_error (task, g_steal_pointer (&dl->error));
	else
		g_task_return_boolean (task, TRUE);
}

/* requests beyond the first need the length and the device's chunk size */
static gboolean
download_pipelined (Download *dl)
{
	return dl->chunk > 0 && dl->total != G_MAXUINT64;
}

/* will a request sent after @order (or the next one) ask for @off? */
static gboolean
download_covered (Download *dl, guint64 off, guint64 order)
{
	if (dl->next_req == off)
		return TRUE;
	for (GList *l = dl->reqs; l != NULL; l = l->next) {
		DlReq *r = l->data;

		if (r->order > order && r->off == off)
			return TRUE;
	}
	return FALSE;
}

static void download_fill (GTask *task);

static void
download_cb (GObject *source, GAsyncResult *result, gpointer user_data)
{
	DlReq *r = user_data;
	g_autoptr(GTask) task = r->task;
	Download *dl = g_task_get_task_data (task);
	g_autoptr(GError) error = NULL;
	g_autoptr(BgsSmpResponse) resp = NULL;
	g_autoptr(GBytes) data = NULL;
	guint64 off = 0, total = G_MAXUINT64;
	gsize n = 0;
	const guint8 *d;

	dl->reqs = g_list_remove (dl->reqs, r);
	resp = bgs_smp_client_call_finish (dl->client, result, &error);
	if (dl->finished)
		goto out;
	if (dl->outer != NULL && g_cancellable_is_cancelled (dl->outer)) {
		download_finish (dl, g_error_new_literal (BGS_ERROR, BGS_ERROR_CANCELED,
							  "SMP download cancelled"));
		goto out;
	}
	if (g_cancellable_is_cancelled (r->cancel))
		goto fill; /* taken back as lost: its slot is free */
	if (resp == NULL || !bgs_smp_body_check (resp->body, &error) ||
	    !bgs_smp_parse_fs_download (resp->body, &off, &data, &total, &error)) {
		g_prefix_error (&error, "download of %s at offset %" G_GUINT64_FORMAT ": ", dl->name, r->off);
		download_finish (dl, g_steal_pointer (&error));
		goto out;
	}
	if (off != r->off) {
		download_finish (dl, g_error_new (BGS_ERROR, BGS_ERROR_PROTOCOL,
						  "download of %s: asked for offset %" G_GUINT64_FORMAT ", got %" G_GUINT64_FORMAT,
						  dl->name, r->off, off));
		goto out;
	}
	if (total != G_MAXUINT64) {
		if (dl->total != G_MAXUINT64 && total != dl->total) {
			download_finish (dl, g_error_new (BGS_ERROR, BGS_ERROR_PROTOCOL,
							  "download of %s: the file length changed", dl->name));
			goto out;
		}
		dl->total = total;
	}
	d = g_bytes_get_data (data, &n);
	if (dl->total != G_MAXUINT64 && off + n > dl->total) {
		download_finish (dl, g_error_new (BGS_ERROR, BGS_ERROR_PROTOCOL,
						  "download of %s: data past the file length", dl->name));
		goto out;
	}
	if (off == dl->off) {
		gboolean was_pipelined = download_pipelined (dl);

		/* only data that continues the file is written: a partial file
		 * never has a hole, so resuming from its size is right */
		if (!write_at (dl->fd, off, d, n, &error)) {
			download_finish (dl, g_steal_pointer (&error));
			goto out;
		}
		dl->off += n;
		if (dl->progress != NULL)
			dl->progress (dl->off, dl->total, dl->progress_data);
		if (dl->off == dl->total || n == 0) {
			/* resumed mid-file, the device only says "len" at offset 0:
			 * an empty chunk marks the end */
			if (dl->total == G_MAXUINT64)
				dl->total = dl->off;
			if (dl->off != dl->total)
				download_finish (dl, g_error_new (BGS_ERROR, BGS_ERROR_PROTOCOL,
								  "download of %s: file ended early", dl->name));
			else
				download_finish (dl, NULL);
			goto out;
		}
		if (n != dl->chunk)
			dl->chunk = n;
		if (!was_pipelined) {
			dl->next_req = dl->off;
			goto fill;
		}
	}
	/* the device answers in order: requests sent before this one and
	 * still unanswered were lost (or their answers were) */
	download_cancel_reqs (dl, r->order);
	/* data elsewhere (a stale or repeated request) is not written; if
	 * nothing on its way asks for where the file ends, ask again */
	if (!download_covered (dl, dl->off, r->order)) {
		g_debug ("SMP download of %s: going on from offset %" G_GUINT64_FORMAT, dl->name, dl->off);
		dl->client->stats.rewinds++;
		dl->next_req = dl->off;
	}
fill:
	download_fill (task);
out:
	download_maybe_return (task);
	g_object_unref (r->cancel);
	g_free (r);
}

static void
download_send (GTask *task, guint64 off)
{
	Download *dl = g_task_get_task_data (task);
	g_autoptr(GBytes) body = bgs_smp_build_fs_download (dl->name, off);
	DlReq *r = g_new0 (DlReq, 1);

	r->task = g_object_ref (task);
	r->cancel = g_cancellable_new ();
	r->order = dl->sent++;
	r->off = off;
	dl->reqs = g_list_append (dl->reqs, r);
	bgs_smp_client_call_async (dl->client, BGS_SMP_OP_READ, BGS_SMP_GROUP_FS, BGS_SMP_FS_FILE,
				   body, r->cancel, download_cb, r);
}

static void
download_fill (GTask *task)
{
	Download *dl = g_task_get_task_data (task);
	guint window = bgs_smp_client_get_window (dl->client);

	if (dl->finished)
		return;
	if (dl->outer != NULL && g_cancellable_is_cancelled (dl->outer)) {
		download_finish (dl, g_error_new_literal (BGS_ERROR, BGS_ERROR_CANCELED,
							  "SMP download cancelled"));
		return;
	}
	if (!download_pipelined (dl)) {
		/* one at a time until the device told its length and chunk */
		if (dl->reqs == NULL)
			download_send (task, dl->off);
		return;
	}
	while (!dl->finished && g_list_length (dl->reqs) < window && dl->next_req < dl->total) {
		guint64 off = dl->next_req;

		dl->next_req += dl->chunk;
		download_send (task, off);
	}
}

void
bgs_smp_client_download_file_async (BgsSmpClient *client, const char *name, int fd,
				    guint64 start_off, BgsSmpProgressFunc progress,
				    gpointer progress_data, GCancellable *cancellable,
				    GAsyncReadyCallback callback, gpointer user_data)
{
	GTask *task = g_task_new (NULL, cancellable, callback, user_data);
	Download *dl = g_new0 (Download, 1);

	g_task_set_source_tag (task, bgs_smp_client_download_file_async);
	g_task_set_check_cancellable (task, FALSE);
	dl->client = bgs_smp_client_ref (client);
	dl->name = g_strdup (name);
	dl->fd = fd;
	dl->off = start_off;
	dl->next_req = start_off;
	dl->total = G_MAXUINT64;
	dl->progress = progress;
	dl->progress_data = progress_data;
	if (cancellable != NULL) {
		dl->outer = g_object_ref (cancellable);
		dl->outer_id = g_cancellable_connect (cancellable, G_CALLBACK (download_outer_cancelled),
						      dl, NULL);
	}
	g_task_set_task_data (task, dl, (GDestroyNotify) download_free);
	download_fill (task);
	download_maybe_return (task);
	g_object_unref (task);
}

gboolean
bgs_smp_client_download_file_finish (BgsSmpClient *client, GAsyncResult *result, guint64 *total,
				     GError **error)
{
	GTask *task = G_TASK (result);
	Download *dl = g_task_get_task_data (task);

	if (!g_task_propagate_boolean (task, error))
		return FALSE;
	if (total != NULL)
		*total = dl->total;
	return TRUE;
}

/* typed commands */

typedef enum {
	CMD_IMAGE_STATE,
	CMD_RESET,
	CMD_ECHO,
	CMD_HASH,
} CmdKind;

typedef struct {
	BgsSmpClient *client;
	CmdKind kind;
} Cmd;

static void
cmd_free (Cmd *c)
{
	bgs_smp_client_unref (c->client);
	g_free (c);
}

typedef struct {
	GBytes *output;
	char *type;
	guint64 len;
} HashResult;

static void
hash_result_free (HashResult *h)
{
	g_clear_pointer (&h->output, g_bytes_unref);
	g_free (h->type);
	g_free (h);
}

static void
cmd_cb (GObject *source, GAsyncResult *result, gpointer user_data)
{
	g_autoptr(GTask) task = user_data;
	Cmd *c = g_task_get_task_data (task);
	g_autoptr(GError) error = NULL;
	g_autoptr(BgsSmpResponse) resp = bgs_smp_client_call_finish (c->client, result, &error);

	if (resp == NULL) {
		if (c->kind == CMD_RESET && g_error_matches (error, BGS_ERROR, BGS_ERROR_IO) &&
		    g_object_get_data (G_OBJECT (result), "bgs-smp-sent") != NULL) {
			g_debug ("SMP: link dropped after reset: taken as the reset");
			g_task_return_boolean (task, TRUE);
			return;
		}
		g_task_return_error (task, g_steal_pointer (&error));
		return;
	}
	if (!bgs_smp_body_check (resp->body, &error)) {
		g_task_return_error (task, g_steal_pointer (&error));
		return;
	}
	switch (c->kind) {
	case CMD_IMAGE_STATE: {
		GArray *slots = bgs_smp_parse_image_state (resp->body, &error);

		if (slots == NULL)
			g_task_return_error (task, g_steal_pointer (&error));
		else
			g_task_return_pointer (task, slots, (GDestroyNotify) g_array_unref);
		return;
	}
	case CMD_RESET:
		g_task_return_boolean (task, TRUE);
		return;
	case CMD_ECHO: {
		char *text = NULL;

		if (!bgs_smp_parse_echo (resp->body, &text, &error))
			g_task_return_error (task, g_steal_pointer (&error));
		else
			g_task_return_pointer (task, text, g_free);
		return;
	}
	case CMD_HASH: {
		HashResult *h = g_new0 (HashResult, 1);

		if (!bgs_smp_parse_fs_hash (resp->body, &h->type, &h->len, &h->output, &error)) {
			hash_result_free (h);
			g_task_return_error (task, g_steal_pointer (&error));
		} else {
			g_task_return_pointer (task, h, (GDestroyNotify) hash_result_free);
		}
		return;
	}
	default:
		g_assert_not_reached ();
	}
}

static void
cmd_start (BgsSmpClient *client, CmdKind kind, gpointer tag, guint8 op, guint16 group, guint8 id,
	   GBytes *body, GCancellable *cancellable, GAsyncReadyCallback callback, gpointer user_data)
{
	GTask *task = g_task_new (NULL, cancellable, callback, user_data);
	Cmd *c = g_new0 (Cmd, 1);

	g_task_set_source_tag (task, tag);
	g_task_set_check_cancellable (task, FALSE);
	c->client = bgs_smp_client_ref (client);
	c->kind = kind;
	g_task_set_task_data (task, c, (GDestroyNotify) cmd_free);
	bgs_smp_client_call_async (client, op, group, id, body, cancellable, cmd_cb, task);
}

void
bgs_smp_client_image_state_async (BgsSmpClient *client, BgsSmpImageAction action,
				  const guint8 *hash, GCancellable *cancellable,
				  GAsyncReadyCallback callback, gpointer user_data)
{
	g_autoptr(GBytes) body = NULL;

	if (action == BGS_SMP_IMAGE_READ) {
		cmd_start (client, CMD_IMAGE_STATE, bgs_smp_client_image_state_async, BGS_SMP_OP_READ,
			   BGS_SMP_GROUP_IMAGE, BGS_SMP_IMAGE_STATE, NULL, cancellable, callback, user_data);
		return;
	}
	body = bgs_smp_build_image_state_set (hash, action == BGS_SMP_IMAGE_CONFIRM);
	cmd_start (client, CMD_IMAGE_STATE, bgs_smp_client_image_state_async, BGS_SMP_OP_WRITE,
		   BGS_SMP_GROUP_IMAGE, BGS_SMP_IMAGE_STATE, body, cancellable, callback, user_data);
}

GArray *
bgs_smp_client_image_state_finish (BgsSmpClient *client, GAsyncResult *result, GError **error)
{
	return g_task_propagate_pointer (G_TASK (result), error);
}

void
bgs_smp_client_reset_async (BgsSmpClient *client, GCancellable *cancellable,
			    GAsyncReadyCallback callback, gpointer user_data)
{
	g_autoptr(GBytes) body = bgs_smp_build_reset (FALSE);

	cmd_start (client, CMD_RESET, bgs_smp_client_reset_async, BGS_SMP_OP_WRITE, BGS_SMP_GROUP_OS,
		   BGS_SMP_OS_RESET, body, cancellable, callback, user_data);
}

gboolean
bgs_smp_client_reset_finish (BgsSmpClient *client, GAsyncResult *result, GError **error)
{
	return g_task_propagate_boolean (G_TASK (result), error);
}

void
bgs_smp_client_echo_async (BgsSmpClient *client, const char *text, GCancellable *cancellable,
			   GAsyncReadyCallback callback, gpointer user_data)
{
	g_autoptr(GBytes) body = bgs_smp_build_echo (text);

	cmd_start (client, CMD_ECHO, bgs_smp_client_echo_async, BGS_SMP_OP_WRITE, BGS_SMP_GROUP_OS,
		   BGS_SMP_OS_ECHO, body, cancellable, callback, user_data);
}

char *
bgs_smp_client_echo_finish (BgsSmpClient *client, GAsyncResult *result, GError **error)
{
	return g_task_propagate_pointer (G_TASK (result), error);
}

void
bgs_smp_client_file_hash_async (BgsSmpClient *client, const char *name, const char *type,
				GCancellable *cancellable, GAsyncReadyCallback callback,
				gpointer user_data)
{
	g_autoptr(GBytes) body = bgs_smp_build_fs_hash (name, type, 0, 0);

	cmd_start (client, CMD_HASH, bgs_smp_client_file_hash_async, BGS_SMP_OP_READ, BGS_SMP_GROUP_FS,
		   BGS_SMP_FS_HASH, body, cancellable, callback, user_data);
}

GBytes *
bgs_smp_client_file_hash_finish (BgsSmpClient *client, GAsyncResult *result, char **type,
				 guint64 *len, GError **error)
{
	HashResult *h = g_task_propagate_pointer (G_TASK (result), error);
	GBytes *out;

	if (h == NULL)
		return NULL;
	if (type != NULL)
		*type = g_steal_pointer (&h->type);
	if (len != NULL)
		*len = h->len;
	out = g_steal_pointer (&h->output);
	hash_result_free (h);
	return out;
}

/* MCUmgr parameters (0/6) */

guint
bgs_smp_window_for_params (guint64 buf_count, guint window_cap)
{
	guint cap = window_cap > 0 ? window_cap : BGS_SMP_DEFAULT_WINDOW_CAP;

	/* one buffer stays free for the device's response */
	if (buf_count <= 2)
		return 1;
	return (guint) MIN (buf_count - 1, (guint64) MIN (cap, BGS_SMP_MAX_WINDOW));
}

typedef struct {
	BgsSmpClient *client;
	guint window_cap;
} ParamsCtx;

static void
params_ctx_free (ParamsCtx *p)
{
	bgs_smp_client_unref (p->client);
	g_free (p);
}

static void
params_cb (GObject *source, GAsyncResult *result, gpointer user_data)
{
	g_autoptr(GTask) task = user_data;
	ParamsCtx *p = g_task_get_task_data (task);
	g_autoptr(GError) error = NULL;
	g_autoptr(BgsSmpResponse) resp = bgs_smp_client_call_finish (p->client, result, &error);
	guint64 size = 0, count = 0;

	if (resp == NULL) {
		g_task_return_error (task, g_steal_pointer (&error));
		return;
	}
	if (!bgs_smp_body_check (resp->body, &error) ||
	    !bgs_smp_parse_os_params (resp->body, &size, &count, &error)) {
		/* no command 6 (MGMT_ERR_ENOTSUP) or a useless answer: the
		 * conservative defaults every SMP device takes */
		g_debug ("SMP: no buffer parameters (%s): one request in flight, %u-byte frames",
			 error->message, BGS_SMP_DEFAULT_MAX_FRAME);
		bgs_smp_client_set_max_frame (p->client, BGS_SMP_DEFAULT_MAX_FRAME);
		bgs_smp_client_set_window (p->client, 1);
		g_task_return_int (task, 0);
		return;
	}
	bgs_smp_client_set_max_frame (p->client, (gsize) MIN (size, BGS_SMP_PARAMS_MAX_FRAME));
	bgs_smp_client_set_window (p->client, bgs_smp_window_for_params (count, p->window_cap));
	g_debug ("SMP: device buffers %" G_GUINT64_FORMAT " x %" G_GUINT64_FORMAT " bytes: frames of %" G_GSIZE_FORMAT ", %u in flight",
		 count, size, p->client->max_frame, p->client->window);
	g_task_return_int (task, 1);
}

void
bgs_smp_client_query_params_async (BgsSmpClient *client, guint window_cap,
				   GCancellable *cancellable, GAsyncReadyCallback callback,
				   gpointer user_data)
{
	GTask *task = g_task_new (NULL, cancellable, callback, user_data);
	ParamsCtx *p = g_new0 (ParamsCtx, 1);

	g_task_set_source_tag (task, bgs_smp_client_query_params_async);
	g_task_set_check_cancellable (task, FALSE);
	p->client = bgs_smp_client_ref (client);
	p->window_cap = window_cap;
	g_task_set_task_data (task, p, (GDestroyNotify) params_ctx_free);
	bgs_smp_client_call_async (client, BGS_SMP_OP_READ, BGS_SMP_GROUP_OS, BGS_SMP_OS_PARAMS,
				   NULL, cancellable, params_cb, task);
}

gboolean
bgs_smp_client_query_params_finish (BgsSmpClient *client, GAsyncResult *result,
				    gboolean *supported, GError **error)
{
	gssize r = g_task_propagate_int (G_TASK (result), error);

	if (r < 0)
		return FALSE;
	if (supported != NULL)
		*supported = r == 1;
	return TRUE;
}
