#!/bin/bash
# SPDX-License-Identifier: MIT
# vproxyd's command line and configuration errors, without xenstored.
set -euo pipefail
vpd=$VPROXY_BUILD_DIR/core/vproxyd
tmp=$(mktemp -d "${TMPDIR:-/tmp}/vproxy-cli.XXXXXX")
trap 'rm -rf -- "$tmp"' EXIT

"$vpd" --help | grep -q -- "--config"
"$vpd" --version | grep -Eq "^vproxyd [0-9]+\.[0-9]+\.[0-9]+"

# expect_error CONFIG-TEXT REGEX: --check-config exits 1 naming file:line:key.
expect_error() {
	local st=0 out
	printf '%s\n' "$1" >"$tmp/bad.ini"
	out=$("$vpd" --check-config --config "$tmp/bad.ini" \
		--plugin-dir "$VPROXY_BUILD_DIR/plugins" 2>&1) || st=$?
	if ((st != 1)) || ! grep -Eq -- "$2" <<<"$out"; then
		printf 'FAIL: status %s, output:\n%s\nwanted /%s/\n' "$st" "$out" "$2"
		exit 1
	fi
	printf 'ok: %s\n' "$out"
}

expect_error $'[vproxyd]\nhypervisor = kvm' "bad.ini:2: hypervisor: "
expect_error $'[vproxyd]\nbogus = 1' "bad.ini:2: bogus: "
expect_error $'[device a]\nguest = 5\nid = 0\nplugin = mem\nsize = 8M\nfrobnicate = 1' \
	"bad.ini:6: frobnicate: "
expect_error $'[device a]\nguest = 5\nid = 0\nplugin = nosuch\nsize = 8M' "bad.ini:4: plugin: "
expect_error $'[device a]\nguest = 5\nid = 0\nplugin = mem\nsize = 8M\nqueues = 99' \
	"bad.ini:6: queues: "
expect_error $'[device a]\nid = 0\nplugin = mem' "bad.ini:1: "
st=0
"$vpd" --check-config --config "$tmp/missing.ini" 2>"$tmp/err" || st=$?
((st == 1)) && grep -q "missing.ini" "$tmp/err"
st=0
"$vpd" --no-such-option 2>/dev/null || st=$?
((st == 1))
# The shipped example is valid.
"$vpd" --check-config --config "$(dirname "$0")/../../etc/vproxyd.ini" \
	--plugin-dir "$VPROXY_BUILD_DIR/plugins"
echo "PASS: cli"
