/* SPDX-License-Identifier: MIT */
/*
 * vproxyd's server: the composition root.  It wires the event loop
 * (loop.h), the hypervisor layer (hv.h), the xenstore bus (xsbus.h) and
 * the plugin host (plugin_host.h), and owns signals and orderly shutdown.
 * See server.c.
 */
#ifndef VP_SERVER_H
#define VP_SERVER_H

#include <stdbool.h>
#include <stddef.h>

#include "xsbus.h"

struct vp_loop;
struct vp_reload_opts;

struct vp_server_opts {
	const char *hypervisor;     /* "sim" or "xen" */
	const char *run_dir;        /* sim rendezvous directory */
	int backend_domid;          /* -1: read "domid" from xenstore */
	size_t gmem_cache_bytes;    /* per-device gfn mapping cache bound */
	unsigned shutdown_grace_ms; /* wait for frontends to close on exit */
	unsigned poll_us;           /* after work, poll this long before sleeping */
	bool poll_adaptive;         /* ...or as the gaps warrant, at most poll_us */
	const char *control_path;   /* the control socket; NULL: none */
	const char *plugin_dir;     /* where vproxyctl attach finds plugins */
	/* What vproxyctl reload and SIGHUP read again; NULL: no reload. */
	const struct vp_reload_opts *reload;
	const char *metrics_host;   /* Prometheus metrics on HTTP; NULL: none */
	unsigned metrics_port;
	const struct vp_devdecl *decls;
	size_t ndecls;
};

struct vp_server;

/* Connect to xenstore and the hypervisor layer. NULL + err on failure. */
struct vp_server *vp_server_new(const struct vp_server_opts *opts, char *err,
                                size_t errlen);
/* Serve until SIGTERM/SIGINT (or vp_server_stop), then close every device
 * cleanly. Returns 0, or -errno if the loop failed. */
int vp_server_run(struct vp_server *srv);
/* Begin the orderly shutdown (as SIGTERM does): every device closing, the
 * grace timer running; the loop stops once all are closed. */
void vp_server_stop(struct vp_server *srv);
/* The server's loop (owned by srv), for tests that step it themselves. */
struct vp_loop *vp_server_loop(struct vp_server *srv);
/* Free everything (after vp_server_run returned). */
void vp_server_free(struct vp_server *srv);

#endif
