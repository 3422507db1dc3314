# test_rfcomm_transport.py: bgsync's RFCOMM transport (rfcomm/) against
# bgsync-sim: 1 MiB both ways with content verified through the scenario
# peripheral's RFCOMM echo server and through a simulated device's echo
# service, a clean error for a UUID nobody serves, and "disconnected" when
# the link drops.
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

RFCOMM_BULK = os.environ.get('RFCOMM_BULK')
MIB = 1024 * 1024
NOBODY_UUID = '7e1a1199-6c2b-4b6b-9a3e-5bc0c0de0001'


def run_tool(argv, env):
    """Run a tool while serving the main loop; a child watch wakes it and
    a watch on stdout collects its lines as they come."""
    from gi.repository import GLib
    p = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    done = []
    out = bytearray()
    os.set_blocking(p.stdout.fileno(), False)

    def readable(fd, cond):
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return True
        out.extend(data)
        if not data:
            p.out_watch = 0
        return bool(data)
    p.out_watch = GLib.io_add_watch(p.stdout.fileno(), GLib.PRIORITY_DEFAULT,
                                    GLib.IO_IN | GLib.IO_HUP, readable)
    GLib.child_watch_add(GLib.PRIORITY_DEFAULT, p.pid, lambda pid, status: done.append(status))
    return p, done, out


def finish(p, done, out, timeout, what):
    from gi.repository import GLib
    wait_until(lambda: done, timeout, what)
    # the fd number is reused by the next tool's pipe: the watch must go first
    if p.out_watch:
        GLib.source_remove(p.out_watch)
    os.set_blocking(p.stdout.fileno(), True)
    rest, err = p.communicate()
    out.extend(rest or b'')
    # GLib reaped the child: its wait status is what the watch saw
    return os.waitstatus_to_exitcode(done[0]), out.decode(), err.decode()


def pattern(n):
    return bytes(((i * 131 + (i >> 8)) & 0xff) for i in range(n))


@pytest.fixture
def sim():
    if not RFCOMM_BULK or not os.environ.get('BGSYNC_SIM'):
        pytest.skip('RFCOMM_BULK and BGSYNC_SIM must point at the built tools')
    logdir = tempfile.mkdtemp(prefix='bgs-rfcomm-test-')
    b = backends.SimBackend(logdir)
    b.start()
    # bluetoothd's own temporary-device timeout (30 s), not the scenarios'
    # short one: a loaded machine must not lose the device before the tool
    # gets to it
    call(b.sim.Configure, dbus.Dictionary({'temporary-timeout-ms': dbus.UInt32(30000)},
                                          signature='sv'))
    yield b
    b.stop()


def discover(b, address):
    adapter = dbus.Interface(b.bus.get_object('org.bluez', '/org/bluez/hci0'), 'org.bluez.Adapter1')
    call(adapter.StartDiscovery)
    path = '/org/bluez/hci0/dev_' + address.replace(':', '_')
    om = dbus.Interface(b.bus.get_object('org.bluez', '/'), 'org.freedesktop.DBus.ObjectManager')
    wait_until(lambda: path in call(om.GetManagedObjects), 10, 'peer discovered')
    call(adapter.StopDiscovery)
    return path


def env_for(b):
    return dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=b.bus_address)


def bulk_all(b, paths, uuid, *args, timeout=120):
    argv = [RFCOMM_BULK, '--uuid', uuid] + [a for p in paths for a in ('--device', p)] + list(args)
    p, done, out = run_tool(argv, env_for(b))
    rc, out, err = finish(p, done, out, timeout, 'rfcomm-bulk to finish')
    assert rc == 0, err
    return [dict(kv.split('=', 1) for kv in line.split()) for line in out.splitlines()
            if line.startswith('device=')]


def bulk(b, path, uuid, *args, timeout=120):
    return bulk_all(b, [path], uuid, *args, timeout=timeout)[0]


def check_echo(r, size):
    want = hashlib.sha256(pattern(size)).hexdigest()
    assert int(r['sent']) == size
    assert r['sent_sha256'] == want
    assert int(r['received']) == size
    assert r['received_sha256'] == want
    # every byte received went through "io" (the idle rule's feed)
    assert int(r['io_in']) == size


def test_1mib_both_ways_peripheral_echo(sim):
    b = sim
    peer = b.add_peer('rfcomm-peer')
    path = discover(b, peer.address)
    r = bulk(b, path, peripheral.SPP_CLIENT_UUID, '--send', str(MIB), '--receive', str(MIB))
    check_echo(r, MIB)
    assert int(r['payload']) == 4096
    stats = call(peer.control().Stats)
    assert stats['rfcomm_connections'] == 1
    assert stats['rfcomm_bytes'] == MIB


def test_1mib_both_ways_sim_device_echo(sim):
    b = sim
    addr = b.add_sim_device({'name': 'sim-spp',
                             'rfcomm-echo': dbus.Array([peripheral.SPP_CLIENT_UUID], signature='s')})
    path = discover(b, addr)
    # a small payload: many packets through the queue and back-pressure
    r = bulk(b, path, peripheral.SPP_CLIENT_UUID, '--send', str(MIB), '--receive', str(MIB),
             '--payload', '1000')
    check_echo(r, MIB)
    assert int(r['payload']) == 1000


def test_two_devices_share_one_profile_registration(sim):
    # bluetoothd (and the simulator) take a UUID once: two transports of
    # one UUID in one process must share the registration
    b = sim
    echo = dbus.Array([peripheral.SPP_CLIENT_UUID], signature='s')
    a1 = b.add_sim_device({'name': 'sim-spp-1', 'rfcomm-echo': echo})
    a2 = b.add_sim_device({'name': 'sim-spp-2', 'rfcomm-echo': echo})
    p1 = discover(b, a1)
    p2 = discover(b, a2)
    rs = bulk_all(b, [p1, p2], peripheral.SPP_CLIENT_UUID, '--send', str(256 * 1024),
                  '--receive', str(256 * 1024))
    assert [r['device'] for r in rs] == [p1, p2]
    for r in rs:
        check_echo(r, 256 * 1024)


def test_unserved_uuid_is_a_clean_error(sim):
    b = sim
    peer = b.add_peer('rfcomm-peer')
    path = discover(b, peer.address)
    p, done, out = run_tool([RFCOMM_BULK, '--device', path, '--uuid', NOBODY_UUID,
                             '--send', '10', '--timeout', '30'], env_for(b))
    rc, out, err = finish(p, done, out, 60, 'rfcomm-bulk to fail')
    assert rc == 1
    assert 'does not offer the RFCOMM profile ' + NOBODY_UUID in err
    assert call(peer.control().Stats)['rfcomm_connections'] == 0


def test_bad_uuid_and_unknown_device(sim):
    b = sim
    p, done, out = run_tool([RFCOMM_BULK, '--device', '/org/bluez/hci0/dev_00_00_00_00_00_00',
                             '--uuid', peripheral.SPP_CLIENT_UUID, '--send', '10',
                             '--timeout', '30'], env_for(b))
    rc, out, err = finish(p, done, out, 60, 'rfcomm-bulk to fail')
    assert rc == 1
    assert 'no device' in err
    p, done, out = run_tool([RFCOMM_BULK, '--device', '/org/bluez/hci0/dev_00_00_00_00_00_00',
                             '--uuid', 'not-a-uuid', '--timeout', '30'], env_for(b))
    rc, out, err = finish(p, done, out, 60, 'rfcomm-bulk to fail')
    assert rc == 1
    assert 'not a UUID' in err


def test_drop_link_reports_disconnected(sim):
    b = sim
    peer = b.add_peer('rfcomm-peer')
    path = discover(b, peer.address)
    p, done, out = run_tool([RFCOMM_BULK, '--device', path, '--uuid', peripheral.SPP_CLIENT_UUID,
                             '--hold', '--timeout', '60'], env_for(b))
    wait_until(lambda: b'connected\n' in out or done, 30, 'the transport to connect')
    assert not done, 'rfcomm-bulk exited before connecting'
    b.drop_link(peer)
    rc, text, err = finish(p, done, out, 30, 'rfcomm-bulk to see the drop')
    assert rc == 0, err
    assert 'disconnected=' in text


def test_disconnect_profile_reports_disconnected(sim):
    # DisconnectProfile makes bluetoothd call RequestDisconnection on our profile
    b = sim
    addr = b.add_sim_device({'name': 'sim-spp',
                             'rfcomm-echo': dbus.Array([peripheral.SPP_CLIENT_UUID], signature='s')})
    path = discover(b, addr)
    p, done, out = run_tool([RFCOMM_BULK, '--device', path, '--uuid', peripheral.SPP_CLIENT_UUID,
                             '--hold', '--timeout', '60'], env_for(b))
    wait_until(lambda: b'connected\n' in out or done, 30, 'the transport to connect')
    assert not done, 'rfcomm-bulk exited before connecting'
    dev = dbus.Interface(b.bus.get_object('org.bluez', path), 'org.bluez.Device1')
    call(dev.DisconnectProfile, peripheral.SPP_CLIENT_UUID)
    rc, text, err = finish(p, done, out, 30, 'rfcomm-bulk to see the disconnect')
    assert rc == 0, err
    assert 'disconnected=' in text


def test_rate_capped_link_paces_without_loss(sim):
    # a slow link fills the socket: the transport waits for room (G_IO_OUT)
    # instead of dropping or spinning; 4 MiB is more than the socket buffers
    b = sim
    peer = b.add_peer('rfcomm-peer')
    path = discover(b, peer.address)
    call(b.sim.SetLinkRate, peer.address, dbus.UInt64(4 * MIB))
    r = bulk(b, path, peripheral.SPP_CLIENT_UUID, '--send', str(4 * MIB), '--receive', str(4 * MIB))
    check_echo(r, 4 * MIB)
    # the cap engaged (4 MiB each way at 4 MiB/s is about a second)...
    assert float(r['wall']) >= 0.5
    # ...and the transport waited on it, not spinning: far less CPU than wall
    assert float(r['cpu']) < float(r['wall']) / 2


# ---- connect retry, against a fake bluetoothd ------------------------------

FAKE_DEV = '/org/bluez/hci0/dev_11_22_33_44_55_66'


@pytest.fixture
def fake_bus():
    if not RFCOMM_BULK:
        pytest.skip('RFCOMM_BULK must point at the built tool')
    d = subprocess.Popen(['dbus-daemon', '--session', '--nofork', '--print-address'],
                         stdout=subprocess.PIPE)
    address = d.stdout.readline().decode().strip()
    procs = []

    def start(fails, name='org.bluez.Error.Failed', msg='br-connection-create-socket'):
        p = subprocess.Popen(['/usr/bin/python3', os.path.join(HERE, 'fake_bluez.py'),
                              str(fails), name, msg, address], stdout=subprocess.PIPE)
        procs.append(p)
        assert p.stdout.readline().strip() == b'READY'
        bus = dbus.bus.BusConnection(address)
        return bus, dbus.Interface(bus.get_object('org.bluez', '/'), 'org.bgsync.FakeBluez1')
    yield address, start
    for p in procs + [d]:
        p.kill()
        p.wait()


def fake_bulk(address, *args):
    env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=address)
    p, done, out = run_tool([RFCOMM_BULK, '--device', FAKE_DEV, '--uuid', peripheral.SPP_CLIENT_UUID,
                             '--timeout', '30'] + list(args), env)
    return finish(p, done, out, 60, 'rfcomm-bulk to finish')


def test_connect_retries_the_security_block_race(fake_bus):
    address, start = fake_bus
    bus, fake = start(2)
    rc, out, err = fake_bulk(address, '--send', '65536', '--receive', '65536')
    assert rc == 0, err
    r = dict(kv.split('=', 1) for kv in out.split() if '=' in kv)
    assert r['attempts'] == '3'
    assert r['received_sha256'] == hashlib.sha256(pattern(65536)).hexdigest()
    # the tool's last UnregisterProfile may still be on its way to the fake
    stats = wait_until(lambda: (lambda st: st if st['unregistered'] == 1 else None)(call(fake.Stats)),
                       10, 'the profile to be unregistered when the transport went')
    assert stats['attempts'] == 3
    # client role, no auto-connect, and unregistered when the transport went
    assert stats['role'] == 'client'
    assert not stats['autoconnect']
    assert stats['unregistered'] == 1


def test_connect_retry_is_bounded(fake_bus):
    address, start = fake_bus
    bus, fake = start(100, 'org.bluez.Error.InProgress', 'In Progress')
    rc, out, err = fake_bulk(address, '--send', '10')
    assert rc == 1
    assert 'after 4 attempts' in err
    assert call(fake.Stats)['attempts'] == 4


def test_connect_success_without_a_connection_disconnects_the_stale_one(fake_bus):
    # bluetoothd 5.66 answers ConnectProfile with success and no
    # NewConnection when it believes the profile connected: the transport
    # disconnects that session once and connects again
    address, start = fake_bus
    bus, fake = start(1, 'stale', '')
    rc, out, err = fake_bulk(address, '--send', '65536', '--receive', '65536')
    assert rc == 0, err
    r = dict(kv.split('=', 1) for kv in out.split() if '=' in kv)
    assert r['received_sha256'] == hashlib.sha256(pattern(65536)).hexdigest()
    stats = call(fake.Stats)
    assert (stats['attempts'], stats['disconnects']) == (2, 1), stats


def test_connect_success_without_a_connection_twice_is_busy(fake_bus):
    address, start = fake_bus
    bus, fake = start(100, 'stale-stuck', '')
    rc, out, err = fake_bulk(address, '--send', '10')
    assert rc == 1
    assert 'connected but hands over no connection' in err, err
    assert call(fake.Stats)['disconnects'] == 1


def test_profile_unavailable_is_not_retried(fake_bus):
    address, start = fake_bus
    bus, fake = start(100, 'org.bluez.Error.Failed', 'br-connection-profile-unavailable')
    rc, out, err = fake_bulk(address, '--send', '10')
    assert rc == 1
    assert 'does not offer the RFCOMM profile' in err
    assert call(fake.Stats)['attempts'] == 1


def test_link_drop_mid_transfer_is_a_clean_error(sim):
    b = sim
    peer = b.add_peer('rfcomm-peer')
    path = discover(b, peer.address)
    call(b.sim.SetLinkRate, peer.address, dbus.UInt64(MIB))
    p, done, out = run_tool([RFCOMM_BULK, '--device', path, '--uuid', peripheral.SPP_CLIENT_UUID,
                             '--send', str(8 * MIB), '--receive', str(8 * MIB), '--timeout', '60'],
                            env_for(b))
    # 8 MiB each way at 1 MiB/s: the drop comes seconds before the end
    wait_until(lambda: b'connected\n' in out or done, 30, 'the transport to connect')
    assert not done, 'rfcomm-bulk exited before the drop'
    b.drop_link(peer)
    rc, text, err = finish(p, done, out, 30, 'rfcomm-bulk to see the drop')
    assert rc == 1, (text, err)
    assert 'disconnected:' in err


def test_bluetoothd_restart_releases_the_profile(sim):
    b = sim
    addr = b.add_sim_device({'name': 'sim-spp',
                             'rfcomm-echo': dbus.Array([peripheral.SPP_CLIENT_UUID], signature='s')})
    path = discover(b, addr)
    p, done, out = run_tool([RFCOMM_BULK, '--device', path, '--uuid', peripheral.SPP_CLIENT_UUID,
                             '--hold', '--timeout', '60'], env_for(b))
    wait_until(lambda: b'connected\n' in out or done, 30, 'the transport to connect')
    assert not done, 'rfcomm-bulk exited before connecting'
    b.restart_bluez()
    rc, text, err = finish(p, done, out, 30, 'rfcomm-bulk to see bluetoothd go')
    assert rc == 0, err
    assert 'disconnected=' in text


def test_cancel_abandons_a_hanging_connect(fake_bus):
    address, start = fake_bus
    bus, fake = start(-1)
    # the tool gives up at 20 s, before the 30 s connect timeout: only an
    # abandoned connect answers "cancelled"
    rc, out, err = fake_bulk(address, '--send', '10', '--cancel-ms', '300', '--timeout', '20')
    assert rc == 1
    assert 'cancelled' in err
    stats = call(fake.Stats)
    assert stats['attempts'] == 1
    # nothing left registered once the abandoned transport went
    assert stats['profiles'] == 0


def test_reconnect_after_drop_then_transfer(sim):
    b = sim
    peer = b.add_peer('rfcomm-peer')
    path = discover(b, peer.address)
    p, done, out = run_tool([RFCOMM_BULK, '--device', path, '--uuid', peripheral.SPP_CLIENT_UUID,
                             '--hold', '--reconnect', '--send', str(256 * 1024),
                             '--receive', str(256 * 1024), '--timeout', '60'], env_for(b))
    wait_until(lambda: b'connected\n' in out or done, 30, 'the transport to connect')
    assert not done, 'rfcomm-bulk exited before connecting'
    b.drop_link(peer)
    rc, text, err = finish(p, done, out, 60, 'rfcomm-bulk to reconnect and transfer')
    assert rc == 0, err
    lines = text.splitlines()
    assert lines[0] == 'connected'
    assert lines[1].startswith('disconnected=')
    assert lines[2] == 'reconnected'
    r = dict(kv.split('=', 1) for kv in lines[3].split())
    check_echo(r, 256 * 1024)
    assert call(peer.control().Stats)['rfcomm_connections'] == 2
