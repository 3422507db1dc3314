/* test-engine.c: seed 001 "Runtime policy checks" on a fake clock, plus the
 * reservation rules (one device task per app, one per device and kind).
 * Run one test: test-engine <name-glob>. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "bgs-engine.h"
#include "bgs-error.h"

#define SEC BGS_USEC_PER_SEC
#define MINUTE (60 * SEC)

typedef struct {
	gint64 task_id;
	BgsCancelReason reason;
} Canceled;

typedef struct {
	BgsClock *clock;
	BgsEngine *engine;
	GArray *canceled; /* of Canceled */
	/* optional: reserve this again from the "canceled" handler */
	const BgsInstanceInfo *rereserve;
	gboolean rereserved;
} Fixture;

static void
on_canceled (BgsEngine *engine, gint64 task_id, guint reason, gpointer user_data)
{
	Fixture *fx = user_data;
	Canceled c = { task_id, (BgsCancelReason) reason };

	/* "after the engine has forgotten it" */
	assert_false (bgs_engine_has_task (engine, task_id));
	g_array_append_val (fx->canceled, c);
	if (fx->rereserve != NULL && fx->rereserve->task_id != task_id) {
		g_autoptr(GError) error = NULL;
		fx->rereserved = bgs_engine_reserve (engine, fx->rereserve, &error);
		assert_null (error);
		fx->rereserve = NULL;
	}
}

static int
setup (void **state)
{
	Fixture *fx = g_new0 (Fixture, 1);

	fx->clock = bgs_clock_new_fake (1000 * SEC, G_GINT64_CONSTANT (1700000000) * SEC);
	fx->engine = bgs_engine_new (fx->clock, NULL);
	fx->canceled = g_array_new (FALSE, FALSE, sizeof (Canceled));
	g_signal_connect (fx->engine, "canceled", G_CALLBACK (on_canceled), fx);
	*state = fx;
	return 0;
}

static int
teardown (void **state)
{
	Fixture *fx = *state;

	g_object_unref (fx->engine);
	/* an engine going away leaves no timer behind */
	assert_int_equal (bgs_clock_pending (fx->clock), 0);
	bgs_clock_unref (fx->clock);
	g_array_unref (fx->canceled);
	g_free (fx);
	return 0;
}

static BgsInstanceInfo
info_for (gint64 id, BgsTriggerKind trigger, const char *app, const char *device)
{
	BgsInstanceInfo info = { 0 };

	info.task_id = id;
	info.trigger = trigger;
	info.uid = 1000;
	info.app_id = app;
	info.device = device;
	info.model = device != NULL ? "org.example.Watch" : NULL;
	info.owner = trigger != BGS_TRIGGER_CUSTOM ? ":1.42" : NULL;
	return info;
}

static void
reserve_ok (Fixture *fx, const BgsInstanceInfo *info)
{
	g_autoptr(GError) error = NULL;

	if (!bgs_engine_reserve (fx->engine, info, &error))
		fail_msg ("reserve %" G_GINT64_FORMAT ": %s", info->task_id, error->message);
}

static void
start_ok (Fixture *fx, const BgsInstanceInfo *info)
{
	g_autoptr(GError) error = NULL;

	reserve_ok (fx, info);
	if (!bgs_engine_start (fx->engine, info->task_id, &error))
		fail_msg ("start %" G_GINT64_FORMAT ": %s", info->task_id, error->message);
	assert_true (bgs_engine_is_running (fx->engine, info->task_id));
}

static void
assert_canceled_once (Fixture *fx, gint64 task_id, BgsCancelReason reason)
{
	guint seen = 0;

	for (guint i = 0; i < fx->canceled->len; i++) {
		Canceled *c = &g_array_index (fx->canceled, Canceled, i);
		if (c->task_id != task_id)
			continue;
		if (c->reason != reason)
			fail_msg ("task %" G_GINT64_FORMAT ": expected %s, got %s", task_id,
				  bgs_cancel_reason_to_string (reason),
				  bgs_cancel_reason_to_string (c->reason));
		seen++;
	}
	if (seen != 1)
		fail_msg ("task %" G_GINT64_FORMAT ": canceled %u times", task_id, seen);
	assert_false (bgs_engine_has_task (fx->engine, task_id));
	assert_false (bgs_engine_is_running (fx->engine, task_id));
}

/* I/O every @step until @total has passed */
static void
advance_with_io (Fixture *fx, gint64 task_id, gint64 total, gint64 step)
{
	while (total > 0) {
		gint64 d = MIN (step, total);
		bgs_clock_fake_advance (fx->clock, d);
		total -= d;
		bgs_engine_note_io (fx->engine, task_id, 20, 4);
	}
}

/* wall clock: device-use 10 min, still running at the limit - 1 us */
static void
test_wall_clock_device_use (void **state)
{
	Fixture *fx = *state;
	BgsInstanceInfo a = info_for (1, BGS_TRIGGER_DEVICE_USE, "org.example.App", "dev0");

	start_ok (fx, &a);
	advance_with_io (fx, 1, 10 * MINUTE - 4 * SEC, 4 * SEC);
	bgs_clock_fake_advance (fx->clock, 4 * SEC - 1);
	assert_true (bgs_engine_is_running (fx->engine, 1));
	assert_int_equal (fx->canceled->len, 0);
	bgs_clock_fake_advance (fx->clock, 1);
	assert_canceled_once (fx, 1, BGS_CANCEL_EXECUTION_TIME_EXCEEDED);
	assert_int_equal (bgs_engine_count_running (fx->engine), 0);
	assert_int_equal (bgs_clock_pending (fx->clock), 0);
}

/* wall clock: servicing 30 min, no I/O needed (the device may reboot) */
static void
test_wall_clock_servicing (void **state)
{
	Fixture *fx = *state;
	BgsInstanceInfo a = info_for (2, BGS_TRIGGER_DEVICE_SERVICING, "org.example.App", "dev0");

	start_ok (fx, &a);
	bgs_clock_fake_advance (fx->clock, 30 * MINUTE - 1);
	assert_true (bgs_engine_is_running (fx->engine, 2));
	assert_int_equal (fx->canceled->len, 0);
	bgs_clock_fake_advance (fx->clock, 1);
	assert_canceled_once (fx, 2, BGS_CANCEL_EXECUTION_TIME_EXCEEDED);
	assert_int_equal (bgs_clock_pending (fx->clock), 0);
}

/* the wall clock counts from start, not from the reservation (consent may take long) */
static void
test_wall_clock_from_start (void **state)
{
	Fixture *fx = *state;
	BgsInstanceInfo a = info_for (3, BGS_TRIGGER_DEVICE_SERVICING, "org.example.App", "dev0");

	reserve_ok (fx, &a);
	assert_int_equal (bgs_clock_pending (fx->clock), 0);
	assert_false (bgs_engine_is_running (fx->engine, 3));
	bgs_clock_fake_advance (fx->clock, 45 * MINUTE);
	assert_true (bgs_engine_has_task (fx->engine, 3));
	assert_true (bgs_engine_start (fx->engine, 3, NULL));
	bgs_clock_fake_advance (fx->clock, 30 * MINUTE - 1);
	assert_true (bgs_engine_is_running (fx->engine, 3));
	bgs_clock_fake_advance (fx->clock, 1);
	assert_canceled_once (fx, 3, BGS_CANCEL_EXECUTION_TIME_EXCEEDED);
}

static void
test_wall_clock_custom (void **state)
{
	Fixture *fx = *state;
	BgsInstanceInfo a = info_for (4, BGS_TRIGGER_CUSTOM, "org.example.App", NULL);

	start_ok (fx, &a);
	/* custom tasks have no idle rule: one timer only */
	assert_int_equal (bgs_clock_pending (fx->clock), 1);
	bgs_clock_fake_advance (fx->clock, 10 * MINUTE - 1);
	assert_true (bgs_engine_is_running (fx->engine, 4));
	bgs_clock_fake_advance (fx->clock, 1);
	assert_canceled_once (fx, 4, BGS_CANCEL_EXECUTION_TIME_EXCEEDED);
	assert_int_equal (bgs_clock_pending (fx->clock), 0);
}

/* limits are config: short ones apply to instances started afterwards */
static void
test_limits_are_config (void **state)
{
	Fixture *fx = *state;
	BgsPolicyLimits l;
	BgsInstanceInfo a = info_for (5, BGS_TRIGGER_DEVICE_SERVICING, "org.example.A", "dev0");
	BgsInstanceInfo b = info_for (6, BGS_TRIGGER_DEVICE_SERVICING, "org.example.B", "dev1");
	BgsInstanceInfo c = info_for (7, BGS_TRIGGER_DEVICE_USE, "org.example.C", "dev2");

	start_ok (fx, &a);
	bgs_policy_limits_init (&l);
	l.servicing_max_runtime = 2 * SEC;
	l.device_use_max_runtime = 3 * SEC;
	l.idle_timeout = SEC / 2;
	bgs_engine_set_limits (fx->engine, &l);
	assert_int_equal (bgs_engine_get_limits (fx->engine)->servicing_max_runtime, 2 * SEC);
	start_ok (fx, &b);
	start_ok (fx, &c);

	advance_with_io (fx, 7, 3 * SEC - 1, SEC / 4);
	assert_canceled_once (fx, 6, BGS_CANCEL_EXECUTION_TIME_EXCEEDED);
	assert_true (bgs_engine_is_running (fx->engine, 7));
	bgs_clock_fake_advance (fx->clock, 1);
	assert_canceled_once (fx, 7, BGS_CANCEL_EXECUTION_TIME_EXCEEDED);
	/* started before the change: keeps 30 minutes */
	assert_true (bgs_engine_is_running (fx->engine, 5));
	bgs_clock_fake_advance (fx->clock, 30 * MINUTE - 3 * SEC - 1);
	assert_true (bgs_engine_is_running (fx->engine, 5));
	bgs_clock_fake_advance (fx->clock, 1);
	assert_canceled_once (fx, 5, BGS_CANCEL_EXECUTION_TIME_EXCEEDED);
	assert_int_equal (bgs_clock_pending (fx->clock), 0);
}

/* range loss: device-use canceled condition-loss, servicing kept */
static void
test_range_loss (void **state)
{
	Fixture *fx = *state;
	BgsInstanceInfo use = info_for (10, BGS_TRIGGER_DEVICE_USE, "org.example.A", "dev0");
	BgsInstanceInfo svc = info_for (11, BGS_TRIGGER_DEVICE_SERVICING, "org.example.B", "dev0");
	BgsInstanceInfo other = info_for (12, BGS_TRIGGER_DEVICE_USE, "org.example.C", "dev1");

	start_ok (fx, &use);
	start_ok (fx, &svc);
	start_ok (fx, &other);

	/* coming back in range, or another device leaving, changes nothing */
	bgs_engine_device_presence (fx->engine, "dev0", TRUE);
	bgs_engine_device_presence (fx->engine, "dev9", FALSE);
	assert_int_equal (fx->canceled->len, 0);

	bgs_engine_device_presence (fx->engine, "dev0", FALSE);
	assert_canceled_once (fx, 10, BGS_CANCEL_CONDITION_LOSS);
	assert_int_equal (fx->canceled->len, 1);
	assert_true (bgs_engine_is_running (fx->engine, 11));
	assert_true (bgs_engine_is_running (fx->engine, 12));
	assert_int_equal (bgs_engine_count_running (fx->engine), 2);

	/* servicing survives the device rebooting out of range for minutes */
	bgs_clock_fake_advance (fx->clock, 10 * MINUTE);
	assert_true (bgs_engine_is_running (fx->engine, 11));
}

/* a device-use reservation waiting for consent goes when the device does */
static void
test_range_loss_during_consent (void **state)
{
	Fixture *fx = *state;
	BgsInstanceInfo use = info_for (13, BGS_TRIGGER_DEVICE_USE, "org.example.A", "dev0");

	reserve_ok (fx, &use);
	bgs_engine_device_presence (fx->engine, "dev0", FALSE);
	assert_canceled_once (fx, 13, BGS_CANCEL_CONDITION_LOSS);
}

/* I/O every < 5 s keeps device-use alive; 5 s of silence cancels idle-task */
static void
test_idle (void **state)
{
	Fixture *fx = *state;
	BgsInstanceInfo a = info_for (20, BGS_TRIGGER_DEVICE_USE, "org.example.App", "dev0");

	start_ok (fx, &a);
	assert_int_equal (bgs_clock_pending (fx->clock), 2);
	/* 9 minutes with I/O every 4.999 s */
	advance_with_io (fx, 20, 9 * MINUTE, 5 * SEC - 1);
	assert_true (bgs_engine_is_running (fx->engine, 20));
	assert_int_equal (fx->canceled->len, 0);
	/* lazy idle: many I/O calls, still one idle timer and one wall timer */
	assert_int_equal (bgs_clock_pending (fx->clock), 2);

	/* then silence */
	bgs_clock_fake_advance (fx->clock, 5 * SEC - 1);
	assert_true (bgs_engine_is_running (fx->engine, 20));
	bgs_clock_fake_advance (fx->clock, 1);
	assert_canceled_once (fx, 20, BGS_CANCEL_IDLE_TASK);
	assert_int_equal (bgs_clock_pending (fx->clock), 0);
}

/* no I/O at all after start: canceled 5 s after start */
static void
test_idle_from_start (void **state)
{
	Fixture *fx = *state;
	BgsInstanceInfo a = info_for (21, BGS_TRIGGER_DEVICE_USE, "org.example.App", "dev0");

	start_ok (fx, &a);
	bgs_clock_fake_advance (fx->clock, 5 * SEC - 1);
	assert_true (bgs_engine_is_running (fx->engine, 21));
	bgs_clock_fake_advance (fx->clock, 1);
	assert_canceled_once (fx, 21, BGS_CANCEL_IDLE_TASK);
}

static void
probe_cb (gpointer user_data)
{
	fail_msg ("probe timer fired");
}

/* a burst of I/O does not arm timers: the idle timer rearms itself */
static void
test_idle_lazy_timer (void **state)
{
	Fixture *fx = *state;
	BgsInstanceInfo a = info_for (22, BGS_TRIGGER_DEVICE_USE, "org.example.App", "dev0");
	guint64 in = 0, out = 0;

	guint probe_before, probe_after;

	start_ok (fx, &a);
	/* timer ids count every arming: probe them around the burst */
	probe_before = bgs_clock_add_timeout (fx->clock, 0, probe_cb, NULL);
	bgs_clock_remove (fx->clock, probe_before);
	for (guint i = 0; i < 1000; i++) {
		bgs_clock_fake_advance (fx->clock, 1000);
		bgs_engine_note_io (fx->engine, 22, 1, 2);
	}
	probe_after = bgs_clock_add_timeout (fx->clock, 0, probe_cb, NULL);
	bgs_clock_remove (fx->clock, probe_after);
	assert_int_equal (probe_after - probe_before, 1);
	assert_int_equal (bgs_clock_pending (fx->clock), 2);
	bgs_engine_get_bytes (fx->engine, 22, &in, &out);
	assert_int_equal (in, 1000);
	assert_int_equal (out, 2000);
	/* last I/O at start + 1 s: the timer at start + 5 s rearms to + 6 s */
	bgs_clock_fake_advance (fx->clock, 4 * SEC);
	assert_true (bgs_engine_is_running (fx->engine, 22));
	assert_int_equal (bgs_clock_pending (fx->clock), 2);
	bgs_clock_fake_advance (fx->clock, SEC - 1);
	assert_true (bgs_engine_is_running (fx->engine, 22));
	bgs_clock_fake_advance (fx->clock, 1);
	assert_canceled_once (fx, 22, BGS_CANCEL_IDLE_TASK);
}

/* servicing is never idle-canceled */
static void
test_servicing_never_idle (void **state)
{
	Fixture *fx = *state;
	BgsInstanceInfo a = info_for (23, BGS_TRIGGER_DEVICE_SERVICING, "org.example.App", "dev0");

	start_ok (fx, &a);
	assert_int_equal (bgs_clock_pending (fx->clock), 1);
	bgs_clock_fake_advance (fx->clock, 29 * MINUTE);
	assert_true (bgs_engine_is_running (fx->engine, 23));
	assert_int_equal (fx->canceled->len, 0);
}

/* wall and idle due at the same instant: still one signal */
static void
test_cancel_exactly_once (void **state)
{
	Fixture *fx = *state;
	BgsPolicyLimits l;
	BgsInstanceInfo a = info_for (24, BGS_TRIGGER_DEVICE_USE, "org.example.App", "dev0");

	bgs_policy_limits_init (&l);
	l.device_use_max_runtime = 5 * SEC;
	l.idle_timeout = 5 * SEC;
	bgs_engine_set_limits (fx->engine, &l);
	start_ok (fx, &a);
	bgs_clock_fake_advance (fx->clock, 10 * SEC);
	/* the wall timer was armed first, so it wins the tie */
	assert_canceled_once (fx, 24, BGS_CANCEL_EXECUTION_TIME_EXCEEDED);
	assert_int_equal (fx->canceled->len, 1);
	/* later events about it are ignored */
	bgs_engine_cancel (fx->engine, 24, BGS_CANCEL_ABORT);
	bgs_engine_device_removed (fx->engine, "dev0");
	bgs_engine_owner_vanished (fx->engine, ":1.42");
	assert_int_equal (fx->canceled->len, 1);
	assert_int_equal (bgs_clock_pending (fx->clock), 0);
}

/* row: "App has not canceled the task" */
static void
test_app_cancel (void **state)
{
	Fixture *fx = *state;
	BgsInstanceInfo a = info_for (30, BGS_TRIGGER_DEVICE_USE, "org.example.A", "dev0");
	BgsInstanceInfo b = info_for (31, BGS_TRIGGER_DEVICE_SERVICING, "org.example.B", "dev1");

	start_ok (fx, &a);
	start_ok (fx, &b);
	bgs_engine_cancel (fx->engine, 999, BGS_CANCEL_ABORT);
	assert_int_equal (fx->canceled->len, 0);
	bgs_engine_cancel (fx->engine, 30, BGS_CANCEL_ABORT);
	assert_canceled_once (fx, 30, BGS_CANCEL_ABORT);
	assert_true (bgs_engine_is_running (fx->engine, 31));
	bgs_engine_cancel (fx->engine, 31, BGS_CANCEL_ABORT);
	assert_canceled_once (fx, 31, BGS_CANCEL_ABORT);
	assert_int_equal (bgs_clock_pending (fx->clock), 0);

	/* Cancel while the request still waits for consent */
	BgsInstanceInfo c = info_for (32, BGS_TRIGGER_DEVICE_USE, "org.example.A", "dev0");
	reserve_ok (fx, &c);
	bgs_engine_cancel (fx->engine, 32, BGS_CANCEL_ABORT);
	assert_canceled_once (fx, 32, BGS_CANCEL_ABORT);
	assert_false (bgs_engine_app_busy (fx->engine, 1000, "org.example.A"));
}

/* random events on many tasks: every task ends exactly once (finished or
 * one signal), timers always match what runs, none are left at the end */
static void
test_random_events (void **state)
{
	Fixture *fx = *state;
	static const char *const devices[] = { "dev0", "dev1", "dev2", "dev3" };
	static const char *const apps[] = { "org.example.A", "org.example.B", "org.example.C",
					    "org.example.D", "org.example.E" };
	static const char *const owners[] = { ":1.1", ":1.2", ":1.3" };
	g_autoptr(GRand) rand = g_rand_new_with_seed (20261121);
	g_autoptr(GHashTable) finished = g_hash_table_new_full (g_int64_hash, g_int64_equal, g_free, NULL);
	g_autoptr(GArray) ids = g_array_new (FALSE, FALSE, sizeof (gint64));
	gint64 next_id = 1000;

	for (guint step = 0; step < 5000; step++) {
		guint op = g_rand_int_range (rand, 0, 12);
		gint64 pick = ids->len > 0 ? g_array_index (ids, gint64, g_rand_int_range (rand, 0, ids->len)) : 0;
		const char *dev = devices[g_rand_int_range (rand, 0, G_N_ELEMENTS (devices))];
		const char *app = apps[g_rand_int_range (rand, 0, G_N_ELEMENTS (apps))];

		switch (op) {
		case 0: case 1: case 2: {
			BgsInstanceInfo info = info_for (next_id, (BgsTriggerKind) g_rand_int_range (rand, 0, 3),
							 app, dev);
			if (info.trigger == BGS_TRIGGER_CUSTOM)
				info.device = info.model = NULL;
			else
				info.owner = owners[g_rand_int_range (rand, 0, G_N_ELEMENTS (owners))];
			if (bgs_engine_reserve (fx->engine, &info, NULL)) {
				g_array_append_val (ids, next_id);
				next_id++;
			}
			break;
		}
		case 3: case 4:
			bgs_engine_start (fx->engine, pick, NULL);
			break;
		case 5:
			bgs_engine_note_io (fx->engine, pick, 1, 1);
			break;
		case 6:
			bgs_clock_fake_advance (fx->clock, g_rand_int_range (rand, 0, 8 * SEC));
			break;
		case 7:
			bgs_engine_device_presence (fx->engine, dev, g_rand_boolean (rand));
			break;
		case 8:
			if (bgs_engine_has_task (fx->engine, pick) && g_rand_boolean (rand)) {
				bgs_engine_finish (fx->engine, pick);
				gint64 *key = g_new (gint64, 1);
				*key = pick;
				g_hash_table_add (finished, key);
			}
			break;
		case 9:
			bgs_engine_cancel (fx->engine, pick, BGS_CANCEL_ABORT);
			break;
		case 10:
			if (g_rand_int_range (rand, 0, 10) == 0)
				bgs_engine_device_removed (fx->engine, dev);
			else
				bgs_engine_owner_vanished (fx->engine, owners[g_rand_int_range (rand, 0, 3)]);
			break;
		case 11:
			bgs_engine_consent_revoked (fx->engine, 1000, app, NULL);
			break;
		}

		/* timers match the running instances */
		guint expect = 0;
		for (guint i = 0; i < ids->len; i++) {
			gint64 id = g_array_index (ids, gint64, i);
			if (bgs_engine_is_running (fx->engine, id))
				expect++;
		}
		assert_true (bgs_clock_pending (fx->clock) >= expect);
		assert_true (bgs_clock_pending (fx->clock) <= 2 * expect);
		assert_int_equal (bgs_engine_count_running (fx->engine), expect);
	}
	bgs_engine_shutdown (fx->engine);
	assert_int_equal (bgs_clock_pending (fx->clock), 0);
	assert_true (ids->len > 100);
	assert_true (fx->canceled->len > 100);

	/* every task ended exactly once */
	for (guint i = 0; i < ids->len; i++) {
		gint64 id = g_array_index (ids, gint64, i);
		guint signals = 0;
		for (guint j = 0; j < fx->canceled->len; j++)
			signals += g_array_index (fx->canceled, Canceled, j).task_id == id;
		assert_int_equal (signals + (g_hash_table_contains (finished, &id) ? 1 : 0), 1);
	}
}

/* row: "App has not exited": its bus name vanished */
static void
test_app_exit (void **state)
{
	Fixture *fx = *state;
	BgsInstanceInfo a = info_for (40, BGS_TRIGGER_DEVICE_USE, "org.example.A", "dev0");
	BgsInstanceInfo b = info_for (41, BGS_TRIGGER_DEVICE_SERVICING, "org.example.B", "dev1");
	BgsInstanceInfo c = info_for (42, BGS_TRIGGER_DEVICE_USE, "org.example.C", "dev2");
	BgsInstanceInfo d = info_for (43, BGS_TRIGGER_CUSTOM, "org.example.A", NULL);

	b.owner = ":1.43";
	c.owner = ":1.44";
	start_ok (fx, &a);
	start_ok (fx, &b);
	reserve_ok (fx, &c); /* still waiting for consent */
	start_ok (fx, &d);   /* custom: no owner, outlives the app */

	bgs_engine_owner_vanished (fx->engine, ":1.99");
	assert_int_equal (fx->canceled->len, 0);
	bgs_engine_owner_vanished (fx->engine, ":1.42");
	assert_canceled_once (fx, 40, BGS_CANCEL_TERMINATING);
	assert_true (bgs_engine_is_running (fx->engine, 41));
	bgs_engine_owner_vanished (fx->engine, ":1.43");
	assert_canceled_once (fx, 41, BGS_CANCEL_TERMINATING);
	/* a reservation canceled before start is signalled too */
	bgs_engine_owner_vanished (fx->engine, ":1.44");
	assert_canceled_once (fx, 42, BGS_CANCEL_TERMINATING);
	assert_true (bgs_engine_is_running (fx->engine, 43));
	assert_int_equal (fx->canceled->len, 3);
}

/* consent revoked in settings: device-use of that app (and model) -> uninstall */
static void
test_consent_revoked (void **state)
{
	Fixture *fx = *state;
	BgsInstanceInfo a = info_for (50, BGS_TRIGGER_DEVICE_USE, "org.example.A", "dev0");
	BgsInstanceInfo b = info_for (51, BGS_TRIGGER_DEVICE_USE, "org.example.B", "dev1");
	BgsInstanceInfo c = info_for (52, BGS_TRIGGER_DEVICE_SERVICING, "org.example.C", "dev2");
	BgsInstanceInfo d = info_for (53, BGS_TRIGGER_DEVICE_USE, "org.example.A", "dev3");

	b.model = "org.example.Band";
	c.app_id = "org.example.B";
	c.uid = 1001;
	d.uid = 1001; /* same app, other user */
	start_ok (fx, &a);
	start_ok (fx, &b);
	start_ok (fx, &c);
	start_ok (fx, &d);

	/* another model of the same app: nothing */
	bgs_engine_consent_revoked (fx->engine, 1000, "org.example.A", "org.example.Band");
	assert_int_equal (fx->canceled->len, 0);
	bgs_engine_consent_revoked (fx->engine, 1000, "org.example.A", "org.example.Watch");
	assert_canceled_once (fx, 50, BGS_CANCEL_UNINSTALL);
	assert_true (bgs_engine_is_running (fx->engine, 53));
	/* all models; servicing was consented per run, it keeps going */
	bgs_engine_consent_revoked (fx->engine, 1000, "org.example.B", NULL);
	assert_canceled_once (fx, 51, BGS_CANCEL_UNINSTALL);
	bgs_engine_consent_revoked (fx->engine, 1001, "org.example.B", NULL);
	assert_true (bgs_engine_is_running (fx->engine, 52));
	assert_int_equal (fx->canceled->len, 2);
}

/* manifest removed: every task of the app, any kind, any user */
static void
test_app_removed (void **state)
{
	Fixture *fx = *state;
	BgsInstanceInfo a = info_for (60, BGS_TRIGGER_DEVICE_USE, "org.example.A", "dev0");
	BgsInstanceInfo b = info_for (61, BGS_TRIGGER_DEVICE_SERVICING, "org.example.A", "dev1");
	BgsInstanceInfo c = info_for (62, BGS_TRIGGER_CUSTOM, "org.example.A", NULL);
	BgsInstanceInfo d = info_for (63, BGS_TRIGGER_DEVICE_USE, "org.example.B", "dev2");

	b.uid = 1001;
	start_ok (fx, &a);
	start_ok (fx, &b);
	start_ok (fx, &c);
	start_ok (fx, &d);
	bgs_engine_app_removed (fx->engine, "org.example.A");
	assert_canceled_once (fx, 60, BGS_CANCEL_UNINSTALL);
	assert_canceled_once (fx, 61, BGS_CANCEL_UNINSTALL);
	assert_canceled_once (fx, 62, BGS_CANCEL_UNINSTALL);
	assert_true (bgs_engine_is_running (fx->engine, 63));
}

/* adapter gone / device removed / unpaired: resource-revocation, both kinds */
static void
test_device_removed (void **state)
{
	Fixture *fx = *state;
	BgsInstanceInfo a = info_for (70, BGS_TRIGGER_DEVICE_USE, "org.example.A", "dev0");
	BgsInstanceInfo b = info_for (71, BGS_TRIGGER_DEVICE_SERVICING, "org.example.B", "dev0");
	BgsInstanceInfo c = info_for (72, BGS_TRIGGER_DEVICE_SERVICING, "org.example.C", "dev1");

	start_ok (fx, &a);
	start_ok (fx, &b);
	start_ok (fx, &c);
	bgs_engine_device_removed (fx->engine, "dev0");
	assert_canceled_once (fx, 70, BGS_CANCEL_RESOURCE_REVOCATION);
	assert_canceled_once (fx, 71, BGS_CANCEL_RESOURCE_REVOCATION);
	assert_true (bgs_engine_is_running (fx->engine, 72));
	assert_int_equal (fx->canceled->len, 2);
}

static void
test_shutdown (void **state)
{
	Fixture *fx = *state;
	BgsInstanceInfo a = info_for (80, BGS_TRIGGER_DEVICE_USE, "org.example.A", "dev0");
	BgsInstanceInfo b = info_for (81, BGS_TRIGGER_DEVICE_SERVICING, "org.example.B", "dev1");
	BgsInstanceInfo c = info_for (82, BGS_TRIGGER_CUSTOM, "org.example.C", NULL);
	BgsInstanceInfo d = info_for (83, BGS_TRIGGER_DEVICE_USE, "org.example.D", "dev2");
	BgsInstanceInfo e = info_for (84, BGS_TRIGGER_DEVICE_USE, "org.example.E", "dev3");
	g_autoptr(GError) error = NULL;

	start_ok (fx, &a);
	start_ok (fx, &b);
	start_ok (fx, &c);
	reserve_ok (fx, &d);
	assert_int_equal (bgs_clock_pending (fx->clock), 4);
	bgs_engine_shutdown (fx->engine);
	assert_canceled_once (fx, 80, BGS_CANCEL_TERMINATING);
	assert_canceled_once (fx, 81, BGS_CANCEL_TERMINATING);
	assert_canceled_once (fx, 82, BGS_CANCEL_TERMINATING);
	assert_canceled_once (fx, 83, BGS_CANCEL_TERMINATING);
	assert_int_equal (bgs_engine_count_running (fx->engine), 0);
	assert_int_equal (bgs_clock_pending (fx->clock), 0);
	assert_false (bgs_engine_reserve (fx->engine, &e, &error));
	assert_true (g_error_matches (error, BGS_ERROR, BGS_ERROR_FAILED));
}

/* finish: no signal, no timers left; an idle agent has no timers */
static void
test_finish_leaves_no_timers (void **state)
{
	Fixture *fx = *state;
	BgsInstanceInfo a = info_for (90, BGS_TRIGGER_DEVICE_USE, "org.example.A", "dev0");
	BgsInstanceInfo b = info_for (91, BGS_TRIGGER_DEVICE_SERVICING, "org.example.B", "dev1");

	assert_int_equal (bgs_clock_pending (fx->clock), 0);
	start_ok (fx, &a);
	start_ok (fx, &b);
	assert_int_equal (bgs_clock_pending (fx->clock), 3);
	bgs_engine_note_io (fx->engine, 90, 5, 5);
	bgs_engine_finish (fx->engine, 90);
	bgs_engine_finish (fx->engine, 91);
	bgs_engine_finish (fx->engine, 91);
	assert_int_equal (fx->canceled->len, 0);
	assert_int_equal (bgs_engine_count_running (fx->engine), 0);
	assert_int_equal (bgs_clock_pending (fx->clock), 0);
	/* time passing with nothing running fires nothing */
	bgs_clock_fake_advance (fx->clock, 60 * MINUTE);
	assert_int_equal (fx->canceled->len, 0);
	/* and the app may start again */
	start_ok (fx, &a);
}

/* busy while a reservation waits for consent; release frees it */
static void
test_busy_reservations (void **state)
{
	Fixture *fx = *state;
	BgsInstanceInfo a = info_for (100, BGS_TRIGGER_DEVICE_USE, "org.example.A", "dev0");
	BgsInstanceInfo a2 = info_for (101, BGS_TRIGGER_DEVICE_SERVICING, "org.example.A", "dev1");
	BgsInstanceInfo b = info_for (102, BGS_TRIGGER_DEVICE_USE, "org.example.B", "dev0");
	BgsInstanceInfo b_svc = info_for (103, BGS_TRIGGER_DEVICE_SERVICING, "org.example.B", "dev0");
	BgsInstanceInfo a_other_user = info_for (104, BGS_TRIGGER_DEVICE_USE, "org.example.A", "dev5");
	BgsInstanceInfo a_custom = info_for (105, BGS_TRIGGER_CUSTOM, "org.example.A", NULL);
	BgsInstanceInfo a_custom2 = info_for (106, BGS_TRIGGER_CUSTOM, "org.example.A", NULL);
	g_autoptr(GError) error = NULL;

	a_other_user.uid = 1001;
	assert_false (bgs_engine_app_busy (fx->engine, 1000, "org.example.A"));
	assert_false (bgs_engine_device_busy (fx->engine, "dev0", BGS_TRIGGER_DEVICE_USE));
	reserve_ok (fx, &a);
	assert_false (bgs_engine_is_running (fx->engine, 100));
	assert_true (bgs_engine_app_busy (fx->engine, 1000, "org.example.A"));
	assert_true (bgs_engine_device_busy (fx->engine, "dev0", BGS_TRIGGER_DEVICE_USE));
	assert_false (bgs_engine_device_busy (fx->engine, "dev0", BGS_TRIGGER_DEVICE_SERVICING));

	/* one device task per app, whatever the kind or device */
	assert_false (bgs_engine_reserve (fx->engine, &a2, &error));
	assert_true (g_error_matches (error, BGS_ERROR, BGS_ERROR_BUSY));
	g_clear_error (&error);
	/* one task per device and operation type */
	assert_false (bgs_engine_reserve (fx->engine, &b, &error));
	assert_true (g_error_matches (error, BGS_ERROR, BGS_ERROR_BUSY));
	g_clear_error (&error);
	/* another operation type on the same device is fine */
	reserve_ok (fx, &b_svc);
	/* same app id for another user is another app instance */
	reserve_ok (fx, &a_other_user);
	/* custom tasks do not count */
	reserve_ok (fx, &a_custom);
	reserve_ok (fx, &a_custom2);

	/* still busy once running */
	assert_true (bgs_engine_start (fx->engine, 100, NULL));
	assert_false (bgs_engine_reserve (fx->engine, &a2, NULL));

	/* release frees both the app and the device, without a signal */
	bgs_engine_release (fx->engine, 100);
	bgs_engine_release (fx->engine, 103);
	assert_false (bgs_engine_app_busy (fx->engine, 1000, "org.example.A"));
	reserve_ok (fx, &a2);
	reserve_ok (fx, &b);
	assert_int_equal (fx->canceled->len, 0);
	bgs_engine_release (fx->engine, 12345);
}

/* a "canceled" handler may reserve again at once */
static void
test_reserve_from_handler (void **state)
{
	Fixture *fx = *state;
	BgsInstanceInfo a = info_for (110, BGS_TRIGGER_DEVICE_USE, "org.example.A", "dev0");
	BgsInstanceInfo again = info_for (111, BGS_TRIGGER_DEVICE_USE, "org.example.A", "dev0");

	again.owner = ":1.50";
	start_ok (fx, &a);
	fx->rereserve = &again;
	bgs_engine_owner_vanished (fx->engine, ":1.42");
	assert_canceled_once (fx, 110, BGS_CANCEL_TERMINATING);
	assert_true (fx->rereserved);
	/* the new reservation was not swept up by the same event */
	assert_true (bgs_engine_has_task (fx->engine, 111));
	assert_int_equal (fx->canceled->len, 1);
}

static void
test_reserve_errors (void **state)
{
	Fixture *fx = *state;
	BgsInstanceInfo a = info_for (120, BGS_TRIGGER_DEVICE_USE, "org.example.A", "dev0");
	BgsInstanceInfo dup = info_for (120, BGS_TRIGGER_CUSTOM, "org.example.B", NULL);
	BgsInstanceInfo nodev = info_for (121, BGS_TRIGGER_DEVICE_USE, "org.example.C", NULL);
	BgsInstanceInfo noapp = info_for (122, BGS_TRIGGER_CUSTOM, NULL, NULL);
	BgsInstanceInfo badkind = info_for (123, (BgsTriggerKind) 9, "org.example.D", "dev1");
	g_autoptr(GError) error = NULL;

	reserve_ok (fx, &a);
	assert_false (bgs_engine_reserve (fx->engine, &dup, &error));
	assert_true (g_error_matches (error, BGS_ERROR, BGS_ERROR_ALREADY_EXISTS));
	g_clear_error (&error);
	assert_false (bgs_engine_reserve (fx->engine, &nodev, &error));
	assert_true (g_error_matches (error, BGS_ERROR, BGS_ERROR_INVALID_ARGS));
	g_clear_error (&error);
	assert_false (bgs_engine_reserve (fx->engine, &noapp, &error));
	assert_true (g_error_matches (error, BGS_ERROR, BGS_ERROR_INVALID_ARGS));
	g_clear_error (&error);
	assert_false (bgs_engine_reserve (fx->engine, &badkind, &error));
	assert_true (g_error_matches (error, BGS_ERROR, BGS_ERROR_INVALID_ARGS));
	g_clear_error (&error);

	assert_false (bgs_engine_start (fx->engine, 999, &error));
	assert_true (g_error_matches (error, BGS_ERROR, BGS_ERROR_NOT_FOUND));
	g_clear_error (&error);
	assert_true (bgs_engine_start (fx->engine, 120, NULL));
	assert_false (bgs_engine_start (fx->engine, 120, &error));
	assert_true (g_error_matches (error, BGS_ERROR, BGS_ERROR_FAILED));
	/* a second start did not arm more timers */
	assert_int_equal (bgs_clock_pending (fx->clock), 2);
}

/* strings are copied: the caller's buffers may go away */
static void
test_strings_copied (void **state)
{
	Fixture *fx = *state;
	g_autofree char *app = g_strdup ("org.example.A");
	g_autofree char *dev = g_strdup ("dev0");
	g_autofree char *owner = g_strdup (":1.77");
	BgsInstanceInfo a = info_for (130, BGS_TRIGGER_DEVICE_USE, app, dev);

	a.owner = owner;
	start_ok (fx, &a);
	memset (app, 'x', strlen (app));
	memset (dev, 'x', strlen (dev));
	memset (owner, 'x', strlen (owner));
	assert_true (bgs_engine_app_busy (fx->engine, 1000, "org.example.A"));
	assert_true (bgs_engine_device_busy (fx->engine, "dev0", BGS_TRIGGER_DEVICE_USE));
	bgs_engine_owner_vanished (fx->engine, ":1.77");
	assert_canceled_once (fx, 130, BGS_CANCEL_TERMINATING);
}

static void
test_bytes (void **state)
{
	Fixture *fx = *state;
	BgsInstanceInfo a = info_for (140, BGS_TRIGGER_DEVICE_SERVICING, "org.example.A", "dev0");
	guint64 in = 1, out = 1;

	bgs_engine_get_bytes (fx->engine, 140, &in, &out);
	assert_int_equal (in, 0);
	assert_int_equal (out, 0);
	start_ok (fx, &a);
	bgs_engine_note_io (fx->engine, 140, 100, 0);
	bgs_engine_note_io (fx->engine, 140, 0, 7);
	bgs_engine_note_io (fx->engine, 999, 5, 5);
	bgs_engine_get_bytes (fx->engine, 140, &in, &out);
	assert_int_equal (in, 100);
	assert_int_equal (out, 7);
	/* saturates instead of wrapping */
	bgs_engine_note_io (fx->engine, 140, G_MAXUINT64, 0);
	bgs_engine_get_bytes (fx->engine, 140, &in, NULL);
	assert_true (in == G_MAXUINT64);
}

/* the real clock: the same engine on a GLib main loop, short limits */
static void
quit_loop (BgsEngine *engine, gint64 task_id, guint reason, gpointer user_data)
{
	g_main_loop_quit (user_data);
}

static gboolean
loop_timeout (gpointer user_data)
{
	fail_msg ("no cancellation within 5 s");
	return G_SOURCE_REMOVE;
}

static void
test_real_clock (void **state)
{
	g_autoptr(BgsClock) clock = bgs_clock_new_real ();
	g_autoptr(GMainLoop) loop = g_main_loop_new (NULL, FALSE);
	BgsPolicyLimits l;
	BgsEngine *engine;
	BgsInstanceInfo a = info_for (150, BGS_TRIGGER_DEVICE_USE, "org.example.A", "dev0");
	guint guard;

	bgs_policy_limits_init (&l);
	l.idle_timeout = SEC / 20;
	engine = bgs_engine_new (clock, &l);
	g_signal_connect (engine, "canceled", G_CALLBACK (quit_loop), loop);
	assert_true (bgs_engine_reserve (engine, &a, NULL));
	assert_true (bgs_engine_start (engine, 150, NULL));
	guard = g_timeout_add_seconds (5, loop_timeout, NULL);
	g_main_loop_run (loop);
	g_source_remove (guard);
	assert_false (bgs_engine_has_task (engine, 150));
	assert_int_equal (bgs_clock_pending (clock), 0);
	g_object_unref (engine);
}

int
main (int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown (test_wall_clock_device_use, setup, teardown),
		cmocka_unit_test_setup_teardown (test_wall_clock_servicing, setup, teardown),
		cmocka_unit_test_setup_teardown (test_wall_clock_from_start, setup, teardown),
		cmocka_unit_test_setup_teardown (test_wall_clock_custom, setup, teardown),
		cmocka_unit_test_setup_teardown (test_limits_are_config, setup, teardown),
		cmocka_unit_test_setup_teardown (test_range_loss, setup, teardown),
		cmocka_unit_test_setup_teardown (test_range_loss_during_consent, setup, teardown),
		cmocka_unit_test_setup_teardown (test_idle, setup, teardown),
		cmocka_unit_test_setup_teardown (test_idle_from_start, setup, teardown),
		cmocka_unit_test_setup_teardown (test_idle_lazy_timer, setup, teardown),
		cmocka_unit_test_setup_teardown (test_servicing_never_idle, setup, teardown),
		cmocka_unit_test_setup_teardown (test_cancel_exactly_once, setup, teardown),
		cmocka_unit_test_setup_teardown (test_app_cancel, setup, teardown),
		cmocka_unit_test_setup_teardown (test_app_exit, setup, teardown),
		cmocka_unit_test_setup_teardown (test_random_events, setup, teardown),
		cmocka_unit_test_setup_teardown (test_consent_revoked, setup, teardown),
		cmocka_unit_test_setup_teardown (test_app_removed, setup, teardown),
		cmocka_unit_test_setup_teardown (test_device_removed, setup, teardown),
		cmocka_unit_test_setup_teardown (test_shutdown, setup, teardown),
		cmocka_unit_test_setup_teardown (test_finish_leaves_no_timers, setup, teardown),
		cmocka_unit_test_setup_teardown (test_busy_reservations, setup, teardown),
		cmocka_unit_test_setup_teardown (test_reserve_from_handler, setup, teardown),
		cmocka_unit_test_setup_teardown (test_reserve_errors, setup, teardown),
		cmocka_unit_test_setup_teardown (test_strings_copied, setup, teardown),
		cmocka_unit_test_setup_teardown (test_bytes, setup, teardown),
		cmocka_unit_test (test_real_clock),
	};

	if (argc > 1)
		cmocka_set_test_filter (argv[1]);
	return cmocka_run_group_tests_name ("policy-engine", tests, NULL, NULL);
}
