/* SPDX-License-Identifier: MIT */
/*
 * virtio-mmio v2 register model (virtio 1.2 section 4.2.2): device status,
 * feature negotiation, queue configuration and the config-space window,
 * shared by every device type.  Register accesses come from the guest,
 * so every value is checked and every misuse logged with dom/dev.
 */
#include "vdev.h"

#include <errno.h>
#include <linux/virtio_config.h>
#include <linux/virtio_mmio.h>
#include <linux/virtio_ring.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gmem.h"
#include "log.h"
#include "virtqueue.h"

#define MMIO_MAGIC 0x74726976u /* "virt" */
#define MMIO_VERSION 2u
#define MMIO_VENDOR_ID 0x58525056u /* "VPRX" */
#define MMIO_WINDOW 0x1000u
#define CONFIG_MAX (MMIO_WINDOW - VIRTIO_MMIO_CONFIG)

#define BIT64(n) (1ull << (n))

/* What the driver wrote for one queue. */
struct queue_regs {
	uint32_t num;
	uint64_t desc;
	uint64_t driver;
	uint64_t device;
};

struct vp_vdev {
	const struct vp_vdev_type *type;
	void *priv;
	struct vp_vdev_host host;
	unsigned num_queues;
	unsigned queue_max;
	uint32_t config_len;

	uint64_t device_features;
	uint64_t driver_features;
	uint32_t device_features_sel;
	uint32_t driver_features_sel;
	uint32_t queue_sel;
	uint32_t shm_sel;
	uint32_t isr;
	uint32_t config_generation;
	uint8_t status;

	struct queue_regs *qregs;
	struct vp_vq *vqs;
	uint64_t *kicks;   /* QueueNotify writes per queue, for statistics */
	uint64_t irqs;     /* used-buffer interrupts raised */
	char broken_why[96]; /* why NEEDS_RESET was set, while it is */

	bool destroying;
	bool finished;
	/* The driver wrote 0 to Status with requests in flight: the rings are
	 * gone, Status keeps reading non-zero until the last one finished. */
	bool resetting;
	bool polled;       /* see vp_vdev_set_polled */
	bool batching;     /* see vp_vdev_batch_begin */
	uint64_t notify_pending; /* queues notified in the batch, not served yet */
	uint64_t started;  /* vp_vdev_req_begin calls */
	unsigned inflight; /* requests in a plugin, see vp_vdev_req_begin */
	unsigned busy;     /* calls into the type on the stack */
	void (*done)(void *arg);
	void *done_arg;

	struct vp_ratelimit rl;
};

void vp_vdev_log(struct vp_vdev *d, enum vproxy_log_level level, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	vp_log_dev(&d->rl, level, d->host.dom, d->host.devid, "%s: %s", d->type->name,
	           msg);
}

struct vp_vdev *vp_vdev_new(const struct vp_vdev_type *type,
                            const struct vp_vdev_params *params,
                            const struct vp_vdev_host *host, void *priv)
{
	struct vp_vdev *d;
	unsigned qmax = params->queue_max;

	if (!type || !host->gm || params->num_queues == 0 ||
	    params->num_queues > VP_VDEV_MAX_QUEUES || qmax < 2 ||
	    qmax > VP_VQ_MAX_SIZE || (qmax & (qmax - 1)) ||
	    params->config_len > CONFIG_MAX) {
		errno = EINVAL;
		return NULL;
	}
	d = calloc(1, sizeof(*d));
	if (!d)
		return NULL;
	d->qregs = calloc(params->num_queues, sizeof(*d->qregs));
	d->vqs = calloc(params->num_queues, sizeof(*d->vqs));
	d->kicks = calloc(params->num_queues, sizeof(*d->kicks));
	if (!d->qregs || !d->vqs || !d->kicks)
		goto fail;
	d->type = type;
	d->priv = priv;
	d->host = *host;
	d->num_queues = params->num_queues;
	d->queue_max = qmax;
	d->config_len = params->config_len;
	d->device_features = params->features | BIT64(VIRTIO_F_VERSION_1) |
	                     BIT64(VIRTIO_RING_F_INDIRECT_DESC) |
	                     BIT64(VIRTIO_RING_F_EVENT_IDX);
	/* Linux guests using grant DMA refuse devices without it. */
	if (vp_gmem_mode(host->gm) == VP_ADDR_GRANT)
		d->device_features |= BIT64(VIRTIO_F_ACCESS_PLATFORM);
	for (unsigned q = 0; q < d->num_queues; q++) {
		d->qregs[q].num = qmax;
		d->vqs[q].gm = host->gm;
	}
	return d;

fail:
	free(d->qregs);
	free(d->vqs);
	free(d->kicks);
	free(d);
	errno = ENOMEM;
	return NULL;
}

void *vp_vdev_priv(const struct vp_vdev *d)
{
	return d->priv;
}

const struct vp_vdev_host *vp_vdev_host(const struct vp_vdev *d)
{
	return &d->host;
}

struct vp_vq *vp_vdev_vq(struct vp_vdev *d, unsigned q)
{
	return &d->vqs[q];
}

unsigned vp_vdev_num_queues(const struct vp_vdev *d)
{
	return d->num_queues;
}

uint64_t vp_vdev_features(const struct vp_vdev *d)
{
	return d->driver_features;
}

bool vp_vdev_is_broken(const struct vp_vdev *d)
{
	return d->status & VIRTIO_CONFIG_S_NEEDS_RESET;
}

const char *vp_vdev_broken_reason(const struct vp_vdev *d)
{
	return vp_vdev_is_broken(d) ? d->broken_why : NULL;
}

uint64_t vp_vdev_queue_kicks(const struct vp_vdev *d, unsigned q)
{
	return q < d->num_queues ? d->kicks[q] : 0;
}

uint64_t vp_vdev_irqs(const struct vp_vdev *d)
{
	return d->irqs;
}

bool vp_vdev_running(const struct vp_vdev *d)
{
	const uint8_t need = VIRTIO_CONFIG_S_FEATURES_OK | VIRTIO_CONFIG_S_DRIVER_OK;
	const uint8_t stop = VIRTIO_CONFIG_S_FAILED | VIRTIO_CONFIG_S_NEEDS_RESET;

	return !d->destroying && !d->resetting && (d->status & need) == need &&
	       !(d->status & stop);
}

void vp_vdev_raise_irq(struct vp_vdev *d, uint32_t bits)
{
	/* A device being reset says nothing until the driver set it up again. */
	if (d->destroying || d->resetting)
		return;
	d->isr |= bits;
	if (bits & VP_IRQ_VRING)
		d->irqs++;
	if (d->host.raise_irq)
		d->host.raise_irq(d->host.opaque, bits);
}

void vp_vdev_set_broken(struct vp_vdev *d, const char *why)
{
	if (d->destroying || d->resetting || vp_vdev_is_broken(d))
		return;
	d->status |= VIRTIO_CONFIG_S_NEEDS_RESET;
	snprintf(d->broken_why, sizeof(d->broken_why), "%s", why);
	vp_vdev_log(d, VPROXY_LOG_WARN, "device needs reset: %s", why);
	vp_vdev_raise_irq(d, VP_IRQ_CONFIG);
	if (d->host.broken)
		d->host.broken(d->host.opaque, why);
}

/* Free the device once destroyed and nothing refers to it any more. */
static void vdev_maybe_finish(struct vp_vdev *d)
{
	void (*done)(void *arg) = d->done;
	void *arg = d->done_arg;

	if (!d->destroying || d->inflight || d->busy || d->finished)
		return;
	d->finished = true;
	if (d->type->free)
		d->type->free(d);
	if (done)
		done(arg);
	free(d->qregs);
	free(d->vqs);
	free(d->kicks);
	free(d);
}

static void vdev_notify_queue(struct vp_vdev *d, unsigned q)
{
	d->busy++;
	d->type->queue_notify(d, q);
	d->busy--;
	vdev_maybe_finish(d);
}

/* Serve the queues whose notifications a batch merged. */
static void vdev_flush_notifies(struct vp_vdev *d)
{
	d->busy++;
	while (d->notify_pending) {
		unsigned q = (unsigned)__builtin_ctzll(d->notify_pending);

		d->notify_pending &= d->notify_pending - 1;
		if (!d->destroying && vp_vdev_running(d) && d->vqs[q].ready)
			vdev_notify_queue(d, q);
	}
	d->busy--;
	vdev_maybe_finish(d);
}

void vp_vdev_batch_begin(struct vp_vdev *d)
{
	d->batching = true;
}

void vp_vdev_batch_end(struct vp_vdev *d)
{
	d->batching = false;
	if (d->notify_pending)
		vdev_flush_notifies(d);
}

bool vp_vdev_poll(struct vp_vdev *d)
{
	uint64_t before = d->started;
	bool worked = false;

	d->busy++;
	/* Completions first: they free room in the queues. */
	if (d->polled && d->type->poll)
		worked = d->type->poll(d);
	for (unsigned q = 0; q < d->num_queues && vp_vdev_running(d); q++)
		if (d->vqs[q].ready)
			d->type->queue_notify(d, q);
	worked |= d->started != before;
	d->busy--;
	vdev_maybe_finish(d);
	return worked;
}

/* Polled mode is over: the type's storage notifies again. */
static void vdev_poll_end(struct vp_vdev *d)
{
	if (!d->type->poll_end)
		return;
	d->busy++;
	d->type->poll_end(d);
	d->busy--;
}

/* Requests still in flight are no longer wanted: ask the type to have
 * their plugin give them up early. */
static void vdev_cancel_inflight(struct vp_vdev *d)
{
	if (!d->inflight || !d->type->cancel)
		return;
	d->busy++;
	d->type->cancel(d);
	d->busy--;
}

void vp_vdev_destroy(struct vp_vdev *d, void (*done)(void *arg), void *arg)
{
	if (d->destroying)
		return;
	d->destroying = true;
	d->done = done;
	d->done_arg = arg;
	/* Nobody polls a device that goes away: its storage must wake the
	 * loop for the completions still to come. */
	if (d->polled) {
		d->polled = false;
		vdev_poll_end(d);
	}
	/* Requests still in a plugin hold their own buffer mappings; the
	 * rings go now, so nothing can be pushed to the guest any more. */
	for (unsigned q = 0; q < d->num_queues; q++)
		vp_vq_teardown(&d->vqs[q]);
	vdev_cancel_inflight(d);
	vdev_maybe_finish(d);
}

void vp_vdev_req_begin(struct vp_vdev *d)
{
	d->inflight++;
	d->started++;
}

void vp_vdev_set_polled(struct vp_vdev *d, bool on)
{
	if (d->polled == on)
		return;
	d->polled = on;
	if (on)
		return;
	/* Off: the storage notifies its completions again, and every queue
	 * asks for kicks again and catches what raced in. */
	vdev_poll_end(d);
	if (!d->destroying)
		vp_vdev_poll(d);
}

bool vp_vdev_polled(const struct vp_vdev *d)
{
	return d->polled;
}

bool vp_vdev_awaiting(const struct vp_vdev *d)
{
	return d->polled && !d->destroying && d->type->awaiting && d->type->awaiting(d);
}

uint64_t vp_vdev_reqs_started(const struct vp_vdev *d)
{
	return d->started;
}

static void vdev_reset(struct vp_vdev *d);

/* The last request of a reset finished: the reset is done. */
static void vdev_maybe_finish_reset(struct vp_vdev *d)
{
	if (!d->resetting || d->inflight || d->destroying)
		return;
	d->resetting = false;
	vdev_reset(d);
}

void vp_vdev_req_end(struct vp_vdev *d)
{
	d->inflight--;
	vdev_maybe_finish_reset(d);
	vdev_maybe_finish(d);
}

static void vdev_reset(struct vp_vdev *d)
{
	for (unsigned q = 0; q < d->num_queues; q++) {
		vp_vq_teardown(&d->vqs[q]);
		memset(&d->qregs[q], 0, sizeof(d->qregs[q]));
		d->qregs[q].num = d->queue_max;
	}
	d->status = 0;
	d->driver_features = 0;
	d->device_features_sel = 0;
	d->driver_features_sel = 0;
	d->queue_sel = 0;
	d->shm_sel = 0;
	d->isr = 0;
	if (d->type->reset)
		d->type->reset(d);
}

/* May the driver's feature choice be accepted (FEATURES_OK)? */
static bool vdev_features_ok(struct vp_vdev *d)
{
	uint64_t extra = d->driver_features & ~d->device_features;

	if (extra) {
		vp_vdev_log(d, VPROXY_LOG_WARN,
		            "driver accepted features %#llx that were not offered",
		            (unsigned long long)extra);
		return false;
	}
	if (!(d->driver_features & BIT64(VIRTIO_F_VERSION_1))) {
		vp_vdev_log(d, VPROXY_LOG_WARN, "driver did not accept VERSION_1");
		return false;
	}
	/* Without it the driver puts guest-physical addresses in the rings,
	 * which grant-mode guest memory cannot map. */
	if ((d->device_features & BIT64(VIRTIO_F_ACCESS_PLATFORM)) &&
	    !(d->driver_features & BIT64(VIRTIO_F_ACCESS_PLATFORM))) {
		vp_vdev_log(d, VPROXY_LOG_WARN,
		            "driver did not accept ACCESS_PLATFORM (grant mode)");
		return false;
	}
	return true;
}

/* Virtio 1.2 2.4: stop consuming the rings at once, but let Status read
 * 0 only once no request can touch guest memory any more: plugins may
 * still be writing into buffers they were given.  Until then Status keeps
 * its value and the driver keeps polling it. */
static void vdev_begin_reset(struct vp_vdev *d)
{
	if (d->resetting)
		return;
	for (unsigned q = 0; q < d->num_queues; q++)
		vp_vq_teardown(&d->vqs[q]);
	d->resetting = true;
	vdev_cancel_inflight(d);
	vdev_maybe_finish_reset(d);
}

static void vdev_write_status(struct vp_vdev *d, uint32_t value)
{
	bool was_running = vp_vdev_running(d);
	uint8_t next;

	if (value == 0) {
		vdev_begin_reset(d);
		return;
	}
	if (d->resetting) {
		vp_vdev_log(d, VPROXY_LOG_WARN,
		            "status %#x ignored: reset still in progress", value);
		return;
	}
	/* NEEDS_RESET is the device's; the driver cannot clear a bit except
	 * through reset. */
	next = (uint8_t)(value & ~VIRTIO_CONFIG_S_NEEDS_RESET) | d->status;
	if ((next & VIRTIO_CONFIG_S_FEATURES_OK) &&
	    !(d->status & VIRTIO_CONFIG_S_FEATURES_OK) && !vdev_features_ok(d))
		next &= (uint8_t)~VIRTIO_CONFIG_S_FEATURES_OK;
	if ((next & VIRTIO_CONFIG_S_DRIVER_OK) && !(next & VIRTIO_CONFIG_S_FEATURES_OK))
		vp_vdev_log(d, VPROXY_LOG_WARN, "DRIVER_OK without FEATURES_OK");
	d->status = next;
	/* Buffers queued before DRIVER_OK got no kick that we acted on. */
	if (!was_running && vp_vdev_running(d))
		vp_vdev_poll(d);
}

static struct queue_regs *vdev_sel_queue(struct vp_vdev *d)
{
	return d->queue_sel < d->num_queues ? &d->qregs[d->queue_sel] : NULL;
}

static void vdev_write_queue_ready(struct vp_vdev *d, uint32_t value)
{
	struct queue_regs *qr = vdev_sel_queue(d);
	unsigned flags = 0;
	struct vp_vq *vq;
	char why[160];

	if (!qr) {
		vp_vdev_log(d, VPROXY_LOG_WARN, "QueueReady for missing queue %u",
		            d->queue_sel);
		return;
	}
	vq = &d->vqs[d->queue_sel];
	if (!(value & 1)) {
		vp_vq_teardown(vq);
		return;
	}
	if (vq->ready)
		return;
	if (!(d->status & VIRTIO_CONFIG_S_FEATURES_OK)) {
		snprintf(why, sizeof(why), "queue %u enabled before FEATURES_OK",
		         d->queue_sel);
		vp_vdev_set_broken(d, why);
		return;
	}
	if (qr->num > d->queue_max) {
		snprintf(why, sizeof(why), "queue %u: size %u above QueueNumMax %u",
		         d->queue_sel, qr->num, d->queue_max);
		vp_vdev_set_broken(d, why);
		return;
	}
	if (d->driver_features & BIT64(VIRTIO_RING_F_EVENT_IDX))
		flags |= VP_VQ_F_EVENT_IDX;
	if (d->driver_features & BIT64(VIRTIO_RING_F_INDIRECT_DESC))
		flags |= VP_VQ_F_INDIRECT;
	if (vp_vq_setup(vq, d->host.gm, qr->num, qr->desc, qr->driver, qr->device,
	                flags) < 0) {
		snprintf(why, sizeof(why), "queue %u: %s", d->queue_sel, vq->err);
		vp_vdev_set_broken(d, why);
	}
}

static void vdev_write_queue_notify(struct vp_vdev *d, uint32_t q)
{
	if (q >= d->num_queues) {
		vp_vdev_log(d, VPROXY_LOG_WARN, "notify for missing queue %u", q);
		return;
	}
	d->kicks[q]++;
	if (!vp_vdev_running(d) || !d->vqs[q].ready)
		return;
	if (d->batching) {
		d->notify_pending |= 1ull << q;
		return;
	}
	vdev_notify_queue(d, q);
}

/* Set the low or high half of a 64-bit queue address register. */
static void vdev_write_queue_addr(struct vp_vdev *d, uint32_t offset, uint32_t value)
{
	struct queue_regs *qr = vdev_sel_queue(d);
	uint64_t *reg;
	bool high;

	if (!qr || d->vqs[d->queue_sel].ready) {
		vp_vdev_log(d, VPROXY_LOG_WARN,
		            "queue address write %#x for %s queue %u ignored", offset,
		            qr ? "ready" : "missing", d->queue_sel);
		return;
	}
	switch (offset) {
	case VIRTIO_MMIO_QUEUE_DESC_LOW:
	case VIRTIO_MMIO_QUEUE_DESC_HIGH: reg = &qr->desc; break;
	case VIRTIO_MMIO_QUEUE_AVAIL_LOW:
	case VIRTIO_MMIO_QUEUE_AVAIL_HIGH: reg = &qr->driver; break;
	default: reg = &qr->device; break;
	}
	high = offset & 4;
	if (high)
		*reg = (*reg & 0xffffffffull) | (uint64_t)value << 32;
	else
		*reg = (*reg & ~0xffffffffull) | value;
}

static uint32_t half(uint64_t v, uint32_t sel)
{
	return sel == 0 ? (uint32_t)v : sel == 1 ? (uint32_t)(v >> 32) : 0;
}

static enum vp_mmio_status bad_access(struct vp_vdev *d, const char *what,
                                      uint32_t offset, unsigned size)
{
	vp_vdev_log(d, VPROXY_LOG_WARN, "bad %s of %u bytes at %#x", what, size, offset);
	return VP_MMIO_BAD_ACCESS;
}

/* Config-space accesses: 1, 2, 4 or 8 bytes, naturally aligned. */
static enum vp_mmio_status config_access(struct vp_vdev *d, uint32_t offset,
                                         unsigned size, uint64_t *value, bool write)
{
	uint32_t coff = offset - VIRTIO_MMIO_CONFIG;
	uint8_t buf[8];

	if ((size != 1 && size != 2 && size != 4 && size != 8) || coff % size ||
	    coff >= d->config_len || size > d->config_len - coff)
		return bad_access(d, write ? "config write" : "config read", offset,
		                  size);
	if (!write) {
		uint64_t v = 0;

		d->type->config_read(d, coff, buf, size);
		for (unsigned i = size; i-- > 0;)
			v = v << 8 | buf[i];
		*value = v;
		return VP_MMIO_OK;
	}
	for (unsigned i = 0; i < size; i++)
		buf[i] = (uint8_t)(*value >> (8 * i));
	if (!d->type->config_write || d->type->config_write(d, coff, buf, size) < 0)
		return bad_access(d, "config write", offset, size);
	return VP_MMIO_OK;
}

enum vp_mmio_status vp_vdev_mmio_read(struct vp_vdev *d, uint32_t offset, unsigned size,
                                      uint64_t *value)
{
	struct queue_regs *qr;
	uint32_t v;

	*value = 0;
	if (d->destroying)
		return VP_MMIO_BAD_ACCESS;
	/* Every access sees the notifications written before it served. */
	if (d->notify_pending)
		vdev_flush_notifies(d);
	if (offset >= MMIO_WINDOW)
		return bad_access(d, "read", offset, size);
	if (offset >= VIRTIO_MMIO_CONFIG)
		return config_access(d, offset, size, value, false);
	if (size != 4 || offset % 4)
		return bad_access(d, "register read", offset, size);
	qr = vdev_sel_queue(d);
	switch (offset) {
	case VIRTIO_MMIO_MAGIC_VALUE: v = MMIO_MAGIC; break;
	case VIRTIO_MMIO_VERSION: v = MMIO_VERSION; break;
	case VIRTIO_MMIO_DEVICE_ID: v = d->type->device_id; break;
	case VIRTIO_MMIO_VENDOR_ID: v = MMIO_VENDOR_ID; break;
	case VIRTIO_MMIO_DEVICE_FEATURES:
		v = half(d->device_features, d->device_features_sel);
		break;
	case VIRTIO_MMIO_DEVICE_FEATURES_SEL: v = d->device_features_sel; break;
	case VIRTIO_MMIO_DRIVER_FEATURES:
		v = half(d->driver_features, d->driver_features_sel);
		break;
	case VIRTIO_MMIO_DRIVER_FEATURES_SEL: v = d->driver_features_sel; break;
	case VIRTIO_MMIO_QUEUE_SEL: v = d->queue_sel; break;
	case VIRTIO_MMIO_QUEUE_NUM_MAX: v = qr ? d->queue_max : 0; break;
	case VIRTIO_MMIO_QUEUE_NUM: v = qr ? qr->num : 0; break;
	case VIRTIO_MMIO_QUEUE_READY:
		/* Disabled, but 1 until its requests in flight are done. */
		v = qr && (d->vqs[d->queue_sel].ready ||
		           (d->type->queue_busy && d->type->queue_busy(d, d->queue_sel)));
		break;
	case VIRTIO_MMIO_INTERRUPT_STATUS: v = d->isr; break;
	case VIRTIO_MMIO_STATUS: v = d->status; break;
	case VIRTIO_MMIO_QUEUE_DESC_LOW:
	case VIRTIO_MMIO_QUEUE_DESC_HIGH:
		v = qr ? half(qr->desc, (offset & 4) != 0) : 0;
		break;
	case VIRTIO_MMIO_QUEUE_AVAIL_LOW:
	case VIRTIO_MMIO_QUEUE_AVAIL_HIGH:
		v = qr ? half(qr->driver, (offset & 4) != 0) : 0;
		break;
	case VIRTIO_MMIO_QUEUE_USED_LOW:
	case VIRTIO_MMIO_QUEUE_USED_HIGH:
		v = qr ? half(qr->device, (offset & 4) != 0) : 0;
		break;
	case VIRTIO_MMIO_SHM_SEL: v = d->shm_sel; break;
	case VIRTIO_MMIO_SHM_LEN_LOW:
	case VIRTIO_MMIO_SHM_LEN_HIGH:
	case VIRTIO_MMIO_SHM_BASE_LOW:
	case VIRTIO_MMIO_SHM_BASE_HIGH:
		/* All ones: no shared memory region with this id. */
		v = 0xffffffffu;
		break;
	case VIRTIO_MMIO_CONFIG_GENERATION: v = d->config_generation; break;
	default: return bad_access(d, "register read", offset, size);
	}
	*value = v;
	return VP_MMIO_OK;
}

enum vp_mmio_status vp_vdev_mmio_write(struct vp_vdev *d, uint32_t offset, unsigned size,
                                       uint64_t value)
{
	struct queue_regs *qr;
	uint32_t v = (uint32_t)value;

	if (d->destroying)
		return VP_MMIO_BAD_ACCESS;
	if (d->notify_pending && offset != VIRTIO_MMIO_QUEUE_NOTIFY)
		vdev_flush_notifies(d);
	if (offset >= MMIO_WINDOW)
		return bad_access(d, "write", offset, size);
	if (offset >= VIRTIO_MMIO_CONFIG)
		return config_access(d, offset, size, &value, true);
	if (size != 4 || offset % 4)
		return bad_access(d, "register write", offset, size);
	/* The driver must wait for Status 0 before touching the device. */
	if (d->resetting && offset != VIRTIO_MMIO_STATUS &&
	    offset != VIRTIO_MMIO_INTERRUPT_ACK) {
		vp_vdev_log(d, VPROXY_LOG_WARN,
		            "register write %#x ignored: reset still in progress", offset);
		return VP_MMIO_OK;
	}
	switch (offset) {
	case VIRTIO_MMIO_DEVICE_FEATURES_SEL: d->device_features_sel = v; break;
	case VIRTIO_MMIO_DRIVER_FEATURES:
		if (d->status & VIRTIO_CONFIG_S_FEATURES_OK) {
			vp_vdev_log(d, VPROXY_LOG_WARN,
			            "driver features written after FEATURES_OK");
			break;
		}
		if (d->driver_features_sel == 0)
			d->driver_features = (d->driver_features & ~0xffffffffull) | v;
		else if (d->driver_features_sel == 1)
			d->driver_features =
			        (d->driver_features & 0xffffffffull) | (uint64_t)v << 32;
		else if (v)
			/* No feature bits exist there; FEATURES_OK will tell. */
			vp_vdev_log(d, VPROXY_LOG_WARN,
			            "driver features word %u = %#x ignored",
			            d->driver_features_sel, v);
		break;
	case VIRTIO_MMIO_DRIVER_FEATURES_SEL: d->driver_features_sel = v; break;
	case VIRTIO_MMIO_QUEUE_SEL: d->queue_sel = v; break;
	case VIRTIO_MMIO_QUEUE_NUM:
		qr = vdev_sel_queue(d);
		if (!qr || d->vqs[d->queue_sel].ready)
			vp_vdev_log(d, VPROXY_LOG_WARN, "QueueNum write for %s queue %u",
			            qr ? "ready" : "missing", d->queue_sel);
		else
			qr->num = v;
		break;
	case VIRTIO_MMIO_QUEUE_READY: vdev_write_queue_ready(d, v); break;
	case VIRTIO_MMIO_QUEUE_NOTIFY: vdev_write_queue_notify(d, v); break;
	case VIRTIO_MMIO_INTERRUPT_ACK: d->isr &= ~v; break;
	case VIRTIO_MMIO_STATUS: vdev_write_status(d, v); break;
	case VIRTIO_MMIO_QUEUE_DESC_LOW:
	case VIRTIO_MMIO_QUEUE_DESC_HIGH:
	case VIRTIO_MMIO_QUEUE_AVAIL_LOW:
	case VIRTIO_MMIO_QUEUE_AVAIL_HIGH:
	case VIRTIO_MMIO_QUEUE_USED_LOW:
	case VIRTIO_MMIO_QUEUE_USED_HIGH: vdev_write_queue_addr(d, offset, v); break;
	case VIRTIO_MMIO_SHM_SEL: d->shm_sel = v; break;
	default: return bad_access(d, "register write", offset, size);
	}
	return VP_MMIO_OK;
}
