# test_prompt.py: bgsync-prompt against python3-dbusmock's
# notification_daemon template, with bgsyncd and a simulated app (App A)
# on the integration harness's private bus.
import os
import subprocess
import threading

import pytest
from gi.repository import Gio, GLib

import harness
from conftest import WATCH1, TIMEOUT, wait_devices

NOTIFY = 'org.freedesktop.Notifications'
NOTIFY_PATH = '/org/freedesktop/Notifications'


@pytest.fixture(autouse=True)
def need_prompt():
    path = os.environ.get('BGSYNC_PROMPT')
    if not path or not os.access(path, os.X_OK):
        pytest.skip('BGSYNC_PROMPT not set or not executable')


class MockCalls:
    """Records the notification mock's MethodCalled signals (dbusmock emits
    one per call) on a connection dispatched by its own thread."""

    def __init__(self, h):
        self.hub = h.hub
        self.calls = []
        self.ctx = GLib.MainContext()
        self.ctx.push_thread_default()
        try:
            self.bus = harness.bus_connect(h.address)
            self.bus.signal_subscribe(None, 'org.freedesktop.DBus.Mock', 'MethodCalled',
                                      NOTIFY_PATH, None, Gio.DBusSignalFlags.NONE, self._on)
        finally:
            self.ctx.pop_thread_default()
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while self.running:
            self.ctx.iteration(True)

    def _on(self, conn, sender, path, iface, member, params):
        name, args = params.unpack()
        with self.hub.cond:
            self.calls.append((name, args))
            self.hub.cond.notify_all()

    def of(self, name):
        return [args for n, args in self.calls if n == name]

    def wait(self, name, count=1):
        return self.hub.wait_for(lambda: len(self.of(name)) >= count and self.of(name),
                                 TIMEOUT, '%d %s call(s) on the notification mock (got %r)'
                                 % (count, name, self.calls))

    def stop(self):
        self.running = False
        self.ctx.wakeup()
        self.bus.close_sync(None)


class PromptWorld:
    def __init__(self, world):
        self.w = world
        self.h = world.h
        self.mock = None
        self.proc = None
        self.log = []
        self.calls = MockCalls(self.h)

    def start_mock(self, capabilities='body actions'):
        self.mock = self.h._spawn([harness.PYTHON, '-m', 'dbusmock', '--session', '--template',
                                   'notification_daemon', '--parameters',
                                   '{"capabilities": "%s"}' % capabilities], 'mock-notify.log')
        self.h._watch(self.mock)
        self.h.owners.pop(NOTIFY, None)
        self.h.wait_owned(NOTIFY, self.mock)

    def stop_mock(self):
        self.mock.terminate()
        self.mock.wait(TIMEOUT)
        self.h.wait_for(lambda: not self.h.owners.get(NOTIFY), TIMEOUT,
                        'the notification server to leave')

    def start_prompt(self, timeout=30, verbose=False):
        argv = [os.environ['BGSYNC_PROMPT'], '--session', '--notify-bus', self.h.address,
                '--timeout', str(timeout)] + (['--verbose'] if verbose else [])
        self.proc = subprocess.Popen(argv, env=self.w.env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        threading.Thread(target=self._read, daemon=True).start()
        self.wait_log('registered as consent agent')

    def _read(self):
        for line in self.proc.stderr:
            with self.h.hub.cond:
                self.log.append(line.rstrip('\n'))
                self.h.hub.cond.notify_all()
        self.h.hub.notify()

    def wait_log(self, text):
        return self.h.wait_for(lambda: next((l for l in self.log if text in l), None), TIMEOUT,
                               'bgsync-prompt to log %r (log: %r)' % (text, self.log))

    def emit(self, signal, sig, *args):
        self.h.mock(NOTIFY, NOTIFY_PATH, harness.MOCK, 'EmitSignal', 'sssav', NOTIFY, signal,
                    sig, [[s, v] for s, v in zip(sig, args)])

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(TIMEOUT)
        self.calls.stop()


@pytest.fixture
def pw(world):
    p = PromptWorld(world)
    yield p
    p.stop()


def notify_args(args):
    app_name, replaces, icon, summary, body, actions, hints, timeout = args
    return {'app': app_name, 'summary': summary, 'body': body, 'actions': list(actions),
            'hints': hints, 'timeout': timeout}


ACTIONS = ['allow', 'Allow', 'deny', "Don't allow"]


def test_sync_notification_allow(pw):
    pw.start_mock()
    pw.start_prompt()
    a = pw.h.app('app-a')
    task = a.register('sync1', 'device-use')
    pending = a.request_async(task, WATCH1)
    n = notify_args(pw.calls.wait('Notify')[0])
    assert n['summary'] == 'Allow App A to sync with your Test Watch?'
    assert n['body'] == ('App A wants to exchange data with Test Watch (%s) in the background.'
                         % WATCH1)
    assert n['actions'] == ACTIONS
    assert n['app'] == 'bgsync'
    assert not pending.done()
    pw.emit('ActionInvoked', 'us', 1, 'allow')
    assert tuple(pending.result()) == ('allowed', '')
    # the answered notification is taken down
    assert pw.calls.wait('CloseNotification')[0] == [1]
    pw.wait_log('allowed App A (com.example.AppA) on Test Watch %s [device-use]' % WATCH1)


def test_servicing_notification_text_and_deny(pw):
    pw.start_mock()
    pw.start_prompt()
    a = pw.h.app('app-a')
    task = a.register('fw', 'device-servicing')
    pending = a.request_async(task, WATCH1, estimate=300)
    n = notify_args(pw.calls.wait('Notify')[0])
    assert n['summary'] == 'App A wants to update your Test Watch'
    assert 'This takes about 5 minutes.' in n['body']
    assert 'Keep the device in range.' in n['body']
    assert 'Keep this computer charged.' in n['body']
    assert n['actions'] == ACTIONS
    pw.emit('ActionInvoked', 'us', 1, 'deny')
    assert tuple(pending.result()) == ('denied-by-user', 'consent-denied')
    pw.wait_log("the user chose Don't allow")


def test_dismissed_notification_denies(pw):
    pw.start_mock()
    pw.start_prompt()
    a = pw.h.app('app-a')
    task = a.register('sync1', 'device-use')
    pending = a.request_async(task, WATCH1)
    pw.calls.wait('Notify')
    pw.emit('NotificationClosed', 'uu', 1, 2)
    assert tuple(pending.result()) == ('denied-by-user', 'consent-denied')
    pw.wait_log('the notification was dismissed without an answer')


def test_local_timeout_denies_and_closes(pw):
    pw.start_mock()
    pw.start_prompt(timeout=1)
    a = pw.h.app('app-a')
    task = a.register('sync1', 'device-use')
    pending = a.request_async(task, WATCH1)
    n = notify_args(pw.calls.wait('Notify')[0])
    assert n['timeout'] == 1000
    assert tuple(pending.result()) == ('denied-by-user', 'consent-denied')
    assert pw.calls.wait('CloseNotification')[0] == [1]
    pw.wait_log('no answer in time')


def test_no_notification_server_denies_then_reuses_it(pw):
    pw.start_prompt()
    a = pw.h.app('app-a')
    task = a.register('fw', 'device-servicing')
    r = a.request(task, WATCH1, estimate=60)
    assert tuple(r) == ('denied-by-user', 'consent-denied')
    pw.wait_log('cannot show a notification (no notification server?)')
    # the server comes back: the next prompt uses it
    pw.start_mock()
    pending = a.request_async(task, WATCH1, estimate=60)
    pw.calls.wait('Notify')
    pw.emit('ActionInvoked', 'us', 1, 'allow')
    assert tuple(pending.result()) == ('allowed', '')


def test_notification_server_leaving_denies(pw):
    pw.start_mock()
    pw.start_prompt(verbose=True)
    a = pw.h.app('app-a')
    task = a.register('sync1', 'device-use')
    pending = a.request_async(task, WATCH1)
    # shown: the prompt has the notification's id (debug log)
    pw.wait_log('notification 1 for App A')
    pw.stop_mock()
    assert tuple(pending.result()) == ('denied-by-user', 'consent-denied')
    pw.wait_log('the notification server went away')


@pytest.mark.config(Consent={'Timeout': '1'})
def test_agent_cancel_closes_notification(pw):
    pw.start_mock()
    pw.start_prompt(timeout=30)
    a = pw.h.app('app-a')
    task = a.register('sync1', 'device-use')
    r = a.request(task, WATCH1)
    assert tuple(r) == ('denied-by-user', 'consent-timeout')
    assert pw.calls.wait('CloseNotification')[0] == [1]
    pw.wait_log('canceled by the agent')


def test_reregisters_when_the_daemon_comes_back(pw):
    pw.start_mock()
    pw.start_prompt()
    pw.h.stop_daemon()
    pw.wait_log('the bgsync agent left the bus')
    pw.h.start_daemon()
    wait_devices(pw.h)
    pw.h.wait_for(lambda: len([l for l in pw.log if 'registered as consent agent' in l]) >= 2,
                  TIMEOUT, 'a second registration (log: %r)' % pw.log)
    a = pw.h.app('app-a')
    task = a.register('sync1', 'device-use')
    pending = a.request_async(task, WATCH1)
    pw.calls.wait('Notify')
    pw.emit('ActionInvoked', 'us', 1, 'allow')
    assert tuple(pending.result()) == ('allowed', '')


def test_server_without_actions_is_logged(pw):
    pw.start_mock(capabilities='body')
    pw.start_prompt()
    pw.wait_log('the notification server does not show actions')
