#!/bin/sh
# vm-job.sh: the e2e tests (pytest) inside the VM tier, against the real
# bluetoothd: bgsync-wearable on hci1, bgsyncd on hci0, on the guest's system
# bus. Run by tests/vm/groups.conf; arguments go to pytest. Logs of every
# test (bgsyncd, wearable, app) go to the group's artifacts/e2e/<test>/.
if [ -z "${BGSYNC_VM:-}" ]; then
	echo "vm-job.sh: runs inside the VM tier only (tests/vm/groups.conf)" >&2
	exit 2
fi
export BGSYNC_E2E_BACKEND=vm
export BGSYNCD="$BGSYNC_BUILD/agent/daemon/bgsyncd"
export BGSYNC_WEARABLE="$BGSYNC_BUILD/wearable/bgsync-wearable"
export BGSYNC_E2E_LOGDIR="${BGSYNC_E2E_LOGDIR:-$BGSYNC_VM_RESULTS/artifacts/e2e}"
export PYTHONPATH="$BGSYNC_SRC/tests/e2e"
# the source tree is read-only in the guest
export PYTHONDONTWRITEBYTECODE=1
mkdir -p "$BGSYNC_E2E_LOGDIR"
cd /tmp || exit 1
exec /usr/bin/python3 -m pytest -v -rsx -p no:cacheprovider --rootdir=/tmp "$@"
