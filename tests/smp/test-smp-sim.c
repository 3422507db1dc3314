/* test-smp-sim.c: the SMP client as a central against bgsync-wearable on
 * bgsync-sim, through BlueZ's D-Bus API only: discovery, Connect,
 * AcquireWrite/AcquireNotify, a 400 KiB image upload, test, reset (the
 * device drops the link and comes back), confirm; and the same with an
 * address change after the reset. Runs on a private dbus-daemon.
 *
 * SMP image commands per Zephyr doc/services/device_mgmt/smp_groups/
 * smp_group_1.rst; images per mcu-tools/mcuboot docs/design.md. */
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

#define SMP_CHRC_UUID "da2e7828-fbce-4e01-ae9e-261174997c48"
#define WAIT_SECONDS 30

typedef struct {
	char *dir;
	GPid bus_pid;
	GPid sim_pid;
	GPid wear_pid;
	char *address;
	GDBusConnection *conn;
	guint sub;
	gboolean poked;
	gboolean dropped;
	BgsClock *clock;
	BgsSmpClient *client;
	gboolean done;
	gboolean ok;
	GError *error;
	BgsSmpResponse *resp;
} Fx;

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

static void
on_signal (GDBusConnection *c, const char *sender, const char *path, const char *iface,
	   const char *signal, GVariant *params, gpointer user_data)
{
	Fx *f = user_data;

	f->poked = TRUE;
}

static gboolean
on_limit (gpointer user_data)
{
	gboolean *hit = user_data;

	*hit = TRUE;
	return G_SOURCE_REMOVE;
}

/* waits for the next bus signal from BlueZ (or @ms), without busy looping */
static void
wait_poke (Fx *f, guint ms)
{
	gboolean hit = FALSE;
	guint id = g_timeout_add (ms, on_limit, &hit);

	f->poked = FALSE;
	while (!f->poked && !hit)
		g_main_context_iteration (NULL, TRUE);
	if (!hit)
		g_source_remove (id);
}

static GVariant *
objects (Fx *f)
{
	g_autoptr(GVariant) r = g_dbus_connection_call_sync (f->conn, "org.bluez", "/",
		"org.freedesktop.DBus.ObjectManager", "GetManagedObjects", NULL,
		G_VARIANT_TYPE ("(a{oa{sa{sv}}})"), G_DBUS_CALL_FLAGS_NONE, 5000, NULL, NULL);

	return r != NULL ? g_variant_get_child_value (r, 0) : NULL;
}

/* path of the object under @prefix whose @iface has @prop == @value (a string) */
static char *
find_object (Fx *f, const char *prefix, const char *iface, const char *prop, const char *value,
	     const char *bool_prop)
{
	g_autoptr(GVariant) objs = objects (f);
	GVariantIter it;
	const char *path;
	GVariant *ifaces;

	if (objs == NULL)
		return NULL;
	g_variant_iter_init (&it, objs);
	while (g_variant_iter_next (&it, "{&o@a{sa{sv}}}", &path, &ifaces)) {
		g_autoptr(GVariant) props = g_variant_lookup_value (ifaces, iface, NULL);
		const char *s = NULL;
		gboolean b = TRUE;

		g_variant_unref (ifaces);
		if (props == NULL || !g_str_has_prefix (path, prefix))
			continue;
		if (!g_variant_lookup (props, prop, "&s", &s) || g_ascii_strcasecmp (s, value) != 0)
			continue;
		if (bool_prop != NULL && (!g_variant_lookup (props, bool_prop, "b", &b) || !b))
			continue;
		return g_strdup (path);
	}
	return NULL;
}

static char *
wait_object (Fx *f, const char *prefix, const char *iface, const char *prop, const char *value,
	     const char *bool_prop)
{
	gint64 end = g_get_monotonic_time () + WAIT_SECONDS * G_USEC_PER_SEC;

	while (g_get_monotonic_time () < end) {
		char *p = find_object (f, prefix, iface, prop, value, bool_prop);

		if (p != NULL)
			return p;
		wait_poke (f, 200);
	}
	return NULL;
}

/* every child, so a failed setup (no teardown) still leaves nothing behind */
static GPid children[16];

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

static void
remember (GPid pid)
{
	for (guint i = 0; i < G_N_ELEMENTS (children); i++) {
		if (children[i] <= 0) {
			children[i] = pid;
			return;
		}
	}
}

static void
forget (GPid pid)
{
	for (guint i = 0; i < G_N_ELEMENTS (children); i++) {
		if (children[i] == pid)
			children[i] = 0;
	}
}

static GPid
spawn (char **argv, int *stdout_fd)
{
	GPid pid = 0;
	g_autoptr(GError) error = NULL;

	if (!g_spawn_async_with_pipes (NULL, argv, NULL, G_SPAWN_DO_NOT_REAP_CHILD | G_SPAWN_SEARCH_PATH, NULL, NULL, &pid,
				       NULL, stdout_fd, NULL, &error)) {
		print_error ("spawn %s: %s\n", argv[0], error->message);
		fail ();
	}
	remember (pid);
	return pid;
}

static void
stop (GPid *pid)
{
	if (*pid > 0) {
		forget (*pid);
		kill (*pid, SIGTERM);
		waitpid (*pid, NULL, 0);
		g_spawn_close_pid (*pid);
		*pid = 0;
	}
}

static void
start_wearable (Fx *f, const char *extra)
{
	g_autofree char *state = g_build_filename (f->dir, "state", NULL);
	/* --no-acquire: bgsync-sim calls the app's AcquireWrite/AcquireNotify
	 * with an extra fd argument where bluetoothd sends only the options, so
	 * the app side goes through WriteValue/notify here; the central side
	 * still uses AcquireWrite/AcquireNotify */
	char *argv[] = { (char *) WEARABLE_BIN, (char *) "--bus", f->address, (char *) "--adapter", (char *) "hci1",
			 (char *) "--state-dir", state, (char *) "--reboot-seconds", (char *) "1",
			 (char *) "--no-acquire", g_getenv ("BGS_TEST_VERBOSE") ? (char *) "-v" : (char *) "--battery=87",
			 (char *) extra, NULL };

	f->wear_pid = spawn (argv, NULL);
}

static int
setup (void **state)
{
	Fx *f = g_new0 (Fx, 1);
	g_autofree char *conf = NULL;
	g_autofree char *conf_path = NULL;
	g_autoptr(GError) error = NULL;
	int out = -1;
	char buf[512];
	ssize_t n;
	char *bus_argv[] = { (char *) "dbus-daemon", NULL, (char *) "--nofork", (char *) "--print-address=1", NULL };
	char *sim_argv[] = { (char *) SIM_BIN, (char *) "--bus", NULL, (char *) "-a", (char *) "2",
			     g_getenv ("BGS_TEST_VERBOSE") ? (char *) "-v" : NULL, NULL };

	f->dir = g_dir_make_tmp ("smp-sim-XXXXXX", NULL);
	conf_path = g_build_filename (f->dir, "bus.conf", NULL);
	conf = g_strdup_printf (
		"<!DOCTYPE busconfig PUBLIC \"-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN\" "
		"\"http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd\">"
		"<busconfig><type>session</type><listen>unix:dir=%s</listen>"
		"<policy context='default'><allow send_destination='*'/><allow receive_sender='*'/><allow own='*'/></policy>"
		"</busconfig>", f->dir);
	assert_true (g_file_set_contents (conf_path, conf, -1, NULL));
	bus_argv[1] = g_strdup_printf ("--config-file=%s", conf_path);
	f->bus_pid = spawn (bus_argv, &out);
	g_free (bus_argv[1]);
	/* the daemon prints its address once it listens */
	n = read (out, buf, sizeof (buf) - 1);
	close (out);
	assert_true (n > 0);
	buf[n] = '\0';
	g_strstrip (buf);
	f->address = g_strdup (buf);

	sim_argv[2] = f->address;
	f->sim_pid = spawn (sim_argv, NULL);
	f->conn = g_dbus_connection_new_for_address_sync (f->address,
		G_DBUS_CONNECTION_FLAGS_AUTHENTICATION_CLIENT | G_DBUS_CONNECTION_FLAGS_MESSAGE_BUS_CONNECTION,
		NULL, NULL, &error);
	assert_non_null (f->conn);
	f->sub = g_dbus_connection_signal_subscribe (f->conn, NULL, NULL, NULL, NULL, NULL,
						     G_DBUS_SIGNAL_FLAGS_NONE, on_signal, f, NULL);
	/* wait for org.bluez to serve its objects */
	{
		gint64 end = g_get_monotonic_time () + WAIT_SECONDS * G_USEC_PER_SEC;

		for (;;) {
			g_autoptr(GVariant) o = objects (f);

			if (o != NULL && g_variant_n_children (o) >= 2)
				break;
			assert_true (g_get_monotonic_time () < end);
			wait_poke (f, 100);
		}
	}
	f->clock = bgs_clock_new_real ();
	f->client = bgs_smp_client_new (f->clock, BGS_SMP_V2);
	bgs_smp_client_set_max_frame (f->client, 512);
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
	g_dbus_connection_signal_unsubscribe (f->conn, f->sub);
	g_object_unref (f->conn);
	stop (&f->wear_pid);
	stop (&f->sim_pid);
	stop (&f->bus_pid);
	bgs_clock_unref (f->clock);
	rm_rf (f->dir);
	g_free (f->dir);
	g_free (f->address);
	g_free (f);
	return 0;
}

static void
call_void (Fx *f, const char *path, const char *iface, const char *method, GVariant *args)
{
	g_autoptr(GError) error = NULL;
	g_autoptr(GVariant) r = g_dbus_connection_call_sync (f->conn, "org.bluez", path, iface, method,
							      args, NULL, G_DBUS_CALL_FLAGS_NONE, 20000,
							      NULL, &error);

	if (r == NULL) {
		print_error ("%s.%s on %s: %s\n", iface, method, path, error->message);
		fail ();
	}
}

static int
acquire (Fx *f, const char *chrc, const char *method, guint16 *mtu)
{
	g_autoptr(GUnixFDList) fds = NULL;
	g_autoptr(GError) error = NULL;
	g_autoptr(GVariant) r = g_dbus_connection_call_with_unix_fd_list_sync (f->conn, "org.bluez", chrc,
		"org.bluez.GattCharacteristic1", method, g_variant_new ("(a{sv})", NULL),
		G_VARIANT_TYPE ("(hq)"), G_DBUS_CALL_FLAGS_NONE, 10000, NULL, &fds, NULL, &error);
	gint32 idx = 0;

	if (r == NULL) {
		print_error ("%s: %s\n", method, error->message);
		fail ();
	}
	g_variant_get (r, "(hq)", &idx, mtu);
	return g_unix_fd_list_get (fds, idx, NULL);
}

/* the simulator's radio model says @addr advertises (the wearable has
 * registered again after its reset) */
static gboolean
peer_visible (Fx *f, const char *addr)
{
	g_autoptr(GVariant) r = g_dbus_connection_call_sync (f->conn, "org.bgsync.Sim", "/org/bgsync/sim",
		"org.bgsync.Sim1", "ListDevices", NULL, G_VARIANT_TYPE ("(aa{sv})"),
		G_DBUS_CALL_FLAGS_NONE, 5000, NULL, NULL);
	g_autoptr(GVariantIter) it = NULL;
	GVariant *d;
	gboolean found = FALSE;

	if (r == NULL)
		return FALSE;
	g_variant_get (r, "(aa{sv})", &it);
	while ((d = g_variant_iter_next_value (it)) != NULL) {
		const char *a = NULL;
		gboolean visible = FALSE, rebooting = TRUE;

		g_variant_lookup (d, "address", "&s", &a);
		g_variant_lookup (d, "visible", "b", &visible);
		g_variant_lookup (d, "rebooting", "b", &rebooting);
		if (g_strcmp0 (a, addr) == 0 && visible && !rebooting)
			found = TRUE;
		g_variant_unref (d);
	}
	return found;
}

/* discover @addr from hci0, connect, resolve, acquire the SMP fds */
static void
connect_device (Fx *f, const char *addr)
{
	g_autofree char *dev = NULL;
	g_autofree char *chrc = NULL;
	guint16 wmtu = 0, nmtu = 0;
	int wfd, nfd;
	g_autoptr(GError) error = NULL;

	gint64 end = g_get_monotonic_time () + WAIT_SECONDS * G_USEC_PER_SEC;

	while (!peer_visible (f, addr)) {
		assert_true (g_get_monotonic_time () < end);
		wait_poke (f, 100);
	}
	call_void (f, "/org/bluez/hci0", "org.freedesktop.DBus.Properties", "Set",
		   g_variant_new ("(ssv)", "org.bluez.Adapter1", "Powered", g_variant_new_boolean (TRUE)));
	g_dbus_connection_call_sync (f->conn, "org.bluez", "/org/bluez/hci0", "org.bluez.Adapter1",
				     "StartDiscovery", NULL, NULL, G_DBUS_CALL_FLAGS_NONE, 5000, NULL, NULL);
	dev = wait_object (f, "/org/bluez/hci0/", "org.bluez.Device1", "Address", addr, NULL);
	assert_non_null (dev);
	g_dbus_connection_call_sync (f->conn, "org.bluez", "/org/bluez/hci0", "org.bluez.Adapter1",
				     "StopDiscovery", NULL, NULL, G_DBUS_CALL_FLAGS_NONE, 5000, NULL, NULL);
	call_void (f, dev, "org.bluez.Device1", "Connect", NULL);
	chrc = wait_object (f, dev, "org.bluez.GattCharacteristic1", "UUID", SMP_CHRC_UUID, NULL);
	assert_non_null (chrc);
	wfd = acquire (f, chrc, "AcquireWrite", &wmtu);
	nfd = acquire (f, chrc, "AcquireNotify", &nmtu);
	assert_true (wfd >= 0 && nfd >= 0);
	assert_true (bgs_smp_client_attach_fds (f->client, wfd, nfd, MIN (wmtu, nmtu), &error));
}

static gboolean
wait_done (Fx *f)
{
	gboolean hit = FALSE;
	guint id = g_timeout_add_seconds (WAIT_SECONDS * 2, on_limit, &hit);

	while (!f->done && !hit)
		g_main_context_iteration (NULL, TRUE);
	if (!hit)
		g_source_remove (id);
	return f->done;
}

static void
call_cb (GObject *source, GAsyncResult *result, gpointer user_data)
{
	Fx *f = user_data;

	f->resp = bgs_smp_client_call_finish (f->client, result, &f->error);
	f->done = TRUE;
}

static BgsSmpResponse *
call (Fx *f, guint8 op, guint16 group, guint8 id, GBytes *body)
{
	f->done = FALSE;
	g_clear_error (&f->error);
	bgs_smp_client_call_async (f->client, op, group, id, body, NULL, call_cb, f);
	assert_true (wait_done (f));
	if (f->error != NULL)
		print_error ("SMP call: %s\n", f->error->message);
	assert_null (f->error);
	return g_steal_pointer (&f->resp);
}

static GArray *
read_state (Fx *f)
{
	g_autoptr(BgsSmpResponse) r = call (f, BGS_SMP_OP_READ, BGS_SMP_GROUP_IMAGE, BGS_SMP_IMAGE_STATE, NULL);
	GArray *slots;

	assert_true (bgs_smp_body_check (r->body, NULL));
	slots = bgs_smp_parse_image_state (r->body, NULL);
	assert_non_null (slots);
	return slots;
}

static void
upload_cb (GObject *source, GAsyncResult *result, gpointer user_data)
{
	Fx *f = user_data;

	f->ok = bgs_smp_client_upload_image_finish (f->client, result, &f->error);
	f->done = TRUE;
}

static void
params_cb (GObject *source, GAsyncResult *result, gpointer user_data)
{
	Fx *f = user_data;
	gboolean supported = FALSE;

	f->ok = bgs_smp_client_query_params_finish (f->client, result, &supported, &f->error) &&
		supported;
	f->done = TRUE;
}

/* the wearable's SMP buffers (OS command 6): 512-byte frames, 4 buffers,
 * so 3 requests in flight through BlueZ's API */
static void
query_params (Fx *f)
{
	f->done = FALSE;
	f->ok = FALSE;
	g_clear_error (&f->error);
	bgs_smp_client_query_params_async (f->client, 0, NULL, params_cb, f);
	assert_true (wait_done (f));
	assert_null (f->error);
	assert_true (f->ok);
	assert_int_equal (bgs_smp_client_get_window (f->client), 3);
}

static void
update_through_reboot (Fx *f, gboolean address_change, const char *addr_after)
{
	guint8 hash[32];
	g_autoptr(GByteArray) img = smp_test_image_new (1, 1, 0, 0, 400 * 1024 - 72, 11, FALSE, hash);
	g_autoptr(GBytes) bytes = g_bytes_new (img->data, img->len);
	g_autoptr(GArray) before = NULL;
	g_autoptr(GArray) after = NULL;
	g_autoptr(GArray) final = NULL;

	start_wearable (f, address_change ? "--address-change" : NULL);
	connect_device (f, "00:AA:01:00:00:01");
	before = read_state (f);
	assert_string_equal (g_array_index (before, BgsSmpImageSlot, 0).version, "1.0.0");
	query_params (f);

	f->done = FALSE;
	bgs_smp_client_upload_image_async (f->client, bytes, 0, FALSE, NULL, NULL, NULL, upload_cb, f);
	assert_true (wait_done (f));
	if (f->error != NULL)
		print_error ("upload: %s\n", f->error->message);
	assert_true (f->ok);
	{
		BgsSmpClientStats st;

		bgs_smp_client_get_stats (f->client, &st);
		assert_int_equal (st.max_inflight, 3);
	}

	{
		g_autoptr(GBytes) body = bgs_smp_build_image_state_set (hash, FALSE);
		g_autoptr(BgsSmpResponse) r = call (f, BGS_SMP_OP_WRITE, BGS_SMP_GROUP_IMAGE,
						    BGS_SMP_IMAGE_STATE, body);

		assert_true (bgs_smp_body_check (r->body, NULL));
	}
	{
		g_autoptr(GBytes) body = bgs_smp_build_reset (FALSE);
		g_autoptr(BgsSmpResponse) r = call (f, BGS_SMP_OP_WRITE, BGS_SMP_GROUP_OS,
						    BGS_SMP_OS_RESET, body);

		assert_true (bgs_smp_body_check (r->body, NULL));
	}
	/* the device drops the link: the acquired sockets hang up */
	{
		gboolean hit = FALSE;
		guint id = g_timeout_add_seconds (WAIT_SECONDS, on_limit, &hit);

		while (bgs_smp_client_is_attached (f->client) && !hit)
			g_main_context_iteration (NULL, TRUE);
		if (!hit)
			g_source_remove (id);
		assert_false (bgs_smp_client_is_attached (f->client));
	}
	connect_device (f, addr_after);
	after = read_state (f);
	assert_string_equal (g_array_index (after, BgsSmpImageSlot, 0).version, "1.1.0");
	assert_false (g_array_index (after, BgsSmpImageSlot, 0).confirmed);
	{
		g_autoptr(GBytes) body = bgs_smp_build_image_state_set (NULL, TRUE);
		g_autoptr(BgsSmpResponse) r = call (f, BGS_SMP_OP_WRITE, BGS_SMP_GROUP_IMAGE,
						    BGS_SMP_IMAGE_STATE, body);

		assert_true (bgs_smp_body_check (r->body, NULL));
	}
	final = read_state (f);
	assert_true (g_array_index (final, BgsSmpImageSlot, 0).confirmed);
	assert_memory_equal (g_array_index (final, BgsSmpImageSlot, 0).hash, hash, 32);
}

static void
test_update (void **state)
{
	update_through_reboot (*state, FALSE, "00:AA:01:00:00:01");
}

static void
test_update_address_change (void **state)
{
	update_through_reboot (*state, TRUE, "00:AA:01:00:00:02");
}

static void
upload (Fx *f, GBytes *bytes)
{
	f->done = FALSE;
	f->ok = FALSE;
	g_clear_error (&f->error);
	bgs_smp_client_upload_image_async (f->client, bytes, 0, FALSE, NULL, NULL, NULL, upload_cb, f);
	assert_true (wait_done (f));
}

static void
drop_after_half (guint64 done, guint64 total, gpointer user_data)
{
	Fx *f = user_data;
	g_autoptr(GVariant) r = NULL;

	if (done < total / 2 || f->dropped)
		return;
	f->dropped = TRUE;
	r = g_dbus_connection_call_sync (f->conn, "org.bgsync.Sim", "/org/bgsync/sim", "org.bgsync.Sim1",
					 "DropLink", g_variant_new ("(s)", "00:AA:01:00:00:01"), NULL,
					 G_DBUS_CALL_FLAGS_NONE, 5000, NULL, NULL);
	assert_non_null (r);
}

/* the link drops mid-upload (simulator DropLink): after reconnecting, the
 * same upload resumes at the device's offset */
static void
test_link_lost_resume (void **state)
{
	Fx *f = *state;
	g_autoptr(GByteArray) img = smp_test_image_new (1, 3, 0, 0, 200 * 1024, 13, FALSE, NULL);
	g_autoptr(GBytes) bytes = g_bytes_new (img->data, img->len);
	BgsSmpClientStats before, after;

	start_wearable (f, NULL);
	connect_device (f, "00:AA:01:00:00:01");
	query_params (f);
	f->done = FALSE;
	bgs_smp_client_upload_image_async (f->client, bytes, 0, FALSE, drop_after_half, f, NULL,
					   upload_cb, f);
	assert_true (wait_done (f));
	assert_false (f->ok);
	assert_true (g_error_matches (f->error, BGS_ERROR, BGS_ERROR_IO));
	connect_device (f, "00:AA:01:00:00:01");
	bgs_smp_client_get_stats (f->client, &before);
	upload (f, bytes);
	if (f->error != NULL)
		print_error ("upload: %s\n", f->error->message);
	assert_true (f->ok);
	bgs_smp_client_get_stats (f->client, &after);
	/* about half went over the air the second time, not all of it */
	assert_true (after.bytes_sent - before.bytes_sent < img->len * 7 / 10);
}

/* --reject-images: the upload fails with the device's reason */
static void
test_reject (void **state)
{
	Fx *f = *state;
	g_autoptr(GByteArray) img = smp_test_image_new (1, 3, 0, 0, 4096, 13, FALSE, NULL);
	g_autoptr(GBytes) bytes = g_bytes_new (img->data, img->len);

	start_wearable (f, "--reject-images");
	connect_device (f, "00:AA:01:00:00:01");
	upload (f, bytes);
	assert_false (f->ok);
	assert_non_null (strstr (f->error->message, "IMG_MGMT_RET_RC_UNKNOWN"));
}

static void
reset_cb (GObject *source, GAsyncResult *result, gpointer user_data)
{
	Fx *f = user_data;

	f->ok = bgs_smp_client_reset_finish (f->client, result, &f->error);
	f->done = TRUE;
}

/* --revert-on-test: after the reset the device runs the old image */
static void
test_revert (void **state)
{
	Fx *f = *state;
	guint8 hash[32];
	g_autoptr(GByteArray) img = smp_test_image_new (2, 0, 0, 0, 8192, 13, FALSE, hash);
	g_autoptr(GBytes) bytes = g_bytes_new (img->data, img->len);
	g_autoptr(GArray) after = NULL;

	start_wearable (f, "--revert-on-test");
	connect_device (f, "00:AA:01:00:00:01");
	upload (f, bytes);
	assert_true (f->ok);
	{
		g_autoptr(GBytes) body = bgs_smp_build_image_state_set (hash, FALSE);
		g_autoptr(BgsSmpResponse) r = call (f, BGS_SMP_OP_WRITE, BGS_SMP_GROUP_IMAGE,
						    BGS_SMP_IMAGE_STATE, body);

		assert_true (bgs_smp_body_check (r->body, NULL));
	}
	f->done = FALSE;
	bgs_smp_client_reset_async (f->client, NULL, reset_cb, f);
	assert_true (wait_done (f));
	assert_true (f->ok);
	{
		gboolean hit = FALSE;
		guint id = g_timeout_add_seconds (WAIT_SECONDS, on_limit, &hit);

		while (bgs_smp_client_is_attached (f->client) && !hit)
			g_main_context_iteration (NULL, TRUE);
		if (!hit)
			g_source_remove (id);
	}
	connect_device (f, "00:AA:01:00:00:01");
	after = read_state (f);
	assert_string_equal (g_array_index (after, BgsSmpImageSlot, 0).version, "1.0.0");
	assert_true (g_array_index (after, BgsSmpImageSlot, 0).confirmed);
}

int
main (void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown (test_update, setup, teardown),
		cmocka_unit_test_setup_teardown (test_update_address_change, setup, teardown),
		cmocka_unit_test_setup_teardown (test_link_lost_resume, setup, teardown),
		cmocka_unit_test_setup_teardown (test_reject, setup, teardown),
		cmocka_unit_test_setup_teardown (test_revert, setup, teardown),
	};

	g_autofree char *daemon = g_find_program_in_path ("dbus-daemon");

	if (!g_file_test (SIM_BIN, G_FILE_TEST_IS_EXECUTABLE) || daemon == NULL) {
		printf ("skipping: needs bgsync-sim and dbus-daemon\n");
		return 77;
	}
	{
		int rc = cmocka_run_group_tests (tests, NULL, NULL);

		kill_children ();
		return rc;
	}
}
