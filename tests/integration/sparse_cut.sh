#!/bin/bash
# SPDX-License-Identifier: MIT
# A served sparse image cut short from outside (an operator's truncate or
# a copy over it): with the map mmapped this raised SIGBUS and killed
# vproxyd for every guest.  Now only that disk fails its requests (the
# guest sees IOERR); the same guest's other disk and another guest running
# verified I/O through the cut go on unharmed, and vproxyd survives.
set -euo pipefail
# shellcheck source=../lib/simhost.sh
source "$(dirname "$0")/../lib/simhost.sh"
# shellcheck source=../lib/plugin_guest.sh
source "$(dirname "$0")/../lib/plugin_guest.sh"

img_tool=$VPROXY_BUILD_DIR/plugins/sparse/vproxy-img
sh_start_host
data=$(mktemp -d "${TMPDIR:-/tmp}/vproxy-sparse-cut.XXXXXX")
cleanup_push rm -rf -- "$data"
"$img_tool" create -c 4K "$data/cut.img" 64M
"$img_tool" create "$data/keep.img" 64M
"$img_tool" create "$data/other.img" 64M

sh_start_vproxyd < <(
	pg_device cut 61 0 sparse "$data/cut.img"
	pg_device keep 61 1 sparse "$data/keep.img"
	pg_device other 62 0 sparse "$data/other.img"
)
be=/local/domain/0/backend/vproxy/61
sh_create_dom 61 guest61
sh_create_dom 62 guest62

pg_guest_run 61 0 "writing before the cut" --devices 0,1 --seconds 2 --workload verify \
	--span 4096
sh_wait_xs "$be/0/state" 6 10
# Another guest works through the cut.
sh_guest_start 62 --devices 0 --seconds 4 --workload verify --span 4096
sleep 1
# The first 64 KiB: the header and the start of the map; data all gone.
truncate -s 64K "$data/cut.img"
pg_guest_run 61 2 "reading the cut disk" --devices 0 --seconds 1 --workload read
grep -E "^guest 61 dev 0: .*(IOERR|error)" "$SH_DIR/guest-61.log" ||
	{ cat "$SH_DIR/guest-61.log"; echo "FAIL: no I/O error on the cut disk"; exit 1; }
sh_wait_xs "$be/0/state" 6 10
pg_guest_run 61 0 "the same guest's other disk" --devices 1 --seconds 1 --workload verify \
	--span 4096
st=0
sh_guest_wait 62 60 || st=$?
((st == 0)) || { cat "$SH_DIR/guest-62.log"; echo "FAIL: guest 62 exited with $st"; exit 1; }
grep -E "^guest 62 dev 0: .*verify OK" "$SH_DIR/guest-62.log"

sh_vproxyd_alive || { echo "FAIL: vproxyd died"; exit 1; }
grep -q "cut short from outside" "$SH_DIR/vproxyd.log" ||
	{ echo "FAIL: vproxyd did not say why the disk fails"; exit 1; }
pg_stop_vproxyd
"$img_tool" check "$data/keep.img"
"$img_tool" check "$data/other.img"
echo "PASS: a cut image fails only its own disk"
