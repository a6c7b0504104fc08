/* SPDX-License-Identifier: MIT */
/*
 * A test engine for the vpio layer (plugins/common/vpio.h, vpio_set_sys): every
 * system call the raw and sparse plugins make on their files goes through
 * here, on worker threads, one at a time.  It can
 *  - record every write, punch, size change and fdatasync in the order
 *    they reached the file, with the bytes written, plus markers the test
 *    adds (guest requests submitted and acknowledged), for power-loss
 *    replay: one lock orders calls and markers in a single log;
 *  - fail chosen calls with an errno (injected faults).
 * A test that uses it compiles the plugin's source in and links
 * vproxy_aio, so the hook is reachable; the .so plugins keep it hidden.
 */
#ifndef VP_AIO_TEST_SYS_H
#define VP_AIO_TEST_SYS_H

#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "vpio.h"

/* What one log record is. */
enum trec_kind {
	TREC_WRITE, /* bytes written at off */
	TREC_ZERO,  /* [off, off+len) punched or zeroed by fallocate */
	TREC_TRUNC, /* the file's size set to off */
	TREC_SYNC,  /* fdatasync returned 0: everything before is durable */
	TREC_MARK,  /* the test's marker: mark, a, b */
};

struct trec {
	enum trec_kind kind;
	uint64_t off, len;
	uint8_t *data; /* TREC_WRITE: len bytes, malloc'd */
	int mark;
	uint64_t a, b;
};

/* Which calls fail: the test's choice, consulted before each call. */
enum tsys_call { TSYS_READ, TSYS_WRITE, TSYS_SYNC, TSYS_FALLOCATE, TSYS_TRUNCATE };
typedef int (*tsys_fault_fn)(enum tsys_call call, int fd, uint64_t off, uint64_t len);

static pthread_mutex_t tsys_lock = PTHREAD_MUTEX_INITIALIZER;
static bool tsys_recording;
static struct trec *tsys_log;
static size_t tsys_n, tsys_cap;
static tsys_fault_fn tsys_fault; /* returns an errno to fail with, or 0 */
static unsigned tsys_faults;     /* calls failed so far */

/* One write can be held back (its worker waits) to order it after others. */
static pthread_cond_t tsys_cond = PTHREAD_COND_INITIALIZER;
static uint64_t tsys_hold_off = UINT64_MAX; /* hold the next write starting here */
static bool tsys_holding, tsys_let_go;

/* Append a record; called with tsys_lock held. */
static void tsys_put(const struct trec *r)
{
	if (tsys_n == tsys_cap) {
		size_t cap = tsys_cap ? tsys_cap * 2 : 1024;
		struct trec *p = realloc(tsys_log, cap * sizeof(*p));

		if (!p)
			abort();
		tsys_log = p;
		tsys_cap = cap;
	}
	tsys_log[tsys_n++] = *r;
}

/* Should this call fail?  Called with tsys_lock held; 0 or an errno. */
static int tsys_inject(enum tsys_call call, int fd, uint64_t off, uint64_t len)
{
	int e = tsys_fault ? tsys_fault(call, fd, off, len) : 0;

	if (e)
		tsys_faults++;
	return e;
}

static ssize_t tsys_preadv(int fd, const struct iovec *iov, int cnt, off_t off)
{
	uint64_t len = 0;
	ssize_t n;
	int e;

	for (int i = 0; i < cnt; i++)
		len += iov[i].iov_len;
	pthread_mutex_lock(&tsys_lock);
	e = tsys_inject(TSYS_READ, fd, (uint64_t)off, len);
	n = e ? -1 : preadv(fd, iov, cnt, off);
	if (!e && n < 0)
		e = errno;
	pthread_mutex_unlock(&tsys_lock);
	errno = e;
	return n;
}

static ssize_t tsys_pwritev(int fd, const struct iovec *iov, int cnt, off_t off)
{
	uint64_t len = 0;
	ssize_t n;
	int e;

	for (int i = 0; i < cnt; i++)
		len += iov[i].iov_len;
	pthread_mutex_lock(&tsys_lock);
	if ((uint64_t)off == tsys_hold_off) {
		tsys_hold_off = UINT64_MAX;
		tsys_holding = true;
		pthread_cond_broadcast(&tsys_cond);
		while (!tsys_let_go)
			pthread_cond_wait(&tsys_cond, &tsys_lock);
		tsys_holding = tsys_let_go = false;
	}
	e = tsys_inject(TSYS_WRITE, fd, (uint64_t)off, len);
	n = e ? -1 : pwritev(fd, iov, cnt, off);
	if (!e && n < 0)
		e = errno;
	if (n > 0 && tsys_recording) {
		struct trec r = {
		        .kind = TREC_WRITE, .off = (uint64_t)off, .len = (uint64_t)n};
		size_t done = 0;

		r.data = malloc((size_t)n);
		if (!r.data)
			abort();
		for (int i = 0; i < cnt && done < (size_t)n; i++) {
			size_t take = iov[i].iov_len < (size_t)n - done
			                      ? iov[i].iov_len
			                      : (size_t)n - done;

			memcpy(r.data + done, iov[i].iov_base, take);
			done += take;
		}
		tsys_put(&r);
	}
	pthread_mutex_unlock(&tsys_lock);
	errno = e;
	return n;
}

static int tsys_fdatasync(int fd)
{
	int r, e;

	pthread_mutex_lock(&tsys_lock);
	e = tsys_inject(TSYS_SYNC, fd, 0, 0);
	r = e ? -1 : fdatasync(fd);
	if (!e && r < 0)
		e = errno;
	if (r == 0 && tsys_recording) {
		struct trec rec = {.kind = TREC_SYNC};

		tsys_put(&rec);
	}
	pthread_mutex_unlock(&tsys_lock);
	errno = e;
	return r;
}

static int tsys_fallocate(int fd, int mode, off_t off, off_t len)
{
	int r, e;

	pthread_mutex_lock(&tsys_lock);
	e = tsys_inject(TSYS_FALLOCATE, fd, (uint64_t)off, (uint64_t)len);
	r = e ? -1 : fallocate(fd, mode, off, len);
	if (!e && r < 0)
		e = errno;
	/* Every mode the engine uses leaves the range reading zeros. */
	if (r == 0 && tsys_recording) {
		struct trec rec = {
		        .kind = TREC_ZERO, .off = (uint64_t)off, .len = (uint64_t)len};

		tsys_put(&rec);
	}
	pthread_mutex_unlock(&tsys_lock);
	errno = e;
	return r;
}

static int tsys_ftruncate(int fd, off_t len)
{
	int r, e;

	pthread_mutex_lock(&tsys_lock);
	e = tsys_inject(TSYS_TRUNCATE, fd, (uint64_t)len, 0);
	r = e ? -1 : ftruncate(fd, len);
	if (!e && r < 0)
		e = errno;
	if (r == 0 && tsys_recording) {
		struct trec rec = {.kind = TREC_TRUNC, .off = (uint64_t)len};

		tsys_put(&rec);
	}
	pthread_mutex_unlock(&tsys_lock);
	errno = e;
	return r;
}

static const struct vpio_sys tsys_calls = {
        .preadv = tsys_preadv,
        .pwritev = tsys_pwritev,
        .fdatasync = tsys_fdatasync,
        .fallocate = tsys_fallocate,
        .ftruncate = tsys_ftruncate,
};

/* Route engines created from now on through this file's calls. */
static void tsys_install(void)
{
	vpio_set_sys(&tsys_calls);
}

/* Back to the real calls; forget the log and the fault rule. */
static void tsys_uninstall(void)
{
	vpio_set_sys(NULL);
	pthread_mutex_lock(&tsys_lock);
	for (size_t i = 0; i < tsys_n; i++)
		free(tsys_log[i].data);
	free(tsys_log);
	tsys_log = NULL;
	tsys_n = tsys_cap = 0;
	tsys_recording = false;
	tsys_fault = NULL;
	tsys_faults = 0;
	tsys_hold_off = UINT64_MAX;
	pthread_mutex_unlock(&tsys_lock);
}

/* Start or stop recording. */
static __attribute__((unused)) void tsys_record(bool on)
{
	pthread_mutex_lock(&tsys_lock);
	tsys_recording = on;
	pthread_mutex_unlock(&tsys_lock);
}

/* A marker in the log, ordered with the calls; its index. */
static __attribute__((unused)) size_t tsys_mark(int mark, uint64_t a, uint64_t b)
{
	struct trec r = {.kind = TREC_MARK, .mark = mark, .a = a, .b = b};
	size_t at;

	pthread_mutex_lock(&tsys_lock);
	at = tsys_n;
	tsys_put(&r);
	pthread_mutex_unlock(&tsys_lock);
	return at;
}

/* Hold back the next write that starts at file offset off. */
static __attribute__((unused)) void tsys_hold_write(uint64_t off)
{
	pthread_mutex_lock(&tsys_lock);
	tsys_hold_off = off;
	pthread_mutex_unlock(&tsys_lock);
}

/* Is a write being held back now? */
static __attribute__((unused)) bool tsys_write_held(void)
{
	bool held;

	pthread_mutex_lock(&tsys_lock);
	held = tsys_holding;
	pthread_mutex_unlock(&tsys_lock);
	return held;
}

/* Let the held write go on. */
static __attribute__((unused)) void tsys_release_write(void)
{
	pthread_mutex_lock(&tsys_lock);
	tsys_let_go = true;
	pthread_cond_broadcast(&tsys_cond);
	pthread_mutex_unlock(&tsys_lock);
}

/* Fail calls as fn says from now on (NULL: none). */
static __attribute__((unused)) void tsys_set_fault(tsys_fault_fn fn)
{
	pthread_mutex_lock(&tsys_lock);
	tsys_fault = fn;
	pthread_mutex_unlock(&tsys_lock);
}

/* tsys_fail_next()'s rule: one kind of call, a byte range, a count. */
static enum tsys_call tsys_fail_call;
static uint64_t tsys_fail_lo, tsys_fail_hi;
static int tsys_fail_err, tsys_fail_left;

static int tsys_fail_rule(enum tsys_call call, int fd, uint64_t off, uint64_t len)
{
	(void)fd;
	if (call != tsys_fail_call || tsys_fail_left <= 0)
		return 0;
	if (call != TSYS_SYNC &&
	    (off >= tsys_fail_hi || off + (len ? len : 1) <= tsys_fail_lo))
		return 0;
	tsys_fail_left--;
	return tsys_fail_err;
}

/* Calls of this kind touching [lo, hi) fail with err_no, count times at
 * most (an fdatasync whatever the range). */
static __attribute__((unused)) void tsys_fail_next(enum tsys_call call, uint64_t lo,
                                                   uint64_t hi, int err_no, int count)
{
	pthread_mutex_lock(&tsys_lock);
	tsys_fail_call = call;
	tsys_fail_lo = lo;
	tsys_fail_hi = hi;
	tsys_fail_err = err_no;
	tsys_fail_left = count;
	pthread_mutex_unlock(&tsys_lock);
	tsys_set_fault(tsys_fail_rule);
}

#endif
