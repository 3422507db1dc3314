# Untrusted input over D-Bus: each case gets an error and the agent keeps
# serving (checked with a follow-up call).
#
# Invalid UTF-8 cannot be sent in a D-Bus 's': libdbus and GDBus refuse to
# marshal it and dbus-daemon disconnects a peer that sends it, so it never
# reaches the agent. What can reach it and is tested here: control
# characters, oversize strings, empty strings, wrong types.
import os
import socket

import pytest

from harness import (MANAGER, MANAGER_PATH, PROPS, TASK, WATCH1, expect_error, start_run,
                     still_serving)

INVALID = 'org.bgsync.Error.InvalidArgs'
BUS_INVALID = 'org.freedesktop.DBus.Error.InvalidArgs'


@pytest.mark.parametrize('method,sig,args', [
    ('RegisterTask', 'i', [1]),
    ('RegisterTask', 'sss', ['a', 'device-use', 'test']),
    ('RegisterTask', 'sssa{ss}', ['a', 'device-use', 'test', {}]),
    ('GetTasks', 's', ['x']),
    ('RevokeConsent', 'u', [1]),
    ('RaiseCustomTrigger', 'u', [1]),
    ('GetHistory', 's', ['x']),
    ('NoSuchMethod', '', []),
])
def test_wrong_signature(bg, a, method, sig, args):
    e = expect_error((BUS_INVALID, INVALID, 'org.freedesktop.DBus.Error.UnknownMethod'),
                     a.call, MANAGER_PATH, MANAGER, method, sig, args)
    still_serving(a)


def test_wrong_signature_on_task(bg, a):
    t = a.register('sync')
    for method, sig, args in [('Request', 's', ['x']), ('Request', 'suss', ['x', 0, '', '']),
                              ('Unregister', 's', ['yes']), ('Cancel', 'b', [True])]:
        e = expect_error((BUS_INVALID, INVALID), a.call, t, TASK, method, sig, args)
    assert a.prop(t, 'State') == 'idle'
    expect_error(('org.freedesktop.DBus.Error.UnknownProperty', BUS_INVALID, INVALID,
                  'org.bgsync.Error.NotFound'),
                 a.prop, t, 'NoSuchProperty')
    expect_error(('org.freedesktop.DBus.Error.PropertyReadOnly', BUS_INVALID, INVALID,
                  'org.freedesktop.DBus.Error.AccessDenied', 'org.bgsync.Error.NotAuthorized',
                  'org.freedesktop.DBus.Error.NotSupported'),
                 a.call, t, PROPS, 'Set', 'ssv', [TASK, 'State', ['s', 'running']])
    assert a.prop(t, 'State') == 'idle'
    still_serving(a)


@pytest.mark.parametrize('name', [
    '',                      # empty
    'x' * 129,               # one above the limit
    'x' * (1024 * 1024),     # a megabyte
    'line\nbreak',           # control characters
    'nul-ish\x01',
    'esc\x1b[31m',
], ids=['empty', '129-bytes', '1-MiB', 'newline', 'ctrl-a', 'escape'])
def test_bad_task_names(bg, a, name):
    expect_error(INVALID, a.register, name)
    assert a.get_tasks() == {}


def test_name_at_the_limit_and_unicode(bg, a):
    t = a.register('x' * 128)
    assert a.prop(t, 'Name') == 'x' * 128
    t2 = a.register('Synchronisation ☃ 同期')
    assert a.prop(t2, 'Name') == 'Synchronisation ☃ 同期'


@pytest.mark.parametrize('trigger', ['', 'bogus', 'device-use\x00', 'DEVICE-USE'])
def test_bad_trigger_kind(bg, a, trigger):
    expect_error(INVALID, a.register, 'sync', trigger.replace('\x00', '\x01'))
    still_serving(a)


@pytest.mark.parametrize('options', [
    {'custom-trigger': ['u', 1]},
    {'custom-trigger': ['s', 'com.example.t'], 'recurrence': ['u', 1]},
    {'custom-trigger': ['s', 'com.example.t'], 'conditions': ['s', 'network']},
    {'custom-trigger': ['s', 'x' * 100000]},
    {'custom-trigger': ['s', 'bad\x02id']},
], ids=['trigger-u', 'recurrence-u', 'conditions-s', 'trigger-100k', 'trigger-ctrl'])
def test_wrong_option_types(bg, a, options):
    expect_error(INVALID, a.register, 'c', 'custom', 'test', options)
    still_serving(a)


def test_unknown_option_is_refused_or_ignored(bg, a):
    try:
        a.register('sync', options={'no-such-option': ['s', 'x']})
    except Exception as e:
        assert getattr(e, 'name', '') == INVALID, e
    still_serving(a)


def test_bad_request_input(bg, a):
    a.become_agent('allow')
    t = a.register('sync')
    # channel of the wrong type
    expect_error(INVALID, a.request, t, WATCH1, options={'channel': ['s', '/tmp/sock']})
    expect_error(INVALID, a.request, t, WATCH1, options={'channel': ['i', 0]})
    # a handle that indexes no passed fd
    expect_error(INVALID, a.request, t, WATCH1, options={'channel': ['h', 3]})
    # input / output-dir of the wrong type
    expect_error(INVALID, a.request, t, WATCH1, options={'input': ['s', '/etc/passwd']})
    expect_error(INVALID, a.request, t, WATCH1, options={'output-dir': ['s', '/tmp']})
    # oversize arguments string (MaxStringLength=4096)
    expect_error(INVALID, a.request, t, WATCH1, arguments='x' * 100000)
    # device string with control characters / oversize
    for dev in ('AA:BB\n', 'A' * 100000):
        try:
            r = a.request(t, dev)
            assert r[0] == 'denied-by-system', r
        except Exception as e:
            assert getattr(e, 'name', '') == INVALID, e
    assert a.prop(t, 'State') == 'idle'
    # none of that started anything or asked the user
    assert a.agent_calls() == []
    # and a good request still works
    ch = bg.channel()
    assert a.request(t, WATCH1, channel=ch) == ('allowed', '')


def test_channel_that_is_not_a_socket(bg, a):
    """A regular file or a pipe as the channel: refused or failed cleanly."""
    a.become_agent('allow')
    t = a.register('sync')
    r, w = os.pipe()
    p = a.call_async(t, TASK, 'Request', 'susa{sv}', [WATCH1, 0, '', {'channel': ['h', 0]}],
                     fds=[w])
    os.close(w)
    try:
        res = p.result()
    except Exception as e:
        assert getattr(e, 'name', '').startswith('org.bgsync.Error.'), e
    else:
        if res[0] == 'allowed':
            # a write-only pipe: the entry point fails, the agent survives
            a.wait_signal('Completed', t)
    os.close(r)
    still_serving(a)


def test_bad_consent_agent_path(bg, a):
    expect_error((INVALID, 'org.bgsync.Error.NotAuthorized'),
                 a.manager, 'RegisterConsentAgent', 'o', '/')
    still_serving(a)


def test_consent_agent_that_replies_garbage(bg, a):
    """An agent object that answers RequestConsent with the wrong type."""
    ag = bg.app('app-b', label='bad-agent')
    # export nothing at the path: the call fails with UnknownMethod/UnknownObject
    ag.manager('RegisterConsentAgent', 'o', '/no/object/here')
    t = a.register('sync')
    r = a.request(t, WATCH1)
    assert r[0] in ('denied-by-user', 'denied-by-system'), r
    # a broken agent is not the user saying no: nothing may be stored
    assert a.manager('GetConsents')[0] == [], 'a failed agent call was stored as a denial'
    still_serving(a)


def test_many_requests_in_flight(bg, a):
    """A burst of calls while a consent is pending does not wedge the agent."""
    a.become_agent('hold')
    t = a.register('sync')
    first = a.request_async(t, WATCH1)
    a.wait_agent_call()
    pend = [a.call_async(MANAGER_PATH, MANAGER, 'GetTasks') for _ in range(50)]
    for p in pend:
        assert t in p.result()[0]
    a.answer(False)
    assert tuple(first.result()) == ('denied-by-user', 'consent-denied')
