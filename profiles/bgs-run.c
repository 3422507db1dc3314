/* bgs-run.c: one running instance of an entry point */
#include "bgs-run.h"

#include <unistd.h>

#include "bgs-error.h"

struct _BgsRun {
	GObject parent_instance;
	gint64 task_id;
	BgsTriggerKind trigger;
	char *entry_point;
	char *device;
	char *device_id;
	char *model;
	char *arguments;
	guint estimate;
	GHashTable *fds;    /* name -> GINT_TO_POINTER (fd + 1) */
	GHashTable *params; /* nullable, string -> string */
	char *params_origin;
	gboolean finished;
	BgsCancelReason cancel_reason;
	void (*cancel) (BgsRun *run, BgsCancelReason reason);
	gpointer profile_data;
	GDestroyNotify profile_data_destroy;
	BgsTransportOpener opener;
	gpointer opener_data;
	GDestroyNotify opener_destroy;
};

enum { SIGNAL_PROGRESS, SIGNAL_IO, SIGNAL_COMPLETED, SIGNAL_ESTIMATE, SIGNAL_LINK_RATE, SIGNAL_LAST };
static guint signals[SIGNAL_LAST];

G_DEFINE_TYPE (BgsRun, bgs_run, G_TYPE_OBJECT)

static void
close_fd (gpointer data)
{
	int fd = GPOINTER_TO_INT (data) - 1;

	if (fd >= 0)
		close (fd);
}

static void
bgs_run_finalize (GObject *object)
{
	BgsRun *self = BGS_RUN (object);

	if (self->profile_data_destroy != NULL)
		self->profile_data_destroy (self->profile_data);
	if (self->opener_destroy != NULL)
		self->opener_destroy (self->opener_data);
	g_hash_table_unref (self->fds);
	g_clear_pointer (&self->params, g_hash_table_unref);
	g_free (self->params_origin);
	g_free (self->entry_point);
	g_free (self->device);
	g_free (self->device_id);
	g_free (self->model);
	g_free (self->arguments);
	G_OBJECT_CLASS (bgs_run_parent_class)->finalize (object);
}

static void
bgs_run_class_init (BgsRunClass *klass)
{
	GObjectClass *object_class = G_OBJECT_CLASS (klass);

	object_class->finalize = bgs_run_finalize;
	/* (guint percent, const char *status) */
	signals[SIGNAL_PROGRESS] = g_signal_new ("progress", G_TYPE_FROM_CLASS (klass),
						 G_SIGNAL_RUN_LAST, 0, NULL, NULL, NULL,
						 G_TYPE_NONE, 2, G_TYPE_UINT, G_TYPE_STRING);
	/* (guint64 bytes_in, guint64 bytes_out) */
	signals[SIGNAL_IO] = g_signal_new ("io", G_TYPE_FROM_CLASS (klass),
					   G_SIGNAL_RUN_LAST, 0, NULL, NULL, NULL,
					   G_TYPE_NONE, 2, G_TYPE_UINT64, G_TYPE_UINT64);
	/* (gboolean success, const char *error_name, const char *message) */
	signals[SIGNAL_COMPLETED] = g_signal_new ("completed", G_TYPE_FROM_CLASS (klass),
						  G_SIGNAL_RUN_LAST, 0, NULL, NULL, NULL,
						  G_TYPE_NONE, 3, G_TYPE_BOOLEAN, G_TYPE_STRING,
						  G_TYPE_STRING);
	/* (gdouble bytes_per_second) */
	signals[SIGNAL_LINK_RATE] = g_signal_new ("link-rate", G_TYPE_FROM_CLASS (klass),
						  G_SIGNAL_RUN_LAST, 0, NULL, NULL, NULL,
						  G_TYPE_NONE, 1, G_TYPE_DOUBLE);
	/* (guint seconds) */
	signals[SIGNAL_ESTIMATE] = g_signal_new ("estimate", G_TYPE_FROM_CLASS (klass),
						 G_SIGNAL_RUN_LAST, 0, NULL, NULL, NULL,
						 G_TYPE_NONE, 1, G_TYPE_UINT);
}

static void
bgs_run_init (BgsRun *self)
{
	self->fds = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, close_fd);
}

BgsRun *
bgs_run_new (const BgsRunInfo *info)
{
	BgsRun *self = g_object_new (BGS_TYPE_RUN, NULL);

	self->task_id = info->task_id;
	self->trigger = info->trigger;
	self->entry_point = g_strdup (info->entry_point);
	self->device = g_strdup (info->device);
	self->device_id = g_strdup (info->device_id);
	self->model = g_strdup (info->model);
	self->arguments = g_strdup (info->arguments != NULL ? info->arguments : "");
	self->estimate = info->estimate;
	return self;
}

gint64 bgs_run_get_task_id (BgsRun *self) { return self->task_id; }
BgsTriggerKind bgs_run_get_trigger (BgsRun *self) { return self->trigger; }
const char *bgs_run_get_entry_point (BgsRun *self) { return self->entry_point; }
const char *bgs_run_get_device (BgsRun *self) { return self->device; }
const char *bgs_run_get_device_id (BgsRun *self) { return self->device_id; }
const char *bgs_run_get_model (BgsRun *self) { return self->model; }
const char *bgs_run_get_arguments (BgsRun *self) { return self->arguments; }
guint bgs_run_get_estimate (BgsRun *self) { return self->estimate; }

void
bgs_run_take_fd (BgsRun *self, const char *name, int fd)
{
	g_return_if_fail (fd >= 0);
	g_hash_table_replace (self->fds, g_strdup (name), GINT_TO_POINTER (fd + 1));
}

int
bgs_run_steal_fd (BgsRun *self, const char *name)
{
	gpointer value;
	g_autofree char *key = NULL;

	if (!g_hash_table_steal_extended (self->fds, name, (gpointer *) &key, &value))
		return -1;
	return GPOINTER_TO_INT (value) - 1;
}

gboolean
bgs_run_has_fd (BgsRun *self, const char *name)
{
	return g_hash_table_contains (self->fds, name);
}

void
bgs_run_set_params (BgsRun *self, GHashTable *params)
{
	g_clear_pointer (&self->params, g_hash_table_unref);
	if (params != NULL)
		self->params = g_hash_table_ref (params);
}

GHashTable *
bgs_run_get_params (BgsRun *self)
{
	return self->params;
}

void
bgs_run_set_params_origin (BgsRun *self, const char *origin)
{
	g_free (self->params_origin);
	self->params_origin = g_strdup (origin);
}

const char *
bgs_run_get_params_origin (BgsRun *self)
{
	return self->params_origin;
}

const char *
bgs_run_get_param (BgsRun *self, const char *key)
{
	if (self->params == NULL)
		return NULL;
	return g_hash_table_lookup (self->params, key);
}

void
bgs_run_progress (BgsRun *self, guint percent, const char *status)
{
	if (self->finished)
		return;
	g_signal_emit (self, signals[SIGNAL_PROGRESS], 0, MIN (percent, 100u),
		       status != NULL ? status : "");
}

void
bgs_run_set_estimate (BgsRun *self, guint seconds)
{
	if (self->finished || self->estimate == seconds)
		return;
	self->estimate = seconds;
	g_signal_emit (self, signals[SIGNAL_ESTIMATE], 0, seconds);
}

void
bgs_run_note_io (BgsRun *self, guint64 bytes_in, guint64 bytes_out)
{
	if (self->finished)
		return;
	g_signal_emit (self, signals[SIGNAL_IO], 0, bytes_in, bytes_out);
}

void
bgs_run_report_link_rate (BgsRun *self, gdouble bytes_per_second)
{
	if (self->finished || !(bytes_per_second > 0) || bytes_per_second > 1e9)
		return;
	g_signal_emit (self, signals[SIGNAL_LINK_RATE], 0, bytes_per_second);
}

void
bgs_run_complete (BgsRun *self, gboolean success, const char *error_name, const char *message)
{
	if (self->finished)
		return;
	self->finished = TRUE;
	g_signal_emit (self, signals[SIGNAL_COMPLETED], 0, success,
		       error_name != NULL ? error_name : "",
		       message != NULL ? message : "");
}

void
bgs_run_complete_error (BgsRun *self, const GError *error)
{
	g_autoptr(GError) dbus_error = bgs_error_to_dbus (error);

	bgs_run_complete (self, FALSE, bgs_error_to_dbus_name (dbus_error->code),
			  dbus_error->message);
}

void
bgs_run_set_cancel_handler (BgsRun *self, void (*cancel) (BgsRun *run, BgsCancelReason reason))
{
	self->cancel = cancel;
}

void
bgs_run_cancel (BgsRun *self, BgsCancelReason reason)
{
	g_autoptr(BgsRun) keep = g_object_ref (self);

	if (self->finished)
		return;
	self->finished = TRUE;
	self->cancel_reason = reason;
	if (self->cancel != NULL)
		self->cancel (self, reason);
}

gboolean
bgs_run_is_finished (BgsRun *self)
{
	return self->finished;
}

BgsCancelReason
bgs_run_get_cancel_reason (BgsRun *self)
{
	return self->cancel_reason;
}

void
bgs_run_set_profile_data (BgsRun *self, gpointer data, GDestroyNotify destroy)
{
	if (self->profile_data_destroy != NULL)
		self->profile_data_destroy (self->profile_data);
	self->profile_data = data;
	self->profile_data_destroy = destroy;
}

gpointer
bgs_run_get_profile_data (BgsRun *self)
{
	return self->profile_data;
}

void
bgs_run_set_transport_opener (BgsRun *self, BgsTransportOpener opener, gpointer data,
			      GDestroyNotify destroy)
{
	if (self->opener_destroy != NULL)
		self->opener_destroy (self->opener_data);
	self->opener = opener;
	self->opener_data = data;
	self->opener_destroy = destroy;
}

static void
transport_io_cb (BgsTransport *transport, guint64 in, guint64 out, gpointer user_data)
{
	bgs_run_note_io (BGS_RUN (user_data), in, out);
}

static void
open_transport_cb (GObject *source, GAsyncResult *res, gpointer user_data)
{
	g_autoptr(GTask) task = user_data;
	BgsRun *self = g_task_get_source_object (task);
	g_autoptr(GError) error = NULL;
	BgsTransport *transport = g_task_propagate_pointer (G_TASK (res), &error);

	if (transport == NULL) {
		g_task_return_error (task, g_steal_pointer (&error));
		return;
	}
	/* every byte through the transport is device I/O of this run */
	g_signal_connect_object (transport, "io", G_CALLBACK (transport_io_cb), self, 0);
	g_task_return_pointer (task, transport, g_object_unref);
}

void
bgs_run_open_transport_async (BgsRun *self, const BgsTransportRequest *request,
			      GCancellable *cancellable, GAsyncReadyCallback callback,
			      gpointer user_data)
{
	GTask *task = g_task_new (self, cancellable, callback, user_data);

	if (self->opener == NULL || self->device == NULL) {
		g_task_return_new_error (task, BGS_ERROR, BGS_ERROR_NOT_SUPPORTED,
					 "this run has no device to open a transport to");
		g_object_unref (task);
		return;
	}
	/* the opener completes a GTask whose pointer is a BgsTransport */
	self->opener (self, request, cancellable, open_transport_cb, task, self->opener_data);
}

BgsTransport *
bgs_run_open_transport_finish (BgsRun *self, GAsyncResult *res, GError **error)
{
	return g_task_propagate_pointer (G_TASK (res), error);
}
