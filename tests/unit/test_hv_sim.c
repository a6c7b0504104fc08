/* SPDX-License-Identifier: MIT */
/* The sim hypervisor layer against simulated guests in this process:
 * the rendezvous, guest memory (direct and page-by-page), grants, event
 * channels both ways, guest death, forgetting a domain, and hostile or
 * hung guests (fake listeners written here): none of them may block the
 * layer, which serves every other guest from the same thread. */
#include <check.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <vproxy/simwire.h>

#include "hv.h"
#include "simguest.h"

#define PAGE 4096u
#define WAIT_MS 2000

static char run_dir[64];

/* --- fixture and helpers --- */

static void make_run_dir(void)
{
	strcpy(run_dir, "/tmp/vp-hv-sim-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(run_dir));
}

static void remove_run_dir(void)
{
	DIR *dir = opendir(run_dir);
	struct dirent *de;
	char path[512];

	if (!dir)
		return;
	while ((de = readdir(dir))) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", run_dir, de->d_name);
		unlink(path);
	}
	closedir(dir);
	rmdir(run_dir);
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static uint64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static bool readable(int fd, int ms)
{
	struct pollfd pfd = {.fd = fd, .events = POLLIN};

	return poll(&pfd, 1, ms) == 1 && (pfd.revents & (POLLIN | POLLHUP));
}

/* Open descriptors of this process: a test that ends with as many as it
 * started with leaked none. */
static int count_fds(void)
{
	DIR *dir = opendir("/proc/self/fd");
	int n = 0;

	ck_assert_ptr_nonnull(dir);
	while (readdir(dir))
		n++;
	closedir(dir);
	return n;
}

static struct vp_hv *open_hv(void)
{
	struct vp_hv *hv = vp_hv_sim_open(run_dir);

	ck_assert_ptr_nonnull(hv);
	ck_assert_str_eq(hv->ops->name, "sim");
	return hv;
}

static struct simguest *new_guest(uint16_t domid, size_t ram, unsigned grants)
{
	struct simguest *sg = simguest_create(run_dir, domid, ram, grants);

	ck_assert_msg(sg != NULL, "simguest_create: %s", strerror(errno));
	return sg;
}

static uint8_t *guest_page(struct simguest *sg, uint64_t gfn)
{
	size_t len;
	uint8_t *ram = simguest_ram(sg, &len);

	ck_assert_uint_lt(gfn * PAGE, len);
	return ram + gfn * PAGE;
}

/* The next pending port, waiting up to ms for the evtchn fd; -1 if none. */
static int wait_pending(struct vp_hv *hv, int ms)
{
	uint64_t end = now_ms() + (uint64_t)ms;

	for (;;) {
		int port = hv->ops->evtchn_pending(hv);
		uint64_t now = now_ms();

		if (port >= 0)
			return port;
		if (now >= end || !readable(hv->ops->evtchn_fd(hv), (int)(end - now)))
			return -1;
	}
}

static uint64_t read_counter(int fd)
{
	uint64_t v = 0;

	ck_assert(readable(fd, WAIT_MS));
	ck_assert_int_eq(read(fd, &v, sizeof(v)), sizeof(v));
	return v;
}

/* Interrupts waiting on a guest's irq fd (datagrams), acknowledged. */
static int irq_count(int fd)
{
	ck_assert(readable(fd, WAIT_MS));
	return simguest_evtchn_clear(fd);
}

/* Let the layer take in what the guests sent (replies, notices) until
 * nothing more comes for 100 ms; the first port that had a kick, or -1. */
static int settle(struct vp_hv *hv)
{
	int first = -1;

	while (readable(hv->ops->evtchn_fd(hv), 100)) {
		int port = hv->ops->evtchn_pending(hv);

		if (port >= 0 && first < 0)
			first = port;
	}
	return first;
}

/* Domain callbacks seen, for the tests that count them. */
static int cb_calls, cb_result;
static uint16_t cb_dom;

static void count_cb(void *arg, uint16_t dom, int result)
{
	(void)arg;
	cb_calls++;
	cb_dom = dom;
	cb_result = result;
}

/* domain_ready(), waiting (at most 8 s) while it is in progress. */
static int ready(struct vp_hv *hv, uint16_t dom)
{
	uint64_t end = now_ms() + 8000;
	int r;

	while ((r = vp_hv_domain_ready(hv, dom)) == -EINPROGRESS && now_ms() < end) {
		readable(hv->ops->evtchn_fd(hv), 50);
		hv->ops->evtchn_pending(hv);
	}
	return r;
}

/* Bind and take the reply in: the local port (dead if the guest refused). */
static int bind_now(struct vp_hv *hv, uint16_t dom, uint32_t gp)
{
	int lp = hv->ops->evtchn_bind(hv, dom, gp);

	if (lp >= 0)
		settle(hv);
	return lp;
}

/* A bind the guest refuses gives a local port at once, dead once the
 * refusal is in; unbinding it frees it. */
static void bind_refused(struct vp_hv *hv, uint16_t dom, uint32_t gp)
{
	int lp = bind_now(hv, dom, gp);

	ck_assert_int_ge(lp, 0);
	ck_assert_int_eq(hv->ops->evtchn_notify(hv, lp), -ENOTCONN);
	ck_assert_int_eq(hv->ops->evtchn_unbind(hv, lp), 0);
}

static void *map1(struct vp_hv *hv, uint16_t dom, uint64_t gfn, int writable)
{
	return hv->ops->map_gfns(hv, dom, &gfn, 1, writable);
}

/* --- memory --- */

START_TEST(hello_and_consecutive_gfns)
{
	struct simguest *sg = new_guest(1, 1 << 20, 64);
	struct vp_hv *hv = open_hv();
	uint64_t gfns[3] = {3, 4, 5};
	uint8_t *p, *q;
	uint64_t t0 = now_ms();

	/* The first contact never waits: it is in progress, then ready, and
	 * the callback says so. */
	vp_hv_set_domain_cb(hv, count_cb, NULL);
	cb_calls = 0;
	errno = 0;
	ck_assert_ptr_null(hv->ops->map_gfns(hv, 1, gfns, 3, 1));
	ck_assert_int_eq(errno, EAGAIN);
	ck_assert_int_eq(vp_hv_domain_ready(hv, 1), -EINPROGRESS);
	ck_assert_uint_lt(now_ms() - t0, 500);
	ck_assert_int_eq(ready(hv, 1), 0);
	ck_assert_int_eq(cb_calls, 1);
	ck_assert_uint_eq(cb_dom, 1);
	ck_assert_int_eq(cb_result, 0);
	ck_assert_int_eq(vp_hv_domain_ready(hv, 1), 0);
	ck_assert_int_eq(cb_calls, 1);

	memset(guest_page(sg, 3), 'g', 3 * PAGE);
	p = hv->ops->map_gfns(hv, 1, gfns, 3, 1);
	ck_assert_ptr_nonnull(p);
	ck_assert_int_eq(p[0], 'g');
	ck_assert_int_eq(p[3 * PAGE - 1], 'g');
	/* Backend writes show up in the guest, and the other way round. */
	p[2 * PAGE + 100] = 'b';
	ck_assert_int_eq(guest_page(sg, 5)[100], 'b');
	guest_page(sg, 4)[7] = 'x';
	ck_assert_int_eq(p[PAGE + 7], 'x');
	/* Consecutive frames are a pointer into one RAM mapping. */
	q = hv->ops->map_gfns(hv, 1, &gfns[1], 1, 0);
	ck_assert_ptr_eq(q, p + PAGE);
	ck_assert_int_eq(hv->ops->unmap_gfns(hv, q, 1), 0);
	ck_assert_int_eq(hv->ops->unmap_gfns(hv, p, 3), 0);
	/* Every mapping was returned: a further unmap is a caller bug. */
	ck_assert_int_eq(hv->ops->unmap_gfns(hv, p, 3), -EINVAL);
	ck_assert_int_eq(hv->ops->unmap_gfns(hv, gfns, 1), -EINVAL);
	hv->ops->close(hv);
	simguest_destroy(sg);
}
END_TEST

START_TEST(nonconsecutive_gfns)
{
	struct simguest *sg = new_guest(2, 1 << 20, 64);
	struct vp_hv *hv = open_hv();
	uint64_t gfns[3] = {7, 2, 9}, ro_gfns[2] = {9, 2};
	uint8_t *p, *ro;
	int pipefd[2];

	ck_assert_int_eq(ready(hv, 2), 0);

	for (unsigned i = 0; i < 3; i++)
		memset(guest_page(sg, gfns[i]), 'A' + (int)i, PAGE);
	p = hv->ops->map_gfns(hv, 2, gfns, 3, 1);
	ck_assert_ptr_nonnull(p);
	for (unsigned i = 0; i < 3; i++) {
		ck_assert_int_eq(p[i * PAGE], 'A' + (int)i);
		ck_assert_int_eq(p[i * PAGE + PAGE - 1], 'A' + (int)i);
		p[i * PAGE + 10] = (uint8_t)('a' + i);
		ck_assert_int_eq(guest_page(sg, gfns[i])[10], 'a' + (int)i);
	}
	ck_assert_ptr_ne(p, guest_page(sg, 7));

	ro = hv->ops->map_gfns(hv, 2, ro_gfns, 2, 0);
	ck_assert_ptr_nonnull(ro);
	ck_assert_int_eq(ro[0], 'C');
	ck_assert_int_eq(ro[PAGE + 10], 'b');
	/* Page-by-page mappings are really read-only: the kernel refuses
	 * to write into them. */
	ck_assert_int_eq(pipe(pipefd), 0);
	ck_assert_int_eq(write(pipefd[1], "z", 1), 1);
	errno = 0;
	ck_assert_int_eq(read(pipefd[0], ro, 1), -1);
	ck_assert_int_eq(errno, EFAULT);
	close(pipefd[0]);
	close(pipefd[1]);

	ck_assert_int_eq(hv->ops->unmap_gfns(hv, ro, 1), -EINVAL);
	ck_assert_int_eq(hv->ops->unmap_gfns(hv, ro, 2), 0);
	ck_assert_int_eq(hv->ops->unmap_gfns(hv, p, 3), 0);
	hv->ops->close(hv);
	simguest_destroy(sg);
}
END_TEST

START_TEST(gfn_out_of_range)
{
	struct simguest *sg = new_guest(3, 16 * PAGE, 16);
	struct vp_hv *hv = open_hv();
	uint64_t bad[2] = {0, 1ull << 40}, ok[2] = {14, 15}, edge[2] = {15, 16};
	void *p;

	ck_assert_int_eq(ready(hv, 3), 0);

	errno = 0;
	ck_assert_ptr_null(map1(hv, 3, 16, 1));
	ck_assert_int_eq(errno, EINVAL);
	errno = 0;
	ck_assert_ptr_null(hv->ops->map_gfns(hv, 3, bad, 2, 0));
	ck_assert_int_eq(errno, EINVAL);
	errno = 0;
	ck_assert_ptr_null(hv->ops->map_gfns(hv, 3, edge, 2, 1));
	ck_assert_int_eq(errno, EINVAL);
	errno = 0;
	ck_assert_ptr_null(hv->ops->map_gfns(hv, 3, ok, 0, 1));
	ck_assert_int_eq(errno, EINVAL);
	p = hv->ops->map_gfns(hv, 3, ok, 2, 1);
	ck_assert_ptr_nonnull(p);
	ck_assert_int_eq(hv->ops->unmap_gfns(hv, p, 2), 0);
	hv->ops->close(hv);
	simguest_destroy(sg);
}
END_TEST

/* --- grants --- */

START_TEST(grants)
{
	struct simguest *sg = new_guest(4, 1 << 20, 64);
	struct vp_hv *hv = open_hv();
	uint32_t refs[3], one;
	int ref, r5, rro, ra, rb;
	uint8_t *p;

	ck_assert_int_eq(ready(hv, 4), 0);

	ref = simguest_grant(sg, 0, 10, 3, 0);
	ck_assert_int_ge(ref, 8);
	for (unsigned i = 0; i < 3; i++)
		refs[i] = (uint32_t)ref + i;
	memset(guest_page(sg, 10), 'q', 3 * PAGE);
	p = hv->ops->map_grants(hv, 4, refs, 3, 1);
	ck_assert_ptr_nonnull(p);
	ck_assert_int_eq(p[3 * PAGE - 1], 'q');
	p[PAGE] = 'w';
	ck_assert_int_eq(guest_page(sg, 11)[0], 'w');
	ck_assert_int_eq(hv->ops->unmap_grants(hv, p, 3), 0);

	/* Granted to another domain. */
	r5 = simguest_grant(sg, 5, 20, 1, 0);
	ck_assert_int_ge(r5, 8);
	one = (uint32_t)r5;
	errno = 0;
	ck_assert_ptr_null(hv->ops->map_grants(hv, 4, &one, 1, 0));
	ck_assert_int_eq(errno, EPERM);

	/* Read-only grant: mapping it writable is refused, read-only works. */
	rro = simguest_grant(sg, 0, 21, 1, 1);
	ck_assert_int_ge(rro, 8);
	guest_page(sg, 21)[5] = 'r';
	one = (uint32_t)rro;
	errno = 0;
	ck_assert_ptr_null(hv->ops->map_grants(hv, 4, &one, 1, 1));
	ck_assert_int_eq(errno, EACCES);
	p = hv->ops->map_grants(hv, 4, &one, 1, 0);
	ck_assert_ptr_nonnull(p);
	ck_assert_int_eq(p[5], 'r');
	ck_assert_int_eq(hv->ops->unmap_grants(hv, p, 1), 0);

	/* Never granted, out of the table, revoked. */
	one = 60;
	errno = 0;
	ck_assert_ptr_null(hv->ops->map_grants(hv, 4, &one, 1, 0));
	ck_assert_int_eq(errno, EPERM);
	one = 64;
	errno = 0;
	ck_assert_ptr_null(hv->ops->map_grants(hv, 4, &one, 1, 0));
	ck_assert_int_eq(errno, EINVAL);
	one = UINT32_MAX;
	errno = 0;
	ck_assert_ptr_null(hv->ops->map_grants(hv, 4, &one, 1, 0));
	ck_assert_int_eq(errno, EINVAL);
	simguest_ungrant(sg, ref, 3);
	errno = 0;
	ck_assert_ptr_null(hv->ops->map_grants(hv, 4, refs, 3, 0));
	ck_assert_int_eq(errno, EPERM);

	/* Grants of scattered frames are mapped page by page. */
	ra = simguest_grant(sg, 0, 30, 1, 0);
	rb = simguest_grant(sg, 0, 25, 1, 0);
	ck_assert_int_ge(ra, 8);
	ck_assert_int_ge(rb, 8);
	guest_page(sg, 30)[0] = '3';
	guest_page(sg, 25)[0] = '2';
	refs[0] = (uint32_t)ra;
	refs[1] = (uint32_t)rb;
	p = hv->ops->map_grants(hv, 4, refs, 2, 1);
	ck_assert_ptr_nonnull(p);
	ck_assert_int_eq(p[0], '3');
	ck_assert_int_eq(p[PAGE], '2');
	p[PAGE + 1] = '!';
	ck_assert_int_eq(guest_page(sg, 25)[1], '!');
	ck_assert_int_eq(hv->ops->unmap_grants(hv, p, 2), 0);
	/* One bad ref spoils the whole request. */
	refs[2] = (uint32_t)r5;
	errno = 0;
	ck_assert_ptr_null(hv->ops->map_grants(hv, 4, refs, 3, 0));
	ck_assert_int_eq(errno, EPERM);
	hv->ops->close(hv);
	simguest_destroy(sg);
}
END_TEST

START_TEST(self_domid)
{
	struct simguest *sg = new_guest(5, 1 << 20, 32);
	struct vp_hv *hv = open_hv();
	uint32_t ref0, ref7;
	int gp0, gp7, lp;
	void *p;

	vp_hv_set_self_domid(hv, 7);
	ck_assert_int_eq(ready(hv, 5), 0);
	ref7 = (uint32_t)simguest_grant(sg, 7, 1, 1, 0);
	ref0 = (uint32_t)simguest_grant(sg, 0, 2, 1, 0);
	p = hv->ops->map_grants(hv, 5, &ref7, 1, 1);
	ck_assert_ptr_nonnull(p);
	ck_assert_int_eq(hv->ops->unmap_grants(hv, p, 1), 0);
	errno = 0;
	ck_assert_ptr_null(hv->ops->map_grants(hv, 5, &ref0, 1, 1));
	ck_assert_int_eq(errno, EPERM);
	/* Ports are bindable only by the domain they were made for. */
	gp7 = simguest_evtchn_alloc(sg, 7);
	gp0 = simguest_evtchn_alloc(sg, 0);
	lp = bind_now(hv, 5, (uint32_t)gp7);
	ck_assert_int_ge(lp, 0);
	bind_refused(hv, 5, (uint32_t)gp0);
	/* Too late once a guest knows us. */
	ck_assert_int_eq(vp_hv_sim_set_self_domid(hv, 8), -EBUSY);
	ck_assert_int_eq(hv->ops->evtchn_unbind(hv, lp), 0);
	hv->ops->close(hv);
	simguest_destroy(sg);
}
END_TEST

/* --- event channels --- */

START_TEST(evtchn_both_directions)
{
	const int fds_before = count_fds();
	struct simguest *sg = new_guest(6, 1 << 20, 16);
	struct vp_hv *hv = open_hv();
	int gp, lp, irq;

	gp = simguest_evtchn_alloc(sg, 0);
	ck_assert_int_ge(gp, 1);
	/* Bound before the guest has even answered HELLO: the port works
	 * once the replies are in, and a notify made before is kept. */
	lp = hv->ops->evtchn_bind(hv, 6, (uint32_t)gp);
	ck_assert_int_ge(lp, 0);
	ck_assert_int_eq(hv->ops->evtchn_notify(hv, lp), 0);
	ck_assert_int_eq(hv->ops->evtchn_unmask(hv, lp), 0);
	ck_assert_int_eq(settle(hv), -1);
	irq = simguest_evtchn_fd(sg, gp);
	ck_assert_int_eq(irq_count(irq), 1);
	ck_assert_int_eq(hv->ops->evtchn_pending(hv), -1);

	/* guest -> backend, through the one epoll fd */
	ck_assert_int_eq(simguest_evtchn_notify(sg, gp), 0);
	ck_assert(readable(hv->ops->evtchn_fd(hv), WAIT_MS));
	ck_assert_int_eq(hv->ops->evtchn_pending(hv), lp);
	ck_assert_int_eq(hv->ops->evtchn_pending(hv), -1);
	ck_assert_int_eq(hv->ops->evtchn_unmask(hv, lp), 0);
	/* Kicks before pending() coalesce into one event. */
	ck_assert_int_eq(simguest_evtchn_notify(sg, gp), 0);
	ck_assert_int_eq(simguest_evtchn_notify(sg, gp), 0);
	ck_assert_int_eq(wait_pending(hv, WAIT_MS), lp);
	ck_assert_int_eq(hv->ops->evtchn_pending(hv), -1);
	ck_assert(!readable(hv->ops->evtchn_fd(hv), 0));

	/* backend -> guest: interrupts coalesce while one is unread, as an
	 * event channel's pending bit. */
	ck_assert_int_eq(hv->ops->evtchn_notify(hv, lp), 0);
	ck_assert_int_eq(irq_count(irq), 1);
	ck_assert_int_eq(hv->ops->evtchn_notify(hv, lp), 0);
	ck_assert_int_eq(hv->ops->evtchn_notify(hv, lp), 0);
	ck_assert_int_eq(irq_count(irq), 1);
	ck_assert(!readable(irq, 0));
	ck_assert_int_eq(hv->ops->evtchn_notify(hv, lp), 0);
	ck_assert_int_eq(irq_count(irq), 1);

	/* Unbound: no events, every call on the port fails. */
	ck_assert_int_eq(hv->ops->evtchn_unbind(hv, lp), 0);
	ck_assert_int_eq(simguest_evtchn_notify(sg, gp), 0);
	ck_assert_int_eq(wait_pending(hv, 200), -1);
	ck_assert_int_eq(hv->ops->evtchn_notify(hv, lp), -ENOENT);
	ck_assert_int_eq(hv->ops->evtchn_unmask(hv, lp), -ENOENT);
	ck_assert_int_eq(hv->ops->evtchn_unbind(hv, lp), -ENOENT);
	ck_assert_int_eq(hv->ops->evtchn_notify(hv, -1), -ENOENT);
	ck_assert_int_eq(hv->ops->evtchn_notify(hv, 100000), -ENOENT);
	/* UNBIND told the guest: the same port can be bound again. */
	lp = bind_now(hv, 6, (uint32_t)gp);
	ck_assert_int_ge(lp, 0);
	ck_assert_int_eq(simguest_evtchn_notify(sg, gp), 0);
	ck_assert_int_eq(wait_pending(hv, WAIT_MS), lp);
	ck_assert_int_eq(hv->ops->evtchn_unbind(hv, lp), 0);
	hv->ops->close(hv);
	simguest_destroy(sg);
	ck_assert_int_eq(count_fds(), fds_before);
}
END_TEST

START_TEST(two_ports_one_guest)
{
	struct simguest *sg = new_guest(7, 1 << 20, 16);
	struct vp_hv *hv = open_hv();
	int gp1, gp2, lp1, lp2, a, b;

	gp1 = simguest_evtchn_alloc(sg, 0);
	gp2 = simguest_evtchn_alloc(sg, 0);
	ck_assert_int_ne(gp1, gp2);
	lp1 = bind_now(hv, 7, (uint32_t)gp1);
	lp2 = bind_now(hv, 7, (uint32_t)gp2);
	ck_assert_int_ge(lp1, 0);
	ck_assert_int_ge(lp2, 0);
	ck_assert_int_ne(lp1, lp2);

	ck_assert_int_eq(simguest_evtchn_notify(sg, gp2), 0);
	ck_assert_int_eq(wait_pending(hv, WAIT_MS), lp2);
	ck_assert_int_eq(hv->ops->evtchn_pending(hv), -1);

	ck_assert_int_eq(simguest_evtchn_notify(sg, gp1), 0);
	ck_assert_int_eq(simguest_evtchn_notify(sg, gp2), 0);
	a = wait_pending(hv, WAIT_MS);
	b = wait_pending(hv, WAIT_MS);
	ck_assert((a == lp1 && b == lp2) || (a == lp2 && b == lp1));
	ck_assert_int_eq(hv->ops->evtchn_pending(hv), -1);

	ck_assert_int_eq(hv->ops->evtchn_notify(hv, lp1), 0);
	ck_assert_int_eq(irq_count(simguest_evtchn_fd(sg, gp1)), 1);
	ck_assert(!readable(simguest_evtchn_fd(sg, gp2), 100));

	/* An event fetched in a batch but unbound before it is returned
	 * is dropped, not returned. */
	ck_assert_int_eq(simguest_evtchn_notify(sg, gp1), 0);
	ck_assert_int_eq(simguest_evtchn_notify(sg, gp2), 0);
	ck_assert(readable(hv->ops->evtchn_fd(hv), WAIT_MS));
	a = hv->ops->evtchn_pending(hv);
	ck_assert(a == lp1 || a == lp2);
	ck_assert_int_eq(hv->ops->evtchn_unbind(hv, a == lp1 ? lp2 : lp1), 0);
	ck_assert_int_eq(hv->ops->evtchn_pending(hv), -1);
	ck_assert_int_eq(hv->ops->evtchn_unbind(hv, a), 0);
	hv->ops->close(hv);
	simguest_destroy(sg);
}
END_TEST

START_TEST(bind_refusals)
{
	struct simguest *sg = new_guest(8, 1 << 20, 16), *late;
	struct vp_hv *hv = open_hv();
	int gp, gp3, lp;

	/* Refused binds (another domain's port, no such port, bound
	 * already) give dead ports. */
	gp3 = simguest_evtchn_alloc(sg, 3);
	bind_refused(hv, 8, (uint32_t)gp3);
	bind_refused(hv, 8, 999);
	bind_refused(hv, 8, 0);
	bind_refused(hv, 8, UINT32_MAX);
	gp = simguest_evtchn_alloc(sg, 0);
	lp = bind_now(hv, 8, (uint32_t)gp);
	ck_assert_int_ge(lp, 0);
	bind_refused(hv, 8, (uint32_t)gp);
	/* Refusals leave the connection usable. */
	ck_assert_int_eq(simguest_evtchn_notify(sg, gp), 0);
	ck_assert_int_eq(wait_pending(hv, WAIT_MS), lp);
	ck_assert_int_eq(hv->ops->evtchn_unbind(hv, lp), 0);

	/* No guest yet: fails, and is not remembered. */
	ck_assert_int_eq(hv->ops->evtchn_bind(hv, 9, 1), -ENOENT);
	errno = 0;
	ck_assert_ptr_null(map1(hv, 9, 0, 1));
	ck_assert_int_eq(errno, ENOENT);
	late = new_guest(9, 1 << 20, 16);
	gp = simguest_evtchn_alloc(late, 0);
	lp = bind_now(hv, 9, (uint32_t)gp);
	ck_assert_int_ge(lp, 0);
	ck_assert_int_eq(hv->ops->evtchn_unbind(hv, lp), 0);
	hv->ops->close(hv);
	simguest_destroy(late);
	simguest_destroy(sg);
}
END_TEST

START_TEST(guest_closes_port)
{
	struct simguest *sg = new_guest(10, 1 << 20, 16);
	struct vp_hv *hv = open_hv();
	int gp1, gp2, lp1, lp2;

	gp1 = simguest_evtchn_alloc(sg, 0);
	gp2 = simguest_evtchn_alloc(sg, 0);
	lp1 = bind_now(hv, 10, (uint32_t)gp1);
	lp2 = bind_now(hv, 10, (uint32_t)gp2);
	ck_assert_int_ge(lp1, 0);
	ck_assert_int_ge(lp2, 0);
	simguest_evtchn_close(sg, gp1);
	ck_assert_int_eq(wait_pending(hv, 300), -1);
	ck_assert_int_eq(hv->ops->evtchn_notify(hv, lp1), -ENOTCONN);
	ck_assert_int_eq(hv->ops->evtchn_unmask(hv, lp1), 0);
	/* The other port of the same guest is untouched. */
	ck_assert_int_eq(simguest_evtchn_notify(sg, gp2), 0);
	ck_assert_int_eq(wait_pending(hv, WAIT_MS), lp2);
	ck_assert_int_eq(hv->ops->evtchn_notify(hv, lp2), 0);
	ck_assert_int_eq(irq_count(simguest_evtchn_fd(sg, gp2)), 1);
	ck_assert_int_eq(hv->ops->evtchn_unbind(hv, lp1), 0);
	ck_assert_int_eq(hv->ops->evtchn_unbind(hv, lp2), 0);
	hv->ops->close(hv);
	simguest_destroy(sg);
}
END_TEST

/* --- guest death and forgetting --- */

START_TEST(guest_destroyed_while_bound)
{
	const int fds_before = count_fds();
	struct simguest *sg = new_guest(11, 1 << 20, 16);
	struct vp_hv *hv = open_hv();
	uint32_t ref;
	uint8_t *p;
	int gp, lp;

	ref = (uint32_t)simguest_grant(sg, 0, 4, 1, 0);
	gp = simguest_evtchn_alloc(sg, 0);
	lp = bind_now(hv, 11, (uint32_t)gp);
	ck_assert_int_ge(lp, 0);
	p = map1(hv, 11, 4, 1);
	ck_assert_ptr_nonnull(p);
	guest_page(sg, 4)[0] = 'd';

	simguest_destroy(sg);
	/* The closed socket wakes the loop; nothing to return. */
	ck_assert(readable(hv->ops->evtchn_fd(hv), WAIT_MS));
	ck_assert_int_eq(hv->ops->evtchn_pending(hv), -1);
	ck_assert_int_eq(hv->ops->evtchn_notify(hv, lp), -ENOTCONN);
	errno = 0;
	ck_assert_ptr_null(map1(hv, 11, 5, 1));
	ck_assert_int_eq(errno, ESRCH);
	errno = 0;
	ck_assert_ptr_null(hv->ops->map_grants(hv, 11, &ref, 1, 1));
	ck_assert_int_eq(errno, ESRCH);
	ck_assert_int_eq(hv->ops->evtchn_bind(hv, 11, (uint32_t)gp), -ESRCH);
	/* What was mapped stays mapped until we let go. */
	ck_assert_int_eq(p[0], 'd');
	p[1] = 'e';
	ck_assert_int_eq(hv->ops->unmap_gfns(hv, p, 1), 0);

	hv->ops->forget_domain(hv, 11);
	ck_assert_int_eq(hv->ops->evtchn_notify(hv, lp), -ENOENT);
	ck_assert_int_eq(hv->ops->evtchn_unmask(hv, lp), -ENOENT);
	ck_assert_int_eq(hv->ops->evtchn_unbind(hv, lp), -ENOENT);
	ck_assert_int_eq(hv->ops->evtchn_unbind(hv, lp), -ENOENT);
	errno = 0;
	ck_assert_ptr_null(map1(hv, 11, 5, 1));
	ck_assert_int_eq(errno, ENOENT);
	hv->ops->close(hv);
	ck_assert_int_eq(count_fds(), fds_before);
}
END_TEST

START_TEST(forget_live_domain)
{
	const int fds_before = count_fds();
	struct simguest *sg = new_guest(12, 1 << 20, 16);
	struct vp_hv *hv = open_hv();
	uint8_t *p, *q;
	int gp, lp;

	gp = simguest_evtchn_alloc(sg, 0);
	lp = bind_now(hv, 12, (uint32_t)gp);
	ck_assert_int_ge(lp, 0);
	p = map1(hv, 12, 6, 1);
	ck_assert_ptr_nonnull(p);

	/* A kick is waiting when the domain is forgotten: it must not come
	 * out of pending(). */
	ck_assert_int_eq(simguest_evtchn_notify(sg, gp), 0);
	ck_assert(readable(hv->ops->evtchn_fd(hv), WAIT_MS));
	hv->ops->forget_domain(hv, 12);
	ck_assert_int_eq(hv->ops->evtchn_pending(hv), -1);
	ck_assert_int_eq(hv->ops->evtchn_notify(hv, lp), -ENOENT);
	/* A pointer handed out before stays valid until unmapped. */
	guest_page(sg, 6)[0] = 'f';
	ck_assert_int_eq(p[0], 'f');
	ck_assert_int_eq(hv->ops->unmap_gfns(hv, p, 1), 0);
	ck_assert_int_eq(hv->ops->unmap_gfns(hv, p, 1), -EINVAL);
	ck_assert_int_eq(hv->ops->evtchn_unbind(hv, lp), -ENOENT);

	/* The next use contacts the guest afresh. */
	ck_assert_int_eq(ready(hv, 12), 0);
	q = map1(hv, 12, 6, 0);
	ck_assert_ptr_nonnull(q);
	ck_assert_int_eq(q[0], 'f');
	lp = bind_now(hv, 12, (uint32_t)gp);
	ck_assert_int_ge(lp, 0);
	ck_assert_int_eq(simguest_evtchn_notify(sg, gp), 0);
	ck_assert_int_eq(wait_pending(hv, WAIT_MS), lp);
	ck_assert_int_eq(hv->ops->unmap_gfns(hv, q, 1), 0);
	ck_assert_int_eq(hv->ops->evtchn_unbind(hv, lp), 0);
	hv->ops->close(hv);
	simguest_destroy(sg);
	ck_assert_int_eq(count_fds(), fds_before);
}
END_TEST

/* --- hostile and hung guests --- */

enum fake_mode {
	FAKE_UNSEALED,     /* RAM memfd without seals */
	FAKE_SHORT,        /* sealed, but smaller than announced */
	FAKE_ONE_FD,       /* only the RAM memfd */
	FAKE_PIPE,         /* a pipe where the RAM memfd belongs */
	FAKE_WRONG_DOM,    /* says it is another domain */
	FAKE_GARBAGE,      /* a reply with a bad magic */
	FAKE_SHORT_RECORD, /* half a HELLO reply, as one record */
	FAKE_OLD_VERSION,  /* a version 1 reply */
	FAKE_BAD_BIND,     /* good HELLO, then pipes instead of the kick and irq fds */
	FAKE_EVENTFD_IRQ,  /* good HELLO, then an eventfd as the irq fd (wire 1) */
	FAKE_MUTE_BIND,    /* good HELLO, then no answer to BIND */
	FAKE_FD_FLOOD,     /* good HELLO, then a notice carrying descriptors */
	FAKE_BIND_ERR_FD,  /* good HELLO, then a refusal carrying a descriptor */
	FAKE_MUTE_HELLO,   /* accepts, reads, never answers */
	FAKE_ATTACK,       /* a correct guest that keeps its fds to abuse them */
	FAKE_CLOSE_FIRST,  /* PORT_CLOSED for a port, then a good BIND reply for it */
	FAKE_NMODES
};

#define FAKE_MAX_PORTS 4

struct fake_guest {
	enum fake_mode mode;
	uint16_t domid;
	int listen_fd;
	pthread_t thread;
	/* FAKE_ATTACK, per BIND answered: the kick eventfd, the irq socket
	 * end sent to the backend (a copy kept: the same open file
	 * description) and the end the guest reads. */
	int kick[FAKE_MAX_PORTS], irq_be[FAKE_MAX_PORTS], irq_guest[FAKE_MAX_PORTS];
	int nports;
};

static int fake_listen(uint16_t domid)
{
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	int fd;

	snprintf(addr.sun_path, sizeof(addr.sun_path), "%s/dom%u.sock", run_dir, domid);
	unlink(addr.sun_path);
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
	ck_assert_int_eq(listen(fd, 4), 0);
	return fd;
}

static int fake_memfd(size_t bytes, bool sealed)
{
	int fd = memfd_create("fake", MFD_CLOEXEC | (sealed ? MFD_ALLOW_SEALING : 0));

	if (fd < 0 || ftruncate(fd, (off_t)bytes) < 0)
		return -1;
	if (sealed && fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0)
		return -1;
	return fd;
}

static void fake_send_len(int conn, const void *msg, size_t len, const int *fds,
			  unsigned nfds)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * 3)];
		struct cmsghdr align;
	} ctl;
	struct iovec iov = {.iov_base = (void *)msg, .iov_len = len};
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
	sendmsg(conn, &mh, MSG_NOSIGNAL);
}

static void fake_send(int conn, const void *msg, const int *fds, unsigned nfds)
{
	fake_send_len(conn, msg, VP_SIMWIRE_G2B_SIZE, fds, nfds);
}

static void fake_hdr(struct vp_simwire_hdr *h, uint16_t type)
{
	h->magic = htole32(VP_SIMWIRE_MAGIC);
	h->type = htole16(type);
	h->version = htole16(VP_SIMWIRE_VERSION);
}

static void fake_hello_reply(struct fake_guest *fg, int conn)
{
	const size_t ram = 16 * PAGE;
	struct vp_simwire_hello_reply rep;
	int fds[2] = {-1, -1}, pipefd[2] = {-1, -1};
	unsigned nfds = 2;

	if (fg->mode == FAKE_MUTE_HELLO)
		return;
	memset(&rep, 0, sizeof(rep));
	fake_hdr(&rep.hdr, VP_SIMWIRE_HELLO_REPLY);
	rep.page_size = htole32(PAGE);
	rep.ram_bytes = htole64(ram);
	rep.grant_entries = htole32(16);
	rep.guest_domid = htole16(fg->domid);
	fds[0] = fake_memfd(fg->mode == FAKE_SHORT ? PAGE : ram, fg->mode != FAKE_UNSEALED);
	fds[1] = fake_memfd(PAGE, true);
	switch (fg->mode) {
	case FAKE_ONE_FD:
		nfds = 1;
		break;
	case FAKE_PIPE:
		if (pipe2(pipefd, O_CLOEXEC) == 0) {
			close(fds[0]);
			fds[0] = pipefd[0];
		}
		break;
	case FAKE_WRONG_DOM:
		rep.guest_domid = htole16(fg->domid + 1);
		break;
	case FAKE_GARBAGE:
		rep.hdr.magic = htole32(0xdeadbeef);
		break;
	case FAKE_OLD_VERSION:
		rep.hdr.version = htole16(1);
		break;
	default:
		break;
	}
	if (fg->mode == FAKE_SHORT_RECORD)
		fake_send_len(conn, &rep, VP_SIMWIRE_G2B_SIZE / 2, fds, nfds);
	else
		fake_send(conn, &rep, fds, nfds);
	for (int i = 0; i < 2; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	if (pipefd[1] >= 0)
		close(pipefd[1]);
}

static void fake_bind_reply(struct fake_guest *fg, int conn, uint32_t port)
{
	struct vp_simwire_bind_reply rep;
	int pair[2], efd[2];

	if (fg->mode == FAKE_MUTE_BIND)
		return;
	memset(&rep, 0, sizeof(rep));
	fake_hdr(&rep.hdr, VP_SIMWIRE_BIND_REPLY);
	rep.port = htole32(port);
	switch (fg->mode) {
	case FAKE_FD_FLOOD: {
		struct vp_simwire_port_closed n;

		memset(&n, 0, sizeof(n));
		fake_hdr(&n.hdr, VP_SIMWIRE_PORT_CLOSED);
		n.port = htole32(port);
		efd[0] = eventfd(0, EFD_CLOEXEC);
		efd[1] = eventfd(0, EFD_CLOEXEC);
		fake_send(conn, &n, efd, 2);
		close(efd[0]);
		close(efd[1]);
		return;
	}
	case FAKE_BIND_ERR_FD:
		/* Once leaked a descriptor per try: the fd count shows it. */
		if (pipe2(pair, O_CLOEXEC) < 0)
			return;
		rep.status = (int32_t)htole32((uint32_t)-EACCES);
		fake_send(conn, &rep, pair, 1);
		break;
	case FAKE_BAD_BIND:
		if (pipe2(pair, O_CLOEXEC) < 0)
			return;
		fake_send(conn, &rep, pair, 2);
		break;
	case FAKE_EVENTFD_IRQ:
		pair[0] = eventfd(0, EFD_CLOEXEC);
		pair[1] = eventfd(0, EFD_CLOEXEC);
		fake_send(conn, &rep, pair, 2);
		break;
	case FAKE_CLOSE_FIRST: {
		struct vp_simwire_port_closed n;

		memset(&n, 0, sizeof(n));
		fake_hdr(&n.hdr, VP_SIMWIRE_PORT_CLOSED);
		n.port = htole32(port);
		fake_send(conn, &n, NULL, 0);
		pair[0] = eventfd(0, EFD_CLOEXEC);
		if (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, efd) < 0)
			return;
		pair[1] = efd[1];
		fake_send(conn, &rep, pair, 2);
		close(pair[0]);
		close(efd[0]);
		close(efd[1]);
		return;
	}
	case FAKE_ATTACK:
		if (fg->nports == FAKE_MAX_PORTS)
			return;
		efd[0] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, pair) < 0)
			return;
		efd[1] = pair[1];
		fg->kick[fg->nports] = efd[0];
		fg->irq_guest[fg->nports] = pair[0];
		fg->irq_be[fg->nports] = pair[1];
		fg->nports++;
		fake_send(conn, &rep, efd, 2);
		return; /* kept for the attack; fake_stop closes them */
	default:
		return;
	}
	close(pair[0]);
	close(pair[1]);
}

/* Answer one backend connection as mode says until it closes; every wait
 * is bounded. */
static void *fake_guest_main(void *arg)
{
	struct fake_guest *fg = arg;
	union vp_simwire_b2g req;
	int conn;

	if (!readable(fg->listen_fd, 5000))
		return NULL;
	conn = accept4(fg->listen_fd, NULL, NULL, SOCK_CLOEXEC);
	if (conn < 0)
		return NULL;
	while (readable(conn, 5000) && recv(conn, &req, sizeof(req), 0) == (ssize_t)sizeof(req)) {
		switch (le16toh(req.hdr.type)) {
		case VP_SIMWIRE_HELLO:
			fake_hello_reply(fg, conn);
			break;
		case VP_SIMWIRE_BIND:
			fake_bind_reply(fg, conn, le32toh(req.bind.port));
			break;
		default:
			break;
		}
	}
	close(conn);
	return NULL;
}

static void fake_start(struct fake_guest *fg, enum fake_mode mode, uint16_t domid)
{
	memset(fg, 0, sizeof(*fg));
	fg->mode = mode;
	fg->domid = domid;
	fg->listen_fd = fake_listen(domid);
	ck_assert_int_eq(pthread_create(&fg->thread, NULL, fake_guest_main, fg), 0);
}

static void fake_stop(struct fake_guest *fg)
{
	char path[128];

	pthread_join(fg->thread, NULL);
	close(fg->listen_fd);
	snprintf(path, sizeof(path), "%s/dom%u.sock", run_dir, fg->domid);
	unlink(path);
	for (int i = 0; i < fg->nports; i++) {
		close(fg->kick[i]);
		close(fg->irq_be[i]);
		close(fg->irq_guest[i]);
	}
}

/* Each bad HELLO reply is refused with a clear errno, remembered (the
 * next call fails at once), and forgotten with the domain. */
START_TEST(hostile_hello)
{
	const int fds_before = count_fds();
	static const int want[] = {
		[FAKE_UNSEALED] = EPERM,      [FAKE_SHORT] = EPROTO,
		[FAKE_ONE_FD] = EPROTO,       [FAKE_PIPE] = EPROTO,
		[FAKE_WRONG_DOM] = EPROTO,    [FAKE_GARBAGE] = EPROTO,
		[FAKE_SHORT_RECORD] = EPROTO, [FAKE_OLD_VERSION] = EPROTONOSUPPORT,
	};
	enum fake_mode mode = (enum fake_mode)_i;
	uint16_t dom = (uint16_t)(100 + _i);
	struct vp_hv *hv = open_hv();
	struct fake_guest fg;
	uint64_t t0;

	fake_start(&fg, mode, dom);
	ck_assert_int_eq(ready(hv, dom), -want[mode]);
	errno = 0;
	ck_assert_ptr_null(map1(hv, dom, 0, 1));
	ck_assert_int_eq(errno, want[mode]);
	t0 = now_ms();
	errno = 0;
	ck_assert_int_eq(hv->ops->evtchn_bind(hv, dom, 1), -want[mode]);
	ck_assert_uint_lt(now_ms() - t0, 500);
	ck_assert_int_eq(hv->ops->evtchn_pending(hv), -1);
	hv->ops->forget_domain(hv, dom);
	fake_stop(&fg);
	/* Forgotten: the next attempt finds no guest at all. */
	errno = 0;
	ck_assert_int_eq(vp_hv_domain_ready(hv, dom), -ENOENT);
	ck_assert_ptr_null(map1(hv, dom, 0, 1));
	ck_assert_int_eq(errno, ENOENT);
	hv->ops->close(hv);
	ck_assert_int_eq(count_fds(), fds_before);
}
END_TEST

/* Wait (pumping the layer, at most ms) until notify on lp says dead. */
static bool wait_dead(struct vp_hv *hv, int lp, int ms)
{
	uint64_t end = now_ms() + (uint64_t)ms;

	while (hv->ops->evtchn_notify(hv, lp) != -ENOTCONN) {
		if (now_ms() >= end)
			return false;
		readable(hv->ops->evtchn_fd(hv), 50);
		hv->ops->evtchn_pending(hv);
	}
	return true;
}

/* A guest that passes HELLO and then misbehaves on BIND loses its
 * connection; bind itself never waits, and the server carries on. */
START_TEST(hostile_bind)
{
	const int fds_before = count_fds();
	enum fake_mode mode = (enum fake_mode)_i;
	uint16_t dom = (uint16_t)(120 + _i);
	struct vp_hv *hv = open_hv();
	struct fake_guest fg;
	uint8_t *p;
	uint64_t t0;
	int lp;

	fake_start(&fg, mode, dom);
	ck_assert_int_eq(ready(hv, dom), 0);
	p = map1(hv, dom, 1, 1);
	ck_assert_ptr_nonnull(p);
	p[0] = 1;
	t0 = now_ms();
	lp = hv->ops->evtchn_bind(hv, dom, 1);
	ck_assert_int_ge(lp, 0);
	ck_assert_uint_lt(now_ms() - t0, 500);
	ck_assert(wait_dead(hv, lp, 6000));
	if (mode == FAKE_MUTE_BIND)
		ck_assert_uint_ge(now_ms() - t0, 1500);
	/* The connection is dropped: the domain is gone for us. */
	errno = 0;
	ck_assert_ptr_null(map1(hv, dom, 2, 1));
	ck_assert_int_eq(errno, ESRCH);
	ck_assert_int_eq(vp_hv_domain_ready(hv, dom), -ESRCH);
	ck_assert_int_eq(hv->ops->evtchn_pending(hv), -1);
	ck_assert_int_eq(hv->ops->unmap_gfns(hv, p, 1), 0);
	ck_assert_int_eq(hv->ops->evtchn_unbind(hv, lp), 0);
	hv->ops->forget_domain(hv, dom);
	fake_stop(&fg);
	hv->ops->close(hv);
	ck_assert_int_eq(count_fds(), fds_before);
}
END_TEST

/* A port the guest closes before answering its BIND stays dead: the
 * late reply's descriptors are closed, and the connection goes on. */
START_TEST(port_closed_while_binding)
{
	const int fds_before = count_fds();
	struct vp_hv *hv = open_hv();
	struct fake_guest fg;
	uint8_t *p;
	int lp;

	fake_start(&fg, FAKE_CLOSE_FIRST, 135);
	ck_assert_int_eq(ready(hv, 135), 0);
	lp = bind_now(hv, 135, 1);
	ck_assert_int_ge(lp, 0);
	ck_assert_int_eq(hv->ops->evtchn_notify(hv, lp), -ENOTCONN);
	ck_assert_int_eq(hv->ops->evtchn_unbind(hv, lp), 0);
	p = map1(hv, 135, 1, 1);
	ck_assert_ptr_nonnull(p);
	ck_assert_int_eq(hv->ops->unmap_gfns(hv, p, 1), 0);
	hv->ops->forget_domain(hv, 135);
	fake_stop(&fg);
	hv->ops->close(hv);
	ck_assert_int_eq(count_fds(), fds_before);
}
END_TEST

START_TEST(guest_never_answers)
{
	struct vp_hv *hv = open_hv();
	int lfd = fake_listen(130);
	uint64_t t0 = now_ms(), took;

	/* The listener never accepts: connect succeeds, HELLO gets no reply.
	 * Asking never waits; the answer comes after the deadline. */
	vp_hv_set_domain_cb(hv, count_cb, NULL);
	cb_calls = 0;
	ck_assert_int_eq(vp_hv_domain_ready(hv, 130), -EINPROGRESS);
	ck_assert_uint_lt(now_ms() - t0, 500);
	ck_assert_int_eq(ready(hv, 130), -ETIMEDOUT);
	took = now_ms() - t0;
	ck_assert_uint_ge(took, 1500);
	ck_assert_uint_lt(took, 6000);
	ck_assert_int_eq(cb_calls, 1);
	ck_assert_int_eq(cb_result, -ETIMEDOUT);
	/* Remembered: no second wait. */
	t0 = now_ms();
	ck_assert_int_eq(hv->ops->evtchn_bind(hv, 130, 1), -ETIMEDOUT);
	ck_assert_uint_lt(now_ms() - t0, 500);
	/* Until the refusal is VP_SIMWIRE_RETRY_MS old: then contacted
	 * again (still without waiting); forgetting the domain tells the
	 * waiter. */
	usleep(VP_SIMWIRE_RETRY_MS * 1000);
	ck_assert_int_eq(vp_hv_domain_ready(hv, 130), -EINPROGRESS);
	hv->ops->forget_domain(hv, 130);
	ck_assert_int_eq(cb_calls, 2);
	ck_assert_int_eq(cb_result, -ECANCELED);
	close(lfd);
	hv->ops->close(hv);
}
END_TEST

/* Time an hv call: it must never sleep (a voluntary context switch of
 * this thread) and never take 50 ms unless the scheduler preempted it (an
 * involuntary switch: the machine may be loaded; that is not a stall of
 * ours).  The slowest call is kept in *worst (ms). */
struct call_clock {
	uint64_t t0;
	struct rusage ru0;
};

static void call_start(struct call_clock *c)
{
	getrusage(RUSAGE_THREAD, &c->ru0);
	c->t0 = now_us();
}

static void call_end(const struct call_clock *c, uint64_t *worst, const char *what)
{
	uint64_t took = now_us() - c->t0;
	struct rusage ru;

	getrusage(RUSAGE_THREAD, &ru);
	ck_assert_msg(ru.ru_nvcsw == c->ru0.ru_nvcsw, "%s slept (%llu us)", what,
		      (unsigned long long)took);
	if (ru.ru_nivcsw == c->ru0.ru_nivcsw)
		ck_assert_msg(took < 50000, "%s took %llu us", what,
			      (unsigned long long)took);
	if (took > *worst)
		*worst = took;
}

/* evtchn_pending() on a thread, for at most ms: a layer that blocks in
 * it fails the test (unblock_fd is then kicked so the thread ends). */
struct pending_call {
	struct vp_hv *hv;
	int result;
};

static void *pending_thread(void *arg)
{
	struct pending_call *c = arg;

	c->result = c->hv->ops->evtchn_pending(c->hv);
	return NULL;
}

static int pending_bounded(struct vp_hv *hv, int ms, int unblock_fd)
{
	struct pending_call c = {.hv = hv, .result = -2};
	const uint64_t one = 1;
	struct timespec ts;
	pthread_t t;

	ck_assert_int_eq(pthread_create(&t, NULL, pending_thread, &c), 0);
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	if (pthread_timedjoin_np(t, NULL, &ts) != 0) {
		ck_assert_int_eq(write(unblock_fd, &one, sizeof(one)), sizeof(one));
		pthread_join(t, NULL);
		ck_abort_msg("evtchn_pending() blocked on a guest's eventfd");
	}
	return c.result;
}

/* The guest clears O_NONBLOCK on the kick eventfds it shares with us and
 * drains one after we were told it is readable: reading it must not
 * block. */
START_TEST(kick_fd_drained_by_guest)
{
	const int fds_before = count_fds();
	const uint64_t one = 1;
	struct vp_hv *hv = open_hv();
	struct fake_guest fg;
	int lp[2], first, other;
	uint64_t v;

	fake_start(&fg, FAKE_ATTACK, 140);
	ck_assert_int_eq(ready(hv, 140), 0);
	lp[0] = bind_now(hv, 140, 1);
	lp[1] = bind_now(hv, 140, 2);
	ck_assert_int_ge(lp[0], 0);
	ck_assert_int_ge(lp[1], 0);
	ck_assert_int_eq(fg.nports, 2);
	for (int i = 0; i < 2; i++) {
		ck_assert_int_eq(fcntl(fg.kick[i], F_SETFL, 0), 0);
		ck_assert_int_eq(write(fg.kick[i], &one, sizeof(one)), sizeof(one));
	}
	/* Both kicks come in one epoll batch; the first is returned, the
	 * second waits in the batch while the guest drains its counter. */
	ck_assert(readable(hv->ops->evtchn_fd(hv), WAIT_MS));
	usleep(20000);
	first = hv->ops->evtchn_pending(hv);
	ck_assert(first == lp[0] || first == lp[1]);
	other = first == lp[0] ? 1 : 0;
	ck_assert_int_eq(read(fg.kick[other], &v, sizeof(v)), sizeof(v));
	ck_assert_int_eq(pending_bounded(hv, 1000, fg.kick[other]), -1);
	/* The ports still work. */
	ck_assert_int_eq(write(fg.kick[other], &one, sizeof(one)), sizeof(one));
	ck_assert_int_eq(wait_pending(hv, WAIT_MS), lp[other]);
	for (int i = 0; i < 2; i++)
		ck_assert_int_eq(hv->ops->evtchn_unbind(hv, lp[i]), 0);
	hv->ops->close(hv);
	fake_stop(&fg);
	ck_assert_int_eq(count_fds(), fds_before);
}
END_TEST

/* The guest clears O_NONBLOCK on the irq socket it shares with us, fills
 * its queue and never reads: notify must not block, and interrupts flow
 * again once the guest reads. */
START_TEST(irq_fd_filled_by_guest)
{
	const int fds_before = count_fds();
	const uint64_t one = 1;
	struct vp_hv *hv = open_hv();
	struct fake_guest fg;
	uint64_t worst = 0;
	int lp, n = 0;

	fake_start(&fg, FAKE_ATTACK, 141);
	ck_assert_int_eq(ready(hv, 141), 0);
	lp = bind_now(hv, 141, 1);
	ck_assert_int_ge(lp, 0);
	ck_assert_int_eq(fg.nports, 1);
	ck_assert_int_eq(fcntl(fg.irq_be[0], F_SETFL, 0), 0);
	while (send(fg.irq_be[0], &one, sizeof(one), MSG_DONTWAIT) == (ssize_t)sizeof(one))
		n++;
	ck_assert_int_eq(errno, EAGAIN);
	ck_assert_int_gt(n, 0);
	for (int i = 0; i < 1000; i++) {
		struct call_clock c;

		call_start(&c);
		ck_assert_int_eq(hv->ops->evtchn_notify(hv, lp), 0);
		call_end(&c, &worst, "evtchn_notify");
	}
	/* The guest reads what queued up; the next notify gets through. */
	for (int got; (got = simguest_evtchn_clear(fg.irq_guest[0])) > 0;)
		n -= got;
	ck_assert_int_eq(n, 0);
	ck_assert_int_eq(hv->ops->evtchn_notify(hv, lp), 0);
	ck_assert_int_eq(irq_count(fg.irq_guest[0]), 1);
	ck_assert_int_eq(hv->ops->evtchn_unbind(hv, lp), 0);
	hv->ops->close(hv);
	fake_stop(&fg);
	ck_assert_int_eq(count_fds(), fds_before);
}
END_TEST

/* A guest that never answers HELLO and one that never answers BIND,
 * while a third guest ping-pongs events with us: no hv call serving the
 * good guest sleeps or stalls 50 ms (see call_end), and the silent ones
 * are refused (or cut) after the deadline. */
START_TEST(silent_guests_block_nobody)
{
	struct simguest *sg = new_guest(142, 1 << 20, 16);
	struct vp_hv *hv = open_hv();
	struct fake_guest mute_hello, mute_bind;
	uint64_t t0, worst = 0, worst_trip = 0, rounds = 0;
	int gp, lp, lp_hello, lp_bind, irq;
	struct call_clock c;

	vp_hv_set_domain_cb(hv, count_cb, NULL);
	cb_calls = 0;
	gp = simguest_evtchn_alloc(sg, 0);
	lp = bind_now(hv, 142, (uint32_t)gp);
	ck_assert_int_ge(lp, 0);
	irq = simguest_evtchn_fd(sg, gp);
	fake_start(&mute_hello, FAKE_MUTE_HELLO, 143);
	fake_start(&mute_bind, FAKE_MUTE_BIND, 144);
	ck_assert_int_eq(ready(hv, 144), 0);
	cb_calls = 0;
	t0 = now_ms();
	call_start(&c);
	ck_assert_int_eq(vp_hv_domain_ready(hv, 143), -EINPROGRESS);
	call_end(&c, &worst, "domain_ready");
	call_start(&c);
	lp_hello = hv->ops->evtchn_bind(hv, 143, 1);
	call_end(&c, &worst, "evtchn_bind");
	call_start(&c);
	lp_bind = hv->ops->evtchn_bind(hv, 144, 1);
	call_end(&c, &worst, "evtchn_bind");
	ck_assert_int_ge(lp_hello, 0);
	ck_assert_int_ge(lp_bind, 0);
	/* Through both deadlines (HELLO's and BIND's, 2 s). */
	while (now_ms() - t0 < 2600) {
		uint64_t start = now_us();
		int port = -1;

		ck_assert_int_eq(simguest_evtchn_notify(sg, gp), 0);
		while (port < 0) {
			ck_assert(readable(hv->ops->evtchn_fd(hv), 1000));
			call_start(&c);
			port = hv->ops->evtchn_pending(hv);
			call_end(&c, &worst, "evtchn_pending");
			ck_assert(port == -1 || port == lp);
		}
		call_start(&c);
		ck_assert_int_eq(hv->ops->evtchn_notify(hv, lp), 0);
		call_end(&c, &worst, "evtchn_notify");
		ck_assert_int_eq(irq_count(irq), 1);
		if (now_us() - start > worst_trip)
			worst_trip = now_us() - start;
		rounds++;
		usleep(1000);
	}
	printf("silent guests: %llu round trips, the slowest %llu us, the slowest hv "
	       "call %llu us\n",
	       (unsigned long long)rounds, (unsigned long long)worst_trip,
	       (unsigned long long)worst);
	/* Pump until both deadlines have passed. */
	ck_assert(wait_dead(hv, lp_hello, 4000));
	ck_assert(wait_dead(hv, lp_bind, 4000));
	ck_assert_int_eq(cb_calls, 1);
	ck_assert_uint_eq(cb_dom, 143);
	ck_assert_int_eq(cb_result, -ETIMEDOUT);
	ck_assert_int_eq(vp_hv_domain_ready(hv, 143), -ETIMEDOUT);
	ck_assert_int_eq(vp_hv_domain_ready(hv, 144), -ESRCH);
	ck_assert_int_eq(hv->ops->evtchn_unbind(hv, lp_hello), 0);
	ck_assert_int_eq(hv->ops->evtchn_unbind(hv, lp_bind), 0);
	ck_assert_int_eq(hv->ops->evtchn_unbind(hv, lp), 0);
	hv->ops->forget_domain(hv, 143);
	hv->ops->forget_domain(hv, 144);
	hv->ops->close(hv);
	fake_stop(&mute_hello);
	fake_stop(&mute_bind);
	simguest_destroy(sg);
}
END_TEST

/* --- the guest end, spoken to directly --- */

static int raw_connect(uint16_t domid)
{
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);

	snprintf(addr.sun_path, sizeof(addr.sun_path), "%s/dom%u.sock", run_dir, domid);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
	return fd;
}

/* Send a request, read the 32-byte reply and its descriptors. */
static void raw_call(int fd, uint16_t type, uint16_t version, uint32_t arg,
		     union vp_simwire_g2b *rep, int *fds, unsigned *nfds)
{
	union vp_simwire_b2g req;
	union {
		char buf[CMSG_SPACE(sizeof(int) * 4)];
		struct cmsghdr align;
	} ctl;
	struct iovec iov = {.iov_base = rep, .iov_len = sizeof(*rep)};
	struct msghdr mh = {.msg_iov = &iov,
			    .msg_iovlen = 1,
			    .msg_control = ctl.buf,
			    .msg_controllen = sizeof(ctl.buf)};

	memset(&req, 0, sizeof(req));
	fake_hdr(&req.hdr, type);
	req.hdr.version = htole16(version);
	if (type == VP_SIMWIRE_HELLO)
		req.hello.backend_domid = htole16((uint16_t)arg);
	else
		req.bind.port = htole32(arg);
	ck_assert_int_eq(send(fd, &req, sizeof(req), MSG_NOSIGNAL), sizeof(req));
	ck_assert(readable(fd, WAIT_MS));
	ck_assert_int_eq(recvmsg(fd, &mh, MSG_CMSG_CLOEXEC), sizeof(*rep));
	*nfds = 0;
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
		if (cm->cmsg_type != SCM_RIGHTS)
			continue;
		*nfds = (unsigned)((cm->cmsg_len - CMSG_LEN(0)) / sizeof(int));
		memcpy(fds, CMSG_DATA(cm), *nfds * sizeof(int));
	}
}

START_TEST(guest_wire)
{
	struct simguest *sg = new_guest(13, 40 * PAGE, 100);
	const int seals = F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL;
	union vp_simwire_g2b rep;
	int fd, fd2, fds[4];
	unsigned nfds;
	struct stat st;
	uint8_t *ram;
	int gp;

	fd = raw_connect(13);
	raw_call(fd, VP_SIMWIRE_HELLO, VP_SIMWIRE_VERSION, 4, &rep, fds, &nfds);
	ck_assert_uint_eq(le32toh(rep.hdr.magic), VP_SIMWIRE_MAGIC);
	ck_assert_uint_eq(le16toh(rep.hdr.type), VP_SIMWIRE_HELLO_REPLY);
	ck_assert_int_eq((int32_t)le32toh((uint32_t)rep.hello_reply.status), 0);
	ck_assert_uint_eq(le32toh(rep.hello_reply.page_size), PAGE);
	ck_assert_uint_eq(le64toh(rep.hello_reply.ram_bytes), 40 * PAGE);
	ck_assert_uint_eq(le32toh(rep.hello_reply.grant_entries), 100);
	ck_assert_uint_eq(le16toh(rep.hello_reply.guest_domid), 13);
	ck_assert_uint_eq(nfds, 2);
	/* Both memfds are fully sealed and exactly as large as announced. */
	ck_assert_int_eq(fcntl(fds[0], F_GET_SEALS), seals);
	ck_assert_int_eq(fcntl(fds[1], F_GET_SEALS), seals);
	ck_assert_int_eq(fstat(fds[0], &st), 0);
	ck_assert_int_eq(st.st_size, 40 * PAGE);
	ck_assert_int_eq(fstat(fds[1], &st), 0);
	ck_assert_int_eq(st.st_size, (off_t)vp_simwire_grant_table_bytes(100));
	ck_assert_int_eq(st.st_size, PAGE);
	ram = mmap(NULL, 40 * PAGE, PROT_READ, MAP_SHARED, fds[0], 0);
	ck_assert_ptr_ne(ram, MAP_FAILED);
	guest_page(sg, 39)[9] = 'm';
	ck_assert_int_eq(ram[39 * PAGE + 9], 'm');
	munmap(ram, 40 * PAGE);
	close(fds[0]);
	close(fds[1]);

	/* A second HELLO is refused, without descriptors. */
	raw_call(fd, VP_SIMWIRE_HELLO, VP_SIMWIRE_VERSION, 4, &rep, fds, &nfds);
	ck_assert_int_eq((int32_t)le32toh((uint32_t)rep.hello_reply.status), -EALREADY);
	ck_assert_uint_eq(nfds, 0);

	/* A port for domain 4 binds on this connection (domain 4), with its
	 * kick eventfd and its irq socket. */
	gp = simguest_evtchn_alloc(sg, 4);
	raw_call(fd, VP_SIMWIRE_BIND, VP_SIMWIRE_VERSION, (uint32_t)gp, &rep, fds, &nfds);
	ck_assert_uint_eq(le16toh(rep.hdr.type), VP_SIMWIRE_BIND_REPLY);
	ck_assert_int_eq((int32_t)le32toh((uint32_t)rep.bind_reply.status), 0);
	ck_assert_uint_eq(le32toh(rep.bind_reply.port), (uint32_t)gp);
	ck_assert_uint_eq(nfds, 2);
	ck_assert_int_eq(simguest_evtchn_notify(sg, gp), 0);
	ck_assert_uint_eq(read_counter(fds[0]), 1);
	{
		const uint64_t one = htole64(1);
		socklen_t len = sizeof(int);
		int type = 0;

		ck_assert_int_eq(getsockopt(fds[1], SOL_SOCKET, SO_TYPE, &type, &len), 0);
		ck_assert_int_eq(type, SOCK_DGRAM);
		ck_assert_int_eq(send(fds[1], &one, sizeof(one), MSG_DONTWAIT), sizeof(one));
		ck_assert_int_eq(irq_count(simguest_evtchn_fd(sg, gp)), 1);
	}
	close(fds[0]);
	close(fds[1]);

	/* Closing a bound port tells the binder. */
	simguest_evtchn_close(sg, gp);
	ck_assert(readable(fd, WAIT_MS));
	ck_assert_int_eq(recv(fd, &rep, sizeof(rep), 0), sizeof(rep));
	ck_assert_uint_eq(le16toh(rep.hdr.type), VP_SIMWIRE_PORT_CLOSED);
	ck_assert_uint_eq(le32toh(rep.port_closed.port), (uint32_t)gp);

	/* A new connection: BIND before HELLO, then a wrong version. */
	fd2 = raw_connect(13);
	raw_call(fd2, VP_SIMWIRE_BIND, VP_SIMWIRE_VERSION, 1, &rep, fds, &nfds);
	ck_assert_int_eq((int32_t)le32toh((uint32_t)rep.bind_reply.status), -EPERM);
	ck_assert_uint_eq(nfds, 0);
	raw_call(fd2, VP_SIMWIRE_HELLO, VP_SIMWIRE_VERSION + 1, 4, &rep, fds, &nfds);
	ck_assert_int_eq((int32_t)le32toh((uint32_t)rep.hello_reply.status),
			 -EPROTONOSUPPORT);
	ck_assert_uint_eq(nfds, 0);
	/* Garbage ends the connection. */
	ck_assert_int_eq(send(fd2, "0123456789abcdef", 16, MSG_NOSIGNAL), 16);
	ck_assert(readable(fd2, WAIT_MS));
	ck_assert_int_eq(recv(fd2, &rep, sizeof(rep), 0), 0);
	close(fd2);
	/* So does a record of the wrong size. */
	fd2 = raw_connect(13);
	ck_assert_int_eq(send(fd2, "01234567", 8, MSG_NOSIGNAL), 8);
	ck_assert(readable(fd2, WAIT_MS));
	ck_assert_int_eq(recv(fd2, &rep, sizeof(rep), 0), 0);
	close(fd2);
	close(fd);
	simguest_destroy(sg);
}
END_TEST

START_TEST(guest_socket_file)
{
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	struct simguest *sg, *again;
	struct stat st;
	int fd;

	snprintf(addr.sun_path, sizeof(addr.sun_path), "%s/dom14.sock", run_dir);
	/* A dead guest's socket is replaced. */
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
	close(fd);
	sg = new_guest(14, 1 << 20, 16);
	ck_assert_int_eq(stat(addr.sun_path, &st), 0);
	ck_assert(S_ISSOCK(st.st_mode));
	ck_assert_uint_eq(st.st_mode & 0777, 0600);
	/* A live one is not. */
	errno = 0;
	again = simguest_create(run_dir, 14, 1 << 20, 16);
	ck_assert_ptr_null(again);
	ck_assert_int_eq(errno, EADDRINUSE);
	simguest_destroy(sg);
	ck_assert_int_eq(stat(addr.sun_path, &st), -1);
	/* Nor is something that is not a socket. */
	fd = open(addr.sun_path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
	ck_assert_int_ge(fd, 0);
	close(fd);
	errno = 0;
	ck_assert_ptr_null(simguest_create(run_dir, 14, 1 << 20, 16));
	ck_assert_int_eq(errno, EEXIST);
	unlink(addr.sun_path);
	errno = 0;
	ck_assert_ptr_null(simguest_create(run_dir, 14, 0, 16));
	ck_assert_int_eq(errno, EINVAL);
}
END_TEST

START_TEST(guest_grant_and_port_bookkeeping)
{
	struct simguest *sg = new_guest(15, 8 * PAGE, 12);
	size_t len;
	int gp;

	ck_assert_ptr_nonnull(simguest_ram(sg, &len));
	ck_assert_uint_eq(len, 8 * PAGE);
	ck_assert_uint_eq(simguest_domid(sg), 15);
	/* Refs 8-11 exist; 0-7 are reserved. */
	ck_assert_int_eq(simguest_grant(sg, 0, 0, 4, 0), 8);
	ck_assert_int_eq(simguest_grant(sg, 0, 0, 1, 0), -ENOSPC);
	simguest_ungrant(sg, 9, 2);
	ck_assert_int_eq(simguest_grant(sg, 0, 4, 3, 0), -ENOSPC);
	ck_assert_int_eq(simguest_grant(sg, 0, 4, 2, 1), 9);
	ck_assert_int_eq(simguest_grant(sg, 0, 7, 2, 0), -EINVAL);
	ck_assert_int_eq(simguest_grant(sg, 0, 8, 1, 0), -EINVAL);
	ck_assert_int_eq(simguest_grant(sg, 0, 0, 0, 0), -EINVAL);

	gp = simguest_evtchn_alloc(sg, 0);
	ck_assert_int_ge(gp, 1);
	ck_assert_int_ge(simguest_evtchn_fd(sg, gp), 0);
	ck_assert_int_lt(simguest_evtchn_fd(sg, gp + 1), 0);
	ck_assert_int_eq(simguest_evtchn_notify(sg, 0), -ENOENT);
	simguest_evtchn_close(sg, gp);
	ck_assert_int_lt(simguest_evtchn_fd(sg, gp), 0);
	ck_assert_int_eq(simguest_evtchn_notify(sg, gp), -ENOENT);
	/* The number is reused. */
	ck_assert_int_eq(simguest_evtchn_alloc(sg, 0), gp);
	simguest_destroy(sg);
}
END_TEST

/* --- opening by name --- */

START_TEST(open_by_name)
{
	struct vp_hv *hv = vp_hv_open("sim", run_dir);

	ck_assert_ptr_nonnull(hv);
	ck_assert_str_eq(hv->ops->name, "sim");
	ck_assert_int_ge(hv->ops->evtchn_fd(hv), 0);
	ck_assert_int_eq(vp_hv_sim_set_self_domid(hv, 3), 0);
	hv->ops->close(hv);
	ck_assert_ptr_null(vp_hv_open("kvm", run_dir));
	ck_assert_ptr_null(vp_hv_open(NULL, run_dir));
	ck_assert_ptr_null(vp_hv_open("sim", NULL));
	ck_assert_ptr_null(vp_hv_open("sim", "/nonexistent/vproxy-run"));
	if (access("/dev/xen", F_OK) < 0)
		ck_assert_ptr_null(vp_hv_open("xen", NULL));
}
END_TEST

static Suite *hv_sim_suite(void)
{
	Suite *s = suite_create("hv_sim");
	TCase *mem = tcase_create("memory");
	TCase *ev = tcase_create("evtchn");
	TCase *life = tcase_create("lifecycle");
	TCase *hostile = tcase_create("hostile");
	TCase *guest = tcase_create("guest");
	TCase *all[] = {mem, ev, life, hostile, guest};

	for (unsigned i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
		tcase_add_unchecked_fixture(all[i], make_run_dir, remove_run_dir);
		tcase_set_timeout(all[i], 30);
		suite_add_tcase(s, all[i]);
	}
	tcase_add_test(mem, hello_and_consecutive_gfns);
	tcase_add_test(mem, nonconsecutive_gfns);
	tcase_add_test(mem, gfn_out_of_range);
	tcase_add_test(mem, grants);
	tcase_add_test(mem, self_domid);
	tcase_add_test(ev, evtchn_both_directions);
	tcase_add_test(ev, two_ports_one_guest);
	tcase_add_test(ev, bind_refusals);
	tcase_add_test(ev, guest_closes_port);
	tcase_add_test(life, guest_destroyed_while_bound);
	tcase_add_test(life, forget_live_domain);
	tcase_add_test(life, open_by_name);
	tcase_add_loop_test(hostile, hostile_hello, FAKE_UNSEALED, FAKE_OLD_VERSION + 1);
	tcase_add_loop_test(hostile, hostile_bind, FAKE_BAD_BIND, FAKE_BIND_ERR_FD + 1);
	tcase_add_test(hostile, guest_never_answers);
	tcase_add_test(hostile, port_closed_while_binding);
	tcase_add_test(hostile, kick_fd_drained_by_guest);
	tcase_add_test(hostile, irq_fd_filled_by_guest);
	tcase_add_test(hostile, silent_guests_block_nobody);
	tcase_add_test(guest, guest_wire);
	tcase_add_test(guest, guest_socket_file);
	tcase_add_test(guest, guest_grant_and_port_bookkeeping);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(hv_sim_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
