/* SPDX-License-Identifier: MIT */
/*
 * What one bench run measured and how it is printed: the human table,
 * JSON in a shape close to fio's (--output-format=json), CSV, and the
 * gnuplot input of a sweep.
 */
#ifndef BENCH_REPORT_H
#define BENCH_REPORT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "hist.h"

/* One guest's share of a vproxy or vhost-user run. */
struct guest_result {
	bool ok;
	char error[300];
	char mismatch[256];
	uint64_t window_ns;
	uint64_t reads, writes, read_bytes, write_bytes;
	uint64_t verified, mismatches;
	uint64_t kicks, kicks_saved, waits, irqs, notifies, sleeps;
	double attach_ms; /* from its process start to its device open */
	/* notifications each way: kick eventfd writes, interrupts taken */
	uint64_t kick_writes, irq_calls;
	struct hist lat_r, lat_w;
};

/* Summary numbers of one target (every target has them). */
struct summary {
	double iops, read_iops, write_iops;
	double mb_s; /* 10^6 bytes per second */
	double mean_us, p50_us, p99_us, p999_us, max_us;
};

/* One target of one run: "vproxy", "qsd", "fio" or "memcpy". */
struct target_result {
	char name[16];
	bool ran;
	bool no_latency; /* memcpy: a rate only */
	bool ok;
	char error[300];
	unsigned guests, queues, iodepth;
	struct summary sum;
	/* vproxy and qsd: merged over every guest */
	struct guest_result *g;
	struct hist lat_r, lat_w;
	uint64_t verified, mismatches;
	uint64_t kicks, kicks_saved, waits, irqs, notifies, sleeps;
	double server_cpu_s, server_cpu_us_per_io, guest_cpu_s;
	uint64_t server_rss_kib;
	double attach_ms;           /* every guest attached, from the first start */
	double attach_server_cpu_s; /* server CPU while the guests attached */
	double attach_xs_cpu_s;     /* xenstored CPU meanwhile (-1: unknown) */
	double provision_ms;        /* every device provisioned (vproxy only) */
	/* Notification costs over the window (README "Notification costs"):
	 * guest kicks and interrupts summed over the guests; the server's
	 * wake-ups and system calls over its threads, when they could be
	 * counted. */
	uint64_t kick_writes, irq_calls;
	bool wakeups_known, syscalls_known;
	uint64_t server_wakeups, server_syscalls;
	unsigned syscall_threads; /* threads whose system calls were counted */
	/* the same per I/O completed in the window (report_summarise); -1: unknown */
	double kicks_per_io, irqs_per_io, wakeups_per_io, syscalls_per_io;
};

#define BENCH_MAX_TARGETS 4

/* All targets measured at one point of a sweep (or the only point). */
struct run_point {
	const char *sweep_name; /* "iodepth", "guests" or NULL */
	unsigned sweep_value;
	struct target_result t[BENCH_MAX_TARGETS];
	unsigned nt;
};

/* The run's settings, as reports show them. */
struct report_info {
	const char *rw;
	unsigned rwmixread;
	uint64_t bs;
	unsigned iodepth, queues, guests;
	double runtime_s, ramp_s;
	uint64_t size;
	const char *plugin, *file, *direct, *engine;
	bool verify;
	bool poll_auto;
	unsigned poll_us, poll_max_us, spin_us;
	long cpus;
	const char *version;
};

/* Fill t->sum (and the merged histograms) from its guests. */
void report_summarise(struct target_result *t);
/* The human table of one point on f; per-guest rows when guests <= max_guest_rows. */
void report_table(FILE *f, const struct report_info *ri, const struct run_point *p,
                  unsigned max_guest_rows);
/* JSON of every point. */
void report_json(FILE *f, const struct report_info *ri, const struct run_point *pts,
                 unsigned n);
/* CSV of every point: one row per target and one per guest. */
void report_csv(FILE *f, const struct report_info *ri, const struct run_point *pts,
                unsigned n);
/* ours/theirs for a summary field; 0 when either is missing. */
double report_ratio(double ours, double theirs);

#endif
