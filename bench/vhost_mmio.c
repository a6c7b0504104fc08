/* SPDX-License-Identifier: MIT */
/*
 * The virtio-mmio register model of the vhost-user stub platform: the
 * stub core's register accesses arrive on the register ring and become
 * vhost-user messages (vring setup, reset) to the backend.
 */
#include "vhost_internal.h"

/* ---- the virtio-mmio register model ---- */

void vhu_queue_close_fds(struct vhu_queue *q)
{
	if (q->kick_fd >= 0)
		close(q->kick_fd);
	if (q->call_fd >= 0)
		close(q->call_fd);
	q->kick_fd = q->call_fd = -1;
}

/* Hand queue i to the backend: size, addresses, start index, eventfds. */
static int queue_start(struct vhu_platform *v, unsigned i)
{
	struct vhu_queue *q = &v->q[i];
	size_t ram_bytes = v->pages << PAGE_SHIFT;
	struct vhu_vring_addr a = {.index = i};
	int r;

	if (!q->num || q->num > VHU_QUEUE_NUM_MAX || q->desc >= ram_bytes ||
	    q->avail >= ram_bytes || q->used >= ram_bytes)
		return -EINVAL;
	q->kick_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	q->call_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (q->kick_fd < 0 || q->call_fd < 0) {
		vhu_queue_close_fds(q);
		return -errno;
	}
	a.desc = (uint64_t)(uintptr_t)(v->ram + q->desc);
	a.avail = (uint64_t)(uintptr_t)(v->ram + q->avail);
	a.used = (uint64_t)(uintptr_t)(v->ram + q->used);
	if ((r = vhu_set_state(v, VHU_SET_VRING_NUM, i, q->num)) < 0 ||
	    (r = vhu_set(v, VHU_SET_VRING_ADDR, &a, sizeof(a), NULL, 0)) < 0 ||
	    (r = vhu_set_state(v, VHU_SET_VRING_BASE, i, 0)) < 0 ||
	    (r = vhu_set(v, VHU_SET_VRING_CALL, &(uint64_t){i}, 8, &q->call_fd, 1)) < 0 ||
	    (r = vhu_set(v, VHU_SET_VRING_KICK, &(uint64_t){i}, 8, &q->kick_fd, 1)) < 0)
		goto fail;
	if (v->has_proto) {
		r = vhu_set_state(v, VHU_SET_VRING_ENABLE, i, 1);
		if (r < 0)
			goto fail;
	}
	q->ready = true;
	return 0;
fail:
	snprintf(v->err, sizeof(v->err), "vhost-user: cannot start queue %u: %s", i,
	         strerror(-r));
	vhu_queue_close_fds(q);
	return r;
}

/* Device reset: the backend stops each started ring (GET_VRING_BASE). */
void vhu_device_reset(struct vhu_platform *v)
{
	for (unsigned i = 0; i < VHU_MAX_QUEUES; i++) {
		struct vhu_queue *q = &v->q[i];

		if (q->ready) {
			struct vhu_vring_state s = {.index = i};

			if (vhu_send(v, VHU_GET_VRING_BASE, 0, &s, sizeof(s), NULL, 0) ==
			    0)
				vhu_reply(v, VHU_GET_VRING_BASE, &s, sizeof(s));
		}
		vhu_queue_close_fds(q);
		*q = (struct vhu_queue){.kick_fd = -1, .call_fd = -1};
	}
	v->status = 0;
	v->drv_features = 0;
	v->dev_sel = v->drv_sel = v->queue_sel = 0;
}

static struct vhu_queue *sel_queue(struct vhu_platform *v)
{
	return v->queue_sel < v->max_queues ? &v->q[v->queue_sel] : NULL;
}

static uint8_t mmio_read(struct vhu_platform *v, uint32_t off, unsigned size,
                         uint64_t *val)
{
	struct vhu_queue *q = sel_queue(v);

	*val = 0;
	if (off >= VIRTIO_MMIO_CONFIG) {
		off -= VIRTIO_MMIO_CONFIG;
		if (off + size > sizeof(v->config))
			return VPROXY_ST_BAD_ACCESS;
		memcpy(val, v->config + off, size); /* little-endian host */
		return VPROXY_ST_OK;
	}
	if (size != 4)
		return VPROXY_ST_BAD_ACCESS;
	switch (off) {
	case VIRTIO_MMIO_MAGIC_VALUE: *val = 0x74726976u; break;
	case VIRTIO_MMIO_VERSION: *val = 2; break;
	case VIRTIO_MMIO_DEVICE_ID: *val = VIRTIO_ID_BLOCK; break;
	case VIRTIO_MMIO_VENDOR_ID: *val = VHU_VENDOR_ID; break;
	case VIRTIO_MMIO_DEVICE_FEATURES:
		*val = v->dev_sel < 2 ? (uint32_t)(v->dev_features >> (32 * v->dev_sel))
		                      : 0;
		break;
	case VIRTIO_MMIO_QUEUE_NUM_MAX: *val = q ? VHU_QUEUE_NUM_MAX : 0; break;
	case VIRTIO_MMIO_QUEUE_READY: *val = q && q->ready; break;
	case VIRTIO_MMIO_STATUS: *val = v->status; break;
	case VIRTIO_MMIO_CONFIG_GENERATION: *val = 0; break;
	default: return VPROXY_ST_BAD_ACCESS;
	}
	return VPROXY_ST_OK;
}

static void set_half(uint64_t *field, bool high, uint32_t v)
{
	*field = high ? (*field & 0xffffffffull) | (uint64_t)v << 32
	              : (*field & ~0xffffffffull) | v;
}

static uint8_t mmio_write(struct vhu_platform *v, uint32_t off, unsigned size,
                          uint64_t val)
{
	struct vhu_queue *q = sel_queue(v);
	uint32_t w = (uint32_t)val;
	uint64_t one = 1;

	if (size != 4)
		return VPROXY_ST_BAD_ACCESS;
	switch (off) {
	case VIRTIO_MMIO_DEVICE_FEATURES_SEL: v->dev_sel = w; break;
	case VIRTIO_MMIO_DRIVER_FEATURES_SEL: v->drv_sel = w; break;
	case VIRTIO_MMIO_DRIVER_FEATURES:
		if (v->drv_sel < 2)
			set_half(&v->drv_features, v->drv_sel == 1, w);
		break;
	case VIRTIO_MMIO_QUEUE_SEL: v->queue_sel = w; break;
	case VIRTIO_MMIO_QUEUE_NUM:
		if (!q || q->ready)
			return VPROXY_ST_BAD_ACCESS;
		q->num = w;
		break;
	case VIRTIO_MMIO_QUEUE_DESC_LOW:
	case VIRTIO_MMIO_QUEUE_DESC_HIGH:
	case VIRTIO_MMIO_QUEUE_AVAIL_LOW:
	case VIRTIO_MMIO_QUEUE_AVAIL_HIGH:
	case VIRTIO_MMIO_QUEUE_USED_LOW:
	case VIRTIO_MMIO_QUEUE_USED_HIGH:
		if (!q || q->ready)
			return VPROXY_ST_BAD_ACCESS;
		set_half(off < VIRTIO_MMIO_QUEUE_AVAIL_LOW  ? &q->desc
		         : off < VIRTIO_MMIO_QUEUE_USED_LOW ? &q->avail
		                                            : &q->used,
		         off & 4, w);
		break;
	case VIRTIO_MMIO_QUEUE_READY:
		if (!q)
			return VPROXY_ST_BAD_ACCESS;
		if (w == 1 && !q->ready && queue_start(v, v->queue_sel) < 0)
			return VPROXY_ST_BAD_ACCESS;
		break;
	case VIRTIO_MMIO_QUEUE_NOTIFY:
		if (w >= v->max_queues || !v->q[w].ready)
			return VPROXY_ST_BAD_ACCESS;
		/* Counted like the stub's event channel sends: every write. */
		v->kick_writes++;
		if (write(v->q[w].kick_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
			return VPROXY_ST_BAD_ACCESS;
		break;
	case VIRTIO_MMIO_STATUS:
		if (w == 0) {
			vhu_device_reset(v);
			break;
		}
		if ((w & VIRTIO_CONFIG_S_FEATURES_OK) &&
		    !(v->status & VIRTIO_CONFIG_S_FEATURES_OK)) {
			uint64_t f = v->drv_features & v->dev_features;

			if (v->has_proto)
				f |= 1ull << VHU_F_PROTOCOL_FEATURES;
			if (vhu_set_u64(v, VHU_SET_FEATURES, f) < 0)
				w &= ~(uint32_t)VIRTIO_CONFIG_S_FEATURES_OK;
		}
		v->status = w;
		break;
	default: return VPROXY_ST_BAD_ACCESS;
	}
	return VPROXY_ST_OK;
}

/* Answer everything the stub queued, in order, then re-arm req_event so
 * its next push notifies us again. */
void vhu_serve_ring(struct vhu_platform *v)
{
	int more;

	if (!v->page)
		return;
	do {
		RING_IDX rp = v->ring.sring->req_prod;

		xen_rmb();
		if (RING_REQUEST_PROD_OVERFLOW(&v->ring, rp))
			return;
		while (v->ring.req_cons != rp) {
			struct vproxy_mmio_req req;
			struct vproxy_mmio_rsp *rsp;
			uint64_t val = 0;
			uint8_t st;

			RING_COPY_REQUEST(&v->ring, v->ring.req_cons, &req);
			v->ring.req_cons++;
			if (req.op == VPROXY_OP_READ)
				st = mmio_read(v, req.offset, req.size, &val);
			else if (req.op == VPROXY_OP_WRITE)
				st = mmio_write(v, req.offset, req.size, req.value);
			else
				st = VPROXY_ST_BAD_OP;
			rsp = RING_GET_RESPONSE(&v->ring, v->ring.rsp_prod_pvt);
			*rsp = (struct vproxy_mmio_rsp){
			        .id = req.id, .status = st, .value = val};
			v->ring.rsp_prod_pvt++;
		}
		RING_PUSH_RESPONSES(&v->ring);
		RING_FINAL_CHECK_FOR_REQUESTS(&v->ring, more);
	} while (more);
}
