#!/usr/bin/python3
"""VM faults group: the fault primitives of vmctl.py do what scenarios rely
on, against the real bluetoothd. hci0 connects to peripheral.py on hci1;
an HCI Disconnect with reason 0x08 (connection timeout) from hci1 drops the
link on hci0; hci0 reconnects and reads again; bluetoothd restarts and both
adapters come back powered.
"""
import os
import subprocess
import sys

import dbus
import dbus.mainloop.glib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peripheral  # noqa: E402
from smoke import (BLUEZ, Fail, objects, start_discovery,  # noqa: E402
                   start_peripheral, step, stop_peripheral, wait_until)  # noqa: E402

VMCTL = [sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                      "vmctl.py")]


def vmctl(*args):
    r = subprocess.run(VMCTL + list(args), capture_output=True, text=True, timeout=90)
    for line in (r.stdout + r.stderr).splitlines():
        print("  " + line, flush=True)
    if r.returncode != 0:
        raise Fail(f"vmctl {' '.join(args)} exited {r.returncode}")
    return r.stdout


def device(bus, path):
    return objects(bus).get(dbus.ObjectPath(path), {}).get("org.bluez.Device1")


def connect_and_read(bus, dev_path):
    dev = dbus.Interface(bus.get_object(BLUEZ, dev_path), "org.bluez.Device1")
    dev.Connect(timeout=60)

    def resolved():
        o = objects(bus)
        if not o.get(dbus.ObjectPath(dev_path), {}).get(
                "org.bluez.Device1", {}).get("ServicesResolved"):
            return None
        for p, ifs in o.items():
            c = ifs.get("org.bluez.GattCharacteristic1")
            if c and str(p).startswith(dev_path + "/") and \
                    str(c["UUID"]) == peripheral.CHAR_UUID:
                return str(p)
        return None
    char_path = wait_until(bus, resolved, 30, "ServicesResolved and the characteristic")
    ch = dbus.Interface(bus.get_object(BLUEZ, char_path), "org.bluez.GattCharacteristic1")
    value = bytes(ch.ReadValue({}, timeout=30))
    if value != peripheral.CHAR_VALUE:
        raise Fail(f"read {value!r}")
    step(f"connected, read {value!r}")


def main():
    dbus.mainloop.glib.DBusGMainLoop(set_as_default=True)
    bus = dbus.SystemBus()
    hci0_addr = os.environ["BGSYNC_VM_HCI0_ADDR"]
    peer_addr = os.environ["BGSYNC_VM_HCI1_ADDR"]
    dev_path = "/org/bluez/hci0/dev_" + peer_addr.replace(":", "_")
    adapter = start_discovery(bus)
    periph = start_peripheral("hci1", 30)
    try:
        wait_until(bus, lambda: device(bus, dev_path), 30, f"{dev_path}")
        adapter.StopDiscovery()
        step("discovered the peer")
        connect_and_read(bus, dev_path)

        # link loss as the central sees a walk out of range
        vmctl("links", "--adapter", "hci1")
        vmctl("drop-link", "--adapter", "hci1", "--peer", hci0_addr, "--reason", "0x08")
        wait_until(bus, lambda: not device(bus, dev_path)["Connected"], 30,
                   "Connected=False after HCI Disconnect 0x08")
        step("link dropped after HCI Disconnect reason 0x08 from the peer")

        # reconnect: the peer advertises again after the link is gone
        connect_and_read(bus, dev_path)
        step("reconnected")
    finally:
        stop_peripheral(periph)

    # the BlueZ service restarts: adapters vanish and come back powered
    vmctl("restart-bluetoothd")
    ads = [str(p) for p, o in objects(bus).items() if "org.bluez.Adapter1" in o]
    if sorted(ads) != ["/org/bluez/hci0", "/org/bluez/hci1"]:
        raise Fail(f"adapters after restart: {ads}")
    step("bluetoothd restarted, hci0 and hci1 back and powered")
    step("PASS")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (Fail, dbus.DBusException) as e:
        step(f"FAIL: {e}")
        sys.exit(1)
