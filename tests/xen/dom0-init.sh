#!/bin/sh
# SPDX-License-Identifier: MIT
# shellcheck disable=SC2086 # unquoted expansions hold numbers or lists split on purpose
# /init of dom0 in the real-Xen test (tests/xen/xen_e2e.sh boots it).  It
# brings up the Xen tools and vproxyd (hypervisor = xen), then twice:
# creates the PV domU "vpguest" (its devices are declared in
# /etc/vproxy/vproxyd.ini), waits for its guest to finish its workloads and
# stay connected, destroys it and checks that vproxyd let go of everything
# the domain had: backend nodes, event channels, grant and foreign
# mappings.  Round 1's guest is the userspace stub (vproxy-guest); round
# 2's is the kernel (virtio_vproxy.ko, domU-kmod-init.sh), which also gets
# a blkback disk (xl block-attach, phy: on a loop device of a file like the
# raw plugin's) to compare with, gets a disk attached and detached with
# vproxyctl (hot-plug), and is destroyed with a filesystem mounted.  Facts go to the serial console as "XENTEST: ..." lines, the
# domU's console and vproxyd's log prefixed; the host asserts on them.
# Ends with poweroff, which ends QEMU.
/bin/busybox --install -s /bin
export PATH=/usr/lib/xen-4.17/bin:/bin LD_LIBRARY_PATH=/lib/x86_64-linux-gnu
export ASAN_OPTIONS=detect_leaks=1
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /run/xenstored /run/xen /var/lib/vproxy
mount -t devpts devpts /dev/pts
: >/etc/xen/xl.conf

say() { echo "XENTEST: $*"; }
fail() {
	say "FAIL: $*"
	say "--- vproxyd log tail"
	tail -n 40 /var/log/vproxyd.log
	xl list
	poweroff -f
}
# wait_for SECONDS COMMAND...: run COMMAND every 0.2 s until it succeeds.
wait_for() {
	n=$(($1 * 5))
	shift
	while ! "$@" >/dev/null 2>&1; do
		n=$((n - 1))
		[ $n -gt 0 ] || return 1
		sleep 0.2
	done
}
# Mappings of Xen devices in vproxyd's address space: gntdev (grants),
# privcmd (foreign frames).
maps_of() { grep -c -e /dev/xen/gntdev -e /dev/xen/privcmd "/proc/$1/maps"; }
# Event channels of dom0 whose other end is domain $1.
ports_to() { lsevtchn 0 | grep -cE "Remote Domain $1(,|$)"; }

# gfn_check DOM CONSOLE-LOG: foreign-map the pattern page the domU
# published (by pseudo-physical frame; a PV guest's frames are machine
# frames to us, found in its p2m) and a few other frames of it, through
# vproxyd's hv layer and gmem cache (xen-gfncheck).
gfn_check() {
	pfn=$(tr -d '\r' <$2 | sed -n 's/^gfn-page pfn \(0x[0-9a-f]*\)$/\1/p' | head -n 1)
	[ -n "$pfn" ] || fail "domain $1 published no pattern page"
	xen-mfndump dump-p2m $1 | tr -d '\r' >/tmp/p2m.txt
	mfns=""
	for p in $pfn 0x1000 0x3000 0x5000 0x7000; do
		m=$(awk -v p="pfn=$p" '$1 == p { sub("mfn=", "", $3); print $3; exit }' /tmp/p2m.txt)
		[ -n "$m" ] || fail "pfn $p of domain $1 not in its p2m"
		mfns="$mfns $m"
	done
	first=${mfns# }
	say "gfn: dom $1 pfn $pfn is mfn ${first%% *}"
	xen-gfncheck map $1 0x5650505431 $mfns 2>&1
}

for m in xen-evtchn xen-gntdev xen-gntalloc xen-privcmd xenfs; do
	insmod /lib/modules/$m.ko || fail "insmod $m"
done
mount -t xenfs xenfs /proc/xen || fail "mount xenfs"
xenstored --pid-file /run/xenstored.pid || fail "xenstored"
xen-init-dom0 >/dev/null || fail "xen-init-dom0"
xenconsoled --pid-file=/run/xenconsoled.pid --log=guest \
	--log-dir=/var/log/xen/console || fail "xenconsoled"
say "tools up at $(cut -d' ' -f1 /proc/uptime) s"

# The disks get a file system of their own: on the initramfs (half of
# dom0's RAM, most of it taken by a sanitizer build's binaries) the two
# files ran out of space under fio, and blkback's writes failed.
mount -t tmpfs -o size=160m tmpfs /var/lib/vproxy || fail "mount /var/lib/vproxy"
[ ! -f /lib/vproxy/plugins/raw.so ] || truncate -s 64M /var/lib/vproxy/disk1.img
# The blkback peer's disk: a file like disk1.img, on a loop device.
for m in $(cat /lib/modules/extra/dom0.order); do
	insmod /lib/modules/extra/$m.ko || fail "insmod $m"
done
truncate -s 64M /var/lib/vproxy/disk2.img
wait_for 10 test -b /dev/loop0 || fail "no /dev/loop0"
losetup /dev/loop0 /var/lib/vproxy/disk2.img || fail "losetup"
# VPROXY_XEN_RAW_ON=loop: vproxy's raw disk on a loop device too.
if grep -q '^file = /dev/loop1' /etc/vproxy/vproxyd.ini; then
	wait_for 10 test -b /dev/loop1 || fail "no /dev/loop1"
	losetup /dev/loop1 /var/lib/vproxy/disk1.img || fail "losetup loop1"
fi
# A sanitizer build keeps freed memory in quarantine (256 MiB by default):
# too much for a 768 MiB dom0.  Harmless without the sanitizers.
ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=16 \
	vproxyd --foreground --config /etc/vproxy/vproxyd.ini >/var/log/vproxyd.log 2>&1 &
vpd=$!
tail -f /var/log/vproxyd.log | awk '{ print "[vproxyd] " $0; fflush() }' &
wait_for 30 grep -q serving /var/log/vproxyd.log || fail "vproxyd did not start"
base_maps=$(maps_of $vpd)
say "vproxyd pid $vpd serving, $base_maps Xen mappings"

# Set by tests/xen/mkimages.sh: bench=1 for the fio comparison alone
# (bench/xen-bench.sh), profile=SECONDS to profile a long fio run on each
# disk first.
bench=0 profile=
# shellcheck source=/dev/null
. /etc/xentest.conf
rounds="1 2"
[ $bench != 1 ] || rounds=2

# perf_window LABEL [PID]: when the guest says "profile begin LABEL",
# count PID's system calls by number (perf's own would swamp a system-wide
# count) and sample where dom0's CPU goes while the guest runs fio on that
# disk.
perf_window() {
	wait_for 900 grep -q "XENTEST-GUEST: profile begin $1" $log || return 0
	mount -t tracefs nodev /sys/kernel/tracing 2>/dev/null
	if [ -n "$2" ]; then
		perf record -e raw_syscalls:sys_enter -p $2 -o /tmp/sys.data -- sleep 5 \
			>/tmp/perf.err 2>&1 || say "perf record: $(tail -n 3 /tmp/perf.err)"
		say "perf $1: system calls of pid $2 in 5 s by number:"
		perf script -i /tmp/sys.data -F comm,trace 2>/tmp/perf.err |
			sed -n 's/^ *\([^ ]*\) .*NR \([0-9]*\) .*/\1 \2/p' | sort | uniq -c | sort -rn |
			head -n 25 | sed "s/^/[perf $1] /"
	fi
	perf record -e cpu-clock -a -F 999 -o /tmp/cpu.data -- sleep 6 \
		>/tmp/perf.err 2>&1 || say "perf record: $(tail -n 3 /tmp/perf.err)"
	say "perf $1: where dom0's CPU went in 6 s:"
	perf report -i /tmp/cpu.data --no-children --sort comm,dso,sym --stdio \
		>/tmp/report.txt 2>/tmp/perf.err || say "perf report: $(tail -n 3 /tmp/perf.err)"
	grep -v '^#' /tmp/report.txt | grep '%' | head -n 60 | sed "s/^/[perf $1] /"
	rm -f /tmp/sys.data /tmp/cpu.data /tmp/report.txt
}

for round in $rounds; do
	cfg=/etc/xen/vpguest.cfg guest_secs=300
	[ $round = 1 ] || cfg=/etc/xen/vpguest-kmod.cfg guest_secs=900
	xl create -q $cfg || fail "xl create (round $round)"
	dom=$(xl domid vpguest)
	log=/var/log/xen/console/guest-vpguest.log
	say "round $round: domU vpguest is domain $dom"
	wait_for 10 test -f $log || fail "no console log for domain $dom"
	tail -f $log | awk -v p="[domU $dom] " '{ print p $0; fflush() }' &
	tailpid=$!
	if [ $round = 2 ]; then
		xl block-attach vpguest "format=raw,vdev=xvda,access=rw,backendtype=phy,script=/etc/xen/scripts/vp-block,target=/dev/loop0" ||
			fail "xl block-attach"
		say "round $round: blkback disk attached to dom $dom"
	fi
	if [ $round = 2 ] && [ -n "$profile" ]; then
		perf_window vproxy-grant $vpd
		perf_window blkback
	fi
	if [ $round = 2 ] && [ $bench != 1 ]; then
		# Hot-plug through the control socket: the guest kernel's
		# frontend driver probes the new device, then lets it go.
		wait_for $guest_secs grep -q "XENTEST-GUEST: hotplug wait" $log ||
			fail "domain $dom did not reach the hot-plug step"
		vproxyctl attach vpguest id=2 plugin=mem size=16M --label hot >/tmp/attach.txt 2>&1 ||
			fail "vproxyctl attach: $(cat /tmp/attach.txt)"
		say "round $round: $(head -n 1 /tmp/attach.txt)"
		wait_for 120 grep -q "XENTEST-GUEST: hotplug /dev" $log ||
			fail "domain $dom did not see the attached disk"
		vproxyctl detach hot --timeout 60 >/tmp/detach.txt 2>&1 ||
			fail "vproxyctl detach: $(cat /tmp/detach.txt)"
		wait_for 60 grep -q "XENTEST-GUEST: hot-unplug OK" $log ||
			fail "domain $dom kept the detached disk"
		! xenstore-read /local/domain/0/backend/vproxy/$dom/2/state >/dev/null 2>&1 ||
			fail "backend node of the detached disk remains"
		say "round $round: $(cat /tmp/detach.txt); hot-plug done"
	fi
	[ $bench != 1 ] || guest_secs=3000
	wait_for $guest_secs grep -q "XENTEST-GUEST: idle" $log || fail "domain $dom did not finish"
	! grep -q "XENTEST-GUEST: FAIL" $log || fail "domain $dom: $(grep 'XENTEST-GUEST: FAIL' $log)"
	be=/local/domain/0/backend/vproxy/$dom
	for id in 0 1; do
		wait_for 30 sh -c "[ \"\$(xenstore-read $be/$id/state)\" = 4 ]" ||
			fail "dom $dom dev $id not connected again"
	done
	say "round $round: dom $dom connected: maps $(maps_of $vpd) ports $(ports_to $dom)"
	[ $round != 1 ] || gfn_check $dom $log
	xl destroy vpguest || fail "xl destroy"
	wait_for 20 sh -c "! xenstore-read $be/0/state && ! xenstore-read $be/1/state" ||
		fail "backend nodes of dom $dom remain"
	# A domain whose pages are still mapped stays a zombie ("(null)").
	wait_for 20 sh -c "! xl list | grep -q '^(null)'" || say "zombie domain $dom remains"
	left=$(xl list | awk -v d=$dom '$2 == d' | wc -l)
	nodes=$(xenstore-ls /local/domain/0/backend/vproxy 2>/dev/null | grep -c "^$dom ")
	sleep 1
	say "round $round: dom $dom destroyed: maps $(($(maps_of $vpd) - base_maps)) ports $(ports_to $dom) backend-nodes $nodes domain-left $left"
	kill $tailpid
	rm -f $log
done
losetup -d /dev/loop0

kill -TERM $vpd
n=0
while kill -0 $vpd 2>/dev/null && [ $n -lt 50 ]; do sleep 0.2; n=$((n + 1)); done
wait $vpd
say "vproxyd exit $?"
sleep 0.5
say "done"
poweroff -f
