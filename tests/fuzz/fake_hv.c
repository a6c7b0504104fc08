/* SPDX-License-Identifier: MIT */
/*
 * The fuzzing hypervisor: guest RAM in a memfd, each backend mapping a
 * fresh reservation of PROT_NONE pages with the guest pages mapped over
 * its middle, so the first byte before and after what was asked for is a
 * guard page.  Recording every mapping lets the harness check that each
 * one is released.
 */
#include "fake_hv.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#define MAX_MAPPINGS 8192u
#define MAX_MAP_PAGES 16384u
#define PAGE VP_PAGE_SIZE

struct mapping {
	uint8_t *base; /* the reservation, guard page first */
	unsigned n;    /* guest pages, between the two guards */
	bool grant;
	int prot; /* as mapped */
};

struct grant {
	bool valid;
	bool writable;
	uint64_t gfn;
};

struct fake_hv {
	struct vp_hv hv; /* first: a struct vp_hv * converts back */
	int fd;
	uint8_t *ram;
	unsigned pages;
	uint8_t *hole; /* one byte per page */
	struct grant grants[FAKE_HV_MAX_GRANTS];
	struct mapping maps[MAX_MAPPINGS];
	unsigned nmaps;
	unsigned ports_bound;
	unsigned notifies;
	int evfd; /* readable while ports are pending */
	int pending[64];
	unsigned npending;
	bool frozen; /* every mapping read-only (fake_hv_freeze) */
};

static struct fake_hv *to_fake(struct vp_hv *hv)
{
	return (struct fake_hv *)hv;
}

static void fatal(const char *what)
{
	fprintf(stderr, "fake_hv: %s\n", what);
	abort();
}

static int fake_evtchn_fd(struct vp_hv *hv)
{
	return to_fake(hv)->evfd;
}

static int fake_evtchn_bind(struct vp_hv *hv, uint16_t dom, uint32_t remote_port)
{
	(void)dom;
	(void)remote_port;
	return (int)++to_fake(hv)->ports_bound;
}

static int fake_evtchn_notify(struct vp_hv *hv, int port)
{
	if (port <= 0)
		fatal("notify on a port never bound");
	to_fake(hv)->notifies++;
	return 0;
}

static int fake_evtchn_pending(struct vp_hv *hv)
{
	struct fake_hv *f = to_fake(hv);
	uint64_t v;

	if (f->npending == 0) {
		if (read(f->evfd, &v, sizeof(v)) < 0)
			v = 0; /* already drained */
		return -1;
	}
	return f->pending[--f->npending];
}

static int fake_evtchn_unmask(struct vp_hv *hv, int port)
{
	(void)hv;
	(void)port;
	return 0;
}

static int fake_evtchn_unbind(struct vp_hv *hv, int port)
{
	struct fake_hv *f = to_fake(hv);

	if (port <= 0 || f->ports_bound == 0)
		fatal("unbind of a port never bound");
	f->ports_bound--;
	return 0;
}

/* Map guest pages gfns[0..n) with prot between guard pages; NULL + errno. */
static void *map_pages(struct fake_hv *f, const uint64_t *gfns, unsigned n, int prot,
                       bool grant)
{
	uint8_t *base;
	unsigned i = 0;

	if (n == 0 || n > MAX_MAP_PAGES) {
		errno = EINVAL;
		return NULL;
	}
	if (f->nmaps == MAX_MAPPINGS) {
		errno = ENOMEM;
		return NULL;
	}
	base = mmap(NULL, (size_t)(n + 2) * PAGE, PROT_NONE,
	            MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (base == MAP_FAILED)
		fatal("cannot reserve address space");
	while (i < n) {
		unsigned run = 1;

		/* One mmap per run of consecutive frames. */
		while (i + run < n && gfns[i + run] == gfns[i] + run)
			run++;
		if (mmap(base + (size_t)(i + 1) * PAGE, (size_t)run * PAGE, prot,
		         MAP_SHARED | MAP_FIXED, f->fd,
		         (off_t)(gfns[i] * PAGE)) == MAP_FAILED)
			fatal("cannot map guest RAM");
		i += run;
	}
	f->maps[f->nmaps++] =
	        (struct mapping){.base = base, .n = n, .grant = grant, .prot = prot};
	if (f->frozen && mprotect(base + PAGE, (size_t)n * PAGE, PROT_READ) < 0)
		fatal("cannot freeze a mapping");
	return base + PAGE;
}

static void *fake_map_gfns(struct vp_hv *hv, uint16_t dom, const uint64_t *gfns,
                           unsigned n, int writable)
{
	struct fake_hv *f = to_fake(hv);

	(void)dom;
	for (unsigned i = 0; i < n; i++) {
		if (gfns[i] >= f->pages || f->hole[gfns[i]]) {
			errno = EFAULT;
			return NULL;
		}
	}
	return map_pages(f, gfns, n, writable ? PROT_READ | PROT_WRITE : PROT_READ,
	                 false);
}

static void *fake_map_grants(struct vp_hv *hv, uint16_t dom, const uint32_t *refs,
                             unsigned n, int writable)
{
	struct fake_hv *f = to_fake(hv);
	uint64_t *gfns;
	void *p;

	(void)dom;
	if (n == 0 || n > MAX_MAP_PAGES) {
		errno = EINVAL;
		return NULL;
	}
	gfns = malloc(n * sizeof(*gfns));
	if (!gfns)
		fatal("out of memory");
	for (unsigned i = 0; i < n; i++) {
		const struct grant *g =
		        refs[i] < FAKE_HV_MAX_GRANTS ? &f->grants[refs[i]] : NULL;

		if (!g || !g->valid || g->gfn >= f->pages || f->hole[g->gfn]) {
			free(gfns);
			errno = ENOENT;
			return NULL;
		}
		/* As Xen: a read-only grant cannot be mapped writable. */
		if (writable && !g->writable) {
			free(gfns);
			errno = EACCES;
			return NULL;
		}
		gfns[i] = g->gfn;
	}
	p = map_pages(f, gfns, n, writable ? PROT_READ | PROT_WRITE : PROT_READ, true);
	free(gfns);
	return p;
}

static int unmap(struct fake_hv *f, void *addr, unsigned n, bool grant)
{
	for (unsigned i = 0; i < f->nmaps; i++) {
		struct mapping *m = &f->maps[i];

		if (m->base + PAGE != addr)
			continue;
		if (m->n != n)
			fatal("unmap with a page count other than the map's");
		if (m->grant != grant)
			fatal("grant mapping unmapped as gfns or the reverse");
		munmap(m->base, (size_t)(m->n + 2) * PAGE);
		*m = f->maps[--f->nmaps];
		return 0;
	}
	fatal("unmap of an address never mapped (or unmapped twice)");
	return -EINVAL;
}

static int fake_unmap_gfns(struct vp_hv *hv, void *addr, unsigned n)
{
	return unmap(to_fake(hv), addr, n, false);
}

static int fake_unmap_grants(struct vp_hv *hv, void *addr, unsigned n)
{
	return unmap(to_fake(hv), addr, n, true);
}

static void fake_forget_domain(struct vp_hv *hv, uint16_t dom)
{
	(void)hv;
	(void)dom;
}

static void fake_close(struct vp_hv *hv)
{
	(void)hv;
}

static const struct vp_hv_ops fake_ops = {
        .name = "fuzz",
        .evtchn_fd = fake_evtchn_fd,
        .evtchn_bind = fake_evtchn_bind,
        .evtchn_notify = fake_evtchn_notify,
        .evtchn_pending = fake_evtchn_pending,
        .evtchn_unmask = fake_evtchn_unmask,
        .evtchn_unbind = fake_evtchn_unbind,
        .map_gfns = fake_map_gfns,
        .unmap_gfns = fake_unmap_gfns,
        .map_grants = fake_map_grants,
        .unmap_grants = fake_unmap_grants,
        .forget_domain = fake_forget_domain,
        .close = fake_close,
};

struct vp_hv *fake_hv_new(unsigned pages)
{
	struct fake_hv *f = calloc(1, sizeof(*f));

	if (!f)
		fatal("out of memory");
	f->hv.ops = &fake_ops;
	f->pages = pages;
	f->fd = memfd_create("fuzz-guest-ram", MFD_CLOEXEC);
	if (f->fd < 0 || ftruncate(f->fd, (off_t)pages * PAGE) < 0)
		fatal("cannot create guest RAM");
	f->ram = mmap(NULL, (size_t)pages * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED,
	              f->fd, 0);
	f->hole = calloc(pages, 1);
	f->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (f->ram == MAP_FAILED || !f->hole || f->evfd < 0)
		fatal("cannot map guest RAM");
	return &f->hv;
}

uint8_t *fake_hv_ram(struct vp_hv *hv)
{
	return to_fake(hv)->ram;
}

unsigned fake_hv_pages(struct vp_hv *hv)
{
	return to_fake(hv)->pages;
}

void fake_hv_check_released(struct vp_hv *hv)
{
	struct fake_hv *f = to_fake(hv);

	if (f->nmaps == 0 && f->ports_bound == 0)
		return;
	fprintf(stderr, "fake_hv: %u mapping(s) and %u port(s) not released:\n", f->nmaps,
	        f->ports_bound);
	for (unsigned i = 0; i < f->nmaps; i++)
		fprintf(stderr, "  %s mapping of %u page(s) at %p\n",
		        f->maps[i].grant ? "grant" : "gfn", f->maps[i].n,
		        (void *)(f->maps[i].base + PAGE));
	abort();
}

void fake_hv_reset(struct vp_hv *hv)
{
	struct fake_hv *f = to_fake(hv);

	fake_hv_check_released(hv);
	/* Punching the whole file zeroes it without touching every page. */
	if (fallocate(f->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0,
	              (off_t)f->pages * PAGE) < 0)
		memset(f->ram, 0, (size_t)f->pages * PAGE);
	memset(f->hole, 0, f->pages);
	memset(f->grants, 0, sizeof(f->grants));
	f->notifies = 0;
	f->frozen = false;
	f->npending = 0;
}

void fake_hv_set_hole(struct vp_hv *hv, uint64_t gfn)
{
	struct fake_hv *f = to_fake(hv);

	if (gfn < f->pages)
		f->hole[gfn] = 1;
}

void fake_hv_grant(struct vp_hv *hv, uint32_t ref, uint64_t gfn, bool writable)
{
	struct fake_hv *f = to_fake(hv);

	if (ref >= FAKE_HV_MAX_GRANTS)
		return;
	f->grants[ref] = (struct grant){.valid = true, .writable = writable, .gfn = gfn};
}

unsigned fake_hv_live_mappings(struct vp_hv *hv)
{
	return to_fake(hv)->nmaps;
}

void fake_hv_freeze(struct vp_hv *hv, bool on)
{
	struct fake_hv *f = to_fake(hv);

	f->frozen = on;
	for (unsigned i = 0; i < f->nmaps; i++)
		if (mprotect(f->maps[i].base + PAGE, (size_t)f->maps[i].n * PAGE,
		             on ? PROT_READ : f->maps[i].prot) < 0)
			fatal("cannot change a mapping's protection");
}

void fake_hv_kick(struct vp_hv *hv, int port)
{
	struct fake_hv *f = to_fake(hv);
	uint64_t one = 1;

	if (f->npending < sizeof(f->pending) / sizeof(f->pending[0]))
		f->pending[f->npending++] = port;
	if (write(f->evfd, &one, sizeof(one)) < 0)
		fatal("cannot signal the event channel fd");
}

unsigned fake_hv_notifies(struct vp_hv *hv)
{
	return to_fake(hv)->notifies;
}
