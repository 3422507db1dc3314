# Races and edges around pending consent, hostile entry point I/O and
# per-app consent.
import signal

import pytest

from harness import (APP_A, APP_B, BAND3, WATCH1, WATCH2, expect_error, start_run,
                     still_serving)


def test_app_exit_while_consent_pending(bg, a, b):
    ag = bg.app('app-c', label='agent')
    ag.become_agent('hold')
    t = a.register('sync')
    a.request_async(t, WATCH1)
    ag.wait_agent_call()
    a.kill()
    # the prompt is withdrawn and the device is free again
    ag.wait_agent_call('Cancel')
    ag.agent_mode('allow')
    tb = b.register('sync')
    ch = bg.channel()
    assert b.request(tb, WATCH1, channel=ch) == ('allowed', '')


def test_consent_agent_vanishes_while_asked(bg, a):
    ag = bg.app('app-c', label='agent')
    ag.become_agent('hold')
    t = a.register('sync')
    pending = a.request_async(t, WATCH1)
    ag.wait_agent_call()
    ag.kill()
    # answered at once (not after [Consent] Timeout = 60 s), and not allowed
    r = tuple(pending.result(timeout=15))
    assert r[0] != 'allowed', r
    a.wait_state(t, 'idle')
    # nothing was stored from a non-answer
    assert a.manager('GetConsents')[0] == []


def test_device_lost_while_consent_pending(bg, a):
    a.become_agent('hold')
    t = a.register('sync')
    pending = a.request_async(t, WATCH1)
    a.wait_agent_call()
    bg.disconnect_device(WATCH1)
    a.wait_agent_call('Cancel')
    r = tuple(pending.result())
    assert r[0] != 'allowed', r
    a.wait_state(t, 'idle')


def test_unregister_while_consent_pending(bg, a):
    a.become_agent('hold')
    t = a.register('sync')
    pending = a.request_async(t, WATCH1)
    a.wait_agent_call()
    a.task(t, 'Unregister', 'b', True)
    a.wait_agent_call('Cancel')
    r = tuple(pending.result())
    assert r[0] != 'allowed', r
    bg.wait_for(lambda: t not in a.get_tasks(), what='the task to go')


def test_agent_stopping_while_consent_pending(bg, a):
    a.become_agent('hold')
    t = a.register('sync')
    pending = a.request_async(t, WATCH1)
    a.wait_agent_call()
    assert bg.stop_daemon() == 0
    a.wait_agent_call('Release')
    # the prompt on screen must be withdrawn too (Release came after it)
    assert a.agent_calls('Cancel'), 'no ConsentAgent1.Cancel for the prompt pending at shutdown'
    # the Request is answered (with a refusal or an error), never left hanging
    try:
        r = tuple(pending.result())
        assert r[0] != 'allowed', r
    except Exception as e:
        assert hasattr(e, 'name'), e
    bg.start_daemon()
    a.wait_state(t, 'idle')
    # nothing stored
    assert a.manager('GetConsents')[0] == []


def test_consent_is_per_app(bg, a, b):
    a.become_agent('allow')
    ta, ch = start_run(bg, a, device=WATCH1)
    tb = b.register('sync')
    ch2 = bg.channel()
    assert b.request(tb, WATCH2, channel=ch2) == ('allowed', '')
    calls = a.agent_calls()
    assert [c[0] for c in calls] == [APP_A, APP_B]
    # and each app sees only its own grant
    assert [c[0] for c in a.manager('GetConsents')[0]] == [APP_A]
    assert [c[0] for c in b.manager('GetConsents')[0]] == [APP_B]


def test_hostile_progress_lines(bg, a):
    a.become_agent('allow')
    t, ch = start_run(bg, a)
    for line in ('progress', 'progress abc def', 'progress -5 neg', 'progress 250 over',
                 'progress 99999999999999999999 huge', 'progress 50 ' + 'x' * 1000,
                 'progress 50 \x01\x02\x1b[31m', 'progress 50 \xff\xfe', 'nonsense',
                 '', 'echo'):
        ch.send(line)
    ch.echo('survived')
    for s in a.signals('Progress', t):
        assert 0 <= s['args'][0] <= 100, s
    pct, status = a.prop(t, 'Progress')
    assert 0 <= pct <= 100
    ch.send('complete')
    a.wait_signal('Completed', t)
    still_serving(a)


def test_oversize_line_fails_the_instance(bg, a):
    a.become_agent('allow')
    t, ch = start_run(bg, a)
    ch.send('progress 50 ' + 'x' * 100000, ok_if_closed=True)
    sig = a.wait_signal('Completed', t)
    assert sig['args'][0] is False
    a.wait_state(t, 'idle')
    # the agent let go of its end of the channel (no fd kept for a dead run)
    bg.wait_for(lambda: ch.eof, what='EOF on the channel after the run ended')
    still_serving(a)


def test_endless_line_from_the_device(bg, a):
    """8 MiB without a newline: the agent must bound what it buffers."""
    a.become_agent('allow')
    t, ch = start_run(bg, a)
    chunk = b'y' * 65536
    try:
        for _ in range(128):
            ch.mine.sendall(chunk)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the agent gave up on the channel: fine
    # either it is still serving the instance or it ended it; it answers
    bg.wait_for(lambda: a.signals('Completed', t) or a.signals('Canceled', t) or
                a.prop(t, 'State') == 'running', what='an answer')
    still_serving(a)


def test_reregister_after_unregister_while_running(bg, a):
    a.become_agent('allow')
    t, ch = start_run(bg, a)
    a.task(t, 'Unregister', 'b', False)
    t2 = a.register('sync')
    # a new registration, idle, while the old instance still runs
    if t2 != t:
        assert a.prop(t2, 'State') == 'idle'
    ch.send('complete')
    a.wait_signal('Completed', t)
    assert t2 in a.get_tasks()


def test_estimate_property_and_device_path(bg, a):
    a.become_agent('allow')
    t = a.register('update', 'device-servicing')
    ch = bg.channel()
    assert a.request(t, WATCH1, 321, channel=ch) == ('allowed', '')
    assert a.prop(t, 'Estimate') == 321
    assert a.prop(t, 'Device') == WATCH1


def test_many_tasks_and_restart_keep_ids(bg, a, b):
    paths_a = [a.register('t%d' % i) for i in range(10)]
    paths_b = [b.register('t%d' % i) for i in range(5)]
    a.task(paths_a[3], 'Unregister', 'b', False)
    assert bg.stop_daemon() == 0
    bg.start_daemon()
    assert set(a.get_tasks()) == set(paths_a) - {paths_a[3]}
    assert set(b.get_tasks()) == set(paths_b)
    # a new registration does not reuse an old path
    new = a.register('fresh')
    assert new not in paths_a + paths_b
