# sim_api.py: the simulator's own checks (BlueZ API details and error names,
# org.bgsync.Sim1, bgsync-simctl, idleness), run by
# tests/scenarios/run.py --scenarios tests/sim/sim_api.py --backend sim

import json
import os
import subprocess

import dbus

import harness
from harness import (call, check, expect_error, wait_until, drain, ScenarioFailed,
                     ADAPTER, DEVICE, GATT_CHRC, PROPS)
import peripheral as P
from scenarios import Context, sim_device_desc, SIM_HR, SIM_CTRL

SCENARIOS = []


def scenario(needs=('sim-devices',)):
    def deco(fn):
        SCENARIOS.append((fn.__name__, tuple(needs), fn))
        return fn
    return deco


def add_and_connect(ctx, desc=None):
    b = ctx.backend
    addr = b.add_sim_device(desc or sim_device_desc())
    c = ctx.central
    c.start_discovery()
    c.wait_device(addr, 10)
    c.stop_discovery()
    c.connect(addr)
    return addr


@scenario()
def adapter_errors(ctx):
    a = ctx.central.adapter()
    expect_error(a.StopDiscovery, names=['org.bluez.Error.Failed'])
    call(a.StartDiscovery)
    expect_error(a.StartDiscovery, names=['org.bluez.Error.InProgress'])
    call(a.StopDiscovery)
    expect_error(a.RemoveDevice, dbus.ObjectPath(ctx.backend.central_adapter + '/dev_00_00_00_00_00_01'),
                 names=['org.bluez.Error.DoesNotExist'])
    expect_error(a.SetDiscoveryFilter, dbus.Dictionary({'Transport': 'radio'}, signature='sv'),
                 names=['org.bluez.Error.InvalidArguments'])
    expect_error(a.SetDiscoveryFilter, dbus.Dictionary({'Bogus': 1}, signature='sv'),
                 names=['org.bluez.Error.InvalidArguments'])
    props = ctx.central.props(ctx.backend.central_adapter)
    expect_error(props.Set, ADAPTER, 'Address', '00:11:22:33:44:55')
    filters = call(a.GetDiscoveryFilters)
    check('UUIDs' in filters and 'Transport' in filters, 'GetDiscoveryFilters')


@scenario()
def device_errors(ctx):
    b = ctx.backend
    c = ctx.central
    addr = b.add_sim_device(sim_device_desc())
    c.start_discovery()
    path = c.wait_device(addr, 10)
    c.stop_discovery()
    dev = c.iface(path, DEVICE)
    expect_error(dev.Disconnect, names=['org.bluez.Error.NotConnected'])
    c.connect(addr)
    hr = c.find_chrc(addr, SIM_HR)
    call(dev.Pair)
    wait_until(lambda: c.objs.prop(path, DEVICE, 'Paired') and c.objs.prop(path, DEVICE, 'Bonded'),
               5, 'Paired and Bonded')
    expect_error(dev.Pair, names=['org.bluez.Error.AlreadyExists'])
    expect_error(c.chrc(hr).AcquireWrite, dbus.Dictionary({}, signature='sv'),
                 names=['org.bluez.Error.NotSupported'])
    sock, mtu = c.acquire(hr, 'notify')
    expect_error(c.chrc(hr).StartNotify, names=['org.bluez.Error.NotPermitted'])
    expect_error(c.chrc(hr).AcquireNotify, dbus.Dictionary({}, signature='sv'),
                 names=['org.bluez.Error.NotPermitted'])
    sock.close()
    expect_error(c.chrc(hr).StopNotify, names=['org.bluez.Error.Failed'])
    expect_error(c.chrc(hr).WriteValue, dbus.ByteArray(b'x'), dbus.Dictionary({}, signature='sv'),
                 names=['org.bluez.Error.NotSupported'])
    ctrl = c.find_chrc(addr, SIM_CTRL)
    expect_error(c.chrc(ctrl).WriteValue, dbus.ByteArray(bytes(600)),
                 dbus.Dictionary({'type': 'request'}, signature='sv'),
                 names=['org.bluez.Error.InvalidValueLength'])
    expect_error(c.chrc(ctrl).WriteValue, dbus.ByteArray(b'x'),
                 dbus.Dictionary({'type': 'bogus'}, signature='sv'),
                 names=['org.bluez.Error.InvalidArguments', 'org.bluez.Error.NotSupported'])
    # gone link: operations fail cleanly, objects vanish
    call(dev.Disconnect)
    wait_until(lambda: c.objs.prop(path, DEVICE, 'Connected') is False, 5, 'disconnected')
    check(c.objs.children(path, GATT_CHRC), 'GATT objects cached after disconnect')
    expect_error(c.chrc(hr).ReadValue, dbus.Dictionary({}, signature='sv'),
                 names=['org.bluez.Error.Failed'])
    check(c.objs.prop(path, DEVICE, 'Paired'), 'paired device stays after disconnect')
    # unknown profile
    expect_error(dev.ConnectProfile, '0000abcd-0000-1000-8000-00805f9b34fb',
                 names=['org.bluez.Error.InvalidArguments', 'org.bluez.Error.NotConnected'],
                 timeout=15)


@scenario()
def connect_times_out_out_of_range(ctx):
    b = ctx.backend
    c = ctx.central
    addr = b.add_sim_device(sim_device_desc())
    c.start_discovery()
    path = c.wait_device(addr, 10)
    c.stop_discovery()
    call(b.sim.SetInRange, addr, False)
    call(b.sim.Configure, dbus.Dictionary({'connect-timeout-ms': dbus.UInt32(300)}, signature='sv'))
    name = expect_error(c.iface(path, DEVICE).Connect, names=['org.bluez.Error.Failed'])
    # a connect in progress completes when the device comes back
    call(b.sim.Configure, dbus.Dictionary({'connect-timeout-ms': dbus.UInt32(10000)}, signature='sv'))
    box = {}
    c.iface(path, DEVICE).Connect(reply_handler=lambda: box.setdefault('ok', 1),
                                  error_handler=lambda e: box.setdefault('e', e))
    expect_error(c.iface(path, DEVICE).Connect, names=['org.bluez.Error.InProgress'])
    call(b.sim.SetInRange, addr, True)
    wait_until(lambda: box, 5, 'pending Connect completes')
    check('ok' in box, 'Connect succeeded: %r' % box)


@scenario()
def temporary_devices_expire(ctx):
    b = ctx.backend
    c = ctx.central
    addr = b.add_sim_device(sim_device_desc())
    c.start_discovery()
    path = c.wait_device(addr, 10)
    c.stop_discovery()
    # temporary-timeout-ms is 2000 in the sim backend
    wait_until(lambda: path in c.objs.removed, 10, 'InterfacesRemoved of the temporary device')
    check(not c.objs.has(path), 'device gone')
    # a trusted one stays
    c.start_discovery()
    c.wait_device(addr, 10)
    call(c.props(path).Set, DEVICE, 'Trusted', dbus.Boolean(True))
    c.stop_discovery()
    drain(2.5)  # negative check: it must survive the timeout
    check(c.objs.has(path, DEVICE), 'trusted device kept')


@scenario()
def power_off_drops_everything(ctx):
    ctx.add_peer('power-peer')
    c = ctx.central
    ctx.discover_peer()
    c.stop_discovery()
    path = c.connect(ctx.peer.address)
    peer_props = dbus.Interface(ctx.bus.get_object('org.bluez', ctx.backend.peer_adapter), PROPS)
    call(peer_props.Set, ADAPTER, 'Powered', dbus.Boolean(False))
    wait_until(lambda: c.objs.prop(path, DEVICE, 'Connected') is False, 5, 'link drops on power off')
    # bluetoothd 5.66 keeps the registration (no Release) but the instance
    # is gone: the peripheral unregisters and registers it on power on
    check(c.objs.prop(ctx.backend.peer_adapter, 'org.bluez.LEAdvertisingManager1',
                      'ActiveInstances') == 1, 'advertisement still registered')
    call(peer_props.Set, ADAPTER, 'Powered', dbus.Boolean(True))
    ctx.rediscover()
    c.connect(ctx.peer.address)


@scenario()
def bad_applications_are_refused(ctx):
    import dbus.service

    class BadApp(dbus.service.Object):
        @dbus.service.method(harness.OM, out_signature='a{oa{sa{sv}}}')
        def GetManagedObjects(self):
            # a characteristic whose service does not exist
            return {dbus.ObjectPath('/bad/app/c0'): {GATT_CHRC: {
                'UUID': P.RX_UUID, 'Service': dbus.ObjectPath('/bad/app/nope'),
                'Flags': dbus.Array(['read'], signature='s')}}}
    BadApp(ctx.bus, '/bad/app')
    gm = dbus.Interface(ctx.bus.get_object('org.bluez', ctx.backend.peer_adapter),
                        'org.bluez.GattManager1')
    expect_error(gm.RegisterApplication, dbus.ObjectPath('/bad/app'),
                 dbus.Dictionary({}, signature='sv'), names=['org.bluez.Error.Failed'])
    expect_error(gm.RegisterApplication, dbus.ObjectPath('/no/such/app'),
                 dbus.Dictionary({}, signature='sv'), names=['org.bluez.Error.Failed'])
    expect_error(gm.UnregisterApplication, dbus.ObjectPath('/bad/app'),
                 names=['org.bluez.Error.DoesNotExist'])
    # an invalid monitor is released, not activated
    mgr = dbus.Interface(ctx.bus.get_object('org.bluez', ctx.backend.central_adapter),
                         'org.bluez.AdvertisementMonitorManager1')
    root = harness.MonitorRoot(ctx.bus, '/bad/monitors')
    mon = harness.Monitor(ctx.bus, '/bad/monitors/m0', {'Type': 'and_patterns',
                          'Patterns': dbus.Array([], signature='(yyay)')})
    root.monitors.append(mon)
    call(mgr.RegisterMonitor, root._object_path)
    wait_until(lambda: ('Release', None) in mon.events, 5, 'Release of an invalid monitor')
    check(('Activate', None) not in mon.events, 'not activated')
    expect_error(mgr.RegisterMonitor, root._object_path, names=['org.bluez.Error.AlreadyExists'])


@scenario()
def control_interface_validates(ctx):
    sim = ctx.backend.sim
    for bad in ({'address': 'nonsense'}, {'type': 'radio'},
                {'uuids': dbus.Array(['not-a-uuid'], signature='s')},
                {'services': dbus.Array([dbus.Dictionary({'uuid': 'x'}, signature='sv')],
                                        signature='a{sv}')},
                {'manufacturer-data': dbus.Array([1, 2], signature='i')}):
        expect_error(sim.AddDevice, dbus.Dictionary(bad, signature='sv'),
                     names=['org.bgsync.Sim.Error.InvalidArgs'])
    addr = ctx.backend.add_sim_device(sim_device_desc())
    expect_error(sim.AddDevice, dbus.Dictionary({'address': addr}, signature='sv'),
                 names=['org.bgsync.Sim.Error.Failed'])
    expect_error(sim.SetInRange, '11:22:33:44:55:66', True, names=['org.bgsync.Sim.Error.NotFound'])
    expect_error(sim.Reboot, addr, -1.0, '', '', names=['org.bgsync.Sim.Error.InvalidArgs'])
    expect_error(sim.GetValue, addr, '00009999-0000-1000-8000-00805f9b34fb',
                 names=['org.bgsync.Sim.Error.NotFound'])
    expect_error(sim.Configure, dbus.Dictionary({'bogus': dbus.UInt32(1)}, signature='sv'),
                 names=['org.bgsync.Sim.Error.InvalidArgs'])
    path = call(sim.AddAdapter, '', 'third')
    check(str(path) == '/org/bluez/hci2', 'third adapter is hci2 (%s)' % path)
    objs = ctx.central.objs
    wait_until(lambda: objs.has('/org/bluez/hci2', ADAPTER), 5, 'hci2 announced')
    call(sim.RemoveAdapter, path)
    wait_until(lambda: not objs.has('/org/bluez/hci2'), 5, 'hci2 removed')
    call(sim.RemoveDevice, addr)
    check(all(str(d['address']) != addr for d in call(sim.ListDevices)), 'device removed')


@scenario()
def simctl_cli(ctx):
    simctl = os.environ.get('BGSYNC_SIMCTL', 'bgsync-simctl')
    bus = ctx.backend.bus_address

    def run(*args):
        # simctl is synchronous; the simulator is another process, so a plain
        # subprocess call cannot deadlock with us
        return subprocess.run([simctl, '--bus', bus] + list(args), capture_output=True,
                              text=True, timeout=30)
    r = run('add-device', "{'name': <'cli-dev'>, 'services': <[{'uuid': <'%s'>, "
            "'characteristics': <[{'uuid': <'%s'>, 'flags': <['read','write']>, "
            "'value': <[byte 0x61, 0x62]>}]>}]>}" % (harness_svc(), SIM_CTRL))
    check(r.returncode == 0, 'add-device: %s' % r.stderr)
    addr = r.stdout.strip()
    r = run('--json', 'list')
    check(r.returncode == 0, 'list')
    devs = json.loads(r.stdout)
    check(any(d['address'] == addr and d['name'] == 'cli-dev' for d in devs), 'listed: %s' % devs)
    check(run('get-value', addr, SIM_CTRL).stdout.strip() == '6162', 'get-value hex')
    check(run('get-value', addr, '2a39').stdout.strip() == '6162', 'short UUIDs work too')
    check(run('set-value', addr, SIM_CTRL, '0102').returncode == 0, 'set-value')
    check(run('get-value', addr, SIM_CTRL).stdout.strip() == '0102', 'value set')
    check(run('in-range', addr, 'off').returncode == 0, 'in-range off')
    r = run('--json', 'list')
    check(any(d['address'] == addr and not d['in-range'] for d in json.loads(r.stdout)), 'out of range')
    r = run('rssi', addr, 'loud')
    check(r.returncode == 2, 'bad number is a usage error')
    r = run('stall', '11:22:33:44:55:66', 'on')
    check(r.returncode == 1 and 'no such device' in r.stderr, 'unknown device: %s' % r.stderr)
    r = run('--json', 'drop', '11:22:33:44:55:66')
    check(r.returncode == 1 and json.loads(r.stdout)['error']['name'] ==
          'org.bgsync.Sim.Error.NotFound', 'json error: %s' % r.stdout)
    r = run('bogus')
    check(r.returncode == 2, 'unknown command')
    r = run('reboot', addr, '0.2', '+1')
    check(r.returncode == 0 and r.stdout.strip() != addr, 'reboot prints the new address')
    check(run('configure', 'supervision-timeout-ms=100').returncode == 0, 'configure')


def harness_svc():
    return '0000180d-0000-1000-8000-00805f9b34fb'


def ctx_switches(pid):
    with open('/proc/%d/status' % pid) as f:
        for line in f:
            if line.startswith('voluntary_ctxt_switches'):
                return int(line.split()[1])
    return 0


@scenario()
def idle_means_asleep(ctx):
    # a connected, subscribed, discovering simulator with nothing happening
    # on the air does not wake up: no polling timers
    addr = add_and_connect(ctx)
    c = ctx.central
    call(c.chrc(c.find_chrc(addr, SIM_HR)).StartNotify)
    c.start_discovery()
    drain(0.3)
    sim_proc = [p for p in ctx.backend.procs if 'bgsync-sim' in ' '.join(p.args)][0]
    before = ctx_switches(sim_proc.pid)
    drain(1.5)   # negative check: measuring that nothing happens
    after = ctx_switches(sim_proc.pid)
    check(after - before <= 2, 'simulator woke up %d times while idle' % (after - before))


@scenario()
def mtu_negotiation(ctx):
    desc = sim_device_desc()
    desc['mtu'] = dbus.UInt16(185)
    desc['services'][0]['characteristics'][1]['flags'] = dbus.Array(
        ['write', 'write-without-response'], signature='s')
    addr = add_and_connect(ctx, desc)
    c = ctx.central
    hr = c.find_chrc(addr, SIM_HR)
    check(c.objs.prop(hr, GATT_CHRC, 'MTU') == 185, 'MTU is the smaller of both sides')
    sock, mtu = c.acquire(hr, 'notify')
    check(mtu == 185, 'AcquireNotify MTU %d' % mtu)
    call(ctx.backend.sim.Notify, addr, SIM_HR, dbus.ByteArray(bytes(range(250))))
    # (with MTU 517 the cap would be 512, an attribute value's maximum)
    pkt = harness.read_packets(sock, 1, 5, 'notification')[0]
    check(pkt == bytes(range(182)), 'notification cut to MTU-3 (%d bytes)' % len(pkt))
    ctrl = c.find_chrc(addr, SIM_CTRL)
    fd, mtu = call(c.chrc(ctrl).AcquireWrite, dbus.Dictionary({'mtu': dbus.UInt16(100)}, signature='sv'))
    check(mtu == 100, 'an mtu option lowers the acquired MTU (%d)' % mtu)
    fd2, mtu2 = None, None
    expect_error(c.chrc(ctrl).AcquireWrite, dbus.Dictionary({}, signature='sv'),
                 names=['org.bluez.Error.NotPermitted'])
    import socket as _s
    w = _s.socket(fileno=fd.take())
    w.send(b'\x07' * 97)
    wait_until(lambda: bytes(call(ctx.backend.sim.GetValue, addr, SIM_CTRL)) == b'\x07' * 97, 5,
               'acquired write stored')
    w.close()


@scenario()
def stall_past_att_timeout_drops_link(ctx):
    addr = add_and_connect(ctx)
    c = ctx.central
    path = c.device_path(addr)
    hr = c.find_chrc(addr, SIM_HR)
    sim = ctx.backend.sim
    call(sim.Configure, dbus.Dictionary({'att-timeout-ms': dbus.UInt32(400)}, signature='sv'))
    call(sim.Stall, addr, True)
    name = expect_error(c.chrc(hr).ReadValue, dbus.Dictionary({}, signature='sv'),
                        names=['org.bluez.Error.Failed'])
    wait_until(lambda: c.objs.prop(path, DEVICE, 'Connected') is False, 5,
               'the link ends after an ATT timeout')
    call(sim.Stall, addr, False)
    c.connect(addr)
    check(c.read(hr) == b'\x00\x48', 'read after reconnecting')


@scenario()
def attribute_value_cap(ctx):
    # MTU 517 allows 514-byte values, but an attribute value holds 512:
    # notifications are cut there; and bluetoothd 5.66's server refuses
    # written values over 510 (its length check counts the handle)
    addr = add_and_connect(ctx)
    c = ctx.central
    hr = c.find_chrc(addr, SIM_HR)
    sock, mtu = c.acquire(hr, 'notify')
    check(mtu == 517, 'MTU 517 (%d)' % mtu)
    call(ctx.backend.sim.Notify, addr, SIM_HR, dbus.ByteArray(bytes(600)))
    pkt = harness.read_packets(sock, 1, 5, 'notification')[0]
    check(len(pkt) == 512, 'notification cut to 512 (%d)' % len(pkt))
    ctrl = c.find_chrc(addr, SIM_CTRL)
    c.write(ctrl, b'\x01' * 510, 'command')
    c.write(ctrl, b'\x02' * 511, 'command')
    # a request after it, so the command had its turn on the link
    c.read(hr)
    check(bytes(call(ctx.backend.sim.GetValue, addr, SIM_CTRL)) == b'\x01' * 510,
          'a command over 510 bytes never reaches a 5.66 server')
