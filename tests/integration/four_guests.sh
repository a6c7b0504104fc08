#!/bin/bash
# SPDX-License-Identifier: MIT
# Four guests with two devices each, served by one vproxyd: every guest's
# data written is read back intact, in gfn and grant mode, with MQ on one.
set -euo pipefail
# shellcheck source=../lib/simhost.sh
source "$(dirname "$0")/../lib/simhost.sh"

sh_start_host
device_sections() {
	for dom in 11 12 13 14; do
		for id in 0 1; do
			guest=$dom
			((dom >= 13)) && guest=guest$dom # by name for two guests
			queues=1
			((dom == 12 && id == 1)) && queues=2
			printf '[device g%s-d%s]\nguest = %s\nid = %s\nplugin = mem\nsize = 32M\nqueues = %s\n\n' \
				"$dom" "$id" "$guest" "$id" "$queues"
		done
	done
}
# Not a pipe: sh_start_vproxyd must run in this shell to keep VPD_PID.
sh_start_vproxyd < <(device_sections)

for dom in 11 12 13 14; do
	sh_create_dom "$dom" "guest$dom"
done
sh_guest_start 11 --devices 0,1 --seconds 3 --workload mixed --addr-mode gfn
sh_guest_start 12 --devices 0,1 --seconds 3 --workload mixed --addr-mode grant --queues 2
sh_guest_start 13 --devices 0,1 --seconds 3 --workload mixed --addr-mode gfn --iodepth 8
sh_guest_start 14 --devices 0,1 --seconds 3 --workload mixed --addr-mode grant --iodepth 4

# While they run, every backend node reaches Connected.
for dom in 11 12 13 14; do
	for id in 0 1; do
		sh_wait_xs "/local/domain/0/backend/vproxy/$dom/$id/state" 4 20
	done
done

fail=0
for dom in 11 12 13 14; do
	st=0
	sh_guest_wait "$dom" 60 || st=$?
	if ((st != 0)); then
		echo "FAIL: guest $dom exited with $st"
		fail=1
	fi
	grep -E "^guest $dom: .*verify OK" "$SH_DIR/guest-$dom.log" || {
		echo "FAIL: guest $dom printed no verified summary"
		fail=1
	}
done
((fail == 0)) || exit 1

# Guests closed their devices: backends are Closed, nodes still there.
for dom in 11 12 13 14; do
	for id in 0 1; do
		sh_wait_xs "/local/domain/0/backend/vproxy/$dom/$id/state" 6 10
	done
done
# Destroying the domains removes their devices.
for dom in 11 12 13 14; do
	sh_destroy_dom "$dom"
done
for dom in 11 12 13 14; do
	sh_wait_xs "/local/domain/0/backend/vproxy/$dom/0/state" "" 10
	sh_wait_xs "/local/domain/0/backend/vproxy/$dom/1/state" "" 10
done
sh_vproxyd_alive || { echo "FAIL: vproxyd died"; exit 1; }
st=0
sh_stop_vproxyd || st=$?
((st == 0)) || { echo "FAIL: vproxyd exited with $st"; exit 1; }
if grep -E "ERROR|AddressSanitizer|runtime error" "$SH_DIR/vproxyd.log"; then
	echo "FAIL: vproxyd logged errors"
	exit 1
fi
echo "PASS: 4 guests x 2 devices verified"
