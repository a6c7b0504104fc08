/* SPDX-License-Identifier: MIT */
/*
 * A small virtio-blk driver for the harnesses, in the guest's RAM of the
 * fuzzing hypervisor: it lays out split rings, builds request chains
 * (direct or through an indirect table) from a description and reads the
 * used ring back, checking what the device reported.  Register accesses go
 * through a callback, straight to the device model or over the transport.
 */
#ifndef VP_FUZZ_GUEST_H
#define VP_FUZZ_GUEST_H

#include <stdbool.h>
#include <stdint.h>

#include "fuzz_input.h"

struct vp_hv;

#define FG_MAX_QUEUES 4u
#define FG_QUEUE_BYTES 0x4000u /* desc, avail, used of one queue */
#define FG_HEAP_START (FG_MAX_QUEUES * FG_QUEUE_BYTES)

/* Register access: read (write false, *value out) or write. */
typedef void (*fg_reg_fn)(void *opaque, uint32_t offset, unsigned size, bool write,
                          uint64_t *value);

struct fg_queue {
	unsigned num;
	uint16_t next_desc;
	uint16_t avail_idx;
	uint16_t used_seen;
	uint32_t in_len[1024]; /* writable bytes of the chain at each head */
	uint16_t chain[1024];  /* descriptors the chain at each head holds */
	bool busy[1024];       /* descriptor in a chain the device has */
};

struct fg {
	struct vp_hv *hv;
	uint8_t *ram;
	uint64_t ram_bytes;
	bool grant; /* addresses in grant form (refs granted 1:1 to pages) */
	unsigned nq;
	struct fg_queue q[FG_MAX_QUEUES];
	uint64_t heap;
	fg_reg_fn reg;
	void *opaque;
	/* The guest did something that changes the data of writes after the
	 * fact (reused a buffer in flight, scribbled, mislabelled a buffer):
	 * fuzz_disk_expect_pattern() must be off. */
	bool tainted;
};

/* Set up the driver over hv's RAM; grant mode grants every page to the
 * backend (writable) under the ref equal to its frame number. */
void fg_init(struct fg *g, struct vp_hv *hv, bool grant, fg_reg_fn reg, void *opaque);
/* Write a register. */
void fg_write(struct fg *g, uint32_t offset, uint32_t value);
/* Read a register. */
uint32_t fg_read(struct fg *g, uint32_t offset);
/* The virtio init sequence: reset, ACKNOWLEDGE|DRIVER, the features the
 * device offers masked by feature_mask (VERSION_1 always), FEATURES_OK,
 * nq queues of num entries (clamped to QueueNumMax), DRIVER_OK. */
void fg_setup(struct fg *g, uint64_t feature_mask, unsigned nq, unsigned num);
/* Build one request from the input (see fuzz_guest.c) on a queue and make
 * it available; notify when the input says so. */
void fg_request(struct fg *g, struct fz *in);
/* Check the used ring entries that arrived since the last call. */
void fg_harvest(struct fg *g);
/* Address of RAM offset off as the device must be given it. */
uint64_t fg_addr(const struct fg *g, uint64_t off);

#endif
