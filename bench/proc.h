/* SPDX-License-Identifier: MIT */
/*
 * Processes the bench starts and watches: spawning with output to a log
 * file, waiting with a deadline, stopping by pid (TERM, then KILL), and
 * reading a process's CPU time and peak RSS from /proc.
 */
#ifndef BENCH_PROC_H
#define BENCH_PROC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Start argv[0] (a path) with argv; stdout and stderr go to log (appended;
 * NULL: /dev/null), stdin is /dev/null, and the child gets a process group
 * of its own so a terminal's ^C reaches only the bench.  The child's pid,
 * or -errno. */
pid_t proc_spawn(char *const argv[], const char *log);
/* Run argv to completion, at most timeout_ms; its exit status (0-255),
 * 128+signal, or -ETIMEDOUT (then it was killed) or -errno. */
int proc_run(char *const argv[], const char *log, unsigned timeout_ms);
/* Reap pid if it has exited: its status as proc_run() gives it, or -EBUSY
 * while it runs. */
int proc_poll(pid_t pid);
/* Wait up to timeout_ms for pid to exit: status, or -ETIMEDOUT. */
int proc_wait(pid_t pid, unsigned timeout_ms);
/* SIGTERM, wait up to grace_ms, then SIGKILL and reap.  Its status. */
int proc_stop(pid_t pid, unsigned grace_ms);
/* CPU seconds pid's live threads have used (schedstat, else stat's
 * user+system), or -1. */
double proc_cpu_seconds(pid_t pid);
/* The thread ids of pid now, into a fresh array (free it).  0, or -ESRCH
 * when there are none, or -errno. */
int proc_list_tids(pid_t pid, int **out, size_t *n);
/* Peak resident set (VmHWM) of pid in KiB, or 0. */
uint64_t proc_peak_rss_kib(pid_t pid);
/* Monotonic clock in ns. */
uint64_t proc_now_ns(void);

#endif
