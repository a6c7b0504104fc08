/* SPDX-License-Identifier: MIT */
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
 * The files: xsbus.c the bus itself (open, the watches and their
 * dispatch, shutdown); provision.c provisioning and @releaseDomain;
 * backend.c each device (struct vp_backend: connect, disconnect, teardown
 * and the state machine); xs_node.c the xenstore node access they share;
 * xsbus_internal.h the bus's state they share.
 *
 * A connected device's transport registers its own event channel port and
 * poller with the loop: kicks never pass through here.
 */
#include <errno.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xen/io/xenbus.h>
#include <xenstore.h>
#include <vproxy/proto.h>

#include "backend.h"
#include "blk.h"
#include "config.h"
#include "hv.h"
#include "log.h"
#include "loop.h"
#include "provision.h"
#include "xs_node.h"
#include "xsbus.h"
#include "xsbus_internal.h"

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
		st = vp_xs_read_at(bus->xs, dev->be_path, "state");
		if (st) {
			free(st);
			continue;
		}
		vp_backend_log(dev, VPROXY_LOG_INFO,
		               "backend node removed: removing the device");
		vp_backend_remove(dev);
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
			vp_provision_scan_domains(bus);
		} else if (strcmp(token, "release") == 0) {
			vp_provision_check_released(bus);
		} else if (strcmp(token, "betree") == 0) {
			backend_tree_changed(bus, path);
		} else if (sscanf(token, "fe/%u/%u", &dom, &devid) == 2) {
			struct vp_backend *dev = vp_backend_find(bus, dom, devid);

			if (dev && !dev->remove_pending)
				vp_backend_frontend_changed(dev);
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
	for (size_t i = opts->ndecls; i-- > 0;) {
		struct vp_decl_entry *e = calloc(1, sizeof(*e));

		if (!e) {
			snprintf(err, errlen, "out of memory");
			goto fail;
		}
		e->decl = opts->decls[i];
		e->from_file = true;
		e->next = bus->decls;
		bus->decls = e;
	}
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
	bus->reap_ev = event_new(base, -1, 0, vp_backend_reap_cb, bus);
	bus->ready_ev = event_new(base, -1, 0, vp_backend_ready_cb, bus);
	if (!bus->xs_fd || !bus->xs_more || !bus->reap_ev || !bus->ready_ev) {
		snprintf(err, errlen, "cannot watch the xenstore connection");
		goto fail;
	}
	vp_hv_set_domain_cb(bus->hv, vp_backend_hv_domain_cb, bus);
	if (!xs_watch(bus->xs, "@introduceDomain", "intro") ||
	    !xs_watch(bus->xs, "@releaseDomain", "release") ||
	    !xs_watch(bus->xs, bus->be_root, "betree")) {
		snprintf(err, errlen, "cannot set xenstore watches: %s", strerror(errno));
		goto fail;
	}
	vp_info("backend domain %u, %zu device declaration(s), hypervisor layer %s",
	        bus->self, opts->ndecls, opts->hypervisor);
	vp_provision_scan_domains(bus);
	return bus;
fail:
	vp_xsbus_close(bus);
	return NULL;
}

void vp_xsbus_check_shutdown(struct vp_xsbus *bus)
{
	if (!bus->shutting_down || bus->finished)
		return;
	for (struct vp_backend *dev = bus->devices; dev; dev = dev->next) {
		unsigned long long st;

		if (dev->t || dev->destroying)
			return;
		if (dev->was_connected &&
		    vp_xs_read_ull(bus->xs, dev->fe_path, "state", &st) == 0 &&
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
			vp_backend_set_state(dev, XenbusStateClosing);
		vp_backend_disconnect(dev);
	}
	vp_xsbus_check_shutdown(bus);
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
			vp_backend_finish_disconnect(dev);
		if (dev->destroying) {
			/* A plugin still holds guest memory: leave the disk open
			 * rather than free what it may touch. */
			vp_backend_log(dev, VPROXY_LOG_WARN,
			               "I/O still in flight at exit");
			continue;
		}
		vp_backend_set_state(dev, XenbusStateClosed);
		vp_backend_free(dev, true);
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
	while (bus->decls) {
		struct vp_decl_entry *e = bus->decls;

		bus->decls = e->next;
		if (e->successor) {
			if (e->successor->release)
				e->successor->release(e->successor->owner);
			free(e->successor);
		}
		if (e->release)
			e->release(e->owner);
		free(e);
	}
	free(bus);
}

static const char *state_name(const struct vp_backend *dev)
{
	static const char *const names[] = {
	        [XenbusStateUnknown] = "Unknown",         [XenbusStateInitialising] = "Initialising",
	        [XenbusStateInitWait] = "InitWait",       [XenbusStateInitialised] = "Initialised",
	        [XenbusStateConnected] = "Connected",     [XenbusStateClosing] = "Closing",
	        [XenbusStateClosed] = "Closed",           [XenbusStateReconfiguring] = "Reconfiguring",
	        [XenbusStateReconfigured] = "Reconfigured",
	};

	if (dev->be_state < 0 || (size_t)dev->be_state >= sizeof(names) / sizeof(names[0]) ||
	    !names[dev->be_state])
		return "Unknown";
	return names[dev->be_state];
}

void vp_xsbus_foreach_device(struct vp_xsbus *bus, vp_xsbus_device_fn *fn, void *arg)
{
	for (struct vp_decl_entry *e = bus->decls; e; e = e->next) {
		const struct vp_devdecl *decl = &e->decl;
		bool seen = false;

		for (struct vp_backend *dev = bus->devices; dev; dev = dev->next) {
			struct vp_xsbus_device d = {
			        .decl = decl,
			        .dom = dev->dom,
			        .devid = dev->devid,
			        .state = state_name(dev),
			        .read_only = decl->read_only ||
			                     (dev->info.flags & VPROXY_DISK_READONLY),
			        .error = dev->error[0] ? dev->error : NULL,
			        .past = dev->past,
			        .dom_name = dev->dom_name[0] ? dev->dom_name : NULL,
			};

			if (dev->decl != decl)
				continue;
			seen = true;
			if (dev->disk || dev->vdev)
				d.capacity = dev->info.capacity;
			if (dev->vdev && !dev->destroying) {
				d.vdev = dev->vdev;
				d.addr_mode = dev->grant_mode ? "grant" : "gfn";
				if (vp_vdev_is_broken(dev->vdev))
					d.error = vp_vdev_broken_reason(dev->vdev);
			}
			fn(arg, &d);
		}
		if (!seen) {
			struct vp_xsbus_device d = {
			        .decl = decl,
			        .dom = -1,
			        .devid = decl->devid,
			        .state = "no-guest",
			        .read_only = decl->read_only,
			};

			fn(arg, &d);
		}
	}
}

void vp_xsbus_decl_released(struct vp_xsbus *bus, const struct vp_devdecl *decl)
{
	struct vp_decl_entry **pp;

	for (struct vp_backend *dev = bus->devices; dev; dev = dev->next)
		if (dev->decl == decl)
			return;
	for (pp = &bus->decls; *pp; pp = &(*pp)->next) {
		struct vp_decl_entry *e = *pp;

		if (&e->decl != decl)
			continue;
		if (!e->removing || e->held)
			return;
		*pp = e->next;
		vp_info("[device %s] detached", e->decl.label);
		if (e->successor) {
			/* Reloaded with other keys: the new one takes its place. */
			struct vp_decl_entry *n = e->successor;
			int dom;

			n->next = *pp;
			*pp = n;
			dom = bus->shutting_down ? -1 : vp_provision_device(bus, &n->decl);
			if (dom == -EEXIST)
				vp_err("[device %s]: guest %s has device id %u already", n->decl.label,
				       n->decl.guest, n->decl.devid);
			else
				vp_info("[device %s] attached again with its new keys%s",
				        n->decl.label, dom < 0 ? " (guest not running)" : "");
		}
		if (e->release)
			e->release(e->owner);
		free(e);
		return;
	}
}

/* Does decl name a guest that other could also mean?  (A name and a domid
 * cannot be compared here; the backend lookup catches those.) */
static bool same_guest(const struct vp_devdecl *a, const struct vp_devdecl *b)
{
	if (a->guest_domid >= 0 || b->guest_domid >= 0)
		return a->guest_domid == b->guest_domid;
	return strcmp(a->guest, b->guest) == 0;
}

/* A new entry for a copy of decl, owning nothing yet; NULL with err. */
static struct vp_decl_entry *entry_new(const struct vp_devdecl *decl, bool from_file,
                                       char *err, size_t errlen)
{
	struct vp_decl_entry *e = calloc(1, sizeof(*e));

	if (!e) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	e->decl = *decl;
	e->from_file = from_file;
	return e;
}

int vp_xsbus_attach(struct vp_xsbus *bus, const struct vp_devdecl *decl, bool from_file,
                    void (*release)(void *owner), void *owner, char *err, size_t errlen)
{
	struct vp_decl_entry *e, **tail;
	int dom;

	if (bus->shutting_down) {
		snprintf(err, errlen, "vproxyd is shutting down");
		return -ESHUTDOWN;
	}
	for (e = bus->decls; e; e = e->next) {
		if (strcmp(e->decl.label, decl->label) == 0) {
			snprintf(err, errlen, "[device %s] exists already%s", decl->label,
			         e->removing ? " (still detaching)" : "");
			return -EEXIST;
		}
		if (!e->removing && e->decl.devid == decl->devid && same_guest(&e->decl, decl)) {
			snprintf(err, errlen, "guest %s has device id %u already ([device %s])",
			         decl->guest, decl->devid, e->decl.label);
			return -EEXIST;
		}
	}
	e = entry_new(decl, from_file, err, errlen);
	if (!e)
		return -ENOMEM;
	for (tail = &bus->decls; *tail; tail = &(*tail)->next)
		;
	*tail = e;
	dom = vp_provision_device(bus, &e->decl);
	if (dom == -EEXIST) {
		*tail = NULL;
		free(e);
		snprintf(err, errlen, "guest %s has device id %u already", decl->guest,
		         decl->devid);
		return -EEXIST;
	}
	/* Only now the entry owns what decl borrows. */
	e->release = release;
	e->owner = owner;
	vp_info("[device %s] attached for guest %s%s", decl->label, decl->guest,
	        dom < 0 ? " (not running: served when it starts)" : "");
	return 0;
}

/* Does sel (a label, GUEST/ID as configured, or DOMID/ID) name e? */
static bool entry_selected(struct vp_xsbus *bus, const struct vp_decl_entry *e, const char *sel)
{
	char id[32];

	if (strcmp(sel, e->decl.label) == 0)
		return true;
	snprintf(id, sizeof(id), "%.20s/%u", e->decl.guest, e->decl.devid);
	if (strcmp(sel, id) == 0)
		return true;
	for (struct vp_backend *dev = bus->devices; dev; dev = dev->next) {
		if (dev->decl != &e->decl)
			continue;
		snprintf(id, sizeof(id), "%u/%u", dev->dom, dev->devid);
		if (strcmp(sel, id) == 0)
			return true;
	}
	return false;
}

static void detach_entry(struct vp_xsbus *bus, struct vp_decl_entry *e, bool force, bool *gone);

int vp_xsbus_detach(struct vp_xsbus *bus, const char *sel, bool force, bool *gone, char *err,
                    size_t errlen)
{
	struct vp_decl_entry *e;

	for (e = bus->decls; e; e = e->next)
		if (entry_selected(bus, e, sel))
			break;
	if (!e) {
		snprintf(err, errlen, "no device '%.64s' (a label or DOMID/ID)", sel);
		return -ENOENT;
	}
	detach_entry(bus, e, force, gone);
	return 0;
}

static void detach_entry(struct vp_xsbus *bus, struct vp_decl_entry *e, bool force, bool *gone)
{
	struct vp_backend *dev, *next;

	if (e->removing && !force) {
		*gone = false;
		return; /* detaching already */
	}
	e->removing = true;
	e->held = true; /* its backends may go below: not it, yet */
	vp_info("[device %s]: detach%s", e->decl.label, force ? " (forced)" : "");
	for (dev = bus->devices; dev; dev = next) {
		next = dev->next;
		if (dev->decl != &e->decl || dev->remove_pending)
			continue;
		if (force || !(dev->t || dev->destroying)) {
			/* Requests in flight still finish before the disk closes. */
			vp_backend_remove(dev);
			continue;
		}
		/* Connected: ask the frontend to let go; vp_backend_frontend_changed()
		 * removes the device once it has. */
		dev->detaching = true;
		vp_backend_set_state(dev, XenbusStateClosing);
	}
	e->held = false;
	/* No backend (guest not running) or all removed at once. */
	*gone = true;
	for (dev = bus->devices; dev && *gone; dev = dev->next)
		if (dev->decl == &e->decl)
			*gone = false;
	if (*gone)
		vp_xsbus_decl_released(bus, &e->decl);
	vp_xsbus_check_shutdown(bus);
}

void vp_xsbus_foreach_decl(struct vp_xsbus *bus, vp_xsbus_decl_fn *fn, void *arg)
{
	for (struct vp_decl_entry *e = bus->decls; e; e = e->next)
		fn(arg, &e->decl, e->from_file, e->removing);
}

int vp_xsbus_replace(struct vp_xsbus *bus, const struct vp_devdecl *decl,
                     void (*release)(void *owner), void *owner, char *err, size_t errlen)
{
	struct vp_decl_entry *e, *n;
	bool gone;

	for (e = bus->decls; e; e = e->next)
		if (!e->removing && strcmp(e->decl.label, decl->label) == 0)
			break;
	if (!e) {
		snprintf(err, errlen, "no device [device %s] to replace", decl->label);
		return -ENOENT;
	}
	n = entry_new(decl, true, err, errlen);
	if (!n)
		return -ENOMEM;
	n->release = release;
	n->owner = owner;
	e->successor = n;
	vp_info("[device %s]: its keys changed: detaching it to attach it again",
	        decl->label);
	detach_entry(bus, e, false, &gone);
	return 0;
}

void vp_devdecl_from_config(struct vp_devdecl *out, const struct vp_config_device *d)
{
	*out = (struct vp_devdecl){
	        .label = d->label,
	        .guest = d->guest,
	        .guest_domid = d->guest_domid,
	        .devid = d->id,
	        .plugin = d->plugin,
	        .params = d->params,
	        .read_only = d->read_only,
	        .queues = d->queues,
	        .queue_size = d->queue_size,
	        .serial = d->serial[0] ? d->serial : NULL,
	        .request_timeout_ms = d->request_timeout_ms,
	};
}
