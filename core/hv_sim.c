/*
 * The "sim" hypervisor layer: no Xen.  Each guest is a process running
 * proxy-stub/linux/simguest.c; on first use of domain D we connect to
 * <run_dir>/dom<D>.sock and receive its RAM and grant table as memfds and,
 * per bound port, an eventfd pair (wire format: vproxy/simwire.h).
 *
 * The guest is untrusted: every field, descriptor and size it sends is
 * checked, its memfds must be sealed against shrinking (so our mappings
 * can never SIGBUS), and every wait on it is bounded by SIM_TIMEOUT_MS.
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
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <xen/xen.h>
#include <xen/grant_table.h>

#define SIM_TIMEOUT_MS 2000
#define SIM_EVENT_BATCH 32
/* epoll_wait rounds per pending() call and messages read per socket
 * wake-up: a guest flooding us with notices cannot keep one call busy. */
#define SIM_PENDING_ROUNDS 4
#define SIM_NOTICES_PER_WAKE 64
#define SIM_MAX_PORTS 65536u
/* epoll data for a guest socket; for a kick eventfd it is the port. */
#define SIM_SOCK_TAG (1ull << 40)
#define SIM_MAX_FDS 2

enum sim_dom_state {
	SIM_DOM_LIVE,    /* connected, memory mapped */
	SIM_DOM_DEAD,    /* connection gone; memory stays mapped until forgotten */
	SIM_DOM_REFUSED, /* handshake failed; nothing mapped */
};

struct sim_dom {
	struct sim_dom *next;
	uint16_t domid;
	enum sim_dom_state state;
	int refuse_err; /* REFUSED: positive errno returned to every caller */
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
};

enum sim_port_state {
	SIM_PORT_FREE,
	SIM_PORT_BOUND,
	SIM_PORT_DEAD,      /* guest closed it or went away; unbind frees it */
	SIM_PORT_FORGOTTEN, /* its domain was forgotten; every call -ENOENT */
};

struct sim_port {
	enum sim_port_state state;
	uint16_t dom;
	uint32_t remote_port;
	int kick_fd; /* guest -> us; in the epoll set while BOUND */
	int irq_fd;  /* us -> guest */
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

static int sim_connect(struct sim_hv *s, uint16_t dom, int *out)
{
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	struct timeval tv = {.tv_sec = SIM_TIMEOUT_MS / 1000,
			     .tv_usec = (SIM_TIMEOUT_MS % 1000) * 1000};
	int fd, n, err;

	n = snprintf(addr.sun_path, sizeof(addr.sun_path), "%s/dom%u.sock", s->run_dir,
		     dom);
	if (n < 0 || (size_t)n >= sizeof(addr.sun_path))
		return -ENAMETOOLONG;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	/* The send timeout also bounds connect() on a full backlog. */
	if (setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0) {
		err = -errno;
		goto fail;
	}
	if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
		err = (errno == EAGAIN || errno == EINPROGRESS) ? -ETIMEDOUT : -errno;
		goto fail;
	}
	*out = fd;
	return 0;
fail:
	close(fd);
	return err;
}

static int sim_send(int sock, const void *msg, int flags)
{
	ssize_t r;

	do {
		r = send(sock, msg, VP_SIMWIRE_B2G_SIZE, MSG_NOSIGNAL | flags);
	} while (r < 0 && errno == EINTR);
	if (r < 0)
		return (errno == EAGAIN || errno == EWOULDBLOCK) ? -ETIMEDOUT : -errno;
	/* A partial send leaves the stream out of step: the peer is gone
	 * or stuck, either way the connection is finished. */
	if ((size_t)r != VP_SIMWIRE_B2G_SIZE)
		return -EPIPE;
	return 0;
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
	sim_send(sock, &un, MSG_DONTWAIT);
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

/* Receive one guest message and its descriptors, waiting at most until
 * deadline (now_ms() clock).  With may_be_empty, returns 0 at once when
 * nothing is queued.  1 on success, else -errno (-ECONNRESET: closed). */
static int sim_recv(int sock, union vp_simwire_g2b *msg, int *fds, unsigned *nfds,
		    uint64_t deadline, bool may_be_empty)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * (SIM_MAX_FDS + 2))];
		struct cmsghdr align;
	} ctl;
	size_t got = 0;
	int err;

	*nfds = 0;
	while (got < VP_SIMWIRE_G2B_SIZE) {
		struct iovec iov = {.iov_base = msg->bytes + got,
				    .iov_len = VP_SIMWIRE_G2B_SIZE - got};
		struct msghdr mh = {.msg_iov = &iov,
				    .msg_iovlen = 1,
				    .msg_control = ctl.buf,
				    .msg_controllen = sizeof(ctl.buf)};
		ssize_t r = recvmsg(sock, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			uint64_t now = now_ms();
			struct pollfd pfd = {.fd = sock, .events = POLLIN};

			if (got == 0 && may_be_empty)
				return 0;
			if (now >= deadline) {
				err = -ETIMEDOUT;
				goto fail;
			}
			if (poll(&pfd, 1, (int)(deadline - now)) < 0 && errno != EINTR) {
				err = -errno;
				goto fail;
			}
			continue;
		}
		if (r < 0) {
			err = -errno;
			goto fail;
		}
		err = sim_take_fds(&mh, fds, nfds);
		if (err)
			goto fail;
		if (r == 0) {
			err = -ECONNRESET;
			goto fail;
		}
		got += (size_t)r;
	}
	return 1;
fail:
	close_fds(fds, nfds);
	return err;
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

/* A descriptor the guest claims is an eventfd: check, and make sure our
 * reads and writes on it never block. */
static bool sim_check_eventfd(int fd)
{
	char path[64], target[64];
	ssize_t n;
	int fl;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	n = readlink(path, target, sizeof(target) - 1);
	if (n < 0)
		return false;
	target[n] = '\0';
	if (strcmp(target, "anon_inode:[eventfd]") != 0)
		return false;
	fl = fcntl(fd, F_GETFL);
	if (fl < 0)
		return false;
	return (fl & O_NONBLOCK) || fcntl(fd, F_SETFL, fl | O_NONBLOCK) == 0;
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

/* The connection is over (guest gone, hung or misbehaving): every port
 * of the domain goes dead; mappings stay valid until forget_domain(). */
static void sim_dom_kill(struct sim_hv *s, struct sim_dom *d, const char *why)
{
	unsigned dead = 0;

	if (d->state != SIM_DOM_LIVE)
		return;
	epoll_ctl(s->epfd, EPOLL_CTL_DEL, d->sock, NULL);
	close(d->sock);
	d->sock = -1;
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

/* A guest message outside any request: only PORT_CLOSED is allowed. */
static int sim_handle_notice(struct sim_hv *s, struct sim_dom *d,
			     const union vp_simwire_g2b *m)
{
	uint32_t remote;

	if (le32toh(m->hdr.magic) != VP_SIMWIRE_MAGIC ||
	    le16toh(m->hdr.type) != VP_SIMWIRE_PORT_CLOSED)
		return -EPROTO;
	remote = le32toh(m->port_closed.port);
	for (unsigned i = 1; i < s->nports; i++) {
		struct sim_port *p = &s->ports[i];

		if (p->state == SIM_PORT_BOUND && p->dom == d->domid &&
		    p->remote_port == remote) {
			sim_port_close_fds(s, p);
			p->state = SIM_PORT_DEAD;
			vp_info("dom %u: sim: guest closed event channel %u (local port %u)",
				d->domid, remote, i);
		}
	}
	/* A notice for a port we already unbound crossed our UNBIND. */
	return 0;
}

/* Send req and wait for the reply of type want, handling PORT_CLOSED
 * notices that arrive first.  The whole exchange is bounded by
 * SIM_TIMEOUT_MS.  0 or -errno; the caller kills the connection on
 * error. */
static int sim_call(struct sim_hv *s, struct sim_dom *d, const void *req, uint16_t want,
		    union vp_simwire_g2b *rep, int *fds, unsigned *nfds)
{
	uint64_t deadline = now_ms() + SIM_TIMEOUT_MS;
	int err;

	err = sim_send(d->sock, req, 0);
	if (err)
		return err;
	for (;;) {
		err = sim_recv(d->sock, rep, fds, nfds, deadline, false);
		if (err < 0)
			return err;
		if (le32toh(rep->hdr.magic) != VP_SIMWIRE_MAGIC) {
			close_fds(fds, nfds);
			return -EPROTO;
		}
		if (le16toh(rep->hdr.type) == want)
			return 0;
		if (*nfds) {
			close_fds(fds, nfds);
			return -EPROTO;
		}
		err = sim_handle_notice(s, d, rep);
		if (err)
			return err;
	}
}

static int sim_status_err(int32_t status)
{
	return (status < 0 && status > -4096) ? status : -EPROTO;
}

static int sim_hello(struct sim_hv *s, struct sim_dom *d)
{
	struct vp_simwire_hello req;
	union vp_simwire_g2b rep;
	const struct vp_simwire_hello_reply *h = &rep.hello_reply;
	uint16_t dom = d->domid;
	uint64_t gnt_bytes;
	int fds[SIM_MAX_FDS];
	unsigned nfds = 0;
	int32_t status;
	void *p;
	int err;

	memset(&req, 0, sizeof(req));
	sim_hdr_init(&req.hdr, VP_SIMWIRE_HELLO);
	req.backend_domid = htole16(s->self_domid);
	err = sim_call(s, d, &req, VP_SIMWIRE_HELLO_REPLY, &rep, fds, &nfds);
	if (err) {
		if (err == -ETIMEDOUT)
			vp_err("dom %u: sim: refusing guest: no answer to HELLO within %d ms",
			       dom, SIM_TIMEOUT_MS);
		else
			vp_err("dom %u: sim: refusing guest: HELLO failed: %s", dom,
			       strerror(-err));
		return err;
	}
	status = (int32_t)le32toh((uint32_t)h->status);
	err = -EPROTO;
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
	if (nfds != 2) {
		vp_err("dom %u: sim: refusing guest: HELLO reply carried %u descriptors, "
		       "expected 2",
		       dom, nfds);
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
	vp_info("dom %u: sim: guest connected (%zu KiB RAM, %u grant entries)", dom,
		d->ram_bytes >> 10, d->gnt_entries);
	return 0;
fail:
	close_fds(fds, &nfds);
	sim_dom_unmap(d, false);
	return err;
}

/* The record of dom, contacting the guest on first use.  NULL + *err when
 * the guest cannot be reached at all (not remembered: it may start
 * later); a guest that answers wrongly is remembered as REFUSED. */
static struct sim_dom *sim_dom_get(struct sim_hv *s, uint16_t dom, int *err)
{
	struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP};
	struct sim_dom *d = sim_dom_find(s, dom);
	int sock = -1;

	if (d)
		return d;
	*err = sim_connect(s, dom, &sock);
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
	*err = sim_hello(s, d);
	ev.data.u64 = SIM_SOCK_TAG | dom;
	if (!*err && epoll_ctl(s->epfd, EPOLL_CTL_ADD, sock, &ev) < 0) {
		*err = -errno;
		vp_err("dom %u: sim: cannot watch the guest socket: %s", dom,
		       strerror(errno));
		sim_dom_unmap(d, false);
	}
	if (*err) {
		close(sock);
		d->sock = -1;
		d->state = SIM_DOM_REFUSED;
		d->refuse_err = -*err;
	} else {
		d->state = SIM_DOM_LIVE;
	}
	d->next = s->doms;
	s->doms = d;
	return d;
}

/* The record of a connected domain, or NULL + *err. */
static struct sim_dom *sim_dom_live(struct sim_hv *s, uint16_t dom, int *err)
{
	struct sim_dom *d = sim_dom_get(s, dom, err);

	if (!d)
		return NULL;
	switch (d->state) {
	case SIM_DOM_LIVE:
		return d;
	case SIM_DOM_DEAD:
		*err = -ESRCH;
		return NULL;
	case SIM_DOM_REFUSED:
	default:
		*err = -d->refuse_err;
		return NULL;
	}
}

/* The guest socket is readable: notices, or the guest went away. */
static void sim_dom_readable(struct sim_hv *s, uint16_t dom)
{
	struct sim_dom *d = sim_dom_find(s, dom);

	if (!d || d->state != SIM_DOM_LIVE)
		return;
	for (int i = 0; i < SIM_NOTICES_PER_WAKE; i++) {
		union vp_simwire_g2b m;
		int fds[SIM_MAX_FDS];
		unsigned nfds = 0;
		int r = sim_recv(d->sock, &m, fds, &nfds, now_ms() + SIM_TIMEOUT_MS, true);

		if (r == 0)
			return;
		if (r < 0) {
			sim_dom_kill(s, d, r == -ECONNRESET ? "guest closed it" : strerror(-r));
			return;
		}
		if (nfds) {
			close_fds(fds, &nfds);
			sim_dom_kill(s, d, "descriptors on a notice");
			return;
		}
		if (sim_handle_notice(s, d, &m)) {
			sim_dom_kill(s, d, "unexpected message");
			return;
		}
	}
}

/* --- event channels --- */

static int sim_evtchn_fd(struct vp_hv *hv)
{
	return to_sim(hv)->epfd;
}

static int sim_evtchn_bind(struct vp_hv *hv, uint16_t dom, uint32_t remote_port)
{
	struct sim_hv *s = to_sim(hv);
	struct epoll_event ev = {.events = EPOLLIN};
	struct vp_simwire_bind req;
	union vp_simwire_g2b rep;
	struct sim_dom *d;
	struct sim_port *p;
	int fds[SIM_MAX_FDS];
	unsigned nfds = 0;
	int32_t status;
	int err, port;

	d = sim_dom_live(s, dom, &err);
	if (!d)
		return err;
	memset(&req, 0, sizeof(req));
	sim_hdr_init(&req.hdr, VP_SIMWIRE_BIND);
	req.port = htole32(remote_port);
	err = sim_call(s, d, &req, VP_SIMWIRE_BIND_REPLY, &rep, fds, &nfds);
	if (err) {
		sim_dom_kill(s, d,
			     err == -ETIMEDOUT ? "no answer to BIND in time" : strerror(-err));
		return err;
	}
	status = (int32_t)le32toh((uint32_t)rep.bind_reply.status);
	/* Descriptors come with success only: two then, none otherwise.  Every
	 * way out of here closes what it does not keep. */
	if (le32toh(rep.bind_reply.port) != remote_port ||
	    nfds != (status == 0 ? 2u : 0u) ||
	    (status == 0 && (!sim_check_eventfd(fds[0]) || !sim_check_eventfd(fds[1])))) {
		close_fds(fds, &nfds);
		sim_dom_kill(s, d, "malformed BIND reply");
		return -EPROTO;
	}
	if (status != 0) {
		vp_debug("dom %u: sim: guest refused to bind port %u: %s", dom, remote_port,
			 strerror(-sim_status_err(status)));
		return sim_status_err(status);
	}
	port = sim_port_alloc(s);
	ev.data.u64 = (uint64_t)port;
	if (port < 0 || epoll_ctl(s->epfd, EPOLL_CTL_ADD, fds[0], &ev) < 0) {
		err = port < 0 ? port : -errno;
		close_fds(fds, &nfds);
		sim_send_unbind(d->sock, remote_port);
		return err;
	}
	p = &s->ports[port];
	*p = (struct sim_port){.state = SIM_PORT_BOUND,
			       .dom = dom,
			       .remote_port = remote_port,
			       .kick_fd = fds[0],
			       .irq_fd = fds[1]};
	return port;
}

static int sim_evtchn_notify(struct vp_hv *hv, int port)
{
	struct sim_port *p = sim_port_get(to_sim(hv), port);
	const uint64_t one = 1;

	if (!p || p->state == SIM_PORT_FORGOTTEN)
		return -ENOENT;
	if (p->state == SIM_PORT_DEAD)
		return -ENOTCONN;
	if (write(p->irq_fd, &one, sizeof(one)) == (ssize_t)sizeof(one))
		return 0;
	/* EAGAIN: the counter is saturated, the guest has an event pending. */
	return errno == EAGAIN ? 0 : -errno;
}

static int sim_evtchn_pending(struct vp_hv *hv)
{
	struct sim_hv *s = to_sim(hv);
	int rounds = 0;

	for (;;) {
		const struct epoll_event *ev;
		struct sim_port *p;
		uint64_t counter;
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
		if (read(p->kick_fd, &counter, sizeof(counter)) == (ssize_t)sizeof(counter))
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
	int err = 0;

	if (!p)
		return -ENOENT;
	if (p->state == SIM_PORT_BOUND) {
		struct sim_dom *d = sim_dom_find(s, p->dom);

		if (d && d->state == SIM_DOM_LIVE)
			sim_send_unbind(d->sock, p->remote_port);
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

	for (unsigned i = 1; i < s->nports; i++) {
		struct sim_port *p = &s->ports[i];

		if ((p->state == SIM_PORT_BOUND || p->state == SIM_PORT_DEAD) &&
		    p->dom == dom) {
			sim_port_close_fds(s, p);
			p->state = SIM_PORT_FORGOTTEN;
		}
	}
	for (pp = &s->doms; *pp; pp = &(*pp)->next) {
		if ((*pp)->domid == dom) {
			d = *pp;
			*pp = d->next;
			break;
		}
	}
	if (!d)
		return;
	if (d->sock >= 0) {
		epoll_ctl(s->epfd, EPOLL_CTL_DEL, d->sock, NULL);
		close(d->sock);
	}
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
	if (s->doms || s->retired)
		return -EBUSY;
	s->self_domid = domid;
	return 0;
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
	if (!s->run_dir || s->epfd < 0) {
		vp_err("sim: cannot set up: %s", strerror(errno));
		if (s->epfd >= 0)
			close(s->epfd);
		free(s->run_dir);
		free(s);
		return NULL;
	}
	return &s->hv;
}
