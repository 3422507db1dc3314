# Running instances: cancel, unregister, app exit and the runtime policies.
import time

import pytest

from harness import (APP_A, BAND3, TASK, WATCH1, WATCH2, events_of, expect_error, start_run,
                     still_serving)


def canceled(app, task, reason):
    return app.wait_signal('Canceled', task, lambda args: args == [reason])


def test_cancel_aborts(bg, a):
    a.become_agent('allow')
    t, ch = start_run(bg, a)
    a.task(t, 'Cancel')
    canceled(a, t, 'abort')
    ch.wait_line('canceled abort')
    bg.wait_for(lambda: ch.eof, what='the entry point to close its channel end')
    a.wait_state(t, 'idle')
    assert a.signals('Completed', t) == []
    ev = a.take_events(t)
    assert ev[-1][1] == 'canceled' and ev[-1][2]['reason'] == 'abort'
    h = a.manager('GetHistory', 'u', 1)[0][0]
    assert (h['result'], h['reason']) == ('canceled', 'abort')
    # the registration stays, and may run again
    expect_error('org.bgsync.Error.NotRunning', a.task, t, 'Cancel')
    ch2 = bg.channel()
    assert a.request(t, WATCH1, channel=ch2) == ('allowed', '')


def test_cancel_when_idle_is_not_running(bg, a):
    t = a.register('sync')
    expect_error('org.bgsync.Error.NotRunning', a.task, t, 'Cancel')
    still_serving(a)


def test_cancel_while_waiting_for_consent(bg, a):
    a.become_agent('hold')
    t = a.register('sync')
    pending = a.request_async(t, WATCH1)
    a.wait_agent_call()
    a.task(t, 'Cancel')
    r = tuple(pending.result())
    assert r[0] != 'allowed', r
    a.wait_agent_call('Cancel')
    a.wait_state(t, 'idle')


def test_unregister_cancel_running(bg, a):
    a.become_agent('allow')
    t, ch = start_run(bg, a)
    a.task(t, 'Unregister', 'b', True)
    canceled(a, t, 'abort')
    ch.wait_line('canceled abort')
    bg.wait_for(lambda: t not in a.get_tasks(), what='the task to leave GetTasks')
    expect_error('org.bgsync.Error.NotFound', a.prop, t, 'State')
    expect_error('org.bgsync.Error.NotFound', a.task, t, 'TakeEvents')
    # the name is free again: a new registration
    assert a.register('sync') != t or a.prop(t, 'State') == 'idle'


def test_unregister_lets_running_instance_finish(bg, a):
    a.become_agent('allow')
    t, ch = start_run(bg, a)
    a.task(t, 'Unregister', 'b', False)
    # still running: the entry point answers and nothing was canceled
    ch.echo('still-here')
    assert a.signals('Canceled', t) == []
    ch.send('progress 90 finishing')
    a.wait_signal('Progress', t, lambda args: args == [90, 'finishing'])
    ch.send('complete')
    a.wait_signal('Completed', t, lambda args: args[0] is True)
    bg.wait_for(lambda: t not in a.get_tasks(), what='the task to leave GetTasks')
    expect_error('org.bgsync.Error.NotFound', a.prop, t, 'State')
    h = a.manager('GetHistory', 'u', 1)[0][0]
    assert h['result'] == 'completed'


def test_unregister_idle(bg, a):
    t = a.register('sync')
    a.task(t, 'Unregister', 'b', False)
    assert a.get_tasks() == {}
    expect_error('org.bgsync.Error.NotFound', a.prop, t, 'Name')


def test_app_exit_cancels_terminating(bg, a):
    a.become_agent('allow')
    t, ch = start_run(bg, a)
    ch.send('progress 10 started')
    a.wait_signal('Progress', t)
    a.kill()
    ch.wait_line('canceled terminating')
    # a new process of the same app finds out what happened
    a2 = bg.app('app-a', label='A-again')
    assert t in a2.get_tasks()
    a2.wait_state(t, 'idle')
    ev = a2.take_events(t)
    kinds = [e[1] for e in ev]
    assert kinds[-1] == 'canceled', ev
    assert ev[-1][2]['reason'] == 'terminating'
    assert 'progress' in kinds
    h = a2.manager('GetHistory', 'u', 1)[0][0]
    assert (h['result'], h['reason']) == ('canceled', 'terminating')


def test_app_exit_needs_last_connection(bg, a):
    # two processes of the same app: one leaving does not cancel
    a.become_agent('allow')
    a2 = bg.app('app-a', label='A2')
    a2.get_tasks()  # talks to the agent, so it counts as a connection of the app
    t, ch = start_run(bg, a)
    a.kill()
    ch.echo('alive')
    a2.wait_state(t, 'running')
    assert a2.signals('Canceled', t) == []
    # and a2 receives the task's signals
    ch.send('progress 50 half')
    a2.wait_signal('Progress', t, lambda args: args == [50, 'half'])
    a2.kill()
    ch.wait_line('canceled terminating')


@pytest.mark.config(Policy={'IdleTimeout': 2})
def test_idle_rule_cancels_device_use(bg, a):
    a.become_agent('allow')
    t, ch = start_run(bg, a)
    # I/O every 0.3 s keeps it alive for well over the idle timeout (the
    # margin, 1.7 s, absorbs a loaded machine)
    end = time.monotonic() + 4.5
    while time.monotonic() < end:
        ch.send('ping', ok_if_closed=True)
        bg.quiet_for(lambda: a.signals('Canceled', t), 0.3, 'cancel while I/O flows')
    ch.echo('still-alive')
    # then silence
    canceled(a, t, 'idle-task')
    ch.wait_line('canceled idle-task')
    h = a.manager('GetHistory', 'u', 1)[0][0]
    assert (h['result'], h['reason']) == ('canceled', 'idle-task')


@pytest.mark.config(Policy={'IdleTimeout': 1, 'DeviceServicingMaxRuntime': 3})
def test_servicing_has_no_idle_rule_but_a_wall_clock(bg, a):
    a.become_agent('allow')
    start = time.monotonic()
    t, ch = start_run(bg, a, trigger='device-servicing', estimate=2)
    sig = a.wait_signal('Canceled', t, timeout=30)
    assert sig['args'] == ['execution-time-exceeded']
    assert time.monotonic() - start >= 2.5


@pytest.mark.config(Policy={'DeviceUseMaxRuntime': 2})
def test_wall_clock_device_use(bg, a):
    a.become_agent('allow')
    start = time.monotonic()
    t, ch = start_run(bg, a)
    # busy with I/O all along (so it is not the idle rule)
    while not bg.within(lambda: a.signals('Canceled', t) or ch.eof, 0.2):
        assert time.monotonic() - start < 30, 'no cancel after 30 s'
        ch.send('ping', ok_if_closed=True)
    sig = a.wait_signal('Canceled', t)
    assert sig['args'] == ['execution-time-exceeded']
    assert time.monotonic() - start >= 1.5
    ch.wait_line('canceled execution-time-exceeded')


def test_disconnect_cancels_device_use(bg, a):
    a.become_agent('allow')
    t, ch = start_run(bg, a)
    bg.disconnect_device(WATCH1)
    canceled(a, t, 'condition-loss')
    ch.wait_line('canceled condition-loss')


def test_disconnect_keeps_servicing(bg, a):
    a.become_agent('allow')
    t, ch = start_run(bg, a, trigger='device-servicing', estimate=60)
    bg.disconnect_device(WATCH1)
    a.wait_present(WATCH1, False)
    ch.echo('after-disconnect')
    assert a.prop(t, 'State') == 'running'
    assert a.signals('Canceled', t) == []
    bg.connect_device(WATCH1)
    ch.send('complete')
    a.wait_signal('Completed', t, lambda args: args[0] is True)


@pytest.mark.parametrize('trigger,paired', [('device-use', False), ('device-use', True),
                                            ('device-servicing', True)])
def test_device_removed_revokes(bg, a, trigger, paired):
    a.become_agent('allow')
    if paired:
        bg.pair_device(WATCH1)
    t, ch = start_run(bg, a, trigger=trigger, estimate=60)
    bg.remove_device(WATCH1)
    canceled(a, t, 'resource-revocation')
    ch.wait_line('canceled resource-revocation')


def test_unpaired_device_object_gone_keeps_servicing(bg, a):
    """An unpaired device object vanishing may be a temporary device that
    expired or a device rebooting into its updater: servicing waits for it
    (the agent's documented choice), device-use would be revoked."""
    a.become_agent('allow')
    t, ch = start_run(bg, a, trigger='device-servicing', estimate=60)
    bg.remove_device(WATCH1)
    bg.wait_for(lambda: a.device_props(WATCH1) is None, what='the device object to go')
    ch.echo('still-running')
    assert a.prop(t, 'State') == 'running'
    assert a.signals('Canceled', t) == []


@pytest.mark.parametrize('trigger', ['device-use', 'device-servicing'])
def test_adapter_powered_off_revokes(bg, a, trigger):
    a.become_agent('allow')
    t, ch = start_run(bg, a, trigger=trigger, estimate=60)
    bg.set_powered(False)
    canceled(a, t, 'resource-revocation')


def test_revoking_consent_cancels_running_device_use(bg, a):
    a.become_agent('allow')
    t, ch = start_run(bg, a)
    a.manager('RevokeConsent', 'ss', '', 'test-watch')
    canceled(a, t, 'uninstall')


@pytest.mark.config(Events={'MaxQueuedPerApp': 5})
def test_event_queue_is_bounded(bg, a):
    a.become_agent('allow')
    t, ch = start_run(bg, a)
    for i in range(10):
        ch.send('progress %d step %d' % (i * 10, i))
    ch.send('complete')
    a.wait_signal('Completed', t)
    ev = a.take_events(t)
    assert len(ev) <= 5, ev
    assert ev[-1][1] == 'completed'
    dropped = sum(e[2].get('dropped', 0) for e in ev)
    assert dropped + len(ev) == 11, ev
