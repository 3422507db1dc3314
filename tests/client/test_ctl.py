# test_ctl.py: bgsyncctl one-shot mode against bgsyncd on a private bus:
# output, the --json shape, and exit codes (see bgsyncctl(1)).
import json
import os
import signal
import subprocess

from conftest import WATCH1, WATCH2, BAND3, TIMEOUT

OK, ERROR, USAGE, DENIED, CANCELED, FAILED, NOT_RUNNING, NOT_FOUND = range(8)


def js(proc):
    """The single JSON document a one-shot command printed."""
    lines = [l for l in proc.stdout.splitlines() if l.strip()]
    assert len(lines) == 1, proc.stdout
    return json.loads(lines[0])


def jlines(text):
    return [json.loads(l) for l in text.splitlines() if l.strip()]


def test_version_and_help(world):
    r = world.ctl('--version')
    assert r.returncode == OK
    assert r.stdout.startswith('bgsyncctl ')
    r = world.ctl('--help')
    assert r.returncode == OK
    for cmd in ('devices', 'request', 'agent', 'history', 'raise'):
        assert '  %s ' % cmd in r.stdout


def test_help_command(world):
    r = world.ctl('help', 'request')
    assert r.returncode == OK
    assert r.stdout.startswith('request <task> <device> [--estimate SECS]')
    h = js(world.ctl('help', json=True))['commands']
    assert [c['name'] for c in h][:3] == ['devices', 'monitor', 'tasks']
    assert 'quit' not in [c['name'] for c in h]  # shell only
    assert set(h[0]) == {'name', 'arguments', 'description'}
    assert world.ctl('help', 'nope').returncode == USAGE


def test_usage_errors(world):
    r = world.ctl('--bogus')
    assert r.returncode == USAGE
    r = world.ctl('frobnicate')
    assert r.returncode == USAGE
    r = world.ctl('register', 'only-a-name')
    assert r.returncode == USAGE
    assert 'Usage: register' in r.stderr
    r = world.ctl('register', 'x', 'weekly', 'test', json=True)
    assert r.returncode == USAGE
    assert js(r)['error']['name'] == 'org.bgsync.ctl.Error.Usage'
    r = world.ctl('--timeout', 'soon', 'devices')
    assert r.returncode == USAGE


def test_devices(world):
    r = world.ctl('devices')
    assert r.returncode == OK, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split()[:3] == ['ADDRESS', 'MODEL', 'PRESENT']
    row = next(l for l in lines if l.startswith(WATCH1))
    assert 'Test Watch' in row and 'TestWatch 1' in row
    assert '\033[' not in r.stdout  # no colour on a pipe

    d = js(world.ctl('devices', json=True))
    by_addr = {x['address']: x for x in d['devices']}
    assert set(by_addr) >= {WATCH1, WATCH2, BAND3}
    w = by_addr[WATCH1]
    assert set(w) == {'path', 'address', 'name', 'adapter', 'model', 'model-name', 'present',
                      'connected', 'rssi', 'last-seen'}
    assert w['model'] == 'test-watch' and w['model-name'] == 'Test Watch'
    assert w['present'] is True and w['connected'] is True
    assert w['adapter'] == 'hci0'


def test_register_tasks_unregister(world):
    r = world.ctl('register', 'sync1', 'device-use', 'test')
    assert r.returncode == OK, r.stderr
    assert 'Registered task sync1' in r.stdout
    t = js(world.ctl('register', 'c1', 'custom', 'test', '--trigger-id', 'trig.x',
                     '--recurrence', 'always', '--condition', 'network', json=True))
    assert t['task']['name'] == 'c1' and t['task']['path'].startswith('/org/bgsync/task/')

    tasks = js(world.ctl('tasks', json=True))['tasks']
    by_name = {x['name']: x for x in tasks}
    assert by_name['sync1']['trigger'] == 'device-use'
    assert by_name['sync1']['state'] == 'idle'
    assert by_name['c1']['custom-trigger'] == 'trig.x'
    assert by_name['c1']['recurrence'] == 'always'
    r = world.ctl('tasks')
    assert 'sync1' in r.stdout and 'custom:trig.x/always' in r.stdout

    r = world.ctl('unregister', 'sync1')
    assert r.returncode == OK, r.stderr
    assert js(world.ctl('unregister', 'c1', json=True)) == {}
    names = [x['name'] for x in js(world.ctl('tasks', json=True))['tasks']]
    assert 'sync1' not in names

    # a task that does not exist: not found, in text and JSON
    r = world.ctl('cancel', 'nope')
    assert r.returncode == NOT_FOUND
    r = world.ctl('unregister', 'nope', json=True)
    assert r.returncode == NOT_FOUND
    assert js(r) == {'error': {'name': 'org.bgsync.Error.NotFound',
                               'message': "no task named 'nope' (see tasks; register it first)"}}


def test_request_without_consent_agent_is_denied(world):
    world.ctl('register', 'sync1', 'device-use', 'test')
    r = world.ctl('request', 'sync1', WATCH1)
    assert r.returncode == DENIED, (r.stdout, r.stderr)
    assert 'no-consent-agent' in r.stdout
    r = world.ctl('request', 'sync1', WATCH1, json=True)
    assert r.returncode == DENIED
    assert jlines(r.stdout)[-1] == {'event': 'denied', 'task': 'sync1', 'device': WATCH1,
                                    'result': 'denied-by-system', 'reason': 'no-consent-agent'}


def test_request_unknown_device(world):
    world.ctl('register', 'sync1', 'device-use', 'test')
    r = world.ctl('request', 'sync1', '11:22:33:44:55:66', json=True)
    assert r.returncode == NOT_FOUND, r.stdout
    last = jlines(r.stdout)[-1]
    assert last['reason'] == 'unknown-device'


def test_request_denied_by_user(world):
    a = world.h.app('app-a')
    a.become_agent('deny')
    world.ctl('register', 'sync1', 'device-use', 'test')
    r = world.ctl('request', 'sync1', WATCH1, json=True)
    assert r.returncode == DENIED
    assert jlines(r.stdout)[-1]['result'] == 'denied-by-user'
    # the agent was asked with the CLI's own identity
    call = a.agent_calls()[0]
    assert call[0] == 'org.bgsync.ctl' and call[2] == WATCH1 and call[4] == 'device-use'
    # the stored denial is listed and can be revoked
    c = js(world.ctl('consents', json=True))['consents']
    assert {'app-id': 'org.bgsync.ctl', 'model': 'test-watch', 'allowed': False} .items() <= \
        next(x for x in c if x['app-id'] == 'org.bgsync.ctl').items()
    r = world.ctl('revoke', 'org.bgsync.ctl', 'test-watch')
    assert r.returncode == OK, r.stderr
    assert not [x for x in js(world.ctl('consents', json=True))['consents']
                if x['app-id'] == 'org.bgsync.ctl']


def test_request_completes_with_progress(world):
    a = world.h.app('app-a')
    a.become_agent('allow')
    world.ctl('register', 'up', 'device-servicing', 'test')
    chan = world.listener()
    p = world.popen('request', 'up', WATCH1, '--estimate', '90', '--channel', chan.path,
                    json=True)
    try:
        chan.wait_line('started')
        chan.send('progress 40 copying')
        chan.send('complete')
        out, err = p.communicate(timeout=TIMEOUT)
    finally:
        chan.close()
        if p.poll() is None:
            p.kill()
    assert p.returncode == OK, (out, err)
    ev = jlines(out)
    assert ev[0]['event'] == 'allowed'
    assert {'event': 'progress', 'task': 'up', 'percent': 40, 'status': 'copying',
            'estimate': 90} in ev
    assert ev[-1] == {'event': 'completed', 'task': 'up', 'device': WATCH1, 'success': True,
                      'error': '', 'message': ''}
    # servicing asks every time and says what to keep in mind
    call = a.agent_calls()[0]
    assert call[4] == 'device-servicing' and call[5] == 90


def test_request_text_output_without_tty(world):
    a = world.h.app('app-a')
    a.become_agent('allow')
    world.ctl('register', 'sync1', 'device-use', 'test')
    chan = world.listener()
    p = world.popen('request', 'sync1', WATCH1, '--channel', chan.path)
    try:
        chan.wait_line('started')
        chan.send('progress 50 half')
        chan.send('fail broken pipe')
        out, err = p.communicate(timeout=TIMEOUT)
    finally:
        chan.close()
    assert p.returncode == FAILED, (out, err)
    assert 'Task sync1 started on ' + WATCH1 in out
    assert 'Progress: 50% half' in out
    assert 'Task sync1 failed: broken pipe' in out
    assert '\r' not in out and '\033[' not in out  # no animation, no colour


def test_request_canceled_by_sigint_without_tty(world):
    a = world.h.app('app-a')
    a.become_agent('allow')
    world.ctl('register', 'sync1', 'device-use', 'test')
    chan = world.listener()
    p = world.popen('request', 'sync1', WATCH1, '--channel', chan.path, json=True)
    try:
        chan.wait_line('started')
        p.send_signal(signal.SIGINT)
        chan.wait_line('canceled')
        out, err = p.communicate(timeout=TIMEOUT)
    finally:
        chan.close()
    assert p.returncode == CANCELED, (out, err)
    assert jlines(out)[-1] == {'event': 'canceled', 'task': 'sync1', 'device': WATCH1,
                               'reason': 'abort'}
    assert 'canceled abort' in chan.lines


def test_cancel_from_another_bgsyncctl(world):
    a = world.h.app('app-a')
    a.become_agent('allow')
    world.ctl('register', 'sync1', 'device-use', 'test')
    chan = world.listener()
    p = world.popen('request', 'sync1', WATCH1, '--channel', chan.path)
    try:
        chan.wait_line('started')
        r = world.ctl('cancel', 'sync1')
        assert r.returncode == OK, r.stderr
        out, err = p.communicate(timeout=TIMEOUT)
    finally:
        chan.close()
    assert p.returncode == CANCELED
    assert 'Task sync1 canceled (abort)' in out


def test_history_and_events(world):
    a = world.h.app('app-a')
    a.become_agent('allow')
    world.ctl('register', 'sync1', 'device-use', 'test')
    # no channel: the test entry point completes at once with its arguments
    r = world.ctl('request', 'sync1', WATCH1, '--args', 'hello')
    assert r.returncode == OK, (r.stdout, r.stderr)
    h = js(world.ctl('history', '--limit', '5', json=True))['history']
    path = js(world.ctl('tasks', json=True))['tasks'][0]['path']
    assert h[0]['task'] == path and h[0]['task-name'] == 'sync1'
    assert h[0]['result'] == 'completed'
    assert h[0]['app-id'] == 'org.bgsync.ctl' and h[0]['device'] == WATCH1
    r = world.ctl('history')
    row = next(l for l in r.stdout.splitlines() if 'sync1' in l)
    assert 'completed' in row and WATCH1 in row and 'org.bgsync.ctl' in row
    ev = js(world.ctl('events', 'sync1', json=True))['events']
    assert isinstance(ev, list)
    for e in ev:
        assert set(e) == {'sequence', 'kind', 'data'}


def test_raise_needs_root(world):
    r = world.ctl('raise', 'trig.x', 'data', json=True)
    if os.getuid() == 0:
        assert r.returncode == OK, r.stdout
        assert js(r) == {'started': 0}
    else:
        assert r.returncode == DENIED
        assert js(r)['error']['name'] == 'org.bgsync.Error.NotAuthorized'


def test_status(world):
    r = world.ctl('status')
    assert r.returncode == OK, r.stderr
    assert 'Agent: bgsyncd ' in r.stdout
    assert 'Devices: 3 known, 3 present' in r.stdout
    s = js(world.ctl('status', json=True))
    assert s['adapters'] == ['hci0'] and s['devices-present'] == 3
    assert s['running-tasks'] == [] and s['consent-agent'] is False


def test_agent_auto_accept_answers_another_bgsyncctl(world):
    world.ctl('register', 'sync1', 'device-use', 'test')
    agent = world.popen('agent', 'on', '--auto-accept', json=True)
    out = world.lines(agent)
    try:
        out.wait_json(lambda e: e == {'event': 'agent-registered', 'mode': 'auto-accept'},
                      'agent registered')
        r = world.ctl('request', 'sync1', WATCH2)
        assert r.returncode == OK, (r.stdout, r.stderr)
        agent.send_signal(signal.SIGINT)
        assert out.finish() == OK
    finally:
        if agent.poll() is None:
            agent.kill()
    ev = [json.loads(l) for l in out.lines]
    req = next(e for e in ev if e['event'] == 'consent-request')
    assert req['app-id'] == 'org.bgsync.ctl' and req['device'] == WATCH2
    assert req['kind'] == 'device-use' and req['model'] == 'Test Watch'
    assert {'event': 'consent-answer', 'device': WATCH2, 'allow': True,
            'how': 'auto-accept'} in ev
    assert ev[-1] == {'event': 'agent-unregistered'}


def test_agent_not_running(world):
    world.h.stop_daemon()
    r = world.ctl('devices')
    assert r.returncode == NOT_RUNNING
    assert 'not running' in r.stderr
    r = world.ctl('tasks', json=True)
    assert r.returncode == NOT_RUNNING
    assert js(r)['error']['name'] == 'org.freedesktop.DBus.Error.ServiceUnknown'


def test_monitor_shows_presence_and_own_task_events(world):
    world.ctl('register', 'sync1', 'device-use', 'test')
    a = world.h.app('app-a')
    a.become_agent('allow')
    mon = world.popen('monitor', json=True)
    out = world.lines(mon)
    try:
        out.wait_json(lambda e: e == {'event': 'monitoring'}, 'monitor ready')
        world.h.disconnect_device(WATCH2)
        ev = out.wait_json(lambda e: e.get('device') == WATCH2, 'a change of ' + WATCH2)
        assert ev['event'] == 'device-changed'
        assert ev['path'].startswith('/org/bgsync/device/')
        # a task of bgsyncctl (another process, same app): its events show
        r = world.ctl('request', 'sync1', WATCH1, '--args', 'x')
        assert r.returncode == OK, r.stderr
        ev = out.wait_json(lambda e: e.get('event') == 'task-completed', 'task-completed')
        assert ev['task'] == 'sync1' and ev['args'][0] is True
        mon.send_signal(signal.SIGINT)
        assert out.finish() == OK
    finally:
        if mon.poll() is None:
            mon.kill()


def test_monitor_text(world):
    mon = world.popen('monitor')
    out = world.lines(mon)
    try:
        out.wait(lambda l: l.startswith('Monitoring devices'), 'monitor ready')
        world.h.disconnect_device(WATCH2)
        out.wait(lambda l: l.startswith('[CHG] Device %s ' % WATCH2), 'a change of ' + WATCH2)
        mon.send_signal(signal.SIGINT)
        assert out.finish() == OK
    finally:
        if mon.poll() is None:
            mon.kill()


def test_shell_reads_commands_from_a_pipe(world):
    world.ctl('register', 'sync1', 'device-use', 'test')
    r = subprocess.run(
        [world.ctl_path, '--session'], env=world.env, input='devices\ntasks\nbogus\n',
        capture_output=True, text=True, timeout=TIMEOUT)
    # no prompt on a pipe; the commands' output in order; the last status
    assert '[bgsync]#' not in r.stdout
    assert r.stdout.index(WATCH1) < r.stdout.index('sync1')
    assert 'Invalid command: bogus' in r.stderr
    assert r.returncode == USAGE


def test_input_file_that_does_not_exist(world):
    world.ctl('register', 'fw', 'device-servicing', 'test')
    r = world.ctl('request', 'fw', WATCH1, '--input', '/nonexistent/image.bin', json=True)
    assert r.returncode == NOT_FOUND
    assert js(r)['error']['name'] == 'org.bgsync.Error.NotFound'
    assert '/nonexistent/image.bin' in js(r)['error']['message']


BASH_COMPLETION = '/usr/share/bash-completion/bash_completion'
COMPLETION = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'data',
                          'bash-completion', 'bgsyncctl')


def complete(world, *words):
    """COMPREPLY of the bash completion for the command line @words (the
    last one is being completed); with the bash-completion package when it
    is installed, else plain bash."""
    pre = ('source %s; ' % BASH_COMPLETION) if os.path.exists(BASH_COMPLETION) else ''
    script = (pre + 'source %s; COMP_WORDS=(%s); COMP_CWORD=%d; '
              'COMP_LINE="${COMP_WORDS[*]}"; COMP_POINT=${#COMP_LINE}; '
              '_bgsyncctl; printf "%%s\\n" "${COMPREPLY[@]}"' % (
                  COMPLETION, ' '.join("'%s'" % w for w in words), len(words) - 1))
    env = dict(world.env)
    env['PATH'] = os.path.dirname(world.ctl_path) + ':' + env.get('PATH', '/usr/bin:/bin')
    r = subprocess.run(['bash', '-c', script], env=env, capture_output=True, text=True,
                       timeout=TIMEOUT)
    assert r.returncode == 0, r.stderr
    return sorted(l for l in r.stdout.splitlines() if l)


def test_bash_completion(world):
    world.ctl('register', 'sync-one', 'device-use', 'test')
    assert complete(world, 'bgsyncctl', 're') == ['register', 'request', 'revoke']
    assert complete(world, 'bgsyncctl', '--se') == ['--session']
    assert complete(world, 'bgsyncctl', '--session', 'request', 's') == ['sync-one']
    assert complete(world, 'bgsyncctl', '--session', 'request', 'sync-one', 'AA') == \
        [WATCH1, WATCH2, BAND3]
    assert complete(world, 'bgsyncctl', 'agent', 'on', '--auto-') == \
        ['--auto-accept', '--auto-deny']
    assert complete(world, 'bgsyncctl', 'register', 'x', 'dev') == \
        ['device-servicing', 'device-use']


def test_agent_answers_from_a_pipe(world):
    world.ctl('register', 'sync1', 'device-use', 'test')
    agent = world.popen('agent', 'on', json=True, stdin=subprocess.PIPE)
    out = world.lines(agent)
    try:
        out.wait_json(lambda e: e.get('event') == 'agent-registered', 'agent registered')
        # answers wait in the pipe until a question reads them
        agent.stdin.write('y\n')
        agent.stdin.flush()
        r = world.ctl('request', 'sync1', WATCH1)
        assert r.returncode == OK, (r.stdout, r.stderr)
        agent.send_signal(signal.SIGINT)
        assert out.finish() == OK
    finally:
        if agent.poll() is None:
            agent.kill()
    ev = [json.loads(l) for l in out.lines]
    assert {'event': 'consent-answer', 'device': WATCH1, 'allow': True, 'how': 'answered'} in ev


def test_agent_stops_while_waiting_for_consent(world):
    a = world.h.app('app-a')
    a.become_agent('hold')
    world.ctl('register', 'sync1', 'device-use', 'test')
    p = world.popen('request', 'sync1', WATCH1, json=True)
    try:
        a.wait_agent_call()
        world.h.stop_daemon()
        out, err = p.communicate(timeout=TIMEOUT)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == NOT_RUNNING, (out, err)
    assert jlines(out)[-1]['error']['name'] in ('org.bgsync.ctl.Error.AgentNotRunning',
                                                'org.freedesktop.DBus.Error.ServiceUnknown')


def test_agent_stops_while_following(world):
    a = world.h.app('app-a')
    a.become_agent('allow')
    world.ctl('register', 'sync1', 'device-use', 'test')
    chan = world.listener()
    p = world.popen('request', 'sync1', WATCH1, '--channel', chan.path)
    try:
        chan.wait_line('started')
        world.h.stop_daemon()
        out, err = p.communicate(timeout=TIMEOUT)
    finally:
        chan.close()
        if p.poll() is None:
            p.kill()
    # the agent cancels running tasks when it stops; either way the CLI ends
    assert p.returncode in (NOT_RUNNING, CANCELED), (out, err)
