/* SPDX-License-Identifier: MIT */
/*
 * Split virtqueue, device side.  The guest owns the descriptor table and
 * the avail ring and may rewrite them while we read: every value is read
 * once into a local copy, checked, and only the copy is used.
 */
#include "virtqueue.h"

#include <endian.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define DESC_ALIGN 16u
#define AVAIL_ALIGN 2u
#define USED_ALIGN 4u

static void vq_set_err(struct vp_vq *vq, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));

static void vq_set_err(struct vp_vq *vq, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(vq->err, sizeof(vq->err), fmt, ap);
	va_end(ap);
}

static size_t desc_bytes(unsigned num)
{
	return (size_t)num * sizeof(struct vring_desc);
}

/* flags, idx, ring[num], used_event */
static size_t avail_bytes(unsigned num)
{
	return 6 + 2 * (size_t)num;
}

/* flags, idx, ring[num], avail_event */
static size_t used_bytes(unsigned num)
{
	return 6 + 8 * (size_t)num;
}

/* avail_event sits right after the used ring's last entry. */
static uint16_t *avail_event_ptr(struct vp_vq *vq)
{
	return (uint16_t *)(void *)((uint8_t *)vq->used + 4 + 8 * (size_t)vq->num);
}

void vp_vq_teardown(struct vp_vq *vq)
{
	if (vq->ready) {
		vp_gmem_unmap(vq->gm, &vq->desc_ref);
		vp_gmem_unmap(vq->gm, &vq->avail_ref);
		vp_gmem_unmap(vq->gm, &vq->used_ref);
	}
	vq->desc = NULL;
	vq->avail = NULL;
	vq->used = NULL;
	vq->ready = false;
	vq->gen++;
}

int vp_vq_setup(struct vp_vq *vq, struct vp_gmem *gm, unsigned num, uint64_t desc_addr,
                uint64_t avail_addr, uint64_t used_addr, unsigned flags)
{
	int ret;

	vp_vq_teardown(vq);
	vq->gm = gm;
	if (num == 0 || num > VP_VQ_MAX_SIZE || (num & (num - 1))) {
		vq_set_err(vq, "queue size %u is not a power of two up to %u", num,
		           VP_VQ_MAX_SIZE);
		return -EINVAL;
	}
	if (desc_addr % DESC_ALIGN || avail_addr % AVAIL_ALIGN ||
	    used_addr % USED_ALIGN) {
		vq_set_err(vq, "misaligned ring (desc %#llx avail %#llx used %#llx)",
		           (unsigned long long)desc_addr, (unsigned long long)avail_addr,
		           (unsigned long long)used_addr);
		return -EINVAL;
	}
	vq->desc = vp_gmem_map(gm, desc_addr, desc_bytes(num), false, &vq->desc_ref);
	vq->avail = vp_gmem_map(gm, avail_addr, avail_bytes(num), false, &vq->avail_ref);
	vq->used = vp_gmem_map(gm, used_addr, used_bytes(num), true, &vq->used_ref);
	if (!vq->desc || !vq->avail || !vq->used) {
		vq_set_err(vq, "cannot map rings (desc %#llx avail %#llx used %#llx)",
		           (unsigned long long)desc_addr, (unsigned long long)avail_addr,
		           (unsigned long long)used_addr);
		ret = -EFAULT;
		goto fail;
	}
	vq->num = (uint16_t)num;
	vq->event_idx = flags & VP_VQ_F_EVENT_IDX;
	vq->indirect = flags & VP_VQ_F_INDIRECT;
	vq->last_avail = 0;
	vq->used_idx = 0;
	vq->signalled_used = 0;
	vq->signalled_valid = false;
	vq->ready = true;
	vq->gen++;
	return 0;

fail:
	vp_gmem_unmap(gm, &vq->desc_ref);
	vp_gmem_unmap(gm, &vq->avail_ref);
	vp_gmem_unmap(gm, &vq->used_ref);
	vq->desc = NULL;
	vq->avail = NULL;
	vq->used = NULL;
	return ret;
}

/* Copy descriptor i out of a guest-writable table. */
static void desc_read(const struct vring_desc *table, unsigned i, struct vring_desc *d)
{
	memcpy(d, &table[i], sizeof(*d));
	/* Keep the compiler from re-reading the table instead of the copy:
	 * the guest may change it between two reads. */
	__atomic_signal_fence(__ATOMIC_SEQ_CST);
	d->addr = le64toh(d->addr);
	d->len = le32toh(d->len);
	d->flags = le16toh(d->flags);
	d->next = le16toh(d->next);
}

void vp_vq_elem_release(struct vp_gmem *gm, struct vp_vq_elem *elem)
{
	unsigned n = elem->out_num + elem->in_num;

	for (unsigned i = 0; i < n; i++)
		vp_gmem_unmap(gm, &elem->ref[i]);
	elem->out_num = 0;
	elem->in_num = 0;
	elem->out_len = 0;
	elem->in_len = 0;
}

/* Buffers of a chain waiting to be mapped together (vp_gmem_map_chain):
 * elem entries [first, first + n), with the descriptors they came from
 * for error messages. */
#define CHAIN_BATCH 16u
struct chain_batch {
	unsigned first, n;
	struct vp_gmem_seg segs[CHAIN_BATCH];
	uint16_t desc[CHAIN_BATCH];
	bool indirect[CHAIN_BATCH];
};

/* Map the buffers waiting in b into elem. */
static int chain_flush(struct vp_vq *vq, struct vp_vq_elem *elem, struct chain_batch *b)
{
	unsigned bad = 0;

	if (!b->n)
		return 0;
	if (vp_gmem_map_chain(vq->gm, b->segs, b->n, &elem->iov[b->first],
	                      &elem->ref[b->first], &bad) < 0) {
		vq_set_err(vq, "%s %u: cannot map %#llx+%u (%s)",
		           b->indirect[bad] ? "indirect descriptor" : "descriptor",
		           b->desc[bad], (unsigned long long)b->segs[bad].gaddr,
		           b->segs[bad].len, strerror(errno));
		b->n = 0;
		return -EFAULT;
	}
	b->first += b->n;
	b->n = 0;
	return 0;
}

/* Append the buffer of descriptor d (index i, in an indirect table if
 * indirect) to elem; it is mapped with the others of its batch.  *total
 * counts buffers across the whole chain. */
static int elem_add(struct vp_vq *vq, struct vp_vq_elem *elem, struct chain_batch *b,
                    const struct vring_desc *d, unsigned i, bool indirect, unsigned *total)
{
	const char *where = indirect ? "indirect descriptor" : "descriptor";
	bool write = d->flags & VRING_DESC_F_WRITE;
	unsigned n = elem->out_num + elem->in_num;
	int r;

	if (d->len == 0) {
		vq_set_err(vq, "%s %u has length 0", where, i);
		return -EPROTO;
	}
	if (!write && elem->in_num) {
		vq_set_err(vq, "%s %u is device-readable after a writable one", where, i);
		return -EPROTO;
	}
	if (++*total > vq->num) {
		vq_set_err(vq, "chain from head %u is longer than the queue size %u",
		           elem->head, vq->num);
		return -EPROTO;
	}
	if (n >= elem->max) {
		vq_set_err(vq, "chain from head %u has more than %u buffers", elem->head,
		           elem->max);
		return -ENOBUFS;
	}
	if (b->n == CHAIN_BATCH && (r = chain_flush(vq, elem, b)) < 0)
		return r;
	b->segs[b->n] = (struct vp_gmem_seg){.gaddr = d->addr, .len = d->len, .write = write};
	b->desc[b->n] = (uint16_t)i;
	b->indirect[b->n] = indirect;
	b->n++;
	/* Nothing to release until its batch is mapped. */
	elem->ref[n] = (struct vp_gmem_ref){0};
	elem->iov[n].iov_base = NULL;
	elem->iov[n].iov_len = d->len;
	if (write) {
		elem->in_num++;
		elem->in_len += d->len;
	} else {
		elem->out_num++;
		elem->out_len += d->len;
	}
	return 0;
}

int vp_vq_pop(struct vp_vq *vq, struct vp_vq_elem *elem)
{
	const struct vring_desc *table;
	struct vp_gmem_ref table_ref = {0};
	unsigned table_len, i, visits = 0, total = 0;
	uint16_t avail_idx, pending, head;
	bool indirect = false;
	struct chain_batch batch;
	struct vring_desc d;
	int ret;

	batch.first = batch.n = 0;
	elem->out_num = elem->in_num = 0;
	elem->out_len = elem->in_len = 0;
	if (!vq->ready)
		return 0;
	/* Acquire: the ring entries and descriptors the driver wrote before
	 * publishing this index must be visible to the reads below. */
	avail_idx = le16toh(__atomic_load_n(&vq->avail->idx, __ATOMIC_ACQUIRE));
	pending = (uint16_t)(avail_idx - vq->last_avail);
	if (pending == 0)
		return 0;
	if (pending > vq->num) {
		vq_set_err(vq, "avail idx %u is %u entries ahead of %u (queue size %u)",
		           avail_idx, pending, vq->last_avail, vq->num);
		return -EPROTO;
	}
	head = le16toh(__atomic_load_n(&vq->avail->ring[vq->last_avail & (vq->num - 1)],
	                               __ATOMIC_RELAXED));
	if (head >= vq->num) {
		vq_set_err(vq, "avail ring head %u out of range (queue size %u)", head,
		           vq->num);
		return -EPROTO;
	}
	elem->head = head;
	elem->gen = vq->gen;

	table = vq->desc;
	table_len = vq->num;
	i = head;
	for (;;) {
		/* More visits than entries means the chain revisits one. */
		if (++visits > table_len) {
			vq_set_err(vq, "%schain from head %u loops",
			           indirect ? "indirect " : "", head);
			ret = -EPROTO;
			goto fail;
		}
		desc_read(table, i, &d);
		if (d.flags & VRING_DESC_F_INDIRECT) {
			if (!vq->indirect || indirect) {
				vq_set_err(vq, "descriptor %u: %s indirect table", i,
				           indirect ? "nested" : "unnegotiated");
				ret = -EPROTO;
				goto fail;
			}
			if (d.flags & VRING_DESC_F_NEXT) {
				vq_set_err(vq, "descriptor %u has both INDIRECT and NEXT",
				           i);
				ret = -EPROTO;
				goto fail;
			}
			if (d.len == 0 || d.len % sizeof(struct vring_desc) ||
			    d.len / sizeof(struct vring_desc) > VP_VQ_MAX_SIZE) {
				vq_set_err(vq,
				           "descriptor %u: indirect table of %u bytes", i,
				           d.len);
				ret = -EPROTO;
				goto fail;
			}
			table = vp_gmem_map(vq->gm, d.addr, d.len, false, &table_ref);
			if (!table) {
				vq_set_err(vq,
				           "descriptor %u: cannot map indirect table "
				           "%#llx+%u",
				           i, (unsigned long long)d.addr, d.len);
				ret = -EFAULT;
				goto fail;
			}
			table_len = d.len / sizeof(struct vring_desc);
			indirect = true;
			visits = 0;
			i = 0;
			continue;
		}
		ret = elem_add(vq, elem, &batch, &d, i, indirect, &total);
		if (ret)
			goto fail;
		if (!(d.flags & VRING_DESC_F_NEXT))
			break;
		if (d.next >= table_len) {
			vq_set_err(vq,
			           "%sdescriptor %u: next %u out of range (%u entries)",
			           indirect ? "indirect " : "", i, d.next, table_len);
			ret = -EPROTO;
			goto fail;
		}
		i = d.next;
	}
	ret = chain_flush(vq, elem, &batch);
	if (ret)
		goto fail;
	vp_gmem_unmap(vq->gm, &table_ref);
	vq->last_avail++;
	return 1;

fail:
	vp_gmem_unmap(vq->gm, &table_ref);
	vp_vq_elem_release(vq->gm, elem);
	return ret;
}

bool vp_vq_elem_current(const struct vp_vq *vq, const struct vp_vq_elem *elem)
{
	return vq->ready && elem->gen == vq->gen;
}

int vp_vq_push(struct vp_vq *vq, const struct vp_vq_elem *elem, uint32_t written)
{
	struct vring_used_elem *u;

	if (!vp_vq_elem_current(vq, elem))
		return -ESTALE;
	u = &vq->used->ring[vq->used_idx & (vq->num - 1)];
	u->id = htole32(elem->head);
	u->len = htole32(written);
	vq->used_idx++;
	/* Release: the entry (and the data the device wrote into the
	 * buffers) is visible before the driver sees the new index. */
	__atomic_store_n(&vq->used->idx, htole16(vq->used_idx), __ATOMIC_RELEASE);
	return 0;
}

bool vp_vq_need_notify(struct vp_vq *vq)
{
	uint16_t old, event;
	bool valid;

	if (!vq->ready)
		return false;
	/* The used idx store must be visible before we read the driver's
	 * suppression state; otherwise we may skip an interrupt the driver
	 * asked for after reading our old index. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (!vq->event_idx)
		return !(le16toh(__atomic_load_n(&vq->avail->flags, __ATOMIC_RELAXED)) &
		         VRING_AVAIL_F_NO_INTERRUPT);
	old = vq->signalled_used;
	valid = vq->signalled_valid;
	vq->signalled_used = vq->used_idx;
	vq->signalled_valid = true;
	event = le16toh(__atomic_load_n(&vq->avail->ring[vq->num], __ATOMIC_RELAXED));
	return !valid || vring_need_event(event, vq->used_idx, old);
}

void vp_vq_disable_notify(struct vp_vq *vq)
{
	/* With EVENT_IDX, leaving avail_event behind last_avail already
	 * suppresses kicks until we catch up. */
	if (!vq->ready || vq->event_idx)
		return;
	__atomic_store_n(&vq->used->flags, htole16(VRING_USED_F_NO_NOTIFY),
	                 __ATOMIC_RELAXED);
}

bool vp_vq_enable_notify(struct vp_vq *vq)
{
	if (!vq->ready)
		return false;
	if (vq->event_idx)
		__atomic_store_n(avail_event_ptr(vq), htole16(vq->last_avail),
		                 __ATOMIC_RELAXED);
	else
		__atomic_store_n(&vq->used->flags, 0, __ATOMIC_RELAXED);
	/* The driver checks our flag after publishing its idx; we check its
	 * idx after publishing our flag: one of us sees the other. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	return le16toh(__atomic_load_n(&vq->avail->idx, __ATOMIC_ACQUIRE)) !=
	       vq->last_avail;
}
