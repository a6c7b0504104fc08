#!/bin/bash
# SPDX-License-Identifier: MIT
# vproxyd at its default poll-us = auto (the other integration tests set
# poll-us = 0): guests on raw (io_uring, its completions polled while the
# loop spins; and the threads engine) and RAM disks get their data back
# intact, at queue depth 1 and 16, in both address modes; and pinned to
# one CPU, auto does not poll and says so.
set -euo pipefail
# shellcheck source=../lib/simhost.sh
source "$(dirname "$0")/../lib/simhost.sh"
# shellcheck source=../lib/plugin_guest.sh
source "$(dirname "$0")/../lib/plugin_guest.sh"

export VPROXY_POLL_US=auto
sh_start_host
data=$(mktemp -d "${TMPDIR:-/tmp}/vproxy-poll.XXXXXX")
cleanup_push rm -rf -- "$data"
truncate -s 64M "$data/a.raw" "$data/b.raw"

devices() {
	pg_device uring 61 0 raw "$data/a.raw" direct=on
	pg_device threads 61 1 raw "$data/b.raw" engine=threads
	printf '[device ram]\nguest = 61\nid = 2\nplugin = mem\nsize = 64M\n\n'
}

run_guests() {
	local what=$1
	pg_guest_run 61 0 "$what: QD1" --devices 0,1,2 --seconds 2 --workload verify \
		--iodepth 1 --span 1024
	pg_guest_run 61 0 "$what: QD16, grant" --devices 0,1,2 --seconds 2 --workload mixed \
		--iodepth 16 --addr-mode grant
	grep -E "^guest 61 dev 0: .*verify OK" "$SH_DIR/guest-61.log" >/dev/null ||
		{ echo "FAIL: $what: dev 0 not verified"; exit 1; }
}

if (($(nproc) >= 2)); then
	sh_start_vproxyd < <(devices)
	sh_create_dom 61 guest61
	run_guests "two CPUs"
	if grep -q "does not poll" "$SH_DIR/vproxyd.log"; then
		echo "FAIL: auto turned polling off with $(nproc) CPUs"
		exit 1
	fi
	sh_vproxyd_alive || { echo "FAIL: vproxyd died"; exit 1; }
	pg_stop_vproxyd
	sh_destroy_dom 61
else
	echo "one CPU here: only the pinned run"
fi

VPROXY_VPD_CPUS=0 sh_start_vproxyd < <(devices)
grep -q "poll-us = auto: vproxyd may run on one CPU only, so it does not poll" \
	"$SH_DIR/vproxyd.log" || { echo "FAIL: pinned to one CPU, auto did not say it stops polling"; exit 1; }
sh_create_dom 61 guest61
run_guests "one CPU"
sh_vproxyd_alive || { echo "FAIL: vproxyd died"; exit 1; }
pg_stop_vproxyd
echo "PASS: poll-us = auto, on two CPUs and on one"
