/* SPDX-License-Identifier: MIT */
/* Printing bench results: table, fio-like JSON, CSV. */
#include "report.h"

#include <inttypes.h>
#include <string.h>
#include <time.h>

static void summary_from(struct summary *s, const struct hist *all, uint64_t reads,
                         uint64_t writes, uint64_t bytes, double secs)
{
	memset(s, 0, sizeof(*s));
	if (secs <= 0)
		return;
	s->read_iops = (double)reads / secs;
	s->write_iops = (double)writes / secs;
	s->iops = s->read_iops + s->write_iops;
	s->mb_s = (double)bytes / secs / 1e6;
	s->mean_us = hist_mean(all) / 1e3;
	s->p50_us = (double)hist_percentile(all, 0.50) / 1e3;
	s->p99_us = (double)hist_percentile(all, 0.99) / 1e3;
	s->p999_us = (double)hist_percentile(all, 0.999) / 1e3;
	s->max_us = (double)all->max_ns / 1e3;
}

/* The notification counters per I/O completed; -1 where unknown. */
static void per_io(struct target_result *t, uint64_t ios)
{
	double n = (double)ios;

	t->kicks_per_io = ios ? (double)t->kick_writes / n : -1;
	t->irqs_per_io = ios ? (double)t->irq_calls / n : -1;
	t->wakeups_per_io = ios && t->wakeups_known ? (double)t->server_wakeups / n : -1;
	t->syscalls_per_io =
	        ios && t->syscalls_known ? (double)t->server_syscalls / n : -1;
}

void report_summarise(struct target_result *t)
{
	uint64_t reads = 0, writes = 0, bytes = 0, window = 0;
	struct hist all;

	hist_init(&t->lat_r);
	hist_init(&t->lat_w);
	t->verified = t->mismatches = 0;
	t->kicks = t->kicks_saved = t->waits = t->irqs = t->notifies = t->sleeps = 0;
	t->kick_writes = t->irq_calls = 0;
	for (unsigned i = 0; i < t->guests; i++) {
		const struct guest_result *g = &t->g[i];

		hist_merge(&t->lat_r, &g->lat_r);
		hist_merge(&t->lat_w, &g->lat_w);
		reads += g->reads;
		writes += g->writes;
		bytes += g->read_bytes + g->write_bytes;
		t->verified += g->verified;
		t->mismatches += g->mismatches;
		t->kicks += g->kicks;
		t->kicks_saved += g->kicks_saved;
		t->waits += g->waits;
		t->irqs += g->irqs;
		t->notifies += g->notifies;
		t->sleeps += g->sleeps;
		t->kick_writes += g->kick_writes;
		t->irq_calls += g->irq_calls;
		if (g->window_ns > window)
			window = g->window_ns;
	}
	hist_init(&all);
	hist_merge(&all, &t->lat_r);
	hist_merge(&all, &t->lat_w);
	/* Every guest measured the same window, so the aggregate rate is the
	 * sum of I/Os over that one window. */
	summary_from(&t->sum, &all, reads, writes, bytes, (double)window / 1e9);
	if (reads + writes && t->server_cpu_s >= 0)
		t->server_cpu_us_per_io =
		        t->server_cpu_s * 1e6 / (double)(reads + writes);
	per_io(t, reads + writes);
}

double report_ratio(double ours, double theirs)
{
	return ours > 0 && theirs > 0 ? ours / theirs : 0;
}

static void human_rate(char *buf, size_t len, double v)
{
	if (v >= 1e6)
		snprintf(buf, len, "%.2fM", v / 1e6);
	else if (v >= 1e4)
		snprintf(buf, len, "%.1fk", v / 1e3);
	else
		snprintf(buf, len, "%.0f", v);
}

static void row(FILE *f, const char *name, const char *who, const struct summary *s,
                const struct target_result *t)
{
	char iops[32], cpu[32] = "-", rss[32] = "-";

	human_rate(iops, sizeof(iops), s->iops);
	if (t && t->server_cpu_us_per_io > 0)
		snprintf(cpu, sizeof(cpu), "%.2f", t->server_cpu_us_per_io);
	if (t && t->server_rss_kib)
		snprintf(rss, sizeof(rss), "%.1f", (double)t->server_rss_kib / 1024.0);
	if (t && t->no_latency) {
		fprintf(f, "%-7s %-6s %9s %9.1f %8s %8s %8s %9s %9s %9s %8s\n", name, who,
		        iops, s->mb_s, "-", "-", "-", "-", "-", cpu, rss);
		return;
	}
	fprintf(f, "%-7s %-6s %9s %9.1f %8.1f %8.1f %8.1f %9.1f %9.1f %9s %8s\n", name,
	        who, iops, s->mb_s, s->mean_us, s->p50_us, s->p99_us, s->p999_us,
	        s->max_us, cpu, rss);
}

/* v with three decimals (two digits below 0.01), or "-" when unknown
 * (< 0). */
static const char *per_io_text(char *buf, size_t len, double v)
{
	if (v < 0)
		snprintf(buf, len, "-");
	else if (v > 0 && v < 0.01)
		snprintf(buf, len, "%.2g", v);
	else
		snprintf(buf, len, "%.3f", v);
	return buf;
}

/* Notification costs of a guest target, per I/O. */
static void notify_line(FILE *f, const struct target_result *t)
{
	char k[32], i[32], w[32], s[32], th[32] = "";

	if (t->syscalls_known)
		snprintf(th, sizeof(th), " (%u thread%s)", t->syscall_threads,
		         t->syscall_threads == 1 ? "" : "s");
	fprintf(f,
	        "%s per I/O: kicks %s, interrupts %s, server wake-ups %s, server "
	        "syscalls %s%s\n",
	        t->name, per_io_text(k, sizeof(k), t->kicks_per_io),
	        per_io_text(i, sizeof(i), t->irqs_per_io),
	        per_io_text(w, sizeof(w), t->wakeups_per_io),
	        per_io_text(s, sizeof(s), t->syscalls_per_io), th);
}

static const struct target_result *find(const struct run_point *p, const char *name)
{
	for (unsigned i = 0; i < p->nt; i++)
		if (p->t[i].ran && p->t[i].ok && strcmp(p->t[i].name, name) == 0)
			return &p->t[i];
	return NULL;
}

static void size_text(char *buf, size_t len, uint64_t v)
{
	if (v && v % (1ull << 30) == 0)
		snprintf(buf, len, "%" PRIu64 "G", v >> 30);
	else if (v && v % (1ull << 20) == 0)
		snprintf(buf, len, "%" PRIu64 "M", v >> 20);
	else if (v && v % 1024 == 0)
		snprintf(buf, len, "%" PRIu64 "k", v >> 10);
	else
		snprintf(buf, len, "%" PRIu64, v);
}

void report_table(FILE *f, const struct report_info *ri, const struct run_point *p,
                  unsigned max_guest_rows)
{
	const struct target_result *vp = find(p, "vproxy"), *qsd = find(p, "qsd"),
	                           *fio = find(p, "fio"), *mc = find(p, "memcpy");
	unsigned guests = ri->guests, iodepth = ri->iodepth;
	char bs[32], size[32], poll[16];

	if (ri->poll_auto)
		snprintf(poll, sizeof(poll), "auto");
	else
		snprintf(poll, sizeof(poll), "%u", ri->poll_us);
	if (p->sweep_name && strcmp(p->sweep_name, "guests") == 0)
		guests = p->sweep_value;
	if (p->sweep_name && strcmp(p->sweep_name, "iodepth") == 0)
		iodepth = p->sweep_value;
	size_text(bs, sizeof(bs), ri->bs);
	size_text(size, sizeof(size), ri->size);
	fprintf(f,
	        "\n%s bs=%s iodepth=%u queues=%u guests=%u (total QD %u) plugin=%s "
	        "size=%s "
	        "runtime=%.1fs ramp=%.1fs poll-us=%s spin-us=%u%s\n",
	        ri->rw, bs, iodepth, ri->queues, guests, guests * ri->queues * iodepth,
	        ri->plugin, size, ri->runtime_s, ri->ramp_s, poll, ri->spin_us,
	        ri->verify ? " verify" : "");
	fprintf(f, "%-7s %-6s %9s %9s %8s %8s %8s %9s %9s %9s %8s\n", "target", "guest",
	        "IOPS", "MB/s", "mean-us", "p50-us", "p99-us", "p99.9-us", "max-us",
	        "srvCPU/IO", "srvRSS-M");
	for (unsigned i = 0; i < p->nt; i++) {
		const struct target_result *t = &p->t[i];

		if (!t->ran)
			continue;
		if (!t->ok) {
			fprintf(f, "%-7s FAILED: %s\n", t->name, t->error);
			continue;
		}
		if (t->g && t->guests > 1 && t->guests <= max_guest_rows) {
			for (unsigned k = 0; k < t->guests; k++) {
				struct target_result one = {0};
				struct guest_result *g = &t->g[k];
				char who[16];

				one.guests = 1;
				one.g = g;
				one.server_cpu_s = -1;
				report_summarise(&one);
				snprintf(who, sizeof(who), "%u", k);
				row(f, t->name, who, &one.sum, NULL);
			}
		}
		row(f, t->name, t->g ? "total" : "-", &t->sum, t);
	}
	if (vp && vp->verified + vp->mismatches)
		fprintf(f, "verify: %" PRIu64 " blocks checked, %" PRIu64 " mismatches\n",
		        vp->verified, vp->mismatches);
	for (unsigned i = 0; i < p->nt; i++) {
		const struct target_result *t = &p->t[i];

		if (t->ran && t->ok && t->g)
			fprintf(f,
			        "%s: %u guest(s) attached in %.1f ms%s; server CPU %.3f "
			        "s (%.2f%% of a CPU); guests "
			        "CPU %.3f s; QueueNotify/IO %.3f, guest sleeps/IO %.3f\n",
			        t->name, t->guests, t->attach_ms,
			        t->provision_ms > 0 ? "" : "", t->server_cpu_s,
			        ri->runtime_s > 0 ? 100.0 * t->server_cpu_s / ri->runtime_s : 0,
			        t->guest_cpu_s,
			        t->sum.iops > 0
			                ? (double)t->kicks / (t->sum.iops * ri->runtime_s)
			                : 0,
			        t->sum.iops > 0
			                ? (double)t->waits / (t->sum.iops * ri->runtime_s)
			                : 0);
		if (t->ran && t->ok && t->g)
			notify_line(f, t);
		if (t->ran && t->ok && t->attach_server_cpu_s >= 0 && t->attach_ms > 0)
			fprintf(f, "%s: CPU while attaching: server %.3f s%s", t->name,
			        t->attach_server_cpu_s,
			        t->attach_xs_cpu_s >= 0 ? "" : "\n");
		if (t->ran && t->ok && t->attach_server_cpu_s >= 0 && t->attach_ms > 0 &&
		    t->attach_xs_cpu_s >= 0)
			fprintf(f, ", xenstored %.3f s\n", t->attach_xs_cpu_s);
		if (t->ran && t->ok && t->provision_ms > 0)
			fprintf(f,
			        "%s: %u device(s) provisioned (domains created, backends "
			        "in "
			        "InitWait) in %.1f ms\n",
			        t->name, t->guests, t->provision_ms);
	}
	if (vp && (qsd || fio || mc)) {
		fprintf(f, "ratios:");
		if (qsd)
			fprintf(f, " vproxy/qsd IOPS %.2fx p99 %.2fx;",
			        report_ratio(vp->sum.iops, qsd->sum.iops),
			        report_ratio(vp->sum.p99_us, qsd->sum.p99_us));
		if (fio)
			fprintf(f, " vproxy/fio IOPS %.2fx p99 %.2fx;",
			        report_ratio(vp->sum.iops, fio->sum.iops),
			        report_ratio(vp->sum.p99_us, fio->sum.p99_us));
		if (mc)
			fprintf(f, " vproxy/memcpy IOPS %.3fx;",
			        report_ratio(vp->sum.iops, mc->sum.iops));
		fprintf(f, "\n");
	}
}

/* ---- JSON ---- */

static void json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; s && *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c < 0x20)
			fprintf(f, "\\u%04x", c);
		else
			fputc(c, f);
	}
	fputc('"', f);
}

static void json_dir(FILE *f, const char *name, const struct hist *h, uint64_t ios,
                     uint64_t bytes, double secs, const char *ind)
{
	double iops = secs > 0 ? (double)ios / secs : 0;

	fprintf(f,
	        "%s\"%s\": {\"io_bytes\": %" PRIu64 ", \"bw\": %.0f, \"iops\": %.2f, "
	        "\"total_ios\": %" PRIu64 ", \"runtime\": %.0f,\n",
	        ind, name, bytes, secs > 0 ? (double)bytes / secs / 1024.0 : 0, iops, ios,
	        secs * 1e3);
	fprintf(f,
	        "%s  \"lat_ns\": {\"min\": %" PRIu64 ", \"max\": %" PRIu64
	        ", \"mean\": %.1f, "
	        "\"N\": %" PRIu64 ", \"percentile\": {\"50.000000\": %" PRIu64
	        ", \"90.000000\": %" PRIu64 ", \"99.000000\": %" PRIu64
	        ", \"99.900000\": %" PRIu64 ", \"99.990000\": %" PRIu64 "}}}",
	        ind, h->count ? h->min_ns : 0, h->max_ns, hist_mean(h), h->count,
	        hist_percentile(h, 0.5), hist_percentile(h, 0.9),
	        hist_percentile(h, 0.99), hist_percentile(h, 0.999),
	        hist_percentile(h, 0.9999));
}

static void json_summary_dir(FILE *f, const char *name, double iops,
                             const struct summary *s, double bytes_share, const char *ind)
{
	fprintf(f,
	        "%s\"%s\": {\"bw\": %.0f, \"iops\": %.2f, \"lat_ns\": {\"max\": %.0f, "
	        "\"mean\": %.1f, \"percentile\": {\"50.000000\": %.0f, \"99.000000\": "
	        "%.0f, "
	        "\"99.900000\": %.0f}}}",
	        ind, name, s->mb_s * 1e6 * bytes_share / 1024.0, iops, s->max_us * 1e3,
	        s->mean_us * 1e3, s->p50_us * 1e3, s->p99_us * 1e3, s->p999_us * 1e3);
}

/* A per-I/O value, or null when unknown (< 0). */
static void json_per_io(FILE *f, const char *key, double v, const char *sep)
{
	if (v < 0)
		fprintf(f, "\"%s\": null%s", key, sep);
	else
		fprintf(f, "\"%s\": %.6f%s", key, v, sep);
}

static void json_count(FILE *f, const char *key, bool known, uint64_t v, const char *sep)
{
	if (known)
		fprintf(f, "\"%s\": %" PRIu64 "%s", key, v, sep);
	else
		fprintf(f, "\"%s\": null%s", key, sep);
}

/* The notification costs (null for targets that have none). */
static void json_notify(FILE *f, const struct target_result *t)
{
	bool g = t->g != NULL;

	fprintf(f, "       ");
	json_per_io(f, "kicks_per_io", g ? t->kicks_per_io : -1, ", ");
	json_per_io(f, "irqs_per_io", g ? t->irqs_per_io : -1, ", ");
	json_per_io(f, "server_wakeups_per_io", g ? t->wakeups_per_io : -1, ", ");
	json_per_io(f, "server_syscalls_per_io", g ? t->syscalls_per_io : -1,
	            ",\n       ");
	json_count(f, "kick_writes", g, t->kick_writes, ", ");
	json_count(f, "irq_calls", g, t->irq_calls, ", ");
	json_count(f, "server_wakeups", g && t->wakeups_known, t->server_wakeups, ", ");
	json_count(f, "server_syscalls", g && t->syscalls_known, t->server_syscalls,
	           ", ");
	json_count(f, "server_syscall_threads", g && t->syscalls_known,
	           t->syscall_threads, "");
}

static void json_target(FILE *f, const struct report_info *ri,
                        const struct target_result *t)
{
	double secs = ri->runtime_s;

	fprintf(f, "      {\"jobname\": ");
	json_str(f, t->name);
	fprintf(f, ", \"ok\": %s, \"guests\": %u, \"queues\": %u, \"iodepth\": %u,\n",
	        t->ok ? "true" : "false", t->guests, t->queues, t->iodepth);
	if (!t->ok) {
		fprintf(f, "       \"error\": ");
		json_str(f, t->error);
		fprintf(f, "}");
		return;
	}
	fprintf(f, "       \"iops\": %.2f, \"mb_s\": %.3f,\n", t->sum.iops, t->sum.mb_s);
	if (t->g) {
		uint64_t rb = 0, wb = 0;

		for (unsigned i = 0; i < t->guests; i++) {
			rb += t->g[i].read_bytes;
			wb += t->g[i].write_bytes;
		}
		json_dir(f, "read", &t->lat_r, t->lat_r.count, rb, secs, "       ");
		fprintf(f, ",\n");
		json_dir(f, "write", &t->lat_w, t->lat_w.count, wb, secs, "       ");
		fprintf(f,
		        ",\n       \"server\": {\"cpu_s\": %.3f, \"cpu_us_per_io\": "
		        "%.3f, "
		        "\"peak_rss_kib\": %" PRIu64 "},\n       \"guest_cpu_s\": %.3f, "
		        "\"attach_ms\": %.2f, \"attach_server_cpu_s\": %.3f, "
		        "\"attach_xenstored_cpu_s\": %.3f, \"provision_ms\": %.2f,\n     "
		        "  \"verified\": %" PRIu64 ", \"mismatches\": %" PRIu64
		        ", \"kicks\": %" PRIu64 ", \"kicks_saved\": %" PRIu64
		        ", \"waits\": %" PRIu64 ", \"irqs\": %" PRIu64
		        ", \"stub_notifies\": %" PRIu64 ", \"stub_sleeps\": %" PRIu64
		        ",\n",
		        t->server_cpu_s, t->server_cpu_us_per_io, t->server_rss_kib,
		        t->guest_cpu_s, t->attach_ms, t->attach_server_cpu_s,
		        t->attach_xs_cpu_s, t->provision_ms, t->verified, t->mismatches,
		        t->kicks, t->kicks_saved, t->waits, t->irqs, t->notifies,
		        t->sleeps);
		json_notify(f, t);
		fprintf(f, ",\n       \"per_guest\": [\n");
		for (unsigned i = 0; i < t->guests; i++) {
			const struct guest_result *g = &t->g[i];
			double gs = (double)g->window_ns / 1e9;

			fprintf(f,
			        "         {\"guest\": %u, \"ok\": %s, \"attach_ms\": "
			        "%.2f, ",
			        i, g->ok ? "true" : "false", g->attach_ms);
			if (!g->ok) {
				fprintf(f, "\"error\": ");
				json_str(f, g->error);
				fprintf(f, ", ");
			}
			fprintf(f, "\n");
			json_dir(f, "read", &g->lat_r, g->reads, g->read_bytes, gs,
			         "          ");
			fprintf(f, ",\n");
			json_dir(f, "write", &g->lat_w, g->writes, g->write_bytes, gs,
			         "          ");
			fprintf(f, "}%s\n", i + 1 < t->guests ? "," : "");
		}
		fprintf(f, "       ]}");
		return;
	}
	{
		double r = t->sum.iops > 0 ? t->sum.read_iops / t->sum.iops : 0;

		json_summary_dir(f, "read", t->sum.read_iops, &t->sum, r, "       ");
		fprintf(f, ",\n");
		json_summary_dir(f, "write", t->sum.write_iops, &t->sum, 1 - r,
		                 "       ");
		fprintf(f, ",\n");
		json_notify(f, t);
		fprintf(f, "}");
	}
}

void report_json(FILE *f, const struct report_info *ri, const struct run_point *pts,
                 unsigned n)
{
	fprintf(f, "{\n  \"vproxy-bench version\": ");
	json_str(f, ri->version);
	fprintf(f, ",\n  \"timestamp\": %lld,\n  \"global options\": {\"rw\": ",
	        (long long)time(NULL));
	json_str(f, ri->rw);
	fprintf(f,
	        ", \"rwmixread\": %u, \"bs\": %" PRIu64
	        ", \"iodepth\": %u, \"queues\": %u, "
	        "\"guests\": %u, \"runtime\": %.3f, \"ramp_time\": %.3f, \"size\": "
	        "%" PRIu64 ", \"plugin\": ",
	        ri->rwmixread, ri->bs, ri->iodepth, ri->queues, ri->guests, ri->runtime_s,
	        ri->ramp_s, ri->size);
	json_str(f, ri->plugin);
	fprintf(f, ", \"file\": ");
	json_str(f, ri->file ? ri->file : "");
	fprintf(f, ", \"direct\": ");
	json_str(f, ri->direct ? ri->direct : "");
	fprintf(f, ", \"engine\": ");
	json_str(f, ri->engine ? ri->engine : "");
	fprintf(f,
	        ", \"verify\": %s, \"poll_us\": ", ri->verify ? "true" : "false");
	if (ri->poll_auto)
		fprintf(f, "\"auto\"");
	else
		fprintf(f, "%u", ri->poll_us);
	fprintf(f, ", \"poll_max_us\": %u, \"guest_spin_us\": %u, \"cpus\": %ld},\n",
	        ri->poll_max_us, ri->spin_us, ri->cpus);
	fprintf(f, "  \"runs\": [\n");
	for (unsigned i = 0; i < n; i++) {
		const struct run_point *p = &pts[i];
		const struct target_result *vp = find(p, "vproxy"), *qsd = find(p, "qsd"),
		                           *fio = find(p, "fio");
		bool first = true;

		fprintf(f, "    {\"sweep\": ");
		if (p->sweep_name)
			fprintf(f, "{\"%s\": %u}", p->sweep_name, p->sweep_value);
		else
			fprintf(f, "null");
		fprintf(f, ",\n     \"jobs\": [\n");
		for (unsigned k = 0; k < p->nt; k++) {
			if (!p->t[k].ran)
				continue;
			if (!first)
				fprintf(f, ",\n");
			first = false;
			json_target(f, ri, &p->t[k]);
		}
		fprintf(f, "\n     ],\n     \"ratios\": {");
		first = true;
		if (vp && qsd) {
			fprintf(f, "\"vproxy/qsd iops\": %.4f, \"vproxy/qsd p99\": %.4f",
			        report_ratio(vp->sum.iops, qsd->sum.iops),
			        report_ratio(vp->sum.p99_us, qsd->sum.p99_us));
			first = false;
		}
		if (vp && fio)
			fprintf(f,
			        "%s\"vproxy/fio iops\": %.4f, \"vproxy/fio p99\": %.4f",
			        first ? "" : ", ",
			        report_ratio(vp->sum.iops, fio->sum.iops),
			        report_ratio(vp->sum.p99_us, fio->sum.p99_us));
		fprintf(f, "}}%s\n", i + 1 < n ? "," : "");
	}
	fprintf(f, "  ]\n}\n");
}

/* ---- CSV ---- */

/* A per-I/O value, empty when unknown (< 0). */
static void csv_per_io(FILE *f, double v, const char *end)
{
	if (v >= 0)
		fprintf(f, "%.6f", v);
	fputs(end, f);
}

/* A row of t; the numbers are src's (t itself, or one of its guests). */
static void csv_row(FILE *f, const struct run_point *p, const struct target_result *t,
                    const char *guest, const struct target_result *src, bool server)
{
	const struct summary *s = &src->sum;
	bool g = src->g != NULL;

	fprintf(f, "%s,%u,%s,%s,%u,%u,%u,%.2f,%.2f,%.2f,%.3f,%.2f,%.2f,%.2f,%.2f,%.2f,",
	        p->sweep_name ? p->sweep_name : "", p->sweep_name ? p->sweep_value : 0,
	        t->name, guest, t->guests, t->queues, t->iodepth, s->iops, s->read_iops,
	        s->write_iops, s->mb_s, s->mean_us, s->p50_us, s->p99_us, s->p999_us,
	        s->max_us);
	if (server)
		fprintf(f, "%.3f,%" PRIu64 ",%.2f,", t->server_cpu_us_per_io,
		        t->server_rss_kib, t->attach_ms);
	else
		fprintf(f, ",,,");
	csv_per_io(f, g ? src->kicks_per_io : -1, ",");
	csv_per_io(f, g ? src->irqs_per_io : -1, ",");
	csv_per_io(f, g && server ? src->wakeups_per_io : -1, ",");
	csv_per_io(f, g && server ? src->syscalls_per_io : -1, "\n");
}

void report_csv(FILE *f, const struct report_info *ri, const struct run_point *pts,
                unsigned n)
{
	(void)ri;
	fprintf(f, "sweep,sweep_value,target,guest,guests,queues,iodepth,iops,read_iops,"
	           "write_iops,mb_s,lat_mean_us,lat_p50_us,lat_p99_us,lat_p999_us,lat_"
	           "max_us,"
	           "server_cpu_us_per_io,server_peak_rss_kib,attach_ms,"
	           "kicks_per_io,irqs_per_io,server_wakeups_per_io,"
	           "server_syscalls_per_io\n");
	for (unsigned i = 0; i < n; i++) {
		for (unsigned k = 0; k < pts[i].nt; k++) {
			const struct target_result *t = &pts[i].t[k];

			if (!t->ran || !t->ok)
				continue;
			csv_row(f, &pts[i], t, "total", t, true);
			for (unsigned gi = 0; t->g && gi < t->guests; gi++) {
				struct target_result one = {0};
				char who[16];

				one.guests = 1;
				one.g = &t->g[gi];
				one.server_cpu_s = -1;
				report_summarise(&one);
				snprintf(who, sizeof(who), "%u", gi);
				csv_row(f, &pts[i], t, who, &one, false);
			}
		}
	}
}
