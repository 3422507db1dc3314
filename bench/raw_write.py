#!/usr/bin/python3
# raw_write.py: the "no agent" baseline of the gatt-bulk benchmark: one
# process calls AcquireWrite itself and writes the pattern into the fd,
# MTU-3 bytes a packet, blocking when the socket is full. Prints
# key=value like gatt-bulk (wall from the first write to the last, cpu of
# this process for the write loop).
import argparse
import socket
import time

import dbus

BLUEZ = 'org.bluez'
PROPS = 'org.freedesktop.DBus.Properties'


def pattern(n):
    return bytes(((i * 131 + (i >> 8)) & 0xff) for i in range(n))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--bus', required=True)
    ap.add_argument('--device', required=True)
    ap.add_argument('--write', required=True)
    ap.add_argument('--send', type=int, required=True)
    args = ap.parse_args()
    bus = dbus.bus.BusConnection(args.bus)
    dev = bus.get_object(BLUEZ, args.device)
    dbus.Interface(dev, 'org.bluez.Device1').Connect(timeout=30)
    deadline = time.monotonic() + 20
    # bench tool, not a test: a bounded poll is good enough here
    while not dbus.Interface(dev, PROPS).Get('org.bluez.Device1', 'ServicesResolved'):
        if time.monotonic() > deadline:
            raise SystemExit('raw_write: services not resolved')
        time.sleep(0.05)
    om = dbus.Interface(bus.get_object(BLUEZ, '/'), 'org.freedesktop.DBus.ObjectManager')
    chrc = None
    for path, ifaces in om.GetManagedObjects().items():
        c = ifaces.get('org.bluez.GattCharacteristic1')
        if c and str(path).startswith(args.device + '/') and str(c['UUID']).lower() == args.write.lower():
            chrc = path
    if chrc is None:
        raise SystemExit('raw_write: no characteristic ' + args.write)
    fd, mtu = dbus.Interface(bus.get_object(BLUEZ, chrc), 'org.bluez.GattCharacteristic1').AcquireWrite({})
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET, fileno=fd.take())
    sock.setblocking(True)
    payload = min(int(mtu) - 3, 512)
    data = pattern(args.send)
    view = memoryview(data)
    c0, t0 = time.process_time(), time.monotonic()
    for off in range(0, len(data), payload):
        sock.send(view[off:off + payload])
    wall, cpu = time.monotonic() - t0, time.process_time() - c0
    print('path=raw mtu=%d sent=%d wall=%.3f cpu=%.3f' % (mtu, len(data), wall, cpu), flush=True)
    # keep the socket open until the harness has seen everything arrive
    input()
    sock.close()


if __name__ == '__main__':
    main()
