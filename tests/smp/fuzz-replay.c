/* fuzz-replay.c: runs a libFuzzer target over the files given (or the files
 * in the directories given), so every normal test run replays the seed
 * corpus with gcc and no libFuzzer */
#include <glib.h>
#include <stdint.h>
#include <stdio.h>

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

static guint
run_path (const char *path)
{
	g_autofree char *contents = NULL;
	gsize len = 0;
	g_autoptr(GError) error = NULL;

	if (g_file_test (path, G_FILE_TEST_IS_DIR)) {
		g_autoptr(GDir) dir = g_dir_open (path, 0, &error);
		const char *name;
		guint n = 0;

		if (dir == NULL) {
			fprintf (stderr, "%s\n", error->message);
			return 0;
		}
		while ((name = g_dir_read_name (dir)) != NULL) {
			g_autofree char *child = g_build_filename (path, name, NULL);

			n += run_path (child);
		}
		return n;
	}
	if (!g_file_get_contents (path, &contents, &len, &error)) {
		fprintf (stderr, "%s\n", error->message);
		return 0;
	}
	LLVMFuzzerTestOneInput ((const uint8_t *) contents, len);
	return 1;
}

int
main (int argc, char **argv)
{
	guint n = 0;

	for (int i = 1; i < argc; i++)
		n += run_path (argv[i]);
	printf ("replayed %u inputs\n", n);
	/* an empty corpus means the test is not testing anything */
	return n > 0 ? 0 : 1;
}
