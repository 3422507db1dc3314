# The agent stopping and starting again with the same state directory.
import os
import signal

from harness import APP_A, BAND3, WATCH1, WATCH2, start_run


def test_restart_keeps_registrations_consents_and_events(bg, a):
    a.become_agent('allow')
    t_done = a.register('done')
    t_idle = a.register('idle', 'device-servicing')
    # a finished run whose events nobody took
    t, ch = start_run(bg, a, task=t_done, device=WATCH2)
    ch.send('progress 50 half')
    ch.send('complete')
    a.wait_signal('Completed', t_done)
    a.wait_state(t_done, 'idle')
    # and one running when the agent stops
    t_run, ch_run = start_run(bg, a, name='running', device=BAND3)
    assert len(a.agent_calls()) == 2
    before = a.get_tasks()

    assert bg.stop_daemon(signal.SIGTERM) == 0
    ch_run.wait_line('canceled terminating')
    a.wait_agent_call('Release')  # the agent was told it is no longer registered
    bg.start_daemon()

    after = a.get_tasks()
    assert set(after) == set(before)
    for path in before:
        assert after[path]['Name'] == before[path]['Name']
        assert after[path]['Trigger'] == before[path]['Trigger']
    assert after[t_run]['State'] == 'idle'
    # queued events survived, and the interrupted run was recorded
    ev = a.take_events(t_done)
    assert [e[1] for e in ev] == ['progress', 'completed']
    last_seq = max(e[0] for e in ev)
    ev = a.take_events(t_run)
    assert ev[-1][1] == 'canceled' and ev[-1][2]['reason'] == 'terminating'
    hist = {h['task']: h for h in a.manager('GetHistory', 'u', 0)[0]}
    assert (hist[t_run]['result'], hist[t_run]['reason']) == ('canceled', 'terminating')
    # consents survived: no agent is asked (register one that would answer)
    consents = a.manager('GetConsents')[0]
    assert sorted((c[2], c[3]) for c in consents) == [('other-band', True), ('test-watch', True)]
    calls = len(a.agent_calls())
    a.become_agent('deny')
    ch2 = bg.channel()
    assert a.request(t_done, WATCH1, channel=ch2) == ('allowed', '')
    assert len(a.agent_calls()) == calls
    # sequence numbers keep growing across the restart
    ch2.send('complete')
    a.wait_signal('Completed', t_done, lambda args: True)
    bg.wait_for(lambda: len(a.signals('Completed', t_done)) >= 2, what='second completion')
    ev2 = a.take_events(t_done)
    assert ev2 and min(e[0] for e in ev2) > last_seq, (ev, ev2)
    # re-registering a name returns the same object as before the restart
    assert a.register('idle', 'device-servicing') == t_idle


def test_crash_recovery_records_terminating(bg, a):
    a.become_agent('allow')
    t, ch = start_run(bg, a)
    bg.stop_daemon(signal.SIGKILL)
    bg.start_daemon()
    assert t in a.get_tasks()
    a.wait_state(t, 'idle')
    ev = a.take_events(t)
    assert ev and ev[-1][1] == 'canceled' and ev[-1][2]['reason'] == 'terminating', ev
    h = a.manager('GetHistory', 'u', 1)[0][0]
    assert (h['result'], h['reason']) == ('canceled', 'terminating')
    assert h['ended'] > 0


def test_request_right_after_start_waits_for_bluez(bg, a):
    """A request that arrives before the agent has read BlueZ's devices
    (bus activation: the first caller starts the agent) must not be refused
    "unknown-device". BlueZ is frozen (SIGSTOP) while the agent starts, so
    the request deterministically comes first."""
    a.become_agent('allow')
    t = a.register('sync')
    assert bg.stop_daemon() == 0
    bluez = bg.mocks['bluez5']
    os.kill(bluez.pid, signal.SIGSTOP)
    try:
        bg.start_daemon(wait_devices=False)
        a.become_agent('allow', path='/test/agent2')
        ch = bg.channel()
        pending = a.request_async(t, WATCH1, channel=ch)
        # the agent answers other callers meanwhile
        assert t in a.get_tasks()
        early = pending.done() and pending.result()
    finally:
        os.kill(bluez.pid, signal.SIGCONT)
    result = early or tuple(pending.result())
    assert tuple(result) == ('allowed', ''), result
