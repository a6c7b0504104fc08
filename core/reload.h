/* SPDX-License-Identifier: MIT */
/*
 * Reload (vproxyctl reload, SIGHUP): read the configuration file again
 * and apply what changed in its devices.  See reload.c.
 */
#ifndef VP_RELOAD_H
#define VP_RELOAD_H

#include <stdbool.h>
#include <stddef.h>

struct vp_xsbus;

struct vp_reload_opts {
	const char *config_path;
	const char *plugin_dir; /* the plugin directory in force */
	bool log_level_fixed;   /* the command line set it: the file's is not applied */
	/* The [vproxyd] settings in force, to name those a reload cannot
	 * change (they need a restart). */
	const char *hypervisor, *run_dir, *control_socket, *metrics_host;
	unsigned metrics_port;
	int backend_domid;
	bool poll_auto;
	unsigned poll_us, poll_max_us;
};

/* Read the file; if it has any error, change nothing and return -EINVAL
 * (or another -errno) with the error, as "file:line: key: what".
 * Otherwise apply the difference: devices the file no longer declares are
 * detached (gracefully), new ones attached, changed ones detached and
 * attached again with their new keys, unchanged ones left alone; devices
 * attached at runtime (vproxyctl attach) are not the file's and stay.
 * Returns 0 and a one-line summary (with problems applying, if any, and
 * the [vproxyd] keys that need a restart). */
int vp_reload(struct vp_xsbus *bus, const struct vp_reload_opts *o, char *summary, size_t slen,
              char *err, size_t elen);

#endif
