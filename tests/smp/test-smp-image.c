/* test-smp-image.c: MCUboot image validation with good and broken images
 *
 * Images are built here to the layout of mcu-tools/mcuboot docs/design.md
 * "Image Format" and boot/bootutil/include/bootutil/image.h (see
 * smp-test-image.h). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "bgs-error.h"
#include "bgs-smp-image.h"
#include "smp-test-image.h"

static void
expect_corrupt (const guint8 *data, gsize len, const char *fragment)
{
	BgsSmpImageInfo info;
	g_autoptr(GError) error = NULL;

	assert_false (bgs_smp_image_check (data, len, &info, &error));
	assert_true (g_error_matches (error, BGS_ERROR, BGS_ERROR_CORRUPT));
	if (strstr (error->message, fragment) == NULL) {
		print_error ("error \"%s\" lacks \"%s\"\n", error->message, fragment);
		fail ();
	}
}

static void
test_good (void **state)
{
	guint8 hash[32];
	g_autoptr(GByteArray) a = smp_test_image_new (1, 2, 3, 4, 1000, 1, FALSE, hash);
	BgsSmpImageInfo info;
	g_autoptr(GError) error = NULL;
	g_autofree char *ver = NULL;

	assert_true (bgs_smp_image_check (a->data, a->len, &info, &error));
	assert_int_equal (info.major, 1);
	assert_int_equal (info.minor, 2);
	assert_int_equal (info.revision, 3);
	assert_int_equal (info.build, 4);
	assert_int_equal (info.hdr_size, 32);
	assert_int_equal (info.img_size, 1000);
	assert_int_equal (info.image_end, a->len);
	assert_memory_equal (info.hash, hash, 32);
	ver = bgs_smp_image_version_string (&info);
	assert_string_equal (ver, "1.2.3.4");
}

static void
test_good_protected (void **state)
{
	guint8 hash[32];
	g_autoptr(GByteArray) a = smp_test_image_new (2, 0, 0, 0, 777, 9, TRUE, hash);
	BgsSmpImageInfo info;
	g_autoptr(GError) error = NULL;
	g_autofree char *ver = NULL;

	assert_true (bgs_smp_image_check (a->data, a->len, &info, &error));
	assert_int_equal (info.protect_tlv_size, 12);
	assert_memory_equal (info.hash, hash, 32);
	ver = bgs_smp_image_version_string (&info);
	assert_string_equal (ver, "2.0.0");

	/* the protected area is hashed: flipping its value breaks the image */
	a->data[32 + 777 + 8] ^= 1;
	expect_corrupt (a->data, a->len, "SHA-256");
}

static void
test_good_fd (void **state)
{
	guint8 hash[32];
	g_autoptr(GByteArray) a = smp_test_image_new (1, 0, 0, 0, 200000, 3, FALSE, hash);
	g_autofree char *path = NULL;
	int fd = g_file_open_tmp ("smp-image-XXXXXX", &path, NULL);
	BgsSmpImageInfo info;
	g_autoptr(GError) error = NULL;

	assert_true (fd >= 0);
	assert_int_equal (write (fd, a->data, a->len), a->len);
	assert_true (bgs_smp_image_check_fd (fd, &info, &error));
	assert_memory_equal (info.hash, hash, 32);
	assert_int_equal (info.file_size, a->len);

	/* truncated file */
	assert_int_equal (ftruncate (fd, a->len - 10), 0);
	assert_false (bgs_smp_image_check_fd (fd, &info, &error));
	assert_true (g_error_matches (error, BGS_ERROR, BGS_ERROR_CORRUPT));
	close (fd);
	unlink (path);
}

static void
test_bad_magic (void **state)
{
	g_autoptr(GByteArray) a = smp_test_image_new (1, 0, 0, 0, 100, 1, FALSE, NULL);

	a->data[0] = 0x3c; /* 0x96f3b83c: the old v1 magic */
	expect_corrupt (a->data, a->len, "header magic");
}

static void
test_bad_hash (void **state)
{
	g_autoptr(GByteArray) a = smp_test_image_new (1, 0, 0, 0, 100, 1, FALSE, NULL);

	a->data[40] ^= 0xff; /* one body byte */
	expect_corrupt (a->data, a->len, "does not match");
}

static void
test_truncated (void **state)
{
	g_autoptr(GByteArray) a = smp_test_image_new (1, 0, 0, 0, 100, 1, FALSE, NULL);

	expect_corrupt (a->data, 10, "less than an MCUboot header");
	expect_corrupt (a->data, 80, "truncated");
	expect_corrupt (a->data, a->len - 1, "truncated");
}

static void
test_bad_tlv (void **state)
{
	g_autoptr(GByteArray) a = smp_test_image_new (1, 0, 0, 0, 100, 1, FALSE, NULL);
	g_autoptr(GByteArray) b = smp_test_image_new (1, 0, 0, 0, 100, 1, FALSE, NULL);
	g_autoptr(GByteArray) c = smp_test_image_new (1, 0, 0, 0, 100, 1, FALSE, NULL);
	g_autoptr(GByteArray) d = smp_test_image_new (1, 0, 0, 0, 100, 1, FALSE, NULL);
	gsize tlv = 32 + 100;

	a->data[tlv] = 0x08; /* TLV magic 0x6908 where 0x6907 belongs */
	expect_corrupt (a->data, a->len, "TLV area magic");

	b->data[tlv + 4] = 0x11; /* the only TLV is no longer SHA-256 */
	expect_corrupt (b->data, b->len, "no SHA-256 TLV");

	c->data[tlv + 6] = 0xff; /* TLV length overruns the area */
	expect_corrupt (c->data, c->len, "overruns");

	d->data[tlv + 6] = 16; /* SHA-256 TLV of the wrong length */
	expect_corrupt (d->data, d->len, "TLV has length 16");
}

static void
test_bad_sizes (void **state)
{
	g_autoptr(GByteArray) a = smp_test_image_new (1, 0, 0, 0, 100, 1, FALSE, NULL);
	g_autoptr(GByteArray) b = smp_test_image_new (1, 0, 0, 0, 100, 1, FALSE, NULL);
	g_autoptr(GByteArray) c = smp_test_image_new (1, 0, 0, 0, 100, 1, FALSE, NULL);

	a->data[8] = 16; /* hdr_size below 32 */
	expect_corrupt (a->data, a->len, "smaller than the header");

	b->data[15] = 0x7f; /* img_size far beyond the file */
	expect_corrupt (b->data, b->len, "truncated");

	c->data[10] = 4; /* protected TLV size with no protected area */
	expect_corrupt (c->data, c->len, "protected TLV magic");
}

static void
test_version_compare (void **state)
{
	BgsSmpImageInfo a = { .major = 1, .minor = 2, .revision = 3, .build = 0 };
	BgsSmpImageInfo b = { .major = 1, .minor = 10, .revision = 0, .build = 0 };

	assert_int_equal (bgs_smp_image_version_compare (&a, &b), -1);
	assert_int_equal (bgs_smp_image_version_compare (&b, &a), 1);
	assert_int_equal (bgs_smp_image_version_compare (&a, &a), 0);
}

int
main (void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test (test_good),
		cmocka_unit_test (test_good_protected),
		cmocka_unit_test (test_good_fd),
		cmocka_unit_test (test_bad_magic),
		cmocka_unit_test (test_bad_hash),
		cmocka_unit_test (test_truncated),
		cmocka_unit_test (test_bad_tlv),
		cmocka_unit_test (test_bad_sizes),
		cmocka_unit_test (test_version_compare),
	};

	return cmocka_run_group_tests (tests, NULL, NULL);
}
