#!/usr/bin/python3
# fake_bluez.py: the slice of org.bluez the RFCOMM transport uses, with
# ConnectProfile failing the first N times (BlueZ's BR/EDR security-block
# race), to test the transport's bounded retry. On success it hands the
# client profile one end of a socketpair and echoes what comes in.
# FAILS = -1: ConnectProfile never answers (a connect that hangs).
# ERROR_NAME "stale": the first FAILS ConnectProfile calls succeed with no
# NewConnection, as bluetoothd 5.66 answers for a profile it believes
# connected, until a DisconnectProfile (counted) clears that belief;
# "stale-stuck": DisconnectProfile does not clear it.
#
#   fake_bluez.py FAILS ERROR_NAME ERROR_MESSAGE BUS_ADDRESS
import socket
import sys

import dbus
import dbus.mainloop.glib
import dbus.service
from gi.repository import GLib

DEV = '/org/bluez/hci0/dev_11_22_33_44_55_66'


class Error(dbus.exceptions.DBusException):
    def __init__(self, name, msg):
        super().__init__(msg, name=name)


class Fake(dbus.service.Object):
    def __init__(self, bus, fails, err_name, err_msg):
        super().__init__(bus, '/')
        self.bus = bus
        self.fails = fails
        self.err = (err_name, err_msg)
        self.attempts = 0
        self.disconnects = 0
        self.stale = err_name in ('stale', 'stale-stuck')
        self.stuck = err_name == 'stale-stuck'
        self.profiles = {}  # uuid -> (owner, path, opts)
        self.unregistered = 0
        self.last_opts = {}
        self.socks = []
        self.dev = Device(self, bus)
        self.pm = ProfileManager(self, bus)

    @dbus.service.method('org.freedesktop.DBus.ObjectManager', out_signature='a{oa{sa{sv}}}')
    def GetManagedObjects(self):
        return {DEV: {'org.bluez.Device1': {
            'Address': '11:22:33:44:55:66', 'Connected': dbus.Boolean(True),
            'Adapter': dbus.ObjectPath('/org/bluez/hci0')}}}

    @dbus.service.method('org.bgsync.FakeBluez1', out_signature='a{sv}')
    def Stats(self):
        opts = self.last_opts
        return {'attempts': dbus.UInt32(self.attempts),
                'profiles': dbus.UInt32(len(self.profiles)),
                'unregistered': dbus.UInt32(self.unregistered),
                'disconnects': dbus.UInt32(self.disconnects),
                'role': opts.get('Role', ''),
                'autoconnect': dbus.Boolean(bool(opts.get('AutoConnect', True)))}


class ProfileManager(dbus.service.Object):
    def __init__(self, fake, bus):
        super().__init__(bus, '/org/bluez')
        self.fake = fake

    @dbus.service.method('org.bluez.ProfileManager1', in_signature='osa{sv}', sender_keyword='sender')
    def RegisterProfile(self, path, uuid, opts, sender=None):
        if uuid in self.fake.profiles:
            raise Error('org.bluez.Error.AlreadyExists', 'Already Exists')
        self.fake.profiles[str(uuid)] = (sender, path, dict(opts))
        self.fake.last_opts = dict(opts)

    @dbus.service.method('org.bluez.ProfileManager1', in_signature='o', sender_keyword='sender')
    def UnregisterProfile(self, path, sender=None):
        for uuid, (owner, p, o) in list(self.fake.profiles.items()):
            if owner == sender and p == path:
                del self.fake.profiles[uuid]
                self.fake.unregistered += 1
                return
        raise Error('org.bluez.Error.DoesNotExist', 'Does Not Exist')


class Device(dbus.service.Object):
    def __init__(self, fake, bus):
        super().__init__(bus, DEV)
        self.fake = fake

    @dbus.service.method('org.bluez.Device1', in_signature='s', async_callbacks=('ok', 'err'))
    def ConnectProfile(self, uuid, ok, err):
        f = self.fake
        f.attempts += 1
        if f.fails < 0:
            f.hanging = (ok, err)
            return
        if f.attempts <= f.fails:
            if f.stale:
                ok()   # "already connected": nothing handed over
            else:
                err(Error(*f.err))
            return
        if uuid not in f.profiles:
            err(Error('org.bluez.Error.InvalidArguments', 'Invalid arguments in method call'))
            return
        owner, path, _ = f.profiles[uuid]
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        mine.setblocking(True)
        f.socks.append(mine)

        def echo(fd, cond):
            data = mine.recv(65536) if cond & GLib.IO_IN else b''
            if not data:
                return False
            mine.sendall(data)
            return True
        GLib.io_add_watch(mine.fileno(), GLib.PRIORITY_DEFAULT, GLib.IO_IN | GLib.IO_HUP, echo)
        prof = dbus.Interface(f.bus.get_object(owner, path), 'org.bluez.Profile1')
        prof.NewConnection(DEV, dbus.types.UnixFd(theirs), dbus.Dictionary({}, signature='sv'),
                           reply_handler=lambda: (theirs.close(), ok()),
                           error_handler=lambda e: (theirs.close(), err(e)))


    @dbus.service.method('org.bluez.Device1', in_signature='s')
    def DisconnectProfile(self, uuid):
        self.fake.disconnects += 1
        if self.fake.stale and not self.fake.stuck:
            self.fake.fails = 0


def main():
    dbus.mainloop.glib.DBusGMainLoop(set_as_default=True)
    bus = dbus.bus.BusConnection(sys.argv[4])
    name = dbus.service.BusName('org.bluez', bus)
    Fake(bus, int(sys.argv[1]), sys.argv[2], sys.argv[3])
    print('READY', flush=True)
    GLib.MainLoop().run()
    del name


if __name__ == '__main__':
    main()
