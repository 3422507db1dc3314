/* bgs-config.c: main.conf parsing, table driven so that every key has one
 * place that says its type, default, range and struct field */
#include "config.h"

#include "bgs-config.h"

#include <errno.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>

#include <gio/gio.h>

#include "bgs-clock.h"
#include "bgs-error.h"

typedef enum {
	KEY_BOOL,
	KEY_UINT,      /* guint field, range min..max */
	KEY_INT,       /* gint field, range min..max */
	KEY_DURATION,  /* gint64 usec field, range in usec */
	KEY_DIR,       /* char * absolute path */
	KEY_DIR_LIST,  /* char ** absolute paths */
	KEY_ADAPTERS,  /* char ** hciN names */
	KEY_FOREGROUND,
	KEY_USERS,
} KeyType;

typedef struct {
	const char *group;
	const char *key;
	KeyType type;
	gsize offset;
	gint64 min;
	gint64 max;
} KeyDef;

#define F(field) G_STRUCT_OFFSET (BgsConfig, field)
#define SEC(s) ((gint64) ((s) * 1000000.0 + 0.5))

static const KeyDef keys[] = {
	{ "General", "StateDirectory", KEY_DIR, F (state_directory), 0, 0 },
	{ "General", "AppDirectories", KEY_DIR_LIST, F (app_directories), 0, 0 },
	{ "General", "DeviceDirectories", KEY_DIR_LIST, F (device_directories), 0, 0 },
	{ "General", "Adapters", KEY_ADAPTERS, F (adapters), 0, 0 },
	{ "General", "EnableTestProfile", KEY_BOOL, F (enable_test_profile), 0, 0 },

	{ "Policy", "DeviceUseMaxRuntime", KEY_DURATION, F (device_use_max_runtime_usec), SEC (1), SEC (86400) },
	{ "Policy", "DeviceServicingMaxRuntime", KEY_DURATION, F (device_servicing_max_runtime_usec), SEC (1), SEC (86400) },
	{ "Policy", "CustomMaxRuntime", KEY_DURATION, F (custom_max_runtime_usec), SEC (1), SEC (86400) },
	{ "Policy", "IdleTimeout", KEY_DURATION, F (idle_timeout_usec), SEC (0.05), SEC (3600) },
	{ "Policy", "MaxServicingEstimate", KEY_DURATION, F (max_servicing_estimate_usec), SEC (1), SEC (86400) },
	{ "Policy", "MinBatteryPercent", KEY_UINT, F (min_battery_percent), 0, 100 },
	{ "Policy", "ForegroundCheck", KEY_FOREGROUND, F (foreground_check), 0, 0 },
	{ "Policy", "CustomTriggerRaisers", KEY_USERS, 0, 0, 0 },

	{ "Consent", "Timeout", KEY_DURATION, F (consent_timeout_usec), SEC (1), SEC (3600) },

	{ "Events", "MaxQueuedPerApp", KEY_UINT, F (max_queued_per_app), 1, 100000 },

	{ "History", "MaxAgeDays", KEY_UINT, F (history_max_age_days), 0, 36500 },

	{ "Limits", "MaxTasksPerApp", KEY_UINT, F (max_tasks_per_app), 1, 1024 },
	{ "Limits", "MaxStringLength", KEY_UINT, F (max_string_length), 64, 65536 },
	{ "Limits", "MaxAgentsPerUser", KEY_UINT, F (max_agents_per_user), 1, 64 },

	{ "Presence", "LostTimeout", KEY_DURATION, F (presence_lost_timeout_usec), SEC (0.1), SEC (3600) },
	{ "Presence", "FoundTimeout", KEY_DURATION, F (presence_found_timeout_usec), 0, SEC (3600) },
	{ "Presence", "FoundRSSI", KEY_INT, F (presence_found_rssi), -127, 20 },
	{ "Presence", "LostRSSI", KEY_INT, F (presence_lost_rssi), -127, 20 },

	{ "Links", "ConnectTimeout", KEY_DURATION, F (link_connect_timeout_usec), SEC (1), SEC (300) },
	{ "Links", "PowerOffGrace", KEY_DURATION, F (adapter_power_off_grace_usec), 0, SEC (30) },
};

#define FIELD(config, def, type) ((type *) (((guint8 *) (config)) + (def)->offset))

char *
bgs_config_default_path (void)
{
	const char *dir = g_getenv ("CONFIGURATION_DIRECTORY");

	/* systemd may pass several, ':'-separated; ours is the first */
	if (dir != NULL && dir[0] == '/') {
		g_auto(GStrv) dirs = g_strsplit (dir, ":", 2);
		return g_build_filename (dirs[0], "main.conf", NULL);
	}
	return g_build_filename (BGS_SYSCONFDIR, "main.conf", NULL);
}

static char *
default_state_directory (void)
{
	const char *dir = g_getenv ("STATE_DIRECTORY");

	if (dir != NULL && dir[0] == '/') {
		g_auto(GStrv) dirs = g_strsplit (dir, ":", 2);
		return g_strdup (dirs[0]);
	}
	return g_strdup (BGS_STATEDIR);
}

BgsConfig *
bgs_config_new_default (void)
{
	BgsConfig *config = g_new0 (BgsConfig, 1);
	const char *apps[] = { BGS_DATADIR "/apps", BGS_SYSCONFDIR "/apps", NULL };
	const char *devices[] = { BGS_DATADIR "/devices", BGS_SYSCONFDIR "/devices", NULL };

	config->state_directory = default_state_directory ();
	config->app_directories = g_strdupv ((char **) apps);
	config->device_directories = g_strdupv ((char **) devices);
	config->adapters = g_new0 (char *, 1);
	config->enable_test_profile = FALSE;

	config->device_use_max_runtime_usec = SEC (600);
	config->device_servicing_max_runtime_usec = SEC (1800);
	config->custom_max_runtime_usec = SEC (600);
	config->idle_timeout_usec = SEC (5);
	config->max_servicing_estimate_usec = SEC (1800);
	config->min_battery_percent = 33;
	config->foreground_check = BGS_FOREGROUND_CHECK_LOGIND;
	config->custom_trigger_raisers = g_new0 (guint32, 1);
	config->custom_trigger_raisers[0] = 0; /* root */
	config->n_custom_trigger_raisers = 1;

	config->consent_timeout_usec = SEC (60);
	config->max_queued_per_app = 256;
	config->history_max_age_days = 90;
	config->max_tasks_per_app = 32;
	config->max_string_length = 4096;
	config->max_agents_per_user = 4;

	config->presence_lost_timeout_usec = SEC (10);
	config->link_connect_timeout_usec = SEC (30);
	config->adapter_power_off_grace_usec = SEC (1.5);
	config->presence_found_timeout_usec = 0;
	config->presence_found_rssi = -90;
	config->presence_lost_rssi = -100;
	return config;
}

void
bgs_config_free (BgsConfig *config)
{
	if (config == NULL)
		return;
	g_free (config->path);
	g_free (config->state_directory);
	g_strfreev (config->app_directories);
	g_strfreev (config->device_directories);
	g_strfreev (config->adapters);
	g_free (config->custom_trigger_raisers);
	g_free (config);
}

gboolean
bgs_config_may_raise_custom_trigger (const BgsConfig *config, guint32 uid)
{
	g_return_val_if_fail (config != NULL, FALSE);
	for (guint i = 0; i < config->n_custom_trigger_raisers; i++) {
		if (config->custom_trigger_raisers[i] == uid)
			return TRUE;
	}
	return FALSE;
}

/* seconds as the file writes them: "5", "0.05" */
static char *
usec_to_seconds (gint64 usec)
{
	g_autofree char *frac = NULL;
	gsize len;

	if (usec % BGS_USEC_PER_SEC == 0)
		return g_strdup_printf ("%" G_GINT64_FORMAT, usec / BGS_USEC_PER_SEC);
	frac = g_strdup_printf ("%06" G_GINT64_FORMAT, usec % BGS_USEC_PER_SEC);
	len = strlen (frac);
	while (len > 0 && frac[len - 1] == '0')
		frac[--len] = '\0';
	return g_strdup_printf ("%" G_GINT64_FORMAT ".%s", usec / BGS_USEC_PER_SEC, frac);
}

/* "12", "0.5", "1.000001": no sign, exponent, hex, inf or nan; at most
 * microsecond precision */
static gboolean
parse_seconds (const char *str, gint64 *out_usec)
{
	gint64 whole = 0;
	gint64 frac = 0;
	const char *p = str;
	guint n_whole = 0;
	guint n_frac = 0;

	for (; g_ascii_isdigit (*p); p++) {
		/* 86400 is the largest sane value; stop well before overflow */
		if (++n_whole > 12)
			return FALSE;
		whole = whole * 10 + (*p - '0');
	}
	if (*p == '.') {
		p++;
		for (; g_ascii_isdigit (*p); p++) {
			if (++n_frac > 6)
				return FALSE;
			frac = frac * 10 + (*p - '0');
		}
		if (n_frac == 0)
			return FALSE;
	}
	if (*p != '\0' || n_whole == 0)
		return FALSE;
	for (guint i = n_frac; i < 6; i++)
		frac *= 10;
	*out_usec = whole * BGS_USEC_PER_SEC + frac;
	return TRUE;
}

static gboolean
is_adapter_name (const char *name)
{
	gsize len = strlen (name);

	if (len < 4 || len > 8 || !g_str_has_prefix (name, "hci"))
		return FALSE;
	for (const char *p = name + 3; *p != '\0'; p++) {
		if (!g_ascii_isdigit (*p))
			return FALSE;
	}
	return TRUE;
}

static gboolean
resolve_user (const char *name, guint32 *out_uid)
{
	guint64 num;
	struct passwd pwbuf;
	struct passwd *pw = NULL;
	g_autofree char *buf = NULL;
	gsize bufsize = 4096;

	if (g_ascii_string_to_unsigned (name, 10, 0, G_MAXUINT32 - 1, &num, NULL)) {
		*out_uid = (guint32) num;
		return TRUE;
	}
	/* getpwnam_r: no static buffer shared with other code */
	for (;;) {
		int r;

		g_free (buf);
		buf = g_malloc (bufsize);
		r = getpwnam_r (name, &pwbuf, buf, bufsize, &pw);
		if (r == ERANGE && bufsize < 1024 * 1024) {
			bufsize *= 2;
			continue;
		}
		break;
	}
	if (pw == NULL)
		return FALSE;
	*out_uid = pw->pw_uid;
	return TRUE;
}

static void
set_bad_value (GError **error, const char *name, const KeyDef *def, const char *value,
	       const char *expected)
{
	g_autofree char *shown = NULL;

	/* the value may be anything; keep the message one readable line */
	shown = g_strescape (value != NULL ? value : "", NULL);
	if (strlen (shown) > 64)
		strcpy (shown + 61, "...");
	g_set_error (error, BGS_ERROR, BGS_ERROR_INVALID_ARGS,
		     "%s: [%s] %s=%s: %s", name, def->group, def->key, shown, expected);
}

static gboolean
parse_key (BgsConfig *config, GKeyFile *kf, const char *name, const KeyDef *def,
	   GError **error)
{
	g_autofree char *raw = NULL;
	g_autoptr(GError) local_error = NULL;
	g_autofree char *value = NULL;

	raw = g_key_file_get_value (kf, def->group, def->key, NULL);
	if (raw == NULL)
		return TRUE;
	value = g_strstrip (g_strdup (raw));

	switch (def->type) {
	case KEY_BOOL: {
		gboolean b = g_key_file_get_boolean (kf, def->group, def->key, &local_error);
		if (local_error != NULL) {
			set_bad_value (error, name, def, value, "expected true or false");
			return FALSE;
		}
		*FIELD (config, def, gboolean) = b;
		return TRUE;
	}
	case KEY_UINT:
	case KEY_INT: {
		gint64 num;
		g_autofree char *expected = NULL;

		expected = g_strdup_printf ("expected an integer between %" G_GINT64_FORMAT
					    " and %" G_GINT64_FORMAT, def->min, def->max);
		if (!g_ascii_string_to_signed (value, 10, def->min, def->max, &num, NULL)) {
			set_bad_value (error, name, def, value, expected);
			return FALSE;
		}
		if (def->type == KEY_UINT)
			*FIELD (config, def, guint) = (guint) num;
		else
			*FIELD (config, def, gint) = (gint) num;
		return TRUE;
	}
	case KEY_DURATION: {
		gint64 usec = 0;
		g_autofree char *min = usec_to_seconds (def->min);
		g_autofree char *max = usec_to_seconds (def->max);
		g_autofree char *expected = NULL;

		expected = g_strdup_printf ("expected seconds between %s and %s "
					    "(decimals allowed, e.g. 0.5)", min, max);
		if (!parse_seconds (value, &usec) || usec < def->min || usec > def->max) {
			set_bad_value (error, name, def, value, expected);
			return FALSE;
		}
		*FIELD (config, def, gint64) = usec;
		return TRUE;
	}
	case KEY_DIR: {
		g_autofree char *str = g_key_file_get_string (kf, def->group, def->key, NULL);

		if (str == NULL || !g_path_is_absolute (g_strstrip (str))) {
			set_bad_value (error, name, def, value, "expected an absolute path");
			return FALSE;
		}
		g_free (*FIELD (config, def, char *));
		*FIELD (config, def, char *) = g_steal_pointer (&str);
		return TRUE;
	}
	case KEY_DIR_LIST:
	case KEY_ADAPTERS: {
		g_auto(GStrv) list = NULL;
		g_autoptr(GPtrArray) out = g_ptr_array_new_with_free_func (g_free);

		list = g_key_file_get_string_list (kf, def->group, def->key, NULL, NULL);
		if (list == NULL) {
			set_bad_value (error, name, def, value,
				       def->type == KEY_DIR_LIST
				       ? "expected absolute paths separated by ';'"
				       : "expected adapter names like hci0 separated by ';'");
			return FALSE;
		}
		for (guint i = 0; list[i] != NULL; i++) {
			char *item = g_strstrip (list[i]);

			if (item[0] == '\0')
				continue;
			if (def->type == KEY_DIR_LIST && !g_path_is_absolute (item)) {
				set_bad_value (error, name, def, item,
					       "expected absolute paths separated by ';'");
				return FALSE;
			}
			if (def->type == KEY_ADAPTERS && !is_adapter_name (item)) {
				set_bad_value (error, name, def, item,
					       "expected adapter names like hci0 separated by ';'");
				return FALSE;
			}
			g_ptr_array_add (out, g_strdup (item));
		}
		g_ptr_array_add (out, NULL);
		g_strfreev (*FIELD (config, def, char **));
		*FIELD (config, def, char **) = (char **) g_ptr_array_free (g_steal_pointer (&out), FALSE);
		return TRUE;
	}
	case KEY_FOREGROUND:
		if (g_strcmp0 (value, "logind") == 0)
			config->foreground_check = BGS_FOREGROUND_CHECK_LOGIND;
		else if (g_strcmp0 (value, "none") == 0)
			config->foreground_check = BGS_FOREGROUND_CHECK_NONE;
		else {
			set_bad_value (error, name, def, value, "expected logind or none");
			return FALSE;
		}
		return TRUE;
	case KEY_USERS: {
		g_auto(GStrv) list = NULL;
		g_autoptr(GArray) uids = g_array_new (FALSE, FALSE, sizeof (guint32));

		list = g_key_file_get_string_list (kf, def->group, def->key, NULL, NULL);
		if (list == NULL) {
			set_bad_value (error, name, def, value,
				       "expected user names or uids separated by ';'");
			return FALSE;
		}
		for (guint i = 0; list[i] != NULL; i++) {
			char *item = g_strstrip (list[i]);
			guint32 uid;

			if (item[0] == '\0')
				continue;
			if (!resolve_user (item, &uid)) {
				set_bad_value (error, name, def, item,
					       "no such user (expected user names or uids separated by ';')");
				return FALSE;
			}
			g_array_append_val (uids, uid);
		}
		g_free (config->custom_trigger_raisers);
		config->n_custom_trigger_raisers = uids->len;
		config->custom_trigger_raisers = (guint32 *) g_array_free (g_steal_pointer (&uids), FALSE);
		return TRUE;
	}
	}
	g_assert_not_reached ();
}

static gboolean
is_known_group (const char *group)
{
	for (gsize i = 0; i < G_N_ELEMENTS (keys); i++) {
		if (g_strcmp0 (keys[i].group, group) == 0)
			return TRUE;
	}
	return FALSE;
}

static const KeyDef *
find_key (const char *group, const char *key)
{
	for (gsize i = 0; i < G_N_ELEMENTS (keys); i++) {
		if (g_strcmp0 (keys[i].group, group) == 0 && g_strcmp0 (keys[i].key, key) == 0)
			return &keys[i];
	}
	return NULL;
}

static void
warn_unknown (GKeyFile *kf, const char *name)
{
	g_auto(GStrv) groups = g_key_file_get_groups (kf, NULL);

	for (guint i = 0; groups[i] != NULL; i++) {
		g_auto(GStrv) names = NULL;

		if (!is_known_group (groups[i])) {
			g_warning ("%s: unknown group [%s] ignored", name, groups[i]);
			continue;
		}
		names = g_key_file_get_keys (kf, groups[i], NULL, NULL);
		for (guint j = 0; names != NULL && names[j] != NULL; j++) {
			if (find_key (groups[i], names[j]) == NULL)
				g_warning ("%s: unknown key [%s] %s ignored", name, groups[i], names[j]);
		}
	}
}

BgsConfig *
bgs_config_load_from_data (const char *data, gssize len, const char *name, GError **error)
{
	g_autoptr(GKeyFile) kf = g_key_file_new ();
	g_autoptr(GError) local_error = NULL;
	g_autoptr(BgsConfig) config = NULL;

	g_return_val_if_fail (data != NULL, NULL);
	if (name == NULL)
		name = "main.conf";

	if (len < 0)
		len = strlen (data);
	if (!g_key_file_load_from_data (kf, data, len, G_KEY_FILE_NONE, &local_error)) {
		g_set_error (error, BGS_ERROR, BGS_ERROR_INVALID_ARGS, "%s: %s", name,
			     local_error->message);
		return NULL;
	}

	warn_unknown (kf, name);

	config = bgs_config_new_default ();
	for (gsize i = 0; i < G_N_ELEMENTS (keys); i++) {
		if (!parse_key (config, kf, name, &keys[i], error))
			return NULL;
	}

	/* hysteresis: a device must get closer to be found than to stay */
	if (config->presence_lost_rssi > config->presence_found_rssi) {
		g_set_error (error, BGS_ERROR, BGS_ERROR_INVALID_ARGS,
			     "%s: [Presence] LostRSSI=%d: must not be above FoundRSSI=%d "
			     "(expected -127..%d)", name, config->presence_lost_rssi,
			     config->presence_found_rssi, config->presence_found_rssi);
		return NULL;
	}
	if (config->foreground_check == BGS_FOREGROUND_CHECK_NONE)
		g_info ("%s: [Policy] ForegroundCheck=none: every app counts as in the "
			"foreground", name);
	return g_steal_pointer (&config);
}

BgsConfig *
bgs_config_load (const char *path, GError **error)
{
	g_autofree char *default_path = NULL;
	g_autofree char *contents = NULL;
	g_autoptr(GError) local_error = NULL;
	gsize len = 0;
	BgsConfig *config;

	if (path == NULL)
		path = default_path = bgs_config_default_path ();

	if (!g_file_get_contents (path, &contents, &len, &local_error)) {
		if (default_path != NULL &&
		    g_error_matches (local_error, G_FILE_ERROR, G_FILE_ERROR_NOENT)) {
			g_debug ("%s does not exist, using defaults", path);
			return bgs_config_new_default ();
		}
		g_set_error (error, BGS_ERROR, BGS_ERROR_INVALID_ARGS,
			     "cannot read configuration: %s", local_error->message);
		return NULL;
	}
	config = bgs_config_load_from_data (contents, len, path, error);
	if (config != NULL)
		config->path = g_strdup (path);
	return config;
}
