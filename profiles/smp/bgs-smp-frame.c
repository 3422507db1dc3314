/* bgs-smp-frame.c: SMP header codec and error tables */
#include "bgs-smp-frame.h"

#include "bgs-error.h"

void
bgs_smp_header_encode (const BgsSmpHeader *hdr, guint8 out[BGS_SMP_HEADER_SIZE])
{
	out[0] = (guint8) ((hdr->op & 0x07) | ((hdr->version & 0x03) << 3));
	out[1] = hdr->flags;
	out[2] = (guint8) (hdr->len >> 8);
	out[3] = (guint8) (hdr->len & 0xff);
	out[4] = (guint8) (hdr->group >> 8);
	out[5] = (guint8) (hdr->group & 0xff);
	out[6] = hdr->seq;
	out[7] = hdr->id;
}

gboolean
bgs_smp_header_decode (const guint8 *data, gsize len, BgsSmpHeader *hdr, GError **error)
{
	guint8 version;

	if (data == NULL || len < BGS_SMP_HEADER_SIZE) {
		g_set_error (error, BGS_ERROR, BGS_ERROR_PROTOCOL,
			     "SMP frame too short for a header (%" G_GSIZE_FORMAT " bytes)", len);
		return FALSE;
	}
	if ((data[0] & 0xe0) != 0) {
		g_set_error (error, BGS_ERROR, BGS_ERROR_PROTOCOL,
			     "SMP header has reserved bits set (0x%02x)", data[0]);
		return FALSE;
	}
	version = (data[0] >> 3) & 0x03;
	if (version > BGS_SMP_V2) {
		g_set_error (error, BGS_ERROR, BGS_ERROR_PROTOCOL,
			     "SMP header uses reserved protocol version %u", version);
		return FALSE;
	}
	hdr->op = data[0] & 0x07;
	if (hdr->op > BGS_SMP_OP_WRITE_RSP) {
		g_set_error (error, BGS_ERROR, BGS_ERROR_PROTOCOL,
			     "SMP header has unknown op %u", hdr->op);
		return FALSE;
	}
	hdr->version = version;
	hdr->flags = data[1];
	hdr->len = (guint16) ((data[2] << 8) | data[3]);
	hdr->group = (guint16) ((data[4] << 8) | data[5]);
	hdr->seq = data[6];
	hdr->id = data[7];
	return TRUE;
}

GBytes *
bgs_smp_frame_build (guint8 op, guint8 version, guint16 group, guint8 id, guint8 seq,
		     GBytes *body)
{
	BgsSmpHeader hdr = { 0 };
	gsize body_len = body != NULL ? g_bytes_get_size (body) : 0;
	guint8 *buf;

	g_return_val_if_fail (body_len <= BGS_SMP_MAX_BODY, NULL);
	hdr.op = op;
	hdr.version = version;
	hdr.len = (guint16) body_len;
	hdr.group = group;
	hdr.seq = seq;
	hdr.id = id;
	buf = g_malloc (BGS_SMP_HEADER_SIZE + body_len);
	bgs_smp_header_encode (&hdr, buf);
	if (body_len > 0)
		memcpy (buf + BGS_SMP_HEADER_SIZE, g_bytes_get_data (body, NULL), body_len);
	return g_bytes_new_take (buf, BGS_SMP_HEADER_SIZE + body_len);
}

gboolean
bgs_smp_op_is_response (guint8 op)
{
	return op == BGS_SMP_OP_READ_RSP || op == BGS_SMP_OP_WRITE_RSP;
}

typedef struct {
	guint code;
	const char *name;
	const char *message;
} ErrEntry;

/* mcumgr_err_t, zephyr include/zephyr/mgmt/mcumgr/mgmt/mgmt_defines.h */
static const ErrEntry rc_table[] = {
	{ 0, "MGMT_ERR_EOK", "success" },
	{ 1, "MGMT_ERR_EUNKNOWN", "unknown error on the device" },
	{ 2, "MGMT_ERR_ENOMEM", "device is out of memory" },
	{ 3, "MGMT_ERR_EINVAL", "device rejected an invalid request value" },
	{ 4, "MGMT_ERR_ETIMEOUT", "operation timed out on the device" },
	{ 5, "MGMT_ERR_ENOENT", "no such entry on the device" },
	{ 6, "MGMT_ERR_EBADSTATE", "device state does not allow this command" },
	{ 7, "MGMT_ERR_EMSGSIZE", "response too large for the device's buffer" },
	{ 8, "MGMT_ERR_ENOTSUP", "command not supported by the device" },
	{ 9, "MGMT_ERR_ECORRUPT", "data on the device is corrupt" },
	{ 10, "MGMT_ERR_EBUSY", "device is busy" },
	{ 11, "MGMT_ERR_EACCESSDENIED", "access denied by the device" },
	{ 12, "MGMT_ERR_UNSUPPORTED_TOO_OLD", "protocol version too old for the device" },
	{ 13, "MGMT_ERR_UNSUPPORTED_TOO_NEW", "protocol version too new for the device" },
	{ 256, "MGMT_ERR_EPERUSER", "application-specific error" },
};

/* img_mgmt_ret_code_t, zephyr include/zephyr/mgmt/mcumgr/grp/img_mgmt/img_mgmt.h */
static const ErrEntry img_table[] = {
	{ 0, "IMG_MGMT_RET_RC_OK", "success" },
	{ 1, "IMG_MGMT_RET_RC_UNKNOWN", "unknown image management error" },
	{ 2, "IMG_MGMT_RET_RC_FLASH_CONFIG_QUERY_FAIL", "flash configuration query failed" },
	{ 3, "IMG_MGMT_RET_RC_NO_IMAGE", "no image in the slot" },
	{ 4, "IMG_MGMT_RET_RC_NO_TLVS", "image has no TLVs" },
	{ 5, "IMG_MGMT_RET_RC_INVALID_TLV", "image has an invalid TLV" },
	{ 6, "IMG_MGMT_RET_RC_TLV_MULTIPLE_HASHES_FOUND", "image has several hash TLVs" },
	{ 7, "IMG_MGMT_RET_RC_TLV_INVALID_SIZE", "image TLV has an invalid size" },
	{ 8, "IMG_MGMT_RET_RC_HASH_NOT_FOUND", "no image with that hash" },
	{ 9, "IMG_MGMT_RET_RC_NO_FREE_SLOT", "no free slot for the image" },
	{ 10, "IMG_MGMT_RET_RC_FLASH_OPEN_FAILED", "flash open failed" },
	{ 11, "IMG_MGMT_RET_RC_FLASH_READ_FAILED", "flash read failed" },
	{ 12, "IMG_MGMT_RET_RC_FLASH_WRITE_FAILED", "flash write failed" },
	{ 13, "IMG_MGMT_RET_RC_FLASH_ERASE_FAILED", "flash erase failed" },
	{ 14, "IMG_MGMT_RET_RC_INVALID_SLOT", "invalid slot" },
	{ 15, "IMG_MGMT_RET_RC_NO_FREE_MEMORY", "device is out of memory" },
	{ 16, "IMG_MGMT_RET_RC_FLASH_CONTEXT_ALREADY_SET", "flash context already set" },
	{ 17, "IMG_MGMT_RET_RC_FLASH_CONTEXT_NOT_SET", "flash context not set" },
	{ 18, "IMG_MGMT_RET_RC_FLASH_AREA_DEVICE_NULL", "flash area has no device" },
	{ 19, "IMG_MGMT_RET_RC_INVALID_PAGE_OFFSET", "invalid page offset" },
	{ 20, "IMG_MGMT_RET_RC_INVALID_OFFSET", "upload offset missing or invalid" },
	{ 21, "IMG_MGMT_RET_RC_INVALID_LENGTH", "upload length missing or invalid" },
	{ 22, "IMG_MGMT_RET_RC_INVALID_IMAGE_HEADER", "image smaller than an image header" },
	{ 23, "IMG_MGMT_RET_RC_INVALID_IMAGE_HEADER_MAGIC", "image header magic is wrong" },
	{ 24, "IMG_MGMT_RET_RC_INVALID_HASH", "invalid hash" },
	{ 25, "IMG_MGMT_RET_RC_INVALID_FLASH_ADDRESS", "image load address does not match the slot" },
	{ 26, "IMG_MGMT_RET_RC_VERSION_GET_FAILED", "device could not read its own version" },
	{ 27, "IMG_MGMT_RET_RC_CURRENT_VERSION_IS_NEWER", "running image is newer than the upload" },
	{ 28, "IMG_MGMT_RET_RC_IMAGE_ALREADY_PENDING", "another image is already pending" },
	{ 29, "IMG_MGMT_RET_RC_INVALID_IMAGE_VECTOR_TABLE", "image vector table is invalid" },
};

/* fs_mgmt_err_code_t, zephyr include/zephyr/mgmt/mcumgr/grp/fs_mgmt/fs_mgmt.h */
static const ErrEntry fs_table[] = {
	{ 0, "FS_MGMT_ERR_OK", "success" },
	{ 1, "FS_MGMT_ERR_UNKNOWN", "unknown file system error" },
	{ 2, "FS_MGMT_ERR_FILE_INVALID_NAME", "invalid file name" },
	{ 3, "FS_MGMT_ERR_FILE_NOT_FOUND", "file not found" },
	{ 4, "FS_MGMT_ERR_FILE_IS_DIRECTORY", "path is a directory" },
	{ 5, "FS_MGMT_ERR_FILE_OPEN_FAILED", "file open failed" },
	{ 6, "FS_MGMT_ERR_FILE_SEEK_FAILED", "file seek failed" },
	{ 7, "FS_MGMT_ERR_FILE_READ_FAILED", "file read failed" },
	{ 8, "FS_MGMT_ERR_FILE_TRUNCATE_FAILED", "file truncate failed" },
	{ 9, "FS_MGMT_ERR_FILE_DELETE_FAILED", "file delete failed" },
	{ 10, "FS_MGMT_ERR_FILE_WRITE_FAILED", "file write failed" },
	{ 11, "FS_MGMT_ERR_FILE_OFFSET_NOT_VALID", "file offset not valid (file changed?)" },
	{ 12, "FS_MGMT_ERR_FILE_OFFSET_LARGER_THAN_FILE", "offset beyond the end of the file" },
	{ 13, "FS_MGMT_ERR_CHECKSUM_HASH_NOT_FOUND", "hash/checksum type not supported" },
	{ 14, "FS_MGMT_ERR_MOUNT_POINT_NOT_FOUND", "mount point not found" },
	{ 15, "FS_MGMT_ERR_READ_ONLY_FILESYSTEM", "file system is read-only" },
	{ 16, "FS_MGMT_ERR_FILE_EMPTY", "file is empty" },
	{ 17, "FS_MGMT_ERR_FILE_CLOSE_FAILED", "file close failed" },
};

static const ErrEntry *
lookup (const ErrEntry *table, gsize n, gint64 code)
{
	for (gsize i = 0; i < n; i++) {
		if ((gint64) table[i].code == code)
			return &table[i];
	}
	return NULL;
}

const char *
bgs_smp_rc_name (gint64 rc)
{
	const ErrEntry *e = lookup (rc_table, G_N_ELEMENTS (rc_table), rc);

	if (e != NULL)
		return e->name;
	return rc > 256 ? "MGMT_ERR_EPERUSER" : "MGMT_ERR_UNKNOWN_CODE";
}

const char *
bgs_smp_rc_message (gint64 rc)
{
	const ErrEntry *e = lookup (rc_table, G_N_ELEMENTS (rc_table), rc);

	if (e != NULL)
		return e->message;
	return rc > 256 ? "application-specific error" : "unknown error code";
}

static const ErrEntry os_unknown = { 1, "OS_MGMT_ERR_UNKNOWN", "unknown OS management error" };

static const ErrEntry *
group_lookup (guint64 group, guint64 rc)
{
	if (rc > G_MAXINT32)
		return NULL;
	switch (group) {
	case BGS_SMP_GROUP_IMAGE:
		return lookup (img_table, G_N_ELEMENTS (img_table), (gint64) rc);
	case BGS_SMP_GROUP_FS:
		return lookup (fs_table, G_N_ELEMENTS (fs_table), (gint64) rc);
	case BGS_SMP_GROUP_OS:
		/* os_mgmt_err_code_t: only OK and UNKNOWN are shared */
		if (rc == 1)
			return &os_unknown;
		return NULL;
	default:
		return NULL;
	}
}

const char *
bgs_smp_group_rc_name (guint64 group, guint64 rc)
{
	const ErrEntry *e = group_lookup (group, rc);

	return e != NULL ? e->name : "GROUP_ERR_UNKNOWN_CODE";
}

const char *
bgs_smp_group_rc_message (guint64 group, guint64 rc)
{
	const ErrEntry *e = group_lookup (group, rc);

	return e != NULL ? e->message : "unknown group error code";
}
