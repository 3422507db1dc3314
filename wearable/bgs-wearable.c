/* bgs-wearable.c: bgsync-wearable, a virtual Zephyr-style wearable
 *
 * A BlueZ peripheral application: GattManager1.RegisterApplication with an
 * ObjectManager app root, LEAdvertisingManager1.RegisterAdvertisement. It
 * speaks only BlueZ's public D-Bus API (doc/org.bluez.GattManager.rst,
 * GattService.rst, GattCharacteristic.rst, LEAdvertisingManager.rst,
 * LEAdvertisement.rst), so the same binary runs on bluetoothd and on
 * bgsync-sim. Services: Device Information (with PnP ID), Battery, and the
 * MCUmgr SMP service served by BgsSmpServer over WriteValue/notify or the
 * AcquireWrite/AcquireNotify sockets; and an RFCOMM "bulk" server through
 * ProfileManager1 (bgs-wearable-bulk.c). */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <gio/gio.h>
#include <gio/gunixfdlist.h>
#include <glib-unix.h>
#include <glib/gstdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bgs-clock.h"
#include "bgs-error.h"
#include "bgs-smp-server.h"
#include "bgs-wearable-bulk.h"

#define BLUEZ "org.bluez"
#define APP_ROOT "/org/bgsync/wearable"
#define ADV_PATH APP_ROOT "/advertisement0"
#define SMP_SERVICE_UUID "8d53dc1d-1db7-4cd3-868b-8a527460aa84"
#define SMP_CHRC_UUID "da2e7828-fbce-4e01-ae9e-261174997c48"
#define SIM_NAME "org.bgsync.Sim"
#define SIM_PATH "/org/bgsync/sim"
#define SIM_IFACE "org.bgsync.Sim1"

/* PnP ID (0x2A50): vendor id source 1 = Bluetooth SIG, vendor 0x05F1
 * (The Linux Foundation), product 0x5742, version 0x0100 */
#define PNP_VENDOR 0x05f1
#define PNP_PRODUCT 0x5742
#define PNP_VERSION 0x0100

typedef enum {
	CHRC_MANUFACTURER,
	CHRC_MODEL,
	CHRC_PNP,
	CHRC_FIRMWARE,
	CHRC_BATTERY,
	CHRC_SMP,
	N_CHRC
} ChrcKind;

typedef struct {
	const char *path;
	const char *uuid;
	const char *service;
	const char *flags[4];
} ChrcDesc;

static const struct {
	const char *path;
	const char *uuid;
} services[] = {
	{ APP_ROOT "/service0", "0000180a-0000-1000-8000-00805f9b34fb" },
	{ APP_ROOT "/service1", "0000180f-0000-1000-8000-00805f9b34fb" },
	{ APP_ROOT "/service2", SMP_SERVICE_UUID },
};

static const ChrcDesc chrcs[N_CHRC] = {
	[CHRC_MANUFACTURER] = { APP_ROOT "/service0/char0", "00002a29-0000-1000-8000-00805f9b34fb",
				APP_ROOT "/service0", { "read", NULL } },
	[CHRC_MODEL] = { APP_ROOT "/service0/char1", "00002a24-0000-1000-8000-00805f9b34fb",
			 APP_ROOT "/service0", { "read", NULL } },
	[CHRC_PNP] = { APP_ROOT "/service0/char2", "00002a50-0000-1000-8000-00805f9b34fb",
		       APP_ROOT "/service0", { "read", NULL } },
	[CHRC_FIRMWARE] = { APP_ROOT "/service0/char3", "00002a26-0000-1000-8000-00805f9b34fb",
			    APP_ROOT "/service0", { "read", NULL } },
	[CHRC_BATTERY] = { APP_ROOT "/service1/char0", "00002a19-0000-1000-8000-00805f9b34fb",
			   APP_ROOT "/service1", { "read", "notify", NULL } },
	[CHRC_SMP] = { APP_ROOT "/service2/char0", SMP_CHRC_UUID,
		       APP_ROOT "/service2", { "write-without-response", "notify", NULL } },
};

static const char introspection_xml[] =
	"<node>"
	" <interface name='org.freedesktop.DBus.ObjectManager'>"
	"  <method name='GetManagedObjects'>"
	"   <arg name='objects' type='a{oa{sa{sv}}}' direction='out'/>"
	"  </method>"
	"  <signal name='InterfacesAdded'><arg type='o'/><arg type='a{sa{sv}}'/></signal>"
	"  <signal name='InterfacesRemoved'><arg type='o'/><arg type='as'/></signal>"
	" </interface>"
	" <interface name='org.bluez.GattService1'>"
	"  <property name='UUID' type='s' access='read'/>"
	"  <property name='Primary' type='b' access='read'/>"
	" </interface>"
	" <interface name='org.bluez.GattCharacteristic1'>"
	"  <method name='ReadValue'><arg name='options' type='a{sv}' direction='in'/>"
	"   <arg name='value' type='ay' direction='out'/></method>"
	"  <method name='WriteValue'><arg name='value' type='ay' direction='in'/>"
	"   <arg name='options' type='a{sv}' direction='in'/></method>"
	"  <method name='AcquireWrite'><arg name='options' type='a{sv}' direction='in'/>"
	"   <arg name='fd' type='h' direction='out'/><arg name='mtu' type='q' direction='out'/></method>"
	"  <method name='AcquireNotify'><arg name='options' type='a{sv}' direction='in'/>"
	"   <arg name='fd' type='h' direction='out'/><arg name='mtu' type='q' direction='out'/></method>"
	"  <method name='StartNotify'/>"
	"  <method name='StopNotify'/>"
	"  <method name='Confirm'/>"
	"  <property name='UUID' type='s' access='read'/>"
	"  <property name='Service' type='o' access='read'/>"
	"  <property name='Flags' type='as' access='read'/>"
	"  <property name='Value' type='ay' access='read'/>"
	"  <property name='Notifying' type='b' access='read'/>"
	"  <property name='WriteAcquired' type='b' access='read'/>"
	"  <property name='NotifyAcquired' type='b' access='read'/>"
	" </interface>"
	" <interface name='org.bluez.LEAdvertisement1'>"
	"  <method name='Release'/>"
	"  <property name='Type' type='s' access='read'/>"
	"  <property name='ServiceUUIDs' type='as' access='read'/>"
	"  <property name='LocalName' type='s' access='read'/>"
	"  <property name='Discoverable' type='b' access='read'/>"
	" </interface>"
	"</node>";

typedef struct {
	GMainLoop *loop;
	GDBusConnection *bus;
	GDBusNodeInfo *node;
	char *adapter_path;
	char *name;
	char *manufacturer;
	char *model;
	guint reboot_seconds;
	gboolean address_change;
	gboolean no_acquire; /* hide WriteAcquired/NotifyAcquired */
	BgsClock *clock;
	BgsSmpServer *server;
	BgsWearableBulk *bulk; /* NULL: no RFCOMM server */
	char *bluez_owner;

	GArray *reg_ids;     /* guint object registrations */
	guint bluez_watch;
	gboolean bluez_up;
	gboolean registered; /* RegisterApplication succeeded */
	gboolean rebooting;
	guint reboot_timer;
	int exit_code;

	guint8 battery;
	gboolean battery_notifying;
	gboolean smp_notifying;
	guint16 mtu;
	int write_fd;        /* our end of AcquireWrite */
	GSource *write_src;
	int notify_fd;       /* our end of AcquireNotify */
	GSource *notify_src;
	char *write_device;  /* the central of the last WriteValue */
	guint conn_sub;      /* Device1 PropertiesChanged on our adapter */
	guint power_sub;     /* Adapter1 PropertiesChanged of our adapter */
	gboolean power_cycled; /* our adapter went off since the advert was registered */
} Wearable;

static void register_app (Wearable *w);

/* values */

static GBytes *
chrc_value (Wearable *w, ChrcKind kind)
{
	switch (kind) {
	case CHRC_MANUFACTURER:
		return g_bytes_new (w->manufacturer, strlen (w->manufacturer));
	case CHRC_MODEL:
		return g_bytes_new (w->model, strlen (w->model));
	case CHRC_PNP: {
		const guint8 pnp[7] = {
			0x01,
			PNP_VENDOR & 0xff, PNP_VENDOR >> 8,
			PNP_PRODUCT & 0xff, PNP_PRODUCT >> 8,
			PNP_VERSION & 0xff, PNP_VERSION >> 8,
		};

		return g_bytes_new (pnp, sizeof (pnp));
	}
	case CHRC_FIRMWARE: {
		BgsSmpImageInfo info;
		g_autofree char *ver = NULL;

		if (!bgs_smp_server_get_running (w->server, &info))
			return g_bytes_new ("none", 4);
		ver = bgs_smp_image_version_string (&info);
		return g_bytes_new (ver, strlen (ver));
	}
	case CHRC_BATTERY:
		return g_bytes_new (&w->battery, 1);
	case CHRC_SMP:
	default:
		return g_bytes_new (NULL, 0);
	}
}

static GVariant *
bytes_variant (GBytes *b)
{
	return g_variant_new_fixed_array (G_VARIANT_TYPE_BYTE, g_bytes_get_data (b, NULL),
					  g_bytes_get_size (b), 1);
}

static GVariant *
chrc_property (Wearable *w, ChrcKind kind, const char *name)
{
	const ChrcDesc *d = &chrcs[kind];

	if (g_strcmp0 (name, "UUID") == 0)
		return g_variant_new_string (d->uuid);
	if (g_strcmp0 (name, "Service") == 0)
		return g_variant_new_object_path (d->service);
	if (g_strcmp0 (name, "Flags") == 0)
		return g_variant_new_strv (d->flags, -1);
	if (g_strcmp0 (name, "Value") == 0) {
		g_autoptr(GBytes) v = chrc_value (w, kind);

		return bytes_variant (v);
	}
	if (g_strcmp0 (name, "Notifying") == 0)
		return g_variant_new_boolean (kind == CHRC_BATTERY ? w->battery_notifying :
					      kind == CHRC_SMP ? w->smp_notifying : FALSE);
	if (g_str_has_suffix (name, "Acquired") && (kind != CHRC_SMP || w->no_acquire))
		return NULL;
	if (g_strcmp0 (name, "WriteAcquired") == 0)
		return g_variant_new_boolean (kind == CHRC_SMP && w->write_fd >= 0);
	if (g_strcmp0 (name, "NotifyAcquired") == 0)
		return g_variant_new_boolean (kind == CHRC_SMP && w->notify_fd >= 0);
	return NULL;
}

static GVariant *
chrc_properties (Wearable *w, ChrcKind kind)
{
	static const char *names[] = { "UUID", "Service", "Flags", "Value", "Notifying",
				       "WriteAcquired", "NotifyAcquired" };
	GVariantBuilder b;

	g_variant_builder_init (&b, G_VARIANT_TYPE ("a{sv}"));
	for (guint i = 0; i < G_N_ELEMENTS (names); i++) {
		/* for a server, the presence of these properties tells
		 * bluetoothd that AcquireWrite/AcquireNotify are supported */
		if ((kind != CHRC_SMP || w->no_acquire) && g_str_has_suffix (names[i], "Acquired"))
			continue;
		g_variant_builder_add (&b, "{sv}", names[i], chrc_property (w, kind, names[i]));
	}
	return g_variant_builder_end (&b);
}

static void
emit_chrc_changed (Wearable *w, ChrcKind kind, const char *prop)
{
	GVariantBuilder b;

	if (w->bus == NULL)
		return;
	g_variant_builder_init (&b, G_VARIANT_TYPE ("a{sv}"));
	g_variant_builder_add (&b, "{sv}", prop, chrc_property (w, kind, prop));
	g_dbus_connection_emit_signal (w->bus, NULL, chrcs[kind].path,
				       "org.freedesktop.DBus.Properties", "PropertiesChanged",
				       g_variant_new ("(sa{sv}as)", "org.bluez.GattCharacteristic1", &b, NULL),
				       NULL);
}

/* SMP transport: notifications through the acquired socket if any, else
 * as Value changes (bluetoothd turns those into notifications) */

static gboolean
smp_send (const guint8 *data, gsize len, gpointer user_data, GError **error)
{
	Wearable *w = user_data;
	GVariantBuilder b;

	if (w->notify_fd >= 0) {
		for (;;) {
			ssize_t n = send (w->notify_fd, data, len, MSG_NOSIGNAL);

			if (n >= 0)
				return TRUE;
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN) {
				/* the link is slower than us: wait for room, bounded */
				fd_set set;
				struct timeval tv = { .tv_sec = 2 };

				FD_ZERO (&set);
				FD_SET (w->notify_fd, &set);
				if (select (w->notify_fd + 1, NULL, &set, NULL, &tv) > 0)
					continue;
			}
			g_set_error (error, BGS_ERROR, BGS_ERROR_IO, "notify socket: %s", g_strerror (errno));
			return FALSE;
		}
	}
	if (!w->smp_notifying || w->bus == NULL) {
		g_set_error_literal (error, BGS_ERROR, BGS_ERROR_IO, "nobody subscribed to SMP notifications");
		return FALSE;
	}
	g_variant_builder_init (&b, G_VARIANT_TYPE ("a{sv}"));
	g_variant_builder_add (&b, "{sv}", "Value",
			       g_variant_new_fixed_array (G_VARIANT_TYPE_BYTE, data, len, 1));
	return g_dbus_connection_emit_signal (w->bus, NULL, chrcs[CHRC_SMP].path,
					      "org.freedesktop.DBus.Properties", "PropertiesChanged",
					      g_variant_new ("(sa{sv}as)", "org.bluez.GattCharacteristic1", &b, NULL),
					      error);
}

static void
update_mtu (Wearable *w, GVariant *options)
{
	guint16 mtu = 0;

	/* every write carries the MTU; re-applying it would drop a request
	 * half reassembled from several writes */
	if (options != NULL && g_variant_lookup (options, "mtu", "q", &mtu) && mtu >= 23 &&
	    mtu != w->mtu) {
		w->mtu = mtu;
		bgs_smp_server_set_transport (w->server, w->mtu, smp_send, w);
	}
}

static void
close_write (Wearable *w)
{
	if (w->write_src != NULL) {
		g_source_destroy (w->write_src);
		g_clear_pointer (&w->write_src, g_source_unref);
	}
	if (w->write_fd >= 0) {
		close (w->write_fd);
		w->write_fd = -1;
		emit_chrc_changed (w, CHRC_SMP, "WriteAcquired");
		/* the socket was the link: a request cut with it is gone */
		bgs_smp_server_reset_link (w->server);
	}
}

static void
close_notify (Wearable *w)
{
	if (w->notify_src != NULL) {
		g_source_destroy (w->notify_src);
		g_clear_pointer (&w->notify_src, g_source_unref);
	}
	if (w->notify_fd >= 0) {
		close (w->notify_fd);
		w->notify_fd = -1;
		emit_chrc_changed (w, CHRC_SMP, "NotifyAcquired");
	}
}

static gboolean
on_write_fd (gint fd, GIOCondition cond, gpointer user_data)
{
	Wearable *w = user_data;
	guint8 buf[1024];
	ssize_t n = read (fd, buf, sizeof (buf));

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return G_SOURCE_CONTINUE;
	if (n <= 0) {
		g_debug ("AcquireWrite socket closed");
		g_clear_pointer (&w->write_src, g_source_unref);
		close_write (w);
		return G_SOURCE_REMOVE;
	}
	bgs_smp_server_receive (w->server, buf, (gsize) n);
	return G_SOURCE_CONTINUE;
}

static gboolean
on_notify_fd (gint fd, GIOCondition cond, gpointer user_data)
{
	Wearable *w = user_data;

	/* the central side only ever closes this one */
	g_debug ("AcquireNotify socket closed");
	g_clear_pointer (&w->notify_src, g_source_unref);
	close_notify (w);
	return G_SOURCE_REMOVE;
}

static void
return_fd (GDBusMethodInvocation *inv, int fd, guint16 mtu)
{
	g_autoptr(GUnixFDList) list = g_unix_fd_list_new ();
	g_autoptr(GError) error = NULL;
	int idx = g_unix_fd_list_append (list, fd, &error);

	close (fd);
	if (idx < 0) {
		g_dbus_method_invocation_return_dbus_error (inv, "org.bluez.Error.Failed", error->message);
		return;
	}
	g_dbus_method_invocation_return_value_with_unix_fd_list (inv, g_variant_new ("(hq)", idx, mtu), list);
}

static gboolean
make_pair (int sv[2], GDBusMethodInvocation *inv)
{
	if (socketpair (AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) < 0) {
		g_dbus_method_invocation_return_dbus_error (inv, "org.bluez.Error.Failed", g_strerror (errno));
		return FALSE;
	}
	return TRUE;
}

static void
handle_chrc_call (Wearable *w, ChrcKind kind, const char *method, GVariant *params,
		  GDBusMethodInvocation *inv)
{
	if (g_strcmp0 (method, "ReadValue") == 0) {
		g_autoptr(GVariant) options = g_variant_get_child_value (params, 0);
		g_autoptr(GBytes) v = chrc_value (w, kind);
		guint16 off = 0;
		gsize len = g_bytes_get_size (v);

		g_variant_lookup (options, "offset", "q", &off);
		if (off > len) {
			g_dbus_method_invocation_return_dbus_error (inv, "org.bluez.Error.InvalidOffset",
								    "offset past the value");
			return;
		}
		g_dbus_method_invocation_return_value (inv, g_variant_new ("(@ay)",
			g_variant_new_fixed_array (G_VARIANT_TYPE_BYTE,
						   (const guint8 *) g_bytes_get_data (v, NULL) + off,
						   len - off, 1)));
		return;
	}
	if (kind != CHRC_SMP && kind != CHRC_BATTERY) {
		g_dbus_method_invocation_return_dbus_error (inv, "org.bluez.Error.NotSupported",
							    "read-only characteristic");
		return;
	}
	if (g_strcmp0 (method, "StartNotify") == 0 || g_strcmp0 (method, "StopNotify") == 0) {
		gboolean on = g_strcmp0 (method, "StartNotify") == 0;

		if (kind == CHRC_BATTERY)
			w->battery_notifying = on;
		else
			w->smp_notifying = on;
		g_dbus_method_invocation_return_value (inv, NULL);
		emit_chrc_changed (w, kind, "Notifying");
		return;
	}
	if (g_strcmp0 (method, "Confirm") == 0) {
		g_dbus_method_invocation_return_value (inv, NULL);
		return;
	}
	if (kind != CHRC_SMP) {
		g_dbus_method_invocation_return_dbus_error (inv, "org.bluez.Error.NotSupported",
							    "not writable");
		return;
	}
	if (g_strcmp0 (method, "WriteValue") == 0) {
		g_autoptr(GVariant) value = g_variant_get_child_value (params, 0);
		g_autoptr(GVariant) options = g_variant_get_child_value (params, 1);
		gsize n = 0;
		const guint8 *data = g_variant_get_fixed_array (value, &n, 1);
		const char *device = NULL;

		update_mtu (w, options);
		/* another central writing: a new session, not a continuation */
		if (g_variant_lookup (options, "device", "&o", &device) &&
		    g_strcmp0 (device, w->write_device) != 0) {
			bgs_smp_server_reset_link (w->server);
			g_free (w->write_device);
			w->write_device = g_strdup (device);
		}
		/* answer first: the response notifications follow the write */
		g_dbus_method_invocation_return_value (inv, NULL);
		bgs_smp_server_receive (w->server, data, n);
		return;
	}
	if (g_strcmp0 (method, "AcquireWrite") == 0) {
		g_autoptr(GVariant) options = g_variant_get_child_value (params, 0);
		int sv[2];

		if (w->write_fd >= 0) {
			g_dbus_method_invocation_return_dbus_error (inv, "org.bluez.Error.NotPermitted",
								    "write already acquired");
			return;
		}
		if (!make_pair (sv, inv))
			return;
		update_mtu (w, options);
		bgs_smp_server_reset_link (w->server);
		w->write_fd = sv[0];
		w->write_src = g_unix_fd_source_new (sv[0], G_IO_IN | G_IO_HUP | G_IO_ERR);
		g_source_set_callback (w->write_src, (GSourceFunc) (void (*) (void)) on_write_fd, w, NULL);
		g_source_attach (w->write_src, NULL);
		return_fd (inv, sv[1], w->mtu);
		emit_chrc_changed (w, CHRC_SMP, "WriteAcquired");
		return;
	}
	if (g_strcmp0 (method, "AcquireNotify") == 0) {
		g_autoptr(GVariant) options = g_variant_get_child_value (params, 0);
		int sv[2];

		if (w->notify_fd >= 0) {
			g_dbus_method_invocation_return_dbus_error (inv, "org.bluez.Error.NotPermitted",
								    "notify already acquired");
			return;
		}
		if (!make_pair (sv, inv))
			return;
		update_mtu (w, options);
		w->notify_fd = sv[0];
		w->notify_src = g_unix_fd_source_new (sv[0], G_IO_HUP | G_IO_ERR);
		g_source_set_callback (w->notify_src, (GSourceFunc) (void (*) (void)) on_notify_fd, w, NULL);
		g_source_attach (w->notify_src, NULL);
		return_fd (inv, sv[1], w->mtu);
		emit_chrc_changed (w, CHRC_SMP, "NotifyAcquired");
		return;
	}
	g_dbus_method_invocation_return_dbus_error (inv, "org.bluez.Error.NotSupported", method);
}

/* objects */

static GVariant *
service_properties (guint i)
{
	GVariantBuilder b;

	g_variant_builder_init (&b, G_VARIANT_TYPE ("a{sv}"));
	g_variant_builder_add (&b, "{sv}", "UUID", g_variant_new_string (services[i].uuid));
	g_variant_builder_add (&b, "{sv}", "Primary", g_variant_new_boolean (TRUE));
	return g_variant_builder_end (&b);
}

static GVariant *
adv_properties (Wearable *w)
{
	GVariantBuilder b;
	const char *uuids[] = { SMP_SERVICE_UUID, NULL };

	g_variant_builder_init (&b, G_VARIANT_TYPE ("a{sv}"));
	g_variant_builder_add (&b, "{sv}", "Type", g_variant_new_string ("peripheral"));
	g_variant_builder_add (&b, "{sv}", "ServiceUUIDs", g_variant_new_strv (uuids, -1));
	g_variant_builder_add (&b, "{sv}", "LocalName", g_variant_new_string (w->name));
	g_variant_builder_add (&b, "{sv}", "Discoverable", g_variant_new_boolean (TRUE));
	return g_variant_builder_end (&b);
}

static void
handle_call (GDBusConnection *conn, const char *sender, const char *path, const char *iface,
	     const char *method, GVariant *params, GDBusMethodInvocation *inv, gpointer user_data)
{
	Wearable *w = user_data;

	if (g_strcmp0 (iface, "org.freedesktop.DBus.ObjectManager") == 0) {
		GVariantBuilder objs;

		g_variant_builder_init (&objs, G_VARIANT_TYPE ("a{oa{sa{sv}}}"));
		for (guint i = 0; i < G_N_ELEMENTS (services); i++) {
			GVariantBuilder ifs;

			g_variant_builder_init (&ifs, G_VARIANT_TYPE ("a{sa{sv}}"));
			g_variant_builder_add (&ifs, "{s@a{sv}}", "org.bluez.GattService1", service_properties (i));
			g_variant_builder_add (&objs, "{oa{sa{sv}}}", services[i].path, &ifs);
		}
		for (guint k = 0; k < N_CHRC; k++) {
			GVariantBuilder ifs;

			g_variant_builder_init (&ifs, G_VARIANT_TYPE ("a{sa{sv}}"));
			g_variant_builder_add (&ifs, "{s@a{sv}}", "org.bluez.GattCharacteristic1",
					       chrc_properties (w, k));
			g_variant_builder_add (&objs, "{oa{sa{sv}}}", chrcs[k].path, &ifs);
		}
		g_dbus_method_invocation_return_value (inv, g_variant_new ("(a{oa{sa{sv}}})", &objs));
		return;
	}
	if (g_strcmp0 (iface, "org.bluez.LEAdvertisement1") == 0) {
		g_info ("advertisement released by bluetoothd");
		g_dbus_method_invocation_return_value (inv, NULL);
		return;
	}
	for (guint k = 0; k < N_CHRC; k++) {
		if (g_strcmp0 (path, chrcs[k].path) == 0) {
			handle_chrc_call (w, k, method, params, inv);
			return;
		}
	}
	g_dbus_method_invocation_return_dbus_error (inv, "org.bluez.Error.Failed", "no such object");
}

static GVariant *
handle_get (GDBusConnection *conn, const char *sender, const char *path, const char *iface,
	    const char *prop, GError **error, gpointer user_data)
{
	Wearable *w = user_data;
	GVariant *v = NULL;

	if (g_strcmp0 (iface, "org.bluez.GattService1") == 0) {
		for (guint i = 0; i < G_N_ELEMENTS (services); i++) {
			if (g_strcmp0 (path, services[i].path) == 0) {
				g_autoptr(GVariant) all = service_properties (i);

				v = g_variant_lookup_value (all, prop, NULL);
			}
		}
	} else if (g_strcmp0 (iface, "org.bluez.LEAdvertisement1") == 0) {
		g_autoptr(GVariant) all = g_variant_ref_sink (adv_properties (w));

		v = g_variant_lookup_value (all, prop, NULL);
	} else {
		for (guint k = 0; k < N_CHRC; k++) {
			if (g_strcmp0 (path, chrcs[k].path) == 0)
				v = chrc_property (w, k, prop);
		}
	}
	if (v == NULL)
		g_set_error (error, G_DBUS_ERROR, G_DBUS_ERROR_UNKNOWN_PROPERTY, "no property %s", prop);
	return v;
}

static const GDBusInterfaceVTable vtable = { handle_call, handle_get, NULL, { 0 } };

static gboolean
export_objects (Wearable *w, GError **error)
{
	struct {
		const char *path;
		const char *iface;
	} objs[16];
	guint n = 0;

	objs[n].path = APP_ROOT;
	objs[n++].iface = "org.freedesktop.DBus.ObjectManager";
	for (guint i = 0; i < G_N_ELEMENTS (services); i++) {
		objs[n].path = services[i].path;
		objs[n++].iface = "org.bluez.GattService1";
	}
	for (guint k = 0; k < N_CHRC; k++) {
		objs[n].path = chrcs[k].path;
		objs[n++].iface = "org.bluez.GattCharacteristic1";
	}
	objs[n].path = ADV_PATH;
	objs[n++].iface = "org.bluez.LEAdvertisement1";
	for (guint i = 0; i < n; i++) {
		GDBusInterfaceInfo *info = g_dbus_node_info_lookup_interface (w->node, objs[i].iface);
		guint id = g_dbus_connection_register_object (w->bus, objs[i].path, info, &vtable, w,
							      NULL, error);

		if (id == 0)
			return FALSE;
		g_array_append_val (w->reg_ids, id);
	}
	return TRUE;
}

/* a central connecting or leaving starts a new SMP connection: the
 * AcquireWrite socket and WriteValue calls may outlive the link */
static void
on_device_changed (GDBusConnection *conn, const char *sender, const char *path,
		   const char *iface, const char *signal, GVariant *params, gpointer user_data)
{
	Wearable *w = user_data;
	g_autoptr(GVariant) changed = NULL;
	const char *which = NULL;
	gboolean connected;

	if (!g_variant_is_of_type (params, G_VARIANT_TYPE ("(sa{sv}as)")))
		return;
	g_variant_get (params, "(&s@a{sv}@as)", &which, &changed, NULL);
	/* only centrals on our own adapter */
	if (!g_str_has_prefix (path, w->adapter_path) || path[strlen (w->adapter_path)] != '/' ||
	    g_strcmp0 (which, "org.bluez.Device1") != 0 ||
	    !g_variant_lookup (changed, "Connected", "b", &connected))
		return;
	g_debug ("%s %s", path, connected ? "connected" : "disconnected");
	bgs_smp_server_reset_link (w->server);
	g_clear_pointer (&w->write_device, g_free);
}

/* registration with bluetoothd */

static void adv_registered (GObject *source, GAsyncResult *res, gpointer user_data);

static void
adv_unregistered_for_power (GObject *source, GAsyncResult *res, gpointer user_data)
{
	Wearable *w = user_data;
	g_autoptr(GError) error = NULL;
	g_autoptr(GVariant) r = g_dbus_connection_call_finish (G_DBUS_CONNECTION (source), res, &error);

	if (r == NULL)
		g_debug ("UnregisterAdvertisement after power on: %s", error->message);
	if (!w->registered || !w->bluez_up || w->rebooting)
		return;
	g_dbus_connection_call (w->bus, BLUEZ, w->adapter_path, "org.bluez.LEAdvertisingManager1",
				"RegisterAdvertisement", g_variant_new ("(oa{sv})", ADV_PATH, NULL),
				NULL, G_DBUS_CALL_FLAGS_NONE, 10000, NULL, adv_registered, w);
}

/* bluetoothd 5.66 keeps an advert registered over an adapter power-off but
 * does not put it back on the air at power on (registering again says
 * AlreadyExists): like a device coming back into range, advertise anew */
static void
on_adapter_changed (GDBusConnection *conn, const char *sender, const char *path,
		    const char *iface, const char *signal, GVariant *params, gpointer user_data)
{
	Wearable *w = user_data;
	g_autoptr(GVariant) changed = NULL;
	const char *which = NULL;
	gboolean powered;

	if (!g_variant_is_of_type (params, G_VARIANT_TYPE ("(sa{sv}as)")))
		return;
	g_variant_get (params, "(&s@a{sv}@as)", &which, &changed, NULL);
	if (g_strcmp0 (path, w->adapter_path) != 0 || g_strcmp0 (which, "org.bluez.Adapter1") != 0 ||
	    !g_variant_lookup (changed, "Powered", "b", &powered))
		return;
	if (!powered) {
		w->power_cycled = TRUE;
		return;
	}
	if (!w->power_cycled || !w->registered || !w->bluez_up || w->rebooting)
		return;
	w->power_cycled = FALSE;
	g_info ("%s powered on again: advertising anew", w->adapter_path);
	g_dbus_connection_call (w->bus, BLUEZ, w->adapter_path, "org.bluez.LEAdvertisingManager1",
				"UnregisterAdvertisement", g_variant_new ("(o)", ADV_PATH),
				NULL, G_DBUS_CALL_FLAGS_NONE, 5000, NULL, adv_unregistered_for_power, w);
}

static void
adv_registered (GObject *source, GAsyncResult *res, gpointer user_data)
{
	Wearable *w = user_data;
	g_autoptr(GError) error = NULL;
	g_autoptr(GVariant) r = g_dbus_connection_call_finish (G_DBUS_CONNECTION (source), res, &error);

	if (r == NULL) {
		g_warning ("RegisterAdvertisement: %s", error->message);
	} else {
		w->power_cycled = FALSE;
		g_info ("advertising as \"%s\"", w->name);
	}
}

static void
app_registered (GObject *source, GAsyncResult *res, gpointer user_data)
{
	Wearable *w = user_data;
	g_autoptr(GError) error = NULL;
	g_autoptr(GVariant) r = g_dbus_connection_call_finish (G_DBUS_CONNECTION (source), res, &error);

	if (r == NULL) {
		g_warning ("RegisterApplication on %s: %s", w->adapter_path, error->message);
		return;
	}
	w->registered = TRUE;
	g_info ("GATT application registered on %s", w->adapter_path);
	g_dbus_connection_call (w->bus, BLUEZ, w->adapter_path, "org.bluez.LEAdvertisingManager1",
				"RegisterAdvertisement", g_variant_new ("(oa{sv})", ADV_PATH, NULL),
				NULL, G_DBUS_CALL_FLAGS_NONE, 10000, NULL, adv_registered, w);
}

static void
power_done (GObject *source, GAsyncResult *res, gpointer user_data)
{
	Wearable *w = user_data;
	g_autoptr(GError) error = NULL;
	g_autoptr(GVariant) r = g_dbus_connection_call_finish (G_DBUS_CONNECTION (source), res, &error);

	if (r == NULL)
		g_warning ("powering %s: %s", w->adapter_path, error->message);
	g_dbus_connection_call (w->bus, BLUEZ, w->adapter_path, "org.bluez.GattManager1",
				"RegisterApplication", g_variant_new ("(oa{sv})", APP_ROOT, NULL),
				NULL, G_DBUS_CALL_FLAGS_NONE, 10000, NULL, app_registered, w);
}

static void
register_app (Wearable *w)
{
	if (!w->bluez_up || w->rebooting)
		return;
	if (w->bulk != NULL)
		bgs_wearable_bulk_register (w->bulk, w->bluez_owner);
	/* adapters may start powered off (btvirt does) */
	g_dbus_connection_call (w->bus, BLUEZ, w->adapter_path, "org.freedesktop.DBus.Properties", "Set",
				g_variant_new ("(ssv)", "org.bluez.Adapter1", "Powered",
					       g_variant_new_boolean (TRUE)),
				NULL, G_DBUS_CALL_FLAGS_NONE, 10000, NULL, power_done, w);
}

static void
unregister_app (Wearable *w)
{
	close_write (w);
	close_notify (w);
	w->smp_notifying = FALSE;
	w->battery_notifying = FALSE;
	/* a reset drops the RFCOMM links too, and the server is gone meanwhile */
	if (w->bulk != NULL && w->bluez_up)
		bgs_wearable_bulk_unregister (w->bulk);
	if (!w->registered || !w->bluez_up)
		return;
	w->registered = FALSE;
	g_dbus_connection_call (w->bus, BLUEZ, w->adapter_path, "org.bluez.LEAdvertisingManager1",
				"UnregisterAdvertisement", g_variant_new ("(o)", ADV_PATH),
				NULL, G_DBUS_CALL_FLAGS_NONE, 5000, NULL, NULL, NULL);
	g_dbus_connection_call (w->bus, BLUEZ, w->adapter_path, "org.bluez.GattManager1",
				"UnregisterApplication", g_variant_new ("(o)", APP_ROOT),
				NULL, G_DBUS_CALL_FLAGS_NONE, 5000, NULL, NULL, NULL);
}

static void
on_bluez_appeared (GDBusConnection *conn, const char *name, const char *owner, gpointer user_data)
{
	Wearable *w = user_data;

	w->bluez_up = TRUE;
	g_free (w->bluez_owner);
	w->bluez_owner = g_strdup (owner);
	register_app (w);
}

static void
on_bluez_vanished (GDBusConnection *conn, const char *name, gpointer user_data)
{
	Wearable *w = user_data;

	if (w->bluez_up)
		g_info ("org.bluez went away; waiting for it");
	w->bluez_up = FALSE;
	w->registered = FALSE;
	close_write (w);
	close_notify (w);
	if (w->bulk != NULL)
		bgs_wearable_bulk_bluez_gone (w->bulk);
}

/* reset */

static void
reboot_done (gpointer user_data)
{
	Wearable *w = user_data;
	g_autoptr(GError) error = NULL;
	BgsSmpImageInfo info;

	w->reboot_timer = 0;
	if (!bgs_smp_server_boot (w->server, &error))
		g_warning ("boot: %s", error->message);
	if (bgs_smp_server_get_running (w->server, &info))
		g_info ("booted image %u.%u.%u", info.major, info.minor, info.revision);
	if (w->bulk != NULL)
		bgs_wearable_bulk_booted (w->bulk);
	/* lets a watcher see the reboot finish */
	emit_chrc_changed (w, CHRC_FIRMWARE, "Value");
	w->rebooting = FALSE;
	register_app (w);
}

static void
sim_reboot_done (GObject *source, GAsyncResult *res, gpointer user_data)
{
	Wearable *w = user_data;
	g_autoptr(GError) error = NULL;
	g_autoptr(GVariant) r = g_dbus_connection_call_finish (G_DBUS_CONNECTION (source), res, &error);

	if (r == NULL) {
		g_warning ("--address-change: the simulator refused (%s); address unchanged", error->message);
		return;
	}
	{
		const char *after = NULL;

		g_variant_get (r, "(&s)", &after);
		g_info ("coming back as %s", after);
	}
	/* the simulator keeps the device off the air now; registering again
	 * inside that window means it comes back complete, not half-way */
	if (w->reboot_timer != 0) {
		bgs_clock_remove (w->clock, w->reboot_timer);
		reboot_done (w);
	}
}

static void
address_got (GObject *source, GAsyncResult *res, gpointer user_data)
{
	Wearable *w = user_data;
	g_autoptr(GError) error = NULL;
	g_autoptr(GVariant) r = g_dbus_connection_call_finish (G_DBUS_CONNECTION (source), res, &error);
	g_autoptr(GVariant) v = NULL;

	if (r == NULL) {
		g_warning ("--address-change: cannot read the adapter address: %s", error->message);
		return;
	}
	g_variant_get (r, "(v)", &v);
	/* only bgsync-sim can move an adapter's address at runtime; on real
	 * bluetoothd that needs a mgmt static address change (see doc/wearable.md) */
	g_dbus_connection_call (w->bus, SIM_NAME, SIM_PATH, SIM_IFACE, "Reboot",
				g_variant_new ("(sdss)", g_variant_get_string (v, NULL),
					       (double) w->reboot_seconds, "+1", ""),
				G_VARIANT_TYPE ("(s)"), G_DBUS_CALL_FLAGS_NO_AUTO_START, 5000, NULL,
				sim_reboot_done, w);
}

/* a reset drops the link: disconnect every central on our adapter */
static void
objects_got (GObject *source, GAsyncResult *res, gpointer user_data)
{
	Wearable *w = user_data;
	g_autoptr(GError) error = NULL;
	g_autoptr(GVariant) r = g_dbus_connection_call_finish (G_DBUS_CONNECTION (source), res, &error);
	g_autoptr(GVariantIter) objs = NULL;
	g_autofree char *prefix = g_strconcat (w->adapter_path, "/", NULL);
	const char *path;
	GVariant *ifaces;

	if (r == NULL) {
		g_debug ("GetManagedObjects: %s", error->message);
		return;
	}
	g_variant_get (r, "(a{oa{sa{sv}}})", &objs);
	while (g_variant_iter_next (objs, "{&o@a{sa{sv}}}", &path, &ifaces)) {
		g_autoptr(GVariant) dev = g_variant_lookup_value (ifaces, "org.bluez.Device1", NULL);
		gboolean connected = FALSE;

		if (dev != NULL && g_str_has_prefix (path, prefix) &&
		    g_variant_lookup (dev, "Connected", "b", &connected) && connected) {
			g_debug ("reset: disconnecting %s", path);
			g_dbus_connection_call (w->bus, BLUEZ, path, "org.bluez.Device1", "Disconnect",
						NULL, NULL, G_DBUS_CALL_FLAGS_NONE, 5000, NULL, NULL, NULL);
		}
		g_variant_unref (ifaces);
	}
}

static void
on_reset (BgsSmpServer *server, gpointer user_data)
{
	Wearable *w = user_data;

	if (w->rebooting)
		return;
	g_info ("reset: off the air for %u s", w->reboot_seconds);
	w->rebooting = TRUE;
	if (w->address_change && w->bluez_up)
		g_dbus_connection_call (w->bus, BLUEZ, w->adapter_path, "org.freedesktop.DBus.Properties",
					"Get", g_variant_new ("(ss)", "org.bluez.Adapter1", "Address"),
					G_VARIANT_TYPE ("(v)"), G_DBUS_CALL_FLAGS_NONE, 5000, NULL,
					address_got, w);
	if (w->bluez_up)
		g_dbus_connection_call (w->bus, BLUEZ, "/", "org.freedesktop.DBus.ObjectManager",
					"GetManagedObjects", NULL, G_VARIANT_TYPE ("(a{oa{sa{sv}}})"),
					G_DBUS_CALL_FLAGS_NONE, 5000, NULL, objects_got, w);
	unregister_app (w);
	w->reboot_timer = bgs_clock_add_timeout (w->clock, (gint64) w->reboot_seconds * BGS_USEC_PER_SEC,
						 reboot_done, w);
}

/* the bulk service's RESET: the same reset as SMP's */
static void
on_bulk_reset (gpointer user_data)
{
	Wearable *w = user_data;

	on_reset (w->server, w);
}

/* a first image for an empty state directory (MCUboot format, 1.0.0) */
static gboolean
ensure_running_image (const char *state_dir, GError **error)
{
	g_autofree char *slot0 = g_build_filename (state_dir, "slot0.bin", NULL);
	GByteArray *a;
	guint8 hdr[32] = { 0 };
	guint8 digest[32];
	gsize dlen = sizeof (digest);
	g_autoptr(GChecksum) sum = g_checksum_new (G_CHECKSUM_SHA256);
	const guint32 body = 4096;
	guint8 tlv[8] = { 0x07, 0x69, 40, 0, 0x10, 0, 32, 0 };
	gboolean ok;

	if (g_file_test (slot0, G_FILE_TEST_EXISTS))
		return TRUE;
	hdr[0] = 0x3d; hdr[1] = 0xb8; hdr[2] = 0xf3; hdr[3] = 0x96; /* magic, LE */
	hdr[8] = 32;                                               /* hdr_size */
	hdr[12] = body & 0xff; hdr[13] = body >> 8;                /* img_size */
	hdr[20] = 1;                                               /* 1.0.0 */
	a = g_byte_array_new ();
	g_byte_array_append (a, hdr, sizeof (hdr));
	for (guint32 i = 0; i < body; i++) {
		guint8 b = (guint8) (i * 13);

		g_byte_array_append (a, &b, 1);
	}
	g_checksum_update (sum, a->data, a->len);
	g_checksum_get_digest (sum, digest, &dlen);
	g_byte_array_append (a, tlv, sizeof (tlv));
	g_byte_array_append (a, digest, sizeof (digest));
	ok = g_file_set_contents (slot0, (const char *) a->data, a->len, error);
	g_byte_array_unref (a);
	return ok;
}

static gboolean
on_signal (gpointer user_data)
{
	Wearable *w = user_data;

	g_main_loop_quit (w->loop);
	return G_SOURCE_CONTINUE;
}

int
main (int argc, char **argv)
{
	g_autofree char *bus_address = NULL;
	g_autofree char *adapter = NULL;
	g_autofree char *state_dir = NULL;
	g_autofree char *name = NULL;
	gint reboot_seconds = 3;
	gint64 stall_after = 0;
	gint erase_ms = 0;
	gboolean address_change = FALSE, reject = FALSE, no_confirm_revert = FALSE;
	gboolean revert_on_test = FALSE, verbose = FALSE, no_acquire = FALSE;
	gint battery = 87;
	gint rfcomm_channel = BGS_BULK_DEFAULT_CHANNEL;
	GOptionEntry entries[] = {
		{ "bus", 0, 0, G_OPTION_ARG_STRING, &bus_address, "D-Bus address (default: system bus)", "ADDRESS" },
		{ "adapter", 0, 0, G_OPTION_ARG_STRING, &adapter, "Adapter to serve on (default hci0)", "hciN" },
		{ "state-dir", 0, 0, G_OPTION_ARG_FILENAME, &state_dir, "Flash store and files to serve", "DIR" },
		{ "name", 0, 0, G_OPTION_ARG_STRING, &name, "Advertised name (default bgsync-wearable)", "NAME" },
		{ "reboot-seconds", 0, 0, G_OPTION_ARG_INT, &reboot_seconds, "Time off the air after a reset (default 3)", "N" },
		{ "address-change", 0, 0, G_OPTION_ARG_NONE, &address_change, "Come back at address+1 after a reset (bgsync-sim only)", NULL },
		{ "stall-after", 0, 0, G_OPTION_ARG_INT64, &stall_after, "Stop answering SMP after this many image bytes", "BYTES" },
		{ "reject-images", 0, 0, G_OPTION_ARG_NONE, &reject, "Refuse every image upload", NULL },
		{ "no-confirm-revert", 0, 0, G_OPTION_ARG_NONE, &no_confirm_revert, "Keep an unconfirmed test image on the next reset", NULL },
		{ "revert-on-test", 0, 0, G_OPTION_ARG_NONE, &revert_on_test, "Test images fail to boot: come back with the old image", NULL },
		{ "erase-ms", 0, 0, G_OPTION_ARG_INT, &erase_ms, "Slot erase time, answered with MGMT_ERR_EBUSY (default 0)", "MS" },
		{ "no-acquire", 0, 0, G_OPTION_ARG_NONE, &no_acquire, "Serve SMP through WriteValue/notify only, no AcquireWrite/AcquireNotify", NULL },
		{ "battery", 0, 0, G_OPTION_ARG_INT, &battery, "Battery level in percent (default 87)", "PCT" },
		{ "rfcomm-channel", 0, 0, G_OPTION_ARG_INT, &rfcomm_channel, "RFCOMM channel of the bulk service, 0 = none (default 11)", "N" },
		{ "verbose", 'v', 0, G_OPTION_ARG_NONE, &verbose, "Say what happens", NULL },
		{ NULL }
	};
	g_autoptr(GOptionContext) ctx = g_option_context_new ("- a virtual wearable for bgsync (BlueZ peripheral)");
	g_autoptr(GError) error = NULL;
	BgsSmpServerOptions opt = { 0 };
	Wearable w = { 0 };

	g_option_context_add_main_entries (ctx, entries, NULL);
	g_option_context_set_description (ctx,
		"Runs unchanged on bluetoothd and on bgsync-sim; see doc/wearable.md.");
	if (!g_option_context_parse (ctx, &argc, &argv, &error)) {
		g_printerr ("%s\n", error->message);
		return 2;
	}
	if (reboot_seconds < 0 || reboot_seconds > 3600 || battery < 0 || battery > 100 ||
	    stall_after < 0 || erase_ms < 0 || erase_ms > 600000 || rfcomm_channel < 0 ||
	    rfcomm_channel > 30) {
		g_printerr ("option out of range\n");
		return 2;
	}
	if (verbose)
		g_setenv ("G_MESSAGES_DEBUG", "bgsync-wearable bgsync-smp", FALSE);
	if (adapter == NULL)
		adapter = g_strdup ("hci0");
	if (strchr (adapter, '/') != NULL || !g_str_has_prefix (adapter, "hci")) {
		g_printerr ("--adapter takes a name like hci1\n");
		return 2;
	}
	if (state_dir == NULL) {
		const char *env = g_getenv ("STATE_DIRECTORY");

		state_dir = env != NULL ? g_strdup (env) :
			g_build_filename (g_get_user_state_dir (), "bgsync-wearable", NULL);
	}
	if (g_mkdir_with_parents (state_dir, 0700) < 0 || !ensure_running_image (state_dir, &error)) {
		g_printerr ("state directory %s: %s\n", state_dir,
			    error != NULL ? error->message : g_strerror (errno));
		return 1;
	}

	opt.reject_images = reject;
	opt.no_confirm_revert = no_confirm_revert;
	opt.revert_on_test = revert_on_test;
	opt.stall_after = (guint64) stall_after;
	opt.erase_usec = (gint64) erase_ms * 1000;
	w.clock = bgs_clock_new_real ();
	w.server = bgs_smp_server_new (w.clock, state_dir, &opt, &error);
	if (w.server == NULL || !bgs_smp_server_boot (w.server, &error)) {
		g_printerr ("%s\n", error->message);
		return 1;
	}
	w.adapter_path = g_strconcat ("/org/bluez/", adapter, NULL);
	w.name = g_strdup (name != NULL ? name : "bgsync-wearable");
	w.manufacturer = g_strdup ("bgsync project");
	w.model = g_strdup ("bgsync-wearable " PACKAGE_VERSION);
	w.reboot_seconds = (guint) reboot_seconds;
	w.address_change = address_change;
	w.no_acquire = no_acquire;
	w.battery = (guint8) battery;
	w.mtu = 23;
	w.write_fd = -1;
	w.notify_fd = -1;
	w.exit_code = 0;
	w.reg_ids = g_array_new (FALSE, FALSE, sizeof (guint));
	bgs_smp_server_set_transport (w.server, w.mtu, smp_send, &w);
	bgs_smp_server_set_reset_func (w.server, on_reset, &w);

	if (bus_address != NULL)
		w.bus = g_dbus_connection_new_for_address_sync (bus_address,
			G_DBUS_CONNECTION_FLAGS_AUTHENTICATION_CLIENT | G_DBUS_CONNECTION_FLAGS_MESSAGE_BUS_CONNECTION,
			NULL, NULL, &error);
	else
		w.bus = g_bus_get_sync (G_BUS_TYPE_SYSTEM, NULL, &error);
	if (w.bus == NULL) {
		g_printerr ("cannot connect to the bus: %s\n", error->message);
		return 1;
	}
	w.node = g_dbus_node_info_new_for_xml (introspection_xml, &error);
	g_assert (w.node != NULL);
	if (!export_objects (&w, &error)) {
		g_printerr ("cannot export objects: %s\n", error->message);
		return 1;
	}
	if (rfcomm_channel > 0) {
		w.bulk = bgs_wearable_bulk_new (w.bus, (guint) rfcomm_channel, on_bulk_reset, &w, &error);
		if (w.bulk == NULL) {
			g_printerr ("cannot export the RFCOMM profile: %s\n", error->message);
			return 1;
		}
	}
	w.loop = g_main_loop_new (NULL, FALSE);
	g_unix_signal_add (SIGINT, on_signal, &w);
	g_unix_signal_add (SIGTERM, on_signal, &w);
	w.conn_sub = g_dbus_connection_signal_subscribe (w.bus, BLUEZ, "org.freedesktop.DBus.Properties",
							"PropertiesChanged", NULL, "org.bluez.Device1",
							G_DBUS_SIGNAL_FLAGS_NONE, on_device_changed, &w, NULL);
	w.power_sub = g_dbus_connection_signal_subscribe (w.bus, BLUEZ, "org.freedesktop.DBus.Properties",
							 "PropertiesChanged", w.adapter_path, "org.bluez.Adapter1",
							 G_DBUS_SIGNAL_FLAGS_NONE, on_adapter_changed, &w, NULL);
	w.bluez_watch = g_bus_watch_name_on_connection (w.bus, BLUEZ, G_BUS_NAME_WATCHER_FLAGS_NONE,
						       on_bluez_appeared, on_bluez_vanished, &w, NULL);
	g_main_loop_run (w.loop);

	/* leave bluetoothd tidy */
	if (w.registered) {
		g_autoptr(GVariant) r1 = NULL;
		g_autoptr(GVariant) r2 = NULL;

		r1 = g_dbus_connection_call_sync (w.bus, BLUEZ, w.adapter_path, "org.bluez.LEAdvertisingManager1",
						  "UnregisterAdvertisement", g_variant_new ("(o)", ADV_PATH),
						  NULL, G_DBUS_CALL_FLAGS_NONE, 2000, NULL, NULL);
		r2 = g_dbus_connection_call_sync (w.bus, BLUEZ, w.adapter_path, "org.bluez.GattManager1",
						  "UnregisterApplication", g_variant_new ("(o)", APP_ROOT),
						  NULL, G_DBUS_CALL_FLAGS_NONE, 2000, NULL, NULL);
	}
	close_write (&w);
	close_notify (&w);
	g_clear_pointer (&w.bulk, bgs_wearable_bulk_free);
	g_bus_unwatch_name (w.bluez_watch);
	g_dbus_connection_signal_unsubscribe (w.bus, w.conn_sub);
	g_dbus_connection_signal_unsubscribe (w.bus, w.power_sub);
	g_free (w.write_device);
	for (guint i = 0; i < w.reg_ids->len; i++)
		g_dbus_connection_unregister_object (w.bus, g_array_index (w.reg_ids, guint, i));
	g_array_unref (w.reg_ids);
	if (w.reboot_timer != 0)
		bgs_clock_remove (w.clock, w.reboot_timer);
	bgs_smp_server_free (w.server);
	bgs_clock_unref (w.clock);
	g_dbus_node_info_unref (w.node);
	g_main_loop_unref (w.loop);
	g_object_unref (w.bus);
	g_free (w.adapter_path);
	g_free (w.name);
	g_free (w.manufacturer);
	g_free (w.model);
	g_free (w.bluez_owner);
	return w.exit_code;
}
