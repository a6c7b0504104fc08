# SPDX-License-Identifier: MIT
# shellcheck shell=bash source-path=SCRIPTDIR
# A simulated Xen host for integration tests and the demo: a private
# xenstored (xenstored.sh), one vproxyd, and simulated guests (vproxy-guest
# processes) whose domains vproxy-simctl creates and destroys. Everything
# started here is stopped at exit by PID, pass or fail.
#
#   source tests/lib/simhost.sh      # needs VPROXY_BUILD_DIR
#   sh_start_host
#   sh_start_vproxyd <<'EOF'          # [device ...] sections; [vproxyd] is added
#   [device a]
#   guest = 5
#   id = 0
#   plugin = mem
#   size = 16M
#   EOF
#   sh_create_dom 5 guest5
#   sh_guest_start 5 --devices 0 --seconds 2 --workload mixed
#   sh_guest_wait 5 30                # the guest's exit status
#
# Files: $SH_DIR/vproxyd.ini, vproxyd.log, guest-<domid>.log, run/.

# shellcheck source=xenstored.sh
source "$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)/xenstored.sh"

SH_DIR=
VPD_PID=
declare -A GUEST_PIDS=()

sh_die() {
	printf '%s: %s\n' "${0##*/}" "$*" >&2
	exit 1
}

# fail MESSAGE: the test failed (cleanup runs at exit).
fail() {
	echo "FAIL: $*"
	exit 1
}

# sh_start_host: xenstored plus a work directory; SKIP (77) without xenstored.
sh_start_host() {
	[[ -n ${VPROXY_BUILD_DIR:-} ]] || sh_die "VPROXY_BUILD_DIR is not set"
	if ! xs_available; then
		# contrib/test.sh installed xenstored: missing there is a failure.
		if [[ ${VPROXY_REQUIRE_XENSTORED:-0} == 1 ]]; then
			sh_die "xenstored is required: $(xs_why_unavailable)"
		fi
		printf 'SKIP: %s\n' "$(xs_why_unavailable)"
		exit 77
	fi
	xs_start
	SH_DIR=$(mktemp -d "${TMPDIR:-/tmp}/vproxy-sim.XXXXXX")
	mkdir -p "$SH_DIR/run"
	cleanup_push sh_stop_host
}

# _sh_wait_pid PID SECONDS: wait for PID to exit; its status, or 124 on
# timeout (the process is left running).
_sh_wait_pid() {
	local pid=$1 deadline=$((SECONDS + $2)) st=0
	while kill -0 "$pid" 2>/dev/null; do
		# A zombie child still answers kill -0; `wait` below reaps it.
		if [[ $(ps -o stat= -p "$pid" 2>/dev/null) == Z* ]]; then
			break
		fi
		((SECONDS < deadline)) || return 124
		sleep 0.1
	done
	wait "$pid" 2>/dev/null || st=$?
	return "$st"
}

# _sh_stop_pid PID NAME: TERM, then KILL after 10 s; prints nothing.
_sh_stop_pid() {
	local pid=$1 st=0
	kill -TERM "$pid" 2>/dev/null || true
	_sh_wait_pid "$pid" 10 || st=$?
	if ((st == 124)); then
		printf 'simhost: %s (pid %s) ignored SIGTERM; killing\n' "$2" "$pid" >&2
		kill -KILL "$pid" 2>/dev/null || true
		_sh_wait_pid "$pid" 5 || true
	fi
	return "$st"
}

# sh_start_vproxyd [EXTRA-ARGS...]: write the config from stdin (device
# sections) and start vproxyd in the foreground of a background job.
# VPROXY_VPD_GLOBAL: more lines for the [vproxyd] section.
sh_start_vproxyd() {
	local cfg=$SH_DIR/vproxyd.ini deadline
	{
		printf '[vproxyd]\nhypervisor = sim\nrun-dir = %s\nplugin-dir = %s\nlog-level = %s\npoll-us = %s\n%s\n\n' \
			"$SH_DIR/run" "$VPROXY_BUILD_DIR/plugins" "${VPROXY_LOG_LEVEL:-info}" \
			"${VPROXY_POLL_US:-0}" "${VPROXY_VPD_GLOBAL:-}"
		cat
	} >"$cfg"
	# VPROXY_VPD_CPUS: run it on these CPUs only (taskset execs it, so
	# VPD_PID is vproxyd's own).
	${VPROXY_VPD_CPUS:+taskset -c "$VPROXY_VPD_CPUS"} \
		"$VPROXY_BUILD_DIR/core/vproxyd" --foreground --config "$cfg" "$@" \
		>"$SH_DIR/vproxyd.log" 2>&1 &
	VPD_PID=$!
	deadline=$((SECONDS + 15))
	until grep -q "serving" "$SH_DIR/vproxyd.log" 2>/dev/null; do
		if ! kill -0 "$VPD_PID" 2>/dev/null; then
			cat "$SH_DIR/vproxyd.log" >&2
			sh_die "vproxyd exited during start-up"
		fi
		((SECONDS < deadline)) || sh_die "vproxyd did not start within 15 s"
		sleep 0.05
	done
}

# sh_mem_devices SIZE DOMID...: [device] sections giving each guest two mem
# disks (ids 0 and 1) of SIZE, for sh_start_vproxyd's standard input.
sh_mem_devices() {
	local size=$1 dom id
	shift
	for dom in "$@"; do
		for id in 0 1; do
			printf '[device g%s-d%s]\nguest = %s\nid = %s\nplugin = mem\nsize = %s\n\n' \
				"$dom" "$id" "$dom" "$id" "$size"
		done
	done
}

# sh_stop_vproxyd: SIGTERM and wait; returns vproxyd's exit status.
sh_stop_vproxyd() {
	local st=0
	[[ -n $VPD_PID ]] || return 0
	_sh_stop_pid "$VPD_PID" vproxyd || st=$?
	VPD_PID=
	return "$st"
}

# sh_finish_vproxyd: vproxyd still alive, stopped with SIGTERM, exit 0,
# and no error or sanitizer report in its log; else the test fails.
sh_finish_vproxyd() {
	local st=0
	sh_vproxyd_alive || sh_die "vproxyd died"
	sh_stop_vproxyd || st=$?
	((st == 0)) || sh_die "vproxyd exited with $st"
	if grep -E "ERROR|AddressSanitizer|runtime error" "$SH_DIR/vproxyd.log"; then
		sh_die "vproxyd logged errors"
	fi
}

# sh_vproxyd_cpu_ticks: user+system clock ticks vproxyd has used so far.
sh_vproxyd_cpu_ticks() {
	# Fields 14 and 15 of /proc/PID/stat, counted after the ")" that ends
	# the command name.
	awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$VPD_PID/stat"
}

# sh_vproxyd_alive: true while vproxyd runs.
sh_vproxyd_alive() {
	[[ -n $VPD_PID ]] && kill -0 "$VPD_PID" 2>/dev/null &&
		[[ $(ps -o stat= -p "$VPD_PID" 2>/dev/null) != Z* ]]
}

sh_create_dom() {
	"$VPROXY_SIMCTL" create "$1" "$2" >/dev/null
}

sh_destroy_dom() {
	"$VPROXY_SIMCTL" destroy "$1" >/dev/null
}

# sh_guest_start DOMID ARGS...: start vproxy-guest for DOMID in the background.
sh_guest_start() {
	local dom=$1
	shift
	"$VPROXY_BUILD_DIR/proxy-stub/vproxy-guest" --domid "$dom" \
		--run-dir "$SH_DIR/run" "$@" >"$SH_DIR/guest-$dom.log" 2>&1 &
	GUEST_PIDS[$dom]=$!
}

# sh_guest_wait DOMID SECONDS: the guest's exit status (124: timed out).
sh_guest_wait() {
	local dom=$1 st=0
	_sh_wait_pid "${GUEST_PIDS[$dom]}" "$2" || st=$?
	((st == 124)) || unset "GUEST_PIDS[$dom]"
	return "$st"
}

# sh_guest_kill DOMID: SIGKILL the guest, as a crash.
sh_guest_kill() {
	local dom=$1
	kill -KILL "${GUEST_PIDS[$dom]}" 2>/dev/null || true
	_sh_wait_pid "${GUEST_PIDS[$dom]}" 5 || true
	unset "GUEST_PIDS[$dom]"
}

# sh_xs_read PATH: the value, or nothing (status 1) when absent.
sh_xs_read() {
	xenstore-read "$1" 2>/dev/null
}

# sh_wait_xs PATH VALUE SECONDS: wait until PATH reads VALUE ("" = absent).
sh_wait_xs() {
	local path=$1 want=$2 deadline=$((SECONDS + $3)) got
	while :; do
		got=$(sh_xs_read "$path") || got=
		[[ $got == "$want" ]] && return 0
		((SECONDS < deadline)) || {
			printf 'timeout: %s is "%s", want "%s"\n' "$path" "$got" "$want" >&2
			return 1
		}
		sleep 0.05
	done
}

# sh_wait_log FILE REGEX SECONDS: wait until FILE has a line matching REGEX.
sh_wait_log() {
	local deadline=$((SECONDS + $3))
	until grep -Eq -- "$2" "$1" 2>/dev/null; do
		((SECONDS < deadline)) || {
			printf 'timeout: no /%s/ in %s\n' "$2" "$1" >&2
			return 1
		}
		sleep 0.05
	done
}

# sh_stop_host: stop every guest and vproxyd we started; on failure show logs.
sh_stop_host() {
	local dom f
	for dom in "${!GUEST_PIDS[@]}"; do
		_sh_stop_pid "${GUEST_PIDS[$dom]}" "guest $dom" || true
	done
	GUEST_PIDS=()
	sh_stop_vproxyd || true
	if ((CLEANUP_STATUS != 0 && CLEANUP_STATUS != 77)) && [[ -d $SH_DIR ]]; then
		for f in "$SH_DIR"/vproxyd.log "$SH_DIR"/guest-*.log; do
			[[ -f $f ]] || continue
			printf -- '--- %s ---\n' "${f##*/}" >&2
			tail -n 60 -- "$f" >&2
		done
	fi
	if [[ ${VPROXY_KEEP_TMP:-0} == 1 ]]; then
		printf 'simhost: kept %s\n' "$SH_DIR" >&2
	else
		rm -rf -- "$SH_DIR"
	fi
}
