/* bgsync-prompt.c: the desktop's consent agent (see bgsync-prompt(1)).
 *
 * Registers org.bgsync.ConsentAgent1 with the bgsync agent and turns every
 * RequestConsent into an org.freedesktop.Notifications notification with
 * "Allow" / "Don't allow" actions. Anything but "Allow" is a deny: a
 * dismissed or expired notification, our own timeout (a bit shorter than
 * the agent's), a missing notification server. */
#include <locale.h>
#include <stdlib.h>
#include <string.h>
#include <glib-unix.h>
#include <gio/gio.h>

#include "config.h"
#include "bgs-dbus.h"

#define BUS_NAME "org.bgsync"
#define MANAGER_PATH "/org/bgsync"
#define MANAGER_IFACE "org.bgsync.Manager1"
#define AGENT_PATH "/org/bgsync/prompt"
#define NOTIFY_NAME "org.freedesktop.Notifications"
#define NOTIFY_PATH "/org/freedesktop/Notifications"
#define NOTIFY_IFACE "org.freedesktop.Notifications"
/* the agent's default ConsentTimeout is 60 s: answer before it gives up */
#define DEFAULT_TIMEOUT_SECS 55

typedef struct {
	GMainLoop *loop;
	GDBusConnection *agent_bus;
	GDBusConnection *notify_bus;
	char *notify_address;
	BgsDBusConsentAgent1 *skeleton;
	char *daemon_owner;
	gboolean registered;
	GPtrArray *pending;         /* of Pending */
	guint timeout_secs;
	guint notify_subs[2];
	guint notify_watch;
	gboolean notify_server_seen;
} Prompt;

typedef struct {
	Prompt *prompt;
	GDBusMethodInvocation *invocation;
	guint32 id;                 /* notification id, 0 until Notify replied */
	guint timeout_id;
	char *label;                /* "App Name / Model" for the log */
	gboolean done;              /* answered; off the pending array */
	gboolean in_call;           /* Notify not replied yet: the call frees it */
} Pending;

static void
pending_free (Pending *p)
{
	if (p->timeout_id != 0)
		g_source_remove (p->timeout_id);
	g_clear_object (&p->invocation);
	g_free (p->label);
	g_free (p);
}

static void
close_notification (Prompt *prompt, guint32 id)
{
	if (id == 0 || prompt->notify_bus == NULL)
		return;
	g_dbus_connection_call (prompt->notify_bus, NOTIFY_NAME, NOTIFY_PATH, NOTIFY_IFACE,
				"CloseNotification", g_variant_new ("(u)", id), NULL,
				G_DBUS_CALL_FLAGS_NO_AUTO_START, -1, NULL, NULL, NULL);
}

/* answers the agent and forgets the request; @why goes to the log */
static void
pending_answer (Pending *p, gboolean allow, const char *why)
{
	Prompt *prompt = p->prompt;

	if (p->done)
		return;
	p->done = TRUE;
	if (p->timeout_id != 0) {
		g_source_remove (p->timeout_id);
		p->timeout_id = 0;
	}
	if (allow)
		g_message ("allowed %s: %s", p->label, why);
	else
		g_message ("denied %s: %s", p->label, why);
	if (p->invocation != NULL)
		bgs_dbus_consent_agent1_complete_request_consent (prompt->skeleton,
								  g_steal_pointer (&p->invocation),
								  allow);
	g_ptr_array_remove (prompt->pending, p);
	if (!p->in_call)
		pending_free (p);
}

static Pending *
pending_by_id (Prompt *prompt, guint32 id)
{
	for (guint i = 0; i < prompt->pending->len; i++) {
		Pending *p = prompt->pending->pdata[i];

		if (p->id == id && id != 0)
			return p;
	}
	return NULL;
}

/* ---- the notification server ------------------------------------------------ */

static void
notify_signal_cb (GDBusConnection *bus, const char *sender, const char *path, const char *iface,
		  const char *member, GVariant *params, gpointer user_data)
{
	Prompt *prompt = user_data;
	Pending *p;
	guint32 id;

	if (g_str_equal (member, "ActionInvoked") &&
	    g_variant_is_of_type (params, G_VARIANT_TYPE ("(us)"))) {
		const char *action;

		g_variant_get (params, "(u&s)", &id, &action);
		p = pending_by_id (prompt, id);
		if (p == NULL)
			return;
		close_notification (prompt, id);
		if (g_str_equal (action, "allow")) {
			pending_answer (p, TRUE, "the user chose Allow");
		} else if (g_str_equal (action, "deny")) {
			pending_answer (p, FALSE, "the user chose Don't allow");
		} else {
			g_autofree char *why = g_strdup_printf ("the notification was activated without choosing (action '%s')",
								action);
			pending_answer (p, FALSE, why);
		}
	} else if (g_str_equal (member, "NotificationClosed") &&
		   g_variant_is_of_type (params, G_VARIANT_TYPE ("(uu)"))) {
		guint32 reason;
		g_autofree char *why = NULL;

		g_variant_get (params, "(uu)", &id, &reason);
		p = pending_by_id (prompt, id);
		if (p == NULL)
			return;
		why = g_strdup_printf ("the notification was %s without an answer",
				       reason == 1 ? "expired" : reason == 2 ? "dismissed" : "closed");
		pending_answer (p, FALSE, why);
	}
}

static void
notify_vanished_cb (GDBusConnection *bus, const char *name, gpointer user_data)
{
	Prompt *prompt = user_data;

	if (prompt->notify_server_seen)
		g_message ("the notification server left the bus");
	prompt->notify_server_seen = FALSE;
	/* shown notifications can never be answered now */
	for (guint i = prompt->pending->len; i > 0; i--) {
		Pending *p = prompt->pending->pdata[i - 1];

		if (p->id != 0)
			pending_answer (p, FALSE, "the notification server went away");
	}
}

static void
capabilities_cb (GObject *source, GAsyncResult *res, gpointer user_data)
{
	g_autoptr(GError) error = NULL;
	g_autoptr(GVariant) reply = g_dbus_connection_call_finish (G_DBUS_CONNECTION (source), res,
								   &error);
	g_autofree const char **caps = NULL;

	if (reply == NULL) {
		g_debug ("GetCapabilities: %s", error->message);
		return;
	}
	g_variant_get (reply, "(^a&s)", &caps);
	/* without buttons nobody can say yes: every request ends as a deny */
	if (!g_strv_contains (caps, "actions"))
		g_message ("the notification server does not show actions: consent requests can only time out or be dismissed (denied)");
}

static void
notify_appeared_cb (GDBusConnection *bus, const char *name, const char *owner, gpointer user_data)
{
	Prompt *prompt = user_data;

	prompt->notify_server_seen = TRUE;
	g_debug ("notification server %s", owner);
	g_dbus_connection_call (bus, NOTIFY_NAME, NOTIFY_PATH, NOTIFY_IFACE, "GetCapabilities", NULL,
				G_VARIANT_TYPE ("(as)"), G_DBUS_CALL_FLAGS_NO_AUTO_START, -1, NULL,
				capabilities_cb, NULL);
}

static void
notify_bus_closed_cb (GDBusConnection *bus, gboolean remote_peer_vanished, GError *error,
		      gpointer user_data)
{
	Prompt *prompt = user_data;

	g_message ("lost the connection to the notification bus; reconnecting on the next request");
	for (guint i = 0; i < G_N_ELEMENTS (prompt->notify_subs); i++)
		prompt->notify_subs[i] = 0;
	if (prompt->notify_watch != 0) {
		g_bus_unwatch_name (prompt->notify_watch);
		prompt->notify_watch = 0;
	}
	g_signal_handlers_disconnect_by_data (prompt->notify_bus, prompt);
	g_clear_object (&prompt->notify_bus);
	for (guint i = prompt->pending->len; i > 0; i--)
		pending_answer (prompt->pending->pdata[i - 1], FALSE,
				"the notification bus went away");
}

static gboolean
ensure_notify_bus (Prompt *prompt, GError **error)
{
	if (prompt->notify_bus != NULL)
		return TRUE;
	if (prompt->notify_address != NULL)
		prompt->notify_bus = g_dbus_connection_new_for_address_sync (
			prompt->notify_address,
			G_DBUS_CONNECTION_FLAGS_AUTHENTICATION_CLIENT |
			G_DBUS_CONNECTION_FLAGS_MESSAGE_BUS_CONNECTION,
			NULL, NULL, error);
	else
		prompt->notify_bus = g_bus_get_sync (G_BUS_TYPE_SESSION, NULL, error);
	if (prompt->notify_bus == NULL)
		return FALSE;
	g_dbus_connection_set_exit_on_close (prompt->notify_bus, FALSE);
	g_signal_connect (prompt->notify_bus, "closed", G_CALLBACK (notify_bus_closed_cb), prompt);
	prompt->notify_subs[0] = g_dbus_connection_signal_subscribe (prompt->notify_bus, NOTIFY_NAME,
								     NOTIFY_IFACE, "ActionInvoked",
								     NOTIFY_PATH, NULL,
								     G_DBUS_SIGNAL_FLAGS_NONE,
								     notify_signal_cb, prompt, NULL);
	prompt->notify_subs[1] = g_dbus_connection_signal_subscribe (prompt->notify_bus, NOTIFY_NAME,
								     NOTIFY_IFACE, "NotificationClosed",
								     NOTIFY_PATH, NULL,
								     G_DBUS_SIGNAL_FLAGS_NONE,
								     notify_signal_cb, prompt, NULL);
	prompt->notify_watch = g_bus_watch_name_on_connection (prompt->notify_bus, NOTIFY_NAME,
							       G_BUS_NAME_WATCHER_FLAGS_NONE,
							       notify_appeared_cb, notify_vanished_cb,
							       prompt, NULL);
	return TRUE;
}

/* ---- consent requests ----------------------------------------------------------- */

static const char *
warning_text (const char *w)
{
	if (g_str_equal (w, "keep-in-range"))
		return "Keep the device in range";
	if (g_str_equal (w, "keep-charged"))
		return "Keep this computer charged";
	return w;
}

static char *
estimate_text (guint secs)
{
	if (secs == 0)
		return g_strdup ("The time it takes is not known.");
	if (secs < 60)
		return g_strdup_printf ("This takes about %u seconds.", secs);
	if (secs < 3600)
		return g_strdup_printf ("This takes about %u minute%s.", (secs + 59) / 60,
					(secs + 59) / 60 == 1 ? "" : "s");
	return g_strdup_printf ("This takes about %u h %u min.", secs / 3600, secs / 60 % 60);
}

static gboolean
local_timeout_cb (gpointer user_data)
{
	Pending *p = user_data;

	p->timeout_id = 0;
	close_notification (p->prompt, p->id);
	pending_answer (p, FALSE, "no answer in time");
	return G_SOURCE_REMOVE;
}

static void
notify_cb (GObject *source, GAsyncResult *res, gpointer user_data)
{
	Pending *p = user_data;
	Prompt *prompt = p->prompt;
	g_autoptr(GError) error = NULL;
	g_autoptr(GVariant) reply = NULL;

	reply = g_dbus_connection_call_finish (G_DBUS_CONNECTION (source), res, &error);
	p->in_call = FALSE;
	if (p->done) {
		/* canceled meanwhile: take the notification back */
		if (reply != NULL) {
			guint32 id;
			g_variant_get (reply, "(u)", &id);
			close_notification (prompt, id);
		}
		pending_free (p);
		return;
	}
	if (reply == NULL) {
		g_autofree char *why = NULL;

		g_dbus_error_strip_remote_error (error);
		why = g_strdup_printf ("cannot show a notification (no notification server?): %s",
				       error->message);
		pending_answer (p, FALSE, why);
		return;
	}
	g_variant_get (reply, "(u)", &p->id);
	g_debug ("notification %u for %s", p->id, p->label);
}

static gboolean
from_daemon (Prompt *prompt, GDBusMethodInvocation *invocation)
{
	if (g_strcmp0 (g_dbus_method_invocation_get_sender (invocation), prompt->daemon_owner) == 0)
		return TRUE;
	g_dbus_method_invocation_return_dbus_error (invocation, "org.bgsync.Error.NotAuthorized",
						    "only org.bgsync may call its consent agent");
	return FALSE;
}

static gboolean
handle_request_consent (BgsDBusConsentAgent1 *agent, GDBusMethodInvocation *invocation,
			const char *app_id, const char *app_name, const char *device,
			const char *model, const char *kind, guint estimate,
			const char *const *warnings, gpointer user_data)
{
	Prompt *prompt = user_data;
	gboolean servicing = g_strcmp0 (kind, "device-servicing") == 0;
	g_autofree char *summary = NULL;
	g_autoptr(GString) body = g_string_new (NULL);
	g_autoptr(GError) error = NULL;
	GVariantBuilder actions, hints;
	Pending *p;

	if (!from_daemon (prompt, invocation))
		return TRUE;
	p = g_new0 (Pending, 1);
	p->prompt = prompt;
	p->invocation = g_object_ref (invocation);
	p->label = g_strdup_printf ("%s (%s) on %s %s [%s]", app_name, app_id, model, device, kind);
	g_message ("consent request: %s", p->label);

	if (!ensure_notify_bus (prompt, &error)) {
		g_autofree char *why = g_strdup_printf ("no notification bus: %s", error->message);

		/* answer through the array so the log and reply path are one */
		g_ptr_array_add (prompt->pending, p);
		pending_answer (p, FALSE, why);
		return TRUE;
	}

	if (servicing) {
		g_autofree char *est = estimate_text (estimate);
		g_autofree char *esc = NULL;

		summary = g_strdup_printf ("%s wants to update your %s", app_name, model);
		g_string_append_printf (body, "%s (%s) will be updated in the background. %s", model,
					device, est);
		for (guint i = 0; warnings != NULL && warnings[i] != NULL; i++)
			g_string_append_printf (body, "\n%s.", warning_text (warnings[i]));
		esc = g_markup_escape_text (body->str, -1);
		g_string_assign (body, esc);
	} else {
		g_autofree char *esc = NULL;

		summary = g_strdup_printf ("Allow %s to sync with your %s?", app_name, model);
		g_string_append_printf (body, "%s wants to exchange data with %s (%s) in the background.",
					app_name, model, device);
		for (guint i = 0; warnings != NULL && warnings[i] != NULL; i++)
			g_string_append_printf (body, "\n%s.", warning_text (warnings[i]));
		esc = g_markup_escape_text (body->str, -1);
		g_string_assign (body, esc);
	}
	g_variant_builder_init (&actions, G_VARIANT_TYPE_STRING_ARRAY);
	g_variant_builder_add (&actions, "s", "allow");
	g_variant_builder_add (&actions, "s", "Allow");
	g_variant_builder_add (&actions, "s", "deny");
	g_variant_builder_add (&actions, "s", "Don't allow");
	g_variant_builder_init (&hints, G_VARIANT_TYPE_VARDICT);
	g_variant_builder_add (&hints, "{sv}", "urgency", g_variant_new_byte (2));
	g_variant_builder_add (&hints, "{sv}", "category", g_variant_new_string ("device"));
	g_variant_builder_add (&hints, "{sv}", "desktop-entry", g_variant_new_string ("bgsync-prompt"));
	g_variant_builder_add (&hints, "{sv}", "x-bgsync-kind", g_variant_new_string (kind));
	g_variant_builder_add (&hints, "{sv}", "x-bgsync-device", g_variant_new_string (device));

	/* our own deadline: the server's expiry is only a hint */
	p->timeout_id = g_timeout_add_seconds (prompt->timeout_secs, local_timeout_cb, p);
	/* answered before Notify replies (Cancel), notify_cb frees it */
	p->in_call = TRUE;
	g_dbus_connection_call (prompt->notify_bus, NOTIFY_NAME, NOTIFY_PATH, NOTIFY_IFACE, "Notify",
				g_variant_new ("(susssasa{sv}i)", "bgsync", (guint32) 0,
					       servicing ? "software-update-available" : "bluetooth",
					       summary, body->str, &actions, &hints,
					       (gint32) prompt->timeout_secs * 1000),
				G_VARIANT_TYPE ("(u)"), G_DBUS_CALL_FLAGS_NONE,
				(int) prompt->timeout_secs * 1000, NULL, notify_cb, p);
	g_ptr_array_add (prompt->pending, p);
	return TRUE;
}

static gboolean
handle_cancel (BgsDBusConsentAgent1 *agent, GDBusMethodInvocation *invocation, gpointer user_data)
{
	Prompt *prompt = user_data;

	if (!from_daemon (prompt, invocation))
		return TRUE;
	for (guint i = prompt->pending->len; i > 0; i--) {
		Pending *p = prompt->pending->pdata[i - 1];

		close_notification (prompt, p->id);
		pending_answer (p, FALSE, "canceled by the agent");
	}
	bgs_dbus_consent_agent1_complete_cancel (agent, invocation);
	return TRUE;
}

static gboolean
handle_release (BgsDBusConsentAgent1 *agent, GDBusMethodInvocation *invocation, gpointer user_data)
{
	Prompt *prompt = user_data;

	if (!from_daemon (prompt, invocation))
		return TRUE;
	g_message ("released by the agent; registering again when it comes back");
	prompt->registered = FALSE;
	bgs_dbus_consent_agent1_complete_release (agent, invocation);
	return TRUE;
}

/* ---- registration ------------------------------------------------------------------ */

static void
register_cb (GObject *source, GAsyncResult *res, gpointer user_data)
{
	Prompt *prompt = user_data;
	g_autoptr(GError) error = NULL;
	g_autoptr(GVariant) reply = g_dbus_connection_call_finish (G_DBUS_CONNECTION (source), res,
								   &error);

	if (reply == NULL) {
		g_dbus_error_strip_remote_error (error);
		g_warning ("cannot register as consent agent: %s", error->message);
		return;
	}
	prompt->registered = TRUE;
	g_message ("registered as consent agent at %s", AGENT_PATH);
}

static void
daemon_appeared_cb (GDBusConnection *bus, const char *name, const char *owner, gpointer user_data)
{
	Prompt *prompt = user_data;

	g_free (prompt->daemon_owner);
	prompt->daemon_owner = g_strdup (owner);
	g_dbus_connection_call (bus, BUS_NAME, MANAGER_PATH, MANAGER_IFACE, "RegisterConsentAgent",
				g_variant_new ("(o)", AGENT_PATH), NULL, G_DBUS_CALL_FLAGS_NONE, -1,
				NULL, register_cb, prompt);
}

static void
daemon_vanished_cb (GDBusConnection *bus, const char *name, gpointer user_data)
{
	Prompt *prompt = user_data;

	if (prompt->daemon_owner != NULL)
		g_message ("the bgsync agent left the bus; waiting for it to come back");
	g_clear_pointer (&prompt->daemon_owner, g_free);
	prompt->registered = FALSE;
	/* nobody is waiting for these answers any more */
	for (guint i = prompt->pending->len; i > 0; i--) {
		Pending *p = prompt->pending->pdata[i - 1];

		close_notification (prompt, p->id);
		pending_answer (p, FALSE, "the bgsync agent went away");
	}
}

static gboolean
quit_cb (gpointer user_data)
{
	Prompt *prompt = user_data;

	g_main_loop_quit (prompt->loop);
	return G_SOURCE_CONTINUE;
}

int
main (int argc, char **argv)
{
	Prompt prompt = { 0 };
	gboolean session = FALSE, verbose = FALSE, version = FALSE;
	int timeout = DEFAULT_TIMEOUT_SECS;
	g_autofree char *notify_bus = NULL;
	g_autoptr(GOptionContext) context = NULL;
	g_autoptr(GError) error = NULL;
	guint watch;
	const GOptionEntry entries[] = {
		{ "session", 0, 0, G_OPTION_ARG_NONE, &session,
		  "Find the bgsync agent on the session bus (tests, demos)", NULL },
		{ "notify-bus", 0, 0, G_OPTION_ARG_STRING, &notify_bus,
		  "Show notifications on the bus at ADDRESS (default: the session bus; also $BGSYNC_NOTIFY_BUS)",
		  "ADDRESS" },
		{ "timeout", 't', 0, G_OPTION_ARG_INT, &timeout,
		  "Deny when nobody answers within SECS seconds (default 55)", "SECS" },
		{ "verbose", 'v', 0, G_OPTION_ARG_NONE, &verbose, "Log more", NULL },
		{ "version", 0, 0, G_OPTION_ARG_NONE, &version, "Print the version and exit", NULL },
		{ NULL }
	};

	setlocale (LC_ALL, "");
	context = g_option_context_new ("- bgsync consent prompts as desktop notifications");
	g_option_context_add_main_entries (context, entries, NULL);
	g_option_context_set_description (context, "See bgsync-prompt(1).");
	if (!g_option_context_parse (context, &argc, &argv, &error)) {
		g_printerr ("bgsync-prompt: %s\n", error->message);
		return 2;
	}
	if (version) {
		g_print ("bgsync-prompt %s\n", PACKAGE_VERSION);
		return EXIT_SUCCESS;
	}
	if (timeout < 1 || timeout > 3600) {
		g_printerr ("bgsync-prompt: --timeout must be 1..3600 seconds\n");
		return 2;
	}
	/* every log line to stderr (the journal), debug ones too */
	g_log_writer_default_set_use_stderr (TRUE);
	if (verbose && g_getenv ("G_MESSAGES_DEBUG") == NULL)
		g_setenv ("G_MESSAGES_DEBUG", "bgsync-prompt", TRUE);
	prompt.timeout_secs = (guint) timeout;
	prompt.notify_address = g_strdup (notify_bus != NULL ? notify_bus : g_getenv ("BGSYNC_NOTIFY_BUS"));
	if (prompt.notify_address != NULL && *prompt.notify_address == '\0')
		g_clear_pointer (&prompt.notify_address, g_free);
	/* entries are freed when answered (pending_answer) */
	prompt.pending = g_ptr_array_new ();

	prompt.agent_bus = g_bus_get_sync (session ? G_BUS_TYPE_SESSION : G_BUS_TYPE_SYSTEM, NULL,
					   &error);
	if (prompt.agent_bus == NULL) {
		g_printerr ("bgsync-prompt: cannot connect to the %s bus: %s\n",
			    session ? "session" : "system", error->message);
		return EXIT_FAILURE;
	}
	prompt.skeleton = bgs_dbus_consent_agent1_skeleton_new ();
	g_signal_connect (prompt.skeleton, "handle-request-consent",
			  G_CALLBACK (handle_request_consent), &prompt);
	g_signal_connect (prompt.skeleton, "handle-cancel", G_CALLBACK (handle_cancel), &prompt);
	g_signal_connect (prompt.skeleton, "handle-release", G_CALLBACK (handle_release), &prompt);
	if (!g_dbus_interface_skeleton_export (G_DBUS_INTERFACE_SKELETON (prompt.skeleton),
					       prompt.agent_bus, AGENT_PATH, &error)) {
		g_printerr ("bgsync-prompt: cannot export the agent: %s\n", error->message);
		return EXIT_FAILURE;
	}
	/* a connected notification bus early, so a missing server is logged */
	if (!ensure_notify_bus (&prompt, &error)) {
		g_message ("no notification bus yet (%s); will retry on each request", error->message);
		g_clear_error (&error);
	}
	watch = g_bus_watch_name_on_connection (prompt.agent_bus, BUS_NAME,
						G_BUS_NAME_WATCHER_FLAGS_NONE, daemon_appeared_cb,
						daemon_vanished_cb, &prompt, NULL);
	prompt.loop = g_main_loop_new (NULL, FALSE);
	g_unix_signal_add (SIGTERM, quit_cb, &prompt);
	g_unix_signal_add (SIGINT, quit_cb, &prompt);
	g_main_loop_run (prompt.loop);

	g_bus_unwatch_name (watch);
	for (guint i = prompt.pending->len; i > 0; i--) {
		Pending *p = prompt.pending->pdata[i - 1];

		close_notification (&prompt, p->id);
		pending_answer (p, FALSE, "bgsync-prompt is exiting");
	}
	if (prompt.registered)
		g_dbus_connection_call_sync (prompt.agent_bus, BUS_NAME, MANAGER_PATH, MANAGER_IFACE,
					     "UnregisterConsentAgent", g_variant_new ("(o)", AGENT_PATH),
					     NULL, G_DBUS_CALL_FLAGS_NONE, 2000, NULL, NULL);
	if (prompt.notify_bus != NULL)
		g_dbus_connection_flush_sync (prompt.notify_bus, NULL, NULL);
	g_dbus_connection_flush_sync (prompt.agent_bus, NULL, NULL);
	g_dbus_interface_skeleton_unexport (G_DBUS_INTERFACE_SKELETON (prompt.skeleton));
	g_object_unref (prompt.skeleton);
	g_ptr_array_unref (prompt.pending);
	g_free (prompt.daemon_owner);
	g_free (prompt.notify_address);
	g_clear_object (&prompt.notify_bus);
	g_object_unref (prompt.agent_bus);
	g_main_loop_unref (prompt.loop);
	return EXIT_SUCCESS;
}
