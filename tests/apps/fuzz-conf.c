/* fuzz-conf.c: libFuzzer target for the two file parsers of agent/apps
 * (app manifests and device models) and the device-facts matcher.
 * One input is fed to both parsers: both are GKeyFile dialects, so a
 * seed of either kind exercises the other's error paths. */
#include <stdint.h>
#include <string.h>

#include "bgs-app-manifest.h"
#include "bgs-device-model.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

static void
log_discard (const char *domain, GLogLevelFlags level, const char *message, gpointer user_data)
{
	if (level & (G_LOG_LEVEL_CRITICAL | G_LOG_LEVEL_ERROR))
		g_printerr ("%s\n", message); /* a critical is a bug: make it visible */
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
	static gboolean init;
	g_autoptr(BgsAppManifest) app = NULL;
	g_autoptr(BgsDeviceModel) model = NULL;
	g_autoptr(GVariant) mfr = NULL;
	g_autofree char *str = NULL;
	g_autofree char *fallback = NULL;
	g_autofree char *uuid = NULL;
	gpointer copy;
	const char *uuids[] = { "8d53dc1d-1db7-4cd3-868b-8a527460aa84", NULL, NULL };
	BgsDeviceFacts facts = { 0 };

	if (!init) {
		g_log_set_handler ("bgsync-apps", G_LOG_LEVEL_MASK, log_discard, NULL);
		init = TRUE;
	}

	app = bgs_app_manifest_parse ((const char *) data, size, "fuzz", NULL);
	if (app != NULL) {
		for (guint t = 0; t <= BGS_TRIGGER_LAST; t++)
			(void) bgs_app_manifest_allows (app, t, "test");
	}

	/* the bytes also play the name, a UUID and (untrusted) manufacturer data */
	str = g_strndup ((const char *) data, size);
	uuid = bgs_uuid_normalize (str);
	uuids[1] = str;
	copy = g_memdup2 (data, size);
	mfr = g_variant_ref_sink (g_variant_new_from_data (G_VARIANT_TYPE ("a{qv}"), copy, size,
							   FALSE, g_free, copy));
	facts.name = str;
	facts.modalias = str;
	facts.uuids = uuids;
	facts.manufacturer_data = mfr;
	facts.dis_vendor_source = size > 0 ? data[0] % 3 : 0;
	facts.dis_vendor = 0x05f1;
	facts.dis_product = 0x5742;
	fallback = bgs_device_model_fallback_id (&facts);

	model = bgs_device_model_parse ((const char *) data, size, "fuzz", NULL);
	if (model != NULL) {
		(void) bgs_device_model_match (model, &facts);
		(void) bgs_device_model_is_privileged (model, "org.bgsync.ctl");
		(void) bgs_device_model_get_param (model, "smp", "MTU");
	}
	return 0;
}
