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
 */
#include "hv.h"
#include "log.h"

#include <vproxy/simwire.h>

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <stdbool.h>
#include <stdio.h>
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
#include <time.h>
#include <unistd.h>
#include <xen/xen.h>
#include <xen/grant_table.h>

#define SIM_TIMEOUT_MS VP_SIMWIRE_REPLY_TIMEOUT_MS
#define SIM_EVENT_BATCH 32
/* epoll_wait rounds per pending() call and messages read per socket
 * wake-up: a guest flooding us with notices cannot keep one call busy. */
#define SIM_PENDING_ROUNDS 4
#define SIM_NOTICES_PER_WAKE 64
#define SIM_MAX_PORTS 65536u
/* Requests sent to one guest and not yet answered. */
#define SIM_MAX_INFLIGHT 64u
/* epoll data: a kick eventfd's is its port (< 2^32); these are not. */
#define SIM_SOCK_TAG (1ull << 40) /* | domid: a guest socket */
#define SIM_TIMER_TAG (1ull << 41)
#define SIM_MAX_FDS 2

enum sim_dom_state {
	SIM_DOM_HELLO,   /* connected, HELLO sent, its reply not in yet */
	SIM_DOM_LIVE,    /* memory mapped */
	SIM_DOM_DEAD,    /* connection gone; memory stays mapped until forgotten */
	SIM_DOM_REFUSED, /* handshake failed; nothing mapped */
};

/* A request sent and not yet answered. */
struct sim_req {
	uint16_t type;        /* VP_SIMWIRE_HELLO or VP_SIMWIRE_BIND */
	uint32_t remote_port; /* BIND: the guest's port */
	int port;             /* BIND: our local port, -1 once unbound */
	uint64_t deadline;    /* now_ms() clock */
};

struct sim_dom {
	struct sim_dom *next;
	uint16_t domid;
	enum sim_dom_state state;
	int refuse_err;      /* REFUSED: positive errno returned to every caller */
	uint64_t refused_at; /* REFUSED: when, now_ms() clock */
	bool waited;         /* domain_ready() said -EINPROGRESS: call back */
	int sock;
	int ram_fd;
	uint8_t *ram;
	size_t ram_bytes;
	uint64_t ram_pages;
	const struct grant_entry_v1 *gnt;
	size_t gnt_bytes;
	uint32_t gnt_entries;
	/* Pointers into ram handed out and not yet unmapped: a forgotten
	 * domain keeps its RAM mapping until they are all returned. */
	unsigned direct_maps;
	/* Requests in the order sent: the guest answers in that order. */
	struct sim_req req[SIM_MAX_INFLIGHT];
	unsigned req_head, req_count;
};

enum sim_port_state {
	SIM_PORT_FREE,
	SIM_PORT_BINDING,   /* BIND sent, no reply yet: no descriptors */
	SIM_PORT_BOUND,
	SIM_PORT_DEAD,      /* guest closed it, refused it or went away */
	SIM_PORT_FORGOTTEN, /* its domain was forgotten; every call -ENOENT */
};

struct sim_port {
	enum sim_port_state state;
	uint16_t dom;
	uint32_t remote_port;
	bool notify_pending; /* BINDING: notified before the reply came */
	int kick_fd;         /* guest -> us, an eventfd; in the epoll set while BOUND */
	int irq_fd;          /* us -> guest, an AF_UNIX SOCK_DGRAM socket */
};

/* A page-by-page mapping (gfns not consecutive). */
struct sim_mapping {
	struct sim_mapping *next;
	void *addr;
	unsigned n;
};

struct sim_hv {
	struct vp_hv hv;
	char *run_dir;
	uint16_t self_domid;
	int epfd;
	int timer_fd;            /* request deadlines; in the epoll set */
	uint64_t timer_at;       /* when it fires (now_ms() clock), 0: disarmed */
	bool contacted;          /* some guest was sent our domid */
	struct sim_dom *doms;    /* every domain we have contacted */
	struct sim_dom *retired; /* forgotten, direct pointers still out */
	struct sim_port *ports;  /* index is the local port; 0 is never used */
	unsigned nports;
	struct sim_mapping *maps;
	struct epoll_event ev[SIM_EVENT_BATCH];
	int ev_count, ev_next; /* events fetched and not yet looked at */
};

static const struct vp_hv_ops sim_ops;

static struct sim_hv *to_sim(struct vp_hv *hv)
{
	return (struct sim_hv *)hv;
}

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
static void sim_send_unbind(int sock, uint32_t remote_port)
{
	struct vp_simwire_unbind un;

	memset(&un, 0, sizeof(un));
	sim_hdr_init(&un.hdr, VP_SIMWIRE_UNBIND);
	un.port = htole32(remote_port);
	sim_send(sock, &un);
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

static void sim_req_push(struct sim_hv *s, struct sim_dom *d, uint16_t type,
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

/* --- ports --- */

static struct sim_port *sim_port_get(struct sim_hv *s, int port)
{
	if (port <= 0 || (unsigned)port >= s->nports ||
	    s->ports[port].state == SIM_PORT_FREE)
		return NULL;
	return &s->ports[port];
}

static void sim_port_close_fds(struct sim_hv *s, struct sim_port *p)
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
static int sim_irq_send(struct sim_port *p)
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

/* --- domains --- */

static struct sim_dom *sim_dom_find(struct sim_hv *s, uint16_t dom)
{
	for (struct sim_dom *d = s->doms; d; d = d->next)
		if (d->domid == dom)
			return d;
	return NULL;
}

static void sim_dom_unmap(struct sim_dom *d, bool keep_ram)
{
	if (d->gnt)
		munmap((void *)d->gnt, d->gnt_bytes);
	d->gnt = NULL;
	if (d->ram_fd >= 0)
		close(d->ram_fd);
	d->ram_fd = -1;
	if (d->ram && !keep_ram) {
		munmap(d->ram, d->ram_bytes);
		d->ram = NULL;
	}
}

/* Tell whoever domain_ready() put off that dom is settled.  The callback
 * only records it (see hv.h), so this is safe anywhere. */
static void sim_dom_settled(struct sim_hv *s, struct sim_dom *d, int result)
{
	if (!d->waited)
		return;
	d->waited = false;
	if (s->hv.domain_cb)
		s->hv.domain_cb(s->hv.domain_cb_arg, d->domid, result);
}

/* Close the guest socket and drop every request in flight: the ports
 * still binding go dead.  Returns how many ports died. */
static unsigned sim_dom_hang_up(struct sim_hv *s, struct sim_dom *d)
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
	sim_dom_hang_up(s, d);
	sim_dom_unmap(d, false);
	d->state = SIM_DOM_REFUSED;
	d->refuse_err = -err;
	d->refused_at = now_ms();
	sim_dom_settled(s, d, err);
}

/* The connection is over (guest gone, hung or misbehaving): every port
 * of the domain goes dead; mappings stay valid until forget_domain().
 * During the handshake it is a refusal. */
static void sim_dom_kill(struct sim_hv *s, struct sim_dom *d, int err, const char *why)
{
	unsigned dead;

	if (d->state == SIM_DOM_HELLO) {
		vp_err("dom %u: sim: refusing guest: %s", d->domid, why);
		sim_dom_refuse(s, d, err);
		return;
	}
	if (d->state != SIM_DOM_LIVE)
		return;
	dead = sim_dom_hang_up(s, d);
	d->state = SIM_DOM_DEAD;
	for (unsigned i = 1; i < s->nports; i++) {
		struct sim_port *p = &s->ports[i];

		if (p->state == SIM_PORT_BOUND && p->dom == d->domid) {
			sim_port_close_fds(s, p);
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

/* PORT_CLOSED: the guest closed one of our bound (or binding) ports. */
static void sim_port_closed(struct sim_hv *s, struct sim_dom *d, uint32_t remote)
{
	for (unsigned i = 1; i < s->nports; i++) {
		struct sim_port *p = &s->ports[i];

		if ((p->state == SIM_PORT_BOUND || p->state == SIM_PORT_BINDING) &&
		    p->dom == d->domid && p->remote_port == remote) {
			sim_port_close_fds(s, p);
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
	sim_dom_unmap(d, false);
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
		sim_send_unbind(d->sock, r->remote_port);
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
		sim_send_unbind(d->sock, r->remote_port);
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
		sim_irq_send(p);
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
		sim_dom_settled(s, d, 0);
		return 0;
	}
	*why = "malformed BIND reply";
	return sim_bind_reply(s, d, &r, m, fds, nfds);
bad:
	close_fds(fds, nfds);
	return -EPROTO;
}

/* The guest socket is readable: replies, notices, or the guest went away. */
static void sim_dom_readable(struct sim_hv *s, uint16_t dom)
{
	struct sim_dom *d = sim_dom_find(s, dom);

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
			sim_dom_kill(s, d, r,
				     r == -ECONNRESET ? "guest closed the connection"
				     : r == -EPROTO   ? "a record of the wrong size"
						      : strerror(-r));
			return;
		}
		r = sim_dom_message(s, d, &m, fds, &nfds, &why);
		if (r) {
			sim_dom_kill(s, d, r, why);
			return;
		}
	}
}

/* The request timer fired: every guest whose oldest request is overdue
 * loses its connection (refused, during the handshake). */
static void sim_timer_expired(struct sim_hv *s)
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
			sim_dom_kill(s, d, -ETIMEDOUT, why);
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
		sim_req_push(s, d, VP_SIMWIRE_HELLO, 0, -1);
	}
	*err = 0;
	d->next = s->doms;
	s->doms = d;
	return d;
}

/* The record of dom, contacting the guest on first use, or again once a
 * refusal is VP_SIMWIRE_RETRY_MS old.  NULL + *err when the guest cannot
 * be reached. */
static struct sim_dom *sim_dom_get(struct sim_hv *s, uint16_t dom, int *err)
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
static int sim_dom_err(const struct sim_dom *d)
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
static struct sim_dom *sim_dom_live(struct sim_hv *s, uint16_t dom, int *err)
{
	struct sim_dom *d = sim_dom_get(s, dom, err);

	if (!d)
		return NULL;
	*err = sim_dom_err(d);
	return *err ? NULL : d;
}

static int sim_domain_ready(struct vp_hv *hv, uint16_t dom)
{
	struct sim_hv *s = to_sim(hv);
	struct sim_dom *d;
	int err = 0;

	d = sim_dom_get(s, dom, &err);
	if (!d)
		return err;
	err = sim_dom_err(d);
	if (err != -EAGAIN)
		return err;
	d->waited = true;
	return -EINPROGRESS;
}

/* --- event channels --- */

static int sim_evtchn_fd(struct vp_hv *hv)
{
	return to_sim(hv)->epfd;
}

/* Send BIND and return a local port at once; it is "binding" until the
 * reply is in (sim_bind_reply). */
static int sim_evtchn_bind(struct vp_hv *hv, uint16_t dom, uint32_t remote_port)
{
	struct sim_hv *s = to_sim(hv);
	struct vp_simwire_bind req;
	struct sim_dom *d;
	int err, port;

	d = sim_dom_get(s, dom, &err);
	if (!d)
		return err;
	/* While the handshake runs, BIND goes out after HELLO. */
	err = sim_dom_err(d);
	if (err && err != -EAGAIN)
		return err;
	if (d->req_count == SIM_MAX_INFLIGHT)
		return -EBUSY;
	port = sim_port_alloc(s);
	if (port < 0)
		return port;
	memset(&req, 0, sizeof(req));
	sim_hdr_init(&req.hdr, VP_SIMWIRE_BIND);
	req.port = htole32(remote_port);
	err = sim_send(d->sock, &req);
	if (err) {
		sim_dom_kill(s, d, err,
			     err == -EAGAIN ? "it does not read its socket" : strerror(-err));
		return err == -EAGAIN ? -ETIMEDOUT : err;
	}
	s->ports[port] = (struct sim_port){.state = SIM_PORT_BINDING,
					   .dom = dom,
					   .remote_port = remote_port,
					   .kick_fd = -1,
					   .irq_fd = -1};
	sim_req_push(s, d, VP_SIMWIRE_BIND, remote_port, port);
	return port;
}

static int sim_evtchn_notify(struct vp_hv *hv, int port)
{
	struct sim_port *p = sim_port_get(to_sim(hv), port);

	if (!p || p->state == SIM_PORT_FORGOTTEN)
		return -ENOENT;
	if (p->state == SIM_PORT_DEAD)
		return -ENOTCONN;
	if (p->state == SIM_PORT_BINDING) {
		/* Delivered when the BIND reply brings the irq socket. */
		p->notify_pending = true;
		return 0;
	}
	return sim_irq_send(p);
}

static int sim_evtchn_pending(struct vp_hv *hv)
{
	struct sim_hv *s = to_sim(hv);
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
			sim_timer_expired(s);
			continue;
		}
		if (ev->data.u64 & SIM_SOCK_TAG) {
			sim_dom_readable(s, (uint16_t)ev->data.u64);
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
	struct sim_port *p = sim_port_get(to_sim(hv), port);

	/* Kicks are counted in the eventfd, nothing is ever masked. */
	if (!p || p->state == SIM_PORT_FORGOTTEN)
		return -ENOENT;
	return 0;
}

static int sim_evtchn_unbind(struct vp_hv *hv, int port)
{
	struct sim_hv *s = to_sim(hv);
	struct sim_port *p = sim_port_get(s, port);
	struct sim_dom *d;
	int err = 0;

	if (!p)
		return -ENOENT;
	d = sim_dom_find(s, p->dom);
	if (p->state == SIM_PORT_BOUND && d && d->state == SIM_DOM_LIVE)
		sim_send_unbind(d->sock, p->remote_port);
	if (d) {
		/* A BIND for it may still be out: its reply's descriptors will
		 * be closed and the guest told (sim_bind_reply), whoever gets
		 * the port number next. */
		for (unsigned i = 0; i < d->req_count; i++) {
			struct sim_req *r = &d->req[(d->req_head + i) % SIM_MAX_INFLIGHT];

			if (r->type == VP_SIMWIRE_BIND && r->port == port)
				r->port = -1;
		}
	}
	/* A forgotten port's number is released all the same. */
	if (p->state == SIM_PORT_FORGOTTEN)
		err = -ENOENT;
	sim_port_close_fds(s, p);
	p->state = SIM_PORT_FREE;
	return err;
}

/* --- guest memory --- */

static void *sim_map_frames(struct sim_hv *s, struct sim_dom *d, const uint64_t *frames,
			    unsigned n, int writable)
{
	int prot = PROT_READ | (writable ? PROT_WRITE : 0);
	bool consecutive = true;
	struct sim_mapping *m;
	uint8_t *base;
	size_t len;
	int err;

	for (unsigned i = 0; i < n; i++) {
		if (frames[i] >= d->ram_pages) {
			errno = EINVAL;
			return NULL;
		}
		if (frames[i] != frames[0] + i)
			consecutive = false;
	}
	if (consecutive) {
		d->direct_maps++;
		return d->ram + frames[0] * VP_SIMWIRE_PAGE_SIZE;
	}
	if ((uint64_t)n * VP_SIMWIRE_PAGE_SIZE > SIZE_MAX) {
		errno = EINVAL;
		return NULL;
	}
	len = (size_t)n * VP_SIMWIRE_PAGE_SIZE;
	m = malloc(sizeof(*m));
	if (!m)
		return NULL;
	/* Reserve the range, then put each guest page in its place. */
	base = mmap(NULL, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (base == MAP_FAILED) {
		err = errno;
		free(m);
		errno = err;
		return NULL;
	}
	for (unsigned i = 0; i < n; i++) {
		void *p = mmap(base + (size_t)i * VP_SIMWIRE_PAGE_SIZE, VP_SIMWIRE_PAGE_SIZE,
			       prot, MAP_SHARED | MAP_FIXED, d->ram_fd,
			       (off_t)(frames[i] * VP_SIMWIRE_PAGE_SIZE));

		if (p == MAP_FAILED) {
			err = errno;
			munmap(base, len);
			free(m);
			errno = err;
			return NULL;
		}
	}
	m->addr = base;
	m->n = n;
	m->next = s->maps;
	s->maps = m;
	return base;
}

static void *sim_map_gfns(struct vp_hv *hv, uint16_t dom, const uint64_t *gfns,
			  unsigned n, int writable)
{
	struct sim_hv *s = to_sim(hv);
	struct sim_dom *d;
	int err;

	if (!gfns || n == 0) {
		errno = EINVAL;
		return NULL;
	}
	d = sim_dom_live(s, dom, &err);
	if (!d) {
		errno = -err;
		return NULL;
	}
	return sim_map_frames(s, d, gfns, n, writable);
}

static void *sim_map_grants(struct vp_hv *hv, uint16_t dom, const uint32_t *refs,
			    unsigned n, int writable)
{
	struct sim_hv *s = to_sim(hv);
	struct sim_dom *d;
	uint64_t *frames;
	void *addr = NULL;
	int err = 0;

	if (!refs || n == 0) {
		errno = EINVAL;
		return NULL;
	}
	d = sim_dom_live(s, dom, &err);
	if (!d) {
		errno = -err;
		return NULL;
	}
	frames = malloc((size_t)n * sizeof(*frames));
	if (!frames)
		return NULL;
	for (unsigned i = 0; i < n; i++) {
		const struct grant_entry_v1 *e;
		uint16_t flags, edom;
		uint32_t frame;

		if (refs[i] >= d->gnt_entries) {
			err = EINVAL;
			goto out;
		}
		/* The guest may rewrite the entry at any moment: read each
		 * field once, flags first (pairs with its release). */
		e = &d->gnt[refs[i]];
		flags = __atomic_load_n(&e->flags, __ATOMIC_ACQUIRE);
		edom = __atomic_load_n(&e->domid, __ATOMIC_RELAXED);
		frame = __atomic_load_n(&e->frame, __ATOMIC_RELAXED);
		if ((flags & GTF_type_mask) != GTF_permit_access || edom != s->self_domid) {
			err = EPERM;
			goto out;
		}
		if (writable && (flags & GTF_readonly)) {
			err = EACCES;
			goto out;
		}
		frames[i] = frame;
	}
	addr = sim_map_frames(s, d, frames, n, writable);
	err = addr ? 0 : errno;
out:
	free(frames);
	errno = err;
	return addr;
}

static int sim_unmap(struct vp_hv *hv, void *addr, unsigned n)
{
	struct sim_hv *s = to_sim(hv);
	struct sim_dom **lists[2] = {&s->doms, &s->retired};
	uint8_t *a = addr;

	if (!addr || n == 0)
		return -EINVAL;
	for (struct sim_mapping **pp = &s->maps; *pp; pp = &(*pp)->next) {
		struct sim_mapping *m = *pp;

		if (m->addr != addr)
			continue;
		if (m->n != n)
			return -EINVAL;
		*pp = m->next;
		munmap(m->addr, (size_t)m->n * VP_SIMWIRE_PAGE_SIZE);
		free(m);
		return 0;
	}
	/* Otherwise it must point into some domain's RAM mapping. */
	for (int l = 0; l < 2; l++) {
		for (struct sim_dom **pp = lists[l]; *pp; pp = &(*pp)->next) {
			struct sim_dom *d = *pp;

			if (!d->ram || a < d->ram || a >= d->ram + d->ram_bytes)
				continue;
			if ((size_t)(a - d->ram) % VP_SIMWIRE_PAGE_SIZE ||
			    n > (d->ram_bytes - (size_t)(a - d->ram)) / VP_SIMWIRE_PAGE_SIZE ||
			    d->direct_maps == 0)
				return -EINVAL;
			if (--d->direct_maps == 0 && l == 1) {
				*pp = d->next;
				munmap(d->ram, d->ram_bytes);
				free(d);
			}
			return 0;
		}
	}
	return -EINVAL;
}

/* --- domains and the handle --- */

static void sim_forget_domain(struct vp_hv *hv, uint16_t dom)
{
	struct sim_hv *s = to_sim(hv);
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
		sim_dom_hang_up(s, d);
	for (unsigned i = 1; i < s->nports; i++) {
		struct sim_port *p = &s->ports[i];

		if (p->state != SIM_PORT_FREE && p->state != SIM_PORT_FORGOTTEN &&
		    p->dom == dom) {
			sim_port_close_fds(s, p);
			p->state = SIM_PORT_FORGOTTEN;
		}
	}
	if (!d)
		return;
	/* Whoever waits for the handshake asks again (and gets a new one). */
	sim_dom_settled(s, d, -ECANCELED);
	sim_dom_unmap(d, d->direct_maps > 0);
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
	struct sim_hv *s = to_sim(hv);
	unsigned left = 0;

	for (unsigned i = 1; i < s->nports; i++) {
		if (s->ports[i].state != SIM_PORT_FREE) {
			sim_port_close_fds(s, &s->ports[i]);
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
			sim_dom_unmap(d, false);
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
	.map_gfns = sim_map_gfns,
	.unmap_gfns = sim_unmap,
	.map_grants = sim_map_grants,
	.unmap_grants = sim_unmap,
	.domain_ready = sim_domain_ready,
	.forget_domain = sim_forget_domain,
	.close = sim_close,
};

int vp_hv_sim_set_self_domid(struct vp_hv *hv, uint16_t domid)
{
	struct sim_hv *s;

	if (!hv || hv->ops != &sim_ops)
		return -EINVAL;
	s = to_sim(hv);
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
