/* SPDX-License-Identifier: MIT */
/* libxenstore behind the stub's platform interface, and the other pieces
 * the Linux platforms share (see xs_linux.h). */
#include "xs_linux.h"

#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <xenstore.h>

struct vps_watch {
	struct xs_handle *xs; /* a connection of its own */
	char *path;
	char token[32];
};

int vps_xs_open(struct vps_xs *x)
{
	x->watch_seq = 0;
	x->xs = xs_open(0);
	if (!x->xs)
		return errno ? -errno : -EIO;
	return 0;
}

void vps_xs_close(struct vps_xs *x)
{
	if (x->xs)
		xs_close(x->xs);
	x->xs = NULL;
}

static int lx_read(void *ctx, uint32_t tx, const char *path, char *buf, size_t len)
{
	struct vps_xs *x = ctx;
	unsigned vlen;
	char *v;

	v = xs_read(x->xs, tx, path, &vlen);
	if (!v)
		return errno ? -errno : -EIO;
	if (len) {
		size_t c = vlen < len - 1 ? vlen : len - 1;

		memcpy(buf, v, c);
		buf[c] = '\0';
	}
	free(v);
	return vlen > INT32_MAX ? INT32_MAX : (int)vlen;
}

static int lx_write(void *ctx, uint32_t tx, const char *path, const char *value)
{
	struct vps_xs *x = ctx;

	if (!xs_write(x->xs, tx, path, value, (unsigned)strlen(value)))
		return errno ? -errno : -EIO;
	return 0;
}

/* Names NUL-separated into buf; their count, or -ENOSPC. */
static int lx_list(void *ctx, const char *path, char *buf, size_t len)
{
	struct vps_xs *x = ctx;
	unsigned num;
	size_t used = 0;
	char **names;
	int r;

	names = xs_directory(x->xs, XBT_NULL, path, &num);
	if (!names)
		return errno ? -errno : -EIO;
	r = (int)num;
	for (unsigned i = 0; i < num; i++) {
		size_t l = strlen(names[i]) + 1;

		if (used + l > len) {
			r = -ENOSPC;
			break;
		}
		memcpy(buf + used, names[i], l);
		used += l;
	}
	free(names);
	return r;
}

static int lx_tx_begin(void *ctx, uint32_t *tx)
{
	struct vps_xs *x = ctx;
	xs_transaction_t t = xs_transaction_start(x->xs);

	if (t == XBT_NULL)
		return errno ? -errno : -EIO;
	*tx = t;
	return 0;
}

static int lx_tx_end(void *ctx, uint32_t tx, int abort_tx)
{
	struct vps_xs *x = ctx;

	if (!xs_transaction_end(x->xs, tx, abort_tx != 0))
		return errno ? -errno : -EIO;
	return 0;
}

static int lx_watch(void *ctx, const char *path, struct vps_watch **out)
{
	struct vps_xs *x = ctx;
	struct vps_watch *w;
	int err;

	w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->path = strdup(path);
	w->xs = xs_open(0);
	if (!w->path || !w->xs) {
		err = errno ? -errno : -EIO;
		goto fail;
	}
	snprintf(w->token, sizeof(w->token), "vps%u",
	         __atomic_fetch_add(&x->watch_seq, 1, __ATOMIC_RELAXED));
	/* The fd exists before the first event so none is missed. */
	if (xs_fileno(w->xs) < 0 || !xs_watch(w->xs, path, w->token)) {
		err = errno ? -errno : -EIO;
		goto fail;
	}
	*out = w;
	return 0;
fail:
	if (w->xs)
		xs_close(w->xs);
	free(w->path);
	free(w);
	return err;
}

static void lx_unwatch(void *ctx, struct vps_watch *w)
{
	(void)ctx;
	if (!w)
		return;
	xs_unwatch(w->xs, w->path, w->token);
	xs_close(w->xs);
	free(w->path);
	free(w);
}

void vps_xs_fill_ops(struct vps_platform *plat)
{
	plat->xs_read = lx_read;
	plat->xs_write = lx_write;
	plat->xs_list = lx_list;
	plat->xs_tx_begin = lx_tx_begin;
	plat->xs_tx_end = lx_tx_end;
	plat->xs_watch = lx_watch;
	plat->xs_unwatch = lx_unwatch;
}

int vps_watch_fd(const struct vps_watch *w)
{
	return xs_fileno(w->xs);
}

void vps_watch_drain(struct vps_watch *w)
{
	char **ev;

	while ((ev = xs_check_watch(w->xs)) != NULL)
		free(ev);
}

uint64_t vps_linux_now_ns(void *ctx)
{
	struct timespec ts;

	(void)ctx;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void vps_linux_log(const char *prog, enum vps_log_level max,
                   enum vps_log_level level, const char *msg)
{
	static const char *const names[] = {"error", "warn", "info", "debug"};

	if (level > max)
		return;
	fprintf(stderr, "%s[%d]: %s: %s\n", prog, (int)getpid(), names[level], msg);
}

int vps_linux_poll(int fd, struct vps_watch *w, uint64_t timeout_ns)
{
	struct pollfd fds[2];
	struct timespec ts = {.tv_sec = (time_t)(timeout_ns / 1000000000u),
	                      .tv_nsec = (long)(timeout_ns % 1000000000u)};
	int n = 0, e_slot = -1, w_slot = -1, mask = 0;

	if (fd >= 0) {
		fds[n] = (struct pollfd){.fd = fd, .events = POLLIN};
		e_slot = n++;
	}
	if (w) {
		fds[n] = (struct pollfd){.fd = vps_watch_fd(w), .events = POLLIN};
		w_slot = n++;
	}
	if (timeout_ns / 1000000000u > (uint64_t)INT32_MAX)
		ts.tv_sec = INT32_MAX;
	if (ppoll(fds, (nfds_t)n, &ts, NULL) < 0)
		return errno == EINTR ? 0 : -errno;
	if (e_slot >= 0 && (fds[e_slot].revents & POLLIN))
		mask |= VPS_WAKE_EVTCHN;
	if (w_slot >= 0 && fds[w_slot].revents)
		mask |= VPS_WAKE_WATCH;
	return mask;
}
