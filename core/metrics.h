/* SPDX-License-Identifier: MIT */
/*
 * Prometheus metrics over HTTP (libevent's evhttp), off unless the
 * [vproxyd] key metrics-listen is set.  See metrics.c.
 */
#ifndef VP_METRICS_H
#define VP_METRICS_H

#include <stddef.h>

struct vp_loop;
struct vp_metrics;
struct vp_xsbus;

/* Serve GET /metrics on host:port (what metrics-listen says).  NULL and a
 * message in err when it cannot listen. */
struct vp_metrics *vp_metrics_open(struct vp_loop *loop, const char *host, unsigned port,
                                   char *err, size_t errlen);
/* The devices to report; until set, only the process's own metrics. */
void vp_metrics_set_bus(struct vp_metrics *m, struct vp_xsbus *bus);
void vp_metrics_close(struct vp_metrics *m);

#endif
