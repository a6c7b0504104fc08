/* SPDX-License-Identifier: MIT */
/*
 * The event loop (core/loop.h) on its own: fds and event channel ports
 * dispatched to their callbacks, unregistration from inside a callback,
 * and pollers: the polling spell runs while it finds work, ends poll-us
 * after the last work with stop() for every poller, and survives pollers
 * removed in the middle of it.  Event channels come from a fake
 * hypervisor layer: an eventfd and a queue of pending ports.
 */
#include <check.h>
#include <errno.h>
#include <stdbool.h>
#include <event2/event.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "hv.h"
#include "loop.h"

/* ---- a hypervisor layer with nothing but event channels ---- */

#define MAX_PENDING 32

static struct {
	struct vp_hv base;
	int fd;
	int pending[MAX_PENDING];
	unsigned npending, next;
	unsigned unmasks;
} fhv;

static int f_evtchn_fd(struct vp_hv *hv)
{
	(void)hv;
	return fhv.fd;
}

static int f_evtchn_pending(struct vp_hv *hv)
{
	uint64_t v;

	(void)hv;
	if (fhv.next < fhv.npending)
		return fhv.pending[fhv.next++];
	fhv.next = fhv.npending = 0;
	if (read(fhv.fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		ck_abort_msg("eventfd read failed");
	return -1;
}

static int f_evtchn_unmask(struct vp_hv *hv, int port)
{
	(void)hv;
	(void)port;
	fhv.unmasks++;
	return 0;
}

static const struct vp_hv_ops fake_ops = {
        .name = "loop-test",
        .evtchn_fd = f_evtchn_fd,
        .evtchn_pending = f_evtchn_pending,
        .evtchn_unmask = f_evtchn_unmask,
};

/* The guest notifies port: pending() returns it at the next wake-up. */
static void kick(int port)
{
	uint64_t one = 1;

	ck_assert_uint_lt(fhv.npending, MAX_PENDING);
	fhv.pending[fhv.npending++] = port;
	ck_assert_int_eq(write(fhv.fd, &one, sizeof(one)), (int)sizeof(one));
}

static struct vp_loop *loop;

static void open_loop_mode(unsigned poll_us, bool adaptive)
{
	loop = vp_loop_new(poll_us, adaptive);
	ck_assert_ptr_nonnull(loop);
	ck_assert_int_eq(vp_loop_set_evtchn(loop, &fhv.base), 0);
}

static void open_loop(unsigned poll_us)
{
	open_loop_mode(poll_us, false);
}

static void setup(void)
{
	fhv = (__typeof__(fhv)){.base.ops = &fake_ops};
	fhv.fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	ck_assert_int_ge(fhv.fd, 0);
	loop = NULL;
}

static void teardown(void)
{
	vp_loop_free(loop);
	close(fhv.fd);
}

/* Dispatch what is ready now, a few rounds. */
static void turn(void)
{
	for (int i = 0; i < 4; i++)
		ck_assert_int_ge(event_base_loop(vp_loop_base(loop), EVLOOP_NONBLOCK), 0);
}

static uint64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* ---- fds ---- */

struct fd_probe {
	int fd;
	unsigned calls;
	struct vp_loop_fd *handle;
	bool remove_self;
	bool stop_loop;
};

static void fd_cb(void *opaque)
{
	struct fd_probe *p = opaque;
	char c;

	p->calls++;
	ck_assert_int_eq(read(p->fd, &c, 1), 1);
	if (p->remove_self) {
		vp_loop_fd_remove(p->handle);
		p->handle = NULL;
	}
	if (p->stop_loop)
		vp_loop_stop(loop);
}

START_TEST(fd_dispatch_and_run_stop)
{
	int fds[2];
	struct fd_probe p = {0};

	open_loop(0);
	ck_assert_int_eq(pipe(fds), 0);
	p.fd = fds[0];
	p.handle = vp_loop_fd_add(loop, fds[0], fd_cb, &p);
	ck_assert_ptr_nonnull(p.handle);
	turn();
	ck_assert_uint_eq(p.calls, 0); /* nothing to read yet */
	ck_assert_int_eq(write(fds[1], "ab", 2), 2);
	turn();
	ck_assert_uint_eq(p.calls, 2); /* persistent: once per byte here */
	/* vp_loop_run() dispatches until a callback stops it. */
	p.stop_loop = true;
	ck_assert(!vp_loop_stopped(loop));
	ck_assert_int_eq(write(fds[1], "c", 1), 1);
	ck_assert_int_eq(vp_loop_run(loop), 0);
	ck_assert_uint_eq(p.calls, 3);
	ck_assert(vp_loop_stopped(loop));
	vp_loop_fd_remove(p.handle);
	vp_loop_fd_remove(NULL);
	close(fds[0]);
	close(fds[1]);
}
END_TEST

START_TEST(fd_removed_inside_its_callback)
{
	int fds[2];
	struct fd_probe p = {.remove_self = true};

	open_loop(0);
	ck_assert_int_eq(pipe(fds), 0);
	p.fd = fds[0];
	p.handle = vp_loop_fd_add(loop, fds[0], fd_cb, &p);
	ck_assert_ptr_nonnull(p.handle);
	ck_assert_int_eq(write(fds[1], "ab", 2), 2);
	turn();
	/* Gone after the first call (ASan checks nothing touched it). */
	ck_assert_uint_eq(p.calls, 1);
	ck_assert_ptr_null(p.handle);
	close(fds[0]);
	close(fds[1]);
}
END_TEST

/* ---- event channel ports ---- */

struct port_probe {
	int port;
	unsigned calls;
	int remove_port; /* removed on the first call; -1: none */
};

static void port_cb(void *opaque)
{
	struct port_probe *p = opaque;

	p->calls++;
	if (p->remove_port >= 0) {
		vp_loop_port_remove(loop, p->remove_port);
		p->remove_port = -1;
	}
}

START_TEST(port_dispatch)
{
	struct port_probe a = {.port = 3, .remove_port = -1};
	struct port_probe b = {.port = 700, .remove_port = -1}; /* past the first table */

	open_loop(0);
	ck_assert_int_eq(vp_loop_set_evtchn(loop, &fhv.base), -EBUSY);
	ck_assert_int_eq(vp_loop_port_add(loop, -1, port_cb, &a), -EINVAL);
	ck_assert_int_eq(vp_loop_port_add(loop, 3, NULL, &a), -EINVAL);
	ck_assert_int_eq(vp_loop_port_add(loop, a.port, port_cb, &a), 0);
	ck_assert_int_eq(vp_loop_port_add(loop, b.port, port_cb, &b), 0);
	/* Several ports per wake-up, each to its own callback; a port
	 * nobody registered is unmasked and dropped. */
	kick(3);
	kick(700);
	kick(3);
	kick(41);
	turn();
	ck_assert_uint_eq(a.calls, 2);
	ck_assert_uint_eq(b.calls, 1);
	ck_assert_uint_eq(fhv.unmasks, 4);
	/* Removed: events are dropped, still unmasked. */
	vp_loop_port_remove(loop, 700);
	vp_loop_port_remove(loop, 100000); /* never registered: no-op */
	kick(700);
	turn();
	ck_assert_uint_eq(b.calls, 1);
	ck_assert_uint_eq(fhv.unmasks, 5);
	/* Registered again, to another owner. */
	ck_assert_int_eq(vp_loop_port_add(loop, 700, port_cb, &a), 0);
	kick(700);
	turn();
	ck_assert_uint_eq(a.calls, 3);
}
END_TEST

START_TEST(port_removed_inside_a_callback)
{
	struct port_probe a = {.port = 5, .remove_port = 6};
	struct port_probe b = {.port = 6, .remove_port = 6}; /* removes itself */
	struct port_probe c = {.port = 7, .remove_port = -1};

	open_loop(0);
	ck_assert_int_eq(vp_loop_port_add(loop, 5, port_cb, &a), 0);
	ck_assert_int_eq(vp_loop_port_add(loop, 6, port_cb, &b), 0);
	ck_assert_int_eq(vp_loop_port_add(loop, 7, port_cb, &c), 0);
	/* a removes 6 while 6's event waits in the same wake-up. */
	kick(5);
	kick(6);
	kick(7);
	turn();
	ck_assert_uint_eq(a.calls, 1);
	ck_assert_uint_eq(b.calls, 0);
	ck_assert_uint_eq(c.calls, 1);
	/* A callback removing its own port: called once, then no more. */
	c.remove_port = 7;
	kick(7);
	kick(7);
	turn();
	ck_assert_uint_eq(c.calls, 2);
}
END_TEST

/* ---- pollers and the polling spell ---- */

struct poller_probe {
	struct vp_poller p;
	unsigned polls, stops;
	unsigned work;               /* polls that still find work */
	uint64_t last_work_us;       /* when the last work was found */
	uint64_t stop_us;            /* when stop() was called */
	struct poller_probe *victim; /* removed by our first poll */
	bool stop_loop;              /* stop() stops the loop */
};

static bool probe_poll(struct vp_poller *vp)
{
	struct poller_probe *p = (struct poller_probe *)vp;

	p->polls++;
	ck_assert(p->p.queued);
	if (p->victim) {
		vp_loop_poller_remove(loop, &p->victim->p);
		p->victim = NULL;
	}
	if (!p->work)
		return false;
	p->work--;
	p->last_work_us = now_us();
	return true;
}

static void probe_stop(struct vp_poller *vp)
{
	struct poller_probe *p = (struct poller_probe *)vp;

	p->stops++;
	p->stop_us = now_us();
	ck_assert(!p->p.queued);
	if (p->stop_loop)
		vp_loop_stop(loop);
}

static void probe_init(struct poller_probe *p)
{
	*p = (struct poller_probe){.p = {.poll = probe_poll, .stop = probe_stop}};
}

/* A kick on the port puts the pollers on the loop, as a transport does. */
static struct poller_probe *to_add[2];

static void add_pollers_cb(void *opaque)
{
	(void)opaque;
	for (unsigned i = 0; i < 2; i++)
		if (to_add[i])
			ck_assert(vp_loop_poller_add(loop, &to_add[i]->p));
}

#define POLL_US 20000u

START_TEST(spell_runs_while_work_then_ends)
{
	struct poller_probe a;
	uint64_t t0;

	probe_init(&a);
	a.work = 50;
	a.stop_loop = true;
	to_add[0] = &a;
	to_add[1] = NULL;
	open_loop(POLL_US);
	ck_assert_int_eq(vp_loop_port_add(loop, 1, add_pollers_cb, NULL), 0);
	kick(1);
	t0 = now_us();
	ck_assert_int_eq(vp_loop_run(loop), 0);
	/* Polled while it found work and on after it, then stopped once,
	 * no sooner than poll-us after the last work. */
	ck_assert_uint_gt(a.polls, 50);
	ck_assert_uint_eq(a.work, 0);
	ck_assert_uint_eq(a.stops, 1);
	ck_assert(!a.p.queued);
	ck_assert_uint_ge(a.stop_us - a.last_work_us, POLL_US);
	ck_assert_uint_ge(a.stop_us - t0, POLL_US);
}
END_TEST

/* A poller that always finds work must not keep fd events waiting: the
 * spell still looks at the fds (every SPELL_FDS_NS). */
static int busy_pipe[2];
static unsigned busy_polls_at_fd;
static struct poller_probe *busy;

static bool busy_poll(struct vp_poller *vp)
{
	struct poller_probe *p = (struct poller_probe *)vp;

	if (p->polls == 5)
		ck_assert_int_eq(write(busy_pipe[1], "x", 1), 1);
	return probe_poll(vp);
}

static void busy_fd_cb(void *opaque)
{
	struct fd_probe *f = opaque;
	char c;

	f->calls++;
	ck_assert_int_eq(read(f->fd, &c, 1), 1);
	busy_polls_at_fd = busy->polls;
}

START_TEST(busy_pollers_do_not_starve_fds)
{
	struct fd_probe f = {0};
	struct poller_probe a;

	probe_init(&a);
	a.p.poll = busy_poll;
	a.work = 100000; /* far longer than SPELL_FDS_NS */
	a.stop_loop = true;
	busy = &a;
	to_add[0] = &a;
	to_add[1] = NULL;
	open_loop(POLL_US);
	ck_assert_int_eq(pipe(busy_pipe), 0);
	f.fd = busy_pipe[0];
	f.handle = vp_loop_fd_add(loop, busy_pipe[0], busy_fd_cb, &f);
	ck_assert_int_eq(vp_loop_port_add(loop, 1, add_pollers_cb, NULL), 0);
	kick(1);
	ck_assert_int_eq(vp_loop_run(loop), 0);
	ck_assert_uint_eq(f.calls, 1);
	/* Served while the poller still had work, long before its end. */
	ck_assert_uint_gt(busy_polls_at_fd, 5);
	ck_assert_uint_lt(busy_polls_at_fd, 50000);
	ck_assert_uint_eq(a.work, 0);
	vp_loop_fd_remove(f.handle);
	close(busy_pipe[0]);
	close(busy_pipe[1]);
}
END_TEST

/* A poller whose disk has a request out: it awaits a completion that
 * comes late_us after the spell began, later than one window. */
struct awaiter {
	struct poller_probe probe;
	uint64_t begin_us, late_us;
	bool taken; /* the completion was found */
	bool forever; /* awaits and never gets it */
};

static bool awaiter_poll(struct vp_poller *vp)
{
	struct awaiter *a = (struct awaiter *)vp;

	a->probe.polls++;
	if (!a->begin_us)
		a->begin_us = now_us();
	if (a->forever) {
		vp->awaiting = true;
		return false;
	}
	if (a->taken)
		return false;
	if (now_us() - a->begin_us < a->late_us) {
		vp->awaiting = true;
		return false;
	}
	a->taken = true;
	a->probe.last_work_us = now_us();
	return true;
}

static struct awaiter *to_await;

static void add_awaiter_cb(void *opaque)
{
	(void)opaque;
	ck_assert(vp_loop_poller_add(loop, &to_await->probe.p));
}

#define AWAIT_WIN_US 2000u

START_TEST(spell_waits_longer_for_awaited_completions)
{
	struct awaiter a = {.late_us = 2 * AWAIT_WIN_US};

	probe_init(&a.probe);
	a.probe.p.poll = awaiter_poll;
	a.probe.stop_loop = true;
	to_await = &a;
	open_loop(AWAIT_WIN_US);
	ck_assert_int_eq(vp_loop_port_add(loop, 1, add_awaiter_cb, NULL), 0);
	kick(1);
	ck_assert_int_eq(vp_loop_run(loop), 0);
	/* Found in the one spell, two windows in: it was awaited. */
	ck_assert(a.taken);
	ck_assert_uint_eq(a.probe.stops, 1);
	ck_assert_uint_ge(a.probe.last_work_us - a.begin_us, 2 * AWAIT_WIN_US);
	/* After it, an ordinary window. */
	ck_assert_uint_ge(a.probe.stop_us - a.probe.last_work_us, AWAIT_WIN_US);
}
END_TEST

START_TEST(awaiting_is_bounded)
{
	struct awaiter a = {.forever = true};

	probe_init(&a.probe);
	a.probe.p.poll = awaiter_poll;
	a.probe.stop_loop = true;
	to_await = &a;
	open_loop(AWAIT_WIN_US);
	ck_assert_int_eq(vp_loop_port_add(loop, 1, add_awaiter_cb, NULL), 0);
	kick(1);
	ck_assert_int_eq(vp_loop_run(loop), 0);
	/* A disk that never completes: the loop still goes to sleep,
	 * VP_LOOP_AWAIT_FACTOR windows after the spell's last work. */
	ck_assert_uint_eq(a.probe.stops, 1);
	ck_assert_uint_ge(a.probe.stop_us - a.begin_us,
	                  VP_LOOP_AWAIT_FACTOR * AWAIT_WIN_US - AWAIT_WIN_US / 10);
}
END_TEST

static struct poller_probe *fd_adds;

static void fd_adds_poller_cb(void *opaque)
{
	struct fd_probe *p = opaque;
	char c;

	p->calls++;
	ck_assert_int_eq(read(p->fd, &c, 1), 1);
	ck_assert(vp_loop_poller_add(loop, &fd_adds->p));
}

START_TEST(fd_event_starts_a_spell)
{
	int fds[2];
	struct fd_probe f = {0};
	struct poller_probe a;

	/* An fd event (a disk's completions) starts a spell too, so what its
	 * callback queued is polled until the spell ends. */
	probe_init(&a);
	a.work = 3;
	a.stop_loop = true;
	fd_adds = &a;
	open_loop(POLL_US);
	ck_assert_int_eq(pipe(fds), 0);
	f.fd = fds[0];
	f.handle = vp_loop_fd_add(loop, fds[0], fd_adds_poller_cb, &f);
	ck_assert_int_eq(write(fds[1], "x", 1), 1);
	ck_assert_int_eq(vp_loop_run(loop), 0);
	ck_assert_uint_eq(f.calls, 1);
	ck_assert_uint_gt(a.polls, 3);
	ck_assert_uint_eq(a.stops, 1);
	ck_assert_uint_ge(a.stop_us - a.last_work_us, POLL_US);
	vp_loop_fd_remove(f.handle);
	close(fds[0]);
	close(fds[1]);
}
END_TEST

START_TEST(poller_removed_mid_spell)
{
	struct poller_probe a, b;

	probe_init(&a);
	probe_init(&b);
	/* b is added last, so polled first; it removes a (next in line)
	 * before a was ever polled. */
	a.work = 5;
	b.work = 20;
	b.victim = &a;
	b.stop_loop = true;
	to_add[0] = &a;
	to_add[1] = &b;
	open_loop(POLL_US);
	ck_assert_int_eq(vp_loop_port_add(loop, 1, add_pollers_cb, NULL), 0);
	kick(1);
	ck_assert_int_eq(vp_loop_run(loop), 0);
	ck_assert_uint_eq(a.polls, 0);
	ck_assert_uint_eq(a.stops, 0); /* removed: no stop() */
	ck_assert(!a.p.queued);
	ck_assert_uint_gt(b.polls, 20);
	ck_assert_uint_eq(b.stops, 1);
}
END_TEST

static bool remove_self_poll(struct vp_poller *vp)
{
	probe_poll(vp);
	vp_loop_poller_remove(loop, vp);
	return true;
}

START_TEST(poller_removes_itself)
{
	struct poller_probe a, b;

	probe_init(&a);
	probe_init(&b);
	a.p.poll = remove_self_poll;
	a.work = 1000;
	b.stop_loop = true;
	to_add[0] = &b;
	to_add[1] = &a;
	open_loop(POLL_US);
	ck_assert_int_eq(vp_loop_port_add(loop, 1, add_pollers_cb, NULL), 0);
	kick(1);
	ck_assert_int_eq(vp_loop_run(loop), 0);
	ck_assert_uint_eq(a.polls, 1);
	ck_assert_uint_eq(a.stops, 0);
	ck_assert_uint_ge(b.polls, 1); /* the rest of the list still polled */
	ck_assert_uint_eq(b.stops, 1);
}
END_TEST

START_TEST(polling_off)
{
	struct poller_probe a;

	probe_init(&a);
	/* poll-us 0: nothing is polled. */
	open_loop(0);
	ck_assert(!vp_loop_poller_add(loop, &a.p));
	ck_assert(!vp_loop_poller_add(NULL, &a.p));
	ck_assert(!a.p.queued);
	vp_loop_free(loop);
	/* vp_loop_no_polling() ends the spell now and for good. */
	open_loop(POLL_US);
	ck_assert(vp_loop_poller_add(loop, &a.p));
	ck_assert(vp_loop_poller_add(loop, &a.p)); /* twice: queued once */
	vp_loop_no_polling(loop);
	ck_assert_uint_eq(a.stops, 1);
	ck_assert(!a.p.queued);
	ck_assert(!vp_loop_poller_add(loop, &a.p));
	vp_loop_poller_remove(loop, &a.p); /* not queued: no-op */
	ck_assert_uint_eq(a.stops, 1);
}
END_TEST

static void stop_cb(void *opaque)
{
	vp_loop_stop(opaque);
}

START_TEST(stop_inside_spell_ends_it)
{
	struct poller_probe a;

	/* A port callback stops the loop while pollers are queued: run
	 * returns, and every poller was asked for notifications again. */
	probe_init(&a);
	a.work = 1000000; /* would spin for ever */
	to_add[0] = &a;
	to_add[1] = NULL;
	open_loop(POLL_US);
	ck_assert_int_eq(vp_loop_port_add(loop, 1, add_pollers_cb, NULL), 0);
	ck_assert_int_eq(vp_loop_port_add(loop, 2, stop_cb, loop), 0);
	kick(1);
	kick(2);
	ck_assert_int_eq(vp_loop_run(loop), 0);
	ck_assert_uint_eq(a.stops, 1);
	ck_assert(!a.p.queued);
}
END_TEST

/* ---- the adaptive poll window ---- */

/* A timer kicks port 1: `fast` kicks 1 ms apart (within the cap), then
 * `slow` kicks 60 ms apart (beyond it), then it stops the loop.  The
 * window is recorded when the fast kicks are done. */
struct kicker {
	struct event *ev;
	unsigned fast, slow;
	unsigned seen;
	unsigned win_after_fast;
};

static void kicker_arm(struct kicker *k, unsigned every_us)
{
	struct timeval tv = {every_us / 1000000u, every_us % 1000000u};

	event_del(k->ev);
	ck_assert_int_eq(event_add(k->ev, &tv), 0);
}

static void kicker_cb(evutil_socket_t fd, short what, void *arg)
{
	struct kicker *k = arg;

	(void)fd;
	(void)what;
	if (k->fast) {
		k->fast--;
		kick(1);
		return;
	}
	if (k->slow) {
		if (!k->win_after_fast) {
			k->win_after_fast = vp_loop_poll_window_us(loop) + 1;
			kicker_arm(k, 60000);
		}
		k->slow--;
		kick(1);
		return;
	}
	event_del(k->ev);
	vp_loop_stop(loop);
}

static void count_cb(void *opaque)
{
	((struct kicker *)opaque)->seen++;
}

#define CAP_US 20000u

START_TEST(adaptive_window_follows_the_gaps)
{
	struct kicker k = {.fast = 30, .slow = 16};
	unsigned win;

	/* Closed at first. */
	open_loop_mode(CAP_US, true);
	ck_assert_uint_eq(vp_loop_poll_window_us(loop), 0);
	ck_assert_int_eq(vp_loop_port_add(loop, 1, count_cb, &k), 0);
	k.ev = event_new(vp_loop_base(loop), -1, EV_PERSIST, kicker_cb, &k);
	ck_assert_ptr_nonnull(k.ev);
	kicker_arm(&k, 1000);
	ck_assert_int_eq(vp_loop_run(loop), 0);
	event_free(k.ev);
	ck_assert_uint_eq(k.seen, 30 + 16);
	/* Kicks 1 ms apart: the window opened and grew until a spell
	 * outlasted the gap (then the loop stopped sleeping between kicks,
	 * and it stayed), never past the cap. */
	win = k.win_after_fast - 1;
	ck_assert_uint_ge(win, 1000);
	ck_assert_uint_le(win, CAP_US);
	/* Kicks 60 ms apart: every sleep halved it, down to 0. */
	ck_assert_uint_eq(vp_loop_poll_window_us(loop), 0);
}
END_TEST

START_TEST(adaptive_window_closed_takes_no_poller)
{
	struct poller_probe a;

	probe_init(&a);
	open_loop_mode(CAP_US, true);
	/* An adaptive loop that has not grown a window does not spin. */
	ck_assert(!vp_loop_poller_add(loop, &a.p));
	ck_assert(!a.p.queued);
}
END_TEST

static Suite *loop_suite(void)
{
	Suite *s = suite_create("loop");
	TCase *tc = tcase_create("core");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, fd_dispatch_and_run_stop);
	tcase_add_test(tc, fd_removed_inside_its_callback);
	tcase_add_test(tc, port_dispatch);
	tcase_add_test(tc, port_removed_inside_a_callback);
	tcase_add_test(tc, spell_runs_while_work_then_ends);
	tcase_add_test(tc, fd_event_starts_a_spell);
	tcase_add_test(tc, busy_pollers_do_not_starve_fds);
	tcase_add_test(tc, spell_waits_longer_for_awaited_completions);
	tcase_add_test(tc, awaiting_is_bounded);
	tcase_add_test(tc, poller_removed_mid_spell);
	tcase_add_test(tc, poller_removes_itself);
	tcase_add_test(tc, polling_off);
	tcase_add_test(tc, stop_inside_spell_ends_it);
	tcase_add_test(tc, adaptive_window_follows_the_gaps);
	tcase_add_test(tc, adaptive_window_closed_takes_no_poller);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(loop_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
