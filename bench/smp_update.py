#!/usr/bin/python3
# smp_update.py: SMP firmware update and file sync on bgsync-sim (issue 5).
#
# Part 1, through bgsyncd: the whole stack of tests/e2e (sim,
# bgsync-wearable, bgsyncd, the companion app) with the wearable's link
# capped:
#   2M PHY + DLE: 160 KB/s, ATT MTU 247, a 400 KiB image / file
#   1M PHY, 23-byte MTU: 10 KB/s, 64 KiB (400 KiB would take ~50 s+ per run)
#   no cap (MTU 517): the agent's own overhead
# each with the SMP client as shipped ("pipelined": frames of the device's
# buf_size, buf_count - 1 requests in flight, from OS params 0/6) and as it
# was before ("1 in flight": [Profile smp] OsParams=false, 384-byte frames,
# one request at a time).
# Times come from the app's event stream (stamped as they arrive): total is
# Request() allowed -> Completed; the upload phase is "reading the device's
# images" -> "marking the new image for test"; ideal = bytes / link rate.
# bgsyncd CPU is /proc/<pid>/stat utime+stime around the task.
#
# Part 2, the SMP client alone on bgsync's GATT transport (smp-bench, no
# bgsyncd): the same upload and download on the AcquireWrite/AcquireNotify
# (fd) path and on the WriteValue-per-chunk path, one in flight and
# pipelined. bgsyncd itself always takes the fd path where BlueZ offers it.
# Env: BGSYNCD, BGSYNC_SIM, BGSYNC_WEARABLE, SMP_BENCH; BENCH_QUICK=1 for
# small sizes; BENCH_PART=1 or 2 for one part.
import hashlib
import os
import re
import subprocess
import sys
import time

import benchlib
import dbus
import e2e
import mcuboot
from harness import call, wait_until

KIB = 1024
QUICK = os.environ.get('BENCH_QUICK') == '1'
LINKS = [
    ('2M PHY+DLE 160 KB/s', 160000, 247, 64 * KIB if QUICK else 400 * KIB),
    ('1M PHY/23 B 10 KB/s', 10000, 23, 16 * KIB if QUICK else 64 * KIB),
    ('no cap', 0, 517, 64 * KIB if QUICK else 400 * KIB),
]


def stamped(app, timeout):
    """Read the app's events until the end, stamping each as it arrives."""
    stamps = []
    deadline = time.monotonic() + timeout
    while True:
        n = len(app.events)
        got = app._read(max(0.0, deadline - time.monotonic()))
        now = time.monotonic()
        stamps += [(now, e) for e in app.events[n:]]
        for _, e in stamps:
            if e['event'] in ('completed', 'canceled', 'timeout', 'error') or \
               (e['event'] == 'request' and e['result'] != 'allowed'):
                return stamps
        if got is None or now > deadline:
            raise e2e.Failure('no end; events: %s' % app.events[-8:])


def first(stamps, pred):
    for t, e in stamps:
        if pred(e):
            return t
    return None


BASE_MODEL = e2e.MODEL
VARIANTS = [
    ('pipelined', ''),
    ('1 in flight', '[Profile smp]\nOsParams=false\n'),
]


def run(kind, rate, mtu, size, model_extra=''):
    # per-model parameters reach the profile from the model file
    e2e.MODEL = BASE_MODEL + model_extra
    s = e2e.Stack()
    s.start()
    try:
        call(s.sim().Configure, dbus.Dictionary({'mtu': dbus.UInt32(mtu)}, signature='sv'))
        call(s.sim().SetLinkRate, s.address, dbus.UInt64(rate))
        out = os.path.join(s.tmp, 'out')
        if kind == 'update':
            data, _ = mcuboot.build(size)
            path = os.path.join(s.tmp, 'fw.bin')
            with open(path, 'wb') as f:
                f.write(data)
            args = ['--name', 'update', '--trigger', 'device-servicing',
                    '--entry', 'smp-firmware-update', '--input', path]
        else:
            data = bytes(((i * 31 + 7) & 0xff) for i in range(size))
            with open(os.path.join(s.tmp, 'wearable', 'files', 'big.bin'), 'wb') as f:
                f.write(data)
            args = ['--name', 'sync', '--entry', 'smp-file-sync', '--output-dir', out,
                    '--args', '/big.bin']
        cpu0 = benchlib.proc_cpu(s.daemon.pid)
        app = s.run_app(*args, '--timeout', '300')
        stamps = stamped(app, 300)
        cpu1 = benchlib.proc_cpu(s.daemon.pid)
        end = stamps[-1][1]
        if end['event'] != 'completed' or not end['success']:
            raise e2e.Failure('%s did not complete: %s\n%s' % (kind, end, s.log('bgsyncd', 40)))
        t0 = first(stamps, lambda e: e['event'] == 'request')
        t_end = stamps[-1][0]
        r = {'bytes': len(data), 'total': t_end - t0, 'cpu': cpu1 - cpu0}
        if kind == 'update':
            u0 = first(stamps, lambda e: e['event'] == 'progress' and 'reading' in e['status'])
            u1 = first(stamps, lambda e: e['event'] == 'progress' and 'marking' in e['status'])
            r['transfer'] = u1 - u0
        else:
            with open(os.path.join(out, 'big.bin'), 'rb') as f:
                if hashlib.sha256(f.read()).digest() != hashlib.sha256(data).digest():
                    raise e2e.Failure('file sync: content differs')
            # no phase markers: transfer = total (connect included)
            r['transfer'] = r['total']
        return r
    finally:
        s.stop()
        s.cleanup()


def part1():
    rows = []
    for kind in ('update', 'file-sync'):
        for lname, rate, mtu, size in LINKS:
            for vname, extra in VARIANTS:
                tries = [mtu] if mtu == 517 else [mtu, 517]
                for m in tries:
                    try:
                        r = run(kind, rate, m, size, extra)
                    except e2e.Failure as e:
                        msg = str(e).split('\n')[0]
                        print('  %s / %s / %s / mtu %d: FAILED %s' % (kind, lname, vname, m, msg),
                              flush=True)
                        m2 = re.search(r"'message': '([^']*)'", msg)
                        short = (m2.group(1) if m2 else msg).split(': ')[-1].split(' in ')[0]
                        rows.append([kind, lname, vname, '%d KiB' % (size // KIB), m, 'FAILED', '',
                                     '', '', '', short, ''])
                        continue
                    ideal = r['bytes'] / rate if rate else None
                    rows.append([kind, lname, vname, '%d KiB' % (size // KIB), m,
                                 '%.2f' % ideal if ideal else '-',
                                 '%.2f' % r['transfer'], '%.2f' % r['total'],
                                 '%.2f' % (r['transfer'] / ideal) if ideal else '-',
                                 '%.2f' % (r['total'] / ideal) if ideal else '-',
                                 benchlib.human_rate(r['bytes'] / r['transfer']),
                                 '%.2f' % r['cpu']])
                    print('  %s / %s / %s / mtu %d: %s' % (kind, lname, vname, m, r), flush=True)
                    break
    print()
    print(benchlib.table(['task', 'link', 'client', 'size', 'mtu', 'ideal s', 'transfer s',
                          'total s', 'transfer/ideal', 'total/ideal', 'throughput',
                          'bgsyncd cpu s'], rows))
    print('\n(FAILED rows give the error; the run is repeated at MTU 517 with the same cap)')
    print('(update: transfer = image upload phase, total includes test, reset, the 1 s reboot, '
          'reconnect and confirm; file-sync: transfer = total)')


# part 2: (client name, smp-bench args)
MODES = [
    ('1 in flight, 384 B', ['--no-params']),
    ('pipelined', []),
]
PATHS = [('fd', []), ('WriteValue', ['--no-acquire'])]


def discover(s):
    bus = s.backend.bus
    adapter = dbus.Interface(bus.get_object('org.bluez', '/org/bluez/hci0'), 'org.bluez.Adapter1')
    path = '/org/bluez/hci0/dev_' + s.address.upper().replace(':', '_')
    om = dbus.Interface(bus.get_object('org.bluez', '/'), 'org.freedesktop.DBus.ObjectManager')
    call(adapter.StartDiscovery)
    wait_until(lambda: path in call(om.GetManagedObjects), 20, 'the wearable discovered')
    call(adapter.StopDiscovery)
    return path


def parse_kv(line):
    return dict(kv.split('=', 1) for kv in line.split())


def part2():
    smp_bench = os.environ.get('SMP_BENCH')
    if not smp_bench:
        print('part 2 skipped: SMP_BENCH is not set')
        return
    rows = []
    for lname, rate, mtu, size in LINKS:
        if rate == 0:
            continue
        e2e.MODEL = BASE_MODEL
        s = e2e.Stack()
        s.start()
        try:
            call(s.sim().Configure, dbus.Dictionary({'mtu': dbus.UInt32(mtu)}, signature='sv'))
            call(s.sim().SetLinkRate, s.address, dbus.UInt64(rate))
            path = discover(s)
            img, _ = mcuboot.build(size)
            img_path = os.path.join(s.tmp, 'fw.bin')
            with open(img_path, 'wb') as f:
                f.write(img)
            data = bytes(((i * 31 + 7) & 0xff) for i in range(size))
            with open(os.path.join(s.tmp, 'wearable', 'files', 'big.bin'), 'wb') as f:
                f.write(data)
            out = os.path.join(s.tmp, 'out.bin')
            ideal = size / rate
            for kind in ('upload', 'download'):
                for pname, pargs in PATHS:
                    for mname, margs in MODES:
                        argv = [smp_bench, '--device', path, '--timeout', '240'] + pargs + margs
                        if kind == 'upload':
                            argv += ['--upload', img_path]
                        else:
                            argv += ['--download', '/big.bin', '--output', out]
                        p = subprocess.run(argv, env=s.env(), capture_output=True, text=True,
                                           timeout=300)
                        line = p.stdout.strip().split('\n')[-1] if p.stdout.strip() else ''
                        if p.returncode != 0 or not line:
                            err = (p.stderr.strip().split('\n') or ['?'])[-1]
                            print('  %s / %s / %s / %s: FAILED %s' % (kind, lname, pname, mname, err),
                                  flush=True)
                            rows.append([kind, lname, pname, mname, mtu, 'FAILED', '', '', '', '',
                                         err, ''])
                            continue
                        r = parse_kv(line)
                        if kind == 'download':
                            with open(out, 'rb') as f:
                                if f.read() != data:
                                    raise e2e.Failure('download: content differs')
                        wall = float(r['wall'])
                        nbytes = int(r['bytes'])
                        rows.append([kind, lname, pname, mname, r['mtu'], r['frame'],
                                     r['max_inflight'], '%.2f' % ideal, '%.2f' % wall,
                                     '%.2f' % (wall / ideal), benchlib.human_rate(nbytes / wall),
                                     r['cpu']])
                        print('  %s / %s / %s / %s: %s' % (kind, lname, pname, mname, line), flush=True)
        finally:
            s.stop()
            s.cleanup()
    print()
    print(benchlib.table(['op', 'link', 'path', 'client', 'mtu', 'frame', 'in flight', 'ideal s',
                          'wall s', 'x ideal', 'throughput', 'cpu s'], rows))
    print('\n(smp-bench: the SMP client on bgsync\'s GATT transport, no bgsyncd; wall from the '
          'first upload/download request to the end; cpu = the whole smp-bench process)')


def main():
    for v in ('BGSYNCD', 'BGSYNC_SIM', 'BGSYNC_WEARABLE'):
        if not os.environ.get(v):
            print('smp-update benchmark: %s must point at the built program' % v)
            return 77
    print('bench/smp-update on bgsync-sim; %s' % benchlib.machine())
    part = os.environ.get('BENCH_PART')
    if part in (None, '', '1'):
        part1()
    if part in (None, '', '2'):
        part2()
    print('\nload at the end: %.2f' % os.getloadavg()[0])
    return 0


if __name__ == '__main__':
    sys.exit(main())
