/* bgs-network-monitor.c: network-available with a "changed" that means it */
#include "config.h"

#include "bgs-network-monitor.h"

struct _BgsNetworkMonitor {
	GObject parent_instance;
	GNetworkMonitor *monitor;
	gulong handler_id;
	gulong notify_id;
	gboolean available;
};

G_DEFINE_TYPE (BgsNetworkMonitor, bgs_network_monitor, G_TYPE_OBJECT)

enum { SIGNAL_CHANGED, N_SIGNALS };
static guint signals[N_SIGNALS];

static void
on_network_changed (GNetworkMonitor *monitor, gboolean available, gpointer user_data)
{
	BgsNetworkMonitor *self = BGS_NETWORK_MONITOR (user_data);

	/* the signal's argument can lag the property; the property is the truth */
	available = g_network_monitor_get_network_available (monitor);
	if (available == self->available)
		return;
	self->available = available;
	g_debug ("network %s", available ? "available" : "unavailable");
	g_signal_emit (self, signals[SIGNAL_CHANGED], 0);
}

static void
on_notify_available (GObject *monitor, GParamSpec *pspec, gpointer user_data)
{
	on_network_changed (G_NETWORK_MONITOR (monitor), FALSE, user_data);
}

static void
bgs_network_monitor_dispose (GObject *object)
{
	BgsNetworkMonitor *self = BGS_NETWORK_MONITOR (object);

	if (self->monitor != NULL) {
		g_clear_signal_handler (&self->handler_id, self->monitor);
		g_clear_signal_handler (&self->notify_id, self->monitor);
		g_clear_object (&self->monitor);
	}
	G_OBJECT_CLASS (bgs_network_monitor_parent_class)->dispose (object);
}

static void
bgs_network_monitor_class_init (BgsNetworkMonitorClass *klass)
{
	GObjectClass *object_class = G_OBJECT_CLASS (klass);

	object_class->dispose = bgs_network_monitor_dispose;
	signals[SIGNAL_CHANGED] = g_signal_new ("changed", G_TYPE_FROM_CLASS (klass),
						G_SIGNAL_RUN_LAST, 0, NULL, NULL, NULL,
						G_TYPE_NONE, 0);
}

static void
bgs_network_monitor_init (BgsNetworkMonitor *self)
{
}

BgsNetworkMonitor *
bgs_network_monitor_new (GNetworkMonitor *monitor)
{
	BgsNetworkMonitor *self = g_object_new (BGS_TYPE_NETWORK_MONITOR, NULL);

	g_return_val_if_fail (monitor == NULL || G_IS_NETWORK_MONITOR (monitor), NULL);
	self->monitor = g_object_ref (monitor != NULL ? monitor : g_network_monitor_get_default ());
	self->available = g_network_monitor_get_network_available (self->monitor);
	self->handler_id = g_signal_connect (self->monitor, "network-changed",
					     G_CALLBACK (on_network_changed), self);
	self->notify_id = g_signal_connect (self->monitor, "notify::network-available",
					    G_CALLBACK (on_notify_available), self);
	return self;
}

gboolean
bgs_network_monitor_get_available (BgsNetworkMonitor *self)
{
	g_return_val_if_fail (BGS_IS_NETWORK_MONITOR (self), FALSE);
	return self->available;
}
