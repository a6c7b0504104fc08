/* SPDX-License-Identifier: MIT */
/*
 * Guest memory accessor.  gfn mode keeps 2 MiB chunks of guest-physical
 * space foreign-mapped in an LRU cache, because virtqueue rings and the
 * buffers a guest recycles stay in the same few chunks and a hypervisor
 * map call costs far more than a hash lookup.  Grant mode maps per call
 * by default: a guest may revoke a grant and reuse its ref for another page
 * as soon as a request completes (Linux's xen-grant-dma does), so nothing
 * may be kept beyond the caller's reference.  A frontend that promises to
 * keep its grants for the connection's life (feature-persistent) gets the
 * same LRU cache as gfn mode, keyed by grant range instead of chunk: on
 * real Xen a grant map and unmap cost two hypercalls, an mmap and a TLB
 * flush per descriptor, and measured under QEMU that is most of a
 * request's cost (docs in contrib/xen/README.md).  Where every buffer is
 * mapped per call, vp_gmem_map_chain() maps a descriptor chain's buffers
 * in two calls (read-only, writable), not one each.
 *
 * Every reference that must be released points at a struct gmem_mapping;
 * its kind says how to release it.
 */
#include "gmem.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "hv.h"

#define CHUNK_SHIFT 21
#define CHUNK_BYTES ((size_t)1 << CHUNK_SHIFT)
#define CHUNK_PAGES (1u << (CHUNK_SHIFT - VP_PAGE_SHIFT))
#define PAGE_MASK ((uint64_t)VP_PAGE_SIZE - 1)
#define GRANT_FLAG (1ull << 63)
/* Chunks the hypervisor refused to map whole (holes, end of RAM): trying
 * them again on every access would double the map calls there. */
#define NEG_SLOTS 16u
#define MIN_BUCKETS 16u
#define MAX_BUCKETS (1u << 16)

enum gmem_kind { GMEM_FLAT, GMEM_GFN, GMEM_GRANT };

enum mapping_kind {
	MAPPING_CHUNK,        /* cached gfn chunk */
	MAPPING_GRANT_CACHED, /* cached grant range */
	MAPPING_TEMP_GFN,
	MAPPING_TEMP_GRANT,
};

/* One hypervisor mapping, the cookie of a vp_gmem_ref. */
struct gmem_mapping {
	enum mapping_kind kind;
	void *addr; /* start of the first mapped page */
	unsigned pages;
	unsigned refs; /* cached kinds only: references handed out */
};

struct gmem_chunk {
	struct gmem_mapping map; /* first, so a cookie converts back */
	uint64_t index; /* gfn: guest address >> CHUNK_SHIFT; grant: grant_key() */
	struct gmem_chunk *hash_next;
	struct gmem_chunk *lru_prev; /* towards the most recently used */
	struct gmem_chunk *lru_next;
};

struct vp_gmem {
	enum gmem_kind kind;
	struct vp_hv *hv;
	uint16_t dom;

	uint8_t *flat_base;
	size_t flat_len;

	size_t max_pages;    /* cache bound; 0: no cache */
	size_t cached_pages; /* pages of every cached mapping */
	struct gmem_chunk **buckets;
	unsigned bucket_bits;
	struct gmem_chunk *lru_head; /* most recently used */
	struct gmem_chunk *lru_tail;
	uint64_t neg[NEG_SLOTS];
	unsigned neg_count;
	unsigned neg_next;
	uint64_t *gfns; /* CHUNK_PAGES entries of scratch */

	struct vp_gmem_stats stats;
};

struct vp_gmem *vp_gmem_new(struct vp_hv *hv, uint16_t dom, enum vp_addr_mode mode,
                            size_t max_cache_bytes)
{
	struct vp_gmem *gm;
	size_t nbuckets = MIN_BUCKETS;

	gm = calloc(1, sizeof(*gm));
	if (!gm)
		return NULL;
	gm->hv = hv;
	gm->dom = dom;
	gm->kind = mode == VP_ADDR_GRANT ? GMEM_GRANT : GMEM_GFN;
	if (gm->kind == GMEM_GRANT)
		return gm;

	/* Whole chunks only, as many as fit the bound. */
	gm->max_pages = max_cache_bytes / CHUNK_BYTES * CHUNK_PAGES;
	while (nbuckets < gm->max_pages / CHUNK_PAGES && nbuckets < MAX_BUCKETS)
		nbuckets <<= 1;
	gm->bucket_bits = (unsigned)__builtin_ctzl(nbuckets);
	gm->buckets = calloc(nbuckets, sizeof(*gm->buckets));
	gm->gfns = calloc(CHUNK_PAGES, sizeof(*gm->gfns));
	if (!gm->buckets || !gm->gfns)
		goto fail;
	return gm;

fail:
	free(gm->buckets);
	free(gm->gfns);
	free(gm);
	return NULL;
}

struct vp_gmem *vp_gmem_new_flat(void *base, size_t len)
{
	struct vp_gmem *gm = calloc(1, sizeof(*gm));

	if (!gm)
		return NULL;
	gm->kind = GMEM_FLAT;
	gm->flat_base = base;
	gm->flat_len = len;
	return gm;
}

enum vp_addr_mode vp_gmem_mode(const struct vp_gmem *gm)
{
	return gm->kind == GMEM_GRANT ? VP_ADDR_GRANT : VP_ADDR_GFN;
}

static size_t chunk_bucket(const struct vp_gmem *gm, uint64_t index)
{
	return (size_t)((index * 0x9e3779b97f4a7c15ull) >> (64 - gm->bucket_bits));
}

static void lru_unlink(struct vp_gmem *gm, struct gmem_chunk *c)
{
	if (c->lru_prev)
		c->lru_prev->lru_next = c->lru_next;
	else
		gm->lru_head = c->lru_next;
	if (c->lru_next)
		c->lru_next->lru_prev = c->lru_prev;
	else
		gm->lru_tail = c->lru_prev;
	c->lru_prev = c->lru_next = NULL;
}

static void lru_push_head(struct vp_gmem *gm, struct gmem_chunk *c)
{
	c->lru_prev = NULL;
	c->lru_next = gm->lru_head;
	if (gm->lru_head)
		gm->lru_head->lru_prev = c;
	else
		gm->lru_tail = c;
	gm->lru_head = c;
}

static void chunk_drop(struct vp_gmem *gm, struct gmem_chunk *c)
{
	struct gmem_chunk **pp = &gm->buckets[chunk_bucket(gm, c->index)];

	while (*pp != c)
		pp = &(*pp)->hash_next;
	*pp = c->hash_next;
	lru_unlink(gm, c);
	if (c->map.kind == MAPPING_CHUNK)
		gm->hv->ops->unmap_gfns(gm->hv, c->map.addr, c->map.pages);
	else
		gm->hv->ops->unmap_grants(gm->hv, c->map.addr, c->map.pages);
	gm->cached_pages -= c->map.pages;
	gm->stats.cached_bytes = gm->cached_pages << VP_PAGE_SHIFT;
	free(c);
}

/* Evict the least recently used chunk nobody holds; false if all are held. */
static bool chunk_evict_one(struct vp_gmem *gm)
{
	struct gmem_chunk *c;

	for (c = gm->lru_tail; c; c = c->lru_prev) {
		if (c->map.refs == 0) {
			chunk_drop(gm, c);
			return true;
		}
	}
	return false;
}

static bool neg_contains(const struct vp_gmem *gm, uint64_t index)
{
	for (unsigned i = 0; i < gm->neg_count; i++)
		if (gm->neg[i] == index)
			return true;
	return false;
}

static void neg_add(struct vp_gmem *gm, uint64_t index)
{
	gm->neg[gm->neg_next] = index;
	gm->neg_next = (gm->neg_next + 1) % NEG_SLOTS;
	if (gm->neg_count < NEG_SLOTS)
		gm->neg_count++;
}

/* The cached mapping for key, made most recently used; NULL on a miss. */
static struct gmem_chunk *cache_lookup(struct vp_gmem *gm, uint64_t key)
{
	struct gmem_chunk *c;

	for (c = gm->buckets[chunk_bucket(gm, key)]; c; c = c->hash_next) {
		if (c->index == key) {
			gm->stats.cache_hits++;
			lru_unlink(gm, c);
			lru_push_head(gm, c);
			return c;
		}
	}
	return NULL;
}

/* Evict unheld mappings until pages more fit; false (nothing evicted) if
 * even evicting every unheld mapping would not make room. */
static bool cache_make_room(struct vp_gmem *gm, size_t pages)
{
	size_t held = 0;

	if (pages > gm->max_pages)
		return false;
	if (gm->cached_pages + pages <= gm->max_pages)
		return true;
	for (struct gmem_chunk *c = gm->lru_head; c; c = c->lru_next)
		if (c->map.refs)
			held += c->map.pages;
	if (held + pages > gm->max_pages)
		return false;
	while (gm->cached_pages + pages > gm->max_pages)
		if (!chunk_evict_one(gm))
			return false;
	return true;
}

/* Enter a fresh hypervisor mapping under key; NULL (nothing changed) when
 * out of memory. */
static struct gmem_chunk *cache_insert(struct vp_gmem *gm, uint64_t key,
                                       enum mapping_kind kind, void *addr, unsigned pages)
{
	struct gmem_chunk *c = calloc(1, sizeof(*c));
	size_t b = chunk_bucket(gm, key);

	if (!c)
		return NULL;
	c->map.kind = kind;
	c->map.addr = addr;
	c->map.pages = pages;
	c->index = key;
	c->hash_next = gm->buckets[b];
	gm->buckets[b] = c;
	lru_push_head(gm, c);
	gm->cached_pages += pages;
	gm->stats.cached_bytes = gm->cached_pages << VP_PAGE_SHIFT;
	return c;
}

/* Hand out a reference to cached mapping c; returns its start. */
static uint8_t *cache_hold(struct gmem_chunk *c, struct vp_gmem_ref *ref)
{
	c->map.refs++;
	ref->cookie = &c->map;
	ref->n = c->map.pages;
	return c->map.addr;
}

/* The cached chunk for index, mapping it if needed; NULL when it cannot be
 * cached (all slots held, hypervisor refused the whole chunk, no memory),
 * in which case the caller maps just the pages it needs. */
static struct gmem_chunk *chunk_get(struct vp_gmem *gm, uint64_t index)
{
	struct gmem_chunk *c = cache_lookup(gm, index);
	void *addr;

	if (c)
		return c;
	if (neg_contains(gm, index) || !cache_make_room(gm, CHUNK_PAGES))
		return NULL;
	for (unsigned i = 0; i < CHUNK_PAGES; i++)
		gm->gfns[i] = index * CHUNK_PAGES + i;
	/* Always writable: the chunk is shared by readers and writers, and a
	 * backend's foreign mapping of guest RAM is read-write anyway. */
	gm->stats.hv_maps++;
	addr = gm->hv->ops->map_gfns(gm->hv, gm->dom, gm->gfns, CHUNK_PAGES, 1);
	if (!addr) {
		neg_add(gm, index);
		return NULL;
	}
	c = cache_insert(gm, index, MAPPING_CHUNK, addr, CHUNK_PAGES);
	if (!c)
		gm->hv->ops->unmap_gfns(gm->hv, addr, CHUNK_PAGES);
	return c;
}

/* Map pages [first, first+n) for one caller, released by vp_gmem_unmap. */
static void *map_temp(struct vp_gmem *gm, enum mapping_kind kind, uint64_t first,
                      unsigned n, bool write, struct vp_gmem_ref *ref)
{
	struct gmem_mapping *m;
	uint64_t *gfns = NULL;
	uint32_t *grefs = NULL;
	void *addr = NULL;
	int saved;

	m = malloc(sizeof(*m));
	if (!m)
		goto fail;
	if (kind == MAPPING_TEMP_GFN) {
		gfns = n <= CHUNK_PAGES ? gm->gfns : malloc(n * sizeof(*gfns));
		if (!gfns)
			goto fail;
		for (unsigned i = 0; i < n; i++)
			gfns[i] = first + i;
		gm->stats.hv_maps++;
		addr = gm->hv->ops->map_gfns(gm->hv, gm->dom, gfns, n, write);
	} else {
		grefs = malloc(n * sizeof(*grefs));
		if (!grefs)
			goto fail;
		for (unsigned i = 0; i < n; i++)
			grefs[i] = (uint32_t)(first + i);
		gm->stats.hv_maps++;
		addr = gm->hv->ops->map_grants(gm->hv, gm->dom, grefs, n, write);
	}
	if (!addr)
		goto fail;
	if (gfns != gm->gfns)
		free(gfns);
	free(grefs);
	m->kind = kind;
	m->addr = addr;
	m->pages = n;
	m->refs = 1;
	ref->cookie = m;
	ref->n = n;
	return addr;

fail:
	saved = errno ? errno : ENOMEM;
	if (gfns != gm->gfns)
		free(gfns);
	free(grefs);
	free(m);
	errno = saved;
	return NULL;
}

static void *map_gfn(struct vp_gmem *gm, uint64_t gaddr, size_t len, bool write,
                     struct vp_gmem_ref *ref)
{
	uint64_t last = gaddr + (len - 1);
	uint8_t *p;

	if ((gaddr | last) & GRANT_FLAG) {
		errno = EINVAL;
		return NULL;
	}
	if (gm->max_pages && gaddr >> CHUNK_SHIFT == last >> CHUNK_SHIFT) {
		struct gmem_chunk *c = chunk_get(gm, gaddr >> CHUNK_SHIFT);

		if (c)
			return cache_hold(c, ref) + (gaddr & (CHUNK_BYTES - 1));
	}
	errno = 0;
	p = map_temp(gm, MAPPING_TEMP_GFN, gaddr >> VP_PAGE_SHIFT,
	             (unsigned)((last >> VP_PAGE_SHIFT) - (gaddr >> VP_PAGE_SHIFT) + 1),
	             write, ref);
	return p ? p + (gaddr & PAGE_MASK) : NULL;
}

/* Cache key of a grant range: first ref, page count and access; a
 * read-write mapping also serves reads (map_grant looks for both). */
static uint64_t grant_key(uint64_t first_ref, unsigned n, bool write)
{
	return (uint64_t)write << 63 | (uint64_t)n << 32 | first_ref;
}

/* A persistent mapping of refs [first_ref, first_ref + n); NULL when it
 * cannot be cached (the caller then maps per call) or the hypervisor
 * refused (errno set, *refused true). */
static struct gmem_chunk *grant_get(struct vp_gmem *gm, uint64_t first_ref, unsigned n,
                                    bool write, bool *refused)
{
	struct gmem_chunk *c = cache_lookup(gm, grant_key(first_ref, n, true));
	uint32_t *grefs;
	void *addr;

	*refused = false;
	if (!c && !write)
		c = cache_lookup(gm, grant_key(first_ref, n, false));
	if (c || !cache_make_room(gm, n))
		return c;
	grefs = malloc(n * sizeof(*grefs));
	if (!grefs)
		return NULL;
	for (unsigned i = 0; i < n; i++)
		grefs[i] = (uint32_t)(first_ref + i);
	gm->stats.hv_maps++;
	addr = gm->hv->ops->map_grants(gm->hv, gm->dom, grefs, n, write);
	free(grefs);
	if (!addr) {
		*refused = true;
		return NULL;
	}
	c = cache_insert(gm, grant_key(first_ref, n, write), MAPPING_GRANT_CACHED, addr,
	                 n);
	if (!c)
		gm->hv->ops->unmap_grants(gm->hv, addr, n);
	return c;
}

static void *map_grant(struct vp_gmem *gm, uint64_t gaddr, size_t len, bool write,
                       struct vp_gmem_ref *ref)
{
	uint64_t last = gaddr + (len - 1);
	uint64_t first_ref = (gaddr & ~GRANT_FLAG) >> VP_PAGE_SHIFT;
	uint64_t last_ref = (last & ~GRANT_FLAG) >> VP_PAGE_SHIFT;
	uint8_t *p;

	/* Grant refs are 32 bits; higher bits mean a forged or foreign
	 * address, not a big grant. */
	if (!(gaddr & GRANT_FLAG) || last_ref > UINT32_MAX) {
		errno = EINVAL;
		return NULL;
	}
	errno = 0;
	if (gm->max_pages) {
		unsigned n = (unsigned)(last_ref - first_ref + 1);
		bool refused;
		struct gmem_chunk *c = grant_get(gm, first_ref, n, write, &refused);

		if (c)
			return cache_hold(c, ref) + (gaddr & PAGE_MASK);
		if (refused)
			return NULL;
	}
	p = map_temp(gm, MAPPING_TEMP_GRANT, first_ref,
	             (unsigned)(last_ref - first_ref + 1), write, ref);
	return p ? p + (gaddr & PAGE_MASK) : NULL;
}

void *vp_gmem_map(struct vp_gmem *gm, uint64_t gaddr, size_t len, bool write,
                  struct vp_gmem_ref *ref)
{
	void *p = NULL;

	ref->cookie = NULL;
	ref->n = 0;
	ref->held = false;
	if (len == 0 || len - 1 > UINT64_MAX - gaddr) {
		errno = EINVAL;
		return NULL;
	}
	switch (gm->kind) {
	case GMEM_FLAT:
		if (gaddr >= gm->flat_len || len > gm->flat_len - gaddr) {
			errno = EFAULT;
			return NULL;
		}
		p = gm->flat_base + gaddr;
		break;
	case GMEM_GFN:
	case GMEM_GRANT:
		if (len > VP_GMEM_MAX_MAP_LEN) {
			errno = E2BIG;
			return NULL;
		}
		if (gm->kind == GMEM_GFN)
			p = map_gfn(gm, gaddr, len, write, ref);
		else
			p = map_grant(gm, gaddr, len, write, ref);
		break;
	}
	if (p) {
		ref->held = true;
		gm->stats.maps++;
		gm->stats.held++;
	}
	return p;
}

void vp_gmem_unmap(struct vp_gmem *gm, struct vp_gmem_ref *ref)
{
	struct gmem_mapping *m = ref->cookie;

	if (ref->held) {
		ref->held = false;
		gm->stats.held--;
	}
	if (!m)
		return;
	ref->cookie = NULL;
	ref->n = 0;
	switch (m->kind) {
	case MAPPING_CHUNK:
	case MAPPING_GRANT_CACHED:
		/* Stays cached: eviction happens when a new mapping needs room. */
		m->refs--;
		break;
	case MAPPING_TEMP_GFN:
	case MAPPING_TEMP_GRANT:
		/* A chain's buffers share one mapping: the last unmaps it. */
		if (--m->refs)
			break;
		if (m->kind == MAPPING_TEMP_GFN)
			gm->hv->ops->unmap_gfns(gm->hv, m->addr, m->pages);
		else
			gm->hv->ops->unmap_grants(gm->hv, m->addr, m->pages);
		free(m);
		break;
	}
}

/* At most this many pages per hypervisor call; a chain with more is mapped
 * one buffer at a time. */
#define CHAIN_MAX_PAGES 64u

/* The first and last page (frame or grant ref) of a buffer, if its
 * address is one this accessor takes (vp_gmem_map's checks). */
static bool seg_pages(const struct vp_gmem *gm, const struct vp_gmem_seg *seg,
                      uint64_t *first, uint64_t *last)
{
	uint64_t end;

	if (seg->len == 0 || seg->len - 1 > UINT64_MAX - seg->gaddr) {
		errno = EINVAL;
		return false;
	}
	if (seg->len > VP_GMEM_MAX_MAP_LEN) {
		errno = E2BIG;
		return false;
	}
	end = seg->gaddr + (seg->len - 1);
	if (gm->kind == GMEM_GFN) {
		if ((seg->gaddr | end) & GRANT_FLAG) {
			errno = EINVAL;
			return false;
		}
		*first = seg->gaddr >> VP_PAGE_SHIFT;
		*last = end >> VP_PAGE_SHIFT;
		return true;
	}
	*first = (seg->gaddr & ~GRANT_FLAG) >> VP_PAGE_SHIFT;
	*last = (end & ~GRANT_FLAG) >> VP_PAGE_SHIFT;
	if (!(seg->gaddr & GRANT_FLAG) || *last > UINT32_MAX) {
		errno = EINVAL;
		return false;
	}
	return true;
}

/* Map the pages of every buffer in segs whose access is write, back to
 * back, in one hypervisor call; each such buffer's ref shares the
 * mapping.  False (errno set, *bad its first buffer) when refused. */
static bool chain_map_group(struct vp_gmem *gm, const struct vp_gmem_seg *segs, unsigned n,
                            bool write, unsigned pages, struct iovec *iov,
                            struct vp_gmem_ref *ref, unsigned *bad)
{
	uint64_t frames[CHAIN_MAX_PAGES];
	uint32_t grefs[CHAIN_MAX_PAGES];
	struct gmem_mapping *m;
	unsigned at = 0, firstseg = n;
	uint64_t first, last;
	uint8_t *base;

	for (unsigned i = 0; i < n; i++) {
		if (segs[i].write != write)
			continue;
		if (firstseg == n)
			firstseg = i;
		seg_pages(gm, &segs[i], &first, &last);
		for (uint64_t p = first; p <= last; p++, at++) {
			frames[at] = p;
			grefs[at] = (uint32_t)p;
		}
	}
	m = malloc(sizeof(*m));
	if (!m) {
		*bad = firstseg;
		errno = ENOMEM;
		return false;
	}
	gm->stats.hv_maps++;
	base = gm->kind == GMEM_GFN
	               ? gm->hv->ops->map_gfns(gm->hv, gm->dom, frames, pages, write)
	               : gm->hv->ops->map_grants(gm->hv, gm->dom, grefs, pages, write);
	if (!base) {
		int saved = errno ? errno : EFAULT;

		free(m);
		*bad = firstseg;
		errno = saved;
		return false;
	}
	m->kind = gm->kind == GMEM_GFN ? MAPPING_TEMP_GFN : MAPPING_TEMP_GRANT;
	m->addr = base;
	m->pages = pages;
	m->refs = 0;
	at = 0;
	for (unsigned i = 0; i < n; i++) {
		if (segs[i].write != write)
			continue;
		seg_pages(gm, &segs[i], &first, &last);
		iov[i].iov_base = base + ((size_t)at << VP_PAGE_SHIFT) +
		                  (segs[i].gaddr & PAGE_MASK);
		iov[i].iov_len = segs[i].len;
		m->refs++;
		ref[i].cookie = m;
		ref[i].n = pages;
		ref[i].held = true;
		gm->stats.maps++;
		gm->stats.held++;
		at += (unsigned)(last - first + 1);
	}
	return true;
}

int vp_gmem_map_chain(struct vp_gmem *gm, const struct vp_gmem_seg *segs, unsigned n,
                      struct iovec *iov, struct vp_gmem_ref *ref, unsigned *bad)
{
	unsigned pages[2] = {0, 0};
	uint64_t first, last;
	int saved;

	for (unsigned i = 0; i < n; i++)
		ref[i] = (struct vp_gmem_ref){0};
	/* Batched only where every buffer would cost a map call. */
	if (gm->kind == GMEM_FLAT || gm->max_pages || n < 2)
		goto one_by_one;
	for (unsigned i = 0; i < n; i++) {
		if (!seg_pages(gm, &segs[i], &first, &last)) {
			*bad = i;
			return -1;
		}
		if (last - first + 1 > CHAIN_MAX_PAGES)
			goto one_by_one;
		pages[segs[i].write] += (unsigned)(last - first + 1);
		if (pages[segs[i].write] > CHAIN_MAX_PAGES)
			goto one_by_one;
	}
	errno = 0;
	if ((pages[0] && !chain_map_group(gm, segs, n, false, pages[0], iov, ref, bad)) ||
	    (pages[1] && !chain_map_group(gm, segs, n, true, pages[1], iov, ref, bad)))
		goto fail;
	return 0;

one_by_one:
	for (unsigned i = 0; i < n; i++) {
		iov[i].iov_base = vp_gmem_map(gm, segs[i].gaddr, segs[i].len, segs[i].write,
		                              &ref[i]);
		iov[i].iov_len = segs[i].len;
		if (!iov[i].iov_base) {
			*bad = i;
			goto fail;
		}
	}
	return 0;

fail:
	/* Refs not mapped yet are zero: releasing them is nothing. */
	saved = errno;
	for (unsigned i = 0; i < n; i++)
		vp_gmem_unmap(gm, &ref[i]);
	errno = saved;
	return -1;
}

int vp_gmem_set_grant_cache(struct vp_gmem *gm, size_t max_pages)
{
	size_t nbuckets = MIN_BUCKETS;

	if (gm->kind != GMEM_GRANT || gm->buckets)
		return -EINVAL;
	if (max_pages == 0)
		return 0;
	/* Guest buffers are mostly one to a few pages each. */
	while (nbuckets < max_pages && nbuckets < MAX_BUCKETS)
		nbuckets <<= 1;
	gm->buckets = calloc(nbuckets, sizeof(*gm->buckets));
	if (!gm->buckets)
		return -ENOMEM;
	gm->bucket_bits = (unsigned)__builtin_ctzl(nbuckets);
	gm->max_pages = max_pages;
	return 0;
}

void vp_gmem_free(struct vp_gmem *gm)
{
	if (!gm)
		return;
	while (gm->lru_head)
		chunk_drop(gm, gm->lru_head);
	free(gm->buckets);
	free(gm->gfns);
	free(gm);
}

void vp_gmem_get_stats(const struct vp_gmem *gm, struct vp_gmem_stats *st)
{
	*st = gm->stats;
}
