#!/bin/bash
# SPDX-License-Identifier: MIT
# The soak of contrib/soak.sh for two minutes (VPROXY_SOAK_MINUTES): guests
# on every plugin start, run verified I/O, reset, crash, lose their
# frontend nodes and come back at random under one ASan vproxyd, whose fds
# and mappings must be back to the idle start's at the end.  The seed is
# random and printed; SEED=N replays a run's choices.
set -euo pipefail
exec bash "$(dirname "$0")/../../contrib/soak.sh" "${VPROXY_SOAK_MINUTES:-2}"
