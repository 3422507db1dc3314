#!/usr/bin/python3
"""Guest-side helper of the bgsync VM: bring the BlueZ stack to "ready".

`stack.py ready` waits (bounded) until bluetoothd owns org.bluez, starts
`btvirt -l2` (again if a controller fails its setup), waits until bluetoothd
exports hci0 and hci1, makes both adapters connectable (btvirt controllers are
not by default), turns Secure Connections off on hci1, powers them and writes BGSYNC_VM_HCI{0,1}_ADDR to an env file.
Every wait is event driven (ObjectManager / PropertiesChanged) with a timeout.
"""
import argparse
import os
import re
import subprocess
import sys
import time

import dbus
import dbus.mainloop.glib
from gi.repository import GLib

BLUEZ = "org.bluez"
ADAPTER = "org.bluez.Adapter1"
OM = "org.freedesktop.DBus.ObjectManager"
PROPS = "org.freedesktop.DBus.Properties"


def log(msg):
    print(f"stack.py [{time.monotonic():.2f}] {msg}", flush=True)


def wait_until(cond, timeout, what):
    """Run the main loop until cond() is true; False on timeout."""
    if cond():
        return True
    loop = GLib.MainLoop()
    state = {"ok": False}

    def check(*_a, **_k):
        if cond():
            state["ok"] = True
            loop.quit()
        return True

    def expire():
        loop.quit()
        return False

    bus = dbus.SystemBus()
    rx = [
        bus.add_signal_receiver(check, signal_name="InterfacesAdded",
                                dbus_interface=OM),
        bus.add_signal_receiver(check, signal_name="PropertiesChanged",
                                dbus_interface=PROPS),
        bus.add_signal_receiver(check, signal_name="NameOwnerChanged",
                                dbus_interface="org.freedesktop.DBus"),
    ]
    src = GLib.timeout_add(int(timeout * 1000), expire)
    # a signal may have arrived between cond() and the receivers: check again
    GLib.idle_add(lambda: check() and False)
    loop.run()
    if state["ok"]:
        GLib.source_remove(src)
    for r in rx:
        r.remove()
    if not state["ok"]:
        log(f"timeout after {timeout}s waiting for {what}")
    return state["ok"]


def adapters(bus):
    try:
        om = dbus.Interface(bus.get_object(BLUEZ, "/"), OM)
        objs = om.GetManagedObjects()
    except dbus.DBusException:
        return {}
    return {str(p): o[ADAPTER] for p, o in objs.items() if ADAPTER in o}


class Kmsg:
    """Watch the kernel log for a controller whose HCI_Reset timed out."""
    RESET_FAILED = re.compile(r"Bluetooth: (hci\d+): Opcode 0x0c03 failed")

    def __init__(self):
        self.fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
        os.lseek(self.fd, 0, os.SEEK_END)  # only what happens from now on
        self.failed = None
        GLib.io_add_watch(self.fd, GLib.IO_IN, self._read)

    def _read(self, *_a):
        while True:
            try:
                rec = os.read(self.fd, 8192).decode(errors="replace")
            except BlockingIOError:
                return True
            except OSError:  # EPIPE: records overwritten, go on
                continue
            msg = rec.partition(";")[2]
            m = self.RESET_FAILED.search(msg)
            if m:
                log(f"kernel: {msg.strip()}")
                self.failed = m.group(1)


def mgmt(index, *args, timeout=10):
    r = subprocess.run(["btmgmt", "--index", str(index), *args],
                       capture_output=True, text=True, timeout=timeout)
    log(f"btmgmt --index {index} {' '.join(args)}: rc={r.returncode} "
        f"{r.stdout.strip()} {r.stderr.strip()}")
    return r.returncode


def start_btvirt(logpath):
    # page it in first: btvirt answers no HCI command before it has created
    # every controller, and the kernel gives each HCI_Reset only 2 s
    with open("/usr/bin/btvirt", "rb") as f:
        f.read()
    out = open(logpath, "ab")
    p = subprocess.Popen(["btvirt", "-l2"], stdout=out, stderr=out,
                         stdin=subprocess.DEVNULL, start_new_session=True)
    log(f"btvirt -l2 started, pid {p.pid}")
    return p


def ready(args):
    dbus.mainloop.glib.DBusGMainLoop(set_as_default=True)
    bus = dbus.SystemBus()
    want = ["/org/bluez/hci0", "/org/bluez/hci1"]
    deadline = time.monotonic() + args.timeout

    def left():
        return max(0.1, deadline - time.monotonic())

    if not wait_until(lambda: bus.name_has_owner(BLUEZ), left(), "org.bluez on the bus"):
        return 1
    log("bluetoothd owns org.bluez")

    # under a loaded TCG host the first controller's HCI_Reset can time out
    # ("hci0: Opcode 0x0c03 failed: -110"); it then never registers. seen in
    # 2 of 3 boots here: restart btvirt at once when the kernel says so.
    kmsg = Kmsg()
    for attempt in range(1, args.btvirt_tries + 1):
        kmsg.failed = None
        btvirt = start_btvirt(args.btvirt_log)
        ok = wait_until(lambda: kmsg.failed or all(p in adapters(bus) for p in want),
                        left() if attempt == args.btvirt_tries else min(left(), 20),
                        "hci0 and hci1 in org.bluez")
        if ok and not kmsg.failed:
            break
        log(f"btvirt attempt {attempt}: controller failed ({kmsg.failed or 'timeout'}); "
            f"adapters seen: {sorted(adapters(bus))}")
        btvirt.kill()
        btvirt.wait()
        if attempt == args.btvirt_tries:
            return 1
        # the old indexes must be gone before new ones are created
        wait_until(lambda: not adapters(bus), min(left(), 10), "old adapters removed")
    with open(args.pidfile, "w") as f:
        f.write(f"{btvirt.pid}\n")
    with open(args.env, "a") as f:
        f.write(f"BGSYNC_VM_BTVIRT_STARTS={attempt}\n")
    log("both adapters exported")

    for i in range(len(want)):
        # btvirt controllers are not connectable by default; LE adverts of a
        # non-connectable controller cannot be connected to
        mgmt(i, "connectable", "on", timeout=left())
    # BR/EDR with Secure Connections races between two btvirt controllers:
    # the peer (hci1, the wearable's side) runs without SC
    mgmt(1, "sc", "off", timeout=left())

    # main.conf's AutoEnable powers them; a Set while that is in flight fails
    # with org.bluez.Error.Busy, so only set what is still off once it settles
    def powered():
        return all(bool(adapters(bus).get(p, {}).get("Powered")) for p in want)
    for _ in range(3):
        if wait_until(powered, min(left(), 10), "adapters powered (AutoEnable)"):
            break
        for path in want:
            if adapters(bus).get(path, {}).get("Powered"):
                continue
            try:
                dbus.Interface(bus.get_object(BLUEZ, path), PROPS).Set(
                    ADAPTER, "Powered", dbus.Boolean(True))
                log(f"{path}: Powered set")
            except dbus.DBusException as e:
                log(f"{path}: Powered: {e.get_dbus_name()} {e}")
    if not powered():
        log(f"adapters not powered: {adapters(bus)}")
        return 1
    ads = adapters(bus)
    with open(args.env, "a") as f:
        for i, path in enumerate(want):
            f.write(f"BGSYNC_VM_HCI{i}_ADDR={ads[path]['Address']}\n")
            log(f"hci{i} {ads[path]['Address']} powered")
    return 0


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("ready")
    r.add_argument("--timeout", type=float, default=30)
    r.add_argument("--env", required=True)
    r.add_argument("--pidfile", required=True, help="btvirt's pid goes here")
    r.add_argument("--btvirt-log", required=True)
    r.add_argument("--btvirt-tries", type=int, default=3)
    args = ap.parse_args()
    return ready(args)


if __name__ == "__main__":
    sys.exit(main())
