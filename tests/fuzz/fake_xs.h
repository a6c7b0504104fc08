/* SPDX-License-Identifier: MIT */
/*
 * An in-memory xenstore for fuzzing, linked in place of libxenstore: the
 * xs_* calls the xenstore bus makes (core/xsbus.c, backend.c, provision.c,
 * xs_node.c: read, write, mkdir, rm, directory, permissions, transactions,
 * watches through a pollable fd, domain introduction) over a small tree of
 * nodes.  Watches fire on registration and on every change at or below
 * (or above) the watched path, as xenstored's do.  The harness plays the
 * toolstack and the guests with the fake_xs_* calls.
 */
#ifndef VP_FUZZ_FAKE_XS_H
#define VP_FUZZ_FAKE_XS_H

#include <stdbool.h>

/* Empty the store, forget every watch and introduced domain. */
void fake_xs_reset(void);
/* Write path = value as a guest or the toolstack would (fires watches). */
void fake_xs_set(const char *path, const char *value);
/* Remove path and everything below it (fires watches). */
void fake_xs_remove(const char *path);
/* Value of path (owned by the store) or NULL. */
const char *fake_xs_get(const char *path);
/* Introduce or release a domain and fire @introduceDomain or
 * @releaseDomain. */
void fake_xs_domain(unsigned dom, bool introduced);
/* Make the next n xs_read() calls fail with err (a lost connection, no
 * memory), whether or not the node exists; 0 ends it.  Reset clears it. */
void fake_xs_fail_reads(unsigned n, int err);
/* Calls fn(path, value) for every node. */
void fake_xs_each(void (*fn)(const char *path, const char *value, void *arg), void *arg);

#endif
