#!/bin/bash
# SPDX-License-Identifier: MIT
# The service manager protocol (Type=notify), with this test as the
# manager: NOTIFY_SOCKET is a datagram socket it reads.  vproxyd says
# READY=1 with a status once serving, WATCHDOG=1 twice per WATCHDOG_USEC
# from its event loop, RELOADING=1 then READY=1 around a SIGHUP reload,
# and STOPPING=1 at SIGTERM.
set -euo pipefail
# shellcheck source=../lib/simhost.sh
source "$(dirname "$0")/../lib/simhost.sh"

sh_start_host
NSOCK=$SH_DIR/notify.sock
MSGS=$SH_DIR/notify.log
# The "service manager": every datagram as one line (newlines as '|').
python3 - "$NSOCK" "$MSGS" <<'EOF' &
import socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
s.settimeout(1)
end = time.time() + 120
with open(sys.argv[2], "a", buffering=1) as f:
    while time.time() < end:
        try:
            d = s.recv(4096)
        except socket.timeout:
            continue
        f.write(d.decode(errors="replace").replace("\n", "|") + "\n")
EOF
LISTENER=$!
cleanup_push kill "$LISTENER"
for _ in $(seq 50); do [[ -S $NSOCK ]] && break; sleep 0.1; done
[[ -S $NSOCK ]] || fail "no notify socket"

export NOTIFY_SOCKET=$NSOCK WATCHDOG_USEC=200000
sh_start_vproxyd < <(printf '[device d]\nguest = 11\nid = 0\nplugin = mem\nsize = 4M\n\n')
unset NOTIFY_SOCKET WATCHDOG_USEC

wait_msg() { # PATTERN SECONDS
	local deadline=$((SECONDS + $2))
	until grep -qE -- "$1" "$MSGS" 2>/dev/null; do
		((SECONDS < deadline)) || return 1
		sleep 0.05
	done
}
wait_msg '^READY=1\|STATUS=serving 1 declared device' 10 || fail "no READY=1: $(cat "$MSGS")"
sleep 1
n=$(grep -c '^WATCHDOG=1$' "$MSGS" || true)
((n >= 3)) || fail "$n watchdog pings in over a second at 200 ms"
grep -q "watchdog every 100 ms" "$SH_DIR/vproxyd.log" || fail "watchdog not logged"

kill -HUP "$VPD_PID"
wait_msg '^READY=1\|STATUS=serving; reloaded ' 10 || fail "no READY=1 after the reload: $(cat "$MSGS")"
grep -q '^RELOADING=1$' "$MSGS" || fail "no RELOADING=1"
# RELOADING=1 comes before the READY=1 that ends it.
r=$(grep -n '^RELOADING=1$' "$MSGS" | head -1 | cut -d: -f1)
e=$(grep -n 'STATUS=serving; reloaded ' "$MSGS" | head -1 | cut -d: -f1)
((r < e)) || fail "RELOADING=1 after READY=1"

st=0
sh_stop_vproxyd || st=$?
((st == 0)) || fail "vproxyd exited with $st"
wait_msg '^STOPPING=1' 5 || fail "no STOPPING=1: $(cat "$MSGS")"
echo "PASS: service manager notifications"
