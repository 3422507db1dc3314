/* bgs-engine.h: the runtime watch (seed 001, "Runtime policy checks").
 *
 * Keeps the reservations and running instances of tasks, arms their
 * wall-clock and idle deadlines on a BgsClock and cancels them when a
 * runtime rule stops holding. Pure logic: the daemon feeds it events
 * (presence, I/O, bus names, consent changes) and listens to "canceled".
 *
 * Signal "canceled" (gint64 task_id, guint BgsCancelReason): emitted exactly
 * once per canceled reservation or instance, after the engine has forgotten
 * it, so a handler may reserve again. finish() and release() never emit. */
#pragma once

#include <glib-object.h>

#include "bgs-clock.h"
#include "bgs-policy.h"
#include "bgs-types.h"

G_BEGIN_DECLS

#define BGS_TYPE_ENGINE (bgs_engine_get_type ())
G_DECLARE_FINAL_TYPE (BgsEngine, bgs_engine, BGS, ENGINE, GObject)

/* @limits NULL = defaults */
BgsEngine *bgs_engine_new (BgsClock *clock, const BgsPolicyLimits *limits);
/* applies to instances started afterwards; running ones keep the limits
 * they started with */
void bgs_engine_set_limits (BgsEngine *self, const BgsPolicyLimits *limits);
const BgsPolicyLimits *bgs_engine_get_limits (BgsEngine *self);

typedef struct {
	gint64 task_id;
	BgsTriggerKind trigger;
	guint32 uid;
	const char *app_id;
	const char *device;  /* agent device id, NULL for custom */
	const char *model;   /* model id, NULL for custom */
	const char *owner;   /* unique bus name of the requester; vanishing -> terminating; NULL for custom */
} BgsInstanceInfo;

/* reservation: taken when a request passes the busy checks, before consent,
 * so a second request while the first waits for consent is refused busy.
 * Errors: BGS_ERROR_BUSY (app or device busy), BGS_ERROR_ALREADY_EXISTS
 * (task id taken), BGS_ERROR_INVALID_ARGS (device trigger without app or
 * device), BGS_ERROR_FAILED (after shutdown). All strings are copied. */
gboolean bgs_engine_reserve (BgsEngine *self, const BgsInstanceInfo *info, GError **error);
/* device triggers only: TRUE if the app has a device task reserved or running */
gboolean bgs_engine_app_busy (BgsEngine *self, guint32 uid, const char *app_id);
/* TRUE if @device has a reserved or running task of kind @trigger */
gboolean bgs_engine_device_busy (BgsEngine *self, const char *device, BgsTriggerKind trigger);
/* forgets a reservation that never ran (denied); no signal */
void bgs_engine_release (BgsEngine *self, gint64 task_id);
/* reservation -> running; arms the wall-clock timer (and idle for
 * device-use); the wall clock counts from here. BGS_ERROR_NOT_FOUND for an
 * unknown id, BGS_ERROR_FAILED when already running. */
gboolean bgs_engine_start (BgsEngine *self, gint64 task_id, GError **error);
gboolean bgs_engine_is_running (BgsEngine *self, gint64 task_id);
/* TRUE for a reservation or running instance the engine knows */
gboolean bgs_engine_has_task (BgsEngine *self, gint64 task_id);

/* inputs */
/* every call is one I/O (even of 0 bytes): resets the idle rule and
 * accumulates the byte counts */
void bgs_engine_note_io (BgsEngine *self, gint64 task_id, guint64 bytes_in, guint64 bytes_out);
/* zeros for an unknown task */
void bgs_engine_get_bytes (BgsEngine *self, gint64 task_id, guint64 *bytes_in, guint64 *bytes_out);
/* lost: device-use tasks of @device -> condition-loss; servicing keeps going */
void bgs_engine_device_presence (BgsEngine *self, const char *device, gboolean present);
/* adapter gone / device removed / unpaired -> resource-revocation, both kinds */
void bgs_engine_device_removed (BgsEngine *self, const char *device);
/* app exited (its bus name vanished) -> terminating */
/* device object gone but possibly back soon: device-use -> resource-revocation,
 * servicing keeps waiting */
void bgs_engine_device_withdrawn (BgsEngine *self, const char *device);
void bgs_engine_owner_vanished (BgsEngine *self, const char *bus_name);
/* device-use tasks of (@uid, @app_id) and @model (NULL = all models) -> uninstall */
void bgs_engine_consent_revoked (BgsEngine *self, guint32 uid, const char *app_id, const char *model);
/* manifest removed: every task of @app_id, any user, any kind -> uninstall */
void bgs_engine_app_removed (BgsEngine *self, const char *app_id);
/* app Cancel -> abort, etc.; unknown ids are ignored */
void bgs_engine_cancel (BgsEngine *self, gint64 task_id, BgsCancelReason reason);
/* entry point completed; no signal */
void bgs_engine_finish (BgsEngine *self, gint64 task_id);
/* cancels everything with terminating; later reservations are refused */
void bgs_engine_shutdown (BgsEngine *self);
guint bgs_engine_count_running (BgsEngine *self);

G_END_DECLS
