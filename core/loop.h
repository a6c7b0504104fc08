/* SPDX-License-Identifier: MIT */
/*
 * The event loop: a dispatcher, not an owner.  Whoever has something to
 * serve registers it with a callback and an opaque pointer: a file
 * descriptor, an event channel port, or a poller that the loop calls while
 * it spins (the poll window, pollwin.h).  The loop knows nothing of what
 * it serves.
 *
 * Underneath is one libevent base (vp_loop_base): timers and deferred calls
 * are plain libevent events on it.
 */
#ifndef VP_LOOP_H
#define VP_LOOP_H

#include <stdbool.h>

struct event_base;
struct vp_hv;
struct vp_loop;
struct vp_loop_fd;

/* What the loop calls when an fd is readable or a port has an event. */
typedef void vp_loop_fn(void *opaque);

/* A new loop.  With poll_us > 0 it spins after work before sleeping:
 * poll_us long, or with adaptive set, as long as the gaps between events
 * warrant, at most poll_us (pollwin.h).  NULL on failure.  Free with
 * vp_loop_free(). */
struct vp_loop *vp_loop_new(unsigned poll_us, bool adaptive);
/* Free the loop and its base.  Every fd and port must be removed. */
void vp_loop_free(struct vp_loop *loop);
/* The libevent base underneath (owned by the loop). */
struct event_base *vp_loop_base(struct vp_loop *loop);

/* Call fn(opaque) whenever fd is readable.  The handle (owned by the
 * loop) goes with vp_loop_fd_remove(), which is safe inside fn.  NULL on
 * failure. */
struct vp_loop_fd *vp_loop_fd_add(struct vp_loop *loop, int fd, vp_loop_fn *fn,
                                  void *opaque);
/* Stop watching; f is freed.  NULL is fine. */
void vp_loop_fd_remove(struct vp_loop_fd *f);

/* Take event channel ports from hv: watch its fd, drain pending() per
 * wake-up, unmask() each port.  Once, before vp_loop_port_add().  0 or
 * -errno. */
int vp_loop_set_evtchn(struct vp_loop *loop, struct vp_hv *hv);
/* Call fn(opaque) for each event on local port.  0, -EINVAL or -ENOMEM. */
int vp_loop_port_add(struct vp_loop *loop, int port, vp_loop_fn *fn, void *opaque);
/* Forget port (events on it are dropped); safe inside any callback. */
void vp_loop_port_remove(struct vp_loop *loop, int port);

/* Something served by polling while the loop spins, instead of waiting
 * for notifications.  poll() serves what is there and returns true if it
 * found work; stop() is called when the spell ends and must ask for
 * notifications again (serving what raced in).  Fields after stop are the
 * loop's. */
struct vp_poller {
	bool (*poll)(struct vp_poller *p);
	void (*stop)(struct vp_poller *p);
	/* Set by poll(): work is sure to come that poll() will find (its
	 * disk's completions).  While any poller awaits, the spell lasts
	 * up to VP_LOOP_AWAIT_FACTOR windows' caps past the last work, not
	 * one window: waiting for what is certain is not speculation. */
	bool awaiting;
	struct vp_poller *next;
	bool queued;
};
#define VP_LOOP_AWAIT_FACTOR 4u
/* Poll p until the current spell ends.  False (p not added) when the
 * loop does not spin now (its poll window is 0) or loop is NULL. */
bool vp_loop_poller_add(struct vp_loop *loop, struct vp_poller *p);
/* Take p off the list without calling stop() (its owner goes away). */
void vp_loop_poller_remove(struct vp_loop *loop, struct vp_poller *p);
/* Stop spinning for good: end the spell now (stop() for every poller);
 * later vp_loop_poller_add() calls fail. */
void vp_loop_no_polling(struct vp_loop *loop);

/* The poll window now, in microseconds (rounded down). */
unsigned vp_loop_poll_window_us(const struct vp_loop *loop);

/* Dispatch until vp_loop_stop().  0, or -EIO if libevent failed. */
int vp_loop_run(struct vp_loop *loop);
/* Make vp_loop_run() return once the current callbacks finish. */
void vp_loop_stop(struct vp_loop *loop);
/* True once vp_loop_stop() was called. */
bool vp_loop_stopped(struct vp_loop *loop);

#endif
