/* SPDX-License-Identifier: MIT */
/*
 * Guest memory access for one device: turns guest addresses from
 * virtqueues into host pointers, in gfn mode (guest-physical addresses,
 * foreign-mapped, with a bounded cache of mapped chunks) or grant mode
 * ((1<<63) | gref<<12 | offset, consecutive grant refs for a range that
 * crosses pages, as Linux's xen-grant-dma allocates them).
 *
 * A "flat" gmem over a plain buffer exists for unit tests.
 */
#ifndef VP_GMEM_H
#define VP_GMEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

struct vp_hv;
struct vp_gmem;

enum vp_addr_mode { VP_ADDR_GFN = 0, VP_ADDR_GRANT = 1 };

/* A mapping handed out by vp_gmem_map(); release with vp_gmem_unmap(). */
struct vp_gmem_ref {
	void *cookie;  /* the gmem's; NULL when nothing must be released */
	unsigned n;    /* pages in the underlying mapping */
	bool held;     /* handed out by vp_gmem_map(), not yet released */
};

/* Create the accessor for guest dom through hv. max_cache_bytes bounds
 * the gfn-mode mapping cache. Returns NULL on allocation failure. */
struct vp_gmem *vp_gmem_new(struct vp_hv *hv, uint16_t dom,
			    enum vp_addr_mode mode, size_t max_cache_bytes);
/* Test accessor: guest address X is base[X] for X < len; no hypervisor. */
struct vp_gmem *vp_gmem_new_flat(void *base, size_t len);
/* Grant mode: keep up to max_pages pages of grant mappings across
 * vp_gmem_map() calls, least recently used evicted first, all unmapped by
 * vp_gmem_free().  Only for a frontend that keeps each grant on the same
 * page for the connection's life ("feature-persistent"); by default (0)
 * every call maps and every unmap unmaps.  Call before the first map.
 * 0, -EINVAL (not grant mode, or already set) or -ENOMEM. */
int vp_gmem_set_grant_cache(struct vp_gmem *gm, size_t max_pages);
/* Release all cached mappings; every vp_gmem_ref must be released. */
void vp_gmem_free(struct vp_gmem *gm);

/* Map [gaddr, gaddr+len) for reading (and writing if write) as one
 * contiguous host range. Returns the pointer and fills *ref, or NULL when
 * any byte is not mapped / not granted / out of range (errno set).
 * len must be > 0. */
void *vp_gmem_map(struct vp_gmem *gm, uint64_t gaddr, size_t len, bool write,
		  struct vp_gmem_ref *ref);
/* Release a mapping from vp_gmem_map() or vp_gmem_map_chain(). */
void vp_gmem_unmap(struct vp_gmem *gm, struct vp_gmem_ref *ref);

/* One buffer of a descriptor chain, for vp_gmem_map_chain(). */
struct vp_gmem_seg {
	uint64_t gaddr;
	uint32_t len;
	bool write;
};
/* Map the n buffers of one chain: iov[i] and ref[i] as n calls of
 * vp_gmem_map() would give them (the same checks; each ref released with
 * vp_gmem_unmap()).  Where this accessor maps per call (gfn mode without a
 * cache, grant mode without persistent grants) the pages of all read-only
 * buffers go to the hypervisor in one call and those of all writable ones
 * in another, instead of one call per buffer: a block request's header,
 * data and status byte cost two map calls, not three.  0; or -1 with errno
 * set and *bad the buffer that failed (for a refused batch, its first),
 * nothing held. */
int vp_gmem_map_chain(struct vp_gmem *gm, const struct vp_gmem_seg *segs, unsigned n,
                      struct iovec *iov, struct vp_gmem_ref *ref, unsigned *bad);

/* How guest addresses are interpreted (a flat gmem reports VP_ADDR_GFN). */
enum vp_addr_mode vp_gmem_mode(const struct vp_gmem *gm);

/* Longest range one vp_gmem_map() call maps in gfn or grant mode: a bound
 * on what a guest-supplied length can make us ask the hypervisor for. */
#define VP_GMEM_MAX_MAP_LEN (64u << 20)

/* Statistics for tests and the bench. */
struct vp_gmem_stats {
	uint64_t maps;        /* vp_gmem_map calls that succeeded */
	uint64_t hv_maps;     /* hypervisor map calls made */
	uint64_t cache_hits;  /* maps served from the cache */
	size_t cached_bytes;  /* currently cached */
	size_t held;          /* mappings handed out and not yet released */
};
void vp_gmem_get_stats(const struct vp_gmem *gm, struct vp_gmem_stats *st);

#endif
