/* SPDX-License-Identifier: MIT */
/*
 * The simulated host of a bench run: the work directory, xenstored with
 * the shim, vproxyd with a generated config, the guests' domains and the
 * backing files; stopping all of it by pid, whatever happened.
 */
#include "bench.h"
#include "config.h"
#include "ctl.h"
#include "hist.h"
#include "proc.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xenstore.h>

void msg(const struct cfg *c, const char *fmt, ...)
{
	va_list ap;

	if (c->quiet)
		return;
	va_start(ap, fmt);
	fprintf(stderr, PROG ": ");
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

void die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fprintf(stderr, PROG ": ");
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	cleanup();
	exit(2);
}

/* snprintf that must not truncate (paths, arguments). */
void fmt(char *out, size_t len, const char *f, ...)
{
	va_list ap;
	int n;

	va_start(ap, f);
	n = vsnprintf(out, len, f, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= len)
		die("text too long: %.60s...", out);
}

/* ---- the host's pieces ---- */

void path_in(char *out, size_t len, const char *dir, const char *name)
{
	fmt(out, len, "%s/%s", dir, name);
}

void stop_guests(void)
{
	for (unsigned i = 0; i < bench_host.nguests; i++)
		if (bench_host.guests[i] > 0)
			proc_stop(bench_host.guests[i], 3000);
	free(bench_host.guests);
	free(bench_host.gstatus);
	bench_host.guests = NULL;
	bench_host.gstatus = NULL;
	bench_host.nguests = 0;
}

/* Stop the server we started: its exit status, 0 if none ran. */
int stop_server(void)
{
	int r = 0;

	if (bench_host.server > 0)
		r = proc_stop(bench_host.server, 5000);
	bench_host.server = 0;
	return r;
}

void stop_xenstored(void)
{
	char script[PATH_MAX];
	char *argv[] = {"/bin/bash", script, "stop", bench_host.xs_dir, NULL};

	if (bench_host.xs) {
		xs_close(bench_host.xs);
		bench_host.xs = NULL;
	}
	if (!bench_host.xs_started)
		return;
	path_in(script, sizeof(script), bench_host.build, "contrib/sim/xenstored-sim.sh");
	proc_run(argv, NULL, 15000);
	bench_host.xs_started = false;
}

static int rm_tree(const char *dir)
{
	char *argv[] = {"/bin/rm", "-rf", "--", (char *)dir, NULL};

	return proc_run(argv, NULL, 30000);
}

void cleanup(void)
{
	stop_guests();
	stop_server();
	stop_xenstored();
	if (bench_host.store[0]) {
		unlink(bench_host.store);
		bench_host.store[0] = '\0';
	}
	if (bench_host.work[0] && !(bench_cfg && bench_cfg->keep))
		rm_tree(bench_host.work);
	else if (bench_host.work[0])
		fprintf(stderr, PROG ": kept %s\n", bench_host.work);
	bench_host.work[0] = '\0';
}

void start_xenstored(const struct cfg *c)
{
	char script[PATH_MAX], sock[PATH_MAX + 32];
	char *argv[] = {"/bin/bash", script, "start", bench_host.xs_dir, NULL};
	int r;

	path_in(bench_host.xs_dir, sizeof(bench_host.xs_dir), bench_host.work, "xs");
	if (mkdir(bench_host.xs_dir, 0700) < 0 && errno != EEXIST)
		die("mkdir %s: %s", bench_host.xs_dir, strerror(errno));
	path_in(script, sizeof(script), bench_host.build, "contrib/sim/xenstored-sim.sh");
	snprintf(sock, sizeof(sock), "%s/xenstored.sock", bench_host.xs_dir);
	/* xenstored-sim.sh always traces every request (-T); formatting and
	 * writing that trace is most of xenstored's time with hundreds of
	 * guests, and a real host does not trace.  Unless asked to keep it,
	 * the trace goes to /dev/null. */
	if (!c->xs_trace) {
		char trace[PATH_MAX];

		path_in(trace, sizeof(trace), bench_host.xs_dir, "trace.log");
		if (symlink("/dev/null", trace) < 0 && errno != EEXIST)
			die("cannot link %s: %s", trace, strerror(errno));
	}
	bench_host.xs_started = true;
	r = proc_run(argv, NULL, 20000);
	if (r != 0)
		die("cannot start xenstored (%s exited with %d; is "
		    "contrib/install-deps.sh done?)",
		    script, r);
	setenv("XENSTORED_PATH", sock, 1);
	setenv("VPROXY_XSSHIM_DIR", bench_host.xs_dir, 1);
	msg(c, "xenstored running at %s", sock);
}

static void open_xs(void)
{
	if (!bench_host.xs && !(bench_host.xs = xs_open(0)))
		die("cannot connect to xenstored at %s: %s",
		    getenv("XENSTORED_PATH") ? getenv("XENSTORED_PATH") : "(default)",
		    strerror(errno));
}

bool log_has(const char *path, const char *needle)
{
	char line[1024];
	bool found = false;
	FILE *f = fopen(path, "re");

	if (!f)
		return false;
	while (!found && fgets(line, sizeof(line), f))
		found = strstr(line, needle) != NULL;
	fclose(f);
	return found;
}

/* Print the last lines of a log, to show why something failed. */
void tail_file(const char *path, unsigned lines)
{
	char ring[16][256];
	unsigned n = 0;
	FILE *f = fopen(path, "re");

	if (!f)
		return;
	if (lines > 16)
		lines = 16;
	while (fgets(ring[n % lines], sizeof(ring[0]), f))
		n++;
	fclose(f);
	fprintf(stderr, "--- %s ---\n", path);
	for (unsigned i = n > lines ? n - lines : 0; i < n; i++)
		fputs(ring[i % lines], stderr);
}

static bool reads_only(const struct cfg *c)
{
	return strcmp(c->rw, "read") == 0 || strcmp(c->rw, "randread") == 0;
}

/* raw and sparse lock their file for a writable device, so guests share
 * one file only as read-only devices (reads without --verify); otherwise
 * guest i > 0 gets its own copy. */
bool shared_store(const struct cfg *c)
{
	return strcmp(c->plugin, "mem") != 0 && reads_only(c) && !c->verify;
}

/* The backing file of guest i's device (raw, sparse). */
static void guest_file(const struct cfg *c, unsigned i, char *out, size_t len)
{
	char name[32];

	if (i == 0 || shared_store(c)) {
		fmt(out, len, "%s", c->file);
		return;
	}
	snprintf(name, sizeof(name), "disk-%u.img", i);
	path_in(out, len, bench_host.work, name);
}

/* Copies of the file for guests 1..n-1 when they cannot share it. */
static void copy_guest_files(const struct cfg *c, unsigned n)
{
	for (unsigned i = 1; i < n && strcmp(c->plugin, "mem") != 0 && !shared_store(c);
	     i++) {
		char dst[PATH_MAX];
		char *argv[] = {"/bin/cp", "--sparse=always", "--reflink=auto",
		                "--",      (char *)c->file,   dst,
		                NULL};
		struct stat st;
		int r;

		guest_file(c, i, dst, sizeof(dst));
		if (stat(dst, &st) == 0)
			continue;
		r = proc_run(argv, NULL, 600000);
		if (r != 0)
			die("cannot copy %s for guest %u (cp exited with %d)", c->file, i,
			    r);
	}
}

unsigned queue_size_for(unsigned iodepth)
{
	unsigned qs = 256;

	while (qs < iodepth && qs < VP_CONFIG_MAX_QUEUE_SIZE)
		qs *= 2;
	return qs;
}

static void write_vproxyd_config(const struct cfg *c, unsigned guests, unsigned iodepth,
                                 const char *path, const char *run_dir)
{
	FILE *f = fopen(path, "we");
	char plugdir[PATH_MAX];

	if (!f)
		die("cannot write %s: %s", path, strerror(errno));
	path_in(plugdir, sizeof(plugdir), bench_host.build, "plugins");
	/* info at least: start-up is detected by its "serving" line */
	fprintf(f,
	        "[vproxyd]\nhypervisor = sim\nrun-dir = %s\nplugin-dir = %s\nlog-level = "
	        "%s\n",
	        run_dir, plugdir,
	        getenv("VPROXY_LOG_LEVEL") &&
	                        strcmp(getenv("VPROXY_LOG_LEVEL"), "debug") == 0
	                ? "debug"
	                : "info");
	/* Polling as vproxyd does by default unless told otherwise. */
	if (!c->poll_auto)
		fprintf(f, "poll-us = %u\n", c->poll_us);
	if (c->poll_max_us)
		fprintf(f, "poll-max-us = %u\n", c->poll_max_us);
	fprintf(f, "\n");
	for (unsigned i = 0; i < guests; i++) {
		fprintf(f,
		        "[device bench%u]\nguest = %u\nid = 0\nplugin = %s\nqueues = "
		        "%u\n",
		        i, c->first_domid + i, c->plugin, c->queues);
		fprintf(f, "queue-size = %u\n", queue_size_for(iodepth));
		if (strcmp(c->plugin, "mem") == 0) {
			fprintf(f, "size = %" PRIu64 "\n", c->size);
		} else {
			char file[PATH_MAX];

			guest_file(c, i, file, sizeof(file));
			fprintf(f, "file = %s\n", file);
			if (shared_store(c))
				fprintf(f, "read-only = yes\n");
			if (c->direct)
				fprintf(f, "direct = %s\n", c->direct);
			if (c->engine)
				fprintf(f, "engine = %s\n", c->engine);
		}
		for (unsigned k = 0; k < c->nparams; k++) {
			const char *eq = strchr(c->params[k], '=');

			fprintf(f, "%.*s = %s\n", (int)(eq - c->params[k]), c->params[k],
			        eq + 1);
		}
		fprintf(f, "\n");
	}
	if (fclose(f) != 0)
		die("cannot write %s", path);
}

void start_vproxyd(const struct cfg *c, unsigned guests, unsigned iodepth,
                   const char *run_dir)
{
	char conf[PATH_MAX], log[PATH_MAX], bin[PATH_MAX];
	char *argv[] = {bin, "--foreground", "--config", conf, NULL};
	uint64_t deadline;

	path_in(conf, sizeof(conf), bench_host.work, "vproxyd.ini");
	path_in(log, sizeof(log), bench_host.work, "vproxyd.log");
	path_in(bin, sizeof(bin), bench_host.build, "core/vproxyd");
	copy_guest_files(c, guests);
	write_vproxyd_config(c, guests, iodepth, conf, run_dir);
	unlink(log);
	bench_host.server = proc_spawn(argv, log);
	if (bench_host.server < 0)
		die("cannot start %s: %s", bin, strerror(-bench_host.server));
	deadline = proc_now_ns() + 15 * NSEC;
	while (!log_has(log, " serving ")) {
		if (proc_poll(bench_host.server) != -EBUSY) {
			bench_host.server = 0;
			tail_file(log, 30);
			die("vproxyd exited during start-up");
		}
		if (proc_now_ns() > deadline)
			die("vproxyd did not start within 15 s (log: %s)", log);
		usleep(5000);
	}
}

static void simctl(const char *cmd, unsigned domid)
{
	char bin[PATH_MAX], dom[16], name[32], log[PATH_MAX];
	char *argv[] = {bin, (char *)cmd, dom, name, NULL};
	int r;

	path_in(bin, sizeof(bin), bench_host.build, "contrib/sim/vproxy-simctl");
	path_in(log, sizeof(log), bench_host.work, "simctl.log");
	snprintf(dom, sizeof(dom), "%u", domid);
	snprintf(name, sizeof(name), "bench%u", domid);
	if (strcmp(cmd, "create") != 0)
		argv[3] = NULL;
	r = proc_run(argv, log, 30000);
	if (r != 0 && strcmp(cmd, "create") == 0)
		die("vproxy-simctl create %u failed (%d); see %s", domid, r, log);
}

/* Create the domains and wait until vproxyd has every backend in InitWait.
 * Milliseconds it took. */
double provision(const struct cfg *c, unsigned guests)
{
	uint64_t t0 = proc_now_ns(), deadline;
	unsigned ready = 0;

	open_xs();
	for (unsigned i = 0; i < guests; i++)
		simctl("create", c->first_domid + i);
	deadline = proc_now_ns() + (uint64_t)c->timeout_s * NSEC;
	while (ready < guests) {
		char path[96];
		unsigned len;
		char *v;

		snprintf(path, sizeof(path), "/local/domain/0/backend/vproxy/%u/0/state",
		         c->first_domid + ready);
		v = xs_read(bench_host.xs, XBT_NULL, path, &len);
		if (v && strcmp(v, "2") == 0) {
			free(v);
			ready++;
			continue;
		}
		free(v);
		if (interrupted)
			die("interrupted");
		if (bench_host.server > 0 && proc_poll(bench_host.server) != -EBUSY) {
			bench_host.server = 0;
			die("the server exited while devices were provisioned");
		}
		if (proc_now_ns() > deadline)
			die("device of domain %u not provisioned in %u s (see "
			    "%s/vproxyd.log)",
			    c->first_domid + ready, c->timeout_s, bench_host.work);
		usleep(2000);
	}
	return (double)(proc_now_ns() - t0) / 1e6;
}

void destroy_domains(const struct cfg *c, unsigned guests)
{
	for (unsigned i = 0; i < guests; i++)
		simctl("destroy", c->first_domid + i);
}

/* ---- the backing store ---- */

static void fill_file(const char *path, uint64_t size)
{
	size_t chunk = 1u << 20;
	uint64_t *buf = malloc(chunk), x = 0x243f6a8885a308d3ull;
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	if (fd < 0 || !buf)
		die("cannot create %s: %s", path, strerror(errno));
	for (uint64_t off = 0; off < size; off += chunk) {
		size_t n = size - off < chunk ? (size_t)(size - off) : chunk;

		/* Not zeroes, so no layer can short-cut reads of it. */
		for (size_t i = 0; i < n / 8; i++) {
			x += 0x9e3779b97f4a7c15ull;
			buf[i] = x ^ (x >> 29);
		}
		if (write(fd, buf, n) != (ssize_t)n)
			die("cannot fill %s: %s", path, strerror(errno));
	}
	if (fsync(fd) < 0 || close(fd) < 0)
		die("cannot write %s: %s", path, strerror(errno));
	free(buf);
}

/* The file fio and qsd use (and vproxyd for raw/sparse).  For the RAM
 * plugin it is a file of the same size on tmpfs. */
const char *store_file(struct cfg *c)
{
	struct stat st;

	if (c->file) {
		/* raw: a file that is not there yet is laid out, as for the
		 * bench's own; one that is there is used as it is. */
		if (strcmp(c->plugin, "raw") == 0 && stat(c->file, &st) < 0) {
			if (errno != ENOENT)
				die("cannot use %s: %s", c->file, strerror(errno));
			msg(c, "laying out %s (%" PRIu64 " MiB)", c->file,
			    c->size >> 20);
			fill_file(c->file, c->size);
		}
		return c->file;
	}
	if (strcmp(c->plugin, "mem") == 0)
		snprintf(bench_host.store, sizeof(bench_host.store),
		         "/dev/shm/vproxy-bench-%d.img", (int)getpid());
	else if (strcmp(c->plugin, "raw") == 0)
		path_in(bench_host.store, sizeof(bench_host.store), bench_host.work,
		        "disk.img");
	else
		die("--plugin %s needs --file (an image made with vproxy-img)",
		    c->plugin);
	if (stat(bench_host.store, &st) < 0 || (uint64_t)st.st_size != c->size) {
		msg(c, "laying out %s (%" PRIu64 " MiB)", bench_host.store,
		    c->size >> 20);
		fill_file(bench_host.store, c->size);
	}
	if (strcmp(c->plugin, "mem") != 0)
		c->file = bench_host.store;
	return bench_host.store;
}
