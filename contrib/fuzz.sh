#!/bin/bash
# SPDX-License-Identifier: MIT
# Builds the libFuzzer harnesses of tests/fuzz/ with clang in their own
# build directory and runs each one: its seed corpus first, then new
# inputs for SECONDS (default 600), as many at a time as there are CPUs.
#
#   contrib/fuzz.sh [SECONDS]
#
# Environment:
#   VPROXY_FUZZ_BUILD_DIR  the clang build directory (default build-fuzz)
#   VPROXY_FUZZ_WORK_DIR   where the inputs each fuzzer found are kept for
#                          the next run, and its crashes (default
#                          <build>/fuzz-work); set it empty for a scratch
#                          directory, crashes then in <build>/tests/fuzz
#   VPROXY_FUZZ_ONLY       a ctest regex: run only these (e.g. "blk|sparse")
# docs/TESTING.md describes the harnesses.
set -euo pipefail
src=$(cd -- "$(dirname -- "$0")/.." && pwd)
build=${VPROXY_FUZZ_BUILD_DIR:-$src/build-fuzz}
seconds=${1:-600}

if [[ ! $seconds =~ ^[0-9]+$ ]] || ((seconds < 1)); then
	echo "usage: $0 [SECONDS]  (each fuzzer runs this long; default 600)" >&2
	exit 2
fi
if ! command -v clang >/dev/null; then
	echo "fuzz: clang is missing; contrib/install-deps.sh installs it" >&2
	exit 1
fi

CC=clang cmake -S "$src" -B "$build" -DVPROXY_FUZZ=ON -DVPROXY_TESTS=OFF \
	-DCMAKE_BUILD_TYPE=RelWithDebInfo -DVPROXY_FUZZ_SECONDS="$seconds" >/dev/null
# Only the fuzzers: the rest of the tree is not linked with the sanitizers.
cmake --build "$build" --target fuzzers -j"$(nproc)"
export VPROXY_FUZZ_WORK_DIR=${VPROXY_FUZZ_WORK_DIR-$build/fuzz-work}
ctest --test-dir "$build" -L fuzz -R "${VPROXY_FUZZ_ONLY:-.}" -j"$(nproc)" \
	--output-on-failure
