/* bgs-app-manifest.c: app manifests and their registry */
#include "config.h"

#include "bgs-app-manifest.h"

#include <stdlib.h>
#include <string.h>

#include "bgs-conf-files.h"
#include "bgs-error.h"

#define GROUP "App"

static const char *const manifest_keys[] = {
	"Id", "Name", "FlatpakId", "SnapName", "Executable", "DeviceUseEntryPoints",
	"DeviceServicingEntryPoints", "CustomEntryPoints", "Privileges", "Disabled", NULL
};
static const char *const manifest_localized[] = { "Name", NULL };

/* indexed by BgsTriggerKind */
static const char *const entry_point_keys[BGS_TRIGGER_LAST] = {
	"DeviceUseEntryPoints", "DeviceServicingEntryPoints", "CustomEntryPoints"
};

static void
manifest_clear (gpointer data)
{
	BgsAppManifest *m = data;

	g_free (m->id);
	g_free (m->name);
	g_free (m->flatpak_id);
	g_free (m->snap_name);
	g_strfreev (m->executables);
	for (guint i = 0; i < BGS_TRIGGER_LAST; i++)
		g_strfreev (m->entry_points[i]);
	g_free (m->path);
}

BgsAppManifest *
bgs_app_manifest_ref (const BgsAppManifest *m)
{
	return g_atomic_rc_box_acquire ((BgsAppManifest *) m);
}

void
bgs_app_manifest_unref (BgsAppManifest *m)
{
	if (m != NULL)
		g_atomic_rc_box_release_full (m, manifest_clear);
}

static gboolean
is_snap_name (const char *str)
{
	gsize len = strlen (str);
	gboolean letter = FALSE;

	/* snapd: lower-case letters, digits and inner dashes, at least one letter */
	if (len == 0 || len > 40 || str[0] == '-' || str[len - 1] == '-' || strstr (str, "--"))
		return FALSE;
	for (gsize i = 0; i < len; i++) {
		if (g_ascii_islower (str[i]))
			letter = TRUE;
		else if (!g_ascii_isdigit (str[i]) && str[i] != '-')
			return FALSE;
	}
	return letter;
}

static gboolean
is_canonical_absolute (const char *path)
{
	g_autofree char *canon = NULL;

	if (!g_path_is_absolute (path))
		return FALSE;
	canon = g_canonicalize_filename (path, "/");
	return g_strcmp0 (canon, path) == 0 && strcmp (path, "/") != 0;
}

/* an optional string key; FALSE (with @error) only when present but unusable */
static gboolean
get_optional_string (GKeyFile *kf, const char *key, char **out, const char *origin,
		     GError **error)
{
	g_autoptr(GError) local = NULL;
	g_autofree char *value = g_key_file_get_string (kf, GROUP, key, &local);

	*out = NULL;
	if (value == NULL) {
		if (g_error_matches (local, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_KEY_NOT_FOUND))
			return TRUE;
		g_set_error (error, BGS_ERROR, BGS_ERROR_INVALID_ARGS, "%s: [%s] %s: %s",
			     origin, GROUP, key, local->message);
		return FALSE;
	}
	g_strstrip (value);
	if (*value != '\0')
		*out = g_steal_pointer (&value);
	return TRUE;
}

static gboolean
get_optional_list (GKeyFile *kf, const char *key, char ***out, const char *origin,
		   GError **error)
{
	g_autoptr(GError) local = NULL;
	g_auto(GStrv) list = g_key_file_get_string_list (kf, GROUP, key, NULL, &local);
	GPtrArray *items;

	if (list == NULL) {
		if (local == NULL ||
		    g_error_matches (local, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_KEY_NOT_FOUND)) {
			*out = g_new0 (char *, 1);
			return TRUE;
		}
		g_set_error (error, BGS_ERROR, BGS_ERROR_INVALID_ARGS, "%s: [%s] %s: %s",
			     origin, GROUP, key, local->message);
		return FALSE;
	}
	items = g_ptr_array_new ();
	for (gsize i = 0; list[i] != NULL; i++) {
		g_strstrip (list[i]);
		if (*list[i] != '\0')
			g_ptr_array_add (items, g_strdup (list[i]));
	}
	g_ptr_array_add (items, NULL);
	*out = (char **) g_ptr_array_free (items, FALSE);
	return TRUE;
}

BgsAppManifest *
bgs_app_manifest_parse (const char *data, gsize len, const char *origin, GError **error)
{
	g_autoptr(GKeyFile) kf = g_key_file_new ();
	g_autoptr(GError) local = NULL;
	g_autoptr(BgsAppManifest) m = NULL;
	g_auto(GStrv) groups = NULL;
	g_auto(GStrv) privileges = NULL;
	gboolean disabled;

	if (origin == NULL)
		origin = "(manifest)";
	if (data == NULL && len > 0) {
		g_set_error (error, BGS_ERROR, BGS_ERROR_INVALID_ARGS, "%s: no data", origin);
		return NULL;
	}
	if (len > BGS_CONF_FILE_MAX_SIZE) {
		g_set_error (error, BGS_ERROR, BGS_ERROR_INVALID_ARGS,
			     "%s: larger than %d bytes", origin, BGS_CONF_FILE_MAX_SIZE);
		return NULL;
	}
	/* GKeyFile checks encoding per value only; refuse the whole file early
	 * (this also refuses embedded NUL bytes) */
	if (len > 0 && !g_utf8_validate_len (data, len, NULL)) {
		g_set_error (error, BGS_ERROR, BGS_ERROR_INVALID_ARGS,
			     "%s: not valid UTF-8 text", origin);
		return NULL;
	}
	if (!g_key_file_load_from_data (kf, len > 0 ? data : "", len, G_KEY_FILE_NONE, &local)) {
		g_set_error (error, BGS_ERROR, BGS_ERROR_INVALID_ARGS, "%s: %s", origin,
			     local->message);
		return NULL;
	}
	if (!g_key_file_has_group (kf, GROUP)) {
		g_set_error (error, BGS_ERROR, BGS_ERROR_INVALID_ARGS, "%s: no [%s] group",
			     origin, GROUP);
		return NULL;
	}

	disabled = g_key_file_get_boolean (kf, GROUP, "Disabled", &local);
	if (local != NULL &&
	    !g_error_matches (local, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_KEY_NOT_FOUND)) {
		g_set_error (error, BGS_ERROR, BGS_ERROR_INVALID_ARGS,
			     "%s: [%s] Disabled: %s", origin, GROUP, local->message);
		return NULL;
	}
	g_clear_error (&local);
	if (disabled) {
		g_set_error (error, BGS_ERROR, BGS_ERROR_NOT_FOUND, "%s: disabled", origin);
		return NULL;
	}

	groups = g_key_file_get_groups (kf, NULL);
	for (gsize i = 0; groups[i] != NULL; i++) {
		if (strcmp (groups[i], GROUP) != 0)
			g_warning ("%s: unknown group [%s] ignored", origin, groups[i]);
	}
	bgs_conf_warn_unknown_keys (kf, GROUP, manifest_keys, manifest_localized, origin);

	m = g_atomic_rc_box_new0 (BgsAppManifest);
	m->path = g_strdup (origin);

	if (!get_optional_string (kf, "Id", &m->id, origin, error))
		return NULL;
	if (m->id == NULL) {
		g_set_error (error, BGS_ERROR, BGS_ERROR_INVALID_ARGS, "%s: [%s] Id missing",
			     origin, GROUP);
		return NULL;
	}
	if (!bgs_conf_is_reverse_dns (m->id)) {
		g_set_error (error, BGS_ERROR, BGS_ERROR_INVALID_ARGS,
			     "%s: [%s] Id '%s' is not a reverse-DNS app id", origin, GROUP, m->id);
		return NULL;
	}
	if (!get_optional_string (kf, "Name", &m->name, origin, error))
		return NULL;
	if (m->name == NULL)
		m->name = g_strdup (m->id);

	if (!get_optional_string (kf, "FlatpakId", &m->flatpak_id, origin, error))
		return NULL;
	if (m->flatpak_id != NULL && !bgs_conf_is_reverse_dns (m->flatpak_id)) {
		g_set_error (error, BGS_ERROR, BGS_ERROR_INVALID_ARGS,
			     "%s: [%s] FlatpakId '%s' is not a flatpak application id",
			     origin, GROUP, m->flatpak_id);
		return NULL;
	}
	if (!get_optional_string (kf, "SnapName", &m->snap_name, origin, error))
		return NULL;
	if (m->snap_name != NULL && !is_snap_name (m->snap_name)) {
		g_set_error (error, BGS_ERROR, BGS_ERROR_INVALID_ARGS,
			     "%s: [%s] SnapName '%s' is not a snap name", origin, GROUP,
			     m->snap_name);
		return NULL;
	}
	if (!get_optional_list (kf, "Executable", &m->executables, origin, error))
		return NULL;
	for (gsize i = 0; m->executables[i] != NULL; i++) {
		if (!is_canonical_absolute (m->executables[i])) {
			g_set_error (error, BGS_ERROR, BGS_ERROR_INVALID_ARGS,
				     "%s: [%s] Executable '%s' is not an absolute, canonical path",
				     origin, GROUP, m->executables[i]);
			return NULL;
		}
	}
	if (m->flatpak_id == NULL && m->snap_name == NULL && m->executables[0] == NULL) {
		g_set_error (error, BGS_ERROR, BGS_ERROR_INVALID_ARGS,
			     "%s: [%s] needs at least one of FlatpakId, SnapName, Executable",
			     origin, GROUP);
		return NULL;
	}

	for (guint t = 0; t < BGS_TRIGGER_LAST; t++) {
		if (!get_optional_list (kf, entry_point_keys[t], &m->entry_points[t], origin,
					error))
			return NULL;
		for (gsize i = 0; m->entry_points[t][i] != NULL; i++) {
			if (!bgs_conf_is_simple_name (m->entry_points[t][i])) {
				g_set_error (error, BGS_ERROR, BGS_ERROR_INVALID_ARGS,
					     "%s: [%s] %s: '%s' is not an entry point name",
					     origin, GROUP, entry_point_keys[t],
					     m->entry_points[t][i]);
				return NULL;
			}
		}
	}

	if (!get_optional_list (kf, "Privileges", &privileges, origin, error))
		return NULL;
	for (gsize i = 0; privileges[i] != NULL; i++) {
		if (strcmp (privileges[i], BGS_PRIVILEGE_MANAGE_CONSENTS) == 0)
			m->manage_consents = TRUE;
		else /* ignoring one only grants less */
			g_warning ("%s: [%s] Privileges: unknown privilege '%s' ignored",
				   origin, GROUP, privileges[i]);
	}
	return g_steal_pointer (&m);
}

gboolean
bgs_app_manifest_allows (const BgsAppManifest *m, BgsTriggerKind trigger,
			 const char *entry_point)
{
	if (m == NULL || entry_point == NULL || (guint) trigger >= BGS_TRIGGER_LAST ||
	    m->entry_points[trigger] == NULL)
		return FALSE;
	return g_strv_contains ((const char *const *) m->entry_points[trigger], entry_point);
}

/* the registry */

struct _BgsAppRegistry {
	GObject parent_instance;
	char **dirs;
	BgsConfWatch *watch;
	GPtrArray *manifests;     /* BgsAppManifest refs, sorted by id */
	GHashTable *by_id;        /* borrowed keys and values */
	GHashTable *by_flatpak;
	GHashTable *by_snap;
	GHashTable *by_exe;       /* owned keys: literal and resolved paths */
};

G_DEFINE_TYPE (BgsAppRegistry, bgs_app_registry, G_TYPE_OBJECT)

enum { SIGNAL_CHANGED, N_SIGNALS };
static guint signals[N_SIGNALS];

const char *const *
bgs_app_registry_default_dirs (void)
{
	static const char *const dirs[] = { BGS_DATADIR "/apps", BGS_SYSCONFDIR "/apps", NULL };

	return dirs;
}

static gint
manifest_cmp (gconstpointer a, gconstpointer b)
{
	const BgsAppManifest *ma = *(BgsAppManifest *const *) a;
	const BgsAppManifest *mb = *(BgsAppManifest *const *) b;

	return strcmp (ma->id, mb->id);
}

/* the manifest already holding one of @m's claims, or NULL */
static const BgsAppManifest *
find_conflict (BgsAppRegistry *self, const BgsAppManifest *m, const char **what)
{
	const BgsAppManifest *other;

	if ((other = g_hash_table_lookup (self->by_id, m->id)) != NULL) {
		*what = "Id";
		return other;
	}
	if (m->flatpak_id != NULL &&
	    (other = g_hash_table_lookup (self->by_flatpak, m->flatpak_id)) != NULL) {
		*what = "FlatpakId";
		return other;
	}
	if (m->snap_name != NULL &&
	    (other = g_hash_table_lookup (self->by_snap, m->snap_name)) != NULL) {
		*what = "SnapName";
		return other;
	}
	for (gsize i = 0; m->executables[i] != NULL; i++) {
		if ((other = g_hash_table_lookup (self->by_exe, m->executables[i])) != NULL) {
			*what = "Executable";
			return other;
		}
	}
	return NULL;
}

static void
registry_load (BgsAppRegistry *self)
{
	g_autoptr(GPtrArray) files = bgs_conf_files_load ((const char *const *) self->dirs);

	g_hash_table_remove_all (self->by_id);
	g_hash_table_remove_all (self->by_flatpak);
	g_hash_table_remove_all (self->by_snap);
	g_hash_table_remove_all (self->by_exe);
	g_ptr_array_set_size (self->manifests, 0);

	for (guint i = 0; i < files->len; i++) {
		BgsConfFile *file = g_ptr_array_index (files, i);
		g_autoptr(GError) error = NULL;
		g_autoptr(BgsAppManifest) m = NULL;
		const BgsAppManifest *other;
		const char *what = NULL;
		gsize len;
		const char *data;

		if (file->data == NULL)
			continue;
		data = g_bytes_get_data (file->data, &len);
		m = bgs_app_manifest_parse (data, len, file->path, &error);
		if (m == NULL) {
			if (g_error_matches (error, BGS_ERROR, BGS_ERROR_NOT_FOUND))
				g_debug ("%s", error->message);
			else
				g_warning ("%s (skipped)", error->message);
			continue;
		}
		other = find_conflict (self, m, &what);
		if (other != NULL) {
			g_warning ("%s: skipped: [%s] %s is already claimed by %s", file->path,
				   GROUP, what, other->path);
			continue;
		}
		g_hash_table_insert (self->by_id, m->id, m);
		if (m->flatpak_id != NULL)
			g_hash_table_insert (self->by_flatpak, m->flatpak_id, m);
		if (m->snap_name != NULL)
			g_hash_table_insert (self->by_snap, m->snap_name, m);
		for (gsize j = 0; m->executables[j] != NULL; j++) {
			char resolved[4096];

			g_hash_table_insert (self->by_exe, g_strdup (m->executables[j]), m);
			if (realpath (m->executables[j], resolved) != NULL &&
			    !g_hash_table_contains (self->by_exe, resolved))
				g_hash_table_insert (self->by_exe, g_strdup (resolved), m);
		}
		g_debug ("%s: app %s", file->path, m->id);
		g_ptr_array_add (self->manifests, g_steal_pointer (&m));
	}
	g_ptr_array_sort (self->manifests, manifest_cmp);
}

static void
watch_cb (gpointer user_data)
{
	bgs_app_registry_reload (BGS_APP_REGISTRY (user_data));
}

static void
bgs_app_registry_finalize (GObject *object)
{
	BgsAppRegistry *self = BGS_APP_REGISTRY (object);

	g_clear_pointer (&self->watch, bgs_conf_watch_free);
	g_hash_table_unref (self->by_id);
	g_hash_table_unref (self->by_flatpak);
	g_hash_table_unref (self->by_snap);
	g_hash_table_unref (self->by_exe);
	g_ptr_array_unref (self->manifests);
	g_strfreev (self->dirs);
	G_OBJECT_CLASS (bgs_app_registry_parent_class)->finalize (object);
}

static void
bgs_app_registry_class_init (BgsAppRegistryClass *klass)
{
	G_OBJECT_CLASS (klass)->finalize = bgs_app_registry_finalize;
	signals[SIGNAL_CHANGED] = g_signal_new ("changed", G_TYPE_FROM_CLASS (klass),
						G_SIGNAL_RUN_LAST, 0, NULL, NULL, NULL,
						G_TYPE_NONE, 0);
}

static void
bgs_app_registry_init (BgsAppRegistry *self)
{
	self->manifests = g_ptr_array_new_with_free_func ((GDestroyNotify) bgs_app_manifest_unref);
	self->by_id = g_hash_table_new (g_str_hash, g_str_equal);
	self->by_flatpak = g_hash_table_new (g_str_hash, g_str_equal);
	self->by_snap = g_hash_table_new (g_str_hash, g_str_equal);
	self->by_exe = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
}

BgsAppRegistry *
bgs_app_registry_new (const char *const *dirs, gboolean watch)
{
	BgsAppRegistry *self = g_object_new (BGS_TYPE_APP_REGISTRY, NULL);

	self->dirs = g_strdupv ((char **) dirs);
	if (self->dirs == NULL)
		self->dirs = g_new0 (char *, 1);
	if (watch)
		self->watch = bgs_conf_watch_new ((const char *const *) self->dirs, watch_cb, self);
	registry_load (self);
	return self;
}

void
bgs_app_registry_reload (BgsAppRegistry *self)
{
	g_return_if_fail (BGS_IS_APP_REGISTRY (self));
	registry_load (self);
	g_info ("app manifests reloaded: %u apps", self->manifests->len);
	g_signal_emit (self, signals[SIGNAL_CHANGED], 0);
}

const BgsAppManifest *
bgs_app_registry_lookup (BgsAppRegistry *self, const char *app_id)
{
	g_return_val_if_fail (BGS_IS_APP_REGISTRY (self), NULL);
	return app_id != NULL ? g_hash_table_lookup (self->by_id, app_id) : NULL;
}

const BgsAppManifest *
bgs_app_registry_lookup_flatpak (BgsAppRegistry *self, const char *flatpak_id)
{
	g_return_val_if_fail (BGS_IS_APP_REGISTRY (self), NULL);
	return flatpak_id != NULL ? g_hash_table_lookup (self->by_flatpak, flatpak_id) : NULL;
}

const BgsAppManifest *
bgs_app_registry_lookup_snap (BgsAppRegistry *self, const char *snap_name)
{
	g_return_val_if_fail (BGS_IS_APP_REGISTRY (self), NULL);
	return snap_name != NULL ? g_hash_table_lookup (self->by_snap, snap_name) : NULL;
}

const BgsAppManifest *
bgs_app_registry_lookup_executable (BgsAppRegistry *self, const char *exe)
{
	g_return_val_if_fail (BGS_IS_APP_REGISTRY (self), NULL);
	return exe != NULL ? g_hash_table_lookup (self->by_exe, exe) : NULL;
}

GPtrArray *
bgs_app_registry_list (BgsAppRegistry *self)
{
	GPtrArray *list;

	g_return_val_if_fail (BGS_IS_APP_REGISTRY (self), NULL);
	list = g_ptr_array_new_full (self->manifests->len,
				     (GDestroyNotify) bgs_app_manifest_unref);
	for (guint i = 0; i < self->manifests->len; i++)
		g_ptr_array_add (list, bgs_app_manifest_ref (g_ptr_array_index (self->manifests, i)));
	return list;
}
