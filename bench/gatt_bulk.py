#!/usr/bin/python3
# gatt_bulk.py: bulk GATT write throughput on bgsync-sim (issue 4). Three
# paths move the same pattern to the scenario peripheral (a Python GATT app
# on hci1):
#   agent-fd     gatt-bulk: bgsync's GATT transport on AcquireWrite
#   agent-wv     gatt-bulk --no-acquire: one WriteValue (command) per chunk
#   raw-fd       raw_write.py: AcquireWrite + write() loop, no agent code
# each with no link cap, a 2M PHY + DLE cap and a 1M PHY / 23-byte MTU cap.
# "delivered" is the span from the first poll of the peripheral that saw
# data to the one that saw the last byte (polls every 20 ms; under 0.1 s the
# throughput is printed as a lower bound);
# "sender" is when the sending process finished writing. CPU is the
# sending process's (gatt-bulk: getrusage incl. its connect/setup).
# Env: GATT_BULK, BGSYNC_SIM; BENCH_QUICK=1 for small sizes.
import os
import subprocess
import sys
import tempfile
import time

import benchlib
import dbus
import backends  # noqa: E402 (tests/scenarios, via benchlib)
import peripheral
from harness import call, wait_until

GATT_BULK = os.environ.get('GATT_BULK')
HERE = os.path.dirname(os.path.abspath(__file__))
KIB = 1024
MIB = 1024 * KIB
QUICK = os.environ.get('BENCH_QUICK') == '1'

# (name, link rate bytes/s (0 = none), ATT MTU, bytes moved)
LINKS = [
    ('no cap', 0, 517, 256 * KIB if QUICK else MIB),
    # 512 KiB: gatt-bulk queues everything at once and the transport holds
    # at most 4096 packets (1 MiB at MTU 247 is 4298: 'send queue is full')
    ('2M PHY+DLE 160 KB/s', 160000, 247, 128 * KIB if QUICK else 512 * KIB),
    ('1M PHY/23 B 10 KB/s', 10000, 23, 16 * KIB if QUICK else 64 * KIB),
]
PATHS = ['agent-fd', 'agent-wv', 'raw-fd']


def discover(b, peer):
    adapter = dbus.Interface(b.bus.get_object('org.bluez', '/org/bluez/hci0'), 'org.bluez.Adapter1')
    call(adapter.StartDiscovery)
    path = '/org/bluez/hci0/dev_' + peer.address.replace(':', '_')
    om = dbus.Interface(b.bus.get_object('org.bluez', '/'), 'org.freedesktop.DBus.ObjectManager')
    wait_until(lambda: path in call(om.GetManagedObjects), 10, 'peer discovered')
    call(adapter.StopDiscovery)
    return path


def run_case(kind, rate, mtu, size):
    logdir = tempfile.mkdtemp(prefix='bgs-bench-gatt-')
    b = backends.SimBackend(logdir)
    b.start()
    try:
        call(b.sim.Configure, dbus.Dictionary({'mtu': dbus.UInt32(mtu)}, signature='sv'))
        peer = b.add_peer('bench-peer')
        path = discover(b, peer)
        call(b.sim.SetLinkRate, peer.address, dbus.UInt64(rate))
        env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=b.bus_address)
        if kind == 'raw-fd':
            argv = ['/usr/bin/python3', os.path.join(HERE, 'raw_write.py'), '--bus', b.bus_address,
                    '--device', path, '--write', peripheral.RX_UUID, '--send', str(size)]
        else:
            argv = [GATT_BULK, '--device', path, '--service', peripheral.SVC_UUID,
                    '--write', peripheral.RX_UUID, '--notify', peripheral.TX_UUID,
                    '--send', str(size), '--timeout', '300']
            if kind == 'agent-wv':
                argv.append('--no-acquire')
        p = subprocess.Popen(argv, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
        got, first, last = 0, None, None
        deadline = time.monotonic() + 240
        while got < size:
            if time.monotonic() > deadline:
                p.kill()
                raise RuntimeError('%s: only %d of %d bytes arrived' % (kind, got, size))
            n = sum(len(v) for u, t, v in call(peer.control().Received) if u == peripheral.RX_UUID)
            now = time.monotonic()
            if n and first is None:
                first = (now, n)
            got += n
            last = now
            if got < size:
                if p.poll() is not None and p.returncode != 0:
                    raise RuntimeError('%s failed: %s' % (kind, p.stderr.read().decode()))
                time.sleep(0.02)
        out, err = p.communicate(b'\n', timeout=30)
        if p.returncode != 0:
            raise RuntimeError('%s failed: %s' % (kind, err.decode()))
        r = dict(kv.split('=', 1) for kv in out.decode().split())
        # throughput from the first poll that saw data to the last, minus
        # what that first poll already held (20 ms resolution)
        span = last - first[0]
        rate_meas = (size - first[1]) / span if span > 0 else float('inf')
        return {'mtu': r['mtu'], 'sender': float(r['wall']), 'delivered': span,
                'throughput': rate_meas, 'cpu': float(r['cpu'])}
    finally:
        b.stop()


def main():
    if not GATT_BULK or not os.environ.get('BGSYNC_SIM'):
        print('gatt-bulk benchmark: GATT_BULK and BGSYNC_SIM must point at the built tools')
        return 77
    print('bench/gatt-bulk on bgsync-sim; %s' % benchlib.machine())
    # gatt-bulk's CPU includes starting up, connecting and opening the
    # transport: a 1-byte run of each agent path is subtracted for "net"
    base = {k: run_case(k, 0, 517, 1)['cpu'] for k in ('agent-fd', 'agent-wv')}
    base['raw-fd'] = 0.0  # raw_write.py times its write loop only
    print('  setup cpu (1-byte run): %s' % base, flush=True)
    rows = []
    for lname, rate, mtu, size in LINKS:
        for kind in PATHS:
            r = run_case(kind, rate, mtu, size)
            ideal = size / rate if rate else None
            # bgsync-sim charges the 3-byte ATT header of every packet
            payload = min(int(r['mtu']) - 3, 512)
            link_max = size * (payload + 3) / payload / rate if rate else None
            net = max(0.0, r['cpu'] - base[kind])
            rows.append([lname, kind, '%d KiB' % (size // KIB), r['mtu'],
                         '%.2f' % r['sender'], '%.2f' % r['delivered'],
                         benchlib.human_rate(r['throughput']) if r['delivered'] >= 0.1 else
                         '> ' + benchlib.human_rate(size / max(r['delivered'], 0.02)),
                         '%.2f' % (r['delivered'] / ideal) if ideal else '-',
                         '%.2f' % (r['delivered'] / link_max) if link_max else '-',
                         '%.3f' % r['cpu'], '%.3f' % (net * MIB / size)])
            print('  %s / %s: %s' % (lname, kind, r), flush=True)
    print()
    print(benchlib.table(['link', 'path', 'size', 'mtu', 'sender s', 'delivered s', 'throughput',
                          'x ideal', 'x link max', 'cpu s', 'net cpu s/MiB'], rows))
    print('\n(ideal = size / rate; link max adds the 3-byte ATT header per packet that '
          'bgsync-sim charges; cpu = the sending process)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
