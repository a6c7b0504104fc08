/*
 * vproxy storage plugin ABI.  Installed as <vproxy/plugin.h>.
 *
 * A plugin is a shared object exporting one symbol,
 *     const struct vproxy_plugin *vproxy_plugin_init(const struct vproxy_host *host);
 * The host calls it once after dlopen().  Every service a plugin may use is
 * reached through the versioned host table it is given (no other symbols of
 * the server are visible to plugins), so a plugin built against ABI version
 * N keeps working in every server that accepts N.
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

#define VPROXY_PLUGIN_ABI_VERSION 1u
#define VPROXY_PLUGIN_INIT_SYMBOL "vproxy_plugin_init"

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

/* The server's services, passed to vproxy_plugin_init(). */
struct vproxy_host {
	uint32_t abi_version; /* VPROXY_PLUGIN_ABI_VERSION of the server */
	uint32_t size;        /* sizeof(struct vproxy_host) of the server */

	/* Log a message under the plugin's name.  printf-style. */
	void (*log)(enum vproxy_log_level level, const char *fmt, ...)
		__attribute__((format(printf, 2, 3)));
	/* Finish a request: status 0 or a negative errno. Exactly once. */
	void (*complete)(struct vproxy_req *req, int status);
	/* Value of parameter key for this device, or NULL when not set. */
	const char *(*param)(const struct vproxy_params *params,
			     const char *key);
	/* Parse a size with optional K/M/G/T suffix (powers of 1024).
	 * Returns 0 and sets *out, or -EINVAL. */
	int (*parse_size)(const char *text, uint64_t *out);
	/* Call cb(fd, arg) from the event loop whenever fd is readable.
	 * Returns a handle for fd_unwatch(), or NULL on failure. */
	void *(*fd_watch)(int fd, void (*cb)(int fd, void *arg), void *arg);
	/* Stop watching; the handle is freed. */
	void (*fd_unwatch)(void *handle);
};

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
	 * errlen bytes into err. */
	int (*open)(const struct vproxy_params *params, int read_only,
		    struct vproxy_disk_info *info, void **disk, char *err,
		    size_t errlen);
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
};

/* Size of the first version of struct vproxy_plugin: the least a server
 * accepts.  Later fields were appended; a server reads one only when the
 * plugin's size says it is there. */
#define VPROXY_PLUGIN_SIZE_V1 offsetof(struct vproxy_plugin, cancel)
/* Does plugin table p have member (appended after version 1)? */
#define VPROXY_PLUGIN_HAS(p, member)                                          \
	((p)->size >= offsetof(struct vproxy_plugin, member) +                \
	                      sizeof((p)->member) &&                          \
	 (p)->member != NULL)

/* The one symbol a plugin exports. */
typedef const struct vproxy_plugin *(*vproxy_plugin_init_fn)(
	const struct vproxy_host *host);

#endif
