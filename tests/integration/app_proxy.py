#!/usr/bin/python3
# app_proxy.py: one simulated app for the integration tests.
#
# Run under a copy of the Python interpreter (<tmp>/bin/app-a, ...) so that
# /proc/<pid>/exe, which the agent matches against app manifests' Executable=,
# names the simulated app. The test drives it over an AF_UNIX stream
# socket whose fd number is in $BGS_PROXY_FD: JSON lines both ways; file
# descriptors travel with SCM_RIGHTS next to the line that uses them ("nfds": n
# takes the next n received fds).
#
# Commands (test -> proxy), every one with an "id":
#   {"op": "call", "dest", "path", "iface", "method", "sig", "args",
#    "nfds", "timeout"}   -> {"type": "reply", "id", "ok": true, "value": [...]}
#                         or {"type": "reply", "id", "ok": false, "error", "message"}
#   {"op": "agent", "path", "mode"}   export org.bgsync.ConsentAgent1 at path;
#        mode "allow" | "deny" | "error" | "hold" (never answer until told)
#   {"op": "agent-mode", "mode"}      change how later requests are answered
#   {"op": "answer", "allow": bool}   answer the oldest held request
#   {"op": "unexport"}                drop the agent object
#   {"op": "exit"}
# Unsolicited (proxy -> test):
#   {"type": "ready", "pid", "uid", "unique_name", "exe"}
#   {"type": "signal", "sender", "path", "iface", "member", "args"}  (org.bgsync.*
#        signals and PropertiesChanged of org.bgsync.* interfaces)
#   {"type": "agent", "member": "RequestConsent"|"Cancel"|"Release", "args"}
#
# Argument encoding: JSON values are converted along the D-Bus signature;
# a "v" is given as [signature, value]; an "h" is an index into the fds of
# the call.
import json
import os
import socket
import sys
import traceback

from gi.repository import Gio, GLib

AGENT_XML = """
<node>
  <interface name="org.bgsync.ConsentAgent1">
    <method name="RequestConsent">
      <arg name="app_id" type="s" direction="in"/>
      <arg name="app_name" type="s" direction="in"/>
      <arg name="device" type="s" direction="in"/>
      <arg name="model" type="s" direction="in"/>
      <arg name="kind" type="s" direction="in"/>
      <arg name="estimate" type="u" direction="in"/>
      <arg name="warnings" type="as" direction="in"/>
      <arg name="allow" type="b" direction="out"/>
    </method>
    <method name="Cancel"/>
    <method name="Release"/>
  </interface>
</node>
"""


def split_sig(sig):
    """'sua{sv}(ii)' -> ['s', 'u', 'a{sv}', '(ii)']"""
    out, i = [], 0
    while i < len(sig):
        j = i
        while sig[j] == 'a':
            j += 1
        if sig[j] in '({':
            depth, k = 0, j
            while True:
                if sig[k] in '({':
                    depth += 1
                elif sig[k] in ')}':
                    depth -= 1
                    if depth == 0:
                        break
                k += 1
            j = k
        out.append(sig[i:j + 1])
        i = j + 1
    return out


def to_variant(s, value):
    """JSON value -> GLib.Variant of D-Bus type s."""
    if s == 'v':
        inner_sig, inner = value
        return GLib.Variant.new_variant(to_variant(inner_sig, inner))
    if s[0] == '(':
        parts = split_sig(s[1:-1])
        if len(parts) != len(value):
            raise ValueError('%d values for %s' % (len(value), s))
        return GLib.Variant.new_tuple(*[to_variant(t, v) for t, v in zip(parts, value)])
    if s[0] == 'a':
        elem = s[1:]
        if elem[0] == '{':
            kt, vt = split_sig(elem[1:-1])
            entries = [GLib.Variant.new_dict_entry(to_variant(kt, k), to_variant(vt, v))
                       for k, v in value.items()]
            return GLib.Variant.new_array(GLib.VariantType.new(elem), entries)
        if elem == 'y' and isinstance(value, str):
            return GLib.Variant.new_bytestring(value.encode())
        return GLib.Variant.new_array(GLib.VariantType.new(elem),
                                      [to_variant(elem, v) for v in value])
    return GLib.Variant(s, value)


def jsonable(obj):
    if isinstance(obj, (list, tuple)):
        return [jsonable(x) for x in obj]
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, bytes):
        return obj.decode('utf-8', 'replace')
    return obj


class Proxy:
    def __init__(self):
        self.ctl = socket.socket(fileno=int(os.environ['BGS_PROXY_FD']))
        self.ctl.setblocking(False)
        self.buf = b''
        self.fds = []
        self.loop = GLib.MainLoop()
        addr = os.environ['DBUS_SESSION_BUS_ADDRESS']
        self.conn = Gio.DBusConnection.new_for_address_sync(
            addr,
            Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT |
            Gio.DBusConnectionFlags.MESSAGE_BUS_CONNECTION,
            None, None)
        self.conn.set_exit_on_close(False)
        self.conn.connect('closed', lambda *a: self.quit())
        self.conn.signal_subscribe(None, None, None, None, None,
                                   Gio.DBusSignalFlags.NONE, self.on_signal)
        self.agent_id = 0
        self.agent_mode = 'allow'
        self.held = []
        self.pending = {}
        self.node = Gio.DBusNodeInfo.new_for_xml(AGENT_XML)
        GLib.io_add_watch(self.ctl.fileno(), GLib.PRIORITY_DEFAULT,
                          GLib.IO_IN | GLib.IO_HUP | GLib.IO_ERR, self.on_ctl)
        self.send({'type': 'ready', 'pid': os.getpid(), 'uid': os.getuid(),
                   'unique_name': self.conn.get_unique_name(),
                   'exe': os.readlink('/proc/self/exe')})

    def quit(self):
        self.loop.quit()

    def send(self, msg):
        data = (json.dumps(msg) + '\n').encode()
        self.ctl.setblocking(True)
        try:
            self.ctl.sendall(data)
        except OSError:
            self.quit()
        finally:
            self.ctl.setblocking(False)

    def on_ctl(self, fd, cond):
        while True:
            try:
                data, fds, _flags, _addr = socket.recv_fds(self.ctl, 65536, 32)
            except BlockingIOError:
                break
            except OSError:
                self.quit()
                return False
            self.fds.extend(fds)
            if not data:
                self.quit()
                return False
            self.buf += data
        while b'\n' in self.buf:
            line, self.buf = self.buf.split(b'\n', 1)
            if not line.strip():
                continue
            msg = json.loads(line)
            try:
                self.handle(msg)
            except Exception as e:  # report, never die on a bad command
                traceback.print_exc()
                self.send({'type': 'reply', 'id': msg.get('id'), 'ok': False,
                           'error': 'proxy.' + type(e).__name__, 'message': str(e)})
        return True

    def handle(self, msg):
        op = msg['op']
        if op == 'call':
            self.call(msg)
        elif op == 'agent':
            self.export_agent(msg['path'], msg.get('mode', 'allow'))
            self.send({'type': 'reply', 'id': msg['id'], 'ok': True, 'value': []})
        elif op == 'agent-mode':
            self.agent_mode = msg['mode']
            self.send({'type': 'reply', 'id': msg['id'], 'ok': True, 'value': []})
        elif op == 'answer':
            inv = self.held.pop(0)
            inv.return_value(GLib.Variant('(b)', (bool(msg['allow']),)))
            self.send({'type': 'reply', 'id': msg['id'], 'ok': True, 'value': []})
        elif op == 'unexport':
            if self.agent_id:
                self.conn.unregister_object(self.agent_id)
                self.agent_id = 0
            self.send({'type': 'reply', 'id': msg['id'], 'ok': True, 'value': []})
        elif op == 'exit':
            self.send({'type': 'reply', 'id': msg['id'], 'ok': True, 'value': []})
            self.conn.flush_sync(None)
            self.quit()
        else:
            raise ValueError('unknown op ' + op)

    def call(self, msg):
        nfds = msg.get('nfds', 0)
        fds, self.fds = self.fds[:nfds], self.fds[nfds:]
        if len(fds) != nfds:
            raise ValueError('expected %d fds, got %d' % (nfds, len(fds)))
        fdlist = Gio.UnixFDList.new_from_array(fds) if fds else None
        sig = msg.get('sig', '')
        params = to_variant('(' + sig + ')', msg.get('args', []))
        mid = msg['id']
        self.pending[mid] = fdlist

        def done(conn, res):
            self.pending.pop(mid, None)
            try:
                ret, _outfds = conn.call_with_unix_fd_list_finish(res)
                self.send({'type': 'reply', 'id': mid, 'ok': True,
                           'value': jsonable(ret.unpack())})
            except GLib.Error as e:
                name = Gio.DBusError.get_remote_error(e) or ''
                Gio.DBusError.strip_remote_error(e)
                self.send({'type': 'reply', 'id': mid, 'ok': False,
                           'error': name, 'message': e.message})

        self.conn.call_with_unix_fd_list(
            msg.get('dest', 'org.bgsync'), msg['path'], msg['iface'], msg['method'],
            params, None, Gio.DBusCallFlags.NONE, int(msg.get('timeout', 30) * 1000),
            fdlist, None, done)
        # our copies of the fds are not needed once the message is out
        # (the list closes them when freed, after the reply)

    def on_signal(self, conn, sender, path, iface, member, params):
        # the agent's own signals, and property changes of its objects (so a
        # test waiting on a property wakes up when it changes)
        if iface == 'org.freedesktop.DBus.Properties' and member == 'PropertiesChanged':
            if not params[0].startswith('org.bgsync'):
                return
        elif not iface.startswith('org.bgsync'):
            return
        self.send({'type': 'signal', 'sender': sender, 'path': path, 'iface': iface,
                   'member': member, 'args': jsonable(params.unpack())})

    def export_agent(self, path, mode):
        self.agent_mode = mode
        if self.agent_id:
            self.conn.unregister_object(self.agent_id)
        self.agent_id = self.conn.register_object(
            path, self.node.interfaces[0], self.on_agent_call, None, None)

    def on_agent_call(self, conn, sender, path, iface, method, params, inv):
        args = jsonable(params.unpack())
        self.send({'type': 'agent', 'member': method, 'args': args, 'sender': sender})
        if method != 'RequestConsent':
            inv.return_value(None)
            return
        mode = self.agent_mode
        if mode == 'allow':
            inv.return_value(GLib.Variant('(b)', (True,)))
        elif mode == 'deny':
            inv.return_value(GLib.Variant('(b)', (False,)))
        elif mode == 'error':
            inv.return_dbus_error('org.bgsync.Error.Canceled', 'the user closed the prompt')
        else:  # hold
            self.held.append(inv)

    def run(self):
        self.loop.run()


if __name__ == '__main__':
    if len(sys.argv) > 1 and sys.argv[1] == '--selftest':
        print(to_variant('(sua{sv}aa{sv})',
                         ['x', 3, {'channel': ['h', 0], 'a': ['as', ['b']]}, [{}]]))
        sys.exit(0)
    Proxy().run()
