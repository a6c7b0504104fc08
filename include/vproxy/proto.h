/* SPDX-License-Identifier: MIT */
/*
 * vproxy wire protocol, version 1: the contract between the guest's proxy
 * stub and vproxyd.  Documented field by field in docs/PROTOCOL.md.
 *
 * One shared page per device, granted (or given by gfn) by the frontend:
 *
 *   offset 0    struct vproxy_page_hdr   (64 bytes)
 *   offset 64   Xen shared ring (xen/io/ring.h) of vproxy_mmio_req / vproxy_mmio_rsp,
 *               sized to the rest of the page.
 *
 * All fields are little-endian (the guest's and backend's native order on
 * every architecture Xen supports).  "FE" = the guest stub writes it,
 * "BE" = vproxyd writes it.
 */
#ifndef VPROXY_PROTO_H
#define VPROXY_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include <xen/io/ring.h>
#include <xen/xen.h>

/* ring.h's barriers are its includer's business (for old interface
 * versions it maps them to kernel mb()/rmb()/wmb()); use C11 fences, which
 * are what the ring protocol needs between two CPUs. */
#undef xen_mb
#undef xen_rmb
#undef xen_wmb
#define xen_mb() __atomic_thread_fence(__ATOMIC_SEQ_CST)
#define xen_rmb() __atomic_thread_fence(__ATOMIC_ACQUIRE)
#define xen_wmb() __atomic_thread_fence(__ATOMIC_RELEASE)

#define VPROXY_PROTO_VERSION 1u
#define VPROXY_PAGE_SIZE 4096u
#define VPROXY_PAGE_MAGIC 0x31505056u /* "VPP1" */

/* xenstore device type under backend/ and device/. */
#define VPROXY_XS_TYPE "vproxy"

/* The largest domid either end accepts (of a guest, of a backend):
 * xen/xen.h's DOMID_FIRST_RESERVED and above are not ordinary domains. */
#define VPROXY_DOMID_MAX (DOMID_FIRST_RESERVED - 1u)

/* Header at the start of the shared page. */
struct vproxy_page_hdr {
	uint32_t magic;      /* FE: VPROXY_PAGE_MAGIC, written before state 3 */
	uint32_t version;    /* FE: VPROXY_PROTO_VERSION */
	/*
	 * BE sets bits (atomic OR) before notifying the event channel; the
	 * stub serves virtio-mmio InterruptStatus reads from it and clears
	 * bits on InterruptACK writes (atomic AND-NOT), with no round trip.
	 * Bit 0: used buffer notification, bit 1: configuration change.
	 */
	uint32_t irq_status;
	uint32_t reserved0;  /* zero */
	uint64_t reserved[6]; /* zero; room for later versions */
};

/* Request opcodes. */
#define VPROXY_OP_READ 1  /* read a virtio-mmio register */
#define VPROXY_OP_WRITE 2 /* write a virtio-mmio register (posted) */

/* Response status. */
#define VPROXY_ST_OK 0
#define VPROXY_ST_BAD_OP 1     /* unknown opcode */
#define VPROXY_ST_BAD_ACCESS 2 /* size/alignment/offset not allowed */

/* The virtio-mmio register window a request addresses (virtio 1.2, 4.2.2):
 * offsets 0x000..0xfff, config space from 0x100. */
#define VPROXY_MMIO_SIZE 0x1000u

/* The two registers served from vproxy_page_hdr.irq_status, numbered as in
 * linux/virtio_mmio.h (VIRTIO_MMIO_INTERRUPT_STATUS, _ACK), which a
 * portable stub cannot include. */
#define VPROXY_REG_INTERRUPT_STATUS 0x060u
#define VPROXY_REG_INTERRUPT_ACK 0x064u

/* One register access, written by FE. */
struct vproxy_mmio_req {
	uint8_t op;        /* VPROXY_OP_* */
	uint8_t size;      /* 1, 2, 4 (8 only for config space) */
	uint16_t id;       /* echoed in the response */
	uint32_t offset;   /* virtio-mmio register offset, below VPROXY_MMIO_SIZE */
	uint64_t value;    /* WRITE: the value; READ: zero */
};

/* The answer to one request, written by BE, in request order. */
struct vproxy_mmio_rsp {
	uint16_t id;       /* the request's id */
	uint8_t status;    /* VPROXY_ST_* */
	uint8_t reserved0;
	uint32_t reserved1;
	uint64_t value;    /* READ: the register value; WRITE: zero */
};

DEFINE_RING_TYPES(vproxy, struct vproxy_mmio_req, struct vproxy_mmio_rsp);

#define VPROXY_RING_OFFSET 64u
#define VPROXY_RING_BYTES (VPROXY_PAGE_SIZE - VPROXY_RING_OFFSET)

/* The shared ring inside a mapped shared page. */
static inline struct vproxy_sring *vproxy_page_sring(void *page)
{
	return (struct vproxy_sring *)((char *)page + VPROXY_RING_OFFSET);
}

/* Guest address encoding in grant mode (as Linux's xen-grant-dma). */
#define VPROXY_GRANT_ADDR_FLAG (1ULL << 63)
#define VPROXY_GRANT_ADDR(gref, off) \
	(VPROXY_GRANT_ADDR_FLAG | ((uint64_t)(gref) << 12) | ((off) & 0xfffu))

#endif
