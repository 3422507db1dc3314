/* bgs-task.h: one registration, its state and its org.bgsync.Task1 properties.
 *
 * The objects themselves are served by the daemon's /org/bgsync/task subtree
 * (bgs-daemon.c), so that every access, property reads included, can wait
 * for the caller's identity before the owner check. */
#pragma once

#include <gio/gio.h>

#include "bgs-run.h"
#include "bgs-store.h"

G_BEGIN_DECLS

#define BGS_TYPE_TASK (bgs_task_get_type ())
G_DECLARE_FINAL_TYPE (BgsTask, bgs_task, BGS, TASK, GObject)

BgsTask *bgs_task_new (const BgsRegistration *reg);
const BgsRegistration *bgs_task_get_registration (BgsTask *self);
gint64 bgs_task_get_id (BgsTask *self);
const char *bgs_task_get_object_path (BgsTask *self);
gboolean bgs_task_is_owned_by (BgsTask *self, guint32 uid, const char *app_id);

BgsTaskState bgs_task_get_state (BgsTask *self);
const char *bgs_task_get_device (BgsTask *self);
/* state changes return the names of the properties that changed */
void bgs_task_set_state (BgsTask *self, BgsTaskState state, const char *device);
void bgs_task_set_progress (BgsTask *self, guint percent, const char *status);
void bgs_task_set_estimate (BgsTask *self, guint seconds);

/* the instance currently attached (NULL when idle) */
BgsRun *bgs_task_get_run (BgsTask *self);
void bgs_task_set_run (BgsTask *self, BgsRun *run);
void bgs_task_add_bytes (BgsTask *self, guint64 in, guint64 out);
void bgs_task_get_bytes (BgsTask *self, guint64 *in, guint64 *out);
void bgs_task_set_history_id (BgsTask *self, gint64 id);
gint64 bgs_task_get_history_id (BgsTask *self);

/* removal requested by Unregister(false) (or a fired "once" trigger) while running */
void bgs_task_set_remove_when_idle (BgsTask *self, gboolean remove);
gboolean bgs_task_get_remove_when_idle (BgsTask *self);

/* Task1 property values */
GVariant *bgs_task_get_property (BgsTask *self, const char *name);
GVariant *bgs_task_get_properties (BgsTask *self); /* a{sv} */

G_END_DECLS
