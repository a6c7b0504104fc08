/* SPDX-License-Identifier: MIT */
/* The "sparse" plugin: disks in the vproxy sparse image format
 * (docs/SPARSE-FORMAT.md), on the same vpio engine as raw.
 *
 * Crash safety rests on four rules:
 *  1. A new cluster's data is written before the map entry pointing at it,
 *     and the write is acknowledged only once both are in the file, so a
 *     crash of the process loses nothing acknowledged and leaves at worst
 *     a leaked cluster (reclaimed at the next open).
 *  2. A map entry never points past the durable end of the file: the file
 *     grows ahead of use (ftruncate, then fdatasync) before entries into
 *     the new space are written.
 *  3. A freed cluster is reused only after a flush made its map entry's
 *     zeroing durable and every I/O issued before the free has finished,
 *     so no two entries can ever point at one cluster, not even after a
 *     power loss in the middle of a flush.  One such I/O may have written
 *     into it after the free: it is punched again, and reused only after
 *     yet another flush made that punch durable.
 *  4. Free clusters and everything past the last used cluster read as
 *     zeros, so a new cluster needs only the guest's bytes written.
 * FLUSH is fdatasync, which covers data and map alike.  Once an fdatasync
 * has failed, the kernel may have dropped pages it could not write while
 * marking them clean, so no later fdatasync proves anything about what
 * was written before: every later FLUSH fails and freed clusters are no
 * longer reused (rule 3 cannot be kept), until the image is opened again.
 */
#define VPROXY_PLUGIN_ABI 2
#include "vpio.h"
#include "vpio_file.h"
#include "sparse_format.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <vproxy/plugin.h>

#define SECTOR 512u
#define DIRECT_ALIGN 4096u
#define GEN_RING 64u
#define PENDING_SYNC 64u          /* frees that trigger a flush of ours */
#define MAX_DZ_BYTES (1ull << 30) /* per DISCARD/WRITE_ZEROES segment... */
#define MAX_DZ_CLUSTERS 4096u     /* ...and at most this many clusters */
#define GROW_MIN_CLUSTERS 16u
#define GROW_MAX_BYTES (1ull << 30)
#define LOCK_WAIT_MS 1000u    /* a crashed owner's lock lingers */
#define MAP_PAGE_ENTRIES 512u /* map entries per cached page (4 KiB) */
#define MAP_CACHE_PAGES 1024u /* cached pages per disk at most (4 MiB) */

/* Freed host clusters waiting for a flush (and a drain) before reuse.
 * Each entry is index << 1 | dirty (may hold data: zero before reuse). */
struct batch {
	struct batch *next;
	uint64_t *v;
	size_t n, cap;
	uint64_t gen; /* I/O of generations <= gen must finish first */
	bool synced;
};

struct sparse_disk;

/* One fdatasync, for a guest FLUSH or for our own needs. */
struct sync {
	struct vpio_op op;
	struct sparse_disk *d;
	struct batch *b;        /* frees it makes durable, or NULL */
	uint64_t cover;         /* file clusters its completion makes durable */
	struct vproxy_req *req; /* the guest's FLUSH, or NULL */
};

/* One cached page of the map: entries [page * MAP_PAGE_ENTRIES, ...). */
struct map_slot {
	uint64_t tag; /* page number + 1; 0: empty */
	uint64_t *e;  /* MAP_PAGE_ENTRIES entries, host byte order */
};

/* A cluster this write allocated. */
struct alloc {
	uint64_t vc, idx;
};

/* Per-request state (req->plugin_priv); recycled with its arrays. */
struct sreq {
	struct sparse_disk *d;
	struct vproxy_req *req;
	struct sreq *next;         /* waiters / grow waiters / free list */
	struct sreq *busy_next;    /* the disk's busy list */
	uint64_t busy_lo, busy_hi; /* virtual clusters [lo, hi) we change */
	bool busy, counted, dirty_risk, punch_failed;
	uint64_t gen;
	int status;
	unsigned ops_left;
	bool map_phase;

	struct vpio_op *ops;
	unsigned nops, ops_cap;
	struct iovec *iovs;
	size_t niovs, iovs_cap;
	struct alloc *allocs;
	unsigned nalloc, allocs_cap;
	struct alloc *frees; /* clusters this DISCARD/WRITE_ZEROES frees */
	unsigned nfrees, frees_cap;
	uint64_t *mapbuf; /* little-endian entries for map writes */
	size_t mapbuf_cap;
};

struct sparse_disk {
	struct sparse_image img;
	int meta_fd; /* header and map, buffered */
	int data_fd; /* data clusters: meta_fd, or an O_DIRECT fd */
	bool read_only;
	uint64_t cs;
	unsigned cbits;
	uint64_t vsize;
	struct vpio_engine *eng;
	const struct vproxy_disk_host *dh; /* the host's, for log lines */
	char label[200];
	bool broken; /* the image was cut from outside: fail every request */
	bool flush_failed; /* an fdatasync failed: see the top of the file */

	/* The map, read with pread (never mmap: a file cut from outside
	 * would raise SIGBUS and take every guest down) and kept here,
	 * direct-mapped by page.  Write-through: our map writes update it
	 * when they complete; a failed one drops the page. */
	struct map_slot *mcache;
	unsigned mcache_n;

	/* Host clusters by index (0 is the one at data_offset). */
	uint8_t *used;
	uint64_t used_bytes;    /* size of the bitmap */
	uint64_t file_clusters; /* the file's size, in clusters */
	uint64_t size_durable;  /* clusters of the file size known durable */
	uint64_t alloc_end;     /* 1 + highest index ever used; zeros beyond */
	uint64_t free_hint;     /* no free cluster below this index */
	uint64_t allocated;     /* for the log at close */

	struct batch *pending; /* collecting frees */
	struct batch *synced;  /* flushed, waiting for the drain */
	uint64_t gen_cur, gen_old;
	unsigned gen_count[GEN_RING];
	unsigned data_inflight;
	unsigned internal_syncs;
	uint64_t sync_cover; /* the most any running sync will cover */

	struct sreq *busy;
	struct sreq *waiters, *waiters_tail;
	struct sreq *grow_waiters;
	struct sreq *free_sreqs;
	unsigned zeroing; /* release-time zero ops in flight */
};

static const struct vproxy_host *host;

static const char *const sparse_param_keys[] = {"file", "direct", "engine", NULL};

static void sreq_dispatch(struct sreq *r);
static void sync_start(struct sparse_disk *d, struct vproxy_req *req);

/* ---- small helpers ---- */

static int grow_array(void **p, size_t *cap, size_t want, size_t elem)
{
	size_t n = *cap ? *cap : 4;
	void *q;

	if (want <= *cap)
		return 0;
	while (n < want)
		n *= 2;
	q = realloc(*p, n * elem);
	if (!q)
		return -ENOMEM;
	*p = q;
	*cap = n;
	return 0;
}

static int grow_u(void **p, unsigned *cap, size_t want, size_t elem)
{
	size_t c = *cap;
	int r = grow_array(p, &c, want, elem);

	*cap = (unsigned)c;
	return r;
}

/* Walks a request's iovecs in order. */
struct iov_cursor {
	const struct iovec *iov;
	unsigned cnt, i;
	size_t off;
};

/* Append the next len bytes as iovecs to out[*n]; room was checked. */
static void cursor_take(struct iov_cursor *c, uint64_t len, struct iovec *out, size_t *n)
{
	while (len && c->i < c->cnt) {
		size_t avail = c->iov[c->i].iov_len - c->off;
		size_t take = len < avail ? (size_t)len : avail;

		if (take) {
			out[*n].iov_base = (char *)c->iov[c->i].iov_base + c->off;
			out[*n].iov_len = take;
			(*n)++;
		}
		c->off += take;
		len -= take;
		if (c->off == c->iov[c->i].iov_len) {
			c->i++;
			c->off = 0;
		}
	}
}

/* Zero the next len bytes (reading an unallocated cluster). */
static void cursor_zero(struct iov_cursor *c, uint64_t len)
{
	while (len && c->i < c->cnt) {
		size_t avail = c->iov[c->i].iov_len - c->off;
		size_t take = len < avail ? (size_t)len : avail;

		memset((char *)c->iov[c->i].iov_base + c->off, 0, take);
		c->off += take;
		len -= take;
		if (c->off == c->iov[c->i].iov_len) {
			c->i++;
			c->off = 0;
		}
	}
}

static uint64_t host_offset(const struct sparse_disk *d, uint64_t idx)
{
	return sparse_index_offset(&d->img, idx);
}

static bool bit_get(const struct sparse_disk *d, uint64_t i)
{
	return d->used[i / 8] & (1u << (i % 8));
}

static void bit_set(struct sparse_disk *d, uint64_t i)
{
	d->used[i / 8] |= (uint8_t)(1u << (i % 8));
}

static void bit_clear(struct sparse_disk *d, uint64_t i)
{
	d->used[i / 8] &= (uint8_t) ~(1u << (i % 8));
}

/* ---- the map ---- */

/* Stop serving: the file no longer holds what we know is in it. */
static void disk_broken(struct sparse_disk *d, const char *what)
{
	if (d->broken)
		return;
	d->broken = true;
	host->disk_log(d->dh, VPROXY_LOG_ERROR,
	               "%s: %s: the image file was cut short from outside; failing "
	               "every request to this disk from now on",
	               d->label, what);
}

/* The map entry of virtual cluster vc: 0, or -EIO (-ENOMEM) and the
 * request fails. */
static int map_get(struct sparse_disk *d, uint64_t vc, uint64_t *e)
{
	uint64_t page = vc / MAP_PAGE_ENTRIES, first = page * MAP_PAGE_ENTRIES;
	struct map_slot *s = &d->mcache[page % d->mcache_n];
	uint64_t n = d->img.h.map_entries - first;
	int r;

	if (s->tag != page + 1) {
		if (!s->e) {
			s->e = malloc(MAP_PAGE_ENTRIES * sizeof(*s->e));
			if (!s->e)
				return -ENOMEM;
		}
		s->tag = 0;
		r = sparse_map_read(&d->img, first,
		                    n < MAP_PAGE_ENTRIES ? n : MAP_PAGE_ENTRIES, s->e);
		if (r == -ENODATA)
			disk_broken(d, "the file ends inside the map");
		if (r < 0)
			return r == -ENOMEM ? r : -EIO;
		s->tag = page + 1;
	}
	*e = s->e[vc % MAP_PAGE_ENTRIES];
	return 0;
}

/* A map write of entries [vc, vc + n) finished: le holds the values
 * written (little-endian; NULL: zeros), or it failed (ok false) and what
 * the file holds is unknown: drop those pages, to be read again. */
static void map_note(struct sparse_disk *d, uint64_t vc, uint64_t n, const uint64_t *le,
                     bool ok)
{
	for (uint64_t i = 0; i < n; i++) {
		uint64_t page = (vc + i) / MAP_PAGE_ENTRIES;
		struct map_slot *s = &d->mcache[page % d->mcache_n];

		if (s->tag != page + 1)
			continue;
		if (!ok)
			s->tag = 0;
		else
			s->e[(vc + i) % MAP_PAGE_ENTRIES] = le ? le64toh(le[i]) : 0;
	}
}

/* ---- generations: what must finish before a freed cluster is reused ---- */

static void gen_count(struct sparse_disk *d, struct sreq *r)
{
	r->gen = d->gen_cur;
	r->counted = true;
	d->gen_count[r->gen % GEN_RING]++;
	d->data_inflight++;
}

static void try_release(struct sparse_disk *d);

static void gen_uncount(struct sparse_disk *d, struct sreq *r)
{
	if (!r->counted)
		return;
	r->counted = false;
	d->gen_count[r->gen % GEN_RING]--;
	d->data_inflight--;
	if (d->synced)
		try_release(d);
}

/* A new generation for a sync to wait on, if the ring has room;
 * otherwise the sync waits for the current one (later I/O too). */
static uint64_t gen_close(struct sparse_disk *d)
{
	uint64_t g = d->gen_cur;

	if (d->gen_cur + 1 - d->gen_old < GEN_RING)
		d->gen_cur++;
	return g;
}

/* ---- the allocator ---- */

static int bitmap_reserve(struct sparse_disk *d, uint64_t bits)
{
	uint64_t bytes = bits / 8 + 1;
	uint8_t *p;

	if (bytes <= d->used_bytes)
		return 0;
	if (bytes > SIZE_MAX)
		return -ENOMEM;
	p = realloc(d->used, (size_t)bytes);
	if (!p)
		return -ENOMEM;
	memset(p + d->used_bytes, 0, (size_t)(bytes - d->used_bytes));
	d->used = p;
	d->used_bytes = bytes;
	return 0;
}

/* Make the file hold at least need clusters, growing ahead of use. */
static int grow_file(struct sparse_disk *d, uint64_t need)
{
	uint64_t step = d->file_clusters / 8, max = GROW_MAX_BYTES >> d->cbits;
	uint64_t want;
	int r;

	if (need <= d->file_clusters)
		return 0;
	if (step < GROW_MIN_CLUSTERS)
		step = GROW_MIN_CLUSTERS;
	if (step > max)
		step = max ? max : 1;
	want = d->file_clusters + step;
	if (want < need)
		want = need;
	r = bitmap_reserve(d, want);
	if (r < 0)
		return r;
	r = vpio_ftruncate(d->eng, d->meta_fd, host_offset(d, want));
	if (r < 0)
		return r;
	d->file_clusters = want;
	return 0;
}

/* A zeroed host cluster for a new map entry. */
static int alloc_cluster(struct sparse_disk *d, uint64_t *out)
{
	uint64_t i = d->free_hint;
	int r;

	while (i < d->alloc_end) {
		if (d->used[i / 8] == 0xff && i % 8 == 0) {
			i += 8;
			continue;
		}
		if (!bit_get(d, i))
			break;
		i++;
	}
	if (i >= d->alloc_end) {
		i = d->alloc_end;
		r = grow_file(d, i + 1);
		if (r < 0)
			return r;
		d->alloc_end = i + 1;
	}
	bit_set(d, i);
	d->free_hint = i + 1;
	d->allocated++;
	*out = i;
	return 0;
}

/* Give back a cluster that was never referenced and holds only zeros. */
static void free_clean(struct sparse_disk *d, uint64_t idx)
{
	bit_clear(d, idx);
	d->allocated--;
	if (idx < d->free_hint)
		d->free_hint = idx;
}

/* Queue a freed cluster for reuse after the next flush. */
static void free_later(struct sparse_disk *d, uint64_t idx, bool dirty)
{
	struct batch *b = d->pending;

	if (d->flush_failed)
		return; /* no flush can make the free durable: leaked until the next open */
	if (!b) {
		b = calloc(1, sizeof(*b));
		if (!b)
			return; /* stays marked used: leaked until the next open */
		d->pending = b;
	}
	if (grow_array((void **)&b->v, &b->cap, b->n + 1, sizeof(*b->v)) < 0)
		return; /* stays marked used: leaked until the next open */
	b->v[b->n++] = idx << 1 | (dirty ? 1u : 0u);
	if (b->n >= PENDING_SYNC && !d->internal_syncs)
		sync_start(d, NULL);
}

struct zero_job {
	struct vpio_op op;
	struct sparse_disk *d;
	uint64_t idx;
};

static void zero_done(struct vpio_op *op, int res)
{
	struct zero_job *z = op->arg;
	struct sparse_disk *d = z->d;

	d->zeroing--;
	/* Zeroed, but not durably: handed out now, its new map entry could
	 * reach the disk before the punch, and a power cut would show the
	 * old data in the new place.  So it waits for one more flush, as a
	 * clean free.  Could not zero it: out of use until the next open. */
	if (res == 0)
		free_later(d, z->idx, false);
	else
		host->disk_log(d->dh, VPROXY_LOG_WARN,
		               "%s: cannot zero freed cluster %llu: %s", d->label,
		               (unsigned long long)z->idx, strerror(-res));
	free(z);
}

static void release_batch(struct sparse_disk *d, struct batch *b)
{
	for (size_t k = 0; k < b->n; k++) {
		uint64_t idx = b->v[k] >> 1;
		struct zero_job *z;

		if (!(b->v[k] & 1)) {
			free_clean(d, idx);
			continue;
		}
		z = calloc(1, sizeof(*z));
		if (!z)
			continue; /* leaked until the next open */
		z->d = d;
		z->idx = idx;
		z->op.kind = VPIO_ZERO;
		z->op.zero_mode = VPIO_ZERO_PUNCH;
		z->op.fd = d->data_fd;
		z->op.offset = host_offset(d, idx);
		z->op.len = d->cs;
		z->op.done = zero_done;
		z->op.arg = z;
		d->zeroing++;
		vpio_submit(d->eng, &z->op);
	}
	free(b->v);
	free(b);
}

/* Release the synced batches whose earlier I/O has all finished. */
static void try_release(struct sparse_disk *d)
{
	struct batch **pp = &d->synced;

	while (d->gen_old < d->gen_cur && d->gen_count[d->gen_old % GEN_RING] == 0)
		d->gen_old++;
	while (*pp) {
		struct batch *b = *pp;

		/* gen_old is the oldest generation with I/O in flight, or the
		 * current one when it has none. */
		if (b->gen < d->gen_old ||
		    (b->gen == d->gen_old && d->gen_count[b->gen % GEN_RING] == 0)) {
			*pp = b->next;
			release_batch(d, b);
		} else {
			pp = &b->next;
		}
	}
}

/* ---- flushes ---- */

static void wake_grow_waiters(struct sparse_disk *d, int status);

static void sync_done(struct vpio_op *op, int res)
{
	struct sync *s = op->arg;
	struct sparse_disk *d = s->d;
	int grown;

	if (!s->req)
		d->internal_syncs--;
	if (res < 0 && res != -ECANCELED && !d->flush_failed) {
		d->flush_failed = true;
		host->disk_log(
		        d->dh, VPROXY_LOG_ERROR,
		        "%s: fdatasync failed: %s; writes before it may be lost, so "
		        "every later flush fails and freed clusters stay unused until "
		        "the image is opened again",
		        d->label, strerror(-res));
	}
	if (res == 0 && s->cover > d->size_durable)
		d->size_durable = s->cover;
	/* The file's size is metadata that a later fdatasync does write, so
	 * writes waiting for it go on (grown); the guest's data and the map
	 * do not count as durable after a failure (res). */
	grown = res;
	if (res == 0 && d->flush_failed)
		res = -EIO;
	if (grown == 0) {
		if (s->b && res == 0) {
			s->b->synced = true;
			s->b->next = d->synced;
			d->synced = s->b;
		}
	} else {
		/* Not durable.  A write that needs this size later starts a
		 * sync of its own: waiting for this one would wait forever. */
		d->sync_cover = d->size_durable;
	}
	wake_grow_waiters(d, grown);
	if (res != 0 && s->b) {
		/* The frees wait for a later flush. */
		struct batch *p = d->pending;

		if (!p) {
			d->pending = s->b;
		} else {
			for (size_t k = 0; k < s->b->n; k++)
				if (grow_array((void **)&p->v, &p->cap, p->n + 1,
				               sizeof(*p->v)) == 0)
					p->v[p->n++] = s->b->v[k];
			free(s->b->v);
			free(s->b);
		}
	}
	if (s->req)
		host->complete(s->req, res);
	free(s);
	try_release(d);
}

static void sync_start(struct sparse_disk *d, struct vproxy_req *req)
{
	struct sync *s = calloc(1, sizeof(*s));

	if (!s) {
		if (req)
			host->complete(req, -ENOMEM);
		return;
	}
	s->d = d;
	s->req = req;
	s->b = d->pending;
	d->pending = NULL;
	if (s->b)
		s->b->gen = gen_close(d);
	s->cover = d->file_clusters;
	if (s->cover > d->sync_cover)
		d->sync_cover = s->cover;
	if (!req)
		d->internal_syncs++;
	s->op.kind = VPIO_FDATASYNC;
	s->op.fd = d->data_fd;
	s->op.done = sync_done;
	s->op.arg = s;
	vpio_submit(d->eng, &s->op);
}

/* ---- busy ranges: clusters whose mapping is changing ---- */

static bool overlaps_busy(const struct sparse_disk *d, uint64_t lo, uint64_t hi)
{
	for (const struct sreq *b = d->busy; b; b = b->busy_next)
		if (lo < b->busy_hi && b->busy_lo < hi)
			return true;
	return false;
}

static void busy_take(struct sreq *r, uint64_t lo, uint64_t hi)
{
	r->busy = true;
	r->busy_lo = lo;
	r->busy_hi = hi;
	r->busy_next = r->d->busy;
	r->d->busy = r;
}

static void busy_drop(struct sreq *r)
{
	struct sparse_disk *d = r->d;
	struct sreq **pp = &d->busy, *list;

	if (!r->busy)
		return;
	while (*pp != r)
		pp = &(*pp)->busy_next;
	*pp = r->busy_next;
	r->busy = false;
	/* Everyone waiting tries again (in arrival order). */
	list = d->waiters;
	d->waiters = d->waiters_tail = NULL;
	while (list) {
		struct sreq *w = list;

		list = w->next;
		w->next = NULL;
		sreq_dispatch(w);
	}
}

/* ---- requests ---- */

static struct sreq *sreq_get(struct sparse_disk *d)
{
	struct sreq *r = d->free_sreqs;

	if (r) {
		d->free_sreqs = r->next;
	} else {
		r = calloc(1, sizeof(*r));
		if (!r)
			return NULL;
	}
	r->d = d;
	r->next = NULL;
	r->busy = r->counted = r->dirty_risk = r->punch_failed = r->map_phase = false;
	r->status = 0;
	r->nops = 0;
	r->niovs = 0;
	r->nalloc = 0;
	r->nfrees = 0;
	r->ops_left = 0;
	return r;
}

static void sreq_finish(struct sreq *r, int status)
{
	struct sparse_disk *d = r->d;
	struct vproxy_req *req = r->req;

	gen_uncount(d, r);
	busy_drop(r);
	r->next = d->free_sreqs;
	d->free_sreqs = r;
	host->complete(req, status);
}

static void sreq_free_all(struct sparse_disk *d)
{
	while (d->free_sreqs) {
		struct sreq *r = d->free_sreqs;

		d->free_sreqs = r->next;
		free(r->ops);
		free(r->iovs);
		free(r->allocs);
		free(r->frees);
		free(r->mapbuf);
		free(r);
	}
}

/* Room for niov iovecs (ops point into them: reserve before building). */
static int sreq_reserve(struct sreq *r, size_t niov)
{
	return grow_array((void **)&r->iovs, &r->iovs_cap, niov, sizeof(*r->iovs));
}

static void op_done(struct vpio_op *op, int res);

/* A new operation at r->ops[r->nops - 1]; NULL without memory.  The
 * array may move: hold indices, not pointers, while building. */
static struct vpio_op *sreq_op(struct sreq *r, enum vpio_kind kind, int fd,
                               uint64_t offset, uint64_t len)
{
	struct vpio_op *op;

	if (grow_u((void **)&r->ops, &r->ops_cap, r->nops + 1, sizeof(*r->ops)) < 0)
		return NULL;
	op = &r->ops[r->nops++];
	memset(op, 0, sizeof(*op));
	op->kind = kind;
	op->fd = fd;
	op->offset = offset;
	op->len = len;
	op->done = op_done;
	op->arg = r;
	/* Our clusters lie inside the file: its end there means it was cut. */
	op->eof_error = kind == VPIO_READV;
	return op;
}

static void sreq_submit_ops(struct sreq *r)
{
	unsigned n = r->nops;

	r->ops_left = n;
	for (unsigned k = 0; k < n; k++)
		vpio_submit(r->d->eng, &r->ops[k]);
}

/* Append a read or write of n bytes at host offset at, taking the next n
 * bytes of the cursor; merged with the previous op (*last, an index, or
 * -1) when the host ranges touch.  0 or -ENOMEM. */
static int add_rw(struct sreq *r, enum vpio_kind kind, struct iov_cursor *cur,
                  uint64_t at, uint64_t n, int *last)
{
	size_t first = r->niovs;
	struct vpio_op *op;

	cursor_take(cur, n, r->iovs, &r->niovs);
	if (*last >= 0) {
		op = &r->ops[*last];
		if (op->offset + op->len == at) {
			op->len += n;
			op->iovcnt += (unsigned)(r->niovs - first);
			return 0;
		}
	}
	op = sreq_op(r, kind, r->d->data_fd, at, n);
	if (!op)
		return -ENOMEM;
	op->iov = &r->iovs[first];
	op->iovcnt = (unsigned)(r->niovs - first);
	*last = (int)(r->nops - 1);
	return 0;
}

/* READ: unallocated clusters are zeroed here; allocated runs are read. */
static void do_read(struct sreq *r, uint64_t c0, uint64_t c1)
{
	struct sparse_disk *d = r->d;
	struct vproxy_req *req = r->req;
	struct iov_cursor cur = {.iov = req->iov, .cnt = req->iovcnt};
	uint64_t pos = req->offset, end = req->offset + req->len;
	int last = -1;

	if (sreq_reserve(r, req->iovcnt + (c1 - c0 + 1)) < 0) {
		sreq_finish(r, -ENOMEM);
		return;
	}
	while (pos < end) {
		uint64_t vc = pos >> d->cbits;
		uint64_t n = ((vc + 1) << d->cbits) - pos;
		uint64_t e;
		int rc = map_get(d, vc, &e);

		if (rc < 0) {
			sreq_finish(r, rc);
			return;
		}
		if (n > end - pos)
			n = end - pos;
		if (!e) {
			cursor_zero(&cur, n);
			last = -1;
		} else if (add_rw(r, VPIO_READV, &cur, e + (pos & (d->cs - 1)), n,
		                  &last) < 0) {
			sreq_finish(r, -ENOMEM);
			return;
		}
		pos += n;
	}
	if (!r->nops) {
		sreq_finish(r, 0);
		return;
	}
	gen_count(d, r);
	sreq_submit_ops(r);
}

/* WRITE: allocate what is unallocated, write the data, then the map. */
static void do_write(struct sreq *r, uint64_t c0, uint64_t c1)
{
	struct sparse_disk *d = r->d;
	struct vproxy_req *req = r->req;
	struct iov_cursor cur = {.iov = req->iov, .cnt = req->iovcnt};
	uint64_t pos = req->offset, end = req->offset + req->len;
	int last = -1, rc = 0;
	unsigned need = 0;

	for (uint64_t vc = c0; vc <= c1; vc++) {
		uint64_t e;

		rc = map_get(d, vc, &e);
		if (rc < 0) {
			sreq_finish(r, rc);
			return;
		}
		need += e == 0;
	}
	if (sreq_reserve(r, req->iovcnt + (c1 - c0 + 1)) < 0 ||
	    grow_u((void **)&r->allocs, &r->allocs_cap, need, sizeof(*r->allocs)) < 0) {
		sreq_finish(r, -ENOMEM);
		return;
	}
	if (need)
		busy_take(r, c0, c1 + 1);
	while (pos < end) {
		uint64_t vc = pos >> d->cbits;
		uint64_t n = ((vc + 1) << d->cbits) - pos;
		uint64_t e, idx;

		rc = map_get(d, vc, &e);
		if (rc < 0)
			break;
		if (n > end - pos)
			n = end - pos;
		if (!e) {
			rc = alloc_cluster(d, &idx);
			if (rc < 0) {
				host->disk_log(d->dh, VPROXY_LOG_WARN,
				               "%s: cannot allocate a cluster: %s",
				               d->label, strerror(-rc));
				break;
			}
			r->allocs[r->nalloc].vc = vc;
			r->allocs[r->nalloc].idx = idx;
			r->nalloc++;
			e = host_offset(d, idx);
		}
		rc = add_rw(r, VPIO_WRITEV, &cur, e + (pos & (d->cs - 1)), n, &last);
		if (rc < 0)
			break;
		pos += n;
	}
	if (rc < 0) {
		/* Nothing was written to them: they are still zero. */
		for (unsigned k = 0; k < r->nalloc; k++)
			free_clean(d, r->allocs[k].idx);
		r->nalloc = 0;
		sreq_finish(r, rc);
		return;
	}
	gen_count(d, r);
	sreq_submit_ops(r);
}

/* Write the map entries of this write's new clusters, in runs. */
static void write_map(struct sreq *r)
{
	struct sparse_disk *d = r->d;
	unsigned k = 0;

	r->map_phase = true;
	r->nops = 0;
	r->niovs = 0;
	if (grow_array((void **)&r->mapbuf, &r->mapbuf_cap, r->nalloc,
	               sizeof(*r->mapbuf)) < 0 ||
	    sreq_reserve(r, r->nalloc) < 0)
		goto nomem;
	while (k < r->nalloc) {
		unsigned n = 1;
		struct vpio_op *op;

		while (k + n < r->nalloc && r->allocs[k + n].vc == r->allocs[k].vc + n)
			n++;
		for (unsigned i = 0; i < n; i++)
			r->mapbuf[k + i] = htole64(host_offset(d, r->allocs[k + i].idx));
		op = sreq_op(r, VPIO_WRITEV, d->meta_fd,
		             d->img.h.map_offset + r->allocs[k].vc * SPARSE_ENTRY_SIZE,
		             n * SPARSE_ENTRY_SIZE);
		if (!op)
			goto nomem;
		r->iovs[r->niovs].iov_base = &r->mapbuf[k];
		r->iovs[r->niovs].iov_len = n * SPARSE_ENTRY_SIZE;
		op->iov = &r->iovs[r->niovs++];
		op->iovcnt = 1;
		k += n;
	}
	sreq_submit_ops(r);
	return;
nomem:
	/* The data is in the clusters, but nothing points at them. */
	for (unsigned i = 0; i < r->nalloc; i++)
		free_later(d, r->allocs[i].idx, true);
	r->nalloc = 0;
	sreq_finish(r, -ENOMEM);
}

static uint64_t allocs_need(const struct sreq *r)
{
	uint64_t need = 0;

	for (unsigned k = 0; k < r->nalloc; k++)
		if (r->allocs[k].idx + 1 > need)
			need = r->allocs[k].idx + 1;
	return need;
}

/* The data of an allocating write is in: once the file size covering
 * its clusters is durable, write the map. */
static void write_map_when_durable(struct sreq *r)
{
	struct sparse_disk *d = r->d;
	uint64_t need = allocs_need(r);

	if (need <= d->size_durable) {
		write_map(r);
		return;
	}
	r->next = d->grow_waiters;
	d->grow_waiters = r;
	if (d->sync_cover < need)
		sync_start(d, NULL);
}

static void wake_grow_waiters(struct sparse_disk *d, int status)
{
	struct sreq *list = d->grow_waiters, *keep = NULL;

	d->grow_waiters = NULL;
	while (list) {
		struct sreq *r = list;

		list = r->next;
		r->next = NULL;
		if (allocs_need(r) <= d->size_durable) {
			write_map(r);
		} else if (status < 0) {
			for (unsigned k = 0; k < r->nalloc; k++)
				free_later(d, r->allocs[k].idx, true);
			r->nalloc = 0;
			sreq_finish(r, status);
		} else {
			r->next = keep;
			keep = r;
		}
	}
	if (keep) {
		struct sreq **pp = &d->grow_waiters;

		while (*pp)
			pp = &(*pp)->next;
		*pp = keep;
		if (d->sync_cover < d->file_clusters)
			sync_start(d, NULL);
	}
}

/* DISCARD / WRITE_ZEROES. */
static void do_zero(struct sreq *r, uint64_t c0, uint64_t c1)
{
	struct sparse_disk *d = r->d;
	struct vproxy_req *req = r->req;
	bool discard = req->op == VPROXY_REQ_DISCARD;
	bool unmap = discard || (req->flags & VPROXY_REQ_F_UNMAP);
	uint64_t pos = req->offset, end = req->offset + req->len;
	enum vpio_kind kind = discard ? VPIO_PUNCH : VPIO_ZERO;
	int last = -1, rc = -ENOMEM;

	if (grow_u((void **)&r->frees, &r->frees_cap, c1 - c0 + 1, sizeof(*r->frees)) < 0)
		goto fail;
	/* A write in flight may still land in a cluster we free. */
	r->dirty_risk = d->data_inflight > 0;
	while (pos < end) {
		uint64_t vc = pos >> d->cbits;
		uint64_t cstart = vc << d->cbits;
		uint64_t cend = d->vsize - cstart > d->cs ? cstart + d->cs : d->vsize;
		uint64_t n = (cend < end ? cend : end) - pos;
		uint64_t e, at;
		struct vpio_op *op;

		rc = map_get(d, vc, &e);
		if (rc < 0)
			goto fail;
		rc = -ENOMEM;
		at = e + (pos - cstart);
		pos += n;
		if (!e) {
			last = -1; /* reads as zeros already */
			continue;
		}
		if (unmap && at == e && n == cend - cstart) {
			r->frees[r->nfrees].vc = vc;
			r->frees[r->nfrees].idx = sparse_entry_index(&d->img, e);
			r->nfrees++;
			last = -1;
			continue;
		}
		/* Part of a cluster, or zeros that must stay allocated. */
		if (last >= 0 && r->ops[last].offset + r->ops[last].len == at) {
			r->ops[last].len += n;
			continue;
		}
		op = sreq_op(r, kind, d->data_fd, at, n);
		if (!op)
			goto fail;
		op->zero_mode = unmap ? VPIO_ZERO_PUNCH : VPIO_ZERO_ALLOC;
		last = (int)(r->nops - 1);
	}
	if (r->nfrees) {
		busy_take(r, c0, c1 + 1);
		/* Map entries in one write per run of virtual clusters... */
		for (unsigned k = 0, n; k < r->nfrees; k += n) {
			struct vpio_op *op;

			for (n = 1; k + n < r->nfrees &&
			            r->frees[k + n].vc == r->frees[k].vc + n;)
				n++;
			op = sreq_op(r, VPIO_ZERO, d->meta_fd,
			             d->img.h.map_offset +
			                     r->frees[k].vc * SPARSE_ENTRY_SIZE,
			             (uint64_t)n * SPARSE_ENTRY_SIZE);
			if (!op)
				goto fail;
			op->zero_mode = VPIO_ZERO_WRITE;
		}
		/* ...and one punch per run of host clusters. */
		last = -1;
		for (unsigned k = 0; k < r->nfrees; k++) {
			uint64_t at = host_offset(d, r->frees[k].idx);

			if (last >= 0 && r->ops[last].offset + r->ops[last].len == at) {
				r->ops[last].len += d->cs;
			} else {
				if (!sreq_op(r, VPIO_PUNCH, d->data_fd, at, d->cs))
					goto fail;
				last = (int)(r->nops - 1);
			}
		}
	}
	if (!r->nops) {
		sreq_finish(r, 0);
		return;
	}
	gen_count(d, r);
	sreq_submit_ops(r);
	return;
fail:
	r->nfrees = 0;
	sreq_finish(r, rc);
}

/* All operations of a request's current phase are done. */
static void phase_done(struct sreq *r)
{
	struct sparse_disk *d = r->d;

	if (r->nalloc && !r->map_phase) {
		gen_uncount(d, r);
		if (r->status == 0) {
			write_map_when_durable(r);
			return;
		}
		/* The clusters may hold part of the data. */
		for (unsigned k = 0; k < r->nalloc; k++)
			free_later(d, r->allocs[k].idx, true);
	} else if (r->nalloc) {
		/* A failed map write may have left an entry unwritten. */
		/* (When the map cannot be read, the cluster stays in use:
		 * leaked until the next open rather than maybe shared.) */
		for (unsigned k = 0; k < r->nalloc; k++) {
			uint64_t e;

			if (map_get(d, r->allocs[k].vc, &e) == 0 &&
			    e != host_offset(d, r->allocs[k].idx))
				free_later(d, r->allocs[k].idx, true);
		}
	}
	/* Whatever the map now says is unallocated is free. */
	for (unsigned k = 0; k < r->nfrees; k++) {
		uint64_t e;

		if (map_get(d, r->frees[k].vc, &e) == 0 && e == 0)
			free_later(d, r->frees[k].idx, r->dirty_risk || r->punch_failed);
	}
	sreq_finish(r, r->status);
}

static void op_done(struct vpio_op *op, int res)
{
	struct sreq *r = op->arg;
	struct sparse_disk *d = r->d;

	if (op->fd == d->meta_fd && op->offset < d->img.h.data_offset)
		map_note(d, (op->offset - d->img.h.map_offset) / SPARSE_ENTRY_SIZE,
		         op->len / SPARSE_ENTRY_SIZE,
		         op->kind == VPIO_WRITEV ? op->iov[0].iov_base : NULL, res == 0);
	if (res == -ENODATA) {
		disk_broken(d, "a data cluster lies past the end of the file");
		res = -EIO;
	}
	if (res < 0) {
		if (op->kind == VPIO_PUNCH) {
			/* The guest only asked for a hint (DISCARD) or the
			 * map entry goes to zero anyway; remember the cluster
			 * may still hold data. */
			r->punch_failed = true;
		} else if (r->status == 0) {
			r->status = res;
		}
	}
	if (--r->ops_left == 0)
		phase_done(r);
}

/* Start (or restart, after waiting) a request. */
static void sreq_dispatch(struct sreq *r)
{
	struct sparse_disk *d = r->d;
	struct vproxy_req *req = r->req;
	uint64_t c0 = req->offset >> d->cbits;
	uint64_t c1 = (req->offset + req->len - 1) >> d->cbits;

	if (d->busy && overlaps_busy(d, c0, c1 + 1)) {
		r->next = NULL;
		if (d->waiters_tail)
			d->waiters_tail->next = r;
		else
			d->waiters = r;
		d->waiters_tail = r;
		return;
	}
	switch (req->op) {
	case VPROXY_REQ_READ: do_read(r, c0, c1); break;
	case VPROXY_REQ_WRITE: do_write(r, c0, c1); break;
	default: do_zero(r, c0, c1); break;
	}
}

static int sparse_submit(void *disk, struct vproxy_req *req)
{
	struct sparse_disk *d = disk;
	struct sreq *r;
	int rc = vpio_check_req(req, d->vsize, d->read_only);

	if (rc < 0)
		return rc;
	if (d->broken)
		return -EIO;
	if (req->op == VPROXY_REQ_FLUSH) {
		if (d->read_only)
			host->complete(req, 0);
		else
			sync_start(d, req);
		return 0;
	}
	if (req->len == 0) {
		host->complete(req, 0);
		return 0;
	}
	/* Fast path: one allocated cluster, nothing changing its mapping. */
	if (req->op == VPROXY_REQ_READ || req->op == VPROXY_REQ_WRITE) {
		uint64_t c0 = req->offset >> d->cbits;
		uint64_t c1 = (req->offset + req->len - 1) >> d->cbits;
		uint64_t e = 0;

		if (c0 == c1 && map_get(d, c0, &e) < 0)
			e = 0; /* the slow path fails it */

		if (e && !(d->busy && overlaps_busy(d, c0, c1 + 1))) {
			struct vpio_op *op;

			r = sreq_get(d);
			if (!r)
				return -ENOMEM;
			r->req = req;
			req->plugin_priv = r;
			op = sreq_op(
			        r, req->op == VPROXY_REQ_READ ? VPIO_READV : VPIO_WRITEV,
			        d->data_fd, e + (req->offset & (d->cs - 1)), req->len);
			if (!op) {
				r->next = d->free_sreqs;
				d->free_sreqs = r;
				return -ENOMEM;
			}
			op->iov = req->iov;
			op->iovcnt = req->iovcnt;
			gen_count(d, r);
			sreq_submit_ops(r);
			return 0;
		}
	}
	r = sreq_get(d);
	if (!r)
		return -ENOMEM;
	r->req = req;
	req->plugin_priv = r;
	sreq_dispatch(r);
	return 0;
}

/* ---- open and close ---- */

static void sparse_free(struct sparse_disk *d)
{
	sreq_free_all(d);
	for (struct batch *b = d->synced, *n; b; b = n) {
		n = b->next;
		free(b->v);
		free(b);
	}
	if (d->pending) {
		free(d->pending->v);
		free(d->pending);
	}
	if (d->eng)
		vpio_engine_destroy(d->eng);
	for (unsigned i = 0; d->mcache && i < d->mcache_n; i++)
		free(d->mcache[i].e);
	free(d->mcache);
	sparse_close(&d->img);
	if (d->data_fd >= 0 && d->data_fd != d->meta_fd)
		close(d->data_fd);
	if (d->meta_fd >= 0)
		close(d->meta_fd);
	free(d->used);
	free(d);
}

static int sparse_open_disk(struct vproxy_disk_host *dh,
                            const struct vproxy_params *params, int read_only,
                            struct vproxy_disk_info *info, void **out, char *err,
                            size_t errlen)
{
	const char *path = host->param(params, "file");
	enum vpio_engine_choice choice;
	struct sparse_disk *d;
	struct sparse_scan scan = {0};
	struct stat st;
	char why[300];
	bool direct;
	int r;

	if (!path || !*path) {
		snprintf(err, errlen,
		         "file: required (an image made by vproxy-img create)");
		return -EINVAL;
	}
	r = vpio_parse_params(host, params, &direct, &choice, err, errlen);
	if (r < 0)
		return r;
	if (stat(path, &st) < 0) {
		r = -errno;
		snprintf(err, errlen, "file: %s: %s", path, strerror(errno));
		return r;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "file: %s is %s, not a sparse image file", path,
		         S_ISDIR(st.st_mode) ? "a directory" : "not a regular file");
		return S_ISDIR(st.st_mode) ? -EISDIR : -EINVAL;
	}
	d = calloc(1, sizeof(*d));
	if (!d) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	d->meta_fd = d->data_fd = -1;
	d->dh = dh;
	d->read_only = read_only != 0;
	snprintf(d->label, sizeof(d->label), "sparse %s", path);
	/* Header and map go through the page cache; only data may be direct. */
	r = vpio_open_file(host, dh, path, false, &d->read_only, err, errlen);
	if (r < 0)
		goto fail;
	d->meta_fd = d->data_fd = r;
	r = vpio_lock_file(d->meta_fd, !d->read_only, LOCK_WAIT_MS);
	if (r < 0) {
		snprintf(err, errlen, "file: %s is in use by another device or process",
		         path);
		goto fail;
	}
	r = sparse_open(&d->img, d->meta_fd, why, sizeof(why));
	if (r < 0) {
		snprintf(err, errlen, "file: %s: %s", path, why);
		goto fail;
	}
	d->cs = d->img.cluster_size;
	d->cbits = d->img.h.cluster_bits;
	d->vsize = d->img.h.virtual_size;
	d->mcache_n = (unsigned)((d->img.h.map_entries + MAP_PAGE_ENTRIES - 1) /
	                         MAP_PAGE_ENTRIES);
	if (d->img.h.map_entries > (uint64_t)MAP_CACHE_PAGES * MAP_PAGE_ENTRIES)
		d->mcache_n = MAP_CACHE_PAGES;
	d->mcache = calloc(d->mcache_n, sizeof(*d->mcache));
	if (!d->mcache) {
		snprintf(err, errlen, "out of memory");
		r = -ENOMEM;
		goto fail;
	}
	r = sparse_scan(&d->img, &scan);
	if (r != 0) {
		char first[200] = "";
		size_t len = strcspn(scan.report, "\n");

		memcpy(first, scan.report,
		       len < sizeof(first) - 1 ? len : sizeof(first) - 1);
		snprintf(err, errlen,
		         "file: %s: image is corrupt (%s); run vproxy-img check", path,
		         r < 0 ? strerror(-r) : first);
		r = r < 0 ? r : -EINVAL;
		goto fail;
	}
	if (!d->read_only) {
		uint64_t freed = 0, leaked, tail;

		if (sparse_count_leaks(&d->img, &scan, &leaked, &tail) == 0 &&
		    (leaked || tail))
			host->disk_log(d->dh, VPROXY_LOG_INFO,
			               "%s: reclaiming %llu leaked clusters and %llu "
			               "bytes at the end (left by a crash)",
			               path, (unsigned long long)leaked,
			               (unsigned long long)tail);
		r = sparse_repair(&d->img, &scan, &freed, why, sizeof(why));
		if (r < 0) {
			snprintf(err, errlen, "file: %s: %s", path, why);
			goto fail;
		}
	}
	d->used = scan.used;
	scan.used = NULL;
	d->used_bytes = scan.host_clusters / 8 + 1;
	d->alloc_end = scan.alloc_end;
	d->allocated = scan.allocated;
	d->file_clusters = (d->img.file_size - d->img.h.data_offset) >> d->cbits;
	if (d->file_clusters < d->alloc_end)
		d->file_clusters = d->alloc_end;
	d->size_durable = d->file_clusters;
	d->sync_cover = d->file_clusters;
	if (direct) {
		r = vpio_open_file(host, dh, path, true, &d->read_only, err, errlen);
		if (r < 0)
			goto fail;
		d->data_fd = r;
	}
	r = vpio_engine_create(host, dh, choice, direct ? DIRECT_ALIGN : 0, d->label,
	                       &d->eng, err, errlen);
	if (r < 0)
		goto fail;
	/* Every data cluster is read and written through it. */
	vpio_register_fd(d->eng, d->data_fd);

	memset(info, 0, sizeof(*info));
	info->logical_block = direct ? DIRECT_ALIGN : SECTOR;
	info->physical_block = d->cs < 4096 ? (uint32_t)d->cs : 4096;
	if (info->physical_block < info->logical_block)
		info->physical_block = info->logical_block;
	info->capacity = d->vsize / info->logical_block * info->logical_block;
	info->flags = VPROXY_DISK_FLUSH | VPROXY_DISK_DISCARD | VPROXY_DISK_WRITE_ZEROES;
	if (d->read_only)
		info->flags |= VPROXY_DISK_READONLY;
	info->discard_granularity = (uint32_t)d->cs;
	/* Bound the work (and memory) one request can ask for. */
	info->max_discard_sectors = (uint32_t)((MAX_DZ_CLUSTERS * d->cs < MAX_DZ_BYTES
	                                                ? MAX_DZ_CLUSTERS * d->cs
	                                                : MAX_DZ_BYTES) /
	                                       SECTOR);
	info->max_write_zeroes_sectors = info->max_discard_sectors;
	host->disk_log(
	        d->dh, VPROXY_LOG_INFO,
	        "%s: %llu bytes, %llu KiB clusters, %llu allocated%s%s, %s "
	        "engine",
	        path, (unsigned long long)d->vsize, (unsigned long long)(d->cs >> 10),
	        (unsigned long long)d->allocated, d->read_only ? ", read-only" : "",
	        direct ? ", O_DIRECT" : "", vpio_engine_name(d->eng));
	*out = d;
	return 0;
fail:
	sparse_scan_free(&scan);
	sparse_free(d);
	return r;
}

/* Only a read is given up: it changes nothing on disk, so dropping its
 * remaining calls cannot leave the image half-updated.  Writes, discards
 * and flushes run to their end (they keep the map consistent). */
static void sparse_cancel(void *disk, struct vproxy_req *req)
{
	struct sparse_disk *d = disk;
	struct sreq *r = req->plugin_priv;

	if (req->op != VPROXY_REQ_READ || !r || !r->ops_left)
		return;
	for (unsigned k = 0; k < r->nops; k++)
		vpio_cancel(d->eng, &r->ops[k]);
}

/* The host's end of a batch: one io_uring_submit() for all of it. */
static void sparse_kick(void *disk)
{
	struct sparse_disk *d = disk;

	vpio_kick(d->eng);
}

/* The host's loop spins: run what completed without the eventfd. */
static int sparse_poll(void *disk)
{
	struct sparse_disk *d = disk;

	return vpio_poll(d->eng);
}

static void sparse_poll_end(void *disk)
{
	struct sparse_disk *d = disk;

	vpio_poll_end(d->eng);
}

static void sparse_close_disk(void *disk)
{
	struct sparse_disk *d = disk;

	if (!d)
		return;
	/* Our own flushes and zeroing may still run. */
	vpio_drain(d->eng);
	if (!d->read_only && !d->broken) {
		int r = vpio_fdatasync_now(d->eng, d->data_fd);

		if (r < 0)
			host->disk_log(d->dh, VPROXY_LOG_WARN,
			               "%s: fdatasync at close: %s", d->label,
			               strerror(-r));
	}
	sparse_free(d);
}

VPROXY_PLUGIN_DEFINE(
        host, .name = "sparse",
        .description = "a sparse image that grows on first write (vproxy-img create)",
        .param_keys = sparse_param_keys, .open = sparse_open_disk,
        .submit = sparse_submit, .close = sparse_close_disk, .cancel = sparse_cancel,
        .kick = sparse_kick, .poll = sparse_poll,
        .poll_end = sparse_poll_end,
        /* open() waits for the lock and scans the map; close() syncs. */
        .flags = VPROXY_PLUGIN_F_OFF_LOOP);
