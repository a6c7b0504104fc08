/* SPDX-License-Identifier: MIT */
/* vproxyd: the virtio backend daemon for Xen guests. */
#include <errno.h>
#include <getopt.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "plugin_host.h"
#include "reload.h"
#include "server.h"
#include "version.h"

#define DEFAULT_CONFIG "/etc/vproxy/vproxyd.ini"

static void usage(FILE *out)
{
	fprintf(out,
	        "Usage: vproxyd [OPTION]...\n"
	        "Serve virtio block devices to Xen guests through their proxy stubs.\n"
	        "\n"
	        "  -c, --config FILE      configuration file (default " DEFAULT_CONFIG
	        ")\n"
	        "  -f, --foreground       stay in the foreground (do not daemonize)\n"
	        "  -p, --plugin-dir DIR   load plugins from DIR (overrides the config)\n"
	        "  -r, --run-dir DIR      sim rendezvous directory (overrides the "
	        "config)\n"
	        "  -l, --log-level LEVEL  error, warn, info or debug (overrides the "
	        "config)\n"
	        "  -P, --pid-file FILE    write the daemon's PID to FILE\n"
	        "  -t, --check-config     check the configuration and plugins, then "
	        "exit\n"
	        "  -h, --help             show this help and exit\n"
	        "  -V, --version          show the version and exit\n"
	        "\n"
	        "Environment: XENSTORED_PATH selects the xenstored socket.\n"
	        "Exit status: 0 clean shutdown, 1 configuration error, 2 runtime "
	        "error.\n");
}

static int write_pid_file(const char *path)
{
	FILE *f = fopen(path, "w");

	if (!f)
		return -errno;
	fprintf(f, "%d\n", (int)getpid());
	if (fclose(f))
		return -errno;
	return 0;
}

/* CPUs this process may run on (its affinity, as taskset or a cpuset
 * limits it), else those online. */
static long usable_cpus(void)
{
	cpu_set_t set;

	if (sched_getaffinity(0, sizeof(set), &set) == 0)
		return CPU_COUNT(&set);
	return sysconf(_SC_NPROCESSORS_ONLN);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
	        {"config", required_argument, NULL, 'c'},
	        {"foreground", no_argument, NULL, 'f'},
	        {"plugin-dir", required_argument, NULL, 'p'},
	        {"run-dir", required_argument, NULL, 'r'},
	        {"log-level", required_argument, NULL, 'l'},
	        {"pid-file", required_argument, NULL, 'P'},
	        {"check-config", no_argument, NULL, 't'},
	        {"help", no_argument, NULL, 'h'},
	        {"version", no_argument, NULL, 'V'},
	        {NULL, 0, NULL, 0},
	};
	const char *config_path = DEFAULT_CONFIG, *plugin_dir = NULL, *run_dir = NULL;
	const char *log_level = NULL, *pid_file = NULL;
	bool foreground = false, check_only = false;
	struct vp_config *cfg = NULL;
	struct vp_devdecl *decls = NULL;
	struct vp_server_opts opts = {0};
	char control_path[VP_CONFIG_MAX_SOCKET_PATH + 1];
	struct vp_reload_opts reload;
	struct vp_server *srv = NULL;
	enum vproxy_log_level level;
	char err[512];
	int opt, rc, status = 1;

	while ((opt = getopt_long(argc, argv, "c:fp:r:l:P:thV", longopts, NULL)) != -1) {
		switch (opt) {
		case 'c': config_path = optarg; break;
		case 'f': foreground = true; break;
		case 'p': plugin_dir = optarg; break;
		case 'r': run_dir = optarg; break;
		case 'l': log_level = optarg; break;
		case 'P': pid_file = optarg; break;
		case 't': check_only = true; break;
		case 'h': usage(stdout); return 0;
		case 'V':
			printf("vproxyd %s (plugin ABI %u)\n", VPROXY_VERSION,
			       VPROXY_PLUGIN_ABI_VERSION);
			return 0;
		default: usage(stderr); return 1;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "vproxyd: unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
		return 1;
	}
	if (log_level && vp_log_parse_level(log_level, &level)) {
		fprintf(stderr,
		        "vproxyd: --log-level: '%s' is not one of error, warn, info, "
		        "debug\n",
		        log_level);
		return 1;
	}

	rc = vp_config_load(config_path, &cfg, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "vproxyd: %s\n", err);
		return 1;
	}
	if (plugin_dir && vp_config_set_plugin_dir(cfg, plugin_dir)) {
		fprintf(stderr, "vproxyd: out of memory\n");
		goto out;
	}
	if (run_dir) {
		char *d = strdup(run_dir);

		if (!d)
			goto out;
		free(cfg->run_dir);
		cfg->run_dir = d;
	}
	vp_log_set_level(log_level ? level : cfg->log_level);
	if (vp_config_check_plugins(cfg, err, sizeof(err))) {
		fprintf(stderr, "vproxyd: %s\n", err);
		goto out;
	}
	if (check_only) {
		printf("%s: OK, %zu device(s)\n", cfg->path, cfg->n_devices);
		status = 0;
		goto out;
	}

	decls = calloc(cfg->n_devices ? cfg->n_devices : 1, sizeof(*decls));
	if (!decls)
		goto out;
	for (size_t i = 0; i < cfg->n_devices; i++)
		vp_devdecl_from_config(&decls[i], &cfg->devices[i]);
	if (!cfg->control_socket) {
		if (snprintf(control_path, sizeof(control_path), "%s/control.sock",
		             cfg->run_dir) >= (int)sizeof(control_path)) {
			fprintf(stderr,
			        "vproxyd: %s: run-dir is too long for the control socket "
			        "(%s/control.sock); set control-socket\n",
			        cfg->path, cfg->run_dir);
			goto out;
		}
		opts.control_path = control_path;
	} else if (strcmp(cfg->control_socket, "none") != 0) {
		opts.control_path = cfg->control_socket;
	}
	reload = (struct vp_reload_opts){
	        .config_path = cfg->path,
	        .plugin_dir = cfg->plugin_dir,
	        .log_level_fixed = log_level != NULL,
	        .hypervisor = cfg->hypervisor,
	        .run_dir = cfg->run_dir,
	        .control_socket = cfg->control_socket,
	        .metrics_host = cfg->metrics_host,
	        .metrics_port = cfg->metrics_port,
	        .backend_domid = cfg->backend_domid,
	        .poll_auto = cfg->poll_auto,
	        .poll_us = cfg->poll_us,
	        .poll_max_us = cfg->poll_max_us,
	};
	opts.reload = &reload;
	opts.metrics_host = cfg->metrics_host;
	opts.metrics_port = cfg->metrics_port;
	opts.hypervisor = cfg->hypervisor;
	opts.run_dir = cfg->run_dir;
	opts.plugin_dir = cfg->plugin_dir;
	opts.backend_domid = cfg->backend_domid;
	opts.gmem_cache_bytes = 64u << 20;
	opts.shutdown_grace_ms = 2000;
	opts.poll_adaptive = cfg->poll_auto;
	opts.poll_us = cfg->poll_auto ? cfg->poll_max_us : cfg->poll_us;
	/* On one CPU a spinning loop only delays what it waits for (the
	 * io_uring workers that complete its reads, the guests of the sim
	 * host): auto polls only where vproxyd may run on two CPUs or more. */
	if (cfg->poll_auto && usable_cpus() < 2) {
		opts.poll_us = 0;
		vp_info("poll-us = auto: vproxyd may run on one CPU only, so it does "
		        "not poll");
	}
	opts.decls = decls;
	opts.ndecls = cfg->n_devices;

	if (!foreground && daemon(0, 1) < 0) {
		fprintf(stderr, "vproxyd: cannot daemonize: %s\n", strerror(errno));
		status = 2;
		goto out;
	}
	if (pid_file && (rc = write_pid_file(pid_file)) < 0) {
		fprintf(stderr, "vproxyd: %s: %s\n", pid_file, strerror(-rc));
		status = 2;
		goto out;
	}
	srv = vp_server_new(&opts, err, sizeof(err));
	if (!srv) {
		vp_err("%s", err);
		status = 2;
		goto out;
	}
	vp_info("vproxyd %s serving (config %s)", VPROXY_VERSION, cfg->path);
	status = vp_server_run(srv) ? 2 : 0;
	vp_info("stopped");
out:
	vp_server_free(srv);
	free(decls);
	vp_config_free(cfg);
	vp_plugin_unload_all();
	if (pid_file && status != 1)
		unlink(pid_file);
	return status;
}
