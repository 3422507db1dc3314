/* bgs-links.h: opens transports to devices for running instances.
 *
 * The daemon installs this as every run's transport opener. For servicing
 * runs the link survives the device going away: on disconnect it waits for
 * the device to come back (same address, address + the model's
 * AddressDelta, or the same name when the model says so), scanning while
 * it waits, reconnects with backoff and tells the profile "reconnected".
 * Device-use links are never silently reconnected. */
#pragma once

#include "bgs-devices.h"
#include "bgs-run.h"

G_BEGIN_DECLS

typedef struct _BgsLinks BgsLinks;

/* @lost: called with the agent device id when a device-use link drops (the
 * device left range: the daemon cancels with condition-loss) */
typedef void (*BgsLinkLostFunc) (const char *device_id, gpointer user_data);

BgsLinks *bgs_links_new (BgsDevices *devices, gint64 connect_timeout_usec,
			 BgsLinkLostFunc lost, gpointer lost_data);
void bgs_links_free (BgsLinks *links);
/* matches BgsTransportOpener; @opener_data is the BgsLinks */
void bgs_links_open_transport (BgsRun *run, const BgsTransportRequest *request,
			       GCancellable *cancellable, GAsyncReadyCallback callback,
			       gpointer callback_data, gpointer opener_data);
/* address + @delta on the last byte(s): "AA:..:01" + 1 = "AA:..:02" */
char *bgs_address_add (const char *address, gint delta);

G_END_DECLS
