/* SPDX-License-Identifier: MIT */
/*
 * Provisioning (provision.h): the declared devices of a guest that is
 * introduced get their backend and frontend nodes and their disk; those of
 * a guest released are removed.  The lifecycle as a whole is described in
 * xsbus.c; backend.c takes each device on from here.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xen/io/xenbus.h>
#include <xenstore.h>
#include <vproxy/proto.h>

#include "backend.h"
#include "log.h"
#include "plugin_host.h"
#include "provision.h"
#include "xs_node.h"
#include "xsbus_internal.h"

/* Domain dom's name from xenstore (malloc'd), or NULL. */
static char *dom_name(struct vp_xsbus *bus, unsigned long dom)
{
	char path[VP_XS_PATH_LEN];
	unsigned len;

	snprintf(path, sizeof(path), "/local/domain/%lu/name", dom);
	return xs_read(bus->xs, XBT_NULL, path, &len);
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
		char path[VP_XS_PATH_LEN * 2];
		bool ok;

		if (tx == XBT_NULL)
			return false;
		ok = xs_mkdir(bus->xs, tx, dev->be_path) &&
		     xs_set_permissions(bus->xs, tx, dev->be_path, be_perms, 2) &&
		     vp_xs_printf_at(bus->xs, tx, dev->be_path, "frontend", "%s",
		                     dev->fe_path) &&
		     vp_xs_printf_at(bus->xs, tx, dev->be_path, "frontend-id", "%u",
		                     dev->dom) &&
		     vp_xs_printf_at(bus->xs, tx, dev->be_path, "state", "%d",
		                     XenbusStateInitialising) &&
		     vp_xs_printf_at(bus->xs, tx, dev->be_path, "online", "1") &&
		     vp_xs_printf_at(bus->xs, tx, dev->be_path, "type", "blk") &&
		     vp_xs_printf_at(bus->xs, tx, dev->be_path, "label", "%s",
		                     dev->decl->label) &&
		     vp_xs_printf_at(bus->xs, tx, dev->be_path, "plugin", "%s",
		                     dev->decl->plugin->name);
		snprintf(path, sizeof(path), "%s/state", dev->fe_path);
		fe_state = ok ? xs_read(bus->xs, tx, path, &len) : NULL;
		/* The frontend owns its state; only a new node gets one. */
		if (ok && !fe_state)
			ok = xs_mkdir(bus->xs, tx, dev->fe_path) &&
			     xs_set_permissions(bus->xs, tx, dev->fe_path, fe_perms, 2) &&
			     vp_xs_printf_at(bus->xs, tx, dev->fe_path, "state", "%d",
			                     XenbusStateInitialising);
		free(fe_state);
		ok = ok &&
		     vp_xs_printf_at(bus->xs, tx, dev->fe_path, "backend", "%s",
		                     dev->be_path) &&
		     vp_xs_printf_at(bus->xs, tx, dev->fe_path, "backend-id", "%u",
		                     bus->self);
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
		vp_backend_log(dev, VPROXY_LOG_ERROR,
		               "[device %s]: cannot open storage: %s", decl->label, err);
		snprintf(dev->error, sizeof(dev->error), "cannot open storage: %.200s", err);
		vp_xs_printf_at(bus->xs, XBT_NULL, dev->be_path, "error", "%s", err);
		vp_backend_set_state(dev, XenbusStateClosed);
		return;
	}
	dev->disk = disk;
	dev->info = *info;
	vp_xs_printf_at(bus->xs, XBT_NULL, dev->be_path, "sectors", "%" PRIu64,
	                dev->info.capacity / 512);
	/* Shutdown (Closing) or a frontend that closed meanwhile (Closed)
	 * keep their state; reoffer() (backend.c) takes it from Closed. */
	if (dev->be_state == XenbusStateInitialising) {
		vp_backend_set_state(dev, XenbusStateInitWait);
		vp_backend_log(dev, VPROXY_LOG_INFO,
		               "[device %s] ready on plugin %s, waiting for the frontend",
		               decl->label, decl->plugin->name);
	}
	/* Inside provision() the first watch event is still to come. */
	if (!dev->provisioning)
		vp_backend_frontend_changed(dev); /* may free dev */
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
	{
		/* The domain's name, for vproxyctl and the metrics' labels. */
		char *name = dom_name(bus, dom);

		if (name)
			snprintf(dev->dom_name, sizeof(dev->dom_name), "%s", name);
		free(name);
	}

	dev->next = bus->devices;
	bus->devices = dev;
	bus->ndev[dom]++;
	if (!write_nodes(dev)) {
		vp_backend_log(dev, VPROXY_LOG_ERROR, "cannot create xenstore nodes: %s",
		               strerror(errno));
		vp_backend_free(dev, true);
		return;
	}
	dev->be_state = XenbusStateInitialising;
	/* The watch fires once at once, which runs vp_backend_frontend_changed(). */
	dev->watching = xs_watch(bus->xs, dev->fe_path, dev->token);
	if (!dev->watching)
		vp_backend_log(dev, VPROXY_LOG_ERROR, "cannot watch %s: %s", dev->fe_path,
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

/* A /local/domain entry as a guest's domid: 0 for anything that is not
 * one (not a strict decimal, out of range, or ourselves). */
static unsigned long guest_domid(const struct vp_xsbus *bus, const char *entry)
{
	unsigned long dom;
	char *end;

	errno = 0;
	dom = strtoul(entry, &end, 10);
	if (errno || *end || dom == 0 || dom > VPROXY_DOMID_MAX || dom == bus->self)
		return 0;
	return dom;
}

static bool decl_matches(const struct vp_devdecl *decl, unsigned dom, const char *name)
{
	if (decl->guest_domid >= 0)
		return (unsigned)decl->guest_domid == dom;
	return name && strcmp(name, decl->guest) == 0;
}

/* Provision the declared devices of every running guest that lacks them. */
void vp_provision_scan_domains(struct vp_xsbus *bus)
{
	unsigned n = 0;
	char **doms;

	if (bus->shutting_down)
		return;
	doms = xs_directory(bus->xs, XBT_NULL, "/local/domain", &n);
	if (!doms)
		return;
	for (unsigned i = 0; i < n; i++) {
		unsigned long dom = guest_domid(bus, doms[i]);
		char *name;

		if (!dom)
			continue;
		if (bus->ndev[dom] || (bus->provisioned[dom / 8] & (1u << (dom % 8))))
			continue; /* provisioned when it was introduced */
		if (!xs_is_domain_introduced(bus->xs, (unsigned)dom))
			continue;
		name = dom_name(bus, dom);
		for (struct vp_decl_entry *e = bus->decls; e; e = e->next) {
			const struct vp_devdecl *decl = &e->decl;
			struct vp_backend *old;

			if (e->removing)
				continue;
			if (!decl_matches(decl, (unsigned)dom, name))
				continue;
			old = vp_backend_find(bus, (unsigned)dom, decl->devid);
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

/* The running guest decl is for: its domid, or -1. */
static int running_dom(struct vp_xsbus *bus, const struct vp_devdecl *decl)
{
	unsigned n = 0;
	char **doms;
	int found = -1;

	if (decl->guest_domid >= 0)
		return xs_is_domain_introduced(bus->xs, (unsigned)decl->guest_domid)
		               ? decl->guest_domid
		               : -1;
	doms = xs_directory(bus->xs, XBT_NULL, "/local/domain", &n);
	for (unsigned i = 0; doms && i < n && found < 0; i++) {
		unsigned long dom = guest_domid(bus, doms[i]);
		char *name;

		if (!dom)
			continue;
		name = dom_name(bus, dom);
		if (name && strcmp(name, decl->guest) == 0 &&
		    xs_is_domain_introduced(bus->xs, (unsigned)dom))
			found = (int)dom;
		free(name);
	}
	free(doms);
	return found;
}

int vp_provision_device(struct vp_xsbus *bus, const struct vp_devdecl *decl)
{
	int dom = running_dom(bus, decl);

	if (dom < 0)
		return -1;
	if (vp_backend_find(bus, (unsigned)dom, decl->devid))
		return -EEXIST;
	provision(bus, decl, (unsigned)dom);
	bus->provisioned[dom / 8] |= (uint8_t)(1u << (dom % 8));
	return dom;
}

/* @releaseDomain: remove the devices of every guest that is gone. */
void vp_provision_check_released(struct vp_xsbus *bus)
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
		vp_backend_log(dev, VPROXY_LOG_INFO,
		               "domain released: removing the device");
		/* Removal may free dev; neighbours stay valid. */
		vp_backend_remove(dev);
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
	vp_xsbus_check_shutdown(bus);
}
