/* SPDX-License-Identifier: MIT */
/* virtio-blk device (virtio 1.2 section 5.2) on top of a storage plugin. */
#ifndef VP_BLK_H
#define VP_BLK_H

#include <stdbool.h>
#include <vproxy/plugin.h>

#include "vdev.h"

struct vp_blk_params {
	unsigned num_queues;     /* request queues, 1..VP_BLK_MAX_QUEUES (MQ if >1) */
	unsigned queue_size_max; /* QueueNumMax, power of two, 2..1024 */
	bool read_only;          /* forced read-only (also if the disk says so) */
	char serial[21];         /* GET_ID answer, NUL-padded (20 bytes used) */
	/* > 0: a request the plugin holds longer than this is failed with
	 * IOERR and the device marked broken (NEEDS_RESET).  The plugin then
	 * works on bounce buffers, never on guest memory, so it may finish
	 * late without touching the guest.  Needs base. */
	unsigned request_timeout_ms;
	struct event_base *base; /* the loop, for the timeout's timer */
};

#define VP_BLK_MAX_QUEUES 16u

/* Create a virtio-blk device serving disk through plugin.  The plugin,
 * disk and info belong to the caller and must outlive the device (until
 * vp_vdev_destroy's done callback); close the disk with
 * vp_blk_disk_release().  Returns NULL on allocation failure. */
struct vp_vdev *vp_blk_create(const struct vp_blk_params *params,
			      const struct vproxy_plugin *plugin, void *disk,
			      const struct vproxy_disk_info *info,
			      const struct vp_vdev_host *host);

/* Close disk through plugin (vp_plugin_close_async: on a helper thread if
 * the plugin allows), unless requests a device gave up on (request
 * timeout) are still in the plugin: then it is closed from the loop (base)
 * once the last of them finished, and this returns their number so the
 * caller can report the disk abandoned.  0 when its close began now. */
unsigned vp_blk_disk_release(const struct vproxy_plugin *plugin, void *disk);

#endif
