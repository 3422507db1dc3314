/* bgs-sim-main.c: bgsync-sim, a BlueZ simulator on D-Bus */
#include "config.h"

#include <locale.h>
#include <signal.h>
#include <glib-unix.h>

#include "bgs-sim.h"

/* kept reachable so leak checkers report only what we really lost */
static Sim *the_sim;

static gboolean
quit_cb (gpointer data)
{
	g_main_loop_quit (data);
	return G_SOURCE_REMOVE;
}

static void
control_name_lost (GDBusConnection *conn, const gchar *name, gpointer data)
{
	if (conn == NULL) {
		g_printerr ("bgsync-sim: lost the bus connection\n");
	} else {
		g_printerr ("bgsync-sim: cannot own %s\n", name);
	}
	g_main_loop_quit (data);
}

static void
on_closed (GDBusConnection *conn, gboolean remote, GError *error, gpointer data)
{
	g_main_loop_quit (data);
}

int
main (int argc, char **argv)
{
	g_autofree gchar *bus_address = NULL;
	gboolean verbose = FALSE;
	gint adapters = 1;
	g_auto(GStrv) addresses = NULL;
	g_autoptr(GOptionContext) ctx = NULL;
	g_autoptr(GError) error = NULL;
	g_autoptr(GDBusConnection) conn = NULL;
	g_autoptr(GMainLoop) loop = NULL;
	Sim *sim;
	GOptionEntry entries[] = {
		{ "bus", 'b', 0, G_OPTION_ARG_STRING, &bus_address,
		  "D-Bus address to serve on (default: the system bus, "
		  "$DBUS_SYSTEM_BUS_ADDRESS)", "ADDRESS" },
		{ "adapters", 'a', 0, G_OPTION_ARG_INT, &adapters,
		  "adapters at start (hci0..), default 1", "N" },
		{ "adapter-address", 0, 0, G_OPTION_ARG_STRING_ARRAY, &addresses,
		  "address of the next adapter at start (repeat)", "ADDR" },
		{ "verbose", 'v', 0, G_OPTION_ARG_NONE, &verbose, "log what happens", NULL },
		{ NULL }
	};

	setlocale (LC_ALL, "");
	signal (SIGPIPE, SIG_IGN);
	ctx = g_option_context_new ("- simulate BlueZ (org.bluez) on D-Bus");
	g_option_context_set_summary (ctx,
		"Owns org.bluez and org.bgsync.Sim; control it with bgsync-simctl.");
	g_option_context_add_main_entries (ctx, entries, NULL);
	if (!g_option_context_parse (ctx, &argc, &argv, &error)) {
		g_printerr ("bgsync-sim: %s\n", error->message);
		return 2;
	}
	if (adapters < 0 || adapters > 16) {
		g_printerr ("bgsync-sim: --adapters must be 0..16\n");
		return 2;
	}
	if (verbose)
		g_setenv ("G_MESSAGES_DEBUG", "all", FALSE);
	if (bus_address != NULL)
		conn = g_dbus_connection_new_for_address_sync (bus_address,
				G_DBUS_CONNECTION_FLAGS_AUTHENTICATION_CLIENT |
				G_DBUS_CONNECTION_FLAGS_MESSAGE_BUS_CONNECTION,
				NULL, NULL, &error);
	else
		conn = g_bus_get_sync (G_BUS_TYPE_SYSTEM, NULL, &error);
	if (conn == NULL) {
		g_printerr ("bgsync-sim: cannot connect to the bus: %s\n", error->message);
		return 1;
	}
	g_dbus_connection_set_exit_on_close (conn, FALSE);
	loop = g_main_loop_new (NULL, FALSE);
	g_signal_connect (conn, "closed", G_CALLBACK (on_closed), loop);
	sim = the_sim = sim_new (conn);
	for (gint i = 0; i < adapters; i++) {
		const gchar *addr = NULL;
		if (addresses != NULL && (guint) i < g_strv_length (addresses))
			addr = addresses[i];
		if (sim_adapter_add (sim, addr, NULL, &error) == NULL) {
			g_printerr ("bgsync-sim: %s\n", error->message);
			return 2;
		}
	}
	g_bus_own_name_on_connection (conn, SIM_CONTROL_NAME, G_BUS_NAME_OWNER_FLAGS_NONE,
				      NULL, control_name_lost, loop, NULL);
	g_unix_signal_add (SIGTERM, quit_cb, loop);
	g_unix_signal_add (SIGINT, quit_cb, loop);
	g_main_loop_run (loop);
	return 0;
}
