#!/bin/sh
# run the SMP response fuzzer for a bounded time (CI calls this)
# usage: tests/smp/run-fuzz.sh [seconds]   (default 60)
# builds build-smp-fuzz with clang if it does not exist yet
set -eu
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
secs=${1:-60}
builddir=${BGS_FUZZ_BUILDDIR:-$top/build-smp-fuzz}

if [ ! -f "$builddir/build.ninja" ]; then
	CC=clang meson setup "$builddir" "$top" -Dfuzzing=true
fi
ninja -C "$builddir" tests/smp/fuzz-smp-response
# crashes land in $BGS_FUZZ_ARTIFACTS (kept for CI), new inputs in a temp dir
artifacts=${BGS_FUZZ_ARTIFACTS:-$builddir/fuzz-artifacts}
mkdir -p "$artifacts"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp "$here"/fuzz-corpus/* "$work"/
"$builddir/tests/smp/fuzz-smp-response" -max_total_time="$secs" -max_len=4096 \
	-timeout=10 -rss_limit_mb=1024 -artifact_prefix="$artifacts/" "$work"
