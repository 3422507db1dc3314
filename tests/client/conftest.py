# conftest.py: fixtures for the client suite (bgsyncctl, bgsync-prompt).
#
# Reuses the integration harness (tests/integration/harness.py): a private
# bus with dbusmock logind/UPower/BlueZ, three connected devices and bgsyncd.
# The daemon derives an app's identity from /proc/<pid>/exe, so the
# fixture adds a manifest for org.bgsync.ctl whose Executable= is the
# bgsyncctl under test, and makes the test watch's model privileged for it.
#
# Environment (meson sets it): BGSYNCD, BGSYNCCTL, BGSYNC_PROMPT.
import json
import os
import socket
import subprocess
import sys
import threading
import time

import pytest
from gi.repository import Gio, GLib

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'integration'))
import harness  # noqa: E402

CTL_APP = 'org.bgsync.ctl'
WATCH1, WATCH2, BAND3 = harness.WATCH1, harness.WATCH2, harness.BAND3
TIMEOUT = harness.TIMEOUT


def pytest_runtest_setup(item):
    for var in ('BGSYNCD', 'BGSYNCCTL'):
        path = os.environ.get(var)
        if not path or not os.access(path, os.X_OK):
            pytest.skip('%s not set or not executable' % var)


class ClientWorld:
    """The harness plus helpers to run bgsyncctl against it."""

    def __init__(self, h, tmp):
        self.h = h
        self.tmp = tmp
        self.ctl_path = os.path.realpath(os.environ['BGSYNCCTL'])
        self.env = dict(h.env)
        # no colours, no user history in the test's home
        self.env['XDG_STATE_HOME'] = os.path.join(tmp, 'state-home')
        self.env.pop('G_DEBUG', None)

    def ctl(self, *args, json=False, timeout=TIMEOUT, stdin=subprocess.DEVNULL):
        argv = [self.ctl_path, '--session']
        if json:
            argv.append('--json')
        argv += list(args)
        return subprocess.run(argv, env=self.env, stdin=stdin, capture_output=True,
                              text=True, timeout=timeout)

    def popen(self, *args, json=False, **kw):
        argv = [self.ctl_path, '--session']
        if json:
            argv.append('--json')
        argv += list(args)
        kw.setdefault('stdin', subprocess.DEVNULL)
        return subprocess.Popen(argv, env=self.env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, **kw)

    def lines(self, proc):
        """Collects a popen()ed bgsyncctl's stdout lines for bounded waits."""
        return LineReader(self.h.hub, proc)

    def listener(self, name='chan'):
        return ChannelListener(self.h.hub, os.path.join(self.tmp, name + '.sock'))


class LineReader:
    """Reads a process's stdout in a thread; waits are bounded."""

    def __init__(self, hub, proc):
        self.hub = hub
        self.proc = proc
        self.lines = []
        self.eof = False
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            with self.hub.cond:
                self.lines.append(line.rstrip('\n'))
                self.hub.cond.notify_all()
        with self.hub.cond:
            self.eof = True
            self.hub.cond.notify_all()

    def wait(self, pred, what, timeout=TIMEOUT):
        """The first line for which pred(line) holds."""
        return self.hub.wait_for(lambda: next((l for l in self.lines if pred(l)), None),
                                 timeout, '%s (got %r, eof=%s)' % (what, self.lines, self.eof))

    def wait_json(self, pred, what, timeout=TIMEOUT):
        """The first JSON line (a dict) for which pred holds."""
        def match(line):
            try:
                v = json.loads(line)
            except ValueError:
                return False
            return isinstance(v, dict) and pred(v)
        return json.loads(self.wait(match, what, timeout))

    def finish(self, timeout=TIMEOUT):
        """Waits for the end of output and of the process; its status."""
        self.hub.wait_for(lambda: self.eof, timeout, 'end of output (got %r)' % self.lines)
        return self.proc.wait(timeout)


class ChannelListener:
    """The test's end of a test-profile channel that bgsyncctl connects to
    (request --channel SOCKET) and passes to the agent."""

    def __init__(self, hub, path):
        self.hub = hub
        self.path = path
        self.srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.srv.bind(path)
        self.srv.listen(1)
        self.conn = None
        self.lines = []
        self.eof = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        try:
            conn, _ = self.srv.accept()
        except OSError:
            return
        with self.hub.cond:
            self.conn = conn
            self.hub.cond.notify_all()
        buf = b''
        while True:
            try:
                data = conn.recv(65536)
            except OSError:
                data = b''
            with self.hub.cond:
                if not data:
                    self.eof = True
                    self.hub.cond.notify_all()
                    return
                buf += data
                while b'\n' in buf:
                    line, buf = buf.split(b'\n', 1)
                    self.lines.append(line.decode())
                self.hub.cond.notify_all()

    def wait_line(self, prefix, timeout=TIMEOUT):
        return self.hub.wait_for(
            lambda: next((l for l in self.lines if l.startswith(prefix)), None),
            timeout, 'channel line %r (got %r)' % (prefix, self.lines))

    def send(self, line):
        self.conn.sendall((line + '\n').encode())

    def close(self):
        for s in (self.conn, self.srv):
            if s is not None:
                try:
                    s.close()
                except OSError:
                    pass


@pytest.fixture(scope='session')
def bindir(tmp_path_factory):
    return harness.make_bindir(str(tmp_path_factory.mktemp('bin')))


# the client suite tests the client, not the foreground rule (the
# integration suite does): bgsyncd's logind user lookup currently trips a
# GLib critical (agent/system/bgs-session-monitor.c on_get_user reads the
# task after g_steal_pointer in the same call), so the check is off here
CLIENT_CONFIG = {'Policy': {'ForegroundCheck': 'none'}}


def wait_devices(h, count=len(harness.DEVICES)):
    """Waits until bgsyncd lists the simulated devices as present: it owns
    its name before BlueZ's objects are read, and no signal announces new
    devices (no ObjectManager), so this polls GetDevices, bounded."""
    deadline = time.monotonic() + TIMEOUT
    delay = 0.01
    while True:
        try:
            reply = h.bus.call_sync(harness.BUS_NAME, harness.MANAGER_PATH, harness.MANAGER,
                                    'GetDevices', None, None, Gio.DBusCallFlags.NONE,
                                    TIMEOUT * 1000, None).unpack()[0]
        except GLib.Error:
            reply = {}
        if len([p for p in reply.values() if p.get('Present')]) >= count:
            return
        if time.monotonic() > deadline:
            raise AssertionError('bgsyncd did not list %d present devices (got %r)'
                                 % (count, reply))
        time.sleep(delay)  # polling interval, not synchronisation
        delay = min(delay * 2, 0.2)


def start_world(tmp, bindir, config=None, daemon=True):
    merged = {k: dict(v) for k, v in CLIENT_CONFIG.items()}
    for section, keys in (config or {}).items():
        merged.setdefault(section, {}).update(keys)
    h = harness.Harness(tmp, bindir, merged)
    try:
        h.start(daemon=False)
        # python3-dbusmock's logind template builds GetUser's path by adding
        # a str and a UInt32 (TypeError): give the foreground check a
        # working one
        h.mock('org.freedesktop.login1', '/org/freedesktop/login1', harness.MOCK, 'AddMethod',
               'sssss', 'org.freedesktop.login1.Manager', 'GetUser', 'u', 'o',
               'ret = dbus.ObjectPath("/org/freedesktop/login1/user/%d" % args[0])')
        ctl = os.path.realpath(os.environ['BGSYNCCTL'])
        with open(os.path.join(tmp, 'apps', 'ctl.conf'), 'w') as f:
            f.write('[App]\nId=%s\nName=bgsync command line client\nExecutable=%s\n'
                    'DeviceUseEntryPoints=test;\nDeviceServicingEntryPoints=test;\n'
                    'CustomEntryPoints=test;\nPrivileges=manage-consents;\n' % (CTL_APP, ctl))
        with open(os.path.join(tmp, 'devices', 'watch.conf'), 'w') as f:
            f.write('[Model]\nId=test-watch\nName=Test Watch\nPrivilegedApps=%s;%s;\n'
                    '[Match]\nName=TestWatch*\n' % (harness.APP_A, CTL_APP))
        if daemon:
            h.start_daemon()
            wait_devices(h)
    except BaseException:
        h.stop()
        print(h.log_tail())
        raise
    return h


@pytest.fixture
def world(request, bindir, tmp_path):
    marker = request.node.get_closest_marker('config')
    h = start_world(str(tmp_path), bindir, marker.kwargs if marker else None)
    w = ClientWorld(h, str(tmp_path))
    yield w
    status = h.stop()
    print(h.log_tail())
    if status not in (0, None):
        pytest.fail('bgsyncd did not exit cleanly: %s' % status)


def pytest_configure(config):
    config.addinivalue_line('markers', 'config(**sections): agent config overrides')
