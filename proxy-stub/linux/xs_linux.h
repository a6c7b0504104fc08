/* SPDX-License-Identifier: MIT */
/*
 * What the proxy stub's two Linux userspace platforms (the sim host's and
 * the Xen domU's) share: the xenstore half, on libxenstore (xs_open(0)
 * honours XENSTORED_PATH), and the clock, log and wait pieces.
 */
#ifndef VPROXY_XS_LINUX_H
#define VPROXY_XS_LINUX_H

#include <pthread.h>

#include "platform.h"

struct xs_handle;

/* A platform's xenstore connection.  It must be the FIRST member of the
 * struct the platform passes as ctx: the operations vps_xs_fill_ops()
 * installs read ctx as a struct vps_xs. */
struct vps_xs {
	/* The one connection: reads, writes, transactions and every watch
	 * of every device on the platform (libxenstore is thread-safe). */
	struct xs_handle *xs;
	unsigned watch_seq; /* makes watch tokens unique; atomic */
	/* The watches, for handing each event to its own waiter. */
	pthread_mutex_t lock;
	struct vps_watch *watches;
};

/* Connect. 0 or -errno. */
int vps_xs_open(struct vps_xs *x);
/* Disconnect (fine on a connection that never opened). */
void vps_xs_close(struct vps_xs *x);
/* Point plat's xs_read .. xs_unwatch at the libxenstore operations. */
void vps_xs_fill_ops(struct vps_platform *plat);
/* Consume every event pending on w. */
void vps_watch_drain(struct vps_watch *w);

/* The now_ns operation: CLOCK_MONOTONIC (ctx unused). */
uint64_t vps_linux_now_ns(void *ctx);
/* The log operation's body: "prog[pid]: level: msg" on stderr when level
 * is at most max. */
void vps_linux_log(const char *prog, enum vps_log_level max,
                   enum vps_log_level level, const char *msg);
/* The wait operation's sleep: up to timeout_ns for fd (skipped when < 0)
 * to become readable or w (when not NULL) to fire.  VPS_WAKE_EVTCHN when
 * fd is readable, VPS_WAKE_WATCH when w fired, 0 on timeout or a signal,
 * or -errno.  Events of other watches on the connection that arrive
 * meanwhile are handed to their own waiters without ending the wait.
 * The caller consumes fd's event, then drains w. */
int vps_linux_poll(int fd, struct vps_watch *w, uint64_t timeout_ns);

#endif
