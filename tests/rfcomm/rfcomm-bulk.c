/* rfcomm-bulk.c: moves bytes through bgsync's RFCOMM transport, for the
 * transport tests.
 *
 *   rfcomm-bulk --device PATH [--device PATH...] --uuid UUID [--send BYTES]
 *               [--receive BYTES] [--payload BYTES] [--hold] [--timeout SECS]
 *               [--cancel-ms MS] [--reconnect]
 *
 * Sends a deterministic pattern and/or waits for BYTES back, on every
 * device at once (one transport each, one shared profile registration).
 * Prints one line of key=value results per device, in the order given: the
 * SHA-256 of what was sent and received, wall and CPU seconds, after a
 * "connected" line per transport. With --hold it waits for the link to drop
 * and exits 0 printing "disconnected=<reason>"; with --reconnect too, it
 * then reconnects, prints "reconnected" and does the transfer. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>

#include "bgs-rfcomm-transport.h"

typedef struct {
	const char *device;
	BgsRfcommTransport *transport;
	GChecksum *sent_sum, *recv_sum;
	guint64 sent, received, io_in;
	gint64 started;
	gboolean done;
} Transfer;

static char **devices, *uuid;
static gint64 send_bytes, receive_bytes;
static gint payload_opt, cancel_ms;
static gboolean hold, reconnect;
static GMainLoop *loop;
static int status = 1;
static Transfer *transfers;
static GCancellable *cancellable;
static guint n_transfers, n_done;

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
quit (int code)
{
	status = code;
	g_main_loop_quit (loop);
}

static void
maybe_done (Transfer *x)
{
	if (hold || x->done || x->sent < (guint64) send_bytes || x->received < (guint64) receive_bytes)
		return;
	x->done = TRUE;
	x->started = g_get_monotonic_time () - x->started;
	if (++n_done < n_transfers)
		return;
	for (guint i = 0; i < n_transfers; i++) {
		Transfer *t = &transfers[i];

		g_print ("device=%s payload=%u attempts=%u sent=%" G_GUINT64_FORMAT " sent_sha256=%s received=%"
			 G_GUINT64_FORMAT " received_sha256=%s io_in=%" G_GUINT64_FORMAT " wall=%.3f cpu=%.3f\n",
			 t->device, bgs_transport_get_payload_size (BGS_TRANSPORT (t->transport)),
			 bgs_rfcomm_transport_get_connect_attempts (t->transport), t->sent,
			 g_checksum_get_string (t->sent_sum), t->received,
			 g_checksum_get_string (t->recv_sum), t->io_in, t->started / 1e6, cpu_seconds ());
	}
	quit (0);
}

static void
io_cb (BgsTransport *t, guint64 in, guint64 out, gpointer data)
{
	Transfer *x = data;

	/* counts what actually went into the socket */
	x->sent += out;
	x->io_in += in;
	maybe_done (x);
}

static void
packet_cb (BgsTransport *t, GBytes *packet, gpointer data)
{
	Transfer *x = data;
	gsize len = 0;
	const guint8 *p = g_bytes_get_data (packet, &len);

	if (len > bgs_transport_get_payload_size (t))
		g_printerr ("rfcomm-bulk: packet of %" G_GSIZE_FORMAT " bytes exceeds the payload\n", len);
	g_checksum_update (x->recv_sum, p, len);
	x->received += len;
	maybe_done (x);
}

static void reconnect_cb (GObject *source, GAsyncResult *res, gpointer data);

static void
disconnected_cb (BgsTransport *t, GError *error, gpointer data)
{
	Transfer *x = data;

	if (hold) {
		g_print ("disconnected=%s\n", error != NULL ? error->message : "?");
		fflush (stdout);
		if (reconnect)
			bgs_rfcomm_transport_reconnect_async (x->transport, x->device, cancellable,
							      reconnect_cb, x);
		else
			quit (0);
	} else {
		g_printerr ("rfcomm-bulk: disconnected: %s\n", error != NULL ? error->message : "?");
		quit (1);
	}
}

static void
start_transfer (Transfer *x)
{
	g_autoptr(GError) error = NULL;
	g_autofree guint8 *buf = NULL;
	guint payload;
	guint64 queued = 0;

	x->started = g_get_monotonic_time ();
	payload = bgs_transport_get_payload_size (BGS_TRANSPORT (x->transport));
	buf = g_malloc (payload);
	/* queue everything: the transport paces it with back-pressure */
	while (queued < (guint64) send_bytes) {
		gsize n = MIN ((guint64) payload, (guint64) send_bytes - queued);

		for (gsize i = 0; i < n; i++)
			buf[i] = pattern (queued + i);
		g_checksum_update (x->sent_sum, buf, n);
		if (!bgs_transport_send_data (BGS_TRANSPORT (x->transport), buf, n, &error)) {
			g_printerr ("rfcomm-bulk: send: %s\n", error->message);
			quit (1);
			return;
		}
		queued += n;
	}
	maybe_done (x);
}

static void
reconnect_cb (GObject *source, GAsyncResult *res, gpointer data)
{
	Transfer *x = data;
	g_autoptr(GError) error = NULL;

	if (!bgs_rfcomm_transport_reconnect_finish (x->transport, res, &error)) {
		g_printerr ("rfcomm-bulk: reconnect: %s\n", error->message);
		quit (1);
		return;
	}
	g_print ("reconnected\n");
	fflush (stdout);
	hold = FALSE;
	start_transfer (x);
}

static void
open_cb (GObject *source, GAsyncResult *res, gpointer data)
{
	Transfer *x = data;
	g_autoptr(GError) error = NULL;

	x->transport = bgs_rfcomm_transport_open_finish (res, &error);
	if (x->transport == NULL) {
		g_printerr ("rfcomm-bulk: %s\n", error->message);
		quit (1);
		return;
	}
	g_signal_connect (x->transport, "io", G_CALLBACK (io_cb), x);
	g_signal_connect (x->transport, "packet", G_CALLBACK (packet_cb), x);
	g_signal_connect (x->transport, "disconnected", G_CALLBACK (disconnected_cb), x);
	/* tests wait for this line to act on a live link */
	g_print ("connected\n");
	fflush (stdout);
	if (!(hold && reconnect))
		start_transfer (x);
}

static void
manager_cb (GObject *source, GAsyncResult *res, gpointer data)
{
	g_autoptr(GError) error = NULL;
	g_autoptr(GDBusObjectManager) manager = g_dbus_object_manager_client_new_finish (res, &error);
	BgsRfcommTransportOptions opts = { 0 };

	if (manager == NULL) {
		g_printerr ("rfcomm-bulk: %s\n", error->message);
		quit (1);
		return;
	}
	opts.uuid = uuid;
	opts.payload_size = payload_opt > 0 ? (guint) payload_opt : 0;
	for (guint i = 0; i < n_transfers; i++)
		bgs_rfcomm_transport_open_async (manager, transfers[i].device, &opts, cancellable,
						 open_cb, &transfers[i]);
}

static gboolean
cancel_cb (gpointer data)
{
	g_cancellable_cancel (cancellable);
	return G_SOURCE_REMOVE;
}

static gboolean
timeout_cb (gpointer data)
{
	for (guint i = 0; i < n_transfers; i++)
		g_printerr ("rfcomm-bulk: %s timed out (sent %" G_GUINT64_FORMAT ", received %"
			    G_GUINT64_FORMAT ")\n", transfers[i].device, transfers[i].sent,
			    transfers[i].received);
	quit (1);
	return G_SOURCE_REMOVE;
}

/* wakes the blocking iteration below at least every 50 ms */
static gboolean
tick_cb (gpointer data)
{
	return G_SOURCE_REMOVE;
}

int
main (int argc, char **argv)
{
	gint timeout = 120;
	const GOptionEntry entries[] = {
		{ "device", 0, 0, G_OPTION_ARG_STRING_ARRAY, &devices, "BlueZ device object path", "PATH" },
		{ "uuid", 0, 0, G_OPTION_ARG_STRING, &uuid, "RFCOMM profile UUID", "UUID" },
		{ "send", 0, 0, G_OPTION_ARG_INT64, &send_bytes, "bytes to send", "N" },
		{ "receive", 0, 0, G_OPTION_ARG_INT64, &receive_bytes, "bytes to wait for", "N" },
		{ "payload", 0, 0, G_OPTION_ARG_INT, &payload_opt, "packet size", "N" },
		{ "hold", 0, 0, G_OPTION_ARG_NONE, &hold, "stay connected until the link drops", NULL },
		{ "timeout", 0, 0, G_OPTION_ARG_INT, &timeout, "give up after SECS", "SECS" },
		{ "reconnect", 0, 0, G_OPTION_ARG_NONE, &reconnect, "with --hold: reconnect after the drop, then transfer", NULL },
		{ "cancel-ms", 0, 0, G_OPTION_ARG_INT, &cancel_ms, "cancel the open after MS", "MS" },
		{ NULL }
	};
	g_autoptr(GOptionContext) ctx = g_option_context_new ("- bulk transfer over RFCOMM transports");
	g_autoptr(GError) error = NULL;
	g_autoptr(GDBusConnection) bus = NULL;

	g_option_context_add_main_entries (ctx, entries, NULL);
	if (!g_option_context_parse (ctx, &argc, &argv, &error) || devices == NULL || uuid == NULL) {
		g_printerr ("rfcomm-bulk: %s\n", error != NULL ? error->message : "need --device and --uuid");
		return 2;
	}
	bus = g_bus_get_sync (G_BUS_TYPE_SYSTEM, NULL, &error);
	if (bus == NULL) {
		g_printerr ("rfcomm-bulk: %s\n", error->message);
		return 1;
	}
	n_transfers = g_strv_length (devices);
	transfers = g_new0 (Transfer, n_transfers);
	for (guint i = 0; i < n_transfers; i++) {
		transfers[i].device = devices[i];
		transfers[i].sent_sum = g_checksum_new (G_CHECKSUM_SHA256);
		transfers[i].recv_sum = g_checksum_new (G_CHECKSUM_SHA256);
	}
	loop = g_main_loop_new (NULL, FALSE);
	g_dbus_object_manager_client_new (bus, G_DBUS_OBJECT_MANAGER_CLIENT_FLAGS_NONE, "org.bluez",
					  "/", NULL, NULL, NULL, NULL, manager_cb, NULL);
	g_timeout_add_seconds (timeout, timeout_cb, NULL);
	cancellable = g_cancellable_new ();
	if (cancel_ms > 0)
		g_timeout_add (cancel_ms, cancel_cb, NULL);
	g_main_loop_run (loop);
	for (guint i = 0; i < n_transfers; i++)
		g_clear_object (&transfers[i].transport);
	/* let calls in flight return their references, so the last one
	 * unregisters the profile (bounded) */
	{
		gint64 deadline = g_get_monotonic_time () + 3 * G_USEC_PER_SEC;

		while (g_main_context_iteration (NULL, FALSE))
			;
		while (bgs_rfcomm_transport_count_registrations () > 0 &&
		       g_get_monotonic_time () < deadline) {
			GSource *tick = g_timeout_source_new (50);

			g_source_set_callback (tick, tick_cb, NULL, NULL);
			g_source_attach (tick, NULL);
			g_main_context_iteration (NULL, TRUE);
			g_source_destroy (tick);
			g_source_unref (tick);
		}
	}
	/* the last transport unregisters the profile: let that reach bluetoothd */
	g_dbus_connection_flush_sync (bus, NULL, NULL);
	return status;
}
