/* SPDX-License-Identifier: MIT */
/*
 * Hypervisor layer: event channels and guest memory, behind one ops table
 * (like QEMU's xen_backend_ops).  Two implementations: "xen" (libxenevtchn,
 * libxenforeignmemory, libxengnttab) and "sim" (no hypervisor; see
 * proxy-stub/linux/simguest.h for the guest end of the rendezvous).
 *
 * One struct vp_hv per server.  Event channels follow libxenevtchn's model:
 * one fd for all bound ports; when it is readable call pending() until it
 * returns -1, and unmask() each port once its events are handled.
 *
 * Domains may need contacting before their memory can be mapped (the sim
 * layer talks to each guest over a socket, and never waits for it): ask
 * vp_hv_domain_ready() first; on -EINPROGRESS, wait for the domain
 * callback (vp_hv_set_domain_cb) and ask again.
 */
#ifndef VP_HV_H
#define VP_HV_H

#include <stddef.h>
#include <stdint.h>

#define VP_PAGE_SHIFT 12
#define VP_PAGE_SIZE 4096u

struct vp_hv;

struct vp_hv_ops {
	const char *name;
	/* --- event channels --- */
	/* The fd to watch for readability (one for all ports). */
	int (*evtchn_fd)(struct vp_hv *hv);
	/* Bind to port remote_port of domain dom (which the guest allocated
	 * unbound for us). Returns the local port >= 0 or a negative errno. */
	int (*evtchn_bind)(struct vp_hv *hv, uint16_t dom, uint32_t remote_port);
	/* Signal the remote end of a bound local port. 0 or -errno. */
	int (*evtchn_notify)(struct vp_hv *hv, int port);
	/* Next local port with an event, or -1 when none is pending. */
	int (*evtchn_pending)(struct vp_hv *hv);
	/* Re-enable delivery on a port returned by pending(). 0 or -errno. */
	int (*evtchn_unmask)(struct vp_hv *hv, int port);
	/* Unbind a local port. 0 or -errno. */
	int (*evtchn_unbind)(struct vp_hv *hv, int port);

	/* --- guest memory --- */
	/* Map n guest frames of dom, contiguous in our address space.
	 * writable: map read-write, else read-only. NULL + errno on failure
	 * (bad gfn, domain gone). Unmap with unmap_gfns(). */
	void *(*map_gfns)(struct vp_hv *hv, uint16_t dom, const uint64_t *gfns,
			  unsigned n, int writable);
	int (*unmap_gfns)(struct vp_hv *hv, void *addr, unsigned n);
	/* Map n grant refs of dom, contiguous. NULL + errno on failure
	 * (bad ref, not granted to us, read-only grant mapped writable). */
	void *(*map_grants)(struct vp_hv *hv, uint16_t dom, const uint32_t *refs,
			    unsigned n, int writable);
	int (*unmap_grants)(struct vp_hv *hv, void *addr, unsigned n);

	/* --- domains --- */
	/* Optional (NULL: every domain is always ready).  0 when dom's memory
	 * can be mapped now; -EINPROGRESS when the layer is contacting the
	 * domain (the domain callback runs once that is settled); another
	 * -errno when it cannot be reached or was refused.  Never blocks. */
	int (*domain_ready)(struct vp_hv *hv, uint16_t dom);
	/* Drop everything cached about dom (called when it is released). */
	void (*forget_domain)(struct vp_hv *hv, uint16_t dom);
	/* Free the handle; every port must already be unbound. */
	void (*close)(struct vp_hv *hv);
};

/* Called once a domain that domain_ready() answered -EINPROGRESS for is
 * settled (result 0 or -errno), or given up (-ECANCELED: forgotten).  It
 * runs from inside hv calls (evtchn_pending, forget_domain), possibly in
 * the middle of a caller's walk: it must only record the news and defer
 * the work (e.g. make an event active), never call the hv layer. */
typedef void vp_hv_domain_cb(void *arg, uint16_t dom, int result);

struct vp_hv {
	const struct vp_hv_ops *ops;
	vp_hv_domain_cb *domain_cb; /* set by vp_hv_set_domain_cb(), or NULL */
	void *domain_cb_arg;
	/* implementation data follows in the implementation's struct */
};

/* Open the "sim" layer: guests rendezvous via <run_dir>/dom<D>.sock.
 * Returns NULL and logs on failure. Caller frees with hv->ops->close. */
struct vp_hv *vp_hv_sim_open(const char *run_dir);
/* Open the "xen" layer (needs the /dev/xen devices). NULL and logs on failure. */
struct vp_hv *vp_hv_xen_open(void);
/* Tell the layer the server's own domid (the sim layer checks grant
 * entries against it; Xen knows it already). */
void vp_hv_set_self_domid(struct vp_hv *hv, uint16_t domid);
/* The sim layer's part of vp_hv_set_self_domid (default 0): guests see it
 * in HELLO and grants must name it.  Call before the first guest is
 * contacted.  0, -EINVAL (not a sim handle) or -EBUSY (too late). */
int vp_hv_sim_set_self_domid(struct vp_hv *hv, uint16_t domid);
/* Register the domain callback (one per handle; NULL to remove). */
void vp_hv_set_domain_cb(struct vp_hv *hv, vp_hv_domain_cb *cb, void *arg);
/* hv->ops->domain_ready, or 0 when the layer has none. */
int vp_hv_domain_ready(struct vp_hv *hv, uint16_t dom);
/* Open by name ("sim" or "xen"). */
struct vp_hv *vp_hv_open(const char *name, const char *run_dir);

#endif
