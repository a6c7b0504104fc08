/*
 * The xenstore lifecycle of every device (Xen's PV driver convention,
 * xen/io/xenbus.h):
 *
 *   provision: when a guest named by a [device] declaration is introduced,
 *     create the backend node /local/domain/<self>/backend/vproxy/<fe>/<devid>
 *     and the frontend node /local/domain/<fe>/device/vproxy/<devid>,
 *     pointing at each other, backend state Initialising, and open its
 *     storage (off the loop thread where the plugin allows: a slow open
 *     stalls no other guest); once open, backend state InitWait (Closed +
 *     "error" if the storage failed).  A frontend that is ready earlier
 *     waits; a device removed meanwhile leaves its disk to the plugin host,
 *     which closes it once open.
 *   frontend Initialised: read ring-ref, event-channel and addr-mode, map
 *     the shared page, bind the port, create the virtio device: Connected.
 *   frontend Closing/Closed: stop the device, unmap, unbind: Closed.
 *     frontend Initialising again: InitWait again (reconnect).
 *   frontend node removed, backend node removed, or @releaseDomain for the
 *     guest: stop the device and remove its nodes.
 *   shutdown: every backend Closing, wait for the frontends, then Closed
 *     and the nodes removed; then the owner's done callback (xsbus.h).
 *
 * A connected device's transport registers its own event channel port and
 * poller with the loop: kicks never pass through here.
 */
#include <errno.h>
#include <event2/event.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xen/io/xenbus.h>
#include <xenstore.h>
#include <vproxy/proto.h>

#include "blk.h"
#include "hv.h"
#include "log.h"
#include "loop.h"
#include "plugin_host.h"
#include "transport.h"
#include "vdev.h"
#include "xsbus.h"

#define PATH_LEN 128

/* The xenbus backend of one declared device of one guest: its xenstore
 * nodes and state, its disk, and, once the frontend connected, its
 * transport (transport.h) and virtio device (vdev.h). */
struct vp_backend {
	struct vp_xsbus *bus;
	const struct vp_devdecl *decl;
	uint16_t dom;
	uint16_t devid;
	char be_path[PATH_LEN];
	char fe_path[PATH_LEN];
	char token[48];
	int be_state; /* the state we last wrote */
	bool watching;
	bool failed;         /* storage did not open: stays Closed */
	bool was_connected;  /* connected when shutdown began */
	bool destroying;     /* vp_vdev_destroy() pending, or its reap */
	bool reap_pending;   /* virtio device gone; reap_cb() finishes */
	bool remove_pending; /* free once the device is destroyed */
	bool close_pending;  /* write Closed once the device is destroyed */
	bool hv_wait;        /* connect once the hv layer has reached the guest */
	bool opening;        /* the disk is being opened (Initialising) */
	bool provisioning;   /* inside provision(): it handles the frontend */
	struct vp_plugin_job *open_job; /* the open in progress, if off the loop */
	void *disk;
	struct vproxy_disk_info info;
	struct vp_transport *t;
	struct vp_vdev *vdev;
	struct vp_ratelimit rl;
	struct vp_backend *next;
};

struct vp_xsbus {
	struct vp_xsbus_params p; /* the owner's, borrowed */
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

static const char *state_name(int s)
{
	static const char *const names[] = {"Unknown",     "Initialising", "InitWait",
	                                    "Initialised", "Connected",    "Closing",
	                                    "Closed"};

	return s >= 0 && s <= 6 ? names[s] : "invalid";
}

static void dev_log(struct vp_backend *dev, enum vproxy_log_level lvl, const char *fmt,
                    ...) __attribute__((format(printf, 3, 4)));

static void dev_log(struct vp_backend *dev, enum vproxy_log_level lvl, const char *fmt,
                    ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	vp_log_dev(&dev->rl, lvl, dev->dom, dev->devid, "%s", msg);
}

static bool xs_printf_at(struct vp_xsbus *bus, xs_transaction_t tx, const char *dir,
                         const char *key, const char *fmt, ...)
        __attribute__((format(printf, 5, 6)));

static bool xs_printf_at(struct vp_xsbus *bus, xs_transaction_t tx, const char *dir,
                         const char *key, const char *fmt, ...)
{
	char path[PATH_LEN * 2], val[256];
	va_list ap;
	int n;

	snprintf(path, sizeof(path), "%s/%s", dir, key);
	va_start(ap, fmt);
	n = vsnprintf(val, sizeof(val), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(val))
		return false;
	return xs_write(bus->xs, tx, path, val, (unsigned)n);
}

/* Read dir/key; returns a malloc'ed string or NULL (errno set). */
static char *xs_read_at(struct vp_xsbus *bus, const char *dir, const char *key)
{
	char path[PATH_LEN * 2];
	unsigned len;

	snprintf(path, sizeof(path), "%s/%s", dir, key);
	return xs_read(bus->xs, XBT_NULL, path, &len);
}

/* Remove dir/key (no error if it is absent). */
static void xs_rm_at(struct vp_xsbus *bus, const char *dir, const char *key)
{
	char path[PATH_LEN * 2];

	snprintf(path, sizeof(path), "%s/%s", dir, key);
	xs_rm(bus->xs, XBT_NULL, path);
}

/* Read dir/key as an unsigned decimal number, as docs/PROTOCOL.md says:
 * digits only (no sign, space, "0x" or octal), no superfluous leading
 * zero, within 64 bits.  0, -ENOENT or -EINVAL. */
static int xs_read_ull(struct vp_xsbus *bus, const char *dir, const char *key,
                       unsigned long long *out)
{
	char *s = xs_read_at(bus, dir, key);
	unsigned long long v = 0;
	int rc = 0;

	/* -ENOENT only when the node is absent: a failed read (a lost
	 * connection, no memory) is not a frontend that went away. */
	if (!s)
		return errno == ENOENT ? -ENOENT : -(errno ? errno : EIO);
	if (s[0] == '\0' || (s[0] == '0' && s[1] != '\0'))
		rc = -EINVAL;
	for (const char *p = s; !rc && *p; p++) {
		unsigned d = (unsigned)(*p - '0');

		if (d > 9 || v > (ULLONG_MAX - d) / 10)
			rc = -EINVAL;
		else
			v = v * 10 + d;
	}
	if (!rc)
		*out = v;
	free(s);
	return rc;
}

/* How a failed read of a frontend key reads in a message. */
static const char *read_error(int rc)
{
	static char buf[80];

	if (rc == -ENOENT)
		return "missing";
	if (rc == -EINVAL)
		return "invalid";
	snprintf(buf, sizeof(buf), "unreadable: %s", strerror(-rc));
	return buf;
}

static void set_state(struct vp_backend *dev, int state)
{
	if (!xs_printf_at(dev->bus, XBT_NULL, dev->be_path, "state", "%d", state))
		dev_log(dev, VPROXY_LOG_WARN, "cannot write backend state %s: %s",
		        state_name(state), strerror(errno));
	if (dev->be_state != state)
		dev_log(dev, VPROXY_LOG_DEBUG, "backend %s -> %s",
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
	dev_log(dev, VPROXY_LOG_ERROR, "%s", msg);
	xs_printf_at(dev->bus, XBT_NULL, dev->be_path, "error", "%s", msg);
	set_state(dev, XenbusStateClosing);
}

static struct vp_backend *find_device(struct vp_xsbus *bus, unsigned dom, unsigned devid)
{
	for (struct vp_backend *d = bus->devices; d; d = d->next)
		if (d->dom == dom && d->devid == devid)
			return d;
	return NULL;
}

static void check_shutdown(struct vp_xsbus *bus);
static void frontend_changed(struct vp_backend *dev);
static void release_domain_if_idle(struct vp_xsbus *bus, unsigned dom);

/* Remove a directory if it has no children left. */
static void rm_if_empty(struct vp_xsbus *bus, const char *path)
{
	unsigned n = 0;
	char **ents = xs_directory(bus->xs, XBT_NULL, path, &n);

	if (ents && n == 0)
		xs_rm(bus->xs, XBT_NULL, path);
	free(ents);
}

/* Unlink and free dev; the virtio device and transport must be gone. */
static void free_device(struct vp_backend *dev, bool remove_nodes)
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
			dev_log(dev, VPROXY_LOG_WARN,
			        "[device %s]: disk abandoned: its plugin never finished %u "
			        "request(s); closed if it ever does",
			        dev->decl->label, hung);
	}
	if (remove_nodes) {
		char parent[PATH_LEN * 2];

		xs_rm(bus->xs, XBT_NULL, dev->be_path);
		xs_rm(bus->xs, XBT_NULL, dev->fe_path);
		snprintf(parent, sizeof(parent), "%s/%u", bus->be_root, dom);
		rm_if_empty(bus, parent);
	}
	for (struct vp_backend **pp = &bus->devices; *pp; pp = &(*pp)->next) {
		if (*pp == dev) {
			*pp = dev->next;
			break;
		}
	}
	bus->ndev[dom]--;
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
		xs_rm_at(dev->bus, dev->be_path, "error");
		set_state(dev, XenbusStateInitWait);
	}
}

/* Close the transport of a device whose virtio device is gone. */
static void finish_disconnect(struct vp_backend *dev)
{
	dev->reap_pending = false;
	vp_transport_close(dev->t);
	dev->t = NULL;
	dev->destroying = false;
}

/* vp_vdev_destroy()'s done callback.  It may run inside a plugin's
 * completion callback, deep in that plugin's own dispatch loop: closing
 * the disk (or freeing anything else) there would pull the plugin's state
 * from under that loop.  So only mark the device here; reap_cb() finishes
 * the teardown from the top of the event loop. */
static void vdev_destroyed(void *arg)
{
	struct vp_backend *dev = arg;

	dev->reap_pending = true;
	event_active(dev->bus->reap_ev, EV_TIMEOUT, 0);
}

static void reap_cb(evutil_socket_t fd, short what, void *arg)
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
		finish_disconnect(dev);
		if (dev->remove_pending) {
			free_device(dev, true); /* leaves the rest of the list be */
			continue;
		}
		/* The frontend may take its buffers back only now: every
		 * request that used them has finished. */
		if (dev->close_pending) {
			unsigned long long st;

			dev->close_pending = false;
			set_state(dev, XenbusStateClosed);
			dev_log(dev, VPROXY_LOG_INFO, "disconnected (frontend closed)");
			/* It may have started over while we waited. */
			if (xs_read_ull(bus, dev->fe_path, "state", &st) == 0 &&
			    st <= XenbusStateInitWait)
				reoffer(dev);
		}
		release_domain_if_idle(bus, dev->dom);
	}
	/* Only after the walk: finishing the bus frees every device. */
	check_shutdown(bus);
}

/* Stop serving the guest.  Never frees dev: the rest of the teardown
 * happens in reap_cb(), so callers walking the device list stay safe. */
static void disconnect(struct vp_backend *dev)
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
static void remove_device(struct vp_backend *dev)
{
	dev->remove_pending = true;
	if (dev->t)
		disconnect(dev);
	else if (!dev->destroying)
		free_device(dev, true);
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

static void connect_device(struct vp_backend *dev)
{
	struct vp_xsbus *bus = dev->bus;
	const struct vp_xsbus_params *opts = &bus->p;
	unsigned long long ring_ref, port, version = VPROXY_PROTO_VERSION, persistent = 0;
	struct vp_transport_params tp = {0};
	struct vp_blk_params bp = {0};
	struct vp_vdev_host host = {0};
	char err[256], *mode;
	int rc;

	rc = xs_read_ull(bus, dev->fe_path, "ring-ref", &ring_ref);
	if (rc) {
		fatal(dev, "frontend ring-ref %s", read_error(rc));
		return;
	}
	rc = xs_read_ull(bus, dev->fe_path, "event-channel", &port);
	if (rc || port > UINT32_MAX) {
		fatal(dev, "frontend event-channel %s", rc ? read_error(rc) : "invalid");
		return;
	}
	rc = xs_read_ull(bus, dev->fe_path, "protocol-version", &version);
	if (rc && rc != -ENOENT && rc != -EINVAL) {
		fatal(dev, "frontend protocol-version %s", read_error(rc));
		return;
	}
	if (rc == -EINVAL || version != VPROXY_PROTO_VERSION) {
		fatal(dev, "frontend protocol-version not supported (want %u)",
		      VPROXY_PROTO_VERSION);
		return;
	}
	mode = xs_read_at(bus, dev->fe_path, "addr-mode");
	if (!mode && errno != ENOENT) {
		fatal(dev, "frontend addr-mode %s", read_error(-(errno ? errno : EIO)));
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
	    xs_read_ull(bus, dev->fe_path, "feature-persistent", &persistent) == 0 &&
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
	dev->vdev = vp_blk_create(&bp, dev->decl->plugin, dev->disk, &dev->info, &host);
	if (!dev->vdev) {
		vp_transport_close(dev->t);
		dev->t = NULL;
		fatal(dev, "cannot create the virtio device: out of memory");
		return;
	}
	xs_rm_at(bus, dev->be_path, "error"); /* harmless if absent */
	set_state(dev, XenbusStateConnected);
	vp_transport_attach(dev->t, dev->vdev);
	dev_log(dev, VPROXY_LOG_INFO,
	        "connected: %s mode, ring-ref %llu, event channel %llu, %" PRIu64
	        " bytes%s%s",
	        tp.mode == VP_ADDR_GRANT ? "grant" : "gfn", ring_ref, port,
	        dev->info.capacity, bp.read_only ? ", read-only" : "",
	        persistent == 1 ? ", persistent grants" : "");
}

static void frontend_changed(struct vp_backend *dev)
{
	struct vp_xsbus *bus = dev->bus;
	unsigned long long st;
	int rc;

	if (dev->remove_pending || bus->finished)
		return;
	rc = xs_read_ull(bus, dev->fe_path, "state", &st);
	if (rc == -ENOENT) {
		char *dir = xs_read_at(bus, dev->fe_path, "backend");

		if (dir) {
			/* Node still there, state not yet written. */
			free(dir);
			return;
		}
		if (errno != ENOENT) {
			dev_log(dev, VPROXY_LOG_WARN, "cannot read the frontend node: %s",
			        strerror(errno ? errno : EIO));
			return;
		}
		dev_log(dev, VPROXY_LOG_INFO, "frontend node removed");
		remove_device(dev);
		check_shutdown(bus);
		return;
	}
	if (rc == -EINVAL) {
		dev_log(dev, VPROXY_LOG_WARN, "frontend state is not a number");
		return;
	}
	if (rc) {
		dev_log(dev, VPROXY_LOG_WARN, "cannot read the frontend state: %s",
		        strerror(-rc));
		return;
	}
	switch (st) {
	case XenbusStateInitialising:
	case XenbusStateInitWait:
		reoffer(dev);
		break;
	case XenbusStateInitialised:
	case XenbusStateConnected:
		if (dev->be_state != XenbusStateInitWait || bus->shutting_down)
			break;
		/* The hv layer may still be reaching the guest (sim): it calls
		 * hv_domain_cb() once it knows, and ready_cb() connects. */
		dev->hv_wait = vp_hv_domain_ready(bus->hv, dev->dom) == -EINPROGRESS;
		if (!dev->hv_wait)
			connect_device(dev);
		break;
	case XenbusStateClosing:
	case XenbusStateClosed:
		if (dev->be_state == XenbusStateClosed || dev->close_pending)
			break;
		if (dev->t || dev->destroying) {
			/* Closed once requests in flight have finished. */
			dev->close_pending = true;
			disconnect(dev);
		} else {
			set_state(dev, XenbusStateClosed);
			dev_log(dev, VPROXY_LOG_INFO, "disconnected (frontend %s)",
			        state_name((int)st));
		}
		break;
	default:
		dev_log(dev, VPROXY_LOG_WARN, "frontend state %llu is not valid", st);
		break;
	}
	check_shutdown(bus);
}

/* Write both nodes of a new device in one transaction. */
static bool write_nodes(struct vp_backend *dev)
{
	struct vp_xsbus *bus = dev->bus;
	struct xs_permissions be_perms[2] = {{bus->self, XS_PERM_NONE},
	                                     {dev->dom, XS_PERM_READ}};
	struct xs_permissions fe_perms[2] = {{dev->dom, XS_PERM_NONE},
	                                     {bus->self, XS_PERM_READ}};

	for (int attempt = 0; attempt < 8; attempt++) {
		xs_transaction_t tx = xs_transaction_start(bus->xs);
		char *fe_state;
		unsigned len;
		char path[PATH_LEN * 2];
		bool ok;

		if (tx == XBT_NULL)
			return false;
		ok = xs_mkdir(bus->xs, tx, dev->be_path) &&
		     xs_set_permissions(bus->xs, tx, dev->be_path, be_perms, 2) &&
		     xs_printf_at(bus, tx, dev->be_path, "frontend", "%s",
		                  dev->fe_path) &&
		     xs_printf_at(bus, tx, dev->be_path, "frontend-id", "%u", dev->dom) &&
		     xs_printf_at(bus, tx, dev->be_path, "state", "%d",
		                  XenbusStateInitialising) &&
		     xs_printf_at(bus, tx, dev->be_path, "online", "1") &&
		     xs_printf_at(bus, tx, dev->be_path, "type", "blk") &&
		     xs_printf_at(bus, tx, dev->be_path, "label", "%s",
		                  dev->decl->label) &&
		     xs_printf_at(bus, tx, dev->be_path, "plugin", "%s",
		                  dev->decl->plugin->name);
		snprintf(path, sizeof(path), "%s/state", dev->fe_path);
		fe_state = ok ? xs_read(bus->xs, tx, path, &len) : NULL;
		/* The frontend owns its state; only a new node gets one. */
		if (ok && !fe_state)
			ok = xs_mkdir(bus->xs, tx, dev->fe_path) &&
			     xs_set_permissions(bus->xs, tx, dev->fe_path, fe_perms, 2) &&
			     xs_printf_at(bus, tx, dev->fe_path, "state", "%d",
			                  XenbusStateInitialising);
		free(fe_state);
		ok = ok &&
		     xs_printf_at(bus, tx, dev->fe_path, "backend", "%s", dev->be_path) &&
		     xs_printf_at(bus, tx, dev->fe_path, "backend-id", "%u", bus->self);
		if (!ok) {
			int e = errno;

			xs_transaction_end(bus->xs, tx, true);
			errno = e;
			return false;
		}
		if (xs_transaction_end(bus->xs, tx, false))
			return true;
		if (errno != EAGAIN)
			return false;
	}
	errno = EAGAIN;
	return false;
}

/* vp_plugin_open_async()'s answer for dev, on the loop: offer the device
 * (InitWait), or say why not (Closed with "error"), and connect it if its
 * frontend came up while the disk opened. */
static void disk_opened(void *arg, int rc, const struct vproxy_disk_info *info, void *disk,
                        const char *why)
{
	struct vp_backend *dev = arg;
	struct vp_xsbus *bus = dev->bus;
	const struct vp_devdecl *decl = dev->decl;
	char err[256];

	dev->opening = false;
	dev->open_job = NULL;
	if (rc == 0 && (info->capacity % 512 || info->logical_block < 512 ||
	                (info->logical_block & (info->logical_block - 1)))) {
		snprintf(err, sizeof(err), "plugin %s reported an invalid geometry",
		         decl->plugin->name);
		vp_plugin_close_async(decl->plugin, disk);
		rc = -EINVAL;
	} else if (rc) {
		snprintf(err, sizeof(err), "%s", why && why[0] ? why : strerror(-rc));
	}
	if (rc) {
		dev->failed = true;
		dev_log(dev, VPROXY_LOG_ERROR, "[device %s]: cannot open storage: %s",
		        decl->label, err);
		xs_printf_at(bus, XBT_NULL, dev->be_path, "error", "%s", err);
		set_state(dev, XenbusStateClosed);
		return;
	}
	dev->disk = disk;
	dev->info = *info;
	xs_printf_at(bus, XBT_NULL, dev->be_path, "sectors", "%" PRIu64,
	             dev->info.capacity / 512);
	/* Shutdown (Closing) or a frontend that closed meanwhile (Closed)
	 * keep their state; reoffer() takes it from Closed. */
	if (dev->be_state == XenbusStateInitialising) {
		set_state(dev, XenbusStateInitWait);
		dev_log(dev, VPROXY_LOG_INFO,
		        "[device %s] ready on plugin %s, waiting for the frontend",
		        decl->label, decl->plugin->name);
	}
	/* Inside provision() the first watch event is still to come. */
	if (!dev->provisioning)
		frontend_changed(dev); /* may free dev */
}

/* Create a device of decl for guest dom: its nodes (Initialising) and the
 * frontend watch now, the disk off the loop where the plugin allows it
 * (disk_opened() goes on). */
static void provision(struct vp_xsbus *bus, const struct vp_devdecl *decl, unsigned dom)
{
	struct vp_backend *dev;
	struct vp_plugin_job *job;

	dev = calloc(1, sizeof(*dev));
	if (!dev) {
		vp_err("dom %u dev %u: out of memory", dom, decl->devid);
		return;
	}
	dev->bus = bus;
	dev->decl = decl;
	dev->dom = (uint16_t)dom;
	dev->devid = (uint16_t)decl->devid;
	dev->be_state = XenbusStateUnknown;
	snprintf(dev->be_path, sizeof(dev->be_path), "%s/%u/%u", bus->be_root, dom,
	         decl->devid);
	snprintf(dev->fe_path, sizeof(dev->fe_path), "/local/domain/%u/device/%s/%u", dom,
	         VPROXY_XS_TYPE, decl->devid);
	snprintf(dev->token, sizeof(dev->token), "fe/%u/%u", dom, decl->devid);

	dev->next = bus->devices;
	bus->devices = dev;
	bus->ndev[dom]++;
	if (!write_nodes(dev)) {
		dev_log(dev, VPROXY_LOG_ERROR, "cannot create xenstore nodes: %s",
		        strerror(errno));
		free_device(dev, true);
		return;
	}
	dev->be_state = XenbusStateInitialising;
	/* The watch fires once at once, which runs frontend_changed(). */
	dev->watching = xs_watch(bus->xs, dev->fe_path, dev->token);
	if (!dev->watching)
		dev_log(dev, VPROXY_LOG_ERROR, "cannot watch %s: %s", dev->fe_path,
		        strerror(errno));
	/* disk_opened() may run inside this call; it frees no device then. */
	dev->opening = true;
	dev->provisioning = true;
	job = vp_plugin_open_async(decl->plugin, dom, decl->devid, decl->label,
	                           decl->params, decl->read_only, disk_opened, dev);
	dev->provisioning = false;
	if (dev->opening)
		dev->open_job = job;
}

static bool decl_matches(const struct vp_devdecl *decl, unsigned dom, const char *name)
{
	if (decl->guest_domid >= 0)
		return (unsigned)decl->guest_domid == dom;
	return name && strcmp(name, decl->guest) == 0;
}

/* Provision the declared devices of every running guest that lacks them. */
static void scan_domains(struct vp_xsbus *bus)
{
	const struct vp_xsbus_params *opts = &bus->p;
	unsigned n = 0;
	char **doms;

	if (bus->shutting_down)
		return;
	doms = xs_directory(bus->xs, XBT_NULL, "/local/domain", &n);
	if (!doms)
		return;
	for (unsigned i = 0; i < n; i++) {
		char path[PATH_LEN], *end, *name;
		unsigned long dom;
		unsigned len;

		errno = 0;
		dom = strtoul(doms[i], &end, 10);
		if (errno || *end || dom == 0 || dom > VPROXY_DOMID_MAX || dom == bus->self)
			continue;
		if (bus->ndev[dom] || (bus->provisioned[dom / 8] & (1u << (dom % 8))))
			continue; /* provisioned when it was introduced */
		if (!xs_is_domain_introduced(bus->xs, (unsigned)dom))
			continue;
		snprintf(path, sizeof(path), "/local/domain/%lu/name", dom);
		name = xs_read(bus->xs, XBT_NULL, path, &len);
		for (size_t k = 0; k < opts->ndecls; k++) {
			const struct vp_devdecl *decl = &opts->decls[k];
			struct vp_backend *old;

			if (!decl_matches(decl, (unsigned)dom, name))
				continue;
			old = find_device(bus, (unsigned)dom, decl->devid);
			if (old) {
				if (old->decl != decl)
					vp_warn("dom %lu dev %u: [device %s] ignored, "
					        "[device %s] already serves it",
					        dom, decl->devid, decl->label,
					        old->decl->label);
				continue;
			}
			provision(bus, decl, (unsigned)dom);
			bus->provisioned[dom / 8] |= (uint8_t)(1u << (dom % 8));
		}
		free(name);
	}
	free(doms);
}

/* @releaseDomain: remove the devices of every guest that is gone. */
static void check_released(struct vp_xsbus *bus)
{
	/* Ask xenstored once per guest, not once per device. */
	uint8_t asked[(VPROXY_DOMID_MAX + 8) / 8] = {0}, alive[(VPROXY_DOMID_MAX + 8) / 8] = {0};
	struct vp_backend *dev, *next;

	for (dev = bus->devices; dev; dev = next) {
		unsigned d = dev->dom, byte = d / 8, bit = 1u << (d % 8);

		next = dev->next;
		if (dev->remove_pending)
			continue;
		if (!(asked[byte] & bit)) {
			asked[byte] |= (uint8_t)bit;
			if (xs_is_domain_introduced(bus->xs, d))
				alive[byte] |= (uint8_t)bit;
		}
		if (alive[byte] & bit)
			continue;
		dev_log(dev, VPROXY_LOG_INFO, "domain released: removing the device");
		/* Removal may free dev; neighbours stay valid. */
		remove_device(dev);
	}
	/* Forget the guests that are gone, so that a new domain with the same
	 * id is provisioned (asking only about those not asked above). */
	for (unsigned d = 1; d <= VPROXY_DOMID_MAX; d++) {
		unsigned byte = d / 8, bit = 1u << (d % 8);

		if (!(bus->provisioned[byte] & bit))
			continue;
		if (!(asked[byte] & bit)) {
			asked[byte] |= (uint8_t)bit;
			if (xs_is_domain_introduced(bus->xs, d))
				alive[byte] |= (uint8_t)bit;
		}
		if (!(alive[byte] & bit))
			bus->provisioned[byte] &= (uint8_t)~bit;
	}
	check_shutdown(bus);
}

/* Something under our backend tree changed: was a device's node removed? */
static void backend_tree_changed(struct vp_xsbus *bus, const char *path)
{
	struct vp_backend *dev, *next;
	size_t plen = strlen(path);

	for (dev = bus->devices; dev; dev = next) {
		char *st;

		next = dev->next;
		if (dev->remove_pending || strncmp(dev->be_path, path, plen) != 0 ||
		    (dev->be_path[plen] != '\0' && dev->be_path[plen] != '/'))
			continue;
		st = xs_read_at(bus, dev->be_path, "state");
		if (st) {
			free(st);
			continue;
		}
		dev_log(dev, VPROXY_LOG_INFO,
		        "backend node removed: removing the device");
		remove_device(dev);
	}
}

/* Watch events handled per wake-up.  Hundreds of guests coming up at once
 * queue thousands of events; handling them in bounded turns lets the event
 * channels of guests already connected be served in between. */
#define WATCH_EVENTS_PER_TURN 32u

static void xs_ready(void *opaque)
{
	struct vp_xsbus *bus = opaque;
	unsigned handled = 0;
	char **w;

	while (handled < WATCH_EVENTS_PER_TURN && (w = xs_check_watch(bus->xs)) != NULL) {
		handled++;
		const char *path = w[XS_WATCH_PATH], *token = w[XS_WATCH_TOKEN];
		unsigned dom, devid;

		if (bus->finished) {
			free(w);
			continue;
		}
		if (strcmp(token, "intro") == 0) {
			scan_domains(bus);
		} else if (strcmp(token, "release") == 0) {
			check_released(bus);
		} else if (strcmp(token, "betree") == 0) {
			backend_tree_changed(bus, path);
		} else if (sscanf(token, "fe/%u/%u", &dom, &devid) == 2) {
			struct vp_backend *dev = find_device(bus, dom, devid);

			if (dev && !dev->remove_pending)
				frontend_changed(dev);
		}
		free(w);
	}
	/* xs_check_watch() may leave the fd unreadable with events still
	 * queued: come back after the loop has polled the other fds. */
	if (handled == WATCH_EVENTS_PER_TURN) {
		static const struct timeval now = {0, 0};

		evtimer_add(bus->xs_more, &now);
	}
}

static void xs_more_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	xs_ready(arg);
}

/* The hv layer settled a domain.  It may call this from inside its own
 * calls, anywhere in a walk of ours: only defer to ready_cb(). */
static void hv_domain_cb(void *arg, uint16_t dom, int result)
{
	struct vp_xsbus *bus = arg;

	(void)dom;
	(void)result; /* ready_cb() asks again: the answer may have changed */
	event_active(bus->ready_ev, EV_TIMEOUT, 0);
}

/* Connect the devices that waited for their guest to be reached (a
 * refused guest too: connect_device() then fails and says why). */
static void ready_cb(evutil_socket_t fd, short what, void *arg)
{
	struct vp_xsbus *bus = arg;
	struct vp_hv *hv = bus->hv;
	unsigned long long st;

	(void)fd;
	(void)what;
	if (bus->finished)
		return;
	/* connect_device() frees no device: the walk stays valid. */
	for (struct vp_backend *dev = bus->devices; dev; dev = dev->next) {
		if (!dev->hv_wait || vp_hv_domain_ready(hv, dev->dom) == -EINPROGRESS)
			continue;
		dev->hv_wait = false;
		if (dev->be_state == XenbusStateInitWait && !bus->shutting_down &&
		    !dev->remove_pending &&
		    xs_read_ull(bus, dev->fe_path, "state", &st) == 0 &&
		    (st == XenbusStateInitialised || st == XenbusStateConnected))
			connect_device(dev);
	}
	/* Only after the walk: finishing the bus frees every device. */
	check_shutdown(bus);
}

struct vp_xsbus *vp_xsbus_open(const struct vp_xsbus_params *opts, char *err,
                               size_t errlen)
{
	struct event_base *base = vp_loop_base(opts->loop);
	struct vp_xsbus *bus;

	bus = calloc(1, sizeof(*bus));
	if (!bus) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	bus->p = *opts;
	bus->hv = opts->hv;
	bus->xs = xs_open(0);
	if (!bus->xs) {
		const char *p = getenv("XENSTORED_PATH");

		snprintf(err, errlen, "cannot connect to xenstored%s%s: %s",
		         p ? " at " : "", p ? p : "", strerror(errno));
		goto fail;
	}
	if (opts->backend_domid >= 0) {
		bus->self = (unsigned)opts->backend_domid;
	} else {
		unsigned len;
		char *s = xs_read(bus->xs, XBT_NULL, "domid", &len);

		bus->self = s ? (unsigned)strtoul(s, NULL, 10) : 0;
		if (!s)
			vp_info("xenstore has no \"domid\" for us; assuming domain 0");
		free(s);
	}
	vp_hv_set_self_domid(bus->hv, (uint16_t)bus->self);
	snprintf(bus->be_root, sizeof(bus->be_root), "/local/domain/%u/backend/%s",
	         bus->self, VPROXY_XS_TYPE);
	bus->xs_fd = vp_loop_fd_add(opts->loop, xs_fileno(bus->xs), xs_ready, bus);
	bus->xs_more = evtimer_new(base, xs_more_cb, bus);
	bus->reap_ev = event_new(base, -1, 0, reap_cb, bus);
	bus->ready_ev = event_new(base, -1, 0, ready_cb, bus);
	if (!bus->xs_fd || !bus->xs_more || !bus->reap_ev || !bus->ready_ev) {
		snprintf(err, errlen, "cannot watch the xenstore connection");
		goto fail;
	}
	vp_hv_set_domain_cb(bus->hv, hv_domain_cb, bus);
	if (!xs_watch(bus->xs, "@introduceDomain", "intro") ||
	    !xs_watch(bus->xs, "@releaseDomain", "release") ||
	    !xs_watch(bus->xs, bus->be_root, "betree")) {
		snprintf(err, errlen, "cannot set xenstore watches: %s", strerror(errno));
		goto fail;
	}
	vp_info("backend domain %u, %zu device declaration(s), hypervisor layer %s",
	        bus->self, opts->ndecls, opts->hypervisor);
	scan_domains(bus);
	return bus;
fail:
	vp_xsbus_close(bus);
	return NULL;
}

static void check_shutdown(struct vp_xsbus *bus)
{
	if (!bus->shutting_down || bus->finished)
		return;
	for (struct vp_backend *dev = bus->devices; dev; dev = dev->next) {
		unsigned long long st;

		if (dev->t || dev->destroying)
			return;
		if (dev->was_connected &&
		    xs_read_ull(bus, dev->fe_path, "state", &st) == 0 &&
		    st < XenbusStateClosing)
			return;
	}
	vp_xsbus_finish(bus);
}

void vp_xsbus_begin_shutdown(struct vp_xsbus *bus)
{
	struct vp_backend *dev, *next;

	bus->shutting_down = true;
	for (dev = bus->devices; dev; dev = next) {
		next = dev->next;
		dev->was_connected = dev->t != NULL;
		if (dev->remove_pending)
			continue;
		if (dev->be_state != XenbusStateClosed)
			set_state(dev, XenbusStateClosing);
		disconnect(dev);
	}
	check_shutdown(bus);
}

void vp_xsbus_finish(struct vp_xsbus *bus)
{
	struct vp_backend *dev, *next;

	if (bus->finished)
		return;
	bus->finished = true;
	for (dev = bus->devices; dev; dev = next) {
		next = dev->next;
		if (dev->reap_pending)
			finish_disconnect(dev);
		if (dev->destroying) {
			/* A plugin still holds guest memory: leave the disk open
			 * rather than free what it may touch. */
			dev_log(dev, VPROXY_LOG_WARN, "I/O still in flight at exit");
			continue;
		}
		set_state(dev, XenbusStateClosed);
		free_device(dev, true);
	}
	if (bus->p.done)
		bus->p.done(bus->p.opaque);
}

void vp_xsbus_close(struct vp_xsbus *bus)
{
	if (!bus)
		return;
	vp_loop_fd_remove(bus->xs_fd);
	if (bus->xs_more)
		event_free(bus->xs_more);
	if (bus->reap_ev)
		event_free(bus->reap_ev);
	if (bus->ready_ev)
		event_free(bus->ready_ev);
	vp_hv_set_domain_cb(bus->hv, NULL, NULL);
	if (bus->xs)
		xs_close(bus->xs);
	free(bus);
}
