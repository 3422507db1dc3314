/* test-store.c: units for agent/store (sqlite persistence).
 * run one test: test-store <name-glob> */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <glib/gstdio.h>
#include <sqlite3.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bgs-error.h"
#include "bgs-store.h"
#include "bgs-store-private.h"

#define T0 G_GINT64_CONSTANT (1700000000000000)

typedef struct {
	char *dir;
	char *path;
} Fixture;

/* warnings from the store, so tests can assert a damaged row was reported */
static guint n_store_warnings;

static void
count_warnings (const char *domain, GLogLevelFlags level, const char *message, gpointer data)
{
	/* no logging from here: glib aborts on recursive logging */
	n_store_warnings++;
	if (g_getenv ("TEST_STORE_VERBOSE") != NULL)
		fprintf (stderr, "# store warning: %s\n", message);
}

static int
setup (void **state)
{
	Fixture *f = g_new0 (Fixture, 1);
	g_autoptr(GError) error = NULL;

	f->dir = g_dir_make_tmp ("bgs-store-XXXXXX", &error);
	assert_non_null (f->dir);
	f->path = g_build_filename (f->dir, "state", "bgsync.db", NULL);
	n_store_warnings = 0;
	*state = f;
	return 0;
}

static void
rm_rf (const char *path)
{
	GDir *dir = g_dir_open (path, 0, NULL);
	const char *name;

	if (dir != NULL) {
		while ((name = g_dir_read_name (dir)) != NULL) {
			g_autofree char *child = g_build_filename (path, name, NULL);

			if (g_file_test (child, G_FILE_TEST_IS_DIR) &&
			    !g_file_test (child, G_FILE_TEST_IS_SYMLINK))
				rm_rf (child);
			else
				g_unlink (child);
		}
		g_dir_close (dir);
	}
	g_rmdir (path);
}

static int
teardown (void **state)
{
	Fixture *f = *state;

	rm_rf (f->dir);
	g_free (f->dir);
	g_free (f->path);
	g_free (f);
	return 0;
}

/* ---- helpers ---- */

static BgsStore *
open_ok (const char *path)
{
	g_autoptr(GError) error = NULL;
	BgsStore *store = bgs_store_open (path, &error);

	if (store == NULL)
		fail_msg ("open %s: %s", path, error->message);
	return store;
}

static void
raw_exec (const char *path, const char *sql)
{
	sqlite3 *db = NULL;
	char *msg = NULL;

	assert_int_equal (sqlite3_open_v2 (path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL),
			  SQLITE_OK);
	if (sqlite3_exec (db, sql, NULL, NULL, &msg) != SQLITE_OK)
		fail_msg ("raw sql failed: %s: %s", msg, sql);
	assert_int_equal (sqlite3_close (db), SQLITE_OK);
}

static gint64
raw_int (const char *path, const char *sql)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *stmt = NULL;
	gint64 v;

	assert_int_equal (sqlite3_open_v2 (path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	assert_int_equal (sqlite3_prepare_v2 (db, sql, -1, &stmt, NULL), SQLITE_OK);
	assert_int_equal (sqlite3_step (stmt), SQLITE_ROW);
	v = sqlite3_column_int64 (stmt, 0);
	sqlite3_finalize (stmt);
	sqlite3_close (db);
	return v;
}

static char *
file_checksum (const char *path)
{
	g_autofree char *contents = NULL;
	gsize len = 0;

	assert_true (g_file_get_contents (path, &contents, &len, NULL));
	return g_compute_checksum_for_data (G_CHECKSUM_SHA256, (const guchar *) contents, len);
}

static gboolean
sidecar_exists (const char *path, const char *suffix)
{
	g_autofree char *name = g_strconcat (path, suffix, NULL);

	return g_file_test (name, G_FILE_TEST_EXISTS);
}

static BgsRegistration *
make_reg (guint32 uid, const char *app_id, const char *name)
{
	BgsRegistration *r = bgs_registration_new ();

	r->uid = uid;
	r->app_id = g_strdup (app_id);
	r->name = g_strdup (name);
	r->trigger = BGS_TRIGGER_DEVICE_USE;
	r->entry_point = g_strdup ("smp");
	r->created = T0;
	return r;
}

static gint64
add_reg (BgsStore *store, guint32 uid, const char *app_id, const char *name)
{
	g_autoptr(BgsRegistration) r = make_reg (uid, app_id, name);
	g_autoptr(GError) error = NULL;

	if (!bgs_store_add_registration (store, r, &error))
		fail_msg ("add registration: %s", error->message);
	assert_true (r->id > 0);
	return r->id;
}

static gint64
queue (BgsStore *store, gint64 task_id, guint32 uid, const char *app_id, gint32 step, guint max)
{
	g_autoptr(BgsEvent) ev = NULL;
	g_autoptr(GError) error = NULL;
	GVariantDict dict;

	g_variant_dict_init (&dict, NULL);
	g_variant_dict_insert (&dict, "step", "i", step);
	ev = bgs_event_new (task_id, uid, app_id, BGS_EVENT_PROGRESS, g_variant_dict_end (&dict),
			    T0 + step);
	if (!bgs_store_queue_event (store, ev, max, &error))
		fail_msg ("queue event: %s", error->message);
	assert_true (ev->seq > 0);
	return ev->seq;
}

static gint32
event_step (BgsEvent *e)
{
	gint32 step = -1;

	assert_true (g_variant_lookup (e->data, "step", "i", &step));
	return step;
}

static void
write_bytes_at (const char *path, goffset offset, const void *data, gsize len)
{
	FILE *fp = fopen (path, "r+b");

	assert_non_null (fp);
	assert_int_equal (fseek (fp, offset, SEEK_SET), 0);
	assert_int_equal (fwrite (data, 1, len, fp), len);
	assert_int_equal (fclose (fp), 0);
}

/* a closed, checkpointed store file with some rows in it */
static void
make_populated (const char *path)
{
	g_autoptr(BgsStore) store = open_ok (path);
	gint64 id = add_reg (store, 1000, "org.example.App", "sync");

	for (int i = 0; i < 200; i++)
		queue (store, id, 1000, "org.example.App", i, 0);
	assert_true (bgs_store_set_consent (store, 1000, "org.example.App", "Watch 1", TRUE, T0, NULL));
}

/* refused with @code, message naming the file, bytes and neighbours untouched */
static void
assert_refused (const char *path, int code)
{
	g_autofree char *before = file_checksum (path);
	g_autofree char *after = NULL;
	g_autoptr(GError) error = NULL;
	g_autoptr(BgsStore) store = NULL;
	gboolean had_wal = sidecar_exists (path, "-wal");
	gboolean had_shm = sidecar_exists (path, "-shm");

	store = bgs_store_open (path, &error);
	assert_null (store);
	assert_non_null (error);
	if (!g_error_matches (error, BGS_ERROR, code))
		fail_msg ("expected code %d, got %s %d: %s", code,
			  g_quark_to_string (error->domain), error->code, error->message);
	assert_non_null (strstr (error->message, path));
	g_debug ("refused as expected: %s", error->message);
	after = file_checksum (path);
	assert_string_equal (before, after);
	assert_int_equal (sidecar_exists (path, "-wal"), had_wal);
	assert_int_equal (sidecar_exists (path, "-shm"), had_shm);
	/* and again: refusing is stable, nothing was "repaired" */
	g_clear_error (&error);
	assert_null (bgs_store_open (path, &error));
	assert_true (g_error_matches (error, BGS_ERROR, code));
}

/* ---- tests ---- */

static void
test_create_mode_and_wal (void **state)
{
	Fixture *f = *state;
	g_autoptr(BgsStore) store = open_ok (f->path);
	g_autofree char *dir = g_path_get_dirname (f->path);
	struct stat st;

	assert_string_equal (bgs_store_get_path (store), f->path);
	assert_int_equal (g_stat (f->path, &st), 0);
	assert_int_equal (st.st_mode & 0777, 0600);
	assert_int_equal (g_stat (dir, &st), 0);
	assert_int_equal (st.st_mode & 0777, 0700);
	/* the WAL flag lives in the file header (bytes 18, 19 == 2) */
	assert_int_equal (raw_int (f->path, "SELECT version FROM schema"), BGS_STORE_SCHEMA_VERSION);
	{
		g_autofree char *contents = NULL;
		gsize len;

		assert_true (g_file_get_contents (f->path, &contents, &len, NULL));
		assert_true (len >= 100);
		assert_int_equal (contents[18], 2);
		assert_int_equal (contents[19], 2);
	}
	/* no temporary files left beside it */
	{
		GDir *d = g_dir_open (dir, 0, NULL);
		const char *name;

		assert_non_null (d);
		while ((name = g_dir_read_name (d)) != NULL)
			assert_null (strstr (name, ".new-"));
		g_dir_close (d);
	}
}

static void
test_roundtrip (void **state)
{
	Fixture *f = *state;
	g_autoptr(GError) error = NULL;
	gint64 id_custom, id_device, hist_done, hist_running;
	const char *weird = "org.ex\xc3\xa4mple.'; DROP TABLE registrations; --\xf0\x9f\x98\x80";

	{
		g_autoptr(BgsStore) store = open_ok (f->path);
		g_autoptr(BgsRegistration) r = make_reg (1000, weird, "nightly \"sync\"");
		g_autoptr(BgsHistoryEntry) h1 = bgs_history_entry_new ();
		g_autoptr(BgsHistoryEntry) h2 = bgs_history_entry_new ();
		g_autoptr(BgsEvent) ev = NULL;

		r->trigger = BGS_TRIGGER_CUSTOM;
		r->custom_trigger = g_strdup ("time-zone-change");
		r->recurrence = BGS_RECURRENCE_ALWAYS;
		r->conditions = BGS_CONDITION_NETWORK | BGS_CONDITION_AC_POWER;
		r->entry_point = (g_free (r->entry_point), g_strdup ("test"));
		assert_true (bgs_store_add_registration (store, r, &error));
		id_custom = r->id;
		id_device = add_reg (store, 1001, "org.example.Other", "fw");
		assert_true (id_device > id_custom);

		assert_true (bgs_store_set_consent (store, 1000, weird, "Watch \xe2\x84\xa2", TRUE, T0 + 5, &error));

		ev = bgs_event_new (id_custom, 1000, weird, BGS_EVENT_COMPLETED,
				    g_variant_new_parsed ("{'bytes': <@t 18446744073709551615>, "
							  "'note': <'a\\nb \\'q\\''>, 'blob': <@ay [0, 255]>}"),
				    T0 + 7);
		assert_true (bgs_store_queue_event (store, ev, 10, &error));

		h1->task_id = id_custom;
		h1->uid = 1000;
		h1->app_id = g_strdup (weird);
		h1->task_name = g_strdup ("nightly \"sync\"");
		h1->device = g_strdup ("dev_AA_BB");
		h1->model = g_strdup ("Watch \xe2\x84\xa2");
		h1->trigger = BGS_TRIGGER_CUSTOM;
		h1->entry_point = g_strdup ("test");
		h1->started = T0 + 10;
		assert_true (bgs_store_history_begin (store, h1, &error));
		assert_string_equal (h1->result, "running");
		hist_done = h1->id;
		assert_true (bgs_store_history_end (store, hist_done, T0 + 20, "completed", "",
						    G_MAXUINT64, 42, &error));
		h2->task_id = id_device;
		h2->uid = 1001;
		h2->app_id = g_strdup ("org.example.Other");
		h2->trigger = BGS_TRIGGER_DEVICE_SERVICING;
		h2->started = T0 + 30;
		assert_true (bgs_store_history_begin (store, h2, &error));
		hist_running = h2->id;

		assert_true (bgs_store_set_device_info (store, "hci0/AA:BB", "model", "Watch \xe2\x84\xa2", &error));
	}
	/* everything is back after a restart */
	{
		g_autoptr(BgsStore) store = open_ok (f->path);
		g_autoptr(GPtrArray) regs = bgs_store_list_registrations (store, &error);
		g_autoptr(GPtrArray) consents = NULL;
		g_autoptr(GPtrArray) events = NULL;
		g_autoptr(GPtrArray) hist = NULL;
		g_autoptr(GPtrArray) unfinished = NULL;
		g_autofree char *model = NULL;
		BgsRegistration *r;
		BgsEvent *e;
		BgsHistoryEntry *h;
		gboolean found = FALSE, allowed = FALSE;
		guint dropped = 99;
		guint64 big = 0;

		assert_non_null (regs);
		assert_int_equal (regs->len, 2);
		r = g_ptr_array_index (regs, 0);
		assert_int_equal (r->id, id_custom);
		assert_int_equal (r->uid, 1000);
		assert_string_equal (r->app_id, weird);
		assert_string_equal (r->name, "nightly \"sync\"");
		assert_int_equal (r->trigger, BGS_TRIGGER_CUSTOM);
		assert_string_equal (r->custom_trigger, "time-zone-change");
		assert_int_equal (r->recurrence, BGS_RECURRENCE_ALWAYS);
		assert_int_equal (r->conditions, BGS_CONDITION_NETWORK | BGS_CONDITION_AC_POWER);
		assert_string_equal (r->entry_point, "test");
		assert_int_equal (r->created, T0);
		r = g_ptr_array_index (regs, 1);
		assert_int_equal (r->id, id_device);
		assert_null (r->custom_trigger);
		assert_int_equal (r->recurrence, BGS_RECURRENCE_NONE);
		assert_int_equal (r->conditions, BGS_CONDITION_NONE);
		{
			g_autoptr(BgsRegistration) copy = bgs_registration_copy (r);
			g_autoptr(BgsRegistration) got = bgs_store_get_registration (store, id_device, &error);

			assert_string_equal (copy->app_id, r->app_id);
			assert_true (copy->app_id != r->app_id);
			assert_non_null (got);
			assert_string_equal (got->name, "fw");
		}

		assert_true (bgs_store_get_consent (store, 1000, weird, "Watch \xe2\x84\xa2", &found, &allowed, &error));
		assert_true (found);
		assert_true (allowed);
		consents = bgs_store_list_consents (store, 1000, NULL, &error);
		assert_int_equal (consents->len, 1);
		assert_int_equal (((BgsConsent *) g_ptr_array_index (consents, 0))->time, T0 + 5);

		assert_int_equal (bgs_store_count_events (store, id_custom, &error), 1);
		events = bgs_store_take_events (store, id_custom, &dropped, &error);
		assert_non_null (events);
		assert_int_equal (events->len, 1);
		assert_int_equal (dropped, 0);
		e = g_ptr_array_index (events, 0);
		assert_int_equal (e->task_id, id_custom);
		assert_int_equal (e->uid, 1000);
		assert_string_equal (e->app_id, weird);
		assert_int_equal (e->kind, BGS_EVENT_COMPLETED);
		assert_int_equal (e->time, T0 + 7);
		assert_true (g_variant_lookup (e->data, "bytes", "t", &big));
		assert_true (big == G_MAXUINT64);
		{
			g_autofree char *note = NULL;

			assert_true (g_variant_lookup (e->data, "note", "s", &note));
			assert_string_equal (note, "a\nb 'q'");
		}

		hist = bgs_store_list_history (store, 1000, NULL, 0, &error);
		assert_int_equal (hist->len, 1);
		h = g_ptr_array_index (hist, 0);
		assert_int_equal (h->id, hist_done);
		assert_string_equal (h->task_name, "nightly \"sync\"");
		assert_string_equal (h->model, "Watch \xe2\x84\xa2");
		assert_string_equal (h->device, "dev_AA_BB");
		assert_int_equal (h->trigger, BGS_TRIGGER_CUSTOM);
		assert_int_equal (h->started, T0 + 10);
		assert_int_equal (h->ended, T0 + 20);
		assert_string_equal (h->result, "completed");
		assert_true (h->bytes_in == G_MAXUINT64);
		assert_true (h->bytes_out == 42);

		unfinished = bgs_store_history_unfinished (store, &error);
		assert_int_equal (unfinished->len, 1);
		h = g_ptr_array_index (unfinished, 0);
		assert_int_equal (h->id, hist_running);
		assert_string_equal (h->result, "running");
		assert_int_equal (h->ended, 0);
		assert_string_equal (h->task_name, "");

		model = bgs_store_get_device_info (store, "hci0/AA:BB", "model", &error);
		assert_string_equal (model, "Watch \xe2\x84\xa2");
	}
	assert_int_equal (n_store_warnings, 0);
}

static void
test_duplicate_registration (void **state)
{
	Fixture *f = *state;
	g_autoptr(BgsStore) store = open_ok (f->path);
	g_autoptr(BgsRegistration) dup = make_reg (1000, "org.example.App", "sync");
	g_autoptr(GError) error = NULL;
	g_autoptr(GPtrArray) regs = NULL;

	add_reg (store, 1000, "org.example.App", "sync");
	assert_false (bgs_store_add_registration (store, dup, &error));
	assert_true (g_error_matches (error, BGS_ERROR, BGS_ERROR_ALREADY_EXISTS));
	assert_non_null (strstr (error->message, "sync"));
	/* the same name is fine for another user or another app */
	add_reg (store, 1001, "org.example.App", "sync");
	add_reg (store, 1000, "org.example.Other", "sync");
	regs = bgs_store_list_registrations (store, NULL);
	assert_int_equal (regs->len, 3);

	/* missing fields are refused, not stored */
	g_clear_error (&error);
	g_clear_pointer (&dup->name, g_free);
	assert_false (bgs_store_add_registration (store, dup, &error));
	assert_true (g_error_matches (error, BGS_ERROR, BGS_ERROR_INVALID_ARGS));
}

static void
test_remove_registration (void **state)
{
	Fixture *f = *state;
	g_autoptr(BgsStore) store = open_ok (f->path);
	g_autoptr(GError) error = NULL;
	g_autoptr(GPtrArray) events = NULL;
	gint64 a = add_reg (store, 1000, "org.example.App", "a");
	gint64 b = add_reg (store, 1000, "org.example.App", "b");
	gint64 c;
	guint dropped = 99;

	/* a gets two events and, through the bound, a drop count */
	queue (store, a, 1000, "org.example.App", 1, 3);
	queue (store, a, 1000, "org.example.App", 2, 3);
	queue (store, b, 1000, "org.example.App", 3, 3);
	queue (store, b, 1000, "org.example.App", 4, 3);
	assert_int_equal (bgs_store_count_events (store, a, NULL), 1);

	assert_true (bgs_store_remove_registration (store, a, &error));
	assert_int_equal (bgs_store_count_events (store, a, NULL), 0);
	assert_int_equal (bgs_store_count_events (store, b, NULL), 2);
	assert_int_equal (raw_int (f->path, "SELECT COUNT(*) FROM event_drops"), 0);
	{
		g_autoptr(GPtrArray) regs = bgs_store_list_registrations (store, NULL);

		assert_int_equal (regs->len, 1);
	}
	assert_false (bgs_store_remove_registration (store, a, &error));
	assert_true (g_error_matches (error, BGS_ERROR, BGS_ERROR_NOT_FOUND));

	/* ids are not reused, and a new task inherits no drop count */
	c = add_reg (store, 1000, "org.example.App", "a");
	assert_true (c > b);
	events = bgs_store_take_events (store, c, &dropped, NULL);
	assert_int_equal (events->len, 0);
	assert_int_equal (dropped, 0);
}

static void
test_event_bound (void **state)
{
	Fixture *f = *state;
	g_autoptr(BgsStore) store = open_ok (f->path);
	g_autoptr(GError) error = NULL;
	gint64 a = add_reg (store, 1000, "org.example.App", "a");
	gint64 b = add_reg (store, 1000, "org.example.App", "b");
	gint64 other_app = add_reg (store, 1000, "org.example.Other", "a");
	gint64 other_uid = add_reg (store, 1001, "org.example.App", "a");
	gint64 seq[5];
	guint dropped = 99;

	/* max 3: five events of one task -> the newest three, two dropped */
	for (int i = 0; i < 5; i++)
		seq[i] = queue (store, a, 1000, "org.example.App", i, 3);
	for (int i = 1; i < 5; i++)
		assert_true (seq[i] > seq[i - 1]);
	assert_int_equal (bgs_store_count_events (store, a, NULL), 3);
	{
		g_autoptr(GPtrArray) events = bgs_store_take_events (store, a, &dropped, &error);

		assert_non_null (events);
		assert_int_equal (events->len, 3);
		assert_int_equal (dropped, 2);
		for (guint i = 0; i < 3; i++) {
			BgsEvent *e = g_ptr_array_index (events, i);

			assert_int_equal (e->seq, seq[i + 2]);
			assert_int_equal (event_step (e), (gint32) i + 2);
		}
	}
	/* taken means gone, and the count is reset */
	{
		g_autoptr(GPtrArray) events = bgs_store_take_events (store, a, &dropped, &error);

		assert_int_equal (events->len, 0);
		assert_int_equal (dropped, 0);
	}

	/* the bound is per app, the count per task: a1 a2 b1 b2 a3 drops a1 a2 */
	queue (store, a, 1000, "org.example.App", 10, 3);
	queue (store, a, 1000, "org.example.App", 11, 3);
	queue (store, b, 1000, "org.example.App", 20, 3);
	queue (store, b, 1000, "org.example.App", 21, 3);
	/* other apps and other users have their own budget */
	for (int i = 0; i < 3; i++) {
		queue (store, other_app, 1000, "org.example.Other", 30 + i, 3);
		queue (store, other_uid, 1001, "org.example.App", 40 + i, 3);
	}
	queue (store, a, 1000, "org.example.App", 12, 3);
	{
		g_autoptr(GPtrArray) events = bgs_store_take_events (store, a, &dropped, &error);

		assert_int_equal (events->len, 1);
		assert_int_equal (event_step (g_ptr_array_index (events, 0)), 12);
		assert_int_equal (dropped, 2);
	}
	{
		g_autoptr(GPtrArray) events = bgs_store_take_events (store, b, &dropped, &error);

		assert_int_equal (events->len, 2);
		assert_int_equal (event_step (g_ptr_array_index (events, 0)), 20);
		assert_int_equal (event_step (g_ptr_array_index (events, 1)), 21);
		assert_int_equal (dropped, 0);
	}
	assert_int_equal (bgs_store_count_events (store, other_app, NULL), 3);
	assert_int_equal (bgs_store_count_events (store, other_uid, NULL), 3);

	/* the drop count survives a restart until the next take */
	queue (store, b, 1000, "org.example.App", 50, 1);
	queue (store, b, 1000, "org.example.App", 51, 1);
	g_clear_object (&store);
	store = open_ok (f->path);
	{
		g_autoptr(GPtrArray) events = bgs_store_take_events (store, b, &dropped, &error);

		assert_int_equal (events->len, 1);
		assert_int_equal (event_step (g_ptr_array_index (events, 0)), 51);
		assert_int_equal (dropped, 1);
	}
}

static void
test_event_validation (void **state)
{
	Fixture *f = *state;
	g_autoptr(BgsStore) store = open_ok (f->path);
	g_autoptr(GError) error = NULL;
	gint64 a = add_reg (store, 1000, "org.example.App", "a");
	guint dropped;

	{
		g_autoptr(BgsEvent) ev = bgs_event_new (a + 100, 1000, "org.example.App",
							BGS_EVENT_PROGRESS, NULL, T0);

		assert_false (bgs_store_queue_event (store, ev, 0, &error));
		assert_true (g_error_matches (error, BGS_ERROR, BGS_ERROR_NOT_FOUND));
		g_clear_error (&error);
	}
	{
		/* a task is not another app's mailbox */
		g_autoptr(BgsEvent) ev = bgs_event_new (a, 1000, "org.example.Evil",
							BGS_EVENT_PROGRESS, NULL, T0);

		assert_false (bgs_store_queue_event (store, ev, 0, &error));
		assert_true (g_error_matches (error, BGS_ERROR, BGS_ERROR_INVALID_ARGS));
		g_clear_error (&error);
		ev->app_id = (g_free (ev->app_id), g_strdup ("org.example.App"));
		ev->uid = 1001;
		assert_false (bgs_store_queue_event (store, ev, 0, &error));
		assert_true (g_error_matches (error, BGS_ERROR, BGS_ERROR_INVALID_ARGS));
		g_clear_error (&error);
	}
	{
		g_autoptr(BgsEvent) ev = bgs_event_new (a, 1000, "org.example.App", BGS_EVENT_PROGRESS,
							g_variant_new_string ("nope"), T0);

		assert_false (bgs_store_queue_event (store, ev, 0, &error));
		assert_true (g_error_matches (error, BGS_ERROR, BGS_ERROR_INVALID_ARGS));
		g_clear_error (&error);
	}
	assert_int_equal (bgs_store_count_events (store, a, NULL), 0);
	{
		/* no data is an empty dictionary */
		g_autoptr(BgsEvent) ev = bgs_event_new (a, 1000, "org.example.App", BGS_EVENT_CANCELED,
							NULL, T0);
		g_autoptr(GPtrArray) events = NULL;
		BgsEvent *e;

		assert_true (bgs_store_queue_event (store, ev, 0, &error));
		events = bgs_store_take_events (store, a, &dropped, &error);
		assert_int_equal (events->len, 1);
		e = g_ptr_array_index (events, 0);
		assert_int_equal (e->kind, BGS_EVENT_CANCELED);
		assert_true (g_variant_is_of_type (e->data, G_VARIANT_TYPE_VARDICT));
		assert_int_equal (g_variant_n_children (e->data), 0);
	}
}

static void
test_seq_across_reopen (void **state)
{
	Fixture *f = *state;
	gint64 id, last;
	guint dropped;

	{
		g_autoptr(BgsStore) store = open_ok (f->path);
		g_autoptr(GPtrArray) events = NULL;

		id = add_reg (store, 1000, "org.example.App", "a");
		queue (store, id, 1000, "org.example.App", 1, 0);
		last = queue (store, id, 1000, "org.example.App", 2, 0);
		/* the queue is empty again when the agent stops */
		events = bgs_store_take_events (store, id, &dropped, NULL);
		assert_int_equal (events->len, 2);
	}
	{
		g_autoptr(BgsStore) store = open_ok (f->path);
		gint64 seq = queue (store, id, 1000, "org.example.App", 3, 0);

		assert_true (seq > last);
	}
}

static void
test_consents (void **state)
{
	Fixture *f = *state;
	g_autoptr(BgsStore) store = open_ok (f->path);
	g_autoptr(GError) error = NULL;
	gboolean found = TRUE, allowed = TRUE;
	guint n = 99;

	assert_true (bgs_store_set_consent (store, 1000, "app.A", "Watch", TRUE, T0, &error));
	assert_true (bgs_store_set_consent (store, 1000, "app.A", "Band", FALSE, T0, &error));
	assert_true (bgs_store_set_consent (store, 1000, "app.B", "Watch", TRUE, T0, &error));
	assert_true (bgs_store_set_consent (store, 1001, "app.A", "Watch", FALSE, T0, &error));

	/* uid 1000 cannot see uid 1001's decisions, nor the reverse */
	{
		g_autoptr(GPtrArray) mine = bgs_store_list_consents (store, 1000, NULL, &error);
		g_autoptr(GPtrArray) theirs = bgs_store_list_consents (store, 1001, NULL, &error);
		g_autoptr(GPtrArray) app_a = bgs_store_list_consents (store, 1000, "app.A", &error);
		g_autoptr(GPtrArray) nobody = bgs_store_list_consents (store, 1002, NULL, &error);

		assert_int_equal (mine->len, 3);
		for (guint i = 0; i < mine->len; i++)
			assert_int_equal (((BgsConsent *) g_ptr_array_index (mine, i))->uid, 1000);
		assert_int_equal (theirs->len, 1);
		assert_false (((BgsConsent *) g_ptr_array_index (theirs, 0))->allowed);
		assert_int_equal (app_a->len, 2);
		assert_int_equal (nobody->len, 0);
	}
	assert_true (bgs_store_get_consent (store, 1000, "app.A", "Watch", &found, &allowed, &error));
	assert_true (found && allowed);
	assert_true (bgs_store_get_consent (store, 1001, "app.A", "Watch", &found, &allowed, &error));
	assert_true (found && !allowed);
	assert_true (bgs_store_get_consent (store, 1002, "app.A", "Watch", &found, &allowed, &error));
	assert_false (found);
	assert_false (allowed);

	/* upsert: the latest decision wins, one row */
	assert_true (bgs_store_set_consent (store, 1000, "app.A", "Watch", FALSE, T0 + 1, &error));
	assert_true (bgs_store_get_consent (store, 1000, "app.A", "Watch", &found, &allowed, &error));
	assert_true (found && !allowed);

	/* revoking is scoped to the uid */
	assert_true (bgs_store_revoke_consents (store, 1000, "app.A", "Band", &n, &error));
	assert_int_equal (n, 1);
	assert_true (bgs_store_revoke_consents (store, 1000, NULL, "Watch", &n, &error));
	assert_int_equal (n, 2);
	assert_true (bgs_store_get_consent (store, 1001, "app.A", "Watch", &found, &allowed, &error));
	assert_true (found);
	assert_true (bgs_store_set_consent (store, 1000, "app.C", "Watch", TRUE, T0, &error));
	assert_true (bgs_store_set_consent (store, 1000, "app.D", "Watch", TRUE, T0, &error));
	assert_true (bgs_store_revoke_consents (store, 1000, "app.C", NULL, &n, &error));
	assert_int_equal (n, 1);
	assert_true (bgs_store_revoke_consents (store, 1000, NULL, NULL, &n, &error));
	assert_int_equal (n, 1);
	{
		g_autoptr(GPtrArray) mine = bgs_store_list_consents (store, 1000, NULL, &error);
		g_autoptr(GPtrArray) theirs = bgs_store_list_consents (store, 1001, NULL, &error);

		assert_int_equal (mine->len, 0);
		assert_int_equal (theirs->len, 1);
	}
}

static gint64
begin (BgsStore *store, guint32 uid, const char *app_id, const char *name, gint64 started)
{
	g_autoptr(BgsHistoryEntry) h = bgs_history_entry_new ();
	g_autoptr(GError) error = NULL;

	h->task_id = 7;
	h->uid = uid;
	h->app_id = g_strdup (app_id);
	h->task_name = g_strdup (name);
	h->trigger = BGS_TRIGGER_DEVICE_USE;
	h->started = started;
	if (!bgs_store_history_begin (store, h, &error))
		fail_msg ("history begin: %s", error->message);
	return h->id;
}

static void
test_history (void **state)
{
	Fixture *f = *state;
	g_autoptr(GError) error = NULL;
	gint64 h1, h2, h3, h4;

	{
		g_autoptr(BgsStore) store = open_ok (f->path);
		g_autoptr(GPtrArray) list = NULL;

		h1 = begin (store, 1000, "app.A", "one", T0 + 1);
		h2 = begin (store, 1000, "app.B", "two", T0 + 2);
		h3 = begin (store, 1000, "app.A", "three", T0 + 3);
		h4 = begin (store, 1001, "app.A", "theirs", T0 + 4);
		assert_true (bgs_store_history_end (store, h1, T0 + 10, "completed", "", 1, 2, &error));
		assert_true (bgs_store_history_end (store, h2, T0 + 11, "canceled", "idle-task", 0, 0, &error));

		/* an instance ends once */
		assert_false (bgs_store_history_end (store, h1, T0 + 12, "failed", "x", 0, 0, &error));
		assert_true (g_error_matches (error, BGS_ERROR, BGS_ERROR_NOT_FOUND));
		g_clear_error (&error);
		assert_false (bgs_store_history_end (store, 9999, T0 + 12, "failed", "x", 0, 0, &error));
		assert_true (g_error_matches (error, BGS_ERROR, BGS_ERROR_NOT_FOUND));
		g_clear_error (&error);
		assert_false (bgs_store_history_end (store, h3, T0 + 12, "running", "", 0, 0, &error));
		assert_true (g_error_matches (error, BGS_ERROR, BGS_ERROR_INVALID_ARGS));
		g_clear_error (&error);
		assert_false (bgs_store_history_end (store, h3, 0, "failed", "", 0, 0, &error));
		assert_true (g_error_matches (error, BGS_ERROR, BGS_ERROR_INVALID_ARGS));
		g_clear_error (&error);

		list = bgs_store_list_history (store, 1000, NULL, 0, &error);
		assert_int_equal (list->len, 3);
		assert_int_equal (((BgsHistoryEntry *) g_ptr_array_index (list, 0))->id, h3);
		assert_int_equal (((BgsHistoryEntry *) g_ptr_array_index (list, 1))->id, h2);
		assert_int_equal (((BgsHistoryEntry *) g_ptr_array_index (list, 2))->id, h1);
	}
	/* the agent "died" with h3 and h4 running: findable after restart */
	{
		g_autoptr(BgsStore) store = open_ok (f->path);
		g_autoptr(GPtrArray) unfinished = bgs_store_history_unfinished (store, &error);
		g_autoptr(GPtrArray) limited = NULL;
		g_autoptr(GPtrArray) app_a = NULL;
		g_autoptr(GPtrArray) after = NULL;
		BgsHistoryEntry *h;

		assert_non_null (unfinished);
		assert_int_equal (unfinished->len, 2);
		assert_int_equal (((BgsHistoryEntry *) g_ptr_array_index (unfinished, 0))->id, h3);
		assert_int_equal (((BgsHistoryEntry *) g_ptr_array_index (unfinished, 1))->id, h4);
		for (guint i = 0; i < unfinished->len; i++) {
			h = g_ptr_array_index (unfinished, i);
			assert_true (bgs_store_history_end (store, h->id, T0 + 100, "canceled",
							    "terminating", 0, 0, &error));
		}
		after = bgs_store_history_unfinished (store, &error);
		assert_int_equal (after->len, 0);

		limited = bgs_store_list_history (store, 1000, NULL, 2, &error);
		assert_int_equal (limited->len, 2);
		h = g_ptr_array_index (limited, 0);
		assert_int_equal (h->id, h3);
		assert_string_equal (h->result, "canceled");
		assert_string_equal (h->reason, "terminating");
		assert_int_equal (((BgsHistoryEntry *) g_ptr_array_index (limited, 1))->id, h2);

		app_a = bgs_store_list_history (store, 1000, "app.A", 0, &error);
		assert_int_equal (app_a->len, 2);
		assert_int_equal (((BgsHistoryEntry *) g_ptr_array_index (app_a, 0))->id, h3);
		assert_int_equal (((BgsHistoryEntry *) g_ptr_array_index (app_a, 1))->id, h1);
		h = g_ptr_array_index (app_a, 1);
		assert_string_equal (h->result, "completed");
		assert_true (h->bytes_in == 1 && h->bytes_out == 2);
	}
}

static void
copy_file (const char *from, const char *to)
{
	g_autofree char *contents = NULL;
	gsize len = 0;

	assert_true (g_file_get_contents (from, &contents, &len, NULL));
	assert_true (g_file_set_contents (to, contents, len, NULL));
}

static void
test_crash_recovery (void **state)
{
	Fixture *f = *state;
	g_autoptr(GError) error = NULL;
	g_autoptr(BgsStore) live = open_ok (f->path);
	g_autofree char *crashed = g_build_filename (f->dir, "crashed.db", NULL);
	g_autofree char *from_wal = g_strconcat (f->path, "-wal", NULL);
	g_autofree char *to_wal = g_strconcat (crashed, "-wal", NULL);
	gint64 id;

	/* the files as a killed agent leaves them: what it committed is only
	 * in the WAL, nothing was checkpointed or closed */
	id = add_reg (live, 1000, "org.example.App", "a");
	queue (live, id, 1000, "org.example.App", 1, 0);
	begin (live, 1000, "org.example.App", "a", T0);
	assert_true (sidecar_exists (f->path, "-wal"));
	copy_file (f->path, crashed);
	copy_file (from_wal, to_wal);
	{
		g_autoptr(BgsStore) store = open_ok (crashed);
		g_autoptr(GPtrArray) regs = bgs_store_list_registrations (store, &error);
		g_autoptr(GPtrArray) unfinished = bgs_store_history_unfinished (store, &error);

		assert_int_equal (regs->len, 1);
		assert_int_equal (bgs_store_count_events (store, id, NULL), 1);
		assert_int_equal (unfinished->len, 1);
	}
	/* a clean close checkpoints and removes the WAL */
	assert_false (sidecar_exists (crashed, "-wal"));
	assert_int_equal (raw_int (crashed, "SELECT COUNT(*) FROM registrations"), 1);
}

static void
test_history_prune (void **state)
{
	Fixture *f = *state;
	g_autoptr(BgsStore) store = open_ok (f->path);
	g_autoptr(GError) error = NULL;
	g_autoptr(GPtrArray) left = NULL;
	g_autoptr(GPtrArray) unfinished = NULL;
	gint64 old = begin (store, 1000, "app.A", "old", T0);
	gint64 recent = begin (store, 1000, "app.A", "recent", T0 + 1);
	guint n = 99;

	begin (store, 1000, "app.A", "still running", T0 - 5);
	assert_true (bgs_store_history_end (store, old, T0 + 10, "failed", "boom", 0, 0, &error));
	assert_true (bgs_store_history_end (store, recent, T0 + 1000, "completed", "", 0, 0, &error));
	assert_true (bgs_store_prune_history (store, T0 + 500, &n, &error));
	assert_int_equal (n, 1);
	left = bgs_store_list_history (store, 1000, NULL, 0, &error);
	assert_int_equal (left->len, 2);
	assert_int_equal (((BgsHistoryEntry *) g_ptr_array_index (left, 0))->id, recent);
	unfinished = bgs_store_history_unfinished (store, &error);
	assert_int_equal (unfinished->len, 1);
}

static void
test_lookups_indexed (void **state)
{
	Fixture *f = *state;
	g_autoptr(BgsStore) store = open_ok (f->path);
	g_autoptr(GError) error = NULL;
	g_autofree char *scans = NULL;
	gint64 i_begin = 0;

	/* fill a little, several users and apps, so ANALYZE gives the
	 * planner realistic statistics */
	for (guint32 uid = 1000; uid < 1003; uid++) {
		for (int app = 0; app < 4; app++) {
			g_autofree char *app_id = g_strdup_printf ("org.example.App%d", app);
			gint64 id = add_reg (store, uid, app_id, "a");

			for (int i = 0; i < 10; i++)
				queue (store, id, uid, app_id, i, 0);
			assert_true (bgs_store_set_consent (store, uid, app_id, "Watch", TRUE, T0, NULL));
			begin (store, uid, app_id, "a", T0 + i_begin++);
		}
	}
	raw_exec (f->path, "ANALYZE;");
	g_clear_object (&store);
	store = open_ok (f->path);
	scans = bgs_store_get_full_scans (store, &error);
	assert_non_null (scans);
	if (scans[0] != '\0')
		fail_msg ("lookups without an index:\n%s", scans);

	/* and the check does see a missing index */
	g_clear_object (&store);
	g_clear_pointer (&scans, g_free);
	raw_exec (f->path, "DROP INDEX events_by_task;");
	store = open_ok (f->path);
	scans = bgs_store_get_full_scans (store, &error);
	assert_non_null (strstr (scans, "SCAN events"));
}

static void
test_device_info (void **state)
{
	Fixture *f = *state;
	g_autoptr(GError) error = NULL;

	{
		g_autoptr(BgsStore) store = open_ok (f->path);
		char *v;

		v = bgs_store_get_device_info (store, "dev1", "model", &error);
		assert_null (v);
		assert_null (error);
		assert_true (bgs_store_set_device_info (store, "dev1", "model", "Watch 1", &error));
		assert_true (bgs_store_set_device_info (store, "dev1", "model", "Watch 2", &error));
		assert_true (bgs_store_set_device_info (store, "dev1", "firmware", "1.0", &error));
		assert_true (bgs_store_set_device_info (store, "dev2", "model", "Band", &error));
		assert_true (bgs_store_set_device_info (store, "dev2", "firmware", "2.0", &error));
		assert_true (bgs_store_set_device_info (store, "dev1", "firmware", NULL, &error));
		v = bgs_store_get_device_info (store, "dev1", "firmware", &error);
		assert_null (v);
		assert_true (bgs_store_forget_device (store, "dev2", &error));
	}
	{
		g_autoptr(BgsStore) store = open_ok (f->path);
		g_autofree char *model = bgs_store_get_device_info (store, "dev1", "model", &error);
		g_autofree char *gone = bgs_store_get_device_info (store, "dev2", "model", &error);

		assert_string_equal (model, "Watch 2");
		assert_null (gone);
		assert_null (error);
	}
}

/* schema v1 exactly as bgsync 0.1 wrote it, kept here verbatim (not shared
 * with the store) so the test checks a genuine old file */
static const char v1_sql[] =
	"CREATE TABLE schema (version INTEGER NOT NULL);"
	"INSERT INTO schema (version) VALUES (1);"
	"CREATE TABLE registrations (id INTEGER PRIMARY KEY AUTOINCREMENT, uid INTEGER NOT NULL,"
	" app_id TEXT NOT NULL, name TEXT NOT NULL, trigger_kind TEXT NOT NULL,"
	" entry_point TEXT NOT NULL, custom_trigger TEXT, recurrence TEXT NOT NULL,"
	" conditions TEXT NOT NULL, created INTEGER NOT NULL, UNIQUE (uid, app_id, name));"
	"CREATE TABLE consents (uid INTEGER NOT NULL, app_id TEXT NOT NULL, model TEXT NOT NULL,"
	" allowed INTEGER NOT NULL, time INTEGER NOT NULL,"
	" PRIMARY KEY (uid, app_id, model)) WITHOUT ROWID;"
	"CREATE TABLE events (seq INTEGER PRIMARY KEY AUTOINCREMENT, task_id INTEGER NOT NULL,"
	" uid INTEGER NOT NULL, app_id TEXT NOT NULL, kind TEXT NOT NULL, data TEXT NOT NULL,"
	" time INTEGER NOT NULL);"
	"CREATE INDEX events_by_task ON events (task_id, seq);"
	"CREATE INDEX events_by_app ON events (uid, app_id, seq);"
	"CREATE TABLE event_drops (task_id INTEGER PRIMARY KEY, dropped INTEGER NOT NULL);"
	"CREATE TABLE history (id INTEGER PRIMARY KEY AUTOINCREMENT, task_id INTEGER NOT NULL,"
	" uid INTEGER NOT NULL, app_id TEXT NOT NULL, task_name TEXT NOT NULL,"
	" device TEXT NOT NULL, model TEXT NOT NULL, trigger_kind TEXT NOT NULL,"
	" entry_point TEXT NOT NULL, started INTEGER NOT NULL, ended INTEGER NOT NULL DEFAULT 0,"
	" result TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '',"
	" bytes_in INTEGER NOT NULL DEFAULT 0, bytes_out INTEGER NOT NULL DEFAULT 0);"
	"CREATE INDEX history_by_app ON history (uid, app_id, started);"
	/* some life in it */
	"INSERT INTO registrations VALUES (5, 1000, 'org.example.App', 'sync', 'custom', 'test',"
	" 'wake', 'once', 'network,user-present', 1700000000000000);"
	"INSERT INTO consents VALUES (1000, 'org.example.App', 'Watch', 1, 1700000000000001);"
	"INSERT INTO events VALUES (41, 5, 1000, 'org.example.App', 'progress',"
	" '{''step'': <int32 7>}', 1700000000000002);"
	"INSERT INTO event_drops VALUES (5, 3);"
	"INSERT INTO history VALUES (9, 5, 1000, 'org.example.App', 'sync', 'dev', 'Watch',"
	" 'custom', 'test', 1700000000000003, 0, 'running', '', 0, 0);";

static void
test_migration_from_v1 (void **state)
{
	Fixture *f = *state;
	g_autoptr(GError) error = NULL;
	g_autofree char *dir = g_path_get_dirname (f->path);

	g_assert_cmpint (g_mkdir_with_parents (dir, 0700), ==, 0);
	raw_exec (f->path, v1_sql);
	assert_int_equal (raw_int (f->path, "SELECT version FROM schema"), 1);

	{
		g_autoptr(BgsStore) store = open_ok (f->path);
		g_autoptr(GPtrArray) regs = bgs_store_list_registrations (store, &error);
		g_autoptr(GPtrArray) unfinished = bgs_store_history_unfinished (store, &error);
		g_autoptr(GPtrArray) events = NULL;
		g_autofree char *model = NULL;
		BgsRegistration *r;
		gboolean found = FALSE, allowed = FALSE;
		guint dropped = 0;

		assert_int_equal (regs->len, 1);
		r = g_ptr_array_index (regs, 0);
		assert_int_equal (r->id, 5);
		assert_string_equal (r->custom_trigger, "wake");
		assert_int_equal (r->recurrence, BGS_RECURRENCE_ONCE);
		assert_int_equal (r->conditions, BGS_CONDITION_NETWORK | BGS_CONDITION_USER_PRESENT);
		assert_true (bgs_store_get_consent (store, 1000, "org.example.App", "Watch",
						    &found, &allowed, &error));
		assert_true (found && allowed);
		assert_int_equal (unfinished->len, 1);
		assert_int_equal (((BgsHistoryEntry *) g_ptr_array_index (unfinished, 0))->id, 9);

		/* seq keeps counting from where v1 was */
		assert_true (queue (store, 5, 1000, "org.example.App", 8, 0) > 41);
		events = bgs_store_take_events (store, 5, &dropped, &error);
		assert_int_equal (events->len, 2);
		assert_int_equal (((BgsEvent *) g_ptr_array_index (events, 0))->seq, 41);
		assert_int_equal (event_step (g_ptr_array_index (events, 0)), 7);
		assert_int_equal (dropped, 3);

		/* v2's table works */
		assert_true (bgs_store_set_device_info (store, "dev", "model", "Watch", &error));
		model = bgs_store_get_device_info (store, "dev", "model", &error);
		assert_string_equal (model, "Watch");
	}
	assert_int_equal (raw_int (f->path, "SELECT version FROM schema"), 2);
	assert_int_equal (raw_int (f->path, "SELECT COUNT(*) FROM sqlite_master "
					    "WHERE name = 'history_by_end'"), 1);
	/* reopening a current file changes nothing */
	{
		g_autoptr(BgsStore) store = open_ok (f->path);
		g_autofree char *model = bgs_store_get_device_info (store, "dev", "model", &error);

		assert_string_equal (model, "Watch");
	}
	assert_int_equal (n_store_warnings, 0);
}

static void
test_migration_failure_rolls_back (void **state)
{
	Fixture *f = *state;
	g_autoptr(GError) error = NULL;
	g_autofree char *dir = g_path_get_dirname (f->path);

	/* a v1 file that already has a table the v2 step wants to create: the
	 * step fails and the file must stay at v1, data intact */
	g_assert_cmpint (g_mkdir_with_parents (dir, 0700), ==, 0);
	raw_exec (f->path, v1_sql);
	raw_exec (f->path, "CREATE TABLE device_info (x INTEGER);");
	assert_null (bgs_store_open (f->path, &error));
	assert_non_null (error);
	assert_non_null (strstr (error->message, "schema version 2"));
	assert_int_equal (raw_int (f->path, "SELECT version FROM schema"), 1);
	assert_int_equal (raw_int (f->path, "SELECT COUNT(*) FROM sqlite_master "
					    "WHERE name = 'history_by_end'"), 0);
	assert_int_equal (raw_int (f->path, "SELECT COUNT(*) FROM registrations"), 1);
}

static void
test_corrupt_header (void **state)
{
	Fixture *f = *state;
	guint8 garbage[64];

	make_populated (f->path);
	for (guint i = 0; i < sizeof garbage; i++)
		garbage[i] = (guint8) (i * 37 + 11);
	write_bytes_at (f->path, 0, garbage, sizeof garbage);
	assert_refused (f->path, BGS_ERROR_CORRUPT);
}

static void
test_corrupt_page (void **state)
{
	Fixture *f = *state;
	g_autofree char *garbage = g_malloc (4096);
	struct stat st;

	/* header intact, a page in the middle overwritten */
	make_populated (f->path);
	assert_int_equal (g_stat (f->path, &st), 0);
	assert_true (st.st_size >= 4 * 4096);
	memset (garbage, 0xa5, 4096);
	write_bytes_at (f->path, 2 * 4096, garbage, 4096);
	assert_refused (f->path, BGS_ERROR_CORRUPT);
}

static void
test_corrupt_truncated (void **state)
{
	Fixture *f = *state;
	struct stat st;
	const goffset cuts[] = { 50, 4096 + 100, -1 /* half */, -2 /* one page short */ };

	for (guint i = 0; i < G_N_ELEMENTS (cuts); i++) {
		goffset len;

		g_unlink (f->path);
		make_populated (f->path);
		assert_int_equal (g_stat (f->path, &st), 0);
		len = cuts[i] == -1 ? (st.st_size / 2) / 4096 * 4096 : cuts[i] == -2 ? st.st_size - 4096 : cuts[i];
		assert_int_equal (truncate (f->path, len), 0);
		assert_refused (f->path, BGS_ERROR_CORRUPT);
	}
}

static void
test_corrupt_not_a_database (void **state)
{
	Fixture *f = *state;
	g_autofree char *dir = g_path_get_dirname (f->path);

	g_assert_cmpint (g_mkdir_with_parents (dir, 0700), ==, 0);
	assert_true (g_file_set_contents (f->path, "[General]\nthis is a config file, not a database\n"
					  "with enough text to pass one hundred bytes of header "
					  "checks if anyone only looked at the size\n", -1, NULL));
	assert_refused (f->path, BGS_ERROR_CORRUPT);

	/* an empty file is not ours either (we create files complete) */
	assert_true (g_file_set_contents (f->path, "", 0, NULL));
	assert_refused (f->path, BGS_ERROR_CORRUPT);

	/* a valid sqlite database of someone else */
	g_unlink (f->path);
	raw_exec (f->path, "CREATE TABLE notes (body TEXT); INSERT INTO notes VALUES ('hi');");
	assert_refused (f->path, BGS_ERROR_CORRUPT);
}

static void
test_future_version (void **state)
{
	Fixture *f = *state;
	g_autoptr(GError) error = NULL;
	g_autoptr(BgsStore) store = NULL;

	g_object_unref (open_ok (f->path));
	raw_exec (f->path, "UPDATE schema SET version = 99;");
	assert_refused (f->path, BGS_ERROR_NOT_SUPPORTED);
	store = bgs_store_open (f->path, &error);
	assert_non_null (strstr (error->message, "99"));
	assert_int_equal (raw_int (f->path, "SELECT version FROM schema"), 99);
}

static void
test_wrong_tables (void **state)
{
	Fixture *f = *state;

	/* says version 2 but lacks a table */
	g_object_unref (open_ok (f->path));
	raw_exec (f->path, "DROP TABLE device_info;");
	assert_refused (f->path, BGS_ERROR_CORRUPT);
}

static void
test_symlink_refused (void **state)
{
	Fixture *f = *state;
	g_autofree char *link = g_build_filename (f->dir, "link.db", NULL);
	g_autoptr(GError) error = NULL;
	g_autoptr(BgsStore) store = NULL;

	g_object_unref (open_ok (f->path));
	assert_int_equal (symlink (f->path, link), 0);
	store = bgs_store_open (link, &error);
	assert_null (store);
	assert_true (g_error_matches (error, BGS_ERROR, BGS_ERROR_IO));
	assert_non_null (strstr (error->message, "symbolic link"));
}

static void
test_read_only_refused (void **state)
{
	Fixture *f = *state;
	g_autoptr(GError) error = NULL;
	g_autoptr(BgsStore) store = NULL;

	/* root writes anyway */
	if (geteuid () == 0)
		skip ();
	g_object_unref (open_ok (f->path));
	assert_int_equal (g_chmod (f->path, 0400), 0);
	store = bgs_store_open (f->path, &error);
	assert_null (store);
	assert_true (g_error_matches (error, BGS_ERROR, BGS_ERROR_IO));
	assert_non_null (strstr (error->message, "not writable"));
}

static void
test_tampered_rows (void **state)
{
	Fixture *f = *state;
	g_autoptr(GError) error = NULL;
	gint64 a, b;

	{
		g_autoptr(BgsStore) store = open_ok (f->path);

		a = add_reg (store, 1000, "org.example.App", "a");
		b = add_reg (store, 1000, "org.example.App", "b");
		for (int i = 0; i < 4; i++)
			queue (store, a, 1000, "org.example.App", i, 0);
		begin (store, 1000, "org.example.App", "ok", T0);
		begin (store, 1000, "org.example.App", "bad", T0 + 1);
		assert_true (bgs_store_set_consent (store, 1000, "org.example.App", "Watch", FALSE, T0, NULL));
		assert_true (bgs_store_set_consent (store, 1000, "org.example.App", "Band", TRUE, T0, NULL));
		assert_true (bgs_store_set_device_info (store, "dev", "model", "Watch", NULL));
	}
	/* hand edits, as an attacker or a broken tool might make them */
	raw_exec (f->path,
		  "UPDATE events SET data = '{''step'': <int32 1' WHERE seq = (SELECT MIN(seq) FROM events);"
		  "UPDATE events SET kind = 'exploded' WHERE seq = (SELECT MIN(seq) + 1 FROM events);"
		  "UPDATE events SET data = CAST(X'7b27737465702c3a20ff7d' AS TEXT) "
		  " WHERE seq = (SELECT MIN(seq) + 2 FROM events);"
		  "UPDATE registrations SET trigger_kind = 'teleport' WHERE name = 'b';"
		  "UPDATE history SET trigger_kind = 'x' WHERE task_name = 'bad';"
		  "UPDATE consents SET allowed = 7 WHERE model = 'Watch';"
		  "UPDATE device_info SET value = CAST(X'57ff00' AS TEXT);");
	{
		g_autoptr(BgsStore) store = open_ok (f->path);
		g_autoptr(GPtrArray) regs = NULL;
		g_autoptr(GPtrArray) events = NULL;
		g_autoptr(GPtrArray) hist = NULL;
		g_autoptr(GPtrArray) unfinished = NULL;
		g_autoptr(GPtrArray) consents = NULL;
		g_autofree char *value = NULL;
		gboolean found = TRUE, allowed = TRUE;
		guint dropped = 0;

		n_store_warnings = 0;
		regs = bgs_store_list_registrations (store, &error);
		assert_non_null (regs);
		assert_int_equal (regs->len, 1);
		assert_int_equal (((BgsRegistration *) g_ptr_array_index (regs, 0))->id, a);
		assert_int_equal (n_store_warnings, 1);
		{
			g_autoptr(BgsRegistration) r = bgs_store_get_registration (store, b, &error);

			assert_null (r);
			assert_true (g_error_matches (error, BGS_ERROR, BGS_ERROR_CORRUPT));
			assert_non_null (strstr (error->message, "teleport"));
			g_clear_error (&error);
		}

		/* three damaged events are reported as dropped, the good one arrives */
		events = bgs_store_take_events (store, a, &dropped, &error);
		assert_non_null (events);
		assert_int_equal (events->len, 1);
		assert_int_equal (event_step (g_ptr_array_index (events, 0)), 3);
		assert_int_equal (dropped, 3);
		assert_int_equal (bgs_store_count_events (store, a, NULL), 0);
		assert_int_equal (n_store_warnings, 4);

		hist = bgs_store_list_history (store, 1000, NULL, 0, &error);
		assert_int_equal (hist->len, 1);
		assert_string_equal (((BgsHistoryEntry *) g_ptr_array_index (hist, 0))->task_name, "ok");
		unfinished = bgs_store_history_unfinished (store, &error);
		assert_int_equal (unfinished->len, 1);

		/* a consent that is neither yes nor no is an error, never a yes */
		assert_false (bgs_store_get_consent (store, 1000, "org.example.App", "Watch",
						     &found, &allowed, &error));
		assert_true (g_error_matches (error, BGS_ERROR, BGS_ERROR_CORRUPT));
		assert_false (found);
		assert_false (allowed);
		g_clear_error (&error);
		consents = bgs_store_list_consents (store, 1000, NULL, &error);
		assert_int_equal (consents->len, 1);
		assert_string_equal (((BgsConsent *) g_ptr_array_index (consents, 0))->model, "Band");

		value = bgs_store_get_device_info (store, "dev", "model", &error);
		assert_null (value);
		assert_true (g_error_matches (error, BGS_ERROR, BGS_ERROR_CORRUPT));
	}
}

static void
test_busy (void **state)
{
	Fixture *f = *state;
	g_autoptr(BgsStore) store = open_ok (f->path);
	g_autoptr(BgsRegistration) r = make_reg (1000, "org.example.App", "a");
	g_autoptr(GError) error = NULL;
	g_autoptr(GPtrArray) regs = NULL;
	sqlite3 *other = NULL;

	/* another writer holds the lock past our busy timeout */
	assert_int_equal (sqlite3_open_v2 (f->path, &other, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
	assert_int_equal (sqlite3_exec (other, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
	assert_false (bgs_store_add_registration (store, r, &error));
	assert_true (g_error_matches (error, BGS_ERROR, BGS_ERROR_BUSY));
	g_clear_error (&error);
	assert_false (bgs_store_remove_registration (store, 1, &error));
	assert_true (g_error_matches (error, BGS_ERROR, BGS_ERROR_BUSY));
	g_clear_error (&error);
	assert_int_equal (sqlite3_exec (other, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close (other);
	/* and works again once released */
	assert_true (bgs_store_add_registration (store, r, &error));
	regs = bgs_store_list_registrations (store, &error);
	assert_int_equal (regs->len, 1);
}

int
main (int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown (test_create_mode_and_wal, setup, teardown),
		cmocka_unit_test_setup_teardown (test_roundtrip, setup, teardown),
		cmocka_unit_test_setup_teardown (test_duplicate_registration, setup, teardown),
		cmocka_unit_test_setup_teardown (test_remove_registration, setup, teardown),
		cmocka_unit_test_setup_teardown (test_event_bound, setup, teardown),
		cmocka_unit_test_setup_teardown (test_event_validation, setup, teardown),
		cmocka_unit_test_setup_teardown (test_seq_across_reopen, setup, teardown),
		cmocka_unit_test_setup_teardown (test_consents, setup, teardown),
		cmocka_unit_test_setup_teardown (test_history, setup, teardown),
		cmocka_unit_test_setup_teardown (test_crash_recovery, setup, teardown),
		cmocka_unit_test_setup_teardown (test_history_prune, setup, teardown),
		cmocka_unit_test_setup_teardown (test_lookups_indexed, setup, teardown),
		cmocka_unit_test_setup_teardown (test_device_info, setup, teardown),
		cmocka_unit_test_setup_teardown (test_migration_from_v1, setup, teardown),
		cmocka_unit_test_setup_teardown (test_migration_failure_rolls_back, setup, teardown),
		cmocka_unit_test_setup_teardown (test_corrupt_header, setup, teardown),
		cmocka_unit_test_setup_teardown (test_corrupt_page, setup, teardown),
		cmocka_unit_test_setup_teardown (test_corrupt_truncated, setup, teardown),
		cmocka_unit_test_setup_teardown (test_corrupt_not_a_database, setup, teardown),
		cmocka_unit_test_setup_teardown (test_future_version, setup, teardown),
		cmocka_unit_test_setup_teardown (test_wrong_tables, setup, teardown),
		cmocka_unit_test_setup_teardown (test_symlink_refused, setup, teardown),
		cmocka_unit_test_setup_teardown (test_read_only_refused, setup, teardown),
		cmocka_unit_test_setup_teardown (test_tampered_rows, setup, teardown),
		cmocka_unit_test_setup_teardown (test_busy, setup, teardown),
	};

	g_log_set_handler ("bgsync-store", G_LOG_LEVEL_WARNING, count_warnings, NULL);
	if (argc > 1)
		cmocka_set_test_filter (argv[1]);
	return cmocka_run_group_tests (tests, NULL, NULL);
}
