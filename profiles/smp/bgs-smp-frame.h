/* bgs-smp-frame.h: the MCUmgr SMP frame header and its error codes
 *
 * Layout from Zephyr doc/services/device_mgmt/smp_protocol.rst, "Frame: The
 * envelope": 8 bytes, big endian, then a CBOR body of Data Length bytes. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

#define BGS_SMP_HEADER_SIZE 8
#define BGS_SMP_MAX_BODY G_MAXUINT16

/* mcumgr_op_t */
typedef enum {
	BGS_SMP_OP_READ = 0,
	BGS_SMP_OP_READ_RSP = 1,
	BGS_SMP_OP_WRITE = 2,
	BGS_SMP_OP_WRITE_RSP = 3,
} BgsSmpOp;

/* Ver field: 0b00 legacy (rc only), 0b01 SMP version 2 (group errors) */
typedef enum {
	BGS_SMP_V1 = 0,
	BGS_SMP_V2 = 1,
} BgsSmpVersion;

/* mcumgr_group_t, the ones bgsync uses */
enum {
	BGS_SMP_GROUP_OS = 0,
	BGS_SMP_GROUP_IMAGE = 1,
	BGS_SMP_GROUP_FS = 8,
};

enum {
	BGS_SMP_OS_ECHO = 0,
	BGS_SMP_OS_RESET = 5,
	BGS_SMP_OS_PARAMS = 6,
	BGS_SMP_IMAGE_STATE = 0,
	BGS_SMP_IMAGE_UPLOAD = 1,
	BGS_SMP_IMAGE_ERASE = 5,
	BGS_SMP_FS_FILE = 0,
	BGS_SMP_FS_STAT = 1,
	BGS_SMP_FS_HASH = 2,
};

/* mcumgr_err_t ("rc") */
typedef enum {
	BGS_SMP_RC_EOK = 0,
	BGS_SMP_RC_EUNKNOWN = 1,
	BGS_SMP_RC_ENOMEM = 2,
	BGS_SMP_RC_EINVAL = 3,
	BGS_SMP_RC_ETIMEOUT = 4,
	BGS_SMP_RC_ENOENT = 5,
	BGS_SMP_RC_EBADSTATE = 6,
	BGS_SMP_RC_EMSGSIZE = 7,
	BGS_SMP_RC_ENOTSUP = 8,
	BGS_SMP_RC_ECORRUPT = 9,
	BGS_SMP_RC_EBUSY = 10,
	BGS_SMP_RC_EACCESSDENIED = 11,
	BGS_SMP_RC_UNSUPPORTED_TOO_OLD = 12,
	BGS_SMP_RC_UNSUPPORTED_TOO_NEW = 13,
	BGS_SMP_RC_EPERUSER = 256,
} BgsSmpRc;

/* img_mgmt_ret_code_t (group 1), the ones the wearable sends */
enum {
	BGS_SMP_IMG_RC_UNKNOWN = 1,
	BGS_SMP_IMG_RC_NO_IMAGE = 3,
	BGS_SMP_IMG_RC_HASH_NOT_FOUND = 8,
	BGS_SMP_IMG_RC_NO_FREE_SLOT = 9,
	BGS_SMP_IMG_RC_FLASH_WRITE_FAILED = 12,
	BGS_SMP_IMG_RC_INVALID_OFFSET = 20,
	BGS_SMP_IMG_RC_INVALID_LENGTH = 21,
	BGS_SMP_IMG_RC_INVALID_IMAGE_HEADER = 22,
	BGS_SMP_IMG_RC_INVALID_IMAGE_HEADER_MAGIC = 23,
	BGS_SMP_IMG_RC_INVALID_HASH = 24,
	BGS_SMP_IMG_RC_CURRENT_VERSION_IS_NEWER = 27,
	BGS_SMP_IMG_RC_IMAGE_ALREADY_PENDING = 28,
};

/* fs_mgmt_err_code_t (group 8), the ones the wearable sends */
enum {
	BGS_SMP_FS_RC_UNKNOWN = 1,
	BGS_SMP_FS_RC_FILE_INVALID_NAME = 2,
	BGS_SMP_FS_RC_FILE_NOT_FOUND = 3,
	BGS_SMP_FS_RC_FILE_IS_DIRECTORY = 4,
	BGS_SMP_FS_RC_FILE_WRITE_FAILED = 10,
	BGS_SMP_FS_RC_FILE_OFFSET_NOT_VALID = 11,
	BGS_SMP_FS_RC_FILE_OFFSET_LARGER_THAN_FILE = 12,
	BGS_SMP_FS_RC_CHECKSUM_HASH_NOT_FOUND = 13,
};

typedef struct {
	guint8 op;      /* BgsSmpOp */
	guint8 version; /* BgsSmpVersion */
	guint8 flags;
	guint16 len;    /* body length */
	guint16 group;
	guint8 seq;
	guint8 id;
} BgsSmpHeader;

void bgs_smp_header_encode (const BgsSmpHeader *hdr, guint8 out[BGS_SMP_HEADER_SIZE]);
/* needs @len >= 8; rejects reserved bits and reserved versions */
gboolean bgs_smp_header_decode (const guint8 *data, gsize len, BgsSmpHeader *hdr,
				GError **error);

/* a whole frame: header (with len set from @body) + body */
GBytes *bgs_smp_frame_build (guint8 op, guint8 version, guint16 group, guint8 id,
			     guint8 seq, GBytes *body);

gboolean bgs_smp_op_is_response (guint8 op);

/* "MGMT_ERR_EBUSY" and "device busy"; unknown codes get a generic text */
const char *bgs_smp_rc_name (gint64 rc);
const char *bgs_smp_rc_message (gint64 rc);
/* group-specific (SMP v2 "err"): "IMG_MGMT_ERR_NO_FREE_SLOT", ... */
const char *bgs_smp_group_rc_name (guint64 group, guint64 rc);
const char *bgs_smp_group_rc_message (guint64 group, guint64 rc);

G_END_DECLS
