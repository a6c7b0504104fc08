/* SPDX-License-Identifier: MIT */
/*
 * Server side of the plugin ABI: loading plugins from a directory and the
 * host table they are given.  Parameters of a device (struct
 * vproxy_params) are kept here too, with the config line of each key so
 * errors can name it.
 */
#ifndef VP_PLUGIN_HOST_H
#define VP_PLUGIN_HOST_H

#include <stdbool.h>
#include <stddef.h>
#include <vproxy/plugin.h>

struct event_base;

/*
 * Completion routing: whoever submits a request points req->host_priv at
 * a struct that begins with a struct vp_req_owner; host->complete() calls
 * its complete().
 */
struct vp_req_owner {
	void (*complete)(struct vproxy_req *req, int status);
};

/* The event loop that host->fd_watch() registers with and that off-loop
 * opens and closes complete into.  Set before any plugin opens a disk;
 * NULL before that loop is freed. */
void vp_plugin_set_event_base(struct event_base *base);

/* Load plugin `name` from <dir>/<name>.so (once; later calls return the
 * same table).  On failure returns NULL and writes a one-line reason
 * (file missing, dlopen error, no init symbol of either ABI, ABI version or
 * size mismatch, NULL/invalid table) to err. The table is owned by the
 * loaded library and lives until vp_plugin_unload_all(). */
const struct vproxy_plugin *vp_plugin_load(const char *dir, const char *name,
					   char *err, size_t errlen);
/* Open a disk through plugin, whichever ABI it was built for.  An ABI 2
 * plugin is given a host handle naming dom, devid and label (the config's
 * device name) in its messages; the handle lives until vp_plugin_close().
 * Returns what the plugin's open() returns (0, or a negative errno with a
 * message in err), or -ENOMEM. */
int vp_plugin_open(const struct vproxy_plugin *plugin, unsigned dom, unsigned devid,
		   const char *label, const struct vproxy_params *params, int read_only,
		   struct vproxy_disk_info *info, void **disk, char *err, size_t errlen);
/* Close a disk opened with vp_plugin_open() and free its host handle. */
void vp_plugin_close(const struct vproxy_plugin *plugin, void *disk);

/*
 * Opening and closing without stalling the loop.  A plugin that sets
 * VPROXY_PLUGIN_F_OFF_LOOP has its open() and close() run on a helper
 * thread of the host; the result comes back on the loop thread.  Other
 * plugins run on the loop thread inside these calls, as before.
 */

/* An open in progress (vp_plugin_open_async), owned by the host. */
struct vp_plugin_job;

/* The result of vp_plugin_open_async(), on the loop thread: rc 0 with the
 * disk and its info, or a negative errno and a message in err.  info and
 * err are valid during the call only. */
typedef void (*vp_plugin_opened_fn)(void *arg, int rc,
				    const struct vproxy_disk_info *info, void *disk,
				    const char *err);

/* Start opening a disk as vp_plugin_open() does and call opened(arg, ...)
 * when it is done.  params must stay valid until then.  Returns the open
 * in progress, or NULL when opened() was already called (the plugin opens
 * on the loop thread, or no helper could be had). */
struct vp_plugin_job *vp_plugin_open_async(const struct vproxy_plugin *plugin,
					   unsigned dom, unsigned devid, const char *label,
					   const struct vproxy_params *params, int read_only,
					   vp_plugin_opened_fn opened, void *arg);
/* The opener of job no longer wants its disk (its device went away):
 * opened() is not called, and the host closes the disk if it opens. */
void vp_plugin_open_abandon(struct vp_plugin_job *job);
/* Close a disk as vp_plugin_close() does, off the loop thread when the
 * plugin allows it; returns at once.  Never from inside a plugin call. */
void vp_plugin_close_async(const struct vproxy_plugin *plugin, void *disk);
/* Opens and closes started and not yet finished. */
unsigned vp_plugin_jobs_pending(void);
/* Call idle(arg) from the loop whenever the last pending open or close
 * finishes (NULL: nobody). */
void vp_plugin_set_idle_cb(void (*idle)(void *arg), void *arg);
/* Log each pending open or close as abandoned (shutdown gives up). */
void vp_plugin_report_pending(void);

/* dlclose every loaded plugin; no disk may still be open.  While an open
 * or close still runs on a helper, the plugins stay loaded (logged). */
void vp_plugin_unload_all(void);
/* The host table handed to ABI 2 plugins (abi_version 2). */
const struct vproxy_host *vp_plugin_host(void);

/* A new empty parameter set. NULL on allocation failure. */
struct vproxy_params *vp_params_new(void);
/* Add or replace key=value, remembering the config line. 0 or -ENOMEM. */
int vp_params_set(struct vproxy_params *p, const char *key, const char *value,
		  int line);
/* Value of key, or NULL. */
const char *vp_params_get(const struct vproxy_params *p, const char *key);
/* The same keys with the same values (lines and order aside)? */
bool vp_params_equal(const struct vproxy_params *a, const struct vproxy_params *b);
/* Check every key against plugin->param_keys. Returns 0, or -EINVAL with
 * *bad_key and *bad_line set to the first key the plugin does not take. */
int vp_params_check(const struct vproxy_params *p, const struct vproxy_plugin *plugin,
		    const char **bad_key, int *bad_line);
/* Free a parameter set (NULL is fine). */
void vp_params_free(struct vproxy_params *p);

#endif
