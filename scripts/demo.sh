#!/bin/sh
# demo.sh: the whole mission on a machine without Bluetooth. Builds what it
# needs, then starts a private bus with bgsync-sim (BlueZ), a virtual
# wearable, bgsyncd and bgsyncctl, runs a device-use file sync and a firmware
# update through the device's reboot, answers the consent prompts in the
# terminal, and ends with the history table.
#
#   scripts/demo.sh                 install dependencies, build, run
#   scripts/demo.sh --builddir DIR  use an existing build (the test suite does)
set -eu
cd "$(dirname "$0")/.."

builddir=""
if [ "${1:-}" = "--builddir" ]; then
	builddir="$2"
else
	scripts/install-deps.sh
	builddir=build-demo
	[ -d "$builddir" ] || meson setup "$builddir" -Dtests=false >/dev/null
	meson compile -C "$builddir" >/dev/null
fi
exec /usr/bin/python3 scripts/demo.py --builddir "$builddir"
