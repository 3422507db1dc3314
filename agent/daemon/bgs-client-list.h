/* bgs-client-list.h: who is calling — identity per bus connection.
 *
 * Each unique bus name that talks to the agent is resolved once from its
 * credentials (GetConnectionCredentials -> uid, pid, security label ->
 * app manifest) and watched; when the last connection of an app (uid + app
 * id) goes away the list emits "app-vanished" (the seed's "app exited"). */
#pragma once

#include <gio/gio.h>

#include "bgs-app-manifest.h"
#include "bgs-identity.h"

G_BEGIN_DECLS

#define BGS_TYPE_CLIENT_LIST (bgs_client_list_get_type ())
G_DECLARE_FINAL_TYPE (BgsClientList, bgs_client_list, BGS, CLIENT_LIST, GObject)

BgsClientList *bgs_client_list_new (GDBusConnection *connection, BgsAppRegistry *apps,
				    const char *proc_root);

/* resolves (or returns the cached) identity of @sender */
void bgs_client_list_resolve_async (BgsClientList *self, const char *sender,
				    GCancellable *cancellable, GAsyncReadyCallback callback,
				    gpointer user_data);
const BgsIdentity *bgs_client_list_resolve_finish (BgsClientList *self, GAsyncResult *res,
						   GError **error);
/* NULL if not (yet) resolved */
const BgsIdentity *bgs_client_list_lookup (BgsClientList *self, const char *sender);

/* unique names of the live connections of an app (for unicast signals) */
GPtrArray *bgs_client_list_get_app_names (BgsClientList *self, guint32 uid, const char *app_id);
gboolean bgs_client_list_app_connected (BgsClientList *self, guint32 uid, const char *app_id);
/* re-matches every connection against the (reloaded) manifests */
void bgs_client_list_rematch (BgsClientList *self);

/* "uid:app-id", the engine's owner key for an app */
char *bgs_client_app_key (guint32 uid, const char *app_id);

G_END_DECLS
