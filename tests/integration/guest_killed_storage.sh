#!/bin/bash
# SPDX-License-Identifier: MIT
# Guests with raw (io_uring and worker threads) and sparse disks die in the
# middle of their I/O, a hundred times, while another guest runs verified
# I/O that must finish clean.  Half of the victims crash (process killed,
# then the domain vanishes as in a crash); the other half have their
# frontend nodes removed under them while requests are in flight.  The
# last completion of a dying device used to close the disk from inside the
# plugin's own dispatch loop (a use-after-free, a segfault in liburing).
#
# VPROXY_KILL_ROUNDS (default 25) rounds of four victims each.
set -euo pipefail
# shellcheck source=../lib/simhost.sh
source "$(dirname "$0")/../lib/simhost.sh"
# shellcheck source=../lib/plugin_guest.sh
source "$(dirname "$0")/../lib/plugin_guest.sh"

rounds=${VPROXY_KILL_ROUNDS:-25}
slots=4
img_tool=$VPROXY_BUILD_DIR/plugins/sparse/vproxy-img
be_root=/local/domain/0/backend/vproxy

sh_start_host
data=$(mktemp -d "${TMPDIR:-/tmp}/vproxy-killed.XXXXXX")
cleanup_push rm -rf -- "$data"

# The survivor: one RAM disk and one raw disk, verified throughout.
truncate -s 32M "$data/survivor.raw"
for ((s = 0; s < slots; s++)); do
	truncate -s 32M "$data/v$s-uring.raw" "$data/v$s-threads.raw"
	"$img_tool" create "$data/v$s.img" 32M
done

sh_start_vproxyd < <(
	printf '[device survivor-mem]\nguest = survivor\nid = 0\nplugin = mem\nsize = 16M\n\n'
	pg_device survivor-raw survivor 1 raw "$data/survivor.raw"
	for ((s = 0; s < slots; s++)); do
		pg_device "v$s-uring" "victim$s" 0 raw "$data/v$s-uring.raw" engine=io_uring
		pg_device "v$s-threads" "victim$s" 1 raw "$data/v$s-threads.raw" engine=threads
		pg_device "v$s-sparse" "victim$s" 2 sparse "$data/v$s.img"
	done
)

survivor=30
survivor_runs=0
sh_create_dom "$survivor" survivor
sh_wait_xs "$be_root/$survivor/1/state" 2 20

start_survivor() {
	sh_guest_start "$survivor" --devices 0,1 --seconds 8 --workload verify \
		--iodepth 8 --seed $((survivor_runs + 1))
	survivor_runs=$((survivor_runs + 1))
}

# check_survivor: if the survivor finished, it must have verified clean;
# then it starts over.
check_survivor() {
	local st=0
	kill -0 "${GUEST_PIDS[$survivor]}" 2>/dev/null &&
		[[ $(ps -o stat= -p "${GUEST_PIDS[$survivor]}") != Z* ]] && return 0
	sh_guest_wait "$survivor" 5 || st=$?
	if ((st != 0)) || ! grep -Eq "^guest $survivor: .*verify OK" "$SH_DIR/guest-$survivor.log"; then
		cat "$SH_DIR/guest-$survivor.log"
		echo "FAIL: the survivor guest exited with $st"
		exit 1
	fi
	start_survivor
}

start_survivor
dom=100
kills=0
for ((r = 0; r < rounds; r++)); do
	declare -a doms=()
	for ((s = 0; s < slots; s++)); do
		d=$((dom++))
		doms[s]=$d
		sh_create_dom "$d" "victim$s"
		sh_guest_start "$d" --devices 0,1,2 --seconds 60 --workload mixed \
			--iodepth 32 --seed "$d"
	done
	for ((s = 0; s < slots; s++)); do
		for id in 0 1 2; do
			sh_wait_xs "$be_root/${doms[s]}/$id/state" 4 20
		done
	done
	# Let every victim get a queue's worth of requests in flight.
	sleep "0.$((RANDOM % 4 + 1))"
	for ((s = 0; s < slots; s++)); do
		d=${doms[s]}
		if (((s + r) % 2)); then
			# Its frontend nodes go away under it (a toolstack's
			# detach while the guest still runs).
			xenstore-rm "/local/domain/$d/device/vproxy"
		else
			# It crashes: the process, then the domain.
			sh_guest_kill "$d"
			"$VPROXY_SIMCTL" kill "$d" >/dev/null
		fi
	done
	for ((s = 0; s < slots; s++)); do
		for id in 0 1 2; do
			sh_wait_xs "$be_root/${doms[s]}/$id/state" "" 20
		done
		kills=$((kills + 1))
		d=${doms[s]}
		if [[ -n ${GUEST_PIDS[$d]:-} ]]; then
			sh_guest_kill "$d"
			sh_destroy_dom "$d"
		fi
	done
	sh_vproxyd_alive || { echo "FAIL: vproxyd died in round $r"; exit 1; }
	check_survivor
done

# The last survivor run goes to its end, clean.
st=0
sh_guest_wait "$survivor" 30 || st=$?
((st == 0)) || { cat "$SH_DIR/guest-$survivor.log"; echo "FAIL: survivor exited with $st"; exit 1; }
grep -E "^guest $survivor: .*verify OK" "$SH_DIR/guest-$survivor.log"

# Every victim's sparse image is consistent after all of it.
for ((s = 0; s < slots; s++)); do
	"$img_tool" check "$data/v$s.img" >/dev/null ||
		{ echo "FAIL: v$s.img does not check clean"; exit 1; }
done
pg_stop_vproxyd
echo "PASS: $kills guests killed mid-I/O on raw and sparse disks; the survivor verified $survivor_runs runs"
