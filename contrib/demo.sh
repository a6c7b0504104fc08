#!/bin/bash
# SPDX-License-Identifier: MIT
# README command 1: install what is missing, build, and run the main job on
# its built-in default: a simulated Xen host (Debian's real xenstored with a
# shim for its hypervisor calls), one vproxyd, and four simulated guests with
# two RAM disks each (mem plugin). Every guest runs a short mixed
# read/write/flush/discard workload that verifies every block it reads; the
# job prints per-guest IOPS and latency, then a verified-OK line, and stops
# everything it started.
set -euo pipefail
src=$(cd -- "$(dirname -- "$0")/.." && pwd)

guests=4 disks=2 seconds=5 size=64M iodepth=16 build=$src/build

usage() {
	cat <<USAGE
Usage: contrib/demo.sh [--guests N] [--disks M] [--seconds S] [--size SIZE]
                       [--iodepth Q] [--build-dir DIR]
Install dependencies, build, and serve N simulated guests (default $guests) with
M RAM disks each (default $disks, $size each) from one vproxyd for S seconds
(default $seconds) of verified mixed I/O at queue depth Q (default $iodepth).
USAGE
}

while (($#)); do
	case $1 in
	--guests) guests=$2 ;;
	--disks) disks=$2 ;;
	--seconds) seconds=$2 ;;
	--size) size=$2 ;;
	--iodepth) iodepth=$2 ;;
	--build-dir) build=$2 ;;
	-h | --help) usage; exit 0 ;;
	*) usage >&2; exit 1 ;;
	esac
	shift 2 || { usage >&2; exit 1; }
done
for n in "$guests" "$disks" "$seconds" "$iodepth"; do
	[[ $n =~ ^[1-9][0-9]*$ ]] || { echo "demo: '$n' is not a positive number" >&2; exit 1; }
done
((guests <= 200 && disks <= 16)) || { echo "demo: at most 200 guests, 16 disks" >&2; exit 1; }

bash "$src/contrib/install-deps.sh"
cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Release -DVPROXY_TESTS=OFF >/dev/null
cmake --build "$build" -j"$(nproc)" >/dev/null

export VPROXY_BUILD_DIR=$build VPROXY_REQUIRE_XENSTORED=1
# shellcheck source=tests/lib/simhost.sh
source "$src/tests/lib/simhost.sh"

device_sections() {
	local g id guest
	for ((g = 1; g <= guests; g++)); do
		# Half the guests are named by domid, half by domain name.
		guest=$((10 + g))
		((g % 2 == 0)) && guest=guest$g
		for ((id = 0; id < disks; id++)); do
			printf '[device guest%s-disk%s]\nguest = %s\nid = %s\nplugin = mem\nsize = %s\n\n' \
				"$g" "$id" "$guest" "$id" "$size"
		done
	done
}

devlist=$(seq -s, 0 $((disks - 1)))
echo "== vproxy demo: 1 vproxyd, $guests guests x $disks disks (mem plugin, $size each), ${seconds}s mixed I/O, QD$iodepth"
sh_start_host
sh_start_vproxyd < <(device_sections)
echo "   xenstored pid $(xs_pid), vproxyd pid $VPD_PID, work dir $SH_DIR"

for ((g = 1; g <= guests; g++)); do
	sh_create_dom $((10 + g)) "guest$g"
done
for ((g = 1; g <= guests; g++)); do
	mode=gfn
	((g % 2 == 0)) && mode=grant
	sh_guest_start $((10 + g)) --devices "$devlist" --seconds "$seconds" \
		--workload mixed --iodepth "$iodepth" --addr-mode "$mode" --quiet
done

printf '\n%-8s %5s %-6s %5s %10s %9s %8s %8s  %s\n' guest domid mode disks IOPS MB/s p50-us p99-us result
failed=0 total_iops=0 total_mbs=0
for ((g = 1; g <= guests; g++)); do
	dom=$((10 + g)) st=0
	mode=gfn
	((g % 2 == 0)) && mode=grant
	sh_guest_wait "$dom" $((seconds + 120)) || st=$?
	line=$(grep -E "^guest $dom: total" "$SH_DIR/guest-$dom.log" || true)
	read -r iops mbs p50 p99 result < <(awk '{
		for (i = 1; i <= NF; i++) {
			if ($(i + 1) == "IOPS") iops = $i
			if ($(i + 1) == "MB/s") mbs = $i
			if ($i == "p50-us") p50 = $(i + 1)
			if ($i == "p99-us") p99 = $(i + 1)
		}
		r = ($(NF - 1) " " $NF)
		print iops + 0, mbs + 0, p50 + 0, p99 + 0, r
	}' <<<"${line:-x}")
	if ((st != 0)) || [[ $result != "verify OK" ]]; then
		failed=1
		result="FAILED (exit $st)"
	fi
	printf '%-8s %5s %-6s %5s %10s %9s %8s %8s  %s\n' "guest$g" "$dom" "$mode" "$disks" \
		"$iops" "$mbs" "$p50" "$p99" "$result"
	total_iops=$((total_iops + ${iops%.*}))
	total_mbs=$(awk -v a="$total_mbs" -v b="$mbs" 'BEGIN { printf "%.1f", a + b }')
done
printf '%-8s %5s %-6s %5s %10s %9s\n\n' total "" "" $((guests * disks)) "$total_iops" "$total_mbs"

# The guests are done: destroy their domains; vproxyd removes their devices.
for ((g = 1; g <= guests; g++)); do
	sh_destroy_dom $((10 + g))
done
for ((g = 1; g <= guests; g++)); do
	sh_wait_xs "/local/domain/0/backend/vproxy/$((10 + g))/0/state" "" 10
done
vst=0
sh_stop_vproxyd || vst=$?

if ((failed)); then
	echo "FAILED: see the guest logs below" >&2
	for f in "$SH_DIR"/guest-*.log; do
		grep -Ev "^guest [0-9]+ dev [0-9]+: id" "$f" | tail -n 5 >&2
	done
	exit 1
fi
if ((vst != 0)); then
	echo "FAILED: vproxyd exited with status $vst" >&2
	exit 1
fi
echo "verified OK: $guests guests x $disks disks, every block read back as last written; vproxyd stopped cleanly"
