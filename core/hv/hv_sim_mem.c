/* SPDX-License-Identifier: MIT */
/*
 * Guest memory in the sim layer (hv_sim_mem.h).  Consecutive frames are
 * a pointer into the domain's RAM mapping, counted so that a forgotten
 * domain keeps its RAM until every such pointer is returned; other
 * frames are mapped page by page from the RAM memfd.
 */
#include "hv_sim_mem.h"
#include "hv_sim.h"
#include "hv_sim_wire.h"

#include <vproxy/simwire.h>

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <unistd.h>
#include <xen/xen.h>
#include <xen/grant_table.h>

void vp_sim_dom_unmap(struct sim_dom *d, bool keep_ram)
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

void *vp_sim_map_gfns(struct vp_hv *hv, uint16_t dom, const uint64_t *gfns, unsigned n,
		      int writable)
{
	struct sim_hv *s = vp_sim_of(hv);
	struct sim_dom *d;
	int err;

	if (!gfns || n == 0) {
		errno = EINVAL;
		return NULL;
	}
	d = vp_sim_dom_live(s, dom, &err);
	if (!d) {
		errno = -err;
		return NULL;
	}
	return sim_map_frames(s, d, gfns, n, writable);
}

void *vp_sim_map_grants(struct vp_hv *hv, uint16_t dom, const uint32_t *refs,
			unsigned n, int writable)
{
	struct sim_hv *s = vp_sim_of(hv);
	struct sim_dom *d;
	uint64_t *frames;
	void *addr = NULL;
	int err = 0;

	if (!refs || n == 0) {
		errno = EINVAL;
		return NULL;
	}
	d = vp_sim_dom_live(s, dom, &err);
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

int vp_sim_unmap(struct vp_hv *hv, void *addr, unsigned n)
{
	struct sim_hv *s = vp_sim_of(hv);
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
