#!/bin/bash
# SPDX-License-Identifier: MIT
# vproxy-img: --help for every command, create/info/check/map/convert, the
# exit codes of check (0 clean, 1 corrupt, 2 not an image), leak repair,
# raw -> sparse -> raw round trip, and a progress bar only on a terminal.
set -euo pipefail
# shellcheck source=../lib/cleanup.sh
source "$(dirname "$0")/../lib/cleanup.sh"
: "${VPROXY_BUILD_DIR:?VPROXY_BUILD_DIR is not set}"
img=$VPROXY_BUILD_DIR/plugins/sparse/vproxy-img
d=$(mktemp -d "${TMPDIR:-/tmp}/vproxy-img.XXXXXX")
cleanup_push rm -rf -- "$d"
fail() { echo "FAIL: $*"; exit 1; }

for c in create info check convert map; do
	"$img" "$c" --help | grep -q "^usage: vproxy-img $c" || fail "$c --help"
done
"$img" --help | grep -q "^commands:" || fail "--help"
st=0; "$img" frobnicate 2>/dev/null || st=$?; ((st == 2)) || fail "unknown command exit $st"

"$img" create -c 4K "$d/a.img" 3M
st=0; "$img" create "$d/a.img" 1M 2>/dev/null || st=$?; ((st == 2)) || fail "create over a file"
"$img" info "$d/a.img" | grep -q "^virtual size: 3.0 MiB" || fail "info"
"$img" info --json "$d/a.img" | grep -q '"cluster-count": 768' || fail "info --json"
"$img" check "$d/a.img" | grep -q "no corruption" || fail "check clean"

# raw -> sparse -> raw keeps every byte and allocates only the data.
truncate -s 10M "$d/r.raw"
head -c 100000 /dev/urandom | dd of="$d/r.raw" bs=4096 seek=300 conv=notrunc status=none
"$img" convert -c 16K "$d/r.raw" "$d/r.img" 2>"$d/progress"
[[ ! -s $d/progress ]] || fail "progress bar without a terminal"
"$img" info --json "$d/r.img" | grep -q '"allocated-clusters": 7' || fail "convert allocation"
"$img" map "$d/r.img" | grep -Eq "^0x12c000 +0x1c000 +0x4000" || fail "map: $("$img" map "$d/r.img")"
"$img" map --json "$d/r.img" | grep -q '"start": 1228800' || fail "map --json"
"$img" convert "$d/r.img" "$d/back.raw"
cmp "$d/r.raw" "$d/back.raw" || fail "round trip differs"
if command -v script >/dev/null; then
	script -qec "$img convert -f -c 16K $d/r.raw $d/r2.img" /dev/null >"$d/tty" || true
	grep -q "100%" "$d/tty" || fail "no progress bar on a terminal"
fi

# A leak (data nobody references) is reported, not corruption; repaired.
printf 'leak' | dd of="$d/r.img" bs=1 seek=$(($(stat -c %s "$d/r.img") + 100)) status=none
"$img" check "$d/r.img" | grep -q "^leaks: 1 unreferenced cluster" || fail "leak not seen"
"$img" check --repair "$d/r.img" | grep -q "^repaired" || fail "not repaired"
"$img" check "$d/r.img" | grep -q "^leaks" && fail "leak left"

# Corrupt: a map entry pointing past the end; exit 1 with a description.
printf '\0\0\0\20\0\0\0\0' | dd of="$d/r.img" bs=1 seek=4096 conv=notrunc status=none
st=0; "$img" check "$d/r.img" >"$d/out" || st=$?
((st == 1)) || fail "corrupt image: exit $st"
grep -q "map entry 0 .*points beyond the end of the file" "$d/out" || fail "$(cat "$d/out")"
# A broken header checksum: corrupt too.
printf '\1' | dd of="$d/a.img" bs=1 seek=17 conv=notrunc status=none
st=0; "$img" check "$d/a.img" >"$d/out" || st=$?
((st == 1)) && grep -q "checksum" "$d/out" || fail "bad header: exit $st"
# Not an image at all: 2.
st=0; "$img" check "$d/r.raw" 2>/dev/null || st=$?
((st == 2)) || fail "raw file: exit $st"
echo "PASS: vproxy-img"
