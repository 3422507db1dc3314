/* bgs-transport.h: a packet channel to a device, as a profile sees it.
 *
 * Profiles send and receive whole packets (one ATT write / notification on
 * GATT, a chunk on RFCOMM) and hear about link loss and recovery; they do
 * not know BlueZ. Every byte both ways is reported through "io", which the
 * daemon feeds to the idle rule and the history. */
#pragma once

#include <gio/gio.h>

G_BEGIN_DECLS

#define BGS_TYPE_TRANSPORT (bgs_transport_get_type ())
G_DECLARE_DERIVABLE_TYPE (BgsTransport, bgs_transport, BGS, TRANSPORT, GObject)

struct _BgsTransportClass {
	GObjectClass parent_class;
	/* queue one packet (<= payload size); never blocks, never drops */
	gboolean (*send) (BgsTransport *self, GBytes *packet, GError **error);
	guint (*get_payload_size) (BgsTransport *self);
	void (*close) (BgsTransport *self);
	/* connect again, to @device_path (the same device, or the one it came
	 * back as) and complete @task with a boolean; the base class emits
	 * "reconnected" */
	void (*reconnect) (BgsTransport *self, const char *device_path, GCancellable *cancellable,
			   GTask *task);
	gpointer padding[7];
};

gboolean bgs_transport_send (BgsTransport *self, GBytes *packet, GError **error);
gboolean bgs_transport_send_data (BgsTransport *self, const guint8 *data, gsize len, GError **error);
/* largest packet payload the link carries now (changes on reconnect) */
guint bgs_transport_get_payload_size (BgsTransport *self);
gboolean bgs_transport_is_connected (BgsTransport *self);
void bgs_transport_close (BgsTransport *self);
/* after "disconnected": reconnect; emits "reconnected" on success */
void bgs_transport_reconnect_async (BgsTransport *self, const char *device_path,
				    GCancellable *cancellable, GAsyncReadyCallback callback,
				    gpointer user_data);
gboolean bgs_transport_reconnect_finish (BgsTransport *self, GAsyncResult *res, GError **error);

/* for implementations: "packet" (GBytes), "disconnected" (GError, may be
 * NULL), "reconnected" (), "io" (guint64 in, guint64 out) */
void bgs_transport_emit_packet (BgsTransport *self, GBytes *packet);
void bgs_transport_emit_sent (BgsTransport *self, gsize len);
void bgs_transport_emit_disconnected (BgsTransport *self, const GError *error);
void bgs_transport_emit_reconnected (BgsTransport *self);

/* what a profile asks for */
typedef enum {
	BGS_TRANSPORT_GATT,   /* one characteristic: write without response + notify */
	BGS_TRANSPORT_RFCOMM, /* a stream to a profile UUID */
} BgsTransportKind;

typedef struct {
	BgsTransportKind kind;
	const char *service_uuid;        /* GATT service, or the RFCOMM profile UUID */
	const char *characteristic_uuid; /* GATT only */
	/* servicing: survive the device rebooting (reconnect, even at a new address) */
	gboolean survive_reboot;
} BgsTransportRequest;

G_END_DECLS
