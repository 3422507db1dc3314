# A hostile org.bluez: objects and signals with wrong variant types, missing
# and absurd properties, garbage InterfacesAdded/PropertiesChanged. BlueZ is
# python3-dbusmock's bluez5 template; the garbage goes in through its Mock
# interface (AddObject, AddProperties, EmitSignal) with raw D-Bus types.
#
# Every test ends with the agent alive and serving (the fixture also fails a
# test whose agent logged a CRITICAL, or did not exit 0 on SIGTERM).
import pytest

from it_harness import (BAND3, DEVICES, MOCK, PROPS, WATCH1, WATCH2, start_run, still_serving)

OM = 'org.freedesktop.DBus.ObjectManager'
DEVICE1 = 'org.bluez.Device1'
ADAPTER1 = 'org.bluez.Adapter1'
HCI0 = '/org/bluez/hci0'
KNOWN = {address for address, _ in DEVICES}


def dev_path(address):
    return HCI0 + '/dev_' + address.replace(':', '_')


def add_object(bg, path, iface, props, announce=True):
    """A BlueZ object with exactly these properties ({name: [sig, value]}),
    announced with InterfacesAdded unless announce is false."""
    bg.mock('org.bluez', '/', MOCK, 'AddObject', 'ssa{sv}a(ssss)', path, iface, props, [])
    if announce:
        interfaces_added(bg, path, {iface: props})


def interfaces_added(bg, path, ifaces, sig='oa{sa{sv}}'):
    args = [['o', path], ['a{sa{sv}}', ifaces]] if sig == 'oa{sa{sv}}' else ifaces
    bg.mock('org.bluez', '/', MOCK, 'EmitSignal', 'sssav', OM, 'InterfacesAdded', sig, args)


def props_changed(bg, path, iface, changed, invalidated=()):
    bg.mock('org.bluez', path, MOCK, 'EmitSignal', 'sssav', PROPS, 'PropertiesChanged',
            'sa{sv}as', [['s', iface], ['a{sv}', changed], ['as', list(invalidated)]])


def devices(bg):
    """The agent's GetDevices, by address (asked by the test's connection)."""
    from gi.repository import Gio
    ret = bg.bus.call_sync('org.bgsync', '/org/bgsync', 'org.bgsync.Manager1', 'GetDevices',
                           None, None, Gio.DBusCallFlags.NONE, 20000, None).unpack()[0]
    return {p['Address']: p for p in ret.values()}


def log_has(bg, text):
    with open(bg.daemon_log, errors='replace') as f:
        return text in f.read()


def wait_log(bg, text, what=None):
    """Waits (bounded) for a line in the agent's log; the log is flushed per
    line and every poll is paced by the hub, so this is not a sleep."""
    deadline = 20
    import time
    end = time.monotonic() + deadline
    while not log_has(bg, text):
        if time.monotonic() > end:
            raise AssertionError('timed out waiting for %r in the agent log\n%s' % (
                what or text, bg.log_tail()))
        bg.within(lambda: False, 0.05)


def sync_point(bg, address):
    """An object the agent must pick up after everything sent before it (one
    sender, one bus: order is kept), so a check that garbage was ignored
    follows the garbage instead of racing it."""
    add_object(bg, dev_path(address), DEVICE1, {
        'Address': ['s', address], 'Name': ['s', 'Marker'], 'Adapter': ['o', HCI0],
        'Connected': ['b', False]})
    bg.wait_for(lambda: address in devices(bg), what='marker device %s' % address)


GOOD = {'Address': ['s', 'AA:BB:CC:DD:EE:10'], 'Name': ['s', 'TestWatch 10'],
        'Alias': ['s', 'TestWatch 10'], 'Adapter': ['o', HCI0], 'Connected': ['b', True],
        'Paired': ['b', False], 'UUIDs': ['as', []]}


@pytest.mark.parametrize('case,props', [
    ('address-int', {'Address': ['i', 1234]}),
    ('address-bytes', {'Address': ['ay', 'AA:BB:CC:DD:EE:11']}),
    ('address-missing', {}),
    ('address-malformed', {'Address': ['s', 'not an address']}),
    ('address-huge', {'Address': ['s', 'A' * (1 << 20)]}),
    ('address-control', {'Address': ['s', 'AA:BB:CC:DD:EE:1\n']}),
])
def test_device_without_usable_address_is_ignored(bg, a, case, props):
    path = HCI0 + '/dev_bad_' + case.replace('-', '_')
    p = dict(GOOD)
    p.pop('Address')
    p.update(props)
    add_object(bg, path, DEVICE1, p)
    sync_point(bg, 'AA:BB:CC:DD:EE:20')
    assert set(devices(bg)) == KNOWN | {'AA:BB:CC:DD:EE:20'}
    assert log_has(bg, 'ignoring BlueZ device %s' % path)
    still_serving(a)


def test_properties_of_wrong_types_are_treated_as_absent(bg, a):
    address = 'AA:BB:CC:DD:EE:12'
    add_object(bg, dev_path(address), DEVICE1, {
        'Address': ['s', address],
        'Name': ['i', 7], 'Alias': ['as', ['TestWatch']],
        'Adapter': ['s', HCI0],           # a string, not an object path
        'Connected': ['s', 'yes'], 'Paired': ['i', 1], 'Blocked': ['s', 'no'],
        'ServicesResolved': ['y', 1], 'RSSI': ['s', '-40'],
        'UUIDs': ['s', '0000180a-0000-1000-8000-00805f9b34fb'],
        'Modalias': ['u', 5],
        # a{qv} with the wrong inner types, and the wrong outer type
        'ManufacturerData': ['a{qv}', {0x05f1: ['s', 'not bytes'], 0x0059: ['i', 3]}],
        'ServiceData': ['a{sv}', {'180a': ['u', 1]}],
        'AdvertisingData': ['as', ['x']],
    })
    d = bg.wait_for(lambda: devices(bg).get(address), what='the device to be listed')
    # unknown rather than guessed: no name, not connected, not present, a
    # fallback model id (no metadata rule matched on garbage)
    assert d['Name'] == ''
    assert d['Connected'] is False and d['Present'] is False
    assert d['Model'] != 'test-watch'
    assert d['Adapter'] == 'hci0'   # from the object path, the property being unusable
    still_serving(a)


def test_manufacturer_data_wrong_inner_types_on_a_matching_rule(bg, a):
    """The metadata's ManufacturerData rule meets an a{qv} whose values are
    not byte arrays (and an outer type that is not a{qv} at all)."""
    with open(bg.tmp + '/devices/mfr.conf', 'w') as f:
        f.write('[Model]\nId=mfr-band\nName=Mfr band\n[Match m]\nManufacturerData=05f1:0102\n')
    a.manager('GetDevices')  # (the metadata is read at start; a rematch is not needed)
    for i, mfr in enumerate([['a{qv}', {0x05f1: ['s', '\x01\x02']}],
                             ['a{qv}', {0x05f1: ['a{sv}', {'x': ['ay', '\x01\x02']}]}],
                             ['a{sv}', {'05f1': ['ay', '\x01\x02']}],
                             ['aa{qv}', [{0x05f1: ['ay', '\x01\x02']}]],
                             ['ay', '\x01\x02']]):
        address = 'AA:BB:CC:DD:EE:%02X' % (0x30 + i)
        add_object(bg, dev_path(address), DEVICE1, {
            'Address': ['s', address], 'Name': ['s', 'Band %d' % i], 'Adapter': ['o', HCI0],
            'Connected': ['b', True], 'ManufacturerData': mfr})
        d = bg.wait_for(lambda: devices(bg).get(address), what='device %s' % address)
        assert d['Model'] != 'mfr-band', (i, d)
    still_serving(a)


def test_absurd_sizes(bg, a):
    address = 'AA:BB:CC:DD:EE:13'
    add_object(bg, dev_path(address), DEVICE1, {
        'Address': ['s', address],
        'Name': ['s', 'N' * (1 << 20)],
        'Alias': ['s', 'TestWatch ' + 'x' * 200000],
        'Adapter': ['o', HCI0], 'Connected': ['b', True],
        'UUIDs': ['as', ['%08x-0000-1000-8000-00805f9b34fb' % i for i in range(20000)]],
        'Modalias': ['s', 'bluetooth:v' + 'F' * 100000],
        'ManufacturerData': ['a{qv}', {k: ['ay', '\xff' * 4096] for k in range(256)}],
    })
    d = bg.wait_for(lambda: devices(bg).get(address), what='the huge device')
    assert d['Present'] is True
    # the long Alias is used as given; what matters is that nothing broke
    assert d['Name'].startswith('TestWatch ')
    still_serving(a)


def test_duplicate_address_on_another_path_does_not_hijack_the_device(bg, a):
    """A second Device1 claiming an address the agent already follows: its
    removal must not revoke the real device's task, nor may it replace it."""
    a.become_agent('allow')
    t, ch = start_run(bg, a)
    evil = HCI0 + '/dev_evil'
    add_object(bg, evil, DEVICE1, {
        'Address': ['s', WATCH1], 'Name': ['s', 'Evil twin'], 'Adapter': ['o', HCI0],
        'Connected': ['b', False]})
    sync_point(bg, 'AA:BB:CC:DD:EE:21')
    assert devices(bg)[WATCH1]['Name'] == 'TestWatch 1'
    assert devices(bg)[WATCH1]['Connected'] is True
    bg.mock('org.bluez', '/', MOCK, 'RemoveObject', 's', evil)
    bg.mock('org.bluez', '/', MOCK, 'EmitSignal', 'sssav', OM, 'InterfacesRemoved', 'oas',
            [['o', evil], ['as', [DEVICE1]]])
    sync_point(bg, 'AA:BB:CC:DD:EE:22')
    ch.echo('still-running')
    assert a.prop(t, 'State') == 'running'
    assert a.signals('Canceled', t) == []
    assert WATCH1 in devices(bg)
    ch.send('complete')
    a.wait_signal('Completed', t, lambda args: args[0] is True)


def test_properties_changed_with_wrong_types_on_a_running_device(bg, a):
    """Connected turning into a string mid-task: the device is no longer
    known to be connected, so device-use ends cleanly (condition-loss)."""
    a.become_agent('allow')
    t, ch = start_run(bg, a)
    # harmless garbage first: the task keeps running
    props_changed(bg, dev_path(WATCH1), DEVICE1, {
        'Name': ['i', 1], 'RSSI': ['s', 'loud'], 'UUIDs': ['a{sv}', {}],
        'ManufacturerData': ['s', 'x'], 'Modalias': ['ay', 'usb:v1234'],
        'ServicesResolved': ['s', 'maybe'], 'Paired': ['u', 2]})
    ch.echo('after-garbage')
    assert a.prop(t, 'State') == 'running'
    props_changed(bg, dev_path(WATCH1), DEVICE1, {'Connected': ['s', 'yes']})
    sig = a.wait_signal('Canceled', t)
    assert sig['args'] == ['condition-loss']
    ch.wait_line('canceled condition-loss')
    # the device object stays, unknown connection state reads as not connected
    assert devices(bg)[WATCH1]['Connected'] is False
    still_serving(a)


def test_adapter_garbage(bg, a):
    """An adapter with no usable properties, and hci0's Powered turning into
    a string: neither crashes; hci0's devices stay listed."""
    add_object(bg, '/org/bluez/hci7', ADAPTER1, {
        'Address': ['i', 3], 'Powered': ['s', 'on'], 'Discovering': ['as', []],
        'Name': ['ay', 'x'], 'UUIDs': ['s', 'u']})
    add_object(bg, '/org/bluez/hci7/dev_AA_BB_CC_DD_EE_40', DEVICE1, {
        'Address': ['s', 'AA:BB:CC:DD:EE:40'], 'Adapter': ['o', '/org/bluez/hci7'],
        'Connected': ['b', True]})
    d = bg.wait_for(lambda: devices(bg).get('AA:BB:CC:DD:EE:40'), what='the hci7 device')
    assert d['Adapter'] == 'hci7'
    props_changed(bg, '/org/bluez/hci7', ADAPTER1, {'Powered': ['y', 1], 'Discovering': ['s', 'x']})
    props_changed(bg, HCI0, ADAPTER1, {'Discovering': ['i', 1]})
    sync_point(bg, 'AA:BB:CC:DD:EE:23')
    assert KNOWN <= set(devices(bg))
    still_serving(a)


@pytest.mark.parametrize('sig,args', [
    ('os', [['o', '/org/bluez/hci0/dev_x'], ['s', 'garbage']]),
    ('oa{sv}', [['o', '/org/bluez/hci0/dev_y'], ['a{sv}', {'Address': ['s', 'AA:BB:CC:DD:EE:50']}]]),
    ('s', [['s', 'hello']]),
    ('', []),
    ('oa{sa{sv}}x', [['o', '/org/bluez/hci0/dev_z'], ['a{sa{sv}}', {}], ['x', 1]]),
])
def test_interfaces_added_with_a_wrong_signature(bg, a, sig, args):
    bg.mock('org.bluez', '/', MOCK, 'EmitSignal', 'sssav', OM, 'InterfacesAdded', sig, args)
    bg.mock('org.bluez', '/', MOCK, 'EmitSignal', 'sssav', OM, 'InterfacesRemoved', sig, args)
    sync_point(bg, 'AA:BB:CC:DD:EE:24')
    assert set(devices(bg)) == KNOWN | {'AA:BB:CC:DD:EE:24'}
    still_serving(a)


def test_interfaces_added_garbage_contents(bg, a):
    """Well-typed signals with garbage inside: objects that do not exist,
    odd interface names, a Device1 re-announced with other properties, a
    device under no adapter, the root path."""
    interfaces_added(bg, '/org/bluez/hci0/dev_ghost', {DEVICE1: {
        'Address': ['s', 'AA:BB:CC:DD:EE:60'], 'Connected': ['s', 'x']}})
    interfaces_added(bg, '/', {DEVICE1: {'Address': ['s', 'AA:BB:CC:DD:EE:61']}})
    interfaces_added(bg, '/nowhere', {DEVICE1: {'Address': ['s', 'AA:BB:CC:DD:EE:62'],
                                                'Adapter': ['o', '/']}})
    interfaces_added(bg, dev_path(WATCH2), {DEVICE1: {'Address': ['s', BAND3],
                                                      'Connected': ['b', False]}})
    interfaces_added(bg, HCI0, {'': {}, 'org.bluez.GattCharacteristic1': {'UUID': ['i', 1]},
                                'x.y': {'': ['s', '']}})
    interfaces_added(bg, '/org/bluez/hci0/dev_many',
                     {'org.example.I%d' % i: {'P': ['ay', 'x' * 100]} for i in range(2000)})
    bg.mock('org.bluez', '/', MOCK, 'EmitSignal', 'sssav', OM, 'InterfacesRemoved', 'oas',
            [['o', '/org/bluez/hci0/dev_never'], ['as', [DEVICE1, ADAPTER1]]])
    sync_point(bg, 'AA:BB:CC:DD:EE:25')
    seen = devices(bg)
    assert KNOWN <= set(seen)
    assert seen[BAND3]['Name'] == 'OtherBand 3'   # WATCH2's re-announcement did not become BAND3
    still_serving(a)


@pytest.mark.parametrize('sig,args', [
    ('s', [['s', 'org.bluez.Device1']]),
    ('sa{sv}', [['s', DEVICE1], ['a{sv}', {'Connected': ['b', False]}]]),
    ('sa{ss}as', [['s', DEVICE1], ['a{ss}', {'Connected': 'no'}], ['as', []]]),
    ('', []),
])
def test_properties_changed_with_a_wrong_signature(bg, a, sig, args):
    """A running device-use task is not touched by a PropertiesChanged that
    is not (sa{sv}as): it is dropped, whatever it claims."""
    a.become_agent('allow')
    t, ch = start_run(bg, a)
    bg.mock('org.bluez', dev_path(WATCH1), MOCK, 'EmitSignal', 'sssav', PROPS,
            'PropertiesChanged', sig, args)
    sync_point(bg, 'AA:BB:CC:DD:EE:26')
    ch.echo('after')
    assert a.prop(t, 'State') == 'running'
    assert devices(bg)[WATCH1]['Connected'] is True
    ch.send('complete')
    a.wait_signal('Completed', t, lambda args: args[0] is True)


DIS = '0000180a-0000-1000-8000-00805f9b34fb'
DIS_CHRCS = {'manufacturer': '00002a29-0000-1000-8000-00805f9b34fb',
             'model': '00002a24-0000-1000-8000-00805f9b34fb',
             'pnp': '00002a50-0000-1000-8000-00805f9b34fb'}
MIB4 = 4 * 1024 * 1024


@pytest.mark.parametrize('case,reads,expect', [
    # ReadValue code (dbusmock), out signature, per characteristic
    ('empty', {'manufacturer': ('ret = b""', 'ay'), 'model': ('ret = b""', 'ay'),
               'pnp': ('ret = b""', 'ay')}, "(none) 0:0000:0000:0000, '' ''"),
    ('megabytes', {'manufacturer': ('ret = b"M" * %d' % MIB4, 'ay'),
                   'model': ('ret = b"\\xff\\x00" * %d' % (MIB4 // 2), 'ay'),
                   'pnp': ('ret = b"\\x01" * %d' % MIB4, 'ay')}, "(none) 0:0000:0000:0000, '%s' ''" % ('M' * 64)),
    ('control-and-invalid-utf8', {'manufacturer': ('ret = b"\\x1b[31mAcme\\xc3(\\x07\\n"', 'ay'),
                                  'model': ('ret = b"\\xf0\\x9f\\x92\\xa9 W1\\x00trailing"', 'ay'),
                                  'pnp': ('ret = b"\\x03\\x01\\x02\\x03\\x04\\x05\\x06"', 'ay')},
     "(none) 0:0000:0000:0000, '[31mAcme(' '\U0001f4a9 W1'"),
    ('wrong-types', {'manufacturer': ('ret = "Acme"', 's'), 'model': ('ret = 7', 'u'),
                     'pnp': ('ret = [b"\\x01"]', 'aay')}, None),
    ('errors', {'manufacturer': ('raise dbus.exceptions.DBusException("no", name="org.bluez.Error.NotPermitted")', 'ay'),
                'model': ('raise dbus.exceptions.DBusException("no", name="org.bluez.Error.Failed")', 'ay'),
                'pnp': ('ret = b"\\x01\\xf1\\x05\\x42\\x57\\x01\\x00"', 'ay')}, None),
])
def test_device_information_garbage(bg, a, case, reads, expect):
    """The agent reads the Device Information Service of a device on its
    first connection with resolved services: values of 0 bytes, megabytes,
    control characters and broken UTF-8, the wrong D-Bus types, errors."""
    address = 'AA:BB:CC:DD:EE:70'
    path = dev_path(address)
    add_object(bg, path, DEVICE1, {
        'Address': ['s', address], 'Name': ['s', 'Gadget'], 'Adapter': ['o', HCI0],
        'Connected': ['b', True], 'ServicesResolved': ['b', False]})
    bg.wait_for(lambda: devices(bg).get(address), what='the device to be listed')
    svc = path + '/service0010'
    add_object(bg, svc, 'org.bluez.GattService1', {
        'UUID': ['s', DIS], 'Device': ['o', path], 'Primary': ['b', True]})
    for i, (kind, (code, sig)) in enumerate(sorted(reads.items())):
        chrc = svc + '/char%04x' % (0x11 + 2 * i)
        bg.mock('org.bluez', '/', MOCK, 'AddObject', 'ssa{sv}a(ssss)', chrc,
                'org.bluez.GattCharacteristic1',
                {'UUID': ['s', DIS_CHRCS[kind]], 'Service': ['o', svc],
                 'Flags': ['as', ['read']]},
                [['ReadValue', 'a{sv}', sig, code]])
        interfaces_added(bg, chrc, {'org.bluez.GattCharacteristic1': {
            'UUID': ['s', DIS_CHRCS[kind]], 'Service': ['o', svc], 'Flags': ['as', ['read']]}})
    bg.mock('org.bluez', path, MOCK, 'UpdateProperties', 'sa{sv}', DEVICE1,
            {'ServicesResolved': ['b', True]})
    if expect is not None:
        wait_log(bg, 'device %s: DIS PnP ID %s' % (address, expect))
    else:
        wait_log(bg, 'device %s: ' % address + ('cannot read its Device Information'
                                               if case == 'wrong-types' else 'DIS PnP ID'))
    d = devices(bg)[address]
    if case == 'errors':
        # two reads refused, the PnP ID read fine: the model is named by it
        assert d['Model'] == 'pnp-bluetooth-05f1-5742', d['Model']
    elif case == 'megabytes':
        assert d['Model'].startswith('dis-'), d['Model']
    still_serving(a)


# ---- GATT: what AcquireWrite/AcquireNotify hand back ----------------------

SMP_SVC = '8d53dc1d-1db7-4cd3-868b-8a527460aa84'
SMP_CHR = 'da2e7828-fbce-4e01-ae9e-261174997c48'
GADGET = 'AA:BB:CC:DD:EE:80'
APP_X = 'com.example.AppX'

# AcquireWrite/AcquireNotify code for dbusmock (out signature, code)
SOCKETPAIR = ('hq', 'import socket\n'
                    'a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)\n'
                    '%s\n'
                    'ret = (dbus.types.UnixFd(a), dbus.UInt16(%d))')
ACQUIRE = {
    # a reply of another type: the agent falls back to WriteValue/StartNotify
    'wrong-type': ('s', 'ret = "no socket here"'),
    'error': ('hq', 'raise dbus.exceptions.DBusException("no", name="org.bluez.Error.Failed")'),
    # a file descriptor that is no socket, with MTU 0
    'not-a-socket': ('hq', 'import os\n'
                           'ret = (dbus.types.UnixFd(os.open("/dev/null", os.O_RDWR)), dbus.UInt16(0))'),
    # a socket whose other end is already closed (the device went away)
    'peer-closed': (SOCKETPAIR[0], SOCKETPAIR[1] % ('b.close()', 65535)),
    # a socket the device never answers on (kept open by the mock)
    'silent': (SOCKETPAIR[0], SOCKETPAIR[1] % ('objects.setdefault("_keep", []).append(b)', 1)),
}


def smp_gadget(bg, acquire):
    """A device of a model whose SMP profile gives up fast, a manifest for
    app-x with smp-file-sync, and the device's SMP characteristic whose
    AcquireWrite/AcquireNotify answer with `acquire`; the agent restarts to
    read the new metadata."""
    with open(bg.tmp + '/apps/x.conf', 'w') as f:
        f.write('[App]\nId=%s\nName=App X\nExecutable=%s/app-x\n'
                'DeviceUseEntryPoints=smp-file-sync;\n' % (APP_X, bg.bindir))
    with open(bg.tmp + '/devices/gadget.conf', 'w') as f:
        f.write('[Model]\nId=smp-gadget\nName=SMP gadget\n[Match]\nName=SmpGadget*\n'
                '[Profile smp]\nRequestTimeout=0.3\nRetries=0\nOsParams=false\n')
    assert bg.stop_daemon() == 0
    path = dev_path(GADGET)
    add_object(bg, path, DEVICE1, {
        'Address': ['s', GADGET], 'Name': ['s', 'SmpGadget 1'], 'Alias': ['s', 'SmpGadget 1'],
        'Adapter': ['o', HCI0], 'Connected': ['b', True], 'ServicesResolved': ['b', True],
        'Paired': ['b', False], 'UUIDs': ['as', [SMP_SVC]]})
    svc = path + '/service0020'
    add_object(bg, svc, 'org.bluez.GattService1', {
        'UUID': ['s', SMP_SVC], 'Device': ['o', path], 'Primary': ['b', True]})
    chrc = svc + '/char0021'
    props = {'UUID': ['s', SMP_CHR], 'Service': ['o', svc],
             'Flags': ['as', ['write-without-response', 'notify']],
             'MTU': ['s', 'not a number']}
    sig, code = ACQUIRE[acquire]
    bg.mock('org.bluez', '/', MOCK, 'AddObject', 'ssa{sv}a(ssss)', chrc,
            'org.bluez.GattCharacteristic1', props,
            [['AcquireWrite', 'a{sv}', sig, code], ['AcquireNotify', 'a{sv}', sig, code],
             ['StartNotify', '', '', ''], ['StopNotify', '', '', ''],
             ['WriteValue', 'aya{sv}', '', '']])
    interfaces_added(bg, chrc, {'org.bluez.GattCharacteristic1': props})
    bg.start_daemon()
    bg.wait_for(lambda: GADGET in devices(bg), what='the gadget to be listed')
    return chrc


@pytest.mark.parametrize('acquire', sorted(ACQUIRE))
def test_acquire_replies_that_are_no_use(bg, acquire, tmp_path):
    """AcquireWrite/AcquireNotify answering with the wrong type, an error, a
    file descriptor that is no socket (MTU 0), a socket already closed at the
    other end (MTU 65535), a socket nobody answers on (MTU 1); the
    characteristic's MTU property a string. An SMP file sync on the device
    ends in bounded time with a readable reason; the agent keeps serving."""
    import os
    smp_gadget(bg, acquire)
    x = bg.app('app-x', label='X')
    x.become_agent('allow')
    t = x.register('sync', 'device-use', 'smp-file-sync')
    fds_before = len(os.listdir('/proc/%d/fd' % bg.daemon.pid))
    out = os.open(str(tmp_path), os.O_RDONLY | os.O_DIRECTORY)
    try:
        p = x.call_async(t, 'org.bgsync.Task1', 'Request', 'susa{sv}',
                         [GADGET, 0, '/f.bin', {'output-dir': ['h', 0]}], fds=[out])
    finally:
        os.close(out)
    assert tuple(p.result()) == ('allowed', '')
    end = x.hub.wait_for(lambda: next((s for s in x.signals(path=t)
                                       if s['member'] in ('Completed', 'Canceled')), None),
                         what='the sync to end')
    print(end)
    if end['member'] == 'Completed':
        ok, error, message = end['args']
        assert not ok and error.startswith('org.bgsync.Error.') and message.strip(), end
    else:
        assert end['args'][0], end
    if acquire in ('wrong-type', 'error', 'not-a-socket'):
        # unusable: the D-Bus path (WriteValue/StartNotify) is used, and the
        # silent device fails the sync; the link itself is fine
        assert end['member'] == 'Completed' and 'did not answer' in end['args'][2], end
    assert GADGET in devices(bg)
    still_serving(x)
    # nothing handed over is kept (the agent closes what it refused)
    bg.wait_for(lambda: len(os.listdir('/proc/%d/fd' % bg.daemon.pid)) <= fds_before,
                what='the agent to close the sockets it was given')
