#!/bin/bash
# SPDX-License-Identifier: MIT
# Crash safety of the sparse format: a writer drives the sparse plugin
# (through the plugin host, as vproxyd does) with random writes, discards,
# write-zeroes, reads and flushes, and is killed with SIGKILL at a random
# moment, many times over.  After each kill the image must pass
# `vproxy-img check`, and every block must hold what the writer's journal
# allows: everything acknowledged before the last completed FLUSH.
# Reopening (which reclaims what the crash leaked) must leave it clean.
set -euo pipefail
# shellcheck source=../lib/cleanup.sh
source "$(dirname "$0")/../lib/cleanup.sh"

: "${VPROXY_BUILD_DIR:?VPROXY_BUILD_DIR is not set}"
img_tool=$VPROXY_BUILD_DIR/plugins/sparse/vproxy-img
writer=$VPROXY_BUILD_DIR/tests/plugins-e2e/crash-writer
plugins=$VPROXY_BUILD_DIR/plugins
rounds=${VPROXY_CRASH_ROUNDS:-30}
budget=${VPROXY_CRASH_SECONDS:-45} # stop early rather than run long

work=$(mktemp -d "${TMPDIR:-/tmp}/vproxy-crash.XXXXXX")
cleanup_push rm -rf -- "$work"
writer_pid=
stop_writer() {
	if [[ -n $writer_pid ]]; then
		kill -KILL "$writer_pid" 2>/dev/null || true
		wait "$writer_pid" 2>/dev/null || true
		writer_pid=
	fi
}
cleanup_push stop_writer

RANDOM=${VPROXY_CRASH_SEED:-$$}
start=$SECONDS
done_rounds=0
for ((round = 1; round <= rounds; round++)); do
	# The budget cuts the rounds past the tenth only: a loaded machine
	# runs slower, not fewer crashes.
	((SECONDS - start < budget || round <= 10)) || break
	img=$work/disk.img
	journal=$work/journal
	# Small clusters and a small disk: allocation, freeing and reuse of
	# clusters all happen within a fraction of a second.
	"$img_tool" create -f -c 16K "$img" 4M
	seed=$((RANDOM * 32768 + RANDOM + 1))
	# A writer killed before it opens its journal must not leave the
	# previous round's journal to be checked against this round's image.
	: >"$journal"
	"$writer" write "$plugins" sparse "$img" "$journal" "$seed" \
		>"$work/writer.out" 2>"$work/writer.err" &
	writer_pid=$!
	# Kill at a random point: sometimes while it opens, mostly mid-run.
	delay_ms=$((RANDOM % 600))
	if ((RANDOM % 4 != 0)); then
		deadline=$((SECONDS + 10))
		until grep -q running "$work/writer.out" 2>/dev/null; do
			kill -0 "$writer_pid" 2>/dev/null || break
			((SECONDS < deadline)) || break
			sleep 0.01
		done
	fi
	sleep "$(printf '0.%03d' "$delay_ms")"
	if ! kill -0 "$writer_pid" 2>/dev/null; then
		cat "$work/writer.err" >&2
		echo "FAIL: round $round: the writer stopped on its own"
		exit 1
	fi
	kill -KILL "$writer_pid"
	wait "$writer_pid" 2>/dev/null || true
	writer_pid=
	if grep -E "AddressSanitizer|runtime error|live read" "$work/writer.err"; then
		echo "FAIL: round $round: the writer saw an error before the kill"
		exit 1
	fi

	st=0
	"$img_tool" check "$img" >"$work/check.out" || st=$?
	if ((st != 0)); then
		cat "$work/check.out"
		echo "FAIL: round $round (seed $seed, killed after ${delay_ms} ms): check exit $st"
		exit 1
	fi
	st=0
	"$writer" verify "$plugins" sparse "$img" "$journal" >"$work/verify.out" \
		2>"$work/verify.err" || st=$?
	if ((st != 0)); then
		grep -v ' info: ' "$work/verify.err" | head -20 >&2 || true
		echo "FAIL: round $round (seed $seed, killed after ${delay_ms} ms): data check exit $st"
		exit 1
	fi
	# verify opened the image writable, which reclaims leaks: clean now.
	"$img_tool" check "$img" >"$work/check2.out"
	if grep -q '^leaks:' "$work/check2.out"; then
		cat "$work/check2.out"
		echo "FAIL: round $round: leaks left after reopening"
		exit 1
	fi
	printf 'round %d: killed after %3d ms; %s; %s\n' "$round" "$delay_ms" \
		"$(head -n1 "$work/check.out" | sed 's/^[^:]*: //')" "$(cat "$work/verify.out")"
	done_rounds=$round
done
((done_rounds >= (rounds < 10 ? rounds : 10))) || { echo "FAIL: only $done_rounds rounds in ${budget} s"; exit 1; }
echo "PASS: $done_rounds crashes, image clean and flushed data intact after each"
