/* test-sim-unit.c: cmocka units for bgsync-sim's link queue (rate cap,
 * latency, stalls, flow control on a full socket) and its small helpers */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include "bgs-sim.h"

typedef struct {
	SimPeer a;		/* the peer */
	SimPeer b;		/* the central adapter's own radio */
	SimAdapter adapter;
	SimDevice central;
	SimLink link;
	GArray *delivered;	/* gint ids in delivery order */
	GArray *times;		/* gint64 µs of each delivery */
	gint block_fd;		/* deliver() reports this fd as full, once */
	gint destroyed;
} Fixture;

static Fixture *fx;

static gint
deliver (gpointer data)
{
	gint id = GPOINTER_TO_INT (data);
	gint64 now = g_get_monotonic_time ();

	if (fx->block_fd >= 0) {
		gint fd = fx->block_fd;
		fx->block_fd = -1;
		return fd;
	}
	g_array_append_val (fx->delivered, id);
	g_array_append_val (fx->times, now);
	return -1;
}

static void
destroy (gpointer data)
{
	fx->destroyed++;
}

static int
setup (void **state)
{
	fx = g_new0 (Fixture, 1);
	fx->adapter.peer = &fx->b;
	fx->central.adapter = &fx->adapter;
	fx->link.central = &fx->central;
	fx->link.peer = &fx->a;
	fx->delivered = g_array_new (FALSE, FALSE, sizeof (gint));
	fx->times = g_array_new (FALSE, FALSE, sizeof (gint64));
	fx->block_fd = -1;
	fx->link.up = sim_queue_new (&fx->link);
	*state = fx;
	return 0;
}

static int
teardown (void **state)
{
	sim_queue_free (fx->link.up);
	g_array_unref (fx->delivered);
	g_array_unref (fx->times);
	g_clear_pointer (&fx, g_free);
	return 0;
}

static gboolean
timeout_cb (gpointer data)
{
	*(gboolean *) data = TRUE;
	return G_SOURCE_REMOVE;
}

/* run the main loop until @n deliveries or @ms passed */
static void
run_until (guint n, guint ms)
{
	gboolean expired = FALSE;
	guint id = g_timeout_add (ms, timeout_cb, &expired);

	while (fx->delivered->len < n && !expired)
		g_main_context_iteration (NULL, TRUE);
	if (!expired)
		g_source_remove (id);
}

static void
push (SimQueue *q, gint id, gsize size)
{
	sim_queue_push (q, size, deliver, destroy, GINT_TO_POINTER (id));
}

static void
test_in_order (void **state)
{
	for (gint i = 0; i < 50; i++)
		push (fx->link.up, i, 10);
	run_until (50, 5000);
	assert_int_equal (fx->delivered->len, 50);
	for (gint i = 0; i < 50; i++)
		assert_int_equal (g_array_index (fx->delivered, gint, i), i);
}

static void
test_rate_cap (void **state)
{
	gint64 start = g_get_monotonic_time ();

	/* 4 x 1000 bytes at 10,000 B/s: the last leaves no sooner than 400 ms */
	fx->a.rate = 10000;
	for (gint i = 0; i < 4; i++)
		push (fx->link.up, i, 1000);
	run_until (4, 5000);
	assert_int_equal (fx->delivered->len, 4);
	assert_true (g_array_index (fx->times, gint64, 3) - start >= 400 * 1000);
	/* and the first one not before its own 100 ms on the air */
	assert_true (g_array_index (fx->times, gint64, 0) - start >= 100 * 1000);
}

static void
test_slower_end_wins (void **state)
{
	gint64 start = g_get_monotonic_time ();

	/* either radio may be the slow one */
	fx->a.rate = 1000000;
	fx->b.rate = 10000;
	push (fx->link.up, 0, 2000);
	run_until (1, 5000);
	assert_true (g_array_index (fx->times, gint64, 0) - start >= 200 * 1000);
}

static void
test_latency (void **state)
{
	gint64 start = g_get_monotonic_time ();

	fx->b.latency_ms = 150;
	push (fx->link.up, 0, 1);
	push (fx->link.up, 1, 1);
	run_until (2, 5000);
	assert_int_equal (fx->delivered->len, 2);
	assert_true (g_array_index (fx->times, gint64, 0) - start >= 150 * 1000);
	assert_true (g_array_index (fx->times, gint64, 1) >= g_array_index (fx->times, gint64, 0));
}

static void
test_stall (void **state)
{
	fx->a.stalled = TRUE;
	push (fx->link.up, 0, 1);
	assert_true (sim_queue_congested (fx->link.up));
	run_until (1, 200);
	assert_int_equal (fx->delivered->len, 0);
	fx->a.stalled = FALSE;
	sim_queue_kick (fx->link.up);
	assert_false (sim_queue_congested (fx->link.up));
	run_until (1, 5000);
	assert_int_equal (fx->delivered->len, 1);
}

static gboolean
woken (gpointer data)
{
	(*(gint *) data)++;
	return G_SOURCE_REMOVE;
}

static void
test_congestion_wakes_waiters (void **state)
{
	gint wakes = 0;

	/* 64 KiB queued is congested; a waiter hears when it drains */
	for (gint i = 0; i < 70; i++)
		push (fx->link.up, i, 1024);
	assert_true (sim_queue_congested (fx->link.up));
	sim_queue_wait (fx->link.up, woken, &wakes);
	run_until (70, 5000);
	assert_int_equal (fx->delivered->len, 70);
	assert_int_equal (wakes, 1);
	assert_false (sim_queue_congested (fx->link.up));
}

static void
test_full_socket_holds_the_queue (void **state)
{
	gint fds[2];

	/* the head is held until its fd is writable; nothing overtakes it */
	assert_int_equal (socketpair (AF_UNIX, SOCK_SEQPACKET, 0, fds), 0);
	fx->block_fd = fds[0];
	push (fx->link.up, 0, 1);
	push (fx->link.up, 1, 1);
	run_until (2, 5000);
	assert_int_equal (fx->delivered->len, 2);
	assert_int_equal (g_array_index (fx->delivered, gint, 0), 0);
	assert_int_equal (g_array_index (fx->delivered, gint, 1), 1);
	close (fds[0]);
	close (fds[1]);
}

static void
test_shutdown_destroys_pending (void **state)
{
	fx->a.stalled = TRUE;
	for (gint i = 0; i < 5; i++)
		push (fx->link.up, i, 1);
	sim_queue_shutdown (fx->link.up);
	assert_int_equal (fx->destroyed, 5);
	/* pushing after shutdown destroys at once */
	push (fx->link.up, 9, 1);
	assert_int_equal (fx->destroyed, 6);
	assert_int_equal (fx->delivered->len, 0);
}

static void
test_addresses (void **state)
{
	g_autofree gchar *next = sim_address_add ("00:AA:01:00:00:FF", 1);
	g_autofree gchar *wrap = sim_address_add ("FF:FF:FF:FF:FF:FF", 1);

	assert_string_equal (next, "00:AA:01:00:01:00");
	assert_string_equal (wrap, "00:00:00:00:00:00");
	assert_true (sim_address_valid ("00:aa:01:00:00:ff"));
	assert_false (sim_address_valid ("00:AA:01:00:00"));
	assert_false (sim_address_valid ("00-AA-01-00-00-00"));
	assert_false (sim_address_valid ("00:AA:01:00:00:0G"));
	assert_false (sim_address_valid (NULL));
}

static void
test_uuids (void **state)
{
	g_autofree gchar *s16 = sim_uuid_normalize ("180D");
	g_autofree gchar *s32 = sim_uuid_normalize ("0000180d");
	g_autofree gchar *full = sim_uuid_normalize ("7E1A0001-6C2B-4B6B-9A3E-5BC0C0DE0001");
	g_autofree gchar *bad = sim_uuid_normalize ("180G");
	g_autofree gchar *bad2 = sim_uuid_normalize ("heart-rate");

	assert_string_equal (s16, "0000180d-0000-1000-8000-00805f9b34fb");
	assert_string_equal (s32, "0000180d-0000-1000-8000-00805f9b34fb");
	assert_string_equal (full, "7e1a0001-6c2b-4b6b-9a3e-5bc0c0de0001");
	assert_null (bad);
	assert_null (bad2);
}

int
main (void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown (test_in_order, setup, teardown),
		cmocka_unit_test_setup_teardown (test_rate_cap, setup, teardown),
		cmocka_unit_test_setup_teardown (test_slower_end_wins, setup, teardown),
		cmocka_unit_test_setup_teardown (test_latency, setup, teardown),
		cmocka_unit_test_setup_teardown (test_stall, setup, teardown),
		cmocka_unit_test_setup_teardown (test_congestion_wakes_waiters, setup, teardown),
		cmocka_unit_test_setup_teardown (test_full_socket_holds_the_queue, setup, teardown),
		cmocka_unit_test_setup_teardown (test_shutdown_destroys_pending, setup, teardown),
		cmocka_unit_test (test_addresses),
		cmocka_unit_test (test_uuids),
	};

	return cmocka_run_group_tests_name ("sim", tests, NULL, NULL);
}
