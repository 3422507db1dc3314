# harness.py: bounded waits on a GLib main loop and a small BlueZ central
# client for the scenario suite (python3-dbus, /usr/bin/python3)

import os
import socket
import time

import dbus
import dbus.mainloop.glib
import dbus.service
from gi.repository import GLib

dbus.mainloop.glib.DBusGMainLoop(set_as_default=True)

BLUEZ = 'org.bluez'
OM = 'org.freedesktop.DBus.ObjectManager'
PROPS = 'org.freedesktop.DBus.Properties'
ADAPTER = 'org.bluez.Adapter1'
DEVICE = 'org.bluez.Device1'
GATT_SVC = 'org.bluez.GattService1'
GATT_CHRC = 'org.bluez.GattCharacteristic1'
GATT_DESC = 'org.bluez.GattDescriptor1'


class ScenarioFailed(AssertionError):
    pass


class Skip(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise ScenarioFailed(msg)


def iterate(timeout):
    """Run the main loop for at most @timeout seconds or until one event."""
    ctx = GLib.MainContext.default()
    fired = []
    src = GLib.timeout_add(max(1, int(timeout * 1000)), lambda: fired.append(1) or False)
    ctx.iteration(True)
    if not fired:
        GLib.source_remove(src)


def wait_until(cond, timeout, what):
    """Process events until cond() is true; fail after @timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        left = deadline - time.monotonic()
        if left <= 0:
            raise ScenarioFailed('timed out after %.1fs waiting for %s' % (timeout, what))
        iterate(left)


def drain(seconds):
    """Process events for a fixed time; only for asserting that nothing
    happens (a negative check), never to synchronise."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        iterate(deadline - time.monotonic())


def call(method, *args, timeout=25.0):
    """Call a dbus-python method asynchronously and keep dispatching (so we
    can serve calls made back to us, e.g. Profile1.NewConnection) until the
    reply arrives. Raises dbus.exceptions.DBusException on error."""
    box = {}

    def ok(*ret):
        box['ret'] = ret

    def err(e):
        box['err'] = e

    method(*args, reply_handler=ok, error_handler=err, timeout=timeout)
    wait_until(lambda: box, timeout + 2, 'reply to %s' % getattr(method, '_method_name', method))
    if 'err' in box:
        raise box['err']
    ret = box['ret']
    if len(ret) == 0:
        return None
    if len(ret) == 1:
        return ret[0]
    return ret


def error_name(exc):
    return exc.get_dbus_name() if isinstance(exc, dbus.exceptions.DBusException) else None


def expect_error(method, *args, names=None, timeout=10.0):
    try:
        call(method, *args, timeout=timeout)
    except dbus.exceptions.DBusException as e:
        if names is not None and e.get_dbus_name() not in names:
            raise ScenarioFailed('expected %s, got %s: %s' % (names, e.get_dbus_name(), e))
        return e.get_dbus_name()
    raise ScenarioFailed('expected an error from %s' % method._method_name)


def addr_path(adapter_path, address):
    return '%s/dev_%s' % (adapter_path, address.upper().replace(':', '_'))


def plain(v):
    """dbus.Boolean is an int subclass: make `is False` checks work."""
    if isinstance(v, dbus.Boolean):
        return bool(v)
    return v


def plain_props(p):
    return {str(k): plain(v) for k, v in p.items()}


class ObjectTracker:
    """Mirror of org.bluez's objects kept current from ObjectManager and
    PropertiesChanged signals, plus a log of property changes."""

    def __init__(self, bus):
        self.bus = bus
        self.objects = {}
        self.changes = []      # (path, iface, name, value)
        self.removed = []      # paths removed
        self.owner = str(bus.get_name_owner(BLUEZ)) if bus.name_has_owner(BLUEZ) else None
        self.owner_history = []   # every new owner of org.bluez, None when it left
        self._sigs = []
        self._sigs.append(bus.add_signal_receiver(
            self._added, 'InterfacesAdded', OM, BLUEZ, '/'))
        self._sigs.append(bus.add_signal_receiver(
            self._removed, 'InterfacesRemoved', OM, BLUEZ, '/'))
        self._sigs.append(bus.add_signal_receiver(
            self._changed, 'PropertiesChanged', PROPS, BLUEZ, None, path_keyword='path'))
        self._sigs.append(bus.add_signal_receiver(
            self._owner, 'NameOwnerChanged', 'org.freedesktop.DBus',
            'org.freedesktop.DBus', '/org/freedesktop/DBus', arg0=BLUEZ))
        self.refresh()

    def close(self):
        for s in self._sigs:
            s.remove()

    def refresh(self):
        try:
            om = dbus.Interface(self.bus.get_object(BLUEZ, '/'), OM)
            objs = call(om.GetManagedObjects, timeout=20)
        except dbus.exceptions.DBusException:
            objs = {}
        self.objects = {}
        for path, ifaces in objs.items():
            self.objects[str(path)] = {str(i): plain_props(p) for i, p in ifaces.items()}
        return self.objects

    def _added(self, path, ifaces):
        o = self.objects.setdefault(str(path), {})
        for i, p in ifaces.items():
            o[str(i)] = plain_props(p)

    def _removed(self, path, ifaces):
        o = self.objects.get(str(path))
        if o is None:
            return
        for i in ifaces:
            o.pop(str(i), None)
        if not o:
            del self.objects[str(path)]
            self.removed.append(str(path))

    def _changed(self, iface, changed, invalidated, path=None):
        o = self.objects.get(str(path))
        for k, v in changed.items():
            v = plain(v)
            self.changes.append((str(path), str(iface), str(k), v))
            if o is not None and str(iface) in o:
                o[str(iface)][str(k)] = v
        for k in invalidated:
            self.changes.append((str(path), str(iface), str(k), None))
            if o is not None and str(iface) in o:
                o[str(iface)].pop(str(k), None)

    def _owner(self, name, old, new):
        self.owner = str(new) if new else None
        self.owner_history.append(self.owner)
        if not new:
            self.objects = {}

    def prop(self, path, iface, name, default=None):
        return self.objects.get(path, {}).get(iface, {}).get(name, default)

    def has(self, path, iface=None):
        o = self.objects.get(path)
        return o is not None and (iface is None or iface in o)

    def children(self, prefix, iface):
        return sorted(p for p, o in self.objects.items()
                      if p.startswith(prefix + '/') and iface in o)


class Central:
    """What bgsync does to BlueZ, in small steps for scenarios."""

    def __init__(self, bus, adapter_path):
        self.bus = bus
        self.adapter_path = adapter_path
        self.objs = ObjectTracker(bus)
        self.discovering = False

    def close(self):
        self.objs.close()

    def adapter(self, iface=ADAPTER):
        return dbus.Interface(self.bus.get_object(BLUEZ, self.adapter_path), iface)

    def iface(self, path, iface):
        return dbus.Interface(self.bus.get_object(BLUEZ, path), iface)

    def props(self, path):
        return dbus.Interface(self.bus.get_object(BLUEZ, path), PROPS)

    def start_discovery(self, filt=None):
        a = self.adapter()
        call(a.SetDiscoveryFilter, dbus.Dictionary(filt or {}, signature='sv'))
        call(a.StartDiscovery)
        self.discovering = True
        wait_until(lambda: self.objs.prop(self.adapter_path, ADAPTER, 'Discovering'),
                   5, 'Discovering on %s' % self.adapter_path)

    def stop_discovery(self):
        if self.discovering:
            call(self.adapter().StopDiscovery)
            self.discovering = False

    def device_path(self, address):
        return addr_path(self.adapter_path, address)

    def wait_device(self, address, timeout=15, name=None):
        path = self.device_path(address)

        def ready():
            if not self.objs.has(path, DEVICE):
                return False
            if name is not None and self.objs.prop(path, DEVICE, 'Name') != name:
                return False
            return True
        wait_until(ready, timeout, 'device %s%s' % (address, ' named %s' % name if name else ''))
        return path

    def connect(self, address, timeout=20, attempts=3):
        path = self.device_path(address)
        dev = self.iface(path, DEVICE)
        last = None
        for _ in range(attempts):
            try:
                call(dev.Connect, timeout=timeout)
                break
            except dbus.exceptions.DBusException as e:
                last = e
                if self.objs.prop(path, DEVICE, 'Connected'):
                    break
                # bluetoothd may already be connecting by itself (a connect
                # "in progress"): wait for that to finish instead
                if 'in progress' in str(e).lower() or \
                        error_name(e) == 'org.bluez.Error.InProgress':
                    try:
                        wait_until(lambda: self.objs.prop(path, DEVICE, 'Connected'), timeout,
                                   'the connection already in progress')
                        break
                    except ScenarioFailed:
                        continue
                # a failed page or le-connection-abort: try again, bounded
                if error_name(e) not in ('org.bluez.Error.Failed',
                                         'org.freedesktop.DBus.Error.NoReply'):
                    raise
        else:
            raise ScenarioFailed('Connect %s failed %d times: %s' % (address, attempts, last))
        wait_until(lambda: self.objs.prop(path, DEVICE, 'ServicesResolved'), timeout,
                   'ServicesResolved on %s' % address)
        return path

    def disconnect(self, address):
        call(self.iface(self.device_path(address), DEVICE).Disconnect)

    def connected(self, address):
        return bool(self.objs.prop(self.device_path(address), DEVICE, 'Connected', False))

    def find_chrc(self, address, uuid, timeout=10):
        path = self.device_path(address)

        def find():
            for p in self.objs.children(path, GATT_CHRC):
                if str(self.objs.prop(p, GATT_CHRC, 'UUID', '')).lower() == uuid.lower():
                    return p
            return None
        return wait_until(find, timeout, 'characteristic %s on %s' % (uuid, address))

    def chrc(self, path):
        return self.iface(path, GATT_CHRC)

    def read(self, path, offset=0, timeout=10):
        opts = dbus.Dictionary({'offset': dbus.UInt16(offset)} if offset else {}, signature='sv')
        return bytes(call(self.chrc(path).ReadValue, opts, timeout=timeout))

    def write(self, path, data, kind='request', timeout=10):
        opts = dbus.Dictionary({'type': kind}, signature='sv')
        call(self.chrc(path).WriteValue, dbus.ByteArray(data), opts, timeout=timeout)

    def acquire(self, path, which):
        method = self.chrc(path).AcquireWrite if which == 'write' else self.chrc(path).AcquireNotify
        fd, mtu = call(method, dbus.Dictionary({}, signature='sv'))
        sock = socket.socket(fileno=fd.take())
        sock.setblocking(False)
        return sock, int(mtu)


def read_packets(sock, count, timeout, what):
    """Read @count SOCK_SEQPACKET packets, dispatching events meanwhile."""
    got = []

    def readable(fd, cond):
        while True:
            try:
                data = sock.recv(65536)
            except BlockingIOError:
                return True
            if not data:
                got.append(None)
                return False
            got.append(data)
        return True
    src = GLib.io_add_watch(sock.fileno(), GLib.IO_IN | GLib.IO_HUP | GLib.IO_ERR, readable)
    try:
        wait_until(lambda: len(got) >= count or None in got, timeout,
                   '%d packets of %s (got %d)' % (count, what, len(got)))
    finally:
        GLib.source_remove(src)
    if None in got:
        raise ScenarioFailed('%s: socket closed after %d packets' % (what, got.index(None)))
    return got


def wait_hup(sock, timeout, what):
    box = []

    def cb(fd, cond):
        try:
            if sock.recv(65536, socket.MSG_DONTWAIT) == b'':
                box.append(1)
                return False
        except BlockingIOError:
            return True
        except OSError:
            box.append(1)
            return False
        return True
    src = GLib.io_add_watch(sock.fileno(), GLib.IO_IN | GLib.IO_HUP | GLib.IO_ERR, cb)
    try:
        wait_until(lambda: box, timeout, what)
    finally:
        if not box:
            GLib.source_remove(src)


class Profile(dbus.service.Object):
    """A Profile1 object: records connections, so a scenario can use the fd."""

    def __init__(self, bus, path):
        super().__init__(bus, path)
        self.connections = []
        self.released = False
        self.disconnect_requests = []

    @dbus.service.method('org.bluez.Profile1', in_signature='', out_signature='')
    def Release(self):
        self.released = True

    @dbus.service.method('org.bluez.Profile1', in_signature='oha{sv}', out_signature='')
    def NewConnection(self, device, fd, props):
        sock = socket.socket(fileno=fd.take())
        sock.setblocking(False)
        self.connections.append((str(device), sock))

    @dbus.service.method('org.bluez.Profile1', in_signature='o', out_signature='')
    def RequestDisconnection(self, device):
        self.disconnect_requests.append(str(device))
        for d, s in list(self.connections):
            if d == str(device):
                s.close()
                self.connections.remove((d, s))


class Agent(dbus.service.Object):
    """A pairing agent that accepts everything (Just Works)."""

    @dbus.service.method('org.bluez.Agent1', in_signature='', out_signature='')
    def Release(self):
        pass

    @dbus.service.method('org.bluez.Agent1', in_signature='os', out_signature='')
    def AuthorizeService(self, device, uuid):
        pass

    @dbus.service.method('org.bluez.Agent1', in_signature='o', out_signature='s')
    def RequestPinCode(self, device):
        return '0000'

    @dbus.service.method('org.bluez.Agent1', in_signature='o', out_signature='u')
    def RequestPasskey(self, device):
        return dbus.UInt32(0)

    @dbus.service.method('org.bluez.Agent1', in_signature='ouq', out_signature='')
    def DisplayPasskey(self, device, passkey, entered):
        pass

    @dbus.service.method('org.bluez.Agent1', in_signature='os', out_signature='')
    def DisplayPinCode(self, device, pincode):
        pass

    @dbus.service.method('org.bluez.Agent1', in_signature='ou', out_signature='')
    def RequestConfirmation(self, device, passkey):
        pass

    @dbus.service.method('org.bluez.Agent1', in_signature='o', out_signature='')
    def RequestAuthorization(self, device):
        pass

    @dbus.service.method('org.bluez.Agent1', in_signature='', out_signature='')
    def Cancel(self):
        pass


def register_agent(bus, path='/org/bgsync/test/agent'):
    """One bluetoothd serves both sides in the VM: its default agent
    answers for the peer side of a pairing too."""
    agent = Agent(bus, path)
    mgr = dbus.Interface(bus.get_object(BLUEZ, '/org/bluez'), 'org.bluez.AgentManager1')
    call(mgr.RegisterAgent, dbus.ObjectPath(path), 'NoInputNoOutput')
    call(mgr.RequestDefaultAgent, dbus.ObjectPath(path))
    return agent


class Monitor(dbus.service.Object):
    """An AdvertisementMonitor1 under an ObjectManager root."""

    def __init__(self, bus, path, props):
        super().__init__(bus, path)
        self.path = path
        self.props = props
        self.events = []

    @dbus.service.method('org.bluez.AdvertisementMonitor1', in_signature='', out_signature='')
    def Release(self):
        self.events.append(('Release', None))

    @dbus.service.method('org.bluez.AdvertisementMonitor1', in_signature='', out_signature='')
    def Activate(self):
        self.events.append(('Activate', None))

    @dbus.service.method('org.bluez.AdvertisementMonitor1', in_signature='o', out_signature='')
    def DeviceFound(self, device):
        self.events.append(('DeviceFound', str(device)))

    @dbus.service.method('org.bluez.AdvertisementMonitor1', in_signature='o', out_signature='')
    def DeviceLost(self, device):
        self.events.append(('DeviceLost', str(device)))

    @dbus.service.method(PROPS, in_signature='s', out_signature='a{sv}')
    def GetAll(self, iface):
        return self.props


class MonitorRoot(dbus.service.Object):
    def __init__(self, bus, path):
        super().__init__(bus, path)
        self.monitors = []

    @dbus.service.method(OM, out_signature='a{oa{sa{sv}}}')
    def GetManagedObjects(self):
        return {dbus.ObjectPath(m.path): {'org.bluez.AdvertisementMonitor1': m.props}
                for m in self.monitors}
