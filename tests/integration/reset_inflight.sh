#!/bin/bash
# SPDX-License-Identifier: MIT
# Requests in flight when the guest lets go of a device (virtio 1.2 2.4):
# on a "slow" test disk whose reads land in the guest's buffers only when
# they complete (3 s after submission; 6 s for the detach and the killed
# guest, so that a loaded machine cannot blur the order),
#   - a guest resets the device with 32 reads in flight: Status keeps
#     reading non-zero until they finished (or, with cancel, until the
#     plugin dropped them), and once it reads 0 nothing writes the buffers
#     any more (the guest refills them and watches);
#   - a frontend switches to Closing with reads in flight: the backend says
#     Closed only after they finished;
#   - a guest is killed with reads in flight: its device goes away only
#     after they finished, and vproxyd stays up, clean under ASan;
#   - with request-timeout, reads the plugin sits on fail with IOERR, the
#     device needs a reset, and a detached disk is closed only once the
#     plugin gave its requests back.
set -euo pipefail
# shellcheck source=../lib/simhost.sh
source "$(dirname "$0")/../lib/simhost.sh"
# shellcheck source=../lib/plugin_guest.sh
source "$(dirname "$0")/../lib/plugin_guest.sh"

slow_so=$VPROXY_BUILD_DIR/tests/plugins-e2e/plugins/slow.so
[[ -f $slow_so ]] || sh_die "$slow_so is not built"
sh_start_host
plugins=$(mktemp -d "${TMPDIR:-/tmp}/vproxy-plugins.XXXXXX")
cleanup_push rm -rf -- "$plugins"
ln -s "$slow_so" "$plugins/slow.so"

slow() { # slow NAME DOM ID CANCEL DELAY-MS
	printf '[device %s]\nguest = %s\nid = %s\nplugin = slow\ndelay-ms = %s\ncancel = %s\n\n' \
		"$1" "$2" "$3" "$5" "$4"
}
sh_start_vproxyd --plugin-dir "$plugins" < <(
	slow reset-wait 50 0 no 3000
	slow reset-cancel 50 1 yes 3000
	slow detach 51 0 no 6000
	slow killed 52 0 no 6000
	slow hung 53 0 no 4000
	echo "request-timeout = 1s"
)
be=/local/domain/0/backend/vproxy

# --- reset -------------------------------------------------------------
sh_create_dom 50 guest50
pg_guest_run 50 0 "reset guest" --devices 0,1 --workload reset --iodepth 32 --seconds 4
log=$SH_DIR/guest-50.log
cat "$log"
wait_ms() { # the reset's wait for device $1, in ms
	sed -nE "s/^guest 50 dev $1: reset with 32 reads in flight: Status read non-zero [0-9]+ times over ([0-9]+) ms, buffers untouched afterwards$/\1/p" "$log"
}
w0=$(wait_ms 0)
w1=$(wait_ms 1)
[[ -n $w0 && -n $w1 ]] || { echo "FAIL: no reset result for both devices"; exit 1; }
# Without cancel the reset lasts until the reads complete; with it, the
# plugin gives them up at once.
((w0 >= 2000)) || { echo "FAIL: Status read 0 after $w0 ms, reads still in flight"; exit 1; }
((w1 < 2000)) || { echo "FAIL: cancelled reset took $w1 ms"; exit 1; }

# --- detach with reads in flight -----------------------------------------
sh_create_dom 51 guest51
sh_guest_start 51 --devices 0 --workload read --iodepth 32 --seconds 60
sh_wait_xs "$be/51/0/state" 4 20
sleep 0.5
xenstore-write /local/domain/51/device/vproxy/0/state 5
sleep 0.3
st=$(sh_xs_read "$be/51/0/state") || st=
[[ $st != 6 ]] || { echo "FAIL: backend Closed with reads in flight"; exit 1; }
sh_wait_xs "$be/51/0/state" 6 20
sh_guest_kill 51
echo "detach: backend Closed only once the reads in flight finished"

# --- a guest killed with reads in flight ---------------------------------
sh_create_dom 52 guest52
sh_guest_start 52 --devices 0 --workload read --iodepth 32 --seconds 60
sh_wait_xs "$be/52/0/state" 4 20
sleep 0.5
sh_guest_kill 52
"$VPROXY_SIMCTL" kill 52 >/dev/null
sleep 0.3
sh_xs_read "$be/52/0/state" >/dev/null ||
	{ echo "FAIL: the dead guest's device went away with reads in flight"; exit 1; }
sh_wait_xs "$be/52/0/state" "" 20
sh_vproxyd_alive || { echo "FAIL: vproxyd died"; exit 1; }
echo "killed guest: device removed only once the reads in flight finished"

# --- request-timeout ---------------------------------------------------
sh_create_dom 53 guest53
sh_guest_start 53 --devices 0 --workload read --iodepth 8 --seconds 30
sh_wait_log "$SH_DIR/vproxyd.log" "dom 53 dev 0: .*did not finish op .* within 1000 ms: failed with IOERR" 15
st=0
sh_guest_wait 53 40 || st=$?
((st == 2)) || { cat "$SH_DIR/guest-53.log"; echo "FAIL: guest 53 exited with $st, not 2"; exit 1; }
grep -E "^guest 53 dev 0: error: .*(NEEDS_RESET|request failed)" "$SH_DIR/guest-53.log"
sh_destroy_dom 53
sh_wait_log "$SH_DIR/vproxyd.log" "dom 53 dev 0: \[device hung\]: disk abandoned" 10
sh_wait_log "$SH_DIR/vproxyd.log" "abandoned earlier finished its last request: closed" 15
echo "request-timeout: IOERR, NEEDS_RESET, the abandoned disk closed once its plugin answered"

pg_stop_vproxyd
echo "PASS: reset, detach and a dead guest wait for requests in flight"
