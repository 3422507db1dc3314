/* bgs-identity.c: caller identity from credentials and /proc */
#include "bgs-identity.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bgs-conf-files.h"
#include "bgs-error.h"

#define DELETED_SUFFIX " (deleted)"
/* .flatpak-info and attr/current are small; refuse anything bigger */
#define PROC_FILE_MAX (64 * 1024)

void
bgs_identity_free (BgsIdentity *id)
{
	if (id == NULL)
		return;
	g_free (id->app_id);
	g_free (id->exe);
	g_free (id->flatpak_id);
	g_free (id->snap_name);
	g_free (id);
}

const char *
bgs_sandbox_to_string (BgsSandbox sandbox)
{
	switch (sandbox) {
	case BGS_SANDBOX_FLATPAK:
		return "flatpak";
	case BGS_SANDBOX_SNAP:
		return "snap";
	case BGS_SANDBOX_NONE:
	default:
		return "none";
	}
}

/* reads a small file; NULL with errno-style @err_out when it cannot be
 * opened, so callers tell "absent" from "unreadable" */
static char *
read_small (const char *path, gsize *len_out, int *err_out)
{
	g_autofree char *buf = g_malloc (PROC_FILE_MAX + 1);
	gsize len = 0;
	int fd;

	*err_out = 0;
	fd = open (path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		*err_out = errno;
		return NULL;
	}
	while (len < PROC_FILE_MAX) {
		ssize_t n = read (fd, buf + len, PROC_FILE_MAX - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			*err_out = errno;
			close (fd);
			return NULL;
		}
		if (n == 0)
			break;
		len += (gsize) n;
	}
	close (fd);
	if (len >= PROC_FILE_MAX) {
		*err_out = EFBIG;
		return NULL;
	}
	buf[len] = '\0';
	*len_out = len;
	return g_steal_pointer (&buf);
}

static gboolean
process_exists (const char *pid_dir)
{
	struct stat st;

	return lstat (pid_dir, &st) == 0;
}

/* TRUE with *flatpak_id NULL when the process is not in a flatpak */
static gboolean
resolve_flatpak (const char *pid_dir, guint32 pid, char **flatpak_id, GError **error)
{
	g_autofree char *path = g_build_filename (pid_dir, "root", ".flatpak-info", NULL);
	g_autoptr(GKeyFile) kf = NULL;
	g_autoptr(GError) local = NULL;
	g_autofree char *data = NULL;
	g_autofree char *name = NULL;
	gsize len = 0;
	int err;

	*flatpak_id = NULL;
	data = read_small (path, &len, &err);
	if (data == NULL) {
		if (err == ENOENT || err == ENOTDIR)
			return TRUE;
		/* e.g. EACCES: we cannot rule out a sandbox, so refuse */
		g_set_error (error, BGS_ERROR, BGS_ERROR_NOT_AUTHORIZED,
			     "cannot read the sandbox info of process %u: %s", pid,
			     g_strerror (err));
		return FALSE;
	}
	kf = g_key_file_new ();
	if (!g_utf8_validate_len (data, len, NULL) ||
	    !g_key_file_load_from_data (kf, data, len, G_KEY_FILE_NONE, &local) ||
	    (name = g_key_file_get_string (kf, "Application", "name", NULL)) == NULL ||
	    !bgs_conf_is_reverse_dns (g_strstrip (name))) {
		g_set_error (error, BGS_ERROR, BGS_ERROR_NOT_AUTHORIZED,
			     "process %u runs in a flatpak sandbox without a valid application name",
			     pid);
		return FALSE;
	}
	*flatpak_id = g_steal_pointer (&name);
	return TRUE;
}

static gboolean
is_snap_name_char (char c)
{
	return g_ascii_islower (c) || g_ascii_isdigit (c) || c == '-';
}

/* AppArmor label "snap.<name>.<app>[.<more>] (<mode>)" -> <name>;
 * TRUE with *snap_name NULL for any label outside "snap." */
static gboolean
parse_snap_label (const char *label, guint32 pid, char **snap_name, GError **error)
{
	const char *p, *start;

	*snap_name = NULL;
	if (!g_str_has_prefix (label, "snap."))
		return TRUE;
	start = p = label + strlen ("snap.");
	while (*p != '\0' && is_snap_name_char (*p))
		p++;
	/* the name must be followed by ".<app or hook>" */
	if (p == start || p - start > 40 || p[0] != '.' || p[1] == '\0' || p[1] == ' ') {
		g_set_error (error, BGS_ERROR, BGS_ERROR_NOT_AUTHORIZED,
			     "process %u has a malformed snap security label", pid);
		return FALSE;
	}
	*snap_name = g_strndup (start, p - start);
	return TRUE;
}

static gboolean
resolve_snap (const char *pid_dir, guint32 pid, const char *security_label, char **snap_name,
	      GError **error)
{
	g_autofree char *data = NULL;
	g_autofree char *path = NULL;
	gsize len = 0;
	int err;

	if (security_label != NULL && *security_label != '\0')
		return parse_snap_label (security_label, pid, snap_name, error);

	*snap_name = NULL;
	path = g_build_filename (pid_dir, "attr", "current", NULL);
	data = read_small (path, &len, &err);
	if (data == NULL) {
		/* no LSM, or one without this file: not a snap */
		if (err == ENOENT || err == EINVAL || err == ENOTDIR || err == EOPNOTSUPP)
			return TRUE;
		g_set_error (error, BGS_ERROR, BGS_ERROR_NOT_AUTHORIZED,
			     "cannot read the security label of process %u: %s", pid,
			     g_strerror (err));
		return FALSE;
	}
	/* the kernel ends it with a newline (and sometimes NUL) */
	data[strcspn (data, "\n")] = '\0';
	return parse_snap_label (data, pid, snap_name, error);
}

BgsIdentity *
bgs_identity_resolve (BgsAppRegistry *apps, guint32 uid, guint32 pid,
		      const char *security_label, const char *proc_root, GError **error)
{
	g_autoptr(BgsIdentity) id = g_new0 (BgsIdentity, 1);
	g_autofree char *pid_dir = NULL;
	g_autofree char *exe_path = NULL;
	g_autoptr(GError) local = NULL;
	const BgsAppManifest *m = NULL;
	char pid_str[16];

	g_return_val_if_fail (apps == NULL || BGS_IS_APP_REGISTRY (apps), NULL);
	if (pid == 0) {
		g_set_error (error, BGS_ERROR, BGS_ERROR_INVALID_ARGS, "no caller process id");
		return NULL;
	}
	if (proc_root == NULL)
		proc_root = "/proc";
	g_snprintf (pid_str, sizeof pid_str, "%u", pid);
	pid_dir = g_build_filename (proc_root, pid_str, NULL);
	id->uid = uid;
	id->pid = pid;
	if (!process_exists (pid_dir)) {
		g_set_error (error, BGS_ERROR, BGS_ERROR_NOT_FOUND, "process %u is gone", pid);
		return NULL;
	}

	/* the executable is read for every caller (for logs), but only an
	 * unsandboxed caller is matched by it */
	exe_path = g_build_filename (pid_dir, "exe", NULL);
	id->exe = g_file_read_link (exe_path, &local);

	if (!resolve_flatpak (pid_dir, pid, &id->flatpak_id, error))
		return NULL;
	if (id->flatpak_id != NULL) {
		id->sandbox = BGS_SANDBOX_FLATPAK;
		if (apps != NULL)
			m = bgs_app_registry_lookup_flatpak (apps, id->flatpak_id);
	} else {
		if (!resolve_snap (pid_dir, pid, security_label, &id->snap_name, error))
			return NULL;
		if (id->snap_name != NULL) {
			id->sandbox = BGS_SANDBOX_SNAP;
			if (apps != NULL)
				m = bgs_app_registry_lookup_snap (apps, id->snap_name);
		}
	}

	if (id->exe != NULL && g_str_has_suffix (id->exe, DELETED_SUFFIX)) {
		id->exe[strlen (id->exe) - strlen (DELETED_SUFFIX)] = '\0';
		if (id->sandbox == BGS_SANDBOX_NONE) {
			g_info ("process %u runs the deleted executable %s: not matched", pid,
				id->exe);
			return g_steal_pointer (&id);
		}
	} else if (id->sandbox == BGS_SANDBOX_NONE) {
		if (id->exe == NULL) {
			if (!process_exists (pid_dir)) {
				g_set_error (error, BGS_ERROR, BGS_ERROR_NOT_FOUND,
					     "process %u is gone", pid);
				return NULL;
			}
			if (!g_error_matches (local, G_FILE_ERROR, G_FILE_ERROR_NOENT)) {
				g_set_error (error, BGS_ERROR, BGS_ERROR_NOT_AUTHORIZED,
					     "cannot read the executable of process %u: %s", pid,
					     local->message);
				return NULL;
			}
		} else if (apps != NULL) {
			m = bgs_app_registry_lookup_executable (apps, id->exe);
		}
	}
	if (m != NULL)
		id->app_id = g_strdup (m->id);
	g_debug ("process %u (uid %u, sandbox %s, exe %s) is app %s", pid, uid,
		 bgs_sandbox_to_string (id->sandbox), id->exe ? id->exe : "?",
		 id->app_id ? id->app_id : "(none)");
	return g_steal_pointer (&id);
}
