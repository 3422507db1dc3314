# test_shell.py: bgsyncctl's interactive shell driven through tmux
# (send-keys / capture-pane). Every wait polls capture-pane until the
# screen shows what is expected, bounded by a deadline.
import os
import shlex
import subprocess
import time

import pytest

from conftest import WATCH1, WATCH2, TIMEOUT

PROMPT = '[bgsync]# '


class Tmux:
    def __init__(self, world, tmp, args=()):
        self.sock = os.path.join(tmp, 'tmux.sock')
        env = dict(world.env)
        env['TERM'] = 'xterm'
        env.pop('NO_COLOR', None)
        self.env_args = ' '.join('%s=%s' % (k, shlex.quote(v)) for k, v in sorted(env.items())
                                 if k in ('DBUS_SESSION_BUS_ADDRESS', 'DBUS_SYSTEM_BUS_ADDRESS',
                                          'XDG_STATE_HOME', 'HOME', 'PATH', 'TERM', 'LANG'))
        cmd = 'env -i %s %s --session %s' % (self.env_args, shlex.quote(world.ctl_path),
                                             ' '.join(shlex.quote(a) for a in args))
        # the wrapper records bgsyncctl's exit status (tmux's own
        # pane_dead_status is sometimes empty) and keeps the pane; it
        # ignores Ctrl-C itself, bgsyncctl installs its own handler
        self.status_file = os.path.join(tmp, 'tmux-status')
        wrapper = 'trap "" INT; %s; echo $? > %s; exec sleep infinity' % (
            cmd, shlex.quote(self.status_file))
        self.tmux('-f', '/dev/null', 'new-session', '-d', '-x', '200', '-y', '50', wrapper)

    def tmux(self, *args):
        return subprocess.run(['tmux', '-S', self.sock] + list(args), check=True,
                              capture_output=True, text=True, timeout=TIMEOUT).stdout

    def screen(self):
        return self.tmux('capture-pane', '-p', '-J', '-t', '0')

    def lines(self):
        return [l.rstrip() for l in self.screen().splitlines()]

    def send(self, *keys):
        self.tmux('send-keys', '-t', '0', *keys)

    def type(self, text):
        self.tmux('send-keys', '-t', '0', '-l', text)

    def wait(self, pred, what, timeout=TIMEOUT):
        """Polls the pane until pred(screen text) holds."""
        deadline = time.monotonic() + timeout
        delay = 0.01
        while True:
            text = self.screen()
            value = pred(text)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError('timed out waiting for %s; screen:\n%s' % (what, text))
            time.sleep(delay)  # polling interval, not synchronisation
            delay = min(delay * 2, 0.2)

    def wait_text(self, needle, timeout=TIMEOUT):
        return self.wait(lambda s: needle in s, repr(needle), timeout)

    def last_line(self):
        ls = [l for l in self.lines() if l.strip()]
        return ls[-1] if ls else ''

    def wait_prompt(self, line=''):
        """The last non-empty line is the prompt followed by @line."""
        return self.wait(lambda s: self.last_line() == (PROMPT + line).rstrip(),
                         'prompt with %r' % line)

    def exit_status(self):
        """bgsyncctl's exit status once it exited, else None."""
        try:
            with open(self.status_file) as f:
                text = f.read()
        except FileNotFoundError:
            return None
        return int(text) if text.endswith('\n') else None

    def wait_exit(self):
        self.wait(lambda s: self.exit_status() is not None, 'bgsyncctl to exit')
        return self.exit_status()

    def kill(self):
        subprocess.run(['tmux', '-S', self.sock, 'kill-server'], capture_output=True)


@pytest.fixture
def shell(world, tmp_path):
    t = Tmux(world, str(tmp_path))
    t.wait_prompt()
    yield t
    t.kill()


def test_prompt_help_and_history(world, shell):
    shell.type('help')
    shell.send('Enter')
    shell.wait_text('Available commands:')
    screen = shell.screen()
    for cmd in ('devices', 'monitor', 'register', 'request', 'cancel', 'agent', 'history',
                'status', 'quit'):
        assert '  %s ' % cmd in screen
    shell.wait_prompt()
    shell.type('help request')
    shell.send('Enter')
    shell.wait_text('request <task> <device> [--estimate SECS]')
    shell.wait_prompt()
    shell.type('bogus')
    shell.send('Enter')
    shell.wait_text('Invalid command: bogus')
    shell.wait_prompt()
    shell.type('quit')
    shell.send('Enter')
    hist = os.path.join(world.env['XDG_STATE_HOME'], 'bgsyncctl', 'history')
    shell.wait(lambda s: os.path.exists(hist) and 'quit' in open(hist).read(),
               'history file with the commands')
    assert 'help request' in open(hist).read()


def test_completion(world, shell):
    assert world.ctl('register', 'sync-one', 'device-use', 'test').returncode == 0
    # commands
    shell.type('dev')
    shell.send('Tab')
    shell.wait_prompt('devices')
    shell.send('C-u')
    shell.wait_prompt()
    # task names (from GetTasks)
    shell.type('request sy')
    shell.send('Tab')
    shell.wait_prompt('request sync-one')
    # device addresses (from GetDevices): the common prefix, then the list
    shell.type('AA:BB')
    shell.send('Tab')
    shell.wait_prompt('request sync-one AA:BB:CC:DD:EE:0')
    shell.send('Tab', 'Tab')
    shell.wait(lambda s: WATCH1 in s and WATCH2 in s and 'AA:BB:CC:DD:EE:03' in s,
               'the address candidates listed')
    shell.send('C-u')
    shell.wait_prompt()
    # arguments of agent
    shell.type('agent o')
    shell.send('Tab', 'Tab')
    shell.wait(lambda s: 'on' in s.split() and 'off' in s.split(), 'on/off listed')


def test_request_with_agent_and_progress_bar(world, shell):
    assert world.ctl('register', 'update', 'device-servicing', 'test').returncode == 0
    chan = world.listener()
    try:
        shell.type('agent on')
        shell.send('Enter')
        shell.wait_text('Consent agent registered (ask)')
        shell.wait_prompt()
        shell.type('request update %s --estimate 120 --channel %s' % (WATCH1, chan.path))
        shell.send('Enter')
        # the same shell is the user's consent agent: it asks
        shell.wait_text('Allow bgsync command line client to update Test Watch? (y/N):')
        screen = shell.screen()
        assert 'wants to service (update) Test Watch (%s)' % WATCH1 in screen
        assert 'estimated time: 2:00' in screen
        assert 'warning: Keep the device in range' in screen
        shell.type('y')
        shell.send('Enter')
        shell.wait_text('Allowed device-servicing for bgsync command line client')
        shell.wait_text('Task update started on ' + WATCH1)
        chan.wait_line('started')
        chan.send('progress 40 writing image')
        shell.wait_text('[############------------------]  40%')
        assert 'est. 2:00  writing image' in shell.screen()
        chan.send('complete')
        shell.wait_text('Task update completed')
        shell.wait_prompt()
    finally:
        chan.close()


def test_ctrl_c_asks_then_cancels(world, shell):
    a = world.h.app('app-a')
    a.become_agent('allow')
    assert world.ctl('register', 'sync1', 'device-use', 'test').returncode == 0
    chan = world.listener()
    try:
        shell.type('request sync1 %s --channel %s' % (WATCH1, chan.path))
        shell.send('Enter')
        chan.wait_line('started')
        shell.wait_text('Task sync1 started')
        shell.send('C-c')
        shell.wait_text('Cancel the task ([c]ancel), stop watching ([s]top), or keep watching (Enter)?')
        # Enter: keep watching, the task goes on
        shell.send('Enter')
        shell.wait(lambda s: 'keep watching (Enter)?' not in s, 'the question answered')
        chan.send('progress 10 still here')
        shell.wait_text(' 10%')
        shell.send('C-c')
        # the question takes the progress line's place
        shell.wait(lambda s: 'Cancel the task ([c]ancel)' in s and ' 10%' not in s,
                   'the question again')
        shell.type('c')
        shell.send('Enter')
        chan.wait_line('canceled abort')
        shell.wait_text('Task sync1 canceled (abort)')
        shell.wait_prompt()
    finally:
        chan.close()


def test_ctrl_c_stop_watching_keeps_task_running(world, shell):
    a = world.h.app('app-a')
    a.become_agent('allow')
    assert world.ctl('register', 'sync1', 'device-use', 'test').returncode == 0
    chan = world.listener()
    try:
        shell.type('request sync1 %s --channel %s' % (WATCH1, chan.path))
        shell.send('Enter')
        chan.wait_line('started')
        shell.wait_text('Task sync1 started')
        shell.send('C-c')
        shell.wait_text('keep watching (Enter)?')
        shell.type('s')
        shell.send('Enter')
        shell.wait_text('Stopped watching task sync1; it keeps running')
        shell.wait_prompt()
        shell.type('tasks')
        shell.send('Enter')
        shell.wait(lambda s: any(l.startswith('sync1') and 'running' in l for l in s.splitlines()),
                   'sync1 running in the task list')
        chan.send('complete')
    finally:
        chan.close()


def test_one_shot_request_on_a_terminal(world, tmp_path):
    """One-shot mode on a terminal: a progress bar, and Ctrl-C asks before
    canceling (exit status 4)."""
    a = world.h.app('app-a')
    a.become_agent('allow')
    assert world.ctl('register', 'sync1', 'device-use', 'test').returncode == 0
    chan = world.listener()
    t = Tmux(world, str(tmp_path), ['request', 'sync1', WATCH1, '--channel', chan.path])
    try:
        chan.wait_line('started')
        t.wait_text('Task sync1 started on ' + WATCH1)
        chan.send('progress 50 half way')
        t.wait_text('[###############---------------]  50%')
        t.send('C-c')
        t.wait_text('keep watching (Enter)?')
        t.type('c')
        t.send('Enter')
        chan.wait_line('canceled abort')
        t.wait_text('Task sync1 canceled (abort)')
        assert t.wait_exit() == 4
    finally:
        chan.close()
        t.kill()


def test_consent_prompt_while_typing_keeps_the_line(world, shell):
    """A consent request from another client arrives while a command is half
    typed: the question takes the prompt, then the typed text comes back."""
    assert world.ctl('register', 'sync1', 'device-use', 'test').returncode == 0
    shell.type('agent on')
    shell.send('Enter')
    shell.wait_text('Consent agent registered (ask)')
    shell.wait_prompt()
    shell.type('dev')
    shell.wait_prompt('dev')
    other = world.popen('request', 'sync1', WATCH2)
    try:
        shell.wait_text('Allow bgsync command line client to use Test Watch? (y/N):')
        shell.type('y')
        shell.send('Enter')
        out, err = other.communicate(timeout=TIMEOUT)
        assert other.returncode == 0, (out, err)
    finally:
        if other.poll() is None:
            other.kill()
    shell.wait_prompt('dev')
    shell.send('Tab')
    shell.wait_prompt('devices')
    shell.send('Enter')
    shell.wait_text('TestWatch 2')


def test_monitor_until_ctrl_c(world, shell):
    shell.type('monitor')
    shell.send('Enter')
    shell.wait_text('Monitoring devices')
    world.h.disconnect_device(WATCH2)
    shell.wait_text('[CHG] Device %s Connected: no' % WATCH2)
    shell.send('C-c')
    shell.wait_prompt()
