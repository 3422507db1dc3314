/* bgs-simctl.c: bgsync-simctl, a one-shot CLI over org.bgsync.Sim1 */
#include "config.h"

#include <locale.h>
#include <stdio.h>
#include <string.h>

#include <gio/gio.h>

#define SIM_NAME  "org.bgsync.Sim"
#define SIM_PATH  "/org/bgsync/sim"
#define SIM_IFACE "org.bgsync.Sim1"

typedef struct {
	const gchar *name;
	const gchar *args;
	guint min_args;
	guint max_args;
	const gchar *help;
	gint (*run) (GDBusConnection *conn, gchar **argv, guint argc);
} SimctlCommand;

static gboolean opt_json;

static GVariant *
call (GDBusConnection *conn, const gchar *method, GVariant *params, const GVariantType *reply)
{
	g_autoptr(GError) error = NULL;
	GVariant *ret = g_dbus_connection_call_sync (conn, SIM_NAME, SIM_PATH, SIM_IFACE, method,
						     params, reply, G_DBUS_CALL_FLAGS_NONE, 30000,
						     NULL, &error);

	if (ret == NULL) {
		g_autofree gchar *remote = g_dbus_error_get_remote_error (error);
		g_dbus_error_strip_remote_error (error);
		if (opt_json)
			g_print ("{\"error\": {\"name\": \"%s\", \"message\": \"%s\"}}\n",
				 remote != NULL ? remote : "unknown", error->message);
		else
			g_printerr ("bgsync-simctl: %s: %s\n", method, error->message);
	}
	return ret;
}

static gint
done (GVariant *ret)
{
	if (ret == NULL)
		return 1;
	if (opt_json)
		g_print ("{}\n");
	g_variant_unref (ret);
	return 0;
}

static gboolean
parse_bool (const gchar *s, gboolean *out)
{
	if (g_strcmp0 (s, "on") == 0 || g_strcmp0 (s, "yes") == 0 || g_strcmp0 (s, "true") == 0 ||
	    g_strcmp0 (s, "1") == 0) {
		*out = TRUE;
		return TRUE;
	}
	if (g_strcmp0 (s, "off") == 0 || g_strcmp0 (s, "no") == 0 || g_strcmp0 (s, "false") == 0 ||
	    g_strcmp0 (s, "0") == 0) {
		*out = FALSE;
		return TRUE;
	}
	g_printerr ("bgsync-simctl: expected on or off, got '%s'\n", s);
	return FALSE;
}

static gboolean
parse_int (const gchar *s, gint64 min, gint64 max, gint64 *out)
{
	g_autoptr(GError) error = NULL;

	if (!g_ascii_string_to_signed (s, 10, min, max, out, &error)) {
		g_printerr ("bgsync-simctl: %s\n", error->message);
		return FALSE;
	}
	return TRUE;
}

static GVariant *
parse_hex (const gchar *s)
{
	g_autoptr(GByteArray) a = g_byte_array_new ();
	gsize len = strlen (s);

	if (len % 2 != 0)
		return NULL;
	for (gsize i = 0; i < len; i += 2) {
		gint hi = g_ascii_xdigit_value (s[i]), lo = g_ascii_xdigit_value (s[i + 1]);
		guint8 b;
		if (hi < 0 || lo < 0)
			return NULL;
		b = (guint8) (hi << 4 | lo);
		g_byte_array_append (a, &b, 1);
	}
	return g_variant_new_fixed_array (G_VARIANT_TYPE_BYTE, a->data, a->len, 1);
}

static gint
cmd_add_adapter (GDBusConnection *conn, gchar **argv, guint argc)
{
	g_autoptr(GVariant) ret = call (conn, "AddAdapter",
					g_variant_new ("(ss)", argc > 0 ? argv[0] : "",
						       argc > 1 ? argv[1] : ""),
					G_VARIANT_TYPE ("(o)"));
	const gchar *path;

	if (ret == NULL)
		return 1;
	g_variant_get (ret, "(&o)", &path);
	if (opt_json)
		g_print ("{\"adapter\": \"%s\"}\n", path);
	else
		g_print ("%s\n", path);
	return 0;
}

static gint
cmd_remove_adapter (GDBusConnection *conn, gchar **argv, guint argc)
{
	g_autofree gchar *path = g_str_has_prefix (argv[0], "/") ? g_strdup (argv[0]) :
				 g_strdup_printf ("/org/bluez/%s", argv[0]);

	if (!g_variant_is_object_path (path)) {
		g_printerr ("bgsync-simctl: not an adapter: %s\n", argv[0]);
		return 2;
	}
	return done (call (conn, "RemoveAdapter", g_variant_new ("(o)", path), NULL));
}

static gint
cmd_add_device (GDBusConnection *conn, gchar **argv, guint argc)
{
	g_autoptr(GError) error = NULL;
	g_autofree gchar *text = NULL;
	g_autoptr(GVariant) desc = NULL;
	g_autoptr(GVariant) ret = NULL;
	const gchar *address;

	if (argv[0][0] == '@') {
		if (!g_file_get_contents (argv[0] + 1, &text, NULL, &error)) {
			g_printerr ("bgsync-simctl: %s\n", error->message);
			return 2;
		}
	} else {
		text = g_strdup (argv[0]);
	}
	desc = g_variant_parse (G_VARIANT_TYPE ("a{sv}"), text, NULL, NULL, &error);
	if (desc == NULL) {
		g_autofree gchar *ctx = g_variant_parse_error_print_context (error, text);
		g_printerr ("bgsync-simctl: bad description (GVariant text a{sv}):\n%s\n", ctx);
		return 2;
	}
	ret = call (conn, "AddDevice", g_variant_new ("(@a{sv})", g_steal_pointer (&desc)),
		    G_VARIANT_TYPE ("(s)"));
	if (ret == NULL)
		return 1;
	g_variant_get (ret, "(&s)", &address);
	if (opt_json)
		g_print ("{\"address\": \"%s\"}\n", address);
	else
		g_print ("%s\n", address);
	return 0;
}

static gint
cmd_list (GDBusConnection *conn, gchar **argv, guint argc)
{
	g_autoptr(GVariant) ret = call (conn, "ListDevices", NULL, G_VARIANT_TYPE ("(aa{sv})"));
	g_autoptr(GVariant) list = NULL;
	GVariantIter it;
	GVariant *d;
	gboolean first = TRUE;

	if (ret == NULL)
		return 1;
	list = g_variant_get_child_value (ret, 0);
	if (opt_json)
		g_print ("[");
	g_variant_iter_init (&it, list);
	while ((d = g_variant_iter_next_value (&it)) != NULL) {
		const gchar *address = "", *name = "", *adapter = "";
		gboolean in_range = FALSE, visible = FALSE, stalled = FALSE, rebooting = FALSE;
		gint16 rssi = 0;
		guint32 links = 0;
		g_variant_lookup (d, "address", "&s", &address);
		g_variant_lookup (d, "name", "&s", &name);
		g_variant_lookup (d, "adapter", "&o", &adapter);
		g_variant_lookup (d, "in-range", "b", &in_range);
		g_variant_lookup (d, "visible", "b", &visible);
		g_variant_lookup (d, "stalled", "b", &stalled);
		g_variant_lookup (d, "rebooting", "b", &rebooting);
		g_variant_lookup (d, "rssi", "n", &rssi);
		g_variant_lookup (d, "links", "u", &links);
		if (opt_json) {
			g_autofree gchar *jname = g_strescape (name, NULL);
			g_print ("%s{\"address\": \"%s\", \"name\": \"%s\", \"adapter\": \"%s\", "
				 "\"in-range\": %s, \"visible\": %s, \"stalled\": %s, "
				 "\"rebooting\": %s, \"rssi\": %d, \"links\": %u}",
				 first ? "" : ", ", address, jname, adapter,
				 in_range ? "true" : "false", visible ? "true" : "false",
				 stalled ? "true" : "false", rebooting ? "true" : "false", rssi, links);
		} else {
			g_print ("%s  %-20s %-18s rssi %4d  %s%s%s%s links %u\n", address, name,
				 adapter[0] != '\0' ? adapter : "(device)", rssi,
				 in_range ? "in-range " : "out-of-range ",
				 visible ? "visible " : "",
				 stalled ? "stalled " : "", rebooting ? "rebooting " : "", links);
		}
		first = FALSE;
		g_variant_unref (d);
	}
	if (opt_json)
		g_print ("]\n");
	return 0;
}

static gint
cmd_addr_only (GDBusConnection *conn, const gchar *method, const gchar *addr)
{
	return done (call (conn, method, g_variant_new ("(s)", addr), NULL));
}

static gint
cmd_remove_device (GDBusConnection *conn, gchar **argv, guint argc)
{
	return cmd_addr_only (conn, "RemoveDevice", argv[0]);
}

static gint
cmd_drop (GDBusConnection *conn, gchar **argv, guint argc)
{
	return cmd_addr_only (conn, "DropLink", argv[0]);
}

static gint
cmd_bool (GDBusConnection *conn, const gchar *method, gchar **argv)
{
	gboolean b;

	if (!parse_bool (argv[1], &b))
		return 2;
	return done (call (conn, method, g_variant_new ("(sb)", argv[0], b), NULL));
}

static gint
cmd_in_range (GDBusConnection *conn, gchar **argv, guint argc)
{
	return cmd_bool (conn, "SetInRange", argv);
}

static gint
cmd_advertising (GDBusConnection *conn, gchar **argv, guint argc)
{
	return cmd_bool (conn, "SetAdvertising", argv);
}

static gint
cmd_stall (GDBusConnection *conn, gchar **argv, guint argc)
{
	return cmd_bool (conn, "Stall", argv);
}

static gint
cmd_rssi (GDBusConnection *conn, gchar **argv, guint argc)
{
	gint64 v;

	if (!parse_int (argv[1], -127, 20, &v))
		return 2;
	return done (call (conn, "SetRSSI", g_variant_new ("(sn)", argv[0], (gint16) v), NULL));
}

static gint
cmd_rate (GDBusConnection *conn, gchar **argv, guint argc)
{
	gint64 v;

	if (!parse_int (argv[1], 0, G_MAXINT64, &v))
		return 2;
	return done (call (conn, "SetLinkRate", g_variant_new ("(st)", argv[0], (guint64) v), NULL));
}

static gint
cmd_latency (GDBusConnection *conn, gchar **argv, guint argc)
{
	gint64 v;

	if (!parse_int (argv[1], 0, 60000, &v))
		return 2;
	return done (call (conn, "SetLatency", g_variant_new ("(su)", argv[0], (guint32) v), NULL));
}

static gint
cmd_reboot (GDBusConnection *conn, gchar **argv, guint argc)
{
	gdouble secs = g_ascii_strtod (argv[1], NULL);
	g_autoptr(GVariant) ret = call (conn, "Reboot",
					g_variant_new ("(sdss)", argv[0], secs,
						       argc > 2 ? argv[2] : "",
						       argc > 3 ? argv[3] : ""),
					G_VARIANT_TYPE ("(s)"));
	const gchar *after;

	if (ret == NULL)
		return 1;
	g_variant_get (ret, "(&s)", &after);
	if (opt_json)
		g_print ("{\"address\": \"%s\"}\n", after);
	else
		g_print ("%s\n", after);
	return 0;
}

static gint
cmd_restart (GDBusConnection *conn, gchar **argv, guint argc)
{
	return done (call (conn, "RestartBluez", NULL, NULL));
}

static gint
cmd_value (GDBusConnection *conn, const gchar *method, gchar **argv)
{
	GVariant *v = parse_hex (argv[2]);

	if (v == NULL) {
		g_printerr ("bgsync-simctl: value must be hex bytes, e.g. 0a0b\n");
		return 2;
	}
	return done (call (conn, method, g_variant_new ("(ss@ay)", argv[0], argv[1], v), NULL));
}

static gint
cmd_notify (GDBusConnection *conn, gchar **argv, guint argc)
{
	return cmd_value (conn, "Notify", argv);
}

static gint
cmd_set_value (GDBusConnection *conn, gchar **argv, guint argc)
{
	return cmd_value (conn, "SetValue", argv);
}

static gint
cmd_get_value (GDBusConnection *conn, gchar **argv, guint argc)
{
	g_autoptr(GVariant) ret = call (conn, "GetValue", g_variant_new ("(ss)", argv[0], argv[1]),
					G_VARIANT_TYPE ("(ay)"));
	g_autoptr(GVariant) v = NULL;
	gsize len;
	const guint8 *p;
	g_autoptr(GString) hex = g_string_new (NULL);

	if (ret == NULL)
		return 1;
	v = g_variant_get_child_value (ret, 0);
	p = g_variant_get_fixed_array (v, &len, 1);
	for (gsize i = 0; i < len; i++)
		g_string_append_printf (hex, "%02x", p[i]);
	if (opt_json)
		g_print ("{\"value\": \"%s\"}\n", hex->str);
	else
		g_print ("%s\n", hex->str);
	return 0;
}

static gint
cmd_configure (GDBusConnection *conn, gchar **argv, guint argc)
{
	GVariantBuilder b;

	g_variant_builder_init (&b, G_VARIANT_TYPE ("a{sv}"));
	for (guint i = 0; i < argc; i++) {
		g_auto(GStrv) kv = g_strsplit (argv[i], "=", 2);
		gint64 v;
		if (g_strv_length (kv) != 2 || !parse_int (kv[1], 0, G_MAXUINT32, &v)) {
			g_printerr ("bgsync-simctl: expected KEY=NUMBER, got '%s'\n", argv[i]);
			g_variant_builder_clear (&b);
			return 2;
		}
		g_variant_builder_add (&b, "{sv}", kv[0], g_variant_new_uint32 ((guint32) v));
	}
	return done (call (conn, "Configure", g_variant_new ("(a{sv})", &b), NULL));
}

static const SimctlCommand commands[] = {
	{ "add-adapter", "[ADDRESS] [NAME]", 0, 2, "add a controller (hciN), print its path", cmd_add_adapter },
	{ "remove-adapter", "hciN", 1, 1, "unplug a controller", cmd_remove_adapter },
	{ "add-device", "DESCRIPTION|@FILE", 1, 1, "add a simulated device (GVariant text a{sv}), print its address", cmd_add_device },
	{ "remove-device", "ADDRESS", 1, 1, "remove a simulated device", cmd_remove_device },
	{ "list", "", 0, 0, "list devices and adapters as radios", cmd_list },
	{ "in-range", "ADDRESS on|off", 2, 2, "move a device into or out of range", cmd_in_range },
	{ "advertising", "ADDRESS on|off", 2, 2, "start or stop a device's adverts", cmd_advertising },
	{ "rssi", "ADDRESS DBM", 2, 2, "set the RSSI the adapters receive", cmd_rssi },
	{ "rate", "ADDRESS BYTES_PER_S", 2, 2, "cap the device's link throughput (0: none)", cmd_rate },
	{ "latency", "ADDRESS MS", 2, 2, "add latency to the device's link", cmd_latency },
	{ "stall", "ADDRESS on|off", 2, 2, "stop or resume I/O without dropping the link", cmd_stall },
	{ "drop", "ADDRESS", 1, 1, "drop every link of the device", cmd_drop },
	{ "reboot", "ADDRESS SECONDS [NEW_ADDRESS|+1] [NEW_NAME]", 2, 4, "drop links, vanish, come back", cmd_reboot },
	{ "restart-bluez", "", 0, 0, "make org.bluez go away and come back", cmd_restart },
	{ "notify", "ADDRESS CHAR_UUID HEX", 3, 3, "set a value and notify subscribers", cmd_notify },
	{ "set-value", "ADDRESS CHAR_UUID HEX", 3, 3, "set a characteristic value", cmd_set_value },
	{ "get-value", "ADDRESS CHAR_UUID", 2, 2, "print a characteristic value as hex", cmd_get_value },
	{ "configure", "KEY=VALUE...", 1, 8, "supervision-timeout-ms, connect-timeout-ms, temporary-timeout-ms, restart-delay-ms, att-timeout-ms, mtu, server-max-write", cmd_configure },
	{ NULL }
};

static gchar *
usage (void)
{
	GString *s = g_string_new ("Commands:\n");

	for (guint i = 0; commands[i].name != NULL; i++)
		g_string_append_printf (s, "  %-14s %-42s %s\n", commands[i].name,
					commands[i].args, commands[i].help);
	return g_string_free (s, FALSE);
}

int
main (int argc, char **argv)
{
	g_autofree gchar *bus_address = NULL;
	g_autoptr(GOptionContext) ctx = NULL;
	g_autoptr(GError) error = NULL;
	g_autoptr(GDBusConnection) conn = NULL;
	g_autofree gchar *desc = usage ();
	GOptionEntry entries[] = {
		{ "bus", 'b', 0, G_OPTION_ARG_STRING, &bus_address,
		  "D-Bus address of the simulator's bus (default: the system bus)", "ADDRESS" },
		{ "json", 'j', 0, G_OPTION_ARG_NONE, &opt_json, "print JSON, errors included", NULL },
		{ NULL }
	};

	setlocale (LC_ALL, "");
	ctx = g_option_context_new ("COMMAND [ARGS...]");
	g_option_context_set_summary (ctx, "Control bgsync-sim, the BlueZ simulator.");
	g_option_context_set_description (ctx, desc);
	g_option_context_add_main_entries (ctx, entries, NULL);
	g_option_context_set_strict_posix (ctx, TRUE);
	if (!g_option_context_parse (ctx, &argc, &argv, &error)) {
		g_printerr ("bgsync-simctl: %s\n", error->message);
		return 2;
	}
	if (argc < 2) {
		g_autofree gchar *help = g_option_context_get_help (ctx, TRUE, NULL);
		g_printerr ("%s", help);
		return 2;
	}
	for (guint i = 0; commands[i].name != NULL; i++) {
		guint n = argc - 2;
		if (g_strcmp0 (commands[i].name, argv[1]) != 0)
			continue;
		if (n < commands[i].min_args || n > commands[i].max_args) {
			g_printerr ("usage: bgsync-simctl %s %s\n", commands[i].name, commands[i].args);
			return 2;
		}
		if (bus_address != NULL)
			conn = g_dbus_connection_new_for_address_sync (bus_address,
					G_DBUS_CONNECTION_FLAGS_AUTHENTICATION_CLIENT |
					G_DBUS_CONNECTION_FLAGS_MESSAGE_BUS_CONNECTION,
					NULL, NULL, &error);
		else
			conn = g_bus_get_sync (G_BUS_TYPE_SYSTEM, NULL, &error);
		if (conn == NULL) {
			g_printerr ("bgsync-simctl: cannot connect to the bus: %s\n", error->message);
			return 1;
		}
		return commands[i].run (conn, argv + 2, n);
	}
	g_printerr ("bgsync-simctl: unknown command '%s'\n%s", argv[1], desc);
	return 2;
}
