#!/bin/bash
# SPDX-License-Identifier: MIT
# README command 2: install what is missing, build with AddressSanitizer and
# UndefinedBehaviorSanitizer, and run every test (unit and integration)
# through ctest. .ci/run calls exactly this.
set -euo pipefail
src=$(cd -- "$(dirname -- "$0")/.." && pwd)
build=${VPROXY_TEST_BUILD_DIR:-$src/build-test}

bash "$src/contrib/install-deps.sh"
cmake -S "$src" -B "$build" -DVPROXY_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug
cmake --build "$build" -j"$(nproc)"
# install-deps.sh fetched xenstored: integration tests must run, not skip.
export VPROXY_REQUIRE_XENSTORED=1
cd "$build"
ctest --output-on-failure -j2 --timeout 600

# Fuzzing (tests/fuzz/, docs/TESTING.md): a separate clang build replays
# every seed corpus and fuzzes each harness for 15 s.  Found inputs go to
# a scratch directory; a crash leaves its input in <build>-fuzz/tests/fuzz.
VPROXY_FUZZ_BUILD_DIR=${build}-fuzz VPROXY_FUZZ_WORK_DIR= \
	bash "$src/contrib/fuzz.sh" 15
