#!/usr/bin/python3
# make-corpus.py: writes the seed corpora of the two RFCOMM frame fuzz
# targets: valid frames of every kind, plus the edge cases (run from
# anywhere; the files are committed)
import os
import struct

here = os.path.dirname(os.path.abspath(__file__))


def chan(t, payload):
    return t + struct.pack('>I', len(payload)) + payload


def bulk(op, payload, flags=0):
    return bytes([op, flags, 0, 0]) + struct.pack('>I', len(payload)) + payload


channel = {
    'data-empty': chan(b'D', b''),
    'data-small': chan(b'D', b'hello device'),
    'data-max': chan(b'D', bytes(range(256)) * 256),
    'control-complete': chan(b'C', b'complete'),
    'control-fail': chan(b'C', b'fail the app gave up'),
    'control-progress': chan(b'C', b'progress 42 copying files'),
    'control-progress-100': chan(b'C', b'progress 100'),
    'control-progress-bad': chan(b'C', b'progress 101 too much'),
    'control-progress-nonum': chan(b'C', b'progress x'),
    'control-unknown': chan(b'C', b'dance'),
    'control-nul': chan(b'C', b'comp\0lete'),
    'control-not-utf8': chan(b'C', b'fail \xff\xfe'),
    'control-utf8': chan(b'C', 'progress 7 \u00fcber \u2713'.encode()),
    'control-max': chan(b'C', b'fail ' + b'x' * 4091),
    'stream': chan(b'C', b'progress 0 start') + chan(b'D', b'abc') * 3 +
              chan(b'D', b'\0' * 300) + chan(b'C', b'progress 100 done') + chan(b'C', b'complete'),
    'partial': chan(b'D', b'0123456789')[:9],
    'bad-type': chan(b'E', b'connected 100'),
    'bad-length': b'D' + struct.pack('>I', 64 * 1024 + 1),
    'bad-control-length': b'C' + struct.pack('>I', 4097),
    'bad-after-good': chan(b'D', b'ok') + b'X\0\0\0\0',
}

source = lambda size, seed: struct.pack('>II', size, seed)
bulk_corpus = {
    'echo': bulk(0x01, b'ping'),
    'echo-empty': bulk(0x01, b''),
    'echo-max': bulk(0x01, bytes(range(256)) * 256),
    'sink': bulk(0x02, b'\xaa' * 1000),
    'sink-end': bulk(0x02, b'data') + bulk(0x03, b''),
    'source': bulk(0x04, source(100000, 7)),
    'source-max': bulk(0x04, source(64 * 1024 * 1024, 0xffffffff)),
    'source-too-large': bulk(0x04, source(64 * 1024 * 1024 + 1, 1)),
    'source-short': bulk(0x04, b'\0\0\1'),
    'source-long': bulk(0x04, source(10, 1) + b'!'),
    'info': bulk(0x06, b''),
    'reset': bulk(0x07, b''),
    'replies': bulk(0x81, b'pong') + bulk(0x83, b'\0' * 40) + bulk(0x85, b'\0' * 40) +
               bulk(0x86, b'boot=1 channel=11') + bulk(0x87, b'') + bulk(0xff, b'unknown op'),
    'unknown-op': bulk(0x42, b'?'),
    'reserved-set': bytes([0x01, 0, 0xff, 0xff]) + struct.pack('>I', 2) + b'hi',
    'stream': bulk(0x06, b'') + bulk(0x01, b'x' * 100) + bulk(0x02, b'y' * 5000) +
              bulk(0x03, b'') + bulk(0x04, source(4096, 3)) + bulk(0x07, b''),
    'partial': bulk(0x01, b'0123456789')[:12],
    'bad-flags': bulk(0x01, b'x', flags=1),
    'bad-length': bytes([0x02, 0, 0, 0]) + struct.pack('>I', 65537),
    'bad-after-good': bulk(0x01, b'ok') + bytes([0x01, 0x80, 0, 0, 0, 0, 0, 0]),
}

for name, corpus in (('channel-corpus', channel), ('bulk-corpus', bulk_corpus)):
    d = os.path.join(here, name)
    os.makedirs(d, exist_ok=True)
    for f, data in corpus.items():
        with open(os.path.join(d, f), 'wb') as fp:
            fp.write(data)
