# Custom triggers: RaiseCustomTrigger, recurrence, who may raise.
import os

import pytest

from harness import (BUS_NAME, MANAGER, MANAGER_PATH, DBusError, expect_error, still_serving)
from gi.repository import Gio, GLib


def raise_as_root(bg, trigger_id, data):
    """RaiseCustomTrigger from the test process itself: root, and no app
    (as a system service or `sudo bgsyncctl raise` would)."""
    try:
        ret = bg.bus.call_sync(BUS_NAME, MANAGER_PATH, MANAGER, 'RaiseCustomTrigger',
                               GLib.Variant('(ss)', (trigger_id, data)), None,
                               Gio.DBusCallFlags.NONE, 20000, None)
    except GLib.Error as e:
        name = Gio.DBusError.get_remote_error(e)
        Gio.DBusError.strip_remote_error(e)
        raise DBusError(name, e.message)
    return ret.unpack()[0]


def custom(app, name, trigger_id, recurrence, conditions=None):
    opts = {'custom-trigger': ['s', trigger_id], 'recurrence': ['s', recurrence]}
    if conditions:
        opts['conditions'] = ['as', conditions]
    return app.register(name, 'custom', 'test', opts)


@pytest.mark.root
def test_raise_starts_once_and_always_tasks(bg, a, b):
    t_once = custom(a, 'once', 'com.example.sync', 'once')
    t_always = custom(a, 'always', 'com.example.sync', 'always')
    t_other = custom(a, 'other', 'com.example.other', 'always')
    t_b = custom(b, 'b-always', 'com.example.sync', 'always')
    assert raise_as_root(bg, 'com.example.sync', 'hello') == 3
    for t in (t_once, t_always):
        sig = a.wait_signal('Completed', t)
        assert sig['args'] == [True, '', 'data: hello']
    b.wait_signal('Completed', t_b, lambda args: args == [True, '', 'data: hello'])
    assert a.signals(path=t_other) == []
    # once: unregistered after firing (its events were delivered as signals)
    bg.wait_for(lambda: t_once not in a.get_tasks(), what='the once task to go')
    assert set(a.get_tasks()) == {t_always, t_other}
    ev = a.take_events(t_always)
    assert ev[-1][1] == 'completed' and ev[-1][2]['message'] == 'data: hello'
    # always: fires again
    assert raise_as_root(bg, 'com.example.sync', 'again') == 2
    a.wait_signal('Completed', t_always, lambda args: args[2] == 'data: again')
    assert raise_as_root(bg, 'com.example.nobody-listens', '') == 0


@pytest.mark.root
def test_raise_by_non_root_is_not_authorized(bg, a):
    t = custom(a, 'always', 'com.example.sync', 'always')
    n = bg.app('app-a', user='nobody', label='A-nobody')
    expect_error('org.bgsync.Error.NotAuthorized', n.manager, 'RaiseCustomTrigger', 'ss',
                 'com.example.sync', 'x')
    assert a.signals(path=t) == []
    # an app of root's own is not root-by-app either: root is the uid
    assert raise_as_root(bg, 'com.example.sync', 'x') == 1


def test_raise_by_non_root_is_not_authorized_unprivileged(bg, a):
    if os.getuid() == 0:
        pytest.skip('covered by test_raise_by_non_root_is_not_authorized as root')
    custom(a, 'always', 'com.example.sync', 'always')
    expect_error('org.bgsync.Error.NotAuthorized', a.manager, 'RaiseCustomTrigger', 'ss',
                 'com.example.sync', 'x')


@pytest.mark.root
@pytest.mark.parametrize('trigger_id', ['', 'bad\x01id', 'x' * 129, 'tab\tid'],
                         ids=['empty', 'ctrl-a', '129-bytes', 'tab'])
def test_raise_invalid_trigger_id(bg, a, trigger_id):
    expect_error('org.bgsync.Error.InvalidArgs', raise_as_root, bg, trigger_id, '')
    still_serving(a)


@pytest.mark.root
def test_conditions_hold_back_a_custom_task(bg, a):
    bg.set_battery(80, True)
    t = custom(a, 'on-ac', 'com.example.sync', 'always', ['ac-power'])
    started = raise_as_root(bg, 'com.example.sync', 'd')
    assert started == 0
    assert a.signals('Completed', t) == []
    # when the condition comes true the fired trigger runs it
    bg.set_battery(80, False)
    a.wait_signal('Completed', t, lambda args: args == [True, '', 'data: d'])


@pytest.mark.root
def test_user_present_condition_follows_the_session(bg, a):
    bg.lock_session('c1', True)
    t = custom(a, 'present', 'com.example.sync', 'once', ['user-present'])
    assert raise_as_root(bg, 'com.example.sync', 'p') == 0
    assert a.signals('Completed', t) == []
    # unlocking makes the user present: the fired trigger runs, then the
    # once task goes
    bg.lock_session('c1', False)
    a.wait_signal('Completed', t, lambda args: args == [True, '', 'data: p'])
    bg.wait_for(lambda: t not in a.get_tasks(), what='the once task to go')


@pytest.mark.root
def test_custom_tasks_do_not_make_the_app_busy(bg, a):
    from harness import WATCH1, start_run
    a.become_agent('allow')
    tc = custom(a, 'always', 'com.example.sync', 'always')
    td, ch = start_run(bg, a, device=WATCH1)
    assert raise_as_root(bg, 'com.example.sync', 'x') == 1
    a.wait_signal('Completed', tc)
    ch.echo('device-task-untouched')
    assert a.prop(td, 'State') == 'running'
