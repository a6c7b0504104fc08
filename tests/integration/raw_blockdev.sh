#!/bin/bash
# SPDX-License-Identifier: MIT
# The raw plugin on a block device: a loop device with 4 KiB sectors gives
# its size (BLKGETSIZE64) and block sizes (BLKSSZGET/BLKPBSZGET) to the
# guest, serves a verified read/write workload with flushes, and takes
# BLKDISCARD.  Needs root and loop devices: SKIP (77) without them.
set -euo pipefail
# shellcheck source=../lib/simhost.sh
source "$(dirname "$0")/../lib/simhost.sh"
# shellcheck source=../lib/plugin_guest.sh
source "$(dirname "$0")/../lib/plugin_guest.sh"

if [[ $(id -u) != 0 ]] || ! command -v losetup >/dev/null; then
	echo "SKIP: needs root and losetup"
	exit 77
fi
data=$(mktemp -d "${TMPDIR:-/tmp}/vproxy-blk.XXXXXX")
cleanup_push rm -rf -- "$data"
truncate -s 32M "$data/backing"
if ! loopdev=$(losetup --find --show --sector-size 4096 "$data/backing" 2>/dev/null); then
	echo "SKIP: no loop device available"
	exit 77
fi
cleanup_push losetup -d "$loopdev"

sh_start_host
sh_start_vproxyd <<CFG
[device blk]
guest = 71
id = 0
plugin = raw
file = $loopdev
CFG
be=/local/domain/0/backend/vproxy/71
sh_create_dom 71 guest71
sh_wait_xs "$be/0/state" 2 10
[[ $(sh_xs_read "$be/0/sectors") == $((32 << 11)) ]] ||
	{ echo "FAIL: sectors $(sh_xs_read "$be/0/sectors")"; exit 1; }
# A plugin's lines name the guest, device, plugin and label (ABI 2).
grep -E "dom 71 dev 0: plugin raw \[device blk\]: $loopdev: 33554432 bytes, 4096/4096-byte blocks" "$SH_DIR/vproxyd.log" ||
	{ echo "FAIL: block sizes not taken from the device"; exit 1; }
pg_guest_run 71 0 "verify workload" --devices 0 --seconds 2 --workload verify --span 4096
grep -E "^guest 71 dev 0: .*flushes [1-9].*verify OK" "$SH_DIR/guest-71.log"
sh_wait_xs "$be/0/state" 6 10
pg_guest_run 71 0 "mixed workload" --devices 0 --seconds 2 --workload mixed
grep -E "^guest 71 dev 0: .*discards [1-9].*zeroes [1-9].*verify OK" "$SH_DIR/guest-71.log"
pg_stop_vproxyd
echo "PASS: raw plugin on a block device"
