#!/bin/bash
# SPDX-License-Identifier: MIT
# Starts and stops Debian's real xenstored without Xen, on a private socket,
# with libvproxy-xsshim.so preloaded to fake its hypervisor calls.
#
#   xenstored-sim.sh start <dir>   start; all its files live in <dir>
#   xenstored-sim.sh stop <dir>    stop the xenstored started in <dir>
#   xenstored-sim.sh find          print the xenstored binary, or exit 1
#
# After start, clients use:
#   XENSTORED_PATH=<dir>/xenstored.sock   libxenstore, xenstore-* tools
#   VPROXY_XSSHIM_DIR=<dir>               vproxy-simctl kill (dead domains)
# start prints these as export lines, so `eval "$(... start DIR)"` works.
#
# Files in <dir>: xenstored.sock, xenstored.pid (written by this script:
# with -N xenstored does not fork, so $! is the daemon, and without -F it
# writes no pid file of its own), trace.log (xenstored -T), xenstored.log
# (its stdout and stderr), dom-exc and dead/ (the shim's, see xsshim.c).
#
# Environment:
#   VPROXY_XENSTORED      the xenstored binary (default: found below)
#   VPROXY_XEN_UTILS_DIR  where contrib/install-deps.sh unpacked xen-utils
#                         (default /var/cache/vproxy/xen-utils)
#   VPROXY_XSSHIM         the shim (default: libvproxy-xsshim.so beside this
#                         script, i.e. the copy in <build>/contrib/sim)
set -euo pipefail

readonly start_timeout_s=10
readonly stop_timeout_s=5
script_dir=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
readonly script_dir

die() {
	printf 'xenstored-sim: %s\n' "$*" >&2
	exit 1
}

usage() {
	printf 'usage: %s start|stop <dir>\n       %s find\n' "$0" "$0" >&2
	exit 2
}

find_xenstored() {
	if [[ -n ${VPROXY_XENSTORED:-} ]]; then
		[[ -x $VPROXY_XENSTORED ]] || die "VPROXY_XENSTORED=$VPROXY_XENSTORED is not executable"
		printf '%s\n' "$VPROXY_XENSTORED"
		return 0
	fi
	local utils_dir=${VPROXY_XEN_UTILS_DIR:-/var/cache/vproxy/xen-utils}
	local bin
	for bin in "$utils_dir"/usr/lib/xen-*/bin/xenstored; do
		if [[ -x $bin ]]; then
			printf '%s\n' "$bin"
			return 0
		fi
	done
	die "no xenstored under $utils_dir (run contrib/install-deps.sh or set VPROXY_XEN_UTILS_DIR)"
}

find_shim() {
	local shim=${VPROXY_XSSHIM:-$script_dir/libvproxy-xsshim.so}
	[[ -f $shim ]] || die "no shim at $shim (build target vproxy_xsshim, or set VPROXY_XSSHIM)"
	printf '%s\n' "$shim"
}

abs_dir() {
	[[ -d $1 ]] || die "no directory $1"
	(cd -- "$1" && pwd)
}

# True while pid runs (a zombie counts as gone: nobody may reap it here).
is_running() {
	local stat
	stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
	stat=${stat##*) }
	[[ ${stat%% *} != Z ]]
}

# True if pid is the xenstored started for this dir (guards against reuse).
is_our_xenstored() {
	local pid=$1 dir=$2 args
	args=$(tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
	[[ ${args%%$'\n'*} == *xenstored ]] && grep -Fxq -- "$dir/trace.log" <<<"$args"
}

read_pid() {
	local pidfile=$1/xenstored.pid pid
	[[ -f $pidfile ]] || return 1
	pid=$(<"$pidfile")
	[[ $pid =~ ^[0-9]+$ ]] || die "bad pid file $pidfile"
	printf '%s\n' "$pid"
}

wait_gone() {
	local pid=$1 deadline=$((SECONDS + $2))
	while is_running "$pid"; do
		((SECONDS < deadline)) || return 1
		sleep 0.05
	done
}

cmd_stop() {
	local dir pid
	dir=$(abs_dir "$1")
	if pid=$(read_pid "$dir") && is_running "$pid" && is_our_xenstored "$pid" "$dir"; then
		kill -TERM "$pid" 2>/dev/null || true
		if ! wait_gone "$pid" "$stop_timeout_s"; then
			printf 'xenstored-sim: pid %s ignored TERM, killing\n' "$pid" >&2
			kill -KILL "$pid" 2>/dev/null || true
			wait_gone "$pid" "$stop_timeout_s" || die "pid $pid survived KILL"
		fi
	fi
	rm -f -- "$dir/xenstored.pid" "$dir/xenstored.sock"
}

cmd_start() {
	local dir xenstored shim pid deadline
	dir=$(abs_dir "$1")
	xenstored=$(find_xenstored)
	shim=$(find_shim)
	if ! command -v xenstore-list >/dev/null || ! command -v xenstore-write >/dev/null; then
		die "xenstore-list/xenstore-write not found (package xenstore-utils)"
	fi

	if pid=$(read_pid "$dir") && is_running "$pid" && is_our_xenstored "$pid" "$dir"; then
		die "xenstored already running in $dir (pid $pid)"
	fi

	export XENSTORED_PATH=$dir/xenstored.sock
	# Keeps the daemon's other run-time files out of /var/run/xenstored.
	export XENSTORED_RUNDIR=$dir
	export VPROXY_XSSHIM_DIR=$dir
	rm -f -- "$XENSTORED_PATH"

	# Not -D: 4.17 then never sets up its database and dies on the first
	# write. Redirected so no caller's pipe stays open behind the daemon.
	LD_PRELOAD=$shim "$xenstored" -N -T "$dir/trace.log" \
		</dev/null >"$dir/xenstored.log" 2>&1 &
	pid=$!
	printf '%s\n' "$pid" >"$dir/xenstored.pid"

	deadline=$((SECONDS + start_timeout_s))
	until timeout 2 xenstore-list / >/dev/null 2>&1; do
		if ! is_running "$pid"; then
			cat -- "$dir/xenstored.log" >&2
			rm -f -- "$dir/xenstored.pid"
			die "xenstored exited during start-up (log above, trace in $dir/trace.log)"
		fi
		if ((SECONDS >= deadline)); then
			cmd_stop "$dir"
			die "xenstored did not answer within ${start_timeout_s}s"
		fi
		sleep 0.05
	done

	if ! timeout 5 xenstore-write /local/domain/0/domid 0 /local/domain/0/name Domain-0; then
		cmd_stop "$dir"
		die "cannot write dom0's nodes"
	fi

	printf 'export XENSTORED_PATH=%q\n' "$XENSTORED_PATH"
	printf 'export VPROXY_XSSHIM_DIR=%q\n' "$dir"
	printf '# xenstored pid %s\n' "$pid"
}

case ${1:-} in
start)
	[[ $# -eq 2 ]] || usage
	cmd_start "$2"
	;;
stop)
	[[ $# -eq 2 ]] || usage
	cmd_stop "$2"
	;;
find)
	[[ $# -eq 1 ]] || usage
	find_xenstored
	;;
*)
	usage
	;;
esac
