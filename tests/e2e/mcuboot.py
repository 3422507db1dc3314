# mcuboot.py: build a signed-hash MCUboot image (header, payload, TLV area
# with the SHA-256 TLV), the format of MCUboot's boot/bootutil image.h.
import hashlib
import struct

IMAGE_MAGIC = 0x96f3b83d
TLV_INFO_MAGIC = 0x6907
TLV_SHA256 = 0x10
HDR_SIZE = 32


def build(size, version=(1, 2, 3, 0), seed=1):
    payload = bytes(((i * 7 + seed * 13 + (i >> 9)) & 0xff) for i in range(size))
    major, minor, revision, build_num = version
    hdr = struct.pack('<IIHHIIBBHII', IMAGE_MAGIC, 0, HDR_SIZE, 0, size, 0,
                      major, minor, revision, build_num, 0)
    assert len(hdr) == HDR_SIZE
    digest = hashlib.sha256(hdr + payload).digest()
    tlv = struct.pack('<HH', TLV_SHA256, len(digest)) + digest
    info = struct.pack('<HH', TLV_INFO_MAGIC, 4 + len(tlv))
    return hdr + payload + info + tlv, digest
