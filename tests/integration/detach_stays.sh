#!/bin/bash
# SPDX-License-Identifier: MIT
# A device whose frontend node went away (a toolstack's or a guest's
# detach) stays detached while its domain lives: it used to come back as
# soon as any other domain was introduced, because the scan of new domains
# provisioned every running guest that had no devices.  A new domain with
# the same id, after the old one is gone, gets its devices again.
set -euo pipefail
# shellcheck source=../lib/simhost.sh
source "$(dirname "$0")/../lib/simhost.sh"

be=/local/domain/0/backend/vproxy
sh_start_host
sh_start_vproxyd <<'INI'
[device a]
guest = guestA
id = 0
plugin = mem
size = 4M

[device b]
guest = other
id = 0
plugin = mem
size = 4M
INI
sh_create_dom 5 guestA
sh_wait_xs $be/5/0/state 2 20
xenstore-rm /local/domain/5/device/vproxy
sh_wait_xs $be/5/0/state "" 10

# Another guest comes up: its device provisioned shows the scan ran.
sh_create_dom 6 other
sh_wait_xs $be/6/0/state 2 20
state=$(sh_xs_read $be/5/0/state) || state=
[[ -z $state ]] || sh_die "the detached device of dom 5 came back (state $state) when dom 6 was introduced"
echo "detached device of dom 5 stays detached after dom 6 came up"

# The domain goes; a new one with the same id and name is provisioned.
sh_destroy_dom 5
sh_create_dom 5 guestA
sh_wait_xs $be/5/0/state 2 20
echo "PASS: a detach stays until the domain is gone; its successor is provisioned"
