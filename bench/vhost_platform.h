/* SPDX-License-Identifier: MIT */
/*
 * A proxy-stub platform whose device is a vhost-user-blk backend (the
 * peer: qemu-storage-daemon's vhost-user-blk export), so that the very
 * same guest code -- stub.c and the vblk driver -- drives it.
 *
 * What the platform provides in-process:
 *  - guest RAM: a memfd shared with the backend in one VHOST_USER_SET_MEM_TABLE
 *    region (guest-physical address = offset in the memfd, gfn mode);
 *  - a tiny xenstore holding the device's frontend and backend nodes, whose
 *    backend half walks the xenbus states when the stub writes its own;
 *  - the backend of the stub's register-access ring: every request is
 *    answered synchronously inside evtchn_notify() by a virtio-mmio register
 *    model that turns queue setup into vhost-user messages, QueueNotify into
 *    a kick eventfd write and the backend's call eventfds into the page's
 *    interrupt status bit.
 * So the data path is exactly the vhost-user one: descriptors in shared
 * memory, one eventfd write per kick the driver does not suppress, one per
 * interrupt the driver asked for.
 *
 * One device (id 0) per platform; the platform is used by one thread.
 */
#ifndef BENCH_VHOST_PLATFORM_H
#define BENCH_VHOST_PLATFORM_H

#include <stddef.h>
#include <stdint.h>

#include "platform.h"

struct vhu_platform;

/* Connect to the vhost-user socket at path (retrying until timeout_ns, so
 * a backend still starting up is waited for), negotiate, share ram_bytes
 * of fresh guest RAM and read the device config.  The platform claims to
 * be guest domid with device 0 behind backend domain 0.  NULL on failure,
 * with the reason in err.  Owned by the caller (vhu_destroy). */
struct vhu_platform *vhu_create(const char *path, uint16_t domid, size_t ram_bytes,
                                uint64_t timeout_ns, char *err, size_t errlen);
/* The stub platform; owned by v. */
const struct vps_platform *vhu_platform(struct vhu_platform *v);
/* Eventfd writes to the backend's kick fds so far (one per QueueNotify
 * the driver did not suppress): the guest's notifications to the server,
 * as the stub's stats.notifies are over the sim's event channels. */
uint64_t vhu_kick_writes(const struct vhu_platform *v);
/* Close the connection (the backend stops every ring) and free
 * everything; every allocation must have been freed. */
void vhu_destroy(struct vhu_platform *v);

#endif
