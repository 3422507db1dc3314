/* smp-test-image.h: builds MCUboot images for tests
 *
 * Layout per mcu-tools/mcuboot docs/design.md "Image Format" and
 * boot/bootutil/include/bootutil/image.h: struct image_header (LE, magic
 * 0x96f3b83d, load_addr, hdr_size, protect_tlv_size, img_size, flags,
 * version {major, minor, revision, build}, pad) padded to hdr_size; body;
 * optional protected TLV area (info magic 0x6908, tot = its whole size);
 * TLV area (info magic 0x6907) with IMAGE_TLV_SHA256 (0x10, 32 bytes) over
 * header + body + protected TLV area. */
#pragma once

#include <glib.h>
#include <string.h>

static inline void
smp_test_put16 (GByteArray *a, guint16 v)
{
	guint8 b[2] = { (guint8) v, (guint8) (v >> 8) };

	g_byte_array_append (a, b, 2);
}

static inline void
smp_test_put32 (GByteArray *a, guint32 v)
{
	guint8 b[4] = { (guint8) v, (guint8) (v >> 8), (guint8) (v >> 16), (guint8) (v >> 24) };

	g_byte_array_append (a, b, 4);
}

/* @body_len bytes of pattern seeded by @seed; @protected_tlv adds a
 * protected area with one 4-byte TLV (type 0x50, like a security counter) */
static inline GByteArray *
smp_test_image_new (guint8 major, guint8 minor, guint16 rev, guint32 build, gsize body_len,
		    guint8 seed, gboolean protected_tlv, guint8 hash_out[32])
{
	GByteArray *a = g_byte_array_new ();
	guint16 hdr_size = 0x20;
	guint16 prot_size = protected_tlv ? 4 + 4 + 4 : 0;
	guint8 digest[32];
	gsize dlen = sizeof (digest);
	GChecksum *sum;

	smp_test_put32 (a, 0x96f3b83d);
	smp_test_put32 (a, 0);
	smp_test_put16 (a, hdr_size);
	smp_test_put16 (a, prot_size);
	smp_test_put32 (a, (guint32) body_len);
	smp_test_put32 (a, 0);
	g_byte_array_append (a, &major, 1);
	g_byte_array_append (a, &minor, 1);
	smp_test_put16 (a, rev);
	smp_test_put32 (a, build);
	smp_test_put32 (a, 0);
	for (gsize i = 0; i < body_len; i++) {
		guint8 b = (guint8) ((i * 31 + seed) ^ (i >> 8));

		g_byte_array_append (a, &b, 1);
	}
	if (protected_tlv) {
		smp_test_put16 (a, 0x6908);
		smp_test_put16 (a, prot_size);
		smp_test_put16 (a, 0x50);
		smp_test_put16 (a, 4);
		smp_test_put32 (a, 7);
	}
	sum = g_checksum_new (G_CHECKSUM_SHA256);
	g_checksum_update (sum, a->data, a->len);
	g_checksum_get_digest (sum, digest, &dlen);
	g_checksum_free (sum);
	smp_test_put16 (a, 0x6907);
	smp_test_put16 (a, 4 + 4 + 32);
	smp_test_put16 (a, 0x10);
	smp_test_put16 (a, 32);
	g_byte_array_append (a, digest, 32);
	if (hash_out != NULL)
		memcpy (hash_out, digest, 32);
	return a;
}
