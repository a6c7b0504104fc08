/* SPDX-License-Identifier: MIT */
/* Asynchronous file I/O: io_uring or worker threads, one engine per disk.
 *
 * Both engines run an operation as a sequence of system calls planned by
 * op_plan() and judged by op_consume(); io_uring issues each call as an
 * SQE, a worker issues it directly.  That keeps the retry rules (short
 * transfers, EINTR, zeroing fallbacks) in one place. */
#include "vpio.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <liburing.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#define RING_ENTRIES 256u
#define CQE_BATCH 64u
#define MAX_TRIES 16u        /* EINTR/EAGAIN/zero-progress resubmissions */
#define ZBUF_SIZE (1u << 20) /* zeros written per call when writing zeros */
#define POOL_MIN 4u
#define POOL_MAX 16u

/* One system call an operation needs next. */
enum sys_what { SYS_PREADV, SYS_PWRITEV, SYS_FDATASYNC, SYS_FALLOCATE, SYS_DISCARD };

struct sys_call {
	enum sys_what what;
	int fd;
	const struct iovec *iov;
	unsigned iovcnt;
	uint64_t offset;
	uint64_t len;
	int mode;
};

struct vpio_engine {
	const struct vproxy_host *host;
	const struct vproxy_disk_host *dh; /* the disk's, for log lines */
	char label[160];
	uint32_t align;
	int efd;
	void *watch;
	unsigned inflight;

	bool uring;
	struct io_uring ring;
	bool in_dispatch;     /* completions running: submit once at the end */
	bool host_kicks;      /* vpio_kick() ends each batch: submit then */
	unsigned unsubmitted; /* SQEs prepared and not yet submitted */
	unsigned setup_flags; /* the IORING_SETUP_* the kernel took */
	int fixed_fd;         /* registered as file 0 (IOSQE_FIXED_FILE), or -1 */
	uint64_t finished;    /* operations finished, for vpio_poll() */
	uint64_t wakeups;     /* runs of the eventfd's watch */
	struct vpio_op *backlog, *backlog_tail; /* no SQE was free */

	/* Worker pool: all engines of threads mode, and for io_uring the
	 * calls it cannot make (ioctl), started on first use. */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct vpio_op *queue, *queue_tail; /* for workers */
	struct vpio_op *done;               /* for the loop */
	pthread_t *threads;
	unsigned nthreads, want_threads;
	bool stopping;

	/* What the file system refused once; read by workers too. */
	bool no_punch, no_zero_range;

	const struct vpio_sys *sys; /* tests' system calls, or NULL */

	void *zbuf; /* ZBUF_SIZE read-only zeros */
};

/* vpio_set_sys(); read when an engine is created. */
static const struct vpio_sys *test_sys;
/* vpio_set_uring_refused(); read when an engine is created. */
static unsigned test_refused;

void vpio_set_sys(const struct vpio_sys *sys)
{
	test_sys = sys;
}

void vpio_set_uring_refused(unsigned what)
{
	test_refused = what;
}

int vpio_engine_parse(const char *text, enum vpio_engine_choice *out)
{
	if (!text || strcmp(text, "auto") == 0)
		*out = VPIO_ENGINE_AUTO;
	else if (strcmp(text, "io_uring") == 0)
		*out = VPIO_ENGINE_IO_URING;
	else if (strcmp(text, "sqpoll") == 0)
		*out = VPIO_ENGINE_SQPOLL;
	else if (strcmp(text, "threads") == 0)
		*out = VPIO_ENGINE_THREADS;
	else
		return -EINVAL;
	return 0;
}

const char *vpio_engine_name(const struct vpio_engine *eng)
{
	if (!eng->uring)
		return "threads";
	return eng->setup_flags & IORING_SETUP_SQPOLL ? "sqpoll" : "io_uring";
}

static bool flag_get(const bool *f)
{
	return __atomic_load_n(f, __ATOMIC_RELAXED);
}

static void flag_set(bool *f)
{
	__atomic_store_n(f, true, __ATOMIC_RELAXED);
}

/* ---- planning and judging one system call ---- */

static const struct iovec *op_cur_iov(const struct vpio_op *op, unsigned *cnt)
{
	if (op->bounce || op->kind == VPIO_ZERO) {
		*cnt = 1;
		return &op->one;
	}
	if (op->rest) {
		*cnt = op->restcnt;
		return op->rest;
	}
	*cnt = op->iovcnt;
	return op->iov;
}

static void op_plan(struct vpio_engine *eng, struct vpio_op *op, struct sys_call *s)
{
	enum vpio_zero_mode zm = op->zero_mode;

	memset(s, 0, sizeof(*s));
	s->fd = op->fd;
	s->offset = op->offset + op->xfered;
	switch (op->kind) {
	case VPIO_READV:
	case VPIO_WRITEV:
		s->what = op->kind == VPIO_READV ? SYS_PREADV : SYS_PWRITEV;
		if (op->bounce) {
			op->one.iov_base = (char *)op->bounce + op->xfered;
			op->one.iov_len = (size_t)(op->len - op->xfered);
		}
		s->iov = op_cur_iov(op, &s->iovcnt);
		if (s->iovcnt > IOV_MAX)
			s->iovcnt = IOV_MAX;
		break;
	case VPIO_FDATASYNC: s->what = SYS_FDATASYNC; break;
	case VPIO_DISCARD:
		s->what = SYS_DISCARD;
		s->len = op->len;
		break;
	case VPIO_PUNCH:
		s->what = SYS_FALLOCATE;
		s->mode = FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE;
		s->len = op->len;
		break;
	case VPIO_ZERO:
		if (zm == VPIO_ZERO_PUNCH && flag_get(&eng->no_punch))
			zm = VPIO_ZERO_ALLOC;
		if (zm == VPIO_ZERO_ALLOC && flag_get(&eng->no_zero_range))
			zm = VPIO_ZERO_WRITE;
		op->zero_mode = zm;
		if (zm == VPIO_ZERO_WRITE) {
			uint64_t left = op->len - op->xfered;

			s->what = SYS_PWRITEV;
			op->one.iov_base = eng->zbuf;
			op->one.iov_len = left < ZBUF_SIZE ? (size_t)left : ZBUF_SIZE;
			s->iov = &op->one;
			s->iovcnt = 1;
		} else {
			s->what = SYS_FALLOCATE;
			s->mode = FALLOC_FL_KEEP_SIZE |
			          (zm == VPIO_ZERO_PUNCH ? FALLOC_FL_PUNCH_HOLE
			                                 : FALLOC_FL_ZERO_RANGE);
			s->len = op->len;
		}
		break;
	}
}

/* Skip n transferred bytes of a vectored op (no bounce buffer). */
static int op_advance_iov(struct vpio_op *op, size_t n)
{
	unsigned cnt, i = 0;
	const struct iovec *cur = op_cur_iov(op, &cnt);

	while (i < cnt && n >= cur[i].iov_len) {
		n -= cur[i].iov_len;
		i++;
	}
	if (!op->rest) {
		/* First short transfer: the guest's iovecs are read-only to
		 * us, so continue on a private copy of what is left. */
		op->rest = malloc((cnt - i + 1) * sizeof(*op->rest));
		if (!op->rest)
			return -ENOMEM;
		memcpy(op->rest, cur + i, (cnt - i) * sizeof(*op->rest));
	} else {
		memmove(op->rest, op->rest + i, (cnt - i) * sizeof(*op->rest));
	}
	op->restcnt = cnt - i;
	if (n) {
		op->rest[0].iov_base = (char *)op->rest[0].iov_base + n;
		op->rest[0].iov_len -= n;
	}
	return 0;
}

/* Zero what a read did not reach: reading past the end of a file yields
 * nothing, and a disk reads zeros there. */
static void op_zero_tail(struct vpio_op *op)
{
	unsigned cnt;
	const struct iovec *cur;

	if (op->bounce) {
		memset((char *)op->bounce + op->xfered, 0,
		       (size_t)(op->len - op->xfered));
	} else {
		cur = op_cur_iov(op, &cnt);
		for (unsigned i = 0; i < cnt; i++)
			memset(cur[i].iov_base, 0, cur[i].iov_len);
	}
	op->xfered = op->len;
}

/* Account for the result of one call.  Returns true when op is finished
 * (*status set), false when op_plan() must issue another call. */
static bool op_consume(struct vpio_engine *eng, struct vpio_op *op, long res, int *status)
{
	bool data = op->kind == VPIO_READV || op->kind == VPIO_WRITEV ||
	            (op->kind == VPIO_ZERO && op->zero_mode == VPIO_ZERO_WRITE);

	/* A cancelled op issues no further call; an interrupted one (how
	 * io_uring ends a call it cancels while it runs) is cancelled. */
	if (op->cancelled && (res == -EINTR || res == -EAGAIN || res == -ECANCELED)) {
		*status = -ECANCELED;
		return true;
	}
	if (res == -EINTR || res == -EAGAIN) {
		if (++op->tries < MAX_TRIES)
			return false;
		*status = (int)res;
		return true;
	}
	if (op->kind == VPIO_ZERO && !data && res == -EOPNOTSUPP) {
		/* Not supported here: remember, and take the next way. */
		flag_set(op->zero_mode == VPIO_ZERO_PUNCH ? &eng->no_punch
		                                          : &eng->no_zero_range);
		op->zero_mode = op->zero_mode == VPIO_ZERO_PUNCH ? VPIO_ZERO_ALLOC
		                                                 : VPIO_ZERO_WRITE;
		return false;
	}
	if (op->kind == VPIO_DISCARD && res == -EOPNOTSUPP) {
		*status = 0; /* a discard is a hint the device may ignore */
		return true;
	}
	if (res < 0) {
		*status = (int)res;
		return true;
	}
	if (!data) {
		*status = 0;
		return true;
	}
	if (res == 0) {
		if (op->kind == VPIO_READV && op->eof_error) {
			*status = -ENODATA;
			return true;
		}
		if (op->kind == VPIO_READV) {
			op_zero_tail(op);
			*status = 0;
			return true;
		}
		if (++op->tries < MAX_TRIES)
			return false;
		*status = -EIO;
		return true;
	}
	op->tries = 0;
	if (!op->bounce && op->kind != VPIO_ZERO) {
		int r = op_advance_iov(op, (size_t)res);

		if (r < 0) {
			*status = r;
			return true;
		}
	}
	op->xfered += (uint64_t)res;
	if (op->xfered >= op->len) {
		*status = 0;
		return true;
	}
	if (op->cancelled) {
		*status = -ECANCELED;
		return true;
	}
	return false;
}

/* ---- completing ---- */

static void op_finish(struct vpio_engine *eng, struct vpio_op *op, int status)
{
	if (op->bounce) {
		if (status == 0 && op->kind == VPIO_READV) {
			const char *src = op->bounce;

			for (unsigned i = 0; i < op->iovcnt; i++) {
				memcpy(op->iov[i].iov_base, src, op->iov[i].iov_len);
				src += op->iov[i].iov_len;
			}
		}
		free(op->bounce);
		op->bounce = NULL;
	}
	free(op->rest);
	op->rest = NULL;
	eng->inflight--;
	eng->finished++;
	op->done(op, status);
}

static void efd_signal(int efd)
{
	uint64_t one = 1;

	/* Fails only when the counter would overflow: then it is set anyway. */
	if (write(efd, &one, sizeof(one)) < 0)
		return;
}

/* ---- worker pool ---- */

static long sys_run(const struct vpio_engine *eng, const struct sys_call *s)
{
	const struct vpio_sys *t = eng->sys;
	ssize_t n;
	uint64_t range[2];

	switch (s->what) {
	case SYS_PREADV:
		n = (t ? t->preadv : preadv)(s->fd, s->iov, (int)s->iovcnt,
		                             (off_t)s->offset);
		return n < 0 ? -errno : n;
	case SYS_PWRITEV:
		n = (t ? t->pwritev : pwritev)(s->fd, s->iov, (int)s->iovcnt,
		                               (off_t)s->offset);
		return n < 0 ? -errno : n;
	case SYS_FDATASYNC: return (t ? t->fdatasync : fdatasync)(s->fd) < 0 ? -errno : 0;
	case SYS_FALLOCATE:
		return (t ? t->fallocate : fallocate)(s->fd, s->mode, (off_t)s->offset,
		                                      (off_t)s->len) < 0
		               ? -errno
		               : 0;
	case SYS_DISCARD:
		range[0] = s->offset;
		range[1] = s->len;
		return ioctl(s->fd, BLKDISCARD, range) < 0 ? -errno : 0;
	}
	return -EINVAL;
}

int vpio_ftruncate(struct vpio_engine *eng, int fd, uint64_t len)
{
	int (*fn)(int, off_t) = eng->sys ? eng->sys->ftruncate : ftruncate;

	return fn(fd, (off_t)len) < 0 ? -errno : 0;
}

int vpio_fdatasync_now(struct vpio_engine *eng, int fd)
{
	int (*fn)(int) = eng->sys ? eng->sys->fdatasync : fdatasync;

	return fn(fd) < 0 ? -errno : 0;
}

static void *worker_main(void *arg)
{
	struct vpio_engine *eng = arg;
	struct vpio_op *op;
	struct sys_call s;
	int status;

	for (;;) {
		pthread_mutex_lock(&eng->lock);
		while (!eng->queue && !eng->stopping)
			pthread_cond_wait(&eng->cond, &eng->lock);
		op = eng->queue;
		if (!op) {
			pthread_mutex_unlock(&eng->lock);
			return NULL;
		}
		eng->queue = op->next;
		if (!eng->queue)
			eng->queue_tail = NULL;
		pthread_mutex_unlock(&eng->lock);

		do {
			op_plan(eng, op, &s);
		} while (!op_consume(eng, op, sys_run(eng, &s), &status));
		op->res = status;

		pthread_mutex_lock(&eng->lock);
		op->next = eng->done;
		eng->done = op;
		pthread_mutex_unlock(&eng->lock);
		efd_signal(eng->efd);
	}
}

/* Start the workers not running yet; 0 or -errno. */
static int pool_start(struct vpio_engine *eng)
{
	if (eng->nthreads >= eng->want_threads)
		return 0;
	if (!eng->threads) {
		eng->threads = calloc(eng->want_threads, sizeof(*eng->threads));
		if (!eng->threads)
			return -ENOMEM;
	}
	while (eng->nthreads < eng->want_threads) {
		int r = pthread_create(&eng->threads[eng->nthreads], NULL, worker_main,
		                       eng);

		if (r)
			return eng->nthreads ? 0 : -r;
		eng->nthreads++;
	}
	return 0;
}

/* Hand op to a worker, or finish it with an error from the loop. */
static void pool_queue(struct vpio_engine *eng, struct vpio_op *op)
{
	int r = pool_start(eng);

	op->next = NULL;
	pthread_mutex_lock(&eng->lock);
	if (r < 0) {
		op->res = r;
		op->next = eng->done;
		eng->done = op;
	} else if (eng->queue_tail) {
		eng->queue_tail->next = op;
		eng->queue_tail = op;
	} else {
		eng->queue = eng->queue_tail = op;
	}
	pthread_cond_signal(&eng->cond);
	pthread_mutex_unlock(&eng->lock);
	if (r < 0)
		efd_signal(eng->efd);
}

/* ---- io_uring ---- */

static void uring_flush(struct vpio_engine *eng)
{
	int r;

	if (!eng->unsubmitted)
		return;
	r = io_uring_submit(&eng->ring);
	if (r >= 0) {
		eng->unsubmitted =
		        r >= (int)eng->unsubmitted ? 0 : eng->unsubmitted - (unsigned)r;
		return;
	}
	/* The SQEs stay queued; try again on the next loop turn. */
	efd_signal(eng->efd);
}

/* Queue the next system call of op as an SQE; false when the ring is
 * full even after submitting what it holds. */
static bool uring_issue(struct vpio_engine *eng, struct vpio_op *op)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&eng->ring);
	struct sys_call s;
	bool fixed;

	if (!sqe) {
		eng->unsubmitted = io_uring_sq_ready(&eng->ring);
		uring_flush(eng);
		sqe = io_uring_get_sqe(&eng->ring);
		if (!sqe)
			return false;
	}
	op_plan(eng, op, &s);
	fixed = eng->fixed_fd >= 0 && s.fd == eng->fixed_fd;
	if (fixed)
		s.fd = 0; /* its index in the registered table */
	switch (s.what) {
	case SYS_PREADV: io_uring_prep_readv(sqe, s.fd, s.iov, s.iovcnt, s.offset); break;
	case SYS_PWRITEV:
		io_uring_prep_writev(sqe, s.fd, s.iov, s.iovcnt, s.offset);
		break;
	case SYS_FDATASYNC: io_uring_prep_fsync(sqe, s.fd, IORING_FSYNC_DATASYNC); break;
	case SYS_FALLOCATE:
		io_uring_prep_fallocate(sqe, s.fd, s.mode, (off_t)s.offset, (off_t)s.len);
		break;
	case SYS_DISCARD:
		/* Not reachable: discards go to the pool. */
		io_uring_prep_nop(sqe);
		break;
	}
	if (fixed)
		sqe->flags |= IOSQE_FIXED_FILE;
	io_uring_sqe_set_data(sqe, op);
	eng->unsubmitted++;
	if (eng->unsubmitted >= VPIO_SUBMIT_CHUNK ||
	    (!eng->in_dispatch && !eng->host_kicks))
		uring_flush(eng);
	return true;
}

static void uring_start(struct vpio_engine *eng, struct vpio_op *op)
{
	if (eng->backlog || !uring_issue(eng, op)) {
		op->next = NULL;
		if (eng->backlog_tail)
			eng->backlog_tail->next = op;
		else
			eng->backlog = op;
		eng->backlog_tail = op;
	}
}

static bool uring_backlog(struct vpio_engine *eng)
{
	bool any = false;

	while (eng->backlog) {
		struct vpio_op *op = eng->backlog;

		if (!uring_issue(eng, op))
			break;
		eng->backlog = op->next;
		if (!eng->backlog)
			eng->backlog_tail = NULL;
		any = true;
	}
	return any;
}

/* ---- the loop side ---- */

/* Unlink op from the singly linked list *head (tail *tail, may be NULL);
 * true if it was there. */
static bool list_remove(struct vpio_op **head, struct vpio_op **tail, struct vpio_op *op)
{
	struct vpio_op *prev = NULL;

	for (struct vpio_op *o = *head; o; prev = o, o = o->next) {
		if (o != op)
			continue;
		if (prev)
			prev->next = o->next;
		else
			*head = o->next;
		if (tail && *tail == o)
			*tail = prev;
		return true;
	}
	return false;
}

/* Finish op with res from the loop, through the done list. */
static void op_fail_later(struct vpio_engine *eng, struct vpio_op *op, int res)
{
	op->res = res;
	pthread_mutex_lock(&eng->lock);
	op->next = eng->done;
	eng->done = op;
	pthread_mutex_unlock(&eng->lock);
	efd_signal(eng->efd);
}

void vpio_cancel(struct vpio_engine *eng, struct vpio_op *op)
{
	struct io_uring_sqe *sqe;
	bool queued;

	if (op->cancelled)
		return;
	op->cancelled = true;
	if (eng->uring && list_remove(&eng->backlog, &eng->backlog_tail, op)) {
		op_fail_later(eng, op, -ECANCELED);
		return;
	}
	pthread_mutex_lock(&eng->lock);
	queued = list_remove(&eng->queue, &eng->queue_tail, op);
	pthread_mutex_unlock(&eng->lock);
	if (queued) {
		op_fail_later(eng, op, -ECANCELED);
		return;
	}
	if (!eng->uring || op->kind == VPIO_DISCARD)
		return; /* a worker has it: its call runs to the end */
	/* In the ring: ask io_uring to cancel it (best effort; no free SQE
	 * means it simply completes). */
	sqe = io_uring_get_sqe(&eng->ring);
	if (!sqe)
		return;
	io_uring_prep_cancel(sqe, op, 0);
	io_uring_sqe_set_data(sqe, NULL);
	eng->unsubmitted++;
	if (!eng->in_dispatch)
		uring_flush(eng);
}

void vpio_kick(struct vpio_engine *eng)
{
	eng->host_kicks = true;
	if (eng->uring && !eng->in_dispatch)
		uring_flush(eng);
}

void vpio_submit(struct vpio_engine *eng, struct vpio_op *op)
{
	op->xfered = 0;
	op->tries = 0;
	op->rest = NULL;
	op->restcnt = 0;
	op->bounce = NULL;
	op->cancelled = false;
	op->next = NULL;
	eng->inflight++;

	if (eng->align && (op->kind == VPIO_READV || op->kind == VPIO_WRITEV)) {
		bool ok = op->offset % eng->align == 0 && op->len % eng->align == 0;

		for (unsigned i = 0; ok && i < op->iovcnt; i++)
			ok = (uintptr_t)op->iov[i].iov_base % eng->align == 0 &&
			     op->iov[i].iov_len % eng->align == 0;
		if (!ok && op->offset % eng->align == 0 && op->len % eng->align == 0 &&
		    op->len <= SIZE_MAX) {
			/* O_DIRECT wants aligned buffers; the guest's are not. */
			if (posix_memalign(&op->bounce, eng->align, (size_t)op->len)) {
				op->bounce = NULL;
				op->res = -ENOMEM;
				pthread_mutex_lock(&eng->lock);
				op->next = eng->done;
				eng->done = op;
				pthread_mutex_unlock(&eng->lock);
				efd_signal(eng->efd);
				return;
			}
			if (op->kind == VPIO_WRITEV) {
				char *dst = op->bounce;

				for (unsigned i = 0; i < op->iovcnt; i++) {
					memcpy(dst, op->iov[i].iov_base,
					       op->iov[i].iov_len);
					dst += op->iov[i].iov_len;
				}
			}
		}
	}
	if (eng->uring && op->kind != VPIO_DISCARD)
		uring_start(eng, op);
	else
		pool_queue(eng, op);
}

static bool dispatch_uring(struct vpio_engine *eng)
{
	struct io_uring_cqe *cqes[CQE_BATCH];
	struct {
		struct vpio_op *op;
		int res;
	} got[CQE_BATCH];
	unsigned n = io_uring_peek_batch_cqe(&eng->ring, cqes, CQE_BATCH);
	int status;

	/* Copy out and release the CQEs first: callbacks may submit. */
	for (unsigned i = 0; i < n; i++) {
		got[i].op = io_uring_cqe_get_data(cqes[i]);
		got[i].res = cqes[i]->res;
	}
	io_uring_cq_advance(&eng->ring, n);
	for (unsigned i = 0; i < n; i++) {
		struct vpio_op *op = got[i].op;

		if (!op)
			continue; /* an ASYNC_CANCEL's own completion */

		if (op_consume(eng, op, got[i].res, &status))
			op_finish(eng, op, status);
		else
			uring_start(eng, op);
	}
	return n > 0;
}

static bool dispatch_pool(struct vpio_engine *eng)
{
	struct vpio_op *list, *rev = NULL;

	pthread_mutex_lock(&eng->lock);
	list = eng->done;
	eng->done = NULL;
	pthread_mutex_unlock(&eng->lock);
	/* Finish in the order the workers did. */
	while (list) {
		struct vpio_op *next = list->next;

		list->next = rev;
		rev = list;
		list = next;
	}
	for (struct vpio_op *op = rev, *next; op; op = next) {
		next = op->next;
		op_finish(eng, op, op->res);
	}
	return rev != NULL;
}

/* Run every completion there is, then submit what they queued. */
static void dispatch(struct vpio_engine *eng)
{
	bool more;

	eng->in_dispatch = true;
	do {
		more = false;
		if (eng->uring) {
			more |= dispatch_uring(eng);
			more |= uring_backlog(eng);
		}
		more |= dispatch_pool(eng);
	} while (more);
	eng->in_dispatch = false;
	if (eng->uring)
		uring_flush(eng);
}

static void on_efd(int fd, void *arg)
{
	uint64_t v;

	/* Clear first: completions posted while we work signal again. */
	if (read(fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		return;
	((struct vpio_engine *)arg)->wakeups++;
	dispatch(arg);
}

unsigned vpio_engine_unsubmitted(const struct vpio_engine *eng)
{
	return eng->uring ? eng->unsubmitted : 0;
}

uint64_t vpio_engine_wakeups(const struct vpio_engine *eng)
{
	return eng->wakeups;
}

unsigned vpio_engine_setup_flags(const struct vpio_engine *eng)
{
	return eng->uring ? eng->setup_flags : 0;
}

bool vpio_register_fd(struct vpio_engine *eng, int fd)
{
	if (!eng->uring || eng->fixed_fd >= 0 || fd < 0 ||
	    (test_refused & VPIO_REFUSE_FILES))
		return false;
	/* Saves the kernel a file lookup and reference per request (the
	 * loop shares its file table with the helper threads). */
	if (io_uring_register_files(&eng->ring, &fd, 1) < 0)
		return false;
	eng->fixed_fd = fd;
	return true;
}

int vpio_poll(struct vpio_engine *eng)
{
	uint64_t before = eng->finished;

	if (eng->in_dispatch)
		return 0;
	/* The eventfd stays on: turning it off for the spell
	 * (IORING_CQ_EVENTFD_DISABLED) saved nothing measurable and cannot be
	 * turned on again without a race: the kernel posts a CQE and then
	 * reads the flag with no barrier between, so a CQE posted by another
	 * CPU (io-wq, SQPOLL) while we turn it on and look can signal
	 * nobody. */
	if (eng->inflight) {
		/* Completions are waiting (io_uring ran a read of cached
		 * pages inside the submit, or the disk was quick): take the
		 * eventfd's signal for them now, or the loop's next wait
		 * returns at once only to find them gone: one read() instead
		 * of an epoll_wait() and a read().  Read first, reap after:
		 * what is posted after the read signals again. */
		if (eng->uring && io_uring_cq_ready(&eng->ring)) {
			uint64_t v;
			/* EAGAIN: taken already; the CQ is reaped anyway. */
			ssize_t r = read(eng->efd, &v, sizeof(v));

			(void)r;
		}
		dispatch(eng);
	}
	return (int)(eng->finished - before);
}

void vpio_poll_end(struct vpio_engine *eng)
{
	/* Every completion still signals the eventfd: nothing to re-arm. */
	(void)eng;
}

void vpio_drain(struct vpio_engine *eng)
{
	vpio_poll_end(eng); /* the wait below needs the eventfd */
	while (eng->inflight) {
		struct pollfd p = {.fd = eng->efd, .events = POLLIN};
		uint64_t v;

		dispatch(eng);
		if (!eng->inflight)
			break;
		if (poll(&p, 1, 1000) > 0 && read(eng->efd, &v, sizeof(v)) < 0)
			continue;
	}
}

/* ---- life cycle ---- */

/*
 * The setup flags worth having, best first; each kernel takes the first
 * it knows (an older one refuses an unknown flag with -EINVAL):
 *  - COOP_TASKRUN (5.19): completions are run when the loop thread enters
 *    the kernel anyway (its epoll_wait, its submit) instead of
 *    interrupting it with an IPI; the loop enters the kernel on every turn.
 *  - SUBMIT_ALL (5.18): a bad SQE does not stop the rest of the batch.
 * Not used: SINGLE_ISSUER and DEFER_TASKRUN, because engines are created
 * and drained on the plugin host's helper threads (open and close off the
 * loop), and DEFER_TASKRUN would need a system call to reap what the loop
 * now reaps from shared memory while it polls; SQPOLL, which spends a
 * core per engine.
 */
static const unsigned setup_tries[] = {
	IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SUBMIT_ALL,
	IORING_SETUP_SUBMIT_ALL,
	0,
};

/* engine = sqpoll: a kernel thread takes the submissions from the ring,
 * so submitting is a memory write, not a system call, while it is awake
 * (it sleeps after SQPOLL_IDLE_MS without any; the next submit wakes
 * it).  It spends a CPU while the disk is busy: for hosts that can give
 * one to storage.  (COOP_TASKRUN does not go with it.) */
#define SQPOLL_IDLE_MS 50u
static const unsigned sqpoll_tries[] = {
	IORING_SETUP_SQPOLL | IORING_SETUP_SUBMIT_ALL,
	IORING_SETUP_SQPOLL,
};

static int uring_init(struct vpio_engine *eng, bool sqpoll)
{
	struct io_uring_probe *probe;
	static const int ops[] = {IORING_OP_READV, IORING_OP_WRITEV, IORING_OP_FSYNC,
	                          IORING_OP_FALLOCATE};
	const unsigned *tries = sqpoll ? sqpoll_tries : setup_tries;
	size_t ntries = sqpoll ? sizeof(sqpoll_tries) / sizeof(sqpoll_tries[0])
	                       : sizeof(setup_tries) / sizeof(setup_tries[0]);
	int r = -EINVAL;

	for (size_t i = 0; i < ntries; i++) {
		struct io_uring_params p = {.flags = tries[i],
		                            .sq_thread_idle = SQPOLL_IDLE_MS};

		if (tries[i] & test_refused)
			continue; /* as an older kernel would refuse it */
		r = io_uring_queue_init_params(RING_ENTRIES, &eng->ring, &p);
		if (r != -EINVAL)
			break;
	}
	if (r < 0)
		return r;
	eng->setup_flags = eng->ring.flags;
	probe = io_uring_get_probe_ring(&eng->ring);
	if (!probe) {
		r = -ENOSYS;
		goto fail;
	}
	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
		if (!io_uring_opcode_supported(probe, ops[i])) {
			r = -EOPNOTSUPP;
			break;
		}
	}
	io_uring_free_probe(probe);
	if (r < 0)
		goto fail;
	r = io_uring_register_eventfd(&eng->ring, eng->efd);
	if (r < 0)
		goto fail;
	return 0;
fail:
	io_uring_queue_exit(&eng->ring);
	return r;
}

int vpio_engine_create(const struct vproxy_host *host, const struct vproxy_disk_host *dh,
                       enum vpio_engine_choice choice, uint32_t align, const char *label,
                       struct vpio_engine **out, char *err, size_t errlen)
{
	struct vpio_engine *eng = calloc(1, sizeof(*eng));
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	int r;

	if (!eng) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	eng->host = host;
	eng->dh = dh;
	eng->fixed_fd = -1;
	eng->align = align;
	eng->sys = test_sys;
	if (eng->sys)
		choice = VPIO_ENGINE_THREADS; /* io_uring would bypass sys */
	snprintf(eng->label, sizeof(eng->label), "%s", label);
	pthread_mutex_init(&eng->lock, NULL);
	pthread_cond_init(&eng->cond, NULL);
	eng->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (eng->efd < 0) {
		r = -errno;
		snprintf(err, errlen, "eventfd: %s", strerror(-r));
		goto fail;
	}
	/* Never written: every page is the kernel's shared zero page. */
	eng->zbuf = mmap(NULL, ZBUF_SIZE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (eng->zbuf == MAP_FAILED) {
		eng->zbuf = NULL;
		r = -ENOMEM;
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	if (choice != VPIO_ENGINE_THREADS) {
		r = uring_init(eng, choice == VPIO_ENGINE_SQPOLL);
		if (r == 0) {
			eng->uring = true;
		} else if (choice == VPIO_ENGINE_SQPOLL) {
			snprintf(err, errlen,
			         "engine=sqpoll: the kernel refused an io_uring with a "
			         "submission thread: %s",
			         strerror(-r));
			goto fail;
		} else if (choice == VPIO_ENGINE_IO_URING) {
			snprintf(err, errlen,
			         "engine=io_uring: io_uring is not available: %s",
			         strerror(-r));
			goto fail;
		} else {
			host->disk_log(dh, VPROXY_LOG_WARN,
			               "%s: io_uring is not available (%s); using worker "
			               "threads",
			               eng->label, strerror(-r));
		}
	}
	/* io_uring needs a worker only for ioctls; threads mode for all. */
	if (ncpu < 1)
		ncpu = 1;
	eng->want_threads = eng->uring ? 1u
	                               : (unsigned)(2 * ncpu < POOL_MIN   ? POOL_MIN
	                                            : 2 * ncpu > POOL_MAX ? POOL_MAX
	                                                                  : 2 * ncpu);
	if (!eng->uring) {
		r = pool_start(eng);
		if (r < 0) {
			snprintf(err, errlen, "cannot start worker threads: %s",
			         strerror(-r));
			goto fail;
		}
	}
	eng->watch = host->fd_watch(eng->efd, on_efd, eng);
	if (!eng->watch) {
		r = -ENOMEM;
		snprintf(err, errlen, "cannot watch the completion eventfd");
		goto fail;
	}
	*out = eng;
	return 0;
fail:
	vpio_engine_destroy(eng);
	return r;
}

void vpio_engine_destroy(struct vpio_engine *eng)
{
	if (!eng)
		return;
	if (eng->watch)
		eng->host->fd_unwatch(eng->watch);
	pthread_mutex_lock(&eng->lock);
	eng->stopping = true;
	pthread_cond_broadcast(&eng->cond);
	pthread_mutex_unlock(&eng->lock);
	for (unsigned i = 0; i < eng->nthreads; i++)
		pthread_join(eng->threads[i], NULL);
	free(eng->threads);
	if (eng->uring)
		io_uring_queue_exit(&eng->ring);
	if (eng->zbuf)
		munmap(eng->zbuf, ZBUF_SIZE);
	if (eng->efd >= 0)
		close(eng->efd);
	pthread_cond_destroy(&eng->cond);
	pthread_mutex_destroy(&eng->lock);
	free(eng);
}
