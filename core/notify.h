/* SPDX-License-Identifier: MIT */
/*
 * Telling the service manager (systemd, Type=notify) what vproxyd is
 * doing: ready, reloading, stopping, a status line, and the watchdog.
 * Does nothing when not started by one.  See notify.c.
 */
#ifndef VP_NOTIFY_H
#define VP_NOTIFY_H

struct vp_loop;
struct vp_notify;

/* Start the watchdog timer on loop if the service manager asked for one.
 * NULL only when out of memory (then nothing is sent periodically). */
struct vp_notify *vp_notify_open(struct vp_loop *loop);
/* READY=1 with a status line. */
void vp_notify_ready(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void vp_notify_status(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* RELOADING=1; vp_notify_ready() ends the reload. */
void vp_notify_reloading(void);
/* STOPPING=1. */
void vp_notify_stopping(void);
void vp_notify_close(struct vp_notify *n);

#endif
