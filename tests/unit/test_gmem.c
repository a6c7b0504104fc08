/* SPDX-License-Identifier: MIT */
/* Guest memory accessor: flat bounds, the gfn-mode chunk cache (hits,
 * eviction order, refcounts, partial chunks) and grant mode, against a
 * fake hypervisor whose "guest RAM" is a malloc'd buffer. */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fake_ram.h"
#include "gmem.h"
#include "hv.h"

#define PAGE 4096u
#define CHUNK (2u << 20)
#define RAM_CHUNKS 4u
#define RAM_EXTRA_PAGES 100u /* RAM ends inside chunk RAM_CHUNKS */
#define RAM_PAGES (RAM_CHUNKS * (CHUNK / PAGE) + RAM_EXTRA_PAGES)
#define GREF_BASE 1000u /* grant ref GREF_BASE + p is page p */
#define GREF_RO (GREF_BASE + 7u)
#define MAX_LIVE 64

struct live_map {
	void *addr;
	unsigned n;
	int grant;
	bool scattered; /* pages not in a row: a fake_ram_map() of its own */
};

struct fake_hv {
	struct vp_hv hv;
	uint8_t *ram;
	struct fake_ram mem; /* ram is mem.base */
	unsigned gfn_maps, gfn_unmaps, grant_maps, grant_unmaps;
	unsigned last_n;
	uint64_t last_first; /* first gfn / gref of the last map call */
	int last_writable;
	struct live_map live[MAX_LIVE];
	unsigned nlive;
};

static struct fake_hv fake;

static void *live_add(void *addr, unsigned n, int grant, bool scattered)
{
	ck_assert_uint_lt(fake.nlive, MAX_LIVE);
	fake.live[fake.nlive++] = (struct live_map){addr, n, grant, scattered};
	return addr;
}

/* Pages in a row map into the RAM itself (tests compare pointers with
 * it); others, as a chain's buffers do, to a fresh address. */
static void *map_pages(const uint64_t *pages, unsigned n, int writable, int grant)
{
	bool in_row = true;
	void *p;

	for (unsigned i = 1; i < n; i++)
		in_row &= pages[i] == pages[0] + i;
	if (in_row)
		return live_add(fake.ram + pages[0] * PAGE, n, grant, false);
	p = fake_ram_map(&fake.mem, pages, n, writable);
	ck_assert_ptr_nonnull(p);
	return live_add(p, n, grant, true);
}

static void live_del(void *addr, unsigned n, int grant)
{
	for (unsigned i = 0; i < fake.nlive; i++) {
		if (fake.live[i].addr == addr && fake.live[i].n == n &&
		    fake.live[i].grant == grant) {
			fake.live[i] = fake.live[--fake.nlive];
			return;
		}
	}
	ck_abort_msg("unmap of %p/%u that is not mapped", addr, n);
}

static void live_del_unmap(void *addr, unsigned n, int grant)
{
	for (unsigned i = 0; i < fake.nlive; i++)
		if (fake.live[i].addr == addr && fake.live[i].scattered)
			fake_ram_unmap(addr, n);
	live_del(addr, n, grant);
}

static void *fake_map_gfns(struct vp_hv *hv, uint16_t dom, const uint64_t *gfns,
                           unsigned n, int writable)
{
	(void)hv;
	ck_assert_uint_eq(dom, 7);
	fake.gfn_maps++;
	fake.last_n = n;
	fake.last_first = gfns[0];
	fake.last_writable = writable;
	for (unsigned i = 0; i < n; i++) {
		if (gfns[i] >= RAM_PAGES) {
			errno = EFAULT;
			return NULL;
		}
	}
	return map_pages(gfns, n, writable, 0);
}

static int fake_unmap_gfns(struct vp_hv *hv, void *addr, unsigned n)
{
	(void)hv;
	fake.gfn_unmaps++;
	live_del_unmap(addr, n, 0);
	return 0;
}

static void *fake_map_grants(struct vp_hv *hv, uint16_t dom, const uint32_t *refs,
                             unsigned n, int writable)
{
	uint64_t *pages = calloc(n, sizeof(*pages));
	void *p;

	(void)hv;
	ck_assert_ptr_nonnull(pages);
	ck_assert_uint_eq(dom, 7);
	fake.grant_maps++;
	fake.last_n = n;
	fake.last_first = refs[0];
	fake.last_writable = writable;
	for (unsigned i = 0; i < n; i++) {
		if (refs[i] < GREF_BASE || refs[i] - GREF_BASE >= RAM_PAGES ||
		    (writable && refs[i] == GREF_RO)) {
			free(pages);
			errno = EPERM;
			return NULL;
		}
		pages[i] = refs[i] - GREF_BASE;
	}
	p = map_pages(pages, n, writable, 1);
	free(pages);
	return p;
}

static int fake_unmap_grants(struct vp_hv *hv, void *addr, unsigned n)
{
	(void)hv;
	fake.grant_unmaps++;
	live_del_unmap(addr, n, 1);
	return 0;
}

static const struct vp_hv_ops fake_ops = {
        .name = "fake",
        .map_gfns = fake_map_gfns,
        .unmap_gfns = fake_unmap_gfns,
        .map_grants = fake_map_grants,
        .unmap_grants = fake_unmap_grants,
};

static void setup(void)
{
	memset(&fake, 0, sizeof(fake));
	fake.hv.ops = &fake_ops;
	ck_assert(fake_ram_init(&fake.mem, RAM_PAGES));
	fake.ram = fake.mem.base;
	for (size_t i = 0; i < (size_t)RAM_PAGES * PAGE; i++)
		fake.ram[i] = (uint8_t)(i * 7 + (i >> 12));
}

static void teardown(void)
{
	fake_ram_free(&fake.mem);
}

static uint64_t gfn_addr(unsigned chunk, unsigned offset)
{
	return (uint64_t)chunk * CHUNK + offset;
}

START_TEST(flat_bounds)
{
	uint8_t buf[8192];
	struct vp_gmem *gm = vp_gmem_new_flat(buf, sizeof(buf));
	struct vp_gmem_stats st;
	struct vp_gmem_ref ref;

	ck_assert_ptr_eq(vp_gmem_map(gm, 0, sizeof(buf), true, &ref), buf);
	ck_assert_ptr_null(ref.cookie);
	ck_assert_ptr_eq(vp_gmem_map(gm, 8191, 1, false, &ref), buf + 8191);
	errno = 0;
	ck_assert_ptr_null(vp_gmem_map(gm, 8191, 2, false, &ref));
	ck_assert_int_eq(errno, EFAULT);
	ck_assert_ptr_null(vp_gmem_map(gm, 8192, 1, false, &ref));
	ck_assert_ptr_null(vp_gmem_map(gm, 1, sizeof(buf), false, &ref));
	errno = 0;
	ck_assert_ptr_null(vp_gmem_map(gm, 0, 0, false, &ref));
	ck_assert_int_eq(errno, EINVAL);
	errno = 0;
	ck_assert_ptr_null(vp_gmem_map(gm, UINT64_MAX, 2, false, &ref));
	ck_assert_int_eq(errno, EINVAL);
	ck_assert_ptr_null(vp_gmem_map(gm, UINT64_MAX - 4096, 8192, false, &ref));
	vp_gmem_unmap(gm, &ref);
	vp_gmem_get_stats(gm, &st);
	ck_assert_uint_eq(st.maps, 2);
	ck_assert_uint_eq(st.hv_maps, 0);
	ck_assert_int_eq(vp_gmem_mode(gm), VP_ADDR_GFN);
	vp_gmem_free(gm);
}
END_TEST

START_TEST(gfn_cache_hit)
{
	struct vp_gmem *gm = vp_gmem_new(&fake.hv, 7, VP_ADDR_GFN, 4 * CHUNK);
	struct vp_gmem_ref r1, r2;
	struct vp_gmem_stats st;
	uint8_t *p, *q;

	p = vp_gmem_map(gm, gfn_addr(1, 0x1234), 100, false, &r1);
	ck_assert_ptr_eq(p, fake.ram + CHUNK + 0x1234);
	ck_assert_uint_eq(fake.gfn_maps, 1);
	ck_assert_uint_eq(fake.last_first, CHUNK / PAGE);
	ck_assert_uint_eq(fake.last_n, CHUNK / PAGE);
	ck_assert_int_eq(fake.last_writable, 1);
	ck_assert_ptr_nonnull(r1.cookie);
	/* Another range in the same chunk comes from the cache. */
	q = vp_gmem_map(gm, gfn_addr(1, CHUNK - PAGE), PAGE, true, &r2);
	ck_assert_ptr_eq(q, fake.ram + 2 * CHUNK - PAGE);
	q[0] = 0xab;
	ck_assert_uint_eq(fake.ram[2 * CHUNK - PAGE], 0xab);
	ck_assert_uint_eq(fake.gfn_maps, 1);
	vp_gmem_get_stats(gm, &st);
	ck_assert_uint_eq(st.maps, 2);
	ck_assert_uint_eq(st.hv_maps, 1);
	ck_assert_uint_eq(st.cache_hits, 1);
	ck_assert_uint_eq(st.cached_bytes, CHUNK);
	vp_gmem_unmap(gm, &r1);
	vp_gmem_unmap(gm, &r2);
	ck_assert_ptr_null(r1.cookie);
	/* Releasing keeps the chunk cached. */
	ck_assert_uint_eq(fake.gfn_unmaps, 0);
	ck_assert_ptr_nonnull(vp_gmem_map(gm, gfn_addr(1, 0), 1, false, &r1));
	ck_assert_uint_eq(fake.gfn_maps, 1);
	vp_gmem_unmap(gm, &r1);
	vp_gmem_free(gm);
	ck_assert_uint_eq(fake.nlive, 0);
}
END_TEST

START_TEST(gfn_cross_chunk_is_temporary)
{
	struct vp_gmem *gm = vp_gmem_new(&fake.hv, 7, VP_ADDR_GFN, 4 * CHUNK);
	struct vp_gmem_ref ref;
	struct vp_gmem_stats st;
	uint8_t *p;

	p = vp_gmem_map(gm, gfn_addr(1, CHUNK - 100), 200, false, &ref);
	ck_assert_ptr_nonnull(p);
	ck_assert_uint_eq(fake.last_n, 2);
	ck_assert_uint_eq(fake.last_first, 2 * CHUNK / PAGE - 1);
	ck_assert_int_eq(fake.last_writable, 0);
	ck_assert_uint_eq(ref.n, 2);
	ck_assert_int_eq(memcmp(p, fake.ram + 2 * CHUNK - 100, 200), 0);
	vp_gmem_get_stats(gm, &st);
	ck_assert_uint_eq(st.cached_bytes, 0);
	vp_gmem_unmap(gm, &ref);
	ck_assert_uint_eq(fake.gfn_unmaps, 1);
	ck_assert_uint_eq(fake.nlive, 0);
	vp_gmem_free(gm);
}
END_TEST

START_TEST(gfn_lru_eviction)
{
	struct vp_gmem *gm = vp_gmem_new(&fake.hv, 7, VP_ADDR_GFN, 2 * CHUNK);
	struct vp_gmem_ref ref;
	struct vp_gmem_stats st;

	for (unsigned c = 0; c < 2; c++) {
		ck_assert_ptr_nonnull(vp_gmem_map(gm, gfn_addr(c, 8), 8, false, &ref));
		vp_gmem_unmap(gm, &ref);
	}
	/* Touch chunk 0 so chunk 1 is the least recently used. */
	ck_assert_ptr_nonnull(vp_gmem_map(gm, gfn_addr(0, 16), 8, false, &ref));
	vp_gmem_unmap(gm, &ref);
	ck_assert_uint_eq(fake.gfn_maps, 2);
	ck_assert_ptr_nonnull(vp_gmem_map(gm, gfn_addr(2, 0), 8, false, &ref));
	vp_gmem_unmap(gm, &ref);
	ck_assert_uint_eq(fake.gfn_maps, 3);
	ck_assert_uint_eq(fake.gfn_unmaps, 1);
	vp_gmem_get_stats(gm, &st);
	ck_assert_uint_eq(st.cached_bytes, 2 * CHUNK);
	/* Chunk 0 survived, chunk 1 did not. */
	ck_assert_ptr_nonnull(vp_gmem_map(gm, gfn_addr(0, 0), 8, false, &ref));
	vp_gmem_unmap(gm, &ref);
	ck_assert_uint_eq(fake.gfn_maps, 3);
	ck_assert_ptr_nonnull(vp_gmem_map(gm, gfn_addr(1, 0), 8, false, &ref));
	vp_gmem_unmap(gm, &ref);
	ck_assert_uint_eq(fake.gfn_maps, 4);
	vp_gmem_free(gm);
	ck_assert_uint_eq(fake.nlive, 0);
	ck_assert_uint_eq(fake.gfn_unmaps, fake.gfn_maps);
}
END_TEST

START_TEST(gfn_referenced_chunk_not_evicted)
{
	struct vp_gmem *gm = vp_gmem_new(&fake.hv, 7, VP_ADDR_GFN, CHUNK);
	struct vp_gmem_ref held, ref;
	struct vp_gmem_stats st;
	uint8_t *p, *q;

	p = vp_gmem_map(gm, gfn_addr(0, 0x100), 16, true, &held);
	ck_assert_ptr_nonnull(p);
	/* The only slot is held: chunk 1 gets a temporary mapping. */
	q = vp_gmem_map(gm, gfn_addr(1, 0x2010), 16, false, &ref);
	ck_assert_ptr_eq(q, fake.ram + CHUNK + 0x2010);
	ck_assert_uint_eq(fake.last_n, 1);
	vp_gmem_get_stats(gm, &st);
	ck_assert_uint_eq(st.cached_bytes, CHUNK);
	vp_gmem_unmap(gm, &ref);
	ck_assert_uint_eq(fake.gfn_unmaps, 1);
	/* The held chunk still works. */
	p[0] = 0x5a;
	ck_assert_uint_eq(fake.ram[0x100], 0x5a);
	vp_gmem_unmap(gm, &held);
	/* Now chunk 0 can make room for chunk 1. */
	ck_assert_ptr_nonnull(vp_gmem_map(gm, gfn_addr(1, 0), 16, false, &ref));
	ck_assert_uint_eq(fake.last_n, CHUNK / PAGE);
	ck_assert_uint_eq(fake.gfn_unmaps, 2);
	vp_gmem_unmap(gm, &ref);
	vp_gmem_free(gm);
	ck_assert_uint_eq(fake.nlive, 0);
}
END_TEST

START_TEST(gfn_without_cache)
{
	struct vp_gmem *gm = vp_gmem_new(&fake.hv, 7, VP_ADDR_GFN, CHUNK - 1);
	struct vp_gmem_ref a, b;
	struct vp_gmem_stats st;

	ck_assert_ptr_nonnull(vp_gmem_map(gm, gfn_addr(0, 0), 16, false, &a));
	ck_assert_ptr_nonnull(vp_gmem_map(gm, gfn_addr(0, 0), 16, false, &b));
	ck_assert_uint_eq(fake.gfn_maps, 2);
	ck_assert_uint_eq(fake.last_n, 1);
	vp_gmem_get_stats(gm, &st);
	ck_assert_uint_eq(st.cached_bytes, 0);
	ck_assert_uint_eq(st.cache_hits, 0);
	vp_gmem_unmap(gm, &a);
	vp_gmem_unmap(gm, &b);
	ck_assert_uint_eq(fake.nlive, 0);
	vp_gmem_free(gm);
}
END_TEST

START_TEST(gfn_partial_last_chunk)
{
	struct vp_gmem *gm = vp_gmem_new(&fake.hv, 7, VP_ADDR_GFN, 8 * CHUNK);
	struct vp_gmem_ref ref;
	uint8_t *p;

	/* RAM ends inside this chunk: the whole-chunk map fails and just the
	 * needed page is mapped. */
	p = vp_gmem_map(gm, gfn_addr(RAM_CHUNKS, 3 * PAGE + 5), 10, false, &ref);
	ck_assert_ptr_eq(p, fake.ram + RAM_CHUNKS * CHUNK + 3 * PAGE + 5);
	ck_assert_uint_eq(fake.gfn_maps, 2);
	vp_gmem_unmap(gm, &ref);
	/* The failed chunk is remembered, not retried. */
	ck_assert_ptr_nonnull(vp_gmem_map(gm, gfn_addr(RAM_CHUNKS, 0), 10, false, &ref));
	ck_assert_uint_eq(fake.gfn_maps, 3);
	ck_assert_uint_eq(fake.last_n, 1);
	vp_gmem_unmap(gm, &ref);
	/* Beyond RAM nothing maps. */
	errno = 0;
	ck_assert_ptr_null(vp_gmem_map(gm, (uint64_t)RAM_PAGES * PAGE, 1, false, &ref));
	ck_assert_int_eq(errno, EFAULT);
	ck_assert_ptr_null(ref.cookie);
	ck_assert_ptr_null(
	        vp_gmem_map(gm, (uint64_t)RAM_PAGES * PAGE - 1, 2, false, &ref));
	ck_assert_uint_eq(fake.nlive, 0);
	vp_gmem_free(gm);
}
END_TEST

START_TEST(gfn_invalid_addresses)
{
	struct vp_gmem *gm = vp_gmem_new(&fake.hv, 7, VP_ADDR_GFN, 4 * CHUNK);
	struct vp_gmem_ref ref;

	errno = 0;
	ck_assert_ptr_null(vp_gmem_map(gm, (1ull << 63) | 0x1000, 16, false, &ref));
	ck_assert_int_eq(errno, EINVAL);
	errno = 0;
	ck_assert_ptr_null(vp_gmem_map(gm, (1ull << 63) - 8, 16, false, &ref));
	ck_assert_int_eq(errno, EINVAL);
	errno = 0;
	ck_assert_ptr_null(vp_gmem_map(gm, 0x1000, 0, false, &ref));
	ck_assert_int_eq(errno, EINVAL);
	errno = 0;
	ck_assert_ptr_null(vp_gmem_map(gm, UINT64_MAX - 10, 100, false, &ref));
	ck_assert_int_eq(errno, EINVAL);
	errno = 0;
	ck_assert_ptr_null(
	        vp_gmem_map(gm, 0, (size_t)VP_GMEM_MAX_MAP_LEN + 1, false, &ref));
	ck_assert_int_eq(errno, E2BIG);
	ck_assert_uint_eq(fake.gfn_maps, 0);
	/* The largest allowed range still maps (as a temporary mapping). */
	ck_assert_ptr_nonnull(vp_gmem_map(gm, 0, RAM_CHUNKS * CHUNK, false, &ref));
	vp_gmem_unmap(gm, &ref);
	vp_gmem_free(gm);
	ck_assert_uint_eq(fake.nlive, 0);
}
END_TEST

START_TEST(grant_mapping)
{
	struct vp_gmem *gm = vp_gmem_new(&fake.hv, 7, VP_ADDR_GRANT, 0);
	struct vp_gmem_ref ref, ref2;
	struct vp_gmem_stats st;
	uint64_t base = (1ull << 63) | ((uint64_t)(GREF_BASE + 3) << 12);
	uint8_t *p;

	ck_assert_int_eq(vp_gmem_mode(gm), VP_ADDR_GRANT);
	/* Without the grant bit the address is not ours to map. */
	errno = 0;
	ck_assert_ptr_null(vp_gmem_map(gm, 0x3000, 16, false, &ref));
	ck_assert_int_eq(errno, EINVAL);

	p = vp_gmem_map(gm, base | 0x10, 16, true, &ref);
	ck_assert_ptr_eq(p, fake.ram + 3 * PAGE + 0x10);
	ck_assert_uint_eq(fake.last_first, GREF_BASE + 3);
	ck_assert_uint_eq(fake.last_n, 1);
	ck_assert_int_eq(fake.last_writable, 1);
	vp_gmem_unmap(gm, &ref);
	ck_assert_uint_eq(fake.grant_unmaps, 1);

	/* Crossing pages uses consecutive refs in one mapping. */
	p = vp_gmem_map(gm, base | 0xff0, 2 * PAGE, false, &ref);
	ck_assert_ptr_nonnull(p);
	ck_assert_uint_eq(fake.last_first, GREF_BASE + 3);
	ck_assert_uint_eq(fake.last_n, 3);
	ck_assert_int_eq(fake.last_writable, 0);
	ck_assert_int_eq(memcmp(p, fake.ram + 3 * PAGE + 0xff0, 2 * PAGE), 0);
	/* Grants are not cached: a second map is a second hypervisor call. */
	ck_assert_ptr_nonnull(vp_gmem_map(gm, base, 8, false, &ref2));
	ck_assert_uint_eq(fake.grant_maps, 3);
	vp_gmem_unmap(gm, &ref2);
	vp_gmem_unmap(gm, &ref);
	ck_assert_uint_eq(fake.nlive, 0);

	/* A read-only grant maps for reading only. */
	base = (1ull << 63) | ((uint64_t)GREF_RO << 12);
	ck_assert_ptr_null(vp_gmem_map(gm, base, 8, true, &ref));
	ck_assert_ptr_nonnull(vp_gmem_map(gm, base, 8, false, &ref));
	vp_gmem_unmap(gm, &ref);

	/* Refs past 32 bits, and a range running past the last ref. */
	errno = 0;
	ck_assert_ptr_null(vp_gmem_map(gm, (1ull << 63) | (1ull << 44), 8, false, &ref));
	ck_assert_int_eq(errno, EINVAL);
	errno = 0;
	ck_assert_ptr_null(
	        vp_gmem_map(gm, (1ull << 63) | ((uint64_t)UINT32_MAX << 12) | 0xff0, 32,
	                    false, &ref));
	ck_assert_int_eq(errno, EINVAL);
	errno = 0;
	ck_assert_ptr_null(vp_gmem_map(gm, UINT64_MAX, 2, false, &ref));
	ck_assert_int_eq(errno, EINVAL);
	/* Not granted. */
	ck_assert_ptr_null(vp_gmem_map(gm, (1ull << 63) | (5ull << 12), 8, false, &ref));

	vp_gmem_get_stats(gm, &st);
	ck_assert_uint_eq(st.maps, 4);
	ck_assert_uint_eq(st.hv_maps, fake.grant_maps);
	ck_assert_uint_eq(st.cache_hits, 0);
	ck_assert_uint_eq(fake.gfn_maps, 0);
	ck_assert_uint_eq(fake.nlive, 0);
	vp_gmem_free(gm);
}
END_TEST

static uint64_t grant_addr(unsigned page, unsigned offset)
{
	return (1ull << 63) | ((uint64_t)(GREF_BASE + page) << 12) | offset;
}

START_TEST(grant_persistent_cache)
{
	struct vp_gmem *gm = vp_gmem_new(&fake.hv, 7, VP_ADDR_GRANT, 0);
	struct vp_gmem *gfn = vp_gmem_new(&fake.hv, 7, VP_ADDR_GFN, 4 * CHUNK);
	struct vp_gmem_ref ref, ref2, held;
	struct vp_gmem_stats st;
	uint8_t *p;

	/* Only grant mode, and only once, before use. */
	ck_assert_int_eq(vp_gmem_set_grant_cache(gfn, 8), -EINVAL);
	vp_gmem_free(gfn);
	ck_assert_int_eq(vp_gmem_set_grant_cache(gm, 8), 0);
	ck_assert_int_eq(vp_gmem_set_grant_cache(gm, 8), -EINVAL);

	/* The same range twice: one hypervisor map, kept after the unmap. */
	p = vp_gmem_map(gm, grant_addr(2, 0x20), 64, true, &ref);
	ck_assert_ptr_eq(p, fake.ram + 2 * PAGE + 0x20);
	vp_gmem_unmap(gm, &ref);
	ck_assert_uint_eq(fake.nlive, 1);
	ck_assert_ptr_eq(vp_gmem_map(gm, grant_addr(2, 0x100), 8, true, &ref),
	                 fake.ram + 2 * PAGE + 0x100);
	/* A read is served by the read-write mapping. */
	ck_assert_ptr_eq(vp_gmem_map(gm, grant_addr(2, 0), 8, false, &ref2),
	                 fake.ram + 2 * PAGE);
	ck_assert_uint_eq(fake.grant_maps, 1);
	vp_gmem_unmap(gm, &ref2);
	vp_gmem_unmap(gm, &ref);

	/* A read-only grant is cached read-only and never mapped writable. */
	ck_assert_ptr_nonnull(vp_gmem_map(gm, grant_addr(7, 0), 8, false, &ref));
	vp_gmem_unmap(gm, &ref);
	ck_assert_ptr_null(vp_gmem_map(gm, grant_addr(7, 0), 8, true, &ref));
	ck_assert_uint_eq(fake.nlive, 2);

	/* The bound (8 pages): a held mapping is never evicted, the least
	 * recently used unheld one goes first. */
	ck_assert_ptr_nonnull(vp_gmem_map(gm, grant_addr(10, 0), 4 * PAGE, true, &held));
	ck_assert_ptr_nonnull(vp_gmem_map(gm, grant_addr(20, 0), 2 * PAGE, true, &ref));
	vp_gmem_unmap(gm, &ref);
	vp_gmem_get_stats(gm, &st);
	ck_assert_uint_eq(st.cached_bytes, 8 * PAGE);
	ck_assert_uint_eq(fake.nlive, 4);
	ck_assert_ptr_nonnull(vp_gmem_map(gm, grant_addr(30, 0), 1, true, &ref));
	vp_gmem_unmap(gm, &ref);
	/* page 2's mapping was the least recently used */
	ck_assert_uint_eq(fake.nlive, 4);
	vp_gmem_get_stats(gm, &st);
	ck_assert_uint_eq(st.cached_bytes, 8 * PAGE);
	/* Larger than what can be freed: mapped per call instead. */
	ck_assert_ptr_nonnull(vp_gmem_map(gm, grant_addr(40, 0), 6 * PAGE, true, &ref));
	ck_assert_uint_eq(fake.nlive, 5);
	vp_gmem_unmap(gm, &ref);
	ck_assert_uint_eq(fake.nlive, 4);
	vp_gmem_unmap(gm, &held);

	/* Not granted: an error, not a cache entry. */
	ck_assert_ptr_null(vp_gmem_map(gm, (1ull << 63) | (5ull << 12), 8, false, &ref));
	vp_gmem_get_stats(gm, &st);
	ck_assert_uint_eq(st.hv_maps, fake.grant_maps);
	ck_assert_uint_ge(st.cache_hits, 2);
	/* Room was made before the hypervisor refused: one entry fewer. */
	ck_assert_uint_eq(fake.nlive, 3);
	/* Teardown unmaps everything. */
	vp_gmem_free(gm);
	ck_assert_uint_eq(fake.nlive, 0);
	ck_assert_uint_eq(fake.grant_unmaps, fake.grant_maps - 2);
}
END_TEST

START_TEST(free_releases_cache)
{
	struct vp_gmem *gm = vp_gmem_new(&fake.hv, 7, VP_ADDR_GFN, 64 * CHUNK);
	struct vp_gmem_ref ref;

	for (unsigned c = 0; c < RAM_CHUNKS; c++) {
		ck_assert_ptr_nonnull(vp_gmem_map(gm, gfn_addr(c, 64), 64, c & 1, &ref));
		vp_gmem_unmap(gm, &ref);
	}
	ck_assert_uint_eq(fake.nlive, RAM_CHUNKS);
	vp_gmem_free(gm);
	ck_assert_uint_eq(fake.nlive, 0);
	vp_gmem_free(NULL);
}
END_TEST

/* A chain's buffers in per-call modes: one hypervisor call for the
 * read-only ones and one for the writable ones, wherever their pages lie;
 * each buffer reads and writes its own guest bytes; the shared mapping
 * goes with the last release; a refused or bad buffer leaves nothing held.
 * With a cache, one buffer at a time as vp_gmem_map() does. */
START_TEST(chain_maps_in_two_calls)
{
	struct vp_gmem *gm = vp_gmem_new(&fake.hv, 7, VP_ADDR_GFN, 0);
	struct vp_gmem *gr = vp_gmem_new(&fake.hv, 7, VP_ADDR_GRANT, 0);
	struct vp_gmem *cached = vp_gmem_new(&fake.hv, 7, VP_ADDR_GFN, 4 * CHUNK);
	/* A block read: header (page 9), data across pages 3-4, status byte
	 * in the header's page. */
	struct vp_gmem_seg segs[3] = {
	        {.gaddr = 9 * PAGE + 0x100, .len = 16, .write = false},
	        {.gaddr = 3 * PAGE + 0x800, .len = PAGE, .write = true},
	        {.gaddr = 9 * PAGE + 0x110, .len = 1, .write = true},
	};
	struct vp_gmem_ref ref[3];
	struct iovec iov[3];
	struct vp_gmem_stats st;
	unsigned bad = 99;

	ck_assert_int_eq(vp_gmem_map_chain(gm, segs, 3, iov, ref, &bad), 0);
	ck_assert_uint_eq(fake.gfn_maps, 2);
	ck_assert_uint_eq(fake.nlive, 2);
	for (unsigned i = 0; i < 3; i++) {
		ck_assert_uint_eq(iov[i].iov_len, segs[i].len);
		ck_assert_int_eq(memcmp(iov[i].iov_base, fake.ram + segs[i].gaddr, segs[i].len), 0);
	}
	((uint8_t *)iov[1].iov_base)[PAGE - 1] = 0xc3;
	*(uint8_t *)iov[2].iov_base = 0x5e;
	ck_assert_uint_eq(fake.ram[4 * PAGE + 0x7ff], 0xc3);
	ck_assert_uint_eq(fake.ram[9 * PAGE + 0x110], 0x5e);
	vp_gmem_get_stats(gm, &st);
	ck_assert_uint_eq(st.maps, 3);
	ck_assert_uint_eq(st.hv_maps, 2);
	ck_assert_uint_eq(st.held, 3);
	/* The writable mapping stays until both of its buffers are released. */
	vp_gmem_unmap(gm, &ref[1]);
	ck_assert_uint_eq(fake.gfn_unmaps, 0);
	vp_gmem_unmap(gm, &ref[0]);
	ck_assert_uint_eq(fake.gfn_unmaps, 1);
	vp_gmem_unmap(gm, &ref[2]);
	ck_assert_uint_eq(fake.gfn_unmaps, 2);
	ck_assert_uint_eq(fake.nlive, 0);
	vp_gmem_get_stats(gm, &st);
	ck_assert_uint_eq(st.held, 0);

	/* The writable call refused (a page past RAM): the read-only mapping
	 * made before it goes too, nothing held. */
	segs[1].gaddr = (uint64_t)RAM_PAGES * PAGE;
	errno = 0;
	ck_assert_int_eq(vp_gmem_map_chain(gm, segs, 3, iov, ref, &bad), -1);
	ck_assert_int_eq(errno, EFAULT);
	ck_assert_uint_eq(bad, 1);
	ck_assert_uint_eq(fake.nlive, 0);
	vp_gmem_get_stats(gm, &st);
	ck_assert_uint_eq(st.held, 0);
	/* A bad address is refused before any call: a grant address in gfn
	 * mode, a length past the largest mapping. */
	segs[1].gaddr = 3 * PAGE;
	segs[2].gaddr = 1ull << 63;
	ck_assert_int_eq(vp_gmem_map_chain(gm, segs, 3, iov, ref, &bad), -1);
	ck_assert_int_eq(errno, EINVAL);
	ck_assert_uint_eq(bad, 2);
	segs[2].gaddr = 9 * PAGE + 0x110;
	segs[0].len = VP_GMEM_MAX_MAP_LEN + 1;
	ck_assert_int_eq(vp_gmem_map_chain(gm, segs, 3, iov, ref, &bad), -1);
	ck_assert_int_eq(errno, E2BIG);
	ck_assert_uint_eq(bad, 0);
	segs[0].len = 16;
	/* Two calls for the first chain, two for the refused one, none for
	 * the bad ones. */
	ck_assert_uint_eq(fake.gfn_maps, 4);

	/* Grant mode: refs, and a read-only grant refused for writing. */
	{
		struct vp_gmem_seg g[3] = {
		        {.gaddr = 1ull << 63 | (uint64_t)(GREF_BASE + 9) << 12, .len = 16},
		        {.gaddr = 1ull << 63 | (uint64_t)(GREF_BASE + 2) << 12 | 0x10,
		         .len = 2 * PAGE, .write = true},
		        {.gaddr = 1ull << 63 | (uint64_t)(GREF_BASE + 9) << 12 | 0x10,
		         .len = 1, .write = true},
		};

		ck_assert_int_eq(vp_gmem_map_chain(gr, g, 3, iov, ref, &bad), 0);
		ck_assert_uint_eq(fake.grant_maps, 2);
		ck_assert_int_eq(memcmp(iov[1].iov_base, fake.ram + 2 * PAGE + 0x10, 2 * PAGE), 0);
		ck_assert_int_eq(memcmp(iov[2].iov_base, fake.ram + 9 * PAGE + 0x10, 1), 0);
		for (unsigned i = 0; i < 3; i++)
			vp_gmem_unmap(gr, &ref[i]);
		ck_assert_uint_eq(fake.grant_unmaps, 2);
		g[2].gaddr = 1ull << 63 | (uint64_t)GREF_RO << 12;
		ck_assert_int_eq(vp_gmem_map_chain(gr, g, 3, iov, ref, &bad), -1);
		ck_assert_int_eq(errno, EPERM);
		ck_assert_uint_eq(bad, 1);
		ck_assert_uint_eq(fake.nlive, 0);
	}

	/* With a cache nothing changes: a chunk per buffer's chunk. */
	ck_assert_int_eq(vp_gmem_map_chain(cached, segs, 3, iov, ref, &bad), 0);
	ck_assert_int_eq(memcmp(iov[1].iov_base, fake.ram + segs[1].gaddr, PAGE), 0);
	for (unsigned i = 0; i < 3; i++)
		vp_gmem_unmap(cached, &ref[i]);
	vp_gmem_free(cached);
	vp_gmem_free(gr);
	vp_gmem_free(gm);
	ck_assert_uint_eq(fake.nlive, 0);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("gmem");
	TCase *tc = tcase_create("gmem");
	SRunner *sr;
	int failed;

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, flat_bounds);
	tcase_add_test(tc, gfn_cache_hit);
	tcase_add_test(tc, gfn_cross_chunk_is_temporary);
	tcase_add_test(tc, gfn_lru_eviction);
	tcase_add_test(tc, gfn_referenced_chunk_not_evicted);
	tcase_add_test(tc, gfn_without_cache);
	tcase_add_test(tc, gfn_partial_last_chunk);
	tcase_add_test(tc, gfn_invalid_addresses);
	tcase_add_test(tc, grant_mapping);
	tcase_add_test(tc, grant_persistent_cache);
	tcase_add_test(tc, free_releases_cache);
	tcase_add_test(tc, chain_maps_in_two_calls);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
