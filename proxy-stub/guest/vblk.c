/* SPDX-License-Identifier: MIT */
/*
 * virtio-blk driver over the proxy stub: virtio-mmio v2 initialisation,
 * split virtqueues in platform DMA memory, asynchronous requests.
 *
 * Per queue, one DMA allocation holds the descriptor table, the avail and
 * used rings, one 64-byte slot per descriptor index (request header,
 * discard range, status byte) and, with INDIRECT_DESC, one indirect table
 * per descriptor index.  A request is known by its head descriptor index.
 */
#include "vblk.h"

#include "stub.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/virtio_blk.h>
#include <linux/virtio_config.h>
#include <linux/virtio_ids.h>
#include <linux/virtio_mmio.h>
#include <linux/virtio_ring.h>

#define VIRTIO_MMIO_MAGIC 0x74726976u
#define DEFAULT_MAX_IO (1u << 20)
#define SECTOR 512u
#define CONFIG_RETRIES 16
#define CFG(field)                                                                       \
	(VIRTIO_MMIO_CONFIG + (uint32_t)offsetof(struct virtio_blk_config, field))

/* Per descriptor index: the header, the discard/write-zeroes range and the
 * status byte of the request whose head it is. */
#define SLOT_BYTES 64u
#define SLOT_HDR 0u
#define SLOT_DWZ 16u
#define SLOT_STATUS 32u

#define BIT(n) (1ull << (n))
#define WANTED_FEATURES                                                                  \
	(BIT(VIRTIO_F_VERSION_1) | BIT(VIRTIO_F_ACCESS_PLATFORM) |                       \
	 BIT(VIRTIO_BLK_F_SIZE_MAX) | BIT(VIRTIO_BLK_F_SEG_MAX) | BIT(VIRTIO_BLK_F_RO) | \
	 BIT(VIRTIO_BLK_F_BLK_SIZE) | BIT(VIRTIO_BLK_F_FLUSH) | BIT(VIRTIO_BLK_F_MQ) |   \
	 BIT(VIRTIO_BLK_F_DISCARD) | BIT(VIRTIO_BLK_F_WRITE_ZEROES) |                    \
	 BIT(VIRTIO_RING_F_EVENT_IDX) | BIT(VIRTIO_RING_F_INDIRECT_DESC))

/* A gfn-mode address no guest RAM reaches, and a grant ref no guest has. */
#define BAD_GFN_ADDR (1ull << 52)
#define BAD_GREF 0x7ffffff0u

struct vblk_slot {
	uint64_t tag;
	uint16_t ndesc; /* ring descriptors the request holds */
	bool busy;
};

struct vblk_queue {
	struct vblk_driver *d;
	unsigned index;
	uint16_t size;
	void *mem;
	size_t mem_bytes;
	uint64_t mem_addr;
	struct vring_desc *desc;
	struct vring_avail *avail;
	struct vring_used *used;
	uint8_t *slot_mem;
	uint64_t slot_addr;
	struct vring_desc *ind; /* indirect tables, NULL without INDIRECT */
	uint64_t ind_addr;
	struct vblk_slot *slot; /* private, by head index */
	uint16_t *next;         /* private copy of the chain links */
	uint16_t free_head;
	unsigned num_free;
	uint16_t avail_idx;  /* next avail entry */
	uint16_t kicked_idx; /* avail_idx at the last kick */
	uint16_t last_used;
	unsigned inflight;
};

/* The driver of one device: its frontend (the stub), queues and buffers. */
struct vblk_driver {
	struct vps_frontend *vps;
	const struct vps_platform *p;
	uint16_t be;
	uint32_t status;
	struct vblk_info info;
	struct vblk_queue *q;
	unsigned nq;
	uint32_t seg_bytes;   /* largest data descriptor */
	unsigned max_segs;    /* data descriptors per request */
	unsigned ind_entries; /* indirect table entries per request */
	bool config_changed;  /* set by the interrupt handler */
	bool poisoned;        /* vblk_debug_corrupt() broke a queue */
	bool stopped;         /* vblk_stop() reset the device */
	enum vblk_health health;
	int health_err;
	struct vblk_stats stats;
	uint64_t timeout_ns;
	char error[200];
};

/* The event index fields at the ends of the rings (EVENT_IDX). */
static uint16_t *used_event(struct vblk_queue *q)
{
	return &q->avail->ring[q->size];
}

static uint16_t *avail_event(struct vblk_queue *q)
{
	return (uint16_t *)&q->used->ring[q->size];
}

static void set_health(struct vblk_driver *d, enum vblk_health h, int err, const char *fmt,
                       ...) __attribute__((format(printf, 4, 5)));

static void set_health(struct vblk_driver *d, enum vblk_health h, int err, const char *fmt,
                       ...)
{
	va_list ap;

	if (d->health != VBLK_OK)
		return;
	d->health = h;
	d->health_err = err;
	va_start(ap, fmt);
	vsnprintf(d->error, sizeof(d->error), fmt, ap);
	va_end(ap);
}

/* Open failures before the device is usable, in d->error. */
static int fail(struct vblk_driver *d, int err, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

static int fail(struct vblk_driver *d, int err, const char *fmt, ...)
{
	va_list ap;

	if (!d->error[0]) {
		va_start(ap, fmt);
		vsnprintf(d->error, sizeof(d->error), fmt, ap);
		va_end(ap);
	}
	return err;
}

/* A stub error tells the device's health: -ENODEV means the backend left. */
static int stub_error(struct vblk_driver *d, int r)
{
	if (r == -ENODEV)
		set_health(d, VBLK_GONE, -ENODEV, "%s", vps_error(d->vps));
	return r;
}

static int rd(struct vblk_driver *d, uint32_t off, unsigned size, uint32_t *v)
{
	uint64_t x;
	int r = vps_read(d->vps, off, size, &x);

	*v = (uint32_t)x;
	return r < 0 ? stub_error(d, r) : 0;
}

static int wr(struct vblk_driver *d, uint32_t off, uint32_t v)
{
	int r = vps_write(d->vps, off, 4, v);

	return r < 0 ? stub_error(d, r) : 0;
}

static int wr64(struct vblk_driver *d, uint32_t lo_off, uint64_t v)
{
	int r = wr(d, lo_off, (uint32_t)v);

	return r < 0 ? r : wr(d, lo_off + 4, (uint32_t)(v >> 32));
}

static int set_status(struct vblk_driver *d, uint32_t bits)
{
	d->status |= bits;
	return wr(d, VIRTIO_MMIO_STATUS, d->status);
}

static uint64_t now_ns(struct vblk_driver *d)
{
	return d->p->now_ns(d->p->ctx);
}

/* Write 0 and wait for the device to read back 0 (virtio 1.x 4.2.3.1). */
static int reset_device(struct vblk_driver *d)
{
	uint64_t start = now_ns(d), deadline = start + d->timeout_ns;
	uint32_t st;
	int r;

	d->status = 0;
	d->stats.reset_polls = 0;
	r = wr(d, VIRTIO_MMIO_STATUS, 0);
	/* The device may take its time: requests it had in flight may still
	 * be using our buffers until Status reads 0. */
	for (;;) {
		if (r < 0)
			return r;
		r = rd(d, VIRTIO_MMIO_STATUS, 4, &st);
		if (r < 0)
			return r;
		d->stats.reset_wait_ns = now_ns(d) - start;
		if (st == 0)
			break;
		d->stats.reset_polls++;
		if (now_ns(d) >= deadline) {
			d->stats.reset_timeouts++;
			return fail(d, -ETIMEDOUT, "device did not reset (status 0x%x)",
			            st);
		}
		/* Interrupts raised before the reset mean nothing now. */
		r = vps_write(d->vps, VPS_REG_INTERRUPT_ACK, 4, UINT32_MAX);
		if (r == 0)
			r = vps_wait(d->vps, 1000000);
		if (r > 0)
			r = 0;
	}
	vps_write(d->vps, VPS_REG_INTERRUPT_ACK, 4, UINT32_MAX);
	return 0;
}

static void vblk_irq(void *arg)
{
	struct vblk_driver *d = arg;
	uint64_t st;

	if (vps_read(d->vps, VPS_REG_INTERRUPT_STATUS, 4, &st) < 0 || st == 0)
		return;
	vps_write(d->vps, VPS_REG_INTERRUPT_ACK, 4, st);
	d->stats.irqs++;
	if (st & VIRTIO_MMIO_INT_CONFIG)
		d->config_changed = true;
}

static int probe(struct vblk_driver *d)
{
	uint32_t magic, version, id;
	int r;

	if ((r = rd(d, VIRTIO_MMIO_MAGIC_VALUE, 4, &magic)) < 0 ||
	    (r = rd(d, VIRTIO_MMIO_VERSION, 4, &version)) < 0 ||
	    (r = rd(d, VIRTIO_MMIO_DEVICE_ID, 4, &id)) < 0)
		return fail(d, r, "cannot read the device's identity (%d)", r);
	if (magic != VIRTIO_MMIO_MAGIC)
		return fail(d, -ENODEV, "bad magic 0x%08x", magic);
	if (version != 2)
		return fail(d, -ENODEV, "virtio-mmio version %u, want 2", version);
	if (id != VIRTIO_ID_BLOCK)
		return fail(d, -ENODEV, "device id %u is not a block device", id);
	return 0;
}

static int negotiate(struct vblk_driver *d, const struct vblk_opts *o)
{
	struct vblk_info *in = &d->info;
	uint32_t lo, hi, st;
	uint64_t neg;
	int r;

	if ((r = wr(d, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0)) < 0 ||
	    (r = rd(d, VIRTIO_MMIO_DEVICE_FEATURES, 4, &lo)) < 0 ||
	    (r = wr(d, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1)) < 0 ||
	    (r = rd(d, VIRTIO_MMIO_DEVICE_FEATURES, 4, &hi)) < 0)
		return fail(d, r, "cannot read features (%d)", r);
	in->device_features = (uint64_t)hi << 32 | lo;
	neg = in->device_features & WANTED_FEATURES & ~o->refuse_features;
	if (!(neg & BIT(VIRTIO_F_VERSION_1)))
		return fail(d, -ENODEV, "%s",
		            (in->device_features & BIT(VIRTIO_F_VERSION_1))
		                    ? "VERSION_1 refused by options"
		                    : "device does not offer VERSION_1");
	if ((r = wr(d, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0)) < 0 ||
	    (r = wr(d, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)neg)) < 0 ||
	    (r = wr(d, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1)) < 0 ||
	    (r = wr(d, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)(neg >> 32))) < 0 ||
	    (r = set_status(d, VIRTIO_CONFIG_S_FEATURES_OK)) < 0 ||
	    (r = rd(d, VIRTIO_MMIO_STATUS, 4, &st)) < 0)
		return fail(d, r, "cannot write features (%d)", r);
	if (!(st & VIRTIO_CONFIG_S_FEATURES_OK))
		return fail(d, -ENOTSUP, "device refused features 0x%llx (status 0x%x)",
		            (unsigned long long)neg, st);
	in->features = neg;
	in->read_only = neg & BIT(VIRTIO_BLK_F_RO);
	in->flush = neg & BIT(VIRTIO_BLK_F_FLUSH);
	in->discard = neg & BIT(VIRTIO_BLK_F_DISCARD);
	in->write_zeroes = neg & BIT(VIRTIO_BLK_F_WRITE_ZEROES);
	in->event_idx = neg & BIT(VIRTIO_RING_F_EVENT_IDX);
	in->indirect = neg & BIT(VIRTIO_RING_F_INDIRECT_DESC);
	return 0;
}

/* One consistent snapshot of config space (ConfigGeneration unchanged
 * across the reads). */
static int read_config(struct vblk_driver *d)
{
	struct vblk_info *in = &d->info;
	uint64_t f = in->features;
	uint32_t gen1, gen2, lo, hi, v;
	int r = 0, tries;

	for (tries = 0; tries < CONFIG_RETRIES; tries++) {
		if ((r = rd(d, VIRTIO_MMIO_CONFIG_GENERATION, 4, &gen1)) < 0 ||
		    (r = rd(d, CFG(capacity), 4, &lo)) < 0 ||
		    (r = rd(d, CFG(capacity) + 4, 4, &hi)) < 0)
			break;
		in->capacity = (uint64_t)hi << 32 | lo;
		in->size_max = in->seg_max = 0;
		in->blk_size = SECTOR;
		in->dev_num_queues = 1;
		if ((f & BIT(VIRTIO_BLK_F_SIZE_MAX)) &&
		    (r = rd(d, CFG(size_max), 4, &in->size_max)) < 0)
			break;
		if ((f & BIT(VIRTIO_BLK_F_SEG_MAX)) &&
		    (r = rd(d, CFG(seg_max), 4, &in->seg_max)) < 0)
			break;
		if ((f & BIT(VIRTIO_BLK_F_BLK_SIZE)) &&
		    (r = rd(d, CFG(blk_size), 4, &in->blk_size)) < 0)
			break;
		if (f & BIT(VIRTIO_BLK_F_MQ)) {
			if ((r = rd(d, CFG(num_queues), 2, &v)) < 0)
				break;
			in->dev_num_queues = (uint16_t)v;
		}
		if ((f & BIT(VIRTIO_BLK_F_DISCARD)) &&
		    ((r = rd(d, CFG(max_discard_sectors), 4, &in->max_discard_sectors)) <
		             0 ||
		     (r = rd(d, CFG(max_discard_seg), 4, &in->max_discard_seg)) < 0 ||
		     (r = rd(d, CFG(discard_sector_alignment), 4,
		             &in->discard_sector_alignment)) < 0))
			break;
		if (f & BIT(VIRTIO_BLK_F_WRITE_ZEROES)) {
			if ((r = rd(d, CFG(max_write_zeroes_sectors), 4,
			            &in->max_write_zeroes_sectors)) < 0 ||
			    (r = rd(d, CFG(max_write_zeroes_seg), 4,
			            &in->max_write_zeroes_seg)) < 0 ||
			    (r = rd(d, CFG(write_zeroes_may_unmap), 1, &v)) < 0)
				break;
			in->write_zeroes_may_unmap = (uint8_t)v;
		}
		if ((r = rd(d, VIRTIO_MMIO_CONFIG_GENERATION, 4, &gen2)) < 0)
			break;
		if (gen1 == gen2)
			break;
	}
	if (r < 0)
		return fail(d, r, "cannot read config space (%d)", r);
	if (tries == CONFIG_RETRIES)
		return fail(d, -EIO, "config generation never settled");
	if (in->blk_size < SECTOR || (in->blk_size & (in->blk_size - 1)))
		in->blk_size = SECTOR;
	if (in->dev_num_queues == 0)
		in->dev_num_queues = 1;
	return 0;
}

static size_t align_up(size_t v, size_t a)
{
	return (v + a - 1) & ~(a - 1);
}

static void free_queue(struct vblk_driver *d, struct vblk_queue *q)
{
	if (q->mem)
		d->p->dma_free(d->p->ctx, q->mem, q->mem_bytes);
	q->mem = NULL;
	free(q->slot);
	free(q->next);
	q->slot = NULL;
	q->next = NULL;
}

static int setup_queue(struct vblk_driver *d, struct vblk_queue *q, unsigned index,
                       uint16_t size)
{
	size_t avail_off, used_off, slot_off, ind_off, total;
	uint32_t ready;
	int r;

	q->d = d;
	q->index = index;
	q->size = size;
	avail_off = sizeof(struct vring_desc) * size;
	used_off = align_up(avail_off + sizeof(uint16_t) * (3u + size), 64);
	slot_off = align_up(used_off + sizeof(uint16_t) * 3u +
	                            sizeof(struct vring_used_elem) * size,
	                    64);
	ind_off = slot_off + (size_t)SLOT_BYTES * size;
	total = ind_off + (d->info.indirect
	                           ? sizeof(struct vring_desc) * d->ind_entries * size
	                           : 0);
	q->mem_bytes = total;
	q->mem = d->p->dma_alloc(d->p->ctx, d->be, total, &q->mem_addr);
	q->slot = calloc(size, sizeof(*q->slot));
	q->next = calloc(size, sizeof(*q->next));
	if (!q->mem || !q->slot || !q->next)
		return fail(d, -ENOMEM, "no memory for queue %u (%zu bytes)", index,
		            total);
	q->desc = q->mem;
	q->avail = (struct vring_avail *)((uint8_t *)q->mem + avail_off);
	q->used = (struct vring_used *)((uint8_t *)q->mem + used_off);
	q->slot_mem = (uint8_t *)q->mem + slot_off;
	q->slot_addr = q->mem_addr + slot_off;
	if (d->info.indirect) {
		q->ind = (struct vring_desc *)((uint8_t *)q->mem + ind_off);
		q->ind_addr = q->mem_addr + ind_off;
	}
	for (unsigned i = 0; i < size; i++)
		q->next[i] = (uint16_t)((i + 1) % size);
	q->free_head = 0;
	q->num_free = size;
	/* No interrupts until vblk_wait() asks for one. */
	if (!d->info.event_idx)
		q->avail->flags = VRING_AVAIL_F_NO_INTERRUPT;

	if ((r = wr(d, VIRTIO_MMIO_QUEUE_SEL, index)) < 0 ||
	    (r = wr(d, VIRTIO_MMIO_QUEUE_NUM, size)) < 0 ||
	    (r = wr64(d, VIRTIO_MMIO_QUEUE_DESC_LOW, q->mem_addr)) < 0 ||
	    (r = wr64(d, VIRTIO_MMIO_QUEUE_AVAIL_LOW, q->mem_addr + avail_off)) < 0 ||
	    (r = wr64(d, VIRTIO_MMIO_QUEUE_USED_LOW, q->mem_addr + used_off)) < 0 ||
	    (r = wr(d, VIRTIO_MMIO_QUEUE_READY, 1)) < 0 ||
	    (r = rd(d, VIRTIO_MMIO_QUEUE_READY, 4, &ready)) < 0)
		return fail(d, r, "cannot set up queue %u (%d)", index, r);
	if (ready != 1)
		return fail(d, -EIO, "queue %u not ready after setup", index);
	return 0;
}

static int setup_queues(struct vblk_driver *d, const struct vblk_opts *o)
{
	struct vblk_info *in = &d->info;
	unsigned want = o->num_queues ? o->num_queues : 1, size = UINT16_MAX + 1u;
	uint64_t seg_limit, max_io;
	uint32_t v;
	int r;

	if (want > in->dev_num_queues)
		want = in->dev_num_queues;
	/* Every queue gets the same size: the smallest QueueNumMax. */
	for (unsigned i = 0; i < want; i++) {
		if ((r = wr(d, VIRTIO_MMIO_QUEUE_SEL, i)) < 0 ||
		    (r = rd(d, VIRTIO_MMIO_QUEUE_READY, 4, &v)) < 0)
			return fail(d, r, "cannot select queue %u (%d)", i, r);
		if (v != 0)
			return fail(d, -EIO, "queue %u already live after reset", i);
		if ((r = rd(d, VIRTIO_MMIO_QUEUE_NUM_MAX, 4, &v)) < 0)
			return fail(d, r, "cannot read QueueNumMax %u (%d)", i, r);
		if (v == 0) {
			if (i == 0)
				return fail(d, -ENODEV, "queue 0 not available");
			want = i;
			break;
		}
		if (v < size)
			size = v;
	}
	if (o->queue_size && o->queue_size < size)
		size = o->queue_size;
	else if (!o->queue_size && size > VBLK_QUEUE_SIZE_DEFAULT)
		size = VBLK_QUEUE_SIZE_DEFAULT;
	if (size > VBLK_QUEUE_SIZE_MAX)
		size = VBLK_QUEUE_SIZE_MAX;
	while (size & (size - 1))
		size &= size - 1;
	if (size < 4)
		return fail(d, -EINVAL, "queue size %u too small", size);

	/* Limits: a data descriptor <= size_max, <= seg_max of them, and a
	 * chain no longer than the queue. */
	d->seg_bytes = (in->size_max >= SECTOR) ? in->size_max : (1u << 30);
	seg_limit = in->seg_max ? in->seg_max : UINT32_MAX;
	if (seg_limit > size - 2u)
		seg_limit = size - 2u;
	max_io = o->max_io_bytes ? o->max_io_bytes : DEFAULT_MAX_IO;
	if (max_io > seg_limit * d->seg_bytes)
		max_io = seg_limit * d->seg_bytes;
	max_io &= ~(uint64_t)(SECTOR - 1);
	if (max_io == 0)
		return fail(d, -EINVAL,
		            "device limits allow no I/O (size_max %u, seg_max %u)",
		            in->size_max, in->seg_max);
	in->max_io_bytes = (size_t)max_io;
	d->max_segs = (unsigned)((max_io + d->seg_bytes - 1) / d->seg_bytes);
	d->ind_entries = d->max_segs + 2;
	in->queue_size = size;
	in->max_inflight = in->indirect ? size : size / (d->max_segs + 2);

	d->q = calloc(want, sizeof(*d->q));
	if (!d->q)
		return fail(d, -ENOMEM, "no memory for queues");
	d->nq = want;
	for (unsigned i = 0; i < want; i++) {
		r = setup_queue(d, &d->q[i], i, (uint16_t)size);
		if (r < 0)
			return r;
	}
	in->num_queues = want;
	return 0;
}

static void free_queues(struct vblk_driver *d)
{
	for (unsigned i = 0; i < d->nq; i++)
		free_queue(d, &d->q[i]);
	free(d->q);
	d->q = NULL;
	d->nq = 0;
}

void vblk_opts_default(struct vblk_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->num_queues = 1;
	o->max_io_bytes = DEFAULT_MAX_IO;
	o->timeout_ns = 5000000000ull;
}

int vblk_open(struct vps_frontend *vps, const struct vblk_opts *opts, struct vblk_driver **out,
              char *why, size_t why_len)
{
	struct vblk_opts o;
	struct vblk_driver *d;
	int r;

	if (opts)
		o = *opts;
	else
		vblk_opts_default(&o);
	d = calloc(1, sizeof(*d));
	if (!d) {
		if (why)
			snprintf(why, why_len, "out of memory");
		return -ENOMEM;
	}
	d->vps = vps;
	d->p = vps_platform_of(vps);
	d->be = vps_backend_id(vps);
	d->timeout_ns = o.timeout_ns ? o.timeout_ns : 5000000000ull;

	if ((r = probe(d)) < 0 || (r = reset_device(d)) < 0 ||
	    (r = set_status(d, VIRTIO_CONFIG_S_ACKNOWLEDGE)) < 0 ||
	    (r = set_status(d, VIRTIO_CONFIG_S_DRIVER)) < 0 ||
	    (r = negotiate(d, &o)) < 0 || (r = read_config(d)) < 0 ||
	    (r = setup_queues(d, &o)) < 0)
		goto fail;
	vps_set_irq_handler(vps, vblk_irq, d);
	r = set_status(d, VIRTIO_CONFIG_S_DRIVER_OK);
	if (r == 0)
		r = vblk_check(d);
	if (r < 0) {
		fail(d, r, "%s", d->error[0] ? d->error : "device failed at DRIVER_OK");
		goto fail;
	}
	*out = d;
	return 0;

fail:
	if (why)
		snprintf(why, why_len, "%s",
		         d->error[0] ? d->error : "device setup failed");
	vps_set_irq_handler(vps, NULL, NULL);
	if (!vps_is_gone(vps)) {
		/* Tell the device we gave up, then make it drop the queues
		 * before their memory goes. */
		set_status(d, VIRTIO_CONFIG_S_FAILED);
		reset_device(d);
	}
	free_queues(d);
	free(d);
	return r;
}

void vblk_stop(struct vblk_driver *d)
{
	if (d->stopped)
		return;
	d->stopped = true;
	vps_set_irq_handler(d->vps, NULL, NULL);
	if (!vps_is_gone(d->vps))
		reset_device(d);
	set_health(d, VBLK_FAILED, -ESHUTDOWN, "stopped");
}

void vblk_close(struct vblk_driver *d)
{
	if (!d)
		return;
	vblk_stop(d);
	/* A device that never read Status 0 may still use the rings (its
	 * error says so): leave their memory allocated. */
	if (vblk_may_free(d))
		free_queues(d);
	free(d);
}

bool vblk_may_free(const struct vblk_driver *d)
{
	return d->stats.reset_timeouts == 0;
}

const struct vblk_info *vblk_info(const struct vblk_driver *d)
{
	return &d->info;
}

struct vblk_queue *vblk_queue(struct vblk_driver *d, unsigned i)
{
	return i < d->nq ? &d->q[i] : NULL;
}

int vblk_buf_alloc(struct vblk_driver *d, size_t len, struct vblk_buf *buf)
{
	buf->ptr = d->p->dma_alloc(d->p->ctx, d->be, len, &buf->addr);
	buf->len = buf->ptr ? len : 0;
	return buf->ptr ? 0 : -ENOMEM;
}

void vblk_buf_free(struct vblk_driver *d, struct vblk_buf *buf)
{
	if (buf->ptr)
		d->p->dma_free(d->p->ctx, buf->ptr, buf->len);
	buf->ptr = NULL;
	buf->len = 0;
}

/* Writes a request's descriptors either into its indirect table or along
 * the free list of the ring's table. */
struct chain {
	struct vblk_queue *q;
	struct vring_desc *table; /* indirect table, or NULL */
	unsigned i, n;
	uint16_t cur; /* direct: the descriptor to fill next */
};

static void emit(struct chain *c, uint64_t addr, uint32_t len, uint16_t flags)
{
	bool last = c->i + 1 == c->n;
	struct vring_desc *e;

	if (c->table) {
		e = &c->table[c->i];
		e->next = last ? 0 : (uint16_t)(c->i + 1);
	} else {
		e = &c->q->desc[c->cur];
		e->next = last ? 0 : c->q->next[c->cur];
		c->cur = c->q->next[c->cur];
	}
	e->addr = addr;
	e->len = len;
	e->flags = flags | (last ? 0 : VRING_DESC_F_NEXT);
	c->i++;
}

static int check_req(struct vblk_driver *d, const struct vblk_req *r, unsigned *nseg)
{
	const struct vblk_info *in = &d->info;

	switch (r->type) {
	case VBLK_T_READ:
	case VBLK_T_WRITE:
		if (r->len == 0 || r->len % SECTOR || r->len > in->max_io_bytes)
			return -EINVAL;
		if (r->type == VBLK_T_WRITE && in->read_only)
			return -EROFS;
		break;
	case VBLK_T_GET_ID:
		if (r->len == 0 || r->len > VIRTIO_BLK_ID_BYTES)
			return -EINVAL;
		break;
	case VBLK_T_FLUSH: *nseg = 0; return in->flush ? 0 : -EOPNOTSUPP;
	case VBLK_T_DISCARD:
	case VBLK_T_WRITE_ZEROES:
		if (r->type == VBLK_T_DISCARD ? !in->discard : !in->write_zeroes)
			return -EOPNOTSUPP;
		if (in->read_only)
			return -EROFS;
		if (r->num_sectors == 0 || (r->type == VBLK_T_DISCARD && r->flags) ||
		    (r->flags & ~VBLK_WZ_UNMAP))
			return -EINVAL;
		*nseg = 1;
		return 0;
	default: return -EINVAL;
	}
	if (!r->buf || r->off > r->buf->len || r->len > r->buf->len - r->off)
		return -EINVAL;
	*nseg = (unsigned)((r->len + d->seg_bytes - 1) / d->seg_bytes);
	return 0;
}

/* Build and publish a request.  bad_addr != 0 replaces the data address
 * (hostile mode). */
static int submit(struct vblk_queue *q, const struct vblk_req *r, uint64_t bad_addr)
{
	struct vblk_driver *d = q->d;
	struct virtio_blk_outhdr *hdr;
	struct chain c = {.q = q};
	unsigned nseg = 0;
	uint16_t head, need, data_flags;
	uint8_t *slot;
	uint64_t slot_addr;
	int err;

	if (d->health != VBLK_OK)
		return d->health_err;
	if (d->poisoned)
		return -EPIPE;
	err = check_req(d, r, &nseg);
	if (err < 0)
		return err;
	c.n = nseg + 2;
	need = q->ind ? 1 : (uint16_t)c.n;
	if (q->num_free < need)
		return -EAGAIN;

	head = q->free_head;
	slot = q->slot_mem + (size_t)head * SLOT_BYTES;
	slot_addr = q->slot_addr + (uint64_t)head * SLOT_BYTES;
	hdr = (struct virtio_blk_outhdr *)(slot + SLOT_HDR);
	hdr->type = r->type;
	hdr->ioprio = 0;
	hdr->sector = (r->type == VBLK_T_READ || r->type == VBLK_T_WRITE) ? r->sector : 0;
	slot[SLOT_STATUS] = VBLK_S_NOT_WRITTEN;

	if (q->ind) {
		c.table = q->ind + (size_t)head * d->ind_entries;
	} else {
		c.cur = head;
	}
	emit(&c, slot_addr + SLOT_HDR, sizeof(*hdr), 0);
	if (r->type == VBLK_T_DISCARD || r->type == VBLK_T_WRITE_ZEROES) {
		struct virtio_blk_discard_write_zeroes *dwz =
		        (struct virtio_blk_discard_write_zeroes *)(slot + SLOT_DWZ);

		dwz->sector = r->sector;
		dwz->num_sectors = r->num_sectors;
		dwz->flags = r->flags;
		emit(&c, slot_addr + SLOT_DWZ, sizeof(*dwz), 0);
	} else if (nseg) {
		uint64_t addr = bad_addr ? bad_addr : r->buf->addr + r->off;
		size_t left = r->len;

		data_flags = r->type == VBLK_T_WRITE ? 0 : VRING_DESC_F_WRITE;
		while (left) {
			uint32_t chunk =
			        left < d->seg_bytes ? (uint32_t)left : d->seg_bytes;

			emit(&c, addr, chunk, data_flags);
			addr += chunk;
			left -= chunk;
		}
	}
	emit(&c, slot_addr + SLOT_STATUS, 1, VRING_DESC_F_WRITE);

	if (q->ind) {
		struct vring_desc *e = &q->desc[head];

		e->addr = q->ind_addr +
		          (uint64_t)head * d->ind_entries * sizeof(struct vring_desc);
		e->len = (uint32_t)(c.n * sizeof(struct vring_desc));
		e->flags = VRING_DESC_F_INDIRECT;
		e->next = 0;
		q->free_head = q->next[head];
	} else {
		q->free_head = c.cur;
	}
	q->num_free -= need;
	q->slot[head] = (struct vblk_slot){.tag = r->tag, .ndesc = need, .busy = true};
	q->avail->ring[q->avail_idx % q->size] = head;
	q->avail_idx++;
	/* The descriptors and the ring entry before the index. */
	__atomic_store_n(&q->avail->idx, q->avail_idx, __ATOMIC_RELEASE);
	q->inflight++;
	d->stats.submitted++;
	return 0;
}

int vblk_submit(struct vblk_queue *q, const struct vblk_req *r)
{
	return submit(q, r, 0);
}

static int notify(struct vblk_queue *q)
{
	q->d->stats.kicks++;
	return wr(q->d, VIRTIO_MMIO_QUEUE_NOTIFY, q->index);
}

int vblk_kick(struct vblk_queue *q)
{
	uint16_t old = q->kicked_idx, new_idx = q->avail_idx;
	bool need;

	if (old == new_idx)
		return 0;
	q->kicked_idx = new_idx;
	/* The device sees the new avail idx before we read its wish. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (q->d->info.event_idx) {
		uint16_t ev = __atomic_load_n(avail_event(q), __ATOMIC_RELAXED);

		need = vring_need_event(ev, new_idx, old);
	} else {
		need = !(__atomic_load_n(&q->used->flags, __ATOMIC_RELAXED) &
		         VRING_USED_F_NO_NOTIFY);
	}
	if (!need) {
		q->d->stats.kicks_saved++;
		return 0;
	}
	return notify(q);
}

static void free_chain(struct vblk_queue *q, uint16_t head, uint16_t n)
{
	uint16_t tail = head;

	if (!q->ind) {
		for (uint16_t i = 1; i < n; i++)
			tail = q->next[tail];
	}
	q->next[tail] = q->free_head;
	q->free_head = head;
	q->num_free += n;
}

int vblk_reap(struct vblk_queue *q, struct vblk_completion *out, unsigned max)
{
	struct vblk_driver *d = q->d;
	uint16_t used_idx;
	unsigned n = 0;

	if (d->health == VBLK_FAILED)
		return d->health_err;
	used_idx = __atomic_load_n(&q->used->idx, __ATOMIC_ACQUIRE);
	if ((uint16_t)(used_idx - q->last_used) > q->inflight) {
		set_health(d, VBLK_FAILED, -EPROTO,
		           "queue %u: used idx %u is %u ahead with %u in flight",
		           q->index, used_idx, (uint16_t)(used_idx - q->last_used),
		           q->inflight);
		return -EPROTO;
	}
	while (q->last_used != used_idx && n < max) {
		struct vring_used_elem e = q->used->ring[q->last_used % q->size];
		struct vblk_slot *s;

		if (e.id >= q->size || !q->slot[e.id].busy) {
			set_health(d, VBLK_FAILED, -EPROTO,
			           "queue %u: used id %u is not in flight", q->index,
			           e.id);
			return -EPROTO;
		}
		s = &q->slot[e.id];
		out[n].tag = s->tag;
		out[n].status = q->slot_mem[(size_t)e.id * SLOT_BYTES + SLOT_STATUS];
		out[n].len = e.len;
		s->busy = false;
		free_chain(q, (uint16_t)e.id, s->ndesc);
		q->last_used++;
		q->inflight--;
		n++;
	}
	d->stats.completed += n;
	return (int)n;
}

unsigned vblk_inflight(const struct vblk_queue *q)
{
	return q->inflight;
}

static bool any_used(struct vblk_driver *d)
{
	for (unsigned i = 0; i < d->nq; i++) {
		struct vblk_queue *q = &d->q[i];

		if (__atomic_load_n(&q->used->idx, __ATOMIC_ACQUIRE) != q->last_used)
			return true;
	}
	return false;
}

/* Ask for an interrupt at the next completion of every queue. */
static void want_interrupts(struct vblk_driver *d, bool on)
{
	for (unsigned i = 0; i < d->nq; i++) {
		struct vblk_queue *q = &d->q[i];

		if (d->info.event_idx) {
			/* used_event stays behind once passed: no interrupt
			 * until the next wait moves it. */
			if (on)
				__atomic_store_n(used_event(q), q->last_used,
				                 __ATOMIC_RELAXED);
		} else {
			__atomic_store_n(&q->avail->flags,
			                 on ? 0 : VRING_AVAIL_F_NO_INTERRUPT,
			                 __ATOMIC_RELAXED);
		}
	}
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
}

int vblk_wait(struct vblk_driver *d, uint64_t timeout_ns)
{
	int r;

	if (d->health != VBLK_OK)
		return d->health_err;
	if (any_used(d))
		return 1;
	d->stats.waits++;
	want_interrupts(d, true);
	if (any_used(d)) {
		want_interrupts(d, false);
		return 1;
	}
	r = vps_wait(d->vps, timeout_ns);
	want_interrupts(d, false);
	if (r < 0)
		return stub_error(d, r);
	if (d->config_changed) {
		d->config_changed = false;
		int c = vblk_check(d);

		if (c < 0)
			return c;
	}
	return (r > 0 || any_used(d)) ? 1 : 0;
}

int vblk_check(struct vblk_driver *d)
{
	uint32_t st;
	int r;

	if (d->health != VBLK_OK)
		return d->health_err;
	r = rd(d, VIRTIO_MMIO_STATUS, 4, &st);
	if (r < 0)
		return r;
	if (st & VIRTIO_CONFIG_S_NEEDS_RESET) {
		set_health(d, VBLK_NEEDS_RESET, -EIO, "NEEDS_RESET");
		return -EIO;
	}
	return 0;
}

enum vblk_health vblk_health(const struct vblk_driver *d)
{
	return d->health;
}

const char *vblk_error(const struct vblk_driver *d)
{
	return d->error;
}

void vblk_get_stats(const struct vblk_driver *d, struct vblk_stats *st)
{
	*st = d->stats;
}

/* Two descriptors pointing at each other, published as one request. */
static int corrupt_desc_loop(struct vblk_queue *q)
{
	uint16_t a, b;

	if (q->num_free < 2)
		return -EBUSY;
	a = q->free_head;
	b = q->next[a];
	q->desc[a] = (struct vring_desc){.addr = q->slot_addr + (uint64_t)a * SLOT_BYTES,
	                                 .len = 16,
	                                 .flags = VRING_DESC_F_NEXT,
	                                 .next = b};
	q->desc[b] = (struct vring_desc){.addr = q->slot_addr + (uint64_t)b * SLOT_BYTES,
	                                 .len = 16,
	                                 .flags = VRING_DESC_F_NEXT,
	                                 .next = a};
	q->avail->ring[q->avail_idx % q->size] = a;
	q->avail_idx++;
	__atomic_store_n(&q->avail->idx, q->avail_idx, __ATOMIC_RELEASE);
	return 0;
}

int vblk_debug_corrupt(struct vblk_driver *d, enum vblk_corrupt kind)
{
	struct vblk_queue *q = &d->q[0];
	struct vblk_buf fake = {.ptr = NULL, .addr = 0, .len = SECTOR};
	struct vblk_req req = {
	        .type = VBLK_T_READ, .buf = &fake, .len = SECTOR, .tag = UINT64_MAX};
	uint64_t bad;
	int r;

	switch (kind) {
	case VBLK_CORRUPT_DESC_LOOP:
		r = corrupt_desc_loop(q);
		if (r < 0)
			return r;
		d->poisoned = true;
		q->kicked_idx = q->avail_idx;
		return notify(q);
	case VBLK_CORRUPT_BAD_ADDR:
		bad = d->p->addr_mode == VPS_ADDR_GRANT ? VPROXY_GRANT_ADDR(BAD_GREF, 0)
		                                        : BAD_GFN_ADDR;
		r = submit(q, &req, bad);
		if (r < 0)
			return r;
		q->kicked_idx = q->avail_idx;
		return notify(q);
	case VBLK_CORRUPT_AVAIL_JUMP:
		d->poisoned = true;
		q->avail_idx = (uint16_t)(q->avail_idx + 4u * q->size + 1u);
		__atomic_store_n(&q->avail->idx, q->avail_idx, __ATOMIC_RELEASE);
		q->kicked_idx = q->avail_idx;
		return notify(q);
	case VBLK_CORRUPT_RING_OVERFLOW:
		d->poisoned = true;
		vps_debug_overflow_ring(d->vps);
		return 0;
	}
	return -EINVAL;
}

int vblk_corrupt_parse(const char *name, enum vblk_corrupt *out)
{
	static const char *const names[] = {"desc-loop", "bad-addr", "avail-jump",
	                                    "ring-overflow"};

	for (unsigned i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (strcmp(name, names[i]) == 0) {
			*out = (enum vblk_corrupt)i;
			return 0;
		}
	}
	return -EINVAL;
}
