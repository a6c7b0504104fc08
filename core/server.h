/*
 * vproxyd's server: one libevent loop owning the hypervisor layer, the
 * xenstore connection and every device of every guest.
 *
 * loop.c: creation, the event loop, signals, the event channel port table,
 *         clean shutdown.
 * xsbus.c: the xenstore lifecycle (provisioning, xenbus states, teardown).
 */
#ifndef VP_SERVER_H
#define VP_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <vproxy/plugin.h>

#include "log.h"

/* One declared device, as the config gives it.  Strings and tables are
 * borrowed from the config, which outlives the server. */
struct vp_devdecl {
	const char *label;        /* [device LABEL] */
	const char *guest;        /* domid or domain name, as written */
	int guest_domid;          /* >= 1, or -1 when guest is a name */
	unsigned devid;           /* device id within the guest */
	const struct vproxy_plugin *plugin;
	const struct vproxy_params *params;
	bool read_only;
	unsigned queues;          /* virtio-blk request queues */
	unsigned queue_size;      /* QueueNumMax */
	const char *serial;       /* GET_ID answer, may be NULL */
	unsigned request_timeout_ms; /* fail requests a plugin holds longer; 0: never */
};

struct vp_server_opts {
	const char *hypervisor;   /* "sim" or "xen" */
	const char *run_dir;      /* sim rendezvous directory */
	int backend_domid;        /* -1: read "domid" from xenstore */
	size_t gmem_cache_bytes;  /* per-device gfn mapping cache bound */
	unsigned shutdown_grace_ms; /* wait for frontends to close on exit */
	unsigned poll_us;         /* after work, poll this long before sleeping */
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
/* Ask the loop to shut down (as SIGTERM does). */
void vp_server_stop(struct vp_server *srv);
/* Free everything (after vp_server_run returned). */
void vp_server_free(struct vp_server *srv);

/* ---- internal to loop.c / xsbus.c ---- */

struct event_base;
struct vp_device;

struct event_base *vp_server_base(struct vp_server *srv);
struct vp_hv *vp_server_hv(struct vp_server *srv);
const struct vp_server_opts *vp_server_opts(struct vp_server *srv);
bool vp_server_stopping(struct vp_server *srv);
/* Route events of local port to dev (NULL removes). 0 or -ENOMEM. */
int vp_server_set_port(struct vp_server *srv, int port, struct vp_device *dev);
/* Called by xsbus when every device is gone during shutdown. */
void vp_server_shutdown_done(struct vp_server *srv);

/* Something the loop serves by polling while it spins (poll-us) instead
 * of waiting for the guest's notifications.  poll() serves what is there
 * and returns true if it found work; stop() is called when the spin ends
 * and must ask for notifications again (serving what raced in).  Fields
 * after stop are the loop's. */
struct vp_poller {
	bool (*poll)(struct vp_poller *p);
	void (*stop)(struct vp_poller *p);
	struct vp_poller *next;
	bool queued;
};
/* Poll p until srv's current spin ends.  False (p not added) when srv
 * does not spin (poll-us 0), is stopping, or is NULL. */
bool vp_server_poller_add(struct vp_server *srv, struct vp_poller *p);
/* Take p off srv's list without calling stop() (its owner goes away). */
void vp_server_poller_remove(struct vp_server *srv, struct vp_poller *p);

/* xsbus.c */
struct vp_xsbus;
/* Open xenstore, learn our domid, set the watches, provision devices of
 * guests already running. NULL + err on failure. */
struct vp_xsbus *vp_xsbus_open(struct vp_server *srv, char *err, size_t errlen);
/* The event channel of dev's transport fired. */
void vp_xsbus_device_kick(struct vp_device *dev);
/* Begin shutdown: tell every frontend Closing and disconnect. Calls
 * vp_server_shutdown_done() once all frontends closed or on
 * vp_xsbus_finish(). */
void vp_xsbus_begin_shutdown(struct vp_xsbus *bus);
/* End shutdown now: Closed, nodes removed, disks closed where possible. */
void vp_xsbus_finish(struct vp_xsbus *bus);
/* Close xenstore and free. */
void vp_xsbus_close(struct vp_xsbus *bus);

#endif
