# scenarios.py: what bgsync relies on BlueZ for, as backend-neutral steps.
# Each scenario gets a fresh backend; every wait is bounded.

import os
import socket
import time

import dbus
import dbus.service

import harness
from harness import (call, check, expect_error, wait_until, wait_hup, read_packets,
                     ScenarioFailed, Skip, DEVICE, GATT_CHRC, ADAPTER)
import peripheral as P

SCENARIOS = []


def scenario(needs=()):
    def deco(fn):
        SCENARIOS.append((fn.__name__, tuple(needs), fn))
        return fn
    return deco


class Context:
    def __init__(self, backend):
        self.backend = backend
        self.bus = backend.bus
        self.central = harness.Central(backend.bus, backend.central_adapter)
        self.peer = None

    def add_peer(self, name='bgsync-peer'):
        self.peer = self.backend.add_peer(name)
        return self.peer

    def advertise_anew(self):
        """Have the peer advertise anew once the central scans: btvirt
        sends one advertising report per scan or advertising enable, and
        the one for a scan enable can come before the kernel's discovery
        is active (then it is dropped)."""
        if self.peer is not None and self.peer.control_name:
            call(self.peer.control().Readvertise)

    def start_scan(self, filt=None):
        self.central.start_discovery(filt if filt is not None else {'Transport': 'le'})
        self.advertise_anew()

    def discover_peer(self, timeout=15):
        c = self.central
        self.start_scan()
        path = c.wait_device(self.peer.address, timeout, name=self.peer.name)
        return path

    def rediscover(self, timeout=20):
        """Wait until the peer is heard again: a fresh advertising report
        sets RSSI, which bluetoothd (and the simulator) drop when discovery
        stops."""
        c = self.central
        path = c.device_path(self.peer.address)
        c.stop_discovery()
        self.start_scan()
        # bluetoothd may also reconnect by itself (auto-connect after a
        # supervision timeout): either counts as the peer being back
        wait_until(lambda: c.objs.prop(path, DEVICE, 'RSSI') is not None or
                   c.objs.prop(path, DEVICE, 'Connected'), timeout,
                   'the peer advertising again (or reconnected)')
        c.stop_discovery()

    def connected_peer(self):
        self.add_peer()
        self.discover_peer()
        self.central.stop_discovery()
        return self.central.connect(self.peer.address)

    def close(self):
        self.central.close()


# ---- discovery and presence ----

@scenario()
def discovery_finds_peer(ctx):
    peer = ctx.add_peer('disc-peer')
    path = ctx.discover_peer()
    objs = ctx.central.objs
    uuids = [str(u).lower() for u in objs.prop(path, DEVICE, 'UUIDs', [])]
    check(P.SVC_UUID in uuids, 'advertised service UUID missing: %s' % uuids)
    mfr = objs.prop(path, DEVICE, 'ManufacturerData', {})
    check(bytes(mfr.get(P.COMPANY, b'')) == b'\xb9\x5c', 'manufacturer data %r' % mfr)
    check(objs.prop(path, DEVICE, 'Alias') == 'disc-peer', 'Alias follows Name')
    check(str(objs.prop(path, DEVICE, 'Adapter')) == ctx.backend.central_adapter, 'Adapter')
    check(objs.prop(path, DEVICE, 'Connected') is not None, 'Connected property present')


@scenario()
def discovery_filter_by_uuid(ctx):
    ctx.add_peer('filter-peer')
    c = ctx.central
    # a filter for a UUID the peer does not advertise finds nothing of it
    ctx.start_scan({'UUIDs': dbus.Array(['0000aaaa-0000-1000-8000-00805f9b34fb'], signature='s'),
                    'Transport': 'le'})
    harness.drain(1.0)   # negative check: the peer must not be reported
    check(not c.objs.has(c.device_path(ctx.peer.address), DEVICE),
          'a peer outside the UUID filter was reported')
    c.stop_discovery()
    ctx.start_scan({'UUIDs': dbus.Array([P.SVC_UUID], signature='s'), 'Transport': 'le'})
    c.wait_device(ctx.peer.address, 15)


@scenario()
def discovery_stops_with_client(ctx):
    # discovery sessions belong to the client: when it leaves, they end
    bus2 = dbus.bus.BusConnection(ctx.backend.bus_address) if ctx.backend.bus_address \
        else dbus.SystemBus(private=True)
    a2 = dbus.Interface(bus2.get_object('org.bluez', ctx.backend.central_adapter), ADAPTER)
    call(a2.StartDiscovery)
    objs = ctx.central.objs
    wait_until(lambda: objs.prop(ctx.backend.central_adapter, ADAPTER, 'Discovering'), 5,
               'Discovering true')
    bus2.close()
    wait_until(lambda: objs.prop(ctx.backend.central_adapter, ADAPTER, 'Discovering') is False,
               10, 'Discovering false after the client left')


@scenario(needs=('rssi',))
def rssi_follows_peer(ctx):
    peer = ctx.add_peer('rssi-peer')
    path = ctx.discover_peer()
    objs = ctx.central.objs
    ctx.backend.set_rssi(peer, -80)
    wait_until(lambda: objs.prop(path, DEVICE, 'RSSI') == -80, 5, 'RSSI -80')
    ctx.central.stop_discovery()
    wait_until(lambda: objs.prop(path, DEVICE, 'RSSI') is None, 5,
               'RSSI removed once discovery stops')


@scenario(needs=('monitor',))
def presence_found(ctx):
    # runs on btvirt too: RSSI 127 is above any high threshold. The monitor
    # is active before the peer advertises: btvirt sends one report per
    # advertising enable, so a peer already on the air is not heard again.
    bus = ctx.bus
    mgr = dbus.Interface(bus.get_object('org.bluez', ctx.backend.central_adapter),
                         'org.bluez.AdvertisementMonitorManager1')
    root = harness.MonitorRoot(bus, '/org/bgsync/test/monitors')
    mon = harness.Monitor(bus, '/org/bgsync/test/monitors/m0', {
        'Type': 'or_patterns',
        'Patterns': dbus.Array([(dbus.Byte(0), dbus.Byte(0xff),
                                 dbus.ByteArray(b'\xff\xff\xb9\x5c'))], signature='(yyay)')})
    # bluetoothd sends an app's LocalName in the scan response, and a
    # monitor alone scans passively: a name pattern never matches
    by_name = harness.Monitor(bus, '/org/bgsync/test/monitors/m1', {
        'Type': 'or_patterns',
        'Patterns': dbus.Array([(dbus.Byte(0), dbus.Byte(0x09),
                                 dbus.ByteArray(b'found-p'))], signature='(yyay)')})
    root.monitors += [mon, by_name]
    call(mgr.RegisterMonitor, root._object_path)
    wait_until(lambda: ('Activate', None) in mon.events and ('Activate', None) in by_name.events,
               10, 'Activate')
    peer = ctx.add_peer('found-peer')
    dev = harness.addr_path(ctx.backend.central_adapter, peer.address)
    wait_until(lambda: ('DeviceFound', dev) in mon.events, 20,
               'DeviceFound by manufacturer data pattern')
    check(ctx.central.objs.has(dev, DEVICE), 'the found device has an object')
    harness.drain(1.0)   # negative check: the name is not in the advertising PDU
    check(('DeviceFound', dev) not in by_name.events,
          'a name pattern matched a passive scan (the name is in the scan response)')


@scenario(needs=('monitor', 'adv-lost'))
def presence_found_and_lost(ctx):
    peer = ctx.add_peer('presence-peer')
    bus = ctx.bus
    mgr = dbus.Interface(bus.get_object('org.bluez', ctx.backend.central_adapter),
                         'org.bluez.AdvertisementMonitorManager1')
    types = call(dbus.Interface(bus.get_object('org.bluez', ctx.backend.central_adapter),
                                harness.PROPS).Get,
                 'org.bluez.AdvertisementMonitorManager1', 'SupportedMonitorTypes')
    check('or_patterns' in [str(t) for t in types], 'or_patterns supported')
    root = harness.MonitorRoot(bus, '/org/bgsync/test/monitors')
    mon = harness.Monitor(bus, '/org/bgsync/test/monitors/m0', {
        'Type': 'or_patterns',
        'RSSILowThreshold': dbus.Int16(-90), 'RSSIHighThreshold': dbus.Int16(-70),
        'RSSILowTimeout': dbus.UInt16(1), 'RSSIHighTimeout': dbus.UInt16(1),
        'Patterns': dbus.Array([(dbus.Byte(0), dbus.Byte(0xff),
                                 dbus.ByteArray(b'\xff\xff\xb9\x5c'))], signature='(yyay)')})
    root.monitors.append(mon)
    call(mgr.RegisterMonitor, root._object_path)
    wait_until(lambda: ('Activate', None) in mon.events, 5, 'Activate')
    dev = harness.addr_path(ctx.backend.central_adapter, peer.address)
    wait_until(lambda: ('DeviceFound', dev) in mon.events, 10, 'DeviceFound')
    ctx.backend.set_in_range(peer, False)
    wait_until(lambda: ('DeviceLost', dev) in mon.events, 10, 'DeviceLost after leaving range')
    # weak signal below the low threshold counts as lost too
    ctx.backend.set_in_range(peer, True)
    wait_until(lambda: mon.events.count(('DeviceFound', dev)) == 2, 10, 'found again')
    ctx.backend.set_rssi(peer, -100)
    wait_until(lambda: mon.events.count(('DeviceLost', dev)) == 2, 10, 'lost on weak RSSI')
    call(mgr.UnregisterMonitor, root._object_path)
    wait_until(lambda: ('Release', None) in mon.events, 5, 'Release on unregister')


class _Advert(dbus.service.Object):
    """A minimal LEAdvertisement1 the scenario registers itself."""

    def __init__(self, bus, path, name):
        super().__init__(bus, path)
        self.path = path
        self.name = name
        self.released = 0

    @dbus.service.method(harness.PROPS, in_signature='s', out_signature='a{sv}')
    def GetAll(self, iface):
        return {'Type': 'peripheral', 'LocalName': self.name,
                'ServiceUUIDs': dbus.Array([P.SVC_UUID], signature='s'),
                'Discoverable': dbus.Boolean(True)}

    @dbus.service.method('org.bluez.LEAdvertisement1', in_signature='', out_signature='')
    def Release(self):
        self.released += 1


@scenario()
def advert_after_power_cycle(ctx):
    # bluetoothd 5.66 (kernel 6.1) ends the advertising instance when the
    # adapter powers off but keeps the registration: no Release, the same
    # ActiveInstances, nothing on the air after power on, and registering
    # again says AlreadyExists; unregister + register brings it back
    bus = ctx.bus
    c = ctx.central
    peer_adapter = ctx.backend.peer_adapter
    mgr = dbus.Interface(bus.get_object('org.bluez', peer_adapter),
                         'org.bluez.LEAdvertisingManager1')
    props = dbus.Interface(bus.get_object('org.bluez', peer_adapter), harness.PROPS)
    address = ctx.backend.peer_adapter_address()
    path = c.device_path(address)
    adv = _Advert(bus, '/org/bgsync/test/adv', 'cycle-peer')
    opts = dbus.Dictionary({}, signature='sv')

    def active():
        return int(call(props.Get, 'org.bluez.LEAdvertisingManager1', 'ActiveInstances'))
    before = active()
    c.start_discovery({'Transport': 'le'})
    call(mgr.RegisterAdvertisement, adv.path, opts)
    check(active() == before + 1, 'ActiveInstances counts the advert')
    c.wait_device(address, 15, name='cycle-peer')
    call(props.Set, ADAPTER, 'Powered', dbus.Boolean(False))
    wait_until(lambda: c.objs.prop(peer_adapter, ADAPTER, 'Powered') is False, 5, 'peer powered off')
    expect_error(mgr.RegisterAdvertisement, '/org/bgsync/test/adv2', opts,
                 names=['org.bluez.Error.Failed'])
    check(adv.released == 0, 'no Release on power off')
    check(active() == before + 1, 'still registered while off')
    call(props.Set, ADAPTER, 'Powered', dbus.Boolean(True))
    wait_until(lambda: c.objs.prop(peer_adapter, ADAPTER, 'Powered'), 5, 'peer powered on')
    expect_error(mgr.RegisterAdvertisement, adv.path, opts,
                 names=['org.bluez.Error.AlreadyExists'])
    # scan anew: a report now would come from an advert that is on the air
    c.stop_discovery()
    mark = len(c.objs.changes)
    c.start_discovery({'Transport': 'le'})
    harness.drain(1.5)   # negative check: nothing on the air after power on
    check(not any(p == path and n == 'RSSI' and v is not None
                  for p, i, n, v in c.objs.changes[mark:]),
          'the advert was on the air after power on without registering again')
    call(mgr.UnregisterAdvertisement, adv.path)
    check(active() == before, 'unregistered')
    call(mgr.RegisterAdvertisement, adv.path, opts)
    wait_until(lambda: any(p == path and n == 'RSSI' and v is not None
                           for p, i, n, v in c.objs.changes[mark:]), 10,
               'the advert on the air again after unregister + register')
    c.stop_discovery()
    call(mgr.UnregisterAdvertisement, adv.path)


# ---- GATT ----

@scenario()
def gatt_read(ctx):
    ctx.connected_peer()
    c = ctx.central
    info = c.find_chrc(ctx.peer.address, P.INFO_UUID)
    want = ('bgsync-peer %s' % ctx.peer.name).encode()
    check(c.read(info) == want, 'read value')
    check(c.read(info, offset=7) == want[7:], 'read at offset')
    check(c.objs.prop(info, GATT_CHRC, 'Flags') == ['read'], 'flags')
    # the read value is cached in Value like bluetoothd does
    wait_until(lambda: bytes(c.objs.prop(info, GATT_CHRC, 'Value', b'')) == want, 5, 'Value cached')
    rx = c.find_chrc(ctx.peer.address, P.RX_UUID)
    expect_error(c.chrc(rx).ReadValue, dbus.Dictionary({}, signature='sv'),
                 names=['org.bluez.Error.NotPermitted'])


@scenario()
def gatt_write(ctx):
    ctx.connected_peer()
    c = ctx.central
    rx = c.find_chrc(ctx.peer.address, P.RX_UUID)
    c.write(rx, b'request-1', 'request')
    c.write(rx, b'command-1', 'command')
    ctl = ctx.peer.control()
    seen = []
    wait_until(lambda: seen.extend(bytes(d) for u, t, d in call(ctl.Received)
                                   if str(u) == P.RX_UUID) or len(seen) >= 2,
               5, 'both writes at the peer (got %r)' % seen)
    # bluetoothd 5.66 passes no "type" to the app, and may route a command
    # through AcquireWrite when the app offers it: only the bytes count
    check(seen == [b'request-1', b'command-1'], 'writes arrived in order: %r' % seen)
    info = c.find_chrc(ctx.peer.address, P.INFO_UUID)
    expect_error(c.chrc(info).WriteValue, dbus.ByteArray(b'x'),
                 dbus.Dictionary({'type': 'request'}, signature='sv'),
                 names=['org.bluez.Error.NotSupported', 'org.bluez.Error.NotPermitted'])


@scenario()
def gatt_notify(ctx):
    ctx.connected_peer()
    c = ctx.central
    bat = c.find_chrc(ctx.peer.address, P.BATTERY_LEVEL)
    call(c.chrc(bat).StartNotify)
    wait_until(lambda: c.objs.prop(bat, GATT_CHRC, 'Notifying'), 5, 'Notifying true')
    ctl = ctx.peer.control()
    wait_until(lambda: call(ctl.Stats)['battery_notifying'], 5, 'peer asked to notify')
    mark = len(c.objs.changes)
    check(call(ctl.Notify, P.BATTERY_LEVEL, dbus.ByteArray(b'\x42')), 'peer notified')
    wait_until(lambda: any(p == bat and n == 'Value' and bytes(v) == b'\x42'
                           for p, i, n, v in c.objs.changes[mark:]), 5, 'Value notification')
    # the same value again is still a notification
    mark = len(c.objs.changes)
    call(ctl.Notify, P.BATTERY_LEVEL, dbus.ByteArray(b'\x42'))
    wait_until(lambda: any(p == bat and n == 'Value' for p, i, n, v in c.objs.changes[mark:]),
               5, 'repeated Value notification')
    call(c.chrc(bat).StopNotify)
    wait_until(lambda: c.objs.prop(bat, GATT_CHRC, 'Notifying') is False, 5, 'Notifying false')
    wait_until(lambda: not call(ctl.Stats)['battery_notifying'], 5, 'peer told to stop')


@scenario()
def acquire_write_mtu(ctx):
    ctx.connected_peer()
    c = ctx.central
    rx = c.find_chrc(ctx.peer.address, P.RX_UUID)
    sock, mtu = c.acquire(rx, 'write')
    check(23 <= mtu <= 517, 'MTU %d' % mtu)
    wait_until(lambda: c.objs.prop(rx, GATT_CHRC, 'WriteAcquired'), 5, 'WriteAcquired')
    expect_error(c.chrc(rx).AcquireWrite, dbus.Dictionary({}, signature='sv'),
                 names=['org.bluez.Error.NotPermitted'])
    ctl = ctx.peer.control()
    # bluetoothd 5.66 asks the app for its socket on the first write and
    # keeps the writes that arrive meanwhile as pointers into its ATT
    # receive buffer (gatt-database.c pending_write_new does not copy the
    # value), so once the app answers they carry whatever PDU came last: a
    # burst's last packet, or the central's own CCC write. One write first,
    # whatever reaches the app of it, then the burst through the socket.
    sock.send(b'prime')
    first = wait_until(lambda: call(ctl.Stats)['write_socks'] >= 1 and call(ctl.Received), 10,
                       'the first write at the peer (its write socket)')
    if [bytes(d) for u, t, d in first] != [b'prime']:
        print('note: acquire_write_mtu: the first write reached the app as %r' %
              [bytes(d).hex() for u, t, d in first], flush=True)
    n = 64
    sent = []
    # a packet is one ATT Write Command: MTU-3 bytes, but bluetoothd 5.66's
    # server drops values over 510 bytes (its length check counts the
    # 2-byte handle), silently for commands
    size = min(mtu - 3, 510)
    for i in range(n):
        pkt = i.to_bytes(4, 'big') + bytes((i * 7 + k) & 0xff for k in range(size - 4))
        sock.send(pkt)
        sent.append(pkt)
    got = []
    wait_until(lambda: got.extend(bytes(d) for u, t, d in call(ctl.Received)) or len(got) >= n,
               20, '%d packets at the peer' % n)
    if got != sent:
        bad = next((i for i, (a, b) in enumerate(zip(got, sent)) if a != b), min(len(got), n))
        raise ScenarioFailed('packets arrive whole and in order: %d/%d, first difference at #%d '
                             '(got %d bytes seq %s, sent %d bytes)' % (
                                 len(got), n, bad,
                                 len(got[bad]) if bad < len(got) else -1,
                                 got[bad][:4].hex() if bad < len(got) else '-', size))
    sock.close()
    wait_until(lambda: c.objs.prop(rx, GATT_CHRC, 'WriteAcquired') is False, 5,
               'WriteAcquired false after close')


@scenario()
def acquire_notify_mtu(ctx):
    ctx.connected_peer()
    c = ctx.central
    tx = c.find_chrc(ctx.peer.address, P.TX_UUID)
    sock, mtu = c.acquire(tx, 'notify')
    wait_until(lambda: c.objs.prop(tx, GATT_CHRC, 'NotifyAcquired'), 5, 'NotifyAcquired')
    ctl = ctx.peer.control()
    wait_until(lambda: call(ctl.Stats)['notifying'], 5, 'peer subscribed')
    n = 64
    # MTU-3 bytes, but no more than an attribute value holds (512)
    size = min(mtu - 3, 512)
    sent = call(ctl.NotifyBurst, P.TX_UUID, dbus.UInt32(n), dbus.UInt32(size))
    check(sent == n, 'peer sent %d/%d' % (sent, n))
    pkts = read_packets(sock, n, 20, 'notifications')
    sizes = sorted({len(p) for p in pkts})
    check(sizes == [size], 'each notification is %d bytes, got sizes %s' % (size, sizes))
    check([int.from_bytes(p[:4], 'big') for p in pkts] == list(range(n)), 'in order')
    expect_error(c.chrc(tx).StartNotify, names=['org.bluez.Error.NotPermitted'])
    sock.close()
    wait_until(lambda: c.objs.prop(tx, GATT_CHRC, 'NotifyAcquired') is False, 5,
               'NotifyAcquired false after close')


# ---- RFCOMM ----

@scenario(needs=('rfcomm',))
def rfcomm_bulk(ctx):
    # no LE link to the peer: btvirt (emulator/btdev.c, 5.66) answers BR/EDR
    # authentication on the first connection to that address it finds, the
    # LE one, so the BR/EDR link never authenticates (HCI Auth Complete
    # carries the LE handle) and the peer drops it
    ctx.add_peer()
    ctx.discover_peer()
    c = ctx.central
    c.stop_discovery()
    # RFCOMM over BR/EDR pairs first; the shared bluetoothd needs an agent
    # to say yes for the peer side
    harness.register_agent(ctx.bus)
    ctx.backend.prepare_bredr(ctx.peer)
    prof = harness.Profile(ctx.bus, '/org/bgsync/test/spp')
    pm = dbus.Interface(ctx.bus.get_object('org.bluez', '/org/bluez'), 'org.bluez.ProfileManager1')
    call(pm.RegisterProfile, prof._object_path, P.SPP_CLIENT_UUID,
         dbus.Dictionary({'Role': 'client', 'Name': 'bgsync test'}, signature='sv'))
    dev = c.iface(c.device_path(ctx.peer.address), DEVICE)
    last = None
    for _ in range(3):  # real RFCOMM connects fail now and then: bounded retry
        try:
            call(dev.ConnectProfile, P.SPP_CLIENT_UUID, timeout=30)
            break
        except dbus.exceptions.DBusException as e:
            last = e
    else:
        raise ScenarioFailed('ConnectProfile: %s' % last)
    check(len(prof.connections) == 1, 'NewConnection on the client profile')
    device, sock = prof.connections[0]
    check(device == c.device_path(ctx.peer.address), 'NewConnection names the device')
    payload = bytes((i * 31) & 0xff for i in range(256 * 1024))
    echoed = bytearray()
    out = memoryview(payload)
    from gi.repository import GLib

    def io(fd, cond):
        nonlocal out
        if cond & GLib.IO_OUT and out:
            try:
                n = sock.send(out[:65536])
                out = out[n:]
            except BlockingIOError:
                pass
        if cond & GLib.IO_IN:
            try:
                data = sock.recv(65536)
                if not data:
                    return False
                echoed.extend(data)
            except BlockingIOError:
                pass
        return True
    src = GLib.io_add_watch(sock.fileno(), GLib.IO_IN | GLib.IO_OUT | GLib.IO_HUP, io)
    try:
        wait_until(lambda: len(echoed) >= len(payload), 60,
                   'echo of %d bytes (%d back)' % (len(payload), len(echoed)))
    finally:
        GLib.source_remove(src)
    check(bytes(echoed) == payload, 'echoed bytes equal what was sent')
    # bluetoothd 5.66 says yes to a profile that is connected already
    # (connect_profiles: -EALREADY is success), without a new connection
    call(dev.ConnectProfile, P.SPP_CLIENT_UUID, timeout=30)
    harness.drain(0.5)   # negative check: no second NewConnection
    check(len(prof.connections) == 1, 'no second connection (%d)' % len(prof.connections))
    call(dev.DisconnectProfile, P.SPP_CLIENT_UUID)
    wait_until(lambda: prof.disconnect_requests, 5, 'RequestDisconnection')


# ---- link loss, reconnect, reboot ----

@scenario(needs=('range',))
def link_loss(ctx):
    path = ctx.connected_peer()
    c = ctx.central
    tx = c.find_chrc(ctx.peer.address, P.TX_UUID)
    sock, mtu = c.acquire(tx, 'notify')
    ctx.backend.set_in_range(ctx.peer, False)
    wait_until(lambda: c.objs.prop(path, DEVICE, 'Connected') is False, 15, 'Connected false')
    check(not c.objs.prop(path, DEVICE, 'ServicesResolved'), 'ServicesResolved false')
    wait_hup(sock, 5, 'acquired notify socket hangs up')
    # bluetoothd caches attributes (Cache=always): the objects stay
    check(c.objs.children(path, GATT_CHRC), 'GATT objects kept after the link loss')
    info = c.find_chrc(ctx.peer.address, P.INFO_UUID)
    expect_error(c.chrc(info).ReadValue, dbus.Dictionary({}, signature='sv'),
                 names=['org.bluez.Error.Failed', 'org.bluez.Error.NotConnected'])
    # while out of range a connect attempt fails (bounded)
    dev = c.iface(path, DEVICE)
    expect_error(dev.Connect, names=['org.bluez.Error.Failed', 'org.bluez.Error.InProgress',
                                     'org.freedesktop.DBus.Error.NoReply'], timeout=30)


@scenario(needs=('range',))
def reconnect_after_loss(ctx):
    path = ctx.connected_peer()
    c = ctx.central
    ctx.backend.set_in_range(ctx.peer, False)
    wait_until(lambda: c.objs.prop(path, DEVICE, 'Connected') is False, 15, 'Connected false')
    ctx.backend.set_in_range(ctx.peer, True)
    ctx.rediscover()
    if not c.connected(ctx.peer.address):
        c.connect(ctx.peer.address)
    wait_until(lambda: c.objs.prop(path, DEVICE, 'ServicesResolved'), 20, 'ServicesResolved')
    info = c.find_chrc(ctx.peer.address, P.INFO_UUID)
    check(c.read(info).startswith(b'bgsync-peer'), 'read after reconnect')
    # acquired sockets are per connection: acquire again
    rx = c.find_chrc(ctx.peer.address, P.RX_UUID)
    sock, mtu = c.acquire(rx, 'write')
    sock.send(b'after-reconnect')
    ctl = ctx.peer.control()
    wait_until(lambda: any(bytes(d) == b'after-reconnect' for u, t, d in call(ctl.Received)), 5,
               'write after reconnect')


@scenario()
def remote_drops_link(ctx):
    path = ctx.connected_peer()
    c = ctx.central
    ctx.backend.drop_link(ctx.peer)
    wait_until(lambda: c.objs.prop(path, DEVICE, 'Connected') is False, 10, 'Connected false')
    c.connect(ctx.peer.address)
    check(c.read(c.find_chrc(ctx.peer.address, P.INFO_UUID)).startswith(b'bgsync-peer'),
          'read after the reconnect')


@scenario()
def peer_reboot_same_address(ctx):
    path = ctx.connected_peer()
    c = ctx.central
    harness.register_agent(ctx.bus)
    call(c.iface(path, DEVICE).Pair)
    wait_until(lambda: c.objs.prop(path, DEVICE, 'Paired'), 5, 'Paired')
    old = ctx.peer.address
    ctx.backend.reboot_peer(ctx.peer, 1.0)
    wait_until(lambda: c.objs.prop(path, DEVICE, 'Connected') is False, 15, 'link drops on reboot')
    check(ctx.peer.address == old, 'same address')
    # a paired device stays; Connect waits for it to come back
    check(c.objs.has(path, DEVICE), 'paired device kept')
    ctx.rediscover()
    c.connect(old)
    check(c.read(c.find_chrc(old, P.INFO_UUID)).startswith(b'bgsync-peer'), 'read after reboot')


@scenario(needs=('address-change',))
def peer_reboot_new_address(ctx):
    path = ctx.connected_peer()
    c = ctx.central
    old = ctx.peer.address
    new = ctx.backend.reboot_peer(ctx.peer, 0.5, new_address=True)
    check(new != old, 'address changed')
    wait_until(lambda: c.objs.prop(path, DEVICE, 'Connected') is False, 15, 'link drops on reboot')
    c.start_discovery({'Transport': 'le'})
    newpath = c.wait_device(new, 15, name=ctx.peer.name)
    c.stop_discovery()
    check(newpath != path, 'a new device object for the new address')
    c.connect(new)
    check(c.read(c.find_chrc(new, P.INFO_UUID)).startswith(b'bgsync-peer'), 'read at new address')
    check(not c.connected(old), 'old address not connected')


@scenario(needs=('stall',))
def stalled_link_holds(ctx):
    path = ctx.connected_peer()
    c = ctx.central
    info = c.find_chrc(ctx.peer.address, P.INFO_UUID)
    ctx.backend.stall(ctx.peer, True)
    box = {}
    c.chrc(info).ReadValue(dbus.Dictionary({}, signature='sv'),
                           reply_handler=lambda v: box.setdefault('v', bytes(v)),
                           error_handler=lambda e: box.setdefault('e', e), timeout=30)
    harness.drain(0.5)   # negative check: nothing may arrive while stalled
    check(not box, 'no reply while stalled')
    check(c.objs.prop(path, DEVICE, 'Connected'), 'still connected while stalled')
    ctx.backend.stall(ctx.peer, False)
    wait_until(lambda: box, 5, 'read completes after the stall')
    check('v' in box and box['v'].startswith(b'bgsync-peer'), 'read value after stall: %r' % box)


@scenario(needs=('restart',))
def bluez_restart(ctx):
    ctx.add_peer('restart-peer')
    c = ctx.central
    objs = c.objs
    mark = len(objs.owner_history)
    ctx.backend.restart_bluez()
    wait_until(lambda: None in objs.owner_history[mark:], 5, 'org.bluez gone')
    wait_until(lambda: objs.owner, 10, 'org.bluez back')
    objs.refresh()
    check(objs.has(ctx.backend.central_adapter, ADAPTER), 'adapter back')
    # the peripheral re-registers by itself when org.bluez returns
    ctx.start_scan()
    c.wait_device(ctx.peer.address, 15, name=ctx.peer.name)


# ---- the C virtual wearable as the peer ----

@scenario(needs=('wearable',))
def wearable_device_info(ctx):
    peer = ctx.backend.add_wearable('scn-wearable')
    ctx.peer = peer
    c = ctx.central
    c.start_discovery({'Transport': 'le'})
    c.wait_device(peer.address, 20, name='scn-wearable')
    c.stop_discovery()
    c.connect(peer.address)
    pnp = c.find_chrc(peer.address, '00002a50-0000-1000-8000-00805f9b34fb')
    check(c.read(pnp) == bytes.fromhex('01f10542570001'), 'PnP ID')
    bat = c.find_chrc(peer.address, P.BATTERY_LEVEL)
    check(len(c.read(bat)) == 1, 'battery level is one byte')
    mfr = c.find_chrc(peer.address, '00002a29-0000-1000-8000-00805f9b34fb')
    check(c.read(mfr) == b'bgsync project', 'manufacturer name')
    # bluetoothd's deviceinfo plugin reads the PnP ID itself on connection
    # and makes a Modalias of it
    path = c.device_path(peer.address)
    wait_until(lambda: c.objs.prop(path, DEVICE, 'Modalias') == 'bluetooth:v05F1p5742d0100', 10,
               'Modalias from the DIS PnP ID (%r)' % c.objs.prop(path, DEVICE, 'Modalias'))


@scenario(needs=('wearable',))
def wearable_advertises_after_power_cycle(ctx):
    # a device back in range advertises again: bgsync-wearable unregisters
    # and registers its advert when its adapter powers on (bluetoothd 5.66
    # keeps the registration over the power-off but puts nothing on the air;
    # see advert_after_power_cycle)
    peer = ctx.backend.add_wearable('cycle-wearable')
    ctx.peer = peer
    bus = ctx.bus
    c = ctx.central
    peer_adapter = ctx.backend.peer_adapter
    props = dbus.Interface(bus.get_object('org.bluez', peer_adapter), harness.PROPS)
    path = c.device_path(peer.address)
    c.start_discovery({'Transport': 'le'})
    c.wait_device(peer.address, 20, name='cycle-wearable')
    c.stop_discovery()
    call(props.Set, ADAPTER, 'Powered', dbus.Boolean(False))
    wait_until(lambda: c.objs.prop(peer_adapter, ADAPTER, 'Powered') is False, 5, 'peer powered off')
    # scan first (btvirt reports an advert once per scan or advertising enable)
    mark = len(c.objs.changes)
    c.start_discovery({'Transport': 'le'})
    call(props.Set, ADAPTER, 'Powered', dbus.Boolean(True))
    wait_until(lambda: any(p == path and n == 'RSSI' and v is not None
                           for p, i, n, v in c.objs.changes[mark:]), 15,
               'the wearable on the air again after its adapter powered on')
    c.stop_discovery()


# ---- simulator-only ----

SIM_SVC = '0000180d-0000-1000-8000-00805f9b34fb'
SIM_HR = '00002a37-0000-1000-8000-00805f9b34fb'
SIM_CTRL = '00002a39-0000-1000-8000-00805f9b34fb'


def sim_device_desc(address=None, name='sim-hr', echo=True):
    d = {'name': name, 'uuids': dbus.Array([SIM_SVC], signature='s'),
         'modalias': 'usb:v1D6Bp0246d0001', 'rssi': dbus.Int16(-55),
         'manufacturer-data': dbus.Dictionary({dbus.UInt16(0x02e5): dbus.ByteArray(b'\x01\x02')},
                                              signature='qv'),
         'services': dbus.Array([dbus.Dictionary({
             'uuid': SIM_SVC,
             'characteristics': dbus.Array([
                 dbus.Dictionary({'uuid': SIM_HR, 'flags': dbus.Array(['read', 'notify'], signature='s'),
                                  'value': dbus.ByteArray(b'\x00\x48'),
                                  'descriptors': dbus.Array([dbus.Dictionary({
                                      'uuid': '00002901-0000-1000-8000-00805f9b34fb',
                                      'value': dbus.ByteArray(b'heart')}, signature='sv')],
                                      signature='a{sv}')}, signature='sv'),
                 dbus.Dictionary({'uuid': SIM_CTRL,
                                  'flags': dbus.Array(['write', 'write-without-response'], signature='s')},
                                 signature='sv')], signature='a{sv}')}, signature='sv')],
             signature='a{sv}')}
    if address:
        d['address'] = address
    if echo:
        d['rfcomm-echo'] = dbus.Array([P.SPP_CLIENT_UUID], signature='s')
    return d


@scenario(needs=('sim-devices',))
def sim_device_gatt(ctx):
    b = ctx.backend
    addr = b.add_sim_device(sim_device_desc())
    c = ctx.central
    c.start_discovery()
    path = c.wait_device(addr, 10, name='sim-hr')
    check(c.objs.prop(path, DEVICE, 'Modalias') == 'usb:v1D6Bp0246d0001', 'Modalias')
    check(c.objs.prop(path, DEVICE, 'RSSI') == -55, 'RSSI')
    c.stop_discovery()
    c.connect(addr)
    hr = c.find_chrc(addr, SIM_HR)
    check(c.read(hr) == b'\x00\x48', 'read the described value')
    ctrl = c.find_chrc(addr, SIM_CTRL)
    c.write(ctrl, b'\x01\x02\x03')
    check(bytes(call(b.sim.GetValue, addr, SIM_CTRL)) == b'\x01\x02\x03', 'write stored')
    call(c.chrc(hr).StartNotify)
    mark = len(c.objs.changes)
    call(b.sim.Notify, addr, SIM_HR, dbus.ByteArray(b'\x00\x50'))
    wait_until(lambda: any(p == hr and n == 'Value' and bytes(v) == b'\x00\x50'
                           for p, i, n, v in c.objs.changes[mark:]), 5, 'notification')
    descs = c.objs.children(hr, harness.GATT_DESC)
    check(len(descs) == 1, 'one descriptor')
    v = call(c.iface(descs[0], harness.GATT_DESC).ReadValue, dbus.Dictionary({}, signature='sv'))
    check(bytes(v) == b'heart', 'descriptor value')
    # rate cap: 2,000 bytes at 4,000 B/s take about half a second of link time
    call(b.sim.SetLinkRate, addr, dbus.UInt64(4000))
    call(b.sim.SetValue, addr, SIM_HR, dbus.ByteArray(bytes(500)))
    t = time.monotonic()
    for _ in range(4):
        c.read(hr)
    check(time.monotonic() - t >= 0.4, 'rate cap slows reads down')


@scenario(needs=('sim-devices', 'rfcomm'))
def sim_device_rfcomm_echo(ctx):
    b = ctx.backend
    addr = b.add_sim_device(sim_device_desc(name='sim-spp'))
    c = ctx.central
    c.start_discovery()
    c.wait_device(addr, 10)
    c.stop_discovery()
    c.connect(addr)
    prof = harness.Profile(ctx.bus, '/org/bgsync/test/spp')
    pm = dbus.Interface(ctx.bus.get_object('org.bluez', '/org/bluez'), 'org.bluez.ProfileManager1')
    call(pm.RegisterProfile, prof._object_path, P.SPP_CLIENT_UUID,
         dbus.Dictionary({'Role': 'client'}, signature='sv'))
    expect_error(pm.RegisterProfile, '/org/bgsync/test/other', P.SPP_CLIENT_UUID,
                 dbus.Dictionary({}, signature='sv'), names=['org.bluez.Error.AlreadyExists'])
    call(c.iface(c.device_path(addr), DEVICE).ConnectProfile, P.SPP_CLIENT_UUID)
    device, sock = prof.connections[0]
    sock.send(b'ping')
    from gi.repository import GLib
    got = bytearray()

    def rd(fd, cond):
        try:
            got.extend(sock.recv(4096))
        except BlockingIOError:
            pass
        return True
    src = GLib.io_add_watch(sock.fileno(), GLib.IO_IN, rd)
    wait_until(lambda: bytes(got) == b'ping', 5, 'echo')
    GLib.source_remove(src)
    call(b.sim.DropLink, addr)
    wait_hup(sock, 5, 'profile socket hangs up with the link')


@scenario(needs=('scale',))
def scale_1000_devices_100_links(ctx):
    b = ctx.backend
    c = ctx.central
    addrs = []
    pending = []
    for i in range(1000):
        desc = sim_device_desc(address='D0:00:00:00:%02X:%02X' % (i >> 8, i & 0xff),
                               name='dev%04d' % i, echo=False)
        box = {}
        b.sim.AddDevice(dbus.Dictionary(desc, signature='sv'),
                        reply_handler=lambda a, box=box: box.setdefault('a', str(a)),
                        error_handler=lambda e, box=box: box.setdefault('e', e))
        pending.append(box)
        if len(pending) >= 100:
            wait_until(lambda: all(pending), 30, 'AddDevice replies')
            addrs += [p['a'] for p in pending if 'a' in p]
            pending = []
    wait_until(lambda: all(pending), 30, 'AddDevice replies')
    addrs += [p['a'] for p in pending if 'a' in p]
    check(len(addrs) == 1000, '1000 devices added (%d)' % len(addrs))
    c.start_discovery()
    wait_until(lambda: len(c.objs.children(c.adapter_path, DEVICE)) >= 1000, 60,
               '1000 Device1 objects')
    c.stop_discovery()
    # 100 connects in flight at once
    boxes = []
    for a in addrs[:100]:
        box = {}
        c.iface(c.device_path(a), DEVICE).Connect(
            reply_handler=lambda box=box: box.setdefault('ok', 1),
            error_handler=lambda e, box=box: box.setdefault('e', e), timeout=60)
        boxes.append(box)
    wait_until(lambda: all(boxes), 60, '100 Connect replies')
    errs = [bx['e'] for bx in boxes if 'e' in bx]
    check(not errs, '%d connects failed: %s' % (len(errs), errs[:3]))
    links = sum(int(d['links']) for d in call(b.sim.ListDevices))
    check(links >= 100, '100 links up (%d)' % links)
    # still responsive: a full object dump and a read over the 100th link
    t = time.monotonic()
    om = dbus.Interface(ctx.bus.get_object('org.bluez', '/'), harness.OM)
    objs = call(om.GetManagedObjects, timeout=30)
    check(len(objs) > 1000, 'GetManagedObjects lists everything (%d)' % len(objs))
    hr = c.find_chrc(addrs[99], SIM_HR)
    check(c.read(hr) == b'\x00\x48', 'read over link 100')
    # and traffic on all 100 links at once
    reads = []
    for a in addrs[:100]:
        box = {}
        c.chrc(c.find_chrc(a, SIM_HR)).ReadValue(
            dbus.Dictionary({}, signature='sv'),
            reply_handler=lambda v, box=box: box.setdefault('v', bytes(v)),
            error_handler=lambda e, box=box: box.setdefault('e', e), timeout=60)
        reads.append(box)
    wait_until(lambda: all(reads), 60, '100 parallel reads')
    check(all(r.get('v') == b'\x00\x48' for r in reads), 'every link answered')
    dt = time.monotonic() - t
    check(dt < 10, 'responsive under load (%.1fs for dump + read)' % dt)
