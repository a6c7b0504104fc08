/* SPDX-License-Identifier: MIT */
/*
 * Fuzzes the device side of a split virtqueue (core/virtio/virtqueue.c) over guest
 * memory reached through core/hv/gmem.c, in gfn and grant mode, with and
 * without EVENT_IDX, indirect descriptors and the mapping caches.  The
 * guest is the input: its RAM holds whatever descriptor chains, indirect
 * tables, indices and addresses the input says, and a list of operations
 * interleaves the device's pops and pushes with the guest rewriting its
 * rings.  Every buffer popped is read or written whole, through the guard
 * page hypervisor (fake_hv.c), so a buffer that reaches past what the
 * guest offered faults; at the end every mapping must be released.
 *
 * Input: cfg u8, log2(num) u8, desc/avail/used addresses u32 each,
 * grant overrides (count u8, then ref u8 gfn u16 writable u8 each),
 * RAM image (length u16, bytes, copied to guest address 0), then
 * operations (op u8 + arguments) to the end.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fake_hv.h"
#include "fuzz_input.h"
#include "gmem.h"
#include "virtqueue.h"

#define RAM_PAGES 1024u
#define RAM_IMAGE_MAX (16u << 10)
#define MAX_HELD 64u
#define ELEM_MAX 64u
#define GRANT_ADDR_FLAG (1ull << 63)

enum cfg_bits {
	CFG_GRANT = 0x01,
	CFG_EVENT_IDX = 0x02,
	CFG_INDIRECT = 0x04,
	CFG_CACHE = 0x08, /* gfn chunk cache, or persistent grants */
	CFG_HOLE = 0x10,  /* the second 2 MiB chunk has a hole */
};

struct held {
	struct vp_vq_elem elem;
	struct iovec iov[ELEM_MAX];
	struct vp_gmem_ref ref[ELEM_MAX];
};

static struct vp_hv *hv;
static struct held held[MAX_HELD];
static unsigned nheld;
static volatile uint8_t sink;

/* Use every byte the device was given: read the readable buffers, fill
 * the writable ones.  Out of bounds or a read-only page faults. */
static void touch(const struct vp_vq_elem *e)
{
	uint64_t out = 0, in = 0;
	uint8_t acc = 0;

	for (unsigned i = 0; i < e->out_num + e->in_num; i++) {
		const struct iovec *v = &e->iov[i];

		if (!v->iov_base || v->iov_len == 0)
			abort();
		if (i < e->out_num) {
			for (size_t j = 0; j < v->iov_len; j++)
				acc ^= ((const uint8_t *)v->iov_base)[j];
			out += v->iov_len;
		} else {
			memset(v->iov_base, 0xa5, v->iov_len);
			in += v->iov_len;
		}
	}
	if (out != e->out_len || in != e->in_len)
		abort();
	sink = acc;
}

static void release_held(struct vp_gmem *gm, unsigned i)
{
	vp_vq_elem_release(gm, &held[i].elem);
	/* Keep the order: the oldest stays first. */
	memmove(&held[i], &held[i + 1], (nheld - i - 1) * sizeof(held[0]));
	nheld--;
	for (unsigned k = 0; k < nheld; k++) {
		held[k].elem.iov = held[k].iov;
		held[k].elem.ref = held[k].ref;
	}
}

/* Pop one chain into a held slot: 1 got one, 0 none, < 0 guest error. */
static int pop_one(struct vp_vq *vq)
{
	struct held *h;
	int r;

	if (nheld == MAX_HELD)
		return 0;
	h = &held[nheld];
	memset(&h->elem, 0, sizeof(h->elem));
	h->elem.max = ELEM_MAX;
	h->elem.iov = h->iov;
	h->elem.ref = h->ref;
	r = vp_vq_pop(vq, &h->elem);
	if (r == 1) {
		touch(&h->elem);
		nheld++;
	} else if (h->elem.out_num || h->elem.in_num) {
		abort(); /* a failed pop must hold nothing */
	}
	return r;
}

static uint64_t ring_addr(uint8_t cfg, uint32_t v)
{
	return cfg & CFG_GRANT ? GRANT_ADDR_FLAG | v : v;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz in = {data, size};
	struct vp_vq vq;
	struct vp_gmem *gm;
	uint8_t cfg, *ram;
	unsigned num, flags = 0, ngrants, len;
	uint64_t desc, avail, used;
	bool broken = false;

	if (!hv)
		hv = fake_hv_new(RAM_PAGES);
	fake_hv_reset(hv);
	ram = fake_hv_ram(hv);

	cfg = fz_u8(&in);
	num = 1u << (fz_u8(&in) % 12); /* 1..2048: 2048 is refused */
	desc = ring_addr(cfg, fz_u32(&in));
	avail = ring_addr(cfg, fz_u32(&in));
	used = ring_addr(cfg, fz_u32(&in));
	if (cfg & CFG_EVENT_IDX)
		flags |= VP_VQ_F_EVENT_IDX;
	if (cfg & CFG_INDIRECT)
		flags |= VP_VQ_F_INDIRECT;
	if (cfg & CFG_HOLE)
		fake_hv_set_hole(hv, 512 + 7);
	/* By default grant ref N is guest page N, writable; the input
	 * overrides some (read-only, other pages, beyond RAM). */
	for (unsigned r = 0; r < 64; r++)
		fake_hv_grant(hv, r, r, true);
	ngrants = fz_u8(&in) % 32;
	for (unsigned i = 0; i < ngrants; i++) {
		uint8_t ref = fz_u8(&in);
		uint16_t gfn = fz_u16(&in);

		fake_hv_grant(hv, ref, gfn, fz_u8(&in) & 1);
	}
	len = fz_u16(&in);
	if (len > RAM_IMAGE_MAX)
		len = RAM_IMAGE_MAX;
	fz_bytes(&in, ram, len);

	gm = vp_gmem_new(hv, 5, cfg & CFG_GRANT ? VP_ADDR_GRANT : VP_ADDR_GFN,
	                 cfg & CFG_CACHE ? 4u << 20 : 0);
	if (!gm)
		abort();
	if ((cfg & (CFG_GRANT | CFG_CACHE)) == (CFG_GRANT | CFG_CACHE) &&
	    vp_gmem_set_grant_cache(gm, 64) != 0)
		abort();
	memset(&vq, 0, sizeof(vq));
	if (vp_vq_setup(&vq, gm, num, desc, avail, used, flags) < 0)
		goto out;

	while (fz_more(&in)) {
		uint8_t op = fz_u8(&in);

		switch (op % 10) {
		case 0:
			if (!broken && pop_one(&vq) < 0)
				broken = true;
			break;
		case 1: {
			uint32_t written = fz_u32(&in);

			if (nheld) {
				int r = vp_vq_push(&vq, &held[0].elem, written);

				if (r != 0 && vp_vq_elem_current(&vq, &held[0].elem))
					abort();
				release_held(gm, 0);
			}
			break;
		}
		case 2: {
			/* The guest rewrites its memory under the device. */
			uint32_t at = fz_u16(&in) * 2u;
			uint16_t v = fz_u16(&in);

			memcpy(ram + at, &v, sizeof(v));
			break;
		}
		case 3: vp_vq_enable_notify(&vq); break;
		case 4: vp_vq_disable_notify(&vq); break;
		case 5: vp_vq_need_notify(&vq); break;
		case 6:
			/* Reset and set up again: held elements go stale. */
			vp_vq_teardown(&vq);
			broken = false;
			if (vp_vq_setup(&vq, gm, num, desc, avail, used, flags) < 0)
				goto out;
			break;
		case 7:
			/* Drain: pop and push everything, as a device does. */
			for (unsigned k = 0; k < 2 * VP_VQ_MAX_SIZE && !broken; k++) {
				int r = pop_one(&vq);

				if (r < 0)
					broken = true;
				if (r <= 0)
					break;
				vp_vq_push(&vq, &held[nheld - 1].elem,
				           (uint32_t)held[nheld - 1].elem.in_len);
				release_held(gm, nheld - 1);
			}
			vp_vq_need_notify(&vq);
			break;
		case 8: {
			/* The guest makes k more entries available from head on
			 * (gfn mode, avail ring inside RAM: the guest's own view). */
			uint16_t k = fz_u8(&in), head = fz_u16(&in);
			struct vring_avail *ga;

			if ((cfg & CFG_GRANT) ||
			    avail + 6 + 2 * (uint64_t)num > (uint64_t)RAM_PAGES * 4096)
				break;
			ga = (void *)(ram + avail);
			for (uint16_t j = 0; j < k; j++) {
				uint16_t idx = ga->idx;

				ga->ring[idx & (num - 1)] = (uint16_t)(head + j);
				__atomic_store_n(&ga->idx, (uint16_t)(idx + 1),
				                 __ATOMIC_RELEASE);
			}
			break;
		}
		case 9:
			if (nheld)
				release_held(gm, 0);
			break;
		}
	}
out:
	while (nheld)
		release_held(gm, nheld - 1);
	vp_vq_teardown(&vq);
	vp_gmem_free(gm);
	fake_hv_check_released(hv);
	return 0;
}
