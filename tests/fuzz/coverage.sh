#!/bin/bash
# SPDX-License-Identifier: MIT
# Source coverage of the fuzzers' corpora: builds the harnesses with
# llvm-cov instrumentation in BUILD (default build-fuzz-cov), runs each over
# its seed corpus plus CORPUS_ROOT/<name>/ if given (e.g. the inputs
# contrib/fuzz.sh kept in build-fuzz/fuzz-work/<name>/corpus), and prints
# llvm-cov's per-file report for the code under test.
#   tests/fuzz/coverage.sh [BUILD [CORPUS_ROOT]]
set -euo pipefail
src=$(cd -- "$(dirname -- "$0")/../.." && pwd)
build=${1:-$src/build-fuzz-cov}
extra=${2:-}
CC=clang cmake -S "$src" -B "$build" -DVPROXY_FUZZ=ON -DVPROXY_TESTS=OFF \
	-DVPROXY_FUZZ_COVERAGE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" --target fuzzers -j"$(nproc)" >/dev/null
prof=$build/coverage
rm -rf -- "$prof"
mkdir -p -- "$prof"
objects=()
for corpus in "$src"/tests/fuzz/corpus/*/; do
	name=$(basename -- "$corpus")
	bin=$build/tests/fuzz/fuzz_$name
	dirs=("$corpus")
	if [[ -n $extra && -d $extra/$name/corpus ]]; then
		dirs+=("$extra/$name/corpus")
	elif [[ -n $extra && -d $extra/$name ]]; then
		dirs+=("$extra/$name")
	fi
	# -runs=0: execute every input once, mutate nothing.
	LLVM_PROFILE_FILE=$prof/$name-%p.profraw timeout 1800 "$bin" -runs=0 \
		-close_fd_mask=3 -max_len=65536 "${dirs[@]}" >/dev/null 2>&1 || {
		echo "coverage: $name failed on its corpus" >&2
		exit 1
	}
	objects+=(-object "$bin")
done
llvm-profdata merge -sparse -o "$prof/all.profdata" "$prof"/*.profraw
llvm-cov report "${objects[@]:1}" -instr-profile="$prof/all.profdata" \
	"$src"/core/*.c "$src"/core/*/*.c "$src"/plugins/sparse/sparse_format.c \
	"$src"/plugins/sparse/vproxy-img.c
