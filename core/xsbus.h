/* SPDX-License-Identifier: MIT */
/*
 * The xenstore bus: every declared device of every guest through its
 * xenbus lifecycle (provisioning, states, teardown).  See xsbus.c.
 */
#ifndef VP_XSBUS_H
#define VP_XSBUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <vproxy/plugin.h>

struct vp_blk_totals;
struct vp_hv;
struct vp_loop;
struct vp_xsbus;

/* One declared device, as the config gives it.  Strings and tables are
 * borrowed from the config, which outlives the server. */
struct vp_devdecl {
	const char *label; /* [device LABEL] */
	const char *guest; /* domid or domain name, as written */
	int guest_domid;   /* >= 1, or -1 when guest is a name */
	unsigned devid;    /* device id within the guest */
	const struct vproxy_plugin *plugin;
	const struct vproxy_params *params;
	bool read_only;
	unsigned queues;             /* virtio-blk request queues */
	unsigned queue_size;         /* QueueNumMax */
	const char *serial;          /* GET_ID answer, may be NULL */
	unsigned request_timeout_ms; /* fail requests a plugin holds longer; 0: never */
};

struct vp_config_device;
/* The declaration of a parsed [device] section (its strings borrowed). */
void vp_devdecl_from_config(struct vp_devdecl *out, const struct vp_config_device *d);

/* Called once shutdown is complete (every device closed and removed). */
typedef void vp_xsbus_done_fn(void *opaque);

/* Everything is borrowed and must outlive the bus. */
struct vp_xsbus_params {
	struct vp_loop *loop; /* serves xenstore, transports, timers */
	struct vp_hv *hv;
	const char *hypervisor;  /* "sim" or "xen": the name hv was opened by */
	int backend_domid;       /* -1: read "domid" from xenstore */
	size_t gmem_cache_bytes; /* per-device gfn mapping cache bound */
	const struct vp_devdecl *decls;
	size_t ndecls;
	vp_xsbus_done_fn *done; /* shutdown finished */
	void *opaque;
};

/* Open xenstore, learn our domid, set the watches, provision devices of
 * guests already running.  NULL + err on failure. */
struct vp_xsbus *vp_xsbus_open(const struct vp_xsbus_params *p, char *err, size_t errlen);
/* Begin shutdown: tell every frontend Closing and disconnect.  Calls done
 * once all frontends closed, or on vp_xsbus_finish(). */
void vp_xsbus_begin_shutdown(struct vp_xsbus *bus);
/* End shutdown now: Closed, nodes removed, disks closed where possible;
 * then done. */
void vp_xsbus_finish(struct vp_xsbus *bus);
/* One declared device as the control socket shows it (vproxyctl list and
 * stats).  Valid during the callback only. */
struct vp_xsbus_device {
	const struct vp_devdecl *decl;
	int dom;               /* the guest's domid; -1 when it is not running */
	const char *dom_name;  /* its domain name, or NULL when not known */
	unsigned devid;
	const char *state;     /* the backend's xenbus state, or "no-guest" */
	const char *addr_mode; /* "gfn" or "grant" while connected, else NULL */
	uint64_t capacity;     /* bytes; 0 until the disk is open */
	bool read_only;        /* by the declaration or by the disk */
	const char *error;     /* the device's last error, or NULL */
	const struct vp_vdev *vdev; /* while connected (statistics), else NULL */
	/* Statistics of the guest's earlier connections to it, or NULL. */
	const struct vp_blk_totals *past;
};

typedef void vp_xsbus_device_fn(void *arg, const struct vp_xsbus_device *dev);

/* Declare one more device at runtime (vproxyctl attach, or a reload when
 * from_file: the file declares it).  decl is copied;
 * the strings and tables it points to stay the caller's until the bus
 * calls release(owner) (may be NULL), once the device is detached and
 * gone or the bus closes.  Its guest's frontend gets it at once if the
 * guest runs, else when it starts.  0, or -EEXIST (its label, or its
 * guest and id, are taken), -ESHUTDOWN, -ENOMEM with err; then release
 * is not called. */
int vp_xsbus_attach(struct vp_xsbus *bus, const struct vp_devdecl *decl, bool from_file,
                    void (*release)(void *owner), void *owner, char *err, size_t errlen);
/* Every declaration: whether the file made it (reload manages those) and
 * whether it is being detached. */
typedef void vp_xsbus_decl_fn(void *arg, const struct vp_devdecl *decl, bool from_file,
                              bool removing);
void vp_xsbus_foreach_decl(struct vp_xsbus *bus, vp_xsbus_decl_fn *fn, void *arg);
/* Reload: the file's [device LABEL] has other keys now.  The device is
 * detached gracefully and decl (copied, borrowed as for attach) takes its
 * place once it is gone.  0, or -ENOENT/-ENOMEM with err. */
int vp_xsbus_replace(struct vp_xsbus *bus, const struct vp_devdecl *decl,
                     void (*release)(void *owner), void *owner, char *err, size_t errlen);
/* Undeclare the device sel names (its label, GUEST/ID with the guest as
 * configured, or DOMID/ID of one of its devices).  Graceful: a connected frontend is told Closing and the
 * device goes once it has closed; force: at once (requests in flight
 * still finish before the disk closes).  0 and *gone (true when nothing
 * of it is left), or -ENOENT with err. */
int vp_xsbus_detach(struct vp_xsbus *bus, const char *sel, bool force, bool *gone, char *err,
                    size_t errlen);

/* Call fn for every declared device in declaration order: each device
 * of a running guest, and once for a declaration whose guest is not
 * running. */
void vp_xsbus_foreach_device(struct vp_xsbus *bus, vp_xsbus_device_fn *fn, void *arg);

/* Close xenstore and free. */
void vp_xsbus_close(struct vp_xsbus *bus);

#endif
