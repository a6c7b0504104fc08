/* SPDX-License-Identifier: MIT */
/*
 * Xenstore nodes as dir/key, for the xenstore bus (xsbus.c, backend.c,
 * provision.c): write, read and remove one node, read a frontend's number
 * strictly (docs/PROTOCOL.md), remove a directory once empty.  See
 * xs_node.c.
 */
#ifndef VP_XS_NODE_H
#define VP_XS_NODE_H

#include <stdbool.h>
#include <xenstore.h>

/* The longest device directory path (a backend's or a frontend's). */
#define VP_XS_PATH_LEN 128

/* Write dir/key = the formatted value (at most 255 bytes), in tx or
 * XBT_NULL; false (errno set) on failure. */
bool vp_xs_printf_at(struct xs_handle *xs, xs_transaction_t tx, const char *dir,
                     const char *key, const char *fmt, ...)
        __attribute__((format(printf, 5, 6)));
/* Read dir/key: a malloc'ed string the caller frees, or NULL (errno set). */
char *vp_xs_read_at(struct xs_handle *xs, const char *dir, const char *key);
/* Remove dir/key (no error if it is absent). */
void vp_xs_rm_at(struct xs_handle *xs, const char *dir, const char *key);
/* Read dir/key as a strict unsigned decimal into *out: 0, -ENOENT (absent),
 * -EINVAL (not such a number) or another -errno (the read failed). */
int vp_xs_read_ull(struct xs_handle *xs, const char *dir, const char *key,
                   unsigned long long *out);
/* vp_xs_read_ull()'s rc as a message fragment ("missing", "invalid", ...);
 * a static string, valid until the next call. */
const char *vp_xs_read_error(int rc);
/* Remove the directory path if it has no children left. */
void vp_xs_rm_if_empty(struct xs_handle *xs, const char *path);

#endif
