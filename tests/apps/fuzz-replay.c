/* fuzz-replay.c: runs LLVMFuzzerTestOneInput over every file of the
 * directories (or files) given, so the seed corpus and any crash found by
 * the fuzzer are replayed in every normal test run, built with gcc */
#include <glib.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

static guint
replay (const char *path)
{
	g_autoptr(GError) error = NULL;
	g_autofree char *data = NULL;
	gsize len = 0;

	if (g_file_test (path, G_FILE_TEST_IS_DIR)) {
		g_autoptr(GDir) dir = g_dir_open (path, 0, &error);
		const char *name;
		guint n = 0;

		if (dir == NULL) {
			g_printerr ("%s\n", error->message);
			return 0;
		}
		while ((name = g_dir_read_name (dir)) != NULL) {
			g_autofree char *child = g_build_filename (path, name, NULL);
			n += replay (child);
		}
		return n;
	}
	if (!g_file_get_contents (path, &data, &len, &error)) {
		g_printerr ("%s\n", error->message);
		return 0;
	}
	LLVMFuzzerTestOneInput ((const uint8_t *) data, len);
	return 1;
}

int
main (int argc, char **argv)
{
	guint n = 0;

	for (int i = 1; i < argc; i++)
		n += replay (argv[i]);
	g_print ("replayed %u inputs\n", n);
	/* an empty corpus means a broken path, not a pass */
	return n > 0 ? 0 : 1;
}
