#!/bin/bash
# SPDX-License-Identifier: MIT
# Soak test: one vproxyd (built with ASan/UBSan) serves guests that start,
# run verified I/O, reset their devices, crash, lose their frontend nodes
# and come back, at random, for MINUTES minutes, on every plugin (mem, raw
# with engine=io_uring and engine=threads, sparse; two guests with three
# disks each).  vproxyd's open fds, mappings and RSS are sampled at the
# start (idle), every VPROXY_SOAK_SAMPLE_S seconds and at the end (idle
# again, every guest gone).
#
#   contrib/soak.sh MINUTES
#   SEED=12345 contrib/soak.sh 60        # replay a run's choices
#
# It fails (exit 1) if vproxyd dies or exits unclean, a guest that was left
# to finish did not verify clean, vproxyd's log has an ASan/UBSan/LSan
# report, a sparse image does not pass `vproxy-img check` at the end, or
# vproxyd holds more fds, named mappings, threads or mappings at the end
# than at the idle start, beyond a small slack.  Exit 77: no xenstored here
# (skip).  docs/TESTING.md (Soak) has the details and an hour's numbers.
#
# Every guest slot draws its actions from its own generator seeded from
# SEED, so a seed replays the same actions, workloads and delays for each
# slot; only how the slots interleave depends on timing.
#
# Environment:
#   VPROXY_BUILD_DIR          build tree to use (default build-test in the
#                             source tree); nothing is built unless
#                             VPROXY_SOAK_BUILD=1
#   SEED                      the run's seed (default: random, printed)
#   VPROXY_SOAK_SAMPLE_S      seconds between samples (default 60)
#   VPROXY_SOAK_FD_SLACK      fds vproxyd may hold beyond the start (2)
#   VPROXY_SOAK_THREAD_SLACK  threads beyond the start (default 4: the
#                             plugin host's helper threads for opens and
#                             closes, HELPERS_MAX in core/plugin/plugin_host.c, stay
#                             once started)
#   VPROXY_SOAK_NAMED_SLACK   named mappings (files, memfds of guest RAM,
#                             io_uring rings) beyond the start (default 2)
#   VPROXY_SOAK_MAPS_SLACK    all mappings beyond the start (default 160:
#                             the ASan allocator's regions, one or two
#                             lines per size class used, and the large
#                             chunks its quarantine holds)
#   VPROXY_KEEP_TMP=1         keep the logs and images (kept on failure)
set -euo pipefail

src=$(cd -- "$(dirname -- "$0")/.." && pwd)
usage() {
	printf 'usage: %s MINUTES   (see the comment at the top)\n' "${0##*/}" >&2
	exit 2
}
if (($# != 1)) || ! [[ $1 =~ ^[1-9][0-9]*$ ]]; then
	usage
fi
minutes=$1

export VPROXY_BUILD_DIR=${VPROXY_BUILD_DIR:-$src/build-test}
VPROXY_BUILD_DIR=$(cd -- "$VPROXY_BUILD_DIR" && pwd)
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}
seed=${SEED:-$(((RANDOM << 15 | RANDOM) % 1000000000))}
sample_s=${VPROXY_SOAK_SAMPLE_S:-60}
fd_slack=${VPROXY_SOAK_FD_SLACK:-2}
thread_slack=${VPROXY_SOAK_THREAD_SLACK:-4}
maps_slack=${VPROXY_SOAK_MAPS_SLACK:-160}
named_slack=${VPROXY_SOAK_NAMED_SLACK:-2}

if [[ ${VPROXY_SOAK_BUILD:-0} == 1 ]]; then
	cmake --build "$VPROXY_BUILD_DIR" --target vproxyd vproxy-guest \
		vproxy-simctl vproxy-img vproxy_plugin_mem vproxy_plugin_raw \
		vproxy_plugin_sparse
fi
img_tool=$VPROXY_BUILD_DIR/plugins/sparse/vproxy-img
for f in core/vproxyd proxy-stub/vproxy-guest contrib/sim/vproxy-simctl \
	plugins/sparse/vproxy-img plugins/mem.so plugins/raw.so plugins/sparse.so; do
	[[ -e $VPROXY_BUILD_DIR/$f ]] ||
		{ echo "soak: $VPROXY_BUILD_DIR/$f is missing (build it, or VPROXY_SOAK_BUILD=1)" >&2; exit 1; }
done

# shellcheck source=tests/lib/simhost.sh
source "$src/tests/lib/simhost.sh"
# shellcheck source=tests/lib/plugin_guest.sh
source "$src/tests/lib/plugin_guest.sh"

be_root=/local/domain/0/backend/vproxy
printf 'soak: %s minutes, SEED=%s, build %s\n' "$minutes" "$seed" "$VPROXY_BUILD_DIR"

# --- the host -------------------------------------------------------------

now_ms() {
	local us=${EPOCHREALTIME/./}
	NOW=$((10#$us / 1000))
}

# On failure keep the logs and images (runs before sh_stop_host, which
# would delete them); the summary is printed pass or fail.
soak_on_exit() {
	((CLEANUP_STATUS == 0 || CLEANUP_STATUS == 77)) || export VPROXY_KEEP_TMP=1
	((CLEANUP_STATUS == 77 || SUMMARY_DONE)) || print_summary
}
SUMMARY_DONE=0

sh_start_host
cleanup_push soak_on_exit
data=$SH_DIR/data
mkdir -p "$data"

# Slots: a guest name each, with its disks.  A slot holds at most one
# domain at a time; each incarnation gets a fresh domid.
slot_names=(mem uring threads sparse multi1 multi2)
# shellcheck disable=SC2054 # device id lists
declare -A SLOT_DEVS=(
	[mem]=0 [uring]=0 [threads]=0 [sparse]=0 [multi1]=0,1,2 [multi2]=0,1,2
)
sparse_imgs=()
configure() {
	raw() { truncate -s 32M "$data/$1.raw"; pg_device "$1" "soak-$2" "$3" raw "$data/$1.raw" "${@:4}"; }
	img() { timeout 60 "$img_tool" create "$data/$1.img" 32M >/dev/null; sparse_imgs+=("$data/$1.img")
		pg_device "$1" "soak-$2" "$3" sparse "$data/$1.img" "${@:4}"; }
	printf '[device mem]\nguest = soak-mem\nid = 0\nplugin = mem\nsize = 16M\n\n'
	raw uring uring 0 engine=io_uring
	raw threads threads 0 engine=threads
	img sparse sparse 0
	printf '[device multi1-mem]\nguest = soak-multi1\nid = 0\nplugin = mem\nsize = 8M\nqueues = 2\n\n'
	raw multi1-uring multi1 1 engine=io_uring queues=2
	img multi1-sparse multi1 2
	raw multi2-threads multi2 0 engine=threads queues=2
	img multi2-sparse multi2 1 queues=2
	printf '[device multi2-mem]\nguest = soak-multi2\nid = 2\nplugin = mem\nsize = 8M\n\n'
}
configure >"$data/devices.ini"
# shellcheck disable=SC2119 # no extra arguments
sh_start_vproxyd <"$data/devices.ini"

# --- samples -----------------------------------------------------------------

SAMPLES=()
S_FDS=0 S_MAPS=0 S_NAMED=0 S_RSS=0 S_THREADS=0
# sample LABEL: record and print vproxyd's fds, mappings (all, and those
# with a name: files, guest RAM memfds, io_uring rings), RSS and threads;
# start and end also keep a copy of the maps.
sample() {
	local p=/proc/$VPD_PID fds line
	fds=("$p"/fd/*)
	S_FDS=${#fds[@]}
	cp -- "$p/maps" "$data/maps.now"
	S_MAPS=$(wc -l <"$data/maps.now")
	S_NAMED=$(awk 'NF >= 6' "$data/maps.now" | wc -l)
	[[ $1 == run ]] || cp -- "$data/maps.now" "$data/maps-$1.txt"
	S_RSS=$(awk '/^VmRSS:/ { print $2 }' "$p/status")
	S_THREADS=$(awk '/^Threads:/ { print $2 }' "$p/status")
	printf -v line '%-5s t=%5ss fds %4s maps %4s (named %3s) rss %7s kB threads %s' \
		"$1" $(((NOW - T0) / 1000)) "$S_FDS" "$S_MAPS" "$S_NAMED" "$S_RSS" "$S_THREADS"
	SAMPLES+=("$line")
	printf 'soak: %s\n' "$line"
}

# --- counters and failure ----------------------------------------------------

declare -A N=([domains]=0 [verify]=0 [reset]=0 [kill]=0 [detach]=0 [rerun]=0)
FAILURES=()
print_summary() {
	local s
	printf '\nsoak summary: SEED=%s, %s minutes, %s\n' "$seed" "$minutes" \
		"$( ((${#FAILURES[@]})) && echo FAILED || echo passed)"
	printf '  domains %s, clean runs %s (reset workload %s), reruns on a live domain %s,\n' \
		"${N[domains]}" "${N[verify]}" "${N[reset]}" "${N[rerun]}"
	printf '  crashes (SIGKILL + simctl kill) %s, frontend nodes removed %s\n' \
		"${N[kill]}" "${N[detach]}"
	for s in "${SAMPLES[@]}"; do
		printf '  %s\n' "$s"
	done
	for s in "${FAILURES[@]}"; do
		printf '  FAIL: %s\n' "$s"
	done
	((${#FAILURES[@]} == 0)) ||
		printf '  logs kept in %s\n  replay: SEED=%s %s %s\n' "$SH_DIR" "$seed" "$0" "$minutes"
}

fail() {
	FAILURES+=("$*")
	printf 'soak: FAIL: %s\n' "$*" >&2
	exit 1
}

sanitizer_re='AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|runtime error|ERROR: .*Sanitizer'
check_vproxyd() {
	if grep -Eq -- "$sanitizer_re" "$SH_DIR/vproxyd.log"; then
		grep -E -A30 -- "$sanitizer_re" "$SH_DIR/vproxyd.log" | head -n 60 >&2
		fail "a sanitizer report in vproxyd's log ($1)"
	fi
	sh_vproxyd_alive || fail "vproxyd died ($1; see $SH_DIR/vproxyd.log)"
}

# --- per-slot random numbers -----------------------------------------------

declare -A RNG=()
# rnd SLOT N: R = the slot's next number in 0..N-1 (an LCG; no subshell).
rnd() {
	RNG[$1]=$(((RNG[$1] * 1103515245 + 12345) & 0x7fffffff))
	R=$(((RNG[$1] >> 8) % $2))
}
for ((i = 0; i < ${#slot_names[@]}; i++)); do
	RNG[${slot_names[i]}]=$(((seed * 7919 + i * 104729 + 1) & 0x7fffffff))
done

# --- slots ---------------------------------------------------------------------
# Phase: idle (no domain; NEXT = when to create one), run (a guest that is
# to finish clean), doomed (a guest to crash or lose its frontend nodes
# once its devices are connected, at NEXT), detached (its frontend nodes
# removed: waiting for its backend devices to close; then the guest is
# killed and the domain destroyed), drain (waiting for the backend nodes
# to go).

declare -A PHASE=() DOM=() ACT=() NEXT=() DEADLINE=() ARGS=()
next_dom=100

dev_ids() { # dev_ids SLOT: IDS=(device ids)
	IFS=, read -r -a IDS <<<"${SLOT_DEVS[$1]}"
}

# start_run SLOT: choose what the slot's guest does next and start it.
start_run() {
	local s=$1 d=${DOM[$1]} secs depth wl mode
	local depths=(1 4 16 32) modes=(gfn grant) wls=(verify mixed)
	rnd "$s" 4; depth=${depths[R]}
	rnd "$s" 2; mode=${modes[R]}
	rnd "$s" 1000000; local gseed=$((R + 1))
	rnd "$s" 2; local queues=$((R + 1)) # disks with queues = 2 use both
	rnd "$s" 100
	if ((R < 35)); then
		ACT[$s]=verify
		rnd "$s" 2; wl=${wls[R]}
		rnd "$s" 3; secs=$((R + 1))
	elif ((R < 50)); then
		ACT[$s]=reset wl=reset secs=1
		depth=$((depth < 8 ? 8 : depth))
	elif ((R < 75)); then
		ACT[$s]=kill wl=mixed secs=600
	else
		ACT[$s]=detach wl=mixed secs=600
	fi
	ARGS[$s]="--devices ${SLOT_DEVS[$s]} --workload $wl --seconds $secs --iodepth $depth --queues $queues --addr-mode $mode --seed $gseed"
	# shellcheck disable=SC2086 # ARGS is a list of words
	sh_guest_start "$d" ${ARGS[$s]}
	now_ms
	if [[ ${ACT[$s]} == verify || ${ACT[$s]} == reset ]]; then
		PHASE[$s]=run
		DEADLINE[$s]=$((NOW + (secs + 90) * 1000))
	else
		PHASE[$s]=doomed
		rnd "$s" 2000
		NEXT[$s]=$R # delay after the devices connect, in ms
		DEADLINE[$s]=$((NOW + 90 * 1000))
		CONNECTED[$s]=0
	fi
}
declare -A CONNECTED=()

new_domain() {
	local s=$1 d=$next_dom
	next_dom=$((next_dom >= 32000 ? 100 : next_dom + 1))
	DOM[$s]=$d
	sh_create_dom "$d" "soak-$s"
	N[domains]=$((N[domains] + 1))
	start_run "$s"
}

# xs_state PATH: V = the node's value, "" when absent; fails the soak if
# xenstored does not answer within 30 s.
xs_state() {
	local st=0
	V=$(timeout 30 xenstore-read "$1" 2>/dev/null) || st=$?
	((st != 124)) || fail "xenstored did not answer a read of $1 within 30 s"
	((st == 0)) || V=
}

# all_state SLOT VALUE: true if every device of the slot's domain has
# backend state VALUE ("" = gone).
all_state() {
	local id
	dev_ids "$1"
	for id in "${IDS[@]}"; do
		xs_state "$be_root/${DOM[$1]}/$id/state"
		[[ $V == "$2" ]] || return 1
	done
}

# gone_or_new SLOT: true if every device of the slot's domain is either
# gone from the backend or a new one (state Initialising or InitWait).
gone_or_new() {
	local id
	dev_ids "$1"
	for id in "${IDS[@]}"; do
		xs_state "$be_root/${DOM[$1]}/$id/state"
		[[ $V == "" || $V == 1 || $V == 2 ]] || return 1
	done
}

drain() { # drain SLOT: wait (NEXT) for the backend nodes to go
	now_ms
	PHASE[$1]=drain
	DEADLINE[$1]=$((NOW + 60 * 1000))
}

# finish_run SLOT: the guest exited by itself; it must have verified clean.
finish_run() {
	local s=$1 d=${DOM[$1]} st=0 log
	log=$SH_DIR/guest-$d.log
	sh_guest_wait "$d" 10 || st=$?
	if ((st != 0)) || ! grep -Eq "^guest $d: .*verify OK" "$log"; then
		cat "$log" >&2
		cp -- "$log" "$SH_DIR/failed-guest-$d.log"
		fail "guest $d (soak-$s, ${ARGS[$s]}) exited with $st"
	fi
	if [[ ${ACT[$s]} == reset ]] && ! grep -q "buffers untouched afterwards" "$log"; then
		cat "$log" >&2
		fail "guest $d (soak-$s, ${ARGS[$s]}): no clean reset"
	fi
	N[verify]=$((N[verify] + 1))
	[[ ${ACT[$s]} != reset ]] || N[reset]=$((N[reset] + 1))
	rnd "$s" 2
	if ((R)) && ((!WINDING)); then
		# The same domain attaches again (its devices were reset).
		N[rerun]=$((N[rerun] + 1))
		start_run "$s"
	else
		sh_destroy_dom "$d"
		drain "$s"
	fi
}

# doom SLOT: crash the guest or remove its frontend nodes.
doom() {
	local s=$1 d=${DOM[$1]}
	if [[ ${ACT[$s]} == kill ]]; then
		# 2>/dev/null: bash's "Killed" job notice.
		{ sh_guest_kill "$d"; } 2>/dev/null
		"$VPROXY_SIMCTL" kill "$d" >/dev/null
		N[kill]=$((N[kill] + 1))
		drain "$s"
	else
		timeout 30 xenstore-rm "/local/domain/$d/device/vproxy" ||
			fail "xenstore-rm of dom $d's frontend nodes failed"
		N[detach]=$((N[detach] + 1))
		now_ms
		PHASE[$s]=detached
		DEADLINE[$s]=$((NOW + 60 * 1000))
	fi
}

# step SLOT: advance the slot's state machine.
step() {
	local s=$1 d=${DOM[$1]:-} pid
	now_ms
	case ${PHASE[$s]} in
	idle)
		if ((!WINDING && NOW >= NEXT[$s])); then
			new_domain "$s"
		fi
		;;
	run)
		pid=${GUEST_PIDS[$d]}
		if ! kill -0 "$pid" 2>/dev/null || [[ $(ps -o stat= -p "$pid") == Z* ]]; then
			finish_run "$s"
		elif ((NOW > DEADLINE[$s])); then
			fail "guest $d (soak-$s, ${ARGS[$s]}) still running after its deadline"
		fi
		;;
	doomed)
		if ((CONNECTED[$s] == 0)); then
			pid=${GUEST_PIDS[$d]}
			if ! kill -0 "$pid" 2>/dev/null || [[ $(ps -o stat= -p "$pid") == Z* ]]; then
				cat "$SH_DIR/guest-$d.log" >&2
				fail "guest $d (soak-$s, ${ARGS[$s]}) exited before its devices connected"
			fi
			if all_state "$s" 4; then
				CONNECTED[$s]=1
				NEXT[$s]=$((NOW + NEXT[$s]))
			elif ((NOW > DEADLINE[$s])); then
				fail "guest $d (soak-$s): devices not connected within 90 s"
			fi
		elif ((NOW >= NEXT[$s])); then
			doom "$s"
		fi
		;;
	detached)
		# Each device is gone, or already offered again (state 1 or 2):
		# vproxyd provisions the declared devices of a running guest
		# that has none whenever a domain is introduced.
		if gone_or_new "$s"; then
			{ sh_guest_kill "$d"; } 2>/dev/null
			sh_destroy_dom "$d"
			drain "$s"
		elif ((NOW > DEADLINE[$s])); then
			fail "dom $d (soak-$s): backend devices not closed within 60 s after detach"
		fi
		;;
	drain)
		if all_state "$s" ""; then
			rm -f -- "$SH_DIR/guest-$d.log"
			PHASE[$s]=idle
			DOM[$s]=
			rnd "$s" 3000
			NEXT[$s]=$((NOW + R))
		elif ((NOW > DEADLINE[$s])); then
			fail "dom $d (soak-$s): backend devices not removed within 60 s after ${ACT[$s]}"
		fi
		;;
	esac
}

# --- the run -------------------------------------------------------------------

now_ms
T0=$NOW
sleep 1 # let vproxyd settle before the idle sample
now_ms
sample start
start_fds=$S_FDS start_maps=$S_MAPS start_named=$S_NAMED start_threads=$S_THREADS
end_at=$((T0 + minutes * 60 * 1000))
next_sample=$((NOW + sample_s * 1000))
WINDING=0
for s in "${slot_names[@]}"; do
	PHASE[$s]=idle
	rnd "$s" 2000
	NEXT[$s]=$((NOW + R))
done

while :; do
	for s in "${slot_names[@]}"; do
		step "$s"
	done
	check_vproxyd "t=$(((NOW - T0) / 1000))s"
	now_ms
	if ((NOW >= next_sample)); then
		sample run
		# xenstored -T traces every request (some 10 MB a minute here):
		# keep only the last minute or so.
		if (($(stat -c %s "$XS_DIR/trace.log") > 64 << 20)); then
			: >"$XS_DIR/trace.log"
		fi
		next_sample=$((NOW + sample_s * 1000))
	fi
	if ((!WINDING && NOW >= end_at)); then
		WINDING=1
		wind_deadline=$((NOW + 120 * 1000))
		echo "soak: time is up; letting the guests finish"
	fi
	if ((WINDING)); then
		busy=0
		for s in "${slot_names[@]}"; do
			[[ ${PHASE[$s]} == idle ]] || busy=1
		done
		((busy)) || break
		((NOW < wind_deadline)) || fail "guests still busy 120 s after the end"
	fi
	sleep 0.2
done

# Every guest is gone: vproxyd is idle again.
sleep 2
now_ms
check_vproxyd "end"
sample end
if ((S_FDS > start_fds + fd_slack)); then
	ls -l "/proc/$VPD_PID/fd" >&2
	fail "vproxyd holds $S_FDS fds at the end, $start_fds at the start"
fi
if ((S_THREADS > start_threads + thread_slack)); then
	fail "vproxyd runs $S_THREADS threads at the end, $start_threads at the start"
fi
if ((S_NAMED > start_named + named_slack)); then
	diff <(awk 'NF >= 6' "$data/maps-start.txt") <(awk 'NF >= 6' "$data/maps-end.txt") >&2 || true
	fail "vproxyd has $S_NAMED named mappings at the end, $start_named at the start"
fi
if ((S_MAPS > start_maps + maps_slack)); then
	fail "vproxyd has $S_MAPS mappings at the end, $start_maps at the start"
fi

st=0
sh_stop_vproxyd || st=$?
grep -Eq -- "$sanitizer_re" "$SH_DIR/vproxyd.log" && check_vproxyd "at exit"
((st == 0)) || fail "vproxyd exited with $st on SIGTERM"
for img in "${sparse_imgs[@]}"; do
	timeout 300 "$img_tool" check "$img" >"$data/check.out" 2>&1 ||
		{ cat "$data/check.out" >&2; fail "${img##*/} does not check clean"; }
done
print_summary
SUMMARY_DONE=1
echo "PASS: soak of $minutes minutes, SEED=$seed"
