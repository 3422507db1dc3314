# test_rfcomm.py: RFCOMM through bgsyncd. The testing-only "test-rfcomm"
# entry point relays the app's "channel" socket to an RFCOMM session with
# bgsync-wearable's bulk service (doc/wearable.md) on bgsync-sim: 1 MiB both
# ways with content verified, a servicing run that continues over a new
# RFCOMM session after the device reboots at address+1, a device-use run
# canceled when its link drops (never silently reconnected), and connect
# failures BlueZ reports ending the task with a clean error.
#
# The test holds one end of the channel, the companion app (app.py) passes
# the other end with Request and reports the task's signals.
import hashlib
import os
import select
import socket
import sqlite3
import struct
import subprocess
import time

import dbus
import pytest

import e2e
from harness import call, wait_until

APP_ID = e2e.APP_ID
MIB = 1024 * 1024
BULK_UUID = '29998351-3f45-4f44-905a-b0e5db09b33a'
NOBODY_UUID = '7e1a1199-6c2b-4b6b-9a3e-5bc0c0de0002'

# the wearable's bulk protocol (wearable/bgs-wearable-bulk.h)
ECHO, SINK, SINK_END, SOURCE, SOURCE_END, INFO, RESET, ERROR = 1, 2, 3, 4, 5, 6, 7, 0x7f
REPLY = 0x80


def pattern(n, seed, start=0):
    return bytes(((i * 131 + (i >> 8) + seed) & 0xff) for i in range(start, start + n))


def addr_add(address, delta):
    v = (int(address.replace(':', ''), 16) + delta) & 0xffffffffffff
    return ':'.join('%02X' % ((v >> s) & 0xff) for s in range(40, -1, -8))


def data_of(n, seed):
    return bytes(((i * 7 + (i >> 10) + seed * 13) & 0xff) for i in range(n))


class RfcommStack(e2e.Stack):
    """e2e.Stack whose app may run test-rfcomm, with a channel socket."""

    def start_daemon(self):
        with open(os.path.join(self.tmp, 'apps', 'e2e.conf'), 'w') as f:
            f.write('[App]\nId=%s\nName=Example Companion\nExecutable=%s\n'
                    'DeviceUseEntryPoints=test-rfcomm;\n'
                    'DeviceServicingEntryPoints=test-rfcomm;\n' % (APP_ID, self.app_exe))
        super().start_daemon()

    def run_channel_app(self, *args):
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        argv = [self.app_exe, os.path.join(e2e.HERE, 'app.py'), '--bus', self.bus_address,
                '--device', self.address, '--channel-fd', str(theirs.fileno())] + list(args)
        log = open(os.path.join(self.logdir, 'app.log'), 'ab')
        p = subprocess.Popen(argv, env=self.env(), stdout=subprocess.PIPE, stderr=log,
                             pass_fds=[theirs.fileno()])
        log.close()
        theirs.close()
        self.procs.append(p)
        # the VM tier's btvirt: the device advertises anew once the agent scans
        announce = getattr(self, 'announce', None)
        if announce is not None:
            announce()
        return e2e.App(p), Channel(ours)


class Channel:
    """The test's end of the channel: the agent's frames, and the device's
    bulk frames inside its 'D' frames."""

    def __init__(self, sock):
        self.sock = sock
        self.raw = b''
        self.stream = bytearray()  # bytes from the device
        self.events = []

    def close(self):
        self.sock.close()

    def _frame(self, kind, payload):
        return bytes([ord(kind)]) + struct.pack('>I', len(payload)) + payload

    def send_control(self, text):
        self.sock.sendall(self._frame('C', text.encode()))

    def send_device(self, data):
        for off in range(0, len(data), 65536):
            self.sock.sendall(self._frame('D', data[off:off + 65536]))

    def bulk(self, op, payload=b''):
        self.send_device(bytes([op, 0, 0, 0]) + struct.pack('>I', len(payload)) + payload)

    def _read(self, timeout):
        r, _, _ = select.select([self.sock], [], [], timeout)
        if not r:
            return False
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            return None
        self.raw += chunk
        while len(self.raw) >= 5:
            n = struct.unpack('>I', self.raw[1:5])[0]
            if len(self.raw) < 5 + n:
                break
            kind, payload, self.raw = chr(self.raw[0]), self.raw[5:5 + n], self.raw[5 + n:]
            if kind == 'D':
                self.stream.extend(payload)
            elif kind == 'E':
                self.events.append(payload.decode())
            else:
                raise AssertionError('unexpected frame type %r' % kind)
        return True

    def _until(self, cond, timeout, what):
        deadline = time.monotonic() + timeout
        while True:
            v = cond()
            if v:
                return v
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError('timed out after %ds waiting for %s; channel events %s'
                                     % (timeout, what, self.events[-6:]))
            if self._read(left) is None:
                v = cond()
                if v:
                    return v
                raise AssertionError('the channel closed while waiting for %s; events %s'
                                     % (what, self.events[-6:]))

    def wait_event(self, prefix, timeout=60):
        def find():
            for e in self.events:
                if e.startswith(prefix):
                    return e
            return None
        return self._until(find, timeout, 'event "%s"' % prefix)

    def device_frame(self, timeout=60):
        """the next bulk frame from the device: (op, payload)"""
        def whole():
            if len(self.stream) < 8:
                return None
            n = struct.unpack('>I', self.stream[4:8])[0]
            return len(self.stream) >= 8 + n
        self._until(whole, timeout, 'a frame from the device')
        op = self.stream[0]
        n = struct.unpack('>I', self.stream[4:8])[0]
        payload = bytes(self.stream[8:8 + n])
        del self.stream[:8 + n]
        return op, payload

    def expect(self, op, timeout=60):
        got, payload = self.device_frame(timeout)
        assert got != ERROR | REPLY, 'the device says: %s' % payload.decode(errors='replace')
        assert got == op | REPLY, (hex(got), payload[:64])
        return payload

    # ---- the checks ----

    def info(self):
        self.bulk(INFO)
        text = self.expect(INFO).decode()
        return dict(kv.split('=', 1) for kv in text.split())

    def sink(self, data, chunk=32768):
        """to the device, which reports what arrived"""
        for off in range(0, len(data), chunk):
            self.bulk(SINK, data[off:off + chunk])
        self.bulk(SINK_END)
        reply = self.expect(SINK_END, 120)
        count = struct.unpack('>Q', reply[:8])[0]
        assert count == len(data)
        assert reply[8:] == hashlib.sha256(data).digest(), 'the device got other bytes'

    def source(self, size, seed):
        """from the device, content checked byte for byte"""
        self.bulk(SOURCE, struct.pack('>II', size, seed))
        got = bytearray()
        while True:
            op, payload = self.device_frame(120)
            if op == SOURCE | REPLY:
                got.extend(payload)
                continue
            assert op == SOURCE_END | REPLY, hex(op)
            break
        assert len(got) == size
        want = pattern(size, seed)
        if bytes(got) != want:
            first = next(i for i in range(size) if got[i] != want[i])
            raise AssertionError('the bytes from the device differ from offset %d' % first)
        assert struct.unpack('>Q', payload[:8])[0] == size
        assert payload[8:] == hashlib.sha256(want).digest()


@pytest.fixture
def stack(request):
    if not os.environ.get('BGSYNCD'):
        pytest.skip('BGSYNCD, BGSYNC_SIM and BGSYNC_WEARABLE must point at the built programs')
    s = RfcommStack()
    marker = request.node.get_closest_marker('stack')
    kw = dict(marker.kwargs) if marker else {}
    config = kw.pop('config', {})
    config.setdefault('General', {})['EnableTestProfile'] = 'true'
    try:
        s.start(config=config, **kw)
    except BaseException:
        print(s.log('bgsyncd', 80))
        s.stop()
        s.cleanup()
        raise
    yield s
    s.stop()
    print('--- bgsyncd ---\n' + s.log('bgsyncd', 80))
    print('--- wearable ---\n' + s.log('wearable', 40))
    s.cleanup()


def needs(stack, *caps, sim=False):
    """skip unless the backend can do @caps (and is bgsync-sim if @sim)"""
    reason = stack.backend.why_not(caps)
    if reason is None and sim and stack.backend.name != 'sim':
        reason = 'needs bgsync-sim faults (connect timeouts)'
    if reason is not None:
        pytest.skip(reason)


class Peer:
    def __init__(self, address):
        self.address = address


def restart_bluez(stack):
    restart = getattr(stack, 'restart_bluez', None)
    if restart is not None:
        restart()
    else:
        stack.backend.restart_bluez()


def history(stack):
    db = sqlite3.connect(os.path.join(stack.tmp, 'state', 'bgsync.db'))
    try:
        return db.execute('SELECT trigger_kind, result, reason, bytes_in, bytes_out FROM history '
                          'WHERE entry_point = ? ORDER BY id', ('test-rfcomm',)).fetchall()
    finally:
        db.close()


def test_1mib_both_ways_through_bgsyncd(stack):
    app, ch = stack.run_channel_app('--name', 'bulk', '--entry', 'test-rfcomm')
    assert app.wait_event('request')['result'] == 'allowed'
    assert ch.wait_event('connected') == 'connected 4096'
    assert ch.info()['boot'] == '0'
    ch.sink(data_of(MIB, 1))
    ch.source(MIB, 7)
    # echo: the same bytes back, in frames of the device's largest size
    blob = data_of(65536, 3)
    ch.bulk(ECHO, blob)
    assert ch.expect(ECHO) == blob
    ch.send_control('progress 100 done')
    ch.send_control('complete')
    end = app.wait_end(60)
    assert end['event'] == 'completed' and end['success'], end
    # every RFCOMM byte was counted for the instance (idle rule, history);
    # the channel's own framing was not
    rows = wait_until(lambda: [r for r in history(stack) if r[1] != 'running'], 10,
                      'the history entry')
    trigger, result, reason, bytes_in, bytes_out = rows[-1]
    assert (trigger, result) == ('device-use', 'completed'), rows
    assert MIB + 65536 < bytes_in < MIB + 65536 + 64 * 1024, rows
    assert MIB + 65536 < bytes_out < MIB + 65536 + 64 * 1024, rows
    ch.close()


@pytest.mark.stack(wearable_args=['--address-change'], address_delta=1)
def test_servicing_continues_over_a_new_session_after_reboot_at_address_plus_1(stack):
    needs(stack, 'address-change', sim=True)
    old = stack.address
    app, ch = stack.run_channel_app('--name', 'service', '--trigger', 'device-servicing',
                                    '--entry', 'test-rfcomm', '--estimate', '60')
    assert app.wait_event('consent')['kind'] == 'device-servicing'
    assert app.wait_event('request')['result'] == 'allowed'
    ch.wait_event('connected')
    assert ch.info()['boot'] == '0'
    ch.sink(data_of(256 * 1024, 2))
    # pages to an address nobody answers take long, as on real radios (the
    # agent's own ConnectTimeout, 30 s, ends such a try): the keeper must
    # not sit out a try at the old address once the device is seen at +1
    call(stack.sim().Configure, dbus.Dictionary({'connect-timeout-ms': dbus.UInt32(20000)},
                                                signature='sv'))
    ch.bulk(RESET)
    ch.expect(RESET)
    ch.wait_event('disconnected', 30)
    # the keeper finds the device at address+1 and opens a new session
    assert ch.wait_event('reconnected', 25) == 'reconnected 4096'
    assert ch.info()['boot'] == '1', 'not the rebooted device'
    ch.sink(data_of(MIB, 5))
    ch.source(MIB, 9)
    ch.send_control('complete')
    end = app.wait_end(60)
    assert end['event'] == 'completed' and end['success'], end
    log = stack.log('bgsyncd', 600)
    assert 'came back as ' + addr_add(old, 1) in log, log
    rows = history(stack)
    assert rows[-1][:2] == ('device-servicing', 'completed'), rows
    ch.close()


def test_servicing_continues_after_reboot_at_the_same_address(stack):
    app, ch = stack.run_channel_app('--name', 'service', '--trigger', 'device-servicing',
                                    '--entry', 'test-rfcomm', '--estimate', '60')
    ch.wait_event('connected')
    assert ch.info()['boot'] == '0'
    ch.bulk(RESET)
    ch.expect(RESET)
    ch.wait_event('disconnected', 30)
    assert ch.wait_event('reconnected', 60).startswith('reconnected')
    assert ch.info()['boot'] == '1', 'not the rebooted device'
    ch.sink(data_of(MIB, 13))
    ch.source(MIB, 14)
    ch.send_control('complete')
    end = app.wait_end(60)
    assert end['event'] == 'completed' and end['success'], end
    assert 'came back as' not in stack.log('bgsyncd', 600)
    ch.close()


def test_servicing_survives_a_bluetoothd_restart(stack):
    needs(stack, 'restart')
    app, ch = stack.run_channel_app('--name', 'service', '--trigger', 'device-servicing',
                                    '--entry', 'test-rfcomm', '--estimate', '60')
    ch.wait_event('connected')
    ch.sink(data_of(128 * 1024, 8))
    # bluetoothd releases every profile (ours and the wearable's) and comes
    # back; the keeper registers ours again and opens a new session
    restart_bluez(stack)
    ch.wait_event('disconnected', 30)
    assert ch.wait_event('reconnected', 60).startswith('reconnected')
    assert ch.info()['boot'] == '0'
    ch.sink(data_of(MIB, 10))
    ch.source(MIB, 11)
    ch.send_control('complete')
    end = app.wait_end(60)
    assert end['event'] == 'completed' and end['success'], end
    ch.close()


def test_device_hangs_up_on_a_malformed_bulk_frame(stack):
    app, ch = stack.run_channel_app('--name', 'bulk', '--entry', 'test-rfcomm')
    ch.wait_event('connected')
    # non-zero flags: the device cannot find the next frame and hangs up
    ch.send_device(bytes([ECHO, 1, 0, 0]) + struct.pack('>I', 4) + b'abcd')
    end = app.wait_end(30)
    assert end['event'] in ('canceled', 'completed') and not end.get('success'), end
    assert stack.daemon.poll() is None
    assert 'malformed frame' in stack.log('wearable', 40)
    ch.close()
    # and serves the next session
    app, ch = stack.run_channel_app('--name', 'bulk', '--entry', 'test-rfcomm')
    ch.wait_event('connected')
    ch.sink(data_of(4096, 12))
    ch.send_control('complete')
    assert app.wait_end(30)['event'] == 'completed'
    ch.close()


@pytest.mark.stack(lost_timeout=30)
def test_device_use_link_drop_cancels(stack):
    app, ch = stack.run_channel_app('--name', 'bulk', '--entry', 'test-rfcomm')
    assert app.wait_event('request')['result'] == 'allowed'
    ch.wait_event('connected')
    ch.sink(data_of(64 * 1024, 4))
    stack.backend.drop_link(Peer(stack.address))
    end = app.wait_end(30)
    # the link dropping cancels device use at once (not the 30 s presence
    # timeout), and the transport is not brought back
    assert end['event'] == 'canceled' and end['reason'] == 'condition-loss', end
    assert ch.wait_event('canceled', 10) == 'canceled condition-loss'
    assert not [e for e in ch.events if e.startswith('reconnected')], ch.events
    log = stack.log('bgsyncd', 400)
    assert 'device-use link to' in log and 'reconnected to' not in log, log
    ch.close()


@pytest.mark.stack(config={'Policy': {'IdleTimeout': '1'}})
def test_only_rfcomm_io_counts_for_the_idle_rule(stack):
    app, ch = stack.run_channel_app('--name', 'bulk', '--entry', 'test-rfcomm')
    ch.wait_event('connected')
    ch.sink(data_of(64 * 1024, 6))
    # the app keeps talking to the agent, the device says nothing: idle
    end = None
    for i in range(60):
        try:
            ch.send_control('progress 1 waiting')
        except OSError:
            # canceled: the agent closed the channel
            end = app.wait_end(10)
            break
        try:
            end = app.wait_end(0.25)
            break
        except e2e.Failure:
            pass
    assert end is not None, 'channel traffic kept the instance alive'
    assert end['event'] == 'canceled' and end['reason'] == 'idle-task', end
    ch.close()


def test_malformed_channel_frame_fails_the_task(stack):
    app, ch = stack.run_channel_app('--name', 'bulk', '--entry', 'test-rfcomm')
    ch.wait_event('connected')
    ch.sock.sendall(b'X' + struct.pack('>I', 3) + b'abc')
    end = app.wait_end(30)
    assert end['event'] == 'completed' and not end['success'], end
    assert end['error'] == 'org.bgsync.Error.InvalidArgs', end
    assert 'malformed frame' in end['message'], end
    assert stack.daemon.poll() is None
    # and one that claims 4 GiB
    app, ch2 = stack.run_channel_app('--name', 'bulk', '--entry', 'test-rfcomm')
    ch2.wait_event('connected')
    ch2.sock.sendall(b'D' + struct.pack('>I', 0xffffffff))
    end = app.wait_end(30)
    assert end['event'] == 'completed' and 'malformed frame' in end['message'], end
    ch.close()
    ch2.close()


def agent_device(stack):
    mgr = dbus.Interface(stack.backend.bus.get_object('org.bgsync', '/org/bgsync'),
                         'org.bgsync.Manager1')
    for path, props in call(mgr.GetDevices).items():
        if str(props['Address']).upper() == stack.address.upper():
            return props
    return None


@pytest.mark.stack(lost_timeout=60)
def test_connect_failure_reported_by_bluez_ends_the_task(stack):
    needs(stack, 'range', sim=True)
    # a first session: the task is registered (the agent watches for the
    # device) and the device is known to be there
    app, ch = stack.run_channel_app('--name', 'bulk', '--entry', 'test-rfcomm')
    ch.wait_event('connected')
    ch.send_control('complete')
    assert app.wait_end(60)['event'] == 'completed'
    ch.close()
    # the device walks away but is still "present" (lost timeout 60 s): the
    # page times out in BlueZ, every bounded retry too
    call(stack.sim().Configure, dbus.Dictionary({'connect-timeout-ms': dbus.UInt32(300),
                                                 'supervision-timeout-ms': dbus.UInt32(200)},
                                                signature='sv'))
    rx = stack.backend.bus.add_signal_receiver(lambda *a: None, 'PropertiesChanged',
                                               'org.freedesktop.DBus.Properties', None, None)
    call(stack.sim().SetInRange, stack.address, dbus.Boolean(False))
    wait_until(lambda: not agent_device(stack)['Connected'], 20, 'the link to drop')
    assert agent_device(stack)['Present']
    rx.remove()
    app, ch = stack.run_channel_app('--name', 'bulk', '--entry', 'test-rfcomm')
    assert app.wait_event('request')['result'] == 'allowed'
    end = app.wait_end(60)
    assert end['event'] == 'completed' and not end['success'], end
    assert end['error'] == 'org.bgsync.Error.IO', end
    assert 'cannot open the RFCOMM channel' in end['message'], end
    assert 'after 4 attempts' in end['message'], end
    err = ch.wait_event('error', 10)
    assert 'cannot connect the RFCOMM profile ' + BULK_UUID in err, err
    assert stack.daemon.poll() is None
    ch.close()


def test_unserved_uuid_is_a_clean_error(stack):
    app, ch = stack.run_channel_app('--name', 'bulk', '--entry', 'test-rfcomm',
                                    '--args', NOBODY_UUID)
    assert app.wait_event('request')['result'] == 'allowed'
    end = app.wait_end(60)
    assert end['event'] == 'completed' and not end['success'], end
    assert end['error'] == 'org.bgsync.Error.NotSupported', end
    assert 'does not offer the RFCOMM profile ' + NOBODY_UUID in end['message'], end
    ch.close()


@pytest.mark.stack(wearable_args=['--rfcomm-channel', '0'])
def test_device_without_the_bulk_service(stack):
    app, ch = stack.run_channel_app('--name', 'bulk', '--entry', 'test-rfcomm')
    end = app.wait_end(60)
    assert end['event'] == 'completed' and not end['success'], end
    assert 'does not offer the RFCOMM profile ' + BULK_UUID in end['message'], end
    ch.close()
