/* bgs-smp-server.c: SMP device side over a file-backed flash store */
#include "bgs-smp-server.h"

#include <errno.h>
#include <fcntl.h>
#include <glib-unix.h>
#include <glib/gstdio.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bgs-error.h"
#include "bgs-smp-cbor.h"
#include "bgs-smp-cmd.h"
#include "bgs-smp-frame.h"

typedef enum {
	PENDING_NONE,
	PENDING_TEST,
	PENDING_PERMANENT,
} Pending;

struct _BgsSmpServer {
	BgsClock *clock;
	char *dir;
	char *slot_path[2];
	char *boot_path;
	char *files_dir;
	BgsSmpServerOptions opt;

	Pending pending;
	gboolean testing; /* running image is on trial, not yet confirmed */

	/* upload in progress (RAM only) */
	gboolean up_active;
	guint64 up_off;
	guint64 up_len;
	guint8 up_sha[32];
	gboolean up_has_sha;
	gint64 erase_end;
	guint64 upload_bytes;

	guint mtu;
	BgsSmpServerSendFunc send;
	gpointer send_data;
	int read_fd;
	int write_fd;
	GSource *read_source;
	BgsSmpServerResetFunc reset_func;
	gpointer reset_data;
	GByteArray *rx;
	GArray *rx_ends;  /* guint: where each write ended in rx, oldest first */
	guint rx_timer;
	guint reset_idle;
};

static gboolean
save_boot (BgsSmpServer *s, GError **error)
{
	g_autoptr(GKeyFile) kf = g_key_file_new ();
	static const char *names[] = { "none", "test", "permanent" };

	g_key_file_set_string (kf, "boot", "pending", names[s->pending]);
	g_key_file_set_boolean (kf, "boot", "testing", s->testing);
	return g_key_file_save_to_file (kf, s->boot_path, error);
}

static void
load_boot (BgsSmpServer *s)
{
	g_autoptr(GKeyFile) kf = g_key_file_new ();
	g_autofree char *p = NULL;

	s->pending = PENDING_NONE;
	s->testing = FALSE;
	if (!g_key_file_load_from_file (kf, s->boot_path, G_KEY_FILE_NONE, NULL))
		return;
	p = g_key_file_get_string (kf, "boot", "pending", NULL);
	if (g_strcmp0 (p, "test") == 0)
		s->pending = PENDING_TEST;
	else if (g_strcmp0 (p, "permanent") == 0)
		s->pending = PENDING_PERMANENT;
	s->testing = g_key_file_get_boolean (kf, "boot", "testing", NULL);
}

BgsSmpServer *
bgs_smp_server_new (BgsClock *clock, const char *state_dir, const BgsSmpServerOptions *options,
		    GError **error)
{
	g_autoptr(BgsSmpServer) s = g_new0 (BgsSmpServer, 1);

	s->clock = bgs_clock_ref (clock);
	s->dir = g_strdup (state_dir);
	s->slot_path[0] = g_build_filename (state_dir, "slot0.bin", NULL);
	s->slot_path[1] = g_build_filename (state_dir, "slot1.bin", NULL);
	s->boot_path = g_build_filename (state_dir, "boot.ini", NULL);
	s->files_dir = g_build_filename (state_dir, "files", NULL);
	if (options != NULL)
		s->opt = *options;
	if (s->opt.max_frame == 0)
		s->opt.max_frame = 512;
	if (s->opt.reset_delay_usec <= 0)
		s->opt.reset_delay_usec = 250 * 1000;
	if (s->opt.buf_count == 0)
		s->opt.buf_count = 4;
	s->opt.max_frame = CLAMP (s->opt.max_frame, 128, 8 + G_MAXUINT16);
	s->mtu = 23;
	s->read_fd = -1;
	s->write_fd = -1;
	if (s->opt.rx_timeout_usec <= 0)
		s->opt.rx_timeout_usec = BGS_SMP_SERVER_RX_TIMEOUT_USEC;
	s->rx = g_byte_array_new ();
	s->rx_ends = g_array_new (FALSE, FALSE, sizeof (guint));
	if (g_mkdir_with_parents (s->files_dir, 0700) < 0) {
		int saved = errno;

		g_set_error (error, BGS_ERROR, BGS_ERROR_IO, "cannot create %s: %s", s->files_dir,
			     g_strerror (saved));
		return NULL;
	}
	load_boot (s);
	return g_steal_pointer (&s);
}

void
bgs_smp_server_free (BgsSmpServer *s)
{
	if (s == NULL)
		return;
	bgs_smp_server_detach (s);
	if (s->reset_idle != 0)
		bgs_clock_remove (s->clock, s->reset_idle);
	bgs_clock_unref (s->clock);
	g_free (s->dir);
	g_free (s->slot_path[0]);
	g_free (s->slot_path[1]);
	g_free (s->boot_path);
	g_free (s->files_dir);
	g_byte_array_unref (s->rx);
	g_array_unref (s->rx_ends);
	g_free (s);
}

void
bgs_smp_server_set_reset_func (BgsSmpServer *s, BgsSmpServerResetFunc func, gpointer user_data)
{
	s->reset_func = func;
	s->reset_data = user_data;
}

guint64
bgs_smp_server_get_upload_bytes (BgsSmpServer *s)
{
	return s->upload_bytes;
}

static gboolean
slot_info (BgsSmpServer *s, guint slot, BgsSmpImageInfo *info)
{
	int fd = open (s->slot_path[slot], O_RDONLY | O_CLOEXEC);
	gboolean ok;

	if (fd < 0)
		return FALSE;
	ok = bgs_smp_image_check_fd (fd, info, NULL);
	close (fd);
	return ok;
}

gboolean
bgs_smp_server_get_running (BgsSmpServer *s, BgsSmpImageInfo *info)
{
	return slot_info (s, 0, info);
}

static gboolean
swap_slots (BgsSmpServer *s, GError **error)
{
	g_autofree char *tmp = g_build_filename (s->dir, "slot.swap", NULL);

	if (g_rename (s->slot_path[0], tmp) < 0 || g_rename (s->slot_path[1], s->slot_path[0]) < 0 ||
	    g_rename (tmp, s->slot_path[1]) < 0) {
		int saved = errno;

		g_set_error (error, BGS_ERROR, BGS_ERROR_IO, "slot swap failed: %s", g_strerror (saved));
		return FALSE;
	}
	return TRUE;
}

gboolean
bgs_smp_server_boot (BgsSmpServer *s, GError **error)
{
	BgsSmpImageInfo info;

	s->up_active = FALSE;
	s->erase_end = 0;
	bgs_smp_server_reset_link (s);
	if (s->pending != PENDING_NONE && slot_info (s, 1, &info)) {
		if (!swap_slots (s, error))
			return FALSE;
		s->testing = s->pending == PENDING_TEST;
		s->pending = PENDING_NONE;
		g_info ("boot: swapped in %u.%u.%u%s", info.major, info.minor, info.revision,
			s->testing ? " for test" : "");
		if (s->testing && s->opt.revert_on_test) {
			/* the new image never confirms itself: MCUboot reverts */
			if (!swap_slots (s, error))
				return FALSE;
			s->testing = FALSE;
			g_info ("boot: test image failed, reverted");
		}
	} else if (s->testing && !s->opt.no_confirm_revert) {
		if (!swap_slots (s, error))
			return FALSE;
		s->testing = FALSE;
		g_info ("boot: test image was not confirmed, reverted");
	}
	s->pending = PENDING_NONE;
	return save_boot (s, error);
}

/* sending */

static void
send_frame (BgsSmpServer *s, GBytes *frame)
{
	gsize len = 0;
	const guint8 *data = g_bytes_get_data (frame, &len);
	gsize chunk = s->mtu - 3;

	if (s->send == NULL)
		return;
	for (gsize off = 0; off < len; off += chunk) {
		g_autoptr(GError) error = NULL;

		if (!s->send (data + off, MIN (chunk, len - off), s->send_data, &error)) {
			g_debug ("SMP server: notify failed: %s", error->message);
			return;
		}
	}
}

static void
respond (BgsSmpServer *s, const BgsSmpHeader *req, GBytes *body)
{
	g_autoptr(GBytes) frame = bgs_smp_frame_build (req->op + 1, req->version, req->group,
							req->id, req->seq, body);

	send_frame (s, frame);
}

/* v2 requests get {"err": {group, rc}}, v1 ones {"rc": rc_v1} */
static void
respond_error (BgsSmpServer *s, const BgsSmpHeader *req, guint group_rc, gint64 rc_v1,
	       const char *rsn)
{
	BgsSmpBuilder *b = bgs_smp_builder_new ();

	if (req->version == BGS_SMP_V2 && group_rc != 0) {
		BgsSmpBuilder *err = bgs_smp_builder_new ();

		bgs_smp_builder_add_uint (err, "group", req->group);
		bgs_smp_builder_add_uint (err, "rc", group_rc);
		bgs_smp_builder_add_map (b, "err", err);
	} else {
		bgs_smp_builder_add_int (b, "rc", rc_v1);
		if (rsn != NULL)
			bgs_smp_builder_add_string (b, "rsn", rsn);
	}
	{
		g_autoptr(GBytes) body = bgs_smp_builder_end (b);

		respond (s, req, body);
	}
}

static void
respond_rc (BgsSmpServer *s, const BgsSmpHeader *req, gint64 rc)
{
	respond_error (s, req, 0, rc, NULL);
}

/* OS group */

static void
reset_timer_cb (gpointer user_data)
{
	BgsSmpServer *s = user_data;

	s->reset_idle = 0;
	if (s->reset_func != NULL)
		s->reset_func (s, s->reset_data);
}

static void
handle_os (BgsSmpServer *s, const BgsSmpHeader *h, const BgsSmpMap *m)
{
	if (h->id == BGS_SMP_OS_ECHO) {
		g_autofree char *d = NULL;
		BgsSmpBuilder *b;
		g_autoptr(GBytes) body = NULL;

		if (!bgs_smp_map_get_string (m, "d", &d, NULL)) {
			respond_rc (s, h, BGS_SMP_RC_EINVAL);
			return;
		}
		b = bgs_smp_builder_new ();
		bgs_smp_builder_add_string (b, "r", d);
		body = bgs_smp_builder_end (b);
		respond (s, h, body);
		return;
	}
	if (h->id == BGS_SMP_OS_RESET && h->op == BGS_SMP_OP_WRITE) {
		g_autoptr(GBytes) body = bgs_smp_build_empty ();

		/* answer first and let it reach the central before going down,
		 * as Zephyr does (CONFIG_MCUMGR_GRP_OS_RESET_MS, 250 ms) */
		respond (s, h, body);
		if (s->reset_idle == 0)
			s->reset_idle = bgs_clock_add_timeout (s->clock, s->opt.reset_delay_usec,
							       reset_timer_cb, s);
		return;
	}
	if (h->id == BGS_SMP_OS_PARAMS && h->op == BGS_SMP_OP_READ && !s->opt.no_params) {
		BgsSmpBuilder *b = bgs_smp_builder_new ();
		g_autoptr(GBytes) body = NULL;

		bgs_smp_builder_add_uint (b, "buf_size", s->opt.max_frame);
		bgs_smp_builder_add_uint (b, "buf_count", s->opt.buf_count);
		body = bgs_smp_builder_end (b);
		respond (s, h, body);
		return;
	}
	respond_rc (s, h, BGS_SMP_RC_ENOTSUP);
}

/* image group */

static void
respond_image_state (BgsSmpServer *s, const BgsSmpHeader *h)
{
	BgsSmpBuilder *b = bgs_smp_builder_new ();
	g_autoptr(GPtrArray) slots = g_ptr_array_new ();
	g_autoptr(GBytes) body = NULL;

	for (guint slot = 0; slot < 2; slot++) {
		BgsSmpImageInfo info;
		BgsSmpBuilder *e;
		g_autofree char *ver = NULL;

		if (slot == 1 && s->up_active)
			continue; /* half-written */
		if (!slot_info (s, slot, &info))
			continue;
		ver = bgs_smp_image_version_string (&info);
		e = bgs_smp_builder_new ();
		bgs_smp_builder_add_uint (e, "slot", slot);
		bgs_smp_builder_add_string (e, "version", ver);
		bgs_smp_builder_add_bytes (e, "hash", info.hash, 32);
		bgs_smp_builder_add_bool (e, "bootable", TRUE);
		if (slot == 1 && s->pending != PENDING_NONE)
			bgs_smp_builder_add_bool (e, "pending", TRUE);
		if (slot == 0 && !s->testing)
			bgs_smp_builder_add_bool (e, "confirmed", TRUE);
		if (slot == 0)
			bgs_smp_builder_add_bool (e, "active", TRUE);
		if (slot == 1 && s->pending == PENDING_PERMANENT)
			bgs_smp_builder_add_bool (e, "permanent", TRUE);
		g_ptr_array_add (slots, e);
	}
	bgs_smp_builder_add_map_array (b, "images", slots);
	body = bgs_smp_builder_end (b);
	respond (s, h, body);
}

static void
handle_image_state_write (BgsSmpServer *s, const BgsSmpHeader *h, const BgsSmpMap *m)
{
	gboolean confirm = FALSE;
	g_autoptr(GBytes) hash = NULL;
	BgsSmpImageInfo run, sec;
	gboolean have_run = slot_info (s, 0, &run);
	gboolean have_sec = !s->up_active && slot_info (s, 1, &sec);

	if (bgs_smp_map_contains (m, "confirm") && !bgs_smp_map_get_bool (m, "confirm", &confirm, NULL)) {
		respond_rc (s, h, BGS_SMP_RC_EINVAL);
		return;
	}
	if (bgs_smp_map_contains (m, "hash")) {
		hash = bgs_smp_map_get_bytes (m, "hash", NULL);
		if (hash == NULL || g_bytes_get_size (hash) != 32) {
			respond_error (s, h, BGS_SMP_IMG_RC_INVALID_HASH, BGS_SMP_RC_EINVAL, "bad hash");
			return;
		}
	}
	if (hash == NULL || (have_run && memcmp (g_bytes_get_data (hash, NULL), run.hash, 32) == 0)) {
		if (!confirm) {
			respond_error (s, h, BGS_SMP_IMG_RC_INVALID_HASH, BGS_SMP_RC_EINVAL,
				       "the running image cannot be marked for test");
			return;
		}
		s->testing = FALSE;
	} else if (have_sec && memcmp (g_bytes_get_data (hash, NULL), sec.hash, 32) == 0) {
		s->pending = confirm ? PENDING_PERMANENT : PENDING_TEST;
	} else {
		respond_error (s, h, BGS_SMP_IMG_RC_HASH_NOT_FOUND, BGS_SMP_RC_ENOENT, "no image with that hash");
		return;
	}
	if (!save_boot (s, NULL)) {
		respond_error (s, h, BGS_SMP_IMG_RC_FLASH_WRITE_FAILED, BGS_SMP_RC_EUNKNOWN, NULL);
		return;
	}
	respond_image_state (s, h);
}

static void
respond_off (BgsSmpServer *s, const BgsSmpHeader *h, guint64 off, int match)
{
	BgsSmpBuilder *b = bgs_smp_builder_new ();
	g_autoptr(GBytes) body = NULL;

	bgs_smp_builder_add_uint (b, "off", off);
	if (match >= 0)
		bgs_smp_builder_add_bool (b, "match", match);
	body = bgs_smp_builder_end (b);
	respond (s, h, body);
}

static gboolean
pwrite_all (const char *path, gboolean truncate, guint64 off, const guint8 *data, gsize len)
{
	int fd = open (path, O_WRONLY | O_CREAT | O_CLOEXEC | (truncate ? O_TRUNC : 0), 0600);
	gboolean ok = TRUE;

	if (fd < 0)
		return FALSE;
	while (len > 0) {
		ssize_t n = pwrite (fd, data, len, (off_t) off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			ok = FALSE;
			break;
		}
		data += n;
		len -= (gsize) n;
		off += (guint64) n;
	}
	if (close (fd) < 0)
		ok = FALSE;
	return ok;
}

static int
final_match (BgsSmpServer *s)
{
	g_autofree char *contents = NULL;
	gsize len = 0;
	guint8 digest[32];
	gsize dlen = sizeof (digest);
	g_autoptr(GChecksum) sum = g_checksum_new (G_CHECKSUM_SHA256);

	if (!s->up_has_sha || !g_file_get_contents (s->slot_path[1], &contents, &len, NULL))
		return -1;
	g_checksum_update (sum, (const guint8 *) contents, (gssize) len);
	g_checksum_get_digest (sum, digest, &dlen);
	return memcmp (digest, s->up_sha, 32) == 0;
}

static void
handle_image_upload (BgsSmpServer *s, const BgsSmpHeader *h, const BgsSmpMap *m)
{
	guint64 off = 0, len = 0, image = 0;
	g_autoptr(GBytes) data = NULL;
	g_autoptr(GBytes) sha = NULL;
	gboolean upgrade = FALSE;
	gsize n = 0;
	const guint8 *d;

	if (!bgs_smp_map_get_uint (m, "off", &off, NULL)) {
		respond_error (s, h, BGS_SMP_IMG_RC_INVALID_OFFSET, BGS_SMP_RC_EINVAL, "no offset");
		return;
	}
	data = bgs_smp_map_get_bytes (m, "data", NULL);
	if (data == NULL) {
		respond_rc (s, h, BGS_SMP_RC_EINVAL);
		return;
	}
	d = g_bytes_get_data (data, &n);
	if (bgs_smp_map_contains (m, "image") &&
	    (!bgs_smp_map_get_uint (m, "image", &image, NULL) || image != 0)) {
		respond_error (s, h, 14 /* INVALID_SLOT */, BGS_SMP_RC_EINVAL, "only image 0");
		return;
	}

	if (off == 0) {
		if (!bgs_smp_map_get_uint (m, "len", &len, NULL) || len == 0) {
			respond_error (s, h, BGS_SMP_IMG_RC_INVALID_LENGTH, BGS_SMP_RC_EINVAL, "no length");
			return;
		}
		if (bgs_smp_map_contains (m, "sha")) {
			sha = bgs_smp_map_get_bytes (m, "sha", NULL);
			if (sha == NULL || g_bytes_get_size (sha) != 32) {
				respond_error (s, h, BGS_SMP_IMG_RC_INVALID_HASH, BGS_SMP_RC_EINVAL, "bad sha");
				return;
			}
		}
		if (bgs_smp_map_contains (m, "upgrade"))
			bgs_smp_map_get_bool (m, "upgrade", &upgrade, NULL);
		if (s->opt.reject_images) {
			respond_error (s, h, BGS_SMP_IMG_RC_UNKNOWN, BGS_SMP_RC_EACCESSDENIED,
				       "image rejected by the device");
			return;
		}
		if (s->pending != PENDING_NONE) {
			respond_error (s, h, BGS_SMP_IMG_RC_IMAGE_ALREADY_PENDING, BGS_SMP_RC_EBADSTATE,
				       "an image is already pending");
			return;
		}
		/* same session (same sha and length): tell the client where to go on */
		if (s->up_active && sha != NULL && s->up_has_sha && len == s->up_len &&
		    memcmp (g_bytes_get_data (sha, NULL), s->up_sha, 32) == 0 && s->up_off > 0) {
			respond_off (s, h, s->up_off, -1);
			return;
		}
		if (n >= BGS_SMP_IMAGE_HEADER_SIZE) {
			guint32 magic = (guint32) d[0] | ((guint32) d[1] << 8) | ((guint32) d[2] << 16) | ((guint32) d[3] << 24);

			if (magic != BGS_SMP_IMAGE_MAGIC) {
				respond_error (s, h, BGS_SMP_IMG_RC_INVALID_IMAGE_HEADER_MAGIC,
					       BGS_SMP_RC_EINVAL, "bad image magic");
				return;
			}
			if (upgrade) {
				BgsSmpImageInfo run, next = { 0 };

				next.major = d[20];
				next.minor = d[21];
				next.revision = (guint16) (d[22] | (d[23] << 8));
				next.build = (guint32) d[24] | ((guint32) d[25] << 8) | ((guint32) d[26] << 16) | ((guint32) d[27] << 24);
				if (slot_info (s, 0, &run) && bgs_smp_image_version_compare (&next, &run) <= 0) {
					respond_error (s, h, BGS_SMP_IMG_RC_CURRENT_VERSION_IS_NEWER,
						       BGS_SMP_RC_EBADSTATE, "not an upgrade");
					return;
				}
			}
		}
		/* a fresh upload erases the slot first */
		if (s->opt.erase_usec > 0) {
			gint64 now = bgs_clock_now (s->clock);

			if (s->erase_end == 0)
				s->erase_end = now + s->opt.erase_usec;
			if (now < s->erase_end) {
				respond_rc (s, h, BGS_SMP_RC_EBUSY);
				return;
			}
			s->erase_end = 0;
		}
		if (!pwrite_all (s->slot_path[1], TRUE, 0, NULL, 0)) {
			respond_error (s, h, 13 /* FLASH_ERASE_FAILED */, BGS_SMP_RC_EUNKNOWN, NULL);
			return;
		}
		s->up_active = TRUE;
		s->up_off = 0;
		s->up_len = len;
		s->up_has_sha = sha != NULL;
		if (sha != NULL)
			memcpy (s->up_sha, g_bytes_get_data (sha, NULL), 32);
	} else if (!s->up_active || off != s->up_off) {
		/* lost chunk or no session: say where we are */
		respond_off (s, h, s->up_active ? s->up_off : 0, -1);
		return;
	}
	if (s->up_off + n > s->up_len) {
		respond_error (s, h, BGS_SMP_IMG_RC_INVALID_LENGTH, BGS_SMP_RC_EINVAL, "data past the image length");
		return;
	}
	if (!pwrite_all (s->slot_path[1], FALSE, s->up_off, d, n)) {
		respond_error (s, h, BGS_SMP_IMG_RC_FLASH_WRITE_FAILED, BGS_SMP_RC_EUNKNOWN, NULL);
		return;
	}
	s->up_off += n;
	s->upload_bytes += n;
	if (s->up_off == s->up_len) {
		s->up_active = FALSE;
		respond_off (s, h, s->up_off, final_match (s));
		return;
	}
	respond_off (s, h, s->up_off, -1);
}

/* fs group */

static char *
fs_path (BgsSmpServer *s, const char *name)
{
	g_auto(GStrv) parts = NULL;

	if (name[0] != '/')
		return NULL;
	parts = g_strsplit (name + 1, "/", -1);
	for (guint i = 0; parts[i] != NULL; i++) {
		if (parts[i][0] == '\0' || strcmp (parts[i], ".") == 0 || strcmp (parts[i], "..") == 0)
			return NULL;
	}
	return g_build_filename (s->files_dir, name + 1, NULL);
}

static guint32
crc32_ieee (guint32 crc, const guint8 *p, gsize n)
{
	crc = ~crc;
	while (n--) {
		crc ^= *p++;
		for (int k = 0; k < 8; k++)
			crc = (crc >> 1) ^ (0xedb88320u & (guint32) -(gint32) (crc & 1));
	}
	return ~crc;
}

static void
handle_fs (BgsSmpServer *s, const BgsSmpHeader *h, const BgsSmpMap *m)
{
	g_autofree char *name = NULL;
	g_autofree char *path = NULL;
	struct stat st;

	if (!bgs_smp_map_get_string (m, "name", &name, NULL) || (path = fs_path (s, name)) == NULL) {
		respond_error (s, h, BGS_SMP_FS_RC_FILE_INVALID_NAME, BGS_SMP_RC_EINVAL, NULL);
		return;
	}

	if (h->id == BGS_SMP_FS_FILE && h->op == BGS_SMP_OP_READ) {
		guint64 off = 0;
		g_autofree guint8 *buf = NULL;
		gsize room;
		ssize_t got;
		int fd;
		BgsSmpBuilder *b;
		g_autoptr(GBytes) body = NULL;

		if (!bgs_smp_map_get_uint (m, "off", &off, NULL)) {
			respond_rc (s, h, BGS_SMP_RC_EINVAL);
			return;
		}
		if (stat (path, &st) < 0) {
			respond_error (s, h, BGS_SMP_FS_RC_FILE_NOT_FOUND, BGS_SMP_RC_ENOENT, NULL);
			return;
		}
		if (S_ISDIR (st.st_mode)) {
			respond_error (s, h, BGS_SMP_FS_RC_FILE_IS_DIRECTORY, BGS_SMP_RC_EINVAL, NULL);
			return;
		}
		if (off > (guint64) st.st_size) {
			respond_error (s, h, BGS_SMP_FS_RC_FILE_OFFSET_LARGER_THAN_FILE, BGS_SMP_RC_EINVAL, NULL);
			return;
		}
		/* {"off": u32, "data": bstr, "len": u32} overhead is < 32 bytes */
		room = s->opt.max_frame - BGS_SMP_HEADER_SIZE - 32;
		buf = g_malloc (room);
		fd = open (path, O_RDONLY | O_CLOEXEC);
		got = fd >= 0 ? pread (fd, buf, room, (off_t) off) : -1;
		if (fd >= 0)
			close (fd);
		if (got < 0) {
			respond_error (s, h, 7 /* FILE_READ_FAILED */, BGS_SMP_RC_EUNKNOWN, NULL);
			return;
		}
		b = bgs_smp_builder_new ();
		bgs_smp_builder_add_uint (b, "off", off);
		bgs_smp_builder_add_bytes (b, "data", buf, (gsize) got);
		if (off == 0)
			bgs_smp_builder_add_uint (b, "len", (guint64) st.st_size);
		body = bgs_smp_builder_end (b);
		respond (s, h, body);
		return;
	}
	if (h->id == BGS_SMP_FS_FILE && h->op == BGS_SMP_OP_WRITE) {
		guint64 off = 0, len = 0;
		g_autoptr(GBytes) data = bgs_smp_map_get_bytes (m, "data", NULL);
		g_autofree char *parent = g_path_get_dirname (path);
		gsize n = 0;
		const guint8 *d;

		if (data == NULL || !bgs_smp_map_get_uint (m, "off", &off, NULL) ||
		    (off == 0 && !bgs_smp_map_get_uint (m, "len", &len, NULL))) {
			respond_rc (s, h, BGS_SMP_RC_EINVAL);
			return;
		}
		d = g_bytes_get_data (data, &n);
		if (off > 0 && (stat (path, &st) < 0 || (guint64) st.st_size != off)) {
			respond_error (s, h, BGS_SMP_FS_RC_FILE_OFFSET_NOT_VALID, BGS_SMP_RC_EINVAL, NULL);
			return;
		}
		g_mkdir_with_parents (parent, 0700);
		if (!pwrite_all (path, off == 0, off, d, n)) {
			respond_error (s, h, BGS_SMP_FS_RC_FILE_WRITE_FAILED, BGS_SMP_RC_EUNKNOWN, NULL);
			return;
		}
		respond_off (s, h, off + n, -1);
		return;
	}
	if (h->id == BGS_SMP_FS_STAT && h->op == BGS_SMP_OP_READ) {
		BgsSmpBuilder *b;
		g_autoptr(GBytes) body = NULL;

		if (stat (path, &st) < 0 || S_ISDIR (st.st_mode)) {
			respond_error (s, h, BGS_SMP_FS_RC_FILE_NOT_FOUND, BGS_SMP_RC_ENOENT, NULL);
			return;
		}
		b = bgs_smp_builder_new ();
		bgs_smp_builder_add_uint (b, "len", (guint64) st.st_size);
		body = bgs_smp_builder_end (b);
		respond (s, h, body);
		return;
	}
	if (h->id == BGS_SMP_FS_HASH && h->op == BGS_SMP_OP_READ) {
		g_autofree char *type = NULL;
		g_autofree char *contents = NULL;
		gsize flen = 0;
		guint64 off = 0, len = 0;
		BgsSmpBuilder *b;
		g_autoptr(GBytes) body = NULL;

		if (bgs_smp_map_contains (m, "type") && !bgs_smp_map_get_string (m, "type", &type, NULL)) {
			respond_rc (s, h, BGS_SMP_RC_EINVAL);
			return;
		}
		if (type == NULL)
			type = g_strdup ("sha256");
		if (strcmp (type, "sha256") != 0 && strcmp (type, "crc32") != 0) {
			respond_error (s, h, BGS_SMP_FS_RC_CHECKSUM_HASH_NOT_FOUND, BGS_SMP_RC_EINVAL, NULL);
			return;
		}
		if ((bgs_smp_map_contains (m, "off") && !bgs_smp_map_get_uint (m, "off", &off, NULL)) ||
		    (bgs_smp_map_contains (m, "len") && !bgs_smp_map_get_uint (m, "len", &len, NULL))) {
			respond_rc (s, h, BGS_SMP_RC_EINVAL);
			return;
		}
		if (!g_file_get_contents (path, &contents, &flen, NULL)) {
			respond_error (s, h, BGS_SMP_FS_RC_FILE_NOT_FOUND, BGS_SMP_RC_ENOENT, NULL);
			return;
		}
		if (off > flen) {
			respond_error (s, h, BGS_SMP_FS_RC_FILE_OFFSET_LARGER_THAN_FILE, BGS_SMP_RC_EINVAL, NULL);
			return;
		}
		if (len == 0 || len > flen - off)
			len = flen - off;
		b = bgs_smp_builder_new ();
		bgs_smp_builder_add_string (b, "type", type);
		if (off > 0)
			bgs_smp_builder_add_uint (b, "off", off);
		bgs_smp_builder_add_uint (b, "len", len);
		if (strcmp (type, "crc32") == 0) {
			bgs_smp_builder_add_uint (b, "output",
						  crc32_ieee (0, (const guint8 *) contents + off, (gsize) len));
		} else {
			guint8 digest[32];
			gsize dlen = sizeof (digest);
			g_autoptr(GChecksum) sum = g_checksum_new (G_CHECKSUM_SHA256);

			g_checksum_update (sum, (const guint8 *) contents + off, (gssize) len);
			g_checksum_get_digest (sum, digest, &dlen);
			bgs_smp_builder_add_bytes (b, "output", digest, 32);
		}
		body = bgs_smp_builder_end (b);
		respond (s, h, body);
		return;
	}
	respond_rc (s, h, BGS_SMP_RC_ENOTSUP);
}

static void
handle_request (BgsSmpServer *s, const guint8 *frame, gsize len)
{
	g_autoptr(GError) error = NULL;
	g_autoptr(BgsSmpResponse) req = bgs_smp_response_parse (frame, len, &error);

	if (req == NULL) {
		BgsSmpHeader h;

		g_debug ("SMP server: bad request: %s", error->message);
		if (bgs_smp_header_decode (frame, len, &h, NULL) && !bgs_smp_op_is_response (h.op))
			respond_rc (s, &h, BGS_SMP_RC_EINVAL);
		return;
	}
	if (bgs_smp_op_is_response (req->hdr.op))
		return;
	if (s->opt.stall_after > 0 && s->upload_bytes >= s->opt.stall_after) {
		g_debug ("SMP server: stalled, ignoring request");
		return;
	}
	switch (req->hdr.group) {
	case BGS_SMP_GROUP_OS:
		handle_os (s, &req->hdr, req->body);
		break;
	case BGS_SMP_GROUP_IMAGE:
		if (req->hdr.id == BGS_SMP_IMAGE_STATE && req->hdr.op == BGS_SMP_OP_READ)
			respond_image_state (s, &req->hdr);
		else if (req->hdr.id == BGS_SMP_IMAGE_STATE)
			handle_image_state_write (s, &req->hdr, req->body);
		else if (req->hdr.id == BGS_SMP_IMAGE_UPLOAD && req->hdr.op == BGS_SMP_OP_WRITE)
			handle_image_upload (s, &req->hdr, req->body);
		else
			respond_rc (s, &req->hdr, BGS_SMP_RC_ENOTSUP);
		break;
	case BGS_SMP_GROUP_FS:
		handle_fs (s, &req->hdr, req->body);
		break;
	default:
		respond_rc (s, &req->hdr, BGS_SMP_RC_ENOTSUP);
		break;
	}
}

/* reassembly, per connection as in Zephyr's SMP BLE transport: a request
 * may span several writes; a write that cannot start or continue a
 * request is dropped, so a cut frame does not swallow the next request */

/* largest request we take: buf_size, but not less than a client that
 * never asked 0/6 may send */
static gsize
rx_limit (BgsSmpServer *s)
{
	return MAX (s->opt.max_frame, 1024);
}

static void
rx_consume (BgsSmpServer *s, guint n)
{
	guint i = 0;

	n = MIN (n, s->rx->len);
	g_byte_array_remove_range (s->rx, 0, n);
	while (i < s->rx_ends->len && g_array_index (s->rx_ends, guint, i) <= n)
		i++;
	g_array_remove_range (s->rx_ends, 0, i);
	for (i = 0; i < s->rx_ends->len; i++)
		g_array_index (s->rx_ends, guint, i) -= n;
}

/* resync at the next write boundary */
static void
rx_drop_write (BgsSmpServer *s)
{
	rx_consume (s, s->rx_ends->len > 0 ? g_array_index (s->rx_ends, guint, 0) : s->rx->len);
}

static void
rx_reset (BgsSmpServer *s)
{
	g_byte_array_set_size (s->rx, 0);
	g_array_set_size (s->rx_ends, 0);
	if (s->rx_timer != 0) {
		bgs_clock_remove (s->clock, s->rx_timer);
		s->rx_timer = 0;
	}
}

static void rx_process (BgsSmpServer *s);

static void
on_rx_timeout (gpointer user_data)
{
	BgsSmpServer *s = user_data;

	s->rx_timer = 0;
	g_debug ("SMP server: request not completed in time, dropping %u byte(s) of it",
		 s->rx_ends->len > 0 ? g_array_index (s->rx_ends, guint, 0) : s->rx->len);
	rx_drop_write (s);
	rx_process (s);
}

static void
rx_process (BgsSmpServer *s)
{
	while (s->rx->len >= BGS_SMP_HEADER_SIZE) {
		BgsSmpHeader h;
		gsize need;
		g_autoptr(GError) error = NULL;
		g_autoptr(BgsSmpResponse) req = NULL;
		g_autofree guint8 *frame = NULL;

		if (!bgs_smp_header_decode (s->rx->data, s->rx->len, &h, &error) ||
		    BGS_SMP_HEADER_SIZE + (gsize) h.len > rx_limit (s)) {
			g_debug ("SMP server: impossible request header (%s), dropping the write",
				 error != NULL ? error->message : "longer than buf_size");
			rx_drop_write (s);
			continue;
		}
		need = BGS_SMP_HEADER_SIZE + h.len;
		if (s->rx->len < need)
			break;
		/* a cut frame "completed" by the bytes of the next request:
		 * its body does not parse and it spans writes */
		req = bgs_smp_response_parse (s->rx->data, need, NULL);
		if (req == NULL && s->rx_ends->len > 0 && g_array_index (s->rx_ends, guint, 0) < need) {
			g_debug ("SMP server: request spanning writes does not parse, resyncing");
			rx_drop_write (s);
			continue;
		}
		frame = g_memdup2 (s->rx->data, need);
		rx_consume (s, (guint) need);
		handle_request (s, frame, need);
	}
	/* a partial request must complete in time: restarted by every write */
	if (s->rx_timer != 0) {
		bgs_clock_remove (s->clock, s->rx_timer);
		s->rx_timer = 0;
	}
	if (s->rx->len > 0)
		s->rx_timer = bgs_clock_add_timeout (s->clock, s->opt.rx_timeout_usec, on_rx_timeout, s);
}

void
bgs_smp_server_receive (BgsSmpServer *s, const guint8 *data, gsize len)
{
	guint end;

	if (len == 0)
		return;
	/* more than any request can be: drop what is pending with it */
	if (s->rx->len + len > rx_limit (s) + G_MAXUINT16) {
		g_debug ("SMP server: reassembly overflow, dropping %u byte(s)", s->rx->len);
		rx_reset (s);
		if (len > rx_limit (s))
			return;
	}
	g_byte_array_append (s->rx, data, (guint) len);
	end = s->rx->len;
	g_array_append_val (s->rx_ends, end);
	rx_process (s);
}

void
bgs_smp_server_reset_link (BgsSmpServer *s)
{
	if (s->rx->len > 0)
		g_debug ("SMP server: new connection, dropping %u byte(s) of a partial request",
			 s->rx->len);
	rx_reset (s);
}

/* transports */

void
bgs_smp_server_set_transport (BgsSmpServer *s, guint mtu, BgsSmpServerSendFunc send,
			      gpointer user_data)
{
	s->mtu = CLAMP (mtu, 23, 517);
	s->send = send;
	s->send_data = user_data;
	rx_reset (s);
}

/* the device side may wait briefly for socket room: it is a simulator */
static gboolean
fd_send (const guint8 *data, gsize len, gpointer user_data, GError **error)
{
	BgsSmpServer *s = user_data;

	for (;;) {
		ssize_t n = send (s->write_fd, data, len, MSG_NOSIGNAL);

		if (n < 0 && errno == ENOTSOCK)
			n = write (s->write_fd, data, len);
		if (n >= 0)
			return TRUE;
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK) {
			struct pollfd p = { .fd = s->write_fd, .events = POLLOUT };

			if (poll (&p, 1, 1000) > 0)
				continue;
		}
		g_set_error (error, BGS_ERROR, BGS_ERROR_IO, "notify write: %s", g_strerror (errno));
		return FALSE;
	}
}

static gboolean
on_read (gint fd, GIOCondition cond, gpointer user_data)
{
	BgsSmpServer *s = user_data;
	guint8 buf[1024];
	ssize_t n = read (fd, buf, sizeof (buf));

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return G_SOURCE_CONTINUE;
	if (n <= 0) {
		g_debug ("SMP server: link closed");
		g_clear_pointer (&s->read_source, g_source_unref);
		bgs_smp_server_detach (s);
		return G_SOURCE_REMOVE;
	}
	bgs_smp_server_receive (s, buf, (gsize) n);
	return G_SOURCE_CONTINUE;
}

gboolean
bgs_smp_server_attach_fds (BgsSmpServer *s, int read_fd, int write_fd, guint mtu, GError **error)
{
	g_autoptr(GError) local = NULL;

	if (!g_unix_set_fd_nonblocking (read_fd, TRUE, &local) ||
	    !g_unix_set_fd_nonblocking (write_fd, TRUE, &local)) {
		g_set_error (error, BGS_ERROR, BGS_ERROR_IO, "SMP server fds: %s", local->message);
		return FALSE;
	}
	bgs_smp_server_detach (s);
	s->read_fd = read_fd;
	s->write_fd = write_fd;
	bgs_smp_server_set_transport (s, mtu, fd_send, s);
	s->read_source = g_unix_fd_source_new (read_fd, G_IO_IN | G_IO_HUP | G_IO_ERR);
	g_source_set_callback (s->read_source, (GSourceFunc) (void (*) (void)) on_read, s, NULL);
	g_source_attach (s->read_source, g_main_context_get_thread_default ());
	return TRUE;
}

void
bgs_smp_server_detach (BgsSmpServer *s)
{
	if (s->read_source != NULL) {
		g_source_destroy (s->read_source);
		g_clear_pointer (&s->read_source, g_source_unref);
	}
	if (s->read_fd >= 0 && s->read_fd != s->write_fd)
		close (s->read_fd);
	if (s->write_fd >= 0)
		close (s->write_fd);
	s->read_fd = -1;
	s->write_fd = -1;
	s->send = NULL;
	s->send_data = NULL;
	rx_reset (s);
}
