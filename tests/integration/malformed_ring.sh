#!/bin/bash
# SPDX-License-Identifier: MIT
# A hostile guest breaks only the device it attacks: a malformed register
# ring closes that device (error node, backend Closing), virtqueue attacks
# put it in NEEDS_RESET; its other device and the other guests keep working.
set -euo pipefail
# shellcheck source=../lib/simhost.sh
source "$(dirname "$0")/../lib/simhost.sh"

# This test also runs the server with polling before sleeping.
export VPROXY_POLL_US=200
sh_start_host
# Not a pipe: sh_start_vproxyd must run in this shell to keep VPD_PID.
sh_start_vproxyd < <(sh_mem_devices 16M 31 32 33 34)

for dom in 31 32 33 34; do
	sh_create_dom "$dom" "guest$dom"
done
sh_guest_start 31 --devices 0,1 --seconds 3 --workload mixed --hostile 1:ring-overflow
sh_guest_start 32 --devices 0,1 --seconds 3 --workload mixed --hostile 1:desc-loop
sh_guest_start 33 --devices 0,1 --seconds 3 --workload mixed --hostile 0:bad-addr --addr-mode grant
sh_guest_start 34 --devices 0,1 --seconds 3 --workload mixed

for dom in 31 32 33 34; do
	st=0
	sh_guest_wait "$dom" 60 || st=$?
	((st == 0)) || { echo "FAIL: guest $dom exited with $st"; exit 1; }
done
grep -E "^guest 31 dev 1: .*backend closed" "$SH_DIR/guest-31.log"
grep -E "^guest 31 dev 0: .*verify OK" "$SH_DIR/guest-31.log"
grep -E "^guest 32 dev 1: .*broken \(NEEDS_RESET\)" "$SH_DIR/guest-32.log"
grep -E "^guest 32 dev 0: .*verify OK" "$SH_DIR/guest-32.log"
grep -E "^guest 33 dev 0: .*broken \(NEEDS_RESET\)" "$SH_DIR/guest-33.log"
grep -E "^guest 33 dev 1: .*verify OK" "$SH_DIR/guest-33.log"
grep -E "^guest 34: .*verify OK" "$SH_DIR/guest-34.log"

# The server said which guest and device misbehaved.
grep -E "dom 31 dev 1: .*(malformed ring|request producer)" "$SH_DIR/vproxyd.log"
grep -E "dom 32 dev 1: " "$SH_DIR/vproxyd.log"
grep -E "dom 33 dev 0: " "$SH_DIR/vproxyd.log"
if grep -E "dom 34 dev" "$SH_DIR/vproxyd.log" | grep -Eiv "ready|connected|disconnected|backend"; then
	echo "FAIL: the well-behaved guest was blamed for something"
	exit 1
fi
sh_vproxyd_alive || { echo "FAIL: vproxyd died"; exit 1; }
# Polling stops when the guests do: an idle server uses (almost) no CPU.
t0=$(sh_vproxyd_cpu_ticks)
sleep 2
t1=$(sh_vproxyd_cpu_ticks)
echo "idle vproxyd used $((t1 - t0)) clock ticks in 2 s"
((t1 - t0 < 20)) || { echo "FAIL: vproxyd keeps polling while idle"; exit 1; }
st=0
sh_stop_vproxyd || st=$?
((st == 0)) || { echo "FAIL: vproxyd exited with $st"; exit 1; }
if grep -E "AddressSanitizer|runtime error" "$SH_DIR/vproxyd.log"; then
	exit 1
fi
echo "PASS: hostile guests broke only their own devices"
