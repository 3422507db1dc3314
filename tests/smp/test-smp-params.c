/* test-smp-params.c: the SMP profile's model parameters ([Profile smp] /
 * [Profile smp-firmware-update], doc/smp.md): defaults, every key, the
 * ranges' edges (Retries=0 allowed), and one clear warning per bad value or
 * unknown key naming the model file, group, key and range, the default kept */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>

#include "bgs-profile-smp.h"
#include "bgs-smp-client.h"

#define ORIGIN "/etc/bgsync/devices/watch.conf: [Profile smp]"

static GHashTable *
params_new (const char *first_key, ...)
{
	GHashTable *h = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
	va_list ap;

	va_start (ap, first_key);
	for (const char *k = first_key; k != NULL; k = va_arg (ap, const char *))
		g_hash_table_insert (h, g_strdup (k), g_strdup (va_arg (ap, const char *)));
	va_end (ap);
	return h;
}

static void
assert_defaults (const BgsSmpParams *p)
{
	assert_int_equal (p->version, 1);
	assert_int_equal (p->request_timeout_usec, 5 * G_USEC_PER_SEC);
	assert_int_equal (p->retries, BGS_SMP_DEFAULT_RETRIES);
	assert_int_equal (p->window, BGS_SMP_DEFAULT_WINDOW_CAP);
	assert_true (p->os_params);
	assert_null (p->files);
	assert_true (p->throughput == 0);
	assert_int_equal (p->reboot_seconds, 30);
}

static void
test_defaults (void **state)
{
	BgsSmpParams p;
	g_autoptr(GPtrArray) w = g_ptr_array_new_with_free_func (g_free);
	g_autoptr(GHashTable) empty = params_new (NULL);

	bgs_smp_params_parse (NULL, ORIGIN, &p, w);
	assert_defaults (&p);
	bgs_smp_params_parse (empty, ORIGIN, &p, w);
	assert_defaults (&p);
	assert_int_equal (w->len, 0);
	bgs_smp_params_clear (&p);
}

static void
test_all_keys (void **state)
{
	BgsSmpParams p;
	g_autoptr(GPtrArray) w = g_ptr_array_new_with_free_func (g_free);
	g_autoptr(GHashTable) h = params_new ("Version", "2", "RequestTimeout", "0.3", "Retries", "0",
					      "Window", "1", "OsParams", "false",
					      "Files", "/log/a.txt; /b;", "Throughput", "1500.5",
					      "RebootSeconds", "0", NULL);

	bgs_smp_params_parse (h, ORIGIN, &p, w);
	assert_int_equal (w->len, 0);
	assert_int_equal (p.version, 2);
	assert_int_equal (p.request_timeout_usec, 300000);
	/* 0: one attempt, no retry (was silently ignored before) */
	assert_int_equal (p.retries, 0);
	assert_int_equal (p.window, 1);
	assert_false (p.os_params);
	assert_non_null (p.files);
	assert_int_equal (g_strv_length (p.files), 2);
	assert_string_equal (p.files[0], "/log/a.txt");
	assert_string_equal (p.files[1], "/b");
	assert_true (p.throughput == 1500.5);
	assert_int_equal (p.reboot_seconds, 0);
	bgs_smp_params_clear (&p);
	assert_null (p.files);

	/* the other ends of the ranges */
	g_hash_table_unref (h);
	h = params_new ("Version", "1", "RequestTimeout", "600", "Retries", "10", "Window", "16",
			"OsParams", "true", "RebootSeconds", "3600", NULL);
	bgs_smp_params_parse (h, ORIGIN, &p, w);
	assert_int_equal (w->len, 0);
	assert_int_equal (p.request_timeout_usec, 600 * G_USEC_PER_SEC);
	assert_int_equal (p.retries, 10);
	assert_int_equal (p.window, 16);
	assert_int_equal (p.reboot_seconds, 3600);
	bgs_smp_params_clear (&p);
}

static void
assert_warned (GPtrArray *w, guint i, const char *key, const char *range)
{
	const char *msg = g_ptr_array_index (w, i);

	assert_non_null (strstr (msg, ORIGIN));
	assert_non_null (strstr (msg, key));
	assert_non_null (strstr (msg, range));
}

static gint
cmp_str (gconstpointer a, gconstpointer b)
{
	return strcmp (*(const char *const *) a, *(const char *const *) b);
}

static void
test_bad_values (void **state)
{
	BgsSmpParams p;
	g_autoptr(GPtrArray) w = g_ptr_array_new_with_free_func (g_free);
	g_autoptr(GHashTable) h = params_new ("Version", "3", "RequestTimeout", "0.01", "Retries", "-1",
					      "Window", "17", "OsParams", "maybe",
					      "Files", "relative/path", "Throughput", "nan",
					      "RebootSeconds", "1e3", NULL);

	bgs_smp_params_parse (h, ORIGIN, &p, w);
	/* every value ignored, every default kept */
	assert_defaults (&p);
	assert_int_equal (w->len, 8);
	g_ptr_array_sort (w, cmp_str);
	/* sorted by "<origin> <key>=" */
	assert_warned (w, 0, "Files=relative/path", "device paths");
	assert_warned (w, 1, "OsParams=maybe", "true or false");
	assert_warned (w, 2, "RebootSeconds=1e3", "0..3600");
	assert_warned (w, 3, "RequestTimeout=0.01", "0.1..600");
	assert_warned (w, 4, "Retries=-1", "0..10");
	assert_warned (w, 5, "Throughput=nan", "1..1e9");
	assert_warned (w, 6, "Version=3", "1..2");
	assert_warned (w, 7, "Window=17", "1..16");
	bgs_smp_params_clear (&p);

	/* trailing junk, empty, huge */
	g_ptr_array_set_size (w, 0);
	g_hash_table_unref (h);
	h = params_new ("RequestTimeout", "5s", "Retries", "", "Window", "99999999999999999999",
			"Files", ";", NULL);
	bgs_smp_params_parse (h, ORIGIN, &p, w);
	assert_defaults (&p);
	assert_int_equal (w->len, 4);
	bgs_smp_params_clear (&p);
}

/* the keys the shipped model used to carry, and the old lower-case names */
static void
test_unknown_keys (void **state)
{
	BgsSmpParams p;
	g_autoptr(GPtrArray) w = g_ptr_array_new_with_free_func (g_free);
	g_autoptr(GHashTable) h = params_new ("MTU", "252", "timeout-ms", "300", "Retries", "1", NULL);

	bgs_smp_params_parse (h, ORIGIN, &p, w);
	assert_int_equal (p.retries, 1);
	assert_int_equal (p.request_timeout_usec, 5 * G_USEC_PER_SEC);
	assert_int_equal (w->len, 2);
	g_ptr_array_sort (w, cmp_str);
	assert_warned (w, 0, "unknown key MTU", "RequestTimeout");
	assert_warned (w, 1, "unknown key timeout-ms", "RequestTimeout");
	bgs_smp_params_clear (&p);

	/* no warnings wanted (the estimate): no crash, same values */
	bgs_smp_params_parse (h, NULL, &p, NULL);
	assert_int_equal (p.retries, 1);
	bgs_smp_params_clear (&p);
}

int
main (void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test (test_defaults),
		cmocka_unit_test (test_all_keys),
		cmocka_unit_test (test_bad_values),
		cmocka_unit_test (test_unknown_keys),
	};

	return cmocka_run_group_tests (tests, NULL, NULL);
}
