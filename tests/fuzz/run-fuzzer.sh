#!/bin/bash
# SPDX-License-Identifier: MIT
# Runs one fuzzer: every file of its seed corpus first, then new inputs
# for SECONDS.  Without VPROXY_FUZZ_WORK_DIR, new inputs go to a scratch
# directory that is removed and a crash leaves its input as crash-* in the
# current directory; with it, <work>/<name>/corpus keeps what the fuzzer
# found (for the next run) and crashes land in <work>/<name>/.
#   run-fuzzer.sh FUZZER CORPUS_DIR SECONDS [libFuzzer options...]
set -euo pipefail
fuzzer=$1 corpus=$2 seconds=$3
shift 3
name=$(basename -- "$corpus")
if [[ -n ${VPROXY_FUZZ_WORK_DIR:-} ]]; then
	work=$VPROXY_FUZZ_WORK_DIR/$name
	mkdir -p -- "$work/corpus"
	found=$work/corpus
	artifacts=$work/
else
	found=$(mktemp -d)
	trap 'rm -rf -- "$found"' EXIT
	artifacts=./
fi
# -timeout: an input that takes 10 s is a hang; -rss_limit_mb: the guest
# RAM and mappings of a harness stay far below it.
exec "$fuzzer" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
	-print_final_stats=1 -artifact_prefix="$artifacts" "$@" "$found" "$corpus"
