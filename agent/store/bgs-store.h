/* bgs-store.h: sqlite persistence of registrations, consents, queued
 * events, task history and the device cache.
 *
 * One file, WAL journal, a `schema` table with stepwise migrations. Every
 * change runs in its own transaction. The store never resets or rewrites a
 * file it cannot read: a damaged file gives BGS_ERROR_CORRUPT naming the
 * file and the damage, a file from a newer bgsync gives
 * BGS_ERROR_NOT_SUPPORTED. Rows that do not parse (tampered by hand) are
 * skipped with a warning naming the table and row.
 *
 * Calls are synchronous and short (small indexed statements); the store is
 * meant for one thread. */
#pragma once

#include <gio/gio.h>

#include "bgs-types.h"

G_BEGIN_DECLS

/* the schema version this code writes; older files are migrated on open */
#define BGS_STORE_SCHEMA_VERSION 2

#define BGS_TYPE_STORE (bgs_store_get_type ())
G_DECLARE_FINAL_TYPE (BgsStore, bgs_store, BGS, STORE, GObject)

/* creates the file (0600, parent directories 0700) or opens and migrates it.
 * errors: BGS_ERROR_CORRUPT (not an sqlite file, truncated, damaged pages,
 * not a bgsync database, tables not matching their schema version),
 * BGS_ERROR_NOT_SUPPORTED (schema newer than BGS_STORE_SCHEMA_VERSION),
 * BGS_ERROR_IO (cannot create or open, symlink, not writable),
 * BGS_ERROR_BUSY (locked) */
BgsStore *bgs_store_open (const char *path, GError **error);
const char *bgs_store_get_path (BgsStore *self);

/* task registrations */
typedef struct {
	gint64 id;             /* rowid; also the task's object number; set by add */
	guint32 uid;
	char *app_id;
	char *name;
	BgsTriggerKind trigger;
	char *entry_point;
	char *custom_trigger;  /* NULL for device triggers */
	BgsRecurrence recurrence;
	BgsConditions conditions;
	gint64 created;        /* unix usec */
} BgsRegistration;

BgsRegistration *bgs_registration_new (void);
BgsRegistration *bgs_registration_copy (const BgsRegistration *r);
void bgs_registration_free (BgsRegistration *r);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (BgsRegistration, bgs_registration_free)

/* fills reg->id (ids are never reused, also after removal);
 * (uid, app_id, name) unique -> BGS_ERROR_ALREADY_EXISTS */
gboolean bgs_store_add_registration (BgsStore *self, BgsRegistration *reg, GError **error);
/* also drops its queued events and drop count; BGS_ERROR_NOT_FOUND if absent */
gboolean bgs_store_remove_registration (BgsStore *self, gint64 id, GError **error);
/* all users, in id order, element-type BgsRegistration, owned */
GPtrArray *bgs_store_list_registrations (BgsStore *self, GError **error);
/* NULL + BGS_ERROR_NOT_FOUND if absent */
BgsRegistration *bgs_store_get_registration (BgsStore *self, gint64 id, GError **error);

/* consents: one decision per (uid, app, device model) */
typedef struct {
	guint32 uid;
	char *app_id;
	char *model;
	gboolean allowed;
	gint64 time;           /* unix usec of the decision */
} BgsConsent;

void bgs_consent_free (BgsConsent *c);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (BgsConsent, bgs_consent_free)

/* upsert */
gboolean bgs_store_set_consent (BgsStore *self, guint32 uid, const char *app_id,
				const char *model, gboolean allowed, gint64 time,
				GError **error);
/* *found FALSE (and *allowed FALSE) when nothing is stored */
gboolean bgs_store_get_consent (BgsStore *self, guint32 uid, const char *app_id,
				const char *model, gboolean *found, gboolean *allowed,
				GError **error);
/* only @uid's; @app_id NULL = all apps of @uid; element-type BgsConsent */
GPtrArray *bgs_store_list_consents (BgsStore *self, guint32 uid, const char *app_id,
				    GError **error);
/* only @uid's; @app_id NULL = all apps, @model NULL = all models */
gboolean bgs_store_revoke_consents (BgsStore *self, guint32 uid, const char *app_id,
				    const char *model, guint *n_removed, GError **error);

/* queued events, waiting for the app's TakeEvents */
typedef struct {
	gint64 seq;        /* set by queue; strictly increasing, also across restarts */
	gint64 task_id;
	guint32 uid;
	char *app_id;
	BgsEventKind kind;
	GVariant *data;    /* a{sv}, owned (sunk ref); NULL is stored as an empty a{sv} */
	gint64 time;       /* unix usec */
} BgsEvent;

/* @data may be floating (it is sunk) or NULL */
BgsEvent *bgs_event_new (gint64 task_id, guint32 uid, const char *app_id,
			 BgsEventKind kind, GVariant *data, gint64 time);
void bgs_event_free (BgsEvent *e);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (BgsEvent, bgs_event_free)

/* fills ev->seq; @ev and its data stay the caller's. the task must be
 * registered with the same uid and app (BGS_ERROR_NOT_FOUND /
 * BGS_ERROR_INVALID_ARGS otherwise). keeps at most
 * @max_per_app events per (uid, app_id): the oldest are dropped and counted
 * against their own task. @max_per_app 0 means no bound. */
gboolean bgs_store_queue_event (BgsStore *self, BgsEvent *ev, guint max_per_app, GError **error);
/* in seq order; deletes them and resets the drop count, atomically. *dropped
 * is the number of this task's events lost since the last take (bound
 * overflow, plus stored rows that no longer parse). element-type BgsEvent */
GPtrArray *bgs_store_take_events (BgsStore *self, gint64 task_id, guint *dropped, GError **error);
guint bgs_store_count_events (BgsStore *self, gint64 task_id, GError **error);

/* task history: one row per instance */
typedef struct {
	gint64 id;
	gint64 task_id;
	guint32 uid;
	char *app_id;
	char *task_name;
	char *device;
	char *model;
	BgsTriggerKind trigger;
	char *entry_point;
	gint64 started;    /* unix usec */
	gint64 ended;      /* unix usec; 0 while running */
	char *result;      /* "running", "completed", "failed", "canceled" */
	char *reason;      /* cancel reason or failure message, may be "" */
	guint64 bytes_in;
	guint64 bytes_out;
} BgsHistoryEntry;

BgsHistoryEntry *bgs_history_entry_new (void);
void bgs_history_entry_free (BgsHistoryEntry *e);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (BgsHistoryEntry, bgs_history_entry_free)

/* fills e->id, sets e->result "running", e->ended 0; NULL strings stored as "" */
gboolean bgs_store_history_begin (BgsStore *self, BgsHistoryEntry *e, GError **error);
/* @result one of "completed", "failed", "canceled" (BGS_ERROR_INVALID_ARGS
 * otherwise); BGS_ERROR_NOT_FOUND if @id is unknown or already ended */
gboolean bgs_store_history_end (BgsStore *self, gint64 id, gint64 ended, const char *result,
				const char *reason, guint64 bytes_in, guint64 bytes_out,
				GError **error);
/* newest first; @app_id NULL = all apps of @uid; @limit 0 = no limit */
GPtrArray *bgs_store_list_history (BgsStore *self, guint32 uid, const char *app_id,
				   guint limit, GError **error);
/* deletes finished rows that ended before @ended_before (unix usec); running
 * rows stay. for a retention policy, run once at startup */
gboolean bgs_store_prune_history (BgsStore *self, gint64 ended_before, guint *n_removed,
				  GError **error);
/* rows with ended == 0 (instances that were running when the agent died), oldest first */
GPtrArray *bgs_store_history_unfinished (BgsStore *self, GError **error);

/* device cache: key/value per device (e.g. the model read from GATT DIS) */
/* @value NULL removes the key */
gboolean bgs_store_set_device_info (BgsStore *self, const char *device_key, const char *key,
				    const char *value, GError **error);
/* NULL + no error when absent */
char *bgs_store_get_device_info (BgsStore *self, const char *device_key, const char *key,
				 GError **error);
/* removes every key of @device_key */
gboolean bgs_store_forget_device (BgsStore *self, const char *device_key, GError **error);

G_END_DECLS
