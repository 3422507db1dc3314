# More of the contract: uninstall, side-by-side kinds, unknown models,
# per-app queue bound, history limit, agent Release.
import os

import pytest

from harness import (APP_A, BAND3, WATCH1, WATCH2, expect_error, start_run, still_serving)

GADGET = 'AA:BB:CC:DD:EE:09'


def test_app_manifest_removed_cancels_uninstall(bg, a):
    a.become_agent('allow')
    t, ch = start_run(bg, a)
    os.unlink(os.path.join(bg.tmp, 'apps', 'a.conf'))
    a.wait_signal('Canceled', t, lambda args: args == ['uninstall'], timeout=30)
    ch.wait_line('canceled uninstall')
    # the app is unknown from now on
    bg.wait_for(lambda: _unknown(a), what='App A to be unknown')


def _unknown(app):
    try:
        app.get_tasks()
    except Exception as e:
        return getattr(e, 'name', '') == 'org.bgsync.Error.UnknownApp'
    return False


def test_use_and_servicing_side_by_side_on_one_device(bg, a, b):
    a.become_agent('allow')
    ts, ch = start_run(bg, a, trigger='device-servicing', estimate=60)
    tb = b.register('sync')
    ch2 = bg.channel()
    assert b.request(tb, WATCH1, channel=ch2) == ('allowed', '')
    ch.echo('servicing')
    ch2.echo('use')


def test_device_without_model_metadata(bg, a):
    bg.add_device(GADGET, 'Gadget 9')
    a.wait_present(GADGET, True)
    p = a.device_props(GADGET)
    assert p['Model'] and p['Model'] not in ('test-watch', 'other-band')
    a.become_agent('allow')
    # device-use needs no metadata
    t, ch = start_run(bg, a, device=GADGET)
    ch.send('complete')
    a.wait_signal('Completed', t)
    a.wait_state(t, 'idle')
    # servicing needs a privileged app, which only metadata can name
    ts = a.register('update', 'device-servicing')
    assert a.request(ts, GADGET, 60) == ('denied-by-system', 'not-privileged')


@pytest.mark.config(Events={'MaxQueuedPerApp': 4})
def test_queue_bound_is_per_app(bg, a, b):
    a.become_agent('allow')
    t1, ch1 = start_run(bg, a, name='one', device=WATCH1)
    for i in range(3):
        ch1.send('progress %d a' % (i + 1))
    ch1.send('complete')
    a.wait_signal('Completed', t1)
    a.wait_state(t1, 'idle')
    t2, ch2 = start_run(bg, a, name='two', device=WATCH2)
    for i in range(3):
        ch2.send('progress %d b' % (i + 1))
    ch2.send('complete')
    a.wait_signal('Completed', t2)
    # B's queue is its own
    tb, chb = start_run(bg, b, name='b', device=BAND3)
    chb.send('complete')
    b.wait_signal('Completed', tb)
    e1, e2 = a.take_events(t1), a.take_events(t2)
    assert len(e1) + len(e2) <= 4, (e1, e2)
    assert e2 and e2[-1][1] == 'completed'
    assert [e[1] for e in b.take_events(tb)] == ['completed']


def test_history_limit_and_order(bg, a):
    a.become_agent('allow')
    t = a.register('sync')
    for i, dev in enumerate((WATCH1, WATCH2, WATCH1)):
        ch = bg.channel()
        assert a.request(t, dev, channel=ch) == ('allowed', '')
        ch.send('complete')
        bg.wait_for(lambda: len(a.signals('Completed', t)) > i and a.prop(t, 'State') == 'idle',
                    what='run %d to end' % i)
    hist = a.manager('GetHistory', 'u', 0)[0]
    assert len(hist) == 3
    assert [h['started'] for h in hist] == sorted((h['started'] for h in hist), reverse=True)
    assert len(a.manager('GetHistory', 'u', 2)[0]) == 2
    assert hist[0]['device'] == WATCH1 and hist[1]['device'] == WATCH2


def test_history_is_per_app(bg, a, b):
    a.become_agent('allow')
    t, ch = start_run(bg, a)
    assert len(a.manager('GetHistory', 'u', 0)[0]) == 1
    assert b.manager('GetHistory', 'u', 0)[0] == []


def test_unregister_agent_releases_it(bg, a):
    a.become_agent('allow')
    a.manager('UnregisterConsentAgent', 'o', '/test/agent')
    a.wait_agent_call('Release')


def test_history_counts_the_bytes_moved(bg, a):
    a.become_agent('allow')
    t, ch = start_run(bg, a)
    ch.send('progress 10 ' + 'z' * 300)
    ch.echo('abc')
    ch.send('complete')
    a.wait_signal('Completed', t)
    bg.wait_for(lambda: ch.eof, what='the channel to close')
    h = a.manager('GetHistory', 'u', 1)[0][0]
    received = sum(len(l.encode()) + 1 for l in ch.lines)
    assert (h['bytes-in'], h['bytes-out']) == (ch.sent, received), (h, ch.sent, ch.lines)


def test_progress_starts_afresh_each_run(bg, a):
    a.become_agent('allow')
    t, ch = start_run(bg, a)
    ch.send('progress 80 almost')
    a.wait_signal('Progress', t)
    ch.send('complete')
    a.wait_signal('Completed', t)
    a.wait_state(t, 'idle')
    ch2 = bg.channel()
    assert a.request(t, WATCH2, channel=ch2) == ('allowed', '')
    assert a.prop(t, 'Progress') == [0, '']


def _age_history(bg, task_name, seconds):
    """moves the history rows of @task_name back in time, in the real SQLite
    file (the daemon may be running: WAL and SQLite locking make that safe)"""
    import sqlite3
    import time
    then = int((time.time() - seconds) * 1e6)
    db = sqlite3.connect(os.path.join(bg.tmp, 'state', 'bgsync.db'), timeout=10)
    try:
        with db:
            n = db.execute('UPDATE history SET started = ?, ended = ? WHERE task_name = ? AND ended > 0',
                           (then - 1000000, then, task_name)).rowcount
    finally:
        db.close()
    assert n >= 1, 'no finished history row for %s' % task_name


def _run_to_end(bg, a, name):
    t, ch = start_run(bg, a, name=name)
    ch.send('complete')
    a.wait_signal('Completed', t)
    a.wait_state(t, 'idle')
    return t


@pytest.mark.config(History={'MaxAgeDays': 1})
def test_history_is_pruned_by_age(bg, a):
    a.become_agent('allow')
    for name in ('old', 'recent', 'fresh'):
        _run_to_end(bg, a, name)
    names = lambda: sorted(h['task-name'] for h in a.manager('GetHistory', 'u', 0)[0])  # noqa: E731
    assert names() == ['fresh', 'old', 'recent']
    # at start: older than MaxAgeDays goes, younger stays
    assert bg.stop_daemon() == 0
    _age_history(bg, 'old', 2 * 86400)
    _age_history(bg, 'recent', 12 * 3600)
    bg.start_daemon()
    assert names() == ['fresh', 'recent']
    # while running: when a task ends
    _age_history(bg, 'recent', 3 * 86400)
    assert names() == ['fresh', 'recent']  # nothing prunes on its own (no timer)
    _run_to_end(bg, a, 'newest')
    bg.wait_for(lambda: names() == ['fresh', 'newest'], what='the aged entry to be pruned')


@pytest.mark.config(History={'MaxAgeDays': 0})
def test_history_max_age_zero_keeps_everything(bg, a):
    a.become_agent('allow')
    _run_to_end(bg, a, 'ancient')
    assert bg.stop_daemon() == 0
    _age_history(bg, 'ancient', 3650 * 86400)
    bg.start_daemon()
    _run_to_end(bg, a, 'new')
    assert sorted(h['task-name'] for h in a.manager('GetHistory', 'u', 0)[0]) == ['ancient', 'new']
