/* SPDX-License-Identifier: MIT */
/*
 * What a server process (vproxyd or qsd) did in the measured window,
 * counted from outside it, over all its threads:
 *  - wake-ups: voluntary context switches (the thread slept and was woken),
 *    from /proc/PID/task/TID/status at both edges of the window;
 *  - system calls: one perf counter per thread on the tracepoint
 *    raw_syscalls:sys_enter (perf_event_open(2); needs tracefs for the
 *    tracepoint's id and the right to count kernel events: root or
 *    CAP_PERFMON, or perf_event_paranoid <= 1).
 * Threads that appear after the window's start are counted in full for
 * wake-ups (all their switches are inside the window) but missed for
 * system calls (no counter was opened on them); threads that end inside
 * the window lose their wake-ups but keep their system calls.
 *
 * The parsing and summing are pure functions (test_srvstat.c).
 */
#ifndef BENCH_SRVSTAT_H
#define BENCH_SRVSTAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* One thread's counter. */
struct srv_tid_count {
	int tid;
	uint64_t n;
};

/* A counter of every thread of a process at one moment. */
struct srv_snap {
	struct srv_tid_count *v;
	size_t n;
};

/* Find "key:<blanks>N" at the start of a line of text (a /proc status
 * file) and put N in *out.  False if there is no such line. */
bool srv_status_field(const char *text, const char *key, uint64_t *out);

/* What the threads did between snapshots a and b: for each thread of b,
 * its count less its count in a (0 if it went down), or its whole count
 * if it was not in a (born since).  Threads only in a are gone: their
 * share is lost. */
uint64_t srv_snap_delta(const struct srv_snap *a, const struct srv_snap *b);

/* Snapshot the voluntary context switches of every thread of pid.
 * 0, or -errno (no such process, nothing readable); s is empty then. */
int srv_snap_take(struct srv_snap *s, pid_t pid);
void srv_snap_free(struct srv_snap *s);

/* The id in the text of a tracepoint's "id" file, or -EINVAL. */
long srv_parse_id(const char *text);

/* System-call counters on the threads of one process. */
struct srv_sys {
	int *fd;
	size_t n; /* threads counted */
};

/* Open one counting raw_syscalls:sys_enter event on every thread pid has
 * now.  0 (s->n threads), or -errno with the reason in why (tracefs not
 * mounted, not permitted...); s is empty then. */
int srv_sys_open(struct srv_sys *s, pid_t pid, char *why, size_t len);
/* The system calls counted so far over every thread.  0 or -errno. */
int srv_sys_read(const struct srv_sys *s, uint64_t *total);
void srv_sys_close(struct srv_sys *s);

#endif
