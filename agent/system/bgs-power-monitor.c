/* bgs-power-monitor.c: UPower's OnBattery and DisplayDevice, tracked with a
 * name watch and PropertiesChanged, loaded asynchronously */
#include "config.h"

#include "bgs-power-monitor.h"

#define UPOWER_NAME "org.freedesktop.UPower"
#define UPOWER_PATH "/org/freedesktop/UPower"
#define UPOWER_IFACE "org.freedesktop.UPower"
#define DISPLAY_PATH "/org/freedesktop/UPower/devices/DisplayDevice"
#define DEVICE_IFACE "org.freedesktop.UPower.Device"
#define CALL_TIMEOUT_MSEC 10000

/* UpDeviceKind */
#define UP_DEVICE_KIND_BATTERY 2
#define UP_DEVICE_KIND_UPS 3

struct _BgsPowerMonitor {
	GObject parent_instance;
	GDBusConnection *bus;
	GCancellable *cancellable; /* canceled on dispose */
	guint name_watch;
	guint props_sub;
	gboolean ready;
	GPtrArray *ready_tasks; /* GTask waiting for ready */
	guint load_generation;

	/* raw UPower state */
	gboolean have_upower;
	gboolean raw_on_battery;
	gboolean raw_present;
	guint32 raw_type;
	gdouble raw_percentage;

	/* what get_state reports */
	gboolean on_battery;
	gdouble percent;
};

G_DEFINE_TYPE (BgsPowerMonitor, bgs_power_monitor, G_TYPE_OBJECT)

enum { SIGNAL_CHANGED, N_SIGNALS };
static guint signals[N_SIGNALS];

typedef struct {
	GCancellable *cancellable;
	gulong cancel_id;
} ReadyData;

static void
ready_data_free (gpointer data)
{
	ReadyData *rd = data;

	g_clear_object (&rd->cancellable);
	g_free (rd);
}

static void
recompute (BgsPowerMonitor *self, gboolean emit)
{
	gboolean battery = self->have_upower && self->raw_present &&
		(self->raw_type == UP_DEVICE_KIND_BATTERY || self->raw_type == UP_DEVICE_KIND_UPS);
	gboolean on_battery = battery && self->raw_on_battery;
	gdouble percent = battery ? CLAMP (self->raw_percentage, 0.0, 100.0) : 100.0;

	if (on_battery == self->on_battery && percent == self->percent)
		return;
	self->on_battery = on_battery;
	self->percent = percent;
	g_debug ("power: %s, %.1f%%", on_battery ? "on battery" : "mains", percent);
	if (emit)
		g_signal_emit (self, signals[SIGNAL_CHANGED], 0);
}

static void
complete_ready_tasks (BgsPowerMonitor *self)
{
	g_autoptr(GPtrArray) tasks = g_steal_pointer (&self->ready_tasks);

	self->ready_tasks = g_ptr_array_new_with_free_func (g_object_unref);
	for (guint i = 0; i < tasks->len; i++) {
		GTask *task = g_ptr_array_index (tasks, i);
		ReadyData *rd = g_task_get_task_data (task);

		if (rd->cancellable != NULL)
			g_cancellable_disconnect (rd->cancellable, rd->cancel_id);
		rd->cancel_id = 0;
		g_task_return_boolean (task, TRUE);
	}
}

static void
set_ready (BgsPowerMonitor *self)
{
	gboolean was_ready = self->ready;

	/* the first load is reported by ready_async, later ones by "changed" */
	recompute (self, was_ready);
	if (was_ready)
		return;
	self->ready = TRUE;
	complete_ready_tasks (self);
}

static void
apply_device_props (BgsPowerMonitor *self, GVariant *dict)
{
	gboolean b;
	guint32 u;
	gdouble d;

	if (g_variant_lookup (dict, "IsPresent", "b", &b))
		self->raw_present = b;
	if (g_variant_lookup (dict, "Type", "u", &u))
		self->raw_type = u;
	if (g_variant_lookup (dict, "Percentage", "d", &d))
		self->raw_percentage = d;
}

static void
apply_upower_props (BgsPowerMonitor *self, GVariant *dict)
{
	gboolean b;

	if (g_variant_lookup (dict, "OnBattery", "b", &b))
		self->raw_on_battery = b;
}

typedef struct {
	BgsPowerMonitor *self; /* owned */
	guint generation;
	guint pending;
} LoadData;

static void
load_data_unref_one (LoadData *ld)
{
	if (--ld->pending > 0)
		return;
	if (ld->generation == ld->self->load_generation && ld->self->have_upower)
		set_ready (ld->self);
	g_object_unref (ld->self);
	g_free (ld);
}

static void
on_getall_done (GObject *source, GAsyncResult *res, gpointer user_data, gboolean device)
{
	LoadData *ld = user_data;
	g_autoptr(GError) error = NULL;
	g_autoptr(GVariant) reply = NULL;
	g_autoptr(GVariant) dict = NULL;

	reply = g_dbus_connection_call_finish (G_DBUS_CONNECTION (source), res, &error);
	if (reply == NULL) {
		if (!g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
			g_debug ("upower: GetAll %s: %s", device ? "DisplayDevice" : "", error->message);
	} else if (ld->generation == ld->self->load_generation) {
		g_variant_get (reply, "(@a{sv})", &dict);
		if (device)
			apply_device_props (ld->self, dict);
		else
			apply_upower_props (ld->self, dict);
	}
	load_data_unref_one (ld);
}

static void
on_getall_upower (GObject *source, GAsyncResult *res, gpointer user_data)
{
	on_getall_done (source, res, user_data, FALSE);
}

static void
on_getall_device (GObject *source, GAsyncResult *res, gpointer user_data)
{
	on_getall_done (source, res, user_data, TRUE);
}

static void
load (BgsPowerMonitor *self, const char *owner)
{
	LoadData *ld = g_new0 (LoadData, 1);

	ld->self = g_object_ref (self);
	ld->generation = ++self->load_generation;
	ld->pending = 2;
	/* a missing DisplayDevice reads as "no battery" */
	self->raw_present = FALSE;
	self->raw_type = 0;
	self->raw_percentage = 100.0;
	self->raw_on_battery = FALSE;
	g_dbus_connection_call (self->bus, owner, UPOWER_PATH, "org.freedesktop.DBus.Properties",
				"GetAll", g_variant_new ("(s)", UPOWER_IFACE),
				G_VARIANT_TYPE ("(a{sv})"), G_DBUS_CALL_FLAGS_NO_AUTO_START,
				CALL_TIMEOUT_MSEC, self->cancellable, on_getall_upower, ld);
	g_dbus_connection_call (self->bus, owner, DISPLAY_PATH, "org.freedesktop.DBus.Properties",
				"GetAll", g_variant_new ("(s)", DEVICE_IFACE),
				G_VARIANT_TYPE ("(a{sv})"), G_DBUS_CALL_FLAGS_NO_AUTO_START,
				CALL_TIMEOUT_MSEC, self->cancellable, on_getall_device, ld);
}

static void
on_name_appeared (GDBusConnection *bus, const char *name, const char *owner, gpointer user_data)
{
	BgsPowerMonitor *self = BGS_POWER_MONITOR (user_data);

	g_debug ("upower appeared as %s", owner);
	self->have_upower = TRUE;
	load (self, owner);
}

static void
on_name_vanished (GDBusConnection *bus, const char *name, gpointer user_data)
{
	BgsPowerMonitor *self = BGS_POWER_MONITOR (user_data);

	g_debug ("upower not running: assuming mains power");
	self->load_generation++;
	self->have_upower = FALSE;
	set_ready (self);
}

static void
on_properties_changed (GDBusConnection *bus, const char *sender, const char *path,
		       const char *iface, const char *member, GVariant *params,
		       gpointer user_data)
{
	BgsPowerMonitor *self = BGS_POWER_MONITOR (user_data);
	const char *changed_iface = NULL;
	g_autoptr(GVariant) changed = NULL;
	g_autofree const char **invalidated = NULL;
	gboolean is_device;

	if (!self->have_upower || !g_variant_is_of_type (params, G_VARIANT_TYPE ("(sa{sv}as)")))
		return;
	g_variant_get (params, "(&s@a{sv}^a&s)", &changed_iface, &changed, &invalidated);
	if (g_strcmp0 (path, UPOWER_PATH) == 0 && g_strcmp0 (changed_iface, UPOWER_IFACE) == 0)
		is_device = FALSE;
	else if (g_strcmp0 (path, DISPLAY_PATH) == 0 && g_strcmp0 (changed_iface, DEVICE_IFACE) == 0)
		is_device = TRUE;
	else
		return;

	if (invalidated != NULL && invalidated[0] != NULL) {
		/* values we were not told: read everything again */
		load (self, sender);
		return;
	}
	if (is_device)
		apply_device_props (self, changed);
	else
		apply_upower_props (self, changed);
	if (self->ready)
		recompute (self, TRUE);
}

static void
start (BgsPowerMonitor *self)
{
	self->props_sub = g_dbus_connection_signal_subscribe (self->bus, UPOWER_NAME,
							      "org.freedesktop.DBus.Properties",
							      "PropertiesChanged", NULL, NULL,
							      G_DBUS_SIGNAL_FLAGS_NONE,
							      on_properties_changed, self, NULL);
	self->name_watch = g_bus_watch_name_on_connection (self->bus, UPOWER_NAME,
							   G_BUS_NAME_WATCHER_FLAGS_NONE,
							   on_name_appeared, on_name_vanished,
							   self, NULL);
}

static void
on_bus_got (GObject *source, GAsyncResult *res, gpointer user_data)
{
	g_autoptr(BgsPowerMonitor) self = user_data;
	g_autoptr(GError) error = NULL;

	self->bus = g_bus_get_finish (res, &error);
	if (self->bus == NULL) {
		if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
			return;
		g_debug ("no system bus (%s): assuming mains power", error->message);
		set_ready (self);
		return;
	}
	start (self);
}

static void
bgs_power_monitor_dispose (GObject *object)
{
	BgsPowerMonitor *self = BGS_POWER_MONITOR (object);

	g_cancellable_cancel (self->cancellable);
	if (self->name_watch != 0) {
		g_bus_unwatch_name (self->name_watch);
		self->name_watch = 0;
	}
	if (self->props_sub != 0) {
		g_dbus_connection_signal_unsubscribe (self->bus, self->props_sub);
		self->props_sub = 0;
	}
	g_clear_object (&self->bus);
	G_OBJECT_CLASS (bgs_power_monitor_parent_class)->dispose (object);
}

static void
bgs_power_monitor_finalize (GObject *object)
{
	BgsPowerMonitor *self = BGS_POWER_MONITOR (object);

	g_clear_object (&self->cancellable);
	g_ptr_array_unref (self->ready_tasks);
	G_OBJECT_CLASS (bgs_power_monitor_parent_class)->finalize (object);
}

static void
bgs_power_monitor_class_init (BgsPowerMonitorClass *klass)
{
	GObjectClass *object_class = G_OBJECT_CLASS (klass);

	object_class->dispose = bgs_power_monitor_dispose;
	object_class->finalize = bgs_power_monitor_finalize;
	signals[SIGNAL_CHANGED] = g_signal_new ("changed", G_TYPE_FROM_CLASS (klass),
						G_SIGNAL_RUN_LAST, 0, NULL, NULL, NULL,
						G_TYPE_NONE, 0);
}

static void
bgs_power_monitor_init (BgsPowerMonitor *self)
{
	self->cancellable = g_cancellable_new ();
	self->ready_tasks = g_ptr_array_new_with_free_func (g_object_unref);
	self->on_battery = FALSE;
	self->percent = 100.0;
}

BgsPowerMonitor *
bgs_power_monitor_new (GDBusConnection *system_bus)
{
	BgsPowerMonitor *self = g_object_new (BGS_TYPE_POWER_MONITOR, NULL);

	g_return_val_if_fail (system_bus == NULL || G_IS_DBUS_CONNECTION (system_bus), NULL);
	if (system_bus != NULL) {
		self->bus = g_object_ref (system_bus);
		start (self);
	} else {
		g_bus_get (G_BUS_TYPE_SYSTEM, self->cancellable, on_bus_got, g_object_ref (self));
	}
	return self;
}

static void
on_ready_canceled (GCancellable *cancellable, gpointer user_data)
{
	GTask *task = G_TASK (user_data);
	BgsPowerMonitor *self = g_task_get_source_object (task);

	/* runs in the canceling thread; the daemon cancels on the main thread */
	if (g_ptr_array_find (self->ready_tasks, task, NULL)) {
		g_object_ref (task);
		g_ptr_array_remove (self->ready_tasks, task);
		g_task_return_error_if_cancelled (task);
		g_object_unref (task);
	}
}

void
bgs_power_monitor_ready_async (BgsPowerMonitor *self, GCancellable *cancellable,
			       GAsyncReadyCallback callback, gpointer user_data)
{
	g_autoptr(GTask) task = NULL;
	ReadyData *rd;

	g_return_if_fail (BGS_IS_POWER_MONITOR (self));
	task = g_task_new (self, cancellable, callback, user_data);
	g_task_set_source_tag (task, bgs_power_monitor_ready_async);
	if (self->ready) {
		g_task_return_boolean (task, TRUE);
		return;
	}
	rd = g_new0 (ReadyData, 1);
	g_task_set_task_data (task, rd, ready_data_free);
	g_ptr_array_add (self->ready_tasks, g_object_ref (task));
	if (cancellable != NULL) {
		rd->cancellable = g_object_ref (cancellable);
		/* may call back at once (and complete the task) if already canceled */
		rd->cancel_id = g_cancellable_connect (cancellable, G_CALLBACK (on_ready_canceled),
						       task, NULL);
	}
}

gboolean
bgs_power_monitor_ready_finish (BgsPowerMonitor *self, GAsyncResult *result, GError **error)
{
	g_return_val_if_fail (g_task_is_valid (result, self), FALSE);
	return g_task_propagate_boolean (G_TASK (result), error);
}

gboolean
bgs_power_monitor_is_ready (BgsPowerMonitor *self)
{
	g_return_val_if_fail (BGS_IS_POWER_MONITOR (self), FALSE);
	return self->ready;
}

void
bgs_power_monitor_get_state (BgsPowerMonitor *self, gboolean *on_battery, gdouble *percent)
{
	g_return_if_fail (BGS_IS_POWER_MONITOR (self));
	if (on_battery != NULL)
		*on_battery = self->on_battery;
	if (percent != NULL)
		*percent = self->percent;
}
