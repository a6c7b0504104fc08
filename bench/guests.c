/* SPDX-License-Identifier: MIT */
/*
 * Running the guests of one target: one vproxy-bench-guest process each,
 * a common measured window through the control file (ctl.h), server CPU,
 * wake-ups and system calls sampled at its edges, results collected from
 * the guests' files.
 */
#include "bench.h"
#include "ctl.h"
#include "hist.h"
#include "proc.h"
#include "srvstat.h"

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

/* ---- running guests ---- */

static void *map_ctl(const char *path, unsigned n)
{
	uint64_t len = bench_ctl_bytes(n);
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	struct bench_ctl_hdr *h;

	if (fd < 0 || ftruncate(fd, (off_t)len) < 0)
		die("cannot create %s: %s", path, strerror(errno));
	h = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (h == MAP_FAILED)
		die("cannot map %s: %s", path, strerror(errno));
	h->magic = BENCH_CTL_MAGIC;
	h->version = BENCH_CTL_VERSION;
	h->nguests = n;
	return h;
}

static int parse_result(const char *path, struct guest_result *g)
{
	char line[512];
	FILE *f = fopen(path, "re");

	hist_init(&g->lat_r);
	hist_init(&g->lat_w);
	if (!f)
		return -errno;
	g->ok = true;
	while (fgets(line, sizeof(line), f)) {
		char *nl = strchr(line, '\n');
		unsigned long long v;

		if (nl)
			*nl = '\0';
		if (strncmp(line, "error ", 6) == 0) {
			memcpy(g->error, line + 6,
			       strnlen(line + 6, sizeof(g->error) - 1));
			g->ok = false;
		} else if (strncmp(line, "mismatch ", 9) == 0) {
			memcpy(g->mismatch, line + 9,
			       strnlen(line + 9, sizeof(g->mismatch) - 1));
		} else if (hist_parse_line(&g->lat_r, "lat_read", line) ||
		           hist_parse_line(&g->lat_w, "lat_write", line)) {
			continue;
		}
#define FIELD(name) else if (sscanf(line, #name " %llu", &v) == 1) g->name = v
		FIELD(window_ns);
		FIELD(reads);
		FIELD(writes);
		FIELD(read_bytes);
		FIELD(write_bytes);
		FIELD(verified);
		FIELD(mismatches);
		FIELD(kicks);
		FIELD(kicks_saved);
		FIELD(waits);
		FIELD(irqs);
		FIELD(notifies);
		FIELD(sleeps);
		FIELD(kick_writes);
		FIELD(irq_calls);
#undef FIELD
	}
	fclose(f);
	return 0;
}

static double guests_cpu(void)
{
	double s = 0;

	for (unsigned i = 0; i < bench_host.nguests; i++) {
		double v = bench_host.guests[i] > 0
		                   ? proc_cpu_seconds(bench_host.guests[i])
		                   : -1;

		if (v > 0)
			s += v;
	}
	return s;
}

static void progress(const struct cfg *c, const char *target, struct bench_ctl_hdr *h,
                     uint64_t start, uint64_t end, uint64_t *last_ios, uint64_t *last_t)
{
	struct bench_ctl_guest *slot = (struct bench_ctl_guest *)(h + 1);
	uint64_t ios = 0, t = proc_now_ns();
	unsigned running = 0;

	if (!c->progress)
		return;
	for (unsigned i = 0; i < h->nguests; i++) {
		ios += __atomic_load_n(&slot[i].ios, __ATOMIC_RELAXED);
		running +=
		        __atomic_load_n(&slot[i].state, __ATOMIC_RELAXED) == BG_RUNNING;
	}
	if (*last_t && t > *last_t)
		fprintf(stderr,
		        "\r\033[K[%s] %5.1f/%.1f s  %9.0f IOPS  %u/%u guests running",
		        target, t > start ? (double)(t - start) / 1e9 : 0,
		        (double)(end - start) / 1e9,
		        (double)(ios - *last_ios) * 1e9 / (double)(t - *last_t), running,
		        h->nguests);
	*last_ios = ios;
	*last_t = t;
}

/* Reap guest i if it exited; true if it has (status in bench_host.gstatus). */
static bool guest_exited(unsigned i)
{
	int r;

	if (bench_host.guests[i] <= 0)
		return true;
	r = proc_poll(bench_host.guests[i]);
	if (r == -EBUSY)
		return false;
	bench_host.gstatus[i] = r;
	bench_host.guests[i] = 0;
	return true;
}

/* A guest that said it failed, or exited before finishing its run. */
static bool any_failed(struct bench_ctl_hdr *h, unsigned *which)
{
	struct bench_ctl_guest *slot = (struct bench_ctl_guest *)(h + 1);

	for (unsigned i = 0; i < h->nguests; i++) {
		uint64_t st = __atomic_load_n(&slot[i].state, __ATOMIC_ACQUIRE);

		if (st == BG_FAILED || (guest_exited(i) && st < BG_DONE)) {
			*which = i;
			return true;
		}
	}
	return false;
}

/* Sleep until t, showing progress; false if a guest failed or ^C. */
static bool sleep_until(const struct cfg *c, const struct guest_run *gr,
                        struct bench_ctl_hdr *h, uint64_t t, uint64_t start, uint64_t end,
                        uint64_t *li, uint64_t *lt, unsigned *bad)
{
	while (proc_now_ns() < t) {
		uint64_t left = t - proc_now_ns();

		if (interrupted || any_failed(h, bad))
			return false;
		usleep((useconds_t)((left < 100 * MSEC ? left : 100 * MSEC) / 1000 + 1));
		if (proc_now_ns() - *lt >= PROGRESS_NS)
			progress(c, gr->target, h, start, end, li, lt);
	}
	return true;
}

void fail_target(struct target_result *t, const char *fmt, ...)
{
	va_list ap;

	if (!t->ok && t->error[0])
		return;
	t->ok = false;
	va_start(ap, fmt);
	vsnprintf(t->error, sizeof(t->error), fmt, ap);
	va_end(ap);
}

static void guest_argv(const struct cfg *c, const struct guest_run *gr, unsigned i,
                       char store[][PATH_MAX], char **argv)
{
	unsigned n = 0, s = 0;

#define ARG(...)                                                                         \
	do {                                                                             \
		fmt(store[s], PATH_MAX, __VA_ARGS__);                                    \
		argv[n++] = store[s++];                                                  \
	} while (0)
	ARG("%s/bench/vproxy-bench-guest", bench_host.build);
	ARG("--index=%u", i);
	ARG("--ctl=%s/ctl", bench_host.work);
	ARG("--result=%s/%s-%u.res", bench_host.work, gr->target, i);
	if (gr->vhost) {
		ARG("--transport=vhost-user");
		ARG("--socket=%s/vhu%u.sock", bench_host.work, i);
	} else {
		ARG("--transport=vproxy");
		ARG("--domid=%u", c->first_domid + i);
		ARG("--run-dir=%s", gr->run_dir);
		ARG("--addr-mode=%s", c->addr_mode);
	}
	ARG("--rw=%s", c->rw);
	ARG("--rwmixread=%u", c->rwmixread);
	ARG("--bs=%" PRIu64, c->bs);
	ARG("--iodepth=%u", gr->iodepth);
	ARG("--queues=%u", c->queues);
	ARG("--queue-size=%u", queue_size_for(gr->iodepth));
	ARG("--runtime-ms=%.0f", c->runtime * 1e3);
	ARG("--ramp-ms=%.0f", c->ramp * 1e3);
	ARG("--size=%" PRIu64, c->size);
	if (gr->vhost || shared_store(c))
		ARG("--slice=%u/%u", i, gr->guests);
	if (gr->prefill)
		ARG("--prefill");
	if (c->verify)
		ARG("--verify");
	ARG("--spin-us=%u", c->spin_us);
	ARG("--seed=%" PRIu64, c->seed);
	ARG("--timeout-s=%u", c->timeout_s);
	argv[n] = NULL;
#undef ARG
}

#define GUEST_ARGS 32

/* The xenstored we started, or 0. */
static pid_t xenstored_pid(void)
{
	char path[PATH_MAX];
	FILE *f;
	int pid = 0;

	if (!bench_host.xs_started)
		return 0;
	path_in(path, sizeof(path), bench_host.xs_dir, "xenstored.pid");
	f = fopen(path, "re");
	if (!f)
		return 0;
	if (fscanf(f, "%d", &pid) != 1)
		pid = 0;
	fclose(f);
	return pid;
}

/* Start counting the server's wake-ups and system calls (srvstat.h). */
static void server_counters_start(const struct cfg *c, pid_t server, struct srv_snap *w0,
                                  struct srv_sys *sys)
{
	static bool told;
	char why[256];

	if (srv_snap_take(w0, server) < 0)
		msg(c, "server wake-ups not counted: cannot read /proc/%d/task",
		    (int)server);
	if (srv_sys_open(sys, server, why, sizeof(why)) < 0 && !told) {
		/* Not a failure: the counter is reported as unknown. */
		msg(c, "server system calls not counted: %s", why);
		told = true;
	}
}

/* Read them at the window's end into t. */
static void server_counters_end(pid_t server, const struct srv_snap *w0,
                                const struct srv_sys *sys, struct target_result *t)
{
	struct srv_snap w1;

	if (sys->n && srv_sys_read(sys, &t->server_syscalls) == 0) {
		t->syscalls_known = true;
		t->syscall_threads = (unsigned)sys->n;
	}
	if (w0->n && srv_snap_take(&w1, server) == 0) {
		t->server_wakeups = srv_snap_delta(w0, &w1);
		t->wakeups_known = true;
		srv_snap_free(&w1);
	}
}

/* Start the guests, run them through one common window, collect. */
void run_guests(const struct cfg *c, const struct guest_run *gr, struct target_result *t)
{
	char ctl[PATH_MAX];
	struct bench_ctl_hdr *h;
	struct bench_ctl_guest *slot;
	uint64_t t0, go, ws, we, deadline, li = 0, lt = 0, *spawned;
	double cpu0 = -1, cpu1 = -1, g0 = 0, g1 = 0, acpu0, xcpu0, acpu1 = -1, xcpu1 = -1;
	unsigned bad = 0, ready = 0;
	pid_t xs_pid;
	struct srv_snap wake0 = {0};
	struct srv_sys sys = {0};
	static char store[GUEST_ARGS][PATH_MAX];
	char *argv[GUEST_ARGS + 1];

	t->guests = gr->guests;
	t->iodepth = gr->iodepth;
	t->queues = c->queues;
	t->g = calloc(gr->guests, sizeof(*t->g));
	spawned = calloc(gr->guests, sizeof(*spawned));
	bench_host.guests = calloc(gr->guests, sizeof(*bench_host.guests));
	bench_host.gstatus = calloc(gr->guests, sizeof(*bench_host.gstatus));
	if (!t->g || !spawned || !bench_host.guests || !bench_host.gstatus)
		die("out of memory");
	bench_host.nguests = gr->guests;
	path_in(ctl, sizeof(ctl), bench_host.work, "ctl");
	h = map_ctl(ctl, gr->guests);
	slot = (struct bench_ctl_guest *)(h + 1);
	xs_pid = gr->vhost ? 0 : xenstored_pid();
	acpu0 = proc_cpu_seconds(gr->server);
	xcpu0 = xs_pid ? proc_cpu_seconds(xs_pid) : -1;
	t0 = proc_now_ns();
	for (unsigned i = 0; i < gr->guests; i++) {
		char log[PATH_MAX + 32];

		snprintf(log, sizeof(log), "%s/%s-guest-%u.log", bench_host.work,
		         gr->target, i);
		guest_argv(c, gr, i, store, argv);
		spawned[i] = proc_now_ns();
		bench_host.guests[i] = proc_spawn(argv, log);
		if (bench_host.guests[i] < 0)
			die("cannot start %s: %s", argv[0],
			    strerror(-bench_host.guests[i]));
	}
	/* Every guest attached and prepared (prefill can take a while). */
	deadline = proc_now_ns() + (uint64_t)c->timeout_s * NSEC +
	           (gr->prefill ? 60 * NSEC : 0);
	while (ready < gr->guests) {
		unsigned attached = 0;

		ready = 0;
		for (unsigned i = 0; i < gr->guests; i++) {
			uint64_t st = __atomic_load_n(&slot[i].state, __ATOMIC_ACQUIRE);

			ready += st == BG_READY;
			attached += st >= BG_ATTACHED && st <= BG_READY;
		}
		/* CPU spent on attaching alone, before any prefill I/O. */
		if (attached == gr->guests && acpu1 < 0) {
			acpu1 = proc_cpu_seconds(gr->server);
			xcpu1 = xs_pid ? proc_cpu_seconds(xs_pid) : -1;
			if (acpu1 < 0)
				acpu1 = 0;
		}
		if (interrupted) {
			fail_target(t, "interrupted");
			goto stop;
		}
		if (any_failed(h, &bad)) {
			fail_target(t,
			            "guest %u failed while attaching (log: "
			            "%s/%s-guest-%u.log)",
			            bad, bench_host.work, gr->target, bad);
			goto stop;
		}
		if (proc_now_ns() > deadline) {
			fail_target(t, "only %u of %u guests ready after %u s", ready,
			            gr->guests, c->timeout_s);
			goto stop;
		}
		if (ready < gr->guests)
			usleep(1000);
	}
	{
		uint64_t last = 0;
		t->attach_server_cpu_s = acpu1 > 0 && acpu0 >= 0 ? acpu1 - acpu0 : -1;
		t->attach_xs_cpu_s = xcpu1 >= 0 && xcpu0 >= 0 ? xcpu1 - xcpu0 : -1;
		for (unsigned i = 0; i < gr->guests; i++) {
			uint64_t a =
			        __atomic_load_n(&slot[i].attached_ns, __ATOMIC_RELAXED);

			t->g[i].attach_ms =
			        a > spawned[i] ? (double)(a - spawned[i]) / 1e6 : 0;
			if (a > last)
				last = a;
		}
		t->attach_ms = last > t0 ? (double)(last - t0) / 1e6 : 0;
	}
	go = proc_now_ns() + GO_MARGIN_NS;
	ws = go + (uint64_t)(c->ramp * 1e9);
	we = ws + (uint64_t)(c->runtime * 1e9);
	__atomic_store_n(&h->go_ns, go, __ATOMIC_RELEASE);
	if (!sleep_until(c, gr, h, ws, go, we, &li, &lt, &bad))
		goto window_failed;
	cpu0 = proc_cpu_seconds(gr->server);
	g0 = guests_cpu();
	server_counters_start(c, gr->server, &wake0, &sys);
	if (!sleep_until(c, gr, h, we, go, we, &li, &lt, &bad))
		goto window_failed;
	server_counters_end(gr->server, &wake0, &sys, t);
	cpu1 = proc_cpu_seconds(gr->server);
	g1 = guests_cpu();
	t->server_rss_kib = proc_peak_rss_kib(gr->server);
	if (c->progress)
		fprintf(stderr, "\r\033[K");
	/* Drain, verify pass, detach: bounded by the guests' own timeouts. */
	deadline = proc_now_ns() + (uint64_t)c->timeout_s * NSEC + 60 * NSEC;
	for (unsigned i = 0; i < gr->guests; i++) {
		uint64_t now = proc_now_ns();
		char res[PATH_MAX + 32];
		int r;

		if (bench_host.guests[i] > 0) {
			r = now < deadline
			            ? proc_wait(bench_host.guests[i],
			                        (unsigned)((deadline - now) / MSEC))
			            : proc_poll(bench_host.guests[i]);
			if (r == -ETIMEDOUT || r == -EBUSY) {
				fail_target(t, "guest %u did not finish", i);
				continue;
			}
			bench_host.guests[i] = 0;
			bench_host.gstatus[i] = r;
		}
		r = bench_host.gstatus[i];
		snprintf(res, sizeof(res), "%s/%s-%u.res", bench_host.work, gr->target,
		         i);
		if (parse_result(res, &t->g[i]) < 0) {
			fail_target(t,
			            "guest %u left no result (exit %d; log "
			            "%s/%s-guest-%u.log)",
			            i, r, bench_host.work, gr->target, i);
			continue;
		}
		if (!t->g[i].ok)
			fail_target(t, "guest %u: %s", i, t->g[i].error);
		else if (r != 0 && !t->g[i].mismatches)
			fail_target(t, "guest %u exited with %d", i, r);
	}
	t->server_cpu_s = cpu1 >= 0 && cpu0 >= 0 ? cpu1 - cpu0 : -1;
	t->guest_cpu_s = g1 - g0;
	report_summarise(t);
	if (t->mismatches)
		fail_target(t, "data mismatch: %s",
		            t->g[0].mismatch[0] ? t->g[0].mismatch : "");
	goto out;

window_failed:
	if (c->progress)
		fprintf(stderr, "\r\033[K");
	if (interrupted)
		fail_target(t, "interrupted");
	else
		fail_target(t, "guest %u failed (log: %s/%s-guest-%u.log)", bad,
		            bench_host.work, gr->target, bad);
stop:
	__atomic_store_n(&h->abort, 1, __ATOMIC_RELEASE);
	for (unsigned i = 0; i < gr->guests; i++) {
		if (bench_host.guests[i] > 0 &&
		    proc_wait(bench_host.guests[i], 5000) == -ETIMEDOUT)
			proc_stop(bench_host.guests[i], 2000);
		bench_host.guests[i] = 0;
	}
	if (bad < gr->guests) {
		char log[PATH_MAX + 32];

		snprintf(log, sizeof(log), "%s/%s-guest-%u.log", bench_host.work,
		         gr->target, bad);
		tail_file(log, 10);
	}
out:
	srv_sys_close(&sys);
	srv_snap_free(&wake0);
	stop_guests();
	munmap(h, bench_ctl_bytes(gr->guests));
	free(spawned);
}
