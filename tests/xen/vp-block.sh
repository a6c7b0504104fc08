#!/bin/sh
# SPDX-License-Identifier: MIT
# libxl's block hotplug script for the blkback disk of the real-Xen test
# (dom0 has busybox, not the bash that /etc/xen/scripts/block needs): on
# "add", tell xen-blkback which block device to open, as that script does.
# libxl runs it as `vp-block add|remove` with XENBUS_PATH set to the
# backend's xenstore directory, whose params holds the device path.
set -e
[ "$1" = add ] || exit 0
dev=$(xenstore-read "$XENBUS_PATH/params")
[ -b "$dev" ] || {
	echo "vp-block: $dev is not a block device" >&2
	exit 1
}
xenstore-write "$XENBUS_PATH/physical-device" "$(stat -L -c '%t:%T' "$dev")" \
	"$XENBUS_PATH/physical-device-path" "$dev"
xenstore-write "$XENBUS_PATH/hotplug-status" connected
