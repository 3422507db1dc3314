/* gatt-cancel.c: abandons a GATT transport reconnect mid-way, for the
 * transport tests (the servicing keeper does this when the device shows up
 * at another address).
 *
 *   gatt-cancel --device PATH --address ADDR --service UUID --write UUID
 *               [--notify UUID] --step connect|acquire|after
 *
 * connect: the device is out of range, the reconnect's Device1.Connect is
 *          in flight when the caller cancels
 * acquire: the device is connected, AcquireNotify is in flight
 * after:   the reconnect succeeds first, the cancel comes afterwards
 *
 * Checks: the reconnect ends once, with G_IO_ERROR_CANCELLED (not the
 * connect timeout); no fd of the abandoned try is left; bluetoothd's side
 * (the sim) sees the acquired sockets and the connect attempt given back;
 * the transport reconnects afterwards and, closed, is finalized (nothing
 * it started still holds it). Every wait is bounded. Prints one line of
 * key=value results; exit status 0 when every check passed. */
#include <dirent.h>
#include <stdlib.h>

#include "bgs-gatt-transport.h"

#define SIM_NAME "org.bgsync.Sim"
#define SIM_PATH "/org/bgsync/sim"
#define SIM_IFACE "org.bgsync.Sim1"
/* well under the transport's connect timeout: a reconnect that ignores
 * the cancel ends with that timeout instead */
#define CANCEL_BOUND_S 10
#define CONNECT_TIMEOUT_S 25

static char *device, *address, *service, *write_uuid, *notify_uuid, *step;
static GMainLoop *loop;
static GDBusConnection *bus;
static GDBusObjectManager *manager;
static BgsGattTransport *transport;
static GCancellable *cancellable;
static guint callbacks;
static int status = 1;
static int base_fds;
static gint64 cancelled_at;
static guint bound_id;
static GString *results;

static void fail (const char *format, ...) G_GNUC_PRINTF (1, 2);

static void
fail (const char *format, ...)
{
	va_list args;
	g_autofree char *msg = NULL;

	va_start (args, format);
	msg = g_strdup_vprintf (format, args);
	va_end (args);
	g_printerr ("gatt-cancel: %s\n", msg);
	status = 1;
	g_main_loop_quit (loop);
}

static int
count_fds (void)
{
	DIR *d = opendir ("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	if (d == NULL)
		return -1;
	while ((e = readdir (d)) != NULL)
		if (e->d_name[0] != '.')
			n++;
	closedir (d);
	/* the directory's own fd */
	return n - 1;
}

/* what is open, for a failure's log */
static void
dump_fds (void)
{
	DIR *d = opendir ("/proc/self/fd");
	struct dirent *e;

	while (d != NULL && (e = readdir (d)) != NULL) {
		g_autofree char *link = g_strdup_printf ("/proc/self/fd/%s", e->d_name);
		g_autofree char *target = g_file_read_link (link, NULL);

		if (e->d_name[0] != '.')
			g_printerr ("  fd %s -> %s\n", e->d_name, target != NULL ? target : "?");
	}
	if (d != NULL)
		closedir (d);
}

static gboolean
bound_cb (gpointer data)
{
	bound_id = 0;
	fail ("timed out waiting for %s", (const char *) data);
	return G_SOURCE_REMOVE;
}

static void
bound_start (guint seconds, const char *what)
{
	g_clear_handle_id (&bound_id, g_source_remove);
	bound_id = g_timeout_add_seconds (seconds, bound_cb, (gpointer) what);
}

static void
bound_stop (void)
{
	g_clear_handle_id (&bound_id, g_source_remove);
}

/* ---- the chain of steps ----------------------------------------------------- */

static void finalized_cb (gpointer data, GObject *where);

static void
finish_close (void)
{
	bgs_transport_close (BGS_TRANSPORT (transport));
	g_object_weak_ref (G_OBJECT (transport), finalized_cb, NULL);
	/* the last ref: everything the transport started must let go of it */
	g_clear_object (&transport);
	bound_start (5, "the transport to be finalized");
}

static void
check_fds_cb (GObject *source, GAsyncResult *res, gpointer data)
{
	g_autoptr(GVariant) r = g_dbus_connection_call_finish (bus, res, NULL);
	int now = count_fds ();

	bound_stop ();
	if (now != base_fds) {
		dump_fds ();
		fail ("%d fds open after closing, %d before opening", now, base_fds);
		return;
	}
	g_string_append_printf (results, " fds_after_close=ok");
	g_print ("%s\n", results->str);
	status = 0;
	g_main_loop_quit (loop);
}

static void
finalized_cb (gpointer data, GObject *where)
{
	g_string_append (results, " finalized=yes");
	/* a round trip first: any reply still on its way has been taken in */
	g_dbus_connection_call (bus, "org.bluez", "/", "org.freedesktop.DBus.Peer", "Ping",
				NULL, NULL, G_DBUS_CALL_FLAGS_NONE, 10000, NULL, check_fds_cb, NULL);
}

static void
final_reconnect_cb (GObject *source, GAsyncResult *res, gpointer data)
{
	g_autoptr(GError) error = NULL;

	if (!bgs_gatt_transport_reconnect_finish (BGS_GATT_TRANSPORT (source), res, &error)) {
		fail ("reconnecting after the abandoned try: %s", error->message);
		return;
	}
	g_string_append_printf (results, " reconnect_after=ok path=%s",
				bgs_gatt_transport_uses_fds (transport) ? "fd" : "writevalue");
	finish_close ();
}

static void
final_reconnect (void)
{
	bound_start (CANCEL_BOUND_S * 2, "the reconnect after the abandoned try");
	bgs_gatt_transport_reconnect_async (transport, device, NULL, final_reconnect_cb, NULL);
}

/* the sim's characteristics under the device: is anything still acquired? */
static gboolean
anything_acquired (void)
{
	GList *objects = g_dbus_object_manager_get_objects (manager);
	g_autofree char *prefix = g_strdup_printf ("%s/", device);
	gboolean acquired = FALSE;

	for (GList *l = objects; l != NULL; l = l->next) {
		g_autoptr(GDBusInterface) ci = NULL;
		const char *names[] = { "NotifyAcquired", "WriteAcquired" };

		if (!g_str_has_prefix (g_dbus_object_get_object_path (l->data), prefix))
			continue;
		ci = g_dbus_object_get_interface (l->data, "org.bluez.GattCharacteristic1");
		for (guint i = 0; ci != NULL && i < G_N_ELEMENTS (names); i++) {
			g_autoptr(GVariant) v = g_dbus_proxy_get_cached_property (G_DBUS_PROXY (ci), names[i]);

			if (v != NULL && g_variant_is_of_type (v, G_VARIANT_TYPE_BOOLEAN) &&
			    g_variant_get_boolean (v))
				acquired = TRUE;
		}
	}
	g_list_free_full (objects, g_object_unref);
	return acquired;
}

static gulong released_id;

static void
released_check (void)
{
	if (anything_acquired ())
		return;
	if (released_id != 0)
		g_signal_handler_disconnect (manager, released_id);
	released_id = 0;
	bound_stop ();
	g_string_append (results, " sim_released=yes");
	final_reconnect ();
}

static void
props_changed_cb (GDBusObjectManagerClient *m, GDBusObjectProxy *obj, GDBusProxy *iface,
		  GVariant *changed, const char *const *invalidated, gpointer data)
{
	released_check ();
}

/* bluetoothd's side lets go of the sockets once it sees them closed */
static void
wait_released (void)
{
	bound_start (5, "the sim to see the acquired sockets given back");
	released_id = g_signal_connect (manager, "interface-proxy-properties-changed",
					G_CALLBACK (props_changed_cb), NULL);
	released_check ();
}

static void
in_range_cb (GObject *source, GAsyncResult *res, gpointer data)
{
	g_autoptr(GError) error = NULL;
	g_autoptr(GVariant) r = g_dbus_connection_call_finish (bus, res, &error);

	if (r == NULL) {
		fail ("SetInRange: %s", error->message);
		return;
	}
	wait_released ();
}

static void
set_in_range (gboolean in_range, GAsyncReadyCallback cb)
{
	g_dbus_connection_call (bus, SIM_NAME, SIM_PATH, SIM_IFACE, "SetInRange",
				g_variant_new ("(sb)", address, in_range), NULL,
				G_DBUS_CALL_FLAGS_NONE, 10000, NULL, cb, NULL);
}

/* a round trip to org.bluez after the try ended: replies to calls the
 * try had in flight (fds in them) have been taken in and dropped */
static void
round_trip_cb (GObject *source, GAsyncResult *res, gpointer data)
{
	g_autoptr(GVariant) r = g_dbus_connection_call_finish (bus, res, NULL);
	int now = count_fds ();

	if (callbacks != 1) {
		fail ("the reconnect completed %u times", callbacks);
		return;
	}
	/* the link is released: no fd of it, or of the abandoned try, is left */
	if (g_strcmp0 (step, "after") != 0 && now != base_fds) {
		dump_fds ();
		fail ("%d fds open after the abandoned try, %d before opening", now, base_fds);
		return;
	}
	g_string_append_printf (results, " fds_after_cancel=%s",
				g_strcmp0 (step, "after") != 0 ? "ok" : "-");
	if (g_strcmp0 (step, "after") == 0) {
		GError *error = NULL;
		const guint8 byte = 0x42;

		/* still up and usable: the late cancel changed nothing */
		if (!bgs_transport_is_connected (BGS_TRANSPORT (transport)) ||
		    !bgs_transport_send_data (BGS_TRANSPORT (transport), &byte, 1, &error)) {
			fail ("the transport is unusable after a late cancel: %s",
			      error != NULL ? error->message : "not connected");
			g_clear_error (&error);
			return;
		}
		finish_close ();
		return;
	}
	if (g_strcmp0 (step, "connect") == 0)
		set_in_range (TRUE, in_range_cb);
	else
		wait_released ();
}

static void
round_trip (void)
{
	g_dbus_connection_call (bus, "org.bluez", "/", "org.freedesktop.DBus.Peer", "Ping",
				NULL, NULL, G_DBUS_CALL_FLAGS_NONE, 10000, NULL, round_trip_cb, NULL);
}

static gboolean
late_round_trip_idle (gpointer data)
{
	round_trip ();
	return G_SOURCE_REMOVE;
}

static void
reconnect_cb (GObject *source, GAsyncResult *res, gpointer data)
{
	g_autoptr(GError) error = NULL;
	gboolean ok = bgs_gatt_transport_reconnect_finish (BGS_GATT_TRANSPORT (source), res, &error);

	callbacks++;
	if (callbacks > 1) {
		fail ("the reconnect completed a second time");
		return;
	}
	bound_stop ();
	if (g_strcmp0 (step, "after") == 0) {
		if (!ok) {
			fail ("reconnect: %s", error->message);
			return;
		}
		/* cancelled once done: must be a no-op */
		g_cancellable_cancel (cancellable);
		g_string_append (results, " result=ok late_cancel=yes");
		g_idle_add (late_round_trip_idle, NULL);
		return;
	}
	if (ok) {
		fail ("the abandoned reconnect succeeded");
		return;
	}
	if (!g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED)) {
		fail ("the abandoned reconnect ended with \"%s\", not as cancelled", error->message);
		return;
	}
	g_string_append_printf (results, " result=cancelled after_ms=%" G_GINT64_FORMAT,
				(g_get_monotonic_time () - cancelled_at) / 1000);
	round_trip ();
}

static gboolean
cancel_idle (gpointer data)
{
	cancelled_at = g_get_monotonic_time ();
	g_cancellable_cancel (cancellable);
	return G_SOURCE_REMOVE;
}

static void
start_reconnect (void)
{
	cancellable = g_cancellable_new ();
	bound_start (CANCEL_BOUND_S, "the reconnect to end");
	bgs_gatt_transport_reconnect_async (transport, device, cancellable, reconnect_cb, NULL);
	if (g_strcmp0 (step, "acquire") == 0) {
		/* the device is connected and resolved: the reconnect has its
		 * AcquireNotify (or StartNotify) on the wire already */
		cancel_idle (NULL);
	} else if (g_strcmp0 (step, "connect") == 0) {
		/* out of range: Device1.Connect waits for the page */
		g_idle_add (cancel_idle, NULL);
	}
}

static gulong down_id;

static gboolean
device_connected (void)
{
	g_autoptr(GDBusInterface) dev = g_dbus_object_manager_get_interface (manager, device,
									     "org.bluez.Device1");
	g_autoptr(GVariant) v = dev != NULL ? g_dbus_proxy_get_cached_property (G_DBUS_PROXY (dev),
										 "Connected") : NULL;

	return v != NULL && g_variant_is_of_type (v, G_VARIANT_TYPE_BOOLEAN) && g_variant_get_boolean (v);
}

static void
down_check (void)
{
	if (cancellable != NULL || device_connected ())
		return;
	if (down_id != 0)
		g_signal_handler_disconnect (manager, down_id);
	down_id = 0;
	bound_stop ();
	/* as the keeper does: the reconnect's Device1.Connect goes out */
	start_reconnect ();
}

static void
down_changed_cb (GDBusObjectManagerClient *m, GDBusObjectProxy *obj, GDBusProxy *iface,
		 GVariant *changed, const char *const *invalidated, gpointer data)
{
	down_check ();
}

static void
disconnected_cb (BgsTransport *t, GError *error, gpointer data)
{
	if (g_strcmp0 (step, "connect") != 0 || cancellable != NULL || down_id != 0)
		return;
	/* the sockets hang up before bluetoothd says Connected=false: wait
	 * for that, or the reconnect would find the stale link */
	down_id = g_signal_connect (manager, "interface-proxy-properties-changed",
				    G_CALLBACK (down_changed_cb), NULL);
	down_check ();
}

static void
out_of_range_cb (GObject *source, GAsyncResult *res, gpointer data)
{
	g_autoptr(GError) error = NULL;
	g_autoptr(GVariant) r = g_dbus_connection_call_finish (bus, res, &error);

	if (r == NULL)
		fail ("SetInRange: %s", error->message);
}

static void
open_cb (GObject *source, GAsyncResult *res, gpointer data)
{
	g_autoptr(GError) error = NULL;

	transport = bgs_gatt_transport_open_finish (res, &error);
	if (transport == NULL) {
		fail ("open: %s", error->message);
		return;
	}
	bound_stop ();
	g_signal_connect (transport, "disconnected", G_CALLBACK (disconnected_cb), NULL);
	g_string_append_printf (results, "open=%s", bgs_gatt_transport_uses_fds (transport) ? "fd" : "writevalue");
	if (g_strcmp0 (step, "connect") == 0) {
		/* the link drops after the sim's supervision timeout */
		bound_start (CANCEL_BOUND_S, "the link to drop out of range");
		set_in_range (FALSE, out_of_range_cb);
		return;
	}
	start_reconnect ();
}

static void
manager_cb (GObject *source, GAsyncResult *res, gpointer data)
{
	g_autoptr(GError) error = NULL;
	BgsGattTransportOptions opts = { 0 };

	manager = g_dbus_object_manager_client_new_finish (res, &error);
	if (manager == NULL) {
		fail ("%s", error->message);
		return;
	}
	base_fds = count_fds ();
	opts.service_uuid = service;
	opts.characteristic_uuid = write_uuid;
	opts.notify_characteristic_uuid = notify_uuid;
	opts.connect_timeout = CONNECT_TIMEOUT_S * G_USEC_PER_SEC;
	bound_start (CANCEL_BOUND_S * 2, "the transport to open");
	bgs_gatt_transport_open_async (manager, device, &opts, NULL, open_cb, NULL);
}

int
main (int argc, char **argv)
{
	const GOptionEntry entries[] = {
		{ "device", 0, 0, G_OPTION_ARG_STRING, &device, "BlueZ device object path", "PATH" },
		{ "address", 0, 0, G_OPTION_ARG_STRING, &address, "its address (sim control)", "ADDR" },
		{ "service", 0, 0, G_OPTION_ARG_STRING, &service, "service UUID", "UUID" },
		{ "write", 0, 0, G_OPTION_ARG_STRING, &write_uuid, "characteristic written", "UUID" },
		{ "notify", 0, 0, G_OPTION_ARG_STRING, &notify_uuid, "characteristic notifying", "UUID" },
		{ "step", 0, 0, G_OPTION_ARG_STRING, &step, "connect, acquire or after", "STEP" },
		{ NULL }
	};
	g_autoptr(GOptionContext) ctx = g_option_context_new ("- abandon a GATT reconnect mid-way");
	g_autoptr(GError) error = NULL;

	g_option_context_add_main_entries (ctx, entries, NULL);
	if (!g_option_context_parse (ctx, &argc, &argv, &error) || device == NULL ||
	    address == NULL || service == NULL || write_uuid == NULL || step == NULL ||
	    (g_strcmp0 (step, "connect") != 0 && g_strcmp0 (step, "acquire") != 0 &&
	     g_strcmp0 (step, "after") != 0)) {
		g_printerr ("gatt-cancel: %s\n", error != NULL ? error->message
			    : "need --device, --address, --service, --write, --step connect|acquire|after");
		return 2;
	}
	bus = g_bus_get_sync (G_BUS_TYPE_SYSTEM, NULL, &error);
	if (bus == NULL) {
		g_printerr ("gatt-cancel: %s\n", error->message);
		return 1;
	}
	results = g_string_new ("");
	loop = g_main_loop_new (NULL, FALSE);
	g_dbus_object_manager_client_new (bus, G_DBUS_OBJECT_MANAGER_CLIENT_FLAGS_NONE, "org.bluez",
					  "/", NULL, NULL, NULL, NULL, manager_cb, NULL);
	g_main_loop_run (loop);
	g_clear_object (&transport);
	g_clear_object (&cancellable);
	g_clear_object (&manager);
	g_string_free (results, TRUE);
	return status;
}
