/* fuzz-store-file.c: arbitrary bytes as the database file. open it, read
 * and change everything the daemon would, never crash or leak. built as a
 * libFuzzer target with -Dfuzzing=true (BGS_FUZZ_LIBFUZZER), and as a
 * replay of the seed corpus in every test run. */
#include <glib.h>
#include <glib/gstdio.h>
#include <stdint.h>
#include <stdlib.h>

#include "bgs-store.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

static char *fuzz_dir;

static void
ignore_log (const char *domain, GLogLevelFlags level, const char *message, gpointer user_data)
{
}

static void
remove_fuzz_dir (void)
{
	g_rmdir (fuzz_dir);
}

static void
exercise (BgsStore *store)
{
	g_autoptr(GPtrArray) regs = bgs_store_list_registrations (store, NULL);
	g_autoptr(GPtrArray) unfinished = bgs_store_history_unfinished (store, NULL);
	g_autofree char *model = bgs_store_get_device_info (store, "dev", "model", NULL);

	(void) model;
	for (guint i = 0; regs != NULL && i < regs->len; i++) {
		BgsRegistration *r = g_ptr_array_index (regs, i);
		g_autoptr(BgsEvent) ev = bgs_event_new (r->id, r->uid, r->app_id, BGS_EVENT_PROGRESS,
							NULL, 1);
		g_autoptr(GPtrArray) events = NULL;
		g_autoptr(GPtrArray) consents = NULL;
		g_autoptr(GPtrArray) history = NULL;
		gboolean found, allowed;
		guint dropped;

		bgs_store_count_events (store, r->id, NULL);
		bgs_store_queue_event (store, ev, 2, NULL);
		events = bgs_store_take_events (store, r->id, &dropped, NULL);
		consents = bgs_store_list_consents (store, r->uid, r->app_id, NULL);
		history = bgs_store_list_history (store, r->uid, NULL, 5, NULL);
		bgs_store_get_consent (store, r->uid, r->app_id, "m", &found, &allowed, NULL);
		if (i == 0)
			bgs_store_remove_registration (store, r->id, NULL);
	}
	for (guint i = 0; unfinished != NULL && i < unfinished->len; i++) {
		BgsHistoryEntry *e = g_ptr_array_index (unfinished, i);
		g_autoptr(GPtrArray) consents = bgs_store_list_consents (store, e->uid, NULL, NULL);

		(void) consents;
		bgs_store_history_end (store, e->id, 2, "canceled", "terminating",
				       e->bytes_in, e->bytes_out, NULL);
	}
	bgs_store_set_device_info (store, "dev", "model", "x", NULL);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
	g_autofree char *path = NULL;
	g_autoptr(BgsStore) store = NULL;
	const char *const suffixes[] = { "", "-wal", "-shm", "-journal" };

	if (fuzz_dir == NULL) {
		fuzz_dir = g_dir_make_tmp ("bgs-fuzz-store-XXXXXX", NULL);
		if (fuzz_dir == NULL)
			abort ();
		atexit (remove_fuzz_dir);
		/* damaged rows are expected here; their warnings are noise */
		g_log_set_handler ("bgsync-store", G_LOG_LEVEL_MASK, ignore_log, NULL);
	}
	path = g_build_filename (fuzz_dir, "fuzz.db", NULL);
	if (!g_file_set_contents (path, (const char *) data, (gssize) size, NULL))
		abort ();
	store = bgs_store_open (path, NULL);
	if (store != NULL)
		exercise (store);
	g_clear_object (&store);
	for (guint i = 0; i < G_N_ELEMENTS (suffixes); i++) {
		g_autofree char *name = g_strconcat (path, suffixes[i], NULL);

		g_unlink (name);
	}
	return 0;
}

#ifndef BGS_FUZZ_LIBFUZZER
/* replay: every file in the directories given */
int
main (int argc, char **argv)
{
	guint n = 0;

	for (int i = 1; i < argc; i++) {
		g_autoptr(GDir) dir = g_dir_open (argv[i], 0, NULL);
		const char *name;

		if (dir == NULL) {
			g_printerr ("cannot open corpus %s\n", argv[i]);
			return 1;
		}
		while ((name = g_dir_read_name (dir)) != NULL) {
			g_autofree char *file = g_build_filename (argv[i], name, NULL);
			g_autofree char *contents = NULL;
			gsize len = 0;

			if (!g_file_get_contents (file, &contents, &len, NULL)) {
				g_printerr ("cannot read %s\n", file);
				return 1;
			}
			LLVMFuzzerTestOneInput ((const uint8_t *) contents, len);
			n++;
		}
	}
	g_print ("replayed %u inputs\n", n);
	return n > 0 ? 0 : 1;
}
#endif
