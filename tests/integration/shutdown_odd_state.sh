#!/bin/bash
# SPDX-License-Identifier: MIT
# SIGTERM while a connected frontend's state is not a number (a guest can
# write anything there) and another device of the guest never connected:
# shutdown used to free the whole device list from inside its own walk
# over it (a heap use-after-free).  vproxyd must exit cleanly.
set -euo pipefail
# shellcheck source=../lib/simhost.sh
source "$(dirname "$0")/../lib/simhost.sh"
# shellcheck source=../lib/plugin_guest.sh
source "$(dirname "$0")/../lib/plugin_guest.sh"

sh_start_host
sh_start_vproxyd < <(sh_mem_devices 4M 40)
be=/local/domain/0/backend/vproxy/40
sh_create_dom 40 guest40
sh_guest_start 40 --devices 1 --workload idle
sh_wait_xs "$be/1/state" 4 20
sh_wait_xs "$be/0/state" 2 20
xenstore-write /local/domain/40/device/vproxy/1/state x
sh_wait_log "$SH_DIR/vproxyd.log" "dom 40 dev 1: frontend state is not a number" 10
pg_stop_vproxyd
echo "PASS: clean shutdown with a frontend state that is not a number"
