#!/bin/sh
# SPDX-License-Identifier: MIT
# /init of the test's PV domU: load the Xen guest modules and run the
# guest driver (vproxy-guest --platform xen) on every vproxy device vproxyd
# gave this domain: a verify pass (patterns written, flushed, read back),
# a mixed pass (reads, writes, flushes, discards, write-zeroes, verified),
# then stay attached and idle until dom0 destroys the domain.  Meanwhile a
# page with a known pattern waits for dom0 to foreign-map it (gfn mode).  Everything
# printed goes to the console, which xenconsoled logs in dom0.
/bin/busybox --install -s /bin
export PATH=/bin LD_LIBRARY_PATH=/lib/x86_64-linux-gnu
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
# gntalloc's default limit (1024 grants) is smaller than the pool we share.
insmod /lib/modules/xen-evtchn.ko
insmod /lib/modules/xen-gntdev.ko
insmod /lib/modules/xen-gntalloc.ko limit=8192
insmod /lib/modules/xen-privcmd.ko
insmod /lib/modules/xenfs.ko
mount -t xenfs xenfs /proc/xen
echo "XENTEST-GUEST: up"
args="--platform xen --ram 16M --timeout 60 --iodepth 8"
vproxy-guest $args --workload verify --seconds 3 --span 128 2>&1
echo "XENTEST-GUEST: verify exit $?"
vproxy-guest $args --workload mixed --seconds 5 --span 512 2>&1
echo "XENTEST-GUEST: mixed exit $?"
xen-gfncheck publish 0x5650505431 2>&1 &
vproxy-guest $args --workload idle --quiet 2>&1 &
echo "XENTEST-GUEST: idle"
while :; do sleep 3600; done
