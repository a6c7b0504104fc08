/* SPDX-License-Identifier: MIT */
/*
 * The xenstore bus's own state, shared by the files that serve it:
 * xsbus.c (open, watches, shutdown), backend.c (each device) and
 * provision.c (creating devices).  The bus's owner sees xsbus.h only.
 */
#ifndef VP_XSBUS_INTERNAL_H
#define VP_XSBUS_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <vproxy/proto.h>

#include "xsbus.h"

struct event;
struct vp_backend;
struct vp_loop_fd;
struct xs_handle;

/* One declared device: the configuration's at start, more attached at
 * runtime.  A backend's decl points at decl here (the first member), so
 * an entry lives until its last backend is freed. */
struct vp_decl_entry {
	struct vp_devdecl decl;
	void (*release)(void *owner); /* when the entry goes; may be NULL */
	void *owner;
	bool removing; /* detached: no new backends; freed with its last */
	bool from_file; /* declared by the configuration file (reload's to manage) */
	bool held;      /* detach_entry() is on the stack: not freed under it */
	/* Reload changed it: takes its place once it is gone. */
	struct vp_decl_entry *successor;
	struct vp_decl_entry *next;
};

struct vp_xsbus {
	struct vp_xsbus_params p; /* the owner's, borrowed */
	struct vp_decl_entry *decls; /* in declaration (then attach) order */
	struct vp_hv *hv;         /* == p.hv */
	struct xs_handle *xs;
	struct vp_loop_fd *xs_fd;
	struct event *xs_more; /* continue after a full turn of watch events */
	struct event *reap_ev; /* finish teardowns from the top of the loop */
	struct event *ready_ev; /* connect devices whose guest became reachable */
	unsigned self;
	char be_root[64];
	struct vp_backend *devices;
	/* Devices per guest: a scan skips guests already served without a
	 * round trip, so N guests coming up cost O(N), not O(N^2). */
	uint16_t ndev[VPROXY_DOMID_MAX + 1];
	/* Guests whose devices were provisioned: not again while the domain
	 * lives, so a device whose frontend went away (a detach) stays
	 * detached instead of coming back at the next unrelated scan. */
	uint8_t provisioned[(VPROXY_DOMID_MAX + 8) / 8];
	bool shutting_down;
	bool finished;
};

/* Once shutdown has begun: finish the bus (vp_xsbus_finish()) when no
 * device is connected or tearing down and every frontend that was
 * connected has closed.  May free every device. */
void vp_xsbus_check_shutdown(struct vp_xsbus *bus);
/* A backend of e was freed: free e too if it is detached and that was its
 * last backend. */
void vp_xsbus_decl_released(struct vp_xsbus *bus, const struct vp_devdecl *decl);

#endif
