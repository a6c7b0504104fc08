/* SPDX-License-Identifier: MIT */
/*
 * A virtio device behind the virtio-mmio v2 register model.  The transport
 * (transport.c) forwards register accesses here; the device raises
 * interrupts through its host.  Implemented in vdev.c (registers,
 * status, features, queues) with device types (blk.c) plugged in through
 * struct vp_vdev_type.
 */
#ifndef VP_VDEV_H
#define VP_VDEV_H

#include <stdbool.h>
#include <stdint.h>
#include <vproxy/plugin.h>

struct vp_gmem;
struct vp_vdev;

/* Interrupt status bits (virtio-mmio InterruptStatus). */
#define VP_IRQ_VRING 0x1u
#define VP_IRQ_CONFIG 0x2u

/* What a device needs from whoever hosts it. Copied by the device. */
struct vp_vdev_host {
	uint16_t dom;          /* guest domid, for log lines */
	uint16_t devid;        /* device id within the guest, for log lines */
	struct vp_gmem *gm;    /* guest memory; owned by the host, outlives
				* the device */
	/* Set bits in the guest's interrupt status and notify it. */
	void (*raise_irq)(void *opaque, uint32_t bits);
	/* Called once when the device enters NEEDS_RESET (may be NULL). */
	void (*broken)(void *opaque, const char *why);
	void *opaque;
};

/* Result of a register access. */
enum vp_mmio_status {
	VP_MMIO_OK = 0,
	VP_MMIO_BAD_ACCESS = 1, /* bad size/alignment/offset: guest error */
};

/* Read a register or config-space field; *value is zero-extended. */
enum vp_mmio_status vp_vdev_mmio_read(struct vp_vdev *d, uint32_t offset,
				      unsigned size, uint64_t *value);
/* Write a register or config-space field. */
enum vp_mmio_status vp_vdev_mmio_write(struct vp_vdev *d, uint32_t offset,
				       unsigned size, uint64_t value);
/* Put the device in NEEDS_RESET (transport-level guest error), log why
 * with dom/dev, raise a config interrupt. Idempotent. */
void vp_vdev_set_broken(struct vp_vdev *d, const char *why);
/* True once the device is in NEEDS_RESET and not yet reset by the guest. */
bool vp_vdev_is_broken(const struct vp_vdev *d);
/* Why the device is in NEEDS_RESET, or NULL when it is not. */
const char *vp_vdev_broken_reason(const struct vp_vdev *d);
/* The driver's QueueNotify writes to queue q (0 for a queue it lacks),
 * and the used-buffer interrupts raised, since the device was created. */
uint64_t vp_vdev_queue_kicks(const struct vp_vdev *d, unsigned q);
uint64_t vp_vdev_irqs(const struct vp_vdev *d);
/* Process all available buffers of every ready queue (used by pollers;
 * queue notifications call it per queue); in polled mode first run the
 * completions the type's storage has ready (type->poll).  True if it
 * found work: a request taken or a completion run. */
bool vp_vdev_poll(struct vp_vdev *d);
/* A batch of register accesses (the transport's messages of one
 * wake-up): the QueueNotify writes in it are merged, each notified queue
 * served once, before the next access of any other kind and at
 * vp_vdev_batch_end().  A guest that kicked twice before the server woke
 * then costs one pass over the queue, one submission to the storage and
 * one interrupt, not two of each; nothing else changes order. */
void vp_vdev_batch_begin(struct vp_vdev *d);
void vp_vdev_batch_end(struct vp_vdev *d);
/* Polled mode, while the server spins on this device (poll-us): draining
 * a queue leaves the driver's notifications off, so a busy guest need not
 * kick.  Turning it off asks for notifications again and serves whatever
 * arrived meanwhile. */
void vp_vdev_set_polled(struct vp_vdev *d, bool on);
/* True in polled mode (device types check it when a queue runs dry). */
bool vp_vdev_polled(const struct vp_vdev *d);
/* In polled mode, are completions sure to come that vp_vdev_poll() will
 * run (the poller then keeps the loop spinning longer: loop.h)? */
bool vp_vdev_awaiting(const struct vp_vdev *d);
/* Requests taken from the queues so far (vp_vdev_req_begin() calls). */
uint64_t vp_vdev_reqs_started(const struct vp_vdev *d);
/* Stop the device: no new requests are taken from queues.  done(arg) is
 * called (possibly inline) once every request in flight in a plugin has
 * completed; only then may guest memory and the plugin disk go away, and
 * the device is freed right after done() returns. */
void vp_vdev_destroy(struct vp_vdev *d, void (*done)(void *arg), void *arg);

/*
 * Device types (blk.c) plug in here, kvmtool's virtio_ops style.  The
 * transport part (registers, status, feature negotiation, queue setup)
 * lives in vdev.c; a type supplies its config space and handles
 * queue notifications.
 */
struct vp_vq;

struct vp_vdev_type {
	const char *name;   /* "blk", for log lines */
	uint32_t device_id; /* virtio device id (2: block) */
	/* Copy len bytes of config space at offset into buf (range already
	 * checked against config_len). */
	void (*config_read)(struct vp_vdev *d, uint32_t offset, void *buf,
			    unsigned len);
	/* Store a config write; 0 or -EINVAL (field not writable). NULL: the
	 * config space is read-only. */
	int (*config_write)(struct vp_vdev *d, uint32_t offset, const void *buf,
			    unsigned len);
	/* Take and handle the buffers of ready queue q.  Only called while
	 * the device runs (DRIVER_OK, not broken, not destroyed). */
	void (*queue_notify)(struct vp_vdev *d, unsigned q);
	/* The device is being reset or destroyed with requests in flight:
	 * ask their plugin to give them up early.  Must not finish a request
	 * from inside (completions come later).  May be NULL. */
	void (*cancel)(struct vp_vdev *d);
	/* Does queue q still have requests in flight?  QueueReady keeps
	 * reading 1 after the driver wrote 0 until it has none (MMIO:
	 * reading the 0 back is the driver's synchronisation).  May be NULL. */
	bool (*queue_busy)(struct vp_vdev *d, unsigned q);
	/* The driver reset the device; its queues are already torn down and
	 * no request is in flight any more.  May be NULL. */
	void (*reset)(struct vp_vdev *d);
	/* Polled mode (vp_vdev_set_polled): run the completions that are
	 * ready without waiting for their notification; true if any ran.
	 * May be NULL. */
	bool (*poll)(struct vp_vdev *d);
	/* Polled mode ends (or the device is destroyed in it): completions
	 * must notify again.  May be NULL. */
	void (*poll_end)(struct vp_vdev *d);
	/* Polled mode: will poll() surely find completions later (requests
	 * are out at storage that poll() reaps)?  May be NULL. */
	bool (*awaiting)(const struct vp_vdev *d);
	/* Free the type's private data: once, after vp_vdev_destroy(), when
	 * no request is in flight.  May be NULL. */
	void (*free)(struct vp_vdev *d);
};

/* Shape of one device, given to vp_vdev_new(). */
struct vp_vdev_params {
	/* Device feature bits offered.  The transport adds VERSION_1,
	 * RING_INDIRECT_DESC, RING_EVENT_IDX, and ACCESS_PLATFORM when guest
	 * memory is in grant mode. */
	uint64_t features;
	unsigned num_queues; /* 1..VP_VDEV_MAX_QUEUES */
	unsigned queue_max;  /* QueueNumMax: power of two, 2..VP_VQ_MAX_SIZE */
	uint32_t config_len; /* bytes of config space at 0x100, <= 0xf00 */
};

#define VP_VDEV_MAX_QUEUES 64u

/* Create a device of type with private data priv (owned by the type,
 * released through type->free).  host is copied.  NULL with errno set on
 * bad params or allocation failure. */
struct vp_vdev *vp_vdev_new(const struct vp_vdev_type *type,
			    const struct vp_vdev_params *params,
			    const struct vp_vdev_host *host, void *priv);
/* The type's private data. */
void *vp_vdev_priv(const struct vp_vdev *d);
/* The host the device was created with (the device's copy). */
const struct vp_vdev_host *vp_vdev_host(const struct vp_vdev *d);
/* Queue q (< num_queues), owned by the device. */
struct vp_vq *vp_vdev_vq(struct vp_vdev *d, unsigned q);
/* Number of queues the device has. */
unsigned vp_vdev_num_queues(const struct vp_vdev *d);
/* Features the driver accepted (valid once FEATURES_OK is set). */
uint64_t vp_vdev_features(const struct vp_vdev *d);
/* True while queues may be processed: FEATURES_OK and DRIVER_OK set, not
 * FAILED, not broken, not being reset or destroyed. */
bool vp_vdev_running(const struct vp_vdev *d);
/* Set bits in the interrupt status shadow and have the host notify. */
void vp_vdev_raise_irq(struct vp_vdev *d, uint32_t bits);
/* Log about this device ("dom D dev N: "), rate-limited per device. */
void vp_vdev_log(struct vp_vdev *d, enum vproxy_log_level level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* A request the device took from a queue is now in flight (in a plugin);
 * keeps a destroyed device alive until the matching vp_vdev_req_end(). */
void vp_vdev_req_begin(struct vp_vdev *d);
/* A request finished.  If the device was destroyed and this was the last
 * one, the type is freed, done() runs and d is freed: the caller must not
 * touch d or the type's data afterwards. */
void vp_vdev_req_end(struct vp_vdev *d);

#endif
