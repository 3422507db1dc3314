#!/bin/sh
# fuzz.sh: run every libFuzzer target for a bounded time each (CI does,
# through test.sh). Builds a clang build dir with -Dfuzzing=true once.
#   scripts/fuzz.sh [seconds-per-target]     (default 30)
# A crash fails the run; its input is kept in $builddir/fuzz-artifacts.
set -eu
cd "$(dirname "$0")/.."
secs=${1:-30}
builddir=${BGS_FUZZ_BUILDDIR:-build-fuzz}
if [ ! -f "$builddir/build.ninja" ]; then
	CC=clang meson setup "$builddir" -Dfuzzing=true -Dtests=true >/dev/null
fi
artifacts="$builddir/fuzz-artifacts"
mkdir -p "$artifacts"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# target (path in the build dir) and its committed seed corpus
set -- \
	tests/apps/fuzz-apps-conf:tests/apps/corpus \
	tests/system/fuzz-config:tests/system/corpus \
	tests/store/fuzz-store-file:tests/store/corpus \
	tests/sim/fuzz-sim-desc:tests/sim/corpus \
	tests/smp/fuzz-smp-response:tests/smp/fuzz-corpus \
	tests/smp/fuzz-smp-server:tests/smp/fuzz-server-corpus \
	tests/rfcomm/fuzz-test-channel:tests/rfcomm/channel-corpus \
	tests/rfcomm/fuzz-bulk-frame:tests/rfcomm/bulk-corpus
failed=0
for pair in "$@"; do
	target=${pair%%:*}
	corpus=${pair#*:}
	name=$(basename "$target")
	ninja -C "$builddir" "$target" >/dev/null
	mkdir -p "$work/$name"
	[ -d "$corpus" ] && cp -r "$corpus"/. "$work/$name"/
	echo "fuzz: $name for ${secs}s"
	if ! "$builddir/$target" -max_total_time="$secs" -max_len=65536 -timeout=10 \
		-rss_limit_mb=2048 -artifact_prefix="$artifacts/$name-" "$work/$name" \
		>"$work/$name.log" 2>&1; then
		echo "fuzz: $name FAILED (log tail below, inputs in $artifacts)"
		tail -n 40 "$work/$name.log"
		failed=1
	else
		grep -E "^#[0-9]+.*DONE|Done [0-9]+ runs" "$work/$name.log" | tail -n 1
	fi
done
exit $failed
