/* bgs-identity.h: which app is calling, from the caller's D-Bus
 * credentials (uid, pid, LinuxSecurityLabel) and /proc, never from an
 * argument. What this can and cannot guarantee: doc/security.md. */
#pragma once

#include <glib.h>

#include "bgs-app-manifest.h"

G_BEGIN_DECLS

typedef enum {
	BGS_SANDBOX_NONE,
	BGS_SANDBOX_FLATPAK,
	BGS_SANDBOX_SNAP,
} BgsSandbox;

typedef struct {
	guint32 uid;
	guint32 pid;
	BgsSandbox sandbox;
	char *app_id;       /* manifest id; NULL: matches no manifest (refuse with UnknownApp) */
	char *exe;          /* /proc/<pid>/exe without " (deleted)", NULL if unreadable */
	char *flatpak_id;   /* sandbox FLATPAK: [Application] name of .flatpak-info */
	char *snap_name;    /* sandbox SNAP: <name> of the snap.<name>.<app> label */
} BgsIdentity;

/* Order: flatpak (<proc_root>/<pid>/root/.flatpak-info) -> snap (@security_label
 * "snap.<name>.<app> (enforce)", or <proc_root>/<pid>/attr/current when
 * @security_label is NULL or empty) -> executable (<proc_root>/<pid>/exe
 * against the manifests' Executable=). A flatpak or snap caller is matched
 * only by its sandbox id, never by its executable. An executable that was
 * deleted (" (deleted)") matches nothing.
 * @proc_root is "/proc" in production and a fake tree in tests.
 * Errors (BGS_ERROR): NOT_FOUND when the process is gone; NOT_AUTHORIZED when
 * its sandbox cannot be determined (unreadable or malformed .flatpak-info,
 * malformed snap label, unreadable /proc entries), so it never falls back to
 * a weaker check; INVALID_ARGS for pid 0. */
BgsIdentity *bgs_identity_resolve (BgsAppRegistry *apps, guint32 uid, guint32 pid,
				   const char *security_label, const char *proc_root,
				   GError **error);
void bgs_identity_free (BgsIdentity *id);
const char *bgs_sandbox_to_string (BgsSandbox sandbox);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (BgsIdentity, bgs_identity_free)

G_END_DECLS
