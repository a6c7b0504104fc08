/* SPDX-License-Identifier: MIT */
/*
 * vproxy-bench: throughput and latency of vproxyd serving N simulated
 * guests, next to fio on the same store (the limit) and QEMU's
 * qemu-storage-daemon vhost-user-blk export driven by the same guest code
 * (the peer).  See bench/README.md for the method.
 *
 * The driver sets up a sim host (xenstored with the shim, vproxyd with a
 * generated config, one sim domain per guest), starts one
 * vproxy-bench-guest process per guest, lets them start together through
 * a shared control file (ctl.h), samples the server's CPU time over the
 * measured window, merges the guests' latency histograms and prints the
 * results.  Everything it starts it stops by pid, on success, failure or
 * ^C.  This file: arguments and the run of every sweep point.
 */
#include "bench.h"
#include "config.h"
#include "proc.h"
#include "report.h"
#include "size.h"
#include "version.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>
#include <vproxy/proto.h>

struct host bench_host;
const struct cfg *bench_cfg;
volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
	(void)sig;
	interrupted = 1;
}

/* ---- arguments ---- */

static void usage(FILE *f)
{
	fprintf(f,
	        "usage: " PROG " [options]\n"
	        "workload:\n"
	        "  --rw read|write|randread|randwrite|randrw|idle   (default randread;\n"
	        "                         idle: guests attached, no I/O: the server's idle CPU)\n"
	        "  --rwmixread PCT        reads in randrw (default 50)\n"
	        "  --bs SIZE              block size (default 4k)\n"
	        "  --iodepth N            requests in flight per queue (default 32)\n"
	        "  --queues M             virtqueues per guest (default 1)\n"
	        "  --guests N             simulated guests, one process each (default "
	        "1)\n"
	        "  --runtime S            measured seconds (default 5)\n"
	        "  --ramp S               seconds run before measuring (default 1)\n"
	        "  --size SIZE            disk size / region used (default 256M)\n"
	        "  --verify               check every block read against what was "
	        "written\n"
	        "  --prefill on|off       write the region before the run (default: "
	        "reads\n"
	        "                         of a store that starts empty)\n"
	        "storage:\n"
	        "  --plugin mem|raw|sparse  (default mem)\n"
	        "  --file PATH            backing file (raw: made if absent; sparse: an "
	        "image)\n"
	        "  --direct on|off        O_DIRECT for raw/sparse, fio and qsd\n"
	        "  --engine auto|io_uring|threads   raw/sparse I/O engine (qsd: aio=)\n"
	        "  --plugin-param K=V     extra device parameter (repeatable)\n"
	        "comparisons:\n"
	        "  --baseline fio         fio on the same file, bs, QD, io_uring (+ "
	        "memcpy for mem)\n"
	        "  --peer qsd             qemu-storage-daemon vhost-user-blk, same guest "
	        "code\n"
	        "  --sweep iodepth=1,4,16,64 | guests=1,4,16,64\n"
	        "  --plot FILE.png        IOPS and p99 against the swept value "
	        "(gnuplot)\n"
	        "tuning:\n"
	        "  --poll-us auto|N       vproxyd poll-us (default auto, vproxyd's own)\n"
	        "  --poll-max-us N        vproxyd poll-max-us, auto's cap (default: "
	        "vproxyd's)\n"
	        "  --guest-spin-us N      guests poll the used ring N us before sleeping "
	        "(0)\n"
	        "  --qsd-poll-ns N        qsd iothread poll-max-ns (default: qsd's own)\n"
	        "output:\n"
	        "  --json FILE|-  --csv FILE|-   --quiet   --progress on|off   "
	        "--guest-rows N\n"
	        "host:\n"
	        "  --attach PID           use a running vproxyd (XENSTORED_PATH, "
	        "--run-dir; its\n"
	        "                         config declares device 0 for guests "
	        "--first-domid..)\n"
	        "  --run-dir DIR  --first-domid D (default 10)  --addr-mode gfn|grant\n"
	        "  --build-dir DIR  --timeout S (default 30)  --seed N  --keep  "
	        "--no-vproxy\n"
	        "  --xs-trace             keep xenstored's request trace (xs/trace.log)\n"
	        "2 CPUs: guests, vproxyd, qsd and fio all share this machine's CPUs.\n");
}

static int parse_uint(const char *s, unsigned long max, unsigned *out)
{
	uint64_t v;

	if (vp_parse_count(s, max, &v) < 0)
		return -EINVAL;
	*out = (unsigned)v;
	return 0;
}

static int parse_secs(const char *s, double *out)
{
	char *end;

	errno = 0;
	*out = strtod(s, &end);
	return errno || end == s || *end || !(*out >= 0) || *out > 86400 ? -EINVAL : 0;
}

static int parse_sweep(const char *s, struct cfg *c)
{
	char buf[256], *save = NULL;
	const char *eq = strchr(s, '=');

	if (!eq)
		return -EINVAL;
	if (strncmp(s, "iodepth=", 8) == 0)
		c->sweep = SWEEP_IODEPTH;
	else if (strncmp(s, "guests=", 7) == 0)
		c->sweep = SWEEP_GUESTS;
	else
		return -EINVAL;
	snprintf(buf, sizeof(buf), "%s", eq + 1);
	c->nsweep = 0;
	for (char *tok = strtok_r(buf, ",", &save); tok;
	     tok = strtok_r(NULL, ",", &save)) {
		if (c->nsweep == MAX_SWEEP ||
		    parse_uint(tok, c->sweep == SWEEP_GUESTS ? MAX_GUESTS : 1024,
		               &c->sweep_vals[c->nsweep]) < 0 ||
		    !c->sweep_vals[c->nsweep])
			return -EINVAL;
		c->nsweep++;
	}
	return c->nsweep ? 0 : -EINVAL;
}

static void parse_args(int argc, char **argv, struct cfg *c)
{
	enum {
		OPT_RW = 256,
		OPT_MIX,
		OPT_BS,
		OPT_QD,
		OPT_QUEUES,
		OPT_GUESTS,
		OPT_RUNTIME,
		OPT_RAMP,
		OPT_SIZE,
		OPT_VERIFY,
		OPT_PREFILL,
		OPT_PLUGIN,
		OPT_FILE,
		OPT_DIRECT,
		OPT_ENGINE,
		OPT_PARAM,
		OPT_BASELINE,
		OPT_PEER,
		OPT_SWEEP,
		OPT_PLOT,
		OPT_POLL,
		OPT_POLLMAX,
		OPT_SPIN,
		OPT_QSDPOLL,
		OPT_JSON,
		OPT_CSV,
		OPT_QUIET,
		OPT_PROGRESS,
		OPT_ROWS,
		OPT_ATTACH,
		OPT_RUNDIR,
		OPT_FIRST,
		OPT_MODE,
		OPT_BUILD,
		OPT_TIMEOUT,
		OPT_SEED,
		OPT_KEEP,
		OPT_NOVP,
		OPT_XSTRACE,
		OPT_HELP,
		OPT_VERSION,
	};
	static const struct option lo[] = {
	        {"rw", 1, NULL, OPT_RW},
	        {"rwmixread", 1, NULL, OPT_MIX},
	        {"bs", 1, NULL, OPT_BS},
	        {"iodepth", 1, NULL, OPT_QD},
	        {"queues", 1, NULL, OPT_QUEUES},
	        {"guests", 1, NULL, OPT_GUESTS},
	        {"runtime", 1, NULL, OPT_RUNTIME},
	        {"ramp", 1, NULL, OPT_RAMP},
	        {"size", 1, NULL, OPT_SIZE},
	        {"verify", 0, NULL, OPT_VERIFY},
	        {"prefill", 1, NULL, OPT_PREFILL},
	        {"plugin", 1, NULL, OPT_PLUGIN},
	        {"file", 1, NULL, OPT_FILE},
	        {"direct", 1, NULL, OPT_DIRECT},
	        {"engine", 1, NULL, OPT_ENGINE},
	        {"plugin-param", 1, NULL, OPT_PARAM},
	        {"baseline", 1, NULL, OPT_BASELINE},
	        {"peer", 1, NULL, OPT_PEER},
	        {"sweep", 1, NULL, OPT_SWEEP},
	        {"plot", 1, NULL, OPT_PLOT},
	        {"poll-us", 1, NULL, OPT_POLL},
	        {"poll-max-us", 1, NULL, OPT_POLLMAX},
	        {"guest-spin-us", 1, NULL, OPT_SPIN},
	        {"qsd-poll-ns", 1, NULL, OPT_QSDPOLL},
	        {"json", 1, NULL, OPT_JSON},
	        {"csv", 1, NULL, OPT_CSV},
	        {"quiet", 0, NULL, OPT_QUIET},
	        {"progress", 1, NULL, OPT_PROGRESS},
	        {"guest-rows", 1, NULL, OPT_ROWS},
	        {"attach", 1, NULL, OPT_ATTACH},
	        {"run-dir", 1, NULL, OPT_RUNDIR},
	        {"first-domid", 1, NULL, OPT_FIRST},
	        {"addr-mode", 1, NULL, OPT_MODE},
	        {"build-dir", 1, NULL, OPT_BUILD},
	        {"timeout", 1, NULL, OPT_TIMEOUT},
	        {"seed", 1, NULL, OPT_SEED},
	        {"keep", 0, NULL, OPT_KEEP},
	        {"no-vproxy", 0, NULL, OPT_NOVP},
	        {"xs-trace", 0, NULL, OPT_XSTRACE},
	        {"help", 0, NULL, OPT_HELP},
	        {"version", 0, NULL, OPT_VERSION},
	        {NULL, 0, NULL, 0},
	};
	static const char *const rws[] = {"read", "write", "randread", "randwrite",
	                                  "randrw", "idle"};
	unsigned u = 0; /* read after a failed parse too (then unused) */
	int o;

	*c = (struct cfg){.rw = "randread",
	                  .rwmixread = 50,
	                  .bs = 4096,
	                  .iodepth = 32,
	                  .queues = 1,
	                  .guests = 1,
	                  .runtime = 5,
	                  .ramp = 1,
	                  .size = 256u << 20,
	                  .plugin = "mem",
	                  .prefill = -1,
	                  .poll_auto = true,
	                  .qsd_poll_ns = -1,
	                  .first_domid = 10,
	                  .addr_mode = "gfn",
	                  .progress = -1,
	                  .timeout_s = 30,
	                  .seed = 1,
	                  .guest_rows = 16};
	while ((o = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		bool bad = false;

		switch (o) {
		case OPT_RW:
			bad = true;
			for (unsigned i = 0; i < sizeof(rws) / sizeof(rws[0]); i++)
				if (strcmp(optarg, rws[i]) == 0) {
					c->rw = rws[i];
					bad = false;
				}
			break;
		case OPT_MIX: bad = parse_uint(optarg, 100, &c->rwmixread) < 0; break;
		case OPT_BS:
			bad = vp_parse_size(optarg, &c->bs) < 0 || !c->bs || c->bs % 512 ||
			      c->bs > (1u << 20);
			break;
		case OPT_QD:
			/* every request in flight needs a slot in the queue */
			u = VP_CONFIG_MAX_QUEUE_SIZE;
			bad = parse_uint(optarg, u, &c->iodepth) < 0 || !c->iodepth;
			break;
		case OPT_QUEUES:
			bad = parse_uint(optarg, VP_CONFIG_MAX_QUEUES, &c->queues) < 0 ||
			      !c->queues;
			break;
		case OPT_GUESTS:
			bad = parse_uint(optarg, MAX_GUESTS, &c->guests) < 0 ||
			      !c->guests;
			break;
		case OPT_RUNTIME:
			bad = parse_secs(optarg, &c->runtime) < 0 || c->runtime < 0.05;
			break;
		case OPT_RAMP: bad = parse_secs(optarg, &c->ramp) < 0; break;
		case OPT_SIZE:
			bad = vp_parse_size(optarg, &c->size) < 0 || c->size < (1u << 20);
			break;
		case OPT_VERIFY: c->verify = true; break;
		case OPT_PREFILL:
			bad = strcmp(optarg, "on") != 0 && strcmp(optarg, "off") != 0;
			c->prefill = strcmp(optarg, "on") == 0;
			break;
		case OPT_PLUGIN:
			bad = strcmp(optarg, "mem") != 0 && strcmp(optarg, "raw") != 0 &&
			      strcmp(optarg, "sparse") != 0;
			c->plugin = optarg;
			break;
		case OPT_FILE: c->file = optarg; break;
		case OPT_DIRECT:
			bad = strcmp(optarg, "on") != 0 && strcmp(optarg, "off") != 0;
			c->direct = optarg;
			break;
		case OPT_ENGINE:
			bad = strcmp(optarg, "auto") != 0 &&
			      strcmp(optarg, "io_uring") != 0 &&
			      strcmp(optarg, "threads") != 0;
			c->engine = optarg;
			break;
		case OPT_PARAM:
			bad = c->nparams == MAX_PARAMS || !strchr(optarg, '=') ||
			      optarg[0] == '=' || strchr(optarg, '\n');
			if (!bad)
				c->params[c->nparams++] = optarg;
			break;
		case OPT_BASELINE:
			bad = strcmp(optarg, "fio") != 0;
			c->fio = true;
			break;
		case OPT_PEER:
			bad = strcmp(optarg, "qsd") != 0;
			c->qsd = true;
			break;
		case OPT_SWEEP: bad = parse_sweep(optarg, c) < 0; break;
		case OPT_PLOT: c->plot = optarg; break;
		case OPT_POLL:
			c->poll_auto = strcmp(optarg, "auto") == 0;
			bad = !c->poll_auto && parse_uint(optarg, 1000000, &c->poll_us) < 0;
			break;
		case OPT_POLLMAX:
			bad = parse_uint(optarg, 1000000, &c->poll_max_us) < 0 || !c->poll_max_us;
			break;
		case OPT_SPIN: bad = parse_uint(optarg, 1000000, &c->spin_us) < 0; break;
		case OPT_QSDPOLL:
			bad = parse_uint(optarg, 100000000, &u) < 0;
			c->qsd_poll_ns = u;
			break;
		case OPT_JSON: c->json = optarg; break;
		case OPT_CSV: c->csv = optarg; break;
		case OPT_QUIET: c->quiet = true; break;
		case OPT_PROGRESS:
			bad = strcmp(optarg, "on") != 0 && strcmp(optarg, "off") != 0;
			c->progress = strcmp(optarg, "on") == 0;
			break;
		case OPT_ROWS:
			bad = parse_uint(optarg, MAX_GUESTS, &c->guest_rows) < 0;
			break;
		case OPT_ATTACH:
			bad = parse_uint(optarg, INT_MAX, &u) < 0 || !u;
			c->attach_pid = (pid_t)u;
			break;
		case OPT_RUNDIR: c->run_dir = optarg; break;
		case OPT_FIRST:
			bad = parse_uint(optarg, VPROXY_DOMID_MAX - MAX_GUESTS,
			                 &c->first_domid) < 0 ||
			      !c->first_domid;
			break;
		case OPT_MODE:
			bad = strcmp(optarg, "gfn") != 0 && strcmp(optarg, "grant") != 0;
			c->addr_mode = optarg;
			break;
		case OPT_BUILD: c->build_dir = optarg; break;
		case OPT_TIMEOUT:
			bad = parse_uint(optarg, 3600, &c->timeout_s) < 0 ||
			      !c->timeout_s;
			break;
		case OPT_SEED:
			bad = parse_uint(optarg, UINT_MAX, &u) < 0;
			c->seed = u;
			break;
		case OPT_KEEP: c->keep = true; break;
		case OPT_NOVP: c->no_vproxy = true; break;
		case OPT_XSTRACE: c->xs_trace = true; break;
		case OPT_HELP: usage(stdout); exit(0);
		case OPT_VERSION: printf(PROG " %s\n", VPROXY_VERSION); exit(0);
		default: usage(stderr); exit(2);
		}
		if (bad) {
			fprintf(stderr, PROG ": bad value for --%s: %s\n",
			        lo[o - OPT_RW].name, optarg);
			exit(2);
		}
	}
	if (optind != argc) {
		usage(stderr);
		exit(2);
	}
	if (c->attach_pid && (!c->run_dir || !getenv("XENSTORED_PATH"))) {
		fprintf(stderr, PROG ": --attach needs --run-dir and XENSTORED_PATH\n");
		exit(2);
	}
	if (strcmp(c->plugin, "sparse") == 0 && (c->fio || c->qsd)) {
		/* They would read (and write!) the image's container format. */
		fprintf(stderr,
		        PROG ": --plugin sparse cannot be compared with fio or qsd: "
		             "its image format is vproxy's own (compare --plugin raw)\n");
		exit(2);
	}
	if (strcmp(c->rw, "idle") == 0 && c->fio) {
		fprintf(stderr, PROG ": --rw idle has no fio baseline (fio has no server)\n");
		exit(2);
	}
	if (c->plot && !c->nsweep) {
		fprintf(stderr, PROG ": --plot needs --sweep\n");
		exit(2);
	}
	if (c->attach_pid && c->sweep == SWEEP_GUESTS) {
		fprintf(stderr,
		        PROG ": --attach cannot sweep guests (the config is fixed)\n");
		exit(2);
	}
	if (c->progress < 0)
		c->progress = isatty(2) && !c->quiet;
}

static void find_build_dir(const struct cfg *c)
{
	char exe[PATH_MAX];
	ssize_t n;

	if (c->build_dir) {
		if (!realpath(c->build_dir, bench_host.build))
			die("--build-dir %s: %s", c->build_dir, strerror(errno));
		return;
	}
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n <= 0)
		die("cannot find my own binary");
	exe[n] = '\0';
	/* <build>/bench/vproxy-bench */
	for (int i = 0; i < 2; i++) {
		char *slash = strrchr(exe, '/');

		if (!slash)
			die("unexpected binary path %s", exe);
		*slash = '\0';
	}
	snprintf(bench_host.build, sizeof(bench_host.build), "%s", exe);
}

static FILE *open_out(const char *path)
{
	FILE *f;

	if (strcmp(path, "-") == 0)
		return stdout;
	f = fopen(path, "we");
	if (!f)
		die("cannot write %s: %s", path, strerror(errno));
	return f;
}

static void close_out(FILE *f)
{
	if (f != stdout && fclose(f) != 0)
		fprintf(stderr, PROG ": error writing output\n");
}

int main(int argc, char **argv)
{
	static struct cfg cfg;
	struct sigaction sa = {.sa_handler = on_signal};
	struct report_info ri;
	struct run_point *pts;
	struct rlimit rl;
	unsigned npts;
	int rc = 0;

	parse_args(argc, argv, &cfg);
	bench_cfg = &cfg;
	find_build_dir(&cfg);
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	/* Hundreds of guests: vproxyd holds several fds per guest. */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	snprintf(bench_host.work, sizeof(bench_host.work), "%s/vproxy-bench.XXXXXX",
	         getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (!mkdtemp(bench_host.work)) {
		bench_host.work[0] = '\0';
		die("cannot create a work directory: %s", strerror(errno));
	}
	if (strcmp(cfg.plugin, "raw") == 0 || strcmp(cfg.plugin, "sparse") == 0)
		store_file(&cfg);

	npts = cfg.nsweep ? cfg.nsweep : 1;
	pts = calloc(npts, sizeof(*pts));
	if (!pts)
		die("out of memory");
	ri = (struct report_info){.rw = cfg.rw,
	                          .rwmixread = cfg.rwmixread,
	                          .bs = cfg.bs,
	                          .iodepth = cfg.iodepth,
	                          .queues = cfg.queues,
	                          .guests = cfg.guests,
	                          .runtime_s = cfg.runtime,
	                          .ramp_s = cfg.ramp,
	                          .size = cfg.size,
	                          .plugin = cfg.plugin,
	                          .file = cfg.file,
	                          .direct = cfg.direct,
	                          .engine = cfg.engine,
	                          .verify = cfg.verify,
	                          .poll_auto = cfg.poll_auto,
	                          .poll_us = cfg.poll_us,
	                          .poll_max_us = cfg.poll_max_us,
	                          .spin_us = cfg.spin_us,
	                          .cpus = sysconf(_SC_NPROCESSORS_ONLN),
	                          .version = VPROXY_VERSION};
	for (unsigned i = 0; i < npts && !interrupted; i++) {
		struct run_point *p = &pts[i];
		unsigned guests = cfg.guests, qd = cfg.iodepth;

		if (cfg.sweep == SWEEP_IODEPTH) {
			p->sweep_name = "iodepth";
			qd = cfg.sweep_vals[i];
		} else if (cfg.sweep == SWEEP_GUESTS) {
			p->sweep_name = "guests";
			guests = cfg.sweep_vals[i];
		}
		p->sweep_value = cfg.nsweep ? cfg.sweep_vals[i] : 0;
		if (!cfg.no_vproxy)
			run_vproxy(&cfg, guests, qd, &p->t[p->nt++]);
		if (cfg.qsd && !interrupted)
			run_qsd(&cfg, guests, qd, &p->t[p->nt++]);
		if (cfg.fio && !interrupted) {
			run_fio(&cfg, guests, qd, &p->t[p->nt++]);
			if (strcmp(cfg.plugin, "mem") == 0)
				run_memcpy(&cfg, &p->t[p->nt++]);
		}
		ri.file = cfg.file;
		if (!cfg.quiet || (!cfg.json && !cfg.csv))
			report_table(stdout, &ri, p, cfg.guest_rows);
		fflush(stdout);
		for (unsigned k = 0; k < p->nt; k++)
			if (p->t[k].ran && !p->t[k].ok)
				rc = 1;
	}
	if (interrupted)
		rc = 130;
	if (cfg.json) {
		FILE *f = open_out(cfg.json);

		report_json(f, &ri, pts, npts);
		close_out(f);
	}
	if (cfg.csv) {
		FILE *f = open_out(cfg.csv);

		report_csv(f, &ri, pts, npts);
		close_out(f);
	}
	if (cfg.plot && rc != 130)
		plot(&cfg, pts, npts);
	for (unsigned i = 0; i < npts; i++)
		for (unsigned k = 0; k < pts[i].nt; k++)
			free(pts[i].t[k].g);
	free(pts);
	cleanup();
	return rc;
}
