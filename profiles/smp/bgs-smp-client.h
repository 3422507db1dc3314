/* bgs-smp-client.h: SMP client over any packet transport
 *
 * The transport is a seam: the client hands out ATT-sized packets (MTU - 3
 * bytes) through a send function and is given received notification
 * payloads through bgs_smp_client_receive(); bgs_smp_client_attach_fds()
 * wires both to AcquireWrite / AcquireNotify style SOCK_SEQPACKET fds.
 * Up to "window" requests are in flight (1 unless set: devices have few SMP
 * buffers, and OS command 6 says how many); the rest queue. Responses are
 * reassembled from notifications by the header length and matched by
 * sequence number, group and command; anything else is dropped. Each request has a timeout on the injected clock and is sent
 * again (same sequence number) up to the retry limit. A device answering
 * MGMT_ERR_EBUSY is asked again after a delay until the busy limit, so a
 * long flash erase does not fail the request. */
#pragma once

#include <gio/gio.h>

#include "bgs-clock.h"
#include "bgs-smp-cmd.h"
#include "bgs-smp-image.h"

G_BEGIN_DECLS

typedef struct _BgsSmpClient BgsSmpClient;

/* one packet of at most MTU - 3 bytes; FALSE + error when the link is gone */
typedef gboolean (*BgsSmpSendFunc) (const guint8 *data, gsize len, gpointer user_data,
				    GError **error);

#define BGS_SMP_DEFAULT_TIMEOUT (5 * BGS_USEC_PER_SEC)
#define BGS_SMP_DEFAULT_RETRIES 2
#define BGS_SMP_DEFAULT_BUSY_DELAY (200 * 1000)
#define BGS_SMP_DEFAULT_BUSY_LIMIT (30 * BGS_USEC_PER_SEC)
/* Zephyr's default CONFIG_MCUMGR_TRANSPORT_NETBUF_SIZE */
#define BGS_SMP_DEFAULT_MAX_FRAME 384
/* most requests in flight the client ever keeps */
#define BGS_SMP_MAX_WINDOW 16
/* in-flight cap when the caller gives none (a per-model setting overrides) */
#define BGS_SMP_DEFAULT_WINDOW_CAP 4
/* largest frame taken from a device's buf_size: bigger ones gain nothing on
 * BLE, and a window of them on a 1M PHY link would outlast the request
 * timeout and fill the transport's send queue */
#define BGS_SMP_PARAMS_MAX_FRAME 4096

BgsSmpClient *bgs_smp_client_new (BgsClock *clock, BgsSmpVersion version);
BgsSmpClient *bgs_smp_client_ref (BgsSmpClient *client);
/* pending requests fail with BGS_ERROR_CANCELED when the last ref goes */
void bgs_smp_client_unref (BgsSmpClient *client);

/* @mtu is the ATT MTU (23..517); packets are @mtu - 3 bytes */
void bgs_smp_client_set_transport (BgsSmpClient *client, guint mtu, BgsSmpSendFunc send,
				   gpointer user_data, GDestroyNotify notify);
/* takes both fds (they may be the same); reads @notify_fd on the
 * thread-default main context, writes @write_fd without blocking */
gboolean bgs_smp_client_attach_fds (BgsSmpClient *client, int write_fd, int notify_fd,
				    guint mtu, GError **error);
/* link gone: drops the transport and any partial response; the request in
 * flight and the queue fail with BGS_ERROR_IO */
void bgs_smp_client_detach (BgsSmpClient *client);
gboolean bgs_smp_client_is_attached (BgsSmpClient *client);
/* called once when an attached fd reports hangup or error */
void bgs_smp_client_set_link_lost_func (BgsSmpClient *client, GCallback func,
					gpointer user_data);

void bgs_smp_client_set_timeout (BgsSmpClient *client, gint64 timeout_usec, guint retries);
void bgs_smp_client_set_busy (BgsSmpClient *client, gint64 delay_usec, gint64 limit_usec);
/* largest request frame (header + body) the device accepts */
void bgs_smp_client_set_max_frame (BgsSmpClient *client, gsize max_frame);
gsize bgs_smp_client_get_max_frame (BgsSmpClient *client);
/* requests in flight at most (1..BGS_SMP_MAX_WINDOW); uploads and
 * downloads pipeline their chunks up to it */
void bgs_smp_client_set_window (BgsSmpClient *client, guint window);
guint bgs_smp_client_get_window (BgsSmpClient *client);
guint bgs_smp_client_get_mtu (BgsSmpClient *client);

/* one notification payload (any slice of the response stream) */
void bgs_smp_client_receive (BgsSmpClient *client, const guint8 *data, gsize len);

/* sends one request; the result is the parsed response even when the device
 * reports an error in it (see bgs_smp_body_check); errors are transport,
 * timeout (BGS_ERROR_TIMED_OUT), protocol and cancellation ones */
void bgs_smp_client_call_async (BgsSmpClient *client, guint8 op, guint16 group, guint8 id,
				GBytes *body, GCancellable *cancellable,
				GAsyncReadyCallback callback, gpointer user_data);
BgsSmpResponse *bgs_smp_client_call_finish (BgsSmpClient *client, GAsyncResult *result,
					    GError **error);

/* asks the device for its SMP buffers (OS group command 6, "MCUmgr
 * parameters") and sizes the client to them: the frame limit becomes
 * buf_size (at most BGS_SMP_PARAMS_MAX_FRAME) and the window buf_count - 1 (at least 1, at most @window_cap, 0
 * for BGS_SMP_DEFAULT_WINDOW_CAP), as mcumgr clients do. A device without
 * the command (any device error, e.g. MGMT_ERR_ENOTSUP, or a malformed
 * answer) gets one request in flight and the default frame; that is not an
 * error. Fails only for transport errors, timeouts and cancellation.
 * @supported tells which case it was. */
void bgs_smp_client_query_params_async (BgsSmpClient *client, guint window_cap,
					GCancellable *cancellable, GAsyncReadyCallback callback,
					gpointer user_data);
gboolean bgs_smp_client_query_params_finish (BgsSmpClient *client, GAsyncResult *result,
					     gboolean *supported, GError **error);
/* what query_params does with the device's numbers */
guint bgs_smp_window_for_params (guint64 buf_count, guint window_cap);

/* counters for tests and progress */
typedef struct {
	guint64 requests;
	guint64 retransmits;
	guint64 busy_retries;
	guint64 timeouts;
	guint64 dropped_frames; /* unsolicited, out of order, not a response */
	guint64 rewinds;        /* upload/download restarted at an offset the device named */
	guint max_inflight;     /* most requests that were in flight at once */
	guint64 packets_sent;
	guint64 bytes_sent;
	guint64 bytes_received;
} BgsSmpClientStats;

void bgs_smp_client_get_stats (BgsSmpClient *client, BgsSmpClientStats *stats);

/* image upload (group 1 command 1): starts with the offset-0 chunk (len,
 * sha, upgrade) alone and then follows the offsets the device reports, so a
 * device that kept a partial upload of the same "sha" (SHA-256 of all of
 * @image) resumes it. After the first answer up to the client's window of
 * chunks (each filling the frame limit) are in flight. A device that answers
 * an offset other than the one expected (a lost or repeated chunk: Zephyr
 * drops data at the wrong offset and answers with its own) makes the upload
 * go on from that offset; every chunk carries the image's bytes at its
 * offset, so duplicates never corrupt the image. Finishes when the device
 * reports the whole length and the chunks still in flight are answered. */
typedef void (*BgsSmpProgressFunc) (guint64 done, guint64 total, gpointer user_data);

void bgs_smp_client_upload_image_async (BgsSmpClient *client, GBytes *image, guint image_num,
					gboolean upgrade, BgsSmpProgressFunc progress,
					gpointer progress_data, GCancellable *cancellable,
					GAsyncReadyCallback callback, gpointer user_data);
gboolean bgs_smp_client_upload_image_finish (BgsSmpClient *client, GAsyncResult *result,
					     GError **error);

/* file download (group 8 command 0) of @name into @fd (written with
 * pwrite at the file's offsets, fd not taken) from @start_off, so a partial
 * file resumes; finishes with the file's length. Once the device has told
 * the length and its chunk size, up to the client's window of requests are
 * in flight; data is only written where it continues the file, so @fd never
 * has a hole. */
void bgs_smp_client_download_file_async (BgsSmpClient *client, const char *name, int fd,
					 guint64 start_off, BgsSmpProgressFunc progress,
					 gpointer progress_data, GCancellable *cancellable,
					 GAsyncReadyCallback callback, gpointer user_data);
gboolean bgs_smp_client_download_file_finish (BgsSmpClient *client, GAsyncResult *result,
					      guint64 *total, GError **error);

/* file upload (group 8 command 0, write) of @data to @name on the device,
 * following the offsets the device reports */
void bgs_smp_client_upload_file_async (BgsSmpClient *client, const char *name, GBytes *data,
				       BgsSmpProgressFunc progress, gpointer progress_data,
				       GCancellable *cancellable, GAsyncReadyCallback callback,
				       gpointer user_data);
gboolean bgs_smp_client_upload_file_finish (BgsSmpClient *client, GAsyncResult *result,
					    GError **error);

/* typed commands; device errors come back as GErrors (bgs_smp_body_check) */
typedef enum {
	BGS_SMP_IMAGE_READ,    /* state read (1/0, op read) */
	BGS_SMP_IMAGE_TEST,    /* state write: @hash, confirm false */
	BGS_SMP_IMAGE_CONFIRM, /* state write: confirm true (@hash or NULL: the running image) */
} BgsSmpImageAction;

void bgs_smp_client_image_state_async (BgsSmpClient *client, BgsSmpImageAction action,
				       const guint8 *hash, GCancellable *cancellable,
				       GAsyncReadyCallback callback, gpointer user_data);
/* element type BgsSmpImageSlot */
GArray *bgs_smp_client_image_state_finish (BgsSmpClient *client, GAsyncResult *result,
					   GError **error);

/* reset (0/5); the link dropping after the request went out counts as done,
 * since that is what a resetting device does */
void bgs_smp_client_reset_async (BgsSmpClient *client, GCancellable *cancellable,
				 GAsyncReadyCallback callback, gpointer user_data);
gboolean bgs_smp_client_reset_finish (BgsSmpClient *client, GAsyncResult *result, GError **error);

void bgs_smp_client_echo_async (BgsSmpClient *client, const char *text, GCancellable *cancellable,
				GAsyncReadyCallback callback, gpointer user_data);
char *bgs_smp_client_echo_finish (BgsSmpClient *client, GAsyncResult *result, GError **error);

/* file hash/checksum (8/2) of the whole file; @type NULL for the device's
 * default; the output is 32 bytes for sha256, 4 (big endian) for crc32 */
void bgs_smp_client_file_hash_async (BgsSmpClient *client, const char *name, const char *type,
				     GCancellable *cancellable, GAsyncReadyCallback callback,
				     gpointer user_data);
GBytes *bgs_smp_client_file_hash_finish (BgsSmpClient *client, GAsyncResult *result,
					 char **type, guint64 *len, GError **error);

/* the data bytes a chunk of an upload request can carry for @max_frame */
gsize bgs_smp_upload_chunk_size (gsize max_frame, const char *name, guint64 off,
				 guint64 total);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (BgsSmpClient, bgs_smp_client_unref)

G_END_DECLS
