# Manager1: registering tasks, listing them, devices, identity.
import subprocess

import pytest

from harness import (APP_A, BAND3, DEVICE, MANAGER, MANAGER_PATH, PROPS, WATCH1, WATCH2,
                     expect_error, still_serving)


def test_register_returns_task_with_properties(bg, a):
    t = a.register('sync', 'device-use', 'test')
    assert t.startswith('/org/bgsync/task/')
    p = a.props(t)
    assert p['Name'] == 'sync'
    assert p['Trigger'] == 'device-use'
    assert p['EntryPoint'] == 'test'
    assert p['CustomTrigger'] == ''
    assert p['Recurrence'] == ''
    assert p['State'] == 'idle'
    assert p['Device'] == ''
    assert p['Progress'] == [0, '']
    assert a.prop(t, 'Trigger') == 'device-use'


def test_duplicate_register_returns_same_object(bg, a):
    t1 = a.register('sync', 'device-use', 'test')
    t2 = a.register('sync', 'device-use', 'test')
    assert t1 == t2
    assert list(a.get_tasks()) == [t1]
    # a second process of the same app gets the same registration
    a2 = bg.app('app-a', label='A2')
    assert a2.register('sync', 'device-use', 'test') == t1


def test_mismatched_duplicate_register_already_exists(bg, a):
    t = a.register('sync', 'device-use', 'test')
    expect_error('org.bgsync.Error.AlreadyExists', a.register, 'sync', 'device-servicing', 'test')
    # the first registration is untouched
    assert a.prop(t, 'Trigger') == 'device-use'
    assert list(a.get_tasks()) == [t]


def test_same_name_in_two_apps_are_two_tasks(bg, a, b):
    ta = a.register('sync')
    tb = b.register('sync')
    assert ta != tb


def test_get_tasks_lists_only_own_tasks(bg, a, b):
    ta1 = a.register('sync')
    ta2 = a.register('update', 'device-servicing')
    tb = b.register('b-sync')
    tasks_a = a.get_tasks()
    assert set(tasks_a) == {ta1, ta2}
    assert tasks_a[ta1]['Name'] == 'sync'
    assert tasks_a[ta2]['Trigger'] == 'device-servicing'
    assert set(b.get_tasks()) == {tb}


def test_entry_point_not_in_manifest_is_refused(bg):
    # App C declares the test entry point for device-use only
    c = bg.app('app-c', label='C')
    c.register('sync', 'device-use', 'test')
    for trigger in ('device-servicing', 'custom'):
        opts = {'custom-trigger': ['s', 'com.example.t']} if trigger == 'custom' else {}
        expect_error(('org.bgsync.Error.NotAuthorized', 'org.bgsync.Error.InvalidArgs'),
                     c.register, 'x-' + trigger, trigger, 'test', opts)
    # an entry point nobody declares
    expect_error(('org.bgsync.Error.NotAuthorized', 'org.bgsync.Error.InvalidArgs'),
                 c.register, 'other', 'device-use', 'no-such-profile')
    assert len(c.get_tasks()) == 1


def test_unknown_app_is_refused(bg, a):
    t = a.register('sync')
    x = bg.app('app-x', label='X')  # an executable no manifest names
    expect_error('org.bgsync.Error.UnknownApp', x.register, 'sync')
    expect_error('org.bgsync.Error.UnknownApp', x.get_tasks)
    # nor can it reach another app's task
    expect_error(('org.bgsync.Error.NotFound', 'org.bgsync.Error.UnknownApp'),
                 x.request, t, WATCH1)
    still_serving(a)


@pytest.mark.parametrize('options', [
    {'conditions': ['as', ['network']]},
    {'conditions': ['as', ['ac-power', 'user-present']]},
])
@pytest.mark.parametrize('trigger', ['device-use', 'device-servicing'])
def test_device_triggers_refuse_conditions(bg, a, trigger, options):
    expect_error('org.bgsync.Error.InvalidArgs', a.register, 'sync', trigger, 'test', options)
    assert a.get_tasks() == {}


@pytest.mark.parametrize('options', [
    {},                                                          # no custom-trigger
    {'custom-trigger': ['s', '']},                               # empty id
    {'custom-trigger': ['s', 'com.example.t'], 'recurrence': ['s', 'twice']},
    {'custom-trigger': ['s', 'com.example.t'], 'conditions': ['as', ['moon']]},
])
def test_custom_registration_needs_valid_options(bg, a, options):
    expect_error('org.bgsync.Error.InvalidArgs', a.register, 'c', 'custom', 'test', options)
    assert a.get_tasks() == {}


def test_custom_registration_properties(bg, a):
    t = a.register('c', 'custom', 'test', {'custom-trigger': ['s', 'com.example.t'],
                                           'recurrence': ['s', 'always'],
                                           'conditions': ['as', ['network']]})
    p = a.props(t)
    assert p['Trigger'] == 'custom'
    assert p['CustomTrigger'] == 'com.example.t'
    assert p['Recurrence'] == 'always'


@pytest.mark.config(Limits={'MaxTasksPerApp': 3})
def test_max_tasks_per_app(bg, a, b):
    for i in range(3):
        a.register('t%d' % i)
    expect_error('org.bgsync.Error.LimitExceeded', a.register, 't3')
    # re-registering an existing name is not a new task
    a.register('t0')
    # the limit is per app
    b.register('t0')
    assert len(a.get_tasks()) == 3


def test_get_devices(bg, a):
    devices = a.manager('GetDevices')[0]
    by_addr = {p['Address']: (path, p) for path, p in devices.items()}
    assert set(by_addr) >= {WATCH1, WATCH2, BAND3}
    path, p = by_addr[WATCH1]
    assert path == '/org/bgsync/device/hci0_AA_BB_CC_DD_EE_01'
    assert p['Name'] == 'TestWatch 1'
    assert p['Adapter'] == 'hci0'
    assert p['Model'] == 'test-watch'
    assert p['ModelName'] == 'Test Watch'
    assert p['Present'] is True
    assert p['Connected'] is True
    assert by_addr[BAND3][1]['Model'] == 'other-band'
    # the object itself
    props = a.call(path, PROPS, 'GetAll', 's', [DEVICE])[0]
    assert props['Address'] == WATCH1
    # presence follows BlueZ
    bg.disconnect_device(WATCH1)
    bg.wait_for(lambda: a.call(path, PROPS, 'Get', 'ss', [DEVICE, 'Connected'])[0] is False,
                what='Device1.Connected to turn false')


def test_version(bg, a):
    v = a.call(MANAGER_PATH, PROPS, 'Get', 'ss', [MANAGER, 'Version'])[0]
    assert v
    out = subprocess.run([bg.bgsyncd, '--version'], capture_output=True, text=True, timeout=20)
    assert out.returncode == 0
    assert v in out.stdout
    out = subprocess.run([bg.bgsyncd, '--help'], capture_output=True, text=True, timeout=20)
    assert out.returncode == 0
    assert '--session' in out.stdout and '--config' in out.stdout


def test_bad_config_refuses_to_start(bg):
    bg.stop_daemon()
    bg.config['Policy']['IdleTimeout'] = 'soon'
    bg.write_config()
    out = subprocess.run([bg.bgsyncd, '--session', '--config', bg.conf_path], env=bg.env,
                         capture_output=True, text=True, timeout=20)
    assert out.returncode != 0
    assert 'IdleTimeout' in out.stdout + out.stderr
