/* bgs-policy.c: initiation policies (seed 001, "Task initiation policies") */
#include "bgs-policy.h"

#include "bgs-error.h"

#define DAY_USEC (G_GINT64_CONSTANT (86400) * BGS_USEC_PER_SEC)

void
bgs_policy_limits_init (BgsPolicyLimits *limits)
{
	g_return_if_fail (limits != NULL);

	limits->device_use_max_runtime = 600 * BGS_USEC_PER_SEC;
	limits->servicing_max_runtime = 1800 * BGS_USEC_PER_SEC;
	limits->custom_max_runtime = 600 * BGS_USEC_PER_SEC;
	limits->idle_timeout = 5 * BGS_USEC_PER_SEC;
	limits->servicing_max_estimate = 1800 * BGS_USEC_PER_SEC;
	limits->min_battery_percent = 33.0;
}

static gboolean
check_time (const char *name, gint64 value, GError **error)
{
	if (value > 0 && value <= DAY_USEC)
		return TRUE;
	g_set_error (error, BGS_ERROR, BGS_ERROR_INVALID_ARGS,
		     "%s must be more than 0 and at most 86400 seconds", name);
	return FALSE;
}

gboolean
bgs_policy_limits_check (const BgsPolicyLimits *limits, GError **error)
{
	g_return_val_if_fail (limits != NULL, FALSE);

	if (!check_time ("DeviceUseMaxRuntime", limits->device_use_max_runtime, error) ||
	    !check_time ("DeviceServicingMaxRuntime", limits->servicing_max_runtime, error) ||
	    !check_time ("CustomMaxRuntime", limits->custom_max_runtime, error) ||
	    !check_time ("IdleTimeout", limits->idle_timeout, error) ||
	    !check_time ("MaxServicingEstimate", limits->servicing_max_estimate, error))
		return FALSE;
	/* written so that NaN fails too */
	if (!(limits->min_battery_percent >= 0.0 && limits->min_battery_percent <= 100.0)) {
		g_set_error_literal (error, BGS_ERROR, BGS_ERROR_INVALID_ARGS,
				     "MinBatteryPercent must be within 0 and 100");
		return FALSE;
	}
	return TRUE;
}

static BgsInitiationDecision
deny (BgsTriggerResult result, BgsDenyReason reason)
{
	BgsInitiationDecision d = { 0 };

	d.result = result;
	d.reason = reason;
	return d;
}

static gboolean
battery_ok (const BgsPolicyLimits *limits, const BgsInitiationFacts *facts)
{
	if (!facts->on_battery)
		return TRUE;
	/* "greater than 33%": exactly the minimum is refused; NaN is refused */
	return facts->battery_percent > limits->min_battery_percent;
}

/* the order is the contract of doc/policies.md ("Order of checks"):
 * refusals the app cannot fix by waiting come first, then the state of
 * session, device and power, then consent */
BgsInitiationDecision
bgs_policy_check_initiation (const BgsPolicyLimits *limits, const BgsInitiationFacts *facts)
{
	BgsInitiationDecision d = { 0 };
	gboolean servicing;

	g_return_val_if_fail (limits != NULL, deny (BGS_RESULT_DENIED_BY_SYSTEM, BGS_DENY_BAD_ENTRY_POINT));
	g_return_val_if_fail (facts != NULL, deny (BGS_RESULT_DENIED_BY_SYSTEM, BGS_DENY_BAD_ENTRY_POINT));

	if (facts->trigger != BGS_TRIGGER_DEVICE_USE && facts->trigger != BGS_TRIGGER_DEVICE_SERVICING)
		return deny (BGS_RESULT_DENIED_BY_SYSTEM, BGS_DENY_TRIGGER_MISMATCH);
	servicing = facts->trigger == BGS_TRIGGER_DEVICE_SERVICING;

	/* 1. the request itself */
	if (!facts->entry_point_exists)
		return deny (BGS_RESULT_DENIED_BY_SYSTEM, BGS_DENY_BAD_ENTRY_POINT);
	if (!facts->entry_point_declared)
		return deny (BGS_RESULT_DENIED_BY_SYSTEM, BGS_DENY_NOT_REGISTERED);
	if (!facts->device_known)
		return deny (BGS_RESULT_DENIED_BY_SYSTEM, BGS_DENY_UNKNOWN_DEVICE);
	if (servicing && !facts->privileged)
		return deny (BGS_RESULT_DENIED_BY_SYSTEM, BGS_DENY_NOT_PRIVILEGED);
	if (servicing && facts->estimate >= limits->servicing_max_estimate)
		return deny (BGS_RESULT_DENIED_BY_SYSTEM, BGS_DENY_ESTIMATE_TOO_LONG);

	/* 2. session, device and power state: retrying later may succeed */
	if (!facts->foreground)
		return deny (BGS_RESULT_DENIED_BY_SYSTEM, BGS_DENY_NOT_FOREGROUND);
	if (!facts->device_present)
		return deny (BGS_RESULT_DENIED_BY_SYSTEM, BGS_DENY_NOT_PRESENT);
	if (!facts->device_accessible)
		return deny (BGS_RESULT_DENIED_BY_SYSTEM, BGS_DENY_NOT_ACCESSIBLE);
	if (facts->app_busy)
		return deny (BGS_RESULT_DENIED_BY_SYSTEM, BGS_DENY_BUSY);
	if (facts->device_busy)
		return deny (BGS_RESULT_DENIED_BY_SYSTEM, BGS_DENY_DEVICE_BUSY);
	if (servicing && !battery_ok (limits, facts))
		return deny (BGS_RESULT_LOW_BATTERY, BGS_DENY_LOW_BATTERY);

	/* 3. consent: device-use asks once per app and model, servicing every time */
	d.result = BGS_RESULT_ALLOWED;
	d.reason = BGS_DENY_NONE;
	d.max_runtime = servicing ? limits->servicing_max_runtime : limits->device_use_max_runtime;
	if (servicing) {
		d.ask_consent = TRUE;
		d.store_answer = FALSE;
	} else {
		switch (facts->stored_consent) {
		case BGS_CONSENT_ALLOWED:
			return d;
		case BGS_CONSENT_DENIED:
			return deny (BGS_RESULT_DENIED_BY_USER, BGS_DENY_CONSENT_DENIED);
		case BGS_CONSENT_UNKNOWN:
		default:
			d.ask_consent = TRUE;
			d.store_answer = TRUE;
			break;
		}
	}
	/* nobody to ask means no consent, never a silent allow */
	if (!facts->consent_agent)
		return deny (BGS_RESULT_DENIED_BY_SYSTEM, BGS_DENY_NO_CONSENT_AGENT);
	return d;
}

BgsInitiationDecision
bgs_policy_apply_consent (const BgsInitiationDecision *pending, gboolean answered, gboolean allowed)
{
	BgsInitiationDecision d;

	g_return_val_if_fail (pending != NULL, deny (BGS_RESULT_DENIED_BY_SYSTEM, BGS_DENY_NO_CONSENT_AGENT));
	g_return_val_if_fail (pending->result == BGS_RESULT_ALLOWED && pending->ask_consent, *pending);

	if (!answered)
		return deny (BGS_RESULT_DENIED_BY_USER, BGS_DENY_CONSENT_TIMEOUT);
	if (!allowed) {
		d = deny (BGS_RESULT_DENIED_BY_USER, BGS_DENY_CONSENT_DENIED);
		d.store_answer = pending->store_answer;
		return d;
	}
	d = *pending;
	d.ask_consent = FALSE;
	return d;
}

gboolean
bgs_policy_conditions_hold (BgsConditions required, BgsConditions current)
{
	return (required & ~current) == 0;
}
