/* bgs-rfcomm-transport.h: an RFCOMM profile connection as a packet channel.
 *
 * bgsync registers a client-role Profile1 per UUID with BlueZ's
 * ProfileManager1 (shared by every transport of that UUID on a connection,
 * unregistered when the last one goes), asks Device1.ConnectProfile and
 * gets the stream socket in Profile1.NewConnection. It is a stream:
 * "packets" received are whatever one read returns (at most the payload
 * size); sends are queued and paced by the socket, never dropped. */
#pragma once

#include <gio/gio.h>

#include "bgs-transport.h"

G_BEGIN_DECLS

#define BGS_TYPE_RFCOMM_TRANSPORT (bgs_rfcomm_transport_get_type ())
G_DECLARE_FINAL_TYPE (BgsRfcommTransport, bgs_rfcomm_transport, BGS, RFCOMM_TRANSPORT, BgsTransport)

typedef struct {
	const char *uuid;          /* the remote profile's UUID (128-bit or 16-bit form) */
	gint64 connect_timeout;    /* usec: ConnectProfile + NewConnection, retries included */
	guint payload_size;        /* bytes per packet, 0 = 4096 */
} BgsRfcommTransportOptions;

/* @manager: an object manager client on org.bluez (main context); the
 * profile object is exported on its connection */
void bgs_rfcomm_transport_open_async (GDBusObjectManager *manager, const char *device_path,
				      const BgsRfcommTransportOptions *options,
				      GCancellable *cancellable, GAsyncReadyCallback callback,
				      gpointer user_data);
BgsRfcommTransport *bgs_rfcomm_transport_open_finish (GAsyncResult *res, GError **error);

/* after "disconnected": ConnectProfile on @device_path (the same device or
 * the one it came back as); emits "reconnected" on success */
void bgs_rfcomm_transport_reconnect_async (BgsRfcommTransport *self, const char *device_path,
					   GCancellable *cancellable, GAsyncReadyCallback callback,
					   gpointer user_data);
gboolean bgs_rfcomm_transport_reconnect_finish (BgsRfcommTransport *self, GAsyncResult *res,
						GError **error);

const char *bgs_rfcomm_transport_get_device_path (BgsRfcommTransport *self);
const char *bgs_rfcomm_transport_get_uuid (BgsRfcommTransport *self);
/* ConnectProfile calls the last connect made (1 = no retry) */
guint bgs_rfcomm_transport_get_connect_attempts (BgsRfcommTransport *self);

/* profile registrations still held (a transport, or a call in flight, keeps
 * one): a short-lived tool waits for 0 before exiting */
guint bgs_rfcomm_transport_count_registrations (void);

G_END_DECLS
