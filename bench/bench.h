/* SPDX-License-Identifier: MIT */
/*
 * vproxy-bench's driver: the settings of a run, what it has started, and
 * the parts that start things (host.c), run the guests (guests.c) and run
 * each target (targets.c); bench.c parses the arguments and prints.
 */
#ifndef BENCH_BENCH_H
#define BENCH_BENCH_H

#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "report.h"

#define PROG "vproxy-bench"
#define NSEC 1000000000ull
#define MSEC 1000000ull
#define MAX_GUESTS 1024u
#define MAX_SWEEP 32u
#define MAX_PARAMS 16u
#define GO_MARGIN_NS (20 * MSEC)
#define PROGRESS_NS (500 * MSEC)

enum sweep { SWEEP_NONE, SWEEP_IODEPTH, SWEEP_GUESTS };

/* The settings of a run, from the command line. */
struct cfg {
	const char *rw;
	unsigned rwmixread;
	uint64_t bs;
	unsigned iodepth, queues, guests;
	double runtime, ramp;
	uint64_t size;
	const char *plugin, *file, *direct, *engine;
	const char *params[MAX_PARAMS];
	unsigned nparams;
	bool verify;
	int prefill; /* -1 auto */
	const char *json, *csv, *plot;
	enum sweep sweep;
	unsigned sweep_vals[MAX_SWEEP], nsweep;
	bool fio, qsd, no_vproxy;
	bool poll_auto;       /* vproxyd poll-us = auto (its default) */
	unsigned poll_us;     /* fixed poll-us when !poll_auto */
	unsigned poll_max_us; /* auto's cap; 0: vproxyd's default */
	unsigned spin_us;
	long qsd_poll_ns; /* -1: qsd's default */
	pid_t attach_pid;
	const char *run_dir;
	unsigned first_domid;
	const char *addr_mode;
	const char *build_dir;
	bool keep, quiet, xs_trace;
	int progress; /* -1 auto (a terminal) */
	unsigned timeout_s;
	uint64_t seed;
	unsigned guest_rows;
};

/* What the current run has started, for cleanup from anywhere. */
struct host {
	char work[PATH_MAX];
	char build[PATH_MAX];
	char xs_dir[PATH_MAX];
	bool xs_started;
	pid_t server;  /* vproxyd or qsd we started */
	pid_t *guests; /* 0 once reaped */
	int *gstatus;  /* exit status once reaped */
	unsigned nguests;
	char store[PATH_MAX]; /* backing file we created, removed at exit */
	struct xs_handle *xs;
};

/* One vproxy or qsd run of guests. */
struct guest_run {
	const char *target;
	bool vhost; /* vhost-user transport */
	unsigned guests, iodepth;
	bool prefill;
	const char *run_dir; /* vproxy */
	pid_t server;        /* whose CPU and RSS we report */
};

/* What the current run has started (host.c stops it all). */
extern struct host bench_host;
/* The settings, for cleanup()'s --keep. */
extern const struct cfg *bench_cfg;
/* Set by SIGINT/SIGTERM. */
extern volatile sig_atomic_t interrupted;

/* ---- host.c ---- */
/* A progress message on stderr unless --quiet. */
void msg(const struct cfg *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Print the reason, stop everything started, exit 2. */
void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
/* snprintf that dies rather than truncate (paths, arguments). */
void fmt(char *out, size_t len, const char *f, ...) __attribute__((format(printf, 3, 4)));
/* dir/name into out. */
void path_in(char *out, size_t len, const char *dir, const char *name);
/* Stop guests, server and xenstored we started; remove the work dir. */
void cleanup(void);
/* Stop the guest processes still running. */
void stop_guests(void);
/* Stop the server we started: its exit status, 0 if none ran. */
int stop_server(void);
/* Start xenstored (with the shim) in the work dir; exports XENSTORED_PATH. */
void start_xenstored(const struct cfg *c);
/* Stop the xenstored we started. */
void stop_xenstored(void);
/* True if the file at path has a line containing needle. */
bool log_has(const char *path, const char *needle);
/* Print the last lines (at most 16) of a log on stderr. */
void tail_file(const char *path, unsigned lines);
/* True when every guest's device uses the one backing file (read-only). */
bool shared_store(const struct cfg *c);
/* QueueNumMax for a queue depth (power of two, 256..1024). */
unsigned queue_size_for(unsigned iodepth);
/* Write vproxyd.ini for guests devices and start vproxyd; dies on failure. */
void start_vproxyd(const struct cfg *c, unsigned guests, unsigned iodepth,
                   const char *run_dir);
/* Create the guests' domains, wait for every backend in InitWait; ms. */
double provision(const struct cfg *c, unsigned guests);
/* Destroy the guests' domains (--attach). */
void destroy_domains(const struct cfg *c, unsigned guests);
/* The backing file fio and qsd use (made and filled if needed). */
const char *store_file(struct cfg *c);

/* ---- guests.c ---- */
/* Mark t failed with a reason (the first one sticks). */
void fail_target(struct target_result *t, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));
/* Start the guests, run them through one window, collect into t. */
void run_guests(const struct cfg *c, const struct guest_run *gr, struct target_result *t);

/* ---- targets.c ---- */
/* vproxyd on the sim host (or the --attach'ed one) with guests guests. */
void run_vproxy(const struct cfg *c, unsigned guests, unsigned iodepth,
                struct target_result *t);
/* qemu-storage-daemon's vhost-user-blk export, same guests. */
void run_qsd(const struct cfg *c, unsigned guests, unsigned iodepth,
             struct target_result *t);
/* fio on the same file, bs, queue depth, io_uring. */
void run_fio(const struct cfg *c, unsigned guests, unsigned iodepth,
             struct target_result *t);
/* One thread's memcpy rate of bs-sized blocks (the RAM plugin's limit). */
void run_memcpy(const struct cfg *c, struct target_result *t);
/* IOPS and p99 against the swept value, through gnuplot, to c->plot. */
void plot(const struct cfg *c, const struct run_point *pts, unsigned n);

#endif
