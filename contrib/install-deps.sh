#!/bin/bash
# SPDX-License-Identifier: MIT
# Installs what vproxy needs to build and test on Debian 12 (bookworm), and
# unpacks Debian's xenstored for the hypervisor-less test setup.
#
# xen-utils-4.17 is fetched with `apt-get download` and unpacked with
# `dpkg -x` into a cache directory, never installed: installing it would pull
# in the hypervisor and a boot loader entry. Its runtime libraries come with
# libxen-dev.
#
# Idempotent: installs only what is missing, runs `apt-get update` only when
# it must. Not root and something missing: prints the command, exits 1.
#
# Environment:
#   VPROXY_XEN_UTILS_DIR  where xen-utils is unpacked
#                         (default /var/cache/vproxy/xen-utils)
set -euo pipefail

# xenstore-utils: xenstore-read/-ls, which the integration tests use.
# liburing-dev: the raw and sparse plugins. fio, qemu-system-common
# (qemu-storage-daemon), gnuplot-nox: the bench's baseline, peer and plots.
# qemu-system-x86, cpio: booting a real Xen for the end-to-end test.
# clang, libclang-rt-dev (libFuzzer), llvm (llvm-cov): the fuzzers.
# libelf1, e2fsprogs: building virtio_vproxy.ko (the guest kernel's objtool)
# and mkfs.ext4 in the real-Xen test's domU.
readonly required=(build-essential cmake pkg-config libevent-dev libxen-dev
	libinih-dev libjson-c-dev libsystemd-dev check procps xenstore-utils liburing-dev fio qemu-system-common
	gnuplot-nox qemu-system-x86 cpio xz-utils clang libclang-rt-dev llvm
	libelf1 e2fsprogs)
# The guest kernel of the real-Xen test, pinned (tests/xen/fetch-xen-boot.sh
# has the same pin and fetches image and headers by it): its headers, to
# build virtio_vproxy.ko by hand with
#   make -C /usr/src/linux-headers-$guest_kernel_abi-amd64 M=$PWD/proxy-stub/linux-kmod
# Installed when the archive still has that version (it may move on).
readonly guest_kernel_abi=6.1.0-57
readonly guest_kernel_version=6.1.192-3
readonly optional=("linux-headers-$guest_kernel_abi-amd64=$guest_kernel_version")
readonly xen_utils_pkg=xen-utils-4.17
readonly cache_dir=${VPROXY_XEN_UTILS_DIR:-/var/cache/vproxy/xen-utils}
readonly xenstored=$cache_dir/usr/lib/xen-4.17/bin/xenstored

export DEBIAN_FRONTEND=noninteractive

updated=0
tmp=

log() { printf 'install-deps: %s\n' "$*" >&2; }

cleanup() {
	if [[ -n $tmp ]]; then
		rm -rf -- "$tmp"
	fi
}
trap cleanup EXIT

is_root() { [[ $(id -u) -eq 0 ]]; }

# PKG or PKG=VERSION (then that version exactly).
is_installed() {
	local name=${1%%=*} st
	st=$(dpkg-query -W -f='${Status} ${Version}' "$name" 2>/dev/null) || return 1
	[[ $st == "install ok installed "* ]] || return 1
	[[ $1 != *=* || ${st##* } == "${1#*=}" ]]
}

# Whether the package index knows the package (apt-cache needs `apt-get update`
# to have run once on a fresh machine).
is_known() {
	[[ -n $(apt-cache show --no-all-versions "$1" 2>/dev/null) ]]
}

apt_update_once() {
	if ((updated == 0)); then
		log "apt-get update"
		apt-get update -qq
		updated=1
	fi
}

install_packages() {
	local missing=() pkg
	for pkg in "${required[@]}"; do
		is_installed "$pkg" || missing+=("$pkg")
	done

	local want_optional=()
	for pkg in "${optional[@]}"; do
		is_installed "$pkg" || want_optional+=("$pkg")
	done

	if ((${#missing[@]} == 0 && ${#want_optional[@]} == 0)); then
		log "all packages present"
		return 0
	fi

	if ! is_root; then
		for pkg in "${want_optional[@]}"; do
			is_known "$pkg" && missing+=("$pkg")
		done
		if ((${#missing[@]} == 0)); then
			log "all packages present (${want_optional[*]} not in this release)"
			return 0
		fi
		log "missing packages: ${missing[*]}; run as root:"
		printf 'apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends %s\n' \
			"${missing[*]}"
		exit 1
	fi

	apt_update_once
	for pkg in "${want_optional[@]}"; do
		if is_known "$pkg"; then
			missing+=("$pkg")
		else
			log "skipping $pkg: not in this Debian release"
		fi
	done
	if ((${#missing[@]} > 0)); then
		log "installing ${missing[*]}"
		apt-get install -y -qq --no-install-recommends "${missing[@]}"
	fi
}

unpack_xen_utils() {
	if [[ -x $xenstored ]]; then
		log "xenstored already unpacked"
		return 0
	fi

	if ! is_known "$xen_utils_pkg"; then
		if ! is_root; then
			log "$xen_utils_pkg is not in the package index; run as root: apt-get update"
			exit 1
		fi
		apt_update_once
		is_known "$xen_utils_pkg" || {
			log "$xen_utils_pkg is not available from the configured sources"
			exit 1
		}
	fi

	mkdir -p -- "$cache_dir"
	tmp=$(mktemp -d)
	local apt_opts=()
	# As root apt drops to the _apt user, which cannot write a private tmp.
	if is_root; then
		apt_opts=(-o APT::Sandbox::User=root)
	fi
	log "downloading $xen_utils_pkg"
	(cd -- "$tmp" && apt-get download -qq "${apt_opts[@]}" "$xen_utils_pkg")

	local debs=("$tmp"/"$xen_utils_pkg"_*.deb)
	if [[ ! -f ${debs[0]} ]]; then
		log "apt-get download produced no $xen_utils_pkg package"
		exit 1
	fi
	log "unpacking ${debs[0]##*/} into $cache_dir"
	dpkg -x "${debs[0]}" "$cache_dir"

	if [[ ! -x $xenstored ]]; then
		log "$xen_utils_pkg has no $xenstored"
		exit 1
	fi
}

check_xenstored_libs() {
	local unresolved
	unresolved=$(ldd "$xenstored" | grep 'not found' || true)
	if [[ -n $unresolved ]]; then
		log "xenstored needs libraries that are missing (libxen-dev pulls them in):"
		printf '%s\n' "$unresolved" >&2
		exit 1
	fi
}

install_packages
unpack_xen_utils
check_xenstored_libs
printf 'xenstored: %s\n' "$xenstored"
