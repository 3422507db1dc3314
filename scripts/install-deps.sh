#!/bin/sh
# install-deps.sh: everything bgsync needs to build, test and demo on Debian 12.
# Idempotent; run as root (or with sudo available). Pass --vm to also install
# what the real-bluetoothd VM tier needs.
set -eu

pkgs="meson ninja-build pkg-config gcc clang libclang-rt-14-dev
  libglib2.0-dev libglib2.0-bin libsqlite3-dev sqlite3 libcmocka-dev
  libcbor-dev libreadline-dev libjson-glib-dev
  dbus dbus-daemon python3 python3-dbusmock python3-dbus python3-gi python3-pytest
  tmux valgrind"
vm_pkgs="qemu-system-x86 linux-image-amd64 busybox-static bluez bluez-test-tools"

want="$pkgs"
[ "${1:-}" = "--vm" ] && want="$pkgs $vm_pkgs"

missing=""
for p in $want; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "install-deps: installing:$missing" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >&2
