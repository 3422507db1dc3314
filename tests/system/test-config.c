/* test-config.c: main.conf defaults, every key, every bad value refused with
 * its key named, unknown keys warned about, decimals, $STATE_DIRECTORY.
 * Run one test: test-config <name-glob>. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <glib/gstdio.h>

#include "config.h"
#include "bgs-config.h"
#include "bgs-error.h"

#define SEC BGS_USEC_PER_SEC

/* warnings from the code under test, captured by our log writer */
static GPtrArray *warnings;

static GLogWriterOutput
log_writer (GLogLevelFlags level, const GLogField *fields, gsize n_fields, gpointer user_data)
{
	const char *message = NULL;

	for (gsize i = 0; i < n_fields; i++) {
		if (g_strcmp0 (fields[i].key, "MESSAGE") == 0)
			message = fields[i].value;
	}
	if ((level & G_LOG_LEVEL_WARNING) && message != NULL)
		g_ptr_array_add (warnings, g_strdup (message));
	if (level & (G_LOG_LEVEL_ERROR | G_LOG_LEVEL_CRITICAL))
		return g_log_writer_standard_streams (level, fields, n_fields, user_data);
	return G_LOG_WRITER_HANDLED;
}

static gboolean
warned (const char *needle1, const char *needle2)
{
	for (guint i = 0; i < warnings->len; i++) {
		const char *w = g_ptr_array_index (warnings, i);

		if (strstr (w, needle1) != NULL && (needle2 == NULL || strstr (w, needle2) != NULL))
			return TRUE;
	}
	return FALSE;
}

static int
setup (void **state)
{
	g_ptr_array_set_size (warnings, 0);
	g_unsetenv ("STATE_DIRECTORY");
	g_unsetenv ("CONFIGURATION_DIRECTORY");
	return 0;
}

static BgsConfig *
load_ok (const char *data)
{
	g_autoptr(GError) error = NULL;
	BgsConfig *config = bgs_config_load_from_data (data, -1, "test.conf", &error);

	if (config == NULL)
		fail_msg ("unexpected error: %s", error->message);
	return config;
}

static void
assert_defaults (const BgsConfig *c)
{
	assert_string_equal (c->state_directory, BGS_STATEDIR);
	assert_int_equal (g_strv_length (c->app_directories), 2);
	assert_string_equal (c->app_directories[0], BGS_DATADIR "/apps");
	assert_string_equal (c->app_directories[1], BGS_SYSCONFDIR "/apps");
	assert_int_equal (g_strv_length (c->device_directories), 2);
	assert_string_equal (c->device_directories[0], BGS_DATADIR "/devices");
	assert_string_equal (c->device_directories[1], BGS_SYSCONFDIR "/devices");
	assert_int_equal (g_strv_length (c->adapters), 0);
	assert_false (c->enable_test_profile);
	assert_int_equal (c->device_use_max_runtime_usec, 600 * SEC);
	assert_int_equal (c->device_servicing_max_runtime_usec, 1800 * SEC);
	assert_int_equal (c->custom_max_runtime_usec, 600 * SEC);
	assert_int_equal (c->idle_timeout_usec, 5 * SEC);
	assert_int_equal (c->max_servicing_estimate_usec, 1800 * SEC);
	assert_int_equal (c->min_battery_percent, 33);
	assert_int_equal (c->foreground_check, BGS_FOREGROUND_CHECK_LOGIND);
	assert_int_equal (c->n_custom_trigger_raisers, 1);
	assert_true (bgs_config_may_raise_custom_trigger (c, 0));
	assert_false (bgs_config_may_raise_custom_trigger (c, 1000));
	assert_int_equal (c->consent_timeout_usec, 60 * SEC);
	assert_int_equal (c->max_queued_per_app, 256);
	assert_int_equal (c->history_max_age_days, 90);
	assert_int_equal (c->max_tasks_per_app, 32);
	assert_int_equal (c->max_string_length, 4096);
	assert_int_equal (c->max_agents_per_user, 4);
	assert_int_equal (c->presence_lost_timeout_usec, 10 * SEC);
	assert_int_equal (c->link_connect_timeout_usec, 30 * SEC);
	assert_int_equal (c->adapter_power_off_grace_usec, 3 * SEC / 2);
	assert_int_equal (c->presence_found_timeout_usec, 0);
	assert_int_equal (c->presence_found_rssi, -90);
	assert_int_equal (c->presence_lost_rssi, -100);
}

static void
test_defaults (void **state)
{
	g_autoptr(BgsConfig) c = bgs_config_new_default ();
	g_autoptr(BgsConfig) empty = load_ok ("");

	assert_defaults (c);
	assert_null (c->path);
	assert_defaults (empty);
	assert_int_equal (warnings->len, 0);
}

/* the shipped data/main.conf has every key commented out: all defaults, no
 * warning, so it cannot drift from the code silently */
static void
test_shipped_file (void **state)
{
	g_autoptr(GError) error = NULL;
	g_autoptr(BgsConfig) c = bgs_config_load (SHIPPED_MAIN_CONF, &error);
	g_autofree char *contents = NULL;
	g_autoptr(GString) uncommented = g_string_new (NULL);
	g_auto(GStrv) lines = NULL;

	assert_null (error);
	assert_non_null (c);
	assert_defaults (c);
	assert_string_equal (c->path, SHIPPED_MAIN_CONF);
	assert_int_equal (warnings->len, 0);

	/* and with the "#Key=" lines uncommented, still all defaults */
	assert_true (g_file_get_contents (SHIPPED_MAIN_CONF, &contents, NULL, NULL));
	lines = g_strsplit (contents, "\n", -1);
	for (guint i = 0; lines[i] != NULL; i++) {
		const char *l = lines[i];

		if (l[0] == '#' && g_ascii_isupper (l[1]) && strchr (l, '=') != NULL)
			l++;
		g_string_append_printf (uncommented, "%s\n", l);
	}
	{
		g_autoptr(BgsConfig) c2 = load_ok (uncommented->str);
		/* StateDirectory and the directory lists are commented with
		 * build-time paths; the rest must equal the defaults */
		assert_defaults (c2);
	}
	assert_int_equal (warnings->len, 0);
}

static void
test_every_key (void **state)
{
	g_autoptr(BgsConfig) c = load_ok (
		"[General]\n"
		"StateDirectory=/var/tmp/bgs-state\n"
		"AppDirectories=/a/apps;/b/apps;/c/apps\n"
		"DeviceDirectories=/a/devices\n"
		"Adapters=hci0;hci12\n"
		"EnableTestProfile=true\n"
		"[Policy]\n"
		"DeviceUseMaxRuntime=60\n"
		"DeviceServicingMaxRuntime=120\n"
		"CustomMaxRuntime=30\n"
		"IdleTimeout=0.25\n"
		"MaxServicingEstimate=90\n"
		"MinBatteryPercent=0\n"
		"ForegroundCheck=none\n"
		"CustomTriggerRaisers=root;1234;nobody\n"
		"[Consent]\n"
		"Timeout=2.5\n"
		"[Events]\n"
		"MaxQueuedPerApp=100000\n"
		"[History]\n"
		"MaxAgeDays=0\n"
		"[Limits]\n"
		"MaxTasksPerApp=1\n"
		"MaxStringLength=64\n"
		"MaxAgentsPerUser=2\n"
		"[Presence]\n"
		"LostTimeout=3\n"
		"FoundTimeout=0.5\n"
		"FoundRSSI=-70\n"
		"LostRSSI=-80\n");

	assert_string_equal (c->state_directory, "/var/tmp/bgs-state");
	assert_int_equal (g_strv_length (c->app_directories), 3);
	assert_string_equal (c->app_directories[2], "/c/apps");
	assert_int_equal (g_strv_length (c->device_directories), 1);
	assert_string_equal (c->device_directories[0], "/a/devices");
	assert_int_equal (g_strv_length (c->adapters), 2);
	assert_string_equal (c->adapters[1], "hci12");
	assert_true (c->enable_test_profile);
	assert_int_equal (c->device_use_max_runtime_usec, 60 * SEC);
	assert_int_equal (c->device_servicing_max_runtime_usec, 120 * SEC);
	assert_int_equal (c->custom_max_runtime_usec, 30 * SEC);
	assert_int_equal (c->idle_timeout_usec, 250000);
	assert_int_equal (c->max_servicing_estimate_usec, 90 * SEC);
	assert_int_equal (c->min_battery_percent, 0);
	assert_int_equal (c->foreground_check, BGS_FOREGROUND_CHECK_NONE);
	assert_int_equal (c->n_custom_trigger_raisers, 3);
	assert_true (bgs_config_may_raise_custom_trigger (c, 0));
	assert_true (bgs_config_may_raise_custom_trigger (c, 1234));
	assert_true (bgs_config_may_raise_custom_trigger (c, 65534));
	assert_false (bgs_config_may_raise_custom_trigger (c, 1000));
	assert_int_equal (c->consent_timeout_usec, 2500000);
	assert_int_equal (c->max_queued_per_app, 100000);
	assert_int_equal (c->history_max_age_days, 0);
	assert_int_equal (c->max_tasks_per_app, 1);
	assert_int_equal (c->max_string_length, 64);
	assert_int_equal (c->max_agents_per_user, 2);
	assert_int_equal (c->presence_lost_timeout_usec, 3 * SEC);
	assert_int_equal (c->presence_found_timeout_usec, 500000);
	assert_int_equal (c->presence_found_rssi, -70);
	assert_int_equal (c->presence_lost_rssi, -80);
	assert_int_equal (warnings->len, 0);
}

static void
test_decimals (void **state)
{
	struct {
		const char *value;
		gint64 usec;
	} ok[] = {
		{ "0.05", 50000 }, { "0.5", 500000 }, { "1", SEC }, { "1.0", SEC },
		{ " 2.000001 ", 2 * SEC + 1 }, { "3600", 3600 * SEC }, { "007", 7 * SEC },
	};
	const char *bad[] = { "0.049999", "0.0000001", ".5", "5.", "1e2", "-1", "+1",
			      "0x10", "inf", "nan", "1,5", "1 s", "", "3600.000001",
			      "99999999999999999999" };

	for (gsize i = 0; i < G_N_ELEMENTS (ok); i++) {
		g_autofree char *data = g_strdup_printf ("[Policy]\nIdleTimeout=%s\n", ok[i].value);
		g_autoptr(BgsConfig) c = load_ok (data);

		assert_int_equal (c->idle_timeout_usec, ok[i].usec);
	}
	for (gsize i = 0; i < G_N_ELEMENTS (bad); i++) {
		g_autofree char *data = g_strdup_printf ("[Policy]\nIdleTimeout=%s\n", bad[i]);
		g_autoptr(GError) error = NULL;
		g_autoptr(BgsConfig) c = bgs_config_load_from_data (data, -1, "t.conf", &error);

		if (c != NULL)
			fail_msg ("IdleTimeout=%s accepted", bad[i]);
		assert_true (g_error_matches (error, BGS_ERROR, BGS_ERROR_INVALID_ARGS));
		assert_non_null (strstr (error->message, "between 0.05 and 3600"));
	}
}

typedef struct {
	const char *group;
	const char *key;
	const char *value;
	const char *range; /* must appear in the message */
} BadValue;

static const BadValue bad_values[] = {
	{ "General", "StateDirectory", "relative/dir", "absolute path" },
	{ "General", "AppDirectories", "/ok;relative", "absolute paths" },
	{ "General", "DeviceDirectories", "devices", "absolute paths" },
	{ "General", "Adapters", "hci0;wlan0", "adapter names like hci0" },
	{ "General", "Adapters", "hci", "adapter names like hci0" },
	{ "General", "EnableTestProfile", "yes", "true or false" },
	{ "Policy", "DeviceUseMaxRuntime", "0", "between 1 and 86400" },
	{ "Policy", "DeviceUseMaxRuntime", "86401", "between 1 and 86400" },
	{ "Policy", "DeviceServicingMaxRuntime", "-5", "between 1 and 86400" },
	{ "Policy", "DeviceServicingMaxRuntime", "abc", "between 1 and 86400" },
	{ "Policy", "CustomMaxRuntime", "0.5", "between 1 and 86400" },
	{ "Policy", "IdleTimeout", "0.01", "between 0.05 and 3600" },
	{ "Policy", "IdleTimeout", "3601", "between 0.05 and 3600" },
	{ "Policy", "MaxServicingEstimate", "100000", "between 1 and 86400" },
	{ "Policy", "MinBatteryPercent", "101", "between 0 and 100" },
	{ "Policy", "MinBatteryPercent", "-1", "between 0 and 100" },
	{ "Policy", "MinBatteryPercent", "33.5", "between 0 and 100" },
	{ "Policy", "ForegroundCheck", "always", "logind or none" },
	{ "Policy", "ForegroundCheck", "", "logind or none" },
	{ "Policy", "CustomTriggerRaisers", "root;no-such-user-bgsync", "no such user" },
	{ "Consent", "Timeout", "0", "between 1 and 3600" },
	{ "Consent", "Timeout", "3601", "between 1 and 3600" },
	{ "Events", "MaxQueuedPerApp", "0", "between 1 and 100000" },
	{ "Events", "MaxQueuedPerApp", "100001", "between 1 and 100000" },
	{ "History", "MaxAgeDays", "-1", "between 0 and 36500" },
	{ "History", "MaxAgeDays", "36501", "between 0 and 36500" },
	{ "Limits", "MaxTasksPerApp", "0", "between 1 and 1024" },
	{ "Limits", "MaxTasksPerApp", "1025", "between 1 and 1024" },
	{ "Limits", "MaxStringLength", "63", "between 64 and 65536" },
	{ "Limits", "MaxStringLength", "65537", "between 64 and 65536" },
	{ "Limits", "MaxAgentsPerUser", "0", "between 1 and 64" },
	{ "Limits", "MaxAgentsPerUser", "4x", "between 1 and 64" },
	{ "Presence", "LostTimeout", "0", "between 0.1 and 3600" },
	{ "Links", "ConnectTimeout", "0.5", "between 1 and 300" },
	{ "Links", "PowerOffGrace", "31", "between 0 and 30" },
	{ "Presence", "FoundTimeout", "3601", "between 0 and 3600" },
	{ "Presence", "FoundRSSI", "21", "between -127 and 20" },
	{ "Presence", "FoundRSSI", "-128", "between -127 and 20" },
	{ "Presence", "LostRSSI", "-200", "between -127 and 20" },
	{ "Presence", "LostRSSI", "-50", "must not be above FoundRSSI" },
};

static void
test_bad_values (void **state)
{
	for (gsize i = 0; i < G_N_ELEMENTS (bad_values); i++) {
		const BadValue *b = &bad_values[i];
		g_autofree char *data = g_strdup_printf ("[%s]\n%s=%s\n", b->group, b->key, b->value);
		g_autofree char *where = g_strdup_printf ("[%s] %s=", b->group, b->key);
		g_autoptr(GError) error = NULL;
		g_autoptr(BgsConfig) c = bgs_config_load_from_data (data, -1, "/x/main.conf", &error);

		if (c != NULL)
			fail_msg ("[%s] %s=%s accepted", b->group, b->key, b->value);
		assert_true (g_error_matches (error, BGS_ERROR, BGS_ERROR_INVALID_ARGS));
		if (strstr (error->message, "/x/main.conf: ") != error->message ||
		    strstr (error->message, where) == NULL ||
		    strstr (error->message, b->range) == NULL)
			fail_msg ("message for %s=%s lacks file, key or range: %s", b->key,
				  b->value, error->message);
	}
}

static void
test_unknown_warns (void **state)
{
	g_autoptr(BgsConfig) c = load_ok ("[General]\n"
					   "EnableTestProfile=true\n"
					   "Bogus=1\n"
					   "[Polcy]\n"
					   "IdleTimeout=1\n"
					   "[Policy]\n"
					   "IdleTimeOut=2\n");

	/* still loads, the good key applies, the misspelt ones do not */
	assert_true (c->enable_test_profile);
	assert_int_equal (c->idle_timeout_usec, 5 * SEC);
	assert_true (warned ("[General] Bogus", "test.conf"));
	assert_true (warned ("[Polcy]", "unknown group"));
	assert_true (warned ("[Policy] IdleTimeOut", "unknown key"));
	assert_int_equal (warnings->len, 3);
}

static void
test_syntax_error (void **state)
{
	g_autoptr(GError) error = NULL;
	g_autoptr(BgsConfig) c = bgs_config_load_from_data ("IdleTimeout=1\n", -1, "s.conf", &error);

	assert_null (c);
	assert_true (g_error_matches (error, BGS_ERROR, BGS_ERROR_INVALID_ARGS));
	assert_non_null (strstr (error->message, "s.conf"));
}

static void
test_state_directory_env (void **state)
{
	g_setenv ("STATE_DIRECTORY", "/run/state-one:/run/state-two", TRUE);
	{
		g_autoptr(BgsConfig) c = load_ok ("");
		assert_string_equal (c->state_directory, "/run/state-one");
	}
	{
		/* an explicit key wins over the environment */
		g_autoptr(BgsConfig) c = load_ok ("[General]\nStateDirectory=/srv/bgs\n");
		assert_string_equal (c->state_directory, "/srv/bgs");
	}
	g_setenv ("STATE_DIRECTORY", "/run/only", TRUE);
	{
		g_autoptr(BgsConfig) c = bgs_config_new_default ();
		assert_string_equal (c->state_directory, "/run/only");
	}
	g_unsetenv ("STATE_DIRECTORY");
	{
		g_autoptr(BgsConfig) c = bgs_config_new_default ();
		assert_string_equal (c->state_directory, BGS_STATEDIR);
	}
}

static void
test_files (void **state)
{
	g_autoptr(GError) error = NULL;
	g_autofree char *dir = g_dir_make_tmp ("bgs-config-XXXXXX", NULL);
	g_autofree char *path = g_build_filename (dir, "main.conf", NULL);
	g_autofree char *missing = g_build_filename (dir, "nope.conf", NULL);
	BgsConfig *c;

	/* an explicit path that does not exist is an error */
	c = bgs_config_load (missing, &error);
	assert_null (c);
	assert_true (g_error_matches (error, BGS_ERROR, BGS_ERROR_INVALID_ARGS));
	assert_non_null (strstr (error->message, "nope.conf"));
	g_clear_error (&error);

	/* the default path comes from $CONFIGURATION_DIRECTORY; missing = defaults */
	g_setenv ("CONFIGURATION_DIRECTORY", dir, TRUE);
	{
		g_autofree char *def = bgs_config_default_path ();
		assert_string_equal (def, path);
	}
	c = bgs_config_load (NULL, &error);
	assert_null (error);
	assert_non_null (c);
	assert_null (c->path);
	assert_defaults (c);
	bgs_config_free (c);

	/* present: read, and the path is remembered */
	assert_true (g_file_set_contents (path, "[Limits]\nMaxTasksPerApp=7\n", -1, NULL));
	c = bgs_config_load (NULL, &error);
	assert_non_null (c);
	assert_int_equal (c->max_tasks_per_app, 7);
	assert_string_equal (c->path, path);
	bgs_config_free (c);

	/* a bad default file is an error too, naming the file */
	assert_true (g_file_set_contents (path, "[Limits]\nMaxTasksPerApp=0\n", -1, NULL));
	c = bgs_config_load (NULL, &error);
	assert_null (c);
	assert_non_null (strstr (error->message, path));
	g_clear_error (&error);

	/* binary junk must fail cleanly, not crash */
	assert_true (g_file_set_contents (path, "[General]\nStateDirectory=/\xff\xfe\n\0\0x", 30, NULL));
	c = bgs_config_load (path, &error);
	assert_null (c);
	g_clear_error (&error);

	g_unsetenv ("CONFIGURATION_DIRECTORY");
	g_unlink (path);
	g_rmdir (dir);
}

int
main (int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup (test_defaults, setup),
		cmocka_unit_test_setup (test_shipped_file, setup),
		cmocka_unit_test_setup (test_every_key, setup),
		cmocka_unit_test_setup (test_decimals, setup),
		cmocka_unit_test_setup (test_bad_values, setup),
		cmocka_unit_test_setup (test_unknown_warns, setup),
		cmocka_unit_test_setup (test_syntax_error, setup),
		cmocka_unit_test_setup (test_state_directory_env, setup),
		cmocka_unit_test_setup (test_files, setup),
	};

	warnings = g_ptr_array_new_with_free_func (g_free);
	g_log_set_writer_func (log_writer, NULL, NULL);
	if (argc > 1)
		cmocka_set_test_filter (argv[1]);
	return cmocka_run_group_tests_name ("system-config", tests, NULL, NULL);
}
