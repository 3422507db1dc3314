/* smp-bench.c: bgsync's SMP client on bgsync's GATT transport, without
 * bgsyncd around it, for the SMP benchmark: the same image upload (or file
 * download) on the AcquireWrite/AcquireNotify path and on the
 * WriteValue/StartNotify path, with one request in flight or pipelined.
 *
 *   smp-bench --device PATH (--upload IMAGE | --download NAME)
 *             [--no-acquire] [--window N] [--no-params]
 *
 * --window 0 (default) sizes to the device's OS params (0/6) with the
 * default cap; N > 0 caps the window at N; --no-params skips 0/6 (384-byte
 * frames, one in flight: the client before pipelining). Prints one line of
 * key=value results (path, mtu, frame, window, bytes, wall from the first
 * upload request, cpu of this process, requests, rewinds). */
#include <fcntl.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>

#include "bgs-gatt-transport.h"
#include "bgs-smp-client.h"

#define SMP_SERVICE_UUID "8d53dc1d-1db7-4cd3-868b-8a527460aa84"
#define SMP_CHAR_UUID "da2e7828-fbce-4e01-ae9e-261174997c48"

static char *device, *upload_path, *download_name;
static gboolean no_acquire, no_params;
static gint window_cap;
static GMainLoop *loop;
static int status = 1;
static BgsGattTransport *transport;
static BgsSmpClient *client;
static GBytes *image;
static gint64 started;
static guint64 moved;
static int out_fd = -1;

static double
cpu_seconds (void)
{
	struct rusage ru;

	getrusage (RUSAGE_SELF, &ru);
	return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec +
	       (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static void
report (void)
{
	BgsSmpClientStats st;

	bgs_smp_client_get_stats (client, &st);
	g_print ("path=%s mtu=%u frame=%" G_GSIZE_FORMAT " window=%u max_inflight=%u bytes=%" G_GUINT64_FORMAT
		 " wall=%.3f cpu=%.3f requests=%" G_GUINT64_FORMAT " rewinds=%" G_GUINT64_FORMAT
		 " timeouts=%" G_GUINT64_FORMAT "\n",
		 bgs_gatt_transport_uses_fds (transport) ? "fd" : "writevalue",
		 bgs_gatt_transport_get_mtu (transport), bgs_smp_client_get_max_frame (client),
		 bgs_smp_client_get_window (client), st.max_inflight, moved,
		 (g_get_monotonic_time () - started) / 1e6, cpu_seconds (), st.requests, st.rewinds,
		 st.timeouts);
}

static void
done_cb (GObject *source, GAsyncResult *res, gpointer data)
{
	g_autoptr(GError) error = NULL;
	gboolean ok;
	guint64 total = 0;

	if (image != NULL) {
		ok = bgs_smp_client_upload_image_finish (client, res, &error);
		moved = g_bytes_get_size (image);
	} else {
		ok = bgs_smp_client_download_file_finish (client, res, &total, &error);
		moved = total;
	}
	if (!ok) {
		g_printerr ("smp-bench: %s\n", error->message);
	} else {
		report ();
		status = 0;
	}
	g_main_loop_quit (loop);
}

static void
go (void)
{
	started = g_get_monotonic_time ();
	if (image != NULL)
		bgs_smp_client_upload_image_async (client, image, 0, FALSE, NULL, NULL, NULL, done_cb, NULL);
	else
		bgs_smp_client_download_file_async (client, download_name, out_fd, 0, NULL, NULL, NULL,
						    done_cb, NULL);
}

static void
params_cb (GObject *source, GAsyncResult *res, gpointer data)
{
	g_autoptr(GError) error = NULL;

	if (!bgs_smp_client_query_params_finish (client, res, NULL, &error)) {
		g_printerr ("smp-bench: params: %s\n", error->message);
		g_main_loop_quit (loop);
		return;
	}
	go ();
}

static gboolean
send_cb (const guint8 *data, gsize len, gpointer user_data, GError **error)
{
	return bgs_transport_send_data (BGS_TRANSPORT (transport), data, len, error);
}

static void
packet_cb (BgsTransport *t, GBytes *packet, gpointer data)
{
	gsize len = 0;
	const guint8 *p = g_bytes_get_data (packet, &len);

	bgs_smp_client_receive (client, p, len);
}

static void
disconnected_cb (BgsTransport *t, GError *error, gpointer data)
{
	g_printerr ("smp-bench: disconnected: %s\n", error != NULL ? error->message : "?");
	g_main_loop_quit (loop);
}

static void
open_cb (GObject *source, GAsyncResult *res, gpointer data)
{
	g_autoptr(GError) error = NULL;

	transport = bgs_gatt_transport_open_finish (res, &error);
	if (transport == NULL) {
		g_printerr ("smp-bench: %s\n", error->message);
		g_main_loop_quit (loop);
		return;
	}
	g_signal_connect (transport, "packet", G_CALLBACK (packet_cb), NULL);
	g_signal_connect (transport, "disconnected", G_CALLBACK (disconnected_cb), NULL);
	/* as the smp profile does: the client wants the ATT MTU */
	bgs_smp_client_set_transport (client, bgs_transport_get_payload_size (BGS_TRANSPORT (transport)) + 3,
				      send_cb, NULL, NULL);
	if (no_params) {
		go ();
		return;
	}
	bgs_smp_client_query_params_async (client, (guint) window_cap, NULL, params_cb, NULL);
}

static void
manager_cb (GObject *source, GAsyncResult *res, gpointer data)
{
	g_autoptr(GError) error = NULL;
	g_autoptr(GDBusObjectManager) manager = g_dbus_object_manager_client_new_finish (res, &error);
	BgsGattTransportOptions opts = { 0 };

	if (manager == NULL) {
		g_printerr ("smp-bench: %s\n", error->message);
		g_main_loop_quit (loop);
		return;
	}
	opts.service_uuid = SMP_SERVICE_UUID;
	opts.characteristic_uuid = SMP_CHAR_UUID;
	opts.connect_timeout = 10 * G_USEC_PER_SEC;
	opts.no_acquire = no_acquire;
	bgs_gatt_transport_open_async (manager, device, &opts, NULL, open_cb, NULL);
}

static gboolean
timeout_cb (gpointer data)
{
	g_printerr ("smp-bench: timed out\n");
	g_main_loop_quit (loop);
	return G_SOURCE_REMOVE;
}

int
main (int argc, char **argv)
{
	gint timeout = 300;
	char *out_path = NULL;
	const GOptionEntry entries[] = {
		{ "device", 0, 0, G_OPTION_ARG_STRING, &device, "BlueZ device object path", "PATH" },
		{ "upload", 0, 0, G_OPTION_ARG_FILENAME, &upload_path, "image to upload", "FILE" },
		{ "download", 0, 0, G_OPTION_ARG_STRING, &download_name, "device file to download", "NAME" },
		{ "output", 0, 0, G_OPTION_ARG_FILENAME, &out_path, "where the download goes", "FILE" },
		{ "no-acquire", 0, 0, G_OPTION_ARG_NONE, &no_acquire, "WriteValue/StartNotify path", NULL },
		{ "no-params", 0, 0, G_OPTION_ARG_NONE, &no_params, "skip OS params: 384-byte frames, one in flight", NULL },
		{ "window", 0, 0, G_OPTION_ARG_INT, &window_cap, "cap on requests in flight (0: default)", "N" },
		{ "timeout", 0, 0, G_OPTION_ARG_INT, &timeout, "give up after SECS", "SECS" },
		{ NULL }
	};
	g_autoptr(GOptionContext) ctx = g_option_context_new ("- SMP upload/download through the GATT transport");
	g_autoptr(GError) error = NULL;
	g_autoptr(GDBusConnection) bus = NULL;
	g_autoptr(BgsClock) clock = NULL;

	g_option_context_add_main_entries (ctx, entries, NULL);
	if (!g_option_context_parse (ctx, &argc, &argv, &error) || device == NULL ||
	    (upload_path == NULL) == (download_name == NULL) || window_cap < 0 ||
	    (download_name != NULL && out_path == NULL)) {
		g_printerr ("smp-bench: %s\n", error != NULL ? error->message :
			    "need --device and one of --upload FILE or --download NAME --output FILE");
		return 2;
	}
	if (upload_path != NULL) {
		g_autofree char *contents = NULL;
		gsize len = 0;

		if (!g_file_get_contents (upload_path, &contents, &len, &error)) {
			g_printerr ("smp-bench: %s\n", error->message);
			return 1;
		}
		image = g_bytes_new_take (g_steal_pointer (&contents), len);
	} else {
		out_fd = open (out_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (out_fd < 0) {
			g_printerr ("smp-bench: %s: %s\n", out_path, g_strerror (errno));
			return 1;
		}
	}
	bus = g_bus_get_sync (G_BUS_TYPE_SYSTEM, NULL, &error);
	if (bus == NULL) {
		g_printerr ("smp-bench: %s\n", error->message);
		return 1;
	}
	clock = bgs_clock_new_real ();
	client = bgs_smp_client_new (clock, BGS_SMP_V1);
	loop = g_main_loop_new (NULL, FALSE);
	g_dbus_object_manager_client_new (bus, G_DBUS_OBJECT_MANAGER_CLIENT_FLAGS_NONE, "org.bluez",
					  "/", NULL, NULL, NULL, NULL, manager_cb, NULL);
	g_timeout_add_seconds (timeout, timeout_cb, NULL);
	g_main_loop_run (loop);
	bgs_smp_client_unref (client);
	if (transport != NULL)
		bgs_transport_close (BGS_TRANSPORT (transport));
	g_clear_object (&transport);
	g_clear_pointer (&image, g_bytes_unref);
	if (out_fd >= 0)
		close (out_fd);
	return status;
}
