/* bgs-smp-image.c: MCUboot header/TLV validation over a buffer or an fd */
#include "bgs-smp-image.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bgs-error.h"

typedef struct {
	const guint8 *data; /* buffer source */
	int fd;             /* or fd source */
	guint64 size;
} Source;

static gboolean
source_read (const Source *src, guint64 off, guint8 *buf, gsize len, GError **error)
{
	if (off > src->size || len > src->size - off) {
		g_set_error (error, BGS_ERROR, BGS_ERROR_CORRUPT,
			     "image truncated: needs %" G_GUINT64_FORMAT " bytes, has %" G_GUINT64_FORMAT,
			     off + len, src->size);
		return FALSE;
	}
	if (src->data != NULL) {
		memcpy (buf, src->data + off, len);
		return TRUE;
	}
	while (len > 0) {
		ssize_t n = pread (src->fd, buf, len, (off_t) off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int saved = errno;

			g_set_error (error, BGS_ERROR, BGS_ERROR_IO, "cannot read image: %s",
				     g_strerror (saved));
			return FALSE;
		}
		if (n == 0) {
			g_set_error_literal (error, BGS_ERROR, BGS_ERROR_CORRUPT,
					     "image truncated while reading");
			return FALSE;
		}
		buf += n;
		off += (guint64) n;
		len -= (gsize) n;
	}
	return TRUE;
}

static guint16
le16 (const guint8 *p)
{
	return (guint16) (p[0] | (p[1] << 8));
}

static guint32
le32 (const guint8 *p)
{
	return (guint32) p[0] | ((guint32) p[1] << 8) | ((guint32) p[2] << 16) | ((guint32) p[3] << 24);
}

/* walks one TLV area; fills @hash when it meets the SHA-256 TLV */
static gboolean
walk_tlvs (const Source *src, guint64 off, guint32 total, gboolean protected_area,
	   guint8 *hash, gboolean *found_hash, GError **error)
{
	guint64 end = off + total;

	off += 4; /* tlv info header */
	while (off < end) {
		guint8 h[4];
		guint16 type, len;

		if (end - off < 4) {
			g_set_error (error, BGS_ERROR, BGS_ERROR_CORRUPT,
				     "image TLV area ends inside a TLV header");
			return FALSE;
		}
		if (!source_read (src, off, h, 4, error))
			return FALSE;
		type = le16 (h);
		len = le16 (h + 2);
		if ((guint64) len > end - off - 4) {
			g_set_error (error, BGS_ERROR, BGS_ERROR_CORRUPT,
				     "image TLV 0x%02x (%u bytes) overruns the TLV area", type, len);
			return FALSE;
		}
		if (type == BGS_SMP_IMAGE_TLV_SHA256) {
			if (protected_area) {
				g_set_error_literal (error, BGS_ERROR, BGS_ERROR_CORRUPT,
						     "image has its SHA-256 TLV in the protected area");
				return FALSE;
			}
			if (*found_hash) {
				g_set_error_literal (error, BGS_ERROR, BGS_ERROR_CORRUPT,
						     "image has more than one SHA-256 TLV");
				return FALSE;
			}
			if (len != BGS_SMP_IMAGE_HASH_LEN) {
				g_set_error (error, BGS_ERROR, BGS_ERROR_CORRUPT,
					     "image SHA-256 TLV has length %u, not 32", len);
				return FALSE;
			}
			if (!source_read (src, off + 4, hash, BGS_SMP_IMAGE_HASH_LEN, error))
				return FALSE;
			*found_hash = TRUE;
		}
		off += 4 + (guint64) len;
	}
	return TRUE;
}

static gboolean
check_source (const Source *src, BgsSmpImageInfo *info, GError **error)
{
	guint8 hdr[BGS_SMP_IMAGE_HEADER_SIZE];
	guint8 tlv_info[4];
	guint32 magic;
	guint64 hashed_len, off;
	gboolean found_hash = FALSE;
	guint8 want[BGS_SMP_IMAGE_HASH_LEN];
	guint8 got[BGS_SMP_IMAGE_HASH_LEN];
	gsize got_len = sizeof (got);
	g_autoptr(GChecksum) sha = NULL;
	g_autofree guint8 *chunk = NULL;

	memset (info, 0, sizeof (*info));
	info->file_size = src->size;
	if (src->size < BGS_SMP_IMAGE_HEADER_SIZE) {
		g_set_error (error, BGS_ERROR, BGS_ERROR_CORRUPT,
			     "image truncated: %" G_GUINT64_FORMAT " bytes is less than an MCUboot header",
			     src->size);
		return FALSE;
	}
	if (!source_read (src, 0, hdr, sizeof (hdr), error))
		return FALSE;
	magic = le32 (hdr);
	if (magic != BGS_SMP_IMAGE_MAGIC) {
		g_set_error (error, BGS_ERROR, BGS_ERROR_CORRUPT,
			     "not an MCUboot image: header magic 0x%08x, expected 0x%08x",
			     magic, BGS_SMP_IMAGE_MAGIC);
		return FALSE;
	}
	info->load_addr = le32 (hdr + 4);
	info->hdr_size = le16 (hdr + 8);
	info->protect_tlv_size = le16 (hdr + 10);
	info->img_size = le32 (hdr + 12);
	info->flags = le32 (hdr + 16);
	info->major = hdr[20];
	info->minor = hdr[21];
	info->revision = le16 (hdr + 22);
	info->build = le32 (hdr + 24);
	if (info->hdr_size < BGS_SMP_IMAGE_HEADER_SIZE) {
		g_set_error (error, BGS_ERROR, BGS_ERROR_CORRUPT,
			     "MCUboot header size %u is smaller than the header", info->hdr_size);
		return FALSE;
	}
	if (info->img_size == 0) {
		g_set_error_literal (error, BGS_ERROR, BGS_ERROR_CORRUPT, "MCUboot image body is empty");
		return FALSE;
	}
	if (info->protect_tlv_size != 0 && info->protect_tlv_size < 4) {
		g_set_error (error, BGS_ERROR, BGS_ERROR_CORRUPT,
			     "protected TLV size %u is smaller than its header", info->protect_tlv_size);
		return FALSE;
	}
	hashed_len = (guint64) info->hdr_size + info->img_size + info->protect_tlv_size;
	if (hashed_len + 4 > src->size) {
		g_set_error (error, BGS_ERROR, BGS_ERROR_CORRUPT,
			     "image truncated: header says %" G_GUINT64_FORMAT " bytes before the TLV area, file has %" G_GUINT64_FORMAT,
			     hashed_len + 4, src->size);
		return FALSE;
	}

	/* protected TLVs */
	off = (guint64) info->hdr_size + info->img_size;
	if (info->protect_tlv_size > 0) {
		if (!source_read (src, off, tlv_info, 4, error))
			return FALSE;
		if (le16 (tlv_info) != BGS_SMP_IMAGE_TLV_PROT_INFO_MAGIC) {
			g_set_error (error, BGS_ERROR, BGS_ERROR_CORRUPT,
				     "protected TLV magic 0x%04x, expected 0x%04x",
				     le16 (tlv_info), BGS_SMP_IMAGE_TLV_PROT_INFO_MAGIC);
			return FALSE;
		}
		if (le16 (tlv_info + 2) != info->protect_tlv_size) {
			g_set_error (error, BGS_ERROR, BGS_ERROR_CORRUPT,
				     "protected TLV area says %u bytes, header says %u",
				     le16 (tlv_info + 2), info->protect_tlv_size);
			return FALSE;
		}
		if (!walk_tlvs (src, off, info->protect_tlv_size, TRUE, want, &found_hash, error))
			return FALSE;
		off += info->protect_tlv_size;
	}

	/* TLV area */
	if (!source_read (src, off, tlv_info, 4, error))
		return FALSE;
	if (le16 (tlv_info) != BGS_SMP_IMAGE_TLV_INFO_MAGIC) {
		g_set_error (error, BGS_ERROR, BGS_ERROR_CORRUPT,
			     "TLV area magic 0x%04x, expected 0x%04x",
			     le16 (tlv_info), BGS_SMP_IMAGE_TLV_INFO_MAGIC);
		return FALSE;
	}
	info->tlv_size = le16 (tlv_info + 2);
	if (info->tlv_size < 4) {
		g_set_error (error, BGS_ERROR, BGS_ERROR_CORRUPT,
			     "TLV area size %u is smaller than its header", info->tlv_size);
		return FALSE;
	}
	info->image_end = off + info->tlv_size;
	if (info->image_end > src->size) {
		g_set_error (error, BGS_ERROR, BGS_ERROR_CORRUPT,
			     "image truncated: TLV area ends at %" G_GUINT64_FORMAT ", file has %" G_GUINT64_FORMAT " bytes",
			     info->image_end, src->size);
		return FALSE;
	}
	if (!walk_tlvs (src, off, info->tlv_size, FALSE, want, &found_hash, error))
		return FALSE;
	if (!found_hash) {
		g_set_error_literal (error, BGS_ERROR, BGS_ERROR_CORRUPT,
				     "image has no SHA-256 TLV");
		return FALSE;
	}

	/* hash header + body + protected TLVs */
	sha = g_checksum_new (G_CHECKSUM_SHA256);
	chunk = g_malloc (64 * 1024);
	for (guint64 pos = 0; pos < hashed_len;) {
		gsize n = (gsize) MIN ((guint64) 64 * 1024, hashed_len - pos);

		if (!source_read (src, pos, chunk, n, error))
			return FALSE;
		g_checksum_update (sha, chunk, (gssize) n);
		pos += n;
	}
	g_checksum_get_digest (sha, got, &got_len);
	if (memcmp (got, want, sizeof (got)) != 0) {
		g_set_error_literal (error, BGS_ERROR, BGS_ERROR_CORRUPT,
				     "image is corrupt: SHA-256 of header and body does not match its TLV");
		return FALSE;
	}
	memcpy (info->hash, want, sizeof (want));
	return TRUE;
}

gboolean
bgs_smp_image_check (const guint8 *data, gsize len, BgsSmpImageInfo *info, GError **error)
{
	Source src = { .data = data != NULL ? data : (const guint8 *) "", .fd = -1, .size = len };

	return check_source (&src, info, error);
}

gboolean
bgs_smp_image_check_fd (int fd, BgsSmpImageInfo *info, GError **error)
{
	struct stat st;
	Source src = { .data = NULL, .fd = fd };

	if (fstat (fd, &st) < 0) {
		int saved = errno;

		g_set_error (error, BGS_ERROR, BGS_ERROR_IO, "cannot stat image: %s", g_strerror (saved));
		return FALSE;
	}
	if (!S_ISREG (st.st_mode)) {
		g_set_error_literal (error, BGS_ERROR, BGS_ERROR_INVALID_ARGS,
				     "image must be a regular file");
		return FALSE;
	}
	src.size = (guint64) st.st_size;
	return check_source (&src, info, error);
}

char *
bgs_smp_image_version_string (const BgsSmpImageInfo *info)
{
	if (info->build != 0)
		return g_strdup_printf ("%u.%u.%u.%u", info->major, info->minor, info->revision, info->build);
	return g_strdup_printf ("%u.%u.%u", info->major, info->minor, info->revision);
}

int
bgs_smp_image_version_compare (const BgsSmpImageInfo *a, const BgsSmpImageInfo *b)
{
	guint64 ka = ((guint64) a->major << 56) | ((guint64) a->minor << 48) | ((guint64) a->revision << 32) | a->build;
	guint64 kb = ((guint64) b->major << 56) | ((guint64) b->minor << 48) | ((guint64) b->revision << 32) | b->build;

	return ka < kb ? -1 : ka > kb ? 1 : 0;
}
