/* SPDX-License-Identifier: MIT */
/* Split virtqueue: chains, indirect tables, notification suppression, and
 * every kind of hostile ring content the device must refuse without
 * crashing or reading outside guest memory.  The "guest" builds its rings
 * in a malloc'd buffer reached through a flat gmem, or through a fake
 * hypervisor (gfn mode, no cache) when the test counts mappings. */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fake_ram.h"
#include "gmem.h"
#include "hv.h"
#include "virtqueue.h"

#define MEM_SIZE (1u << 20)
#define DESC_ADDR 0x0000u
#define AVAIL_ADDR 0x4000u
#define USED_ADDR 0x5000u
#define TABLE_ADDR 0x8000u /* indirect tables */
#define DATA_ADDR 0x10000u

enum mem_kind { MEM_FLAT, MEM_HV };

struct guest {
	uint8_t *mem;
	size_t size;
	unsigned num;
	struct vring_desc *desc;
	struct vring_avail *avail;
	struct vring_used *used;
	uint16_t avail_idx;
	struct vp_gmem *gm;
	struct vp_vq vq;
	struct vp_vq_elem elem;
	struct iovec iov[VP_VQ_MAX_SIZE];
	struct vp_gmem_ref ref[VP_VQ_MAX_SIZE];
	int live_maps; /* MEM_HV: hypervisor mappings outstanding */
	struct fake_ram ram; /* mem is ram.base */
	/* MEM_HV mappings of pages not in a row, and their pages. */
	struct {
		uint8_t *addr;
		unsigned n;
		uint64_t pages[64];
	} scat[16];
};

static struct guest g;

static void *hv_map_gfns(struct vp_hv *hv, uint16_t dom, const uint64_t *gfns, unsigned n,
                         int writable)
{
	bool in_row = true;
	void *p;

	(void)hv;
	(void)dom;
	for (unsigned i = 0; i < n; i++) {
		if ((gfns[i] + 1) * VP_PAGE_SIZE > g.size) {
			errno = EFAULT;
			return NULL;
		}
		in_row &= gfns[i] == gfns[0] + i;
	}
	/* A chain's buffers come in one call wherever their pages lie. */
	if (in_row) {
		p = g.mem + gfns[0] * VP_PAGE_SIZE;
	} else {
		unsigned k = 0;

		ck_assert_uint_le(n, 64);
		while (k < 16 && g.scat[k].addr)
			k++;
		ck_assert_uint_lt(k, 16);
		p = fake_ram_map(&g.ram, gfns, n, writable);
		ck_assert_ptr_nonnull(p);
		g.scat[k].addr = p;
		g.scat[k].n = n;
		memcpy(g.scat[k].pages, gfns, n * sizeof(*gfns));
	}
	g.live_maps++;
	return p;
}

static int hv_unmap_gfns(struct vp_hv *hv, void *addr, unsigned n)
{
	uint8_t *p = addr;

	(void)hv;
	for (unsigned k = 0; k < 16; k++) {
		if (g.scat[k].addr == p) {
			ck_assert_uint_eq(g.scat[k].n, n);
			fake_ram_unmap(addr, n);
			g.scat[k].addr = NULL;
		}
	}
	g.live_maps--;
	return 0;
}

static const struct vp_hv_ops hv_ops = {
        .name = "test",
        .map_gfns = hv_map_gfns,
        .unmap_gfns = hv_unmap_gfns,
};
static struct vp_hv test_hv = {.ops = &hv_ops};

/* Guest memory of size bytes with rings at the given addresses. */
static void guest_init_at(unsigned num, unsigned flags, enum mem_kind kind, size_t size,
                          uint64_t desc, uint64_t avail, uint64_t used)
{
	memset(&g, 0, sizeof(g));
	g.size = size;
	ck_assert(fake_ram_init(&g.ram, (size + VP_PAGE_SIZE - 1) / VP_PAGE_SIZE));
	g.mem = g.ram.base;
	g.num = num;
	g.desc = (struct vring_desc *)(g.mem + desc);
	g.avail = (struct vring_avail *)(g.mem + avail);
	g.used = (struct vring_used *)(g.mem + used);
	g.gm = kind == MEM_FLAT ? vp_gmem_new_flat(g.mem, size)
	                        : vp_gmem_new(&test_hv, 1, VP_ADDR_GFN, 0);
	ck_assert_ptr_nonnull(g.gm);
	g.elem.max = VP_VQ_MAX_SIZE;
	g.elem.iov = g.iov;
	g.elem.ref = g.ref;
	ck_assert_int_eq(vp_vq_setup(&g.vq, g.gm, num, desc, avail, used, flags), 0);
}

static void guest_init(unsigned num, unsigned flags, enum mem_kind kind)
{
	guest_init_at(num, flags, kind, MEM_SIZE, DESC_ADDR, AVAIL_ADDR, USED_ADDR);
}

static void guest_fini(void)
{
	vp_vq_teardown(&g.vq);
	if (g.gm)
		vp_gmem_free(g.gm);
	fake_ram_free(&g.ram);
	g.mem = NULL;
	g.gm = NULL;
}

static void set_desc_in(struct vring_desc *table, unsigned i, uint64_t addr, uint32_t len,
                        uint16_t flags, uint16_t next)
{
	table[i].addr = htole64(addr);
	table[i].len = htole32(len);
	table[i].flags = htole16(flags);
	table[i].next = htole16(next);
}

static void set_desc(unsigned i, uint64_t addr, uint32_t len, uint16_t flags,
                     uint16_t next)
{
	set_desc_in(g.desc, i, addr, len, flags, next);
}

static struct vring_desc *table_at(uint64_t addr)
{
	return (struct vring_desc *)(g.mem + addr);
}

static void post(uint16_t head)
{
	g.avail->ring[g.avail_idx % g.num] = htole16(head);
	g.avail_idx++;
	__atomic_store_n(&g.avail->idx, htole16(g.avail_idx), __ATOMIC_RELEASE);
}

static uint16_t *used_event(void)
{
	return &g.avail->ring[g.num];
}

static uint16_t avail_event(void)
{
	uint16_t v;

	memcpy(&v, (uint8_t *)g.used + 4 + 8 * g.num, sizeof(v));
	return le16toh(v);
}

static int pop(void)
{
	return vp_vq_pop(&g.vq, &g.elem);
}

static void finish(uint32_t written)
{
	ck_assert_int_eq(vp_vq_push(&g.vq, &g.elem, written), 0);
	vp_vq_elem_release(g.gm, &g.elem);
}

/* A guest address of the buffer behind iov[i]. */
static uint64_t iov_gaddr(unsigned i)
{
	uint8_t *p = g.iov[i].iov_base;

	for (unsigned k = 0; k < 16; k++) {
		size_t off = (size_t)(p - g.scat[k].addr);

		if (g.scat[k].addr && p >= g.scat[k].addr &&
		    off < (size_t)g.scat[k].n * VP_PAGE_SIZE)
			return g.scat[k].pages[off / VP_PAGE_SIZE] * VP_PAGE_SIZE +
			       off % VP_PAGE_SIZE;
	}
	return (uint64_t)(p - g.mem);
}

START_TEST(setup_validation)
{
	struct vp_vq vq;
	uint8_t *mem = calloc(1, MEM_SIZE);
	struct vp_gmem *gm = vp_gmem_new_flat(mem, MEM_SIZE);

	memset(&vq, 0, sizeof(vq));
	ck_assert_int_eq(vp_vq_setup(&vq, gm, 0, 0, 0x4000, 0x5000, 0), -EINVAL);
	ck_assert_int_eq(vp_vq_setup(&vq, gm, 3, 0, 0x4000, 0x5000, 0), -EINVAL);
	ck_assert_int_eq(vp_vq_setup(&vq, gm, 2048, 0, 0x4000, 0x5000, 0), -EINVAL);
	ck_assert_str_ne(vq.err, "");
	ck_assert_int_eq(vp_vq_setup(&vq, gm, 8, 8, 0x4000, 0x5000, 0), -EINVAL);
	ck_assert_int_eq(vp_vq_setup(&vq, gm, 8, 0, 0x4001, 0x5000, 0), -EINVAL);
	ck_assert_int_eq(vp_vq_setup(&vq, gm, 8, 0, 0x4000, 0x5002, 0), -EINVAL);
	/* Rings that do not fit in guest memory. */
	ck_assert_int_eq(vp_vq_setup(&vq, gm, 8, MEM_SIZE - 64, 0x4000, 0x5000, 0),
	                 -EFAULT);
	ck_assert_int_eq(vp_vq_setup(&vq, gm, 8, 0, MEM_SIZE - 8, 0x5000, 0), -EFAULT);
	ck_assert_int_eq(vp_vq_setup(&vq, gm, 8, 0, 0x4000, MEM_SIZE - 64, 0), -EFAULT);
	ck_assert_int_eq(vp_vq_setup(&vq, gm, 8, 0, 0x4000, UINT64_MAX - 3, 0), -EFAULT);
	ck_assert(!vq.ready);
	ck_assert_int_eq(vp_vq_setup(&vq, gm, 1024, 0, 0x4000, 0x5000, 0), 0);
	ck_assert(vq.ready);
	vp_vq_teardown(&vq);
	ck_assert(!vq.ready);
	vp_vq_teardown(&vq);
	vp_gmem_free(gm);
	free(mem);
}
END_TEST

START_TEST(simple_chain)
{
	guest_init(8, 0, MEM_FLAT);
	set_desc(0, DATA_ADDR, 16, VRING_DESC_F_NEXT, 5);
	set_desc(5, DATA_ADDR + 0x1000, 512, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 2);
	set_desc(2, DATA_ADDR + 0x2000, 1, VRING_DESC_F_WRITE, 0);
	ck_assert_int_eq(pop(), 0);
	post(0);
	ck_assert_int_eq(pop(), 1);
	ck_assert_uint_eq(g.elem.head, 0);
	ck_assert_uint_eq(g.elem.out_num, 1);
	ck_assert_uint_eq(g.elem.in_num, 2);
	ck_assert_uint_eq(g.elem.out_len, 16);
	ck_assert_uint_eq(g.elem.in_len, 513);
	ck_assert_uint_eq(iov_gaddr(0), DATA_ADDR);
	ck_assert_uint_eq(iov_gaddr(1), DATA_ADDR + 0x1000);
	ck_assert_uint_eq(g.iov[1].iov_len, 512);
	ck_assert_uint_eq(iov_gaddr(2), DATA_ADDR + 0x2000);
	ck_assert(vp_vq_elem_current(&g.vq, &g.elem));
	ck_assert_int_eq(pop(), 0);
	finish(513);
	ck_assert_uint_eq(le16toh(g.used->idx), 1);
	ck_assert_uint_eq(le32toh(g.used->ring[0].id), 0);
	ck_assert_uint_eq(le32toh(g.used->ring[0].len), 513);
	guest_fini();
}
END_TEST

/* Mapping per call: a block request's header, data and status byte (the
 * status in the header's page, the data elsewhere) come in two hypervisor
 * mappings, read-only and writable, and each buffer is its own guest
 * bytes; both go when the element is released. */
START_TEST(chain_mapped_in_two_calls)
{
	struct vp_gmem_stats before, after;

	guest_init(8, 0, MEM_HV);
	g.mem[DATA_ADDR + 0x2000] = 0x11;
	g.mem[DATA_ADDR + 0x5fff] = 0x22;
	set_desc(0, DATA_ADDR + 0x2000, 16, VRING_DESC_F_NEXT, 1);
	set_desc(1, DATA_ADDR + 0x5000, 4096, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 2);
	set_desc(2, DATA_ADDR + 0x2010, 1, VRING_DESC_F_WRITE, 0);
	post(0);
	vp_gmem_get_stats(g.gm, &before);
	ck_assert_int_eq(pop(), 1);
	vp_gmem_get_stats(g.gm, &after);
	ck_assert_uint_eq(after.hv_maps - before.hv_maps, 2);
	ck_assert_int_eq(g.live_maps, 3 + 2);
	ck_assert_uint_eq(iov_gaddr(0), DATA_ADDR + 0x2000);
	ck_assert_uint_eq(iov_gaddr(1), DATA_ADDR + 0x5000);
	ck_assert_uint_eq(iov_gaddr(2), DATA_ADDR + 0x2010);
	ck_assert_uint_eq(*(uint8_t *)g.iov[0].iov_base, 0x11);
	ck_assert_uint_eq(((uint8_t *)g.iov[1].iov_base)[0xfff], 0x22);
	((uint8_t *)g.iov[1].iov_base)[0] = 0x33;
	*(uint8_t *)g.iov[2].iov_base = 0x44;
	ck_assert_uint_eq(g.mem[DATA_ADDR + 0x5000], 0x33);
	ck_assert_uint_eq(g.mem[DATA_ADDR + 0x2010], 0x44);
	finish(4097);
	ck_assert_int_eq(g.live_maps, 3);
	guest_fini();
}
END_TEST

START_TEST(chains_in_order)
{
	guest_init(4, 0, MEM_FLAT);
	for (unsigned i = 0; i < 4; i++) {
		set_desc(i, DATA_ADDR + i * 0x100, 0x10 + i, 0, 0);
		post((uint16_t)(3 - i));
	}
	for (unsigned i = 0; i < 4; i++) {
		ck_assert_int_eq(pop(), 1);
		ck_assert_uint_eq(g.elem.head, 3 - i);
		ck_assert_uint_eq(g.elem.out_len, 0x10 + 3 - i);
		finish(0);
	}
	ck_assert_int_eq(pop(), 0);
	ck_assert_uint_eq(le16toh(g.used->idx), 4);
	for (unsigned i = 0; i < 4; i++)
		ck_assert_uint_eq(le32toh(g.used->ring[i].id), 3 - i);
	guest_fini();
}
END_TEST

START_TEST(index_wraparound)
{
	guest_init(4, 0, MEM_FLAT);
	for (unsigned i = 0; i < 4; i++)
		set_desc(i, DATA_ADDR, 64, VRING_DESC_F_WRITE, 0);
	for (unsigned i = 0; i < 70000; i++) {
		post((uint16_t)(i % 4));
		ck_assert_int_eq(pop(), 1);
		ck_assert_uint_eq(g.elem.head, i % 4);
		finish(64);
		ck_assert_uint_eq(le16toh(g.used->idx), (uint16_t)(i + 1));
	}
	ck_assert_int_eq(pop(), 0);
	guest_fini();
}
END_TEST

START_TEST(indirect_chain)
{
	struct vring_desc *t;

	guest_init(4, VP_VQ_F_INDIRECT, MEM_FLAT);
	t = table_at(TABLE_ADDR);
	set_desc_in(t, 0, DATA_ADDR, 16, VRING_DESC_F_NEXT, 2);
	set_desc_in(t, 2, DATA_ADDR + 0x100, 4096, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT,
	            1);
	set_desc_in(t, 1, DATA_ADDR + 0x2000, 1, VRING_DESC_F_WRITE, 0);
	/* The WRITE flag on the pointer itself is ignored. */
	set_desc(3, TABLE_ADDR, 3 * 16, VRING_DESC_F_INDIRECT | VRING_DESC_F_WRITE, 0);
	post(3);
	ck_assert_int_eq(pop(), 1);
	ck_assert_uint_eq(g.elem.head, 3);
	ck_assert_uint_eq(g.elem.out_num, 1);
	ck_assert_uint_eq(g.elem.in_num, 2);
	ck_assert_uint_eq(g.elem.in_len, 4097);
	ck_assert_uint_eq(iov_gaddr(1), DATA_ADDR + 0x100);
	finish(4097);

	/* Direct descriptors, then an indirect table at the end; exactly a
	 * queue's worth of buffers in all. */
	set_desc(0, DATA_ADDR, 16, VRING_DESC_F_NEXT, 1);
	set_desc(1, TABLE_ADDR, 3 * 16, VRING_DESC_F_INDIRECT, 0);
	post(0);
	ck_assert_int_eq(pop(), 1);
	ck_assert_uint_eq(g.elem.out_num, 2);
	ck_assert_uint_eq(g.elem.in_num, 2);
	finish(0);
	guest_fini();
}
END_TEST

START_TEST(chain_of_queue_size)
{
	guest_init(4, 0, MEM_FLAT);
	for (unsigned i = 0; i < 4; i++)
		set_desc(i, DATA_ADDR + i * 16, 16, i < 3 ? VRING_DESC_F_NEXT : 0,
		         (uint16_t)(i + 1));
	post(0);
	ck_assert_int_eq(pop(), 1);
	ck_assert_uint_eq(g.elem.out_num, 4);
	finish(0);
	guest_fini();
}
END_TEST

START_TEST(event_idx_interrupts)
{
	guest_init(8, VP_VQ_F_EVENT_IDX, MEM_FLAT);
	for (unsigned i = 0; i < 8; i++)
		set_desc(i, DATA_ADDR, 8, VRING_DESC_F_WRITE, 0);
	*used_event() = htole16(3);
	/* The first check after setup always notifies. */
	post(0);
	ck_assert_int_eq(pop(), 1);
	finish(8);
	ck_assert(vp_vq_need_notify(&g.vq));
	/* used idx 1 -> 3: the driver asked for an interrupt after entry 3. */
	for (unsigned i = 0; i < 2; i++) {
		post((uint16_t)i);
		ck_assert_int_eq(pop(), 1);
		finish(8);
	}
	ck_assert(!vp_vq_need_notify(&g.vq));
	post(0);
	ck_assert_int_eq(pop(), 1);
	finish(8);
	ck_assert(vp_vq_need_notify(&g.vq));
	/* No new pushes: nothing to signal. */
	ck_assert(!vp_vq_need_notify(&g.vq));
	/* NO_INTERRUPT is ignored with EVENT_IDX. */
	g.avail->flags = htole16(VRING_AVAIL_F_NO_INTERRUPT);
	*used_event() = htole16(4);
	post(0);
	ck_assert_int_eq(pop(), 1);
	finish(8);
	ck_assert(vp_vq_need_notify(&g.vq));
	guest_fini();
}
END_TEST

START_TEST(event_idx_kick_suppression)
{
	guest_init(8, VP_VQ_F_EVENT_IDX, MEM_FLAT);
	for (unsigned i = 0; i < 8; i++)
		set_desc(i, DATA_ADDR, 8, 0, 0);
	g.used->flags = 0;
	vp_vq_disable_notify(&g.vq);
	ck_assert_uint_eq(le16toh(g.used->flags), 0);
	post(0);
	post(1);
	ck_assert_int_eq(pop(), 1);
	finish(0);
	/* Still busy: avail_event stays behind so the driver does not kick. */
	ck_assert_uint_eq(avail_event(), 0);
	ck_assert_int_eq(pop(), 1);
	finish(0);
	ck_assert_int_eq(pop(), 0);
	ck_assert(!vp_vq_enable_notify(&g.vq));
	ck_assert_uint_eq(avail_event(), 2);
	/* A buffer that slipped in before enabling is reported. */
	post(2);
	ck_assert(vp_vq_enable_notify(&g.vq));
	ck_assert_int_eq(pop(), 1);
	finish(0);
	guest_fini();
}
END_TEST

START_TEST(flag_notification)
{
	guest_init(8, 0, MEM_FLAT);
	set_desc(0, DATA_ADDR, 8, 0, 0);
	vp_vq_disable_notify(&g.vq);
	ck_assert_uint_eq(le16toh(g.used->flags), VRING_USED_F_NO_NOTIFY);
	ck_assert(!vp_vq_enable_notify(&g.vq));
	ck_assert_uint_eq(le16toh(g.used->flags), 0);
	post(0);
	ck_assert(vp_vq_enable_notify(&g.vq));
	ck_assert_int_eq(pop(), 1);
	finish(0);
	ck_assert(vp_vq_need_notify(&g.vq));
	g.avail->flags = htole16(VRING_AVAIL_F_NO_INTERRUPT);
	ck_assert(!vp_vq_need_notify(&g.vq));
	guest_fini();
}
END_TEST

START_TEST(stale_element_after_reset)
{
	uint16_t used_before;

	guest_init(8, 0, MEM_FLAT);
	set_desc(0, DATA_ADDR, 8, VRING_DESC_F_WRITE, 0);
	post(0);
	ck_assert_int_eq(pop(), 1);
	vp_vq_teardown(&g.vq);
	ck_assert(!vp_vq_elem_current(&g.vq, &g.elem));
	ck_assert_int_eq(vp_vq_push(&g.vq, &g.elem, 8), -ESTALE);
	ck_assert(!vp_vq_need_notify(&g.vq));
	ck_assert_int_eq(vp_vq_pop(&g.vq, &g.elem), 0);
	ck_assert_int_eq(vp_vq_setup(&g.vq, g.gm, 8, DESC_ADDR, AVAIL_ADDR, USED_ADDR, 0),
	                 0);
	used_before = g.used->idx;
	ck_assert(!vp_vq_elem_current(&g.vq, &g.elem));
	ck_assert_int_eq(vp_vq_push(&g.vq, &g.elem, 8), -ESTALE);
	ck_assert_uint_eq(g.used->idx, used_before);
	vp_vq_elem_release(g.gm, &g.elem);
	guest_fini();
}
END_TEST

/* Rings that end exactly where guest memory ends: any read or write past
 * a ring (used_event, avail_event included) is an ASan error. */
START_TEST(rings_at_end_of_memory)
{
	const unsigned num = 16;
	size_t desc_sz = 16 * num, avail_sz = 6 + 2 * num, used_sz = 6 + 8 * num;

	for (int which = 0; which < 3; which++) {
		size_t size = 0x3000 + (which == 0   ? desc_sz
		                        : which == 1 ? avail_sz
		                                     : used_sz);
		uint64_t d = which == 0 ? 0x3000 : 0x0;
		uint64_t a = which == 1 ? 0x3000 : 0x1000;
		uint64_t u = which == 2 ? 0x3000 : 0x2000;

		guest_init_at(num, VP_VQ_F_EVENT_IDX, MEM_FLAT, size, d, a, u);
		for (unsigned i = 0; i < num; i++)
			set_desc(i, 0x2f00, 16, VRING_DESC_F_WRITE, 0);
		for (unsigned i = 0; i < 3 * num; i++) {
			post((uint16_t)(num - 1 - i % num));
			ck_assert_int_eq(pop(), 1);
			finish(16);
			vp_vq_need_notify(&g.vq);
			ck_assert(!vp_vq_enable_notify(&g.vq));
		}
		guest_fini();
	}
}
END_TEST

START_TEST(elem_capacity)
{
	guest_init(8, 0, MEM_FLAT);
	set_desc(0, DATA_ADDR, 8, VRING_DESC_F_NEXT, 1);
	set_desc(1, DATA_ADDR, 8, VRING_DESC_F_NEXT, 2);
	set_desc(2, DATA_ADDR, 8, 0, 0);
	post(0);
	g.elem.max = 2;
	ck_assert_int_eq(pop(), -ENOBUFS);
	ck_assert_uint_eq(g.elem.out_num + g.elem.in_num, 0);
	guest_fini();
}
END_TEST

/* Hostile ring contents.  Each builder sets up a queue of 4 (indirect
 * negotiated unless the case is about that) and posts one chain that
 * must be refused. */
typedef void (*bad_ring_fn)(void);

static void bad_avail_jump(void)
{
	set_desc(0, DATA_ADDR, 8, 0, 0);
	post(0);
	g.avail->idx = htole16(5); /* 5 entries ahead of a 4-entry queue */
}

static void bad_head(void)
{
	post(4);
}

static void bad_head_huge(void)
{
	post(0xffff);
}

static void bad_next(void)
{
	set_desc(0, DATA_ADDR, 8, VRING_DESC_F_NEXT, 4);
	post(0);
}

static void bad_loop(void)
{
	set_desc(0, DATA_ADDR, 8, VRING_DESC_F_NEXT, 1);
	set_desc(1, DATA_ADDR, 8, VRING_DESC_F_NEXT, 2);
	set_desc(2, DATA_ADDR, 8, VRING_DESC_F_NEXT, 0);
	post(0);
}

static void bad_self_loop(void)
{
	set_desc(2, DATA_ADDR, 8, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 2);
	post(2);
}

static void bad_too_long_via_indirect(void)
{
	struct vring_desc *t = table_at(TABLE_ADDR);

	set_desc(0, DATA_ADDR, 8, VRING_DESC_F_NEXT, 1);
	set_desc(1, DATA_ADDR, 8, VRING_DESC_F_NEXT, 2);
	set_desc(2, TABLE_ADDR, 3 * 16, VRING_DESC_F_INDIRECT, 0);
	for (unsigned i = 0; i < 3; i++)
		set_desc_in(t, i, DATA_ADDR, 8, i < 2 ? VRING_DESC_F_NEXT : 0,
		            (uint16_t)(i + 1));
	post(0);
}

static void bad_indirect_table_too_long(void)
{
	struct vring_desc *t = table_at(TABLE_ADDR);

	/* A long table whose chain is longer than the queue. */
	for (unsigned i = 0; i < 8; i++)
		set_desc_in(t, i, DATA_ADDR, 8, VRING_DESC_F_NEXT, (uint16_t)(i + 1));
	set_desc_in(t, 7, DATA_ADDR, 8, 0, 0);
	set_desc(0, TABLE_ADDR, 8 * 16, VRING_DESC_F_INDIRECT, 0);
	post(0);
}

static void bad_indirect_huge(void)
{
	set_desc(0, TABLE_ADDR, (VP_VQ_MAX_SIZE + 1) * 16, VRING_DESC_F_INDIRECT, 0);
	post(0);
}

static void bad_indirect_len_odd(void)
{
	set_desc_in(table_at(TABLE_ADDR), 0, DATA_ADDR, 8, 0, 0);
	set_desc(0, TABLE_ADDR, 40, VRING_DESC_F_INDIRECT, 0);
	post(0);
}

static void bad_indirect_len_zero(void)
{
	set_desc(0, TABLE_ADDR, 0, VRING_DESC_F_INDIRECT, 0);
	post(0);
}

static void bad_indirect_nested(void)
{
	struct vring_desc *t = table_at(TABLE_ADDR);

	set_desc_in(t, 0, DATA_ADDR, 8, VRING_DESC_F_NEXT, 1);
	set_desc_in(t, 1, TABLE_ADDR, 32, VRING_DESC_F_INDIRECT, 0);
	set_desc(0, TABLE_ADDR, 32, VRING_DESC_F_INDIRECT, 0);
	post(0);
}

static void bad_indirect_with_next(void)
{
	set_desc_in(table_at(TABLE_ADDR), 0, DATA_ADDR, 8, 0, 0);
	set_desc(0, TABLE_ADDR, 16, VRING_DESC_F_INDIRECT | VRING_DESC_F_NEXT, 1);
	set_desc(1, DATA_ADDR, 8, VRING_DESC_F_WRITE, 0);
	post(0);
}

static void bad_indirect_next(void)
{
	struct vring_desc *t = table_at(TABLE_ADDR);

	set_desc_in(t, 0, DATA_ADDR, 8, VRING_DESC_F_NEXT, 1);
	set_desc_in(t, 1, DATA_ADDR, 8, VRING_DESC_F_NEXT, 2); /* table has 2 */
	set_desc(0, TABLE_ADDR, 32, VRING_DESC_F_INDIRECT, 0);
	post(0);
}

static void bad_indirect_loop(void)
{
	struct vring_desc *t = table_at(TABLE_ADDR);

	set_desc_in(t, 0, DATA_ADDR, 8, VRING_DESC_F_NEXT, 1);
	set_desc_in(t, 1, DATA_ADDR, 8, VRING_DESC_F_NEXT, 0);
	set_desc(0, TABLE_ADDR, 32, VRING_DESC_F_INDIRECT, 0);
	post(0);
}

static void bad_indirect_unmappable(void)
{
	set_desc(0, MEM_SIZE - 16, 32, VRING_DESC_F_INDIRECT, 0);
	post(0);
}

static void bad_write_then_read(void)
{
	set_desc(0, DATA_ADDR, 8, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 1);
	set_desc(1, DATA_ADDR, 8, 0, 0);
	post(0);
}

static void bad_write_then_read_indirect(void)
{
	set_desc_in(table_at(TABLE_ADDR), 0, DATA_ADDR, 8, 0, 0);
	set_desc(0, DATA_ADDR, 8, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 1);
	set_desc(1, TABLE_ADDR, 16, VRING_DESC_F_INDIRECT, 0);
	post(0);
}

static void bad_zero_length(void)
{
	set_desc(0, DATA_ADDR, 8, VRING_DESC_F_NEXT, 1);
	set_desc(1, DATA_ADDR, 0, VRING_DESC_F_WRITE, 0);
	post(0);
}

static void bad_zero_length_indirect(void)
{
	set_desc_in(table_at(TABLE_ADDR), 0, DATA_ADDR, 0, 0, 0);
	set_desc(0, TABLE_ADDR, 16, VRING_DESC_F_INDIRECT, 0);
	post(0);
}

static void bad_unmappable(void)
{
	set_desc(0, DATA_ADDR, 8, VRING_DESC_F_NEXT, 1);
	set_desc(1, MEM_SIZE - 4, 8, VRING_DESC_F_WRITE, 0);
	post(0);
}

static void bad_addr_overflow(void)
{
	set_desc(0, UINT64_MAX - 4, 16, 0, 0);
	post(0);
}

static void bad_huge_len(void)
{
	set_desc(0, DATA_ADDR, UINT32_MAX, VRING_DESC_F_WRITE, 0);
	post(0);
}

/* Each case and a fragment of the reason vp_vq_pop() must give. */
static const struct {
	bad_ring_fn build;
	const char *why;
} bad_rings[] = {
        {bad_avail_jump, "entries ahead"},
        {bad_head, "head 4 out of range"},
        {bad_head_huge, "head 65535 out of range"},
        {bad_next, "next 4 out of range"},
        {bad_loop, "loops"},
        {bad_self_loop, "loops"},
        {bad_too_long_via_indirect, "longer than the queue size"},
        {bad_indirect_table_too_long, "longer than the queue size"},
        {bad_indirect_huge, "indirect table of 16400 bytes"},
        {bad_indirect_len_odd, "indirect table of 40 bytes"},
        {bad_indirect_len_zero, "indirect table of 0 bytes"},
        {bad_indirect_nested, "nested indirect"},
        {bad_indirect_with_next, "both INDIRECT and NEXT"},
        {bad_indirect_next, "indirect descriptor 1: next 2 out of range"},
        {bad_indirect_loop, "indirect chain from head 0 loops"},
        {bad_indirect_unmappable, "cannot map indirect table"},
        {bad_write_then_read, "readable after a writable"},
        {bad_write_then_read_indirect, "readable after a writable"},
        {bad_zero_length, "length 0"},
        {bad_zero_length_indirect, "indirect descriptor 0 has length 0"},
        {bad_unmappable, "cannot map"},
        {bad_addr_overflow, "cannot map"},
        {bad_huge_len, "cannot map"},
};
#define N_BAD_RINGS ((int)(sizeof(bad_rings) / sizeof(bad_rings[0])))

/* Every hostile chain is refused, nothing stays mapped (the hv gmem has
 * no cache, so a leaked reference is a live mapping), nothing is pushed,
 * and the error says what happened. */
START_TEST(hostile_ring_refused)
{
	guest_init(4, VP_VQ_F_INDIRECT, MEM_HV);
	ck_assert_int_eq(g.live_maps, 3);
	bad_rings[_i].build();
	ck_assert_int_lt(pop(), 0);
	ck_assert_msg(strstr(g.vq.err, bad_rings[_i].why), "case %d: \"%s\" lacks \"%s\"",
	              _i, g.vq.err, bad_rings[_i].why);
	ck_assert_uint_eq(g.elem.out_num + g.elem.in_num, 0);
	ck_assert_int_eq(g.live_maps, 3);
	ck_assert_uint_eq(g.used->idx, 0);
	guest_fini();
	ck_assert_int_eq(g.live_maps, 0);
}
END_TEST

START_TEST(indirect_refused_without_feature)
{
	guest_init(4, 0, MEM_FLAT);
	set_desc_in(table_at(TABLE_ADDR), 0, DATA_ADDR, 8, 0, 0);
	set_desc(0, TABLE_ADDR, 16, VRING_DESC_F_INDIRECT, 0);
	post(0);
	ck_assert_int_lt(pop(), 0);
	guest_fini();
}
END_TEST

static uint64_t rng_state;

static uint64_t rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

static uint64_t rnd_addr(void)
{
	switch (rnd() % 8) {
	case 0: return rnd();
	case 1: return MEM_SIZE - rnd() % 64;
	case 2: return TABLE_ADDR + (rnd() % 64) * 16;
	default: return DATA_ADDR + rnd() % 0x10000;
	}
}

static void rnd_desc(struct vring_desc *t, unsigned i, unsigned span)
{
	set_desc_in(t, i, rnd_addr(),
	            rnd() % 4 ? (uint32_t)(rnd() % 256) : (uint32_t)rnd(),
	            (uint16_t)(rnd() % 8), (uint16_t)(rnd() % (span + 2)));
	if (rnd() % 4 == 0)
		t[i].len = htole32((uint32_t)(16 * (rnd() % 8)));
}

/* Random rings, random tables: pop must never crash, never hand out a
 * buffer outside guest memory, and never leak a mapping. */
START_TEST(fuzz_random_rings)
{
	rng_state = 0x9e3779b97f4a7c15ull;
	for (unsigned round = 0; round < 3000; round++) {
		unsigned num = 1u << (rnd() % 5);

		guest_init(num, VP_VQ_F_INDIRECT | (round & 1 ? VP_VQ_F_EVENT_IDX : 0),
		           round % 3 ? MEM_FLAT : MEM_HV);
		for (unsigned i = 0; i < num; i++)
			rnd_desc(g.desc, i, num);
		for (unsigned i = 0; i < 64; i++)
			rnd_desc(table_at(TABLE_ADDR), i, 8);
		for (unsigned i = 0; i < num + 1; i++)
			g.avail->ring[i] = htole16((uint16_t)(rnd() % (num + 2)));
		g.avail->idx = htole16((uint16_t)(rnd() % (num + 3)));
		for (unsigned k = 0; k < 2 * num + 2; k++) {
			int r = pop();

			ck_assert_int_le(r, 1);
			if (r <= 0)
				break;
			for (unsigned i = 0; i < g.elem.out_num + g.elem.in_num; i++) {
				ck_assert_uint_gt(g.iov[i].iov_len, 0);
				ck_assert_uint_le(iov_gaddr(i) + g.iov[i].iov_len,
				                  MEM_SIZE);
			}
			ck_assert_uint_le(g.elem.out_num + g.elem.in_num, num);
			finish((uint32_t)g.elem.in_len);
			vp_vq_need_notify(&g.vq);
		}
		if (round % 3 == 0)
			ck_assert_int_eq(g.live_maps, 3);
		guest_fini();
	}
}
END_TEST

int main(void)
{
	Suite *s = suite_create("virtqueue");
	TCase *tc = tcase_create("virtqueue");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, setup_validation);
	tcase_add_test(tc, chain_mapped_in_two_calls);
	tcase_add_test(tc, simple_chain);
	tcase_add_test(tc, chains_in_order);
	tcase_add_test(tc, index_wraparound);
	tcase_add_test(tc, indirect_chain);
	tcase_add_test(tc, chain_of_queue_size);
	tcase_add_test(tc, event_idx_interrupts);
	tcase_add_test(tc, event_idx_kick_suppression);
	tcase_add_test(tc, flag_notification);
	tcase_add_test(tc, stale_element_after_reset);
	tcase_add_test(tc, rings_at_end_of_memory);
	tcase_add_test(tc, elem_capacity);
	tcase_add_loop_test(tc, hostile_ring_refused, 0, N_BAD_RINGS);
	tcase_add_test(tc, indirect_refused_without_feature);
	tcase_add_test(tc, fuzz_random_rings);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
