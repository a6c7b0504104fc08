/* SPDX-License-Identifier: MIT */
/*
 * The stub's platform for Linux userspace on the sim host: guest memory,
 * grants and event channels from a struct simguest, xenstore from
 * libxenstore (xs_open honours XENSTORED_PATH).  Several devices, each on
 * its own thread, may share one platform.
 */
#ifndef VPS_PLATFORM_SIM_H
#define VPS_PLATFORM_SIM_H

#include <stddef.h>

#include "platform.h"

struct simguest;
struct vps_sim;

/* Create the platform over sg (which must outlive it) with device
 * addresses in mode.  Guest frame 0 is never handed out.  Log lines go to
 * stderr prefixed with prog.  NULL + errno on failure (xenstore
 * unreachable, out of memory). */
struct vps_sim *vps_sim_create(struct simguest *sg, enum vps_addr_mode mode,
                               const char *prog);
/* The platform; owned by s. */
const struct vps_platform *vps_sim_platform(struct vps_sim *s);
/* Print log lines up to level (default VPS_LOG_WARN). */
void vps_sim_set_log_level(struct vps_sim *s, enum vps_log_level level);
/* Free the platform; every allocation and watch must be released. */
void vps_sim_destroy(struct vps_sim *s);

#endif
