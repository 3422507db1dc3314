/* bgs-clock.h: an injectable clock with one-shot timers.
 *
 * The engine reads time and arms deadlines only through this, so tests use
 * the fake clock and move time by hand, and the real clock arms GLib
 * timeouts on the thread-default main context. Nothing here polls: a timer
 * exists only while someone armed it. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

typedef struct _BgsClock BgsClock;
typedef void (*BgsClockFunc) (gpointer user_data);

BgsClock *bgs_clock_new_real (void);
/* starts at @start_usec monotonic; the wall clock starts at @wall_usec */
BgsClock *bgs_clock_new_fake (gint64 start_usec, gint64 wall_usec);
BgsClock *bgs_clock_ref (BgsClock *clock);
void bgs_clock_unref (BgsClock *clock);

gboolean bgs_clock_is_fake (BgsClock *clock);
/* monotonic microseconds */
gint64 bgs_clock_now (BgsClock *clock);
/* unix time in microseconds, for records */
gint64 bgs_clock_wall (BgsClock *clock);

/* fires @func once, @delay_usec from now (clamped to >= 0); returns an id > 0 */
guint bgs_clock_add_timeout (BgsClock *clock, gint64 delay_usec, BgsClockFunc func,
			     gpointer user_data);
/* removes a timer that has not fired; 0 and unknown ids are ignored */
void bgs_clock_remove (BgsClock *clock, guint id);
/* number of armed timers: an idle agent has none */
guint bgs_clock_pending (BgsClock *clock);

/* fake clock only: moves time forward, firing due timers in deadline order
 * (timers armed by a callback fire too if they fall within the window) */
void bgs_clock_fake_advance (BgsClock *clock, gint64 usec);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (BgsClock, bgs_clock_unref)

#define BGS_USEC_PER_SEC G_GINT64_CONSTANT (1000000)

G_END_DECLS
