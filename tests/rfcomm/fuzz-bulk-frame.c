/* fuzz-bulk-frame.c: libFuzzer target for bgsync-wearable's RFCOMM bulk
 * protocol (bytes from a central): the frame parser over the whole input
 * and fed in pieces (both must agree), and every SOURCE request's
 * arguments */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bgs-wearable-bulk.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

#define check(cond) do { if (!(cond)) abort (); } while (0)

typedef struct {
	guint8 op;
	gsize offset;           /* of the payload in the input */
	gsize len;
} Seen;

static void
check_source (const guint8 *payload, gsize len)
{
	guint32 bytes = 0, seed = 0;
	const char *why = NULL;
	guint32 be = 0;

	if (len >= 4)
		memcpy (&be, payload, 4);
	if (bgs_bulk_source_parse (payload, len, &bytes, &seed, &why)) {
		check (len == 8 && bytes <= BGS_BULK_MAX_SOURCE);
	} else {
		check (why != NULL && g_utf8_validate (why, -1, NULL));
		check (len != 8 || GUINT32_FROM_BE (be) > BGS_BULK_MAX_SOURCE);
	}
}

/* the parser as the wearable runs it: whole frames off the front;
 * returns where it stopped, *@malformed if it stopped on a bad header */
static gsize
parse_all (const guint8 *data, gsize size, GArray *seen, gboolean *malformed, gboolean requests)
{
	gsize used = 0;

	*malformed = FALSE;
	for (;;) {
		BgsBulkFrame f;
		BgsBulkParse p = bgs_bulk_frame_parse (data + used, size - used, &f);
		Seen s;

		if (p == BGS_BULK_MALFORMED) {
			*malformed = TRUE;
			check (size - used >= BGS_BULK_HEADER);
			return used;
		}
		if (p == BGS_BULK_NEED_MORE)
			return used;
		check (p == BGS_BULK_FRAME);
		check (f.len <= BGS_BULK_MAX_PAYLOAD);
		check (f.size == BGS_BULK_HEADER + f.len && f.size <= size - used);
		check (f.payload == data + used + BGS_BULK_HEADER);
		check (f.op == data[used] && data[used + 1] == 0);
		if (seen != NULL) {
			s.op = f.op;
			s.offset = (gsize) (f.payload - data);
			s.len = f.len;
			g_array_append_val (seen, s);
		}
		if (requests && f.op == BGS_BULK_OP_SOURCE)
			check_source (f.payload, f.len);
		used += f.size;
	}
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
	g_autoptr(GArray) whole = g_array_new (FALSE, FALSE, sizeof (Seen));
	g_autoptr(GArray) pieces = g_array_new (FALSE, FALSE, sizeof (Seen));
	g_autoptr(GByteArray) in = g_byte_array_new ();
	gboolean malformed, bad = FALSE;
	gsize stop, fed = 0, consumed = 0;
	guint32 rng = (guint32) size * 2654435761u;

	stop = parse_all (data, size, whole, &malformed, TRUE);
	check (stop <= size);

	/* the same bytes as the RFCOMM socket delivers them: in pieces of
	 * 1..64, the unparsed tail kept, as conn_receive() does */
	while (fed < size && !bad) {
		gsize n, used;
		GArray *batch = g_array_new (FALSE, FALSE, sizeof (Seen));

		rng = rng * 1103515245u + 12345u;
		n = MIN ((gsize) (rng >> 16) % 64 + 1, size - fed);
		g_byte_array_append (in, data + fed, n);
		fed += n;
		used = parse_all (in->data, in->len, batch, &bad, FALSE);
		/* a bad header stops both at the same frame */
		if (bad)
			check (consumed + used == stop);
		for (guint i = 0; i < batch->len; i++) {
			Seen s = g_array_index (batch, Seen, i);

			/* offsets relative to the whole input */
			s.offset += consumed;
			check (memcmp (in->data + (s.offset - consumed), data + s.offset, s.len) == 0);
			g_array_append_val (pieces, s);
		}
		g_array_free (batch, TRUE);
		if (!bad) {
			g_byte_array_remove_range (in, 0, used);
			consumed += used;
		}
	}
	check (bad == malformed);
	check (pieces->len == whole->len);
	for (guint i = 0; i < whole->len; i++) {
		Seen a = g_array_index (whole, Seen, i);
		Seen b = g_array_index (pieces, Seen, i);

		check (a.op == b.op && a.offset == b.offset && a.len == b.len);
	}
	if (!malformed)
		check (consumed == stop);
	return 0;
}
