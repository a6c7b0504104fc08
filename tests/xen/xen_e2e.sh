#!/bin/bash
# SPDX-License-Identifier: MIT
# End-to-end test on a real Xen: boots Debian's Xen 4.17 under QEMU (TCG)
# with a Debian kernel as PV dom0, which starts xenstored, xen-init-dom0,
# xenconsoled and vproxyd (hypervisor = xen), then twice creates a PV domU
# on two vproxy disks (mem, and raw when the plugin is built), destroys it
# and checks that vproxyd let go of everything (see dom0-init.sh):
#  - round 1: the userspace stub (vproxy-guest --platform xen) writes, reads
#    back, flushes and discards;
#  - round 2: the guest kernel with virtio_vproxy.ko (built here against the
#    pinned guest kernel's headers) and virtio_blk: ext4 on /dev/vda and
#    /dev/vdb survives remount, unbind/bind and module reload in grant and
#    gfn mode; fio 4 KiB random read/write at QD 1 and 32 on /dev/vdb in
#    both modes and on a blkback disk; destroyed with ext4 mounted
#    (domU-kmod-init.sh).  The fio table and the ratios are printed.
# Everything comes back on the serial console; this script asserts on it.
#
# Skips (exit 77) with the reason when QEMU, xen-utils or the Debian
# packages are not to be had.  Environment:
#   VPROXY_BUILD_DIR      the CMake build tree (required)
#   VPROXY_XEN_BOOT_DIR   fetch-xen-boot.sh's cache (default
#                         /var/cache/vproxy/xen-boot)
#   VPROXY_XEN_UTILS_DIR  unpacked xen-utils-4.17 (default
#                         /var/cache/vproxy/xen-utils, from install-deps.sh)
#   VPROXY_XEN_TIMEOUT    seconds the VM may run (default 1200 + 200 per
#                         fio round; it needs about 330 on an idle 2-core
#                         machine)
#   VPROXY_XEN_FIO_ROUNDS every fio workload this many times, vproxy and
#                         blkback back to back, the order swapped each
#                         round; medians are printed (default 3)
#   VPROXY_XEN_FIO_SECS   seconds per fio workload (default 5)
#   VPROXY_XEN_BENCH=1    the kernel module's fio comparison alone: no
#                         userspace-stub round, file systems or hot-plug
#                         (bench/xen-bench.sh sets it)
#   VPROXY_XEN_PROFILE=S  with VPROXY_XEN_BENCH=1: first S seconds (20 or
#                         more) of fio at QD 1 on each disk, during which
#                         dom0 counts vproxyd's system calls and samples
#                         its CPU, then the guest samples its own (this
#                         machine's perf is copied into both)
#   VPROXY_XEN_PROFILE_QD the queue depth of that run (default 1)
#   VPROXY_XEN_KMOD_GFN=0 skip the kernel module's gfn-mode round (run by
#                         default, beside grant mode)
#   VPROXY_XEN_RAW_ON=loop  vproxy's raw disk on /dev/loop1 (direct = on)
#                         like blkback's, instead of the file (default file)
#   VPROXY_XEN_POLL_US=N  vproxyd's poll-us (default: not set)
#   VPROXY_KEEP_TMP=1     keep the work directory (images, serial log)
set -euo pipefail

here=$(cd -- "$(dirname -- "$0")" && pwd)
# shellcheck source=../lib/cleanup.sh
source "$here/../lib/cleanup.sh"

build=${VPROXY_BUILD_DIR:?VPROXY_BUILD_DIR is not set}
utils=${VPROXY_XEN_UTILS_DIR:-/var/cache/vproxy/xen-utils}
rounds=${VPROXY_XEN_FIO_ROUNDS:-3}
bench=${VPROXY_XEN_BENCH:-0}
vm_timeout=${VPROXY_XEN_TIMEOUT:-$((1200 + 200 * rounds))}

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
((avail_kb > 2200 * 1024)) ||
	skip "the VM needs about 2 GiB of free memory; $((avail_kb / 1024)) MiB available"
boot=$(bash "$here/fetch-xen-boot.sh") ||
	skip "cannot fetch the Xen, kernel, headers and busybox packages (see above)"
command -v fio >/dev/null || skip "fio is not installed (contrib/install-deps.sh installs it)"
command -v make >/dev/null && command -v gcc-12 >/dev/null ||
	skip "make and gcc-12 are needed to build virtio_vproxy.ko (contrib/install-deps.sh)"

# fio_table: the guest's XENTEST-FIO lines (label rw qdN iops I lat_us L
# irqs_per_io Q kicks_per_io K round R) as a table of medians over the
# rounds; the ratio is the median of each round's vproxy/blkback (the two
# ran back to back), gfn's the ratio of the medians.
fio_table() {
	awk -v rounds="$rounds" '
	function median(list,    a, n, i, j, t) {
		n = split(list, a, " ")
		for (i = 2; i <= n; i++)
			for (j = i; j > 1 && a[j - 1] + 0 > a[j] + 0; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
		return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
	}
	function add(l, k, field, v) { vals[l, k, field] = vals[l, k, field] " " v }
	function cell(l, k) {
		if (!((l, k, "iops") in vals)) return "-"
		return sprintf("%d (%d; %.2f/%.2f)", median(vals[l, k, "iops"]), median(vals[l, k, "lat"]),
			median(vals[l, k, "irq"]), median(vals[l, k, "kick"]))
	}
	{
		k = $2 " " $3; r = $13
		add($1, k, "iops", $5); add($1, k, "lat", $7); add($1, k, "irq", $9); add($1, k, "kick", $11)
		iops[$1, k, r] = $5
		if ($1 == "vproxy-gfn") gfn = 1
		if (!(k in seen)) { seen[k] = 1; order[n++] = k }
	}
	END {
		print "xen_e2e: fio 4 KiB on /dev/vdb (vproxy, raw plugin) and /dev/xvda (blkback, loop device)"
		print "xen_e2e: medians of " rounds " rounds: IOPS (mean latency us; interrupts/kicks per I/O);"
		print "xen_e2e: ratio vproxy/blkback IOPS, the median of the rounds [each round]"
		printf "xen_e2e: %-15s %-26s", "workload", "vproxy grant"
		if (gfn) printf " %-26s", "vproxy gfn"
		printf " %-22s %s\n", "blkback", "ratio"
		for (i = 0; i < n; i++) {
			k = order[i]; each = ""
			for (r = 1; r <= rounds; r++) {
				b = iops["blkback", k, r]
				ratio[r] = b ? iops["vproxy-grant", k, r] / b : 0
				each = each sprintf("%s%.2f", r > 1 ? " " : "", ratio[r])
				rl = rl " " ratio[r]
			}
			printf "xen_e2e: %-15s %-26s", k, cell("vproxy-grant", k)
			if (gfn) printf " %-26s", cell("vproxy-gfn", k)
			b = median(vals["blkback", k, "iops"])
			printf " %-22s grant %.2fx [%s]", cell("blkback", k), median(rl), each
			if (gfn) printf " gfn %.2fx", b ? median(vals["vproxy-gfn", k, "iops"]) / b : 0
			printf "\n"
			rl = ""
		}
	}'
}

# fio_report: domain $dom's fio results in $log (the profile runs aside),
# all of them there and understood, as the table; then its device stats.
fio_report() {
	local lines want
	lines=$(sed -n "s/^\[domU $dom\] XENTEST-FIO: //p" "$log" | grep -v '^profile-' || true)
	! grep -q unparsed <<<"$lines" || die "fio output not understood: $lines"
	want=$((8 * rounds))
	[[ $gfn != 1 ]] || want=$((12 * rounds))
	[[ $(wc -l <<<"$lines") == "$want" ]] || die "expected $want fio results, got: $lines"
	fio_table <<<"$lines"
	grep -F "[domU $dom] XENTEST-GUEST: stats" "$log" | sed "s/^.*XENTEST-GUEST: /xen_e2e: /"
}

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
# Profiling carries perf and its libraries into both images (dom0's holds
# the guest's): dom0 needs room to unpack them.
vm_mb=1536 dom0_mb=768
[[ -z ${VPROXY_XEN_PROFILE:-} ]] || vm_mb=2048 dom0_mb=1280
qemu-system-x86_64 -accel tcg,thread=multi -cpu max -m $vm_mb -smp 2 \
	-nodefaults -display none -serial "file:$work/serial.raw" -no-reboot \
	-kernel "$boot/xen" \
	-append "console=com1 com1=115200,8n1 dom0_mem=${dom0_mb}M,max:${dom0_mb}M dom0_max_vcpus=1 smap=0 bootscrub=0 noreboot" \
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

gfn=${VPROXY_XEN_KMOD_GFN:-1}
# VPROXY_XEN_BENCH=1 (bench/xen-bench.sh): the fio comparison alone.
if [[ $bench == 1 ]]; then
	dom=$(sed -n 's/^XENTEST: round 2: domU vpguest is domain \([0-9]*\)$/\1/p' "$log")
	[[ -n $dom ]] || die "no kernel-module domU in the log"
	! grep -qF "[domU $dom] XENTEST-GUEST: FAIL" "$log" ||
		die "domain $dom: $(grep -F "[domU $dom] XENTEST-GUEST: FAIL" "$log")"
	grep -qF "[domU $dom] XENTEST-GUEST: fio done" "$log" || die "domain $dom: no \"fio done\""
	sed -n 's/^\(\[perf .*\]\) /\1 /p; s/^XENTEST: \(perf .*\)/\1/p' "$log"
	sed -n "s/^\[domU $dom\] \(\[guest-perf .*\)/\1/p; s/^\[domU $dom\] XENTEST-GUEST: \(perf .*\)/\1/p" "$log"
	sed -n "s/^\[domU $dom\] XENTEST-FIO: \(profile-.*\)/\1/p" "$log"
	fio_report
	exit 0
fi

doms=$(sed -n 's/^XENTEST: round [0-9]*: domU vpguest is domain \([0-9]*\)$/\1/p' "$log")
[[ $(wc -w <<<"$doms") == 2 ]] || die "expected two domUs, saw: $doms"
read -r stub_dom kmod_dom <<<"$(tr '\n' ' ' <<<"$doms")"

# Round 1: the userspace stub.
dom=$stub_dom
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
	for op in reads writes verified; do
		n=$(sed -n "s/.* $op \([0-9]*\) .*/\1/p" <<<"$mixed")
		((${n:-0} > 0)) || die "domain $dom dev $dev: no $op in: $mixed"
	done
	# A flush follows every 64th request: a run that slow has none.
	n=$(sed -n "s/.* reads \([0-9]*\) writes \([0-9]*\) flushes \([0-9]*\) .*/(\1 + \2 < 64) + \3/p" <<<"$mixed")
	(($n > 0)) || die "domain $dom dev $dev: no flushes in: $mixed"
	# Discards and write-zeroes are each ~2-3 % of the requests, drawn at
	# random: on a loaded machine a short run may miss one of them.
	n=$(sed -n "s/.* discards \([0-9]*\) zeroes \([0-9]*\) .*/\1 + \2/p" <<<"$mixed")
	(($n > 0)) || die "domain $dom dev $dev: neither discards nor write-zeroes in: $mixed"
	printf 'xen_e2e: dom %s dev %s: %s\n' "$dom" "$dev" "${mixed#"$p"}"
done

# Round 2: the kernel module.
dom=$kmod_dom
p="[domU $dom] "
! grep -qF "${p}XENTEST-GUEST: FAIL" "$log" ||
	die "domain $dom: $(grep -F "${p}XENTEST-GUEST: FAIL" "$log")"
modes=grant facts=()
[[ $gfn != 1 ]] || modes="grant gfn" facts=("fs vproxy-0 .* gfn OK")
for fact in "fs vproxy-0 .* remount OK" "fs vproxy-1 .* remount OK" "fs vproxy-0 .* rebind OK" \
	"fs vproxy-0 .* reload OK" "fs vproxy-1 .* reload OK" "${facts[@]}" "fio done" \
	"hotplug /dev/vd[a-z]+ 32768 sectors OK" "hot-unplug OK" "mem disk mounted"; do
	grep -qE "^\[domU $dom\] XENTEST-GUEST: $fact" "$log" || die "domain $dom: no \"$fact\""
done
for mode in $modes; do
	for dev in 0 1; do
		grep -qE "^\[vproxyd\] .*dom $dom dev $dev: connected: $mode mode" "$log" ||
			die "vproxyd never connected dom $dom dev $dev in $mode mode"
	done
done
printf 'xen_e2e: dom %s: ext4 on both vproxy disks survived remount, rebind and module reload (%s mode)\n' \
	"$dom" "${modes/ / and }"
[[ $gfn == 1 ]] || printf 'xen_e2e: gfn mode of the kernel module not run (VPROXY_XEN_KMOD_GFN=0)\n'
grep -qE "^XENTEST: round 2: .*detached; hot-plug done" "$log" ||
	die "dom0 did not finish the hot-plug round"
printf 'xen_e2e: dom %s: vproxyctl attach gave the running guest a disk (probed, written, read back); detach took it away\n' "$dom"
# The fio table: IOPS per disk and workload, and vproxy/blkback.
fio_report

for dom in $doms; do
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
printf 'xen_e2e: PASS: two domUs (userspace stub, kernel module) served over real Xen, cleaned up after xl destroy\n'
