/* bgs-config.h: /etc/bgsync/main.conf, a BlueZ-style GKeyFile.
 *
 * Every key is optional; the shipped file lists each one commented out
 * with its default. Unknown groups and keys only warn; a bad value makes
 * loading fail (BGS_ERROR_INVALID_ARGS naming file, group, key and the
 * accepted range) so the daemon refuses to start on a typo'd limit.
 * Durations are seconds in the file (decimals allowed) and usec here. */
#pragma once

#include <glib.h>

#include "bgs-clock.h" /* BGS_USEC_PER_SEC */

G_BEGIN_DECLS

typedef enum {
	BGS_FOREGROUND_CHECK_LOGIND, /* "logind": active, unlocked seat session */
	BGS_FOREGROUND_CHECK_NONE,   /* "none": every app counts as foreground */
} BgsForegroundCheck;

typedef struct {
	/* the file that was read; NULL when defaults only (no file) */
	char *path;

	/* [General] */
	char *state_directory;      /* absolute */
	char **app_directories;     /* absolute, in lookup order, never NULL */
	char **device_directories;  /* absolute, in lookup order, never NULL */
	char **adapters;            /* "hci0", ...; empty = all; never NULL */
	gboolean enable_test_profile;

	/* [Policy] */
	gint64 device_use_max_runtime_usec;
	gint64 device_servicing_max_runtime_usec;
	gint64 custom_max_runtime_usec;
	gint64 idle_timeout_usec;
	gint64 max_servicing_estimate_usec;
	guint min_battery_percent;
	BgsForegroundCheck foreground_check;
	guint32 *custom_trigger_raisers; /* uids resolved at load */
	guint n_custom_trigger_raisers;

	/* [Consent] */
	gint64 consent_timeout_usec;

	/* [Events] */
	guint max_queued_per_app;

	/* [History] */
	guint history_max_age_days; /* 0 = keep forever */

	/* [Limits] */
	guint max_tasks_per_app;
	guint max_string_length;
	guint max_agents_per_user;

	/* [Presence] */
	gint64 presence_lost_timeout_usec;
	gint64 presence_found_timeout_usec;
	gint presence_found_rssi; /* dBm */
	gint presence_lost_rssi;  /* dBm, <= found_rssi */

	/* [Links] */
	gint64 link_connect_timeout_usec;     /* Connect + services resolved */
	gint64 adapter_power_off_grace_usec;  /* power-off then bluetoothd leaving = a restart */
} BgsConfig;

/* the path bgs_config_load (NULL) reads: $CONFIGURATION_DIRECTORY/main.conf
 * when systemd set it, else BGS_SYSCONFDIR/main.conf */
char *bgs_config_default_path (void);

/* all defaults; $STATE_DIRECTORY is honoured */
BgsConfig *bgs_config_new_default (void);

/* @path NULL reads the default path, where a missing file means defaults;
 * an explicit @path must exist */
BgsConfig *bgs_config_load (const char *path, GError **error);

/* parses @data (a whole main.conf); @name is used in messages only */
BgsConfig *bgs_config_load_from_data (const char *data, gssize len, const char *name,
				      GError **error);

/* TRUE when @uid is listed in CustomTriggerRaisers */
gboolean bgs_config_may_raise_custom_trigger (const BgsConfig *config, guint32 uid);

void bgs_config_free (BgsConfig *config);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (BgsConfig, bgs_config_free)

G_END_DECLS
