/* fuzz-config-replay.c: runs every file of a corpus directory through the
 * fuzz target once, so the seeds stay parseable without clang */
#include <stdint.h>
#include <stdio.h>

#include <glib.h>

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

int
main (int argc, char **argv)
{
	g_autoptr(GDir) dir = NULL;
	g_autoptr(GError) error = NULL;
	const char *name;
	guint n = 0;

	if (argc != 2) {
		g_printerr ("usage: %s CORPUS-DIR\n", argv[0]);
		return 2;
	}
	dir = g_dir_open (argv[1], 0, &error);
	if (dir == NULL) {
		g_printerr ("%s\n", error->message);
		return 1;
	}
	while ((name = g_dir_read_name (dir)) != NULL) {
		g_autofree char *path = g_build_filename (argv[1], name, NULL);
		g_autofree char *contents = NULL;
		gsize len;

		if (!g_file_get_contents (path, &contents, &len, &error)) {
			g_printerr ("%s\n", error->message);
			return 1;
		}
		LLVMFuzzerTestOneInput ((const uint8_t *) contents, len);
		n++;
	}
	printf ("%u inputs\n", n);
	return n > 0 ? 0 : 1;
}
