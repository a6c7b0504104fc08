#!/bin/bash
# SPDX-License-Identifier: MIT
# The raw plugin under a simulated guest: mixed read/write/flush/discard/
# write-zeroes round trips (verified by the guest) on a file with io_uring
# and with the worker threads, a read-only device the guest may not write,
# a file that cannot be written becoming read-only by itself, and bad
# storage (missing file, directory, empty file) refused with a clear
# xenstore error while the same guest's good devices keep working.
set -euo pipefail
# shellcheck source=../lib/simhost.sh
source "$(dirname "$0")/../lib/simhost.sh"
# shellcheck source=../lib/plugin_guest.sh
source "$(dirname "$0")/../lib/plugin_guest.sh"

sh_start_host
data=$(mktemp -d "${TMPDIR:-/tmp}/vproxy-raw.XXXXXX")
cleanup_push rm -rf -- "$data"
truncate -s 64M "$data/a.raw" "$data/b.raw" "$data/c.raw" "$data/ro.raw" "$data/imm.raw"
: >"$data/empty.raw"
mkdir "$data/dir"
# An immutable file cannot be opened for writing, not even by root.
immutable=0
if chattr +i "$data/imm.raw" 2>/dev/null; then
	immutable=1
	cleanup_push chattr -i "$data/imm.raw"
fi

sh_start_vproxyd < <(
	pg_device uring 51 0 raw "$data/a.raw"
	pg_device threads 51 1 raw "$data/b.raw" engine=threads
	pg_device ro 51 2 raw "$data/ro.raw" read-only=yes
	pg_device missing 51 3 raw "$data/nope.raw"
	pg_device dir 51 4 raw "$data/dir"
	pg_device empty 51 5 raw "$data/empty.raw"
	pg_device immutable 51 6 raw "$data/imm.raw"
	pg_device sqpoll 51 7 raw "$data/c.raw" engine=sqpoll
	pg_device badengine 51 8 raw "$data/a.raw" engine=aio
)

be=/local/domain/0/backend/vproxy/51
sh_create_dom 51 guest51
# Bad storage: Closed, with a reason naming the problem.
pg_expect_error "$be" 3 "No such file"
pg_expect_error "$be" 4 "is a directory"
pg_expect_error "$be" 5 "is empty"
pg_expect_error "$be" 8 'engine: "aio" is not auto, io_uring, sqpoll or threads'

# The good devices work, in the same guest, at the same time.
pg_guest_run 51 0 "mixed workload" --devices 0,1,7 --seconds 3 --workload mixed --iodepth 16
grep -E "^guest 51 dev 0: .*flushes [1-9].*discards [1-9].*zeroes [1-9].*verify OK" \
	"$SH_DIR/guest-51.log" || { echo "FAIL: dev 0 did not do every kind of request"; exit 1; }
grep -E "^guest 51 dev 1: .*verify OK" "$SH_DIR/guest-51.log"
grep -E "dom 51 dev 1: plugin raw \[device threads\]: .*b.raw: .*threads engine" "$SH_DIR/vproxyd.log" >/dev/null ||
	{ echo "FAIL: dev 1 is not on the threads engine"; exit 1; }
grep -E "^guest 51 dev 7: .*verify OK" "$SH_DIR/guest-51.log"
grep -E "dom 51 dev 7: plugin raw \[device sqpoll\]: .*c.raw: .*sqpoll engine" "$SH_DIR/vproxyd.log" >/dev/null ||
	{ echo "FAIL: dev 7 is not on the sqpoll engine"; exit 1; }

# Write then read back every block, twice over.
sh_wait_xs "$be/0/state" 6 10
pg_guest_run 51 0 "verify workload" --devices 0 --seconds 2 --workload verify --span 2048

# Read-only: reads work, the guest is told it may not write.
sh_wait_xs "$be/2/state" 2 10
pg_guest_run 51 0 "read-only read workload" --devices 2 --seconds 1 --workload read
sh_wait_xs "$be/2/state" 6 10
pg_guest_run 51 2 "writing a read-only device" --devices 2 --seconds 1 --workload write
grep -Ei "dev 2: .*read-only" "$SH_DIR/guest-51.log" ||
	{ echo "FAIL: the guest did not report the device read-only"; exit 1; }
if ((immutable)); then
	grep -E "imm.raw is not writable .*serving it read-only" "$SH_DIR/vproxyd.log"
	sh_wait_xs "$be/6/state" 2 10
fi

sh_vproxyd_alive || { echo "FAIL: vproxyd died"; exit 1; }
pg_stop_vproxyd
echo "PASS: raw plugin under a guest"
