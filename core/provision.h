/* SPDX-License-Identifier: MIT */
/*
 * Provisioning for the xenstore bus: the declared devices of every running
 * guest created (xenstore nodes, disk opened), those of guests gone
 * removed.  Private to the bus (xsbus.c); see provision.c.
 */
#ifndef VP_PROVISION_H
#define VP_PROVISION_H

struct vp_devdecl;
struct vp_xsbus;

/* Provision the declared devices of every running guest that lacks them
 * (the bus owns the backends created). */
void vp_provision_scan_domains(struct vp_xsbus *bus);
/* A device declared at runtime: provision it now if its guest runs.  The
 * guest's domid, -1 when it does not run (a later scan provisions it),
 * or -EEXIST when the guest already has a device of that id. */
int vp_provision_device(struct vp_xsbus *bus, const struct vp_devdecl *decl);
/* @releaseDomain: remove the devices of every guest that is gone, and
 * forget the gone guests so that a new domain with the same id is
 * provisioned. */
void vp_provision_check_released(struct vp_xsbus *bus);

#endif
