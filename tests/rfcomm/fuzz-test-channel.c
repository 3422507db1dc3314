/* fuzz-test-channel.c: libFuzzer target for the test-rfcomm entry point's
 * channel framing (bytes from an app's "channel" socket): the frame parser
 * over the whole input and fed in pieces (both must agree), and every
 * control frame's text */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bgs-profile-test-rfcomm.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

#define check(cond) do { if (!(cond)) abort (); } while (0)

typedef struct {
	char type;
	gsize offset;           /* of the payload in the input */
	gsize len;
} Seen;

static void
check_control (const guint8 *payload, gsize len)
{
	g_autofree char *text = NULL;
	guint percent = 1000;

	switch (bgs_test_channel_control_parse (payload, len, &percent, &text)) {
	case BGS_TEST_CONTROL_FAIL:
		check (text != NULL && g_utf8_validate (text, -1, NULL));
		check (strlen (text) + 5 == len);
		break;
	case BGS_TEST_CONTROL_PROGRESS:
		check (text != NULL && g_utf8_validate (text, -1, NULL));
		check (percent <= 100);
		break;
	case BGS_TEST_CONTROL_COMPLETE:
		check (len == 8 && text == NULL);
		break;
	case BGS_TEST_CONTROL_NOT_TEXT:
	case BGS_TEST_CONTROL_BAD_PROGRESS:
	case BGS_TEST_CONTROL_UNKNOWN:
		check (text == NULL);
		break;
	default:
		abort ();
	}
}

/* the parser as the entry point runs it: whole frames off the front;
 * returns where it stopped, *@malformed if it stopped on a bad header */
static gsize
parse_all (const guint8 *data, gsize size, GArray *seen, gboolean *malformed, gboolean controls)
{
	gsize used = 0;

	*malformed = FALSE;
	for (;;) {
		BgsTestChannelFrame f;
		BgsTestChannelParse p = bgs_test_channel_frame_parse (data + used, size - used, &f);
		Seen s;

		if (p == BGS_TEST_CHANNEL_MALFORMED) {
			*malformed = TRUE;
			return used;
		}
		if (p == BGS_TEST_CHANNEL_NEED_MORE)
			return used;
		check (p == BGS_TEST_CHANNEL_FRAME);
		check (f.type == 'D' || f.type == 'C');
		check (f.len <= BGS_TEST_CHANNEL_MAX_FRAME);
		check (f.type == 'D' || f.len <= BGS_TEST_CHANNEL_MAX_CONTROL);
		check (f.size == BGS_TEST_CHANNEL_HEADER + f.len && f.size <= size - used);
		check (f.payload == data + used + BGS_TEST_CHANNEL_HEADER);
		if (seen != NULL) {
			s.type = f.type;
			s.offset = (gsize) (f.payload - data);
			s.len = f.len;
			g_array_append_val (seen, s);
		}
		if (controls && f.type == 'C')
			check_control (f.payload, f.len);
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

	/* the same bytes as a socket delivers them: in pieces of 1..64,
	 * the unparsed tail kept, as channel_parse() does */
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

		check (a.type == b.type && a.offset == b.offset && a.len == b.len);
	}
	if (!malformed)
		check (consumed == stop);
	return 0;
}
