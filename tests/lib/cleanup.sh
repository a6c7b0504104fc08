# SPDX-License-Identifier: MIT
# shellcheck shell=bash
# Cleanup stack for test scripts: cleanup_push registers a command, and on
# exit (normal, failure under set -e, INT, TERM) the commands run last-first.
# Tests that source this must not set their own EXIT trap; push instead.
# While they run, CLEANUP_STATUS holds the exit status the script ends with.

_cleanup_cmds=()
CLEANUP_STATUS=0

# cleanup_push CMD [ARGS...]: run CMD ARGS... at exit.
cleanup_push() {
	local cmd
	printf -v cmd '%q ' "$@"
	_cleanup_cmds+=("$cmd")
}

# cleanup_kill_jobs: stop this shell's background jobs still running.
# `jobs -p` lists only unreaped children, so no recycled pid is hit.
cleanup_kill_jobs() {
	local pid
	for pid in $(jobs -p); do
		kill "$pid" 2>/dev/null || true
	done
}

_cleanup_run() {
	CLEANUP_STATUS=$?
	local i
	trap - EXIT
	for ((i = ${#_cleanup_cmds[@]} - 1; i >= 0; i--)); do
		eval "${_cleanup_cmds[i]}" || true
	done
	_cleanup_cmds=()
	exit "$CLEANUP_STATUS"
}

trap _cleanup_run EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
