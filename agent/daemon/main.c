/* main.c: bgsyncd, the bgsync agent */
#include <locale.h>
#include <stdlib.h>
#include <glib-unix.h>
#include <gio/gio.h>

#include "config.h"
#include "bgs-config.h"
#include "bgs-daemon.h"
#include "bgs-error.h"
#include "bgs-profile-smp.h"
#include "bgs-profile-test.h"

#define BUS_NAME "org.bgsync"

typedef struct {
	GMainLoop *loop;
	BgsDaemon *daemon;
	int exit_status;
	gboolean acquired;
} App;

static void
register_profiles (void)
{
	bgs_profile_test_register ();
	bgs_profile_smp_register ();
}

static gboolean
quit_cb (gpointer user_data)
{
	App *app = user_data;

	g_info ("signal received, shutting down");
	g_main_loop_quit (app->loop);
	return G_SOURCE_CONTINUE;
}

static void
name_acquired_cb (GDBusConnection *connection, const char *name, gpointer user_data)
{
	App *app = user_data;

	app->acquired = TRUE;
	g_info ("serving %s", name);
}

static void
name_lost_cb (GDBusConnection *connection, const char *name, gpointer user_data)
{
	App *app = user_data;

	if (connection == NULL)
		g_printerr ("bgsyncd: lost the connection to the bus\n");
	else if (!app->acquired)
		g_printerr ("bgsyncd: cannot own %s on the bus (another bgsyncd running, or not allowed by the D-Bus policy)\n", name);
	else
		g_printerr ("bgsyncd: lost the name %s\n", name);
	app->exit_status = EXIT_FAILURE;
	g_main_loop_quit (app->loop);
}

int
main (int argc, char **argv)
{
	gboolean session = FALSE, verbose = FALSE, version = FALSE;
	g_autofree char *config_path = NULL;
	g_autoptr(GOptionContext) context = NULL;
	g_autoptr(GError) error = NULL;
	g_autoptr(BgsConfig) config = NULL;
	g_autoptr(GDBusConnection) bus = NULL;
	g_autoptr(GDBusConnection) system_bus = NULL;
	App app = { 0 };
	guint owner_id;
	const GOptionEntry entries[] = {
		{ "session", 0, 0, G_OPTION_ARG_NONE, &session,
		  "Serve on the session bus (tests, demos)", NULL },
		{ "config", 'c', 0, G_OPTION_ARG_FILENAME, &config_path,
		  "Read configuration from FILE (default " BGS_SYSCONFDIR "/main.conf)", "FILE" },
		{ "verbose", 'v', 0, G_OPTION_ARG_NONE, &verbose, "Log what the agent does", NULL },
		{ "version", 0, 0, G_OPTION_ARG_NONE, &version, "Print the version and exit", NULL },
		{ NULL }
	};

	setlocale (LC_ALL, "");
	context = g_option_context_new ("- bgsync Bluetooth background sync agent");
	g_option_context_add_main_entries (context, entries, NULL);
	g_option_context_set_description (context,
		"Runs device background tasks (sync and firmware update) for companion apps\n"
		"under the initiation and runtime policies. See bgsyncd(8).");
	if (!g_option_context_parse (context, &argc, &argv, &error)) {
		g_printerr ("bgsyncd: %s\n", error->message);
		return 2;
	}
	if (version) {
		g_print ("bgsyncd %s\n", PACKAGE_VERSION);
		return EXIT_SUCCESS;
	}
	if (verbose) {
		const char *domains = g_getenv ("G_MESSAGES_DEBUG");
		if (domains == NULL)
			g_setenv ("G_MESSAGES_DEBUG", "bgsync bgsync-daemon bgsync-store bgsync-policy bgsync-apps bgsync-system bgsync-profile", TRUE);
	}
	/* register the error domain before any reply can carry it */
	(void) BGS_ERROR;

	config = bgs_config_load (config_path, &error);
	if (config == NULL) {
		g_printerr ("bgsyncd: %s\n", error->message);
		return EXIT_FAILURE;
	}
	bus = g_bus_get_sync (session ? G_BUS_TYPE_SESSION : G_BUS_TYPE_SYSTEM, NULL, &error);
	if (bus == NULL) {
		g_printerr ("bgsyncd: cannot connect to the %s bus: %s\n",
			    session ? "session" : "system", error->message);
		return EXIT_FAILURE;
	}
	/* logind, UPower and BlueZ live on the system bus */
	system_bus = g_bus_get_sync (G_BUS_TYPE_SYSTEM, NULL, &error);
	if (system_bus == NULL) {
		g_printerr ("bgsyncd: cannot connect to the system bus: %s\n", error->message);
		return EXIT_FAILURE;
	}
	register_profiles ();
	app.daemon = bgs_daemon_new (config, bus, system_bus, &error);
	if (app.daemon == NULL) {
		g_printerr ("bgsyncd: %s\n", error->message);
		return EXIT_FAILURE;
	}
	app.loop = g_main_loop_new (NULL, FALSE);
	g_unix_signal_add (SIGTERM, quit_cb, &app);
	g_unix_signal_add (SIGINT, quit_cb, &app);
	owner_id = g_bus_own_name_on_connection (bus, BUS_NAME, G_BUS_NAME_OWNER_FLAGS_NONE,
						 name_acquired_cb, name_lost_cb, &app, NULL);
	g_main_loop_run (app.loop);

	g_bus_unown_name (owner_id);
	bgs_daemon_shutdown (app.daemon);
	g_object_unref (app.daemon);
	g_main_loop_unref (app.loop);
	return app.exit_status;
}
