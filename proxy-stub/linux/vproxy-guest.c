/* SPDX-License-Identifier: MIT */
/*
 * vproxy-guest: a simulated guest.  It creates a simguest (memfd RAM, grant
 * table, event channels, a socket in --run-dir for the backend), attaches
 * its vproxy devices through the stub and drives each with a virtio-blk
 * workload on its own thread, then prints one result line per device and
 * one for the guest on stdout (diagnostics go to stderr).  See usage().
 *
 * With --platform xen it is a real Xen guest instead: it runs in a domU,
 * shares its memory with gntshr and uses the domain's own event channels
 * and xenstore (platform_xen.h); everything else is the same.
 *
 * Exit status: 0 all verified, 1 a data mismatch, 2 an error (I/O error,
 * device broken or gone unexpectedly, timeout, bad arguments).
 */
#include "hist.h"
#include "pattern.h"
#include "platform_sim.h"
#include "platform_xen.h"
#include "simguest.h"
#include "size.h"
#include "stub.h"
#include "vblk.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PROG "vproxy-guest"
#define MAX_DEVICES 64
#define NSEC 1000000000ull
#define MSEC 1000000ull
#define WAIT_SLICE_NS (100 * MSEC)
#define FLUSH_EVERY 64
#define MIXED_SPAN_DEFAULT 2048
#define VERIFY_SPAN_DEFAULT 4096
#define GEN_UNKNOWN 0u
#define GEN_ZERO UINT32_MAX
#define NO_BLOCK UINT64_MAX
#define HOSTILE_TAG UINT64_MAX
/* --platform xen: the granted pool when --ram is not given.  gntalloc
 * allows 1024 grants unless its "limit" parameter is raised. */
#define XEN_POOL_DEFAULT (4u << 20)

enum workload { WL_MIXED, WL_READ, WL_WRITE, WL_VERIFY, WL_IDLE, WL_RESET };
enum rc { RC_OK = 0, RC_MISMATCH = 1, RC_ERROR = 2 };

struct config {
	bool xen; /* --platform xen */
	bool ram_given, mode_given;
	bool per_request_grants; /* --grants per-request */
	unsigned domid;
	const char *run_dir;
	int backend_domid;
	size_t ram;
	enum vps_addr_mode mode;
	unsigned devids[MAX_DEVICES];
	unsigned ndev; /* 0: every device the guest has */
	double seconds;
	bool seconds_given;
	unsigned iodepth;
	size_t bs;
	unsigned queues;
	unsigned queue_size;
	uint64_t span; /* blocks; 0 = workload default */
	uint64_t refuse_features;
	enum workload wl;
	int hostile_dev[MAX_DEVICES];
	enum vblk_corrupt hostile_kind[MAX_DEVICES];
	unsigned nhostile;
	double timeout; /* attach and I/O progress timeout, s */
	uint64_t spin_ns;
	uint64_t seed;
	bool quiet, verbose;
};

/* One in-flight slot of a device's workload. */
struct op {
	struct vblk_buf buf;
	uint32_t type;
	uint64_t block;
	uint32_t gen; /* WRITE: generation written; READ: expected */
	uint64_t start_ns;
	unsigned q;
	bool busy;
};

struct gdev {
	const struct config *cfg;
	const struct vps_platform *plat;
	unsigned devid;
	bool hostile;
	enum vblk_corrupt kind;
	pthread_t thread;
	bool started;
	struct vps_frontend vps;
	struct vblk_driver *blk;
	const struct vblk_info *info;

	struct op *ops;
	unsigned nops;
	uint32_t *gen; /* per block */
	uint8_t *busy; /* per block: an op on it is in flight */
	uint64_t nblocks, span;
	uint64_t rng;
	uint64_t submitted;
	/* verify workload phases */
	bool verify_reading;
	uint64_t cursor;
	uint32_t pass_gen;

	/* results */
	enum rc rc;
	char error[400];
	char outcome[400]; /* hostile: what the backend did */
	char detail[1200]; /* extra result lines (mismatch, id) */
	uint64_t reads, writes, flushes, discards, zeroes, verified, bytes;
	uint64_t t_start, t_end;
	struct hist lat; /* every request's latency */
};

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
	(void)sig;
	stop_requested = 1;
}

static bool stopping(void)
{
	return stop_requested != 0;
}

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * NSEC + (uint64_t)ts.tv_nsec;
}

static void usage(FILE *f)
{
	fprintf(f,
	        "usage: " PROG " --domid N --run-dir DIR [options]\n"
	        "       " PROG " --platform xen [options]       (in a Xen domU)\n"
	        "  --platform sim|xen    sim: a simulated guest (default); xen: this\n"
	        "                        domU, grant mode, --ram is the granted pool\n"
	        "                        (default 4M)\n"
	        "  --grants persistent|per-request\n"
	        "                        xen: whether the backend may keep its grant\n"
	        "                        mappings (feature-persistent; default\n"
	        "                        persistent)\n"
	        "  --backend-domid D     expected backend domain (default 0)\n"
	        "  --ram SIZE            guest RAM, K/M/G/T suffixes (default 64M)\n"
	        "  --addr-mode gfn|grant device addresses (default gfn)\n"
	        "  --devices 0,1         device ids (default: all the guest has, listed\n"
	        "                        once the list is stable for 0.5 s)\n"
	        "  --seconds S           run time (default 10; idle: until signalled)\n"
	        "  --iodepth Q           requests in flight per device (default 16)\n"
	        "  --bs BYTES            block size, K/M/G/T suffixes (default 4096)\n"
	        "  --queues Q            virtqueues per device (default 1)\n"
	        "  --queue-size N        entries per virtqueue (default min(max, 256))\n"
	        "  --workload W          mixed|read|write|verify|idle|reset (default\n"
	        "                        mixed; reset: --iodepth reads in flight, then\n"
	        "                        a device reset; the buffers must stay as\n"
	        "                        refilled after Status reads 0, for --seconds)\n"
	        "  --span BLOCKS         blocks the workload touches (default: mixed "
	        "2048,\n"
	        "                        verify 4096, read/write the whole device)\n"
	        "  --hostile DEV:KIND    corrupt DEV: "
	        "desc-loop|bad-addr|avail-jump|ring-overflow\n"
	        "  --refuse-features HEX feature bits the driver must not accept\n"
	        "  --timeout S           attach / I/O progress timeout (default 30)\n"
	        "  --spin-us N           busy-poll N µs before sleeping (default 0)\n"
	        "  --seed N              workload random seed (default 1)\n"
	        "  --quiet               only the result lines\n"
	        "  --verbose             stub debug log on stderr\n"
	        "Output (stdout), one line per device, then one for the guest:\n"
	        "  guest D dev N: I IOPS M MB/s reads R writes W flushes F discards X "
	        "zeroes Z\n"
	        "    verified V p50-us P p99-us Q verify OK|FAILED\n"
	        "  guest D dev N: error: TEXT | broken (NEEDS_RESET) | backend closed: "
	        "TEXT\n"
	        "    | request failed (STATUS)\n"
	        "  guest D: total I IOPS M MB/s devices N errors E p50-us P p99-us Q max-us X\n"
	        "    verify OK|FAILED\n"
	        "Exit: 0 all verified, 1 data mismatch, 2 error.\n");
}

static int parse_size(const char *s, size_t *out)
{
	uint64_t v;

	if (vp_parse_size(s, &v) < 0 || v > SIZE_MAX)
		return -EINVAL;
	*out = (size_t)v;
	return 0;
}

static int parse_uint(const char *s, unsigned long long max, unsigned long long *out)
{
	uint64_t v;

	if (vp_parse_count(s, max, &v) < 0)
		return -EINVAL;
	*out = v;
	return 0;
}

static int parse_seconds(const char *s, double *out)
{
	char *end;

	errno = 0;
	*out = strtod(s, &end);
	if (errno || end == s || *end || *out < 0 || *out > 1e7)
		return -EINVAL;
	return 0;
}

static int parse_devices(const char *s, struct config *c)
{
	char buf[512], *tok, *save = NULL;
	unsigned long long v;

	snprintf(buf, sizeof(buf), "%s", s);
	c->ndev = 0;
	for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		if (c->ndev == MAX_DEVICES || parse_uint(tok, UINT32_MAX, &v) < 0)
			return -EINVAL;
		for (unsigned i = 0; i < c->ndev; i++)
			if (c->devids[i] == v)
				return -EINVAL;
		c->devids[c->ndev++] = (unsigned)v;
	}
	return c->ndev ? 0 : -EINVAL;
}

static int parse_hostile(const char *s, struct config *c)
{
	const char *colon = strchr(s, ':');
	char num[32];
	unsigned long long v;

	if (!colon || (size_t)(colon - s) >= sizeof(num) || c->nhostile == MAX_DEVICES)
		return -EINVAL;
	memcpy(num, s, (size_t)(colon - s));
	num[colon - s] = '\0';
	if (parse_uint(num, UINT32_MAX, &v) < 0 ||
	    vblk_corrupt_parse(colon + 1, &c->hostile_kind[c->nhostile]) < 0)
		return -EINVAL;
	c->hostile_dev[c->nhostile++] = (int)v;
	return 0;
}

static int parse_args(int argc, char **argv, struct config *c)
{
	enum {
		O_DOMID = 256,
		O_RUNDIR,
		O_BE,
		O_RAM,
		O_MODE,
		O_DEVICES,
		O_SECONDS,
		O_IODEPTH,
		O_BS,
		O_QUEUES,
		O_QSIZE,
		O_WORKLOAD,
		O_SPAN,
		O_HOSTILE,
		O_REFUSE,
		O_TIMEOUT,
		O_SPIN,
		O_SEED,
		O_QUIET,
		O_VERBOSE,
		O_PLATFORM,
		O_GRANTS,
		O_HELP,
	};
	static const struct option longopts[] = {
	        {"domid", required_argument, NULL, O_DOMID},
	        {"run-dir", required_argument, NULL, O_RUNDIR},
	        {"backend-domid", required_argument, NULL, O_BE},
	        {"ram", required_argument, NULL, O_RAM},
	        {"addr-mode", required_argument, NULL, O_MODE},
	        {"devices", required_argument, NULL, O_DEVICES},
	        {"seconds", required_argument, NULL, O_SECONDS},
	        {"iodepth", required_argument, NULL, O_IODEPTH},
	        {"bs", required_argument, NULL, O_BS},
	        {"queues", required_argument, NULL, O_QUEUES},
	        {"queue-size", required_argument, NULL, O_QSIZE},
	        {"workload", required_argument, NULL, O_WORKLOAD},
	        {"span", required_argument, NULL, O_SPAN},
	        {"hostile", required_argument, NULL, O_HOSTILE},
	        {"refuse-features", required_argument, NULL, O_REFUSE},
	        {"timeout", required_argument, NULL, O_TIMEOUT},
	        {"spin-us", required_argument, NULL, O_SPIN},
	        {"seed", required_argument, NULL, O_SEED},
	        {"quiet", no_argument, NULL, O_QUIET},
	        {"verbose", no_argument, NULL, O_VERBOSE},
	        {"platform", required_argument, NULL, O_PLATFORM},
	        {"grants", required_argument, NULL, O_GRANTS},
	        {"help", no_argument, NULL, O_HELP},
	        {NULL, 0, NULL, 0},
	};
	unsigned long long v = 0; /* read after a failed parse too (then unused) */
	bool have_domid = false;
	int opt;

	memset(c, 0, sizeof(*c));
	c->ram = 64u << 20;
	c->seconds = 10;
	c->iodepth = 16;
	c->bs = 4096;
	c->queues = 1;
	c->timeout = 30;
	c->seed = 1;
	while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		int bad = 0;

		switch (opt) {
		case O_DOMID:
			bad = parse_uint(optarg, VPROXY_DOMID_MAX, &v) < 0 || v == 0;
			c->domid = (unsigned)v;
			have_domid = true;
			break;
		case O_RUNDIR: c->run_dir = optarg; break;
		case O_BE:
			bad = parse_uint(optarg, VPROXY_DOMID_MAX, &v) < 0;
			c->backend_domid = (int)v;
			break;
		case O_RAM:
			bad = parse_size(optarg, &c->ram) < 0 || c->ram < (1u << 20);
			c->ram_given = true;
			break;
		case O_MODE:
			if (strcmp(optarg, "gfn") == 0)
				c->mode = VPS_ADDR_GFN;
			else if (strcmp(optarg, "grant") == 0)
				c->mode = VPS_ADDR_GRANT;
			else
				bad = 1;
			c->mode_given = true;
			break;
		case O_DEVICES: bad = parse_devices(optarg, c) < 0; break;
		case O_SECONDS:
			bad = parse_seconds(optarg, &c->seconds) < 0;
			c->seconds_given = true;
			break;
		case O_IODEPTH:
			bad = parse_uint(optarg, 4096, &v) < 0 || v == 0;
			c->iodepth = (unsigned)v;
			break;
		case O_BS:
			bad = parse_size(optarg, &c->bs) < 0 || c->bs == 0 ||
			      c->bs % 512 || c->bs > (64u << 20);
			break;
		case O_QUEUES:
			bad = parse_uint(optarg, 1024, &v) < 0 || v == 0;
			c->queues = (unsigned)v;
			break;
		case O_QSIZE:
			bad = parse_uint(optarg, VBLK_QUEUE_SIZE_MAX, &v) < 0 || v < 4 ||
			      (v & (v - 1));
			c->queue_size = (unsigned)v;
			break;
		case O_WORKLOAD:
			if (strcmp(optarg, "mixed") == 0)
				c->wl = WL_MIXED;
			else if (strcmp(optarg, "read") == 0)
				c->wl = WL_READ;
			else if (strcmp(optarg, "write") == 0)
				c->wl = WL_WRITE;
			else if (strcmp(optarg, "verify") == 0)
				c->wl = WL_VERIFY;
			else if (strcmp(optarg, "idle") == 0)
				c->wl = WL_IDLE;
			else if (strcmp(optarg, "reset") == 0)
				c->wl = WL_RESET;
			else
				bad = 1;
			break;
		case O_SPAN:
			bad = parse_uint(optarg, UINT64_MAX, &v) < 0 || v == 0;
			c->span = v;
			break;
		case O_HOSTILE: bad = parse_hostile(optarg, c) < 0; break;
		case O_REFUSE:
			bad = parse_uint(optarg, UINT64_MAX, &v) < 0;
			c->refuse_features = v;
			break;
		case O_TIMEOUT:
			bad = parse_seconds(optarg, &c->timeout) < 0 || c->timeout <= 0;
			break;
		case O_SPIN:
			bad = parse_uint(optarg, 1000000, &v) < 0;
			c->spin_ns = v * 1000;
			break;
		case O_SEED:
			bad = parse_uint(optarg, UINT64_MAX, &v) < 0;
			c->seed = v;
			break;
		case O_QUIET: c->quiet = true; break;
		case O_VERBOSE: c->verbose = true; break;
		case O_PLATFORM:
			if (strcmp(optarg, "xen") == 0)
				c->xen = true;
			else
				bad = strcmp(optarg, "sim") != 0;
			break;
		case O_GRANTS:
			if (strcmp(optarg, "per-request") == 0)
				c->per_request_grants = true;
			else
				bad = strcmp(optarg, "persistent") != 0;
			break;
		case O_HELP: usage(stdout); exit(0);
		default: usage(stderr); return -EINVAL;
		}
		if (bad) {
			fprintf(stderr, PROG ": bad value for --%s: %s\n",
			        longopts[opt - O_DOMID].name, optarg);
			return -EINVAL;
		}
	}
	if (c->xen) {
		/* A PV guest cannot name its own frames to the backend (they
		 * are machine frames behind the kernel's p2m), so only grants. */
		if (c->mode_given && c->mode != VPS_ADDR_GRANT) {
			fprintf(stderr, PROG ": --platform xen supports only "
			                     "--addr-mode grant\n");
			return -EINVAL;
		}
		if (c->run_dir) {
			fprintf(stderr, PROG ": --run-dir is for --platform sim\n");
			return -EINVAL;
		}
		c->mode = VPS_ADDR_GRANT;
		if (!c->ram_given)
			c->ram = XEN_POOL_DEFAULT;
		if (!have_domid)
			c->domid = 0; /* learnt from xenstore */
	}
	if (optind != argc || (!c->xen && (!have_domid || !c->run_dir))) {
		usage(stderr);
		return -EINVAL;
	}
	for (unsigned h = 0; h < c->nhostile && c->ndev; h++) {
		bool found = false;

		for (unsigned i = 0; i < c->ndev; i++)
			found |= c->devids[i] == (unsigned)c->hostile_dev[h];
		if (!found) {
			fprintf(stderr,
			        PROG ": --hostile device %d is not in --devices\n",
			        c->hostile_dev[h]);
			return -EINVAL;
		}
	}
	return 0;
}

static void info(const struct config *c, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));

static void info(const struct config *c, const char *fmt, ...)
{
	va_list ap;

	if (c->quiet)
		return;
	va_start(ap, fmt);
	fprintf(stderr, PROG "[%d]: ", (int)getpid());
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

static void dev_error(struct gdev *g, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));

/* The first error is the device's result. */
static void dev_error(struct gdev *g, const char *fmt, ...)
{
	va_list ap;

	if (g->rc == RC_ERROR)
		return;
	va_start(ap, fmt);
	vsnprintf(g->error, sizeof(g->error), fmt, ap);
	va_end(ap);
	if (g->rc == RC_OK)
		g->rc = RC_ERROR;
}

static void add_detail(struct gdev *g, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));

static void add_detail(struct gdev *g, const char *fmt, ...)
{
	size_t used = strlen(g->detail);
	va_list ap;

	if (used + 2 >= sizeof(g->detail))
		return;
	va_start(ap, fmt);
	vsnprintf(g->detail + used, sizeof(g->detail) - used, fmt, ap);
	va_end(ap);
}

/* --- data patterns --- */

static uint64_t rnd(struct gdev *g)
{
	g->rng += VP_GOLDEN64;
	return vp_mix64(g->rng);
}

/* The seed of a block's data (common/pattern.h): the writer is the guest
 * and device. */
static uint64_t pattern_seed(const struct gdev *g, uint64_t block, uint32_t gen)
{
	return vp_pattern_seed(((uint64_t)g->cfg->domid << 32) | g->devid, block, gen);
}

static void fill_pattern(const struct gdev *g, uint64_t block, uint32_t gen, void *buf,
                         size_t len)
{
	vp_pattern_fill(pattern_seed(g, block, gen), buf, len);
}

/* Whether buf holds generation gen of block (zeros for GEN_ZERO); if not,
 * *bad_word is the first word that differs. */
static bool matches_pattern(const struct gdev *g, uint64_t block, uint32_t gen,
                            const void *buf, size_t len, size_t *bad_word)
{
	const uint64_t *w = buf;
	size_t i = 0;

	if (gen == GEN_ZERO) {
		while (i < len / 8 && w[i] == 0)
			i++;
	} else {
		i = vp_pattern_check(pattern_seed(g, block, gen), buf, len);
	}
	if (i == len / 8)
		return true;
	*bad_word = i;
	return false;
}

static void report_mismatch(struct gdev *g, const struct op *o)
{
	const uint64_t *w = o->buf.ptr;
	uint64_t off = o->block * g->cfg->bs, want;
	const char *what = "unknown data";
	size_t bad = 0, dummy;
	char expect[32];

	matches_pattern(g, o->block, o->gen, o->buf.ptr, g->cfg->bs, &bad);
	want = o->gen == GEN_ZERO
	               ? 0
	               : vp_pattern_word(pattern_seed(g, o->block, o->gen), bad);
	if (matches_pattern(g, o->block, GEN_ZERO, o->buf.ptr, g->cfg->bs, &dummy))
		what = "zeros";
	else if (o->gen != GEN_ZERO && o->gen > 1 &&
	         matches_pattern(g, o->block, o->gen - 1, o->buf.ptr, g->cfg->bs, &dummy))
		what = "the previous generation";
	if (o->gen == GEN_ZERO)
		snprintf(expect, sizeof(expect), "zeros");
	else
		snprintf(expect, sizeof(expect), "generation %" PRIu32, o->gen);
	add_detail(g,
	           "guest %u dev %u: MISMATCH block %" PRIu64 " offset %" PRIu64
	           " (expected %s): at byte %zu expected 0x%016" PRIx64
	           " got 0x%016" PRIx64 "; block holds %s\n",
	           g->cfg->domid, g->devid, o->block, off, expect, bad * 8, want, w[bad],
	           what);
	g->rc = RC_MISMATCH;
}

/* --- the workload --- */

static uint64_t bs_sectors(const struct gdev *g)
{
	return g->cfg->bs / 512;
}

static bool range_fits(uint32_t max_sectors, uint32_t align, uint64_t sectors)
{
	return max_sectors >= sectors && (align <= 1 || sectors % align == 0);
}

static bool pick_block(struct gdev *g, uint64_t *block)
{
	for (int tries = 0; tries < 8; tries++) {
		uint64_t b = rnd(g) % g->span;

		if (!g->busy[b]) {
			*block = b;
			return true;
		}
	}
	return false;
}

/* Decide what slot o does next; false if nothing can be issued now. */
static bool plan_op(struct gdev *g, struct op *o)
{
	const struct vblk_info *in = g->info;
	uint64_t r;

	o->block = NO_BLOCK;
	o->gen = GEN_UNKNOWN;
	switch (g->cfg->wl) {
	case WL_READ: o->type = VBLK_T_READ; break;
	case WL_WRITE: o->type = VBLK_T_WRITE; break;
	case WL_VERIFY:
		if (g->cursor == g->span) {
			/* a pass ends once every op of it completed */
			for (unsigned i = 0; i < g->nops; i++)
				if (g->ops[i].busy)
					return false;
			g->cursor = 0;
			g->verify_reading = !g->verify_reading;
			if (!g->verify_reading)
				g->pass_gen++;
			if (in->flush) {
				o->type = VBLK_T_FLUSH;
				return true;
			}
		}
		o->block = g->cursor++;
		o->type = g->verify_reading ? VBLK_T_READ : VBLK_T_WRITE;
		o->gen = g->pass_gen;
		return true;
	case WL_MIXED:
		if (in->flush && g->submitted % FLUSH_EVERY == FLUSH_EVERY - 1) {
			o->type = VBLK_T_FLUSH;
			return true;
		}
		r = rnd(g) % 100;
		if (in->read_only)
			o->type = VBLK_T_READ;
		else if (r < 2 && in->discard &&
		         range_fits(in->max_discard_sectors, in->discard_sector_alignment,
		                    bs_sectors(g)))
			o->type = VBLK_T_DISCARD;
		else if (r < 5 && in->write_zeroes &&
		         range_fits(in->max_write_zeroes_sectors, 1, bs_sectors(g)))
			o->type = VBLK_T_WRITE_ZEROES;
		else if (r < 52)
			o->type = VBLK_T_WRITE;
		else
			o->type = VBLK_T_READ;
		break;
	case WL_IDLE:
	case WL_RESET: return false;
	}
	if (!pick_block(g, &o->block))
		return false;
	if (o->type == VBLK_T_WRITE && g->cfg->wl != WL_WRITE) {
		uint32_t gen = g->gen[o->block] + 1;

		if (gen == GEN_ZERO || gen == GEN_UNKNOWN)
			gen = 1;
		o->gen = gen;
	} else if (o->type == VBLK_T_READ) {
		o->gen = g->gen[o->block];
	}
	return true;
}

static int submit_op(struct gdev *g, struct op *o)
{
	struct vblk_req req = {.type = o->type, .tag = (uint64_t)(o - g->ops)};
	int r;

	if (o->block != NO_BLOCK)
		req.sector = o->block * bs_sectors(g);
	switch (o->type) {
	case VBLK_T_WRITE:
		/* the write-only workload keeps the buffer's first pattern */
		if (g->cfg->wl != WL_WRITE)
			fill_pattern(g, o->block, o->gen, o->buf.ptr, g->cfg->bs);
		/* fall through */
	case VBLK_T_READ:
		req.buf = &o->buf;
		req.len = g->cfg->bs;
		break;
	case VBLK_T_DISCARD: req.num_sectors = (uint32_t)bs_sectors(g); break;
	case VBLK_T_WRITE_ZEROES:
		req.num_sectors = (uint32_t)bs_sectors(g);
		if (g->info->write_zeroes_may_unmap && (rnd(g) & 1))
			req.flags = VBLK_WZ_UNMAP;
		break;
	default: break;
	}
	o->start_ns = mono_ns();
	r = vblk_submit(vblk_queue(g->blk, o->q), &req);
	if (r < 0)
		return r;
	o->busy = true;
	if (o->block != NO_BLOCK)
		g->busy[o->block] = 1;
	g->submitted++;
	return 0;
}

static void complete_op(struct gdev *g, const struct vblk_completion *c)
{
	struct op *o;
	size_t bad;

	if (c->tag >= g->nops || !g->ops[c->tag].busy) {
		dev_error(g, "completion with unknown tag %" PRIu64, c->tag);
		return;
	}
	o = &g->ops[c->tag];
	o->busy = false;
	if (o->block != NO_BLOCK)
		g->busy[o->block] = 0;
	hist_add(&g->lat, mono_ns() - o->start_ns);
	if (c->status != VBLK_S_OK) {
		if (o->block != NO_BLOCK)
			g->gen[o->block] = GEN_UNKNOWN;
		dev_error(g, "%s of block %" PRIu64 " failed with status %u",
		          o->type == VBLK_T_READ      ? "read"
		          : o->type == VBLK_T_WRITE   ? "write"
		          : o->type == VBLK_T_FLUSH   ? "flush"
		          : o->type == VBLK_T_DISCARD ? "discard"
		                                      : "write-zeroes",
		          o->block, c->status);
		return;
	}
	switch (o->type) {
	case VBLK_T_READ:
		g->reads++;
		g->bytes += g->cfg->bs;
		if (o->gen != GEN_UNKNOWN) {
			if (matches_pattern(g, o->block, o->gen, o->buf.ptr, g->cfg->bs,
			                    &bad))
				g->verified++;
			else
				report_mismatch(g, o);
		}
		break;
	case VBLK_T_WRITE:
		g->writes++;
		g->bytes += g->cfg->bs;
		g->gen[o->block] = o->gen;
		break;
	case VBLK_T_FLUSH: g->flushes++; break;
	case VBLK_T_DISCARD:
		/* virtio-blk does not promise what a discarded block reads */
		g->discards++;
		g->gen[o->block] = GEN_UNKNOWN;
		break;
	case VBLK_T_WRITE_ZEROES:
		g->zeroes++;
		g->gen[o->block] = GEN_ZERO;
		break;
	default: break;
	}
}

static unsigned ops_busy(const struct gdev *g)
{
	unsigned n = 0;

	for (unsigned i = 0; i < g->nops; i++)
		n += g->ops[i].busy;
	return n;
}

/* Take every completion; the count or -errno. */
static int reap_all(struct gdev *g)
{
	struct vblk_completion c[64];
	int total = 0;

	for (unsigned qi = 0; qi < g->info->num_queues; qi++) {
		struct vblk_queue *q = vblk_queue(g->blk, qi);
		int n;

		do {
			n = vblk_reap(q, c, 64);
			if (n < 0)
				return n;
			for (int i = 0; i < n; i++)
				complete_op(g, &c[i]);
			total += n;
		} while (n == 64);
	}
	return total;
}

static void health_error(struct gdev *g, int r)
{
	switch (vblk_health(g->blk)) {
	case VBLK_NEEDS_RESET: dev_error(g, "device broken (NEEDS_RESET)"); break;
	case VBLK_GONE: dev_error(g, "backend closed: %s", vblk_error(g->blk)); break;
	case VBLK_FAILED: dev_error(g, "device failed: %s", vblk_error(g->blk)); break;
	default: dev_error(g, "%s", strerror(-r)); break;
	}
}

static void run_workload(struct gdev *g)
{
	const struct config *c = g->cfg;
	uint64_t end = mono_ns() + (uint64_t)(c->seconds * (double)NSEC);
	uint64_t progress = mono_ns(), timeout = (uint64_t)(c->timeout * (double)NSEC);
	bool *kick = calloc(g->info->num_queues, sizeof(*kick));

	if (!kick) {
		dev_error(g, "out of memory");
		return;
	}
	g->t_start = mono_ns();
	for (;;) {
		uint64_t now = mono_ns();
		bool running = !stopping() && now < end && g->rc == RC_OK;
		int r;

		if (running) {
			for (unsigned i = 0; i < g->nops; i++) {
				struct op *o = &g->ops[i];

				if (o->busy || !plan_op(g, o))
					continue;
				r = submit_op(g, o);
				if (r == -EAGAIN)
					break;
				if (r < 0) {
					health_error(g, r);
					break;
				}
				kick[o->q] = true;
			}
		}
		for (unsigned qi = 0; qi < g->info->num_queues; qi++) {
			if (!kick[qi])
				continue;
			kick[qi] = false;
			r = vblk_kick(vblk_queue(g->blk, qi));
			if (r < 0) {
				health_error(g, r);
				break;
			}
		}
		r = reap_all(g);
		if (r < 0) {
			health_error(g, r);
			break;
		}
		if (r > 0)
			progress = mono_ns();
		if (ops_busy(g) == 0 && (!running || g->rc == RC_ERROR))
			break;
		if (r > 0)
			continue;
		if (mono_ns() - progress > timeout) {
			dev_error(g, "timeout: %u requests unanswered for %.0f s",
			          ops_busy(g), c->timeout);
			break;
		}
		r = vblk_wait(g->blk, WAIT_SLICE_NS);
		if (r < 0) {
			health_error(g, r);
			break;
		}
	}
	g->t_end = mono_ns();
	free(kick);
}

static void run_idle(struct gdev *g)
{
	const struct config *c = g->cfg;
	uint64_t end = c->seconds_given
	                       ? mono_ns() + (uint64_t)(c->seconds * (double)NSEC)
	                       : UINT64_MAX;
	int r;

	g->t_start = mono_ns();
	while (!stopping() && mono_ns() < end) {
		r = vblk_wait(g->blk, WAIT_SLICE_NS);
		if (r < 0) {
			health_error(g, r);
			break;
		}
	}
	g->t_end = mono_ns();
}

/* Reset the device with a queue's worth of reads in flight.  Status must
 * read 0 only once the device no longer touches our buffers (virtio 1.2
 * 2.4): refill them afterwards and check, for --seconds, that nothing
 * writes them any more. */
static void run_reset(struct gdev *g)
{
	const struct config *c = g->cfg;
	struct vblk_queue *q = vblk_queue(g->blk, 0);
	struct vblk_stats st;
	unsigned n = 0;
	uint64_t hold_ns = (uint64_t)(c->seconds * (double)NSEC);
	int r;

	g->t_start = mono_ns();
	for (; n < g->nops; n++) {
		struct vblk_req req = {.type = VBLK_T_READ,
		                       .sector = n * bs_sectors(g) % g->info->capacity,
		                       .buf = &g->ops[n].buf,
		                       .len = c->bs,
		                       .tag = n};

		memset(g->ops[n].buf.ptr, 0, c->bs);
		r = vblk_submit(q, &req);
		if (r == -EAGAIN)
			break;
		if (r < 0) {
			health_error(g, r);
			return;
		}
	}
	r = vblk_kick(q);
	if (r < 0) {
		health_error(g, r);
		return;
	}
	vblk_stop(g->blk);
	vblk_get_stats(g->blk, &st);
	if (st.reset_timeouts) {
		dev_error(g, "the device did not reset in time");
		return;
	}
	for (unsigned i = 0; i < n; i++)
		memset(g->ops[i].buf.ptr, 0xa5, c->bs);
	while (!stopping() && mono_ns() - g->t_start < hold_ns)
		usleep(10000);
	for (unsigned i = 0; i < n; i++) {
		const uint8_t *p = g->ops[i].buf.ptr;

		for (size_t k = 0; k < c->bs; k++) {
			if (p[k] != 0xa5) {
				g->rc = RC_MISMATCH;
				add_detail(g,
				           "guest %u dev %u: buffer %u written at byte %zu "
				           "after Status read 0\n",
				           c->domid, g->devid, i, k);
				break;
			}
		}
	}
	g->t_end = mono_ns();
	add_detail(g,
	           "guest %u dev %u: reset with %u reads in flight: Status read "
	           "non-zero %" PRIu64 " times over %" PRIu64 " ms, buffers %s\n",
	           c->domid, g->devid, n, st.reset_polls, (uint64_t)(st.reset_wait_ns / MSEC),
	           g->rc == RC_OK ? "untouched afterwards" : "WRITTEN afterwards");
}

/* GET_ID: answered with a printable, NUL-padded id, or UNSUPP. */
static void check_get_id(struct gdev *g)
{
	struct vblk_queue *q = vblk_queue(g->blk, 0);
	struct vblk_req req = {
	        .type = VBLK_T_GET_ID, .buf = &g->ops[0].buf, .len = 20, .tag = 0};
	struct vblk_completion comp;
	uint64_t deadline = mono_ns() + (uint64_t)(g->cfg->timeout * (double)NSEC);
	char id[21];
	int r;

	memset(g->ops[0].buf.ptr, 0, 20);
	r = vblk_submit(q, &req);
	if (r == 0)
		r = vblk_kick(q);
	while (r == 0) {
		r = vblk_reap(q, &comp, 1);
		if (r != 0)
			break;
		if (mono_ns() > deadline) {
			dev_error(g, "timeout: no answer to GET_ID");
			return;
		}
		r = vblk_wait(g->blk, WAIT_SLICE_NS);
		if (r > 0)
			r = 0;
	}
	if (r < 0) {
		health_error(g, r);
		return;
	}
	if (comp.status == VBLK_S_UNSUPP) {
		add_detail(g, "guest %u dev %u: get-id unsupported\n", g->cfg->domid,
		           g->devid);
		return;
	}
	if (comp.status != VBLK_S_OK) {
		dev_error(g, "GET_ID failed with status %u", comp.status);
		return;
	}
	memcpy(id, g->ops[0].buf.ptr, 20);
	id[20] = '\0';
	for (size_t i = 0; i < strlen(id); i++) {
		if (id[i] < 0x20 || id[i] > 0x7e) {
			dev_error(g, "GET_ID returned unprintable byte 0x%02x at %zu",
			          (unsigned)(uint8_t)id[i], i);
			return;
		}
	}
	/* after the first NUL everything must be NUL too */
	for (size_t i = strlen(id); i < 20; i++) {
		if (((uint8_t *)g->ops[0].buf.ptr)[i] != 0) {
			dev_error(g, "GET_ID id is not NUL-padded");
			return;
		}
	}
	if (!g->cfg->quiet)
		add_detail(g, "guest %u dev %u: id \"%s\"\n", g->cfg->domid, g->devid,
		           id);
}

/* Corrupt the device and report what the backend does about it. */
static void run_hostile(struct gdev *g)
{
	static const char *const kinds[] = {"desc-loop", "bad-addr", "avail-jump",
	                                    "ring-overflow"};
	uint64_t deadline = mono_ns() + (uint64_t)(g->cfg->timeout * (double)NSEC);
	uint64_t next_check = 0;
	struct vblk_completion comp[8];
	int r;

	g->t_start = mono_ns();
	r = vblk_debug_corrupt(g->blk, g->kind);
	if (r < 0 && r != -ENODEV && r != -EPIPE) {
		dev_error(g, "cannot corrupt the device (%s)", strerror(-r));
		return;
	}
	while (!stopping()) {
		int n = vblk_reap(vblk_queue(g->blk, 0), comp, 8);

		for (int i = 0; i < n; i++) {
			if (comp[i].tag != HOSTILE_TAG)
				continue;
			if (comp[i].status == VBLK_S_OK) {
				dev_error(g, "%s request completed successfully",
				          kinds[g->kind]);
				return;
			}
			snprintf(g->outcome, sizeof(g->outcome), "request failed (%s)",
			         comp[i].status == VBLK_S_IOERR ? "IOERR"
			         : comp[i].status == VBLK_S_UNSUPP
			                 ? "UNSUPP"
			                 : "status not written");
			return;
		}
		switch (vblk_health(g->blk)) {
		case VBLK_NEEDS_RESET:
			snprintf(g->outcome, sizeof(g->outcome), "broken (NEEDS_RESET)");
			return;
		case VBLK_GONE:
			snprintf(g->outcome, sizeof(g->outcome), "backend closed: %s",
			         vblk_error(g->blk));
			return;
		case VBLK_FAILED:
			dev_error(g, "device failed: %s", vblk_error(g->blk));
			return;
		case VBLK_OK: break;
		}
		if (mono_ns() > deadline) {
			dev_error(g, "no reaction to %s in %.0f s", kinds[g->kind],
			          g->cfg->timeout);
			return;
		}
		if (mono_ns() >= next_check) {
			/* in case the config interrupt went missing */
			vblk_check(g->blk);
			next_check = mono_ns() + 500 * MSEC;
			continue;
		}
		vblk_wait(g->blk, WAIT_SLICE_NS);
	}
	dev_error(g, "interrupted before the backend reacted to %s", kinds[g->kind]);
}

static int setup_workload(struct gdev *g)
{
	const struct config *c = g->cfg;
	uint64_t span_default;

	g->nblocks = g->info->capacity * 512 / c->bs;
	if (g->nblocks == 0) {
		dev_error(g, "device of %" PRIu64 " sectors is smaller than --bs",
		          g->info->capacity);
		return -EINVAL;
	}
	if (c->bs > g->info->max_io_bytes || c->bs % g->info->blk_size) {
		dev_error(g, "--bs %zu not possible (max I/O %zu, block size %u)", c->bs,
		          g->info->max_io_bytes, g->info->blk_size);
		return -EINVAL;
	}
	span_default = c->wl == WL_MIXED    ? MIXED_SPAN_DEFAULT
	               : c->wl == WL_VERIFY ? VERIFY_SPAN_DEFAULT
	                                    : g->nblocks;
	g->span = c->span ? c->span : span_default;
	if (g->span > g->nblocks)
		g->span = g->nblocks;
	g->nops = c->iodepth;
	g->ops = calloc(g->nops, sizeof(*g->ops));
	g->gen = calloc(g->span, sizeof(*g->gen));
	g->busy = calloc(g->span, 1);
	if (!g->ops || !g->gen || !g->busy) {
		dev_error(g, "out of memory for %" PRIu64 " blocks", g->span);
		return -ENOMEM;
	}
	for (unsigned i = 0; i < g->nops; i++) {
		struct op *o = &g->ops[i];

		if (vblk_buf_alloc(g->blk, c->bs, &o->buf) < 0) {
			dev_error(
			        g,
			        "not enough guest RAM for %u x %zu-byte buffers (--ram)",
			        g->nops, c->bs);
			return -ENOMEM;
		}
		o->q = i % g->info->num_queues;
		if (c->wl == WL_WRITE)
			fill_pattern(g, i, 1, o->buf.ptr, c->bs);
	}
	g->pass_gen = 1;
	g->rng = c->seed ^ ((uint64_t)c->domid << 32) ^ ((uint64_t)g->devid << 16);
	return 0;
}

static void free_workload(struct gdev *g)
{
	for (unsigned i = 0; g->ops && i < g->nops; i++)
		vblk_buf_free(g->blk, &g->ops[i].buf);
	free(g->ops);
	free(g->gen);
	free(g->busy);
	g->ops = NULL;
	g->gen = NULL;
	g->busy = NULL;
}

static void *device_thread(void *arg)
{
	struct gdev *g = arg;
	const struct config *c = g->cfg;
	const struct vps_platform *plat = g->plat;
	struct vps_opts vo;
	struct vblk_opts bo;
	char why[200];
	int r;

	if (c->xen) {
		char path[96];

		/* The pool's grants stay on the same pages until we exit, so
		 * the backend may keep its mappings (see platform_xen.h). */
		snprintf(path, sizeof(path),
		         "/local/domain/%u/device/vproxy/%u/feature-persistent", c->domid,
		         g->devid);
		r = plat->xs_write(plat->ctx, 0, path, c->per_request_grants ? "0" : "1");
		if (r < 0) {
			dev_error(g, "cannot write %s: %s", path, strerror(-r));
			return NULL;
		}
	}
	vps_opts_default(&vo);
	vo.attach_timeout_ns = (uint64_t)(c->timeout * (double)NSEC);
	vo.spin_ns = c->spin_ns;
	vo.expect_backend = c->backend_domid;
	r = vps_attach(&g->vps, plat, g->devid, &vo);
	if (r < 0) {
		dev_error(g, "attach failed: %s",
		          vps_error(&g->vps)[0] ? vps_error(&g->vps) : strerror(-r));
		return NULL;
	}
	vblk_opts_default(&bo);
	bo.num_queues = c->queues;
	bo.queue_size = c->queue_size;
	bo.refuse_features = c->refuse_features;
	if (c->bs > bo.max_io_bytes)
		bo.max_io_bytes = c->bs;
	r = vblk_open(&g->vps, &bo, &g->blk, why, sizeof(why));
	if (r < 0) {
		dev_error(g, "virtio-blk setup failed: %s", why);
		goto detach;
	}
	g->info = vblk_info(g->blk);
	info(c,
	     "dom %u dev %u: %" PRIu64 " sectors, features 0x%" PRIx64
	     ", %u queue(s) of %u",
	     c->domid, g->devid, g->info->capacity, g->info->features,
	     g->info->num_queues, g->info->queue_size);
	if (g->info->num_queues < c->queues)
		info(c, "dom %u dev %u: device has only %u queue(s)", c->domid, g->devid,
		     g->info->num_queues);
	if (setup_workload(g) < 0)
		goto close;
	if (g->hostile)
		run_hostile(g);
	else if (c->wl == WL_IDLE)
		run_idle(g);
	else if (c->wl == WL_RESET)
		run_reset(g);
	else {
		check_get_id(g);
		if (g->rc == RC_OK)
			run_workload(g);
	}
close:
	/* the device lets go of the buffers before they are freed; one that
	 * did not reset in time may still write them: leave them be */
	vblk_stop(g->blk);
	if (vblk_may_free(g->blk))
		free_workload(g);
	vblk_close(g->blk);
detach:
	r = vps_detach(&g->vps);
	if (r < 0 && !g->hostile && g->rc == RC_OK)
		dev_error(g, "detach: backend did not close (%s)", strerror(-r));
	return NULL;
}

/* Nanoseconds as the microseconds the result lines print. */
static uint64_t us(uint64_t ns)
{
	return ns / 1000;
}

static void print_results(const struct config *c, struct gdev *devs, unsigned n,
                          int *exit_rc)
{
	double total_iops = 0, total_mbs = 0;
	struct hist *all = malloc(sizeof(*all));
	unsigned errors = 0;
	bool mismatch = false;

	if (all)
		hist_init(all);

	for (unsigned i = 0; i < n; i++) {
		struct gdev *g = &devs[i];
		double secs =
		        g->t_end > g->t_start ? (double)(g->t_end - g->t_start) / 1e9 : 0;
		uint64_t ops =
		        g->reads + g->writes + g->flushes + g->discards + g->zeroes;
		double iops = secs > 0 ? (double)ops / secs : 0;
		double mbs = secs > 0 ? (double)g->bytes / secs / 1e6 : 0;

		fputs(g->detail, stdout);
		if (g->hostile && g->rc == RC_OK) {
			printf("guest %u dev %u: %s\n", c->domid, g->devid, g->outcome);
			continue;
		}
		if (g->rc == RC_ERROR) {
			printf("guest %u dev %u: error: %s\n", c->domid, g->devid,
			       g->error);
			errors++;
			continue;
		}
		mismatch |= g->rc == RC_MISMATCH;
		total_iops += iops;
		total_mbs += mbs;
		if (all)
			hist_merge(all, &g->lat);
		printf("guest %u dev %u: %.0f IOPS %.1f MB/s reads %" PRIu64
		       " writes %" PRIu64 " flushes %" PRIu64 " discards %" PRIu64
		       " zeroes %" PRIu64 " verified %" PRIu64 " p50-us %" PRIu64
		       " p99-us %" PRIu64 " verify %s\n",
		       c->domid, g->devid, iops, mbs, g->reads, g->writes, g->flushes,
		       g->discards, g->zeroes, g->verified,
		       us(hist_percentile(&g->lat, 0.5)),
		       us(hist_percentile(&g->lat, 0.99)),
		       g->rc == RC_MISMATCH ? "FAILED" : "OK");
	}
	/* max-us: the slowest request, exactly. */
	printf("guest %u: total %.0f IOPS %.1f MB/s devices %u errors %u p50-us %" PRIu64
	       " p99-us %" PRIu64 " max-us %" PRIu64 " verify %s\n",
	       c->domid, total_iops, total_mbs, n, errors,
	       all ? us(hist_percentile(all, 0.5)) : 0,
	       all ? us(hist_percentile(all, 0.99)) : 0, all ? us(all->max_ns) : 0,
	       mismatch ? "FAILED" : "OK");
	fflush(stdout);
	free(all);
	*exit_rc = mismatch ? RC_MISMATCH : errors ? RC_ERROR : RC_OK;
}

/* The device ids to use: --devices, or what xenstore lists once at least
 * one device exists and the list stayed the same for DEVICE_SETTLE_NS (a
 * backend may provision a guest's devices one after the other). */
#define DEVICE_SETTLE_NS (500 * MSEC)

static int find_devices(struct config *c, const struct vps_platform *plat)
{
	uint64_t deadline = mono_ns() + (uint64_t)(c->timeout * (double)NSEC),
	         stable_since = 0;
	int n, last = 0;

	if (c->ndev)
		return 0;
	for (;;) {
		n = vps_list(plat, c->devids, MAX_DEVICES);
		if (n < 0) {
			fprintf(stderr, PROG ": cannot list devices: %s\n", strerror(-n));
			return n;
		}
		if (n != last) {
			last = n;
			stable_since = mono_ns();
		}
		if (n > 0 && mono_ns() - stable_since >= DEVICE_SETTLE_NS)
			break;
		if (stopping() || mono_ns() > deadline) {
			if (n > 0)
				break;
			fprintf(stderr, PROG ": domain %u has no vproxy devices\n",
			        c->domid);
			return -ENODEV;
		}
		usleep(50000);
	}
	c->ndev = n > MAX_DEVICES ? MAX_DEVICES : (unsigned)n;
	return 0;
}

int main(int argc, char **argv)
{
	struct sigaction sa;
	struct config cfg;
	struct simguest *sg = NULL;
	struct vps_sim *sim = NULL;
	struct vps_xen *xen = NULL;
	const struct vps_platform *plat;
	struct gdev *devs = NULL;
	size_t pages;
	int rc = RC_ERROR;

	if (parse_args(argc, argv, &cfg) < 0)
		return RC_ERROR;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	if (cfg.xen) {
		xen = vps_xen_create(cfg.ram, PROG);
		if (!xen) {
			fprintf(stderr,
			        PROG ": cannot use this domain's Xen devices (/dev/xen: "
			             "xenbus, evtchn, gntalloc): %s\n",
			        strerror(errno));
			return RC_ERROR;
		}
		plat = vps_xen_platform(xen);
		if (cfg.domid && cfg.domid != plat->domid) {
			fprintf(stderr, PROG ": --domid %u but this is domain %u\n",
			        cfg.domid, (unsigned)plat->domid);
			goto out;
		}
		cfg.domid = plat->domid;
		vps_xen_set_log_level(xen, cfg.verbose ? VPS_LOG_DEBUG
		                           : cfg.quiet ? VPS_LOG_ERROR
		                                       : VPS_LOG_WARN);
	} else {
		pages = cfg.ram / 4096;
		sg = simguest_create(
		        cfg.run_dir, (uint16_t)cfg.domid, cfg.ram,
		        (unsigned)(pages + 256 > 1u << 20 ? 1u << 20 : pages + 256));
		if (!sg) {
			fprintf(stderr, PROG ": cannot create guest %u in %s: %s\n",
			        cfg.domid, cfg.run_dir, strerror(errno));
			return RC_ERROR;
		}
		sim = vps_sim_create(sg, cfg.mode, PROG);
		if (!sim) {
			fprintf(stderr, PROG ": cannot reach xenstore: %s\n",
			        strerror(errno));
			goto out;
		}
		plat = vps_sim_platform(sim);
		vps_sim_set_log_level(sim, cfg.verbose ? VPS_LOG_DEBUG
		                           : cfg.quiet ? VPS_LOG_ERROR
		                                       : VPS_LOG_WARN);
	}
	if (find_devices(&cfg, plat) < 0)
		goto out;
	for (unsigned h = 0; h < cfg.nhostile; h++) {
		bool found = false;

		for (unsigned i = 0; i < cfg.ndev; i++)
			found |= cfg.devids[i] == (unsigned)cfg.hostile_dev[h];
		if (!found) {
			fprintf(stderr,
			        PROG
			        ": --hostile device %d: domain %u has no such device\n",
			        cfg.hostile_dev[h], cfg.domid);
			goto out;
		}
	}
	devs = calloc(cfg.ndev, sizeof(*devs));
	if (!devs)
		goto out;
	for (unsigned i = 0; i < cfg.ndev; i++) {
		struct gdev *g = &devs[i];

		g->cfg = &cfg;
		g->devid = cfg.devids[i];
		hist_init(&g->lat);
		g->plat = plat;
		for (unsigned h = 0; h < cfg.nhostile; h++) {
			if ((unsigned)cfg.hostile_dev[h] == g->devid) {
				g->hostile = true;
				g->kind = cfg.hostile_kind[h];
			}
		}
	}
	for (unsigned i = 0; i < cfg.ndev; i++) {
		if (pthread_create(&devs[i].thread, NULL, device_thread, &devs[i]) != 0) {
			dev_error(&devs[i], "cannot start a thread");
			continue;
		}
		devs[i].started = true;
	}
	for (unsigned i = 0; i < cfg.ndev; i++)
		if (devs[i].started)
			pthread_join(devs[i].thread, NULL);
	print_results(&cfg, devs, cfg.ndev, &rc);
out:
	free(devs);
	vps_sim_destroy(sim);
	simguest_destroy(sg);
	vps_xen_destroy(xen);
	return rc;
}
