/* bgs-smp-server.h: the device side of SMP, for bgsync-wearable and tests
 *
 * OS echo/reset, image state/upload/test/confirm over a flash store of two
 * slot files with MCUboot-like swap semantics, and file system
 * download/upload/hash over a directory. State directory layout:
 *   slot0.bin   primary slot: the running image
 *   slot1.bin   secondary slot: where uploads go
 *   boot.ini    swap state: pending (none|test|permanent), testing (bool)
 *   files/      what the fs group serves ("/a/b" is files/a/b)
 * The upload offset lives in memory only, as on Zephyr: a reconnect resumes
 * (same "sha"), a reset starts over. Requests are handled one by one in the
 * order they arrive, however many the client pipelines; an upload chunk at
 * any offset but the expected one is dropped and answered with the expected
 * offset (Zephyr's img_mgmt_upload). OS params (0/6) tell "buf_size" (the
 * frame limit) and "buf_count". Reassembly of a request from several writes
 * is per connection (bgs_smp_server_reset_link); a write whose header is
 * impossible (reserved bits, longer than buf_size) is dropped, and so is a
 * partial request not continued within rx_timeout_usec, so a cut frame
 * does not make the device deaf to the next request. */
#pragma once

#include <glib.h>

#include "bgs-clock.h"
#include "bgs-smp-image.h"

G_BEGIN_DECLS

typedef struct _BgsSmpServer BgsSmpServer;

/* one notification of at most MTU - 3 bytes */
typedef gboolean (*BgsSmpServerSendFunc) (const guint8 *data, gsize len, gpointer user_data,
					  GError **error);
/* "reset" was answered: the device should drop off the air now */
typedef void (*BgsSmpServerResetFunc) (BgsSmpServer *server, gpointer user_data);

typedef struct {
	gboolean reject_images;   /* refuse every upload at offset 0 */
	gboolean no_confirm_revert; /* keep an unconfirmed test image on the next reset */
	gboolean revert_on_test;  /* the test image "fails to boot": reverted at once */
	guint64 stall_after;      /* stop answering after this many upload bytes (0: never) */
	gint64 erase_usec;        /* slot erase time: MGMT_ERR_EBUSY until it is over */
	gsize max_frame;          /* largest response frame (default 512) */
	gint64 reset_delay_usec;  /* answer to reset, then go down after this (default 250 ms) */
	guint buf_count;          /* SMP buffers told by OS params 0/6 (default 4) */
	gboolean no_params;       /* answer 0/6 with MGMT_ERR_ENOTSUP, like older firmware */
	gint64 rx_timeout_usec;   /* drop a partial request idle this long (default 1 s) */
} BgsSmpServerOptions;

#define BGS_SMP_SERVER_RX_TIMEOUT_USEC (1 * G_USEC_PER_SEC)

BgsSmpServer *bgs_smp_server_new (BgsClock *clock, const char *state_dir,
				  const BgsSmpServerOptions *options, GError **error);
void bgs_smp_server_free (BgsSmpServer *server);

void bgs_smp_server_set_transport (BgsSmpServer *server, guint mtu, BgsSmpServerSendFunc send,
				   gpointer user_data);
/* reads requests from @read_fd, writes notifications to @write_fd (may be
 * the same fd); takes both */
gboolean bgs_smp_server_attach_fds (BgsSmpServer *server, int read_fd, int write_fd,
				    guint mtu, GError **error);
void bgs_smp_server_detach (BgsSmpServer *server);
void bgs_smp_server_set_reset_func (BgsSmpServer *server, BgsSmpServerResetFunc func,
				    gpointer user_data);

/* one written value (any slice of the request stream) */
void bgs_smp_server_receive (BgsSmpServer *server, const guint8 *data, gsize len);
/* a central connected or went away, or a new write session started:
 * forget any partial request */
void bgs_smp_server_reset_link (BgsSmpServer *server);

/* what MCUboot does at power-on: swap a pending image in, or revert an
 * unconfirmed test image; forgets any partial upload */
gboolean bgs_smp_server_boot (BgsSmpServer *server, GError **error);

/* the running image (slot 0); FALSE when the slot holds no valid image */
gboolean bgs_smp_server_get_running (BgsSmpServer *server, BgsSmpImageInfo *info);
/* bytes of image data accepted so far (for --stall-after) */
guint64 bgs_smp_server_get_upload_bytes (BgsSmpServer *server);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (BgsSmpServer, bgs_smp_server_free)

G_END_DECLS
