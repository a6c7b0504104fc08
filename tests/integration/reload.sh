#!/bin/bash
# SPDX-License-Identifier: MIT
# vproxyctl reload and SIGHUP: the file read again, devices it dropped
# detached, new ones attached, changed ones replaced, unchanged ones not
# touched while their guest verifies I/O; a file with an error, or one that
# claims a device attached at runtime, changes nothing.
set -euo pipefail
# shellcheck source=../lib/simhost.sh
source "$(dirname "$0")/../lib/simhost.sh"

CTL=$VPROXY_BUILD_DIR/core/vproxyctl
sh_start_host
export VPROXY_CONTROL=$SH_DIR/run/control.sock
CFG=$SH_DIR/vproxyd.ini

dev() { # LABEL GUEST ID SIZE
	printf '[device %s]\nguest = %s\nid = %s\nplugin = mem\nsize = %s\n\n' "$@"
}
sh_start_vproxyd < <(dev keep 12 0 16M; dev gone 11 0 4M; dev changed 11 1 8M)
global=$(sed -n '1,/^$/p' "$CFG")

sh_create_dom 11 guest11
sh_create_dom 12 guest12
sh_guest_start 12 --devices 0 --seconds 15 --workload verify --iodepth 4
sh_wait_xs /local/domain/0/backend/vproxy/12/0/state 4 20
sh_wait_xs /local/domain/0/backend/vproxy/11/1/state 2 20

state() { # LABEL -> state, size, or "absent"
	"$CTL" --json list | python3 -c '
import json, sys
for d in json.load(sys.stdin)["devices"]:
    if d["label"] == sys.argv[1]:
        print(d["state"], d["size"]); break
else:
    print("absent")' "$1"
}

# A file with an error changes nothing, and says where.
{ echo "$global"; dev keep 12 0 16M; dev gone 11 0 4M; dev changed 11 1 8M; echo "queues = 99"; } >"$CFG"
before=$("$CTL" --json list)
if "$CTL" reload 2>"$SH_DIR/err.txt"; then fail "a broken file was applied"; fi
grep -qE "reload refused, nothing changed: .*vproxyd.ini:[0-9]+: queues: " "$SH_DIR/err.txt" ||
	fail "broken file: $(cat "$SH_DIR/err.txt")"
[[ $("$CTL" --json list) == "$before" ]] || fail "the broken file changed something"

# One dropped, one changed, one new, one the same.
{ echo "$global"; dev keep 12 0 16M; dev changed 11 1 16M; dev new 11 2 4M; } >"$CFG"
"$CTL" reload >"$SH_DIR/reload.txt" || fail "reload: $(cat "$SH_DIR/reload.txt")"
grep -q "1 attached, 1 detached, 1 changed (detached, then attached again), 1 unchanged" \
	"$SH_DIR/reload.txt" || fail "reload summary: $(cat "$SH_DIR/reload.txt")"
for _ in $(seq 50); do
	[[ $(state gone) == absent && $(state changed) == "InitWait 16777216" &&
		$(state new) == "InitWait 4194304" ]] && break
	sleep 0.1
done
[[ $(state gone) == absent ]] || fail "gone: $(state gone)"
[[ $(state changed) == "InitWait 16777216" ]] || fail "changed: $(state changed)"
[[ $(state new) == "InitWait 4194304" ]] || fail "new: $(state new)"
[[ $(state keep) == "Connected 16777216" ]] || fail "keep: $(state keep)"
sh_wait_xs /local/domain/0/backend/vproxy/11/0/state "" 10

# A device attached at runtime is not the file's: reload leaves it, and a
# file that claims its label is refused.
"$CTL" attach 11 id=3 plugin=mem size=1M --label rt >/dev/null || fail "attach rt"
"$CTL" reload >/dev/null || fail "reload with a runtime device"
[[ $(state rt) == "InitWait 1048576" ]] || fail "reload touched rt: $(state rt)"
{ echo "$global"; dev keep 12 0 16M; dev changed 11 1 16M; dev new 11 2 4M; dev rt 11 3 1M; } >"$CFG"
if "$CTL" reload 2>"$SH_DIR/err.txt"; then fail "the file took a runtime device"; fi
grep -q "device rt: attached at runtime" "$SH_DIR/err.txt" || fail "rt: $(cat "$SH_DIR/err.txt")"

# SIGHUP does the same.
{ echo "$global"; dev keep 12 0 16M; dev changed 11 1 16M; } >"$CFG"
kill -HUP "$VPD_PID"
sh_wait_log "$SH_DIR/vproxyd.log" "reloaded .*: 0 attached, 1 detached, 0 changed.*2 unchanged" 10 ||
	fail "SIGHUP reload not logged"
for _ in $(seq 50); do
	[[ $(state new) == absent ]] && break
	sleep 0.1
done
[[ $(state new) == absent ]] || fail "SIGHUP: new still there: $(state new)"

# The unchanged device's guest never noticed.
st=0
sh_guest_wait 12 60 || st=$?
((st == 0)) || fail "the guest of the unchanged device: $(tail -3 "$SH_DIR/guest-12.log")"
grep -qE "^guest 12: .* verify OK" "$SH_DIR/guest-12.log" || fail "guest 12 did not verify"
(($(grep -c "dom 12 dev 0: connected" "$SH_DIR/vproxyd.log") == 1)) || fail "keep was reconnected"
echo "guest of the unchanged device: $(grep -E '^guest 12: ' "$SH_DIR/guest-12.log")"

sh_destroy_dom 11
sh_destroy_dom 12
sh_finish_vproxyd
echo "PASS: reload"
