#!/usr/bin/python3
# test-dbus-policy.py: dbus-policy/org.bgsync.conf on a system-like bus.
#
# Starts a dbus-daemon whose configuration copies the default-deny rules of
# /usr/share/dbus-1/system.conf and includes only our policy file, a
# stand-in org.bgsync service (root) and clients running as "nobody", then
# checks who may own the name and call what. Needs root (to setuid the
# clients); exits 77 (skip) otherwise.
#
# usage: test-dbus-policy.py <path to org.bgsync.conf>
#   (internal modes: --service ADDR, --agent ADDR, --client ADDR AGENT)

import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile

import dbus
import dbus.mainloop.glib
import dbus.service
from gi.repository import GLib

NAME = 'org.bgsync'
MANAGER = 'org.bgsync.Manager1'
TASK = 'org.bgsync.Task1'
AGENT = 'org.bgsync.ConsentAgent1'
ACCESS_DENIED = 'org.freedesktop.DBus.Error.AccessDenied'
TIMEOUT = 10

BUS_CONF = '''<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <auth>EXTERNAL</auth>
  <listen>unix:path={tmp}/system_bus_socket</listen>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus"
           send_interface="org.freedesktop.DBus" />
    <allow send_destination="org.freedesktop.DBus"
           send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus"
           send_interface="org.freedesktop.DBus.Properties"/>
  </policy>
  <includedir>{tmp}/system.d</includedir>
</busconfig>
'''


# ---- the stand-in bgsyncd (runs as root) ----

class StandIn(dbus.service.Object):
    @dbus.service.method(MANAGER, in_signature='sssa{sv}', out_signature='o')
    def RegisterTask(self, name, trigger, entry_point, options):
        return dbus.ObjectPath('/org/bgsync/task/1')

    @dbus.service.method(MANAGER, in_signature='', out_signature='a{oa{sv}}')
    def GetTasks(self):
        return dbus.Dictionary({}, signature='oa{sv}')

    @dbus.service.method(MANAGER, in_signature='ss', out_signature='u')
    def RaiseCustomTrigger(self, trigger_id, data):
        return dbus.UInt32(7)

    @dbus.service.method('org.bgsync.Bogus1', in_signature='', out_signature='')
    def Foo(self):
        pass

    @dbus.service.method(dbus.PROPERTIES_IFACE, in_signature='ss', out_signature='v')
    def Get(self, iface, prop):
        return '0.1.0'

    @dbus.service.method(dbus.PROPERTIES_IFACE, in_signature='s', out_signature='a{sv}')
    def GetAll(self, iface):
        return {'Version': '0.1.0'}

    @dbus.service.method(dbus.PROPERTIES_IFACE, in_signature='ssv', out_signature='')
    def Set(self, iface, prop, value):
        pass

    # reached only if the policy lets a caller send ConsentAgent1 to us
    @dbus.service.method(AGENT, in_signature='', out_signature='')
    def Release(self):
        pass


class StandInTask(dbus.service.Object):
    @dbus.service.method(TASK, in_signature='', out_signature='')
    def Cancel(self):
        pass


def run_service(address):
    dbus.mainloop.glib.DBusGMainLoop(set_as_default=True)
    bus = dbus.bus.BusConnection(address)
    StandIn(bus, '/org/bgsync')
    StandInTask(bus, '/org/bgsync/task/1')
    bus.request_name(NAME, dbus.bus.NAME_FLAG_DO_NOT_QUEUE)
    print('ready', flush=True)
    GLib.MainLoop().run()


# ---- a consent agent (runs as nobody) ----

class Agent(dbus.service.Object):
    @dbus.service.method(AGENT, in_signature='sssssuas', out_signature='b')
    def RequestConsent(self, app_id, app_name, device, model, kind, estimate, warnings):
        return True


def run_agent(address):
    dbus.mainloop.glib.DBusGMainLoop(set_as_default=True)
    bus = dbus.bus.BusConnection(address)
    Agent(bus, '/agent')
    print(bus.get_unique_name(), flush=True)
    GLib.MainLoop().run()


# ---- the unprivileged client (runs as nobody) ----

def attempt(fn):
    try:
        fn()
        return 'ok'
    except dbus.exceptions.DBusException as e:
        return e.get_dbus_name()


def run_client(address, agent_name):
    bus = dbus.bus.BusConnection(address)
    obj = bus.get_object(NAME, '/org/bgsync', introspect=False)
    task = bus.get_object(NAME, '/org/bgsync/task/1', introspect=False)
    agent = bus.get_object(agent_name, '/agent', introspect=False)
    results = {
        'uid': os.getuid(),
        'own': attempt(lambda: bus.request_name(NAME, dbus.bus.NAME_FLAG_DO_NOT_QUEUE)),
        'RegisterTask': attempt(lambda: obj.RegisterTask('t', 'custom', 'test', dbus.Dictionary({}, signature='sv'),
                                                         dbus_interface=MANAGER, timeout=TIMEOUT)),
        'GetTasks': attempt(lambda: obj.GetTasks(dbus_interface=MANAGER, timeout=TIMEOUT)),
        'RaiseCustomTrigger': attempt(lambda: obj.RaiseCustomTrigger('x', '', dbus_interface=MANAGER,
                                                                     timeout=TIMEOUT)),
        'Bogus': attempt(lambda: obj.Foo(dbus_interface='org.bgsync.Bogus1', timeout=TIMEOUT)),
        'Task.Cancel': attempt(lambda: task.Cancel(dbus_interface=TASK, timeout=TIMEOUT)),
        'Get': attempt(lambda: obj.Get(MANAGER, 'Version', dbus_interface=dbus.PROPERTIES_IFACE,
                                       timeout=TIMEOUT)),
        'GetAll': attempt(lambda: obj.GetAll(MANAGER, dbus_interface=dbus.PROPERTIES_IFACE,
                                             timeout=TIMEOUT)),
        'Set': attempt(lambda: obj.Set(MANAGER, 'Version', 'x',
                                       dbus_interface=dbus.PROPERTIES_IFACE, timeout=TIMEOUT)),
        'Introspect': attempt(lambda: obj.Introspect(dbus_interface='org.freedesktop.DBus.Introspectable',
                                                     timeout=TIMEOUT)),
        'Ping': attempt(lambda: obj.Ping(dbus_interface='org.freedesktop.DBus.Peer', timeout=TIMEOUT)),
        # only bgsyncd may call consent agents: a user may not prompt another
        'AgentFromUser': attempt(lambda: agent.RequestConsent('a', 'A', 'd', 'm', 'device-use',
                                                              dbus.UInt32(0), dbus.Array([], 's'),
                                                              dbus_interface=AGENT, timeout=TIMEOUT)),
        # nor pose as bgsyncd's consent agent interface towards the daemon
        'AgentIfaceToService': attempt(lambda: obj.Release(dbus_interface=AGENT, timeout=TIMEOUT)),
    }
    print(json.dumps(results), flush=True)


# ---- the driver ----

def drop_to_nobody():
    nobody = pwd.getpwnam('nobody')
    os.setgroups([])
    os.setgid(nobody.pw_gid)
    os.setuid(nobody.pw_uid)


def main():
    policy = os.path.abspath(sys.argv[1])
    if os.geteuid() != 0:
        print('SKIP: needs root to run clients as another user')
        return 77
    try:
        pwd.getpwnam('nobody')
    except KeyError:
        print('SKIP: no user nobody')
        return 77
    dbus_daemon = shutil.which('dbus-daemon')
    if dbus_daemon is None:
        print('SKIP: no dbus-daemon')
        return 77

    tmp = tempfile.mkdtemp(prefix='bgs-policy-')
    procs = []
    failures = []

    def check(what, got, want):
        ok = got == want
        print(f'{"ok" if ok else "FAIL"}: {what}: {got}' + ('' if ok else f' (want {want})'))
        if not ok:
            failures.append(what)

    try:
        os.chmod(tmp, 0o755)
        os.mkdir(os.path.join(tmp, 'system.d'))
        shutil.copy(policy, os.path.join(tmp, 'system.d', 'org.bgsync.conf'))
        shutil.copy(os.path.abspath(__file__), os.path.join(tmp, 'script.py'))
        script = os.path.join(tmp, 'script.py')
        os.chmod(script, 0o644)
        conf = os.path.join(tmp, 'system.conf')
        with open(conf, 'w') as f:
            f.write(BUS_CONF.format(tmp=tmp))

        daemon = subprocess.Popen([dbus_daemon, '--config-file=' + conf, '--nofork',
                                   '--print-address=1'], stdout=subprocess.PIPE)
        procs.append(daemon)
        address = daemon.stdout.readline().decode().strip()
        if not address:
            print('FAIL: dbus-daemon did not start')
            return 1
        env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=address)
        env.pop('DBUS_SESSION_BUS_ADDRESS', None)

        # a stand-in service as root: "ready" once it owns the name (the
        # bus replied to RequestName), so no waiting is needed after that
        service = subprocess.Popen([sys.executable, script, '--service', address],
                                   stdout=subprocess.PIPE, env=env)
        procs.append(service)
        if service.stdout.readline().decode().strip() != 'ready':
            print('FAIL: root may not own org.bgsync')
            return 1

        agent = subprocess.Popen([sys.executable, script, '--agent', address],
                                 stdout=subprocess.PIPE, env=env, preexec_fn=drop_to_nobody,
                                 cwd=tmp)
        procs.append(agent)
        agent_name = agent.stdout.readline().decode().strip()

        client = subprocess.run([sys.executable, script, '--client', address, agent_name],
                                stdout=subprocess.PIPE, env=env, preexec_fn=drop_to_nobody,
                                cwd=tmp, timeout=60)
        res = json.loads(client.stdout.decode())
        check('client runs as nobody', res['uid'], pwd.getpwnam('nobody').pw_uid)
        check('nobody owns org.bgsync', res['own'], ACCESS_DENIED)
        for allowed in ('RegisterTask', 'GetTasks', 'Task.Cancel', 'Get', 'GetAll',
                        'Introspect', 'Ping'):
            check(f'nobody calls {allowed}', res[allowed], 'ok')
        for denied in ('RaiseCustomTrigger', 'Bogus', 'Set', 'AgentFromUser',
                       'AgentIfaceToService'):
            check(f'nobody calls {denied}', res[denied], ACCESS_DENIED)

        # root: may raise custom triggers and call consent agents, but the
        # unknown interface stays closed
        bus = dbus.bus.BusConnection(address)
        obj = bus.get_object(NAME, '/org/bgsync', introspect=False)
        check('root calls RaiseCustomTrigger',
              attempt(lambda: obj.RaiseCustomTrigger('x', '', dbus_interface=MANAGER,
                                                     timeout=TIMEOUT)), 'ok')
        check('root calls Bogus', attempt(lambda: obj.Foo(dbus_interface='org.bgsync.Bogus1',
                                                          timeout=TIMEOUT)), ACCESS_DENIED)
        agent_obj = bus.get_object(agent_name, '/agent', introspect=False)
        check('root (as bgsyncd) calls RequestConsent on an agent',
              attempt(lambda: agent_obj.RequestConsent('a', 'A', 'd', 'm', 'device-use',
                                                       dbus.UInt32(0), dbus.Array([], 's'),
                                                       dbus_interface=AGENT, timeout=TIMEOUT)),
              'ok')
    finally:
        for p in reversed(procs):
            p.terminate()
            p.wait()
        shutil.rmtree(tmp, ignore_errors=True)

    if failures:
        print(f'{len(failures)} check(s) failed')
        return 1
    return 0


if __name__ == '__main__':
    if len(sys.argv) > 2 and sys.argv[1] == '--service':
        run_service(sys.argv[2])
    elif len(sys.argv) > 2 and sys.argv[1] == '--agent':
        run_agent(sys.argv[2])
    elif len(sys.argv) > 3 and sys.argv[1] == '--client':
        run_client(sys.argv[2], sys.argv[3])
    else:
        sys.exit(main())
