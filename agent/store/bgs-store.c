/* bgs-store.c: sqlite persistence (the only code in bgsync that speaks SQL) */
#include "config.h"

#include "bgs-store.h"
#include "bgs-store-private.h"

#include <errno.h>
#include <fcntl.h>
#include <glib/gstdio.h>
#include <sqlite3.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bgs-error.h"

#define BUSY_TIMEOUT_MS 500

/* migrations[n] takes a database from version n to n + 1; each step sets
 * the version it reaches. never edit a step once released: append one. */
static const char *const migrations[] = {
	/* 0 -> 1: registrations, consents, events, event drop counts, history */
	"CREATE TABLE schema (version INTEGER NOT NULL);"
	"INSERT INTO schema (version) VALUES (1);"
	"CREATE TABLE registrations ("
	"  id INTEGER PRIMARY KEY AUTOINCREMENT,"
	"  uid INTEGER NOT NULL,"
	"  app_id TEXT NOT NULL,"
	"  name TEXT NOT NULL,"
	"  trigger_kind TEXT NOT NULL,"
	"  entry_point TEXT NOT NULL,"
	"  custom_trigger TEXT,"
	"  recurrence TEXT NOT NULL,"
	"  conditions TEXT NOT NULL,"
	"  created INTEGER NOT NULL,"
	"  UNIQUE (uid, app_id, name));"
	"CREATE TABLE consents ("
	"  uid INTEGER NOT NULL,"
	"  app_id TEXT NOT NULL,"
	"  model TEXT NOT NULL,"
	"  allowed INTEGER NOT NULL,"
	"  time INTEGER NOT NULL,"
	"  PRIMARY KEY (uid, app_id, model)) WITHOUT ROWID;"
	/* autoincrement: seq must keep growing even when the table empties */
	"CREATE TABLE events ("
	"  seq INTEGER PRIMARY KEY AUTOINCREMENT,"
	"  task_id INTEGER NOT NULL,"
	"  uid INTEGER NOT NULL,"
	"  app_id TEXT NOT NULL,"
	"  kind TEXT NOT NULL,"
	"  data TEXT NOT NULL,"
	"  time INTEGER NOT NULL);"
	"CREATE INDEX events_by_task ON events (task_id, seq);"
	"CREATE INDEX events_by_app ON events (uid, app_id, seq);"
	"CREATE TABLE event_drops ("
	"  task_id INTEGER PRIMARY KEY,"
	"  dropped INTEGER NOT NULL);"
	"CREATE TABLE history ("
	"  id INTEGER PRIMARY KEY AUTOINCREMENT,"
	"  task_id INTEGER NOT NULL,"
	"  uid INTEGER NOT NULL,"
	"  app_id TEXT NOT NULL,"
	"  task_name TEXT NOT NULL,"
	"  device TEXT NOT NULL,"
	"  model TEXT NOT NULL,"
	"  trigger_kind TEXT NOT NULL,"
	"  entry_point TEXT NOT NULL,"
	"  started INTEGER NOT NULL,"
	"  ended INTEGER NOT NULL DEFAULT 0,"
	"  result TEXT NOT NULL,"
	"  reason TEXT NOT NULL DEFAULT '',"
	"  bytes_in INTEGER NOT NULL DEFAULT 0,"
	"  bytes_out INTEGER NOT NULL DEFAULT 0);"
	"CREATE INDEX history_by_app ON history (uid, app_id, started);",

	/* 1 -> 2: the device cache; the startup scan for unfinished instances
	 * and history pruning walked the whole history, index the end time */
	"CREATE TABLE device_info ("
	"  device_key TEXT NOT NULL,"
	"  key TEXT NOT NULL,"
	"  value TEXT NOT NULL,"
	"  updated INTEGER NOT NULL,"
	"  PRIMARY KEY (device_key, key)) WITHOUT ROWID;"
	"CREATE INDEX history_by_end ON history (ended);"
	"UPDATE schema SET version = 2;",
};

G_STATIC_ASSERT (G_N_ELEMENTS (migrations) == BGS_STORE_SCHEMA_VERSION);

typedef enum {
	STMT_REG_INSERT,
	STMT_REG_DELETE,
	STMT_REG_LIST,
	STMT_REG_GET,
	STMT_REG_OWNER,
	STMT_CONSENT_UPSERT,
	STMT_CONSENT_GET,
	STMT_CONSENT_LIST,
	STMT_CONSENT_REVOKE,
	STMT_EVENT_INSERT,
	STMT_EVENT_COUNT_APP,
	STMT_EVENT_DROP_COUNT_OLDEST,
	STMT_EVENT_DELETE_OLDEST,
	STMT_EVENT_LIST_TASK,
	STMT_EVENT_DELETE_TASK,
	STMT_EVENT_COUNT_TASK,
	STMT_DROPS_GET,
	STMT_DROPS_DELETE,
	STMT_HISTORY_INSERT,
	STMT_HISTORY_END,
	STMT_HISTORY_LIST_UID,
	STMT_HISTORY_LIST_APP,
	STMT_HISTORY_UNFINISHED,
	STMT_DEVICE_SET,
	STMT_DEVICE_UNSET,
	STMT_DEVICE_GET,
	STMT_DEVICE_FORGET,
	STMT_HISTORY_PRUNE,
	STMT_LAST
} StoreStmt;

#define REG_COLUMNS \
	"id, uid, app_id, name, trigger_kind, entry_point, custom_trigger, " \
	"recurrence, conditions, created"
/* the seq of the ?3-th oldest event of (?1, ?2): the oldest ?3 are a range
 * of the events_by_app index */
#define OLDEST_SEQ_LIMIT \
	"SELECT seq FROM events WHERE uid = ?1 AND app_id = ?2 ORDER BY seq LIMIT 1 OFFSET ?3 - 1"
#define EVENT_COLUMNS "seq, task_id, uid, app_id, kind, data, time"
#define HISTORY_COLUMNS \
	"id, task_id, uid, app_id, task_name, device, model, trigger_kind, " \
	"entry_point, started, ended, result, reason, bytes_in, bytes_out"

/* all prepared at open: a statement that does not prepare means the file's
 * tables are not the ones its schema version promises */
static const char *const stmt_sql[] = {
	[STMT_REG_INSERT] =
		"INSERT INTO registrations (uid, app_id, name, trigger_kind, entry_point, "
		"custom_trigger, recurrence, conditions, created) "
		"VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
	[STMT_REG_DELETE] = "DELETE FROM registrations WHERE id = ?1",
	[STMT_REG_LIST] = "SELECT " REG_COLUMNS " FROM registrations ORDER BY id",
	[STMT_REG_GET] = "SELECT " REG_COLUMNS " FROM registrations WHERE id = ?1",
	[STMT_REG_OWNER] = "SELECT uid, app_id FROM registrations WHERE id = ?1",
	[STMT_CONSENT_UPSERT] =
		"INSERT INTO consents (uid, app_id, model, allowed, time) "
		"VALUES (?1, ?2, ?3, ?4, ?5) "
		"ON CONFLICT (uid, app_id, model) DO UPDATE SET "
		"allowed = excluded.allowed, time = excluded.time",
	[STMT_CONSENT_GET] =
		"SELECT allowed FROM consents WHERE uid = ?1 AND app_id = ?2 AND model = ?3",
	[STMT_CONSENT_LIST] =
		"SELECT uid, app_id, model, allowed, time FROM consents "
		"WHERE uid = ?1 AND (?2 IS NULL OR app_id = ?2) ORDER BY app_id, model",
	[STMT_CONSENT_REVOKE] =
		"DELETE FROM consents WHERE uid = ?1 AND (?2 IS NULL OR app_id = ?2) "
		"AND (?3 IS NULL OR model = ?3)",
	[STMT_EVENT_INSERT] =
		"INSERT INTO events (task_id, uid, app_id, kind, data, time) "
		"VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
	[STMT_EVENT_COUNT_APP] = "SELECT COUNT(*) FROM events WHERE uid = ?1 AND app_id = ?2",
	/* the oldest ?3 events of the app are about to go: count them against
	 * their own tasks (the WHERE keeps the upsert unambiguous) */
	[STMT_EVENT_DROP_COUNT_OLDEST] =
		"INSERT INTO event_drops (task_id, dropped) "
		"SELECT task_id, COUNT(*) FROM events "
		"WHERE uid = ?1 AND app_id = ?2 AND seq <= (" OLDEST_SEQ_LIMIT ") GROUP BY task_id "
		"ON CONFLICT (task_id) DO UPDATE SET dropped = dropped + excluded.dropped",
	[STMT_EVENT_DELETE_OLDEST] =
		"DELETE FROM events WHERE uid = ?1 AND app_id = ?2 AND seq <= (" OLDEST_SEQ_LIMIT ")",
	[STMT_EVENT_LIST_TASK] = "SELECT " EVENT_COLUMNS " FROM events WHERE task_id = ?1 ORDER BY seq",
	[STMT_EVENT_DELETE_TASK] = "DELETE FROM events WHERE task_id = ?1",
	[STMT_EVENT_COUNT_TASK] = "SELECT COUNT(*) FROM events WHERE task_id = ?1",
	[STMT_DROPS_GET] = "SELECT dropped FROM event_drops WHERE task_id = ?1",
	[STMT_DROPS_DELETE] = "DELETE FROM event_drops WHERE task_id = ?1",
	[STMT_HISTORY_INSERT] =
		"INSERT INTO history (task_id, uid, app_id, task_name, device, model, "
		"trigger_kind, entry_point, started, ended, result, reason, bytes_in, bytes_out) "
		"VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 0, 'running', '', 0, 0)",
	[STMT_HISTORY_END] =
		"UPDATE history SET ended = ?2, result = ?3, reason = ?4, bytes_in = ?5, "
		"bytes_out = ?6 WHERE id = ?1 AND ended = 0",
	[STMT_HISTORY_LIST_UID] =
		"SELECT " HISTORY_COLUMNS " FROM history WHERE uid = ?1 "
		"ORDER BY started DESC, id DESC LIMIT ?2",
	[STMT_HISTORY_LIST_APP] =
		"SELECT " HISTORY_COLUMNS " FROM history WHERE uid = ?1 AND app_id = ?2 "
		"ORDER BY started DESC, id DESC LIMIT ?3",
	[STMT_HISTORY_UNFINISHED] =
		"SELECT " HISTORY_COLUMNS " FROM history WHERE ended = 0 ORDER BY id",
	[STMT_DEVICE_SET] =
		"INSERT INTO device_info (device_key, key, value, updated) VALUES (?1, ?2, ?3, ?4) "
		"ON CONFLICT (device_key, key) DO UPDATE SET "
		"value = excluded.value, updated = excluded.updated",
	[STMT_DEVICE_UNSET] = "DELETE FROM device_info WHERE device_key = ?1 AND key = ?2",
	[STMT_DEVICE_GET] = "SELECT value FROM device_info WHERE device_key = ?1 AND key = ?2",
	[STMT_DEVICE_FORGET] = "DELETE FROM device_info WHERE device_key = ?1",
	[STMT_HISTORY_PRUNE] = "DELETE FROM history WHERE ended > 0 AND ended < ?1",
};

G_STATIC_ASSERT (G_N_ELEMENTS (stmt_sql) == STMT_LAST);

struct _BgsStore {
	GObject parent_instance;
	char *path;
	sqlite3 *db;
	sqlite3_stmt *stmts[STMT_LAST];
};

G_DEFINE_TYPE (BgsStore, bgs_store, G_TYPE_OBJECT)

/* a cached statement, reset (locks released, bindings cleared) on scope exit */
typedef sqlite3_stmt StoreStmtRef;

static void
stmt_release (StoreStmtRef *stmt)
{
	sqlite3_reset (stmt);
	sqlite3_clear_bindings (stmt);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC (StoreStmtRef, stmt_release)

static const char *const history_results[] = { "running", "completed", "failed", "canceled", NULL };

/* ---- value types ---- */

BgsRegistration *
bgs_registration_new (void)
{
	return g_new0 (BgsRegistration, 1);
}

BgsRegistration *
bgs_registration_copy (const BgsRegistration *r)
{
	BgsRegistration *copy;

	g_return_val_if_fail (r != NULL, NULL);
	copy = g_memdup2 (r, sizeof *r);
	copy->app_id = g_strdup (r->app_id);
	copy->name = g_strdup (r->name);
	copy->entry_point = g_strdup (r->entry_point);
	copy->custom_trigger = g_strdup (r->custom_trigger);
	return copy;
}

void
bgs_registration_free (BgsRegistration *r)
{
	if (r == NULL)
		return;
	g_free (r->app_id);
	g_free (r->name);
	g_free (r->entry_point);
	g_free (r->custom_trigger);
	g_free (r);
}

void
bgs_consent_free (BgsConsent *c)
{
	if (c == NULL)
		return;
	g_free (c->app_id);
	g_free (c->model);
	g_free (c);
}

BgsEvent *
bgs_event_new (gint64 task_id, guint32 uid, const char *app_id, BgsEventKind kind,
	       GVariant *data, gint64 time)
{
	BgsEvent *e = g_new0 (BgsEvent, 1);

	e->task_id = task_id;
	e->uid = uid;
	e->app_id = g_strdup (app_id);
	e->kind = kind;
	e->data = data != NULL ? g_variant_ref_sink (data) : NULL;
	e->time = time;
	return e;
}

void
bgs_event_free (BgsEvent *e)
{
	if (e == NULL)
		return;
	g_free (e->app_id);
	g_clear_pointer (&e->data, g_variant_unref);
	g_free (e);
}

BgsHistoryEntry *
bgs_history_entry_new (void)
{
	return g_new0 (BgsHistoryEntry, 1);
}

void
bgs_history_entry_free (BgsHistoryEntry *e)
{
	if (e == NULL)
		return;
	g_free (e->app_id);
	g_free (e->task_name);
	g_free (e->device);
	g_free (e->model);
	g_free (e->entry_point);
	g_free (e->result);
	g_free (e->reason);
	g_free (e);
}

/* ---- sqlite helpers ---- */

static int
sqlite_to_bgs_error (int rc)
{
	switch (rc & 0xff) {
	case SQLITE_CORRUPT:
	case SQLITE_NOTADB:
		return BGS_ERROR_CORRUPT;
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		return BGS_ERROR_BUSY;
	case SQLITE_CONSTRAINT:
		if (rc == SQLITE_CONSTRAINT_UNIQUE || rc == SQLITE_CONSTRAINT_PRIMARYKEY)
			return BGS_ERROR_ALREADY_EXISTS;
		return BGS_ERROR_FAILED;
	case SQLITE_IOERR:
	case SQLITE_FULL:
	case SQLITE_CANTOPEN:
	case SQLITE_READONLY:
	case SQLITE_PERM:
		return BGS_ERROR_IO;
	default:
		return BGS_ERROR_FAILED;
	}
}

static void
set_db_error (sqlite3 *db, const char *path, int rc, const char *what, GError **error)
{
	const char *msg = db != NULL ? sqlite3_errmsg (db) : sqlite3_errstr (rc);
	int code = sqlite_to_bgs_error (rc);

	if (code == BGS_ERROR_CORRUPT)
		g_set_error (error, BGS_ERROR, code, "database file '%s' is corrupt (%s): %s",
			     path, what, msg);
	else
		g_set_error (error, BGS_ERROR, code, "database file '%s': %s: %s", path, what, msg);
}

static gboolean
exec_sql (sqlite3 *db, const char *path, const char *sql, const char *what, GError **error)
{
	int rc = sqlite3_exec (db, sql, NULL, NULL, NULL);

	if (rc != SQLITE_OK) {
		set_db_error (db, path, sqlite3_extended_errcode (db), what, error);
		return FALSE;
	}
	return TRUE;
}

static StoreStmtRef *
stmt_get (BgsStore *self, StoreStmt which)
{
	/* reset again in case an earlier user bailed out without the cleanup */
	sqlite3_reset (self->stmts[which]);
	sqlite3_clear_bindings (self->stmts[which]);
	return self->stmts[which];
}

/* SQLITE_ROW or SQLITE_DONE, or -1 with @error set */
static int
stmt_step (BgsStore *self, sqlite3_stmt *stmt, const char *what, GError **error)
{
	int rc = sqlite3_step (stmt);

	if (rc == SQLITE_ROW || rc == SQLITE_DONE)
		return rc;
	set_db_error (self->db, self->path, sqlite3_extended_errcode (self->db), what, error);
	return -1;
}

static gboolean
stmt_run (BgsStore *self, sqlite3_stmt *stmt, const char *what, GError **error)
{
	return stmt_step (self, stmt, what, error) == SQLITE_DONE;
}

static void
bind_text (sqlite3_stmt *stmt, int idx, const char *text)
{
	/* SQLITE_TRANSIENT: the statement outlives the caller's strings */
	if (text == NULL)
		sqlite3_bind_null (stmt, idx);
	else
		sqlite3_bind_text (stmt, idx, text, -1, SQLITE_TRANSIENT);
}

static gboolean
tx_begin (BgsStore *self, GError **error)
{
	/* immediate: take the write lock now, so a busy database fails here
	 * and not halfway through a change */
	return exec_sql (self->db, self->path, "BEGIN IMMEDIATE", "begin transaction", error);
}

static gboolean
tx_commit (BgsStore *self, GError **error)
{
	return exec_sql (self->db, self->path, "COMMIT", "commit", error);
}

static void
tx_rollback (BgsStore *self)
{
	if (sqlite3_get_autocommit (self->db))
		return;
	if (sqlite3_exec (self->db, "ROLLBACK", NULL, NULL, NULL) != SQLITE_OK)
		g_warning ("%s: rollback failed: %s", self->path, sqlite3_errmsg (self->db));
}

/* ---- reading rows: everything read back is checked, the file may have
 * been edited by hand ---- */

static gboolean
row_text (sqlite3_stmt *stmt, int col, gboolean nullable, char **out, GError **error)
{
	const char *text;
	int len;

	if (sqlite3_column_type (stmt, col) == SQLITE_NULL) {
		if (nullable) {
			*out = NULL;
			return TRUE;
		}
		g_set_error (error, BGS_ERROR, BGS_ERROR_CORRUPT, "%s is NULL",
			     sqlite3_column_name (stmt, col));
		return FALSE;
	}
	text = (const char *) sqlite3_column_text (stmt, col);
	len = sqlite3_column_bytes (stmt, col);
	if (text == NULL) {
		g_set_error (error, BGS_ERROR, BGS_ERROR_FAILED, "out of memory reading %s",
			     sqlite3_column_name (stmt, col));
		return FALSE;
	}
	/* also rejects embedded NULs */
	if (!g_utf8_validate_len (text, len, NULL)) {
		g_set_error (error, BGS_ERROR, BGS_ERROR_CORRUPT, "%s is not valid UTF-8",
			     sqlite3_column_name (stmt, col));
		return FALSE;
	}
	*out = g_strndup (text, len);
	return TRUE;
}

static gboolean
row_int (sqlite3_stmt *stmt, int col, gint64 min, gint64 max, gint64 *out, GError **error)
{
	gint64 v;

	if (sqlite3_column_type (stmt, col) != SQLITE_INTEGER) {
		g_set_error (error, BGS_ERROR, BGS_ERROR_CORRUPT, "%s is not an integer",
			     sqlite3_column_name (stmt, col));
		return FALSE;
	}
	v = sqlite3_column_int64 (stmt, col);
	if (v < min || v > max) {
		g_set_error (error, BGS_ERROR, BGS_ERROR_CORRUPT,
			     "%s is out of range (%" G_GINT64_FORMAT ")",
			     sqlite3_column_name (stmt, col), v);
		return FALSE;
	}
	*out = v;
	return TRUE;
}

static gboolean
row_uid (sqlite3_stmt *stmt, int col, guint32 *out, GError **error)
{
	gint64 v;

	if (!row_int (stmt, col, 0, G_MAXUINT32, &v, error))
		return FALSE;
	*out = (guint32) v;
	return TRUE;
}

static gboolean
row_trigger (sqlite3_stmt *stmt, int col, BgsTriggerKind *out, GError **error)
{
	g_autofree char *str = NULL;

	if (!row_text (stmt, col, FALSE, &str, error))
		return FALSE;
	if (!bgs_trigger_kind_from_string (str, out)) {
		g_set_error (error, BGS_ERROR, BGS_ERROR_CORRUPT, "unknown trigger kind '%s'", str);
		return FALSE;
	}
	return TRUE;
}

static char *
conditions_to_string (BgsConditions conds)
{
	g_auto(GStrv) strv = bgs_conditions_to_strv (conds);

	return g_strjoinv (",", strv);
}

static gboolean
conditions_from_string (const char *str, BgsConditions *out, GError **error)
{
	g_auto(GStrv) strv = NULL;
	g_autoptr(GError) local = NULL;

	if (str[0] == '\0') {
		*out = BGS_CONDITION_NONE;
		return TRUE;
	}
	strv = g_strsplit (str, ",", -1);
	if (!bgs_conditions_from_strv ((const char *const *) strv, out, &local)) {
		g_set_error (error, BGS_ERROR, BGS_ERROR_CORRUPT, "conditions: %s", local->message);
		return FALSE;
	}
	return TRUE;
}

/* columns as in REG_COLUMNS */
static BgsRegistration *
registration_from_row (sqlite3_stmt *stmt, GError **error)
{
	g_autoptr(BgsRegistration) r = bgs_registration_new ();
	g_autofree char *recurrence = NULL;
	g_autofree char *conditions = NULL;
	gint64 uid;

	r->id = sqlite3_column_int64 (stmt, 0);
	if (!row_int (stmt, 1, 0, G_MAXUINT32, &uid, error) ||
	    !row_text (stmt, 2, FALSE, &r->app_id, error) ||
	    !row_text (stmt, 3, FALSE, &r->name, error) ||
	    !row_trigger (stmt, 4, &r->trigger, error) ||
	    !row_text (stmt, 5, FALSE, &r->entry_point, error) ||
	    !row_text (stmt, 6, TRUE, &r->custom_trigger, error) ||
	    !row_text (stmt, 7, FALSE, &recurrence, error) ||
	    !row_text (stmt, 8, FALSE, &conditions, error) ||
	    !row_int (stmt, 9, G_MININT64, G_MAXINT64, &r->created, error))
		goto fail;
	r->uid = (guint32) uid;
	if (!bgs_recurrence_from_string (recurrence, &r->recurrence)) {
		g_set_error (error, BGS_ERROR, BGS_ERROR_CORRUPT, "unknown recurrence '%s'", recurrence);
		goto fail;
	}
	if (!conditions_from_string (conditions, &r->conditions, error))
		goto fail;
	return g_steal_pointer (&r);
fail:
	g_prefix_error (error, "registrations row %" G_GINT64_FORMAT ": ", r->id);
	return NULL;
}

/* columns as in EVENT_COLUMNS */
static BgsEvent *
event_from_row (sqlite3_stmt *stmt, GError **error)
{
	g_autoptr(BgsEvent) e = g_new0 (BgsEvent, 1);
	g_autofree char *kind = NULL;
	g_autofree char *data = NULL;
	g_autoptr(GError) local = NULL;

	e->seq = sqlite3_column_int64 (stmt, 0);
	if (!row_int (stmt, 1, G_MININT64, G_MAXINT64, &e->task_id, error) ||
	    !row_uid (stmt, 2, &e->uid, error) ||
	    !row_text (stmt, 3, FALSE, &e->app_id, error) ||
	    !row_text (stmt, 4, FALSE, &kind, error) ||
	    !row_text (stmt, 5, FALSE, &data, error) ||
	    !row_int (stmt, 6, G_MININT64, G_MAXINT64, &e->time, error))
		goto fail;
	if (!bgs_event_kind_from_string (kind, &e->kind)) {
		g_set_error (error, BGS_ERROR, BGS_ERROR_CORRUPT, "unknown event kind '%s'", kind);
		goto fail;
	}
	e->data = g_variant_parse (G_VARIANT_TYPE_VARDICT, data, NULL, NULL, &local);
	if (e->data == NULL) {
		g_set_error (error, BGS_ERROR, BGS_ERROR_CORRUPT, "payload does not parse: %s",
			     local->message);
		goto fail;
	}
	/* g_variant_parse gives a full reference already */
	return g_steal_pointer (&e);
fail:
	g_prefix_error (error, "events row %" G_GINT64_FORMAT ": ", e->seq);
	return NULL;
}

/* columns as in HISTORY_COLUMNS */
static BgsHistoryEntry *
history_from_row (sqlite3_stmt *stmt, GError **error)
{
	g_autoptr(BgsHistoryEntry) e = bgs_history_entry_new ();
	gint64 bytes_in, bytes_out;

	e->id = sqlite3_column_int64 (stmt, 0);
	if (!row_int (stmt, 1, G_MININT64, G_MAXINT64, &e->task_id, error) ||
	    !row_uid (stmt, 2, &e->uid, error) ||
	    !row_text (stmt, 3, FALSE, &e->app_id, error) ||
	    !row_text (stmt, 4, FALSE, &e->task_name, error) ||
	    !row_text (stmt, 5, FALSE, &e->device, error) ||
	    !row_text (stmt, 6, FALSE, &e->model, error) ||
	    !row_trigger (stmt, 7, &e->trigger, error) ||
	    !row_text (stmt, 8, FALSE, &e->entry_point, error) ||
	    !row_int (stmt, 9, G_MININT64, G_MAXINT64, &e->started, error) ||
	    !row_int (stmt, 10, 0, G_MAXINT64, &e->ended, error) ||
	    !row_text (stmt, 11, FALSE, &e->result, error) ||
	    !row_text (stmt, 12, FALSE, &e->reason, error) ||
	    !row_int (stmt, 13, G_MININT64, G_MAXINT64, &bytes_in, error) ||
	    !row_int (stmt, 14, G_MININT64, G_MAXINT64, &bytes_out, error))
		goto fail;
	if (!g_strv_contains (history_results, e->result)) {
		g_set_error (error, BGS_ERROR, BGS_ERROR_CORRUPT, "unknown result '%s'", e->result);
		goto fail;
	}
	/* stored as the signed 64-bit bit pattern */
	e->bytes_in = (guint64) bytes_in;
	e->bytes_out = (guint64) bytes_out;
	return g_steal_pointer (&e);
fail:
	g_prefix_error (error, "history row %" G_GINT64_FORMAT ": ", e->id);
	return NULL;
}

typedef gpointer (*RowFunc) (sqlite3_stmt *stmt, GError **error);

/* steps @stmt to the end; rows that do not parse are skipped with a warning */
static GPtrArray *
collect_rows (BgsStore *self, sqlite3_stmt *stmt, RowFunc func, GDestroyNotify free_func,
	      const char *what, GError **error)
{
	g_autoptr(GPtrArray) rows = g_ptr_array_new_with_free_func (free_func);
	int rc;

	while ((rc = stmt_step (self, stmt, what, error)) == SQLITE_ROW) {
		g_autoptr(GError) local = NULL;
		gpointer row = func (stmt, &local);

		if (row == NULL) {
			g_warning ("%s: skipping a damaged row: %s", self->path, local->message);
			continue;
		}
		g_ptr_array_add (rows, row);
	}
	if (rc < 0)
		return NULL;
	return g_steal_pointer (&rows);
}

/* ---- opening ---- */

static guint32
be32 (const guint8 *p)
{
	return ((guint32) p[0] << 24) | ((guint32) p[1] << 16) | ((guint32) p[2] << 8) | p[3];
}

static gboolean
sidecar_exists (const char *path, const char *suffix)
{
	g_autofree char *name = g_strconcat (path, suffix, NULL);

	return g_file_test (name, G_FILE_TEST_EXISTS);
}

/* cheap checks before sqlite sees the file, so a file that is not ours or
 * plainly damaged is refused without being touched (sqlite would treat an
 * empty file as a new database and write to it) */
static gboolean
check_file (const char *path, GError **error)
{
	guint8 header[100];
	struct stat st;
	gssize n;
	int fd;
	guint32 page_size;

	fd = open (path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		int errsv = errno;

		g_set_error (error, BGS_ERROR, BGS_ERROR_IO, "cannot open database file '%s': %s",
			     path, errsv == ELOOP ? "it is a symbolic link" : g_strerror (errsv));
		return FALSE;
	}
	if (fstat (fd, &st) < 0 || !S_ISREG (st.st_mode)) {
		g_set_error (error, BGS_ERROR, BGS_ERROR_IO,
			     "database file '%s' is not a regular file", path);
		close (fd);
		return FALSE;
	}
	do
		n = pread (fd, header, sizeof header, 0);
	while (n < 0 && errno == EINTR);
	close (fd);
	if (n < 0) {
		g_set_error (error, BGS_ERROR, BGS_ERROR_IO, "cannot read database file '%s': %s",
			     path, g_strerror (errno));
		return FALSE;
	}
	if (st.st_size == 0) {
		/* we create files complete and rename them in place, so an empty
		 * one is not ours: leave it to the admin */
		g_set_error (error, BGS_ERROR, BGS_ERROR_CORRUPT,
			     "database file '%s' is corrupt: the file is empty", path);
		return FALSE;
	}
	if (n < (gssize) sizeof header) {
		g_set_error (error, BGS_ERROR, BGS_ERROR_CORRUPT,
			     "database file '%s' is corrupt: only %" G_GINT64_FORMAT
			     " bytes, too short for an SQLite database",
			     path, (gint64) st.st_size);
		return FALSE;
	}
	if (memcmp (header, "SQLite format 3", 16) != 0) {
		g_set_error (error, BGS_ERROR, BGS_ERROR_CORRUPT,
			     "database file '%s' is corrupt: not an SQLite 3 database (bad header)",
			     path);
		return FALSE;
	}
	page_size = ((guint32) header[16] << 8) | header[17];
	if (page_size == 1)
		page_size = 65536;
	if (page_size < 512 || page_size > 65536 || (page_size & (page_size - 1)) != 0) {
		g_set_error (error, BGS_ERROR, BGS_ERROR_CORRUPT,
			     "database file '%s' is corrupt: invalid page size %u in the header",
			     path, page_size);
		return FALSE;
	}
	/* with a journal or WAL beside it the file may legitimately be mid
	 * recovery; sqlite sorts that out and quick_check judges the result */
	if (!sidecar_exists (path, "-wal") && !sidecar_exists (path, "-journal")) {
		guint32 n_pages = be32 (header + 28);
		gboolean n_pages_valid = n_pages > 0 && be32 (header + 24) == be32 (header + 92);

		if (st.st_size % page_size != 0) {
			g_set_error (error, BGS_ERROR, BGS_ERROR_CORRUPT,
				     "database file '%s' is corrupt: truncated, its size %" G_GINT64_FORMAT
				     " is not a multiple of the page size %u",
				     path, (gint64) st.st_size, page_size);
			return FALSE;
		}
		if (n_pages_valid && (guint64) st.st_size < (guint64) n_pages * page_size) {
			g_set_error (error, BGS_ERROR, BGS_ERROR_CORRUPT,
				     "database file '%s' is corrupt: truncated, %" G_GINT64_FORMAT
				     " bytes but the header says %u pages of %u bytes",
				     path, (gint64) st.st_size, n_pages, page_size);
			return FALSE;
		}
	}
	return TRUE;
}

static int
open_flags (void)
{
	int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX;

#ifdef SQLITE_OPEN_NOFOLLOW
	flags |= SQLITE_OPEN_NOFOLLOW;
#endif
#ifdef SQLITE_OPEN_EXRESCODE
	flags |= SQLITE_OPEN_EXRESCODE;
#endif
	return flags;
}

static sqlite3 *
db_open (const char *path, GError **error)
{
	sqlite3 *db = NULL;
	int rc = sqlite3_open_v2 (path, &db, open_flags (), NULL);

	if (rc != SQLITE_OK) {
		set_db_error (db, path, db != NULL ? sqlite3_extended_errcode (db) : rc, "open", error);
		sqlite3_close (db);
		return NULL;
	}
	sqlite3_extended_result_codes (db, 1);
	sqlite3_busy_timeout (db, BUSY_TIMEOUT_MS);
	/* a hand-edited schema must not run functions from views or triggers,
	 * and SQL must not be able to corrupt the file on purpose */
#ifdef SQLITE_DBCONFIG_TRUSTED_SCHEMA
	sqlite3_db_config (db, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, NULL);
#endif
#ifdef SQLITE_DBCONFIG_DEFENSIVE
	sqlite3_db_config (db, SQLITE_DBCONFIG_DEFENSIVE, 1, NULL);
#endif
	return db;
}

/* runs the steps from @from to the current version; the caller holds a
 * write transaction so all steps land together or not at all */
static gboolean
migrate_steps (sqlite3 *db, const char *path, gint64 from, GError **error)
{
	for (gint64 v = from; v < BGS_STORE_SCHEMA_VERSION; v++) {
		g_autofree char *what = g_strdup_printf ("migration to schema version %"
							 G_GINT64_FORMAT, v + 1);

		if (!exec_sql (db, path, migrations[v], what, error))
			return FALSE;
		g_debug ("%s: migrated to schema version %" G_GINT64_FORMAT, path, v + 1);
	}
	return TRUE;
}

/* a complete, current database in a temporary file, then linked in place:
 * the path never holds a half-made database */
static gboolean
create_file (const char *path, GError **error)
{
	g_autofree char *dir = g_path_get_dirname (path);
	g_autofree char *tmp = g_strconcat (path, ".new-XXXXXX", NULL);
	sqlite3 *db;
	gboolean ok;
	int fd;

	if (g_mkdir_with_parents (dir, 0700) < 0) {
		g_set_error (error, BGS_ERROR, BGS_ERROR_IO, "cannot create directory '%s': %s",
			     dir, g_strerror (errno));
		return FALSE;
	}
	fd = g_mkstemp_full (tmp, O_RDWR | O_CLOEXEC, 0600);
	if (fd < 0) {
		g_set_error (error, BGS_ERROR, BGS_ERROR_IO, "cannot create database file '%s': %s",
			     tmp, g_strerror (errno));
		return FALSE;
	}
	close (fd);

	db = db_open (tmp, error);
	ok = db != NULL &&
	     exec_sql (db, tmp, "BEGIN IMMEDIATE", "begin transaction", error) &&
	     migrate_steps (db, tmp, 0, error) &&
	     exec_sql (db, tmp, "COMMIT", "commit", error);
	if (db != NULL && sqlite3_close (db) != SQLITE_OK && ok) {
		g_set_error (error, BGS_ERROR, BGS_ERROR_IO, "cannot close database file '%s'", tmp);
		ok = FALSE;
	}
	if (ok && link (tmp, path) < 0 && errno != EEXIST) {
		/* no hard links on this filesystem: rename, losing only the
		 * protection against a concurrent creator */
		if (rename (tmp, path) < 0) {
			g_set_error (error, BGS_ERROR, BGS_ERROR_IO,
				     "cannot move database file into place as '%s': %s",
				     path, g_strerror (errno));
			ok = FALSE;
		}
	}
	g_unlink (tmp);
	if (ok) {
		int dfd = open (dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

		if (dfd >= 0) {
			fsync (dfd);
			close (dfd);
		}
	}
	return ok;
}

/* -1 with @error when the file has no usable schema table */
static gint64
read_version (sqlite3 *db, const char *path, GError **error)
{
	sqlite3_stmt *stmt = NULL;
	gint64 version = -1;
	int rc;

	rc = sqlite3_prepare_v2 (db, "SELECT version FROM schema", -1, &stmt, NULL);
	if (rc != SQLITE_OK) {
		rc = sqlite3_extended_errcode (db);
		if ((rc & 0xff) == SQLITE_ERROR)
			g_set_error (error, BGS_ERROR, BGS_ERROR_CORRUPT,
				     "database file '%s' is corrupt: not a bgsync database (%s)",
				     path, sqlite3_errmsg (db));
		else
			set_db_error (db, path, rc, "reading the schema version", error);
		return -1;
	}
	rc = sqlite3_step (stmt);
	if (rc == SQLITE_ROW && sqlite3_column_type (stmt, 0) == SQLITE_INTEGER)
		version = sqlite3_column_int64 (stmt, 0);
	if (rc == SQLITE_ROW && sqlite3_step (stmt) != SQLITE_DONE)
		version = -1;
	if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
		set_db_error (db, path, sqlite3_extended_errcode (db), "reading the schema version", error);
		sqlite3_finalize (stmt);
		return -1;
	}
	sqlite3_finalize (stmt);
	if (version < 1) {
		g_set_error (error, BGS_ERROR, BGS_ERROR_CORRUPT,
			     "database file '%s' is corrupt: the schema table does not hold "
			     "exactly one valid version", path);
		return -1;
	}
	return version;
}

static gboolean
quick_check (sqlite3 *db, const char *path, GError **error)
{
	sqlite3_stmt *stmt = NULL;
	g_autoptr(GString) problems = g_string_new (NULL);
	guint n_problems = 0;
	int rc;

	rc = sqlite3_prepare_v2 (db, "PRAGMA quick_check", -1, &stmt, NULL);
	if (rc != SQLITE_OK) {
		set_db_error (db, path, sqlite3_extended_errcode (db), "checking integrity", error);
		return FALSE;
	}
	while ((rc = sqlite3_step (stmt)) == SQLITE_ROW) {
		const char *line = (const char *) sqlite3_column_text (stmt, 0);

		if (g_strcmp0 (line, "ok") == 0)
			continue;
		/* the first few are enough to name the damage */
		if (n_problems++ < 3)
			g_string_append_printf (problems, "%s%s", problems->len > 0 ? "; " : "",
						line != NULL ? line : "(null)");
	}
	if (rc != SQLITE_DONE) {
		set_db_error (db, path, sqlite3_extended_errcode (db), "checking integrity", error);
		sqlite3_finalize (stmt);
		return FALSE;
	}
	sqlite3_finalize (stmt);
	if (n_problems > 0) {
		g_set_error (error, BGS_ERROR, BGS_ERROR_CORRUPT,
			     "database file '%s' is corrupt: integrity check found %u problem%s: %s",
			     path, n_problems, n_problems == 1 ? "" : "s", problems->str);
		return FALSE;
	}
	return TRUE;
}

static gint64
check_version (sqlite3 *db, const char *path, GError **error)
{
	gint64 version = read_version (db, path, error);

	if (version > BGS_STORE_SCHEMA_VERSION) {
		g_set_error (error, BGS_ERROR, BGS_ERROR_NOT_SUPPORTED,
			     "database file '%s' has schema version %" G_GINT64_FORMAT
			     ", newer than version %d this bgsync knows; refusing to open it "
			     "(was bgsync downgraded?)", path, version, BGS_STORE_SCHEMA_VERSION);
		return -1;
	}
	return version;
}

/* the checks on a connection that cannot change anything: immutable means
 * no locks, no journal or WAL recovery and no files created beside it. only
 * valid when there is no journal or WAL to recover from. */
static gboolean
check_untouched (const char *path, GError **error)
{
	g_autofree char *escaped = g_uri_escape_string (path, "/", FALSE);
	g_autofree char *uri = g_strconcat ("file:", escaped, "?immutable=1", NULL);
	sqlite3 *db = NULL;
	gboolean ok;
	int flags = SQLITE_OPEN_READONLY | SQLITE_OPEN_URI | SQLITE_OPEN_NOMUTEX;
	int rc;

#ifdef SQLITE_OPEN_NOFOLLOW
	flags |= SQLITE_OPEN_NOFOLLOW;
#endif
	rc = sqlite3_open_v2 (uri, &db, flags, NULL);
	if (rc != SQLITE_OK) {
		set_db_error (db, path, db != NULL ? sqlite3_extended_errcode (db) : rc, "open", error);
		sqlite3_close (db);
		return FALSE;
	}
#ifdef SQLITE_DBCONFIG_TRUSTED_SCHEMA
	sqlite3_db_config (db, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, NULL);
#endif
	ok = quick_check (db, path, error) && check_version (db, path, error) > 0;
	sqlite3_close (db);
	return ok;
}

/* checks (unless done already), then migrates inside one write transaction */
static gboolean
check_and_migrate (BgsStore *self, gboolean checked, GError **error)
{
	gint64 version;

	if (!checked && !quick_check (self->db, self->path, error))
		return FALSE;
	version = check_version (self->db, self->path, error);
	if (version < 0)
		return FALSE;
	if (version == BGS_STORE_SCHEMA_VERSION)
		return TRUE;

	if (!tx_begin (self, error))
		return FALSE;
	/* read again under the write lock: another process may have migrated */
	version = read_version (self->db, self->path, error);
	if (version < 0 || !migrate_steps (self->db, self->path, version, error) ||
	    !tx_commit (self, error)) {
		tx_rollback (self);
		return FALSE;
	}
	g_info ("%s: migrated from schema version %" G_GINT64_FORMAT " to %d",
		self->path, version, BGS_STORE_SCHEMA_VERSION);
	return TRUE;
}

static gboolean
configure (BgsStore *self, GError **error)
{
	sqlite3_stmt *stmt = NULL;
	gboolean wal = FALSE;

	if (sqlite3_prepare_v2 (self->db, "PRAGMA journal_mode = WAL", -1, &stmt, NULL) == SQLITE_OK &&
	    sqlite3_step (stmt) == SQLITE_ROW)
		wal = g_ascii_strcasecmp ((const char *) sqlite3_column_text (stmt, 0), "wal") == 0;
	sqlite3_finalize (stmt);
	if (!wal)
		g_warning ("%s: cannot use a WAL journal, using the default: %s",
			   self->path, sqlite3_errmsg (self->db));
	/* FULL: a committed change survives power loss, writes are rare */
	return exec_sql (self->db, self->path, "PRAGMA synchronous = FULL", "configure", error);
}

static gboolean
prepare_all (BgsStore *self, GError **error)
{
	for (guint i = 0; i < STMT_LAST; i++) {
		int rc = sqlite3_prepare_v3 (self->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
					     &self->stmts[i], NULL);

		if (rc != SQLITE_OK) {
			g_set_error (error, BGS_ERROR, BGS_ERROR_CORRUPT,
				     "database file '%s' is corrupt: its tables do not match "
				     "schema version %d: %s",
				     self->path, BGS_STORE_SCHEMA_VERSION, sqlite3_errmsg (self->db));
			return FALSE;
		}
	}
	return TRUE;
}

static void
store_close (BgsStore *self, gboolean refused, gboolean keep_wal)
{
	if (self->db == NULL)
		return;
	for (guint i = 0; i < STMT_LAST; i++)
		g_clear_pointer (&self->stmts[i], sqlite3_finalize);
	/* keeps planner statistics fresh; cheap, and mostly a no-op. never
	 * on a file we refused: that one is not ours to write */
	if (!refused && sqlite3_exec (self->db, "PRAGMA optimize", NULL, NULL, NULL) != SQLITE_OK)
		g_debug ("%s: optimize: %s", self->path, sqlite3_errmsg (self->db));
#ifdef SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE
	/* a file we refused keeps any WAL beside it as it was */
	if (keep_wal)
		sqlite3_db_config (self->db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, NULL);
#endif
	if (sqlite3_close (self->db) != SQLITE_OK)
		g_warning ("%s: close failed: %s", self->path, sqlite3_errmsg (self->db));
	self->db = NULL;
}

BgsStore *
bgs_store_open (const char *path, GError **error)
{
	g_autoptr(BgsStore) self = NULL;
	gboolean had_wal, checked;
	struct stat st;

	g_return_val_if_fail (path != NULL, NULL);
	g_return_val_if_fail (error == NULL || *error == NULL, NULL);

	self = g_object_new (BGS_TYPE_STORE, NULL);
	self->path = g_strdup (path);

	if (lstat (path, &st) < 0) {
		if (errno != ENOENT) {
			g_set_error (error, BGS_ERROR, BGS_ERROR_IO, "cannot open database file '%s': %s",
				     path, g_strerror (errno));
			return NULL;
		}
		if (!create_file (path, error))
			return NULL;
		g_info ("%s: created at schema version %d", path, BGS_STORE_SCHEMA_VERSION);
	}
	if (!check_file (path, error))
		return NULL;

	/* with no journal or WAL beside it the file needs no recovery: judge it
	 * read-only first, so a file we refuse is never opened for writing */
	had_wal = sidecar_exists (path, "-wal");
	checked = !had_wal && !sidecar_exists (path, "-journal");
	if (checked && !check_untouched (path, error))
		return NULL;

	self->db = db_open (path, error);
	if (self->db == NULL)
		return NULL;
	/* sqlite quietly falls back to read-only on a write-protected file;
	 * better to fail now than at the first change */
	if (sqlite3_db_readonly (self->db, "main") == 1) {
		g_set_error (error, BGS_ERROR, BGS_ERROR_IO,
			     "database file '%s' is not writable", path);
		store_close (self, TRUE, TRUE);
		return NULL;
	}
	if (!check_and_migrate (self, checked, error) || !configure (self, error) ||
	    !prepare_all (self, error)) {
		/* a WAL we found stays as it was; one our own connection made
		 * is empty and goes away on close as usual */
		store_close (self, TRUE, had_wal);
		return NULL;
	}
	return g_steal_pointer (&self);
}

const char *
bgs_store_get_path (BgsStore *self)
{
	g_return_val_if_fail (BGS_IS_STORE (self), NULL);
	return self->path;
}

static void
bgs_store_finalize (GObject *object)
{
	BgsStore *self = BGS_STORE (object);

	store_close (self, FALSE, FALSE);
	g_free (self->path);
	G_OBJECT_CLASS (bgs_store_parent_class)->finalize (object);
}

static void
bgs_store_class_init (BgsStoreClass *klass)
{
	G_OBJECT_CLASS (klass)->finalize = bgs_store_finalize;
}

static void
bgs_store_init (BgsStore *self)
{
}

/* ---- registrations ---- */

gboolean
bgs_store_add_registration (BgsStore *self, BgsRegistration *reg, GError **error)
{
	g_autoptr(StoreStmtRef) st = NULL;
	g_autofree char *conditions = NULL;

	g_return_val_if_fail (BGS_IS_STORE (self), FALSE);
	g_return_val_if_fail (reg != NULL, FALSE);

	if (reg->app_id == NULL || reg->name == NULL || reg->entry_point == NULL ||
	    (guint) reg->trigger >= BGS_TRIGGER_LAST || (guint) reg->recurrence >= BGS_RECURRENCE_LAST) {
		g_set_error_literal (error, BGS_ERROR, BGS_ERROR_INVALID_ARGS,
				     "registration lacks app id, name or entry point, or has an "
				     "invalid trigger or recurrence");
		return FALSE;
	}
	conditions = conditions_to_string (reg->conditions);

	st = stmt_get (self, STMT_REG_INSERT);
	sqlite3_bind_int64 (st, 1, reg->uid);
	bind_text (st, 2, reg->app_id);
	bind_text (st, 3, reg->name);
	bind_text (st, 4, bgs_trigger_kind_to_string (reg->trigger));
	bind_text (st, 5, reg->entry_point);
	bind_text (st, 6, reg->custom_trigger);
	bind_text (st, 7, bgs_recurrence_to_string (reg->recurrence));
	bind_text (st, 8, conditions);
	sqlite3_bind_int64 (st, 9, reg->created);
	/* a single statement is its own transaction */
	if (!stmt_run (self, st, "adding a registration", error)) {
		if (error != NULL && g_error_matches (*error, BGS_ERROR, BGS_ERROR_ALREADY_EXISTS)) {
			g_clear_error (error);
			g_set_error (error, BGS_ERROR, BGS_ERROR_ALREADY_EXISTS,
				     "app '%s' of uid %u already registered a task named '%s'",
				     reg->app_id, reg->uid, reg->name);
		}
		return FALSE;
	}
	reg->id = sqlite3_last_insert_rowid (self->db);
	return TRUE;
}

gboolean
bgs_store_remove_registration (BgsStore *self, gint64 id, GError **error)
{
	g_return_val_if_fail (BGS_IS_STORE (self), FALSE);

	if (!tx_begin (self, error))
		return FALSE;
	{
		g_autoptr(StoreStmtRef) st = stmt_get (self, STMT_REG_DELETE);

		sqlite3_bind_int64 (st, 1, id);
		if (!stmt_run (self, st, "removing a registration", error))
			goto fail;
		if (sqlite3_changes (self->db) == 0) {
			g_set_error (error, BGS_ERROR, BGS_ERROR_NOT_FOUND,
				     "no registered task %" G_GINT64_FORMAT, id);
			goto fail;
		}
	}
	{
		g_autoptr(StoreStmtRef) st = stmt_get (self, STMT_EVENT_DELETE_TASK);

		sqlite3_bind_int64 (st, 1, id);
		if (!stmt_run (self, st, "removing a task's events", error))
			goto fail;
	}
	{
		g_autoptr(StoreStmtRef) st = stmt_get (self, STMT_DROPS_DELETE);

		sqlite3_bind_int64 (st, 1, id);
		if (!stmt_run (self, st, "removing a task's drop count", error))
			goto fail;
	}
	if (!tx_commit (self, error))
		goto fail;
	return TRUE;
fail:
	tx_rollback (self);
	return FALSE;
}

GPtrArray *
bgs_store_list_registrations (BgsStore *self, GError **error)
{
	g_autoptr(StoreStmtRef) st = NULL;

	g_return_val_if_fail (BGS_IS_STORE (self), NULL);
	st = stmt_get (self, STMT_REG_LIST);
	return collect_rows (self, st, (RowFunc) registration_from_row,
			     (GDestroyNotify) bgs_registration_free, "listing registrations", error);
}

BgsRegistration *
bgs_store_get_registration (BgsStore *self, gint64 id, GError **error)
{
	g_autoptr(StoreStmtRef) st = NULL;
	int rc;

	g_return_val_if_fail (BGS_IS_STORE (self), NULL);
	st = stmt_get (self, STMT_REG_GET);
	sqlite3_bind_int64 (st, 1, id);
	rc = stmt_step (self, st, "reading a registration", error);
	if (rc < 0)
		return NULL;
	if (rc == SQLITE_DONE) {
		g_set_error (error, BGS_ERROR, BGS_ERROR_NOT_FOUND,
			     "no registered task %" G_GINT64_FORMAT, id);
		return NULL;
	}
	return registration_from_row (st, error);
}

/* ---- consents ---- */

gboolean
bgs_store_set_consent (BgsStore *self, guint32 uid, const char *app_id, const char *model,
		       gboolean allowed, gint64 time, GError **error)
{
	g_autoptr(StoreStmtRef) st = NULL;

	g_return_val_if_fail (BGS_IS_STORE (self), FALSE);
	if (app_id == NULL || model == NULL) {
		g_set_error_literal (error, BGS_ERROR, BGS_ERROR_INVALID_ARGS,
				     "a consent needs an app id and a device model");
		return FALSE;
	}
	st = stmt_get (self, STMT_CONSENT_UPSERT);
	sqlite3_bind_int64 (st, 1, uid);
	bind_text (st, 2, app_id);
	bind_text (st, 3, model);
	sqlite3_bind_int (st, 4, allowed ? 1 : 0);
	sqlite3_bind_int64 (st, 5, time);
	return stmt_run (self, st, "storing a consent", error);
}

gboolean
bgs_store_get_consent (BgsStore *self, guint32 uid, const char *app_id, const char *model,
		       gboolean *found, gboolean *allowed, GError **error)
{
	g_autoptr(StoreStmtRef) st = NULL;
	g_autoptr(GError) local = NULL;
	gint64 value;
	int rc;

	g_return_val_if_fail (BGS_IS_STORE (self), FALSE);
	g_return_val_if_fail (app_id != NULL && model != NULL, FALSE);

	if (found != NULL)
		*found = FALSE;
	if (allowed != NULL)
		*allowed = FALSE;
	st = stmt_get (self, STMT_CONSENT_GET);
	sqlite3_bind_int64 (st, 1, uid);
	bind_text (st, 2, app_id);
	bind_text (st, 3, model);
	rc = stmt_step (self, st, "reading a consent", error);
	if (rc < 0)
		return FALSE;
	if (rc == SQLITE_DONE)
		return TRUE;
	/* a decision that is neither 0 nor 1 was not written by us: fail
	 * rather than guess in either direction */
	if (!row_int (st, 0, 0, 1, &value, &local)) {
		g_set_error (error, BGS_ERROR, BGS_ERROR_CORRUPT,
			     "database file '%s': consent of uid %u app '%s' model '%s': %s",
			     self->path, uid, app_id, model, local->message);
		return FALSE;
	}
	if (found != NULL)
		*found = TRUE;
	if (allowed != NULL)
		*allowed = value == 1;
	return TRUE;
}

static BgsConsent *
consent_from_row (sqlite3_stmt *stmt, GError **error)
{
	g_autoptr(BgsConsent) c = g_new0 (BgsConsent, 1);
	gint64 allowed;

	if (!row_uid (stmt, 0, &c->uid, error) ||
	    !row_text (stmt, 1, FALSE, &c->app_id, error) ||
	    !row_text (stmt, 2, FALSE, &c->model, error) ||
	    !row_int (stmt, 3, 0, 1, &allowed, error) ||
	    !row_int (stmt, 4, G_MININT64, G_MAXINT64, &c->time, error)) {
		g_prefix_error (error, "consents row: ");
		return NULL;
	}
	c->allowed = allowed == 1;
	return g_steal_pointer (&c);
}

GPtrArray *
bgs_store_list_consents (BgsStore *self, guint32 uid, const char *app_id, GError **error)
{
	g_autoptr(StoreStmtRef) st = NULL;

	g_return_val_if_fail (BGS_IS_STORE (self), NULL);
	st = stmt_get (self, STMT_CONSENT_LIST);
	sqlite3_bind_int64 (st, 1, uid);
	bind_text (st, 2, app_id);
	return collect_rows (self, st, (RowFunc) consent_from_row,
			     (GDestroyNotify) bgs_consent_free, "listing consents", error);
}

gboolean
bgs_store_revoke_consents (BgsStore *self, guint32 uid, const char *app_id, const char *model,
			   guint *n_removed, GError **error)
{
	g_autoptr(StoreStmtRef) st = NULL;

	g_return_val_if_fail (BGS_IS_STORE (self), FALSE);
	if (n_removed != NULL)
		*n_removed = 0;
	st = stmt_get (self, STMT_CONSENT_REVOKE);
	sqlite3_bind_int64 (st, 1, uid);
	bind_text (st, 2, app_id);
	bind_text (st, 3, model);
	if (!stmt_run (self, st, "revoking consents", error))
		return FALSE;
	if (n_removed != NULL)
		*n_removed = (guint) sqlite3_changes (self->db);
	return TRUE;
}

/* ---- events ---- */

static gboolean
event_check_owner (BgsStore *self, const BgsEvent *ev, GError **error)
{
	g_autoptr(StoreStmtRef) st = stmt_get (self, STMT_REG_OWNER);
	const char *app_id;
	int rc;

	sqlite3_bind_int64 (st, 1, ev->task_id);
	rc = stmt_step (self, st, "looking up the event's task", error);
	if (rc < 0)
		return FALSE;
	if (rc == SQLITE_DONE) {
		g_set_error (error, BGS_ERROR, BGS_ERROR_NOT_FOUND,
			     "no registered task %" G_GINT64_FORMAT, ev->task_id);
		return FALSE;
	}
	app_id = (const char *) sqlite3_column_text (st, 1);
	if ((guint32) sqlite3_column_int64 (st, 0) != ev->uid || g_strcmp0 (app_id, ev->app_id) != 0) {
		g_set_error (error, BGS_ERROR, BGS_ERROR_INVALID_ARGS,
			     "task %" G_GINT64_FORMAT " does not belong to app '%s' of uid %u",
			     ev->task_id, ev->app_id, ev->uid);
		return FALSE;
	}
	return TRUE;
}

/* the oldest events of (uid, app) beyond @max go, counted per task */
static gboolean
event_enforce_bound (BgsStore *self, guint32 uid, const char *app_id, guint max, GError **error)
{
	gint64 count, excess;

	{
		g_autoptr(StoreStmtRef) st = stmt_get (self, STMT_EVENT_COUNT_APP);

		sqlite3_bind_int64 (st, 1, uid);
		bind_text (st, 2, app_id);
		if (stmt_step (self, st, "counting an app's events", error) != SQLITE_ROW)
			return FALSE;
		count = sqlite3_column_int64 (st, 0);
	}
	excess = count - (gint64) max;
	if (excess <= 0)
		return TRUE;
	{
		g_autoptr(StoreStmtRef) st = stmt_get (self, STMT_EVENT_DROP_COUNT_OLDEST);

		sqlite3_bind_int64 (st, 1, uid);
		bind_text (st, 2, app_id);
		sqlite3_bind_int64 (st, 3, excess);
		if (!stmt_run (self, st, "counting dropped events", error))
			return FALSE;
	}
	{
		g_autoptr(StoreStmtRef) st = stmt_get (self, STMT_EVENT_DELETE_OLDEST);

		sqlite3_bind_int64 (st, 1, uid);
		bind_text (st, 2, app_id);
		sqlite3_bind_int64 (st, 3, excess);
		if (!stmt_run (self, st, "dropping old events", error))
			return FALSE;
	}
	g_debug ("%s: dropped %" G_GINT64_FORMAT " old events of app '%s' uid %u",
		 self->path, excess, app_id, uid);
	return TRUE;
}

gboolean
bgs_store_queue_event (BgsStore *self, BgsEvent *ev, guint max_per_app, GError **error)
{
	g_autoptr(GVariant) empty = NULL;
	g_autoptr(GVariant) reparsed = NULL;
	g_autofree char *data = NULL;
	GVariant *payload;

	g_return_val_if_fail (BGS_IS_STORE (self), FALSE);
	g_return_val_if_fail (ev != NULL, FALSE);

	if (ev->app_id == NULL || (guint) ev->kind >= BGS_EVENT_LAST) {
		g_set_error_literal (error, BGS_ERROR, BGS_ERROR_INVALID_ARGS,
				     "an event needs an app id and a valid kind");
		return FALSE;
	}
	if (ev->data != NULL && !g_variant_is_of_type (ev->data, G_VARIANT_TYPE_VARDICT)) {
		g_set_error (error, BGS_ERROR, BGS_ERROR_INVALID_ARGS,
			     "event data must be a{sv}, not %s", g_variant_get_type_string (ev->data));
		return FALSE;
	}
	if (ev->data == NULL)
		empty = g_variant_ref_sink (g_variant_new ("a{sv}", NULL));
	payload = ev->data != NULL ? ev->data : empty;
	data = g_variant_print (payload, TRUE);
	/* only store what we can read back (the text form has corner cases,
	 * e.g. NaN doubles) */
	reparsed = g_variant_parse (G_VARIANT_TYPE_VARDICT, data, NULL, NULL, NULL);
	if (reparsed == NULL) {
		g_set_error_literal (error, BGS_ERROR, BGS_ERROR_INVALID_ARGS,
				     "event data cannot be stored (its text form does not parse back)");
		return FALSE;
	}

	if (!tx_begin (self, error))
		return FALSE;
	if (!event_check_owner (self, ev, error))
		goto fail;
	{
		g_autoptr(StoreStmtRef) st = stmt_get (self, STMT_EVENT_INSERT);

		sqlite3_bind_int64 (st, 1, ev->task_id);
		sqlite3_bind_int64 (st, 2, ev->uid);
		bind_text (st, 3, ev->app_id);
		bind_text (st, 4, bgs_event_kind_to_string (ev->kind));
		bind_text (st, 5, data);
		sqlite3_bind_int64 (st, 6, ev->time);
		if (!stmt_run (self, st, "queueing an event", error))
			goto fail;
	}
	ev->seq = sqlite3_last_insert_rowid (self->db);
	if (max_per_app > 0 && !event_enforce_bound (self, ev->uid, ev->app_id, max_per_app, error))
		goto fail;
	if (!tx_commit (self, error))
		goto fail;
	return TRUE;
fail:
	tx_rollback (self);
	ev->seq = 0;
	return FALSE;
}

GPtrArray *
bgs_store_take_events (BgsStore *self, gint64 task_id, guint *dropped, GError **error)
{
	g_autoptr(GPtrArray) events = g_ptr_array_new_with_free_func ((GDestroyNotify) bgs_event_free);
	gint64 n_dropped = 0;
	int rc;

	g_return_val_if_fail (BGS_IS_STORE (self), NULL);
	if (dropped != NULL)
		*dropped = 0;

	if (!tx_begin (self, error))
		return NULL;
	{
		g_autoptr(StoreStmtRef) st = stmt_get (self, STMT_EVENT_LIST_TASK);

		sqlite3_bind_int64 (st, 1, task_id);
		while ((rc = stmt_step (self, st, "reading events", error)) == SQLITE_ROW) {
			g_autoptr(GError) local = NULL;
			BgsEvent *e = event_from_row (st, &local);

			/* a damaged event is lost either way: count it as
			 * dropped so the app learns it missed one */
			if (e == NULL) {
				g_warning ("%s: dropping a damaged event: %s", self->path, local->message);
				n_dropped++;
				continue;
			}
			g_ptr_array_add (events, e);
		}
		if (rc < 0)
			goto fail;
	}
	{
		g_autoptr(StoreStmtRef) st = stmt_get (self, STMT_DROPS_GET);

		sqlite3_bind_int64 (st, 1, task_id);
		rc = stmt_step (self, st, "reading the drop count", error);
		if (rc < 0)
			goto fail;
		if (rc == SQLITE_ROW) {
			gint64 v = sqlite3_column_int64 (st, 0);

			if (v > 0)
				n_dropped += v;
		}
	}
	{
		g_autoptr(StoreStmtRef) st = stmt_get (self, STMT_EVENT_DELETE_TASK);

		sqlite3_bind_int64 (st, 1, task_id);
		if (!stmt_run (self, st, "deleting taken events", error))
			goto fail;
	}
	{
		g_autoptr(StoreStmtRef) st = stmt_get (self, STMT_DROPS_DELETE);

		sqlite3_bind_int64 (st, 1, task_id);
		if (!stmt_run (self, st, "resetting the drop count", error))
			goto fail;
	}
	if (!tx_commit (self, error))
		goto fail;
	if (dropped != NULL)
		*dropped = (guint) MIN (n_dropped, (gint64) G_MAXUINT);
	return g_steal_pointer (&events);
fail:
	tx_rollback (self);
	return NULL;
}

guint
bgs_store_count_events (BgsStore *self, gint64 task_id, GError **error)
{
	g_autoptr(StoreStmtRef) st = NULL;

	g_return_val_if_fail (BGS_IS_STORE (self), 0);
	st = stmt_get (self, STMT_EVENT_COUNT_TASK);
	sqlite3_bind_int64 (st, 1, task_id);
	if (stmt_step (self, st, "counting events", error) != SQLITE_ROW)
		return 0;
	return (guint) MIN (sqlite3_column_int64 (st, 0), (gint64) G_MAXUINT);
}

/* ---- history ---- */

gboolean
bgs_store_history_begin (BgsStore *self, BgsHistoryEntry *e, GError **error)
{
	g_autoptr(StoreStmtRef) st = NULL;

	g_return_val_if_fail (BGS_IS_STORE (self), FALSE);
	g_return_val_if_fail (e != NULL, FALSE);

	if (e->app_id == NULL || (guint) e->trigger >= BGS_TRIGGER_LAST) {
		g_set_error_literal (error, BGS_ERROR, BGS_ERROR_INVALID_ARGS,
				     "a history entry needs an app id and a valid trigger");
		return FALSE;
	}
	st = stmt_get (self, STMT_HISTORY_INSERT);
	sqlite3_bind_int64 (st, 1, e->task_id);
	sqlite3_bind_int64 (st, 2, e->uid);
	bind_text (st, 3, e->app_id);
	bind_text (st, 4, e->task_name != NULL ? e->task_name : "");
	bind_text (st, 5, e->device != NULL ? e->device : "");
	bind_text (st, 6, e->model != NULL ? e->model : "");
	bind_text (st, 7, bgs_trigger_kind_to_string (e->trigger));
	bind_text (st, 8, e->entry_point != NULL ? e->entry_point : "");
	sqlite3_bind_int64 (st, 9, e->started);
	if (!stmt_run (self, st, "recording an instance start", error))
		return FALSE;
	e->id = sqlite3_last_insert_rowid (self->db);
	e->ended = 0;
	e->bytes_in = 0;
	e->bytes_out = 0;
	g_free (e->result);
	e->result = g_strdup ("running");
	g_free (e->reason);
	e->reason = g_strdup ("");
	return TRUE;
}

gboolean
bgs_store_history_end (BgsStore *self, gint64 id, gint64 ended, const char *result,
		       const char *reason, guint64 bytes_in, guint64 bytes_out, GError **error)
{
	g_autoptr(StoreStmtRef) st = NULL;

	g_return_val_if_fail (BGS_IS_STORE (self), FALSE);

	/* "running" is not an end; ended 0 would leave the row unfinished */
	if (result == NULL || g_strcmp0 (result, "running") == 0 ||
	    !g_strv_contains (history_results, result) || ended <= 0) {
		g_set_error (error, BGS_ERROR, BGS_ERROR_INVALID_ARGS,
			     "invalid end of instance: result '%s', time %" G_GINT64_FORMAT,
			     result != NULL ? result : "(null)", ended);
		return FALSE;
	}
	st = stmt_get (self, STMT_HISTORY_END);
	sqlite3_bind_int64 (st, 1, id);
	sqlite3_bind_int64 (st, 2, ended);
	bind_text (st, 3, result);
	bind_text (st, 4, reason != NULL ? reason : "");
	sqlite3_bind_int64 (st, 5, (gint64) bytes_in);
	sqlite3_bind_int64 (st, 6, (gint64) bytes_out);
	if (!stmt_run (self, st, "recording an instance end", error))
		return FALSE;
	if (sqlite3_changes (self->db) == 0) {
		g_set_error (error, BGS_ERROR, BGS_ERROR_NOT_FOUND,
			     "no running instance with history id %" G_GINT64_FORMAT, id);
		return FALSE;
	}
	return TRUE;
}

GPtrArray *
bgs_store_list_history (BgsStore *self, guint32 uid, const char *app_id, guint limit,
			GError **error)
{
	g_autoptr(StoreStmtRef) st = NULL;
	gint64 sql_limit = limit > 0 ? (gint64) limit : -1;

	g_return_val_if_fail (BGS_IS_STORE (self), NULL);
	if (app_id != NULL) {
		st = stmt_get (self, STMT_HISTORY_LIST_APP);
		sqlite3_bind_int64 (st, 1, uid);
		bind_text (st, 2, app_id);
		sqlite3_bind_int64 (st, 3, sql_limit);
	} else {
		st = stmt_get (self, STMT_HISTORY_LIST_UID);
		sqlite3_bind_int64 (st, 1, uid);
		sqlite3_bind_int64 (st, 2, sql_limit);
	}
	return collect_rows (self, st, (RowFunc) history_from_row,
			     (GDestroyNotify) bgs_history_entry_free, "listing history", error);
}

GPtrArray *
bgs_store_history_unfinished (BgsStore *self, GError **error)
{
	g_autoptr(StoreStmtRef) st = NULL;

	g_return_val_if_fail (BGS_IS_STORE (self), NULL);
	st = stmt_get (self, STMT_HISTORY_UNFINISHED);
	return collect_rows (self, st, (RowFunc) history_from_row,
			     (GDestroyNotify) bgs_history_entry_free,
			     "listing unfinished instances", error);
}

/* ---- device cache ---- */

gboolean
bgs_store_set_device_info (BgsStore *self, const char *device_key, const char *key,
			   const char *value, GError **error)
{
	g_autoptr(StoreStmtRef) st = NULL;

	g_return_val_if_fail (BGS_IS_STORE (self), FALSE);
	if (device_key == NULL || key == NULL) {
		g_set_error_literal (error, BGS_ERROR, BGS_ERROR_INVALID_ARGS,
				     "device info needs a device key and a key");
		return FALSE;
	}
	if (value == NULL) {
		st = stmt_get (self, STMT_DEVICE_UNSET);
		bind_text (st, 1, device_key);
		bind_text (st, 2, key);
		return stmt_run (self, st, "removing device info", error);
	}
	st = stmt_get (self, STMT_DEVICE_SET);
	bind_text (st, 1, device_key);
	bind_text (st, 2, key);
	bind_text (st, 3, value);
	sqlite3_bind_int64 (st, 4, g_get_real_time ());
	return stmt_run (self, st, "storing device info", error);
}

char *
bgs_store_get_device_info (BgsStore *self, const char *device_key, const char *key,
			   GError **error)
{
	g_autoptr(StoreStmtRef) st = NULL;
	g_autoptr(GError) local = NULL;
	char *value = NULL;
	int rc;

	g_return_val_if_fail (BGS_IS_STORE (self), NULL);
	g_return_val_if_fail (device_key != NULL && key != NULL, NULL);

	st = stmt_get (self, STMT_DEVICE_GET);
	bind_text (st, 1, device_key);
	bind_text (st, 2, key);
	rc = stmt_step (self, st, "reading device info", error);
	if (rc != SQLITE_ROW)
		return NULL;
	if (!row_text (st, 0, FALSE, &value, &local)) {
		g_set_error (error, BGS_ERROR, BGS_ERROR_CORRUPT,
			     "database file '%s': device info '%s' of '%s': %s",
			     self->path, key, device_key, local->message);
		return NULL;
	}
	return value;
}

gboolean
bgs_store_forget_device (BgsStore *self, const char *device_key, GError **error)
{
	g_autoptr(StoreStmtRef) st = NULL;

	g_return_val_if_fail (BGS_IS_STORE (self), FALSE);
	g_return_val_if_fail (device_key != NULL, FALSE);
	st = stmt_get (self, STMT_DEVICE_FORGET);
	bind_text (st, 1, device_key);
	return stmt_run (self, st, "forgetting a device", error);
}

gboolean
bgs_store_prune_history (BgsStore *self, gint64 ended_before, guint *n_removed, GError **error)
{
	g_autoptr(StoreStmtRef) st = NULL;

	g_return_val_if_fail (BGS_IS_STORE (self), FALSE);
	if (n_removed != NULL)
		*n_removed = 0;
	st = stmt_get (self, STMT_HISTORY_PRUNE);
	sqlite3_bind_int64 (st, 1, ended_before);
	if (!stmt_run (self, st, "pruning history", error))
		return FALSE;
	if (n_removed != NULL)
		*n_removed = (guint) sqlite3_changes (self->db);
	return TRUE;
}

/* ---- for tests ---- */

char *
bgs_store_get_full_scans (BgsStore *self, GError **error)
{
	g_autoptr(GString) scans = g_string_new (NULL);

	g_return_val_if_fail (BGS_IS_STORE (self), NULL);
	for (guint i = 0; i < STMT_LAST; i++) {
		g_autofree char *sql = NULL;
		sqlite3_stmt *stmt = NULL;
		int rc;

		/* listing every registration reads every row by design */
		if (i == STMT_REG_LIST)
			continue;
		sql = g_strconcat ("EXPLAIN QUERY PLAN ", stmt_sql[i], NULL);

		if (sqlite3_prepare_v2 (self->db, sql, -1, &stmt, NULL) != SQLITE_OK) {
			set_db_error (self->db, self->path, sqlite3_extended_errcode (self->db),
				      "explaining a query", error);
			return NULL;
		}
		while ((rc = sqlite3_step (stmt)) == SQLITE_ROW) {
			const char *detail = (const char *) sqlite3_column_text (stmt, 3);

			/* "SCAN t" alone walks the table; "SCAN t USING INDEX" and
			 * scans of subquery results are fine */
			if (detail != NULL && g_str_has_prefix (detail, "SCAN ") &&
			    strstr (detail, " USING ") == NULL && strstr (detail, "subquery") == NULL)
				g_string_append_printf (scans, "%s: %s\n", stmt_sql[i], detail);
		}
		sqlite3_finalize (stmt);
		if (rc != SQLITE_DONE) {
			set_db_error (self->db, self->path, sqlite3_extended_errcode (self->db),
				      "explaining a query", error);
			return NULL;
		}
	}
	return g_string_free (g_steal_pointer (&scans), FALSE);
}
