/* SPDX-License-Identifier: MIT */
/*
 * vproxy-bench-guest: one simulated guest of a vproxy-bench run.  It
 * attaches device 0 through the proxy stub -- to vproxyd over the sim
 * hypervisor (--transport vproxy) or to a vhost-user-blk backend through
 * vhost_platform.c (--transport vhost-user) -- opens it with the guest
 * virtio-blk driver, and drives every queue with a fio-like workload in
 * one thread.  Start and stop times come from the control file the driver
 * shares (ctl.h), so every guest measures the same window; the results
 * (counters and latency histograms) go to --result as text.
 *
 * Started by vproxy-bench, not by hand.  Exit status: 0 ok, 1 data
 * mismatch, 2 error.
 */
#include "ctl.h"
#include "hist.h"
#include "pattern.h"
#include "platform_sim.h"
#include "simguest.h"
#include "size.h"
#include "stub.h"
#include "vblk.h"
#include "vhost_platform.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define PROG "vproxy-bench-guest"
#define NSEC 1000000000ull
#define MSEC 1000000ull
#define WAIT_SLICE_NS (50 * MSEC)
#define REAP_BATCH 64u
#define GEN_NONE 0u /* block content unknown: reads are not checked */

/* RW_IDLE: attached, no I/O in the window (what an idle guest costs). */
enum rw { RW_READ, RW_WRITE, RW_RANDREAD, RW_RANDWRITE, RW_RANDRW, RW_IDLE };
enum transport { T_VPROXY, T_VHOST_USER };
enum rc { RC_OK = 0, RC_MISMATCH = 1, RC_ERROR = 2 };

struct opts {
	unsigned index;
	const char *ctl_path, *result_path;
	enum transport transport;
	unsigned domid;
	const char *run_dir, *socket;
	enum vps_addr_mode mode;
	enum rw rw;
	unsigned rwmixread;
	size_t bs;
	unsigned iodepth, queues, queue_size;
	uint64_t runtime_ns, ramp_ns;
	uint64_t size;
	unsigned slice, nslices; /* use blocks b with b % nslices == slice */
	bool prefill, verify;
	uint64_t spin_ns;
	uint64_t seed;
	uint64_t timeout_ns;
};

struct op {
	struct vblk_buf buf;
	unsigned q;
	bool busy;
	uint32_t type;
	uint64_t lblock; /* logical block of this guest's slice */
	uint32_t gen;    /* WRITE: written; READ: expected (GEN_NONE: don't check) */
	uint64_t start_ns;
};

struct guest {
	struct opts o;
	struct bench_ctl_hdr *ctl;
	struct bench_ctl_guest *slot;
	size_t ctl_len;
	struct vps_frontend vps;
	struct vblk_driver *blk;
	const struct vblk_info *info;
	struct op *ops;
	unsigned nops;
	uint64_t nl;     /* logical blocks */
	uint32_t *gen;   /* verify: per logical block */
	uint8_t *busy;   /* verify: an op on the block is in flight */
	uint64_t cursor; /* sequential workloads */
	uint64_t rng;
	uint64_t key; /* per guest, in the data pattern */
	/* results over the measured window */
	struct hist lat_r, lat_w;
	uint64_t reads, writes, read_bytes, write_bytes;
	uint64_t verified, mismatches;
	uint64_t all_done; /* completions at any time, for progress */
	uint64_t window_ns;
	/* driver and stub counters at the start and the end of the window */
	struct vblk_stats bs0, bs1;
	struct vps_stats ss0, ss1;
	struct vhu_platform *vhu; /* vhost-user transport, else NULL */
	uint64_t kw0, kw1;        /* vhost-user: kick eventfd writes */
	int snaps;
	char mismatch[256];
	char error[300];
	enum rc rc;
};

static volatile sig_atomic_t stop_flag;

static void on_signal(int sig)
{
	(void)sig;
	stop_flag = 1;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * NSEC + (uint64_t)ts.tv_nsec;
}

static void fail(struct guest *g, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));

/* The first error is the guest's result. */
static void fail(struct guest *g, const char *fmt, ...)
{
	va_list ap;

	if (g->rc == RC_ERROR)
		return;
	va_start(ap, fmt);
	vsnprintf(g->error, sizeof(g->error), fmt, ap);
	va_end(ap);
	g->rc = RC_ERROR;
	fprintf(stderr, PROG "[%u]: %s\n", g->o.index, g->error);
}

static bool aborted(const struct guest *g)
{
	return stop_flag || __atomic_load_n(&g->ctl->abort, __ATOMIC_RELAXED);
}

static void set_state(struct guest *g, enum bench_guest_state s)
{
	__atomic_store_n(&g->slot->state, (uint64_t)s, __ATOMIC_RELEASE);
}

/* ---- data pattern ---- */

static uint64_t rnd(struct guest *g)
{
	g->rng += VP_GOLDEN64;
	return vp_mix64(g->rng);
}

static void fill_block(const struct guest *g, uint64_t lblock, uint32_t gen, uint64_t *w)
{
	vp_pattern_fill(vp_pattern_seed(g->key, lblock, gen), w, g->o.bs);
}

/* Index of the first wrong word, or -1. */
static long check_block(const struct guest *g, uint64_t lblock, uint32_t gen,
                        const uint64_t *w)
{
	size_t i = vp_pattern_check(vp_pattern_seed(g->key, lblock, gen), w, g->o.bs);

	return i == g->o.bs / 8 ? -1 : (long)i;
}

/* ---- the workload ---- */

static uint64_t sector_of(const struct guest *g, uint64_t lblock)
{
	return (lblock * g->o.nslices + g->o.slice) * (g->o.bs / 512);
}

static bool is_read_op(struct guest *g)
{
	switch (g->o.rw) {
	case RW_READ:
	case RW_RANDREAD: return true;
	case RW_RANDRW: return rnd(g) % 100 < g->o.rwmixread;
	default: return false;
	}
}

/* Choose what op o does next; false if no block is free (verify). */
static bool plan(struct guest *g, struct op *o, bool prefill)
{
	bool seq = prefill || g->o.rw == RW_READ || g->o.rw == RW_WRITE;

	if (g->o.rw == RW_IDLE && !prefill)
		return false;
	o->type = prefill ? VBLK_T_WRITE : is_read_op(g) ? VBLK_T_READ : VBLK_T_WRITE;
	for (int tries = 0; tries < 8; tries++) {
		uint64_t b;

		if (seq) {
			b = g->cursor;
			g->cursor = g->cursor + 1 == g->nl ? 0 : g->cursor + 1;
		} else {
			b = rnd(g) % g->nl;
		}
		if (g->busy && g->busy[b])
			continue;
		o->lblock = b;
		if (!g->gen)
			o->gen = GEN_NONE;
		else if (o->type == VBLK_T_READ)
			o->gen = g->gen[b];
		else
			o->gen = g->gen[b] + 1 == GEN_NONE ? 1 : g->gen[b] + 1;
		return true;
	}
	return false;
}

static int submit(struct guest *g, struct op *o)
{
	struct vblk_req req = {.type = o->type,
	                       .sector = sector_of(g, o->lblock),
	                       .buf = &o->buf,
	                       .len = g->o.bs,
	                       .tag = (uint64_t)(o - g->ops)};
	int r;

	if (o->type == VBLK_T_WRITE && o->gen != GEN_NONE)
		fill_block(g, o->lblock, o->gen, o->buf.ptr);
	o->start_ns = now_ns();
	r = vblk_submit(vblk_queue(g->blk, o->q), &req);
	if (r < 0)
		return r;
	o->busy = true;
	if (g->busy)
		g->busy[o->lblock] = 1;
	return 0;
}

static void complete(struct guest *g, const struct vblk_completion *c, uint64_t t,
                     uint64_t ws, uint64_t we)
{
	struct op *o;
	bool in_window = t >= ws && t < we;

	if (c->tag >= g->nops || !g->ops[c->tag].busy) {
		fail(g, "completion with unknown tag %" PRIu64, c->tag);
		return;
	}
	o = &g->ops[c->tag];
	o->busy = false;
	if (g->busy)
		g->busy[o->lblock] = 0;
	g->all_done++;
	if (c->status != VBLK_S_OK) {
		if (g->gen)
			g->gen[o->lblock] = GEN_NONE;
		fail(g, "%s of block %" PRIu64 " failed with status %u",
		     o->type == VBLK_T_READ ? "read" : "write", o->lblock, c->status);
		return;
	}
	if (o->type == VBLK_T_READ) {
		if (o->gen != GEN_NONE) {
			long bad = check_block(g, o->lblock, o->gen, o->buf.ptr);

			if (bad < 0) {
				g->verified++;
			} else {
				if (!g->mismatches)
					snprintf(g->mismatch, sizeof(g->mismatch),
					         "block %" PRIu64 " (sector %" PRIu64
					         ") generation %u: word %ld differs",
					         o->lblock, sector_of(g, o->lblock),
					         o->gen, bad);
				g->mismatches++;
				g->rc = g->rc == RC_OK ? RC_MISMATCH : g->rc;
			}
		}
	} else if (g->gen) {
		g->gen[o->lblock] = o->gen;
	}
	if (!in_window)
		return;
	if (o->type == VBLK_T_READ) {
		g->reads++;
		g->read_bytes += g->o.bs;
		hist_add(&g->lat_r, t - o->start_ns);
	} else {
		g->writes++;
		g->write_bytes += g->o.bs;
		hist_add(&g->lat_w, t - o->start_ns);
	}
}

static unsigned inflight(const struct guest *g)
{
	unsigned n = 0;

	for (unsigned q = 0; q < g->info->num_queues; q++)
		n += vblk_inflight(vblk_queue(g->blk, q));
	return n;
}

static int reap(struct guest *g, uint64_t ws, uint64_t we)
{
	struct vblk_completion c[REAP_BATCH];
	int total = 0;

	for (unsigned q = 0; q < g->info->num_queues; q++) {
		int n;

		do {
			uint64_t t;

			n = vblk_reap(vblk_queue(g->blk, q), c, REAP_BATCH);
			if (n < 0)
				return n;
			t = now_ns();
			for (int i = 0; i < n; i++)
				complete(g, &c[i], t, ws, we);
			total += n;
		} while (n == (int)REAP_BATCH);
	}
	return total;
}

static const char *health_text(struct guest *g, int r)
{
	if (vblk_health(g->blk) != VBLK_OK)
		return vblk_error(g->blk);
	return strerror(r < 0 ? -r : r);
}

/*
 * One phase: keep every op busy from start until submit_end (or, with
 * count, until count ops were issued), then drain.  Completions in
 * [ws, we) are the measurement.
 */
static int run_phase(struct guest *g, bool prefill, uint64_t count, uint64_t submit_end,
                     uint64_t ws, uint64_t we)
{
	uint64_t issued = 0, last = now_ns();
	bool *kick = calloc(g->info->num_queues, sizeof(*kick));
	int r = 0;

	if (!kick)
		return -ENOMEM;
	g->cursor = 0;
	for (;;) {
		uint64_t t = now_ns();
		bool submitting = !aborted(g) && g->rc != RC_ERROR &&
		                  (count ? issued < count : t < submit_end);
		int n;

		if (submitting) {
			for (unsigned i = 0; i < g->nops && (!count || issued < count);
			     i++) {
				struct op *o = &g->ops[i];

				if (o->busy || !plan(g, o, prefill))
					continue;
				r = submit(g, o);
				if (r == -EAGAIN) {
					r = 0;
					continue;
				}
				if (r < 0) {
					fail(g, "submit: %s", health_text(g, r));
					goto out;
				}
				kick[o->q] = true;
				issued++;
			}
			for (unsigned q = 0; q < g->info->num_queues; q++) {
				if (!kick[q])
					continue;
				kick[q] = false;
				r = vblk_kick(vblk_queue(g->blk, q));
				if (r < 0) {
					fail(g, "kick: %s", health_text(g, r));
					goto out;
				}
			}
		}
		n = reap(g, ws, we);
		if (n < 0) {
			r = n;
			fail(g, "reap: %s", health_text(g, r));
			goto out;
		}
		__atomic_store_n(&g->slot->ios, g->all_done, __ATOMIC_RELAXED);
		t = now_ns();
		if (we && g->snaps < 2 && t >= (g->snaps ? we : ws)) {
			vblk_get_stats(g->blk, g->snaps ? &g->bs1 : &g->bs0);
			vps_get_stats(&g->vps, g->snaps ? &g->ss1 : &g->ss0);
			if (g->vhu)
				*(g->snaps ? &g->kw1 : &g->kw0) = vhu_kick_writes(g->vhu);
			g->snaps++;
		}
		if (n > 0) {
			last = t;
			continue;
		}
		if (!submitting && inflight(g) == 0)
			break;
		if (g->o.rw == RW_IDLE)
			last = t; /* nothing is asked, nothing is late */
		if (t - last > g->o.timeout_ns) {
			fail(g, "timeout: %u requests unanswered for %.0f s", inflight(g),
			     (double)g->o.timeout_ns / NSEC);
			r = -ETIMEDOUT;
			goto out;
		}
		if (t - last < g->o.spin_ns)
			continue;
		r = vblk_wait(g->blk, WAIT_SLICE_NS);
		if (r < 0) {
			fail(g, "wait: %s", health_text(g, r));
			goto out;
		}
		r = 0;
	}
out:
	free(kick);
	return r;
}

/* Read back every block whose content is known and check it. */
static int verify_pass(struct guest *g)
{
	enum rw saved = g->o.rw;
	int r;

	g->o.rw = RW_READ;
	r = run_phase(g, false, g->nl, 0, 0, 0);
	g->o.rw = saved;
	return r;
}

static int setup(struct guest *g)
{
	const struct opts *o = &g->o;
	uint64_t nblocks;

	g->info = vblk_info(g->blk);
	if (g->info->num_queues < o->queues) {
		fail(g, "device has %u queue(s), %u wanted", g->info->num_queues,
		     o->queues);
		return -EINVAL;
	}
	if (o->bs > g->info->max_io_bytes || o->bs % g->info->blk_size) {
		fail(g, "bs %zu not possible (max I/O %zu, block size %u)", o->bs,
		     g->info->max_io_bytes, g->info->blk_size);
		return -EINVAL;
	}
	if (o->iodepth > g->info->max_inflight) {
		fail(g, "iodepth %u above the queue's %u", o->iodepth,
		     g->info->max_inflight);
		return -EINVAL;
	}
	nblocks = g->info->capacity * 512 / o->bs;
	if (o->size && o->size / o->bs < nblocks)
		nblocks = o->size / o->bs;
	g->nl = nblocks / o->nslices;
	if (g->nl == 0) {
		fail(g, "no block left for this guest (%" PRIu64 " blocks, %u guests)",
		     nblocks, o->nslices);
		return -EINVAL;
	}
	g->nops = o->queues * o->iodepth;
	g->ops = calloc(g->nops, sizeof(*g->ops));
	if (!g->ops)
		return -ENOMEM;
	if (o->verify) {
		g->gen = calloc(g->nl, sizeof(*g->gen));
		g->busy = calloc(g->nl, 1);
		if (!g->gen || !g->busy)
			return -ENOMEM;
	}
	for (unsigned i = 0; i < g->nops; i++) {
		struct op *op = &g->ops[i];

		if (vblk_buf_alloc(g->blk, o->bs, &op->buf) < 0) {
			fail(g, "guest RAM too small for %u buffers of %zu bytes",
			     g->nops, o->bs);
			return -ENOMEM;
		}
		op->q = i % o->queues;
		/* Data that is not all zeroes, for writes that carry no pattern. */
		fill_block(g, i, 0xffffu, op->buf.ptr);
	}
	return 0;
}

static void write_result(struct guest *g, const struct vps_stats *ss,
                         const struct vblk_stats *bs, uint64_t kick_writes)
{
	char tmp[512];
	FILE *f;

	snprintf(tmp, sizeof(tmp), "%s.tmp", g->o.result_path);
	f = fopen(tmp, "w");
	if (!f) {
		fprintf(stderr, PROG "[%u]: cannot write %s: %s\n", g->o.index, tmp,
		        strerror(errno));
		return;
	}
	fprintf(f, "guest %u\n", g->o.index);
	if (g->rc == RC_ERROR)
		fprintf(f, "error %s\n", g->error);
	fprintf(f,
	        "window_ns %" PRIu64 "\nreads %" PRIu64 "\nwrites %" PRIu64
	        "\nread_bytes %" PRIu64 "\nwrite_bytes %" PRIu64 "\nverified %" PRIu64
	        "\nmismatches %" PRIu64 "\n",
	        g->window_ns, g->reads, g->writes, g->read_bytes, g->write_bytes,
	        g->verified, g->mismatches);
	if (g->mismatches)
		fprintf(f, "mismatch %s\n", g->mismatch);
	fprintf(f,
	        "kicks %" PRIu64 "\nkicks_saved %" PRIu64 "\nwaits %" PRIu64
	        "\nirqs %" PRIu64 "\nnotifies %" PRIu64 "\nsleeps %" PRIu64 "\n",
	        bs->kicks, bs->kicks_saved, bs->waits, bs->irqs, ss->notifies,
	        ss->sleeps);
	/* Notifications each way, counted alike for both transports: eventfd
	 * writes to the server's kick fd(s), and interrupts the stub saw. */
	fprintf(f, "kick_writes %" PRIu64 "\nirq_calls %" PRIu64 "\n", kick_writes,
	        ss->irq_calls);
	hist_write(&g->lat_r, "lat_read", f);
	hist_write(&g->lat_w, "lat_write", f);
	if (fclose(f) != 0 || rename(tmp, g->o.result_path) != 0)
		fprintf(stderr, PROG "[%u]: cannot write %s\n", g->o.index,
		        g->o.result_path);
}

/* Attach, prepare, wait for the common start, run, report. */
static void run(struct guest *g, const struct vps_platform *plat)
{
	struct vps_opts vo;
	struct vblk_opts bo;
	struct vps_stats ss = {0};
	struct vblk_stats bs = {0};
	uint64_t go, deadline, ws, we, kick_writes = 0;
	char why[200];
	int r;

	vps_opts_default(&vo);
	vo.attach_timeout_ns = g->o.timeout_ns;
	/* Hundreds of guests attaching at once keep the server busy for a
	 * while: the first register read may wait as long as attaching. */
	vo.read_timeout_ns = g->o.timeout_ns;
	vo.expect_backend = 0;
	r = vps_attach(&g->vps, plat, 0, &vo);
	if (r < 0) {
		fail(g, "attach failed: %s",
		     vps_error(&g->vps)[0] ? vps_error(&g->vps) : strerror(-r));
		return;
	}
	vblk_opts_default(&bo);
	bo.num_queues = g->o.queues;
	bo.queue_size = g->o.queue_size;
	if (g->o.bs > bo.max_io_bytes)
		bo.max_io_bytes = g->o.bs;
	r = vblk_open(&g->vps, &bo, &g->blk, why, sizeof(why));
	if (r < 0) {
		fail(g, "virtio-blk setup failed: %s", why);
		goto detach;
	}
	__atomic_store_n(&g->slot->attached_ns, now_ns(), __ATOMIC_RELAXED);
	set_state(g, BG_ATTACHED);
	if (setup(g) < 0) {
		if (g->rc != RC_ERROR)
			fail(g, "out of memory");
		goto close;
	}
	if (g->o.prefill && run_phase(g, true, g->nl, 0, 0, 0) < 0)
		goto close;
	if (g->gen && !g->o.prefill && (g->o.rw == RW_READ || g->o.rw == RW_RANDREAD))
		fprintf(stderr,
		        PROG "[%u]: verify without prefill: reads are not checked\n",
		        g->o.index);
	set_state(g, BG_READY);
	deadline = now_ns() + g->o.timeout_ns;
	while (!(go = __atomic_load_n(&g->ctl->go_ns, __ATOMIC_ACQUIRE))) {
		if (aborted(g) || now_ns() > deadline) {
			fail(g,
			     aborted(g) ? "aborted before the start" : "no start signal");
			goto close;
		}
		usleep(1000);
	}
	while (now_ns() < go && !aborted(g))
		usleep((useconds_t)((go - now_ns()) / 1000 + 1));
	set_state(g, BG_RUNNING);
	ws = go + g->o.ramp_ns;
	we = ws + g->o.runtime_ns;
	g->window_ns = g->o.runtime_ns;
	if (run_phase(g, false, 0, we, ws, we) < 0)
		goto close;
	if (aborted(g)) {
		fail(g, "aborted");
		goto close;
	}
	if (g->gen && g->rc == RC_OK && g->o.rw != RW_READ && g->o.rw != RW_RANDREAD)
		verify_pass(g);
close:
	/* Counters of the measured window only, like the I/Os. */
	if (g->blk && g->snaps == 2) {
		bs.kicks = g->bs1.kicks - g->bs0.kicks;
		bs.kicks_saved = g->bs1.kicks_saved - g->bs0.kicks_saved;
		bs.waits = g->bs1.waits - g->bs0.waits;
		bs.irqs = g->bs1.irqs - g->bs0.irqs;
		ss.notifies = g->ss1.notifies - g->ss0.notifies;
		ss.sleeps = g->ss1.sleeps - g->ss0.sleeps;
		ss.irq_calls = g->ss1.irq_calls - g->ss0.irq_calls;
		/* The sim's event channel sends are eventfd writes; over
		 * vhost-user the stub's sends stay in-process and QueueNotify
		 * becomes the kick eventfd write. */
		kick_writes = g->vhu ? g->kw1 - g->kw0 : ss.notifies;
	}
	write_result(g, &ss, &bs, kick_writes);
	set_state(g, g->rc == RC_ERROR ? BG_FAILED : BG_DONE);
	if (g->blk) {
		/* the device lets go of the buffers before they are freed */
		vblk_stop(g->blk);
		for (unsigned i = 0; g->ops && i < g->nops; i++)
			vblk_buf_free(g->blk, &g->ops[i].buf);
		vblk_close(g->blk);
		g->blk = NULL;
	}
detach:
	vps_detach(&g->vps);
	if (g->rc == RC_ERROR)
		set_state(g, BG_FAILED);
}

/* ---- arguments ---- */

static void usage(FILE *f)
{
	fprintf(f,
	        "usage: " PROG " --index I --ctl FILE --result FILE\n"
	        "         (--transport vproxy --domid D --run-dir DIR [--addr-mode "
	        "gfn|grant]\n"
	        "          | --transport vhost-user --socket PATH)\n"
	        "         [--rw read|write|randread|randwrite|randrw|idle] [--rwmixread P]\n"
	        "         [--bs BYTES] [--iodepth N] [--queues M] [--queue-size N]\n"
	        "         [--runtime-ms MS] [--ramp-ms MS] [--size BYTES] [--slice I/N]\n"
	        "         [--prefill] [--verify] [--spin-us N] [--seed N] [--timeout-s "
	        "S]\n"
	        "Started by vproxy-bench; see bench/README.md.\n");
}

static int parse_args(int argc, char **argv, struct opts *o)
{
	static const struct option lo[] = {
	        {"index", 1, NULL, 'i'},      {"ctl", 1, NULL, 'c'},
	        {"result", 1, NULL, 'o'},     {"transport", 1, NULL, 't'},
	        {"domid", 1, NULL, 'd'},      {"run-dir", 1, NULL, 'D'},
	        {"addr-mode", 1, NULL, 'a'},  {"socket", 1, NULL, 'S'},
	        {"rw", 1, NULL, 'w'},         {"rwmixread", 1, NULL, 'm'},
	        {"bs", 1, NULL, 'b'},         {"iodepth", 1, NULL, 'q'},
	        {"queues", 1, NULL, 'Q'},     {"queue-size", 1, NULL, 'z'},
	        {"runtime-ms", 1, NULL, 'r'}, {"ramp-ms", 1, NULL, 'R'},
	        {"size", 1, NULL, 's'},       {"slice", 1, NULL, 'l'},
	        {"prefill", 0, NULL, 'P'},    {"verify", 0, NULL, 'V'},
	        {"spin-us", 1, NULL, 'p'},    {"seed", 1, NULL, 'e'},
	        {"timeout-s", 1, NULL, 'T'},  {"help", 0, NULL, 'h'},
	        {NULL, 0, NULL, 0},
	};
	static const char *const rws[] = {"read", "write", "randread", "randwrite",
	                                  "randrw", "idle"};
	uint64_t v;
	int c;

	*o = (struct opts){.rwmixread = 50,
	                   .bs = 4096,
	                   .iodepth = 1,
	                   .queues = 1,
	                   .runtime_ns = NSEC,
	                   .nslices = 1,
	                   .seed = 1,
	                   .timeout_ns = 30 * NSEC,
	                   .rw = RW_RANDREAD};
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		bool bad = false;

		switch (c) {
		case 'i':
			bad = vp_parse_count(optarg, 1u << 20, &v) < 0;
			o->index = (unsigned)v;
			break;
		case 'c': o->ctl_path = optarg; break;
		case 'o': o->result_path = optarg; break;
		case 't':
			if (strcmp(optarg, "vproxy") == 0)
				o->transport = T_VPROXY;
			else if (strcmp(optarg, "vhost-user") == 0)
				o->transport = T_VHOST_USER;
			else
				bad = true;
			break;
		case 'd':
			bad = vp_parse_count(optarg, VPROXY_DOMID_MAX, &v) < 0 || !v;
			o->domid = (unsigned)v;
			break;
		case 'D': o->run_dir = optarg; break;
		case 'a':
			bad = strcmp(optarg, "gfn") != 0 && strcmp(optarg, "grant") != 0;
			o->mode = strcmp(optarg, "grant") == 0 ? VPS_ADDR_GRANT
			                                       : VPS_ADDR_GFN;
			break;
		case 'S': o->socket = optarg; break;
		case 'w':
			bad = true;
			for (unsigned i = 0; i < sizeof(rws) / sizeof(rws[0]); i++)
				if (strcmp(optarg, rws[i]) == 0) {
					o->rw = (enum rw)i;
					bad = false;
				}
			break;
		case 'm':
			bad = vp_parse_count(optarg, 100, &v) < 0;
			o->rwmixread = (unsigned)v;
			break;
		case 'b':
			bad = vp_parse_count(optarg, 64u << 20, &v) < 0 || !v || v % 512;
			o->bs = (size_t)v;
			break;
		case 'q':
			bad = vp_parse_count(optarg, VBLK_QUEUE_SIZE_MAX, &v) < 0 || !v;
			o->iodepth = (unsigned)v;
			break;
		case 'Q':
			bad = vp_parse_count(optarg, 64, &v) < 0 || !v;
			o->queues = (unsigned)v;
			break;
		case 'z':
			bad = vp_parse_count(optarg, VBLK_QUEUE_SIZE_MAX, &v) < 0;
			o->queue_size = (unsigned)v;
			break;
		case 'r':
			bad = vp_parse_count(optarg, 1ull << 40, &v) < 0;
			o->runtime_ns = v * MSEC;
			break;
		case 'R':
			bad = vp_parse_count(optarg, 1ull << 40, &v) < 0;
			o->ramp_ns = v * MSEC;
			break;
		case 's':
			bad = vp_parse_count(optarg, UINT64_MAX, &v) < 0;
			o->size = v;
			break;
		case 'l':
			bad = sscanf(optarg, "%u/%u", &o->slice, &o->nslices) != 2 ||
			      !o->nslices || o->slice >= o->nslices;
			break;
		case 'P': o->prefill = true; break;
		case 'V': o->verify = true; break;
		case 'p':
			bad = vp_parse_count(optarg, 10000000, &v) < 0;
			o->spin_ns = v * 1000;
			break;
		case 'e':
			bad = vp_parse_count(optarg, UINT64_MAX, &v) < 0;
			o->seed = v;
			break;
		case 'T':
			bad = vp_parse_count(optarg, 86400, &v) < 0 || !v;
			o->timeout_ns = v * NSEC;
			break;
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); return -EINVAL;
		}
		if (bad) {
			fprintf(stderr, PROG ": bad value %s\n", optarg);
			return -EINVAL;
		}
	}
	if (optind != argc || !o->ctl_path || !o->result_path ||
	    (o->transport == T_VPROXY && (!o->domid || !o->run_dir)) ||
	    (o->transport == T_VHOST_USER && !o->socket)) {
		usage(stderr);
		return -EINVAL;
	}
	return 0;
}

static int map_ctl(struct guest *g)
{
	int fd = open(g->o.ctl_path, O_RDWR | O_CLOEXEC);
	uint64_t len = bench_ctl_bytes(g->o.index + 1);
	void *m;

	if (fd < 0)
		return -errno;
	m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (m == MAP_FAILED)
		return -errno;
	g->ctl = m;
	g->ctl_len = len;
	if (g->ctl->magic != BENCH_CTL_MAGIC || g->ctl->version != BENCH_CTL_VERSION ||
	    g->o.index >= g->ctl->nguests) {
		munmap(m, len);
		return -EINVAL;
	}
	g->slot = (struct bench_ctl_guest *)(g->ctl + 1) + g->o.index;
	return 0;
}

/* Guest RAM: the queues' rings and request slots, the buffers, slack. */
static size_t ram_bytes(const struct opts *o)
{
	size_t qs = o->queue_size ? o->queue_size : VBLK_QUEUE_SIZE_DEFAULT;
	size_t per_buf = (o->bs + 4095) / 4096 * 4096;

	return (8u << 20) + o->queues * (qs * 256 + 8192) +
	       (size_t)o->queues * o->iodepth * per_buf;
}

int main(int argc, char **argv)
{
	static struct guest g;
	struct sigaction sa = {.sa_handler = on_signal};
	struct simguest *sg = NULL;
	struct vps_sim *sim = NULL;
	struct vhu_platform *vhu = NULL;
	char err[256];
	int r;

	if (parse_args(argc, argv, &g.o) < 0)
		return RC_ERROR;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	r = map_ctl(&g);
	if (r < 0) {
		fprintf(stderr, PROG ": cannot use control file %s: %s\n", g.o.ctl_path,
		        strerror(-r));
		return RC_ERROR;
	}
	hist_init(&g.lat_r);
	hist_init(&g.lat_w);
	g.rng = g.o.seed ^ ((uint64_t)g.o.index << 32);
	g.key = vp_mix64(g.o.seed * 0x100000001b3ull + g.o.index);
	if (g.o.transport == T_VPROXY) {
		size_t ram = ram_bytes(&g.o), pages = ram / 4096;

		sg = simguest_create(
		        g.o.run_dir, (uint16_t)g.o.domid, ram,
		        (unsigned)(pages + 256 > (1u << 20) ? 1u << 20 : pages + 256));
		if (!sg) {
			fail(&g, "cannot create guest %u in %s: %s", g.o.domid,
			     g.o.run_dir, strerror(errno));
			goto out;
		}
		sim = vps_sim_create(sg, g.o.mode, PROG);
		if (!sim) {
			fail(&g, "cannot reach xenstore: %s", strerror(errno));
			goto out;
		}
		run(&g, vps_sim_platform(sim));
	} else {
		vhu = vhu_create(g.o.socket, (uint16_t)(g.o.index + 1), ram_bytes(&g.o),
		                 g.o.timeout_ns, err, sizeof(err));
		if (!vhu) {
			fail(&g, "vhost-user: %s", err);
			goto out;
		}
		g.vhu = vhu;
		run(&g, vhu_platform(vhu));
	}
out:
	if (g.rc == RC_ERROR &&
	    __atomic_load_n(&g.slot->state, __ATOMIC_RELAXED) < BG_DONE) {
		struct vps_stats ss = {0};
		struct vblk_stats bs = {0};

		write_result(&g, &ss, &bs, 0);
		set_state(&g, BG_FAILED);
	}
	free(g.ops);
	free(g.gen);
	free(g.busy);
	vhu_destroy(vhu);
	vps_sim_destroy(sim);
	simguest_destroy(sg);
	munmap(g.ctl, g.ctl_len);
	return g.rc;
}
