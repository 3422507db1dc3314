/* bgs-smp-cmd.h: request bodies and response parsers for the commands
 * bgsync uses (Zephyr doc/services/device_mgmt/smp_groups/smp_group_0.rst,
 * smp_group_1.rst, smp_group_8.rst), plus the "rc" / "err" error model of
 * smp_protocol.rst "Minimal response". Pure functions, no I/O. */
#pragma once

#include <glib.h>

#include "bgs-smp-cbor.h"
#include "bgs-smp-frame.h"

G_BEGIN_DECLS

typedef struct {
	BgsSmpHeader hdr;
	BgsSmpMap *body;
} BgsSmpResponse;

/* parses header + body of one whole frame; the body must be a CBOR map */
BgsSmpResponse *bgs_smp_response_parse (const guint8 *frame, gsize len, GError **error);
void bgs_smp_response_free (BgsSmpResponse *resp);

/* TRUE when the body reports an error: v1/v2 "rc" (@group set to
 * G_MAXUINT64) or v2 "err" {group, rc}; FALSE and untouched outputs on
 * success. A malformed rc/err counts as an error with @rc = -1. */
gboolean bgs_smp_body_get_error (const BgsSmpMap *body, guint64 *group, gint64 *rc);
/* FALSE with a clear GError when the device reported an error, e.g.
 * "device error MGMT_ERR_EBUSY (10): device is busy" or "device error
 * IMG_MGMT_RET_RC_NO_FREE_SLOT (image group, 9): no free slot for the image".
 * Codes: EBUSY -> BGS_ERROR_BUSY, ENOENT / FS file not found ->
 * BGS_ERROR_NOT_FOUND, ENOTSUP -> NOT_SUPPORTED, EACCESSDENIED ->
 * NOT_AUTHORIZED, ETIMEOUT -> TIMED_OUT, malformed -> PROTOCOL, else FAILED. */
gboolean bgs_smp_body_check (const BgsSmpMap *body, GError **error);

/* request bodies */
GBytes *bgs_smp_build_empty (void);
GBytes *bgs_smp_build_echo (const char *text);
GBytes *bgs_smp_build_reset (gboolean force);
/* test: @hash given, confirm FALSE; confirm: @hash optional, confirm TRUE */
GBytes *bgs_smp_build_image_state_set (const guint8 *hash, gboolean confirm);
/* when @off == 0 adds "image" (if @image > 0), "len", "sha" (if given) and
 * "upgrade" (if TRUE), as the first chunk must */
GBytes *bgs_smp_build_image_upload (guint image, guint64 off, const guint8 *data, gsize len,
				    guint64 total, const guint8 *sha, gboolean upgrade);
GBytes *bgs_smp_build_fs_download (const char *name, guint64 off);
/* "len" added when @off == 0 */
GBytes *bgs_smp_build_fs_upload (const char *name, guint64 off, const guint8 *data, gsize len,
				 guint64 total);
/* @type NULL for the device default; @len 0 for the whole file */
GBytes *bgs_smp_build_fs_hash (const char *name, const char *type, guint64 off, guint64 len);

/* response parsers (call bgs_smp_body_check first) */
typedef struct {
	guint image;
	guint slot;
	char *version;
	gboolean has_hash;
	guint8 hash[32];
	gboolean bootable;
	gboolean pending;
	gboolean confirmed;
	gboolean active;
	gboolean permanent;
} BgsSmpImageSlot;

/* element type BgsSmpImageSlot, with its own clear func */
GArray *bgs_smp_parse_image_state (const BgsSmpMap *body, GError **error);
gboolean bgs_smp_parse_echo (const BgsSmpMap *body, char **text, GError **error);
/* OS "MCUmgr parameters" (0/6, smp_group_0.rst): "buf_size" (bytes of one
 * SMP buffer, header included) and "buf_count"; both required, a size under
 * 64 or a count of 0 is a protocol error */
gboolean bgs_smp_parse_os_params (const BgsSmpMap *body, guint64 *buf_size, guint64 *buf_count,
				  GError **error);
/* "off" is required; @match set to -1 when absent, else 0/1 */
gboolean bgs_smp_parse_image_upload (const BgsSmpMap *body, guint64 *off, int *match,
				     GError **error);
/* @total set to G_MAXUINT64 when "len" is absent */
gboolean bgs_smp_parse_fs_download (const BgsSmpMap *body, guint64 *off, GBytes **data,
				    guint64 *total, GError **error);
gboolean bgs_smp_parse_fs_upload (const BgsSmpMap *body, guint64 *off, GError **error);
/* output: byte string for sha256, uint for crc32 (returned as 4 BE bytes) */
gboolean bgs_smp_parse_fs_hash (const BgsSmpMap *body, char **type, guint64 *len,
				GBytes **output, GError **error);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (BgsSmpResponse, bgs_smp_response_free)

G_END_DECLS
