// SPDX-License-Identifier: GPL-2.0
/*
 * Guest memory the backend may reach, as dma_map_ops of the xenbus device
 * (the parent of the virtio device, whose DMA API virtio_ring always uses
 * on Xen).  Two address modes (docs/PROTOCOL.md, section 4):
 *
 * grant: a pool of pages granted once, with consecutive grant refs, for the
 *   device's life (feature-persistent).  The vrings are allocated in it and
 *   every buffer is bounced through it; addresses are
 *   1 << 63 | gref << 12 | offset.  Works with a backend in any domain.
 * gfn: buffers are named by the frame the backend maps (pfn_to_gfn(); in a
 *   PV guest the machine frame), zero copy.  A PV guest's neighbouring
 *   pages are rarely neighbours to the backend, so a mapping stays within
 *   one page (max_mapping_size), the vrings get one page each from a small
 *   pool, and the rare buffer that crosses a page boundary into a frame
 *   that does not follow is bounced through that pool.  Needs a backend
 *   allowed to map any of the guest's memory (dom0).
 */
#include <linux/dma-map-ops.h>
#include <linux/io.h>
#include <linux/mm.h>
#include <linux/scatterlist.h>
#include <linux/slab.h>
#include <xen/page.h>

#include "vproxy.h"

/*
 * Allocation granule of the pool: small enough for virtio-blk headers
 * and status bytes, large enough to keep the bitmaps short.
 */
#define VPX_UNIT_SHIFT		9
#define VPX_UNIT		BIT(VPX_UNIT_SHIFT)
/* Grant-mode chunk: the largest mapping, and virtually contiguous. */
#define VPX_GRANT_CHUNK_PAGES	16

static struct vpx_pool *dev_pool(struct device *dev)
{
	struct vpx_dev *vd = dev_get_drvdata(dev);

	return &vd->pool;
}

static struct vpx_stats *dev_stats(struct device *dev)
{
	struct vpx_dev *vd = dev_get_drvdata(dev);

	return &vd->stats;
}

static size_t chunk_bytes(const struct vpx_pool *pool)
{
	return (size_t)pool->chunk_pages << PAGE_SHIFT;
}

static grant_ref_t chunk_ref(const struct vpx_pool *pool, unsigned int c,
			     unsigned int page)
{
	return pool->first_ref + c * pool->chunk_pages + page;
}

void vpx_pool_destroy(struct vpx_pool *pool)
{
	unsigned int c, p;

	if (!pool->chunks)
		return;
	for (c = 0; c < pool->nr_chunks; c++) {
		struct vpx_chunk *ch = &pool->chunks[c];

		for (p = 0; p < pool->chunk_pages && pool->grant; p++) {
			grant_ref_t ref = chunk_ref(pool, c, p);

			if (!ch->va) {
				gnttab_free_grant_reference(ref);
				continue;
			}
			/* Frees the page once the backend no longer maps it. */
			gnttab_end_foreign_access(ref,
						  virt_to_page(ch->va +
							       p * PAGE_SIZE));
		}
		if (ch->va && !pool->grant)
			free_pages_exact(ch->va, chunk_bytes(pool));
		bitmap_free(ch->map);
		kfree(ch->orig);
	}
	kfree(pool->chunks);
	pool->chunks = NULL;
}

int vpx_pool_init(struct vpx_pool *pool, bool grant, domid_t backend,
		  unsigned int pages)
{
	unsigned int c, p;
	int err;

	pool->grant = grant;
	pool->backend = backend;
	pool->chunk_pages = grant ? VPX_GRANT_CHUNK_PAGES : 1;
	pool->nr_chunks = max(1U, DIV_ROUND_UP(pages, pool->chunk_pages));
	pool->units = chunk_bytes(pool) >> VPX_UNIT_SHIFT;
	pool->hint = 0;
	pool->chunks = kcalloc(pool->nr_chunks, sizeof(*pool->chunks),
			       GFP_KERNEL);
	if (!pool->chunks)
		return -ENOMEM;
	if (grant) {
		err = gnttab_alloc_grant_reference_seq(pool->nr_chunks *
						       pool->chunk_pages,
						       &pool->first_ref);
		if (err) {
			kfree(pool->chunks);
			pool->chunks = NULL;
			return err;
		}
	}
	for (c = 0; c < pool->nr_chunks; c++) {
		struct vpx_chunk *ch = &pool->chunks[c];

		ch->map = bitmap_zalloc(pool->units, GFP_KERNEL);
		ch->orig = kcalloc(pool->units, sizeof(*ch->orig), GFP_KERNEL);
		if (!ch->map || !ch->orig)
			goto nomem;
		/* Split pages: each can be freed on its own once ungranted. */
		ch->va = alloc_pages_exact(chunk_bytes(pool),
					   GFP_KERNEL | __GFP_ZERO);
		if (!ch->va)
			goto nomem;
		ch->gfn = virt_to_gfn(ch->va);
		for (p = 0; p < pool->chunk_pages && grant; p++)
			gnttab_grant_foreign_access_ref(chunk_ref(pool, c, p),
							backend,
							virt_to_gfn(ch->va + p * PAGE_SIZE),
							0);
	}
	return 0;

nomem:
	vpx_pool_destroy(pool);
	return -ENOMEM;
}

/* Reserve size bytes in one chunk; -1 when the pool is full. */
static int vpx_pool_get(struct vpx_pool *pool, size_t size,
			unsigned long align_mask, unsigned int *chunk)
{
	unsigned int n = DIV_ROUND_UP(size, VPX_UNIT);
	unsigned long flags;
	unsigned int i;

	if (!n || n > pool->units || !pool->chunks)
		return -1;
	spin_lock_irqsave(&pool->lock, flags);
	for (i = 0; i < pool->nr_chunks; i++) {
		unsigned int c = (pool->hint + i) % pool->nr_chunks;
		struct vpx_chunk *ch = &pool->chunks[c];
		unsigned long u;

		u = bitmap_find_next_zero_area(ch->map, pool->units, 0, n,
					       align_mask);
		if (u < pool->units) {
			bitmap_set(ch->map, u, n);
			pool->hint = c;
			spin_unlock_irqrestore(&pool->lock, flags);
			*chunk = c;
			return u;
		}
	}
	spin_unlock_irqrestore(&pool->lock, flags);
	return -1;
}

static void vpx_pool_put(struct vpx_pool *pool, unsigned int c,
			 unsigned int u, size_t size)
{
	unsigned long flags;

	spin_lock_irqsave(&pool->lock, flags);
	bitmap_clear(pool->chunks[c].map, u, DIV_ROUND_UP(size, VPX_UNIT));
	spin_unlock_irqrestore(&pool->lock, flags);
}

static dma_addr_t vpx_pool_addr(const struct vpx_pool *pool, unsigned int c,
				unsigned int u)
{
	size_t off = (size_t)u << VPX_UNIT_SHIFT;

	if (pool->grant)
		return VPROXY_GRANT_ADDR_FLAG |
		       (u64)chunk_ref(pool, c, off >> PAGE_SHIFT) << XEN_PAGE_SHIFT |
		       (off & ~PAGE_MASK);
	return (u64)pool->chunks[c].gfn << XEN_PAGE_SHIFT | off;
}

/* The chunk and unit of a device address in the pool; false if not one. */
static bool vpx_pool_find(const struct vpx_pool *pool, dma_addr_t addr,
			  unsigned int *chunk, unsigned int *unit)
{
	unsigned int c;
	u64 idx;

	if (!pool->chunks)
		return false;
	if (pool->grant) {
		if (!(addr & VPROXY_GRANT_ADDR_FLAG))
			return false;
		idx = ((addr & ~VPROXY_GRANT_ADDR_FLAG) >> XEN_PAGE_SHIFT) -
		      pool->first_ref;
		if (idx >= (u64)pool->nr_chunks * pool->chunk_pages)
			return false;
		*chunk = idx / pool->chunk_pages;
		*unit = ((idx % pool->chunk_pages) << PAGE_SHIFT |
			 (addr & ~PAGE_MASK)) >> VPX_UNIT_SHIFT;
		return true;
	}
	for (c = 0; c < pool->nr_chunks; c++) {
		if (pool->chunks[c].gfn == addr >> XEN_PAGE_SHIFT) {
			*chunk = c;
			*unit = (addr & ~PAGE_MASK) >> VPX_UNIT_SHIFT;
			return true;
		}
	}
	return false;
}

static void *vpx_alloc(struct device *dev, size_t size, dma_addr_t *handle,
		       gfp_t gfp, unsigned long attrs)
{
	struct vpx_pool *pool = dev_pool(dev);
	unsigned int c;
	void *va;
	int u;

	/* Page-aligned, as the DMA API promises coherent memory to be. */
	u = vpx_pool_get(pool, size, (PAGE_SIZE >> VPX_UNIT_SHIFT) - 1, &c);
	if (u < 0)
		return NULL;
	va = pool->chunks[c].va + ((size_t)u << VPX_UNIT_SHIFT);
	memset(va, 0, size);
	*handle = vpx_pool_addr(pool, c, u);
	return va;
}

static void vpx_free(struct device *dev, size_t size, void *vaddr,
		     dma_addr_t handle, unsigned long attrs)
{
	struct vpx_pool *pool = dev_pool(dev);
	unsigned int c, u;

	if (WARN_ON(!vpx_pool_find(pool, handle, &c, &u)))
		return;
	vpx_pool_put(pool, c, u, size);
}

static dma_addr_t vpx_bounce(struct device *dev, phys_addr_t phys,
			     size_t size, enum dma_data_direction dir)
{
	struct vpx_pool *pool = dev_pool(dev);
	unsigned int c;
	void *va;
	int u;

	u = vpx_pool_get(pool, size, 0, &c);
	if (u < 0) {
		/* virtio_blk asks the block layer to retry later. */
		atomic64_inc(&dev_stats(dev)->pool_full);
		return DMA_MAPPING_ERROR;
	}
	atomic64_inc(&dev_stats(dev)->bounce_maps);
	pool->chunks[c].orig[u] = phys;
	va = pool->chunks[c].va + ((size_t)u << VPX_UNIT_SHIFT);
	if (dir == DMA_TO_DEVICE || dir == DMA_BIDIRECTIONAL)
		memcpy(va, phys_to_virt(phys), size);
	return vpx_pool_addr(pool, c, u);
}

static dma_addr_t vpx_map_page(struct device *dev, struct page *page,
			       unsigned long offset, size_t size,
			       enum dma_data_direction dir,
			       unsigned long attrs)
{
	struct vpx_pool *pool = dev_pool(dev);
	phys_addr_t phys = page_to_phys(page) + offset;
	unsigned long pfn = PHYS_PFN(phys), gfn, i, pages;

	if (pool->grant)
		return vpx_bounce(dev, phys, size, dir);
	gfn = pfn_to_gfn(pfn);
	pages = DIV_ROUND_UP((phys & ~PAGE_MASK) + size, PAGE_SIZE);
	for (i = 1; i < pages; i++)
		if (pfn_to_gfn(pfn + i) != gfn + i)
			return vpx_bounce(dev, phys, size, dir);
	atomic64_inc(&dev_stats(dev)->direct_maps);
	return (u64)gfn << XEN_PAGE_SHIFT | (phys & ~PAGE_MASK);
}

static void vpx_unmap_page(struct device *dev, dma_addr_t addr, size_t size,
			   enum dma_data_direction dir, unsigned long attrs)
{
	struct vpx_pool *pool = dev_pool(dev);
	unsigned int c, u;

	if (!vpx_pool_find(pool, addr, &c, &u))
		return; /* gfn mode, zero copy */
	if (dir == DMA_FROM_DEVICE || dir == DMA_BIDIRECTIONAL)
		memcpy(phys_to_virt(pool->chunks[c].orig[u]),
		       pool->chunks[c].va + ((size_t)u << VPX_UNIT_SHIFT),
		       size);
	vpx_pool_put(pool, c, u, size);
}

static void vpx_unmap_sg(struct device *dev, struct scatterlist *sgl,
			 int nents, enum dma_data_direction dir,
			 unsigned long attrs)
{
	struct scatterlist *sg;
	int i;

	for_each_sg(sgl, sg, nents, i)
		vpx_unmap_page(dev, sg->dma_address, sg_dma_len(sg), dir,
			       attrs);
}

static int vpx_map_sg(struct device *dev, struct scatterlist *sgl, int nents,
		      enum dma_data_direction dir, unsigned long attrs)
{
	struct scatterlist *sg;
	int i;

	for_each_sg(sgl, sg, nents, i) {
		sg->dma_address = vpx_map_page(dev, sg_page(sg), sg->offset,
					       sg->length, dir, attrs);
		if (sg->dma_address == DMA_MAPPING_ERROR) {
			vpx_unmap_sg(dev, sgl, i, dir, attrs);
			return -ENOMEM;
		}
		sg_dma_len(sg) = sg->length;
	}
	return nents;
}

static size_t vpx_max_mapping_size(struct device *dev)
{
	struct vpx_pool *pool = dev_pool(dev);

	return pool->grant ? VPX_GRANT_CHUNK_PAGES * PAGE_SIZE : PAGE_SIZE;
}

const struct dma_map_ops vpx_dma_ops = {
	.alloc = vpx_alloc,
	.free = vpx_free,
	.map_page = vpx_map_page,
	.unmap_page = vpx_unmap_page,
	.map_sg = vpx_map_sg,
	.unmap_sg = vpx_unmap_sg,
	.max_mapping_size = vpx_max_mapping_size,
};
