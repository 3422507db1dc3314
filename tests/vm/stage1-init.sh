#!/bin/busybox sh
# stage 1 (/init of the initramfs built by bgsync-vm.py): load virtio and 9p,
# mount the host root read-only plus tmpfs and the results share, switch_root.
# every failure powers the vm off at once so the host never waits for a timeout.
/bin/busybox --install -s /bin
export PATH=/bin

die() {
	echo "bgsync-vm stage1: FATAL: $*"
	echo "bgsync-vm stage1: FATAL: $*" > /dev/kmsg 2>/dev/null
	sleep 1
	poweroff -f
}

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
echo "bgsync-vm stage1: up $(cut -d' ' -f1 /proc/uptime)s"

# modules in `modprobe --show-depends` order (virtio_ring before virtio)
while read -r m; do
	[ -n "$m" ] || continue
	insmod "/modules/$m" || die "insmod $m"
done < /modules.order

init=""
src=""
build=""
for arg in $(cat /proc/cmdline); do
	case "$arg" in
	bgsvm.init=*) init="${arg#bgsvm.init=}" ;;
	bgsvm.src=*) src="${arg#bgsvm.src=}" ;;
	bgsvm.build=*) build="${arg#bgsvm.build=}" ;;
	esac
done
[ -n "$init" ] || die "no bgsvm.init= on the kernel command line"

opts="trans=virtio,version=9p2000.L,msize=262144"
mkdir -p /newroot
mount -t 9p -o "$opts,ro,cache=loose" hostroot /newroot || die "mount host root"
for d in tmp run var/log var/lib/bluetooth; do
	mount -t tmpfs -o mode=0755 tmpfs "/newroot/$d" || die "tmpfs on /$d"
done
chmod 1777 /newroot/tmp
mkdir -p /newroot/run/vm/results /newroot/run/dbus
mount -t 9p -o "$opts,rw" results /newroot/run/vm/results || die "mount results"
# a checkout or build dir under one of the tmpfs paths above (CI may clone
# into /tmp) is hidden by them: mount its own share at the same path
for pair in "src:$src" "build:$build"; do
	tag=${pair%%:*}
	dir=${pair#*:}
	[ -n "$dir" ] || continue
	[ -e "/newroot$dir" ] && [ -n "$(ls -A "/newroot$dir" 2>/dev/null)" ] && continue
	mkdir -p "/newroot$dir" || die "cannot make a mount point for $dir"
	mount -t 9p -o "$opts,ro,cache=loose" "$tag" "/newroot$dir" || die "mount $tag at $dir"
done
mount --move /dev /newroot/dev
mount --move /proc /newroot/proc
mount --move /sys /newroot/sys
[ -x "/newroot$init" ] || [ -r "/newroot$init" ] || die "$init not found on the host root"
echo "bgsync-vm stage1: switch_root at $(cut -d' ' -f1 /newroot/proc/uptime)s"
exec switch_root /newroot /bin/sh "$init"
