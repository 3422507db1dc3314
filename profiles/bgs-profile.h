/* bgs-profile.h: built-in entry points ("profiles") and their registry */
#pragma once

#include "bgs-run.h"

G_BEGIN_DECLS

typedef struct {
	const char *name;
	/* bitmask of (1 << BgsTriggerKind) this entry point can serve */
	guint triggers;
	/* only available when the config enables test profiles */
	gboolean testing_only;
	/* starts the work; must not block, reports through the run */
	void (*start) (BgsRun *run);
	/* stops the work after bgs_run_cancel(); must release fds and sources */
	void (*cancel) (BgsRun *run, BgsCancelReason reason);
	/* optional: seconds the work will take, from the size of the "input"
	 * fd, the link rate measured on this device before (0 = never) and
	 * the model's parameters; 0 = cannot tell */
	guint (*estimate) (gint64 input_size, gdouble measured_rate, GHashTable *params);
} BgsProfile;

#define BGS_PROFILE_TRIGGER(kind) (1u << (kind))

void bgs_profile_register (const BgsProfile *profile);
/* NULL when unknown, or testing-only and @allow_testing is FALSE */
const BgsProfile *bgs_profile_lookup (const char *name, gboolean allow_testing);
/* starts @run with the profile named by its entry point */
gboolean bgs_profile_start (const BgsProfile *profile, BgsRun *run, GError **error);

G_END_DECLS
