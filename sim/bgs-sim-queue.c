/* bgs-sim-queue.c: one direction of a link; applies the rate cap, the
 * latency and stalls to everything that crosses it, in order */
#include "config.h"

#include <glib-unix.h>

#include "bgs-sim.h"

#define CONGESTED_BYTES (64 * 1024)

typedef struct {
	gsize size;
	gint64 deliver_at;	/* 0: not scheduled (stalled) */
	SimDeliverFunc deliver;
	SimItemFunc destroy;
	gpointer data;
} SimItem;

typedef struct {
	GSourceFunc func;
	gpointer data;
} SimWaiter;

SimQueue *
sim_queue_new (SimLink *link)
{
	SimQueue *q = g_new0 (SimQueue, 1);

	q->link = link;
	g_queue_init (&q->items);
	q->waiters = g_array_new (FALSE, FALSE, sizeof (SimWaiter));
	return q;
}

/* the link went down: fail what waits; the memory goes later (we may be
 * inside one of our own deliveries) */
void
sim_queue_shutdown (SimQueue *q)
{
	SimItem *item;

	if (q == NULL || q->freeing)
		return;
	q->freeing = TRUE;
	g_clear_handle_id (&q->timer, g_source_remove);
	g_clear_handle_id (&q->out_watch, g_source_remove);
	while ((item = g_queue_pop_head (&q->items)) != NULL) {
		if (item->destroy != NULL)
			item->destroy (item->data);
		g_free (item);
	}
	g_array_set_size (q->waiters, 0);
}

void
sim_queue_free (SimQueue *q)
{
	if (q == NULL)
		return;
	sim_queue_shutdown (q);
	g_array_unref (q->waiters);
	g_free (q);
}

static void
schedule (SimQueue *q, SimItem *item, gint64 now)
{
	guint64 rate;
	guint latency;
	gboolean stalled;
	gint64 start, tx = 0;

	sim_link_get_params (q->link, &rate, &latency, &stalled);
	if (stalled)
		return;
	if (rate > 0)
		tx = (gint64) (item->size * G_USEC_PER_SEC / rate);
	start = MAX (now, q->tx_free);
	q->tx_free = start + tx;
	item->deliver_at = q->tx_free + (gint64) latency * 1000;
}

static gboolean process (gpointer data);

static gboolean
writable_cb (gint fd, GIOCondition cond, gpointer data)
{
	SimQueue *q = data;

	q->out_watch = 0;
	process (q);
	return G_SOURCE_REMOVE;
}

static void
arm (SimQueue *q)
{
	SimItem *head = g_queue_peek_head (&q->items);
	gint64 now = g_get_monotonic_time ();

	g_clear_handle_id (&q->timer, g_source_remove);
	if (head == NULL || head->deliver_at == 0 || q->out_watch != 0 || q->held)
		return;
	if (head->deliver_at <= now)
		q->timer = g_idle_add (process, q);
	else
		q->timer = g_timeout_add ((guint) ((head->deliver_at - now + 999) / 1000),
					  process, q);
}

static void
wake_waiters (SimQueue *q)
{
	g_autoptr(GArray) w = q->waiters;

	q->waiters = g_array_new (FALSE, FALSE, sizeof (SimWaiter));
	for (guint i = 0; i < w->len; i++) {
		SimWaiter *sw = &g_array_index (w, SimWaiter, i);
		sw->func (sw->data);
	}
}

static gboolean
process (gpointer data)
{
	SimQueue *q = data;
	gint64 now = g_get_monotonic_time ();
	SimItem *item;

	g_clear_handle_id (&q->timer, g_source_remove);
	if (q->out_watch != 0 || q->held)
		return G_SOURCE_REMOVE;
	while ((item = g_queue_peek_head (&q->items)) != NULL) {
		gint fd;
		if (item->deliver_at == 0 || item->deliver_at > now)
			break;
		g_queue_pop_head (&q->items);
		fd = item->deliver (item->data);
		if (fd >= 0 || fd == SIM_QUEUE_HOLD) {
			/* the receiver is full: flow control, like a real link */
			if (q->freeing) {
				if (item->destroy != NULL)
					item->destroy (item->data);
				g_free (item);
				return G_SOURCE_REMOVE;
			}
			g_queue_push_head (&q->items, item);
			if (fd == SIM_QUEUE_HOLD)
				q->held = TRUE;
			else
				q->out_watch = g_unix_fd_add (fd, G_IO_OUT | G_IO_HUP | G_IO_ERR,
							      writable_cb, q);
			return G_SOURCE_REMOVE;
		}
		q->bytes -= item->size;
		g_free (item);
		/* a delivery may drop the link */
		if (q->freeing)
			return G_SOURCE_REMOVE;
	}
	if (q->bytes < CONGESTED_BYTES / 2 && q->waiters->len > 0)
		wake_waiters (q);
	if (q->freeing)
		return G_SOURCE_REMOVE;
	arm (q);
	return G_SOURCE_REMOVE;
}

void
sim_queue_push (SimQueue *q, gsize size, SimDeliverFunc deliver, SimItemFunc destroy,
		gpointer data)
{
	SimItem *item;
	gboolean was_empty;

	if (q->freeing) {
		if (destroy != NULL)
			destroy (data);
		return;
	}
	item = g_new0 (SimItem, 1);
	was_empty = g_queue_is_empty (&q->items);

	item->size = size;
	item->deliver = deliver;
	item->destroy = destroy;
	item->data = data;
	schedule (q, item, g_get_monotonic_time ());
	g_queue_push_tail (&q->items, item);
	q->bytes += size;
	if (was_empty)
		arm (q);
}

/* parameters changed (stall, rate, latency): reschedule what waits */
void
sim_queue_kick (SimQueue *q)
{
	gint64 now = g_get_monotonic_time ();
	guint64 rate;
	guint latency;
	gboolean stalled;

	if (q->freeing)
		return;
	g_clear_handle_id (&q->out_watch, g_source_remove);
	q->held = FALSE;
	sim_link_get_params (q->link, &rate, &latency, &stalled);
	q->tx_free = now;
	for (GList *l = q->items.head; l != NULL; l = l->next) {
		SimItem *item = l->data;
		item->deliver_at = 0;
		if (!stalled)
			schedule (q, item, now);
	}
	arm (q);
	if (!stalled && q->bytes < CONGESTED_BYTES / 2 && q->waiters->len > 0)
		wake_waiters (q);
}

gboolean
sim_queue_congested (SimQueue *q)
{
	guint64 rate;
	guint latency;
	gboolean stalled;

	sim_link_get_params (q->link, &rate, &latency, &stalled);
	return stalled || q->bytes >= CONGESTED_BYTES;
}

void
sim_queue_wait (SimQueue *q, GSourceFunc func, gpointer data)
{
	SimWaiter w = { func, data };

	sim_queue_unwait (q, data);
	g_array_append_val (q->waiters, w);
}

void
sim_queue_unwait (SimQueue *q, gpointer data)
{
	if (q == NULL || q->freeing)
		return;
	for (guint i = 0; i < q->waiters->len; i++) {
		if (g_array_index (q->waiters, SimWaiter, i).data == data) {
			g_array_remove_index (q->waiters, i);
			return;
		}
	}
}
