/* SPDX-License-Identifier: GPL-2.0 */
/*
 * virtio_vproxy: a virtio transport over the vproxy protocol for Xen guests.
 * Three parts share this header:
 *   vproxy_front.c  xenbus frontend, shared ring, event channel, registers
 *   vproxy_vio.c    virtio_config_ops: every call becomes register accesses
 *   vproxy_dma.c    dma_map_ops of the xenbus device: grant or gfn addresses
 */
#ifndef VPROXY_H
#define VPROXY_H

#include <linux/list.h>
#include <linux/mutex.h>
#include <linux/spinlock.h>
#include <linux/virtio.h>
#include <linux/wait.h>
#include <linux/workqueue.h>
#include <xen/grant_table.h>
#include <xen/xenbus.h>

#include "vproxy_proto.h"

struct vpx_dev;

/* Slots of the register ring in the page (checked at build time). */
#define VPX_RING_ENTRIES	128

/* One pool chunk: virtually contiguous, granted (or named by gfn) once. */
struct vpx_chunk {
	void *va;
	unsigned long *map;	/* one bit per VPX_UNIT bytes in use */
	phys_addr_t *orig;	/* bounce: the caller's buffer, per first unit */
	unsigned long gfn;	/* gfn mode: the chunk's one frame */
};

/*
 * Guest memory the backend may reach: a pool of pages shared once for the
 * device's life.  Coherent allocations (the vrings) live in it; streaming
 * mappings are bounced through it in grant mode and, in gfn mode, only when
 * a buffer crosses frames that are not contiguous to the backend.
 */
struct vpx_pool {
	spinlock_t lock;	/* the chunks' maps and hint */
	bool grant;
	domid_t backend;
	unsigned int nr_chunks;
	unsigned int chunk_pages;
	unsigned int units;	/* per chunk */
	unsigned int hint;
	grant_ref_t first_ref;	/* grant mode: chunk c page p is first+c*cp+p */
	struct vpx_chunk *chunks;
};

/* Counters for the benchmarks (sysfs "stats"). */
struct vpx_stats {
	atomic64_t kicks;	/* QueueNotify writes */
	atomic64_t evtchn_sends;
	atomic64_t irqs;	/* interrupts with work to do */
	atomic64_t spurious;
	atomic64_t reads;
	atomic64_t writes;
	atomic64_t direct_maps;
	atomic64_t bounce_maps;
	atomic64_t pool_full;
};

/* The virtio device registered on behalf of one vpx_dev. */
struct vpx_vdev {
	struct virtio_device vdev;
	struct vpx_dev *vd;
};

struct vpx_vq_info {
	struct virtqueue *vq;
	struct list_head node;
};

struct vpx_dev {
	struct xenbus_device *xb;
	bool grant;
	bool resetting;		/* taking a stale backend through Closed */
	bool removing;
	bool dead;		/* backend gone or broke the protocol */
	struct work_struct break_work;	/* breaks vv once dead */

	/* Shared page and register ring; ring_lock covers the ring. */
	void *page;
	grant_ref_t ring_gref;
	struct vproxy_front_ring ring;
	spinlock_t ring_lock;	/* ring, shadow, await_* */
	u32 shadow[VPX_RING_ENTRIES];	/* op << 16 | offset, per slot */
	unsigned int write_errors;
	evtchn_port_t port;
	int irq;

	/* One register read in flight at a time. */
	struct mutex read_lock;
	wait_queue_head_t read_wq;
	bool awaiting;
	bool await_done;
	RING_IDX await_idx;
	u8 await_status;
	u64 await_value;
	unsigned int read_timeout_ms;

	struct vpx_vdev *vv;	/* NULL until registered */
	spinlock_t vqs_lock;	/* vqs, walked by the interrupt */
	struct list_head vqs;

	struct vpx_pool pool;
	struct vpx_stats stats;
};

/* vproxy_front.c */
/*
 * Read a register, waiting (bounded) for the answer; ~0 and an error
 * when the backend does not answer.  Process context only.
 */
int vpx_reg_read(struct vpx_dev *vd, u32 offset, unsigned int size, u64 *val);
/* Queue a register write (posted; any context). */
void vpx_reg_write(struct vpx_dev *vd, u32 offset, unsigned int size, u64 val);
/*
 * Mark the device dead: log why once, wake readers, break the virtio
 * device (from a work item; any context).
 */
void vpx_mark_dead(struct vpx_dev *vd, const char *why);

/* vproxy_vio.c */
/* Register the virtio device behind vd's ring (Connected). */
int vpx_vio_register(struct vpx_dev *vd);
/* Unregister it; the driver resets the device first. */
void vpx_vio_unregister(struct vpx_dev *vd);
/* Interrupt work: used buffers on every queue, a configuration change. */
void vpx_vio_interrupt(struct vpx_dev *vd, int irq, u32 status);

/* vproxy_dma.c */
/* Allocate and share the pool: pages of PAGE_SIZE, chunks of chunk_pages. */
int vpx_pool_init(struct vpx_pool *pool, bool grant, domid_t backend,
		  unsigned int pages);
/* End the grants (deferred while the backend still maps them), free. */
void vpx_pool_destroy(struct vpx_pool *pool);
/* The dma_map_ops set on the xenbus device while the driver is bound. */
extern const struct dma_map_ops vpx_dma_ops;

#endif
