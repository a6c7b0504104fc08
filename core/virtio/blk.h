/* SPDX-License-Identifier: MIT */
/* virtio-blk device (virtio 1.2 section 5.2) on top of a storage plugin. */
#ifndef VP_BLK_H
#define VP_BLK_H

#include <stdbool.h>
#include <vproxy/plugin.h>

#include "hist.h"
#include "vdev.h"

struct vp_blk_totals;

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
	/* Where the device adds its statistics when it is freed (NULL:
	 * nowhere); must outlive the device. */
	struct vp_blk_totals *totals;
};

#define VP_BLK_MAX_QUEUES 16u

/* Statistics, kept from the device's creation (a guest's reset keeps
 * them; a new connection starts a new device). */
enum vp_blk_op {
	VP_BLK_OP_READ,
	VP_BLK_OP_WRITE,
	VP_BLK_OP_FLUSH,
	VP_BLK_OP_DISCARD,
	VP_BLK_OP_WRITE_ZEROES,
	VP_BLK_OP_OTHER, /* GET_ID, unknown types, requests without a header */
	VP_BLK_NOPS
};

struct vp_blk_queue_stats {
	uint64_t reqs[VP_BLK_NOPS];  /* finished requests, by kind */
	uint64_t bytes[VP_BLK_NOPS]; /* bytes of those that succeeded (discard
	                              * and write-zeroes: bytes covered) */
	uint64_t errors;             /* finished with a status other than OK */
	unsigned inflight;           /* taken from the queue, not finished */
};

/* Statistics summed over devices that came and went (a backend's past
 * connections): counters of every queue, the transport's kicks and
 * interrupts, the latency histogram. */
struct vp_blk_totals {
	struct vp_blk_queue_stats q[VP_BLK_MAX_QUEUES]; /* inflight unused */
	uint64_t kicks[VP_BLK_MAX_QUEUES];
	uint64_t irqs;
	struct hist lat;
};

/* Empty t. */
void vp_blk_totals_init(struct vp_blk_totals *t);
/* Add device d's statistics, kicks and interrupts to t. */
void vp_blk_totals_add(struct vp_blk_totals *t, const struct vp_vdev *d);
/* Add every counter of src to t. */
void vp_blk_totals_merge(struct vp_blk_totals *t, const struct vp_blk_totals *src);
/* t = past (may be NULL) + the live device's counters (live may be NULL):
 * what one backend's device did over all its connections. */
void vp_blk_totals_of(struct vp_blk_totals *t, const struct vp_blk_totals *past,
                      const struct vp_vdev *live);

/* Queue q's statistics (NULL past the device's queues). */
const struct vp_blk_queue_stats *vp_blk_queue_stats(const struct vp_vdev *d, unsigned q);
/* Latency of every request the guest was told of, from its pop to its
 * used entry, all queues together. */
const struct hist *vp_blk_latency(const struct vp_vdev *d);
/* "read", "write", "flush", "discard", "write_zeroes", "other". */
const char *vp_blk_op_name(enum vp_blk_op op);

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
