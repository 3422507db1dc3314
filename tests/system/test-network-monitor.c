/* test-network-monitor.c: the "network" condition over a fake
 * GNetworkMonitor: "changed" only when availability flips.
 * Run one test: test-network-monitor <name-glob>. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "bgs-network-monitor.h"

/* a GNetworkMonitor whose availability the test sets */
#define FAKE_TYPE_MONITOR (fake_monitor_get_type ())
G_DECLARE_FINAL_TYPE (FakeMonitor, fake_monitor, FAKE, MONITOR, GObject)

struct _FakeMonitor {
	GObject parent_instance;
	gboolean available;
};

enum { PROP_0, PROP_AVAILABLE, PROP_METERED, PROP_CONNECTIVITY };

static void fake_monitor_iface_init (GNetworkMonitorInterface *iface);

static gboolean
fake_monitor_initable_init (GInitable *initable, GCancellable *cancellable, GError **error)
{
	return TRUE;
}

static void
fake_monitor_initable_iface_init (GInitableIface *iface)
{
	iface->init = fake_monitor_initable_init;
}

G_DEFINE_TYPE_WITH_CODE (FakeMonitor, fake_monitor, G_TYPE_OBJECT,
			 G_IMPLEMENT_INTERFACE (G_TYPE_INITABLE, fake_monitor_initable_iface_init)
			 G_IMPLEMENT_INTERFACE (G_TYPE_NETWORK_MONITOR, fake_monitor_iface_init))

static void
fake_monitor_get_property (GObject *object, guint prop_id, GValue *value, GParamSpec *pspec)
{
	FakeMonitor *self = FAKE_MONITOR (object);

	switch (prop_id) {
	case PROP_AVAILABLE:
		g_value_set_boolean (value, self->available);
		break;
	case PROP_METERED:
		g_value_set_boolean (value, FALSE);
		break;
	case PROP_CONNECTIVITY:
		g_value_set_enum (value, self->available ? G_NETWORK_CONNECTIVITY_FULL
							 : G_NETWORK_CONNECTIVITY_LOCAL);
		break;
	default:
		G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
	}
}

static void
fake_monitor_class_init (FakeMonitorClass *klass)
{
	GObjectClass *object_class = G_OBJECT_CLASS (klass);

	object_class->get_property = fake_monitor_get_property;
	g_object_class_override_property (object_class, PROP_AVAILABLE, "network-available");
	g_object_class_override_property (object_class, PROP_METERED, "network-metered");
	g_object_class_override_property (object_class, PROP_CONNECTIVITY, "connectivity");
}

static void
fake_monitor_init (FakeMonitor *self)
{
}

static void
fake_monitor_iface_init (GNetworkMonitorInterface *iface)
{
}

/* like GNetworkMonitorBase: the property changes, then network-changed */
static void
fake_set (FakeMonitor *fake, gboolean available)
{
	if (fake->available != available) {
		fake->available = available;
		g_object_notify (G_OBJECT (fake), "network-available");
	}
	g_signal_emit_by_name (fake, "network-changed", available);
}

static void
on_changed (BgsNetworkMonitor *m, gpointer data)
{
	(*(guint *) data)++;
}

static void
test_follows_availability (void **state)
{
	g_autoptr(FakeMonitor) fake = g_object_new (FAKE_TYPE_MONITOR, NULL);
	g_autoptr(BgsNetworkMonitor) m = NULL;
	guint changed = 0;

	fake->available = TRUE;
	m = bgs_network_monitor_new (G_NETWORK_MONITOR (fake));
	g_signal_connect (m, "changed", G_CALLBACK (on_changed), &changed);
	assert_true (bgs_network_monitor_get_available (m));

	fake_set (fake, FALSE);
	assert_false (bgs_network_monitor_get_available (m));
	assert_int_equal (changed, 1);

	/* route churn without a flip: no signal */
	fake_set (fake, FALSE);
	fake_set (fake, FALSE);
	assert_int_equal (changed, 1);

	fake_set (fake, TRUE);
	assert_true (bgs_network_monitor_get_available (m));
	assert_int_equal (changed, 2);
}

static void
test_starts_unavailable (void **state)
{
	g_autoptr(FakeMonitor) fake = g_object_new (FAKE_TYPE_MONITOR, NULL);
	g_autoptr(BgsNetworkMonitor) m = bgs_network_monitor_new (G_NETWORK_MONITOR (fake));

	assert_false (bgs_network_monitor_get_available (m));
}

static void
test_outlives_nothing (void **state)
{
	/* the wrapper disconnects from the monitor it keeps alive */
	g_autoptr(FakeMonitor) fake = g_object_new (FAKE_TYPE_MONITOR, NULL);
	BgsNetworkMonitor *m = bgs_network_monitor_new (G_NETWORK_MONITOR (fake));
	guint changed = 0;

	g_signal_connect (m, "changed", G_CALLBACK (on_changed), &changed);
	g_object_unref (m);
	fake_set (fake, TRUE);
	assert_int_equal (changed, 0);
}

int
main (int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test (test_follows_availability),
		cmocka_unit_test (test_starts_unavailable),
		cmocka_unit_test (test_outlives_nothing),
	};

	if (argc > 1)
		cmocka_set_test_filter (argv[1]);
	return cmocka_run_group_tests_name ("system-network", tests, NULL, NULL);
}
