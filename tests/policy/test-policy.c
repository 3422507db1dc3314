/* test-policy.c: seed 001 "Task initiation policies", row by row, both ways.
 *
 * Each test starts from facts that pass every rule, breaks exactly one and
 * checks the exact result and reason; the row's "holds" case is the same
 * facts unbroken. Run one test: test-policy <name-glob>. */
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "bgs-error.h"
#include "bgs-policy.h"

#define SEC BGS_USEC_PER_SEC
#define MINUTE (60 * SEC)

static BgsPolicyLimits limits;

static int
setup (void **state)
{
	bgs_policy_limits_init (&limits);
	return 0;
}

/* facts under which @trigger passes every initiation rule */
static BgsInitiationFacts
good_facts (BgsTriggerKind trigger)
{
	BgsInitiationFacts f = { 0 };

	f.trigger = trigger;
	f.entry_point_exists = TRUE;
	f.entry_point_declared = TRUE;
	f.device_known = TRUE;
	f.foreground = TRUE;
	f.device_present = TRUE;
	f.device_accessible = TRUE;
	f.app_busy = FALSE;
	f.device_busy = FALSE;
	f.estimate = 10 * MINUTE;
	f.privileged = TRUE;
	f.on_battery = TRUE;
	f.battery_percent = 80.0;
	f.stored_consent = trigger == BGS_TRIGGER_DEVICE_USE ? BGS_CONSENT_ALLOWED : BGS_CONSENT_UNKNOWN;
	f.consent_agent = TRUE;
	return f;
}

static void
assert_denied (const BgsInitiationFacts *f, BgsTriggerResult result, BgsDenyReason reason)
{
	BgsInitiationDecision d = bgs_policy_check_initiation (&limits, f);

	if (d.result != result || d.reason != reason)
		fail_msg ("%s: expected %s/%s, got %s/%s",
			  bgs_trigger_kind_to_string (f->trigger),
			  bgs_trigger_result_to_string (result), bgs_deny_reason_to_string (reason),
			  bgs_trigger_result_to_string (d.result), bgs_deny_reason_to_string (d.reason));
	assert_false (d.ask_consent);
	assert_int_equal (d.max_runtime, 0);
}

/* allowed, maybe pending consent */
static BgsInitiationDecision
assert_allowed (const BgsInitiationFacts *f)
{
	BgsInitiationDecision d = bgs_policy_check_initiation (&limits, f);

	if (d.result != BGS_RESULT_ALLOWED)
		fail_msg ("%s: expected allowed, got %s/%s", bgs_trigger_kind_to_string (f->trigger),
			  bgs_trigger_result_to_string (d.result), bgs_deny_reason_to_string (d.reason));
	assert_int_equal (d.reason, BGS_DENY_NONE);
	assert_int_equal (d.max_runtime, f->trigger == BGS_TRIGGER_DEVICE_USE ?
			  limits.device_use_max_runtime : limits.servicing_max_runtime);
	return d;
}

static const BgsTriggerKind device_kinds[] = { BGS_TRIGGER_DEVICE_USE, BGS_TRIGGER_DEVICE_SERVICING };

static void
test_defaults (void **state)
{
	BgsPolicyLimits l;
	g_autoptr(GError) error = NULL;

	bgs_policy_limits_init (&l);
	assert_int_equal (l.device_use_max_runtime, 600 * SEC);
	assert_int_equal (l.servicing_max_runtime, 1800 * SEC);
	assert_int_equal (l.custom_max_runtime, 600 * SEC);
	assert_int_equal (l.idle_timeout, 5 * SEC);
	assert_int_equal (l.servicing_max_estimate, 1800 * SEC);
	assert_true (l.min_battery_percent == 33.0);
	assert_true (bgs_policy_limits_check (&l, &error));
	assert_null (error);
}

static void
test_limits_check (void **state)
{
	BgsPolicyLimits l;
	g_autoptr(GError) error = NULL;

	bgs_policy_limits_init (&l);
	l.idle_timeout = 0;
	assert_false (bgs_policy_limits_check (&l, &error));
	assert_true (g_error_matches (error, BGS_ERROR, BGS_ERROR_INVALID_ARGS));
	assert_non_null (strstr (error->message, "IdleTimeout"));
	g_clear_error (&error);

	bgs_policy_limits_init (&l);
	l.servicing_max_runtime = -1;
	assert_false (bgs_policy_limits_check (&l, &error));
	assert_non_null (strstr (error->message, "DeviceServicingMaxRuntime"));
	g_clear_error (&error);

	bgs_policy_limits_init (&l);
	l.min_battery_percent = 100.5;
	assert_false (bgs_policy_limits_check (&l, &error));
	assert_non_null (strstr (error->message, "MinBatteryPercent"));
	g_clear_error (&error);

	bgs_policy_limits_init (&l);
	l.min_battery_percent = NAN;
	assert_false (bgs_policy_limits_check (&l, NULL));

	/* decimals are fine: tests use sub-second limits */
	bgs_policy_limits_init (&l);
	l.idle_timeout = SEC / 10;
	l.min_battery_percent = 0.0;
	assert_true (bgs_policy_limits_check (&l, NULL));
}

static void
test_all_good_allowed (void **state)
{
	BgsInitiationFacts f = good_facts (BGS_TRIGGER_DEVICE_USE);
	BgsInitiationDecision d = assert_allowed (&f);

	assert_false (d.ask_consent);
	assert_false (d.store_answer);
	assert_int_equal (d.max_runtime, 600 * SEC);

	f = good_facts (BGS_TRIGGER_DEVICE_SERVICING);
	d = assert_allowed (&f);
	assert_true (d.ask_consent);
	assert_int_equal (d.max_runtime, 1800 * SEC);
}

/* row: "Your UWP app is in the foreground when triggering the background task" */
static void
test_foreground (void **state)
{
	for (guint i = 0; i < G_N_ELEMENTS (device_kinds); i++) {
		BgsInitiationFacts f = good_facts (device_kinds[i]);

		assert_allowed (&f);
		f.foreground = FALSE;
		assert_denied (&f, BGS_RESULT_DENIED_BY_SYSTEM, BGS_DENY_NOT_FOREGROUND);
	}
}

/* row: "Your device is attached to the system (or in range)" */
static void
test_present (void **state)
{
	for (guint i = 0; i < G_N_ELEMENTS (device_kinds); i++) {
		BgsInitiationFacts f = good_facts (device_kinds[i]);

		assert_allowed (&f);
		f.device_present = FALSE;
		assert_denied (&f, BGS_RESULT_DENIED_BY_SYSTEM, BGS_DENY_NOT_PRESENT);
	}
}

/* row: "Your device is accessible to the app using the device peripheral APIs" */
static void
test_accessible (void **state)
{
	for (guint i = 0; i < G_N_ELEMENTS (device_kinds); i++) {
		BgsInitiationFacts f = good_facts (device_kinds[i]);

		assert_allowed (&f);
		f.device_accessible = FALSE;
		assert_denied (&f, BGS_RESULT_DENIED_BY_SYSTEM, BGS_DENY_NOT_ACCESSIBLE);
	}
}

/* row: "Background task entry point ... is registered in the app package manifest" */
static void
test_entry_point (void **state)
{
	for (guint i = 0; i < G_N_ELEMENTS (device_kinds); i++) {
		BgsInitiationFacts f = good_facts (device_kinds[i]);

		assert_allowed (&f);
		f.entry_point_declared = FALSE;
		assert_denied (&f, BGS_RESULT_DENIED_BY_SYSTEM, BGS_DENY_NOT_REGISTERED);
		f = good_facts (device_kinds[i]);
		f.entry_point_exists = FALSE;
		assert_denied (&f, BGS_RESULT_DENIED_BY_SYSTEM, BGS_DENY_BAD_ENTRY_POINT);
	}
}

static void
test_unknown_device (void **state)
{
	for (guint i = 0; i < G_N_ELEMENTS (device_kinds); i++) {
		BgsInitiationFacts f = good_facts (device_kinds[i]);

		f.device_known = FALSE;
		assert_denied (&f, BGS_RESULT_DENIED_BY_SYSTEM, BGS_DENY_UNKNOWN_DEVICE);
	}
}

static void
test_custom_is_not_a_device_trigger (void **state)
{
	BgsInitiationFacts f = good_facts (BGS_TRIGGER_CUSTOM);

	assert_denied (&f, BGS_RESULT_DENIED_BY_SYSTEM, BGS_DENY_TRIGGER_MISMATCH);
	f.trigger = (BgsTriggerKind) 77;
	assert_denied (&f, BGS_RESULT_DENIED_BY_SYSTEM, BGS_DENY_TRIGGER_MISMATCH);
}

/* row: "The user has given the task permission": device-use first time, then stored */
static void
test_consent_device_use (void **state)
{
	BgsInitiationFacts f = good_facts (BGS_TRIGGER_DEVICE_USE);
	BgsInitiationDecision pending, d;

	/* first time: ask and remember */
	f.stored_consent = BGS_CONSENT_UNKNOWN;
	pending = assert_allowed (&f);
	assert_true (pending.ask_consent);
	assert_true (pending.store_answer);

	d = bgs_policy_apply_consent (&pending, TRUE, TRUE);
	assert_int_equal (d.result, BGS_RESULT_ALLOWED);
	assert_int_equal (d.reason, BGS_DENY_NONE);
	assert_false (d.ask_consent);
	assert_true (d.store_answer);
	assert_int_equal (d.max_runtime, 600 * SEC);

	d = bgs_policy_apply_consent (&pending, TRUE, FALSE);
	assert_int_equal (d.result, BGS_RESULT_DENIED_BY_USER);
	assert_int_equal (d.reason, BGS_DENY_CONSENT_DENIED);
	assert_true (d.store_answer);
	assert_int_equal (d.max_runtime, 0);

	/* then: the stored answer decides without asking */
	f.stored_consent = BGS_CONSENT_ALLOWED;
	d = assert_allowed (&f);
	assert_false (d.ask_consent);
	assert_false (d.store_answer);

	f.stored_consent = BGS_CONSENT_DENIED;
	assert_denied (&f, BGS_RESULT_DENIED_BY_USER, BGS_DENY_CONSENT_DENIED);

	/* a stored grant needs nobody to ask; a stored denial neither */
	f.consent_agent = FALSE;
	f.stored_consent = BGS_CONSENT_ALLOWED;
	assert_false (assert_allowed (&f).ask_consent);
	f.stored_consent = BGS_CONSENT_DENIED;
	assert_denied (&f, BGS_RESULT_DENIED_BY_USER, BGS_DENY_CONSENT_DENIED);
}

/* row: "The user has given the task permission": servicing every time */
static void
test_consent_servicing (void **state)
{
	static const BgsConsentState stored[] = { BGS_CONSENT_UNKNOWN, BGS_CONSENT_ALLOWED, BGS_CONSENT_DENIED };
	BgsInitiationFacts f = good_facts (BGS_TRIGGER_DEVICE_SERVICING);

	/* whatever was stored for device-use, servicing asks and never stores */
	for (guint i = 0; i < G_N_ELEMENTS (stored); i++) {
		BgsInitiationDecision pending, d;

		f.stored_consent = stored[i];
		pending = assert_allowed (&f);
		assert_true (pending.ask_consent);
		assert_false (pending.store_answer);

		d = bgs_policy_apply_consent (&pending, TRUE, TRUE);
		assert_int_equal (d.result, BGS_RESULT_ALLOWED);
		assert_false (d.store_answer);
		assert_int_equal (d.max_runtime, 1800 * SEC);
		d = bgs_policy_apply_consent (&pending, TRUE, FALSE);
		assert_int_equal (d.result, BGS_RESULT_DENIED_BY_USER);
		assert_int_equal (d.reason, BGS_DENY_CONSENT_DENIED);
		assert_false (d.store_answer);
	}
}

static void
test_consent_timeout (void **state)
{
	for (guint i = 0; i < G_N_ELEMENTS (device_kinds); i++) {
		BgsInitiationFacts f = good_facts (device_kinds[i]);
		BgsInitiationDecision pending, d;

		f.stored_consent = BGS_CONSENT_UNKNOWN;
		pending = assert_allowed (&f);
		assert_true (pending.ask_consent);
		/* the "allowed" argument means nothing without an answer */
		d = bgs_policy_apply_consent (&pending, FALSE, TRUE);
		assert_int_equal (d.result, BGS_RESULT_DENIED_BY_USER);
		assert_int_equal (d.reason, BGS_DENY_CONSENT_TIMEOUT);
		assert_false (d.store_answer);
		assert_false (d.ask_consent);
		assert_int_equal (d.max_runtime, 0);
	}
}

/* asking without an agent is a denial, never a silent allow */
static void
test_no_consent_agent (void **state)
{
	for (guint i = 0; i < G_N_ELEMENTS (device_kinds); i++) {
		BgsInitiationFacts f = good_facts (device_kinds[i]);

		f.stored_consent = BGS_CONSENT_UNKNOWN;
		assert_true (assert_allowed (&f).ask_consent);
		f.consent_agent = FALSE;
		assert_denied (&f, BGS_RESULT_DENIED_BY_SYSTEM, BGS_DENY_NO_CONSENT_AGENT);
	}
	/* servicing with a stored device-use grant still has to ask */
	BgsInitiationFacts f = good_facts (BGS_TRIGGER_DEVICE_SERVICING);
	f.stored_consent = BGS_CONSENT_ALLOWED;
	f.consent_agent = FALSE;
	assert_denied (&f, BGS_RESULT_DENIED_BY_SYSTEM, BGS_DENY_NO_CONSENT_AGENT);
}

/* row: "Time estimate provided by the app is less than 30 minutes" */
static void
test_estimate (void **state)
{
	BgsInitiationFacts f = good_facts (BGS_TRIGGER_DEVICE_SERVICING);

	f.estimate = 30 * MINUTE - 1;
	assert_allowed (&f);
	f.estimate = 0; /* unknown */
	assert_allowed (&f);
	f.estimate = 30 * MINUTE;
	assert_denied (&f, BGS_RESULT_DENIED_BY_SYSTEM, BGS_DENY_ESTIMATE_TOO_LONG);
	f.estimate = 2 * 60 * MINUTE;
	assert_denied (&f, BGS_RESULT_DENIED_BY_SYSTEM, BGS_DENY_ESTIMATE_TOO_LONG);

	/* does not apply to device-use */
	f = good_facts (BGS_TRIGGER_DEVICE_USE);
	f.estimate = 2 * 60 * MINUTE;
	assert_allowed (&f);

	/* the limit is config */
	limits.servicing_max_estimate = 2 * SEC;
	f = good_facts (BGS_TRIGGER_DEVICE_SERVICING);
	f.estimate = 2 * SEC - 1;
	assert_allowed (&f);
	f.estimate = 2 * SEC;
	assert_denied (&f, BGS_RESULT_DENIED_BY_SYSTEM, BGS_DENY_ESTIMATE_TOO_LONG);
}

/* row: "The app is specified as the privileged app for the device" */
static void
test_privileged (void **state)
{
	BgsInitiationFacts f = good_facts (BGS_TRIGGER_DEVICE_SERVICING);

	assert_allowed (&f);
	f.privileged = FALSE;
	assert_denied (&f, BGS_RESULT_DENIED_BY_SYSTEM, BGS_DENY_NOT_PRIVILEGED);

	/* does not apply to device-use */
	f = good_facts (BGS_TRIGGER_DEVICE_USE);
	f.privileged = FALSE;
	assert_allowed (&f);
}

/* row: "Computer has greater than 33% battery capacity remaining or is on AC power" */
static void
test_battery (void **state)
{
	BgsInitiationFacts f = good_facts (BGS_TRIGGER_DEVICE_SERVICING);

	f.on_battery = TRUE;
	f.battery_percent = 33.0;
	assert_denied (&f, BGS_RESULT_LOW_BATTERY, BGS_DENY_LOW_BATTERY);
	f.battery_percent = 5.0;
	assert_denied (&f, BGS_RESULT_LOW_BATTERY, BGS_DENY_LOW_BATTERY);
	f.battery_percent = NAN;
	assert_denied (&f, BGS_RESULT_LOW_BATTERY, BGS_DENY_LOW_BATTERY);
	f.battery_percent = 33.5;
	assert_allowed (&f);
	f.battery_percent = 34.0;
	assert_allowed (&f);

	/* on AC the level does not matter */
	f.on_battery = FALSE;
	f.battery_percent = 10.0;
	assert_allowed (&f);

	/* does not apply to device-use */
	f = good_facts (BGS_TRIGGER_DEVICE_USE);
	f.on_battery = TRUE;
	f.battery_percent = 10.0;
	assert_allowed (&f);

	/* the threshold is config */
	limits.min_battery_percent = 50.0;
	f = good_facts (BGS_TRIGGER_DEVICE_SERVICING);
	f.battery_percent = 50.0;
	assert_denied (&f, BGS_RESULT_LOW_BATTERY, BGS_DENY_LOW_BATTERY);
	f.battery_percent = 51.0;
	assert_allowed (&f);
}

/* row: "Only one device background task is running per operation type",
 * and "your app can run only one ... background task operation at a time" */
static void
test_busy (void **state)
{
	for (guint i = 0; i < G_N_ELEMENTS (device_kinds); i++) {
		BgsInitiationFacts f = good_facts (device_kinds[i]);

		assert_allowed (&f);
		f.app_busy = TRUE;
		assert_denied (&f, BGS_RESULT_DENIED_BY_SYSTEM, BGS_DENY_BUSY);
		f = good_facts (device_kinds[i]);
		f.device_busy = TRUE;
		assert_denied (&f, BGS_RESULT_DENIED_BY_SYSTEM, BGS_DENY_DEVICE_BUSY);
	}
}

/* the documented order: break everything, then repair one rule at a time
 * and watch the next reason in doc/policies.md win */
typedef struct {
	BgsTriggerResult result;
	BgsDenyReason reason;
	void (*repair) (BgsInitiationFacts *f);
	gboolean servicing_only;
} OrderStep;

static void fix_exists (BgsInitiationFacts *f) { f->entry_point_exists = TRUE; }
static void fix_declared (BgsInitiationFacts *f) { f->entry_point_declared = TRUE; }
static void fix_known (BgsInitiationFacts *f) { f->device_known = TRUE; }
static void fix_privileged (BgsInitiationFacts *f) { f->privileged = TRUE; }
static void fix_estimate (BgsInitiationFacts *f) { f->estimate = 0; }
static void fix_foreground (BgsInitiationFacts *f) { f->foreground = TRUE; }
static void fix_present (BgsInitiationFacts *f) { f->device_present = TRUE; }
static void fix_accessible (BgsInitiationFacts *f) { f->device_accessible = TRUE; }
static void fix_app_busy (BgsInitiationFacts *f) { f->app_busy = FALSE; }
static void fix_device_busy (BgsInitiationFacts *f) { f->device_busy = FALSE; }
static void fix_battery (BgsInitiationFacts *f) { f->on_battery = FALSE; }
static void fix_stored (BgsInitiationFacts *f) { f->stored_consent = BGS_CONSENT_UNKNOWN; }
static void fix_agent (BgsInitiationFacts *f) { f->consent_agent = TRUE; }

static const OrderStep order[] = {
	{ BGS_RESULT_DENIED_BY_SYSTEM, BGS_DENY_BAD_ENTRY_POINT, fix_exists, FALSE },
	{ BGS_RESULT_DENIED_BY_SYSTEM, BGS_DENY_NOT_REGISTERED, fix_declared, FALSE },
	{ BGS_RESULT_DENIED_BY_SYSTEM, BGS_DENY_UNKNOWN_DEVICE, fix_known, FALSE },
	{ BGS_RESULT_DENIED_BY_SYSTEM, BGS_DENY_NOT_PRIVILEGED, fix_privileged, TRUE },
	{ BGS_RESULT_DENIED_BY_SYSTEM, BGS_DENY_ESTIMATE_TOO_LONG, fix_estimate, TRUE },
	{ BGS_RESULT_DENIED_BY_SYSTEM, BGS_DENY_NOT_FOREGROUND, fix_foreground, FALSE },
	{ BGS_RESULT_DENIED_BY_SYSTEM, BGS_DENY_NOT_PRESENT, fix_present, FALSE },
	{ BGS_RESULT_DENIED_BY_SYSTEM, BGS_DENY_NOT_ACCESSIBLE, fix_accessible, FALSE },
	{ BGS_RESULT_DENIED_BY_SYSTEM, BGS_DENY_BUSY, fix_app_busy, FALSE },
	{ BGS_RESULT_DENIED_BY_SYSTEM, BGS_DENY_DEVICE_BUSY, fix_device_busy, FALSE },
	{ BGS_RESULT_LOW_BATTERY, BGS_DENY_LOW_BATTERY, fix_battery, TRUE },
	/* device-use only in effect: servicing ignores the stored answer */
	{ BGS_RESULT_DENIED_BY_USER, BGS_DENY_CONSENT_DENIED, fix_stored, FALSE },
	{ BGS_RESULT_DENIED_BY_SYSTEM, BGS_DENY_NO_CONSENT_AGENT, fix_agent, FALSE },
};

static void
test_order_of_checks (void **state)
{
	for (guint k = 0; k < G_N_ELEMENTS (device_kinds); k++) {
		BgsTriggerKind kind = device_kinds[k];
		gboolean servicing = kind == BGS_TRIGGER_DEVICE_SERVICING;
		BgsInitiationFacts f = { 0 };
		guint checked = 0;

		f.trigger = kind;
		f.estimate = 31 * MINUTE;
		f.app_busy = TRUE;
		f.device_busy = TRUE;
		f.on_battery = TRUE;
		f.battery_percent = 1.0;
		f.stored_consent = BGS_CONSENT_DENIED;

		for (guint i = 0; i < G_N_ELEMENTS (order); i++) {
			if (order[i].servicing_only && !servicing) {
				order[i].repair (&f);
				continue;
			}
			if (servicing && order[i].reason == BGS_DENY_CONSENT_DENIED) {
				order[i].repair (&f);
				continue;
			}
			assert_denied (&f, order[i].result, order[i].reason);
			order[i].repair (&f);
			checked++;
		}
		assert_int_equal (checked, servicing ? 12 : 10);
		assert_true (assert_allowed (&f).ask_consent);
	}
}

static void
test_apply_consent_needs_pending (void **state)
{
	BgsInitiationFacts f = good_facts (BGS_TRIGGER_DEVICE_USE);
	BgsInitiationDecision done, d;

	/* an already final decision passes through unchanged (with a critical) */
	done = assert_allowed (&f);
	assert_false (done.ask_consent);
	g_test_expect_message ("bgsync-policy", G_LOG_LEVEL_CRITICAL, "*ask_consent*");
	d = bgs_policy_apply_consent (&done, FALSE, FALSE);
	g_test_assert_expected_messages ();
	assert_int_equal (d.result, BGS_RESULT_ALLOWED);
	assert_false (d.ask_consent);
}

static void
test_conditions_hold (void **state)
{
	assert_true (bgs_policy_conditions_hold (BGS_CONDITION_NONE, BGS_CONDITION_NONE));
	assert_true (bgs_policy_conditions_hold (BGS_CONDITION_NONE, BGS_CONDITION_AC_POWER));
	assert_true (bgs_policy_conditions_hold (BGS_CONDITION_NETWORK,
						 BGS_CONDITION_NETWORK | BGS_CONDITION_AC_POWER));
	assert_false (bgs_policy_conditions_hold (BGS_CONDITION_NETWORK, BGS_CONDITION_AC_POWER));
	assert_false (bgs_policy_conditions_hold (BGS_CONDITION_NETWORK | BGS_CONDITION_USER_PRESENT,
						  BGS_CONDITION_NETWORK));
	assert_true (bgs_policy_conditions_hold (BGS_CONDITION_NETWORK | BGS_CONDITION_USER_PRESENT |
						 BGS_CONDITION_AC_POWER,
						 BGS_CONDITION_NETWORK | BGS_CONDITION_USER_PRESENT |
						 BGS_CONDITION_AC_POWER));
}

int
main (int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup (test_defaults, setup),
		cmocka_unit_test_setup (test_limits_check, setup),
		cmocka_unit_test_setup (test_all_good_allowed, setup),
		cmocka_unit_test_setup (test_foreground, setup),
		cmocka_unit_test_setup (test_present, setup),
		cmocka_unit_test_setup (test_accessible, setup),
		cmocka_unit_test_setup (test_entry_point, setup),
		cmocka_unit_test_setup (test_unknown_device, setup),
		cmocka_unit_test_setup (test_custom_is_not_a_device_trigger, setup),
		cmocka_unit_test_setup (test_consent_device_use, setup),
		cmocka_unit_test_setup (test_consent_servicing, setup),
		cmocka_unit_test_setup (test_consent_timeout, setup),
		cmocka_unit_test_setup (test_no_consent_agent, setup),
		cmocka_unit_test_setup (test_estimate, setup),
		cmocka_unit_test_setup (test_privileged, setup),
		cmocka_unit_test_setup (test_battery, setup),
		cmocka_unit_test_setup (test_busy, setup),
		cmocka_unit_test_setup (test_order_of_checks, setup),
		cmocka_unit_test_setup (test_apply_consent_needs_pending, setup),
		cmocka_unit_test_setup (test_conditions_hold, setup),
	};

	if (argc > 1)
		cmocka_set_test_filter (argv[1]);
	return cmocka_run_group_tests_name ("policy", tests, NULL, NULL);
}
