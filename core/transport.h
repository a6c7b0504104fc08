/* SPDX-License-Identifier: MIT */
/*
 * The vproxy v1 transport for one device: the shared page (header + ring of
 * register accesses) and the event channel, feeding a virtio-mmio device
 * model (vdev.h).  See docs/PROTOCOL.md.
 *
 * The transport registers its own event channel port and its own poller
 * with the loop (loop.h); its owner only opens, attaches and closes it.
 */
#ifndef VP_TRANSPORT_H
#define VP_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gmem.h"

struct vp_hv;
struct vp_loop;
struct vp_vdev;
struct vp_transport;

/* Called once when the guest breaks the transport itself (malformed ring);
 * the device is unusable until the frontend reconnects. */
typedef void (*vp_transport_broken_fn)(void *opaque, const char *why);

struct vp_transport_params {
	uint16_t dom;            /* frontend domid */
	uint16_t devid;          /* device id within the guest */
	enum vp_addr_mode mode;  /* how the frontend gives addresses */
	uint64_t ring_ref;       /* gfn or grant ref of the shared page */
	uint32_t remote_port;    /* the frontend's unbound event channel */
	size_t gmem_cache_bytes; /* bound of the gfn mapping cache */
	vp_transport_broken_fn broken;
	void *opaque;
};

/* Map the shared page, check its header, bind the event channel, register
 * its port with loop (kicks are served once attached) and set up guest
 * memory access.  Returns NULL and writes a reason to err. */
struct vp_transport *vp_transport_open(struct vp_loop *loop, struct vp_hv *hv,
				       const struct vp_transport_params *p,
				       char *err, size_t errlen);
/* The local event channel port. */
int vp_transport_port(const struct vp_transport *t);
/* Guest memory of this device; owned by the transport. */
struct vp_gmem *vp_transport_gmem(struct vp_transport *t);
/* Start serving register accesses to vdev (owned by the caller). */
void vp_transport_attach(struct vp_transport *t, struct vp_vdev *vdev);
/* Stop serving the device (before destroying it): port and poller off. */
void vp_transport_detach(struct vp_transport *t);
/* Serve everything on the ring (what a kick on the port does). */
void vp_transport_kick(struct vp_transport *t);
/* vdev host hook: set interrupt bits in the shared page and notify. */
void vp_transport_raise_irq(void *transport, uint32_t bits);
/* True once the guest broke the ring. */
bool vp_transport_is_broken(const struct vp_transport *t);
/* Unbind, unmap and free.  The device must be detached and destroyed. */
void vp_transport_close(struct vp_transport *t);

#endif
