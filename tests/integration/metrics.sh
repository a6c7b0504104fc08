#!/bin/bash
# SPDX-License-Identifier: MIT
# Prometheus metrics (metrics-listen): curl scrapes /metrics before, while
# and after a guest does I/O; the counters move, and end at exactly what
# the guest says it did; the text is valid exposition format; other paths
# and methods are refused; a port in use stops vproxyd with a clear error.
set -euo pipefail
# shellcheck source=../lib/simhost.sh
source "$(dirname "$0")/../lib/simhost.sh"

sh_start_host
# A free loopback port (a race with another program is possible and would
# show as "cannot listen").
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
URL=http://127.0.0.1:$PORT/metrics
export VPROXY_VPD_GLOBAL="metrics-listen = 127.0.0.1:$PORT"
devices() {
	printf '[device g11-d0]\nguest = 11\nid = 0\nplugin = mem\nsize = 16M\n\n'
	printf '[device g11-d1]\nguest = guest11\nid = 1\nplugin = mem\nsize = 8M\nqueues = 2\n\n'
	printf '[device later]\nguest = 12\nid = 0\nplugin = mem\nsize = 4M\n\n'
}
sh_start_vproxyd < <(devices)
grep -q "metrics on http://127.0.0.1:$PORT/metrics" "$SH_DIR/vproxyd.log" || fail "no metrics line in the log"

scrape() {
	curl -sS --max-time 10 -o "$1" -w '%{http_code} %{content_type}' "$URL"
}

# metric FILE NAME LABEL-MATCH...: the value of the one series of NAME whose
# labels contain every LABEL-MATCH (k="v").
metric() {
	python3 - "$@" <<'EOF'
import re, sys
path, name, *want = sys.argv[1:]
rx = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')
hits = []
for line in open(path):
    m = rx.match(line.rstrip("\n"))
    if not m or m.group(1) != name:
        continue
    labels = m.group(3) or ""
    if all(w in labels for w in want):
        hits.append(m.group(4))
if len(hits) != 1:
    sys.exit("%s %s: %d series" % (name, want, len(hits)))
print(hits[0])
EOF
}

# Before any guest: valid text, devices declared, none connected.
out=$(scrape "$SH_DIR/m0.txt")
[[ $out == "200 text/plain; version=0.0.4; charset=utf-8" ]] || fail "scrape: $out"
python3 - "$SH_DIR/m0.txt" <<'EOF' || fail "not valid exposition text: $(head -c 2000 "$SH_DIR/m0.txt")"
import re, sys
sample = re.compile(r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\\n]|\\.)*",?)*\})? '
                    r'(-?[0-9.]+(e[-+]?[0-9]+)?|\+Inf|NaN)$')
meta = re.compile(r'^# (HELP|TYPE) [a-zA-Z_:][a-zA-Z0-9_:]* .+$')
for n, line in enumerate(open(sys.argv[1]), 1):
    line = line.rstrip("\n")
    if not (sample.match(line) or meta.match(line)):
        sys.exit("line %d: %r" % (n, line))
EOF
[[ $(metric "$SH_DIR/m0.txt" vproxy_devices) == 3 ]] || fail "vproxy_devices"
[[ $(metric "$SH_DIR/m0.txt" vproxy_devices_connected) == 0 ]] || fail "vproxy_devices_connected"
[[ $(metric "$SH_DIR/m0.txt" vproxy_device_requests_total 'label="g11-d0"' 'op="read"') == 0 ]] ||
	fail "reads before any guest"
metric "$SH_DIR/m0.txt" process_open_fds >/dev/null || fail "no process_open_fds"
metric "$SH_DIR/m0.txt" process_resident_memory_bytes >/dev/null || fail "no RSS"
metric "$SH_DIR/m0.txt" process_cpu_seconds_total >/dev/null || fail "no CPU"

sh_create_dom 11 guest11
sh_guest_start 11 --devices 0,1 --seconds 3 --workload mixed --queues 2 --iodepth 4
sh_wait_xs /local/domain/0/backend/vproxy/11/0/state 4 20
sleep 1
scrape "$SH_DIR/m1.txt" >/dev/null
sleep 0.5
scrape "$SH_DIR/m2.txt" >/dev/null
r1=$(metric "$SH_DIR/m1.txt" vproxy_device_requests_total 'label="g11-d0"' 'op="read"')
r2=$(metric "$SH_DIR/m2.txt" vproxy_device_requests_total 'label="g11-d0"' 'op="read"')
((r1 > 0 && r2 > r1)) || fail "reads did not move while the guest ran: $r1 then $r2"
[[ $(metric "$SH_DIR/m1.txt" vproxy_device_connected 'label="g11-d1"' 'domid="11"' 'guest="guest11"' 'plugin="mem"' 'device="1"') == 1 ]] ||
	fail "g11-d1 not connected with its labels"
[[ $(metric "$SH_DIR/m1.txt" vproxy_guests) == 1 ]] || fail "vproxy_guests"
# Configured by domid, labelled with the domain's name.
[[ $(metric "$SH_DIR/m1.txt" vproxy_device_connected 'label="g11-d0"' 'guest="guest11"') == 1 ]] ||
	fail "g11-d0 not labelled with its domain's name"

st=0
sh_guest_wait 11 60 || st=$?
((st == 0)) || fail "guest 11 exited with $st"
scrape "$SH_DIR/m3.txt" >/dev/null
for id in 0 1; do
	line=$(grep -E "^guest 11 dev $id: .* reads " "$SH_DIR/guest-11.log" | head -1)
	[[ -n $line ]] || fail "no result line for dev $id"
	total=0
	for kind in read write flush discard write_zeroes; do
		case $kind in
		flush) word=flushes ;;
		write_zeroes) word=zeroes ;;
		*) word=${kind}s ;;
		esac
		want=$(sed -E "s/.* $word ([0-9]+) .*/\\1/" <<<"$line")
		got=$(metric "$SH_DIR/m3.txt" vproxy_device_requests_total "label=\"g11-d$id\"" "op=\"$kind\"")
		[[ $want == "$got" ]] || fail "g11-d$id: the guest did $want ${kind}s, metrics say $got"
		total=$((total + got))
	done
	reads=$(metric "$SH_DIR/m3.txt" vproxy_device_requests_total "label=\"g11-d$id\"" 'op="read"')
	rbytes=$(metric "$SH_DIR/m3.txt" vproxy_device_bytes_total "label=\"g11-d$id\"" 'op="read"')
	((rbytes == reads * 4096)) || fail "g11-d$id: $rbytes bytes for $reads reads of 4 KiB"
	other=$(metric "$SH_DIR/m3.txt" vproxy_device_requests_total "label=\"g11-d$id\"" 'op="other"')
	count=$(metric "$SH_DIR/m3.txt" vproxy_device_latency_seconds_count "label=\"g11-d$id\"")
	inf=$(metric "$SH_DIR/m3.txt" vproxy_device_latency_seconds_bucket "label=\"g11-d$id\"" 'le="+Inf"')
	((count == total + other && inf == count)) ||
		fail "g11-d$id: latency count $count, +Inf $inf, requests $total + $other"
	echo "g11-d$id: $line"
done
# Buckets are cumulative.
python3 - "$SH_DIR/m3.txt" <<'EOF' || fail "latency buckets not cumulative"
import re, sys
vals = [int(m.group(1)) for m in (re.search(r'label="g11-d0".*le="[^"]+"\} (\d+)$', l)
        for l in open(sys.argv[1]) if l.startswith("vproxy_device_latency_seconds_bucket")) if m]
assert len(vals) == 20 and vals == sorted(vals) and vals[-1] > 0, vals
EOF

# Only GET or HEAD of /metrics.
[[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 10 "http://127.0.0.1:$PORT/") == 404 ]] || fail "/ not 404"
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 -X POST "$URL")
[[ $code == 405 || $code == 501 ]] || fail "POST got $code"
[[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 10 -I "$URL") == 200 ]] || fail "HEAD"

# A port in use: a second vproxyd says so and stops.
cfg2=$SH_DIR/second.ini
sed "s|^run-dir = .*|run-dir = $SH_DIR/run2|" "$SH_DIR/vproxyd.ini" >"$cfg2"
mkdir -p "$SH_DIR/run2"
st=0
timeout 20 "$VPROXY_BUILD_DIR/core/vproxyd" --foreground --config "$cfg2" >"$SH_DIR/second.log" 2>&1 || st=$?
((st != 0)) || fail "a second vproxyd started on a port in use"
grep -q "metrics-listen 127.0.0.1:$PORT: cannot listen" "$SH_DIR/second.log" ||
	fail "second vproxyd: $(cat "$SH_DIR/second.log")"

sh_destroy_dom 11
sh_finish_vproxyd
echo "PASS: metrics"
