/* bgs-profile-test-rfcomm.c: the "test-rfcomm" entry point: the app's
 * "channel" socket relayed to an RFCOMM session with the device.
 *
 * Frames both ways on the channel: type (1 byte), payload length (4, big
 * endian), payload. The app sends 'D' (bytes for the device) and 'C'
 * (control text: "complete", "fail <message>", "progress <percent>
 * <status>"); the agent sends 'D' (bytes from the device) and 'E' (event
 * text: "connected <payload>", "disconnected <why>", "reconnected
 * <payload>", "error <why>", "canceled <reason>"). Only the RFCOMM I/O
 * counts for the idle rule, never the channel's. A servicing run survives
 * the device rebooting: data the app sends while the link is down is
 * dropped, and "reconnected" tells it to resume. See doc/dbus-api.md.
 * Only available with EnableTestProfile=true. */
#include "bgs-profile-test.h"
#include "bgs-profile-test-rfcomm.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <glib-unix.h>

#include "bgs-error.h"

/* the RFCOMM "bulk" service of bgsync-wearable (doc/wearable.md) */
#define BULK_UUID "29998351-3f45-4f44-905a-b0e5db09b33a"
#define FRAME_HEADER BGS_TEST_CHANNEL_HEADER
#define MAX_FRAME BGS_TEST_CHANNEL_MAX_FRAME
#define MAX_CONTROL BGS_TEST_CHANNEL_MAX_CONTROL
/* app -> device: stop reading the channel while this much is queued for
 * the link, read again below LOW */
#define LINK_HIGH (512 * 1024)
#define LINK_LOW (128 * 1024)
/* device -> app: an app that does not read its channel fails the run */
#define CHANNEL_MAX (16 * 1024 * 1024)

typedef struct {
	BgsRun *run;             /* unowned: the run owns us */
	int fd;                  /* the channel */
	GSource *in_src;
	GSource *out_src;
	GByteArray *in;          /* channel bytes not yet parsed */
	GByteArray *out;         /* channel bytes not yet written, from out_off */
	gsize out_off;
	BgsTransport *transport;
	GCancellable *cancellable;
	gboolean link_up;
	guint64 queued;          /* bytes handed to the transport ... */
	guint64 sent;            /* ... and those it wrote, since the link came up */
	guint64 dropped;         /* app bytes dropped while the link was down */
	gboolean done;
} RfcommRun;

static void channel_watch_in (RfcommRun *r);
static void channel_flush (RfcommRun *r);

static void
rfcomm_run_free (gpointer data)
{
	RfcommRun *r = data;

	g_cancellable_cancel (r->cancellable);
	g_object_unref (r->cancellable);
	if (r->transport != NULL) {
		g_signal_handlers_disconnect_by_data (r->transport, r);
		bgs_transport_close (r->transport);
		g_object_unref (r->transport);
	}
	if (r->in_src != NULL) {
		g_source_destroy (r->in_src);
		g_source_unref (r->in_src);
	}
	if (r->out_src != NULL) {
		g_source_destroy (r->out_src);
		g_source_unref (r->out_src);
	}
	if (r->fd >= 0)
		close (r->fd);
	g_byte_array_unref (r->in);
	g_byte_array_unref (r->out);
	g_free (r);
}

/* stops everything but the channel's last words */
static void
rfcomm_stop (RfcommRun *r)
{
	r->done = TRUE;
	g_cancellable_cancel (r->cancellable);
	if (r->in_src != NULL) {
		g_source_destroy (r->in_src);
		g_clear_pointer (&r->in_src, g_source_unref);
	}
	if (r->transport != NULL) {
		g_signal_handlers_disconnect_by_data (r->transport, r);
		bgs_transport_close (r->transport);
	}
}

static void
channel_queue (RfcommRun *r, char type, const void *data, gsize len)
{
	guint8 hdr[FRAME_HEADER];
	guint32 be = GUINT32_TO_BE ((guint32) len);

	if (r->fd < 0)
		return;
	hdr[0] = (guint8) type;
	memcpy (hdr + 1, &be, 4);
	g_byte_array_append (r->out, hdr, sizeof hdr);
	if (len > 0)
		g_byte_array_append (r->out, data, len);
	channel_flush (r);
}

static void
channel_event (RfcommRun *r, const char *format, ...) G_GNUC_PRINTF (2, 3);

static void
channel_event (RfcommRun *r, const char *format, ...)
{
	va_list args;
	g_autofree char *text = NULL;

	va_start (args, format);
	text = g_strdup_vprintf (format, args);
	va_end (args);
	channel_queue (r, 'E', text, strlen (text));
}

static void
rfcomm_fail (RfcommRun *r, BgsError code, const char *format, ...) G_GNUC_PRINTF (3, 4);

static void
rfcomm_fail (RfcommRun *r, BgsError code, const char *format, ...)
{
	va_list args;
	g_autoptr(GError) error = NULL;

	if (r->done)
		return;
	va_start (args, format);
	error = g_error_new_valist (BGS_ERROR, code, format, args);
	va_end (args);
	g_info ("task %" G_GINT64_FORMAT ": %s", bgs_run_get_task_id (r->run), error->message);
	channel_event (r, "error %s", error->message);
	rfcomm_stop (r);
	bgs_run_complete_error (r->run, error);
}

static gboolean
channel_writable_cb (int fd, GIOCondition cond, gpointer user_data)
{
	RfcommRun *r = user_data;

	g_clear_pointer (&r->out_src, g_source_unref);
	channel_flush (r);
	return G_SOURCE_REMOVE;
}

static void
channel_flush (RfcommRun *r)
{
	while (r->fd >= 0 && r->out->len > r->out_off) {
		gssize n = send (r->fd, r->out->data + r->out_off, r->out->len - r->out_off,
				 MSG_DONTWAIT | MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			if (r->out_src == NULL) {
				r->out_src = g_unix_fd_source_new (r->fd, G_IO_OUT | G_IO_ERR | G_IO_HUP);
				g_source_set_callback (r->out_src, G_SOURCE_FUNC (channel_writable_cb), r, NULL);
				g_source_attach (r->out_src, NULL);
			}
			break;
		}
		if (n <= 0) {
			/* the app hung up: the reader reports it (or the run is over) */
			g_byte_array_set_size (r->out, 0);
			r->out_off = 0;
			break;
		}
		r->out_off += n;
	}
	if (r->out_off == r->out->len) {
		g_byte_array_set_size (r->out, 0);
		r->out_off = 0;
	} else if (r->out_off > MAX_FRAME) {
		g_byte_array_remove_range (r->out, 0, r->out_off);
		r->out_off = 0;
	}
}

/* ---- device -> app --------------------------------------------------------- */

static void
packet_cb (BgsTransport *transport, GBytes *packet, gpointer user_data)
{
	RfcommRun *r = user_data;
	gsize len = 0;
	const guint8 *data = g_bytes_get_data (packet, &len);

	if (r->out->len - r->out_off + len > CHANNEL_MAX) {
		rfcomm_fail (r, BGS_ERROR_IO, "the app does not read its channel");
		return;
	}
	channel_queue (r, 'D', data, len);
}

static void
transport_io_cb (BgsTransport *transport, guint64 in, guint64 out, gpointer user_data)
{
	RfcommRun *r = user_data;

	r->sent += out;
	/* the link took it: read more from the app */
	if (r->queued - r->sent < LINK_LOW)
		channel_watch_in (r);
}

static void
disconnected_cb (BgsTransport *transport, GError *error, gpointer user_data)
{
	RfcommRun *r = user_data;
	const char *why = error != NULL ? error->message : "disconnected";

	r->link_up = FALSE;
	channel_event (r, "disconnected %s", why);
	if (bgs_run_get_trigger (r->run) != BGS_TRIGGER_DEVICE_SERVICING) {
		/* device use is never silently reconnected (the agent has
		 * canceled it for the device leaving range already) */
		rfcomm_fail (r, BGS_ERROR_IO, "lost the RFCOMM link to the device: %s", why);
		return;
	}
	/* what the transport had queued is gone; the app resumes */
	r->queued = r->sent = 0;
	channel_watch_in (r);
}

static void
reconnected_cb (BgsTransport *transport, gpointer user_data)
{
	RfcommRun *r = user_data;

	r->link_up = TRUE;
	r->queued = r->sent = 0;
	channel_event (r, "reconnected %u", bgs_transport_get_payload_size (transport));
	channel_watch_in (r);
}

/* ---- app -> device ------------------------------------------------------------ */

static gboolean
send_to_device (RfcommRun *r, const guint8 *data, gsize len)
{
	guint max = bgs_transport_get_payload_size (r->transport);
	g_autoptr(GError) error = NULL;

	if (!r->link_up) {
		r->dropped += len;
		return TRUE;
	}
	for (gsize off = 0; off < len; ) {
		gsize n = MIN (len - off, (gsize) max);

		/* counted first: the transport may report it written at once */
		r->queued += n;
		if (!bgs_transport_send_data (r->transport, data + off, n, &error)) {
			rfcomm_fail (r, BGS_ERROR_IO, "cannot send to the device: %s", error->message);
			return FALSE;
		}
		/* a write error drops the link inside the send: device use is
		 * canceled there, servicing drops the rest */
		if (r->done)
			return FALSE;
		if (!r->link_up) {
			r->dropped += len - off - n;
			return TRUE;
		}
		off += n;
	}
	return TRUE;
}

/* ---- the channel's framing (pure: fuzzed) --------------------------------- */

BgsTestChannelParse
bgs_test_channel_frame_parse (const guint8 *data, gsize len, BgsTestChannelFrame *frame)
{
	guint32 plen;

	if (len < FRAME_HEADER)
		return BGS_TEST_CHANNEL_NEED_MORE;
	memcpy (&plen, data + 1, 4);
	plen = GUINT32_FROM_BE (plen);
	if (plen > MAX_FRAME || (data[0] != 'D' && data[0] != 'C') ||
	    (data[0] == 'C' && plen > MAX_CONTROL))
		return BGS_TEST_CHANNEL_MALFORMED;
	if (len - FRAME_HEADER < plen)
		return BGS_TEST_CHANNEL_NEED_MORE;
	frame->type = (char) data[0];
	frame->payload = data + FRAME_HEADER;
	frame->len = plen;
	frame->size = FRAME_HEADER + (gsize) plen;
	return BGS_TEST_CHANNEL_FRAME;
}

BgsTestControl
bgs_test_channel_control_parse (const guint8 *payload, gsize len, guint *percent, char **text)
{
	g_autofree char *line = g_strndup ((const char *) payload, len);

	*percent = 0;
	*text = NULL;
	if (strlen (line) != len || !g_utf8_validate (line, -1, NULL))
		return BGS_TEST_CONTROL_NOT_TEXT;
	if (g_strcmp0 (line, "complete") == 0)
		return BGS_TEST_CONTROL_COMPLETE;
	if (g_str_has_prefix (line, "fail ")) {
		*text = g_strdup (line + 5);
		return BGS_TEST_CONTROL_FAIL;
	}
	if (g_str_has_prefix (line, "progress ")) {
		guint64 value;
		char *end = NULL;

		value = g_ascii_strtoull (line + 9, &end, 10);
		if (end == line + 9 || value > 100)
			return BGS_TEST_CONTROL_BAD_PROGRESS;
		while (*end == ' ')
			end++;
		*percent = (guint) value;
		*text = g_strdup (end);
		return BGS_TEST_CONTROL_PROGRESS;
	}
	return BGS_TEST_CONTROL_UNKNOWN;
}

/* FALSE once the run is over */
static gboolean
handle_control (RfcommRun *r, const guint8 *payload, gsize len)
{
	g_autofree char *text = NULL;
	guint percent;

	switch (bgs_test_channel_control_parse (payload, len, &percent, &text)) {
	case BGS_TEST_CONTROL_COMPLETE:
		rfcomm_stop (r);
		bgs_run_complete (r->run, TRUE, "", "");
		return FALSE;
	case BGS_TEST_CONTROL_FAIL:
		rfcomm_stop (r);
		bgs_run_complete (r->run, FALSE, "org.bgsync.Error.Failed", text);
		return FALSE;
	case BGS_TEST_CONTROL_PROGRESS:
		bgs_run_progress (r->run, percent, text);
		return TRUE;
	case BGS_TEST_CONTROL_NOT_TEXT:
		channel_event (r, "error control is not text");
		return TRUE;
	case BGS_TEST_CONTROL_BAD_PROGRESS:
		channel_event (r, "error bad progress");
		return TRUE;
	case BGS_TEST_CONTROL_UNKNOWN:
	default:
		channel_event (r, "error unknown control");
		return TRUE;
	}
}

/* parses whole frames; FALSE once the run is over */
static gboolean
channel_parse (RfcommRun *r)
{
	gsize used = 0;
	gboolean alive = TRUE;

	while (alive) {
		BgsTestChannelFrame f;
		BgsTestChannelParse p = bgs_test_channel_frame_parse (r->in->data + used,
								      r->in->len - used, &f);

		if (p == BGS_TEST_CHANNEL_MALFORMED) {
			rfcomm_fail (r, BGS_ERROR_INVALID_ARGS, "malformed frame on the channel");
			return FALSE;
		}
		if (p == BGS_TEST_CHANNEL_NEED_MORE)
			break;
		if (f.type == 'D')
			alive = send_to_device (r, f.payload, f.len);
		else
			alive = handle_control (r, f.payload, f.len);
		used += f.size;
	}
	if (alive)
		g_byte_array_remove_range (r->in, 0, used);
	return alive;
}

static gboolean
channel_readable_cb (int fd, GIOCondition cond, gpointer user_data)
{
	RfcommRun *r = user_data;
	/* the run (and so r) may finish and be dropped in what follows */
	g_autoptr(BgsRun) keep = g_object_ref (r->run);
	guint8 buf[16384];
	gssize n;

	if (r->link_up && r->queued - r->sent >= LINK_HIGH) {
		/* back-pressure: the link drains first */
		g_clear_pointer (&r->in_src, g_source_unref);
		return G_SOURCE_REMOVE;
	}
	n = recv (fd, buf, sizeof buf, MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return G_SOURCE_CONTINUE;
	if (n <= 0) {
		g_clear_pointer (&r->in_src, g_source_unref);
		rfcomm_fail (r, BGS_ERROR_IO, "channel closed");
		return G_SOURCE_REMOVE;
	}
	g_byte_array_append (r->in, buf, n);
	if (!channel_parse (r) || r->done) {
		/* the run is over: rfcomm_stop() destroyed this source */
		return G_SOURCE_REMOVE;
	}
	return G_SOURCE_CONTINUE;
}

static void
channel_watch_in (RfcommRun *r)
{
	if (r->done || r->in_src != NULL || r->fd < 0)
		return;
	r->in_src = g_unix_fd_source_new (r->fd, G_IO_IN | G_IO_HUP | G_IO_ERR);
	g_source_set_callback (r->in_src, G_SOURCE_FUNC (channel_readable_cb), r, NULL);
	g_source_attach (r->in_src, NULL);
}

/* ---- the run ------------------------------------------------------------------ */

static gboolean
is_canceled (const GError *error)
{
	return g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED) ||
	       g_error_matches (error, BGS_ERROR, BGS_ERROR_CANCELED);
}

static void
open_cb (GObject *source, GAsyncResult *res, gpointer user_data)
{
	g_autoptr(GError) error = NULL;
	BgsTransport *transport = bgs_run_open_transport_finish (BGS_RUN (source), res, &error);
	RfcommRun *r;

	if (transport == NULL) {
		/* canceled: the run (and its data) may be gone already */
		if (is_canceled (error))
			return;
		r = bgs_run_get_profile_data (BGS_RUN (source));
		if (r != NULL)
			rfcomm_fail (r, error->domain == BGS_ERROR ? (BgsError) error->code : BGS_ERROR_IO,
				     "cannot open the RFCOMM channel: %s", error->message);
		return;
	}
	r = bgs_run_get_profile_data (BGS_RUN (source));
	if (r == NULL || r->done) {
		bgs_transport_close (transport);
		g_object_unref (transport);
		return;
	}
	r->transport = transport;
	r->link_up = TRUE;
	g_signal_connect (transport, "packet", G_CALLBACK (packet_cb), r);
	g_signal_connect (transport, "io", G_CALLBACK (transport_io_cb), r);
	g_signal_connect (transport, "disconnected", G_CALLBACK (disconnected_cb), r);
	g_signal_connect (transport, "reconnected", G_CALLBACK (reconnected_cb), r);
	bgs_run_progress (r->run, 0, "connected");
	channel_event (r, "connected %u", bgs_transport_get_payload_size (transport));
	channel_watch_in (r);
}

static void
rfcomm_start (BgsRun *run)
{
	BgsTransportRequest req = { 0 };
	const char *args = bgs_run_get_arguments (run);
	const char *uuid = bgs_run_get_param (run, "UUID");
	int fd = bgs_run_steal_fd (run, "channel");
	RfcommRun *r;

	if (fd < 0) {
		bgs_run_complete (run, FALSE, "org.bgsync.Error.InvalidArgs",
				  "test-rfcomm needs the \"channel\" file descriptor");
		return;
	}
	/* a socket the agent can poll, never a blocking one */
	if (!g_unix_set_fd_nonblocking (fd, TRUE, NULL)) {
		close (fd);
		bgs_run_complete (run, FALSE, "org.bgsync.Error.InvalidArgs",
				  "the \"channel\" file descriptor is unusable");
		return;
	}
	r = g_new0 (RfcommRun, 1);
	r->run = run;
	r->fd = fd;
	r->in = g_byte_array_new ();
	r->out = g_byte_array_new ();
	r->cancellable = g_cancellable_new ();
	bgs_run_set_profile_data (run, r, rfcomm_run_free);
	/* the app may name another UUID (an unserved one, in tests) */
	if (args != NULL && g_uuid_string_is_valid (args))
		uuid = args;
	req.kind = BGS_TRANSPORT_RFCOMM;
	req.service_uuid = uuid != NULL ? uuid : BULK_UUID;
	req.survive_reboot = bgs_run_get_trigger (run) == BGS_TRIGGER_DEVICE_SERVICING;
	bgs_run_progress (run, 0, "connecting to the device");
	bgs_run_open_transport_async (run, &req, r->cancellable, open_cb, NULL);
}

static void
rfcomm_cancel (BgsRun *run, BgsCancelReason reason)
{
	RfcommRun *r = bgs_run_get_profile_data (run);

	if (r == NULL)
		return;
	rfcomm_stop (r);
	channel_event (r, "canceled %s", bgs_cancel_reason_to_string (reason));
	/* the app reads the event, then the end of the channel */
	if (r->fd >= 0 && r->out->len == r->out_off)
		shutdown (r->fd, SHUT_RDWR);
}

static const BgsProfile test_rfcomm_profile = {
	.name = "test-rfcomm",
	.triggers = BGS_PROFILE_TRIGGER (BGS_TRIGGER_DEVICE_USE) |
		    BGS_PROFILE_TRIGGER (BGS_TRIGGER_DEVICE_SERVICING),
	.testing_only = TRUE,
	.start = rfcomm_start,
	.cancel = rfcomm_cancel,
};

void
bgs_profile_test_rfcomm_register (void)
{
	bgs_profile_register (&test_rfcomm_profile);
}
