/* bgs-profile-smp.c: the MCUmgr SMP entry points.
 *
 * smp-firmware-update (servicing): check the MCUboot image from the app's
 * fd, upload it (resuming from the device's offset after a reconnect), mark
 * it for test, reset, follow the device through its reboot, check it runs
 * the new image and confirm it.
 *
 * smp-file-sync (device use): download files from the device's file system
 * into the app's output directory, skipping complete files and resuming
 * partial ones, verified with the device's hash where it offers one. */
#include "bgs-profile-smp.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gio/gunixinputstream.h>

#include "bgs-clock.h"
#include "bgs-error.h"
#include "bgs-smp-client.h"
#include "bgs-smp-cmd.h"
#include "bgs-smp-image.h"

#define SMP_SERVICE_UUID "8d53dc1d-1db7-4cd3-868b-8a527460aa84"
#define SMP_CHAR_UUID "da2e7828-fbce-4e01-ae9e-261174997c48"
#define MAX_IMAGE_SIZE (32 * 1024 * 1024)
#define MAX_FILES 256

/* weighted steps of an update, in percent */
#define UPDATE_UPLOAD_END 80
#define UPDATE_REBOOT_END 95

static gboolean
is_canceled (const GError *error)
{
	return g_error_matches (error, BGS_ERROR, BGS_ERROR_CANCELED) ||
	       g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
}

typedef enum {
	STEP_CONNECT,
	STEP_UPLOAD,
	STEP_TEST,
	STEP_RESET,
	STEP_REBOOT,
	STEP_VERIFY,
	STEP_CONFIRM,
	STEP_DONE,
} UpdateStep;

typedef struct {
	BgsRun *run;             /* unowned: the run owns us */
	BgsClock *clock;
	BgsSmpClient *client;
	BgsTransport *transport;
	GCancellable *cancellable;
	gulong packet_id, disconnected_id, reconnected_id;
	gboolean link_up;
	BgsSmpParams params;
	/* update */
	UpdateStep step;
	GBytes *image;
	BgsSmpImageInfo info;
	gint64 upload_started;
	/* sync */
	int dir_fd;
	char **files;
	guint file_index;
	guint64 bytes_done;
	int file_fd;
} SmpRun;

static void
smp_run_free (gpointer data)
{
	SmpRun *s = data;

	g_cancellable_cancel (s->cancellable);
	g_object_unref (s->cancellable);
	if (s->transport != NULL) {
		g_signal_handlers_disconnect_by_data (s->transport, s);
		bgs_transport_close (s->transport);
		g_object_unref (s->transport);
	}
	g_clear_pointer (&s->client, bgs_smp_client_unref);
	g_clear_pointer (&s->clock, bgs_clock_unref);
	g_clear_pointer (&s->image, g_bytes_unref);
	g_strfreev (s->files);
	bgs_smp_params_clear (&s->params);
	if (s->dir_fd >= 0)
		close (s->dir_fd);
	if (s->file_fd >= 0)
		close (s->file_fd);
	g_free (s);
}

/* ---- [Profile smp] / [Profile smp-firmware-update] parameters ---------------------- */

static const char *const param_keys[] = {
	"Version", "RequestTimeout", "Retries", "Window", "OsParams", "Files", "Throughput",
	"RebootSeconds", NULL,
};

void
bgs_smp_params_init (BgsSmpParams *p)
{
	memset (p, 0, sizeof (*p));
	p->version = 1;
	p->request_timeout_usec = 5 * G_USEC_PER_SEC;
	p->retries = BGS_SMP_DEFAULT_RETRIES;
	p->window = BGS_SMP_DEFAULT_WINDOW_CAP;
	p->os_params = TRUE;
	p->throughput = 0;
	p->reboot_seconds = 30;
}

void
bgs_smp_params_clear (BgsSmpParams *p)
{
	g_clear_pointer (&p->files, g_strfreev);
}

static void
param_warn (GPtrArray *warnings, const char *origin, const char *key, const char *value,
	    const char *range, const char *fallback)
{
	if (warnings != NULL)
		g_ptr_array_add (warnings, g_strdup_printf ("%s %s=%s: not %s; using %s", origin, key,
							    value, range, fallback));
}

static gboolean
param_get_uint (GHashTable *params, const char *key, guint min, guint max, guint *out,
		const char *origin, GPtrArray *warnings)
{
	const char *v = g_hash_table_lookup (params, key);
	g_autofree char *range = NULL;
	g_autofree char *fallback = NULL;
	guint64 n;

	if (v == NULL)
		return FALSE;
	if (g_ascii_string_to_unsigned (v, 10, min, max, &n, NULL)) {
		*out = (guint) n;
		return TRUE;
	}
	range = g_strdup_printf ("a whole number in %u..%u", min, max);
	fallback = g_strdup_printf ("%u", *out);
	param_warn (warnings, origin, key, v, range, fallback);
	return FALSE;
}

static gboolean
param_get_double (GHashTable *params, const char *key, gdouble min, gdouble max, gdouble *out,
		  const char *range, const char *fallback, const char *origin, GPtrArray *warnings)
{
	const char *v = g_hash_table_lookup (params, key);
	char *end = NULL;
	gdouble d;

	if (v == NULL)
		return FALSE;
	d = g_ascii_strtod (v, &end);
	if (end != v && *end == '\0' && isfinite (d) && d >= min && d <= max) {
		*out = d;
		return TRUE;
	}
	param_warn (warnings, origin, key, v, range, fallback);
	return FALSE;
}

/* device paths: absolute, bounded, UTF-8 (the device judges the rest) */
static gboolean
valid_device_path (const char *path)
{
	return path[0] == '/' && path[1] != '\0' && strlen (path) < 256 &&
	       g_utf8_validate (path, -1, NULL);
}

void
bgs_smp_params_parse (GHashTable *params, const char *origin, BgsSmpParams *p, GPtrArray *warnings)
{
	GHashTableIter iter;
	gpointer key, value;
	const char *v;
	gdouble d;

	bgs_smp_params_init (p);
	if (params == NULL)
		return;
	if (origin == NULL)
		origin = "[Profile smp]";
	g_hash_table_iter_init (&iter, params);
	while (g_hash_table_iter_next (&iter, &key, &value)) {
		if (!g_strv_contains (param_keys, key) && warnings != NULL) {
			g_autofree char *known = g_strjoinv (", ", (char **) param_keys);

			g_ptr_array_add (warnings, g_strdup_printf ("%s unknown key %s ignored (known: %s)",
								    origin, (const char *) key, known));
		}
	}
	param_get_uint (params, "Version", 1, 2, &p->version, origin, warnings);
	if (param_get_double (params, "RequestTimeout", 0.1, 600, &d, "seconds in 0.1..600", "5",
			      origin, warnings))
		p->request_timeout_usec = (gint64) (d * G_USEC_PER_SEC);
	param_get_uint (params, "Retries", 0, 10, &p->retries, origin, warnings);
	param_get_uint (params, "Window", 1, BGS_SMP_MAX_WINDOW, &p->window, origin, warnings);
	v = g_hash_table_lookup (params, "OsParams");
	if (v != NULL) {
		if (g_ascii_strcasecmp (v, "true") == 0 || g_ascii_strcasecmp (v, "yes") == 0 ||
		    g_strcmp0 (v, "1") == 0)
			p->os_params = TRUE;
		else if (g_ascii_strcasecmp (v, "false") == 0 || g_ascii_strcasecmp (v, "no") == 0 ||
			 g_strcmp0 (v, "0") == 0)
			p->os_params = FALSE;
		else
			param_warn (warnings, origin, "OsParams", v, "true or false", "true");
	}
	v = g_hash_table_lookup (params, "Files");
	if (v != NULL) {
		g_auto(GStrv) files = g_strsplit (v, ";", -1);
		guint n = 0;
		gboolean ok = TRUE;

		/* a trailing ';' is key file list style */
		for (guint i = 0; files[i] != NULL; i++) {
			g_strstrip (files[i]);
			if (files[i][0] == '\0' && files[i + 1] == NULL)
				break;
			if (!valid_device_path (files[i]))
				ok = FALSE;
			n++;
		}
		if (ok && n > 0 && n <= MAX_FILES) {
			if (files[n] != NULL) {
				g_free (files[n]);
				files[n] = NULL;
			}
			p->files = g_steal_pointer (&files);
		} else {
			g_autofree char *range = g_strdup_printf ("1..%d ';'-separated device paths "
								  "starting with '/'", MAX_FILES);

			param_warn (warnings, origin, "Files", v, range, "none (the app names the files)");
		}
	}
	if (param_get_double (params, "Throughput", 1, 1e9, &d, "bytes per second in 1..1e9",
			      "the rate measured on the device, else 2000", origin, warnings))
		p->throughput = d;
	param_get_uint (params, "RebootSeconds", 0, 3600, &p->reboot_seconds, origin, warnings);
}

static SmpRun *
smp_run_new (BgsRun *run)
{
	SmpRun *s = g_new0 (SmpRun, 1);
	g_autoptr(GPtrArray) warnings = g_ptr_array_new_with_free_func (g_free);

	/* once per run, not per request */
	bgs_smp_params_parse (bgs_run_get_params (run), bgs_run_get_params_origin (run), &s->params,
			      warnings);
	for (guint i = 0; i < warnings->len; i++)
		g_warning ("%s", (const char *) g_ptr_array_index (warnings, i));
	s->run = run;
	s->clock = bgs_clock_new_real ();
	s->cancellable = g_cancellable_new ();
	s->dir_fd = s->file_fd = -1;
	bgs_run_set_profile_data (run, s, smp_run_free);
	return s;
}

/* an operation in flight holds the run, and so @s (its profile data): its
 * callback may come after the agent let go of the run, e.g. a cancel on
 * condition-loss (valgrind saw download_cb read a freed @s). The callback
 * takes the reference back with SMP_HELD. */
static SmpRun *
smp_hold (SmpRun *s)
{
	g_object_ref (s->run);
	return s;
}

#define SMP_HELD(s) g_autoptr(BgsRun) held_run G_GNUC_UNUSED = (s)->run

static void
smp_fail (SmpRun *s, BgsError code, const char *format, ...) G_GNUC_PRINTF (3, 4);

static void
smp_fail (SmpRun *s, BgsError code, const char *format, ...)
{
	va_list args;
	g_autoptr(GError) error = NULL;

	va_start (args, format);
	error = g_error_new_valist (BGS_ERROR, code, format, args);
	va_end (args);
	g_info ("task %" G_GINT64_FORMAT ": %s", bgs_run_get_task_id (s->run), error->message);
	bgs_run_complete_error (s->run, error);
}

static gboolean
transport_send_cb (const guint8 *data, gsize len, gpointer user_data, GError **error)
{
	SmpRun *s = user_data;

	return bgs_transport_send_data (s->transport, data, len, error);
}

static void
packet_cb (BgsTransport *transport, GBytes *packet, gpointer user_data)
{
	SmpRun *s = user_data;
	gsize len = 0;
	const guint8 *data = g_bytes_get_data (packet, &len);

	bgs_smp_client_receive (s->client, data, len);
}


/* ---- shared: open the link ------------------------------------------------------ */

typedef void (*SmpLinkFunc) (SmpRun *s);

static void update_continue (SmpRun *s);

static void
disconnected_cb (BgsTransport *transport, GError *error, gpointer user_data)
{
	SmpRun *s = user_data;

	s->link_up = FALSE;
	bgs_smp_client_detach (s->client);
	if (bgs_run_get_trigger (s->run) != BGS_TRIGGER_DEVICE_SERVICING) {
		/* device use is never silently reconnected */
		smp_fail (s, BGS_ERROR_IO, "lost the link to the device: %s",
			  error != NULL ? error->message : "disconnected");
		return;
	}
	if (s->step == STEP_RESET || s->step == STEP_REBOOT) {
		s->step = STEP_REBOOT;
		bgs_run_progress (s->run, UPDATE_UPLOAD_END + 5, "waiting for the device to restart");
	} else {
		bgs_run_progress (s->run, 0, "link lost, waiting for the device to come back");
	}
}

static void
attach_client (SmpRun *s)
{
	/* the client wants the ATT MTU; the transport's payload is MTU - 3 */
	bgs_smp_client_set_transport (s->client, bgs_transport_get_payload_size (s->transport) + 3,
				      transport_send_cb, s, NULL);
	s->link_up = TRUE;
}

typedef struct {
	SmpRun *s;
	SmpLinkFunc next;
} OpenCtx;

static void
params_cb (GObject *source, GAsyncResult *res, gpointer user_data)
{
	OpenCtx *ctx = user_data;
	SmpRun *s = ctx->s;
	SMP_HELD (s);
	SmpLinkFunc next = ctx->next;
	g_autoptr(GError) error = NULL;
	gboolean supported = FALSE;

	g_free (ctx);
	if (!bgs_smp_client_query_params_finish (s->client, res, &supported, &error)) {
		/* link lost: the reconnect (if any) asks again */
		if (is_canceled (error) || bgs_run_is_finished (s->run) || !s->link_up ||
		    g_error_matches (error, BGS_ERROR, BGS_ERROR_IO))
			return;
		/* firmware without the command answers ENOTSUP (handled as one in
		 * flight); no answer after the retries is a dead device */
		smp_fail (s, g_error_matches (error, BGS_ERROR, BGS_ERROR_TIMED_OUT) ?
			  BGS_ERROR_TIMED_OUT : BGS_ERROR_PROTOCOL,
			  "the device does not answer SMP: %s", error->message);
		return;
	}
	g_info ("task %" G_GINT64_FORMAT ": SMP frames of %" G_GSIZE_FORMAT " bytes, %u in flight%s",
		bgs_run_get_task_id (s->run), bgs_smp_client_get_max_frame (s->client),
		bgs_smp_client_get_window (s->client), supported ? "" : " (device has no OS parameters)");
	next (s);
}

/* sizes the client to the device's SMP buffers (OS command 6), then @next;
 * after a reboot the firmware, and so its buffers, may have changed.
 * [Profile smp] Window= caps the requests in flight (1: no pipelining);
 * OsParams=false skips the question (384-byte frames, one in flight) for
 * firmware that mishandles it. */
static void
smp_link_ready (SmpRun *s, SmpLinkFunc next)
{
	OpenCtx *ctx;

	if (!s->params.os_params) {
		next (s);
		return;
	}
	ctx = g_new0 (OpenCtx, 1);
	ctx->s = smp_hold (s);
	ctx->next = next;
	bgs_smp_client_query_params_async (s->client, s->params.window,
					   s->cancellable, params_cb, ctx);
}

static void
reconnected_cb (BgsTransport *transport, gpointer user_data)
{
	SmpRun *s = user_data;

	attach_client (s);
	/* the MTU may differ after a reboot; the step decides what to resume */
	smp_link_ready (s, update_continue);
}

static void
open_cb (GObject *source, GAsyncResult *res, gpointer user_data)
{
	OpenCtx *ctx = user_data;
	g_autoptr(GError) error = NULL;
	BgsTransport *transport;
	SmpRun *s = ctx->s;
	SMP_HELD (s);
	SmpLinkFunc next = ctx->next;

	g_free (ctx);
	transport = bgs_run_open_transport_finish (BGS_RUN (source), res, &error);
	if (transport == NULL) {
		if (!is_canceled (error))
			smp_fail (s, BGS_ERROR_IO, "cannot open the SMP channel: %s", error->message);
		return;
	}
	s->transport = transport;
	s->packet_id = g_signal_connect (transport, "packet", G_CALLBACK (packet_cb), s);
	s->disconnected_id = g_signal_connect (transport, "disconnected", G_CALLBACK (disconnected_cb), s);
	s->reconnected_id = g_signal_connect (transport, "reconnected", G_CALLBACK (reconnected_cb), s);
	attach_client (s);
	smp_link_ready (s, next);
}

static void
smp_open (SmpRun *s, gboolean survive_reboot, SmpLinkFunc next)
{
	BgsTransportRequest req = { 0 };
	OpenCtx *ctx = g_new0 (OpenCtx, 1);

	s->client = bgs_smp_client_new (s->clock, s->params.version >= 2 ? BGS_SMP_V2 : BGS_SMP_V1);
	bgs_smp_client_set_timeout (s->client, s->params.request_timeout_usec, s->params.retries);
	req.kind = BGS_TRANSPORT_GATT;
	req.service_uuid = SMP_SERVICE_UUID;
	req.characteristic_uuid = SMP_CHAR_UUID;
	req.survive_reboot = survive_reboot;
	ctx->s = smp_hold (s);
	ctx->next = next;
	bgs_run_open_transport_async (s->run, &req, s->cancellable, open_cb, ctx);
}

/* ---- smp-firmware-update ------------------------------------------------------ */

static gboolean
slot_has_hash (GArray *slots, const guint8 *hash, gboolean want_active)
{
	for (guint i = 0; slots != NULL && i < slots->len; i++) {
		BgsSmpImageSlot *slot = &g_array_index (slots, BgsSmpImageSlot, i);
		if (slot->image != 0 || !slot->has_hash)
			continue;
		if (memcmp (slot->hash, hash, 32) == 0 && (!want_active || slot->active))
			return TRUE;
	}
	return FALSE;
}

static void
upload_progress_cb (guint64 done, guint64 total, gpointer user_data)
{
	SmpRun *s = user_data;
	guint percent = total > 0 ? (guint) (done * UPDATE_UPLOAD_END / total) : 0;
	g_autofree char *status = g_strdup_printf ("uploading %" G_GUINT64_FORMAT " of %" G_GUINT64_FORMAT " KiB",
						   done / 1024, total / 1024);
	gint64 elapsed = g_get_monotonic_time () - s->upload_started;

	bgs_run_progress (s->run, percent, status);
	/* keep the estimate honest with the throughput measured on this link */
	if (done > 4096 && elapsed > G_USEC_PER_SEC) {
		gdouble rate = (gdouble) done / ((gdouble) elapsed / G_USEC_PER_SEC);
		guint left = (guint) ((total - done) / MAX (rate, 1.0)) + 10;
		bgs_run_set_estimate (s->run, (guint) (elapsed / G_USEC_PER_SEC) + left);
	}
}

static void
upload_cb (GObject *source, GAsyncResult *res, gpointer user_data)
{
	SmpRun *s = user_data;
	SMP_HELD (s);
	g_autoptr(GError) error = NULL;

	if (!bgs_smp_client_upload_image_finish (s->client, res, &error)) {
		if (is_canceled (error) ||
		    bgs_run_is_finished (s->run))
			return;
		/* a reconnect resumes the upload from the device's offset */
		if (!s->link_up)
			return;
		if (g_error_matches (error, BGS_ERROR, BGS_ERROR_TIMED_OUT))
			smp_fail (s, BGS_ERROR_TIMED_OUT, "the device stopped answering during the upload: %s",
				  error->message);
		else
			smp_fail (s, BGS_ERROR_FAILED, "the device rejected the image: %s", error->message);
		return;
	}
	{
		gint64 elapsed = g_get_monotonic_time () - s->upload_started;
		gsize size = g_bytes_get_size (s->image);
		/* short uploads say little about the link */
		if (elapsed > 0 && size >= 16 * 1024)
			bgs_run_report_link_rate (s->run, (gdouble) size * G_USEC_PER_SEC / elapsed);
	}
	s->step = STEP_TEST;
	update_continue (s);
}

static void
state_cb (GObject *source, GAsyncResult *res, gpointer user_data)
{
	SmpRun *s = user_data;
	SMP_HELD (s);
	g_autoptr(GError) error = NULL;
	g_autoptr(BgsSmpResponse) resp = bgs_smp_client_call_finish (s->client, res, &error);
	g_autoptr(GArray) slots = NULL;

	if (resp == NULL) {
		if (is_canceled (error) ||
		    bgs_run_is_finished (s->run) || !s->link_up)
			return;
		smp_fail (s, BGS_ERROR_PROTOCOL, "image state request failed: %s", error->message);
		return;
	}
	if (!bgs_smp_body_check (resp->body, &error) ||
	    (slots = bgs_smp_parse_image_state (resp->body, &error)) == NULL) {
		smp_fail (s, BGS_ERROR_PROTOCOL, "image state: %s", error->message);
		return;
	}
	switch (s->step) {
	case STEP_CONNECT:
		if (slot_has_hash (slots, s->info.hash, TRUE)) {
			bgs_run_progress (s->run, 100, "the device already runs this image");
			bgs_run_complete (s->run, TRUE, "", "already up to date");
			return;
		}
		s->step = STEP_UPLOAD;
		break;
	case STEP_TEST:
		s->step = STEP_RESET;
		break;
	case STEP_VERIFY:
		if (!slot_has_hash (slots, s->info.hash, TRUE)) {
			smp_fail (s, BGS_ERROR_FAILED,
				  "the device reverted to its previous image after the reset");
			return;
		}
		s->step = STEP_CONFIRM;
		break;
	case STEP_CONFIRM:
		s->step = STEP_DONE;
		bgs_run_progress (s->run, 100, "firmware updated and confirmed");
		bgs_run_complete (s->run, TRUE, "", "");
		return;
	default:
		break;
	}
	update_continue (s);
}

static void
reset_cb (GObject *source, GAsyncResult *res, gpointer user_data)
{
	SmpRun *s = user_data;
	SMP_HELD (s);
	g_autoptr(GError) error = NULL;
	g_autoptr(BgsSmpResponse) resp = bgs_smp_client_call_finish (s->client, res, &error);

	/* the device may drop the link before or after answering: either way
	 * the reboot shows up as a disconnect, then a reconnect */
	if (resp == NULL && is_canceled (error))
		return;
	if (s->step == STEP_RESET) {
		s->step = STEP_REBOOT;
		bgs_run_progress (s->run, UPDATE_UPLOAD_END + 5, "the device is restarting");
	}
}

static void
update_continue (SmpRun *s)
{
	/* the client takes its own reference on a body */
	g_autoptr(GBytes) body = NULL;

	if (bgs_run_is_finished (s->run) || !s->link_up)
		return;
	switch (s->step) {
	case STEP_CONNECT:
		bgs_run_progress (s->run, 1, "reading the device's images");
		bgs_smp_client_call_async (s->client, BGS_SMP_OP_READ, BGS_SMP_GROUP_IMAGE,
					   BGS_SMP_IMAGE_STATE, (body = bgs_smp_build_empty ()), s->cancellable,
					   state_cb, smp_hold (s));
		break;
	case STEP_UPLOAD:
		s->upload_started = g_get_monotonic_time ();
		bgs_smp_client_upload_image_async (s->client, s->image, 0, FALSE, upload_progress_cb, s,
						   s->cancellable, upload_cb, smp_hold (s));
		break;
	case STEP_TEST:
		bgs_run_progress (s->run, UPDATE_UPLOAD_END, "marking the new image for test");
		bgs_smp_client_call_async (s->client, BGS_SMP_OP_WRITE, BGS_SMP_GROUP_IMAGE,
					   BGS_SMP_IMAGE_STATE,
					   (body = bgs_smp_build_image_state_set (s->info.hash, FALSE)),
					   s->cancellable, state_cb, smp_hold (s));
		break;
	case STEP_RESET:
		bgs_run_progress (s->run, UPDATE_UPLOAD_END + 2, "restarting the device");
		bgs_smp_client_call_async (s->client, BGS_SMP_OP_WRITE, BGS_SMP_GROUP_OS,
					   BGS_SMP_OS_RESET, (body = bgs_smp_build_reset (FALSE)),
					   s->cancellable, reset_cb, smp_hold (s));
		break;
	case STEP_REBOOT:
		/* back after the reboot */
		s->step = STEP_VERIFY;
		bgs_run_progress (s->run, UPDATE_REBOOT_END - 3, "checking the running image");
		bgs_smp_client_call_async (s->client, BGS_SMP_OP_READ, BGS_SMP_GROUP_IMAGE,
					   BGS_SMP_IMAGE_STATE, (body = bgs_smp_build_empty ()), s->cancellable,
					   state_cb, smp_hold (s));
		break;
	case STEP_VERIFY:
		bgs_smp_client_call_async (s->client, BGS_SMP_OP_READ, BGS_SMP_GROUP_IMAGE,
					   BGS_SMP_IMAGE_STATE, (body = bgs_smp_build_empty ()), s->cancellable,
					   state_cb, smp_hold (s));
		break;
	case STEP_CONFIRM:
		bgs_run_progress (s->run, UPDATE_REBOOT_END, "confirming the new image");
		bgs_smp_client_call_async (s->client, BGS_SMP_OP_WRITE, BGS_SMP_GROUP_IMAGE,
					   BGS_SMP_IMAGE_STATE,
					   (body = bgs_smp_build_image_state_set (s->info.hash, TRUE)),
					   s->cancellable, state_cb, smp_hold (s));
		break;
	case STEP_DONE:
		break;
	}
}

static void
update_link_up (SmpRun *s)
{
	s->step = STEP_CONNECT;
	update_continue (s);
}

static void
image_read_cb (GObject *source, GAsyncResult *res, gpointer user_data)
{
	BgsRun *run = user_data;
	SmpRun *s = bgs_run_get_profile_data (run);
	g_autoptr(GError) error = NULL;
	gssize n;

	n = g_output_stream_splice_finish (G_OUTPUT_STREAM (source), res, &error);
	if (n < 0 || s == NULL || bgs_run_is_finished (run)) {
		if (n < 0 && s != NULL && !is_canceled (error))
			smp_fail (s, BGS_ERROR_IO, "cannot read the firmware image: %s", error->message);
		g_object_unref (run);
		return;
	}
	s->image = g_memory_output_stream_steal_as_bytes (G_MEMORY_OUTPUT_STREAM (source));
	/* check the image before touching the device */
	if (!bgs_smp_image_check (g_bytes_get_data (s->image, NULL), g_bytes_get_size (s->image),
				  &s->info, &error)) {
		smp_fail (s, BGS_ERROR_INVALID_ARGS, "not a valid MCUboot image: %s", error->message);
		g_object_unref (run);
		return;
	}
	bgs_run_progress (run, 0, "connecting to the device");
	smp_open (s, TRUE, update_link_up);
	g_object_unref (run);
}

static void
update_start (BgsRun *run)
{
	SmpRun *s = smp_run_new (run);
	int fd = bgs_run_steal_fd (run, "input");
	struct stat st;
	g_autoptr(GInputStream) in = NULL;
	g_autoptr(GOutputStream) out = NULL;

	if (fd < 0) {
		smp_fail (s, BGS_ERROR_INVALID_ARGS, "smp-firmware-update needs the image as the \"input\" file descriptor");
		return;
	}
	if (fstat (fd, &st) != 0 || st.st_size <= 0 || st.st_size > MAX_IMAGE_SIZE) {
		close (fd);
		smp_fail (s, BGS_ERROR_INVALID_ARGS, "the firmware image must be 1 byte to %d MiB",
			  MAX_IMAGE_SIZE / (1024 * 1024));
		return;
	}
	in = g_unix_input_stream_new (fd, TRUE);
	out = g_memory_output_stream_new_resizable ();
	g_output_stream_splice_async (out, in, G_OUTPUT_STREAM_SPLICE_CLOSE_SOURCE |
				      G_OUTPUT_STREAM_SPLICE_CLOSE_TARGET,
				      G_PRIORITY_DEFAULT, s->cancellable, image_read_cb,
				      g_object_ref (run));
}

/* ---- smp-file-sync ---------------------------------------------------------------- */

static void sync_next (SmpRun *s);

/* device paths become local names: the last component, never "." or ".." */
static char *
local_name (const char *device_path)
{
	const char *base = strrchr (device_path, '/');
	base = base != NULL ? base + 1 : device_path;
	if (*base == '\0' || g_strcmp0 (base, ".") == 0 || g_strcmp0 (base, "..") == 0)
		return NULL;
	return g_strdup (base);
}

static void
download_progress_cb (guint64 done, guint64 total, gpointer user_data)
{
	SmpRun *s = user_data;
	guint nfiles = g_strv_length (s->files);
	guint percent = nfiles > 0 ? (guint) ((s->file_index * 100 + (total > 0 ? done * 100 / total : 0)) / nfiles) : 0;
	g_autofree char *status = g_strdup_printf ("file %u of %u: %s, %" G_GUINT64_FORMAT " of %" G_GUINT64_FORMAT " bytes",
						   s->file_index + 1, nfiles, s->files[s->file_index],
						   done, total);

	bgs_run_progress (s->run, MIN (percent, 99u), status);
}

static void
download_cb (GObject *source, GAsyncResult *res, gpointer user_data)
{
	SmpRun *s = user_data;
	SMP_HELD (s);
	g_autoptr(GError) error = NULL;
	guint64 total = 0;

	if (!bgs_smp_client_download_file_finish (s->client, res, &total, &error)) {
		if (is_canceled (error) || bgs_run_is_finished (s->run))
			return;
		smp_fail (s, BGS_ERROR_FAILED, "downloading %s failed: %s", s->files[s->file_index],
			  error->message);
		return;
	}
	if (fsync (s->file_fd) != 0)
		g_debug ("fsync: %s", g_strerror (errno));
	close (s->file_fd);
	s->file_fd = -1;
	s->bytes_done += total;
	s->file_index++;
	sync_next (s);
}

static void
sync_next (SmpRun *s)
{
	g_autofree char *name = NULL;
	struct stat st;
	guint64 start = 0;

	if (bgs_run_is_finished (s->run))
		return;
	if (s->files[s->file_index] == NULL) {
		g_autofree char *msg = g_strdup_printf ("%u files, %" G_GUINT64_FORMAT " bytes",
							s->file_index, s->bytes_done);
		bgs_run_progress (s->run, 100, msg);
		bgs_run_complete (s->run, TRUE, "", msg);
		return;
	}
	name = local_name (s->files[s->file_index]);
	if (name == NULL) {
		smp_fail (s, BGS_ERROR_INVALID_ARGS, "bad file name '%s'", s->files[s->file_index]);
		return;
	}
	/* a partial file resumes from its size; the download reports the
	 * total, and a complete file costs one request */
	s->file_fd = openat (s->dir_fd, name, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (s->file_fd < 0) {
		smp_fail (s, BGS_ERROR_IO, "cannot write %s in the output directory: %s", name,
			  g_strerror (errno));
		return;
	}
	if (fstat (s->file_fd, &st) == 0 && S_ISREG (st.st_mode))
		start = (guint64) st.st_size;
	bgs_smp_client_download_file_async (s->client, s->files[s->file_index], s->file_fd, start,
					    download_progress_cb, s, s->cancellable, download_cb, smp_hold (s));
}

static void
sync_link_up (SmpRun *s)
{
	bgs_run_progress (s->run, 0, "connected");
	sync_next (s);
}

static void
sync_start (BgsRun *run)
{
	SmpRun *s = smp_run_new (run);
	const char *args = bgs_run_get_arguments (run);

	s->dir_fd = bgs_run_steal_fd (run, "output-dir");
	if (s->dir_fd < 0) {
		smp_fail (s, BGS_ERROR_INVALID_ARGS, "smp-file-sync needs the \"output-dir\" file descriptor");
		return;
	}
	/* files named by the app, else the model's list */
	if (args != NULL && *args != '\0')
		s->files = g_strsplit (args, ";", MAX_FILES + 1);
	else if (s->params.files != NULL)
		s->files = g_strdupv (s->params.files);
	else
		s->files = g_new0 (char *, 1);
	if (s->files[0] == NULL || *s->files[0] == '\0' || g_strv_length (s->files) > MAX_FILES) {
		smp_fail (s, BGS_ERROR_INVALID_ARGS,
			  "name the files to sync (\";\"-separated device paths, at most %d)", MAX_FILES);
		return;
	}
	bgs_run_progress (run, 0, "connecting to the device");
	smp_open (s, FALSE, sync_link_up);
}

static void
smp_cancel (BgsRun *run, BgsCancelReason reason)
{
	SmpRun *s = bgs_run_get_profile_data (run);

	if (s == NULL)
		return;
	/* stop talking: an update canceled before "test" leaves the device on
	 * its current image */
	g_cancellable_cancel (s->cancellable);
	if (s->transport != NULL)
		bgs_transport_close (s->transport);
}

/* upload at the rate measured on this device before (else the model's
 * [Profile smp] Throughput=, else a slow LE link's 2 KB/s), plus the
 * reboot and confirmation (RebootSeconds=, default 30) */
static guint
update_estimate (gint64 input_size, gdouble measured_rate, GHashTable *params)
{
	BgsSmpParams p;
	gdouble rate = measured_rate;
	guint reboot;

	if (input_size <= 0)
		return 0;
	/* quietly: the run warns about bad values, once */
	bgs_smp_params_parse (params, NULL, &p, NULL);
	if (!(rate > 0) || rate > 1e9)
		rate = p.throughput;
	if (!(rate > 0))
		rate = 2000;
	reboot = p.reboot_seconds;
	bgs_smp_params_clear (&p);
	return (guint) MIN ((gdouble) input_size / rate + reboot + 1, (gdouble) G_MAXUINT32);
}

static const BgsProfile smp_update_profile = {
	.name = "smp-firmware-update",
	.triggers = BGS_PROFILE_TRIGGER (BGS_TRIGGER_DEVICE_SERVICING),
	.start = update_start,
	.cancel = smp_cancel,
	.estimate = update_estimate,
};

static const BgsProfile smp_sync_profile = {
	.name = "smp-file-sync",
	.triggers = BGS_PROFILE_TRIGGER (BGS_TRIGGER_DEVICE_USE),
	.start = sync_start,
	.cancel = smp_cancel,
};

void
bgs_profile_smp_register (void)
{
	bgs_profile_register (&smp_update_profile);
	bgs_profile_register (&smp_sync_profile);
}
