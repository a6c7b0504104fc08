/* SPDX-License-Identifier: MIT */
/*
 * A private xenstored for unit tests that need a real one (unit.xsbus,
 * unit.stub_xs): Debian's, run with the sim shim in a temporary directory
 * (XENSTORED_PATH is set for libxenstore), stopped by PID when the test
 * runner exits or is signalled, the directory removed.  Include once, in
 * the test's own file.
 */
#ifndef VP_TEST_XS_DAEMON_H
#define VP_TEST_XS_DAEMON_H

#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>
#include <xenstore.h>

#ifndef XS_DAEMON_PROG
#define XS_DAEMON_PROG "test"
#endif
#ifndef SIM_DIR
#define SIM_DIR VP_TEST_BIN_DIR "/contrib/sim"
#endif

/* ---- a private xenstored ---- */

static char xs_dir[] = "/tmp/vproxy-unit-xs.XXXXXX";
static bool xs_dir_made;
static pid_t xs_pid = -1;
static pid_t owner; /* Check forks each test: only the runner stops it */

/* The xenstored binary, or "" (xenstored-sim.sh's own search). */
static void find_xenstored(char *out, size_t len)
{
	FILE *f = popen("bash " VP_TEST_SRC_DIR "/contrib/sim/xenstored-sim.sh find "
	                "2>/dev/null",
	                "r");

	out[0] = '\0';
	if (!f)
		return;
	if (!fgets(out, (int)len, f))
		out[0] = '\0';
	out[strcspn(out, "\n")] = '\0';
	pclose(f);
}

static void stop_xenstored(void)
{
	char cmd[sizeof(xs_dir) + 16];

	if (getpid() != owner)
		return;
	if (xs_pid > 0) {
		kill(xs_pid, SIGTERM);
		waitpid(xs_pid, NULL, 0);
		xs_pid = -1;
	}
	if (xs_dir_made) {
		xs_dir_made = false;
		snprintf(cmd, sizeof(cmd), "rm -rf %s", xs_dir);
		if (system(cmd) != 0)
			fprintf(stderr, XS_DAEMON_PROG ": cannot remove %s\n", xs_dir);
	}
}

static void on_signal(int sig)
{
	stop_xenstored();
	signal(sig, SIG_DFL);
	raise(sig);
}

/* 0, or -1 with a reason on stderr. */
static int start_xenstored(const char *bin)
{
	char sock[sizeof(xs_dir) + 32], trace[sizeof(xs_dir) + 32],
	        log[sizeof(xs_dir) + 32];
	pid_t parent = getpid();

	owner = parent;
	if (!mkdtemp(xs_dir)) {
		perror("mkdtemp");
		return -1;
	}
	xs_dir_made = true;
	atexit(stop_xenstored);
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	snprintf(sock, sizeof(sock), "%s/xenstored.sock", xs_dir);
	snprintf(trace, sizeof(trace), "%s/trace.log", xs_dir);
	snprintf(log, sizeof(log), "%s/xenstored.log", xs_dir);
	setenv("XENSTORED_PATH", sock, 1);
	setenv("XENSTORED_RUNDIR", xs_dir, 1);
	setenv("VPROXY_XSSHIM_DIR", xs_dir, 1);
	xs_pid = fork();
	if (xs_pid < 0) {
		perror("fork");
		return -1;
	}
	if (xs_pid == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);

		/* Gone with us, however we end. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(1);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		close(0);
		setenv("LD_PRELOAD", SIM_DIR "/libvproxy-xsshim.so", 1);
		/* Not -D: see docs/TESTING.md. */
		execl(bin, bin, "-N", "-T", trace, (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 200; i++) {
		struct xs_handle *xs = xs_open(0);

		if (xs) {
			bool ok =
			        xs_write(xs, XBT_NULL, "/local/domain/0/domid", "0", 1) &&
			        xs_write(xs, XBT_NULL, "/local/domain/0/name", "Domain-0",
			                 8);

			xs_close(xs);
			if (ok)
				return 0;
		}
		if (waitpid(xs_pid, NULL, WNOHANG) == xs_pid) {
			xs_pid = -1;
			fprintf(stderr, XS_DAEMON_PROG ": xenstored exited (log in %s)\n",
			        log);
			return -1;
		}
		usleep(50000);
	}
	fprintf(stderr, XS_DAEMON_PROG ": xenstored did not answer within 10 s\n");
	return -1;
}

/* Find and start xenstored for main(): 0 when it runs; otherwise the exit
 * status main() should return: 77 (skipped) where no xenstored is found,
 * unless VPROXY_REQUIRE_XENSTORED=1 makes that a failure, and a failure
 * when it does not start. */
static int xs_daemon_start_or_skip(void)
{
	char bin[512];
	const char *req;

	find_xenstored(bin, sizeof(bin));
	if (bin[0])
		return start_xenstored(bin) ? EXIT_FAILURE : 0;
	req = getenv("VPROXY_REQUIRE_XENSTORED");
	printf("SKIP: no xenstored (see contrib/sim/xenstored-sim.sh find)\n");
	return req && strcmp(req, "1") == 0 ? EXIT_FAILURE : 77;
}

#endif
