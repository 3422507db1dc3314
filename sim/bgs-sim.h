/* bgs-sim.h: bgsync-sim internals, a BlueZ (bluetoothd 5.66) look-alike
 * on D-Bus with a radio model and a control interface */
#pragma once

#include <gio/gio.h>
#include <gio/gunixfdlist.h>

G_BEGIN_DECLS

#define SIM_BLUEZ_NAME      "org.bluez"
#define SIM_CONTROL_NAME    "org.bgsync.Sim"
#define SIM_CONTROL_PATH    "/org/bgsync/sim"
#define SIM_CONTROL_IFACE   "org.bgsync.Sim1"

typedef struct _SimBus SimBus;
typedef struct _SimObject SimObject;
typedef struct _SimIface SimIface;
typedef struct _Sim Sim;
typedef struct _SimAdapter SimAdapter;
typedef struct _SimPeer SimPeer;
typedef struct _SimDevice SimDevice;
typedef struct _SimLink SimLink;
typedef struct _SimQueue SimQueue;
typedef struct _SimGattSvc SimGattSvc;
typedef struct _SimGattChrc SimGattChrc;
typedef struct _SimGattDesc SimGattDesc;
typedef struct _SimRChrc SimRChrc;
typedef struct _SimApp SimApp;
typedef struct _SimAdvert SimAdvert;
typedef struct _SimProfile SimProfile;
typedef struct _SimMonitorApp SimMonitorApp;

/* ---- bgs-sim-bus.c: exported objects, properties, ObjectManager ---- */

typedef void (*SimMethodFunc) (SimIface *iface,
			       const gchar *sender,
			       const gchar *method,
			       GVariant *params,
			       GDBusMethodInvocation *inv);
typedef gboolean (*SimSetFunc) (SimIface *iface,
				const gchar *prop,
				GVariant *value,
				GError **error);

struct _SimIface {
	SimObject *obj;
	GDBusInterfaceInfo *info;
	GHashTable *props;	/* name -> GVariant */
	SimMethodFunc method;
	SimSetFunc set;
	gpointer user_data;
	guint reg_id;
};

struct _SimObject {
	SimBus *bus;
	gchar *path;
	GPtrArray *ifaces;	/* SimIface, in order */
	gboolean exported;
	gboolean managed;	/* listed by the ObjectManager at / */
};

struct _SimBus {
	GDBusConnection *conn;
	GHashTable *objects;	/* path -> SimObject (exported and managed) */
	guint om_reg;
	gboolean online;	/* org.bluez objects registered */
};

GDBusInterfaceInfo *sim_iface_info (const gchar *name);
SimBus *sim_bus_new (GDBusConnection *conn);
void sim_bus_set_online (SimBus *bus, gboolean online);

SimObject *sim_object_new (SimBus *bus, const gchar *path, gboolean managed);
SimIface *sim_object_add_iface (SimObject *obj, const gchar *name,
				SimMethodFunc method, SimSetFunc set,
				gpointer user_data);
SimIface *sim_object_get_iface (SimObject *obj, const gchar *name);
void sim_object_remove_iface (SimObject *obj, const gchar *name);
void sim_object_export (SimObject *obj);
void sim_object_unexport (SimObject *obj);
void sim_object_free (SimObject *obj);

/* takes a floating/new ref of @value; emits PropertiesChanged if exported
 * and the value changed; NULL removes the property (invalidated) */
void sim_iface_set (SimIface *iface, const gchar *prop, GVariant *value);
GVariant *sim_iface_get (SimIface *iface, const gchar *prop);
/* emit a PropertiesChanged even when the value is unchanged (notifications) */
void sim_iface_set_force (SimIface *iface, const gchar *prop, GVariant *value);

void sim_return_error (GDBusMethodInvocation *inv, const gchar *name,
		       const gchar *fmt, ...) G_GNUC_PRINTF (3, 4);

/* ---- radio model ---- */

typedef enum {
	SIM_TYPE_LE,
	SIM_TYPE_BREDR,
	SIM_TYPE_DUAL,
} SimRadioType;

/* the server side of a GATT database, owned by a peer (built from a
 * description) or by a registered application (bridged) */
struct _SimGattSvc {
	gchar *uuid;
	gboolean primary;
	guint16 handle;
	GPtrArray *chrcs;	/* SimGattChrc */
	SimApp *app;		/* NULL: served by the simulator */
	gchar *app_path;
};

struct _SimGattChrc {
	SimGattSvc *svc;
	gchar *uuid;
	GStrv flags;
	guint16 handle;
	GBytes *value;
	GPtrArray *descs;	/* SimGattDesc */
	gchar *app_path;
	gboolean app_write_acquired;	/* app has a WriteAcquired property */
	gboolean app_notify_acquired;	/* app has a NotifyAcquired property */
	/* app side of notifications */
	guint subscribers;	/* SimRChrc subscribed over all links */
	gboolean app_notifying;
	gboolean app_notify_pending;	/* AcquireNotify call in flight */
	gint app_notify_fd;	/* our end of the pair given to the app */
	guint app_notify_src;
	guint64 write_count;	/* writes received, for tests */
	/* bluetoothd's write io: once the app handed a socket (AcquireWrite)
	 * every write to the characteristic goes there */
	gint app_write_fd;
	guint app_write_hup;
	gboolean app_write_pending;	/* AcquireWrite in flight */
	gboolean app_write_failed;	/* fall back to WriteValue */
};

struct _SimGattDesc {
	SimGattChrc *chrc;
	gchar *uuid;
	GStrv flags;
	guint16 handle;
	GBytes *value;
	gchar *app_path;
};

struct _SimPeer {
	Sim *sim;
	gchar *address;		/* over-the-air address */
	gchar *address_type;	/* public / random */
	gchar *name;
	gchar *modalias;
	SimRadioType type;
	GStrv uuids;
	GVariant *mfr_data;	/* a{qv} or NULL */
	GVariant *svc_data;	/* a{sv} or NULL */
	gint16 appearance;
	gint16 rssi;
	gint16 tx_power;
	gboolean in_range;
	gboolean advertising;	/* for sim devices: sends adverts */
	gboolean connectable;
	gboolean rebooting;
	guint reboot_id;
	gchar *reboot_address;
	gchar *reboot_name;
	guint64 rate;		/* bytes/s, 0 = unlimited */
	guint latency_ms;
	gboolean stalled;
	guint16 mtu;
	GPtrArray *services;	/* SimGattSvc served by the simulator */
	GStrv rfcomm_echo;	/* profile UUIDs the simulator answers with echo */
	SimAdapter *host;	/* the adapter this peer is, or NULL */
	guint db_generation;	/* bumped when its GATT database changes */
};

struct _SimAdapter {
	Sim *sim;
	guint index;
	gchar *path;
	gchar *address;
	gchar *name;
	gchar *alias;
	gboolean powered;
	gboolean discoverable;
	gboolean pairable;
	SimObject *obj;
	SimIface *iface;
	GHashTable *discovery;	/* sender -> SimDiscoveryClient */
	GHashTable *devices;	/* address -> SimDevice */
	SimPeer *peer;		/* this adapter as others see it */
	GPtrArray *apps;	/* SimApp */
	GPtrArray *adverts;	/* SimAdvert */
	GPtrArray *monitors;	/* SimMonitorApp */
};

struct _SimDevice {
	SimAdapter *adapter;
	gchar *address;
	gchar *path;
	SimObject *obj;
	SimIface *iface;
	gboolean paired;
	gboolean bonded;
	gboolean trusted;
	gboolean blocked;
	gboolean connected;
	gboolean temporary_removed;
	guint temp_id;
	SimLink *link;
	GPtrArray *gatt_objs;	/* SimObject of services/chrcs/descs */
	GPtrArray *rchrcs;	/* SimRChrc */
	SimPeer *gatt_peer;	/* whose database the objects show */
	guint gatt_generation;
	GPtrArray *pending;	/* GDBusMethodInvocation waiting for connect */
	guint connect_id;
	gchar *connect_profile;
	gchar *name;		/* last name seen */
	gchar *alias;		/* set by a client */
	GStrv uuids;
};

struct _SimQueue {
	SimLink *link;
	GQueue items;
	guint timer;
	gint64 tx_free;		/* when the air is free again, µs */
	gsize bytes;
	GArray *waiters;
	gboolean freeing;
	guint out_watch;	/* head blocked on a full socket */
	gboolean held;		/* head waits for a kick */
};

/* one connection between an adapter and a peer; both sides get a view */
struct _SimLink {
	Sim *sim;
	SimDevice *central;	/* view on the connecting adapter */
	SimDevice *remote;	/* view on the peer's adapter, if hosted */
	SimPeer *peer;
	guint16 mtu;
	SimQueue *up;		/* central -> peer */
	SimQueue *down;		/* peer -> central */
	guint supervision_id;
	GPtrArray *streams;	/* SimStream (profile connections) */
	gboolean dead;
};

/* the client side of a characteristic on a device view */
struct _SimRChrc {
	SimDevice *dev;
	SimGattChrc *chrc;
	SimObject *obj;
	SimIface *iface;
	GHashTable *notify_clients;	/* sender -> watch id */
	gint notify_fd;			/* our end, -1 */
	guint notify_hup;
	gint write_fd;			/* our end, -1 */
	guint write_src;
	guint16 write_mtu;		/* MTU given with the acquired write socket */
	gboolean counted;		/* in chrc->subscribers */
};

struct _SimApp {
	SimAdapter *adapter;
	gchar *owner;
	gchar *path;
	guint watch;
	guint sig_id;
	GPtrArray *services;	/* SimGattSvc */
};

struct _SimAdvert {
	SimAdapter *adapter;
	gchar *owner;
	gchar *path;
	guint watch;
	gchar *type;
	GStrv uuids;
	gchar *local_name;
	GVariant *mfr_data;
	GVariant *svc_data;
	gboolean include_tx_power;
	gboolean off_air;	/* registered, but its instance went with a power-off */
};

struct _SimProfile {
	Sim *sim;
	gchar *owner;
	gchar *path;
	gchar *uuid;
	gchar *role;		/* client, server or NULL (both) */
	gchar *record;
	guint16 channel;
	guint watch;
};

struct _Sim {
	SimBus *bus;
	GDBusConnection *conn;
	GMainLoop *loop;
	GPtrArray *adapters;	/* SimAdapter, index order */
	GHashTable *peers;	/* address -> SimPeer */
	GPtrArray *links;
	GPtrArray *profiles;	/* SimProfile */
	guint name_id;
	guint restart_id;
	gboolean bluez_up;
	SimIface *control;
	/* configuration */
	guint supervision_timeout_ms;
	guint connect_timeout_ms;
	guint temporary_timeout_ms;
	guint restart_delay_ms;
	guint att_timeout_ms;
	guint16 default_mtu;
	guint server_max_write;	/* longest value a server accepts (5.66: 510) */
	guint next_handle_seed;
};

/* bgs-sim.c */
Sim *sim_new (GDBusConnection *conn);
SimAdapter *sim_adapter_add (Sim *sim, const gchar *address, const gchar *name,
			     GError **error);
gboolean sim_adapter_remove (Sim *sim, const gchar *path, GError **error);
SimAdapter *sim_adapter_find (Sim *sim, const gchar *path_or_address);
SimPeer *sim_peer_find (Sim *sim, const gchar *address);
gboolean sim_peer_visible (SimPeer *peer);
void sim_peer_changed (SimPeer *peer);
void sim_peer_remove (SimPeer *peer);
void sim_peer_set_in_range (SimPeer *peer, gboolean in_range);
void sim_peer_reboot (SimPeer *peer, guint seconds, const gchar *new_address,
		      const gchar *new_name);
void sim_peer_drop_links (SimPeer *peer, const gchar *why);
void sim_restart_bluez (Sim *sim);
SimDevice *sim_device_ensure (SimAdapter *adapter, const gchar *address,
			      gboolean seen);
void sim_device_update_from_peer (SimDevice *dev, SimPeer *peer, gboolean seen);
void sim_device_maybe_remove (SimDevice *dev);
void sim_device_add_uuids (SimDevice *dev, const gchar *const *uuids);
void sim_device_read_pnp_id (SimDevice *dev, SimPeer *peer);
void sim_link_drop (SimLink *link, const gchar *why);
void sim_peer_collect_services (SimPeer *peer, GPtrArray *out);
gchar *sim_address_add (const gchar *address, gint delta);
gboolean sim_address_valid (const gchar *address);
GVariant *sim_peer_adv_mfr (SimPeer *peer);
GVariant *sim_peer_adv_svc (SimPeer *peer);
GStrv sim_peer_adv_uuids (SimPeer *peer);
const gchar *sim_peer_adv_name (SimPeer *peer);

/* bgs-sim-control.c */
void sim_control_register (Sim *sim);
SimPeer *sim_peer_new_from_desc (Sim *sim, GVariant *desc, GError **error);

/* bgs-sim-queue.c: rate, latency and stall applied to data */
typedef void (*SimItemFunc) (gpointer data);
/* returns -1 once it consumed @data, or an fd that must become writable
 * before it can be delivered (the queue holds everything behind it), or
 * SIM_QUEUE_HOLD: keep it first until sim_queue_kick() */
#define SIM_QUEUE_HOLD (-2)
typedef gint (*SimDeliverFunc) (gpointer data);
SimQueue *sim_queue_new (SimLink *link);
void sim_queue_free (SimQueue *q);
void sim_queue_shutdown (SimQueue *q);
void sim_queue_push (SimQueue *q, gsize size, SimDeliverFunc deliver,
		     SimItemFunc destroy, gpointer data);
void sim_queue_kick (SimQueue *q);
gboolean sim_queue_congested (SimQueue *q);
/* called once when a congested queue drains */
void sim_queue_wait (SimQueue *q, GSourceFunc func, gpointer data);
void sim_queue_unwait (SimQueue *q, gpointer data);
void sim_link_get_params (SimLink *link, guint64 *rate, guint *latency,
			  gboolean *stalled);
void sim_links_kick (Sim *sim);

/* bgs-sim-gatt.c */
SimGattSvc *sim_gatt_svc_new (const gchar *uuid, gboolean primary);
void sim_gatt_svc_free (SimGattSvc *svc);
SimGattChrc *sim_gatt_chrc_add (SimGattSvc *svc, const gchar *uuid,
				const gchar *const *flags, GBytes *value);
SimGattDesc *sim_gatt_desc_add (SimGattChrc *chrc, const gchar *uuid,
				const gchar *const *flags, GBytes *value);
void sim_gatt_assign_handles (GPtrArray *services);
void sim_gatt_resolve (SimDevice *dev);
void sim_gatt_clear (SimDevice *dev, gboolean keep_objects);
void sim_gatt_notify (SimPeer *peer, SimGattChrc *chrc, GBytes *value);
void sim_gatt_link_down (SimDevice *dev);
void sim_gatt_forget (Sim *sim, GPtrArray *services);
void sim_gatt_orphan_device (SimDevice *dev);
gboolean sim_flags_has (const gchar *const *flags, const gchar *flag);
/* faults: the MTU Acquire* report for a device (-1: the real one), and
 * closing its acquired sockets now */
void sim_gatt_set_acquire_mtu (const gchar *address, gint mtu);
void sim_gatt_set_acquire_error (const gchar *address, const gchar *error);
guint sim_gatt_close_acquired (Sim *sim, const gchar *address, gboolean notify, gboolean write);

/* bgs-sim-peripheral.c */
void sim_peripheral_add_ifaces (SimAdapter *adapter);
void sim_peripheral_adapter_down (SimAdapter *adapter);
void sim_peripheral_drop_apps (SimAdapter *adapter);
void sim_peripheral_refresh (SimPeer *peer);

/* bgs-sim-profile.c */
/* 16/32-bit or 128-bit UUID to lowercase 128-bit, NULL if invalid */
gchar *sim_uuid_normalize (const gchar *uuid);
void sim_profile_manager_register (Sim *sim, SimObject *root);
void sim_profile_connect (SimDevice *dev, const gchar *uuid,
			  GDBusMethodInvocation *inv);
gboolean sim_profile_disconnect (SimDevice *dev, const gchar *uuid,
				 GError **error);
void sim_profile_link_down (SimLink *link);
void sim_profile_release_all (Sim *sim);
gboolean sim_profile_has_remote (SimPeer *peer, const gchar *uuid);

/* bgs-sim-monitor.c */
void sim_monitor_add_iface (SimAdapter *adapter);
void sim_monitor_seen (SimAdapter *adapter, SimPeer *peer);
void sim_monitor_lost (SimAdapter *adapter, SimPeer *peer);
void sim_monitor_adapter_down (SimAdapter *adapter);
void sim_monitor_drop_all (SimAdapter *adapter);

G_END_DECLS
