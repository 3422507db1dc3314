#!/usr/bin/python3
# app.py: a companion app, as the end-to-end tests and the demo use it. It
# runs under its own executable (a copy of the interpreter) so bgsyncd
# identifies it from /proc/<pid>/exe against its manifest.
#
# Registers a consent agent answering --consent, registers a task, requests
# it with the given fds, and prints one JSON line per event until the task
# completes or is canceled.
import argparse
import json
import os
import sys

import dbus
import dbus.service
from dbus.mainloop.glib import DBusGMainLoop
from gi.repository import GLib

AGENT_PATH = '/e2e/agent'


def emit(event_name, **kw):
    kw['event'] = event_name
    print(json.dumps(kw), flush=True)


class Agent(dbus.service.Object):
    def __init__(self, bus, answer):
        super().__init__(bus, AGENT_PATH)
        self.answer = answer

    @dbus.service.method('org.bgsync.ConsentAgent1', in_signature='sssssuas', out_signature='b')
    def RequestConsent(self, app_id, app_name, device, model, kind, estimate, warnings):
        emit('consent', app=str(app_name), device=str(device), model=str(model), kind=str(kind),
             estimate=int(estimate), warnings=[str(w) for w in warnings])
        return self.answer == 'allow'

    @dbus.service.method('org.bgsync.ConsentAgent1')
    def Cancel(self):
        emit('consent-canceled')

    @dbus.service.method('org.bgsync.ConsentAgent1')
    def Release(self):
        pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--bus', required=True)
    ap.add_argument('--name', default='task')
    ap.add_argument('--trigger', default='device-use')
    ap.add_argument('--entry', default='smp-file-sync')
    ap.add_argument('--device', required=True)
    ap.add_argument('--estimate', type=int, default=0)
    ap.add_argument('--args', default='')
    ap.add_argument('--input')
    ap.add_argument('--output-dir')
    ap.add_argument('--channel-fd', type=int, help='pass this inherited socket as "channel"')
    ap.add_argument('--consent', default='allow')
    ap.add_argument('--cancel-at', type=int, default=-1, help='Cancel() once progress reaches this percent')
    ap.add_argument('--timeout', type=int, default=120)
    ap.add_argument('--unregister', action='store_true',
                    help='register the task, unregister it and exit')
    ap.add_argument('--wait-present', type=int, default=30,
                    help='after registering, wait this long for the device to be in range')
    ap.add_argument('--gate', action='store_true',
                    help='after registering, print "registered" and wait for a line on stdin')
    args = ap.parse_args()

    DBusGMainLoop(set_as_default=True)
    bus = dbus.bus.BusConnection(args.bus)
    mgr = dbus.Interface(bus.get_object('org.bgsync', '/org/bgsync'), 'org.bgsync.Manager1')
    agent = Agent(bus, args.consent)  # noqa: F841 (unreferenced objects are unexported)
    mgr.RegisterConsentAgent(AGENT_PATH)
    path = mgr.RegisterTask(args.name, args.trigger, args.entry, dbus.Dictionary({}, signature='sv'))
    task = dbus.Interface(bus.get_object('org.bgsync', path), 'org.bgsync.Task1')
    if args.unregister:
        task.Unregister(True)
        emit('unregistered', path=str(path))
        return 0
    if args.gate:
        # the harness makes the device seen first (tests/e2e/e2e.py announce)
        emit('registered', path=str(path))
        sys.stdin.readline()
    props = dbus.Interface(bus.get_object('org.bgsync', path), 'org.freedesktop.DBus.Properties')
    loop = GLib.MainLoop()
    state = {'status': 1}

    def on_progress(percent, status):
        emit('progress', percent=int(percent), status=str(status),
             estimate=int(props.Get('org.bgsync.Task1', 'Estimate')))
        if 0 <= args.cancel_at <= percent:
            args.cancel_at = -1
            task.Cancel()

    def on_completed(success, error, message):
        emit('completed', success=bool(success), error=str(error), message=str(message))
        state['status'] = 0
        loop.quit()

    def on_canceled(reason):
        emit('canceled', reason=str(reason))
        state['status'] = 0
        loop.quit()

    bus.add_signal_receiver(on_progress, 'Progress', 'org.bgsync.Task1', None, path)
    bus.add_signal_receiver(on_completed, 'Completed', 'org.bgsync.Task1', None, path)
    bus.add_signal_receiver(on_canceled, 'Canceled', 'org.bgsync.Task1', None, path)

    options = {}
    if args.input:
        options['input'] = dbus.types.UnixFd(open(args.input, 'rb'))
    if args.output_dir:
        fd = os.open(args.output_dir, os.O_RDONLY | os.O_DIRECTORY)
        options['output-dir'] = dbus.types.UnixFd(fd)
        os.close(fd)
    if args.channel_fd is not None:
        options['channel'] = dbus.types.UnixFd(args.channel_fd)

    def on_reply(result, reason):
        emit('request', result=str(result), reason=str(reason))
        if result != 'allowed':
            state['status'] = 0
            loop.quit()

    def on_error(e):
        emit('error', name=e.get_dbus_name(), message=str(e))
        loop.quit()

    def present():
        for dpath, p in mgr.GetDevices().items():
            if str(p['Address']).upper() == args.device.upper() and p['Present']:
                return True
        return False

    # a registered device task makes the agent look for its devices; wait
    # on the device objects' change signals, bounded
    if args.wait_present > 0 and not present():
        waiting = GLib.MainLoop()
        rx = bus.add_signal_receiver(lambda *a: present() and waiting.quit(), 'PropertiesChanged',
                                     'org.freedesktop.DBus.Properties', 'org.bgsync', None)
        GLib.timeout_add_seconds(args.wait_present, waiting.quit)
        if not present():
            waiting.run()
        rx.remove()
        emit('present', present=present())

    task.Request(args.device, dbus.UInt32(args.estimate), args.args,
                 dbus.Dictionary(options, signature='sv'),
                 reply_handler=on_reply, error_handler=on_error, timeout=300)
    GLib.timeout_add_seconds(args.timeout, lambda: (emit('timeout'), loop.quit()))
    loop.run()
    return state['status']


if __name__ == '__main__':
    sys.exit(main())
