/* bgs-transport.c: the packet channel base class */
#include "bgs-transport.h"

#include "bgs-error.h"

typedef struct {
	gboolean connected;
	gboolean closed;
} BgsTransportPrivate;

enum { SIGNAL_PACKET, SIGNAL_DISCONNECTED, SIGNAL_RECONNECTED, SIGNAL_IO, SIGNAL_LAST };
static guint signals[SIGNAL_LAST];

G_DEFINE_TYPE_WITH_PRIVATE (BgsTransport, bgs_transport, G_TYPE_OBJECT)

static void
bgs_transport_class_init (BgsTransportClass *klass)
{
	signals[SIGNAL_PACKET] = g_signal_new ("packet", G_TYPE_FROM_CLASS (klass),
					       G_SIGNAL_RUN_LAST, 0, NULL, NULL, NULL,
					       G_TYPE_NONE, 1, G_TYPE_BYTES);
	signals[SIGNAL_DISCONNECTED] = g_signal_new ("disconnected", G_TYPE_FROM_CLASS (klass),
						     G_SIGNAL_RUN_LAST, 0, NULL, NULL, NULL,
						     G_TYPE_NONE, 1, G_TYPE_ERROR);
	signals[SIGNAL_RECONNECTED] = g_signal_new ("reconnected", G_TYPE_FROM_CLASS (klass),
						    G_SIGNAL_RUN_LAST, 0, NULL, NULL, NULL,
						    G_TYPE_NONE, 0);
	signals[SIGNAL_IO] = g_signal_new ("io", G_TYPE_FROM_CLASS (klass),
					   G_SIGNAL_RUN_LAST, 0, NULL, NULL, NULL,
					   G_TYPE_NONE, 2, G_TYPE_UINT64, G_TYPE_UINT64);
}

static void
bgs_transport_init (BgsTransport *self)
{
	BgsTransportPrivate *priv = bgs_transport_get_instance_private (self);

	priv->connected = TRUE;
}

gboolean
bgs_transport_send (BgsTransport *self, GBytes *packet, GError **error)
{
	BgsTransportPrivate *priv = bgs_transport_get_instance_private (self);
	guint max = bgs_transport_get_payload_size (self);

	if (priv->closed) {
		g_set_error_literal (error, BGS_ERROR, BGS_ERROR_IO, "transport is closed");
		return FALSE;
	}
	if (g_bytes_get_size (packet) > max) {
		g_set_error (error, BGS_ERROR, BGS_ERROR_INVALID_ARGS,
			     "packet of %" G_GSIZE_FORMAT " bytes exceeds the link's %u",
			     g_bytes_get_size (packet), max);
		return FALSE;
	}
	return BGS_TRANSPORT_GET_CLASS (self)->send (self, packet, error);
}

gboolean
bgs_transport_send_data (BgsTransport *self, const guint8 *data, gsize len, GError **error)
{
	g_autoptr(GBytes) b = g_bytes_new (data, len);

	return bgs_transport_send (self, b, error);
}

guint
bgs_transport_get_payload_size (BgsTransport *self)
{
	return BGS_TRANSPORT_GET_CLASS (self)->get_payload_size (self);
}

gboolean
bgs_transport_is_connected (BgsTransport *self)
{
	BgsTransportPrivate *priv = bgs_transport_get_instance_private (self);

	return priv->connected && !priv->closed;
}

void
bgs_transport_close (BgsTransport *self)
{
	BgsTransportPrivate *priv = bgs_transport_get_instance_private (self);

	if (priv->closed)
		return;
	priv->closed = TRUE;
	if (BGS_TRANSPORT_GET_CLASS (self)->close != NULL)
		BGS_TRANSPORT_GET_CLASS (self)->close (self);
}

void
bgs_transport_emit_packet (BgsTransport *self, GBytes *packet)
{
	BgsTransportPrivate *priv = bgs_transport_get_instance_private (self);

	if (priv->closed)
		return;
	g_signal_emit (self, signals[SIGNAL_IO], 0, (guint64) g_bytes_get_size (packet), (guint64) 0);
	g_signal_emit (self, signals[SIGNAL_PACKET], 0, packet);
}

void
bgs_transport_emit_sent (BgsTransport *self, gsize len)
{
	g_signal_emit (self, signals[SIGNAL_IO], 0, (guint64) 0, (guint64) len);
}

void
bgs_transport_emit_disconnected (BgsTransport *self, const GError *error)
{
	BgsTransportPrivate *priv = bgs_transport_get_instance_private (self);

	if (!priv->connected || priv->closed)
		return;
	priv->connected = FALSE;
	g_signal_emit (self, signals[SIGNAL_DISCONNECTED], 0, error);
}

void
bgs_transport_emit_reconnected (BgsTransport *self)
{
	BgsTransportPrivate *priv = bgs_transport_get_instance_private (self);

	if (priv->closed)
		return;
	priv->connected = TRUE;
	g_signal_emit (self, signals[SIGNAL_RECONNECTED], 0);
}

static void
reconnect_done_cb (GObject *source, GAsyncResult *res, gpointer user_data)
{
	g_autoptr(GTask) outer = user_data;
	g_autoptr(GError) error = NULL;

	if (!g_task_propagate_boolean (G_TASK (res), &error)) {
		g_task_return_error (outer, g_steal_pointer (&error));
		return;
	}
	bgs_transport_emit_reconnected (BGS_TRANSPORT (source));
	g_task_return_boolean (outer, TRUE);
}

void
bgs_transport_reconnect_async (BgsTransport *self, const char *device_path,
			       GCancellable *cancellable, GAsyncReadyCallback callback,
			       gpointer user_data)
{
	GTask *outer = g_task_new (self, cancellable, callback, user_data);

	if (BGS_TRANSPORT_GET_CLASS (self)->reconnect == NULL) {
		g_task_return_new_error (outer, BGS_ERROR, BGS_ERROR_NOT_SUPPORTED,
					 "this transport cannot reconnect");
		g_object_unref (outer);
		return;
	}
	BGS_TRANSPORT_GET_CLASS (self)->reconnect (self, device_path, cancellable,
						   g_task_new (self, NULL, reconnect_done_cb, outer));
}

gboolean
bgs_transport_reconnect_finish (BgsTransport *self, GAsyncResult *res, GError **error)
{
	return g_task_propagate_boolean (G_TASK (res), error);
}
