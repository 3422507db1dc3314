#!/bin/sh
# test.sh: build bgsync and run every test suite (unit, integration,
# simulator scenarios, fuzz smoke runs, and the real-bluetoothd VM tier).
# Installs its own dependencies on Debian 12. Usage: scripts/test.sh [builddir]
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
meson test -C "$build" --print-errorlogs --num-processes 2 --timeout-multiplier 2
