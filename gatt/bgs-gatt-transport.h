/* bgs-gatt-transport.h: one GATT characteristic as a packet channel.
 *
 * Requests go out as writes without response and responses come back as
 * notifications (the shape of MCUmgr SMP and most vendor protocols). The
 * bulk path uses AcquireWrite / AcquireNotify file descriptors, re-acquired
 * after every reconnect, with WriteValue(type=command) / StartNotify as the
 * fallback where BlueZ or the device refuses to hand out fds. */
#pragma once

#include <gio/gio.h>

#include "bgs-transport.h"

G_BEGIN_DECLS

#define BGS_TYPE_GATT_TRANSPORT (bgs_gatt_transport_get_type ())
G_DECLARE_FINAL_TYPE (BgsGattTransport, bgs_gatt_transport, BGS, GATT_TRANSPORT, BgsTransport)

typedef struct {
	const char *service_uuid;
	const char *characteristic_uuid;        /* written without response */
	const char *notify_characteristic_uuid; /* notifies; NULL = the same one */
	gint64 connect_timeout;   /* usec: Connect + ServicesResolved */
	gboolean no_acquire;      /* force the WriteValue/StartNotify path (benchmarks) */
} BgsGattTransportOptions;

/* @manager: an object manager client on org.bluez (main context) */
void bgs_gatt_transport_open_async (GDBusObjectManager *manager, const char *device_path,
				    const BgsGattTransportOptions *options,
				    GCancellable *cancellable, GAsyncReadyCallback callback,
				    gpointer user_data);
BgsGattTransport *bgs_gatt_transport_open_finish (GAsyncResult *res, GError **error);

/* after "disconnected": connect to @device_path (the same device, or the
 * one it came back as) and re-acquire; emits "reconnected" on success */
void bgs_gatt_transport_reconnect_async (BgsGattTransport *self, const char *device_path,
					 GCancellable *cancellable, GAsyncReadyCallback callback,
					 gpointer user_data);
gboolean bgs_gatt_transport_reconnect_finish (BgsGattTransport *self, GAsyncResult *res,
					      GError **error);

const char *bgs_gatt_transport_get_device_path (BgsGattTransport *self);
/* TRUE when the fd (Acquire) path is in use */
gboolean bgs_gatt_transport_uses_fds (BgsGattTransport *self);
guint bgs_gatt_transport_get_mtu (BgsGattTransport *self);

G_END_DECLS
