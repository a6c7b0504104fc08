/* SPDX-License-Identifier: MIT */
/*
 * Asynchronous file I/O for the raw and sparse plugins: io_uring (liburing)
 * with its completion eventfd in the server's loop, or, where io_uring is
 * unavailable, a small pool of worker threads doing preadv/pwritev and
 * handing results back through an eventfd.  Either way every completion
 * callback runs on the server's loop thread.
 *
 * The engine owns the retry rules the plugins share: short reads and
 * writes continue where they stopped, reads at end of file yield zeros,
 * and "make this range read as zeros" falls back from punching a hole to
 * zeroing the range to writing zeros, remembering what the file system
 * refused.  With an alignment set (O_DIRECT), unaligned buffers go
 * through an aligned bounce buffer.
 */
#ifndef VP_VPIO_H
#define VP_VPIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>
#include <vproxy/plugin.h>

/* What an vpio_op does. */
enum vpio_kind {
	VPIO_READV,     /* fill iov from fd at offset; len = sum of iov */
	VPIO_WRITEV,    /* write iov to fd at offset */
	VPIO_FDATASYNC, /* fdatasync(fd) */
	VPIO_ZERO,      /* make [offset, offset+len) read as zeros (zero_mode) */
	VPIO_DISCARD,   /* ioctl BLKDISCARD on a block device (a hint) */
	VPIO_PUNCH,     /* punch a hole in a file; -EOPNOTSUPP where none can be */
};

/* How VPIO_ZERO gets there; each mode falls back to the next. */
enum vpio_zero_mode {
	VPIO_ZERO_PUNCH, /* fallocate PUNCH_HOLE: the range may be deallocated */
	VPIO_ZERO_ALLOC, /* fallocate ZERO_RANGE: keep the range allocated */
	VPIO_ZERO_WRITE, /* write zeros (page cache; used for metadata) */
};

/* Which engine a caller wants. */
enum vpio_engine_choice {
	VPIO_ENGINE_AUTO,     /* io_uring, else threads (logged) */
	VPIO_ENGINE_IO_URING, /* io_uring or fail */
	VPIO_ENGINE_THREADS,  /* worker threads */
	VPIO_ENGINE_SQPOLL,   /* io_uring with a kernel submission thread, or fail */
};

struct vpio_op;
/* Completion: res is 0 (the whole range done) or a negative errno. */
typedef void (*vpio_done_fn)(struct vpio_op *op, int res);

/* One operation; the caller owns the memory until done() is called. */
struct vpio_op {
	/* Set by the caller. */
	enum vpio_kind kind;
	enum vpio_zero_mode zero_mode;
	int fd;
	uint64_t offset;
	uint64_t len;            /* READV/WRITEV: sum of iov lengths */
	const struct iovec *iov; /* READV/WRITEV; valid until done() */
	unsigned iovcnt;
	bool eof_error; /* READV: end of file is -ENODATA, not zeros */
	vpio_done_fn done;
	void *arg; /* free for the caller */

	/* The engine's. */
	uint64_t xfered;    /* bytes done so far */
	unsigned tries;     /* resubmissions without progress */
	struct iovec *rest; /* remaining iovecs after a short transfer */
	unsigned restcnt;
	void *bounce;         /* aligned copy for O_DIRECT */
	struct iovec one;     /* the single iovec of bounce/zero writes */
	int res;              /* worker result */
	bool cancelled;       /* vpio_cancel() asked: no further calls */
	struct vpio_op *next; /* worker queue / done list */
};

struct vpio_engine;

/* Parse "auto|io_uring|sqpoll|threads" (NULL = auto). 0 or -EINVAL. */
int vpio_engine_parse(const char *text, enum vpio_engine_choice *out);

/* Create an engine for one disk.  align: buffer/offset alignment the fds
 * need (O_DIRECT), 0 for none.  Log lines go through host->disk_log(dh)
 * (dh may be NULL) and name the file by label.
 * Registers its eventfd with host->fd_watch().  On failure returns a
 * negative errno and a message in err.  *out is the caller's
 * (vpio_engine_destroy). */
int vpio_engine_create(const struct vproxy_host *host, const struct vproxy_disk_host *dh,
                       enum vpio_engine_choice choice, uint32_t align, const char *label,
                       struct vpio_engine **out, char *err, size_t errlen);

/* "io_uring", "sqpoll" or "threads". Static string. */
const char *vpio_engine_name(const struct vpio_engine *eng);
/* The IORING_SETUP_* flags the kernel accepted for this engine's ring
 * (vpio.c lists those tried, best first); 0 for threads. */
unsigned vpio_engine_setup_flags(const struct vpio_engine *eng);
/* io_uring requests queued and not yet handed to the kernel (0 for the
 * threads engine). */
unsigned vpio_engine_unsubmitted(const struct vpio_engine *eng);
/* Times the loop woke for the engine's eventfd (its watch ran). */
uint64_t vpio_engine_wakeups(const struct vpio_engine *eng);
/* Register fd, the file most requests go to, with the ring: requests on
 * it skip the kernel's file lookup (IOSQE_FIXED_FILE).  One per engine;
 * fd must stay open until the engine is destroyed.  False (and nothing
 * changes: requests on fd work as before) for the threads engine, a
 * second fd, or a kernel that refuses. */
bool vpio_register_fd(struct vpio_engine *eng, int fd);

/* Start op.  Never completes inline: done() runs later from the loop. */
void vpio_submit(struct vpio_engine *eng, struct vpio_op *op);
/* The end of a batch (the plugin's kick()): issue what vpio_submit()
 * queued since the last one, with one system call.  From the first call
 * on, vpio_submit() on the loop thread only queues until the next. */
void vpio_kick(struct vpio_engine *eng);

/* Between kicks, io_uring submissions still go to the kernel
 * VPIO_SUBMIT_CHUNK at a time, not all at the kick: the kernel plugs the
 * requests of one io_uring_enter, and the disk sees none of them until the
 * call has prepared the last, which for 32 O_DIRECT reads is tens of
 * microseconds of idle disk per batch (bench/README.md, "Issue 13, third
 * round": QD32 0.78x fio whole, 0.90x in eights, for the same CPU per
 * I/O). */
#define VPIO_SUBMIT_CHUNK 8u

/* Completion polling (the plugin ABI's poll() and poll_end()): run the
 * completions that are ready, without blocking (for io_uring a look at
 * the completion ring in shared memory), and return how many ran.  The
 * eventfd keeps signalling meanwhile (vpio.c says why), so
 * vpio_poll_end() has nothing to re-arm.  Loop thread only; never from
 * inside a done() callback. */
int vpio_poll(struct vpio_engine *eng);
void vpio_poll_end(struct vpio_engine *eng);

/* Give op up if it has not started: taken off a queue, or an io_uring
 * cancel for an SQE in flight.  done() still runs exactly once, later,
 * from the loop: with -ECANCELED if op was dropped (a multi-call op stops
 * issuing calls), else with its real result.  Never completes inline. */
void vpio_cancel(struct vpio_engine *eng, struct vpio_op *op);

/* Wait (blocking the caller) until nothing is in flight, running the
 * completions; for close paths.  done() callbacks may submit more. */
void vpio_drain(struct vpio_engine *eng);

/* Stop watching, stop workers, free.  Nothing may be in flight. */
void vpio_engine_destroy(struct vpio_engine *eng);

/* ftruncate(fd, len), synchronously, through the engine's system calls
 * (so tests record size changes in order with the rest).  0 or -errno. */
int vpio_ftruncate(struct vpio_engine *eng, int fd, uint64_t len);

/* fdatasync(fd), synchronously, through the engine's system calls; for
 * close paths.  0 or -errno. */
int vpio_fdatasync_now(struct vpio_engine *eng, int fd);

/* ---- For tests: the system calls behind the engines ---- */

/* The calls an engine makes on files, each returning as the system call
 * does (-1 and errno).  Tests replace them to record every write and
 * flush (power-loss replay) or to fail chosen ones (injected faults). */
struct vpio_sys {
	ssize_t (*preadv)(int fd, const struct iovec *iov, int cnt, off_t off);
	ssize_t (*pwritev)(int fd, const struct iovec *iov, int cnt, off_t off);
	int (*fdatasync)(int fd);
	int (*fallocate)(int fd, int mode, off_t off, off_t len);
	int (*ftruncate)(int fd, off_t len);
};

/* Engines created from now on in this copy of the library run every call
 * through sys on worker threads, whatever engine was asked for; NULL
 * restores the real calls.  Only tests that link vproxy_aio themselves
 * can reach this (plugins keep it hidden); sys stays the caller's. */
void vpio_set_sys(const struct vpio_sys *sys);

/* For tests of the fallbacks: engines created from now on act as if the
 * kernel refused these io_uring setup flags (IORING_SETUP_*, tried as
 * an older kernel would refuse them) and, with VPIO_REFUSE_FILES, file
 * registration.  0 restores the kernel's own answers. */
#define VPIO_REFUSE_FILES (1u << 31)
void vpio_set_uring_refused(unsigned what);

#endif
