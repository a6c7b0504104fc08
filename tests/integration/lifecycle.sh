#!/bin/bash
# SPDX-License-Identifier: MIT
# xenstore lifecycle: storage that fails to open, reconnect after a guest
# closed its devices, and a clean SIGTERM that tells connected guests Closing.
set -euo pipefail
# shellcheck source=../lib/simhost.sh
source "$(dirname "$0")/../lib/simhost.sh"

sh_start_host
sh_start_vproxyd <<'CFG'
[device ok0]
guest = guest41
id = 0
plugin = mem
size = 8M

[device ok1]
guest = 41
id = 1
plugin = mem
size = 8M
read-only = yes

[device huge]
guest = 41
id = 2
plugin = mem
size = 65536T
CFG

be=/local/domain/0/backend/vproxy/41
sh_create_dom 41 guest41
# Storage that cannot be opened: Closed with a reason, for the guest to see.
sh_wait_xs "$be/2/state" 6 10
err=$(sh_xs_read "$be/2/error")
[[ -n $err ]] || { echo "FAIL: no error node for the device that failed"; exit 1; }
echo "device 2 error: $err"
sh_wait_xs "$be/0/state" 2 10
[[ $(sh_xs_read "/local/domain/41/device/vproxy/0/backend") == "$be/0" ]]
[[ $(sh_xs_read "$be/0/frontend") == /local/domain/41/device/vproxy/0 ]]

# First run, then a second run of the guest on the same devices.
for run in 1 2; do
	sh_guest_start 41 --devices 0 --seconds 1 --workload mixed
	st=0
	sh_guest_wait 41 60 || st=$?
	((st == 0)) || { echo "FAIL: run $run exited with $st"; exit 1; }
	grep -E "^guest 41: .*verify OK" "$SH_DIR/guest-41.log"
	sh_wait_xs "$be/0/state" 6 10
done

# Read-only device: the guest sees RO and writes are refused.
sh_guest_start 41 --devices 1 --seconds 1 --workload read
st=0
sh_guest_wait 41 60 || st=$?
((st == 0)) || { echo "FAIL: read-only run exited with $st"; exit 1; }

# A connected idle guest, then SIGTERM to vproxyd: the guest sees Closing.
sh_guest_start 41 --devices 0,1 --workload idle
sh_wait_xs "$be/0/state" 4 20
sh_wait_xs "$be/1/state" 4 20
st=0
sh_stop_vproxyd || st=$?
((st == 0)) || { echo "FAIL: vproxyd exited with $st on SIGTERM"; exit 1; }
grep -E "shutting down" "$SH_DIR/vproxyd.log"
# Nodes are gone and the guest noticed.
sh_wait_xs "$be/0/state" "" 5
sh_wait_log "$SH_DIR/guest-41.log" "dev 0: .*backend closed" 10
if grep -E "AddressSanitizer|runtime error" "$SH_DIR/vproxyd.log"; then
	exit 1
fi
echo "PASS: lifecycle"
