/* bgs-session-monitor.h: logind facts from the system bus.
 *
 * "foreground" for a uid: the uid has a logind session that is attached to
 * a seat, Active and not LockedHint. Checked on demand, asynchronously;
 * logind absent, an unknown user or no session all mean "not foreground"
 * (logged at debug level), never an error.
 *
 * "user present" (the custom-trigger condition): some user has an active,
 * unlocked seat session. Tracked only while someone holds a watch, so an
 * idle agent with no custom-trigger task subscribes to nothing. */
#pragma once

#include <gio/gio.h>

G_BEGIN_DECLS

#define BGS_TYPE_SESSION_MONITOR (bgs_session_monitor_get_type ())
G_DECLARE_FINAL_TYPE (BgsSessionMonitor, bgs_session_monitor, BGS, SESSION_MONITOR, GObject)

/* @system_bus: the connection to read logind from; NULL gets the system bus
 * (asynchronously, on first use). No D-Bus traffic until first use. */
BgsSessionMonitor *bgs_session_monitor_new (GDBusConnection *system_bus);

void bgs_session_monitor_check_foreground_async (BgsSessionMonitor *self, guint32 uid,
						 GCancellable *cancellable,
						 GAsyncReadyCallback callback,
						 gpointer user_data);
/* FALSE with @error only when canceled; otherwise TRUE and *foreground set */
gboolean bgs_session_monitor_check_foreground_finish (BgsSessionMonitor *self,
						      GAsyncResult *result,
						      gboolean *foreground,
						      GError **error);

/* reference-counted: the first watch subscribes to logind's signals and
 * loads the state, the last unwatch drops the subscriptions.
 * Signals while watched:
 *  "changed" (void): user-present changed; also emitted once when the first
 *     load after a watch (or after logind (re)appears) completes, so a
 *     consumer re-evaluates then.
 *  "session-removed" (guint uid, const char *session_id): logind removed a
 *     session (logout); uid is G_MAXUINT32 if the session was never seen. */
void bgs_session_monitor_watch (BgsSessionMonitor *self);
void bgs_session_monitor_unwatch (BgsSessionMonitor *self);

/* FALSE until loaded, when not watched, and when logind is absent */
gboolean bgs_session_monitor_get_user_present (BgsSessionMonitor *self);
/* TRUE once the state was loaded since the first watch */
gboolean bgs_session_monitor_is_loaded (BgsSessionMonitor *self);

G_END_DECLS
