/* SPDX-License-Identifier: MIT */
/*
 * The targets of a run: vproxyd, qemu-storage-daemon (the peer), fio and
 * memcpy (the limits), and the plot of a sweep.
 */
#include "bench.h"
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

/* ---- targets ---- */

static bool wants_prefill(const struct cfg *c, bool store_is_laid_out)
{
	bool reads = strcmp(c->rw, "write") != 0 && strcmp(c->rw, "randwrite") != 0 &&
	             strcmp(c->rw, "idle") != 0;

	if (c->prefill >= 0)
		return c->prefill || c->verify;
	return c->verify || (reads && !store_is_laid_out);
}

void run_vproxy(const struct cfg *c, unsigned guests, unsigned iodepth,
                struct target_result *t)
{
	char run_dir[PATH_MAX];
	struct guest_run gr = {.target = "vproxy", .guests = guests, .iodepth = iodepth};

	snprintf(t->name, sizeof(t->name), "vproxy");
	t->ran = t->ok = true;
	if (c->attach_pid) {
		snprintf(run_dir, sizeof(run_dir), "%s", c->run_dir);
		gr.server = c->attach_pid;
	} else {
		path_in(run_dir, sizeof(run_dir), bench_host.work, "run");
		mkdir(run_dir, 0700);
		start_xenstored(c);
		start_vproxyd(c, guests, iodepth, run_dir);
		gr.server = bench_host.server;
	}
	gr.run_dir = run_dir;
	/* A RAM disk starts as holes: read workloads write it first. */
	gr.prefill = wants_prefill(c, strcmp(c->plugin, "mem") != 0);
	t->provision_ms = provision(c, guests);
	msg(c, "vproxy: %u device(s) provisioned in %.0f ms; starting guests", guests,
	    t->provision_ms);
	run_guests(c, &gr, t);
	if (c->attach_pid) {
		destroy_domains(c, guests);
	} else {
		char log[PATH_MAX];
		int st = stop_server();

		stop_xenstored();
		path_in(log, sizeof(log), bench_host.work, "vproxyd.log");
		/* A sanitizer report or a crash on the way out is a failure. */
		if (st != 0 || log_has(log, "AddressSanitizer") ||
		    log_has(log, "runtime error")) {
			fail_target(t, "vproxyd exited with %d (log %s)", st, log);
			tail_file(log, 12);
		}
	}
}

void run_qsd(const struct cfg *c, unsigned guests, unsigned iodepth,
             struct target_result *t)
{
	const char *file = store_file((struct cfg *)c);
	char(*args)[PATH_MAX + 64] = calloc(guests * 2 + 8, sizeof(*args));
	char **argv = calloc(guests * 2 + 9, sizeof(char *));
	char log[PATH_MAX];
	struct guest_run gr = {
	        .target = "qsd", .vhost = true, .guests = guests, .iodepth = iodepth};
	bool direct = c->direct && strcmp(c->direct, "on") == 0;
	const char *aio =
	        c->engine && strcmp(c->engine, "threads") == 0 ? "threads" : "io_uring";
	unsigned n = 0;

	snprintf(t->name, sizeof(t->name), "qsd");
	t->ran = t->ok = true;
	if (!args || !argv)
		die("out of memory");
	snprintf(args[n++], sizeof(args[0]), "/usr/bin/qemu-storage-daemon");
	snprintf(args[n++], sizeof(args[0]), "--object");
	if (c->qsd_poll_ns >= 0)
		fmt(args[n++], sizeof(args[0]), "iothread,id=iot0,poll-max-ns=%ld",
		    c->qsd_poll_ns);
	else
		fmt(args[n++], sizeof(args[0]), "iothread,id=iot0");
	fmt(args[n++], sizeof(args[0]), "--blockdev");
	fmt(args[n++], sizeof(args[0]),
	    "driver=file,node-name=disk0,filename=%s,cache.direct=%s,aio=%s,locking=off",
	    file, direct ? "on" : "off", aio);
	for (unsigned i = 0; i < guests; i++) {
		fmt(args[n++], sizeof(args[0]), "--export");
		fmt(args[n++], sizeof(args[0]),
		    "type=vhost-user-blk,id=exp%u,node-name=disk0,addr.type=unix,"
		    "addr.path=%s/vhu%u.sock,writable=on,num-queues=%u,iothread=iot0",
		    i, bench_host.work, i, c->queues);
	}
	for (unsigned i = 0; i < n; i++)
		argv[i] = args[i];
	path_in(log, sizeof(log), bench_host.work, "qsd.log");
	bench_host.server = proc_spawn(argv, log);
	if (bench_host.server < 0)
		die("cannot start qemu-storage-daemon: %s", strerror(-bench_host.server));
	gr.server = bench_host.server;
	gr.prefill = wants_prefill(c, true);
	msg(c, "qsd: pid %d serving %s to %u guest(s)", (int)bench_host.server, file,
	    guests);
	run_guests(c, &gr, t);
	if (!t->ok && proc_poll(bench_host.server) != -EBUSY) {
		bench_host.server = 0;
		tail_file(log, 10);
	}
	stop_server();
	free(args);
	free(argv);
}

/* fio's terse (v3) output: fields are 1-based, read side from 6, write
 * side 41 fields later; latencies in microseconds. */
#define FIO_READ_IOPS 8
#define FIO_READ_BW 7
#define FIO_READ_PCT 18
#define FIO_READ_LAT 38
#define FIO_WRITE_OFF 41

static double fio_pct(char **f, unsigned base, const char *which)
{
	for (unsigned i = 0; i < 20; i++) {
		const char *s = f[base + i];

		if (s && strncmp(s, which, strlen(which)) == 0 && s[strlen(which)] == '%')
			return strtod(strchr(s, '=') + 1, NULL);
	}
	return 0;
}

void run_fio(const struct cfg *c, unsigned guests, unsigned iodepth,
             struct target_result *t)
{
	const char *file = store_file((struct cfg *)c);
	char a[24][PATH_MAX + 32], out[PATH_MAX], line[8192];
	char *argv[25], *f[200] = {0};
	unsigned n = 0, nf = 0;
	bool direct = c->direct && strcmp(c->direct, "on") == 0;
	FILE *fp;
	int r;

	snprintf(t->name, sizeof(t->name), "fio");
	t->ran = t->ok = true;
	t->guests = guests;
	t->queues = c->queues;
	t->iodepth = iodepth;
	path_in(out, sizeof(out), bench_host.work, "fio.out");
#define A(...) snprintf(a[n++], sizeof(a[0]), __VA_ARGS__)
	A("/usr/bin/fio");
	A("--name=baseline");
	A("--filename=%s", file);
	A("--size=%" PRIu64, c->size);
	A("--rw=%s", c->rw);
	A("--rwmixread=%u", c->rwmixread);
	A("--bs=%" PRIu64, c->bs);
	A("--iodepth=%u", iodepth);
	A("--numjobs=%u", guests * c->queues);
	A("--ioengine=io_uring");
	A("--direct=%d", direct);
	A("--time_based=1");
	A("--runtime=%.0fms", c->runtime * 1e3);
	A("--ramp_time=%.0fms", c->ramp * 1e3);
	A("--group_reporting=1");
	A("--lat_percentiles=1");
	A("--percentile_list=50:99:99.9");
	A("--randrepeat=0");
	A("--output-format=terse");
	A("--terse-version=3");
	A("--output=%s", out);
#undef A
	for (unsigned i = 0; i < n; i++)
		argv[i] = a[i];
	argv[n] = NULL;
	msg(c, "fio: %u job(s) x iodepth %u on %s", guests * c->queues, iodepth, file);
	unlink(out);
	r = proc_run(argv, NULL, (unsigned)((c->runtime + c->ramp + 60) * 1000));
	fp = r == 0 ? fopen(out, "re") : NULL;
	if (!fp || !fgets(line, sizeof(line), fp)) {
		fail_target(t, "fio failed (exit %d)", r);
		if (fp)
			fclose(fp);
		return;
	}
	fclose(fp);
	for (char *save = NULL, *tok = strtok_r(line, ";", &save); tok && nf < 199;
	     tok = strtok_r(NULL, ";", &save))
		f[++nf] = tok;
	if (nf < FIO_READ_LAT + FIO_WRITE_OFF + 3) {
		fail_target(t, "fio printed %u fields", nf);
		return;
	}
	{
		struct summary *s = &t->sum;
		unsigned w = FIO_WRITE_OFF;
		double rl = strtod(f[FIO_READ_LAT + 2], NULL),
		       wl = strtod(f[FIO_READ_LAT + w + 2], NULL);
		double rmax = strtod(f[FIO_READ_LAT + 1], NULL),
		       wmax = strtod(f[FIO_READ_LAT + w + 1], NULL);

		s->read_iops = strtod(f[FIO_READ_IOPS], NULL);
		s->write_iops = strtod(f[FIO_READ_IOPS + w], NULL);
		s->iops = s->read_iops + s->write_iops;
		s->mb_s = (strtod(f[FIO_READ_BW], NULL) +
		           strtod(f[FIO_READ_BW + w], NULL)) *
		          1024 / 1e6;
		s->mean_us = s->iops > 0
		                     ? (rl * s->read_iops + wl * s->write_iops) / s->iops
		                     : 0;
		/* Mixed: the slower direction's percentile, a bound for both. */
		s->p50_us = fmax(fio_pct(f, FIO_READ_PCT, "50.000000"),
		                 fio_pct(f, FIO_READ_PCT + w, "50.000000"));
		s->p99_us = fmax(fio_pct(f, FIO_READ_PCT, "99.000000"),
		                 fio_pct(f, FIO_READ_PCT + w, "99.000000"));
		s->p999_us = fmax(fio_pct(f, FIO_READ_PCT, "99.900000"),
		                  fio_pct(f, FIO_READ_PCT + w, "99.900000"));
		s->max_us = fmax(rmax, wmax);
	}
}

/* The RAM plugin's limit: one thread copying bs-sized blocks from random
 * places of a RAM disk-sized buffer. */
void run_memcpy(const struct cfg *c, struct target_result *t)
{
	size_t span = c->size > (1ull << 30) ? 1ull << 30 : (size_t)c->size;
	uint64_t nblk = span / c->bs, x = 1, copies = 0, t0, t1;
	uint8_t *src = malloc(span), *dst = malloc(c->bs);

	snprintf(t->name, sizeof(t->name), "memcpy");
	t->ran = t->ok = true;
	if (!src || !dst || !nblk) {
		fail_target(t, "cannot allocate %zu bytes", span);
		free(src);
		free(dst);
		return;
	}
	memset(src, 0x5a, span);
	t0 = proc_now_ns();
	do {
		for (int i = 0; i < 1024; i++) {
			x = x * 6364136223846793005ull + 1442695040888963407ull;
			memcpy(dst, src + (x >> 20) % nblk * c->bs, c->bs);
			__asm__ volatile("" : : "r"(dst) : "memory");
		}
		copies += 1024;
		t1 = proc_now_ns();
	} while (t1 - t0 < 500 * MSEC);
	t->sum.iops = t->sum.read_iops = (double)copies * 1e9 / (double)(t1 - t0);
	t->sum.mb_s = t->sum.iops * (double)c->bs / 1e6;
	t->no_latency = true;
	free(src);
	free(dst);
}

/* ---- gnuplot ---- */

void plot(const struct cfg *c, const struct run_point *pts, unsigned n)
{
	static const char *const names[] = {"vproxy", "qsd", "fio"};
	char dat[PATH_MAX], gp[PATH_MAX];
	char *argv[] = {"/usr/bin/gnuplot", gp, NULL};
	bool have[3] = {false};
	FILE *f;
	int r;

	path_in(dat, sizeof(dat), bench_host.work, "plot.dat");
	path_in(gp, sizeof(gp), bench_host.work, "plot.gp");
	f = fopen(dat, "we");
	if (!f)
		die("cannot write %s", dat);
	for (unsigned i = 0; i < n; i++) {
		fprintf(f, "%u", pts[i].sweep_value);
		for (unsigned k = 0; k < 3; k++) {
			const struct target_result *t = NULL;

			for (unsigned j = 0; j < pts[i].nt; j++)
				if (pts[i].t[j].ran && pts[i].t[j].ok &&
				    strcmp(pts[i].t[j].name, names[k]) == 0)
					t = &pts[i].t[j];
			if (t) {
				fprintf(f, " %.1f %.2f", t->sum.iops, t->sum.p99_us);
				have[k] = true;
			} else {
				fprintf(f, " NaN NaN");
			}
		}
		fprintf(f, "\n");
	}
	fclose(f);
	f = fopen(gp, "we");
	if (!f)
		die("cannot write %s", gp);
	fprintf(f,
	        "set terminal png size 1200,480\nset output '%s'\n"
	        "set multiplot layout 1,2 title 'vproxy-bench %s bs=%" PRIu64
	        " (2 CPUs shared by server, guests and fio)'\n"
	        "set xlabel '%s'\nset logscale x 2\nset grid\nset key top left\n"
	        "set datafile missing 'NaN'\n",
	        c->plot, c->rw, c->bs,
	        c->sweep == SWEEP_GUESTS ? "guests" : "iodepth per queue");
	for (int panel = 0; panel < 2; panel++) {
		bool first = true;

		fprintf(f, "set ylabel '%s'\nplot ", panel ? "p99 latency (us)" : "IOPS");
		for (unsigned k = 0; k < 3; k++) {
			if (!have[k])
				continue;
			fprintf(f, "%s'%s' using 1:%u with linespoints title '%s'",
			        first ? "" : ", ", dat, 2 + 2 * k + (unsigned)panel,
			        names[k]);
			first = false;
		}
		fprintf(f, "\n");
	}
	fprintf(f, "unset multiplot\n");
	fclose(f);
	r = proc_run(argv, NULL, 30000);
	if (r != 0)
		fprintf(stderr, PROG ": gnuplot failed (%d); script %s\n", r, gp);
	else
		msg(c, "plot written to %s", c->plot);
}
