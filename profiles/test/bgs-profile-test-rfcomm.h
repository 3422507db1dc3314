/* bgs-profile-test-rfcomm.h: the test-rfcomm entry point's channel framing,
 * as pure functions (the bytes come from an app: fuzzed in tests/rfcomm) */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* type (1 byte), payload length (4, big endian), payload */
#define BGS_TEST_CHANNEL_HEADER 5
#define BGS_TEST_CHANNEL_MAX_FRAME (64 * 1024)
#define BGS_TEST_CHANNEL_MAX_CONTROL 4096

typedef enum {
	BGS_TEST_CHANNEL_NEED_MORE,
	BGS_TEST_CHANNEL_FRAME,
	BGS_TEST_CHANNEL_MALFORMED,     /* no way to find the next frame */
} BgsTestChannelParse;

typedef struct {
	char type;                      /* 'D' (data) or 'C' (control) */
	const guint8 *payload;          /* inside the parsed bytes */
	gsize len;
	gsize size;                     /* header + payload */
} BgsTestChannelFrame;

/* the frame at the start of @data; a bad header is MALFORMED as soon as
 * it is in, before its payload */
BgsTestChannelParse bgs_test_channel_frame_parse (const guint8 *data, gsize len,
						  BgsTestChannelFrame *frame);

typedef enum {
	BGS_TEST_CONTROL_COMPLETE,
	BGS_TEST_CONTROL_FAIL,          /* @text: the message */
	BGS_TEST_CONTROL_PROGRESS,      /* @percent (0..100), @text: the status */
	BGS_TEST_CONTROL_NOT_TEXT,      /* a NUL or invalid UTF-8 */
	BGS_TEST_CONTROL_BAD_PROGRESS,
	BGS_TEST_CONTROL_UNKNOWN,
} BgsTestControl;

/* a 'C' frame's payload; *@text is set (newly allocated) for FAIL and PROGRESS */
BgsTestControl bgs_test_channel_control_parse (const guint8 *payload, gsize len,
					       guint *percent, char **text);

G_END_DECLS
