/* SPDX-License-Identifier: MIT */
/*
 * What the raw and sparse plugins share besides the I/O engine (vpio.h):
 * their common parameters, opening and locking the backing file, and the
 * last bounds check on a request.
 */
#ifndef VP_VPIO_FILE_H
#define VP_VPIO_FILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <vproxy/plugin.h>

#include "vpio.h"

/* The "direct" (on|off|yes|no|1|0, default off) and "engine" parameters.
 * 0, or -EINVAL with a message in err. */
int vpio_parse_params(const struct vproxy_host *host, const struct vproxy_params *params,
                      bool *direct, enum vpio_engine_choice *choice, char *err,
                      size_t errlen);

/* Open path (O_DIRECT if direct) read-write, or read-only if *read_only.
 * On a read-only file system or without write permission fall back to
 * read-only, setting *read_only and logging it about disk dh.  Returns
 * the fd, or -errno with a message in err. */
int vpio_open_file(const struct vproxy_host *host, const struct vproxy_disk_host *dh,
                   const char *path, bool direct, bool *read_only, char *err,
                   size_t errlen);

/* The host checks requests; plugins check again so they never reach
 * outside a disk of size bytes whoever calls them.  0, -EOPNOTSUPP,
 * -EINVAL or -EROFS. */
int vpio_check_req(const struct vproxy_req *req, uint64_t size, bool read_only);

/* flock() fd, shared or exclusive, without blocking for long: retries for
 * up to wait_ms, because after a crash the kernel may hold the dead
 * process's lock a little longer while it tears down its io_uring.
 * 0 or -errno (-EWOULDBLOCK: still held by someone else). */
int vpio_lock_file(int fd, bool exclusive, unsigned wait_ms);

#endif
