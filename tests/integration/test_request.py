# Task1.Request: the initiation policies and consent.
import pytest

from harness import (APP_A, BAND3, WATCH1, WATCH2, events_of, expect_error, start_run,
                     still_serving)


def test_request_consent_run_progress_completed(bg, a):
    a.become_agent('allow')
    t = a.register('sync')
    ch = bg.channel()
    assert a.request(t, WATCH1, 0, 'my-args', channel=ch) == ('allowed', '')
    # the user was asked, with what the prompt needs
    (call,) = a.agent_calls()
    assert call == [APP_A, 'App A', WATCH1, 'Test Watch', 'device-use', 0, call[6]]
    assert a.prop(t, 'State') == 'running'
    assert a.prop(t, 'Device') == WATCH1
    ch.echo('hello')
    ch.send('progress 40 copying')
    a.wait_signal('Progress', t, lambda args: args == [40, 'copying'])
    assert a.prop(t, 'Progress') == [40, 'copying']
    ch.send('progress 80 almost')
    a.wait_signal('Progress', t, lambda args: args == [80, 'almost'])
    ch.send('complete')
    a.wait_signal('Completed', t, lambda args: args == [True, '', ''])
    a.wait_state(t, 'idle')
    assert a.prop(t, 'Device') == ''
    # events are queued even though the app listened, in order
    ev = a.take_events(t)
    assert [e[1] for e in ev] == ['progress', 'progress', 'completed']
    assert [e[0] for e in ev] == sorted(e[0] for e in ev)
    assert ev[0][2]['percent'] == 40 and ev[0][2]['status'] == 'copying'
    assert ev[2][2]['success'] is True
    assert all(e[2]['time'] > 0 for e in ev)
    # ... and TakeEvents acknowledged them
    assert a.take_events(t) == []
    hist = a.manager('GetHistory', 'u', 0)[0]
    assert hist[0]['result'] == 'completed'
    assert hist[0]['device'] == WATCH1
    assert hist[0]['app-id'] == APP_A
    assert hist[0]['ended'] >= hist[0]['started'] > 0


def test_entry_point_failure(bg, a):
    a.become_agent('allow')
    t, ch = start_run(bg, a)
    ch.send('fail disk full')
    a.wait_signal('Completed', t, lambda args: args[0] is False)
    (sig,) = a.signals('Completed', t)
    assert sig['args'] == [False, 'org.bgsync.Error.Failed', 'disk full']
    assert a.manager('GetHistory', 'u', 1)[0][0]['result'] == 'failed'


def test_channel_closed_before_complete(bg, a):
    a.become_agent('allow')
    t, ch = start_run(bg, a)
    ch.close()
    sig = a.wait_signal('Completed', t)
    assert sig['args'][0] is False
    assert 'channel closed' in sig['args'][2]


def test_consent_stored_per_model(bg, a):
    a.become_agent('allow')
    t, ch = start_run(bg, a, device=WATCH1)
    ch.send('complete')
    a.wait_signal('Completed', t)
    assert len(a.agent_calls()) == 1
    # another device of the same model: not asked again
    a.wait_state(t, 'idle')
    ch2 = bg.channel()
    assert a.request(t, WATCH2, channel=ch2) == ('allowed', '')
    assert len(a.agent_calls()) == 1
    ch2.send('complete')
    bg.wait_for(lambda: len(a.signals('Completed', t)) == 2, what='second completion')
    a.wait_state(t, 'idle')
    # another model: asked
    ch3 = bg.channel()
    assert a.request(t, BAND3, channel=ch3) == ('allowed', '')
    calls = a.agent_calls()
    assert len(calls) == 2 and calls[1][3] == 'Other Band'
    consents = a.manager('GetConsents')[0]
    assert sorted((c[0], c[2], c[3]) for c in consents) == [
        (APP_A, 'other-band', True), (APP_A, 'test-watch', True)]


def test_denied_by_user_is_stored_then_revoked(bg, a):
    a.become_agent('deny')
    t = a.register('sync')
    assert a.request(t, WATCH1) == ('denied-by-user', 'consent-denied')
    assert len(a.agent_calls()) == 1
    assert a.prop(t, 'State') == 'idle'
    # stored: not asked again, still denied
    a.agent_mode('allow')
    assert a.request(t, WATCH1) == ('denied-by-user', 'consent-denied')
    assert len(a.agent_calls()) == 1
    consents = a.manager('GetConsents')[0]
    assert [(c[0], c[2], c[3]) for c in consents] == [(APP_A, 'test-watch', False)]
    # revoked: asked again
    a.manager('RevokeConsent', 'ss', '', 'test-watch')
    assert a.manager('GetConsents')[0] == []
    ch = bg.channel()
    assert a.request(t, WATCH1, channel=ch) == ('allowed', '')
    assert len(a.agent_calls()) == 2
    expect_error('org.bgsync.Error.NotFound', a.manager, 'RevokeConsent', 'ss', '', 'no-such-model')


def test_revoking_another_apps_consent_is_not_authorized(bg, a, b):
    a.become_agent('allow')
    start_run(bg, a)
    expect_error(('org.bgsync.Error.NotAuthorized', 'org.bgsync.Error.NotFound'),
                 b.manager, 'RevokeConsent', 'ss', APP_A, '')
    assert len(a.manager('GetConsents')[0]) == 1
    assert b.manager('GetConsents')[0] == []


def test_agent_error_reply_denies(bg, a):
    """An application error reply from the agent is a refusal (ConsentAgent1:
    "Return an error (any) to deny as well"), stored like a "no"; a failure
    of the call itself (org.freedesktop.DBus.Error.*, see test_bad_input)
    stores nothing."""
    a.become_agent('error')
    t = a.register('sync')
    assert a.request(t, WATCH1) == ('denied-by-user', 'consent-denied')
    consents = a.manager('GetConsents')[0]
    assert [(c[2], c[3]) for c in consents] == [('test-watch', False)]


def test_no_consent_agent(bg, a):
    t = a.register('sync')
    assert a.request(t, WATCH1) == ('denied-by-system', 'no-consent-agent')
    assert a.prop(t, 'State') == 'idle'
    # an agent that registered and went away counts as none
    ag = bg.app('app-b', label='agent')
    ag.become_agent('allow')
    ag.kill()
    assert a.request(t, WATCH1) == ('denied-by-system', 'no-consent-agent')
    assert a.manager('GetConsents')[0] == []


def test_consent_agent_registration_errors(bg, a):
    a.become_agent('allow')
    expect_error('org.bgsync.Error.AlreadyExists', a.manager, 'RegisterConsentAgent', 'o',
                 '/test/agent')
    expect_error('org.bgsync.Error.NotFound', a.manager, 'UnregisterConsentAgent', 'o',
                 '/not/registered')
    a.manager('UnregisterConsentAgent', 'o', '/test/agent')
    t = a.register('sync')
    assert a.request(t, WATCH1) == ('denied-by-system', 'no-consent-agent')


@pytest.mark.config(Consent={'Timeout': 1})
def test_consent_timeout(bg, a):
    a.become_agent('hold')
    t = a.register('sync')
    assert a.request(t, WATCH1) == ('denied-by-user', 'consent-timeout')
    a.wait_agent_call('Cancel')
    assert a.prop(t, 'State') == 'idle'
    assert a.manager('GetConsents')[0] == []  # no answer is not stored


def test_newest_agent_answers_then_previous_takes_over(bg, a):
    old = bg.app('app-b', label='old-agent')
    old.become_agent('allow')
    new = bg.app('app-c', label='new-agent')
    new.become_agent('allow')
    t = a.register('sync')
    ch = bg.channel()
    assert a.request(t, WATCH1, channel=ch) == ('allowed', '')
    assert len(new.agent_calls()) == 1 and old.agent_calls() == []
    ch.send('complete')
    a.wait_signal('Completed', t)
    a.wait_state(t, 'idle')
    new.kill()
    ch2 = bg.channel()
    assert a.request(t, BAND3, channel=ch2) == ('allowed', '')
    assert len(old.agent_calls()) == 1


def test_servicing_asks_every_time_with_estimate_and_warnings(bg, a):
    a.become_agent('allow')
    t = a.register('update', 'device-servicing')
    for i in range(2):
        ch = bg.channel()
        assert a.request(t, WATCH1, 600, channel=ch) == ('allowed', '')
        ch.send('complete')
        bg.wait_for(lambda: len(a.signals('Completed', t)) == i + 1, what='completion')
        a.wait_state(t, 'idle')
    calls = a.agent_calls()
    assert len(calls) == 2
    assert calls[0][4] == 'device-servicing'
    assert calls[0][5] == 600
    assert 'keep-in-range' in calls[0][6] and 'keep-charged' in calls[0][6]
    # servicing decisions are never stored
    assert a.manager('GetConsents')[0] == []


def test_servicing_denied_by_user(bg, a):
    a.become_agent('deny')
    t = a.register('update', 'device-servicing')
    assert a.request(t, WATCH1, 60) == ('denied-by-user', 'consent-denied')
    a.agent_mode('allow')
    ch = bg.channel()
    assert a.request(t, WATCH1, 60, channel=ch) == ('allowed', '')
    assert len(a.agent_calls()) == 2


def test_low_battery_refuses_servicing_only(bg, a):
    a.become_agent('allow')
    bg.set_battery(20, True)
    ts = a.register('update', 'device-servicing')
    assert a.request(ts, WATCH1, 60) == ('low-battery', 'low-battery')
    assert a.agent_calls() == []  # refused before asking the user
    # device-use does not care
    tu, ch = start_run(bg, a, device=WATCH2)
    ch.send('complete')
    a.wait_signal('Completed', tu)
    a.wait_state(tu, 'idle')
    # on AC power the same charge is fine
    bg.set_battery(20, False)
    ch2 = bg.channel()
    assert a.request(ts, WATCH1, 60, channel=ch2) == ('allowed', '')
    ch2.send('complete')
    a.wait_signal('Completed', ts)
    a.wait_state(ts, 'idle')
    # on battery above the limit too
    bg.set_battery(50, True)
    ch3 = bg.channel()
    assert a.request(ts, WATCH1, 60, channel=ch3) == ('allowed', '')


def test_not_foreground_when_locked(bg, a):
    a.become_agent('allow')
    t = a.register('sync')
    bg.lock_session('c1', True)
    assert a.request(t, WATCH1) == ('denied-by-system', 'not-foreground')
    ts = a.register('update', 'device-servicing')
    assert a.request(ts, WATCH1, 60) == ('denied-by-system', 'not-foreground')
    assert a.agent_calls() == []
    bg.lock_session('c1', False)
    ch = bg.channel()
    assert a.request(t, WATCH1, channel=ch) == ('allowed', '')


def test_not_foreground_when_session_inactive(bg, a):
    a.become_agent('allow')
    t = a.register('sync')
    bg.set_session_active('c1', 'seat0', False)
    assert a.request(t, WATCH1) == ('denied-by-system', 'not-foreground')
    bg.set_session_active('c1', 'seat0', True)
    ch = bg.channel()
    assert a.request(t, WATCH1, channel=ch) == ('allowed', '')


def test_not_present(bg, a):
    a.become_agent('allow')
    t = a.register('sync')
    bg.disconnect_device(WATCH1)
    a.wait_present(WATCH1, False)
    assert a.request(t, WATCH1) == ('denied-by-system', 'not-present')
    bg.connect_device(WATCH1)
    a.wait_present(WATCH1, True)
    ch = bg.channel()
    assert a.request(t, WATCH1, channel=ch) == ('allowed', '')


def test_not_accessible(bg, a):
    a.become_agent('allow')
    t = a.register('sync')
    bg.set_powered(False)
    r = a.request(t, WATCH1)
    assert r[0] == 'denied-by-system' and r[1] in ('not-accessible', 'not-present'), r
    bg.set_powered(True)
    bg.connect_device(WATCH1)
    a.wait_present(WATCH1, True)
    ch = bg.channel()
    assert a.request(t, WATCH1, channel=ch) == ('allowed', '')


def test_unknown_device(bg, a):
    a.become_agent('allow')
    t = a.register('sync')
    for dev in ('11:22:33:44:55:66', 'not-an-address', '/org/bgsync/device/hci0_11_22_33_44_55_66'):
        try:
            r = a.request(t, dev)
        except Exception as e:  # an InvalidArgs error is fine too
            assert getattr(e, 'name', '') == 'org.bgsync.Error.InvalidArgs', e
            continue
        assert r[0] == 'denied-by-system' and r[1] in ('unknown-device', 'not-present'), (dev, r)
    assert a.agent_calls() == []


def test_request_by_device_object_path(bg, a):
    a.become_agent('allow')
    t = a.register('sync')
    ch = bg.channel()
    assert a.request(t, '/org/bgsync/device/hci0_AA_BB_CC_DD_EE_01', channel=ch) == \
        ('allowed', '')
    assert a.prop(t, 'Device') == WATCH1


def test_not_privileged_for_servicing(bg, a, b):
    a.become_agent('allow')
    t = b.register('update', 'device-servicing')
    assert b.request(t, WATCH1, 60) == ('denied-by-system', 'not-privileged')
    assert a.agent_calls() == []
    # device-use needs no privilege
    tu = b.register('sync')
    ch = bg.channel()
    assert b.request(tu, WATCH1, channel=ch) == ('allowed', '')


@pytest.mark.config(Policy={'MaxServicingEstimate': 100})
def test_estimate_too_long(bg, a):
    a.become_agent('allow')
    t = a.register('update', 'device-servicing')
    assert a.request(t, WATCH1, 101) == ('denied-by-system', 'estimate-too-long')
    # the estimate must be strictly below the limit
    assert a.request(t, WATCH1, 100) == ('denied-by-system', 'estimate-too-long')
    assert a.agent_calls() == []
    ch = bg.channel()
    assert a.request(t, WATCH1, 99, channel=ch) == ('allowed', '')
    assert a.prop(t, 'Estimate') == 99
    ch.send('complete')
    a.wait_signal('Completed', t)
    a.wait_state(t, 'idle')
    # 0 = unknown is accepted
    ch0 = bg.channel()
    assert a.request(t, WATCH1, 0, channel=ch0) == ('allowed', '')
    # device-use has no estimate limit (the app is busy now, which is checked later)
    a2 = a.register('sync')
    assert a.request(a2, WATCH2, 100000) == ('denied-by-system', 'busy')


def test_busy_while_consent_pending_and_while_running(bg, a):
    a.become_agent('hold')
    t1 = a.register('sync')
    t2 = a.register('other')
    ch = bg.channel()
    pending = a.request_async(t1, WATCH1, channel=ch)
    a.wait_agent_call()
    assert a.prop(t1, 'State') == 'consent'
    assert a.request(t1, WATCH1) == ('denied-by-system', 'busy')
    assert a.request(t2, WATCH2) == ('denied-by-system', 'busy')
    a.answer(True)
    assert tuple(pending.result()) == ('allowed', '')
    assert a.prop(t1, 'State') == 'running'
    ch.echo('running')
    assert a.request(t2, BAND3) == ('denied-by-system', 'busy')
    assert a.request(t1, WATCH2) == ('denied-by-system', 'busy')
    assert len(a.agent_calls()) == 1
    # once it is done, the app may start another
    ch.send('complete')
    a.wait_signal('Completed', t1)
    a.wait_state(t1, 'idle')
    a.agent_mode('allow')
    ch2 = bg.channel()
    assert a.request(t2, WATCH2, channel=ch2) == ('allowed', '')


def test_device_busy(bg, a, b):
    a.become_agent('allow')
    start_run(bg, a, device=WATCH1)
    tb = b.register('sync')
    assert b.request(tb, WATCH1) == ('denied-by-system', 'device-busy')
    ch = bg.channel()
    assert b.request(tb, WATCH2, channel=ch) == ('allowed', '')


def test_request_on_custom_task_is_refused(bg, a):
    a.become_agent('allow')
    t = a.register('c', 'custom', 'test', {'custom-trigger': ['s', 'com.example.t']})
    try:
        r = a.request(t, WATCH1)
    except Exception as e:
        assert getattr(e, 'name', '').startswith('org.bgsync.Error.'), e
    else:
        assert r == ('denied-by-system', 'trigger-mismatch'), r
    still_serving(a)
