/* SPDX-License-Identifier: MIT */
/*
 * What the proxy stub needs from the system it runs on: guest memory the
 * backend can reach, event channels, xenstore, a clock and a log.  One
 * struct of function pointers, filled in by the platform (Linux userspace
 * on the sim host: linux/platform_sim.c; a Zephyr or kernel port writes
 * its own) and read by stub.c and guest/vblk.c.  See README.md.
 *
 * Threading: a platform must allow calls for different devices from
 * different threads at once; calls for one device come from one thread.
 */
#ifndef VPS_PLATFORM_H
#define VPS_PLATFORM_H

#include <stddef.h>
#include <stdint.h>

/* How device addresses (virtqueue addresses, descriptor addresses) name
 * guest memory: guest-physical (gfn << 12 | offset) or grant references
 * (VPROXY_GRANT_ADDR(gref, offset), consecutive refs across pages). */
enum vps_addr_mode { VPS_ADDR_GFN = 0, VPS_ADDR_GRANT = 1 };

enum vps_log_level { VPS_LOG_ERROR = 0, VPS_LOG_WARN, VPS_LOG_INFO, VPS_LOG_DEBUG };

/* Bits returned by wait(). */
#define VPS_WAKE_EVTCHN 0x1 /* the event channel fired (and was cleared) */
#define VPS_WAKE_WATCH 0x2  /* the watch fired (and was cleared) */

/* A xenstore watch, defined by each platform. */
struct vps_watch;

struct vps_platform {
	void *ctx;                    /* passed to every function below */
	uint16_t domid;               /* this guest's domain id */
	enum vps_addr_mode addr_mode; /* how device addresses are formed */

	/* --- memory the backend may access --- */
	/* Allocate bytes (rounded up to whole 4 KiB pages, page-aligned,
	 * zeroed, physically contiguous) and make it accessible to domain be
	 * read-write.  *dev_addr is the device address of its first byte: in
	 * gfn mode first_gfn << 12, in grant mode VPROXY_GRANT_ADDR(first
	 * gref, 0) with one consecutive ref per page.  NULL when out of
	 * memory or grants. */
	void *(*dma_alloc)(void *ctx, uint16_t be, size_t bytes, uint64_t *dev_addr);
	/* Revoke the backend's access and free memory from dma_alloc(). */
	void (*dma_free)(void *ctx, void *mem, size_t bytes);

	/* --- event channels --- */
	/* Allocate an unbound port for domain be. Port (>= 0) or -errno. */
	int (*evtchn_alloc)(void *ctx, uint16_t be);
	/* Notify the remote end of port. 0 or -errno. */
	int (*evtchn_notify)(void *ctx, int port);
	/* Close a port from evtchn_alloc(). */
	void (*evtchn_close)(void *ctx, int port);
	/* Sleep until port fires (port < 0: don't watch a port) or watch
	 * fires (NULL: none) or timeout_ns passes.  Clears what fired and
	 * returns VPS_WAKE_* bits, 0 on timeout, or -errno.  timeout_ns 0
	 * checks without sleeping. */
	int (*wait)(void *ctx, int port, struct vps_watch *watch, uint64_t timeout_ns);

	/* --- xenstore (tx 0 = outside a transaction) --- */
	/* Read path into buf (NUL-terminated, truncated to len - 1).
	 * Length of the value, -ENOENT if absent, or -errno. */
	int (*xs_read)(void *ctx, uint32_t tx, const char *path, char *buf, size_t len);
	/* Write value at path (creating it). 0 or -errno. */
	int (*xs_write)(void *ctx, uint32_t tx, const char *path, const char *value);
	/* List the children of path into buf as NUL-separated names.
	 * Number of names, -ENOENT if path is absent, -ENOSPC if buf is too
	 * small, or -errno. */
	int (*xs_list)(void *ctx, const char *path, char *buf, size_t len);
	/* Start a transaction; *tx is nonzero. 0 or -errno. */
	int (*xs_tx_begin)(void *ctx, uint32_t *tx);
	/* Commit (abort = 0) or abort a transaction. 0, -EAGAIN when the
	 * commit conflicted and must be retried, or -errno. */
	int (*xs_tx_end)(void *ctx, uint32_t tx, int abort);
	/* Watch path and everything below it.  The watch fires once right
	 * after it is set up, then on every change.  The platform owns
	 * *watch until xs_unwatch(). 0 or -errno. */
	int (*xs_watch)(void *ctx, const char *path, struct vps_watch **watch);
	/* Remove a watch from xs_watch(). */
	void (*xs_unwatch)(void *ctx, struct vps_watch *watch);

	/* --- misc --- */
	/* Monotonic time in nanoseconds. */
	uint64_t (*now_ns)(void *ctx);
	/* Print one log line (no trailing newline in msg). */
	void (*log)(void *ctx, enum vps_log_level level, const char *msg);
};

#endif
