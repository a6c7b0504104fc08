/* SPDX-License-Identifier: MIT */
/*
 * The composition root: one loop, one hypervisor layer, one xenstore bus,
 * the plugin host on the loop's base; signals and orderly shutdown.
 *
 * Shutdown: SIGTERM/SIGINT (or vp_server_stop) ends polling, tells the bus
 * to close every device and starts the grace timer.  The bus reports done
 * once every frontend closed, or the timer forces it to finish.  Disks
 * still opening or closing on the plugin host's helper threads are waited
 * for too: until the grace time is over (once more if the timer had to
 * force the bus, whose closes only start then); what is still running
 * then is logged as abandoned.  Then the loop stops and vp_server_run()
 * returns.
 */
#include "server.h"

#include <event2/event.h>
#include <signal.h>
#include <stdbool.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "control.h"
#include "hv.h"
#include "log.h"
#include "loop.h"
#include "metrics.h"
#include "notify.h"
#include "reload.h"
#include "plugin_host.h"

struct vp_server {
	struct vp_server_opts opts;
	struct vp_loop *loop;
	struct vp_hv *hv;
	struct vp_xsbus *bus;
	struct vp_control *control;
	struct vp_metrics *metrics;
	struct vp_notify *notify;
	struct event *sig_term, *sig_int, *sig_hup;
	struct event *grace_timer;
	bool stopping;
	bool bus_done;   /* every device closed (its disk maybe still closing) */
	bool bus_forced; /* the grace timer had to finish the bus */
};

/* Stop the loop once the bus is done and no disk opens or closes. */
static void maybe_stop(struct vp_server *srv)
{
	if (!srv->bus_done || vp_plugin_jobs_pending())
		return;
	evtimer_del(srv->grace_timer);
	vp_loop_stop(srv->loop);
}

static void arm_grace(struct vp_server *srv)
{
	struct timeval tv;

	tv.tv_sec = srv->opts.shutdown_grace_ms / 1000;
	tv.tv_usec = (srv->opts.shutdown_grace_ms % 1000) * 1000;
	evtimer_add(srv->grace_timer, &tv);
}

static void grace_cb(evutil_socket_t fd, short what, void *arg)
{
	struct vp_server *srv = arg;

	(void)fd;
	(void)what;
	if (!srv->bus_done) {
		vp_warn("frontends did not close within %u ms; closing anyway",
		        srv->opts.shutdown_grace_ms);
		srv->bus_forced = true;
		vp_xsbus_finish(srv->bus);
		if (!srv->bus_done || !vp_plugin_jobs_pending())
			return;
		/* Their disks' closes start only now: give them the grace. */
		arm_grace(srv);
		return;
	}
	vp_warn("%u disk open(s)/close(s) did not finish within %u ms; leaving them",
	        vp_plugin_jobs_pending(), srv->opts.shutdown_grace_ms);
	vp_plugin_report_pending();
	vp_loop_stop(srv->loop);
}

/* The bus closed every device. */
static void bus_done(void *opaque)
{
	struct vp_server *srv = opaque;

	srv->bus_done = true;
	if (vp_plugin_jobs_pending() && !srv->bus_forced)
		vp_info("waiting for %u disk open(s)/close(s) to finish",
		        vp_plugin_jobs_pending());
	maybe_stop(srv);
}

/* The plugin host finished its last pending open or close. */
static void plugin_idle(void *opaque)
{
	maybe_stop(opaque);
}

void vp_server_stop(struct vp_server *srv)
{
	if (srv->stopping)
		return;
	srv->stopping = true;
	vp_notify_stopping();
	vp_loop_no_polling(srv->loop);
	vp_info("shutting down: closing all devices");
	arm_grace(srv);
	vp_xsbus_begin_shutdown(srv->bus);
}

/* vproxyctl reload and SIGHUP. */
static int server_reload(void *arg, char *summary, size_t slen, char *err, size_t elen)
{
	struct vp_server *srv = arg;
	int rc;

	if (!srv->opts.reload) {
		snprintf(err, elen, "no configuration file to reload");
		return -ENOENT;
	}
	if (srv->stopping) {
		snprintf(err, elen, "vproxyd is shutting down");
		return -ESHUTDOWN;
	}
	vp_notify_reloading();
	rc = vp_reload(srv->bus, srv->opts.reload, summary, slen, err, elen);
	if (rc) {
		vp_err("reload refused, nothing changed: %s", err);
		vp_notify_ready("serving; the last reload was refused: %.200s", err);
	} else {
		vp_info("reloaded %s", summary);
		vp_notify_ready("serving; reloaded %.200s", summary);
	}
	return rc;
}

static void hup_cb(evutil_socket_t sig, short what, void *arg)
{
	char summary[768], err[512];

	(void)sig;
	(void)what;
	vp_info("received SIGHUP: reloading");
	server_reload(arg, summary, sizeof(summary), err, sizeof(err));
}

static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
	(void)what;
	vp_info("received %s", sig == SIGTERM ? "SIGTERM" : "SIGINT");
	vp_server_stop(arg);
}

struct vp_server *vp_server_new(const struct vp_server_opts *opts, char *err,
                                size_t errlen)
{
	struct vp_xsbus_params bp;
	struct event_base *base;
	struct vp_server *srv;

	srv = calloc(1, sizeof(*srv));
	if (!srv) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	srv->opts = *opts;
	srv->loop = vp_loop_new(opts->poll_us, opts->poll_adaptive);
	if (!srv->loop) {
		snprintf(err, errlen, "cannot create the event loop");
		goto fail;
	}
	base = vp_loop_base(srv->loop);
	vp_plugin_set_event_base(base);
	vp_plugin_set_idle_cb(plugin_idle, srv);
	srv->hv = vp_hv_open(opts->hypervisor, opts->run_dir);
	if (!srv->hv) {
		snprintf(err, errlen, "cannot open the %s hypervisor layer",
		         opts->hypervisor);
		goto fail;
	}
	srv->sig_term = evsignal_new(base, SIGTERM, signal_cb, srv);
	srv->sig_int = evsignal_new(base, SIGINT, signal_cb, srv);
	srv->sig_hup = evsignal_new(base, SIGHUP, hup_cb, srv);
	srv->grace_timer = evtimer_new(base, grace_cb, srv);
	if (vp_loop_set_evtchn(srv->loop, srv->hv) || !srv->sig_term || !srv->sig_int ||
	    !srv->grace_timer || !srv->sig_hup || event_add(srv->sig_term, NULL) ||
	    event_add(srv->sig_int, NULL) || event_add(srv->sig_hup, NULL)) {
		snprintf(err, errlen, "cannot register events");
		goto fail;
	}
	srv->notify = vp_notify_open(srv->loop);
	/* A guest that disappears mid-write must not kill us. */
	signal(SIGPIPE, SIG_IGN);
	/* Before xenstore: a second daemon stops here, having touched nothing. */
	if (opts->control_path) {
		srv->control = vp_control_open(srv->loop, opts->control_path, err, errlen);
		if (!srv->control)
			goto fail;
	}
	if (opts->metrics_host) {
		srv->metrics = vp_metrics_open(srv->loop, opts->metrics_host, opts->metrics_port,
		                               err, errlen);
		if (!srv->metrics)
			goto fail;
	}
	bp = (struct vp_xsbus_params){
	        .loop = srv->loop,
	        .hv = srv->hv,
	        .hypervisor = opts->hypervisor,
	        .backend_domid = opts->backend_domid,
	        .gmem_cache_bytes = opts->gmem_cache_bytes,
	        .decls = opts->decls,
	        .ndecls = opts->ndecls,
	        .done = bus_done,
	        .opaque = srv,
	};
	srv->bus = vp_xsbus_open(&bp, err, errlen);
	if (!srv->bus)
		goto fail;
	if (srv->control) {
		vp_control_set_bus(srv->control, srv->bus, opts->plugin_dir);
		vp_control_set_reload(srv->control, server_reload, srv);
	}
	if (srv->metrics)
		vp_metrics_set_bus(srv->metrics, srv->bus);
	return srv;
fail:
	vp_server_free(srv);
	return NULL;
}

int vp_server_run(struct vp_server *srv)
{
	vp_notify_ready("serving %zu declared device(s)", srv->opts.ndecls);
	return vp_loop_run(srv->loop);
}

struct vp_loop *vp_server_loop(struct vp_server *srv)
{
	return srv->loop;
}

void vp_server_free(struct vp_server *srv)
{
	if (!srv)
		return;
	vp_control_close(srv->control);
	vp_metrics_close(srv->metrics);
	vp_notify_close(srv->notify);
	if (srv->bus)
		vp_xsbus_close(srv->bus);
	if (srv->sig_term)
		event_free(srv->sig_term);
	if (srv->sig_int)
		event_free(srv->sig_int);
	if (srv->sig_hup)
		event_free(srv->sig_hup);
	if (srv->grace_timer)
		event_free(srv->grace_timer);
	vp_plugin_set_idle_cb(NULL, NULL);
	vp_plugin_set_event_base(NULL);
	/* The loop's event channel watch goes before the layer it watches. */
	vp_loop_free(srv->loop);
	if (srv->hv)
		srv->hv->ops->close(srv->hv);
	free(srv);
}
