/* bgs-wearable-bulk.h: the wearable's RFCOMM "bulk" service (server role).
 *
 * Registered with ProfileManager1.RegisterProfile under BGS_BULK_SERVER_UUID
 * with an SDP record that lists BGS_BULK_UUID on an explicit channel:
 * centrals connect to BGS_BULK_UUID, and one bluetoothd serving both
 * adapters (btvirt) takes each UUID once. The framed protocol is described
 * in doc/wearable.md. */
#pragma once

#include <gio/gio.h>

G_BEGIN_DECLS

/* what a central asks for (ConnectProfile) */
#define BGS_BULK_UUID "29998351-3f45-4f44-905a-b0e5db09b33a"
/* the server's own registration; its SDP record lists BGS_BULK_UUID */
#define BGS_BULK_SERVER_UUID "224e6ed4-27d5-470d-9434-a51822562214"
#define BGS_BULK_DEFAULT_CHANNEL 11

/* frames: op (1), flags (1, 0), reserved (2, 0), payload length (4, big endian) */
#define BGS_BULK_HEADER 8
#define BGS_BULK_MAX_PAYLOAD 65536
enum {
	BGS_BULK_OP_ECHO = 0x01,       /* payload comes back as ECHO | 0x80 */
	BGS_BULK_OP_SINK = 0x02,       /* payload is counted and hashed */
	BGS_BULK_OP_SINK_END = 0x03,   /* -> u64 count + SHA-256 of the sink, which restarts */
	BGS_BULK_OP_SOURCE = 0x04,     /* u32 bytes, u32 seed -> SOURCE_DATA frames, SOURCE_END */
	BGS_BULK_OP_SOURCE_END = 0x05, /* (reply only) u64 count + SHA-256 of what was sent */
	BGS_BULK_OP_INFO = 0x06,       /* -> text "boot=N channel=N" */
	BGS_BULK_OP_RESET = 0x07,      /* -> reply, then the device resets */
	BGS_BULK_OP_ERROR = 0x7f,      /* (reply only) text */
	BGS_BULK_REPLY = 0x80,
};
#define BGS_BULK_MAX_SOURCE (64u * 1024 * 1024)

/* the frame parser, pure (bytes from a central: fuzzed in tests/rfcomm) */
typedef enum {
	BGS_BULK_NEED_MORE,
	BGS_BULK_FRAME,
	BGS_BULK_MALFORMED,            /* no way to find the next frame */
} BgsBulkParse;
typedef struct {
	guint8 op;
	const guint8 *payload;         /* inside the parsed bytes */
	gsize len;
	gsize size;                    /* header + payload */
} BgsBulkFrame;
BgsBulkParse bgs_bulk_frame_parse (const guint8 *data, gsize len, BgsBulkFrame *frame);
/* a SOURCE request's arguments; FALSE with *@why when unusable */
gboolean bgs_bulk_source_parse (const guint8 *payload, gsize len, guint32 *size,
				guint32 *seed, const char **why);

typedef struct _BgsWearableBulk BgsWearableBulk;
typedef void (*BgsWearableBulkResetFunc) (gpointer user_data);

/* exports the Profile1 object on @bus; nothing is registered yet */
BgsWearableBulk *bgs_wearable_bulk_new (GDBusConnection *bus, guint channel,
					BgsWearableBulkResetFunc reset, gpointer reset_data,
					GError **error);
/* RegisterProfile with the bluetoothd owning org.bluez as @bluez_owner */
void bgs_wearable_bulk_register (BgsWearableBulk *bulk, const char *bluez_owner);
/* the device goes off the air: drop every connection, UnregisterProfile */
void bgs_wearable_bulk_unregister (BgsWearableBulk *bulk);
/* bluetoothd went away: drop every connection, nothing to unregister */
void bgs_wearable_bulk_bluez_gone (BgsWearableBulk *bulk);
/* a reset finished (INFO reports the boot count) */
void bgs_wearable_bulk_booted (BgsWearableBulk *bulk);
guint bgs_wearable_bulk_count_connections (BgsWearableBulk *bulk);
/* unregisters (bounded, blocking: for exit only) and frees */
void bgs_wearable_bulk_free (BgsWearableBulk *bulk);

/* byte @offset of the SOURCE pattern with @seed */
static inline guint8
bgs_bulk_pattern (guint64 offset, guint32 seed)
{
	return (guint8) ((offset * 131 + (offset >> 8) + seed) & 0xff);
}

G_END_DECLS
