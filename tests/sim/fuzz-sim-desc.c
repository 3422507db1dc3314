/* fuzz-sim-desc.c: org.bgsync.Sim1.AddDevice descriptions are untrusted:
 * any serialized a{sv} must give a device or a clean error */
#include "config.h"

#include <stdint.h>

#include "bgs-sim.h"

static Sim *
fuzz_sim (void)
{
	static Sim *sim;

	if (sim == NULL) {
		/* enough of a simulator for a device that nobody hears */
		sim = g_new0 (Sim, 1);
		sim->adapters = g_ptr_array_new ();
		sim->peers = g_hash_table_new (g_str_hash, g_str_equal);
		sim->links = g_ptr_array_new ();
		sim->profiles = g_ptr_array_new ();
		sim->default_mtu = 517;
	}
	return sim;
}

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
	Sim *sim = fuzz_sim ();
	g_autoptr(GBytes) bytes = g_bytes_new (data, size);
	g_autoptr(GVariant) desc = g_variant_ref_sink (
		g_variant_new_from_bytes (G_VARIANT_TYPE ("a{sv}"), bytes, FALSE));
	g_autoptr(GError) error = NULL;
	SimPeer *peer = sim_peer_new_from_desc (sim, desc, &error);

	if (peer != NULL)
		sim_peer_remove (peer);
	else
		g_assert (error != NULL);
	g_assert (g_hash_table_size (sim->peers) == 0);
	return 0;
}

#ifdef FUZZ_REPLAY
/* without libFuzzer: replay the files or directories given */
static guint
replay (const char *path)
{
	g_autofree char *contents = NULL;
	gsize len = 0;
	guint n = 0;

	if (g_file_test (path, G_FILE_TEST_IS_DIR)) {
		g_autoptr(GDir) dir = g_dir_open (path, 0, NULL);
		const char *name;
		while (dir != NULL && (name = g_dir_read_name (dir)) != NULL) {
			g_autofree char *child = g_build_filename (path, name, NULL);
			n += replay (child);
		}
		return n;
	}
	if (!g_file_get_contents (path, &contents, &len, NULL))
		return 0;
	LLVMFuzzerTestOneInput ((const uint8_t *) contents, len);
	return 1;
}

int
main (int argc, char **argv)
{
	guint n = 0;

	for (int i = 1; i < argc; i++)
		n += replay (argv[i]);
	g_print ("replayed %u inputs\n", n);
	return n > 0 ? 0 : 1;
}
#endif
