/* bgs-daemon.c: the bus front and the request flow of bgsyncd */
#include "bgs-daemon.h"

#include <sys/stat.h>
#include <unistd.h>
#include <gio/gunixfdlist.h>

#include "config.h"
#include "bgs-app-manifest.h"
#include "bgs-client-list.h"
#include "bgs-clock.h"
#include "bgs-consent-agents.h"
#include "bgs-dbus.h"
#include "bgs-device-model.h"
#include "bgs-devices.h"
#include "bgs-engine.h"
#include "bgs-links.h"
#include "bgs-error.h"
#include "bgs-network-monitor.h"
#include "bgs-policy.h"
#include "bgs-power-monitor.h"
#include "bgs-presence.h"
#include "bgs-profile.h"
#include "bgs-session-monitor.h"
#include "bgs-store.h"
#include "bgs-task.h"

#define MANAGER_PATH "/org/bgsync"
#define TASK_IFACE "org.bgsync.Task1"
#define TASK_PREFIX "/org/bgsync/task"
#define MAX_NAME_LEN 128
#define DEFAULT_HISTORY_LIMIT 100

struct _BgsDaemon {
	GObject parent_instance;
	BgsConfig *config;
	GDBusConnection *bus;
	GDBusConnection *system_bus;
	BgsClock *clock;
	BgsStore *store;
	BgsEngine *engine;
	BgsAppRegistry *apps;
	BgsModelRegistry *models;
	BgsClientList *clients;
	BgsConsentAgents *agents;
	BgsDevices *devices;
	BgsLinks *links;
	BgsPresence *presence;
	BgsPowerMonitor *power;
	BgsSessionMonitor *session;
	BgsNetworkMonitor *network;
	BgsDBusManager1 *manager;
	GHashTable *tasks;     /* gint64 id -> BgsTask */
	GHashTable *latched;   /* gint64 id -> char *data: custom fires waiting for conditions */
	GHashTable *app_ids;   /* app ids of the last manifest load, to notice removals */
	guint task_subtree_id;
	gboolean shutting_down;
};

G_DEFINE_TYPE (BgsDaemon, bgs_daemon, G_TYPE_OBJECT)

static void daemon_check_latched (BgsDaemon *self);

static void
sync_scanning (BgsDaemon *self)
{
	if (self->manager != NULL && self->presence != NULL)
		bgs_dbus_manager1_set_scanning (self->manager, bgs_presence_is_scanning (self->presence));
}

static void
bluez_changed_scanning_cb (BgsDevices *devices, gpointer user_data)
{
	/* after presence re-registered on the adapters (connected first) */
	sync_scanning (user_data);
}

/* presence is needed while a device task is registered or anything runs;
 * otherwise the agent does not scan */
static void
update_presence_needed (BgsDaemon *self)
{
	GHashTableIter iter;
	gpointer value;
	gboolean needed = bgs_engine_count_running (self->engine) > 0;

	g_hash_table_iter_init (&iter, self->tasks);
	while (!needed && g_hash_table_iter_next (&iter, NULL, &value))
		needed = bgs_task_get_registration (value)->trigger != BGS_TRIGGER_CUSTOM;
	if (self->presence != NULL)
		bgs_presence_set_needed (self->presence, needed);
	sync_scanning (self);
}

/* ---- small helpers ---------------------------------------------------- */

static void
return_error (GDBusMethodInvocation *invocation, const GError *error)
{
	g_autoptr(GError) dbus_error = bgs_error_to_dbus (error);

	g_dbus_method_invocation_return_gerror (invocation, dbus_error);
}

static void
return_new_error (GDBusMethodInvocation *invocation, BgsError code, const char *format, ...)
	G_GNUC_PRINTF (3, 4);

static void
return_new_error (GDBusMethodInvocation *invocation, BgsError code, const char *format, ...)
{
	va_list args;
	g_autofree char *msg = NULL;

	va_start (args, format);
	msg = g_strdup_vprintf (format, args);
	va_end (args);
	g_dbus_method_invocation_return_error_literal (invocation, BGS_ERROR, code, msg);
}

/* strings from callers: bounded, no control characters */
static gboolean
check_string (BgsDaemon *self, const char *what, const char *value, gsize min_len,
	      gsize max_len, GError **error)
{
	gsize len = strlen (value);

	if (max_len == 0)
		max_len = self->config->max_string_length;
	if (len < min_len || len > max_len) {
		g_set_error (error, BGS_ERROR, BGS_ERROR_INVALID_ARGS,
			     "%s must be %" G_GSIZE_FORMAT "..%" G_GSIZE_FORMAT " bytes long (got %" G_GSIZE_FORMAT ")",
			     what, min_len, max_len, len);
		return FALSE;
	}
	for (const char *p = value; *p != '\0'; p = g_utf8_next_char (p)) {
		gunichar c = g_utf8_get_char (p);
		if (g_unichar_iscntrl (c)) {
			g_set_error (error, BGS_ERROR, BGS_ERROR_INVALID_ARGS,
				     "%s must not contain control characters", what);
			return FALSE;
		}
	}
	return TRUE;
}

static void
emit_to_app (BgsDaemon *self, guint32 uid, const char *app_id, const char *path,
	     const char *iface, const char *signal, GVariant *params)
{
	g_autoptr(GPtrArray) names = bgs_client_list_get_app_names (self->clients, uid, app_id);
	g_autoptr(GVariant) sunk = g_variant_ref_sink (params);

	/* unicast: one app's task signals are invisible to every other peer */
	for (guint i = 0; i < names->len; i++)
		g_dbus_connection_emit_signal (self->bus, names->pdata[i], path, iface, signal,
					       sunk, NULL);
}

static void
task_emit (BgsDaemon *self, BgsTask *task, const char *signal, GVariant *params)
{
	const BgsRegistration *reg = bgs_task_get_registration (task);

	emit_to_app (self, reg->uid, reg->app_id, bgs_task_get_object_path (task), TASK_IFACE,
		     signal, params);
}

static void
task_props_changed (BgsDaemon *self, BgsTask *task, const char *const *names)
{
	const BgsRegistration *reg = bgs_task_get_registration (task);
	GVariantBuilder b;

	g_variant_builder_init (&b, G_VARIANT_TYPE_VARDICT);
	for (guint i = 0; names[i] != NULL; i++)
		g_variant_builder_add (&b, "{sv}", names[i], bgs_task_get_property (task, names[i]));
	emit_to_app (self, reg->uid, reg->app_id, bgs_task_get_object_path (task),
		     "org.freedesktop.DBus.Properties", "PropertiesChanged",
		     g_variant_new ("(sa{sv}as)", TASK_IFACE, &b, NULL));
}

static void
queue_event (BgsDaemon *self, BgsTask *task, BgsEventKind kind, GVariant *data)
{
	const BgsRegistration *reg = bgs_task_get_registration (task);
	BgsEvent ev = { 0 };
	g_autoptr(GError) error = NULL;

	ev.task_id = reg->id;
	ev.uid = reg->uid;
	ev.app_id = reg->app_id;
	ev.kind = kind;
	ev.data = g_variant_ref_sink (data);
	ev.time = bgs_clock_wall (self->clock);
	if (!bgs_store_queue_event (self->store, &ev, self->config->max_queued_per_app, &error))
		g_warning ("cannot queue %s event of task %" G_GINT64_FORMAT ": %s",
			   bgs_event_kind_to_string (kind), reg->id, error->message);
	g_variant_unref (ev.data);
}

static BgsTask *
lookup_task (BgsDaemon *self, gint64 id)
{
	return g_hash_table_lookup (self->tasks, &id);
}

static void
task_remove (BgsDaemon *self, BgsTask *task)
{
	g_autoptr(GError) error = NULL;
	gint64 id = bgs_task_get_id (task);

	if (!bgs_store_remove_registration (self->store, id, &error))
		g_warning ("cannot remove registration %" G_GINT64_FORMAT ": %s", id, error->message);
	g_hash_table_remove (self->latched, &id);
	g_hash_table_remove (self->tasks, &id);
	update_presence_needed (self);
}

/* ---- instances ---------------------------------------------------------- */

static gboolean
drop_later_cb (gpointer data)
{
	return G_SOURCE_REMOVE;
}

static void
task_go_idle (BgsDaemon *self, BgsTask *task)
{
	static const char *const changed[] = { "State", "Device", "Progress", NULL };
	BgsRun *run = bgs_task_get_run (task);

	if (run != NULL) {
		g_signal_handlers_disconnect_by_data (run, task);
		/* the run may be inside its own signal emission: drop it later */
		g_idle_add_full (G_PRIORITY_DEFAULT, drop_later_cb, g_object_ref (run),
				 g_object_unref);
		bgs_task_set_run (task, NULL);
	}
	bgs_task_set_state (task, BGS_TASK_STATE_IDLE, NULL);
	bgs_task_set_progress (task, 0, "");
	task_props_changed (self, task, changed);
	if (bgs_task_get_remove_when_idle (task) && !self->shutting_down)
		task_remove (self, task);
	else
		update_presence_needed (self);
}

/* drops finished entries older than [History] MaxAgeDays; called at start
 * and when a task ends, so no timer is needed */
static void
history_prune (BgsDaemon *self)
{
	g_autoptr(GError) error = NULL;
	guint days = self->config->history_max_age_days;
	guint n = 0;

	if (days == 0)
		return;
	if (!bgs_store_prune_history (self->store,
				      bgs_clock_wall (self->clock) - (gint64) days * 86400 * G_USEC_PER_SEC,
				      &n, &error))
		g_warning ("cannot prune the history: %s", error->message);
	else if (n > 0)
		g_info ("removed %u history entries older than %u days", n, days);
}

static void
history_end (BgsDaemon *self, BgsTask *task, const char *result, const char *reason)
{
	g_autoptr(GError) error = NULL;
	guint64 in, out;

	if (bgs_task_get_history_id (task) == 0)
		return;
	bgs_task_get_bytes (task, &in, &out);
	if (!bgs_store_history_end (self->store, bgs_task_get_history_id (task),
				    bgs_clock_wall (self->clock), result, reason, in, out, &error))
		g_warning ("cannot record the end of task %" G_GINT64_FORMAT ": %s",
			   bgs_task_get_id (task), error->message);
	bgs_task_set_history_id (task, 0);
	history_prune (self);
}

static void
run_progress_cb (BgsRun *run, guint percent, const char *status, gpointer user_data)
{
	BgsTask *task = user_data;
	BgsDaemon *self = g_object_get_data (G_OBJECT (task), "bgs-daemon");
	static const char *const changed[] = { "Progress", NULL };
	GVariantDict d;

	bgs_task_set_progress (task, percent, status);
	task_props_changed (self, task, changed);
	task_emit (self, task, "Progress", g_variant_new ("(us)", percent, status));
	g_variant_dict_init (&d, NULL);
	g_variant_dict_insert (&d, "percent", "u", percent);
	g_variant_dict_insert (&d, "status", "s", status);
	queue_event (self, task, BGS_EVENT_PROGRESS, g_variant_dict_end (&d));
}

static void
run_io_cb (BgsRun *run, guint64 in, guint64 out, gpointer user_data)
{
	BgsTask *task = user_data;
	BgsDaemon *self = g_object_get_data (G_OBJECT (task), "bgs-daemon");

	bgs_task_add_bytes (task, in, out);
	bgs_engine_note_io (self->engine, bgs_task_get_id (task), in, out);
}

static void
run_link_rate_cb (BgsRun *run, gdouble rate, gpointer user_data)
{
	BgsTask *task = user_data;
	BgsDaemon *self = g_object_get_data (G_OBJECT (task), "bgs-daemon");
	g_autofree char *value = g_strdup_printf ("%.0f", rate);
	g_autoptr(GError) error = NULL;

	/* the next estimate for this device starts from what we measured */
	if (bgs_run_get_device (run) != NULL &&
	    !bgs_store_set_device_info (self->store, bgs_run_get_device (run), "link-rate", value, &error))
		g_warning ("cannot keep the link rate of %s: %s", bgs_run_get_device (run), error->message);
}

static void
run_estimate_cb (BgsRun *run, guint seconds, gpointer user_data)
{
	BgsTask *task = user_data;
	BgsDaemon *self = g_object_get_data (G_OBJECT (task), "bgs-daemon");
	static const char *const changed[] = { "Estimate", NULL };

	bgs_task_set_estimate (task, seconds);
	task_props_changed (self, task, changed);
}

static void
run_completed_cb (BgsRun *run, gboolean success, const char *error_name, const char *message,
		  gpointer user_data)
{
	g_autoptr(BgsTask) task = g_object_ref (user_data);
	BgsDaemon *self = g_object_get_data (G_OBJECT (task), "bgs-daemon");
	GVariantDict d;

	g_info ("task %" G_GINT64_FORMAT " %s%s%s", bgs_task_get_id (task),
		success ? "completed" : "failed", *message != '\0' ? ": " : "", message);
	bgs_engine_finish (self->engine, bgs_task_get_id (task));
	history_end (self, task, success ? "completed" : "failed", success ? "" : message);
	g_variant_dict_init (&d, NULL);
	g_variant_dict_insert (&d, "success", "b", success);
	g_variant_dict_insert (&d, "error", "s", error_name);
	g_variant_dict_insert (&d, "message", "s", message);
	queue_event (self, task, BGS_EVENT_COMPLETED, g_variant_dict_end (&d));
	task_emit (self, task, "Completed", g_variant_new ("(bss)", success, error_name, message));
	task_go_idle (self, task);
}

static gboolean
instance_start (BgsDaemon *self, BgsTask *task, BgsRun *run, const char *device_label,
		GError **error)
{
	const BgsRegistration *reg = bgs_task_get_registration (task);
	const BgsProfile *profile = bgs_profile_lookup (reg->entry_point,
							self->config->enable_test_profile);
	g_autoptr(BgsHistoryEntry) entry = NULL;
	g_autoptr(GError) store_error = NULL;
	static const char *const changed[] = { "State", "Device", "Progress", "Estimate", NULL };

	if (profile == NULL) {
		g_set_error (error, BGS_ERROR, BGS_ERROR_NOT_SUPPORTED,
			     "no built-in entry point named '%s'", reg->entry_point);
		return FALSE;
	}
	if (!bgs_engine_start (self->engine, reg->id, error))
		return FALSE;

	entry = g_new0 (BgsHistoryEntry, 1);
	entry->task_id = reg->id;
	entry->uid = reg->uid;
	entry->app_id = g_strdup (reg->app_id);
	entry->task_name = g_strdup (reg->name);
	entry->device = g_strdup (bgs_run_get_device (run) != NULL ? bgs_run_get_device (run) : "");
	entry->model = g_strdup (bgs_run_get_model (run) != NULL ? bgs_run_get_model (run) : "");
	entry->trigger = reg->trigger;
	entry->entry_point = g_strdup (reg->entry_point);
	entry->started = bgs_clock_wall (self->clock);
	entry->result = g_strdup ("running");
	entry->reason = g_strdup ("");
	if (bgs_store_history_begin (self->store, entry, &store_error))
		bgs_task_set_history_id (task, entry->id);
	else
		g_warning ("cannot record task %" G_GINT64_FORMAT " in the history: %s", reg->id,
			   store_error->message);

	bgs_task_set_run (task, run);
	bgs_task_set_state (task, BGS_TASK_STATE_RUNNING, device_label);
	bgs_task_set_progress (task, 0, "");
	bgs_task_set_estimate (task, bgs_run_get_estimate (run));
	g_signal_connect (run, "progress", G_CALLBACK (run_progress_cb), task);
	g_signal_connect (run, "io", G_CALLBACK (run_io_cb), task);
	g_signal_connect (run, "estimate", G_CALLBACK (run_estimate_cb), task);
	g_signal_connect (run, "link-rate", G_CALLBACK (run_link_rate_cb), task);
	g_signal_connect (run, "completed", G_CALLBACK (run_completed_cb), task);
	task_props_changed (self, task, changed);
	update_presence_needed (self);
	g_info ("task %" G_GINT64_FORMAT " (%s of %s) running %s%s%s", reg->id, reg->name,
		reg->app_id, reg->entry_point, device_label != NULL ? " on " : "",
		device_label != NULL ? device_label : "");
	return bgs_profile_start (profile, run, error);
}

static void
engine_canceled_cb (BgsEngine *engine, gint64 task_id, guint reason, gpointer user_data)
{
	BgsDaemon *self = user_data;
	BgsTask *task = lookup_task (self, task_id);
	g_autoptr(BgsTask) keep = NULL;
	GCancellable *consent;
	const char *reason_str = bgs_cancel_reason_to_string (reason);
	GVariantDict d;

	if (task == NULL)
		return;
	keep = g_object_ref (task);
	/* a reservation waiting for the user: drop the prompt, the request
	 * callback answers the app */
	consent = g_object_get_data (G_OBJECT (task), "bgs-consent-cancel");
	if (consent != NULL) {
		g_cancellable_cancel (consent);
		return;
	}
	if (bgs_task_get_run (task) == NULL)
		return;
	g_info ("task %" G_GINT64_FORMAT " canceled: %s", task_id, reason_str);
	bgs_run_cancel (bgs_task_get_run (task), reason);
	history_end (self, task, "canceled", reason_str);
	g_variant_dict_init (&d, NULL);
	g_variant_dict_insert (&d, "reason", "s", reason_str);
	queue_event (self, task, BGS_EVENT_CANCELED, g_variant_dict_end (&d));
	task_emit (self, task, "Canceled", g_variant_new ("(s)", reason_str));
	task_go_idle (self, task);
}

/* ---- identity ----------------------------------------------------------- */

typedef void (*IdentityFunc) (BgsDaemon *self, GDBusMethodInvocation *invocation,
			      const BgsIdentity *identity, gpointer data);

typedef struct {
	BgsDaemon *self;
	GDBusMethodInvocation *invocation;
	gboolean require_app;
	IdentityFunc func;
	gpointer data;
	GDestroyNotify destroy;
} IdentityCall;

static void
identity_cb (GObject *source, GAsyncResult *res, gpointer user_data)
{
	IdentityCall *call = user_data;
	g_autoptr(GError) error = NULL;
	const BgsIdentity *identity;

	identity = bgs_client_list_resolve_finish (BGS_CLIENT_LIST (source), res, &error);
	if (identity == NULL) {
		return_error (call->invocation, error);
	} else if (call->require_app && identity->app_id == NULL) {
		return_new_error (call->invocation, BGS_ERROR_UNKNOWN_APP,
				  "the calling program (%s) matches no installed bgsync app manifest",
				  identity->exe != NULL ? identity->exe : "unknown executable");
	} else {
		call->func (call->self, call->invocation, identity, call->data);
		call->data = NULL;
	}
	if (call->data != NULL && call->destroy != NULL)
		call->destroy (call->data);
	g_object_unref (call->invocation);
	g_object_unref (call->self);
	g_free (call);
}

/* resolves the caller, then runs @func; errors are answered here */
static void
with_identity (BgsDaemon *self, GDBusMethodInvocation *invocation, gboolean require_app,
	       IdentityFunc func, gpointer data, GDestroyNotify destroy)
{
	IdentityCall *call = g_new0 (IdentityCall, 1);

	call->self = g_object_ref (self);
	call->invocation = g_object_ref (invocation);
	call->require_app = require_app;
	call->func = func;
	call->data = data;
	call->destroy = destroy;
	bgs_client_list_resolve_async (self->clients,
				       g_dbus_method_invocation_get_sender (invocation), NULL,
				       identity_cb, call);
}

static const BgsAppManifest *
identity_manifest (BgsDaemon *self, const BgsIdentity *identity)
{
	return identity->app_id != NULL ? bgs_app_registry_lookup (self->apps, identity->app_id) : NULL;
}

/* ---- Manager1 ----------------------------------------------------------- */

typedef struct {
	char *name;
	char *trigger;
	char *entry_point;
	GVariant *options;
} RegisterArgs;

static void
register_args_free (RegisterArgs *a)
{
	g_free (a->name);
	g_free (a->trigger);
	g_free (a->entry_point);
	g_variant_unref (a->options);
	g_free (a);
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC (RegisterArgs, register_args_free)

static gboolean
parse_register_options (BgsDaemon *self, BgsTriggerKind trigger, GVariant *options,
			BgsRegistration *reg, GError **error)
{
	GVariantIter iter;
	const char *key;
	GVariant *value;

	g_variant_iter_init (&iter, options);
	while (g_variant_iter_next (&iter, "{&sv}", &key, &value)) {
		g_autoptr(GVariant) v = value;

		if (trigger != BGS_TRIGGER_CUSTOM) {
			g_set_error (error, BGS_ERROR, BGS_ERROR_INVALID_ARGS,
				     "device triggers take no options or conditions (got '%s')",
				     key);
			return FALSE;
		}
		if (g_strcmp0 (key, "custom-trigger") == 0 &&
		    g_variant_is_of_type (v, G_VARIANT_TYPE_STRING)) {
			const char *id = g_variant_get_string (v, NULL);
			if (!check_string (self, "custom-trigger", id, 1, MAX_NAME_LEN, error))
				return FALSE;
			g_free (reg->custom_trigger);
			reg->custom_trigger = g_strdup (id);
		} else if (g_strcmp0 (key, "recurrence") == 0 &&
			   g_variant_is_of_type (v, G_VARIANT_TYPE_STRING)) {
			if (!bgs_recurrence_from_string (g_variant_get_string (v, NULL),
							 &reg->recurrence) ||
			    reg->recurrence == BGS_RECURRENCE_NONE) {
				g_set_error (error, BGS_ERROR, BGS_ERROR_INVALID_ARGS,
					     "recurrence must be \"once\" or \"always\"");
				return FALSE;
			}
		} else if (g_strcmp0 (key, "conditions") == 0 &&
			   g_variant_is_of_type (v, G_VARIANT_TYPE_STRING_ARRAY)) {
			g_autofree const char **conds = g_variant_get_strv (v, NULL);
			if (!bgs_conditions_from_strv (conds, &reg->conditions, error))
				return FALSE;
		} else {
			g_set_error (error, BGS_ERROR, BGS_ERROR_INVALID_ARGS,
				     "unknown option '%s' of type %s", key,
				     g_variant_get_type_string (v));
			return FALSE;
		}
	}
	if (trigger == BGS_TRIGGER_CUSTOM) {
		if (reg->custom_trigger == NULL) {
			g_set_error (error, BGS_ERROR, BGS_ERROR_INVALID_ARGS,
				     "a custom task needs the \"custom-trigger\" option");
			return FALSE;
		}
		if (reg->recurrence == BGS_RECURRENCE_NONE)
			reg->recurrence = BGS_RECURRENCE_ALWAYS;
	}
	return TRUE;
}


static BgsTask *
daemon_add_task (BgsDaemon *self, const BgsRegistration *reg, GError **error)
{
	g_autoptr(BgsTask) task = bgs_task_new (reg);
	gint64 *key;

	g_object_set_data (G_OBJECT (task), "bgs-daemon", self);
	key = g_new (gint64, 1);
	*key = reg->id;
	g_hash_table_insert (self->tasks, key, g_object_ref (task));
	update_presence_needed (self);
	return task;
}

static void
register_task_cont (BgsDaemon *self, GDBusMethodInvocation *invocation,
		    const BgsIdentity *identity, gpointer data)
{
	g_autoptr(RegisterArgs) a = data;
	const BgsAppManifest *manifest = identity_manifest (self, identity);
	g_autoptr(BgsRegistration) reg = bgs_registration_new ();
	g_autoptr(GError) error = NULL;
	BgsTriggerKind trigger;
	GHashTableIter iter;
	gpointer value;
	guint count = 0;
	BgsTask *task;

	if (!check_string (self, "task name", a->name, 1, MAX_NAME_LEN, &error) ||
	    !check_string (self, "entry point", a->entry_point, 1, MAX_NAME_LEN, &error)) {
		return_error (invocation, error);
		return;
	}
	if (!bgs_trigger_kind_from_string (a->trigger, &trigger)) {
		return_new_error (invocation, BGS_ERROR_INVALID_ARGS,
				  "unknown trigger kind (use device-use, device-servicing or custom)");
		return;
	}
	if (manifest == NULL || !bgs_app_manifest_allows (manifest, trigger, a->entry_point)) {
		return_new_error (invocation, BGS_ERROR_NOT_AUTHORIZED,
				  "the manifest of %s does not declare entry point '%s' for %s triggers",
				  identity->app_id, a->entry_point, a->trigger);
		return;
	}
	if (bgs_profile_lookup (a->entry_point, self->config->enable_test_profile) == NULL) {
		return_new_error (invocation, BGS_ERROR_NOT_SUPPORTED,
				  "no built-in entry point named '%s'", a->entry_point);
		return;
	}
	reg->uid = identity->uid;
	reg->app_id = g_strdup (identity->app_id);
	reg->name = g_strdup (a->name);
	reg->trigger = trigger;
	reg->entry_point = g_strdup (a->entry_point);
	reg->created = bgs_clock_wall (self->clock);
	if (!parse_register_options (self, trigger, a->options, reg, &error)) {
		return_error (invocation, error);
		return;
	}

	/* the same name again returns the existing registration (AllTasks check) */
	g_hash_table_iter_init (&iter, self->tasks);
	while (g_hash_table_iter_next (&iter, NULL, &value)) {
		BgsTask *t = value;
		const BgsRegistration *r = bgs_task_get_registration (t);
		if (!bgs_task_is_owned_by (t, reg->uid, reg->app_id))
			continue;
		count++;
		if (g_strcmp0 (r->name, reg->name) != 0)
			continue;
		if (r->trigger == reg->trigger && g_strcmp0 (r->entry_point, reg->entry_point) == 0 &&
		    bgs_task_get_remove_when_idle (t)) {
			/* unregistered while running, registered again: it stays */
			bgs_task_set_remove_when_idle (t, FALSE);
		}
		if (r->trigger != reg->trigger || g_strcmp0 (r->entry_point, reg->entry_point) != 0 ||
		    g_strcmp0 (r->custom_trigger, reg->custom_trigger) != 0 ||
		    r->recurrence != reg->recurrence || r->conditions != reg->conditions) {
			return_new_error (invocation, BGS_ERROR_ALREADY_EXISTS,
					  "a task named '%s' is already registered with another trigger or entry point",
					  reg->name);
			return;
		}
		g_dbus_method_invocation_return_value (invocation,
						       g_variant_new ("(o)", bgs_task_get_object_path (t)));
		return;
	}
	if (count >= self->config->max_tasks_per_app) {
		return_new_error (invocation, BGS_ERROR_LIMIT_EXCEEDED,
				  "%s already has %u registered tasks (MaxTasksPerApp)",
				  reg->app_id, count);
		return;
	}
	if (!bgs_store_add_registration (self->store, reg, &error)) {
		return_error (invocation, error);
		return;
	}
	task = daemon_add_task (self, reg, &error);
	if (task == NULL) {
		bgs_store_remove_registration (self->store, reg->id, NULL);
		return_error (invocation, error);
		return;
	}
	g_info ("%s (uid %u) registered task '%s' (%s, %s)", reg->app_id, reg->uid, reg->name,
		a->trigger, reg->entry_point);
	g_dbus_method_invocation_return_value (invocation,
					       g_variant_new ("(o)", bgs_task_get_object_path (task)));
}

static gboolean
handle_register_task (BgsDBusManager1 *object, GDBusMethodInvocation *invocation,
		      const char *name, const char *trigger, const char *entry_point,
		      GVariant *options, gpointer user_data)
{
	RegisterArgs *a = g_new0 (RegisterArgs, 1);

	a->name = g_strdup (name);
	a->trigger = g_strdup (trigger);
	a->entry_point = g_strdup (entry_point);
	a->options = g_variant_ref (options);
	with_identity (user_data, invocation, TRUE, register_task_cont, a,
		       (GDestroyNotify) register_args_free);
	return TRUE;
}

static void
get_tasks_cont (BgsDaemon *self, GDBusMethodInvocation *invocation,
		const BgsIdentity *identity, gpointer data)
{
	GVariantBuilder b;
	GHashTableIter iter;
	gpointer value;

	g_variant_builder_init (&b, G_VARIANT_TYPE ("a{oa{sv}}"));
	g_hash_table_iter_init (&iter, self->tasks);
	while (g_hash_table_iter_next (&iter, NULL, &value)) {
		BgsTask *t = value;
		if (bgs_task_is_owned_by (t, identity->uid, identity->app_id))
			g_variant_builder_add (&b, "{o@a{sv}}", bgs_task_get_object_path (t),
					       bgs_task_get_properties (t));
	}
	g_dbus_method_invocation_return_value (invocation, g_variant_new ("(a{oa{sv}})", &b));
}

static gboolean
handle_get_tasks (BgsDBusManager1 *object, GDBusMethodInvocation *invocation, gpointer user_data)
{
	with_identity (user_data, invocation, TRUE, get_tasks_cont, NULL, NULL);
	return TRUE;
}

static void
get_devices_cont (BgsDaemon *self, GDBusMethodInvocation *invocation,
		  const BgsIdentity *identity, gpointer data)
{
	g_autoptr(GPtrArray) list = bgs_devices_list (self->devices);
	GVariantBuilder b;

	g_variant_builder_init (&b, G_VARIANT_TYPE ("a{oa{sv}}"));
	for (guint i = 0; i < list->len; i++)
		g_variant_builder_add (&b, "{o@a{sv}}", bgs_device_get_object_path (list->pdata[i]),
				       bgs_device_to_variant (list->pdata[i]));
	g_dbus_method_invocation_return_value (invocation, g_variant_new ("(a{oa{sv}})", &b));
}

static gboolean
handle_get_devices (BgsDBusManager1 *object, GDBusMethodInvocation *invocation, gpointer user_data)
{
	with_identity (user_data, invocation, FALSE, get_devices_cont, NULL, NULL);
	return TRUE;
}

static gboolean
identity_manages_consents (BgsDaemon *self, const BgsIdentity *identity)
{
	const BgsAppManifest *m = identity_manifest (self, identity);

	/* sandboxed apps never manage other apps' consents */
	return m != NULL && m->manage_consents && identity->sandbox == BGS_SANDBOX_NONE;
}

static void
get_consents_cont (BgsDaemon *self, GDBusMethodInvocation *invocation,
		   const BgsIdentity *identity, gpointer data)
{
	g_autoptr(GPtrArray) list = NULL;
	g_autoptr(GError) error = NULL;
	GVariantBuilder b;
	gboolean all = identity_manages_consents (self, identity);

	list = bgs_store_list_consents (self->store, identity->uid,
					all ? NULL : identity->app_id, &error);
	if (list == NULL) {
		return_error (invocation, error);
		return;
	}
	g_variant_builder_init (&b, G_VARIANT_TYPE ("a(sssbt)"));
	for (guint i = 0; i < list->len; i++) {
		BgsConsent *c = list->pdata[i];
		const BgsAppManifest *m = bgs_app_registry_lookup (self->apps, c->app_id);
		g_variant_builder_add (&b, "(sssbt)", c->app_id, m != NULL ? m->name : c->app_id,
				       c->model, c->allowed, (guint64) c->time / G_USEC_PER_SEC);
	}
	g_dbus_method_invocation_return_value (invocation, g_variant_new ("(a(sssbt))", &b));
}

static gboolean
handle_get_consents (BgsDBusManager1 *object, GDBusMethodInvocation *invocation,
		     gpointer user_data)
{
	with_identity (user_data, invocation, TRUE, get_consents_cont, NULL, NULL);
	return TRUE;
}

static void
revoke_consent_cont (BgsDaemon *self, GDBusMethodInvocation *invocation,
		     const BgsIdentity *identity, gpointer data)
{
	GVariant *params = g_dbus_method_invocation_get_parameters (invocation);
	const char *app_id, *model;
	guint n = 0;
	g_autoptr(GError) error = NULL;

	g_variant_get (params, "(&s&s)", &app_id, &model);
	if (*app_id == '\0')
		app_id = identity->app_id;
	if (g_strcmp0 (app_id, identity->app_id) != 0 && !identity_manages_consents (self, identity)) {
		return_new_error (invocation, BGS_ERROR_NOT_AUTHORIZED,
				  "only the app itself or a consent manager may revoke its consents");
		return;
	}
	if (!bgs_store_revoke_consents (self->store, identity->uid, app_id,
					*model != '\0' ? model : NULL, &n, &error)) {
		return_error (invocation, error);
		return;
	}
	if (n == 0) {
		return_new_error (invocation, BGS_ERROR_NOT_FOUND, "no stored consent matches");
		return;
	}
	g_info ("uid %u revoked %u consent(s) of %s", identity->uid, n, app_id);
	/* running device-use tasks that relied on it stop: "uninstall" */
	bgs_engine_consent_revoked (self->engine, identity->uid, app_id,
				    *model != '\0' ? model : NULL);
	g_dbus_method_invocation_return_value (invocation, NULL);
}

static gboolean
handle_revoke_consent (BgsDBusManager1 *object, GDBusMethodInvocation *invocation,
		       const char *app_id, const char *model, gpointer user_data)
{
	with_identity (user_data, invocation, TRUE, revoke_consent_cont, NULL, NULL);
	return TRUE;
}

static void
register_agent_cont (BgsDaemon *self, GDBusMethodInvocation *invocation,
		     const BgsIdentity *identity, gpointer data)
{
	const char *path;
	g_autoptr(GError) error = NULL;

	g_variant_get (g_dbus_method_invocation_get_parameters (invocation), "(&o)", &path);
	/* a sandboxed app answering consent prompts could approve itself */
	if (identity->sandbox != BGS_SANDBOX_NONE) {
		return_new_error (invocation, BGS_ERROR_NOT_AUTHORIZED,
				  "sandboxed applications cannot be consent agents");
		return;
	}
	if (!bgs_consent_agents_register (self->agents, identity->uid,
					  g_dbus_method_invocation_get_sender (invocation), path,
					  &error)) {
		return_error (invocation, error);
		return;
	}
	g_dbus_method_invocation_return_value (invocation, NULL);
}

static gboolean
handle_register_agent (BgsDBusManager1 *object, GDBusMethodInvocation *invocation,
		       const char *path, gpointer user_data)
{
	with_identity (user_data, invocation, FALSE, register_agent_cont, NULL, NULL);
	return TRUE;
}

static void
unregister_agent_cont (BgsDaemon *self, GDBusMethodInvocation *invocation,
		       const BgsIdentity *identity, gpointer data)
{
	const char *path;
	g_autoptr(GError) error = NULL;

	g_variant_get (g_dbus_method_invocation_get_parameters (invocation), "(&o)", &path);
	if (!bgs_consent_agents_unregister (self->agents, identity->uid,
					    g_dbus_method_invocation_get_sender (invocation), path,
					    &error)) {
		return_error (invocation, error);
		return;
	}
	g_dbus_method_invocation_return_value (invocation, NULL);
}

static gboolean
handle_unregister_agent (BgsDBusManager1 *object, GDBusMethodInvocation *invocation,
			 const char *path, gpointer user_data)
{
	with_identity (user_data, invocation, FALSE, unregister_agent_cont, NULL, NULL);
	return TRUE;
}

static void
get_history_cont (BgsDaemon *self, GDBusMethodInvocation *invocation,
		  const BgsIdentity *identity, gpointer data)
{
	guint limit;
	g_autoptr(GPtrArray) list = NULL;
	g_autoptr(GError) error = NULL;
	GVariantBuilder b;
	gboolean all = identity_manages_consents (self, identity);

	g_variant_get (g_dbus_method_invocation_get_parameters (invocation), "(u)", &limit);
	if (limit == 0 || limit > 10000)
		limit = limit == 0 ? DEFAULT_HISTORY_LIMIT : 10000;
	list = bgs_store_list_history (self->store, identity->uid, all ? NULL : identity->app_id,
				       limit, &error);
	if (list == NULL) {
		return_error (invocation, error);
		return;
	}
	g_variant_builder_init (&b, G_VARIANT_TYPE ("aa{sv}"));
	for (guint i = 0; i < list->len; i++) {
		BgsHistoryEntry *e = list->pdata[i];
		GVariantDict d;
		g_autofree char *task_path = g_strdup_printf ("/org/bgsync/task/%" G_GINT64_FORMAT, e->task_id);

		g_variant_dict_init (&d, NULL);
		g_variant_dict_insert (&d, "task", "s", task_path);
		g_variant_dict_insert (&d, "task-name", "s", e->task_name != NULL ? e->task_name : "");
		g_variant_dict_insert (&d, "app-id", "s", e->app_id);
		g_variant_dict_insert (&d, "device", "s", e->device != NULL ? e->device : "");
		g_variant_dict_insert (&d, "model", "s", e->model != NULL ? e->model : "");
		g_variant_dict_insert (&d, "trigger", "s", bgs_trigger_kind_to_string (e->trigger));
		g_variant_dict_insert (&d, "entry-point", "s", e->entry_point);
		g_variant_dict_insert (&d, "started", "t", (guint64) e->started);
		g_variant_dict_insert (&d, "ended", "t", (guint64) e->ended);
		g_variant_dict_insert (&d, "result", "s", e->result);
		g_variant_dict_insert (&d, "reason", "s", e->reason != NULL ? e->reason : "");
		g_variant_dict_insert (&d, "bytes-in", "t", e->bytes_in);
		g_variant_dict_insert (&d, "bytes-out", "t", e->bytes_out);
		g_variant_builder_add_value (&b, g_variant_dict_end (&d));
	}
	g_dbus_method_invocation_return_value (invocation, g_variant_new ("(aa{sv})", &b));
}

static gboolean
handle_get_history (BgsDBusManager1 *object, GDBusMethodInvocation *invocation, guint limit,
		    gpointer user_data)
{
	with_identity (user_data, invocation, TRUE, get_history_cont, NULL, NULL);
	return TRUE;
}

/* ---- custom triggers ------------------------------------------------------- */

static BgsConditions
current_conditions (BgsDaemon *self)
{
	BgsConditions c = BGS_CONDITION_NONE;
	gboolean on_battery = FALSE;
	gdouble percent = 100;

	if (bgs_network_monitor_get_available (self->network))
		c |= BGS_CONDITION_NETWORK;
	if (bgs_session_monitor_get_user_present (self->session))
		c |= BGS_CONDITION_USER_PRESENT;
	bgs_power_monitor_get_state (self->power, &on_battery, &percent);
	if (!on_battery)
		c |= BGS_CONDITION_AC_POWER;
	return c;
}

/* starts a custom-trigger instance; FALSE when it could not start */
static gboolean
custom_start (BgsDaemon *self, BgsTask *task, const char *data)
{
	const BgsRegistration *reg = bgs_task_get_registration (task);
	const BgsAppManifest *m = bgs_app_registry_lookup (self->apps, reg->app_id);
	BgsInstanceInfo info = { 0 };
	BgsRunInfo rinfo = { 0 };
	g_autoptr(BgsRun) run = NULL;
	g_autoptr(GError) error = NULL;

	if (m == NULL || !bgs_app_manifest_allows (m, BGS_TRIGGER_CUSTOM, reg->entry_point)) {
		g_info ("custom trigger: %s no longer declares '%s'", reg->app_id, reg->entry_point);
		return FALSE;
	}
	info.task_id = reg->id;
	info.trigger = BGS_TRIGGER_CUSTOM;
	info.uid = reg->uid;
	info.app_id = reg->app_id;
	if (!bgs_engine_reserve (self->engine, &info, &error)) {
		g_info ("custom trigger: task %" G_GINT64_FORMAT " not started: %s", reg->id,
			error->message);
		return FALSE;
	}
	rinfo.task_id = reg->id;
	rinfo.trigger = BGS_TRIGGER_CUSTOM;
	rinfo.entry_point = reg->entry_point;
	rinfo.arguments = data;
	run = bgs_run_new (&rinfo);
	if (!instance_start (self, task, run, NULL, &error)) {
		g_warning ("custom trigger: task %" G_GINT64_FORMAT " failed to start: %s", reg->id,
			   error->message);
		if (bgs_engine_has_task (self->engine, reg->id))
			bgs_engine_cancel (self->engine, reg->id, BGS_CANCEL_SYSTEM_POLICY);
		return FALSE;
	}
	return TRUE;
}

/* the trigger fired: start now if the conditions hold, else latch */
static gboolean
custom_fire (BgsDaemon *self, BgsTask *task, const char *data)
{
	const BgsRegistration *reg = bgs_task_get_registration (task);
	gint64 *key;
	gboolean started;

	if (!bgs_policy_conditions_hold (reg->conditions, current_conditions (self))) {
		g_info ("custom trigger %s: task %" G_GINT64_FORMAT " waits for its conditions",
			reg->custom_trigger, reg->id);
		key = g_new (gint64, 1);
		*key = reg->id;
		g_hash_table_replace (self->latched, key, g_strdup (data));
		return FALSE;
	}
	started = custom_start (self, task, data);
	if (reg->recurrence == BGS_RECURRENCE_ONCE) {
		/* a once-task is unregistered after it fires */
		if (bgs_task_get_state (task) == BGS_TASK_STATE_IDLE)
			task_remove (self, task);
		else
			bgs_task_set_remove_when_idle (task, TRUE);
	}
	return started;
}

static void
daemon_check_latched (BgsDaemon *self)
{
	g_autoptr(GList) ids = NULL;

	if (g_hash_table_size (self->latched) == 0)
		return;
	ids = g_hash_table_get_keys (self->latched);
	for (GList *l = ids; l != NULL; l = l->next) {
		gint64 id = *(gint64 *) l->data;
		BgsTask *task = lookup_task (self, id);
		g_autofree char *data = NULL;

		if (task == NULL) {
			g_hash_table_remove (self->latched, &id);
			continue;
		}
		if (!bgs_policy_conditions_hold (bgs_task_get_registration (task)->conditions,
						 current_conditions (self)))
			continue;
		data = g_strdup (g_hash_table_lookup (self->latched, &id));
		g_hash_table_remove (self->latched, &id);
		custom_fire (self, task, data);
	}
}

static void
conditions_changed_cb (GObject *monitor, gpointer user_data)
{
	daemon_check_latched (user_data);
}

typedef struct {
	char *trigger_id;
	char *data;
} RaiseArgs;

static void
raise_args_free (RaiseArgs *a)
{
	g_free (a->trigger_id);
	g_free (a->data);
	g_free (a);
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC (RaiseArgs, raise_args_free)

static void
raise_cont (BgsDaemon *self, GDBusMethodInvocation *invocation, const BgsIdentity *identity,
	    gpointer data)
{
	g_autoptr(RaiseArgs) a = data;
	g_autoptr(GError) error = NULL;
	g_autoptr(GPtrArray) matching = g_ptr_array_new_with_free_func (g_object_unref);
	GHashTableIter iter;
	gpointer value;
	guint started = 0;

	if (!bgs_config_may_raise_custom_trigger (self->config, identity->uid)) {
		return_new_error (invocation, BGS_ERROR_NOT_AUTHORIZED,
				  "uid %u may not raise custom triggers (CustomTriggerRaisers)",
				  identity->uid);
		return;
	}
	if (!check_string (self, "trigger id", a->trigger_id, 1, MAX_NAME_LEN, &error) ||
	    !check_string (self, "trigger data", a->data, 0, 0, &error)) {
		return_error (invocation, error);
		return;
	}
	g_hash_table_iter_init (&iter, self->tasks);
	while (g_hash_table_iter_next (&iter, NULL, &value)) {
		const BgsRegistration *reg = bgs_task_get_registration (value);
		if (reg->trigger == BGS_TRIGGER_CUSTOM &&
		    g_strcmp0 (reg->custom_trigger, a->trigger_id) == 0)
			g_ptr_array_add (matching, g_object_ref (value));
	}
	for (guint i = 0; i < matching->len; i++)
		if (custom_fire (self, matching->pdata[i], a->data))
			started++;
	g_info ("custom trigger %s raised by uid %u: %u of %u tasks started", a->trigger_id,
		identity->uid, started, matching->len);
	g_dbus_method_invocation_return_value (invocation, g_variant_new ("(u)", started));
}

static gboolean
handle_raise (BgsDBusManager1 *object, GDBusMethodInvocation *invocation,
	      const char *trigger_id, const char *data, gpointer user_data)
{
	RaiseArgs *a = g_new0 (RaiseArgs, 1);

	a->trigger_id = g_strdup (trigger_id);
	a->data = g_strdup (data);
	with_identity (user_data, invocation, FALSE, raise_cont, a, (GDestroyNotify) raise_args_free);
	return TRUE;
}

/* ---- Task1.Request ---------------------------------------------------------- */

typedef struct {
	BgsDaemon *self;
	BgsTask *task;
	GDBusMethodInvocation *invocation;
	guint32 uid;
	char *app_id;
	char *app_name;
	char *device_id;
	char *address;
	char *model_id;
	char *model_name;
	guint estimate;
	char *arguments;
	char *device_key;
	guint app_estimate; /* what the app said, when the agent made its own */
	GHashTable *fds; /* name -> fd + 1 */
	BgsInitiationFacts facts;
	BgsInitiationDecision decision;
	GCancellable *consent_cancel;
	gboolean reserved;
} RequestCtx;

static void
close_fd_value (gpointer data)
{
	close (GPOINTER_TO_INT (data) - 1);
}

static void
request_ctx_free (RequestCtx *ctx)
{
	g_clear_object (&ctx->consent_cancel);
	g_clear_pointer (&ctx->fds, g_hash_table_unref);
	g_object_unref (ctx->task);
	g_object_unref (ctx->invocation);
	g_object_unref (ctx->self);
	g_free (ctx->app_id);
	g_free (ctx->app_name);
	g_free (ctx->device_id);
	g_free (ctx->address);
	g_free (ctx->model_id);
	g_free (ctx->model_name);
	g_free (ctx->arguments);
	g_free (ctx->device_key);
	g_free (ctx);
}

/* [Profile smp-firmware-update], else the family's [Profile smp] */
static GHashTable *
model_params (const BgsDeviceModel *model, const char *entry_point)
{
	GHashTable *params;
	g_autofree char *family = NULL;

	if (model == NULL || model->profiles == NULL)
		return NULL;
	params = g_hash_table_lookup (model->profiles, entry_point);
	if (params != NULL)
		return params;
	family = g_strndup (entry_point, strcspn (entry_point, "-"));
	return g_hash_table_lookup (model->profiles, family);
}

/* where model_params() found them, for the profile's warnings */
static char *
model_params_origin (const BgsDeviceModel *model, const char *entry_point)
{
	g_autofree char *family = g_strndup (entry_point, strcspn (entry_point, "-"));

	return g_strdup_printf ("%s: [Profile %s]", model->path != NULL ? model->path : model->id,
				g_hash_table_contains (model->profiles, entry_point) ? entry_point : family);
}

static void
request_reply (RequestCtx *ctx, BgsTriggerResult result, BgsDenyReason reason)
{
	const BgsRegistration *reg = bgs_task_get_registration (ctx->task);

	if (result != BGS_RESULT_ALLOWED)
		g_info ("request of task %" G_GINT64_FORMAT " (%s) on %s: %s (%s)", reg->id,
			reg->app_id, ctx->address != NULL ? ctx->address : "-",
			bgs_trigger_result_to_string (result), bgs_deny_reason_to_string (reason));
	g_dbus_method_invocation_return_value (ctx->invocation,
					       g_variant_new ("(ss)",
							      bgs_trigger_result_to_string (result),
							      bgs_deny_reason_to_string (reason)));
}

/* fds by option name, checked for the kind of file each must be */
static gboolean
request_take_fds (RequestCtx *ctx, GVariant *options, GError **error)
{
	GDBusMessage *msg = g_dbus_method_invocation_get_message (ctx->invocation);
	GUnixFDList *fd_list = g_dbus_message_get_unix_fd_list (msg);
	GVariantIter iter;
	const char *key;
	GVariant *value;

	ctx->fds = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, close_fd_value);
	g_variant_iter_init (&iter, options);
	while (g_variant_iter_next (&iter, "{&sv}", &key, &value)) {
		g_autoptr(GVariant) v = value;
		gint32 index;
		int fd;
		struct stat st;
		gboolean ok;

		if (g_strcmp0 (key, "input") != 0 && g_strcmp0 (key, "output-dir") != 0 &&
		    g_strcmp0 (key, "channel") != 0) {
			g_set_error (error, BGS_ERROR, BGS_ERROR_INVALID_ARGS,
				     "unknown request option '%s'", key);
			return FALSE;
		}
		if (!g_variant_is_of_type (v, G_VARIANT_TYPE_HANDLE)) {
			g_set_error (error, BGS_ERROR, BGS_ERROR_INVALID_ARGS,
				     "request option '%s' must be a file descriptor (type h), not %s",
				     key, g_variant_get_type_string (v));
			return FALSE;
		}
		index = g_variant_get_handle (v);
		if (fd_list == NULL || index < 0 || index >= g_unix_fd_list_get_length (fd_list)) {
			g_set_error (error, BGS_ERROR, BGS_ERROR_INVALID_ARGS,
				     "request option '%s' refers to a file descriptor that was not sent",
				     key);
			return FALSE;
		}
		fd = g_unix_fd_list_get (fd_list, index, error);
		if (fd < 0)
			return FALSE;
		if (fstat (fd, &st) != 0) {
			close (fd);
			g_set_error (error, BGS_ERROR, BGS_ERROR_INVALID_ARGS,
				     "cannot stat the '%s' file descriptor", key);
			return FALSE;
		}
		if (g_strcmp0 (key, "input") == 0)
			ok = S_ISREG (st.st_mode);
		else if (g_strcmp0 (key, "output-dir") == 0)
			ok = S_ISDIR (st.st_mode);
		else
			ok = S_ISSOCK (st.st_mode);
		if (!ok) {
			close (fd);
			g_set_error (error, BGS_ERROR, BGS_ERROR_INVALID_ARGS,
				     "request option '%s' must be %s", key,
				     g_strcmp0 (key, "input") == 0 ? "a regular file" :
				     g_strcmp0 (key, "output-dir") == 0 ? "a directory" : "a socket");
			return FALSE;
		}
		g_hash_table_replace (ctx->fds, g_strdup (key), GINT_TO_POINTER (fd + 1));
	}
	return TRUE;
}

static void
request_start (RequestCtx *ctx)
{
	BgsDaemon *self = ctx->self;
	const BgsRegistration *reg = bgs_task_get_registration (ctx->task);
	BgsRunInfo rinfo = { 0 };
	g_autoptr(BgsRun) run = NULL;
	g_autoptr(GError) error = NULL;
	BgsDevice *dev = bgs_devices_lookup_id (self->devices, ctx->device_id);
	const BgsDeviceModel *model = dev != NULL ? bgs_device_get_model (dev) : NULL;
	GHashTableIter iter;
	gpointer key, value;

	rinfo.task_id = reg->id;
	rinfo.trigger = reg->trigger;
	rinfo.entry_point = reg->entry_point;
	rinfo.device = ctx->address;
	rinfo.device_id = ctx->device_id;
	rinfo.model = ctx->model_id;
	rinfo.arguments = ctx->arguments;
	rinfo.estimate = ctx->estimate;
	run = bgs_run_new (&rinfo);
	g_hash_table_iter_init (&iter, ctx->fds);
	while (g_hash_table_iter_next (&iter, &key, &value)) {
		bgs_run_take_fd (run, key, GPOINTER_TO_INT (value) - 1);
		g_hash_table_iter_steal (&iter);
		g_free (key);
	}
	bgs_run_set_params (run, model_params (model, reg->entry_point));
	if (model_params (model, reg->entry_point) != NULL) {
		g_autofree char *origin = model_params_origin (model, reg->entry_point);

		bgs_run_set_params_origin (run, origin);
	}
	bgs_run_set_transport_opener (run, bgs_links_open_transport, self->links, NULL);

	/* answer first: a profile may finish synchronously */
	request_reply (ctx, BGS_RESULT_ALLOWED, BGS_DENY_NONE);
	if (!instance_start (self, ctx->task, run, ctx->address, &error)) {
		g_warning ("task %" G_GINT64_FORMAT " failed to start: %s", reg->id, error->message);
		if (bgs_task_get_run (ctx->task) == run)
			bgs_run_complete_error (run, error);
		else if (bgs_engine_has_task (self->engine, reg->id))
			bgs_engine_release (self->engine, reg->id);
	}
}

/* the agent's own estimate, from what the entry point will move and the
 * link rate measured on this device before; 0 when it cannot tell */
static guint
agent_estimate (RequestCtx *ctx, const BgsDeviceModel *model)
{
	BgsDaemon *self = ctx->self;
	const BgsRegistration *reg = bgs_task_get_registration (ctx->task);
	const BgsProfile *profile = bgs_profile_lookup (reg->entry_point, self->config->enable_test_profile);
	gpointer fdp = g_hash_table_lookup (ctx->fds, "input");
	g_autofree char *rate_str = NULL;
	gdouble rate = 0;
	struct stat st;

	if (profile == NULL || profile->estimate == NULL || fdp == NULL ||
	    fstat (GPOINTER_TO_INT (fdp) - 1, &st) != 0)
		return 0;
	rate_str = bgs_store_get_device_info (self->store, ctx->address, "link-rate", NULL);
	if (rate_str != NULL)
		rate = g_ascii_strtod (rate_str, NULL);
	return profile->estimate (st.st_size, rate, model_params (model, reg->entry_point));
}

static void
consent_answer_cb (GObject *source, GAsyncResult *res, gpointer user_data)
{
	RequestCtx *ctx = user_data;
	BgsDaemon *self = ctx->self;
	g_autofree char *detail = NULL;
	BgsConsentAnswer answer;
	BgsInitiationDecision final;
	gint64 task_id = bgs_task_get_id (ctx->task);

	answer = bgs_consent_agents_request_finish (BGS_CONSENT_AGENTS (source), res, &detail);
	g_object_set_data (G_OBJECT (ctx->task), "bgs-consent-cancel", NULL);

	/* the reservation ended while the user was asked (app gone, Cancel,
	 * device removed, shutdown) */
	if (!bgs_engine_has_task (self->engine, task_id) || self->shutting_down) {
		task_go_idle (self, ctx->task);
		request_reply (ctx, BGS_RESULT_DENIED_BY_SYSTEM, BGS_DENY_CANCELED);
		request_ctx_free (ctx);
		return;
	}
	final = bgs_policy_apply_consent (&ctx->decision, answer != BGS_CONSENT_ANSWER_NONE,
					  answer == BGS_CONSENT_ANSWER_ALLOW);
	if (g_strcmp0 (detail, "no-agent") == 0) {
		final.result = BGS_RESULT_DENIED_BY_SYSTEM;
		final.reason = BGS_DENY_NO_CONSENT_AGENT;
	}
	if (ctx->decision.store_answer && answer != BGS_CONSENT_ANSWER_NONE) {
		g_autoptr(GError) error = NULL;
		if (!bgs_store_set_consent (self->store, ctx->uid, ctx->app_id, ctx->model_id,
					    answer == BGS_CONSENT_ANSWER_ALLOW,
					    bgs_clock_wall (self->clock), &error))
			g_warning ("cannot store the consent of %s for %s: %s", ctx->app_id,
				   ctx->model_id, error->message);
	}
	if (final.result != BGS_RESULT_ALLOWED) {
		bgs_engine_release (self->engine, task_id);
		task_go_idle (self, ctx->task);
		request_reply (ctx, final.result, final.reason);
		request_ctx_free (ctx);
		return;
	}
	request_start (ctx);
	request_ctx_free (ctx);
}

static void
request_decide (RequestCtx *ctx)
{
	BgsDaemon *self = ctx->self;
	const BgsRegistration *reg = bgs_task_get_registration (ctx->task);
	BgsInstanceInfo info = { 0 };
	g_autoptr(GError) error = NULL;

	ctx->decision = bgs_policy_check_initiation (bgs_engine_get_limits (self->engine), &ctx->facts);
	if (ctx->decision.result != BGS_RESULT_ALLOWED) {
		request_reply (ctx, ctx->decision.result, ctx->decision.reason);
		request_ctx_free (ctx);
		return;
	}
	info.task_id = reg->id;
	info.trigger = reg->trigger;
	info.uid = ctx->uid;
	info.app_id = ctx->app_id;
	info.device = ctx->device_id;
	info.model = ctx->model_id;
	info.owner = g_object_get_data (G_OBJECT (ctx->task), "bgs-owner-key");
	if (!bgs_engine_reserve (self->engine, &info, &error)) {
		request_reply (ctx, BGS_RESULT_DENIED_BY_SYSTEM,
			       bgs_engine_app_busy (self->engine, ctx->uid, ctx->app_id)
			       ? BGS_DENY_BUSY : BGS_DENY_DEVICE_BUSY);
		request_ctx_free (ctx);
		return;
	}
	if (ctx->decision.ask_consent) {
		static const char *const changed[] = { "State", "Device", "Progress", NULL };
		static const char *const servicing_warnings[] = { "keep-in-range", "keep-charged", NULL };
		BgsConsentRequest creq = { 0 };

		bgs_task_set_state (ctx->task, BGS_TASK_STATE_CONSENT, ctx->address);
		task_props_changed (self, ctx->task, changed);
		creq.app_id = ctx->app_id;
		creq.app_name = ctx->app_name;
		creq.device = ctx->address;
		creq.model = ctx->model_name;
		creq.kind = bgs_trigger_kind_to_string (reg->trigger);
		creq.estimate = ctx->estimate;
		creq.warnings = reg->trigger == BGS_TRIGGER_DEVICE_SERVICING ? servicing_warnings : NULL;
		ctx->consent_cancel = g_cancellable_new ();
		g_object_set_data_full (G_OBJECT (ctx->task), "bgs-consent-cancel",
					g_object_ref (ctx->consent_cancel), g_object_unref);
		bgs_consent_agents_request_async (self->agents, ctx->uid, &creq, ctx->consent_cancel,
						  consent_answer_cb, ctx);
		return;
	}
	request_start (ctx);
	request_ctx_free (ctx);
}

static void
foreground_cb (GObject *source, GAsyncResult *res, gpointer user_data)
{
	RequestCtx *ctx = user_data;
	g_autoptr(GError) error = NULL;
	gboolean foreground = FALSE;

	if (!bgs_session_monitor_check_foreground_finish (BGS_SESSION_MONITOR (source), res,
							  &foreground, &error)) {
		g_info ("foreground check for uid %u failed: %s", ctx->uid, error->message);
		foreground = FALSE;
	}
	ctx->facts.foreground = foreground;
	request_decide (ctx);
}

static void
request_check_foreground (RequestCtx *ctx)
{
	BgsDaemon *self = ctx->self;
	gboolean on_battery = FALSE;
	gdouble percent = 100;

	bgs_power_monitor_get_state (self->power, &on_battery, &percent);
	ctx->facts.on_battery = on_battery;
	ctx->facts.battery_percent = percent;
	if (self->config->foreground_check == BGS_FOREGROUND_CHECK_NONE) {
		ctx->facts.foreground = TRUE;
		request_decide (ctx);
		return;
	}
	bgs_session_monitor_check_foreground_async (self->session, ctx->uid, NULL, foreground_cb, ctx);
}

static void
power_ready_cb (GObject *source, GAsyncResult *res, gpointer user_data)
{
	g_autoptr(GError) error = NULL;

	/* without UPower the host counts as on mains */
	if (!bgs_power_monitor_ready_finish (BGS_POWER_MONITOR (source), res, &error))
		g_debug ("power state: %s", error->message);
	request_check_foreground (user_data);
}

/* the first request after start must not see "mains" before UPower answered */
static void
request_check_power (RequestCtx *ctx)
{
	if (bgs_power_monitor_is_ready (ctx->self->power)) {
		request_check_foreground (ctx);
		return;
	}
	bgs_power_monitor_ready_async (ctx->self->power, NULL, power_ready_cb, ctx);
}

static void request_gather_facts (gpointer devices, gpointer data);

static void
request_cont (BgsDaemon *self, GDBusMethodInvocation *invocation, const BgsIdentity *identity,
	      gpointer data)
{
	BgsTask *task = data;
	const BgsRegistration *reg = bgs_task_get_registration (task);
	const BgsAppManifest *m = identity_manifest (self, identity);
	RequestCtx *ctx;
	const char *device_key, *arguments;
	guint estimate;
	g_autoptr(GVariant) options = NULL;
	g_autoptr(GError) error = NULL;

	g_variant_get (g_dbus_method_invocation_get_parameters (invocation), "(&su&s@a{sv})",
		       &device_key, &estimate, &arguments, &options);

	ctx = g_new0 (RequestCtx, 1);
	ctx->self = g_object_ref (self);
	ctx->task = task; /* the reference taken by the dispatcher */
	ctx->invocation = g_object_ref (invocation);
	ctx->uid = identity->uid;
	ctx->app_id = g_strdup (identity->app_id);
	ctx->app_name = g_strdup (m != NULL ? m->name : identity->app_id);
	ctx->estimate = estimate;
	ctx->arguments = g_strdup (arguments);
	if (!check_string (self, "device", device_key, 0, 0, &error) ||
	    !check_string (self, "arguments", arguments, 0, 0, &error) ||
	    !request_take_fds (ctx, options, &error)) {
		return_error (invocation, error);
		request_ctx_free (ctx);
		return;
	}
	if (reg->trigger == BGS_TRIGGER_CUSTOM) {
		request_reply (ctx, BGS_RESULT_DENIED_BY_SYSTEM, BGS_DENY_TRIGGER_MISMATCH);
		request_ctx_free (ctx);
		return;
	}
	if (g_object_get_data (G_OBJECT (task), "bgs-owner-key") == NULL)
		g_object_set_data_full (G_OBJECT (task), "bgs-owner-key",
					bgs_client_app_key (reg->uid, reg->app_id), g_free);
	ctx->device_key = g_strdup (device_key);
	/* the first caller may have started us (bus activation) before BlueZ's
	 * devices were read: wait for them rather than say unknown-device */
	bgs_devices_when_ready (self->devices, request_gather_facts, ctx);
}

static void
request_gather_facts (gpointer devices, gpointer data)
{
	RequestCtx *ctx = data;
	BgsDaemon *self = ctx->self;
	const BgsRegistration *reg = bgs_task_get_registration (ctx->task);
	const BgsAppManifest *m = bgs_app_registry_lookup (self->apps, ctx->app_id);
	const char *device_key = ctx->device_key;
	g_autoptr(GError) error = NULL;
	BgsDevice *dev;
	gboolean stored_found = FALSE, stored_allowed = FALSE;

	/* the facts the initiation policy needs */
	ctx->facts.trigger = reg->trigger;
	ctx->facts.entry_point_exists =
		bgs_profile_lookup (reg->entry_point, self->config->enable_test_profile) != NULL;
	ctx->facts.entry_point_declared = m != NULL && bgs_app_manifest_allows (m, reg->trigger,
										  reg->entry_point);
	dev = bgs_devices_lookup (self->devices, device_key);
	ctx->facts.device_known = dev != NULL;
	if (dev != NULL) {
		const BgsDeviceModel *model = bgs_device_get_model (dev);

		ctx->device_id = g_strdup (bgs_device_get_id (dev));
		ctx->address = g_strdup (bgs_device_get_address (dev));
		ctx->model_id = g_strdup (bgs_device_get_model_id (dev));
		ctx->model_name = g_strdup (bgs_device_get_model_name (dev));
		ctx->facts.device_present = bgs_device_is_present (dev);
		ctx->facts.device_accessible = bgs_device_is_accessible (dev);
		ctx->facts.device_busy = bgs_engine_device_busy (self->engine, ctx->device_id, reg->trigger);
		ctx->facts.privileged = model != NULL && bgs_device_model_is_privileged (model, ctx->app_id);
		/* the prompt shows the agent's estimate when it can make one; the
		 * 30 minute rule holds for the larger of the app's and ours */
		{
			guint mine = agent_estimate (ctx, model);
			if (mine > 0) {
				g_info ("estimate for %s on %s: %u s (the app said %u s)",
					reg->entry_point, ctx->address, mine, ctx->estimate);
				ctx->app_estimate = ctx->estimate;
				ctx->estimate = mine;
			}
		}
		if (!bgs_store_get_consent (self->store, ctx->uid, ctx->app_id, ctx->model_id,
					    &stored_found, &stored_allowed, &error)) {
			g_warning ("cannot read stored consent: %s", error->message);
			g_clear_error (&error);
		}
	} else {
		ctx->address = g_strdup (device_key);
	}
	ctx->facts.stored_consent = !stored_found ? BGS_CONSENT_UNKNOWN
				    : stored_allowed ? BGS_CONSENT_ALLOWED : BGS_CONSENT_DENIED;
	ctx->facts.app_busy = bgs_engine_app_busy (self->engine, ctx->uid, ctx->app_id);
	ctx->facts.estimate = (gint64) MAX (ctx->estimate, ctx->app_estimate) * G_USEC_PER_SEC;
	ctx->facts.consent_agent = bgs_consent_agents_has_agent (self->agents, ctx->uid);

	request_check_power (ctx);
}

/* ---- Task1 dispatch --------------------------------------------------------- */

static void
take_events (BgsDaemon *self, BgsTask *task, GDBusMethodInvocation *invocation)
{
	g_autoptr(GPtrArray) events = NULL;
	g_autoptr(GError) error = NULL;
	guint dropped = 0;
	GVariantBuilder b;

	events = bgs_store_take_events (self->store, bgs_task_get_id (task), &dropped, &error);
	if (events == NULL) {
		return_error (invocation, error);
		return;
	}
	g_variant_builder_init (&b, G_VARIANT_TYPE ("a(tsa{sv})"));
	for (guint i = 0; i < events->len; i++) {
		BgsEvent *ev = events->pdata[i];
		GVariantDict d;

		g_variant_dict_init (&d, ev->data);
		g_variant_dict_insert (&d, "time", "t", (guint64) ev->time);
		if (i == 0 && dropped > 0)
			g_variant_dict_insert (&d, "dropped", "u", dropped);
		g_variant_builder_add (&b, "(ts@a{sv})", (guint64) ev->seq,
				       bgs_event_kind_to_string (ev->kind), g_variant_dict_end (&d));
	}
	g_dbus_method_invocation_return_value (invocation, g_variant_new ("(a(tsa{sv}))", &b));
}

static void
task_method_cont (BgsDaemon *self, GDBusMethodInvocation *invocation,
		  const BgsIdentity *identity, gpointer data)
{
	BgsTask *task = data;
	const char *iface = g_dbus_method_invocation_get_interface_name (invocation);
	const char *method = g_dbus_method_invocation_get_method_name (invocation);
	GVariant *params = g_dbus_method_invocation_get_parameters (invocation);
	gint64 id = bgs_task_get_id (task);

	/* someone else's task, or one that is gone, does not exist for the caller */
	if (!bgs_task_is_owned_by (task, identity->uid, identity->app_id) ||
	    lookup_task (self, id) != task) {
		return_new_error (invocation, BGS_ERROR_NOT_FOUND, "no such task");
		g_object_unref (task);
		return;
	}

	if (g_strcmp0 (iface, "org.freedesktop.DBus.Properties") == 0) {
		const char *prop_iface, *name;

		if (g_strcmp0 (method, "Get") == 0) {
			GVariant *v;
			g_variant_get (params, "(&s&s)", &prop_iface, &name);
			v = g_strcmp0 (prop_iface, TASK_IFACE) == 0 ? bgs_task_get_property (task, name) : NULL;
			if (v == NULL)
				g_dbus_method_invocation_return_error (invocation, G_DBUS_ERROR,
								       G_DBUS_ERROR_INVALID_ARGS,
								       "no such property");
			else
				g_dbus_method_invocation_return_value (invocation, g_variant_new ("(v)", v));
		} else if (g_strcmp0 (method, "GetAll") == 0) {
			g_variant_get (params, "(&s)", &prop_iface);
			if (g_strcmp0 (prop_iface, TASK_IFACE) == 0)
				g_dbus_method_invocation_return_value (invocation,
								       g_variant_new ("(@a{sv})", bgs_task_get_properties (task)));
			else
				g_dbus_method_invocation_return_value (invocation, g_variant_new ("(a{sv})", NULL));
		} else {
			g_dbus_method_invocation_return_error (invocation, G_DBUS_ERROR,
							       G_DBUS_ERROR_PROPERTY_READ_ONLY,
							       "Task1 properties are read-only");
		}
		g_object_unref (task);
		return;
	}

	if (g_strcmp0 (method, "Request") == 0) {
		request_cont (self, invocation, identity, task); /* takes the ref */
		return;
	}
	if (g_strcmp0 (method, "Cancel") == 0) {
		if (!bgs_engine_has_task (self->engine, id)) {
			return_new_error (invocation, BGS_ERROR_NOT_RUNNING, "the task is not running");
		} else {
			bgs_engine_cancel (self->engine, id, BGS_CANCEL_ABORT);
			g_dbus_method_invocation_return_value (invocation, NULL);
		}
	} else if (g_strcmp0 (method, "Unregister") == 0) {
		gboolean cancel_running;

		g_variant_get (params, "(b)", &cancel_running);
		if (bgs_engine_has_task (self->engine, id)) {
			bgs_task_set_remove_when_idle (task, TRUE);
			if (cancel_running)
				bgs_engine_cancel (self->engine, id, BGS_CANCEL_ABORT);
		} else {
			task_remove (self, task);
		}
		g_info ("%s unregistered task %" G_GINT64_FORMAT "%s", identity->app_id, id,
			cancel_running ? " (canceling)" : "");
		g_dbus_method_invocation_return_value (invocation, NULL);
	} else if (g_strcmp0 (method, "TakeEvents") == 0) {
		take_events (self, task, invocation);
	} else {
		g_dbus_method_invocation_return_error (invocation, G_DBUS_ERROR,
						       G_DBUS_ERROR_UNKNOWN_METHOD,
						       "unknown method %s", method);
	}
	g_object_unref (task);
}

/* the task of @object_path, NULL when the path names none */
static BgsTask *
task_for_path (BgsDaemon *self, const char *object_path)
{
	const char *node;
	guint64 id;

	if (!g_str_has_prefix (object_path, TASK_PREFIX "/"))
		return NULL;
	node = object_path + strlen (TASK_PREFIX "/");
	if (!g_ascii_string_to_unsigned (node, 10, 1, G_MAXINT64, &id, NULL))
		return NULL;
	return lookup_task (self, (gint64) id);
}

static void
task_method_call (GDBusConnection *connection, const char *sender, const char *object_path,
		  const char *interface_name, const char *method_name, GVariant *parameters,
		  GDBusMethodInvocation *invocation, gpointer user_data)
{
	BgsDaemon *self = user_data;
	BgsTask *task = task_for_path (self, object_path);

	/* a path that names no task answers exactly like another app's task */
	if (task == NULL) {
		return_new_error (invocation, BGS_ERROR_NOT_FOUND, "no such task");
		return;
	}
	/* the task may be gone by the time the caller is identified */
	with_identity (self, invocation, TRUE, task_method_cont, g_object_ref (task), g_object_unref);
}

/* get_property and set_property NULL: property access reaches method_call
 * as org.freedesktop.DBus.Properties, so the owner check can be async */
static const GDBusInterfaceVTable task_vtable = { task_method_call, NULL, NULL, { 0 } };

/* only the caller's own tasks are listed; a caller not identified yet
 * (it never called us) sees none */
static char **
subtree_enumerate (GDBusConnection *connection, const char *sender, const char *object_path,
		   gpointer user_data)
{
	BgsDaemon *self = user_data;
	const BgsIdentity *id = bgs_client_list_lookup (self->clients, sender);
	g_autoptr(GStrvBuilder) b = g_strv_builder_new ();
	GHashTableIter iter;
	gpointer value;

	if (id == NULL || id->app_id == NULL)
		return g_strv_builder_end (b);
	g_hash_table_iter_init (&iter, self->tasks);
	while (g_hash_table_iter_next (&iter, NULL, &value)) {
		if (bgs_task_is_owned_by (value, id->uid, id->app_id)) {
			g_autofree char *node = g_strdup_printf ("%" G_GINT64_FORMAT, bgs_task_get_id (value));
			g_strv_builder_add (b, node);
		}
	}
	return g_strv_builder_end (b);
}

/* every node looks the same, whether it is a task, the caller's or not:
 * GDBus checks calls against this, and it must reveal nothing */
static GDBusInterfaceInfo **
subtree_introspect (GDBusConnection *connection, const char *sender, const char *object_path,
		    const char *node, gpointer user_data)
{
	GDBusInterfaceInfo **infos;

	if (node == NULL)
		return NULL;
	infos = g_new0 (GDBusInterfaceInfo *, 2);
	infos[0] = g_dbus_interface_info_ref (bgs_dbus_task1_interface_info ());
	return infos;
}

static const GDBusInterfaceVTable *
subtree_dispatch (GDBusConnection *connection, const char *sender, const char *object_path,
		  const char *interface_name, const char *node, gpointer *out_user_data,
		  gpointer user_data)
{
	*out_user_data = user_data;
	if (g_strcmp0 (interface_name, TASK_IFACE) != 0)
		return NULL;
	return &task_vtable;
}

static const GDBusSubtreeVTable task_subtree_vtable = {
	subtree_enumerate, subtree_introspect, subtree_dispatch, { 0 }
};

/* ---- wiring ------------------------------------------------------------------- */

static void
presence_changed_cb (BgsDevices *devices, const char *id, gboolean present, gpointer user_data)
{
	BgsDaemon *self = user_data;

	bgs_engine_device_presence (self->engine, id, present);
}

static void
device_removed_cb (BgsDevices *devices, const char *id, gboolean may_return, gpointer user_data)
{
	BgsDaemon *self = user_data;

	/* servicing survives the device (or bluetoothd) going away for a while */
	if (may_return)
		bgs_engine_device_withdrawn (self->engine, id);
	else
		bgs_engine_device_removed (self->engine, id);
}

static void
app_vanished_cb (BgsClientList *clients, guint uid, const char *app_id, gpointer user_data)
{
	BgsDaemon *self = user_data;
	g_autofree char *key = bgs_client_app_key (uid, app_id);

	g_info ("app %s of uid %u has no connection left", app_id, uid);
	bgs_engine_owner_vanished (self->engine, key);
}

static void
remember_app_ids (BgsDaemon *self)
{
	g_autoptr(GPtrArray) list = bgs_app_registry_list (self->apps);

	g_hash_table_remove_all (self->app_ids);
	for (guint i = 0; i < list->len; i++)
		g_hash_table_add (self->app_ids, g_strdup (((BgsAppManifest *) list->pdata[i])->id));
}

static void
apps_changed_cb (BgsAppRegistry *apps, gpointer user_data)
{
	BgsDaemon *self = user_data;
	g_autoptr(GList) old = g_hash_table_get_keys (self->app_ids);

	/* a removed manifest is an uninstalled app: its instances stop */
	for (GList *l = old; l != NULL; l = l->next) {
		if (bgs_app_registry_lookup (apps, l->data) == NULL) {
			g_info ("app %s was removed", (const char *) l->data);
			bgs_engine_app_removed (self->engine, l->data);
		}
	}
	bgs_client_list_rematch (self->clients);
	remember_app_ids (self);
}

static void
models_changed_cb (BgsModelRegistry *models, gpointer user_data)
{
	bgs_devices_rematch (BGS_DAEMON (user_data)->devices);
}

/* instances that were running when the agent died were canceled by it */
static void
recover_unfinished (BgsDaemon *self)
{
	g_autoptr(GPtrArray) list = NULL;
	g_autoptr(GError) error = NULL;

	list = bgs_store_history_unfinished (self->store, &error);
	if (list == NULL) {
		g_warning ("cannot read unfinished history: %s", error->message);
		return;
	}
	for (guint i = 0; i < list->len; i++) {
		BgsHistoryEntry *e = list->pdata[i];
		BgsTask *task = lookup_task (self, e->task_id);
		g_autoptr(GError) end_error = NULL;

		g_info ("task %" G_GINT64_FORMAT " was running when the agent stopped", e->task_id);
		if (!bgs_store_history_end (self->store, e->id, bgs_clock_wall (self->clock),
					    "canceled", "terminating", e->bytes_in, e->bytes_out,
					    &end_error))
			g_warning ("cannot close history entry: %s", end_error->message);
		if (task != NULL) {
			GVariantDict d;
			g_variant_dict_init (&d, NULL);
			g_variant_dict_insert (&d, "reason", "s", "terminating");
			queue_event (self, task, BGS_EVENT_CANCELED, g_variant_dict_end (&d));
		}
	}
}

/* a device-use link dropped: the device is out of range for its tasks */
static void
link_lost_cb (const char *device_id, gpointer user_data)
{
	BgsDaemon *self = user_data;

	bgs_engine_device_presence (self->engine, device_id, FALSE);
}

static BgsPolicyLimits
config_limits (const BgsConfig *config)
{
	BgsPolicyLimits limits;

	bgs_policy_limits_init (&limits);
	limits.device_use_max_runtime = config->device_use_max_runtime_usec;
	limits.servicing_max_runtime = config->device_servicing_max_runtime_usec;
	limits.custom_max_runtime = config->custom_max_runtime_usec;
	limits.idle_timeout = config->idle_timeout_usec;
	limits.servicing_max_estimate = config->max_servicing_estimate_usec;
	limits.min_battery_percent = config->min_battery_percent;
	return limits;
}

BgsDaemon *
bgs_daemon_new (const BgsConfig *config, GDBusConnection *bus, GDBusConnection *system_bus,
		GError **error)
{
	g_autoptr(BgsDaemon) self = g_object_new (BGS_TYPE_DAEMON, NULL);
	g_autofree char *db_path = NULL;
	g_autoptr(GPtrArray) regs = NULL;
	BgsPolicyLimits limits = config_limits (config);
	g_autoptr(GNetworkMonitor) netmon = NULL;

	self->config = (BgsConfig *) config;
	self->bus = g_object_ref (bus);
	self->system_bus = g_object_ref (system_bus);
	self->clock = bgs_clock_new_real ();

	if (g_mkdir_with_parents (config->state_directory, 0700) != 0) {
		g_set_error (error, BGS_ERROR, BGS_ERROR_IO, "cannot create state directory %s: %s",
			     config->state_directory, g_strerror (errno));
		return NULL;
	}
	db_path = g_build_filename (config->state_directory, "bgsync.db", NULL);
	self->store = bgs_store_open (db_path, error);
	if (self->store == NULL)
		return NULL;

	self->engine = bgs_engine_new (self->clock, &limits);
	g_signal_connect (self->engine, "canceled", G_CALLBACK (engine_canceled_cb), self);
	self->apps = bgs_app_registry_new ((const char *const *) config->app_directories, TRUE);
	self->models = bgs_model_registry_new ((const char *const *) config->device_directories, TRUE);
	g_signal_connect (self->apps, "changed", G_CALLBACK (apps_changed_cb), self);
	g_signal_connect (self->models, "changed", G_CALLBACK (models_changed_cb), self);
	remember_app_ids (self);
	self->clients = bgs_client_list_new (bus, self->apps, "/proc");
	g_signal_connect (self->clients, "app-vanished", G_CALLBACK (app_vanished_cb), self);
	self->agents = bgs_consent_agents_new (bus, config->consent_timeout_usec,
					       config->max_agents_per_user);
	self->power = bgs_power_monitor_new (system_bus);
	self->session = bgs_session_monitor_new (system_bus);
	/* follows logind only through its signals: the user-present condition */
	bgs_session_monitor_watch (self->session);
	netmon = g_object_ref (g_network_monitor_get_default ());
	self->network = bgs_network_monitor_new (netmon);
	g_signal_connect (self->power, "changed", G_CALLBACK (conditions_changed_cb), self);
	g_signal_connect (self->session, "changed", G_CALLBACK (conditions_changed_cb), self);
	g_signal_connect (self->network, "changed", G_CALLBACK (conditions_changed_cb), self);
	self->devices = bgs_devices_new (system_bus, bus, self->models, self->store,
					 (const char *const *) config->adapters,
					 config->presence_lost_timeout_usec);
	g_signal_connect (self->devices, "presence-changed", G_CALLBACK (presence_changed_cb), self);
	g_signal_connect (self->devices, "removed", G_CALLBACK (device_removed_cb), self);
	self->links = bgs_links_new (self->devices, config->link_connect_timeout_usec, link_lost_cb, self);
	bgs_devices_set_power_off_grace (self->devices, config->adapter_power_off_grace_usec);
	self->presence = bgs_presence_new (system_bus, self->devices, self->models, config);

	regs = bgs_store_list_registrations (self->store, error);
	if (regs == NULL)
		return NULL;
	for (guint i = 0; i < regs->len; i++) {
		if (daemon_add_task (self, regs->pdata[i], error) == NULL)
			return NULL;
	}
	recover_unfinished (self);
	history_prune (self);

	self->task_subtree_id = g_dbus_connection_register_subtree (
		bus, TASK_PREFIX, &task_subtree_vtable,
		G_DBUS_SUBTREE_FLAGS_DISPATCH_TO_UNENUMERATED_NODES, self, NULL, error);
	if (self->task_subtree_id == 0)
		return NULL;
	self->manager = bgs_dbus_manager1_skeleton_new ();
	bgs_dbus_manager1_set_version (self->manager, PACKAGE_VERSION);
	g_signal_connect (self->manager, "handle-register-task", G_CALLBACK (handle_register_task), self);
	g_signal_connect (self->manager, "handle-get-tasks", G_CALLBACK (handle_get_tasks), self);
	g_signal_connect (self->manager, "handle-get-devices", G_CALLBACK (handle_get_devices), self);
	g_signal_connect (self->manager, "handle-get-consents", G_CALLBACK (handle_get_consents), self);
	g_signal_connect (self->manager, "handle-revoke-consent", G_CALLBACK (handle_revoke_consent), self);
	g_signal_connect (self->manager, "handle-register-consent-agent", G_CALLBACK (handle_register_agent), self);
	g_signal_connect (self->manager, "handle-unregister-consent-agent", G_CALLBACK (handle_unregister_agent), self);
	g_signal_connect (self->manager, "handle-raise-custom-trigger", G_CALLBACK (handle_raise), self);
	g_signal_connect (self->manager, "handle-get-history", G_CALLBACK (handle_get_history), self);
	if (!g_dbus_interface_skeleton_export (G_DBUS_INTERFACE_SKELETON (self->manager), bus,
					       MANAGER_PATH, error))
		return NULL;
	g_signal_connect_after (self->devices, "bluez-changed", G_CALLBACK (bluez_changed_scanning_cb), self);
	sync_scanning (self);
	bgs_devices_start (self->devices);
	return g_steal_pointer (&self);
}

void
bgs_daemon_shutdown (BgsDaemon *self)
{
	if (self->shutting_down)
		return;
	self->shutting_down = TRUE;
	/* recorded as canceled "terminating" and queued for the apps */
	bgs_engine_shutdown (self->engine);
	bgs_consent_agents_release_all (self->agents);
	g_dbus_connection_flush_sync (self->bus, NULL, NULL);
}

static void
bgs_daemon_dispose (GObject *object)
{
	BgsDaemon *self = BGS_DAEMON (object);

	if (self->task_subtree_id != 0) {
		g_dbus_connection_unregister_subtree (self->bus, self->task_subtree_id);
		self->task_subtree_id = 0;
	}
	if (self->manager != NULL)
		g_dbus_interface_skeleton_unexport (G_DBUS_INTERFACE_SKELETON (self->manager));
	g_clear_object (&self->manager);
	if (self->tasks != NULL)
		g_hash_table_remove_all (self->tasks);
	if (self->engine != NULL)
		g_signal_handlers_disconnect_by_data (self->engine, self);
	g_clear_object (&self->presence);
	g_clear_pointer (&self->links, bgs_links_free);
	g_clear_object (&self->devices);
	g_clear_object (&self->clients);
	g_clear_object (&self->agents);
	g_clear_object (&self->power);
	g_clear_object (&self->session);
	g_clear_object (&self->network);
	g_clear_object (&self->engine);
	g_clear_object (&self->apps);
	g_clear_object (&self->models);
	g_clear_object (&self->store);
	G_OBJECT_CLASS (bgs_daemon_parent_class)->dispose (object);
}

static void
bgs_daemon_finalize (GObject *object)
{
	BgsDaemon *self = BGS_DAEMON (object);

	g_hash_table_unref (self->tasks);
	g_hash_table_unref (self->latched);
	g_hash_table_unref (self->app_ids);
	g_clear_pointer (&self->clock, bgs_clock_unref);
	g_clear_object (&self->bus);
	g_clear_object (&self->system_bus);
	G_OBJECT_CLASS (bgs_daemon_parent_class)->finalize (object);
}

static void
bgs_daemon_class_init (BgsDaemonClass *klass)
{
	GObjectClass *object_class = G_OBJECT_CLASS (klass);

	object_class->dispose = bgs_daemon_dispose;
	object_class->finalize = bgs_daemon_finalize;
}

static void
bgs_daemon_init (BgsDaemon *self)
{
	self->tasks = g_hash_table_new_full (g_int64_hash, g_int64_equal, g_free, g_object_unref);
	self->latched = g_hash_table_new_full (g_int64_hash, g_int64_equal, g_free, g_free);
	self->app_ids = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
}
