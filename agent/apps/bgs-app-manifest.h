/* bgs-app-manifest.h: app manifests (which app may use which entry point)
 * and the registry that loads them from layered directories.
 *
 * Format: doc/manifests.md. Every manifest is untrusted input: a malformed
 * file is skipped with a warning naming the file and key. */
#pragma once

#include <gio/gio.h>

#include "bgs-types.h"

G_BEGIN_DECLS

/* immutable once parsed; reference counted (atomic). Pointers borrowed from
 * the registry stay valid until the next reload; take a ref to keep one
 * longer (a task that outlives a reload keeps the manifest it started with) */
typedef struct {
	char *id;                                /* reverse-DNS app id */
	char *name;                              /* display name, never NULL */
	char *flatpak_id;                        /* NULL when not a flatpak app */
	char *snap_name;                         /* NULL when not a snap */
	char **executables;                      /* absolute paths, never NULL (may be empty) */
	char **entry_points[BGS_TRIGGER_LAST];   /* never NULL (may be empty) */
	gboolean manage_consents;                /* Privileges=manage-consents */
	char *path;                              /* file it came from (the origin) */
} BgsAppManifest;

/* the known privilege names */
#define BGS_PRIVILEGE_MANAGE_CONSENTS "manage-consents"

/* parses one manifest. @origin names the file in messages and becomes ->path.
 * Returns NULL with BGS_ERROR_INVALID_ARGS (malformed) or, for a file that
 * says [App] Disabled=true, BGS_ERROR_NOT_FOUND. Unknown keys only warn. */
BgsAppManifest *bgs_app_manifest_parse (const char *data, gsize len, const char *origin,
					GError **error);
BgsAppManifest *bgs_app_manifest_ref (const BgsAppManifest *m);
void bgs_app_manifest_unref (BgsAppManifest *m);

/* TRUE when @entry_point is listed for @trigger; NULLs and out-of-range
 * triggers give FALSE */
gboolean bgs_app_manifest_allows (const BgsAppManifest *m, BgsTriggerKind trigger,
				  const char *entry_point);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (BgsAppManifest, bgs_app_manifest_unref)

#define BGS_TYPE_APP_REGISTRY (bgs_app_registry_get_type ())
G_DECLARE_FINAL_TYPE (BgsAppRegistry, bgs_app_registry, BGS, APP_REGISTRY, GObject)

/* {datadir/bgsync/apps, sysconfdir/bgsync/apps} of this build */
const char *const *bgs_app_registry_default_dirs (void);

/* loads every *.conf of @dirs (in order: a later directory's file overrides
 * an earlier file of the same name; a file that is a symlink to /dev/null,
 * empty, or says [App] Disabled=true removes it). Files are then taken in
 * file name order and a manifest whose id, flatpak id, snap name or an
 * executable is already claimed is skipped with a warning.
 * With @watch, the directories are watched with inotify and the registry
 * reloads and emits "changed" (no arguments) after a burst of changes
 * settles; the watch lives on the thread-default main context. */
BgsAppRegistry *bgs_app_registry_new (const char *const *dirs, gboolean watch);
/* reloads now and emits "changed" */
void bgs_app_registry_reload (BgsAppRegistry *self);

/* lookups return borrowed pointers (valid until the next reload) or NULL */
const BgsAppManifest *bgs_app_registry_lookup (BgsAppRegistry *self, const char *app_id);
const BgsAppManifest *bgs_app_registry_lookup_flatpak (BgsAppRegistry *self,
							const char *flatpak_id);
const BgsAppManifest *bgs_app_registry_lookup_snap (BgsAppRegistry *self, const char *snap_name);
/* @exe as /proc/<pid>/exe resolves it; manifest paths match literally or
 * after resolving their symlinks (/bin -> /usr/bin on merged-usr systems) */
const BgsAppManifest *bgs_app_registry_lookup_executable (BgsAppRegistry *self,
							   const char *exe);
/* a new array of refs to every loaded manifest, sorted by id;
 * free with g_ptr_array_unref */
GPtrArray *bgs_app_registry_list (BgsAppRegistry *self);

G_END_DECLS
