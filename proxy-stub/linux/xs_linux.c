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
#include <sys/eventfd.h>
#include <unistd.h>
#include <xenstore.h>

/*
 * One xenstore connection per platform carries every watch: a guest with
 * many devices costs xenstored one connection, not one per watch (C
 * xenstored scans all its connections on every request).  libxenstore
 * queues the watch events of all tokens behind one fd (xs_fileno); each
 * watch has an eventfd of its own that whoever reads the queue signals
 * for the events with its token, so a waiter on one watch never takes
 * another's event or misses its own.
 */
struct vps_watch {
	struct vps_xs *x;
	char *path;
	char token[32];
	int efd;                /* readable while an event waits for its waiter */
	struct vps_watch *next; /* in vps_xs.watches */
};

int vps_xs_open(struct vps_xs *x)
{
	x->watch_seq = 0;
	x->watches = NULL;
	x->xs = xs_open(0);
	if (!x->xs)
		return errno ? -errno : -EIO;
	pthread_mutex_init(&x->lock, NULL);
	return 0;
}

void vps_xs_close(struct vps_xs *x)
{
	if (!x->xs)
		return;
	xs_close(x->xs);
	x->xs = NULL;
	pthread_mutex_destroy(&x->lock);
}

/* Hand every queued watch event to its watch. */
static void xs_dispatch(struct vps_xs *x)
{
	char **ev;

	pthread_mutex_lock(&x->lock);
	while ((ev = xs_check_watch(x->xs)) != NULL) {
		for (struct vps_watch *w = x->watches; w; w = w->next) {
			if (strcmp(w->token, ev[XS_WATCH_TOKEN]) == 0) {
				uint64_t one = 1;

				/* Fails only if the counter is full: it is
				 * readable then anyway. */
				if (write(w->efd, &one, sizeof(one)) < 0)
					(void)0;
				break;
			}
		}
		/* No such watch: it was removed with events still queued. */
		free(ev);
	}
	pthread_mutex_unlock(&x->lock);
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

static void lx_unlink(struct vps_xs *x, struct vps_watch *w)
{
	pthread_mutex_lock(&x->lock);
	for (struct vps_watch **pp = &x->watches; *pp; pp = &(*pp)->next) {
		if (*pp == w) {
			*pp = w->next;
			break;
		}
	}
	pthread_mutex_unlock(&x->lock);
}

static int lx_watch(void *ctx, const char *path, struct vps_watch **out)
{
	struct vps_xs *x = ctx;
	struct vps_watch *w;
	int err;

	w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->x = x;
	w->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	w->path = strdup(path);
	if (!w->path || w->efd < 0) {
		err = errno ? -errno : -ENOMEM;
		goto fail;
	}
	snprintf(w->token, sizeof(w->token), "vps%u",
	         __atomic_fetch_add(&x->watch_seq, 1, __ATOMIC_RELAXED));
	/* The queue's fd exists before the first event so none is missed,
	 * and the watch is listed before it can fire. */
	if (xs_fileno(x->xs) < 0) {
		err = errno ? -errno : -EIO;
		goto fail;
	}
	pthread_mutex_lock(&x->lock);
	w->next = x->watches;
	x->watches = w;
	pthread_mutex_unlock(&x->lock);
	if (!xs_watch(x->xs, path, w->token)) {
		err = errno ? -errno : -EIO;
		lx_unlink(x, w);
		goto fail;
	}
	*out = w;
	return 0;
fail:
	if (w->efd >= 0)
		close(w->efd);
	free(w->path);
	free(w);
	return err;
}

static void lx_unwatch(void *ctx, struct vps_watch *w)
{
	struct vps_xs *x = ctx;

	if (!w)
		return;
	xs_unwatch(x->xs, w->path, w->token);
	lx_unlink(x, w);
	close(w->efd);
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

void vps_watch_drain(struct vps_watch *w)
{
	uint64_t v;

	if (read(w->efd, &v, sizeof(v)) < 0)
		return; /* EAGAIN: nothing pending */
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
	uint64_t deadline = vps_linux_now_ns(NULL) + timeout_ns;

	if (timeout_ns > UINT64_MAX / 2)
		deadline = UINT64_MAX;
	for (;;) {
		struct pollfd fds[3];
		uint64_t left, now;
		struct timespec ts;
		int n = 0, e_slot = -1, w_slot = -1, q_slot = -1, mask = 0;

		if (fd >= 0) {
			fds[n] = (struct pollfd){.fd = fd, .events = POLLIN};
			e_slot = n++;
		}
		if (w) {
			fds[n] = (struct pollfd){.fd = w->efd, .events = POLLIN};
			w_slot = n++;
			/* The connection's queue: whoever waits reads it. */
			fds[n] = (struct pollfd){.fd = xs_fileno(w->x->xs), .events = POLLIN};
			q_slot = n++;
		}
		now = vps_linux_now_ns(NULL);
		left = deadline > now ? deadline - now : 0;
		ts.tv_sec = left / 1000000000u > (uint64_t)INT32_MAX
		                    ? INT32_MAX
		                    : (time_t)(left / 1000000000u);
		ts.tv_nsec = (long)(left % 1000000000u);
		if (ppoll(fds, (nfds_t)n, &ts, NULL) < 0)
			return errno == EINTR ? 0 : -errno;
		if (e_slot >= 0 && (fds[e_slot].revents & POLLIN))
			mask |= VPS_WAKE_EVTCHN;
		if (w_slot >= 0 && fds[w_slot].revents)
			mask |= VPS_WAKE_WATCH;
		if (q_slot >= 0 && (fds[q_slot].revents & (POLLERR | POLLNVAL)))
			return -EPIPE; /* the connection's queue is gone */
		if (q_slot >= 0 && fds[q_slot].revents) {
			struct pollfd mine = {.fd = w->efd, .events = POLLIN};

			xs_dispatch(w->x);
			if (poll(&mine, 1, 0) > 0)
				mask |= VPS_WAKE_WATCH;
		}
		/* Only other watches' events: keep waiting. */
		if (mask || vps_linux_now_ns(NULL) >= deadline)
			return mask;
	}
}
