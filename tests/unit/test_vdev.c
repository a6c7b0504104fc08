/* SPDX-License-Identifier: MIT */
/* virtio-mmio register model: identity registers, feature negotiation and
 * FEATURES_OK refusal, queue configuration, bad accesses, reset,
 * NEEDS_RESET, and destroy with requests in flight, on a small test
 * device type. */
#include <check.h>
#include <errno.h>
#include <linux/virtio_config.h>
#include <linux/virtio_mmio.h>
#include <linux/virtio_ring.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gmem.h"
#include "hv.h"
#include "vdev.h"
#include "virtqueue.h"

#define MEM_SIZE 0x10000u
#define QMAX 8u
#define NQUEUES 2u
#define TEST_DEVICE_ID 42u
#define TEST_FEATURES ((1ull << 0) | (1ull << 5))
#define CONFIG_LEN 12u
#define CONFIG_RW_START 8u /* bytes 8..11 are writable */

struct test_state {
	uint8_t *mem;
	struct vp_gmem *gm;
	struct vp_vdev *d;
	uint8_t config[CONFIG_LEN];
	unsigned notifies[NQUEUES];
	unsigned resets;
	unsigned frees;
	unsigned irqs;
	uint32_t irq_bits;
	unsigned broken_calls;
	char broken_why[128];
	unsigned done_calls;
	unsigned frees_at_done;
};

static struct test_state t;

static void t_config_read(struct vp_vdev *d, uint32_t off, void *buf, unsigned len)
{
	ck_assert_ptr_eq(vp_vdev_priv(d), &t);
	ck_assert_uint_le(off + len, CONFIG_LEN);
	memcpy(buf, t.config + off, len);
}

static int t_config_write(struct vp_vdev *d, uint32_t off, const void *buf, unsigned len)
{
	(void)d;
	if (off < CONFIG_RW_START)
		return -EINVAL;
	memcpy(t.config + off, buf, len);
	return 0;
}

static void t_queue_notify(struct vp_vdev *d, unsigned q)
{
	ck_assert(vp_vdev_running(d));
	ck_assert(vp_vdev_vq(d, q)->ready);
	t.notifies[q]++;
}

static void t_reset(struct vp_vdev *d)
{
	(void)d;
	t.resets++;
}

static void t_free(struct vp_vdev *d)
{
	(void)d;
	t.frees++;
}

static const struct vp_vdev_type test_type = {
        .name = "test",
        .device_id = TEST_DEVICE_ID,
        .config_read = t_config_read,
        .config_write = t_config_write,
        .queue_notify = t_queue_notify,
        .reset = t_reset,
        .free = t_free,
};

static void host_raise_irq(void *opaque, uint32_t bits)
{
	ck_assert_ptr_eq(opaque, &t);
	t.irqs++;
	t.irq_bits |= bits;
}

static void host_broken(void *opaque, const char *why)
{
	ck_assert_ptr_eq(opaque, &t);
	t.broken_calls++;
	snprintf(t.broken_why, sizeof(t.broken_why), "%s", why);
}

static void on_done(void *arg)
{
	ck_assert_ptr_eq(arg, &t);
	t.done_calls++;
	t.frees_at_done = t.frees;
}

static struct vp_vdev *make_dev(struct vp_gmem *gm)
{
	struct vp_vdev_params p = {
	        .features = TEST_FEATURES,
	        .num_queues = NQUEUES,
	        .queue_max = QMAX,
	        .config_len = CONFIG_LEN,
	};
	struct vp_vdev_host host = {
	        .dom = 3,
	        .devid = 1,
	        .gm = gm,
	        .raise_irq = host_raise_irq,
	        .broken = host_broken,
	        .opaque = &t,
	};

	return vp_vdev_new(&test_type, &p, &host, &t);
}

static void setup(void)
{
	memset(&t, 0, sizeof(t));
	t.mem = calloc(1, MEM_SIZE);
	t.gm = vp_gmem_new_flat(t.mem, MEM_SIZE);
	for (unsigned i = 0; i < CONFIG_LEN; i++)
		t.config[i] = (uint8_t)(0x10 + i);
	t.d = make_dev(t.gm);
	ck_assert_ptr_nonnull(t.d);
}

static void teardown(void)
{
	if (t.d)
		vp_vdev_destroy(t.d, NULL, NULL);
	vp_gmem_free(t.gm);
	free(t.mem);
}

static uint64_t rd(uint32_t off)
{
	uint64_t v = 0xdeadbeef;

	ck_assert_int_eq(vp_vdev_mmio_read(t.d, off, 4, &v), VP_MMIO_OK);
	return v;
}

static void wr(uint32_t off, uint32_t v)
{
	ck_assert_int_eq(vp_vdev_mmio_write(t.d, off, 4, v), VP_MMIO_OK);
}

static void write_driver_features(uint64_t f)
{
	wr(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
	wr(VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)f);
	wr(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
	wr(VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)(f >> 32));
}

/* ACKNOWLEDGE, DRIVER, features, FEATURES_OK; returns the status read back. */
static uint32_t negotiate(uint64_t f)
{
	wr(VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE);
	wr(VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
	write_driver_features(f);
	wr(VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
	                               VIRTIO_CONFIG_S_FEATURES_OK);
	return (uint32_t)rd(VIRTIO_MMIO_STATUS);
}

static const uint64_t version_1 = 1ull << VIRTIO_F_VERSION_1;

/* Queue q of num entries with rings at base, base + 0x400, base + 0x800. */
static void setup_queue(unsigned q, unsigned num, uint64_t base)
{
	wr(VIRTIO_MMIO_QUEUE_SEL, q);
	wr(VIRTIO_MMIO_QUEUE_NUM, num);
	wr(VIRTIO_MMIO_QUEUE_DESC_LOW, (uint32_t)base);
	wr(VIRTIO_MMIO_QUEUE_DESC_HIGH, (uint32_t)(base >> 32));
	wr(VIRTIO_MMIO_QUEUE_AVAIL_LOW, (uint32_t)(base + 0x400));
	wr(VIRTIO_MMIO_QUEUE_AVAIL_HIGH, 0);
	wr(VIRTIO_MMIO_QUEUE_USED_LOW, (uint32_t)(base + 0x800));
	wr(VIRTIO_MMIO_QUEUE_USED_HIGH, 0);
	wr(VIRTIO_MMIO_QUEUE_READY, 1);
}

static void driver_ok(void)
{
	wr(VIRTIO_MMIO_STATUS,
	   (uint32_t)rd(VIRTIO_MMIO_STATUS) | VIRTIO_CONFIG_S_DRIVER_OK);
}

START_TEST(identity_registers)
{
	ck_assert_uint_eq(rd(VIRTIO_MMIO_MAGIC_VALUE), 0x74726976);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_VERSION), 2);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_DEVICE_ID), TEST_DEVICE_ID);
	ck_assert_uint_ne(rd(VIRTIO_MMIO_VENDOR_ID), 0);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_STATUS), 0);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_CONFIG_GENERATION), 0);
}
END_TEST

START_TEST(device_features)
{
	uint64_t lo, hi;

	wr(VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
	lo = rd(VIRTIO_MMIO_DEVICE_FEATURES);
	wr(VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
	hi = rd(VIRTIO_MMIO_DEVICE_FEATURES);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_DEVICE_FEATURES_SEL), 1);
	ck_assert_uint_eq(lo, TEST_FEATURES | (1u << VIRTIO_RING_F_INDIRECT_DESC) |
	                              (1u << VIRTIO_RING_F_EVENT_IDX));
	/* VERSION_1 only; ACCESS_PLATFORM is for grant mode. */
	ck_assert_uint_eq(hi, 1u << (VIRTIO_F_VERSION_1 - 32));
	wr(VIRTIO_MMIO_DEVICE_FEATURES_SEL, 2);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_DEVICE_FEATURES), 0);
	wr(VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0xffffffff);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_DEVICE_FEATURES), 0);
}
END_TEST

START_TEST(features_ok_accepted)
{
	uint64_t f = version_1 | (1ull << 5) | (1ull << VIRTIO_RING_F_EVENT_IDX);

	ck_assert_uint_eq(negotiate(f), VIRTIO_CONFIG_S_ACKNOWLEDGE |
	                                        VIRTIO_CONFIG_S_DRIVER |
	                                        VIRTIO_CONFIG_S_FEATURES_OK);
	ck_assert_uint_eq(vp_vdev_features(t.d), f);
	wr(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_DRIVER_FEATURES), (uint32_t)f);
	/* Too late to change the features. */
	wr(VIRTIO_MMIO_DRIVER_FEATURES, 1);
	ck_assert_uint_eq(vp_vdev_features(t.d), f);
	ck_assert_uint_eq(t.broken_calls, 0);
}
END_TEST

START_TEST(features_ok_refused_unoffered)
{
	uint32_t st = negotiate(version_1 | (1ull << 3));

	ck_assert_uint_eq(st & VIRTIO_CONFIG_S_FEATURES_OK, 0);
	ck_assert_uint_eq(st, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
	/* The driver may try again with a subset. */
	write_driver_features(version_1);
	wr(VIRTIO_MMIO_STATUS, st | VIRTIO_CONFIG_S_FEATURES_OK);
	ck_assert_uint_ne(rd(VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_FEATURES_OK, 0);
}
END_TEST

START_TEST(features_ok_refused_high_word)
{
	uint32_t st;

	wr(VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
	write_driver_features(version_1 | (1ull << 40));
	st = (uint32_t)rd(VIRTIO_MMIO_STATUS);
	wr(VIRTIO_MMIO_STATUS, st | VIRTIO_CONFIG_S_FEATURES_OK);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_FEATURES_OK, 0);
}
END_TEST

START_TEST(features_ok_refused_without_version_1)
{
	ck_assert_uint_eq(negotiate(1ull << 0) & VIRTIO_CONFIG_S_FEATURES_OK, 0);
}
END_TEST

static void *no_map_grants(struct vp_hv *hv, uint16_t dom, const uint32_t *refs,
                           unsigned n, int writable)
{
	(void)hv;
	(void)dom;
	(void)refs;
	(void)n;
	(void)writable;
	errno = EPERM;
	return NULL;
}

START_TEST(grant_mode_needs_access_platform)
{
	static const struct vp_hv_ops ops = {.name = "none", .map_grants = no_map_grants};
	struct vp_hv hv = {.ops = &ops};
	struct vp_gmem *gm = vp_gmem_new(&hv, 3, VP_ADDR_GRANT, 0);
	const uint64_t ap = 1ull << VIRTIO_F_ACCESS_PLATFORM;

	vp_vdev_destroy(t.d, NULL, NULL);
	t.d = make_dev(gm);
	ck_assert_ptr_nonnull(t.d);
	wr(VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_DEVICE_FEATURES),
	                  (uint32_t)((version_1 | ap) >> 32));
	ck_assert_uint_eq(negotiate(version_1) & VIRTIO_CONFIG_S_FEATURES_OK, 0);
	wr(VIRTIO_MMIO_STATUS, 0);
	ck_assert_uint_ne(negotiate(version_1 | ap) & VIRTIO_CONFIG_S_FEATURES_OK, 0);
	/* Ring addresses the grant layer refuses break the device. */
	setup_queue(0, 4, (1ull << 63) | 0x1000);
	ck_assert(vp_vdev_is_broken(t.d));
	vp_vdev_destroy(t.d, NULL, NULL);
	t.d = NULL;
	vp_gmem_free(gm);
}
END_TEST

START_TEST(bad_register_accesses)
{
	static const uint32_t bad_reads[] = {
	        0x0c0, /* unknown */
	        VIRTIO_MMIO_GUEST_PAGE_SIZE,
	        VIRTIO_MMIO_QUEUE_ALIGN,
	        VIRTIO_MMIO_QUEUE_PFN, /* legacy only */
	        VIRTIO_MMIO_QUEUE_NOTIFY,
	        VIRTIO_MMIO_INTERRUPT_ACK, /* write-only */
	        0x1000,
	        0xfffffffc,
	};
	static const uint32_t bad_writes[] = {
	        VIRTIO_MMIO_MAGIC_VALUE,
	        VIRTIO_MMIO_VERSION,
	        VIRTIO_MMIO_DEVICE_ID,
	        VIRTIO_MMIO_VENDOR_ID,
	        VIRTIO_MMIO_DEVICE_FEATURES,
	        VIRTIO_MMIO_QUEUE_NUM_MAX,
	        VIRTIO_MMIO_INTERRUPT_STATUS,
	        VIRTIO_MMIO_CONFIG_GENERATION,
	        VIRTIO_MMIO_SHM_LEN_LOW,
	        VIRTIO_MMIO_SHM_BASE_HIGH,
	        VIRTIO_MMIO_QUEUE_PFN,
	        0x0c0,
	        0x1000,
	};
	uint64_t v;

	for (unsigned i = 0; i < sizeof(bad_reads) / sizeof(bad_reads[0]); i++) {
		v = 0x1234;
		ck_assert_int_eq(vp_vdev_mmio_read(t.d, bad_reads[i], 4, &v),
		                 VP_MMIO_BAD_ACCESS);
		ck_assert_uint_eq(v, 0);
	}
	for (unsigned i = 0; i < sizeof(bad_writes) / sizeof(bad_writes[0]); i++)
		ck_assert_int_eq(vp_vdev_mmio_write(t.d, bad_writes[i], 4, 0),
		                 VP_MMIO_BAD_ACCESS);
	/* Registers are 32 bits wide and aligned. */
	for (unsigned size = 0; size <= 8; size++) {
		if (size == 4)
			continue;
		ck_assert_int_eq(
		        vp_vdev_mmio_read(t.d, VIRTIO_MMIO_MAGIC_VALUE, size, &v),
		        VP_MMIO_BAD_ACCESS);
		ck_assert_int_eq(vp_vdev_mmio_write(t.d, VIRTIO_MMIO_STATUS, size, 1),
		                 VP_MMIO_BAD_ACCESS);
	}
	ck_assert_int_eq(vp_vdev_mmio_read(t.d, VIRTIO_MMIO_MAGIC_VALUE + 2, 4, &v),
	                 VP_MMIO_BAD_ACCESS);
	ck_assert_int_eq(vp_vdev_mmio_write(t.d, VIRTIO_MMIO_STATUS + 1, 4, 1),
	                 VP_MMIO_BAD_ACCESS);
	/* None of that changed the device. */
	ck_assert_uint_eq(rd(VIRTIO_MMIO_STATUS), 0);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_MAGIC_VALUE), 0x74726976);
	ck_assert_uint_eq(t.broken_calls, 0);
}
END_TEST

START_TEST(config_space)
{
	uint64_t v;

	ck_assert_int_eq(vp_vdev_mmio_read(t.d, VIRTIO_MMIO_CONFIG + 1, 1, &v),
	                 VP_MMIO_OK);
	ck_assert_uint_eq(v, 0x11);
	ck_assert_int_eq(vp_vdev_mmio_read(t.d, VIRTIO_MMIO_CONFIG + 2, 2, &v),
	                 VP_MMIO_OK);
	ck_assert_uint_eq(v, 0x1312);
	ck_assert_int_eq(vp_vdev_mmio_read(t.d, VIRTIO_MMIO_CONFIG + 4, 4, &v),
	                 VP_MMIO_OK);
	ck_assert_uint_eq(v, 0x17161514);
	ck_assert_int_eq(vp_vdev_mmio_read(t.d, VIRTIO_MMIO_CONFIG, 8, &v), VP_MMIO_OK);
	ck_assert_uint_eq(v, 0x1716151413121110ull);
	/* Size, alignment and range are checked. */
	ck_assert_int_eq(vp_vdev_mmio_read(t.d, VIRTIO_MMIO_CONFIG, 3, &v),
	                 VP_MMIO_BAD_ACCESS);
	ck_assert_int_eq(vp_vdev_mmio_read(t.d, VIRTIO_MMIO_CONFIG + 1, 2, &v),
	                 VP_MMIO_BAD_ACCESS);
	ck_assert_int_eq(vp_vdev_mmio_read(t.d, VIRTIO_MMIO_CONFIG + 4, 8, &v),
	                 VP_MMIO_BAD_ACCESS);
	ck_assert_int_eq(vp_vdev_mmio_read(t.d, VIRTIO_MMIO_CONFIG + 8, 8, &v),
	                 VP_MMIO_BAD_ACCESS);
	ck_assert_int_eq(vp_vdev_mmio_read(t.d, VIRTIO_MMIO_CONFIG + CONFIG_LEN, 1, &v),
	                 VP_MMIO_BAD_ACCESS);
	ck_assert_int_eq(vp_vdev_mmio_read(t.d, 0xfff, 1, &v), VP_MMIO_BAD_ACCESS);
	/* Writes reach the type, which refuses read-only fields. */
	ck_assert_int_eq(vp_vdev_mmio_write(t.d, VIRTIO_MMIO_CONFIG, 4, 0),
	                 VP_MMIO_BAD_ACCESS);
	ck_assert_uint_eq(t.config[0], 0x10);
	ck_assert_int_eq(vp_vdev_mmio_write(t.d, VIRTIO_MMIO_CONFIG + 8, 4, 0xa1b2c3d4),
	                 VP_MMIO_OK);
	ck_assert_int_eq(vp_vdev_mmio_read(t.d, VIRTIO_MMIO_CONFIG + 10, 2, &v),
	                 VP_MMIO_OK);
	ck_assert_uint_eq(v, 0xa1b2);
	ck_assert_int_eq(vp_vdev_mmio_write(t.d, VIRTIO_MMIO_CONFIG + 11, 1, 0x5a),
	                 VP_MMIO_OK);
	ck_assert_uint_eq(t.config[11], 0x5a);
}
END_TEST

START_TEST(queue_registers)
{
	struct vp_vq *vq = vp_vdev_vq(t.d, 0);

	ck_assert_uint_eq(vp_vdev_num_queues(t.d), NQUEUES);
	wr(VIRTIO_MMIO_QUEUE_SEL, 0);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_QUEUE_NUM_MAX), QMAX);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_QUEUE_NUM), QMAX);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_QUEUE_READY), 0);
	wr(VIRTIO_MMIO_QUEUE_SEL, NQUEUES);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_QUEUE_SEL), NQUEUES);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_QUEUE_NUM_MAX), 0);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_QUEUE_READY), 0);
	wr(VIRTIO_MMIO_QUEUE_NUM, 4); /* missing queue: ignored */
	wr(VIRTIO_MMIO_QUEUE_READY, 1);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_QUEUE_READY), 0);

	ck_assert_uint_ne(negotiate(version_1 | (1ull << VIRTIO_RING_F_EVENT_IDX)) &
	                          VIRTIO_CONFIG_S_FEATURES_OK,
	                  0);
	setup_queue(0, 4, 0x2000);
	ck_assert(vq->ready);
	ck_assert(vq->event_idx);
	ck_assert(!vq->indirect);
	ck_assert_uint_eq(vq->num, 4);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_QUEUE_READY), 1);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_QUEUE_DESC_LOW), 0x2000);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_QUEUE_AVAIL_LOW), 0x2400);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_QUEUE_USED_LOW), 0x2800);
	/* Only writable while the queue is not ready. */
	wr(VIRTIO_MMIO_QUEUE_DESC_LOW, 0x3000);
	wr(VIRTIO_MMIO_QUEUE_DESC_HIGH, 1);
	wr(VIRTIO_MMIO_QUEUE_NUM, 8);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_QUEUE_DESC_LOW), 0x2000);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_QUEUE_DESC_HIGH), 0);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_QUEUE_NUM), 4);
	/* The other queue is independent. */
	wr(VIRTIO_MMIO_QUEUE_SEL, 1);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_QUEUE_READY), 0);
	wr(VIRTIO_MMIO_QUEUE_SEL, 0);
	wr(VIRTIO_MMIO_QUEUE_READY, 0);
	ck_assert(!vq->ready);
	wr(VIRTIO_MMIO_QUEUE_DESC_HIGH, 0);
	wr(VIRTIO_MMIO_QUEUE_DESC_LOW, 0x3000);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_QUEUE_DESC_LOW), 0x3000);
	wr(VIRTIO_MMIO_QUEUE_READY, 1);
	ck_assert(vq->ready);
	ck_assert_uint_eq(t.broken_calls, 0);
}
END_TEST

START_TEST(queue_ready_bad_size)
{
	negotiate(version_1);
	setup_queue(0, 3, 0x2000);
	ck_assert(vp_vdev_is_broken(t.d));
	ck_assert(!vp_vdev_vq(t.d, 0)->ready);
	ck_assert_uint_eq(t.broken_calls, 1);
	ck_assert_ptr_nonnull(strstr(t.broken_why, "queue 0"));
}
END_TEST

START_TEST(queue_ready_above_max)
{
	negotiate(version_1);
	setup_queue(1, 2 * QMAX, 0x2000);
	ck_assert(vp_vdev_is_broken(t.d));
	ck_assert(!vp_vdev_vq(t.d, 1)->ready);
}
END_TEST

START_TEST(queue_ready_unmappable)
{
	negotiate(version_1);
	setup_queue(0, 8, MEM_SIZE - 0x100);
	ck_assert(vp_vdev_is_broken(t.d));
	ck_assert(!vp_vdev_vq(t.d, 0)->ready);
}
END_TEST

START_TEST(queue_ready_before_features_ok)
{
	wr(VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
	setup_queue(0, 8, 0x2000);
	ck_assert(vp_vdev_is_broken(t.d));
	ck_assert(!vp_vdev_vq(t.d, 0)->ready);
}
END_TEST

START_TEST(notify_dispatch)
{
	negotiate(version_1);
	setup_queue(0, 8, 0x2000);
	/* Not before DRIVER_OK. */
	wr(VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	ck_assert_uint_eq(t.notifies[0], 0);
	driver_ok();
	/* DRIVER_OK looks at the ready queues once. */
	ck_assert_uint_eq(t.notifies[0], 1);
	ck_assert_uint_eq(t.notifies[1], 0);
	wr(VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	ck_assert_uint_eq(t.notifies[0], 2);
	/* Queue 1 is not ready, queue 7 does not exist. */
	wr(VIRTIO_MMIO_QUEUE_NOTIFY, 1);
	wr(VIRTIO_MMIO_QUEUE_NOTIFY, 7);
	ck_assert_uint_eq(t.notifies[1], 0);
	setup_queue(1, 2, 0x4000);
	wr(VIRTIO_MMIO_QUEUE_NOTIFY, 1);
	ck_assert_uint_eq(t.notifies[1], 1);
	vp_vdev_poll(t.d);
	ck_assert_uint_eq(t.notifies[0], 3);
	ck_assert_uint_eq(t.notifies[1], 2);
	/* FAILED stops everything. */
	wr(VIRTIO_MMIO_STATUS, (uint32_t)rd(VIRTIO_MMIO_STATUS) | VIRTIO_CONFIG_S_FAILED);
	ck_assert(!vp_vdev_running(t.d));
	wr(VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	vp_vdev_poll(t.d);
	ck_assert_uint_eq(t.notifies[0], 3);
}
END_TEST

/* A batch (the transport's messages of one wake-up) merges its
 * QueueNotify writes: each queue served once, at the batch's end or before
 * any other access, so nothing else sees them late. */
START_TEST(notify_batch_merges)
{
	uint32_t status;

	negotiate(version_1);
	setup_queue(0, 8, 0x2000);
	setup_queue(1, 2, 0x4000);
	driver_ok();
	t.notifies[0] = t.notifies[1] = 0;
	vp_vdev_batch_begin(t.d);
	wr(VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	wr(VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	wr(VIRTIO_MMIO_QUEUE_NOTIFY, 1);
	wr(VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	ck_assert_uint_eq(t.notifies[0], 0);
	ck_assert_uint_eq(t.notifies[1], 0);
	/* Counted as the driver's kicks all the same. */
	ck_assert_uint_eq(vp_vdev_queue_kicks(t.d, 0), 3);
	vp_vdev_batch_end(t.d);
	ck_assert_uint_eq(t.notifies[0], 1);
	ck_assert_uint_eq(t.notifies[1], 1);
	vp_vdev_batch_end(t.d); /* nothing left */
	ck_assert_uint_eq(t.notifies[0], 1);

	/* Another access serves what came before it: a read... */
	vp_vdev_batch_begin(t.d);
	wr(VIRTIO_MMIO_QUEUE_NOTIFY, 1);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_DRIVER_OK,
	                  VIRTIO_CONFIG_S_DRIVER_OK);
	ck_assert_uint_eq(t.notifies[1], 2);
	/* ... or a write: the queue is served before the device stops. */
	status = (uint32_t)rd(VIRTIO_MMIO_STATUS);
	wr(VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	ck_assert_uint_eq(t.notifies[0], 1);
	wr(VIRTIO_MMIO_STATUS, status | VIRTIO_CONFIG_S_FAILED);
	ck_assert_uint_eq(t.notifies[0], 2);
	wr(VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	vp_vdev_batch_end(t.d);
	ck_assert_uint_eq(t.notifies[0], 2);
	/* Outside a batch a notification is served at once, as before. */
	ck_assert(!vp_vdev_running(t.d));
}
END_TEST

START_TEST(interrupt_status)
{
	vp_vdev_raise_irq(t.d, VP_IRQ_VRING);
	ck_assert_uint_eq(t.irqs, 1);
	ck_assert_uint_eq(t.irq_bits, VP_IRQ_VRING);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_INTERRUPT_STATUS), VP_IRQ_VRING);
	vp_vdev_raise_irq(t.d, VP_IRQ_CONFIG);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_INTERRUPT_STATUS), VP_IRQ_VRING | VP_IRQ_CONFIG);
	wr(VIRTIO_MMIO_INTERRUPT_ACK, VP_IRQ_VRING);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_INTERRUPT_STATUS), VP_IRQ_CONFIG);
	wr(VIRTIO_MMIO_INTERRUPT_ACK, 0xffffffff);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_INTERRUPT_STATUS), 0);
}
END_TEST

START_TEST(reset_clears_everything)
{
	negotiate(version_1 | (1ull << 5));
	setup_queue(0, 4, 0x2000);
	driver_ok();
	vp_vdev_raise_irq(t.d, VP_IRQ_VRING);
	wr(VIRTIO_MMIO_STATUS, 0);
	ck_assert_uint_eq(t.resets, 1);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_STATUS), 0);
	ck_assert_uint_eq(vp_vdev_features(t.d), 0);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_INTERRUPT_STATUS), 0);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_QUEUE_SEL), 0);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_QUEUE_READY), 0);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_QUEUE_NUM), QMAX);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_QUEUE_DESC_LOW), 0);
	ck_assert(!vp_vdev_vq(t.d, 0)->ready);
	ck_assert(!vp_vdev_running(t.d));
	/* The device can be brought up again. */
	ck_assert_uint_ne(negotiate(version_1) & VIRTIO_CONFIG_S_FEATURES_OK, 0);
	setup_queue(0, 8, 0x2000);
	driver_ok();
	ck_assert(vp_vdev_running(t.d));
}
END_TEST

START_TEST(needs_reset)
{
	uint32_t st;

	negotiate(version_1);
	setup_queue(0, 4, 0x2000);
	driver_ok();
	t.notifies[0] = 0;
	vp_vdev_set_broken(t.d, "test breakage");
	ck_assert(vp_vdev_is_broken(t.d));
	st = (uint32_t)rd(VIRTIO_MMIO_STATUS);
	ck_assert_uint_ne(st & VIRTIO_CONFIG_S_NEEDS_RESET, 0);
	ck_assert_uint_ne(st & VIRTIO_CONFIG_S_DRIVER_OK, 0);
	ck_assert_uint_eq(t.broken_calls, 1);
	ck_assert_str_eq(t.broken_why, "test breakage");
	ck_assert_uint_eq(t.irq_bits, VP_IRQ_CONFIG);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_INTERRUPT_STATUS), VP_IRQ_CONFIG);
	/* Idempotent. */
	vp_vdev_set_broken(t.d, "again");
	ck_assert_uint_eq(t.broken_calls, 1);
	ck_assert_uint_eq(t.irqs, 1);
	/* Queues are not processed while broken. */
	wr(VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	vp_vdev_poll(t.d);
	ck_assert_uint_eq(t.notifies[0], 0);
	/* The driver cannot clear NEEDS_RESET but by resetting. */
	wr(VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE);
	ck_assert_uint_ne(rd(VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET, 0);
	wr(VIRTIO_MMIO_STATUS, 0);
	ck_assert(!vp_vdev_is_broken(t.d));
	ck_assert_uint_eq(rd(VIRTIO_MMIO_STATUS), 0);
	negotiate(version_1);
	setup_queue(0, 4, 0x2000);
	driver_ok();
	ck_assert_uint_eq(t.notifies[0], 1);
	/* A later breakage reports again. */
	vp_vdev_set_broken(t.d, "second");
	ck_assert_uint_eq(t.broken_calls, 2);
}
END_TEST

START_TEST(shared_memory_absent)
{
	wr(VIRTIO_MMIO_SHM_SEL, 0);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_SHM_LEN_LOW), 0xffffffff);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_SHM_LEN_HIGH), 0xffffffff);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_SHM_BASE_LOW), 0xffffffff);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_SHM_BASE_HIGH), 0xffffffff);
	wr(VIRTIO_MMIO_SHM_SEL, 3);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_SHM_SEL), 3);
}
END_TEST

START_TEST(destroy_idle)
{
	vp_vdev_destroy(t.d, on_done, &t);
	t.d = NULL;
	ck_assert_uint_eq(t.done_calls, 1);
	ck_assert_uint_eq(t.frees_at_done, 1);
}
END_TEST

START_TEST(destroy_waits_for_requests)
{
	struct vp_vdev *d = t.d;
	uint64_t v;

	negotiate(version_1);
	setup_queue(0, 4, 0x2000);
	driver_ok();
	vp_vdev_req_begin(d);
	vp_vdev_req_begin(d);
	vp_vdev_destroy(d, on_done, &t);
	t.d = NULL;
	ck_assert_uint_eq(t.done_calls, 0);
	ck_assert_uint_eq(t.frees, 0);
	/* The rings are gone at once; the device refuses the guest. */
	ck_assert(!vp_vdev_vq(d, 0)->ready);
	ck_assert(!vp_vdev_running(d));
	ck_assert_int_eq(vp_vdev_mmio_read(d, VIRTIO_MMIO_MAGIC_VALUE, 4, &v),
	                 VP_MMIO_BAD_ACCESS);
	ck_assert_int_eq(vp_vdev_mmio_write(d, VIRTIO_MMIO_QUEUE_NOTIFY, 4, 0),
	                 VP_MMIO_BAD_ACCESS);
	vp_vdev_raise_irq(d, VP_IRQ_VRING);
	ck_assert_uint_eq(t.irqs, 0);
	vp_vdev_req_end(d);
	ck_assert_uint_eq(t.done_calls, 0);
	vp_vdev_req_end(d);
	ck_assert_uint_eq(t.done_calls, 1);
	ck_assert_uint_eq(t.frees_at_done, 1);
}
END_TEST

START_TEST(bad_params)
{
	struct vp_vdev_params p = {.num_queues = 1, .queue_max = 8, .config_len = 4};
	struct vp_vdev_host host = {.gm = t.gm};
	struct vp_vdev *d = vp_vdev_new(&test_type, &p, &host, NULL);

	ck_assert_ptr_nonnull(d);
	vp_vdev_destroy(d, NULL, NULL);
	p.queue_max = 12;
	ck_assert_ptr_null(vp_vdev_new(&test_type, &p, &host, NULL));
	p.queue_max = 2048;
	ck_assert_ptr_null(vp_vdev_new(&test_type, &p, &host, NULL));
	p.queue_max = 8;
	p.num_queues = 0;
	ck_assert_ptr_null(vp_vdev_new(&test_type, &p, &host, NULL));
	p.num_queues = 1;
	p.config_len = 0x1000;
	ck_assert_ptr_null(vp_vdev_new(&test_type, &p, &host, NULL));
	p.config_len = 4;
	host.gm = NULL;
	ck_assert_ptr_null(vp_vdev_new(&test_type, &p, &host, NULL));
}
END_TEST

int main(void)
{
	Suite *s = suite_create("mmio");
	TCase *tc = tcase_create("mmio");
	SRunner *sr;
	int failed;

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, identity_registers);
	tcase_add_test(tc, device_features);
	tcase_add_test(tc, features_ok_accepted);
	tcase_add_test(tc, features_ok_refused_unoffered);
	tcase_add_test(tc, features_ok_refused_high_word);
	tcase_add_test(tc, features_ok_refused_without_version_1);
	tcase_add_test(tc, grant_mode_needs_access_platform);
	tcase_add_test(tc, bad_register_accesses);
	tcase_add_test(tc, config_space);
	tcase_add_test(tc, queue_registers);
	tcase_add_test(tc, queue_ready_bad_size);
	tcase_add_test(tc, queue_ready_above_max);
	tcase_add_test(tc, queue_ready_unmappable);
	tcase_add_test(tc, queue_ready_before_features_ok);
	tcase_add_test(tc, notify_dispatch);
	tcase_add_test(tc, notify_batch_merges);
	tcase_add_test(tc, interrupt_status);
	tcase_add_test(tc, reset_clears_everything);
	tcase_add_test(tc, needs_reset);
	tcase_add_test(tc, shared_memory_absent);
	tcase_add_test(tc, destroy_idle);
	tcase_add_test(tc, destroy_waits_for_requests);
	tcase_add_test(tc, bad_params);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
