# One app cannot see or touch another app's tasks; one user cannot see
# another user's consents.
import pytest

from harness import (APP_A, MANAGER, PROPS, TASK, WATCH1, WATCH2, expect_error, start_run,
                     still_serving)

NOT_FOUND = 'org.bgsync.Error.NotFound'


def assert_invisible(app, path):
    """Every way of reaching path answers NotFound."""
    expect_error(NOT_FOUND, app.task, path, 'Request', 'susa{sv}', WATCH1, 0, '', {})
    expect_error(NOT_FOUND, app.task, path, 'Cancel')
    expect_error(NOT_FOUND, app.task, path, 'TakeEvents')
    expect_error(NOT_FOUND, app.task, path, 'Unregister', 'b', True)
    expect_error(NOT_FOUND, app.prop, path, 'State')
    expect_error(NOT_FOUND, app.prop, path, 'Name')
    expect_error(NOT_FOUND, app.props, path)
    assert path not in app.get_tasks()


def test_other_apps_task_is_not_found(bg, a, b):
    a.become_agent('allow')
    t, ch = start_run(bg, a)
    assert_invisible(b, t)
    # nothing B did reached the task
    ch.echo('untouched')
    assert a.prop(t, 'State') == 'running'
    assert a.signals('Canceled', t) == []
    # B does not receive A's task signals, broadcast or unicast
    ch.send('progress 30 secret')
    a.wait_signal('Progress', t)
    ch.send('complete')
    a.wait_signal('Completed', t)
    b.get_tasks()  # a round trip after them: anything sent to B arrived before its reply
    assert b.signals(path=t) == []
    # and A's events are still there for A
    assert [e[1] for e in a.take_events(t)] == ['progress', 'completed']


def test_unknown_task_path_is_not_found(bg, a):
    a.register('sync')
    for path in ('/org/bgsync/task/999999', '/org/bgsync/task/0', '/org/bgsync/task/abc'):
        assert_invisible(a, path)
    still_serving(a)


def test_introspection_does_not_list_other_apps_tasks(bg, a, b):
    t = a.register('sync')
    try:
        xml = b.call('/org/bgsync/task', 'org.freedesktop.DBus.Introspectable', 'Introspect')[0]
    except Exception:
        xml = ''
    assert '"%s"' % t.rsplit('/', 1)[1] not in xml
    # A sees its own
    xml = a.call('/org/bgsync/task', 'org.freedesktop.DBus.Introspectable', 'Introspect')[0]
    assert '"%s"' % t.rsplit('/', 1)[1] in xml


@pytest.mark.root
def test_other_user_is_isolated(bg, a):
    a.become_agent('allow')
    t, ch = start_run(bg, a)
    assert len(a.manager('GetConsents')[0]) == 1
    # the same app run by another user (nobody, with its own session)
    bg.add_session('c2', 'seat1', 65534, 'nobody', True)
    n = bg.app('app-a', user='nobody', label='A-nobody')
    assert n.uid == 65534
    assert n.manager('GetConsents')[0] == []
    assert n.get_tasks() == {}
    assert_invisible(n, t)
    expect_error(('org.bgsync.Error.NotFound', 'org.bgsync.Error.NotAuthorized'),
                 n.manager, 'RevokeConsent', 'ss', APP_A, 'test-watch')
    assert len(a.manager('GetConsents')[0]) == 1
    # nobody has no consent agent: root's agent is not asked for nobody
    tn = n.register('sync')
    assert tn != t
    assert n.request(tn, WATCH2) == ('denied-by-system', 'no-consent-agent')
    assert len(a.agent_calls()) == 1
    # with its own agent, nobody is asked itself (root's grant does not count)
    n.become_agent('deny')
    assert n.request(tn, WATCH2) == ('denied-by-user', 'consent-denied')
    assert len(n.agent_calls()) == 1
    assert len(a.agent_calls()) == 1
    # and its refusal is invisible to root
    assert [c[3] for c in a.manager('GetConsents')[0]] == [True]
    ch.echo('still-running')
