/* SPDX-License-Identifier: MIT */
/*
 * The "sim" hypervisor layer: no Xen.  Each guest is a process running
 * proxy-stub/linux/simguest.c; on first use of domain D we connect to
 * <run_dir>/dom<D>.sock and receive its RAM and grant table as memfds and,
 * per bound port, a kick eventfd and an irq socket (wire format and its
 * rules: vproxy/simwire.h).
 *
 * The guest is untrusted, and nothing it does may block the server, which
 * serves every other guest from the same thread:
 *  - the conversation is asynchronous: HELLO and BIND are sent without
 *    waiting (MSG_DONTWAIT), replies are read only when the socket is
 *    readable, a whole SOCK_SEQPACKET record at a time, and a timerfd in
 *    our epoll set enforces each request's deadline;
 *  - the guest shares the open file descriptions of its event channel
 *    descriptors with us, so their O_NONBLOCK flag is its to clear: we
 *    never rely on it.  Kick eventfds are read with preadv2(RWF_NOWAIT)
 *    (EAGAIN on a zero counter whatever the flag says); interrupts go out
 *    with send(MSG_DONTWAIT) on a datagram socket (the flag is per call);
 *  - every field, descriptor and size it sends is checked, and its memfds
 *    must be sealed against shrinking (so our mappings can never SIGBUS).
 *
 * Limits of the simulation: pointers into the RAM mapping are always
 * writable (read-only is only enforced for page-by-page mappings), and a
 * grant is checked when it is mapped, not while it stays mapped.
 *
 * Not thread-safe: one event-loop thread owns the handle.
 *
 * The files: this one has the ops table, the port table and the event
 * channels; hv_sim_wire.c the connection to each guest and the
 * conversation; hv_sim_mem.c guest memory; hv_sim.h the state they share.
 */
#include "hv_sim.h"
#include "hv_sim_mem.h"
#include "hv_sim_wire.h"
#include "log.h"

#include <vproxy/simwire.h>

#include <endian.h>
#include <errno.h>
#include <linux/sockios.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

static const struct vp_hv_ops sim_ops;

/* --- ports --- */

static struct sim_port *sim_port_get(struct sim_hv *s, int port)
{
	if (port <= 0 || (unsigned)port >= s->nports ||
	    s->ports[port].state == SIM_PORT_FREE)
		return NULL;
	return &s->ports[port];
}

void vp_sim_port_close_fds(struct sim_hv *s, struct sim_port *p)
{
	if (p->kick_fd >= 0) {
		if (p->state == SIM_PORT_BOUND)
			epoll_ctl(s->epfd, EPOLL_CTL_DEL, p->kick_fd, NULL);
		close(p->kick_fd);
	}
	if (p->irq_fd >= 0)
		close(p->irq_fd);
	p->kick_fd = p->irq_fd = -1;
	p->notify_pending = false;
}

static int sim_port_alloc(struct sim_hv *s)
{
	unsigned port, want;
	struct sim_port *grown;

	for (port = 1; port < s->nports; port++)
		if (s->ports[port].state == SIM_PORT_FREE)
			return (int)port;
	want = s->nports ? s->nports * 2 : 64;
	if (want > SIM_MAX_PORTS)
		want = SIM_MAX_PORTS;
	if (port >= want)
		return -ENOSPC;
	grown = realloc(s->ports, want * sizeof(*grown));
	if (!grown)
		return -ENOMEM;
	for (unsigned i = s->nports; i < want; i++)
		grown[i] = (struct sim_port){.state = SIM_PORT_FREE, .kick_fd = -1, .irq_fd = -1};
	s->ports = grown;
	s->nports = want;
	return (int)port;
}

/* Raise an interrupt on a bound port.  The irq socket's file description
 * is shared with the guest, so its O_NONBLOCK is the guest's to clear:
 * MSG_DONTWAIT makes this one send non-blocking whatever it says.  While
 * the last datagram is still unread (SIOCOUTQ, our own send queue), the
 * event is pending already and nothing is sent: one datagram per port at
 * most sits in the guest's queue, as a pending bit. */
int vp_sim_irq_send(struct sim_port *p)
{
	const uint64_t one = htole64(1);
	int unread = 0;

	if (ioctl(p->irq_fd, SIOCOUTQ, &unread) == 0 && unread > 0)
		return 0;
	if (send(p->irq_fd, &one, sizeof(one), MSG_DONTWAIT | MSG_NOSIGNAL) ==
	    (ssize_t)sizeof(one))
		return 0;
	/* EAGAIN: the guest's queue or our buffer is full, so an event is
	 * pending already. */
	return (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : -errno;
}

/* Read a kick eventfd.  RWF_NOWAIT fails with EAGAIN when the counter is
 * 0 even if the guest cleared O_NONBLOCK on the shared file description
 * and drained the counter after epoll said it was readable.  True when
 * there was a kick. */
static bool sim_kick_read(int fd)
{
	uint64_t counter;
	struct iovec iov = {.iov_base = &counter, .iov_len = sizeof(counter)};

	return preadv2(fd, &iov, 1, -1, RWF_NOWAIT) == (ssize_t)sizeof(counter);
}

/* --- event channels --- */

static int sim_evtchn_fd(struct vp_hv *hv)
{
	return vp_sim_of(hv)->epfd;
}

/* Send BIND and return a local port at once; it is "binding" until the
 * reply is in (sim_bind_reply, hv_sim_wire.c). */
static int sim_evtchn_bind(struct vp_hv *hv, uint16_t dom, uint32_t remote_port)
{
	struct sim_hv *s = vp_sim_of(hv);
	struct sim_dom *d;
	int err, port;

	d = vp_sim_dom_get(s, dom, &err);
	if (!d)
		return err;
	/* While the handshake runs, BIND goes out after HELLO. */
	err = vp_sim_dom_err(d);
	if (err && err != -EAGAIN)
		return err;
	if (d->req_count == SIM_MAX_INFLIGHT)
		return -EBUSY;
	port = sim_port_alloc(s);
	if (port < 0)
		return port;
	err = vp_sim_send_bind(d->sock, remote_port);
	if (err) {
		vp_sim_dom_kill(s, d, err,
				err == -EAGAIN ? "it does not read its socket"
					       : strerror(-err));
		return err == -EAGAIN ? -ETIMEDOUT : err;
	}
	s->ports[port] = (struct sim_port){.state = SIM_PORT_BINDING,
					   .dom = dom,
					   .remote_port = remote_port,
					   .kick_fd = -1,
					   .irq_fd = -1};
	vp_sim_req_push(s, d, VP_SIMWIRE_BIND, remote_port, port);
	return port;
}

static int sim_evtchn_notify(struct vp_hv *hv, int port)
{
	struct sim_port *p = sim_port_get(vp_sim_of(hv), port);

	if (!p || p->state == SIM_PORT_FORGOTTEN)
		return -ENOENT;
	if (p->state == SIM_PORT_DEAD)
		return -ENOTCONN;
	if (p->state == SIM_PORT_BINDING) {
		/* Delivered when the BIND reply brings the irq socket. */
		p->notify_pending = true;
		return 0;
	}
	return vp_sim_irq_send(p);
}

static int sim_evtchn_pending(struct vp_hv *hv)
{
	struct sim_hv *s = vp_sim_of(hv);
	int rounds = 0;

	for (;;) {
		const struct epoll_event *ev;
		struct sim_port *p;
		int port;

		if (s->ev_next >= s->ev_count) {
			int n;

			s->ev_next = s->ev_count = 0;
			if (rounds++ == SIM_PENDING_ROUNDS)
				return -1;
			n = epoll_wait(s->epfd, s->ev, SIM_EVENT_BATCH, 0);
			if (n <= 0)
				return -1;
			s->ev_count = n;
		}
		ev = &s->ev[s->ev_next++];
		if (ev->data.u64 == SIM_TIMER_TAG) {
			vp_sim_timer_expired(s);
			continue;
		}
		if (ev->data.u64 & SIM_SOCK_TAG) {
			vp_sim_dom_readable(s, (uint16_t)ev->data.u64);
			continue;
		}
		/* The batch may be stale: the port may have been unbound,
		 * killed or forgotten since, and its slot reused. */
		port = (int)ev->data.u64;
		p = sim_port_get(s, port);
		if (!p || p->state != SIM_PORT_BOUND)
			continue;
		if (sim_kick_read(p->kick_fd))
			return port;
	}
}

static int sim_evtchn_unmask(struct vp_hv *hv, int port)
{
	struct sim_port *p = sim_port_get(vp_sim_of(hv), port);

	/* Kicks are counted in the eventfd, nothing is ever masked. */
	if (!p || p->state == SIM_PORT_FORGOTTEN)
		return -ENOENT;
	return 0;
}

static int sim_evtchn_unbind(struct vp_hv *hv, int port)
{
	struct sim_hv *s = vp_sim_of(hv);
	struct sim_port *p = sim_port_get(s, port);
	struct sim_dom *d;
	int err = 0;

	if (!p)
		return -ENOENT;
	d = vp_sim_dom_find(s, p->dom);
	if (p->state == SIM_PORT_BOUND && d && d->state == SIM_DOM_LIVE)
		vp_sim_send_unbind(d->sock, p->remote_port);
	if (d) {
		/* A BIND for it may still be out: its reply's descriptors will
		 * be closed and the guest told (sim_bind_reply, hv_sim_wire.c),
		 * whoever gets the port number next. */
		for (unsigned i = 0; i < d->req_count; i++) {
			struct sim_req *r = &d->req[(d->req_head + i) % SIM_MAX_INFLIGHT];

			if (r->type == VP_SIMWIRE_BIND && r->port == port)
				r->port = -1;
		}
	}
	/* A forgotten port's number is released all the same. */
	if (p->state == SIM_PORT_FORGOTTEN)
		err = -ENOENT;
	vp_sim_port_close_fds(s, p);
	p->state = SIM_PORT_FREE;
	return err;
}

/* --- domains and the handle --- */

static int sim_domain_ready(struct vp_hv *hv, uint16_t dom)
{
	struct sim_hv *s = vp_sim_of(hv);
	struct sim_dom *d;
	int err = 0;

	d = vp_sim_dom_get(s, dom, &err);
	if (!d)
		return err;
	err = vp_sim_dom_err(d);
	if (err != -EAGAIN)
		return err;
	d->waited = true;
	return -EINPROGRESS;
}

static void sim_forget_domain(struct vp_hv *hv, uint16_t dom)
{
	struct sim_hv *s = vp_sim_of(hv);
	struct sim_dom **pp, *d = NULL;

	for (pp = &s->doms; *pp; pp = &(*pp)->next) {
		if ((*pp)->domid == dom) {
			d = *pp;
			*pp = d->next;
			break;
		}
	}
	/* First the socket and the requests in flight (binding ports die),
	 * then every port of the domain is forgotten. */
	if (d)
		vp_sim_dom_hang_up(s, d);
	for (unsigned i = 1; i < s->nports; i++) {
		struct sim_port *p = &s->ports[i];

		if (p->state != SIM_PORT_FREE && p->state != SIM_PORT_FORGOTTEN &&
		    p->dom == dom) {
			vp_sim_port_close_fds(s, p);
			p->state = SIM_PORT_FORGOTTEN;
		}
	}
	if (!d)
		return;
	/* Whoever waits for the handshake asks again (and gets a new one). */
	vp_sim_dom_settled(s, d, -ECANCELED);
	vp_sim_dom_unmap(d, d->direct_maps > 0);
	if (d->direct_maps) {
		vp_debug("dom %u: sim: forgotten with %u mapping(s) still out; RAM kept "
			 "until they are unmapped",
			 dom, d->direct_maps);
		d->next = s->retired;
		s->retired = d;
		return;
	}
	free(d);
}

static void sim_close(struct vp_hv *hv)
{
	struct sim_hv *s = vp_sim_of(hv);
	unsigned left = 0;

	for (unsigned i = 1; i < s->nports; i++) {
		if (s->ports[i].state != SIM_PORT_FREE) {
			vp_sim_port_close_fds(s, &s->ports[i]);
			left++;
		}
	}
	if (left)
		vp_warn("sim: closing with %u event channel(s) still bound", left);
	free(s->ports);
	for (int l = 0; l < 2; l++) {
		struct sim_dom *d = l ? s->retired : s->doms;

		while (d) {
			struct sim_dom *next = d->next;

			if (d->sock >= 0)
				close(d->sock);
			vp_sim_dom_unmap(d, false);
			free(d);
			d = next;
		}
	}
	while (s->maps) {
		struct sim_mapping *m = s->maps;

		s->maps = m->next;
		munmap(m->addr, (size_t)m->n * VP_SIMWIRE_PAGE_SIZE);
		free(m);
	}
	close(s->timer_fd);
	close(s->epfd);
	free(s->run_dir);
	free(s);
}

static const struct vp_hv_ops sim_ops = {
	.name = "sim",
	.evtchn_fd = sim_evtchn_fd,
	.evtchn_bind = sim_evtchn_bind,
	.evtchn_notify = sim_evtchn_notify,
	.evtchn_pending = sim_evtchn_pending,
	.evtchn_unmask = sim_evtchn_unmask,
	.evtchn_unbind = sim_evtchn_unbind,
	.map_gfns = vp_sim_map_gfns,
	.unmap_gfns = vp_sim_unmap,
	.map_grants = vp_sim_map_grants,
	.unmap_grants = vp_sim_unmap,
	.domain_ready = sim_domain_ready,
	.forget_domain = sim_forget_domain,
	.close = sim_close,
};

int vp_hv_sim_set_self_domid(struct vp_hv *hv, uint16_t domid)
{
	struct sim_hv *s;

	if (!hv || hv->ops != &sim_ops)
		return -EINVAL;
	s = vp_sim_of(hv);
	/* Guests already contacted know us by the old domid. */
	if (s->contacted)
		return -EBUSY;
	s->self_domid = domid;
	return 0;
}

/* Kick eventfds are read with RWF_NOWAIT (sim_kick_read); a kernel that
 * cannot do that on an eventfd (before Linux 5.12 or so) says EOPNOTSUPP
 * at once.  Without it a guest could block us: refuse to run. */
static bool sim_nowait_works(void)
{
	uint64_t counter;
	struct iovec iov = {.iov_base = &counter, .iov_len = sizeof(counter)};
	int fd = eventfd(1, EFD_CLOEXEC);
	ssize_t r;

	if (fd < 0) {
		vp_err("sim: cannot create an eventfd: %s", strerror(errno));
		return false;
	}
	/* The counter is 1: this cannot block even where NOWAIT is ignored. */
	r = preadv2(fd, &iov, 1, -1, RWF_NOWAIT);
	close(fd);
	if (r == (ssize_t)sizeof(counter))
		return true;
	vp_err("sim: this kernel cannot read an eventfd with RWF_NOWAIT (%s): a guest "
	       "could block the server; the sim layer needs Linux 5.12 or later",
	       r < 0 ? strerror(errno) : "short read");
	return false;
}

struct vp_hv *vp_hv_sim_open(const char *run_dir)
{
	struct sockaddr_un probe;
	struct sim_hv *s;
	struct stat st;

	if (!run_dir || !*run_dir) {
		vp_err("sim: no run directory given");
		return NULL;
	}
	/* The longest socket path, dom65535.sock, must fit. */
	if (strlen(run_dir) + sizeof("/dom65535.sock") > sizeof(probe.sun_path)) {
		vp_err("sim: run directory %s is too long for a unix socket path", run_dir);
		return NULL;
	}
	/* Guests create their sockets here; make it if nobody has yet. */
	if (stat(run_dir, &st) < 0 && (errno != ENOENT || mkdir(run_dir, 0700) < 0 ||
					stat(run_dir, &st) < 0)) {
		vp_err("sim: run directory %s: %s", run_dir, strerror(errno));
		return NULL;
	}
	if (!S_ISDIR(st.st_mode)) {
		vp_err("sim: run directory %s is not a directory", run_dir);
		return NULL;
	}
	s = calloc(1, sizeof(*s));
	if (!s) {
		vp_err("sim: out of memory");
		return NULL;
	}
	s->hv.ops = &sim_ops;
	s->run_dir = strdup(run_dir);
	s->epfd = epoll_create1(EPOLL_CLOEXEC);
	s->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (!s->run_dir || s->epfd < 0 || s->timer_fd < 0 ||
	    epoll_ctl(s->epfd, EPOLL_CTL_ADD, s->timer_fd,
		      &(struct epoll_event){.events = EPOLLIN,
					    .data.u64 = SIM_TIMER_TAG}) < 0) {
		vp_err("sim: cannot set up: %s", strerror(errno));
		goto fail;
	}
	if (!sim_nowait_works())
		goto fail;
	return &s->hv;
fail:
	if (s->timer_fd >= 0)
		close(s->timer_fd);
	if (s->epfd >= 0)
		close(s->epfd);
	free(s->run_dir);
	free(s);
	return NULL;
}
