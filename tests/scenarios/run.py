#!/usr/bin/python3
# run.py: run the scenario suite against one backend.
#
#   run.py [--backend sim|vm] [--only NAME[,NAME]] [--list] [--logdir DIR]
#
# The backend may also come from $BGS_SCENARIO_BACKEND. Each scenario gets a
# fresh backend (bus, simulator or bluetoothd state, peer). Exit status 0
# only if nothing failed.

import argparse
import os
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import dbus  # noqa: E402

import backends  # noqa: E402
import harness  # noqa: E402
import scenarios  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description='bgsync scenario suite')
    ap.add_argument('--backend', default=os.environ.get('BGS_SCENARIO_BACKEND', 'sim'),
                    choices=sorted(backends.BACKENDS))
    ap.add_argument('--only', default=os.environ.get('BGS_SCENARIO_ONLY', ''),
                    help='comma separated scenario names')
    ap.add_argument('--list', action='store_true')
    ap.add_argument('--logdir', default=os.environ.get('BGS_SCENARIO_LOGDIR'))
    ap.add_argument('--scenarios', default=None,
                    help='python file with more scenarios (default: the shared suite)')
    args = ap.parse_args()
    if args.scenarios:
        import importlib.util
        spec = importlib.util.spec_from_file_location('extra_scenarios', args.scenarios)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        scenarios.SCENARIOS[:] = mod.SCENARIOS

    selected = [s for s in scenarios.SCENARIOS
                if not args.only or s[0] in args.only.split(',')]
    if args.list:
        for name, needs, _ in scenarios.SCENARIOS:
            print('%-32s %s' % (name, ' '.join(needs)))
        return 0
    if args.only and len(selected) != len(args.only.split(',')):
        known = {s[0] for s in scenarios.SCENARIOS}
        print('unknown scenario(s): %s' % ', '.join(set(args.only.split(',')) - known))
        return 2
    logroot = args.logdir or tempfile.mkdtemp(prefix='bgs-scenarios-')
    os.makedirs(logroot, exist_ok=True)
    cls = backends.BACKENDS[args.backend]
    results = []
    print('scenario suite on backend "%s" (logs in %s)' % (args.backend, logroot), flush=True)
    for name, needs, fn in selected:
        logdir = os.path.join(logroot, name)
        os.makedirs(logdir, exist_ok=True)
        backend = cls(logdir)
        reason = backend.why_not(needs)
        if reason:
            results.append((name, 'skip', reason, 0.0))
            print('SKIP  %-32s %s' % (name, reason), flush=True)
            continue
        t0 = time.monotonic()
        ctx = None
        status, detail = 'pass', ''
        try:
            backend.start()
            ctx = scenarios.Context(backend)
            fn(ctx)
        except harness.Skip as e:
            status, detail = 'skip', str(e)
        except (harness.ScenarioFailed, AssertionError, dbus.exceptions.DBusException) as e:
            status, detail = 'fail', '%s: %s' % (type(e).__name__, e)
            with open(os.path.join(logdir, 'traceback.txt'), 'w') as f:
                traceback.print_exc(file=f)
        except Exception as e:  # a broken scenario is a failure too
            status, detail = 'fail', 'error: %s: %s' % (type(e).__name__, e)
            with open(os.path.join(logdir, 'traceback.txt'), 'w') as f:
                traceback.print_exc(file=f)
        finally:
            if ctx is not None:
                ctx.close()
            backend.stop()
        dt = time.monotonic() - t0
        results.append((name, status, detail, dt))
        print('%-5s %-32s %5.1fs %s' % (status.upper(), name, dt, detail), flush=True)

    passed = sum(1 for r in results if r[1] == 'pass')
    failed = sum(1 for r in results if r[1] == 'fail')
    skipped = sum(1 for r in results if r[1] == 'skip')
    print()
    print('summary (%s):' % args.backend)
    for name, status, detail, dt in results:
        print('  %-5s %s%s' % (status, name, (' - ' + detail) if status != 'pass' else ''))
    print('%d passed, %d failed, %d skipped' % (passed, failed, skipped), flush=True)
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
