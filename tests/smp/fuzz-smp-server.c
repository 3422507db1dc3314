/* fuzz-smp-server.c: libFuzzer target for the device side: request bytes
 * from a central into BgsSmpServer (reassembly, request parsing, every
 * handler), over a flash store in a temporary directory */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <glib/gstdio.h>

#include "bgs-smp-server.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

static BgsSmpServer *server;
static BgsClock *clock_;
static char *dir;
static guint runs;

static gboolean
discard (const guint8 *d, gsize len, gpointer user_data, GError **error)
{
	return TRUE;
}

static void
rm_rf (const char *path)
{
	g_autoptr(GDir) d = g_dir_open (path, 0, NULL);
	const char *name;

	if (d != NULL) {
		while ((name = g_dir_read_name (d)) != NULL) {
			g_autofree char *child = g_build_filename (path, name, NULL);

			rm_rf (child);
		}
	}
	g_remove (path);
}

static void
cleanup (void)
{
	bgs_smp_server_free (server);
	bgs_clock_unref (clock_);
	rm_rf (dir);
	g_free (dir);
}

static void
fresh_server (void)
{
	BgsSmpServerOptions opt = { .erase_usec = 1000 };

	if (server != NULL) {
		bgs_smp_server_free (server);
		rm_rf (dir);
		g_mkdir_with_parents (dir, 0700);
	}
	/* the fake clock never fires: reset timers stay armed, nothing sleeps */
	server = bgs_smp_server_new (clock_, dir, &opt, NULL);
	bgs_smp_server_set_transport (server, 247, discard, NULL);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
	if (server == NULL) {
		clock_ = bgs_clock_new_fake (0, 0);
		dir = g_dir_make_tmp ("fuzz-smp-server-XXXXXX", NULL);
		if (dir == NULL)
			abort ();
		fresh_server ();
		atexit (cleanup);
	}
	/* keep the files a fuzzing run writes bounded */
	if (++runs % 2000 == 0)
		fresh_server ();
	bgs_smp_server_receive (server, data, size);
	/* the next input starts a new request stream */
	bgs_smp_server_set_transport (server, 247, discard, NULL);
	bgs_clock_fake_advance (clock_, 2000);
	return 0;
}
