/* bgs-smp-cmd.c: SMP command bodies and response parsing */
#include "bgs-smp-cmd.h"

#include <string.h>

#include "bgs-error.h"

BgsSmpResponse *
bgs_smp_response_parse (const guint8 *frame, gsize len, GError **error)
{
	g_autoptr(BgsSmpResponse) resp = g_new0 (BgsSmpResponse, 1);

	if (!bgs_smp_header_decode (frame, len, &resp->hdr, error))
		return NULL;
	if ((gsize) resp->hdr.len != len - BGS_SMP_HEADER_SIZE) {
		g_set_error (error, BGS_ERROR, BGS_ERROR_PROTOCOL,
			     "SMP header says %u body bytes, frame has %" G_GSIZE_FORMAT,
			     resp->hdr.len, len - BGS_SMP_HEADER_SIZE);
		return NULL;
	}
	resp->body = bgs_smp_map_parse (frame + BGS_SMP_HEADER_SIZE, resp->hdr.len, error);
	if (resp->body == NULL)
		return NULL;
	return g_steal_pointer (&resp);
}

void
bgs_smp_response_free (BgsSmpResponse *resp)
{
	if (resp == NULL)
		return;
	bgs_smp_map_free (resp->body);
	g_free (resp);
}

gboolean
bgs_smp_body_get_error (const BgsSmpMap *body, guint64 *group, gint64 *rc)
{
	if (bgs_smp_map_contains (body, "err")) {
		g_autoptr(BgsSmpMap) err = bgs_smp_map_get_map (body, "err", NULL);
		guint64 g = 0, r = 0;

		if (err == NULL ||
		    !bgs_smp_map_get_uint (err, "group", &g, NULL) ||
		    !bgs_smp_map_get_uint (err, "rc", &r, NULL) || r > G_MAXINT64) {
			*group = G_MAXUINT64;
			*rc = -1;
			return TRUE;
		}
		if (r != 0) {
			*group = g;
			*rc = (gint64) r;
			return TRUE;
		}
	}
	if (bgs_smp_map_contains (body, "rc")) {
		gint64 r = 0;

		if (!bgs_smp_map_get_int (body, "rc", &r, NULL)) {
			*group = G_MAXUINT64;
			*rc = -1;
			return TRUE;
		}
		if (r != 0) {
			*group = G_MAXUINT64;
			*rc = r;
			return TRUE;
		}
	}
	return FALSE;
}

static BgsError
rc_to_code (gint64 rc)
{
	switch (rc) {
	case BGS_SMP_RC_EBUSY:
		return BGS_ERROR_BUSY;
	case BGS_SMP_RC_ENOENT:
		return BGS_ERROR_NOT_FOUND;
	case BGS_SMP_RC_ENOTSUP:
		return BGS_ERROR_NOT_SUPPORTED;
	case BGS_SMP_RC_EACCESSDENIED:
		return BGS_ERROR_NOT_AUTHORIZED;
	case BGS_SMP_RC_ETIMEOUT:
		return BGS_ERROR_TIMED_OUT;
	default:
		return BGS_ERROR_FAILED;
	}
}

static const char *
group_name (guint64 group)
{
	switch (group) {
	case BGS_SMP_GROUP_OS:
		return "OS group";
	case BGS_SMP_GROUP_IMAGE:
		return "image group";
	case BGS_SMP_GROUP_FS:
		return "file system group";
	default:
		return "group";
	}
}

gboolean
bgs_smp_body_check (const BgsSmpMap *body, GError **error)
{
	guint64 group = 0;
	gint64 rc = 0;
	g_autofree char *rsn = NULL;

	if (!bgs_smp_body_get_error (body, &group, &rc))
		return TRUE;
	if (rc < 0 && group == G_MAXUINT64) {
		g_set_error_literal (error, BGS_ERROR, BGS_ERROR_PROTOCOL,
				     "SMP response has a malformed \"rc\" or \"err\"");
		return FALSE;
	}
	if (bgs_smp_map_contains (body, "rsn"))
		bgs_smp_map_get_string (body, "rsn", &rsn, NULL);
	if (group == G_MAXUINT64) {
		g_set_error (error, BGS_ERROR, rc_to_code (rc), "device error %s (%" G_GINT64_FORMAT "): %s%s%s",
			     bgs_smp_rc_name (rc), rc, bgs_smp_rc_message (rc),
			     rsn != NULL ? ": " : "", rsn != NULL ? rsn : "");
		return FALSE;
	}
	g_set_error (error, BGS_ERROR,
		     group == BGS_SMP_GROUP_FS && rc == BGS_SMP_FS_RC_FILE_NOT_FOUND ? BGS_ERROR_NOT_FOUND : BGS_ERROR_FAILED,
		     "device error %s (%s %" G_GUINT64_FORMAT ", rc %" G_GINT64_FORMAT "): %s",
		     bgs_smp_group_rc_name (group, (guint64) rc), group_name (group), group, rc,
		     bgs_smp_group_rc_message (group, (guint64) rc));
	return FALSE;
}

GBytes *
bgs_smp_build_empty (void)
{
	return bgs_smp_builder_end (bgs_smp_builder_new ());
}

GBytes *
bgs_smp_build_echo (const char *text)
{
	BgsSmpBuilder *b = bgs_smp_builder_new ();

	bgs_smp_builder_add_string (b, "d", text);
	return bgs_smp_builder_end (b);
}

GBytes *
bgs_smp_build_reset (gboolean force)
{
	BgsSmpBuilder *b = bgs_smp_builder_new ();

	if (force)
		bgs_smp_builder_add_uint (b, "force", 1);
	return bgs_smp_builder_end (b);
}

GBytes *
bgs_smp_build_image_state_set (const guint8 *hash, gboolean confirm)
{
	BgsSmpBuilder *b = bgs_smp_builder_new ();

	if (hash != NULL)
		bgs_smp_builder_add_bytes (b, "hash", hash, 32);
	bgs_smp_builder_add_bool (b, "confirm", confirm);
	return bgs_smp_builder_end (b);
}

GBytes *
bgs_smp_build_image_upload (guint image, guint64 off, const guint8 *data, gsize len,
			    guint64 total, const guint8 *sha, gboolean upgrade)
{
	BgsSmpBuilder *b = bgs_smp_builder_new ();

	if (off == 0 && image > 0)
		bgs_smp_builder_add_uint (b, "image", image);
	if (off == 0)
		bgs_smp_builder_add_uint (b, "len", total);
	bgs_smp_builder_add_uint (b, "off", off);
	if (off == 0 && sha != NULL)
		bgs_smp_builder_add_bytes (b, "sha", sha, 32);
	bgs_smp_builder_add_bytes (b, "data", data, len);
	if (off == 0 && upgrade)
		bgs_smp_builder_add_bool (b, "upgrade", TRUE);
	return bgs_smp_builder_end (b);
}

GBytes *
bgs_smp_build_fs_download (const char *name, guint64 off)
{
	BgsSmpBuilder *b = bgs_smp_builder_new ();

	bgs_smp_builder_add_uint (b, "off", off);
	bgs_smp_builder_add_string (b, "name", name);
	return bgs_smp_builder_end (b);
}

GBytes *
bgs_smp_build_fs_upload (const char *name, guint64 off, const guint8 *data, gsize len,
			 guint64 total)
{
	BgsSmpBuilder *b = bgs_smp_builder_new ();

	bgs_smp_builder_add_uint (b, "off", off);
	bgs_smp_builder_add_bytes (b, "data", data, len);
	bgs_smp_builder_add_string (b, "name", name);
	if (off == 0)
		bgs_smp_builder_add_uint (b, "len", total);
	return bgs_smp_builder_end (b);
}

GBytes *
bgs_smp_build_fs_hash (const char *name, const char *type, guint64 off, guint64 len)
{
	BgsSmpBuilder *b = bgs_smp_builder_new ();

	bgs_smp_builder_add_string (b, "name", name);
	if (type != NULL)
		bgs_smp_builder_add_string (b, "type", type);
	if (off > 0)
		bgs_smp_builder_add_uint (b, "off", off);
	if (len > 0)
		bgs_smp_builder_add_uint (b, "len", len);
	return bgs_smp_builder_end (b);
}

static void
image_slot_clear (gpointer p)
{
	BgsSmpImageSlot *s = p;

	g_free (s->version);
}

static gboolean
opt_bool (const BgsSmpMap *m, const char *key, gboolean *out, GError **error)
{
	*out = FALSE;
	if (!bgs_smp_map_contains (m, key))
		return TRUE;
	return bgs_smp_map_get_bool (m, key, out, error);
}

GArray *
bgs_smp_parse_image_state (const BgsSmpMap *body, GError **error)
{
	g_autoptr(GPtrArray) images = bgs_smp_map_get_map_array (body, "images", error);
	g_autoptr(GArray) out = NULL;

	if (images == NULL)
		return NULL;
	out = g_array_new (FALSE, TRUE, sizeof (BgsSmpImageSlot));
	g_array_set_clear_func (out, image_slot_clear);
	for (guint i = 0; i < images->len; i++) {
		const BgsSmpMap *m = images->pdata[i];
		BgsSmpImageSlot s = { 0 };
		guint64 v = 0;

		if (bgs_smp_map_contains (m, "image")) {
			if (!bgs_smp_map_get_uint (m, "image", &v, error))
				return NULL;
			if (v > G_MAXUINT8) {
				g_set_error (error, BGS_ERROR, BGS_ERROR_PROTOCOL,
					     "image number %" G_GUINT64_FORMAT " out of range", v);
				return NULL;
			}
			s.image = (guint) v;
		}
		if (!bgs_smp_map_get_uint (m, "slot", &v, error))
			return NULL;
		if (v > 1) {
			g_set_error (error, BGS_ERROR, BGS_ERROR_PROTOCOL,
				     "slot number %" G_GUINT64_FORMAT " out of range", v);
			return NULL;
		}
		s.slot = (guint) v;
		if (bgs_smp_map_contains (m, "hash")) {
			g_autoptr(GBytes) h = bgs_smp_map_get_bytes (m, "hash", error);

			if (h == NULL)
				return NULL;
			if (g_bytes_get_size (h) != 32) {
				g_set_error (error, BGS_ERROR, BGS_ERROR_PROTOCOL,
					     "image hash has %" G_GSIZE_FORMAT " bytes, not 32",
					     g_bytes_get_size (h));
				return NULL;
			}
			memcpy (s.hash, g_bytes_get_data (h, NULL), 32);
			s.has_hash = TRUE;
		}
		if (!opt_bool (m, "bootable", &s.bootable, error) ||
		    !opt_bool (m, "pending", &s.pending, error) ||
		    !opt_bool (m, "confirmed", &s.confirmed, error) ||
		    !opt_bool (m, "active", &s.active, error) ||
		    !opt_bool (m, "permanent", &s.permanent, error))
			return NULL;
		if (!bgs_smp_map_get_string (m, "version", &s.version, error))
			return NULL;
		g_array_append_val (out, s);
	}
	return g_steal_pointer (&out);
}

gboolean
bgs_smp_parse_echo (const BgsSmpMap *body, char **text, GError **error)
{
	return bgs_smp_map_get_string (body, "r", text, error);
}

gboolean
bgs_smp_parse_os_params (const BgsSmpMap *body, guint64 *buf_size, guint64 *buf_count,
			 GError **error)
{
	guint64 size = 0, count = 0;

	if (!bgs_smp_map_get_uint (body, "buf_size", &size, error) ||
	    !bgs_smp_map_get_uint (body, "buf_count", &count, error))
		return FALSE;
	/* a buffer that cannot hold a header and a small body is a broken answer */
	if (size < 64 || count == 0) {
		g_set_error (error, BGS_ERROR, BGS_ERROR_PROTOCOL,
			     "device reports unusable SMP buffers (buf_size %" G_GUINT64_FORMAT ", buf_count %" G_GUINT64_FORMAT ")",
			     size, count);
		return FALSE;
	}
	*buf_size = size;
	*buf_count = count;
	return TRUE;
}

gboolean
bgs_smp_parse_image_upload (const BgsSmpMap *body, guint64 *off, int *match, GError **error)
{
	gboolean m = FALSE;

	if (!bgs_smp_map_get_uint (body, "off", off, error))
		return FALSE;
	*match = -1;
	if (bgs_smp_map_contains (body, "match")) {
		if (!bgs_smp_map_get_bool (body, "match", &m, error))
			return FALSE;
		*match = m ? 1 : 0;
	}
	return TRUE;
}

gboolean
bgs_smp_parse_fs_download (const BgsSmpMap *body, guint64 *off, GBytes **data,
			   guint64 *total, GError **error)
{
	g_autoptr(GBytes) d = NULL;

	if (!bgs_smp_map_get_uint (body, "off", off, error))
		return FALSE;
	d = bgs_smp_map_get_bytes (body, "data", error);
	if (d == NULL)
		return FALSE;
	*total = G_MAXUINT64;
	if (bgs_smp_map_contains (body, "len")) {
		if (!bgs_smp_map_get_uint (body, "len", total, error))
			return FALSE;
	} else if (*off == 0) {
		g_set_error_literal (error, BGS_ERROR, BGS_ERROR_PROTOCOL,
				     "file download response at offset 0 lacks \"len\"");
		return FALSE;
	}
	*data = g_steal_pointer (&d);
	return TRUE;
}

gboolean
bgs_smp_parse_fs_upload (const BgsSmpMap *body, guint64 *off, GError **error)
{
	return bgs_smp_map_get_uint (body, "off", off, error);
}

gboolean
bgs_smp_parse_fs_hash (const BgsSmpMap *body, char **type, guint64 *len, GBytes **output,
		       GError **error)
{
	g_autofree char *t = NULL;

	if (!bgs_smp_map_get_string (body, "type", &t, error))
		return FALSE;
	if (!bgs_smp_map_get_uint (body, "len", len, error))
		return FALSE;
	if (g_strcmp0 (t, "crc32") == 0) {
		guint64 v = 0;
		guint8 be[4];

		if (!bgs_smp_map_get_uint (body, "output", &v, error))
			return FALSE;
		if (v > G_MAXUINT32) {
			g_set_error_literal (error, BGS_ERROR, BGS_ERROR_PROTOCOL,
					     "crc32 output out of range");
			return FALSE;
		}
		be[0] = (guint8) (v >> 24);
		be[1] = (guint8) (v >> 16);
		be[2] = (guint8) (v >> 8);
		be[3] = (guint8) v;
		*output = g_bytes_new (be, 4);
	} else {
		*output = bgs_smp_map_get_bytes (body, "output", error);
		if (*output == NULL)
			return FALSE;
	}
	*type = g_steal_pointer (&t);
	return TRUE;
}
