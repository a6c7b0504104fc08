/* SPDX-License-Identifier: MIT */
/*
 * Serving the shared register-access ring of one device.  Its event channel
 * port and, while the loop spins, its poller are registered with the loop
 * here: kicks come straight to vp_transport_kick().
 */
#include "transport.h"

#include <errno.h>
#include <event2/event.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vproxy/proto.h>

#include "hv.h"
#include "log.h"
#include "loop.h"
#include "vdev.h"

/* Requests served per kick before yielding to other guests; the rest is
 * served from a deferred event so one busy guest cannot starve others. */
#define REQS_PER_TURN 256u

struct vp_transport {
	struct vp_hv *hv;
	struct vp_loop *loop;
	struct vp_transport_params p;
	void *page;                  /* the mapped shared page */
	struct vproxy_page_hdr *hdr; /* == page */
	struct vproxy_back_ring ring;
	int port;
	struct vp_gmem *gm;
	struct vp_vdev *vdev;
	struct event *more;      /* deferred continuation */
	struct vp_poller poller; /* while the loop spins on us */
	bool broken;
	struct vp_ratelimit rl;
};

/* The loop spins: serve the queues without waiting for kicks. */
static bool poll_cb(struct vp_poller *p)
{
	struct vp_transport *t =
	        (struct vp_transport *)((char *)p -
	                                offsetof(struct vp_transport, poller));
	bool worked;

	if (t->broken || !t->vdev)
		return false;
	worked = vp_vdev_poll(t->vdev);
	/* Its disk's completions are on their way: worth waiting for. */
	p->awaiting = t->vdev && vp_vdev_awaiting(t->vdev);
	return worked;
}

static void poll_stop_cb(struct vp_poller *p)
{
	struct vp_transport *t =
	        (struct vp_transport *)((char *)p -
	                                offsetof(struct vp_transport, poller));

	if (t->vdev)
		vp_vdev_set_polled(t->vdev, false);
}

static void port_cb(void *opaque)
{
	vp_transport_kick(opaque);
}

static void more_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	vp_transport_kick(arg);
}

struct vp_transport *vp_transport_open(struct vp_loop *loop, struct vp_hv *hv,
                                       const struct vp_transport_params *p, char *err,
                                       size_t errlen)
{
	struct vp_transport *t;
	uint32_t magic, version;

	t = calloc(1, sizeof(*t));
	if (!t) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	t->hv = hv;
	t->loop = loop;
	t->p = *p;
	t->port = -1;
	t->poller.poll = poll_cb;
	t->poller.stop = poll_stop_cb;

	if (p->mode == VP_ADDR_GRANT) {
		uint32_t ref = (uint32_t)p->ring_ref;

		if (p->ring_ref > UINT32_MAX) {
			snprintf(err, errlen, "ring-ref %llu is not a grant ref",
			         (unsigned long long)p->ring_ref);
			goto fail;
		}
		t->page = hv->ops->map_grants(hv, p->dom, &ref, 1, 1);
	} else {
		t->page = hv->ops->map_gfns(hv, p->dom, &p->ring_ref, 1, 1);
	}
	if (!t->page) {
		snprintf(err, errlen, "cannot map shared page %llu (%s mode): %s",
		         (unsigned long long)p->ring_ref,
		         p->mode == VP_ADDR_GRANT ? "grant" : "gfn", strerror(errno));
		goto fail;
	}
	t->hdr = t->page;
	magic = __atomic_load_n(&t->hdr->magic, __ATOMIC_ACQUIRE);
	version = __atomic_load_n(&t->hdr->version, __ATOMIC_RELAXED);
	if (magic != VPROXY_PAGE_MAGIC || version != VPROXY_PROTO_VERSION) {
		snprintf(
		        err, errlen,
		        "shared page has magic 0x%08x version %u, want 0x%08x version %u",
		        magic, version, VPROXY_PAGE_MAGIC, VPROXY_PROTO_VERSION);
		goto fail;
	}
	/* The frontend ran SHARED_RING_INIT before publishing the page, so
	 * both sides start counting at 0. */
	BACK_RING_INIT(&t->ring, vproxy_page_sring(t->page), VPROXY_RING_BYTES);
	if (RING_SIZE(&t->ring) == 0) {
		snprintf(err, errlen, "shared ring has no room");
		goto fail;
	}

	t->port = hv->ops->evtchn_bind(hv, p->dom, p->remote_port);
	if (t->port < 0) {
		snprintf(err, errlen, "cannot bind event channel %u: %s", p->remote_port,
		         strerror(-t->port));
		goto fail;
	}
	if (vp_loop_port_add(loop, t->port, port_cb, t) < 0) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	t->gm = vp_gmem_new(hv, p->dom, p->mode, p->gmem_cache_bytes);
	if (!t->gm) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	t->more = event_new(vp_loop_base(loop), -1, 0, more_cb, t);
	if (!t->more) {
		snprintf(err, errlen, "cannot create event");
		goto fail;
	}
	return t;
fail:
	vp_transport_close(t);
	return NULL;
}

int vp_transport_port(const struct vp_transport *t)
{
	return t->port;
}

struct vp_gmem *vp_transport_gmem(struct vp_transport *t)
{
	return t->gm;
}

void vp_transport_attach(struct vp_transport *t, struct vp_vdev *vdev)
{
	t->vdev = vdev;
	/* Requests may have been queued before we bound the port. */
	event_active(t->more, 0, 0);
}

void vp_transport_detach(struct vp_transport *t)
{
	/* The device goes away: no last pass over its queues. */
	if (t->port >= 0)
		vp_loop_port_remove(t->loop, t->port);
	vp_loop_poller_remove(t->loop, &t->poller);
	t->vdev = NULL;
	if (t->more)
		event_del(t->more);
}

bool vp_transport_is_broken(const struct vp_transport *t)
{
	return t->broken;
}

static void set_broken(struct vp_transport *t, const char *why)
{
	if (t->broken)
		return;
	t->broken = true;
	/* Reported by the device (NEEDS_RESET) and by our owner's hook. */
	if (t->vdev)
		vp_vdev_set_broken(t->vdev, why);
	if (t->p.broken)
		t->p.broken(t->p.opaque, why);
}

void vp_transport_raise_irq(void *transport, uint32_t bits)
{
	struct vp_transport *t = transport;

	if (t->broken || !t->hdr)
		return;
	__atomic_fetch_or(&t->hdr->irq_status, bits, __ATOMIC_SEQ_CST);
	t->hv->ops->evtchn_notify(t->hv, t->port);
}

static bool size_ok(unsigned size)
{
	return size == 1 || size == 2 || size == 4 || size == 8;
}

/* Serve one request copied out of the ring. */
static void serve(struct vp_transport *t, const struct vproxy_mmio_req *req,
                  struct vproxy_mmio_rsp *rsp)
{
	enum vp_mmio_status st = VP_MMIO_OK;
	uint64_t value = 0;

	rsp->id = req->id;
	rsp->reserved0 = 0;
	rsp->reserved1 = 0;
	rsp->value = 0;
	if (req->op != VPROXY_OP_READ && req->op != VPROXY_OP_WRITE) {
		vp_log_dev(&t->rl, VPROXY_LOG_WARN, t->p.dom, t->p.devid,
		           "request %u: unknown op %u", req->id, req->op);
		rsp->status = VPROXY_ST_BAD_OP;
		return;
	}
	if (!size_ok(req->size) || req->offset >= VPROXY_MMIO_SIZE ||
	    (req->offset & (req->size - 1u)) != 0) {
		vp_log_dev(&t->rl, VPROXY_LOG_WARN, t->p.dom, t->p.devid,
		           "request %u: bad access size %u at 0x%x", req->id, req->size,
		           req->offset);
		rsp->status = VPROXY_ST_BAD_ACCESS;
		return;
	}
	/* InterruptStatus lives in the shared page; stubs normally serve it
	 * themselves, but answer a forwarded access consistently. */
	if (req->offset == VPROXY_REG_INTERRUPT_STATUS && req->size == 4) {
		if (req->op == VPROXY_OP_READ)
			value = __atomic_load_n(&t->hdr->irq_status, __ATOMIC_ACQUIRE);
		else
			st = VP_MMIO_BAD_ACCESS; /* read-only, as every such register */
	} else if (req->offset == VPROXY_REG_INTERRUPT_ACK && req->size == 4) {
		if (req->op == VPROXY_OP_WRITE)
			__atomic_fetch_and(&t->hdr->irq_status, ~(uint32_t)req->value,
			                   __ATOMIC_SEQ_CST);
		else
			st = VP_MMIO_BAD_ACCESS;
	} else if (!t->vdev) {
		st = VP_MMIO_BAD_ACCESS;
	} else if (req->op == VPROXY_OP_READ) {
		st = vp_vdev_mmio_read(t->vdev, req->offset, req->size, &value);
	} else {
		st = vp_vdev_mmio_write(t->vdev, req->offset, req->size, req->value);
	}
	rsp->status = st == VP_MMIO_OK ? VPROXY_ST_OK : VPROXY_ST_BAD_ACCESS;
	rsp->value = req->op == VPROXY_OP_READ ? value : 0;
}

/* Serve what the ring holds (the caller makes it one batch of accesses
 * for the device). */
static void serve_ring(struct vp_transport *t)
{
	unsigned served = 0;
	int more, notify;

	for (;;) {
		/* One aligned load, as docs/PROTOCOL.md requires of both sides. */
		RING_IDX rp = __atomic_load_n(&t->ring.sring->req_prod, __ATOMIC_RELAXED);

		xen_rmb(); /* see requests up to rp before reading them */
		/* A producer index further ahead than the ring holds is a
		 * guest bug or attack: nothing on the ring can be trusted. */
		if (RING_REQUEST_PROD_OVERFLOW(&t->ring, rp)) {
			char why[96];

			snprintf(why, sizeof(why),
			         "request producer %u is more than %u ahead of %u", rp,
			         RING_SIZE(&t->ring), t->ring.req_cons);
			set_broken(t, why);
			return;
		}
		while (t->ring.req_cons != rp && served < REQS_PER_TURN) {
			struct vproxy_mmio_req req;
			struct vproxy_mmio_rsp *rsp;

			/* Copy once: the guest may change the slot under us. */
			RING_COPY_REQUEST(&t->ring, t->ring.req_cons, &req);
			t->ring.req_cons++;
			rsp = RING_GET_RESPONSE(&t->ring, t->ring.rsp_prod_pvt);
			serve(t, &req, rsp);
			t->ring.rsp_prod_pvt++;
			served++;
			if (t->broken || !t->vdev)
				break;
		}
		RING_PUSH_RESPONSES_AND_CHECK_NOTIFY(&t->ring, notify);
		if (notify)
			t->hv->ops->evtchn_notify(t->hv, t->port);
		if (t->broken || !t->vdev)
			return;
		if (served >= REQS_PER_TURN) {
			event_active(t->more, 0, 0);
			return;
		}
		RING_FINAL_CHECK_FOR_REQUESTS(&t->ring, more);
		if (!more)
			return;
	}
}

void vp_transport_kick(struct vp_transport *t)
{
	struct vp_vdev *vdev = t->vdev;

	if (t->broken || !vdev)
		return;
	/* A kick while the loop spins: from now until the spell ends the
	 * queues are polled, and draining them leaves the guest's kicks off. */
	if (!t->poller.queued && vp_loop_poller_add(t->loop, &t->poller))
		vp_vdev_set_polled(vdev, true);
	vp_vdev_batch_begin(vdev);
	serve_ring(t);
	/* A device detached meanwhile may be gone already. */
	if (t->vdev == vdev)
		vp_vdev_batch_end(vdev);
}

void vp_transport_close(struct vp_transport *t)
{
	if (!t)
		return;
	vp_loop_poller_remove(t->loop, &t->poller);
	if (t->more)
		event_free(t->more);
	if (t->gm)
		vp_gmem_free(t->gm);
	if (t->port >= 0) {
		vp_loop_port_remove(t->loop, t->port);
		t->hv->ops->evtchn_unbind(t->hv, t->port);
	}
	if (t->page) {
		if (t->p.mode == VP_ADDR_GRANT)
			t->hv->ops->unmap_grants(t->hv, t->page, 1);
		else
			t->hv->ops->unmap_gfns(t->hv, t->page, 1);
	}
	free(t);
}
