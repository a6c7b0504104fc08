/* SPDX-License-Identifier: MIT */
/* Plugin host: loading plugin .so files, the host table handed to them,
 * opening and closing disks (off the loop thread for plugins that allow
 * it) and device parameters.  Sizes are parsed by common/size.c. */
#include "plugin_host.h"

#include <dlfcn.h>
#include <errno.h>
#include <event2/event.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "size.h"

/* One dlopen'ed plugin, kept until vp_plugin_unload_all(). */
struct loaded_plugin {
	struct loaded_plugin *next;
	char *name;
	void *dl;
	const struct vproxy_plugin *plugin;
};

/* One key=value of a device, with the config line that set it. */
struct param {
	char *key;
	char *value;
	int line;
};

struct vproxy_params {
	struct param *v; /* in the order keys were first set */
	size_t n;
	size_t cap;
};

struct fd_watch;

/* The host's side of one disk opened through vp_plugin_open(): the ABI 2
 * handle the plugin is given (ABI 1 plugins are not shown it), kept until
 * vp_plugin_close(). */
struct disk_host {
	struct vproxy_disk_host pub; /* first: plugins get &pub */
	const struct vproxy_plugin *plugin;
	void *disk; /* the plugin's, once open() succeeded */
	struct vp_ratelimit rl;
	/* The watches this disk's open() registered: started once an
	 * off-loop open() returned, stopped before an off-loop close(). */
	struct fd_watch *watches;
	struct disk_host *next;
	char label[]; /* pub.label points here */
};

/* A host->fd_watch() registration. */
struct fd_watch {
	struct event *ev; /* NULL until registered with the loop */
	int fd;
	void (*cb)(int fd, void *arg);
	void *arg;
	bool dead;              /* unwatched off the loop: the loop frees it */
	struct disk_host *owner; /* whose open() registered it, or NULL */
	struct fd_watch *next;  /* in owner->watches */
};

/* An open or close on a helper thread. */
struct vp_plugin_job {
	bool is_close;
	struct disk_host *d;
	const struct vproxy_params *params;
	int read_only;
	int rc;
	void *disk;
	struct vproxy_disk_info info;
	char err[256];
	vp_plugin_opened_fn opened; /* NULL: abandoned, close when open */
	void *arg;
	struct vp_plugin_job *next;     /* in the queue, then the done list */
	struct vp_plugin_job *all_next; /* in jobs_all (loop thread only) */
};

/* At most this many opens and closes run at once; more wait in line.
 * Separate threads so that one disk waiting for its lock delays neither
 * the loop nor (up to this many) other disks. */
#define HELPERS_MAX 4u

/* The helper threads.  queue, done, idle and stopping are under lock. */
static struct {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct vp_plugin_job *queue, *queue_tail;
	struct vp_plugin_job *done;
	pthread_t threads[HELPERS_MAX];
	unsigned nthreads;
	unsigned idle;
	bool stopping;
	int efd;           /* a helper finished a job: the loop looks at done */
	struct event *ev;  /* efd in the loop */
} helpers = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, .efd = -1};

/* Jobs started and not finished, loop thread only. */
static struct vp_plugin_job *jobs_all;
static unsigned jobs_pending;
static void (*idle_cb)(void *arg);
static void *idle_arg;

/* The disk whose open() or close() this thread is running, and whether
 * the thread is a helper (host calls then must not touch the loop). */
static __thread struct disk_host *tls_disk;
static __thread bool tls_helper;

/* Plugins log from helper threads too: one message at a time, and each
 * disk's rate limiter touched by one thread at a time. */
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

static struct loaded_plugin *loaded;
static struct disk_host *open_disks;
static struct event_base *watch_base;

void vp_plugin_set_event_base(struct event_base *base)
{
	/* Jobs still pending complete into no loop: they were abandoned. */
	if (helpers.ev && base != watch_base) {
		event_free(helpers.ev);
		helpers.ev = NULL;
	}
	watch_base = base;
}

/* ---- host table ---- */

/* A plugin's message, with its disk's guest, device and label when it
 * names one (ABI 2), else "plugin:" (ABI 1).  Open and close may run on
 * helper threads: one lock keeps the rate limiters single-threaded. */
static void plugin_vlog(struct disk_host *d, enum vproxy_log_level level, const char *fmt,
			va_list ap) __attribute__((format(printf, 3, 0)));

static void plugin_vlog(struct disk_host *d, enum vproxy_log_level level, const char *fmt,
			va_list ap)
{
	char msg[900];

	/* A plugin built against a newer header may pass a level we do not
	 * know; never index past our level names with it. */
	if ((unsigned)level > VPROXY_LOG_DEBUG)
		level = VPROXY_LOG_DEBUG;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	pthread_mutex_lock(&log_lock);
	if (!d)
		vp_log(level, "plugin: %s", msg);
	else
		vp_log_dev(&d->rl, level, d->pub.domid, d->pub.devid,
			   "plugin %s [device %s]: %s", d->pub.plugin, d->pub.label, msg);
	pthread_mutex_unlock(&log_lock);
}

static void host_log(enum vproxy_log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void host_log(enum vproxy_log_level level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	plugin_vlog(NULL, level, fmt, ap);
	va_end(ap);
}

static void host_disk_log(const struct vproxy_disk_host *dh, enum vproxy_log_level level,
			  const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void host_disk_log(const struct vproxy_disk_host *dh, enum vproxy_log_level level,
			  const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	plugin_vlog((struct disk_host *)dh, level, fmt, ap);
	va_end(ap);
}

static void host_complete(struct vproxy_req *req, int status)
{
	struct vp_req_owner *owner = req->host_priv;

	owner->complete(req, status);
}

static const char *host_param(const struct vproxy_params *params, const char *key)
{
	return vp_params_get(params, key);
}

static void fd_watch_fire(evutil_socket_t fd, short what, void *arg)
{
	struct fd_watch *w = arg;

	(void)what;
	w->cb((int)fd, w->arg);
}

/* Register w with the loop.  Loop thread only.  0 or -ENOMEM. */
static int watch_start(struct fd_watch *w)
{
	w->ev = event_new(watch_base, w->fd, EV_READ | EV_PERSIST, fd_watch_fire, w);
	if (!w->ev)
		return -ENOMEM;
	if (event_add(w->ev, NULL) < 0) {
		event_free(w->ev);
		w->ev = NULL;
		return -ENOMEM;
	}
	return 0;
}

static void watch_free(struct fd_watch *w)
{
	if (w->ev)
		event_free(w->ev);
	free(w);
}

static void watch_unlink(struct fd_watch *w)
{
	if (!w->owner)
		return;
	for (struct fd_watch **pp = &w->owner->watches; *pp; pp = &(*pp)->next) {
		if (*pp == w) {
			*pp = w->next;
			break;
		}
	}
	w->owner = NULL;
}

static void *host_fd_watch(int fd, void (*cb)(int fd, void *arg), void *arg)
{
	struct fd_watch *w;

	if (!watch_base || fd < 0 || !cb)
		return NULL;
	w = calloc(1, sizeof(*w));
	if (!w)
		return NULL;
	w->fd = fd;
	w->cb = cb;
	w->arg = arg;
	/* Off the loop only noted: the loop starts it when open() is done. */
	if (!tls_helper && watch_start(w) < 0) {
		free(w);
		return NULL;
	}
	if (tls_disk) {
		w->owner = tls_disk;
		w->next = tls_disk->watches;
		tls_disk->watches = w;
	}
	return w;
}

static void host_fd_unwatch(void *handle)
{
	struct fd_watch *w = handle;

	if (!w)
		return;
	if (tls_helper) {
		/* The loop stopped it before close() (plugin.h) or never
		 * started it (a failing open()); the loop frees it. */
		w->dead = true;
		if (!w->owner && tls_disk) {
			w->owner = tls_disk;
			w->next = tls_disk->watches;
			tls_disk->watches = w;
		}
		return;
	}
	watch_unlink(w);
	watch_free(w);
}

/* Free every watch still recorded for d (its plugin is done with them). */
static void disk_watches_free(struct disk_host *d)
{
	while (d->watches) {
		struct fd_watch *w = d->watches;

		d->watches = w->next;
		watch_free(w);
	}
}

static const struct vproxy_host host_table = {
	.abi_version = 2,
	.size = sizeof(struct vproxy_host),
	.log = host_log,
	.complete = host_complete,
	.param = host_param,
	.parse_size = vp_parse_size,
	.fd_watch = host_fd_watch,
	.fd_unwatch = host_fd_unwatch,
	.disk_log = host_disk_log,
};

/* What an ABI 1 plugin is given: the table as it was in ABI 1. */
static const struct vproxy_host host_table_v1 = {
	.abi_version = 1,
	.size = VPROXY_HOST_SIZE_V1,
	.log = host_log,
	.complete = host_complete,
	.param = host_param,
	.parse_size = vp_parse_size,
	.fd_watch = host_fd_watch,
	.fd_unwatch = host_fd_unwatch,
};

const struct vproxy_host *vp_plugin_host(void)
{
	return &host_table;
}

/* ---- loading ---- */

static bool plugin_name_ok(const char *name)
{
	return name && name[0] != '\0' && !strchr(name, '/') && !strstr(name, "..");
}

/* Check the table a plugin's init returned (abi: the ABI of the init
 * symbol it exports); on failure write why. Fields past abi_version/size
 * are only read once size says they exist. */
static int check_table(const char *name, const char *symbol, uint32_t abi,
		       const struct vproxy_plugin *p, char *err, size_t errlen)
{
	const char *missing = NULL;

	if (!p) {
		snprintf(err, errlen, "plugin \"%s\": %s returned NULL", name, symbol);
		return -EINVAL;
	}
	if (p->abi_version != abi) {
		snprintf(err, errlen,
			 "plugin \"%s\": built for ABI version %u, but exports %s (ABI %u)",
			 name, p->abi_version, symbol, abi);
		return -EINVAL;
	}
	if (p->size < VPROXY_PLUGIN_SIZE_V1) {
		snprintf(err, errlen,
			 "plugin \"%s\": plugin table is %u bytes, this server needs at least %zu",
			 name, p->size, (size_t)VPROXY_PLUGIN_SIZE_V1);
		return -EINVAL;
	}
	if (!p->name)
		missing = "name";
	else if (!p->open)
		missing = "open()";
	else if (!p->submit)
		missing = "submit()";
	else if (!p->close)
		missing = "close()";
	if (missing) {
		snprintf(err, errlen, "plugin \"%s\": plugin table has no %s", name,
			 missing);
		return -EINVAL;
	}
	if (strcmp(p->name, name) != 0) {
		snprintf(err, errlen,
			 "plugin \"%s\": calls itself \"%s\"; its file must be named %s.so",
			 name, p->name, p->name);
		return -EINVAL;
	}
	return 0;
}

const struct vproxy_plugin *vp_plugin_load(const char *dir, const char *name,
					   char *err, size_t errlen)
{
	struct loaded_plugin *lp = NULL;
	const struct vproxy_plugin *p;
	const char *symbol = VPROXY_PLUGIN_INIT_SYMBOL_V2;
	vproxy_plugin_init_fn init;
	uint32_t abi = 2;
	struct stat st;
	char *path = NULL;
	void *dl = NULL;
	void *sym;

	if (!plugin_name_ok(name)) {
		snprintf(err, errlen,
			 "invalid plugin name \"%s\" (must be non-empty, without '/' or \"..\")",
			 name ? name : "");
		return NULL;
	}
	if (!dir) {
		snprintf(err, errlen, "plugin \"%s\": no plugin directory", name);
		return NULL;
	}
	for (lp = loaded; lp; lp = lp->next) {
		if (strcmp(lp->name, name) == 0)
			return lp->plugin;
	}
	if (asprintf(&path, "%s/%s.so", dir, name) < 0) {
		path = NULL;
		snprintf(err, errlen, "plugin \"%s\": out of memory", name);
		goto fail;
	}
	/* dlopen() would search the library path for a name without '/',
	 * and says "cannot open shared object" for many reasons; name the
	 * file and the reason when it is simply not there. */
	if (stat(path, &st) < 0) {
		snprintf(err, errlen, "plugin \"%s\": %s: %s", name, path,
			 strerror(errno));
		goto fail;
	}
	dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!dl) {
		snprintf(err, errlen, "plugin \"%s\": dlopen failed: %s", name, dlerror());
		goto fail;
	}
	/* The exported init symbol says which ABI the plugin was built for,
	 * before anything of it runs: an ABI 1 plugin checks that the table
	 * it gets says version 1. */
	dlerror();
	sym = dlsym(dl, VPROXY_PLUGIN_INIT_SYMBOL_V2);
	if (!sym) {
		symbol = VPROXY_PLUGIN_INIT_SYMBOL_V1;
		abi = 1;
		sym = dlsym(dl, symbol);
	}
	if (!sym) {
		snprintf(err, errlen, "plugin \"%s\": %s does not export %s (nor %s)", name,
			 path, VPROXY_PLUGIN_INIT_SYMBOL_V1, VPROXY_PLUGIN_INIT_SYMBOL_V2);
		goto fail;
	}
	init = (vproxy_plugin_init_fn)sym;
	p = init(abi == 2 ? &host_table : &host_table_v1);
	if (check_table(name, symbol, abi, p, err, errlen) < 0)
		goto fail;
	lp = calloc(1, sizeof(*lp));
	if (!lp || !(lp->name = strdup(name))) {
		snprintf(err, errlen, "plugin \"%s\": out of memory", name);
		goto fail;
	}
	lp->dl = dl;
	lp->plugin = p;
	lp->next = loaded;
	loaded = lp;
	free(path);
	return p;
fail:
	if (lp)
		free(lp->name);
	free(lp);
	if (dl)
		dlclose(dl);
	free(path);
	return NULL;
}

/* A new host handle for a disk of plugin, not yet open. */
static struct disk_host *disk_host_new(const struct vproxy_plugin *plugin, unsigned dom,
				       unsigned devid, const char *label)
{
	struct disk_host *d;
	size_t len;

	label = label ? label : "";
	len = strlen(label) + 1;
	d = calloc(1, sizeof(*d) + len);
	if (!d)
		return NULL;
	memcpy(d->label, label, len);
	d->pub.size = sizeof(d->pub);
	d->pub.domid = dom;
	d->pub.devid = devid;
	d->pub.plugin = plugin->name;
	d->pub.label = d->label;
	d->plugin = plugin;
	return d;
}

/* Run the plugin's open() for d, whichever ABI it speaks, on this thread. */
static int disk_open(struct disk_host *d, const struct vproxy_params *params,
		     int read_only, struct vproxy_disk_info *info, void **disk,
		     char *err, size_t errlen)
{
	const struct vproxy_plugin *plugin = d->plugin;
	int rc;

	tls_disk = d;
	if (plugin->abi_version < 2) {
		/* The same slot holds ABI 1's open(); through void (*)(void),
		 * the one function type every other converts to silently. */
		vproxy_open_v1_fn open_v1 = (vproxy_open_v1_fn)(void (*)(void))plugin->open;

		rc = open_v1(params, read_only, info, disk, err, errlen);
	} else {
		rc = plugin->open(&d->pub, params, read_only, info, disk, err, errlen);
	}
	tls_disk = NULL;
	if (rc == 0)
		d->disk = *disk;
	return rc;
}

/* Run the plugin's close() for d on this thread. */
static void disk_close(struct disk_host *d)
{
	tls_disk = d;
	d->plugin->close(d->disk);
	tls_disk = NULL;
}

static void disk_link(struct disk_host *d)
{
	d->next = open_disks;
	open_disks = d;
}

/* Find and unlink the host handle of an open disk. */
static struct disk_host *disk_unlink(const struct vproxy_plugin *plugin, void *disk)
{
	for (struct disk_host **pp = &open_disks; *pp; pp = &(*pp)->next) {
		struct disk_host *d = *pp;

		if (d->plugin == plugin && d->disk == disk) {
			*pp = d->next;
			return d;
		}
	}
	return NULL;
}

int vp_plugin_open(const struct vproxy_plugin *plugin, unsigned dom, unsigned devid,
		   const char *label, const struct vproxy_params *params, int read_only,
		   struct vproxy_disk_info *info, void **disk, char *err, size_t errlen)
{
	struct disk_host *d = disk_host_new(plugin, dom, devid, label);
	int rc;

	if (!d) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	rc = disk_open(d, params, read_only, info, disk, err, errlen);
	if (rc != 0) {
		disk_watches_free(d);
		free(d);
		return rc;
	}
	disk_link(d);
	return 0;
}

void vp_plugin_close(const struct vproxy_plugin *plugin, void *disk)
{
	struct disk_host *d = disk_unlink(plugin, disk);

	if (!d) {
		plugin->close(disk);
		return;
	}
	disk_close(d);
	disk_watches_free(d);
	free(d);
}

/* ---- opening and closing on helper threads ---- */

static bool off_loop(const struct vproxy_plugin *plugin)
{
	return VPROXY_PLUGIN_COVERS(plugin, flags) &&
	       (plugin->flags & VPROXY_PLUGIN_F_OFF_LOOP);
}

static void *helper_main(void *unused)
{
	(void)unused;
	tls_helper = true;
	pthread_mutex_lock(&helpers.lock);
	for (;;) {
		struct vp_plugin_job *job;
		uint64_t one = 1;

		while (!helpers.queue && !helpers.stopping)
			pthread_cond_wait(&helpers.cond, &helpers.lock);
		job = helpers.queue;
		if (!job)
			break;
		helpers.queue = job->next;
		helpers.idle--;
		pthread_mutex_unlock(&helpers.lock);

		if (job->is_close)
			disk_close(job->d);
		else
			job->rc = disk_open(job->d, job->params, job->read_only,
					    &job->info, &job->disk, job->err,
					    sizeof(job->err));

		pthread_mutex_lock(&helpers.lock);
		job->next = helpers.done;
		helpers.done = job;
		helpers.idle++;
		if (write(helpers.efd, &one, sizeof(one)) < 0) {
			/* Only when the counter is full: the loop wakes anyway. */
		}
	}
	pthread_mutex_unlock(&helpers.lock);
	return NULL;
}

static void jobs_done_cb(evutil_socket_t fd, short what, void *arg);

/* The completion eventfd and its event on the loop.  0 or -errno. */
static int helpers_ready(void)
{
	if (helpers.ev)
		return 0;
	if (!watch_base)
		return -ENODEV;
	if (helpers.efd < 0) {
		helpers.efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		if (helpers.efd < 0)
			return -errno;
	}
	helpers.ev = event_new(watch_base, helpers.efd, EV_READ | EV_PERSIST,
			       jobs_done_cb, NULL);
	if (!helpers.ev || event_add(helpers.ev, NULL) < 0) {
		if (helpers.ev)
			event_free(helpers.ev);
		helpers.ev = NULL;
		return -ENOMEM;
	}
	return 0;
}

/* Hand job to a helper thread (starting one if none is idle).  Loop
 * thread.  0, or a negative errno when no helper can run it. */
static int job_queue(struct vp_plugin_job *job)
{
	int rc = helpers_ready();

	if (rc < 0)
		return rc;
	pthread_mutex_lock(&helpers.lock);
	if (!helpers.idle && helpers.nthreads < HELPERS_MAX) {
		rc = -pthread_create(&helpers.threads[helpers.nthreads], NULL,
				     helper_main, NULL);
		if (rc == 0) {
			helpers.nthreads++;
			helpers.idle++;
		}
	}
	if (!helpers.nthreads) {
		pthread_mutex_unlock(&helpers.lock);
		return rc ? rc : -EAGAIN;
	}
	job->next = NULL;
	if (helpers.queue)
		helpers.queue_tail->next = job;
	else
		helpers.queue = job;
	helpers.queue_tail = job;
	pthread_cond_signal(&helpers.cond);
	pthread_mutex_unlock(&helpers.lock);
	job->all_next = jobs_all;
	jobs_all = job;
	jobs_pending++;
	return 0;
}

static void job_unlink(struct vp_plugin_job *job)
{
	for (struct vp_plugin_job **pp = &jobs_all; *pp; pp = &(*pp)->all_next) {
		if (*pp == job) {
			*pp = job->all_next;
			jobs_pending--;
			return;
		}
	}
}

/* Close d on the loop thread: the fallback when no helper can. */
static void close_here(struct disk_host *d)
{
	disk_close(d);
	disk_watches_free(d);
	free(d);
}

/* Turn a finished open job into the close of its disk. */
static void job_close_disk(struct vp_plugin_job *job)
{
	struct disk_host *d = job->d;

	for (struct fd_watch *w = d->watches; w; w = w->next)
		if (w->ev)
			event_del(w->ev);
	job->is_close = true;
	if (job_queue(job) < 0) {
		close_here(d);
		free(job);
	}
}

/* A helper finished job: complete it on the loop. */
static void job_finish(struct vp_plugin_job *job)
{
	struct disk_host *d = job->d;
	int rc = job->rc;

	job_unlink(job);
	if (job->is_close) {
		disk_watches_free(d);
		free(d);
		free(job);
		return;
	}
	for (struct fd_watch **pp = &d->watches; rc == 0 && *pp;) {
		struct fd_watch *w = *pp;

		if (w->dead) {
			*pp = w->next;
			watch_free(w);
			continue;
		}
		if (watch_start(w) < 0) {
			snprintf(job->err, sizeof(job->err),
				 "cannot watch the plugin's file descriptor: out of memory");
			rc = -ENOMEM;
		}
		pp = &w->next;
	}
	if (rc == 0 && job->opened) {
		disk_link(d);
		job->opened(job->arg, 0, &job->info, job->disk, "");
		free(job);
		return;
	}
	if (job->rc == 0) {
		/* Open, but nobody wants it (any more): close it. */
		if (!job->opened)
			vp_info("dom %u dev %u: [device %s] went away while its disk "
				"opened: closing the disk",
				d->pub.domid, d->pub.devid, d->label);
		else
			job->opened(job->arg, rc, NULL, NULL, job->err);
		job_close_disk(job);
		return;
	}
	disk_watches_free(d);
	free(d);
	if (job->opened)
		job->opened(job->arg, rc, NULL, NULL, job->err);
	free(job);
}

static void jobs_done_cb(evutil_socket_t fd, short what, void *arg)
{
	struct vp_plugin_job *done;
	uint64_t v;

	(void)what;
	(void)arg;
	if (read(fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		return;
	pthread_mutex_lock(&helpers.lock);
	done = helpers.done;
	helpers.done = NULL;
	pthread_mutex_unlock(&helpers.lock);
	while (done) {
		struct vp_plugin_job *job = done;

		done = job->next;
		job_finish(job);
	}
	if (!jobs_pending && idle_cb)
		idle_cb(idle_arg);
}

struct vp_plugin_job *vp_plugin_open_async(const struct vproxy_plugin *plugin,
					   unsigned dom, unsigned devid, const char *label,
					   const struct vproxy_params *params, int read_only,
					   vp_plugin_opened_fn opened, void *arg)
{
	struct vproxy_disk_info info;
	struct vp_plugin_job *job;
	char err[256] = "";
	void *disk = NULL;
	int rc;

	if (off_loop(plugin)) {
		job = calloc(1, sizeof(*job));
		if (job)
			job->d = disk_host_new(plugin, dom, devid, label);
		if (job && job->d) {
			job->params = params;
			job->read_only = read_only;
			job->opened = opened;
			job->arg = arg;
			if (job_queue(job) == 0)
				return job;
			vp_warn("dom %u dev %u: no helper thread: opening [device %s] "
				"on the loop",
				dom, devid, job->d->label);
			free(job->d);
		}
		free(job);
	}
	rc = vp_plugin_open(plugin, dom, devid, label, params, read_only, &info, &disk,
			    err, sizeof(err));
	opened(arg, rc, rc == 0 ? &info : NULL, rc == 0 ? disk : NULL, err);
	return NULL;
}

void vp_plugin_open_abandon(struct vp_plugin_job *job)
{
	if (job)
		job->opened = NULL;
}

void vp_plugin_close_async(const struct vproxy_plugin *plugin, void *disk)
{
	struct disk_host *d;
	struct vp_plugin_job *job;

	if (!off_loop(plugin)) {
		vp_plugin_close(plugin, disk);
		return;
	}
	d = disk_unlink(plugin, disk);
	if (!d) {
		plugin->close(disk);
		return;
	}
	job = calloc(1, sizeof(*job));
	if (!job) {
		close_here(d);
		return;
	}
	job->d = d;
	job->rc = 0;
	job->opened = NULL;
	job_close_disk(job);
}

unsigned vp_plugin_jobs_pending(void)
{
	return jobs_pending;
}

void vp_plugin_set_idle_cb(void (*idle)(void *arg), void *arg)
{
	idle_cb = idle;
	idle_arg = arg;
}

void vp_plugin_report_pending(void)
{
	for (struct vp_plugin_job *job = jobs_all; job; job = job->all_next)
		vp_warn("dom %u dev %u: [device %s] plugin %s still %s its disk: "
			"abandoned",
			job->d->pub.domid, job->d->pub.devid, job->d->label,
			job->d->plugin->name, job->is_close ? "closing" : "opening");
}

/* Stop the helper threads and the completion event; nothing may be
 * pending. */
static void helpers_stop(void)
{
	pthread_mutex_lock(&helpers.lock);
	helpers.stopping = true;
	pthread_cond_broadcast(&helpers.cond);
	pthread_mutex_unlock(&helpers.lock);
	for (unsigned i = 0; i < helpers.nthreads; i++)
		pthread_join(helpers.threads[i], NULL);
	helpers.nthreads = 0;
	helpers.idle = 0;
	helpers.stopping = false;
	if (helpers.ev)
		event_free(helpers.ev);
	helpers.ev = NULL;
	if (helpers.efd >= 0)
		close(helpers.efd);
	helpers.efd = -1;
}

void vp_plugin_unload_all(void)
{
	if (jobs_pending) {
		vp_warn("%u disk open(s)/close(s) still running: plugins stay loaded",
			jobs_pending);
		return;
	}
	helpers_stop();
	while (loaded) {
		struct loaded_plugin *lp = loaded;

		loaded = lp->next;
		dlclose(lp->dl);
		free(lp->name);
		free(lp);
	}
}

/* ---- parameters ---- */

struct vproxy_params *vp_params_new(void)
{
	return calloc(1, sizeof(struct vproxy_params));
}

static struct param *params_find(const struct vproxy_params *p, const char *key)
{
	for (size_t i = 0; i < p->n; i++) {
		if (strcmp(p->v[i].key, key) == 0)
			return &p->v[i];
	}
	return NULL;
}

int vp_params_set(struct vproxy_params *p, const char *key, const char *value,
		  int line)
{
	struct param *slot = params_find(p, key);
	char *v = strdup(value);

	if (!v)
		return -ENOMEM;
	if (slot) {
		free(slot->value);
		slot->value = v;
		slot->line = line;
		return 0;
	}
	if (p->n == p->cap) {
		size_t cap = p->cap ? p->cap * 2 : 8;
		struct param *nv = realloc(p->v, cap * sizeof(*nv));

		if (!nv)
			goto nomem;
		p->v = nv;
		p->cap = cap;
	}
	slot = &p->v[p->n];
	slot->key = strdup(key);
	if (!slot->key)
		goto nomem;
	slot->value = v;
	slot->line = line;
	p->n++;
	return 0;
nomem:
	free(v);
	return -ENOMEM;
}

bool vp_params_equal(const struct vproxy_params *a, const struct vproxy_params *b)
{
	size_t na = a ? a->n : 0, nb = b ? b->n : 0;

	if (na != nb)
		return false;
	for (size_t i = 0; i < na; i++) {
		const char *v = vp_params_get(b, a->v[i].key);

		if (!v || strcmp(v, a->v[i].value) != 0)
			return false;
	}
	return true;
}

const char *vp_params_get(const struct vproxy_params *p, const char *key)
{
	const struct param *slot;

	if (!p || !key)
		return NULL;
	slot = params_find(p, key);
	return slot ? slot->value : NULL;
}

static bool plugin_takes(const struct vproxy_plugin *plugin, const char *key)
{
	if (!plugin->param_keys)
		return false;
	for (const char *const *k = plugin->param_keys; *k; k++) {
		if (strcmp(*k, key) == 0)
			return true;
	}
	return false;
}

int vp_params_check(const struct vproxy_params *p, const struct vproxy_plugin *plugin,
		    const char **bad_key, int *bad_line)
{
	for (size_t i = 0; p && i < p->n; i++) {
		if (!plugin_takes(plugin, p->v[i].key)) {
			*bad_key = p->v[i].key;
			*bad_line = p->v[i].line;
			return -EINVAL;
		}
	}
	return 0;
}

void vp_params_free(struct vproxy_params *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < p->n; i++) {
		free(p->v[i].key);
		free(p->v[i].value);
	}
	free(p->v);
	free(p);
}
