#!/usr/bin/python3
# peripheral.py: the scenario suite's peer, a plain BlueZ peripheral
# application (GattManager1 + LEAdvertisingManager1 + ProfileManager1
# server), so it runs unchanged on bgsync-sim and on real bluetoothd.
#
# It prints "READY <unique bus name>" once registered, and offers a test
# control interface org.bgsync.TestPeer1 at /org/bgsync/testpeer on its own
# connection (Notify, NotifyBurst, Readvertise, Received, Stats).

import argparse
import os
import socket
import sys

import dbus
import dbus.mainloop.glib
import dbus.service
from gi.repository import GLib

BLUEZ = 'org.bluez'
OM = 'org.freedesktop.DBus.ObjectManager'
PROPS = 'org.freedesktop.DBus.Properties'

SVC_UUID = '7e1a0001-6c2b-4b6b-9a3e-5bc0c0de0001'
INFO_UUID = '7e1a0002-6c2b-4b6b-9a3e-5bc0c0de0001'     # read
RX_UUID = '7e1a0003-6c2b-4b6b-9a3e-5bc0c0de0001'       # write, write-without-response (WriteAcquired)
TX_UUID = '7e1a0004-6c2b-4b6b-9a3e-5bc0c0de0001'       # notify (NotifyAcquired)
RX2_UUID = '7e1a0005-6c2b-4b6b-9a3e-5bc0c0de0001'      # write-without-response, no acquire
BATTERY_SVC = '0000180f-0000-1000-8000-00805f9b34fb'
BATTERY_LEVEL = '00002a19-0000-1000-8000-00805f9b34fb'  # read, notify
USER_DESC = '00002901-0000-1000-8000-00805f9b34fb'
# RFCOMM: the central connects to SPP_CLIENT_UUID; the peer's server is
# registered under its own UUID with an SDP record that lists the client's
# (one bluetoothd serves both adapters and takes a UUID once)
SPP_CLIENT_UUID = '7e1a1101-6c2b-4b6b-9a3e-5bc0c0de0001'
SPP_SERVER_UUID = '7e1a1102-6c2b-4b6b-9a3e-5bc0c0de0001'
RFCOMM_CHANNEL = 7
COMPANY = 0xffff

SDP_RECORD = """<?xml version="1.0" encoding="UTF-8" ?>
<record>
  <attribute id="0x0001">
    <sequence>
      <uuid value="%s" />
    </sequence>
  </attribute>
  <attribute id="0x0004">
    <sequence>
      <sequence><uuid value="0x0100" /></sequence>
      <sequence><uuid value="0x0003" /><uint8 value="0x%02x" /></sequence>
    </sequence>
  </attribute>
  <attribute id="0x0100">
    <text value="bgsync test serial" />
  </attribute>
</record>
""" % (SPP_CLIENT_UUID, RFCOMM_CHANNEL)


def log(*a):
    print('peripheral:', *a, file=sys.stderr, flush=True)


class InvalidArgs(dbus.exceptions.DBusException):
    _dbus_error_name = 'org.bluez.Error.InvalidArguments'


class NotSupported(dbus.exceptions.DBusException):
    _dbus_error_name = 'org.bluez.Error.NotSupported'


class NotPermitted(dbus.exceptions.DBusException):
    _dbus_error_name = 'org.bluez.Error.NotPermitted'


class Application(dbus.service.Object):
    def __init__(self, bus, path):
        self.path = path
        self.services = []
        super().__init__(bus, path)

    @dbus.service.method(OM, out_signature='a{oa{sa{sv}}}')
    def GetManagedObjects(self):
        out = {}
        for s in self.services:
            out[s.get_path()] = s.get_properties()
            for c in s.chrcs:
                out[c.get_path()] = c.get_properties()
                for d in c.descs:
                    out[d.get_path()] = d.get_properties()
        return out


class Service(dbus.service.Object):
    def __init__(self, bus, path, uuid):
        self.path = path
        self.uuid = uuid
        self.chrcs = []
        super().__init__(bus, path)

    def get_path(self):
        return dbus.ObjectPath(self.path)

    def get_properties(self):
        return {'org.bluez.GattService1': {
            'UUID': self.uuid, 'Primary': True,
            'Characteristics': dbus.Array([c.get_path() for c in self.chrcs], signature='o')}}


class Characteristic(dbus.service.Object):
    def __init__(self, peer, service, index, uuid, flags, value=b'',
                 write_acquired=False, notify_acquired=False):
        self.peer = peer
        self.path = '%s/char%d' % (service.path, index)
        self.service = service
        self.uuid = uuid
        self.flags = flags
        self.value = bytes(value)
        self.descs = []
        self.notifying = False
        self.write_acquired = write_acquired
        self.notify_acquired = notify_acquired
        self.notify_sock = None
        self.notify_mtu = 23
        self.write_socks = []
        super().__init__(peer.bus, self.path)
        service.chrcs.append(self)

    def get_path(self):
        return dbus.ObjectPath(self.path)

    def get_properties(self):
        p = {'Service': self.service.get_path(), 'UUID': self.uuid,
             'Flags': dbus.Array(self.flags, signature='s')}
        if self.write_acquired:
            p['WriteAcquired'] = dbus.Boolean(bool(self.write_socks))
        if self.notify_acquired:
            p['NotifyAcquired'] = dbus.Boolean(self.notify_sock is not None)
        if 'notify' in self.flags or 'indicate' in self.flags:
            p['Notifying'] = dbus.Boolean(self.notifying)
        return {'org.bluez.GattCharacteristic1': p}

    @dbus.service.method(PROPS, in_signature='s', out_signature='a{sv}')
    def GetAll(self, iface):
        return self.get_properties()['org.bluez.GattCharacteristic1']

    @dbus.service.method('org.bluez.GattCharacteristic1', in_signature='a{sv}', out_signature='ay')
    def ReadValue(self, options):
        if 'read' not in self.flags:
            raise NotPermitted('Read not permitted')
        offset = int(options.get('offset', 0))
        if offset > len(self.value):
            raise InvalidArgs('offset')
        self.peer.stats['reads'] += 1
        return dbus.ByteArray(self.value[offset:])

    @dbus.service.method('org.bluez.GattCharacteristic1', in_signature='aya{sv}')
    def WriteValue(self, value, options):
        if 'write' not in self.flags and 'write-without-response' not in self.flags:
            raise NotPermitted('Write not permitted')
        offset = int(options.get('offset', 0))
        data = bytes(value)
        self.value = self.value[:offset] + data
        self.peer.received.append((self.uuid, str(options.get('type', '')), data))
        self.peer.Activity('write')

    @dbus.service.method('org.bluez.GattCharacteristic1', in_signature='', out_signature='')
    def StartNotify(self):
        self.notifying = True
        self.peer.stats['start_notify'] += 1
        self.peer.Activity('start-notify')

    @dbus.service.method('org.bluez.GattCharacteristic1', in_signature='', out_signature='')
    def StopNotify(self):
        self.notifying = False
        self.peer.Activity('stop-notify')

    def _pair(self):
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        ours.setblocking(False)
        fd = dbus.types.UnixFd(theirs)   # dbus keeps its own duplicate
        theirs.close()
        return ours, fd

    @dbus.service.method('org.bluez.GattCharacteristic1', in_signature='a{sv}', out_signature='hq')
    def AcquireWrite(self, options):
        # bluetoothd asks the app for a socket it will write into
        if not self.write_acquired:
            raise NotSupported('AcquireWrite')
        sock, fd = self._pair()
        mtu = int(options.get('mtu', 23))
        self.write_socks.append(sock)
        self.peer.stats['acquire_write'] += 1
        self.peer.Activity('acquire-write')

        def readable(_fd, cond):
            while True:
                try:
                    data = sock.recv(65536)
                except BlockingIOError:
                    return True
                except OSError:
                    data = b''
                if not data:
                    sock.close()
                    if sock in self.write_socks:
                        self.write_socks.remove(sock)
                    return False
                self.peer.received.append((self.uuid, 'acquired', data))
                self.peer.Activity('write')
        GLib.io_add_watch(sock.fileno(), GLib.IO_IN | GLib.IO_HUP | GLib.IO_ERR, readable)
        return fd, dbus.UInt16(mtu)

    @dbus.service.method('org.bluez.GattCharacteristic1', in_signature='a{sv}', out_signature='hq')
    def AcquireNotify(self, options):
        # bluetoothd asks the app for a socket it will read notifications from
        if not self.notify_acquired:
            raise NotSupported('AcquireNotify')
        if self.notify_sock is not None:
            self.notify_sock.close()
        sock, fd = self._pair()
        self.notify_sock = sock
        self.notify_mtu = int(options.get('mtu', 23))
        self.peer.stats['acquire_notify'] += 1
        self.peer.Activity('acquire-notify')

        def hup(_fd, cond):
            if self.notify_sock is sock:
                self.notify_sock = None
            sock.close()
            self.peer.Activity('notify-closed')
            return False
        GLib.io_add_watch(sock.fileno(), GLib.IO_HUP | GLib.IO_ERR, hup)
        return fd, dbus.UInt16(self.notify_mtu)

    def notify(self, data):
        """True: sent; False: nobody subscribed or the socket broke;
        None: the socket is full, try again when it is writable."""
        self.value = bytes(data)
        if self.notify_sock is not None:
            try:
                self.notify_sock.send(self.value)
                return True
            except BlockingIOError:
                return None
            except OSError as e:
                log('notify send failed:', e)
                return False
        if not self.notifying:
            return False
        self.PropertiesChanged('org.bluez.GattCharacteristic1',
                               {'Value': dbus.ByteArray(self.value)}, [])
        return True

    @dbus.service.signal(PROPS, signature='sa{sv}as')
    def PropertiesChanged(self, iface, changed, invalidated):
        pass


class Descriptor(dbus.service.Object):
    def __init__(self, peer, chrc, index, uuid, flags, value):
        self.path = '%s/desc%d' % (chrc.path, index)
        self.chrc = chrc
        self.uuid = uuid
        self.flags = flags
        self.value = bytes(value)
        super().__init__(peer.bus, self.path)
        chrc.descs.append(self)

    def get_path(self):
        return dbus.ObjectPath(self.path)

    def get_properties(self):
        return {'org.bluez.GattDescriptor1': {
            'Characteristic': self.chrc.get_path(), 'UUID': self.uuid,
            'Flags': dbus.Array(self.flags, signature='s')}}

    @dbus.service.method('org.bluez.GattDescriptor1', in_signature='a{sv}', out_signature='ay')
    def ReadValue(self, options):
        return dbus.ByteArray(self.value)


class Advertisement(dbus.service.Object):
    def __init__(self, bus, path, name):
        self.path = path
        self.name = name
        super().__init__(bus, path)

    @dbus.service.method(PROPS, in_signature='s', out_signature='a{sv}')
    def GetAll(self, iface):
        return {
            'Type': 'peripheral',
            'ServiceUUIDs': dbus.Array([SVC_UUID], signature='s'),
            'LocalName': self.name,
            'ManufacturerData': dbus.Dictionary(
                {dbus.UInt16(COMPANY): dbus.ByteArray(b'\xb9\x5c')}, signature='qv'),
            'Discoverable': True,
        }

    @dbus.service.method('org.bluez.LEAdvertisement1', in_signature='', out_signature='')
    def Release(self):
        log('advertisement released')
        self.released = True


class ServerProfile(dbus.service.Object):
    """RFCOMM echo server."""

    def __init__(self, peer, path):
        self.peer = peer
        self.socks = []
        super().__init__(peer.bus, path)

    @dbus.service.method('org.bluez.Profile1', in_signature='', out_signature='')
    def Release(self):
        pass

    @dbus.service.method('org.bluez.Profile1', in_signature='o', out_signature='')
    def RequestDisconnection(self, device):
        for s in self.socks:
            s.close()
        self.socks = []

    @dbus.service.method('org.bluez.Profile1', in_signature='oha{sv}', out_signature='')
    def NewConnection(self, device, fd, props):
        sock = socket.socket(fileno=fd.take())
        sock.setblocking(False)
        self.socks.append(sock)
        self.peer.stats['rfcomm_connections'] += 1
        self.peer.Activity('rfcomm')
        pending = bytearray()
        out_src = [0]

        def flush(_fd=None, cond=None):
            while pending:
                try:
                    n = sock.send(bytes(pending[:65536]))
                except BlockingIOError:
                    if not out_src[0]:
                        out_src[0] = GLib.io_add_watch(sock.fileno(), GLib.IO_OUT, flush)
                    return True
                except OSError:
                    pending.clear()
                    break
                del pending[:n]
            out_src[0] = 0
            return False

        def readable(_fd, cond):
            while True:
                try:
                    data = sock.recv(65536)
                except BlockingIOError:
                    break
                except OSError:
                    data = b''
                if not data:
                    if sock in self.socks:
                        self.socks.remove(sock)
                    sock.close()
                    return False
                self.peer.stats['rfcomm_bytes'] += len(data)
                pending.extend(data)
            flush()
            return True
        GLib.io_add_watch(sock.fileno(), GLib.IO_IN | GLib.IO_HUP | GLib.IO_ERR, readable)


class Peer(dbus.service.Object):
    def __init__(self, bus, adapter, name):
        self.bus = bus
        self.adapter = adapter
        self.name = name
        self.received = []
        self.stats = {'reads': 0, 'start_notify': 0, 'acquire_write': 0,
                      'acquire_notify': 0, 'rfcomm_connections': 0, 'rfcomm_bytes': 0,
                      'registrations': 0}
        super().__init__(bus, '/org/bgsync/testpeer')
        self.app = Application(bus, '/org/bgsync/testpeer/app')
        svc = Service(bus, '/org/bgsync/testpeer/app/service0', SVC_UUID)
        self.app.services.append(svc)
        self.info = Characteristic(self, svc, 0, INFO_UUID, ['read'],
                                   ('bgsync-peer %s' % name).encode())
        Descriptor(self, self.info, 0, USER_DESC, ['read'], b'info')
        self.rx = Characteristic(self, svc, 1, RX_UUID,
                                 ['write', 'write-without-response'], write_acquired=True)
        self.tx = Characteristic(self, svc, 2, TX_UUID, ['notify'], notify_acquired=True)
        self.rx2 = Characteristic(self, svc, 3, RX2_UUID, ['write-without-response'])
        bat = Service(bus, '/org/bgsync/testpeer/app/service1', BATTERY_SVC)
        self.app.services.append(bat)
        self.battery = Characteristic(self, bat, 0, BATTERY_LEVEL, ['read', 'notify'], b'\x57')
        self.adv = Advertisement(bus, '/org/bgsync/testpeer/adv', name)
        self.profile = ServerProfile(self, '/org/bgsync/testpeer/spp')
        self.registered = False
        self.ready_printed = False
        self.readv_waiters = []
        self.readv_busy = False
        bus.watch_name_owner(BLUEZ, self._bluez_owner)
        bus.add_signal_receiver(self._adapter_changed, 'PropertiesChanged', PROPS, BLUEZ,
                                adapter)

    def chrc_by_uuid(self, uuid):
        for c in (self.info, self.rx, self.tx, self.rx2, self.battery):
            if c.uuid == uuid.lower():
                return c
        raise InvalidArgs('no characteristic %s' % uuid)

    def _bluez_owner(self, owner):
        self.registered = False
        if owner:
            self.register()

    def _adapter_changed(self, iface, changed, invalidated):
        # powering the adapter off ends the advertising instance, but
        # bluetoothd 5.66 keeps the registration and does not advertise it
        # after power on (RegisterAdvertisement alone: AlreadyExists)
        if iface == 'org.bluez.Adapter1' and 'Powered' in changed and bool(changed['Powered']):
            self.readvertise()

    def _err(self, what):
        def cb(e):
            log('%s failed: %s' % (what, e))
        return cb

    def register_adv(self, done=None):
        ad = dbus.Interface(self.bus.get_object(BLUEZ, self.adapter), 'org.bluez.LEAdvertisingManager1')

        def ok():
            log('advertising')
            if done:
                done(None)

        def err(e):
            log('RegisterAdvertisement failed: %s' % e)
            if done:
                done(e)
        ad.RegisterAdvertisement(self.adv.path, dbus.Dictionary({}, signature='sv'),
                                 reply_handler=ok, error_handler=err)

    def readvertise(self, done=None):
        """Unregister (whatever it says) and register the advert again: a
        new advertising enable, which a scanner hears even where the
        emulator reports an advert once per enable (btvirt). One cycle at a
        time: a request during a cycle gets a cycle of its own after it."""
        self.readv_waiters.append(done)
        if not self.readv_busy:
            self._readvertise_cycle()

    def _readvertise_cycle(self):
        waiters, self.readv_waiters = self.readv_waiters, []
        self.readv_busy = True

        def finished(e):
            self.readv_busy = False
            for w in waiters:
                if w:
                    w(e)
            if self.readv_waiters:
                self._readvertise_cycle()
        ad = dbus.Interface(self.bus.get_object(BLUEZ, self.adapter), 'org.bluez.LEAdvertisingManager1')
        ad.UnregisterAdvertisement(self.adv.path,
                                   reply_handler=lambda: self.register_adv(finished),
                                   error_handler=lambda e: self.register_adv(finished))

    def register(self):
        obj = self.bus.get_object(BLUEZ, self.adapter)
        props = dbus.Interface(obj, PROPS)
        gm = dbus.Interface(obj, 'org.bluez.GattManager1')
        pm = dbus.Interface(self.bus.get_object(BLUEZ, '/org/bluez'), 'org.bluez.ProfileManager1')
        done = {'gatt': False, 'profile': False}

        def maybe_ready():
            if all(done.values()):
                self.registered = True
                self.stats['registrations'] += 1

                def advertising(e):
                    # ready once the advert is in (or refused): a test's
                    # Readvertise must not race the first registration
                    if not self.ready_printed:
                        print('READY %s' % self.bus.get_unique_name(), flush=True)
                        self.ready_printed = True
                self.readvertise(advertising)

        def gatt_ok():
            done['gatt'] = True
            maybe_ready()

        def profile_ok():
            done['profile'] = True
            maybe_ready()

        def profile_err(e):
            # already registered (re-registration after a power cycle)
            if e.get_dbus_name() == 'org.bluez.Error.AlreadyExists':
                profile_ok()
            else:
                log('RegisterProfile failed: %s' % e)

        try:
            props.Set('org.bluez.Adapter1', 'Powered', dbus.Boolean(True))
        except dbus.exceptions.DBusException as e:
            log('power on failed: %s' % e)
        gm.RegisterApplication(self.app.path, dbus.Dictionary({}, signature='sv'),
                               reply_handler=gatt_ok, error_handler=self._err('RegisterApplication'))
        pm.RegisterProfile(self.profile._object_path, SPP_SERVER_UUID,
                           dbus.Dictionary({'Name': 'bgsync test serial', 'Role': 'server',
                                            'Channel': dbus.UInt16(RFCOMM_CHANNEL),
                                            'RequireAuthentication': False,
                                            'RequireAuthorization': False,
                                            'ServiceRecord': SDP_RECORD}, signature='sv'),
                           reply_handler=profile_ok, error_handler=profile_err)

    # ---- test control ----

    @dbus.service.method('org.bgsync.TestPeer1', in_signature='say', out_signature='b')
    def Notify(self, uuid, value):
        return self.chrc_by_uuid(uuid).notify(bytes(value))

    @dbus.service.method('org.bgsync.TestPeer1', in_signature='suu', out_signature='u',
                         async_callbacks=('reply', 'error'))
    def NotifyBurst(self, uuid, count, size, reply, error):
        """Send @count notifications of @size bytes (0: MTU-3), each
        starting with its big-endian sequence number; waits out a full
        socket like a real app; replies with how many went out."""
        c = self.chrc_by_uuid(uuid)
        if size == 0:
            size = c.notify_mtu - 3
        state = {'i': 0}

        def pump(_fd=None, cond=None):
            while state['i'] < count:
                i = state['i']
                payload = i.to_bytes(4, 'big') + bytes((i + k) & 0xff for k in range(max(0, size - 4)))
                r = c.notify(payload[:size])
                if r is None:
                    GLib.io_add_watch(c.notify_sock.fileno(), GLib.IO_OUT | GLib.IO_HUP, pump)
                    return False
                if not r:
                    break
                state['i'] += 1
            reply(dbus.UInt32(state['i']))
            return False
        pump()

    @dbus.service.signal('org.bgsync.TestPeer1', signature='s')
    def Activity(self, what):
        """Something changed that Received or Stats report: a test waiting
        on those wakes up on this signal instead of polling."""

    @dbus.service.method('org.bgsync.TestPeer1', in_signature='', out_signature='',
                         async_callbacks=('reply', 'error'))
    def Readvertise(self, reply, error):
        """Advertise anew (see readvertise); replies once registered."""
        self.readvertise(lambda e: error(e) if e is not None else reply())

    @dbus.service.method('org.bgsync.TestPeer1', in_signature='', out_signature='a(ssay)')
    def Received(self):
        out = [(u, t, dbus.ByteArray(d)) for u, t, d in self.received]
        self.received = []
        return dbus.Array(out, signature='(ssay)')

    @dbus.service.method('org.bgsync.TestPeer1', in_signature='', out_signature='a{su}')
    def Stats(self):
        s = dict(self.stats)
        s['notifying'] = int(self.tx.notify_sock is not None or self.tx.notifying)
        s['battery_notifying'] = int(self.battery.notifying)
        s['write_socks'] = len(self.rx.write_socks)
        return s


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--bus', help='bus address (default: system bus)')
    ap.add_argument('--adapter', default='/org/bluez/hci1')
    ap.add_argument('--name', default='bgsync-peer')
    args = ap.parse_args()
    dbus.mainloop.glib.DBusGMainLoop(set_as_default=True)
    if args.bus:
        bus = dbus.bus.BusConnection(args.bus)
    else:
        bus = dbus.SystemBus()
    if not args.adapter.startswith('/'):
        args.adapter = '/org/bluez/' + args.adapter
    Peer(bus, args.adapter, args.name)
    loop = GLib.MainLoop()
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, 15, loop.quit)
    loop.run()


if __name__ == '__main__':
    main()
