/* test-wearable.c: bgsync-wearable's side of the BlueZ peripheral contract,
 * driven the way bluetoothd 5.66 drives an external GATT application
 * (src/gatt-database.c): GetManagedObjects on the app root, ReadValue with
 * options, AcquireWrite(a{sv}) and AcquireNotify(a{sv}) answered with
 * (h, q), bytes written to the write socket and notifications read from the
 * notify socket. No org.bluez on the bus: only the app's objects are used.
 * The device information values are per the Bluetooth SIG PnP ID
 * characteristic (0x2A50: source, vendor, product, version, little endian). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>
#include <gio/gio.h>
#include <gio/gunixfdlist.h>
#include <glib/gstdio.h>

#include "bgs-error.h"
#include "bgs-smp-client.h"
#include "smp-test-image.h"

#define APP "/org/bgsync/wearable"
#define SMP_CHRC APP "/service2/char0"
#define PNP_CHRC APP "/service0/char2"
#define FW_CHRC APP "/service0/char3"

typedef struct {
	char *dir;
	GPid bus_pid;
	GPid wear_pid;
	char *address;
	char *wear_name;
	GDBusConnection *conn;
	BgsClock *clock;
	BgsSmpClient *client;
	gboolean done;
	GError *error;
	BgsSmpResponse *resp;
	gboolean ok;
} Fx;

static GPid children[4];

static void
kill_children (void)
{
	for (guint i = 0; i < G_N_ELEMENTS (children); i++) {
		if (children[i] > 0) {
			kill (children[i], SIGTERM);
			waitpid (children[i], NULL, 0);
			children[i] = 0;
		}
	}
}

static GPid
spawn (char **argv, int *out)
{
	GPid pid = 0;
	g_autoptr(GError) error = NULL;

	if (!g_spawn_async_with_pipes (NULL, argv, NULL, G_SPAWN_DO_NOT_REAP_CHILD | G_SPAWN_SEARCH_PATH,
				       NULL, NULL, &pid, NULL, out, NULL, &error)) {
		print_error ("spawn %s: %s\n", argv[0], error->message);
		fail ();
	}
	for (guint i = 0; i < G_N_ELEMENTS (children); i++) {
		if (children[i] <= 0) {
			children[i] = pid;
			break;
		}
	}
	return pid;
}

static void
rm_rf (const char *path)
{
	g_autoptr(GDir) d = g_dir_open (path, 0, NULL);
	const char *name;

	if (d != NULL) {
		while ((name = g_dir_read_name (d)) != NULL) {
			g_autofree char *child = g_build_filename (path, name, NULL);

			rm_rf (child);
		}
	}
	g_remove (path);
}

static gboolean
on_limit (gpointer user_data)
{
	gboolean *hit = user_data;

	*hit = TRUE;
	return G_SOURCE_REMOVE;
}

/* the wearable has no well-known name: find the connection of its pid,
 * waiting (bounded) for NameOwnerChanged signals */
static void
on_owner_changed (GDBusConnection *c, const char *sender, const char *path, const char *iface,
		  const char *signal, GVariant *params, gpointer user_data)
{
	gboolean *poked = user_data;

	*poked = TRUE;
}

static char *
find_wearable (Fx *f)
{
	g_autoptr(GVariant) names = g_dbus_connection_call_sync (f->conn, "org.freedesktop.DBus",
		"/org/freedesktop/DBus", "org.freedesktop.DBus", "ListNames", NULL,
		G_VARIANT_TYPE ("(as)"), G_DBUS_CALL_FLAGS_NONE, 5000, NULL, NULL);
	g_autofree const char **list = NULL;

	if (names == NULL)
		return NULL;
	g_variant_get (names, "(^a&s)", &list);
	for (guint i = 0; list[i] != NULL; i++) {
		g_autoptr(GVariant) pid = NULL;
		guint32 p = 0;

		if (list[i][0] != ':')
			continue;
		pid = g_dbus_connection_call_sync (f->conn, "org.freedesktop.DBus", "/org/freedesktop/DBus",
			"org.freedesktop.DBus", "GetConnectionUnixProcessID", g_variant_new ("(s)", list[i]),
			G_VARIANT_TYPE ("(u)"), G_DBUS_CALL_FLAGS_NONE, 5000, NULL, NULL);
		if (pid == NULL)
			continue;
		g_variant_get (pid, "(u)", &p);
		if ((GPid) p == f->wear_pid) {
			/* exported objects come before anything else it does */
			g_autoptr(GVariant) objs = g_dbus_connection_call_sync (f->conn, list[i], APP,
				"org.freedesktop.DBus.ObjectManager", "GetManagedObjects", NULL, NULL,
				G_DBUS_CALL_FLAGS_NONE, 5000, NULL, NULL);

			if (objs != NULL)
				return g_strdup (list[i]);
		}
	}
	return NULL;
}

static void
start_wearable (Fx *f, const char *extra)
{
	g_autofree char *state = g_build_filename (f->dir, "state", NULL);
	char *argv[] = { (char *) WEARABLE_BIN, (char *) "--bus", f->address, (char *) "--adapter",
			 (char *) "hci1", (char *) "--state-dir", state, (char *) "--reboot-seconds", (char *) "0",
			 (char *) extra, NULL };
	gboolean poked = FALSE, hit = FALSE;
	guint sub = g_dbus_connection_signal_subscribe (f->conn, "org.freedesktop.DBus",
		"org.freedesktop.DBus", "NameOwnerChanged", NULL, NULL, G_DBUS_SIGNAL_FLAGS_NONE,
		on_owner_changed, &poked, NULL);
	guint id = g_timeout_add_seconds (20, on_limit, &hit);

	f->wear_pid = spawn (argv, NULL);
	while ((f->wear_name = find_wearable (f)) == NULL && !hit) {
		poked = FALSE;
		/* the next NameOwnerChanged, or give the exports a moment */
		{
			gboolean tick = FALSE;
			guint t = g_timeout_add (50, on_limit, &tick);

			while (!poked && !tick && !hit)
				g_main_context_iteration (NULL, TRUE);
			if (!tick)
				g_source_remove (t);
		}
	}
	if (!hit)
		g_source_remove (id);
	g_dbus_connection_signal_unsubscribe (f->conn, sub);
	assert_non_null (f->wear_name);
}

static int
setup (void **state)
{
	Fx *f = g_new0 (Fx, 1);
	g_autofree char *conf_path = NULL;
	g_autofree char *conf = NULL;
	g_autoptr(GError) error = NULL;
	char *bus_argv[] = { (char *) "dbus-daemon", NULL, (char *) "--nofork", (char *) "--print-address=1", NULL };
	int out = -1;
	char buf[512];
	ssize_t n;

	f->dir = g_dir_make_tmp ("wearable-XXXXXX", NULL);
	conf_path = g_build_filename (f->dir, "bus.conf", NULL);
	conf = g_strdup_printf (
		"<!DOCTYPE busconfig PUBLIC \"-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN\" "
		"\"http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd\">"
		"<busconfig><type>session</type><listen>unix:dir=%s</listen>"
		"<policy context='default'><allow send_destination='*'/><allow receive_sender='*'/>"
		"<allow own='*'/></policy></busconfig>", f->dir);
	assert_true (g_file_set_contents (conf_path, conf, -1, NULL));
	bus_argv[1] = g_strdup_printf ("--config-file=%s", conf_path);
	f->bus_pid = spawn (bus_argv, &out);
	g_free (bus_argv[1]);
	n = read (out, buf, sizeof (buf) - 1);
	close (out);
	assert_true (n > 0);
	buf[n] = '\0';
	g_strstrip (buf);
	f->address = g_strdup (buf);
	f->conn = g_dbus_connection_new_for_address_sync (f->address,
		G_DBUS_CONNECTION_FLAGS_AUTHENTICATION_CLIENT | G_DBUS_CONNECTION_FLAGS_MESSAGE_BUS_CONNECTION,
		NULL, NULL, &error);
	assert_non_null (f->conn);
	f->clock = bgs_clock_new_real ();
	f->client = bgs_smp_client_new (f->clock, BGS_SMP_V1);
	*state = f;
	return 0;
}

static int
teardown (void **state)
{
	Fx *f = *state;

	bgs_smp_client_unref (f->client);
	while (g_main_context_iteration (NULL, FALSE))
		;
	g_clear_error (&f->error);
	g_clear_pointer (&f->resp, bgs_smp_response_free);
	g_object_unref (f->conn);
	kill_children ();
	bgs_clock_unref (f->clock);
	rm_rf (f->dir);
	g_free (f->dir);
	g_free (f->address);
	g_free (f->wear_name);
	g_free (f);
	return 0;
}

static GVariant *
app_call (Fx *f, const char *path, const char *iface, const char *method, GVariant *args,
	  GError **error)
{
	return g_dbus_connection_call_sync (f->conn, f->wear_name, path, iface, method, args, NULL,
					    G_DBUS_CALL_FLAGS_NONE, 10000, NULL, error);
}

static int
acquire (Fx *f, const char *method, guint16 *mtu)
{
	g_autoptr(GUnixFDList) fds = NULL;
	g_autoptr(GError) error = NULL;
	GVariantBuilder opts;
	g_autoptr(GVariant) r = NULL;
	gint32 idx = -1;

	/* what bluetoothd sends: the options only */
	g_variant_builder_init (&opts, G_VARIANT_TYPE ("a{sv}"));
	g_variant_builder_add (&opts, "{sv}", "device", g_variant_new_object_path ("/org/bluez/hci1/dev_00_AA_01_00_00_00"));
	g_variant_builder_add (&opts, "{sv}", "mtu", g_variant_new_uint16 (247));
	g_variant_builder_add (&opts, "{sv}", "link", g_variant_new_string ("LE"));
	r = g_dbus_connection_call_with_unix_fd_list_sync (f->conn, f->wear_name, SMP_CHRC,
		"org.bluez.GattCharacteristic1", method, g_variant_new ("(a{sv})", &opts),
		G_VARIANT_TYPE ("(hq)"), G_DBUS_CALL_FLAGS_NONE, 10000, NULL, &fds, NULL, &error);
	if (r == NULL) {
		print_error ("%s: %s\n", method, error->message);
		fail ();
	}
	g_variant_get (r, "(hq)", &idx, mtu);
	return g_unix_fd_list_get (fds, idx, NULL);
}

static void
test_objects (void **state)
{
	Fx *f = *state;
	g_autoptr(GError) error = NULL;
	g_autoptr(GVariant) r = NULL;
	g_autoptr(GVariant) objs = NULL;
	g_autoptr(GVariant) smp = NULL;
	g_autoptr(GVariant) smp_props = NULL;
	g_autofree const char **flags = NULL;
	const guint8 want_pnp[] = { 0x01, 0xf1, 0x05, 0x42, 0x57, 0x00, 0x01 };

	start_wearable (f, "--battery=50");
	r = app_call (f, APP, "org.freedesktop.DBus.ObjectManager", "GetManagedObjects", NULL, &error);
	assert_non_null (r);
	objs = g_variant_get_child_value (r, 0);
	/* 3 services, 6 characteristics */
	assert_int_equal (g_variant_n_children (objs), 9);
	smp = g_variant_lookup_value (objs, SMP_CHRC, NULL);
	assert_non_null (smp);
	smp_props = g_variant_lookup_value (smp, "org.bluez.GattCharacteristic1", NULL);
	assert_non_null (smp_props);
	assert_true (g_variant_lookup (smp_props, "Flags", "^a&s", &flags));
	assert_string_equal (flags[0], "write-without-response");
	assert_string_equal (flags[1], "notify");
	/* presence of these tells bluetoothd the acquire methods exist */
	{
		g_autoptr(GVariant) v = g_variant_lookup_value (smp_props, "WriteAcquired", NULL);

		assert_non_null (v);
	}
	{
		g_autoptr(GVariant) v = g_variant_lookup_value (smp_props, "NotifyAcquired", NULL);

		assert_non_null (v);
	}

	/* PnP ID read, and with an offset */
	{
		g_autoptr(GVariant) pnp = app_call (f, PNP_CHRC, "org.bluez.GattCharacteristic1", "ReadValue",
						    g_variant_new ("(a{sv})", NULL), &error);
		g_autoptr(GVariant) ay = g_variant_get_child_value (pnp, 0);
		gsize n = 0;
		const guint8 *d = g_variant_get_fixed_array (ay, &n, 1);

		assert_int_equal (n, sizeof (want_pnp));
		assert_memory_equal (d, want_pnp, n);
	}
	{
		GVariantBuilder o;
		g_autoptr(GVariant) pnp = NULL;
		g_autoptr(GVariant) ay = NULL;
		gsize n = 0;
		const guint8 *d;

		g_variant_builder_init (&o, G_VARIANT_TYPE ("a{sv}"));
		g_variant_builder_add (&o, "{sv}", "offset", g_variant_new_uint16 (3));
		pnp = app_call (f, PNP_CHRC, "org.bluez.GattCharacteristic1", "ReadValue",
				g_variant_new ("(a{sv})", &o), &error);
		ay = g_variant_get_child_value (pnp, 0);
		d = g_variant_get_fixed_array (ay, &n, 1);
		assert_int_equal (n, 4);
		assert_memory_equal (d, want_pnp + 3, 4);
	}
	/* battery */
	{
		g_autoptr(GVariant) b = app_call (f, APP "/service1/char0", "org.bluez.GattCharacteristic1",
						  "ReadValue", g_variant_new ("(a{sv})", NULL), &error);
		g_autoptr(GVariant) ay = g_variant_get_child_value (b, 0);
		gsize n = 0;
		const guint8 *d = g_variant_get_fixed_array (ay, &n, 1);

		assert_int_equal (n, 1);
		assert_int_equal (d[0], 50);
	}
	/* read-only characteristics refuse writes with a BlueZ error */
	{
		g_autoptr(GError) e = NULL;
		g_autoptr(GVariant) w = app_call (f, PNP_CHRC, "org.bluez.GattCharacteristic1", "WriteValue",
			g_variant_new ("(@aya{sv})", g_variant_new_fixed_array (G_VARIANT_TYPE_BYTE, "x", 1, 1), NULL), &e);
		g_autofree char *remote = NULL;

		assert_null (w);
		remote = g_dbus_error_get_remote_error (e);
		assert_string_equal (remote, "org.bluez.Error.NotSupported");
	}
}

static void
call_cb (GObject *source, GAsyncResult *result, gpointer user_data)
{
	Fx *f = user_data;

	f->resp = bgs_smp_client_call_finish (f->client, result, &f->error);
	f->done = TRUE;
}

static void
upload_cb (GObject *source, GAsyncResult *result, gpointer user_data)
{
	Fx *f = user_data;

	f->ok = bgs_smp_client_upload_image_finish (f->client, result, &f->error);
	f->done = TRUE;
}

static void
wait_done (Fx *f)
{
	gboolean hit = FALSE;
	guint id = g_timeout_add_seconds (60, on_limit, &hit);

	while (!f->done && !hit)
		g_main_context_iteration (NULL, TRUE);
	if (!hit)
		g_source_remove (id);
	assert_true (f->done);
}

static char *
read_string_chrc (Fx *f, const char *path)
{
	g_autoptr(GError) error = NULL;
	g_autoptr(GVariant) r = app_call (f, path, "org.bluez.GattCharacteristic1", "ReadValue",
					  g_variant_new ("(a{sv})", NULL), &error);
	g_autoptr(GVariant) ay = NULL;
	gsize n = 0;
	const char *d;

	assert_non_null (r);
	ay = g_variant_get_child_value (r, 0);
	d = g_variant_get_fixed_array (ay, &n, 1);
	return g_strndup (d, n);
}

/* the SMP service over the acquired sockets: echo, a 100 KiB upload, test,
 * reset; the Firmware Revision characteristic shows the new image after */
static void
test_acquired_smp (void **state)
{
	Fx *f = *state;
	guint16 wmtu = 0, nmtu = 0;
	int wfd, nfd;
	g_autoptr(GError) error = NULL;
	guint8 hash[32];
	g_autoptr(GByteArray) img = smp_test_image_new (3, 1, 4, 0, 100 * 1024, 9, FALSE, hash);
	g_autoptr(GBytes) bytes = g_bytes_new (img->data, img->len);
	g_autofree char *fw_before = NULL;

	start_wearable (f, "--battery=87");
	fw_before = read_string_chrc (f, FW_CHRC);
	assert_string_equal (fw_before, "1.0.0");
	wfd = acquire (f, "AcquireWrite", &wmtu);
	nfd = acquire (f, "AcquireNotify", &nmtu);
	assert_int_equal (wmtu, 247);
	assert_int_equal (nmtu, 247);
	assert_true (bgs_smp_client_attach_fds (f->client, wfd, nfd, 247, &error));

	{
		g_autoptr(GBytes) body = bgs_smp_build_echo ("over the socket");
		g_autofree char *text = NULL;

		bgs_smp_client_call_async (f->client, BGS_SMP_OP_WRITE, 0, 0, body, NULL, call_cb, f);
		wait_done (f);
		assert_null (f->error);
		assert_true (bgs_smp_parse_echo (f->resp->body, &text, NULL));
		assert_string_equal (text, "over the socket");
		g_clear_pointer (&f->resp, bgs_smp_response_free);
	}
	f->done = FALSE;
	bgs_smp_client_upload_image_async (f->client, bytes, 0, FALSE, NULL, NULL, NULL, upload_cb, f);
	wait_done (f);
	if (f->error != NULL)
		print_error ("upload: %s\n", f->error->message);
	assert_true (f->ok);
	{
		g_autoptr(GBytes) body = bgs_smp_build_image_state_set (hash, FALSE);

		f->done = FALSE;
		bgs_smp_client_call_async (f->client, BGS_SMP_OP_WRITE, 1, 0, body, NULL, call_cb, f);
		wait_done (f);
		assert_null (f->error);
		assert_true (bgs_smp_body_check (f->resp->body, NULL));
		g_clear_pointer (&f->resp, bgs_smp_response_free);
	}
	{
		g_autoptr(GBytes) body = bgs_smp_build_reset (FALSE);

		f->done = FALSE;
		bgs_smp_client_call_async (f->client, BGS_SMP_OP_WRITE, 0, 5, body, NULL, call_cb, f);
		wait_done (f);
		assert_null (f->error);
		g_clear_pointer (&f->resp, bgs_smp_response_free);
	}
	/* the device closes the acquired sockets when it goes down */
	{
		gboolean hit = FALSE;
		guint id = g_timeout_add_seconds (20, on_limit, &hit);

		while (bgs_smp_client_is_attached (f->client) && !hit)
			g_main_context_iteration (NULL, TRUE);
		if (!hit)
			g_source_remove (id);
		assert_false (bgs_smp_client_is_attached (f->client));
	}
	/* --reboot-seconds 0: back at once, running the test image; the
	 * Firmware Revision value change says the boot is over */
	{
		gboolean poked = FALSE, hit = FALSE;
		guint sub = g_dbus_connection_signal_subscribe (f->conn, f->wear_name,
			"org.freedesktop.DBus.Properties", "PropertiesChanged", FW_CHRC, NULL,
			G_DBUS_SIGNAL_FLAGS_NONE, on_owner_changed, &poked, NULL);
		guint id = g_timeout_add_seconds (20, on_limit, &hit);
		g_autofree char *fw = read_string_chrc (f, FW_CHRC);

		while (g_strcmp0 (fw, "3.1.4") != 0 && !hit) {
			poked = FALSE;
			while (!poked && !hit)
				g_main_context_iteration (NULL, TRUE);
			g_free (fw);
			fw = read_string_chrc (f, FW_CHRC);
		}
		if (!hit)
			g_source_remove (id);
		g_dbus_connection_signal_unsubscribe (f->conn, sub);
		assert_string_equal (fw, "3.1.4");
	}
}

/* a request cut by a lost link (its first 12 of 300-odd bytes written, as
 * bluetoothd hands the app what arrived) does not leave the SMP server deaf:
 * the next central's session over the acquired sockets is understood at
 * once (the partial request is per connection) */
static void
test_cut_request (void **state)
{
	Fx *f = *state;
	guint16 wmtu = 0, nmtu = 0;
	int wfd, nfd;
	g_autoptr(GError) error = NULL;
	g_autofree char *long_text = g_strnfill (300, 'x');
	g_autoptr(GBytes) long_body = bgs_smp_build_echo (long_text);
	g_autoptr(GBytes) cut = bgs_smp_frame_build (BGS_SMP_OP_WRITE, BGS_SMP_V1, 0, 0, 77, long_body);
	g_autoptr(GVariant) r = NULL;
	GVariantBuilder opts;

	start_wearable (f, "--battery=50");
	g_variant_builder_init (&opts, G_VARIANT_TYPE ("a{sv}"));
	g_variant_builder_add (&opts, "{sv}", "device", g_variant_new_object_path ("/org/bluez/hci1/dev_00_AA_01_00_00_00"));
	g_variant_builder_add (&opts, "{sv}", "mtu", g_variant_new_uint16 (247));
	g_variant_builder_add (&opts, "{sv}", "type", g_variant_new_string ("command"));
	r = app_call (f, SMP_CHRC, "org.bluez.GattCharacteristic1", "WriteValue",
		      g_variant_new ("(@aya{sv})",
				     g_variant_new_fixed_array (G_VARIANT_TYPE_BYTE,
								g_bytes_get_data (cut, NULL), 12, 1),
				     &opts),
		      &error);
	assert_non_null (r);

	wfd = acquire (f, "AcquireWrite", &wmtu);
	nfd = acquire (f, "AcquireNotify", &nmtu);
	assert_true (bgs_smp_client_attach_fds (f->client, wfd, nfd, 247, &error));
	{
		g_autoptr(GBytes) body = bgs_smp_build_echo ("heard");
		g_autofree char *text = NULL;

		bgs_smp_client_call_async (f->client, BGS_SMP_OP_WRITE, 0, 0, body, NULL, call_cb, f);
		wait_done (f);
		if (f->error != NULL)
			print_error ("echo after a cut request: %s\n", f->error->message);
		assert_null (f->error);
		assert_true (bgs_smp_parse_echo (f->resp->body, &text, NULL));
		assert_string_equal (text, "heard");
		g_clear_pointer (&f->resp, bgs_smp_response_free);
	}
}

int
main (void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown (test_objects, setup, teardown),
		cmocka_unit_test_setup_teardown (test_acquired_smp, setup, teardown),
		cmocka_unit_test_setup_teardown (test_cut_request, setup, teardown),
	};
	g_autofree char *daemon = g_find_program_in_path ("dbus-daemon");
	int rc;

	if (daemon == NULL) {
		printf ("skipping: needs dbus-daemon\n");
		return 77;
	}
	rc = cmocka_run_group_tests (tests, NULL, NULL);
	kill_children ();
	return rc;
}
