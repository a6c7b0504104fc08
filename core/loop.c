/* SPDX-License-Identifier: MIT */
/*
 * The event loop (loop.h): fds, event channel ports and pollers, each
 * with its owner's callback; the polling spell, as long as the poll window
 * (pollwin.h) says.
 */
#include "loop.h"

#include <errno.h>
#include <event2/event.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hv.h"
#include "pollwin.h"

struct vp_loop_port {
	vp_loop_fn *fn; /* NULL: not registered */
	void *opaque;
};

struct vp_loop_fd {
	struct vp_loop *loop;
	struct event *ev;
	vp_loop_fn *fn;
	void *opaque;
};

struct vp_loop {
	struct event_base *base;
	struct vp_pollwin win;       /* how long a spell spins */
	bool asleep;                 /* in a blocking wait; the next event ends it */
	uint64_t last_work_ns;       /* when the loop last found work */
	uint64_t events;             /* fd and port events handled */
	struct vp_hv *hv; /* event channel source, or NULL */
	struct event *evtchn_ev;
	struct vp_loop_port *ports; /* indexed by local port */
	size_t nports;
	struct vp_poller *pollers;   /* polled while the loop spins */
	struct vp_poller *poll_next; /* the one run_pollers() calls next */
	bool stopped;
};

struct vp_loop *vp_loop_new(unsigned poll_us, bool adaptive)
{
	struct vp_loop *loop = calloc(1, sizeof(*loop));

	if (!loop)
		return NULL;
	if (adaptive)
		vp_pollwin_adaptive(&loop->win, (uint64_t)poll_us * 1000u);
	else
		vp_pollwin_fixed(&loop->win, (uint64_t)poll_us * 1000u);
	loop->base = event_base_new();
	if (!loop->base) {
		free(loop);
		return NULL;
	}
	return loop;
}

void vp_loop_free(struct vp_loop *loop)
{
	if (!loop)
		return;
	if (loop->evtchn_ev)
		event_free(loop->evtchn_ev);
	event_base_free(loop->base);
	free(loop->ports);
	free(loop);
}

struct event_base *vp_loop_base(struct vp_loop *loop)
{
	return loop->base;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* An event: if it ended a sleep, tell the poll window how long the gap
 * since the last work was. */
static void got_event(struct vp_loop *loop)
{
	loop->events++;
	if (loop->asleep) {
		loop->asleep = false;
		vp_pollwin_woke(&loop->win, now_ns() - loop->last_work_ns);
	}
}

static void fd_cb(evutil_socket_t fd, short what, void *arg)
{
	struct vp_loop_fd *f = arg;

	(void)fd;
	(void)what;
	got_event(f->loop);
	f->fn(f->opaque);
}

struct vp_loop_fd *vp_loop_fd_add(struct vp_loop *loop, int fd, vp_loop_fn *fn,
                                  void *opaque)
{
	struct vp_loop_fd *f = calloc(1, sizeof(*f));

	if (!f)
		return NULL;
	f->loop = loop;
	f->fn = fn;
	f->opaque = opaque;
	f->ev = event_new(loop->base, fd, EV_READ | EV_PERSIST, fd_cb, f);
	if (!f->ev || event_add(f->ev, NULL)) {
		if (f->ev)
			event_free(f->ev);
		free(f);
		return NULL;
	}
	return f;
}

void vp_loop_fd_remove(struct vp_loop_fd *f)
{
	if (!f)
		return;
	/* libevent lets a callback free its own event: fd_cb() does not
	 * touch f after fn() returns. */
	event_free(f->ev);
	free(f);
}

/* Every port shares one fd: drain all pending ports per wake-up. */
static void evtchn_cb(evutil_socket_t fd, short what, void *arg)
{
	struct vp_loop *loop = arg;
	struct vp_hv *hv = loop->hv;
	int port;

	(void)fd;
	(void)what;
	while ((port = hv->ops->evtchn_pending(hv)) >= 0) {
		struct vp_loop_port p = {0};

		if ((size_t)port < loop->nports)
			p = loop->ports[port];
		hv->ops->evtchn_unmask(hv, port);
		got_event(loop);
		if (p.fn)
			p.fn(p.opaque);
	}
}

int vp_loop_set_evtchn(struct vp_loop *loop, struct vp_hv *hv)
{
	if (loop->hv)
		return -EBUSY;
	loop->evtchn_ev = event_new(loop->base, hv->ops->evtchn_fd(hv),
	                            EV_READ | EV_PERSIST, evtchn_cb, loop);
	if (!loop->evtchn_ev)
		return -ENOMEM;
	if (event_add(loop->evtchn_ev, NULL)) {
		event_free(loop->evtchn_ev);
		loop->evtchn_ev = NULL;
		return -EIO;
	}
	loop->hv = hv;
	return 0;
}

int vp_loop_port_add(struct vp_loop *loop, int port, vp_loop_fn *fn, void *opaque)
{
	if (port < 0 || !fn)
		return -EINVAL;
	if ((size_t)port >= loop->nports) {
		size_t n = loop->nports ? loop->nports : 64;
		struct vp_loop_port *p;

		while (n <= (size_t)port)
			n *= 2;
		p = realloc(loop->ports, n * sizeof(*p));
		if (!p)
			return -ENOMEM;
		memset(p + loop->nports, 0, (n - loop->nports) * sizeof(*p));
		loop->ports = p;
		loop->nports = n;
	}
	loop->ports[port] = (struct vp_loop_port){fn, opaque};
	return 0;
}

void vp_loop_port_remove(struct vp_loop *loop, int port)
{
	if (port >= 0 && (size_t)port < loop->nports)
		loop->ports[port] = (struct vp_loop_port){0};
}

bool vp_loop_poller_add(struct vp_loop *loop, struct vp_poller *p)
{
	if (!loop || !loop->win.ns)
		return false;
	if (!p->queued) {
		p->next = loop->pollers;
		loop->pollers = p;
		p->queued = true;
	}
	return true;
}

void vp_loop_poller_remove(struct vp_loop *loop, struct vp_poller *p)
{
	struct vp_poller **pp;

	if (!loop || !p->queued)
		return;
	for (pp = &loop->pollers; *pp; pp = &(*pp)->next) {
		if (*pp == p) {
			*pp = p->next;
			break;
		}
	}
	if (loop->poll_next == p)
		loop->poll_next = p->next;
	p->queued = false;
	p->next = NULL;
}

/* Call every poller once; true if one found work.  A poller may add or
 * remove pollers (itself included) while it runs. */
static bool run_pollers(struct vp_loop *loop, bool *awaiting)
{
	bool worked = false;

	*awaiting = false;
	loop->poll_next = loop->pollers;
	while (loop->poll_next) {
		struct vp_poller *p = loop->poll_next;

		loop->poll_next = p->next;
		p->awaiting = false;
		worked |= p->poll(p);
		*awaiting |= p->awaiting;
	}
	return worked;
}

/* The spell is over: every poller asks for notifications again. */
static void stop_pollers(struct vp_loop *loop)
{
	while (loop->pollers) {
		struct vp_poller *p = loop->pollers;

		loop->pollers = p->next;
		p->queued = false;
		p->next = NULL;
		p->stop(p);
	}
}

void vp_loop_no_polling(struct vp_loop *loop)
{
	vp_pollwin_fixed(&loop->win, 0);
	stop_pollers(loop);
}

unsigned vp_loop_poll_window_us(const struct vp_loop *loop)
{
	return (unsigned)(loop->win.ns / 1000u);
}

static bool exiting(struct vp_loop *loop)
{
	return event_base_got_exit(loop->base) || event_base_got_break(loop->base);
}

/* In a spell whose pollers keep finding work, how often the fds (other
 * guests' event channels, disks' completions, xenstore) are still looked
 * at: a non-blocking epoll_wait per poller round would cost a system call
 * for every few requests, and waiting longer would delay the others. */
#define SPELL_FDS_NS 10000u

/*
 * With a poll window, every wake-up that handled events is followed by a
 * bounded spell of non-blocking polls: a guest that kicks again soon, or a
 * disk that completes soon, is served without the cost of a sleep and a
 * wake-up (tens of microseconds on virtual machines).  The spell ends one
 * window after the last event or poller work, so an idle loop sleeps and
 * uses no CPU.  The window is read each turn: an adaptive one follows the
 * gaps between events (pollwin.h), and vp_loop_no_polling() closes it for
 * good.
 */
int vp_loop_run(struct vp_loop *loop)
{
	while (!exiting(loop)) {
		uint64_t seen = loop->events, deadline, now, fds_at;
		bool worked;

		if (!vp_pollwin_enabled(&loop->win))
			return event_base_dispatch(loop->base) < 0 ? -EIO : 0;
		loop->asleep = true;
		if (event_base_loop(loop->base, EVLOOP_ONCE) < 0)
			return -EIO;
		loop->asleep = false;
		if (loop->events == seen && !loop->pollers)
			continue;
		now = now_ns();
		loop->last_work_ns = now;
		deadline = now + loop->win.ns;
		fds_at = 0;
		worked = false;
		while (!event_base_got_exit(loop->base) && loop->win.ns && now < deadline) {
			bool awaiting;

			seen = loop->events;
			/* While the pollers keep finding work, the fds (a
			 * system call) are looked at only every SPELL_FDS_NS. */
			if (!worked || now - fds_at >= SPELL_FDS_NS) {
				if (event_base_loop(loop->base, EVLOOP_NONBLOCK) < 0)
					return -EIO;
				fds_at = now;
			}
			worked = run_pollers(loop, &awaiting);
			now = now_ns();
			if (loop->events != seen || worked) {
				vp_pollwin_hit(&loop->win);
				loop->last_work_ns = now;
				deadline = now + loop->win.ns;
			}
			/* A disk's completions are sure to come: wait for them
			 * longer than for a guest's next request, which may
			 * not. */
			if (awaiting && deadline < loop->last_work_ns + loop->win.max_ns *
			                                                    VP_LOOP_AWAIT_FACTOR)
				deadline = loop->last_work_ns + loop->win.max_ns * VP_LOOP_AWAIT_FACTOR;
		}
		stop_pollers(loop);
	}
	stop_pollers(loop);
	return 0;
}

void vp_loop_stop(struct vp_loop *loop)
{
	loop->stopped = true;
	event_base_loopexit(loop->base, NULL);
}

bool vp_loop_stopped(struct vp_loop *loop)
{
	return loop->stopped;
}
