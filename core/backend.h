/* SPDX-License-Identifier: MIT */
/*
 * The xenbus backend of one declared device of one guest (struct
 * vp_backend) and the xenbus state machine that drives it.  Private to the
 * xenstore bus: xsbus.c dispatches to it, provision.c creates backends,
 * and the bus's owner sees xsbus.h only.  See backend.c.
 */
#ifndef VP_BACKEND_H
#define VP_BACKEND_H

#include <event2/util.h>
#include <stdbool.h>
#include <stdint.h>
#include <vproxy/plugin.h>

#include "log.h"
#include "xs_node.h"
#include "xsbus.h"

struct vp_blk_totals;
struct vp_plugin_job;
struct vp_transport;
struct vp_vdev;

/* The xenbus backend of one declared device of one guest: its xenstore
 * nodes and state, its disk, and, once the frontend connected, its
 * transport (transport.h) and virtio device (vdev.h). */
struct vp_backend {
	struct vp_xsbus *bus;
	const struct vp_devdecl *decl;
	uint16_t dom;
	uint16_t devid;
	char be_path[VP_XS_PATH_LEN];
	char fe_path[VP_XS_PATH_LEN];
	char token[48];
	int be_state; /* the state we last wrote */
	bool watching;
	bool failed;         /* storage did not open: stays Closed */
	bool was_connected;  /* connected when shutdown began */
	bool destroying;     /* vp_vdev_destroy() pending, or its reap */
	bool reap_pending;   /* virtio device gone; vp_backend_reap_cb() finishes */
	bool remove_pending; /* free once the device is destroyed */
	bool close_pending;  /* write Closed once the device is destroyed */
	bool hv_wait;        /* connect once the hv layer has reached the guest */
	bool opening;        /* the disk is being opened (Initialising) */
	bool provisioning;   /* inside provision(): it handles the frontend */
	bool detaching;      /* detached: Closing, removed once the frontend closes */
	struct vp_plugin_job *open_job; /* the open in progress, if off the loop */
	struct vp_blk_totals *past;    /* statistics of earlier connections, or NULL */
	bool grant_mode;     /* the frontend connected in grant addr-mode */
	char dom_name[64];   /* the guest domain's name ("" if unknown) */
	char error[256];     /* the last fatal error, "" since it connected */
	void *disk;
	struct vproxy_disk_info info;
	struct vp_transport *t;
	struct vp_vdev *vdev;
	struct vp_ratelimit rl;
	struct vp_backend *next;
};

/* Log a message about dev ("dom D dev N: ..."), rate-limited per device. */
void vp_backend_log(struct vp_backend *dev, enum vproxy_log_level lvl, const char *fmt,
                    ...) __attribute__((format(printf, 3, 4)));
/* Write state as the backend's xenbus state (logs a failure). */
void vp_backend_set_state(struct vp_backend *dev, int state);
/* The backend of guest dom's device devid, or NULL (the bus owns it). */
struct vp_backend *vp_backend_find(struct vp_xsbus *bus, unsigned dom, unsigned devid);
/* Unlink and free dev, its nodes too if remove_nodes; its virtio device
 * and transport must be gone. */
void vp_backend_free(struct vp_backend *dev, bool remove_nodes);
/* Close the transport of a device whose virtio device is gone. */
void vp_backend_finish_disconnect(struct vp_backend *dev);
/* The bus's reap event (its arg the bus): finish, from the top of the
 * loop, the teardowns of devices whose virtio device is gone. */
void vp_backend_reap_cb(evutil_socket_t fd, short what, void *arg);
/* Stop serving the guest; never frees dev (vp_backend_reap_cb() goes on). */
void vp_backend_disconnect(struct vp_backend *dev);
/* Tear dev down and remove its nodes; frees dev now or once its in-flight
 * I/O has completed. */
void vp_backend_remove(struct vp_backend *dev);
/* Connect the Initialised frontend: transport, virtio device, Connected;
 * on failure the frontend is told why (Closing).  Never frees dev. */
void vp_backend_connect(struct vp_backend *dev);
/* The frontend's node changed: follow its state; may free dev. */
void vp_backend_frontend_changed(struct vp_backend *dev);
/* The hv layer's domain callback (its arg the bus): defers to the bus's
 * ready event. */
void vp_backend_hv_domain_cb(void *arg, uint16_t dom, int result);
/* The bus's ready event (its arg the bus): connect the devices that waited
 * for their guest to be reached. */
void vp_backend_ready_cb(evutil_socket_t fd, short what, void *arg);

#endif
