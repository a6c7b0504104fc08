/*
 * Server side of the plugin ABI: loading plugins from a directory and the
 * host table they are given.  Parameters of a device (struct
 * vproxy_params) are kept here too, with the config line of each key so
 * errors can name it.
 */
#ifndef VP_PLUGIN_HOST_H
#define VP_PLUGIN_HOST_H

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

/* The event loop that host->fd_watch() registers with. Set before any
 * plugin opens a disk. */
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
/* dlclose every loaded plugin; no disk may still be open. */
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
/* Check every key against plugin->param_keys. Returns 0, or -EINVAL with
 * *bad_key and *bad_line set to the first key the plugin does not take. */
int vp_params_check(const struct vproxy_params *p, const struct vproxy_plugin *plugin,
		    const char **bad_key, int *bad_line);
/* Free a parameter set (NULL is fine). */
void vp_params_free(struct vproxy_params *p);
/* Parse a size: digits with optional K/M/G/T suffix (powers of 1024),
 * optionally followed by 'B' or 'iB'. 0 or -EINVAL (also on overflow). */
int vp_parse_size(const char *text, uint64_t *out);

#endif
