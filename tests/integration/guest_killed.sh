#!/bin/bash
# SPDX-License-Identifier: MIT
# A guest killed in the middle of its I/O is cleaned up when its domain is
# released, and the other guests keep going; a new guest is served after.
set -euo pipefail
# shellcheck source=../lib/simhost.sh
source "$(dirname "$0")/../lib/simhost.sh"

sh_start_host
# Not a pipe: sh_start_vproxyd must run in this shell to keep VPD_PID.
sh_start_vproxyd < <(sh_mem_devices 16M 21 22 23 24)

for dom in 21 22 23; do
	sh_create_dom "$dom" "guest$dom"
done
sh_guest_start 21 --devices 0,1 --seconds 60 --workload mixed --iodepth 16
sh_guest_start 22 --devices 0,1 --seconds 5 --workload mixed
sh_guest_start 23 --devices 0,1 --seconds 5 --workload mixed --addr-mode grant
sh_wait_xs /local/domain/0/backend/vproxy/21/0/state 4 20
sh_wait_xs /local/domain/0/backend/vproxy/21/1/state 4 20
sleep 1 # let guest 21 get requests in flight
sh_guest_kill 21
# Give dev 1's frontend node to dom0 so that it survives the crash: then
# only @releaseDomain can tell vproxyd the guest is gone.
xenstore-chmod -r /local/domain/21/device/vproxy/1 n0
# The domain crashes: xenstored's own cleanup fires @releaseDomain and the
# toolstack removes nothing, so vproxyd must notice by itself.
"$VPROXY_SIMCTL" kill 21 >/dev/null
sh_wait_xs /local/domain/0/backend/vproxy/21/0/state "" 10
sh_wait_xs /local/domain/0/backend/vproxy/21/1/state "" 10
# xenstored deletes the nodes the dead guest owned (its frontend node),
# so the server may learn of the crash from that or from @releaseDomain.
sh_wait_log "$SH_DIR/vproxyd.log" "dom 21 dev 0: (domain released|frontend node removed)" 5
sh_wait_log "$SH_DIR/vproxyd.log" "dom 21 dev 1: domain released" 5
sh_vproxyd_alive || { echo "FAIL: vproxyd died with its guest"; exit 1; }

for dom in 22 23; do
	st=0
	sh_guest_wait "$dom" 60 || st=$?
	((st == 0)) || { echo "FAIL: guest $dom exited with $st"; exit 1; }
	grep -E "^guest $dom: .*verify OK" "$SH_DIR/guest-$dom.log"
done

# The server still takes new guests.
sh_create_dom 24 guest24
sh_guest_start 24 --devices 0,1 --seconds 2 --workload mixed
st=0
sh_guest_wait 24 60 || st=$?
((st == 0)) || { echo "FAIL: guest 24 exited with $st"; exit 1; }
grep -E "^guest 24: .*verify OK" "$SH_DIR/guest-24.log"

st=0
sh_stop_vproxyd || st=$?
((st == 0)) || { echo "FAIL: vproxyd exited with $st"; exit 1; }
if grep -E "AddressSanitizer|runtime error" "$SH_DIR/vproxyd.log"; then
	exit 1
fi
echo "PASS: killed guest cleaned up, others unaffected"
