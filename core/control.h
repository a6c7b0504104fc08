/* SPDX-License-Identifier: MIT */
/*
 * The control socket: a unix stream socket on which vproxyctl, or any
 * client, sends one JSON request per line and reads one JSON reply per
 * line (docs/CONTROL.md).  See control.c.
 */
#ifndef VP_CONTROL_H
#define VP_CONTROL_H

#include <stddef.h>

struct vp_loop;
struct vp_xsbus;
struct vp_control;

/* Limits a client cannot pass: a longer request line gets an error reply
 * and the connection closes; a client that lets this many reply bytes
 * pile up unread is disconnected; clients past the last are refused. */
#define VP_CONTROL_MAX_REQUEST 65536u
#define VP_CONTROL_MAX_PENDING (4u << 20)
#define VP_CONTROL_MAX_CLIENTS 32u

/* Listen on path (mode 0600).  A socket file nobody listens on is
 * replaced; one another process answers on is not ("in use").  NULL and
 * a message in err on failure. */
struct vp_control *vp_control_open(struct vp_loop *loop, const char *path, char *err,
                                   size_t errlen);
/* The devices the commands show and change, and where attach finds
 * plugins; until set, commands answer that the daemon is starting. */
void vp_control_set_bus(struct vp_control *c, struct vp_xsbus *bus, const char *plugin_dir);
/* What "reload" runs: 0 and a summary, or -errno and the error. */
typedef int vp_control_reload_fn(void *arg, char *summary, size_t slen, char *err, size_t elen);
void vp_control_set_reload(struct vp_control *c, vp_control_reload_fn *fn, void *arg);
/* Stop listening, drop every client, remove the socket file. */
void vp_control_close(struct vp_control *c);

#endif
