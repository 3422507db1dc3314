/* bgs-run.h: one running instance of an entry point, as a profile sees it.
 *
 * The daemon creates a BgsRun when a request is allowed, hands it to the
 * profile's start(), and listens to its signals. A profile reports through
 * bgs_run_progress / bgs_run_note_io / bgs_run_complete and never learns
 * about D-Bus objects, consent or the store. */
#pragma once

#include <gio/gio.h>

#include "bgs-transport.h"
#include "bgs-types.h"

G_BEGIN_DECLS

#define BGS_TYPE_RUN (bgs_run_get_type ())
G_DECLARE_FINAL_TYPE (BgsRun, bgs_run, BGS, RUN, GObject)

typedef struct {
	gint64 task_id;
	BgsTriggerKind trigger;
	const char *entry_point;
	const char *device;     /* address, NULL for custom triggers */
	const char *device_id;  /* agent device id, NULL for custom triggers */
	const char *model;      /* model id, NULL for custom triggers */
	const char *arguments;  /* app argument string, or the custom trigger's data */
	guint estimate;         /* seconds, 0 = unknown */
} BgsRunInfo;

BgsRun *bgs_run_new (const BgsRunInfo *info);

gint64 bgs_run_get_task_id (BgsRun *self);
BgsTriggerKind bgs_run_get_trigger (BgsRun *self);
const char *bgs_run_get_entry_point (BgsRun *self);
const char *bgs_run_get_device (BgsRun *self);
const char *bgs_run_get_device_id (BgsRun *self);
const char *bgs_run_get_model (BgsRun *self);
const char *bgs_run_get_arguments (BgsRun *self);
guint bgs_run_get_estimate (BgsRun *self);

/* file descriptors the app passed with the request, by option name; the run
 * owns them until a profile steals one (then the profile closes it) */
void bgs_run_take_fd (BgsRun *self, const char *name, int fd);
int bgs_run_steal_fd (BgsRun *self, const char *name);
gboolean bgs_run_has_fd (BgsRun *self, const char *name);

/* per-model profile parameters from device metadata ([Profile <name>]) */
void bgs_run_set_params (BgsRun *self, GHashTable *params);
const char *bgs_run_get_param (BgsRun *self, const char *key);
GHashTable *bgs_run_get_params (BgsRun *self);
/* where they came from ("<model file>: [Profile <name>]"), for warnings */
void bgs_run_set_params_origin (BgsRun *self, const char *origin);
const char *bgs_run_get_params_origin (BgsRun *self);

/* opens a transport to the run's device (installed by the daemon); the
 * transport's I/O is counted for the run */
typedef void (*BgsTransportOpener) (BgsRun *run, const BgsTransportRequest *request,
				    GCancellable *cancellable, GAsyncReadyCallback callback,
				    gpointer callback_data, gpointer opener_data);
void bgs_run_set_transport_opener (BgsRun *self, BgsTransportOpener opener, gpointer data,
				   GDestroyNotify destroy);
void bgs_run_open_transport_async (BgsRun *self, const BgsTransportRequest *request,
				   GCancellable *cancellable, GAsyncReadyCallback callback,
				   gpointer user_data);
BgsTransport *bgs_run_open_transport_finish (BgsRun *self, GAsyncResult *res, GError **error);

/* profile -> daemon */
void bgs_run_progress (BgsRun *self, guint percent, const char *status);
void bgs_run_set_estimate (BgsRun *self, guint seconds);
void bgs_run_note_io (BgsRun *self, guint64 bytes_in, guint64 bytes_out);
/* the payload rate the profile measured on this link (bytes/s), kept by
 * the daemon for the next estimate: "link-rate" (gdouble) */
void bgs_run_report_link_rate (BgsRun *self, gdouble bytes_per_second);
/* ends the run; only the first call (and none after cancel) counts */
void bgs_run_complete (BgsRun *self, gboolean success, const char *error_name, const char *message);
void bgs_run_complete_error (BgsRun *self, const GError *error);

/* set by bgs_profile_start(): what bgs_run_cancel() calls */
void bgs_run_set_cancel_handler (BgsRun *self, void (*cancel) (BgsRun *run, BgsCancelReason reason));

/* daemon -> profile: stops the run; the profile's cancel() releases what it
 * holds and no completion follows */
void bgs_run_cancel (BgsRun *self, BgsCancelReason reason);
gboolean bgs_run_is_finished (BgsRun *self);
BgsCancelReason bgs_run_get_cancel_reason (BgsRun *self);

/* profile-private state, freed with the run */
void bgs_run_set_profile_data (BgsRun *self, gpointer data, GDestroyNotify destroy);
gpointer bgs_run_get_profile_data (BgsRun *self);

G_END_DECLS
