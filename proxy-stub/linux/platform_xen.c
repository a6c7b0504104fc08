/* SPDX-License-Identifier: MIT */
/*
 * The stub's platform in a Xen domU.  Memory: a granted pool per backend
 * domain with a first-fit allocator that only hands out runs of pages
 * whose grant refs go up by one.  gntalloc grants page by page from the
 * head of the kernel's free list, which is ascending in a fresh guest, but
 * frees push onto that head: right after an earlier pool was released the
 * same refs come back descending.  Giving such a pool back at once and
 * sharing again reverses the order once more, so pool_create() retries.
 * Event channels: one libxenevtchn handle per port, so that a device
 * thread sleeping on its port never consumes another thread's event.
 * xenstore: one connection for reads, writes and transactions
 * (libxenstore is thread-safe) and one per watch, as in platform_sim.c.
 */
#include "platform_xen.h"
#include "xs_linux.h"

#include <vproxy/proto.h>

#include <errno.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xenevtchn.h>
#include <xengnttab.h>
#include <xenstore.h>

#define PAGE_SHIFT 12
#define PAGE_SIZE (1u << PAGE_SHIFT)
/* Backend domains one guest's devices may use at once. */
#define MAX_POOLS 4

/* Granted memory for one backend domain. */
struct pool {
	uint16_t be;
	uint8_t *base; /* pages mapped contiguously by gntshr */
	size_t pages;
	uint32_t *refs; /* grant ref of each page */
	uint32_t *seq;  /* seq[p]: pages from p on whose refs go up by one */
	uint32_t *run;  /* pages in the allocation starting at p, else 0 */
	uint8_t *used;
	size_t hint;
	size_t free_pages;
};

/* A bound port and the handle it was allocated on. */
struct port {
	int port;
	xenevtchn_handle *xce;
};

struct vps_xen {
	struct vps_xs xs; /* first: the xenstore operations take ctx as it */
	struct vps_platform plat;
	xengntshr_handle *xgs;
	size_t pool_pages;
	enum vps_log_level level;
	char prog[32];

	pthread_mutex_t lock; /* guards everything below */
	struct pool pools[MAX_POOLS];
	unsigned npools;
	struct port *ports;
	unsigned nports, cap_ports;
};

static void xen_log(void *ctx, enum vps_log_level level, const char *msg);

static void logf_(struct vps_xen *x, enum vps_log_level level, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

static void logf_(struct vps_xen *x, enum vps_log_level level, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	xen_log(x, level, msg);
}

/* Sharing attempts before settling for a pool in several runs. */
#define SHARE_TRIES 3

/* Share n pages with be into p->base and p->refs and fill p->seq; the
 * number of runs of consecutive refs, or -errno. */
static long pool_share(struct vps_xen *x, struct pool *p, uint16_t be, size_t n)
{
	long runs = 1;

	p->base = xengntshr_share_pages(x->xgs, be, (int)n, p->refs, 1);
	if (!p->base)
		return errno ? -errno : -ENOMEM;
	p->seq[n - 1] = 1;
	for (size_t i = n - 1; i-- > 0;) {
		p->seq[i] = p->refs[i + 1] == p->refs[i] + 1 ? p->seq[i + 1] + 1 : 1;
		runs += p->seq[i] == 1;
	}
	return runs;
}

/* Share the pool for backend be; called with the lock held.  0 or -errno. */
static int pool_create(struct vps_xen *x, uint16_t be, struct pool **out)
{
	struct pool *p;
	size_t n = x->pool_pages;
	long runs = 0;

	if (x->npools == MAX_POOLS)
		return -ENOSPC;
	p = &x->pools[x->npools];
	memset(p, 0, sizeof(*p));
	p->be = be;
	p->pages = n;
	p->refs = calloc(n, sizeof(*p->refs));
	p->seq = calloc(n, sizeof(*p->seq));
	p->run = calloc(n, sizeof(*p->run));
	p->used = calloc(n, 1);
	if (!p->refs || !p->seq || !p->run || !p->used)
		goto nomem;
	for (int attempt = 0; attempt < SHARE_TRIES; attempt++) {
		if (attempt > 0) {
			logf_(x, VPS_LOG_DEBUG,
			      "grants to domain %u came in %ld runs: sharing again", be,
			      runs);
			xengntshr_unshare(x->xgs, p->base, (uint32_t)n);
		}
		runs = pool_share(x, p, be, n);
		if (runs <= 1)
			break;
	}
	if (runs < 0) {
		logf_(x, VPS_LOG_ERROR,
		      "cannot grant %zu pages to domain %u: %s (is xen-gntalloc's "
		      "limit at least that?)",
		      n, (unsigned)be, strerror((int)-runs));
		free(p->refs);
		free(p->seq);
		free(p->run);
		free(p->used);
		return (int)runs;
	}
	p->free_pages = n;
	x->npools++;
	logf_(x, VPS_LOG_DEBUG,
	      "granted %zu pages to domain %u: refs from %u, %ld run(s) of "
	      "consecutive refs",
	      n, (unsigned)be, p->refs[0], runs);
	*out = p;
	return 0;
nomem:
	free(p->refs);
	free(p->seq);
	free(p->run);
	free(p->used);
	return -ENOMEM;
}

/* First fit from the hint, then from the start: n free pages at s with
 * consecutive refs.  Lock held. */
static bool pool_find(const struct pool *p, size_t n, size_t *start)
{
	for (int pass = 0; pass < 2; pass++) {
		size_t from = pass == 0 ? p->hint : 0,
		       to = pass == 0 ? p->pages : p->hint;

		for (size_t s = from; s < to && s + n <= p->pages; s++) {
			size_t k;

			if (p->seq[s] < n)
				continue;
			for (k = 0; k < n && !p->used[s + k]; k++)
				;
			if (k == n) {
				*start = s;
				return true;
			}
			s += k; /* the page at s + k is used: resume after it */
		}
	}
	return false;
}

static void *xen_dma_alloc(void *ctx, uint16_t be, size_t bytes, uint64_t *dev_addr)
{
	struct vps_xen *x = ctx;
	size_t n = (bytes + PAGE_SIZE - 1) / PAGE_SIZE, s;
	struct pool *p = NULL;
	void *mem;
	int r;

	if (n == 0 || n > UINT32_MAX) {
		errno = EINVAL;
		return NULL;
	}
	pthread_mutex_lock(&x->lock);
	for (unsigned i = 0; i < x->npools; i++)
		if (x->pools[i].be == be)
			p = &x->pools[i];
	if (!p) {
		r = pool_create(x, be, &p);
		if (r < 0) {
			pthread_mutex_unlock(&x->lock);
			errno = -r;
			return NULL;
		}
	}
	if (!pool_find(p, n, &s)) {
		pthread_mutex_unlock(&x->lock);
		errno = ENOMEM;
		return NULL;
	}
	memset(p->used + s, 1, n);
	p->run[s] = (uint32_t)n;
	p->hint = s + n < p->pages ? s + n : 0;
	p->free_pages -= n;
	*dev_addr = VPROXY_GRANT_ADDR((uint64_t)p->refs[s], 0);
	mem = p->base + (s << PAGE_SHIFT);
	pthread_mutex_unlock(&x->lock);
	memset(mem, 0, n << PAGE_SHIFT);
	return mem;
}

static void xen_dma_free(void *ctx, void *mem, size_t bytes)
{
	struct vps_xen *x = ctx;
	size_t n = (bytes + PAGE_SIZE - 1) / PAGE_SIZE;

	if (!mem)
		return;
	pthread_mutex_lock(&x->lock);
	for (unsigned i = 0; i < x->npools; i++) {
		struct pool *p = &x->pools[i];
		size_t s;

		if ((uint8_t *)mem < p->base ||
		    (uint8_t *)mem >= p->base + (p->pages << PAGE_SHIFT))
			continue;
		s = (size_t)((uint8_t *)mem - p->base) >> PAGE_SHIFT;
		if (p->run[s] == 0 || p->run[s] != n)
			break;
		memset(p->used + s, 0, n);
		p->run[s] = 0;
		p->free_pages += n;
		pthread_mutex_unlock(&x->lock);
		return;
	}
	pthread_mutex_unlock(&x->lock);
	fprintf(stderr, "%s: dma_free of %p (%zu bytes) does not match an allocation\n",
	        x->prog, mem, bytes);
	abort();
}

/* The handle of port, or NULL. */
static xenevtchn_handle *port_handle(struct vps_xen *x, int port)
{
	xenevtchn_handle *h = NULL;

	pthread_mutex_lock(&x->lock);
	for (unsigned i = 0; i < x->nports; i++)
		if (x->ports[i].port == port)
			h = x->ports[i].xce;
	pthread_mutex_unlock(&x->lock);
	return h;
}

static int xen_evtchn_alloc(void *ctx, uint16_t be)
{
	struct vps_xen *x = ctx;
	xenevtchn_handle *h;
	xenevtchn_port_or_error_t port;
	int err;

	h = xenevtchn_open(NULL, 0);
	if (!h)
		return errno ? -errno : -EIO;
	port = xenevtchn_bind_unbound_port(h, be);
	if (port < 0) {
		err = errno ? -errno : -EIO;
		xenevtchn_close(h);
		return err;
	}
	pthread_mutex_lock(&x->lock);
	if (x->nports == x->cap_ports) {
		unsigned want = x->cap_ports ? x->cap_ports * 2 : 8;
		struct port *grown = realloc(x->ports, want * sizeof(*grown));

		if (!grown) {
			pthread_mutex_unlock(&x->lock);
			xenevtchn_unbind(h, (evtchn_port_t)port);
			xenevtchn_close(h);
			return -ENOMEM;
		}
		x->ports = grown;
		x->cap_ports = want;
	}
	x->ports[x->nports++] = (struct port){.port = port, .xce = h};
	pthread_mutex_unlock(&x->lock);
	return port;
}

static int xen_evtchn_notify(void *ctx, int port)
{
	xenevtchn_handle *h = port_handle(ctx, port);

	if (!h)
		return -EBADF;
	return xenevtchn_notify(h, (evtchn_port_t)port) < 0 ? (errno ? -errno : -EIO) : 0;
}

static void xen_evtchn_close(void *ctx, int port)
{
	struct vps_xen *x = ctx;
	xenevtchn_handle *h = NULL;

	pthread_mutex_lock(&x->lock);
	for (unsigned i = 0; i < x->nports; i++) {
		if (x->ports[i].port == port) {
			h = x->ports[i].xce;
			x->ports[i] = x->ports[--x->nports];
			break;
		}
	}
	pthread_mutex_unlock(&x->lock);
	if (!h)
		return;
	xenevtchn_unbind(h, (evtchn_port_t)port);
	xenevtchn_close(h);
}

static int xen_wait(void *ctx, int port, struct vps_watch *w, uint64_t timeout_ns)
{
	struct vps_xen *x = ctx;
	xenevtchn_handle *h = port >= 0 ? port_handle(x, port) : NULL;
	int mask = vps_linux_poll(h ? xenevtchn_fd(h) : -1, w, timeout_ns);

	if (mask < 0)
		return mask;
	if (mask & VPS_WAKE_EVTCHN) {
		/* Only this port is bound on h, and delivery stays masked until
		 * it is unmasked here. */
		xenevtchn_port_or_error_t p = xenevtchn_pending(h);

		if (p >= 0)
			xenevtchn_unmask(h, (evtchn_port_t)p);
	}
	if (mask & VPS_WAKE_WATCH)
		vps_watch_drain(w);
	return mask;
}

static void xen_log(void *ctx, enum vps_log_level level, const char *msg)
{
	struct vps_xen *x = ctx;

	vps_linux_log(x->prog, x->level, level, msg);
}

/* Our domid: xenstore's "domid" relative to our home directory. */
static int read_domid(struct xs_handle *xs, uint16_t *out)
{
	unsigned len;
	char *s = xs_read(xs, XBT_NULL, "domid", &len), *end;
	unsigned long v;

	if (!s)
		return errno ? -errno : -ENOENT;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || end == s || *end || v == 0 || v > VPROXY_DOMID_MAX) {
		free(s);
		return -EINVAL;
	}
	free(s);
	*out = (uint16_t)v;
	return 0;
}

struct vps_xen *vps_xen_create(size_t pool_bytes, const char *prog)
{
	struct vps_xen *x;
	uint16_t domid = 0;
	int err;

	if (pool_bytes < PAGE_SIZE || pool_bytes / PAGE_SIZE > INT32_MAX) {
		errno = EINVAL;
		return NULL;
	}
	x = calloc(1, sizeof(*x));
	if (!x)
		return NULL;
	pthread_mutex_init(&x->lock, NULL);
	x->pool_pages = (pool_bytes + PAGE_SIZE - 1) / PAGE_SIZE;
	x->level = VPS_LOG_WARN;
	snprintf(x->prog, sizeof(x->prog), "%s", prog ? prog : "vproxy-stub");
	err = -vps_xs_open(&x->xs);
	if (err)
		goto fail;
	err = -read_domid(x->xs.xs, &domid);
	if (err)
		goto fail;
	x->xgs = xengntshr_open(NULL, 0);
	if (!x->xgs) {
		err = errno ? errno : EIO;
		goto fail;
	}
	x->plat = (struct vps_platform){
	        .ctx = x,
	        .domid = domid,
	        .addr_mode = VPS_ADDR_GRANT,
	        .dma_alloc = xen_dma_alloc,
	        .dma_free = xen_dma_free,
	        .evtchn_alloc = xen_evtchn_alloc,
	        .evtchn_notify = xen_evtchn_notify,
	        .evtchn_close = xen_evtchn_close,
	        .wait = xen_wait,
	        .now_ns = vps_linux_now_ns,
	        .log = xen_log,
	};
	vps_xs_fill_ops(&x->plat);
	return x;
fail:
	vps_xs_close(&x->xs);
	pthread_mutex_destroy(&x->lock);
	free(x);
	errno = err;
	return NULL;
}

const struct vps_platform *vps_xen_platform(struct vps_xen *x)
{
	return &x->plat;
}

void vps_xen_set_log_level(struct vps_xen *x, enum vps_log_level level)
{
	x->level = level;
}

void vps_xen_destroy(struct vps_xen *x)
{
	if (!x)
		return;
	for (unsigned i = 0; i < x->npools; i++) {
		struct pool *p = &x->pools[i];

		if (p->free_pages != p->pages)
			logf_(x, VPS_LOG_WARN, "%zu pages still allocated at exit",
			      p->pages - p->free_pages);
		/* A backend still mapping a page keeps it alive; gntalloc frees
		 * it once the backend lets go. */
		xengntshr_unshare(x->xgs, p->base, (uint32_t)p->pages);
		free(p->refs);
		free(p->seq);
		free(p->run);
		free(p->used);
	}
	for (unsigned i = 0; i < x->nports; i++) {
		xenevtchn_unbind(x->ports[i].xce, (evtchn_port_t)x->ports[i].port);
		xenevtchn_close(x->ports[i].xce);
	}
	free(x->ports);
	if (x->xgs)
		xengntshr_close(x->xgs);
	vps_xs_close(&x->xs);
	pthread_mutex_destroy(&x->lock);
	free(x);
}
