# e2e.py: the whole stack — BlueZ, bgsync-wearable (the device, a
# peripheral app on hci1), bgsyncd and a companion app process — for the
# end-to-end tests and the demo.
#
# BGSYNC_E2E_BACKEND picks BlueZ:
#   sim (default)  bgsync-sim on a private bus (tests/scenarios SimBackend)
#   vm             inside the VM tier: the real bluetoothd 5.66 on the guest's
#                  system bus with two btvirt controllers (VmBackend); bgsyncd
#                  serves on that system bus as it would on a real machine
# A test that needs what a backend cannot do skips with its SKIP_REASONS text.
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'scenarios'))
import dbus  # noqa: E402
import backends  # noqa: E402
import harness  # noqa: E402
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


def poll_until(cond, timeout, what, every=0.2):
    """wait_until for state no signal announces (another process's
    properties): look again every @every s, give up after @timeout s"""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise harness.ScenarioFailed('timed out after %.1fs waiting for %s' % (timeout, what))
        harness.iterate(every)


BACKEND = os.environ.get('BGSYNC_E2E_BACKEND', 'sim')
VMCTL = os.path.join(HERE, '..', 'vm', 'vmctl.py')


class E2eSimBackend(backends.SimBackend):
    # the simulator forces the MTU and caps link rates (org.bgsync.Sim1)
    capabilities = backends.SimBackend.capabilities | {'mtu', 'link-rate', 'device-stall'}


class E2eVmBackend(backends.VmBackend):
    """VmBackend plus what the e2e tests can do in the VM beyond the scenario
    suite's primitives: restart bluetoothd (tests/vm/vmctl.py, as the faults
    group does) and stall the device's firmware (SIGSTOP of bgsync-wearable:
    the controllers keep the link up, nothing answers)."""
    capabilities = backends.VmBackend.capabilities | {'restart', 'device-stall'}
    SKIP_REASONS = dict(backends.VmBackend.SKIP_REASONS, **{
        'link-rate': 'btvirt cannot cap a link\'s throughput',
        'mtu': 'the ATT MTU is negotiated by the two bluetoothd; it cannot be forced to 23',
    })

    def restart_bluez(self):
        r = subprocess.run(['/usr/bin/python3', VMCTL, 'restart-bluetoothd'],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
        if r.returncode != 0:
            raise Failure('vmctl.py restart-bluetoothd: %s' % r.stdout.decode(errors='replace'))


def make_backend(logdir):
    if BACKEND == 'sim':
        return E2eSimBackend(logdir)
    if BACKEND == 'vm':
        return E2eVmBackend(logdir)
    raise Failure('BGSYNC_E2E_BACKEND=%s: want sim or vm' % BACKEND)


class Stack:
    def __init__(self, bindir=None, verbose=False, name=None):
        top = os.environ.get('BGS_BUILDDIR', bindir or '')
        self.bgsyncd = os.environ.get('BGSYNCD', os.path.join(top, 'agent/daemon/bgsyncd'))
        self.wearable_bin = os.environ.get('BGSYNC_WEARABLE', os.path.join(top, 'wearable/bgsync-wearable'))
        os.environ.setdefault('BGSYNC_SIM', os.path.join(top, 'sim/bgsync-sim'))
        self.tmp = tempfile.mkdtemp(prefix='bgs-e2e-')
        # BGSYNC_E2E_LOGDIR keeps the logs (the VM group's artifacts dir)
        keep = os.environ.get('BGSYNC_E2E_LOGDIR')
        if keep and name:
            self.logdir = os.path.join(keep, name)
            shutil.rmtree(self.logdir, ignore_errors=True)
        else:
            self.logdir = os.path.join(self.tmp, 'logs')
        os.makedirs(self.logdir)
        self.backend = make_backend(self.logdir)
        self.vm = self.backend.name == 'vm'
        self.verbose = verbose
        self.procs = []
        self.daemon = None
        self.wearable = None
        self.address = None

    # ---- setup ----

    def why_not(self, *needs):
        """None if the backend can do all of @needs, else its reason"""
        return self.backend.why_not(needs)

    def start(self, wearable_args=(), config=None, address_delta=0, lost_timeout=5,
              vm_config=None):
        """@vm_config: config on top of @config in the VM (limits that the
        emulated link under TCG needs longer)"""
        self.backend.start()
        self.bus_address = self.backend.bus_address or 'unix:path=/run/dbus/system_bus_socket'
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
        if self.vm:
            # hci1 is the wearable's own controller, not one of the agent's
            conf['General']['Adapters'] = 'hci0'
            # a stopping bluetoothd powers hci0 off and, under TCG, stayed
            # on the bus 2.3 s more: past the 1.5 s default the power-off
            # counted as the user's and revoked a servicing update
            conf['Links'] = {'PowerOffGrace': '5'}
        for group, keys in (config or {}).items():
            conf.setdefault(group, {}).update(keys)
        for group, keys in ((vm_config or {}) if self.vm else {}).items():
            conf.setdefault(group, {}).update(keys)
        with open(os.path.join(self.tmp, 'main.conf'), 'w') as f:
            for group, keys in conf.items():
                f.write('[%s]\n' % group)
                for k, v in keys.items():
                    f.write('%s=%s\n' % (k, v))
        if self.vm and os.environ.get('BGSYNC_E2E_DBUS_MONITOR') == '1':
            # every message from bluetoothd, for a test under investigation
            self.spawn(['dbus-monitor', '--address', self.bus_address, "sender='org.bluez'",
                        "destination='org.bluez'"],
                       'dbus-monitor')
        self.start_wearable(wearable_args)
        self.start_daemon()

    def env(self):
        return dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=self.bus_address,
                    DBUS_SESSION_BUS_ADDRESS=self.bus_address)

    def spawn(self, argv, name, stdout=None, stdin=None, env=None):
        log = open(os.path.join(self.logdir, name + '.log'), 'ab')
        p = subprocess.Popen(argv, env=dict(self.env(), **(env or {})), stdout=stdout or log,
                             stderr=log, stdin=stdin)
        self.procs.append(p)
        return p

    def start_wearable(self, extra=()):
        self.wearable_args = list(extra)
        argv = [self.wearable_bin, '--bus', self.bus_address, '--adapter', 'hci1',
                '--state-dir', os.path.join(self.tmp, 'wearable'), '--reboot-seconds', '1',
                '-v'] + list(extra)
        self.wearable = self.spawn(argv, 'wearable')
        # the wearable's advertisement makes it a device of hci1's peers
        self.address = self.backend.peer_adapter_address()
        if self.vm:
            self.wait_advertising()

    def wait_advertising(self, timeout=20):
        props = dbus.Interface(self.backend.bus.get_object('org.bluez', self.backend.peer_adapter),
                               'org.freedesktop.DBus.Properties')
        w = self.wearable

        def advertising():
            if w.poll() is not None:
                raise Failure('bgsync-wearable exited %s (see %s)' % (w.returncode, self.logdir))
            return call(props.Get, 'org.bluez.LEAdvertisingManager1', 'ActiveInstances') > 0
        poll_until(advertising, timeout, 'bgsync-wearable advertising on hci1')

    def restart_wearable(self):
        """the device is switched off and on again (its flash kept): in the
        VM its advertising enable is what makes btvirt send the one
        advertising report a scan gets"""
        w = self.wearable
        if w is not None and w.poll() is None:
            w.terminate()
            try:
                w.wait(10)
            except subprocess.TimeoutExpired:
                w.kill()
                w.wait()
        if w in self.procs:
            self.procs.remove(w)
        self.start_wearable(self.wearable_args)

    def start_daemon(self):
        # in the VM bgsyncd serves on the system bus, as installed
        argv = [self.bgsyncd] + ([] if self.vm else ['--session']) + \
            ['--config', os.path.join(self.tmp, 'main.conf'), '--verbose']
        # the VM's logs are the evidence of what the real daemon did: all of it
        self.daemon = self.spawn(argv, 'bgsyncd', env={'G_MESSAGES_DEBUG': 'all'} if self.vm else None)
        wait_until(lambda: self.backend.bus.name_has_owner('org.bgsync'), 10, 'bgsyncd on the bus')

    def manager(self):
        return dbus.Interface(self.backend.bus.get_object('org.bgsync', '/org/bgsync'),
                              'org.bgsync.Manager1')

    def agent_device(self, address=None):
        address = (address or self.address).upper()
        for path, props in call(self.manager().GetDevices).items():
            if str(props['Address']).upper() == address:
                return dict(props)
        return None

    def device_present(self, timeout=30):
        def present():
            d = self.agent_device()
            return d if d is not None and d['Present'] else None
        return wait_until(present, timeout, 'the wearable to be present in bgsyncd')

    def scanning(self):
        props = dbus.Interface(self.backend.bus.get_object('org.bgsync', '/org/bgsync'),
                               'org.freedesktop.DBus.Properties')
        return bool(call(props.Get, 'org.bgsync.Manager1', 'Scanning'))

    def central_discovering(self):
        props = dbus.Interface(self.backend.bus.get_object('org.bluez', self.backend.central_adapter),
                               'org.freedesktop.DBus.Properties')
        return bool(call(props.Get, 'org.bluez.Adapter1', 'Discovering'))

    def announce(self, timeout=30, scanning=None):
        """VM only: make the wearable seen, as its continuous advertising
        would be by a real controller. btvirt sends one advertising report
        per advertising enable, and only a scan already running keeps it;
        and bluetoothd's AdvertisementMonitor needs the RSSI above its
        threshold over FoundTimeout, i.e. two reports, 1 s apart, no more:
        a lottery here. So once bgsyncd scans (an app registered a device
        task; or @scanning() says so) a discovery of the test's own runs on
        hci0 (like any other client's: bgsyncd takes the RSSI bluetoothd
        reports as a sighting), and the wearable is switched off and on so
        its advertising starts while both look. Returns a function ending
        that discovery (None if none was started)."""
        if not self.vm:
            return None
        poll_until(scanning or self.scanning, timeout, 'the central to scan')
        if scanning is not None:
            self.restart_wearable()
            return None

        def present():
            d = self.agent_device()
            return d is not None and d['Present']
        if present():
            return None
        adapter = dbus.Interface(self.backend.bus.get_object('org.bluez', self.backend.central_adapter),
                                 'org.bluez.Adapter1')
        call(adapter.SetDiscoveryFilter, dbus.Dictionary({'Transport': 'le'}, signature='sv'))
        call(adapter.StartDiscovery)

        def stop():
            try:
                call(adapter.StopDiscovery)
            except dbus.exceptions.DBusException:
                pass
        try:
            poll_until(self.central_discovering, 10, 'hci0 discovering')
            # the scan enable's own report is sometimes kept: then no restart
            for attempt in range(3):
                try:
                    poll_until(present, 3 if attempt == 0 else 10, 'the wearable present in bgsyncd')
                    return stop
                except harness.ScenarioFailed:
                    self.restart_wearable()
            poll_until(present, 10, 'the wearable present in bgsyncd (after 2 restarts)')
        except BaseException:
            stop()
            raise
        return stop

    # ---- the app ----

    def run_app(self, *args, announce=True):
        gate = self.vm and announce and '--unregister' not in args
        argv = [self.app_exe, os.path.join(HERE, 'app.py'), '--bus', self.bus_address,
                '--device', self.address] + (['--gate'] if gate else []) + list(args)
        app = App(self.spawn(argv, 'app', stdout=subprocess.PIPE,
                             stdin=subprocess.PIPE if gate else None),
                  os.path.join(self.logdir, 'app-events.log'))
        if not gate:
            return app
        # VM: the task is registered (the agent scans); the device is made
        # seen before the app asks, so no restart of it races a running task
        app.wait_event('registered', 30)
        stop = self.announce()
        app.proc.stdin.write(b'go\n')
        app.proc.stdin.flush()
        if stop is not None:
            # seen until the agent has decided on the request
            try:
                app.wait(lambda e: e['event'] in ('request', 'error', 'timeout'), 60,
                         'the request decided')
            finally:
                stop()
        return app

    # ---- faults (backend-neutral; tests skip with why_not() first) ----

    def sim(self):
        return self.backend.sim

    def stall(self, on=True):
        """the device stops answering, its link stays up"""
        if self.vm:
            # the firmware hangs: bluetoothd and btvirt keep the link
            self.wearable.send_signal(signal.SIGSTOP if on else signal.SIGCONT)
        else:
            call(self.sim().Stall, self.address, dbus.Boolean(on))

    def set_in_range(self, on):
        if self.vm:
            # the peer's controller goes quiet: the central's link drops
            self.backend.set_in_range(None, on)
        else:
            call(self.sim().SetInRange, self.address, dbus.Boolean(on))

    def drop_link(self):
        """the link drops (a peer-side disconnect in the VM: HCI Disconnect
        from hci1), the device stays in range"""
        if self.vm:
            self.backend.drop_link(None)
        else:
            call(self.sim().DropLink, self.address)

    def restart_bluez(self):
        if self.vm:
            self.backend.restart_bluez()
        else:
            call(self.sim().RestartBluez)

    def stop(self):
        if self.wearable is not None and self.wearable.poll() is None:
            self.wearable.send_signal(signal.SIGCONT)
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

    def __init__(self, proc, log=None):
        self.proc = proc
        self.events = []
        self.buf = b''
        # the events as the app printed them, kept with the other logs
        self.log = open(log, 'ab') if log else None

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
            if self.log is not None:
                self.log.write(line + b'\n')
                self.log.flush()
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
