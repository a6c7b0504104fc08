#!/bin/bash
# The raw plugin under a simulated guest: mixed read/write/flush/discard/
# write-zeroes round trips (verified by the guest) on a file with io_uring
# and with the worker threads, a read-only device the guest may not write,
# a file that cannot be written becoming read-only by itself, and bad
# storage (missing file, directory, empty file) refused with a clear
# xenstore error while the same guest's good devices keep working.
set -euo pipefail
# shellcheck source=../lib/simhost.sh
source "$(dirname "$0")/../lib/simhost.sh"

sh_start_host
data=$(mktemp -d "${TMPDIR:-/tmp}/vproxy-raw.XXXXXX")
cleanup_push rm -rf -- "$data"
truncate -s 64M "$data/a.raw" "$data/b.raw" "$data/ro.raw" "$data/imm.raw"
: >"$data/empty.raw"
mkdir "$data/dir"
# An immutable file cannot be opened for writing, not even by root.
immutable=0
if chattr +i "$data/imm.raw" 2>/dev/null; then
	immutable=1
	cleanup_push chattr -i "$data/imm.raw"
fi

sh_start_vproxyd <<CFG
[device uring]
guest = 51
id = 0
plugin = raw
file = $data/a.raw

[device threads]
guest = 51
id = 1
plugin = raw
file = $data/b.raw
engine = threads

[device ro]
guest = 51
id = 2
plugin = raw
file = $data/ro.raw
read-only = yes

[device missing]
guest = 51
id = 3
plugin = raw
file = $data/nope.raw

[device dir]
guest = 51
id = 4
plugin = raw
file = $data/dir

[device empty]
guest = 51
id = 5
plugin = raw
file = $data/empty.raw

[device immutable]
guest = 51
id = 6
plugin = raw
file = $data/imm.raw
CFG

be=/local/domain/0/backend/vproxy/51
sh_create_dom 51 guest51
# Bad storage: Closed, with a reason naming the problem.
expect_error() {
	local id=$1 want=$2 err
	sh_wait_xs "$be/$id/state" 6 10
	err=$(sh_xs_read "$be/$id/error") || err=
	[[ $err == *"$want"* ]] || { echo "FAIL: dev $id error \"$err\" lacks \"$want\""; exit 1; }
	echo "dev $id refused: $err"
}
expect_error 3 "No such file"
expect_error 4 "is a directory"
expect_error 5 "is empty"

# The good devices work, in the same guest, at the same time.
sh_guest_start 51 --devices 0,1 --seconds 3 --workload mixed --iodepth 16
st=0
sh_guest_wait 51 60 || st=$?
((st == 0)) || { echo "FAIL: mixed workload exited with $st"; exit 1; }
grep -E "^guest 51 dev 0: .*flushes [1-9].*discards [1-9].*zeroes [1-9].*verify OK" \
	"$SH_DIR/guest-51.log" || { echo "FAIL: dev 0 did not do every kind of request"; exit 1; }
grep -E "^guest 51 dev 1: .*verify OK" "$SH_DIR/guest-51.log"
grep -E "raw: .*b.raw: .*threads engine" "$SH_DIR/vproxyd.log" >/dev/null ||
	{ echo "FAIL: dev 1 is not on the threads engine"; exit 1; }

# Write then read back every block, twice over.
sh_wait_xs "$be/0/state" 6 10
sh_guest_start 51 --devices 0 --seconds 2 --workload verify --span 2048
st=0
sh_guest_wait 51 60 || st=$?
((st == 0)) || { echo "FAIL: verify workload exited with $st"; exit 1; }

# Read-only: reads work, the guest is told it may not write.
sh_wait_xs "$be/2/state" 2 10
sh_guest_start 51 --devices 2 --seconds 1 --workload read
st=0
sh_guest_wait 51 60 || st=$?
((st == 0)) || { echo "FAIL: read-only read workload exited with $st"; exit 1; }
sh_wait_xs "$be/2/state" 6 10
sh_guest_start 51 --devices 2 --seconds 1 --workload write
st=0
sh_guest_wait 51 60 || st=$?
((st == 2)) || { echo "FAIL: writing a read-only device exited with $st, not 2"; exit 1; }
grep -Ei "dev 2: .*read-only" "$SH_DIR/guest-51.log" ||
	{ echo "FAIL: the guest did not report the device read-only"; exit 1; }
if ((immutable)); then
	grep -E "imm.raw is not writable .*serving it read-only" "$SH_DIR/vproxyd.log"
	sh_wait_xs "$be/6/state" 2 10
fi

sh_vproxyd_alive || { echo "FAIL: vproxyd died"; exit 1; }
st=0
sh_stop_vproxyd || st=$?
((st == 0)) || { echo "FAIL: vproxyd exited with $st"; exit 1; }
if grep -E "AddressSanitizer|runtime error" "$SH_DIR/vproxyd.log"; then
	exit 1
fi
echo "PASS: raw plugin under a guest"
