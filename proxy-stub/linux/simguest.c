/* SPDX-License-Identifier: MIT */
/* A simulated guest: memfd RAM and grant table, event channels as a kick
 * eventfd and an irq datagram socketpair, handed to backends over a unix
 * SOCK_SEQPACKET socket by a listener thread (wire format in
 * vproxy/simwire.h). */
#include "simguest.h"

#include <vproxy/simwire.h>

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <xen/xen.h>
#include <xen/grant_table.h>

#define SG_MAX_PORTS 4096u
#define SG_MAX_CONNS 64u
/* Requests handled per connection per wake-up, so one chatty backend
 * cannot starve the others. */
#define SG_MSGS_PER_WAKE 16
/* How long accept() stays out of the poll set after running out of fds. */
#define SG_ACCEPT_PAUSE_MS 100
#define SG_SEALS (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL)

/* One backend connection; created, read and freed by the listener thread,
 * written to under sg->lock. */
struct sg_conn {
	struct sg_conn *next;
	int fd;
	bool hello;    /* HELLO answered: be is what the backend said it is */
	uint16_t be;
	union vp_simwire_b2g rx;
};

struct sg_port {
	bool used;
	uint16_t be;           /* the only backend domain that may bind it */
	int kick_fd;           /* eventfd: guest writes, backend reads */
	int irq_fd;            /* our end of the irq socketpair: guest reads */
	int irq_peer;          /* its other end, sent to the binder */
	struct sg_conn *bound; /* connection that bound it, or NULL */
};

struct simguest {
	uint16_t domid;
	/* Guards ports, grant allocation, conn->hello/be, port->bound and
	 * every send on a connection. */
	pthread_mutex_t lock;

	int ram_fd;
	uint8_t *ram;
	size_t ram_bytes;

	int gnt_fd;
	struct grant_entry_v1 *gnt;
	uint32_t gnt_entries;
	size_t gnt_bytes;

	struct sg_port *ports; /* index is the port number; 0 is never used */
	unsigned nports;

	char sock_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	bool sock_published;
	int listen_fd;
	int stop_pipe[2];
	pthread_t thread;
	bool thread_started;
	struct sg_conn *conns; /* list changes only in the listener thread */
	unsigned nconns;
};

static int sg_sealed_memfd(const char *name, size_t bytes, int *out)
{
	int fd, err;

	fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0)
		return -errno;
	if (ftruncate(fd, (off_t)bytes) < 0 || fcntl(fd, F_ADD_SEALS, SG_SEALS) < 0) {
		err = -errno;
		close(fd);
		return err;
	}
	*out = fd;
	return 0;
}

/* Fill addr with a path built by snprintf; -ENAMETOOLONG if it does not
 * fit in sun_path. */
static int sg_make_addr(struct sockaddr_un *addr, int len)
{
	addr->sun_family = AF_UNIX;
	if (len < 0 || (size_t)len >= sizeof(addr->sun_path))
		return -ENAMETOOLONG;
	return 0;
}

/* Connect a probe socket of type to addr: 0 or the errno. */
static int sg_probe(const struct sockaddr_un *addr, int type)
{
	int probe, r, err;

	probe = socket(AF_UNIX, type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (probe < 0)
		return errno;
	r = connect(probe, (const struct sockaddr *)addr, sizeof(*addr));
	err = errno;
	close(probe);
	return r == 0 ? 0 : err;
}

/* 0 when addr's path is free or a dead guest's socket, -EADDRINUSE when
 * a live guest answers there, -EEXIST when it is not a socket. */
static int sg_check_existing(const struct sockaddr_un *addr)
{
	struct stat st;
	int err;

	if (lstat(addr->sun_path, &st) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISSOCK(st.st_mode))
		return -EEXIST;
	err = sg_probe(addr, SOCK_SEQPACKET);
	/* A socket of another type (an older guest's stream socket): is
	 * anyone listening there? */
	if (err == EPROTOTYPE)
		err = sg_probe(addr, SOCK_STREAM);
	if (err == 0 || err == EAGAIN || err == EPROTOTYPE)
		return -EADDRINUSE;
	if (err == ECONNREFUSED)
		return 0;
	return -err;
}

/* Bind under a private name, set the mode, then rename over the final
 * path, so the socket is never reachable with the umask's mode. */
static int sg_listen(struct simguest *sg, const char *run_dir)
{
	static unsigned tmp_counter;
	struct sockaddr_un addr, tmp;
	unsigned seq = __atomic_fetch_add(&tmp_counter, 1, __ATOMIC_RELAXED);
	int fd, err;

	memset(&addr, 0, sizeof(addr));
	memset(&tmp, 0, sizeof(tmp));
	err = sg_make_addr(&addr, snprintf(addr.sun_path, sizeof(addr.sun_path),
					   "%s/dom%u.sock", run_dir, sg->domid));
	if (err)
		return err;
	err = sg_make_addr(&tmp, snprintf(tmp.sun_path, sizeof(tmp.sun_path),
					  "%s/.dom%u.%u.%u.tmp", run_dir, sg->domid,
					  (unsigned)getpid(), seq));
	if (err)
		return err;
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	/* A leftover of a crashed process that had our pid. */
	unlink(tmp.sun_path);
	if (bind(fd, (struct sockaddr *)&tmp, sizeof(tmp)) < 0) {
		err = -errno;
		goto fail_close;
	}
	if (chmod(tmp.sun_path, 0600) < 0 || listen(fd, 16) < 0) {
		err = -errno;
		goto fail_unlink;
	}
	err = sg_check_existing(&addr);
	if (err)
		goto fail_unlink;
	if (rename(tmp.sun_path, addr.sun_path) < 0) {
		err = -errno;
		goto fail_unlink;
	}
	memcpy(sg->sock_path, addr.sun_path, sizeof(sg->sock_path));
	sg->sock_published = true;
	sg->listen_fd = fd;
	return 0;

fail_unlink:
	unlink(tmp.sun_path);
fail_close:
	close(fd);
	return err;
}

/* Send one reply or notice without blocking: a backend that stopped
 * reading loses its connection rather than stalling the guest. */
static int sg_send(int fd, const void *msg, const int *fds, unsigned nfds)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * 2)];
		struct cmsghdr align;
	} ctl;
	struct iovec iov = {.iov_base = (void *)msg, .iov_len = VP_SIMWIRE_G2B_SIZE};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
	ssize_t r;

	if (nfds > 2)
		return -EINVAL;
	if (nfds) {
		struct cmsghdr *cm;

		memset(&ctl, 0, sizeof(ctl));
		mh.msg_control = ctl.buf;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
		cm = CMSG_FIRSTHDR(&mh);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
		memcpy(CMSG_DATA(cm), fds, sizeof(int) * nfds);
	}
	do {
		r = sendmsg(fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
	} while (r < 0 && errno == EINTR);
	if (r < 0)
		return -errno;
	if ((size_t)r != VP_SIMWIRE_G2B_SIZE)
		return -EPIPE;
	return 0;
}

static void sg_fill_hdr(struct vp_simwire_hdr *hdr, uint16_t type)
{
	hdr->magic = htole32(VP_SIMWIRE_MAGIC);
	hdr->type = htole16(type);
	hdr->version = htole16(VP_SIMWIRE_VERSION);
}

static struct sg_port *sg_port_get(struct simguest *sg, int port)
{
	if (port <= 0 || (unsigned)port >= sg->nports || !sg->ports[port].used)
		return NULL;
	return &sg->ports[port];
}

static int sg_handle_hello(struct simguest *sg, struct sg_conn *c,
			   const struct vp_simwire_hello *req)
{
	struct vp_simwire_hello_reply rep;
	int fds[2] = {sg->ram_fd, sg->gnt_fd};
	int32_t status = 0;

	memset(&rep, 0, sizeof(rep));
	sg_fill_hdr(&rep.hdr, VP_SIMWIRE_HELLO_REPLY);
	if (le16toh(req->hdr.version) != VP_SIMWIRE_VERSION)
		status = -EPROTONOSUPPORT;
	else if (c->hello)
		status = -EALREADY;
	rep.status = (int32_t)htole32((uint32_t)status);
	rep.guest_domid = htole16(sg->domid);
	if (status)
		return sg_send(c->fd, &rep, NULL, 0);
	rep.page_size = htole32(VP_SIMWIRE_PAGE_SIZE);
	rep.ram_bytes = htole64((uint64_t)sg->ram_bytes);
	rep.grant_entries = htole32(sg->gnt_entries);
	c->hello = true;
	c->be = le16toh(req->backend_domid);
	return sg_send(c->fd, &rep, fds, 2);
}

static int sg_handle_bind(struct simguest *sg, struct sg_conn *c,
			  const struct vp_simwire_bind *req)
{
	struct vp_simwire_bind_reply rep;
	uint32_t port = le32toh(req->port);
	struct sg_port *p = NULL;
	int32_t status = 0;
	int fds[2];

	memset(&rep, 0, sizeof(rep));
	sg_fill_hdr(&rep.hdr, VP_SIMWIRE_BIND_REPLY);
	rep.port = htole32(port);
	if (port <= (uint32_t)SG_MAX_PORTS)
		p = sg_port_get(sg, (int)port);
	if (le16toh(req->hdr.version) != VP_SIMWIRE_VERSION)
		status = -EPROTONOSUPPORT;
	else if (!c->hello)
		status = -EPERM;
	else if (!p)
		status = -ENOENT;
	else if (p->be != c->be)
		status = -EPERM;
	else if (p->bound)
		status = -EBUSY;
	rep.status = (int32_t)htole32((uint32_t)status);
	if (status)
		return sg_send(c->fd, &rep, NULL, 0);
	fds[0] = p->kick_fd;
	fds[1] = p->irq_peer;
	p->bound = c;
	return sg_send(c->fd, &rep, fds, 2);
}

/* Handle one complete request (under sg->lock). 0, or -errno to drop the
 * connection. */
static int sg_handle(struct simguest *sg, struct sg_conn *c)
{
	const union vp_simwire_b2g *m = &c->rx;

	if (le32toh(m->hdr.magic) != VP_SIMWIRE_MAGIC)
		return -EPROTO;
	switch (le16toh(m->hdr.type)) {
	case VP_SIMWIRE_HELLO:
		return sg_handle_hello(sg, c, &m->hello);
	case VP_SIMWIRE_BIND:
		return sg_handle_bind(sg, c, &m->bind);
	case VP_SIMWIRE_UNBIND: {
		uint32_t port = le32toh(m->unbind.port);
		struct sg_port *p = NULL;

		if (port <= (uint32_t)SG_MAX_PORTS)
			p = sg_port_get(sg, (int)port);
		if (p && p->bound == c)
			p->bound = NULL;
		return 0;
	}
	default:
		return -EPROTO;
	}
}

static void sg_drop_conn(struct simguest *sg, struct sg_conn *c)
{
	struct sg_conn **pp;

	pthread_mutex_lock(&sg->lock);
	for (unsigned i = 1; i < sg->nports; i++)
		if (sg->ports[i].bound == c)
			sg->ports[i].bound = NULL;
	for (pp = &sg->conns; *pp; pp = &(*pp)->next) {
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	}
	sg->nconns--;
	pthread_mutex_unlock(&sg->lock);
	close(c->fd);
	free(c);
}

/* Read whole records (SOCK_SEQPACKET): one of the wrong size ends the
 * connection. */
static void sg_conn_readable(struct simguest *sg, struct sg_conn *c)
{
	for (int handled = 0; handled < SG_MSGS_PER_WAKE;) {
		struct iovec iov = {.iov_base = c->rx.bytes, .iov_len = VP_SIMWIRE_B2G_SIZE};
		struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
		ssize_t r = recvmsg(c->fd, &mh, MSG_DONTWAIT);
		int err;

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (r != (ssize_t)VP_SIMWIRE_B2G_SIZE || (mh.msg_flags & MSG_TRUNC))
			goto drop;
		handled++;
		pthread_mutex_lock(&sg->lock);
		err = sg_handle(sg, c);
		pthread_mutex_unlock(&sg->lock);
		if (err)
			goto drop;
	}
	return;
drop:
	sg_drop_conn(sg, c);
}

/* Accept one connection. -errno when out of descriptors (the caller
 * pauses accepting) or 0. */
static int sg_accept(struct simguest *sg)
{
	struct sg_conn *c;
	int fd;

	fd = accept4(sg->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd < 0) {
		if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
		    errno == ENOMEM)
			return -errno;
		return 0;
	}
	c = sg->nconns < SG_MAX_CONNS ? calloc(1, sizeof(*c)) : NULL;
	if (!c) {
		close(fd);
		return 0;
	}
	c->fd = fd;
	pthread_mutex_lock(&sg->lock);
	c->next = sg->conns;
	sg->conns = c;
	sg->nconns++;
	pthread_mutex_unlock(&sg->lock);
	return 0;
}

static void *sg_listener(void *arg)
{
	struct simguest *sg = arg;
	struct pollfd *pfds = NULL;
	size_t cap = 0;
	bool accept_paused = false;

	for (;;) {
		size_t n = 2 + sg->nconns, i = 2;
		struct sg_conn *c, *next;
		int r;

		if (n > cap) {
			struct pollfd *grown = realloc(pfds, n * sizeof(*pfds));

			if (!grown)
				break;
			pfds = grown;
			cap = n;
		}
		pfds[0] = (struct pollfd){.fd = sg->stop_pipe[0], .events = POLLIN};
		pfds[1] = (struct pollfd){.fd = accept_paused ? -1 : sg->listen_fd,
					  .events = POLLIN};
		for (c = sg->conns; c; c = c->next)
			pfds[i++] = (struct pollfd){.fd = c->fd, .events = POLLIN};
		r = poll(pfds, n, accept_paused ? SG_ACCEPT_PAUSE_MS : -1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 || pfds[0].revents)
			break;
		/* The list holds the same conns in the same order as pfds:
		 * only this thread adds or removes, and it accepts last. */
		i = 2;
		for (c = sg->conns; c && i < n; c = next, i++) {
			next = c->next;
			if (pfds[i].revents)
				sg_conn_readable(sg, c);
		}
		accept_paused = false;
		if (pfds[1].revents & POLLIN)
			accept_paused = sg_accept(sg) < 0;
	}
	free(pfds);
	return NULL;
}

static void sg_free(struct simguest *sg)
{
	if (sg->thread_started) {
		char b = 0;
		ssize_t r;

		do {
			r = write(sg->stop_pipe[1], &b, 1);
		} while (r < 0 && errno == EINTR);
		pthread_join(sg->thread, NULL);
	}
	while (sg->conns) {
		struct sg_conn *c = sg->conns;

		sg->conns = c->next;
		close(c->fd);
		free(c);
	}
	for (unsigned i = 1; i < sg->nports; i++) {
		if (sg->ports[i].used) {
			close(sg->ports[i].kick_fd);
			close(sg->ports[i].irq_fd);
			close(sg->ports[i].irq_peer);
		}
	}
	free(sg->ports);
	if (sg->sock_published)
		unlink(sg->sock_path);
	if (sg->listen_fd >= 0)
		close(sg->listen_fd);
	for (int i = 0; i < 2; i++)
		if (sg->stop_pipe[i] >= 0)
			close(sg->stop_pipe[i]);
	if (sg->gnt)
		munmap(sg->gnt, sg->gnt_bytes);
	if (sg->gnt_fd >= 0)
		close(sg->gnt_fd);
	if (sg->ram)
		munmap(sg->ram, sg->ram_bytes);
	if (sg->ram_fd >= 0)
		close(sg->ram_fd);
	pthread_mutex_destroy(&sg->lock);
	free(sg);
}

struct simguest *simguest_create(const char *run_dir, uint16_t domid, size_t ram_bytes,
				 unsigned max_grants)
{
	struct simguest *sg;
	void *p;
	int err;

	if (!run_dir || ram_bytes == 0 || ram_bytes > VP_SIMWIRE_MAX_RAM_BYTES ||
	    max_grants > VP_SIMWIRE_MAX_GRANT_ENTRIES) {
		errno = EINVAL;
		return NULL;
	}
	sg = calloc(1, sizeof(*sg));
	if (!sg)
		return NULL;
	sg->domid = domid;
	sg->ram_fd = sg->gnt_fd = sg->listen_fd = -1;
	sg->stop_pipe[0] = sg->stop_pipe[1] = -1;
	pthread_mutex_init(&sg->lock, NULL);
	sg->ram_bytes = (ram_bytes + VP_SIMWIRE_PAGE_SIZE - 1) /
			VP_SIMWIRE_PAGE_SIZE * VP_SIMWIRE_PAGE_SIZE;
	sg->gnt_entries = max_grants;
	sg->gnt_bytes = (size_t)vp_simwire_grant_table_bytes(max_grants);

	err = sg_sealed_memfd("vproxy-guest-ram", sg->ram_bytes, &sg->ram_fd);
	if (err)
		goto fail;
	p = mmap(NULL, sg->ram_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, sg->ram_fd, 0);
	if (p == MAP_FAILED) {
		err = -errno;
		goto fail;
	}
	sg->ram = p;
	err = sg_sealed_memfd("vproxy-guest-grants", sg->gnt_bytes, &sg->gnt_fd);
	if (err)
		goto fail;
	p = mmap(NULL, sg->gnt_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, sg->gnt_fd, 0);
	if (p == MAP_FAILED) {
		err = -errno;
		goto fail;
	}
	sg->gnt = p;
	if (pipe2(sg->stop_pipe, O_CLOEXEC | O_NONBLOCK) < 0) {
		err = -errno;
		goto fail;
	}
	err = sg_listen(sg, run_dir);
	if (err)
		goto fail;
	err = -pthread_create(&sg->thread, NULL, sg_listener, sg);
	if (err)
		goto fail;
	sg->thread_started = true;
	return sg;

fail:
	sg_free(sg);
	errno = -err;
	return NULL;
}

void simguest_destroy(struct simguest *sg)
{
	if (sg)
		sg_free(sg);
}

void *simguest_ram(struct simguest *sg, size_t *len)
{
	if (len)
		*len = sg->ram_bytes;
	return sg->ram;
}

uint16_t simguest_domid(const struct simguest *sg)
{
	return sg->domid;
}

int simguest_grant(struct simguest *sg, uint16_t be, uint64_t first_gfn, unsigned n,
		   int readonly)
{
	uint64_t pages = sg->ram_bytes / VP_SIMWIRE_PAGE_SIZE;
	uint16_t flags = GTF_permit_access | (readonly ? GTF_readonly : 0);
	uint32_t run = 0, ref, start = 0;
	bool found = false;

	if (n == 0 || first_gfn >= pages || n > pages - first_gfn ||
	    first_gfn + n - 1 > UINT32_MAX)
		return -EINVAL;
	pthread_mutex_lock(&sg->lock);
	for (ref = GNTTAB_NR_RESERVED_ENTRIES; ref < sg->gnt_entries; ref++) {
		/* Only this guest writes its table; flags 0 means free. */
		if (__atomic_load_n(&sg->gnt[ref].flags, __ATOMIC_RELAXED)) {
			run = 0;
			continue;
		}
		if (++run == n) {
			start = ref + 1 - n;
			found = true;
			break;
		}
	}
	if (!found) {
		pthread_mutex_unlock(&sg->lock);
		return -ENOSPC;
	}
	for (unsigned i = 0; i < n; i++) {
		struct grant_entry_v1 *e = &sg->gnt[start + i];

		__atomic_store_n(&e->domid, be, __ATOMIC_RELAXED);
		__atomic_store_n(&e->frame, (uint32_t)(first_gfn + i), __ATOMIC_RELAXED);
		/* Release: a backend that sees the flags (acquire) also sees
		 * domid and frame. */
		__atomic_store_n(&e->flags, flags, __ATOMIC_RELEASE);
	}
	pthread_mutex_unlock(&sg->lock);
	return (int)start;
}

void simguest_ungrant(struct simguest *sg, int ref, unsigned n)
{
	if (ref < 0 || (uint32_t)ref >= sg->gnt_entries || n > sg->gnt_entries - (uint32_t)ref)
		return;
	pthread_mutex_lock(&sg->lock);
	for (unsigned i = 0; i < n; i++) {
		struct grant_entry_v1 *e = &sg->gnt[(uint32_t)ref + i];

		__atomic_store_n(&e->flags, 0, __ATOMIC_RELEASE);
		__atomic_store_n(&e->domid, 0, __ATOMIC_RELAXED);
		__atomic_store_n(&e->frame, 0, __ATOMIC_RELAXED);
	}
	pthread_mutex_unlock(&sg->lock);
}

int simguest_evtchn_alloc(struct simguest *sg, uint16_t be)
{
	unsigned port;
	int kick, irq[2], err;

	pthread_mutex_lock(&sg->lock);
	for (port = 1; port < sg->nports; port++)
		if (!sg->ports[port].used)
			break;
	if (port >= sg->nports) {
		unsigned want = sg->nports ? sg->nports * 2 : 16;
		struct sg_port *grown;

		if (want > SG_MAX_PORTS + 1)
			want = SG_MAX_PORTS + 1;
		if (port >= want) {
			err = -ENOSPC;
			goto out;
		}
		grown = realloc(sg->ports, want * sizeof(*grown));
		if (!grown) {
			err = -ENOMEM;
			goto out;
		}
		memset(grown + sg->nports, 0, (want - sg->nports) * sizeof(*grown));
		sg->ports = grown;
		sg->nports = want;
	}
	kick = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (kick < 0) {
		err = -errno;
		goto out;
	}
	if (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, irq) < 0) {
		err = -errno;
		close(kick);
		goto out;
	}
	sg->ports[port] = (struct sg_port){.used = true,
					   .be = be,
					   .kick_fd = kick,
					   .irq_fd = irq[0],
					   .irq_peer = irq[1],
					   .bound = NULL};
	err = (int)port;
out:
	pthread_mutex_unlock(&sg->lock);
	return err;
}

int simguest_evtchn_notify(struct simguest *sg, int port)
{
	const uint64_t one = 1;
	struct sg_port *p;
	int err = 0;

	pthread_mutex_lock(&sg->lock);
	p = sg_port_get(sg, port);
	if (!p) {
		err = -ENOENT;
	} else if (write(p->kick_fd, &one, sizeof(one)) != (ssize_t)sizeof(one)) {
		/* EAGAIN: the counter is saturated, so a kick is pending. */
		if (errno != EAGAIN)
			err = -errno;
	}
	pthread_mutex_unlock(&sg->lock);
	return err;
}

int simguest_evtchn_fd(struct simguest *sg, int port)
{
	struct sg_port *p;
	int fd;

	pthread_mutex_lock(&sg->lock);
	p = sg_port_get(sg, port);
	fd = p ? p->irq_fd : -ENOENT;
	pthread_mutex_unlock(&sg->lock);
	return fd;
}

void simguest_evtchn_close(struct simguest *sg, int port)
{
	struct sg_port *p;

	pthread_mutex_lock(&sg->lock);
	p = sg_port_get(sg, port);
	if (!p) {
		pthread_mutex_unlock(&sg->lock);
		return;
	}
	if (p->bound) {
		struct vp_simwire_port_closed msg;

		memset(&msg, 0, sizeof(msg));
		sg_fill_hdr(&msg.hdr, VP_SIMWIRE_PORT_CLOSED);
		msg.port = htole32((uint32_t)port);
		/* The listener thread sees the shutdown and drops the
		 * connection; the backend then sees the guest go away. */
		if (sg_send(p->bound->fd, &msg, NULL, 0) < 0)
			shutdown(p->bound->fd, SHUT_RDWR);
	}
	close(p->kick_fd);
	close(p->irq_fd);
	close(p->irq_peer);
	*p = (struct sg_port){.used = false};
	pthread_mutex_unlock(&sg->lock);
}

int simguest_evtchn_clear(int fd)
{
	int n = 0;

	/* The backend sends at most one datagram while one is unread; a
	 * bound keeps a flood from another sender finite. */
	while (n < 1024) {
		uint64_t v;
		ssize_t r = recv(fd, &v, sizeof(v), MSG_DONTWAIT);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return (errno == EAGAIN || errno == EWOULDBLOCK) ? n : -errno;
		n++;
	}
	return n;
}
