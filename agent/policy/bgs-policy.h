/* bgs-policy.h: the initiation policies of device tasks as a pure function.
 *
 * The caller gathers the facts (identity, session, presence, power, stored
 * consent) and gets a decision back; nothing here talks to D-Bus, BlueZ or
 * the store. The order of the checks, which decides which reason wins when
 * several rules fail, is documented in doc/policies.md. */
#pragma once

#include <glib.h>

#include "bgs-clock.h"
#include "bgs-types.h"

G_BEGIN_DECLS

/* all times in microseconds; see doc/policies.md for the config keys */
typedef struct {
	gint64 device_use_max_runtime;   /* default 600 s */
	gint64 servicing_max_runtime;    /* default 1800 s */
	gint64 custom_max_runtime;       /* default 600 s */
	gint64 idle_timeout;             /* default 5 s: device-use only */
	gint64 servicing_max_estimate;   /* default 1800 s: estimate must be strictly below */
	gdouble min_battery_percent;     /* default 33: servicing needs > this or AC */
} BgsPolicyLimits;

/* fills in the defaults of seed 001 */
void bgs_policy_limits_init (BgsPolicyLimits *limits);
/* every time > 0 and at most a day, battery within [0, 100];
 * FALSE names the bad field in @error (BGS_ERROR_INVALID_ARGS) */
gboolean bgs_policy_limits_check (const BgsPolicyLimits *limits, GError **error);

typedef enum {
	BGS_CONSENT_UNKNOWN,
	BGS_CONSENT_ALLOWED,
	BGS_CONSENT_DENIED,
} BgsConsentState;

typedef struct {
	BgsTriggerKind trigger;
	gboolean entry_point_exists;    /* a built-in profile of that name exists */
	gboolean entry_point_declared;  /* the app manifest declares it for this trigger kind */
	gboolean device_known;
	gboolean foreground;            /* caller's user owns the active, unlocked session of its seat */
	gboolean device_present;        /* in radio range */
	gboolean device_accessible;     /* adapter powered, device not blocked */
	gboolean app_busy;              /* app already has a device task pending or running */
	gboolean device_busy;           /* device already runs a task of this operation type */
	gint64 estimate;                /* usec, 0 = unknown */
	gboolean privileged;            /* app is a privileged app of the device model */
	gboolean on_battery;            /* host runs on battery (no UPower / no battery = FALSE) */
	gdouble battery_percent;
	BgsConsentState stored_consent; /* device-use only */
	gboolean consent_agent;         /* a consent agent is registered for the user */
} BgsInitiationFacts;

typedef struct {
	BgsTriggerResult result;
	BgsDenyReason reason;    /* BGS_DENY_NONE when allowed */
	gboolean ask_consent;    /* result ALLOWED so far, but the user must be asked first */
	gboolean store_answer;   /* remember the user's answer (device-use) */
	gint64 max_runtime;      /* usec, for the instance; 0 when not allowed */
} BgsInitiationDecision;

/* device triggers only: a custom trigger is refused denied-by-system
 * trigger-mismatch (custom tasks are checked by bgs_policy_conditions_hold) */
BgsInitiationDecision bgs_policy_check_initiation (const BgsPolicyLimits *limits,
						   const BgsInitiationFacts *facts);
/* turns the consent agent's answer into the final decision; @answered FALSE
 * (timeout, agent error or agent gone) is denied-by-user consent-timeout and
 * nothing is stored. @pending must have ask_consent set. */
BgsInitiationDecision bgs_policy_apply_consent (const BgsInitiationDecision *pending,
						gboolean answered,
						gboolean allowed);
/* TRUE when every condition in @required is in @current */
gboolean bgs_policy_conditions_hold (BgsConditions required, BgsConditions current);

G_END_DECLS
