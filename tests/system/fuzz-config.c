/* fuzz-config.c: libFuzzer target for the main.conf parser; also linked
 * into fuzz-config-replay, which runs the seed corpus as a unit test */
#include <stdint.h>
#include <stddef.h>

#include "bgs-config.h"

static GLogWriterOutput
quiet_writer (GLogLevelFlags level, const GLogField *fields, gsize n_fields, gpointer data)
{
	/* unknown keys warn; that is expected here, not a finding */
	if (level & (G_LOG_LEVEL_ERROR | G_LOG_LEVEL_CRITICAL))
		return g_log_writer_standard_streams (level, fields, n_fields, data);
	return G_LOG_WRITER_HANDLED;
}

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
	static gboolean init;
	g_autoptr(GError) error = NULL;
	g_autoptr(BgsConfig) config = NULL;

	if (!init) {
		g_log_set_writer_func (quiet_writer, NULL, NULL);
		init = TRUE;
	}
	config = bgs_config_load_from_data ((const char *) data, size, "fuzz.conf", &error);
	/* exactly one of config and error */
	if ((config == NULL) == (error == NULL))
		__builtin_trap ();
	if (config != NULL) {
		if (config->app_directories == NULL || config->device_directories == NULL ||
		    config->adapters == NULL || config->state_directory == NULL ||
		    config->presence_lost_rssi > config->presence_found_rssi)
			__builtin_trap ();
	}
	return 0;
}
