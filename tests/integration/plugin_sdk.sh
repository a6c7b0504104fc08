#!/bin/bash
# SPDX-License-Identifier: MIT
# A third party builds a plugin against the installed <vproxy/plugin.h> and
# vproxy-plugin.pc only (contrib/plugin-example/zero.c), and vproxyd loads it
# from a plugin directory and serves a guest from it.  zero.c predates ABI 2
# and builds unchanged as an ABI 1 plugin; the guest's other disk is on
# mem.so, an ABI 2 plugin, in the same server.
set -euo pipefail
# shellcheck source=../lib/simhost.sh
source "$(dirname "$0")/../lib/simhost.sh"
src=$(cd -- "$(dirname -- "$0")/../.." && pwd)

sdk=$(mktemp -d "${TMPDIR:-/tmp}/vproxy-sdk.XXXXXX")
cleanup_push rm -rf -- "$sdk"
cmake --install "$VPROXY_BUILD_DIR" --prefix "$sdk/prefix" >/dev/null
export PKG_CONFIG_PATH=$sdk/prefix/lib/pkgconfig
[[ $(realpath -m "$(pkg-config --variable=plugindir vproxy-plugin)") == "$sdk/prefix/lib/vproxy/plugins" ]]
mkdir -p "$sdk/plugins"
# Built the way a third party would: no source tree, only the SDK.
# shellcheck disable=SC2046
cc -std=c11 -Wall -Wextra -Werror -O2 -fPIC -shared $(pkg-config --cflags vproxy-plugin) \
	-o "$sdk/plugins/zero.so" "$src/contrib/plugin-example/zero.c"
cp "$VPROXY_BUILD_DIR/plugins/mem.so" "$sdk/plugins/"
# The exported init symbol is what tells the server a plugin's ABI.
nm -D --defined-only "$sdk/plugins/zero.so" | grep -qw vproxy_plugin_init
! nm -D --defined-only "$sdk/plugins/zero.so" | grep -qw vproxy_plugin_init_v2
nm -D --defined-only "$sdk/plugins/mem.so" | grep -qw vproxy_plugin_init_v2

sh_start_host
sh_start_vproxyd --plugin-dir "$sdk/plugins" <<'CFG'
[device zeros]
guest = 51
id = 0
plugin = zero
size = 16M

[device ram]
guest = 51
id = 1
plugin = mem
size = 16M
CFG
sh_create_dom 51 guest51
sh_guest_start 51 --devices 0,1 --seconds 1 --workload read
st=0
sh_guest_wait 51 60 || st=$?
((st == 0)) || { echo "FAIL: guest exited with $st"; exit 1; }
grep -E "^guest 51 dev 0: [0-9]+ IOPS" "$SH_DIR/guest-51.log"
[[ $(sh_xs_read /local/domain/0/backend/vproxy/51/0/plugin) == zero ]]
echo "PASS: out-of-tree ABI 1 plugin built from the SDK and served next to an ABI 2 plugin"
