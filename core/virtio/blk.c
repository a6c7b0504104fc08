/* SPDX-License-Identifier: MIT */
/*
 * virtio-blk (virtio 1.2 section 5.2) over a storage plugin.  A request is
 * parsed from its descriptor chain once, its guest buffers stay mapped
 * while the plugin works on them, and the result goes back through the
 * used ring.  Discard and write-zeroes requests carry several segments;
 * they become one plugin request each, issued one after the other.
 */
#include "blk.h"

#include <endian.h>
#include <errno.h>
#include <event2/event.h>
#include <linux/virtio_blk.h>
#include <linux/virtio_ids.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gmem.h"
#include "log.h"
#include "plugin_host.h"
#include "virtqueue.h"

#define SECTOR_SHIFT 9
#define SECTOR_SIZE (1u << SECTOR_SHIFT)
/* Largest data segment we advertise (VIRTIO_BLK_F_SIZE_MAX). */
#define BLK_SEG_SIZE_MAX (1u << 20)
/* Config space the guest sees: through the secure-erase fields (virtio
 * 1.2), whatever newer kernel headers append (zoned fields) to the struct. */
#define BLK_CONFIG_LEN 72u
_Static_assert(sizeof(struct virtio_blk_config) >= BLK_CONFIG_LEN, "config layout");
/* Segments in one discard or write-zeroes request. */
#define BLK_DZ_SEG_MAX 32u
#define BIT64(n) (1ull << (n))
/* With request-timeout, the largest request moved through a bounce
 * buffer; a larger one gets IOERR (Linux splits I/O far below this). */
#define BLK_BOUNCE_MAX (16u << 20)

struct vp_blk;

/* A disk whose plugin still holds requests a device gave up on
 * (request-timeout).  Outlives the device; the disk is closed once the
 * last such request came back, if its owner has released it by then. */
struct blk_hung_disk {
	const struct vproxy_plugin *plugin;
	void *disk;
	struct event_base *base;
	unsigned zombies;  /* requests given up on, still in the plugin */
	bool close_wanted; /* vp_blk_disk_release() was called */
	struct blk_hung_disk *next;
};

/* Loop thread only. */
static struct blk_hung_disk *hung_disks;

/* One guest request, from pop to push. */
struct blk_req {
	struct vp_req_owner owner; /* first: host->complete() routes here */
	struct vproxy_req preq;    /* what the plugin is working on */
	struct vp_blk *blk;
	unsigned q;
	struct vp_vq_elem elem;   /* iov and ref arrays owned, elem.max long */
	uint8_t *status;          /* the guest's status byte */
	uint32_t type;            /* VIRTIO_BLK_T_* */
	uint64_t offset;          /* IN/OUT: bytes */
	uint64_t len;             /* IN/OUT: bytes */
	uint64_t stat_bytes;      /* bytes the request covers, for statistics */
	uint64_t pop_ns;          /* taken from the queue, for its latency */
	const struct iovec *data; /* IN/OUT: data buffers within elem.iov */
	unsigned data_cnt;
	/* DISCARD/WRITE_ZEROES: segments copied out of guest memory, so the
	 * guest cannot change them while we work. */
	struct virtio_blk_discard_write_zeroes *segs;
	unsigned nsubs; /* plugin requests this request needs */
	unsigned next_sub;
	bool in_submit;   /* inside plugin->submit() */
	bool in_plugin;   /* preq is with the plugin (submitted, not completed) */
	bool done_inline; /* the plugin completed inside submit() */
	int inline_status;
	struct blk_req *next_free;
	struct blk_req *prev, *next; /* the device's requests in flight */
	/* request-timeout: when the plugin got preq, and the bounce buffer
	 * it works on instead of guest memory. */
	uint64_t start_ns;
	void *bounce;
	size_t bounce_cap;
	struct iovec bounce_iov;
	struct blk_hung_disk *hung; /* given up on: the plugin still has it */
};

struct blk_queue {
	unsigned inflight; /* popped, not finished; includes ones a reset orphaned */
	bool processing;   /* blk_process() is on the stack */
	bool rerun;        /* process again before leaving */
	bool throttled;    /* stopped popping: inflight reached the queue size */
	bool irq_pending;  /* a push wants an interrupt, raised in blk_irq_flush() */
	struct vp_blk_queue_stats st;
};

/* The virtio-blk function of one vdev (its type's private state): the
 * disk it serves, the requests in flight per queue. */
struct vp_blk {
	struct vp_vdev *vdev;
	const struct vproxy_plugin *plugin;
	void *disk;
	struct vproxy_disk_info info;
	char serial[VIRTIO_BLK_ID_BYTES];
	bool read_only;
	uint64_t sectors;
	uint32_t max_discard_sectors;
	uint32_t max_write_zeroes_sectors;
	bool may_unmap;
	struct virtio_blk_config cfg; /* as the guest reads it (little-endian) */
	struct blk_queue queues[VP_BLK_MAX_QUEUES];
	/* Pop target, moved into a right-sized blk_req at once. */
	struct vp_vq_elem scratch;
	struct blk_req *free_reqs;
	struct blk_req *inflight; /* every request from pop to finish */
	bool can_cancel;          /* the plugin has cancel() */
	bool can_kick;            /* the plugin has kick() */
	bool kick_due;            /* submit() since the last kick() */
	bool can_poll;            /* the plugin has poll() and poll_end() */
	bool polling;             /* poll() called since the last poll_end() */
	bool in_poll;             /* poll() is on the stack */
	bool hold_irq;            /* a notify pass: one interrupt at its end */
	uint64_t timeout_ns;      /* request-timeout; 0: none (no bouncing) */
	struct event_base *base;
	struct event *timer;      /* checks for timed-out requests */
	struct event *irq_ev;     /* made active: blk_irq_flush() after this callback */
	struct hist lat;          /* every published request, pop to push */
	struct vp_blk_totals *totals; /* vp_blk_params.totals */
	bool disk_failed;         /* a request timed out: the plugin gets no more */
};

static void blk_process(struct vp_blk *blk, unsigned q);
static void blk_plugin_done(struct vproxy_req *preq, int status);

static struct blk_req *req_get(struct vp_blk *blk, unsigned n)
{
	struct blk_req *req = blk->free_reqs;
	struct iovec *iov;
	struct vp_gmem_ref *ref;

	if (req) {
		blk->free_reqs = req->next_free;
	} else {
		req = calloc(1, sizeof(*req));
		if (!req)
			return NULL;
		req->owner.complete = blk_plugin_done;
		req->blk = blk;
	}
	if (req->elem.max < n) {
		iov = realloc(req->elem.iov, n * sizeof(*iov));
		if (iov)
			req->elem.iov = iov;
		ref = realloc(req->elem.ref, n * sizeof(*ref));
		if (ref)
			req->elem.ref = ref;
		if (!iov || !ref) {
			req->next_free = blk->free_reqs;
			blk->free_reqs = req;
			return NULL;
		}
		req->elem.max = n;
	}
	return req;
}

static void inflight_add(struct vp_blk *blk, struct blk_req *req)
{
	req->prev = NULL;
	req->next = blk->inflight;
	if (blk->inflight)
		blk->inflight->prev = req;
	blk->inflight = req;
}

static void inflight_del(struct vp_blk *blk, struct blk_req *req)
{
	if (req->prev)
		req->prev->next = req->next;
	else
		blk->inflight = req->next;
	if (req->next)
		req->next->prev = req->prev;
}

/* Does the guest still want req?  Not once its queue was reset or the
 * device destroyed: then its buffers are no longer ours to write. */
static bool req_wanted(const struct blk_req *req)
{
	return vp_vq_elem_current(vp_vdev_vq(req->blk->vdev, req->q), &req->elem);
}

static void req_put(struct vp_blk *blk, struct blk_req *req)
{
	free(req->segs);
	req->segs = NULL;
	req->next_free = blk->free_reqs;
	blk->free_reqs = req;
}

static uint8_t *elem_status_byte(const struct vp_vq_elem *e)
{
	const struct iovec *last;

	if (!e->in_num)
		return NULL;
	last = &e->iov[e->out_num + e->in_num - 1];
	return (uint8_t *)last->iov_base + last->iov_len - 1;
}

/* Copy len bytes starting skip bytes into iov to buf; false if short. */
static bool iov_read(const struct iovec *iov, unsigned cnt, size_t skip, void *buf,
                     size_t len)
{
	uint8_t *out = buf;

	for (unsigned i = 0; i < cnt && len; i++) {
		size_t n;

		if (skip >= iov[i].iov_len) {
			skip -= iov[i].iov_len;
			continue;
		}
		n = iov[i].iov_len - skip;
		if (n > len)
			n = len;
		memcpy(out, (const uint8_t *)iov[i].iov_base + skip, n);
		out += n;
		len -= n;
		skip = 0;
	}
	return len == 0;
}

static void iov_write(const struct iovec *iov, unsigned cnt, const void *buf, size_t len)
{
	const uint8_t *in = buf;

	for (unsigned i = 0; i < cnt && len; i++) {
		size_t n = iov[i].iov_len < len ? iov[i].iov_len : len;

		memcpy(iov[i].iov_base, in, n);
		in += n;
		len -= n;
	}
}

/* Drop the first skip bytes of iov[0, cnt) in place; returns the first
 * entry left and sets *left to the entries from there. */
static struct iovec *iov_trim_front(struct iovec *iov, unsigned cnt, size_t skip,
                                    unsigned *left)
{
	unsigned i = 0;

	while (i < cnt && skip >= iov[i].iov_len) {
		skip -= iov[i].iov_len;
		i++;
	}
	if (i < cnt) {
		iov[i].iov_base = (uint8_t *)iov[i].iov_base + skip;
		iov[i].iov_len -= skip;
	}
	*left = cnt - i;
	return &iov[i];
}

/* Is [sector, sector + bytes/512) inside the disk?  Overflow-safe. */
static bool blk_range_ok(const struct vp_blk *blk, uint64_t sector, uint64_t bytes)
{
	uint64_t cap = blk->sectors << SECTOR_SHIFT;

	return sector <= blk->sectors && bytes <= cap - (sector << SECTOR_SHIFT);
}

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Check for timed-out requests a quarter of the timeout from now. */
static void blk_timer_arm(struct vp_blk *blk)
{
	uint64_t period = blk->timeout_ns / 4;
	struct timeval tv;

	if (period < 10000000u)
		period = 10000000u;
	tv.tv_sec = (time_t)(period / 1000000000u);
	tv.tv_usec = (suseconds_t)(period % 1000000000u / 1000u);
	if (!evtimer_pending(blk->timer, NULL))
		evtimer_add(blk->timer, &tv);
}

static struct blk_hung_disk *hung_find(const void *disk)
{
	for (struct blk_hung_disk *h = hung_disks; h; h = h->next)
		if (h->disk == disk)
			return h;
	return NULL;
}

static void hung_unlink(struct blk_hung_disk *h)
{
	for (struct blk_hung_disk **pp = &hung_disks; *pp; pp = &(*pp)->next) {
		if (*pp == h) {
			*pp = h->next;
			return;
		}
	}
}

/* From the loop, never from the plugin's completion (plugin.h). */
static void hung_close_cb(evutil_socket_t fd, short what, void *arg)
{
	struct blk_hung_disk *h = arg;

	(void)fd;
	(void)what;
	vp_info("a disk of plugin %s abandoned earlier finished its last request: closed",
	        h->plugin->name);
	vp_plugin_close_async(h->plugin, h->disk);
	free(h);
}

/* The plugin finished a request the device had given up on: only the
 * request's own memory is left to free; the device may be long gone. */
static void blk_zombie_done(struct blk_req *req)
{
	struct blk_hung_disk *h = req->hung;
	const struct timeval now = {0, 0};

	free(req->bounce);
	free(req->segs);
	free(req->elem.iov);
	free(req->elem.ref);
	free(req);
	if (--h->zombies)
		return;
	hung_unlink(h);
	if (!h->close_wanted) {
		free(h);
		return;
	}
	if (event_base_once(h->base, -1, EV_TIMEOUT, hung_close_cb, h, &now) < 0)
		vp_err("cannot schedule closing an abandoned disk of plugin %s: left open",
		       h->plugin->name);
}

unsigned vp_blk_disk_release(const struct vproxy_plugin *plugin, void *disk)
{
	struct blk_hung_disk *h = hung_find(disk);

	if (h && h->zombies) {
		h->close_wanted = true;
		return h->zombies;
	}
	vp_plugin_close_async(plugin, disk);
	return 0;
}

/* One interrupt for every push that wanted one since the last.  A batch of
 * completions (one callback of the disk's fd, one poll()) gets a single
 * interrupt at its end: raised per completion, each would wake the guest
 * for one used entry, and on a shared CPU the guest would run between
 * every two of them. */
static void blk_irq_flush(struct vp_blk *blk)
{
	bool raise = false;

	for (unsigned q = 0; q < VP_BLK_MAX_QUEUES; q++) {
		raise |= blk->queues[q].irq_pending;
		blk->queues[q].irq_pending = false;
	}
	if (raise)
		vp_vdev_raise_irq(blk->vdev, VP_IRQ_VRING);
}

static void blk_irq_ev_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	blk_irq_flush(arg);
}

/* A completion outside blk_process() and poll(): the disk's own callback
 * or a helper thread's, delivered by the loop.  The interrupt goes once
 * that callback returns (the loop runs an active event in the same turn,
 * after the callbacks already due).  Without a loop, at once. */
static void blk_irq_defer(struct vp_blk *blk)
{
	if (blk->irq_ev)
		event_active(blk->irq_ev, EV_TIMEOUT, 0);
	else
		blk_irq_flush(blk);
}

static enum vp_blk_op op_of(uint32_t type)
{
	switch (type) {
	case VIRTIO_BLK_T_IN: return VP_BLK_OP_READ;
	case VIRTIO_BLK_T_OUT: return VP_BLK_OP_WRITE;
	case VIRTIO_BLK_T_FLUSH: return VP_BLK_OP_FLUSH;
	case VIRTIO_BLK_T_DISCARD: return VP_BLK_OP_DISCARD;
	case VIRTIO_BLK_T_WRITE_ZEROES: return VP_BLK_OP_WRITE_ZEROES;
	default: return VP_BLK_OP_OTHER;
	}
}

/* Statistics of a finished request: st its status byte, or negative when
 * the guest is not told (a broken or reset device). */
static void blk_count(struct vp_blk *blk, const struct blk_req *req, int st, bool publish)
{
	struct vp_blk_queue_stats *qs = &blk->queues[req->q].st;
	enum vp_blk_op op = op_of(req->type);

	qs->reqs[op]++;
	if (st == VIRTIO_BLK_S_OK)
		qs->bytes[op] += req->stat_bytes;
	else
		qs->errors++;
	if (publish)
		hist_add(&blk->lat, mono_ns() - req->pop_ns);
}

static uint8_t status_from_errno(int err)
{
	return err == -EOPNOTSUPP ? VIRTIO_BLK_S_UNSUPP : VIRTIO_BLK_S_IOERR;
}

/* Finish req towards the guest with status byte st, or without touching
 * the guest when st is negative (the device is broken).  Unless the
 * plugin still holds it (zombie), req goes back to the free list.  May
 * free the device. */
static void blk_end(struct blk_req *req, int st, bool zombie)
{
	struct vp_blk *blk = req->blk;
	struct vp_vdev *d = blk->vdev;
	unsigned q = req->q;
	struct blk_queue *bq = &blk->queues[q];
	struct vp_vq *vq = vp_vdev_vq(d, q);
	bool publish = st >= 0 && req_wanted(req);
	uint64_t written = req->elem.in_len;

	blk_count(blk, req, st, publish);
	if (publish)
		*req->status = (uint8_t)st;
	/* Unmap before publishing: a frontend may end its grants as soon as
	 * it sees the used entry, and must then find them unmapped. */
	vp_vq_elem_release(vp_vdev_host(d)->gm, &req->elem);
	inflight_del(blk, req);
	if (publish) {
		vp_vq_push(vq, &req->elem,
		           written > UINT32_MAX ? UINT32_MAX : (uint32_t)written);
		if (vp_vq_need_notify(vq)) {
			bq->irq_pending = true;
			if (!bq->processing && !blk->in_poll && !blk->hold_irq)
				blk_irq_defer(blk);
		}
	}
	if (!zombie)
		req_put(blk, req);
	bq->inflight--;
	bq->st.inflight = bq->inflight;
	if (bq->throttled && vp_vdev_running(d)) {
		bq->throttled = false;
		blk_process(blk, q);
	}
	vp_vdev_req_end(d);
}

static void blk_finish(struct blk_req *req, int st)
{
	blk_end(req, st, false);
}

/* request-timeout: the plugin has held req too long.  The guest gets
 * IOERR now (the plugin only has a bounce buffer), the disk gets no more
 * requests from this device, and req stays a zombie until the plugin
 * returns it.  May free the device. */
static void blk_abandon(struct blk_req *req)
{
	struct vp_blk *blk = req->blk;
	struct blk_hung_disk *h = hung_find(blk->disk);
	const struct vproxy_req *p = &req->preq;

	if (!h) {
		h = calloc(1, sizeof(*h));
		if (!h)
			return; /* try again on the next tick */
		h->plugin = blk->plugin;
		h->disk = blk->disk;
		h->base = blk->base;
		h->next = hung_disks;
		hung_disks = h;
	}
	h->zombies++;
	req->hung = h;
	req->in_plugin = false;
	vp_vdev_log(blk->vdev, VPROXY_LOG_ERROR,
	            "plugin %s did not finish op %u at %llu+%llu within %llu ms: failed "
	            "with IOERR, disk marked broken",
	            blk->plugin->name, p->op, (unsigned long long)p->offset,
	            (unsigned long long)p->len,
	            (unsigned long long)(blk->timeout_ns / 1000000u));
	blk->disk_failed = true;
	vp_vdev_set_broken(blk->vdev, "request timed out in the storage plugin");
	blk_end(req, VIRTIO_BLK_S_IOERR, true);
}

static void blk_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct vp_blk *blk = arg;
	uint64_t now = mono_ns();
	struct blk_req *req, *next;

	(void)fd;
	(void)what;
	for (req = blk->inflight; req; req = next) {
		bool last = !req->next && blk->inflight == req;

		next = req->next;
		if (!req->in_plugin || now - req->start_ns < blk->timeout_ns)
			continue;
		blk_abandon(req);
		/* The last request of a destroyed device frees it. */
		if (last)
			return;
	}
	if (blk->inflight)
		blk_timer_arm(blk);
}

static void blk_fill_sub(struct blk_req *req, unsigned i)
{
	struct vproxy_req *p = &req->preq;
	const struct virtio_blk_discard_write_zeroes *seg;

	memset(p, 0, sizeof(*p));
	p->host_priv = req;
	switch (req->type) {
	case VIRTIO_BLK_T_IN:
	case VIRTIO_BLK_T_OUT:
		p->op = req->type == VIRTIO_BLK_T_IN ? VPROXY_REQ_READ : VPROXY_REQ_WRITE;
		p->offset = req->offset;
		p->len = req->len;
		p->iov = req->data;
		p->iovcnt = req->data_cnt;
		if (req->blk->timeout_ns) {
			/* The plugin never sees guest memory: see blk_abandon. */
			req->bounce_iov = (struct iovec){req->bounce, (size_t)req->len};
			if (req->type == VIRTIO_BLK_T_OUT)
				iov_read(req->data, req->data_cnt, 0, req->bounce,
				         (size_t)req->len);
			p->iov = &req->bounce_iov;
			p->iovcnt = 1;
		}
		break;
	case VIRTIO_BLK_T_FLUSH: p->op = VPROXY_REQ_FLUSH; break;
	default:
		seg = &req->segs[i];
		p->op = req->type == VIRTIO_BLK_T_DISCARD ? VPROXY_REQ_DISCARD
		                                          : VPROXY_REQ_WRITE_ZEROES;
		p->offset = le64toh(seg->sector) << SECTOR_SHIFT;
		p->len = (uint64_t)le32toh(seg->num_sectors) << SECTOR_SHIFT;
		if (req->type == VIRTIO_BLK_T_WRITE_ZEROES && req->blk->may_unmap &&
		    (le32toh(seg->flags) & VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP))
			p->flags = VPROXY_REQ_F_UNMAP;
		break;
	}
}

/* The plugin request in req->preq failed with err (negative errno). */
static void blk_plugin_failed(struct blk_req *req, int err)
{
	const struct vproxy_req *p = &req->preq;

	vp_vdev_log(req->blk->vdev, VPROXY_LOG_WARN,
	            "plugin error on op %u at %llu+%llu: %s", p->op,
	            (unsigned long long)p->offset, (unsigned long long)p->len,
	            strerror(-err));
	blk_finish(req, status_from_errno(err));
}

/* A read done on the bounce buffer: copy it to the guest's buffers. */
static void blk_bounce_back(struct blk_req *req)
{
	if (req->blk->timeout_ns && req->type == VIRTIO_BLK_T_IN && req_wanted(req))
		iov_write(req->data, req->data_cnt, req->bounce, (size_t)req->len);
}

/* The end of a batch: the plugin may have held back what submit() gave it
 * (one io_uring_submit for many requests) until now.  Called at the end of
 * everything that submits: a pass over a queue, a completion that issued
 * the next segment. */
static void blk_kick(struct vp_blk *blk)
{
	if (blk->kick_due) {
		blk->kick_due = false;
		blk->plugin->kick(blk->disk);
	}
}

/* Issue the remaining plugin requests of req, one at a time; a plugin that
 * completes inline is handled here rather than by recursion.  True when
 * req is left in the plugin (so the device lives on); false when req was
 * finished, which may have freed the device. */
static bool blk_submit(struct blk_req *req)
{
	struct vp_blk *blk = req->blk;
	int r;

	while (req->next_sub < req->nsubs) {
		/* Reset or detached between two segments: issue no more. */
		if (!req_wanted(req)) {
			blk_finish(req, -1);
			return false;
		}
		blk_fill_sub(req, req->next_sub++);
		if (blk->timeout_ns) {
			req->start_ns = mono_ns();
			blk_timer_arm(blk);
		}
		req->in_submit = true;
		req->done_inline = false;
		r = blk->plugin->submit(blk->disk, &req->preq);
		req->in_submit = false;
		if (r == 0 && req->done_inline) {
			r = req->inline_status;
			if (r == 0)
				blk_bounce_back(req);
		} else if (r == 0) {
			req->in_plugin = true;
			blk->kick_due = blk->can_kick;
			return true; /* blk_plugin_done() carries on */
		}
		if (r < 0) {
			blk_plugin_failed(req, r);
			return false;
		}
	}
	blk_finish(req, VIRTIO_BLK_S_OK);
	return false;
}

static void blk_plugin_done(struct vproxy_req *preq, int status)
{
	struct blk_req *req = preq->host_priv;
	struct vp_blk *blk;

	if (req->hung) {
		blk_zombie_done(req);
		return;
	}
	if (req->in_submit) {
		req->done_inline = true;
		req->inline_status = status;
		return;
	}
	req->in_plugin = false;
	if (status < 0 && !req_wanted(req)) {
		blk_finish(req, -1); /* cancelled or stale: nothing to report */
		return;
	}
	if (status < 0) {
		blk_plugin_failed(req, status);
		return;
	}
	blk_bounce_back(req);
	/* Only a request still in the plugin keeps the device alive: a
	 * finished one may have taken the last reference with it. */
	blk = req->blk;
	if (blk_submit(req))
		blk_kick(blk);
}

/* The device is being reset or destroyed: have the plugin drop what it
 * has not started.  cancel() never completes inline, so the list holds
 * still while we walk it. */
static void blk_cancel(struct vp_vdev *d)
{
	struct vp_blk *blk = vp_vdev_priv(d);

	if (!blk->can_cancel)
		return;
	for (struct blk_req *req = blk->inflight; req; req = req->next)
		if (req->in_plugin)
			blk->plugin->cancel(blk->disk, &req->preq);
}

/* Read/write: data follows the header (OUT) or precedes the status byte
 * (IN).  Returns a status byte, or -1 when the plugin must be called. */
static int blk_parse_rw(struct blk_req *req, uint64_t sector)
{
	struct vp_blk *blk = req->blk;
	struct vp_vq_elem *e = &req->elem;
	struct iovec *data;
	unsigned cnt;
	uint64_t len;

	if (req->type == VIRTIO_BLK_T_OUT) {
		if (blk->read_only) {
			vp_vdev_log(blk->vdev, VPROXY_LOG_WARN,
			            "write to read-only disk");
			return VIRTIO_BLK_S_IOERR;
		}
		len = e->out_len - sizeof(struct virtio_blk_outhdr);
		data = iov_trim_front(e->iov, e->out_num,
		                      sizeof(struct virtio_blk_outhdr), &cnt);
	} else {
		len = e->in_len - 1;
		data = &e->iov[e->out_num];
		cnt = e->in_num;
		data[cnt - 1].iov_len--;
		if (data[cnt - 1].iov_len == 0)
			cnt--;
	}
	if (len % SECTOR_SIZE) {
		vp_vdev_log(blk->vdev, VPROXY_LOG_WARN,
		            "%s of %llu bytes is not a multiple of %u",
		            req->type == VIRTIO_BLK_T_IN ? "read" : "write",
		            (unsigned long long)len, SECTOR_SIZE);
		return VIRTIO_BLK_S_IOERR;
	}
	if (!blk_range_ok(blk, sector, len)) {
		vp_vdev_log(blk->vdev, VPROXY_LOG_WARN,
		            "%s at sector %llu + %llu bytes beyond capacity %llu sectors",
		            req->type == VIRTIO_BLK_T_IN ? "read" : "write",
		            (unsigned long long)sector, (unsigned long long)len,
		            (unsigned long long)blk->sectors);
		return VIRTIO_BLK_S_IOERR;
	}
	if (len == 0)
		return VIRTIO_BLK_S_OK;
	if (blk->timeout_ns && req->bounce_cap < len) {
		void *b = len <= BLK_BOUNCE_MAX ? realloc(req->bounce, (size_t)len) : NULL;

		if (!b) {
			vp_vdev_log(blk->vdev, VPROXY_LOG_WARN,
			            "%llu-byte request: no bounce buffer (at most %u bytes "
			            "with request-timeout)",
			            (unsigned long long)len, BLK_BOUNCE_MAX);
			return VIRTIO_BLK_S_IOERR;
		}
		req->bounce = b;
		req->bounce_cap = (size_t)len;
	}
	req->offset = sector << SECTOR_SHIFT;
	req->len = len;
	req->stat_bytes = len;
	req->data = data;
	req->data_cnt = cnt;
	req->nsubs = 1;
	return -1;
}

/* Discard / write-zeroes: an array of segments follows the header. */
static int blk_parse_dz(struct blk_req *req)
{
	struct vp_blk *blk = req->blk;
	struct vp_vq_elem *e = &req->elem;
	bool discard = req->type == VIRTIO_BLK_T_DISCARD;
	uint32_t flag = discard ? VPROXY_DISK_DISCARD : VPROXY_DISK_WRITE_ZEROES;
	uint32_t max_sectors =
	        discard ? blk->max_discard_sectors : blk->max_write_zeroes_sectors;
	uint32_t allowed = discard ? 0 : VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP;
	const char *what = discard ? "discard" : "write-zeroes";
	uint64_t plen = e->out_len - sizeof(struct virtio_blk_outhdr);
	unsigned nseg, kept = 0;

	if (blk->read_only)
		return VIRTIO_BLK_S_IOERR;
	if (!(blk->info.flags & flag))
		return VIRTIO_BLK_S_UNSUPP;
	if (plen == 0 || plen % sizeof(*req->segs) ||
	    plen / sizeof(*req->segs) > BLK_DZ_SEG_MAX) {
		vp_vdev_log(blk->vdev, VPROXY_LOG_WARN, "%s with %llu bytes of segments",
		            what, (unsigned long long)plen);
		return VIRTIO_BLK_S_IOERR;
	}
	nseg = (unsigned)(plen / sizeof(*req->segs));
	req->stat_bytes = 0;
	req->segs = malloc(plen);
	if (!req->segs)
		return VIRTIO_BLK_S_IOERR;
	iov_read(e->iov, e->out_num, sizeof(struct virtio_blk_outhdr), req->segs, plen);
	for (unsigned i = 0; i < nseg; i++) {
		const struct virtio_blk_discard_write_zeroes *s = &req->segs[i];
		uint64_t sector = le64toh(s->sector);
		uint32_t n = le32toh(s->num_sectors);
		uint32_t flags = le32toh(s->flags);

		if (flags & ~allowed) {
			vp_vdev_log(blk->vdev, VPROXY_LOG_WARN, "%s segment flags %#x",
			            what, flags);
			return VIRTIO_BLK_S_UNSUPP;
		}
		if (n > max_sectors ||
		    !blk_range_ok(blk, sector, (uint64_t)n << SECTOR_SHIFT)) {
			vp_vdev_log(blk->vdev, VPROXY_LOG_WARN,
			            "%s of %u sectors at %llu out of range", what, n,
			            (unsigned long long)sector);
			return VIRTIO_BLK_S_IOERR;
		}
		if (n)
			req->segs[kept++] = *s;
		req->stat_bytes += (uint64_t)n << SECTOR_SHIFT;
	}
	req->nsubs = kept;
	return -1;
}

/* Parse a freshly popped request and start it. */
static void blk_start(struct blk_req *req)
{
	struct vp_blk *blk = req->blk;
	struct vp_vq_elem *e = &req->elem;
	struct virtio_blk_outhdr hdr;
	char why[96];
	int st;

	req->nsubs = req->next_sub = 0;
	req->type = UINT32_MAX; /* until the header is read: "other" */
	req->stat_bytes = 0;
	req->status = elem_status_byte(e);
	if (!req->status) {
		snprintf(why, sizeof(why),
		         "request at head %u has no writable status byte", e->head);
		vp_vdev_set_broken(blk->vdev, why);
		blk_finish(req, -1);
		return;
	}
	if (!iov_read(e->iov, e->out_num, 0, &hdr, sizeof(hdr))) {
		vp_vdev_log(blk->vdev, VPROXY_LOG_WARN,
		            "request header of %llu bytes is too short",
		            (unsigned long long)e->out_len);
		blk_finish(req, VIRTIO_BLK_S_IOERR);
		return;
	}
	req->type = le32toh(hdr.type);
	if (blk->disk_failed && req->type != VIRTIO_BLK_T_GET_ID) {
		blk_finish(req, VIRTIO_BLK_S_IOERR);
		return;
	}
	switch (req->type) {
	case VIRTIO_BLK_T_IN:
	case VIRTIO_BLK_T_OUT: st = blk_parse_rw(req, le64toh(hdr.sector)); break;
	case VIRTIO_BLK_T_FLUSH:
		st = blk->info.flags & VPROXY_DISK_FLUSH ? -1 : VIRTIO_BLK_S_UNSUPP;
		req->nsubs = 1;
		break;
	case VIRTIO_BLK_T_GET_ID:
		if (e->in_len < 2) {
			st = VIRTIO_BLK_S_IOERR;
			break;
		}
		/* The id goes into the writable bytes before the status byte. */
		iov_write(&e->iov[e->out_num], e->in_num, blk->serial,
		          e->in_len - 1 < sizeof(blk->serial) ? e->in_len - 1
		                                              : sizeof(blk->serial));
		st = VIRTIO_BLK_S_OK;
		break;
	case VIRTIO_BLK_T_DISCARD:
	case VIRTIO_BLK_T_WRITE_ZEROES: st = blk_parse_dz(req); break;
	default: st = VIRTIO_BLK_S_UNSUPP; break;
	}
	if (st >= 0)
		blk_finish(req, st);
	else
		blk_submit(req);
}

/* Move the scratch element into a request and start it. */
static void blk_take(struct vp_blk *blk, unsigned q)
{
	struct vp_vq_elem *s = &blk->scratch;
	unsigned n = s->out_num + s->in_num;
	struct blk_req *req = req_get(blk, n);
	struct vp_vq_elem *e;
	uint8_t *status;

	if (!req) {
		struct vp_vq *vq = vp_vdev_vq(blk->vdev, q);

		/* Out of memory: fail this one request, not the device. */
		vp_vdev_log(blk->vdev, VPROXY_LOG_WARN,
		            "out of memory: request on queue %u failed", q);
		status = elem_status_byte(s);
		if (status)
			*status = VIRTIO_BLK_S_IOERR;
		else
			vp_vdev_set_broken(blk->vdev, "request without status byte");
		vp_vq_elem_release(vp_vdev_host(blk->vdev)->gm, s);
		if (status) {
			vp_vq_push(vq, s, 1);
			if (vp_vq_need_notify(vq))
				blk->queues[q].irq_pending = true;
		}
		return;
	}
	e = &req->elem;
	memcpy(e->iov, s->iov, n * sizeof(*e->iov));
	memcpy(e->ref, s->ref, n * sizeof(*e->ref));
	e->head = s->head;
	e->gen = s->gen;
	e->out_num = s->out_num;
	e->in_num = s->in_num;
	e->out_len = s->out_len;
	e->in_len = s->in_len;
	s->out_num = s->in_num = 0;
	req->q = q;
	req->in_plugin = false;
	inflight_add(blk, req);
	blk->queues[q].inflight++;
	blk->queues[q].st.inflight = blk->queues[q].inflight;
	req->pop_ns = mono_ns();
	vp_vdev_req_begin(blk->vdev);
	blk_start(req);
}

/* Take every available request of queue q, until the queue is empty, the
 * device stops, or q has a queue's worth of requests in flight. */
static void blk_process(struct vp_blk *blk, unsigned q)
{
	struct blk_queue *bq = &blk->queues[q];
	struct vp_vdev *d = blk->vdev;
	struct vp_vq *vq = vp_vdev_vq(d, q);
	int r;

	if (bq->processing) {
		bq->rerun = true;
		return;
	}
	bq->processing = true;
	vp_vq_disable_notify(vq);
	do {
		bq->rerun = false;
		while (vp_vdev_running(d) && vq->ready) {
			/* A guest can re-post heads that are still in flight;
			 * this bounds what it can make us hold. */
			if (bq->inflight >= vq->num) {
				bq->throttled = true;
				break;
			}
			r = vp_vq_pop(vq, &blk->scratch);
			if (r < 0) {
				vp_vdev_set_broken(d, vq->err);
				break;
			}
			if (r == 0) {
				/* The server polls us: the guest need not kick. */
				if (vp_vdev_polled(d))
					break;
				if (!vp_vq_enable_notify(vq))
					break;
				vp_vq_disable_notify(vq);
				continue;
			}
			blk_take(blk, q);
		}
	} while (bq->rerun);
	bq->processing = false;
	blk_kick(blk);
	if (bq->irq_pending && !blk->hold_irq) {
		bq->irq_pending = false;
		vp_vdev_raise_irq(d, VP_IRQ_VRING);
	}
}

/* Polled mode: run the plugin's ready completions without waiting for
 * its fd.  Completions that issue more (the next segment) end their own
 * batch in blk_plugin_done(). */
static bool blk_poll(struct vp_vdev *d)
{
	struct vp_blk *blk = vp_vdev_priv(d);
	bool found;

	if (!blk->can_poll || !blk->inflight)
		return false;
	blk->polling = true;
	/* The vdev holds itself across this call: blk outlives the poll. */
	blk->in_poll = true;
	found = blk->plugin->poll(blk->disk) > 0;
	blk->in_poll = false;
	blk_irq_flush(blk);
	return found;
}

static bool blk_awaiting(const struct vp_vdev *d)
{
	const struct vp_blk *blk = vp_vdev_priv(d);

	return blk->can_poll && blk->inflight;
}

static void blk_poll_end(struct vp_vdev *d)
{
	struct vp_blk *blk = vp_vdev_priv(d);

	if (!blk->polling)
		return;
	blk->polling = false;
	blk->plugin->poll_end(blk->disk);
}

static void blk_queue_notify(struct vp_vdev *d, unsigned q)
{
	struct vp_blk *blk = vp_vdev_priv(d);

	if (q >= VP_BLK_MAX_QUEUES)
		return;
	blk->hold_irq = true;
	blk_process(blk, q);
	/* What the submissions finished already (io_uring runs a read of
	 * cached pages inside the submit; a quick disk) completes in this
	 * turn, under the guest's one interrupt, instead of waking the loop
	 * for the disk's fd again: on Xen PV each wake-up of a process is
	 * hypercalls and a TLB flush.  Polled mode polls anyway. */
	if (!vp_vdev_polled(d) && blk->can_poll && blk->inflight) {
		blk_poll(d);
		blk_poll_end(d);
	}
	blk->hold_irq = false;
	/* One interrupt for the pass: what completed inline and what the
	 * look found. */
	blk_irq_flush(blk);
}

static bool blk_queue_busy(struct vp_vdev *d, unsigned q)
{
	const struct vp_blk *blk = vp_vdev_priv(d);

	return q < VP_BLK_MAX_QUEUES && blk->queues[q].inflight > 0;
}

static void blk_config_read(struct vp_vdev *d, uint32_t offset, void *buf, unsigned len)
{
	const struct vp_blk *blk = vp_vdev_priv(d);

	memcpy(buf, (const uint8_t *)&blk->cfg + offset, len);
}

static void blk_reset(struct vp_vdev *d)
{
	struct vp_blk *blk = vp_vdev_priv(d);

	/* The reset waited for every request in flight to finish. */
	for (unsigned q = 0; q < VP_BLK_MAX_QUEUES; q++) {
		blk->queues[q].throttled = false;
		blk->queues[q].irq_pending = false;
	}
}

static void blk_free(struct vp_vdev *d)
{
	struct vp_blk *blk = vp_vdev_priv(d);

	if (blk->totals)
		vp_blk_totals_add(blk->totals, d);
	while (blk->free_reqs) {
		struct blk_req *req = blk->free_reqs;

		blk->free_reqs = req->next_free;
		free(req->bounce);
		free(req->elem.iov);
		free(req->elem.ref);
		free(req);
	}
	if (blk->timer)
		event_free(blk->timer);
	if (blk->irq_ev)
		event_free(blk->irq_ev);
	free(blk->scratch.iov);
	free(blk->scratch.ref);
	free(blk);
}

static const struct vp_vdev_type blk_type = {
        .name = "blk",
        .device_id = VIRTIO_ID_BLOCK,
        .config_read = blk_config_read,
        .queue_notify = blk_queue_notify,
        .cancel = blk_cancel,
        .queue_busy = blk_queue_busy,
        .poll = blk_poll,
        .poll_end = blk_poll_end,
        .awaiting = blk_awaiting,
        .reset = blk_reset,
        .free = blk_free,
};

static bool is_pow2(uint64_t v)
{
	return v && !(v & (v - 1));
}

static uint64_t blk_setup_config(struct vp_blk *blk, const struct vp_blk_params *p)
{
	const struct vproxy_disk_info *info = &blk->info;
	struct virtio_blk_config *c = &blk->cfg;
	uint32_t lbs = info->logical_block;
	uint32_t pbs = info->physical_block;
	uint32_t gran = info->discard_granularity;
	uint64_t f = BIT64(VIRTIO_BLK_F_SIZE_MAX) | BIT64(VIRTIO_BLK_F_SEG_MAX) |
	             BIT64(VIRTIO_BLK_F_BLK_SIZE) | BIT64(VIRTIO_BLK_F_TOPOLOGY);

	if (!is_pow2(lbs) || lbs < SECTOR_SIZE)
		lbs = SECTOR_SIZE;
	if (!is_pow2(pbs) || pbs < lbs)
		pbs = lbs;
	if (!is_pow2(gran) || gran < lbs)
		gran = lbs;
	blk->max_discard_sectors =
	        info->max_discard_sectors ? info->max_discard_sectors : UINT32_MAX;
	blk->max_write_zeroes_sectors = info->max_write_zeroes_sectors
	                                        ? info->max_write_zeroes_sectors
	                                        : UINT32_MAX;
	blk->may_unmap = info->flags & VPROXY_DISK_DISCARD;

	c->capacity = htole64(blk->sectors);
	c->size_max = htole32(BLK_SEG_SIZE_MAX);
	/* Header and status take two descriptors of a queue-sized chain. */
	c->seg_max = htole32(p->queue_size_max - 2);
	c->blk_size = htole32(lbs);
	c->physical_block_exp = (uint8_t)__builtin_ctz(pbs / lbs);
	c->min_io_size = htole16((uint16_t)(pbs / lbs));
	c->num_queues = htole16((uint16_t)p->num_queues);
	if (info->flags & VPROXY_DISK_FLUSH)
		f |= BIT64(VIRTIO_BLK_F_FLUSH);
	if (blk->read_only)
		f |= BIT64(VIRTIO_BLK_F_RO);
	if (p->num_queues > 1)
		f |= BIT64(VIRTIO_BLK_F_MQ);
	if ((info->flags & VPROXY_DISK_DISCARD) && !blk->read_only) {
		f |= BIT64(VIRTIO_BLK_F_DISCARD);
		c->max_discard_sectors = htole32(blk->max_discard_sectors);
		c->max_discard_seg = htole32(BLK_DZ_SEG_MAX);
		c->discard_sector_alignment = htole32(gran >> SECTOR_SHIFT);
	}
	if ((info->flags & VPROXY_DISK_WRITE_ZEROES) && !blk->read_only) {
		f |= BIT64(VIRTIO_BLK_F_WRITE_ZEROES);
		c->max_write_zeroes_sectors = htole32(blk->max_write_zeroes_sectors);
		c->max_write_zeroes_seg = htole32(BLK_DZ_SEG_MAX);
		c->write_zeroes_may_unmap = blk->may_unmap;
	}
	return f;
}

struct vp_vdev *vp_blk_create(const struct vp_blk_params *params,
                              const struct vproxy_plugin *plugin, void *disk,
                              const struct vproxy_disk_info *info,
                              const struct vp_vdev_host *host)
{
	struct vp_vdev_params vp = {0};
	struct vp_blk *blk;
	unsigned qmax = params->queue_size_max;

	if (params->num_queues < 1 || params->num_queues > VP_BLK_MAX_QUEUES ||
	    qmax < 2 || qmax > VP_VQ_MAX_SIZE || !is_pow2(qmax)) {
		vp_log_dev(NULL, VPROXY_LOG_ERROR, host->dom, host->devid,
		           "blk: %u queues of %u entries not supported",
		           params->num_queues, qmax);
		errno = EINVAL;
		return NULL;
	}
	blk = calloc(1, sizeof(*blk));
	if (!blk)
		return NULL;
	hist_init(&blk->lat);
	blk->plugin = plugin;
	blk->can_cancel = VPROXY_PLUGIN_HAS(plugin, cancel);
	blk->can_kick = VPROXY_PLUGIN_HAS(plugin, kick);
	blk->can_poll = VPROXY_PLUGIN_HAS(plugin, poll) &&
	                VPROXY_PLUGIN_HAS(plugin, poll_end);
	blk->base = params->base;
	blk->totals = params->totals;
	if (params->request_timeout_ms && params->base) {
		blk->timeout_ns = (uint64_t)params->request_timeout_ms * 1000000u;
		blk->timer = evtimer_new(params->base, blk_timer_cb, blk);
		if (!blk->timer)
			goto fail;
	}
	if (params->base) {
		blk->irq_ev = event_new(params->base, -1, 0, blk_irq_ev_cb, blk);
		if (!blk->irq_ev)
			goto fail;
	}
	blk->disk = disk;
	blk->info = *info;
	blk->sectors = info->capacity >> SECTOR_SHIFT;
	blk->read_only = params->read_only || (info->flags & VPROXY_DISK_READONLY);
	memcpy(blk->serial, params->serial, strnlen(params->serial, sizeof(blk->serial)));
	blk->scratch.max = qmax;
	blk->scratch.iov = calloc(qmax, sizeof(*blk->scratch.iov));
	blk->scratch.ref = calloc(qmax, sizeof(*blk->scratch.ref));
	if (!blk->scratch.iov || !blk->scratch.ref)
		goto fail;

	vp.features = blk_setup_config(blk, params);
	vp.num_queues = params->num_queues;
	vp.queue_max = qmax;
	vp.config_len = BLK_CONFIG_LEN;
	blk->vdev = vp_vdev_new(&blk_type, &vp, host, blk);
	if (!blk->vdev)
		goto fail;
	return blk->vdev;

fail:
	if (blk->timer)
		event_free(blk->timer);
	if (blk->irq_ev)
		event_free(blk->irq_ev);
	free(blk->scratch.iov);
	free(blk->scratch.ref);
	free(blk);
	return NULL;
}

const struct vp_blk_queue_stats *vp_blk_queue_stats(const struct vp_vdev *d, unsigned q)
{
	const struct vp_blk *blk = vp_vdev_priv(d);

	return q < vp_vdev_num_queues(d) ? &blk->queues[q].st : NULL;
}

const struct hist *vp_blk_latency(const struct vp_vdev *d)
{
	const struct vp_blk *blk = vp_vdev_priv(d);

	return &blk->lat;
}

const char *vp_blk_op_name(enum vp_blk_op op)
{
	static const char *const names[VP_BLK_NOPS] = {
	        [VP_BLK_OP_READ] = "read",       [VP_BLK_OP_WRITE] = "write",
	        [VP_BLK_OP_FLUSH] = "flush",     [VP_BLK_OP_DISCARD] = "discard",
	        [VP_BLK_OP_WRITE_ZEROES] = "write_zeroes", [VP_BLK_OP_OTHER] = "other",
	};

	return (unsigned)op < VP_BLK_NOPS ? names[op] : "?";
}

void vp_blk_totals_init(struct vp_blk_totals *t)
{
	memset(t, 0, sizeof(*t));
	hist_init(&t->lat);
}

static void queue_stats_add(struct vp_blk_queue_stats *dst, const struct vp_blk_queue_stats *src)
{
	for (unsigned op = 0; op < VP_BLK_NOPS; op++) {
		dst->reqs[op] += src->reqs[op];
		dst->bytes[op] += src->bytes[op];
	}
	dst->errors += src->errors;
}

void vp_blk_totals_add(struct vp_blk_totals *t, const struct vp_vdev *d)
{
	const struct vp_blk *blk = vp_vdev_priv(d);

	for (unsigned q = 0; q < vp_vdev_num_queues(d) && q < VP_BLK_MAX_QUEUES; q++) {
		queue_stats_add(&t->q[q], &blk->queues[q].st);
		t->kicks[q] += vp_vdev_queue_kicks(d, q);
	}
	t->irqs += vp_vdev_irqs(d);
	hist_merge(&t->lat, &blk->lat);
}

void vp_blk_totals_merge(struct vp_blk_totals *t, const struct vp_blk_totals *src)
{
	for (unsigned q = 0; q < VP_BLK_MAX_QUEUES; q++) {
		queue_stats_add(&t->q[q], &src->q[q]);
		t->kicks[q] += src->kicks[q];
	}
	t->irqs += src->irqs;
	hist_merge(&t->lat, &src->lat);
}

void vp_blk_totals_of(struct vp_blk_totals *t, const struct vp_blk_totals *past,
                      const struct vp_vdev *live)
{
	vp_blk_totals_init(t);
	if (past)
		vp_blk_totals_merge(t, past);
	if (live)
		vp_blk_totals_add(t, live);
}
