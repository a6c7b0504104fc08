/* SPDX-License-Identifier: MIT */
/*
 * The proxy stub: the guest end of one vproxy device.  It connects to the
 * backend through xenstore (the handshake in README.md), shares one ring
 * page and an event channel with it, and turns virtio-mmio register
 * accesses into ring messages (wire protocol: include/vproxy/proto.h).
 *
 * Portable: no allocation, no OS headers; everything system-specific goes
 * through struct vps_platform.  The caller owns struct vps_frontend (static,
 * on the heap, wherever) and keeps it in place from vps_attach() to
 * vps_detach().  One device is used by one thread at a time; different
 * devices are independent.
 */
#ifndef VPS_STUB_H
#define VPS_STUB_H

#include <stdbool.h>
#include <stdint.h>

#include "platform.h"
#include <vproxy/proto.h>

/* Requests the ring holds (128 for a 4 KiB page). */
#define VPS_RING_ENTRIES __CONST_RING_SIZE(vproxy, VPROXY_RING_BYTES)

/* virtio-mmio registers the stub serves locally from the page header. */
#define VPS_REG_INTERRUPT_STATUS VPROXY_REG_INTERRUPT_STATUS
#define VPS_REG_INTERRUPT_ACK VPROXY_REG_INTERRUPT_ACK

/* Called from vps_poll()/vps_wait() while the device's interrupt status is
 * nonzero; it reads InterruptStatus and writes InterruptACK like a virtio
 * driver's interrupt handler.  It may call vps_read()/vps_write(). */
typedef void (*vps_irq_fn)(void *arg);

struct vps_opts {
	uint64_t attach_timeout_ns; /* each handshake wait (default 10 s) */
	uint64_t close_timeout_ns;  /* waiting for backend Closed (default 5 s) */
	uint64_t read_timeout_ns;   /* a register read's answer (default 5 s) */
	uint64_t spin_ns;           /* busy-poll this long before sleeping in
	                             * reads and vps_wait (default 0) */
	int expect_backend;         /* fail unless backend-id is this; -1: any */
};

/* Counters, for tests and the bench. */
struct vps_stats {
	uint64_t reads;         /* register reads sent on the ring */
	uint64_t writes;        /* register writes sent on the ring */
	uint64_t local_reads;   /* InterruptStatus reads served locally */
	uint64_t local_acks;    /* InterruptACK writes served locally */
	uint64_t notifies;      /* event channel kicks sent to the backend */
	uint64_t sleeps;        /* platform wait() calls that slept */
	uint64_t ring_full;     /* times a request had to wait for a slot */
	uint64_t irq_calls;     /* interrupt handler invocations */
	uint64_t write_errors;  /* posted writes the backend refused */
	uint64_t read_timeouts; /* reads that got no answer in time */
};

/* The frontend of one device.  Every field is private to stub.c. */
struct vps_frontend {
	const struct vps_platform *p;
	unsigned devid;
	uint16_t be;        /* backend domid */
	int port;           /* event channel, -1 when none */
	void *page;         /* the shared page */
	uint64_t page_addr; /* its device address */
	struct vproxy_front_ring ring;
	struct vps_watch *be_watch; /* on be_path, for the device's life */
	vps_irq_fn irq_fn;
	void *irq_arg;
	struct vps_opts opts;
	bool attached;
	bool gone;     /* backend closed or broke the protocol */
	bool poisoned; /* vps_debug_overflow_ring() was used */
	bool awaiting; /* a read waits for response await_idx */
	bool await_done;
	uint8_t await_status;
	RING_IDX await_idx;
	uint64_t await_value;
	uint32_t shadow[VPS_RING_ENTRIES]; /* op << 16 | offset per slot */
	struct vps_stats stats;
	char fe_path[64];
	char be_path[128];
	char error[160];
};

/* Fill o with the defaults. */
void vps_opts_default(struct vps_opts *o);

/* List this guest's vproxy device ids (children of
 * /local/domain/<domid>/device/vproxy) into ids, at most max of them.
 * Number found (may exceed max), or -errno. */
int vps_list(const struct vps_platform *p, unsigned *ids, unsigned max);

/* Connect device devid: wait (opts->attach_timeout_ns per step) for the
 * device to appear and the backend to reach InitWait, share the ring page
 * and event channel, go Initialised, wait for Connected.  dev is filled
 * in; p must outlive it.  opts NULL = defaults.  0, -ETIMEDOUT, -ENODEV
 * (backend closed or reported an error: see vps_error()), or -errno. */
int vps_attach(struct vps_frontend *dev, const struct vps_platform *p, unsigned devid,
               const struct vps_opts *opts);

/* Close the connection (Closing, wait for backend Closed, Closed), revoke
 * the page and close the port.  Also for a device whose backend is gone.
 * 0, or -ETIMEDOUT if the backend never reached Closed (cleaned up anyway). */
int vps_detach(struct vps_frontend *dev);

/* Read a register (size 1, 2, 4; 8 for config space) and wait for the
 * answer.  On error *val is all-ones for size.  0, -EINVAL (bad
 * size/offset), -EIO (the backend refused the access), -ETIMEDOUT,
 * -ENODEV (backend gone), -EPIPE (ring poisoned). */
int vps_read(struct vps_frontend *dev, uint32_t offset, unsigned size, uint64_t *val);

/* Write a register; posted (does not wait for the answer; a refusal is
 * counted in stats.write_errors and logged).  0 or the errors of
 * vps_read() (-ETIMEDOUT: the ring stayed full). */
int vps_write(struct vps_frontend *dev, uint32_t offset, unsigned size, uint64_t val);

/* Change opts.spin_ns of an attached device. */
void vps_set_spin_ns(struct vps_frontend *dev, uint64_t spin_ns);

/* Register the interrupt handler (NULL to remove). */
void vps_set_irq_handler(struct vps_frontend *dev, vps_irq_fn fn, void *arg);

/* Consume answers; if the interrupt status is nonzero call the handler.
 * 1 if it was called (or the status is nonzero without a handler),
 * 0 if not, -ENODEV when the backend is gone. */
int vps_poll(struct vps_frontend *dev);

/* vps_poll(), sleeping on the event channel (and the backend's xenstore
 * state) until it returns nonzero or timeout_ns passes (then 0). */
int vps_wait(struct vps_frontend *dev, uint64_t timeout_ns);

/* Re-read the backend's state from xenstore now; marks the device gone
 * if the backend is Closing/Closed/removed.  0 or -ENODEV. */
int vps_check_backend(struct vps_frontend *dev);

/* True once the backend has gone away or broke the protocol. */
bool vps_is_gone(const struct vps_frontend *dev);

/* Why the device failed or went away ("" if it did not); owned by dev. */
const char *vps_error(const struct vps_frontend *dev);

/* The backend's domid (for dma_alloc()). */
uint16_t vps_backend_id(const struct vps_frontend *dev);

/* The platform the device was attached with. */
const struct vps_platform *vps_platform_of(const struct vps_frontend *dev);

/* Copy the counters. */
void vps_get_stats(const struct vps_frontend *dev, struct vps_stats *st);

/* Hostile mode for tests: publish a req_prod far beyond what the ring can
 * hold and notify.  The device accepts no more requests (-EPIPE); wait
 * with vps_wait() for the backend to close it. */
void vps_debug_overflow_ring(struct vps_frontend *dev);

#endif
