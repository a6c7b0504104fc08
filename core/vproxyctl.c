/* SPDX-License-Identifier: MIT */
/*
 * vproxyctl: talk to a running vproxyd over its control socket
 * (docs/CONTROL.md, vproxyctl(8)).  One JSON request per line out, one
 * reply per line back; tables for people, --json for scripts.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "size.h"

#define DEFAULT_SOCKET "/run/vproxy/control.sock"
#define REPLY_TIMEOUT_MS 5000
#define MAX_REPLY (64u << 20)

static void usage(FILE *f)
{
	fprintf(f,
	        "usage: vproxyctl [-s SOCKET] [--json] COMMAND [ARGS]\n"
	        "commands:\n"
	        "  list                      every declared device and its state\n"
	        "  stats [DEVICE]            counters and latency of connected devices\n"
	        "        [--watch [SECONDS]] refresh every SECONDS (default 1), as "
	        "rates\n"
	        "        [--count N]         stop after N refreshes\n"
	        "  log-level [LEVEL]         show or set the log level (error, warn, "
	        "info,\n"
	        "                            debug)\n"
	        "  attach GUEST KEY=VALUE... a device for a running (or future) guest:\n"
	        "        [--label L]         the keys of a [device] section (id, "
	        "plugin,\n"
	        "        [--wait SECONDS]    ...); waits for its storage to open (10)\n"
	        "  detach DEVICE|GUEST ID    ask the guest to let go, wait, remove it\n"
	        "        [--force]           cut it if the guest has not let go in time\n"
	        "        [--timeout SECONDS] how long to wait (default 10)\n"
	        "  reload                    read vproxyd's file again, apply its "
	        "device\n"
	        "                            changes (a file with an error changes "
	        "nothing)\n"
	        "DEVICE is a device's label, GUEST/ID or DOMID/ID.\n"
	        "options:\n"
	        "  -s, --socket PATH   the control socket (default $VPROXY_CONTROL, "
	        "else\n"
	        "                      " DEFAULT_SOCKET ")\n"
	        "  -j, --json          print vproxyd's replies as they are (one JSON\n"
	        "                      object per line)\n"
	        "  -h, --help          this text\n");
}

static int connect_to(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		fprintf(stderr, "vproxyctl: %s: path too long for a unix socket\n", path);
		return -1;
	}
	memcpy(sa.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		fprintf(stderr, "vproxyctl: cannot connect to %s: %s%s\n", path,
		        strerror(errno),
		        errno == ENOENT || errno == ECONNREFUSED
		                ? " (is vproxyd running?)"
		                : "");
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

/* Send req, read one reply line.  NULL (after a message) on failure. */
static struct json_object *call(int fd, struct json_object *req)
{
	size_t len, cap = 4096, have = 0;
	const char *text =
	        json_object_to_json_string_length(req, JSON_C_TO_STRING_PLAIN, &len);
	char *buf;
	struct json_object *reply;

	while (len) {
		ssize_t n = send(fd, text, len, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			fprintf(stderr, "vproxyctl: send: %s\n", strerror(errno));
			return NULL;
		}
		text += n;
		len -= (size_t)n;
	}
	if (send(fd, "\n", 1, MSG_NOSIGNAL) != 1) {
		fprintf(stderr, "vproxyctl: send: %s\n", strerror(errno));
		return NULL;
	}
	buf = malloc(cap);
	if (!buf)
		return NULL;
	for (;;) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		char *nl;
		ssize_t n;
		int r = poll(&p, 1, REPLY_TIMEOUT_MS);

		if (r < 0 && errno == EINTR)
			continue;
		if (r == 0) {
			fprintf(stderr, "vproxyctl: no reply within %d s\n",
			        REPLY_TIMEOUT_MS / 1000);
			free(buf);
			return NULL;
		}
		if (have + 1 >= cap) {
			char *grown;

			if (cap >= MAX_REPLY) {
				fprintf(stderr, "vproxyctl: reply longer than %u bytes\n",
				        MAX_REPLY);
				free(buf);
				return NULL;
			}
			grown = realloc(buf, cap * 2);
			if (!grown) {
				free(buf);
				return NULL;
			}
			buf = grown;
			cap *= 2;
		}
		n = recv(fd, buf + have, cap - have - 1, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			fprintf(stderr, "vproxyctl: vproxyd closed the connection%s%s\n",
			        n < 0 ? ": " : "", n < 0 ? strerror(errno) : "");
			free(buf);
			return NULL;
		}
		have += (size_t)n;
		buf[have] = '\0';
		nl = memchr(buf, '\n', have);
		if (nl) {
			*nl = '\0';
			break;
		}
	}
	reply = json_tokener_parse(buf);
	if (!reply || !json_object_is_type(reply, json_type_object))
		fprintf(stderr,
		        "vproxyctl: vproxyd's reply is not a JSON object: %.200s\n", buf);
	free(buf);
	return reply;
}

static const char *str(struct json_object *o, const char *key)
{
	struct json_object *v;

	if (!json_object_object_get_ex(o, key, &v) ||
	    json_object_is_type(v, json_type_null))
		return NULL;
	return json_object_get_string(v);
}

static uint64_t u64(struct json_object *o, const char *key)
{
	struct json_object *v;

	return json_object_object_get_ex(o, key, &v) ? json_object_get_uint64(v) : 0;
}

static double dbl(struct json_object *o, const char *key)
{
	struct json_object *v;

	return json_object_object_get_ex(o, key, &v) ? json_object_get_double(v) : 0;
}

static struct json_object *member(struct json_object *o, const char *key)
{
	struct json_object *v;

	return json_object_object_get_ex(o, key, &v) ? v : NULL;
}

/* false and the error printed when the reply says ok: false. */
static bool reply_ok(struct json_object *reply)
{
	struct json_object *ok = member(reply, "ok");

	if (ok && json_object_get_boolean(ok))
		return true;
	fprintf(stderr, "vproxyctl: %s\n",
	        str(reply, "error") ? str(reply, "error") : "failed");
	return false;
}

static void human_size(uint64_t b, char *out, size_t len)
{
	static const char *const unit[] = {"B", "K", "M", "G", "T", "P"};
	double v = (double)b;
	unsigned u = 0;

	while (v >= 1024 && u + 1 < sizeof(unit) / sizeof(unit[0])) {
		v /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(out, len, "%" PRIu64 "B", b);
	else
		snprintf(out, len, v < 10 ? "%.1f%s" : "%.0f%s", v, unit[u]);
}

static void print_list(struct json_object *reply)
{
	struct json_object *devs = member(reply, "devices");
	size_t n = devs ? json_object_array_length(devs) : 0;

	printf("%-16s %-12s %5s %3s %-8s %7s %-12s %-5s %2s %-3s %s\n", "LABEL", "GUEST",
	       "DOMID", "ID", "PLUGIN", "SIZE", "STATE", "MODE", "Q", "RO", "ERROR");
	for (size_t i = 0; i < n; i++) {
		struct json_object *d = json_object_array_get_idx(devs, i);
		struct json_object *dom = member(d, "domid");
		char size[16], domid[12];

		human_size(u64(d, "size"), size, sizeof(size));
		if (dom && !json_object_is_type(dom, json_type_null))
			snprintf(domid, sizeof(domid), "%d", json_object_get_int(dom));
		else
			snprintf(domid, sizeof(domid), "-");
		printf("%-16s %-12s %5s %3" PRIu64 " %-8s %7s %-12s %-5s %2" PRIu64
		       " %-3s %s\n",
		       str(d, "label"), str(d, "guest"), domid, u64(d, "id"),
		       str(d, "plugin") ? str(d, "plugin") : "-",
		       u64(d, "size") ? size : "-", str(d, "state"),
		       str(d, "addr_mode") ? str(d, "addr_mode") : "-", u64(d, "queues"),
		       json_object_get_boolean(member(d, "read_only")) ? "yes" : "no",
		       str(d, "error") ? str(d, "error") : "");
	}
}

/* One device's totals over its queues. */
struct totals {
	uint64_t rd, wr, fl, dz, other, rbytes, wbytes, errors, inflight, kicks;
	uint64_t lat_count, lat_sum_ns, irqs;
	double p50, p99;
};

static void sum_device(struct json_object *d, struct totals *t)
{
	struct json_object *qs = member(d, "queues");
	struct json_object *lat = member(d, "latency");

	memset(t, 0, sizeof(*t));
	for (size_t q = 0; qs && q < json_object_array_length(qs); q++) {
		struct json_object *qo = json_object_array_get_idx(qs, q);

		t->rd += u64(member(qo, "read"), "requests");
		t->rbytes += u64(member(qo, "read"), "bytes");
		t->wr += u64(member(qo, "write"), "requests");
		t->wbytes += u64(member(qo, "write"), "bytes");
		t->fl += u64(member(qo, "flush"), "requests");
		t->dz += u64(member(qo, "discard"), "requests") +
		         u64(member(qo, "write_zeroes"), "requests");
		t->other += u64(member(qo, "other"), "requests");
		t->errors += u64(qo, "errors");
		t->inflight += u64(qo, "inflight");
		t->kicks += u64(qo, "kicks");
	}
	t->irqs = u64(d, "interrupts");
	if (lat) {
		t->lat_count = u64(lat, "count");
		t->lat_sum_ns = u64(lat, "sum_ns");
		t->p50 = dbl(lat, "p50_us");
		t->p99 = dbl(lat, "p99_us");
	}
}

static void device_name(struct json_object *d, char *out, size_t len)
{
	snprintf(out, len, "%s", str(d, "label"));
}

static void print_stats(struct json_object *reply)
{
	struct json_object *devs = member(reply, "devices");
	size_t n = devs ? json_object_array_length(devs) : 0;

	printf("%-16s %-12s %10s %9s %10s %9s %8s %8s %6s %5s %9s %9s %9s %9s\n",
	       "DEVICE", "STATE", "READS", "READ", "WRITES", "WRITTEN", "FLUSHES",
	       "DISCARDS", "ERRORS", "INFL", "KICKS", "IRQS", "P50-US", "P99-US");
	for (size_t i = 0; i < n; i++) {
		struct json_object *d = json_object_array_get_idx(devs, i);
		char name[64], rb[16], wb[16];
		struct totals t;

		sum_device(d, &t);
		device_name(d, name, sizeof(name));
		human_size(t.rbytes, rb, sizeof(rb));
		human_size(t.wbytes, wb, sizeof(wb));
		printf("%-16s %-12s %10" PRIu64 " %9s %10" PRIu64 " %9s %8" PRIu64
		       " %8" PRIu64 " %6" PRIu64 " %5" PRIu64 " %9" PRIu64 " %9" PRIu64
		       " %9.1f %9.1f\n",
		       name, str(d, "state"), t.rd, rb, t.wr, wb, t.fl, t.dz, t.errors,
		       t.inflight, t.kicks, t.irqs, t.p50, t.p99);
	}
}

/* --watch: rates between two samples, like iostat. */
struct sample {
	char name[64];
	struct totals t;
};

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static void print_rates(struct json_object *reply, struct sample *prev, size_t *nprev,
                        size_t cap, double secs)
{
	struct json_object *devs = member(reply, "devices");
	size_t n = devs ? json_object_array_length(devs) : 0;
	struct sample cur[256];
	size_t ncur = 0;
	time_t now = time(NULL);
	char when[32];

	strftime(when, sizeof(when), "%H:%M:%S", localtime(&now));
	printf("%s %-16s %9s %9s %9s %9s %6s %7s %9s\n", when, "DEVICE", "READS/S",
	       "WRITES/S", "READ/S", "WRITTEN/S", "INFL", "ERR/S", "AWAIT-US");
	for (size_t i = 0; i < n && ncur < sizeof(cur) / sizeof(cur[0]); i++) {
		struct json_object *d = json_object_array_get_idx(devs, i);
		struct sample *s = &cur[ncur++];
		const struct totals *p = NULL;
		char rb[16], wb[16];
		double dr, dw, drb, dwb, de, await = 0;

		device_name(d, s->name, sizeof(s->name));
		sum_device(d, &s->t);
		for (size_t j = 0; j < *nprev; j++)
			if (strcmp(prev[j].name, s->name) == 0)
				p = &prev[j].t;
		if (!p || s->t.rd < p->rd || s->t.wr < p->wr) {
			/* New, or reconnected (a new device starts at 0). */
			printf("%8s %-16s %9s %9s %9s %9s %6" PRIu64 " %7s %9s\n", "",
			       s->name, "-", "-", "-", "-", s->t.inflight, "-", "-");
			continue;
		}
		dr = (double)(s->t.rd - p->rd) / secs;
		dw = (double)(s->t.wr - p->wr) / secs;
		drb = (double)(s->t.rbytes - p->rbytes) / secs;
		dwb = (double)(s->t.wbytes - p->wbytes) / secs;
		de = (double)(s->t.errors - p->errors) / secs;
		if (s->t.lat_count > p->lat_count)
			await = (double)(s->t.lat_sum_ns - p->lat_sum_ns) /
			        (double)(s->t.lat_count - p->lat_count) / 1000.0;
		human_size((uint64_t)drb, rb, sizeof(rb));
		human_size((uint64_t)dwb, wb, sizeof(wb));
		printf("%8s %-16s %9.0f %9.0f %9s %9s %6" PRIu64 " %7.1f %9.1f\n", "",
		       s->name, dr, dw, rb, wb, s->t.inflight, de, await);
	}
	fflush(stdout);
	*nprev = ncur < cap ? ncur : cap;
	memcpy(prev, cur, *nprev * sizeof(*prev));
}

/* The device sel names in a list reply (label, GUEST/ID or DOMID/ID). */
static struct json_object *find_device(struct json_object *list, const char *sel)
{
	struct json_object *devs = member(list, "devices");

	for (size_t i = 0; devs && i < json_object_array_length(devs); i++) {
		struct json_object *d = json_object_array_get_idx(devs, i);
		struct json_object *dom = member(d, "domid");
		char id[64];

		if (strcmp(str(d, "label"), sel) == 0)
			return d;
		snprintf(id, sizeof(id), "%s/%" PRIu64, str(d, "guest"), u64(d, "id"));
		if (strcmp(id, sel) == 0)
			return d;
		if (dom && !json_object_is_type(dom, json_type_null)) {
			snprintf(id, sizeof(id), "%d/%" PRIu64, json_object_get_int(dom),
			         u64(d, "id"));
			if (strcmp(id, sel) == 0)
				return d;
		}
	}
	return NULL;
}

static double mono_s(void);

/* SECONDS of an option: min..3600.  0, or -1 after saying what is wrong. */
static int parse_seconds(const char *opt, const char *text, double min, double *out)
{
	char *end;
	double v = strtod(text, &end);

	if (end == text || *end || !(v >= min && v <= 3600)) {
		fprintf(stderr, "vproxyctl: %s: '%s' is not seconds (%g..3600)\n", opt,
		        text, min);
		return -1;
	}
	*out = v;
	return 0;
}

static void sleep_s(double s)
{
	struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* Ask for the list until done(device or NULL) says stop or timeout_s
 * passes; the last list (or NULL on a failed call).  *timed_out says
 * which. */
static struct json_object *poll_list(int fd, const char *sel, double timeout_s,
                                     bool (*done)(struct json_object *d), bool *timed_out)
{
	struct json_object *req = json_object_new_object();
	double end = mono_s() + timeout_s;
	struct json_object *list = NULL;

	json_object_object_add(req, "cmd", json_object_new_string("list"));
	*timed_out = false;
	for (;;) {
		json_object_put(list);
		list = call(fd, req);
		if (!list || !reply_ok(list)) {
			json_object_put(list);
			list = NULL;
			break;
		}
		if (done(find_device(list, sel)))
			break;
		if (mono_s() >= end) {
			*timed_out = true;
			break;
		}
		sleep_s(0.1);
	}
	json_object_put(req);
	return list;
}

static bool opened(struct json_object *d)
{
	return !d || strcmp(str(d, "state"), "Initialising") != 0;
}

static bool removed(struct json_object *d)
{
	return !d;
}

/* call(), the reply printed with --json, and NULL (the error said) unless
 * vproxyd answered ok. */
static struct json_object *call_ok(int fd, struct json_object *req, bool json)
{
	struct json_object *reply = call(fd, req);

	if (!reply)
		return NULL;
	if (json)
		puts(json_object_to_json_string_ext(reply, JSON_C_TO_STRING_PLAIN));
	if (!reply_ok(reply)) {
		json_object_put(reply);
		return NULL;
	}
	return reply;
}

static int run_attach(int fd, struct json_object *req, double wait_s, bool json)
{
	struct json_object *reply = call_ok(fd, req, json), *list, *d;
	const char *label;
	bool timed_out;
	int status = 1;

	if (!reply)
		return 1;
	label = str(member(reply, "device"), "label");
	if (!label) {
		json_object_put(reply);
		return 0;
	}
	/* Storage opens off the loop: wait for its answer. */
	list = poll_list(fd, label, wait_s, opened, &timed_out);
	d = list ? find_device(list, label) : NULL;
	if (!d) {
		fprintf(stderr, "vproxyctl: %s is gone\n", label);
	} else if (str(d, "error")) {
		fprintf(stderr, "vproxyctl: %s: %s\n", label, str(d, "error"));
	} else if (timed_out) {
		fprintf(stderr, "vproxyctl: %s: its storage did not open within %.0f s\n",
		        label, wait_s);
	} else {
		status = 0;
		if (!json) {
			if (strcmp(str(d, "state"), "no-guest") == 0)
				printf("%s: attached; guest %s is not running, it gets "
				       "the "
				       "device when it starts\n",
				       label, str(d, "guest"));
			else
				printf("%s: attached to guest %s as device %" PRIu64
				       " (%s)\n",
				       label, str(d, "guest"), u64(d, "id"),
				       str(d, "state"));
			printf("%s: runtime only: add it to vproxyd's file to keep it "
			       "over a restart\n",
			       label);
		}
	}
	json_object_put(list);
	if (status && d) {
		/* Leave nothing behind that does not work. */
		struct json_object *undo = json_object_new_object(), *r;

		json_object_object_add(undo, "cmd", json_object_new_string("detach"));
		json_object_object_add(undo, "device", json_object_new_string(label));
		json_object_object_add(undo, "force", json_object_new_boolean(true));
		r = call(fd, undo);
		if (r && json_object_get_boolean(member(r, "ok")))
			fprintf(stderr, "vproxyctl: %s: not attached\n", label);
		json_object_put(r);
		json_object_put(undo);
	}
	json_object_put(reply);
	return status;
}

static int run_detach(int fd, struct json_object *req, const char *sel, bool force,
                      double timeout_s, bool json)
{
	struct json_object *reply = call_ok(fd, req, json), *list;
	bool timed_out = false, gone;

	if (!reply)
		return 1;
	gone = json_object_get_boolean(member(reply, "gone"));
	json_object_put(reply);
	if (!gone) {
		list = poll_list(fd, sel, timeout_s, removed, &timed_out);
		if (!list)
			return 1;
		json_object_put(list);
	}
	if (timed_out && force) {
		json_object_object_add(req, "force", json_object_new_boolean(true));
		reply = call(fd, req);
		if (!reply || !reply_ok(reply)) {
			json_object_put(reply);
			return 1;
		}
		json_object_put(reply);
		list = poll_list(fd, sel, timeout_s, removed, &timed_out);
		if (!list)
			return 1;
		json_object_put(list);
		if (!timed_out && !json)
			printf("%s: detached (forced: the guest did not let go within "
			       "%.0f s)\n",
			       sel, timeout_s);
	} else if (timed_out) {
		fprintf(stderr,
		        "vproxyctl: %s: the guest did not let go within %.0f s; the "
		        "device "
		        "stays Closing until it does (detach --force cuts it)\n",
		        sel, timeout_s);
		return 1;
	} else if (!json) {
		printf("%s: detached\n", sel);
	}
	if (timed_out) {
		fprintf(stderr, "vproxyctl: %s: still there after a forced detach\n",
		        sel);
		return 1;
	}
	return 0;
}

static double mono_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	        {"socket", required_argument, NULL, 's'},
	        {"json", no_argument, NULL, 'j'},
	        {"help", no_argument, NULL, 'h'},
	        {NULL, 0, NULL, 0},
	};
	const char *sock = getenv("VPROXY_CONTROL");
	bool json = false, watch = false;
	double interval = 1, wait_s = 10;
	uint64_t count = 0;
	bool force = false;
	char detach_sel[160] = "";
	struct json_object *req, *reply;
	const char *cmd;
	int c, fd, status = 1;

	if (!sock || !*sock)
		sock = DEFAULT_SOCKET;
	/* "+": options end at the command, whose own come after it. */
	while ((c = getopt_long(argc, argv, "+s:jh", opts, NULL)) != -1) {
		switch (c) {
		case 's': sock = optarg; break;
		case 'j': json = true; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return 2;
	}
	cmd = argv[optind++];
	req = json_object_new_object();
	json_object_object_add(req, "cmd", json_object_new_string(cmd));
	if (strcmp(cmd, "list") == 0 || strcmp(cmd, "reload") == 0) {
		if (optind < argc) {
			fprintf(stderr, "vproxyctl: %s takes no arguments\n", cmd);
			goto usage_err;
		}
	} else if (strcmp(cmd, "stats") == 0) {
		for (; optind < argc; optind++) {
			const char *a = argv[optind];

			if (strcmp(a, "--watch") == 0 || strcmp(a, "-w") == 0) {
				watch = true;
				if (optind + 1 < argc && argv[optind + 1][0] != '-' &&
				    strchr("0123456789.", argv[optind + 1][0]) &&
				    parse_seconds("--watch", argv[++optind], 0.1,
				                  &interval) < 0)
					goto usage_err;
			} else if (strcmp(a, "--count") == 0 || strcmp(a, "-c") == 0) {
				if (optind + 1 >= argc ||
				    vp_parse_count(argv[++optind], UINT32_MAX, &count) <
				            0 ||
				    count == 0) {
					fprintf(stderr, "vproxyctl: --count needs a "
					                "number from 1\n");
					goto usage_err;
				}
			} else if (a[0] == '-') {
				fprintf(stderr, "vproxyctl: stats: unknown option %s\n",
				        a);
				goto usage_err;
			} else if (!member(req, "device")) {
				json_object_object_add(req, "device",
				                       json_object_new_string(a));
			} else {
				fprintf(stderr, "vproxyctl: stats takes one DEVICE\n");
				goto usage_err;
			}
		}
		if (count && !watch) {
			fprintf(stderr, "vproxyctl: --count goes with --watch\n");
			goto usage_err;
		}
	} else if (strcmp(cmd, "log-level") == 0) {
		if (optind < argc)
			json_object_object_add(req, "level",
			                       json_object_new_string(argv[optind++]));
		if (optind < argc) {
			fprintf(stderr, "vproxyctl: log-level takes one LEVEL\n");
			goto usage_err;
		}
	} else if (strcmp(cmd, "attach") == 0) {
		struct json_object *keys = json_object_new_object();

		json_object_object_add(req, "keys", keys);
		if (optind >= argc) {
			fprintf(stderr,
			        "vproxyctl: attach needs GUEST and KEY=VALUE...\n");
			goto usage_err;
		}
		json_object_object_add(req, "guest",
		                       json_object_new_string(argv[optind++]));
		for (; optind < argc; optind++) {
			const char *a = argv[optind], *eq = strchr(a, '=');

			if (strcmp(a, "--label") == 0 && optind + 1 < argc) {
				json_object_object_add(
				        req, "label",
				        json_object_new_string(argv[++optind]));
			} else if (strcmp(a, "--wait") == 0 && optind + 1 < argc) {
				if (parse_seconds("--wait", argv[++optind], 0, &wait_s) <
				    0)
					goto usage_err;
			} else if (eq && eq != a) {
				char key[128];

				snprintf(key, sizeof(key), "%.*s", (int)(eq - a), a);
				json_object_object_add(keys, key,
				                       json_object_new_string(eq + 1));
			} else {
				fprintf(stderr,
				        "vproxyctl: attach: '%s' is not KEY=VALUE\n", a);
				goto usage_err;
			}
		}
	} else if (strcmp(cmd, "detach") == 0) {
		const char *args[2];
		unsigned nargs = 0;

		for (; optind < argc; optind++) {
			const char *a = argv[optind];

			if (strcmp(a, "--force") == 0) {
				force = true;
			} else if (strcmp(a, "--timeout") == 0 && optind + 1 < argc) {
				if (parse_seconds("--timeout", argv[++optind], 0.1,
				                  &wait_s) < 0)
					goto usage_err;
			} else if (a[0] != '-' && nargs < 2) {
				args[nargs++] = a;
			} else {
				fprintf(stderr,
				        "vproxyctl: detach: '%s' is not expected\n", a);
				goto usage_err;
			}
		}
		if (nargs == 0) {
			fprintf(stderr,
			        "vproxyctl: detach needs DEVICE, or GUEST and ID\n");
			goto usage_err;
		}
		if (nargs == 2)
			snprintf(detach_sel, sizeof(detach_sel), "%s/%s", args[0],
			         args[1]);
		else
			snprintf(detach_sel, sizeof(detach_sel), "%s", args[0]);
		json_object_object_add(req, "device", json_object_new_string(detach_sel));
	} else {
		/* Unknown here may be known to a newer vproxyd: ask it. */
		if (optind < argc) {
			fprintf(stderr, "vproxyctl: unknown command '%s'\n", cmd);
			goto usage_err;
		}
	}

	fd = connect_to(sock);
	if (fd < 0)
		goto out;
	if (strcmp(cmd, "attach") == 0) {
		status = run_attach(fd, req, wait_s, json);
	} else if (strcmp(cmd, "detach") == 0) {
		status = run_detach(fd, req, detach_sel, force, wait_s, json);
	} else if (!watch) {
		reply = call(fd, req);
		if (reply) {
			if (json) {
				puts(json_object_to_json_string_ext(
				        reply, JSON_C_TO_STRING_PLAIN));
				status = reply_ok(reply) ? 0 : 1;
			} else if (reply_ok(reply)) {
				status = 0;
				if (strcmp(cmd, "list") == 0)
					print_list(reply);
				else if (strcmp(cmd, "stats") == 0)
					print_stats(reply);
				else if (strcmp(cmd, "log-level") == 0)
					printf("%s\n", str(reply, "level"));
				else if (strcmp(cmd, "reload") == 0)
					printf("%s\n", str(reply, "summary"));
				else
					puts(json_object_to_json_string_ext(
					        reply, JSON_C_TO_STRING_PRETTY));
			}
			json_object_put(reply);
		}
	} else {
		struct sample prev[256];
		size_t nprev = 0;
		double last = 0;

		signal(SIGINT, on_signal);
		signal(SIGTERM, on_signal);
		status = 0;
		for (uint64_t i = 0; !stop && (!count || i <= count); i++) {
			double now;

			reply = call(fd, req);
			now = mono_s();
			if (!reply || !reply_ok(reply)) {
				json_object_put(reply);
				status = 1;
				break;
			}
			if (json)
				puts(json_object_to_json_string_ext(
				        reply, JSON_C_TO_STRING_PLAIN));
			else if (i == 0)
				print_rates(reply, prev, &nprev, 256, 1);
			else
				print_rates(reply, prev, &nprev, 256, now - last);
			fflush(stdout);
			json_object_put(reply);
			last = now;
			if (count && i == count)
				break;
			{
				struct timespec ts = {
				        (time_t)interval,
				        (long)((interval - (double)(time_t)interval) *
				               1e9)};

				while (!stop && nanosleep(&ts, &ts) < 0 && errno == EINTR)
					;
			}
		}
	}
	close(fd);
out:
	json_object_put(req);
	return status;
usage_err:
	json_object_put(req);
	return 2;
}
