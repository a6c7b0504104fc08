#!/bin/bash
# End-to-end test on a real Xen: boots Debian's Xen 4.17 under QEMU (TCG)
# with a Debian kernel as PV dom0, which starts xenstored, xen-init-dom0,
# xenconsoled and vproxyd (hypervisor = xen), then twice creates a PV domU
# whose guest driver (vproxy-guest --platform xen) writes, reads back,
# flushes and discards on two vproxy disks (mem, and raw when the plugin is
# built), destroys it and checks that vproxyd let go of everything (see
# dom0-init.sh).  Everything comes back on the serial console; this script
# asserts on it.
#
# Skips (exit 77) with the reason when QEMU, xen-utils or the Debian
# packages are not to be had.  Environment:
#   VPROXY_BUILD_DIR      the CMake build tree (required)
#   VPROXY_XEN_BOOT_DIR   fetch-xen-boot.sh's cache (default
#                         /var/cache/vproxy/xen-boot)
#   VPROXY_XEN_UTILS_DIR  unpacked xen-utils-4.17 (default
#                         /var/cache/vproxy/xen-utils, from install-deps.sh)
#   VPROXY_XEN_TIMEOUT    seconds the VM may run (default 240)
#   VPROXY_KEEP_TMP=1     keep the work directory (images, serial log)
set -euo pipefail

here=$(cd -- "$(dirname -- "$0")" && pwd)
# shellcheck source=../lib/cleanup.sh
source "$here/../lib/cleanup.sh"

build=${VPROXY_BUILD_DIR:?VPROXY_BUILD_DIR is not set}
utils=${VPROXY_XEN_UTILS_DIR:-/var/cache/vproxy/xen-utils}
vm_timeout=${VPROXY_XEN_TIMEOUT:-240}

skip() {
	printf 'SKIP: %s\n' "$*"
	exit 77
}
die() {
	printf 'xen_e2e: FAIL: %s\n' "$*" >&2
	exit 1
}

command -v qemu-system-x86_64 >/dev/null ||
	skip "qemu-system-x86_64 is not installed (contrib/install-deps.sh installs qemu-system-x86)"
command -v cpio >/dev/null || skip "cpio is not installed"
[[ -x $utils/usr/lib/xen-4.17/bin/xl ]] ||
	skip "xen-utils-4.17 is not unpacked in $utils (contrib/install-deps.sh does it)"
avail_kb=$(awk '/^MemAvailable:/ { print $2 }' /proc/meminfo)
((avail_kb > 1600 * 1024)) ||
	skip "the VM needs about 1.5 GiB of free memory; $((avail_kb / 1024)) MiB available"
boot=$(bash "$here/fetch-xen-boot.sh") ||
	skip "cannot fetch the Xen, kernel and busybox packages (see above)"

work=$(mktemp -d "${TMPDIR:-/tmp}/vproxy-xen.XXXXXX")
qemu_pid=
stop_vm() {
	if [[ -n $qemu_pid ]] && kill -0 "$qemu_pid" 2>/dev/null; then
		kill -TERM "$qemu_pid" 2>/dev/null || true
		for _ in 1 2 3 4 5 6 7 8 9 10; do
			kill -0 "$qemu_pid" 2>/dev/null || break
			sleep 0.5
		done
		kill -KILL "$qemu_pid" 2>/dev/null || true
	fi
	if ((CLEANUP_STATUS != 0 && CLEANUP_STATUS != 77)) && [[ -f $work/serial.log ]]; then
		printf -- '--- serial log (last 150 lines) ---\n' >&2
		tail -n 150 "$work/serial.log" >&2
	fi
	if [[ ${VPROXY_KEEP_TMP:-0} == 1 ]]; then
		printf 'xen_e2e: kept %s\n' "$work" >&2
	else
		rm -rf -- "$work"
	fi
}
cleanup_push stop_vm

XEN_BOOT_DIR=$boot XEN_UTILS_DIR=$utils VPROXY_BUILD_DIR=$build \
	bash "$here/mkimages.sh" "$work/img" >/dev/null
raw=mem
[[ ! -f $build/plugins/raw.so ]] || raw=raw
printf 'xen_e2e: images built (second disk on the %s plugin); booting Xen\n' "$raw"

start=$SECONDS
# TCG, not /dev/kvm: the KVM here cannot run Xen at a usable speed.  Xen
# needs smap=0 under TCG or dom0 dies at its first trap.
qemu-system-x86_64 -accel tcg,thread=multi -cpu max -m 1024 -smp 2 \
	-nodefaults -display none -serial "file:$work/serial.raw" -no-reboot \
	-kernel "$boot/xen" \
	-append "console=com1 com1=115200,8n1 dom0_mem=512M,max:512M dom0_max_vcpus=1 smap=0 bootscrub=0 noreboot" \
	-initrd "$boot/vmlinux console=hvc0 quiet,$work/img/dom0.cpio" \
	</dev/null >"$work/qemu.log" 2>&1 &
qemu_pid=$!

# dom0 powers off at the end, which ends QEMU; a panic or a FAIL does not.
verdict=timeout
while ((SECONDS - start < vm_timeout)); do
	[[ ! -f $work/serial.raw ]] || tr -d "\r" <"$work/serial.raw" >"$work/serial.log"
	if ! kill -0 "$qemu_pid" 2>/dev/null; then
		verdict=exited
		break
	fi
	if grep -qE 'XENTEST: FAIL|Kernel panic|\(XEN\) Panic' "$work/serial.log" 2>/dev/null; then
		verdict=failed
		break
	fi
	sleep 1
done
# A panic, a FAIL or the time limit leave QEMU running: stop it first.
[[ $verdict == exited ]] || kill -TERM "$qemu_pid" 2>/dev/null || true
wait "$qemu_pid" 2>/dev/null || true
qemu_pid=
tr -d '\r' <"$work/serial.raw" >"$work/serial.log"
log=$work/serial.log
printf 'xen_e2e: VM ran %d s (%s)\n' "$((SECONDS - start))" "$verdict"
[[ $verdict != timeout ]] || die "the VM did not finish within $vm_timeout s"
! grep -q 'XENTEST: FAIL' "$log" || die "$(grep 'XENTEST: FAIL' "$log")"
grep -q 'XENTEST: done' "$log" || die "dom0 did not reach the end of its script"

# Sanitizer reports from vproxyd or the guest (when built with them).
! grep -qE 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$log" ||
	die "sanitizer report in the VM"

doms=$(sed -n 's/^XENTEST: round [0-9]*: domU vpguest is domain \([0-9]*\)$/\1/p' "$log")
[[ $(wc -w <<<"$doms") == 2 ]] || die "expected two domUs, saw: $doms"
for dom in $doms; do
	p="[domU $dom] "
	for phase in verify mixed; do
		grep -qF "${p}XENTEST-GUEST: $phase exit 0" "$log" ||
			die "domain $dom: the $phase workload failed"
	done
	for dev in 0 1; do
		grep -qE "^\[vproxyd\] .*dom $dom dev $dev: connected: grant mode" "$log" ||
			die "vproxyd never connected dom $dom dev $dev in grant mode"
		# Two result lines per device: the verify pass, then the mixed one.
		lines=$(grep -F "${p}guest $dom dev $dev: " "$log" | grep ' IOPS ' || true)
		[[ $(grep -c 'verify OK$' <<<"$lines") == 2 ]] ||
			die "domain $dom dev $dev: expected two verified runs, got: $lines"
		mixed=$(tail -n 1 <<<"$lines")
		for op in reads writes flushes discards verified; do
			n=$(sed -n "s/.* $op \([0-9]*\) .*/\1/p" <<<"$mixed")
			((${n:-0} > 0)) || die "domain $dom dev $dev: no $op in: $mixed"
		done
		printf 'xen_e2e: dom %s dev %s: %s\n' "$dom" "$dev" "${mixed#"$p"}"
	done
	line=$(grep -E "^XENTEST: round [0-9]+: dom $dom destroyed: " "$log") ||
		die "no teardown report for domain $dom"
	[[ $line == *"maps 0 ports 0 backend-nodes 0 domain-left 0" ]] ||
		die "domain $dom not cleaned up: $line"
	printf 'xen_e2e: %s\n' "${line#XENTEST: }"
done
# gfn mode: a domU frame foreign-mapped through the hv layer and gmem.
grep -q '^gfncheck: pattern OK' "$log" || die "gfn mode: the domU's pattern page did not map right"
grep -q '^gfncheck: OK$' "$log" || die "gfn mode: $(grep '^gfncheck:' "$log" | tr '\n' ';')"
printf 'xen_e2e: %s\n' "$(grep -E '^gfncheck: (maps|privcmd)' "$log" | tr '\n' ' ')"
# Every local port vproxyd bound (its debug log) was unbound again.
bound=$(sed -n 's/^\[vproxyd\] .*: dom [0-9]*: event channel [0-9]* bound to local port \([0-9]*\)$/\1/p' "$log" | sort -n)
unbound=$(sed -n 's/^\[vproxyd\] .*: dom [0-9]*: local port \([0-9]*\) unbound$/\1/p' "$log" | sort -n)
[[ -n $bound ]] || die "vproxyd logged no event channel binding"
[[ $bound == "$unbound" ]] || die "ports bound: ${bound//$'\n'/ }; unbound: ${unbound//$'\n'/ }"
printf 'xen_e2e: %d event channel bindings, each unbound again\n' "$(wc -l <<<"$bound")"
grep -q 'XENTEST: vproxyd exit 0' "$log" || die "vproxyd did not exit cleanly on SIGTERM"
printf 'xen_e2e: PASS: two domUs served over real Xen, cleaned up after xl destroy\n'
