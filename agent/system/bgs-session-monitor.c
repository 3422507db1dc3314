/* bgs-session-monitor.c: logind sessions: foreground checks on demand,
 * user presence tracked while watched */
#include "config.h"

#include "bgs-session-monitor.h"

#define LOGIND_NAME "org.freedesktop.login1"
#define LOGIND_PATH "/org/freedesktop/login1"
#define MANAGER_IFACE "org.freedesktop.login1.Manager"
#define USER_IFACE "org.freedesktop.login1.User"
#define SESSION_IFACE "org.freedesktop.login1.Session"
#define SEAT_IFACE "org.freedesktop.login1.Seat"
#define CALL_TIMEOUT_MSEC 10000
/* a user with more sessions than this is checked on the first ones only */
#define MAX_SESSIONS 64

struct _BgsSessionMonitor {
	GObject parent_instance;
	GDBusConnection *bus;
	GCancellable *cancellable; /* canceled on dispose */

	guint watch_count;
	gboolean getting_bus;
	guint name_watch;
	guint props_sub;
	guint new_sub;
	guint removed_sub;
	char *owner;             /* logind's unique name while it runs */
	guint generation;        /* bumped when results in flight become stale */
	gboolean refreshing;
	gboolean refresh_again;
	gboolean loaded;
	gboolean user_present;
	GHashTable *session_uids; /* session id -> uid, from the last refresh */
};

G_DEFINE_TYPE (BgsSessionMonitor, bgs_session_monitor, G_TYPE_OBJECT)

enum { SIGNAL_CHANGED, SIGNAL_SESSION_REMOVED, N_SIGNALS };
static guint signals[N_SIGNALS];

static gboolean
is_cancel (const GError *error)
{
	return g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
}

/* a session counts when it is on a seat, active and not locked */
static gboolean
session_props_count (GVariant *dict, const char **why)
{
	const char *seat = NULL;
	gboolean active = FALSE;
	gboolean locked = FALSE;

	if (!g_variant_lookup (dict, "Seat", "(&so)", &seat, NULL) || seat[0] == '\0') {
		*why = "not attached to a seat";
		return FALSE;
	}
	if (!g_variant_lookup (dict, "Active", "b", &active) || !active) {
		*why = "not active";
		return FALSE;
	}
	if (!g_variant_lookup (dict, "LockedHint", "b", &locked) || locked) {
		*why = "locked";
		return FALSE;
	}
	*why = "active and unlocked on a seat";
	return TRUE;
}

/* ---- foreground check ---- */

typedef struct {
	guint32 uid;
	guint pending;
	gboolean foreground;
	char *why;
} CheckData;

static void
check_data_free (gpointer data)
{
	CheckData *cd = data;

	g_free (cd->why);
	g_free (cd);
}

static void
check_return (GTask *task, gboolean foreground, const char *why)
{
	CheckData *cd = g_task_get_task_data (task);

	g_debug ("uid %u is %sin the foreground: %s", cd->uid, foreground ? "" : "not ", why);
	g_task_return_boolean (task, foreground);
}

static void
on_session_getall (GObject *source, GAsyncResult *res, gpointer user_data)
{
	g_autoptr(GTask) task = user_data;
	CheckData *cd = g_task_get_task_data (task);
	g_autoptr(GError) error = NULL;
	g_autoptr(GVariant) reply = NULL;

	reply = g_dbus_connection_call_finish (G_DBUS_CONNECTION (source), res, &error);
	if (reply != NULL) {
		g_autoptr(GVariant) dict = NULL;
		const char *why = NULL;

		g_variant_get (reply, "(@a{sv})", &dict);
		if (session_props_count (dict, &why))
			cd->foreground = TRUE;
		else if (cd->why == NULL)
			cd->why = g_strdup_printf ("no session counts (one is %s)", why);
	} else if (is_cancel (error) && cd->why == NULL) {
		cd->why = g_strdup ("canceled");
	} else if (cd->why == NULL) {
		cd->why = g_strdup_printf ("session unreadable: %s", error->message);
	}
	if (--cd->pending > 0)
		return;
	if (g_task_return_error_if_cancelled (task))
		return;
	check_return (task, cd->foreground,
		      cd->foreground ? "active and unlocked seat session" : cd->why);
}

static void
on_user_sessions (GObject *source, GAsyncResult *res, gpointer user_data)
{
	g_autoptr(GTask) task = user_data;
	BgsSessionMonitor *self = g_task_get_source_object (task);
	CheckData *cd = g_task_get_task_data (task);
	g_autoptr(GError) error = NULL;
	g_autoptr(GVariant) reply = NULL;
	g_autoptr(GVariant) value = NULL;
	g_autoptr(GVariantIter) iter = NULL;
	const char *path;

	reply = g_dbus_connection_call_finish (G_DBUS_CONNECTION (source), res, &error);
	if (reply == NULL) {
		if (is_cancel (error)) {
			g_task_return_error (task, g_steal_pointer (&error));
			return;
		}
		check_return (task, FALSE, error->message);
		return;
	}
	g_variant_get (reply, "(v)", &value);
	if (!g_variant_is_of_type (value, G_VARIANT_TYPE ("a(so)"))) {
		check_return (task, FALSE, "logind's User.Sessions has an unexpected type");
		return;
	}
	iter = g_variant_iter_new (value);
	while (cd->pending < MAX_SESSIONS && g_variant_iter_next (iter, "(&s&o)", NULL, &path)) {
		cd->pending++;
		g_dbus_connection_call (self->bus, LOGIND_NAME, path,
					"org.freedesktop.DBus.Properties", "GetAll",
					g_variant_new ("(s)", SESSION_IFACE),
					G_VARIANT_TYPE ("(a{sv})"), G_DBUS_CALL_FLAGS_NONE,
					CALL_TIMEOUT_MSEC, g_task_get_cancellable (task),
					on_session_getall, g_object_ref (task));
	}
	if (cd->pending == 0)
		check_return (task, FALSE, "the user has no sessions");
}

static void
on_get_user (GObject *source, GAsyncResult *res, gpointer user_data)
{
	g_autoptr(GTask) task = user_data;
	BgsSessionMonitor *self = g_task_get_source_object (task);
	g_autoptr(GError) error = NULL;
	g_autoptr(GVariant) reply = NULL;
	const char *path;

	reply = g_dbus_connection_call_finish (G_DBUS_CONNECTION (source), res, &error);
	if (reply == NULL) {
		if (is_cancel (error)) {
			g_task_return_error (task, g_steal_pointer (&error));
			return;
		}
		/* NoSuchUser (not logged in), ServiceUnknown (no logind), ... */
		g_dbus_error_strip_remote_error (error);
		check_return (task, FALSE, error->message);
		return;
	}
	g_variant_get (reply, "(&o)", &path);
	/* not g_steal_pointer() in the same argument list: C leaves the order
	 * of evaluation open and gcc steals the task before reading it */
	g_dbus_connection_call (self->bus, LOGIND_NAME, path, "org.freedesktop.DBus.Properties",
				"Get", g_variant_new ("(ss)", USER_IFACE, "Sessions"),
				G_VARIANT_TYPE ("(v)"), G_DBUS_CALL_FLAGS_NONE, CALL_TIMEOUT_MSEC,
				g_task_get_cancellable (task), on_user_sessions,
				g_object_ref (task));
}

static void
check_start (GTask *task)
{
	BgsSessionMonitor *self = g_task_get_source_object (task);
	CheckData *cd = g_task_get_task_data (task);

	g_dbus_connection_call (self->bus, LOGIND_NAME, LOGIND_PATH, MANAGER_IFACE, "GetUser",
				g_variant_new ("(u)", cd->uid), G_VARIANT_TYPE ("(o)"),
				G_DBUS_CALL_FLAGS_NONE, CALL_TIMEOUT_MSEC,
				g_task_get_cancellable (task), on_get_user, task);
}

static void
on_bus_for_check (GObject *source, GAsyncResult *res, gpointer user_data)
{
	g_autoptr(GTask) task = user_data;
	BgsSessionMonitor *self = g_task_get_source_object (task);
	g_autoptr(GError) error = NULL;
	GDBusConnection *bus;

	bus = g_bus_get_finish (res, &error);
	if (bus == NULL) {
		if (is_cancel (error)) {
			g_task_return_error (task, g_steal_pointer (&error));
			return;
		}
		check_return (task, FALSE, error->message);
		return;
	}
	if (self->bus == NULL)
		self->bus = bus;
	else
		g_object_unref (bus);
	check_start (g_steal_pointer (&task));
}

void
bgs_session_monitor_check_foreground_async (BgsSessionMonitor *self, guint32 uid,
					    GCancellable *cancellable,
					    GAsyncReadyCallback callback, gpointer user_data)
{
	GTask *task;
	CheckData *cd;

	g_return_if_fail (BGS_IS_SESSION_MONITOR (self));
	task = g_task_new (self, cancellable, callback, user_data);
	g_task_set_source_tag (task, bgs_session_monitor_check_foreground_async);
	cd = g_new0 (CheckData, 1);
	cd->uid = uid;
	g_task_set_task_data (task, cd, check_data_free);
	if (self->bus == NULL) {
		g_bus_get (G_BUS_TYPE_SYSTEM, cancellable, on_bus_for_check, task);
		return;
	}
	check_start (task);
}

gboolean
bgs_session_monitor_check_foreground_finish (BgsSessionMonitor *self, GAsyncResult *result,
					     gboolean *foreground, GError **error)
{
	g_autoptr(GError) local_error = NULL;
	gboolean fg;

	g_return_val_if_fail (g_task_is_valid (result, self), FALSE);
	fg = g_task_propagate_boolean (G_TASK (result), &local_error);
	if (local_error != NULL) {
		g_propagate_error (error, g_steal_pointer (&local_error));
		return FALSE;
	}
	if (foreground != NULL)
		*foreground = fg;
	return TRUE;
}

/* ---- user presence, while watched ---- */

static void refresh (BgsSessionMonitor *self);

static void
set_loaded (BgsSessionMonitor *self, gboolean user_present)
{
	gboolean emit = !self->loaded || self->user_present != user_present;

	self->loaded = TRUE;
	self->user_present = user_present;
	if (emit) {
		g_debug ("user present: %s", user_present ? "yes" : "no");
		g_signal_emit (self, signals[SIGNAL_CHANGED], 0);
	}
}

typedef struct {
	BgsSessionMonitor *self; /* owned */
	guint generation;
	guint pending;
	gboolean present;
} RefreshData;

static void
refresh_done (RefreshData *rd)
{
	BgsSessionMonitor *self = rd->self;

	if (rd->generation == self->generation) {
		self->refreshing = FALSE;
		set_loaded (self, rd->present);
		if (self->refresh_again) {
			self->refresh_again = FALSE;
			refresh (self);
		}
	}
	g_object_unref (rd->self);
	g_free (rd);
}

static void
on_refresh_session (GObject *source, GAsyncResult *res, gpointer user_data)
{
	RefreshData *rd = user_data;
	g_autoptr(GError) error = NULL;
	g_autoptr(GVariant) reply = NULL;

	reply = g_dbus_connection_call_finish (G_DBUS_CONNECTION (source), res, &error);
	if (reply != NULL) {
		g_autoptr(GVariant) dict = NULL;
		const char *why;

		g_variant_get (reply, "(@a{sv})", &dict);
		if (session_props_count (dict, &why))
			rd->present = TRUE;
	} else if (!is_cancel (error)) {
		/* the session may have closed meanwhile */
		g_debug ("session unreadable: %s", error->message);
	}
	if (--rd->pending == 0)
		refresh_done (rd);
}

static void
on_list_sessions (GObject *source, GAsyncResult *res, gpointer user_data)
{
	RefreshData *rd = user_data;
	BgsSessionMonitor *self = rd->self;
	g_autoptr(GError) error = NULL;
	g_autoptr(GVariant) reply = NULL;
	g_autoptr(GVariantIter) iter = NULL;
	const char *id;
	guint32 uid;
	const char *seat;
	const char *path;

	reply = g_dbus_connection_call_finish (G_DBUS_CONNECTION (source), res, &error);
	if (reply == NULL) {
		if (!is_cancel (error))
			g_debug ("logind: ListSessions: %s", error->message);
		refresh_done (rd);
		return;
	}
	if (rd->generation != self->generation) {
		refresh_done (rd);
		return;
	}
	g_hash_table_remove_all (self->session_uids);
	g_variant_get (reply, "(a(susso))", &iter);
	/* hold one count while issuing the calls */
	rd->pending = 1;
	while (g_variant_iter_next (iter, "(&su&s&s&o)", &id, &uid, NULL, &seat, &path)) {
		g_hash_table_insert (self->session_uids, g_strdup (id), GUINT_TO_POINTER (uid));
		if (seat[0] == '\0' || rd->pending > MAX_SESSIONS)
			continue;
		rd->pending++;
		g_dbus_connection_call (self->bus, self->owner, path,
					"org.freedesktop.DBus.Properties", "GetAll",
					g_variant_new ("(s)", SESSION_IFACE),
					G_VARIANT_TYPE ("(a{sv})"), G_DBUS_CALL_FLAGS_NO_AUTO_START,
					CALL_TIMEOUT_MSEC, self->cancellable,
					on_refresh_session, rd);
	}
	if (--rd->pending == 0)
		refresh_done (rd);
}

static void
refresh (BgsSessionMonitor *self)
{
	RefreshData *rd;

	if (self->owner == NULL)
		return;
	if (self->refreshing) {
		/* coalesce a burst of signals into one more round */
		self->refresh_again = TRUE;
		return;
	}
	self->refreshing = TRUE;
	rd = g_new0 (RefreshData, 1);
	rd->self = g_object_ref (self);
	rd->generation = self->generation;
	g_dbus_connection_call (self->bus, self->owner, LOGIND_PATH, MANAGER_IFACE, "ListSessions",
				NULL, G_VARIANT_TYPE ("(a(susso))"),
				G_DBUS_CALL_FLAGS_NO_AUTO_START, CALL_TIMEOUT_MSEC,
				self->cancellable, on_list_sessions, rd);
}

static void
invalidate (BgsSessionMonitor *self)
{
	self->generation++;
	self->refreshing = FALSE;
	self->refresh_again = FALSE;
}

static void
on_properties_changed (GDBusConnection *bus, const char *sender, const char *path,
		       const char *iface, const char *member, GVariant *params,
		       gpointer user_data)
{
	BgsSessionMonitor *self = BGS_SESSION_MONITOR (user_data);
	const char *changed_iface = NULL;

	if (!g_variant_is_of_type (params, G_VARIANT_TYPE ("(sa{sv}as)")))
		return;
	g_variant_get (params, "(&s@a{sv}@as)", &changed_iface, NULL, NULL);
	if (g_strcmp0 (changed_iface, SESSION_IFACE) != 0 &&
	    g_strcmp0 (changed_iface, SEAT_IFACE) != 0)
		return;
	refresh (self);
}

static void
on_session_new (GDBusConnection *bus, const char *sender, const char *path,
		const char *iface, const char *member, GVariant *params, gpointer user_data)
{
	refresh (BGS_SESSION_MONITOR (user_data));
}

static void
on_session_removed (GDBusConnection *bus, const char *sender, const char *path,
		    const char *iface, const char *member, GVariant *params,
		    gpointer user_data)
{
	BgsSessionMonitor *self = BGS_SESSION_MONITOR (user_data);
	const char *id = NULL;
	gpointer uid_ptr = NULL;
	guint uid = G_MAXUINT32;

	if (!g_variant_is_of_type (params, G_VARIANT_TYPE ("(so)")))
		return;
	g_variant_get (params, "(&s&o)", &id, NULL);
	if (g_hash_table_lookup_extended (self->session_uids, id, NULL, &uid_ptr))
		uid = GPOINTER_TO_UINT (uid_ptr);
	g_debug ("session %s of uid %u removed", id, uid);
	g_signal_emit (self, signals[SIGNAL_SESSION_REMOVED], 0, uid, id);
	refresh (self);
}

static void
on_name_appeared (GDBusConnection *bus, const char *name, const char *owner, gpointer user_data)
{
	BgsSessionMonitor *self = BGS_SESSION_MONITOR (user_data);

	g_debug ("logind appeared as %s", owner);
	g_free (self->owner);
	self->owner = g_strdup (owner);
	invalidate (self);
	refresh (self);
}

static void
on_name_vanished (GDBusConnection *bus, const char *name, gpointer user_data)
{
	BgsSessionMonitor *self = BGS_SESSION_MONITOR (user_data);

	g_debug ("logind not running: no user present");
	g_clear_pointer (&self->owner, g_free);
	invalidate (self);
	g_hash_table_remove_all (self->session_uids);
	set_loaded (self, FALSE);
}

static void
start_watching (BgsSessionMonitor *self)
{
	self->props_sub = g_dbus_connection_signal_subscribe (self->bus, LOGIND_NAME,
							      "org.freedesktop.DBus.Properties",
							      "PropertiesChanged", NULL, NULL,
							      G_DBUS_SIGNAL_FLAGS_NONE,
							      on_properties_changed, self, NULL);
	self->new_sub = g_dbus_connection_signal_subscribe (self->bus, LOGIND_NAME, MANAGER_IFACE,
							    "SessionNew", LOGIND_PATH, NULL,
							    G_DBUS_SIGNAL_FLAGS_NONE,
							    on_session_new, self, NULL);
	self->removed_sub = g_dbus_connection_signal_subscribe (self->bus, LOGIND_NAME,
								MANAGER_IFACE, "SessionRemoved",
								LOGIND_PATH, NULL,
								G_DBUS_SIGNAL_FLAGS_NONE,
								on_session_removed, self, NULL);
	self->name_watch = g_bus_watch_name_on_connection (self->bus, LOGIND_NAME,
							   G_BUS_NAME_WATCHER_FLAGS_NONE,
							   on_name_appeared, on_name_vanished,
							   self, NULL);
}

static void
stop_watching (BgsSessionMonitor *self)
{
	if (self->name_watch != 0) {
		g_bus_unwatch_name (self->name_watch);
		self->name_watch = 0;
	}
	if (self->bus != NULL) {
		if (self->props_sub != 0)
			g_dbus_connection_signal_unsubscribe (self->bus, self->props_sub);
		if (self->new_sub != 0)
			g_dbus_connection_signal_unsubscribe (self->bus, self->new_sub);
		if (self->removed_sub != 0)
			g_dbus_connection_signal_unsubscribe (self->bus, self->removed_sub);
	}
	self->props_sub = self->new_sub = self->removed_sub = 0;
	g_clear_pointer (&self->owner, g_free);
	invalidate (self);
	self->loaded = FALSE;
	self->user_present = FALSE;
}

static void
on_bus_for_watch (GObject *source, GAsyncResult *res, gpointer user_data)
{
	g_autoptr(BgsSessionMonitor) self = user_data;
	g_autoptr(GError) error = NULL;
	GDBusConnection *bus;

	bus = g_bus_get_finish (res, &error);
	if (bus == NULL && is_cancel (error))
		return;
	self->getting_bus = FALSE;
	if (bus == NULL) {
		g_debug ("no system bus (%s): no user present", error->message);
		if (self->watch_count > 0)
			set_loaded (self, FALSE);
		return;
	}
	if (self->bus == NULL)
		self->bus = bus;
	else
		g_object_unref (bus);
	if (self->watch_count > 0 && self->name_watch == 0)
		start_watching (self);
}

void
bgs_session_monitor_watch (BgsSessionMonitor *self)
{
	g_return_if_fail (BGS_IS_SESSION_MONITOR (self));
	if (self->watch_count++ > 0)
		return;
	if (self->bus != NULL) {
		start_watching (self);
	} else if (!self->getting_bus) {
		self->getting_bus = TRUE;
		g_bus_get (G_BUS_TYPE_SYSTEM, self->cancellable, on_bus_for_watch,
			   g_object_ref (self));
	}
}

void
bgs_session_monitor_unwatch (BgsSessionMonitor *self)
{
	g_return_if_fail (BGS_IS_SESSION_MONITOR (self));
	g_return_if_fail (self->watch_count > 0);
	if (--self->watch_count > 0)
		return;
	stop_watching (self);
}

gboolean
bgs_session_monitor_get_user_present (BgsSessionMonitor *self)
{
	g_return_val_if_fail (BGS_IS_SESSION_MONITOR (self), FALSE);
	return self->user_present;
}

gboolean
bgs_session_monitor_is_loaded (BgsSessionMonitor *self)
{
	g_return_val_if_fail (BGS_IS_SESSION_MONITOR (self), FALSE);
	return self->loaded;
}

static void
bgs_session_monitor_dispose (GObject *object)
{
	BgsSessionMonitor *self = BGS_SESSION_MONITOR (object);

	g_cancellable_cancel (self->cancellable);
	stop_watching (self);
	self->watch_count = 0;
	g_clear_object (&self->bus);
	G_OBJECT_CLASS (bgs_session_monitor_parent_class)->dispose (object);
}

static void
bgs_session_monitor_finalize (GObject *object)
{
	BgsSessionMonitor *self = BGS_SESSION_MONITOR (object);

	g_clear_object (&self->cancellable);
	g_hash_table_unref (self->session_uids);
	G_OBJECT_CLASS (bgs_session_monitor_parent_class)->finalize (object);
}

static void
bgs_session_monitor_class_init (BgsSessionMonitorClass *klass)
{
	GObjectClass *object_class = G_OBJECT_CLASS (klass);

	object_class->dispose = bgs_session_monitor_dispose;
	object_class->finalize = bgs_session_monitor_finalize;
	signals[SIGNAL_CHANGED] = g_signal_new ("changed", G_TYPE_FROM_CLASS (klass),
						G_SIGNAL_RUN_LAST, 0, NULL, NULL, NULL,
						G_TYPE_NONE, 0);
	signals[SIGNAL_SESSION_REMOVED] = g_signal_new ("session-removed",
							G_TYPE_FROM_CLASS (klass),
							G_SIGNAL_RUN_LAST, 0, NULL, NULL, NULL,
							G_TYPE_NONE, 2, G_TYPE_UINT,
							G_TYPE_STRING);
}

static void
bgs_session_monitor_init (BgsSessionMonitor *self)
{
	self->cancellable = g_cancellable_new ();
	self->session_uids = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
}

BgsSessionMonitor *
bgs_session_monitor_new (GDBusConnection *system_bus)
{
	BgsSessionMonitor *self = g_object_new (BGS_TYPE_SESSION_MONITOR, NULL);

	g_return_val_if_fail (system_bus == NULL || G_IS_DBUS_CONNECTION (system_bus), NULL);
	if (system_bus != NULL)
		self->bus = g_object_ref (system_bus);
	return self;
}
