/* The server's event loop: signals, event channel dispatch, shutdown. */
#include <errno.h>
#include <event2/event.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hv.h"
#include "plugin_host.h"
#include "server.h"

struct vp_server {
	struct vp_server_opts opts;
	struct event_base *base;
	struct event *sig_term, *sig_int;
	struct event *evtchn_ev;
	struct event *grace_timer;
	struct vp_hv *hv;
	struct vp_xsbus *bus;
	struct vp_device **ports; /* local port -> device */
	size_t nports;
	bool stopping;
	uint64_t kicks;              /* event channel events handled, for polling */
	struct vp_poller *pollers;   /* polled while the loop spins */
	struct vp_poller *poll_next; /* the one run_pollers() calls next */
};

static void stop_pollers(struct vp_server *srv);

struct event_base *vp_server_base(struct vp_server *srv)
{
	return srv->base;
}

struct vp_hv *vp_server_hv(struct vp_server *srv)
{
	return srv->hv;
}

const struct vp_server_opts *vp_server_opts(struct vp_server *srv)
{
	return &srv->opts;
}

bool vp_server_stopping(struct vp_server *srv)
{
	return srv->stopping;
}

int vp_server_set_port(struct vp_server *srv, int port, struct vp_device *dev)
{
	if (port < 0)
		return -EINVAL;
	if ((size_t)port >= srv->nports) {
		size_t n = srv->nports ? srv->nports : 64;
		struct vp_device **p;

		if (!dev)
			return 0;
		while (n <= (size_t)port)
			n *= 2;
		p = realloc(srv->ports, n * sizeof(*p));
		if (!p)
			return -ENOMEM;
		memset(p + srv->nports, 0, (n - srv->nports) * sizeof(*p));
		srv->ports = p;
		srv->nports = n;
	}
	srv->ports[port] = dev;
	return 0;
}

/* Every port shares one fd: drain all pending ports per wake-up. */
static void evtchn_cb(evutil_socket_t fd, short what, void *arg)
{
	struct vp_server *srv = arg;
	int port;

	(void)fd;
	(void)what;
	while ((port = srv->hv->ops->evtchn_pending(srv->hv)) >= 0) {
		struct vp_device *dev = NULL;

		if ((size_t)port < srv->nports)
			dev = srv->ports[port];
		srv->hv->ops->evtchn_unmask(srv->hv, port);
		srv->kicks++;
		if (dev)
			vp_xsbus_device_kick(dev);
	}
}

static void grace_cb(evutil_socket_t fd, short what, void *arg)
{
	struct vp_server *srv = arg;

	(void)fd;
	(void)what;
	vp_warn("frontends did not close within %u ms; closing anyway",
		srv->opts.shutdown_grace_ms);
	vp_xsbus_finish(srv->bus);
}

void vp_server_shutdown_done(struct vp_server *srv)
{
	event_base_loopexit(srv->base, NULL);
}

void vp_server_stop(struct vp_server *srv)
{
	struct timeval tv;

	if (srv->stopping)
		return;
	srv->stopping = true;
	stop_pollers(srv);
	vp_info("shutting down: closing all devices");
	tv.tv_sec = srv->opts.shutdown_grace_ms / 1000;
	tv.tv_usec = (srv->opts.shutdown_grace_ms % 1000) * 1000;
	evtimer_add(srv->grace_timer, &tv);
	vp_xsbus_begin_shutdown(srv->bus);
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
	struct vp_server *srv;

	srv = calloc(1, sizeof(*srv));
	if (!srv) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	srv->opts = *opts;
	srv->base = event_base_new();
	if (!srv->base) {
		snprintf(err, errlen, "cannot create the event loop");
		goto fail;
	}
	vp_plugin_set_event_base(srv->base);
	srv->hv = vp_hv_open(opts->hypervisor, opts->run_dir);
	if (!srv->hv) {
		snprintf(err, errlen, "cannot open the %s hypervisor layer",
			 opts->hypervisor);
		goto fail;
	}
	srv->evtchn_ev = event_new(srv->base, srv->hv->ops->evtchn_fd(srv->hv),
				   EV_READ | EV_PERSIST, evtchn_cb, srv);
	srv->sig_term = evsignal_new(srv->base, SIGTERM, signal_cb, srv);
	srv->sig_int = evsignal_new(srv->base, SIGINT, signal_cb, srv);
	srv->grace_timer = evtimer_new(srv->base, grace_cb, srv);
	if (!srv->evtchn_ev || !srv->sig_term || !srv->sig_int || !srv->grace_timer ||
	    event_add(srv->evtchn_ev, NULL) || event_add(srv->sig_term, NULL) ||
	    event_add(srv->sig_int, NULL)) {
		snprintf(err, errlen, "cannot register events");
		goto fail;
	}
	/* A guest that disappears mid-write must not kill us. */
	signal(SIGPIPE, SIG_IGN);
	srv->bus = vp_xsbus_open(srv, err, errlen);
	if (!srv->bus)
		goto fail;
	return srv;
fail:
	vp_server_free(srv);
	return NULL;
}

bool vp_server_poller_add(struct vp_server *srv, struct vp_poller *p)
{
	if (!srv || !srv->opts.poll_us || srv->stopping)
		return false;
	if (!p->queued) {
		p->next = srv->pollers;
		srv->pollers = p;
		p->queued = true;
	}
	return true;
}

void vp_server_poller_remove(struct vp_server *srv, struct vp_poller *p)
{
	struct vp_poller **pp;

	if (!srv || !p->queued)
		return;
	for (pp = &srv->pollers; *pp; pp = &(*pp)->next) {
		if (*pp == p) {
			*pp = p->next;
			break;
		}
	}
	if (srv->poll_next == p)
		srv->poll_next = p->next;
	p->queued = false;
	p->next = NULL;
}

/* Call every poller once; true if one found work.  A poller may add or
 * remove pollers (itself included) while it runs. */
static bool run_pollers(struct vp_server *srv)
{
	bool worked = false;

	srv->poll_next = srv->pollers;
	while (srv->poll_next) {
		struct vp_poller *p = srv->poll_next;

		srv->poll_next = p->next;
		worked |= p->poll(p);
	}
	return worked;
}

/* The spin is over: every poller asks for notifications again. */
static void stop_pollers(struct vp_server *srv)
{
	while (srv->pollers) {
		struct vp_poller *p = srv->pollers;

		srv->pollers = p->next;
		p->queued = false;
		p->next = NULL;
		p->stop(p);
	}
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/*
 * With poll-us set, every wake-up that handled guest events is followed by
 * a bounded spell of non-blocking polls: a guest that kicks again soon is
 * served without the cost of a sleep and a wake-up (tens of microseconds
 * on virtual machines).  The spell ends poll-us after the last event, so an
 * idle server sleeps and uses no CPU.
 */
int vp_server_run(struct vp_server *srv)
{
	const uint64_t poll_ns = (uint64_t)srv->opts.poll_us * 1000u;

	if (!poll_ns)
		return event_base_dispatch(srv->base) < 0 ? -EIO : 0;
	while (!event_base_got_exit(srv->base) && !event_base_got_break(srv->base)) {
		uint64_t seen = srv->kicks, deadline;

		if (event_base_loop(srv->base, EVLOOP_ONCE) < 0)
			return -EIO;
		if (srv->kicks == seen && !srv->pollers)
			continue;
		deadline = now_ns() + poll_ns;
		while (!event_base_got_exit(srv->base) && now_ns() < deadline) {
			bool worked;

			seen = srv->kicks;
			if (event_base_loop(srv->base, EVLOOP_NONBLOCK) < 0)
				return -EIO;
			worked = run_pollers(srv);
			if (srv->kicks != seen || worked)
				deadline = now_ns() + poll_ns;
		}
		stop_pollers(srv);
	}
	stop_pollers(srv);
	return 0;
}

void vp_server_free(struct vp_server *srv)
{
	if (!srv)
		return;
	if (srv->bus)
		vp_xsbus_close(srv->bus);
	if (srv->evtchn_ev)
		event_free(srv->evtchn_ev);
	if (srv->sig_term)
		event_free(srv->sig_term);
	if (srv->sig_int)
		event_free(srv->sig_int);
	if (srv->grace_timer)
		event_free(srv->grace_timer);
	if (srv->hv)
		srv->hv->ops->close(srv->hv);
	if (srv->base)
		event_base_free(srv->base);
	free(srv->ports);
	free(srv);
}
