#!/bin/bash
# SPDX-License-Identifier: MIT
# Fetches what booting a real Xen under QEMU needs, from Debian's archive,
# without installing anything: the hypervisor, a kernel that runs as PV dom0
# and domU, the headers of exactly that kernel (to build virtio_vproxy.ko
# for it), and busybox.  Each package is fetched with `apt-get download` and
# unpacked with `dpkg -x`, then turned into the forms QEMU boots fastest:
#
#   $dir/xen         the hypervisor as an uncompressed ELF (QEMU's -kernel
#                    multiboot v1 loader cannot take the .gz)
#   $dir/vmlinux     the kernel as the ELF inside the bzImage's xz payload
#                    (a PV kernel may be an ELF; skipping the in-guest
#                    decompression saves seconds under TCG)
#   $dir/modules/    xen-evtchn, xen-gntdev, xen-gntalloc, xen-privcmd, xenfs
#                    (.ko, decompressed): both domains load them
#   $dir/kmods/      more modules of the same kernel (.ko, decompressed) and
#                    two load orders, dependencies first: domU.order (virtio,
#                    virtio_ring, virtio_blk, ext4 and what it needs,
#                    xen-blkfront) and dom0.order (loop, xen-blkback)
#   $dir/headers/    linux-headers of the same kernel, unpacked; build
#                    modules with
#                    make -C $dir/headers/usr/src/linux-headers-<ver> M=...
#   $dir/busybox     busybox-static
#   $dir/VERSIONS    what was fetched
#
# The guest kernel is pinned (kernel_abi, kernel_version below; the same
# pin is in contrib/install-deps.sh): image and headers must be one build,
# and Debian's index moves on.  When the archive no longer has the pinned
# version, `apt-cache policy linux-image-6.1.0-<abi>-amd64` shows what it
# has: change both pins together.
#
# Idempotent: does nothing when $dir/VERSIONS names this layout and pin.
# Prints $dir.
#
# Environment:
#   VPROXY_XEN_BOOT_DIR  where to put it (default /var/cache/vproxy/xen-boot)
set -euo pipefail

readonly dir=${VPROXY_XEN_BOOT_DIR:-/var/cache/vproxy/xen-boot}
readonly xen_pkg=xen-hypervisor-4.17-amd64
readonly modules=(xen-evtchn xen-gntdev xen-gntalloc xen-privcmd xenfs)
# The guest kernel, pinned: ABI name and Debian version of one build.
readonly kernel_abi=6.1.0-57
readonly kernel_version=6.1.192-3
readonly kver=$kernel_abi-amd64
# Loaded in this order (each after what it depends on).
readonly domU_kmods=(virtio_ring virtio virtio_blk crc16 mbcache jbd2 crc32c_generic ext4
	xen-blkfront)
readonly dom0_kmods=(loop xen-blkback)
readonly layout="layout 2 kernel $kver $kernel_version"
tmp=

log() { printf 'fetch-xen-boot: %s\n' "$*" >&2; }
die() {
	log "$*"
	exit 1
}
cleanup() { [[ -z $tmp ]] || rm -rf -- "$tmp"; }
trap cleanup EXIT

# One fetch at a time (parallel test runs share the cache).
mkdir -p -- "$(dirname -- "$dir")"
exec 9>"$dir.lock"
flock 9
if [[ -f $dir/VERSIONS ]] && grep -qxF "$layout" "$dir/VERSIONS"; then
	printf '%s\n' "$dir"
	exit 0
fi

# The pinned kernel's packages, each at exactly the pinned version.
kpkgs=("linux-image-$kver=$kernel_version" "linux-headers-$kver=$kernel_version"
	"linux-headers-$kernel_abi-common=$kernel_version" "linux-kbuild-6.1=$kernel_version")
known() {
	apt-cache show "linux-image-$kver=$kernel_version" >/dev/null 2>&1
}
if ! known && [[ $(id -u) -eq 0 ]]; then
	log "apt-get update"
	apt-get update -qq
fi
known || die "linux-image-$kver $kernel_version is not in the package index" \
	"(apt-get update as root; if it is gone, pin another: apt-cache policy linux-image-amd64)"

tmp=$(mktemp -d)
apt_opts=()
# As root apt drops to the _apt user, which cannot write a private tmp.
[[ $(id -u) -ne 0 ]] || apt_opts=(-o APT::Sandbox::User=root)
log "downloading $xen_pkg ${kpkgs[*]} busybox-static"
(cd -- "$tmp" && apt-get download -qq "${apt_opts[@]}" "$xen_pkg" "${kpkgs[@]}" busybox-static) ||
	die "apt-get download failed"
mkdir -p "$tmp/root"
for deb in "$tmp"/*.deb; do
	dpkg -x "$deb" "$tmp/root"
done

out=$tmp/out
mkdir -p "$out/modules"

xen_gz=$(find "$tmp/root/boot" -name 'xen-4.17*-amd64.gz' | head -n 1)
[[ -n $xen_gz ]] || die "$xen_pkg has no boot/xen-4.17-amd64.gz"
gunzip -c "$xen_gz" >"$out/xen"

bz=$(find "$tmp/root/boot" -name 'vmlinuz-*' | head -n 1)
[[ -n $bz ]] || die "$kpkg has no vmlinuz"
# The payload is an xz stream somewhere inside the bzImage: try each xz
# magic until one decompresses to an ELF (extract-vmlinux does the same).
found=0
while IFS=: read -r off _; do
	tail -c +"$((off + 1))" -- "$bz" | xz -dc 2>/dev/null >"$out/vmlinux" || true
	if [[ $(head -c 4 "$out/vmlinux" | od -An -c | tr -d ' ') == '177ELF' ]]; then
		found=1
		break
	fi
done < <(LC_ALL=C grep -aboP '\xfd7zXZ\x00' -- "$bz")
((found)) || die "no xz-compressed ELF in $bz"

[[ ${bz##*/vmlinuz-} == "$kver" ]] || die "$bz is not kernel $kver"
# copy_ko NAME DIR: the module, decompressed.
copy_ko() {
	local ko
	ko=$(find "$tmp/root/lib/modules/$kver" -name "$1.ko*" | head -n 1)
	[[ -n $ko ]] || die "linux-image-$kver has no module $1"
	case $ko in
	*.xz) xz -dc -- "$ko" >"$2/$1.ko" ;;
	*) cp -- "$ko" "$2/$1.ko" ;;
	esac
}
for m in "${modules[@]}"; do
	copy_ko "$m" "$out/modules"
done
mkdir -p "$out/kmods"
for m in "${domU_kmods[@]}" "${dom0_kmods[@]}"; do
	copy_ko "$m" "$out/kmods"
done
# Each module's dependencies must come before it in its order.
check_order() {
	local seen=" " m dep deps
	for m in "$@"; do
		deps=$(tr '\0' '\n' <"$out/kmods/$m.ko" | sed -n 's/^depends=//p' | tr ',' ' ')
		for dep in $deps; do
			[[ $seen == *" $dep "* ]] || die "module order: $m needs $dep first"
		done
		seen+="$m "
	done
}
check_order "${domU_kmods[@]}"
check_order "${dom0_kmods[@]}"
printf '%s\n' "${domU_kmods[@]}" >"$out/kmods/domU.order"
printf '%s\n' "${dom0_kmods[@]}" >"$out/kmods/dom0.order"

# The headers, as unpacked (their relative links reach usr/lib); the
# flavour's Makefile includes the common tree by its absolute /usr/src
# path: point it at the unpacked one.
mkdir -p "$out/headers/usr/lib"
mv -- "$tmp/root/usr/src" "$out/headers/usr/src"
mv -- "$tmp/root/usr/lib/linux-kbuild-6.1" "$out/headers/usr/lib/"
sed -i "s|^include /usr/src/|include $dir/headers/usr/src/|" \
	"$out/headers/usr/src/linux-headers-$kver/Makefile"

cp -- "$tmp/root/bin/busybox" "$out/busybox"
chmod 755 "$out/busybox"
{
	printf '%s\n' "$layout"
	printf 'kernel %s\n' "$kver"
	for deb in "$tmp"/*.deb; do
		printf 'deb %s\n' "${deb##*/}"
	done
} >"$out/VERSIONS"

# Publish whole or not at all: readers test for VERSIONS, which is in the
# directory before it is renamed into place.
rm -rf -- "$dir.new"
mv -- "$out" "$dir.new"
rm -rf -- "$dir"
mv -- "$dir.new" "$dir"
log "ready in $dir ($kver)"
printf '%s\n' "$dir"
