#!/usr/bin/python3
# demo.py: runs the demo described in demo.sh (use that script).
import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(TOP, 'tests', 'e2e'))
import mcuboot  # noqa: E402

BUS_CONF = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>custom</type>
  <listen>unix:path=%s</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/><allow eavesdrop="true"/>
    <allow own="*"/><allow user="*"/>
  </policy>
</busconfig>
"""


def say(text):
    print('\n\033[1m== %s\033[0m' % text if sys.stdout.isatty() else '\n== %s' % text, flush=True)


class Demo:
    def __init__(self, builddir):
        self.b = os.path.abspath(builddir)
        self.tmp = tempfile.mkdtemp(prefix='bgsync-demo-')
        self.procs = []
        self.env = dict(os.environ)

    def path(self, *p):
        return os.path.join(self.tmp, *p)

    def spawn(self, argv, log, **kw):
        f = open(self.path(log), 'ab')
        p = subprocess.Popen(argv, env=self.env, stdout=kw.pop('stdout', f), stderr=f, **kw)
        self.procs.append(p)
        return p

    def wait_name(self, name, timeout=15):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r = subprocess.run(['gdbus', 'call', '--session', '--dest', 'org.freedesktop.DBus',
                                '--object-path', '/org/freedesktop/DBus', '--method',
                                'org.freedesktop.DBus.NameHasOwner', name],
                               env=self.env, capture_output=True, text=True)
            if 'true' in r.stdout:
                return
            time.sleep(0.1)
        raise SystemExit('demo: %s did not appear on the bus (logs in %s)' % (name, self.tmp))

    def ctl(self, *args, check=True):
        argv = [self.b + '/client/bgsyncctl', '--session'] + list(args)
        print('$ bgsyncctl ' + ' '.join(args), flush=True)
        r = subprocess.run(argv, env=self.env)
        if check and r.returncode != 0:
            raise SystemExit('demo: bgsyncctl %s failed with status %d (logs in %s)' %
                             (args[0], r.returncode, self.tmp))
        return r.returncode

    def start(self):
        say('a private bus with bgsync-sim (BlueZ at the D-Bus level, two adapters)')
        sock = self.path('bus')
        with open(self.path('bus.conf'), 'w') as f:
            f.write(BUS_CONF % sock)
        self.spawn(['dbus-daemon', '--config-file', self.path('bus.conf'), '--nofork'], 'dbus.log')
        addr = 'unix:path=' + sock
        deadline = time.monotonic() + 10
        while not os.path.exists(sock) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.env['DBUS_SESSION_BUS_ADDRESS'] = addr
        self.env['DBUS_SYSTEM_BUS_ADDRESS'] = addr
        self.spawn([self.b + '/sim/bgsync-sim', '--bus', addr, '--adapters', '2'], 'sim.log')
        self.wait_name('org.bluez')

        say('a virtual wearable (MCUmgr SMP over GATT) on hci1, with files to sync')
        files = self.path('wearable', 'files', 'logs')
        os.makedirs(files)
        for name, size in (('steps.csv', 48 * 1024), ('sleep.bin', 96 * 1024), ('hr.bin', 32 * 1024)):
            with open(os.path.join(files, name), 'wb') as f:
                f.write(bytes((i * 37 + size) & 0xff for i in range(size)))
        self.spawn([self.b + '/wearable/bgsync-wearable', '--bus', addr, '--adapter', 'hci1',
                    '--state-dir', self.path('wearable'), '--reboot-seconds', '2'],
                   'wearable.log')

        say('bgsyncd, with bgsyncctl as the companion app and the wearable\'s device metadata')
        os.makedirs(self.path('apps'))
        os.makedirs(self.path('devices'))
        with open(self.path('apps', 'org.bgsync.ctl.conf'), 'w') as f:
            f.write('[App]\nId=org.bgsync.ctl\nName=bgsyncctl\nExecutable=%s/client/bgsyncctl\n'
                    'Privileges=manage-consents;\nDeviceUseEntryPoints=smp-file-sync;\n'
                    'DeviceServicingEntryPoints=smp-firmware-update;\n' % self.b)
        shutil.copy(os.path.join(TOP, 'data', 'devices', 'bgsync-wearable.conf'), self.path('devices'))
        with open(self.path('main.conf'), 'w') as f:
            f.write('[General]\nStateDirectory=%s\nAppDirectories=%s\nDeviceDirectories=%s\n'
                    '[Policy]\n# no logind on this private bus: see doc/configuration.md\n'
                    'ForegroundCheck=none\n' % (self.path('state'), self.path('apps'), self.path('devices')))
        self.spawn([self.b + '/agent/daemon/bgsyncd', '--session', '--config', self.path('main.conf'),
                    '--verbose'], 'bgsyncd.log')
        self.wait_name('org.bgsync')

        say('consent prompts are answered in this terminal (bgsyncctl agent on --auto-accept)')
        self.agent = self.spawn([self.b + '/client/bgsyncctl', '--session', 'agent', 'on', '--auto-accept'],
                                'agent.log', stdout=None)

    def address(self):
        r = subprocess.run([self.b + '/client/bgsyncctl', '--session', '--json', 'devices'],
                           env=self.env, capture_output=True, text=True)
        import json
        for d in json.loads(r.stdout or '{"devices": []}').get('devices', []):
            if d.get('model') == 'bgsync-wearable' and d.get('present'):
                return d['address']
        return None

    def run(self):
        self.start()
        say('the app registers its tasks (the agent now looks for the wearable)')
        self.ctl('register', 'sync', 'device-use', 'smp-file-sync')
        self.ctl('register', 'update', 'device-servicing', 'smp-firmware-update')
        deadline = time.monotonic() + 30
        addr = None
        while addr is None and time.monotonic() < deadline:
            addr = self.address()
            if addr is None:
                time.sleep(0.5)
        if addr is None:
            raise SystemExit('demo: the wearable never came in range (logs in %s)' % self.tmp)
        self.ctl('devices')

        say('device-use: sync three files from the wearable (consent asked once per model)')
        out = self.path('synced')
        os.makedirs(out)
        self.ctl('request', 'sync', addr, '--output-dir', out,
                 '--args', '/logs/steps.csv;/logs/sleep.bin;/logs/hr.bin')
        print('synced: ' + ', '.join('%s (%d bytes)' % (n, os.path.getsize(os.path.join(out, n)))
                                     for n in sorted(os.listdir(out))))

        say('servicing: a firmware update through the device\'s reboot (consent every time)')
        image, _ = mcuboot.build(160 * 1024, version=(2, 0, 0, 0))
        fw = self.path('wearable-2.0.0.bin')
        with open(fw, 'wb') as f:
            f.write(image)
        self.ctl('request', 'update', addr, '--input', fw, '--estimate', '60')

        say('the task ledger')
        self.ctl('history')

    def stop(self):
        for p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
        if os.environ.get('BGS_KEEP_TMP') != '1':
            shutil.rmtree(self.tmp, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--builddir', default='build-demo')
    args = ap.parse_args()
    d = Demo(args.builddir)
    try:
        d.run()
        say('done: both tasks completed')
    finally:
        d.stop()


if __name__ == '__main__':
    main()
