/* bgs-types.h: the vocabulary shared by engine, store and bus front:
 * trigger kinds, request results, denial and cancellation reasons.
 * Every enum has a stable string form; that string is the D-Bus and
 * on-disk representation, so never renumber by meaning, only append. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

typedef enum {
	BGS_TRIGGER_DEVICE_USE,        /* "device-use" (DeviceUseTrigger) */
	BGS_TRIGGER_DEVICE_SERVICING,  /* "device-servicing" (DeviceServicingTrigger) */
	BGS_TRIGGER_CUSTOM,            /* "custom" (CustomSystemEventTrigger) */
	BGS_TRIGGER_LAST
} BgsTriggerKind;

typedef enum {
	BGS_RECURRENCE_NONE,   /* "" : device triggers */
	BGS_RECURRENCE_ONCE,   /* "once" */
	BGS_RECURRENCE_ALWAYS, /* "always" */
	BGS_RECURRENCE_LAST
} BgsRecurrence;

/* DeviceTriggerResult */
typedef enum {
	BGS_RESULT_ALLOWED,           /* "allowed" */
	BGS_RESULT_DENIED_BY_USER,    /* "denied-by-user" */
	BGS_RESULT_DENIED_BY_SYSTEM,  /* "denied-by-system" */
	BGS_RESULT_LOW_BATTERY,       /* "low-battery" */
	BGS_RESULT_LAST
} BgsTriggerResult;

/* machine-readable reason that goes with a result other than allowed */
typedef enum {
	BGS_DENY_NONE,               /* "" */
	BGS_DENY_NOT_FOREGROUND,     /* "not-foreground" */
	BGS_DENY_NOT_PRESENT,        /* "not-present" */
	BGS_DENY_NOT_ACCESSIBLE,     /* "not-accessible" */
	BGS_DENY_NOT_REGISTERED,     /* "not-registered": entry point not in the manifest */
	BGS_DENY_NOT_PRIVILEGED,     /* "not-privileged" */
	BGS_DENY_ESTIMATE_TOO_LONG,  /* "estimate-too-long" */
	BGS_DENY_BUSY,               /* "busy": the app already has a device task */
	BGS_DENY_DEVICE_BUSY,        /* "device-busy": the device runs this operation type */
	BGS_DENY_NO_CONSENT_AGENT,   /* "no-consent-agent" */
	BGS_DENY_CONSENT_DENIED,     /* "consent-denied" (result denied-by-user) */
	BGS_DENY_CONSENT_TIMEOUT,    /* "consent-timeout" (result denied-by-user) */
	BGS_DENY_LOW_BATTERY,        /* "low-battery" (result low-battery) */
	BGS_DENY_CONDITIONS_NOT_MET, /* "conditions-not-met" */
	BGS_DENY_BAD_ENTRY_POINT,    /* "bad-entry-point": no such built-in profile */
	BGS_DENY_TRIGGER_MISMATCH,   /* "trigger-mismatch": custom task requested like a device one */
	BGS_DENY_UNKNOWN_DEVICE,     /* "unknown-device" */
	BGS_DENY_CANCELED,           /* "canceled": the reservation ended while waiting for consent */
	BGS_DENY_LAST
} BgsDenyReason;

/* BackgroundTaskCancellationReason */
typedef enum {
	BGS_CANCEL_NONE,                    /* "" */
	BGS_CANCEL_ABORT,                   /* "abort" */
	BGS_CANCEL_TERMINATING,             /* "terminating" */
	BGS_CANCEL_LOGGING_OFF,             /* "logging-off" */
	BGS_CANCEL_SERVICING_UPDATE,        /* "servicing-update" */
	BGS_CANCEL_IDLE_TASK,               /* "idle-task" */
	BGS_CANCEL_UNINSTALL,               /* "uninstall" */
	BGS_CANCEL_CONDITION_LOSS,          /* "condition-loss" */
	BGS_CANCEL_SYSTEM_POLICY,           /* "system-policy" */
	BGS_CANCEL_EXECUTION_TIME_EXCEEDED, /* "execution-time-exceeded" */
	BGS_CANCEL_RESOURCE_REVOCATION,     /* "resource-revocation" */
	BGS_CANCEL_ENERGY_SAVER,            /* "energy-saver" */
	BGS_CANCEL_LAST
} BgsCancelReason;

typedef enum {
	BGS_TASK_STATE_IDLE,     /* "idle" */
	BGS_TASK_STATE_CONSENT,  /* "consent": waiting for the user's answer */
	BGS_TASK_STATE_RUNNING,  /* "running" */
	BGS_TASK_STATE_LAST
} BgsTaskState;

typedef enum {
	BGS_EVENT_PROGRESS,   /* "progress" */
	BGS_EVENT_COMPLETED,  /* "completed" */
	BGS_EVENT_CANCELED,   /* "canceled" */
	BGS_EVENT_LAST
} BgsEventKind;

/* conditions a custom-trigger task may carry (bit flags) */
typedef enum {
	BGS_CONDITION_NONE = 0,
	BGS_CONDITION_NETWORK = 1 << 0,       /* "network" */
	BGS_CONDITION_USER_PRESENT = 1 << 1,  /* "user-present" */
	BGS_CONDITION_AC_POWER = 1 << 2,      /* "ac-power" */
} BgsConditions;

/* to_string never returns NULL; from_string returns FALSE on unknown input
 * and leaves *out untouched */
const char *bgs_trigger_kind_to_string (BgsTriggerKind kind);
gboolean bgs_trigger_kind_from_string (const char *str, BgsTriggerKind *out);
const char *bgs_recurrence_to_string (BgsRecurrence rec);
gboolean bgs_recurrence_from_string (const char *str, BgsRecurrence *out);
const char *bgs_trigger_result_to_string (BgsTriggerResult result);
gboolean bgs_trigger_result_from_string (const char *str, BgsTriggerResult *out);
const char *bgs_deny_reason_to_string (BgsDenyReason reason);
gboolean bgs_deny_reason_from_string (const char *str, BgsDenyReason *out);
const char *bgs_cancel_reason_to_string (BgsCancelReason reason);
gboolean bgs_cancel_reason_from_string (const char *str, BgsCancelReason *out);
const char *bgs_task_state_to_string (BgsTaskState state);
const char *bgs_event_kind_to_string (BgsEventKind kind);
gboolean bgs_event_kind_from_string (const char *str, BgsEventKind *out);
/* "network", "user-present", "ac-power"; FALSE names the bad one in @error */
gboolean bgs_conditions_from_strv (const char *const *strv, BgsConditions *out, GError **error);
/* NULL-terminated, free with g_strfreev */
char **bgs_conditions_to_strv (BgsConditions conds);

G_END_DECLS
