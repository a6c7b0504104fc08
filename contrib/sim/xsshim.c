/* SPDX-License-Identifier: MIT */
/*
 * libvproxy-xsshim.so: LD_PRELOAD library that lets Debian's real xenstored
 * (xen-utils-4.17) run on a machine without Xen.
 *
 * It replaces only what xenstored asks of the hypervisor (the set comes from
 * `nm -D --undefined-only xenstored`): libxenctrl's interface handle and
 * domain info, libxengnttab's mapping of a guest's xenstore ring, libxenevtchn,
 * and the two /proc/xen files that describe dom0's own ring. Everything else,
 * the store, permissions, quotas, watches, transactions and the unix socket
 * protocol, is the real daemon.
 *
 * Every domid below DOMID_FIRST_RESERVED exists and runs, unless a test has
 * marked it dead. With VPROXY_XSSHIM_DIR set, a domain is dead while the file
 * $VPROXY_XSSHIM_DIR/dead/<domid> exists, and a byte written to the FIFO
 * $VPROXY_XSSHIM_DIR/dom-exc plays the hypervisor's VIRQ_DOM_EXC: xenstored
 * rescans its domains and runs its own cleanup of the dead ones, which fires
 * @releaseDomain exactly as a guest crash does. Without that variable no
 * domain ever dies and the event channel fd never becomes readable.
 *
 * Built without sanitizers: it runs inside an uninstrumented xenstored.
 */

/* glibc's fortified open() would be an inline wrapper clashing with ours. */
#undef _FORTIFY_SOURCE

#define XC_WANT_COMPAT_MAP_FOREIGN_API 1

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <xenctrl.h>
#include <xenevtchn.h>
#include <xengnttab.h>

/* The device nodes the Linux xenbus driver offers the xenstore domain. */
#define XSD_PORT_PATH "/proc/xen/xsd_port"
#define XSD_KVA_PATH "/proc/xen/xsd_kva"

/* What XSD_PORT_PATH reads as: dom0's xenstore event channel. */
#define XSD_PORT_TEXT "1"

#define SHIM_DIR_ENV "VPROXY_XSSHIM_DIR"
#define DOM_EXC_FIFO "dom-exc"
#define DEAD_SUBDIR "dead"

struct xc_interface_core {
	int unused;
};

struct xengntdev_handle {
	uint32_t max_grants;
};

struct xenevtchn_handle {
	int fd;
	/* A FIFO carries one byte per kick; an eventfd a 64-bit counter. */
	bool is_fifo;
	evtchn_port_t next_port;
	/* Port xenstored bound to VIRQ_DOM_EXC; what a readable fd means. */
	evtchn_port_t virq_port;
};

static size_t page_size(void)
{
	long sz = sysconf(_SC_PAGESIZE);

	return sz > 0 ? (size_t)sz : 4096;
}

static const char *shim_dir(void)
{
	const char *dir = getenv(SHIM_DIR_ENV);

	return dir && dir[0] ? dir : NULL;
}

static bool domain_is_dead(uint32_t domid)
{
	const char *dir = shim_dir();
	char path[PATH_MAX];
	int n;

	if (!dir)
		return false;
	n = snprintf(path, sizeof(path), "%s/%s/%u", dir, DEAD_SUBDIR, domid);
	if (n < 0 || (size_t)n >= sizeof(path))
		return false;
	return access(path, F_OK) == 0;
}

static bool domain_exists(uint32_t domid)
{
	return domid < DOMID_FIRST_RESERVED && !domain_is_dead(domid);
}

/* Zeroed, private memory standing in for a foreign or granted page. */
static void *map_zeroed(size_t len)
{
	void *addr = mmap(NULL, len, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	return addr == MAP_FAILED ? NULL : addr;
}

/* ---- libxenctrl ---- */

xc_interface *xc_interface_open(xentoollog_logger *logger,
				xentoollog_logger *dombuild_logger,
				unsigned open_flags)
{
	(void)logger;
	(void)dombuild_logger;
	(void)open_flags;
	return calloc(1, sizeof(struct xc_interface_core));
}

int xc_interface_close(xc_interface *xch)
{
	free(xch);
	return 0;
}

int xc_domain_getinfo(xc_interface *xch, uint32_t first_domid,
		      unsigned int max_doms, xc_dominfo_t *info)
{
	unsigned int n = 0;
	uint32_t domid;

	if (!xch) {
		errno = EINVAL;
		return -1;
	}
	/* Like Xen: the first max_doms existing domains from first_domid on. */
	for (domid = first_domid; domid < DOMID_FIRST_RESERVED && n < max_doms;
	     domid++) {
		if (!domain_exists(domid))
			continue;
		memset(&info[n], 0, sizeof(info[n]));
		info[n].domid = domid;
		info[n].running = 1;
		info[n].nr_online_vcpus = 1;
		n++;
	}
	return (int)n;
}

int xc_domain_getinfolist(xc_interface *xch, uint32_t first_domain,
			  unsigned int max_domains, xc_domaininfo_t *info)
{
	unsigned int n = 0;
	uint32_t domid;

	if (!xch) {
		errno = EINVAL;
		return -1;
	}
	for (domid = first_domain; domid < DOMID_FIRST_RESERVED &&
				   n < max_domains;
	     domid++) {
		if (!domain_exists(domid))
			continue;
		memset(&info[n], 0, sizeof(info[n]));
		info[n].domain = (domid_t)domid;
		info[n].flags = XEN_DOMINF_running;
		info[n].nr_online_vcpus = 1;
		n++;
	}
	return (int)n;
}

void *xc_map_foreign_range(xc_interface *xch, uint32_t dom, int size,
			   int prot, unsigned long mfn)
{
	(void)prot;
	(void)mfn;
	if (!xch || size <= 0 || !domain_exists(dom)) {
		errno = EINVAL;
		return NULL;
	}
	return map_zeroed((size_t)size);
}

/* ---- libxengnttab ---- */

xengnttab_handle *xengnttab_open(struct xentoollog_logger *logger,
				 unsigned open_flags)
{
	(void)logger;
	(void)open_flags;
	return calloc(1, sizeof(struct xengntdev_handle));
}

int xengnttab_close(xengnttab_handle *xgt)
{
	free(xgt);
	return 0;
}

int xengnttab_set_max_grants(xengnttab_handle *xgt, uint32_t nr_grants)
{
	if (!xgt) {
		errno = EINVAL;
		return -1;
	}
	xgt->max_grants = nr_grants;
	return 0;
}

void *xengnttab_map_grant_refs(xengnttab_handle *xgt, uint32_t count,
			       uint32_t *domids, uint32_t *refs, int prot)
{
	uint32_t i;

	(void)refs;
	(void)prot;
	if (!xgt || count == 0) {
		errno = EINVAL;
		return NULL;
	}
	if (xgt->max_grants && count > xgt->max_grants) {
		errno = E2BIG;
		return NULL;
	}
	for (i = 0; i < count; i++) {
		if (!domain_exists(domids[i])) {
			errno = ESRCH;
			return NULL;
		}
	}
	return map_zeroed((size_t)count * page_size());
}

void *xengnttab_map_grant_ref(xengnttab_handle *xgt, uint32_t domid,
			      uint32_t ref, int prot)
{
	return xengnttab_map_grant_refs(xgt, 1, &domid, &ref, prot);
}

int xengnttab_unmap(xengnttab_handle *xgt, void *start_address, uint32_t count)
{
	if (!xgt || !start_address || count == 0) {
		errno = EINVAL;
		return -1;
	}
	return munmap(start_address, (size_t)count * page_size());
}

/* ---- libxenevtchn ---- */

/*
 * The fd xenstored polls. With a shim dir it is the dom-exc FIFO, opened
 * read-write so it never reports EOF; otherwise an eventfd nobody signals.
 */
static int evtchn_open_fd(bool cloexec)
{
	const char *dir = shim_dir();
	char path[PATH_MAX];
	int n;

	if (!dir)
		return eventfd(0, EFD_NONBLOCK | (cloexec ? EFD_CLOEXEC : 0));

	n = snprintf(path, sizeof(path), "%s/%s", dir, DOM_EXC_FIFO);
	if (n < 0 || (size_t)n >= sizeof(path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	if (mkfifo(path, 0600) == -1 && errno != EEXIST)
		return -1;
	return openat(AT_FDCWD, path,
		      O_RDWR | O_NONBLOCK | (cloexec ? O_CLOEXEC : 0));
}

static xenevtchn_handle *evtchn_wrap(int fd)
{
	xenevtchn_handle *xce = calloc(1, sizeof(*xce));
	struct stat st;

	if (!xce)
		return NULL;
	xce->fd = fd;
	xce->is_fifo = fstat(fd, &st) == 0 && S_ISFIFO(st.st_mode);
	/* Port 0 means "unbound" to xenstored. */
	xce->next_port = 1;
	return xce;
}

xenevtchn_handle *xenevtchn_open(struct xentoollog_logger *logger,
				 unsigned int flags)
{
	xenevtchn_handle *xce;
	int fd;

	(void)logger;
	fd = evtchn_open_fd(!(flags & XENEVTCHN_NO_CLOEXEC));
	if (fd == -1)
		return NULL;
	xce = evtchn_wrap(fd);
	if (!xce)
		close(fd);
	return xce;
}

/* Live update hands the new xenstored the old one's evtchn fd. */
xenevtchn_handle *xenevtchn_fdopen(struct xentoollog_logger *logger, int fd,
				   unsigned open_flags)
{
	(void)logger;
	if (fd < 0 || (open_flags & XENEVTCHN_NO_CLOEXEC)) {
		errno = EINVAL;
		return NULL;
	}
	return evtchn_wrap(fd);
}

int xenevtchn_close(xenevtchn_handle *xce)
{
	if (!xce)
		return 0;
	close(xce->fd);
	free(xce);
	return 0;
}

int xenevtchn_fd(xenevtchn_handle *xce)
{
	return xce->fd;
}

static xenevtchn_port_or_error_t evtchn_new_port(xenevtchn_handle *xce)
{
	if (!xce) {
		errno = EINVAL;
		return -1;
	}
	if (xce->next_port >= INT_MAX) {
		errno = ENOSPC;
		return -1;
	}
	return (xenevtchn_port_or_error_t)xce->next_port++;
}

xenevtchn_port_or_error_t xenevtchn_bind_unbound_port(xenevtchn_handle *xce,
						      uint32_t domid)
{
	if (!domain_exists(domid)) {
		errno = ESRCH;
		return -1;
	}
	return evtchn_new_port(xce);
}

xenevtchn_port_or_error_t xenevtchn_bind_interdomain(xenevtchn_handle *xce,
						     uint32_t domid,
						     evtchn_port_t remote_port)
{
	if (remote_port == 0) {
		errno = EINVAL;
		return -1;
	}
	return xenevtchn_bind_unbound_port(xce, domid);
}

xenevtchn_port_or_error_t xenevtchn_bind_virq(xenevtchn_handle *xce,
					      unsigned int virq)
{
	xenevtchn_port_or_error_t port = evtchn_new_port(xce);

	if (port != -1 && virq == VIRQ_DOM_EXC)
		xce->virq_port = (evtchn_port_t)port;
	return port;
}

int xenevtchn_unbind(xenevtchn_handle *xce, evtchn_port_t port)
{
	if (!xce || port == 0 || port >= xce->next_port) {
		errno = EINVAL;
		return -1;
	}
	if (port == xce->virq_port)
		xce->virq_port = 0;
	return 0;
}

/* Nobody listens on the guest side: the notification goes nowhere. */
int xenevtchn_notify(xenevtchn_handle *xce, evtchn_port_t port)
{
	if (!xce || port == 0 || port >= xce->next_port) {
		errno = EINVAL;
		return -1;
	}
	return 0;
}

xenevtchn_port_or_error_t xenevtchn_pending(xenevtchn_handle *xce)
{
	uint64_t buf;
	ssize_t n;

	if (!xce) {
		errno = EINVAL;
		return -1;
	}
	n = read(xce->fd, &buf, xce->is_fifo ? 1 : sizeof(buf));
	if (n <= 0) {
		if (n == 0)
			errno = EAGAIN;
		return -1;
	}
	if (!xce->virq_port) {
		errno = EAGAIN;
		return -1;
	}
	return (xenevtchn_port_or_error_t)xce->virq_port;
}

int xenevtchn_unmask(xenevtchn_handle *xce, evtchn_port_t port)
{
	if (!xce || port == 0 || port >= xce->next_port) {
		errno = EINVAL;
		return -1;
	}
	return 0;
}

/* ---- /proc/xen and process limits ---- */

/* A memfd holding len bytes of text (or zeroes), positioned at 0. */
static int memfd_with(const char *name, const char *text, size_t len)
{
	int fd = memfd_create(name, MFD_CLOEXEC);

	if (fd == -1)
		return -1;
	if (ftruncate(fd, (off_t)len) == -1)
		goto fail;
	if (text && pwrite(fd, text, strlen(text), 0) != (ssize_t)strlen(text))
		goto fail;
	return fd;
fail:
	close(fd);
	return -1;
}

static int shim_open(const char *path, int flags, mode_t mode)
{
	if (path && strcmp(path, XSD_PORT_PATH) == 0)
		return memfd_with("xsd_port", XSD_PORT_TEXT,
				  strlen(XSD_PORT_TEXT));
	/* xenstored mmaps one page of it as dom0's xenstore ring. */
	if (path && strcmp(path, XSD_KVA_PATH) == 0)
		return memfd_with("xsd_kva", NULL, page_size());
	return openat(AT_FDCWD, path, flags, mode);
}

static mode_t open_mode(int flags, va_list ap)
{
	if ((flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE)
		return (mode_t)va_arg(ap, int);
	return 0;
}

int open(const char *path, int flags, ...)
{
	va_list ap;
	mode_t mode;

	va_start(ap, flags);
	mode = open_mode(flags, ap);
	va_end(ap);
	return shim_open(path, flags, mode);
}

int open64(const char *path, int flags, ...)
{
	va_list ap;
	mode_t mode;

	va_start(ap, flags);
	mode = open_mode(flags, ap);
	va_end(ap);
	return shim_open(path, flags, mode);
}

/*
 * xenstored raises RLIMIT_NOFILE to what it wants for its domains and
 * sockets, more than an unprivileged or containerised hard limit allows;
 * clamp to the hard limit instead of failing. (4.17 does not call this yet;
 * later xenstoreds do.)
 */
int setrlimit(__rlimit_resource_t resource, const struct rlimit *rlim)
{
	struct rlimit want, cur;

	want = *rlim;
	if (resource == RLIMIT_NOFILE &&
	    prlimit(0, RLIMIT_NOFILE, NULL, &cur) == 0) {
		if (want.rlim_max > cur.rlim_max)
			want.rlim_max = cur.rlim_max;
		if (want.rlim_cur > want.rlim_max)
			want.rlim_cur = want.rlim_max;
	}
	return prlimit(0, resource, &want, NULL);
}
