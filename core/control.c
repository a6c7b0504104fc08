/* SPDX-License-Identifier: MIT */
/*
 * The control socket (docs/CONTROL.md): one JSON object per line in, one
 * per line out, parsed and written with json-c.  Every request is checked
 * before anything is done, and every bad one (not JSON, not an object, no
 * or an unknown "cmd", a bad argument) gets {"ok": false, "error": ...}
 * while the daemon and the client's connection carry on.  What a client
 * could use to hurt the daemon is bounded (control.h): the length of a
 * request line, the reply bytes it leaves unread, the number of clients.
 *
 * Commands: "list" (every declared device and its state), "stats" (each
 * connected device's counters and latency, or one device's), "log-level"
 * (read or set the log level).  The commands read the xenstore bus's
 * devices (xsbus.h) and the virtio-blk statistics (blk.h) on the loop
 * thread, so they see a consistent state without locks.
 */
#include "control.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <json-c/json.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "blk.h"
#include "config.h"
#include "hist.h"
#include "log.h"
#include "loop.h"
#include "xsbus.h"

struct client {
	struct vp_control *ctl;
	struct bufferevent *bev;
	bool closing; /* reply queued, then close */
	struct client *prev, *next;
};

struct vp_control {
	struct event_base *base;
	struct vp_xsbus *bus;
	const char *plugin_dir;
	vp_control_reload_fn *reload;
	void *reload_arg;
	struct evconnlistener *lev;
	struct client *clients;
	unsigned nclients;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
};

/* ---- replies ---- */

static void client_free(struct client *cl)
{
	struct vp_control *ctl = cl->ctl;

	if (cl->prev)
		cl->prev->next = cl->next;
	else
		ctl->clients = cl->next;
	if (cl->next)
		cl->next->prev = cl->prev;
	ctl->nclients--;
	bufferevent_free(cl->bev);
	free(cl);
}

/* Queue obj as one line; false when the client was dropped for leaving
 * too much unread. */
static bool send_obj(struct client *cl, struct json_object *obj)
{
	struct evbuffer *out = bufferevent_get_output(cl->bev);
	size_t len;
	const char *text =
	        json_object_to_json_string_length(obj, JSON_C_TO_STRING_PLAIN, &len);

	if (evbuffer_get_length(out) + len + 1 > VP_CONTROL_MAX_PENDING) {
		vp_warn("control: a client left %zu reply bytes unread: disconnected",
		        evbuffer_get_length(out));
		client_free(cl);
		return false;
	}
	evbuffer_add(out, text, len);
	evbuffer_add(out, "\n", 1);
	return true;
}

static struct json_object *error_reply(const char *fmt, ...)
        __attribute__((format(printf, 1, 2)));

static struct json_object *error_reply(const char *fmt, ...)
{
	struct json_object *r = json_object_new_object();
	char msg[640];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	json_object_object_add(r, "ok", json_object_new_boolean(false));
	json_object_object_add(r, "error", json_object_new_string(msg));
	return r;
}

static struct json_object *ok_reply(void)
{
	struct json_object *r = json_object_new_object();

	json_object_object_add(r, "ok", json_object_new_boolean(true));
	return r;
}

/* ---- commands ---- */

static void add_str(struct json_object *o, const char *key, const char *v)
{
	json_object_object_add(o, key, v ? json_object_new_string(v) : NULL);
}

static void add_u64(struct json_object *o, const char *key, uint64_t v)
{
	json_object_object_add(o, key, json_object_new_uint64(v));
}

/* The fields list and stats share: which device this is. */
static void add_identity(struct json_object *o, const struct vp_xsbus_device *d)
{
	add_str(o, "label", d->decl->label);
	add_str(o, "guest", d->decl->guest);
	add_str(o, "name", d->dom_name);
	json_object_object_add(o, "domid",
	                       d->dom >= 0 ? json_object_new_int(d->dom) : NULL);
	json_object_object_add(o, "id", json_object_new_int((int)d->devid));
}

static void list_one(void *arg, const struct vp_xsbus_device *d)
{
	struct json_object *o = json_object_new_object();

	add_identity(o, d);
	add_str(o, "plugin", d->decl->plugin ? d->decl->plugin->name : NULL);
	add_u64(o, "size", d->capacity);
	add_str(o, "state", d->state);
	add_str(o, "addr_mode", d->addr_mode);
	json_object_object_add(o, "queues", json_object_new_int((int)d->decl->queues));
	json_object_object_add(o, "read_only", json_object_new_boolean(d->read_only));
	add_str(o, "error", d->error);
	json_object_array_add(arg, o);
}

static struct json_object *cmd_list(struct vp_control *ctl, struct json_object *req)
{
	struct json_object *r = ok_reply();
	struct json_object *devs = json_object_new_array();

	(void)req;
	vp_xsbus_foreach_device(ctl->bus, list_one, devs);
	json_object_object_add(r, "devices", devs);
	return r;
}

/* Does d answer to sel: its label, or "DOMID/ID"? */
static bool selected(const struct vp_xsbus_device *d, const char *sel)
{
	char id[32];

	if (!sel)
		return true;
	if (strcmp(sel, d->decl->label) == 0)
		return true;
	snprintf(id, sizeof(id), "%d/%u", d->dom, d->devid);
	return d->dom >= 0 && strcmp(sel, id) == 0;
}

static struct json_object *latency_obj(const struct hist *h)
{
	static const struct {
		const char *key;
		double p;
	} pct[] = {
	        {"p50_us", 0.5}, {"p90_us", 0.9}, {"p99_us", 0.99}, {"p99.9_us", 0.999}};
	struct json_object *o = json_object_new_object();

	add_u64(o, "count", h->count);
	add_u64(o, "sum_ns", h->sum_ns);
	json_object_object_add(o, "mean_us",
	                       json_object_new_double(hist_mean(h) / 1000.0));
	for (size_t i = 0; i < sizeof(pct) / sizeof(pct[0]); i++)
		json_object_object_add(
		        o, pct[i].key,
		        json_object_new_double((double)hist_percentile(h, pct[i].p) /
		                               1000.0));
	json_object_object_add(
	        o, "max_us",
	        json_object_new_double(h->count ? (double)h->max_ns / 1000.0 : 0));
	return o;
}

struct stats_walk {
	const char *sel;
	struct json_object *devs;
	unsigned matched;
	struct vp_blk_totals *t; /* scratch: one device's sums */
};

static void stats_one(void *arg, const struct vp_xsbus_device *d)
{
	struct stats_walk *w = arg;
	struct json_object *o, *qs;
	unsigned nq = d->decl->queues;

	if (!selected(d, w->sel))
		return;
	w->matched++;
	/* What the device did over all its connections: the earlier ones'
	 * sums and the live one's counters. */
	vp_blk_totals_of(w->t, d->past, d->vdev);
	if (nq > VP_BLK_MAX_QUEUES)
		nq = VP_BLK_MAX_QUEUES;
	o = json_object_new_object();
	add_identity(o, d);
	add_str(o, "state", d->state);
	json_object_object_add(o, "connected", json_object_new_boolean(d->vdev != NULL));
	add_u64(o, "interrupts", w->t->irqs);
	json_object_object_add(o, "latency", latency_obj(&w->t->lat));
	qs = json_object_new_array();
	for (unsigned q = 0; q < nq; q++) {
		const struct vp_blk_queue_stats *st = &w->t->q[q];
		const struct vp_blk_queue_stats *live =
		        d->vdev ? vp_blk_queue_stats(d->vdev, q) : NULL;
		struct json_object *qo = json_object_new_object();

		json_object_object_add(qo, "queue", json_object_new_int((int)q));
		add_u64(qo, "kicks", w->t->kicks[q]);
		json_object_object_add(
		        qo, "inflight",
		        json_object_new_int(live ? (int)live->inflight : 0));
		add_u64(qo, "errors", st->errors);
		for (unsigned op = 0; op < VP_BLK_NOPS; op++) {
			struct json_object *oo = json_object_new_object();

			add_u64(oo, "requests", st->reqs[op]);
			add_u64(oo, "bytes", st->bytes[op]);
			json_object_object_add(qo, vp_blk_op_name((enum vp_blk_op)op),
			                       oo);
		}
		json_object_array_add(qs, qo);
	}
	json_object_object_add(o, "queues", qs);
	json_object_array_add(w->devs, o);
}

static struct json_object *cmd_stats(struct vp_control *ctl, struct json_object *req)
{
	struct stats_walk w = {.devs = json_object_new_array()};
	struct json_object *v, *r;

	w.t = malloc(sizeof(*w.t));
	if (!w.t) {
		json_object_put(w.devs);
		return error_reply("out of memory");
	}

	if (json_object_object_get_ex(req, "device", &v) &&
	    !json_object_is_type(v, json_type_null)) {
		if (!json_object_is_type(v, json_type_string)) {
			json_object_put(w.devs);
			free(w.t);
			return error_reply("stats: \"device\" must be a string (a label "
			                   "or DOMID/ID)");
		}
		w.sel = json_object_get_string(v);
	}
	vp_xsbus_foreach_device(ctl->bus, stats_one, &w);
	free(w.t);
	if (w.sel && !w.matched) {
		json_object_put(w.devs);
		return error_reply("stats: no device '%.64s' (a label or DOMID/ID)",
		                   w.sel);
	}
	r = ok_reply();
	json_object_object_add(r, "devices", w.devs);
	return r;
}

static struct json_object *cmd_log_level(struct vp_control *ctl, struct json_object *req)
{
	enum vproxy_log_level lvl;
	struct json_object *v, *r;

	(void)ctl;
	if (json_object_object_get_ex(req, "level", &v) &&
	    !json_object_is_type(v, json_type_null)) {
		if (!json_object_is_type(v, json_type_string) ||
		    vp_log_parse_level(json_object_get_string(v), &lvl) < 0)
			return error_reply("log-level: \"level\" must be one of error, "
			                   "warn, info, debug");
		if (lvl != vp_log_get_level())
			vp_info("control: log level %s (was %s)", vp_log_level_name(lvl),
			        vp_log_level_name(vp_log_get_level()));
		vp_log_set_level(lvl);
	}
	r = ok_reply();
	add_str(r, "level", vp_log_level_name(vp_log_get_level()));
	return r;
}

/* ---- attach and detach ---- */

#define ATTACH_MAX_KEY 64
#define ATTACH_MAX_VALUE 4096
#define ATTACH_MAX_TEXT 65536

static void config_release(void *owner)
{
	vp_config_free(owner);
}

/* A key of a [device] section: lower-case letters, digits and '-'. */
static bool key_ok(const char *k)
{
	size_t n = strlen(k);

	if (n == 0 || n > ATTACH_MAX_KEY)
		return false;
	for (; *k; k++)
		if (!((*k >= 'a' && *k <= 'z') || (*k >= '0' && *k <= '9') || *k == '-'))
			return false;
	return true;
}

/* A value the INI reader takes back as it is: printable, one line, no
 * inline comment. */
static const char *value_problem(const char *v)
{
	if (strlen(v) > ATTACH_MAX_VALUE)
		return "is too long";
	for (const unsigned char *c = (const unsigned char *)v; *c; c++) {
		if (*c < 0x20 || *c == 0x7f)
			return "has a control character";
		if (*c == ';' || *c == '#')
			return "has ';' or '#' (a comment in the file)";
	}
	return NULL;
}

/* A value as text: strings as they are, integers and booleans written
 * out; NULL for anything else. */
static const char *value_text(struct json_object *v, char *buf, size_t len)
{
	switch (json_object_get_type(v)) {
	case json_type_string: return json_object_get_string(v);
	case json_type_int:
		snprintf(buf, len, "%" PRId64, json_object_get_int64(v));
		return buf;
	case json_type_boolean: return json_object_get_boolean(v) ? "yes" : "no";
	default: return NULL;
	}
}

/* Drop "attach:N: " from a configuration error: the request has no lines. */
static const char *strip_where(const char *err)
{
	const char *p = strchr(err, ':');

	if (strncmp(err, "attach:", 7) == 0 && p && (p = strchr(p + 1, ':')) &&
	    p[1] == ' ')
		return p + 2;
	return err;
}

struct find_walk {
	const char *label;
	struct json_object *found;
};

static void find_one(void *arg, const struct vp_xsbus_device *d)
{
	struct find_walk *w = arg;
	struct json_object *devs;

	if (w->found || strcmp(d->decl->label, w->label) != 0)
		return;
	devs = json_object_new_array();
	list_one(devs, d);
	w->found = json_object_get(json_object_array_get_idx(devs, 0));
	json_object_put(devs);
}

/* The request as a [device] section in text, for the configuration's own
 * parser: the same keys, checks and messages as the file.  NULL and a
 * reply on a bad request. */
static char *attach_text(struct json_object *keys, const char *guest, const char *label,
                         struct json_object **reply)
{
	char num[32], idbuf[32], dflt[96];
	char *text = malloc(ATTACH_MAX_TEXT);
	size_t used;

	if (!text) {
		*reply = error_reply("out of memory");
		return NULL;
	}
	if (!label) {
		struct json_object *id;
		const char *idt = json_object_object_get_ex(keys, "id", &id)
		                          ? value_text(id, idbuf, sizeof(idbuf))
		                          : NULL;

		snprintf(dflt, sizeof(dflt), "%.40s-%.20s", guest, idt ? idt : "0");
		label = dflt;
	}
	used = (size_t)snprintf(text, ATTACH_MAX_TEXT, "[device %s]\nguest = %s\n", label,
	                        guest);
	json_object_object_foreach(keys, k, v)
	{
		const char *vt = value_text(v, num, sizeof(num));
		const char *why = vt ? value_problem(vt) : NULL;

		if (!key_ok(k) || strcmp(k, "guest") == 0)
			*reply = error_reply("attach: key '%.64s' is not allowed", k);
		else if (!vt)
			*reply = error_reply(
			        "attach: %s: a value is a string or a number", k);
		else if (why)
			*reply = error_reply("attach: %s: the value %s", k, why);
		else if (used + strlen(k) + strlen(vt) + 5 >= ATTACH_MAX_TEXT)
			*reply = error_reply("attach: too many keys");
		else {
			used += (size_t)snprintf(text + used, ATTACH_MAX_TEXT - used,
			                         "%s = %s\n", k, vt);
			continue;
		}
		free(text);
		return NULL;
	}
	return text;
}

static struct json_object *cmd_attach(struct vp_control *ctl, struct json_object *req)
{
	struct json_object *guest, *keys, *label, *r = NULL;
	struct vp_config *cfg = NULL;
	struct vp_devdecl decl;
	struct find_walk w = {0};
	char err[512], num[32], *text;
	const char *g, *lbl = NULL;
	int rc;

	if (!json_object_object_get_ex(req, "guest", &guest) ||
	    !(json_object_is_type(guest, json_type_string) ||
	      json_object_is_type(guest, json_type_int)))
		return error_reply(
		        "attach: \"guest\" (a domid or a domain name) is needed");
	g = value_text(guest, num, sizeof(num));
	if (!*g || value_problem(g) || strchr(g, ' '))
		return error_reply("attach: \"guest\" is not a domid or a domain name");
	if (!json_object_object_get_ex(req, "keys", &keys) ||
	    !json_object_is_type(keys, json_type_object))
		return error_reply(
		        "attach: \"keys\", an object of the device's keys (id, "
		        "plugin, ...), is needed");
	if (json_object_object_get_ex(req, "label", &label) &&
	    !json_object_is_type(label, json_type_null)) {
		if (!json_object_is_type(label, json_type_string))
			return error_reply("attach: \"label\" must be a string");
		lbl = json_object_get_string(label);
		if (!*lbl || value_problem(lbl) || strchr(lbl, ']') || strlen(lbl) > 64)
			return error_reply("attach: \"label\" is not a valid label");
	}
	text = attach_text(keys, g, lbl, &r);
	if (!text)
		return r;
	rc = vp_config_load_string("attach", text, &cfg, err, sizeof(err));
	free(text);
	if (rc)
		return error_reply("attach: %s", strip_where(err));
	if (cfg->n_devices != 1) {
		vp_config_free(cfg);
		return error_reply("attach: one device per request");
	}
	if ((ctl->plugin_dir && vp_config_set_plugin_dir(cfg, ctl->plugin_dir)) ||
	    vp_config_check_plugins(cfg, err, sizeof(err))) {
		vp_config_free(cfg);
		return error_reply("attach: %s", strip_where(err));
	}
	vp_devdecl_from_config(&decl, &cfg->devices[0]);
	if (vp_xsbus_attach(ctl->bus, &decl, false, config_release, cfg, err,
	                    sizeof(err)) < 0) {
		vp_config_free(cfg);
		return error_reply("attach: %s", err);
	}
	w.label = decl.label;
	vp_xsbus_foreach_device(ctl->bus, find_one, &w);
	r = ok_reply();
	json_object_object_add(r, "device", w.found);
	/* Not written to the file: gone after a restart (docs/CONTROL.md). */
	json_object_object_add(r, "runtime_only", json_object_new_boolean(true));
	return r;
}

static struct json_object *cmd_detach(struct vp_control *ctl, struct json_object *req)
{
	struct json_object *dev, *force, *r;
	bool gone = false, f = false;
	char err[256];

	if (!json_object_object_get_ex(req, "device", &dev) ||
	    !json_object_is_type(dev, json_type_string))
		return error_reply(
		        "detach: \"device\" (a label, GUEST/ID or DOMID/ID) is needed");
	if (json_object_object_get_ex(req, "force", &force) &&
	    !json_object_is_type(force, json_type_null)) {
		if (!json_object_is_type(force, json_type_boolean))
			return error_reply("detach: \"force\" must be true or false");
		f = json_object_get_boolean(force);
	}
	if (vp_xsbus_detach(ctl->bus, json_object_get_string(dev), f, &gone, err,
	                    sizeof(err)) < 0)
		return error_reply("detach: %s", err);
	r = ok_reply();
	json_object_object_add(r, "gone", json_object_new_boolean(gone));
	return r;
}

static struct json_object *cmd_reload(struct vp_control *ctl, struct json_object *req)
{
	char summary[768], err[512];
	struct json_object *r;

	(void)req;
	if (!ctl->reload)
		return error_reply("reload: not available");
	if (ctl->reload(ctl->reload_arg, summary, sizeof(summary), err, sizeof(err)) < 0)
		return error_reply("reload refused, nothing changed: %s", err);
	r = ok_reply();
	add_str(r, "summary", summary);
	return r;
}

static const struct {
	const char *name;
	struct json_object *(*run)(struct vp_control *ctl, struct json_object *req);
} commands[] = {
        {"list", cmd_list},     {"stats", cmd_stats},   {"log-level", cmd_log_level},
        {"attach", cmd_attach}, {"detach", cmd_detach}, {"reload", cmd_reload},
};

static struct json_object *run_request(struct vp_control *ctl, const char *line,
                                       size_t len)
{
	struct json_tokener *tok = json_tokener_new();
	struct json_object *req, *cmd, *reply = NULL;
	enum json_tokener_error jerr;
	const char *name;

	if (!tok)
		return error_reply("out of memory");
	req = json_tokener_parse_ex(tok, line, (int)len);
	jerr = json_tokener_get_error(tok);
	if (req && json_tokener_get_parse_end(tok) < len) {
		/* Something after the object: not one request. */
		const char *rest = line + json_tokener_get_parse_end(tok);

		while (rest < line + len &&
		       (*rest == ' ' || *rest == '\t' || *rest == '\r'))
			rest++;
		if (rest < line + len) {
			json_object_put(req);
			json_tokener_free(tok);
			return error_reply(
			        "not one JSON object: text after it at byte %zu",
			        (size_t)(rest - line));
		}
	}
	json_tokener_free(tok);
	if (!req)
		return error_reply("not JSON: %s",
		                   jerr == json_tokener_continue
		                           ? "the object is not complete"
		                           : json_tokener_error_desc(jerr));
	if (!json_object_is_type(req, json_type_object)) {
		json_object_put(req);
		return error_reply("a request is a JSON object with a \"cmd\"");
	}
	if (!json_object_object_get_ex(req, "cmd", &cmd) ||
	    !json_object_is_type(cmd, json_type_string)) {
		json_object_put(req);
		return error_reply("a request needs \"cmd\", a string");
	}
	name = json_object_get_string(cmd);
	if (!ctl->bus && strcmp(name, "log-level") != 0) {
		json_object_put(req);
		return error_reply("vproxyd is starting: try again");
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (strcmp(name, commands[i].name) == 0)
			reply = commands[i].run(ctl, req);
	if (!reply)
		reply = error_reply(
		        "unknown command '%.64s' (list, stats, log-level, attach, "
		        "detach, reload)",
		        name);
	json_object_put(req);
	return reply;
}

/* ---- connections ---- */

/* A request line past the limit: say so, then close once it is sent. */
static void oversized(struct client *cl)
{
	struct json_object *reply =
	        error_reply("request longer than %u bytes", VP_CONTROL_MAX_REQUEST);
	struct evbuffer *in = bufferevent_get_input(cl->bev);
	bool alive;

	evbuffer_drain(in, evbuffer_get_length(in));
	cl->closing = true;
	alive = send_obj(cl, reply);
	json_object_put(reply);
	if (alive)
		bufferevent_disable(cl->bev, EV_READ);
}

static void client_read(struct bufferevent *bev, void *arg)
{
	struct client *cl = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	size_t n;
	char *line;

	if (cl->closing) {
		evbuffer_drain(in, evbuffer_get_length(in));
		return;
	}
	while ((line = evbuffer_readln(in, &n, EVBUFFER_EOL_LF))) {
		struct json_object *reply = NULL;
		bool blank = true;

		for (size_t i = 0; i < n && blank; i++)
			blank = line[i] == ' ' || line[i] == '\t' || line[i] == '\r';
		if (n > VP_CONTROL_MAX_REQUEST) {
			free(line);
			oversized(cl);
			return;
		}
		if (!blank)
			reply = run_request(cl->ctl, line, n);
		free(line);
		if (reply) {
			bool alive = send_obj(cl, reply);

			json_object_put(reply);
			if (!alive)
				return;
		}
	}
	if (evbuffer_get_length(in) > VP_CONTROL_MAX_REQUEST)
		oversized(cl);
}

static void client_write(struct bufferevent *bev, void *arg)
{
	struct client *cl = arg;

	if (cl->closing && evbuffer_get_length(bufferevent_get_output(bev)) == 0)
		client_free(cl);
}

static void client_event(struct bufferevent *bev, short what, void *arg)
{
	(void)bev;
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
		client_free(arg);
}

static void on_accept(struct evconnlistener *lev, evutil_socket_t fd, struct sockaddr *sa,
                      int salen, void *arg)
{
	static const char busy[] =
	        "{\"ok\":false,\"error\":\"too many control clients\"}\n";
	struct vp_control *ctl = arg;
	struct client *cl;

	(void)lev;
	(void)sa;
	(void)salen;
	if (ctl->nclients >= VP_CONTROL_MAX_CLIENTS) {
		/* Best effort: a non-blocking send of one short line. */
		if (send(fd, busy, sizeof(busy) - 1, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
			vp_debug("control: refusing a client: %s", strerror(errno));
		evutil_closesocket(fd);
		return;
	}
	cl = calloc(1, sizeof(*cl));
	if (!cl) {
		evutil_closesocket(fd);
		return;
	}
	cl->ctl = ctl;
	cl->bev = bufferevent_socket_new(ctl->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (!cl->bev) {
		evutil_closesocket(fd);
		free(cl);
		return;
	}
	bufferevent_setcb(cl->bev, client_read, client_write, client_event, cl);
	bufferevent_enable(cl->bev, EV_READ);
	cl->next = ctl->clients;
	if (ctl->clients)
		ctl->clients->prev = cl;
	ctl->clients = cl;
	ctl->nclients++;
}

/* Make the directory that holds path (its last level only, mode 0755:
 * /run/vproxy on a fresh boot). */
static void make_parent(const char *path)
{
	char dir[sizeof(((struct sockaddr_un *)0)->sun_path)];
	char *slash;

	snprintf(dir, sizeof(dir), "%s", path);
	slash = strrchr(dir, '/');
	if (!slash || slash == dir)
		return;
	*slash = '\0';
	if (mkdir(dir, 0755) < 0 && errno != EEXIST)
		vp_debug("control: cannot make %s: %s", dir, strerror(errno));
}

/* Is someone answering on path?  (A leftover file of a dead daemon is
 * not answered: connect() fails with ECONNREFUSED.) */
static bool path_answers(const struct sockaddr_un *sa)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool live;

	if (fd < 0)
		return false;
	live = connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) == 0;
	close(fd);
	return live;
}

struct vp_control *vp_control_open(struct vp_loop *loop, const char *path, char *err,
                                   size_t errlen)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct vp_control *ctl;
	mode_t old_mask;
	int fd, r;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		snprintf(err, errlen, "control socket %s: path longer than %zu bytes",
		         path, sizeof(sa.sun_path) - 1);
		return NULL;
	}
	memcpy(sa.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		snprintf(err, errlen, "control socket %s: %s", path, strerror(errno));
		return NULL;
	}
	make_parent(path); /* if it fails, bind() says why */
	/* 0600 from the start: no moment in which others may connect. */
	old_mask = umask(0177);
	r = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	if (r < 0 && errno == EADDRINUSE) {
		if (path_answers(&sa)) {
			umask(old_mask);
			close(fd);
			snprintf(err, errlen,
			         "control socket %s is in use: is another vproxyd "
			         "running?",
			         path);
			return NULL;
		}
		unlink(path);
		r = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	}
	umask(old_mask);
	if (r < 0 || listen(fd, 16) < 0) {
		snprintf(err, errlen, "control socket %s: %s", path, strerror(errno));
		close(fd);
		return NULL;
	}
	ctl = calloc(1, sizeof(*ctl));
	if (!ctl) {
		snprintf(err, errlen, "control socket %s: out of memory", path);
		goto fail;
	}
	ctl->base = vp_loop_base(loop);
	memcpy(ctl->path, path, strlen(path) + 1);
	ctl->lev = evconnlistener_new(ctl->base, on_accept, ctl, LEV_OPT_CLOSE_ON_FREE,
	                              -1, fd);
	if (!ctl->lev) {
		snprintf(err, errlen, "control socket %s: cannot listen", path);
		free(ctl);
		goto fail;
	}
	vp_info("control socket %s", path);
	return ctl;

fail:
	close(fd);
	unlink(path);
	return NULL;
}

void vp_control_set_bus(struct vp_control *ctl, struct vp_xsbus *bus,
                        const char *plugin_dir)
{
	ctl->bus = bus;
	ctl->plugin_dir = plugin_dir;
}

void vp_control_set_reload(struct vp_control *ctl, vp_control_reload_fn *fn, void *arg)
{
	ctl->reload = fn;
	ctl->reload_arg = arg;
}

void vp_control_close(struct vp_control *ctl)
{
	if (!ctl)
		return;
	while (ctl->clients)
		client_free(ctl->clients);
	evconnlistener_free(ctl->lev);
	unlink(ctl->path);
	free(ctl);
}
