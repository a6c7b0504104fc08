#!/bin/bash
# SPDX-License-Identifier: MIT
# A guest that publishes garbage in its frontend node (no stub at all, or a
# stub that lies) gets an error and Closing for that device; the server and
# the guest's other device are unaffected, and the device can reconnect.
set -euo pipefail
# shellcheck source=../lib/simhost.sh
source "$(dirname "$0")/../lib/simhost.sh"

sh_start_host
sh_start_vproxyd <<'CFG'
[device a]
guest = 61
id = 0
plugin = mem
size = 8M

[device b]
guest = 61
id = 1
plugin = mem
size = 8M
CFG
sh_create_dom 61 guest61
be=/local/domain/0/backend/vproxy/61/0
fe=/local/domain/61/device/vproxy/0
sh_wait_xs "$be/state" 2 10

# try_frontend DESCRIPTION KEY=VALUE...: publish the values, Initialised,
# expect the backend to refuse with an error, then reset the frontend.
try_frontend() {
	local what=$1 kv
	shift
	for kv in "$@"; do
		xenstore-write -- "$fe/${kv%%=*}" "${kv#*=}"
	done
	xenstore-write "$fe/state" 3
	sh_wait_xs "$be/state" 5 10
	printf 'ok: %s -> %s\n' "$what" "$(sh_xs_read "$be/error")"
	sh_vproxyd_alive || { echo "FAIL: vproxyd died on $what"; exit 1; }
	xenstore-write "$fe/state" 6
	sh_wait_xs "$be/state" 6 10
	xenstore-write "$fe/state" 1
	sh_wait_xs "$be/state" 2 10
	[[ -z $(sh_xs_read "$be/error") ]] || { echo "FAIL: error not cleared"; exit 1; }
}

xenstore-rm "$fe/ring-ref" 2>/dev/null || true
try_frontend "missing ring-ref" event-channel=1
try_frontend "ring-ref not a number" ring-ref=12abc event-channel=1
try_frontend "negative ring-ref" ring-ref=-1 event-channel=1
# Numbers are decimal, as documented: no hex, octal, sign or spaces.
try_frontend "hex ring-ref" ring-ref=0x1 event-channel=1
try_frontend "octal-looking event-channel" ring-ref=1 event-channel=010
try_frontend "ring-ref with a space" "ring-ref= 1" event-channel=1
try_frontend "ring-ref with a plus" ring-ref=+1 event-channel=1
try_frontend "protocol-version 0x1" ring-ref=1 event-channel=1 protocol-version=0x1
xenstore-rm "$fe/protocol-version" 2>/dev/null || true
try_frontend "unknown addr-mode" ring-ref=1 event-channel=1 addr-mode=physical
try_frontend "protocol version 2" ring-ref=1 event-channel=1 addr-mode=gfn protocol-version=2
# No guest process behind the domain: nothing to map.
try_frontend "no guest memory" ring-ref=1 event-channel=1 protocol-version=1
grep -E "dom 61 dev 0: .*ring-ref" "$SH_DIR/vproxyd.log" >/dev/null

# The guest's other device, and then this one, still work with a real stub.
sh_guest_start 61 --devices 0,1 --seconds 1 --workload mixed
st=0
sh_guest_wait 61 60 || st=$?
((st == 0)) || { echo "FAIL: guest exited with $st"; exit 1; }
grep -E "^guest 61: .*verify OK" "$SH_DIR/guest-61.log"
st=0
sh_stop_vproxyd || st=$?
((st == 0)) || { echo "FAIL: vproxyd exited with $st"; exit 1; }
if grep -E "AddressSanitizer|runtime error" "$SH_DIR/vproxyd.log"; then
	exit 1
fi
echo "PASS: garbage in xenstore refused per device"
