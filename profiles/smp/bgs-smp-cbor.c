/* bgs-smp-cbor.c: strict CBOR map decoding and encoding over libcbor */
#include "bgs-smp-cbor.h"

#include <cbor.h>
#include <stdlib.h>
#include <string.h>

#include "bgs-error.h"

struct _BgsSmpMap {
	cbor_item_t *item; /* a map; one reference owned */
};

static BgsSmpMap *
map_wrap (cbor_item_t *item)
{
	BgsSmpMap *map = g_new0 (BgsSmpMap, 1);

	map->item = cbor_incref (item);
	return map;
}

void
bgs_smp_map_free (BgsSmpMap *map)
{
	if (map == NULL)
		return;
	cbor_decref (&map->item);
	g_free (map);
}

static const char *
load_error_text (cbor_error_code code)
{
	switch (code) {
	case CBOR_ERR_NOTENOUGHDATA:
		return "truncated CBOR";
	case CBOR_ERR_NODATA:
		return "empty CBOR body";
	case CBOR_ERR_MALFORMATED:
		return "malformed CBOR";
	case CBOR_ERR_MEMERROR:
		return "CBOR too large or nested too deeply";
	case CBOR_ERR_SYNTAXERROR:
		return "CBOR syntax error";
	default:
		return "invalid CBOR";
	}
}

/* a string item (definite or chunked) as a NUL-terminated copy; NULL on
 * invalid UTF-8 or embedded NUL */
static char *
string_dup (const cbor_item_t *item)
{
	GString *s = g_string_new (NULL);

	if (cbor_string_is_definite (item)) {
		g_string_append_len (s, (const char *) cbor_string_handle (item),
				     (gssize) cbor_string_length (item));
	} else {
		cbor_item_t **chunks = cbor_string_chunks_handle (item);

		for (size_t i = 0; i < cbor_string_chunk_count (item); i++)
			g_string_append_len (s, (const char *) cbor_string_handle (chunks[i]),
					     (gssize) cbor_string_length (chunks[i]));
	}
	if (memchr (s->str, '\0', s->len) != NULL || !g_utf8_validate (s->str, (gssize) s->len, NULL)) {
		g_string_free (s, TRUE);
		return NULL;
	}
	return g_string_free (s, FALSE);
}

static GBytes *
bytes_dup (const cbor_item_t *item)
{
	GByteArray *a;

	if (cbor_bytestring_is_definite (item))
		return g_bytes_new (cbor_bytestring_handle (item), cbor_bytestring_length (item));
	a = g_byte_array_new ();
	for (size_t i = 0; i < cbor_bytestring_chunk_count (item); i++) {
		cbor_item_t *c = cbor_bytestring_chunks_handle (item)[i];

		g_byte_array_append (a, cbor_bytestring_handle (c), (guint) cbor_bytestring_length (c));
	}
	return g_byte_array_free_to_bytes (a);
}

/* depth and key checks; recursion is bounded by BGS_SMP_CBOR_MAX_DEPTH */
static gboolean
check_item (const cbor_item_t *item, guint depth, GError **error)
{
	if (depth > BGS_SMP_CBOR_MAX_DEPTH) {
		g_set_error (error, BGS_ERROR, BGS_ERROR_PROTOCOL,
			     "CBOR nested deeper than %d levels", BGS_SMP_CBOR_MAX_DEPTH);
		return FALSE;
	}
	switch (cbor_typeof (item)) {
	case CBOR_TYPE_MAP: {
		struct cbor_pair *pairs = cbor_map_handle (item);
		size_t n = cbor_map_size (item);
		g_autoptr(GHashTable) seen = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);

		for (size_t i = 0; i < n; i++) {
			char *key;

			if (!cbor_isa_string (pairs[i].key)) {
				g_set_error_literal (error, BGS_ERROR, BGS_ERROR_PROTOCOL,
						     "CBOR map key is not a text string");
				return FALSE;
			}
			key = string_dup (pairs[i].key);
			if (key == NULL) {
				g_set_error_literal (error, BGS_ERROR, BGS_ERROR_PROTOCOL,
						     "CBOR map key is not valid UTF-8");
				return FALSE;
			}
			if (!g_hash_table_add (seen, key)) {
				g_set_error (error, BGS_ERROR, BGS_ERROR_PROTOCOL,
					     "CBOR map has key \"%s\" twice", key);
				return FALSE;
			}
			if (!check_item (pairs[i].value, depth + 1, error))
				return FALSE;
		}
		return TRUE;
	}
	case CBOR_TYPE_ARRAY:
		for (size_t i = 0; i < cbor_array_size (item); i++) {
			if (!check_item (cbor_array_handle (item)[i], depth + 1, error))
				return FALSE;
		}
		return TRUE;
	case CBOR_TYPE_TAG:
		g_set_error_literal (error, BGS_ERROR, BGS_ERROR_PROTOCOL,
				     "CBOR tags are not used by SMP");
		return FALSE;
	default:
		return TRUE;
	}
}

typedef struct {
	gsize len;
	gboolean too_big;
} Prescan;

static void
prescan_array (void *ctx, size_t size)
{
	Prescan *p = ctx;

	if (size > p->len)
		p->too_big = TRUE;
}

static void
prescan_map (void *ctx, size_t size)
{
	Prescan *p = ctx;

	if (size > p->len / 2)
		p->too_big = TRUE;
}

/* libcbor allocates a definite array or map for its declared size before
 * reading it, so "array of 2^32 items" in 5 bytes would allocate gigabytes:
 * refuse counts that the input cannot possibly hold (an item is >= 1 byte) */
static gboolean
prescan (const guint8 *data, gsize len)
{
	struct cbor_callbacks cb = cbor_empty_callbacks;
	Prescan p = { .len = len };
	gsize off = 0;

	cb.array_start = prescan_array;
	cb.map_start = prescan_map;
	while (off < len && !p.too_big) {
		struct cbor_decoder_result r = cbor_stream_decode (data + off, len - off, &cb, &p);

		if (r.status != CBOR_DECODER_FINISHED || r.read == 0)
			break; /* cbor_load reports it */
		off += r.read;
	}
	return !p.too_big;
}

BgsSmpMap *
bgs_smp_map_parse (const guint8 *data, gsize len, GError **error)
{
	struct cbor_load_result res = { 0 };
	cbor_item_t *item;
	BgsSmpMap *map;

	if (len == 0 || data == NULL) {
		g_set_error_literal (error, BGS_ERROR, BGS_ERROR_PROTOCOL, "empty CBOR body");
		return NULL;
	}
	if (!prescan (data, len)) {
		g_set_error_literal (error, BGS_ERROR, BGS_ERROR_PROTOCOL,
				     "CBOR array or map longer than the body holding it");
		return NULL;
	}
	item = cbor_load (data, len, &res);
	if (item == NULL || res.error.code != CBOR_ERR_NONE) {
		if (item != NULL)
			cbor_decref (&item);
		g_set_error (error, BGS_ERROR, BGS_ERROR_PROTOCOL, "%s at byte %" G_GSIZE_FORMAT,
			     load_error_text (res.error.code), (gsize) res.error.position);
		return NULL;
	}
	if (res.read != len) {
		cbor_decref (&item);
		g_set_error (error, BGS_ERROR, BGS_ERROR_PROTOCOL,
			     "%" G_GSIZE_FORMAT " trailing bytes after the CBOR body",
			     len - (gsize) res.read);
		return NULL;
	}
	if (!cbor_isa_map (item)) {
		cbor_decref (&item);
		g_set_error_literal (error, BGS_ERROR, BGS_ERROR_PROTOCOL,
				     "SMP body is not a CBOR map");
		return NULL;
	}
	if (!check_item (item, 1, error)) {
		cbor_decref (&item);
		return NULL;
	}
	map = map_wrap (item);
	cbor_decref (&item);
	return map;
}

guint
bgs_smp_map_size (const BgsSmpMap *map)
{
	return (guint) cbor_map_size (map->item);
}

static const cbor_item_t *
find (const BgsSmpMap *map, const char *key)
{
	struct cbor_pair *pairs = cbor_map_handle (map->item);
	size_t klen = strlen (key);

	for (size_t i = 0; i < cbor_map_size (map->item); i++) {
		const cbor_item_t *k = pairs[i].key;

		if (cbor_string_is_definite (k)) {
			if (cbor_string_length (k) == klen &&
			    memcmp (cbor_string_handle (k), key, klen) == 0)
				return pairs[i].value;
		} else {
			g_autofree char *s = string_dup (k);

			if (g_strcmp0 (s, key) == 0)
				return pairs[i].value;
		}
	}
	return NULL;
}

gboolean
bgs_smp_map_contains (const BgsSmpMap *map, const char *key)
{
	return find (map, key) != NULL;
}

static const cbor_item_t *
find_typed (const BgsSmpMap *map, const char *key, cbor_type type, const char *what,
	    GError **error)
{
	const cbor_item_t *v = find (map, key);

	if (v == NULL) {
		g_set_error (error, BGS_ERROR, BGS_ERROR_PROTOCOL, "SMP response lacks \"%s\"", key);
		return NULL;
	}
	if (cbor_typeof (v) != type) {
		g_set_error (error, BGS_ERROR, BGS_ERROR_PROTOCOL,
			     "SMP field \"%s\" is not %s", key, what);
		return NULL;
	}
	return v;
}

gboolean
bgs_smp_map_get_uint (const BgsSmpMap *map, const char *key, guint64 *out, GError **error)
{
	const cbor_item_t *v = find_typed (map, key, CBOR_TYPE_UINT, "an unsigned integer", error);

	if (v == NULL)
		return FALSE;
	*out = cbor_get_int (v);
	return TRUE;
}

gboolean
bgs_smp_map_get_int (const BgsSmpMap *map, const char *key, gint64 *out, GError **error)
{
	const cbor_item_t *v = find (map, key);
	guint64 raw;

	if (v == NULL) {
		g_set_error (error, BGS_ERROR, BGS_ERROR_PROTOCOL, "SMP response lacks \"%s\"", key);
		return FALSE;
	}
	if (!cbor_is_int (v)) {
		g_set_error (error, BGS_ERROR, BGS_ERROR_PROTOCOL,
			     "SMP field \"%s\" is not an integer", key);
		return FALSE;
	}
	raw = cbor_get_int (v);
	if (raw > G_MAXINT64) {
		g_set_error (error, BGS_ERROR, BGS_ERROR_PROTOCOL,
			     "SMP field \"%s\" is out of range", key);
		return FALSE;
	}
	*out = cbor_isa_uint (v) ? (gint64) raw : -1 - (gint64) raw;
	return TRUE;
}

gboolean
bgs_smp_map_get_bool (const BgsSmpMap *map, const char *key, gboolean *out, GError **error)
{
	const cbor_item_t *v = find (map, key);

	if (v == NULL) {
		g_set_error (error, BGS_ERROR, BGS_ERROR_PROTOCOL, "SMP response lacks \"%s\"", key);
		return FALSE;
	}
	/* libcbor's cbor_is_bool() asserts on a float: ask for a simple value first */
	if (!cbor_isa_float_ctrl (v) || !cbor_float_ctrl_is_ctrl (v) || !cbor_is_bool (v)) {
		g_set_error (error, BGS_ERROR, BGS_ERROR_PROTOCOL,
			     "SMP field \"%s\" is not a boolean", key);
		return FALSE;
	}
	*out = cbor_get_bool (v);
	return TRUE;
}

gboolean
bgs_smp_map_get_string (const BgsSmpMap *map, const char *key, char **out, GError **error)
{
	const cbor_item_t *v = find_typed (map, key, CBOR_TYPE_STRING, "a text string", error);
	char *s;

	if (v == NULL)
		return FALSE;
	s = string_dup (v);
	if (s == NULL) {
		g_set_error (error, BGS_ERROR, BGS_ERROR_PROTOCOL,
			     "SMP field \"%s\" is not valid UTF-8", key);
		return FALSE;
	}
	*out = s;
	return TRUE;
}

GBytes *
bgs_smp_map_get_bytes (const BgsSmpMap *map, const char *key, GError **error)
{
	const cbor_item_t *v = find_typed (map, key, CBOR_TYPE_BYTESTRING, "a byte string", error);

	return v != NULL ? bytes_dup (v) : NULL;
}

BgsSmpMap *
bgs_smp_map_get_map (const BgsSmpMap *map, const char *key, GError **error)
{
	const cbor_item_t *v = find_typed (map, key, CBOR_TYPE_MAP, "a map", error);

	return v != NULL ? map_wrap ((cbor_item_t *) v) : NULL;
}

GPtrArray *
bgs_smp_map_get_map_array (const BgsSmpMap *map, const char *key, GError **error)
{
	const cbor_item_t *v = find_typed (map, key, CBOR_TYPE_ARRAY, "an array", error);
	GPtrArray *out;

	if (v == NULL)
		return NULL;
	out = g_ptr_array_new_with_free_func ((GDestroyNotify) bgs_smp_map_free);
	for (size_t i = 0; i < cbor_array_size (v); i++) {
		cbor_item_t *e = cbor_array_handle (v)[i];

		if (!cbor_isa_map (e)) {
			g_set_error (error, BGS_ERROR, BGS_ERROR_PROTOCOL,
				     "SMP field \"%s\" has an element that is not a map", key);
			g_ptr_array_unref (out);
			return NULL;
		}
		g_ptr_array_add (out, map_wrap (e));
	}
	return out;
}

/* builder */

struct _BgsSmpBuilder {
	GPtrArray *keys;   /* cbor_item_t* */
	GPtrArray *values; /* cbor_item_t* */
};

/* out of memory: abort like g_malloc() does */
static void G_GNUC_NORETURN
oom (const char *what)
{
	g_critical ("libcbor %s failed: out of memory", what);
	abort ();
}

static void
item_unref (gpointer p)
{
	cbor_item_t *item = p;

	cbor_decref (&item);
}

BgsSmpBuilder *
bgs_smp_builder_new (void)
{
	BgsSmpBuilder *b = g_new0 (BgsSmpBuilder, 1);

	b->keys = g_ptr_array_new_with_free_func (item_unref);
	b->values = g_ptr_array_new_with_free_func (item_unref);
	return b;
}

void
bgs_smp_builder_free (BgsSmpBuilder *b)
{
	if (b == NULL)
		return;
	g_ptr_array_unref (b->keys);
	g_ptr_array_unref (b->values);
	g_free (b);
}

static void
add (BgsSmpBuilder *b, const char *key, cbor_item_t *value)
{
	g_return_if_fail (value != NULL);
	g_ptr_array_add (b->keys, cbor_build_string (key));
	g_ptr_array_add (b->values, value);
}

/* smallest width, as canonical CBOR and zcbor do */
static cbor_item_t *
build_uint (guint64 v)
{
	if (v <= G_MAXUINT8)
		return cbor_build_uint8 ((uint8_t) v);
	if (v <= G_MAXUINT16)
		return cbor_build_uint16 ((uint16_t) v);
	if (v <= G_MAXUINT32)
		return cbor_build_uint32 ((uint32_t) v);
	return cbor_build_uint64 (v);
}

void
bgs_smp_builder_add_uint (BgsSmpBuilder *b, const char *key, guint64 value)
{
	add (b, key, build_uint (value));
}

void
bgs_smp_builder_add_int (BgsSmpBuilder *b, const char *key, gint64 value)
{
	guint64 n;
	cbor_item_t *item;

	if (value >= 0) {
		add (b, key, build_uint ((guint64) value));
		return;
	}
	n = (guint64) (-(value + 1));
	if (n <= G_MAXUINT8)
		item = cbor_build_negint8 ((uint8_t) n);
	else if (n <= G_MAXUINT16)
		item = cbor_build_negint16 ((uint16_t) n);
	else if (n <= G_MAXUINT32)
		item = cbor_build_negint32 ((uint32_t) n);
	else
		item = cbor_build_negint64 (n);
	add (b, key, item);
}

void
bgs_smp_builder_add_bool (BgsSmpBuilder *b, const char *key, gboolean value)
{
	add (b, key, cbor_build_bool (value));
}

void
bgs_smp_builder_add_string (BgsSmpBuilder *b, const char *key, const char *value)
{
	add (b, key, cbor_build_stringn (value, strlen (value)));
}

void
bgs_smp_builder_add_bytes (BgsSmpBuilder *b, const char *key, const guint8 *data, gsize len)
{
	add (b, key, cbor_build_bytestring (len > 0 ? data : (const guint8 *) "", len));
}

static cbor_item_t *
builder_to_item (BgsSmpBuilder *b)
{
	cbor_item_t *map = cbor_new_definite_map (b->keys->len);

	for (guint i = 0; i < b->keys->len; i++) {
		struct cbor_pair pair = {
			.key = b->keys->pdata[i],
			.value = b->values->pdata[i],
		};

		/* the map takes its own references */
		if (!cbor_map_add (map, pair))
			oom ("map add");
	}
	return map;
}

void
bgs_smp_builder_add_map (BgsSmpBuilder *b, const char *key, BgsSmpBuilder *sub)
{
	add (b, key, builder_to_item (sub));
	bgs_smp_builder_free (sub);
}

void
bgs_smp_builder_add_map_array (BgsSmpBuilder *b, const char *key, GPtrArray *subs)
{
	cbor_item_t *array = cbor_new_definite_array (subs->len);

	for (guint i = 0; i < subs->len; i++) {
		BgsSmpBuilder *sub = subs->pdata[i];
		cbor_item_t *m = builder_to_item (sub);

		cbor_array_push (array, m);
		cbor_decref (&m);
		bgs_smp_builder_free (sub);
		subs->pdata[i] = NULL;
	}
	add (b, key, array);
}

GBytes *
bgs_smp_builder_end (BgsSmpBuilder *b)
{
	cbor_item_t *map = builder_to_item (b);
	unsigned char *buf = NULL;
	size_t buf_size = 0;
	size_t n;
	GBytes *out;

	n = cbor_serialize_alloc (map, &buf, &buf_size);
	cbor_decref (&map);
	bgs_smp_builder_free (b);
	if (n == 0)
		oom ("serialization");
	out = g_bytes_new (buf, n);
	free (buf);
	return out;
}
