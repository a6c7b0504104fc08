/* SPDX-License-Identifier: MIT */
/*
 * The "slow" test plugin: a RAM disk whose every request completes
 * delay-ms after it was submitted, from a timerfd in the server's loop,
 * as a slow network disk would.  Reads copy the disk into the guest's
 * buffers only at completion, so a test can tell whether a device let a
 * request write guest memory after it said it would not (virtio reset,
 * detach, a dead guest).  With cancel = yes it implements cancel():
 * cancelled requests complete at once with -ECANCELED and touch nothing.
 *
 * Parameters: size (default 16M), delay-ms (default 500), cancel (yes|no,
 * default no).  Never built into the installed plugin directory.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>
#define VPROXY_PLUGIN_ABI 2
#include <vproxy/plugin.h>

struct slow_req {
	struct vproxy_req *req;
	uint64_t due_ns;
	bool cancelled;
	struct slow_req *next;
};

struct slow_disk {
	uint8_t *data;
	uint64_t size;
	uint64_t delay_ns;
	bool can_cancel; /* cancel = yes */
	int tfd;
	void *watch;
	struct slow_req *head, *tail; /* FIFO: due times ascend */
	const struct vproxy_disk_host *dh;
};

static const struct vproxy_host *host;

static const char *const slow_keys[] = {"size", "delay-ms", "cancel", NULL};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Fire at the head's due time, or now if a cancelled request waits. */
static void slow_arm(struct slow_disk *d)
{
	struct itimerspec its = {0};
	uint64_t due = 0;

	for (struct slow_req *s = d->head; s; s = s->next) {
		if (s->cancelled) {
			due = 1;
			break;
		}
	}
	if (!due && d->head)
		due = d->head->due_ns;
	if (due) {
		its.it_value.tv_sec = (time_t)(due / 1000000000u);
		its.it_value.tv_nsec = (long)(due % 1000000000u);
	}
	timerfd_settime(d->tfd, TFD_TIMER_ABSTIME, &its, NULL);
}

static int slow_execute(struct slow_disk *d, struct vproxy_req *req)
{
	uint64_t off = req->offset;

	if (req->offset > d->size || req->len > d->size - req->offset)
		return -EINVAL;
	switch (req->op) {
	case VPROXY_REQ_READ:
	case VPROXY_REQ_WRITE:
		for (unsigned i = 0; i < req->iovcnt; i++) {
			if (req->op == VPROXY_REQ_READ)
				memcpy(req->iov[i].iov_base, d->data + off, req->iov[i].iov_len);
			else
				memcpy(d->data + off, req->iov[i].iov_base, req->iov[i].iov_len);
			off += req->iov[i].iov_len;
		}
		return 0;
	case VPROXY_REQ_FLUSH: return 0;
	default: return -EOPNOTSUPP;
	}
}

static void slow_timer(int fd, void *arg)
{
	struct slow_disk *d = arg;
	uint64_t now = now_ns(), n;
	struct slow_req **pp = &d->head, *done = NULL, **done_tail = &done;

	if (read(fd, &n, sizeof(n)) < 0 && errno != EAGAIN)
		host->disk_log(d->dh, VPROXY_LOG_WARN, "timerfd read: %s",
		               strerror(errno));
	/* Take what is due off the queue first: complete() may submit more. */
	while (*pp) {
		struct slow_req *s = *pp;

		if (s->cancelled || s->due_ns <= now) {
			*pp = s->next;
			s->next = NULL;
			*done_tail = s;
			done_tail = &s->next;
		} else {
			pp = &s->next;
		}
	}
	d->tail = NULL;
	for (struct slow_req *s = d->head; s; s = s->next)
		d->tail = s;
	slow_arm(d);
	while (done) {
		struct slow_req *s = done;
		int st = s->cancelled ? -ECANCELED : slow_execute(d, s->req);

		done = s->next;
		host->complete(s->req, st);
		free(s);
	}
}

static int slow_open(struct vproxy_disk_host *dh, const struct vproxy_params *params,
                     int read_only, struct vproxy_disk_info *info, void **disk, char *err,
                     size_t errlen)
{
	const char *size_text = host->param(params, "size");
	const char *delay_text = host->param(params, "delay-ms");
	const char *cancel_text = host->param(params, "cancel");
	struct slow_disk *d;
	uint64_t size = 16u << 20;
	char *end;
	unsigned long delay_ms = 500;

	(void)read_only;
	if (size_text && (host->parse_size(size_text, &size) < 0 || size == 0 ||
	                  size % 512 || size > (1ull << 32))) {
		snprintf(err, errlen, "size: \"%s\" is not a size up to 4G", size_text);
		return -EINVAL;
	}
	if (delay_text) {
		errno = 0;
		delay_ms = strtoul(delay_text, &end, 10);
		if (errno || *end || end == delay_text || delay_ms > 60000) {
			snprintf(err, errlen, "delay-ms: \"%s\" is not 0..60000", delay_text);
			return -EINVAL;
		}
	}
	if (cancel_text && strcmp(cancel_text, "yes") && strcmp(cancel_text, "no")) {
		snprintf(err, errlen, "cancel: \"%s\" is not yes or no", cancel_text);
		return -EINVAL;
	}
	d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	d->dh = dh;
	d->can_cancel = cancel_text && strcmp(cancel_text, "yes") == 0;
	d->size = size;
	d->delay_ns = (uint64_t)delay_ms * 1000000u;
	d->data = calloc(1, size);
	d->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (!d->data || d->tfd < 0)
		goto fail;
	d->watch = host->fd_watch(d->tfd, slow_timer, d);
	if (!d->watch)
		goto fail;
	memset(info, 0, sizeof(*info));
	info->capacity = size;
	info->logical_block = 512;
	info->physical_block = 512;
	info->flags = VPROXY_DISK_FLUSH;
	*disk = d;
	return 0;
fail:
	snprintf(err, errlen, "out of resources");
	if (d->tfd >= 0)
		close(d->tfd);
	free(d->data);
	free(d);
	return -ENOMEM;
}

static int slow_submit(void *disk, struct vproxy_req *req)
{
	struct slow_disk *d = disk;
	struct slow_req *s = calloc(1, sizeof(*s));

	if (!s)
		return -ENOMEM;
	s->req = req;
	s->due_ns = now_ns() + d->delay_ns;
	if (d->tail)
		d->tail->next = s;
	else
		d->head = s;
	d->tail = s;
	if (d->head == s)
		slow_arm(d);
	return 0;
}

static void slow_cancel(void *disk, struct vproxy_req *req)
{
	struct slow_disk *d = disk;

	if (!d->can_cancel)
		return; /* as a plugin that cannot take back what it started */
	for (struct slow_req *s = d->head; s; s = s->next) {
		if (s->req == req) {
			s->cancelled = true;
			slow_arm(d);
			return;
		}
	}
}

static void slow_close(void *disk)
{
	struct slow_disk *d = disk;

	host->fd_unwatch(d->watch);
	close(d->tfd);
	free(d->data);
	free(d);
}

VPROXY_PLUGIN_DEFINE(
        host, .name = "slow",
        .description = "test disk that completes every request after delay-ms",
        .param_keys = slow_keys, .open = slow_open, .submit = slow_submit,
        .close = slow_close, .cancel = slow_cancel);
