/* SPDX-License-Identifier: MIT */
/*
 * Fuzzes the transport (core/transport.c): the shared page and its ring of
 * register accesses, served into a whole virtio-blk device (vdev.c,
 * virtqueue.c, blk.c and the checking RAM disk of fuzz_disk.c) over the
 * guard page hypervisor.  The harness is the guest's stub: it puts
 * register accesses on the ring, either whole virtio-blk driver sequences
 * (fuzz_guest.c) or raw messages of any op, size and offset, moves
 * req_prod and rsp_event as the input says (also past the ring), and
 * checks every response: in order, one per request, ids echoed, reserved
 * fields zero, never more responses than requests.
 *
 * Input: cfg u8 (bit 0 grant mode, bit 1 bad magic, bit 2 mapping cache),
 * device u8 (queues, queue size), then operations (op u8 + arguments).
 */
#include <event2/event.h>
#include <linux/virtio_mmio.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vproxy/proto.h>

#include "blk.h"
#include "fake_hv.h"
#include "fuzz_disk.h"
#include "fuzz_guest.h"
#include "fuzz_input.h"
#include "log.h"
#include "loop.h"
#include "transport.h"
#include "vdev.h"

#define RAM_PAGES 256u
#define PAGE_GFN (RAM_PAGES - 1) /* the shared page, out of the driver's heap */
#define MAX_OUTSTANDING 1024u

struct stub {
	struct vp_transport *t;
	struct vproxy_front_ring front;
	uint16_t next_id;
	uint16_t ids[MAX_OUTSTANDING]; /* requests awaiting a response */
	unsigned head, count;
	bool lied; /* req_prod was set to something we did not queue */
	uint64_t last_value;
};

static struct vp_hv *hv;
static struct vp_loop *loop; /* poll-us 0: the harness kicks */
static struct event_base *base;
static unsigned broken;

static void on_broken(void *opaque, const char *why)
{
	(void)opaque;
	(void)why;
	broken++;
}

static void on_done(void *arg)
{
	*(bool *)arg = true;
}

static void fail(const char *what)
{
	fprintf(stderr, "fuzz_transport: %s\n", what);
	abort();
}

/* Consume and check every response the backend published. */
static void take_responses(struct stub *s)
{
	RING_IDX rp = __atomic_load_n(&s->front.sring->rsp_prod, __ATOMIC_ACQUIRE);

	if (!s->lied && rp - s->front.rsp_cons > s->count)
		fail("more responses than requests");
	while (s->front.rsp_cons != rp) {
		const struct vproxy_mmio_rsp *r =
		        RING_GET_RESPONSE(&s->front, s->front.rsp_cons);

		s->front.rsp_cons++;
		if (s->lied)
			continue;
		if (r->id != s->ids[s->head])
			fail("response out of order or with another id");
		if (r->status > VPROXY_ST_BAD_ACCESS || r->reserved0 || r->reserved1)
			fail("bad status or reserved field set");
		s->last_value = r->value;
		s->head = (s->head + 1) % MAX_OUTSTANDING;
		s->count--;
	}
}

/* Serve the ring as the event channel would: kick, then run what the
 * transport deferred to the loop. */
static void kick(struct stub *s)
{
	vp_transport_kick(s->t);
	for (int i = 0; i < 64; i++)
		if (event_base_loop(base, EVLOOP_NONBLOCK) != 0)
			break;
	take_responses(s);
}

/* Queue one request (making room first if the ring is full). */
static void post(struct stub *s, uint8_t op, uint8_t size, uint32_t offset,
                 uint64_t value)
{
	struct vproxy_mmio_req *r;
	int notify;

	if (RING_FULL(&s->front) || s->count == MAX_OUTSTANDING) {
		kick(s);
		if (RING_FULL(&s->front) || s->count == MAX_OUTSTANDING)
			return; /* the backend stopped: drop it */
	}
	r = RING_GET_REQUEST(&s->front, s->front.req_prod_pvt);
	r->op = op;
	r->size = size;
	r->id = s->next_id;
	r->offset = offset;
	r->value = value;
	s->front.req_prod_pvt++;
	s->ids[(s->head + s->count) % MAX_OUTSTANDING] = s->next_id++;
	s->count++;
	RING_PUSH_REQUESTS_AND_CHECK_NOTIFY(&s->front, notify);
	(void)notify;
}

/* fuzz_guest's register access: a read waits for its answer. */
static void reg(void *opaque, uint32_t offset, unsigned size, bool write, uint64_t *value)
{
	struct stub *s = opaque;

	post(s, write ? VPROXY_OP_WRITE : VPROXY_OP_READ, (uint8_t)size, offset,
	     write ? *value : 0);
	if (write && (offset != VIRTIO_MMIO_QUEUE_NOTIFY))
		return;
	s->last_value = 0;
	kick(s);
	if (!write)
		*value = s->last_value;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz in = {data, size};
	struct vproxy_disk_info info = {.capacity = 256 * 512,
	                                .logical_block = 512,
	                                .physical_block = 512,
	                                .flags = 0xe};
	struct vp_blk_params params = {0};
	struct vp_transport_params tp = {0};
	struct vp_vdev_host host = {0};
	struct vproxy_page_hdr *hdr;
	struct stub s = {0};
	struct vp_vdev *d;
	struct fg g;
	char err[256];
	uint8_t cfg, dev, *page;
	bool done = false;

	if (!hv) {
		hv = fake_hv_new(RAM_PAGES);
		loop = vp_loop_new(0, false);
		if (!loop)
			abort();
		base = vp_loop_base(loop);
		vp_log_set_level(VPROXY_LOG_ERROR);
	}
	fake_hv_reset(hv);
	cfg = fz_u8(&in);
	dev = fz_u8(&in);

	/* The stub's side of the shared page. */
	page = fake_hv_ram(hv) + (size_t)PAGE_GFN * 4096;
	hdr = (struct vproxy_page_hdr *)(void *)page;
	hdr->magic = cfg & 2 ? 0x12345678 : VPROXY_PAGE_MAGIC;
	hdr->version = VPROXY_PROTO_VERSION;
	SHARED_RING_INIT(vproxy_page_sring(page));
	FRONT_RING_INIT(&s.front, vproxy_page_sring(page), VPROXY_RING_BYTES);

	fg_init(&g, hv, cfg & 1, reg, &s);
	g.ram_bytes = (uint64_t)PAGE_GFN * 4096;
	tp = (struct vp_transport_params){.dom = 9,
	                                  .devid = 1,
	                                  .mode = cfg & 1 ? VP_ADDR_GRANT : VP_ADDR_GFN,
	                                  .ring_ref = PAGE_GFN,
	                                  .remote_port = 3,
	                                  .gmem_cache_bytes = cfg & 4 ? 2u << 20 : 0,
	                                  .broken = on_broken};
	s.t = vp_transport_open(loop, hv, &tp, err, sizeof(err));
	if (!s.t) {
		if (!(cfg & 2))
			fail(err);
		fake_hv_check_released(hv);
		return 0;
	}
	params.num_queues = 1 + (dev & 3);
	params.queue_size_max = 2u << ((dev >> 2) & 7);
	host = (struct vp_vdev_host){.dom = 9,
	                             .devid = 1,
	                             .gm = vp_transport_gmem(s.t),
	                             .raise_irq = vp_transport_raise_irq,
	                             .opaque = s.t};
	d = vp_blk_create(&params, &fuzz_disk_plugin, fuzz_disk_open(&info), &info,
	                  &host);
	if (!d)
		abort();
	vp_transport_attach(s.t, d);
	kick(&s);

	fuzz_disk_expect_pattern(&g.tainted);
	while (fz_more(&in)) {
		uint8_t op = fz_u8(&in);


		switch (op % 8) {
		case 0: {
			/* A raw message: any op, size, offset, value. */
			uint8_t rop = fz_u8(&in), rsize = fz_u8(&in);
			uint16_t off = fz_u16(&in);

			post(&s, rop, rsize, off, fz_u64(&in));
			break;
		}
		case 1: kick(&s); break;
		case 2:
			fg_setup(&g, fz_u64(&in), params.num_queues,
			         2u << (fz_u8(&in) % 8));
			break;
		case 3: fg_request(&g, &in); break;
		case 4: fg_harvest(&g); break;
		case 5: {
			/* The stub lies about req_prod or rsp_event. */
			uint8_t which = fz_u8(&in);
			uint32_t v = fz_u32(&in);

			if (which & 1) {
				s.front.sring->rsp_event = v;
			} else {
				s.front.sring->req_prod = s.front.req_prod_pvt + v % 512;
				s.lied = true;
			}
			break;
		}
		case 6: {
			/* The stub clears interrupt bits, as on InterruptACK. */
			__atomic_fetch_and(&hdr->irq_status, ~(uint32_t)fz_u8(&in),
			                   __ATOMIC_SEQ_CST);
			break;
		}
		case 7: fuzz_disk_complete(fz_u8(&in), fz_u8(&in), 0); break;
		}
	}
	kick(&s);
	fg_harvest(&g);
	vp_transport_detach(s.t);
	vp_vdev_destroy(d, on_done, &done);
	fuzz_disk_complete(~0u, 0, 0);
	if (!done)
		fail("device not freed after its last request");
	vp_transport_close(s.t);
	fake_hv_check_released(hv);
	return 0;
}
