/* SPDX-License-Identifier: MIT */
/*
 * Split virtqueue, device side (virtio 1.2 section 2.7), over guest memory
 * reached through a struct vp_gmem.  Everything read from the rings is
 * guest-controlled: vp_vq_pop() validates each index, flag and length and
 * reports a protocol violation as a negative errno with a reason in
 * vq->err, after which the caller puts the device in NEEDS_RESET.
 *
 * Single-threaded: one vq is used from the event loop thread only.
 */
#ifndef VP_VIRTQUEUE_H
#define VP_VIRTQUEUE_H

#include <linux/virtio_ring.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "gmem.h"

/* Largest queue size we accept (QueueNumMax never exceeds it). */
#define VP_VQ_MAX_SIZE 1024u

/* vp_vq_setup() feature flags, from the negotiated virtio features. */
#define VP_VQ_F_EVENT_IDX 0x1u /* VIRTIO_RING_F_EVENT_IDX */
#define VP_VQ_F_INDIRECT 0x2u  /* VIRTIO_RING_F_INDIRECT_DESC */

/* One descriptor chain taken from the avail ring.  The caller provides
 * iov and ref arrays of max entries; vp_vq_pop() fills iov[0, out_num)
 * with device-readable buffers, then iov[out_num, out_num + in_num) with
 * device-writable ones, and ref[i] holds the mapping behind iov[i]. */
struct vp_vq_elem {
	uint16_t head;    /* descriptor index to report in the used ring */
	uint32_t gen;     /* vq->gen when popped */
	unsigned out_num; /* device-readable buffers */
	unsigned in_num;  /* device-writable buffers */
	uint64_t out_len; /* bytes in the readable buffers */
	uint64_t in_len;  /* bytes in the writable buffers */
	unsigned max;     /* capacity of iov and ref, set by the caller */
	struct iovec *iov;
	struct vp_gmem_ref *ref;
};

/* A virtqueue.  Zero-initialise; fields are read-only outside
 * virtqueue.c. */
struct vp_vq {
	struct vp_gmem *gm;
	bool ready;
	bool event_idx;
	bool indirect;
	uint16_t num;
	uint16_t last_avail; /* next avail ring slot to take */
	uint16_t used_idx;   /* our copy of used->idx */
	uint16_t signalled_used;
	bool signalled_valid; /* signalled_used means something */
	uint32_t gen;         /* bumped by every setup and teardown */
	const struct vring_desc *desc;
	const struct vring_avail *avail;
	struct vring_used *used;
	struct vp_gmem_ref desc_ref;
	struct vp_gmem_ref avail_ref;
	struct vp_gmem_ref used_ref;
	char err[96]; /* why the last call failed */
};

/* Map the rings of a num-entry queue (num a power of two <= VP_VQ_MAX_SIZE,
 * addresses aligned as the spec requires) and make it ready; they stay
 * mapped until vp_vq_teardown().  flags: VP_VQ_F_*.  0, -EINVAL (bad num or
 * alignment) or -EFAULT (a ring cannot be mapped); reason in vq->err. */
int vp_vq_setup(struct vp_vq *vq, struct vp_gmem *gm, unsigned num, uint64_t desc_addr,
                uint64_t avail_addr, uint64_t used_addr, unsigned flags);
/* Unmap the rings; elements popped earlier become stale (see
 * vp_vq_elem_current).  Harmless on a queue that is not ready. */
void vp_vq_teardown(struct vp_vq *vq);
/* Take the next available chain into elem (elem->max, iov, ref set by the
 * caller).  1: got one, release it with vp_vq_elem_release(); 0: none (or
 * queue not ready); negative errno: the guest broke the protocol (reason
 * in vq->err, nothing held, the queue should not be used again). */
int vp_vq_pop(struct vp_vq *vq, struct vp_vq_elem *elem);
/* True if elem was popped from the queue's current setup, so its buffers
 * may still be written and it may be pushed. */
bool vp_vq_elem_current(const struct vp_vq *vq, const struct vp_vq_elem *elem);
/* Return elem to the driver with written bytes in its writable buffers.
 * 0, or -ESTALE (queue reset since the pop; nothing written).  Needs only
 * elem's head and generation, so release its mappings first: the driver
 * may revoke its grants as soon as it sees the used entry. */
int vp_vq_push(struct vp_vq *vq, const struct vp_vq_elem *elem, uint32_t written);
/* Release the guest memory behind elem (gm: the queue's gmem, which may
 * outlive the queue's setup). */
void vp_vq_elem_release(struct vp_gmem *gm, struct vp_vq_elem *elem);
/* After pushes: true if the driver wants a used-buffer interrupt now
 * (VIRTIO_RING_F_EVENT_IDX used_event, else VRING_AVAIL_F_NO_INTERRUPT). */
bool vp_vq_need_notify(struct vp_vq *vq);
/* Tell the driver not to kick while we are draining the queue. */
void vp_vq_disable_notify(struct vp_vq *vq);
/* Ask for kicks again before going idle.  Returns true if buffers arrived
 * meanwhile, in which case the caller must pop again. */
bool vp_vq_enable_notify(struct vp_vq *vq);

#endif
