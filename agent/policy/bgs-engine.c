/* bgs-engine.c: reservations, running instances and their runtime rules */
#include "bgs-engine.h"

#include "bgs-error.h"

typedef struct {
	BgsEngine *engine; /* unowned: instances never outlive it */
	gint64 task_id;
	BgsTriggerKind trigger;
	guint32 uid;
	char *app_id;
	char *device;
	char *model;
	char *owner;
	gboolean running;
	gint64 started;
	gint64 max_runtime;  /* snapshot at start */
	gint64 idle_timeout; /* snapshot at start, 0 = no idle rule */
	gint64 last_io;
	guint64 bytes_in;
	guint64 bytes_out;
	guint wall_timer;
	guint idle_timer;
} BgsInstance;

struct _BgsEngine {
	GObject parent_instance;
	BgsClock *clock;
	BgsPolicyLimits limits;
	GHashTable *instances; /* &task_id -> BgsInstance */
	gboolean shut_down;
};

enum {
	SIGNAL_CANCELED,
	SIGNAL_LAST
};

static guint signals[SIGNAL_LAST];

G_DEFINE_TYPE (BgsEngine, bgs_engine, G_TYPE_OBJECT)

static gboolean
is_device_trigger (BgsTriggerKind trigger)
{
	return trigger == BGS_TRIGGER_DEVICE_USE || trigger == BGS_TRIGGER_DEVICE_SERVICING;
}

static void
instance_disarm (BgsInstance *inst)
{
	bgs_clock_remove (inst->engine->clock, inst->wall_timer);
	inst->wall_timer = 0;
	bgs_clock_remove (inst->engine->clock, inst->idle_timer);
	inst->idle_timer = 0;
}

static void
instance_free (gpointer data)
{
	BgsInstance *inst = data;

	instance_disarm (inst);
	g_free (inst->app_id);
	g_free (inst->device);
	g_free (inst->model);
	g_free (inst->owner);
	g_free (inst);
}

static BgsInstance *
lookup (BgsEngine *self, gint64 task_id)
{
	return g_hash_table_lookup (self->instances, &task_id);
}

/* forget first, then tell: a handler sees the engine without the task */
static void
cancel_instance (BgsEngine *self, BgsInstance *inst, BgsCancelReason reason)
{
	gint64 task_id = inst->task_id;

	g_debug ("task %" G_GINT64_FORMAT " canceled: %s", task_id,
		 bgs_cancel_reason_to_string (reason));
	g_hash_table_steal (self->instances, &inst->task_id);
	instance_free (inst);
	g_signal_emit (self, signals[SIGNAL_CANCELED], 0, task_id, (guint) reason);
}

typedef gboolean (*MatchFunc) (BgsInstance *inst, gconstpointer a, gconstpointer b);

/* ids are collected before any signal so that handlers may cancel, finish
 * or reserve while we walk, and new reservations are not swept up */
static void
cancel_matching (BgsEngine *self, MatchFunc match, gconstpointer a, gconstpointer b,
		 BgsCancelReason reason)
{
	g_autoptr(GArray) ids = g_array_new (FALSE, FALSE, sizeof (gint64));
	g_autoptr(BgsEngine) keep = g_object_ref (self);
	GHashTableIter iter;
	gpointer value;

	g_hash_table_iter_init (&iter, self->instances);
	while (g_hash_table_iter_next (&iter, NULL, &value)) {
		BgsInstance *inst = value;
		if (match == NULL || match (inst, a, b))
			g_array_append_val (ids, inst->task_id);
	}
	for (guint i = 0; i < ids->len; i++) {
		BgsInstance *inst = lookup (self, g_array_index (ids, gint64, i));
		if (inst != NULL)
			cancel_instance (self, inst, reason);
	}
}

static void
wall_timer_cb (gpointer user_data)
{
	BgsInstance *inst = user_data;
	BgsEngine *self = inst->engine;
	g_autoptr(BgsEngine) keep = g_object_ref (self);

	inst->wall_timer = 0;
	cancel_instance (self, inst, BGS_CANCEL_EXECUTION_TIME_EXCEEDED);
}

static void
idle_timer_cb (gpointer user_data)
{
	BgsInstance *inst = user_data;
	BgsEngine *self = inst->engine;
	g_autoptr(BgsEngine) keep = NULL;
	gint64 deadline = inst->last_io + inst->idle_timeout;
	gint64 now = bgs_clock_now (self->clock);

	inst->idle_timer = 0;
	/* I/O came after arming: sleep until the silence could be long enough */
	if (now < deadline) {
		inst->idle_timer = bgs_clock_add_timeout (self->clock, deadline - now,
							  idle_timer_cb, inst);
		return;
	}
	keep = g_object_ref (self);
	cancel_instance (self, inst, BGS_CANCEL_IDLE_TASK);
}

BgsEngine *
bgs_engine_new (BgsClock *clock, const BgsPolicyLimits *limits)
{
	BgsEngine *self;

	g_return_val_if_fail (clock != NULL, NULL);

	self = g_object_new (BGS_TYPE_ENGINE, NULL);
	self->clock = bgs_clock_ref (clock);
	if (limits != NULL)
		self->limits = *limits;
	return self;
}

void
bgs_engine_set_limits (BgsEngine *self, const BgsPolicyLimits *limits)
{
	g_return_if_fail (BGS_IS_ENGINE (self));
	g_return_if_fail (limits != NULL);

	self->limits = *limits;
}

const BgsPolicyLimits *
bgs_engine_get_limits (BgsEngine *self)
{
	g_return_val_if_fail (BGS_IS_ENGINE (self), NULL);
	return &self->limits;
}

static gboolean
match_app (BgsInstance *inst, gconstpointer uid, gconstpointer app_id)
{
	return is_device_trigger (inst->trigger) &&
	       inst->uid == *(const guint32 *) uid &&
	       g_strcmp0 (inst->app_id, app_id) == 0;
}

static gboolean
match_device_kind (BgsInstance *inst, gconstpointer device, gconstpointer trigger)
{
	return inst->device != NULL &&
	       g_strcmp0 (inst->device, device) == 0 &&
	       inst->trigger == *(const BgsTriggerKind *) trigger;
}

static gboolean
any_matches (BgsEngine *self, MatchFunc match, gconstpointer a, gconstpointer b)
{
	GHashTableIter iter;
	gpointer value;

	g_hash_table_iter_init (&iter, self->instances);
	while (g_hash_table_iter_next (&iter, NULL, &value)) {
		if (match (value, a, b))
			return TRUE;
	}
	return FALSE;
}

gboolean
bgs_engine_app_busy (BgsEngine *self, guint32 uid, const char *app_id)
{
	g_return_val_if_fail (BGS_IS_ENGINE (self), FALSE);
	if (app_id == NULL)
		return FALSE;
	return any_matches (self, match_app, &uid, app_id);
}

gboolean
bgs_engine_device_busy (BgsEngine *self, const char *device, BgsTriggerKind trigger)
{
	g_return_val_if_fail (BGS_IS_ENGINE (self), FALSE);
	if (device == NULL)
		return FALSE;
	return any_matches (self, match_device_kind, device, &trigger);
}

gboolean
bgs_engine_reserve (BgsEngine *self, const BgsInstanceInfo *info, GError **error)
{
	BgsInstance *inst;

	g_return_val_if_fail (BGS_IS_ENGINE (self), FALSE);
	g_return_val_if_fail (info != NULL, FALSE);

	if (self->shut_down) {
		g_set_error_literal (error, BGS_ERROR, BGS_ERROR_FAILED, "the agent is shutting down");
		return FALSE;
	}
	if ((guint) info->trigger >= BGS_TRIGGER_LAST || info->app_id == NULL ||
	    (is_device_trigger (info->trigger) && info->device == NULL)) {
		g_set_error_literal (error, BGS_ERROR, BGS_ERROR_INVALID_ARGS,
				     "a task needs an app and, for a device trigger, a device");
		return FALSE;
	}
	if (lookup (self, info->task_id) != NULL) {
		g_set_error (error, BGS_ERROR, BGS_ERROR_ALREADY_EXISTS,
			     "task %" G_GINT64_FORMAT " is already reserved", info->task_id);
		return FALSE;
	}
	if (is_device_trigger (info->trigger)) {
		if (bgs_engine_app_busy (self, info->uid, info->app_id)) {
			g_set_error (error, BGS_ERROR, BGS_ERROR_BUSY,
				     "%s already has a device task", info->app_id);
			return FALSE;
		}
		if (bgs_engine_device_busy (self, info->device, info->trigger)) {
			g_set_error (error, BGS_ERROR, BGS_ERROR_BUSY,
				     "device %s already runs a %s task", info->device,
				     bgs_trigger_kind_to_string (info->trigger));
			return FALSE;
		}
	}

	inst = g_new0 (BgsInstance, 1);
	inst->engine = self;
	inst->task_id = info->task_id;
	inst->trigger = info->trigger;
	inst->uid = info->uid;
	inst->app_id = g_strdup (info->app_id);
	inst->device = g_strdup (info->device);
	inst->model = g_strdup (info->model);
	inst->owner = g_strdup (info->owner);
	g_hash_table_insert (self->instances, &inst->task_id, inst);
	g_debug ("task %" G_GINT64_FORMAT " reserved (%s, %s)", inst->task_id,
		 bgs_trigger_kind_to_string (inst->trigger), inst->app_id);
	return TRUE;
}

void
bgs_engine_release (BgsEngine *self, gint64 task_id)
{
	g_return_if_fail (BGS_IS_ENGINE (self));
	g_hash_table_remove (self->instances, &task_id);
}

static gint64
max_runtime_for (BgsEngine *self, BgsTriggerKind trigger)
{
	switch (trigger) {
	case BGS_TRIGGER_DEVICE_USE:
		return self->limits.device_use_max_runtime;
	case BGS_TRIGGER_DEVICE_SERVICING:
		return self->limits.servicing_max_runtime;
	case BGS_TRIGGER_CUSTOM:
	default:
		return self->limits.custom_max_runtime;
	}
}

gboolean
bgs_engine_start (BgsEngine *self, gint64 task_id, GError **error)
{
	BgsInstance *inst;

	g_return_val_if_fail (BGS_IS_ENGINE (self), FALSE);

	inst = lookup (self, task_id);
	if (inst == NULL) {
		g_set_error (error, BGS_ERROR, BGS_ERROR_NOT_FOUND,
			     "task %" G_GINT64_FORMAT " is not reserved", task_id);
		return FALSE;
	}
	if (inst->running) {
		g_set_error (error, BGS_ERROR, BGS_ERROR_FAILED,
			     "task %" G_GINT64_FORMAT " is already running", task_id);
		return FALSE;
	}
	inst->running = TRUE;
	inst->started = bgs_clock_now (self->clock);
	inst->last_io = inst->started;
	inst->max_runtime = max_runtime_for (self, inst->trigger);
	inst->wall_timer = bgs_clock_add_timeout (self->clock, inst->max_runtime,
						  wall_timer_cb, inst);
	/* only device-use must keep talking; servicing may reboot the device */
	if (inst->trigger == BGS_TRIGGER_DEVICE_USE) {
		inst->idle_timeout = self->limits.idle_timeout;
		inst->idle_timer = bgs_clock_add_timeout (self->clock, inst->idle_timeout,
							  idle_timer_cb, inst);
	}
	g_debug ("task %" G_GINT64_FORMAT " running, limit %" G_GINT64_FORMAT " us",
		 task_id, inst->max_runtime);
	return TRUE;
}

gboolean
bgs_engine_is_running (BgsEngine *self, gint64 task_id)
{
	BgsInstance *inst;

	g_return_val_if_fail (BGS_IS_ENGINE (self), FALSE);
	inst = lookup (self, task_id);
	return inst != NULL && inst->running;
}

gboolean
bgs_engine_has_task (BgsEngine *self, gint64 task_id)
{
	g_return_val_if_fail (BGS_IS_ENGINE (self), FALSE);
	return lookup (self, task_id) != NULL;
}

void
bgs_engine_note_io (BgsEngine *self, gint64 task_id, guint64 bytes_in, guint64 bytes_out)
{
	BgsInstance *inst;

	g_return_if_fail (BGS_IS_ENGINE (self));
	inst = lookup (self, task_id);
	if (inst == NULL)
		return;
	/* saturate rather than wrap on a hostile byte count */
	inst->bytes_in = (G_MAXUINT64 - inst->bytes_in < bytes_in) ? G_MAXUINT64 : inst->bytes_in + bytes_in;
	inst->bytes_out = (G_MAXUINT64 - inst->bytes_out < bytes_out) ? G_MAXUINT64 : inst->bytes_out + bytes_out;
	/* the idle timer looks at this when it fires: no rearm per I/O */
	inst->last_io = bgs_clock_now (self->clock);
}

void
bgs_engine_get_bytes (BgsEngine *self, gint64 task_id, guint64 *bytes_in, guint64 *bytes_out)
{
	BgsInstance *inst;

	g_return_if_fail (BGS_IS_ENGINE (self));
	inst = lookup (self, task_id);
	if (bytes_in != NULL)
		*bytes_in = inst != NULL ? inst->bytes_in : 0;
	if (bytes_out != NULL)
		*bytes_out = inst != NULL ? inst->bytes_out : 0;
}

static gboolean
match_device_use_on (BgsInstance *inst, gconstpointer device, gconstpointer unused)
{
	return inst->trigger == BGS_TRIGGER_DEVICE_USE && g_strcmp0 (inst->device, device) == 0;
}

void
bgs_engine_device_presence (BgsEngine *self, const char *device, gboolean present)
{
	g_return_if_fail (BGS_IS_ENGINE (self));
	if (device == NULL || present)
		return;
	cancel_matching (self, match_device_use_on, device, NULL, BGS_CANCEL_CONDITION_LOSS);
}

static gboolean
match_device (BgsInstance *inst, gconstpointer device, gconstpointer unused)
{
	return inst->device != NULL && g_strcmp0 (inst->device, device) == 0;
}

void
bgs_engine_device_removed (BgsEngine *self, const char *device)
{
	g_return_if_fail (BGS_IS_ENGINE (self));
	if (device == NULL)
		return;
	cancel_matching (self, match_device, device, NULL, BGS_CANCEL_RESOURCE_REVOCATION);
}

/* the device's object went away but it may come back (a temporary device
 * expired during a reboot, bluetoothd restarting): servicing waits for it
 * within its limits, device-use cannot */
void
bgs_engine_device_withdrawn (BgsEngine *self, const char *device)
{
	g_return_if_fail (BGS_IS_ENGINE (self));
	if (device == NULL)
		return;
	cancel_matching (self, match_device_use_on, device, NULL, BGS_CANCEL_RESOURCE_REVOCATION);
}

static gboolean
match_owner (BgsInstance *inst, gconstpointer bus_name, gconstpointer unused)
{
	return inst->owner != NULL && g_strcmp0 (inst->owner, bus_name) == 0;
}

void
bgs_engine_owner_vanished (BgsEngine *self, const char *bus_name)
{
	g_return_if_fail (BGS_IS_ENGINE (self));
	if (bus_name == NULL)
		return;
	cancel_matching (self, match_owner, bus_name, NULL, BGS_CANCEL_TERMINATING);
}

typedef struct {
	guint32 uid;
	const char *app_id;
} AppKey;

static gboolean
match_consent (BgsInstance *inst, gconstpointer key_ptr, gconstpointer model)
{
	const AppKey *key = key_ptr;

	return inst->trigger == BGS_TRIGGER_DEVICE_USE &&
	       inst->uid == key->uid &&
	       g_strcmp0 (inst->app_id, key->app_id) == 0 &&
	       (model == NULL || g_strcmp0 (inst->model, model) == 0);
}

void
bgs_engine_consent_revoked (BgsEngine *self, guint32 uid, const char *app_id, const char *model)
{
	AppKey key = { uid, app_id };

	g_return_if_fail (BGS_IS_ENGINE (self));
	if (app_id == NULL)
		return;
	cancel_matching (self, match_consent, &key, model, BGS_CANCEL_UNINSTALL);
}

static gboolean
match_app_id (BgsInstance *inst, gconstpointer app_id, gconstpointer unused)
{
	return g_strcmp0 (inst->app_id, app_id) == 0;
}

void
bgs_engine_app_removed (BgsEngine *self, const char *app_id)
{
	g_return_if_fail (BGS_IS_ENGINE (self));
	if (app_id == NULL)
		return;
	cancel_matching (self, match_app_id, app_id, NULL, BGS_CANCEL_UNINSTALL);
}

void
bgs_engine_cancel (BgsEngine *self, gint64 task_id, BgsCancelReason reason)
{
	BgsInstance *inst;
	g_autoptr(BgsEngine) keep = NULL;

	g_return_if_fail (BGS_IS_ENGINE (self));
	g_return_if_fail (reason > BGS_CANCEL_NONE && reason < BGS_CANCEL_LAST);

	inst = lookup (self, task_id);
	if (inst == NULL)
		return;
	keep = g_object_ref (self);
	cancel_instance (self, inst, reason);
}

void
bgs_engine_finish (BgsEngine *self, gint64 task_id)
{
	g_return_if_fail (BGS_IS_ENGINE (self));
	g_hash_table_remove (self->instances, &task_id);
}

void
bgs_engine_shutdown (BgsEngine *self)
{
	g_return_if_fail (BGS_IS_ENGINE (self));
	self->shut_down = TRUE;
	cancel_matching (self, NULL, NULL, NULL, BGS_CANCEL_TERMINATING);
}

guint
bgs_engine_count_running (BgsEngine *self)
{
	GHashTableIter iter;
	gpointer value;
	guint n = 0;

	g_return_val_if_fail (BGS_IS_ENGINE (self), 0);
	g_hash_table_iter_init (&iter, self->instances);
	while (g_hash_table_iter_next (&iter, NULL, &value)) {
		if (((BgsInstance *) value)->running)
			n++;
	}
	return n;
}

static void
bgs_engine_finalize (GObject *object)
{
	BgsEngine *self = BGS_ENGINE (object);

	/* instances disarm their timers on the still-referenced clock */
	g_hash_table_unref (self->instances);
	bgs_clock_unref (self->clock);
	G_OBJECT_CLASS (bgs_engine_parent_class)->finalize (object);
}

static void
bgs_engine_class_init (BgsEngineClass *klass)
{
	GObjectClass *object_class = G_OBJECT_CLASS (klass);

	object_class->finalize = bgs_engine_finalize;

	signals[SIGNAL_CANCELED] =
		g_signal_new ("canceled", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST,
			      0, NULL, NULL, NULL,
			      G_TYPE_NONE, 2, G_TYPE_INT64, G_TYPE_UINT);
}

static void
bgs_engine_init (BgsEngine *self)
{
	self->instances = g_hash_table_new_full (g_int64_hash, g_int64_equal, NULL, instance_free);
	bgs_policy_limits_init (&self->limits);
}
