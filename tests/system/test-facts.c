/* test-facts.c: the logind and UPower monitors against python3-dbusmock's
 * templates on a private system bus (our own dbus-daemon; the test points
 * DBUS_SYSTEM_BUS_ADDRESS at it). Every wait is for an event with a bounded
 * deadline; nothing sleeps. Run one test: test-facts <name-glob>. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <errno.h>
#include <signal.h>
#include <sys/wait.h>

#include <gio/gio.h>
#include <gio/gunixinputstream.h>
#include <glib/gstdio.h>

#include "bgs-power-monitor.h"
#include "bgs-session-monitor.h"

#define TIMEOUT_MSEC 10000
#define LOGIND "org.freedesktop.login1"
#define LOGIND_PATH "/org/freedesktop/login1"
#define SESSION_IFACE "org.freedesktop.login1.Session"
#define UPOWER "org.freedesktop.UPower"
#define UPOWER_PATH "/org/freedesktop/UPower"
#define DISPLAY_PATH "/org/freedesktop/UPower/devices/DisplayDevice"
#define MOCK_IFACE "org.freedesktop.DBus.Mock"

static struct {
	char *tmpdir;
	GPid bus_pid;
	GDBusConnection *bus;
	GPid logind_pid;
	GPid upower_pid;
} env;

/* ---- waiting ---- */

static gboolean
on_deadline (gpointer data)
{
	*(gboolean *) data = TRUE;
	return G_SOURCE_REMOVE;
}

/* iterate the main context until @cond holds or TIMEOUT_MSEC passed */
#define WAIT_UNTIL(cond) do { \
	gboolean timed_out_ = FALSE; \
	guint deadline_id_ = g_timeout_add (TIMEOUT_MSEC, on_deadline, &timed_out_); \
	while (!(cond) && !timed_out_) \
		g_main_context_iteration (NULL, TRUE); \
	if (!timed_out_) \
		g_source_remove (deadline_id_); \
	if (!(cond)) \
		fail_msg ("timed out waiting for %s", #cond); \
} while (0)

/* dispatch whatever is already queued, without blocking */
static void
drain (void)
{
	/* a round trip to the bus: signals sent before its reply are queued */
	g_autoptr(GVariant) r = g_dbus_connection_call_sync (env.bus, "org.freedesktop.DBus",
							     "/org/freedesktop/DBus",
							     "org.freedesktop.DBus", "GetId",
							     NULL, NULL, 0, TIMEOUT_MSEC, NULL, NULL);
	while (g_main_context_iteration (NULL, FALSE))
		;
}

typedef struct {
	gboolean owned;
	gboolean known;
} NameState;

static void
on_name_appeared (GDBusConnection *c, const char *name, const char *owner, gpointer data)
{
	NameState *s = data;

	s->known = TRUE;
	s->owned = TRUE;
}

static void
on_name_vanished (GDBusConnection *c, const char *name, gpointer data)
{
	NameState *s = data;

	s->known = TRUE;
	s->owned = FALSE;
}

static void
wait_name (const char *name, gboolean owned)
{
	NameState s = { FALSE, FALSE };
	guint id = g_bus_watch_name_on_connection (env.bus, name, G_BUS_NAME_WATCHER_FLAGS_NONE,
						   on_name_appeared, on_name_vanished, &s, NULL);

	WAIT_UNTIL (s.known && s.owned == owned);
	g_bus_unwatch_name (id);
}

/* ---- processes ---- */

static GPid
spawn (const char *const *argv, int *stdout_fd)
{
	g_autoptr(GError) error = NULL;
	GPid pid;

	if (!g_spawn_async_with_pipes (NULL, (char **) argv, NULL,
				       G_SPAWN_DO_NOT_REAP_CHILD, NULL, NULL, &pid, NULL,
				       stdout_fd, NULL, &error))
		fail_msg ("cannot run %s: %s", argv[0], error->message);
	return pid;
}

static void
stop (GPid *pid)
{
	if (*pid == 0)
		return;
	kill (*pid, SIGTERM);
	while (waitpid (*pid, NULL, 0) < 0 && errno == EINTR)
		;
	*pid = 0;
}

static GPid
start_mock (const char *template, const char *name)
{
	const char *argv[] = { PYTHON3, "-m", "dbusmock", "--system", "--template", template, NULL };
	GPid pid = spawn (argv, NULL);

	wait_name (name, TRUE);
	return pid;
}

static void
stop_mock (GPid *pid, const char *name)
{
	if (*pid == 0)
		return;
	stop (pid);
	wait_name (name, FALSE);
}

static GVariant *
call (const char *dest, const char *path, const char *iface, const char *method, GVariant *args)
{
	g_autoptr(GError) error = NULL;
	GVariant *reply = g_dbus_connection_call_sync (env.bus, dest, path, iface, method, args,
						       NULL, G_DBUS_CALL_FLAGS_NONE, TIMEOUT_MSEC,
						       NULL, &error);

	if (reply == NULL)
		fail_msg ("%s.%s on %s: %s", iface, method, path, error->message);
	return reply;
}

static void
set_prop (const char *dest, const char *path, const char *iface, const char *prop, GVariant *value)
{
	g_autoptr(GVariant) r = call (dest, path, "org.freedesktop.DBus.Properties", "Set",
				      g_variant_new ("(ssv)", iface, prop, value));
}

static void
mock_reset (const char *dest, const char *path)
{
	g_autoptr(GVariant) r = call (dest, path, MOCK_IFACE, "Reset", NULL);
}

/* ---- logind helpers ---- */

static char *
add_session (const char *id, const char *seat, guint32 uid, const char *user, gboolean active)
{
	g_autoptr(GVariant) r = call (LOGIND, LOGIND_PATH, MOCK_IFACE, "AddSession",
				      g_variant_new ("(ssusb)", id, seat, uid, user, active));
	char *path;

	g_variant_get (r, "(s)", &path);
	return path;
}

static void
set_locked_hint (const char *session_path, gboolean locked)
{
	g_autoptr(GVariant) r = call (LOGIND, session_path, SESSION_IFACE, "SetLockedHint",
				      g_variant_new ("(b)", locked));
}

/* the mock's AddSession is silent; logind announces new sessions */
static void
emit_manager_signal (const char *name, const char *id, const char *path)
{
	GVariantBuilder args;
	g_autoptr(GVariant) r = NULL;

	g_variant_builder_init (&args, G_VARIANT_TYPE ("av"));
	g_variant_builder_add (&args, "v", g_variant_new_string (id));
	g_variant_builder_add (&args, "v", g_variant_new_object_path (path));
	r = call (LOGIND, LOGIND_PATH, MOCK_IFACE, "EmitSignal",
		  g_variant_new ("(sssav)", "org.freedesktop.login1.Manager", name, "so", &args));
}

typedef struct {
	gboolean done;
	gboolean ok;
	gboolean foreground;
	GError *error;
} CheckResult;

static void
on_checked (GObject *source, GAsyncResult *res, gpointer data)
{
	CheckResult *r = data;

	r->ok = bgs_session_monitor_check_foreground_finish (BGS_SESSION_MONITOR (source), res,
							     &r->foreground, &r->error);
	r->done = TRUE;
}

static gboolean
is_foreground (BgsSessionMonitor *m, guint32 uid)
{
	CheckResult r = { 0 };

	bgs_session_monitor_check_foreground_async (m, uid, NULL, on_checked, &r);
	WAIT_UNTIL (r.done);
	if (!r.ok)
		fail_msg ("check failed: %s", r.error->message);
	return r.foreground;
}

static void
on_count (gpointer instance, gpointer data)
{
	(*(guint *) data)++;
}

typedef struct {
	guint count;
	guint uid;
	char *id;
} Removed;

static void
on_session_removed (BgsSessionMonitor *m, guint uid, const char *id, gpointer data)
{
	Removed *r = data;

	r->count++;
	r->uid = uid;
	g_free (r->id);
	r->id = g_strdup (id);
}

/* ---- power helpers ---- */

static void
on_ready (GObject *source, GAsyncResult *res, gpointer data)
{
	g_autoptr(GError) error = NULL;

	assert_true (bgs_power_monitor_ready_finish (BGS_POWER_MONITOR (source), res, &error));
	*(gboolean *) data = TRUE;
}

static BgsPowerMonitor *
power_monitor_ready (GDBusConnection *bus)
{
	BgsPowerMonitor *m = bgs_power_monitor_new (bus);
	gboolean ready = FALSE;

	bgs_power_monitor_ready_async (m, NULL, on_ready, &ready);
	WAIT_UNTIL (ready);
	assert_true (bgs_power_monitor_is_ready (m));
	return m;
}

static gboolean
power_is (BgsPowerMonitor *m, gboolean on_battery, gdouble percent)
{
	gboolean b;
	gdouble p;

	bgs_power_monitor_get_state (m, &b, &p);
	return b == on_battery && p > percent - 0.001 && p < percent + 0.001;
}

static void
setup_battery (gdouble percent, gboolean on_battery)
{
	/* type 2 battery, state 2 discharging */
	g_autoptr(GVariant) r = call (UPOWER, UPOWER_PATH, MOCK_IFACE, "SetupDisplayDevice",
				      g_variant_new ("(uuddddxxbsu)", 2, on_battery ? 2 : 1,
						     percent, 10.0, 50.0, 5.0,
						     (gint64) 3600, (gint64) 0, TRUE, "", 1));

	set_prop (UPOWER, UPOWER_PATH, UPOWER, "OnBattery", g_variant_new_boolean (on_battery));
}

/* ---- no services on the bus ---- */

static void
test_logind_absent (void **state)
{
	/* NULL: the monitor gets the system bus itself, like the daemon */
	g_autoptr(BgsSessionMonitor) m = bgs_session_monitor_new (NULL);
	guint changed = 0;

	assert_false (is_foreground (m, 1000));
	assert_false (is_foreground (m, 0));

	g_signal_connect (m, "changed", G_CALLBACK (on_count), &changed);
	bgs_session_monitor_watch (m);
	WAIT_UNTIL (bgs_session_monitor_is_loaded (m));
	assert_false (bgs_session_monitor_get_user_present (m));
	assert_int_equal (changed, 1);
	bgs_session_monitor_unwatch (m);
	assert_false (bgs_session_monitor_is_loaded (m));
}

static void
test_upower_absent_then_appears (void **state)
{
	g_autoptr(BgsPowerMonitor) m = power_monitor_ready (NULL);
	guint changed = 0;

	assert_true (power_is (m, FALSE, 100.0));
	assert_int_equal (changed, 0);

	/* UPower starting later (on battery at 20 %) is picked up: "changed" */
	g_signal_connect (m, "changed", G_CALLBACK (on_count), &changed);
	env.upower_pid = start_mock ("upower", UPOWER);
	setup_battery (20.0, TRUE);
	WAIT_UNTIL (power_is (m, TRUE, 20.0));
	assert_true (changed >= 1);
	stop_mock (&env.upower_pid, UPOWER);
	WAIT_UNTIL (power_is (m, FALSE, 100.0));
}

/* ---- logind ---- */

static int
logind_group_setup (void **state)
{
	env.logind_pid = start_mock ("logind", LOGIND);
	return 0;
}

static int
logind_group_teardown (void **state)
{
	stop_mock (&env.logind_pid, LOGIND);
	return 0;
}

static int
logind_setup (void **state)
{
	g_autoptr(GVariant) r = NULL;

	mock_reset (LOGIND, LOGIND_PATH);
	/* the template's GetUser adds a uint to a str (dbusmock 0.28); replace
	 * it with logind's behaviour, NoSuchUser included */
	r = call (LOGIND, LOGIND_PATH, MOCK_IFACE, "AddMethod",
		  g_variant_new ("(sssss)", "org.freedesktop.login1.Manager", "GetUser", "u", "o",
				 "p = '/org/freedesktop/login1/user/%d' % args[0]\n"
				 "if p not in objects:\n"
				 "    raise dbus.exceptions.DBusException('no such user',"
				 " name='org.freedesktop.login1.NoSuchUser')\n"
				 "ret = dbus.ObjectPath(p)\n"));
	return 0;
}

static void
test_fg_active_unlocked (void **state)
{
	g_autoptr(BgsSessionMonitor) m = bgs_session_monitor_new (env.bus);
	g_autofree char *s = add_session ("c1", "seat0", 1000, "alice", TRUE);

	assert_true (is_foreground (m, 1000));
	/* only that user */
	assert_false (is_foreground (m, 1001));
}

static void
test_fg_locked (void **state)
{
	g_autoptr(BgsSessionMonitor) m = bgs_session_monitor_new (env.bus);
	g_autofree char *s = add_session ("c1", "seat0", 1000, "alice", TRUE);

	set_locked_hint (s, TRUE);
	assert_false (is_foreground (m, 1000));
	set_locked_hint (s, FALSE);
	assert_true (is_foreground (m, 1000));
}

static void
test_fg_inactive (void **state)
{
	g_autoptr(BgsSessionMonitor) m = bgs_session_monitor_new (env.bus);
	g_autofree char *s = add_session ("c2", "seat0", 1001, "bob", FALSE);

	assert_false (is_foreground (m, 1001));
	set_prop (LOGIND, s, SESSION_IFACE, "Active", g_variant_new_boolean (TRUE));
	assert_true (is_foreground (m, 1001));
}

static void
test_fg_no_seat (void **state)
{
	g_autoptr(BgsSessionMonitor) m = bgs_session_monitor_new (env.bus);
	g_autofree char *s = add_session ("c3", "seat0", 1004, "dave", TRUE);

	assert_true (is_foreground (m, 1004));
	/* an ssh session: active, unlocked, but on no seat */
	set_prop (LOGIND, s, SESSION_IFACE, "Seat", g_variant_new ("(so)", "", "/"));
	assert_false (is_foreground (m, 1004));
}

static void
test_fg_no_session (void **state)
{
	g_autoptr(BgsSessionMonitor) m = bgs_session_monitor_new (env.bus);
	g_autoptr(GVariant) r = call (LOGIND, LOGIND_PATH, MOCK_IFACE, "AddUser",
				      g_variant_new ("(usb)", 1002, "carol", TRUE));

	assert_false (is_foreground (m, 1002));
	/* a uid logind does not know at all */
	assert_false (is_foreground (m, 4242));
}

static void
test_fg_any_session_counts (void **state)
{
	g_autoptr(BgsSessionMonitor) m = bgs_session_monitor_new (env.bus);
	g_autofree char *s1 = add_session ("c4", "seat0", 1005, "erin", FALSE);
	g_autofree char *s2 = add_session ("c5", "seat1", 1005, "erin", TRUE);

	assert_true (is_foreground (m, 1005));
	set_locked_hint (s2, TRUE);
	assert_false (is_foreground (m, 1005));
}

static void
test_fg_canceled (void **state)
{
	g_autoptr(BgsSessionMonitor) m = bgs_session_monitor_new (env.bus);
	g_autoptr(GCancellable) cancellable = g_cancellable_new ();
	g_autofree char *s = add_session ("c1", "seat0", 1000, "alice", TRUE);
	CheckResult r = { 0 };

	g_cancellable_cancel (cancellable);
	bgs_session_monitor_check_foreground_async (m, 1000, cancellable, on_checked, &r);
	WAIT_UNTIL (r.done);
	assert_false (r.ok);
	assert_true (g_error_matches (r.error, G_IO_ERROR, G_IO_ERROR_CANCELLED));
	g_clear_error (&r.error);
}

static void
test_user_present (void **state)
{
	g_autoptr(BgsSessionMonitor) m = bgs_session_monitor_new (env.bus);
	g_autofree char *s = NULL;
	guint changed = 0;

	g_signal_connect (m, "changed", G_CALLBACK (on_count), &changed);
	assert_false (bgs_session_monitor_get_user_present (m));
	bgs_session_monitor_watch (m);
	WAIT_UNTIL (bgs_session_monitor_is_loaded (m));
	assert_false (bgs_session_monitor_get_user_present (m));
	assert_int_equal (changed, 1);

	/* a user logs in on a seat */
	s = add_session ("c1", "seat0", 1000, "alice", TRUE);
	emit_manager_signal ("SessionNew", "c1", s);
	WAIT_UNTIL (changed == 2);
	assert_true (bgs_session_monitor_get_user_present (m));

	/* locks the screen */
	set_locked_hint (s, TRUE);
	WAIT_UNTIL (changed == 3);
	assert_false (bgs_session_monitor_get_user_present (m));

	/* unlocks */
	set_locked_hint (s, FALSE);
	WAIT_UNTIL (changed == 4);
	assert_true (bgs_session_monitor_get_user_present (m));

	/* switches to another VT (the session stays but is inactive) */
	set_prop (LOGIND, s, SESSION_IFACE, "Active", g_variant_new_boolean (FALSE));
	WAIT_UNTIL (changed == 5);
	assert_false (bgs_session_monitor_get_user_present (m));

	/* a second watch shares the first; the state stays loaded */
	bgs_session_monitor_watch (m);
	bgs_session_monitor_unwatch (m);
	assert_true (bgs_session_monitor_is_loaded (m));

	/* unwatched: nothing is tracked, no signal */
	bgs_session_monitor_unwatch (m);
	assert_false (bgs_session_monitor_is_loaded (m));
	set_prop (LOGIND, s, SESSION_IFACE, "Active", g_variant_new_boolean (TRUE));
	drain ();
	assert_int_equal (changed, 5);
	assert_false (bgs_session_monitor_get_user_present (m));

	/* watching again loads the current state */
	bgs_session_monitor_watch (m);
	WAIT_UNTIL (changed == 6);
	assert_true (bgs_session_monitor_get_user_present (m));
	bgs_session_monitor_unwatch (m);
}

static void
test_session_removed (void **state)
{
	g_autoptr(BgsSessionMonitor) m = bgs_session_monitor_new (env.bus);
	g_autofree char *s = add_session ("c7", "seat0", 1007, "frank", TRUE);
	Removed removed = { 0 };

	g_signal_connect (m, "session-removed", G_CALLBACK (on_session_removed), &removed);
	bgs_session_monitor_watch (m);
	WAIT_UNTIL (bgs_session_monitor_get_user_present (m));

	emit_manager_signal ("SessionRemoved", "c7", s);
	WAIT_UNTIL (removed.count == 1);
	assert_int_equal (removed.uid, 1007);
	assert_string_equal (removed.id, "c7");

	/* a session the monitor never saw: uid unknown */
	emit_manager_signal ("SessionRemoved", "c99", "/org/freedesktop/login1/session/c99");
	WAIT_UNTIL (removed.count == 2);
	assert_int_equal (removed.uid, G_MAXUINT32);
	bgs_session_monitor_unwatch (m);
	g_free (removed.id);
}

/* last in the group: kills the mock */
static void
test_logind_vanishes (void **state)
{
	g_autoptr(BgsSessionMonitor) m = bgs_session_monitor_new (env.bus);
	g_autofree char *s = add_session ("c1", "seat0", 1000, "alice", TRUE);
	guint changed = 0;

	bgs_session_monitor_watch (m);
	WAIT_UNTIL (bgs_session_monitor_get_user_present (m));
	g_signal_connect (m, "changed", G_CALLBACK (on_count), &changed);
	stop_mock (&env.logind_pid, LOGIND);
	WAIT_UNTIL (changed == 1);
	assert_false (bgs_session_monitor_get_user_present (m));
	assert_false (is_foreground (m, 1000));

	/* and comes back */
	env.logind_pid = start_mock ("logind", LOGIND);
	g_free (add_session ("c1", "seat0", 1000, "alice", TRUE));
	emit_manager_signal ("SessionNew", "c1", "/org/freedesktop/login1/session/c1");
	WAIT_UNTIL (bgs_session_monitor_get_user_present (m));
	bgs_session_monitor_unwatch (m);
}

/* ---- upower ---- */

static int
upower_group_setup (void **state)
{
	env.upower_pid = start_mock ("upower", UPOWER);
	return 0;
}

static int
upower_group_teardown (void **state)
{
	stop_mock (&env.upower_pid, UPOWER);
	return 0;
}

static int
upower_setup (void **state)
{
	mock_reset (UPOWER, UPOWER_PATH);
	return 0;
}

static void
test_power_no_battery (void **state)
{
	/* the template's default: OnBattery false, DisplayDevice not present */
	g_autoptr(BgsPowerMonitor) m = power_monitor_ready (env.bus);
	guint changed = 0;

	assert_true (power_is (m, FALSE, 100.0));

	/* OnBattery without a present battery (a UPS-less desktop's odd
	 * report) still reads as mains */
	g_signal_connect (m, "changed", G_CALLBACK (on_count), &changed);
	set_prop (UPOWER, UPOWER_PATH, UPOWER, "OnBattery", g_variant_new_boolean (TRUE));
	drain ();
	assert_int_equal (changed, 0);
	assert_true (power_is (m, FALSE, 100.0));
}

static void
test_power_battery_20 (void **state)
{
	g_autoptr(BgsPowerMonitor) m = NULL;

	setup_battery (20.0, TRUE);
	m = power_monitor_ready (env.bus);
	assert_true (power_is (m, TRUE, 20.0));
}

static void
test_power_ac_with_battery (void **state)
{
	g_autoptr(BgsPowerMonitor) m = NULL;

	setup_battery (80.0, FALSE);
	m = power_monitor_ready (env.bus);
	assert_true (power_is (m, FALSE, 80.0));
}

static void
test_power_changes (void **state)
{
	g_autoptr(BgsPowerMonitor) m = NULL;
	g_autoptr(GVariant) r = NULL;
	GVariantBuilder props;
	guint changed = 0;

	setup_battery (20.0, TRUE);
	m = power_monitor_ready (env.bus);
	g_signal_connect (m, "changed", G_CALLBACK (on_count), &changed);

	/* plugged in */
	set_prop (UPOWER, UPOWER_PATH, UPOWER, "OnBattery", g_variant_new_boolean (FALSE));
	WAIT_UNTIL (changed == 1);
	assert_true (power_is (m, FALSE, 20.0));

	/* unplugged, and the charge drops */
	set_prop (UPOWER, UPOWER_PATH, UPOWER, "OnBattery", g_variant_new_boolean (TRUE));
	WAIT_UNTIL (changed == 2);
	g_variant_builder_init (&props, G_VARIANT_TYPE ("a{sv}"));
	g_variant_builder_add (&props, "{sv}", "Percentage", g_variant_new_double (15.0));
	r = call (UPOWER, UPOWER_PATH, MOCK_IFACE, "SetDeviceProperties",
		  g_variant_new ("(oa{sv})", DISPLAY_PATH, &props));
	WAIT_UNTIL (changed == 3);
	assert_true (power_is (m, TRUE, 15.0));

	/* a property that does not change the state: no signal */
	set_prop (UPOWER, UPOWER_PATH, UPOWER, "LidIsClosed", g_variant_new_boolean (TRUE));
	drain ();
	assert_int_equal (changed, 3);
}

/* last in the group: kills the mock */
static void
test_upower_vanishes (void **state)
{
	g_autoptr(BgsPowerMonitor) m = NULL;
	guint changed = 0;

	setup_battery (20.0, TRUE);
	m = power_monitor_ready (env.bus);
	g_signal_connect (m, "changed", G_CALLBACK (on_count), &changed);
	stop_mock (&env.upower_pid, UPOWER);
	WAIT_UNTIL (changed == 1);
	assert_true (power_is (m, FALSE, 100.0));
}

/* ---- the private bus ---- */

static gboolean
start_bus (void)
{
	g_autoptr(GError) error = NULL;
	g_autofree char *conf_path = NULL;
	g_autofree char *conf = NULL;
	g_autofree char *flag = NULL;
	g_autoptr(GInputStream) in = NULL;
	g_autoptr(GDataInputStream) data = NULL;
	g_autofree char *address = NULL;
	int out_fd = -1;

	env.tmpdir = g_dir_make_tmp ("bgs-facts-XXXXXX", NULL);
	conf_path = g_build_filename (env.tmpdir, "bus.conf", NULL);
	conf = g_strdup_printf (
		"<!DOCTYPE busconfig PUBLIC \"-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN\"\n"
		" \"http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd\">\n"
		"<busconfig>\n"
		"  <type>system</type>\n"
		"  <listen>unix:path=%s/bus</listen>\n"
		"  <auth>EXTERNAL</auth>\n"
		"  <policy context=\"default\">\n"
		"    <allow user=\"*\"/>\n"
		"    <allow own=\"*\"/>\n"
		"    <allow send_type=\"method_call\"/>\n"
		"    <allow send_type=\"signal\"/>\n"
		"    <allow send_type=\"method_return\"/>\n"
		"    <allow send_type=\"error\"/>\n"
		"    <allow receive_type=\"method_call\"/>\n"
		"    <allow receive_type=\"method_return\"/>\n"
		"    <allow receive_type=\"error\"/>\n"
		"    <allow receive_type=\"signal\"/>\n"
		"  </policy>\n"
		"</busconfig>\n", env.tmpdir);
	assert_true (g_file_set_contents (conf_path, conf, -1, NULL));
	flag = g_strdup_printf ("--config-file=%s", conf_path);
	{
		const char *argv[] = { DBUS_DAEMON, flag, "--nofork", "--print-address=1", NULL };
		env.bus_pid = spawn (argv, &out_fd);
	}
	in = g_unix_input_stream_new (out_fd, TRUE);
	data = g_data_input_stream_new (in);
	address = g_data_input_stream_read_line (data, NULL, NULL, &error);
	if (address == NULL)
		fail_msg ("dbus-daemon printed no address");
	g_setenv ("DBUS_SYSTEM_BUS_ADDRESS", address, TRUE);
	g_unsetenv ("DBUS_SESSION_BUS_ADDRESS");

	env.bus = g_bus_get_sync (G_BUS_TYPE_SYSTEM, NULL, &error);
	if (env.bus == NULL)
		fail_msg ("cannot connect to the private bus: %s", error->message);
	/* we kill this bus at the end; that must not kill the test */
	g_dbus_connection_set_exit_on_close (env.bus, FALSE);
	return TRUE;
}

static void
stop_bus (void)
{
	g_autofree char *conf = g_build_filename (env.tmpdir, "bus.conf", NULL);
	g_autofree char *sock = g_build_filename (env.tmpdir, "bus", NULL);

	stop_mock (&env.logind_pid, LOGIND);
	stop_mock (&env.upower_pid, UPOWER);
	g_clear_object (&env.bus);
	stop (&env.bus_pid);
	g_unlink (conf);
	g_unlink (sock);
	g_rmdir (env.tmpdir);
	g_free (env.tmpdir);
}

int
main (int argc, char **argv)
{
	const struct CMUnitTest absent_tests[] = {
		cmocka_unit_test (test_logind_absent),
		cmocka_unit_test (test_upower_absent_then_appears),
	};
	const struct CMUnitTest logind_tests[] = {
		cmocka_unit_test_setup (test_fg_active_unlocked, logind_setup),
		cmocka_unit_test_setup (test_fg_locked, logind_setup),
		cmocka_unit_test_setup (test_fg_inactive, logind_setup),
		cmocka_unit_test_setup (test_fg_no_seat, logind_setup),
		cmocka_unit_test_setup (test_fg_no_session, logind_setup),
		cmocka_unit_test_setup (test_fg_any_session_counts, logind_setup),
		cmocka_unit_test_setup (test_fg_canceled, logind_setup),
		cmocka_unit_test_setup (test_user_present, logind_setup),
		cmocka_unit_test_setup (test_session_removed, logind_setup),
		cmocka_unit_test_setup (test_logind_vanishes, logind_setup),
	};
	const struct CMUnitTest upower_tests[] = {
		cmocka_unit_test_setup (test_power_no_battery, upower_setup),
		cmocka_unit_test_setup (test_power_battery_20, upower_setup),
		cmocka_unit_test_setup (test_power_ac_with_battery, upower_setup),
		cmocka_unit_test_setup (test_power_changes, upower_setup),
		cmocka_unit_test_setup (test_upower_vanishes, upower_setup),
	};
	int failed = 0;

	if (!g_file_test (DBUS_DAEMON, G_FILE_TEST_IS_EXECUTABLE)) {
		g_printerr ("SKIP: no dbus-daemon\n");
		return 77;
	}
	if (system (PYTHON3 " -c 'import dbusmock' 2>/dev/null") != 0) {
		g_printerr ("SKIP: %s has no dbusmock module\n", PYTHON3);
		return 77;
	}
	if (argc > 1)
		cmocka_set_test_filter (argv[1]);
	start_bus ();
	failed += cmocka_run_group_tests_name ("system-facts-absent", absent_tests, NULL, NULL);
	failed += cmocka_run_group_tests_name ("system-facts-logind", logind_tests,
					       logind_group_setup, logind_group_teardown);
	failed += cmocka_run_group_tests_name ("system-facts-upower", upower_tests,
					       upower_group_setup, upower_group_teardown);
	stop_bus ();
	return failed;
}
