#!/bin/bash
# SPDX-License-Identifier: MIT
# What attach and detach cost the other guests (bench/README.md,
# "Operations"): one guest runs verified mixed I/O at QD4 for 10 s while
# vproxyctl attaches and detaches a disk of another guest as fast as it
# can ("cycles"), or nothing happens ("quiet"); the guest's line (IOPS,
# p50, p99, max) says what it felt.
#   bench/hotplug-pause.sh quiet|cycles [BUILD-DIR]   (a Release build)
set -euo pipefail
src=$(cd -- "$(dirname -- "$0")/.." && pwd)
mode=${1:?quiet or cycles}
export VPROXY_BUILD_DIR=${2:-$src/build} VPROXY_REQUIRE_XENSTORED=1
# shellcheck source=../tests/lib/simhost.sh
source "$src/tests/lib/simhost.sh"
CTL=$VPROXY_BUILD_DIR/core/vproxyctl
sh_start_host
export VPROXY_CONTROL=$SH_DIR/run/control.sock
devs() { printf '[device other]\nguest = 12\nid = 0\nplugin = mem\nsize = 64M\n\n[device g11]\nguest = 11\nid = 0\nplugin = mem\nsize = 4M\n\n'; }
sh_start_vproxyd < <(devs)
sh_create_dom 11 guest11
sh_create_dom 12 guest12
sh_guest_start 11 --devices 0 --seconds 12 --workload idle
sh_guest_start 12 --devices 0 --seconds 10 --workload mixed --iodepth 4
sh_wait_xs /local/domain/0/backend/vproxy/12/0/state 4 20
if [[ $mode == cycles ]]; then
	end=$((SECONDS + 9)); n=0
	while ((SECONDS < end)); do
		"$CTL" attach 11 id=1 plugin=mem size=16M --label hp >/dev/null
		"$CTL" detach hp --timeout 10 >/dev/null
		n=$((n + 1))
	done
	echo "cycles: $n"
fi
sh_guest_wait 12 60
grep -E "^guest 12: " "$SH_DIR/guest-12.log"
