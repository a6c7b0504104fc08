/* SPDX-License-Identifier: MIT */
/*
 * Reload: the file is read and checked whole (plugins loaded, their keys
 * checked) before anything changes, so a file with an error changes
 * nothing.  Then its devices are compared with the declarations the bus
 * holds from the file, by label: gone ones are detached gracefully, new
 * ones attached, ones with other keys replaced (detached, then attached
 * again once gone: xsbus.c), equal ones not touched at all, so their
 * guests see no pause.  Declarations borrow their strings from the
 * configuration that made them; a reloaded configuration is freed when
 * the last declaration that borrows from it goes (a count).
 */
#include "reload.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "log.h"
#include "plugin_host.h"
#include "xsbus.h"

/* A reloaded configuration and the declarations borrowing from it. */
struct cfg_ref {
	struct vp_config *cfg;
	unsigned refs;
};

static void cfg_unref(void *owner)
{
	struct cfg_ref *r = owner;

	if (--r->refs == 0) {
		vp_config_free(r->cfg);
		free(r);
	}
}

struct current {
	const struct vp_devdecl *decl;
	bool from_file, removing;
};

struct snapshot {
	struct current *v;
	size_t n, cap;
	bool oom;
};

static void take(void *arg, const struct vp_devdecl *decl, bool from_file, bool removing)
{
	struct snapshot *s = arg;

	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 32;
		struct current *nv = realloc(s->v, cap * sizeof(*nv));

		if (!nv) {
			s->oom = true;
			return;
		}
		s->v = nv;
		s->cap = cap;
	}
	s->v[s->n++] = (struct current){decl, from_file, removing};
}

static bool str_eq(const char *a, const char *b)
{
	return a == b || (a && b && strcmp(a, b) == 0);
}

static bool decl_equal(const struct vp_devdecl *a, const struct vp_devdecl *b)
{
	return str_eq(a->guest, b->guest) && a->guest_domid == b->guest_domid &&
	       a->devid == b->devid && a->plugin == b->plugin &&
	       a->read_only == b->read_only && a->queues == b->queues &&
	       a->queue_size == b->queue_size && str_eq(a->serial, b->serial) &&
	       a->request_timeout_ms == b->request_timeout_ms &&
	       vp_params_equal(a->params, b->params);
}

static const struct current *find(const struct snapshot *s, const char *label)
{
	for (size_t i = 0; i < s->n; i++)
		if (strcmp(s->v[i].decl->label, label) == 0)
			return &s->v[i];
	return NULL;
}

/* Append ", what" to buf (at most len). */
static void note(char *buf, size_t len, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

static void note(char *buf, size_t len, const char *fmt, ...)
{
	size_t used = strlen(buf);
	va_list ap;

	if (used + 1 >= len)
		return;
	va_start(ap, fmt);
	vsnprintf(buf + used, len - used, fmt, ap);
	va_end(ap);
}

/* The [vproxyd] keys whose new value needs a restart, as ", key" each. */
static void restart_keys(const struct vp_config *c, const struct vp_reload_opts *o,
                         char *buf, size_t len)
{
	if (strcmp(c->hypervisor, o->hypervisor) != 0)
		note(buf, len, " hypervisor");
	if (!str_eq(c->run_dir, o->run_dir))
		note(buf, len, " run-dir");
	if (!str_eq(c->control_socket, o->control_socket))
		note(buf, len, " control-socket");
	if (!str_eq(c->metrics_host, o->metrics_host) ||
	    (c->metrics_host && c->metrics_port != o->metrics_port))
		note(buf, len, " metrics-listen");
	if (c->backend_domid != o->backend_domid)
		note(buf, len, " backend-domid");
	if (c->poll_auto != o->poll_auto || (!c->poll_auto && c->poll_us != o->poll_us) ||
	    c->poll_max_us != o->poll_max_us)
		note(buf, len, " poll-us/poll-max-us");
}

int vp_reload(struct vp_xsbus *bus, const struct vp_reload_opts *o, char *summary,
              size_t slen, char *err, size_t elen)
{
	struct snapshot cur = {0};
	struct vp_config *cfg = NULL;
	struct cfg_ref *ref;
	unsigned added = 0, removed = 0, replaced = 0, same = 0;
	enum { SAME, ADD, REPLACE } * action;
	char **gone_labels;
	size_t ngone = 0;
	char problems[512] = "", restart[160] = "";
	int rc;

	rc = vp_config_load(o->config_path, &cfg, err, elen);
	if (rc)
		return rc;
	if ((o->plugin_dir && vp_config_set_plugin_dir(cfg, o->plugin_dir)) ||
	    vp_config_check_plugins(cfg, err, elen)) {
		vp_config_free(cfg);
		return -EINVAL;
	}
	ref = calloc(1, sizeof(*ref));
	vp_xsbus_foreach_decl(bus, take, &cur);
	if (!ref || cur.oom) {
		snprintf(err, elen, "%s: out of memory", o->config_path);
		free(ref);
		free(cur.v);
		vp_config_free(cfg);
		return -ENOMEM;
	}
	/* Conflicts with what the file does not own: refused before any
	 * change, as a file error would be. */
	for (size_t i = 0; i < cfg->n_devices; i++) {
		const struct vp_config_device *d = &cfg->devices[i];
		const struct current *c = find(&cur, d->label);

		if (c && !c->from_file) {
			snprintf(err, elen,
			         "%s:%d: device %s: attached at runtime (vproxyctl "
			         "attach); "
			         "detach it before the file declares it",
			         o->config_path, d->line, d->label);
			rc = -EEXIST;
			break;
		}
		if (c && c->removing) {
			snprintf(err, elen,
			         "%s:%d: device %s: still detaching; reload once it is "
			         "gone",
			         o->config_path, d->line, d->label);
			rc = -EBUSY;
			break;
		}
	}
	if (rc) {
		free(ref);
		free(cur.v);
		vp_config_free(cfg);
		return rc;
	}
	ref->cfg = cfg;
	ref->refs = 1; /* ours, until the end */

	/* Decide everything while every declaration is still there: applying
	 * may free the ones it replaces or detaches. */
	action = calloc(cfg->n_devices ? cfg->n_devices : 1, sizeof(*action));
	gone_labels = calloc(cur.n ? cur.n : 1, sizeof(*gone_labels));
	if (!action || !gone_labels) {
		snprintf(err, elen, "%s: out of memory", o->config_path);
		free(action);
		free(gone_labels);
		free(cur.v);
		cfg_unref(ref);
		return -ENOMEM;
	}
	for (size_t i = 0; i < cfg->n_devices; i++) {
		const struct current *c = find(&cur, cfg->devices[i].label);
		struct vp_devdecl decl;

		vp_devdecl_from_config(&decl, &cfg->devices[i]);
		action[i] = !c ? ADD : decl_equal(c->decl, &decl) ? SAME : REPLACE;
	}
	for (size_t i = 0; i < cur.n; i++) {
		const struct current *c = &cur.v[i];
		bool found = false;

		if (!c->from_file || c->removing)
			continue;
		for (size_t k = 0; k < cfg->n_devices && !found; k++)
			found = strcmp(cfg->devices[k].label, c->decl->label) == 0;
		if (!found && !(gone_labels[ngone++] = strdup(c->decl->label))) {
			ngone--;
			note(problems, sizeof(problems), "; out of memory");
		}
	}
	free(cur.v);

	/* Gone from the file: detach. */
	for (size_t i = 0; i < ngone; i++) {
		char e[160];
		bool gone;

		if (vp_xsbus_detach(bus, gone_labels[i], false, &gone, e, sizeof(e)) == 0)
			removed++;
		else
			note(problems, sizeof(problems), "; %s", e);
		free(gone_labels[i]);
	}
	free(gone_labels);
	/* New or changed. */
	for (size_t i = 0; i < cfg->n_devices; i++) {
		const struct vp_config_device *d = &cfg->devices[i];
		struct vp_devdecl decl;
		char e[200];

		if (action[i] == SAME) {
			same++;
			continue;
		}
		vp_devdecl_from_config(&decl, d);
		ref->refs++;
		rc = action[i] == REPLACE
		             ? vp_xsbus_replace(bus, &decl, cfg_unref, ref, e, sizeof(e))
		             : vp_xsbus_attach(bus, &decl, true, cfg_unref, ref, e,
		                               sizeof(e));
		if (rc < 0) {
			ref->refs--;
			note(problems, sizeof(problems), "; [device %s]: %s", d->label,
			     e);
			continue;
		}
		if (action[i] == REPLACE)
			replaced++;
		else
			added++;
	}
	free(action);
	if (!o->log_level_fixed && cfg->log_level != vp_log_get_level()) {
		vp_info("reload: log level %s", vp_log_level_name(cfg->log_level));
		vp_log_set_level(cfg->log_level);
	}
	restart_keys(cfg, o, restart, sizeof(restart));
	snprintf(summary, slen,
	         "%s: %u attached, %u detached, %u changed (detached, then attached "
	         "again), "
	         "%u unchanged%s%s%s%s",
	         o->config_path, added, removed, replaced, same, problems,
	         restart[0] ? "; these [vproxyd] keys changed and need a restart:" : "",
	         restart, "");
	cfg_unref(ref);
	return 0;
}
