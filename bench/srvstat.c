/* SPDX-License-Identifier: MIT */
/* Counting a server's wake-ups and system calls from outside (srvstat.h). */
#include "srvstat.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/perf_event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "proc.h"

bool srv_status_field(const char *text, const char *key, uint64_t *out)
{
	size_t klen = strlen(key);

	for (const char *line = text; line && *line;) {
		const char *nl = strchr(line, '\n');

		if (strncmp(line, key, klen) == 0 && line[klen] == ':') {
			const char *p = line + klen + 1;
			unsigned long long v;
			char *end;

			while (*p == ' ' || *p == '\t')
				p++;
			if (!isdigit((unsigned char)*p))
				return false;
			errno = 0;
			v = strtoull(p, &end, 10);
			if (errno ||
			    (*end && *end != '\n' && !isspace((unsigned char)*end)))
				return false;
			*out = v;
			return true;
		}
		line = nl ? nl + 1 : NULL;
	}
	return false;
}

uint64_t srv_snap_delta(const struct srv_snap *a, const struct srv_snap *b)
{
	uint64_t sum = 0;

	for (size_t i = 0; i < b->n; i++) {
		uint64_t before = 0;

		for (size_t k = 0; k < a->n; k++)
			if (a->v[k].tid == b->v[i].tid) {
				before = a->v[k].n;
				break;
			}
		if (b->v[i].n > before)
			sum += b->v[i].n - before;
	}
	return sum;
}

/* The whole (small) text of a /proc file into buf.  Bytes, or -errno. */
static ssize_t read_text(const char *path, char *buf, size_t len)
{
	size_t got = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	while (got < len - 1) {
		ssize_t r = read(fd, buf + got, len - 1 - got);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			int e = errno;

			close(fd);
			return -e;
		}
		if (r == 0)
			break;
		got += (size_t)r;
	}
	close(fd);
	buf[got] = '\0';
	return (ssize_t)got;
}

int srv_snap_take(struct srv_snap *s, pid_t pid)
{
	size_t ntid;
	int *tids, r;

	s->v = NULL;
	s->n = 0;
	r = proc_list_tids(pid, &tids, &ntid);
	if (r < 0)
		return r;
	s->v = calloc(ntid, sizeof(*s->v));
	if (!s->v) {
		free(tids);
		return -ENOMEM;
	}
	for (size_t i = 0; i < ntid; i++) {
		char path[96], text[4096];
		uint64_t v;

		snprintf(path, sizeof(path), "/proc/%d/task/%d/status", (int)pid,
		         tids[i]);
		/* A thread gone since the listing is skipped. */
		if (read_text(path, text, sizeof(text)) > 0 &&
		    srv_status_field(text, "voluntary_ctxt_switches", &v))
			s->v[s->n++] = (struct srv_tid_count){.tid = tids[i], .n = v};
	}
	free(tids);
	if (!s->n) {
		srv_snap_free(s);
		return -ESRCH;
	}
	return 0;
}

void srv_snap_free(struct srv_snap *s)
{
	free(s->v);
	s->v = NULL;
	s->n = 0;
}

long srv_parse_id(const char *text)
{
	char *end;
	long v;

	while (*text == ' ' || *text == '\t')
		text++;
	if (!isdigit((unsigned char)*text))
		return -EINVAL;
	errno = 0;
	v = strtol(text, &end, 10);
	if (errno || v < 0 || v > INT32_MAX || (*end && *end != '\n'))
		return -EINVAL;
	return v;
}

/* The id of raw_syscalls:sys_enter from tracefs (where it is usually
 * mounted, then under debugfs), or -errno. */
static long sys_enter_id(void)
{
	static const char *const roots[] = {"/sys/kernel/tracing",
	                                    "/sys/kernel/debug/tracing"};
	int err = -ENOENT;

	for (size_t i = 0; i < sizeof(roots) / sizeof(roots[0]); i++) {
		char path[128], text[32];
		ssize_t r;

		snprintf(path, sizeof(path), "%s/events/raw_syscalls/sys_enter/id",
		         roots[i]);
		r = read_text(path, text, sizeof(text));
		if (r > 0)
			return srv_parse_id(text);
		if (r < 0 && r != -ENOENT)
			err = (int)r;
	}
	return err;
}

static int paranoid(void)
{
	char text[32];

	if (read_text("/proc/sys/kernel/perf_event_paranoid", text, sizeof(text)) <= 0)
		return 99;
	return atoi(text);
}

int srv_sys_open(struct srv_sys *s, pid_t pid, char *why, size_t len)
{
	struct perf_event_attr attr;
	long id = sys_enter_id();
	size_t ntid;
	int *tids, r;

	s->fd = NULL;
	s->n = 0;
	if (id < 0) {
		snprintf(
		        why, len,
		        "no id for the tracepoint raw_syscalls:sys_enter (%s; is tracefs "
		        "mounted on /sys/kernel/tracing?)",
		        strerror((int)-id));
		return (int)id;
	}
	r = proc_list_tids(pid, &tids, &ntid);
	if (r < 0) {
		snprintf(why, len, "no threads of pid %d: %s", (int)pid, strerror(-r));
		return r;
	}
	s->fd = calloc(ntid, sizeof(*s->fd));
	if (!s->fd) {
		free(tids);
		snprintf(why, len, "out of memory");
		return -ENOMEM;
	}
	memset(&attr, 0, sizeof(attr));
	attr.type = PERF_TYPE_TRACEPOINT;
	attr.size = sizeof(attr);
	attr.config = (uint64_t)id;
	/* The tracepoint fires in the kernel: counting it needs kernel events
	 * (exclude_kernel = 0). */
	for (size_t i = 0; i < ntid; i++) {
		int fd = (int)syscall(SYS_perf_event_open, &attr, tids[i], -1, -1,
		                      PERF_FLAG_FD_CLOEXEC);

		if (fd >= 0) {
			s->fd[s->n++] = fd;
			continue;
		}
		if (errno == ESRCH) /* the thread ended since the listing */
			continue;
		r = -errno;
		snprintf(why, len,
		         "perf_event_open on thread %d: %s (perf_event_paranoid %d)",
		         tids[i], strerror(-r), paranoid());
		free(tids);
		srv_sys_close(s);
		return r;
	}
	free(tids);
	if (!s->n) {
		snprintf(why, len, "every thread of pid %d ended", (int)pid);
		srv_sys_close(s);
		return -ESRCH;
	}
	return 0;
}

int srv_sys_read(const struct srv_sys *s, uint64_t *total)
{
	*total = 0;
	if (!s->n)
		return -ENODEV;
	for (size_t i = 0; i < s->n; i++) {
		uint64_t v;
		ssize_t r;

		/* A thread that ended keeps its final count. */
		do
			r = read(s->fd[i], &v, sizeof(v));
		while (r < 0 && errno == EINTR);
		if (r < 0)
			return -errno;
		if (r != (ssize_t)sizeof(v))
			return -EIO;
		*total += v;
	}
	return 0;
}

void srv_sys_close(struct srv_sys *s)
{
	for (size_t i = 0; i < s->n; i++)
		close(s->fd[i]);
	free(s->fd);
	s->fd = NULL;
	s->n = 0;
}
