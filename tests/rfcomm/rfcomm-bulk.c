/* rfcomm-bulk.c: moves bytes through bgsync's RFCOMM transport, for the
 * transport tests.
 *
 *   rfcomm-bulk --device PATH --uuid UUID [--send BYTES] [--receive BYTES]
 *               [--payload BYTES] [--hold] [--timeout SECS]
 *
 * Sends a deterministic pattern and/or waits for BYTES back. Prints one
 * line of key=value results: the SHA-256 of what was sent and received,
 * wall and CPU seconds. With --hold it prints "connected", then waits for
 * the link to drop and exits 0 printing "disconnected=<reason>". */
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>

#include "bgs-rfcomm-transport.h"

static char *device, *uuid;
static gint64 send_bytes, receive_bytes;
static gint payload_opt;
static gboolean hold;
static GMainLoop *loop;
static int status = 1;
static GChecksum *sent_sum, *recv_sum;
static guint64 sent, received, io_in;
static gint64 started;
static BgsRfcommTransport *transport;

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
	if (hold || sent < (guint64) send_bytes || received < (guint64) receive_bytes)
		return;
	g_print ("payload=%u attempts=%u sent=%" G_GUINT64_FORMAT " sent_sha256=%s received=%"
		 G_GUINT64_FORMAT " received_sha256=%s io_in=%" G_GUINT64_FORMAT " wall=%.3f cpu=%.3f\n",
		 bgs_transport_get_payload_size (BGS_TRANSPORT (transport)),
		 bgs_rfcomm_transport_get_connect_attempts (transport), sent,
		 g_checksum_get_string (sent_sum), received, g_checksum_get_string (recv_sum), io_in,
		 (g_get_monotonic_time () - started) / 1e6, cpu_seconds ());
	status = 0;
	g_main_loop_quit (loop);
}

static void
io_cb (BgsTransport *t, guint64 in, guint64 out, gpointer data)
{
	/* counts what actually went into the socket */
	sent += out;
	io_in += in;
	maybe_done ();
}

static void
packet_cb (BgsTransport *t, GBytes *packet, gpointer data)
{
	gsize len = 0;
	const guint8 *p = g_bytes_get_data (packet, &len);

	if (len > bgs_transport_get_payload_size (t))
		g_printerr ("rfcomm-bulk: packet of %" G_GSIZE_FORMAT " bytes exceeds the payload\n", len);
	g_checksum_update (recv_sum, p, len);
	received += len;
	maybe_done ();
}

static void
disconnected_cb (BgsTransport *t, GError *error, gpointer data)
{
	if (hold) {
		g_print ("disconnected=%s\n", error != NULL ? error->message : "?");
		status = 0;
	} else {
		g_printerr ("rfcomm-bulk: disconnected: %s\n", error != NULL ? error->message : "?");
	}
	g_main_loop_quit (loop);
}

static void
open_cb (GObject *source, GAsyncResult *res, gpointer data)
{
	g_autoptr(GError) error = NULL;
	g_autofree guint8 *buf = NULL;
	guint payload;
	guint64 queued = 0;

	transport = bgs_rfcomm_transport_open_finish (res, &error);
	if (transport == NULL) {
		g_printerr ("rfcomm-bulk: %s\n", error->message);
		g_main_loop_quit (loop);
		return;
	}
	g_signal_connect (transport, "io", G_CALLBACK (io_cb), NULL);
	g_signal_connect (transport, "packet", G_CALLBACK (packet_cb), NULL);
	g_signal_connect (transport, "disconnected", G_CALLBACK (disconnected_cb), NULL);
	if (hold) {
		g_print ("connected\n");
		fflush (stdout);
	}
	started = g_get_monotonic_time ();
	payload = bgs_transport_get_payload_size (BGS_TRANSPORT (transport));
	buf = g_malloc (payload);
	/* queue everything: the transport paces it with back-pressure */
	while (queued < (guint64) send_bytes) {
		gsize n = MIN ((guint64) payload, (guint64) send_bytes - queued);

		for (gsize i = 0; i < n; i++)
			buf[i] = pattern (queued + i);
		g_checksum_update (sent_sum, buf, n);
		if (!bgs_transport_send_data (BGS_TRANSPORT (transport), buf, n, &error)) {
			g_printerr ("rfcomm-bulk: send: %s\n", error->message);
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
	BgsRfcommTransportOptions opts = { 0 };

	if (manager == NULL) {
		g_printerr ("rfcomm-bulk: %s\n", error->message);
		g_main_loop_quit (loop);
		return;
	}
	opts.uuid = uuid;
	opts.payload_size = payload_opt > 0 ? (guint) payload_opt : 0;
	bgs_rfcomm_transport_open_async (manager, device, &opts, NULL, open_cb, NULL);
}

static gboolean
timeout_cb (gpointer data)
{
	g_printerr ("rfcomm-bulk: timed out (sent %" G_GUINT64_FORMAT ", received %" G_GUINT64_FORMAT ")\n",
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
		{ "uuid", 0, 0, G_OPTION_ARG_STRING, &uuid, "RFCOMM profile UUID", "UUID" },
		{ "send", 0, 0, G_OPTION_ARG_INT64, &send_bytes, "bytes to send", "N" },
		{ "receive", 0, 0, G_OPTION_ARG_INT64, &receive_bytes, "bytes to wait for", "N" },
		{ "payload", 0, 0, G_OPTION_ARG_INT, &payload_opt, "packet size", "N" },
		{ "hold", 0, 0, G_OPTION_ARG_NONE, &hold, "stay connected until the link drops", NULL },
		{ "timeout", 0, 0, G_OPTION_ARG_INT, &timeout, "give up after SECS", "SECS" },
		{ NULL }
	};
	g_autoptr(GOptionContext) ctx = g_option_context_new ("- bulk transfer over an RFCOMM transport");
	g_autoptr(GError) error = NULL;
	g_autoptr(GDBusConnection) bus = NULL;

	g_option_context_add_main_entries (ctx, entries, NULL);
	if (!g_option_context_parse (ctx, &argc, &argv, &error) || device == NULL || uuid == NULL) {
		g_printerr ("rfcomm-bulk: %s\n", error != NULL ? error->message : "need --device and --uuid");
		return 2;
	}
	bus = g_bus_get_sync (G_BUS_TYPE_SYSTEM, NULL, &error);
	if (bus == NULL) {
		g_printerr ("rfcomm-bulk: %s\n", error->message);
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
