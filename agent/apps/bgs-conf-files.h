/* bgs-conf-files.h: private to agent/apps. Layered *.conf directories
 * (later directories override files of the same name, a symlink to
 * /dev/null or an empty file masks) and a coalescing inotify watch. */
#pragma once

#include <gio/gio.h>

G_BEGIN_DECLS

/* files larger than this are refused: a manifest is a few hundred bytes */
#define BGS_CONF_FILE_MAX_SIZE (64 * 1024)
/* how long a burst of inotify events is coalesced before one reload */
#define BGS_CONF_WATCH_DELAY_MS 100

typedef struct {
	char *name;   /* basename, the override key */
	char *path;   /* the file that won */
	GBytes *data; /* NULL when masked or unreadable (see @masked) */
	gboolean masked;
} BgsConfFile;

void bgs_conf_file_free (BgsConfFile *file);

/* every *.conf in @dirs (NULL-terminated, missing directories are fine),
 * one per basename, the last directory's copy winning, sorted by basename;
 * unreadable, oversize and non-regular files are returned with data NULL
 * and masked FALSE after a warning, so they still override (fail closed) */
GPtrArray *bgs_conf_files_load (const char *const *dirs);

/* reads one file with the size limit and without blocking on fifos */
GBytes *bgs_conf_file_read (const char *path, GError **error);

typedef struct _BgsConfWatch BgsConfWatch;
typedef void (*BgsConfWatchFunc) (gpointer user_data);

/* calls @func once after a burst of changes in any of @dirs settles;
 * directories that do not exist yet are watched through their parent */
BgsConfWatch *bgs_conf_watch_new (const char *const *dirs, BgsConfWatchFunc func,
				  gpointer user_data);
void bgs_conf_watch_free (BgsConfWatch *watch);

/* validation shared by the parsers */
gboolean bgs_conf_is_reverse_dns (const char *str);
/* [a-z0-9][a-z0-9-]*, at most 64 bytes */
gboolean bgs_conf_is_simple_name (const char *str);
/* warns about keys of @group not in @known (NULL-terminated); keys
 * with a [locale] suffix are accepted for the keys in @localized */
void bgs_conf_warn_unknown_keys (GKeyFile *kf, const char *group, const char *const *known,
				 const char *const *localized, const char *origin);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (BgsConfFile, bgs_conf_file_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (BgsConfWatch, bgs_conf_watch_free)

G_END_DECLS
