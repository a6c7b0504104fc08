#!/bin/bash
# SPDX-License-Identifier: MIT
# vproxy against Linux's own Xen block backend on real Xen (under QEMU):
# boots the real-Xen test's VM (tests/xen/xen_e2e.sh) with a Release build's
# vproxyd in dom0 and runs only its fio comparison in the kernel module's
# domU: 4 KiB random read and write at QD 1 and 32 on a vproxy disk (raw
# plugin, grant mode) and on a blkback disk over an identical file, back to
# back, ROUNDS times with the order swapped each round, and prints the
# medians and each round's ratio.
#
#   bench/xen-bench.sh BUILD_DIR [ROUNDS [SECONDS]]
#
# BUILD_DIR is a CMake tree (use -DCMAKE_BUILD_TYPE=Release: the test
# command's sanitizer build is no fair peer for an in-kernel backend).
# ROUNDS defaults to 5, SECONDS per workload to 8.  Environment passed on:
# VPROXY_XEN_KMOD_GFN (1: gfn mode too, alone, after the pairs; default 0
# here), VPROXY_XEN_PROFILE=S (first S >= 20 seconds of QD 1 on each disk
# while perf counts vproxyd's system calls and samples dom0's CPU, then
# the guest's),
# VPROXY_XEN_POLL_US, VPROXY_XEN_RAW_ON, VPROXY_KEEP_TMP.  Takes about
# 2 minutes plus 2 x 8 x SECONDS per round on an idle 2-core machine.
set -euo pipefail

build=$(cd -- "${1:?usage: xen-bench.sh BUILD_DIR [ROUNDS [SECONDS]]}" && pwd)
here=$(cd -- "$(dirname -- "$0")" && pwd)
[[ -x $build/core/vproxyd ]] || { printf 'xen-bench: no %s/core/vproxyd\n' "$build" >&2; exit 2; }
export VPROXY_BUILD_DIR=$build VPROXY_XEN_BENCH=1
export VPROXY_XEN_FIO_ROUNDS=${2:-5} VPROXY_XEN_FIO_SECS=${3:-8}
export VPROXY_XEN_KMOD_GFN=${VPROXY_XEN_KMOD_GFN:-0}
exec bash "$here/../tests/xen/xen_e2e.sh"
