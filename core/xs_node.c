/* SPDX-License-Identifier: MIT */
/*
 * Xenstore nodes as dir/key (xs_node.h): write, read and remove one, read
 * one as a strict decimal number, remove an emptied directory.  Moved out
 * of xsbus.c; the callers are the bus, its backends and provisioning.
 */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xenstore.h>

#include "xs_node.h"

bool vp_xs_printf_at(struct xs_handle *xs, xs_transaction_t tx, const char *dir,
                     const char *key, const char *fmt, ...)
{
	char path[VP_XS_PATH_LEN * 2], val[256];
	va_list ap;
	int n;

	snprintf(path, sizeof(path), "%s/%s", dir, key);
	va_start(ap, fmt);
	n = vsnprintf(val, sizeof(val), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(val))
		return false;
	return xs_write(xs, tx, path, val, (unsigned)n);
}

/* Read dir/key; returns a malloc'ed string or NULL (errno set). */
char *vp_xs_read_at(struct xs_handle *xs, const char *dir, const char *key)
{
	char path[VP_XS_PATH_LEN * 2];
	unsigned len;

	snprintf(path, sizeof(path), "%s/%s", dir, key);
	return xs_read(xs, XBT_NULL, path, &len);
}

/* Remove dir/key (no error if it is absent). */
void vp_xs_rm_at(struct xs_handle *xs, const char *dir, const char *key)
{
	char path[VP_XS_PATH_LEN * 2];

	snprintf(path, sizeof(path), "%s/%s", dir, key);
	xs_rm(xs, XBT_NULL, path);
}

/* Read dir/key as an unsigned decimal number, as docs/PROTOCOL.md says:
 * digits only (no sign, space, "0x" or octal), no superfluous leading
 * zero, within 64 bits.  0, -ENOENT or -EINVAL. */
int vp_xs_read_ull(struct xs_handle *xs, const char *dir, const char *key,
                   unsigned long long *out)
{
	char *s = vp_xs_read_at(xs, dir, key);
	unsigned long long v = 0;
	int rc = 0;

	/* -ENOENT only when the node is absent: a failed read (a lost
	 * connection, no memory) is not a frontend that went away. */
	if (!s)
		return errno == ENOENT ? -ENOENT : -(errno ? errno : EIO);
	if (s[0] == '\0' || (s[0] == '0' && s[1] != '\0'))
		rc = -EINVAL;
	for (const char *p = s; !rc && *p; p++) {
		unsigned d = (unsigned)(*p - '0');

		if (d > 9 || v > (ULLONG_MAX - d) / 10)
			rc = -EINVAL;
		else
			v = v * 10 + d;
	}
	if (!rc)
		*out = v;
	free(s);
	return rc;
}

/* How a failed read of a frontend key reads in a message. */
const char *vp_xs_read_error(int rc)
{
	static char buf[80];

	if (rc == -ENOENT)
		return "missing";
	if (rc == -EINVAL)
		return "invalid";
	snprintf(buf, sizeof(buf), "unreadable: %s", strerror(-rc));
	return buf;
}

/* Remove a directory if it has no children left. */
void vp_xs_rm_if_empty(struct xs_handle *xs, const char *path)
{
	unsigned n = 0;
	char **ents = xs_directory(xs, XBT_NULL, path, &n);

	if (ents && n == 0)
		xs_rm(xs, XBT_NULL, path);
	free(ents);
}
