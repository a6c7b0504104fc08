#!/bin/bash
# Runs one fuzzer: every file of its corpus first, then new inputs for
# SECONDS.  New inputs go to a scratch directory (not the tree); a crash
# leaves its input as crash-* in the current directory.
#   run-fuzzer.sh FUZZER CORPUS_DIR SECONDS [libFuzzer options...]
set -euo pipefail
fuzzer=$1 corpus=$2 seconds=$3
shift 3
scratch=$(mktemp -d)
trap 'rm -rf -- "$scratch"' EXIT
# -timeout: no single input may take a second; -rss_limit_mb: the guest
# RAM and mappings of a harness stay far below it.
"$fuzzer" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
	-print_final_stats=1 -close_fd_mask=1 "$@" "$scratch" "$corpus"
