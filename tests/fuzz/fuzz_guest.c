/* SPDX-License-Identifier: MIT */
/* The harnesses' virtio-blk driver (fuzz_guest.h). */
#include "fuzz_guest.h"

#include <linux/virtio_blk.h>
#include <linux/virtio_config.h>
#include <linux/virtio_mmio.h>
#include <linux/virtio_ring.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fake_hv.h"

#define GRANT_ADDR_FLAG (1ull << 63)
#define MAX_PIECES 4u
#define MAX_PAYLOAD 8192u
#define MAX_SEGS 40u

/* Request types the input picks by index; the last reads a raw type. */
static const uint32_t types[] = {
        VIRTIO_BLK_T_IN,           VIRTIO_BLK_T_OUT,     VIRTIO_BLK_T_FLUSH,
        VIRTIO_BLK_T_GET_ID,       VIRTIO_BLK_T_DISCARD, VIRTIO_BLK_T_WRITE_ZEROES,
        VIRTIO_BLK_T_SECURE_ERASE,
};

uint64_t fg_addr(const struct fg *g, uint64_t off)
{
	return g->grant ? GRANT_ADDR_FLAG | off : off;
}

void fg_init(struct fg *g, struct vp_hv *hv, bool grant, fg_reg_fn reg, void *opaque)
{
	memset(g, 0, sizeof(*g));
	g->hv = hv;
	g->ram = fake_hv_ram(hv);
	g->ram_bytes = (uint64_t)fake_hv_pages(hv) * 4096;
	g->grant = grant;
	g->reg = reg;
	g->opaque = opaque;
	g->heap = FG_HEAP_START;
	if (grant)
		for (unsigned p = 0; p < fake_hv_pages(hv) && p < FAKE_HV_MAX_GRANTS; p++)
			fake_hv_grant(hv, p, p, true);
}

void fg_write(struct fg *g, uint32_t offset, uint32_t value)
{
	uint64_t v = value;

	g->reg(g->opaque, offset, 4, true, &v);
}

uint32_t fg_read(struct fg *g, uint32_t offset)
{
	uint64_t v = 0;

	g->reg(g->opaque, offset, 4, false, &v);
	return (uint32_t)v;
}

void fg_setup(struct fg *g, uint64_t feature_mask, unsigned nq, unsigned num)
{
	uint64_t offered, want;
	unsigned max;

	fg_write(g, VIRTIO_MMIO_STATUS, 0);
	fg_write(g, VIRTIO_MMIO_STATUS,
	         VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
	fg_write(g, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
	offered = fg_read(g, VIRTIO_MMIO_DEVICE_FEATURES);
	fg_write(g, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
	offered |= (uint64_t)fg_read(g, VIRTIO_MMIO_DEVICE_FEATURES) << 32;
	want = (offered & feature_mask) | (1ull << VIRTIO_F_VERSION_1);
	fg_write(g, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
	fg_write(g, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)want);
	fg_write(g, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
	fg_write(g, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)(want >> 32));
	fg_write(g, VIRTIO_MMIO_STATUS,
	         VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
	                 VIRTIO_CONFIG_S_FEATURES_OK);
	g->nq = nq < FG_MAX_QUEUES ? nq : FG_MAX_QUEUES;
	for (unsigned q = 0; q < g->nq; q++) {
		uint64_t base = (uint64_t)q * FG_QUEUE_BYTES;
		struct fg_queue *fq = &g->q[q];

		fg_write(g, VIRTIO_MMIO_QUEUE_SEL, q);
		max = fg_read(g, VIRTIO_MMIO_QUEUE_NUM_MAX);
		memset(fq, 0, sizeof(*fq));
		fq->num = num < max ? num : max;
		if (fq->num > 256)
			fq->num = 256; /* what fits FG_QUEUE_BYTES */
		if (fq->num == 0)
			continue;
		memset(g->ram + base, 0, FG_QUEUE_BYTES);
		fg_write(g, VIRTIO_MMIO_QUEUE_NUM, fq->num);
		fg_write(g, VIRTIO_MMIO_QUEUE_DESC_LOW, (uint32_t)fg_addr(g, base));
		fg_write(g, VIRTIO_MMIO_QUEUE_DESC_HIGH,
		         (uint32_t)(fg_addr(g, base) >> 32));
		fg_write(g, VIRTIO_MMIO_QUEUE_AVAIL_LOW,
		         (uint32_t)fg_addr(g, base + 0x1000));
		fg_write(g, VIRTIO_MMIO_QUEUE_AVAIL_HIGH,
		         (uint32_t)(fg_addr(g, base + 0x1000) >> 32));
		fg_write(g, VIRTIO_MMIO_QUEUE_USED_LOW,
		         (uint32_t)fg_addr(g, base + 0x2000));
		fg_write(g, VIRTIO_MMIO_QUEUE_USED_HIGH,
		         (uint32_t)(fg_addr(g, base + 0x2000) >> 32));
		fg_write(g, VIRTIO_MMIO_QUEUE_READY, 1);
	}
	fg_write(g, VIRTIO_MMIO_STATUS,
	         VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
	                 VIRTIO_CONFIG_S_FEATURES_OK | VIRTIO_CONFIG_S_DRIVER_OK);
}

/* Room for len bytes in the heap (wrapping: a guest may reuse buffers of
 * requests in flight, the device must cope). */
static uint64_t heap_alloc(struct fg *g, uint64_t len)
{
	uint64_t a;

	if (g->heap + len > g->ram_bytes) {
		g->heap = FG_HEAP_START;
		g->tainted = true;
	}
	a = g->heap;
	g->heap = (g->heap + len + 15) & ~15ull;
	return a;
}

/* Split len bytes at the input's points into up to MAX_PIECES pieces. */
static unsigned split(struct fz *in, uint32_t len, uint32_t *piece)
{
	unsigned n = 1 + fz_u8(in) % MAX_PIECES, k = 0;
	uint32_t left = len;

	for (unsigned i = 0; i + 1 < n && left > 1; i++) {
		uint32_t cut = 1 + fz_u16(in) % (left - 1);

		piece[k++] = cut;
		left -= cut;
	}
	piece[k++] = left;
	return k;
}

/*
 * Input: queue u8, type index u8 (past the table: a raw type u32), ioprio
 * u8, sector u64, out data length u16 (DISCARD/WRITE_ZEROES: a segment
 * count u8 and 16 bytes each instead), header cut u8 (bit 7: cut the
 * header to the low 4 bits' bytes), writable length u16, split of the
 * readable part, split of the writable part, flags u8 (bit 0 indirect,
 * bit 1 notify, bit 2 first writable piece marked readable).
 */
void fg_request(struct fg *g, struct fz *in)
{
	static uint8_t out[16 + MAX_PAYLOAD];
	uint32_t outp[MAX_PIECES], inp[MAX_PIECES];
	unsigned qi = fz_u8(in), ti = fz_u8(in), nout, nin, ndesc;
	uint32_t type = ti < sizeof(types) / sizeof(types[0]) ? types[ti] : fz_u32(in);
	uint32_t ioprio = fz_u8(in), out_len = 16, in_len;
	uint64_t sector = fz_u64(in), out_at, in_at, table = 0;
	uint8_t cut, flags;
	struct fg_queue *q;
	struct vring_desc *dt;
	struct vring_avail *avail;
	uint16_t head;

	if (type == VIRTIO_BLK_T_DISCARD || type == VIRTIO_BLK_T_WRITE_ZEROES) {
		unsigned nseg = fz_u8(in) % MAX_SEGS;

		fz_bytes(in, out + 16, 16u * nseg);
		out_len += 16u * nseg;
	} else {
		uint32_t dlen = fz_u16(in) % MAX_PAYLOAD;

		for (uint32_t i = 0; i < dlen; i++)
			out[16 + i] = (uint8_t)(i * 7 + sector);
		out_len += dlen;
	}
	memcpy(out, &type, 4);
	memcpy(out + 4, &ioprio, 4);
	memcpy(out + 8, &sector, 8);
	cut = fz_u8(in);
	if (cut & 0x80)
		out_len = cut & 0xf;
	in_len = fz_u16(in) % (MAX_PAYLOAD + 2);
	nout = out_len ? split(in, out_len, outp) : 0;
	nin = in_len ? split(in, in_len, inp) : 0;
	flags = fz_u8(in);
	if (g->nq == 0)
		return;
	q = &g->q[qi % g->nq];
	if (q->num == 0 || nout + nin == 0)
		return;

	ndesc = nout + nin;
	head = q->next_desc;
	/* Like a real driver, only free descriptors (the virtqueue fuzzer
	 * covers rings that lie): a run of them from next_desc on. */
	for (unsigned i = 0; i < (flags & 1 ? 1u : ndesc); i++)
		if (i >= q->num || q->busy[(head + i) % q->num])
			return;
	if (flags & 1) {
		table = heap_alloc(g, 16u * ndesc);
		dt = (struct vring_desc *)(void *)(g->ram + table);
	} else {
		dt = NULL;
	}
	out_at = heap_alloc(g, out_len ? out_len : 1);
	memcpy(g->ram + out_at, out, out_len);
	in_at = heap_alloc(g, in_len ? in_len : 1);
	memset(g->ram + in_at, 0xee, in_len);
	for (unsigned i = 0; i < ndesc; i++) {
		bool w = i >= nout;
		uint32_t len = w ? inp[i - nout] : outp[i];
		struct vring_desc d = {
		        .addr = fg_addr(g, w ? in_at : out_at),
		        .len = len,
		        .flags = (uint16_t)((w ? VRING_DESC_F_WRITE : 0) |
		                            (i + 1 < ndesc ? VRING_DESC_F_NEXT : 0)),
		};
		unsigned slot = dt ? i : (unsigned)(head + i) % q->num;

		if (w && i == nout && (flags & 4)) {
			d.flags &= (uint16_t)~VRING_DESC_F_WRITE;
			g->tainted = true;
		}
		d.next = (uint16_t)(dt ? i + 1 : (head + i + 1) % q->num);
		if (w)
			in_at += len;
		else
			out_at += len;
		if (dt)
			dt[i] = d;
		else
			((struct vring_desc *)(void *)(g->ram +
			                               (qi % g->nq) *
			                                       FG_QUEUE_BYTES))[slot] = d;
	}
	if (dt) {
		struct vring_desc d = {.addr = fg_addr(g, table),
		                       .len = 16u * ndesc,
		                       .flags = VRING_DESC_F_INDIRECT};

		((struct vring_desc *)(void *)(g->ram +
		                               (qi % g->nq) * FG_QUEUE_BYTES))[head] = d;
		ndesc = 1;
	}
	q->next_desc = (uint16_t)((head + ndesc) % q->num);
	q->chain[head] = (uint16_t)ndesc;
	for (unsigned i = 0; i < ndesc; i++)
		q->busy[(head + i) % q->num] = true;
	q->in_len[head] = in_len;
	avail = (struct vring_avail *)(void *)(g->ram + (qi % g->nq) * FG_QUEUE_BYTES +
	                                       0x1000);
	avail->ring[q->avail_idx % q->num] = head;
	__atomic_store_n(&avail->idx, ++q->avail_idx, __ATOMIC_RELEASE);
	if (flags & 2)
		fg_write(g, VIRTIO_MMIO_QUEUE_NOTIFY, qi % g->nq);
}

void fg_harvest(struct fg *g)
{
	for (unsigned qi = 0; qi < g->nq; qi++) {
		struct fg_queue *q = &g->q[qi];
		struct vring_used *used;
		uint16_t idx;

		if (q->num == 0)
			continue;
		used = (struct vring_used *)(void *)(g->ram + qi * FG_QUEUE_BYTES +
		                                     0x2000);
		idx = __atomic_load_n(&used->idx, __ATOMIC_ACQUIRE);
		/* The device never returns more than was made available. */
		if ((uint16_t)(idx - q->used_seen) >
		    (uint16_t)(q->avail_idx - q->used_seen)) {
			fprintf(stderr, "fuzz_guest: used idx %u ahead of avail idx %u\n",
			        idx, q->avail_idx);
			abort();
		}
		for (; q->used_seen != idx; q->used_seen++) {
			const struct vring_used_elem *u =
			        &used->ring[q->used_seen % q->num];

			if (u->id >= q->num) {
				fprintf(stderr, "fuzz_guest: used id %u out of range\n",
				        u->id);
				abort();
			}
			if (!q->busy[u->id]) {
				fprintf(stderr,
				        "fuzz_guest: used id %u is not in flight\n",
				        u->id);
				abort();
			}
			if (u->len > q->in_len[u->id]) {
				fprintf(stderr,
				        "fuzz_guest: used len %u beyond the %u writable "
				        "bytes\n",
				        u->len, q->in_len[u->id]);
				abort();
			}
			for (unsigned i = 0; i < q->chain[u->id]; i++)
				q->busy[(u->id + i) % q->num] = false;
		}
	}
}
