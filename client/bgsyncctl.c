/* bgsyncctl.c: command line client of the bgsync agent (see bgsyncctl(1)).
 *
 * One command table drives the interactive shell and one-shot mode. Every
 * D-Bus call is asynchronous: the same connection may be answering consent
 * prompts (agent on) while a request waits for that very consent. */
#include <errno.h>
#include <fcntl.h>
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <gio/gio.h>
#include <gio/gunixfdlist.h>
#include <json-glib/json-glib.h>

#include "config.h"
#include "bgs-dbus.h"
#include "bgs-shell.h"

#define BUS_NAME "org.bgsync"
#define MANAGER_PATH "/org/bgsync"
#define MANAGER_IFACE "org.bgsync.Manager1"
#define TASK_IFACE "org.bgsync.Task1"
#define DEVICE_IFACE "org.bgsync.Device1"
#define AGENT_PATH "/org/bgsync/ctl/agent"
#define PROPS_IFACE "org.freedesktop.DBus.Properties"

/* exit statuses, documented in bgsyncctl(1) */
enum {
	EXIT_OK = 0,
	EXIT_ERROR = 1,
	EXIT_USAGE = 2,
	EXIT_DENIED = 3,
	EXIT_CANCELED = 4,
	EXIT_TASK_FAILED = 5,
	EXIT_NOT_RUNNING = 6,
	EXIT_NOT_FOUND = 7,
};

/* errors that never reached the agent */
#define CTL_ERROR_USAGE "org.bgsync.ctl.Error.Usage"
#define CTL_ERROR_FAILED "org.bgsync.ctl.Error.Failed"
#define CTL_ERROR_NOT_RUNNING "org.bgsync.ctl.Error.AgentNotRunning"
#define CTL_ERROR_NOT_FOUND "org.bgsync.Error.NotFound"

#define DEFAULT_TIMEOUT_MS (30 * 1000)
/* the Request reply waits for the user's consent answer */
#define DEFAULT_REQUEST_TIMEOUT_MS (600 * 1000)

typedef enum {
	AGENT_ASK,
	AGENT_ACCEPT,
	AGENT_DENY,
} AgentMode;

typedef struct _Follow Follow;

typedef struct {
	BgsShell *shell;
	GDBusConnection *bus;
	gboolean json;
	gboolean session;
	gboolean color;
	int timeout_ms;
	int request_timeout_ms;
	/* the consent agent on this connection */
	BgsDBusConsentAgent1 *agent;
	gboolean agent_registered;
	gboolean agent_unregistering;
	AgentMode agent_mode;
	GPtrArray *consents;       /* of Consent, pending prompts */
	guint agent_watch;
	char *daemon_owner;        /* unique name of org.bgsync, for sender checks */
	/* monitor */
	guint monitor_subs[3];
	guint monitor_watch;
	gboolean monitor_agent_seen;
	GHashTable *task_names;    /* path -> name */
	GHashTable *device_addrs;  /* path -> address */
	Follow *follow;
} Ctl;

/* ---- output helpers ------------------------------------------------------ */

static const char *
col (Ctl *ctl, const char *code)
{
	return ctl->color ? code : "";
}
#define C_RED(c) col ((c), "\033[31m")
#define C_GREEN(c) col ((c), "\033[32m")
#define C_YELLOW(c) col ((c), "\033[33m")
#define C_OFF(c) col ((c), "\033[0m")

static void
print_json (Ctl *ctl, JsonNode *node)
{
	g_autoptr(JsonGenerator) gen = json_generator_new ();
	g_autofree char *text = NULL;

	json_generator_set_root (gen, node);
	text = json_generator_to_data (gen, NULL);
	bgs_shell_print (ctl->shell, "%s\n", text);
}

static void
print_builder (Ctl *ctl, JsonBuilder *b)
{
	g_autoptr(JsonNode) node = json_builder_get_root (b);

	print_json (ctl, node);
}

/* {"event": @event}, or {} for NULL */
static void
print_event (Ctl *ctl, const char *event)
{
	g_autoptr(JsonBuilder) b = json_builder_new ();

	json_builder_begin_object (b);
	if (event != NULL) {
		json_builder_set_member_name (b, "event");
		json_builder_add_string_value (b, event);
	}
	json_builder_end_object (b);
	print_builder (ctl, b);
}

static int
status_for_error_name (const char *name)
{
	if (name == NULL)
		return EXIT_ERROR;
	if (g_str_equal (name, "org.freedesktop.DBus.Error.ServiceUnknown") ||
	    g_str_equal (name, "org.freedesktop.DBus.Error.NameHasNoOwner") ||
	    g_str_has_prefix (name, "org.freedesktop.DBus.Error.Spawn.") ||
	    g_str_equal (name, CTL_ERROR_NOT_RUNNING))
		return EXIT_NOT_RUNNING;
	if (g_str_equal (name, "org.bgsync.Error.NotFound"))
		return EXIT_NOT_FOUND;
	if (g_str_equal (name, "org.bgsync.Error.NotAuthorized") ||
	    g_str_equal (name, "org.bgsync.Error.UnknownApp") ||
	    g_str_equal (name, "org.freedesktop.DBus.Error.AccessDenied"))
		return EXIT_DENIED;
	if (g_str_equal (name, "org.bgsync.Error.Canceled"))
		return EXIT_CANCELED;
	if (g_str_equal (name, CTL_ERROR_USAGE))
		return EXIT_USAGE;
	return EXIT_ERROR;
}

/* prints an error (text to stderr, or the JSON error object to stdout) and
 * returns the exit status it maps to */
static int
report_error_name (Ctl *ctl, const char *name, const char *message)
{
	int status = status_for_error_name (name);

	if (ctl->json) {
		g_autoptr(JsonBuilder) b = json_builder_new ();

		json_builder_begin_object (b);
		json_builder_set_member_name (b, "error");
		json_builder_begin_object (b);
		json_builder_set_member_name (b, "name");
		json_builder_add_string_value (b, name);
		json_builder_set_member_name (b, "message");
		json_builder_add_string_value (b, message);
		json_builder_end_object (b);
		json_builder_end_object (b);
		print_builder (ctl, b);
	} else if (status == EXIT_NOT_RUNNING) {
		bgs_shell_printerr (ctl->shell, "%sbgsync agent is not running%s (org.bgsync is not on the %s bus): %s\n",
				    C_RED (ctl), C_OFF (ctl), ctl->session ? "session" : "system", message);
	} else {
		bgs_shell_printerr (ctl->shell, "%sError%s: %s (%s)\n", C_RED (ctl), C_OFF (ctl),
				    message, name);
	}
	return status;
}

static int
report_error (Ctl *ctl, GError *error)
{
	g_autofree char *name = NULL;
	g_autoptr(GError) copy = g_error_copy (error);

	if (g_dbus_error_is_remote_error (copy)) {
		name = g_dbus_error_get_remote_error (copy);
		g_dbus_error_strip_remote_error (copy);
	} else if (copy->domain == G_DBUS_ERROR) {
		name = g_dbus_error_encode_gerror (copy);
	} else if (g_error_matches (copy, G_IO_ERROR, G_IO_ERROR_TIMED_OUT)) {
		name = g_strdup ("org.freedesktop.DBus.Error.Timeout");
	} else if (g_error_matches (copy, G_IO_ERROR, G_IO_ERROR_CLOSED)) {
		name = g_strdup (CTL_ERROR_NOT_RUNNING);
	} else {
		name = g_strdup (CTL_ERROR_FAILED);
	}
	return report_error_name (ctl, name, copy->message);
}

static int
usage_error (Ctl *ctl, const char *command, const char *format, ...) G_GNUC_PRINTF (3, 4);

static int
usage_error (Ctl *ctl, const char *command, const char *format, ...)
{
	va_list args;
	g_autofree char *msg = NULL;
	const BgsShellCommand *c = bgs_shell_lookup (ctl->shell, command);

	va_start (args, format);
	msg = g_strdup_vprintf (format, args);
	va_end (args);
	if (c != NULL && !ctl->json) {
		bgs_shell_printerr (ctl->shell, "%s\nUsage: %s %s\n", msg, c->name,
				    c->arg_hint ? c->arg_hint : "");
		return EXIT_USAGE;
	}
	return report_error_name (ctl, CTL_ERROR_USAGE, msg);
}

static char *
format_time_usec (guint64 usec)
{
	g_autoptr(GDateTime) dt = NULL;

	if (usec == 0)
		return g_strdup ("never");
	dt = g_date_time_new_from_unix_local (usec / G_USEC_PER_SEC);
	if (dt == NULL)
		return g_strdup ("?");
	return g_date_time_format (dt, "%Y-%m-%d %H:%M:%S");
}

static char *
format_duration (guint64 secs)
{
	if (secs >= 3600)
		return g_strdup_printf ("%" G_GUINT64_FORMAT ":%02u:%02u", secs / 3600,
					(guint) (secs / 60 % 60), (guint) (secs % 60));
	return g_strdup_printf ("%u:%02u", (guint) (secs / 60), (guint) (secs % 60));
}

static const char *
dict_str (GVariant *dict, const char *key)
{
	const char *s = NULL;

	if (dict == NULL || !g_variant_lookup (dict, key, "&s", &s))
		return "";
	return s;
}

static gboolean
dict_bool (GVariant *dict, const char *key)
{
	gboolean b = FALSE;

	if (dict != NULL)
		g_variant_lookup (dict, key, "b", &b);
	return b;
}

static guint64
dict_u64 (GVariant *dict, const char *key)
{
	guint64 t = 0;
	guint32 u = 0;

	if (dict == NULL)
		return 0;
	if (g_variant_lookup (dict, key, "t", &t))
		return t;
	if (g_variant_lookup (dict, key, "u", &u))
		return u;
	return 0;
}

/* ---- calls ----------------------------------------------------------------- */

typedef void (*CallDone) (Ctl *ctl, GVariant *reply, GUnixFDList *fds, GError *error,
			  gpointer data);

typedef struct {
	Ctl *ctl;
	CallDone func;
	gpointer data;
} Call;

static void
call_cb (GObject *source, GAsyncResult *res, gpointer user_data)
{
	Call *call = user_data;
	g_autoptr(GError) error = NULL;
	g_autoptr(GUnixFDList) fds = NULL;
	g_autoptr(GVariant) reply = NULL;

	reply = g_dbus_connection_call_with_unix_fd_list_finish (G_DBUS_CONNECTION (source), &fds,
								 res, &error);
	call->func (call->ctl, reply, fds, error, call->data);
	g_free (call);
}

static void
ctl_call (Ctl *ctl, const char *path, const char *iface, const char *method, GVariant *params,
	  const char *reply_type, int timeout_ms, GUnixFDList *fds, CallDone func, gpointer data)
{
	Call *call = g_new0 (Call, 1);

	call->ctl = ctl;
	call->func = func;
	call->data = data;
	g_dbus_connection_call_with_unix_fd_list (ctl->bus, BUS_NAME, path, iface, method, params,
						  reply_type ? G_VARIANT_TYPE (reply_type) : NULL,
						  G_DBUS_CALL_FLAGS_NONE,
						  timeout_ms > 0 ? timeout_ms : ctl->timeout_ms,
						  fds, NULL, call_cb, call);
}

static void
manager_call (Ctl *ctl, const char *method, GVariant *params, const char *reply_type,
	      CallDone func, gpointer data)
{
	ctl_call (ctl, MANAGER_PATH, MANAGER_IFACE, method, params, reply_type, 0, NULL, func,
		  data);
}

/* a blocking call with a short timeout, only for tab completion (readline
 * asks synchronously); failures just mean no candidates */
static GVariant *
completion_call (Ctl *ctl, const char *method, const char *reply_type)
{
	return g_dbus_connection_call_sync (ctl->bus, BUS_NAME, MANAGER_PATH, MANAGER_IFACE,
					    method, NULL, G_VARIANT_TYPE (reply_type),
					    G_DBUS_CALL_FLAGS_NO_AUTO_START, 1000, NULL, NULL);
}

/* ---- completion generators --------------------------------------------- */

static GPtrArray *
complete_tasks (BgsShell *shell, int argn, char **argv, gpointer user_data)
{
	Ctl *ctl = user_data;
	g_autoptr(GVariant) reply = NULL;
	g_autoptr(GVariantIter) iter = NULL;
	GPtrArray *out;
	GVariant *props;
	const char *path;

	if (argn != 1)
		return NULL;
	reply = completion_call (ctl, "GetTasks", "(a{oa{sv}})");
	if (reply == NULL)
		return NULL;
	out = g_ptr_array_new_with_free_func (g_free);
	g_variant_get (reply, "(a{oa{sv}})", &iter);
	while (g_variant_iter_next (iter, "{&o@a{sv}}", &path, &props)) {
		g_ptr_array_add (out, g_strdup (dict_str (props, "Name")));
		g_variant_unref (props);
	}
	return out;
}

static GPtrArray *
device_addresses (Ctl *ctl)
{
	g_autoptr(GVariant) reply = completion_call (ctl, "GetDevices", "(a{oa{sv}})");
	g_autoptr(GVariantIter) iter = NULL;
	GPtrArray *out;
	GVariant *props;
	const char *path;

	if (reply == NULL)
		return NULL;
	out = g_ptr_array_new_with_free_func (g_free);
	g_variant_get (reply, "(a{oa{sv}})", &iter);
	while (g_variant_iter_next (iter, "{&o@a{sv}}", &path, &props)) {
		g_ptr_array_add (out, g_strdup (dict_str (props, "Address")));
		g_variant_unref (props);
	}
	return out;
}

static GPtrArray *
strv_candidates (const char *const *words)
{
	GPtrArray *out = g_ptr_array_new_with_free_func (g_free);

	for (guint i = 0; words[i] != NULL; i++)
		g_ptr_array_add (out, g_strdup (words[i]));
	return out;
}

static GPtrArray *
complete_request (BgsShell *shell, int argn, char **argv, gpointer user_data)
{
	static const char *const opts[] = { "--estimate", "--args", "--input", "--output-dir",
					    "--channel", NULL };
	if (argn == 1)
		return complete_tasks (shell, argn, argv, user_data);
	if (argn == 2)
		return device_addresses (user_data);
	return strv_candidates (opts);
}

static GPtrArray *
complete_register (BgsShell *shell, int argn, char **argv, gpointer user_data)
{
	static const char *const triggers[] = { "device-use", "device-servicing", "custom", NULL };
	static const char *const opts[] = { "--trigger-id", "--recurrence", "--condition", NULL };
	static const char *const recurrence[] = { "once", "always", NULL };
	static const char *const conditions[] = { "network", "user-present", "ac-power", NULL };

	if (argn == 2)
		return strv_candidates (triggers);
	if (argn >= 4 && g_strcmp0 (argv[argn - 1], "--recurrence") == 0)
		return strv_candidates (recurrence);
	if (argn >= 4 && g_strcmp0 (argv[argn - 1], "--condition") == 0)
		return strv_candidates (conditions);
	if (argn >= 4)
		return strv_candidates (opts);
	return NULL;
}

static GPtrArray *
complete_unregister (BgsShell *shell, int argn, char **argv, gpointer user_data)
{
	static const char *const opts[] = { "--cancel-running", NULL };

	if (argn == 1)
		return complete_tasks (shell, argn, argv, user_data);
	return strv_candidates (opts);
}

static GPtrArray *
complete_agent (BgsShell *shell, int argn, char **argv, gpointer user_data)
{
	static const char *const modes[] = { "on", "off", NULL };
	static const char *const opts[] = { "--auto-accept", "--auto-deny", NULL };

	if (argn == 1)
		return strv_candidates (modes);
	if (argn == 2 && g_strcmp0 (argv[1], "on") == 0)
		return strv_candidates (opts);
	return NULL;
}

static GPtrArray *
complete_help (BgsShell *shell, int argn, char **argv, gpointer user_data)
{
	GPtrArray *out;

	if (argn != 1)
		return NULL;
	out = g_ptr_array_new_with_free_func (g_free);
	for (const BgsShellCommand *c = bgs_shell_get_commands (shell); c->name != NULL; c++)
		g_ptr_array_add (out, g_strdup (c->name));
	return out;
}

static GPtrArray *
complete_revoke (BgsShell *shell, int argn, char **argv, gpointer user_data)
{
	Ctl *ctl = user_data;
	g_autoptr(GVariant) reply = NULL;
	g_autoptr(GVariantIter) iter = NULL;
	const char *app_id, *app_name, *model;
	gboolean allowed;
	guint64 t;
	GPtrArray *out;

	if (argn > 2)
		return NULL;
	reply = completion_call (ctl, "GetConsents", "(a(sssbt))");
	if (reply == NULL)
		return NULL;
	out = g_ptr_array_new_with_free_func (g_free);
	g_variant_get (reply, "(a(sssbt))", &iter);
	while (g_variant_iter_next (iter, "(&s&s&sbt)", &app_id, &app_name, &model, &allowed, &t))
		g_ptr_array_add (out, g_strdup (argn == 1 ? app_id : model));
	return out;
}

/* ---- option parsing for commands ------------------------------------------ */

/* parses @entries out of argv (GOption, no help entries); returns FALSE
 * after reporting a usage error */
static gboolean
parse_options (Ctl *ctl, int *argc, char ***argv, const GOptionEntry *entries)
{
	g_autoptr(GOptionContext) ctx = g_option_context_new (NULL);
	g_autoptr(GError) error = NULL;

	g_option_context_set_help_enabled (ctx, FALSE);
	g_option_context_add_main_entries (ctx, entries, NULL);
	if (!g_option_context_parse (ctx, argc, argv, &error)) {
		bgs_shell_done (ctl->shell, usage_error (ctl, (*argv)[0], "%s", error->message));
		return FALSE;
	}
	return TRUE;
}

/* a private copy of argv, which GOption rewrites */
static char **
argv_copy (int argc, char **argv)
{
	char **copy = g_new0 (char *, argc + 1);

	for (int i = 0; i < argc; i++)
		copy[i] = g_strdup (argv[i]);
	return copy;
}

static gboolean
want_args (Ctl *ctl, int argc, char **argv, int min, int max)
{
	if (argc - 1 < min || argc - 1 > max) {
		bgs_shell_done (ctl->shell,
				usage_error (ctl, argv[0], "%s: %s arguments", argv[0],
					     argc - 1 < min ? "missing" : "too many"));
		return FALSE;
	}
	return TRUE;
}

/* ---- task lookup -------------------------------------------------------------- */

typedef void (*TaskFound) (Ctl *ctl, const char *path, GVariant *props, gpointer data);

typedef struct {
	char *name;
	TaskFound func;
	gpointer data;
	GDestroyNotify destroy;
} Lookup;

static void
lookup_cb (Ctl *ctl, GVariant *reply, GUnixFDList *fds, GError *error, gpointer data)
{
	Lookup *l = data;
	g_autoptr(GVariantIter) iter = NULL;
	GVariant *props;
	const char *path;
	gboolean found = FALSE;

	if (error != NULL) {
		bgs_shell_done (ctl->shell, report_error (ctl, error));
		goto out;
	}
	g_variant_get (reply, "(a{oa{sv}})", &iter);
	while (!found && g_variant_iter_next (iter, "{&o@a{sv}}", &path, &props)) {
		if (g_strcmp0 (dict_str (props, "Name"), l->name) == 0 ||
		    g_strcmp0 (path, l->name) == 0) {
			found = TRUE;
			l->func (ctl, path, props, l->data);
		}
		g_variant_unref (props);
	}
	if (!found) {
		g_autofree char *msg = g_strdup_printf ("no task named '%s' (see tasks; register it first)",
							l->name);
		bgs_shell_done (ctl->shell, report_error_name (ctl, CTL_ERROR_NOT_FOUND, msg));
		/* the callback owns data once called; here nobody did */
		if (l->destroy != NULL && l->data != NULL)
			l->destroy (l->data);
	}
out:
	g_free (l->name);
	g_free (l);
}

/* finds the calling app's task by name (or object path). @destroy frees
 * @data when no task matched (else @func owns it) */
static void
lookup_task_full (Ctl *ctl, const char *name, TaskFound func, gpointer data, GDestroyNotify destroy)
{
	Lookup *l = g_new0 (Lookup, 1);

	l->name = g_strdup (name);
	l->func = func;
	l->data = data;
	l->destroy = destroy;
	manager_call (ctl, "GetTasks", NULL, "(a{oa{sv}})", lookup_cb, l);
}

static void
lookup_task (Ctl *ctl, const char *name, TaskFound func, gpointer data)
{
	lookup_task_full (ctl, name, func, data, g_free);
}

/* ---- devices ----------------------------------------------------------------- */

static gint
compare_device_entries (gconstpointer a, gconstpointer b)
{
	GVariant *da = *(GVariant **) a, *db = *(GVariant **) b;

	return g_strcmp0 (dict_str (da, "Address"), dict_str (db, "Address"));
}

static GPtrArray *
device_list (GVariant *reply)
{
	g_autoptr(GVariantIter) iter = NULL;
	GPtrArray *out = g_ptr_array_new_with_free_func ((GDestroyNotify) g_variant_unref);
	GVariant *props;
	const char *path;

	g_variant_get (reply, "(a{oa{sv}})", &iter);
	while (g_variant_iter_next (iter, "{&o@a{sv}}", &path, &props)) {
		GVariantDict d;

		/* keep the path with the properties */
		g_variant_dict_init (&d, props);
		g_variant_dict_insert (&d, "_path", "o", path);
		g_ptr_array_add (out, g_variant_ref_sink (g_variant_dict_end (&d)));
		g_variant_unref (props);
	}
	g_ptr_array_sort (out, compare_device_entries);
	return out;
}

static void
json_device (JsonBuilder *b, GVariant *d)
{
	gint16 rssi = 0;

	g_variant_lookup (d, "RSSI", "n", &rssi);
	json_builder_begin_object (b);
	json_builder_set_member_name (b, "path");
	json_builder_add_string_value (b, dict_str (d, "_path"));
	json_builder_set_member_name (b, "address");
	json_builder_add_string_value (b, dict_str (d, "Address"));
	json_builder_set_member_name (b, "name");
	json_builder_add_string_value (b, dict_str (d, "Name"));
	json_builder_set_member_name (b, "adapter");
	json_builder_add_string_value (b, dict_str (d, "Adapter"));
	json_builder_set_member_name (b, "model");
	json_builder_add_string_value (b, dict_str (d, "Model"));
	json_builder_set_member_name (b, "model-name");
	json_builder_add_string_value (b, dict_str (d, "ModelName"));
	json_builder_set_member_name (b, "present");
	json_builder_add_boolean_value (b, dict_bool (d, "Present"));
	json_builder_set_member_name (b, "connected");
	json_builder_add_boolean_value (b, dict_bool (d, "Connected"));
	json_builder_set_member_name (b, "rssi");
	json_builder_add_int_value (b, rssi);
	json_builder_set_member_name (b, "last-seen");
	json_builder_add_int_value (b, (gint64) dict_u64 (d, "LastSeen"));
	json_builder_end_object (b);
}

static void
devices_cb (Ctl *ctl, GVariant *reply, GUnixFDList *fds, GError *error, gpointer data)
{
	g_autoptr(GPtrArray) list = NULL;

	if (error != NULL) {
		bgs_shell_done (ctl->shell, report_error (ctl, error));
		return;
	}
	list = device_list (reply);
	if (ctl->json) {
		g_autoptr(JsonBuilder) b = json_builder_new ();

		json_builder_begin_object (b);
		json_builder_set_member_name (b, "devices");
		json_builder_begin_array (b);
		for (guint i = 0; i < list->len; i++)
			json_device (b, list->pdata[i]);
		json_builder_end_array (b);
		json_builder_end_object (b);
		print_builder (ctl, b);
		bgs_shell_done (ctl->shell, EXIT_OK);
		return;
	}
	if (list->len == 0) {
		bgs_shell_print (ctl->shell, "No devices known to the agent\n");
		bgs_shell_done (ctl->shell, EXIT_OK);
		return;
	}
	bgs_shell_print (ctl->shell, "%-17s  %-20s  %-7s  %-5s  %-19s  %-9s  %s\n", "ADDRESS", "MODEL",
			 "PRESENT", "RSSI", "LAST SEEN", "CONNECTED", "NAME");
	for (guint i = 0; i < list->len; i++) {
		GVariant *d = list->pdata[i];
		gint16 rssi = 0;
		g_autofree char *seen = format_time_usec (dict_u64 (d, "LastSeen"));
		g_autofree char *rssi_s = NULL;
		const char *model = dict_str (d, "ModelName");

		g_variant_lookup (d, "RSSI", "n", &rssi);
		rssi_s = rssi != 0 ? g_strdup_printf ("%d", rssi) : g_strdup ("-");
		if (*model == '\0')
			model = *dict_str (d, "Model") != '\0' ? dict_str (d, "Model") : "(unknown)";
		bgs_shell_print (ctl->shell, "%-17s  %-20s  %-7s  %-5s  %-19s  %-9s  %s\n",
				 dict_str (d, "Address"), model, dict_bool (d, "Present") ? "yes" : "no",
				 rssi_s, seen, dict_bool (d, "Connected") ? "yes" : "no",
				 dict_str (d, "Name"));
	}
	bgs_shell_done (ctl->shell, EXIT_OK);
}

static void
cmd_devices (BgsShell *shell, int argc, char **argv, gpointer user_data)
{
	Ctl *ctl = user_data;

	if (!want_args (ctl, argc, argv, 0, 0))
		return;
	manager_call (ctl, "GetDevices", NULL, "(a{oa{sv}})", devices_cb, NULL);
}

/* ---- tasks ------------------------------------------------------------------- */

static void
json_task (JsonBuilder *b, const char *path, GVariant *p)
{
	guint percent = 0;
	const char *status = "";

	g_variant_lookup (p, "Progress", "(u&s)", &percent, &status);
	json_builder_begin_object (b);
	json_builder_set_member_name (b, "path");
	json_builder_add_string_value (b, path);
	json_builder_set_member_name (b, "name");
	json_builder_add_string_value (b, dict_str (p, "Name"));
	json_builder_set_member_name (b, "trigger");
	json_builder_add_string_value (b, dict_str (p, "Trigger"));
	json_builder_set_member_name (b, "entry-point");
	json_builder_add_string_value (b, dict_str (p, "EntryPoint"));
	json_builder_set_member_name (b, "custom-trigger");
	json_builder_add_string_value (b, dict_str (p, "CustomTrigger"));
	json_builder_set_member_name (b, "recurrence");
	json_builder_add_string_value (b, dict_str (p, "Recurrence"));
	json_builder_set_member_name (b, "state");
	json_builder_add_string_value (b, dict_str (p, "State"));
	json_builder_set_member_name (b, "device");
	json_builder_add_string_value (b, dict_str (p, "Device"));
	json_builder_set_member_name (b, "percent");
	json_builder_add_int_value (b, percent);
	json_builder_set_member_name (b, "status");
	json_builder_add_string_value (b, status);
	json_builder_set_member_name (b, "estimate");
	json_builder_add_int_value (b, (gint64) dict_u64 (p, "Estimate"));
	json_builder_end_object (b);
}

static void
tasks_cb (Ctl *ctl, GVariant *reply, GUnixFDList *fds, GError *error, gpointer data)
{
	g_autoptr(GVariantIter) iter = NULL;
	g_autoptr(JsonBuilder) b = NULL;
	GVariant *props;
	const char *path;
	guint n = 0;

	if (error != NULL) {
		bgs_shell_done (ctl->shell, report_error (ctl, error));
		return;
	}
	g_variant_get (reply, "(a{oa{sv}})", &iter);
	if (ctl->json) {
		b = json_builder_new ();
		json_builder_begin_object (b);
		json_builder_set_member_name (b, "tasks");
		json_builder_begin_array (b);
	}
	while (g_variant_iter_next (iter, "{&o@a{sv}}", &path, &props)) {
		if (ctl->json) {
			json_task (b, path, props);
		} else {
			guint percent = 0;
			const char *status = "";
			const char *trigger = dict_str (props, "Trigger");
			g_autofree char *trig = NULL;

			if (n == 0)
				bgs_shell_print (ctl->shell, "%-24s  %-24s  %-20s  %-8s  %-17s  %s\n",
						 "NAME", "TRIGGER", "ENTRY POINT", "STATE", "DEVICE",
						 "PROGRESS");
			g_variant_lookup (props, "Progress", "(u&s)", &percent, &status);
			if (g_str_equal (trigger, "custom"))
				trig = g_strdup_printf ("custom:%s/%s", dict_str (props, "CustomTrigger"),
							dict_str (props, "Recurrence"));
			else
				trig = g_strdup (trigger);
			if (g_str_equal (dict_str (props, "State"), "running"))
				bgs_shell_print (ctl->shell, "%-24s  %-24s  %-20s  %-8s  %-17s  %u%% %s\n",
						 dict_str (props, "Name"), trig,
						 dict_str (props, "EntryPoint"), dict_str (props, "State"),
						 dict_str (props, "Device"), percent, status);
			else
				bgs_shell_print (ctl->shell, "%-24s  %-24s  %-20s  %-8s  %-17s  -\n",
						 dict_str (props, "Name"), trig,
						 dict_str (props, "EntryPoint"), dict_str (props, "State"),
						 *dict_str (props, "Device") ? dict_str (props, "Device") : "-");
		}
		n++;
		g_variant_unref (props);
	}
	if (ctl->json) {
		json_builder_end_array (b);
		json_builder_end_object (b);
		print_builder (ctl, b);
	} else if (n == 0) {
		bgs_shell_print (ctl->shell, "No tasks registered by bgsyncctl\n");
	}
	bgs_shell_done (ctl->shell, EXIT_OK);
}

static void
cmd_tasks (BgsShell *shell, int argc, char **argv, gpointer user_data)
{
	Ctl *ctl = user_data;

	if (!want_args (ctl, argc, argv, 0, 0))
		return;
	manager_call (ctl, "GetTasks", NULL, "(a{oa{sv}})", tasks_cb, NULL);
}

/* ---- register -------------------------------------------------------------- */

static void
register_cb (Ctl *ctl, GVariant *reply, GUnixFDList *fds, GError *error, gpointer data)
{
	g_autofree char *name = data;
	const char *path;

	if (error != NULL) {
		bgs_shell_done (ctl->shell, report_error (ctl, error));
		return;
	}
	g_variant_get (reply, "(&o)", &path);
	if (ctl->json) {
		g_autoptr(JsonBuilder) b = json_builder_new ();

		json_builder_begin_object (b);
		json_builder_set_member_name (b, "task");
		json_builder_begin_object (b);
		json_builder_set_member_name (b, "name");
		json_builder_add_string_value (b, name);
		json_builder_set_member_name (b, "path");
		json_builder_add_string_value (b, path);
		json_builder_end_object (b);
		json_builder_end_object (b);
		print_builder (ctl, b);
	} else {
		bgs_shell_print (ctl->shell, "Registered task %s (%s)\n", name, path);
	}
	bgs_shell_done (ctl->shell, EXIT_OK);
}

static void
cmd_register (BgsShell *shell, int argc, char **argv, gpointer user_data)
{
	Ctl *ctl = user_data;
	g_auto(GStrv) args = argv_copy (argc, argv);
	g_autofree char *trigger_id = NULL;
	g_autofree char *recurrence = NULL;
	g_auto(GStrv) conditions = NULL;
	const GOptionEntry entries[] = {
		{ "trigger-id", 0, 0, G_OPTION_ARG_STRING, &trigger_id, NULL, NULL },
		{ "recurrence", 0, 0, G_OPTION_ARG_STRING, &recurrence, NULL, NULL },
		{ "condition", 0, 0, G_OPTION_ARG_STRING_ARRAY, &conditions, NULL, NULL },
		{ NULL }
	};
	GVariantBuilder opts;
	/* GOption drops parsed options from the array it gets: a shallow
	 * copy, so args still frees every string */
	g_autofree char **a = g_memdup2 (args, sizeof (char *) * (argc + 1));

	if (!parse_options (ctl, &argc, &a, entries))
		return;
	if (!want_args (ctl, argc, a, 3, 3))
		return;
	if (!g_str_equal (a[2], "device-use") && !g_str_equal (a[2], "device-servicing") &&
	    !g_str_equal (a[2], "custom")) {
		bgs_shell_done (shell, usage_error (ctl, a[0],
			"unknown trigger '%s' (device-use, device-servicing or custom)", a[2]));
		return;
	}
	if (g_str_equal (a[2], "custom") && trigger_id == NULL) {
		bgs_shell_done (shell, usage_error (ctl, a[0], "a custom task needs --trigger-id ID"));
		return;
	}
	if (!g_str_equal (a[2], "custom") &&
	    (trigger_id != NULL || recurrence != NULL || conditions != NULL)) {
		bgs_shell_done (shell, usage_error (ctl, a[0],
			"--trigger-id, --recurrence and --condition are for custom tasks"));
		return;
	}
	g_variant_builder_init (&opts, G_VARIANT_TYPE_VARDICT);
	if (trigger_id != NULL)
		g_variant_builder_add (&opts, "{sv}", "custom-trigger", g_variant_new_string (trigger_id));
	if (recurrence != NULL)
		g_variant_builder_add (&opts, "{sv}", "recurrence", g_variant_new_string (recurrence));
	if (conditions != NULL)
		g_variant_builder_add (&opts, "{sv}", "conditions",
				       g_variant_new_strv ((const char *const *) conditions, -1));
	manager_call (ctl, "RegisterTask",
		      g_variant_new ("(sssa{sv})", a[1], a[2], a[3], &opts), "(o)",
		      register_cb, g_strdup (a[1]));
}

/* ---- request and follow ----------------------------------------------------- */

struct _Follow {
	Ctl *ctl;
	char *name;
	char *path;
	char *device;
	guint estimate;
	guint subscription;
	guint name_watch;
	gboolean replied;
	gboolean allowed;
	gboolean ended;
	/* an end that arrived before the Request reply */
	int end_status;
	char *end_text;
	JsonNode *end_json;
	guint percent;
	char *status_text;
	gint64 started;
	guint question;
	gboolean cancel_sent;
	gboolean vanished;
	guint last_printed_percent;
	char *last_printed_status;
};

static void
follow_free (Follow *f)
{
	if (f->subscription != 0)
		g_dbus_connection_signal_unsubscribe (f->ctl->bus, f->subscription);
	if (f->name_watch != 0)
		g_bus_unwatch_name (f->name_watch);
	if (f->question != 0)
		bgs_shell_withdraw (f->ctl->shell, f->question);
	g_free (f->name);
	g_free (f->path);
	g_free (f->device);
	g_free (f->end_text);
	if (f->end_json != NULL)
		json_node_unref (f->end_json);
	g_free (f->status_text);
	g_free (f->last_printed_status);
	g_free (f);
}

static void
follow_finish (Follow *f, int status)
{
	Ctl *ctl = f->ctl;
	BgsShell *shell = ctl->shell;

	/* detach first: withdrawing a question re-enters the shell */
	ctl->follow = NULL;
	bgs_shell_status (shell, NULL);
	follow_free (f);
	bgs_shell_done (shell, status);
}

static void
follow_draw (Follow *f)
{
	Ctl *ctl = f->ctl;
	gint64 elapsed = f->started ? (g_get_monotonic_time () - f->started) / G_USEC_PER_SEC : 0;

	if (ctl->json) {
		g_autoptr(JsonBuilder) b = json_builder_new ();

		json_builder_begin_object (b);
		json_builder_set_member_name (b, "event");
		json_builder_add_string_value (b, "progress");
		json_builder_set_member_name (b, "task");
		json_builder_add_string_value (b, f->name);
		json_builder_set_member_name (b, "percent");
		json_builder_add_int_value (b, f->percent);
		json_builder_set_member_name (b, "status");
		json_builder_add_string_value (b, f->status_text ? f->status_text : "");
		json_builder_set_member_name (b, "estimate");
		json_builder_add_int_value (b, f->estimate);
		json_builder_end_object (b);
		print_builder (ctl, b);
		return;
	}
	if (bgs_shell_stdout_is_tty (ctl->shell)) {
		char bar[31];
		guint filled = MIN (f->percent, 100) * 30 / 100;
		g_autofree char *el = format_duration (elapsed);
		g_autofree char *est = f->estimate ? format_duration (f->estimate) : g_strdup ("?");
		g_autofree char *line = NULL;

		memset (bar, '#', filled);
		memset (bar + filled, '-', 30 - filled);
		bar[30] = '\0';
		line = g_strdup_printf ("[%s] %3u%%  %s / est. %s  %s", bar, f->percent, el, est,
					f->status_text ? f->status_text : "");
		bgs_shell_status (ctl->shell, line);
		return;
	}
	/* no animation on pipes: a line per change */
	if (f->percent == f->last_printed_percent &&
	    g_strcmp0 (f->status_text, f->last_printed_status) == 0)
		return;
	f->last_printed_percent = f->percent;
	g_free (f->last_printed_status);
	f->last_printed_status = g_strdup (f->status_text);
	bgs_shell_print (ctl->shell, "Progress: %u%% %s\n", f->percent,
			 f->status_text ? f->status_text : "");
}

static JsonNode *
end_json (Follow *f, const char *outcome, gboolean success, const char *error, const char *message,
	  const char *reason)
{
	g_autoptr(JsonBuilder) b = json_builder_new ();

	json_builder_begin_object (b);
	json_builder_set_member_name (b, "event");
	json_builder_add_string_value (b, outcome);
	json_builder_set_member_name (b, "task");
	json_builder_add_string_value (b, f->name);
	json_builder_set_member_name (b, "device");
	json_builder_add_string_value (b, f->device);
	if (reason != NULL) {
		json_builder_set_member_name (b, "reason");
		json_builder_add_string_value (b, reason);
	} else {
		json_builder_set_member_name (b, "success");
		json_builder_add_boolean_value (b, success);
		json_builder_set_member_name (b, "error");
		json_builder_add_string_value (b, error);
		json_builder_set_member_name (b, "message");
		json_builder_add_string_value (b, message);
	}
	json_builder_end_object (b);
	return json_builder_get_root (b);
}

static void
follow_end (Follow *f, int status, char *text, JsonNode *json)
{
	Ctl *ctl = f->ctl;

	if (f->ended) {
		g_free (text);
		json_node_unref (json);
		return;
	}
	f->ended = TRUE;
	if (!f->replied) {
		/* the signal raced the Request reply: finish after it */
		f->end_status = status;
		f->end_text = text;
		f->end_json = json;
		return;
	}
	bgs_shell_status (ctl->shell, NULL);
	if (ctl->json)
		print_json (ctl, json);
	else
		bgs_shell_print (ctl->shell, "%s\n", text);
	g_free (text);
	json_node_unref (json);
	follow_finish (f, status);
}

static void
follow_signal_cb (GDBusConnection *bus, const char *sender, const char *path, const char *iface,
		  const char *member, GVariant *params, gpointer user_data)
{
	Follow *f = user_data;
	Ctl *ctl = f->ctl;

	if (g_str_equal (iface, TASK_IFACE) && g_str_equal (member, "Progress") &&
	    g_variant_is_of_type (params, G_VARIANT_TYPE ("(us)"))) {
		const char *status;

		g_variant_get (params, "(u&s)", &f->percent, &status);
		g_free (f->status_text);
		f->status_text = g_strdup (status);
		if (f->started == 0)
			f->started = g_get_monotonic_time ();
		if (f->replied && !f->ended)
			follow_draw (f);
	} else if (g_str_equal (iface, TASK_IFACE) && g_str_equal (member, "Completed") &&
		   g_variant_is_of_type (params, G_VARIANT_TYPE ("(bss)"))) {
		gboolean success;
		const char *error, *message;
		char *text;

		g_variant_get (params, "(b&s&s)", &success, &error, &message);
		if (success)
			text = g_strdup_printf ("%sTask %s completed%s%s%s", C_GREEN (ctl), f->name,
						C_OFF (ctl), *message ? ": " : "", message);
		else
			text = g_strdup_printf ("%sTask %s failed%s: %s%s%s%s", C_RED (ctl), f->name,
						C_OFF (ctl), *message ? message : "no message",
						*error ? " (" : "", error, *error ? ")" : "");
		follow_end (f, success ? EXIT_OK : EXIT_TASK_FAILED, text,
			    end_json (f, "completed", success, error, message, NULL));
	} else if (g_str_equal (iface, TASK_IFACE) && g_str_equal (member, "Canceled") &&
		   g_variant_is_of_type (params, G_VARIANT_TYPE ("(s)"))) {
		const char *reason;

		g_variant_get (params, "(&s)", &reason);
		follow_end (f, EXIT_CANCELED,
			    g_strdup_printf ("%sTask %s canceled%s (%s)", C_YELLOW (ctl), f->name,
					     C_OFF (ctl), reason),
			    end_json (f, "canceled", FALSE, NULL, NULL, reason));
	} else if (g_str_equal (iface, PROPS_IFACE) && g_str_equal (member, "PropertiesChanged") &&
		   g_variant_is_of_type (params, G_VARIANT_TYPE ("(sa{sv}as)"))) {
		g_autoptr(GVariant) changed = NULL;
		guint estimate;

		g_variant_get (params, "(&s@a{sv}@as)", NULL, &changed, NULL);
		if (g_variant_lookup (changed, "Estimate", "u", &estimate) && estimate != 0) {
			f->estimate = estimate;
			if (f->replied && !f->ended && bgs_shell_stdout_is_tty (ctl->shell) && !ctl->json)
				follow_draw (f);
		}
	}
}

static void
follow_vanished_cb (GDBusConnection *bus, const char *name, gpointer user_data)
{
	Follow *f = user_data;

	/* a Request still in flight fails with the agent: request_cb ends it */
	if (!f->replied) {
		f->vanished = TRUE;
		return;
	}
	follow_end (f, EXIT_NOT_RUNNING,
		    g_strdup_printf ("%sThe bgsync agent stopped%s while following task %s",
				     C_RED (f->ctl), C_OFF (f->ctl), f->name),
		    end_json (f, "agent-stopped", FALSE, NULL, NULL, "terminating"));
}

static void
cancel_reply_cb (Ctl *ctl, GVariant *reply, GUnixFDList *fds, GError *error, gpointer data)
{
	Follow *f = ctl->follow;

	if (error == NULL || f == NULL || f != data)
		return;
	/* nothing left to cancel: the end signal tells the rest, if any */
	if (g_dbus_error_is_remote_error (error)) {
		g_autofree char *name = g_dbus_error_get_remote_error (error);

		if (g_strcmp0 (name, "org.bgsync.Error.NotRunning") == 0 && f->replied && !f->allowed)
			return;
	}
	bgs_shell_printerr (ctl->shell, "Cannot cancel task %s: %s\n", f->name, error->message);
}

static void
follow_cancel (Follow *f)
{
	if (f->cancel_sent)
		return;
	f->cancel_sent = TRUE;
	if (!f->ctl->json)
		bgs_shell_print (f->ctl->shell, "Canceling task %s...\n", f->name);
	ctl_call (f->ctl, f->path, TASK_IFACE, "Cancel", NULL, NULL, 0, NULL, cancel_reply_cb, f);
}

static void
follow_stop_watching (Follow *f)
{
	Ctl *ctl = f->ctl;

	if (!ctl->json) {
		if (bgs_shell_is_interactive (ctl->shell))
			bgs_shell_print (ctl->shell, "Stopped watching task %s; it keeps running (see tasks, events)\n",
					 f->name);
		else
			bgs_shell_print (ctl->shell, "Stopped watching task %s; the agent ends it when no bgsyncctl of yours is left connected\n",
					 f->name);
	} else {
		print_json (ctl, end_json (f, "detached", FALSE, NULL, NULL, ""));
	}
	follow_finish (f, EXIT_OK);
}

static void
follow_answer_cb (BgsShell *shell, const char *answer, gpointer user_data)
{
	Follow *f = user_data;

	f->question = 0;
	if (answer == NULL)
		return;
	g_strstrip ((char *) answer);
	if (g_ascii_strcasecmp (answer, "c") == 0 || g_ascii_strcasecmp (answer, "cancel") == 0)
		follow_cancel (f);
	else if (g_ascii_strcasecmp (answer, "s") == 0 || g_ascii_strcasecmp (answer, "stop") == 0)
		follow_stop_watching (f);
}

static void
follow_interrupt_cb (BgsShell *shell, gpointer user_data)
{
	Follow *f = user_data;

	/* a script (no terminal to ask on) or a second Ctrl-C after canceling */
	if ((!bgs_shell_is_interactive (shell) && !bgs_shell_stdin_is_tty (shell)) || f->cancel_sent) {
		if (f->cancel_sent) {
			follow_stop_watching (f);
			return;
		}
		follow_cancel (f);
		return;
	}
	if (f->question != 0)
		return;
	f->question = bgs_shell_ask (shell, "Cancel the task ([c]ancel), stop watching ([s]top), or keep watching (Enter)? ",
				     follow_answer_cb, f);
}

static const char *
result_text (const char *result, const char *reason)
{
	if (g_str_equal (reason, "no-consent-agent"))
		return "no consent agent is registered for you (run bgsync-prompt, or bgsyncctl agent on)";
	if (g_str_equal (reason, "consent-denied"))
		return "the user did not allow it";
	if (g_str_equal (reason, "consent-timeout"))
		return "nobody answered the consent prompt in time";
	if (g_str_equal (reason, "unknown-device"))
		return "the agent does not know this device (see devices)";
	if (g_str_equal (reason, "not-present"))
		return "the device is not in range";
	return reason;
}

static void
request_cb (Ctl *ctl, GVariant *reply, GUnixFDList *fds, GError *error, gpointer data)
{
	Follow *f = data;
	const char *result, *reason;

	if (error != NULL) {
		g_autofree char *remote = g_dbus_error_get_remote_error (error);
		int status;

		bgs_shell_status (ctl->shell, NULL);
		/* the agent left while we waited (crash, stop): say that */
		if (f->vanished && status_for_error_name (remote) != EXIT_NOT_RUNNING) {
			g_autofree char *msg = g_strdup_printf ("the bgsync agent left the bus before answering the request of task %s",
								f->name);
			status = report_error_name (ctl, CTL_ERROR_NOT_RUNNING, msg);
		} else {
			status = report_error (ctl, error);
		}

		f->replied = TRUE;
		f->ended = TRUE;
		follow_finish (f, status);
		return;
	}
	g_variant_get (reply, "(&s&s)", &result, &reason);
	f->replied = TRUE;
	f->allowed = g_str_equal (result, "allowed");
	if (!f->allowed) {
		int status = g_str_equal (reason, "unknown-device") ? EXIT_NOT_FOUND : EXIT_DENIED;

		bgs_shell_status (ctl->shell, NULL);
		if (ctl->json) {
			g_autoptr(JsonBuilder) b = json_builder_new ();

			json_builder_begin_object (b);
			json_builder_set_member_name (b, "event");
			json_builder_add_string_value (b, "denied");
			json_builder_set_member_name (b, "task");
			json_builder_add_string_value (b, f->name);
			json_builder_set_member_name (b, "device");
			json_builder_add_string_value (b, f->device);
			json_builder_set_member_name (b, "result");
			json_builder_add_string_value (b, result);
			json_builder_set_member_name (b, "reason");
			json_builder_add_string_value (b, reason);
			json_builder_end_object (b);
			print_builder (ctl, b);
		} else {
			bgs_shell_print (ctl->shell, "%sRequest not allowed%s: %s, %s (%s)\n", C_RED (ctl),
					 C_OFF (ctl), result, reason, result_text (result, reason));
		}
		follow_finish (f, status);
		return;
	}
	if (ctl->json) {
		g_autoptr(JsonBuilder) b = json_builder_new ();

		json_builder_begin_object (b);
		json_builder_set_member_name (b, "event");
		json_builder_add_string_value (b, "allowed");
		json_builder_set_member_name (b, "task");
		json_builder_add_string_value (b, f->name);
		json_builder_set_member_name (b, "device");
		json_builder_add_string_value (b, f->device);
		json_builder_set_member_name (b, "result");
		json_builder_add_string_value (b, result);
		json_builder_set_member_name (b, "reason");
		json_builder_add_string_value (b, reason);
		json_builder_end_object (b);
		print_builder (ctl, b);
	} else {
		bgs_shell_status (ctl->shell, NULL);
		bgs_shell_print (ctl->shell, "Task %s started on %s\n", f->name, f->device);
	}
	if (f->started == 0)
		f->started = g_get_monotonic_time ();
	if (f->ended) {
		/* finished before the reply arrived */
		f->ended = FALSE;
		follow_end (f, f->end_status, g_steal_pointer (&f->end_text),
			    g_steal_pointer (&f->end_json));
		return;
	}
	follow_draw (f);
}

typedef struct {
	guint estimate;
	char *args;
	char *input;
	char *output_dir;
	char *channel;
	char *device;
} RequestArgs;

static void
request_args_free (RequestArgs *r)
{
	g_free (r->args);
	g_free (r->input);
	g_free (r->output_dir);
	g_free (r->channel);
	g_free (r->device);
	g_free (r);
}

static int
open_channel (const char *path, GError **error)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	int fd;

	if (strlen (path) >= sizeof addr.sun_path) {
		g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT, "socket path too long: %s", path);
		return -1;
	}
	strcpy (addr.sun_path, path);
	fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect (fd, (struct sockaddr *) &addr, sizeof addr) < 0) {
		int saved = errno;

		if (fd >= 0)
			close (fd);
		g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved),
			     "cannot connect to %s: %s", path, g_strerror (saved));
		return -1;
	}
	return fd;
}

static gboolean
add_fd (GUnixFDList *list, GVariantBuilder *opts, const char *key, int fd, GError **error)
{
	int index = g_unix_fd_list_append (list, fd, error);

	close (fd);
	if (index < 0)
		return FALSE;
	g_variant_builder_add (opts, "{sv}", key, g_variant_new_handle (index));
	return TRUE;
}

static void
request_found_cb (Ctl *ctl, const char *path, GVariant *props, gpointer data)
{
	RequestArgs *r = data;
	g_autoptr(GUnixFDList) fds = g_unix_fd_list_new ();
	g_autoptr(GError) error = NULL;
	GVariantBuilder opts;
	Follow *f;
	int fd;

	g_variant_builder_init (&opts, G_VARIANT_TYPE_VARDICT);
	/* the app opens the files, the agent gets descriptors */
	if (r->input != NULL) {
		fd = open (r->input, O_RDONLY | O_CLOEXEC | O_NOCTTY);
		if (fd < 0) {
			int saved = errno;
			g_autofree char *msg = g_strdup_printf ("cannot open %s: %s", r->input,
								g_strerror (saved));
			bgs_shell_done (ctl->shell,
					report_error_name (ctl, saved == ENOENT ? CTL_ERROR_NOT_FOUND : CTL_ERROR_FAILED, msg));
			goto fail;
		}
		if (!add_fd (fds, &opts, "input", fd, &error))
			goto error;
	}
	if (r->output_dir != NULL) {
		fd = open (r->output_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd < 0) {
			int saved = errno;
			g_autofree char *msg = g_strdup_printf ("cannot open directory %s: %s",
								r->output_dir, g_strerror (saved));
			bgs_shell_done (ctl->shell,
					report_error_name (ctl, saved == ENOENT ? CTL_ERROR_NOT_FOUND : CTL_ERROR_FAILED, msg));
			goto fail;
		}
		if (!add_fd (fds, &opts, "output-dir", fd, &error))
			goto error;
	}
	if (r->channel != NULL) {
		fd = open_channel (r->channel, &error);
		if (fd < 0 || !add_fd (fds, &opts, "channel", fd, &error))
			goto error;
	}

	f = g_new0 (Follow, 1);
	f->ctl = ctl;
	f->name = g_strdup (dict_str (props, "Name"));
	f->path = g_strdup (path);
	f->device = g_strdup (r->device);
	f->estimate = r->estimate;
	ctl->follow = f;
	/* subscribe before asking, so no signal of the instance is missed */
	f->subscription = g_dbus_connection_signal_subscribe (ctl->bus, BUS_NAME, NULL, NULL, path,
							      NULL, G_DBUS_SIGNAL_FLAGS_NONE,
							      follow_signal_cb, f, NULL);
	f->name_watch = g_bus_watch_name_on_connection (ctl->bus, BUS_NAME,
							G_BUS_NAME_WATCHER_FLAGS_NONE, NULL,
							follow_vanished_cb, f, NULL);
	bgs_shell_set_interrupt (ctl->shell, follow_interrupt_cb, f);
	if (!ctl->json)
		bgs_shell_status (ctl->shell, "Waiting for the agent (and consent)...");
	ctl_call (ctl, path, TASK_IFACE, "Request",
		  g_variant_new ("(susa{sv})", r->device, r->estimate, r->args ? r->args : "", &opts),
		  "(ss)", ctl->request_timeout_ms, g_unix_fd_list_get_length (fds) > 0 ? fds : NULL,
		  request_cb, f);
	request_args_free (r);
	return;
error:
	bgs_shell_done (ctl->shell, report_error (ctl, error));
fail:
	g_variant_builder_clear (&opts);
	request_args_free (r);
}

static void
cmd_request (BgsShell *shell, int argc, char **argv, gpointer user_data)
{
	Ctl *ctl = user_data;
	g_auto(GStrv) args = argv_copy (argc, argv);
	int estimate = 0;
	char *arguments = NULL, *input = NULL, *output_dir = NULL, *channel = NULL;
	const GOptionEntry entries[] = {
		{ "estimate", 0, 0, G_OPTION_ARG_INT, &estimate, NULL, NULL },
		{ "args", 0, 0, G_OPTION_ARG_STRING, &arguments, NULL, NULL },
		{ "input", 0, 0, G_OPTION_ARG_FILENAME, &input, NULL, NULL },
		{ "output-dir", 0, 0, G_OPTION_ARG_FILENAME, &output_dir, NULL, NULL },
		{ "channel", 0, 0, G_OPTION_ARG_FILENAME, &channel, NULL, NULL },
		{ NULL }
	};
	RequestArgs *r;
	/* GOption drops parsed options from the array it gets: a shallow
	 * copy, so args still frees every string */
	g_autofree char **a = g_memdup2 (args, sizeof (char *) * (argc + 1));

	if (!parse_options (ctl, &argc, &a, entries) || !want_args (ctl, argc, a, 2, 2) ||
	    estimate < 0) {
		if (estimate < 0)
			bgs_shell_done (shell, usage_error (ctl, a[0], "--estimate must not be negative"));
		g_free (arguments);
		g_free (input);
		g_free (output_dir);
		g_free (channel);
		return;
	}
	r = g_new0 (RequestArgs, 1);
	r->estimate = estimate;
	r->args = arguments;
	r->input = input;
	r->output_dir = output_dir;
	r->channel = channel;
	r->device = g_strdup (a[2]);
	/* RequestArgs is freed by request_found_cb, or by lookup on no match */
	lookup_task_full (ctl, a[1], request_found_cb, r, (GDestroyNotify) request_args_free);
}

/* ---- cancel, unregister, events ------------------------------------------- */

static void
simple_done_cb (Ctl *ctl, GVariant *reply, GUnixFDList *fds, GError *error, gpointer data)
{
	g_autofree char *message = data;

	if (error != NULL) {
		bgs_shell_done (ctl->shell, report_error (ctl, error));
		return;
	}
	if (ctl->json)
		print_event (ctl, NULL);
	else if (message != NULL)
		bgs_shell_print (ctl->shell, "%s\n", message);
	bgs_shell_done (ctl->shell, EXIT_OK);
}

static void
cancel_found_cb (Ctl *ctl, const char *path, GVariant *props, gpointer data)
{
	g_free (data);
	ctl_call (ctl, path, TASK_IFACE, "Cancel", NULL, NULL, 0, NULL, simple_done_cb,
		  g_strdup_printf ("Canceled task %s", dict_str (props, "Name")));
}

static void
cmd_cancel (BgsShell *shell, int argc, char **argv, gpointer user_data)
{
	Ctl *ctl = user_data;

	if (!want_args (ctl, argc, argv, 1, 1))
		return;
	lookup_task (ctl, argv[1], cancel_found_cb, NULL);
}

static void
unregister_found_cb (Ctl *ctl, const char *path, GVariant *props, gpointer data)
{
	gboolean *cancel_running = data;

	ctl_call (ctl, path, TASK_IFACE, "Unregister", g_variant_new ("(b)", *cancel_running), NULL,
		  0, NULL, simple_done_cb,
		  g_strdup_printf ("Unregistered task %s", dict_str (props, "Name")));
	g_free (cancel_running);
}

static void
cmd_unregister (BgsShell *shell, int argc, char **argv, gpointer user_data)
{
	Ctl *ctl = user_data;
	g_auto(GStrv) args = argv_copy (argc, argv);
	gboolean cancel_running = FALSE;
	const GOptionEntry entries[] = {
		{ "cancel-running", 0, 0, G_OPTION_ARG_NONE, &cancel_running, NULL, NULL },
		{ NULL }
	};
	/* GOption drops parsed options from the array it gets: a shallow
	 * copy, so args still frees every string */
	g_autofree char **a = g_memdup2 (args, sizeof (char *) * (argc + 1));

	if (!parse_options (ctl, &argc, &a, entries) || !want_args (ctl, argc, a, 1, 1))
		return;
	lookup_task (ctl, a[1], unregister_found_cb, g_memdup2 (&cancel_running, sizeof cancel_running));
}

static void
events_cb (Ctl *ctl, GVariant *reply, GUnixFDList *fds, GError *error, gpointer data)
{
	g_autofree char *name = data;
	g_autoptr(GVariantIter) iter = NULL;
	g_autoptr(JsonBuilder) b = NULL;
	guint64 seq;
	const char *kind;
	GVariant *d;
	guint n = 0;

	if (error != NULL) {
		bgs_shell_done (ctl->shell, report_error (ctl, error));
		return;
	}
	g_variant_get (reply, "(a(tsa{sv}))", &iter);
	if (ctl->json) {
		b = json_builder_new ();
		json_builder_begin_object (b);
		json_builder_set_member_name (b, "events");
		json_builder_begin_array (b);
	}
	while (g_variant_iter_next (iter, "(t&s@a{sv})", &seq, &kind, &d)) {
		if (ctl->json) {
			json_builder_begin_object (b);
			json_builder_set_member_name (b, "sequence");
			json_builder_add_int_value (b, (gint64) seq);
			json_builder_set_member_name (b, "kind");
			json_builder_add_string_value (b, kind);
			json_builder_set_member_name (b, "data");
			json_builder_add_value (b, json_gvariant_serialize (d));
			json_builder_end_object (b);
		} else {
			g_autofree char *when = format_time_usec (dict_u64 (d, "time"));
			guint dropped = (guint) dict_u64 (d, "dropped");

			if (g_str_equal (kind, "progress"))
				bgs_shell_print (ctl->shell, "%" G_GUINT64_FORMAT "  %s  progress %u%% %s\n",
						 seq, when, (guint) dict_u64 (d, "percent"), dict_str (d, "status"));
			else if (g_str_equal (kind, "completed"))
				bgs_shell_print (ctl->shell, "%" G_GUINT64_FORMAT "  %s  completed %s%s%s%s%s\n",
						 seq, when, dict_bool (d, "success") ? "ok" : "failed",
						 *dict_str (d, "error") ? " " : "", dict_str (d, "error"),
						 *dict_str (d, "message") ? ": " : "", dict_str (d, "message"));
			else
				bgs_shell_print (ctl->shell, "%" G_GUINT64_FORMAT "  %s  %s %s\n", seq, when,
						 kind, dict_str (d, "reason"));
			if (dropped > 0)
				bgs_shell_print (ctl->shell, "   (%u earlier events were dropped: queue full)\n",
						 dropped);
		}
		n++;
		g_variant_unref (d);
	}
	if (ctl->json) {
		json_builder_end_array (b);
		json_builder_end_object (b);
		print_builder (ctl, b);
	} else if (n == 0) {
		bgs_shell_print (ctl->shell, "No queued events for task %s\n", name);
	}
	bgs_shell_done (ctl->shell, EXIT_OK);
}

static void
events_found_cb (Ctl *ctl, const char *path, GVariant *props, gpointer data)
{
	g_free (data);
	ctl_call (ctl, path, TASK_IFACE, "TakeEvents", NULL, "(a(tsa{sv}))", 0, NULL, events_cb,
		  g_strdup (dict_str (props, "Name")));
}

static void
cmd_events (BgsShell *shell, int argc, char **argv, gpointer user_data)
{
	Ctl *ctl = user_data;

	if (!want_args (ctl, argc, argv, 1, 1))
		return;
	lookup_task (ctl, argv[1], events_found_cb, NULL);
}

/* ---- history, consents, revoke, raise ------------------------------------ */

static void
history_cb (Ctl *ctl, GVariant *reply, GUnixFDList *fds, GError *error, gpointer data)
{
	g_autoptr(GVariantIter) iter = NULL;
	g_autoptr(JsonBuilder) b = NULL;
	GVariant *e;
	guint n = 0;

	if (error != NULL) {
		bgs_shell_done (ctl->shell, report_error (ctl, error));
		return;
	}
	g_variant_get (reply, "(aa{sv})", &iter);
	if (ctl->json) {
		b = json_builder_new ();
		json_builder_begin_object (b);
		json_builder_set_member_name (b, "history");
		json_builder_begin_array (b);
	}
	while (g_variant_iter_next (iter, "@a{sv}", &e)) {
		if (ctl->json) {
			json_builder_add_value (b, json_gvariant_serialize (e));
		} else {
			guint64 started = dict_u64 (e, "started"), ended = dict_u64 (e, "ended");
			g_autofree char *when = format_time_usec (started);
			g_autofree char *dur = ended >= started && ended != 0 ?
				format_duration ((ended - started) / G_USEC_PER_SEC) : g_strdup ("-");
			const char *reason = dict_str (e, "reason");

			if (n == 0)
				bgs_shell_print (ctl->shell, "%-19s  %-20s  %-22s  %-17s  %-16s  %8s  %9s  %9s  %s\n",
						 "STARTED", "TASK", "APP", "DEVICE", "TRIGGER", "DURATION",
						 "BYTES IN", "BYTES OUT", "RESULT");
			bgs_shell_print (ctl->shell, "%-19s  %-20s  %-22s  %-17s  %-16s  %8s  %9" G_GUINT64_FORMAT "  %9" G_GUINT64_FORMAT "  %s%s%s%s\n",
					 when, *dict_str (e, "task-name") ? dict_str (e, "task-name") : dict_str (e, "task"),
					 dict_str (e, "app-id"),
					 *dict_str (e, "device") ? dict_str (e, "device") : "-",
					 dict_str (e, "trigger"), dur, dict_u64 (e, "bytes-in"),
					 dict_u64 (e, "bytes-out"), dict_str (e, "result"),
					 *reason ? " (" : "", reason, *reason ? ")" : "");
		}
		n++;
		g_variant_unref (e);
	}
	if (ctl->json) {
		json_builder_end_array (b);
		json_builder_end_object (b);
		print_builder (ctl, b);
	} else if (n == 0) {
		bgs_shell_print (ctl->shell, "No history\n");
	}
	bgs_shell_done (ctl->shell, EXIT_OK);
}

static void
cmd_history (BgsShell *shell, int argc, char **argv, gpointer user_data)
{
	Ctl *ctl = user_data;
	g_auto(GStrv) args = argv_copy (argc, argv);
	int limit = 0;
	const GOptionEntry entries[] = {
		{ "limit", 0, 0, G_OPTION_ARG_INT, &limit, NULL, NULL },
		{ NULL }
	};
	/* GOption drops parsed options from the array it gets: a shallow
	 * copy, so args still frees every string */
	g_autofree char **a = g_memdup2 (args, sizeof (char *) * (argc + 1));

	if (!parse_options (ctl, &argc, &a, entries) || !want_args (ctl, argc, a, 0, 0))
		return;
	if (limit < 0) {
		bgs_shell_done (shell, usage_error (ctl, a[0], "--limit must not be negative"));
		return;
	}
	manager_call (ctl, "GetHistory", g_variant_new ("(u)", (guint) limit), "(aa{sv})",
		      history_cb, NULL);
}

static void
consents_cb (Ctl *ctl, GVariant *reply, GUnixFDList *fds, GError *error, gpointer data)
{
	g_autoptr(GVariantIter) iter = NULL;
	g_autoptr(JsonBuilder) b = NULL;
	const char *app_id, *app_name, *model;
	gboolean allowed;
	guint64 t;
	guint n = 0;

	if (error != NULL) {
		bgs_shell_done (ctl->shell, report_error (ctl, error));
		return;
	}
	g_variant_get (reply, "(a(sssbt))", &iter);
	if (ctl->json) {
		b = json_builder_new ();
		json_builder_begin_object (b);
		json_builder_set_member_name (b, "consents");
		json_builder_begin_array (b);
	}
	while (g_variant_iter_next (iter, "(&s&s&sbt)", &app_id, &app_name, &model, &allowed, &t)) {
		if (ctl->json) {
			json_builder_begin_object (b);
			json_builder_set_member_name (b, "app-id");
			json_builder_add_string_value (b, app_id);
			json_builder_set_member_name (b, "app-name");
			json_builder_add_string_value (b, app_name);
			json_builder_set_member_name (b, "model");
			json_builder_add_string_value (b, model);
			json_builder_set_member_name (b, "allowed");
			json_builder_add_boolean_value (b, allowed);
			json_builder_set_member_name (b, "time");
			json_builder_add_int_value (b, (gint64) t);
			json_builder_end_object (b);
		} else {
			/* the time is unix seconds here */
			g_autofree char *when = format_time_usec (t * G_USEC_PER_SEC);

			if (n == 0)
				bgs_shell_print (ctl->shell, "%-28s  %-24s  %-20s  %-7s  %s\n", "APP",
						 "NAME", "MODEL", "ANSWER", "DECIDED");
			bgs_shell_print (ctl->shell, "%-28s  %-24s  %-20s  %-7s  %s\n", app_id, app_name,
					 model, allowed ? "allowed" : "denied", when);
		}
		n++;
	}
	if (ctl->json) {
		json_builder_end_array (b);
		json_builder_end_object (b);
		print_builder (ctl, b);
	} else if (n == 0) {
		bgs_shell_print (ctl->shell, "No stored consents\n");
	}
	bgs_shell_done (ctl->shell, EXIT_OK);
}

static void
cmd_consents (BgsShell *shell, int argc, char **argv, gpointer user_data)
{
	Ctl *ctl = user_data;

	if (!want_args (ctl, argc, argv, 0, 0))
		return;
	manager_call (ctl, "GetConsents", NULL, "(a(sssbt))", consents_cb, NULL);
}

static void
cmd_revoke (BgsShell *shell, int argc, char **argv, gpointer user_data)
{
	Ctl *ctl = user_data;
	const char *app = argc > 1 ? argv[1] : "";
	const char *model = argc > 2 ? argv[2] : "";

	if (!want_args (ctl, argc, argv, 0, 2))
		return;
	manager_call (ctl, "RevokeConsent", g_variant_new ("(ss)", app, model), NULL, simple_done_cb,
		      g_strdup_printf ("Revoked consent of %s for %s", *app ? app : "bgsyncctl",
				       *model ? model : "every model"));
}

static void
raise_cb (Ctl *ctl, GVariant *reply, GUnixFDList *fds, GError *error, gpointer data)
{
	guint started;

	if (error != NULL) {
		bgs_shell_done (ctl->shell, report_error (ctl, error));
		return;
	}
	g_variant_get (reply, "(u)", &started);
	if (ctl->json) {
		g_autoptr(JsonBuilder) b = json_builder_new ();

		json_builder_begin_object (b);
		json_builder_set_member_name (b, "started");
		json_builder_add_int_value (b, started);
		json_builder_end_object (b);
		print_builder (ctl, b);
	} else {
		bgs_shell_print (ctl->shell, "Started %u task instance%s\n", started, started == 1 ? "" : "s");
	}
	bgs_shell_done (ctl->shell, EXIT_OK);
}

static void
cmd_raise (BgsShell *shell, int argc, char **argv, gpointer user_data)
{
	Ctl *ctl = user_data;

	if (!want_args (ctl, argc, argv, 1, 2))
		return;
	manager_call (ctl, "RaiseCustomTrigger",
		      g_variant_new ("(ss)", argv[1], argc > 2 ? argv[2] : ""), "(u)", raise_cb, NULL);
}

/* ---- consent agent ----------------------------------------------------------- */

typedef struct {
	Ctl *ctl;
	GDBusMethodInvocation *invocation;
	guint question;
	char *app_name;
	char *model;
	char *device;
	char *kind;
} Consent;

static void
consent_free (Consent *c)
{
	g_clear_object (&c->invocation);
	g_free (c->app_name);
	g_free (c->model);
	g_free (c->device);
	g_free (c->kind);
	g_free (c);
}

static void
consent_reply (Consent *c, gboolean allow, const char *how)
{
	Ctl *ctl = c->ctl;

	if (ctl->json) {
		g_autoptr(JsonBuilder) b = json_builder_new ();

		json_builder_begin_object (b);
		json_builder_set_member_name (b, "event");
		json_builder_add_string_value (b, "consent-answer");
		json_builder_set_member_name (b, "device");
		json_builder_add_string_value (b, c->device);
		json_builder_set_member_name (b, "allow");
		json_builder_add_boolean_value (b, allow);
		json_builder_set_member_name (b, "how");
		json_builder_add_string_value (b, how);
		json_builder_end_object (b);
		print_builder (ctl, b);
	} else {
		bgs_shell_print (ctl->shell, "%s %s for %s on %s (%s)\n", allow ? "Allowed" : "Denied",
				 c->kind, c->app_name, c->model, how);
	}
	if (c->invocation != NULL)
		bgs_dbus_consent_agent1_complete_request_consent (ctl->agent,
								  g_steal_pointer (&c->invocation),
								  allow);
	g_ptr_array_remove (ctl->consents, c);
}

static void
consent_answer_cb (BgsShell *shell, const char *answer, gpointer user_data)
{
	Consent *c = user_data;
	gboolean allow;

	c->question = 0;
	if (c->invocation == NULL)
		return; /* canceled by the agent; already removed */
	allow = answer != NULL && (g_ascii_strcasecmp (g_strstrip ((char *) answer), "y") == 0 ||
				   g_ascii_strcasecmp (answer, "yes") == 0);
	consent_reply (c, allow, answer == NULL ? "no answer" : "answered");
}

static const char *
warning_text (const char *w)
{
	if (g_str_equal (w, "keep-in-range"))
		return "Keep the device in range";
	if (g_str_equal (w, "keep-charged"))
		return "Keep this computer charged";
	return w;
}

static gboolean
handle_request_consent (BgsDBusConsentAgent1 *agent, GDBusMethodInvocation *invocation,
			const char *app_id, const char *app_name, const char *device,
			const char *model, const char *kind, guint estimate,
			const char *const *warnings, gpointer user_data)
{
	Ctl *ctl = user_data;
	Consent *c;
	g_autoptr(GString) text = g_string_new (NULL);
	g_autofree char *question = NULL;
	gboolean servicing = g_str_equal (kind, "device-servicing");

	/* only the agent may ask */
	if (g_strcmp0 (g_dbus_method_invocation_get_sender (invocation), ctl->daemon_owner) != 0) {
		g_dbus_method_invocation_return_dbus_error (invocation, "org.bgsync.Error.NotAuthorized",
							    "only org.bgsync may ask for consent");
		return TRUE;
	}
	c = g_new0 (Consent, 1);
	c->ctl = ctl;
	c->invocation = g_object_ref (invocation);
	c->app_name = g_strdup (app_name);
	c->model = g_strdup (model);
	c->device = g_strdup (device);
	c->kind = g_strdup (kind);
	g_ptr_array_add (ctl->consents, c);

	if (ctl->json) {
		g_autoptr(JsonBuilder) b = json_builder_new ();

		json_builder_begin_object (b);
		json_builder_set_member_name (b, "event");
		json_builder_add_string_value (b, "consent-request");
		json_builder_set_member_name (b, "app-id");
		json_builder_add_string_value (b, app_id);
		json_builder_set_member_name (b, "app-name");
		json_builder_add_string_value (b, app_name);
		json_builder_set_member_name (b, "device");
		json_builder_add_string_value (b, device);
		json_builder_set_member_name (b, "model");
		json_builder_add_string_value (b, model);
		json_builder_set_member_name (b, "kind");
		json_builder_add_string_value (b, kind);
		json_builder_set_member_name (b, "estimate");
		json_builder_add_int_value (b, estimate);
		json_builder_set_member_name (b, "warnings");
		json_builder_begin_array (b);
		for (guint i = 0; warnings[i] != NULL; i++)
			json_builder_add_string_value (b, warnings[i]);
		json_builder_end_array (b);
		json_builder_end_object (b);
		print_builder (ctl, b);
	} else {
		g_string_append_printf (text, "Consent request: %s (%s) wants to %s %s (%s)\n", app_name,
					app_id, servicing ? "service (update)" : "sync with", model, device);
		g_string_append_printf (text, "  kind: %s", kind);
		if (estimate > 0) {
			g_autofree char *d = format_duration (estimate);
			g_string_append_printf (text, ", estimated time: %s", d);
		}
		g_string_append (text, "\n");
		for (guint i = 0; warnings[i] != NULL; i++)
			g_string_append_printf (text, "  warning: %s\n", warning_text (warnings[i]));
		bgs_shell_print (ctl->shell, "%s", text->str);
	}
	if (ctl->agent_mode == AGENT_ACCEPT) {
		consent_reply (c, TRUE, "auto-accept");
		return TRUE;
	}
	if (ctl->agent_mode == AGENT_DENY) {
		consent_reply (c, FALSE, "auto-deny");
		return TRUE;
	}
	question = g_strdup_printf ("Allow %s to %s %s? (y/N): ", app_name,
				    servicing ? "update" : "use", model);
	c->question = bgs_shell_ask (ctl->shell, question, consent_answer_cb, c);
	return TRUE;
}

static gboolean
handle_cancel (BgsDBusConsentAgent1 *agent, GDBusMethodInvocation *invocation, gpointer user_data)
{
	Ctl *ctl = user_data;

	if (g_strcmp0 (g_dbus_method_invocation_get_sender (invocation), ctl->daemon_owner) != 0) {
		g_dbus_method_invocation_return_dbus_error (invocation, "org.bgsync.Error.NotAuthorized",
							    "only org.bgsync may cancel");
		return TRUE;
	}
	/* the agent gave up waiting: take the questions back */
	while (ctl->consents->len > 0) {
		Consent *c = ctl->consents->pdata[0];
		guint q = c->question;

		if (!ctl->json)
			bgs_shell_print (ctl->shell, "Consent request for %s on %s canceled by the agent\n",
					 c->app_name, c->model);
		if (c->invocation != NULL)
			bgs_dbus_consent_agent1_complete_request_consent (ctl->agent,
									  g_steal_pointer (&c->invocation),
									  FALSE);
		c->question = 0;
		g_ptr_array_remove_index (ctl->consents, 0);
		if (q != 0)
			bgs_shell_withdraw (ctl->shell, q);
	}
	bgs_dbus_consent_agent1_complete_cancel (agent, invocation);
	return TRUE;
}

static void
agent_unexport (Ctl *ctl)
{
	if (ctl->agent != NULL &&
	    g_dbus_interface_skeleton_get_connection (G_DBUS_INTERFACE_SKELETON (ctl->agent)) != NULL)
		g_dbus_interface_skeleton_unexport (G_DBUS_INTERFACE_SKELETON (ctl->agent));
	if (ctl->agent_watch != 0) {
		g_bus_unwatch_name (ctl->agent_watch);
		ctl->agent_watch = 0;
	}
	ctl->agent_registered = FALSE;
}

static gboolean
handle_release (BgsDBusConsentAgent1 *agent, GDBusMethodInvocation *invocation, gpointer user_data)
{
	Ctl *ctl = user_data;

	if (g_strcmp0 (g_dbus_method_invocation_get_sender (invocation), ctl->daemon_owner) != 0) {
		g_dbus_method_invocation_return_dbus_error (invocation, "org.bgsync.Error.NotAuthorized",
							    "only org.bgsync may release");
		return TRUE;
	}
	bgs_dbus_consent_agent1_complete_release (agent, invocation);
	/* our own UnregisterConsentAgent: its reply finishes the command */
	if (ctl->agent_unregistering)
		return TRUE;
	if (ctl->json)
		print_event (ctl, "agent-released");
	else
		bgs_shell_print (ctl->shell, "Consent agent released by the bgsync agent\n");
	agent_unexport (ctl);
	if (!bgs_shell_is_interactive (ctl->shell))
		bgs_shell_done (ctl->shell, EXIT_OK);
	return TRUE;
}

static void
daemon_appeared_cb (GDBusConnection *bus, const char *name, const char *owner, gpointer user_data)
{
	Ctl *ctl = user_data;

	g_free (ctl->daemon_owner);
	ctl->daemon_owner = g_strdup (owner);
}

static void
daemon_vanished_cb (GDBusConnection *bus, const char *name, gpointer user_data)
{
	Ctl *ctl = user_data;
	gboolean was = ctl->daemon_owner != NULL;

	g_clear_pointer (&ctl->daemon_owner, g_free);
	if (!was || !ctl->agent_registered)
		return;
	if (!ctl->json)
		bgs_shell_printerr (ctl->shell, "The bgsync agent stopped; consent agent is off\n");
	agent_unexport (ctl);
	if (!bgs_shell_is_interactive (ctl->shell))
		bgs_shell_done (ctl->shell, EXIT_NOT_RUNNING);
}

static void
agent_interrupt_cb (BgsShell *shell, gpointer user_data);

static void
agent_registered_cb (Ctl *ctl, GVariant *reply, GUnixFDList *fds, GError *error, gpointer data)
{
	const char *mode = ctl->agent_mode == AGENT_ACCEPT ? "auto-accept" :
			   ctl->agent_mode == AGENT_DENY ? "auto-deny" : "ask";

	if (error != NULL) {
		agent_unexport (ctl);
		bgs_shell_done (ctl->shell, report_error (ctl, error));
		return;
	}
	ctl->agent_registered = TRUE;
	if (ctl->json) {
		g_autoptr(JsonBuilder) b = json_builder_new ();

		json_builder_begin_object (b);
		json_builder_set_member_name (b, "event");
		json_builder_add_string_value (b, "agent-registered");
		json_builder_set_member_name (b, "mode");
		json_builder_add_string_value (b, mode);
		json_builder_end_object (b);
		print_builder (ctl, b);
	} else {
		bgs_shell_print (ctl->shell, "Consent agent registered (%s)%s\n", mode,
				 bgs_shell_is_interactive (ctl->shell) ? "" :
				 "; answering consent requests until Ctrl-C");
	}
	if (bgs_shell_is_interactive (ctl->shell)) {
		bgs_shell_done (ctl->shell, EXIT_OK);
	} else {
		bgs_shell_set_interrupt (ctl->shell, agent_interrupt_cb, ctl);
	}
}

static void
agent_unregistered_cb (Ctl *ctl, GVariant *reply, GUnixFDList *fds, GError *error, gpointer data)
{
	ctl->agent_unregistering = FALSE;
	agent_unexport (ctl);
	if (error != NULL) {
		bgs_shell_done (ctl->shell, report_error (ctl, error));
		return;
	}
	if (ctl->json)
		print_event (ctl, "agent-unregistered");
	else
		bgs_shell_print (ctl->shell, "Consent agent unregistered\n");
	bgs_shell_done (ctl->shell, EXIT_OK);
}

static void
agent_interrupt_cb (BgsShell *shell, gpointer user_data)
{
	Ctl *ctl = user_data;

	bgs_shell_set_interrupt (shell, NULL, NULL);
	if (!ctl->agent_registered) {
		bgs_shell_done (shell, EXIT_OK);
		return;
	}
	ctl->agent_unregistering = TRUE;
	manager_call (ctl, "UnregisterConsentAgent", g_variant_new ("(o)", AGENT_PATH), NULL,
		      agent_unregistered_cb, NULL);
}

static void
cmd_agent (BgsShell *shell, int argc, char **argv, gpointer user_data)
{
	Ctl *ctl = user_data;
	g_auto(GStrv) args = argv_copy (argc, argv);
	gboolean accept = FALSE, deny = FALSE;
	g_autoptr(GError) error = NULL;
	const GOptionEntry entries[] = {
		{ "auto-accept", 0, 0, G_OPTION_ARG_NONE, &accept, NULL, NULL },
		{ "auto-deny", 0, 0, G_OPTION_ARG_NONE, &deny, NULL, NULL },
		{ NULL }
	};
	/* GOption drops parsed options from the array it gets: a shallow
	 * copy, so args still frees every string */
	g_autofree char **a = g_memdup2 (args, sizeof (char *) * (argc + 1));

	if (!parse_options (ctl, &argc, &a, entries) || !want_args (ctl, argc, a, 1, 1))
		return;
	if (accept && deny) {
		bgs_shell_done (shell, usage_error (ctl, a[0], "--auto-accept or --auto-deny, not both"));
		return;
	}
	if (g_str_equal (a[1], "off")) {
		if (!ctl->agent_registered) {
			bgs_shell_done (shell, report_error_name (ctl, CTL_ERROR_NOT_FOUND,
								  "no consent agent registered by this bgsyncctl"));
			return;
		}
		ctl->agent_unregistering = TRUE;
		manager_call (ctl, "UnregisterConsentAgent", g_variant_new ("(o)", AGENT_PATH), NULL,
			      agent_unregistered_cb, NULL);
		return;
	}
	if (!g_str_equal (a[1], "on")) {
		bgs_shell_done (shell, usage_error (ctl, a[0], "agent on or agent off"));
		return;
	}
	ctl->agent_mode = accept ? AGENT_ACCEPT : deny ? AGENT_DENY : AGENT_ASK;
	if (ctl->agent_registered) {
		/* only the mode changes */
		if (!ctl->json)
			bgs_shell_print (shell, "Consent agent already registered; mode updated\n");
		bgs_shell_done (shell, EXIT_OK);
		return;
	}
	if (ctl->agent_mode == AGENT_ASK && !bgs_shell_stdin_is_tty (shell) &&
	    !bgs_shell_is_interactive (shell) && !ctl->json)
		bgs_shell_print (shell, "Reading answers from standard input (not a terminal)\n");
	if (ctl->agent == NULL) {
		ctl->agent = bgs_dbus_consent_agent1_skeleton_new ();
		g_signal_connect (ctl->agent, "handle-request-consent",
				  G_CALLBACK (handle_request_consent), ctl);
		g_signal_connect (ctl->agent, "handle-cancel", G_CALLBACK (handle_cancel), ctl);
		g_signal_connect (ctl->agent, "handle-release", G_CALLBACK (handle_release), ctl);
	}
	if (!g_dbus_interface_skeleton_export (G_DBUS_INTERFACE_SKELETON (ctl->agent), ctl->bus,
					       AGENT_PATH, &error)) {
		bgs_shell_done (shell, report_error (ctl, error));
		return;
	}
	ctl->agent_watch = g_bus_watch_name_on_connection (ctl->bus, BUS_NAME,
							   G_BUS_NAME_WATCHER_FLAGS_NONE,
							   daemon_appeared_cb, daemon_vanished_cb,
							   ctl, NULL);
	manager_call (ctl, "RegisterConsentAgent", g_variant_new ("(o)", AGENT_PATH), NULL,
		      agent_registered_cb, NULL);
}

/* ---- monitor ------------------------------------------------------------------ */

static const char *
device_label (Ctl *ctl, const char *path)
{
	const char *addr = g_hash_table_lookup (ctl->device_addrs, path);

	return addr != NULL ? addr : path;
}

static void
monitor_json_event (Ctl *ctl, const char *event, const char *key, const char *who,
		    const char *member, GVariant *value)
{
	g_autoptr(JsonBuilder) b = json_builder_new ();

	json_builder_begin_object (b);
	json_builder_set_member_name (b, "event");
	json_builder_add_string_value (b, event);
	json_builder_set_member_name (b, key);
	json_builder_add_string_value (b, who);
	json_builder_set_member_name (b, member);
	json_builder_add_value (b, json_gvariant_serialize (value));
	json_builder_end_object (b);
	print_builder (ctl, b);
}

static void
monitor_device_cb (GDBusConnection *bus, const char *sender, const char *path, const char *iface,
		   const char *member, GVariant *params, gpointer user_data)
{
	Ctl *ctl = user_data;
	g_autoptr(GVariant) changed = NULL;
	const char *iface_name;
	GVariantIter iter;
	const char *key;
	GVariant *value;

	if (!g_variant_is_of_type (params, G_VARIANT_TYPE ("(sa{sv}as)")))
		return;
	g_variant_get (params, "(&s@a{sv}@as)", &iface_name, &changed, NULL);
	if (g_str_equal (iface_name, DEVICE_IFACE)) {
		const char *addr = NULL;

		if (g_variant_lookup (changed, "Address", "&s", &addr))
			g_hash_table_replace (ctl->device_addrs, g_strdup (path), g_strdup (addr));
		if (ctl->json) {
			g_autoptr(JsonBuilder) b = json_builder_new ();

			json_builder_begin_object (b);
			json_builder_set_member_name (b, "event");
			json_builder_add_string_value (b, "device-changed");
			json_builder_set_member_name (b, "device");
			json_builder_add_string_value (b, device_label (ctl, path));
			json_builder_set_member_name (b, "path");
			json_builder_add_string_value (b, path);
			json_builder_set_member_name (b, "changed");
			json_builder_add_value (b, json_gvariant_serialize (changed));
			json_builder_end_object (b);
			print_builder (ctl, b);
			return;
		}
		g_variant_iter_init (&iter, changed);
		while (g_variant_iter_next (&iter, "{&sv}", &key, &value)) {
			g_autofree char *v = NULL;

			if (g_variant_is_of_type (value, G_VARIANT_TYPE_BOOLEAN))
				v = g_strdup (g_variant_get_boolean (value) ? "yes" : "no");
			else if (g_str_equal (key, "LastSeen") && g_variant_is_of_type (value, G_VARIANT_TYPE_UINT64))
				v = format_time_usec (g_variant_get_uint64 (value));
			else if (g_variant_is_of_type (value, G_VARIANT_TYPE_STRING))
				v = g_variant_dup_string (value, NULL);
			else
				v = g_variant_print (value, FALSE);
			bgs_shell_print (ctl->shell, "[CHG] Device %s %s: %s\n", device_label (ctl, path), key, v);
			g_variant_unref (value);
		}
	} else if (g_str_equal (iface_name, TASK_IFACE)) {
		const char *name = g_hash_table_lookup (ctl->task_names, path);
		const char *state;

		if (ctl->json) {
			monitor_json_event (ctl, "task-changed", "task", name ? name : path, "changed", changed);
			return;
		}
		if (g_variant_lookup (changed, "State", "&s", &state))
			bgs_shell_print (ctl->shell, "[TASK] %s state: %s\n", name ? name : path, state);
	}
}

static void
monitor_task_cb (GDBusConnection *bus, const char *sender, const char *path, const char *iface,
		 const char *member, GVariant *params, gpointer user_data)
{
	Ctl *ctl = user_data;
	const char *name = g_hash_table_lookup (ctl->task_names, path);
	g_autofree char *args = NULL;

	if (name == NULL)
		name = path;
	if (ctl->json) {
		monitor_json_event (ctl, g_str_equal (member, "Progress") ? "task-progress" :
				    g_str_equal (member, "Completed") ? "task-completed" : "task-canceled",
				    "task", name, "args", params);
		return;
	}
	if (g_str_equal (member, "Progress") && g_variant_is_of_type (params, G_VARIANT_TYPE ("(us)"))) {
		guint percent;
		const char *status;

		g_variant_get (params, "(u&s)", &percent, &status);
		bgs_shell_print (ctl->shell, "[TASK] %s progress %u%% %s\n", name, percent, status);
	} else if (g_str_equal (member, "Completed") && g_variant_is_of_type (params, G_VARIANT_TYPE ("(bss)"))) {
		gboolean success;
		const char *error, *message;

		g_variant_get (params, "(b&s&s)", &success, &error, &message);
		bgs_shell_print (ctl->shell, "[TASK] %s %s%s%s%s%s\n", name, success ? "completed" : "failed",
				 *error ? " " : "", error, *message ? ": " : "", message);
	} else if (g_str_equal (member, "Canceled") && g_variant_is_of_type (params, G_VARIANT_TYPE ("(s)"))) {
		const char *reason;

		g_variant_get (params, "(&s)", &reason);
		bgs_shell_print (ctl->shell, "[TASK] %s canceled (%s)\n", name, reason);
	}
}

static void
monitor_stop (Ctl *ctl)
{
	for (guint i = 0; i < G_N_ELEMENTS (ctl->monitor_subs); i++) {
		if (ctl->monitor_subs[i] != 0)
			g_dbus_connection_signal_unsubscribe (ctl->bus, ctl->monitor_subs[i]);
		ctl->monitor_subs[i] = 0;
	}
	if (ctl->monitor_watch != 0) {
		g_bus_unwatch_name (ctl->monitor_watch);
		ctl->monitor_watch = 0;
	}
	ctl->monitor_agent_seen = FALSE;
}

static void
monitor_interrupt_cb (BgsShell *shell, gpointer user_data)
{
	Ctl *ctl = user_data;

	monitor_stop (ctl);
	bgs_shell_done (shell, EXIT_OK);
}

static void
monitor_vanished_cb (GDBusConnection *bus, const char *name, gpointer user_data)
{
	Ctl *ctl = user_data;

	ctl->monitor_agent_seen = TRUE;
	if (ctl->json)
		print_event (ctl, "agent-stopped");
	else
		bgs_shell_print (ctl->shell, "[DEL] The bgsync agent left the bus\n");
}

static void
monitor_appeared_cb (GDBusConnection *bus, const char *name, const char *owner, gpointer user_data)
{
	Ctl *ctl = user_data;

	/* the first call only says it was there when monitoring began */
	if (!ctl->monitor_agent_seen) {
		ctl->monitor_agent_seen = TRUE;
		return;
	}
	if (ctl->json)
		print_event (ctl, "agent-started");
	else
		bgs_shell_print (ctl->shell, "[NEW] The bgsync agent is on the bus (%s)\n", owner);
}

static void
monitor_devices_cb (Ctl *ctl, GVariant *reply, GUnixFDList *fds, GError *error, gpointer data)
{
	g_autoptr(GVariantIter) iter = NULL;
	GVariant *props;
	const char *path;

	if (reply != NULL) {
		g_variant_get (reply, "(a{oa{sv}})", &iter);
		while (g_variant_iter_next (iter, "{&o@a{sv}}", &path, &props)) {
			g_hash_table_replace (ctl->device_addrs, g_strdup (path),
					      g_strdup (dict_str (props, "Address")));
			g_variant_unref (props);
		}
	}
	/* subscribed and known to the agent: say so, scripts wait for it */
	if (ctl->json)
		print_event (ctl, "monitoring");
	else
		bgs_shell_print (ctl->shell, "Monitoring devices and bgsyncctl's tasks; Ctrl-C to stop\n");
	bgs_shell_set_interrupt (ctl->shell, monitor_interrupt_cb, ctl);
}

static void
monitor_tasks_cb (Ctl *ctl, GVariant *reply, GUnixFDList *fds, GError *error, gpointer data)
{
	g_autoptr(GVariantIter) iter = NULL;
	GVariant *props;
	const char *path;

	if (error != NULL && g_dbus_error_is_remote_error (error)) {
		g_autofree char *name = g_dbus_error_get_remote_error (error);

		if (status_for_error_name (name) == EXIT_NOT_RUNNING) {
			monitor_stop (ctl);
			bgs_shell_done (ctl->shell, report_error (ctl, error));
			return;
		}
	}
	/* the call also made the agent know this connection as the app's, so
	 * the (unicast) task signals reach it */
	if (reply != NULL) {
		g_variant_get (reply, "(a{oa{sv}})", &iter);
		while (g_variant_iter_next (iter, "{&o@a{sv}}", &path, &props)) {
			g_hash_table_replace (ctl->task_names, g_strdup (path),
					      g_strdup (dict_str (props, "Name")));
			g_variant_unref (props);
		}
	}
	manager_call (ctl, "GetDevices", NULL, "(a{oa{sv}})", monitor_devices_cb, NULL);
}

static void
cmd_monitor (BgsShell *shell, int argc, char **argv, gpointer user_data)
{
	Ctl *ctl = user_data;

	if (!want_args (ctl, argc, argv, 0, 0))
		return;
	ctl->monitor_subs[0] = g_dbus_connection_signal_subscribe (ctl->bus, BUS_NAME, PROPS_IFACE,
								   "PropertiesChanged", NULL, NULL,
								   G_DBUS_SIGNAL_FLAGS_NONE,
								   monitor_device_cb, ctl, NULL);
	ctl->monitor_subs[1] = g_dbus_connection_signal_subscribe (ctl->bus, BUS_NAME, TASK_IFACE,
								   NULL, NULL, NULL,
								   G_DBUS_SIGNAL_FLAGS_NONE,
								   monitor_task_cb, ctl, NULL);
	ctl->monitor_watch = g_bus_watch_name_on_connection (ctl->bus, BUS_NAME,
							     G_BUS_NAME_WATCHER_FLAGS_NONE,
							     monitor_appeared_cb, monitor_vanished_cb,
							     ctl, NULL);
	manager_call (ctl, "GetTasks", NULL, "(a{oa{sv}})", monitor_tasks_cb, NULL);
}

/* ---- status ------------------------------------------------------------------- */

typedef struct {
	char *version;
	gboolean scanning;
	GVariant *devices;
} Status;

static void
status_tasks_cb (Ctl *ctl, GVariant *reply, GUnixFDList *fds, GError *error, gpointer data)
{
	Status *st = data;
	g_autoptr(GPtrArray) devices = device_list (st->devices);
	g_autoptr(GHashTable) adapters = g_hash_table_new (g_str_hash, g_str_equal);
	g_autoptr(GPtrArray) running = g_ptr_array_new_with_free_func ((GDestroyNotify) g_variant_unref);
	g_autoptr(GPtrArray) paths = g_ptr_array_new_with_free_func (g_free);
	g_autoptr(GVariantIter) iter = NULL;
	g_autofree char *task_error = NULL;
	guint present = 0;
	GVariant *props;
	const char *path;

	for (guint i = 0; i < devices->len; i++) {
		if (*dict_str (devices->pdata[i], "Adapter"))
			g_hash_table_add (adapters, (gpointer) dict_str (devices->pdata[i], "Adapter"));
		if (dict_bool (devices->pdata[i], "Present"))
			present++;
	}
	if (reply != NULL) {
		g_variant_get (reply, "(a{oa{sv}})", &iter);
		while (g_variant_iter_next (iter, "{&o@a{sv}}", &path, &props)) {
			if (!g_str_equal (dict_str (props, "State"), "idle")) {
				g_ptr_array_add (running, g_variant_ref (props));
				g_ptr_array_add (paths, g_strdup (path));
			}
			g_variant_unref (props);
		}
	} else if (error != NULL) {
		g_autoptr(GError) copy = g_error_copy (error);

		g_dbus_error_strip_remote_error (copy);
		task_error = g_strdup (copy->message);
	}
	if (ctl->json) {
		g_autoptr(JsonBuilder) b = json_builder_new ();
		g_autoptr(GList) keys = g_hash_table_get_keys (adapters);

		json_builder_begin_object (b);
		json_builder_set_member_name (b, "version");
		json_builder_add_string_value (b, st->version);
		json_builder_set_member_name (b, "bus");
		json_builder_add_string_value (b, ctl->session ? "session" : "system");
		json_builder_set_member_name (b, "adapters");
		json_builder_begin_array (b);
		keys = g_list_sort (keys, (GCompareFunc) g_strcmp0);
		for (GList *l = keys; l != NULL; l = l->next)
			json_builder_add_string_value (b, l->data);
		json_builder_end_array (b);
		json_builder_set_member_name (b, "scanning");
		json_builder_add_boolean_value (b, st->scanning);
		json_builder_set_member_name (b, "devices-known");
		json_builder_add_int_value (b, devices->len);
		json_builder_set_member_name (b, "devices-present");
		json_builder_add_int_value (b, present);
		json_builder_set_member_name (b, "consent-agent");
		json_builder_add_boolean_value (b, ctl->agent_registered);
		json_builder_set_member_name (b, "running-tasks");
		json_builder_begin_array (b);
		for (guint i = 0; i < running->len; i++)
			json_task (b, paths->pdata[i], running->pdata[i]);
		json_builder_end_array (b);
		json_builder_end_object (b);
		print_builder (ctl, b);
	} else {
		g_autoptr(GList) keys = g_list_sort (g_hash_table_get_keys (adapters), (GCompareFunc) g_strcmp0);
		g_autoptr(GString) ad = g_string_new (NULL);

		for (GList *l = keys; l != NULL; l = l->next)
			g_string_append_printf (ad, "%s%s", ad->len ? ", " : "", (char *) l->data);
		bgs_shell_print (ctl->shell, "Agent: bgsyncd %s on the %s bus\n", st->version,
				 ctl->session ? "session" : "system");
		bgs_shell_print (ctl->shell, "Adapters with devices: %s\n", ad->len ? ad->str : "none");
		bgs_shell_print (ctl->shell, "Looking for devices: %s\n",
				 st->scanning ? "yes (a device task is registered or running)" : "no");
		bgs_shell_print (ctl->shell, "Devices: %u known, %u present\n", devices->len, present);
		for (guint i = 0; i < devices->len; i++) {
			GVariant *d = devices->pdata[i];

			if (dict_bool (d, "Present"))
				bgs_shell_print (ctl->shell, "  %s %s%s\n", dict_str (d, "Address"),
						 *dict_str (d, "ModelName") ? dict_str (d, "ModelName") : dict_str (d, "Name"),
						 dict_bool (d, "Connected") ? " (connected)" : "");
		}
		bgs_shell_print (ctl->shell, "Consent agent in this bgsyncctl: %s\n",
				 ctl->agent_registered ? "on" : "off");
		if (task_error != NULL)
			bgs_shell_print (ctl->shell, "Running tasks: unknown (%s)\n", task_error);
		else
			bgs_shell_print (ctl->shell, "Running tasks of bgsyncctl: %u\n", running->len);
		for (guint i = 0; i < running->len; i++) {
			GVariant *p = running->pdata[i];
			guint percent = 0;
			const char *status = "";

			g_variant_lookup (p, "Progress", "(u&s)", &percent, &status);
			bgs_shell_print (ctl->shell, "  %s on %s: %s %u%% %s\n", dict_str (p, "Name"),
					 dict_str (p, "Device"), dict_str (p, "State"), percent, status);
		}
	}
	g_free (st->version);
	g_variant_unref (st->devices);
	g_free (st);
	bgs_shell_done (ctl->shell, EXIT_OK);
}

static void
status_devices_cb (Ctl *ctl, GVariant *reply, GUnixFDList *fds, GError *error, gpointer data)
{
	Status *st = data;

	if (error != NULL) {
		g_free (st->version);
		g_free (st);
		bgs_shell_done (ctl->shell, report_error (ctl, error));
		return;
	}
	st->devices = g_variant_ref (reply);
	manager_call (ctl, "GetTasks", NULL, "(a{oa{sv}})", status_tasks_cb, st);
}

static void
status_version_cb (Ctl *ctl, GVariant *reply, GUnixFDList *fds, GError *error, gpointer data)
{
	Status *st;
	g_autoptr(GVariant) v = NULL;

	if (error != NULL) {
		bgs_shell_done (ctl->shell, report_error (ctl, error));
		return;
	}
	st = g_new0 (Status, 1);
	g_variant_get (reply, "(@a{sv})", &v);
	if (!g_variant_lookup (v, "Version", "s", &st->version))
		st->version = g_strdup ("?");
	g_variant_lookup (v, "Scanning", "b", &st->scanning);
	manager_call (ctl, "GetDevices", NULL, "(a{oa{sv}})", status_devices_cb, st);
}

static void
cmd_status (BgsShell *shell, int argc, char **argv, gpointer user_data)
{
	Ctl *ctl = user_data;

	if (!want_args (ctl, argc, argv, 0, 0))
		return;
	ctl_call (ctl, MANAGER_PATH, PROPS_IFACE, "GetAll",
		  g_variant_new ("(s)", MANAGER_IFACE), "(a{sv})", 0, NULL,
		  status_version_cb, NULL);
}

/* ---- shell-only ------------------------------------------------------------------ */

static void
cmd_help (BgsShell *shell, int argc, char **argv, gpointer user_data)
{
	Ctl *ctl = user_data;
	const char *only = argc > 1 ? argv[1] : NULL;

	if (only != NULL && bgs_shell_lookup (shell, only) == NULL) {
		g_autofree char *msg = g_strdup_printf ("no such command: %s", only);
		bgs_shell_done (shell, report_error_name (ctl, CTL_ERROR_USAGE, msg));
		return;
	}
	if (ctl->json) {
		g_autoptr(JsonBuilder) b = json_builder_new ();

		json_builder_begin_object (b);
		json_builder_set_member_name (b, "commands");
		json_builder_begin_array (b);
		for (const BgsShellCommand *c = bgs_shell_get_commands (shell); c->name != NULL; c++) {
			if ((only != NULL && !g_str_equal (only, c->name)) ||
			    (c->shell_only && !bgs_shell_is_interactive (shell)))
				continue;
			json_builder_begin_object (b);
			json_builder_set_member_name (b, "name");
			json_builder_add_string_value (b, c->name);
			json_builder_set_member_name (b, "arguments");
			json_builder_add_string_value (b, c->arg_hint ? c->arg_hint : "");
			json_builder_set_member_name (b, "description");
			json_builder_add_string_value (b, c->description);
			json_builder_end_object (b);
		}
		json_builder_end_array (b);
		json_builder_end_object (b);
		print_builder (ctl, b);
	} else {
		bgs_shell_print_help (shell, only);
	}
	bgs_shell_done (shell, EXIT_OK);
}

static void
cmd_quit (BgsShell *shell, int argc, char **argv, gpointer user_data)
{
	/* main() unregisters a consent agent on the way out */
	bgs_shell_done (shell, EXIT_OK);
	bgs_shell_quit (shell);
}

static const BgsShellCommand commands[] = {
	{ "devices", "", "List devices: address, model, presence, RSSI, last seen, connected",
	  NULL, cmd_devices },
	{ "monitor", "", "Show presence changes and bgsyncctl's task events until Ctrl-C",
	  NULL, cmd_monitor },
	{ "tasks", "", "List the tasks registered by bgsyncctl", NULL, cmd_tasks },
	{ "register", "<name> <device-use|device-servicing|custom> <entry-point> [--trigger-id ID] [--recurrence once|always] [--condition network|user-present|ac-power]...",
	  "Register a background task", complete_register, cmd_register },
	{ "request", "<task> <device> [--estimate SECS] [--args STRING] [--input FILE] [--output-dir DIR] [--channel SOCKET]",
	  "Start a task on a device and follow its progress", complete_request, cmd_request },
	{ "cancel", "<task>", "Cancel the running or pending instance of a task", complete_tasks,
	  cmd_cancel },
	{ "unregister", "<task> [--cancel-running]", "Remove a task registration",
	  complete_unregister, cmd_unregister },
	{ "events", "<task>", "Take the events queued for a task", complete_tasks, cmd_events },
	{ "history", "[--limit N]", "Show the task ledger: durations, bytes, results, reasons",
	  NULL, cmd_history },
	{ "consents", "", "List stored consent decisions", NULL, cmd_consents },
	{ "revoke", "[<app-id>] [<model>]", "Revoke stored consents so the next request asks again",
	  complete_revoke, cmd_revoke },
	{ "agent", "<on|off> [--auto-accept|--auto-deny]", "Answer consent prompts in this terminal",
	  complete_agent, cmd_agent },
	{ "raise", "<trigger-id> [data]", "Raise a custom trigger (root)", NULL, cmd_raise },
	{ "status", "", "Show the agent's version, adapters, present devices and running tasks",
	  NULL, cmd_status },
	{ "help", "[command]", "Show help for all commands or one", complete_help, cmd_help },
	{ "quit", "", "Leave the shell", NULL, cmd_quit, TRUE },
	{ "exit", "", "Leave the shell", NULL, cmd_quit, TRUE },
	{ NULL }
};

/* ---- main ------------------------------------------------------------------------- */

static void
print_usage (FILE *out)
{
	fprintf (out,
		 "Usage: bgsyncctl [--system|--session] [--json] [--timeout SECS] [COMMAND [ARGS...]]\n"
		 "       bgsyncctl --version | --help\n\n"
		 "Without a command, starts an interactive shell.\n\n"
		 "Options:\n"
		 "  --system        talk to the agent on the system bus (default)\n"
		 "  --session       talk to the agent on the session bus (tests, demos)\n"
		 "  --json          print JSON (one value per line), errors included\n"
		 "  --timeout SECS  wait at most SECS for each reply (default 30; requests 600)\n"
		 "  --version       print the version\n"
		 "  --help          print this help\n\n"
		 "Commands:\n");
	for (const BgsShellCommand *c = commands; c->name != NULL; c++) {
		if (!c->shell_only)
			fprintf (out, "  %-10s %s\n", c->name, c->description);
	}
	fprintf (out, "\nExit status: 0 ok, 1 error, 2 usage, 3 denied, 4 canceled, 5 task failed,\n"
		      "6 agent not running, 7 not found. See bgsyncctl(1).\n");
}

static char *
history_file (void)
{
	const char *state = g_getenv ("XDG_STATE_HOME");

	if (state != NULL && g_path_is_absolute (state))
		return g_build_filename (state, "bgsyncctl", "history", NULL);
	return g_build_filename (g_get_home_dir (), ".local", "state", "bgsyncctl", "history", NULL);
}

int
main (int argc, char **argv)
{
	Ctl ctl = { 0 };
	g_autoptr(GError) error = NULL;
	int i, status;

	setlocale (LC_ALL, "");
	ctl.timeout_ms = DEFAULT_TIMEOUT_MS;
	ctl.request_timeout_ms = DEFAULT_REQUEST_TIMEOUT_MS;
	/* global options end at the first word that is not one */
	for (i = 1; i < argc && argv[i][0] == '-'; i++) {
		const char *arg = argv[i];
		const char *value = NULL;

		if (g_str_equal (arg, "--")) {
			i++;
			break;
		} else if (g_str_equal (arg, "--system")) {
			ctl.session = FALSE;
		} else if (g_str_equal (arg, "--session")) {
			ctl.session = TRUE;
		} else if (g_str_equal (arg, "--json")) {
			ctl.json = TRUE;
		} else if (g_str_equal (arg, "--version")) {
			printf ("bgsyncctl %s\n", PACKAGE_VERSION);
			return EXIT_OK;
		} else if (g_str_equal (arg, "--help") || g_str_equal (arg, "-h")) {
			print_usage (stdout);
			return EXIT_OK;
		} else if (g_str_equal (arg, "--timeout") || g_str_has_prefix (arg, "--timeout=")) {
			guint64 secs;
			char *end = NULL;

			value = arg[9] == '=' ? arg + 10 : (i + 1 < argc ? argv[++i] : NULL);
			if (value == NULL || *value == '\0' ||
			    (secs = g_ascii_strtoull (value, &end, 10)) == 0 || *end != '\0' ||
			    secs > G_MAXINT / 1000) {
				g_printerr ("bgsyncctl: --timeout needs a number of seconds (1..%d)\n",
					    G_MAXINT / 1000);
				return EXIT_USAGE;
			}
			ctl.timeout_ms = ctl.request_timeout_ms = (int) secs * 1000;
		} else {
			g_printerr ("bgsyncctl: unknown option %s (see bgsyncctl --help)\n", arg);
			return EXIT_USAGE;
		}
	}
	ctl.color = isatty (STDOUT_FILENO) && g_getenv ("NO_COLOR") == NULL &&
		    g_strcmp0 (g_getenv ("TERM"), "dumb") != 0;
	ctl.consents = g_ptr_array_new_with_free_func ((GDestroyNotify) consent_free);
	ctl.task_names = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
	ctl.device_addrs = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
	ctl.shell = bgs_shell_new (commands, &ctl);

	ctl.bus = g_bus_get_sync (ctl.session ? G_BUS_TYPE_SESSION : G_BUS_TYPE_SYSTEM, NULL, &error);
	/* help needs no agent */
	if (ctl.bus == NULL && i < argc && g_str_equal (argv[i], "help")) {
		status = bgs_shell_run_once (ctl.shell, argc - i, argv + i);
		bgs_shell_free (ctl.shell);
		return status;
	}
	if (ctl.bus == NULL) {
		g_autofree char *msg = g_strdup_printf ("cannot connect to the %s bus: %s",
							ctl.session ? "session" : "system",
							error->message);
		status = report_error_name (&ctl, CTL_ERROR_NOT_RUNNING, msg);
		bgs_shell_free (ctl.shell);
		return status;
	}
	g_dbus_connection_set_exit_on_close (ctl.bus, FALSE);

	if (i < argc) {
		status = bgs_shell_run_once (ctl.shell, argc - i, argv + i);
	} else {
		g_autofree char *history = history_file ();

		status = bgs_shell_run_interactive (ctl.shell, history);
	}
	if (ctl.agent_registered)
		g_dbus_connection_call_sync (ctl.bus, BUS_NAME, MANAGER_PATH, MANAGER_IFACE,
					     "UnregisterConsentAgent", g_variant_new ("(o)", AGENT_PATH),
					     NULL, G_DBUS_CALL_FLAGS_NONE, 2000, NULL, NULL);
	g_dbus_connection_flush_sync (ctl.bus, NULL, NULL);
	monitor_stop (&ctl);
	bgs_shell_free (ctl.shell);
	g_ptr_array_unref (ctl.consents);
	g_hash_table_unref (ctl.task_names);
	g_hash_table_unref (ctl.device_addrs);
	g_clear_object (&ctl.agent);
	g_free (ctl.daemon_owner);
	g_object_unref (ctl.bus);
	return status;
}
