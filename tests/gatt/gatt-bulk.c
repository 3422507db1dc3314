/* gatt-bulk.c: moves bytes through bgsync's GATT transport, for the
 * transport tests and the bulk benchmark.
 *
 *   gatt-bulk --device PATH --service UUID --write UUID [--notify UUID]
 *             [--send BYTES] [--receive BYTES] [--no-acquire]
 *
 * Sends a deterministic pattern, and/or waits for BYTES of notifications.
 * Prints one line of key=value results: the SHA-256 of what was sent and
 * received, the path used (fd or writevalue), wall and CPU seconds. */
#include <stdlib.h>
#include <sys/resource.h>

#include "bgs-gatt-transport.h"

static char *device, *service, *write_uuid, *notify_uuid;
static gint64 send_bytes, receive_bytes;
static gboolean no_acquire;
static GMainLoop *loop;
static int status = 1;
static GChecksum *sent_sum, *recv_sum;
static guint64 sent, received;
static gint64 started;
static BgsGattTransport *transport;

static guint8
pattern (guint64 i)
{
	return (guint8) ((i * 131 + (i >> 8)) & 0xff);
}

static double
cpu_seconds (void)
{
	struct rusage ru;

	getrusage (RUSAGE_SELF, &ru);
	return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec +
	       (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static void
maybe_done (void)
{
	if (sent < (guint64) send_bytes || received < (guint64) receive_bytes)
		return;
	g_print ("path=%s mtu=%u sent=%" G_GUINT64_FORMAT " sent_sha256=%s received=%" G_GUINT64_FORMAT
		 " received_sha256=%s wall=%.3f cpu=%.3f\n",
		 bgs_gatt_transport_uses_fds (transport) ? "fd" : "writevalue",
		 bgs_gatt_transport_get_mtu (transport), sent, g_checksum_get_string (sent_sum),
		 received, g_checksum_get_string (recv_sum),
		 (g_get_monotonic_time () - started) / 1e6, cpu_seconds ());
	status = 0;
	g_main_loop_quit (loop);
}

static void
io_cb (BgsTransport *t, guint64 in, guint64 out, gpointer data)
{
	/* counts what actually went on the link */
	sent += out;
	maybe_done ();
}

static void
packet_cb (BgsTransport *t, GBytes *packet, gpointer data)
{
	gsize len = 0;
	const guint8 *p = g_bytes_get_data (packet, &len);

	g_checksum_update (recv_sum, p, len);
	received += len;
	maybe_done ();
}

static void
disconnected_cb (BgsTransport *t, GError *error, gpointer data)
{
	g_printerr ("gatt-bulk: disconnected: %s\n", error != NULL ? error->message : "?");
	g_main_loop_quit (loop);
}

static void
open_cb (GObject *source, GAsyncResult *res, gpointer data)
{
	g_autoptr(GError) error = NULL;
	guint payload;
	guint64 queued = 0;

	transport = bgs_gatt_transport_open_finish (res, &error);
	if (transport == NULL) {
		g_printerr ("gatt-bulk: %s\n", error->message);
		g_main_loop_quit (loop);
		return;
	}
	g_signal_connect (transport, "io", G_CALLBACK (io_cb), NULL);
	g_signal_connect (transport, "packet", G_CALLBACK (packet_cb), NULL);
	g_signal_connect (transport, "disconnected", G_CALLBACK (disconnected_cb), NULL);
	started = g_get_monotonic_time ();
	payload = bgs_transport_get_payload_size (BGS_TRANSPORT (transport));
	/* queue everything: the transport paces it with back-pressure */
	while (queued < (guint64) send_bytes) {
		guint8 buf[512];
		gsize n = MIN ((guint64) payload, (guint64) send_bytes - queued);

		for (gsize i = 0; i < n; i++)
			buf[i] = pattern (queued + i);
		g_checksum_update (sent_sum, buf, n);
		if (!bgs_transport_send_data (BGS_TRANSPORT (transport), buf, n, &error)) {
			g_printerr ("gatt-bulk: send: %s\n", error->message);
			g_main_loop_quit (loop);
			return;
		}
		queued += n;
	}
	maybe_done ();
}

static void
manager_cb (GObject *source, GAsyncResult *res, gpointer data)
{
	g_autoptr(GError) error = NULL;
	g_autoptr(GDBusObjectManager) manager = g_dbus_object_manager_client_new_finish (res, &error);
	BgsGattTransportOptions opts = { 0 };

	if (manager == NULL) {
		g_printerr ("gatt-bulk: %s\n", error->message);
		g_main_loop_quit (loop);
		return;
	}
	opts.service_uuid = service;
	opts.characteristic_uuid = write_uuid;
	opts.notify_characteristic_uuid = notify_uuid;
	opts.no_acquire = no_acquire;
	bgs_gatt_transport_open_async (manager, device, &opts, NULL, open_cb, NULL);
}

static gboolean
timeout_cb (gpointer data)
{
	g_printerr ("gatt-bulk: timed out (sent %" G_GUINT64_FORMAT ", received %" G_GUINT64_FORMAT ")\n",
		    sent, received);
	g_main_loop_quit (loop);
	return G_SOURCE_REMOVE;
}

int
main (int argc, char **argv)
{
	gint timeout = 120;
	const GOptionEntry entries[] = {
		{ "device", 0, 0, G_OPTION_ARG_STRING, &device, "BlueZ device object path", "PATH" },
		{ "service", 0, 0, G_OPTION_ARG_STRING, &service, "service UUID", "UUID" },
		{ "write", 0, 0, G_OPTION_ARG_STRING, &write_uuid, "characteristic written", "UUID" },
		{ "notify", 0, 0, G_OPTION_ARG_STRING, &notify_uuid, "characteristic notifying", "UUID" },
		{ "send", 0, 0, G_OPTION_ARG_INT64, &send_bytes, "bytes to send", "N" },
		{ "receive", 0, 0, G_OPTION_ARG_INT64, &receive_bytes, "bytes to wait for", "N" },
		{ "no-acquire", 0, 0, G_OPTION_ARG_NONE, &no_acquire, "WriteValue/StartNotify path", NULL },
		{ "timeout", 0, 0, G_OPTION_ARG_INT, &timeout, "give up after SECS", "SECS" },
		{ NULL }
	};
	g_autoptr(GOptionContext) ctx = g_option_context_new ("- bulk transfer over a GATT transport");
	g_autoptr(GError) error = NULL;
	g_autoptr(GDBusConnection) bus = NULL;

	g_option_context_add_main_entries (ctx, entries, NULL);
	if (!g_option_context_parse (ctx, &argc, &argv, &error) || device == NULL ||
	    service == NULL || write_uuid == NULL) {
		g_printerr ("gatt-bulk: %s\n", error != NULL ? error->message : "need --device, --service, --write");
		return 2;
	}
	bus = g_bus_get_sync (G_BUS_TYPE_SYSTEM, NULL, &error);
	if (bus == NULL) {
		g_printerr ("gatt-bulk: %s\n", error->message);
		return 1;
	}
	sent_sum = g_checksum_new (G_CHECKSUM_SHA256);
	recv_sum = g_checksum_new (G_CHECKSUM_SHA256);
	loop = g_main_loop_new (NULL, FALSE);
	g_dbus_object_manager_client_new (bus, G_DBUS_OBJECT_MANAGER_CLIENT_FLAGS_NONE, "org.bluez",
					  "/", NULL, NULL, NULL, NULL, manager_cb, NULL);
	g_timeout_add_seconds (timeout, timeout_cb, NULL);
	g_main_loop_run (loop);
	g_clear_object (&transport);
	return status;
}
