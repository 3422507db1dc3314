# harness.py: a private bus with mocked logind, UPower and BlueZ, the agent
# under test, simulated apps and test-owned entry point channels.
#
# Nothing here sleeps to synchronise: every wait is on a condition variable
# that the reader threads (app proxies, channels, the test's own bus
# connection, process watchers) notify, bounded by a deadline.
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import pytest

from gi.repository import Gio, GLib

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from app_proxy import to_variant  # noqa: E402

PYTHON = '/usr/bin/python3'
BUS_NAME = 'org.bgsync'
MANAGER_PATH = '/org/bgsync'
MANAGER = 'org.bgsync.Manager1'
TASK = 'org.bgsync.Task1'
DEVICE = 'org.bgsync.Device1'
PROPS = 'org.freedesktop.DBus.Properties'
MOCK = 'org.freedesktop.DBus.Mock'

# the simulated devices every test starts with (all connected)
WATCH1 = 'AA:BB:CC:DD:EE:01'
WATCH2 = 'AA:BB:CC:DD:EE:02'
BAND3 = 'AA:BB:CC:DD:EE:03'
DEVICES = [(WATCH1, 'TestWatch 1'), (WATCH2, 'TestWatch 2'), (BAND3, 'OtherBand 3')]

APP_A = 'com.example.AppA'
APP_B = 'com.example.AppB'
APP_C = 'com.example.AppC'

# generous: the machine running the suite is shared and slow; a bound is
# there to turn a hang into a clear failure, not to measure speed
TIMEOUT = 20

DEFAULT_CONFIG = {
    'Policy': {
        'DeviceUseMaxRuntime': '120',
        'DeviceServicingMaxRuntime': '120',
        'CustomMaxRuntime': '60',
        'IdleTimeout': '60',
        'MaxServicingEstimate': '1800',
        'MinBatteryPercent': '33',
        'ForegroundCheck': 'logind',
        'CustomTriggerRaisers': 'root',
    },
    # presence = connected: a sighting (the mock's RSSI) is forgotten at once
    'Presence': {'LostTimeout': '0.1'},
    'Consent': {'Timeout': '60'},
    'Events': {'MaxQueuedPerApp': '100'},
    'Limits': {'MaxTasksPerApp': '16', 'MaxStringLength': '4096'},
}

BUS_CONF = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>bgsync-test</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow receive_sender="*"/>
    <allow eavesdrop="true"/>
  </policy>
  <limit name="reply_timeout">600000</limit>
</busconfig>
"""


class DBusError(Exception):
    def __init__(self, name, message):
        super().__init__('%s: %s' % (name, message))
        self.name = name
        self.message = message


def bus_connect(address):
    return Gio.DBusConnection.new_for_address_sync(
        address,
        Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT |
        Gio.DBusConnectionFlags.MESSAGE_BUS_CONNECTION,
        None, None)


def make_bindir(path):
    """Copies of the interpreter, one per simulated app executable."""
    os.makedirs(path, exist_ok=True)
    os.chmod(path, 0o755)
    for name in ('app-a', 'app-b', 'app-c', 'app-x'):
        dst = os.path.join(path, name)
        if not os.path.exists(dst):
            shutil.copy2(os.path.realpath(PYTHON), dst)
            os.chmod(dst, 0o755)
    # the proxy script must be readable by another uid too
    shutil.copy2(os.path.join(HERE, 'app_proxy.py'), os.path.join(path, 'app_proxy.py'))
    os.chmod(os.path.join(path, 'app_proxy.py'), 0o644)
    return path


class _Cond(threading.Condition):
    """A condition that counts notifications, so a waiter whose predicate
    itself waited (a D-Bus call inside a predicate consumes wake-ups) can
    tell that something arrived meanwhile and must not sleep."""

    def __init__(self):
        super().__init__(threading.RLock())
        self.gen = 0

    def notify_all(self):
        self.gen += 1
        super().notify_all()


class Hub:
    """One condition variable for everything a test waits on."""

    def __init__(self):
        self.cond = _Cond()
        self.checks = []  # callables raising when the world broke

    def notify(self):
        with self.cond:
            self.cond.notify_all()

    def wait_for(self, predicate, timeout=TIMEOUT, what='condition'):
        """Waits until predicate() is true (returns its value) or fails the
        test after timeout seconds; re-checked whenever anything arrives."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                gen = self.cond.gen
                for check in self.checks:
                    check()
                value = predicate()
                if value:
                    return value
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError('timed out after %.1fs waiting for %s' % (timeout, what))
                if self.cond.gen == gen:
                    self.cond.wait(left)

    def quiet_for(self, predicate, duration, what='condition'):
        """Asserts predicate() stays false for duration seconds (used to
        check that something does NOT happen, e.g. no cancel while I/O
        flows); wakes on every arrival to re-check."""
        deadline = time.monotonic() + duration
        with self.cond:
            while True:
                gen = self.cond.gen
                for check in self.checks:
                    check()
                if predicate():
                    raise AssertionError('unexpected: %s' % what)
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                if self.cond.gen == gen:
                    self.cond.wait(left)


    def within(self, predicate, duration):
        """predicate()'s value once it is true within duration seconds,
        else None (for paced loops: this is the pace, and it wakes early)."""
        deadline = time.monotonic() + duration
        with self.cond:
            while True:
                gen = self.cond.gen
                for check in self.checks:
                    check()
                value = predicate()
                if value:
                    return value
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                if self.cond.gen == gen:
                    self.cond.wait(left)


class Channel:
    """The test's end of an entry point channel (test profile)."""

    def __init__(self, hub):
        self.hub = hub
        self.mine, self.theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.lines = []
        self.eof = False
        self.sent = 0  # bytes written by the test (device -> host)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        buf = b''
        while True:
            try:
                data = self.mine.recv(65536)
            except OSError:
                data = b''
            if not data:
                with self.hub.cond:
                    if buf:
                        self.lines.append(buf.decode('utf-8', 'replace'))
                    self.eof = True
                    self.hub.cond.notify_all()
                return
            buf += data
            with self.hub.cond:
                while b'\n' in buf:
                    line, buf = buf.split(b'\n', 1)
                    self.lines.append(line.decode('utf-8', 'replace'))
                self.hub.cond.notify_all()

    def give_fd(self):
        """The fd to pass to the agent; close_given() after sending it."""
        return self.theirs.fileno()

    def close_given(self):
        if self.theirs is not None:
            self.theirs.close()
            self.theirs = None

    def send(self, line, ok_if_closed=False):
        """Writes a line; with ok_if_closed a peer that already closed its
        end (the instance ended meanwhile) is not an error."""
        data = (line + '\n').encode()
        try:
            self.mine.sendall(data)
            self.sent += len(data)
        except (BrokenPipeError, ConnectionResetError):
            if not ok_if_closed:
                raise

    def wait_line(self, prefix, timeout=TIMEOUT):
        return self.hub.wait_for(
            lambda: next((l for l in self.lines if l.startswith(prefix)), None),
            timeout, 'channel line %r (got %r, eof=%s)' % (prefix, self.lines, self.eof))

    def echo(self, text, timeout=TIMEOUT):
        """One round trip through the entry point: proves it runs and reads."""
        n = len([l for l in self.lines if l == 'echo ' + text])
        self.send('echo ' + text)
        self.hub.wait_for(lambda: len([l for l in self.lines if l == 'echo ' + text]) > n,
                          timeout, 'echo %r back (got %r, eof=%s)' % (text, self.lines, self.eof))

    def close(self):
        self.close_given()
        try:
            self.mine.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.mine.close()


class Pending:
    def __init__(self, app, mid):
        self.app = app
        self.id = mid

    def done(self):
        return self.id in self.app.replies

    def result(self, timeout=TIMEOUT):
        app = self.app
        app.hub.wait_for(lambda: self.id in app.replies or app.exited, timeout,
                         'reply %d from %s' % (self.id, app.label))
        if self.id not in app.replies:
            raise AssertionError('app proxy %s exited before replying' % app.label)
        r = app.replies.pop(self.id)
        if not r['ok']:
            raise DBusError(r['error'], r['message'])
        return r['value']


class App:
    """A simulated app: app_proxy.py under a copied interpreter."""

    def __init__(self, harness, exe='app-a', user=None, label=None):
        self.h = harness
        self.hub = harness.hub
        self.label = label or exe
        self.replies = {}
        self.msgs = []
        self.exited = False
        self.next_id = 1
        self.lock = threading.Lock()
        self.ready = None
        ctl, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.ctl = ctl
        env = dict(harness.env)
        env['BGS_PROXY_FD'] = str(child.fileno())
        env['PYTHONDONTWRITEBYTECODE'] = '1'
        preexec = None
        if user is not None:
            pw = pwd.getpwnam(user)
            env['HOME'] = '/'

            def preexec():
                os.setgroups([])
                os.setgid(pw.pw_gid)
                os.setuid(pw.pw_uid)
        self.proc = subprocess.Popen(
            [os.path.join(harness.bindir, exe), os.path.join(harness.bindir, 'app_proxy.py')],
            env=env, pass_fds=[child.fileno()], preexec_fn=preexec, stdin=subprocess.DEVNULL)
        child.close()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()
        self.ready = self.hub.wait_for(
            lambda: next((m for m in self.msgs if m['type'] == 'ready'), None) or self._dead(),
            TIMEOUT, 'app proxy %s to start' % self.label)
        if self.ready is True:
            raise AssertionError('app proxy %s died at start' % self.label)
        self.pid = self.ready['pid']
        self.uid = self.ready['uid']
        self.unique_name = self.ready['unique_name']

    def _dead(self):
        return self.exited

    def _read(self):
        buf = b''
        while True:
            try:
                data = self.ctl.recv(65536)
            except OSError:
                data = b''
            with self.hub.cond:
                if not data:
                    self.exited = True
                    self.hub.cond.notify_all()
                    return
                buf += data
                while b'\n' in buf:
                    line, buf = buf.split(b'\n', 1)
                    m = json.loads(line)
                    if m['type'] == 'reply':
                        self.replies[m['id']] = m
                    else:
                        self.msgs.append(m)
                self.hub.cond.notify_all()

    def _send(self, msg, fds=()):
        with self.lock:
            mid = self.next_id
            self.next_id += 1
        msg['id'] = mid
        data = (json.dumps(msg) + '\n').encode()
        if fds:
            socket.send_fds(self.ctl, [data], list(fds))
        else:
            self.ctl.sendall(data)
        return Pending(self, mid)

    # -- D-Bus calls ------------------------------------------------------
    def call_async(self, path, iface, method, sig='', args=(), fds=(), timeout=120,
                   dest=BUS_NAME):
        return self._send({'op': 'call', 'dest': dest, 'path': path, 'iface': iface,
                           'method': method, 'sig': sig, 'args': list(args),
                           'nfds': len(fds), 'timeout': timeout}, fds)

    def call(self, path, iface, method, sig='', args=(), fds=(), timeout=TIMEOUT, dest=BUS_NAME):
        return self.call_async(path, iface, method, sig, args, fds, timeout + 5,
                               dest).result(timeout)

    def manager(self, method, sig='', *args, timeout=TIMEOUT):
        return self.call(MANAGER_PATH, MANAGER, method, sig, args, timeout=timeout)

    def task(self, path, method, sig='', *args, timeout=TIMEOUT):
        return self.call(path, TASK, method, sig, args, timeout=timeout)

    def prop(self, path, name, iface=TASK):
        return self.call(path, PROPS, 'Get', 'ss', [iface, name])[0]

    def props(self, path, iface=TASK):
        return self.call(path, PROPS, 'GetAll', 's', [iface])[0]

    def register(self, name, trigger='device-use', entry_point='test', options=None):
        return self.manager('RegisterTask', 'sssa{sv}', name, trigger, entry_point,
                            options or {})[0]

    def get_tasks(self):
        return self.manager('GetTasks')[0]

    def request_async(self, task, device, estimate=0, arguments='', channel=None,
                      options=None, timeout=120):
        opts = dict(options or {})
        fds = []
        if channel is not None:
            opts['channel'] = ['h', 0]
            fds = [channel.give_fd()]
        p = self.call_async(task, TASK, 'Request', 'susa{sv}',
                            [device, estimate, arguments, opts], fds=fds, timeout=timeout)
        if channel is not None:
            channel.close_given()
        return p

    def request(self, task, device, estimate=0, arguments='', channel=None, options=None,
                timeout=TIMEOUT):
        return tuple(self.request_async(task, device, estimate, arguments, channel, options,
                                        timeout + 5).result(timeout))

    def take_events(self, task):
        return self.task(task, 'TakeEvents')[0]

    # -- consent agent ----------------------------------------------------
    def become_agent(self, mode='allow', path='/test/agent', register=True):
        self._send({'op': 'agent', 'path': path, 'mode': mode}).result()
        if register:
            self.manager('RegisterConsentAgent', 'o', path)

    def agent_mode(self, mode):
        self._send({'op': 'agent-mode', 'mode': mode}).result()

    def answer(self, allow):
        self._send({'op': 'answer', 'allow': allow}).result()

    def agent_calls(self, member='RequestConsent'):
        return [m['args'] for m in self.msgs if m['type'] == 'agent' and m['member'] == member]

    def wait_agent_call(self, member='RequestConsent', count=1, timeout=TIMEOUT):
        return self.hub.wait_for(
            lambda: len(self.agent_calls(member)) >= count and self.agent_calls(member),
            timeout, '%d %s call(s) on the consent agent of %s' % (count, member, self.label))

    # -- signals ----------------------------------------------------------
    def signals(self, member=None, path=None):
        return [m for m in self.msgs if m['type'] == 'signal' and
                (member is None or m['member'] == member) and
                (path is None or m['path'] == path)]

    def wait_signal(self, member, path=None, match=None, timeout=TIMEOUT):
        def pred():
            for s in self.signals(member, path):
                if match is None or match(s['args']):
                    return s
            return None
        return self.hub.wait_for(pred, timeout, 'signal %s on %s at %s (got %r)' % (
            member, path, self.label, [(s['member'], s['args']) for s in self.signals()]))

    def device_props(self, address):
        for path, p in self.manager('GetDevices')[0].items():
            if p['Address'] == address:
                return p
        return None

    def wait_present(self, address, present, timeout=TIMEOUT):
        """Waits until the agent's Device1.Present of address is present
        (re-checked on every signal, PropertiesChanged included)."""
        return self.hub.wait_for(
            lambda: (self.device_props(address) or {}).get('Present', False) == present,
            timeout, 'device %s Present=%s' % (address, present))

    def wait_state(self, task, state, timeout=TIMEOUT):
        return self.hub.wait_for(lambda: self.prop(task, 'State') == state, timeout,
                                 'task %s State=%s' % (task, state))

    # -- lifetime ---------------------------------------------------------
    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(TIMEOUT)
        self.hub.wait_for(lambda: self.exited, TIMEOUT, 'proxy reader of %s to end' % self.label)

    def close(self):
        if self.proc.poll() is None:
            try:
                self._send({'op': 'exit'})
                self.proc.wait(5)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self.ctl.close()


class Harness:
    def __init__(self, tmpdir, bindir, config=None, bgsyncd=None):
        self.tmp = tmpdir
        os.chmod(self.tmp, 0o755)
        self.bindir = bindir
        self.bgsyncd = bgsyncd or os.environ.get('BGSYNCD')
        self.hub = Hub()
        self.procs = []
        self.apps = []
        self.channels = []
        self.daemon = None
        self.daemon_expected = False
        self.daemon_log = os.path.join(self.tmp, 'bgsyncd.log')
        self.owners = {}
        self.uid = os.getuid()
        self.config = {k: dict(v) for k, v in DEFAULT_CONFIG.items()}
        for section, keys in (config or {}).items():
            self.config.setdefault(section, {}).update({k: str(v) for k, v in keys.items()})
        self.hub.checks.append(self._check_daemon)
        self.ctx = None
        self.bus = None

    # -- setup ------------------------------------------------------------
    def start(self, daemon=True):
        self._write_files()
        self._start_bus()
        self._start_mocks()
        self._setup_world()
        if daemon:
            self.start_daemon()

    def _write_files(self):
        for d in ('state', 'apps', 'devices'):
            os.makedirs(os.path.join(self.tmp, d), exist_ok=True)
        apps = {
            'a.conf': (APP_A, 'App A', 'app-a', 'test;', 'test;', 'test;'),
            'b.conf': (APP_B, 'App B', 'app-b', 'test;', 'test;', 'test;'),
            'c.conf': (APP_C, 'App C', 'app-c', 'test;', '', ''),
        }
        for fname, (aid, name, exe, use, serv, custom) in apps.items():
            with open(os.path.join(self.tmp, 'apps', fname), 'w') as f:
                f.write('[App]\nId=%s\nName=%s\nExecutable=%s\n' % (
                    aid, name, os.path.join(self.bindir, exe)))
                if use:
                    f.write('DeviceUseEntryPoints=%s\n' % use)
                if serv:
                    f.write('DeviceServicingEntryPoints=%s\n' % serv)
                if custom:
                    f.write('CustomEntryPoints=%s\n' % custom)
        with open(os.path.join(self.tmp, 'devices', 'watch.conf'), 'w') as f:
            f.write('[Model]\nId=test-watch\nName=Test Watch\nPrivilegedApps=%s;\n'
                    '[Match]\nName=TestWatch*\n' % APP_A)
        with open(os.path.join(self.tmp, 'devices', 'band.conf'), 'w') as f:
            f.write('[Model]\nId=other-band\nName=Other Band\nPrivilegedApps=%s;\n'
                    '[Match]\nName=OtherBand*\n' % APP_A)
        self.write_config()

    def write_config(self):
        self.conf_path = os.path.join(self.tmp, 'main.conf')
        general = {
            'StateDirectory': os.path.join(self.tmp, 'state'),
            'AppDirectories': os.path.join(self.tmp, 'apps'),
            'DeviceDirectories': os.path.join(self.tmp, 'devices'),
            'EnableTestProfile': 'true',
        }
        general.update(self.config.get('General', {}))
        with open(self.conf_path, 'w') as f:
            f.write('[General]\n')
            for k, v in general.items():
                f.write('%s=%s\n' % (k, v))
            for section, keys in self.config.items():
                if section == 'General':
                    continue
                f.write('\n[%s]\n' % section)
                for k, v in keys.items():
                    f.write('%s=%s\n' % (k, v))

    def _spawn(self, argv, log, **kw):
        logf = open(os.path.join(self.tmp, log), 'ab')
        p = subprocess.Popen(argv, env=self.env, stdout=logf, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, **kw)
        logf.close()
        self.procs.append(p)
        return p

    def _start_bus(self):
        sock = os.path.join(self.tmp, 'bus')
        conf = os.path.join(self.tmp, 'bus.conf')
        with open(conf, 'w') as f:
            f.write(BUS_CONF.format(socket=sock))
        r, w = os.pipe()
        p = subprocess.Popen(['dbus-daemon', '--config-file=' + conf, '--nofork', '--nosyslog',
                              '--print-address=%d' % w], pass_fds=[w],
                             stdin=subprocess.DEVNULL)
        os.close(w)
        self.procs.append(p)
        with os.fdopen(r) as rf:
            self.address = rf.readline().strip()  # blocks until it listens (or dies)
        if not self.address:
            raise AssertionError('dbus-daemon did not start')
        os.chmod(sock, 0o777)
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith('DBUS_') and k not in ('BGS_PROXY_FD',)}
        self.env['DBUS_SYSTEM_BUS_ADDRESS'] = self.address
        self.env['DBUS_SESSION_BUS_ADDRESS'] = self.address
        # criticals are not made fatal (one would hide every later check of a
        # test); the fixture fails a test whose agent log has any
        if os.environ.get('BGS_FATAL_CRITICALS') == '1':
            self.env['G_DEBUG'] = 'fatal-criticals'
        # the test's own connection; its signals are dispatched by a thread
        # (subscribe before the thread owns the context)
        self.ctx = GLib.MainContext()
        self.bus = bus_connect(self.address)
        self.ctx.push_thread_default()
        try:
            self.bus.signal_subscribe('org.freedesktop.DBus', 'org.freedesktop.DBus',
                                      'NameOwnerChanged', '/org/freedesktop/DBus', None,
                                      Gio.DBusSignalFlags.NONE, self._on_owner_changed)
        finally:
            self.ctx.pop_thread_default()
        self._ctx_running = True
        self._ctx_thread = threading.Thread(target=self._run_ctx, daemon=True)
        self._ctx_thread.start()

    def _run_ctx(self):
        while self._ctx_running:
            self.ctx.iteration(True)

    def _on_owner_changed(self, conn, sender, path, iface, member, params):
        name, _old, new = params.unpack()
        with self.hub.cond:
            self.owners[name] = new
            self.hub.cond.notify_all()

    def name_owner(self, name):
        try:
            return self.bus.call_sync('org.freedesktop.DBus', '/org/freedesktop/DBus',
                                      'org.freedesktop.DBus', 'GetNameOwner',
                                      GLib.Variant('(s)', (name,)), None,
                                      Gio.DBusCallFlags.NONE, 5000, None).unpack()[0]
        except GLib.Error:
            return ''

    def wait_owned(self, name, proc=None, timeout=TIMEOUT):
        def pred():
            if proc is not None and proc.poll() is not None:
                raise AssertionError('%s exited (%s) before owning %s' % (
                    proc.args[0], proc.returncode, name))
            return self.owners.get(name)
        # the signal may have gone by before subscribing: ask once
        with self.hub.cond:
            if not self.owners.get(name):
                owner = self.name_owner(name)
                if owner:
                    self.owners[name] = owner
        return self.hub.wait_for(pred, timeout, 'name %s on the bus' % name)

    def _start_mocks(self):
        mocks = [('logind', 'org.freedesktop.login1'), ('upower', 'org.freedesktop.UPower'),
                 ('bluez5', 'org.bluez')]
        procs = [(self._spawn([PYTHON, '-m', 'dbusmock', '--system', '--template', t],
                              'mock-%s.log' % t), name) for t, name in mocks]
        self.mocks = {t: p for (t, _), (p, _) in zip(mocks, procs)}
        # a process exit does not wake the hub, so watch each one
        for p, _ in procs:
            self._watch(p)
        for p, name in procs:
            self.wait_owned(name, p)

    def _watch(self, proc):
        def w():
            proc.wait()
            self.hub.notify()
        threading.Thread(target=w, daemon=True).start()

    def mock(self, dest, path, iface, method, sig='', *args):
        params = to_variant('(' + sig + ')', list(args))
        try:
            ret = self.bus.call_sync(dest, path, iface, method, params, None,
                                     Gio.DBusCallFlags.NONE, TIMEOUT * 1000, None)
        except GLib.Error as e:
            raise AssertionError('mock call %s.%s failed: %s' % (iface, method, e.message))
        return ret.unpack()

    # logind
    def add_session(self, sid, seat, uid, user, active=True):
        return self.mock('org.freedesktop.login1', '/org/freedesktop/login1', MOCK,
                         'AddSession', 'ssusb', sid, seat, uid, user, active)[0]

    def lock_session(self, sid, locked=True):
        self.mock('org.freedesktop.login1', '/org/freedesktop/login1/session/' + sid,
                  'org.freedesktop.login1.Session', 'SetLockedHint', 'b', locked)

    def set_session_active(self, sid, seat, active):
        spath = '/org/freedesktop/login1/session/' + sid
        self.mock('org.freedesktop.login1', spath, MOCK, 'UpdateProperties', 'sa{sv}',
                  'org.freedesktop.login1.Session',
                  {'Active': ['b', active], 'State': ['s', 'active' if active else 'online']})
        # (UpdateProperties cannot wrap a struct; Set can)
        self.mock('org.freedesktop.login1', '/org/freedesktop/login1/seat/' + seat, PROPS,
                  'Set', 'ssv', 'org.freedesktop.login1.Seat', 'ActiveSession',
                  ['(so)', [sid, spath] if active else ['', '/']])

    # upower
    def set_battery(self, percent, on_battery):
        up = 'org.freedesktop.UPower'
        if not getattr(self, '_battery', False):
            self.mock(up, '/org/freedesktop/UPower', MOCK, 'AddDischargingBattery', 'ssdx',
                      'mock_BAT', 'Mock Battery', float(percent), 3600)
            self._battery = True
        else:
            self.mock(up, '/org/freedesktop/UPower', MOCK, 'SetDeviceProperties', 'oa{sv}',
                      '/org/freedesktop/UPower/devices/mock_BAT',
                      {'Percentage': ['d', float(percent)], 'Energy': ['d', float(percent)],
                       'State': ['u', 2 if on_battery else 1]})
        # type battery, state discharging/charging, percentage, ... present
        self.mock(up, '/org/freedesktop/UPower', MOCK, 'SetupDisplayDevice', 'uuddddxxbsu',
                  2, 2 if on_battery else 1, float(percent), float(percent), 100.0, 10.0,
                  3600, 0, True, 'battery', 1)
        self.mock(up, '/org/freedesktop/UPower', PROPS, 'Set', 'ssv', up, 'OnBattery',
                  ['b', on_battery])

    # bluez
    def bluez(self, method, sig='', *args):
        return self.mock('org.bluez', '/org/bluez', 'org.bluez.Mock', method, sig, *args)

    def add_device(self, address, name, connected=True):
        self.bluez('AddDevice', 'sss', 'hci0', address, name)
        if connected:
            self.connect_device(address)

    def connect_device(self, address):
        self.bluez('ConnectDevice', 'ss', 'hci0', address)

    def disconnect_device(self, address):
        self.bluez('DisconnectDevice', 'ss', 'hci0', address)

    def block_device(self, address):
        self.bluez('BlockDevice', 'ss', 'hci0', address)

    def pair_device(self, address):
        self.bluez('PairDevice', 'ssi', 'hci0', address, 0x240404)

    def remove_device(self, address):
        self.mock('org.bluez', '/org/bluez/hci0', 'org.bluez.Adapter1', 'RemoveDevice', 'o',
                  '/org/bluez/hci0/dev_' + address.replace(':', '_'))

    def set_powered(self, powered):
        self.mock('org.bluez', '/org/bluez/hci0', PROPS, 'Set', 'ssv', 'org.bluez.Adapter1',
                  'Powered', ['b', powered])

    def _setup_world(self):
        # dbusmock 0.28's logind GetUser adds a str and a UInt32 (TypeError);
        # the agent asks it for the caller's uid, so replace it
        self.mock('org.freedesktop.login1', '/org/freedesktop/login1', MOCK, 'AddMethod',
                  'sssss', 'org.freedesktop.login1.Manager', 'GetUser', 'u', 'o',
                  'ret = "/org/freedesktop/login1/user/%d" % args[0]\n'
                  'if ret not in objects: raise dbus.exceptions.DBusException('
                  '"no user", name="org.freedesktop.login1.NoSuchUser")')
        self.add_session('c1', 'seat0', self.uid, pwd.getpwuid(self.uid).pw_name, True)
        self.bluez('AddAdapter', 'ss', 'hci0', 'bgsync-test-host')
        for address, name in DEVICES:
            self.add_device(address, name)

    # -- the agent under test --------------------------------------------
    def _check_daemon(self):
        d = self.daemon
        if d is not None and self.daemon_expected and d.poll() is not None:
            self.daemon_expected = False
            raise AssertionError('bgsyncd exited unexpectedly with status %s\n%s' % (
                d.returncode, self.log_tail()))

    def log_tail(self, n=60):
        try:
            with open(self.daemon_log, errors='replace') as f:
                lines = f.readlines()
        except OSError:
            return ''
        return '--- bgsyncd log (last %d lines) ---\n%s' % (n, ''.join(lines[-n:]))

    def log_criticals(self):
        """CRITICAL lines of the agent's log (programming errors)."""
        try:
            with open(self.daemon_log, errors='replace') as f:
                return [l.rstrip() for l in f if '-CRITICAL **' in l or 'ERROR **' in l]
        except OSError:
            return []

    def known_devices(self):
        """Addresses in the agent's GetDevices (asked by the test process,
        which needs no app manifest for it)."""
        try:
            ret = self.bus.call_sync(BUS_NAME, MANAGER_PATH, MANAGER, 'GetDevices', None, None,
                                     Gio.DBusCallFlags.NONE, TIMEOUT * 1000, None)
        except GLib.Error:
            return set()
        return {p['Address'] for p in ret.unpack()[0].values()}

    def start_daemon(self, wait_devices=True):
        """Starts the agent; ready when it owns org.bgsync and (unless
        wait_devices is false) lists the mock's devices. The agent answers
        before it has read BlueZ (see test_restart.py), so tests that are
        not about startup wait for it, re-asking at a 50 ms pace."""
        if not self.bgsyncd:
            raise AssertionError('BGSYNCD is not set')
        with self.hub.cond:
            self.owners.pop(BUS_NAME, None)
        with open(self.daemon_log, 'a') as f:
            f.write('=== start ===\n')
        self.daemon = self._spawn([self.bgsyncd, '--session', '--config', self.conf_path,
                                   '--verbose'], 'bgsyncd.log')
        self._watch(self.daemon)
        self.wait_owned(BUS_NAME, self.daemon)
        self.daemon_expected = True
        if wait_devices:
            want = {address for address, _ in DEVICES}
            deadline = time.monotonic() + TIMEOUT
            while not self.hub.within(lambda: want <= self.known_devices(), 0.05):
                if time.monotonic() > deadline:
                    raise AssertionError('bgsyncd did not list the BlueZ devices within %d s'
                                         % TIMEOUT)
        return self.daemon

    def stop_daemon(self, sig=signal.SIGTERM, timeout=TIMEOUT):
        """Stops the agent; returns its exit status."""
        self.daemon_expected = False
        d = self.daemon
        if d.poll() is None:
            d.send_signal(sig)
        self.hub.wait_for(lambda: d.poll() is not None, timeout, 'bgsyncd to exit')
        return d.returncode

    def app(self, exe='app-a', user=None, label=None):
        a = App(self, exe, user, label)
        self.apps.append(a)
        return a

    def channel(self):
        c = Channel(self.hub)
        self.channels.append(c)
        return c

    def wait_for(self, predicate, timeout=TIMEOUT, what='condition'):
        return self.hub.wait_for(predicate, timeout, what)

    def quiet_for(self, predicate, duration, what='condition'):
        return self.hub.quiet_for(predicate, duration, what)

    def within(self, predicate, duration):
        return self.hub.within(predicate, duration)

    # -- teardown ---------------------------------------------------------
    def stop(self):
        """Stops everything; returns the agent's exit status (None when it
        was not running)."""
        status = None
        if self.daemon is not None and self.daemon.poll() is None:
            try:
                status = self.stop_daemon()
            except AssertionError:
                self.daemon.kill()
                self.daemon.wait()
                status = 'hung on SIGTERM'
        for a in self.apps:
            try:
                a.close()
            except OSError:
                pass
        for c in self.channels:
            try:
                c.close()
            except OSError:
                pass
        for p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        if self.bus is not None:
            try:
                self.bus.close_sync(None)
            except GLib.Error:
                pass
        if self.ctx is not None:
            self._ctx_running = False
            self.ctx.wakeup()
            self._ctx_thread.join(5)
        return status


# -- helpers shared by the tests --------------------------------------------

def expect_error(name, fn, *args, **kw):
    """Calls fn and returns the DBusError; fails unless its name is name
    (or one of name when a tuple)."""
    names = name if isinstance(name, tuple) else (name,)
    try:
        ret = fn(*args, **kw)
    except DBusError as e:
        assert e.name in names, 'expected %s, got %s: %s' % (names, e.name, e.message)
        return e
    raise AssertionError('expected %s, got a reply: %r' % (names, ret))


def still_serving(app):
    """The agent answers a follow-up call (it survived what came before)."""
    assert isinstance(app.get_tasks(), dict)


def start_run(bg, app, task=None, device=WATCH1, trigger='device-use', estimate=0,
              name='sync'):
    """Registers (unless given) and requests a test-profile task; returns
    (task path, channel) once the entry point answers an echo."""
    if task is None:
        task = app.register(name, trigger)
    ch = bg.channel()
    r = app.request(task, device, estimate, channel=ch)
    assert r == ('allowed', ''), 'request of %s on %s: %r' % (task, device, r)
    ch.echo('started')
    return task, ch


def events_of(events, kind=None):
    return [e for e in events if kind is None or e[1] == kind]


def running_harness(request, tmp, bindir, bgsyncd=None):
    """The body of a pytest 'bg' fixture: a Harness in @tmp with the test's
    @pytest.mark.config, started, yielded, then stopped; a test fails if
    bgsyncd did not exit cleanly or logged criticals."""
    marker = request.node.get_closest_marker('config')
    config = marker.kwargs if marker else {}
    request.addfinalizer(lambda: os.environ.get('BGS_KEEP_TMP') == '1' or
                         shutil.rmtree(tmp, ignore_errors=True))
    kw = {'bgsyncd': bgsyncd} if bgsyncd is not None else {}
    h = Harness(tmp, bindir, config, **kw)
    try:
        h.start()
    except BaseException:
        h.stop()
        print(h.log_tail())
        raise
    yield h
    expected = h.daemon_expected
    status = h.stop()
    print(h.log_tail())
    if expected and status != 0:
        pytest.fail('bgsyncd did not exit cleanly on SIGTERM: status %s' % status)
    criticals = h.log_criticals()
    if criticals and os.environ.get('BGS_ALLOW_CRITICALS') != '1':
        pytest.fail('bgsyncd logged criticals:\n' + '\n'.join(criticals))
