/* SPDX-License-Identifier: MIT */
/*
 * sim-hostile-guest: a simulated guest written from vproxy/simwire.h alone
 * that abuses what the wire hands it, for tests/integration/sim_hostile.sh.
 * It listens on <run-dir>/dom<D>.sock and, by --mode:
 *
 *   silent-hello  accepts the backend and never answers HELLO;
 *   silent-bind   answers HELLO, never answers BIND;
 *   kick-drain    answers correctly, then clears O_NONBLOCK on the kick
 *                 eventfd it shares with the backend and, over and over,
 *                 kicks and at once drains the counter itself (so the
 *                 backend finds it empty after epoll said it was
 *                 readable), then stays quiet for a while;
 *   irq-fill      answers correctly, then clears O_NONBLOCK on the irq
 *                 socket it sent, fills that socket's queue, never reads
 *                 its own end, and keeps posting register reads on its
 *                 ring so that the backend raises interrupts.
 *
 * Its "RAM" holds a shared page at gfn 1 (magic, version, an empty ring)
 * for event-channel port 1, so the test writes ring-ref 1 and
 * event-channel 1 in the frontend node.  Runs --seconds, then exits 0;
 * 1 on a setup error.  Every wait is bounded.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <vproxy/proto.h>
#include <vproxy/simwire.h>

#define RAM_BYTES (64u * VP_SIMWIRE_PAGE_SIZE)
#define RING_GFN 1u
#define PORT 1u

enum mode { SILENT_HELLO, SILENT_BIND, KICK_DRAIN, IRQ_FILL };

struct guest {
	enum mode mode;
	uint16_t domid;
	int ram_fd, gnt_fd;
	uint8_t *ram;
	int kick, irq_mine, irq_theirs; /* -1 until BIND */
	struct vproxy_front_ring ring;
};

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int sealed_memfd(size_t bytes)
{
	int fd = memfd_create("hostile", MFD_CLOEXEC | MFD_ALLOW_SEALING);

	if (fd < 0 || ftruncate(fd, (off_t)bytes) < 0 ||
	    fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0)
		return -1;
	return fd;
}

static void hdr(struct vp_simwire_hdr *h, uint16_t type)
{
	h->magic = htole32(VP_SIMWIRE_MAGIC);
	h->type = htole16(type);
	h->version = htole16(VP_SIMWIRE_VERSION);
}

static int send_record(int conn, const void *msg, const int *fds, unsigned nfds)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * 2)];
		struct cmsghdr align;
	} ctl;
	struct iovec iov = {.iov_base = (void *)msg, .iov_len = VP_SIMWIRE_G2B_SIZE};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};

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
	return sendmsg(conn, &mh, MSG_NOSIGNAL | MSG_DONTWAIT) == VP_SIMWIRE_G2B_SIZE
	               ? 0
	               : -1;
}

static void answer_hello(struct guest *g, int conn)
{
	struct vp_simwire_hello_reply rep;
	int fds[2] = {g->ram_fd, g->gnt_fd};

	if (g->mode == SILENT_HELLO)
		return;
	memset(&rep, 0, sizeof(rep));
	hdr(&rep.hdr, VP_SIMWIRE_HELLO_REPLY);
	rep.page_size = htole32(VP_SIMWIRE_PAGE_SIZE);
	rep.ram_bytes = htole64(RAM_BYTES);
	rep.grant_entries = htole32(16);
	rep.guest_domid = htole16(g->domid);
	send_record(conn, &rep, fds, 2);
}

static void answer_bind(struct guest *g, int conn, uint32_t port)
{
	struct vp_simwire_bind_reply rep;
	int pair[2], fds[2];

	if (g->mode == SILENT_BIND || g->mode == SILENT_HELLO)
		return;
	memset(&rep, 0, sizeof(rep));
	hdr(&rep.hdr, VP_SIMWIRE_BIND_REPLY);
	rep.port = htole32(port);
	if (port != PORT || g->kick >= 0) {
		rep.status =
		        (int32_t)htole32((uint32_t)(port != PORT ? -ENOENT : -EBUSY));
		send_record(conn, &rep, NULL, 0);
		return;
	}
	g->kick = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (g->kick < 0 ||
	    socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, pair) < 0) {
		perror("sim-hostile-guest: eventfd/socketpair");
		exit(1);
	}
	g->irq_mine = pair[0];
	g->irq_theirs = pair[1];
	fds[0] = g->kick;
	fds[1] = g->irq_theirs;
	send_record(conn, &rep, fds, 2);
	/* What the attack needs: the flag lives in the open file
	 * descriptions the backend now shares. */
	if (fcntl(g->kick, F_SETFL, 0) < 0 || fcntl(g->irq_theirs, F_SETFL, 0) < 0) {
		perror("sim-hostile-guest: fcntl");
		exit(1);
	}
	fprintf(stderr, "sim-hostile-guest: bound; O_NONBLOCK cleared on both fds\n");
}

/* Take what the backend sent (whole records); false once it hung up. */
static bool serve(struct guest *g, int conn)
{
	for (;;) {
		union vp_simwire_b2g req;
		ssize_t r = recv(conn, &req, sizeof(req), MSG_DONTWAIT);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && errno == EAGAIN)
			return true;
		if (r != (ssize_t)sizeof(req))
			return false;
		switch (le16toh(req.hdr.type)) {
		case VP_SIMWIRE_HELLO: answer_hello(g, conn); break;
		case VP_SIMWIRE_BIND: answer_bind(g, conn, le32toh(req.bind.port)); break;
		default: break;
		}
	}
}

/* One attack step, every few milliseconds. */
static void attack(struct guest *g, uint64_t t)
{
	const uint64_t one = 1;
	uint64_t v;

	if (g->kick < 0)
		return;
	if (g->mode == KICK_DRAIN) {
		/* Bursts of kick-then-drain for 200 ms, then 2 s of silence:
		 * a backend stuck in read() would stay stuck that long. */
		if (t % 2200 >= 200)
			return;
		for (int i = 0; i < 50; i++) {
			struct iovec iov = {.iov_base = &v, .iov_len = sizeof(v)};

			if (write(g->kick, &one, sizeof(one)) != sizeof(one))
				return;
			/* The backend may have taken the count first: the fd
			 * blocks now, so this side reads with RWF_NOWAIT. */
			preadv2(g->kick, &iov, 1, -1, RWF_NOWAIT);
		}
		return;
	}
	if (g->mode == IRQ_FILL) {
		RING_IDX prod = g->ring.req_prod_pvt;
		int notify;

		/* Keep the backend's own end full (its queue is ours). */
		while (send(g->irq_theirs, &one, sizeof(one), MSG_DONTWAIT) ==
		       sizeof(one))
			;
		/* A register read (MagicValue) makes the backend answer and
		 * raise an interrupt. */
		if (RING_FULL(&g->ring)) {
			/* Answers are never consumed but by this: throw them away. */
			g->ring.rsp_cons = g->ring.sring->rsp_prod;
			if (RING_FULL(&g->ring))
				return;
		}
		*RING_GET_REQUEST(&g->ring, prod) =
		        (struct vproxy_mmio_req){.op = VPROXY_OP_READ,
		                                 .size = 4,
		                                 .id = (uint16_t)prod,
		                                 .offset = 0};
		g->ring.req_prod_pvt = prod + 1;
		RING_PUSH_REQUESTS_AND_CHECK_NOTIFY(&g->ring, notify);
		(void)notify;
		if (write(g->kick, &one, sizeof(one)) != sizeof(one))
			return;
	}
}

static int listen_on(const char *run_dir, uint16_t domid)
{
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	int fd, n;

	n = snprintf(addr.sun_path, sizeof(addr.sun_path), "%s/dom%u.sock", run_dir,
	             domid);
	if (n < 0 || (size_t)n >= sizeof(addr.sun_path))
		return -1;
	unlink(addr.sun_path);
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 ||
	    listen(fd, 4) < 0)
		return -1;
	return fd;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {{"run-dir", required_argument, NULL, 'r'},
	                                     {"domid", required_argument, NULL, 'd'},
	                                     {"mode", required_argument, NULL, 'm'},
	                                     {"seconds", required_argument, NULL, 's'},
	                                     {NULL, 0, NULL, 0}};
	struct guest g = {.kick = -1, .irq_mine = -1, .irq_theirs = -1};
	const char *run_dir = NULL, *mode = NULL;
	struct vproxy_page_hdr *page;
	uint64_t end, start;
	double seconds = 10;
	int lfd, conn = -1, c;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'r': run_dir = optarg; break;
		case 'd': g.domid = (uint16_t)strtoul(optarg, NULL, 10); break;
		case 'm': mode = optarg; break;
		case 's': seconds = strtod(optarg, NULL); break;
		default: return 1;
		}
	}
	if (!run_dir || !mode || !g.domid) {
		fprintf(stderr,
		        "usage: sim-hostile-guest --run-dir DIR --domid D --mode "
		        "silent-hello|silent-bind|kick-drain|irq-fill [--seconds S]\n");
		return 1;
	}
	if (strcmp(mode, "silent-hello") == 0)
		g.mode = SILENT_HELLO;
	else if (strcmp(mode, "silent-bind") == 0)
		g.mode = SILENT_BIND;
	else if (strcmp(mode, "kick-drain") == 0)
		g.mode = KICK_DRAIN;
	else if (strcmp(mode, "irq-fill") == 0)
		g.mode = IRQ_FILL;
	else {
		fprintf(stderr, "sim-hostile-guest: unknown mode %s\n", mode);
		return 1;
	}
	g.ram_fd = sealed_memfd(RAM_BYTES);
	g.gnt_fd = sealed_memfd(VP_SIMWIRE_PAGE_SIZE);
	if (g.ram_fd < 0 || g.gnt_fd < 0) {
		perror("sim-hostile-guest: memfd");
		return 1;
	}
	g.ram = mmap(NULL, RAM_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED, g.ram_fd, 0);
	if (g.ram == MAP_FAILED) {
		perror("sim-hostile-guest: mmap");
		return 1;
	}
	page = (struct vproxy_page_hdr *)(g.ram + RING_GFN * VP_SIMWIRE_PAGE_SIZE);
	SHARED_RING_INIT(vproxy_page_sring(page));
	FRONT_RING_INIT(&g.ring, vproxy_page_sring(page), VPROXY_RING_BYTES);
	page->version = VPROXY_PROTO_VERSION;
	__atomic_store_n(&page->magic, VPROXY_PAGE_MAGIC, __ATOMIC_RELEASE);
	lfd = listen_on(run_dir, g.domid);
	if (lfd < 0) {
		perror("sim-hostile-guest: listen");
		return 1;
	}
	fprintf(stderr, "sim-hostile-guest: dom %u listening (%s)\n", g.domid, mode);
	start = now_ms();
	end = start + (uint64_t)(seconds * 1000);
	while (now_ms() < end) {
		struct pollfd p = {.fd = conn >= 0 ? conn : lfd, .events = POLLIN};

		if (poll(&p, 1, 5) > 0) {
			if (conn < 0) {
				conn = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
				if (conn >= 0)
					fprintf(stderr,
					        "sim-hostile-guest: backend connected\n");
			} else if (!serve(&g, conn)) {
				fprintf(stderr, "sim-hostile-guest: backend hung up\n");
				close(conn);
				conn = -1;
			}
		}
		attack(&g, now_ms() - start);
	}
	fprintf(stderr, "sim-hostile-guest: done\n");
	return 0;
}
