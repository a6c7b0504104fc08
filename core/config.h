/* SPDX-License-Identifier: MIT */
/*
 * vproxyd's configuration file (INI, parsed with inih):
 *
 *   [vproxyd]            global settings, at most once
 *   [device NAME]        one block device; NAME is a unique label
 *
 * Every error message reads "<file>:<line>: <key>: <what is wrong>", with
 * the section name ("device disk0", "vproxyd", ...) in place of the key for
 * problems of a whole section, and just "<file>: <strerror>" when the file
 * cannot be read.  Parsing stops at the first error.
 */
#ifndef VP_CONFIG_H
#define VP_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <vproxy/plugin.h>

#define VP_CONFIG_MAX_DEVID 255
#define VP_CONFIG_MAX_QUEUES 16
#define VP_CONFIG_MAX_QUEUE_SIZE 1024
#define VP_CONFIG_MAX_POLL_US 1000000
/* poll-max-us when not set: the adaptive window's cap (bench/README.md). */
#define VP_CONFIG_DEFAULT_POLL_MAX_US 50
#define VP_CONFIG_SERIAL_MAX 20       /* bytes of virtio-blk GET_ID */
#define VP_CONFIG_MAX_TIMEOUT_MS 3600000 /* request-timeout: one hour */
#define VP_CONFIG_MAX_SOCKET_PATH 107    /* sun_path less its NUL */

/* One [device NAME] section. */
struct vp_config_device {
	char *label;        /* NAME of [device NAME] */
	int line;           /* line of the section header */
	char *guest;        /* guest as written: a domid or a domain name */
	int guest_domid;    /* the domid, or -1 when guest is a name */
	int guest_line;     /* line of the guest key */
	unsigned id;        /* device id within the guest, 0..255 */
	int id_line;        /* line of the id key */
	char *plugin_name;  /* plugin key: <plugin-dir>/<plugin_name>.so */
	int plugin_line;    /* line of the plugin key */
	bool read_only;     /* read-only key (default no) */
	unsigned queues;    /* request queues, 1..16 (default 1) */
	unsigned queue_size; /* QueueNumMax, power of two 2..1024 (default 256) */
	char serial[VP_CONFIG_SERIAL_MAX + 1]; /* NUL-terminated, "" if unset */
	unsigned request_timeout_ms; /* request-timeout (default 0: none) */
	/* Every other key: plugin parameters, each with its line. */
	struct vproxy_params *params;
	/* Set by vp_config_check_plugins(); owned by the plugin host. */
	const struct vproxy_plugin *plugin;
};

/* A parsed configuration file. */
struct vp_config {
	char *path;          /* file name used in messages */
	/* [vproxyd] */
	const char *hypervisor; /* "sim" (default) or "xen"; static string */
	char *run_dir;       /* run-dir, default "/run/vproxy" */
	/* control-socket: a path, "none", or NULL (unset) for
	 * <run-dir>/control.sock */
	char *control_socket;
	/* metrics-listen: Prometheus metrics on HTTP; NULL host: off */
	char *metrics_host;
	unsigned metrics_port;
	char *plugin_dir;    /* plugin-dir, default VPROXY_DEFAULT_PLUGIN_DIR */
	int plugin_dir_line; /* line that set plugin-dir, 0 when defaulted */
	enum vproxy_log_level log_level; /* log-level, default info */
	int backend_domid;   /* backend-domid: -1 for "auto" (the default) */
	bool poll_auto;      /* poll-us = auto (the default): adaptive */
	unsigned poll_us;    /* poll-us when a number, 0..1000000 (0: off) */
	unsigned poll_max_us; /* poll-max-us, the adaptive window's cap */
	/* [device NAME] sections in file order */
	struct vp_config_device *devices;
	size_t n_devices;
};

/* Parse the file at path. On success returns 0 and *out (free with
 * vp_config_free); on failure a negative errno, *out NULL and one line in
 * err. */
int vp_config_load(const char *path, struct vp_config **out, char *err,
		   size_t errlen);
/* Same for text held in memory; name stands for the file in messages. */
int vp_config_load_string(const char *name, const char *text,
			  struct vp_config **out, char *err, size_t errlen);
/* Replace plugin_dir (e.g. from the command line). 0 or -ENOMEM. */
int vp_config_set_plugin_dir(struct vp_config *c, const char *dir);
/* Load every device's plugin from plugin_dir (vp_plugin_load), store it in
 * the device, and check its parameters against the plugin's keys. 0, or
 * -EINVAL with the first problem in err. */
int vp_config_check_plugins(struct vp_config *c, char *err, size_t errlen);
/* Free a configuration (NULL is fine); loaded plugins stay loaded. */
void vp_config_free(struct vp_config *c);

#endif
