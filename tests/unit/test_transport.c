/* SPDX-License-Identifier: MIT */
/* The vproxy v1 transport (core/transport.c): the shared page's header
 * checks, register accesses over the ring, posted writes in order, the
 * interrupt word, a malformed ring, and random ring contents, against a
 * fake hypervisor and a real virtio-blk device on the mem plugin. */
#include <check.h>
#include <event2/event.h>
#include <linux/virtio_config.h>
#include <linux/virtio_mmio.h>
#include <stdlib.h>
#include <string.h>
#include <vproxy/proto.h>

#include "blk.h"
#include "hv.h"
#include "loop.h"
#include "plugin_host.h"
#include "transport.h"
#include "vdev.h"

#define RING_GFN 5u
#define RING_GREF 9u
#define LOCAL_PORT 7

/* ---- a fake hypervisor: one guest page, counted calls ---- */

struct fake_hv {
	struct vp_hv base;
	int maps, unmaps, binds, unbinds, notifies;
	bool fail_bind;
};

static uint8_t guest_page[VPROXY_PAGE_SIZE] __attribute__((aligned(4096)));
static struct fake_hv fhv;

static int f_fd(struct vp_hv *hv)
{
	(void)hv;
	return -1;
}

static int f_bind(struct vp_hv *hv, uint16_t dom, uint32_t remote)
{
	(void)hv;
	(void)dom;
	(void)remote;
	if (fhv.fail_bind)
		return -EINVAL;
	fhv.binds++;
	return LOCAL_PORT;
}

static int f_notify(struct vp_hv *hv, int port)
{
	(void)hv;
	ck_assert_int_eq(port, LOCAL_PORT);
	fhv.notifies++;
	return 0;
}

static int f_pending(struct vp_hv *hv)
{
	(void)hv;
	return -1;
}

static int f_unmask(struct vp_hv *hv, int port)
{
	(void)hv;
	(void)port;
	return 0;
}

static int f_unbind(struct vp_hv *hv, int port)
{
	(void)hv;
	ck_assert_int_eq(port, LOCAL_PORT);
	fhv.unbinds++;
	return 0;
}

static void *f_map_gfns(struct vp_hv *hv, uint16_t dom, const uint64_t *gfns, unsigned n,
                        int writable)
{
	(void)hv;
	(void)dom;
	(void)writable;
	if (n != 1 || gfns[0] != RING_GFN) {
		errno = EINVAL;
		return NULL;
	}
	fhv.maps++;
	return guest_page;
}

static int f_unmap(struct vp_hv *hv, void *addr, unsigned n)
{
	(void)hv;
	ck_assert_ptr_eq(addr, guest_page);
	ck_assert_uint_eq(n, 1);
	fhv.unmaps++;
	return 0;
}

static void *f_map_grants(struct vp_hv *hv, uint16_t dom, const uint32_t *refs,
                          unsigned n, int writable)
{
	(void)hv;
	(void)dom;
	(void)writable;
	if (n != 1 || refs[0] != RING_GREF) {
		errno = EPERM;
		return NULL;
	}
	fhv.maps++;
	return guest_page;
}

static void f_forget(struct vp_hv *hv, uint16_t dom)
{
	(void)hv;
	(void)dom;
}

static void f_close(struct vp_hv *hv)
{
	(void)hv;
}

static const struct vp_hv_ops fake_ops = {
        .name = "fake",
        .evtchn_fd = f_fd,
        .evtchn_bind = f_bind,
        .evtchn_notify = f_notify,
        .evtchn_pending = f_pending,
        .evtchn_unmask = f_unmask,
        .evtchn_unbind = f_unbind,
        .map_gfns = f_map_gfns,
        .unmap_gfns = f_unmap,
        .map_grants = f_map_grants,
        .unmap_grants = f_unmap,
        .forget_domain = f_forget,
        .close = f_close,
};

/* ---- fixture: transport + blk on a mem disk, the test is the frontend ---- */

static struct vp_loop *loop; /* poll-us 0: the test kicks */
static struct event_base *base;
static const struct vproxy_plugin *mem;
static void *disk;
static struct vproxy_disk_info info;
static struct vp_transport *t;
static struct vp_vdev *vdev;
static struct vproxy_front_ring front;
static int broken_calls;
static char broken_why[128];
static uint16_t next_id;

static void on_broken(void *opaque, const char *why)
{
	ck_assert_ptr_eq(opaque, &fhv);
	broken_calls++;
	snprintf(broken_why, sizeof(broken_why), "%s", why);
}

static void init_page(void)
{
	struct vproxy_page_hdr *hdr = (void *)guest_page;

	memset(guest_page, 0, sizeof(guest_page));
	hdr->magic = VPROXY_PAGE_MAGIC;
	hdr->version = VPROXY_PROTO_VERSION;
	SHARED_RING_INIT(vproxy_page_sring(guest_page));
	FRONT_RING_INIT(&front, vproxy_page_sring(guest_page), VPROXY_RING_BYTES);
}

static struct vp_transport *open_transport(enum vp_addr_mode mode, uint64_t ref,
                                           char *err, size_t errlen)
{
	struct vp_transport_params p = {
	        .dom = 3,
	        .devid = 1,
	        .mode = mode,
	        .ring_ref = ref,
	        .remote_port = 11,
	        .gmem_cache_bytes = 1 << 20,
	        .broken = on_broken,
	        .opaque = &fhv,
	};

	return vp_transport_open(loop, &fhv.base, &p, err, errlen);
}

static void attach_device(void)
{
	struct vp_blk_params bp = {.num_queues = 1, .queue_size_max = 64};
	struct vp_vdev_host host = {
	        .dom = 3,
	        .devid = 1,
	        .gm = vp_transport_gmem(t),
	        .raise_irq = vp_transport_raise_irq,
	        .opaque = t,
	};

	vdev = vp_blk_create(&bp, mem, disk, &info, &host);
	ck_assert_ptr_nonnull(vdev);
	vp_transport_attach(t, vdev);
	event_base_loop(base, EVLOOP_NONBLOCK);
}

static void setup(void)
{
	struct vproxy_params *params;
	char err[256];

	memset(&fhv, 0, sizeof(fhv));
	fhv.base.ops = &fake_ops;
	loop = vp_loop_new(0, false);
	ck_assert_ptr_nonnull(loop);
	base = vp_loop_base(loop);
	vp_plugin_set_event_base(base);
	mem = vp_plugin_load(VP_TEST_PLUGIN_DIR, "mem", err, sizeof(err));
	ck_assert_msg(mem != NULL, "%s", err);
	params = vp_params_new();
	ck_assert_int_eq(vp_params_set(params, "size", "1M", 1), 0);
	ck_assert_int_eq(vp_plugin_open(mem, 1, 0, "test", params, 0, &info, &disk, err,
	                                sizeof(err)),
	                 0);
	vp_params_free(params);
	init_page();
	broken_calls = 0;
	broken_why[0] = '\0';
	next_id = 0;
	t = NULL;
	vdev = NULL;
}

static void destroy_done(void *arg)
{
	*(bool *)arg = true;
}

static void teardown(void)
{
	if (t) {
		vp_transport_detach(t);
		if (vdev) {
			bool done = false;

			vp_vdev_destroy(vdev, destroy_done, &done);
			ck_assert(done);
		}
		vp_transport_close(t);
		ck_assert_int_eq(fhv.maps, fhv.unmaps);
		ck_assert_int_eq(fhv.binds, fhv.unbinds);
	}
	vp_plugin_close(mem, disk);
	vp_plugin_unload_all();
	vp_loop_free(loop);
}

/* Queue one request (the frontend's side) without kicking. */
static uint16_t queue_req(uint8_t op, uint8_t size, uint32_t offset, uint64_t value)
{
	struct vproxy_mmio_req *req = RING_GET_REQUEST(&front, front.req_prod_pvt);

	req->op = op;
	req->size = size;
	req->id = next_id;
	req->offset = offset;
	req->value = value;
	front.req_prod_pvt++;
	return next_id++;
}

/* Publish the queued requests and let the backend serve them. */
static void kick(void)
{
	int notify;

	RING_PUSH_REQUESTS_AND_CHECK_NOTIFY(&front, notify);
	(void)notify;
	vp_transport_kick(t);
	event_base_loop(base, EVLOOP_NONBLOCK);
}

/* Take the next response; it must exist. */
static struct vproxy_mmio_rsp take_rsp(void)
{
	struct vproxy_mmio_rsp rsp;

	ck_assert_msg(RING_HAS_UNCONSUMED_RESPONSES(&front), "no response");
	rsp = *RING_GET_RESPONSE(&front, front.rsp_cons);
	front.rsp_cons++;
	return rsp;
}

static uint64_t reg_read(uint32_t offset, unsigned size)
{
	uint16_t id = queue_req(VPROXY_OP_READ, (uint8_t)size, offset, 0);
	struct vproxy_mmio_rsp rsp;

	kick();
	rsp = take_rsp();
	ck_assert_uint_eq(rsp.id, id);
	ck_assert_uint_eq(rsp.status, VPROXY_ST_OK);
	return rsp.value;
}

START_TEST(open_checks_header_and_resources)
{
	struct vproxy_page_hdr *hdr = (void *)guest_page;
	char err[256];

	hdr->magic = 0x12345678;
	ck_assert_ptr_null(open_transport(VP_ADDR_GFN, RING_GFN, err, sizeof(err)));
	ck_assert_ptr_nonnull(strstr(err, "magic 0x12345678"));
	hdr->magic = VPROXY_PAGE_MAGIC;
	hdr->version = 2;
	ck_assert_ptr_null(open_transport(VP_ADDR_GFN, RING_GFN, err, sizeof(err)));
	ck_assert_ptr_nonnull(strstr(err, "version 2"));
	hdr->version = VPROXY_PROTO_VERSION;
	ck_assert_ptr_null(open_transport(VP_ADDR_GFN, RING_GFN + 1, err, sizeof(err)));
	ck_assert_ptr_nonnull(strstr(err, "cannot map shared page 6 (gfn mode)"));
	ck_assert_ptr_null(open_transport(VP_ADDR_GRANT, 1ull << 40, err, sizeof(err)));
	ck_assert_ptr_nonnull(strstr(err, "not a grant ref"));
	fhv.fail_bind = true;
	ck_assert_ptr_null(open_transport(VP_ADDR_GRANT, RING_GREF, err, sizeof(err)));
	ck_assert_ptr_nonnull(strstr(err, "cannot bind event channel 11"));
	/* Every failed open gave back what it took. */
	ck_assert_int_eq(fhv.maps, fhv.unmaps);
	ck_assert_int_eq(fhv.binds, fhv.unbinds);
	fhv.fail_bind = false;
	t = open_transport(VP_ADDR_GRANT, RING_GREF, err, sizeof(err));
	ck_assert_msg(t != NULL, "%s", err);
	ck_assert_int_eq(vp_transport_port(t), LOCAL_PORT);
}
END_TEST

START_TEST(register_reads_in_order)
{
	char err[256];
	uint16_t a, b, c;
	struct vproxy_mmio_rsp r;

	t = open_transport(VP_ADDR_GFN, RING_GFN, err, sizeof(err));
	ck_assert_msg(t != NULL, "%s", err);
	attach_device();
	a = queue_req(VPROXY_OP_READ, 4, VIRTIO_MMIO_MAGIC_VALUE, 0);
	b = queue_req(VPROXY_OP_READ, 4, VIRTIO_MMIO_VERSION, 0);
	c = queue_req(VPROXY_OP_READ, 4, VIRTIO_MMIO_DEVICE_ID, 0);
	kick();
	r = take_rsp();
	ck_assert_uint_eq(r.id, a);
	ck_assert_uint_eq(r.value, 0x74726976);
	r = take_rsp();
	ck_assert_uint_eq(r.id, b);
	ck_assert_uint_eq(r.value, 2);
	r = take_rsp();
	ck_assert_uint_eq(r.id, c);
	ck_assert_uint_eq(r.value, 2);
	ck_assert(!RING_HAS_UNCONSUMED_RESPONSES(&front));
	/* Config space: capacity in sectors of the 1 MiB disk. */
	ck_assert_uint_eq(reg_read(0x100, 8), 2048);
}
END_TEST

START_TEST(posted_writes_take_effect_in_order)
{
	char err[256];
	struct vproxy_mmio_rsp r;
	uint16_t w, rd;

	t = open_transport(VP_ADDR_GFN, RING_GFN, err, sizeof(err));
	ck_assert_msg(t != NULL, "%s", err);
	attach_device();
	/* Select the high feature word, then read it in the same batch: the
	 * read must see the write queued before it. */
	w = queue_req(VPROXY_OP_WRITE, 4, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
	rd = queue_req(VPROXY_OP_READ, 4, VIRTIO_MMIO_DEVICE_FEATURES, 0);
	kick();
	r = take_rsp();
	ck_assert_uint_eq(r.id, w);
	ck_assert_uint_eq(r.status, VPROXY_ST_OK);
	ck_assert_uint_eq(r.value, 0);
	r = take_rsp();
	ck_assert_uint_eq(r.id, rd);
	ck_assert_uint_ne(r.value & (1u << (VIRTIO_F_VERSION_1 - 32)), 0);
	/* And a status write is visible to the next read. */
	queue_req(VPROXY_OP_WRITE, 4, VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE);
	kick();
	take_rsp();
	ck_assert_uint_eq(reg_read(VIRTIO_MMIO_STATUS, 4), VIRTIO_CONFIG_S_ACKNOWLEDGE);
}
END_TEST

START_TEST(bad_requests_answered_not_fatal)
{
	static const struct {
		uint8_t op, size;
		uint32_t offset;
		uint8_t status;
	} bad[] = {
	        {9, 4, 0, VPROXY_ST_BAD_OP},
	        {0, 4, 0, VPROXY_ST_BAD_OP},
	        {VPROXY_OP_READ, 3, 0, VPROXY_ST_BAD_ACCESS},
	        {VPROXY_OP_READ, 0, 0, VPROXY_ST_BAD_ACCESS},
	        {VPROXY_OP_READ, 4, 0x1000, VPROXY_ST_BAD_ACCESS},
	        {VPROXY_OP_READ, 4, 0x102, VPROXY_ST_BAD_ACCESS},
	        {VPROXY_OP_READ, 2, VIRTIO_MMIO_STATUS, VPROXY_ST_BAD_ACCESS},
	        {VPROXY_OP_READ, 4, 0x0f8, VPROXY_ST_BAD_ACCESS},
	        {VPROXY_OP_READ, 4, VIRTIO_MMIO_INTERRUPT_ACK, VPROXY_ST_BAD_ACCESS},
	};
	char err[256];

	t = open_transport(VP_ADDR_GFN, RING_GFN, err, sizeof(err));
	ck_assert_msg(t != NULL, "%s", err);
	attach_device();
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		uint16_t id = queue_req(bad[i].op, bad[i].size, bad[i].offset, 0);
		struct vproxy_mmio_rsp r;

		kick();
		r = take_rsp();
		ck_assert_uint_eq(r.id, id);
		ck_assert_msg(r.status == bad[i].status, "case %u: status %u", i,
		              r.status);
		ck_assert_uint_eq(r.value, 0);
	}
	/* Still serving, not broken, no NEEDS_RESET. */
	ck_assert(!vp_transport_is_broken(t));
	ck_assert_int_eq(broken_calls, 0);
	ck_assert_uint_eq(reg_read(VIRTIO_MMIO_MAGIC_VALUE, 4), 0x74726976);
	ck_assert_uint_eq(reg_read(VIRTIO_MMIO_STATUS, 4) & VIRTIO_CONFIG_S_NEEDS_RESET,
	                  0);
}
END_TEST

START_TEST(interrupt_word)
{
	struct vproxy_page_hdr *hdr = (void *)guest_page;
	char err[256];
	int before;

	t = open_transport(VP_ADDR_GFN, RING_GFN, err, sizeof(err));
	ck_assert_msg(t != NULL, "%s", err);
	attach_device();
	before = fhv.notifies;
	vp_transport_raise_irq(t, VP_IRQ_VRING);
	ck_assert_uint_eq(hdr->irq_status, VP_IRQ_VRING);
	ck_assert_int_eq(fhv.notifies, before + 1);
	vp_transport_raise_irq(t, VP_IRQ_CONFIG);
	/* A forwarded InterruptStatus read agrees with the word... */
	ck_assert_uint_eq(reg_read(VIRTIO_MMIO_INTERRUPT_STATUS, 4), 3);
	/* ...and a forwarded ACK clears only the written bits. */
	queue_req(VPROXY_OP_WRITE, 4, VIRTIO_MMIO_INTERRUPT_ACK, VP_IRQ_VRING);
	kick();
	ck_assert_uint_eq(take_rsp().status, VPROXY_ST_OK);
	ck_assert_uint_eq(hdr->irq_status, VP_IRQ_CONFIG);
	/* InterruptStatus is read-only: a write is refused and changes
	 * nothing, as for the device's other read-only registers. */
	queue_req(VPROXY_OP_WRITE, 4, VIRTIO_MMIO_INTERRUPT_STATUS, 0);
	kick();
	ck_assert_uint_eq(take_rsp().status, VPROXY_ST_BAD_ACCESS);
	ck_assert_uint_eq(hdr->irq_status, VP_IRQ_CONFIG);
}
END_TEST

START_TEST(ring_overflow_breaks_device)
{
	struct vproxy_sring *sring = vproxy_page_sring(guest_page);
	char err[256];
	RING_IDX rsp_prod;
	int notifies;

	t = open_transport(VP_ADDR_GFN, RING_GFN, err, sizeof(err));
	ck_assert_msg(t != NULL, "%s", err);
	attach_device();
	ck_assert_uint_eq(reg_read(VIRTIO_MMIO_VERSION, 4), 2);
	/* The guest claims far more requests than the ring holds. */
	sring->req_prod = front.req_prod_pvt + 1000;
	vp_transport_kick(t);
	ck_assert(vp_transport_is_broken(t));
	ck_assert_int_eq(broken_calls, 1);
	ck_assert_ptr_nonnull(strstr(broken_why, "request producer"));
	ck_assert(vp_vdev_is_broken(vdev));
	/* Nothing more is served or signalled, however often it kicks. */
	rsp_prod = sring->rsp_prod;
	notifies = fhv.notifies;
	sring->req_prod = front.req_prod_pvt + 1;
	vp_transport_kick(t);
	vp_transport_raise_irq(t, VP_IRQ_VRING);
	event_base_loop(base, EVLOOP_NONBLOCK);
	ck_assert_uint_eq(sring->rsp_prod, rsp_prod);
	ck_assert_int_eq(fhv.notifies, notifies);
	ck_assert_int_eq(broken_calls, 1);
}
END_TEST

START_TEST(detached_device_is_not_served)
{
	char err[256];

	t = open_transport(VP_ADDR_GFN, RING_GFN, err, sizeof(err));
	ck_assert_msg(t != NULL, "%s", err);
	queue_req(VPROXY_OP_READ, 4, VIRTIO_MMIO_MAGIC_VALUE, 0);
	kick();
	/* No device yet: the request waits on the ring... */
	ck_assert(!RING_HAS_UNCONSUMED_RESPONSES(&front));
	/* ...and is answered as soon as one is attached. */
	attach_device();
	ck_assert_uint_eq(take_rsp().value, 0x74726976);
}
END_TEST

/* Random ring contents: never a crash, every request answered in order
 * until the transport decides the ring is broken. */
START_TEST(fuzz_random_requests)
{
	static const uint32_t offsets[] = {
	        0x000, 0x004, 0x008, 0x00c, 0x010, 0x014, 0x020, 0x024, 0x030, 0x034,
	        0x038, 0x044, 0x050, 0x060, 0x064, 0x070, 0x080, 0x084, 0x090, 0x094,
	        0x0a0, 0x0a4, 0x0fc, 0x100, 0x108, 0x110, 0x13c, 0xffc};
	unsigned seed = 12345, served = 0, breaks = 0;
	char err[256];

	for (unsigned round = 0; round < 300; round++) {
		init_page();
		next_id = 0;
		t = open_transport(round & 1 ? VP_ADDR_GRANT : VP_ADDR_GFN,
		                   round & 1 ? RING_GREF : RING_GFN, err, sizeof(err));
		ck_assert_msg(t != NULL, "%s", err);
		attach_device();
		for (unsigned batch = 0; batch < 8 && !vp_transport_is_broken(t);
		     batch++) {
			unsigned n = 1 + (unsigned)rand_r(&seed) % 64;
			uint16_t first = next_id;

			for (unsigned i = 0; i < n; i++) {
				unsigned r = (unsigned)rand_r(&seed);
				uint8_t op = (uint8_t)(r % 8 == 0 ? r >> 8 : 1 + (r & 1));
				uint8_t size = (uint8_t)(r % 5 == 0 ? (r >> 12) % 16 : 4);
				uint32_t off = offsets[(r >> 4) % (sizeof(offsets) / 4)];

				queue_req(op, size, off,
				          ((uint64_t)rand_r(&seed) << 32) |
				                  (unsigned)rand_r(&seed));
			}
			if (rand_r(&seed) % 40 == 0)
				front.req_prod_pvt += (RING_IDX)rand_r(&seed);
			kick();
			if (vp_transport_is_broken(t)) {
				breaks++;
				break;
			}
			for (unsigned i = 0; i < n; i++) {
				struct vproxy_mmio_rsp r = take_rsp();

				ck_assert_uint_eq(r.id, (uint16_t)(first + i));
				ck_assert_uint_le(r.status, VPROXY_ST_BAD_ACCESS);
				served++;
			}
		}
		vp_transport_detach(t);
		{
			bool done = false;

			vp_vdev_destroy(vdev, destroy_done, &done);
			ck_assert(done);
		}
		vdev = NULL;
		vp_transport_close(t);
		t = NULL;
	}
	ck_assert_uint_gt(served, 1000);
	ck_assert_uint_gt(breaks, 0);
	ck_assert_int_eq(fhv.maps, fhv.unmaps);
	ck_assert_int_eq(fhv.binds, fhv.unbinds);
}
END_TEST

static Suite *transport_suite(void)
{
	Suite *s = suite_create("transport");
	TCase *tc = tcase_create("ring");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, open_checks_header_and_resources);
	tcase_add_test(tc, register_reads_in_order);
	tcase_add_test(tc, posted_writes_take_effect_in_order);
	tcase_add_test(tc, bad_requests_answered_not_fatal);
	tcase_add_test(tc, interrupt_word);
	tcase_add_test(tc, ring_overflow_breaks_device);
	tcase_add_test(tc, detached_device_is_not_served);
	tcase_add_test(tc, fuzz_random_requests);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(transport_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
