#!/bin/sh
# stage 2 of the bgsync VM (pid 1 after switch_root, runs from the read-only
# host root): start dbus-daemon, btvirt and bluetoothd, power the adapters, run
# the job the host put in the results share, then power off. every wait is
# bounded; the host also kills the whole vm after its own timeout.
R=/run/vm/results
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/tmp LANG=C.UTF-8 TMPDIR=/tmp
# shellcheck source=/dev/null
. "$R/job.env"

up() { cut -d' ' -f1 /proc/uptime; }
say() { echo "bgsync-vm: [$(up)] $*"; }
status() { echo "$*" >> "$R/status"; }

finish() {
	status "end=$(up)"
	dmesg > "$R/dmesg.log" 2>&1
	for p in $BGSVM_PIDS; do kill "$p" 2>/dev/null; done
	# give bluetoothd and btmon a moment to flush, bounded
	i=0
	while [ $i -lt 20 ]; do
		alive=""
		for p in $BGSVM_PIDS; do kill -0 "$p" 2>/dev/null && alive=1; done
		[ -n "$alive" ] || break
		sleep 0.1
		i=$((i + 1))
	done
	sync
	say "poweroff"
	/bin/busybox poweroff -f
	echo o > /proc/sysrq-trigger
}

fail_stack() {
	say "STACK FAILED: $*"
	status "stack=failed: $*"
	finish
}

say "stage2 start (group $BGSVM_GROUP, kernel $(uname -r))"
status "boot=$(up)"
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mkdir -p /var/lib/dbus /run/dbus /tmp/vm
hostname bgsync-vm
/bin/busybox ip link set lo up 2>/dev/null
BGSVM_PIDS=""

# system bus with our own config: no activation, everything allowed. --fork
# returns once the socket listens, so no polling.
dbus-daemon --config-file="$BGSVM_SRC/tests/vm/dbus-system.conf" --fork \
	--print-pid=1 > /tmp/vm/dbus.pid 2> "$R/dbus-daemon.log" || fail_stack "dbus-daemon"
BGSVM_PIDS="$(cat /tmp/vm/dbus.pid)"
export DBUS_SYSTEM_BUS_ADDRESS=unix:path=/run/dbus/system_bus_socket

modprobe -a bluetooth hci_vhci rfcomm || fail_stack "modprobe bluetooth"
status "modules=$(up)"

btmon -w "$R/hci.btsnoop" > /dev/null 2> "$R/btmon.log" &
BTMON_PID=$!
# -E: AdvertisementMonitorManager1 is experimental in 5.66; -d: debug log
export BGSYNC_VM_BLUETOOTHD="/usr/libexec/bluetooth/bluetoothd -n -E -d -f $BGSVM_SRC/tests/vm/main.conf"
$BGSYNC_VM_BLUETOOTHD > "$R/bluetoothd.log" 2>&1 &
BLUETOOTHD_PID=$!
# vmctl.py restart-bluetoothd replaces it and updates this file
echo "$BLUETOOTHD_PID" > /run/vm/bluetoothd.pid
BGSVM_PIDS="$BLUETOOTHD_PID $BTMON_PID $BGSVM_PIDS"

# stack.py starts btvirt once bluetoothd is on the bus (again if a controller
# fails its setup), waits for hci0 and hci1, powers them, writes stack.env
/usr/bin/python3 "$BGSVM_SRC/tests/vm/stack.py" ready --timeout "$BGSVM_READY_TIMEOUT" \
	--env "$R/stack.env" --pidfile /tmp/vm/btvirt.pid --btvirt-log "$R/btvirt.log" \
	> "$R/stack.log" 2>&1 || fail_stack "adapters not ready (see stack.log)"
BGSVM_PIDS="$(cat /tmp/vm/btvirt.pid) $BGSVM_PIDS"
status "ready=$(up)"
say "stack ready"

set -a
. "$R/stack.env"
set +a
export BGSYNC_VM=1 BGSYNC_VM_RESULTS="$R" BGSYNC_VM_GROUP="$BGSVM_GROUP"
export BGSYNC_SRC="$BGSVM_SRC" BGSYNC_BUILD="$BGSVM_BUILD"
mkdir -p "$R/artifacts"
cd "$R/artifacts" || fail_stack "cd"
timeout -k 5 "$BGSVM_JOB_TIMEOUT" /bin/sh "$R/job.sh" > "$R/job.log" 2>&1 < /dev/null
rc=$?
status "job_exit=$rc"
status "job_end=$(up)"
say "job exited $rc"
BLUETOOTHD_PID=$(cat /run/vm/bluetoothd.pid)
# a zombie (restarted by vmctl.py, reparented to us) is dead too
if kill -0 "$BLUETOOTHD_PID" 2>/dev/null && \
	! grep -q '^State:.*Z' "/proc/$BLUETOOTHD_PID/status" 2>/dev/null; then
	status "bluetoothd=alive"
else
	wait "$BLUETOOTHD_PID" 2>/dev/null
	status "bluetoothd=dead rc=$?"
	say "bluetoothd DIED during the job"
fi
BGSVM_PIDS="$BLUETOOTHD_PID $BGSVM_PIDS"
finish
