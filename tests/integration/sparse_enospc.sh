#!/bin/bash
# SPDX-License-Identifier: MIT
# A sparse image that grows on a full file system (a 4 MiB tmpfs, mounted
# for the test and unmounted on the way out, even on failure): the guest's
# write that needs space gets IOERR, and only it: the same disk still
# reads, another guest on another file system runs verified I/O through
# it all, vproxyd survives, and the image checks clean afterwards.
# Needs root (mount); skips otherwise.
set -euo pipefail
# shellcheck source=../lib/simhost.sh
source "$(dirname "$0")/../lib/simhost.sh"
# shellcheck source=../lib/plugin_guest.sh
source "$(dirname "$0")/../lib/plugin_guest.sh"

img_tool=$VPROXY_BUILD_DIR/plugins/sparse/vproxy-img
data=$(mktemp -d "${TMPDIR:-/tmp}/vproxy-sparse-enospc.XXXXXX")
cleanup_push rm -rf -- "$data"
mkdir "$data/small"
if ! mount -t tmpfs -o size=4m tmpfs "$data/small" 2>"$data/mount.err"; then
	echo "SKIP: cannot mount a tmpfs: $(cat "$data/mount.err")"
	exit 77
fi
cleanup_push umount -l "$data/small"
"$img_tool" create "$data/small/full.img" 64M
"$img_tool" create "$data/other.img" 64M

sh_start_host
sh_start_vproxyd < <(
	pg_device full 61 0 sparse "$data/small/full.img"
	pg_device other 62 0 sparse "$data/other.img"
)
be=/local/domain/0/backend/vproxy/61
sh_create_dom 61 guest61
sh_create_dom 62 guest62

sh_guest_start 62 --devices 0 --seconds 5 --workload verify --span 4096
# 64 MiB of writes into 4 MiB: the disk fills, a write fails.
pg_guest_run 61 2 "writing the disk full" --devices 0 --seconds 4 --workload write
grep -E "^guest 61 dev 0: .*(write of block [0-9]+ failed|error)" "$SH_DIR/guest-61.log" ||
	{ cat "$SH_DIR/guest-61.log"; echo "FAIL: no failed write on the full disk"; exit 1; }
grep -q "No space left on device" "$SH_DIR/vproxyd.log" ||
	echo "note: vproxyd logged no ENOSPC (the data write itself failed)"
sh_wait_xs "$be/0/state" 6 10
# The full disk still serves what it has.
pg_guest_run 61 0 "reading the full disk" --devices 0 --seconds 1 --workload read
st=0
sh_guest_wait 62 60 || st=$?
((st == 0)) || { cat "$SH_DIR/guest-62.log"; echo "FAIL: guest 62 exited with $st"; exit 1; }
grep -E "^guest 62 dev 0: .*verify OK" "$SH_DIR/guest-62.log"

sh_vproxyd_alive || { echo "FAIL: vproxyd died"; exit 1; }
pg_stop_vproxyd
"$img_tool" check "$data/small/full.img"
"$img_tool" check "$data/other.img"
echo "PASS: a full file system fails the writes that need space, and only them"
