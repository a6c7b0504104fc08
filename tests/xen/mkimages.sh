#!/bin/bash
# SPDX-License-Identifier: MIT
# Builds the initramfs images of the real-Xen test from this machine's
# binaries: two for domUs, the userspace stub's (busybox, vproxy-guest, the
# Xen guest modules) and the kernel module's (busybox, virtio_vproxy.ko
# built here against the guest kernel's headers, virtio, ext4 and
# xen-blkfront from the same kernel, mke2fs, fio), and dom0's (busybox, the
# Xen tools, vproxyd and its plugins, loop and xen-blkback, the domU kernel
# and images, the test's scripts).  Libraries come from ldd, so a build
# with sanitizers carries its runtimes along; libgcc_s.so.1 is added by
# hand (glibc dlopens it for thread cancellation and xl aborts without it).
# Archives are uncompressed: under TCG, decompressing costs more than
# reading.
#
#   mkimages.sh OUT_DIR
#
# Environment: VPROXY_BUILD_DIR (the CMake build tree, required),
# XEN_BOOT_DIR (fetch-xen-boot.sh's output), XEN_UTILS_DIR (the unpacked
# xen-utils-4.17), VPROXY_XEN_KMOD_GFN (1, the default: the kernel
# module's domU also runs in gfn mode), VPROXY_XEN_RAW_ON (file, the
# default: the raw plugin serves disk1.img itself; loop: it serves
# /dev/loop1 over disk1.img with direct = on, as blkback serves
# /dev/loop0), VPROXY_XEN_POLL_US (vproxyd's poll-us, default unset),
# VPROXY_XEN_FIO_ROUNDS, VPROXY_XEN_FIO_SECS, VPROXY_XEN_BENCH,
# VPROXY_XEN_PROFILE and VPROXY_XEN_PROFILE_QD (the fio comparison;
# xen_e2e.sh says what each does).
# Writes OUT_DIR/dom0.cpio, OUT_DIR/domU.cpio, OUT_DIR/domU-kmod.cpio and
# OUT_DIR/kmod/ (the module's build).
set -euo pipefail

out=${1:?usage: mkimages.sh OUT_DIR}
here=$(cd -- "$(dirname -- "$0")" && pwd)
build=${VPROXY_BUILD_DIR:?VPROXY_BUILD_DIR is not set}
boot=${XEN_BOOT_DIR:?XEN_BOOT_DIR is not set}
utils=${XEN_UTILS_DIR:?XEN_UTILS_DIR is not set}
xenbin=/usr/lib/xen-4.17/bin

die() {
	printf 'mkimages: %s\n' "$*" >&2
	exit 1
}

# add_file ROOT SRC [DEST]: copy SRC (following links) to ROOT/DEST.
add_file() {
	local root=$1 src=$2 dest=${3:-$2}
	mkdir -p -- "$root/$(dirname -- "$dest")"
	cp -L -- "$src" "$root/$dest"
}

# add_libs ROOT BIN...: the libraries ldd lists for each BIN, at the paths
# ldd resolved them to, plus the dynamic loader.
add_libs() {
	local root=$1 bin lib list
	shift
	for bin in "$@"; do
		list=$(ldd -- "$bin") || die "ldd $bin failed"
		if grep -q 'not found' <<<"$list"; then
			die "$bin: unresolved libraries: $(grep 'not found' <<<"$list" | tr -s ' \t\n' ' ')"
		fi
		while read -r lib; do
			[[ -e $root/$lib ]] || add_file "$root" "$lib"
		done < <(awk '$2 == "=>" && $3 ~ /^\// { print $3; next }
			$1 ~ /^\// { print $1 }' <<<"$list")
	done
}

# add_bin ROOT SRC DEST: an executable and its libraries.
add_bin() {
	add_file "$1" "$2" "$3"
	chmod 755 -- "$1/$3"
	add_libs "$1" "$2"
}

# base ROOT: busybox, directories, libgcc_s and the Xen modules.
base() {
	local root=$1 d m
	for d in bin sbin etc proc sys dev run tmp var/log var/lib lib/modules; do
		mkdir -p -- "$root/$d"
	done
	ln -s ../run "$root/var/run"
	add_file "$root" "$boot/busybox" /bin/busybox
	chmod 755 -- "$root/bin/busybox"
	ln -s busybox "$root/bin/sh"
	add_file "$root" /lib/x86_64-linux-gnu/libgcc_s.so.1
	for m in "$boot"/modules/*.ko; do
		add_file "$root" "$m" "/lib/modules/${m##*/}"
	done
}

# cpio_of ROOT FILE: an uncompressed newc archive of ROOT.
cpio_of() {
	(cd -- "$1" && find . -print0 | LC_ALL=C sort -z |
		cpio --null -o -H newc --owner=0:0 --quiet) >"$2"
}

kver=$(sed -n 's/^kernel //p' "$boot/VERSIONS")
kdir=$boot/headers/usr/src/linux-headers-$kver
fio=$(command -v fio) || die "fio is not installed (contrib/install-deps.sh installs it)"
mke2fs=$(command -v mke2fs || echo /sbin/mke2fs)
for f in "$build/core/vproxyd" "$build/core/vproxyctl" "$build/proxy-stub/vproxy-guest" "$build/plugins/mem.so" \
	"$build/tests/xen/xen-gfncheck" \
	"$boot/xen" "$boot/vmlinux" "$boot/busybox" "$utils$xenbin/xl" \
	"$utils$xenbin/xenstored" "$kdir/Makefile" "$boot/kmods/domU.order" "$mke2fs"; do
	[[ -e $f ]] || die "missing $f"
done

rm -rf -- "$out"
mkdir -p -- "$out"

# --- the guest kernel module, for exactly the kernel the domU boots ---
cp -r -- "$here/../../proxy-stub/linux-kmod" "$out/kmod"
make -s -C "$kdir" M="$out/kmod" modules >"$out/kmod/build.log" 2>&1 ||
	die "building virtio_vproxy.ko against $kdir failed: $(tail -n 20 "$out/kmod/build.log")"
! grep -q 'warning:' "$out/kmod/build.log" ||
	die "virtio_vproxy.ko builds with warnings: $(grep 'warning:' "$out/kmod/build.log")"
[[ -f $out/kmod/virtio_vproxy.ko ]] || die "no virtio_vproxy.ko"

# --- the domU ---
u=$out/domU.root
base "$u"
add_bin "$u" "$build/proxy-stub/vproxy-guest" /bin/vproxy-guest
add_bin "$u" "$build/tests/xen/xen-gfncheck" /bin/xen-gfncheck
add_file "$u" "$here/domU-init.sh" /init
chmod 755 -- "$u/init"
cpio_of "$u" "$out/domU.cpio"

# --- the domU of the kernel module ---
k=$out/domU-kmod.root
base "$k"
rm -f -- "$k"/lib/modules/*.ko # the driver needs none of the Xen device modules
add_file "$k" "$out/kmod/virtio_vproxy.ko" /lib/modules/virtio_vproxy.ko
add_file "$k" "$boot/kmods/domU.order" /lib/modules/domU.order
while read -r m; do
	add_file "$k" "$boot/kmods/$m.ko" "/lib/modules/$m.ko"
done <"$boot/kmods/domU.order"
add_bin "$k" "$mke2fs" /sbin/mke2fs
[[ ! -f /etc/mke2fs.conf ]] || add_file "$k" /etc/mke2fs.conf
add_bin "$k" "$fio" /bin/fio
# VPROXY_XEN_PROFILE: perf samples the guest's CPU as well.
[[ -z ${VPROXY_XEN_PROFILE:-} ]] || ! command -v perf >/dev/null ||
	add_bin "$k" "$(command -v perf)" /bin/perf
add_file "$k" "$here/domU-kmod-init.sh" /init
chmod 755 -- "$k/init"
cpio_of "$k" "$out/domU-kmod.cpio"

# --- dom0 ---
d=$out/dom0.root
base "$d"
for t in xl xenstored xen-init-dom0 xenconsoled lsevtchn xen-mfndump; do
	add_bin "$d" "$utils$xenbin/$t" "$xenbin/$t"
done
add_bin "$d" "$build/core/vproxyd" /bin/vproxyd
add_bin "$d" "$build/core/vproxyctl" /bin/vproxyctl
add_bin "$d" "$build/tests/xen/xen-gfncheck" /bin/xen-gfncheck
mkdir -p -- "$d/lib/vproxy/plugins"
for p in "$build"/plugins/*.so; do
	add_bin "$d" "$p" "/lib/vproxy/plugins/${p##*/}"
done
for t in xenstore-read xenstore-ls xenstore-write; do
	command -v "$t" >/dev/null && add_bin "$d" "$(command -v "$t")" "/bin/$t"
done
add_file "$d" "$boot/vmlinux" /boot/vmlinux
cp -- "$out/domU.cpio" "$d/boot/domU.cpio"
cp -- "$out/domU-kmod.cpio" "$d/boot/domU-kmod.cpio"
add_file "$d" "$boot/kmods/dom0.order" /lib/modules/extra/dom0.order
while read -r m; do
	add_file "$d" "$boot/kmods/$m.ko" "/lib/modules/extra/$m.ko"
done <"$boot/kmods/dom0.order"
add_file "$d" "$here/vp-block.sh" /etc/xen/scripts/vp-block
chmod 755 -- "$d/etc/xen/scripts/vp-block"
add_file "$d" "$here/dom0-init.sh" /init
chmod 755 -- "$d/init"
mkdir -p -- "$d/var/lib/xen" "$d/var/lib/xenstored" "$d/var/log/xen/console" \
	"$d/etc/xen" "$d/etc/vproxy"
# The raw plugin's device when the plugin is built, else a second RAM disk.
raw_on=${VPROXY_XEN_RAW_ON:-file}
[[ $raw_on == file || $raw_on == loop ]] || die "VPROXY_XEN_RAW_ON must be file or loop"
poll_us=${VPROXY_XEN_POLL_US:-}
[[ -z $poll_us || $poll_us =~ ^[0-9]+$ ]] || die "VPROXY_XEN_POLL_US must be a number"
if [[ -f $build/plugins/raw.so && $raw_on == loop ]]; then
	second='plugin = raw
file = /dev/loop1
direct = on'
elif [[ -f $build/plugins/raw.so ]]; then
	second='plugin = raw
file = /var/lib/vproxy/disk1.img
direct = off'
else
	second='plugin = mem
size = 32M'
fi
cat >"$d/etc/vproxy/vproxyd.ini" <<INI
[vproxyd]
hypervisor = xen
plugin-dir = /lib/vproxy/plugins
log-level = debug
${poll_us:+poll-us = $poll_us}

[device ram0]
guest = vpguest
id = 0
plugin = mem
size = 32M

[device disk1]
guest = vpguest
id = 1
$second
INI
cat >"$d/etc/xen/vpguest.cfg" <<CFG
name = "vpguest"
type = "pv"
kernel = "/boot/vmlinux"
ramdisk = "/boot/domU.cpio"
extra = "console=hvc0 quiet"
memory = 192
vcpus = 1
on_poweroff = "destroy"
on_crash = "destroy"
CFG
kmod_args=
[[ ${VPROXY_XEN_KMOD_GFN:-1} != 1 ]] || kmod_args=" vptest_gfn=1"
# The fio comparison: rounds, seconds per workload, bench-only, profiling.
rounds=${VPROXY_XEN_FIO_ROUNDS:-3} secs=${VPROXY_XEN_FIO_SECS:-5}
bench=${VPROXY_XEN_BENCH:-0} profile=${VPROXY_XEN_PROFILE:-}
[[ $rounds =~ ^[1-9][0-9]?$ ]] || die "VPROXY_XEN_FIO_ROUNDS must be 1 to 99"
[[ $secs =~ ^[1-9][0-9]{0,2}$ ]] || die "VPROXY_XEN_FIO_SECS must be 1 to 999"
[[ $bench == 0 || $bench == 1 ]] || die "VPROXY_XEN_BENCH must be 0 or 1"
[[ -z $profile || $profile =~ ^[1-9][0-9]{0,2}$ ]] || die "VPROXY_XEN_PROFILE must be seconds"
[[ -z $profile || $bench == 1 ]] || die "VPROXY_XEN_PROFILE needs VPROXY_XEN_BENCH=1"
[[ -z $profile || $profile -ge 20 ]] || die "VPROXY_XEN_PROFILE: the profile takes 18 s; give it 20 or more"
kmod_args="$kmod_args vptest_fio_rounds=$rounds vptest_fio_secs=$secs"
[[ $bench != 1 ]] || kmod_args="$kmod_args vptest_bench=1"
[[ -z $profile ]] || kmod_args="$kmod_args vptest_profile=$profile vptest_profile_qd=${VPROXY_XEN_PROFILE_QD:-1}"
[[ ${VPROXY_XEN_PROFILE_QD:-1} =~ ^[1-9][0-9]{0,2}$ ]] || die "VPROXY_XEN_PROFILE_QD must be 1 to 999"
printf 'bench=%s profile=%s\n' "$bench" "$profile" >"$d/etc/xentest.conf"
if [[ -n $profile ]]; then
	perf=$(command -v perf) || die "VPROXY_XEN_PROFILE needs perf on this machine"
	add_bin "$d" "$perf" /bin/perf
fi
cat >"$d/etc/xen/vpguest-kmod.cfg" <<CFG
name = "vpguest"
type = "pv"
kernel = "/boot/vmlinux"
ramdisk = "/boot/domU-kmod.cpio"
extra = "console=hvc0 quiet$kmod_args"
memory = 448
vcpus = 1
on_poweroff = "destroy"
on_crash = "destroy"
CFG
cpio_of "$d" "$out/dom0.cpio"
rm -rf -- "$u" "$k" "$d"
ls -l -- "$out"
