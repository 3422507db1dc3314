/* bgs-types.c: string forms of the shared enums */
#include "bgs-types.h"
#include "bgs-error.h"

static const char *const trigger_names[] = { "device-use", "device-servicing", "custom" };
static const char *const recurrence_names[] = { "", "once", "always" };
static const char *const result_names[] = { "allowed", "denied-by-user", "denied-by-system", "low-battery" };
static const char *const deny_names[] = {
	"", "not-foreground", "not-present", "not-accessible", "not-registered",
	"not-privileged", "estimate-too-long", "busy", "device-busy",
	"no-consent-agent", "consent-denied", "consent-timeout", "low-battery",
	"conditions-not-met", "bad-entry-point", "trigger-mismatch", "unknown-device",
	"canceled",
};
static const char *const cancel_names[] = {
	"", "abort", "terminating", "logging-off", "servicing-update", "idle-task",
	"uninstall", "condition-loss", "system-policy", "execution-time-exceeded",
	"resource-revocation", "energy-saver",
};
static const char *const state_names[] = { "idle", "consent", "running" };
static const char *const event_names[] = { "progress", "completed", "canceled" };

G_STATIC_ASSERT (G_N_ELEMENTS (trigger_names) == BGS_TRIGGER_LAST);
G_STATIC_ASSERT (G_N_ELEMENTS (recurrence_names) == BGS_RECURRENCE_LAST);
G_STATIC_ASSERT (G_N_ELEMENTS (result_names) == BGS_RESULT_LAST);
G_STATIC_ASSERT (G_N_ELEMENTS (deny_names) == BGS_DENY_LAST);
G_STATIC_ASSERT (G_N_ELEMENTS (cancel_names) == BGS_CANCEL_LAST);
G_STATIC_ASSERT (G_N_ELEMENTS (state_names) == BGS_TASK_STATE_LAST);
G_STATIC_ASSERT (G_N_ELEMENTS (event_names) == BGS_EVENT_LAST);

static const char *
name_of (const char *const *names, guint n, guint value)
{
	return value < n ? names[value] : "unknown";
}

static gboolean
value_of (const char *const *names, guint n, const char *str, guint *out)
{
	if (str == NULL)
		return FALSE;
	for (guint i = 0; i < n; i++) {
		if (g_strcmp0 (names[i], str) == 0) {
			*out = i;
			return TRUE;
		}
	}
	return FALSE;
}

#define BGS_ENUM_STRINGS(prefix, Type, names)                                    \
	const char *prefix##_to_string (Type v)                                  \
	{                                                                        \
		return name_of (names, G_N_ELEMENTS (names), (guint) v);         \
	}                                                                        \
	gboolean prefix##_from_string (const char *str, Type *out)               \
	{                                                                        \
		guint v;                                                         \
		if (!value_of (names, G_N_ELEMENTS (names), str, &v))            \
			return FALSE;                                            \
		*out = (Type) v;                                                 \
		return TRUE;                                                     \
	}

BGS_ENUM_STRINGS (bgs_trigger_kind, BgsTriggerKind, trigger_names)
BGS_ENUM_STRINGS (bgs_recurrence, BgsRecurrence, recurrence_names)
BGS_ENUM_STRINGS (bgs_trigger_result, BgsTriggerResult, result_names)
BGS_ENUM_STRINGS (bgs_deny_reason, BgsDenyReason, deny_names)
BGS_ENUM_STRINGS (bgs_cancel_reason, BgsCancelReason, cancel_names)
BGS_ENUM_STRINGS (bgs_event_kind, BgsEventKind, event_names)

const char *
bgs_task_state_to_string (BgsTaskState state)
{
	return name_of (state_names, G_N_ELEMENTS (state_names), state);
}

static const struct {
	const char *name;
	BgsConditions flag;
} condition_names[] = {
	{ "network", BGS_CONDITION_NETWORK },
	{ "user-present", BGS_CONDITION_USER_PRESENT },
	{ "ac-power", BGS_CONDITION_AC_POWER },
};

gboolean
bgs_conditions_from_strv (const char *const *strv, BgsConditions *out, GError **error)
{
	BgsConditions conds = BGS_CONDITION_NONE;

	for (guint i = 0; strv != NULL && strv[i] != NULL; i++) {
		gboolean found = FALSE;
		for (guint j = 0; j < G_N_ELEMENTS (condition_names); j++) {
			if (g_strcmp0 (strv[i], condition_names[j].name) == 0) {
				conds |= condition_names[j].flag;
				found = TRUE;
			}
		}
		if (!found) {
			g_autofree char *valid = g_utf8_make_valid (strv[i], -1);
			g_set_error (error, BGS_ERROR, BGS_ERROR_INVALID_ARGS,
				     "unknown condition '%s' (known: network, user-present, ac-power)",
				     valid);
			return FALSE;
		}
	}
	*out = conds;
	return TRUE;
}

char **
bgs_conditions_to_strv (BgsConditions conds)
{
	g_autoptr(GStrvBuilder) b = g_strv_builder_new ();

	for (guint j = 0; j < G_N_ELEMENTS (condition_names); j++)
		if (conds & condition_names[j].flag)
			g_strv_builder_add (b, condition_names[j].name);
	return g_strv_builder_end (b);
}
