/* bgs-smp-cbor.h: SMP bodies (CBOR maps with text keys) through libcbor
 *
 * Decoding is strict: the body must be exactly one map, keys text strings
 * and unique, nesting at most BGS_SMP_CBOR_MAX_DEPTH, no trailing bytes.
 * Accessors check types and fail with BGS_ERROR_PROTOCOL naming the key. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

#define BGS_SMP_CBOR_MAX_DEPTH 8

typedef struct _BgsSmpMap BgsSmpMap;

BgsSmpMap *bgs_smp_map_parse (const guint8 *data, gsize len, GError **error);
void bgs_smp_map_free (BgsSmpMap *map);

guint bgs_smp_map_size (const BgsSmpMap *map);
gboolean bgs_smp_map_contains (const BgsSmpMap *map, const char *key);

/* all getters fail (with a message naming @key) when the key is missing or
 * has another type; test bgs_smp_map_contains() first for optional keys */
gboolean bgs_smp_map_get_uint (const BgsSmpMap *map, const char *key, guint64 *out,
			       GError **error);
/* accepts unsigned and negative integers that fit */
gboolean bgs_smp_map_get_int (const BgsSmpMap *map, const char *key, gint64 *out,
			      GError **error);
gboolean bgs_smp_map_get_bool (const BgsSmpMap *map, const char *key, gboolean *out,
			       GError **error);
/* valid UTF-8 without NUL bytes */
gboolean bgs_smp_map_get_string (const BgsSmpMap *map, const char *key, char **out,
				 GError **error);
GBytes *bgs_smp_map_get_bytes (const BgsSmpMap *map, const char *key, GError **error);
BgsSmpMap *bgs_smp_map_get_map (const BgsSmpMap *map, const char *key, GError **error);
/* an array whose elements are all maps; element type BgsSmpMap */
GPtrArray *bgs_smp_map_get_map_array (const BgsSmpMap *map, const char *key,
				      GError **error);

/* builds one definite-length map with minimal-width integers, in insertion
 * order (so encodings match the documented byte vectors) */
typedef struct _BgsSmpBuilder BgsSmpBuilder;

BgsSmpBuilder *bgs_smp_builder_new (void);
void bgs_smp_builder_free (BgsSmpBuilder *b);
void bgs_smp_builder_add_uint (BgsSmpBuilder *b, const char *key, guint64 value);
void bgs_smp_builder_add_int (BgsSmpBuilder *b, const char *key, gint64 value);
void bgs_smp_builder_add_bool (BgsSmpBuilder *b, const char *key, gboolean value);
void bgs_smp_builder_add_string (BgsSmpBuilder *b, const char *key, const char *value);
void bgs_smp_builder_add_bytes (BgsSmpBuilder *b, const char *key, const guint8 *data,
				gsize len);
/* takes @sub */
void bgs_smp_builder_add_map (BgsSmpBuilder *b, const char *key, BgsSmpBuilder *sub);
/* takes the builders in @subs (the array itself stays the caller's) */
void bgs_smp_builder_add_map_array (BgsSmpBuilder *b, const char *key, GPtrArray *subs);
/* encodes and frees @b */
GBytes *bgs_smp_builder_end (BgsSmpBuilder *b);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (BgsSmpMap, bgs_smp_map_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (BgsSmpBuilder, bgs_smp_builder_free)

G_END_DECLS
