# test_gatt_transport.py: bgsync's GATT transport (gatt/) against bgsync-sim
# and the scenario suite's peripheral app: 1 MiB each way with content
# verified, on the AcquireWrite/AcquireNotify fd path and on the
# WriteValue/StartNotify fallback, a link cap, and malformed input.
import hashlib
import os
import subprocess
import sys
import tempfile

import dbus
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'scenarios'))
import backends  # noqa: E402
from harness import call, wait_until  # noqa: E402
import peripheral  # noqa: E402

GATT_BULK = os.environ.get('GATT_BULK')
MIB = 1024 * 1024


def run_tool(argv, env, timeout):
    """Run a tool while serving the main loop; a child watch wakes it."""
    from gi.repository import GLib
    p = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    done = []
    GLib.child_watch_add(GLib.PRIORITY_DEFAULT, p.pid, lambda pid, status: done.append(status))
    return p, done


def finish(p, done, timeout, what):
    wait_until(lambda: done, timeout, what)
    out, err = p.communicate()
    # GLib reaped the child: its wait status is what the watch saw
    return os.waitstatus_to_exitcode(done[0]), out.decode(), err.decode()


def pattern(n):
    return bytes(((i * 131 + (i >> 8)) & 0xff) for i in range(n))


@pytest.fixture
def sim():
    if not GATT_BULK or not os.environ.get('BGSYNC_SIM'):
        pytest.skip('GATT_BULK and BGSYNC_SIM must point at the built tools')
    logdir = tempfile.mkdtemp(prefix='bgs-gatt-test-')
    b = backends.SimBackend(logdir)
    b.start()
    peer = b.add_peer('gatt-peer')
    yield b, peer
    b.stop()


def discover(b, peer):
    adapter = dbus.Interface(b.bus.get_object('org.bluez', '/org/bluez/hci0'), 'org.bluez.Adapter1')
    call(adapter.StartDiscovery)
    path = '/org/bluez/hci0/dev_' + peer.address.replace(':', '_')
    om = dbus.Interface(b.bus.get_object('org.bluez', '/'), 'org.freedesktop.DBus.ObjectManager')
    wait_until(lambda: path in call(om.GetManagedObjects), 10, 'peer discovered')
    call(adapter.StopDiscovery)
    return path


def bulk(b, path, *args, timeout=120):
    env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=b.bus_address)
    argv = [GATT_BULK, '--device', path, '--service', peripheral.SVC_UUID,
            '--write', peripheral.RX_UUID, '--notify', peripheral.TX_UUID] + list(args)
    p, done = run_tool(argv, env, timeout)
    rc, out, err = finish(p, done, timeout, 'gatt-bulk to finish')
    assert rc == 0, err
    return dict(kv.split('=', 1) for kv in out.split())


def received_bytes(peer):
    data = b''.join(bytes(v) for u, kind, v in call(peer.control().Received) if u == peripheral.RX_UUID)
    return data


def test_send_1mib_fd_path(sim):
    b, peer = sim
    path = discover(b, peer)
    r = bulk(b, path, '--send', str(MIB))
    assert r['path'] == 'fd'
    assert int(r['sent']) == MIB
    want = hashlib.sha256(pattern(MIB)).hexdigest()
    assert r['sent_sha256'] == want
    got = b''
    def collect():
        nonlocal got
        got += received_bytes(peer)
        return len(got) >= MIB
    wait_until(collect, 30, 'the peer to receive 1 MiB')
    assert hashlib.sha256(got).hexdigest() == want


def test_receive_1mib_notifications(sim):
    b, peer = sim
    path = discover(b, peer)
    env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=b.bus_address)
    argv = [GATT_BULK, '--device', path, '--service', peripheral.SVC_UUID,
            '--write', peripheral.RX_UUID, '--notify', peripheral.TX_UUID]
    size = 244  # 247-byte MTU minus the ATT header
    count = (MIB + size - 1) // size
    p, done = run_tool(argv + ['--receive', str(count * size)], env, 120)
    wait_until(lambda: call(peer.control().Stats)['notifying'], 20, 'the transport to subscribe')
    # the peer waits out a full socket, like a real device
    sent = call(peer.control().NotifyBurst, peripheral.TX_UUID, dbus.UInt32(count),
                dbus.UInt32(size), timeout=120)
    assert sent == count
    rc, out, err = finish(p, done, 60, 'gatt-bulk to receive everything')
    assert rc == 0, err
    r = dict(kv.split('=', 1) for kv in out.split())
    expect = b''.join((i.to_bytes(4, 'big') + bytes((i + k) & 0xff for k in range(size - 4)))
                      for i in range(count))
    assert int(r['received']) == len(expect)
    assert r['received_sha256'] == hashlib.sha256(expect).hexdigest()


def test_send_writevalue_fallback(sim):
    b, peer = sim
    path = discover(b, peer)
    r = bulk(b, path, '--send', str(64 * 1024), '--no-acquire')
    assert r['path'] == 'writevalue'
    got = b''
    def collect():
        nonlocal got
        got += received_bytes(peer)
        return len(got) >= 64 * 1024
    wait_until(collect, 30, 'the peer to receive 64 KiB')
    assert got == pattern(64 * 1024)


def test_missing_characteristic_is_a_clean_error(sim):
    b, peer = sim
    path = discover(b, peer)
    env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=b.bus_address)
    p, done = run_tool([GATT_BULK, '--device', path, '--service', peripheral.SVC_UUID,
                        '--write', '00000000-0000-1000-8000-00805f9b34fb', '--send', '10',
                        '--timeout', '30'], env, 60)
    rc, out, err = finish(p, done, 60, 'gatt-bulk to fail')
    assert rc == 1
    assert 'has no characteristic' in err


def test_unknown_device_is_a_clean_error(sim):
    b, peer = sim
    env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=b.bus_address)
    p, done = run_tool([GATT_BULK, '--device', '/org/bluez/hci0/dev_00_00_00_00_00_00',
                        '--service', peripheral.SVC_UUID, '--write', peripheral.RX_UUID,
                        '--send', '10', '--timeout', '30'], env, 60)
    rc, out, err = finish(p, done, 60, 'gatt-bulk to fail')
    assert rc == 1
    assert 'no device' in err


# a reconnect the caller abandons (the servicing keeper does, when the device
# shows up at address+1) ends at once as cancelled at whatever step it is,
# gives back what it took, and leaves the transport able to reconnect
@pytest.mark.parametrize('step', ['connect', 'acquire', 'after'])
def test_reconnect_honours_cancel(sim, step):
    b, peer = sim
    if not os.environ.get('GATT_CANCEL'):
        pytest.skip('GATT_CANCEL must point at the built tool')
    # the sim must not end the try itself: its page would outlast the
    # tool's bound, and the device object outlives the test
    call(b.sim.Configure, dbus.Dictionary({
        'connect-timeout-ms': dbus.UInt32(60000),
        'temporary-timeout-ms': dbus.UInt32(120000)}, signature='sv'))
    path = discover(b, peer)
    env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=b.bus_address)
    argv = [os.environ['GATT_CANCEL'], '--device', path, '--address', peer.address,
            '--service', peripheral.SVC_UUID, '--write', peripheral.RX_UUID,
            '--notify', peripheral.TX_UUID, '--step', step]
    p, done = run_tool(argv, env, 60)
    rc, out, err = finish(p, done, 60, 'gatt-cancel to finish')
    assert rc == 0, err + out
    r = dict(kv.split('=', 1) for kv in out.split())
    assert r['open'] == 'fd'
    assert r['finalized'] == 'yes' and r['fds_after_close'] == 'ok'
    if step == 'after':
        assert r['result'] == 'ok' and r['late_cancel'] == 'yes'
    else:
        assert r['result'] == 'cancelled'
        assert r['fds_after_cancel'] == 'ok' and r['sim_released'] == 'yes'
        assert r['reconnect_after'] == 'ok'


def bulk_fails(b, path, *args, timeout=60):
    env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=b.bus_address)
    argv = [GATT_BULK, '--device', path, '--service', peripheral.SVC_UUID,
            '--write', peripheral.RX_UUID, '--notify', peripheral.TX_UUID,
            '--timeout', '30'] + list(args)
    p, done = run_tool(argv, env, timeout)
    rc, out, err = finish(p, done, timeout, 'gatt-bulk to fail')
    assert rc == 1, (out, err)
    return err


# the window between the sockets hanging up and bluetoothd's Connected=false:
# Connected/ServicesResolved are still true, Acquire* says the device is not
# connected (NotConnected, or 5.66's Failed "Not connected"). The try fails
# (the caller's retry applies) instead of falling back to WriteValue and
# reporting the link up; a "not supported" answer still falls back
@pytest.mark.parametrize('error', ['NotConnected', 'Failed'])
def test_acquire_not_connected_fails_the_try(sim, error):
    b, peer = sim
    path = discover(b, peer)
    call(b.sim.SetAcquireError, peer.address, error)
    err = bulk_fails(b, path, '--send', '100')
    assert 'not connected' in err
    assert received_bytes(peer) == b''
    # the next try, once the link answers again, gets the fd path
    call(b.sim.SetAcquireError, peer.address, '')
    r = bulk(b, path, '--send', '100')
    assert r['path'] == 'fd'
    wait_until(lambda: len(received_bytes(peer)) > 0, 10, 'the peer to receive')


def test_acquire_not_supported_falls_back(sim):
    b, peer = sim
    path = discover(b, peer)
    call(b.sim.SetAcquireError, peer.address, 'NotSupported')
    r = bulk(b, path, '--send', '100')
    assert r['path'] == 'writevalue'
    got = b''
    def collect():
        nonlocal got
        got += received_bytes(peer)
        return len(got) >= 100
    wait_until(collect, 10, 'the peer to receive 100 bytes')
    assert got == pattern(100)
