# Starting the agent: config problems, a damaged state, new manifests.
import os
import subprocess

import pytest

from harness import TIMEOUT, expect_error


def run_bgsyncd(bg, *extra):
    return subprocess.run([bg.bgsyncd, '--session', '--config', bg.conf_path] + list(extra),
                          env=bg.env, capture_output=True, text=True, timeout=TIMEOUT)


def test_missing_config_file_is_an_error(bg):
    bg.stop_daemon()
    out = subprocess.run([bg.bgsyncd, '--session', '--config', '/nonexistent/main.conf'],
                         env=bg.env, capture_output=True, text=True, timeout=TIMEOUT)
    assert out.returncode != 0
    assert 'main.conf' in out.stdout + out.stderr


@pytest.mark.parametrize('section,key,value', [
    ('Policy', 'DeviceUseMaxRuntime', '-1'),
    ('Policy', 'MinBatteryPercent', '101'),
    ('Policy', 'ForegroundCheck', 'maybe'),
    ('Consent', 'Timeout', 'x'),
    ('Limits', 'MaxTasksPerApp', '0'),
])
def test_bad_values_name_the_key(bg, section, key, value):
    bg.stop_daemon()
    bg.config.setdefault(section, {})[key] = value
    bg.write_config()
    out = run_bgsyncd(bg)
    assert out.returncode != 0
    assert key in out.stdout + out.stderr


def test_unknown_key_only_warns(bg, a):
    bg.stop_daemon()
    bg.config['Policy']['NoSuchKey'] = '1'
    bg.write_config()
    bg.start_daemon()
    a.register('sync')
    with open(bg.daemon_log, errors='replace') as f:
        assert 'NoSuchKey' in f.read()


def test_damaged_state_refuses_to_start_and_keeps_the_file(bg, a):
    a.register('sync')
    bg.stop_daemon()
    db = os.path.join(bg.tmp, 'state', 'bgsync.db')
    for extra in ('-wal', '-shm'):
        if os.path.exists(db + extra):
            os.unlink(db + extra)
    garbage = b'this is not an sqlite database\0' * 200
    with open(db, 'wb') as f:
        f.write(garbage)
    out = run_bgsyncd(bg)
    assert out.returncode != 0, 'started on a damaged database (silent reset?)'
    assert 'bgsync.db' in out.stdout + out.stderr
    with open(db, 'rb') as f:
        assert f.read() == garbage, 'the damaged database was modified'


def test_state_is_private(bg, a):
    a.register('sync')
    state = os.path.join(bg.tmp, 'state')
    for name in os.listdir(state):
        mode = os.stat(os.path.join(state, name)).st_mode
        assert mode & 0o077 == 0, '%s is readable by others (%o)' % (name, mode & 0o777)


def test_new_manifest_is_picked_up(bg):
    x = bg.app('app-x', label='X')
    expect_error('org.bgsync.Error.UnknownApp', x.get_tasks)
    with open(os.path.join(bg.tmp, 'apps', 'x.conf'), 'w') as f:
        f.write('[App]\nId=com.example.AppX\nName=App X\nExecutable=%s\n'
                'DeviceUseEntryPoints=test;\n' % os.path.join(bg.bindir, 'app-x'))

    def known():
        try:
            return x.get_tasks() == {}
        except Exception:
            return False
    # the reload announces nothing on the bus: re-ask at a pace, bounded
    deadline_ok = False
    for _ in range(100):
        if bg.within(known, 0.1):
            deadline_ok = True
            break
    assert deadline_ok, 'the new manifest was not picked up within 10 s'
    assert x.register('sync').startswith('/org/bgsync/task/')
