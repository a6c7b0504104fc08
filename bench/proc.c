/* SPDX-License-Identifier: MIT */
/* Child processes and /proc readings for the bench driver. */
#include "proc.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

uint64_t proc_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

pid_t proc_spawn(char *const argv[], const char *log)
{
	pid_t pid;
	int out, in;

	out = open(log ? log : "/dev/null", O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC,
	           0644);
	if (out < 0)
		return -errno;
	in = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (in < 0) {
		close(out);
		return -errno;
	}
	pid = fork();
	if (pid == 0) {
		sigset_t none;

		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		signal(SIGINT, SIG_DFL);
		signal(SIGTERM, SIG_DFL);
		signal(SIGPIPE, SIG_DFL);
		setpgid(0, 0);
		if (dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(out, 2) < 0)
			_exit(127);
		execv(argv[0], argv);
		fprintf(stderr, "cannot run %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	close(in);
	close(out);
	return pid < 0 ? -errno : pid;
}

static int decode(int st)
{
	if (WIFEXITED(st))
		return WEXITSTATUS(st);
	if (WIFSIGNALED(st))
		return 128 + WTERMSIG(st);
	return 255;
}

int proc_poll(pid_t pid)
{
	int st;
	pid_t r;

	do
		r = waitpid(pid, &st, WNOHANG);
	while (r < 0 && errno == EINTR);
	if (r == 0)
		return -EBUSY;
	if (r < 0)
		return -errno;
	return decode(st);
}

int proc_wait(pid_t pid, unsigned timeout_ms)
{
	uint64_t deadline = proc_now_ns() + (uint64_t)timeout_ms * 1000000ull;
	useconds_t nap = 200;

	for (;;) {
		int r = proc_poll(pid);

		if (r != -EBUSY)
			return r;
		if (proc_now_ns() >= deadline)
			return -ETIMEDOUT;
		usleep(nap);
		if (nap < 20000)
			nap *= 2;
	}
}

int proc_stop(pid_t pid, unsigned grace_ms)
{
	int r;

	if (pid <= 0)
		return -EINVAL;
	r = proc_poll(pid);
	if (r != -EBUSY)
		return r;
	kill(pid, SIGTERM);
	r = proc_wait(pid, grace_ms);
	if (r != -ETIMEDOUT)
		return r;
	kill(pid, SIGKILL);
	return proc_wait(pid, 5000);
}

int proc_run(char *const argv[], const char *log, unsigned timeout_ms)
{
	pid_t pid = proc_spawn(argv, log);
	int r;

	if (pid < 0)
		return pid;
	r = proc_wait(pid, timeout_ms);
	if (r == -ETIMEDOUT) {
		kill(pid, SIGKILL);
		proc_wait(pid, 5000);
	}
	return r;
}

int proc_list_tids(pid_t pid, int **out, size_t *n)
{
	char path[64];
	struct dirent *e;
	size_t cap = 0;
	int *v = NULL;
	DIR *d;

	*out = NULL;
	*n = 0;
	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	d = opendir(path);
	if (!d)
		return -errno;
	while ((e = readdir(d)) != NULL) {
		char *end;
		long tid = strtol(e->d_name, &end, 10);

		if (!isdigit((unsigned char)e->d_name[0]) || *end || tid <= 0)
			continue;
		if (*n == cap) {
			int *nv = realloc(v, (cap ? cap * 2 : 16) * sizeof(*v));

			if (!nv) {
				free(v);
				closedir(d);
				return -ENOMEM;
			}
			v = nv;
			cap = cap ? cap * 2 : 16;
		}
		v[(*n)++] = (int)tid;
	}
	closedir(d);
	*out = v;
	return *n ? 0 : -ESRCH;
}

/* Nanoseconds on a CPU of every live thread of pid (schedstat is exact,
 * where stat's utime/stime are sampled at clock ticks); -1 if unknown. */
static double schedstat_seconds(pid_t pid)
{
	unsigned long long sum = 0;
	bool any = false;
	size_t n;
	int *tids;

	if (proc_list_tids(pid, &tids, &n) < 0)
		return -1;
	for (size_t i = 0; i < n; i++) {
		char tpath[64];
		unsigned long long ns;
		FILE *f;

		snprintf(tpath, sizeof(tpath), "/proc/%d/task/%d/schedstat", (int)pid,
		         tids[i]);
		f = fopen(tpath, "re");
		if (!f)
			continue;
		if (fscanf(f, "%llu", &ns) == 1) {
			sum += ns;
			any = true;
		}
		fclose(f);
	}
	free(tids);
	return any ? (double)sum / 1e9 : -1;
}

double proc_cpu_seconds(pid_t pid)
{
	char path[64], buf[1024], *p;
	double exact = schedstat_seconds(pid);
	unsigned long long ut, st;
	ssize_t n;
	int fd;

	if (exact >= 0)
		return exact;
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	/* Fields 14 and 15, counted after the ")" that ends the name. */
	p = strrchr(buf, ')');
	if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
	                 &ut, &st) != 2)
		return -1;
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

uint64_t proc_peak_rss_kib(pid_t pid)
{
	char path[64], line[256];
	unsigned long long kib = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmHWM: %llu kB", &kib) == 1)
			break;
	fclose(f);
	return kib;
}
