/* SPDX-License-Identifier: MIT */
/*
 * The sim layer's wire client (hv_sim_wire.h): the connection to each
 * guest and the conversation over it.  Every rule of the layer's top
 * comment (hv_sim.c) about the guest's socket applies here: nothing
 * waits, every record, descriptor and size is checked.
 */
#include "hv_sim_wire.h"
#include "hv_sim.h"
#include "hv_sim_mem.h"
#include "log.h"

#include <vproxy/simwire.h>

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void close_fds(int *fds, unsigned *nfds)
{
	for (unsigned i = 0; i < *nfds; i++)
		close(fds[i]);
	*nfds = 0;
}

/* --- the socket --- */

/* Connect to the guest's socket.  AF_UNIX connects complete at once (or
 * fail with EAGAIN on a full backlog): nothing here waits for the guest. */
static int sim_connect(struct sim_hv *s, uint16_t dom, int *out)
{
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	int fd, n, err;

	n = snprintf(addr.sun_path, sizeof(addr.sun_path), "%s/dom%u.sock", s->run_dir,
		     dom);
	if (n < 0 || (size_t)n >= sizeof(addr.sun_path))
		return -ENAMETOOLONG;
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
		err = -errno;
		close(fd);
		return err;
	}
	*out = fd;
	return 0;
}

/* Send one record.  MSG_DONTWAIT: a guest that stopped reading fills our
 * send buffer and gets -EAGAIN (its connection is then over), never a
 * wait. */
static int sim_send(int sock, const void *msg)
{
	ssize_t r = send(sock, msg, VP_SIMWIRE_B2G_SIZE, MSG_DONTWAIT | MSG_NOSIGNAL);

	if (r < 0)
		return -errno;
	return (size_t)r == VP_SIMWIRE_B2G_SIZE ? 0 : -EPIPE;
}

/* Start a backend -> guest message of type. */
static void sim_hdr_init(struct vp_simwire_hdr *hdr, uint16_t type)
{
	hdr->magic = htole32(VP_SIMWIRE_MAGIC);
	hdr->type = htole16(type);
	hdr->version = htole16(VP_SIMWIRE_VERSION);
}

/* Tell the guest we closed our end of remote_port.  No reply, and no
 * waiting: a stuck guest only misses the news. */
void vp_sim_send_unbind(int sock, uint32_t remote_port)
{
	struct vp_simwire_unbind un;

	memset(&un, 0, sizeof(un));
	sim_hdr_init(&un.hdr, VP_SIMWIRE_UNBIND);
	un.port = htole32(remote_port);
	sim_send(sock, &un);
}

/* Send BIND for the guest's port remote_port (its reply: sim_bind_reply). */
int vp_sim_send_bind(int sock, uint32_t remote_port)
{
	struct vp_simwire_bind req;

	memset(&req, 0, sizeof(req));
	sim_hdr_init(&req.hdr, VP_SIMWIRE_BIND);
	req.port = htole32(remote_port);
	return sim_send(sock, &req);
}

/* Move SCM_RIGHTS descriptors from mh into fds; surplus ones are closed
 * and make the message a protocol error. */
static int sim_take_fds(struct msghdr *mh, int *fds, unsigned *nfds)
{
	int err = (mh->msg_flags & MSG_CTRUNC) ? -EPROTO : 0;

	for (struct cmsghdr *cm = CMSG_FIRSTHDR(mh); cm; cm = CMSG_NXTHDR(mh, cm)) {
		size_t count;

		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS ||
		    cm->cmsg_len < CMSG_LEN(0))
			continue;
		count = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < count; i++) {
			int fd;

			memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof(fd));
			if (*nfds < SIM_MAX_FDS) {
				fds[(*nfds)++] = fd;
			} else {
				close(fd);
				err = -EPROTO;
			}
		}
	}
	return err;
}

/* Take one record and its descriptors if one is queued; never waits (a
 * record is whole or absent).  1 with a record, 0 when none is queued,
 * else -errno (-ECONNRESET: closed; -EPROTO: wrong size); descriptors are
 * closed on error. */
static int sim_recv(int sock, union vp_simwire_g2b *msg, int *fds, unsigned *nfds)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * (SIM_MAX_FDS + 2))];
		struct cmsghdr align;
	} ctl;
	struct iovec iov = {.iov_base = msg->bytes, .iov_len = VP_SIMWIRE_G2B_SIZE};
	struct msghdr mh = {.msg_iov = &iov,
			    .msg_iovlen = 1,
			    .msg_control = ctl.buf,
			    .msg_controllen = sizeof(ctl.buf)};
	ssize_t r;
	int err;

	*nfds = 0;
	do {
		r = recvmsg(sock, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	} while (r < 0 && errno == EINTR);
	if (r < 0)
		return (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : -errno;
	err = sim_take_fds(&mh, fds, nfds);
	/* An empty record reads as the end of the connection: so be it. */
	if (!err && r == 0)
		err = -ECONNRESET;
	if (!err && ((size_t)r != VP_SIMWIRE_G2B_SIZE || (mh.msg_flags & MSG_TRUNC)))
		err = -EPROTO;
	if (err) {
		close_fds(fds, nfds);
		return err;
	}
	return 1;
}

/* --- request deadlines --- */

/* Make the timer fire no later than deadline. */
static void sim_timer_arm(struct sim_hv *s, uint64_t deadline)
{
	struct itimerspec its = {0};

	if (s->timer_at && s->timer_at <= deadline)
		return;
	its.it_value.tv_sec = (time_t)(deadline / 1000u);
	its.it_value.tv_nsec = (long)(deadline % 1000u) * 1000000L;
	if (timerfd_settime(s->timer_fd, TFD_TIMER_ABSTIME, &its, NULL) == 0)
		s->timer_at = deadline;
	else
		vp_err("sim: cannot arm the request timer: %s", strerror(errno));
}

static struct sim_req *sim_req_head(struct sim_dom *d)
{
	return d->req_count ? &d->req[d->req_head] : NULL;
}

void vp_sim_req_push(struct sim_hv *s, struct sim_dom *d, uint16_t type,
		     uint32_t remote_port, int port)
{
	struct sim_req *r = &d->req[(d->req_head + d->req_count) % SIM_MAX_INFLIGHT];

	*r = (struct sim_req){.type = type,
			      .remote_port = remote_port,
			      .port = port,
			      .deadline = now_ms() + SIM_TIMEOUT_MS};
	d->req_count++;
	sim_timer_arm(s, r->deadline);
}

static void sim_req_pop(struct sim_dom *d)
{
	d->req_head = (d->req_head + 1) % SIM_MAX_INFLIGHT;
	d->req_count--;
}

/* --- domains --- */

struct sim_dom *vp_sim_dom_find(struct sim_hv *s, uint16_t dom)
{
	for (struct sim_dom *d = s->doms; d; d = d->next)
		if (d->domid == dom)
			return d;
	return NULL;
}

/* Tell whoever domain_ready() put off that dom is settled.  The callback
 * only records it (see hv.h), so this is safe anywhere. */
void vp_sim_dom_settled(struct sim_hv *s, struct sim_dom *d, int result)
{
	if (!d->waited)
		return;
	d->waited = false;
	if (s->hv.domain_cb)
		s->hv.domain_cb(s->hv.domain_cb_arg, d->domid, result);
}

/* Close the guest socket and drop every request in flight: the ports
 * still binding go dead.  Returns how many ports died. */
unsigned vp_sim_dom_hang_up(struct sim_hv *s, struct sim_dom *d)
{
	unsigned dead = 0;

	if (d->sock >= 0) {
		epoll_ctl(s->epfd, EPOLL_CTL_DEL, d->sock, NULL);
		close(d->sock);
	}
	d->sock = -1;
	for (; d->req_count; sim_req_pop(d)) {
		struct sim_req *r = sim_req_head(d);

		if (r->type == VP_SIMWIRE_BIND && r->port > 0) {
			s->ports[r->port].state = SIM_PORT_DEAD;
			s->ports[r->port].notify_pending = false;
			dead++;
		}
	}
	/* A port whose malformed reply was taken off the queue. */
	for (unsigned i = 1; i < s->nports; i++) {
		struct sim_port *p = &s->ports[i];

		if (p->state == SIM_PORT_BINDING && p->dom == d->domid) {
			p->state = SIM_PORT_DEAD;
			p->notify_pending = false;
			dead++;
		}
	}
	return dead;
}

/* The handshake failed (err < 0): remember the refusal, map nothing. */
static void sim_dom_refuse(struct sim_hv *s, struct sim_dom *d, int err)
{
	vp_sim_dom_hang_up(s, d);
	vp_sim_dom_unmap(d, false);
	d->state = SIM_DOM_REFUSED;
	d->refuse_err = -err;
	d->refused_at = now_ms();
	vp_sim_dom_settled(s, d, err);
}

/* The connection is over (guest gone, hung or misbehaving): every port
 * of the domain goes dead; mappings stay valid until forget_domain().
 * During the handshake it is a refusal. */
void vp_sim_dom_kill(struct sim_hv *s, struct sim_dom *d, int err, const char *why)
{
	unsigned dead;

	if (d->state == SIM_DOM_HELLO) {
		vp_err("dom %u: sim: refusing guest: %s", d->domid, why);
		sim_dom_refuse(s, d, err);
		return;
	}
	if (d->state != SIM_DOM_LIVE)
		return;
	dead = vp_sim_dom_hang_up(s, d);
	d->state = SIM_DOM_DEAD;
	for (unsigned i = 1; i < s->nports; i++) {
		struct sim_port *p = &s->ports[i];

		if (p->state == SIM_PORT_BOUND && p->dom == d->domid) {
			vp_sim_port_close_fds(s, p);
			p->state = SIM_PORT_DEAD;
			dead++;
		}
	}
	vp_warn("dom %u: sim: guest connection lost (%s); %u event channel(s) dead",
		d->domid, why, dead);
}

static int sim_check_memfd(uint16_t dom, int fd, uint64_t want, const char *what)
{
	struct stat st;
	int seals;

	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		vp_err("dom %u: sim: refusing guest: its %s is not a memfd", dom, what);
		return -EPROTO;
	}
	seals = fcntl(fd, F_GET_SEALS);
	if (seals < 0 || !(seals & F_SEAL_SHRINK)) {
		vp_err("dom %u: sim: refusing guest: its %s memfd is not sealed against "
		       "shrinking (seals %#x), mapping it could crash us",
		       dom, what, seals < 0 ? 0 : (unsigned)seals);
		return -EPERM;
	}
	if ((uint64_t)st.st_size != want) {
		vp_err("dom %u: sim: refusing guest: its %s memfd is %lld bytes, it "
		       "announced %llu",
		       dom, what, (long long)st.st_size, (unsigned long long)want);
		return -EPROTO;
	}
	return 0;
}

/* A descriptor the guest claims is an eventfd. */
static bool sim_check_eventfd(int fd)
{
	char path[64], target[64];
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	n = readlink(path, target, sizeof(target) - 1);
	if (n < 0)
		return false;
	target[n] = '\0';
	return strcmp(target, "anon_inode:[eventfd]") == 0;
}

/* A descriptor the guest claims is a connected AF_UNIX datagram socket. */
static bool sim_check_irq_socket(int fd)
{
	struct sockaddr_un peer;
	socklen_t len = sizeof(int), plen = sizeof(peer);
	int domain = 0, type = 0;

	if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) < 0 || domain != AF_UNIX)
		return false;
	len = sizeof(int);
	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0 || type != SOCK_DGRAM)
		return false;
	return getpeername(fd, (struct sockaddr *)&peer, &plen) == 0;
}

/* PORT_CLOSED: the guest closed one of our bound (or binding) ports. */
static void sim_port_closed(struct sim_hv *s, struct sim_dom *d, uint32_t remote)
{
	for (unsigned i = 1; i < s->nports; i++) {
		struct sim_port *p = &s->ports[i];

		if ((p->state == SIM_PORT_BOUND || p->state == SIM_PORT_BINDING) &&
		    p->dom == d->domid && p->remote_port == remote) {
			vp_sim_port_close_fds(s, p);
			/* A BIND still in flight finds the port dead. */
			p->state = SIM_PORT_DEAD;
			vp_info("dom %u: sim: guest closed event channel %u (local port %u)",
				d->domid, remote, i);
		}
	}
	/* A notice for a port we already unbound crossed our UNBIND. */
}

static int sim_status_err(int32_t status)
{
	return (status < 0 && status > -4096) ? status : -EPROTO;
}

/* HELLO_REPLY: check it and map the guest's memory.  0, or -errno (the
 * caller refuses the guest; what was wrong is logged here). */
static int sim_hello_reply(struct sim_dom *d, const union vp_simwire_g2b *rep, int *fds,
			   unsigned *nfds)
{
	const struct vp_simwire_hello_reply *h = &rep->hello_reply;
	int32_t status = (int32_t)le32toh((uint32_t)h->status);
	uint16_t dom = d->domid;
	uint64_t gnt_bytes;
	void *p;
	int err = -EPROTO;

	if (status != 0) {
		err = sim_status_err(status);
		vp_err("dom %u: sim: guest refused HELLO: %s", dom, strerror(-err));
		goto fail;
	}
	if (le16toh(h->hdr.version) != VP_SIMWIRE_VERSION) {
		vp_err("dom %u: sim: refusing guest: protocol version %u, we speak %u", dom,
		       le16toh(h->hdr.version), VP_SIMWIRE_VERSION);
		err = -EPROTONOSUPPORT;
		goto fail;
	}
	if (le16toh(h->guest_domid) != dom) {
		vp_err("dom %u: sim: refusing guest: it says it is domain %u", dom,
		       le16toh(h->guest_domid));
		goto fail;
	}
	d->ram_bytes = (size_t)le64toh(h->ram_bytes);
	d->gnt_entries = le32toh(h->grant_entries);
	if (le32toh(h->page_size) != VP_SIMWIRE_PAGE_SIZE || le64toh(h->ram_bytes) == 0 ||
	    le64toh(h->ram_bytes) > VP_SIMWIRE_MAX_RAM_BYTES ||
	    le64toh(h->ram_bytes) % VP_SIMWIRE_PAGE_SIZE ||
	    d->gnt_entries > VP_SIMWIRE_MAX_GRANT_ENTRIES) {
		vp_err("dom %u: sim: refusing guest: bad geometry (page size %u, RAM %llu "
		       "bytes, %u grant entries)",
		       dom, le32toh(h->page_size), (unsigned long long)le64toh(h->ram_bytes),
		       d->gnt_entries);
		goto fail;
	}
	if (*nfds != 2) {
		vp_err("dom %u: sim: refusing guest: HELLO reply carried %u descriptors, "
		       "expected 2",
		       dom, *nfds);
		goto fail;
	}
	gnt_bytes = vp_simwire_grant_table_bytes(d->gnt_entries);
	err = sim_check_memfd(dom, fds[0], d->ram_bytes, "RAM");
	if (!err)
		err = sim_check_memfd(dom, fds[1], gnt_bytes, "grant table");
	if (err)
		goto fail;
	d->ram_pages = d->ram_bytes / VP_SIMWIRE_PAGE_SIZE;
	p = mmap(NULL, d->ram_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fds[0], 0);
	if (p == MAP_FAILED) {
		err = -errno;
		vp_err("dom %u: sim: cannot map guest RAM: %s", dom, strerror(errno));
		goto fail;
	}
	d->ram = p;
	/* The guest owns its grant table; we only ever read it. */
	p = mmap(NULL, gnt_bytes, PROT_READ, MAP_SHARED, fds[1], 0);
	if (p == MAP_FAILED) {
		err = -errno;
		vp_err("dom %u: sim: cannot map the grant table: %s", dom, strerror(errno));
		goto fail;
	}
	d->gnt = p;
	d->gnt_bytes = (size_t)gnt_bytes;
	d->ram_fd = fds[0];
	close(fds[1]);
	*nfds = 0;
	vp_info("dom %u: sim: guest connected (%zu KiB RAM, %u grant entries)", dom,
		d->ram_bytes >> 10, d->gnt_entries);
	return 0;
fail:
	close_fds(fds, nfds);
	vp_sim_dom_unmap(d, false);
	return err;
}

/* BIND_REPLY for request r (already taken off the queue).  0, or -errno
 * when the reply is malformed (the caller ends the connection). */
static int sim_bind_reply(struct sim_hv *s, struct sim_dom *d, const struct sim_req *r,
			  const union vp_simwire_g2b *rep, int *fds, unsigned *nfds)
{
	struct epoll_event ev = {.events = EPOLLIN};
	int32_t status = (int32_t)le32toh((uint32_t)rep->bind_reply.status);
	struct sim_port *p;

	/* Descriptors come with success only: two then, none otherwise.  Every
	 * way out of here closes what it does not keep. */
	if (le32toh(rep->bind_reply.port) != r->remote_port ||
	    *nfds != (status == 0 ? 2u : 0u) ||
	    (status == 0 && (!sim_check_eventfd(fds[0]) || !sim_check_irq_socket(fds[1])))) {
		close_fds(fds, nfds);
		return -EPROTO;
	}
	/* Still waiting for this reply?  Not if it was unbound, or closed by
	 * the guest meanwhile (PORT_CLOSED made it dead). */
	p = r->port > 0 && s->ports[r->port].state == SIM_PORT_BINDING ? &s->ports[r->port]
									: NULL;
	if (status != 0) {
		vp_warn("dom %u: sim: guest refused to bind event channel %u: %s%s", d->domid,
			r->remote_port, strerror(-sim_status_err(status)),
			p ? "; its local port is dead" : "");
		if (p) {
			p->state = SIM_PORT_DEAD;
			p->notify_pending = false;
		}
		return 0;
	}
	if (!p) {
		/* Unbound (or closed by the guest) while the BIND was out. */
		close_fds(fds, nfds);
		vp_sim_send_unbind(d->sock, r->remote_port);
		return 0;
	}
	ev.data.u64 = (uint64_t)r->port;
	/* Ours to set on our side, but never relied upon: the guest shares
	 * the flag and may clear it. */
	fcntl(fds[0], F_SETFL, O_NONBLOCK);
	fcntl(fds[1], F_SETFL, O_NONBLOCK);
	if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, fds[0], &ev) < 0) {
		vp_err("dom %u: sim: cannot watch event channel %u: %s; its local port is "
		       "dead",
		       d->domid, r->remote_port, strerror(errno));
		close_fds(fds, nfds);
		vp_sim_send_unbind(d->sock, r->remote_port);
		p->state = SIM_PORT_DEAD;
		p->notify_pending = false;
		return 0;
	}
	p->kick_fd = fds[0];
	p->irq_fd = fds[1];
	*nfds = 0;
	p->state = SIM_PORT_BOUND;
	if (p->notify_pending) {
		p->notify_pending = false;
		vp_sim_irq_send(p);
	}
	return 0;
}

/* One record from the guest: the reply to the oldest request, or a
 * notice.  0, or -errno to end the connection (*why says why). */
static int sim_dom_message(struct sim_hv *s, struct sim_dom *d, union vp_simwire_g2b *m,
			   int *fds, unsigned *nfds, const char **why)
{
	uint16_t type = le16toh(m->hdr.type);
	struct sim_req *head = sim_req_head(d), r;
	int err;

	*why = "unexpected message";
	if (le32toh(m->hdr.magic) != VP_SIMWIRE_MAGIC)
		goto bad;
	if (type == VP_SIMWIRE_PORT_CLOSED) {
		if (*nfds)
			goto bad;
		sim_port_closed(s, d, le32toh(m->port_closed.port));
		return 0;
	}
	if (!head || (type == VP_SIMWIRE_HELLO_REPLY) != (head->type == VP_SIMWIRE_HELLO) ||
	    (type != VP_SIMWIRE_HELLO_REPLY && type != VP_SIMWIRE_BIND_REPLY)) {
		*why = "a reply that answers no request";
		goto bad;
	}
	r = *head;
	sim_req_pop(d);
	if (type == VP_SIMWIRE_HELLO_REPLY) {
		err = sim_hello_reply(d, m, fds, nfds);
		*why = "bad HELLO reply";
		if (err)
			return err;
		d->state = SIM_DOM_LIVE;
		vp_sim_dom_settled(s, d, 0);
		return 0;
	}
	*why = "malformed BIND reply";
	return sim_bind_reply(s, d, &r, m, fds, nfds);
bad:
	close_fds(fds, nfds);
	return -EPROTO;
}

/* The guest socket is readable: replies, notices, or the guest went away. */
void vp_sim_dom_readable(struct sim_hv *s, uint16_t dom)
{
	struct sim_dom *d = vp_sim_dom_find(s, dom);

	for (int i = 0; i < SIM_NOTICES_PER_WAKE; i++) {
		union vp_simwire_g2b m;
		int fds[SIM_MAX_FDS];
		unsigned nfds = 0;
		const char *why;
		int r;

		if (!d || (d->state != SIM_DOM_LIVE && d->state != SIM_DOM_HELLO))
			return;
		r = sim_recv(d->sock, &m, fds, &nfds);
		if (r == 0)
			return;
		if (r < 0) {
			vp_sim_dom_kill(s, d, r,
					r == -ECONNRESET ? "guest closed the connection"
					: r == -EPROTO   ? "a record of the wrong size"
							 : strerror(-r));
			return;
		}
		r = sim_dom_message(s, d, &m, fds, &nfds, &why);
		if (r) {
			vp_sim_dom_kill(s, d, r, why);
			return;
		}
	}
}

/* The request timer fired: every guest whose oldest request is overdue
 * loses its connection (refused, during the handshake). */
void vp_sim_timer_expired(struct sim_hv *s)
{
	uint64_t ticks, now = now_ms(), next = 0;

	/* Our own timerfd, never shared: its O_NONBLOCK holds. */
	if (read(s->timer_fd, &ticks, sizeof(ticks)) < 0 && errno != EAGAIN)
		vp_err("sim: cannot read the request timer: %s", strerror(errno));
	s->timer_at = 0;
	for (struct sim_dom *d = s->doms; d; d = d->next) {
		struct sim_req *head = sim_req_head(d);

		if (!head)
			continue;
		if (head->deadline <= now) {
			char why[96];

			snprintf(why, sizeof(why), "no answer to %s within %u ms",
				 head->type == VP_SIMWIRE_HELLO ? "HELLO" : "BIND",
				 (unsigned)SIM_TIMEOUT_MS);
			vp_sim_dom_kill(s, d, -ETIMEDOUT, why);
			continue;
		}
		if (!next || head->deadline < next)
			next = head->deadline;
	}
	if (next)
		sim_timer_arm(s, next);
}

/* Start contacting dom: connect and send HELLO, without waiting for the
 * reply.  NULL + *err when the guest cannot be reached at all (not
 * remembered: it may start later). */
static struct sim_dom *sim_dom_contact(struct sim_hv *s, uint16_t dom, int *err)
{
	struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP};
	struct vp_simwire_hello req;
	struct sim_dom *d;
	int sock = -1;

	*err = sim_connect(s, dom, &sock);
	if (*err == -EPROTOTYPE) {
		vp_warn("dom %u: sim: the guest's socket is not SOCK_SEQPACKET: it speaks "
			"an older sim wire (we speak version %u)",
			dom, VP_SIMWIRE_VERSION);
		return NULL;
	}
	if (*err) {
		vp_debug("dom %u: sim: cannot reach guest: %s", dom, strerror(-*err));
		return NULL;
	}
	d = calloc(1, sizeof(*d));
	if (!d) {
		close(sock);
		*err = -ENOMEM;
		return NULL;
	}
	d->domid = dom;
	d->sock = sock;
	d->ram_fd = -1;
	d->state = SIM_DOM_HELLO;
	memset(&req, 0, sizeof(req));
	sim_hdr_init(&req.hdr, VP_SIMWIRE_HELLO);
	req.backend_domid = htole16(s->self_domid);
	ev.data.u64 = SIM_SOCK_TAG | dom;
	s->contacted = true;
	*err = sim_send(sock, &req);
	if (!*err && epoll_ctl(s->epfd, EPOLL_CTL_ADD, sock, &ev) < 0)
		*err = -errno;
	if (*err) {
		vp_err("dom %u: sim: refusing guest: cannot send HELLO: %s", dom,
		       strerror(-*err));
		sim_dom_refuse(s, d, *err);
	} else {
		vp_sim_req_push(s, d, VP_SIMWIRE_HELLO, 0, -1);
	}
	*err = 0;
	d->next = s->doms;
	s->doms = d;
	return d;
}

/* The record of dom, contacting the guest on first use, or again once a
 * refusal is VP_SIMWIRE_RETRY_MS old.  NULL + *err when the guest cannot
 * be reached. */
struct sim_dom *vp_sim_dom_get(struct sim_hv *s, uint16_t dom, int *err)
{
	struct sim_dom **pp, *d;

	for (pp = &s->doms; (d = *pp); pp = &d->next)
		if (d->domid == dom)
			break;
	if (d && d->state == SIM_DOM_REFUSED &&
	    now_ms() - d->refused_at >= VP_SIMWIRE_RETRY_MS) {
		/* Nothing of it is mapped or bound: start over. */
		*pp = d->next;
		free(d);
		d = NULL;
	}
	return d ? d : sim_dom_contact(s, dom, err);
}

/* What a call that needs dom connected gets: 0 when it is, -EAGAIN while
 * the handshake runs, else why not. */
int vp_sim_dom_err(const struct sim_dom *d)
{
	switch (d->state) {
	case SIM_DOM_LIVE:
		return 0;
	case SIM_DOM_HELLO:
		return -EAGAIN;
	case SIM_DOM_DEAD:
		return -ESRCH;
	case SIM_DOM_REFUSED:
	default:
		return -d->refuse_err;
	}
}

/* The record of a connected domain, or NULL + *err. */
struct sim_dom *vp_sim_dom_live(struct sim_hv *s, uint16_t dom, int *err)
{
	struct sim_dom *d = vp_sim_dom_get(s, dom, err);

	if (!d)
		return NULL;
	*err = vp_sim_dom_err(d);
	return *err ? NULL : d;
}
