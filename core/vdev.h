/*
 * A virtio device behind the virtio-mmio v2 register model.  The transport
 * (transport.c) forwards register accesses here; the device raises
 * interrupts through its host.  Implemented in virtio_mmio.c (registers,
 * status, features, queues) with device types (blk.c) plugged in through
 * struct vp_vdev_type.
 */
#ifndef VP_VDEV_H
#define VP_VDEV_H

#include <stdbool.h>
#include <stdint.h>

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
/* Process all available buffers of every ready queue (used by pollers;
 * queue notifications call it per queue). */
void vp_vdev_poll(struct vp_vdev *d);
/* Stop the device: no new requests are taken from queues.  done(arg) is
 * called (possibly inline) once every request in flight in a plugin has
 * completed; only then may guest memory and the plugin disk go away, and
 * the device is freed right after done() returns. */
void vp_vdev_destroy(struct vp_vdev *d, void (*done)(void *arg), void *arg);

#endif
