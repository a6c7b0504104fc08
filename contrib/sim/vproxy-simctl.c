/* SPDX-License-Identifier: MIT */
/*
 * vproxy-simctl: the simulator's toolstack. It does to xenstore what xl does
 * over a domain's life, so that backends see guests come and go exactly as on
 * Xen: create writes the domain's nodes and introduces it (@introduceDomain),
 * destroy removes them and releases it (@releaseDomain), kill makes the
 * domain vanish from the (faked) hypervisor so that xenstored's own cleanup
 * runs, as after a guest crash.
 *
 * It talks to the xenstored named by XENSTORED_PATH, normally one started by
 * xenstored-sim.sh with the LD_PRELOAD shim, which fakes the grant mapping and
 * event channel binding that introduction asks for.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <xen/xen.h>
#include <xenstore.h>

#define PROG "vproxy-simctl"

/* 0 is dom0, never created; DOMID_FIRST_RESERVED and above are not
 * ordinary domains. */
#define DOMID_MIN 1u
#define DOMID_MAX (DOMID_FIRST_RESERVED - 1u)

/* Any values do: the shim maps a zeroed page and binds nothing. */
#define FAKE_STORE_MFN 0xfeffcul
#define FAKE_STORE_PORT 1u

/* How long one command may wait on an unresponsive xenstored. */
#define REQUEST_TIMEOUT_S 30u

/* Shared with xsshim.c: where dead domains are marked and dom-exc kicked. */
#define SHIM_DIR_ENV "VPROXY_XSSHIM_DIR"
#define DOM_EXC_FIFO "dom-exc"
#define DEAD_SUBDIR "dead"

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, PROG ": ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static void usage(FILE *out)
{
	fprintf(out,
		"usage: " PROG " create <domid> <name>   write the domain's nodes and introduce it\n"
		"       " PROG " destroy <domid>         remove its nodes and release it\n"
		"       " PROG " kill <domid>            make it vanish as in a crash (needs " SHIM_DIR_ENV ")\n"
		"       " PROG " list                    list /local/domain\n"
		"domid is 1..%u. xenstored is found through XENSTORED_PATH.\n",
		DOMID_MAX);
}

static void on_alarm(int sig)
{
	static const char msg[] = PROG ": xenstored did not answer in time\n";
	ssize_t n;

	(void)sig;
	n = write(STDERR_FILENO, msg, sizeof(msg) - 1);
	(void)n;
	_exit(1);
}

/* A stopped or wedged xenstored would otherwise hang the caller forever. */
static void arm_timeout(unsigned seconds)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_alarm;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGALRM, &sa, NULL);
	alarm(seconds);
}

static unsigned parse_domid(const char *text)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(text, &end, 10);
	if (errno || end == text || *end || text[0] == '-' || text[0] == '+' ||
	    v < DOMID_MIN || v > DOMID_MAX)
		die("domid must be a number in %u..%u, got '%s'", DOMID_MIN,
		    DOMID_MAX, text);
	return (unsigned)v;
}

static unsigned parse_timeout(const char *text)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(text, &end, 10);
	if (errno || end == text || *end || text[0] == '-' || v == 0 || v > 3600)
		die("timeout must be 1..3600 seconds, got '%s'", text);
	return (unsigned)v;
}

static const char *xenstored_socket(char *buf, size_t len)
{
	const char *path = getenv("XENSTORED_PATH");
	const char *rundir = getenv("XENSTORED_RUNDIR");

	if (path && path[0])
		return path;
	snprintf(buf, len, "%s/socket", rundir && rundir[0] ? rundir : "/var/run/xenstored");
	return buf;
}

static struct xs_handle *open_store(void)
{
	char buf[PATH_MAX];
	struct xs_handle *xs = xs_open(0);

	if (!xs)
		die("cannot reach xenstored at %s: %s (is it running? set XENSTORED_PATH)",
		    xenstored_socket(buf, sizeof(buf)), strerror(errno));
	return xs;
}

static void fmt_path(char *buf, size_t len, const char *fmt, unsigned domid)
{
	int n = snprintf(buf, len, fmt, domid);

	if (n < 0 || (size_t)n >= len)
		die("path too long");
}

/* ---- the shim's side door: dead-domain marks and VIRQ_DOM_EXC ---- */

static const char *shim_dir(void)
{
	const char *dir = getenv(SHIM_DIR_ENV);

	return dir && dir[0] ? dir : NULL;
}

static bool dead_mark_path(char *buf, size_t len, unsigned domid)
{
	const char *dir = shim_dir();
	int n;

	if (!dir)
		return false;
	n = snprintf(buf, len, "%s/%s/%u", dir, DEAD_SUBDIR, domid);
	return n >= 0 && (size_t)n < len;
}

static void mark_dead(unsigned domid, bool dead)
{
	char path[PATH_MAX];
	char sub[PATH_MAX];
	int fd;

	if (!dead_mark_path(path, sizeof(path), domid))
		return;
	if (!dead) {
		if (unlink(path) == -1 && errno != ENOENT)
			die("cannot remove %s: %s", path, strerror(errno));
		return;
	}
	snprintf(sub, sizeof(sub), "%s/%s", shim_dir(), DEAD_SUBDIR);
	if (mkdir(sub, 0700) == -1 && errno != EEXIST)
		die("cannot create %s: %s", sub, strerror(errno));
	fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	if (fd == -1)
		die("cannot create %s: %s", path, strerror(errno));
	close(fd);
}

/* Play the hypervisor's VIRQ_DOM_EXC: xenstored rescans its domains. */
static void kick_dom_exc(void)
{
	char path[PATH_MAX];
	const char *dir = shim_dir();
	int fd;

	if (!dir)
		return;
	snprintf(path, sizeof(path), "%s/%s", dir, DOM_EXC_FIFO);
	fd = open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
	if (fd == -1)
		die("cannot open %s: %s (is xenstored running with %s=%s?)", path,
		    strerror(errno), SHIM_DIR_ENV, dir);
	if (write(fd, "x", 1) != 1)
		die("cannot write %s: %s", path, strerror(errno));
	close(fd);
}

/* ---- create / destroy / kill ---- */

static void mkdir_perms(struct xs_handle *xs, xs_transaction_t t, const char *path,
			struct xs_permissions *perms, unsigned nperms)
{
	if (!xs_mkdir(xs, t, path))
		die("cannot create %s: %s", path, strerror(errno));
	if (!xs_set_permissions(xs, t, path, perms, nperms))
		die("cannot set permissions of %s: %s", path, strerror(errno));
}

static void write_str(struct xs_handle *xs, xs_transaction_t t, const char *path,
		      const char *value)
{
	if (!xs_write(xs, t, path, value, (unsigned)strlen(value)))
		die("cannot write %s: %s", path, strerror(errno));
}

/*
 * The nodes xl writes for a new domain that backends and frontends rely on:
 * the domain directory (dom0 owns, guest reads), its device directory, a
 * data directory the guest may write, name, domid, store details, and the
 * /vm/<uuid> entry. Returns false if the transaction must be retried.
 */
static bool create_nodes(struct xs_handle *xs, unsigned domid, const char *name)
{
	struct xs_permissions ro[2] = {
		{.id = 0, .perms = XS_PERM_NONE},
		{.id = domid, .perms = XS_PERM_READ},
	};
	struct xs_permissions rw[1] = {
		{.id = domid, .perms = XS_PERM_NONE},
	};
	char dom[64], vm[64], path[128], value[64];
	xs_transaction_t t;

	fmt_path(dom, sizeof(dom), "/local/domain/%u", domid);
	/* A uuid derived from the domid: stable, unique among live domains. */
	fmt_path(vm, sizeof(vm), "/vm/00000000-0000-0000-0000-0000%08x", domid);

	t = xs_transaction_start(xs);
	if (t == XBT_NULL)
		die("cannot start a transaction: %s", strerror(errno));

	mkdir_perms(xs, t, dom, ro, 2);
	snprintf(path, sizeof(path), "%s/device", dom);
	mkdir_perms(xs, t, path, ro, 2);
	snprintf(path, sizeof(path), "%s/control", dom);
	mkdir_perms(xs, t, path, ro, 2);
	snprintf(path, sizeof(path), "%s/data", dom);
	mkdir_perms(xs, t, path, rw, 1);
	snprintf(path, sizeof(path), "%s/name", dom);
	write_str(xs, t, path, name);
	snprintf(path, sizeof(path), "%s/domid", dom);
	snprintf(value, sizeof(value), "%u", domid);
	write_str(xs, t, path, value);
	snprintf(path, sizeof(path), "%s/vm", dom);
	write_str(xs, t, path, vm);
	snprintf(path, sizeof(path), "%s/store/port", dom);
	snprintf(value, sizeof(value), "%u", FAKE_STORE_PORT);
	write_str(xs, t, path, value);
	snprintf(path, sizeof(path), "%s/store/ring-ref", dom);
	snprintf(value, sizeof(value), "%lu", FAKE_STORE_MFN);
	write_str(xs, t, path, value);

	mkdir_perms(xs, t, vm, ro, 2);
	snprintf(path, sizeof(path), "%s/name", vm);
	write_str(xs, t, path, name);
	snprintf(path, sizeof(path), "%s/uuid", vm);
	write_str(xs, t, path, vm + strlen("/vm/"));

	if (xs_transaction_end(xs, t, false))
		return true;
	if (errno == EAGAIN)
		return false;
	die("cannot commit domain %u's nodes: %s", domid, strerror(errno));
}

static int cmd_create(unsigned domid, const char *name)
{
	struct xs_handle *xs;

	if (!name[0])
		die("a domain name is required");
	if (strchr(name, '/') || strlen(name) > 64)
		die("domain name must be at most 64 characters and contain no '/'");

	xs = open_store();
	if (xs_is_domain_introduced(xs, domid))
		die("domain %u already exists", domid);

	mark_dead(domid, false);
	while (!create_nodes(xs, domid, name))
		;
	if (!xs_introduce_domain(xs, domid, FAKE_STORE_MFN, FAKE_STORE_PORT))
		die("xenstored refused to introduce domain %u: %s", domid,
		    strerror(errno));
	if (!xs_is_domain_introduced(xs, domid))
		die("domain %u is not introduced after introduction", domid);
	xs_close(xs);
	printf("created domain %u (%s)\n", domid, name);
	return 0;
}

static int cmd_destroy(unsigned domid)
{
	struct xs_handle *xs = open_store();
	char dom[64], path[128];
	bool introduced = xs_is_domain_introduced(xs, domid);
	char *vm, *dir;
	unsigned len;

	fmt_path(dom, sizeof(dom), "/local/domain/%u", domid);
	snprintf(path, sizeof(path), "%s/vm", dom);
	vm = xs_read(xs, XBT_NULL, path, &len);
	dir = xs_read(xs, XBT_NULL, dom, &len);
	free(dir);
	if (!introduced && !dir)
		die("no domain %u", domid);

	/* xl's order: the toolstack's nodes go first, then the domain. */
	if (!xs_rm(xs, XBT_NULL, dom) && errno != ENOENT)
		die("cannot remove %s: %s", dom, strerror(errno));
	if (vm && strncmp(vm, "/vm/", 4) == 0 && !xs_rm(xs, XBT_NULL, vm) &&
	    errno != ENOENT)
		die("cannot remove %s: %s", vm, strerror(errno));
	free(vm);

	if (introduced && !xs_release_domain(xs, domid))
		die("xenstored refused to release domain %u: %s", domid,
		    strerror(errno));
	if (xs_is_domain_introduced(xs, domid))
		die("domain %u is still introduced after release", domid);
	xs_close(xs);

	/* The domain is gone from the hypervisor too, as after xl destroy. */
	if (shim_dir()) {
		mark_dead(domid, true);
		kick_dom_exc();
	}
	printf("destroyed domain %u\n", domid);
	return 0;
}

static int cmd_kill(unsigned domid)
{
	struct xs_handle *xs;
	struct timespec pause = {.tv_sec = 0, .tv_nsec = 10 * 1000 * 1000};
	unsigned i;

	if (!shim_dir())
		die("kill needs %s, the directory xenstored-sim.sh started xenstored in",
		    SHIM_DIR_ENV);
	xs = open_store();
	if (!xs_is_domain_introduced(xs, domid))
		die("domain %u is not introduced", domid);
	mark_dead(domid, true);
	kick_dom_exc();
	/* Return once xenstored has noticed, so callers need not poll. */
	for (i = 0; i < 500; i++) {
		if (!xs_is_domain_introduced(xs, domid)) {
			xs_close(xs);
			printf("killed domain %u\n", domid);
			return 0;
		}
		nanosleep(&pause, NULL);
	}
	die("xenstored did not notice that domain %u died", domid);
}

/* ---- list ---- */

static int cmp_domid(const void *a, const void *b)
{
	unsigned long x = strtoul(*(char *const *)a, NULL, 10);
	unsigned long y = strtoul(*(char *const *)b, NULL, 10);

	return (x > y) - (x < y);
}

static int cmd_list(void)
{
	struct xs_handle *xs = open_store();
	unsigned n, i, len;
	char **ents = xs_directory(xs, XBT_NULL, "/local/domain", &n);

	if (!ents) {
		if (errno != ENOENT)
			die("cannot list /local/domain: %s", strerror(errno));
		n = 0;
	}
	if (n)
		qsort(ents, n, sizeof(*ents), cmp_domid);
	printf("%-6s %-24s %s\n", "domid", "name", "introduced");
	for (i = 0; i < n; i++) {
		char path[128];
		char *name;
		unsigned long domid = strtoul(ents[i], NULL, 10);

		snprintf(path, sizeof(path), "/local/domain/%s/name", ents[i]);
		name = xs_read(xs, XBT_NULL, path, &len);
		printf("%-6s %-24s %s\n", ents[i], name ? name : "-",
		       xs_is_domain_introduced(xs, (unsigned)domid) ? "yes" : "no");
		free(name);
	}
	free(ents);
	xs_close(xs);
	return 0;
}

/* ---- wait-introduce / wait-release (for tests) ---- */

static long ms_left(const struct timespec *deadline)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (deadline->tv_sec - now.tv_sec) * 1000 +
	       (deadline->tv_nsec - now.tv_nsec) / 1000000;
}

/*
 * Block until the next watch event or the deadline; false on timeout.
 * Returns the event's path in *path (caller frees).
 */
static bool next_event(struct xs_handle *xs, const struct timespec *deadline,
		       char **path)
{
	struct pollfd pfd = {.fd = xs_fileno(xs), .events = POLLIN};

	for (;;) {
		char **vec = xs_check_watch(xs);
		long left;

		if (vec) {
			*path = strdup(vec[XS_WATCH_PATH]);
			free(vec);
			if (!*path)
				die("out of memory");
			return true;
		}
		if (errno != EAGAIN)
			die("reading watch events: %s", strerror(errno));
		left = ms_left(deadline);
		if (left <= 0)
			return false;
		if (poll(&pfd, 1, left > INT_MAX ? INT_MAX : (int)left) == -1 &&
		    errno != EINTR)
			die("poll: %s", strerror(errno));
	}
}

/*
 * Watch @introduceDomain or @releaseDomain and return once an event after
 * the initial one finds domid introduced (or released). Prints "watching"
 * once the watch is registered, so a test can act only after that; the
 * state is checked only on events, so success proves the watch fired.
 */
static int cmd_wait(bool introduce, unsigned domid, unsigned timeout_s)
{
	const char *node = introduce ? "@introduceDomain" : "@releaseDomain";
	struct xs_handle *xs = open_store();
	struct timespec deadline;
	char *path;

	if (!xs_watch(xs, node, "simctl"))
		die("cannot watch %s: %s", node, strerror(errno));
	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += timeout_s;

	if (!next_event(xs, &deadline, &path))
		die("no initial event for the %s watch within %u s", node, timeout_s);
	free(path);
	printf("watching %s\n", node);
	fflush(stdout);

	while (next_event(xs, &deadline, &path)) {
		bool fired = strcmp(path, node) == 0;

		free(path);
		if (fired && xs_is_domain_introduced(xs, domid) == introduce) {
			printf("%s domain %u\n", introduce ? "introduced" : "released", domid);
			xs_close(xs);
			return 0;
		}
	}
	die("no %s event for domain %u within %u s", node, domid, timeout_s);
}

int main(int argc, char **argv)
{
	const char *cmd = argc > 1 ? argv[1] : "";

	if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
		usage(stdout);
		return 0;
	}
	if (!strcmp(cmd, "create") && argc == 4) {
		unsigned domid = parse_domid(argv[2]);

		arm_timeout(REQUEST_TIMEOUT_S);
		return cmd_create(domid, argv[3]);
	}
	if (!strcmp(cmd, "destroy") && argc == 3) {
		unsigned domid = parse_domid(argv[2]);

		arm_timeout(REQUEST_TIMEOUT_S);
		return cmd_destroy(domid);
	}
	if (!strcmp(cmd, "kill") && argc == 3) {
		unsigned domid = parse_domid(argv[2]);

		arm_timeout(REQUEST_TIMEOUT_S);
		return cmd_kill(domid);
	}
	if (!strcmp(cmd, "list") && argc == 2) {
		arm_timeout(REQUEST_TIMEOUT_S);
		return cmd_list();
	}
	if ((!strcmp(cmd, "wait-introduce") || !strcmp(cmd, "wait-release")) &&
	    argc == 4) {
		unsigned domid = parse_domid(argv[2]);
		unsigned timeout_s = parse_timeout(argv[3]);

		arm_timeout(timeout_s + REQUEST_TIMEOUT_S);
		return cmd_wait(!strcmp(cmd, "wait-introduce"), domid, timeout_s);
	}
	if (!strcmp(cmd, "create") && argc == 3)
		die("a domain name is required: " PROG " create <domid> <name>");
	usage(stderr);
	return 2;
}
