#!/bin/bash
# SPDX-License-Identifier: MIT
# The sparse plugin under a simulated guest: mixed read/write/flush/
# discard/write-zeroes round trips (verified by the guest) with io_uring and
# with worker threads, a read-only device, a 3 TiB image, and bad images (a
# foreign file, a truncated image, a corrupt header, a missing file) each
# refused with a clear xenstore error while the same guest's good devices
# keep working.  Afterwards every image passes `vproxy-img check`.
set -euo pipefail
# shellcheck source=../lib/simhost.sh
source "$(dirname "$0")/../lib/simhost.sh"
# shellcheck source=../lib/plugin_guest.sh
source "$(dirname "$0")/../lib/plugin_guest.sh"

img_tool=$VPROXY_BUILD_DIR/plugins/sparse/vproxy-img
sh_start_host
data=$(mktemp -d "${TMPDIR:-/tmp}/vproxy-sparse.XXXXXX")
cleanup_push rm -rf -- "$data"
"$img_tool" create "$data/a.img" 64M
"$img_tool" create -c 4K "$data/b.img" 64M
"$img_tool" create "$data/ro.img" 16M
"$img_tool" create "$data/huge.img" 3T
printf 'QFI\373 not one of ours, but long enough to be read as a header...%100s\n' "" \
	>"$data/foreign.img"
"$img_tool" create -c 4K "$data/short.img" 1G
truncate -s 64K "$data/short.img"
"$img_tool" create "$data/corrupt.img" 16M
printf '\377' | dd of="$data/corrupt.img" bs=1 seek=20 conv=notrunc status=none

sh_start_vproxyd < <(
	pg_device uring 61 0 sparse "$data/a.img"
	pg_device threads 61 1 sparse "$data/b.img" engine=threads
	pg_device ro 61 2 sparse "$data/ro.img" read-only=yes
	pg_device huge 61 3 sparse "$data/huge.img"
	pg_device foreign 61 4 sparse "$data/foreign.img"
	pg_device short 61 5 sparse "$data/short.img"
	pg_device corrupt 61 6 sparse "$data/corrupt.img"
	pg_device missing 61 7 sparse "$data/nope.img"
)

be=/local/domain/0/backend/vproxy/61
sh_create_dom 61 guest61
pg_expect_error "$be" 4 "not a vproxy sparse image"
pg_expect_error "$be" 5 "truncated"
pg_expect_error "$be" 6 "corrupt header"
pg_expect_error "$be" 7 "No such file"
sh_wait_xs "$be/3/sectors" $((3 << 31)) 10

pg_guest_run 61 0 "mixed workload" --devices 0,1,3 --seconds 3 --workload mixed --iodepth 16
# The guest discards only what the discard granularity (a cluster) allows:
# with 4 KiB blocks, on the 4 KiB-cluster image.
grep -E "^guest 61 dev 1: .*flushes [1-9].*discards [1-9].*zeroes [1-9].*verify OK" \
	"$SH_DIR/guest-61.log" || { echo "FAIL: dev 1 did not do every kind of request"; exit 1; }
for id in 0 3; do
	grep -E "^guest 61 dev $id: .*flushes [1-9].*zeroes [1-9].*verify OK" \
		"$SH_DIR/guest-61.log" || { echo "FAIL: dev $id did not flush and zero"; exit 1; }
done
sh_wait_xs "$be/0/state" 6 10
pg_guest_run 61 0 "verify workload" --devices 0 --seconds 2 --workload verify --span 4096

sh_wait_xs "$be/2/state" 2 10
pg_guest_run 61 0 "read-only read workload" --devices 2 --seconds 1 --workload read
sh_wait_xs "$be/2/state" 6 10
pg_guest_run 61 2 "writing a read-only device" --devices 2 --seconds 1 --workload write
grep -Ei "dev 2: .*read-only" "$SH_DIR/guest-61.log"

sh_vproxyd_alive || { echo "FAIL: vproxyd died"; exit 1; }
pg_stop_vproxyd
for img in a b ro huge; do
	"$img_tool" check "$data/$img.img"
done
"$img_tool" info --json "$data/a.img" | grep -E '"allocated-clusters": [1-9]'
extents=$("$img_tool" map "$data/huge.img" | tail -n +2)
[[ -n $extents ]] || { echo "FAIL: nothing allocated in the huge image"; exit 1; }
echo "PASS: sparse plugin under a guest"
