#!/bin/bash
# SPDX-License-Identifier: MIT
# vproxyctl attach and detach on a running vproxyd while another guest
# verifies its own I/O throughout: a guest waiting for a device gets it
# and verifies it; a detach with I/O in flight lets the guest close and
# then removes the device; a raw file keeps what the guest wrote and is
# closed; bad attaches leave nothing behind; 1,000 attach/detach cycles
# leave vproxyd's descriptors, mappings and memory where they were.
set -euo pipefail
# shellcheck source=../lib/simhost.sh
source "$(dirname "$0")/../lib/simhost.sh"

CTL=$VPROXY_BUILD_DIR/core/vproxyctl
sh_start_host
export VPROXY_CONTROL=$SH_DIR/run/control.sock
# Freed memory goes back at once, so RSS shows real growth under ASan.
export ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=1
devices() {
	printf '[device other]\nguest = 12\nid = 0\nplugin = mem\nsize = 16M\n\n'
	printf '[device g11-d0]\nguest = 11\nid = 0\nplugin = mem\nsize = 8M\n\n'
}
# Not a pipe: sh_start_vproxyd must run in this shell to keep VPD_PID.
sh_start_vproxyd < <(devices)

sh_create_dom 11 guest11
sh_create_dom 12 guest12
# The other guest verifies its disk for the whole test.
sh_guest_start 12 --devices 0 --seconds 40 --workload verify --iodepth 4

# A guest waits for device 1, which is attached while it waits.
sh_guest_start 11 --devices 0,1 --seconds 2 --workload verify --timeout 30
sleep 0.5
"$CTL" attach 11 id=1 plugin=mem size=8M --label hot1 >"$SH_DIR/attach.txt" ||
	fail "attach: $(cat "$SH_DIR/attach.txt")"
grep -q "hot1: attached to guest 11 as device 1" "$SH_DIR/attach.txt" || fail "attach: $(cat "$SH_DIR/attach.txt")"
sh_guest_wait 11 60 || fail "guest 11 with the attached device: $(tail -5 "$SH_DIR/guest-11.log")"
grep -qE "^guest 11 dev 1: .* verify OK" "$SH_DIR/guest-11.log" || fail "device 1 not verified"

# Detach with I/O in flight: the guest is told, lets go, the device goes.
sh_guest_start 11 --devices 1 --seconds 30 --workload mixed --iodepth 8 --timeout 30
sh_wait_xs /local/domain/0/backend/vproxy/11/1/state 4 20
sleep 0.5
"$CTL" detach hot1 --timeout 10 >"$SH_DIR/detach.txt" || fail "detach: $(cat "$SH_DIR/detach.txt")"
grep -q "hot1: detached" "$SH_DIR/detach.txt" || fail "detach: $(cat "$SH_DIR/detach.txt")"
st=0
sh_guest_wait 11 30 || st=$?
grep -q "dev 1: error: backend closed: backend closing" "$SH_DIR/guest-11.log" ||
	fail "guest 11 was not told ($st): $(tail -3 "$SH_DIR/guest-11.log")"
sh_wait_xs /local/domain/0/backend/vproxy/11/1/state "" 10
[[ -z $(sh_xs_read /local/domain/11/device/vproxy/1/state) ]] || fail "frontend node left"
if "$CTL" list | grep -q '^hot1 '; then fail "hot1 still listed"; fi

# A raw file: what the guest wrote is in the file when it is detached,
# and vproxyd holds the file no more.
img=$SH_DIR/disk.raw
truncate -s 8M "$img"
"$CTL" attach guest11 id=2 plugin=raw file="$img" --label rawdev >/dev/null || fail "attach raw"
sh_guest_start 11 --devices 2 --seconds 1 --workload verify --timeout 30
sh_guest_wait 11 60 || fail "guest 11 on the raw file: $(tail -3 "$SH_DIR/guest-11.log")"
[[ $(cmp -n 8388608 "$img" /dev/zero 2>/dev/null | wc -l) == 1 ]] || fail "the guest's writes are not in the file"
sum_before=$(sha256sum <"$img")
"$CTL" detach guest11 2 >/dev/null || fail "detach raw"
[[ $(sha256sum <"$img") == "$sum_before" ]] || fail "the file changed at detach"
if ls -l "/proc/$VPD_PID/fd" 2>/dev/null | grep -q "$img"; then fail "vproxyd still holds $img"; fi

# Bad attaches are refused and leave nothing behind.
bad() {
	local want=$1
	shift
	if "$CTL" attach "$@" >"$SH_DIR/bad.txt" 2>&1; then fail "attach $* succeeded"; fi
	grep -q -- "$want" "$SH_DIR/bad.txt" || fail "attach $*: $(cat "$SH_DIR/bad.txt")"
}
bad "exists already" 11 id=5 plugin=mem size=1M --label other
bad "has device id 0 already" 11 id=0 plugin=mem size=1M --label dup
bad 'size: "8X" is not a size' 11 id=3 plugin=mem size=8X --label badsize
bad "No such file or directory" 11 id=3 plugin=raw file=/nonexistent/x --label nofile
bad "nosuch.so" 11 id=3 plugin=nosuch --label noplugin
bad "key 'Bad' is not allowed" 11 Bad=1 plugin=mem
bad "has ';' or '#'" 11 id=3 plugin=mem size=1M serial=a\;b
bad "is not KEY=VALUE" 11 id
n=$("$CTL" --json list | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["devices"]))')
((n == 2)) || fail "bad attaches left devices behind: $("$CTL" list)"
if "$CTL" detach nosuch 2>"$SH_DIR/err.txt"; then fail "detach nosuch succeeded"; fi
grep -q "no device 'nosuch'" "$SH_DIR/err.txt" || fail "detach nosuch: $(cat "$SH_DIR/err.txt")"

# 1,000 attach/detach cycles over one connection: a device for guest 11
# (provisioned: nodes written, disk opened) and removed again each time.
python3 - "$SH_DIR/run/control.sock" "$VPD_PID" <<'EOF' || fail "attach/detach cycles"
import json, socket, sys
path, pid = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(20)
s.connect(path)
f = s.makefile("rwb")

def ask(req):
    f.write((json.dumps(req) + "\n").encode())
    f.flush()
    r = json.loads(f.readline())
    assert r["ok"], (req, r)
    return r

def usage():
    fds = len(__import__("os").listdir("/proc/%s/fd" % pid))
    maps = sum(1 for _ in open("/proc/%s/maps" % pid))
    rss = next(int(l.split()[1]) for l in open("/proc/%s/status" % pid) if l.startswith("VmRSS:"))
    return fds, maps, rss

def cycle(i):
    r = ask({"cmd": "attach", "guest": "11", "label": "cyc",
             "keys": {"id": "7", "plugin": "mem", "size": "1M"}})
    assert r["device"]["state"] in ("InitWait", "Initialising"), r
    r = ask({"cmd": "detach", "device": "cyc", "force": True})
    assert r["gone"], r

for i in range(100):  # warm up: caches, the allocator's pools
    cycle(i)
before = usage()
for i in range(1000):
    cycle(i)
after = usage()
print("fds, mappings, RSS KiB before %s after %s" % (before, after))
assert after[0] == before[0], "descriptors grew"
assert after[1] <= before[1] + 4, "mappings grew"
assert after[2] <= before[2] + 4096, "RSS grew by more than 4 MiB"
EOF

# The other guest verified its disk all along; its slowest request says
# how long attach and detach held it up at most.
sh_guest_wait 12 90 || fail "the other guest: $(tail -3 "$SH_DIR/guest-12.log")"
grep -qE "^guest 12: .* verify OK" "$SH_DIR/guest-12.log" || fail "the other guest did not verify"
echo "other guest: $(grep -E '^guest 12: ' "$SH_DIR/guest-12.log")"

sh_finish_vproxyd
echo "PASS: hot-plug"
