/* bgs-client-list.c: identity per bus connection, tied to its lifetime */
#include "bgs-client-list.h"

#include "bgs-error.h"

typedef struct {
	BgsClientList *list; /* unowned */
	char *name;
	guint watch_id;
	BgsIdentity *identity; /* NULL until resolved */
	GError *error;         /* set when resolution failed */
	gboolean resolving;
	GPtrArray *waiters;    /* GTask */
} BgsClient;

struct _BgsClientList {
	GObject parent_instance;
	GDBusConnection *connection;
	BgsAppRegistry *apps;
	char *proc_root;
	GHashTable *clients; /* unique name -> BgsClient */
};

enum { SIGNAL_APP_VANISHED, SIGNAL_LAST };
static guint signals[SIGNAL_LAST];

G_DEFINE_TYPE (BgsClientList, bgs_client_list, G_TYPE_OBJECT)

char *
bgs_client_app_key (guint32 uid, const char *app_id)
{
	return g_strdup_printf ("%u:%s", uid, app_id != NULL ? app_id : "");
}

static void
client_free (gpointer data)
{
	BgsClient *c = data;

	if (c->watch_id != 0)
		g_bus_unwatch_name (c->watch_id);
	g_clear_pointer (&c->identity, bgs_identity_free);
	g_clear_error (&c->error);
	/* waiters are completed before a client is dropped */
	g_ptr_array_unref (c->waiters);
	g_free (c->name);
	g_free (c);
}

static void
client_vanished_cb (GDBusConnection *connection, const char *name, gpointer user_data)
{
	BgsClientList *self = user_data;
	BgsClient *c = g_hash_table_lookup (self->clients, name);
	guint32 uid;
	g_autofree char *app_id = NULL;

	if (c == NULL)
		return;
	g_debug ("client %s vanished", name);
	if (c->resolving) {
		/* answer waiters when the credentials call returns */
		g_bus_unwatch_name (c->watch_id);
		c->watch_id = 0;
		return;
	}
	if (c->identity != NULL && c->identity->app_id != NULL) {
		uid = c->identity->uid;
		app_id = g_strdup (c->identity->app_id);
	}
	g_hash_table_remove (self->clients, name);
	if (app_id != NULL && !bgs_client_list_app_connected (self, uid, app_id))
		g_signal_emit (self, signals[SIGNAL_APP_VANISHED], 0, uid, app_id);
}

static void
client_complete_waiters (BgsClient *c)
{
	g_autoptr(GPtrArray) waiters = g_steal_pointer (&c->waiters);

	c->waiters = g_ptr_array_new_with_free_func (g_object_unref);
	for (guint i = 0; i < waiters->len; i++) {
		GTask *task = waiters->pdata[i];
		if (c->error != NULL)
			g_task_return_error (task, g_error_copy (c->error));
		else
			g_task_return_pointer (task, c->identity, NULL);
	}
}

static void
credentials_cb (GObject *source, GAsyncResult *res, gpointer user_data)
{
	g_autofree char *name = user_data;
	BgsClientList *self;
	BgsClient *c;
	g_autoptr(GVariant) reply = NULL;
	g_autoptr(GVariant) dict = NULL;
	g_autoptr(GError) error = NULL;
	guint32 uid = G_MAXUINT32, pid = 0;
	g_autoptr(GVariant) label_v = NULL;
	g_autofree char *label = NULL;

	reply = g_dbus_connection_call_finish (G_DBUS_CONNECTION (source), res, &error);
	self = g_object_get_data (source, "bgs-client-list");
	if (self == NULL)
		return;
	c = g_hash_table_lookup (self->clients, name);
	if (c == NULL)
		return;
	c->resolving = FALSE;
	if (reply == NULL) {
		c->error = g_error_new (BGS_ERROR, BGS_ERROR_NOT_AUTHORIZED,
					"cannot read the caller's credentials: %s", error->message);
	} else {
		dict = g_variant_get_child_value (reply, 0);
		if (!g_variant_lookup (dict, "UnixUserID", "u", &uid) ||
		    !g_variant_lookup (dict, "ProcessID", "u", &pid)) {
			c->error = g_error_new_literal (BGS_ERROR, BGS_ERROR_NOT_AUTHORIZED,
							"the bus did not report the caller's uid and pid");
		} else {
			label_v = g_variant_lookup_value (dict, "LinuxSecurityLabel",
							  G_VARIANT_TYPE_BYTESTRING);
			if (label_v != NULL) {
				gsize len = 0;
				const char *bytes = g_variant_get_fixed_array (label_v, &len, 1);
				/* the label is NUL-terminated bytes; keep it only if sane */
				label = g_strndup (bytes, len);
				if (!g_utf8_validate (label, -1, NULL))
					g_clear_pointer (&label, g_free);
			}
			c->identity = bgs_identity_resolve (self->apps, uid, pid, label,
							    self->proc_root, &error);
			if (c->identity == NULL)
				c->error = g_error_new (BGS_ERROR, BGS_ERROR_NOT_AUTHORIZED,
							"cannot identify the caller: %s",
							error->message);
			else
				g_debug ("client %s: uid %u pid %u app %s", name, uid, pid,
					 c->identity->app_id != NULL ? c->identity->app_id : "(none)");
		}
	}
	client_complete_waiters (c);
	/* vanished while we were asking */
	if (c->watch_id == 0) {
		g_autofree char *gone = g_strdup (name);
		client_vanished_cb (self->connection, gone, self);
	}
}

void
bgs_client_list_resolve_async (BgsClientList *self, const char *sender,
			       GCancellable *cancellable, GAsyncReadyCallback callback,
			       gpointer user_data)
{
	g_autoptr(GTask) task = g_task_new (self, cancellable, callback, user_data);
	BgsClient *c;

	if (sender == NULL) {
		/* peer-to-peer connections are not offered */
		g_task_return_new_error (task, BGS_ERROR, BGS_ERROR_NOT_AUTHORIZED,
					 "callers must come through the message bus");
		return;
	}
	c = g_hash_table_lookup (self->clients, sender);
	if (c != NULL && !c->resolving) {
		if (c->error != NULL)
			g_task_return_error (task, g_error_copy (c->error));
		else
			g_task_return_pointer (task, c->identity, NULL);
		return;
	}
	if (c == NULL) {
		c = g_new0 (BgsClient, 1);
		c->list = self;
		c->name = g_strdup (sender);
		c->waiters = g_ptr_array_new_with_free_func (g_object_unref);
		c->resolving = TRUE;
		g_hash_table_insert (self->clients, c->name, c);
		c->watch_id = g_bus_watch_name_on_connection (self->connection, sender,
							      G_BUS_NAME_WATCHER_FLAGS_NONE,
							      NULL, client_vanished_cb,
							      self, NULL);
		g_dbus_connection_call (self->connection, "org.freedesktop.DBus",
					"/org/freedesktop/DBus", "org.freedesktop.DBus",
					"GetConnectionCredentials", g_variant_new ("(s)", sender),
					G_VARIANT_TYPE ("(a{sv})"), G_DBUS_CALL_FLAGS_NONE, 10000,
					NULL, credentials_cb, g_strdup (sender));
	}
	g_ptr_array_add (c->waiters, g_steal_pointer (&task));
}

const BgsIdentity *
bgs_client_list_resolve_finish (BgsClientList *self, GAsyncResult *res, GError **error)
{
	return g_task_propagate_pointer (G_TASK (res), error);
}

const BgsIdentity *
bgs_client_list_lookup (BgsClientList *self, const char *sender)
{
	BgsClient *c;

	if (sender == NULL)
		return NULL;
	c = g_hash_table_lookup (self->clients, sender);
	if (c == NULL || c->resolving)
		return NULL;
	return c->identity;
}

GPtrArray *
bgs_client_list_get_app_names (BgsClientList *self, guint32 uid, const char *app_id)
{
	GPtrArray *names = g_ptr_array_new_with_free_func (g_free);
	GHashTableIter iter;
	gpointer value;

	g_hash_table_iter_init (&iter, self->clients);
	while (g_hash_table_iter_next (&iter, NULL, &value)) {
		BgsClient *c = value;
		if (c->identity == NULL || c->identity->app_id == NULL || c->watch_id == 0)
			continue;
		if (c->identity->uid == uid && g_strcmp0 (c->identity->app_id, app_id) == 0)
			g_ptr_array_add (names, g_strdup (c->name));
	}
	return names;
}

gboolean
bgs_client_list_app_connected (BgsClientList *self, guint32 uid, const char *app_id)
{
	g_autoptr(GPtrArray) names = bgs_client_list_get_app_names (self, uid, app_id);

	return names->len > 0;
}

void
bgs_client_list_rematch (BgsClientList *self)
{
	/* identities hold manifest-derived app ids: forget resolved clients so
	 * the next call re-reads credentials against the new manifests. Apps
	 * whose connections remain keep being "connected" until they call. */
	GHashTableIter iter;
	gpointer value;

	g_hash_table_iter_init (&iter, self->clients);
	while (g_hash_table_iter_next (&iter, NULL, &value)) {
		BgsClient *c = value;
		g_autoptr(GError) error = NULL;
		BgsIdentity *fresh;

		if (c->resolving || c->identity == NULL)
			continue;
		fresh = bgs_identity_resolve (self->apps, c->identity->uid, c->identity->pid,
					      NULL, self->proc_root, &error);
		if (fresh == NULL)
			continue;
		/* keep the sandbox verdict made with the bus's security label */
		if (c->identity->sandbox != BGS_SANDBOX_NONE && fresh->sandbox == BGS_SANDBOX_NONE) {
			bgs_identity_free (fresh);
			continue;
		}
		bgs_identity_free (c->identity);
		c->identity = fresh;
	}
}

static void
bgs_client_list_finalize (GObject *object)
{
	BgsClientList *self = BGS_CLIENT_LIST (object);

	g_object_set_data (G_OBJECT (self->connection), "bgs-client-list", NULL);
	g_hash_table_unref (self->clients);
	g_object_unref (self->apps);
	g_object_unref (self->connection);
	g_free (self->proc_root);
	G_OBJECT_CLASS (bgs_client_list_parent_class)->finalize (object);
}

static void
bgs_client_list_class_init (BgsClientListClass *klass)
{
	GObjectClass *object_class = G_OBJECT_CLASS (klass);

	object_class->finalize = bgs_client_list_finalize;
	/* (guint uid, const char *app_id) */
	signals[SIGNAL_APP_VANISHED] = g_signal_new ("app-vanished", G_TYPE_FROM_CLASS (klass),
						     G_SIGNAL_RUN_LAST, 0, NULL, NULL, NULL,
						     G_TYPE_NONE, 2, G_TYPE_UINT, G_TYPE_STRING);
}

static void
bgs_client_list_init (BgsClientList *self)
{
	self->clients = g_hash_table_new_full (g_str_hash, g_str_equal, NULL, client_free);
}

BgsClientList *
bgs_client_list_new (GDBusConnection *connection, BgsAppRegistry *apps, const char *proc_root)
{
	BgsClientList *self = g_object_new (BGS_TYPE_CLIENT_LIST, NULL);

	self->connection = g_object_ref (connection);
	self->apps = g_object_ref (apps);
	self->proc_root = g_strdup (proc_root != NULL ? proc_root : "/proc");
	/* lets the credentials callback find us without a ref cycle */
	g_object_set_data (G_OBJECT (connection), "bgs-client-list", self);
	return self;
}
