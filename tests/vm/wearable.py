#!/usr/bin/python3
"""VM wearable group: bgsync-wearable (the C peripheral app) on hci1 against
the real bluetoothd. hci0 discovers it by its SMP service UUID, connects,
reads Device Information PnP ID and Battery Level, and gets an MCUmgr SMP
echo answered through a notification (if bluetoothd got the answer as an ATT
Multiple Handle Value Notification and lost it, a known 5.66 behaviour here,
that is reported as XFAIL and the group passes). Arguments go to bgsync-wearable
(e.g. --no-acquire). Exit 77 if the wearable is not built.
"""
import os
import subprocess
import sys

import dbus
import dbus.mainloop.glib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from smoke import (BLUEZ, PROPS, Fail, objects, start_discovery,  # noqa: E402
                   step, wait_until)

SMP_SVC = "8d53dc1d-1db7-4cd3-868b-8a527460aa84"
SMP_CHR = "da2e7828-fbce-4e01-ae9e-261174997c48"
PNP_ID = "00002a50-0000-1000-8000-00805f9b34fb"
BATTERY = "00002a19-0000-1000-8000-00805f9b34fb"
PNP_BYTES = bytes.fromhex("01f10542570001")


def nfy_mult_count():
    """ATT Multiple Handle Value Notifications bluetoothd received so far
    (its -d log, which guest-init.sh writes to the results share)."""
    try:
        with open(os.path.join(os.environ["BGSYNC_VM_RESULTS"], "bluetoothd.log"),
                  errors="replace") as f:
            return f.read().count("ATT PDU received: 0x23")
    except (KeyError, OSError):
        return 0


def chrc(bus, dev_path, uuid):
    for p, ifs in objects(bus).items():
        c = ifs.get("org.bluez.GattCharacteristic1")
        if c and str(p).startswith(dev_path + "/") and str(c["UUID"]).lower() == uuid:
            return str(p)
    return None


def main():
    binary = os.path.join(os.environ["BGSYNC_BUILD"], "wearable", "bgsync-wearable")
    if not os.access(binary, os.X_OK):
        print(f"SKIP: {binary} not built")
        return 77
    dbus.mainloop.glib.DBusGMainLoop(set_as_default=True)
    bus = dbus.SystemBus()
    peer = os.environ["BGSYNC_VM_HCI1_ADDR"]
    dev_path = "/org/bluez/hci0/dev_" + peer.replace(":", "_")
    log = open(os.path.join(os.environ.get("BGSYNC_VM_RESULTS", "/tmp"),
                            "artifacts", "bgsync-wearable.log"), "ab")
    adapter = start_discovery(bus)  # scan first: see smoke.start_discovery
    w = subprocess.Popen([binary, "--adapter", "hci1", "--state-dir", "/tmp/wearable",
                          "--name", "bgsync-vm-wearable", "-v",
                          *sys.argv[1:]],
                         stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    try:
        def advertising():
            if w.poll() is not None:
                raise Fail(f"bgsync-wearable exited {w.returncode} (see bgsync-wearable.log)")
            o = objects(bus).get(dbus.ObjectPath("/org/bluez/hci1"), {})
            return o.get("org.bluez.LEAdvertisingManager1", {}).get("ActiveInstances", 0) > 0
        wait_until(bus, advertising, 30, "bgsync-wearable advertising on hci1")
        step("bgsync-wearable advertises on hci1")


        def found():
            d = objects(bus).get(dbus.ObjectPath(dev_path), {}).get("org.bluez.Device1")
            return d if d and SMP_SVC in [str(u).lower() for u in d.get("UUIDs", [])] else None
        d = wait_until(bus, found, 30, "the wearable's advertisement with the SMP UUID")
        adapter.StopDiscovery()
        step(f"discovered {d.get('Name')} ({peer})")

        dbus.Interface(bus.get_object(BLUEZ, dev_path), "org.bluez.Device1").Connect(
            timeout=60)
        wait_until(bus, lambda: chrc(bus, dev_path, SMP_CHR) and objects(bus)[
            dbus.ObjectPath(dev_path)]["org.bluez.Device1"]["ServicesResolved"], 30,
            "ServicesResolved with the SMP characteristic")
        step("connected, services resolved")

        def read(uuid):
            p = chrc(bus, dev_path, uuid)
            if not p:
                raise Fail(f"no characteristic {uuid}")
            return bytes(dbus.Interface(bus.get_object(BLUEZ, p),
                                        "org.bluez.GattCharacteristic1").ReadValue({}, timeout=30))
        pnp = read(PNP_ID)
        if pnp != PNP_BYTES:
            raise Fail(f"PnP ID {pnp.hex()}, want {PNP_BYTES.hex()}")
        bat = read(BATTERY)
        if len(bat) != 1 or not 0 <= bat[0] <= 100:
            raise Fail(f"battery level {bat!r}")
        step(f"PnP ID {pnp.hex()}, battery {bat[0]}%")

        # MCUmgr SMP: OS group 0, echo (id 0), CBOR {"d": "vm"}; answer op 3
        smp_path = chrc(bus, dev_path, SMP_CHR)
        smp = dbus.Interface(bus.get_object(BLUEZ, smp_path), "org.bluez.GattCharacteristic1")
        values = []
        bus.add_signal_receiver(
            lambda iface, changed, _inv: values.append(bytes(changed["Value"]))
            if "Value" in changed else None,
            signal_name="PropertiesChanged", dbus_interface=PROPS, path=smp_path)
        smp.StartNotify()
        wait_until(bus, lambda: objects(bus)[dbus.ObjectPath(smp_path)][
            "org.bluez.GattCharacteristic1"].get("Notifying"), 10, "Notifying")
        body = bytes.fromhex("a1616462766d")  # {"d": "vm"}
        frame = bytes([2, 0]) + len(body).to_bytes(2, "big") + bytes([0, 0, 7, 0]) + body
        mark = nfy_mult_count()
        smp.WriteValue(dbus.ByteArray(frame), {"type": "command"})
        try:
            rsp = wait_until(bus, lambda: next((v for v in values if len(v) >= 8 and v[0] == 3
                                                and v[6] == 7), None), 15, "SMP echo response")
        except Fail:
            if nfy_mult_count() > mark:
                # the wearable answered; the daemon lost it (doc/testing-vm.md)
                step("XFAIL SMP echo: the answer arrived as ATT Multiple Handle Value "
                     "Notification (0x23) and bluetoothd 5.66 made no Value change of it")
                step("PASS (with the known bluetoothd 5.66 NFY_MULT loss)")
                return 0
            raise
        if b"vm" not in rsp[8:]:
            raise Fail(f"SMP echo response {rsp.hex()}")
        step(f"SMP echo answered: {rsp.hex()}")
        step("PASS")
        return 0
    finally:
        w.terminate()
        try:
            w.wait(10)
        except subprocess.TimeoutExpired:
            w.kill()
            w.wait()


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (Fail, dbus.DBusException) as e:
        step(f"FAIL: {e}")
        sys.exit(1)
