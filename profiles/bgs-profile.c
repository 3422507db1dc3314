/* bgs-profile.c: registry of built-in entry points */
#include "bgs-profile.h"
#include "bgs-error.h"

static GPtrArray *profiles = NULL;

void
bgs_profile_register (const BgsProfile *profile)
{
	g_return_if_fail (profile != NULL && profile->name != NULL);
	if (profiles == NULL)
		profiles = g_ptr_array_new ();
	for (guint i = 0; i < profiles->len; i++)
		if (g_strcmp0 (((const BgsProfile *) profiles->pdata[i])->name, profile->name) == 0)
			return;
	g_ptr_array_add (profiles, (gpointer) profile);
}

const BgsProfile *
bgs_profile_lookup (const char *name, gboolean allow_testing)
{
	if (profiles == NULL || name == NULL)
		return NULL;
	for (guint i = 0; i < profiles->len; i++) {
		const BgsProfile *p = profiles->pdata[i];
		if (g_strcmp0 (p->name, name) != 0)
			continue;
		if (p->testing_only && !allow_testing)
			return NULL;
		return p;
	}
	return NULL;
}

gboolean
bgs_profile_start (const BgsProfile *profile, BgsRun *run, GError **error)
{
	BgsTriggerKind trigger = bgs_run_get_trigger (run);

	if ((profile->triggers & BGS_PROFILE_TRIGGER (trigger)) == 0) {
		g_set_error (error, BGS_ERROR, BGS_ERROR_NOT_SUPPORTED,
			     "entry point '%s' cannot run on a %s trigger",
			     profile->name, bgs_trigger_kind_to_string (trigger));
		return FALSE;
	}
	bgs_run_set_cancel_handler (run, profile->cancel);
	profile->start (run);
	return TRUE;
}
