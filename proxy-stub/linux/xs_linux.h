/*
 * The xenstore half of the proxy stub's Linux userspace platforms (the sim
 * host's and the Xen domU's), on libxenstore.  xs_open(0) honours
 * XENSTORED_PATH.
 */
#ifndef VPROXY_XS_LINUX_H
#define VPROXY_XS_LINUX_H

#include "platform.h"

struct xs_handle;

/* A platform's xenstore connection.  It must be the FIRST member of the
 * struct the platform passes as ctx: the operations vps_xs_fill_ops()
 * installs read ctx as a struct vps_xs. */
struct vps_xs {
	struct xs_handle *xs; /* reads, writes, transactions (thread-safe) */
	unsigned watch_seq;   /* makes watch tokens unique; atomic */
};

/* Connect. 0 or -errno. */
int vps_xs_open(struct vps_xs *x);
/* Disconnect (fine on a connection that never opened). */
void vps_xs_close(struct vps_xs *x);
/* Point plat's xs_read .. xs_unwatch at the libxenstore operations. */
void vps_xs_fill_ops(struct vps_platform *plat);
/* The fd that becomes readable when watch w fires (a connection of its
 * own, so one waiter's events never wake another). */
int vps_watch_fd(const struct vps_watch *w);
/* Consume every event pending on w. */
void vps_watch_drain(struct vps_watch *w);

#endif
