/* SPDX-License-Identifier: MIT */
/*
 * The service manager's notification protocol through libsystemd's
 * sd_notify(): READY=1 once serving, STATUS= lines, RELOADING=1 and READY=1
 * around a reload, STOPPING=1 at shutdown, and WATCHDOG=1 from a timer on
 * the event loop, so a loop that hangs stops sending and systemd restarts
 * the daemon.  Without NOTIFY_SOCKET (not under systemd, or Type=simple)
 * every call does nothing.
 */
#include "notify.h"

#include <event2/event.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <systemd/sd-daemon.h>

#include "log.h"
#include "loop.h"

struct vp_notify {
	struct event *watchdog;
};

static void send_state(const char *state)
{
	int r = sd_notify(0, state);

	if (r < 0)
		vp_warn("service manager notification failed: %d", r);
}

static void watchdog_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	send_state("WATCHDOG=1");
}

struct vp_notify *vp_notify_open(struct vp_loop *loop)
{
	struct vp_notify *n = calloc(1, sizeof(*n));
	uint64_t usec = 0;

	if (!n)
		return NULL;
	/* > 0 only when systemd set WatchdogSec= for us (and the pid is ours). */
	if (sd_watchdog_enabled(0, &usec) > 0 && usec > 0) {
		/* Twice per period, as sd_watchdog_enabled(3) advises. */
		struct timeval tv = {(time_t)(usec / 2 / 1000000),
		                     (long)(usec / 2 % 1000000)};

		n->watchdog =
		        event_new(vp_loop_base(loop), -1, EV_PERSIST, watchdog_cb, n);
		if (!n->watchdog || event_add(n->watchdog, &tv) < 0) {
			vp_warn("cannot start the watchdog timer");
		} else {
			vp_info("service manager watchdog every %llu ms",
			        (unsigned long long)(usec / 2000));
		}
	}
	return n;
}

/* Send head followed by the formatted status line. */
static void send_status(const char *head, const char *fmt, va_list ap)
{
	char line[320];
	int len = snprintf(line, sizeof(line), "%sSTATUS=", head);

	vsnprintf(line + len, sizeof(line) - (size_t)len, fmt, ap);
	send_state(line);
}

void vp_notify_ready(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	send_status("READY=1\n", fmt, ap);
	va_end(ap);
}

void vp_notify_status(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	send_status("", fmt, ap);
	va_end(ap);
}

void vp_notify_reloading(void)
{
	send_state("RELOADING=1");
}

void vp_notify_stopping(void)
{
	send_state("STOPPING=1\nSTATUS=shutting down: closing all devices");
}

void vp_notify_close(struct vp_notify *n)
{
	if (!n)
		return;
	if (n->watchdog)
		event_free(n->watchdog);
	free(n);
}
