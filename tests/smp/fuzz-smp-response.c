/* fuzz-smp-response.c: libFuzzer target for the SMP response parser
 * (header + CBOR body + every typed accessor the client uses) */
#include <stddef.h>
#include <stdint.h>

#include "bgs-smp-cmd.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
	g_autoptr(BgsSmpResponse) resp = bgs_smp_response_parse (data, size, NULL);
	g_autoptr(GArray) slots = NULL;
	g_autoptr(GBytes) bytes = NULL;
	g_autofree char *text = NULL;
	g_autofree char *type = NULL;
	guint64 off = 0, total = 0, group = 0;
	gint64 rc = 0;
	int match = 0;

	if (resp == NULL)
		return 0;
	bgs_smp_body_get_error (resp->body, &group, &rc);
	bgs_smp_body_check (resp->body, NULL);
	slots = bgs_smp_parse_image_state (resp->body, NULL);
	bgs_smp_parse_echo (resp->body, &text, NULL);
	bgs_smp_parse_image_upload (resp->body, &off, &match, NULL);
	if (bgs_smp_parse_fs_download (resp->body, &off, &bytes, &total, NULL))
		g_clear_pointer (&bytes, g_bytes_unref);
	bgs_smp_parse_fs_upload (resp->body, &off, NULL);
	bgs_smp_parse_fs_hash (resp->body, &type, &total, &bytes, NULL);
	bgs_smp_parse_os_params (resp->body, &off, &total, NULL);
	return 0;
}
