/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The vproxy wire protocol, version 1, in kernel types: one shared page per
 * device (a 64-byte header, then a xen/io/ring.h ring of 16-byte register
 * accesses).  docs/PROTOCOL.md is normative; include/vproxy/proto.h
 * is the same layout for userspace.
 */
#ifndef VPROXY_PROTO_H
#define VPROXY_PROTO_H

#include <linux/bits.h>
#include <linux/types.h>
#include <xen/interface/io/ring.h>

#define VPROXY_PROTO_VERSION	1
#define VPROXY_PAGE_MAGIC	0x31505056	/* "VPP1" */
#define VPROXY_RING_OFFSET	64
#define VPROXY_RING_BYTES	(XEN_PAGE_SIZE - VPROXY_RING_OFFSET)

/* Grant-mode guest address: 1 << 63 | gref << 12 | offset. */
#define VPROXY_GRANT_ADDR_FLAG	BIT_ULL(63)

#define VPROXY_OP_READ		1
#define VPROXY_OP_WRITE		2
#define VPROXY_ST_OK		0

/* Start of the shared page. */
struct vproxy_page_hdr {
	__le32 magic;		/* FE: VPROXY_PAGE_MAGIC */
	__le32 version;		/* FE: VPROXY_PROTO_VERSION */
	/* BE ORs bits in before notifying; FE clears them (atomically). */
	u32 irq_status;
	__le32 reserved0;
	__le64 reserved[6];
};

/* One register access, written by the frontend. */
struct vproxy_mmio_req {
	u8 op;			/* VPROXY_OP_* */
	u8 size;		/* 1, 2, 4 or 8 */
	u16 id;			/* echoed in the response */
	u32 offset;		/* virtio-mmio register offset */
	u64 value;		/* WRITE: the value; READ: zero */
};

/* Its answer, written by the backend in request order. */
struct vproxy_mmio_rsp {
	u16 id;
	u8 status;		/* VPROXY_ST_* */
	u8 reserved0;
	u32 reserved1;
	u64 value;		/* READ: the register's value */
};

DEFINE_RING_TYPES(vproxy, struct vproxy_mmio_req, struct vproxy_mmio_rsp);

#endif
