/* bgs-device-model.c: device metadata (models) and their registry */
#include "config.h"

#include "bgs-device-model.h"

#include <stdlib.h>
#include <string.h>

#include "bgs-conf-files.h"
#include "bgs-error.h"

#define BLUETOOTH_BASE_UUID_SUFFIX "-0000-1000-8000-00805f9b34fb"
#define VENDOR_SOURCE_BLUETOOTH 1
#define VENDOR_SOURCE_USB 2

struct _BgsDeviceMatch {
	char *label;               /* group name, for messages */
	char *modalias;            /* upper-cased glob */
	gboolean has_vendor;
	gboolean has_product;
	guint16 vendor;
	guint16 product;
	guint8 vendor_source;
	char **uuids;              /* normalised, NULL when absent */
	gboolean has_mfr;
	guint16 company;
	GBytes *mfr_prefix;
	char *name_glob;
	char *dis_manufacturer_glob;
	char *dis_model_glob;
	BgsMatchRank rank;
};

static const char *const model_keys[] = { "Id", "Name", "PrivilegedApps", "Disabled", NULL };
static const char *const model_localized[] = { "Name", NULL };
static const char *const match_keys[] = {
	"Modalias", "Vendor", "Product", "VendorSource", "DisManufacturer", "DisModel",
	"ServiceUUIDs", "ManufacturerData", "Name", NULL
};
static const char *const presence_keys[] = {
	"FoundRSSI", "LostRSSI", "FoundTimeout", "LostTimeout", NULL
};
static const char *const reconnect_keys[] = { "AddressDelta", "SameName", NULL };

static void
match_free (BgsDeviceMatch *match)
{
	g_free (match->label);
	g_free (match->modalias);
	g_strfreev (match->uuids);
	g_clear_pointer (&match->mfr_prefix, g_bytes_unref);
	g_free (match->name_glob);
	g_free (match->dis_manufacturer_glob);
	g_free (match->dis_model_glob);
	g_free (match);
}

static void
model_clear (gpointer data)
{
	BgsDeviceModel *m = data;

	g_free (m->id);
	g_free (m->name);
	g_strfreev (m->privileged_apps);
	g_clear_pointer (&m->profiles, g_hash_table_unref);
	g_free (m->path);
	g_clear_pointer (&m->matches, g_ptr_array_unref);
}

BgsDeviceModel *
bgs_device_model_ref (const BgsDeviceModel *m)
{
	return g_atomic_rc_box_acquire ((BgsDeviceModel *) m);
}

void
bgs_device_model_unref (BgsDeviceModel *m)
{
	if (m != NULL)
		g_atomic_rc_box_release_full (m, model_clear);
}

/* helpers */

static gboolean
is_hex (const char *str, gsize len)
{
	for (gsize i = 0; i < len; i++) {
		if (!g_ascii_isxdigit (str[i]))
			return FALSE;
	}
	return TRUE;
}

char *
bgs_uuid_normalize (const char *uuid)
{
	g_autofree char *lower = NULL;
	gsize len;

	if (uuid == NULL)
		return NULL;
	lower = g_ascii_strdown (uuid, -1);
	g_strstrip (lower);
	if (g_str_has_prefix (lower, "0x"))
		memmove (lower, lower + 2, strlen (lower + 2) + 1);
	len = strlen (lower);
	if (len == 4 && is_hex (lower, 4))
		return g_strconcat ("0000", lower, BLUETOOTH_BASE_UUID_SUFFIX, NULL);
	if (len == 8 && is_hex (lower, 8))
		return g_strconcat (lower, BLUETOOTH_BASE_UUID_SUFFIX, NULL);
	if (len == 36 && g_uuid_string_is_valid (lower))
		return g_steal_pointer (&lower);
	return NULL;
}

static gboolean
parse_hex16 (const char *str, guint16 *out)
{
	guint64 value;
	const char *p = str;

	if (g_str_has_prefix (p, "0x") || g_str_has_prefix (p, "0X"))
		p += 2;
	if (*p == '\0' || strlen (p) > 4 || !is_hex (p, strlen (p)))
		return FALSE;
	value = g_ascii_strtoull (p, NULL, 16);
	*out = (guint16) value;
	return TRUE;
}

static GBytes *
parse_hex_bytes (const char *str)
{
	gsize len = strlen (str);
	g_autofree guint8 *buf = NULL;

	if (len % 2 != 0 || !is_hex (str, len))
		return NULL;
	buf = g_malloc (len / 2 + 1);
	for (gsize i = 0; i < len / 2; i++)
		buf[i] = (g_ascii_xdigit_value (str[2 * i]) << 4) |
			 g_ascii_xdigit_value (str[2 * i + 1]);
	return g_bytes_new (buf, len / 2);
}

/* "bluetooth:v05F1p5742d0001" -> source, vendor, product */
static gboolean
parse_modalias (const char *modalias, guint8 *source, guint16 *vendor, guint16 *product)
{
	const char *p;
	char buf[5];

	if (modalias == NULL)
		return FALSE;
	if (g_str_has_prefix (modalias, "bluetooth:")) {
		*source = VENDOR_SOURCE_BLUETOOTH;
		p = modalias + strlen ("bluetooth:");
	} else if (g_str_has_prefix (modalias, "usb:")) {
		*source = VENDOR_SOURCE_USB;
		p = modalias + strlen ("usb:");
	} else {
		return FALSE;
	}
	if (strlen (p) < 10 || (p[0] != 'v' && p[0] != 'V') || (p[5] != 'p' && p[5] != 'P') ||
	    !is_hex (p + 1, 4) || !is_hex (p + 6, 4))
		return FALSE;
	memcpy (buf, p + 1, 4);
	buf[4] = '\0';
	*vendor = (guint16) g_ascii_strtoull (buf, NULL, 16);
	memcpy (buf, p + 6, 4);
	*product = (guint16) g_ascii_strtoull (buf, NULL, 16);
	return TRUE;
}

/* parsing */

static gboolean
get_int_in_range (GKeyFile *kf, const char *group, const char *key, gint min, gint max,
		  gboolean *present, gint *out, const char *origin, GError **error)
{
	g_autoptr(GError) local = NULL;
	gint value;

	*present = FALSE;
	if (!g_key_file_has_key (kf, group, key, NULL))
		return TRUE;
	value = g_key_file_get_integer (kf, group, key, &local);
	if (local != NULL || value < min || value > max) {
		g_set_error (error, BGS_ERROR, BGS_ERROR_INVALID_ARGS,
			     "%s: [%s] %s: expected an integer from %d to %d", origin, group,
			     key, min, max);
		return FALSE;
	}
	*present = TRUE;
	*out = value;
	return TRUE;
}

static gboolean
get_bool (GKeyFile *kf, const char *group, const char *key, gboolean *out,
	  const char *origin, GError **error)
{
	g_autoptr(GError) local = NULL;
	gboolean value;

	if (!g_key_file_has_key (kf, group, key, NULL))
		return TRUE;
	value = g_key_file_get_boolean (kf, group, key, &local);
	if (local != NULL) {
		g_set_error (error, BGS_ERROR, BGS_ERROR_INVALID_ARGS, "%s: [%s] %s: %s", origin,
			     group, key, local->message);
		return FALSE;
	}
	*out = value;
	return TRUE;
}

/* a present, non-empty, stripped string; NULL with @error when unusable */
static char *
get_value (GKeyFile *kf, const char *group, const char *key, const char *origin,
	   GError **error)
{
	g_autoptr(GError) local = NULL;
	g_autofree char *value = g_key_file_get_string (kf, group, key, &local);

	if (value == NULL) {
		g_set_error (error, BGS_ERROR, BGS_ERROR_INVALID_ARGS, "%s: [%s] %s: %s", origin,
			     group, key, local->message);
		return NULL;
	}
	g_strstrip (value);
	if (*value == '\0') {
		g_set_error (error, BGS_ERROR, BGS_ERROR_INVALID_ARGS, "%s: [%s] %s is empty",
			     origin, group, key);
		return NULL;
	}
	return g_steal_pointer (&value);
}

static BgsDeviceMatch *
parse_match (GKeyFile *kf, const char *group, const char *origin, GError **error)
{
	BgsDeviceMatch *match = g_new0 (BgsDeviceMatch, 1);
	g_autofree char *value = NULL;

	match->label = g_strdup (group);
	match->vendor_source = VENDOR_SOURCE_BLUETOOTH;
	bgs_conf_warn_unknown_keys (kf, group, match_keys, NULL, origin);

#define FAIL(...) G_STMT_START { \
		g_set_error (error, BGS_ERROR, BGS_ERROR_INVALID_ARGS, __VA_ARGS__); \
		match_free (match); \
		return NULL; \
	} G_STMT_END
#define GET(key) G_STMT_START { \
		g_clear_pointer (&value, g_free); \
		value = get_value (kf, group, key, origin, error); \
		if (value == NULL) { \
			match_free (match); \
			return NULL; \
		} \
	} G_STMT_END

	if (g_key_file_has_key (kf, group, "Modalias", NULL)) {
		GET ("Modalias");
		match->modalias = g_ascii_strup (value, -1);
		match->rank = MAX (match->rank, BGS_MATCH_VENDOR_PRODUCT);
	}
	if (g_key_file_has_key (kf, group, "Vendor", NULL)) {
		GET ("Vendor");
		if (!parse_hex16 (value, &match->vendor))
			FAIL ("%s: [%s] Vendor: '%s' is not a 16-bit hex number", origin, group,
			      value);
		match->has_vendor = TRUE;
		match->rank = MAX (match->rank, BGS_MATCH_VENDOR_PRODUCT);
	}
	if (g_key_file_has_key (kf, group, "Product", NULL)) {
		GET ("Product");
		if (!parse_hex16 (value, &match->product))
			FAIL ("%s: [%s] Product: '%s' is not a 16-bit hex number", origin, group,
			      value);
		if (!match->has_vendor)
			FAIL ("%s: [%s] Product needs Vendor", origin, group);
		match->has_product = TRUE;
	}
	if (g_key_file_has_key (kf, group, "VendorSource", NULL)) {
		GET ("VendorSource");
		if (g_ascii_strcasecmp (value, "bluetooth") == 0)
			match->vendor_source = VENDOR_SOURCE_BLUETOOTH;
		else if (g_ascii_strcasecmp (value, "usb") == 0)
			match->vendor_source = VENDOR_SOURCE_USB;
		else
			FAIL ("%s: [%s] VendorSource: '%s' is neither bluetooth nor usb", origin,
			      group, value);
		if (!match->has_vendor)
			FAIL ("%s: [%s] VendorSource needs Vendor", origin, group);
	}
	if (g_key_file_has_key (kf, group, "DisManufacturer", NULL)) {
		GET ("DisManufacturer");
		match->dis_manufacturer_glob = g_steal_pointer (&value);
		match->rank = MAX (match->rank, BGS_MATCH_DIS_STRINGS);
	}
	if (g_key_file_has_key (kf, group, "DisModel", NULL)) {
		GET ("DisModel");
		match->dis_model_glob = g_steal_pointer (&value);
		match->rank = MAX (match->rank, BGS_MATCH_DIS_STRINGS);
	}
	if (g_key_file_has_key (kf, group, "ServiceUUIDs", NULL)) {
		g_auto(GStrv) list = g_key_file_get_string_list (kf, group, "ServiceUUIDs", NULL,
								 NULL);
		g_autoptr(GPtrArray) uuids = g_ptr_array_new ();

		for (gsize i = 0; list != NULL && list[i] != NULL; i++) {
			char *uuid;

			g_strstrip (list[i]);
			if (*list[i] == '\0')
				continue;
			uuid = bgs_uuid_normalize (list[i]);
			if (uuid == NULL) {
				g_ptr_array_set_free_func (uuids, g_free);
				FAIL ("%s: [%s] ServiceUUIDs: '%s' is not a UUID", origin, group,
				      list[i]);
			}
			g_ptr_array_add (uuids, uuid);
		}
		if (uuids->len == 0)
			FAIL ("%s: [%s] ServiceUUIDs is empty", origin, group);
		g_ptr_array_add (uuids, NULL);
		match->uuids = (char **) g_ptr_array_steal (uuids, NULL);
		match->rank = MAX (match->rank, BGS_MATCH_SERVICE_UUIDS);
	}
	if (g_key_file_has_key (kf, group, "ManufacturerData", NULL)) {
		const char *colon;
		g_autofree char *company = NULL;

		GET ("ManufacturerData");
		colon = strchr (value, ':');
		company = colon != NULL ? g_strndup (value, colon - value) : g_strdup (value);
		if (!parse_hex16 (company, &match->company))
			FAIL ("%s: [%s] ManufacturerData: '%s' is not a 16-bit company id",
			      origin, group, company);
		match->mfr_prefix = parse_hex_bytes (colon != NULL ? colon + 1 : "");
		if (match->mfr_prefix == NULL)
			FAIL ("%s: [%s] ManufacturerData: '%s' is not hex bytes", origin, group,
			      colon + 1);
		match->has_mfr = TRUE;
		match->rank = MAX (match->rank, BGS_MATCH_MANUFACTURER_DATA);
	}
	if (g_key_file_has_key (kf, group, "Name", NULL)) {
		GET ("Name");
		match->name_glob = g_steal_pointer (&value);
		match->rank = MAX (match->rank, BGS_MATCH_NAME);
	}
	if (match->rank == BGS_MATCH_NONE)
		FAIL ("%s: [%s] has no match key (a group that matches every device is refused)",
		      origin, group);
#undef FAIL
#undef GET
	return match;
}

static GHashTable *
parse_profile (GKeyFile *kf, const char *group)
{
	GHashTable *params = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
	g_auto(GStrv) keys = g_key_file_get_keys (kf, group, NULL, NULL);

	for (gsize i = 0; keys != NULL && keys[i] != NULL; i++) {
		char *value = g_key_file_get_string (kf, group, keys[i], NULL);
		if (value != NULL)
			g_hash_table_insert (params, g_strdup (keys[i]), value);
	}
	return params;
}

BgsDeviceModel *
bgs_device_model_parse (const char *data, gsize len, const char *origin, GError **error)
{
	g_autoptr(GKeyFile) kf = g_key_file_new ();
	g_autoptr(GError) local = NULL;
	g_autoptr(BgsDeviceModel) m = NULL;
	g_auto(GStrv) groups = NULL;
	gboolean disabled = FALSE;
	gboolean present;
	gint value;

	if (origin == NULL)
		origin = "(model)";
	if ((data == NULL && len > 0) || len > BGS_CONF_FILE_MAX_SIZE) {
		g_set_error (error, BGS_ERROR, BGS_ERROR_INVALID_ARGS,
			     "%s: missing or larger than %d bytes", origin, BGS_CONF_FILE_MAX_SIZE);
		return NULL;
	}
	if (len > 0 && !g_utf8_validate_len (data, len, NULL)) {
		g_set_error (error, BGS_ERROR, BGS_ERROR_INVALID_ARGS,
			     "%s: not valid UTF-8 text", origin);
		return NULL;
	}
	if (!g_key_file_load_from_data (kf, len > 0 ? data : "", len, G_KEY_FILE_NONE, &local)) {
		g_set_error (error, BGS_ERROR, BGS_ERROR_INVALID_ARGS, "%s: %s", origin,
			     local->message);
		return NULL;
	}
	if (!g_key_file_has_group (kf, "Model")) {
		g_set_error (error, BGS_ERROR, BGS_ERROR_INVALID_ARGS, "%s: no [Model] group",
			     origin);
		return NULL;
	}
	if (!get_bool (kf, "Model", "Disabled", &disabled, origin, error))
		return NULL;
	if (disabled) {
		g_set_error (error, BGS_ERROR, BGS_ERROR_NOT_FOUND, "%s: disabled", origin);
		return NULL;
	}

	m = g_atomic_rc_box_new0 (BgsDeviceModel);
	m->path = g_strdup (origin);
	m->matches = g_ptr_array_new_with_free_func ((GDestroyNotify) match_free);
	m->profiles = g_hash_table_new_full (g_str_hash, g_str_equal, g_free,
					     (GDestroyNotify) g_hash_table_unref);

	bgs_conf_warn_unknown_keys (kf, "Model", model_keys, model_localized, origin);
	if (!g_key_file_has_key (kf, "Model", "Id", NULL)) {
		g_set_error (error, BGS_ERROR, BGS_ERROR_INVALID_ARGS, "%s: [Model] Id missing",
			     origin);
		return NULL;
	}
	m->id = get_value (kf, "Model", "Id", origin, error);
	if (m->id == NULL)
		return NULL;
	if (!bgs_conf_is_simple_name (m->id)) {
		g_set_error (error, BGS_ERROR, BGS_ERROR_INVALID_ARGS,
			     "%s: [Model] Id '%s' must be lower-case letters, digits and '-'",
			     origin, m->id);
		return NULL;
	}
	if (g_key_file_has_key (kf, "Model", "Name", NULL)) {
		m->name = get_value (kf, "Model", "Name", origin, error);
		if (m->name == NULL)
			return NULL;
	} else {
		m->name = g_strdup (m->id);
	}
	m->privileged_apps = g_key_file_get_string_list (kf, "Model", "PrivilegedApps", NULL,
							 NULL);
	if (m->privileged_apps == NULL)
		m->privileged_apps = g_new0 (char *, 1);
	for (gsize i = 0; m->privileged_apps[i] != NULL; i++) {
		g_strstrip (m->privileged_apps[i]);
		if (!bgs_conf_is_reverse_dns (m->privileged_apps[i])) {
			g_set_error (error, BGS_ERROR, BGS_ERROR_INVALID_ARGS,
				     "%s: [Model] PrivilegedApps: '%s' is not an app id", origin,
				     m->privileged_apps[i]);
			return NULL;
		}
	}

	groups = g_key_file_get_groups (kf, NULL);
	for (gsize i = 0; groups[i] != NULL; i++) {
		const char *group = groups[i];

		if (strcmp (group, "Model") == 0)
			continue;
		if (strcmp (group, "Match") == 0 || g_str_has_prefix (group, "Match ")) {
			BgsDeviceMatch *match = parse_match (kf, group, origin, error);
			if (match == NULL)
				return NULL;
			g_ptr_array_add (m->matches, match);
		} else if (g_str_has_prefix (group, "Profile ")) {
			const char *profile = group + strlen ("Profile ");
			if (!bgs_conf_is_simple_name (profile)) {
				g_set_error (error, BGS_ERROR, BGS_ERROR_INVALID_ARGS,
					     "%s: [%s]: '%s' is not a profile name", origin, group,
					     profile);
				return NULL;
			}
			g_hash_table_replace (m->profiles, g_strdup (profile),
					      parse_profile (kf, group));
		} else if (strcmp (group, "Presence") == 0) {
			BgsPresenceParams *p = &m->presence;
			bgs_conf_warn_unknown_keys (kf, group, presence_keys, NULL, origin);
			if (!get_int_in_range (kf, group, "FoundRSSI", -127, 20, &p->has_found_rssi,
					       &p->found_rssi, origin, error) ||
			    !get_int_in_range (kf, group, "LostRSSI", -127, 20, &p->has_lost_rssi,
					       &p->lost_rssi, origin, error))
				return NULL;
			if (!get_int_in_range (kf, group, "FoundTimeout", 1, 86400, &present,
					       &value, origin, error))
				return NULL;
			if (present)
				p->found_timeout = value;
			if (!get_int_in_range (kf, group, "LostTimeout", 1, 86400, &present,
					       &value, origin, error))
				return NULL;
			if (present)
				p->lost_timeout = value;
			if (p->has_found_rssi && p->has_lost_rssi &&
			    p->lost_rssi > p->found_rssi) {
				g_set_error (error, BGS_ERROR, BGS_ERROR_INVALID_ARGS,
					     "%s: [Presence] LostRSSI must not be above FoundRSSI",
					     origin);
				return NULL;
			}
		} else if (strcmp (group, "Reconnect") == 0) {
			bgs_conf_warn_unknown_keys (kf, group, reconnect_keys, NULL, origin);
			if (!get_int_in_range (kf, group, "AddressDelta", -255, 255, &present,
					       &value, origin, error))
				return NULL;
			if (present)
				m->reconnect.address_delta = value;
			if (!get_bool (kf, group, "SameName", &m->reconnect.same_name, origin,
				       error))
				return NULL;
		} else {
			g_warning ("%s: unknown group [%s] ignored", origin, group);
		}
	}
	if (m->matches->len == 0) {
		g_set_error (error, BGS_ERROR, BGS_ERROR_INVALID_ARGS,
			     "%s: no [Match] group", origin);
		return NULL;
	}
	return g_steal_pointer (&m);
}

/* matching */

static gboolean
mfr_has_prefix (GVariant *mfr, guint16 company, GBytes *prefix)
{
	GVariantIter iter;
	guint16 key;
	GVariant *value;
	gboolean found = FALSE;

	/* BlueZ gives a{qv}; anything else is treated as absent, not trusted */
	if (mfr == NULL || !g_variant_is_of_type (mfr, G_VARIANT_TYPE ("a{qv}")))
		return FALSE;
	g_variant_iter_init (&iter, mfr);
	while (!found && g_variant_iter_next (&iter, "{qv}", &key, &value)) {
		if (key == company && g_variant_is_of_type (value, G_VARIANT_TYPE_BYTESTRING)) {
			gsize n = 0, plen = 0;
			const guint8 *bytes = g_variant_get_fixed_array (value, &n, 1);
			const guint8 *p = g_bytes_get_data (prefix, &plen);

			found = n >= plen && (plen == 0 || memcmp (bytes, p, plen) == 0);
		}
		g_variant_unref (value);
	}
	return found;
}

static gboolean
facts_have_uuid (const BgsDeviceFacts *facts, const char *uuid)
{
	for (gsize i = 0; facts->uuids != NULL && facts->uuids[i] != NULL; i++) {
		g_autofree char *norm = NULL;

		if (g_ascii_strcasecmp (facts->uuids[i], uuid) == 0)
			return TRUE;
		norm = bgs_uuid_normalize (facts->uuids[i]);
		if (norm != NULL && strcmp (norm, uuid) == 0)
			return TRUE;
	}
	return FALSE;
}

static gboolean
vendor_product_matches (const BgsDeviceMatch *match, guint8 source, guint16 vendor,
			guint16 product)
{
	return source == match->vendor_source && vendor == match->vendor &&
	       (!match->has_product || product == match->product);
}

static gboolean
match_group (const BgsDeviceMatch *match, const BgsDeviceFacts *facts)
{
	if (match->modalias != NULL) {
		g_autofree char *upper = NULL;

		if (facts->modalias == NULL)
			return FALSE;
		upper = g_ascii_strup (facts->modalias, -1);
		if (!g_pattern_match_simple (match->modalias, upper))
			return FALSE;
	}
	if (match->has_vendor) {
		guint8 source = 0;
		guint16 vendor = 0, product = 0;
		gboolean ok = FALSE;

		if (parse_modalias (facts->modalias, &source, &vendor, &product))
			ok = vendor_product_matches (match, source, vendor, product);
		if (!ok && facts->dis_vendor_source != 0)
			ok = vendor_product_matches (match, facts->dis_vendor_source,
						     facts->dis_vendor, facts->dis_product);
		if (!ok)
			return FALSE;
	}
	if (match->dis_manufacturer_glob != NULL &&
	    (facts->dis_manufacturer == NULL ||
	     !g_pattern_match_simple (match->dis_manufacturer_glob, facts->dis_manufacturer)))
		return FALSE;
	if (match->dis_model_glob != NULL &&
	    (facts->dis_model == NULL ||
	     !g_pattern_match_simple (match->dis_model_glob, facts->dis_model)))
		return FALSE;
	for (gsize i = 0; match->uuids != NULL && match->uuids[i] != NULL; i++) {
		if (!facts_have_uuid (facts, match->uuids[i]))
			return FALSE;
	}
	if (match->has_mfr &&
	    !mfr_has_prefix (facts->manufacturer_data, match->company, match->mfr_prefix))
		return FALSE;
	if (match->name_glob != NULL &&
	    (facts->name == NULL || !g_pattern_match_simple (match->name_glob, facts->name)))
		return FALSE;
	return TRUE;
}

BgsMatchRank
bgs_device_model_match (const BgsDeviceModel *m, const BgsDeviceFacts *facts)
{
	BgsMatchRank best = BGS_MATCH_NONE;

	if (m == NULL || facts == NULL)
		return BGS_MATCH_NONE;
	for (guint i = 0; i < m->matches->len; i++) {
		const BgsDeviceMatch *match = g_ptr_array_index (m->matches, i);

		if (match->rank > best && match_group (match, facts))
			best = match->rank;
	}
	return best;
}

gboolean
bgs_device_model_is_privileged (const BgsDeviceModel *m, const char *app_id)
{
	if (m == NULL || app_id == NULL)
		return FALSE;
	return g_strv_contains ((const char *const *) m->privileged_apps, app_id);
}

const char *
bgs_device_model_get_param (const BgsDeviceModel *m, const char *profile, const char *key)
{
	GHashTable *params;

	if (m == NULL || profile == NULL || key == NULL)
		return NULL;
	params = g_hash_table_lookup (m->profiles, profile);
	return params != NULL ? g_hash_table_lookup (params, key) : NULL;
}

static char *
hash16 (const char *prefix, const char *value)
{
	g_autofree char *sum = g_compute_checksum_for_string (G_CHECKSUM_SHA256, value, -1);

	return g_strdup_printf ("%s-%.16s", prefix, sum);
}

static gint
str_cmp (gconstpointer a, gconstpointer b)
{
	return strcmp (*(const char *const *) a, *(const char *const *) b);
}

static gint
u16_cmp (gconstpointer a, gconstpointer b)
{
	return (gint) *(const guint16 *) a - (gint) *(const guint16 *) b;
}

char *
bgs_device_model_fallback_id (const BgsDeviceFacts *facts)
{
	guint8 source = 0;
	guint16 vendor = 0, product = 0;

	if (facts == NULL)
		return g_strdup ("unknown");
	if (!parse_modalias (facts->modalias, &source, &vendor, &product) &&
	    (facts->dis_vendor_source == VENDOR_SOURCE_BLUETOOTH ||
	     facts->dis_vendor_source == VENDOR_SOURCE_USB)) {
		source = facts->dis_vendor_source;
		vendor = facts->dis_vendor;
		product = facts->dis_product;
	}
	if (source != 0)
		return g_strdup_printf ("pnp-%s-%04x-%04x",
					source == VENDOR_SOURCE_USB ? "usb" : "bluetooth",
					vendor, product);
	if ((facts->dis_manufacturer != NULL && *facts->dis_manufacturer != '\0') ||
	    (facts->dis_model != NULL && *facts->dis_model != '\0')) {
		g_autofree char *both = g_strdup_printf ("%s\n%s",
							 facts->dis_manufacturer != NULL ? facts->dis_manufacturer : "",
							 facts->dis_model != NULL ? facts->dis_model : "");
		return hash16 ("dis", both);
	}
	if (facts->name != NULL && *facts->name != '\0')
		return hash16 ("name", facts->name);
	if (facts->uuids != NULL) {
		g_autoptr(GPtrArray) uuids = g_ptr_array_new_with_free_func (g_free);
		g_autoptr(GString) joined = g_string_new (NULL);

		for (gsize i = 0; facts->uuids[i] != NULL; i++) {
			char *norm = bgs_uuid_normalize (facts->uuids[i]);
			if (norm != NULL)
				g_ptr_array_add (uuids, norm);
		}
		g_ptr_array_sort (uuids, str_cmp);
		for (guint i = 0; i < uuids->len; i++) {
			const char *uuid = g_ptr_array_index (uuids, i);
			if (i > 0 && strcmp (uuid, g_ptr_array_index (uuids, i - 1)) == 0)
				continue;
			g_string_append_printf (joined, "%s%s", joined->len > 0 ? "," : "", uuid);
		}
		if (joined->len > 0)
			return hash16 ("uuids", joined->str);
	}
	if (facts->manufacturer_data != NULL &&
	    g_variant_is_of_type (facts->manufacturer_data, G_VARIANT_TYPE ("a{qv}")) &&
	    g_variant_n_children (facts->manufacturer_data) > 0) {
		g_autoptr(GArray) ids = g_array_new (FALSE, FALSE, sizeof (guint16));
		g_autoptr(GString) id = g_string_new ("mfr");
		GVariantIter iter;
		guint16 key;
		GVariant *value;

		g_variant_iter_init (&iter, facts->manufacturer_data);
		while (g_variant_iter_next (&iter, "{qv}", &key, &value)) {
			g_array_append_val (ids, key);
			g_variant_unref (value);
		}
		g_array_sort (ids, u16_cmp);
		for (guint i = 0; i < ids->len; i++) {
			guint16 cur = g_array_index (ids, guint16, i);
			if (i > 0 && cur == g_array_index (ids, guint16, i - 1))
				continue;
			g_string_append_printf (id, "-%04x", cur);
		}
		return g_string_free (g_steal_pointer (&id), FALSE);
	}
	if (facts->address != NULL) {
		g_autoptr(GString) id = g_string_new ("address-");
		for (const char *p = facts->address; *p != '\0'; p++) {
			if (g_ascii_isalnum (*p))
				g_string_append_c (id, g_ascii_tolower (*p));
		}
		if (id->len > strlen ("address-"))
			return g_string_free (g_steal_pointer (&id), FALSE);
	}
	return g_strdup ("unknown");
}

/* the registry */

struct _BgsModelRegistry {
	GObject parent_instance;
	char **dirs;
	BgsConfWatch *watch;
	GPtrArray *models;     /* BgsDeviceModel refs, in file name order */
	GHashTable *by_id;     /* borrowed */
};

G_DEFINE_TYPE (BgsModelRegistry, bgs_model_registry, G_TYPE_OBJECT)

enum { SIGNAL_CHANGED, N_SIGNALS };
static guint signals[N_SIGNALS];

const char *const *
bgs_model_registry_default_dirs (void)
{
	static const char *const dirs[] = {
		BGS_DATADIR "/devices", BGS_SYSCONFDIR "/devices", NULL
	};

	return dirs;
}

static void
registry_load (BgsModelRegistry *self)
{
	g_autoptr(GPtrArray) files = bgs_conf_files_load ((const char *const *) self->dirs);

	g_hash_table_remove_all (self->by_id);
	g_ptr_array_set_size (self->models, 0);
	for (guint i = 0; i < files->len; i++) {
		BgsConfFile *file = g_ptr_array_index (files, i);
		g_autoptr(GError) error = NULL;
		g_autoptr(BgsDeviceModel) m = NULL;
		const BgsDeviceModel *other;
		const char *data;
		gsize len;

		if (file->data == NULL)
			continue;
		data = g_bytes_get_data (file->data, &len);
		m = bgs_device_model_parse (data, len, file->path, &error);
		if (m == NULL) {
			if (g_error_matches (error, BGS_ERROR, BGS_ERROR_NOT_FOUND))
				g_debug ("%s", error->message);
			else
				g_warning ("%s (skipped)", error->message);
			continue;
		}
		other = g_hash_table_lookup (self->by_id, m->id);
		if (other != NULL) {
			g_warning ("%s: skipped: [Model] Id %s is already used by %s", file->path,
				   m->id, other->path);
			continue;
		}
		g_hash_table_insert (self->by_id, m->id, m);
		g_ptr_array_add (self->models, g_steal_pointer (&m));
	}
}

static void
watch_cb (gpointer user_data)
{
	bgs_model_registry_reload (BGS_MODEL_REGISTRY (user_data));
}

static void
bgs_model_registry_finalize (GObject *object)
{
	BgsModelRegistry *self = BGS_MODEL_REGISTRY (object);

	g_clear_pointer (&self->watch, bgs_conf_watch_free);
	g_hash_table_unref (self->by_id);
	g_ptr_array_unref (self->models);
	g_strfreev (self->dirs);
	G_OBJECT_CLASS (bgs_model_registry_parent_class)->finalize (object);
}

static void
bgs_model_registry_class_init (BgsModelRegistryClass *klass)
{
	G_OBJECT_CLASS (klass)->finalize = bgs_model_registry_finalize;
	signals[SIGNAL_CHANGED] = g_signal_new ("changed", G_TYPE_FROM_CLASS (klass),
						G_SIGNAL_RUN_LAST, 0, NULL, NULL, NULL,
						G_TYPE_NONE, 0);
}

static void
bgs_model_registry_init (BgsModelRegistry *self)
{
	self->models = g_ptr_array_new_with_free_func ((GDestroyNotify) bgs_device_model_unref);
	self->by_id = g_hash_table_new (g_str_hash, g_str_equal);
}

BgsModelRegistry *
bgs_model_registry_new (const char *const *dirs, gboolean watch)
{
	BgsModelRegistry *self = g_object_new (BGS_TYPE_MODEL_REGISTRY, NULL);

	self->dirs = g_strdupv ((char **) dirs);
	if (self->dirs == NULL)
		self->dirs = g_new0 (char *, 1);
	if (watch)
		self->watch = bgs_conf_watch_new ((const char *const *) self->dirs, watch_cb, self);
	registry_load (self);
	return self;
}

void
bgs_model_registry_reload (BgsModelRegistry *self)
{
	g_return_if_fail (BGS_IS_MODEL_REGISTRY (self));
	registry_load (self);
	g_info ("device models reloaded: %u models", self->models->len);
	g_signal_emit (self, signals[SIGNAL_CHANGED], 0);
}

const BgsDeviceModel *
bgs_model_registry_lookup (BgsModelRegistry *self, const char *id)
{
	g_return_val_if_fail (BGS_IS_MODEL_REGISTRY (self), NULL);
	return id != NULL ? g_hash_table_lookup (self->by_id, id) : NULL;
}

const BgsDeviceModel *
bgs_model_registry_match (BgsModelRegistry *self, const BgsDeviceFacts *facts)
{
	const BgsDeviceModel *best = NULL;
	BgsMatchRank best_rank = BGS_MATCH_NONE;

	g_return_val_if_fail (BGS_IS_MODEL_REGISTRY (self), NULL);
	if (facts == NULL)
		return NULL;
	/* file name order, strictly better rank replaces: ties go to the first */
	for (guint i = 0; i < self->models->len; i++) {
		const BgsDeviceModel *m = g_ptr_array_index (self->models, i);
		BgsMatchRank rank = bgs_device_model_match (m, facts);

		if (rank > best_rank) {
			best = m;
			best_rank = rank;
		}
	}
	return best;
}

GPtrArray *
bgs_model_registry_list (BgsModelRegistry *self)
{
	GPtrArray *list;

	g_return_val_if_fail (BGS_IS_MODEL_REGISTRY (self), NULL);
	list = g_ptr_array_new_full (self->models->len, (GDestroyNotify) bgs_device_model_unref);
	for (guint i = 0; i < self->models->len; i++)
		g_ptr_array_add (list, bgs_device_model_ref (g_ptr_array_index (self->models, i)));
	return list;
}

void
bgs_adv_pattern_free (BgsAdvPattern *p)
{
	if (p == NULL)
		return;
	g_bytes_unref (p->content);
	g_free (p);
}

static void
add_pattern (GPtrArray *out, guint8 ad_type, const guint8 *data, gsize len)
{
	BgsAdvPattern *p;

	/* an AD structure carries at most 29 data bytes in a legacy advert */
	if (len == 0 || len > 29)
		return;
	p = g_new0 (BgsAdvPattern, 1);
	p->ad_type = ad_type;
	p->content = g_bytes_new (data, len);
	g_ptr_array_add (out, p);
}

/* "0000180f-0000-1000-8000-00805f9b34fb" -> 16-bit 0x180f when on the base UUID */
static gboolean
uuid_to_le_bytes (const char *uuid, guint8 out[16], gboolean *is16)
{
	guint8 be[16];
	guint n = 0;

	for (const char *c = uuid; *c != '\0' && n < 32; c++) {
		int v = g_ascii_xdigit_value (*c);
		if (*c == '-')
			continue;
		if (v < 0)
			return FALSE;
		if (n % 2 == 0)
			be[n / 2] = (guint8) (v << 4);
		else
			be[n / 2] |= (guint8) v;
		n++;
	}
	if (n != 32)
		return FALSE;
	for (guint i = 0; i < 16; i++)
		out[i] = be[15 - i];
	*is16 = g_str_has_suffix (uuid, "-0000-1000-8000-00805f9b34fb") && g_str_has_prefix (uuid, "0000");
	return TRUE;
}

gboolean
bgs_device_model_needs_scan_response (const BgsDeviceModel *m)
{
	for (guint i = 0; m != NULL && m->matches != NULL && i < m->matches->len; i++) {
		const BgsDeviceMatch *match = g_ptr_array_index (m->matches, i);

		if (match->name_glob != NULL && match->uuids == NULL && !match->has_mfr)
			return TRUE;
	}
	return FALSE;
}

GPtrArray *
bgs_device_model_get_adv_patterns (const BgsDeviceModel *m)
{
	GPtrArray *out = g_ptr_array_new_with_free_func ((GDestroyNotify) bgs_adv_pattern_free);

	for (guint i = 0; m != NULL && m->matches != NULL && i < m->matches->len; i++) {
		BgsDeviceMatch *match = g_ptr_array_index (m->matches, i);

		for (guint j = 0; match->uuids != NULL && match->uuids[j] != NULL; j++) {
			guint8 le[16];
			gboolean is16 = FALSE;

			if (!uuid_to_le_bytes (match->uuids[j], le, &is16))
				continue;
			if (is16) {
				/* complete and incomplete 16-bit lists: 0x03, 0x02 */
				add_pattern (out, 0x03, le + 12, 2);
				add_pattern (out, 0x02, le + 12, 2);
			} else {
				add_pattern (out, 0x07, le, 16);
				add_pattern (out, 0x06, le, 16);
			}
		}
		if (match->has_mfr) {
			gsize plen = 0;
			const guint8 *prefix = match->mfr_prefix != NULL ? g_bytes_get_data (match->mfr_prefix, &plen) : NULL;
			g_autofree guint8 *buf = g_malloc (2 + plen);

			buf[0] = match->company & 0xff;
			buf[1] = match->company >> 8;
			if (plen > 0)
				memcpy (buf + 2, prefix, plen);
			add_pattern (out, 0xff, buf, 2 + plen);
		}
		if (match->name_glob != NULL) {
			gsize lit = strcspn (match->name_glob, "*?[");
			/* complete and shortened local names: 0x09, 0x08 */
			add_pattern (out, 0x09, (const guint8 *) match->name_glob, lit);
			add_pattern (out, 0x08, (const guint8 *) match->name_glob, lit);
		}
	}
	return out;
}
