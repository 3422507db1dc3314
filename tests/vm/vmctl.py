#!/usr/bin/python3
"""Fault injection inside the bgsync VM (run from a job; needs BGSYNC_VM=1).

    vmctl.py links [--adapter hci1]                  connections and handles
    vmctl.py drop-link --adapter hci1 --peer ADDR [--reason 0x08]
        HCI Disconnect from that adapter's side: the other side sees the link
        drop with that reason (0x08 = connection timeout, like out of range)
    vmctl.py power --adapter hci1 on|off             Adapter1.Powered
    vmctl.py restart-bluetoothd [--down SECONDS] [--clear]
        the BlueZ service restarts (bluetoothd powers the adapters off on exit,
        which drops links and advertisements); --clear also forgets every
        device: a fresh daemon state in ~3 s instead of a new VM

Why these: btvirt cannot model range or RSSI (always 127, one advertising
report per scan enable), and an abrupt adapter down leaves the other side
connected forever, so link loss is an HCI Disconnect or a peer power-off.
Every wait is bounded (--timeout, default 30 s).
"""
import argparse
import os
import re
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stack  # noqa: E402

import dbus  # noqa: E402
import dbus.mainloop.glib  # noqa: E402

PIDFILE = "/run/vm/bluetoothd.pid"


def links(adapter):
    """[(kind, addr, handle)] from `hcitool con` on that adapter."""
    out = subprocess.run(["hcitool", "-i", adapter, "con"], capture_output=True,
                         text=True, timeout=10).stdout
    res = []
    for m in re.finditer(r"[<>]\s+(\S+)\s+([0-9A-F:]{17})\s+handle\s+(\d+)", out):
        res.append((m.group(1), m.group(2), int(m.group(3))))
    return res


def cmd_links(args):
    for kind, addr, handle in links(args.adapter):
        print(f"{args.adapter}\t{kind}\t{addr}\thandle {handle}")
    return 0


def cmd_drop_link(args):
    peer = args.peer.upper()
    found = [l for l in links(args.adapter) if l[1] == peer]
    if not found:
        print(f"vmctl: no link from {args.adapter} to {peer}: {links(args.adapter)}")
        return 1
    reason = int(args.reason, 0)
    for kind, _addr, handle in found:
        r = subprocess.run(["hcitool", "-i", args.adapter, "cmd", "0x01", "0x0006",
                            f"0x{handle & 0xff:02x}", f"0x{handle >> 8:02x}",
                            f"0x{reason:02x}"],
                           capture_output=True, text=True, timeout=10)
        print(f"vmctl: HCI Disconnect {kind} handle {handle} reason 0x{reason:02x} "
              f"on {args.adapter}: rc {r.returncode}")
        if r.returncode != 0:
            print(r.stdout + r.stderr)
            return 1
    return 0


def set_powered(bus, adapter, on):
    dbus.Interface(bus.get_object(stack.BLUEZ, f"/org/bluez/{adapter}"),
                   stack.PROPS).Set(stack.ADAPTER, "Powered", dbus.Boolean(on))


def cmd_power(args):
    dbus.mainloop.glib.DBusGMainLoop(set_as_default=True)
    bus = dbus.SystemBus()
    on = args.state == "on"
    set_powered(bus, args.adapter, on)
    path = f"/org/bluez/{args.adapter}"
    ok = stack.wait_until(
        lambda: bool(stack.adapters(bus).get(path, {}).get("Powered")) == on,
        args.timeout, f"{args.adapter} Powered={on}")
    return 0 if ok else 1


def cmd_restart_bluetoothd(args):
    dbus.mainloop.glib.DBusGMainLoop(set_as_default=True)
    bus = dbus.SystemBus()
    with open(PIDFILE) as f:
        pid = int(f.read())
    os.kill(pid, signal.SIGTERM)
    if not stack.wait_until(lambda: not bus.name_has_owner(stack.BLUEZ), args.timeout,
                            "org.bluez to vanish"):
        os.kill(pid, signal.SIGKILL)
    print(f"vmctl: bluetoothd {pid} stopped", flush=True)
    if args.clear:
        # a fresh daemon state: no cached devices, keys or GATT databases
        for entry in os.listdir("/var/lib/bluetooth"):
            subprocess.run(["rm", "-rf", os.path.join("/var/lib/bluetooth", entry)],
                           timeout=args.timeout)
        print("vmctl: /var/lib/bluetooth cleared", flush=True)
    if args.down > 0:
        time.sleep(args.down)  # the scenario asks for this much downtime
    log = open(os.path.join(os.environ.get("BGSYNC_VM_RESULTS", "/tmp"),
                            "bluetoothd.log"), "ab")
    p = subprocess.Popen(os.environ["BGSYNC_VM_BLUETOOTHD"].split(), stdout=log,
                         stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
    with open(PIDFILE, "w") as f:
        f.write(f"{p.pid}\n")
    print(f"vmctl: bluetoothd restarted, pid {p.pid}", flush=True)
    want = ["/org/bluez/hci0", "/org/bluez/hci1"]
    ok = stack.wait_until(lambda: all(stack.adapters(bus).get(a, {}).get("Powered")
                                      for a in want), args.timeout,
                          "hci0 and hci1 back and powered (AutoEnable)")
    for i in range(len(want)):
        # as stack.py does at boot
        stack.mgmt(i, "connectable", "on", timeout=args.timeout)
    stack.mgmt(1, "sc", "off", timeout=args.timeout)
    return 0 if ok else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--timeout", type=float, default=30)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("links")
    s.add_argument("--adapter", default="hci1")
    s = sub.add_parser("drop-link")
    s.add_argument("--adapter", default="hci1")
    s.add_argument("--peer", required=True)
    s.add_argument("--reason", default="0x08")
    s = sub.add_parser("power")
    s.add_argument("--adapter", default="hci1")
    s.add_argument("state", choices=["on", "off"])
    s = sub.add_parser("restart-bluetoothd")
    s.add_argument("--down", type=float, default=0)
    s.add_argument("--clear", action="store_true",
                   help="also forget every device (empty /var/lib/bluetooth)")
    args = ap.parse_args()
    return {"links": cmd_links, "drop-link": cmd_drop_link, "power": cmd_power,
            "restart-bluetoothd": cmd_restart_bluetoothd}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
