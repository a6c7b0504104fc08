/* SPDX-License-Identifier: MIT */
/* Parameters, opening and locking the backing file, and the request check
 * shared by the raw and sparse plugins (vpio_file.h). */
#include "vpio_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

static int parse_onoff(const char *text, bool *out)
{
	if (!text || strcmp(text, "off") == 0 || strcmp(text, "no") == 0 ||
	    strcmp(text, "0") == 0)
		*out = false;
	else if (strcmp(text, "on") == 0 || strcmp(text, "yes") == 0 ||
	         strcmp(text, "1") == 0)
		*out = true;
	else
		return -EINVAL;
	return 0;
}

int vpio_parse_params(const struct vproxy_host *host, const struct vproxy_params *params,
                      bool *direct, enum vpio_engine_choice *choice, char *err,
                      size_t errlen)
{
	const char *direct_text = host->param(params, "direct");
	const char *engine_text = host->param(params, "engine");

	if (parse_onoff(direct_text, direct) < 0) {
		snprintf(err, errlen, "direct: \"%s\" is not on or off", direct_text);
		return -EINVAL;
	}
	if (vpio_engine_parse(engine_text, choice) < 0) {
		snprintf(err, errlen, "engine: \"%s\" is not auto, io_uring, sqpoll or threads",
		         engine_text);
		return -EINVAL;
	}
	return 0;
}

int vpio_open_file(const struct vproxy_host *host, const struct vproxy_disk_host *dh,
                   const char *path, bool direct, bool *read_only, char *err,
                   size_t errlen)
{
	int flags = O_CLOEXEC | (direct ? O_DIRECT : 0);
	int fd = open(path, flags | (*read_only ? O_RDONLY : O_RDWR));

	if (fd < 0 && !*read_only &&
	    (errno == EACCES || errno == EROFS || errno == EPERM)) {
		int why = errno;

		fd = open(path, flags | O_RDONLY);
		if (fd >= 0) {
			host->disk_log(dh, VPROXY_LOG_WARN,
			               "%s is not writable (%s); serving it read-only",
			               path, strerror(why));
			*read_only = true;
		}
	}
	if (fd >= 0)
		return fd;
	fd = errno;
	if (direct && fd == EINVAL)
		snprintf(err, errlen,
		         "direct=on: the file system holding %s refuses O_DIRECT "
		         "(as tmpfs before Linux 6.6 does); use direct=off",
		         path);
	else
		snprintf(err, errlen, "file: cannot open %s: %s", path, strerror(fd));
	return -fd;
}

int vpio_check_req(const struct vproxy_req *req, uint64_t size, bool read_only)
{
	if (req->op > VPROXY_REQ_WRITE_ZEROES)
		return -EOPNOTSUPP;
	if (req->op == VPROXY_REQ_FLUSH)
		return 0;
	if (req->offset > size || req->len > size - req->offset)
		return -EINVAL;
	if (req->op == VPROXY_REQ_READ || req->op == VPROXY_REQ_WRITE) {
		uint64_t sum = 0;

		if (req->iovcnt && !req->iov)
			return -EINVAL;
		for (unsigned i = 0; i < req->iovcnt; i++)
			if (__builtin_add_overflow(sum, (uint64_t)req->iov[i].iov_len,
			                           &sum))
				return -EINVAL;
		if (sum != req->len)
			return -EINVAL;
	}
	if (read_only && req->op != VPROXY_REQ_READ)
		return -EROFS;
	return 0;
}

int vpio_lock_file(int fd, bool exclusive, unsigned wait_ms)
{
	for (unsigned waited = 0;; waited += 10) {
		if (flock(fd, (exclusive ? LOCK_EX : LOCK_SH) | LOCK_NB) == 0)
			return 0;
		if (errno != EWOULDBLOCK || waited >= wait_ms)
			return -errno;
		usleep(10000);
	}
}
