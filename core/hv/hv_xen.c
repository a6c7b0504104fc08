/* SPDX-License-Identifier: MIT */
/*
 * The "xen" hypervisor layer: event channels through libxenevtchn, guest
 * frames through libxenforeignmemory, grant refs through libxengnttab.
 * Xen enforces what the sim layer has to check by hand (ownership,
 * read-only grants, domain death), so this file mostly translates errors.
 *
 * Not thread-safe: one event-loop thread owns the handle.
 */
#include "hv.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <xenevtchn.h>
#include <xenforeignmemory.h>
#include <xengnttab.h>

/* A bound local port and the domain at its other end. */
struct xen_binding {
	int port;
	uint16_t dom;
};

/* Ports taken from the event channel device per read(). */
#define PENDING_BATCH 64u

struct xen_hv {
	struct vp_hv hv;
	xenevtchn_handle *xce;
	xenforeignmemory_handle *fmem;
	xengnttab_handle *xgt;
	int evtchn_fd;
	/* Ports read at once and already unmasked; pending() hands them out
	 * one by one from next. */
	evtchn_port_t pend[PENDING_BATCH];
	unsigned npend, next;
	struct xen_binding *bound;
	unsigned nbound, cap;
};

static struct xen_hv *to_xen(struct vp_hv *hv)
{
	return (struct xen_hv *)hv;
}

static int xen_evtchn_fd(struct vp_hv *hv)
{
	return to_xen(hv)->evtchn_fd;
}

static struct xen_binding *xen_binding_find(struct xen_hv *x, int port)
{
	for (unsigned i = 0; i < x->nbound; i++)
		if (x->bound[i].port == port)
			return &x->bound[i];
	return NULL;
}

static int xen_evtchn_bind(struct vp_hv *hv, uint16_t dom, uint32_t remote_port)
{
	struct xen_hv *x = to_xen(hv);
	xenevtchn_port_or_error_t port;

	if (x->nbound == x->cap) {
		unsigned want = x->cap ? x->cap * 2 : 16;
		struct xen_binding *grown = realloc(x->bound, want * sizeof(*grown));

		if (!grown)
			return -ENOMEM;
		x->bound = grown;
		x->cap = want;
	}
	port = xenevtchn_bind_interdomain(x->xce, dom, remote_port);
	if (port < 0)
		return -errno;
	x->bound[x->nbound++] = (struct xen_binding){.port = port, .dom = dom};
	vp_debug("dom %u: event channel %u bound to local port %d", dom, remote_port,
		 port);
	return port;
}

static int xen_evtchn_notify(struct vp_hv *hv, int port)
{
	if (port < 0)
		return -EINVAL;
	return xenevtchn_notify(to_xen(hv)->xce, (evtchn_port_t)port) < 0 ? -errno : 0;
}

/*
 * Linux's event channel device (what libxenevtchn's pending() and unmask()
 * are on Linux: a read of one port, a write of one port) hands out every
 * pending port in one read and unmasks every port of one write.  With the
 * fd non-blocking, a wake-up costs one read and one write whatever the
 * number of ports, instead of a poll(), a read and a write per port and a
 * last poll(): under Xen PV every system call is a trip through the
 * hypervisor.  The batch is unmasked at once, before any of its ports is
 * served, as the loop would unmask each before serving it.  A wake-up for
 * one port is then one read() and one write().
 */
static int xen_evtchn_pending(struct vp_hv *hv)
{
	struct xen_hv *x = to_xen(hv);
	ssize_t n;

	if (x->next < x->npend)
		return (int)x->pend[x->next++];
	/* A read that did not fill the batch took every pending port: no
	 * second read to learn that (EAGAIN).  A port that fires from now on
	 * makes the fd readable again, and the loop's wait sees it. */
	if (x->npend && x->npend < PENDING_BATCH) {
		x->npend = x->next = 0;
		return -1;
	}
	x->npend = x->next = 0;
	n = read(x->evtchn_fd, x->pend, sizeof(x->pend));
	if (n < 0 && errno != EAGAIN && errno != EINTR)
		vp_warn("xen: reading the event channel device: %s", strerror(errno));
	if (n < (ssize_t)sizeof(x->pend[0]))
		return -1;
	x->npend = (unsigned)((size_t)n / sizeof(x->pend[0]));
	if (write(x->evtchn_fd, x->pend, x->npend * sizeof(x->pend[0])) < 0)
		vp_warn("xen: unmasking %u event channel ports: %s", x->npend,
		        strerror(errno));
	x->next = 1;
	return (int)x->pend[0];
}

static bool in_batch(const struct xen_hv *x, int port)
{
	for (unsigned i = x->next; i-- > 0;)
		if ((int)x->pend[i] == port)
			return true;
	return false;
}

static int xen_evtchn_unmask(struct vp_hv *hv, int port)
{
	struct xen_hv *x = to_xen(hv);

	if (port < 0)
		return -EINVAL;
	/* Handed out by pending(): unmasked with its batch already. */
	if (in_batch(x, port))
		return 0;
	return xenevtchn_unmask(x->xce, (evtchn_port_t)port) < 0 ? -errno : 0;
}

static int xen_evtchn_unbind(struct vp_hv *hv, int port)
{
	struct xen_hv *x = to_xen(hv);
	struct xen_binding *b = xen_binding_find(x, port);

	if (port < 0)
		return -EINVAL;
	if (b) {
		vp_debug("dom %u: local port %d unbound", b->dom, port);
		*b = x->bound[--x->nbound];
	}
	/* Not handed out yet: a later binding may get the same number. */
	for (unsigned i = x->next; i < x->npend; i++)
		if ((int)x->pend[i] == port) {
			memmove(&x->pend[i], &x->pend[i + 1],
			        (x->npend - i - 1) * sizeof(x->pend[0]));
			x->npend--;
			break;
		}
	return xenevtchn_unbind(x->xce, (evtchn_port_t)port) < 0 ? -errno : 0;
}

static void *xen_map_gfns(struct vp_hv *hv, uint16_t dom, const uint64_t *gfns,
			  unsigned n, int writable)
{
	struct xen_hv *x = to_xen(hv);
	int prot = PROT_READ | (writable ? PROT_WRITE : 0);
	xen_pfn_t *arr = NULL;
	int *errs = NULL;
	void *addr = NULL;
	int err = 0;

	if (!gfns || n == 0) {
		errno = EINVAL;
		return NULL;
	}
	arr = malloc((size_t)n * sizeof(*arr));
	errs = calloc(n, sizeof(*errs));
	if (!arr || !errs) {
		err = ENOMEM;
		goto out;
	}
	for (unsigned i = 0; i < n; i++) {
		arr[i] = (xen_pfn_t)gfns[i];
		if ((uint64_t)arr[i] != gfns[i]) {
			err = EINVAL;
			goto out;
		}
	}
	addr = xenforeignmemory_map(x->fmem, dom, prot, n, arr, errs);
	if (!addr) {
		err = errno;
		goto out;
	}
	/* With an err array the map may half succeed: all or nothing. */
	for (unsigned i = 0; i < n; i++) {
		if (errs[i]) {
			err = errs[i] < 0 ? -errs[i] : errs[i];
			xenforeignmemory_unmap(x->fmem, addr, n);
			addr = NULL;
			break;
		}
	}
out:
	free(arr);
	free(errs);
	if (!addr)
		errno = err;
	return addr;
}

static int xen_unmap_gfns(struct vp_hv *hv, void *addr, unsigned n)
{
	if (!addr || n == 0)
		return -EINVAL;
	return xenforeignmemory_unmap(to_xen(hv)->fmem, addr, n) < 0 ? -errno : 0;
}

static void *xen_map_grants(struct vp_hv *hv, uint16_t dom, const uint32_t *refs,
			    unsigned n, int writable)
{
	struct xen_hv *x = to_xen(hv);
	int prot = PROT_READ | (writable ? PROT_WRITE : 0);
	uint32_t *copy;
	void *addr;
	int err;

	if (!refs || n == 0) {
		errno = EINVAL;
		return NULL;
	}
	/* libxengnttab takes a non-const array. */
	copy = malloc((size_t)n * sizeof(*copy));
	if (!copy)
		return NULL;
	memcpy(copy, refs, (size_t)n * sizeof(*copy));
	addr = xengnttab_map_domain_grant_refs(x->xgt, n, dom, copy, prot);
	err = errno;
	free(copy);
	if (!addr)
		errno = err;
	return addr;
}

static int xen_unmap_grants(struct vp_hv *hv, void *addr, unsigned n)
{
	if (!addr || n == 0)
		return -EINVAL;
	return xengnttab_unmap(to_xen(hv)->xgt, addr, n) < 0 ? -errno : 0;
}

static void xen_forget_domain(struct vp_hv *hv, uint16_t dom)
{
	struct xen_hv *x = to_xen(hv);
	unsigned still = 0;

	/* Xen tore down the other end already; our ports stay bound until
	 * their owners unbind them. */
	for (unsigned i = 0; i < x->nbound; i++)
		if (x->bound[i].dom == dom)
			still++;
	if (still)
		vp_debug("dom %u: released with %u event channel(s) still bound", dom,
			 still);
}

static void xen_close(struct vp_hv *hv)
{
	struct xen_hv *x = to_xen(hv);

	if (x->nbound)
		vp_warn("xen: closing with %u event channel(s) still bound", x->nbound);
	for (unsigned i = 0; i < x->nbound; i++)
		xenevtchn_unbind(x->xce, (evtchn_port_t)x->bound[i].port);
	free(x->bound);
	if (x->xgt)
		xengnttab_close(x->xgt);
	if (x->fmem)
		xenforeignmemory_close(x->fmem);
	if (x->xce)
		xenevtchn_close(x->xce);
	free(x);
}

static const struct vp_hv_ops xen_ops = {
	.name = "xen",
	.evtchn_fd = xen_evtchn_fd,
	.evtchn_bind = xen_evtchn_bind,
	.evtchn_notify = xen_evtchn_notify,
	.evtchn_pending = xen_evtchn_pending,
	.evtchn_unmask = xen_evtchn_unmask,
	.evtchn_unbind = xen_evtchn_unbind,
	.map_gfns = xen_map_gfns,
	.unmap_gfns = xen_unmap_gfns,
	.map_grants = xen_map_grants,
	.unmap_grants = xen_unmap_grants,
	/* Nothing to contact: a domain's memory is mappable once it exists. */
	.domain_ready = NULL,
	.forget_domain = xen_forget_domain,
	.close = xen_close,
};

struct vp_hv *vp_hv_xen_open(void)
{
	struct xen_hv *x;

	if (access("/dev/xen", F_OK) < 0) {
		vp_err("xen: /dev/xen is missing: this is not a Xen domain with the xen "
		       "drivers loaded (the \"sim\" hypervisor layer runs without Xen)");
		return NULL;
	}
	x = calloc(1, sizeof(*x));
	if (!x) {
		vp_err("xen: out of memory");
		return NULL;
	}
	x->hv.ops = &xen_ops;
	x->xce = xenevtchn_open(NULL, 0);
	if (!x->xce) {
		vp_err("xen: cannot open event channels (/dev/xen/evtchn): %s",
		       strerror(errno));
		goto fail;
	}
	x->fmem = xenforeignmemory_open(NULL, 0);
	if (!x->fmem) {
		vp_err("xen: cannot open foreign memory (/dev/xen/privcmd): %s",
		       strerror(errno));
		goto fail;
	}
	x->xgt = xengnttab_open(NULL, 0);
	if (!x->xgt) {
		vp_err("xen: cannot open grant tables (/dev/xen/gntdev): %s",
		       strerror(errno));
		goto fail;
	}
	x->evtchn_fd = xenevtchn_fd(x->xce);
	if (fcntl(x->evtchn_fd, F_SETFL, fcntl(x->evtchn_fd, F_GETFL) | O_NONBLOCK) < 0) {
		vp_err("xen: cannot make the event channel device non-blocking: %s",
		       strerror(errno));
		goto fail;
	}
	return &x->hv;
fail:
	xen_close(&x->hv);
	return NULL;
}
