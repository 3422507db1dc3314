/* test-smp-server.c: the SMP client against the SMP server over a
 * SOCK_SEQPACKET socketpair (each write is one ATT packet, as with BlueZ's
 * AcquireWrite/AcquireNotify fds): full 400 KiB image uploads at MTU 247
 * and 23, test + reset + confirm, revert, resume after a lost link, device
 * rejecting images, busy erase, and file download/upload/hash.
 *
 * Commands per Zephyr doc/services/device_mgmt/smp_groups/smp_group_1.rst
 * (state, upload) and smp_group_8.rst (file download/upload/hash). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>
#include <fcntl.h>
#include <glib/gstdio.h>

#include "bgs-error.h"
#include "bgs-smp-client.h"
#include "bgs-smp-server.h"
#include "smp-test-image.h"

#define WAIT_LIMIT_USEC (60 * G_USEC_PER_SEC)

typedef struct {
	char *dir;
	BgsClock *clock;
	BgsSmpServer *server;
	BgsSmpClient *client;
	BgsSmpServerOptions opt;
	gboolean done;
	gboolean ok;
	GError *error;
	BgsSmpResponse *resp;
	guint resets;
	guint64 last_progress;
	guint progress_calls;
	gboolean pipeline; /* ask the device's buffers (0/6) after connecting */
	gboolean params_supported;
} Fx;

static void
rm_rf (const char *path)
{
	g_autoptr(GDir) d = g_dir_open (path, 0, NULL);
	const char *name;

	if (d != NULL) {
		while ((name = g_dir_read_name (d)) != NULL) {
			g_autofree char *child = g_build_filename (path, name, NULL);

			rm_rf (child);
		}
	}
	g_remove (path);
}

static gboolean on_limit (gpointer user_data);

static void
on_reset (BgsSmpServer *server, gpointer user_data)
{
	Fx *f = user_data;

	f->resets++;
}

static void
connect_pair (Fx *f, guint mtu)
{
	int sv[2];
	g_autoptr(GError) error = NULL;

	assert_int_equal (socketpair (AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
	assert_true (bgs_smp_client_attach_fds (f->client, sv[0], sv[0], mtu, &error));
	assert_true (bgs_smp_server_attach_fds (f->server, sv[1], sv[1], mtu, &error));
}

static void
start_server (Fx *f)
{
	g_autoptr(GError) error = NULL;

	f->server = bgs_smp_server_new (f->clock, f->dir, &f->opt, &error);
	assert_non_null (f->server);
	bgs_smp_server_set_reset_func (f->server, on_reset, f);
	assert_true (bgs_smp_server_boot (f->server, &error));
}

static void
install_running (Fx *f, guint8 major, guint8 minor)
{
	g_autoptr(GByteArray) img = smp_test_image_new (major, minor, 0, 0, 5000, 42, FALSE, NULL);
	g_autofree char *slot0 = g_build_filename (f->dir, "slot0.bin", NULL);

	assert_true (g_file_set_contents (slot0, (const char *) img->data, img->len, NULL));
}

static int
setup (void **state)
{
	Fx *f = g_new0 (Fx, 1);

	f->dir = g_dir_make_tmp ("smp-server-XXXXXX", NULL);
	f->clock = bgs_clock_new_real ();
	f->client = bgs_smp_client_new (f->clock, BGS_SMP_V2);
	bgs_smp_client_set_max_frame (f->client, 512);
	install_running (f, 1, 0);
	*state = f;
	return 0;
}

static void
clear_result (Fx *f)
{
	f->done = FALSE;
	f->ok = FALSE;
	g_clear_error (&f->error);
	g_clear_pointer (&f->resp, bgs_smp_response_free);
}

static int
teardown (void **state)
{
	Fx *f = *state;

	bgs_smp_client_unref (f->client);
	bgs_smp_server_free (f->server);
	while (g_main_context_iteration (NULL, FALSE))
		;
	clear_result (f);
	bgs_clock_unref (f->clock);
	rm_rf (f->dir);
	g_free (f->dir);
	g_free (f);
	return 0;
}

static gboolean
on_limit (gpointer user_data)
{
	gboolean *hit = user_data;

	*hit = TRUE;
	return G_SOURCE_REMOVE;
}

/* runs the main loop until the operation completes, bounded */
static void
wait_done (Fx *f)
{
	gboolean hit = FALSE;
	guint id = g_timeout_add_seconds (WAIT_LIMIT_USEC / G_USEC_PER_SEC, on_limit, &hit);

	while (!f->done && !hit)
		g_main_context_iteration (NULL, TRUE);
	if (!hit)
		g_source_remove (id);
	assert_true (f->done);
}

static void
call_cb (GObject *source, GAsyncResult *result, gpointer user_data)
{
	Fx *f = user_data;

	f->resp = bgs_smp_client_call_finish (f->client, result, &f->error);
	f->done = TRUE;
}

static BgsSmpResponse *
call (Fx *f, guint8 op, guint16 group, guint8 id, GBytes *body)
{
	clear_result (f);
	bgs_smp_client_call_async (f->client, op, group, id, body, NULL, call_cb, f);
	wait_done (f);
	if (f->error != NULL)
		print_error ("call failed: %s\n", f->error->message);
	assert_null (f->error);
	return g_steal_pointer (&f->resp);
}

static GArray *
read_state (Fx *f)
{
	g_autoptr(BgsSmpResponse) r = call (f, BGS_SMP_OP_READ, BGS_SMP_GROUP_IMAGE, BGS_SMP_IMAGE_STATE, NULL);
	g_autoptr(GError) error = NULL;
	GArray *slots;

	assert_true (bgs_smp_body_check (r->body, &error));
	slots = bgs_smp_parse_image_state (r->body, &error);
	assert_non_null (slots);
	return slots;
}

static void
params_cb (GObject *source, GAsyncResult *result, gpointer user_data)
{
	Fx *f = user_data;

	f->ok = bgs_smp_client_query_params_finish (f->client, result, &f->params_supported, &f->error);
	f->done = TRUE;
}

/* OS command 6: sizes the client's frames and window to the device */
static void
query_params (Fx *f, guint cap)
{
	clear_result (f);
	bgs_smp_client_query_params_async (f->client, cap, NULL, params_cb, f);
	wait_done (f);
	assert_null (f->error);
	assert_true (f->ok);
}

static void
upload_progress (guint64 done, guint64 total, gpointer user_data)
{
	Fx *f = user_data;

	assert_true (done >= f->last_progress || done == 0);
	f->last_progress = done;
	f->progress_calls++;
}

static void
upload_cb (GObject *source, GAsyncResult *result, gpointer user_data)
{
	Fx *f = user_data;

	f->ok = bgs_smp_client_upload_image_finish (f->client, result, &f->error);
	f->done = TRUE;
}

static void
upload (Fx *f, GByteArray *img, GCancellable *cancellable)
{
	g_autoptr(GBytes) bytes = g_bytes_new (img->data, img->len);

	clear_result (f);
	f->last_progress = 0;
	f->progress_calls = 0;
	bgs_smp_client_upload_image_async (f->client, bytes, 0, FALSE, upload_progress, f,
					   cancellable, upload_cb, f);
	wait_done (f);
}

static void
set_state (Fx *f, const guint8 *hash, gboolean confirm, GError **error)
{
	g_autoptr(GBytes) body = bgs_smp_build_image_state_set (hash, confirm);
	g_autoptr(BgsSmpResponse) r = call (f, BGS_SMP_OP_WRITE, BGS_SMP_GROUP_IMAGE,
					    BGS_SMP_IMAGE_STATE, body);

	bgs_smp_body_check (r->body, error);
}

static void
reset_and_boot (Fx *f, guint mtu)
{
	g_autoptr(GBytes) body = bgs_smp_build_reset (FALSE);
	g_autoptr(BgsSmpResponse) r = call (f, BGS_SMP_OP_WRITE, BGS_SMP_GROUP_OS, BGS_SMP_OS_RESET, body);
	g_autoptr(GError) error = NULL;
	guint before = f->resets;

	assert_true (bgs_smp_body_check (r->body, NULL));
	/* the device goes down shortly after answering */
	{
		gboolean hit = FALSE;
		guint id = g_timeout_add_seconds (5, on_limit, &hit);

		while (f->resets == before && !hit)
			g_main_context_iteration (NULL, TRUE);
		if (!hit)
			g_source_remove (id);
	}
	assert_int_equal (f->resets, before + 1);
	bgs_smp_client_detach (f->client);
	bgs_smp_server_detach (f->server);
	assert_true (bgs_smp_server_boot (f->server, &error));
	connect_pair (f, mtu);
}

/* the whole firmware update flow for a 400 KiB image */
static void
full_update (void **state, guint mtu)
{
	Fx *f = *state;
	guint8 hash[32];
	g_autoptr(GByteArray) img = smp_test_image_new (1, 1, 0, 0, 400 * 1024 - 72, 7, FALSE, hash);
	g_autoptr(GArray) s1 = NULL;
	g_autoptr(GArray) s2 = NULL;
	g_autoptr(GArray) s3 = NULL;
	g_autoptr(GError) error = NULL;
	BgsSmpImageInfo run;
	g_autofree char *slot1 = g_build_filename (f->dir, "slot1.bin", NULL);
	g_autofree char *written = NULL;
	gsize written_len = 0;
	BgsSmpClientStats st;

	assert_int_equal (img->len, 400 * 1024);
	start_server (f);
	connect_pair (f, mtu);
	if (f->pipeline) {
		/* the server's 512-byte buffers, 4 of them: 3 in flight */
		query_params (f, 0);
		assert_true (f->params_supported);
		assert_int_equal (bgs_smp_client_get_max_frame (f->client), 512);
		assert_int_equal (bgs_smp_client_get_window (f->client), 3);
	}
	upload (f, img, NULL);
	if (f->error != NULL)
		print_error ("upload: %s\n", f->error->message);
	assert_true (f->ok);
	assert_int_equal (f->last_progress, img->len);
	assert_true (f->progress_calls > 800);
	bgs_smp_client_get_stats (f->client, &st);
	assert_int_equal (st.max_inflight, f->pipeline ? 3 : 1);
	assert_int_equal (st.timeouts, 0);
	/* fragmented to MTU - 3 */
	assert_true (st.packets_sent * (mtu - 3) >= st.bytes_sent);
	assert_true (st.bytes_sent > img->len);
	assert_true (g_file_get_contents (slot1, &written, &written_len, NULL));
	assert_int_equal (written_len, img->len);
	assert_memory_equal (written, img->data, img->len);

	/* state: slot 1 holds the new image, not pending */
	s1 = read_state (f);
	assert_int_equal (s1->len, 2);
	assert_memory_equal (g_array_index (s1, BgsSmpImageSlot, 1).hash, hash, 32);
	assert_false (g_array_index (s1, BgsSmpImageSlot, 1).pending);

	/* test, reset: runs 1.1.0 unconfirmed */
	set_state (f, hash, FALSE, &error);
	assert_null (error);
	reset_and_boot (f, mtu);
	s2 = read_state (f);
	assert_string_equal (g_array_index (s2, BgsSmpImageSlot, 0).version, "1.1.0");
	assert_true (g_array_index (s2, BgsSmpImageSlot, 0).active);
	assert_false (g_array_index (s2, BgsSmpImageSlot, 0).confirmed);

	/* confirm, reset: stays */
	set_state (f, NULL, TRUE, &error);
	assert_null (error);
	reset_and_boot (f, mtu);
	s3 = read_state (f);
	assert_string_equal (g_array_index (s3, BgsSmpImageSlot, 0).version, "1.1.0");
	assert_true (g_array_index (s3, BgsSmpImageSlot, 0).confirmed);
	assert_true (bgs_smp_server_get_running (f->server, &run));
	assert_memory_equal (run.hash, hash, 32);
}

static void
test_update_mtu247 (void **state)
{
	full_update (state, 247);
}

static void
test_update_mtu23 (void **state)
{
	full_update (state, 23);
}

/* the same with the buffers the device reports and 3 chunks in flight */
static void
test_update_pipelined_mtu247 (void **state)
{
	Fx *f = *state;

	f->pipeline = TRUE;
	full_update (state, 247);
}

static void
test_update_pipelined_mtu23 (void **state)
{
	Fx *f = *state;

	f->pipeline = TRUE;
	full_update (state, 23);
}

/* 0/6 answers buf_size (the server's frame limit) and buf_count; firmware
 * without it answers MGMT_ERR_ENOTSUP and the client keeps one in flight */
static void
test_params (void **state)
{
	Fx *f = *state;

	f->opt.max_frame = 1024;
	f->opt.buf_count = 8;
	start_server (f);
	connect_pair (f, 247);
	query_params (f, 0);
	assert_true (f->params_supported);
	assert_int_equal (bgs_smp_client_get_max_frame (f->client), 1024);
	assert_int_equal (bgs_smp_client_get_window (f->client), BGS_SMP_DEFAULT_WINDOW_CAP);
	query_params (f, 6);
	assert_int_equal (bgs_smp_client_get_window (f->client), 6);

	bgs_smp_client_detach (f->client);
	bgs_smp_server_free (f->server);
	f->opt.no_params = TRUE;
	start_server (f);
	connect_pair (f, 247);
	query_params (f, 0);
	assert_false (f->params_supported);
	assert_int_equal (bgs_smp_client_get_window (f->client), 1);
	assert_int_equal (bgs_smp_client_get_max_frame (f->client), BGS_SMP_DEFAULT_MAX_FRAME);
}

/* Zephyr's img_mgmt_upload: data at an offset other than the expected one
 * is dropped and answered with the expected offset */
static void
test_out_of_order_offset (void **state)
{
	Fx *f = *state;
	g_autoptr(GByteArray) img = smp_test_image_new (1, 2, 0, 0, 3000, 5, FALSE, NULL);
	g_autofree char *slot1 = g_build_filename (f->dir, "slot1.bin", NULL);
	guint8 sha[32];
	gsize sha_len = sizeof (sha);
	g_autoptr(GChecksum) sum = g_checksum_new (G_CHECKSUM_SHA256);
	guint64 off = 0;
	int match = -1;
	g_autofree char *written = NULL;
	gsize written_len = 0;

	g_checksum_update (sum, img->data, img->len);
	g_checksum_get_digest (sum, sha, &sha_len);
	start_server (f);
	connect_pair (f, 247);
	{
		g_autoptr(GBytes) body = bgs_smp_build_image_upload (0, 0, img->data, 200, img->len, sha, FALSE);
		g_autoptr(BgsSmpResponse) r = call (f, BGS_SMP_OP_WRITE, BGS_SMP_GROUP_IMAGE, BGS_SMP_IMAGE_UPLOAD, body);

		assert_true (bgs_smp_parse_image_upload (r->body, &off, &match, NULL));
		assert_int_equal (off, 200);
	}
	/* ahead (a chunk was lost) and behind (a duplicate): dropped */
	{
		guint64 wrong[] = { 400, 100, 201 };

		for (guint i = 0; i < G_N_ELEMENTS (wrong); i++) {
			g_autoptr(GBytes) body = bgs_smp_build_image_upload (0, wrong[i], img->data + wrong[i], 50,
									     img->len, NULL, FALSE);
			g_autoptr(BgsSmpResponse) r = call (f, BGS_SMP_OP_WRITE, BGS_SMP_GROUP_IMAGE,
							    BGS_SMP_IMAGE_UPLOAD, body);

			assert_true (bgs_smp_body_check (r->body, NULL));
			assert_true (bgs_smp_parse_image_upload (r->body, &off, &match, NULL));
			assert_int_equal (off, 200);
		}
	}
	assert_true (g_file_get_contents (slot1, &written, &written_len, NULL));
	assert_int_equal (written_len, 200);
	assert_memory_equal (written, img->data, 200);
	{
		g_autoptr(GBytes) body = bgs_smp_build_image_upload (0, 200, img->data + 200, 100, img->len, NULL, FALSE);
		g_autoptr(BgsSmpResponse) r = call (f, BGS_SMP_OP_WRITE, BGS_SMP_GROUP_IMAGE, BGS_SMP_IMAGE_UPLOAD, body);

		assert_true (bgs_smp_parse_image_upload (r->body, &off, &match, NULL));
		assert_int_equal (off, 300);
	}
}

/* not confirmed: the next reset goes back to the old image */
static void
test_revert (void **state)
{
	Fx *f = *state;
	guint8 hash[32];
	g_autoptr(GByteArray) img = smp_test_image_new (2, 0, 0, 0, 20000, 3, FALSE, hash);
	g_autoptr(GArray) s = NULL;
	g_autoptr(GArray) s2 = NULL;
	g_autoptr(GError) error = NULL;

	start_server (f);
	connect_pair (f, 247);
	upload (f, img, NULL);
	assert_true (f->ok);
	set_state (f, hash, FALSE, &error);
	assert_null (error);
	reset_and_boot (f, 247);
	s = read_state (f);
	assert_string_equal (g_array_index (s, BgsSmpImageSlot, 0).version, "2.0.0");
	reset_and_boot (f, 247);
	s2 = read_state (f);
	assert_string_equal (g_array_index (s2, BgsSmpImageSlot, 0).version, "1.0.0");
	assert_true (g_array_index (s2, BgsSmpImageSlot, 0).confirmed);
}

/* the --revert-on-test device comes straight back with the old image */
static void
test_revert_on_test (void **state)
{
	Fx *f = *state;
	guint8 hash[32];
	g_autoptr(GByteArray) img = smp_test_image_new (2, 0, 0, 0, 20000, 3, FALSE, hash);
	g_autoptr(GArray) s = NULL;
	g_autoptr(GError) error = NULL;

	f->opt.revert_on_test = TRUE;
	start_server (f);
	connect_pair (f, 247);
	upload (f, img, NULL);
	assert_true (f->ok);
	set_state (f, hash, FALSE, &error);
	reset_and_boot (f, 247);
	s = read_state (f);
	assert_string_equal (g_array_index (s, BgsSmpImageSlot, 0).version, "1.0.0");
}

static void
cancel_after (guint64 done, guint64 total, gpointer user_data)
{
	GCancellable *c = user_data;

	if (done >= total / 2)
		g_cancellable_cancel (c);
}

static void
resume_cb (GObject *source, GAsyncResult *result, gpointer user_data)
{
	upload_cb (source, result, user_data);
}

/* link lost mid-upload: the next upload of the same image resumes at the
 * device's offset instead of starting over */
static void
test_resume (void **state)
{
	Fx *f = *state;
	g_autoptr(GByteArray) img = smp_test_image_new (1, 2, 0, 0, 100000, 5, FALSE, NULL);
	g_autoptr(GBytes) bytes = g_bytes_new (img->data, img->len);
	g_autoptr(GCancellable) c = g_cancellable_new ();
	guint64 done_at_cut;
	BgsSmpClientStats before, after;

	start_server (f);
	connect_pair (f, 247);
	clear_result (f);
	bgs_smp_client_upload_image_async (f->client, bytes, 0, FALSE, cancel_after, c, c,
					   resume_cb, f);
	wait_done (f);
	assert_false (f->ok);
	assert_true (g_error_matches (f->error, BGS_ERROR, BGS_ERROR_CANCELED));
	done_at_cut = bgs_smp_server_get_upload_bytes (f->server);
	assert_true (done_at_cut >= img->len / 2 && done_at_cut < img->len);

	/* link drops and comes back */
	bgs_smp_client_detach (f->client);
	bgs_smp_server_detach (f->server);
	connect_pair (f, 247);
	bgs_smp_client_get_stats (f->client, &before);
	upload (f, img, NULL);
	assert_true (f->ok);
	bgs_smp_client_get_stats (f->client, &after);
	/* only the rest went over the air (plus the first chunk, which the
	 * device answers with its offset) */
	assert_true (after.bytes_sent - before.bytes_sent < (img->len - done_at_cut) * 11 / 10 + 1024);
	assert_true (after.bytes_sent - before.bytes_sent < img->len * 6 / 10);
	assert_int_equal (bgs_smp_server_get_upload_bytes (f->server), img->len);
}

/* the resume with 3 chunks in flight: cut mid-upload, the next upload
 * continues at the device's offset */
static void
test_resume_pipelined (void **state)
{
	Fx *f = *state;
	g_autoptr(GByteArray) img = smp_test_image_new (1, 2, 0, 0, 100000, 5, FALSE, NULL);
	g_autoptr(GBytes) bytes = g_bytes_new (img->data, img->len);
	g_autoptr(GCancellable) c = g_cancellable_new ();
	g_autofree char *slot1 = g_build_filename (f->dir, "slot1.bin", NULL);
	g_autofree char *written = NULL;
	gsize written_len = 0;
	guint64 done_at_cut;
	BgsSmpClientStats before, after;

	start_server (f);
	connect_pair (f, 247);
	query_params (f, 0);
	clear_result (f);
	bgs_smp_client_upload_image_async (f->client, bytes, 0, FALSE, cancel_after, c, c,
					   resume_cb, f);
	wait_done (f);
	assert_true (g_error_matches (f->error, BGS_ERROR, BGS_ERROR_CANCELED));
	done_at_cut = bgs_smp_server_get_upload_bytes (f->server);
	assert_true (done_at_cut >= img->len / 2 && done_at_cut < img->len);

	bgs_smp_client_detach (f->client);
	bgs_smp_server_detach (f->server);
	connect_pair (f, 247);
	bgs_smp_client_get_stats (f->client, &before);
	upload (f, img, NULL);
	assert_true (f->ok);
	bgs_smp_client_get_stats (f->client, &after);
	assert_int_equal (after.max_inflight, 3);
	assert_true (after.bytes_sent - before.bytes_sent < (img->len - done_at_cut) * 11 / 10 + 1024);
	assert_int_equal (bgs_smp_server_get_upload_bytes (f->server), img->len);
	assert_true (g_file_get_contents (slot1, &written, &written_len, NULL));
	assert_int_equal (written_len, img->len);
	assert_memory_equal (written, img->data, img->len);
}

static void
test_reject (void **state)
{
	Fx *f = *state;
	g_autoptr(GByteArray) img = smp_test_image_new (1, 2, 0, 0, 1000, 5, FALSE, NULL);

	f->opt.reject_images = TRUE;
	start_server (f);
	connect_pair (f, 247);
	upload (f, img, NULL);
	assert_false (f->ok);
	assert_non_null (strstr (f->error->message, "IMG_MGMT_RET_RC_UNKNOWN"));
}

/* a slow erase answers MGMT_ERR_EBUSY; the client keeps asking */
static void
test_busy_erase (void **state)
{
	Fx *f = *state;
	g_autoptr(GByteArray) img = smp_test_image_new (1, 2, 0, 0, 3000, 5, FALSE, NULL);
	BgsSmpClientStats st;

	f->opt.erase_usec = 300 * 1000;
	bgs_smp_client_set_timeout (f->client, 100 * 1000, 1);
	bgs_smp_client_set_busy (f->client, 50 * 1000, 5 * G_USEC_PER_SEC);
	start_server (f);
	connect_pair (f, 247);
	upload (f, img, NULL);
	assert_true (f->ok);
	bgs_smp_client_get_stats (f->client, &st);
	assert_true (st.busy_retries >= 2);
	assert_int_equal (st.timeouts, 0);
}

/* a stalled device times out cleanly */
static void
test_stall (void **state)
{
	Fx *f = *state;
	g_autoptr(GByteArray) img = smp_test_image_new (1, 2, 0, 0, 20000, 5, FALSE, NULL);

	f->opt.stall_after = 5000;
	bgs_smp_client_set_timeout (f->client, 100 * 1000, 1);
	start_server (f);
	connect_pair (f, 247);
	upload (f, img, NULL);
	assert_false (f->ok);
	assert_true (g_error_matches (f->error, BGS_ERROR, BGS_ERROR_TIMED_OUT));
}

static void
download_cb (GObject *source, GAsyncResult *result, gpointer user_data)
{
	Fx *f = user_data;
	guint64 total = 0;

	f->ok = bgs_smp_client_download_file_finish (f->client, result, &total, &f->error);
	f->last_progress = total;
	f->done = TRUE;
}

static void
test_fs (void **state)
{
	Fx *f = *state;
	g_autofree char *files = g_build_filename (f->dir, "files", "logs", NULL);
	g_autofree char *src = g_build_filename (files, "day1.bin", NULL);
	g_autofree char *out = g_build_filename (f->dir, "out.bin", NULL);
	g_autoptr(GByteArray) data = g_byte_array_new ();
	g_autofree char *got = NULL;
	gsize got_len = 0;
	int fd;

	for (guint i = 0; i < 30000; i++) {
		guint8 b = (guint8) (i * 7 + (i >> 9));

		g_byte_array_append (data, &b, 1);
	}
	g_mkdir_with_parents (files, 0700);
	assert_true (g_file_set_contents (src, (const char *) data->data, data->len, NULL));
	start_server (f);
	connect_pair (f, 23);

	/* whole file */
	fd = g_open (out, O_RDWR | O_CREAT | O_TRUNC, 0600);
	clear_result (f);
	bgs_smp_client_download_file_async (f->client, "/logs/day1.bin", fd, 0, NULL, NULL, NULL,
					    download_cb, f);
	wait_done (f);
	assert_true (f->ok);
	assert_int_equal (f->last_progress, data->len);
	assert_true (g_file_get_contents (out, &got, &got_len, NULL));
	assert_int_equal (got_len, data->len);
	assert_memory_equal (got, data->data, data->len);
	g_clear_pointer (&got, g_free);

	/* resume from the middle of a partial copy */
	assert_int_equal (ftruncate (fd, 12345), 0);
	clear_result (f);
	bgs_smp_client_download_file_async (f->client, "/logs/day1.bin", fd, 12345, NULL, NULL, NULL,
					    download_cb, f);
	wait_done (f);
	assert_true (f->ok);
	assert_int_equal (f->last_progress, data->len);
	close (fd);
	assert_true (g_file_get_contents (out, &got, &got_len, NULL));
	assert_int_equal (got_len, data->len);
	assert_memory_equal (got, data->data, data->len);

	/* missing file: FS_MGMT_ERR_FILE_NOT_FOUND, BGS_ERROR_NOT_FOUND */
	fd = g_open (out, O_RDWR | O_CREAT | O_TRUNC, 0600);
	clear_result (f);
	bgs_smp_client_download_file_async (f->client, "/logs/none", fd, 0, NULL, NULL, NULL,
					    download_cb, f);
	wait_done (f);
	close (fd);
	assert_true (g_error_matches (f->error, BGS_ERROR, BGS_ERROR_NOT_FOUND));

	/* escaping the root is refused */
	{
		g_autoptr(GBytes) body = bgs_smp_build_fs_download ("/../slot0.bin", 0);
		g_autoptr(BgsSmpResponse) r = call (f, BGS_SMP_OP_READ, BGS_SMP_GROUP_FS, BGS_SMP_FS_FILE, body);
		g_autoptr(GError) error = NULL;

		assert_false (bgs_smp_body_check (r->body, &error));
		assert_non_null (strstr (error->message, "FS_MGMT_ERR_FILE_INVALID_NAME"));
	}

	/* hash */
	{
		g_autoptr(GBytes) body = bgs_smp_build_fs_hash ("/logs/day1.bin", "sha256", 0, 0);
		g_autoptr(BgsSmpResponse) r = call (f, BGS_SMP_OP_READ, BGS_SMP_GROUP_FS, BGS_SMP_FS_HASH, body);
		g_autofree char *type = NULL;
		g_autoptr(GBytes) output = NULL;
		guint64 len = 0;
		g_autofree char *want = g_compute_checksum_for_data (G_CHECKSUM_SHA256, data->data, data->len);

		assert_true (bgs_smp_parse_fs_hash (r->body, &type, &len, &output, NULL));
		assert_string_equal (type, "sha256");
		assert_int_equal (len, data->len);
		assert_int_equal (g_bytes_get_size (output), 32);
		{
			GString *s = g_string_new (NULL);

			for (guint i = 0; i < 32; i++)
				g_string_append_printf (s, "%02x", ((const guint8 *) g_bytes_get_data (output, NULL))[i]);
			assert_string_equal (s->str, want);
			g_string_free (s, TRUE);
		}
	}

	/* upload a file, then read it back */
	{
		const char text[] = "settings=1\n";
		g_autoptr(GBytes) body = bgs_smp_build_fs_upload ("/cfg/settings.txt", 0, (const guint8 *) text,
								  sizeof (text) - 1, sizeof (text) - 1);
		g_autoptr(BgsSmpResponse) r = call (f, BGS_SMP_OP_WRITE, BGS_SMP_GROUP_FS, BGS_SMP_FS_FILE, body);
		g_autofree char *path = g_build_filename (f->dir, "files", "cfg", "settings.txt", NULL);
		g_autofree char *back = NULL;
		guint64 off = 0;

		assert_true (bgs_smp_parse_fs_upload (r->body, &off, NULL));
		assert_int_equal (off, sizeof (text) - 1);
		assert_true (g_file_get_contents (path, &back, NULL, NULL));
		assert_string_equal (back, text);
	}
}

/* download with 3 requests in flight once the length and chunk are known;
 * the file has no hole at any point */
static void
test_fs_pipelined (void **state)
{
	Fx *f = *state;
	g_autofree char *files = g_build_filename (f->dir, "files", NULL);
	g_autofree char *src = g_build_filename (files, "big.bin", NULL);
	g_autofree char *out = g_build_filename (f->dir, "out.bin", NULL);
	g_autoptr(GByteArray) data = g_byte_array_new ();
	g_autofree char *got = NULL;
	gsize got_len = 0;
	BgsSmpClientStats st;
	int fd;

	for (guint i = 0; i < 100000; i++) {
		guint8 b = (guint8) (i * 13 + (i >> 8));

		g_byte_array_append (data, &b, 1);
	}
	g_mkdir_with_parents (files, 0700);
	assert_true (g_file_set_contents (src, (const char *) data->data, data->len, NULL));
	start_server (f);
	connect_pair (f, 23);
	query_params (f, 0);
	assert_int_equal (bgs_smp_client_get_window (f->client), 3);
	fd = g_open (out, O_RDWR | O_CREAT | O_TRUNC, 0600);
	clear_result (f);
	bgs_smp_client_download_file_async (f->client, "/big.bin", fd, 0, NULL, NULL, NULL,
					    download_cb, f);
	wait_done (f);
	close (fd);
	assert_true (f->ok);
	assert_int_equal (f->last_progress, data->len);
	assert_true (g_file_get_contents (out, &got, &got_len, NULL));
	assert_int_equal (got_len, data->len);
	assert_memory_equal (got, data->data, data->len);
	bgs_smp_client_get_stats (f->client, &st);
	assert_int_equal (st.max_inflight, 3);
	assert_int_equal (st.rewinds, 0);
	assert_int_equal (st.timeouts, 0);
}

static void
test_echo_v1_and_unknown (void **state)
{
	Fx *f = *state;
	g_autoptr(GBytes) body = bgs_smp_build_echo ("ping");
	g_autoptr(BgsSmpResponse) r = NULL;
	g_autoptr(BgsSmpResponse) r2 = NULL;
	g_autofree char *text = NULL;
	g_autoptr(GError) error = NULL;

	bgs_smp_client_unref (f->client);
	f->client = bgs_smp_client_new (f->clock, BGS_SMP_V1);
	start_server (f);
	connect_pair (f, 23);
	r = call (f, BGS_SMP_OP_WRITE, BGS_SMP_GROUP_OS, BGS_SMP_OS_ECHO, body);
	assert_int_equal (r->hdr.version, BGS_SMP_V1);
	assert_true (bgs_smp_parse_echo (r->body, &text, NULL));
	assert_string_equal (text, "ping");
	r2 = call (f, BGS_SMP_OP_READ, 63, 0, NULL);
	assert_false (bgs_smp_body_check (r2->body, &error));
	assert_true (g_error_matches (error, BGS_ERROR, BGS_ERROR_NOT_SUPPORTED));
}

static void
file_upload_cb (GObject *source, GAsyncResult *result, gpointer user_data)
{
	Fx *f = user_data;

	f->ok = bgs_smp_client_upload_file_finish (f->client, result, &f->error);
	f->done = TRUE;
}

/* smp_group_8.rst "File upload": a 5000-byte file in chunks, and an empty one */
static void
test_fs_upload_helper (void **state)
{
	Fx *f = *state;
	g_autoptr(GByteArray) data = g_byte_array_new ();
	g_autoptr(GBytes) bytes = NULL;
	g_autoptr(GBytes) empty = g_bytes_new (NULL, 0);
	g_autofree char *path = g_build_filename (f->dir, "files", "up", "blob.bin", NULL);
	g_autofree char *path0 = g_build_filename (f->dir, "files", "empty", NULL);
	g_autofree char *got = NULL;
	gsize got_len = 0;

	for (guint i = 0; i < 5000; i++) {
		guint8 b = (guint8) (i * 11);

		g_byte_array_append (data, &b, 1);
	}
	bytes = g_bytes_new (data->data, data->len);
	start_server (f);
	connect_pair (f, 23);
	clear_result (f);
	f->progress_calls = 0;
	bgs_smp_client_upload_file_async (f->client, "/up/blob.bin", bytes, upload_progress, f, NULL,
					  file_upload_cb, f);
	wait_done (f);
	assert_true (f->ok);
	assert_true (f->progress_calls > 5);
	assert_true (g_file_get_contents (path, &got, &got_len, NULL));
	assert_int_equal (got_len, data->len);
	assert_memory_equal (got, data->data, data->len);

	clear_result (f);
	bgs_smp_client_upload_file_async (f->client, "/empty", empty, NULL, NULL, NULL, file_upload_cb, f);
	wait_done (f);
	assert_true (f->ok);
	assert_true (g_file_test (path0, G_FILE_TEST_IS_REGULAR));
}

/* the other end hung up: no SIGPIPE (default action would kill us), the
 * request fails with BGS_ERROR_IO */
static void
test_peer_gone (void **state)
{
	Fx *f = *state;
	int sv[2];
	g_autoptr(GError) error = NULL;
	g_autoptr(GBytes) body = bgs_smp_build_echo ("anyone?");

	assert_int_equal (socketpair (AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
	assert_true (bgs_smp_client_attach_fds (f->client, sv[0], sv[0], 23, &error));
	close (sv[1]);
	clear_result (f);
	bgs_smp_client_call_async (f->client, BGS_SMP_OP_WRITE, 0, 0, body, NULL, call_cb, f);
	wait_done (f);
	assert_true (g_error_matches (f->error, BGS_ERROR, BGS_ERROR_IO));
	assert_false (bgs_smp_client_is_attached (f->client));
}

/* reassembly: the server fed write by write (as bgsync-wearable does), on a
 * fake clock, its notifications collected */

typedef struct {
	GByteArray *out;
} Capture;

static gboolean
capture_send (const guint8 *data, gsize len, gpointer user_data, GError **error)
{
	Capture *c = user_data;

	g_byte_array_append (c->out, data, (guint) len);
	return TRUE;
}

static void
feed (BgsSmpServer *server, const guint8 *data, gsize len)
{
	bgs_smp_server_receive (server, data, len);
}

static void
feed_echo (BgsSmpServer *server, guint8 seq, const char *text)
{
	g_autoptr(GBytes) body = bgs_smp_build_echo (text);
	g_autoptr(GBytes) frame = bgs_smp_frame_build (BGS_SMP_OP_WRITE, BGS_SMP_V2, BGS_SMP_GROUP_OS,
						       BGS_SMP_OS_ECHO, seq, body);
	gsize len = 0;
	const guint8 *p = g_bytes_get_data (frame, &len);

	/* two writes, as at a small MTU */
	feed (server, p, 5);
	feed (server, p + 5, len - 5);
}

/* the one echo answer in @c, with its sequence number */
static void
assert_echo_answer (Capture *c, guint8 seq, const char *text)
{
	g_autoptr(GError) error = NULL;
	g_autoptr(BgsSmpResponse) r = bgs_smp_response_parse (c->out->data, c->out->len, &error);
	g_autofree char *got = NULL;

	assert_non_null (r);
	assert_int_equal (r->hdr.op, BGS_SMP_OP_WRITE_RSP);
	assert_int_equal (r->hdr.seq, seq);
	assert_true (bgs_smp_parse_echo (r->body, &got, &error));
	assert_string_equal (got, text);
	g_byte_array_set_size (c->out, 0);
}

static BgsSmpServer *
fake_server (Fx *f, BgsClock *clock, Capture *c)
{
	g_autoptr(GError) error = NULL;
	BgsSmpServer *server;

	f->opt.rx_timeout_usec = 500 * 1000;
	server = bgs_smp_server_new (clock, f->dir, &f->opt, &error);
	assert_non_null (server);
	assert_true (bgs_smp_server_boot (server, &error));
	c->out = g_byte_array_new ();
	bgs_smp_server_set_transport (server, 247, capture_send, c);
	return server;
}

/* a cut frame (the link dropped mid-request): the next request is answered
 * once the partial one timed out, and at once on a new connection */
static void
test_rx_cut_frame (void **state)
{
	Fx *f = *state;
	g_autoptr(BgsClock) clock = bgs_clock_new_fake (0, 0);
	Capture c;
	g_autoptr(BgsSmpServer) server = fake_server (f, clock, &c);
	g_autoptr(GBytes) body = bgs_smp_build_echo ("a request that never completes");
	g_autoptr(GBytes) cut = bgs_smp_frame_build (BGS_SMP_OP_WRITE, BGS_SMP_V2, BGS_SMP_GROUP_OS,
						     BGS_SMP_OS_ECHO, 1, body);

	feed (server, g_bytes_get_data (cut, NULL), 12);
	feed_echo (server, 2, "hello");
	assert_int_equal (c.out->len, 0);
	/* the partial request is dropped, the echo after it understood */
	bgs_clock_fake_advance (clock, 600 * 1000);
	assert_echo_answer (&c, 2, "hello");
	assert_int_equal (bgs_clock_pending (clock), 0);

	/* a cut frame "completed" by the next request's bytes: its body does
	 * not parse, the request is found at its write boundary at once */
	feed (server, g_bytes_get_data (cut, NULL), 10);
	feed_echo (server, 3, "a longer text than the cut frame is missing");
	assert_echo_answer (&c, 3, "a longer text than the cut frame is missing");

	/* a new connection forgets the partial request at once */
	feed (server, g_bytes_get_data (cut, NULL), 12);
	bgs_smp_server_reset_link (server);
	feed_echo (server, 4, "again");
	assert_echo_answer (&c, 4, "again");
	assert_int_equal (bgs_clock_pending (clock), 0);
	g_byte_array_unref (c.out);
}

/* impossible headers (what bluetoothd 5.66 made of a write queued during
 * AcquireWrite, reserved bits, a length past buf_size) are dropped: the
 * next request is answered at once */
static void
test_rx_garbage_header (void **state)
{
	Fx *f = *state;
	g_autoptr(BgsClock) clock = bgs_clock_new_fake (0, 0);
	Capture c;
	g_autoptr(BgsSmpServer) server = fake_server (f, clock, &c);
	const guint8 garbled[] = { 0x01, 0x00, 0x69, 0x6d, 0x65 };
	const guint8 reserved[] = { 0xe2, 0x00, 0x00, 0x02, 0x00, 0x00, 0x01, 0x00, 0xa0, 0xa0 };
	const guint8 too_long[] = { 0x0a, 0x00, 0x40, 0x00, 0x00, 0x00, 0x01, 0x00, 0xa0 };

	feed (server, garbled, sizeof (garbled));
	feed_echo (server, 1, "one");
	assert_echo_answer (&c, 1, "one");
	feed (server, reserved, sizeof (reserved));
	feed_echo (server, 2, "two");
	assert_echo_answer (&c, 2, "two");
	feed (server, too_long, sizeof (too_long));
	feed_echo (server, 3, "three");
	assert_echo_answer (&c, 3, "three");
	assert_int_equal (bgs_clock_pending (clock), 0);
	g_byte_array_unref (c.out);
}

int
main (void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown (test_update_mtu247, setup, teardown),
		cmocka_unit_test_setup_teardown (test_update_mtu23, setup, teardown),
		cmocka_unit_test_setup_teardown (test_update_pipelined_mtu247, setup, teardown),
		cmocka_unit_test_setup_teardown (test_update_pipelined_mtu23, setup, teardown),
		cmocka_unit_test_setup_teardown (test_params, setup, teardown),
		cmocka_unit_test_setup_teardown (test_out_of_order_offset, setup, teardown),
		cmocka_unit_test_setup_teardown (test_resume_pipelined, setup, teardown),
		cmocka_unit_test_setup_teardown (test_fs_pipelined, setup, teardown),
		cmocka_unit_test_setup_teardown (test_revert, setup, teardown),
		cmocka_unit_test_setup_teardown (test_revert_on_test, setup, teardown),
		cmocka_unit_test_setup_teardown (test_resume, setup, teardown),
		cmocka_unit_test_setup_teardown (test_reject, setup, teardown),
		cmocka_unit_test_setup_teardown (test_busy_erase, setup, teardown),
		cmocka_unit_test_setup_teardown (test_stall, setup, teardown),
		cmocka_unit_test_setup_teardown (test_fs, setup, teardown),
		cmocka_unit_test_setup_teardown (test_echo_v1_and_unknown, setup, teardown),
		cmocka_unit_test_setup_teardown (test_peer_gone, setup, teardown),
		cmocka_unit_test_setup_teardown (test_fs_upload_helper, setup, teardown),
		cmocka_unit_test_setup_teardown (test_rx_cut_frame, setup, teardown),
		cmocka_unit_test_setup_teardown (test_rx_garbage_header, setup, teardown),
	};

	return cmocka_run_group_tests (tests, NULL, NULL);
}
