# SPDX-License-Identifier: MIT
# shellcheck shell=bash source-path=SCRIPTDIR
# A private xenstored for a test: Debian's real daemon on its own socket, with
# the LD_PRELOAD shim faking the hypervisor (contrib/sim/xenstored-sim.sh).
#
#   source tests/lib/xenstored.sh
#   xs_available || { echo "SKIP: $(xs_why_unavailable)"; exit 77; }
#   xs_start         # exports XENSTORED_PATH, VPROXY_XSSHIM_DIR, VPROXY_SIMCTL
#   "$VPROXY_SIMCTL" create 5 guest5
#   ...              # stopped at exit, pass or fail; xs_stop stops it earlier
#
# Needs VPROXY_BUILD_DIR (the CMake build tree) or VPROXY_SIM_DIR (its
# contrib/sim). Honours VPROXY_XEN_UTILS_DIR, VPROXY_XENSTORED and
# VPROXY_XSSHIM like xenstored-sim.sh. VPROXY_KEEP_TMP=1 keeps the directory.
# On a failing exit the tail of xenstored's trace is printed to stderr.

# shellcheck source=cleanup.sh
source "$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)/cleanup.sh"

XS_DIR=

_xs_sim_dir() {
	if [[ -n ${VPROXY_SIM_DIR:-} ]]; then
		printf '%s\n' "$VPROXY_SIM_DIR"
	elif [[ -n ${VPROXY_BUILD_DIR:-} ]]; then
		printf '%s\n' "$VPROXY_BUILD_DIR/contrib/sim"
	else
		printf 'xenstored.sh: set VPROXY_BUILD_DIR or VPROXY_SIM_DIR\n' >&2
		return 1
	fi
}

# The source tree's copy: finding the binary must not depend on a build.
_xs_script_src=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../../contrib/sim" && pwd)/xenstored-sim.sh

# xs_available: true if the xenstored binary is there to run.
xs_available() {
	bash "$_xs_script_src" find >/dev/null 2>&1
}

# xs_why_unavailable: the reason xs_available is false, for a SKIP line.
xs_why_unavailable() {
	{ bash "$_xs_script_src" find >/dev/null; } 2>&1 || true
}

# xs_start: start xenstored in a fresh temporary directory ($XS_DIR) and
# export what clients need. Registers xs_stop for exit.
xs_start() {
	local sim_dir
	[[ -z $XS_DIR ]] || {
		printf 'xs_start: already started in %s\n' "$XS_DIR" >&2
		return 1
	}
	sim_dir=$(_xs_sim_dir)
	XS_DIR=$(mktemp -d "${TMPDIR:-/tmp}/vproxy-xs.XXXXXX")
	cleanup_push xs_stop
	bash "$sim_dir/xenstored-sim.sh" start "$XS_DIR" >/dev/null
	export XENSTORED_PATH=$XS_DIR/xenstored.sock
	export VPROXY_XSSHIM_DIR=$XS_DIR
	export VPROXY_SIMCTL=$sim_dir/vproxy-simctl
}

# xs_pid: the running xenstored's pid.
xs_pid() {
	cat -- "$XS_DIR/xenstored.pid"
}

# xs_stop: stop xenstored and remove its directory; safe to call twice.
xs_stop() {
	local sim_dir rc=0
	[[ -n $XS_DIR ]] || return 0
	sim_dir=$(_xs_sim_dir)
	bash "$sim_dir/xenstored-sim.sh" stop "$XS_DIR" || rc=$?
	if ((CLEANUP_STATUS != 0 && CLEANUP_STATUS != 77)) && [[ -f $XS_DIR/trace.log ]]; then
		printf -- '--- xenstored log and trace tail (%s) ---\n' "$XS_DIR" >&2
		cat -- "$XS_DIR/xenstored.log" >&2 || true
		grep -v "^wrl:" -- "$XS_DIR/trace.log" | tail -n 40 >&2 || true
	fi
	if [[ ${VPROXY_KEEP_TMP:-0} == 1 ]]; then
		printf 'xs_stop: kept %s\n' "$XS_DIR" >&2
	else
		rm -rf -- "$XS_DIR"
	fi
	XS_DIR=
	unset XENSTORED_PATH VPROXY_XSSHIM_DIR
	return "$rc"
}
