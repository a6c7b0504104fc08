#!/bin/bash
# SPDX-License-Identifier: MIT
# shellcheck source-path=SCRIPTDIR
# sim.xenstored: proves the hypervisor-less xenstore setup works end to end.
# Real xenstored with the shim on a private socket; keys read and written;
# vproxy-simctl introduces, releases and kills domains, and the
# @introduceDomain / @releaseDomain watches fire. Skips (77) only when the
# xenstored binary is absent.
#
# Needs VPROXY_BUILD_DIR (set by ctest).
set -euo pipefail

here=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../../tests/lib/xenstored.sh
source "$here/../../tests/lib/xenstored.sh"

passed=0
failed=0

ok() {
	passed=$((passed + 1))
	printf 'ok %d - %s\n' "$((passed + failed))" "$*"
}

fail() {
	failed=$((failed + 1))
	printf 'not ok %d - %s\n' "$((passed + failed))" "$*"
}

# check DESCRIPTION CMD...: CMD must succeed.
check() {
	local what=$1
	shift
	if "$@"; then ok "$what"; else fail "$what"; fi
}

# check_fails DESCRIPTION PATTERN CMD...: CMD must fail, stderr matching PATTERN.
check_fails() {
	local what=$1 pattern=$2 err
	shift 2
	if err=$("$@" 2>&1 >/dev/null); then
		fail "$what (succeeded)"
	elif [[ $err =~ $pattern ]]; then
		ok "$what"
	else
		fail "$what (said: $err)"
	fi
}

# start_waiter KIND DOMID: vproxy-simctl wait-KIND in the background; returns
# once its watch is registered. Sets waiter_pid and waiter_out.
start_waiter() {
	local kind=$1 domid=$2 deadline=$((SECONDS + 5))
	waiter_out=$(mktemp "$XS_DIR/waiter.XXXXXX")
	"$VPROXY_SIMCTL" "wait-$kind" "$domid" 10 >"$waiter_out" 2>&1 &
	waiter_pid=$!
	until grep -q '^watching' "$waiter_out"; do
		if ! kill -0 "$waiter_pid" 2>/dev/null || ((SECONDS >= deadline)); then
			cat -- "$waiter_out" >&2
			return 1
		fi
		sleep 0.02
	done
}

# waiter_saw LINE: the background waiter ends successfully having printed LINE.
waiter_saw() {
	wait "$waiter_pid" && grep -Fxq -- "$1" "$waiter_out"
}

listed_as() {
	"$VPROXY_SIMCTL" list | grep -Eq "^$1 +$2 +$3\$"
}

node_is() {
	[[ $(xenstore-read "$1") == "$2" ]]
}

# Exited: no such process, or a zombie that init has not reaped yet.
is_gone() {
	local stat
	stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
	stat=${stat##*) }
	[[ ${stat%% *} == Z ]]
}

node_absent() {
	! xenstore-exists "$1" 2>/dev/null
}

if ! xs_available; then
	printf 'SKIP: %s\n' "$(xs_why_unavailable)"
	exit 77
fi
cleanup_push cleanup_kill_jobs

xs_start
pid=$(xs_pid)
check "xenstored runs (pid $pid) on $XENSTORED_PATH" kill -0 "$pid"
check "dom0's name is written" node_is /local/domain/0/name Domain-0
check "write a key" xenstore-write /test/key hello
check "read it back" node_is /test/key hello

# create fires @introduceDomain and leaves the domain introduced.
start_waiter introduce 5
check "create domain 5" "$VPROXY_SIMCTL" create 5 guest5
check "@introduceDomain fired for domain 5" waiter_saw "introduced domain 5"
check "domain 5 is listed as introduced" listed_as 5 guest5 yes
check "its name node" node_is /local/domain/5/name guest5
check "its domid node" node_is /local/domain/5/domid 5
check_fails "create domain 5 again" "already exists" "$VPROXY_SIMCTL" create 5 again

# destroy removes the nodes and fires @releaseDomain.
start_waiter release 5
check "destroy domain 5" "$VPROXY_SIMCTL" destroy 5
check "@releaseDomain fired for domain 5" waiter_saw "released domain 5"
check "domain 5's nodes are gone" node_absent /local/domain/5
check_fails "destroy domain 5 again" "no domain 5" "$VPROXY_SIMCTL" destroy 5

# kill: the domain vanishes, xenstored's own cleanup fires @releaseDomain.
check "create domain 6" "$VPROXY_SIMCTL" create 6 guest6
start_waiter release 6
check "kill domain 6" "$VPROXY_SIMCTL" kill 6
check "@releaseDomain fired for killed domain 6" waiter_saw "released domain 6"
check "domain 6 is listed, not introduced" listed_as 6 guest6 no
check "recreate domain 6 after the kill" "$VPROXY_SIMCTL" create 6 guest6b
check "domain 6 is introduced again" listed_as 6 guest6b yes
check "kill domain 6 again" "$VPROXY_SIMCTL" kill 6
check "destroy the killed domain 6" "$VPROXY_SIMCTL" destroy 6
check "domain 6's nodes are gone" node_absent /local/domain/6

# Bad arguments and a missing xenstored give clear errors.
check_fails "create domain 0" "domid must be a number in 1..32751" "$VPROXY_SIMCTL" create 0 dom0
check_fails "create domain 32752" "domid must be a number in 1..32751" "$VPROXY_SIMCTL" create 32752 big
check_fails "create without a name" "name is required" "$VPROXY_SIMCTL" create 7
check_fails "create with an empty name" "name is required" "$VPROXY_SIMCTL" create 7 ""
check_fails "kill a domain never created" "not introduced" "$VPROXY_SIMCTL" kill 8
check_fails "no xenstored at XENSTORED_PATH" "cannot reach xenstored at $XS_DIR/none" \
	env XENSTORED_PATH="$XS_DIR/none" "$VPROXY_SIMCTL" list

sock=$XENSTORED_PATH
xs_stop
check "xenstored (pid $pid) is stopped" is_gone "$pid"
check "its socket is removed" test ! -e "$sock"

printf '%d passed, %d failed\n' "$passed" "$failed"
((failed == 0))
