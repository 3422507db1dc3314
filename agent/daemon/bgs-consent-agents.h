/* bgs-consent-agents.h: registered org.bgsync.ConsentAgent1 implementations.
 *
 * Modelled on BlueZ's agent list: per user a stack of agents (the newest
 * answers), each watched for disconnection; a request has a timeout after
 * which the agent gets Cancel() and the answer is "no answer"; no agent
 * means no consent, never a silent allow. */
#pragma once

#include <gio/gio.h>

G_BEGIN_DECLS

#define BGS_TYPE_CONSENT_AGENTS (bgs_consent_agents_get_type ())
G_DECLARE_FINAL_TYPE (BgsConsentAgents, bgs_consent_agents, BGS, CONSENT_AGENTS, GObject)

typedef struct {
	const char *app_id;
	const char *app_name;
	const char *device;
	const char *model;
	const char *kind;       /* "device-use" / "device-servicing" */
	guint estimate;         /* seconds */
	const char *const *warnings;
} BgsConsentRequest;

typedef enum {
	BGS_CONSENT_ANSWER_ALLOW,
	BGS_CONSENT_ANSWER_DENY,
	BGS_CONSENT_ANSWER_NONE, /* timeout, agent error or gone, canceled */
} BgsConsentAnswer;

BgsConsentAgents *bgs_consent_agents_new (GDBusConnection *connection, gint64 timeout_usec,
					  guint max_per_user);
void bgs_consent_agents_set_timeout (BgsConsentAgents *self, gint64 timeout_usec);

gboolean bgs_consent_agents_register (BgsConsentAgents *self, guint32 uid, const char *owner,
				      const char *path, GError **error);
gboolean bgs_consent_agents_unregister (BgsConsentAgents *self, guint32 uid, const char *owner,
					const char *path, GError **error);
gboolean bgs_consent_agents_has_agent (BgsConsentAgents *self, guint32 uid);

/* cancelling @cancellable sends Cancel() to the agent and answers NONE */
void bgs_consent_agents_request_async (BgsConsentAgents *self, guint32 uid,
				       const BgsConsentRequest *request,
				       GCancellable *cancellable, GAsyncReadyCallback callback,
				       gpointer user_data);
BgsConsentAnswer bgs_consent_agents_request_finish (BgsConsentAgents *self, GAsyncResult *res,
						   char **detail);
/* sends Release() to every agent (shutdown) */
void bgs_consent_agents_release_all (BgsConsentAgents *self);
G_END_DECLS
