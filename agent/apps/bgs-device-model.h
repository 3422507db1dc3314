/* bgs-device-model.h: device metadata ("models"): how a kind of device is
 * recognised, its presence thresholds, how it comes back after a reboot,
 * which apps are privileged for it, and parameters for its profiles.
 *
 * Format and matching order: doc/manifests.md. */
#pragma once

#include <gio/gio.h>

G_BEGIN_DECLS

/* what is known about one device; everything may be NULL / 0 */
typedef struct {
	const char *address;
	const char *name;
	const char *modalias;
	const char *const *uuids;           /* lower-case 128-bit strings (others are normalised) */
	GVariant *manufacturer_data;        /* a{qv} as BlueZ gives it (v holds ay), may be NULL */
	guint16 dis_vendor, dis_product;    /* from GATT DIS PnP ID, 0 if unknown */
	guint8 dis_vendor_source;           /* 1 bluetooth SIG, 2 USB-IF, 0 unknown */
	const char *dis_manufacturer;       /* DIS Manufacturer Name String, sanitised */
	const char *dis_model;              /* DIS Model Number String, sanitised */
} BgsDeviceFacts;

/* how specific a match is; a higher rank wins */
typedef enum {
	BGS_MATCH_NONE = 0,
	BGS_MATCH_NAME,              /* Name= glob only */
	BGS_MATCH_SERVICE_UUIDS,     /* ServiceUUIDs= */
	BGS_MATCH_MANUFACTURER_DATA, /* ManufacturerData= */
	BGS_MATCH_DIS_STRINGS,       /* DisManufacturer= or DisModel= */
	BGS_MATCH_VENDOR_PRODUCT,    /* Modalias= or Vendor=/Product= */
} BgsMatchRank;

typedef struct {
	gboolean has_found_rssi;
	gint found_rssi;       /* dBm: seen at or above this counts as present */
	gboolean has_lost_rssi;
	gint lost_rssi;        /* dBm: below this counts towards lost */
	guint found_timeout;   /* seconds, 0 = daemon default */
	guint lost_timeout;    /* seconds, 0 = daemon default */
} BgsPresenceParams;

typedef struct {
	gint address_delta;    /* the address after a reboot is address + delta, 0 = unknown */
	gboolean same_name;    /* it comes back with the same name */
} BgsReconnectParams;

typedef struct _BgsDeviceMatch BgsDeviceMatch;

/* immutable once parsed, reference counted (atomic) like BgsAppManifest */
typedef struct {
	char *id;                 /* [a-z0-9][a-z0-9-]* */
	char *name;               /* never NULL */
	char **privileged_apps;   /* app ids, never NULL */
	BgsPresenceParams presence;
	BgsReconnectParams reconnect;
	GHashTable *profiles;     /* profile name -> GHashTable (key -> value), never NULL */
	char *path;               /* file it came from */
	/* private */
	GPtrArray *matches;       /* BgsDeviceMatch */
} BgsDeviceModel;

/* parses one model file; NULL with BGS_ERROR_INVALID_ARGS when malformed,
 * BGS_ERROR_NOT_FOUND when it says [Model] Disabled=true */
BgsDeviceModel *bgs_device_model_parse (const char *data, gsize len, const char *origin,
					GError **error);
BgsDeviceModel *bgs_device_model_ref (const BgsDeviceModel *m);
void bgs_device_model_unref (BgsDeviceModel *m);

/* the rank of the best [Match] group of @m that @facts satisfy */
BgsMatchRank bgs_device_model_match (const BgsDeviceModel *m, const BgsDeviceFacts *facts);
gboolean bgs_device_model_is_privileged (const BgsDeviceModel *m, const char *app_id);
/* a [Profile <profile>] value, or NULL */
const char *bgs_device_model_get_param (const BgsDeviceModel *m, const char *profile,
					const char *key);

/* a stable id for a device no model matches; [a-z0-9-] only. Scheme, first
 * that applies: "pnp-<source>-<vendor>-<product>" (modalias, else DIS PnP
 * ID; source "bluetooth" or "usb"; 4 lower-case hex digits each; the device
 * version is left out, it changes with firmware updates), "dis-<h>" (DIS
 * manufacturer and model strings, "<manufacturer>\n<model>"), "name-<h>" (the
 * name), "uuids-<h>" (the sorted service UUIDs), "mfr-<id>[-<id>...]"
 * (manufacturer data company ids, sorted), "address-<address>" (only when
 * nothing else exists; random addresses change), "unknown". <h> is the first
 * 16 hex digits of the SHA-256 of the value. Never NULL; g_free. */
/* an advertisement pattern (BlueZ AdvertisementMonitor1 or_patterns):
 * AD structure @ad_type whose data holds @content at @start */
typedef struct {
	guint8 start;
	guint8 ad_type;
	GBytes *content;
} BgsAdvPattern;
void bgs_adv_pattern_free (BgsAdvPattern *p);
/* patterns that find the model's advertisements: service UUIDs (16- and
 * 128-bit lists), manufacturer data (company id + prefix) and name prefixes.
 * Modalias and vendor/product rules are not in advertisements and add
 * none. Element-type BgsAdvPattern, never NULL. */
GPtrArray *bgs_device_model_get_adv_patterns (const BgsDeviceModel *m);
/* TRUE when a [Match] group of @m can only be recognised in the air by its
 * Name= (no ServiceUUIDs=, no ManufacturerData=): a name is often only in
 * the scan response, which a passive scan (a monitor) never asks for */
gboolean bgs_device_model_needs_scan_response (const BgsDeviceModel *m);

char *bgs_device_model_fallback_id (const BgsDeviceFacts *facts);

/* 16- and 32-bit shorthands expanded to the Bluetooth base UUID, lower
 * case; NULL when @uuid is not a UUID */
char *bgs_uuid_normalize (const char *uuid);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (BgsDeviceModel, bgs_device_model_unref)

#define BGS_TYPE_MODEL_REGISTRY (bgs_model_registry_get_type ())
G_DECLARE_FINAL_TYPE (BgsModelRegistry, bgs_model_registry, BGS, MODEL_REGISTRY, GObject)

/* {datadir/bgsync/devices, sysconfdir/bgsync/devices} of this build */
const char *const *bgs_model_registry_default_dirs (void);
/* same loading, override, masking and watch rules as BgsAppRegistry
 * (a duplicate model Id in a later file name is skipped); "changed" too */
BgsModelRegistry *bgs_model_registry_new (const char *const *dirs, gboolean watch);
void bgs_model_registry_reload (BgsModelRegistry *self);
/* borrowed, valid until the next reload */
const BgsDeviceModel *bgs_model_registry_lookup (BgsModelRegistry *self, const char *id);
/* the model with the highest-ranked matching group; ties go to the file
 * name that sorts first. NULL when none matches. Borrowed. */
const BgsDeviceModel *bgs_model_registry_match (BgsModelRegistry *self,
						 const BgsDeviceFacts *facts);
/* a new array of refs, in file name order */
GPtrArray *bgs_model_registry_list (BgsModelRegistry *self);

G_END_DECLS
