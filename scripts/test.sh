#!/bin/sh
# test.sh: build bgsync and run every test suite — unit, integration,
# simulator scenarios and end-to-end runs, the client, the demo, the
# real-bluetoothd VM tier — then every fuzzer for a bounded time.
# Installs its own dependencies on Debian 12.
#   scripts/test.sh [builddir]
# BGS_FUZZ_SECONDS (default 30) sets the time per fuzz target; 0 skips fuzzing.
set -eu
cd "$(dirname "$0")/.."
build="${1:-build-test}"

scripts/install-deps.sh --vm

if [ ! -d "$build" ]; then
	meson setup "$build" -Dtests=true
else
	meson setup --reconfigure "$build" -Dtests=true >/dev/null
fi
meson compile -C "$build"

status=0
meson test -C "$build" --print-errorlogs --num-processes 2 --timeout-multiplier 2 || status=$?

fuzz_status=skip
if [ "${BGS_FUZZ_SECONDS:-30}" != 0 ]; then
	fuzz_status=0
	scripts/fuzz.sh "${BGS_FUZZ_SECONDS:-30}" || fuzz_status=$?
fi

# one plain closing line over all suites (meson's JSON log) plus the fuzzers
/usr/bin/python3 - "$build/meson-logs/testlog.json" "$fuzz_status" <<'PY'
import json, sys
counts = {}
for line in open(sys.argv[1]):
    r = json.loads(line).get('result', 'ERROR')
    counts[r] = counts.get(r, 0) + 1
passed = counts.get('OK', 0) + counts.get('EXPECTEDFAIL', 0)
failed = sum(v for k, v in counts.items() if k not in ('OK', 'EXPECTEDFAIL', 'SKIP'))
if sys.argv[2] == '0':
    passed += 1      # the fuzzers, as one
elif sys.argv[2] != 'skip':
    failed += 1
print('%d passed, %d failed, %d skipped' % (passed, failed, counts.get('SKIP', 0)))
PY
[ "$status" -eq 0 ] && [ "$fuzz_status" = 0 -o "$fuzz_status" = skip ]
