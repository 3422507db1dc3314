/* bgs-smp-image.h: MCUboot image checks before anything touches a device
 *
 * Format from mcu-tools/mcuboot docs/design.md ("Image Format") and
 * boot/bootutil/include/bootutil/image.h: a little-endian 32-byte header
 * (padded to ih_hdr_size), the image body, an optional protected TLV area
 * (magic 0x6908) and the TLV area (magic 0x6907) holding a SHA-256 TLV
 * (type 0x10) over header + body + protected TLVs. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

#define BGS_SMP_IMAGE_MAGIC 0x96f3b83du
#define BGS_SMP_IMAGE_TLV_INFO_MAGIC 0x6907
#define BGS_SMP_IMAGE_TLV_PROT_INFO_MAGIC 0x6908
#define BGS_SMP_IMAGE_TLV_SHA256 0x10
#define BGS_SMP_IMAGE_HEADER_SIZE 32
#define BGS_SMP_IMAGE_HASH_LEN 32

typedef struct {
	guint8 major;
	guint8 minor;
	guint16 revision;
	guint32 build;
	guint32 load_addr;
	guint32 flags;
	guint32 hdr_size;
	guint32 img_size;
	guint32 protect_tlv_size;
	guint32 tlv_size;   /* unprotected TLV area including its info header */
	guint64 image_end;  /* where the TLV area ends */
	guint64 file_size;  /* bytes given (may include padding past image_end) */
	guint8 hash[BGS_SMP_IMAGE_HASH_LEN]; /* the SHA-256 TLV, verified */
} BgsSmpImageInfo;

/* BGS_ERROR_CORRUPT with a message saying what is wrong */
gboolean bgs_smp_image_check (const guint8 *data, gsize len, BgsSmpImageInfo *info,
			      GError **error);
/* same, reading @fd with pread() from offset 0 (the fd's position is kept) */
gboolean bgs_smp_image_check_fd (int fd, BgsSmpImageInfo *info, GError **error);

/* "major.minor.revision" plus ".build" when build != 0, as img_mgmt prints it */
char *bgs_smp_image_version_string (const BgsSmpImageInfo *info);
/* -1, 0, 1 comparing major, minor, revision, build */
int bgs_smp_image_version_compare (const BgsSmpImageInfo *a, const BgsSmpImageInfo *b);

G_END_DECLS
