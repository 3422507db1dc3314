/* test-smp-codec.c: SMP header, CBOR bodies and error mapping
 *
 * The byte vectors are built from the MCUmgr documentation, Zephyr
 * doc/services/device_mgmt/:
 *  - smp_protocol.rst, "Frame: The envelope" (the 8-byte header: Res/Ver/OP
 *    in byte 0 with Ver in bits 3-4, Flags, Data Length BE16, Group ID BE16,
 *    Sequence Num, Command ID) and "Minimal response" ({"rc": int} for v1,
 *    {"err": {"group": uint, "rc": uint}} for v2);
 *  - smp_groups/smp_group_0.rst "Echo request"/"Echo response" (OP 2/3,
 *    group 0, id 0, {"d": str} / {"r": str}) and "MCUmgr Parameters" (OP
 *    0/1, group 0, id 6, empty map / {"buf_size": uint, "buf_count": uint});
 *  - smp_groups/smp_group_1.rst "Set state of image request" (OP 2, group 1,
 *    id 0, {"hash", "confirm"}), "Image upload request" (OP 2, group 1, id 1,
 *    {"image", "len", "off", "sha", "data", "upgrade"} in that order) and
 *    "Get state of images response";
 *  - smp_groups/smp_group_8.rst "File download request"/"response" (OP 0/1,
 *    group 8, id 0, {"off", "name"} / {"off", "data", "len"}).
 * The docs give the CBOR in diagnostic notation; the bytes are its RFC 8949
 * encoding with definite lengths and shortest integers, as zcbor sends. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>

#include "bgs-error.h"
#include "bgs-smp-cbor.h"
#include "bgs-smp-cmd.h"
#include "bgs-smp-frame.h"

static void
assert_bytes (GBytes *b, const guint8 *want, gsize want_len)
{
	gsize len = 0;
	const guint8 *data = g_bytes_get_data (b, &len);

	if (len != want_len || memcmp (data, want, len) != 0) {
		g_autofree char *got = g_strnfill (0, 0);

		for (gsize i = 0; i < len; i++) {
			char *tmp = g_strdup_printf ("%s%02x ", got, data[i]);

			g_free (got);
			got = tmp;
		}
		print_error ("got %s(%" G_GSIZE_FORMAT " bytes, want %" G_GSIZE_FORMAT ")\n", got, len, want_len);
		fail ();
	}
}

/* smp_group_0.rst "Echo request": OP 2, group 0, id 0, {"d": "hello"} */
static const guint8 echo_req_v1[] = {
	0x02, 0x00, 0x00, 0x09, 0x00, 0x00, 0x07, 0x00,
	0xa1, 0x61, 'd', 0x65, 'h', 'e', 'l', 'l', 'o',
};

/* same with Ver = 0b01 (SMP version 2): byte 0 = 0x08 | OP */
static const guint8 echo_req_v2[] = {
	0x0a, 0x00, 0x00, 0x09, 0x00, 0x00, 0x07, 0x00,
	0xa1, 0x61, 'd', 0x65, 'h', 'e', 'l', 'l', 'o',
};

static void
test_header_encode_echo (void **state)
{
	g_autoptr(GBytes) body = bgs_smp_build_echo ("hello");
	g_autoptr(GBytes) f1 = bgs_smp_frame_build (BGS_SMP_OP_WRITE, BGS_SMP_V1, BGS_SMP_GROUP_OS,
						    BGS_SMP_OS_ECHO, 7, body);
	g_autoptr(GBytes) f2 = bgs_smp_frame_build (BGS_SMP_OP_WRITE, BGS_SMP_V2, BGS_SMP_GROUP_OS,
						    BGS_SMP_OS_ECHO, 7, body);

	assert_bytes (f1, echo_req_v1, sizeof (echo_req_v1));
	assert_bytes (f2, echo_req_v2, sizeof (echo_req_v2));
}

static void
test_header_decode (void **state)
{
	/* smp_group_1.rst "Image upload response": OP 3, group 1, id 1; a
	 * 300-byte body and group 0x0108 exercise both big-endian fields */
	const guint8 raw[] = { 0x0b, 0x00, 0x01, 0x2c, 0x01, 0x08, 0xfe, 0x01 };
	BgsSmpHeader h;
	g_autoptr(GError) error = NULL;

	assert_true (bgs_smp_header_decode (raw, sizeof (raw), &h, &error));
	assert_int_equal (h.op, BGS_SMP_OP_WRITE_RSP);
	assert_int_equal (h.version, BGS_SMP_V2);
	assert_int_equal (h.flags, 0);
	assert_int_equal (h.len, 300);
	assert_int_equal (h.group, 0x0108);
	assert_int_equal (h.seq, 0xfe);
	assert_int_equal (h.id, 1);

	/* round trip */
	{
		guint8 out[8];

		bgs_smp_header_encode (&h, out);
		assert_memory_equal (out, raw, 8);
	}
}

static void
test_header_reject (void **state)
{
	BgsSmpHeader h;
	const guint8 reserved_bits[] = { 0x23, 0, 0, 0, 0, 0, 0, 0 };
	const guint8 reserved_ver[] = { 0x13, 0, 0, 0, 0, 0, 0, 0 };
	const guint8 bad_op[] = { 0x05, 0, 0, 0, 0, 0, 0, 0 };

	for (guint i = 0; i < 3; i++) {
		const guint8 *raw = i == 0 ? reserved_bits : i == 1 ? reserved_ver : bad_op;
		g_autoptr(GError) error = NULL;

		assert_false (bgs_smp_header_decode (raw, 8, &h, &error));
		assert_true (g_error_matches (error, BGS_ERROR, BGS_ERROR_PROTOCOL));
	}
	{
		g_autoptr(GError) error = NULL;

		assert_false (bgs_smp_header_decode (echo_req_v1, 7, &h, &error));
		assert_true (g_error_matches (error, BGS_ERROR, BGS_ERROR_PROTOCOL));
	}
}

/* smp_group_0.rst "Echo response": OP 3, group 0, id 0, {"r": "hello"} */
static void
test_echo_response_decode (void **state)
{
	const guint8 raw[] = {
		0x03, 0x00, 0x00, 0x09, 0x00, 0x00, 0x07, 0x00,
		0xa1, 0x61, 'r', 0x65, 'h', 'e', 'l', 'l', 'o',
	};
	g_autoptr(GError) error = NULL;
	g_autoptr(BgsSmpResponse) resp = bgs_smp_response_parse (raw, sizeof (raw), &error);
	g_autofree char *text = NULL;

	assert_non_null (resp);
	assert_true (bgs_smp_body_check (resp->body, &error));
	assert_true (bgs_smp_parse_echo (resp->body, &text, &error));
	assert_string_equal (text, "hello");
}

/* smp_group_1.rst "Set state of image request": test = hash + confirm false */
static void
test_image_state_set_encode (void **state)
{
	guint8 hash[32];
	guint8 want[64];
	gsize n = 0;
	g_autoptr(GBytes) body = NULL;

	for (guint i = 0; i < 32; i++)
		hash[i] = (guint8) i;
	want[n++] = 0xa2;
	want[n++] = 0x64; memcpy (want + n, "hash", 4); n += 4;
	want[n++] = 0x58; want[n++] = 0x20; memcpy (want + n, hash, 32); n += 32;
	want[n++] = 0x67; memcpy (want + n, "confirm", 7); n += 7;
	want[n++] = 0xf4; /* false */
	body = bgs_smp_build_image_state_set (hash, FALSE);
	assert_bytes (body, want, n);

	/* confirm of the running image: {"confirm": true} */
	{
		const guint8 confirm[] = { 0xa1, 0x67, 'c', 'o', 'n', 'f', 'i', 'r', 'm', 0xf5 };
		g_autoptr(GBytes) b2 = bgs_smp_build_image_state_set (NULL, TRUE);

		assert_bytes (b2, confirm, sizeof (confirm));
	}
}

/* smp_group_1.rst "Image upload request", first chunk of a 1000-byte image
 * (len/off/sha/data) and a later chunk (off/data only) */
static void
test_image_upload_encode (void **state)
{
	guint8 sha[32];
	const guint8 data[3] = { 0xaa, 0xbb, 0xcc };
	guint8 want[128];
	gsize n = 0;
	g_autoptr(GBytes) first = NULL;
	g_autoptr(GBytes) later = NULL;

	memset (sha, 0x5a, sizeof (sha));
	want[n++] = 0xa4;
	want[n++] = 0x63; memcpy (want + n, "len", 3); n += 3;
	want[n++] = 0x19; want[n++] = 0x03; want[n++] = 0xe8; /* 1000 */
	want[n++] = 0x63; memcpy (want + n, "off", 3); n += 3;
	want[n++] = 0x00;
	want[n++] = 0x63; memcpy (want + n, "sha", 3); n += 3;
	want[n++] = 0x58; want[n++] = 0x20; memcpy (want + n, sha, 32); n += 32;
	want[n++] = 0x64; memcpy (want + n, "data", 4); n += 4;
	want[n++] = 0x43; memcpy (want + n, data, 3); n += 3;
	first = bgs_smp_build_image_upload (0, 0, data, 3, 1000, sha, FALSE);
	assert_bytes (first, want, n);

	n = 0;
	want[n++] = 0xa2;
	want[n++] = 0x63; memcpy (want + n, "off", 3); n += 3;
	want[n++] = 0x1a; want[n++] = 0x00; want[n++] = 0x01; want[n++] = 0x00; want[n++] = 0x00; /* 65536 */
	want[n++] = 0x64; memcpy (want + n, "data", 4); n += 4;
	want[n++] = 0x43; memcpy (want + n, data, 3); n += 3;
	later = bgs_smp_build_image_upload (0, 65536, data, 3, 1000, sha, TRUE);
	assert_bytes (later, want, n);
}

/* smp_group_8.rst "File download request": {"off": 0, "name": "/lfs/a"} */
static void
test_fs_download_encode (void **state)
{
	const guint8 want[] = {
		0xa2, 0x63, 'o', 'f', 'f', 0x00,
		0x64, 'n', 'a', 'm', 'e', 0x66, '/', 'l', 'f', 's', '/', 'a',
	};
	g_autoptr(GBytes) body = bgs_smp_build_fs_download ("/lfs/a", 0);

	assert_bytes (body, want, sizeof (want));
}

/* smp_group_8.rst "File download response": {"off": 0, "data": h'010203', "len": 3} */
static void
test_fs_download_decode (void **state)
{
	const guint8 raw[] = {
		0xa3, 0x63, 'o', 'f', 'f', 0x00,
		0x64, 'd', 'a', 't', 'a', 0x43, 0x01, 0x02, 0x03,
		0x63, 'l', 'e', 'n', 0x03,
	};
	g_autoptr(GError) error = NULL;
	g_autoptr(BgsSmpMap) m = bgs_smp_map_parse (raw, sizeof (raw), &error);
	g_autoptr(GBytes) data = NULL;
	guint64 off = 99, total = 0;

	assert_non_null (m);
	assert_true (bgs_smp_parse_fs_download (m, &off, &data, &total, &error));
	assert_int_equal (off, 0);
	assert_int_equal (total, 3);
	assert_int_equal (g_bytes_get_size (data), 3);
}

/* smp_group_1.rst "Get state of images response" */
static void
test_image_state_decode (void **state)
{
	GByteArray *a = g_byte_array_new ();
	g_autoptr(GError) error = NULL;
	g_autoptr(BgsSmpMap) m = NULL;
	g_autoptr(GArray) slots = NULL;
	guint8 hash[32];
	BgsSmpImageSlot *s;

#define PUT(...) do { const guint8 _b[] = { __VA_ARGS__ }; g_byte_array_append (a, _b, sizeof (_b)); } while (0)
	memset (hash, 0x11, sizeof (hash));
	PUT (0xa1, 0x66, 'i', 'm', 'a', 'g', 'e', 's', 0x82);
	/* {"slot": 0, "version": "1.0.0", "hash": h'11..', "bootable": true,
	 *  "confirmed": true, "active": true} */
	PUT (0xa6, 0x64, 's', 'l', 'o', 't', 0x00);
	PUT (0x67, 'v', 'e', 'r', 's', 'i', 'o', 'n', 0x65, '1', '.', '0', '.', '0');
	PUT (0x64, 'h', 'a', 's', 'h', 0x58, 0x20);
	g_byte_array_append (a, hash, 32);
	PUT (0x68, 'b', 'o', 'o', 't', 'a', 'b', 'l', 'e', 0xf5);
	PUT (0x69, 'c', 'o', 'n', 'f', 'i', 'r', 'm', 'e', 'd', 0xf5);
	PUT (0x66, 'a', 'c', 't', 'i', 'v', 'e', 0xf5);
	/* {"slot": 1, "version": "1.1.0", "pending": true} */
	PUT (0xa3, 0x64, 's', 'l', 'o', 't', 0x01);
	PUT (0x67, 'v', 'e', 'r', 's', 'i', 'o', 'n', 0x65, '1', '.', '1', '.', '0');
	PUT (0x67, 'p', 'e', 'n', 'd', 'i', 'n', 'g', 0xf5);
#undef PUT
	m = bgs_smp_map_parse (a->data, a->len, &error);
	g_byte_array_unref (a);
	assert_non_null (m);
	slots = bgs_smp_parse_image_state (m, &error);
	assert_non_null (slots);
	assert_int_equal (slots->len, 2);
	s = &g_array_index (slots, BgsSmpImageSlot, 0);
	assert_int_equal (s->slot, 0);
	assert_string_equal (s->version, "1.0.0");
	assert_true (s->has_hash);
	assert_memory_equal (s->hash, hash, 32);
	assert_true (s->active && s->confirmed && s->bootable && !s->pending);
	s = &g_array_index (slots, BgsSmpImageSlot, 1);
	assert_int_equal (s->slot, 1);
	assert_false (s->has_hash);
	assert_true (s->pending && !s->active);
}

static void
expect_parse_error (const guint8 *raw, gsize len, const char *fragment)
{
	g_autoptr(GError) error = NULL;
	g_autoptr(BgsSmpMap) m = bgs_smp_map_parse (raw, len, &error);

	assert_null (m);
	assert_true (g_error_matches (error, BGS_ERROR, BGS_ERROR_PROTOCOL));
	if (strstr (error->message, fragment) == NULL) {
		print_error ("error \"%s\" lacks \"%s\"\n", error->message, fragment);
		fail ();
	}
}

static void
test_cbor_reject (void **state)
{
	const guint8 not_map[] = { 0x83, 0x01, 0x02, 0x03 };
	const guint8 trailing[] = { 0xa1, 0x62, 'r', 'c', 0x00, 0x00 };
	const guint8 truncated[] = { 0xa1, 0x62, 'r', 'c' };
	const guint8 int_key[] = { 0xa1, 0x01, 0x02 };
	const guint8 dup_key[] = { 0xa2, 0x62, 'r', 'c', 0x00, 0x62, 'r', 'c', 0x01 };
	const guint8 tagged[] = { 0xa1, 0x61, 'd', 0xc1, 0x01 };
	const guint8 bad_utf8[] = { 0xa1, 0x61, 'd', 0x61, 0xff };
	guint8 deep[64];
	gsize n = 0;

	expect_parse_error (not_map, sizeof (not_map), "not a CBOR map");
	expect_parse_error (trailing, sizeof (trailing), "trailing");
	expect_parse_error (truncated, sizeof (truncated), "truncated");
	expect_parse_error (int_key, sizeof (int_key), "key is not a text string");
	expect_parse_error (dup_key, sizeof (dup_key), "twice");
	expect_parse_error (tagged, sizeof (tagged), "tags");
	expect_parse_error (NULL, 0, "empty");
	/* found by the fuzzer: a 2^31-element array in 5 bytes */
	{
		const guint8 huge_array[] = { 0xa1, 0x61, 'a', 0x9a, 0x89, 0x9a, 0x8d, 0x73, 0x00 };
		const guint8 huge_map[] = { 0xa1, 0x61, 'a', 0xbb, 0, 0, 0, 1, 0, 0, 0, 0, 0x00 };

		expect_parse_error (huge_array, sizeof (huge_array), "longer than the body");
		expect_parse_error (huge_map, sizeof (huge_map), "longer than the body");
	}
	/* {"a": [[[[[[[[[[ 0 ]]]]]]]]]]} */
	deep[n++] = 0xa1;
	deep[n++] = 0x61;
	deep[n++] = 'a';
	for (guint i = 0; i < 20; i++)
		deep[n++] = 0x81;
	deep[n++] = 0x00;
	expect_parse_error (deep, n, "nested deeper");

	/* bad UTF-8 in a value: refused by the parser or by the getter */
	{
		g_autoptr(GError) error = NULL;
		g_autoptr(BgsSmpMap) m = bgs_smp_map_parse (bad_utf8, sizeof (bad_utf8), &error);
		char *s = NULL;

		if (m != NULL)
			assert_false (bgs_smp_map_get_string (m, "d", &s, &error));
		assert_null (s);
		assert_true (g_error_matches (error, BGS_ERROR, BGS_ERROR_PROTOCOL));
	}
}

static void
test_cbor_wrong_types (void **state)
{
	/* {"off": "12", "data": 5, "match": 1} */
	const guint8 raw[] = {
		0xa3, 0x63, 'o', 'f', 'f', 0x62, '1', '2',
		0x64, 'd', 'a', 't', 'a', 0x05,
		0x65, 'm', 'a', 't', 'c', 'h', 0x01,
	};
	g_autoptr(GError) e1 = NULL;
	g_autoptr(GError) e2 = NULL;
	g_autoptr(GError) e3 = NULL;
	g_autoptr(GError) e4 = NULL;
	g_autoptr(BgsSmpMap) m = bgs_smp_map_parse (raw, sizeof (raw), &e1);
	guint64 u;
	gboolean b;
	GBytes *bytes;

	assert_non_null (m);
	assert_false (bgs_smp_map_get_uint (m, "off", &u, &e1));
	assert_non_null (strstr (e1->message, "\"off\" is not an unsigned integer"));
	bytes = bgs_smp_map_get_bytes (m, "data", &e2);
	assert_null (bytes);
	assert_non_null (strstr (e2->message, "\"data\" is not a byte string"));
	assert_false (bgs_smp_map_get_bool (m, "match", &b, &e3));
	assert_false (bgs_smp_map_get_uint (m, "missing", &u, &e4));
	assert_non_null (strstr (e4->message, "lacks \"missing\""));

	/* floats of every width where a boolean belongs: libcbor's
	 * cbor_is_bool() asserts on them (found by fuzz-smp-response) */
	{
		const guint8 f16[] = { 0xa1, 0x61, 'b', 0xf9, 0x3c, 0x00 };
		const guint8 f32[] = { 0xa1, 0x61, 'b', 0xfa, 0x69, 0x70, 0x65, 0x6c };
		const guint8 f64[] = { 0xa1, 0x61, 'b', 0xfb, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f };
		const guint8 yes[] = { 0xa1, 0x61, 'b', 0xf5 };
		const guint8 *cases[] = { f16, f32, f64 };
		const gsize lens[] = { sizeof f16, sizeof f32, sizeof f64 };

		for (gsize i = 0; i < G_N_ELEMENTS (cases); i++) {
			g_autoptr(GError) e = NULL;
			g_autoptr(BgsSmpMap) fm = bgs_smp_map_parse (cases[i], lens[i], NULL);

			assert_non_null (fm);
			assert_false (bgs_smp_map_get_bool (fm, "b", &b, &e));
			assert_non_null (strstr (e->message, "\"b\" is not a boolean"));
		}
		{
			g_autoptr(BgsSmpMap) ym = bgs_smp_map_parse (yes, sizeof yes, NULL);

			assert_true (bgs_smp_map_get_bool (ym, "b", &b, NULL));
			assert_true (b);
		}
	}
}

/* smp_protocol.rst "Minimal response", SMP version 1: {"rc": 10} */
static void
test_error_v1 (void **state)
{
	const guint8 raw[] = { 0xa1, 0x62, 'r', 'c', 0x0a };
	const guint8 ok[] = { 0xa1, 0x62, 'r', 'c', 0x00 };
	const guint8 empty[] = { 0xa0 };
	g_autoptr(GError) error = NULL;
	g_autoptr(BgsSmpMap) m = bgs_smp_map_parse (raw, sizeof (raw), &error);
	g_autoptr(BgsSmpMap) m_ok = bgs_smp_map_parse (ok, sizeof (ok), NULL);
	g_autoptr(BgsSmpMap) m_empty = bgs_smp_map_parse (empty, sizeof (empty), NULL);

	assert_false (bgs_smp_body_check (m, &error));
	assert_true (g_error_matches (error, BGS_ERROR, BGS_ERROR_BUSY));
	assert_string_equal (error->message, "device error MGMT_ERR_EBUSY (10): device is busy");
	assert_true (bgs_smp_body_check (m_ok, NULL));
	assert_true (bgs_smp_body_check (m_empty, NULL));

	assert_string_equal (bgs_smp_rc_name (5), "MGMT_ERR_ENOENT");
	assert_string_equal (bgs_smp_rc_name (7), "MGMT_ERR_EMSGSIZE");
	assert_string_equal (bgs_smp_rc_name (11), "MGMT_ERR_EACCESSDENIED");
	assert_string_equal (bgs_smp_rc_name (99), "MGMT_ERR_UNKNOWN_CODE");
}

/* smp_protocol.rst "Minimal response", SMP version 2:
 * {"err": {"group": 1, "rc": 9}}, a whole v2 frame (OP 3, group 1, id 1) */
static void
test_error_v2 (void **state)
{
	const guint8 raw[] = {
		0x0b, 0x00, 0x00, 0x11, 0x00, 0x01, 0x03, 0x01,
		0xa1, 0x63, 'e', 'r', 'r',
		0xa2, 0x65, 'g', 'r', 'o', 'u', 'p', 0x01, 0x62, 'r', 'c', 0x09,
	};
	/* fs group (8): FS_MGMT_ERR_FILE_NOT_FOUND (3) */
	const guint8 fs[] = {
		0xa1, 0x63, 'e', 'r', 'r',
		0xa2, 0x65, 'g', 'r', 'o', 'u', 'p', 0x08, 0x62, 'r', 'c', 0x03,
	};
	/* "err" of the wrong shape is a protocol error, not success */
	const guint8 bad[] = { 0xa1, 0x63, 'e', 'r', 'r', 0x01 };
	g_autoptr(GError) error = NULL;
	g_autoptr(GError) e_fs = NULL;
	g_autoptr(GError) e_bad = NULL;
	g_autoptr(BgsSmpResponse) resp = bgs_smp_response_parse (raw, sizeof (raw), &error);
	g_autoptr(BgsSmpMap) m_fs = bgs_smp_map_parse (fs, sizeof (fs), NULL);
	g_autoptr(BgsSmpMap) m_bad = bgs_smp_map_parse (bad, sizeof (bad), NULL);

	assert_non_null (resp);
	assert_int_equal (resp->hdr.version, BGS_SMP_V2);
	assert_false (bgs_smp_body_check (resp->body, &error));
	assert_true (g_error_matches (error, BGS_ERROR, BGS_ERROR_FAILED));
	assert_string_equal (error->message,
			     "device error IMG_MGMT_RET_RC_NO_FREE_SLOT (image group 1, rc 9): no free slot for the image");
	assert_false (bgs_smp_body_check (m_fs, &e_fs));
	assert_true (g_error_matches (e_fs, BGS_ERROR, BGS_ERROR_NOT_FOUND));
	assert_non_null (strstr (e_fs->message, "FS_MGMT_ERR_FILE_NOT_FOUND"));
	assert_false (bgs_smp_body_check (m_bad, &e_bad));
	assert_true (g_error_matches (e_bad, BGS_ERROR, BGS_ERROR_PROTOCOL));

	assert_string_equal (bgs_smp_group_rc_name (1, 27), "IMG_MGMT_RET_RC_CURRENT_VERSION_IS_NEWER");
	assert_string_equal (bgs_smp_group_rc_name (8, 13), "FS_MGMT_ERR_CHECKSUM_HASH_NOT_FOUND");
	assert_string_equal (bgs_smp_group_rc_name (1, 1000), "GROUP_ERR_UNKNOWN_CODE");
}

static void
test_response_length_mismatch (void **state)
{
	/* header says 9 body bytes, 8 follow */
	g_autoptr(GError) error = NULL;
	g_autoptr(BgsSmpResponse) resp = bgs_smp_response_parse (echo_req_v1, sizeof (echo_req_v1) - 1, &error);

	assert_null (resp);
	assert_true (g_error_matches (error, BGS_ERROR, BGS_ERROR_PROTOCOL));
}

static void
test_builder_nested (void **state)
{
	BgsSmpBuilder *b = bgs_smp_builder_new ();
	BgsSmpBuilder *err = bgs_smp_builder_new ();
	g_autoptr(GBytes) out = NULL;
	const guint8 want[] = {
		0xa2, 0x63, 'e', 'r', 'r',
		0xa2, 0x65, 'g', 'r', 'o', 'u', 'p', 0x01, 0x62, 'r', 'c', 0x09,
		0x62, 'r', 'c', 0x38, 0x63, /* -100 */
	};

	bgs_smp_builder_add_uint (err, "group", 1);
	bgs_smp_builder_add_uint (err, "rc", 9);
	bgs_smp_builder_add_map (b, "err", err);
	bgs_smp_builder_add_int (b, "rc", -100);
	out = bgs_smp_builder_end (b);
	assert_bytes (out, want, sizeof (want));
}

/* smp_group_0.rst "MCUmgr Parameters response": OP 1, group 0, id 6,
 * {"buf_size": 384, "buf_count": 4} (Zephyr's default netbufs) */
static void
test_os_params_decode (void **state)
{
	const guint8 raw[] = {
		0x01, 0x00, 0x00, 0x18, 0x00, 0x00, 0x05, 0x06,
		0xa2,
		0x68, 'b', 'u', 'f', '_', 's', 'i', 'z', 'e', 0x19, 0x01, 0x80,
		0x69, 'b', 'u', 'f', '_', 'c', 'o', 'u', 'n', 't', 0x04,
	};
	/* the same with a v2 header and the keys in the other order */
	const guint8 raw_v2[] = {
		0x09, 0x00, 0x00, 0x18, 0x00, 0x00, 0x06, 0x06,
		0xa2,
		0x69, 'b', 'u', 'f', '_', 'c', 'o', 'u', 'n', 't', 0x02,
		0x68, 'b', 'u', 'f', '_', 's', 'i', 'z', 'e', 0x19, 0x09, 0xab,
	};
	g_autoptr(GError) error = NULL;
	g_autoptr(BgsSmpResponse) resp = bgs_smp_response_parse (raw, sizeof (raw), &error);
	g_autoptr(BgsSmpResponse) resp2 = bgs_smp_response_parse (raw_v2, sizeof (raw_v2), &error);
	guint64 size = 0, count = 0;

	assert_non_null (resp);
	assert_int_equal (resp->hdr.op, BGS_SMP_OP_READ_RSP);
	assert_int_equal (resp->hdr.group, BGS_SMP_GROUP_OS);
	assert_int_equal (resp->hdr.id, BGS_SMP_OS_PARAMS);
	assert_true (bgs_smp_body_check (resp->body, &error));
	assert_true (bgs_smp_parse_os_params (resp->body, &size, &count, &error));
	assert_int_equal (size, 384);
	assert_int_equal (count, 4);
	assert_non_null (resp2);
	assert_true (bgs_smp_parse_os_params (resp2->body, &size, &count, &error));
	assert_int_equal (size, 2475);
	assert_int_equal (count, 2);
}

/* missing keys, wrong types and unusable numbers are protocol errors */
static void
test_os_params_reject (void **state)
{
	struct {
		const char *what;
		gint64 size; /* -1: absent, -2: a string */
		gint64 count;
	} cases[] = {
		{ "no buf_count", 384, -1 },
		{ "no buf_size", -1, 4 },
		{ "buf_size a string", -2, 4 },
		{ "buf_count 0", 384, 0 },
		{ "buf_size 8", 8, 4 },
	};

	for (guint i = 0; i < G_N_ELEMENTS (cases); i++) {
		BgsSmpBuilder *b = bgs_smp_builder_new ();
		g_autoptr(GBytes) body = NULL;
		g_autoptr(GBytes) frame = NULL;
		g_autoptr(BgsSmpResponse) resp = NULL;
		g_autoptr(GError) error = NULL;
		guint64 size = 77, count = 77;

		if (cases[i].size == -2)
			bgs_smp_builder_add_string (b, "buf_size", "big");
		else if (cases[i].size >= 0)
			bgs_smp_builder_add_uint (b, "buf_size", (guint64) cases[i].size);
		if (cases[i].count >= 0)
			bgs_smp_builder_add_uint (b, "buf_count", (guint64) cases[i].count);
		body = bgs_smp_builder_end (b);
		frame = bgs_smp_frame_build (BGS_SMP_OP_READ_RSP, BGS_SMP_V1, 0, 6, 0, body);
		resp = bgs_smp_response_parse (g_bytes_get_data (frame, NULL), g_bytes_get_size (frame), NULL);
		assert_non_null (resp);
		if (bgs_smp_parse_os_params (resp->body, &size, &count, &error)) {
			print_error ("accepted: %s\n", cases[i].what);
			fail ();
		}
		assert_true (g_error_matches (error, BGS_ERROR, BGS_ERROR_PROTOCOL));
		/* outputs untouched on failure */
		assert_int_equal (size, 77);
		assert_int_equal (count, 77);
	}
}

int
main (void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test (test_header_encode_echo),
		cmocka_unit_test (test_header_decode),
		cmocka_unit_test (test_header_reject),
		cmocka_unit_test (test_echo_response_decode),
		cmocka_unit_test (test_os_params_decode),
		cmocka_unit_test (test_os_params_reject),
		cmocka_unit_test (test_image_state_set_encode),
		cmocka_unit_test (test_image_upload_encode),
		cmocka_unit_test (test_fs_download_encode),
		cmocka_unit_test (test_fs_download_decode),
		cmocka_unit_test (test_image_state_decode),
		cmocka_unit_test (test_cbor_reject),
		cmocka_unit_test (test_cbor_wrong_types),
		cmocka_unit_test (test_error_v1),
		cmocka_unit_test (test_error_v2),
		cmocka_unit_test (test_response_length_mismatch),
		cmocka_unit_test (test_builder_nested),
	};

	return cmocka_run_group_tests (tests, NULL, NULL);
}
