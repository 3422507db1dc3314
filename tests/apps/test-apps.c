/* test-apps.c: app manifests, device models, caller identity */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>
#include <unistd.h>
#include <glib/gstdio.h>

#include "bgs-app-manifest.h"
#include "bgs-device-model.h"
#include "bgs-error.h"
#include "bgs-identity.h"

/* fixtures */

static GString *warnings;

static void
log_capture (const char *domain, GLogLevelFlags level, const char *message, gpointer data)
{
	if (level & (G_LOG_LEVEL_WARNING | G_LOG_LEVEL_CRITICAL))
		g_string_append_printf (warnings, "%s\n", message);
	if (level & G_LOG_LEVEL_CRITICAL)
		fprintf (stderr, "critical: %s\n", message);
}

static gboolean
warned (const char *needle)
{
	return strstr (warnings->str, needle) != NULL;
}

static void
rm_rf (const char *path)
{
	g_autoptr(GDir) dir = g_dir_open (path, 0, NULL);
	const char *name;

	if (dir != NULL) {
		while ((name = g_dir_read_name (dir)) != NULL) {
			g_autofree char *child = g_build_filename (path, name, NULL);
			if (g_file_test (child, G_FILE_TEST_IS_SYMLINK))
				g_unlink (child);
			else
				rm_rf (child);
		}
		g_rmdir (path);
	} else {
		g_unlink (path);
	}
}

typedef struct {
	char *tmp;
	char *dir1;
	char *dir2;
} Fixture;

static int
setup (void **state)
{
	Fixture *f = g_new0 (Fixture, 1);

	f->tmp = g_dir_make_tmp ("bgs-apps-XXXXXX", NULL);
	assert_non_null (f->tmp);
	f->dir1 = g_build_filename (f->tmp, "usr", NULL);
	f->dir2 = g_build_filename (f->tmp, "etc", NULL);
	g_mkdir (f->dir1, 0700);
	g_mkdir (f->dir2, 0700);
	g_string_truncate (warnings, 0);
	*state = f;
	return 0;
}

static int
teardown (void **state)
{
	Fixture *f = *state;

	rm_rf (f->tmp);
	g_free (f->tmp);
	g_free (f->dir1);
	g_free (f->dir2);
	g_free (f);
	return 0;
}

static char *
write_file (const char *dir, const char *name, const char *contents)
{
	char *path = g_build_filename (dir, name, NULL);

	assert_true (g_file_set_contents (path, contents, -1, NULL));
	return path;
}

static const char *const *
dirs_of (Fixture *f)
{
	static const char *dirs[3];

	dirs[0] = f->dir1;
	dirs[1] = f->dir2;
	dirs[2] = NULL;
	return dirs;
}

/* waits for "changed" with a bounded main loop, no sleeps */
static gboolean
timeout_cb (gpointer data)
{
	*(gboolean *) data = TRUE;
	return G_SOURCE_REMOVE;
}

static void
changed_cb (GObject *obj, gpointer data)
{
	(*(guint *) data)++;
}

static gboolean
wait_changed (guint *counter, guint target)
{
	gboolean timed_out = FALSE;
	guint id = g_timeout_add_seconds (10, timeout_cb, &timed_out);

	while (*counter < target && !timed_out)
		g_main_context_iteration (NULL, TRUE);
	if (!timed_out)
		g_source_remove (id);
	return *counter >= target;
}

/* manifests */

#define VALID_MANIFEST \
	"[App]\n" \
	"Id=org.example.Sync\n" \
	"Name=Example Sync\n" \
	"Name[de]=Beispiel\n" \
	"FlatpakId=org.example.Sync\n" \
	"SnapName=example-sync\n" \
	"Executable=/usr/bin/example-sync;/usr/libexec/example-sync-helper;\n" \
	"DeviceUseEntryPoints=smp-file-sync;\n" \
	"DeviceServicingEntryPoints=smp-firmware-update;\n" \
	"CustomEntryPoints=test;nightly-backup\n" \
	"Privileges=manage-consents;\n"

static void
test_manifest_valid (void **state)
{
	g_autoptr(GError) error = NULL;
	g_autoptr(BgsAppManifest) m = bgs_app_manifest_parse (VALID_MANIFEST, strlen (VALID_MANIFEST),
							      "/x/a.conf", &error);

	assert_non_null (m);
	assert_null (error);
	assert_string_equal (m->id, "org.example.Sync");
	assert_string_equal (m->name, "Example Sync");
	assert_string_equal (m->flatpak_id, "org.example.Sync");
	assert_string_equal (m->snap_name, "example-sync");
	assert_int_equal (g_strv_length (m->executables), 2);
	assert_string_equal (m->executables[1], "/usr/libexec/example-sync-helper");
	assert_int_equal (g_strv_length (m->entry_points[BGS_TRIGGER_CUSTOM]), 2);
	assert_true (m->manage_consents);
	assert_string_equal (m->path, "/x/a.conf");
	/* localized names are not unknown keys */
	assert_false (warned ("Name[de]"));
}

static void
test_manifest_minimal (void **state)
{
	const char *data = "[App]\nId=org.example.Min\nExecutable=/usr/bin/min\n";
	g_autoptr(BgsAppManifest) m = bgs_app_manifest_parse (data, strlen (data), "min", NULL);

	assert_non_null (m);
	assert_string_equal (m->name, "org.example.Min");
	assert_null (m->flatpak_id);
	assert_null (m->snap_name);
	assert_false (m->manage_consents);
	for (guint t = 0; t < BGS_TRIGGER_LAST; t++) {
		assert_non_null (m->entry_points[t]);
		assert_null (m->entry_points[t][0]);
	}
}

static const struct {
	const char *data;
	const char *needle; /* the key (or reason) the message must name */
} malformed[] = {
	{ "[App]\nId=bgsync\nExecutable=/usr/bin/a\n", "Id" },
	{ "[App]\nId=1org.example\nExecutable=/usr/bin/a\n", "Id" },
	{ "[App]\nId=org..example\nExecutable=/usr/bin/a\n", "Id" },
	{ "[App]\nId=org.example.\nExecutable=/usr/bin/a\n", "Id" },
	{ "[App]\nId=org.exa mple\nExecutable=/usr/bin/a\n", "Id" },
	{ "[App]\nExecutable=/usr/bin/a\n", "Id" },
	{ "[App]\nId=org.example.A\nName=A\n", "FlatpakId, SnapName, Executable" },
	{ "[App]\nId=org.example.A\nExecutable=\n", "FlatpakId, SnapName, Executable" },
	{ "[App]\nId=org.example.A\nExecutable=bin/a\n", "Executable" },
	{ "[App]\nId=org.example.A\nExecutable=/usr/bin/../bin/a\n", "Executable" },
	{ "[App]\nId=org.example.A\nExecutable=/usr/bin/a;relative\n", "Executable" },
	{ "[App]\nId=org.example.A\nFlatpakId=nodots\n", "FlatpakId" },
	{ "[App]\nId=org.example.A\nSnapName=Upper\n", "SnapName" },
	{ "[App]\nId=org.example.A\nSnapName=-dash\n", "SnapName" },
	{ "[App]\nId=org.example.A\nExecutable=/a\nCustomEntryPoints=Bad Name\n",
	  "CustomEntryPoints" },
	{ "[App]\nId=org.example.A\nExecutable=/a\nDeviceUseEntryPoints=../x\n",
	  "DeviceUseEntryPoints" },
	{ "[App]\nId=org.example.A\nExecutable=/a\nDisabled=maybe\n", "Disabled" },
	{ "[Application]\nId=org.example.A\nExecutable=/a\n", "[App]" },
	{ "Id=org.example.A\n", "m.conf" },
	{ "[App]\nId=org.example.\xff\nExecutable=/a\n", "UTF-8" },
	{ "", "[App]" },
};

static void
test_manifest_malformed (void **state)
{
	for (gsize i = 0; i < G_N_ELEMENTS (malformed); i++) {
		g_autoptr(GError) error = NULL;
		g_autoptr(BgsAppManifest) m = bgs_app_manifest_parse (malformed[i].data,
								      strlen (malformed[i].data),
								      "/etc/m.conf", &error);
		if (m != NULL)
			fail_msg ("case %zu parsed: %s", i, malformed[i].data);
		assert_true (g_error_matches (error, BGS_ERROR, BGS_ERROR_INVALID_ARGS));
		if (strstr (error->message, "/etc/m.conf") == NULL ||
		    strstr (error->message, malformed[i].needle) == NULL)
			fail_msg ("case %zu: message '%s' lacks '%s'", i, error->message,
				  malformed[i].needle);
	}
}

static void
test_manifest_binary_and_oversize (void **state)
{
	static const char nul[] = "[App]\nId=org.example.A\0\nExecutable=/a\n";
	g_autoptr(GError) error = NULL;
	g_autoptr(GString) big = g_string_new ("[App]\nId=org.example.A\nExecutable=/a\n");
	BgsAppManifest *m;

	m = bgs_app_manifest_parse (nul, sizeof nul - 1, "nul", &error);
	assert_null (m);
	assert_true (g_error_matches (error, BGS_ERROR, BGS_ERROR_INVALID_ARGS));
	g_clear_error (&error);

	while (big->len <= 64 * 1024)
		g_string_append (big, "# padding padding padding padding padding\n");
	m = bgs_app_manifest_parse (big->str, big->len, "big", &error);
	assert_null (m);
	assert_true (g_error_matches (error, BGS_ERROR, BGS_ERROR_INVALID_ARGS));
	g_clear_error (&error);

	/* NULL data with a length must not be read */
	m = bgs_app_manifest_parse (NULL, 10, "null", &error);
	assert_null (m);
}

static void
test_manifest_unknown_key_warns (void **state)
{
	const char *data = "[App]\nId=org.example.A\nExecutable=/a\nFrobnicate=yes\n"
			   "Privileges=manage-consents;root\n[Extra]\nX=1\n";
	g_autoptr(BgsAppManifest) m = NULL;

	g_string_truncate (warnings, 0);
	m = bgs_app_manifest_parse (data, strlen (data), "/etc/u.conf", NULL);
	assert_non_null (m);
	assert_true (warned ("/etc/u.conf: [App] unknown key Frobnicate"));
	assert_true (warned ("unknown privilege 'root'"));
	assert_true (warned ("unknown group [Extra]"));
	assert_true (m->manage_consents);
}

static void
test_manifest_disabled (void **state)
{
	const char *data = "[App]\nDisabled=true\n";
	g_autoptr(GError) error = NULL;
	BgsAppManifest *m = bgs_app_manifest_parse (data, strlen (data), "d", &error);

	assert_null (m);
	assert_true (g_error_matches (error, BGS_ERROR, BGS_ERROR_NOT_FOUND));
}

static void
test_manifest_allows (void **state)
{
	g_autoptr(BgsAppManifest) m = bgs_app_manifest_parse (VALID_MANIFEST, strlen (VALID_MANIFEST),
							      "a", NULL);

	assert_true (bgs_app_manifest_allows (m, BGS_TRIGGER_DEVICE_USE, "smp-file-sync"));
	assert_true (bgs_app_manifest_allows (m, BGS_TRIGGER_DEVICE_SERVICING,
					      "smp-firmware-update"));
	assert_true (bgs_app_manifest_allows (m, BGS_TRIGGER_CUSTOM, "nightly-backup"));
	/* listed, but for another trigger kind */
	assert_false (bgs_app_manifest_allows (m, BGS_TRIGGER_DEVICE_USE, "smp-firmware-update"));
	assert_false (bgs_app_manifest_allows (m, BGS_TRIGGER_DEVICE_SERVICING, "smp-file-sync"));
	assert_false (bgs_app_manifest_allows (m, BGS_TRIGGER_CUSTOM, "other"));
	assert_false (bgs_app_manifest_allows (m, BGS_TRIGGER_LAST, "test"));
	assert_false (bgs_app_manifest_allows (m, (BgsTriggerKind) 99, "test"));
	assert_false (bgs_app_manifest_allows (m, BGS_TRIGGER_CUSTOM, NULL));
	assert_false (bgs_app_manifest_allows (NULL, BGS_TRIGGER_CUSTOM, "test"));
}

static void
test_registry_layers (void **state)
{
	Fixture *f = *state;
	g_autoptr(BgsAppRegistry) reg = NULL;
	g_autoptr(GPtrArray) list = NULL;
	g_autofree char *p = NULL;
	g_autofree char *masked = g_build_filename (f->dir2, "e-masked.conf", NULL);
	const BgsAppManifest *m;

	g_free (write_file (f->dir1, "a-over.conf",
			    "[App]\nId=org.example.Over\nExecutable=/usr/bin/old\n"));
	g_free (write_file (f->dir2, "a-over.conf",
			    "[App]\nId=org.example.Over\nExecutable=/usr/bin/new\n"));
	g_free (write_file (f->dir1, "b-off.conf", "[App]\nId=org.example.Off\nExecutable=/b\n"));
	g_free (write_file (f->dir2, "b-off.conf", "[App]\nDisabled=true\n"));
	g_free (write_file (f->dir1, "c-dup.conf",
			    "[App]\nId=org.example.Dup\nExecutable=/c\nName=first\n"));
	g_free (write_file (f->dir2, "d-dup.conf",
			    "[App]\nId=org.example.Dup\nExecutable=/d\nName=second\n"));
	g_free (write_file (f->dir1, "e-masked.conf", "[App]\nId=org.example.Masked\nFlatpakId=org.example.Masked\n"));
	assert_int_equal (symlink ("/dev/null", masked), 0);
	g_free (write_file (f->dir1, "f-empty.conf", "[App]\nId=org.example.Empty\nExecutable=/f\n"));
	g_free (write_file (f->dir2, "f-empty.conf", ""));
	g_free (write_file (f->dir1, "g-bad.conf", "[App]\nId=bad\nExecutable=/g\n"));
	g_free (write_file (f->dir1, "h-snap.conf",
			    "[App]\nId=org.example.Snap\nSnapName=snappy\n"));
	g_free (write_file (f->dir1, "i-sameexe.conf",
			    "[App]\nId=org.example.Thief\nExecutable=/usr/bin/new\n"));
	g_free (write_file (f->dir1, "not-a-manifest.txt", "garbage"));
	p = write_file (f->dir2, "j-fifo.conf", "");
	g_unlink (p);
	assert_int_equal (mkfifo (p, 0600), 0);

	{
		g_autoptr(GString) big = g_string_new ("[App]\nId=org.example.Big\nExecutable=/k\n");
		while (big->len <= 64 * 1024)
			g_string_append (big, "# padding padding padding padding padding\n");
		g_free (write_file (f->dir1, "k-big.conf", big->str));
	}
	g_free (write_file (f->dir1, "l-latin1.conf", "[App]\nId=org.example.L\nName=M\xfcller\nExecutable=/l\n"));

	g_string_truncate (warnings, 0);
	reg = bgs_app_registry_new (dirs_of (f), FALSE);

	/* oversize and non-UTF-8 files are skipped, named in the warning */
	assert_null (bgs_app_registry_lookup (reg, "org.example.Big"));
	assert_true (warned ("k-big.conf: skipped:"));
	assert_null (bgs_app_registry_lookup (reg, "org.example.L"));
	assert_true (warned ("l-latin1.conf: not valid UTF-8"));

	/* the later directory's file of the same name wins */
	m = bgs_app_registry_lookup (reg, "org.example.Over");
	assert_non_null (m);
	assert_string_equal (m->executables[0], "/usr/bin/new");
	assert_ptr_equal (bgs_app_registry_lookup_executable (reg, "/usr/bin/new"), m);
	assert_null (bgs_app_registry_lookup_executable (reg, "/usr/bin/old"));
	/* Disabled=true, /dev/null and empty files remove */
	assert_null (bgs_app_registry_lookup (reg, "org.example.Off"));
	assert_null (bgs_app_registry_lookup (reg, "org.example.Masked"));
	assert_null (bgs_app_registry_lookup_flatpak (reg, "org.example.Masked"));
	assert_null (bgs_app_registry_lookup (reg, "org.example.Empty"));
	/* duplicate id: the first file name keeps it */
	m = bgs_app_registry_lookup (reg, "org.example.Dup");
	assert_non_null (m);
	assert_string_equal (m->name, "first");
	assert_true (warned ("d-dup.conf: skipped: [App] Id is already claimed by"));
	/* an executable claimed twice is refused for the later file */
	assert_null (bgs_app_registry_lookup (reg, "org.example.Thief"));
	assert_true (warned ("i-sameexe.conf: skipped: [App] Executable is already claimed"));
	/* malformed files are skipped with the file and key named */
	assert_true (warned ("g-bad.conf: [App] Id 'bad'"));
	assert_true (warned ("j-fifo.conf"));
	assert_ptr_equal (bgs_app_registry_lookup_snap (reg, "snappy"),
			  bgs_app_registry_lookup (reg, "org.example.Snap"));
	assert_null (bgs_app_registry_lookup_snap (reg, "other"));
	assert_null (bgs_app_registry_lookup (reg, NULL));

	list = bgs_app_registry_list (reg);
	assert_int_equal (list->len, 3);
	assert_string_equal (((BgsAppManifest *) list->pdata[0])->id, "org.example.Dup");
	assert_string_equal (((BgsAppManifest *) list->pdata[1])->id, "org.example.Over");
	assert_string_equal (((BgsAppManifest *) list->pdata[2])->id, "org.example.Snap");
}

static void
test_registry_ref_survives_reload (void **state)
{
	Fixture *f = *state;
	g_autoptr(BgsAppRegistry) reg = NULL;
	g_autoptr(BgsAppManifest) kept = NULL;
	g_autofree char *path = write_file (f->dir1, "a.conf",
					     "[App]\nId=org.example.A\nExecutable=/a\n");

	reg = bgs_app_registry_new (dirs_of (f), FALSE);
	kept = bgs_app_manifest_ref (bgs_app_registry_lookup (reg, "org.example.A"));
	g_unlink (path);
	bgs_app_registry_reload (reg);
	assert_null (bgs_app_registry_lookup (reg, "org.example.A"));
	assert_string_equal (kept->id, "org.example.A");
}

static void
test_registry_watch_remove (void **state)
{
	Fixture *f = *state;
	g_autoptr(BgsAppRegistry) reg = NULL;
	g_autofree char *path = write_file (f->dir2, "a.conf",
					     "[App]\nId=org.example.A\nExecutable=/a\n");
	guint changed = 0;

	reg = bgs_app_registry_new (dirs_of (f), TRUE);
	g_signal_connect (reg, "changed", G_CALLBACK (changed_cb), &changed);
	assert_non_null (bgs_app_registry_lookup (reg, "org.example.A"));

	assert_int_equal (g_unlink (path), 0);
	assert_true (wait_changed (&changed, 1));
	assert_null (bgs_app_registry_lookup (reg, "org.example.A"));

	/* a burst of writes is one reload */
	for (int i = 0; i < 5; i++) {
		g_autofree char *name = g_strdup_printf ("b%d.conf", i);
		g_autofree char *text = g_strdup_printf ("[App]\nId=org.example.B%d\nExecutable=/b%d\n",
							 i, i);
		g_free (write_file (f->dir1, name, text));
	}
	assert_true (wait_changed (&changed, 2));
	assert_non_null (bgs_app_registry_lookup (reg, "org.example.B4"));
}

static void
test_registry_watch_missing_dir (void **state)
{
	Fixture *f = *state;
	g_autofree char *later = g_build_filename (f->tmp, "later", "apps", NULL);
	const char *dirs[] = { f->dir1, later, NULL };
	g_autoptr(BgsAppRegistry) reg = bgs_app_registry_new (dirs, TRUE);
	guint changed = 0;

	g_signal_connect (reg, "changed", G_CALLBACK (changed_cb), &changed);
	assert_null (bgs_app_registry_lookup (reg, "org.example.Late"));
	/* the directory appears in two steps; the watch follows it down */
	assert_int_equal (g_mkdir_with_parents (later, 0700), 0);
	assert_true (wait_changed (&changed, 1));
	g_free (write_file (later, "late.conf", "[App]\nId=org.example.Late\nExecutable=/l\n"));
	while (bgs_app_registry_lookup (reg, "org.example.Late") == NULL) {
		guint before = changed;
		assert_true (wait_changed (&changed, before + 1));
	}
	assert_non_null (bgs_app_registry_lookup (reg, "org.example.Late"));
}

static void
test_shipped_manifest (void **state)
{
	const char *dirs[] = { APPS_BUILDDIR, NULL };
	g_autoptr(BgsAppRegistry) reg = bgs_app_registry_new (dirs, FALSE);
	const BgsAppManifest *m = bgs_app_registry_lookup (reg, "org.bgsync.ctl");
	g_autofree char *exe = g_build_filename (BINDIR, "bgsyncctl", NULL);

	assert_non_null (m);
	assert_string_equal (m->executables[0], exe);
	assert_true (m->manage_consents);
	assert_true (bgs_app_manifest_allows (m, BGS_TRIGGER_DEVICE_SERVICING, "smp-firmware-update"));
	assert_true (bgs_app_manifest_allows (m, BGS_TRIGGER_DEVICE_USE, "smp-file-sync"));
	assert_true (bgs_app_manifest_allows (m, BGS_TRIGGER_CUSTOM, "test"));
	assert_false (warned ("org.bgsync.ctl.conf"));
}

/* device models */

static BgsDeviceModel *
parse_model (const char *text)
{
	g_autoptr(GError) error = NULL;
	BgsDeviceModel *m = bgs_device_model_parse (text, strlen (text), "/d/m.conf", &error);

	if (m == NULL)
		fail_msg ("%s", error->message);
	return m;
}

static void
test_model_shipped (void **state)
{
	g_autofree char *path = g_build_filename (SRCDIR, "data", "devices",
						  "bgsync-wearable.conf", NULL);
	g_autofree char *text = NULL;
	g_autoptr(BgsDeviceModel) m = NULL;
	const char *uuids[] = { "8d53dc1d-1db7-4cd3-868b-8a527460aa84", NULL };
	BgsDeviceFacts by_uuid = { .address = "C0:00:00:00:00:01", .uuids = uuids };
	BgsDeviceFacts by_pnp = { .modalias = "bluetooth:v05F1p5742d0001" };
	BgsDeviceFacts by_dis = { .dis_vendor = 0x05f1, .dis_product = 0x5742,
				  .dis_vendor_source = 1 };
	BgsDeviceFacts other = { .modalias = "bluetooth:v05F1p5743d0001" };

	assert_true (g_file_get_contents (path, &text, NULL, NULL));
	g_string_truncate (warnings, 0);
	m = parse_model (text);
	assert_string_equal (m->id, "bgsync-wearable");
	assert_true (bgs_device_model_is_privileged (m, "org.bgsync.ctl"));
	assert_false (bgs_device_model_is_privileged (m, "org.example.Other"));
	assert_false (bgs_device_model_is_privileged (m, NULL));
	assert_int_equal (bgs_device_model_match (m, &by_uuid), BGS_MATCH_SERVICE_UUIDS);
	assert_int_equal (bgs_device_model_match (m, &by_pnp), BGS_MATCH_VENDOR_PRODUCT);
	/* the shipped file matches by Modalias glob only, not DIS */
	assert_int_equal (bgs_device_model_match (m, &by_dis), BGS_MATCH_NONE);
	assert_int_equal (bgs_device_model_match (m, &other), BGS_MATCH_NONE);
	assert_true (m->presence.has_found_rssi);
	assert_int_equal (m->presence.found_rssi, -80);
	assert_int_equal (m->presence.lost_timeout, 30);
	assert_true (m->reconnect.same_name);
	assert_non_null (bgs_device_model_get_param (m, "smp", "Window"));
	assert_null (bgs_device_model_get_param (m, "smp", "Nope"));
	assert_null (bgs_device_model_get_param (m, "obex", "MTU"));
	assert_int_equal (warnings->len, 0);
}

static GVariant *
mfr_variant (guint16 company, const guint8 *bytes, gsize len)
{
	GVariantBuilder b;

	g_variant_builder_init (&b, G_VARIANT_TYPE ("a{qv}"));
	g_variant_builder_add (&b, "{qv}", company,
			       g_variant_new_fixed_array (G_VARIANT_TYPE_BYTE, bytes, len, 1));
	return g_variant_ref_sink (g_variant_builder_end (&b));
}

static void
test_model_rules (void **state)
{
	g_autoptr(BgsDeviceModel) vp = parse_model (
		"[Model]\nId=vp\n[Match]\nVendor=05f1\nProduct=0x5742\n");
	g_autoptr(BgsDeviceModel) usb = parse_model (
		"[Model]\nId=usb\n[Match]\nVendor=1d6b\nVendorSource=usb\n");
	g_autoptr(BgsDeviceModel) uu = parse_model (
		"[Model]\nId=uu\n[Match]\nServiceUUIDs=180A;0000FE59-0000-1000-8000-00805F9B34FB\n");
	g_autoptr(BgsDeviceModel) mfr = parse_model (
		"[Model]\nId=mfr\n[Match]\nManufacturerData=05F1:0102\n");
	g_autoptr(BgsDeviceModel) mfr_any = parse_model (
		"[Model]\nId=mfr-any\n[Match]\nManufacturerData=004c\n");
	g_autoptr(BgsDeviceModel) nm = parse_model (
		"[Model]\nId=nm\n[Match]\nName=Wear*\n");
	g_autoptr(BgsDeviceModel) both = parse_model (
		"[Model]\nId=both\n[Match]\nName=Wear*\nServiceUUIDs=180a\n");
	static const guint8 good[] = { 1, 2, 3 }, bad[] = { 1, 3 }, one[] = { 1 };
	g_autoptr(GVariant) mfr_good = mfr_variant (0x05f1, good, 3);
	g_autoptr(GVariant) mfr_bad = mfr_variant (0x05f1, bad, 2);
	g_autoptr(GVariant) mfr_short = mfr_variant (0x05f1, one, 1);
	g_autoptr(GVariant) mfr_other = mfr_variant (0x004c, NULL, 0);
	const char *both_uuids[] = { "0000180a-0000-1000-8000-00805f9b34fb",
				     "0000fe59-0000-1000-8000-00805f9b34fb", NULL };
	const char *one_uuid[] = { "0000180a-0000-1000-8000-00805f9b34fb", NULL };
	const char *upper_uuids[] = { "0000180A-0000-1000-8000-00805F9B34FB", "fe59", NULL };
	BgsDeviceFacts f = { 0 };

	/* vendor/product from the modalias, then from DIS */
	f.modalias = "bluetooth:v05F1p5742d0100";
	assert_int_equal (bgs_device_model_match (vp, &f), BGS_MATCH_VENDOR_PRODUCT);
	f.modalias = "usb:v05F1p5742d0100"; /* right numbers, wrong source */
	assert_int_equal (bgs_device_model_match (vp, &f), BGS_MATCH_NONE);
	f.modalias = "bluetooth:v05F1p5743d0100";
	assert_int_equal (bgs_device_model_match (vp, &f), BGS_MATCH_NONE);
	f.modalias = "bluetooth:garbage";
	assert_int_equal (bgs_device_model_match (vp, &f), BGS_MATCH_NONE);
	f.modalias = NULL;
	f.dis_vendor_source = 1;
	f.dis_vendor = 0x05f1;
	f.dis_product = 0x5742;
	assert_int_equal (bgs_device_model_match (vp, &f), BGS_MATCH_VENDOR_PRODUCT);
	f.dis_vendor_source = 2;
	assert_int_equal (bgs_device_model_match (vp, &f), BGS_MATCH_NONE);
	f.dis_vendor = 0x1d6b;
	f.dis_product = 0x1234; /* Vendor without Product: any product */
	assert_int_equal (bgs_device_model_match (usb, &f), BGS_MATCH_VENDOR_PRODUCT);
	memset (&f, 0, sizeof f);

	/* all listed UUIDs, any case, shorthands expanded */
	f.uuids = one_uuid;
	assert_int_equal (bgs_device_model_match (uu, &f), BGS_MATCH_NONE);
	f.uuids = both_uuids;
	assert_int_equal (bgs_device_model_match (uu, &f), BGS_MATCH_SERVICE_UUIDS);
	f.uuids = upper_uuids;
	assert_int_equal (bgs_device_model_match (uu, &f), BGS_MATCH_SERVICE_UUIDS);
	f.uuids = NULL;
	assert_int_equal (bgs_device_model_match (uu, &f), BGS_MATCH_NONE);

	/* manufacturer data prefix */
	f.manufacturer_data = mfr_good;
	assert_int_equal (bgs_device_model_match (mfr, &f), BGS_MATCH_MANUFACTURER_DATA);
	assert_int_equal (bgs_device_model_match (mfr_any, &f), BGS_MATCH_NONE);
	f.manufacturer_data = mfr_bad;
	assert_int_equal (bgs_device_model_match (mfr, &f), BGS_MATCH_NONE);
	f.manufacturer_data = mfr_short;
	assert_int_equal (bgs_device_model_match (mfr, &f), BGS_MATCH_NONE);
	f.manufacturer_data = mfr_other;
	assert_int_equal (bgs_device_model_match (mfr, &f), BGS_MATCH_NONE);
	assert_int_equal (bgs_device_model_match (mfr_any, &f), BGS_MATCH_MANUFACTURER_DATA);
	f.manufacturer_data = NULL;

	/* name glob; every key of a group must match */
	f.name = "Wearable 42";
	assert_int_equal (bgs_device_model_match (nm, &f), BGS_MATCH_NAME);
	assert_int_equal (bgs_device_model_match (both, &f), BGS_MATCH_NONE);
	f.uuids = one_uuid;
	assert_int_equal (bgs_device_model_match (both, &f), BGS_MATCH_SERVICE_UUIDS);
	f.name = "Headset";
	assert_int_equal (bgs_device_model_match (nm, &f), BGS_MATCH_NONE);
	assert_int_equal (bgs_device_model_match (both, &f), BGS_MATCH_NONE);
	f.name = NULL;
	assert_int_equal (bgs_device_model_match (nm, &f), BGS_MATCH_NONE);
	assert_int_equal (bgs_device_model_match (nm, NULL), BGS_MATCH_NONE);
}

static void
test_model_bad_manufacturer_variant (void **state)
{
	g_autoptr(BgsDeviceModel) mfr = parse_model (
		"[Model]\nId=mfr\n[Match]\nManufacturerData=05f1:01\n");
	g_autoptr(GVariant) wrong_dict = g_variant_ref_sink (g_variant_new_parsed (
		"{'x': <[byte 1]>}"));
	g_autoptr(GVariant) bytes_only = g_variant_ref_sink (g_variant_new_parsed (
		"[byte 1, 2]"));
	g_autoptr(GVariant) wrong_inner = g_variant_ref_sink (g_variant_new_parsed (
		"{uint16 0x05f1: <'text'>}"));
	g_autoptr(GVariant) inner_int = g_variant_ref_sink (g_variant_new_parsed (
		"{uint16 0x05f1: <uint32 1>}"));
	g_autoptr(GVariant) nested = g_variant_ref_sink (g_variant_new_parsed (
		"{uint16 0x05f1: <<[byte 1]>>}"));
	GVariant *cases[] = { wrong_dict, bytes_only, wrong_inner, inner_int, nested };
	/* random bytes claiming to be a{qv} */
	static const guint8 junk[] = { 0xf1, 0x05, 0, 0, 0x01, 0xff, 0x61, 0x79, 0x09, 0x03 };
	g_autoptr(GVariant) untrusted = g_variant_ref_sink (g_variant_new_from_data (
		G_VARIANT_TYPE ("a{qv}"), junk, sizeof junk, FALSE, NULL, NULL));

	for (gsize i = 0; i < G_N_ELEMENTS (cases); i++) {
		BgsDeviceFacts f = { .manufacturer_data = cases[i] };
		g_autofree char *id = bgs_device_model_fallback_id (&f);

		assert_int_equal (bgs_device_model_match (mfr, &f), BGS_MATCH_NONE);
		assert_non_null (id);
	}
	{
		BgsDeviceFacts f = { .manufacturer_data = untrusted };
		g_autofree char *id = bgs_device_model_fallback_id (&f);
		(void) bgs_device_model_match (mfr, &f);
		assert_non_null (id);
	}
}

static void
test_model_precedence (void **state)
{
	Fixture *f = *state;
	g_autoptr(BgsModelRegistry) reg = NULL;
	const char *uuids[] = { "0000fe59-0000-1000-8000-00805f9b34fb", NULL };
	BgsDeviceFacts facts = { .name = "Wearable", .uuids = uuids,
				 .modalias = "bluetooth:v05F1p5742d0001" };

	/* file names sort against the ranks on purpose */
	g_free (write_file (f->dir1, "a-name.conf", "[Model]\nId=by-name\n[Match]\nName=Wear*\n"));
	g_free (write_file (f->dir1, "b-uuid.conf",
			    "[Model]\nId=by-uuid\n[Match]\nServiceUUIDs=fe59\n"));
	g_free (write_file (f->dir1, "c-name2.conf", "[Model]\nId=by-name2\n[Match]\nName=W*\n"));
	g_free (write_file (f->dir1, "d-pnp.conf",
			    "[Model]\nId=by-pnp\n[Match a]\nName=nothing\n[Match b]\n"
			    "Modalias=bluetooth:v05f1p5742*\n"));
	g_free (write_file (f->dir1, "e-dup.conf", "[Model]\nId=by-pnp\n[Match]\nName=x\n"));
	g_free (write_file (f->dir1, "f-bad.conf", "[Model]\nId=bad\n"));
	g_string_truncate (warnings, 0);
	reg = bgs_model_registry_new (dirs_of (f), FALSE);
	assert_true (warned ("e-dup.conf: skipped: [Model] Id by-pnp is already used"));
	assert_true (warned ("f-bad.conf: no [Match] group"));

	assert_string_equal (bgs_model_registry_match (reg, &facts)->id, "by-pnp");
	facts.modalias = NULL;
	assert_string_equal (bgs_model_registry_match (reg, &facts)->id, "by-uuid");
	facts.uuids = NULL;
	/* a tie goes to the file name that sorts first */
	assert_string_equal (bgs_model_registry_match (reg, &facts)->id, "by-name");
	facts.name = "Watch";
	assert_string_equal (bgs_model_registry_match (reg, &facts)->id, "by-name2");
	facts.name = NULL;
	assert_null (bgs_model_registry_match (reg, &facts));
	assert_non_null (bgs_model_registry_lookup (reg, "by-uuid"));
}

static const struct {
	const char *data;
	const char *needle;
} bad_models[] = {
	{ "[Model]\nName=x\n[Match]\nName=x\n", "Id" },
	{ "[Model]\nId=Upper\n[Match]\nName=x\n", "Id" },
	{ "[Model]\nId=m\n", "[Match]" },
	{ "[Model]\nId=m\n[Match]\n", "[Match] has no match key" },
	{ "[Model]\nId=m\n[Match]\nFoo=1\n", "[Match] has no match key" },
	{ "[Model]\nId=m\n[Match]\nServiceUUIDs=xyz\n", "ServiceUUIDs" },
	{ "[Model]\nId=m\n[Match]\nServiceUUIDs=;\n", "ServiceUUIDs" },
	{ "[Model]\nId=m\n[Match]\nVendor=12345\n", "Vendor" },
	{ "[Model]\nId=m\n[Match]\nVendor=zz\n", "Vendor" },
	{ "[Model]\nId=m\n[Match]\nProduct=0001\n", "Product needs Vendor" },
	{ "[Model]\nId=m\n[Match]\nVendor=1\nVendorSource=pci\n", "VendorSource" },
	{ "[Model]\nId=m\n[Match]\nManufacturerData=05f1:123\n", "ManufacturerData" },
	{ "[Model]\nId=m\n[Match]\nManufacturerData=:01\n", "ManufacturerData" },
	{ "[Model]\nId=m\n[Match]\nModalias=\n", "Modalias" },
	{ "[Model]\nId=m\nPrivilegedApps=notanid\n[Match]\nName=x\n", "PrivilegedApps" },
	{ "[Model]\nId=m\n[Match]\nName=x\n[Presence]\nFoundRSSI=-200\n", "FoundRSSI" },
	{ "[Model]\nId=m\n[Match]\nName=x\n[Presence]\nFoundRSSI=-90\nLostRSSI=-80\n",
	  "LostRSSI" },
	{ "[Model]\nId=m\n[Match]\nName=x\n[Presence]\nLostTimeout=soon\n", "LostTimeout" },
	{ "[Model]\nId=m\n[Match]\nName=x\n[Reconnect]\nAddressDelta=1000\n", "AddressDelta" },
	{ "[Model]\nId=m\n[Match]\nName=x\n[Reconnect]\nSameName=perhaps\n", "SameName" },
	{ "[Model]\nId=m\n[Match]\nName=x\n[Profile Bad]\nA=1\n", "Profile Bad" },
	{ "[Device]\nId=m\n[Match]\nName=x\n", "[Model]" },
	{ "[Model]\nId=m\n[Match]\nName=\xc3\x28\n", "UTF-8" },
};

static void
test_model_malformed (void **state)
{
	for (gsize i = 0; i < G_N_ELEMENTS (bad_models); i++) {
		g_autoptr(GError) error = NULL;
		g_autoptr(BgsDeviceModel) m = bgs_device_model_parse (bad_models[i].data,
								      strlen (bad_models[i].data),
								      "/d/bad.conf", &error);
		if (m != NULL)
			fail_msg ("case %zu parsed: %s", i, bad_models[i].data);
		assert_true (g_error_matches (error, BGS_ERROR, BGS_ERROR_INVALID_ARGS));
		if (strstr (error->message, "/d/bad.conf") == NULL ||
		    strstr (error->message, bad_models[i].needle) == NULL)
			fail_msg ("case %zu: message '%s' lacks '%s'", i, error->message,
				  bad_models[i].needle);
	}
}

/* issue order: Modalias/PnP ID, then DIS strings, then manufacturer data,
 * then service UUIDs, then the name */
static void
test_model_rank_order (void **state)
{
	g_autoptr(BgsDeviceModel) vp = parse_model (
		"[Model]\nId=vp\n[Match]\nVendor=05f1\n");
	g_autoptr(BgsDeviceModel) dis = parse_model (
		"[Model]\nId=dis\n[Match]\nDisManufacturer=ACME*\nDisModel=Band 2\n");
	g_autoptr(BgsDeviceModel) dis_model = parse_model (
		"[Model]\nId=dis-model\n[Match]\nDisModel=Band ?\n");
	g_autoptr(BgsDeviceModel) mfr = parse_model (
		"[Model]\nId=mfr\n[Match]\nManufacturerData=05f1\n");
	g_autoptr(BgsDeviceModel) uu = parse_model (
		"[Model]\nId=uu\n[Match]\nServiceUUIDs=180a\n");
	g_autoptr(BgsDeviceModel) nm = parse_model (
		"[Model]\nId=nm\n[Match]\nName=Band*\n");
	const char *uuids[] = { "0000180a-0000-1000-8000-00805f9b34fb", NULL };
	g_autoptr(GVariant) mfr_v = mfr_variant (0x05f1, NULL, 0);
	BgsDeviceFacts f = { .name = "Band", .uuids = uuids, .manufacturer_data = mfr_v,
			     .dis_manufacturer = "ACME Corp", .dis_model = "Band 2",
			     .dis_vendor_source = 1, .dis_vendor = 0x05f1, .dis_product = 1 };

	assert_int_equal (bgs_device_model_match (vp, &f), BGS_MATCH_VENDOR_PRODUCT);
	assert_int_equal (bgs_device_model_match (dis, &f), BGS_MATCH_DIS_STRINGS);
	assert_int_equal (bgs_device_model_match (dis_model, &f), BGS_MATCH_DIS_STRINGS);
	assert_int_equal (bgs_device_model_match (mfr, &f), BGS_MATCH_MANUFACTURER_DATA);
	assert_int_equal (bgs_device_model_match (uu, &f), BGS_MATCH_SERVICE_UUIDS);
	assert_int_equal (bgs_device_model_match (nm, &f), BGS_MATCH_NAME);
	assert_true (BGS_MATCH_VENDOR_PRODUCT > BGS_MATCH_DIS_STRINGS);
	assert_true (BGS_MATCH_DIS_STRINGS > BGS_MATCH_MANUFACTURER_DATA);
	assert_true (BGS_MATCH_MANUFACTURER_DATA > BGS_MATCH_SERVICE_UUIDS);
	assert_true (BGS_MATCH_SERVICE_UUIDS > BGS_MATCH_NAME);

	/* only a name-only group needs the scan response (an active scan) */
	assert_true (bgs_device_model_needs_scan_response (nm));
	assert_false (bgs_device_model_needs_scan_response (uu));
	assert_false (bgs_device_model_needs_scan_response (mfr));
	assert_false (bgs_device_model_needs_scan_response (vp));
	{
		g_autoptr(BgsDeviceModel) name_and_uuid = parse_model (
			"[Model]\nId=nu\n[Match]\nName=Band*\nServiceUUIDs=180a\n");
		g_autoptr(BgsDeviceModel) two_groups = parse_model (
			"[Model]\nId=tg\n[Match a]\nServiceUUIDs=180a\n[Match b]\nName=Band*\n");
		assert_false (bgs_device_model_needs_scan_response (name_and_uuid));
		assert_true (bgs_device_model_needs_scan_response (two_groups));
	}

	/* every key of the group must match: a different DIS model string */
	f.dis_model = "Band 3";
	assert_int_equal (bgs_device_model_match (dis, &f), BGS_MATCH_NONE);
	assert_int_equal (bgs_device_model_match (dis_model, &f), BGS_MATCH_DIS_STRINGS);
	/* no DIS read yet: the DIS groups do not match */
	f.dis_manufacturer = f.dis_model = NULL;
	assert_int_equal (bgs_device_model_match (dis, &f), BGS_MATCH_NONE);
	assert_int_equal (bgs_device_model_match (dis_model, &f), BGS_MATCH_NONE);
}

static void
test_fallback_id (void **state)
{
	const char *uuids_a[] = { "0000fe59-0000-1000-8000-00805f9b34fb", "180a", NULL };
	const char *uuids_b[] = { "0000180a-0000-1000-8000-00805f9b34fb",
				  "0000FE59-0000-1000-8000-00805F9B34FB", NULL };
	static const guint8 data[] = { 9 };
	g_autoptr(GVariant) mfr1 = mfr_variant (0x05f1, data, 1);
	g_autoptr(GVariant) mfr2 = mfr_variant (0x05f1, NULL, 0);
	BgsDeviceFacts a = { .address = "C0:11:22:33:44:55", .name = "Wearable 42",
			     .uuids = uuids_a, .manufacturer_data = mfr1 };
	BgsDeviceFacts b = { .address = "D9:AA:BB:CC:DD:EE", .name = "Wearable 42",
			     .uuids = uuids_b, .manufacturer_data = mfr2 };
	g_autofree char *ida = NULL, *idb = NULL, *idc = NULL, *idd = NULL;

	/* a random address changes, the id does not */
	ida = bgs_device_model_fallback_id (&a);
	idb = bgs_device_model_fallback_id (&b);
	assert_string_equal (ida, idb);
	assert_true (g_str_has_prefix (ida, "name-"));
	assert_int_equal (strlen (ida), strlen ("name-") + 16);
	g_clear_pointer (&ida, g_free);
	g_clear_pointer (&idb, g_free);

	/* without a name: the service UUIDs, order and case do not matter */
	a.name = b.name = NULL;
	ida = bgs_device_model_fallback_id (&a);
	idb = bgs_device_model_fallback_id (&b);
	assert_string_equal (ida, idb);
	assert_true (g_str_has_prefix (ida, "uuids-"));
	g_clear_pointer (&ida, g_free);
	g_clear_pointer (&idb, g_free);

	/* then the manufacturer company ids */
	a.uuids = b.uuids = NULL;
	ida = bgs_device_model_fallback_id (&a);
	idb = bgs_device_model_fallback_id (&b);
	assert_string_equal (ida, "mfr-05f1");
	assert_string_equal (idb, "mfr-05f1");

	/* modalias and DIS give the same form and beat everything */
	a.modalias = "bluetooth:v05F1p5742d0001";
	b.modalias = "bluetooth:v05F1p5742d0002"; /* firmware update: version changed */
	g_clear_pointer (&ida, g_free);
	g_clear_pointer (&idb, g_free);
	ida = bgs_device_model_fallback_id (&a);
	idb = bgs_device_model_fallback_id (&b);
	assert_string_equal (ida, "pnp-bluetooth-05f1-5742");
	assert_string_equal (idb, ida);
	b.modalias = NULL;
	b.dis_vendor_source = 1;
	b.dis_vendor = 0x05f1;
	b.dis_product = 0x5742;
	idc = bgs_device_model_fallback_id (&b);
	assert_string_equal (idc, ida);

	/* DIS strings, without a PnP ID, come before the name */
	{
		BgsDeviceFacts d1 = { .name = "Band of Ann", .dis_manufacturer = "ACME",
				      .dis_model = "Band 2" };
		BgsDeviceFacts d2 = { .name = "Band of Bob", .dis_manufacturer = "ACME",
				      .dis_model = "Band 2" };
		BgsDeviceFacts d3 = { .dis_manufacturer = "ACME", .dis_model = "Band 3" };
		g_autofree char *i1 = bgs_device_model_fallback_id (&d1);
		g_autofree char *i2 = bgs_device_model_fallback_id (&d2);
		g_autofree char *i3 = bgs_device_model_fallback_id (&d3);

		assert_true (g_str_has_prefix (i1, "dis-"));
		assert_string_equal (i1, i2);
		assert_string_not_equal (i1, i3);
	}

	/* only an address left: then, and only then, the address */
	{
		BgsDeviceFacts c = { .address = "C0:11:22:33:44:55" };
		BgsDeviceFacts none = { 0 };
		g_autofree char *ide = NULL;

		idd = bgs_device_model_fallback_id (&c);
		assert_string_equal (idd, "address-c01122334455");
		ide = bgs_device_model_fallback_id (&none);
		assert_string_equal (ide, "unknown");
	}
}

static void
test_uuid_normalize (void **state)
{
	g_autofree char *a = bgs_uuid_normalize ("180A");
	g_autofree char *b = bgs_uuid_normalize ("0x180a");
	g_autofree char *c = bgs_uuid_normalize ("0000180a");
	g_autofree char *d = bgs_uuid_normalize ("8D53DC1D-1DB7-4CD3-868B-8A527460AA84");
	g_autofree char *e = bgs_uuid_normalize ("18");
	g_autofree char *g = bgs_uuid_normalize ("8d53dc1d-1db7-4cd3-868b-8a527460aa8");

	assert_string_equal (a, "0000180a-0000-1000-8000-00805f9b34fb");
	assert_string_equal (b, a);
	assert_string_equal (c, a);
	assert_string_equal (d, "8d53dc1d-1db7-4cd3-868b-8a527460aa84");
	assert_null (e);
	assert_null (g);
}

/* identity on a fake /proc */

typedef struct {
	Fixture base;
	char *proc;
	BgsAppRegistry *apps;
} IdFixture;

static void
fake_proc (IdFixture *f, guint32 pid, const char *exe, const char *flatpak_info,
	   const char *attr)
{
	g_autofree char *dir = g_strdup_printf ("%s/%u", f->proc, pid);
	g_autofree char *link = g_build_filename (dir, "exe", NULL);

	assert_int_equal (g_mkdir_with_parents (dir, 0700), 0);
	if (exe != NULL)
		assert_int_equal (symlink (exe, link), 0);
	if (flatpak_info != NULL) {
		g_autofree char *root = g_build_filename (dir, "root", NULL);
		g_mkdir (root, 0700);
		g_free (write_file (root, ".flatpak-info", flatpak_info));
	}
	if (attr != NULL) {
		g_autofree char *adir = g_build_filename (dir, "attr", NULL);
		g_mkdir (adir, 0700);
		g_free (write_file (adir, "current", attr));
	}
}

static int
id_setup (void **state)
{
	IdFixture *f = g_new0 (IdFixture, 1);
	void *base = NULL;

	setup (&base);
	f->base = *(Fixture *) base;
	g_free (base);
	f->proc = g_build_filename (f->base.tmp, "proc", NULL);
	g_mkdir (f->proc, 0700);
	g_free (write_file (f->base.dir1, "host.conf",
			    "[App]\nId=org.example.Host\nExecutable=/usr/bin/host-app\n"));
	g_free (write_file (f->base.dir1, "flat.conf",
			    "[App]\nId=org.example.Flat\nFlatpakId=org.example.Flat\n"));
	g_free (write_file (f->base.dir1, "snap.conf",
			    "[App]\nId=org.example.Snap\nSnapName=snappy\n"));
	f->apps = bgs_app_registry_new (dirs_of (&f->base), FALSE);
	*state = f;
	return 0;
}

static int
id_teardown (void **state)
{
	IdFixture *f = *state;
	Fixture *base = g_new0 (Fixture, 1);
	void *bp = base;

	g_object_unref (f->apps);
	g_free (f->proc);
	*base = f->base;
	teardown (&bp);
	g_free (f);
	return 0;
}

static BgsIdentity *
resolve (IdFixture *f, guint32 pid, const char *label, GError **error)
{
	return bgs_identity_resolve (f->apps, 1000, pid, label, f->proc, error);
}

static void
test_identity_host (void **state)
{
	IdFixture *f = *state;
	g_autoptr(GError) error = NULL;
	g_autoptr(BgsIdentity) id = NULL;

	fake_proc (f, 100, "/usr/bin/host-app", NULL, "unconfined\n");
	id = resolve (f, 100, NULL, &error);
	assert_non_null (id);
	assert_int_equal (id->sandbox, BGS_SANDBOX_NONE);
	assert_string_equal (id->app_id, "org.example.Host");
	assert_string_equal (id->exe, "/usr/bin/host-app");
	assert_int_equal (id->uid, 1000);
	assert_int_equal (id->pid, 100);
}

static void
test_identity_flatpak (void **state)
{
	IdFixture *f = *state;
	g_autoptr(BgsIdentity) id = NULL;
	g_autoptr(BgsIdentity) id2 = NULL;

	fake_proc (f, 101, "/app/bin/flat", "[Application]\nname=org.example.Flat\n", NULL);
	id = resolve (f, 101, NULL, NULL);
	assert_non_null (id);
	assert_int_equal (id->sandbox, BGS_SANDBOX_FLATPAK);
	assert_string_equal (id->flatpak_id, "org.example.Flat");
	assert_string_equal (id->app_id, "org.example.Flat");

	/* a flatpak whose binary sits at the host app's path is not the host app */
	fake_proc (f, 102, "/usr/bin/host-app", "[Application]\nname=org.evil.Fake\n", NULL);
	id2 = resolve (f, 102, NULL, NULL);
	assert_non_null (id2);
	assert_int_equal (id2->sandbox, BGS_SANDBOX_FLATPAK);
	assert_string_equal (id2->exe, "/usr/bin/host-app");
	assert_null (id2->app_id);
}

static void
test_identity_flatpak_malformed (void **state)
{
	IdFixture *f = *state;
	g_autoptr(GError) error = NULL;
	BgsIdentity *id;

	/* a sandbox we cannot read must not fall back to the executable */
	fake_proc (f, 103, "/usr/bin/host-app", "[Application]\nruntime=x\n", NULL);
	id = resolve (f, 103, NULL, &error);
	assert_null (id);
	assert_true (g_error_matches (error, BGS_ERROR, BGS_ERROR_NOT_AUTHORIZED));
	g_clear_error (&error);
	fake_proc (f, 104, "/usr/bin/host-app", "\xff\xfe garbage", NULL);
	id = resolve (f, 104, NULL, &error);
	assert_null (id);
	assert_true (g_error_matches (error, BGS_ERROR, BGS_ERROR_NOT_AUTHORIZED));
}

static void
test_identity_snap (void **state)
{
	IdFixture *f = *state;
	g_autoptr(GError) error = NULL;
	g_autoptr(BgsIdentity) by_label = NULL;
	g_autoptr(BgsIdentity) by_attr = NULL;
	g_autoptr(BgsIdentity) host_exe = NULL;
	g_autoptr(BgsIdentity) label_wins = NULL;
	BgsIdentity *bad;

	fake_proc (f, 110, "/snap/snappy/1/bin/app", NULL, NULL);
	by_label = resolve (f, 110, "snap.snappy.app (enforce)", NULL);
	assert_non_null (by_label);
	assert_int_equal (by_label->sandbox, BGS_SANDBOX_SNAP);
	assert_string_equal (by_label->snap_name, "snappy");
	assert_string_equal (by_label->app_id, "org.example.Snap");

	fake_proc (f, 111, "/snap/snappy/1/bin/app", NULL, "snap.snappy.hook.configure (complain)\n");
	by_attr = resolve (f, 111, NULL, NULL);
	assert_non_null (by_attr);
	assert_int_equal (by_attr->sandbox, BGS_SANDBOX_SNAP);
	assert_string_equal (by_attr->app_id, "org.example.Snap");

	/* a snap running a binary at the host app's path is not the host app */
	fake_proc (f, 112, "/usr/bin/host-app", NULL, NULL);
	host_exe = resolve (f, 112, "snap.other.app (enforce)", NULL);
	assert_non_null (host_exe);
	assert_int_equal (host_exe->sandbox, BGS_SANDBOX_SNAP);
	assert_null (host_exe->app_id);

	/* the bus daemon's label is used when given, attr/current only otherwise */
	fake_proc (f, 113, "/usr/bin/host-app", NULL, "snap.snappy.app (enforce)\n");
	label_wins = resolve (f, 113, "unconfined", NULL);
	assert_non_null (label_wins);
	assert_int_equal (label_wins->sandbox, BGS_SANDBOX_NONE);
	assert_string_equal (label_wins->app_id, "org.example.Host");

	bad = resolve (f, 113, "snap.", &error);
	assert_null (bad);
	assert_true (g_error_matches (error, BGS_ERROR, BGS_ERROR_NOT_AUTHORIZED));
}

static void
test_identity_unknown_and_gone (void **state)
{
	IdFixture *f = *state;
	g_autoptr(GError) error = NULL;
	g_autoptr(BgsIdentity) unknown = NULL;
	g_autoptr(BgsIdentity) deleted = NULL;
	g_autoptr(BgsIdentity) kthread = NULL;
	BgsIdentity *gone;

	fake_proc (f, 120, "/usr/bin/stranger", NULL, NULL);
	unknown = resolve (f, 120, NULL, &error);
	assert_non_null (unknown);
	assert_null (unknown->app_id);

	/* the host binary, but deleted (replaced): matches nothing */
	fake_proc (f, 121, "/usr/bin/host-app (deleted)", NULL, NULL);
	deleted = resolve (f, 121, NULL, NULL);
	assert_non_null (deleted);
	assert_string_equal (deleted->exe, "/usr/bin/host-app");
	assert_null (deleted->app_id);

	fake_proc (f, 122, NULL, NULL, NULL);
	kthread = resolve (f, 122, NULL, NULL);
	assert_non_null (kthread);
	assert_null (kthread->exe);
	assert_null (kthread->app_id);

	gone = resolve (f, 4242, NULL, &error);
	assert_null (gone);
	assert_true (g_error_matches (error, BGS_ERROR, BGS_ERROR_NOT_FOUND));
	g_clear_error (&error);
	gone = resolve (f, 0, NULL, &error);
	assert_null (gone);
	assert_true (g_error_matches (error, BGS_ERROR, BGS_ERROR_INVALID_ARGS));
	g_clear_error (&error);
	gone = bgs_identity_resolve (f->apps, 0, 1, NULL, "/nonexistent-proc", &error);
	assert_null (gone);
	assert_true (g_error_matches (error, BGS_ERROR, BGS_ERROR_NOT_FOUND));
}

static void
test_identity_real_proc (void **state)
{
	IdFixture *f = *state;
	g_autoptr(GError) error = NULL;
	g_autoptr(BgsIdentity) self = bgs_identity_resolve (f->apps, getuid (), getpid (), NULL,
							   "/proc", &error);
	g_autofree char *exe = g_file_read_link ("/proc/self/exe", NULL);

	assert_non_null (self);
	assert_string_equal (self->exe, exe);
	assert_null (self->app_id);
}

int
main (int argc, char **argv)
{
	const struct CMUnitTest manifest_tests[] = {
		cmocka_unit_test (test_manifest_valid),
		cmocka_unit_test (test_manifest_minimal),
		cmocka_unit_test (test_manifest_malformed),
		cmocka_unit_test (test_manifest_binary_and_oversize),
		cmocka_unit_test (test_manifest_unknown_key_warns),
		cmocka_unit_test (test_manifest_disabled),
		cmocka_unit_test (test_manifest_allows),
		cmocka_unit_test_setup_teardown (test_registry_layers, setup, teardown),
		cmocka_unit_test_setup_teardown (test_registry_ref_survives_reload, setup, teardown),
		cmocka_unit_test_setup_teardown (test_registry_watch_remove, setup, teardown),
		cmocka_unit_test_setup_teardown (test_registry_watch_missing_dir, setup, teardown),
		cmocka_unit_test_setup_teardown (test_shipped_manifest, setup, teardown),
	};
	const struct CMUnitTest model_tests[] = {
		cmocka_unit_test_setup_teardown (test_model_shipped, setup, teardown),
		cmocka_unit_test (test_model_rules),
		cmocka_unit_test (test_model_bad_manufacturer_variant),
		cmocka_unit_test_setup_teardown (test_model_precedence, setup, teardown),
		cmocka_unit_test (test_model_malformed),
		cmocka_unit_test (test_model_rank_order),
		cmocka_unit_test (test_fallback_id),
		cmocka_unit_test (test_uuid_normalize),
	};
	const struct CMUnitTest identity_tests[] = {
		cmocka_unit_test_setup_teardown (test_identity_host, id_setup, id_teardown),
		cmocka_unit_test_setup_teardown (test_identity_flatpak, id_setup, id_teardown),
		cmocka_unit_test_setup_teardown (test_identity_flatpak_malformed, id_setup, id_teardown),
		cmocka_unit_test_setup_teardown (test_identity_snap, id_setup, id_teardown),
		cmocka_unit_test_setup_teardown (test_identity_unknown_and_gone, id_setup, id_teardown),
		cmocka_unit_test_setup_teardown (test_identity_real_proc, id_setup, id_teardown),
	};
	int failed = 0;

	/* ./test-apps [test-name-glob] runs the matching tests only */
	if (argc > 1)
		cmocka_set_test_filter (argv[1]);
	warnings = g_string_new (NULL);
	g_log_set_handler ("bgsync-apps", G_LOG_LEVEL_MASK | G_LOG_FLAG_FATAL |
			   G_LOG_FLAG_RECURSION, log_capture, NULL);
	failed += cmocka_run_group_tests_name ("manifests", manifest_tests, NULL, NULL);
	failed += cmocka_run_group_tests_name ("models", model_tests, NULL, NULL);
	failed += cmocka_run_group_tests_name ("identity", identity_tests, NULL, NULL);
	g_string_free (warnings, TRUE);
	return failed == 0 ? 0 : 1;
}
