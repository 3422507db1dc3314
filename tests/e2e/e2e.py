# e2e.py: the whole stack on one private bus — bgsync-sim (BlueZ),
# bgsync-wearable (the device, a peripheral app on hci1), bgsyncd and a
# companion app process — for the end-to-end tests and the demo.
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'scenarios'))
import dbus  # noqa: E402
import backends  # noqa: E402
from harness import call, wait_until  # noqa: E402

APP_ID = 'org.bgsync.e2e'

MODEL = """[Model]
Id=e2e-wearable
Name=e2e wearable
PrivilegedApps=%(app)s;
[Match smp]
ServiceUUIDs=8d53dc1d-1db7-4cd3-868b-8a527460aa84;
[Presence]
FoundTimeout=1
LostTimeout=%(lost)d
[Reconnect]
AddressDelta=%(delta)d
SameName=true
"""


class Failure(Exception):
    pass


class Stack:
    def __init__(self, bindir=None, verbose=False):
        top = os.environ.get('BGS_BUILDDIR', bindir or '')
        self.bgsyncd = os.environ.get('BGSYNCD', os.path.join(top, 'agent/daemon/bgsyncd'))
        self.wearable_bin = os.environ.get('BGSYNC_WEARABLE', os.path.join(top, 'wearable/bgsync-wearable'))
        os.environ.setdefault('BGSYNC_SIM', os.path.join(top, 'sim/bgsync-sim'))
        self.tmp = tempfile.mkdtemp(prefix='bgs-e2e-')
        self.logdir = os.path.join(self.tmp, 'logs')
        os.makedirs(self.logdir)
        self.backend = backends.SimBackend(self.logdir)
        self.verbose = verbose
        self.procs = []
        self.daemon = None
        self.wearable = None
        self.address = None

    # ---- setup ----

    def start(self, wearable_args=(), config=None, address_delta=0, lost_timeout=5):
        self.backend.start()
        self.bus_address = self.backend.bus_address
        for d in ('apps', 'devices', 'state', 'wearable/files', 'bin', 'out'):
            os.makedirs(os.path.join(self.tmp, d), exist_ok=True)
        self.app_exe = os.path.join(self.tmp, 'bin', 'e2e-app')
        shutil.copy(os.path.realpath('/usr/bin/python3'), self.app_exe)
        with open(os.path.join(self.tmp, 'apps', 'e2e.conf'), 'w') as f:
            f.write('[App]\nId=%s\nName=Example Companion\nExecutable=%s\n'
                    'DeviceUseEntryPoints=smp-file-sync;\n'
                    'DeviceServicingEntryPoints=smp-firmware-update;\n' % (APP_ID, self.app_exe))
        with open(os.path.join(self.tmp, 'devices', 'wearable.conf'), 'w') as f:
            f.write(MODEL % {'app': APP_ID, 'delta': address_delta, 'lost': lost_timeout})
        conf = {'General': {'StateDirectory': os.path.join(self.tmp, 'state'),
                            'AppDirectories': os.path.join(self.tmp, 'apps'),
                            'DeviceDirectories': os.path.join(self.tmp, 'devices')},
                'Policy': {'ForegroundCheck': 'none'},
                'Consent': {'Timeout': '30'}}
        for group, keys in (config or {}).items():
            conf.setdefault(group, {}).update(keys)
        with open(os.path.join(self.tmp, 'main.conf'), 'w') as f:
            for group, keys in conf.items():
                f.write('[%s]\n' % group)
                for k, v in keys.items():
                    f.write('%s=%s\n' % (k, v))
        self.start_wearable(wearable_args)
        self.start_daemon()

    def env(self):
        return dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=self.bus_address,
                    DBUS_SESSION_BUS_ADDRESS=self.bus_address)

    def spawn(self, argv, name, stdout=None):
        log = open(os.path.join(self.logdir, name + '.log'), 'ab')
        p = subprocess.Popen(argv, env=self.env(), stdout=stdout or log, stderr=log)
        self.procs.append(p)
        return p

    def start_wearable(self, extra=()):
        argv = [self.wearable_bin, '--bus', self.bus_address, '--adapter', 'hci1',
                '--state-dir', os.path.join(self.tmp, 'wearable'), '--reboot-seconds', '1',
                '-v'] + list(extra)
        self.wearable = self.spawn(argv, 'wearable')
        # the wearable's advertisement makes it a device of hci1's peers
        self.address = self.backend.peer_adapter_address()

    def start_daemon(self):
        argv = [self.bgsyncd, '--session', '--config', os.path.join(self.tmp, 'main.conf'), '--verbose']
        self.daemon = self.spawn(argv, 'bgsyncd')
        wait_until(lambda: self.backend.bus.name_has_owner('org.bgsync'), 10, 'bgsyncd on the bus')

    def device_present(self, timeout=30):
        mgr = dbus.Interface(self.backend.bus.get_object('org.bgsync', '/org/bgsync'),
                             'org.bgsync.Manager1')

        def present():
            for path, props in call(mgr.GetDevices).items():
                if str(props['Address']).upper() == self.address.upper() and props['Present']:
                    return dict(props)
            return None
        return wait_until(present, timeout, 'the wearable to be present in bgsyncd')

    # ---- the app ----

    def run_app(self, *args):
        argv = [self.app_exe, os.path.join(HERE, 'app.py'), '--bus', self.bus_address,
                '--device', self.address] + list(args)
        return App(self.spawn(argv, 'app', stdout=subprocess.PIPE))

    # ---- faults ----

    def sim(self):
        return self.backend.sim

    def stop(self):
        for p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.backend.stop()

    def cleanup(self):
        if os.environ.get('BGS_KEEP_TMP') != '1':
            shutil.rmtree(self.tmp, ignore_errors=True)

    def log(self, name, tail=40):
        try:
            with open(os.path.join(self.logdir, name + '.log'), errors='replace') as f:
                return ''.join(f.readlines()[-tail:])
        except OSError:
            return ''


class App:
    """The app's JSON event lines, read with deadlines."""

    def __init__(self, proc):
        self.proc = proc
        self.events = []
        self.buf = b''

    def _read(self, timeout):
        r, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not r:
            return False
        chunk = os.read(self.proc.stdout.fileno(), 65536)
        if not chunk:
            return None
        self.buf += chunk
        while b'\n' in self.buf:
            line, self.buf = self.buf.split(b'\n', 1)
            if line.strip():
                self.events.append(json.loads(line))
        return True

    def wait(self, pred, timeout, what):
        deadline = time.monotonic() + timeout
        while True:
            for e in self.events:
                if pred(e):
                    return e
            left = deadline - time.monotonic()
            if left <= 0:
                raise Failure('timed out after %ds waiting for %s; events: %s' % (timeout, what, self.events[-8:]))
            if self._read(left) is None:
                for e in self.events:
                    if pred(e):
                        return e
                raise Failure('the app exited while waiting for %s; events: %s' % (what, self.events[-8:]))

    def wait_event(self, kind, timeout=60):
        return self.wait(lambda e: e['event'] == kind, timeout, kind)

    def wait_end(self, timeout=120):
        return self.wait(lambda e: e['event'] in ('completed', 'canceled', 'timeout', 'error') or
                         (e['event'] == 'request' and e['result'] != 'allowed'), timeout, 'the end')

    def of(self, kind):
        return [e for e in self.events if e['event'] == kind]
