#!/bin/bash
# Fetches what booting a real Xen under QEMU needs, from Debian's archive,
# without installing anything: the hypervisor, a kernel that runs as PV dom0
# and domU, and busybox.  Each package is fetched with `apt-get download` and
# unpacked with `dpkg -x`, then turned into the forms QEMU boots fastest:
#
#   $dir/xen         the hypervisor as an uncompressed ELF (QEMU's -kernel
#                    multiboot v1 loader cannot take the .gz)
#   $dir/vmlinux     the kernel as the ELF inside the bzImage's xz payload
#                    (a PV kernel may be an ELF; skipping the in-guest
#                    decompression saves seconds under TCG)
#   $dir/modules/    xen-evtchn, xen-gntdev, xen-gntalloc, xen-privcmd, xenfs
#                    (.ko, decompressed)
#   $dir/busybox     busybox-static
#   $dir/VERSIONS    what was fetched
#
# Idempotent: does nothing when $dir/VERSIONS exists.  Prints $dir.
#
# Environment:
#   VPROXY_XEN_BOOT_DIR  where to put it (default /var/cache/vproxy/xen-boot)
set -euo pipefail

readonly dir=${VPROXY_XEN_BOOT_DIR:-/var/cache/vproxy/xen-boot}
readonly xen_pkg=xen-hypervisor-4.17-amd64
readonly modules=(xen-evtchn xen-gntdev xen-gntalloc xen-privcmd xenfs)
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
if [[ -f $dir/VERSIONS ]]; then
	printf '%s\n' "$dir"
	exit 0
fi

# The kernel package linux-image-amd64 points at today (6.1.0-N-amd64).
kernel_pkg() {
	apt-cache depends linux-image-amd64 2>/dev/null |
		awk '/Depends: linux-image-[0-9]/ { print $2; exit }'
}

kpkg=$(kernel_pkg)
if [[ -z $kpkg && $(id -u) -eq 0 ]]; then
	log "apt-get update"
	apt-get update -qq
	kpkg=$(kernel_pkg)
fi
[[ -n $kpkg ]] || die "cannot resolve linux-image-amd64 (run apt-get update as root)"

tmp=$(mktemp -d)
apt_opts=()
# As root apt drops to the _apt user, which cannot write a private tmp.
[[ $(id -u) -ne 0 ]] || apt_opts=(-o APT::Sandbox::User=root)
log "downloading $xen_pkg $kpkg busybox-static"
(cd -- "$tmp" && apt-get download -qq "${apt_opts[@]}" "$xen_pkg" "$kpkg" busybox-static) ||
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

kver=${bz##*/vmlinuz-}
for m in "${modules[@]}"; do
	ko=$(find "$tmp/root/lib/modules/$kver" -name "$m.ko*" | head -n 1)
	[[ -n $ko ]] || die "$kpkg has no module $m"
	case $ko in
	*.xz) xz -dc -- "$ko" >"$out/modules/$m.ko" ;;
	*) cp -- "$ko" "$out/modules/$m.ko" ;;
	esac
done

cp -- "$tmp/root/bin/busybox" "$out/busybox"
chmod 755 "$out/busybox"
{
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
