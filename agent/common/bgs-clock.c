/* bgs-clock.c: real (GLib main loop) and fake (hand-driven) clocks */
#include "bgs-clock.h"

typedef struct {
	guint id;
	gint64 deadline;
	guint64 order; /* ties fire in arming order */
	BgsClockFunc func;
	gpointer user_data;
	guint source_id; /* real clock only */
	BgsClock *clock;  /* real clock only, unowned */
} BgsClockTimer;

struct _BgsClock {
	gint ref_count;
	gboolean fake;
	gint64 now;        /* fake */
	gint64 wall_start; /* fake */
	gint64 mono_start; /* fake */
	guint next_id;
	guint64 next_order;
	GHashTable *timers; /* id -> BgsClockTimer */
};

static void
timer_free (gpointer data)
{
	BgsClockTimer *t = data;

	if (t->source_id != 0)
		g_source_remove (t->source_id);
	g_free (t);
}

static BgsClock *
clock_new (gboolean fake)
{
	BgsClock *clock = g_new0 (BgsClock, 1);

	clock->ref_count = 1;
	clock->fake = fake;
	clock->next_id = 1;
	clock->timers = g_hash_table_new_full (g_direct_hash, g_direct_equal, NULL, timer_free);
	return clock;
}

BgsClock *
bgs_clock_new_real (void)
{
	return clock_new (FALSE);
}

BgsClock *
bgs_clock_new_fake (gint64 start_usec, gint64 wall_usec)
{
	BgsClock *clock = clock_new (TRUE);

	clock->now = start_usec;
	clock->mono_start = start_usec;
	clock->wall_start = wall_usec;
	return clock;
}

BgsClock *
bgs_clock_ref (BgsClock *clock)
{
	g_return_val_if_fail (clock != NULL, NULL);
	g_atomic_int_inc (&clock->ref_count);
	return clock;
}

void
bgs_clock_unref (BgsClock *clock)
{
	if (clock == NULL)
		return;
	if (!g_atomic_int_dec_and_test (&clock->ref_count))
		return;
	g_hash_table_unref (clock->timers);
	g_free (clock);
}

gboolean
bgs_clock_is_fake (BgsClock *clock)
{
	return clock->fake;
}

gint64
bgs_clock_now (BgsClock *clock)
{
	return clock->fake ? clock->now : g_get_monotonic_time ();
}

gint64
bgs_clock_wall (BgsClock *clock)
{
	if (clock->fake)
		return clock->wall_start + (clock->now - clock->mono_start);
	return g_get_real_time ();
}

static gboolean
real_timer_cb (gpointer data)
{
	BgsClockTimer *t = data;
	BgsClock *clock = t->clock;
	BgsClockFunc func = t->func;
	gpointer user_data = t->user_data;

	/* GLib may wake a little early on coarse timers: re-arm for the rest */
	gint64 left = t->deadline - g_get_monotonic_time ();
	if (left > 0) {
		t->source_id = g_timeout_add_full (G_PRIORITY_DEFAULT,
						   (guint) ((left + 999) / 1000),
						   real_timer_cb, t, NULL);
		return G_SOURCE_REMOVE;
	}
	t->source_id = 0;
	g_hash_table_remove (clock->timers, GUINT_TO_POINTER (t->id));
	func (user_data);
	return G_SOURCE_REMOVE;
}

guint
bgs_clock_add_timeout (BgsClock *clock, gint64 delay_usec, BgsClockFunc func, gpointer user_data)
{
	BgsClockTimer *t;

	g_return_val_if_fail (clock != NULL, 0);
	g_return_val_if_fail (func != NULL, 0);
	if (delay_usec < 0)
		delay_usec = 0;

	t = g_new0 (BgsClockTimer, 1);
	t->id = clock->next_id++;
	if (clock->next_id == 0)
		clock->next_id = 1;
	t->deadline = bgs_clock_now (clock) + delay_usec;
	t->order = clock->next_order++;
	t->func = func;
	t->user_data = user_data;
	t->clock = clock;
	if (!clock->fake) {
		guint64 ms = ((guint64) delay_usec + 999) / 1000;
		t->source_id = g_timeout_add_full (G_PRIORITY_DEFAULT, (guint) MIN (ms, G_MAXUINT),
						   real_timer_cb, t, NULL);
	}
	g_hash_table_insert (clock->timers, GUINT_TO_POINTER (t->id), t);
	return t->id;
}

void
bgs_clock_remove (BgsClock *clock, guint id)
{
	if (clock == NULL || id == 0)
		return;
	g_hash_table_remove (clock->timers, GUINT_TO_POINTER (id));
}

guint
bgs_clock_pending (BgsClock *clock)
{
	return g_hash_table_size (clock->timers);
}

/* the earliest timer due at or before @limit, NULL if none */
static BgsClockTimer *
fake_next_due (BgsClock *clock, gint64 limit)
{
	GHashTableIter iter;
	gpointer value;
	BgsClockTimer *best = NULL;

	g_hash_table_iter_init (&iter, clock->timers);
	while (g_hash_table_iter_next (&iter, NULL, &value)) {
		BgsClockTimer *t = value;
		if (t->deadline > limit)
			continue;
		if (best == NULL || t->deadline < best->deadline ||
		    (t->deadline == best->deadline && t->order < best->order))
			best = t;
	}
	return best;
}

void
bgs_clock_fake_advance (BgsClock *clock, gint64 usec)
{
	gint64 target;
	BgsClockTimer *t;

	g_return_if_fail (clock->fake);
	g_return_if_fail (usec >= 0);
	target = clock->now + usec;
	while ((t = fake_next_due (clock, target)) != NULL) {
		BgsClockFunc func = t->func;
		gpointer user_data = t->user_data;

		if (t->deadline > clock->now)
			clock->now = t->deadline;
		g_hash_table_remove (clock->timers, GUINT_TO_POINTER (t->id));
		func (user_data);
	}
	clock->now = target;
}
