#!/bin/sh
# SPDX-License-Identifier: MIT
# shellcheck disable=SC2086 # unquoted expansions hold numbers or lists split on purpose
# /init of the test's second PV domU: the guest kernel itself drives the
# vproxy disks through virtio_vproxy.ko and Linux's own virtio_blk.
#   1. grant mode: the disks of vproxy-0 (mem plugin) and vproxy-1 (raw
#      plugin), /dev/vda and /dev/vdb in probe order, get ext4; files
#      written, synced, unmounted, remounted and checked; vproxy-0 unbound
#      and bound again; the module removed and loaded again; checked again.
#   2. gfn mode (module reloaded with addr_mode=gfn), when the kernel
#      command line has vptest_gfn=1: checked again, then fio 4 KiB
#      randread/randwrite at QD 1 and 32 on the raw disk, vptest_fio_rounds
#      times (vptest_fio_secs each).
#   3. grant mode again: the same fio, each workload next to the same on
#      /dev/xvda, a blkback disk dom0 attached (xl block-attach, phy: on a
#      loop device of a file like the raw disk's): Linux's own Xen block
#      backend as the peer.
# With vptest_bench=1 (bench/xen-bench.sh) only 3 (and 2's fio, after it),
# and with vptest_profile=SECONDS a long run on each disk first, which dom0
# and then this guest profile with perf.
#   4. hot-plug: vproxy-2 appears (dom0's vproxyctl attach), is written
#      and read back, and goes (vproxyctl detach).
#   5. the mem disk mounted and written to, then idle until dom0 destroys
#      the domain with the filesystem mounted.
# Lines for the host start with XENTEST-GUEST: or XENTEST-FIO:.  Every wait
# is bounded; a failure prints XENTEST-GUEST: FAIL and the domain idles.
/bin/busybox --install -s /bin
export PATH=/bin:/sbin LD_LIBRARY_PATH=/lib/x86_64-linux-gnu
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /mnt/0 /mnt/1 /tmp

say() { echo "XENTEST-GUEST: $*"; }
idle() {
	say idle
	while :; do sleep 3600; done
}
fail() {
	say "FAIL: $*"
	dmesg | tail -n 30
	idle
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
drv=/sys/bus/xen/drivers/vproxy
kmod=/lib/modules/virtio_vproxy.ko

# dev_of ID: the block device virtio_blk made of vproxy-ID (vdX); which
# letter a device gets depends on probe order, so never assume it.
dev_of() {
	ls /sys/bus/xen/devices/vproxy-$1/virtio*/block 2>/dev/null
}
# has_disk ID / no_disk ID: whether vproxy-ID has a block device now.
has_disk() {
	d=$(dev_of $1)
	[ -n "$d" ] && [ -b /dev/$d ]
}
no_disk() { [ -z "$(dev_of $1)" ]; }
load() {
	insmod $kmod "$@" || fail "insmod virtio_vproxy $*"
	wait_for 120 has_disk 0 || fail "vproxy-0 has no disk after insmod $*"
	wait_for 120 has_disk 1 || fail "vproxy-1 has no disk after insmod $*"
}
# xenbus holds a module reference per bound device: unbind them first.
unload() {
	for d in $drv/vproxy-*; do
		echo ${d##*/} >$drv/unbind || fail "unbind ${d##*/}"
	done
	rmmod virtio_vproxy || fail "rmmod virtio_vproxy"
	[ ! -b /dev/vda ] && [ ! -b /dev/vdb ] || fail "/dev/vd* left after rmmod"
}
# fill ID: ext4 on vproxy-ID with a few files, checksums in /tmp/ID.sum.
fill() {
	d=$(dev_of $1)
	/sbin/mke2fs -q -F -t ext4 /dev/$d || fail "mkfs.ext4 /dev/$d"
	mount -t ext4 /dev/$d /mnt/$1 || fail "mount /dev/$d"
	dd if=/dev/urandom of=/mnt/$1/big bs=64k count=48 2>/dev/null || fail "write /mnt/$1/big"
	mkdir -p /mnt/$1/dir
	for i in 1 2 3 4 5 6 7 8; do
		dd if=/dev/urandom of=/mnt/$1/dir/small$i bs=1k count=$((i * 3)) 2>/dev/null
	done
	(cd /mnt/$1 && sha256sum big dir/*) >/tmp/$1.sum
	sync
	umount /mnt/$1 || fail "umount /dev/$d"
}
# check ID WHEN: mount vproxy-ID's disk, compare checksums, unmount.
check() {
	d=$(dev_of $1)
	mount -t ext4 /dev/$d /mnt/$1 || fail "mount /dev/$d of vproxy-$1 ($2)"
	(cd /mnt/$1 && sha256sum -c /tmp/$1.sum >/dev/null) ||
		fail "/dev/$d of vproxy-$1: checksums differ ($2)"
	umount /mnt/$1 || fail "umount /dev/$d ($2)"
	say "fs vproxy-$1 ($d, $(cat /sys/block/$d/size) sectors) $2 OK"
}
# stat_of DEV FIELD: a counter from the vproxy device's sysfs stats.
stat_of() {
	tr ' ' '\n' <$1 | awk -v f=$2 'p { print; exit } $0 == f { p = 1 }'
}
# irqs_of NAME: interrupts of the Xen event channel handler NAME.
irqs_of() {
	awk -v n=$1 '$NF == n { s = 0; for (i = 2; i < NF; i++) if ($i ~ /^[0-9]+$/) s += $i; print s; exit }' /proc/interrupts
}
# fio_one LABEL DEV IRQNAME STATS RW QD: 4 KiB random RW at queue depth QD
# on DEV, one line with IOPS, mean latency and, per I/O, interrupts (and
# for vproxy, STATS not -, kicks: QueueNotify writes).
fio_one() {
	i0=$(irqs_of $3)
	k0=0
	[ $4 = - ] || k0=$(stat_of $4 kicks)
	out=$(timeout 120 fio --name=t --filename=/dev/$2 --direct=1 \
		--ioengine=libaio --rw=$5 --bs=4k --iodepth=$6 \
		--time_based --runtime=$fio_secs \
		--norandommap --randrepeat=0 --minimal 2>&1) ||
		fail "fio $1 $5 qd $6: $out"
	i1=$(irqs_of $3)
	k1=0
	[ $4 = - ] || k1=$(stat_of $4 kicks)
	echo "$out" | awk -F';' -v l=$1 -v rw=$5 -v qd=$6 -v r=${r:-1} \
		-v irqs=$((i1 - i0)) -v kicks=$((k1 - k0)) '
		NF > 80 {
			if (rw == "randread") { iops = $8; lat = $40; n = $6 / 4 }
			else { iops = $49; lat = $81; n = $47 / 4 }
			printf "XENTEST-FIO: %s %s qd%d iops %d lat_us %d irqs_per_io %.2f kicks_per_io %.2f round %d\n",
				l, rw, qd, iops, lat, irqs / (n ? n : 1), kicks / (n ? n : 1), r
			found = 1
		}
		END { if (!found) print "XENTEST-FIO: " l " " rw " qd" qd " unparsed" }'
}
# fio_rounds LABEL VDEV ROUNDS [pair]: each workload on vproxy's VDEV,
# ROUNDS times.  With pair, each is followed or preceded at once by the same
# on the blkback disk, so that both see the same load on a shared machine,
# the order swapped every round (whichever runs second finds the other's
# pages and caches warm).  The host takes the medians.
fio_rounds() {
	r=1
	while [ $r -le $3 ]; do
		for rw in randread randwrite; do
			for qd in 1 32; do
				[ "$4" != pair ] || [ $((r % 2)) = 1 ] ||
					fio_one blkback xvda blkif - $rw $qd
				fio_one $1 $2 vproxy-1 $stats $rw $qd
				[ "$4" != pair ] || [ $((r % 2)) = 0 ] ||
					fio_one blkback xvda blkif - $rw $qd
			done
		done
		r=$((r + 1))
	done
}
# profile_one LABEL DEV IRQNAME STATS: a long randread (vptest_profile
# seconds at QD vptest_profile_qd, default 1) that dom0 profiles, then the
# guest; dom0 starts when it sees the begin line.
profile_one() {
	say "profile begin $1"
	sleep 2
	keep=$fio_secs
	fio_secs=$profile_secs
	if [ -x /bin/perf ]; then
		# dom0 takes the first 11 s; the guest's own CPU after that.
		(sleep 12
		perf record -e cpu-clock -a -F 999 -o /tmp/cpu.data -- sleep 4 >/tmp/perf.err 2>&1 ||
			say "perf record: $(tail -n 3 /tmp/perf.err)"
		say "perf $1: where the guest's CPU went in 4 s:"
		perf report -i /tmp/cpu.data --no-children --sort comm,dso,sym --stdio 2>/dev/null |
			grep -v '^#' | grep '%' | head -n 50 | sed "s/^/[guest-perf $1] /") &
		pp=$!
	fi
	fio_one profile-$1 $2 $3 $4 randread $profile_qd
	[ -z "$pp" ] || wait $pp
	pp=
	fio_secs=$keep
	say "profile end $1"
	sleep 2
}
# Kernel command line knobs, from dom0 (tests/xen/mkimages.sh).
arg() { tr ' ' '\n' </proc/cmdline | sed -n "s/^$1=//p" | head -n 1; }
fio_secs=$(arg vptest_fio_secs)
fio_secs=${fio_secs:-8}
rounds=$(arg vptest_fio_rounds)
rounds=${rounds:-1}
bench=$(arg vptest_bench)
profile_secs=$(arg vptest_profile)
profile_qd=$(arg vptest_profile_qd)
profile_qd=${profile_qd:-1}

for m in $(cat /lib/modules/domU.order); do
	insmod /lib/modules/$m.ko || fail "insmod $m"
done
say "up"

stats=/sys/bus/xen/devices/vproxy-1/stats
# vptest_bench=1: the fio comparison only (bench/xen-bench.sh).
if [ "$bench" = 1 ]; then
	load
	wait_for 120 test -b /dev/xvda || fail "no blkback disk /dev/xvda"
	if [ -n "$profile_secs" ]; then
		profile_one vproxy-grant $(dev_of 1) vproxy-1 $stats
		profile_one blkback xvda blkif -
	fi
	fio_rounds vproxy-grant $(dev_of 1) $rounds pair
	say "stats grant: $(cat $stats)"
	if grep -qw vptest_gfn=1 /proc/cmdline; then
		unload
		load addr_mode=gfn
		fio_rounds vproxy-gfn $(dev_of 1) $rounds
		say "stats gfn: $(cat $stats)"
	fi
	say "fio done"
	idle
fi

# --- 1. grant mode: filesystems, unbind/bind, module reload ---
# vproxy-0 is the mem plugin's disk, vproxy-1 the raw plugin's.
load
for id in 0 1; do
	fill $id
	check $id remount
done
echo vproxy-0 >$drv/unbind || fail "unbind vproxy-0"
wait_for 10 no_disk 0 || fail "vproxy-0 still has a disk after unbind"
echo vproxy-0 >$drv/bind || fail "bind vproxy-0"
wait_for 120 has_disk 0 || fail "vproxy-0 has no disk after bind"
check 0 rebind
unload
load
for id in 0 1; do
	check $id reload
done
say "stats grant: $(cat $stats)"

# --- 2. gfn mode (when dom0 asks for it: vptest_gfn=1) ---
if grep -qw vptest_gfn=1 /proc/cmdline; then
	unload
	load addr_mode=gfn
	check 0 gfn
	mode=$(stat_of $stats mode)
	[ "$mode" = gfn ] || fail "vproxy-1 in mode $mode, not gfn"
	fio_rounds vproxy-gfn $(dev_of 1) $rounds
	say "stats gfn: $(cat $stats)"
else
	say "gfn mode skipped"
fi

# --- 3. grant mode and blkback ---
unload
load
wait_for 120 test -b /dev/xvda || fail "no blkback disk /dev/xvda"
say "blkback disk xvda: $(cat /sys/block/xvda/size) sectors"
fio_rounds vproxy-grant $(dev_of 1) $rounds pair
say "stats grant: $(cat $stats)"
say "fio done"

# --- 4. hot-plug: dom0 attaches vproxy-2 with vproxyctl, then detaches it ---
say "hotplug wait"
wait_for 120 has_disk 2 || fail "vproxy-2 did not appear (vproxyctl attach)"
d=$(dev_of 2)
sz=$(cat /sys/block/$d/size)
dd if=/dev/urandom of=/tmp/hp bs=64k count=16 2>/dev/null
dd if=/tmp/hp of=/dev/$d bs=64k conv=fsync 2>/dev/null || fail "write /dev/$d (hot-plugged)"
echo 3 >/proc/sys/vm/drop_caches
dd if=/dev/$d of=/tmp/hp2 bs=64k count=16 2>/dev/null || fail "read /dev/$d (hot-plugged)"
cmp /tmp/hp /tmp/hp2 >/dev/null || fail "/dev/$d read back differs (hot-plugged)"
say "hotplug /dev/$d $sz sectors OK"
wait_for 120 no_disk 2 || fail "vproxy-2 still has a disk after vproxyctl detach"
say "hot-unplug OK"

# --- 5. destroyed with a mounted filesystem ---
d=$(dev_of 0)
mount -t ext4 /dev/$d /mnt/0 || fail "mount /dev/$d (final)"
(cd /mnt/0 && sha256sum -c /tmp/0.sum >/dev/null) || fail "/dev/$d: checksums differ (final)"
dd if=/dev/urandom of=/mnt/0/late bs=64k count=16 2>/dev/null
sync
say "mem disk mounted"
idle
