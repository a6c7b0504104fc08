/* SPDX-License-Identifier: MIT */
/*
 * The xenbus backend of one declared device of one guest (backend.h):
 * its state and errors in xenstore, connecting it (transport and virtio
 * device) when its frontend is Initialised, disconnecting and tearing it
 * down, and the xenbus state machine that drives these from the
 * frontend's state.  The lifecycle as a whole is described in xsbus.c;
 * provision.c creates backends.
 *
 * A connected device's transport registers its own event channel port and
 * poller with the loop: kicks never pass through here.
 */
#include <errno.h>
#include <event2/event.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xen/io/xenbus.h>
#include <xenstore.h>
#include <vproxy/proto.h>

#include "backend.h"
#include "blk.h"
#include "hv.h"
#include "log.h"
#include "loop.h"
#include "plugin_host.h"
#include "transport.h"
#include "vdev.h"
#include "xs_node.h"
#include "xsbus_internal.h"

static const char *state_name(int s)
{
	static const char *const names[] = {"Unknown",     "Initialising", "InitWait",
	                                    "Initialised", "Connected",    "Closing",
	                                    "Closed"};

	return s >= 0 && s <= 6 ? names[s] : "invalid";
}

void vp_backend_log(struct vp_backend *dev, enum vproxy_log_level lvl, const char *fmt,
                    ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	vp_log_dev(&dev->rl, lvl, dev->dom, dev->devid, "%s", msg);
}

void vp_backend_set_state(struct vp_backend *dev, int state)
{
	if (!vp_xs_printf_at(dev->bus->xs, XBT_NULL, dev->be_path, "state", "%d", state))
		vp_backend_log(dev, VPROXY_LOG_WARN, "cannot write backend state %s: %s",
		               state_name(state), strerror(errno));
	if (dev->be_state != state)
		vp_backend_log(dev, VPROXY_LOG_DEBUG, "backend %s -> %s",
		               state_name(dev->be_state), state_name(state));
	dev->be_state = state;
}

/* A fatal error for this device (as xenbus_dev_fatal): tell the
 * frontend why and move to Closing. */
static void fatal(struct vp_backend *dev, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));

static void fatal(struct vp_backend *dev, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	vp_backend_log(dev, VPROXY_LOG_ERROR, "%s", msg);
	snprintf(dev->error, sizeof(dev->error), "%.*s", (int)sizeof(dev->error) - 1, msg);
	vp_xs_printf_at(dev->bus->xs, XBT_NULL, dev->be_path, "error", "%s", msg);
	vp_backend_set_state(dev, XenbusStateClosing);
}

struct vp_backend *vp_backend_find(struct vp_xsbus *bus, unsigned dom, unsigned devid)
{
	for (struct vp_backend *d = bus->devices; d; d = d->next)
		if (d->dom == dom && d->devid == devid)
			return d;
	return NULL;
}

static void release_domain_if_idle(struct vp_xsbus *bus, unsigned dom);

/* Unlink and free dev; the virtio device and transport must be gone. */
void vp_backend_free(struct vp_backend *dev, bool remove_nodes)
{
	struct vp_xsbus *bus = dev->bus;
	unsigned dom = dev->dom;

	if (dev->watching)
		xs_unwatch(bus->xs, dev->fe_path, dev->token);
	/* Still opening: the plugin host closes the disk once it is open. */
	if (dev->opening)
		vp_plugin_open_abandon(dev->open_job);
	if (dev->disk) {
		unsigned hung = vp_blk_disk_release(dev->decl->plugin, dev->disk);

		if (hung)
			vp_backend_log(dev, VPROXY_LOG_WARN,
			               "[device %s]: disk abandoned: its plugin never "
			               "finished %u request(s); closed if it ever does",
			               dev->decl->label, hung);
	}
	if (remove_nodes) {
		char parent[VP_XS_PATH_LEN * 2];

		xs_rm(bus->xs, XBT_NULL, dev->be_path);
		xs_rm(bus->xs, XBT_NULL, dev->fe_path);
		snprintf(parent, sizeof(parent), "%s/%u", bus->be_root, dom);
		vp_xs_rm_if_empty(bus->xs, parent);
	}
	for (struct vp_backend **pp = &bus->devices; *pp; pp = &(*pp)->next) {
		if (*pp == dev) {
			*pp = dev->next;
			break;
		}
	}
	bus->ndev[dom]--;
	vp_xsbus_decl_released(bus, dev->decl);
	free(dev->past);
	free(dev);
	release_domain_if_idle(bus, dom);
}

/* Once no device of dom talks to it any more, let the hypervisor layer
 * drop what it holds for the guest: a guest that comes back (a rebooted
 * stub, a new sim guest process) is then contacted afresh. */
static void release_domain_if_idle(struct vp_xsbus *bus, unsigned dom)
{
	struct vp_hv *hv = bus->hv;

	for (struct vp_backend *d = bus->devices; d; d = d->next)
		if (d->dom == dom && (d->t || d->destroying))
			return;
	hv->ops->forget_domain(hv, (uint16_t)dom);
}

/* A frontend starting over after Closed: offer the device again. */
static void reoffer(struct vp_backend *dev)
{
	if (dev->be_state == XenbusStateClosed && !dev->failed && !dev->opening &&
	    !dev->t && !dev->destroying && !dev->bus->shutting_down) {
		vp_xs_rm_at(dev->bus->xs, dev->be_path, "error");
		vp_backend_set_state(dev, XenbusStateInitWait);
	}
}

/* Close the transport of a device whose virtio device is gone. */
void vp_backend_finish_disconnect(struct vp_backend *dev)
{
	dev->reap_pending = false;
	vp_transport_close(dev->t);
	dev->t = NULL;
	dev->destroying = false;
}

/* vp_vdev_destroy()'s done callback.  It may run inside a plugin's
 * completion callback, deep in that plugin's own dispatch loop: closing
 * the disk (or freeing anything else) there would pull the plugin's state
 * from under that loop.  So only mark the device here; vp_backend_reap_cb() finishes
 * the teardown from the top of the event loop. */
static void vdev_destroyed(void *arg)
{
	struct vp_backend *dev = arg;

	dev->reap_pending = true;
	event_active(dev->bus->reap_ev, EV_TIMEOUT, 0);
}

void vp_backend_reap_cb(evutil_socket_t fd, short what, void *arg)
{
	struct vp_xsbus *bus = arg;
	struct vp_backend *dev, *next;

	(void)fd;
	(void)what;
	if (bus->finished)
		return;
	for (dev = bus->devices; dev; dev = next) {
		next = dev->next;
		if (!dev->reap_pending)
			continue;
		vp_backend_finish_disconnect(dev);
		if (dev->remove_pending) {
			vp_backend_free(dev, true); /* leaves the rest of the list be */
			continue;
		}
		/* The frontend may take its buffers back only now: every
		 * request that used them has finished. */
		if (dev->close_pending) {
			unsigned long long st;

			dev->close_pending = false;
			vp_backend_set_state(dev, XenbusStateClosed);
			vp_backend_log(dev, VPROXY_LOG_INFO,
			               "disconnected (frontend closed)");
			/* It may have started over while we waited. */
			if (vp_xs_read_ull(bus->xs, dev->fe_path, "state", &st) == 0 &&
			    st <= XenbusStateInitWait)
				reoffer(dev);
		}
		release_domain_if_idle(bus, dev->dom);
	}
	/* Only after the walk: finishing the bus frees every device. */
	vp_xsbus_check_shutdown(bus);
}

/* Stop serving the guest.  Never frees dev: the rest of the teardown
 * happens in vp_backend_reap_cb(), so callers walking the device list stay safe. */
void vp_backend_disconnect(struct vp_backend *dev)
{
	struct vp_vdev *vdev = dev->vdev;

	if (!dev->t || dev->destroying)
		return;
	vp_transport_detach(dev->t);
	dev->vdev = NULL;
	dev->destroying = true;
	if (vdev)
		vp_vdev_destroy(vdev, vdev_destroyed, dev);
	else
		vdev_destroyed(dev);
}

/* Tear the device down and remove its nodes; frees dev (now or once its
 * in-flight I/O has completed). */
void vp_backend_remove(struct vp_backend *dev)
{
	dev->remove_pending = true;
	if (dev->t)
		vp_backend_disconnect(dev);
	else if (!dev->destroying)
		vp_backend_free(dev, true);
}

static void dev_raise_irq(void *opaque, uint32_t bits)
{
	struct vp_backend *dev = opaque;

	if (dev->t)
		vp_transport_raise_irq(dev->t, bits);
}

static void dev_transport_broken(void *opaque, const char *why)
{
	struct vp_backend *dev = opaque;

	/* The ring cannot be trusted any more: stop and tell the guest. */
	fatal(dev, "malformed ring: %s", why);
}

void vp_backend_connect(struct vp_backend *dev)
{
	struct vp_xsbus *bus = dev->bus;
	const struct vp_xsbus_params *opts = &bus->p;
	unsigned long long ring_ref, port, version = VPROXY_PROTO_VERSION, persistent = 0;
	struct vp_transport_params tp = {0};
	struct vp_blk_params bp = {0};
	struct vp_vdev_host host = {0};
	char err[256], *mode;
	int rc;

	rc = vp_xs_read_ull(bus->xs, dev->fe_path, "ring-ref", &ring_ref);
	if (rc) {
		fatal(dev, "frontend ring-ref %s", vp_xs_read_error(rc));
		return;
	}
	rc = vp_xs_read_ull(bus->xs, dev->fe_path, "event-channel", &port);
	if (rc || port > UINT32_MAX) {
		fatal(dev, "frontend event-channel %s",
		      rc ? vp_xs_read_error(rc) : "invalid");
		return;
	}
	rc = vp_xs_read_ull(bus->xs, dev->fe_path, "protocol-version", &version);
	if (rc && rc != -ENOENT && rc != -EINVAL) {
		fatal(dev, "frontend protocol-version %s", vp_xs_read_error(rc));
		return;
	}
	if (rc == -EINVAL || version != VPROXY_PROTO_VERSION) {
		fatal(dev, "frontend protocol-version not supported (want %u)",
		      VPROXY_PROTO_VERSION);
		return;
	}
	mode = vp_xs_read_at(bus->xs, dev->fe_path, "addr-mode");
	if (!mode && errno != ENOENT) {
		fatal(dev, "frontend addr-mode %s",
		      vp_xs_read_error(-(errno ? errno : EIO)));
		return;
	}
	tp.mode = VP_ADDR_GFN;
	if (mode && strcmp(mode, "grant") == 0) {
		tp.mode = VP_ADDR_GRANT;
	} else if (mode && strcmp(mode, "gfn") != 0) {
		fatal(dev, "frontend addr-mode '%.32s' unknown (gfn or grant)", mode);
		free(mode);
		return;
	}
	free(mode);

	tp.dom = dev->dom;
	tp.devid = dev->devid;
	tp.ring_ref = ring_ref;
	tp.remote_port = (uint32_t)port;
	/* On Xen, gfn mode maps exactly each buffer's frames, cached nowhere:
	 * a PV guest's frames are machine frames, and keeping a 2 MiB chunk
	 * around a buffer mapped holds frames the guest never offered, which
	 * Xen then refuses to let it turn into page tables (the guest dies). */
	tp.gmem_cache_bytes = tp.mode == VP_ADDR_GFN && strcmp(opts->hypervisor, "xen") == 0
	                              ? 0
	                              : opts->gmem_cache_bytes;
	tp.broken = dev_transport_broken;
	tp.opaque = dev;
	dev->t = vp_transport_open(opts->loop, bus->hv, &tp, err, sizeof(err));
	if (!dev->t) {
		fatal(dev, "cannot connect: %s", err);
		return;
	}
	/* A frontend that keeps its grants for the connection's life lets us
	 * keep their mappings too (within the same bound as gfn mode). */
	if (tp.mode == VP_ADDR_GRANT &&
	    vp_xs_read_ull(bus->xs, dev->fe_path, "feature-persistent",
	                   &persistent) == 0 &&
	    persistent == 1 &&
	    vp_gmem_set_grant_cache(vp_transport_gmem(dev->t),
	                            opts->gmem_cache_bytes >> VP_PAGE_SHIFT) < 0)
		persistent = 0;

	bp.num_queues = dev->decl->queues;
	bp.queue_size_max = dev->decl->queue_size;
	bp.read_only =
	        dev->decl->read_only || (dev->info.flags & VPROXY_DISK_READONLY) != 0;
	bp.request_timeout_ms = dev->decl->request_timeout_ms;
	bp.base = vp_loop_base(opts->loop);
	if (dev->decl->serial)
		snprintf(bp.serial, sizeof(bp.serial), "%s", dev->decl->serial);
	else
		snprintf(bp.serial, sizeof(bp.serial), "vproxy-%u-%u", dev->dom,
		         dev->devid);
	host.dom = dev->dom;
	host.devid = dev->devid;
	host.gm = vp_transport_gmem(dev->t);
	host.raise_irq = dev_raise_irq;
	/* No broken hook: the device logs NEEDS_RESET itself, and the guest
	 * recovers by resetting it through the ring. */
	host.opaque = dev;
	/* The device's counters go to past when it is freed, so the
	 * backend's statistics count on over the guest's connections. */
	if (!dev->past) {
		dev->past = malloc(sizeof(*dev->past));
		if (dev->past)
			vp_blk_totals_init(dev->past);
		else
			vp_backend_log(dev, VPROXY_LOG_WARN,
			               "out of memory: this connection's statistics are not kept");
	}
	bp.totals = dev->past;
	dev->vdev = vp_blk_create(&bp, dev->decl->plugin, dev->disk, &dev->info, &host);
	if (!dev->vdev) {
		vp_transport_close(dev->t);
		dev->t = NULL;
		fatal(dev, "cannot create the virtio device: out of memory");
		return;
	}
	vp_xs_rm_at(bus->xs, dev->be_path, "error"); /* harmless if absent */
	dev->grant_mode = tp.mode == VP_ADDR_GRANT;
	dev->error[0] = '\0';
	vp_backend_set_state(dev, XenbusStateConnected);
	vp_transport_attach(dev->t, dev->vdev);
	vp_backend_log(dev, VPROXY_LOG_INFO,
	               "connected: %s mode, ring-ref %llu, event channel %llu, %" PRIu64
	               " bytes%s%s",
	               tp.mode == VP_ADDR_GRANT ? "grant" : "gfn", ring_ref, port,
	               dev->info.capacity, bp.read_only ? ", read-only" : "",
	               persistent == 1 ? ", persistent grants" : "");
}

void vp_backend_frontend_changed(struct vp_backend *dev)
{
	struct vp_xsbus *bus = dev->bus;
	unsigned long long st;
	int rc;

	if (dev->remove_pending || bus->finished)
		return;
	rc = vp_xs_read_ull(bus->xs, dev->fe_path, "state", &st);
	if (rc == -ENOENT) {
		char *dir = vp_xs_read_at(bus->xs, dev->fe_path, "backend");

		if (dir) {
			/* Node still there, state not yet written. */
			free(dir);
			return;
		}
		if (errno != ENOENT) {
			vp_backend_log(dev, VPROXY_LOG_WARN,
			               "cannot read the frontend node: %s",
			               strerror(errno ? errno : EIO));
			return;
		}
		vp_backend_log(dev, VPROXY_LOG_INFO, "frontend node removed");
		vp_backend_remove(dev);
		vp_xsbus_check_shutdown(bus);
		return;
	}
	if (rc == -EINVAL) {
		vp_backend_log(dev, VPROXY_LOG_WARN, "frontend state is not a number");
		return;
	}
	if (rc) {
		vp_backend_log(dev, VPROXY_LOG_WARN, "cannot read the frontend state: %s",
		               strerror(-rc));
		return;
	}
	if (dev->detaching && st != XenbusStateInitialised && st != XenbusStateConnected) {
		/* Detached, and the frontend has let go (or never held it). */
		vp_backend_log(dev, VPROXY_LOG_INFO, "detached (frontend %s)",
		               state_name((int)st));
		vp_backend_remove(dev);
		vp_xsbus_check_shutdown(bus);
		return;
	}
	switch (st) {
	case XenbusStateInitialising:
	case XenbusStateInitWait:
		reoffer(dev);
		break;
	case XenbusStateInitialised:
	case XenbusStateConnected:
		if (dev->be_state != XenbusStateInitWait || bus->shutting_down ||
		    dev->detaching)
			break;
		/* The hv layer may still be reaching the guest (sim): it calls
		 * vp_backend_hv_domain_cb() once it knows, and vp_backend_ready_cb()
		 * connects. */
		dev->hv_wait = vp_hv_domain_ready(bus->hv, dev->dom) == -EINPROGRESS;
		if (!dev->hv_wait)
			vp_backend_connect(dev);
		break;
	case XenbusStateClosing:
	case XenbusStateClosed:
		if (dev->be_state == XenbusStateClosed || dev->close_pending)
			break;
		if (dev->t || dev->destroying) {
			/* Closed once requests in flight have finished. */
			dev->close_pending = true;
			vp_backend_disconnect(dev);
		} else {
			vp_backend_set_state(dev, XenbusStateClosed);
			vp_backend_log(dev, VPROXY_LOG_INFO, "disconnected (frontend %s)",
			               state_name((int)st));
		}
		break;
	default:
		vp_backend_log(dev, VPROXY_LOG_WARN, "frontend state %llu is not valid",
		               st);
		break;
	}
	vp_xsbus_check_shutdown(bus);
}

/* The hv layer settled a domain.  It may call this from inside its own
 * calls, anywhere in a walk of ours: only defer to vp_backend_ready_cb(). */
void vp_backend_hv_domain_cb(void *arg, uint16_t dom, int result)
{
	struct vp_xsbus *bus = arg;

	(void)dom;
	(void)result; /* vp_backend_ready_cb() asks again: the answer may have changed */
	event_active(bus->ready_ev, EV_TIMEOUT, 0);
}

/* Connect the devices that waited for their guest to be reached (a
 * refused guest too: vp_backend_connect() then fails and says why). */
void vp_backend_ready_cb(evutil_socket_t fd, short what, void *arg)
{
	struct vp_xsbus *bus = arg;
	struct vp_hv *hv = bus->hv;
	unsigned long long st;

	(void)fd;
	(void)what;
	if (bus->finished)
		return;
	/* vp_backend_connect() frees no device: the walk stays valid. */
	for (struct vp_backend *dev = bus->devices; dev; dev = dev->next) {
		if (!dev->hv_wait || vp_hv_domain_ready(hv, dev->dom) == -EINPROGRESS)
			continue;
		dev->hv_wait = false;
		if (dev->be_state == XenbusStateInitWait && !bus->shutting_down &&
		    !dev->remove_pending &&
		    vp_xs_read_ull(bus->xs, dev->fe_path, "state", &st) == 0 &&
		    (st == XenbusStateInitialised || st == XenbusStateConnected))
			vp_backend_connect(dev);
	}
	/* Only after the walk: finishing the bus frees every device. */
	vp_xsbus_check_shutdown(bus);
}
