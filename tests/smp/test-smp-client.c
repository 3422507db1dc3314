/* test-smp-client.c: fragmentation, reassembly, sequence matching,
 * timeouts and retries (fake clock), busy keep-alive, cancellation
 *
 * Frames follow Zephyr doc/services/device_mgmt/smp_protocol.rst "Frame:
 * The envelope"; the echo command is smp_groups/smp_group_0.rst "Echo",
 * the buffer parameters "MCUmgr Parameters" (command 6) there. Pipelined
 * uploads run against a fake device that behaves like Zephyr's
 * img_mgmt_upload (data at an unexpected offset is dropped and answered
 * with the expected offset). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>
#include <sys/stat.h>
#include <unistd.h>
#include <glib/gstdio.h>

#include "bgs-error.h"
#include "bgs-smp-client.h"

typedef struct {
	BgsClock *clock;
	BgsSmpClient *client;
	GPtrArray *packets; /* GBytes sent by the client */
	gboolean fail_send;
	/* result of the last call */
	gboolean done;
	BgsSmpResponse *resp;
	GError *error;
	GPtrArray *replies; /* echo texts, in completion order */
} Fixture;

static gboolean
fake_send (const guint8 *data, gsize len, gpointer user_data, GError **error)
{
	Fixture *f = user_data;

	if (f->fail_send) {
		g_set_error_literal (error, BGS_ERROR, BGS_ERROR_IO, "link down");
		return FALSE;
	}
	g_ptr_array_add (f->packets, g_bytes_new (data, len));
	return TRUE;
}

static int
setup (void **state)
{
	Fixture *f = g_new0 (Fixture, 1);

	f->clock = bgs_clock_new_fake (1000, 0);
	f->client = bgs_smp_client_new (f->clock, BGS_SMP_V1);
	f->packets = g_ptr_array_new_with_free_func ((GDestroyNotify) g_bytes_unref);
	f->replies = g_ptr_array_new_with_free_func (g_free);
	bgs_smp_client_set_transport (f->client, 23, fake_send, f, NULL);
	bgs_smp_client_set_timeout (f->client, 2 * BGS_USEC_PER_SEC, 2);
	*state = f;
	return 0;
}

static void
reset_result (Fixture *f)
{
	f->done = FALSE;
	g_clear_pointer (&f->resp, bgs_smp_response_free);
	g_clear_error (&f->error);
}

static int
teardown (void **state)
{
	Fixture *f = *state;

	bgs_smp_client_unref (f->client);
	while (g_main_context_iteration (NULL, FALSE))
		;
	reset_result (f);
	g_ptr_array_unref (f->packets);
	g_ptr_array_unref (f->replies);
	bgs_clock_unref (f->clock);
	g_free (f);
	return 0;
}

static void
call_cb (GObject *source, GAsyncResult *result, gpointer user_data)
{
	Fixture *f = user_data;
	BgsSmpResponse *resp;
	GError *error = NULL;
	g_autofree char *text = NULL;

	resp = bgs_smp_client_call_finish (f->client, result, &error);
	reset_result (f);
	f->resp = resp;
	f->error = error;
	f->done = TRUE;
	if (resp != NULL && bgs_smp_parse_echo (resp->body, &text, NULL))
		g_ptr_array_add (f->replies, g_steal_pointer (&text));
}

/* GTask completes from an idle: run it, bounded */
static void
settle (void)
{
	for (guint i = 0; i < 100 && g_main_context_iteration (NULL, FALSE); i++)
		;
}

static GBytes *
joined_packets (Fixture *f, guint from)
{
	GByteArray *a = g_byte_array_new ();

	for (guint i = from; i < f->packets->len; i++) {
		gsize n = 0;
		const guint8 *d = g_bytes_get_data (f->packets->pdata[i], &n);

		g_byte_array_append (a, d, (guint) n);
	}
	return g_byte_array_free_to_bytes (a);
}

static GBytes *
echo_response (guint8 seq, const char *text)
{
	BgsSmpBuilder *b = bgs_smp_builder_new ();
	g_autoptr(GBytes) body = NULL;

	bgs_smp_builder_add_string (b, "r", text);
	body = bgs_smp_builder_end (b);
	return bgs_smp_frame_build (BGS_SMP_OP_WRITE_RSP, BGS_SMP_V1, 0, 0, seq, body);
}

static void
feed (Fixture *f, GBytes *frame, gsize chunk)
{
	gsize len = 0;
	const guint8 *d = g_bytes_get_data (frame, &len);

	for (gsize off = 0; off < len; off += chunk)
		bgs_smp_client_receive (f->client, d + off, MIN (chunk, len - off));
}

static void
start_echo (Fixture *f, const char *text)
{
	g_autoptr(GBytes) body = bgs_smp_build_echo (text);

	bgs_smp_client_call_async (f->client, BGS_SMP_OP_WRITE, BGS_SMP_GROUP_OS, BGS_SMP_OS_ECHO,
				   body, NULL, call_cb, f);
}

/* a 100-character echo at MTU 23 goes out as 20-byte packets */
static void
test_fragmentation (void **state)
{
	Fixture *f = *state;
	g_autofree char *text = g_strnfill (100, 'x');
	g_autoptr(GBytes) sent = NULL;
	g_autoptr(GBytes) body = bgs_smp_build_echo (text);
	g_autoptr(GBytes) want = bgs_smp_frame_build (BGS_SMP_OP_WRITE, BGS_SMP_V1, 0, 0, 0, body);
	gsize total = g_bytes_get_size (want);

	start_echo (f, text);
	assert_int_equal (f->packets->len, (total + 19) / 20);
	for (guint i = 0; i + 1 < f->packets->len; i++)
		assert_int_equal (g_bytes_get_size (f->packets->pdata[i]), 20);
	sent = joined_packets (f, 0);
	assert_true (g_bytes_equal (sent, want));

	/* MTU 247: one packet of 244 bytes at most */
	g_ptr_array_set_size (f->packets, 0);
	bgs_smp_client_set_transport (f->client, 247, fake_send, f, NULL);
	settle ();
	start_echo (f, text);
	/* the first echo is still in flight, so nothing new goes out yet */
	assert_int_equal (f->packets->len, 0);
}

/* a response arriving in 1-, 7- and 20-byte slices is put back together */
static void
test_reassembly (void **state)
{
	Fixture *f = *state;
	gsize chunks[] = { 1, 7, 20, 1000 };

	for (guint i = 0; i < G_N_ELEMENTS (chunks); i++) {
		g_autofree char *text = g_strdup_printf ("reply-%u-%s", i, "abcdefghijklmnopqrstuvwxyz0123456789");
		g_autoptr(GBytes) rsp = echo_response ((guint8) i, text);
		g_autofree char *got = NULL;

		reset_result (f);
		start_echo (f, "q");
		feed (f, rsp, chunks[i]);
		settle ();
		assert_true (f->done);
		assert_null (f->error);
		assert_true (bgs_smp_parse_echo (f->resp->body, &got, NULL));
		assert_string_equal (got, text);
	}
}

/* two responses in one notification are both taken */
static void
test_two_frames_one_packet (void **state)
{
	Fixture *f = *state;
	g_autoptr(GBytes) a = echo_response (0, "one");
	g_autoptr(GBytes) b = echo_response (1, "two");
	GByteArray *both = g_byte_array_new ();
	guint completed = 0;

	g_byte_array_append (both, g_bytes_get_data (a, NULL), (guint) g_bytes_get_size (a));
	g_byte_array_append (both, g_bytes_get_data (b, NULL), (guint) g_bytes_get_size (b));
	start_echo (f, "1");
	/* queued behind the first, sent when it completes */
	{
		g_autoptr(GBytes) body = bgs_smp_build_echo ("2");

		bgs_smp_client_call_async (f->client, BGS_SMP_OP_WRITE, 0, 0, body, NULL, call_cb, f);
	}
	bgs_smp_client_receive (f->client, both->data, both->len);
	g_byte_array_unref (both);
	settle ();
	completed = f->replies->len;
	assert_int_equal (completed, 2);
	assert_string_equal (f->replies->pdata[0], "one");
	assert_string_equal (f->replies->pdata[1], "two");
}

/* responses with another sequence number, group, command or a request op
 * are dropped; the matching one completes the call */
static void
test_sequence_matching (void **state)
{
	Fixture *f = *state;
	g_autoptr(GBytes) stale = echo_response (0x7f, "stale");
	g_autoptr(GBytes) body = bgs_smp_build_echo ("x");
	g_autoptr(GBytes) wrong_group = bgs_smp_frame_build (BGS_SMP_OP_WRITE_RSP, 0, 1, 0, 0, body);
	g_autoptr(GBytes) not_rsp = bgs_smp_frame_build (BGS_SMP_OP_WRITE, 0, 0, 0, 0, body);
	g_autoptr(GBytes) good = echo_response (0, "good");
	BgsSmpClientStats st;
	g_autofree char *got = NULL;

	start_echo (f, "q");
	feed (f, stale, 5);
	feed (f, wrong_group, 100);
	feed (f, not_rsp, 100);
	settle ();
	assert_false (f->done);
	bgs_smp_client_get_stats (f->client, &st);
	assert_int_equal (st.dropped_frames, 3);
	feed (f, good, 100);
	settle ();
	assert_true (f->done);
	assert_true (bgs_smp_parse_echo (f->resp->body, &got, NULL));
	assert_string_equal (got, "good");

	/* an unsolicited response with nothing in flight is dropped */
	feed (f, stale, 100);
	bgs_smp_client_get_stats (f->client, &st);
	assert_int_equal (st.dropped_frames, 4);
}

/* no answer: sent again after each timeout, then BGS_ERROR_TIMED_OUT */
static void
test_timeout_retries (void **state)
{
	Fixture *f = *state;
	BgsSmpClientStats st;
	g_autoptr(GBytes) first = NULL;
	g_autoptr(GBytes) again = NULL;

	start_echo (f, "hi");
	assert_int_equal (f->packets->len, 1);
	first = g_bytes_ref (f->packets->pdata[0]);
	bgs_clock_fake_advance (f->clock, 2 * BGS_USEC_PER_SEC - 1);
	assert_int_equal (f->packets->len, 1);
	bgs_clock_fake_advance (f->clock, 1);
	assert_int_equal (f->packets->len, 2);
	again = g_bytes_ref (f->packets->pdata[1]);
	/* the same frame, same sequence number */
	assert_true (g_bytes_equal (first, again));
	bgs_clock_fake_advance (f->clock, 2 * BGS_USEC_PER_SEC);
	assert_int_equal (f->packets->len, 3);
	settle ();
	assert_false (f->done);
	bgs_clock_fake_advance (f->clock, 2 * BGS_USEC_PER_SEC);
	settle ();
	assert_true (f->done);
	assert_true (g_error_matches (f->error, BGS_ERROR, BGS_ERROR_TIMED_OUT));
	assert_non_null (strstr (f->error->message, "3 attempts"));
	assert_int_equal (f->packets->len, 3);
	bgs_smp_client_get_stats (f->client, &st);
	assert_int_equal (st.retransmits, 2);
	assert_int_equal (bgs_clock_pending (f->clock), 0);
}

/* an answer to the retransmission completes the call */
static void
test_retry_then_answer (void **state)
{
	Fixture *f = *state;
	g_autoptr(GBytes) rsp = echo_response (0, "late");

	start_echo (f, "hi");
	bgs_clock_fake_advance (f->clock, 2 * BGS_USEC_PER_SEC);
	assert_int_equal (f->packets->len, 2);
	feed (f, rsp, 20);
	settle ();
	assert_true (f->done);
	assert_null (f->error);
	assert_int_equal (bgs_clock_pending (f->clock), 0);
	/* a duplicate answer (to the first copy) arrives later: dropped */
	feed (f, rsp, 20);
	{
		BgsSmpClientStats st;

		bgs_smp_client_get_stats (f->client, &st);
		assert_int_equal (st.dropped_frames, 1);
	}
}

/* a partial response, then silence: the retry starts from a clean buffer */
static void
test_partial_then_timeout (void **state)
{
	Fixture *f = *state;
	g_autoptr(GBytes) rsp = echo_response (0, "complete");
	gsize len = 0;
	const guint8 *d = g_bytes_get_data (rsp, &len);

	start_echo (f, "hi");
	bgs_smp_client_receive (f->client, d, 10);
	bgs_clock_fake_advance (f->clock, 2 * BGS_USEC_PER_SEC);
	feed (f, rsp, 6);
	settle ();
	assert_true (f->done);
	assert_null (f->error);
}

/* MGMT_ERR_EBUSY: asked again after the busy delay, not counted as a retry */
static void
test_busy_keepalive (void **state)
{
	Fixture *f = *state;
	BgsSmpBuilder *b = bgs_smp_builder_new ();
	g_autoptr(GBytes) body = NULL;
	g_autoptr(GBytes) busy = NULL;
	g_autoptr(GBytes) ok = echo_response (0, "done");
	BgsSmpClientStats st;

	bgs_smp_builder_add_int (b, "rc", BGS_SMP_RC_EBUSY);
	body = bgs_smp_builder_end (b);
	busy = bgs_smp_frame_build (BGS_SMP_OP_WRITE_RSP, 0, 0, 0, 0, body);
	bgs_smp_client_set_busy (f->client, 500 * 1000, 10 * BGS_USEC_PER_SEC);
	start_echo (f, "erase");
	/* busy for 8 s, longer than timeout x attempts (6 s) */
	for (guint i = 0; i < 16; i++) {
		feed (f, busy, 100);
		bgs_clock_fake_advance (f->clock, 500 * 1000);
	}
	assert_int_equal (f->packets->len, 17);
	feed (f, ok, 100);
	settle ();
	assert_true (f->done);
	assert_null (f->error);
	bgs_smp_client_get_stats (f->client, &st);
	assert_int_equal (st.busy_retries, 16);
	assert_int_equal (st.retransmits, 0);
}

/* busy past the limit: the busy answer is returned to the caller */
static void
test_busy_limit (void **state)
{
	Fixture *f = *state;
	BgsSmpBuilder *b = bgs_smp_builder_new ();
	g_autoptr(GBytes) body = NULL;
	g_autoptr(GBytes) busy = NULL;
	g_autoptr(GError) error = NULL;

	bgs_smp_builder_add_int (b, "rc", BGS_SMP_RC_EBUSY);
	body = bgs_smp_builder_end (b);
	busy = bgs_smp_frame_build (BGS_SMP_OP_WRITE_RSP, 0, 0, 0, 0, body);
	bgs_smp_client_set_busy (f->client, 1000 * 1000, 3 * BGS_USEC_PER_SEC);
	start_echo (f, "erase");
	for (guint i = 0; i < 3; i++) {
		feed (f, busy, 100);
		bgs_clock_fake_advance (f->clock, 1000 * 1000);
	}
	feed (f, busy, 100);
	settle ();
	assert_true (f->done);
	assert_non_null (f->resp);
	assert_false (bgs_smp_body_check (f->resp->body, &error));
	assert_true (g_error_matches (error, BGS_ERROR, BGS_ERROR_BUSY));
}

static void
test_cancel (void **state)
{
	Fixture *f = *state;
	g_autoptr(GCancellable) c = g_cancellable_new ();
	g_autoptr(GBytes) body = bgs_smp_build_echo ("x");
	g_autoptr(GBytes) rsp = echo_response (0, "x");

	bgs_smp_client_call_async (f->client, BGS_SMP_OP_WRITE, 0, 0, body, c, call_cb, f);
	g_cancellable_cancel (c);
	settle ();
	assert_true (f->done);
	assert_true (g_error_matches (f->error, BGS_ERROR, BGS_ERROR_CANCELED));
	assert_int_equal (bgs_clock_pending (f->clock), 0);
	/* the late answer is dropped and the next request uses a new seq */
	feed (f, rsp, 100);
	reset_result (f);
	start_echo (f, "y");
	{
		BgsSmpHeader h;
		gsize n = 0;
		const guint8 *d = g_bytes_get_data (f->packets->pdata[1], &n);

		assert_true (bgs_smp_header_decode (d, n, &h, NULL));
		assert_int_equal (h.seq, 1);
	}
}

static void
test_link_lost (void **state)
{
	Fixture *f = *state;

	start_echo (f, "x");
	start_echo (f, "y");
	bgs_smp_client_detach (f->client);
	settle ();
	assert_true (f->done);
	assert_true (g_error_matches (f->error, BGS_ERROR, BGS_ERROR_IO));
	assert_int_equal (bgs_clock_pending (f->clock), 0);
	reset_result (f);
	start_echo (f, "z");
	settle ();
	assert_true (g_error_matches (f->error, BGS_ERROR, BGS_ERROR_IO));
}

static void
test_send_fails (void **state)
{
	Fixture *f = *state;

	f->fail_send = TRUE;
	start_echo (f, "x");
	settle ();
	assert_true (f->done);
	assert_true (g_error_matches (f->error, BGS_ERROR, BGS_ERROR_IO));
}

/* a corrupt body to our request fails that request with PROTOCOL */
static void
test_bad_body (void **state)
{
	Fixture *f = *state;
	const guint8 raw[] = { 0x03, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0xa1, 0x61 };

	start_echo (f, "x");
	bgs_smp_client_receive (f->client, raw, sizeof (raw));
	settle ();
	assert_true (f->done);
	assert_true (g_error_matches (f->error, BGS_ERROR, BGS_ERROR_PROTOCOL));
}

/* a device that only speaks the original protocol answers a v2 request
 * with MGMT_ERR_UNSUPPORTED_TOO_NEW: the client goes on in v1 */
static void
test_v2_fallback (void **state)
{
	Fixture *f = *state;
	BgsSmpBuilder *b = bgs_smp_builder_new ();
	g_autoptr(GBytes) body = NULL;
	g_autoptr(GBytes) too_new = NULL;
	g_autoptr(GBytes) ok = echo_response (0, "v1 it is");
	gsize n = 0;
	const guint8 *d;

	bgs_smp_client_unref (f->client);
	f->client = bgs_smp_client_new (f->clock, BGS_SMP_V2);
	bgs_smp_client_set_transport (f->client, 247, fake_send, f, NULL);
	bgs_smp_builder_add_int (b, "rc", BGS_SMP_RC_UNSUPPORTED_TOO_NEW);
	body = bgs_smp_builder_end (b);
	too_new = bgs_smp_frame_build (BGS_SMP_OP_WRITE_RSP, BGS_SMP_V1, 0, 0, 0, body);
	start_echo (f, "x");
	d = g_bytes_get_data (f->packets->pdata[0], &n);
	assert_int_equal (d[0], 0x0a); /* v2 write */
	feed (f, too_new, 100);
	assert_int_equal (f->packets->len, 2);
	d = g_bytes_get_data (f->packets->pdata[1], &n);
	assert_int_equal (d[0], 0x02); /* v1 write, same sequence number */
	assert_int_equal (d[6], 0);
	feed (f, ok, 100);
	settle ();
	assert_true (f->done);
	assert_null (f->error);
	/* and later requests are v1 from the start */
	start_echo (f, "y");
	d = g_bytes_get_data (f->packets->pdata[2], &n);
	assert_int_equal (d[0], 0x02);
}

static void
reset_cb (GObject *source, GAsyncResult *result, gpointer user_data)
{
	Fixture *f = user_data;

	f->done = bgs_smp_client_reset_finish (f->client, result, &f->error) || f->error != NULL;
}

/* the device resets before its answer gets out: still a reset */
static void
test_reset_link_drop (void **state)
{
	Fixture *f = *state;

	bgs_smp_client_reset_async (f->client, NULL, reset_cb, f);
	assert_int_equal (f->packets->len, 1);
	bgs_smp_client_detach (f->client);
	settle ();
	assert_true (f->done);
	assert_null (f->error);

	/* not connected: the reset never went out, which is an error */
	f->done = FALSE;
	bgs_smp_client_reset_async (f->client, NULL, reset_cb, f);
	settle ();
	assert_true (f->done);
	assert_true (g_error_matches (f->error, BGS_ERROR, BGS_ERROR_IO));
}

static void
state_cb (GObject *source, GAsyncResult *result, gpointer user_data)
{
	Fixture *f = user_data;
	g_autoptr(GArray) slots G_GNUC_UNUSED = bgs_smp_client_image_state_finish (f->client, result, &f->error);

	f->done = TRUE;
}

/* typed image state: a v2 group error becomes a GError naming it */
static void
test_image_state_typed_error (void **state)
{
	Fixture *f = *state;
	guint8 hash[32] = { 1 };
	BgsSmpBuilder *b = bgs_smp_builder_new ();
	BgsSmpBuilder *err = bgs_smp_builder_new ();
	g_autoptr(GBytes) body = NULL;
	g_autoptr(GBytes) rsp = NULL;
	BgsSmpHeader h;
	gsize n = 0;
	const guint8 *d;

	bgs_smp_builder_add_uint (err, "group", 1);
	bgs_smp_builder_add_uint (err, "rc", BGS_SMP_IMG_RC_HASH_NOT_FOUND);
	bgs_smp_builder_add_map (b, "err", err);
	body = bgs_smp_builder_end (b);
	rsp = bgs_smp_frame_build (BGS_SMP_OP_WRITE_RSP, BGS_SMP_V2, 1, 0, 0, body);
	bgs_smp_client_image_state_async (f->client, BGS_SMP_IMAGE_TEST, hash, NULL, state_cb, f);
	d = g_bytes_get_data (f->packets->pdata[0], &n);
	assert_true (bgs_smp_header_decode (d, n, &h, NULL));
	assert_int_equal (h.op, BGS_SMP_OP_WRITE);
	assert_int_equal (h.group, 1);
	assert_int_equal (h.id, 0);
	feed (f, rsp, 20);
	settle ();
	assert_true (f->done);
	assert_non_null (f->error);
	assert_non_null (strstr (f->error->message, "IMG_MGMT_RET_RC_HASH_NOT_FOUND"));
}

typedef struct {
	BgsSmpClient *client;
	GBytes *frame;
	gboolean done;
} Drop;

static void
drop_cb (GObject *source, GAsyncResult *result, gpointer user_data)
{
	Drop *d = user_data;
	g_autoptr(BgsSmpResponse) r G_GNUC_UNUSED = bgs_smp_client_call_finish (d->client, result, NULL);

	/* the owner lets go of the client from inside its callback */
	bgs_smp_client_unref (d->client);
	d->done = TRUE;
}

static gboolean
feed_in_idle (gpointer user_data)
{
	Drop *d = user_data;
	gsize len = 0;
	const guint8 *data = g_bytes_get_data (d->frame, &len);

	/* inside a source dispatch GTask completes at once, so the callback
	 * runs while the client is still parsing */
	bgs_smp_client_receive (d->client, data, len);
	return G_SOURCE_REMOVE;
}

static void
test_unref_in_callback (void **state)
{
	Fixture *f = *state;
	Drop d = { 0 };
	g_autoptr(GBytes) body = bgs_smp_build_echo ("x");

	d.client = bgs_smp_client_new (f->clock, BGS_SMP_V1);
	bgs_smp_client_set_transport (d.client, 23, fake_send, f, NULL);
	bgs_smp_client_call_async (d.client, BGS_SMP_OP_WRITE, 0, 0, body, NULL, drop_cb, &d);
	d.frame = echo_response (0, "x");
	/* the completion must come in a later main loop iteration than the call */
	settle ();
	g_idle_add (feed_in_idle, &d);
	for (guint i = 0; i < 100 && !d.done; i++)
		g_main_context_iteration (NULL, TRUE);
	assert_true (d.done);
	g_bytes_unref (d.frame);
}

static void
test_chunk_size (void **state)
{
	/* the whole frame of the largest chunk fits the limit */
	guint8 data[600];
	guint8 sha[32] = { 0 };

	memset (data, 0, sizeof (data));
	for (gsize max = 100; max <= 600; max += 37) {
		for (guint first = 0; first < 2; first++) {
			guint64 off = first ? 0 : 123456;
			gsize n = bgs_smp_upload_chunk_size (max, NULL, off, 400000);
			g_autoptr(GBytes) body = bgs_smp_build_image_upload (0, off, data, n, 400000, sha, TRUE);

			assert_true (n > 0);
			assert_true (8 + g_bytes_get_size (body) <= max);
			assert_true (8 + g_bytes_get_size (body) + 3 > max);
		}
	}
}

/* ---- pipelining: a fake device on the fake transport ---- */

/* the device side of the fake link: reassembles the client's packets into
 * request frames and keeps a Zephyr-like upload state (img_mgmt_upload:
 * data at any offset but the expected one is dropped and answered with the
 * expected offset) */
typedef struct {
	Fixture *f;
	guint next_packet;  /* first packet not yet taken */
	GByteArray *rx;
	GPtrArray *pending; /* request frames received, not yet handled */
	GByteArray *image;  /* what the device wrote */
	guint64 len;
	gboolean active;
	guint64 handled;
} FakeDev;

static void
fakedev_init (FakeDev *d, Fixture *f)
{
	memset (d, 0, sizeof (*d));
	d->f = f;
	d->next_packet = f->packets->len; /* what went before is not ours */
	d->rx = g_byte_array_new ();
	d->pending = g_ptr_array_new_with_free_func ((GDestroyNotify) g_bytes_unref);
	d->image = g_byte_array_new ();
}

static void
fakedev_clear (FakeDev *d)
{
	g_byte_array_unref (d->rx);
	g_ptr_array_unref (d->pending);
	g_byte_array_unref (d->image);
}

/* takes what the client sent since the last look */
static void
fakedev_collect (FakeDev *d)
{
	for (; d->next_packet < d->f->packets->len; d->next_packet++) {
		gsize n = 0;
		const guint8 *p = g_bytes_get_data (d->f->packets->pdata[d->next_packet], &n);

		g_byte_array_append (d->rx, p, (guint) n);
	}
	while (d->rx->len >= BGS_SMP_HEADER_SIZE) {
		BgsSmpHeader h;
		gsize need;

		assert_true (bgs_smp_header_decode (d->rx->data, d->rx->len, &h, NULL));
		need = BGS_SMP_HEADER_SIZE + h.len;
		if (d->rx->len < need)
			break;
		g_ptr_array_add (d->pending, g_bytes_new (d->rx->data, need));
		g_byte_array_remove_range (d->rx, 0, (guint) need);
	}
}

/* handles the oldest pending request; @lose drops it unanswered */
static void
fakedev_handle (FakeDev *d, gboolean lose)
{
	g_autoptr(GBytes) frame = NULL;
	g_autoptr(BgsSmpResponse) req = NULL;
	g_autoptr(GBytes) body = NULL;
	g_autoptr(GBytes) rsp = NULL;
	g_autoptr(GBytes) data = NULL;
	BgsSmpBuilder *b;
	guint64 off = 0;
	gsize n = 0;
	const guint8 *p;

	assert_true (d->pending->len > 0);
	frame = g_ptr_array_steal_index (d->pending, 0);
	d->handled++;
	if (lose)
		return;
	req = bgs_smp_response_parse (g_bytes_get_data (frame, NULL), g_bytes_get_size (frame), NULL);
	assert_non_null (req);
	assert_int_equal (req->hdr.group, BGS_SMP_GROUP_IMAGE);
	assert_int_equal (req->hdr.id, BGS_SMP_IMAGE_UPLOAD);
	assert_true (bgs_smp_map_get_uint (req->body, "off", &off, NULL));
	data = bgs_smp_map_get_bytes (req->body, "data", NULL);
	assert_non_null (data);
	p = g_bytes_get_data (data, &n);
	if (off == 0) {
		assert_true (bgs_smp_map_get_uint (req->body, "len", &d->len, NULL));
		g_byte_array_set_size (d->image, 0);
		d->active = TRUE;
	}
	if (d->active && off == d->image->len)
		g_byte_array_append (d->image, p, (guint) n);
	b = bgs_smp_builder_new ();
	bgs_smp_builder_add_uint (b, "off", d->image->len);
	if (d->active && d->image->len == d->len)
		bgs_smp_builder_add_bool (b, "match", TRUE);
	body = bgs_smp_builder_end (b);
	rsp = bgs_smp_frame_build (BGS_SMP_OP_WRITE_RSP, req->hdr.version, req->hdr.group,
				   req->hdr.id, req->hdr.seq, body);
	feed (d->f, rsp, 20);
}

static void
upload_done_cb (GObject *source, GAsyncResult *result, gpointer user_data)
{
	Fixture *f = user_data;

	reset_result (f);
	f->done = bgs_smp_client_upload_image_finish (f->client, result, &f->error) || TRUE;
}

static GBytes *
pattern_image (gsize size)
{
	guint8 *p = g_malloc (size);

	for (gsize i = 0; i < size; i++)
		p[i] = (guint8) (i * 7 + i / 251);
	return g_bytes_new_take (p, size);
}

static GBytes *
params_response (guint8 seq, guint64 size, guint64 count)
{
	BgsSmpBuilder *b = bgs_smp_builder_new ();
	g_autoptr(GBytes) body = NULL;

	bgs_smp_builder_add_uint (b, "buf_size", size);
	bgs_smp_builder_add_uint (b, "buf_count", count);
	body = bgs_smp_builder_end (b);
	return bgs_smp_frame_build (BGS_SMP_OP_READ_RSP, BGS_SMP_V1, BGS_SMP_GROUP_OS,
				    BGS_SMP_OS_PARAMS, seq, body);
}

static GBytes *
rc_response (guint8 op, guint16 group, guint8 id, guint8 seq, gint64 rc)
{
	BgsSmpBuilder *b = bgs_smp_builder_new ();
	g_autoptr(GBytes) body = NULL;

	bgs_smp_builder_add_int (b, "rc", rc);
	body = bgs_smp_builder_end (b);
	return bgs_smp_frame_build (op, BGS_SMP_V1, group, id, seq, body);
}

/* the outcome goes to f->replies as "supported", "unsupported" or "error" */
static void
params_done_cb (GObject *source, GAsyncResult *result, gpointer user_data)
{
	Fixture *f = user_data;
	gboolean supported = FALSE;
	gboolean ok;

	reset_result (f);
	ok = bgs_smp_client_query_params_finish (f->client, result, &supported, &f->error);
	f->done = TRUE;
	g_ptr_array_add (f->replies, g_strdup (ok ? (supported ? "supported" : "unsupported") : "error"));
}

/* asks 0/6 and answers it with @answer (seq filled in) */
static const char *
query_params (Fixture *f, guint cap, GBytes *(*answer) (guint8 seq, gpointer), gpointer data)
{
	g_autoptr(BgsSmpResponse) req = NULL;
	g_autoptr(GBytes) sent = NULL;
	g_autoptr(GBytes) rsp = NULL;
	guint from = f->packets->len;

	g_ptr_array_set_size (f->replies, 0);
	bgs_smp_client_query_params_async (f->client, cap, NULL, params_done_cb, f);
	sent = joined_packets (f, from);
	req = bgs_smp_response_parse (g_bytes_get_data (sent, NULL), g_bytes_get_size (sent), NULL);
	assert_non_null (req);
	/* smp_group_0.rst "MCUmgr Parameters": read, group 0, command 6, empty map */
	assert_int_equal (req->hdr.op, BGS_SMP_OP_READ);
	assert_int_equal (req->hdr.group, BGS_SMP_GROUP_OS);
	assert_int_equal (req->hdr.id, 6);
	rsp = answer (req->hdr.seq, data);
	feed (f, rsp, 20);
	settle ();
	assert_true (f->done);
	return f->replies->pdata[0];
}

static GBytes *
answer_params_1024x4 (guint8 seq, gpointer data)
{
	return params_response (seq, 1024, 4);
}

static GBytes *
answer_params_256x8 (guint8 seq, gpointer data)
{
	return params_response (seq, 256, 8);
}

static GBytes *
answer_params_huge (guint8 seq, gpointer data)
{
	return params_response (seq, 65535, 1000);
}

static GBytes *
answer_enotsup (guint8 seq, gpointer data)
{
	/* MGMT_ERR_ENOTSUP: firmware without the command */
	return rc_response (BGS_SMP_OP_READ_RSP, BGS_SMP_GROUP_OS, 6, seq, BGS_SMP_RC_ENOTSUP);
}

static GBytes *
answer_garbage (guint8 seq, gpointer data)
{
	/* buf_count 0 cannot be used */
	return params_response (seq, 1024, 0);
}

/* buf_size sizes the frames, buf_count - 1 (capped) the window */
static void
test_params_window (void **state)
{
	Fixture *f = *state;

	assert_int_equal (bgs_smp_client_get_window (f->client), 1);
	assert_string_equal (query_params (f, 0, answer_params_1024x4, NULL), "supported");
	assert_int_equal (bgs_smp_client_get_max_frame (f->client), 1024);
	assert_int_equal (bgs_smp_client_get_window (f->client), 3);
	/* the per-model cap wins */
	assert_string_equal (query_params (f, 2, answer_params_1024x4, NULL), "supported");
	assert_int_equal (bgs_smp_client_get_window (f->client), 2);
	assert_string_equal (query_params (f, 0, answer_params_256x8, NULL), "supported");
	assert_int_equal (bgs_smp_client_get_max_frame (f->client), 256);
	assert_int_equal (bgs_smp_client_get_window (f->client), BGS_SMP_DEFAULT_WINDOW_CAP);
	assert_string_equal (query_params (f, 16, answer_params_256x8, NULL), "supported");
	assert_int_equal (bgs_smp_client_get_window (f->client), 7);
	/* absurd buffers are bounded */
	assert_string_equal (query_params (f, 100, answer_params_huge, NULL), "supported");
	assert_int_equal (bgs_smp_client_get_max_frame (f->client), BGS_SMP_PARAMS_MAX_FRAME);
	assert_int_equal (bgs_smp_client_get_window (f->client), BGS_SMP_MAX_WINDOW);

	assert_int_equal (bgs_smp_window_for_params (1, 4), 1);
	assert_int_equal (bgs_smp_window_for_params (2, 4), 1);
	assert_int_equal (bgs_smp_window_for_params (3, 4), 2);
	assert_int_equal (bgs_smp_window_for_params (1000, 100), BGS_SMP_MAX_WINDOW);
}

/* no command 6 (rc NOT_SUPPORTED), or a useless answer: one in flight */
static void
test_params_unsupported (void **state)
{
	Fixture *f = *state;

	assert_string_equal (query_params (f, 0, answer_params_1024x4, NULL), "supported");
	assert_int_equal (bgs_smp_client_get_window (f->client), 3);
	assert_string_equal (query_params (f, 0, answer_enotsup, NULL), "unsupported");
	assert_null (f->error);
	assert_int_equal (bgs_smp_client_get_window (f->client), 1);
	assert_int_equal (bgs_smp_client_get_max_frame (f->client), BGS_SMP_DEFAULT_MAX_FRAME);
	assert_string_equal (query_params (f, 0, answer_params_1024x4, NULL), "supported");
	assert_string_equal (query_params (f, 0, answer_garbage, NULL), "unsupported");
	assert_int_equal (bgs_smp_client_get_window (f->client), 1);
}

/* a device that never answers: the query fails (timeout), not a hang */
static void
test_params_timeout (void **state)
{
	Fixture *f = *state;

	g_ptr_array_set_size (f->replies, 0);
	bgs_smp_client_query_params_async (f->client, 0, NULL, params_done_cb, f);
	for (guint i = 0; i < 3; i++)
		bgs_clock_fake_advance (f->clock, 2 * BGS_USEC_PER_SEC);
	settle ();
	assert_true (f->done);
	assert_string_equal (f->replies->pdata[0], "error");
	assert_true (g_error_matches (f->error, BGS_ERROR, BGS_ERROR_TIMED_OUT));
}

/* the first chunk goes alone, then @window chunks stay in flight (never
 * more), each filling the frame; the device gets the whole image */
static void
run_window_upload (Fixture *f, guint window, gsize max_frame, gsize size)
{
	g_autoptr(GBytes) img = pattern_image (size);
	FakeDev d;
	BgsSmpClientStats st;
	guint rounds = 0;

	fakedev_init (&d, f);
	bgs_smp_client_set_max_frame (f->client, max_frame);
	bgs_smp_client_set_window (f->client, window);
	reset_result (f);
	bgs_smp_client_upload_image_async (f->client, img, 0, FALSE, NULL, NULL, NULL,
					   upload_done_cb, f);
	fakedev_collect (&d);
	assert_int_equal (d.pending->len, 1);
	while (!f->done && rounds++ < 10000) {
		fakedev_collect (&d);
		if (d.pending->len == 0) {
			settle ();
			continue;
		}
		/* after the first answer, the window is full before any answer */
		if (d.handled > 0 && d.image->len + (guint64) window * max_frame < size)
			assert_int_equal (d.pending->len, window);
		assert_true (d.pending->len <= window);
		for (guint i = 0; i < d.pending->len; i++) {
			gsize n = g_bytes_get_size (d.pending->pdata[i]);

			assert_true (n <= max_frame);
		}
		fakedev_handle (&d, FALSE);
		settle ();
	}
	assert_true (f->done);
	assert_null (f->error);
	assert_int_equal (d.image->len, size);
	assert_memory_equal (d.image->data, g_bytes_get_data (img, NULL), size);
	bgs_smp_client_get_stats (f->client, &st);
	assert_int_equal (st.max_inflight, window);
	assert_int_equal (st.rewinds, 0);
	assert_int_equal (st.timeouts, 0);
	/* chunks fill the frame: no more requests than needed */
	assert_true (st.requests <= size / (max_frame - 64) + 2);
	assert_int_equal (bgs_clock_pending (f->clock), 0);
	fakedev_clear (&d);
}

static void
test_upload_window (void **state)
{
	Fixture *f = *state;

	run_window_upload (f, 3, 512, 40000);
}

static void
test_upload_window_one (void **state)
{
	Fixture *f = *state;

	run_window_upload (f, 1, 384, 10000);
}

/* a chunk lost on the way: the device answers the next ones with the lost
 * chunk's offset; the client goes back there at once (no timeout), takes
 * the lost request back, and the image arrives intact */
static void
test_upload_rewind_lost (void **state)
{
	Fixture *f = *state;
	gsize size = 30000;
	g_autoptr(GBytes) img = pattern_image (size);
	FakeDev d;
	BgsSmpClientStats st;
	guint rounds = 0;
	guint lost = 0;

	fakedev_init (&d, f);
	bgs_smp_client_set_max_frame (f->client, 300);
	bgs_smp_client_set_window (f->client, 4);
	reset_result (f);
	bgs_smp_client_upload_image_async (f->client, img, 0, FALSE, NULL, NULL, NULL,
					   upload_done_cb, f);
	while (!f->done && rounds++ < 10000) {
		fakedev_collect (&d);
		if (d.pending->len == 0) {
			settle ();
			continue;
		}
		/* lose the 3rd and the 40th request */
		if (d.handled == 2 || d.handled == 39) {
			fakedev_handle (&d, TRUE);
			lost++;
			continue;
		}
		fakedev_handle (&d, FALSE);
		settle ();
	}
	assert_true (f->done);
	assert_null (f->error);
	assert_int_equal (lost, 2);
	assert_int_equal (d.image->len, size);
	assert_memory_equal (d.image->data, g_bytes_get_data (img, NULL), size);
	bgs_smp_client_get_stats (f->client, &st);
	assert_int_equal (st.rewinds, 2);
	/* no waiting for the lost requests' timeouts */
	assert_int_equal (st.timeouts, 0);
	assert_int_equal (bgs_clock_pending (f->clock), 0);
	fakedev_clear (&d);
}

/* a duplicated chunk (the device handles one frame twice) and a device that
 * jumps ahead (it kept a partial upload): the client follows the offset the
 * device names and never sends bytes that differ from the image's */
static void
test_upload_rewind_duplicate_and_jump (void **state)
{
	Fixture *f = *state;
	gsize size = 20000;
	g_autoptr(GBytes) img = pattern_image (size);
	FakeDev d;
	BgsSmpClientStats st;
	guint rounds = 0;

	fakedev_init (&d, f);
	bgs_smp_client_set_max_frame (f->client, 400);
	bgs_smp_client_set_window (f->client, 3);
	reset_result (f);
	bgs_smp_client_upload_image_async (f->client, img, 0, FALSE, NULL, NULL, NULL,
					   upload_done_cb, f);
	while (!f->done && rounds++ < 10000) {
		fakedev_collect (&d);
		if (d.pending->len == 0) {
			settle ();
			continue;
		}
		if (d.handled == 5) {
			/* the same frame arrives twice */
			g_ptr_array_insert (d.pending, 1, g_bytes_ref (d.pending->pdata[0]));
		}
		if (d.handled == 1) {
			/* the device already holds the first 12000 bytes */
			g_byte_array_set_size (d.image, 0);
			g_byte_array_append (d.image, g_bytes_get_data (img, NULL), 12000);
			g_ptr_array_set_size (d.pending, 0);
			d.handled++;
			{
				/* answer the first chunk with the device's offset */
				BgsSmpBuilder *b = bgs_smp_builder_new ();
				g_autoptr(GBytes) body = NULL;
				g_autoptr(GBytes) rsp = NULL;

				bgs_smp_builder_add_uint (b, "off", 12000);
				body = bgs_smp_builder_end (b);
				rsp = bgs_smp_frame_build (BGS_SMP_OP_WRITE_RSP, BGS_SMP_V1, 1, 1, 1, body);
				feed (f, rsp, 20);
			}
			settle ();
			continue;
		}
		fakedev_handle (&d, FALSE);
		settle ();
	}
	assert_true (f->done);
	assert_null (f->error);
	assert_int_equal (d.image->len, size);
	assert_memory_equal (d.image->data, g_bytes_get_data (img, NULL), size);
	bgs_smp_client_get_stats (f->client, &st);
	assert_true (st.rewinds >= 1);
	fakedev_clear (&d);
}

/* without command 6 the upload keeps one request in flight */
static void
test_upload_fallback_one_in_flight (void **state)
{
	Fixture *f = *state;

	bgs_smp_client_set_window (f->client, 3);
	assert_string_equal (query_params (f, 0, answer_enotsup, NULL), "unsupported");
	run_window_upload (f, bgs_smp_client_get_window (f->client), BGS_SMP_DEFAULT_MAX_FRAME, 8000);
}

/* a fake fs device for downloads: answers requests in order with up to
 * @chunk bytes of @file at the asked offset ("len" at offset 0) */
static void
fakedev_serve_download (FakeDev *d, GBytes *file, gsize chunk, gboolean lose)
{
	g_autoptr(GBytes) frame = NULL;
	g_autoptr(BgsSmpResponse) req = NULL;
	g_autoptr(GBytes) body = NULL;
	g_autoptr(GBytes) rsp = NULL;
	BgsSmpBuilder *b;
	guint64 off = 0;
	gsize size = 0;
	const guint8 *data = g_bytes_get_data (file, &size);
	gsize n;

	frame = g_ptr_array_steal_index (d->pending, 0);
	d->handled++;
	if (lose)
		return;
	req = bgs_smp_response_parse (g_bytes_get_data (frame, NULL), g_bytes_get_size (frame), NULL);
	assert_non_null (req);
	assert_int_equal (req->hdr.group, BGS_SMP_GROUP_FS);
	assert_true (bgs_smp_map_get_uint (req->body, "off", &off, NULL));
	assert_true (off <= size);
	n = MIN (chunk, size - off);
	b = bgs_smp_builder_new ();
	bgs_smp_builder_add_uint (b, "off", off);
	bgs_smp_builder_add_bytes (b, "data", data + off, n);
	if (off == 0)
		bgs_smp_builder_add_uint (b, "len", size);
	body = bgs_smp_builder_end (b);
	rsp = bgs_smp_frame_build (BGS_SMP_OP_READ_RSP, req->hdr.version, req->hdr.group,
				   req->hdr.id, req->hdr.seq, body);
	feed (d->f, rsp, 20);
}

static void
download_done_cb (GObject *source, GAsyncResult *result, gpointer user_data)
{
	Fixture *f = user_data;
	guint64 total = 0;

	reset_result (f);
	bgs_smp_client_download_file_finish (f->client, result, &total, &f->error);
	f->done = TRUE;
}

/* pipelined download: 3 requests in flight once the length and chunk are
 * known; a short chunk mid-file (the device's chunk size changes) and a
 * lost request are recovered, the lost one without waiting for its timeout
 * (the device answers in order); the file never has a hole */
static void
test_download_window (void **state)
{
	Fixture *f = *state;
	gsize size = 5000;
	g_autoptr(GBytes) file = pattern_image (size);
	g_autofree char *path = g_build_filename (g_get_tmp_dir (), "smp-dl-XXXXXX", NULL);
	int fd = g_mkstemp (path);
	FakeDev d;
	BgsSmpClientStats st;
	guint rounds = 0;
	gsize chunk = 200;
	guint max_pending = 0;

	assert_true (fd >= 0);
	fakedev_init (&d, f);
	bgs_smp_client_set_window (f->client, 3);
	reset_result (f);
	bgs_smp_client_download_file_async (f->client, "/f", fd, 0, NULL, NULL, NULL,
					    download_done_cb, f);
	while (!f->done && rounds++ < 10000) {
		struct stat sb;

		fakedev_collect (&d);
		max_pending = MAX (max_pending, d.pending->len);
		assert_true (d.pending->len <= 3);
		if (d.pending->len == 0) {
			settle ();
			continue;
		}
		/* the chunk shrinks after the 6th answer; the 12th request is lost */
		if (d.handled == 6)
			chunk = 150;
		fakedev_serve_download (&d, file, chunk, d.handled == 12);
		settle ();
		/* what is on disk is always a prefix of the file */
		assert_int_equal (fstat (fd, &sb), 0);
		if (sb.st_size > 0) {
			g_autofree guint8 *buf = g_malloc (sb.st_size);

			assert_int_equal (pread (fd, buf, sb.st_size, 0), sb.st_size);
			assert_memory_equal (buf, g_bytes_get_data (file, NULL), sb.st_size);
		}
	}
	assert_true (f->done);
	assert_null (f->error);
	{
		g_autofree char *got = NULL;
		gsize got_len = 0;

		assert_true (g_file_get_contents (path, &got, &got_len, NULL));
		assert_int_equal (got_len, size);
		assert_memory_equal (got, g_bytes_get_data (file, NULL), size);
	}
	bgs_smp_client_get_stats (f->client, &st);
	assert_int_equal (max_pending, 3);
	assert_int_equal (st.max_inflight, 3);
	assert_true (st.rewinds >= 1);
	assert_int_equal (st.timeouts, 0);
	assert_int_equal (bgs_clock_pending (f->clock), 0);
	close (fd);
	g_unlink (path);
	fakedev_clear (&d);
}

int
main (void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown (test_fragmentation, setup, teardown),
		cmocka_unit_test_setup_teardown (test_reassembly, setup, teardown),
		cmocka_unit_test_setup_teardown (test_two_frames_one_packet, setup, teardown),
		cmocka_unit_test_setup_teardown (test_sequence_matching, setup, teardown),
		cmocka_unit_test_setup_teardown (test_timeout_retries, setup, teardown),
		cmocka_unit_test_setup_teardown (test_retry_then_answer, setup, teardown),
		cmocka_unit_test_setup_teardown (test_partial_then_timeout, setup, teardown),
		cmocka_unit_test_setup_teardown (test_busy_keepalive, setup, teardown),
		cmocka_unit_test_setup_teardown (test_busy_limit, setup, teardown),
		cmocka_unit_test_setup_teardown (test_cancel, setup, teardown),
		cmocka_unit_test_setup_teardown (test_link_lost, setup, teardown),
		cmocka_unit_test_setup_teardown (test_send_fails, setup, teardown),
		cmocka_unit_test_setup_teardown (test_bad_body, setup, teardown),
		cmocka_unit_test_setup_teardown (test_v2_fallback, setup, teardown),
		cmocka_unit_test_setup_teardown (test_reset_link_drop, setup, teardown),
		cmocka_unit_test_setup_teardown (test_image_state_typed_error, setup, teardown),
		cmocka_unit_test_setup_teardown (test_unref_in_callback, setup, teardown),
		cmocka_unit_test (test_chunk_size),
		cmocka_unit_test_setup_teardown (test_params_window, setup, teardown),
		cmocka_unit_test_setup_teardown (test_params_unsupported, setup, teardown),
		cmocka_unit_test_setup_teardown (test_params_timeout, setup, teardown),
		cmocka_unit_test_setup_teardown (test_upload_window, setup, teardown),
		cmocka_unit_test_setup_teardown (test_upload_window_one, setup, teardown),
		cmocka_unit_test_setup_teardown (test_upload_rewind_lost, setup, teardown),
		cmocka_unit_test_setup_teardown (test_upload_rewind_duplicate_and_jump, setup, teardown),
		cmocka_unit_test_setup_teardown (test_upload_fallback_one_in_flight, setup, teardown),
		cmocka_unit_test_setup_teardown (test_download_window, setup, teardown),
	};

	return cmocka_run_group_tests (tests, NULL, NULL);
}
