#!/bin/bash
# SPDX-License-Identifier: MIT
# Smoke run of vproxy-bench (ctest int.bench_smoke): a few seconds of small
# runs that exercise every part -- guests with several queues and verify,
# JSON and CSV output, the qsd peer and the fio baseline, a sweep with a
# plot -- and checks that a failing and an interrupted run leave no
# process or directory behind.  Needs VPROXY_BUILD_DIR.
set -euo pipefail

die() {
	printf 'FAIL: %s\n' "$*" >&2
	exit 1
}

[[ -n ${VPROXY_BUILD_DIR:-} ]] || die "VPROXY_BUILD_DIR is not set"
src=$(cd -- "$(dirname -- "$0")/.." && pwd)
bench=$VPROXY_BUILD_DIR/bench/vproxy-bench
[[ -x $bench ]] || die "no $bench"
if ! reason=$(bash "$src/contrib/sim/xenstored-sim.sh" find 2>&1 >/dev/null); then
	[[ ${VPROXY_REQUIRE_XENSTORED:-0} == 1 ]] && die "xenstored is required: $reason"
	echo "SKIP: $reason"
	exit 77
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/bench-smoke.XXXXXX")
bench_pid=
cleanup() {
	local st=$?
	if [[ -n $bench_pid ]] && kill -0 "$bench_pid" 2>/dev/null; then
		kill -TERM "$bench_pid" 2>/dev/null || true
		wait "$bench_pid" 2>/dev/null || true
	fi
	if ((st != 0)); then
		for f in "$tmp"/*.err; do
			[[ -f $f ]] && { echo "--- $f"; tail -n 30 "$f"; }
		done
	fi
	rm -rf -- "$tmp"
	exit "$st"
}
trap cleanup EXIT
export TMPDIR=$tmp

# Processes whose command line names the scratch directory: anything the
# bench started (xenstored, vproxyd, guests, qsd) that outlived it.
leftovers() {
	local p cmd
	for p in /proc/[0-9]*; do
		[[ ${p#/proc/} == "$$" ]] && continue
		cmd=$({ tr '\0' ' ' <"$p/cmdline"; } 2>/dev/null) || continue
		[[ $cmd == *"$tmp/vproxy-bench."* ]] && printf '%s: %s\n' "${p#/proc/}" "$cmd"
	done
	ls -d "$tmp"/vproxy-bench.* 2>/dev/null || true
}

check_clean() {
	local left
	left=$(leftovers)
	[[ -z $left ]] || die "$1 left behind: $left"
}

# A JSON number after "key": in file (first match).
json_num() {
	grep -o "\"$2\": [0-9.e+-]*" "$1" | head -n 1 | awk '{print $2}'
}

# The notification costs of guest targets in a JSON file (issue 13):
# kicks, interrupts and server wake-ups per I/O are numbers >= 0 (kicks
# and interrupts at most 2: one of each per I/O is the worst case); server
# syscalls per I/O are null (perf cannot count them here) or >= 0.
# Arguments: file, then the jobs to check.
check_notify() {
	local file=$1 key v
	shift
	for key in kicks_per_io irqs_per_io server_wakeups_per_io; do
		v=$(json_num "$file" "$key")
		awk -v v="$v" 'BEGIN { exit !(v != "" && v + 0 >= 0) }' ||
			die "$file: $key is not a number >= 0 (${v:-null or missing})"
	done
	grep -Eq '"server_syscalls_per_io": (null|[0-9][0-9.e+-]*)' "$file" ||
		die "$file: no server_syscalls_per_io"
	command -v python3 >/dev/null || return 0
	python3 - "$file" "$@" <<'EOF' || die "$file: notification counters"
import json, sys

path, jobs = sys.argv[1], sys.argv[2:]
found = {j["jobname"]: j for run in json.load(open(path))["runs"] for j in run["jobs"]}
def num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0
for name in jobs:
    j = found.get(name)
    if j is None:
        sys.exit(f"no {name} job")
    for k in ("kicks_per_io", "irqs_per_io", "server_wakeups_per_io"):
        if not num(j.get(k)):
            sys.exit(f"{name}: {k} = {j.get(k, 'missing')!r}")
    for k in ("kicks_per_io", "irqs_per_io"):
        if j[k] > 2:
            sys.exit(f"{name}: {k} = {j[k]} is not plausible")
    v = j.get("server_syscalls_per_io", "missing")
    if v is not None and not num(v):
        sys.exit(f"{name}: server_syscalls_per_io = {v!r}")
for name, j in found.items():
    if name in ("fio", "memcpy") and j.get("ok") and j.get("kicks_per_io", 0) is not None:
        sys.exit(f"{name}: kicks_per_io should be null")
EOF
}

common=(--runtime 0.6 --ramp 0.2 --size 8M --timeout 20 --progress off)

echo "== two guests x two queues, randrw, verify, JSON and CSV"
"$bench" "${common[@]}" --guests 2 --queues 2 --iodepth 4 --rw randrw --verify --quiet \
	--json "$tmp/run1.json" --csv "$tmp/run1.csv" >"$tmp/run1.out" 2>"$tmp/run1.err" ||
	die "verified run failed (exit $?)"
grep -q '"jobname": "vproxy"' "$tmp/run1.json" || die "no vproxy job in JSON"
grep -q '"ok": true' "$tmp/run1.json" || die "vproxy job not ok"
[[ $(json_num "$tmp/run1.json" mismatches) == 0 ]] || die "mismatches reported"
verified=$(json_num "$tmp/run1.json" verified)
((verified > 0)) || die "nothing was verified ($verified)"
iops=$(json_num "$tmp/run1.json" iops)
awk -v v="$iops" 'BEGIN { exit !(v > 0) }' || die "no IOPS in JSON ($iops)"
if command -v python3 >/dev/null; then
	python3 -m json.tool "$tmp/run1.json" >/dev/null || die "JSON does not parse"
fi
# header + total + one row per guest
[[ $(grep -c '^,0,vproxy,' "$tmp/run1.csv") == 3 ]] || die "CSV rows: $(cat "$tmp/run1.csv")"
grep -q '^,0,vproxy,1,' "$tmp/run1.csv" || die "no CSV row for guest 1"
check_notify "$tmp/run1.json" vproxy
head -n 1 "$tmp/run1.csv" | grep -q ',kicks_per_io,irqs_per_io,server_wakeups_per_io,server_syscalls_per_io$' ||
	die "no notification columns in the CSV header"
check_clean "a good run"

if command -v qemu-storage-daemon >/dev/null && command -v fio >/dev/null; then
	echo "== peer qsd and baseline fio, same guest code"
	"$bench" "${common[@]}" --iodepth 8 --peer qsd --baseline fio --json "$tmp/run2.json" \
		>"$tmp/run2.out" 2>"$tmp/run2.err" || die "peer/baseline run failed (exit $?)"
	for job in vproxy qsd fio memcpy; do
		grep -q "\"jobname\": \"$job\"" "$tmp/run2.json" || die "no $job job"
	done
	ratio=$(json_num "$tmp/run2.json" "vproxy/qsd iops")
	awk -v v="$ratio" 'BEGIN { exit !(v > 0) }' || die "no vproxy/qsd ratio ($ratio)"
	grep -q 'ratios: vproxy/qsd IOPS' "$tmp/run2.out" || die "no ratio line in the table"
	check_notify "$tmp/run2.json" vproxy qsd
	for job in vproxy qsd; do
		grep -q "^$job per I/O: kicks " "$tmp/run2.out" || die "no notification line for $job"
	done
	check_clean "a peer run"
else
	echo "skipping the peer run: qemu-storage-daemon or fio missing"
fi

if [[ -f $VPROXY_BUILD_DIR/plugins/raw.so ]]; then
	echo "== raw plugin: two guests, each on its own copy of the file, verified"
	"$bench" "${common[@]}" --plugin raw --guests 2 --iodepth 4 --rw randrw --verify \
		--json "$tmp/raw.json" >"$tmp/raw.out" 2>"$tmp/raw.err" || die "raw run failed"
	[[ $(json_num "$tmp/raw.json" mismatches) == 0 ]] || die "raw: mismatches reported"
	verified=$(json_num "$tmp/raw.json" verified)
	((verified > 0)) || die "raw: nothing was verified"
	check_clean "a raw run"
fi

if command -v gnuplot >/dev/null; then
	echo "== sweep iodepth with a plot"
	"$bench" "${common[@]}" --runtime 0.3 --sweep iodepth=1,4 --plot "$tmp/sweep.png" \
		--csv "$tmp/sweep.csv" >"$tmp/sweep.out" 2>"$tmp/sweep.err" || die "sweep failed"
	[[ $(head -c 4 "$tmp/sweep.png" | od -An -c | tr -d ' ') == '211PNG' ]] ||
		die "no PNG written"
	grep -q '^iodepth,4,vproxy,total,' "$tmp/sweep.csv" || die "no sweep row for iodepth 4"
	check_clean "a sweep"
fi

echo "== idle guests: attached, no I/O, the server's CPU reported"
"$bench" "${common[@]}" --guests 2 --rw idle --json "$tmp/idle.json" >"$tmp/idle.out" \
	2>"$tmp/idle.err" || die "idle run failed (exit $?)"
grep -q '"ok": true' "$tmp/idle.json" || die "idle: vproxy job not ok"
[[ $(json_num "$tmp/idle.json" iops) == 0.00 ]] || die "idle: I/O was done"
grep -Eq '^vproxy: 2 guest\(s\) attached in .*server CPU [0-9.]+ s \([0-9.]+% of a CPU\)' \
	"$tmp/idle.out" || die "idle: no server CPU line: $(cat "$tmp/idle.out")"
st=0
"$bench" "${common[@]}" --rw idle --baseline fio >/dev/null 2>"$tmp/idle-fio.err" || st=$?
((st == 2)) && grep -q "no fio baseline" "$tmp/idle-fio.err" ||
	die "idle with fio: not refused ($st)"
check_clean "an idle run"

echo "== a server that cannot start: error, nothing left running"
st=0
"$bench" "${common[@]}" --plugin-param no-such-key=1 >"$tmp/bad.out" 2>"$tmp/bad.err" || st=$?
((st != 0)) || die "a bad config was accepted"
grep -q "vproxyd exited during start-up" "$tmp/bad.err" || die "no reason given: $(cat "$tmp/bad.err")"
check_clean "a failed run"

echo "== interrupted mid-run: exit 130, nothing left running"
"$bench" "${common[@]}" --runtime 30 --guests 2 >"$tmp/int.out" 2>"$tmp/int.err" &
bench_pid=$!
# The control file exists once guests are starting; then let them run.
for _ in $(seq 150); do
	compgen -G "$tmp/vproxy-bench.*/ctl" >/dev/null && break
	sleep 0.1
done
sleep 1
kill -INT "$bench_pid"
st=0
wait "$bench_pid" || st=$?
bench_pid=
((st == 130)) || die "interrupted bench exited with $st"
check_clean "an interrupted run"

echo "PASS: bench smoke"
