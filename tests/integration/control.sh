#!/bin/bash
# SPDX-License-Identifier: MIT
# The control socket and vproxyctl (docs/CONTROL.md): list shows every
# declared device, stats counts exactly the requests a guest made, the log
# level changes at runtime, and bad clients (garbage, a huge line, unknown
# commands, one that never reads its replies, too many at once) get errors
# or are dropped while the daemon serves on.  A second vproxyd on the same
# socket refuses to start; a dead one's socket file is taken over.
set -euo pipefail
# shellcheck source=../lib/simhost.sh
source "$(dirname "$0")/../lib/simhost.sh"

CTL=$VPROXY_BUILD_DIR/core/vproxyctl
sh_start_host
SOCK=$SH_DIR/run/control.sock
export VPROXY_CONTROL=$SOCK

devices() {
	printf '[device g11-d0]\nguest = 11\nid = 0\nplugin = mem\nsize = 16M\n\n'
	printf '[device g11-d1]\nguest = 11\nid = 1\nplugin = mem\nsize = 8M\nqueues = 2\n\n'
	printf '[device g12-d0]\nguest = guest12\nid = 0\nplugin = mem\nsize = 4M\nread-only = yes\n\n'
	printf '[device absent]\nguest = 99\nid = 0\nplugin = mem\nsize = 4M\n\n'
}
sh_start_vproxyd < <(devices)

# The socket is private to root (0600).
[[ $(stat -c %a "$SOCK") == 600 ]] || fail "control socket mode $(stat -c %a "$SOCK")"

# json_get JSON PYTHON-EXPR: evaluate EXPR with r = the parsed reply.
json_get() {
	python3 -c 'import json,sys; r=json.loads(sys.argv[1]); print(eval(sys.argv[2]))' "$1" "$2"
}

# list before any guest: every declaration, none connected.
out=$("$CTL" --json list)
[[ $(json_get "$out" 'len(r["devices"])') == 4 ]] || fail "list: $out"
[[ $(json_get "$out" '[d["state"] for d in r["devices"]]') == "['no-guest', 'no-guest', 'no-guest', 'no-guest']" ]] ||
	fail "list before guests: $out"
"$CTL" list | grep -E '^absent +99 +- +0 +mem ' >/dev/null || fail "list table: $("$CTL" list)"

sh_create_dom 11 guest11
sh_create_dom 12 guest12
sh_wait_xs /local/domain/0/backend/vproxy/11/1/state 2 10
sh_wait_xs /local/domain/0/backend/vproxy/12/0/state 2 10

# A guest does a known amount of I/O; stats must count exactly that.
sh_guest_start 11 --devices 0,1 --seconds 2 --workload mixed --queues 2 --iodepth 4
sh_wait_xs /local/domain/0/backend/vproxy/11/0/state 4 20
out=$("$CTL" --json list)
[[ $(json_get "$out" '[(d["label"], d["state"], d["addr_mode"], d["domid"]) for d in r["devices"]][:2]') == \
	"[('g11-d0', 'Connected', 'gfn', 11), ('g11-d1', 'Connected', 'gfn', 11)]" ]] ||
	fail "list while connected: $out"
[[ $(json_get "$out" '[d["size"] for d in r["devices"]]') == "[16777216, 8388608, 4194304, 0]" ]] ||
	fail "list sizes: $out"
[[ $(json_get "$out" 'r["devices"][2]["read_only"]') == True ]] || fail "read-only: $out"
[[ $(json_get "$out" '[d["name"] for d in r["devices"]]') == "['guest11', 'guest11', 'guest12', None]" ]] ||
	fail "domain names: $out"

# --watch refreshes while the guest runs.
"$CTL" stats g11-d0 --watch 0.2 --count 3 >"$SH_DIR/watch.txt"
(($(grep -c 'g11-d0' "$SH_DIR/watch.txt") == 4)) || fail "watch: $(cat "$SH_DIR/watch.txt")"
grep -E 'g11-d0 +[0-9]+ +[0-9]+' "$SH_DIR/watch.txt" >/dev/null || fail "watch rates: $(cat "$SH_DIR/watch.txt")"

st=0
sh_guest_wait 11 60 || st=$?
((st == 0)) || fail "guest 11 exited with $st: $(cat "$SH_DIR/guest-11.log")"
# The guest closed its devices; their counters stay with the backend and
# equal what the guest says it did.
out=$("$CTL" --json stats)
for id in 0 1; do
	line=$(grep -E "^guest 11 dev $id: .* reads " "$SH_DIR/guest-11.log" | head -1)
	[[ -n $line ]] || fail "guest 11 printed no line for dev $id"
	for kind in read write flush; do
		want=$(sed -E "s/.* ${kind}es ([0-9]+) .*|.* ${kind}s ([0-9]+) .*/\1\2/" <<<"$line")
		got=$(json_get "$out" "sum(q['$kind']['requests'] for d in r['devices'] if d['label'] == 'g11-d$id' for q in d['queues'])")
		[[ $want == "$got" ]] || fail "g11-d$id: guest did $want ${kind}s, stats say $got ($line)"
	done
	want=$(sed -E 's/.* reads ([0-9]+) .*/\1/' <<<"$line")
	((want > 0)) || fail "guest did no reads on dev $id: $line"
	got=$(json_get "$out" "sum(q['read']['bytes'] for d in r['devices'] if d['label'] == 'g11-d$id' for q in d['queues'])")
	((got == want * 4096)) || fail "g11-d$id: read bytes $got for $want reads of 4 KiB"
	echo "g11-d$id: $want reads counted alike"
done
[[ $(json_get "$out" "[d['connected'] for d in r['devices']][:2]") == "[False, False]" ]] ||
	fail "stats after the guest closed: $out"
[[ $(json_get "$out" "r['devices'][0]['latency']['count'] > 0 and r['devices'][0]['interrupts'] > 0") == True ]] ||
	fail "no latency or interrupts counted: $out"
# Two queues on g11-d1, both used.
[[ $(json_get "$out" "[len(d['queues']) for d in r['devices']]") == "[1, 2, 1, 1]" ]] ||
	fail "queues in stats: $out"

# A second connection counts on from the first.
r0=$(json_get "$out" "sum(q['read']['requests'] for q in r['devices'][0]['queues'])")
sh_guest_start 11 --devices 0 --seconds 1 --workload read --iodepth 2 --seed 7
sh_guest_wait 11 60 || fail "guest 11 (second run): $(cat "$SH_DIR/guest-11.log")"
line=$(grep -E "^guest 11 dev 0: .* reads " "$SH_DIR/guest-11.log" | head -1)
want=$(sed -E 's/.* reads ([0-9]+) .*/\1/' <<<"$line")
out=$("$CTL" --json stats g11-d0)
got=$(json_get "$out" "sum(q['read']['requests'] for q in r['devices'][0]['queues'])")
((got == r0 + want)) || fail "second connection: $r0 + $want reads, stats say $got"
"$CTL" stats | grep -E '^g11-d0 ' >/dev/null || fail "stats table: $("$CTL" stats)"

# Same device selected by DOMID/ID; a device that does not exist is an error.
"$CTL" --json stats 12/0 >/dev/null 2>&1 || true
if "$CTL" stats nosuch 2>"$SH_DIR/err.txt"; then fail "stats nosuch succeeded"; fi
grep -q "no device 'nosuch'" "$SH_DIR/err.txt" || fail "stats nosuch: $(cat "$SH_DIR/err.txt")"

# log-level, read and set at runtime.
[[ $("$CTL" log-level) == info ]] || fail "log-level: $("$CTL" log-level)"
[[ $("$CTL" log-level debug) == debug ]] || fail "log-level debug"
sh_wait_log "$SH_DIR/vproxyd.log" "control: log level debug .was info." 5 || fail "log-level change not logged"
"$CTL" log-level info >/dev/null
if "$CTL" log-level loud 2>"$SH_DIR/err.txt"; then fail "log-level loud succeeded"; fi
grep -q "must be one of" "$SH_DIR/err.txt" || fail "log-level loud: $(cat "$SH_DIR/err.txt")"

# Bad clients, each followed by a good request on a fresh connection.
python3 - "$SOCK" <<'EOF' || fail "bad requests"
import json, socket, sys, time
path = sys.argv[1]

def conn():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(path)
    return s

def ask(s, line):
    s.sendall(line)
    buf = b""
    while not buf.endswith(b"\n"):
        d = s.recv(65536)
        if not d:
            raise SystemExit("closed while waiting for a reply to %r" % line[:40])
        buf += d
    return json.loads(buf)

def check(line, want):
    s = conn()
    r = ask(s, line)
    assert r["ok"] is False and want in r["error"], (line[:60], r)
    # The connection carries on after an error.
    assert ask(s, b'{"cmd":"list"}\n')["ok"] is True
    s.close()

check(b"garbage\n", "not JSON")
check(b"[1,2]\n", "JSON object")
check(b'{"cmd": 7}\n', '"cmd"')
check(b'{"nocmd": 1}\n', '"cmd"')
check(b'{"cmd":"frobnicate"}\n', "unknown command 'frobnicate'")
check(b'{"cmd":"list"} {"cmd":"list"}\n', "not one JSON object")
check(b'{"cmd":"stats","device":5}\n', '"device" must be a string')
check(b'{"cmd":"list"\n', "not complete")
check(b'\xff\xfe\n', "not JSON")

# A line past the limit: an error reply, then the connection closes.
s = conn()
s.sendall(b"x" * 200000)
buf = b""
while True:
    try:
        d = s.recv(65536)
    except ConnectionResetError:
        break  # closed with some of our bytes unread: after its reply
    if not d:
        break
    buf += d
r = json.loads(buf.splitlines()[0])
assert r["ok"] is False and "longer than" in r["error"], r
s.close()

# A client that sends and never reads is dropped once its unread replies
# pass the limit; nobody else notices.
s = conn()
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
req = b'{"cmd":"list"}\n' * 1000
dropped = False
deadline = time.time() + 60
while time.time() < deadline:
    try:
        s.sendall(req)
    except (BrokenPipeError, ConnectionResetError):
        dropped = True
        break
    except socket.timeout:
        break
assert dropped, "a client that never reads was not dropped"
s.close()

# Too many clients at once: the one past the limit is told so.
held = [conn() for _ in range(32)]
extra = conn()
r = json.loads(extra.recv(4096).splitlines()[0])
assert r["ok"] is False and "too many" in r["error"], r
extra.close()
for h in held:
    h.close()
time.sleep(0.2)
s = conn()
assert ask(s, b'{"cmd":"list"}\n')["ok"] is True
s.close()
print("bad clients: OK")
EOF
sh_wait_log "$SH_DIR/vproxyd.log" "left [0-9]+ reply bytes unread" 5 || fail "dropped client not logged"

# A second vproxyd on the same socket refuses to start.
cfg2=$SH_DIR/second.ini
sed "s|^run-dir = .*|run-dir = $SH_DIR/run2|; s|^\[vproxyd\]|[vproxyd]\ncontrol-socket = $SOCK|" \
	"$SH_DIR/vproxyd.ini" >"$cfg2"
mkdir -p "$SH_DIR/run2"
st=0
timeout 20 "$VPROXY_BUILD_DIR/core/vproxyd" --foreground --config "$cfg2" \
	>"$SH_DIR/second.log" 2>&1 || st=$?
((st != 0)) || fail "a second vproxyd started on a socket in use"
grep -q "is in use: is another vproxyd running" "$SH_DIR/second.log" ||
	fail "second vproxyd: $(cat "$SH_DIR/second.log")"
"$CTL" list >/dev/null || fail "the first vproxyd stopped answering"

# A config error names file, line and key.
printf '[vproxyd]\ncontrol-socket =\n' >"$SH_DIR/bad.ini"
if "$VPROXY_BUILD_DIR/core/vproxyd" --check-config --config "$SH_DIR/bad.ini" 2>"$SH_DIR/err.txt"; then
	fail "empty control-socket accepted"
fi
grep -q "bad.ini:2: control-socket: must not be empty" "$SH_DIR/err.txt" ||
	fail "bad control-socket: $(cat "$SH_DIR/err.txt")"

# A killed daemon leaves its socket file; the next one takes it over.
kill -KILL "$VPD_PID"
wait "$VPD_PID" 2>/dev/null || true
VPD_PID=
[[ -S $SOCK ]] || fail "no socket file left to take over"
sh_destroy_dom 11
sh_destroy_dom 12
sh_start_vproxyd < <(devices)
"$CTL" list >/dev/null || fail "the restarted vproxyd does not answer"

sh_finish_vproxyd
[[ ! -e $SOCK ]] || fail "the socket file is left after a clean stop"
echo "PASS: control socket and vproxyctl"
