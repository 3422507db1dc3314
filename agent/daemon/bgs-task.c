/* bgs-task.c: a registration, its state and its Task1 property values */
#include "bgs-task.h"

#include "bgs-dbus.h"
#include "bgs-error.h"

struct _BgsTask {
	GObject parent_instance;
	BgsRegistration *reg;
	char *object_path;
	BgsTaskState state;
	char *device;
	guint percent;
	char *status;
	guint estimate;
	BgsRun *run;
	guint64 bytes_in;
	guint64 bytes_out;
	gint64 history_id;
	gboolean remove_when_idle;
};

G_DEFINE_TYPE (BgsTask, bgs_task, G_TYPE_OBJECT)

static void
bgs_task_finalize (GObject *object)
{
	BgsTask *self = BGS_TASK (object);

	g_clear_object (&self->run);
	bgs_registration_free (self->reg);
	g_free (self->object_path);
	g_free (self->device);
	g_free (self->status);
	G_OBJECT_CLASS (bgs_task_parent_class)->finalize (object);
}

static void
bgs_task_class_init (BgsTaskClass *klass)
{
	G_OBJECT_CLASS (klass)->finalize = bgs_task_finalize;
}

static void
bgs_task_init (BgsTask *self)
{
	self->status = g_strdup ("");
}

BgsTask *
bgs_task_new (const BgsRegistration *reg)
{
	BgsTask *self = g_object_new (BGS_TYPE_TASK, NULL);

	self->reg = bgs_registration_copy (reg);
	self->object_path = g_strdup_printf ("/org/bgsync/task/%" G_GINT64_FORMAT, reg->id);
	return self;
}

const BgsRegistration *bgs_task_get_registration (BgsTask *self) { return self->reg; }
gint64 bgs_task_get_id (BgsTask *self) { return self->reg->id; }
const char *bgs_task_get_object_path (BgsTask *self) { return self->object_path; }
BgsTaskState bgs_task_get_state (BgsTask *self) { return self->state; }
const char *bgs_task_get_device (BgsTask *self) { return self->device; }
BgsRun *bgs_task_get_run (BgsTask *self) { return self->run; }
gint64 bgs_task_get_history_id (BgsTask *self) { return self->history_id; }
void bgs_task_set_history_id (BgsTask *self, gint64 id) { self->history_id = id; }
gboolean bgs_task_get_remove_when_idle (BgsTask *self) { return self->remove_when_idle; }
void bgs_task_set_remove_when_idle (BgsTask *self, gboolean r) { self->remove_when_idle = r; }

gboolean
bgs_task_is_owned_by (BgsTask *self, guint32 uid, const char *app_id)
{
	return self->reg->uid == uid && g_strcmp0 (self->reg->app_id, app_id) == 0;
}

void
bgs_task_set_state (BgsTask *self, BgsTaskState state, const char *device)
{
	self->state = state;
	g_free (self->device);
	self->device = g_strdup (device != NULL ? device : "");
	if (state == BGS_TASK_STATE_IDLE) {
		self->bytes_in = self->bytes_out = 0;
	} else if (state == BGS_TASK_STATE_CONSENT) {
		self->percent = 0;
		g_free (self->status);
		self->status = g_strdup ("");
	}
}

void
bgs_task_set_progress (BgsTask *self, guint percent, const char *status)
{
	self->percent = MIN (percent, 100u);
	g_free (self->status);
	self->status = g_strdup (status != NULL ? status : "");
}

void
bgs_task_set_estimate (BgsTask *self, guint seconds)
{
	self->estimate = seconds;
}

void
bgs_task_set_run (BgsTask *self, BgsRun *run)
{
	g_set_object (&self->run, run);
}

void
bgs_task_add_bytes (BgsTask *self, guint64 in, guint64 out)
{
	self->bytes_in += in;
	self->bytes_out += out;
}

void
bgs_task_get_bytes (BgsTask *self, guint64 *in, guint64 *out)
{
	*in = self->bytes_in;
	*out = self->bytes_out;
}

GVariant *
bgs_task_get_property (BgsTask *self, const char *name)
{
	if (g_strcmp0 (name, "Name") == 0)
		return g_variant_new_string (self->reg->name);
	if (g_strcmp0 (name, "Trigger") == 0)
		return g_variant_new_string (bgs_trigger_kind_to_string (self->reg->trigger));
	if (g_strcmp0 (name, "EntryPoint") == 0)
		return g_variant_new_string (self->reg->entry_point);
	if (g_strcmp0 (name, "CustomTrigger") == 0)
		return g_variant_new_string (self->reg->custom_trigger != NULL ? self->reg->custom_trigger : "");
	if (g_strcmp0 (name, "Recurrence") == 0)
		return g_variant_new_string (bgs_recurrence_to_string (self->reg->recurrence));
	if (g_strcmp0 (name, "State") == 0)
		return g_variant_new_string (bgs_task_state_to_string (self->state));
	if (g_strcmp0 (name, "Device") == 0)
		return g_variant_new_string (self->device != NULL ? self->device : "");
	if (g_strcmp0 (name, "Progress") == 0)
		return g_variant_new ("(us)", self->percent, self->status);
	if (g_strcmp0 (name, "Estimate") == 0)
		return g_variant_new_uint32 (self->estimate);
	return NULL;
}

GVariant *
bgs_task_get_properties (BgsTask *self)
{
	GDBusInterfaceInfo *info = bgs_dbus_task1_interface_info ();
	GVariantBuilder b;

	g_variant_builder_init (&b, G_VARIANT_TYPE_VARDICT);
	for (guint i = 0; info->properties[i] != NULL; i++) {
		const char *name = info->properties[i]->name;
		g_variant_builder_add (&b, "{sv}", name, bgs_task_get_property (self, name));
	}
	return g_variant_builder_end (&b);
}

