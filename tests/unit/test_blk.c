/* SPDX-License-Identifier: MIT */
/* virtio-blk: every request type against an in-test plugin that keeps the
 * disk in a malloc'd array and completes inline or when the test says,
 * driven through the virtio-mmio registers by a small guest driver whose
 * rings live in a flat guest-memory buffer. */
#include <check.h>
#include <event2/event.h>
#include <errno.h>
#include <linux/virtio_blk.h>
#include <linux/virtio_config.h>
#include <linux/virtio_mmio.h>
#include <linux/virtio_ring.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blk.h"
#include "gmem.h"
#include "plugin_host.h"
#include "vdev.h"
#include "virtqueue.h"

#define MEM_SIZE (4u << 20)
#define HEAP_START 0x100000u
#define DISK_SIZE (1u << 20)
#define DISK_SECTORS (DISK_SIZE / 512)
#define QSIZE 16u
#define MAX_PENDING 256u
#define MAX_LOG 256u
#define SENTINEL 0xffu
#define BIT64(n) (1ull << (n))

/* ---- allocation failures ---- */

/* test_blk is linked with --wrap for malloc, calloc and realloc: while
 * alloc_armed and alloc_fail_at are set, the alloc_fail_at'th call fails.
 * Armed only around calls into the device: Check allocates in every
 * assertion, and those allocations must not count. */
void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t n);

static unsigned alloc_fail_at, alloc_calls;
static bool alloc_failed, alloc_armed;

static bool alloc_should_fail(void)
{
	if (!alloc_armed || !alloc_fail_at || ++alloc_calls != alloc_fail_at)
		return false;
	alloc_failed = true;
	return true;
}

void *__wrap_malloc(size_t n)
{
	return alloc_should_fail() ? NULL : __real_malloc(n);
}

void *__wrap_calloc(size_t n, size_t size)
{
	return alloc_should_fail() ? NULL : __real_calloc(n, size);
}

void *__wrap_realloc(void *p, size_t n)
{
	return alloc_should_fail() ? NULL : __real_realloc(p, n);
}

/* ---- the fake plugin ---- */

struct fake_disk {
	uint8_t data[DISK_SIZE];
	bool deferred;       /* complete from fake_complete_all() */
	int complete_status; /* status passed to complete() */
	int submit_ret;      /* non-zero: submit() fails with it */
	struct vproxy_req *pending[MAX_PENDING];
	unsigned npending;
	unsigned max_pending;
	struct vproxy_req log[MAX_LOG]; /* copies of submitted requests */
	unsigned nlog;
	/* cancel(): taken off pending, completed by fake_complete_dropped() */
	struct vproxy_req *dropped[MAX_PENDING];
	unsigned ndropped;
	unsigned cancels;
	unsigned closes;
	unsigned polls;          /* poll() calls */
	unsigned poll_ends;      /* poll_end() calls */
	bool poll_holds;         /* poll() finds nothing ready */
	unsigned kicks;          /* kick() calls */
	unsigned nlog_at_kick;   /* submits seen at the last kick() */
};

static struct fake_disk *disk;

static void fake_execute(struct vproxy_req *req)
{
	uint64_t off = req->offset;

	ck_assert_uint_le(req->offset + req->len, DISK_SIZE);
	switch (req->op) {
	case VPROXY_REQ_READ:
	case VPROXY_REQ_WRITE: {
		uint64_t total = 0;

		for (unsigned i = 0; i < req->iovcnt; i++) {
			if (req->op == VPROXY_REQ_READ)
				memcpy(req->iov[i].iov_base, disk->data + off,
				       req->iov[i].iov_len);
			else
				memcpy(disk->data + off, req->iov[i].iov_base,
				       req->iov[i].iov_len);
			off += req->iov[i].iov_len;
			total += req->iov[i].iov_len;
		}
		ck_assert_uint_eq(total, req->len);
		break;
	}
	case VPROXY_REQ_DISCARD:
	case VPROXY_REQ_WRITE_ZEROES:
		memset(disk->data + req->offset, 0, req->len);
		break;
	default: break;
	}
}

static void fake_finish(struct vproxy_req *req)
{
	struct vp_req_owner *owner = req->host_priv;

	if (disk->complete_status == 0)
		fake_execute(req);
	owner->complete(req, disk->complete_status);
}

static int fake_submit_checked(void *d, struct vproxy_req *req);

/* The device calls in here with allocations armed: not the test's own. */
static int fake_submit(void *d, struct vproxy_req *req)
{
	bool armed = alloc_armed;
	int r;

	alloc_armed = false;
	r = fake_submit_checked(d, req);
	alloc_armed = armed;
	return r;
}

static int fake_submit_checked(void *d, struct vproxy_req *req)
{
	ck_assert_ptr_eq(d, disk);
	ck_assert_uint_lt(disk->nlog, MAX_LOG);
	disk->log[disk->nlog++] = *req;
	if (disk->submit_ret)
		return disk->submit_ret;
	if (disk->deferred) {
		ck_assert_uint_lt(disk->npending, MAX_PENDING);
		disk->pending[disk->npending++] = req;
		if (disk->npending > disk->max_pending)
			disk->max_pending = disk->npending;
		return 0;
	}
	fake_finish(req);
	return 0;
}

/* Complete everything pending, including what completions submit. */
static unsigned fake_complete_all(void)
{
	unsigned n = 0;

	while (disk->npending) {
		struct vproxy_req *req = disk->pending[0];

		memmove(disk->pending, disk->pending + 1,
		        --disk->npending * sizeof(disk->pending[0]));
		fake_finish(req);
		n++;
	}
	return n;
}

/* Finish the oldest pending request (as a slow disk would). */
static void fake_complete_one(void)
{
	struct vproxy_req *req;

	ck_assert_uint_gt(disk->npending, 0);
	req = disk->pending[0];
	memmove(disk->pending, disk->pending + 1,
	        --disk->npending * sizeof(disk->pending[0]));
	fake_finish(req);
}

/* Drops a pending request without touching its buffers, as a plugin can
 * before it started the I/O; complete() follows later, not from here. */
static void fake_cancel(void *d, struct vproxy_req *req)
{
	ck_assert_ptr_eq(d, disk);
	disk->cancels++;
	for (unsigned i = 0; i < disk->npending; i++) {
		if (disk->pending[i] != req)
			continue;
		memmove(disk->pending + i, disk->pending + i + 1,
		        (--disk->npending - i) * sizeof(disk->pending[0]));
		disk->dropped[disk->ndropped++] = req;
		return;
	}
}

static unsigned fake_complete_dropped(void)
{
	unsigned n = disk->ndropped;

	for (unsigned i = 0; i < n; i++) {
		struct vproxy_req *req = disk->dropped[i];
		struct vp_req_owner *owner = req->host_priv;

		owner->complete(req, -ECANCELED);
	}
	disk->ndropped = 0;
	return n;
}

static void fake_close(void *d)
{
	ck_assert_ptr_eq(d, disk);
	disk->closes++;
}

static const char *const fake_keys[] = {NULL};

static const struct vproxy_plugin fake_plugin = {
        .abi_version = VPROXY_PLUGIN_ABI_VERSION,
        .size = sizeof(struct vproxy_plugin),
        .name = "fake",
        .description = "in-test disk",
        .param_keys = fake_keys,
        .submit = fake_submit,
        .close = fake_close,
};

static const struct vproxy_plugin fake_plugin_cancel = {
        .abi_version = VPROXY_PLUGIN_ABI_VERSION,
        .size = sizeof(struct vproxy_plugin),
        .name = "fake",
        .description = "in-test disk that can cancel",
        .param_keys = fake_keys,
        .submit = fake_submit,
        .close = fake_close,
        .cancel = fake_cancel,
};

static void fake_kick(void *d)
{
	ck_assert_ptr_eq(d, disk);
	disk->kicks++;
	disk->nlog_at_kick = disk->nlog;
}

static const struct vproxy_plugin fake_plugin_kick = {
        .abi_version = VPROXY_PLUGIN_ABI_VERSION,
        .size = sizeof(struct vproxy_plugin),
        .name = "fake",
        .description = "in-test disk that wants the end of each batch",
        .param_keys = fake_keys,
        .submit = fake_submit,
        .close = fake_close,
        .kick = fake_kick,
};

/* Completion polling: poll() runs what is pending, as a ring that
 * completed it would; poll_end() only counts. */
static int fake_poll(void *d)
{
	ck_assert_ptr_eq(d, disk);
	disk->polls++;
	return disk->poll_holds ? 0 : (int)fake_complete_all();
}

static void fake_poll_end(void *d)
{
	ck_assert_ptr_eq(d, disk);
	disk->poll_ends++;
}

static const struct vproxy_plugin fake_plugin_poll = {
        .abi_version = VPROXY_PLUGIN_ABI_VERSION,
        .size = sizeof(struct vproxy_plugin),
        .name = "fake",
        .description = "in-test disk whose completions can be polled",
        .param_keys = fake_keys,
        .submit = fake_submit,
        .close = fake_close,
        .cancel = fake_cancel,
        .poll = fake_poll,
        .poll_end = fake_poll_end,
};

/* ---- the guest ---- */

struct gq {
	uint64_t desc, avail, used;
	unsigned num;
	uint16_t avail_idx;
	uint16_t next_desc;
};

struct guest {
	uint8_t *mem;
	struct vp_gmem *gm;
	struct vp_vdev *d;
	struct gq q[2];
	uint64_t brk;
	unsigned irqs;
	size_t held_at_irq; /* guest mappings held when the last irq was raised */
	const struct vproxy_plugin *plugin; /* NULL: fake_plugin */
	unsigned broken;
	unsigned done_calls;
	struct vproxy_disk_info info;
	struct vp_blk_params params;
};

static struct guest g;

static void host_irq(void *opaque, uint32_t bits)
{
	struct vp_gmem_stats st;

	(void)opaque;
	vp_gmem_get_stats(g.gm, &st);
	g.held_at_irq = st.held;
	if (bits & VP_IRQ_VRING)
		g.irqs++;
}

static void host_broken(void *opaque, const char *why)
{
	(void)opaque;
	(void)why;
	g.broken++;
}

static void on_done(void *arg)
{
	ck_assert_ptr_eq(arg, &g);
	g.done_calls++;
}

static uint64_t galloc(size_t len)
{
	uint64_t a = g.brk;

	g.brk = (g.brk + len + 15) & ~15ull;
	ck_assert_uint_le(g.brk, MEM_SIZE);
	return a;
}

static void *gptr(uint64_t addr)
{
	return g.mem + addr;
}

static void setup(void)
{
	memset(&g, 0, sizeof(g));
	disk = calloc(1, sizeof(*disk));
	for (unsigned i = 0; i < DISK_SIZE; i++)
		disk->data[i] = (uint8_t)(i * 13 + (i >> 9));
	g.mem = calloc(1, MEM_SIZE);
	g.gm = vp_gmem_new_flat(g.mem, MEM_SIZE);
	g.brk = HEAP_START;
	g.info = (struct vproxy_disk_info){
	        .capacity = DISK_SIZE,
	        .logical_block = 512,
	        .physical_block = 4096,
	        .flags = VPROXY_DISK_FLUSH | VPROXY_DISK_DISCARD |
	                 VPROXY_DISK_WRITE_ZEROES,
	};
	g.params = (struct vp_blk_params){.num_queues = 1, .queue_size_max = QSIZE};
	/* All 20 bytes used: no terminating NUL within the id. */
	memcpy(g.params.serial, "vproxy-serial-012345", 20);
}

static void teardown(void)
{
	if (g.d) {
		disk->deferred = false;
		vp_vdev_destroy(g.d, NULL, NULL);
		fake_complete_all();
	}
	vp_gmem_free(g.gm);
	free(g.mem);
	free(disk);
}

static void create(void)
{
	struct vp_vdev_host host = {
	        .dom = 9,
	        .devid = 0,
	        .gm = g.gm,
	        .raise_irq = host_irq,
	        .broken = host_broken,
	};

	g.d = vp_blk_create(&g.params, g.plugin ? g.plugin : &fake_plugin, disk, &g.info,
	                    &host);
	ck_assert_ptr_nonnull(g.d);
}

static uint32_t rd(uint32_t off)
{
	uint64_t v;

	ck_assert_int_eq(vp_vdev_mmio_read(g.d, off, 4, &v), VP_MMIO_OK);
	return (uint32_t)v;
}

static uint64_t rd_config(uint32_t off, unsigned size)
{
	uint64_t v;

	ck_assert_int_eq(vp_vdev_mmio_read(g.d, VIRTIO_MMIO_CONFIG + off, size, &v),
	                 VP_MMIO_OK);
	return v;
}

static void wr(uint32_t off, uint32_t v)
{
	ck_assert_int_eq(vp_vdev_mmio_write(g.d, off, 4, v), VP_MMIO_OK);
}

static uint64_t device_features(void)
{
	uint64_t f;

	wr(VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
	f = rd(VIRTIO_MMIO_DEVICE_FEATURES);
	wr(VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
	return f | (uint64_t)rd(VIRTIO_MMIO_DEVICE_FEATURES) << 32;
}

/* Bring the device up with the offered features minus drop, nq queues of
 * num entries. */
static void driver_init(uint64_t drop, unsigned nq, unsigned num)
{
	uint64_t f = device_features() & ~drop;

	wr(VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
	wr(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
	wr(VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)f);
	wr(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
	wr(VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)(f >> 32));
	wr(VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
	                               VIRTIO_CONFIG_S_FEATURES_OK);
	ck_assert_uint_ne(rd(VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_FEATURES_OK, 0);
	for (unsigned q = 0; q < nq; q++) {
		struct gq *gq = &g.q[q];

		memset(gq, 0, sizeof(*gq));
		gq->num = num;
		gq->desc = 0x10000u * (q + 1);
		gq->avail = gq->desc + 0x4000;
		gq->used = gq->desc + 0x8000;
		memset(gptr(gq->desc), 0, 0xa000);
		wr(VIRTIO_MMIO_QUEUE_SEL, q);
		wr(VIRTIO_MMIO_QUEUE_NUM, num);
		wr(VIRTIO_MMIO_QUEUE_DESC_LOW, (uint32_t)gq->desc);
		wr(VIRTIO_MMIO_QUEUE_DESC_HIGH, 0);
		wr(VIRTIO_MMIO_QUEUE_AVAIL_LOW, (uint32_t)gq->avail);
		wr(VIRTIO_MMIO_QUEUE_AVAIL_HIGH, 0);
		wr(VIRTIO_MMIO_QUEUE_USED_LOW, (uint32_t)gq->used);
		wr(VIRTIO_MMIO_QUEUE_USED_HIGH, 0);
		wr(VIRTIO_MMIO_QUEUE_READY, 1);
	}
	wr(VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
	                               VIRTIO_CONFIG_S_FEATURES_OK |
	                               VIRTIO_CONFIG_S_DRIVER_OK);
}

static void start(void)
{
	create();
	driver_init(BIT64(VIRTIO_RING_F_EVENT_IDX), 1, QSIZE);
}

struct seg {
	uint64_t addr;
	uint32_t len;
	bool write; /* device-writable */
};

/* Put a chain in the descriptor table (not yet posted); returns its head. */
static uint16_t add_chain(unsigned q, const struct seg *s, unsigned n)
{
	struct gq *gq = &g.q[q];
	struct vring_desc *desc = gptr(gq->desc);
	uint16_t head = gq->next_desc;

	for (unsigned i = 0; i < n; i++) {
		uint16_t idx = (uint16_t)((head + i) % gq->num);

		desc[idx].addr = htole64(s[i].addr);
		desc[idx].len = htole32(s[i].len);
		desc[idx].flags = htole16((s[i].write ? VRING_DESC_F_WRITE : 0) |
		                          (i + 1 < n ? VRING_DESC_F_NEXT : 0));
		desc[idx].next = htole16((uint16_t)((idx + 1) % gq->num));
	}
	gq->next_desc = (uint16_t)((head + n) % gq->num);
	return head;
}

static void post(unsigned q, uint16_t head)
{
	struct gq *gq = &g.q[q];
	struct vring_avail *avail = gptr(gq->avail);

	avail->ring[gq->avail_idx % gq->num] = htole16(head);
	gq->avail_idx++;
	__atomic_store_n(&avail->idx, htole16(gq->avail_idx), __ATOMIC_RELEASE);
}

static void kick(unsigned q)
{
	wr(VIRTIO_MMIO_QUEUE_NOTIFY, q);
}

static uint16_t used_idx(unsigned q)
{
	struct vring_used *used = gptr(g.q[q].used);

	return le16toh(__atomic_load_n(&used->idx, __ATOMIC_ACQUIRE));
}

static struct vring_used_elem used_elem(unsigned q, unsigned i)
{
	struct vring_used *used = gptr(g.q[q].used);

	return used->ring[i % g.q[q].num];
}

/* A request as the guest laid it out. */
struct req {
	uint16_t head;
	uint64_t hdr;
	uint64_t data;
	uint64_t status;
};

static uint64_t put_hdr(uint32_t type, uint64_t sector)
{
	uint64_t a = galloc(sizeof(struct virtio_blk_outhdr));
	struct virtio_blk_outhdr *h = gptr(a);

	h->type = htole32(type);
	h->ioprio = 0;
	h->sector = htole64(sector);
	return a;
}

static uint64_t put_status(void)
{
	uint64_t a = galloc(1);

	*(uint8_t *)gptr(a) = SENTINEL;
	return a;
}

/* The usual layout: header, data (device-writable for IN, GET_ID), status. */
static struct req make_req(unsigned q, uint32_t type, uint64_t sector, uint32_t len)
{
	bool dev_writes = type == VIRTIO_BLK_T_IN || type == VIRTIO_BLK_T_GET_ID;
	struct seg s[3];
	struct req r = {0};
	unsigned n = 0;

	r.hdr = put_hdr(type, sector);
	s[n++] = (struct seg){r.hdr, sizeof(struct virtio_blk_outhdr), false};
	if (len) {
		r.data = galloc(len);
		s[n++] = (struct seg){r.data, len, dev_writes};
	}
	r.status = put_status();
	s[n++] = (struct seg){r.status, 1, true};
	r.head = add_chain(q, s, n);
	return r;
}

static uint8_t status_of(const struct req *r)
{
	return *(uint8_t *)gptr(r->status);
}

/* Post, kick, and return the status byte. */
static uint8_t run(unsigned q, struct req *r)
{
	post(q, r->head);
	kick(q);
	return status_of(r);
}

static void fill(uint64_t addr, size_t len, uint8_t seed)
{
	uint8_t *p = gptr(addr);

	for (size_t i = 0; i < len; i++)
		p[i] = (uint8_t)(seed + i * 31);
}

/* A discard / write-zeroes request with n segments (none: header and
 * status only). */
static struct req make_dz(uint32_t type,
                          const struct virtio_blk_discard_write_zeroes *segs, unsigned n)
{
	struct req r = {0};
	struct seg s[3];
	unsigned k = 0;

	r.hdr = put_hdr(type, 0);
	s[k++] = (struct seg){r.hdr, sizeof(struct virtio_blk_outhdr), false};
	if (n) {
		r.data = galloc(n * sizeof(*segs));
		memcpy(gptr(r.data), segs, n * sizeof(*segs));
		s[k++] = (struct seg){r.data, (uint32_t)(n * sizeof(*segs)), false};
	}
	r.status = put_status();
	s[k++] = (struct seg){r.status, 1, true};
	r.head = add_chain(0, s, k);
	return r;
}

/* A read through an indirect table: one descriptor of the ring each. */
static struct req make_read_indirect(unsigned q, uint64_t sector)
{
	uint64_t taddr = galloc(3 * sizeof(struct vring_desc));
	struct vring_desc *t = gptr(taddr);
	struct req r;

	r.hdr = put_hdr(VIRTIO_BLK_T_IN, sector);
	r.data = galloc(512);
	r.status = put_status();
	t[0] = (struct vring_desc){htole64(r.hdr), htole32(16),
	                           htole16(VRING_DESC_F_NEXT), htole16(1)};
	t[1] = (struct vring_desc){htole64(r.data), htole32(512),
	                           htole16(VRING_DESC_F_WRITE | VRING_DESC_F_NEXT),
	                           htole16(2)};
	t[2] = (struct vring_desc){htole64(r.status), htole32(1),
	                           htole16(VRING_DESC_F_WRITE), 0};
	r.head = add_chain(q, (struct seg[]){{taddr, 3 * sizeof(*t), false}}, 1);
	((struct vring_desc *)gptr(g.q[q].desc))[r.head].flags =
	        htole16(VRING_DESC_F_INDIRECT);
	return r;
}

static struct virtio_blk_discard_write_zeroes dz(uint64_t sector, uint32_t n,
                                                 uint32_t flags)
{
	return (struct virtio_blk_discard_write_zeroes){
	        .sector = htole64(sector),
	        .num_sectors = htole32(n),
	        .flags = htole32(flags),
	};
}

/* ---- tests ---- */

START_TEST(features_and_config)
{
	uint64_t f;

	create();
	f = device_features();
	ck_assert_uint_eq(rd(VIRTIO_MMIO_DEVICE_ID), VIRTIO_ID_BLOCK);
	ck_assert(f & BIT64(VIRTIO_F_VERSION_1));
	ck_assert(f & BIT64(VIRTIO_RING_F_INDIRECT_DESC));
	ck_assert(f & BIT64(VIRTIO_RING_F_EVENT_IDX));
	ck_assert(f & BIT64(VIRTIO_BLK_F_SIZE_MAX));
	ck_assert(f & BIT64(VIRTIO_BLK_F_SEG_MAX));
	ck_assert(f & BIT64(VIRTIO_BLK_F_BLK_SIZE));
	ck_assert(f & BIT64(VIRTIO_BLK_F_FLUSH));
	ck_assert(f & BIT64(VIRTIO_BLK_F_DISCARD));
	ck_assert(f & BIT64(VIRTIO_BLK_F_WRITE_ZEROES));
	ck_assert(!(f & BIT64(VIRTIO_BLK_F_RO)));
	ck_assert(!(f & BIT64(VIRTIO_BLK_F_MQ)));
	ck_assert_uint_eq(rd(VIRTIO_MMIO_QUEUE_NUM_MAX), QSIZE);

	ck_assert_uint_eq(rd_config(offsetof(struct virtio_blk_config, capacity), 8),
	                  DISK_SECTORS);
	ck_assert_uint_ne(rd_config(offsetof(struct virtio_blk_config, size_max), 4), 0);
	ck_assert_uint_eq(rd_config(offsetof(struct virtio_blk_config, seg_max), 4),
	                  QSIZE - 2);
	ck_assert_uint_eq(rd_config(offsetof(struct virtio_blk_config, blk_size), 4),
	                  512);
	ck_assert_uint_eq(
	        rd_config(offsetof(struct virtio_blk_config, physical_block_exp), 1), 3);
	ck_assert_uint_eq(rd_config(offsetof(struct virtio_blk_config, num_queues), 2),
	                  1);
	ck_assert_uint_eq(
	        rd_config(offsetof(struct virtio_blk_config, max_discard_sectors), 4),
	        UINT32_MAX);
	ck_assert_uint_eq(
	        rd_config(offsetof(struct virtio_blk_config, max_discard_seg), 4), 32);
	ck_assert_uint_eq(
	        rd_config(offsetof(struct virtio_blk_config, discard_sector_alignment),
	                  4),
	        1);
	ck_assert_uint_eq(
	        rd_config(offsetof(struct virtio_blk_config, max_write_zeroes_seg), 4),
	        32);
	ck_assert_uint_eq(
	        rd_config(offsetof(struct virtio_blk_config, write_zeroes_may_unmap), 1),
	        1);
	/* The config space is read-only. */
	ck_assert_int_eq(vp_vdev_mmio_write(g.d, VIRTIO_MMIO_CONFIG, 4, 0),
	                 VP_MMIO_BAD_ACCESS);
	ck_assert_int_eq(
	        vp_vdev_mmio_read(g.d,
	                          VIRTIO_MMIO_CONFIG + sizeof(struct virtio_blk_config),
	                          1, &f),
	        VP_MMIO_BAD_ACCESS);
}
END_TEST

START_TEST(features_follow_disk)
{
	uint64_t f;

	g.info.flags = VPROXY_DISK_READONLY | VPROXY_DISK_DISCARD;
	g.params.num_queues = 2;
	create();
	f = device_features();
	ck_assert(f & BIT64(VIRTIO_BLK_F_RO));
	ck_assert(f & BIT64(VIRTIO_BLK_F_MQ));
	ck_assert(!(f & BIT64(VIRTIO_BLK_F_FLUSH)));
	/* Nothing to discard on a read-only disk. */
	ck_assert(!(f & BIT64(VIRTIO_BLK_F_DISCARD)));
	ck_assert(!(f & BIT64(VIRTIO_BLK_F_WRITE_ZEROES)));
	ck_assert_uint_eq(rd_config(offsetof(struct virtio_blk_config, num_queues), 2),
	                  2);
	ck_assert_uint_eq(
	        rd_config(offsetof(struct virtio_blk_config, max_discard_seg), 4), 0);
}
END_TEST

START_TEST(bad_create_params)
{
	struct vp_vdev_host host = {.gm = g.gm};

	g.params.num_queues = 0;
	ck_assert_ptr_null(vp_blk_create(&g.params, &fake_plugin, disk, &g.info, &host));
	g.params.num_queues = VP_BLK_MAX_QUEUES + 1;
	ck_assert_ptr_null(vp_blk_create(&g.params, &fake_plugin, disk, &g.info, &host));
	g.params.num_queues = 1;
	g.params.queue_size_max = 24;
	ck_assert_ptr_null(vp_blk_create(&g.params, &fake_plugin, disk, &g.info, &host));
	g.params.queue_size_max = 2048;
	ck_assert_ptr_null(vp_blk_create(&g.params, &fake_plugin, disk, &g.info, &host));
}
END_TEST

START_TEST(write_then_read)
{
	struct req w, r;

	start();
	w = make_req(0, VIRTIO_BLK_T_OUT, 8, 4096);
	fill(w.data, 4096, 7);
	ck_assert_uint_eq(run(0, &w), VIRTIO_BLK_S_OK);
	ck_assert_int_eq(memcmp(disk->data + 8 * 512, gptr(w.data), 4096), 0);
	ck_assert_uint_eq(used_idx(0), 1);
	ck_assert_uint_eq(le32toh(used_elem(0, 0).id), w.head);
	ck_assert_uint_eq(le32toh(used_elem(0, 0).len), 1);
	ck_assert_uint_eq(disk->log[0].op, VPROXY_REQ_WRITE);
	ck_assert_uint_eq(disk->log[0].offset, 8 * 512);
	ck_assert_uint_eq(disk->log[0].len, 4096);
	ck_assert_uint_eq(g.irqs, 1);

	r = make_req(0, VIRTIO_BLK_T_IN, 8, 4096);
	ck_assert_uint_eq(run(0, &r), VIRTIO_BLK_S_OK);
	ck_assert_int_eq(memcmp(gptr(r.data), gptr(w.data), 4096), 0);
	ck_assert_uint_eq(used_idx(0), 2);
	ck_assert_uint_eq(le32toh(used_elem(0, 1).id), r.head);
	ck_assert_uint_eq(le32toh(used_elem(0, 1).len), 4097);
	ck_assert_uint_eq(g.irqs, 2);
	ck_assert_uint_eq(g.broken, 0);
}
END_TEST

START_TEST(batch_one_interrupt)
{
	struct req r[5];

	start();
	for (unsigned i = 0; i < 5; i++) {
		r[i] = make_req(0, i % 2 ? VIRTIO_BLK_T_IN : VIRTIO_BLK_T_OUT, i * 8,
		                512);
		post(0, r[i].head);
	}
	kick(0);
	for (unsigned i = 0; i < 5; i++)
		ck_assert_uint_eq(status_of(&r[i]), VIRTIO_BLK_S_OK);
	ck_assert_uint_eq(used_idx(0), 5);
	/* Completed while draining: one interrupt for the batch. */
	ck_assert_uint_eq(g.irqs, 1);
}
END_TEST

/* Completions the disk delivers in one callback (its fd's, from the loop)
 * or one poll() get one interrupt at the end, not one each: without
 * EVENT_IDX every push wants one, so each would wake the guest for one
 * used entry. */
START_TEST(completion_batch_one_interrupt)
{
	struct event_base *base = event_base_new();
	struct vp_vdev *d;
	struct req r[4];

	g.params.base = base;
	g.plugin = &fake_plugin_poll;
	start(); /* no EVENT_IDX */
	disk->deferred = true;
	disk->poll_holds = true; /* none ready at the kick's own look */
	for (unsigned i = 0; i < 4; i++) {
		r[i] = make_req(0, VIRTIO_BLK_T_IN, i * 8, 512);
		post(0, r[i].head);
	}
	kick(0);
	ck_assert_uint_eq(disk->npending, 4);
	/* The disk's callback: four completions, the interrupt after it. */
	ck_assert_uint_eq(fake_complete_all(), 4);
	ck_assert_uint_eq(used_idx(0), 4);
	ck_assert_uint_eq(g.irqs, 0);
	event_base_loop(base, EVLOOP_NONBLOCK);
	ck_assert_uint_eq(g.irqs, 1);
	event_base_loop(base, EVLOOP_NONBLOCK);
	ck_assert_uint_eq(g.irqs, 1);

	/* Polled: the interrupt goes when poll() returns. */
	disk->poll_holds = false;
	vp_vdev_set_polled(g.d, true);
	for (unsigned i = 0; i < 3; i++) {
		r[i] = make_req(0, VIRTIO_BLK_T_IN, i * 8, 512);
		post(0, r[i].head);
	}
	ck_assert(vp_vdev_poll(g.d));
	ck_assert_uint_eq(disk->npending, 3);
	ck_assert(vp_vdev_poll(g.d));
	ck_assert_uint_eq(used_idx(0), 7);
	ck_assert_uint_eq(g.irqs, 2);
	event_base_loop(base, EVLOOP_NONBLOCK);
	ck_assert_uint_eq(g.irqs, 2);
	vp_vdev_set_polled(g.d, false);

	/* A device destroyed with its interrupt still due raises none. */
	disk->poll_holds = true;
	r[0] = make_req(0, VIRTIO_BLK_T_IN, 0, 512);
	post(0, r[0].head);
	kick(0);
	ck_assert_uint_eq(fake_complete_all(), 1);
	d = g.d;
	g.d = NULL;
	vp_vdev_destroy(d, on_done, &g);
	ck_assert_uint_eq(g.done_calls, 1);
	event_base_loop(base, EVLOOP_NONBLOCK);
	ck_assert_uint_eq(g.irqs, 2);
	event_base_free(base);
}
END_TEST

/* Statistics: requests and bytes by kind, errors, in flight, kicks,
 * interrupts and latency; and added to the owner's totals when the
 * device goes, so they count on over connections. */
START_TEST(statistics)
{
	struct vp_blk_totals *tot = malloc(sizeof(*tot));
	const struct vp_blk_queue_stats *st;
	struct vp_vdev *d;
	struct req r;

	ck_assert_ptr_nonnull(tot);
	vp_blk_totals_init(tot);
	g.params.totals = tot;
	start();
	r = make_req(0, VIRTIO_BLK_T_OUT, 0, 4096);
	ck_assert_uint_eq(run(0, &r), VIRTIO_BLK_S_OK);
	r = make_req(0, VIRTIO_BLK_T_IN, 0, 1024);
	ck_assert_uint_eq(run(0, &r), VIRTIO_BLK_S_OK);
	r = make_req(0, VIRTIO_BLK_T_IN, 8, 512);
	ck_assert_uint_eq(run(0, &r), VIRTIO_BLK_S_OK);
	r = make_req(0, VIRTIO_BLK_T_FLUSH, 0, 0);
	ck_assert_uint_eq(run(0, &r), VIRTIO_BLK_S_OK);
	/* Past the end: an error, no bytes. */
	r = make_req(0, VIRTIO_BLK_T_IN, DISK_SECTORS, 512);
	ck_assert_uint_eq(run(0, &r), VIRTIO_BLK_S_IOERR);
	r = make_req(0, VIRTIO_BLK_T_GET_ID, 0, VIRTIO_BLK_ID_BYTES);
	ck_assert_uint_eq(run(0, &r), VIRTIO_BLK_S_OK);
	disk->deferred = true;
	r = make_req(0, VIRTIO_BLK_T_IN, 0, 512);
	ck_assert_uint_eq(run(0, &r), SENTINEL);

	st = vp_blk_queue_stats(g.d, 0);
	ck_assert_ptr_nonnull(st);
	ck_assert_ptr_null(vp_blk_queue_stats(g.d, 1));
	ck_assert_uint_eq(st->reqs[VP_BLK_OP_WRITE], 1);
	ck_assert_uint_eq(st->bytes[VP_BLK_OP_WRITE], 4096);
	ck_assert_uint_eq(st->reqs[VP_BLK_OP_READ], 3);
	ck_assert_uint_eq(st->bytes[VP_BLK_OP_READ], 1536);
	ck_assert_uint_eq(st->reqs[VP_BLK_OP_FLUSH], 1);
	ck_assert_uint_eq(st->reqs[VP_BLK_OP_OTHER], 1);
	ck_assert_uint_eq(st->errors, 1);
	ck_assert_uint_eq(st->inflight, 1);
	ck_assert_uint_eq(vp_blk_latency(g.d)->count, 6);
	ck_assert_uint_eq(vp_vdev_queue_kicks(g.d, 0), 7);
	ck_assert_uint_eq(vp_vdev_irqs(g.d), g.irqs);
	ck_assert_str_eq(vp_blk_op_name(VP_BLK_OP_WRITE_ZEROES), "write_zeroes");

	ck_assert_uint_eq(fake_complete_all(), 1);
	ck_assert_uint_eq(st->reqs[VP_BLK_OP_READ], 4);
	ck_assert_uint_eq(st->inflight, 0);
	/* Nothing reaches the totals until the device is freed. */
	ck_assert_uint_eq(tot->q[0].reqs[VP_BLK_OP_READ], 0);
	d = g.d;
	g.d = NULL;
	vp_vdev_destroy(d, on_done, &g);
	ck_assert_uint_eq(g.done_calls, 1);
	ck_assert_uint_eq(tot->q[0].reqs[VP_BLK_OP_READ], 4);
	ck_assert_uint_eq(tot->q[0].bytes[VP_BLK_OP_WRITE], 4096);
	ck_assert_uint_eq(tot->q[0].errors, 1);
	ck_assert_uint_eq(tot->kicks[0], 7);
	ck_assert_uint_eq(tot->irqs, g.irqs);
	ck_assert_uint_eq(tot->lat.count, 7);
	/* A second device of the same backend adds to them. */
	create();
	driver_init(BIT64(VIRTIO_RING_F_EVENT_IDX), 1, QSIZE);
	disk->deferred = false;
	r = make_req(0, VIRTIO_BLK_T_IN, 0, 512);
	ck_assert_uint_eq(run(0, &r), VIRTIO_BLK_S_OK);
	d = g.d;
	g.d = NULL;
	vp_vdev_destroy(d, on_done, &g);
	ck_assert_uint_eq(tot->q[0].reqs[VP_BLK_OP_READ], 5);
	ck_assert_uint_eq(tot->lat.count, 8);
	free(tot);
}
END_TEST

/* avail_event, after the used ring's entries (EVENT_IDX). */
static uint16_t avail_event(unsigned q)
{
	uint8_t *used = gptr(g.q[q].used);

	return le16toh(*(uint16_t *)(used + 4 + 8 * (size_t)g.q[q].num));
}

static uint16_t used_flags(unsigned q)
{
	struct vring_used *used = gptr(g.q[q].used);

	return le16toh(used->flags);
}

START_TEST(polled_mode_leaves_kicks_off)
{
	struct req r[4];

	create();
	driver_init(0, 1, QSIZE); /* with EVENT_IDX */
	r[0] = make_req(0, VIRTIO_BLK_T_OUT, 0, 512);
	ck_assert_uint_eq(run(0, &r[0]), VIRTIO_BLK_S_OK);
	/* Idle: the next request must be kicked. */
	ck_assert_uint_eq(avail_event(0), 1);
	ck_assert_uint_eq(vp_vdev_reqs_started(g.d), 1);

	/* Polled: draining leaves avail_event behind, so the guest's next
	 * requests need no kick... */
	vp_vdev_set_polled(g.d, true);
	ck_assert(vp_vdev_polled(g.d));
	r[1] = make_req(0, VIRTIO_BLK_T_OUT, 8, 512);
	ck_assert_uint_eq(run(0, &r[1]), VIRTIO_BLK_S_OK);
	ck_assert_uint_eq(avail_event(0), 1);
	/* ...and are served by polling alone. */
	r[2] = make_req(0, VIRTIO_BLK_T_IN, 8, 512);
	post(0, r[2].head);
	ck_assert_uint_eq(status_of(&r[2]), SENTINEL);
	vp_vdev_poll(g.d);
	ck_assert_uint_eq(status_of(&r[2]), VIRTIO_BLK_S_OK);
	ck_assert_uint_eq(avail_event(0), 1);
	ck_assert_uint_eq(vp_vdev_reqs_started(g.d), 3);

	/* Leaving polled mode serves what arrived and asks for kicks again. */
	r[3] = make_req(0, VIRTIO_BLK_T_IN, 0, 512);
	post(0, r[3].head);
	vp_vdev_set_polled(g.d, false);
	ck_assert(!vp_vdev_polled(g.d));
	ck_assert_uint_eq(status_of(&r[3]), VIRTIO_BLK_S_OK);
	ck_assert_uint_eq(used_idx(0), 4);
	ck_assert_uint_eq(avail_event(0), 4);
	ck_assert_uint_eq(g.broken, 0);
}
END_TEST

START_TEST(polled_mode_without_event_idx)
{
	struct req r[2];

	start(); /* no EVENT_IDX: VRING_USED_F_NO_NOTIFY */
	vp_vdev_set_polled(g.d, true);
	r[0] = make_req(0, VIRTIO_BLK_T_OUT, 0, 512);
	ck_assert_uint_eq(run(0, &r[0]), VIRTIO_BLK_S_OK);
	ck_assert_uint_eq(used_flags(0) & VRING_USED_F_NO_NOTIFY, VRING_USED_F_NO_NOTIFY);
	r[1] = make_req(0, VIRTIO_BLK_T_IN, 0, 512);
	post(0, r[1].head);
	vp_vdev_set_polled(g.d, false);
	ck_assert_uint_eq(status_of(&r[1]), VIRTIO_BLK_S_OK);
	ck_assert_uint_eq(used_flags(0) & VRING_USED_F_NO_NOTIFY, 0);
}
END_TEST

START_TEST(deferred_completion)
{
	struct req r;

	start();
	disk->deferred = true;
	r = make_req(0, VIRTIO_BLK_T_IN, 0, 1024);
	ck_assert_uint_eq(run(0, &r), SENTINEL);
	ck_assert_uint_eq(disk->npending, 1);
	ck_assert_uint_eq(used_idx(0), 0);
	ck_assert_uint_eq(g.irqs, 0);
	ck_assert_uint_eq(fake_complete_all(), 1);
	ck_assert_uint_eq(status_of(&r), VIRTIO_BLK_S_OK);
	ck_assert_int_eq(memcmp(gptr(r.data), disk->data, 1024), 0);
	ck_assert_uint_eq(used_idx(0), 1);
	ck_assert_uint_eq(g.irqs, 1);
}
END_TEST

/* A frontend may end its grants once it sees the used entry: the request's
 * mappings must be gone before the entry is published and the guest told. */
START_TEST(unmapped_before_published)
{
	struct vp_gmem_stats idle, busy;
	struct req r;

	start();
	disk->deferred = true;
	vp_gmem_get_stats(g.gm, &idle); /* the rings only */
	r = make_req(0, VIRTIO_BLK_T_IN, 0, 4096);
	ck_assert_uint_eq(run(0, &r), SENTINEL);
	vp_gmem_get_stats(g.gm, &busy);
	ck_assert_uint_gt(busy.held, idle.held);
	ck_assert_uint_eq(fake_complete_all(), 1);
	ck_assert_uint_eq(g.irqs, 1);
	ck_assert_uint_eq(g.held_at_irq, idle.held);
	ck_assert_uint_eq(status_of(&r), VIRTIO_BLK_S_OK);
}
END_TEST

START_TEST(any_layout)
{
	uint64_t hdr_and_data, hdr, d1, d2, st;
	uint16_t head;

	start();
	/* Header and data in one readable descriptor. */
	hdr_and_data = galloc(16 + 1024);
	memcpy(gptr(hdr_and_data), gptr(put_hdr(VIRTIO_BLK_T_OUT, 4)), 16);
	fill(hdr_and_data + 16, 1024, 99);
	st = put_status();
	head = add_chain(
	        0, (struct seg[]){{hdr_and_data, 16 + 1024, false}, {st, 1, true}}, 2);
	post(0, head);
	kick(0);
	ck_assert_uint_eq(*(uint8_t *)gptr(st), VIRTIO_BLK_S_OK);
	ck_assert_int_eq(memcmp(disk->data + 4 * 512, gptr(hdr_and_data + 16), 1024), 0);
	ck_assert_uint_eq(disk->log[0].iovcnt, 1);

	/* Read data split over three buffers, the status byte at the end of
	 * the last one. */
	hdr = put_hdr(VIRTIO_BLK_T_IN, 4);
	d1 = galloc(100);
	d2 = galloc(412 + 512 + 1);
	*(uint8_t *)gptr(d2 + 924) = SENTINEL;
	head = add_chain(0,
	                 (struct seg[]){{hdr, 16, false},
	                                {d1, 100, true},
	                                {d2, 412, true},
	                                {d2 + 412, 513, true}},
	                 4);
	post(0, head);
	kick(0);
	ck_assert_uint_eq(*(uint8_t *)gptr(d2 + 924), VIRTIO_BLK_S_OK);
	ck_assert_uint_eq(disk->log[1].iovcnt, 3);
	ck_assert_uint_eq(disk->log[1].len, 1024);
	ck_assert_int_eq(memcmp(gptr(d1), disk->data + 4 * 512, 100), 0);
	ck_assert_int_eq(memcmp(gptr(d2), disk->data + 4 * 512 + 100, 924), 0);
	ck_assert_uint_eq(le32toh(used_elem(0, 1).len), 1025);
}
END_TEST

START_TEST(indirect_request)
{
	struct req r;

	start();
	r = make_read_indirect(0, 1);
	ck_assert_uint_eq(run(0, &r), VIRTIO_BLK_S_OK);
	ck_assert_int_eq(memcmp(gptr(r.data), disk->data + 512, 512), 0);
	ck_assert_uint_eq(le32toh(used_elem(0, 0).len), 513);
}
END_TEST

START_TEST(beyond_capacity)
{
	struct req r;

	start();
	r = make_req(0, VIRTIO_BLK_T_IN, DISK_SECTORS - 1, 1024);
	ck_assert_uint_eq(run(0, &r), VIRTIO_BLK_S_IOERR);
	r = make_req(0, VIRTIO_BLK_T_OUT, DISK_SECTORS, 512);
	ck_assert_uint_eq(run(0, &r), VIRTIO_BLK_S_IOERR);
	/* sector * 512 overflows 64 bits. */
	r = make_req(0, VIRTIO_BLK_T_IN, (UINT64_MAX >> 9) + 2, 512);
	ck_assert_uint_eq(run(0, &r), VIRTIO_BLK_S_IOERR);
	r = make_req(0, VIRTIO_BLK_T_IN, UINT64_MAX, 512);
	ck_assert_uint_eq(run(0, &r), VIRTIO_BLK_S_IOERR);
	ck_assert_uint_eq(disk->nlog, 0);
	/* The last sector is fine. */
	r = make_req(0, VIRTIO_BLK_T_IN, DISK_SECTORS - 1, 512);
	ck_assert_uint_eq(run(0, &r), VIRTIO_BLK_S_OK);
	ck_assert_uint_eq(disk->nlog, 1);
	ck_assert_uint_eq(used_idx(0), 5);
	ck_assert_uint_eq(g.broken, 0);
}
END_TEST

START_TEST(read_only_disk)
{
	struct virtio_blk_discard_write_zeroes s = dz(0, 8, 0);
	uint8_t before[512];
	struct req r;

	g.params.read_only = true;
	start();
	memcpy(before, disk->data, 512);
	r = make_req(0, VIRTIO_BLK_T_OUT, 0, 512);
	ck_assert_uint_eq(run(0, &r), VIRTIO_BLK_S_IOERR);
	r = make_dz(VIRTIO_BLK_T_DISCARD, &s, 1);
	ck_assert_uint_eq(run(0, &r), VIRTIO_BLK_S_IOERR);
	r = make_dz(VIRTIO_BLK_T_WRITE_ZEROES, &s, 1);
	ck_assert_uint_eq(run(0, &r), VIRTIO_BLK_S_IOERR);
	ck_assert_uint_eq(disk->nlog, 0);
	ck_assert_int_eq(memcmp(before, disk->data, 512), 0);
	r = make_req(0, VIRTIO_BLK_T_IN, 0, 512);
	ck_assert_uint_eq(run(0, &r), VIRTIO_BLK_S_OK);
	r = make_req(0, VIRTIO_BLK_T_FLUSH, 0, 0);
	ck_assert_uint_eq(run(0, &r), VIRTIO_BLK_S_OK);
}
END_TEST

START_TEST(partial_sector)
{
	struct req r;

	start();
	r = make_req(0, VIRTIO_BLK_T_IN, 0, 100);
	ck_assert_uint_eq(run(0, &r), VIRTIO_BLK_S_IOERR);
	r = make_req(0, VIRTIO_BLK_T_OUT, 0, 513);
	ck_assert_uint_eq(run(0, &r), VIRTIO_BLK_S_IOERR);
	ck_assert_uint_eq(disk->nlog, 0);
	/* No data at all is a valid, empty request. */
	r = make_req(0, VIRTIO_BLK_T_IN, 0, 0);
	ck_assert_uint_eq(run(0, &r), VIRTIO_BLK_S_OK);
	ck_assert_uint_eq(disk->nlog, 0);
}
END_TEST

START_TEST(short_header)
{
	uint64_t hdr, st;
	uint16_t head;

	start();
	hdr = put_hdr(VIRTIO_BLK_T_IN, 0);
	st = put_status();
	head = add_chain(0, (struct seg[]){{hdr, 8, false}, {st, 1, true}}, 2);
	post(0, head);
	kick(0);
	ck_assert_uint_eq(*(uint8_t *)gptr(st), VIRTIO_BLK_S_IOERR);
	/* The header may also be split over descriptors. */
	hdr = put_hdr(VIRTIO_BLK_T_IN, 2);
	st = galloc(513);
	head = add_chain(
	        0, (struct seg[]){{hdr, 8, false}, {hdr + 8, 8, false}, {st, 513, true}},
	        3);
	post(0, head);
	kick(0);
	ck_assert_uint_eq(*(uint8_t *)gptr(st + 512), VIRTIO_BLK_S_OK);
	ck_assert_int_eq(memcmp(gptr(st), disk->data + 1024, 512), 0);
	ck_assert(!vp_vdev_is_broken(g.d));
}
END_TEST

START_TEST(no_status_byte_breaks_device)
{
	struct req r;
	uint64_t hdr;
	uint16_t head;

	start();
	hdr = put_hdr(VIRTIO_BLK_T_OUT, 0);
	head = add_chain(0, (struct seg[]){{hdr, 16, false}, {galloc(512), 512, false}},
	                 2);
	post(0, head);
	kick(0);
	ck_assert(vp_vdev_is_broken(g.d));
	ck_assert_uint_eq(g.broken, 1);
	ck_assert_uint_eq(used_idx(0), 0);
	ck_assert_uint_eq(disk->nlog, 0);
	ck_assert_uint_ne(rd(VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET, 0);
	/* Nothing more is processed until the driver resets. */
	r = make_req(0, VIRTIO_BLK_T_IN, 0, 512);
	ck_assert_uint_eq(run(0, &r), SENTINEL);
	wr(VIRTIO_MMIO_STATUS, 0);
	driver_init(BIT64(VIRTIO_RING_F_EVENT_IDX), 1, QSIZE);
	r = make_req(0, VIRTIO_BLK_T_IN, 0, 512);
	ck_assert_uint_eq(run(0, &r), VIRTIO_BLK_S_OK);
}
END_TEST

START_TEST(hostile_ring_breaks_device)
{
	struct req r;

	start();
	post(0, QSIZE + 3);
	kick(0);
	ck_assert(vp_vdev_is_broken(g.d));
	ck_assert_uint_eq(g.broken, 1);
	ck_assert_uint_eq(used_idx(0), 0);
	wr(VIRTIO_MMIO_STATUS, 0);
	driver_init(0, 1, QSIZE);
	r = make_req(0, VIRTIO_BLK_T_IN, 0, 512);
	ck_assert_uint_eq(run(0, &r), VIRTIO_BLK_S_OK);
}
END_TEST

START_TEST(get_id)
{
	struct req r;
	uint8_t *p;

	start();
	r = make_req(0, VIRTIO_BLK_T_GET_ID, 0, VIRTIO_BLK_ID_BYTES);
	ck_assert_uint_eq(run(0, &r), VIRTIO_BLK_S_OK);
	ck_assert_int_eq(memcmp(gptr(r.data), "vproxy-serial-012345", 20), 0);
	ck_assert_uint_eq(disk->nlog, 0);
	/* A short buffer gets the first bytes; nothing past it is written. */
	r = make_req(0, VIRTIO_BLK_T_GET_ID, 0, 8);
	p = gptr(r.data);
	memset(p, 0xee, 8);
	ck_assert_uint_eq(run(0, &r), VIRTIO_BLK_S_OK);
	ck_assert_int_eq(memcmp(p, "vproxy-s", 8), 0);
	/* Only a status byte: nowhere to put the id. */
	r = make_req(0, VIRTIO_BLK_T_GET_ID, 0, 0);
	ck_assert_uint_eq(run(0, &r), VIRTIO_BLK_S_IOERR);
}
END_TEST

START_TEST(short_serial_is_padded)
{
	struct req r;

	snprintf(g.params.serial, sizeof(g.params.serial), "abc");
	start();
	r = make_req(0, VIRTIO_BLK_T_GET_ID, 0, VIRTIO_BLK_ID_BYTES);
	memset(gptr(r.data), 0xee, VIRTIO_BLK_ID_BYTES);
	ck_assert_uint_eq(run(0, &r), VIRTIO_BLK_S_OK);
	ck_assert_int_eq(
	        memcmp(gptr(r.data), "abc\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 20), 0);
}
END_TEST

START_TEST(unsupported_types)
{
	static const uint32_t types[] = {2, 3, 5, 0x80000001u, VIRTIO_BLK_T_SECURE_ERASE,
	                                 99};
	struct req r;

	start();
	for (unsigned i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		r = make_req(0, types[i], 0, 512);
		ck_assert_uint_eq(run(0, &r), VIRTIO_BLK_S_UNSUPP);
	}
	ck_assert_uint_eq(disk->nlog, 0);
	ck_assert(!vp_vdev_is_broken(g.d));
}
END_TEST

START_TEST(flush)
{
	struct req r;

	start();
	r = make_req(0, VIRTIO_BLK_T_FLUSH, 0, 0);
	ck_assert_uint_eq(run(0, &r), VIRTIO_BLK_S_OK);
	ck_assert_uint_eq(disk->nlog, 1);
	ck_assert_uint_eq(disk->log[0].op, VPROXY_REQ_FLUSH);
}
END_TEST

START_TEST(flush_unsupported)
{
	struct req r;

	g.info.flags = 0;
	start();
	r = make_req(0, VIRTIO_BLK_T_FLUSH, 0, 0);
	ck_assert_uint_eq(run(0, &r), VIRTIO_BLK_S_UNSUPP);
	r = make_dz(VIRTIO_BLK_T_DISCARD,
	            (struct virtio_blk_discard_write_zeroes[]){dz(0, 1, 0)}, 1);
	ck_assert_uint_eq(run(0, &r), VIRTIO_BLK_S_UNSUPP);
	r = make_dz(VIRTIO_BLK_T_WRITE_ZEROES,
	            (struct virtio_blk_discard_write_zeroes[]){dz(0, 1, 0)}, 1);
	ck_assert_uint_eq(run(0, &r), VIRTIO_BLK_S_UNSUPP);
	ck_assert_uint_eq(disk->nlog, 0);
}
END_TEST

START_TEST(discard_segments)
{
	struct virtio_blk_discard_write_zeroes s[3] = {dz(8, 4, 0), dz(100, 0, 0),
	                                               dz(40, 16, 0)};
	struct req r;

	start();
	r = make_dz(VIRTIO_BLK_T_DISCARD, s, 3);
	ck_assert_uint_eq(run(0, &r), VIRTIO_BLK_S_OK);
	/* The empty segment costs nothing. */
	ck_assert_uint_eq(disk->nlog, 2);
	ck_assert_uint_eq(disk->log[0].op, VPROXY_REQ_DISCARD);
	ck_assert_uint_eq(disk->log[0].offset, 8 * 512);
	ck_assert_uint_eq(disk->log[0].len, 4 * 512);
	ck_assert_uint_eq(disk->log[0].flags, 0);
	ck_assert_uint_eq(disk->log[1].offset, 40 * 512);
	ck_assert_uint_eq(disk->log[1].len, 16 * 512);
	for (unsigned i = 0; i < 4 * 512; i++)
		ck_assert_uint_eq(disk->data[8 * 512 + i], 0);
	ck_assert_uint_eq(used_idx(0), 1);
}
END_TEST

START_TEST(discard_deferred_one_at_a_time)
{
	struct virtio_blk_discard_write_zeroes s[2] = {dz(8, 4, 0), dz(40, 16, 0)};
	struct req r;

	start();
	disk->deferred = true;
	r = make_dz(VIRTIO_BLK_T_DISCARD, s, 2);
	ck_assert_uint_eq(run(0, &r), SENTINEL);
	ck_assert_uint_eq(disk->npending, 1);
	/* The guest rewriting its segments now changes nothing. */
	memset(gptr(r.data), 0xff, 2 * sizeof(s[0]));
	ck_assert_uint_eq(fake_complete_all(), 2);
	ck_assert_uint_eq(disk->nlog, 2);
	ck_assert_uint_eq(disk->log[1].offset, 40 * 512);
	ck_assert_uint_eq(status_of(&r), VIRTIO_BLK_S_OK);
	ck_assert_uint_eq(used_idx(0), 1);
}
END_TEST

START_TEST(discard_error_stops_segments)
{
	struct virtio_blk_discard_write_zeroes s[2] = {dz(8, 4, 0), dz(40, 16, 0)};
	struct req r;

	start();
	disk->complete_status = -EIO;
	r = make_dz(VIRTIO_BLK_T_DISCARD, s, 2);
	ck_assert_uint_eq(run(0, &r), VIRTIO_BLK_S_IOERR);
	ck_assert_uint_eq(disk->nlog, 1);
}
END_TEST

START_TEST(segment_flags)
{
	struct virtio_blk_discard_write_zeroes s;
	struct req r;

	start();
	/* Discard with UNMAP, or any unknown flag: unsupported. */
	s = dz(0, 1, VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP);
	r = make_dz(VIRTIO_BLK_T_DISCARD, &s, 1);
	ck_assert_uint_eq(run(0, &r), VIRTIO_BLK_S_UNSUPP);
	s = dz(0, 1, 2);
	r = make_dz(VIRTIO_BLK_T_WRITE_ZEROES, &s, 1);
	ck_assert_uint_eq(run(0, &r), VIRTIO_BLK_S_UNSUPP);
	ck_assert_uint_eq(disk->nlog, 0);
	/* Write-zeroes may unmap. */
	s = dz(16, 2, VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP);
	r = make_dz(VIRTIO_BLK_T_WRITE_ZEROES, &s, 1);
	ck_assert_uint_eq(run(0, &r), VIRTIO_BLK_S_OK);
	ck_assert_uint_eq(disk->log[0].op, VPROXY_REQ_WRITE_ZEROES);
	ck_assert_uint_eq(disk->log[0].flags, VPROXY_REQ_F_UNMAP);
	ck_assert_uint_eq(disk->log[0].offset, 16 * 512);
	ck_assert_uint_eq(disk->log[0].len, 2 * 512);
	s = dz(16, 2, 0);
	r = make_dz(VIRTIO_BLK_T_WRITE_ZEROES, &s, 1);
	ck_assert_uint_eq(run(0, &r), VIRTIO_BLK_S_OK);
	ck_assert_uint_eq(disk->log[1].flags, 0);
}
END_TEST

START_TEST(write_zeroes_without_unmap_support)
{
	struct virtio_blk_discard_write_zeroes s =
	        dz(16, 2, VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP);
	struct req r;

	g.info.flags = VPROXY_DISK_WRITE_ZEROES;
	start();
	ck_assert_uint_eq(
	        rd_config(offsetof(struct virtio_blk_config, write_zeroes_may_unmap), 1),
	        0);
	r = make_dz(VIRTIO_BLK_T_WRITE_ZEROES, &s, 1);
	ck_assert_uint_eq(run(0, &r), VIRTIO_BLK_S_OK);
	/* The device promised not to unmap, so the plugin is not told to. */
	ck_assert_uint_eq(disk->log[0].flags, 0);
}
END_TEST

START_TEST(segment_payload_checks)
{
	struct virtio_blk_discard_write_zeroes many[33];
	struct virtio_blk_discard_write_zeroes s;
	uint64_t hdr, st;
	struct req r;
	uint16_t head;

	g.info.max_discard_sectors = 8;
	start();
	ck_assert_uint_eq(
	        rd_config(offsetof(struct virtio_blk_config, max_discard_sectors), 4), 8);
	/* No segments at all. */
	r = make_dz(VIRTIO_BLK_T_DISCARD, NULL, 0);
	ck_assert_uint_eq(run(0, &r), VIRTIO_BLK_S_IOERR);
	/* A payload that is not a whole number of segments. */
	hdr = put_hdr(VIRTIO_BLK_T_DISCARD, 0);
	st = put_status();
	head = add_chain(
	        0,
	        (struct seg[]){{hdr, 16, false}, {galloc(20), 20, false}, {st, 1, true}},
	        3);
	post(0, head);
	kick(0);
	ck_assert_uint_eq(*(uint8_t *)gptr(st), VIRTIO_BLK_S_IOERR);
	/* More segments than max_discard_seg. */
	for (unsigned i = 0; i < 33; i++)
		many[i] = dz(i, 1, 0);
	r = make_dz(VIRTIO_BLK_T_DISCARD, many, 33);
	ck_assert_uint_eq(run(0, &r), VIRTIO_BLK_S_IOERR);
	/* Beyond capacity, overflowing, above the per-segment limit. */
	s = dz(DISK_SECTORS - 1, 2, 0);
	r = make_dz(VIRTIO_BLK_T_DISCARD, &s, 1);
	ck_assert_uint_eq(run(0, &r), VIRTIO_BLK_S_IOERR);
	s = dz(UINT64_MAX - 1, 4, 0);
	r = make_dz(VIRTIO_BLK_T_DISCARD, &s, 1);
	ck_assert_uint_eq(run(0, &r), VIRTIO_BLK_S_IOERR);
	s = dz(0, 9, 0);
	r = make_dz(VIRTIO_BLK_T_DISCARD, &s, 1);
	ck_assert_uint_eq(run(0, &r), VIRTIO_BLK_S_IOERR);
	ck_assert_uint_eq(disk->nlog, 0);
	/* 32 segments is the limit, and fine. */
	r = make_dz(VIRTIO_BLK_T_DISCARD, many, 32);
	ck_assert_uint_eq(run(0, &r), VIRTIO_BLK_S_OK);
	ck_assert_uint_eq(disk->nlog, 32);
	ck_assert(!vp_vdev_is_broken(g.d));
}
END_TEST

START_TEST(plugin_errors)
{
	struct req r;

	start();
	disk->complete_status = -EIO;
	r = make_req(0, VIRTIO_BLK_T_IN, 0, 512);
	ck_assert_uint_eq(run(0, &r), VIRTIO_BLK_S_IOERR);
	disk->complete_status = -EOPNOTSUPP;
	r = make_req(0, VIRTIO_BLK_T_FLUSH, 0, 0);
	ck_assert_uint_eq(run(0, &r), VIRTIO_BLK_S_UNSUPP);
	disk->complete_status = 0;
	disk->submit_ret = -ENOMEM;
	r = make_req(0, VIRTIO_BLK_T_OUT, 0, 512);
	ck_assert_uint_eq(run(0, &r), VIRTIO_BLK_S_IOERR);
	disk->submit_ret = 0;
	disk->deferred = true;
	disk->complete_status = -EIO;
	r = make_req(0, VIRTIO_BLK_T_OUT, 0, 512);
	ck_assert_uint_eq(run(0, &r), SENTINEL);
	fake_complete_all();
	ck_assert_uint_eq(status_of(&r), VIRTIO_BLK_S_IOERR);
	ck_assert_uint_eq(used_idx(0), 4);
	ck_assert(!vp_vdev_is_broken(g.d));
}
END_TEST

START_TEST(destroy_with_request_in_flight)
{
	struct vp_vdev *d;
	struct req r, w;

	start();
	disk->deferred = true;
	r = make_req(0, VIRTIO_BLK_T_IN, 0, 512);
	w = make_req(0, VIRTIO_BLK_T_OUT, 8, 512);
	post(0, r.head);
	post(0, w.head);
	kick(0);
	ck_assert_uint_eq(disk->npending, 2);
	d = g.d;
	g.d = NULL;
	vp_vdev_destroy(d, on_done, &g);
	ck_assert_uint_eq(g.done_calls, 0);
	g.irqs = 0;
	fake_complete_all();
	ck_assert_uint_eq(g.done_calls, 1);
	/* The guest's status bytes and used ring were left alone. */
	ck_assert_uint_eq(status_of(&r), SENTINEL);
	ck_assert_uint_eq(status_of(&w), SENTINEL);
	ck_assert_uint_eq(used_idx(0), 0);
	ck_assert_uint_eq(g.irqs, 0);
}
END_TEST

START_TEST(destroy_idle)
{
	struct req r;

	start();
	r = make_req(0, VIRTIO_BLK_T_IN, 0, 512);
	ck_assert_uint_eq(run(0, &r), VIRTIO_BLK_S_OK);
	vp_vdev_destroy(g.d, on_done, &g);
	g.d = NULL;
	ck_assert_uint_eq(g.done_calls, 1);
}
END_TEST

/* Virtio 2.4: Status reads 0 only once no request can touch guest memory
 * any more; until then the rings are left alone, nothing is pushed and no
 * interrupt is raised, and the device still works after a new setup. */
START_TEST(reset_with_request_in_flight)
{
	enum { RESET_REQS = 5 }; /* three descriptors each: as many as fit */
	struct req r[RESET_REQS];
	uint8_t before[512];

	start();
	disk->deferred = true;
	for (unsigned i = 0; i < RESET_REQS; i++) {
		r[i] = make_req(0, VIRTIO_BLK_T_IN, i, 512);
		post(0, r[i].head);
	}
	kick(0);
	ck_assert_uint_eq(disk->npending, RESET_REQS);
	g.irqs = 0;
	wr(VIRTIO_MMIO_STATUS, 0);
	for (unsigned i = 0; i < RESET_REQS; i++) {
		ck_assert_uint_ne(rd(VIRTIO_MMIO_STATUS), 0);
		/* The driver must wait: other writes are ignored meanwhile. */
		wr(VIRTIO_MMIO_QUEUE_READY, 0);
		fake_complete_one();
	}
	ck_assert_uint_eq(rd(VIRTIO_MMIO_STATUS), 0);
	for (unsigned i = 0; i < RESET_REQS; i++)
		ck_assert_uint_eq(status_of(&r[i]), SENTINEL);
	ck_assert_uint_eq(used_idx(0), 0);
	ck_assert_uint_eq(g.irqs, 0);
	/* After Status 0 nothing writes the old buffers. */
	memcpy(before, gptr(r[0].data), sizeof(before));
	fake_complete_all();
	ck_assert_int_eq(memcmp(before, gptr(r[0].data), sizeof(before)), 0);

	driver_init(BIT64(VIRTIO_RING_F_EVENT_IDX), 1, QSIZE);
	disk->deferred = false;
	r[0] = make_req(0, VIRTIO_BLK_T_IN, 0, 512);
	ck_assert_uint_eq(run(0, &r[0]), VIRTIO_BLK_S_OK);
	ck_assert_uint_eq(used_idx(0), 1);
}
END_TEST

/* request-timeout: a request the plugin sits on fails with IOERR and the
 * device needs a reset; the plugin worked on a bounce buffer, so its late
 * read never reaches the guest, and the disk is closed only once the
 * plugin gave the request back, from the loop. */
START_TEST(request_timeout_abandons)
{
	struct event_base *base = event_base_new();
	struct timeval tv = {0, 300000};
	struct vp_vdev *d;
	uint8_t before[512];
	struct req r, w;

	g.params.request_timeout_ms = 50;
	g.params.base = base;
	start();
	disk->deferred = true;
	r = make_req(0, VIRTIO_BLK_T_IN, 0, 512);
	memset(gptr(r.data), 0x5a, 512);
	ck_assert_uint_eq(run(0, &r), SENTINEL);
	ck_assert_uint_eq(disk->npending, 1);
	event_base_loopexit(base, &tv);
	event_base_dispatch(base);
	ck_assert_uint_eq(status_of(&r), VIRTIO_BLK_S_IOERR);
	ck_assert_uint_eq(used_idx(0), 1);
	ck_assert_uint_ne(rd(VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET, 0);
	/* After a reset the disk gets nothing more from this device. */
	wr(VIRTIO_MMIO_STATUS, 0);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_STATUS), 0);
	driver_init(BIT64(VIRTIO_RING_F_EVENT_IDX), 1, QSIZE);
	w = make_req(0, VIRTIO_BLK_T_IN, 8, 512);
	ck_assert_uint_eq(run(0, &w), VIRTIO_BLK_S_IOERR);
	ck_assert_uint_eq(disk->npending, 1);
	/* The device goes while the plugin still holds the request. */
	d = g.d;
	g.d = NULL;
	vp_vdev_destroy(d, on_done, &g);
	ck_assert_uint_eq(g.done_calls, 1);
	ck_assert_uint_eq(vp_blk_disk_release(&fake_plugin, disk), 1);
	ck_assert_uint_eq(disk->closes, 0);
	memcpy(before, gptr(r.data), sizeof(before));
	fake_complete_all();
	ck_assert_int_eq(memcmp(before, gptr(r.data), sizeof(before)), 0);
	ck_assert_uint_eq(disk->closes, 0); /* not from inside the completion */
	event_base_loop(base, EVLOOP_NONBLOCK);
	ck_assert_uint_eq(disk->closes, 1);
	event_base_free(base);
}
END_TEST

/* Without a timed-out request, releasing the disk closes it at once. */
START_TEST(disk_release_closes)
{
	ck_assert_uint_eq(vp_blk_disk_release(&fake_plugin, disk), 0);
	ck_assert_uint_eq(disk->closes, 1);
}
END_TEST

/* Fail every allocation of a device's life in turn (create, requests of
 * each kind with a deferred plugin, destroy): each time, a clean error or
 * a failed request, no crash, and nothing leaked (LeakSanitizer checks at
 * exit).  Ends once a run no longer reaches the failing call. */
START_TEST(allocation_failures)
{
	struct virtio_blk_discard_write_zeroes s[2] = {dz(8, 4, 0), dz(40, 16, 0)};
	struct vp_vdev_host host = {.dom = 9, .gm = g.gm, .raise_irq = host_irq};
	unsigned n;

	for (n = 1; n < 1000; n++) {
		struct vp_vdev *d;
		struct req r[4];

		g.brk = HEAP_START;
		disk->nlog = 0;
		disk->deferred = true;
		alloc_calls = 0;
		alloc_failed = false;
		alloc_fail_at = n;
		alloc_armed = true;
		d = vp_blk_create(&g.params, &fake_plugin, disk, &g.info, &host);
		alloc_armed = false;
		if (d) {
			g.d = d;
			driver_init(BIT64(VIRTIO_RING_F_EVENT_IDX), 1, QSIZE);
			r[0] = make_req(0, VIRTIO_BLK_T_IN, 0, 4096);
			r[1] = make_req(0, VIRTIO_BLK_T_OUT, 8, 1024);
			r[2] = make_dz(VIRTIO_BLK_T_DISCARD, s, 2);
			r[3] = make_req(0, VIRTIO_BLK_T_FLUSH, 0, 0);
			for (unsigned i = 0; i < 4; i++)
				post(0, r[i].head);
			alloc_armed = true;
			vp_vdev_mmio_write(d, VIRTIO_MMIO_QUEUE_NOTIFY, 4, 0);
			while (disk->npending) {
				struct vproxy_req *p = disk->pending[0];
				struct vp_req_owner *owner = p->host_priv;

				memmove(disk->pending, disk->pending + 1,
				        --disk->npending * sizeof(disk->pending[0]));
				owner->complete(p, 0);
			}
			alloc_armed = false;
			/* Whatever failed, every request got an answer. */
			for (unsigned i = 0; i < 4; i++)
				ck_assert_uint_ne(status_of(&r[i]), SENTINEL);
			/* And a request in flight while the device goes. */
			r[0] = make_req(0, VIRTIO_BLK_T_IN, 0, 512);
			post(0, r[0].head);
			g.d = NULL;
			alloc_armed = true;
			vp_vdev_mmio_write(d, VIRTIO_MMIO_QUEUE_NOTIFY, 4, 0);
			vp_vdev_destroy(d, NULL, NULL);
			alloc_armed = false;
			fake_complete_all();
		}
		alloc_fail_at = 0;
		if (!alloc_failed)
			break;
	}
	ck_assert_uint_lt(n, 1000);
	ck_assert_uint_gt(n, 5); /* create, the queues, requests all allocate */
	fprintf(stderr, "allocation_failures: %u allocations failed in turn\n", n - 1);
}
END_TEST

/* MMIO QueueReady: the driver stops a queue by writing 0 and reading the 0
 * back; it must not read 0 while the queue's requests may still write. */
START_TEST(queue_disable_waits_for_requests)
{
	struct req r;

	start();
	disk->deferred = true;
	r = make_req(0, VIRTIO_BLK_T_IN, 0, 512);
	ck_assert_uint_eq(run(0, &r), SENTINEL);
	wr(VIRTIO_MMIO_QUEUE_SEL, 0);
	wr(VIRTIO_MMIO_QUEUE_READY, 0);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_QUEUE_READY), 1);
	fake_complete_all();
	ck_assert_uint_eq(rd(VIRTIO_MMIO_QUEUE_READY), 0);
	/* Stale: not pushed to the disabled queue. */
	ck_assert_uint_eq(status_of(&r), SENTINEL);
	ck_assert_uint_eq(used_idx(0), 0);
}
END_TEST

/* A plugin that can cancel is asked to, for every request in flight; the
 * cancelled ones end the reset without a warning or a guest write. */
START_TEST(reset_cancels_in_plugin)
{
	struct req r[4];

	g.plugin = &fake_plugin_cancel;
	start();
	disk->deferred = true;
	for (unsigned i = 0; i < 4; i++) {
		r[i] = make_req(0, VIRTIO_BLK_T_IN, i, 512);
		post(0, r[i].head);
	}
	kick(0);
	ck_assert_uint_eq(disk->npending, 4);
	wr(VIRTIO_MMIO_STATUS, 0);
	ck_assert_uint_eq(disk->cancels, 4);
	ck_assert_uint_ne(rd(VIRTIO_MMIO_STATUS), 0);
	ck_assert_uint_eq(fake_complete_dropped(), 4);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_STATUS), 0);
	for (unsigned i = 0; i < 4; i++)
		ck_assert_uint_eq(status_of(&r[i]), SENTINEL);
	ck_assert_uint_eq(used_idx(0), 0);
}
END_TEST

/* kick() ends every batch: once after all that one guest kick brought,
 * once after a completion that issued the next segment, never when
 * nothing reached the plugin. */
START_TEST(kick_ends_each_batch)
{
	struct virtio_blk_discard_write_zeroes s[3] = {dz(8, 4, 0), dz(40, 16, 0),
	                                               dz(80, 8, 0)};
	struct req r[5], d;

	g.plugin = &fake_plugin_kick;
	start();
	disk->deferred = true;
	for (unsigned i = 0; i < 5; i++) {
		r[i] = make_req(0, i % 2 ? VIRTIO_BLK_T_IN : VIRTIO_BLK_T_OUT, i * 8, 512);
		post(0, r[i].head);
	}
	kick(0);
	ck_assert_uint_eq(disk->npending, 5);
	ck_assert_uint_eq(disk->kicks, 1);
	ck_assert_uint_eq(disk->nlog_at_kick, 5);
	/* Completions that submit nothing: no kick. */
	ck_assert_uint_eq(fake_complete_all(), 5);
	ck_assert_uint_eq(disk->kicks, 1);
	for (unsigned i = 0; i < 5; i++)
		ck_assert_uint_eq(status_of(&r[i]), VIRTIO_BLK_S_OK);
	/* A three-segment discard: each completion issues the next segment
	 * and ends its own batch. */
	d = make_dz(VIRTIO_BLK_T_DISCARD, s, 3);
	post(0, d.head);
	kick(0);
	ck_assert_uint_eq(disk->kicks, 2);
	fake_complete_one();
	ck_assert_uint_eq(disk->kicks, 3);
	ck_assert_uint_eq(disk->nlog_at_kick, 7);
	fake_complete_one();
	ck_assert_uint_eq(disk->kicks, 4);
	fake_complete_one();
	ck_assert_uint_eq(disk->kicks, 4);
	ck_assert_uint_eq(status_of(&d), VIRTIO_BLK_S_OK);
	/* A disk that completes inline gets no kick: nothing is held back. */
	disk->deferred = false;
	r[0] = make_req(0, VIRTIO_BLK_T_IN, 0, 512);
	ck_assert_uint_eq(run(0, &r[0]), VIRTIO_BLK_S_OK);
	ck_assert_uint_eq(disk->kicks, 4);
}
END_TEST

/* A guest's kick ends with one look at the plugin's completions: what the
 * submissions finished already (io_uring runs a read of cached pages
 * inside the submit) reaches the guest in the same turn, under one
 * interrupt with what completed inline, without a wake-up for the disk's
 * fd.  Nothing in flight: no look. */
START_TEST(kick_reaps_ready_completions)
{
	struct req r[3];

	g.plugin = &fake_plugin_poll;
	start(); /* no EVENT_IDX: every push wants an interrupt */
	disk->deferred = true;
	for (unsigned i = 0; i < 3; i++) {
		r[i] = make_req(0, i == 1 ? VIRTIO_BLK_T_OUT : VIRTIO_BLK_T_IN, i * 8, 512);
		post(0, r[i].head);
	}
	kick(0);
	ck_assert_uint_eq(disk->npending, 0);
	for (unsigned i = 0; i < 3; i++)
		ck_assert_uint_eq(status_of(&r[i]), VIRTIO_BLK_S_OK);
	ck_assert_uint_eq(used_idx(0), 3);
	ck_assert_uint_eq(g.irqs, 1);
	ck_assert_uint_eq(disk->polls, 1);
	ck_assert_uint_eq(disk->poll_ends, 1);
	/* A disk that completes inline leaves nothing to look for. */
	disk->deferred = false;
	r[0] = make_req(0, VIRTIO_BLK_T_IN, 0, 512);
	ck_assert_uint_eq(run(0, &r[0]), VIRTIO_BLK_S_OK);
	ck_assert_uint_eq(disk->polls, 1);
	ck_assert_uint_eq(g.irqs, 2);
}
END_TEST

/* Polled mode runs the plugin's completions without its fd, only while
 * requests are in flight; leaving polled mode, or destroying the device
 * in it, ends the plugin's spell once. */
START_TEST(polled_mode_polls_completions)
{
	struct vp_vdev *d;
	struct req r[3];

	g.plugin = &fake_plugin_poll;
	start();
	disk->deferred = true;
	/* Not polled: completions are the plugin's fd's business (after the
	 * one look at the end of the kick, which finds none ready). */
	disk->poll_holds = true;
	r[0] = make_req(0, VIRTIO_BLK_T_IN, 0, 512);
	post(0, r[0].head);
	kick(0);
	ck_assert_uint_eq(disk->npending, 1);
	ck_assert_uint_eq(disk->polls, 1);
	ck_assert_uint_eq(disk->poll_ends, 1);
	ck_assert(!vp_vdev_awaiting(g.d));
	/* A pass over the queues (nothing new) ends with the same look. */
	ck_assert(!vp_vdev_poll(g.d));
	ck_assert_uint_eq(disk->polls, 2);
	ck_assert_uint_eq(disk->poll_ends, 2);
	ck_assert_uint_eq(fake_complete_all(), 1);
	disk->poll_holds = false;
	disk->polls = disk->poll_ends = 0;

	vp_vdev_set_polled(g.d, true);
	/* Nothing in flight: the plugin is not asked. */
	ck_assert(!vp_vdev_poll(g.d));
	ck_assert_uint_eq(disk->polls, 0);
	/* Polling takes the request, the next poll runs its completion. */
	r[1] = make_req(0, VIRTIO_BLK_T_OUT, 8, 512);
	post(0, r[1].head);
	ck_assert(vp_vdev_poll(g.d));
	ck_assert_uint_eq(disk->npending, 1);
	ck_assert_uint_eq(status_of(&r[1]), SENTINEL);
	/* Its completion is sure to come: the loop may wait for it. */
	ck_assert(vp_vdev_awaiting(g.d));
	ck_assert(vp_vdev_poll(g.d));
	ck_assert(!vp_vdev_awaiting(g.d));
	ck_assert_uint_eq(disk->polls, 1);
	ck_assert_uint_eq(status_of(&r[1]), VIRTIO_BLK_S_OK);
	ck_assert(!vp_vdev_poll(g.d));
	ck_assert_uint_eq(disk->polls, 1);
	vp_vdev_set_polled(g.d, false);
	ck_assert_uint_eq(disk->poll_ends, 1);
	/* A spell in which the plugin was never polled needs no end. */
	vp_vdev_set_polled(g.d, true);
	vp_vdev_set_polled(g.d, false);
	ck_assert_uint_eq(disk->poll_ends, 1);

	/* Destroyed while polled, with a request in the plugin: the spell
	 * ends, and the completion arrives the usual way. */
	vp_vdev_set_polled(g.d, true);
	r[2] = make_req(0, VIRTIO_BLK_T_IN, 16, 512);
	post(0, r[2].head);
	ck_assert(vp_vdev_poll(g.d));
	ck_assert_uint_eq(disk->npending, 1);
	disk->poll_holds = true; /* the disk is slow */
	ck_assert(!vp_vdev_poll(g.d));
	ck_assert_uint_eq(disk->polls, 2);
	d = g.d;
	g.d = NULL;
	vp_vdev_destroy(d, on_done, &g);
	ck_assert_uint_eq(disk->poll_ends, 2);
	ck_assert_uint_eq(g.done_calls, 0);
	/* cancel() dropped it; it completes later, from the loop. */
	fake_complete_dropped();
	fake_complete_all();
	ck_assert_uint_eq(g.done_calls, 1);
	ck_assert_uint_eq(g.broken, 0);
}
END_TEST

/* Destroying a device cancels what is in flight as well. */
START_TEST(destroy_cancels_in_plugin)
{
	struct vp_vdev *d;
	struct req r;

	g.plugin = &fake_plugin_cancel;
	start();
	disk->deferred = true;
	r = make_req(0, VIRTIO_BLK_T_IN, 0, 512);
	post(0, r.head);
	kick(0);
	d = g.d;
	g.d = NULL;
	vp_vdev_destroy(d, on_done, &g);
	ck_assert_uint_eq(disk->cancels, 1);
	ck_assert_uint_eq(g.done_calls, 0);
	fake_complete_dropped();
	ck_assert_uint_eq(g.done_calls, 1);
	ck_assert_uint_eq(status_of(&r), SENTINEL);
}
END_TEST

START_TEST(inflight_bounded_by_queue_size)
{
	struct req r[4];

	create();
	driver_init(BIT64(VIRTIO_RING_F_EVENT_IDX), 1, 4);
	disk->deferred = true;
	for (unsigned i = 0; i < 4; i++) {
		r[i] = make_read_indirect(0, i);
		post(0, r[i].head);
	}
	kick(0);
	ck_assert_uint_eq(disk->npending, 4);
	/* A hostile guest re-posts heads still in flight. */
	for (unsigned i = 0; i < 4; i++)
		post(0, r[i].head);
	kick(0);
	ck_assert_uint_eq(disk->npending, 4);
	/* Each completion lets one more in. */
	ck_assert_uint_eq(fake_complete_all(), 8);
	ck_assert_uint_eq(disk->max_pending, 4);
	ck_assert_uint_eq(disk->nlog, 8);
	ck_assert_uint_eq(used_idx(0), 8);
}
END_TEST

START_TEST(event_idx_suppresses_interrupts)
{
	struct vring_avail *avail;
	struct req r;

	create();
	driver_init(0, 1, QSIZE);
	avail = gptr(g.q[0].avail);
	avail->ring[QSIZE] = htole16(100); /* used_event: interrupt after entry 100 */
	r = make_req(0, VIRTIO_BLK_T_IN, 0, 512);
	ck_assert_uint_eq(run(0, &r), VIRTIO_BLK_S_OK);
	ck_assert_uint_eq(g.irqs, 1); /* the first one always goes out */
	r = make_req(0, VIRTIO_BLK_T_IN, 0, 512);
	ck_assert_uint_eq(run(0, &r), VIRTIO_BLK_S_OK);
	ck_assert_uint_eq(g.irqs, 1);
	avail->ring[QSIZE] = htole16(2);
	r = make_req(0, VIRTIO_BLK_T_IN, 0, 512);
	ck_assert_uint_eq(run(0, &r), VIRTIO_BLK_S_OK);
	ck_assert_uint_eq(g.irqs, 2);
	/* The device asks for a kick at the next entry once idle. */
	ck_assert_uint_eq(le16toh(*(uint16_t *)gptr(g.q[0].used + 4 + 8 * QSIZE)), 3);
}
END_TEST

START_TEST(multiqueue)
{
	struct req a, b;

	g.params.num_queues = 2;
	create();
	driver_init(BIT64(VIRTIO_RING_F_EVENT_IDX), 2, QSIZE);
	b = make_req(1, VIRTIO_BLK_T_OUT, 3, 512);
	fill(b.data, 512, 1);
	ck_assert_uint_eq(run(1, &b), VIRTIO_BLK_S_OK);
	ck_assert_uint_eq(used_idx(1), 1);
	ck_assert_uint_eq(used_idx(0), 0);
	a = make_req(0, VIRTIO_BLK_T_IN, 3, 512);
	ck_assert_uint_eq(run(0, &a), VIRTIO_BLK_S_OK);
	ck_assert_int_eq(memcmp(gptr(a.data), gptr(b.data), 512), 0);
	ck_assert_uint_eq(used_idx(0), 1);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("blk");
	TCase *tc = tcase_create("blk");
	SRunner *sr;
	int failed;

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, features_and_config);
	tcase_add_test(tc, features_follow_disk);
	tcase_add_test(tc, bad_create_params);
	tcase_add_test(tc, write_then_read);
	tcase_add_test(tc, batch_one_interrupt);
	tcase_add_test(tc, completion_batch_one_interrupt);
	tcase_add_test(tc, statistics);
	tcase_add_test(tc, polled_mode_leaves_kicks_off);
	tcase_add_test(tc, polled_mode_without_event_idx);
	tcase_add_test(tc, deferred_completion);
	tcase_add_test(tc, unmapped_before_published);
	tcase_add_test(tc, any_layout);
	tcase_add_test(tc, indirect_request);
	tcase_add_test(tc, beyond_capacity);
	tcase_add_test(tc, read_only_disk);
	tcase_add_test(tc, partial_sector);
	tcase_add_test(tc, short_header);
	tcase_add_test(tc, no_status_byte_breaks_device);
	tcase_add_test(tc, hostile_ring_breaks_device);
	tcase_add_test(tc, get_id);
	tcase_add_test(tc, short_serial_is_padded);
	tcase_add_test(tc, unsupported_types);
	tcase_add_test(tc, flush);
	tcase_add_test(tc, flush_unsupported);
	tcase_add_test(tc, discard_segments);
	tcase_add_test(tc, discard_deferred_one_at_a_time);
	tcase_add_test(tc, discard_error_stops_segments);
	tcase_add_test(tc, segment_flags);
	tcase_add_test(tc, write_zeroes_without_unmap_support);
	tcase_add_test(tc, segment_payload_checks);
	tcase_add_test(tc, plugin_errors);
	tcase_add_test(tc, destroy_with_request_in_flight);
	tcase_add_test(tc, destroy_idle);
	tcase_add_test(tc, reset_with_request_in_flight);
	tcase_add_test(tc, reset_cancels_in_plugin);
	tcase_add_test(tc, kick_ends_each_batch);
	tcase_add_test(tc, polled_mode_polls_completions);
	tcase_add_test(tc, kick_reaps_ready_completions);
	tcase_add_test(tc, queue_disable_waits_for_requests);
	tcase_add_test(tc, request_timeout_abandons);
	tcase_add_test(tc, disk_release_closes);
	tcase_add_test(tc, allocation_failures);
	tcase_add_test(tc, destroy_cancels_in_plugin);
	tcase_add_test(tc, inflight_bounded_by_queue_size);
	tcase_add_test(tc, event_idx_suppresses_interrupts);
	tcase_add_test(tc, multiqueue);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
