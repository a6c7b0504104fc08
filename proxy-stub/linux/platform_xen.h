/* SPDX-License-Identifier: MIT */
/*
 * The stub's platform for Linux userspace in a real Xen domU: memory shared
 * with libxengnttab's gntshr (/dev/xen/gntalloc), event channels from
 * libxenevtchn (/dev/xen/evtchn), xenstore from libxenstore
 * (/dev/xen/xenbus).  Device addresses are grant addresses
 * (VPROXY_GRANT_ADDR), as Linux's xen-grant-dma forms them.
 *
 * Memory comes from one granted pool per backend domain, shared the first
 * time dma_alloc() names that backend and revoked only by
 * vps_xen_destroy(): the protocol wants consecutive grant refs across the
 * pages of one allocation, which only a fresh batch of grants reliably has,
 * so dma_free() returns pages to the pool without ending their grants (like
 * a swiotlb-xen bounce window, the pool is the part of the guest the
 * backend may always reach).  Several devices, each on its own thread, may
 * share one platform.
 */
#ifndef VPS_PLATFORM_XEN_H
#define VPS_PLATFORM_XEN_H

#include <stddef.h>

#include "platform.h"

struct vps_xen;

/* Open xenstore, gntshr and learn our domid.  pool_bytes (rounded up to
 * pages) is the size of each backend's granted pool; the gntalloc module
 * must allow that many grants (its "limit" parameter, 1024 by default).
 * Log lines go to stderr prefixed with prog.  NULL + errno on failure
 * (no Xen devices, xenstore unreachable, out of memory). */
struct vps_xen *vps_xen_create(size_t pool_bytes, const char *prog);
/* The platform; owned by x. */
const struct vps_platform *vps_xen_platform(struct vps_xen *x);
/* Print log lines up to level (default VPS_LOG_WARN). */
void vps_xen_set_log_level(struct vps_xen *x, enum vps_log_level level);
/* Revoke every pool's grants and free the platform; every allocation,
 * port and watch must be released. */
void vps_xen_destroy(struct vps_xen *x);

#endif
