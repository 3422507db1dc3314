# backends.py: where the scenarios run. Both give a bus with org.bluez, a
# central adapter (hci0) and a peer that is a peripheral app on hci1.
#
#   sim  private dbus-daemon + bgsync-sim; faults through org.bgsync.Sim1
#   vm   inside the VM tier: real bluetoothd on the system bus with two
#        btvirt controllers; faults through what the emulator can do
#
# A scenario names the capabilities it needs; a backend without one skips
# it with the reason given in SKIP_REASONS.

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import dbus

import harness
from harness import call, wait_until, ScenarioFailed

HERE = os.path.dirname(os.path.abspath(__file__))

DBUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>custom</type>
  <listen>unix:path=%s</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
    <allow user="*"/>
  </policy>
  <limit name="max_connections_per_user">10000</limit>
  <limit name="max_incoming_bytes">1000000000</limit>
  <limit name="max_outgoing_bytes">1000000000</limit>
  <limit name="max_message_size">100000000</limit>
  <limit name="max_replies_per_connection">50000</limit>
  <limit name="max_match_rules_per_connection">50000</limit>
  <limit name="max_names_per_connection">50000</limit>
  <limit name="reply_timeout">300000</limit>
</busconfig>
"""


class Peer:
    def __init__(self, backend, address, name, proc, control_name):
        self.backend = backend
        self.address = address
        self.name = name
        self.proc = proc
        self.control_name = control_name

    def control(self):
        if self.control_name and getattr(self, '_watched', None) != self.control_name:
            # wake bounded waits on Received/Stats when the peer has news
            self.backend.bus.add_signal_receiver(
                lambda *a: None, 'Activity', 'org.bgsync.TestPeer1', self.control_name)
            self._watched = self.control_name
        obj = self.backend.bus.get_object(self.control_name, '/org/bgsync/testpeer')
        return dbus.Interface(obj, 'org.bgsync.TestPeer1')


class Backend:
    name = 'none'
    capabilities = set()
    SKIP_REASONS = {}
    central_adapter = '/org/bluez/hci0'
    peer_adapter = '/org/bluez/hci1'

    def __init__(self, logdir):
        self.logdir = logdir
        self.bus = None
        self.peers = []
        self.procs = []

    def why_not(self, needs):
        for n in needs:
            if n not in self.capabilities:
                return self.SKIP_REASONS.get(n, '%s backend cannot do "%s"' % (self.name, n))
        return None

    def spawn(self, argv, logname, env=None, stdout=None):
        log = open(os.path.join(self.logdir, logname), 'ab')
        p = subprocess.Popen(argv, stdout=stdout if stdout is not None else log,
                             stderr=log, env=env)
        self.procs.append(p)
        return p

    def _read_ready(self, proc, timeout, what):
        """The peripheral prints READY <name>; wait for it, bounded."""
        line = []
        from gi.repository import GLib
        fd = proc.stdout.fileno()
        os.set_blocking(fd, False)
        buf = bytearray()

        def readable(_fd, cond):
            try:
                chunk = os.read(fd, 4096)
            except BlockingIOError:
                return True
            if not chunk:
                line.append(None)
                return False
            buf.extend(chunk)
            if b'\n' in buf:
                line.append(bytes(buf.split(b'\n')[0]).decode())
                return False
            return True
        src = GLib.io_add_watch(fd, GLib.IO_IN | GLib.IO_HUP, readable)
        try:
            wait_until(lambda: line, timeout, what)
        finally:
            if not line:
                GLib.source_remove(src)
        if line[0] is None or not line[0].startswith('READY '):
            raise ScenarioFailed('%s: peripheral exited (see %s)' % (what, self.logdir))
        return line[0].split()[1]

    def start_peripheral(self, name, env=None):
        argv = [sys.executable, os.path.join(HERE, 'peripheral.py'),
                '--adapter', self.peer_adapter, '--name', name]
        if self.bus_address:
            argv += ['--bus', self.bus_address]
        p = self.spawn(argv, 'peripheral-%s.log' % name, env=env, stdout=subprocess.PIPE)
        return p, self._read_ready(p, 20, 'peripheral %s ready' % name)

    def add_wearable(self, name='bgsync-wearable'):
        """The C virtual wearable as the peer (no test control interface):
        ready once its advertisement is registered on the peer adapter."""
        binary = os.environ.get('BGSYNC_WEARABLE')
        if not binary or not os.access(binary, os.X_OK):
            raise harness.Skip('bgsync-wearable not built (set BGSYNC_WEARABLE)')
        state = os.path.join(self.logdir, 'wearable-state')
        os.makedirs(state, exist_ok=True)
        argv = [binary, '--adapter', self.peer_adapter.rsplit('/', 1)[-1],
                '--state-dir', state, '--name', name, '-v']
        if self.bus_address:
            argv += ['--bus', self.bus_address]
        proc = self.spawn(argv, 'wearable.log')
        props = dbus.Interface(self.bus.get_object('org.bluez', self.peer_adapter),
                               'org.freedesktop.DBus.Properties')

        def advertising():
            if proc.poll() is not None:
                raise ScenarioFailed('bgsync-wearable exited (see %s)' % self.logdir)
            return call(props.Get, 'org.bluez.LEAdvertisingManager1', 'ActiveInstances') > 0
        wait_until(advertising, 20, 'bgsync-wearable advertising')
        peer = Peer(self, self.peer_adapter_address(), name, proc, None)
        self.peers.append(peer)
        return peer

    def peer_adapter_address(self):
        props = dbus.Interface(self.bus.get_object('org.bluez', self.peer_adapter),
                               'org.freedesktop.DBus.Properties')
        return str(call(props.Get, 'org.bluez.Adapter1', 'Address'))

    def add_peer(self, name='bgsync-peer'):
        proc, control = self.start_peripheral(name)
        peer = Peer(self, self.peer_adapter_address(), name, proc, control)
        self.peers.append(peer)
        return peer

    def stop(self):
        for p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 5
        for p in reversed(self.procs):
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.procs = []
        if self.bus is not None:
            self.bus.close()
            self.bus = None


class SimBackend(Backend):
    name = 'sim'
    capabilities = {'rssi', 'adv-lost', 'range', 'stall', 'address-change', 'rfcomm',
                    'restart', 'sim-devices', 'scale', 'monitor', 'wearable'}

    def __init__(self, logdir):
        super().__init__(logdir)
        self.sim_bin = os.environ.get('BGSYNC_SIM', 'bgsync-sim')
        self.tmp = tempfile.mkdtemp(prefix='bgs-scenario-')
        self.bus_address = None

    def start(self):
        sock = os.path.join(self.tmp, 'bus')
        conf = os.path.join(self.tmp, 'bus.conf')
        with open(conf, 'w') as f:
            f.write(DBUS_CONFIG % sock)
        daemon = self.spawn(['dbus-daemon', '--config-file', conf, '--nofork',
                             '--print-address'], 'dbus-daemon.log', stdout=subprocess.PIPE)
        line = daemon.stdout.readline().decode().strip()
        if not line:
            raise ScenarioFailed('dbus-daemon did not start')
        self.bus_address = line
        self.bus = dbus.bus.BusConnection(self.bus_address)
        self.spawn([self.sim_bin, '--bus', self.bus_address, '--adapters', '2', '-v'],
                   'bgsync-sim.log')
        wait_until(lambda: self.bus.name_has_owner('org.bgsync.Sim') and
                   self.bus.name_has_owner('org.bluez'), 10, 'bgsync-sim on the bus')
        self.sim = dbus.Interface(self.bus.get_object('org.bgsync.Sim', '/org/bgsync/sim'),
                                  'org.bgsync.Sim1')
        # short policy timeouts: tests wait on events, never on the clock
        call(self.sim.Configure, dbus.Dictionary({
            'supervision-timeout-ms': dbus.UInt32(500),
            'connect-timeout-ms': dbus.UInt32(3000),
            'temporary-timeout-ms': dbus.UInt32(2000),
            'restart-delay-ms': dbus.UInt32(300)}, signature='sv'))

    def stop(self):
        super().stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    # ---- faults ----

    def set_in_range(self, peer, in_range):
        call(self.sim.SetInRange, peer.address, dbus.Boolean(in_range))

    def set_rssi(self, peer, rssi):
        call(self.sim.SetRSSI, peer.address, dbus.Int16(rssi))

    def stall(self, peer, on):
        call(self.sim.Stall, peer.address, dbus.Boolean(on))

    def drop_link(self, peer):
        call(self.sim.DropLink, peer.address)

    def reboot_peer(self, peer, seconds, new_address=False):
        after = call(self.sim.Reboot, peer.address, dbus.Double(seconds),
                     '+1' if new_address else '', '')
        peer.address = str(after)
        return peer.address

    def restart_bluez(self):
        call(self.sim.RestartBluez)

    def prepare_bredr(self, peer):
        pass

    def add_sim_device(self, desc):
        return str(call(self.sim.AddDevice, dbus.Dictionary(desc, signature='sv')))


class VmBackend(Backend):
    """Runs inside the VM tier's guest: bluetoothd (started -E) owns
    org.bluez on the system bus, hci0 and hci1 are btvirt controllers."""
    name = 'vm'
    capabilities = {'range', 'rfcomm', 'monitor', 'wearable', 'restart'}
    SKIP_REASONS = {
        'rssi': 'btvirt reports LE RSSI as 127 always',
        'adv-lost': 'the emulator sends one advertising report per scan enable: '
                    'advertisement-based loss cannot be observed',
        'stall': 'no way to stall an emulated link without dropping it',
        'address-change': 'btvirt controllers have fixed public addresses',
        'sim-devices': 'devices described to bgsync-sim only exist in the simulator',
        'scale': 'two emulated controllers cannot hold 1,000 devices',
    }

    def __init__(self, logdir):
        super().__init__(logdir)
        self.bus_address = os.environ.get('DBUS_SYSTEM_BUS_ADDRESS')

    def start(self):
        self.bus = dbus.bus.BusConnection(self.bus_address) if self.bus_address else dbus.SystemBus()
        wait_until(lambda: self.bus.name_has_owner('org.bluez'), 20, 'bluetoothd on the bus')
        for a in (self.central_adapter, self.peer_adapter):
            props = dbus.Interface(self.bus.get_object('org.bluez', a),
                                   'org.freedesktop.DBus.Properties')
            call(props.Set, 'org.bluez.Adapter1', 'Powered', dbus.Boolean(True))
        # one bluetoothd serves the whole group of scenarios: start each
        # from a clean slate (no links, no devices, no pairings)
        om = dbus.Interface(self.bus.get_object('org.bluez', '/'),
                            'org.freedesktop.DBus.ObjectManager')
        for path, ifaces in call(om.GetManagedObjects).items():
            if 'org.bluez.Device1' not in ifaces:
                continue
            adapter = str(ifaces['org.bluez.Device1']['Adapter'])
            try:
                call(dbus.Interface(self.bus.get_object('org.bluez', adapter),
                                    'org.bluez.Adapter1').RemoveDevice, path)
            except dbus.exceptions.DBusException:
                pass


    def stop(self):
        # leave the shared bluetoothd as the next scenario expects it: the
        # peer controller powered, not discoverable
        try:
            if self.bus is not None:
                props = self._peer_props()
                call(props.Set, 'org.bluez.Adapter1', 'Powered', dbus.Boolean(True), timeout=10)
                call(props.Set, 'org.bluez.Adapter1', 'Discoverable', dbus.Boolean(False), timeout=10)
        except dbus.exceptions.DBusException:
            pass
        super().stop()

    def prepare_bredr(self, peer):
        # RFCOMM needs the peer connectable over BR/EDR (adapters are not by
        # default); only for that: a discoverable dual-mode peer makes
        # Device1.Connect pick BR/EDR, where there is no GATT
        props = self._peer_props()
        call(props.Set, 'org.bluez.Adapter1', 'DiscoverableTimeout', dbus.UInt32(0))
        call(props.Set, 'org.bluez.Adapter1', 'Discoverable', dbus.Boolean(True))

    def _peer_props(self):
        return dbus.Interface(self.bus.get_object('org.bluez', self.peer_adapter),
                              'org.freedesktop.DBus.Properties')

    def set_in_range(self, peer, in_range):
        # the closest the emulator gets: the peer's controller goes quiet
        # (the link drops with a supervision timeout on the central) and
        # comes back (the peripheral re-registers its advert on power on)
        call(self._peer_props().Set, 'org.bluez.Adapter1', 'Powered', dbus.Boolean(in_range))

    def drop_link(self, peer):
        # HCI Disconnect from the peer's side
        central_addr = str(call(dbus.Interface(
            self.bus.get_object('org.bluez', self.central_adapter),
            'org.freedesktop.DBus.Properties').Get, 'org.bluez.Adapter1', 'Address'))
        path = harness.addr_path(self.peer_adapter, central_addr)
        call(dbus.Interface(self.bus.get_object('org.bluez', path), 'org.bluez.Device1').Disconnect)

    def restart_bluez(self):
        # vmctl.py stops bluetoothd, starts it again with the same command
        # line and a fresh state, and waits (bounded) until both adapters
        # are powered and connectable again
        vmctl = os.path.join(HERE, '..', 'vm', 'vmctl.py')
        with open(os.path.join(self.logdir, 'vmctl.log'), 'ab') as log:
            try:
                rc = subprocess.run([sys.executable, vmctl, 'restart-bluetoothd', '--clear'],
                                    stdout=log, stderr=log, timeout=120).returncode
            except subprocess.TimeoutExpired:
                rc = -1
        if rc != 0:
            raise ScenarioFailed('vmctl.py restart-bluetoothd failed (%s, see %s)' % (rc, self.logdir))

    def reboot_peer(self, peer, seconds, new_address=False):
        if new_address:
            raise harness.Skip(self.SKIP_REASONS['address-change'])
        # the device's firmware restarts: its app goes, the radio goes quiet
        peer.proc.send_signal(signal.SIGTERM)
        peer.proc.wait(5)
        self.set_in_range(peer, False)
        harness.drain(seconds)   # the reboot's length is the scenario's input
        self.set_in_range(peer, True)
        proc, control = self.start_peripheral(peer.name)
        peer.proc = proc
        peer.control_name = control
        return peer.address


BACKENDS = {'sim': SimBackend, 'vm': VmBackend}
