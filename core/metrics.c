/* SPDX-License-Identifier: MIT */
/*
 * GET /metrics in the Prometheus text exposition format (version 0.0.4),
 * served by libevent's evhttp on the loop thread, so a scrape reads the
 * devices' counters as the control socket does: between two events,
 * without locks.
 *
 * Per device (labels guest, domid, device, label, plugin): requests and
 * bytes by kind, errors, in flight, kicks, interrupts, connected, size, and
 * the latency as a Prometheus histogram made from the device's HDR
 * histogram (common/hist.h): each of its buckets goes to the first
 * Prometheus bucket its upper edge fits in, so a count is never placed
 * below its value.  The counters cover every connection of the guest to
 * the device (as vproxyctl stats).  Process: CPU seconds, resident
 * memory, open fds, start time, guests and devices.
 */
#include "metrics.h"

#include <dirent.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <vproxy/proto.h>

#include "blk.h"
#include "hist.h"
#include "log.h"
#include "loop.h"
#include "xsbus.h"

struct vp_metrics {
	struct evhttp *http;
	struct vp_xsbus *bus;
};

/* Prometheus buckets of the latency histogram, in seconds. */
static const double le_s[] = {10e-6,  25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3,
                              2.5e-3, 5e-3,  10e-3, 25e-3,  50e-3,  100e-3, 250e-3,
                              500e-3, 1,     2.5,   5,      10};
#define NLE (sizeof(le_s) / sizeof(le_s[0]))

/* A label value with \, " and newline escaped. */
static void put_escaped(struct evbuffer *b, const char *v)
{
	for (; *v; v++) {
		if (*v == '\\' || *v == '"')
			evbuffer_add_printf(b, "\\%c", *v);
		else if (*v == '\n')
			evbuffer_add(b, "\\n", 2);
		else
			evbuffer_add(b, v, 1);
	}
}

/* One device's numbers for a scrape, taken in one walk: every metric is
 * then written from these, grouped by metric as the format wants. */
struct dev_sum {
	char *labels; /* guest="...",domid="...",device="...",label="...",plugin="..." */
	uint64_t reqs[VP_BLK_NOPS], bytes[VP_BLK_NOPS];
	uint64_t errors, kicks, irqs, inflight, capacity;
	uint64_t le[NLE]; /* counts per bucket, not yet cumulative */
	uint64_t count, sum_ns;
	uint64_t connected; /* 0 or 1 */
};

struct scrape {
	struct dev_sum *v;
	size_t n, cap;
	bool oom;
	unsigned guests;
	uint8_t dom_seen[(VPROXY_DOMID_MAX + 8) / 8]; /* to count guests once */
};

/* The label set of d, rendered once. */
static char *render_labels(const struct vp_xsbus_device *d)
{
	struct evbuffer *b = evbuffer_new();
	size_t len;
	char *out;

	if (!b)
		return NULL;
	/* The domain's name when known, else the guest as configured. */
	evbuffer_add(b, "guest=\"", 7);
	put_escaped(b, d->dom_name ? d->dom_name : d->decl->guest);
	if (d->dom >= 0)
		evbuffer_add_printf(b, "\",domid=\"%d", d->dom);
	else
		evbuffer_add(b, "\",domid=\"", 9);
	evbuffer_add_printf(b, "\",device=\"%u\",label=\"", d->devid);
	put_escaped(b, d->decl->label);
	evbuffer_add(b, "\",plugin=\"", 10);
	put_escaped(b, d->decl->plugin ? d->decl->plugin->name : "");
	evbuffer_add(b, "\"", 1);
	len = evbuffer_get_length(b);
	out = malloc(len + 1);
	if (out) {
		evbuffer_remove(b, out, len);
		out[len] = '\0';
	}
	evbuffer_free(b);
	return out;
}

/* Each HDR bucket goes to the first Prometheus bucket its upper edge fits. */
static void add_hist(struct dev_sum *ds, const struct hist *h)
{
	unsigned k = 0;

	for (unsigned i = 0; i < HIST_BUCKETS; i++) {
		double top_s;

		if (!h->b[i])
			continue;
		top_s = (double)hist_bucket_max(i) / 1e9;
		while (k < NLE && top_s > le_s[k])
			k++; /* buckets rise with i, so k only moves on */
		if (k < NLE)
			ds->le[k] += h->b[i];
	}
	ds->count += h->count;
	ds->sum_ns += h->sum_ns;
}

static void add_queue(struct dev_sum *ds, const struct vp_blk_queue_stats *q)
{
	for (unsigned op = 0; op < VP_BLK_NOPS; op++) {
		ds->reqs[op] += q->reqs[op];
		ds->bytes[op] += q->bytes[op];
	}
	ds->errors += q->errors;
}

static void device_cb(void *arg, const struct vp_xsbus_device *d)
{
	struct scrape *s = arg;
	unsigned nq =
	        d->decl->queues < VP_BLK_MAX_QUEUES ? d->decl->queues : VP_BLK_MAX_QUEUES;
	struct dev_sum *ds;

	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 64;
		struct dev_sum *nv = realloc(s->v, cap * sizeof(*nv));

		if (!nv) {
			s->oom = true;
			return;
		}
		s->v = nv;
		s->cap = cap;
	}
	ds = &s->v[s->n];
	memset(ds, 0, sizeof(*ds));
	ds->labels = render_labels(d);
	if (!ds->labels) {
		s->oom = true;
		return;
	}
	s->n++;
	ds->capacity = d->capacity;
	ds->connected = d->vdev != NULL;
	if (d->past) {
		for (unsigned q = 0; q < nq; q++) {
			add_queue(ds, &d->past->q[q]);
			ds->kicks += d->past->kicks[q];
		}
		ds->irqs += d->past->irqs;
		add_hist(ds, &d->past->lat);
	}
	if (d->vdev) {
		for (unsigned q = 0; q < nq; q++) {
			const struct vp_blk_queue_stats *st =
			        vp_blk_queue_stats(d->vdev, q);

			add_queue(ds, st);
			ds->inflight += st->inflight;
			ds->kicks += vp_vdev_queue_kicks(d->vdev, q);
		}
		ds->irqs += vp_vdev_irqs(d->vdev);
		add_hist(ds, vp_blk_latency(d->vdev));
	}
	if (d->dom >= 0 && (unsigned)d->dom <= VPROXY_DOMID_MAX &&
	    !(s->dom_seen[d->dom / 8] & (1u << (d->dom % 8)))) {
		s->dom_seen[d->dom / 8] |= (uint8_t)(1u << (d->dom % 8));
		s->guests++;
	}
}

static void put_family(struct evbuffer *b, const char *name, const char *type,
                       const char *help)
{
	evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* name{labels extra} value */
static void put_sample(struct evbuffer *b, const char *name, const struct dev_sum *ds,
                       const char *extra, uint64_t v)
{
	evbuffer_add_printf(b, "%s{%s%s} %" PRIu64 "\n", name, ds->labels,
	                    extra ? extra : "", v);
}

/* The families with one value per device (by op: one per kind). */
static const struct {
	const char *name, *type, *help;
	bool by_op;
	size_t off; /* a uint64_t in struct dev_sum, or its array by op */
} families[] = {
        {"vproxy_device_requests_total", "counter", "Requests finished, by kind (op).",
         true, offsetof(struct dev_sum, reqs)},
        {"vproxy_device_bytes_total", "counter",
         "Bytes of requests that succeeded, by kind (op).", true,
         offsetof(struct dev_sum, bytes)},
        {"vproxy_device_errors_total", "counter",
         "Requests answered with a status other than OK.", false,
         offsetof(struct dev_sum, errors)},
        {"vproxy_device_inflight", "gauge",
         "Requests taken from the rings and not answered yet.", false,
         offsetof(struct dev_sum, inflight)},
        {"vproxy_device_kicks_total", "counter", "The guest's queue notifications.",
         false, offsetof(struct dev_sum, kicks)},
        {"vproxy_device_interrupts_total", "counter",
         "Used-buffer interrupts raised to the guest.", false,
         offsetof(struct dev_sum, irqs)},
        {"vproxy_device_connected", "gauge", "1 while the guest's frontend is connected.",
         false, offsetof(struct dev_sum, connected)},
        {"vproxy_device_size_bytes", "gauge", "The disk's size; 0 until it is open.",
         false, offsetof(struct dev_sum, capacity)},
};

static void put_devices(struct evbuffer *b, const struct scrape *s)
{
	char extra[48];

	for (size_t f = 0; f < sizeof(families) / sizeof(families[0]); f++) {
		put_family(b, families[f].name, families[f].type, families[f].help);
		for (size_t i = 0; i < s->n; i++) {
			const uint64_t *v = (const uint64_t *)((const char *)&s->v[i] +
			                                       families[f].off);

			if (!families[f].by_op) {
				put_sample(b, families[f].name, &s->v[i], NULL, *v);
				continue;
			}
			for (unsigned op = 0; op < VP_BLK_NOPS; op++) {
				snprintf(extra, sizeof(extra), ",op=\"%s\"",
				         vp_blk_op_name((enum vp_blk_op)op));
				put_sample(b, families[f].name, &s->v[i], extra, v[op]);
			}
		}
	}
	put_family(b, "vproxy_device_latency_seconds", "histogram",
	           "From taking a request off the ring to publishing its answer.");
	for (size_t i = 0; i < s->n; i++) {
		const struct dev_sum *ds = &s->v[i];
		uint64_t cum = 0;

		for (unsigned k = 0; k < NLE; k++) {
			cum += ds->le[k];
			snprintf(extra, sizeof(extra), ",le=\"%g\"", le_s[k]);
			put_sample(b, "vproxy_device_latency_seconds_bucket", ds, extra,
			           cum);
		}
		put_sample(b, "vproxy_device_latency_seconds_bucket", ds, ",le=\"+Inf\"",
		           ds->count);
		evbuffer_add_printf(b, "vproxy_device_latency_seconds_sum{%s} %.9f\n",
		                    ds->labels, (double)ds->sum_ns / 1e9);
		put_sample(b, "vproxy_device_latency_seconds_count", ds, NULL, ds->count);
	}
}

/* The process's CPU seconds and start time from /proc/self/stat; false if
 * it cannot be read. */
static bool proc_stat(double *cpu_s, double *start_s)
{
	char buf[1024], *p;
	unsigned long long utime, stime, start;
	long hz = sysconf(_SC_CLK_TCK);
	struct timespec now, up;
	FILE *f = fopen("/proc/self/stat", "re");
	size_t n;

	if (!f)
		return false;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* After the command's closing parenthesis: field 3 onwards. */
	p = strrchr(buf, ')');
	if (!p || hz <= 0 ||
	    sscanf(p + 2,
	           "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d "
	           "%*d %*d "
	           "%*d %llu",
	           &utime, &stime, &start) != 3)
		return false;
	*cpu_s = (double)(utime + stime) / (double)hz;
	/* start is in ticks since boot: the wall clock of boot plus it. */
	clock_gettime(CLOCK_REALTIME, &now);
	clock_gettime(CLOCK_BOOTTIME, &up);
	*start_s = ((double)now.tv_sec + (double)now.tv_nsec / 1e9) -
	           ((double)up.tv_sec + (double)up.tv_nsec / 1e9) +
	           (double)start / (double)hz;
	return true;
}

static void put_process(struct evbuffer *b, const struct scrape *s)
{
	unsigned connected = 0;
	double cpu_s, start_s;
	unsigned long pages_total, pages_rss;
	unsigned fds = 0;
	FILE *f;
	DIR *dir;

	if (proc_stat(&cpu_s, &start_s)) {
		evbuffer_add_printf(
		        b,
		        "# HELP process_cpu_seconds_total User and system CPU time.\n"
		        "# TYPE process_cpu_seconds_total counter\n"
		        "process_cpu_seconds_total %.2f\n"
		        "# HELP process_start_time_seconds Start time since the epoch.\n"
		        "# TYPE process_start_time_seconds gauge\n"
		        "process_start_time_seconds %.2f\n",
		        cpu_s, start_s);
	}
	f = fopen("/proc/self/statm", "re");
	if (f) {
		if (fscanf(f, "%lu %lu", &pages_total, &pages_rss) == 2)
			evbuffer_add_printf(
			        b,
			        "# HELP process_resident_memory_bytes Resident memory.\n"
			        "# TYPE process_resident_memory_bytes gauge\n"
			        "process_resident_memory_bytes %llu\n",
			        (unsigned long long)pages_rss *
			                (unsigned long long)sysconf(_SC_PAGESIZE));
		fclose(f);
	}
	dir = opendir("/proc/self/fd");
	if (dir) {
		struct dirent *e;

		while ((e = readdir(dir)))
			fds += e->d_name[0] != '.';
		closedir(dir);
		evbuffer_add_printf(b,
		                    "# HELP process_open_fds Open file descriptors.\n"
		                    "# TYPE process_open_fds gauge\n"
		                    "process_open_fds %u\n",
		                    fds ? fds - 1 : 0); /* less the directory's own */
	}
	for (size_t i = 0; i < s->n; i++)
		connected += s->v[i].connected;
	evbuffer_add_printf(
	        b,
	        "# HELP vproxy_guests Running guests that have declared devices.\n"
	        "# TYPE vproxy_guests gauge\n"
	        "vproxy_guests %u\n"
	        "# HELP vproxy_devices Declared devices.\n"
	        "# TYPE vproxy_devices gauge\n"
	        "vproxy_devices %u\n"
	        "# HELP vproxy_devices_connected Devices with a connected frontend.\n"
	        "# TYPE vproxy_devices_connected gauge\n"
	        "vproxy_devices_connected %u\n",
	        s->guests, (unsigned)s->n, connected);
}

static void on_request(struct evhttp_request *req, void *arg)
{
	struct vp_metrics *m = arg;
	const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
	enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
	struct scrape s = {0};
	struct evbuffer *b;

	if (!path || strcmp(path, "/metrics") != 0) {
		evhttp_send_error(req, HTTP_NOTFOUND, "only /metrics is here");
		return;
	}
	if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD) {
		evhttp_send_error(req, HTTP_BADMETHOD, "GET or HEAD");
		return;
	}
	b = evbuffer_new();
	if (!b) {
		evhttp_send_error(req, HTTP_INTERNAL, "out of memory");
		return;
	}
	if (m->bus)
		vp_xsbus_foreach_device(m->bus, device_cb, &s);
	if (s.oom) {
		evhttp_send_error(req, HTTP_INTERNAL, "out of memory");
	} else {
		put_devices(b, &s);
		put_process(b, &s);
		evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
		                  "text/plain; version=0.0.4; charset=utf-8");
		evhttp_send_reply(req, HTTP_OK, "OK", b);
	}
	for (size_t i = 0; i < s.n; i++)
		free(s.v[i].labels);
	free(s.v);
	evbuffer_free(b);
}

struct vp_metrics *vp_metrics_open(struct vp_loop *loop, const char *host, unsigned port,
                                   char *err, size_t errlen)
{
	struct vp_metrics *m = calloc(1, sizeof(*m));

	if (!m || !(m->http = evhttp_new(vp_loop_base(loop)))) {
		snprintf(err, errlen, "metrics: out of memory");
		goto fail;
	}
	/* Scrapes are small requests: no bodies, short headers. */
	evhttp_set_max_headers_size(m->http, 8192);
	evhttp_set_max_body_size(m->http, 0);
	evhttp_set_timeout(m->http, 10);
	evhttp_set_allowed_methods(m->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
	evhttp_set_gencb(m->http, on_request, m);
	errno = 0;
	if (evhttp_bind_socket(m->http, host, (ev_uint16_t)port) < 0) {
		snprintf(err, errlen, "metrics-listen %s:%u: cannot listen%s%s", host,
		         port, errno ? ": " : "", errno ? strerror(errno) : "");
		goto fail;
	}
	vp_info("metrics on http://%s:%u/metrics", host, port);
	return m;
fail:
	vp_metrics_close(m);
	return NULL;
}

void vp_metrics_set_bus(struct vp_metrics *m, struct vp_xsbus *bus)
{
	m->bus = bus;
}

void vp_metrics_close(struct vp_metrics *m)
{
	if (!m)
		return;
	if (m->http)
		evhttp_free(m->http);
	free(m);
}
