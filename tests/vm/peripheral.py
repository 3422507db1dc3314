#!/usr/bin/python3
"""Tiny BlueZ peripheral for the VM smoke group: one GATT service with one
readable characteristic and a connectable LE advertisement, registered on the
given adapter through GattManager1 / LEAdvertisingManager1. Prints READY once
both registrations succeeded, then serves until killed.
"""
import argparse
import signal
import sys

import dbus
import dbus.mainloop.glib
import dbus.service
from gi.repository import GLib

BLUEZ = "org.bluez"
OM = "org.freedesktop.DBus.ObjectManager"
PROPS = "org.freedesktop.DBus.Properties"
SVC = "org.bluez.GattService1"
CHR = "org.bluez.GattCharacteristic1"
ADV = "org.bluez.LEAdvertisement1"

SERVICE_UUID = "6b1a0001-52c4-4bf4-9a1b-6267c7a1b5e0"
CHAR_UUID = "6b1a0002-52c4-4bf4-9a1b-6267c7a1b5e0"
CHAR_VALUE = b"bgsync-vm smoke"


class Invalid(dbus.DBusException):
    _dbus_error_name = "org.freedesktop.DBus.Error.InvalidArgs"


class Obj(dbus.service.Object):
    iface = None

    def __init__(self, bus, path):
        self.path = path
        super().__init__(bus, path)

    def props(self):
        return {}

    @dbus.service.method(PROPS, in_signature="s", out_signature="a{sv}")
    def GetAll(self, iface):
        if iface != self.iface:
            raise Invalid(iface)
        return self.props()

    @dbus.service.method(PROPS, in_signature="ss", out_signature="v")
    def Get(self, iface, name):
        return self.GetAll(iface)[name]


class Service(Obj):
    iface = SVC

    def props(self):
        return {"UUID": SERVICE_UUID, "Primary": dbus.Boolean(True)}


class Characteristic(Obj):
    iface = CHR

    def __init__(self, bus, path, service):
        self.service = service
        super().__init__(bus, path)

    def props(self):
        return {"UUID": CHAR_UUID, "Service": dbus.ObjectPath(self.service.path),
                "Flags": dbus.Array(["read"], signature="s")}

    @dbus.service.method(CHR, in_signature="a{sv}", out_signature="ay")
    def ReadValue(self, options):
        print(f"peripheral: ReadValue {dict(options)}", flush=True)
        off = int(options.get("offset", 0))
        return dbus.ByteArray(CHAR_VALUE[off:])


class App(dbus.service.Object):
    def __init__(self, bus, path):
        self.path = path
        super().__init__(bus, path)
        self.svc = Service(bus, path + "/service0")
        self.chr = Characteristic(bus, path + "/service0/char0", self.svc)

    @dbus.service.method(OM, out_signature="a{oa{sa{sv}}}")
    def GetManagedObjects(self):
        return {dbus.ObjectPath(o.path): {o.iface: o.props()}
                for o in (self.svc, self.chr)}


class Advertisement(Obj):
    iface = ADV

    def __init__(self, bus, path, name):
        self.name = name
        super().__init__(bus, path)

    def props(self):
        return {"Type": "peripheral",
                "ServiceUUIDs": dbus.Array([SERVICE_UUID], signature="s"),
                "LocalName": self.name,
                "Discoverable": dbus.Boolean(True)}

    @dbus.service.method(ADV)
    def Release(self):
        print("peripheral: advertisement released", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--adapter", default="hci1")
    ap.add_argument("--name", default="bgsync-vm-peer")
    args = ap.parse_args()

    dbus.mainloop.glib.DBusGMainLoop(set_as_default=True)
    bus = dbus.SystemBus()
    adapter = bus.get_object(BLUEZ, f"/org/bluez/{args.adapter}")
    app = App(bus, "/org/bgsync/vm/app")
    adv = Advertisement(bus, "/org/bgsync/vm/adv0", args.name)
    loop = GLib.MainLoop()
    pending = {"gatt", "adv"}
    rc = {"v": 0}

    def done(what):
        def ok():
            pending.discard(what)
            print(f"peripheral: {what} registered", flush=True)
            if not pending:
                print("READY", flush=True)
        return ok

    def err(what):
        def fail(e):
            print(f"peripheral: {what} registration failed: {e}", flush=True)
            rc["v"] = 1
            loop.quit()
        return fail

    dbus.Interface(adapter, "org.bluez.GattManager1").RegisterApplication(
        app.path, {}, reply_handler=done("gatt"), error_handler=err("gatt"),
        timeout=30)
    dbus.Interface(adapter, "org.bluez.LEAdvertisingManager1").RegisterAdvertisement(
        adv.path, {}, reply_handler=done("adv"), error_handler=err("adv"),
        timeout=30)
    signal.signal(signal.SIGTERM, lambda *_: loop.quit())
    loop.run()
    return rc["v"]


if __name__ == "__main__":
    sys.exit(main())
