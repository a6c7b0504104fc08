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
	struct vp_blk_totals *t; /* scratch: one device's sums */
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

/* {guest="...",domid="...",device="...",label="...",plugin="..." and extra
 * (",op=\"read\"" or ",le=\"...\"") } */
static void put_labels(struct evbuffer *b, const struct vp_xsbus_device *d,
                       const char *extra)
{
	/* The domain's name when known, else the guest as configured. */
	evbuffer_add(b, "{guest=\"", 8);
	put_escaped(b, d->dom_name ? d->dom_name : d->decl->guest);
	if (d->dom >= 0)
		evbuffer_add_printf(b, "\",domid=\"%d", d->dom);
	else
		evbuffer_add(b, "\",domid=\"", 9);
	evbuffer_add_printf(b, "\",device=\"%u\",label=\"", d->devid);
	put_escaped(b, d->decl->label);
	evbuffer_add(b, "\",plugin=\"", 10);
	put_escaped(b, d->decl->plugin ? d->decl->plugin->name : "");
	evbuffer_add_printf(b, "\"%s}", extra ? extra : "");
}

struct scrape {
	struct vp_metrics *m;
	struct evbuffer *b;
	unsigned pass; /* which metric this walk writes */
	unsigned devices, connected, guests;
	uint8_t dom_seen[(VPROXY_DOMID_MAX + 8) / 8]; /* to count guests once */
};

enum {
	M_REQUESTS,
	M_BYTES,
	M_ERRORS,
	M_INFLIGHT,
	M_KICKS,
	M_IRQS,
	M_CONNECTED,
	M_SIZE,
	M_LATENCY,
	M_COUNT
};

static const struct {
	const char *name, *type, *help;
} metric[M_COUNT] = {
        [M_REQUESTS] = {"vproxy_device_requests_total", "counter",
                        "Requests finished, by kind (op)."},
        [M_BYTES] = {"vproxy_device_bytes_total", "counter",
                     "Bytes of requests that succeeded, by kind (op)."},
        [M_ERRORS] = {"vproxy_device_errors_total", "counter",
                      "Requests answered with a status other than OK."},
        [M_INFLIGHT] = {"vproxy_device_inflight", "gauge",
                        "Requests taken from the rings and not answered yet."},
        [M_KICKS] = {"vproxy_device_kicks_total", "counter",
                     "The guest's queue notifications."},
        [M_IRQS] = {"vproxy_device_interrupts_total", "counter",
                    "Used-buffer interrupts raised to the guest."},
        [M_CONNECTED] = {"vproxy_device_connected", "gauge",
                         "1 while the guest's frontend is connected."},
        [M_SIZE] = {"vproxy_device_size_bytes", "gauge",
                    "The disk's size; 0 until it is open."},
        [M_LATENCY] = {"vproxy_device_latency_seconds", "histogram",
                       "From taking a request off the ring to publishing its answer."},
};

static void put_latency(struct evbuffer *b, const struct vp_xsbus_device *d,
                        const struct hist *h)
{
	uint64_t cum[NLE] = {0};
	char extra[48];

	for (unsigned i = 0; i < HIST_BUCKETS; i++) {
		double top_s;

		if (!h->b[i])
			continue;
		top_s = (double)hist_bucket_max(i) / 1e9;
		for (unsigned k = 0; k < NLE; k++) {
			if (top_s <= le_s[k]) {
				cum[k] += h->b[i];
				break;
			}
		}
	}
	for (unsigned k = 0; k < NLE; k++) {
		if (k)
			cum[k] += cum[k - 1];
		snprintf(extra, sizeof(extra), ",le=\"%g\"", le_s[k]);
		evbuffer_add(b, "vproxy_device_latency_seconds_bucket", 36);
		put_labels(b, d, extra);
		evbuffer_add_printf(b, " %" PRIu64 "\n", cum[k]);
	}
	evbuffer_add(b, "vproxy_device_latency_seconds_bucket", 36);
	put_labels(b, d, ",le=\"+Inf\"");
	evbuffer_add_printf(b, " %" PRIu64 "\n", h->count);
	evbuffer_add(b, "vproxy_device_latency_seconds_sum", 33);
	put_labels(b, d, NULL);
	evbuffer_add_printf(b, " %.9f\n", (double)h->sum_ns / 1e9);
	evbuffer_add(b, "vproxy_device_latency_seconds_count", 35);
	put_labels(b, d, NULL);
	evbuffer_add_printf(b, " %" PRIu64 "\n", h->count);
}

static void put_value(struct evbuffer *b, unsigned which, const struct vp_xsbus_device *d,
                      const char *extra, uint64_t v)
{
	evbuffer_add(b, metric[which].name, strlen(metric[which].name));
	put_labels(b, d, extra);
	evbuffer_add_printf(b, " %" PRIu64 "\n", v);
}

static void device_cb(void *arg, const struct vp_xsbus_device *d)
{
	struct scrape *s = arg;
	const struct vp_blk_totals *t = s->m->t;
	unsigned nq =
	        d->decl->queues < VP_BLK_MAX_QUEUES ? d->decl->queues : VP_BLK_MAX_QUEUES;
	uint64_t sum = 0;
	char extra[32];

	if (s->pass == M_REQUESTS) {
		/* The first pass counts for the process metrics. */
		s->devices++;
		s->connected += d->vdev != NULL;
		if (d->dom >= 0 && (unsigned)d->dom <= VPROXY_DOMID_MAX &&
		    !(s->dom_seen[d->dom / 8] & (1u << (d->dom % 8)))) {
			s->dom_seen[d->dom / 8] |= (uint8_t)(1u << (d->dom % 8));
			s->guests++;
		}
	}
	if (s->pass == M_CONNECTED) {
		put_value(s->b, M_CONNECTED, d, NULL, d->vdev != NULL);
		return;
	}
	if (s->pass == M_SIZE) {
		put_value(s->b, M_SIZE, d, NULL, d->capacity);
		return;
	}
	if (s->pass == M_INFLIGHT) {
		for (unsigned q = 0; d->vdev && q < nq; q++)
			sum += vp_blk_queue_stats(d->vdev, q)->inflight;
		put_value(s->b, M_INFLIGHT, d, NULL, sum);
		return;
	}
	vp_blk_totals_of(s->m->t, d->past, d->vdev);
	switch (s->pass) {
	case M_REQUESTS:
	case M_BYTES:
		for (unsigned op = 0; op < VP_BLK_NOPS; op++) {
			sum = 0;
			for (unsigned q = 0; q < nq; q++)
				sum += s->pass == M_REQUESTS ? t->q[q].reqs[op]
				                             : t->q[q].bytes[op];
			snprintf(extra, sizeof(extra), ",op=\"%s\"",
			         vp_blk_op_name((enum vp_blk_op)op));
			put_value(s->b, s->pass, d, extra, sum);
		}
		break;
	case M_ERRORS:
		for (unsigned q = 0; q < nq; q++)
			sum += t->q[q].errors;
		put_value(s->b, M_ERRORS, d, NULL, sum);
		break;
	case M_KICKS:
		for (unsigned q = 0; q < nq; q++)
			sum += t->kicks[q];
		put_value(s->b, M_KICKS, d, NULL, sum);
		break;
	case M_IRQS: put_value(s->b, M_IRQS, d, NULL, t->irqs); break;
	case M_LATENCY: put_latency(s->b, d, &t->lat); break;
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
	        s->guests, s->devices, s->connected);
}

static void on_request(struct evhttp_request *req, void *arg)
{
	struct vp_metrics *m = arg;
	const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
	enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
	struct scrape s = {.m = m};
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
	s.b = b;
	for (unsigned w = 0; m->bus && w < M_COUNT; w++) {
		evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s %s\n", metric[w].name,
		                    metric[w].help, metric[w].name, metric[w].type);
		s.pass = w;
		vp_xsbus_foreach_device(m->bus, device_cb, &s);
	}
	put_process(b, &s);
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
	                  "text/plain; version=0.0.4; charset=utf-8");
	evhttp_send_reply(req, HTTP_OK, "OK", b);
	evbuffer_free(b);
}

struct vp_metrics *vp_metrics_open(struct vp_loop *loop, const char *host, unsigned port,
                                   char *err, size_t errlen)
{
	struct vp_metrics *m = calloc(1, sizeof(*m));

	if (!m || !(m->t = malloc(sizeof(*m->t))) ||
	    !(m->http = evhttp_new(vp_loop_base(loop)))) {
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
	free(m->t);
	free(m);
}
