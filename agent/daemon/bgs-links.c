/* bgs-links.c: transports for running instances, and servicing reconnects */
#include "bgs-links.h"

#include <stdio.h>

#include "bgs-error.h"
#include "bgs-gatt-transport.h"
#include "bgs-rfcomm-transport.h"

#define BACKOFF_MIN_MS 500
#define BACKOFF_MAX_MS 8000

struct _BgsLinks {
	BgsDevices *devices;
	gint64 connect_timeout;
	BgsLinkLostFunc lost;
	gpointer lost_data;
};

/* one reconnecting link (servicing) */
typedef struct {
	BgsLinks *links;
	BgsTransport *transport; /* weak: GATT or RFCOMM */
	char *address;        /* the address the device had */
	char *left_address;   /* the one it left (came back elsewhere), NULL if none */
	char *next_address;   /* address + delta, NULL if the model says nothing */
	char *name;
	gboolean same_name;
	char *adapter_path;
	guint retry_id;
	guint backoff_ms;
	gulong presence_id;
	gboolean connecting;
	gboolean discovering;
	GCancellable *cancellable; /* the attempt in flight */
	struct KeeperAttempt *attempt;
	char *target;          /* the device path that attempt connects to */
	gboolean switching;    /* a better target showed up: try it next */
} Keeper;

/* one reconnect attempt; outlives the keeper when it is canceled late */
typedef struct KeeperAttempt {
	Keeper *k; /* NULL once the keeper is gone */
} KeeperAttempt;

char *
bgs_address_add (const char *address, gint delta)
{
	guint8 b[6];
	guint64 v = 0;

	if (address == NULL ||
	    sscanf (address, "%2hhx:%2hhx:%2hhx:%2hhx:%2hhx:%2hhx", &b[0], &b[1], &b[2], &b[3],
		    &b[4], &b[5]) != 6)
		return NULL;
	for (guint i = 0; i < 6; i++)
		v = (v << 8) | b[i];
	v = (v + (guint64) (gint64) delta) & G_GUINT64_CONSTANT (0xffffffffffff);
	return g_strdup_printf ("%02X:%02X:%02X:%02X:%02X:%02X",
				(guint) (v >> 40) & 0xff, (guint) (v >> 32) & 0xff,
				(guint) (v >> 24) & 0xff, (guint) (v >> 16) & 0xff,
				(guint) (v >> 8) & 0xff, (guint) v & 0xff);
}

BgsLinks *
bgs_links_new (BgsDevices *devices, gint64 connect_timeout_usec, BgsLinkLostFunc lost,
	       gpointer lost_data)
{
	BgsLinks *links = g_new0 (BgsLinks, 1);

	links->lost = lost;
	links->lost_data = lost_data;
	links->devices = g_object_ref (devices);
	links->connect_timeout = connect_timeout_usec;
	return links;
}

void
bgs_links_free (BgsLinks *links)
{
	if (links == NULL)
		return;
	g_object_unref (links->devices);
	g_free (links);
}

static void
set_discovery (Keeper *k, gboolean on)
{
	GDBusObjectManager *manager = bgs_devices_get_object_manager (k->links->devices);
	g_autoptr(GDBusInterface) adapter = NULL;

	if (k->discovering == on || manager == NULL || k->adapter_path == NULL)
		return;
	adapter = g_dbus_object_manager_get_interface (manager, k->adapter_path, "org.bluez.Adapter1");
	if (adapter == NULL)
		return;
	k->discovering = on;
	g_dbus_proxy_call (G_DBUS_PROXY (adapter), on ? "StartDiscovery" : "StopDiscovery", NULL,
			   G_DBUS_CALL_FLAGS_NONE, -1, NULL, NULL, NULL);
}

static void
keeper_free (gpointer data)
{
	Keeper *k = data;

	if (k->retry_id != 0)
		g_source_remove (k->retry_id);
	if (k->presence_id != 0)
		g_signal_handler_disconnect (k->links->devices, k->presence_id);
	set_discovery (k, FALSE);
	if (k->attempt != NULL)
		k->attempt->k = NULL;
	g_cancellable_cancel (k->cancellable);
	g_object_unref (k->cancellable);
	g_free (k->target);
	g_free (k->left_address);
	g_free (k->address);
	g_free (k->next_address);
	g_free (k->name);
	g_free (k->adapter_path);
	g_free (k);
}

/* the device as it may have come back */
static BgsDevice *
keeper_find (Keeper *k)
{
	g_autoptr(GPtrArray) list = bgs_devices_list (k->links->devices);
	BgsDevice *same = NULL;

	for (guint i = 0; i < list->len; i++) {
		BgsDevice *dev = list->pdata[i];
		const char *addr = bgs_device_get_address (dev);

		if (!bgs_device_is_present (dev))
			continue;
		/* the agent may count it present a while after it moved */
		if (k->left_address != NULL && g_ascii_strcasecmp (addr, k->left_address) == 0)
			continue;
		if (k->next_address != NULL && g_ascii_strcasecmp (addr, k->next_address) == 0)
			return dev;
		if (g_ascii_strcasecmp (addr, k->address) == 0)
			same = dev;
		else if (k->same_name && k->name != NULL &&
			 g_strcmp0 (bgs_device_get_name (dev), k->name) == 0)
			same = same != NULL ? same : dev;
	}
	if (same != NULL)
		return same;
	/* a known device at the same address can be connected without being seen */
	return bgs_devices_lookup (k->links->devices, k->address);
}

static void keeper_try (Keeper *k);

static gboolean
retry_cb (gpointer data)
{
	Keeper *k = data;

	k->retry_id = 0;
	keeper_try (k);
	return G_SOURCE_REMOVE;
}

static void
keeper_schedule (Keeper *k)
{
	if (k->retry_id != 0 || k->connecting)
		return;
	k->retry_id = g_timeout_add (k->backoff_ms, retry_cb, k);
	k->backoff_ms = MIN (k->backoff_ms * 2, BACKOFF_MAX_MS);
}

static void
reconnect_cb (GObject *source, GAsyncResult *res, gpointer user_data)
{
	KeeperAttempt *a = user_data;
	Keeper *k = a->k;
	g_autoptr(GError) error = NULL;
	gboolean ok = bgs_transport_reconnect_finish (BGS_TRANSPORT (source), res, &error);

	g_free (a);
	if (k == NULL)
		return;
	k->attempt = NULL;
	k->connecting = FALSE;
	if (!ok) {
		g_debug ("reconnect to %s failed: %s", k->address, error->message);
		if (k->switching) {
			/* abandoned for a device that showed up meanwhile */
			k->switching = FALSE;
			keeper_try (k);
			return;
		}
		keeper_schedule (k);
		return;
	}
	k->switching = FALSE;
	k->connecting = FALSE;
	k->backoff_ms = BACKOFF_MIN_MS;
	set_discovery (k, FALSE);
	g_info ("reconnected to %s", k->address);
}

static void
keeper_try (Keeper *k)
{
	BgsDevice *dev;

	if (k->transport == NULL || k->connecting ||
	    bgs_transport_is_connected (BGS_TRANSPORT (k->transport)))
		return;
	dev = keeper_find (k);
	if (dev == NULL) {
		set_discovery (k, TRUE);
		keeper_schedule (k);
		return;
	}
	/* follow the device to its new address: it is the same device now */
	if (g_ascii_strcasecmp (bgs_device_get_address (dev), k->address) != 0) {
		g_info ("device %s came back as %s", k->address, bgs_device_get_address (dev));
		g_free (k->left_address);
		k->left_address = k->address;
		k->address = g_strdup (bgs_device_get_address (dev));
	}
	k->connecting = TRUE;
	g_free (k->target);
	k->target = g_strdup (bgs_device_get_bluez_path (dev));
	g_object_unref (k->cancellable);
	k->cancellable = g_cancellable_new ();
	k->attempt = g_new0 (KeeperAttempt, 1);
	k->attempt->k = k;
	bgs_transport_reconnect_async (k->transport, k->target, k->cancellable, reconnect_cb,
				       k->attempt);
}

static void
keeper_disconnected_cb (BgsTransport *transport, GError *error, gpointer user_data)
{
	Keeper *k = user_data;

	g_info ("link to %s lost (%s): waiting for it to come back", k->address,
		error != NULL ? error->message : "disconnected");
	k->backoff_ms = BACKOFF_MIN_MS;
	keeper_schedule (k);
}

static void
keeper_presence_cb (BgsDevices *devices, const char *id, gboolean present, gpointer user_data)
{
	Keeper *k = user_data;

	if (present && k->transport != NULL && !bgs_transport_is_connected (BGS_TRANSPORT (k->transport))) {
		if (k->connecting) {
			BgsDevice *dev;

			/* a try at the old address (the agent may still count
			 * it present; its page takes the whole connect timeout,
			 * with retries) gives way to a better match seen back,
			 * e.g. at address + 1 */
			if (k->switching)
				return;
			dev = keeper_find (k);
			if (dev == NULL || !bgs_device_is_present (dev) ||
			    g_strcmp0 (bgs_device_get_bluez_path (dev), k->target) == 0)
				return;
			g_info ("device %s: %s showed up, abandoning the try at %s", k->address,
				bgs_device_get_address (dev), k->target);
			/* follow it now: the try may take a while to give up, and
			 * bluetoothd may forget the device meanwhile (then the
			 * next try scans for it, not for the old address) */
			if (g_ascii_strcasecmp (bgs_device_get_address (dev), k->address) != 0) {
				g_info ("device %s came back as %s", k->address, bgs_device_get_address (dev));
				g_free (k->left_address);
				k->left_address = k->address;
				k->address = g_strdup (bgs_device_get_address (dev));
			}
			k->switching = TRUE;
			g_cancellable_cancel (k->cancellable);
			return;
		}
		if (k->retry_id != 0) {
			g_source_remove (k->retry_id);
			k->retry_id = 0;
		}
		keeper_try (k);
	}
}

static void
use_link_lost_cb (BgsTransport *transport, GError *error, gpointer user_data)
{
	BgsLinks *links = user_data;
	const char *id = g_object_get_data (G_OBJECT (transport), "bgs-device-id");

	g_info ("device-use link to %s dropped: the device left range", id);
	links->lost (id, links->lost_data);
}

typedef struct {
	GTask *task;
	BgsLinks *links;
	gboolean survive;
	char *device_id;
} OpenData;

/* a transport is up: servicing links get a keeper that brings them back,
 * device-use links report their loss as the device leaving range */
static void
link_opened (OpenData *od, BgsTransport *transport)
{
	BgsDevice *dev = bgs_devices_lookup_id (od->links->devices, od->device_id);

	if (od->survive && dev != NULL) {
		const BgsDeviceModel *model = bgs_device_get_model (dev);
		Keeper *k = g_new0 (Keeper, 1);

		k->links = od->links;
		k->transport = transport;
		k->address = g_strdup (bgs_device_get_address (dev));
		k->name = g_strdup (bgs_device_get_name (dev));
		k->adapter_path = g_strdup (bgs_device_get_adapter_path (dev));
		k->backoff_ms = BACKOFF_MIN_MS;
		k->cancellable = g_cancellable_new ();
		if (model != NULL && model->reconnect.address_delta != 0)
			k->next_address = bgs_address_add (k->address, model->reconnect.address_delta);
		k->same_name = model != NULL && model->reconnect.same_name;
		g_object_add_weak_pointer (G_OBJECT (transport), (gpointer *) &k->transport);
		g_signal_connect (transport, "disconnected", G_CALLBACK (keeper_disconnected_cb), k);
		k->presence_id = g_signal_connect (od->links->devices, "presence-changed",
						   G_CALLBACK (keeper_presence_cb), k);
		/* the keeper lives as long as the transport */
		g_object_set_data_full (G_OBJECT (transport), "bgs-keeper", k, keeper_free);
	}
	if (!od->survive && od->links->lost != NULL) {
		/* connected before the profile's handler: the agent cancels the
		 * instance (condition-loss) before the profile sees a failure */
		g_object_set_data_full (G_OBJECT (transport), "bgs-device-id",
					g_strdup (od->device_id), g_free);
		g_signal_connect (transport, "disconnected", G_CALLBACK (use_link_lost_cb), od->links);
	}
}

static void
gatt_open_cb (GObject *source, GAsyncResult *res, gpointer user_data)
{
	OpenData *od = user_data;
	g_autoptr(GTask) task = od->task;
	g_autoptr(GError) error = NULL;
	BgsGattTransport *transport = bgs_gatt_transport_open_finish (res, &error);

	if (transport == NULL) {
		g_task_return_error (task, g_steal_pointer (&error));
	} else {
		link_opened (od, BGS_TRANSPORT (transport));
		g_task_return_pointer (task, transport, g_object_unref);
	}
	g_free (od->device_id);
	g_free (od);
}

static void
rfcomm_open_cb (GObject *source, GAsyncResult *res, gpointer user_data)
{
	OpenData *od = user_data;
	g_autoptr(GTask) task = od->task;
	g_autoptr(GError) error = NULL;
	BgsRfcommTransport *transport = bgs_rfcomm_transport_open_finish (res, &error);

	if (transport == NULL) {
		g_task_return_error (task, g_steal_pointer (&error));
	} else {
		link_opened (od, BGS_TRANSPORT (transport));
		g_task_return_pointer (task, transport, g_object_unref);
	}
	g_free (od->device_id);
	g_free (od);
}

void
bgs_links_open_transport (BgsRun *run, const BgsTransportRequest *request,
			  GCancellable *cancellable, GAsyncReadyCallback callback,
			  gpointer callback_data, gpointer opener_data)
{
	BgsLinks *links = opener_data;
	GTask *task = g_task_new (run, cancellable, callback, callback_data);
	BgsDevice *dev = bgs_devices_lookup_id (links->devices, bgs_run_get_device_id (run));
	GDBusObjectManager *manager = bgs_devices_get_object_manager (links->devices);
	BgsGattTransportOptions opts = { 0 };
	OpenData *od;

	if (dev == NULL || manager == NULL) {
		g_task_return_new_error (task, BGS_ERROR, BGS_ERROR_NOT_FOUND,
					 "the device is no longer known to BlueZ");
		g_object_unref (task);
		return;
	}
	if (request->kind == BGS_TRANSPORT_RFCOMM) {
		/* service_uuid is the profile UUID; bluetoothd finds the channel */
		BgsRfcommTransportOptions ropts = { 0 };

		ropts.uuid = request->service_uuid;
		ropts.connect_timeout = links->connect_timeout;
		od = g_new0 (OpenData, 1);
		od->task = task;
		od->links = links;
		od->survive = request->survive_reboot;
		od->device_id = g_strdup (bgs_device_get_id (dev));
		bgs_rfcomm_transport_open_async (manager, bgs_device_get_bluez_path (dev), &ropts,
						 cancellable, rfcomm_open_cb, od);
		return;
	}
	if (request->kind != BGS_TRANSPORT_GATT) {
		g_task_return_new_error (task, BGS_ERROR, BGS_ERROR_NOT_SUPPORTED,
					 "unknown transport kind");
		g_object_unref (task);
		return;
	}
	opts.service_uuid = request->service_uuid;
	opts.characteristic_uuid = request->characteristic_uuid;
	opts.connect_timeout = links->connect_timeout;
	od = g_new0 (OpenData, 1);
	od->task = task;
	od->links = links;
	od->survive = request->survive_reboot;
	od->device_id = g_strdup (bgs_device_get_id (dev));
	bgs_gatt_transport_open_async (manager, bgs_device_get_bluez_path (dev), &opts, cancellable,
				       gatt_open_cb, od);
}
