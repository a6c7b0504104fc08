/* Plugin host: loading plugin .so files, the host table handed to them,
 * device parameters and size parsing. */
#include "plugin_host.h"

#include <ctype.h>
#include <dlfcn.h>
#include <errno.h>
#include <event2/event.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "log.h"

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

/* The host's side of one disk opened through vp_plugin_open(): the ABI 2
 * handle the plugin is given, kept until vp_plugin_close(). */
struct disk_host {
	struct vproxy_disk_host pub; /* first: plugins get &pub */
	const struct vproxy_plugin *plugin;
	void *disk; /* the plugin's, once open() succeeded */
	struct vp_ratelimit rl;
	struct disk_host *next;
	char label[]; /* pub.label points here */
};

/* A host->fd_watch() registration. */
struct fd_watch {
	struct event *ev;
	void (*cb)(int fd, void *arg);
	void *arg;
};

static struct loaded_plugin *loaded;
static struct disk_host *open_disks;
static struct event_base *watch_base;

void vp_plugin_set_event_base(struct event_base *base)
{
	watch_base = base;
}

/* ---- host table ---- */

static void host_log(enum vproxy_log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void host_log(enum vproxy_log_level level, const char *fmt, ...)
{
	char msg[900];
	va_list ap;

	/* A plugin built against a newer header may pass a level we do not
	 * know; never index past our level names with it. */
	if ((unsigned)level > VPROXY_LOG_DEBUG)
		level = VPROXY_LOG_DEBUG;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	vp_log(level, "plugin: %s", msg);
}

static void host_disk_log(const struct vproxy_disk_host *dh, enum vproxy_log_level level,
			  const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void host_disk_log(const struct vproxy_disk_host *dh, enum vproxy_log_level level,
			  const char *fmt, ...)
{
	struct disk_host *d = (struct disk_host *)dh;
	char msg[900];
	va_list ap;

	if ((unsigned)level > VPROXY_LOG_DEBUG)
		level = VPROXY_LOG_DEBUG;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (!d) {
		vp_log(level, "plugin: %s", msg);
		return;
	}
	vp_log_dev(&d->rl, level, d->pub.domid, d->pub.devid, "plugin %s [device %s]: %s",
		   d->pub.plugin, d->pub.label, msg);
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

static void *host_fd_watch(int fd, void (*cb)(int fd, void *arg), void *arg)
{
	struct fd_watch *w;

	if (!watch_base || fd < 0 || !cb)
		return NULL;
	w = calloc(1, sizeof(*w));
	if (!w)
		return NULL;
	w->cb = cb;
	w->arg = arg;
	w->ev = event_new(watch_base, fd, EV_READ | EV_PERSIST, fd_watch_fire, w);
	if (!w->ev)
		goto fail;
	if (event_add(w->ev, NULL) < 0)
		goto fail;
	return w;
fail:
	if (w->ev)
		event_free(w->ev);
	free(w);
	return NULL;
}

static void host_fd_unwatch(void *handle)
{
	struct fd_watch *w = handle;

	if (!w)
		return;
	event_free(w->ev);
	free(w);
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

int vp_plugin_open(const struct vproxy_plugin *plugin, unsigned dom, unsigned devid,
		   const char *label, const struct vproxy_params *params, int read_only,
		   struct vproxy_disk_info *info, void **disk, char *err, size_t errlen)
{
	struct disk_host *d;
	size_t len;
	int rc;

	if (plugin->abi_version < 2) {
		/* The same slot holds ABI 1's open(); through void (*)(void),
		 * the one function type every other converts to silently. */
		vproxy_open_v1_fn open_v1 = (vproxy_open_v1_fn)(void (*)(void))plugin->open;

		return open_v1(params, read_only, info, disk, err, errlen);
	}
	label = label ? label : "";
	len = strlen(label) + 1;
	d = calloc(1, sizeof(*d) + len);
	if (!d) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	memcpy(d->label, label, len);
	d->pub.size = sizeof(d->pub);
	d->pub.domid = dom;
	d->pub.devid = devid;
	d->pub.plugin = plugin->name;
	d->pub.label = d->label;
	d->plugin = plugin;
	rc = plugin->open(&d->pub, params, read_only, info, disk, err, errlen);
	if (rc != 0) {
		free(d);
		return rc;
	}
	d->disk = *disk;
	d->next = open_disks;
	open_disks = d;
	return 0;
}

void vp_plugin_close(const struct vproxy_plugin *plugin, void *disk)
{
	plugin->close(disk);
	for (struct disk_host **pp = &open_disks; *pp; pp = &(*pp)->next) {
		struct disk_host *d = *pp;

		if (d->plugin == plugin && d->disk == disk) {
			*pp = d->next;
			free(d);
			return;
		}
	}
}

void vp_plugin_unload_all(void)
{
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

/* ---- sizes ---- */

int vp_parse_size(const char *text, uint64_t *out)
{
	static const char units[] = "KMGT";
	const char *s = text;
	uint64_t value = 0;
	unsigned shift = 0;
	const char *u;

	if (!s || !isdigit((unsigned char)*s))
		return -EINVAL;
	for (; isdigit((unsigned char)*s); s++) {
		if (__builtin_mul_overflow(value, 10u, &value) ||
		    __builtin_add_overflow(value, (uint64_t)(*s - '0'), &value))
			return -EINVAL;
	}
	if (*s != '\0' && (u = strchr(units, toupper((unsigned char)*s)))) {
		shift = 10u * (unsigned)(u - units + 1);
		s++;
		if (strcmp(s, "iB") == 0)
			s += 2;
		else if (strcmp(s, "B") == 0)
			s++;
	} else if (strcmp(s, "B") == 0) {
		s++;
	}
	if (*s != '\0')
		return -EINVAL;
	if (shift && value > (UINT64_MAX >> shift))
		return -EINVAL;
	*out = value << shift;
	return 0;
}
