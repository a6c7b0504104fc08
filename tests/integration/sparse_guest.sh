#!/bin/bash
# The sparse plugin under a simulated guest: mixed read/write/flush/
# discard/write-zeroes round trips (verified by the guest) with io_uring and
# with worker threads, a read-only device, a 3 TiB image, and bad images (a
# foreign file, a truncated image, a corrupt header, a missing file) each
# refused with a clear xenstore error while the same guest's good devices
# keep working.  Afterwards every image passes `vproxy-img check`.
set -euo pipefail
# shellcheck source=../lib/simhost.sh
source "$(dirname "$0")/../lib/simhost.sh"

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

sh_start_vproxyd <<CFG
[device uring]
guest = 61
id = 0
plugin = sparse
file = $data/a.img

[device threads]
guest = 61
id = 1
plugin = sparse
file = $data/b.img
engine = threads

[device ro]
guest = 61
id = 2
plugin = sparse
file = $data/ro.img
read-only = yes

[device huge]
guest = 61
id = 3
plugin = sparse
file = $data/huge.img

[device foreign]
guest = 61
id = 4
plugin = sparse
file = $data/foreign.img

[device short]
guest = 61
id = 5
plugin = sparse
file = $data/short.img

[device corrupt]
guest = 61
id = 6
plugin = sparse
file = $data/corrupt.img

[device missing]
guest = 61
id = 7
plugin = sparse
file = $data/nope.img
CFG

be=/local/domain/0/backend/vproxy/61
sh_create_dom 61 guest61
expect_error() {
	local id=$1 want=$2 err
	sh_wait_xs "$be/$id/state" 6 10
	err=$(sh_xs_read "$be/$id/error") || err=
	[[ $err == *"$want"* ]] || { echo "FAIL: dev $id error \"$err\" lacks \"$want\""; exit 1; }
	echo "dev $id refused: $err"
}
expect_error 4 "not a vproxy sparse image"
expect_error 5 "truncated"
expect_error 6 "corrupt header"
expect_error 7 "No such file"
sh_wait_xs "$be/3/sectors" $((3 << 31)) 10

sh_guest_start 61 --devices 0,1,3 --seconds 3 --workload mixed --iodepth 16
st=0
sh_guest_wait 61 60 || st=$?
((st == 0)) || { echo "FAIL: mixed workload exited with $st"; exit 1; }
# The guest discards only what the discard granularity (a cluster) allows:
# with 4 KiB blocks, on the 4 KiB-cluster image.
grep -E "^guest 61 dev 1: .*flushes [1-9].*discards [1-9].*zeroes [1-9].*verify OK" \
	"$SH_DIR/guest-61.log" || { echo "FAIL: dev 1 did not do every kind of request"; exit 1; }
for id in 0 3; do
	grep -E "^guest 61 dev $id: .*flushes [1-9].*zeroes [1-9].*verify OK" \
		"$SH_DIR/guest-61.log" || { echo "FAIL: dev $id did not flush and zero"; exit 1; }
done
sh_wait_xs "$be/0/state" 6 10
sh_guest_start 61 --devices 0 --seconds 2 --workload verify --span 4096
st=0
sh_guest_wait 61 60 || st=$?
((st == 0)) || { echo "FAIL: verify workload exited with $st"; exit 1; }

sh_wait_xs "$be/2/state" 2 10
sh_guest_start 61 --devices 2 --seconds 1 --workload read
st=0
sh_guest_wait 61 60 || st=$?
((st == 0)) || { echo "FAIL: read-only read workload exited with $st"; exit 1; }
sh_wait_xs "$be/2/state" 6 10
sh_guest_start 61 --devices 2 --seconds 1 --workload write
st=0
sh_guest_wait 61 60 || st=$?
((st == 2)) || { echo "FAIL: writing a read-only device exited with $st, not 2"; exit 1; }
grep -Ei "dev 2: .*read-only" "$SH_DIR/guest-61.log"

sh_vproxyd_alive || { echo "FAIL: vproxyd died"; exit 1; }
st=0
sh_stop_vproxyd || st=$?
((st == 0)) || { echo "FAIL: vproxyd exited with $st"; exit 1; }
if grep -E "AddressSanitizer|runtime error" "$SH_DIR/vproxyd.log"; then
	exit 1
fi
for img in a b ro huge; do
	"$img_tool" check "$data/$img.img"
done
"$img_tool" info --json "$data/a.img" | grep -E '"allocated-clusters": [1-9]'
extents=$("$img_tool" map "$data/huge.img" | tail -n +2)
[[ -n $extents ]] || { echo "FAIL: nothing allocated in the huge image"; exit 1; }
echo "PASS: sparse plugin under a guest"
