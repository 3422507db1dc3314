#!/bin/sh
# run the SMP fuzzers for a bounded time each (CI calls this)
# usage: tests/smp/run-fuzz.sh [seconds-per-target] [target...]
#   targets: fuzz-smp-response (SMP responses, the agent's parser; default)
#            fuzz-smp-server   (requests into bgsync-wearable's server)
# builds $BGS_FUZZ_BUILDDIR (default build-smp-fuzz) with clang if needed;
# crashes land in $BGS_FUZZ_ARTIFACTS (default <builddir>/fuzz-artifacts)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
secs=${1:-60}
[ $# -gt 0 ] && shift
targets=${*:-fuzz-smp-response fuzz-smp-server}
builddir=${BGS_FUZZ_BUILDDIR:-$top/build-smp-fuzz}

if [ ! -f "$builddir/build.ninja" ]; then
	CC=clang meson setup "$builddir" "$top" -Dfuzzing=true
fi
artifacts=${BGS_FUZZ_ARTIFACTS:-$builddir/fuzz-artifacts}
mkdir -p "$artifacts"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for t in $targets; do
	case $t in
	fuzz-smp-response) corpus=fuzz-corpus ;;
	fuzz-smp-server) corpus=fuzz-server-corpus ;;
	*) echo "unknown target $t" >&2; exit 2 ;;
	esac
	ninja -C "$builddir" "tests/smp/$t"
	mkdir -p "$work/$t"
	cp "$here/$corpus"/* "$work/$t"/
	"$builddir/tests/smp/$t" -max_total_time="$secs" -max_len=4096 \
		-timeout=10 -rss_limit_mb=1024 -artifact_prefix="$artifacts/$t-" "$work/$t"
done
