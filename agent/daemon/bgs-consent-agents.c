/* bgs-consent-agents.c: per-user consent agents */
#include "bgs-consent-agents.h"

#include "bgs-error.h"

#define AGENT_IFACE "org.bgsync.ConsentAgent1"

typedef struct {
	BgsConsentAgents *agents; /* unowned */
	guint32 uid;
	char *owner;
	char *path;
	guint watch_id;
} BgsAgent;

struct _BgsConsentAgents {
	GObject parent_instance;
	GDBusConnection *connection;
	gint64 timeout;
	guint max_per_user;
	GList *agents; /* BgsAgent, newest first */
};

G_DEFINE_TYPE (BgsConsentAgents, bgs_consent_agents, G_TYPE_OBJECT)

static void
agent_free (BgsAgent *a)
{
	if (a->watch_id != 0)
		g_bus_unwatch_name (a->watch_id);
	g_free (a->owner);
	g_free (a->path);
	g_free (a);
}

static void
agent_call_noreply (BgsConsentAgents *self, BgsAgent *a, const char *method)
{
	g_dbus_connection_call (self->connection, a->owner, a->path, AGENT_IFACE, method,
				NULL, NULL, G_DBUS_CALL_FLAGS_NONE, -1, NULL, NULL, NULL);
}

static void
agent_vanished_cb (GDBusConnection *connection, const char *name, gpointer user_data)
{
	BgsConsentAgents *self = user_data;

	for (GList *l = self->agents; l != NULL;) {
		BgsAgent *a = l->data;
		GList *next = l->next;
		if (g_strcmp0 (a->owner, name) == 0) {
			g_info ("consent agent %s%s of uid %u went away", a->owner, a->path, a->uid);
			self->agents = g_list_delete_link (self->agents, l);
			agent_free (a);
		}
		l = next;
	}
}

static BgsAgent *
find_agent (BgsConsentAgents *self, guint32 uid, const char *owner, const char *path)
{
	for (GList *l = self->agents; l != NULL; l = l->next) {
		BgsAgent *a = l->data;
		if (a->uid == uid && g_strcmp0 (a->owner, owner) == 0 &&
		    (path == NULL || g_strcmp0 (a->path, path) == 0))
			return a;
	}
	return NULL;
}

static BgsAgent *
top_agent (BgsConsentAgents *self, guint32 uid)
{
	for (GList *l = self->agents; l != NULL; l = l->next) {
		BgsAgent *a = l->data;
		if (a->uid == uid)
			return a;
	}
	return NULL;
}

gboolean
bgs_consent_agents_register (BgsConsentAgents *self, guint32 uid, const char *owner,
			     const char *path, GError **error)
{
	BgsAgent *a;
	guint n = 0;

	if (!g_variant_is_object_path (path) || g_strcmp0 (path, "/") == 0) {
		g_set_error (error, BGS_ERROR, BGS_ERROR_INVALID_ARGS,
			     "'%s' is not a valid agent object path", path);
		return FALSE;
	}
	/* like BlueZ: one agent per connection */
	if (find_agent (self, uid, owner, NULL) != NULL) {
		g_set_error (error, BGS_ERROR, BGS_ERROR_ALREADY_EXISTS,
			     "this connection already registered a consent agent");
		return FALSE;
	}
	for (GList *l = self->agents; l != NULL; l = l->next)
		if (((BgsAgent *) l->data)->uid == uid)
			n++;
	if (n >= self->max_per_user) {
		g_set_error (error, BGS_ERROR, BGS_ERROR_LIMIT_EXCEEDED,
			     "user %u already has %u consent agents", uid, n);
		return FALSE;
	}
	a = g_new0 (BgsAgent, 1);
	a->agents = self;
	a->uid = uid;
	a->owner = g_strdup (owner);
	a->path = g_strdup (path);
	a->watch_id = g_bus_watch_name_on_connection (self->connection, owner,
						      G_BUS_NAME_WATCHER_FLAGS_NONE, NULL,
						      agent_vanished_cb, self, NULL);
	self->agents = g_list_prepend (self->agents, a);
	g_info ("consent agent %s%s registered for uid %u", owner, path, uid);
	return TRUE;
}

gboolean
bgs_consent_agents_unregister (BgsConsentAgents *self, guint32 uid, const char *owner,
			       const char *path, GError **error)
{
	BgsAgent *a = find_agent (self, uid, owner, path);

	if (a == NULL) {
		g_set_error (error, BGS_ERROR, BGS_ERROR_NOT_FOUND,
			     "no consent agent %s registered by this connection", path);
		return FALSE;
	}
	self->agents = g_list_remove (self->agents, a);
	agent_call_noreply (self, a, "Release");
	agent_free (a);
	return TRUE;
}

gboolean
bgs_consent_agents_has_agent (BgsConsentAgents *self, guint32 uid)
{
	return top_agent (self, uid) != NULL;
}

void
bgs_consent_agents_set_timeout (BgsConsentAgents *self, gint64 timeout_usec)
{
	self->timeout = timeout_usec;
}

typedef struct {
	char *owner;
	char *path;
	GCancellable *call_cancel;  /* cancels the D-Bus call */
	gulong cancel_id;
	GCancellable *caller_cancel;
	GDBusConnection *connection;
	gboolean cancel_sent;
} RequestData;

static void
request_data_free (RequestData *d)
{
	if (d->cancel_id != 0)
		g_cancellable_disconnect (d->caller_cancel, d->cancel_id);
	g_clear_object (&d->caller_cancel);
	g_clear_object (&d->call_cancel);
	g_clear_object (&d->connection);
	g_free (d->owner);
	g_free (d->path);
	g_free (d);
}

static void
request_cb (GObject *source, GAsyncResult *res, gpointer user_data)
{
	g_autoptr(GTask) task = user_data;
	BgsConsentAgents *self = g_task_get_source_object (task);
	RequestData *d = g_task_get_task_data (task);
	g_autoptr(GVariant) reply = NULL;
	g_autoptr(GError) error = NULL;
	gboolean allow = FALSE;

	reply = g_dbus_connection_call_finish (G_DBUS_CONNECTION (source), res, &error);
	if (reply != NULL) {
		g_variant_get (reply, "(b)", &allow);
		g_task_return_int (task, allow ? BGS_CONSENT_ANSWER_ALLOW : BGS_CONSENT_ANSWER_DENY);
		return;
	}
	/* timeout or cancel: tell the agent to drop its prompt, like BlueZ */
	if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT) ||
	    g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED)) {
		if (!d->cancel_sent)
			g_dbus_connection_call (self->connection, d->owner, d->path, AGENT_IFACE,
						"Cancel", NULL, NULL, G_DBUS_CALL_FLAGS_NONE, -1,
						NULL, NULL, NULL);
		d->cancel_sent = TRUE;
		g_object_set_data_full (G_OBJECT (task), "detail",
					g_strdup (g_error_matches (error, G_IO_ERROR,
								   G_IO_ERROR_TIMED_OUT)
						  ? "timeout" : "canceled"), g_free);
		g_task_return_int (task, BGS_CONSENT_ANSWER_NONE);
		return;
	}
	/* an error reply from the agent (e.g. org.bgsync.Error.Rejected) denies */
	if (g_dbus_error_is_remote_error (error)) {
		g_autofree char *name = g_dbus_error_get_remote_error (error);
		if (name != NULL && !g_str_has_prefix (name, "org.freedesktop.DBus.Error.")) {
			g_info ("consent agent %s%s refused: %s", d->owner, d->path, error->message);
			g_task_return_int (task, BGS_CONSENT_ANSWER_DENY);
			return;
		}
	}
	g_info ("consent agent %s%s failed: %s", d->owner, d->path, error->message);
	g_object_set_data_full (G_OBJECT (task), "detail", g_strdup ("agent-error"), g_free);
	g_task_return_int (task, BGS_CONSENT_ANSWER_NONE);
}

static void
caller_cancelled_cb (GCancellable *cancellable, gpointer user_data)
{
	RequestData *d = user_data;

	/* tell the agent now: at shutdown no later iteration would */
	if (!d->cancel_sent)
		g_dbus_connection_call (d->connection, d->owner, d->path, AGENT_IFACE, "Cancel",
					NULL, NULL, G_DBUS_CALL_FLAGS_NONE, -1, NULL, NULL, NULL);
	d->cancel_sent = TRUE;
	g_cancellable_cancel (d->call_cancel);
}

void
bgs_consent_agents_request_async (BgsConsentAgents *self, guint32 uid,
				  const BgsConsentRequest *req, GCancellable *cancellable,
				  GAsyncReadyCallback callback, gpointer user_data)
{
	GTask *task = g_task_new (self, NULL, callback, user_data);
	BgsAgent *a = top_agent (self, uid);
	RequestData *d;
	const char *const empty[] = { NULL };
	gint timeout_ms;

	if (a == NULL) {
		g_object_set_data_full (G_OBJECT (task), "detail", g_strdup ("no-agent"), g_free);
		g_task_return_int (task, BGS_CONSENT_ANSWER_NONE);
		g_object_unref (task);
		return;
	}
	d = g_new0 (RequestData, 1);
	d->owner = g_strdup (a->owner);
	d->path = g_strdup (a->path);
	d->call_cancel = g_cancellable_new ();
	d->connection = g_object_ref (self->connection);
	if (cancellable != NULL) {
		d->caller_cancel = g_object_ref (cancellable);
		d->cancel_id = g_cancellable_connect (cancellable, G_CALLBACK (caller_cancelled_cb),
						      d, NULL);
	}
	g_task_set_task_data (task, d, (GDestroyNotify) request_data_free);
	timeout_ms = (gint) CLAMP (self->timeout / 1000, 1, G_MAXINT);
	g_dbus_connection_call (self->connection, a->owner, a->path, AGENT_IFACE,
				"RequestConsent",
				g_variant_new ("(sssssu^as)", req->app_id, req->app_name,
					       req->device, req->model, req->kind, req->estimate,
					       req->warnings != NULL ? req->warnings : empty),
				G_VARIANT_TYPE ("(b)"), G_DBUS_CALL_FLAGS_NONE, timeout_ms,
				d->call_cancel, request_cb, task);
}

BgsConsentAnswer
bgs_consent_agents_request_finish (BgsConsentAgents *self, GAsyncResult *res, char **detail)
{
	if (detail != NULL)
		*detail = g_strdup (g_object_get_data (G_OBJECT (res), "detail"));
	return (BgsConsentAnswer) g_task_propagate_int (G_TASK (res), NULL);
}

void
bgs_consent_agents_release_all (BgsConsentAgents *self)
{
	for (GList *l = self->agents; l != NULL; l = l->next)
		agent_call_noreply (self, l->data, "Release");
	g_list_free_full (g_steal_pointer (&self->agents), (GDestroyNotify) agent_free);
}

static void
bgs_consent_agents_finalize (GObject *object)
{
	BgsConsentAgents *self = BGS_CONSENT_AGENTS (object);

	g_list_free_full (self->agents, (GDestroyNotify) agent_free);
	g_object_unref (self->connection);
	G_OBJECT_CLASS (bgs_consent_agents_parent_class)->finalize (object);
}

static void
bgs_consent_agents_class_init (BgsConsentAgentsClass *klass)
{
	G_OBJECT_CLASS (klass)->finalize = bgs_consent_agents_finalize;
}

static void
bgs_consent_agents_init (BgsConsentAgents *self)
{
}

BgsConsentAgents *
bgs_consent_agents_new (GDBusConnection *connection, gint64 timeout_usec, guint max_per_user)
{
	BgsConsentAgents *self = g_object_new (BGS_TYPE_CONSENT_AGENTS, NULL);

	self->connection = g_object_ref (connection);
	self->timeout = timeout_usec;
	self->max_per_user = MAX (max_per_user, 1);
	return self;
}
