/* SPDX-License-Identifier: MIT */
/*
 * vproxy storage plugin ABI.  Installed as <vproxy/plugin.h>.
 *
 * A plugin is a shared object exporting one init function.  The host calls
 * it once after dlopen() with the versioned host table; every service a
 * plugin may use is reached through that table (no other symbols of the
 * server are visible to plugins), so a plugin built against ABI version N
 * keeps working in every server that accepts N.
 *
 * Two ABI versions exist; a server loads plugins of both, side by side:
 *
 * ABI 2 (new plugins): define VPROXY_PLUGIN_ABI to 2 before including this
 *   header and end the plugin with VPROXY_PLUGIN_DEFINE(host, table...),
 *   which exports vproxy_plugin_init_v2().  open() gets a per-disk host
 *   handle (struct vproxy_disk_host) naming the guest, the device and its
 *   label; host->disk_log(dh, ...) prefixes each message with them.
 * ABI 1 (the default, so plugins written before ABI 2 build and load
 *   unchanged): the plugin exports vproxy_plugin_init(), open() has no
 *   handle and host->log() messages carry only "plugin:".
 * The server tells them apart before calling anything: by which of the two
 * init symbols the .so exports (vproxy_plugin_init_v2 first).  An ABI 1
 * plugin gets a host table with abi_version 1 and the ABI 1 size; an ABI 2
 * plugin gets abi_version 2.  Everything else (requests, completion,
 * cancel(), parameters, fd watches) is the same in both.
 *
 * Growing without a new ABI version: the host table, the plugin table and
 * the disk handle each carry their size, and fields are only ever
 * appended; a reader uses a field only when the size says it is there
 * (VPROXY_PLUGIN_HAS, VPROXY_HOST_HAS, VPROXY_DISK_HOST_HAS).
 *
 * Threads: every call into a plugin comes from the server's event loop
 * thread, except open() and close() of a plugin that sets
 * VPROXY_PLUGIN_F_OFF_LOOP in its table's flags (see there).
 *
 * I/O is asynchronous: submit() queues a request and returns; the plugin
 * calls host->complete() exactly once per request, from the server's event
 * loop thread (inline inside submit() is allowed).  Plugins that complete
 * from other threads must hand completions back through an fd registered
 * with host->fd_watch().
 */
#ifndef VPROXY_PLUGIN_H
#define VPROXY_PLUGIN_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

/* The ABI the including source is written for (see above): 1 or 2. */
#ifndef VPROXY_PLUGIN_ABI
#define VPROXY_PLUGIN_ABI 1
#endif

/* The init symbol of each ABI; a server looks for them in this order. */
#define VPROXY_PLUGIN_INIT_SYMBOL_V2 "vproxy_plugin_init_v2"
#define VPROXY_PLUGIN_INIT_SYMBOL_V1 "vproxy_plugin_init"

#if VPROXY_PLUGIN_ABI == 2
#define VPROXY_PLUGIN_ABI_VERSION 2u
#define VPROXY_PLUGIN_INIT_SYMBOL VPROXY_PLUGIN_INIT_SYMBOL_V2
#define VPROXY_PLUGIN_INIT_FN vproxy_plugin_init_v2
#elif VPROXY_PLUGIN_ABI == 1
#define VPROXY_PLUGIN_ABI_VERSION 1u
#define VPROXY_PLUGIN_INIT_SYMBOL VPROXY_PLUGIN_INIT_SYMBOL_V1
#define VPROXY_PLUGIN_INIT_FN vproxy_plugin_init
#else
#error "VPROXY_PLUGIN_ABI must be 1 or 2"
#endif

/* Log levels for host->log(). */
enum vproxy_log_level {
	VPROXY_LOG_ERROR = 0,
	VPROXY_LOG_WARN = 1,
	VPROXY_LOG_INFO = 2,
	VPROXY_LOG_DEBUG = 3,
};

/* Request kinds. Offsets and lengths are in bytes. */
enum vproxy_op {
	VPROXY_REQ_READ = 0,
	VPROXY_REQ_WRITE = 1,
	VPROXY_REQ_FLUSH = 2,
	VPROXY_REQ_DISCARD = 3,
	VPROXY_REQ_WRITE_ZEROES = 4,
};

/* Request flags. */
#define VPROXY_REQ_F_UNMAP 0x1u /* WRITE_ZEROES: the range may be deallocated */

/* Capability flags a plugin reports in vproxy_disk_info.flags. */
#define VPROXY_DISK_READONLY 0x1u
#define VPROXY_DISK_FLUSH 0x2u
#define VPROXY_DISK_DISCARD 0x4u
#define VPROXY_DISK_WRITE_ZEROES 0x8u

/* One I/O request.  Owned by the host; valid until host->complete(). */
struct vproxy_req {
	uint32_t op;        /* enum vproxy_op */
	uint32_t flags;     /* VPROXY_REQ_F_* */
	uint64_t offset;    /* byte offset on the disk */
	uint64_t len;       /* bytes; READ/WRITE: sum of iov lengths */
	const struct iovec *iov; /* READ/WRITE: guest buffers, mapped */
	unsigned iovcnt;
	void *host_priv;    /* the host's; plugins must not touch it */
	void *plugin_priv;  /* the plugin's, free for its use */
};

/* What a plugin tells the host about an opened disk. */
struct vproxy_disk_info {
	uint64_t capacity;        /* bytes, a multiple of 512 */
	uint32_t logical_block;   /* bytes, power of two >= 512 */
	uint32_t physical_block;  /* bytes, power of two >= logical_block */
	uint32_t flags;           /* VPROXY_DISK_* */
	uint32_t max_discard_sectors;      /* 0: no limit from the plugin */
	uint32_t max_write_zeroes_sectors; /* 0: no limit from the plugin */
	uint32_t discard_granularity;      /* bytes; 0: logical_block */
};

/* Opaque to plugins: the key=value parameters of one device. */
struct vproxy_params;

/*
 * ABI 2: the host's side of one open disk, handed to open().  Owned by the
 * host and valid until the plugin's close() of that disk returns (also
 * when open() fails: until open() returns).  Plugins keep the pointer,
 * read the fields and pass it back to host calls; they never write it.
 * Fields are only appended: read one beyond these only when
 * VPROXY_DISK_HOST_HAS says it is there.  The host keeps its own per-disk
 * state behind this struct, so what is per disk grows without an ABI
 * change.
 *
 * Planned, not here yet (each appended, none an ABI break):
 *  - completion hand-back for plugins whose libraries complete on their own
 *    threads (librbd): a thread-safe host->complete_from_thread(dh, req,
 *    status) appended to struct vproxy_host, queueing per disk and waking
 *    the loop once, or a completion eventfd appended here;
 * (The end of a batch, planned here before, is kick() in struct
 * vproxy_plugin.)
 */
struct vproxy_disk_host {
	uint32_t size;     /* sizeof(struct vproxy_disk_host) of the server */
	uint32_t domid;    /* the guest's domain id */
	uint32_t devid;    /* the device's id in that guest */
	uint32_t reserved; /* 0 */
	const char *plugin; /* the plugin's name, as in the config ("raw") */
	const char *label;  /* the device's name: [device NAME] in the config */
};

/* Does disk handle dh have member (appended after ABI 2's first fields)? */
#define VPROXY_DISK_HOST_HAS(dh, member)                                      \
	((dh)->size >= offsetof(struct vproxy_disk_host, member) +            \
	                       sizeof((dh)->member))

/* The server's services, passed to the plugin's init function. */
struct vproxy_host {
	uint32_t abi_version; /* VPROXY_PLUGIN_ABI_VERSION of the server */
	uint32_t size;        /* sizeof(struct vproxy_host) of the server */

	/* Log a message, prefixed "plugin:".  printf-style.  ABI 2 plugins
	 * use disk_log() for anything about a disk. */
	void (*log)(enum vproxy_log_level level, const char *fmt, ...)
		__attribute__((format(printf, 2, 3)));
	/* Finish a request: status 0 or a negative errno. Exactly once. */
	void (*complete)(struct vproxy_req *req, int status);
	/* Value of parameter key for this device, or NULL when not set. */
	const char *(*param)(const struct vproxy_params *params,
			     const char *key);
	/* Parse a size: decimal digits ("010" is ten), an optional K/M/G/T
	 * suffix in either case (powers of 1024), then optionally "B" or
	 * "iB".  Returns 0 and sets *out, or -EINVAL (also for signs,
	 * spaces, hex and overflow of 64 bits). */
	int (*parse_size)(const char *text, uint64_t *out);
	/* Call cb(fd, arg) from the event loop whenever fd is readable.
	 * Returns a handle for fd_unwatch(), or NULL on failure. */
	void *(*fd_watch)(int fd, void (*cb)(int fd, void *arg), void *arg);
	/* Stop watching; the handle is freed. */
	void (*fd_unwatch)(void *handle);

	/* ---- ABI 2 (absent from the table an ABI 1 plugin gets) ---- */

	/* Log a message about disk dh, prefixed with the plugin's name, the
	 * guest, the device and its label; rate-limited per disk like the
	 * server's own messages about a guest.  printf-style.  dh NULL:
	 * as log(). */
	void (*disk_log)(const struct vproxy_disk_host *dh,
			 enum vproxy_log_level level, const char *fmt, ...)
		__attribute__((format(printf, 3, 4)));
	/* Planned: complete_from_thread() goes here (see vproxy_disk_host). */
};

/* Size of the host table an ABI 1 plugin is given. */
#define VPROXY_HOST_SIZE_V1 offsetof(struct vproxy_host, disk_log)
/* Does host table h have member (appended after ABI 2's first fields)? */
#define VPROXY_HOST_HAS(h, member)                                            \
	((h)->size >= offsetof(struct vproxy_host, member) +                  \
	                      sizeof((h)->member) &&                          \
	 (h)->member != NULL)

/* What a plugin provides. Static storage owned by the plugin. */
struct vproxy_plugin {
	uint32_t abi_version; /* VPROXY_PLUGIN_ABI_VERSION it was built with */
	uint32_t size;        /* sizeof(struct vproxy_plugin) it was built with */
	const char *name;     /* short name, as used in config ("mem") */
	const char *description; /* one line for --help and logs */
	/* NULL-terminated list of parameter keys the plugin accepts. */
	const char *const *param_keys;

	/* Open a disk. On success returns 0, fills *info and *disk. On
	 * failure returns a negative errno and writes a message of at most
	 * errlen bytes into err.  ABI 2 passes the disk's host handle dh
	 * first (see struct vproxy_disk_host); ABI 1 has no dh
	 * (vproxy_open_v1_fn).  *disk must differ between open disks. */
#if VPROXY_PLUGIN_ABI >= 2
	int (*open)(struct vproxy_disk_host *dh, const struct vproxy_params *params,
		    int read_only, struct vproxy_disk_info *info, void **disk,
		    char *err, size_t errlen);
#else
	int (*open)(const struct vproxy_params *params, int read_only,
		    struct vproxy_disk_info *info, void **disk, char *err,
		    size_t errlen);
#endif
	/* Queue a request. Returns 0 (complete() will be called), or a
	 * negative errno (complete() will not be called). */
	int (*submit)(void *disk, struct vproxy_req *req);
	/* Close a disk.  Called only with no requests in flight, and only
	 * from the top of the event loop: never from inside host->complete()
	 * or any other host call, so a plugin may free its engine here even
	 * when the last completion came from that engine's dispatch loop. */
	void (*close)(void *disk);

	/* Optional (NULL, or absent in a table built before it existed: see
	 * VPROXY_PLUGIN_HAS).  The device is being reset or detached: give up
	 * req early if that is still possible.  Either way complete() is still
	 * called exactly once for req, later, from the loop, never from inside
	 * cancel(): with -ECANCELED if the request was dropped before it
	 * touched its buffers, else with its real result.  Until then the
	 * guest's buffers stay mapped and the guest waits. */
	void (*cancel)(void *disk, struct vproxy_req *req);

	/* Optional (0, or absent in a table built before it existed: see
	 * VPROXY_PLUGIN_COVERS): VPROXY_PLUGIN_F_* bits. */
	uint32_t flags;

	/* Optional (NULL, or absent in a table built before it existed: see
	 * VPROXY_PLUGIN_HAS).  The end of a batch: the host has handed disk
	 * every request that one pass over a queue (a guest's kick, a turn of
	 * polling) or one completion brought.  A host that calls kick() at
	 * all calls it after every run of submit() calls on that disk, before
	 * it returns to its loop, so from the first kick() on a plugin may
	 * hold back what submit() queued until the next kick() (one
	 * io_uring_submit() for many requests).  It may be called from inside
	 * host->complete(), as submit() may; it never completes a request
	 * inline. */
	void (*kick)(void *disk);

	/* Optional, both or neither (NULL, or absent in a table built before
	 * they existed: see VPROXY_PLUGIN_HAS).  Completion polling.  While
	 * the host's loop spins (its poll window, after work) and disk has
	 * requests in flight, the host calls poll() on every turn instead of
	 * waiting for the plugin's fd watch: run the completions that are
	 * ready now, without blocking, each through host->complete() as an fd
	 * watch callback would, and return how many ran (0: none yet).  The
	 * plugin's fd may go on signalling meanwhile (its watch then finds
	 * what poll() left).  poll_end() ends the spell: the loop is about
	 * to sleep, so from its return on every completion not run yet must
	 * wake the plugin's fd watch (or be run inside poll_end(), which may
	 * call host->complete() as poll() does).  A plugin that quietens its
	 * fd during a spell must make waking it again race-free: io_uring's
	 * IORING_CQ_EVENTFD_DISABLED is not (vpio.c).  Both are called from the
	 * loop, never from inside a host call; poll_end() follows poll()
	 * once per spell, before close(). */
	int (*poll)(void *disk);
	void (*poll_end)(void *disk);
};

/*
 * VPROXY_PLUGIN_F_OFF_LOOP: open() and close() may run on a helper thread
 * of the host instead of the event loop thread, so that a slow one (a lock
 * that is held, a long scan, an fdatasync) stalls no other guest.  Without
 * the flag both run on the loop thread, as they always did.  With it:
 *  - open() and close() of different disks may run at the same time, on
 *    different threads, while the loop keeps calling submit(), cancel()
 *    and fd watch callbacks of the plugin's other disks: state shared
 *    between disks needs the plugin's own locking;
 *  - of the host calls, open() and close() may use log(), disk_log(),
 *    param(), parse_size(), fd_watch() and fd_unwatch(), never complete();
 *  - fd_watch() from open() takes effect once open() has returned (the
 *    loop starts watching then; before, nobody did either);
 *  - before close() the host stops dispatching the watches that disk's
 *    open() registered; close() may fd_unwatch() those (and only those:
 *    a watch registered later, from the loop, is unwatched from the loop);
 *  - close() is still called only when no request is in flight, and the
 *    disk is never used again after close() began.
 * The host completes both back on the loop thread.
 */
#define VPROXY_PLUGIN_F_OFF_LOOP 0x1u

/* Size of the first version of struct vproxy_plugin: the least a server
 * accepts.  Later fields were appended; a server reads one only when the
 * plugin's size says it is there. */
#define VPROXY_PLUGIN_SIZE_V1 offsetof(struct vproxy_plugin, cancel)
/* Does plugin table p reach as far as member (appended after version 1)? */
#define VPROXY_PLUGIN_COVERS(p, member)                                       \
	((p)->size >= offsetof(struct vproxy_plugin, member) + sizeof((p)->member))
/* Does plugin table p have function member, set (appended after version 1)? */
#define VPROXY_PLUGIN_HAS(p, member)                                          \
	(VPROXY_PLUGIN_COVERS(p, member) && (p)->member != NULL)

/* The init function a plugin exports (VPROXY_PLUGIN_INIT_SYMBOL). */
typedef const struct vproxy_plugin *(*vproxy_plugin_init_fn)(
	const struct vproxy_host *host);

/* ABI 1's open(), for a server calling an ABI 1 plugin: the same table
 * slot, without the disk handle. */
typedef int (*vproxy_open_v1_fn)(const struct vproxy_params *params, int read_only,
				 struct vproxy_disk_info *info, void **disk,
				 char *err, size_t errlen);

#define VPROXY_PLUGIN_EXPORT __attribute__((visibility("default")))

/*
 * The end of every plugin: the plugin table and the init function.
 *   static const struct vproxy_host *host;
 *   ...
 *   VPROXY_PLUGIN_DEFINE(host, .name = "mem", .description = "RAM disk",
 *                        .param_keys = keys, .open = mem_open, ...);
 * host_var receives the host table.  abi_version and size are filled in;
 * init refuses (returns NULL to) a server whose host table is older than
 * this header's or speaks another ABI.
 */
#define VPROXY_PLUGIN_DEFINE(host_var, ...)                                   \
	static const struct vproxy_plugin vproxy_plugin_table_ = {            \
		.abi_version = VPROXY_PLUGIN_ABI_VERSION,                     \
		.size = sizeof(struct vproxy_plugin),                         \
		__VA_ARGS__};                                                 \
	VPROXY_PLUGIN_EXPORT const struct vproxy_plugin *VPROXY_PLUGIN_INIT_FN( \
		const struct vproxy_host *h);                                 \
	VPROXY_PLUGIN_EXPORT const struct vproxy_plugin *VPROXY_PLUGIN_INIT_FN( \
		const struct vproxy_host *h)                                  \
	{                                                                     \
		if (!h || h->abi_version != VPROXY_PLUGIN_ABI_VERSION ||      \
		    h->size < VPROXY_PLUGIN_HOST_SIZE_)                        \
			return NULL;                                          \
		(host_var) = h;                                               \
		return &vproxy_plugin_table_;                                 \
	}                                                                     \
	_Static_assert(1, "VPROXY_PLUGIN_DEFINE ends with a semicolon")

/* The host table size a plugin of this ABI needs: all of it for ABI 2 (a
 * server older than the header lacks entries the plugin may call). */
#if VPROXY_PLUGIN_ABI >= 2
#define VPROXY_PLUGIN_HOST_SIZE_ sizeof(struct vproxy_host)
#else
#define VPROXY_PLUGIN_HOST_SIZE_ VPROXY_HOST_SIZE_V1
#endif

#endif
