/* bgs-conf-files.c: layered configuration directories and their watch */
#include "bgs-conf-files.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bgs-error.h"

void
bgs_conf_file_free (BgsConfFile *file)
{
	if (file == NULL)
		return;
	g_free (file->name);
	g_free (file->path);
	g_clear_pointer (&file->data, g_bytes_unref);
	g_free (file);
}

GBytes *
bgs_conf_file_read (const char *path, GError **error)
{
	struct stat st;
	g_autofree guint8 *buf = NULL;
	gsize len = 0;
	int fd;

	/* O_NONBLOCK: a fifo dropped into the directory must not hang us */
	fd = open (path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		int errsv = errno;
		g_set_error (error, BGS_ERROR, BGS_ERROR_IO, "%s: cannot open: %s",
			     path, g_strerror (errsv));
		return NULL;
	}
	if (fstat (fd, &st) < 0 || !S_ISREG (st.st_mode)) {
		g_set_error (error, BGS_ERROR, BGS_ERROR_INVALID_ARGS,
			     "%s: not a regular file", path);
		close (fd);
		return NULL;
	}
	if (st.st_size > BGS_CONF_FILE_MAX_SIZE) {
		g_set_error (error, BGS_ERROR, BGS_ERROR_LIMIT_EXCEEDED,
			     "%s: larger than %d bytes", path, BGS_CONF_FILE_MAX_SIZE);
		close (fd);
		return NULL;
	}
	/* one byte more than the limit detects a file that grew after fstat */
	buf = g_malloc (BGS_CONF_FILE_MAX_SIZE + 1);
	while (len < BGS_CONF_FILE_MAX_SIZE + 1) {
		ssize_t n = read (fd, buf + len, BGS_CONF_FILE_MAX_SIZE + 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int errsv = errno;
			g_set_error (error, BGS_ERROR, BGS_ERROR_IO, "%s: cannot read: %s",
				     path, g_strerror (errsv));
			close (fd);
			return NULL;
		}
		if (n == 0)
			break;
		len += (gsize) n;
	}
	close (fd);
	if (len > BGS_CONF_FILE_MAX_SIZE) {
		g_set_error (error, BGS_ERROR, BGS_ERROR_LIMIT_EXCEEDED,
			     "%s: larger than %d bytes", path, BGS_CONF_FILE_MAX_SIZE);
		return NULL;
	}
	return g_bytes_new (buf, len);
}

static gboolean
is_masked (const char *path)
{
	g_autofree char *target = g_file_read_link (path, NULL);

	return target != NULL && g_strcmp0 (target, "/dev/null") == 0;
}

static gint
conf_file_cmp (gconstpointer a, gconstpointer b)
{
	const BgsConfFile *fa = *(BgsConfFile *const *) a;
	const BgsConfFile *fb = *(BgsConfFile *const *) b;

	return strcmp (fa->name, fb->name);
}

GPtrArray *
bgs_conf_files_load (const char *const *dirs)
{
	g_autoptr(GHashTable) winners = g_hash_table_new_full (g_str_hash, g_str_equal,
							       g_free, g_free);
	GPtrArray *files = g_ptr_array_new_with_free_func ((GDestroyNotify) bgs_conf_file_free);
	GHashTableIter iter;
	gpointer key, value;

	for (gsize i = 0; dirs != NULL && dirs[i] != NULL; i++) {
		g_autoptr(GError) error = NULL;
		g_autoptr(GDir) dir = g_dir_open (dirs[i], 0, &error);
		const char *name;

		if (dir == NULL) {
			if (!g_error_matches (error, G_FILE_ERROR, G_FILE_ERROR_NOENT))
				g_warning ("%s: %s", dirs[i], error->message);
			continue;
		}
		while ((name = g_dir_read_name (dir)) != NULL) {
			if (name[0] == '.' || !g_str_has_suffix (name, ".conf") ||
			    strlen (name) == strlen (".conf"))
				continue;
			g_hash_table_replace (winners, g_strdup (name),
					      g_build_filename (dirs[i], name, NULL));
		}
	}

	g_hash_table_iter_init (&iter, winners);
	while (g_hash_table_iter_next (&iter, &key, &value)) {
		g_autoptr(GError) error = NULL;
		BgsConfFile *file = g_new0 (BgsConfFile, 1);

		file->name = g_strdup (key);
		file->path = g_strdup (value);
		if (is_masked (file->path)) {
			file->masked = TRUE;
		} else {
			file->data = bgs_conf_file_read (file->path, &error);
			if (file->data == NULL)
				g_warning ("%s: skipped: %s", file->path, error->message);
			else if (g_bytes_get_size (file->data) == 0) {
				g_clear_pointer (&file->data, g_bytes_unref);
				file->masked = TRUE;
			}
		}
		if (file->masked)
			g_debug ("%s: masked", file->path);
		g_ptr_array_add (files, file);
	}
	g_ptr_array_sort (files, conf_file_cmp);
	return files;
}

/* validation */

gboolean
bgs_conf_is_reverse_dns (const char *str)
{
	guint elements = 0;
	const char *p = str;

	if (str == NULL || *str == '\0' || strlen (str) > 255)
		return FALSE;
	while (*p != '\0') {
		const char *start = p;

		if (g_ascii_isdigit (*p) || *p == '-')
			return FALSE;
		while (*p != '\0' && *p != '.') {
			if (!g_ascii_isalnum (*p) && *p != '_' && *p != '-')
				return FALSE;
			p++;
		}
		if (p == start)
			return FALSE;
		elements++;
		if (*p == '.') {
			p++;
			if (*p == '\0')
				return FALSE;
		}
	}
	return elements >= 2;
}

gboolean
bgs_conf_is_simple_name (const char *str)
{
	gsize len;

	if (str == NULL || (!g_ascii_islower (str[0]) && !g_ascii_isdigit (str[0])))
		return FALSE;
	len = strlen (str);
	if (len > 64)
		return FALSE;
	for (gsize i = 0; i < len; i++) {
		if (!g_ascii_islower (str[i]) && !g_ascii_isdigit (str[i]) && str[i] != '-')
			return FALSE;
	}
	return TRUE;
}

void
bgs_conf_warn_unknown_keys (GKeyFile *kf, const char *group, const char *const *known,
			    const char *const *localized, const char *origin)
{
	g_auto(GStrv) keys = g_key_file_get_keys (kf, group, NULL, NULL);

	for (gsize i = 0; keys != NULL && keys[i] != NULL; i++) {
		const char *bracket = strchr (keys[i], '[');

		if (bracket != NULL && localized != NULL) {
			g_autofree char *base = g_strndup (keys[i], bracket - keys[i]);
			if (g_strv_contains (localized, base))
				continue;
		}
		if (!g_strv_contains (known, keys[i]))
			g_warning ("%s: [%s] unknown key %s ignored", origin, group, keys[i]);
	}
}

/* the watch */

struct _BgsConfWatch {
	char **dirs;
	GPtrArray *monitors; /* GFileMonitor */
	BgsConfWatchFunc func;
	gpointer user_data;
	GSource *pending;
};

static void watch_setup (BgsConfWatch *watch);

static gboolean
watch_fire_cb (gpointer user_data)
{
	BgsConfWatch *watch = user_data;

	g_clear_pointer (&watch->pending, g_source_unref);
	/* directories may have appeared or gone: re-watch before reloading so
	 * that a change made during the reload triggers another one */
	watch_setup (watch);
	watch->func (watch->user_data);
	return G_SOURCE_REMOVE;
}

static void
watch_schedule (BgsConfWatch *watch)
{
	if (watch->pending != NULL)
		g_source_destroy (watch->pending);
	g_clear_pointer (&watch->pending, g_source_unref);
	watch->pending = g_timeout_source_new (BGS_CONF_WATCH_DELAY_MS);
	g_source_set_callback (watch->pending, watch_fire_cb, watch, NULL);
	g_source_set_name (watch->pending, "[bgsync] conf reload");
	g_source_attach (watch->pending, g_main_context_get_thread_default ());
}

static void
monitor_changed_cb (GFileMonitor *monitor, GFile *file, GFile *other, GFileMonitorEvent event,
		    gpointer user_data)
{
	BgsConfWatch *watch = user_data;
	const char *target = g_object_get_data (G_OBJECT (monitor), "bgs-target");

	if (event == G_FILE_MONITOR_EVENT_ATTRIBUTE_CHANGED ||
	    event == G_FILE_MONITOR_EVENT_PRE_UNMOUNT)
		return;
	/* an ancestor of a missing directory: only the path towards it matters */
	if (target != NULL) {
		g_autofree char *path = g_file_get_path (file);
		gsize len = path != NULL ? strlen (path) : 0;

		if (path == NULL || strncmp (target, path, len) != 0 ||
		    (target[len] != '/' && target[len] != '\0'))
			return;
	}
	watch_schedule (watch);
}

static void
watch_add (BgsConfWatch *watch, const char *dir)
{
	g_autofree char *path = g_canonicalize_filename (dir, NULL);
	g_autofree char *watched = g_strdup (path);
	g_autoptr(GFile) file = NULL;
	g_autoptr(GFileMonitor) monitor = NULL;
	g_autoptr(GError) error = NULL;

	/* GLib polls for missing paths, so watch the nearest existing
	 * ancestor ourselves and re-watch when it changes */
	while (!g_file_test (watched, G_FILE_TEST_IS_DIR)) {
		char *parent = g_path_get_dirname (watched);
		if (g_strcmp0 (parent, watched) == 0) {
			g_free (parent);
			return;
		}
		g_free (watched);
		watched = parent;
	}
	file = g_file_new_for_path (watched);
	monitor = g_file_monitor_directory (file, G_FILE_MONITOR_NONE, NULL, &error);
	if (monitor == NULL) {
		g_warning ("%s: cannot watch: %s", watched, error->message);
		return;
	}
	if (g_strcmp0 (watched, path) != 0)
		g_object_set_data_full (G_OBJECT (monitor), "bgs-target",
					g_steal_pointer (&path), g_free);
	g_signal_connect (monitor, "changed", G_CALLBACK (monitor_changed_cb), watch);
	g_ptr_array_add (watch->monitors, g_steal_pointer (&monitor));
}

static void
monitor_drop (gpointer data)
{
	GFileMonitor *monitor = data;

	g_signal_handlers_disconnect_matched (monitor, G_SIGNAL_MATCH_FUNC, 0, 0, NULL,
					      monitor_changed_cb, NULL);
	g_file_monitor_cancel (monitor);
	g_object_unref (monitor);
}

static void
watch_setup (BgsConfWatch *watch)
{
	g_ptr_array_set_size (watch->monitors, 0);
	for (gsize i = 0; watch->dirs[i] != NULL; i++)
		watch_add (watch, watch->dirs[i]);
}

BgsConfWatch *
bgs_conf_watch_new (const char *const *dirs, BgsConfWatchFunc func, gpointer user_data)
{
	BgsConfWatch *watch = g_new0 (BgsConfWatch, 1);

	watch->dirs = g_strdupv ((char **) dirs);
	if (watch->dirs == NULL)
		watch->dirs = g_new0 (char *, 1);
	watch->monitors = g_ptr_array_new_with_free_func (monitor_drop);
	watch->func = func;
	watch->user_data = user_data;
	watch_setup (watch);
	return watch;
}

void
bgs_conf_watch_free (BgsConfWatch *watch)
{
	if (watch == NULL)
		return;
	if (watch->pending != NULL)
		g_source_destroy (watch->pending);
	g_clear_pointer (&watch->pending, g_source_unref);
	g_ptr_array_unref (watch->monitors);
	g_strfreev (watch->dirs);
	g_free (watch);
}
