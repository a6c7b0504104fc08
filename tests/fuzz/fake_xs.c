/* SPDX-License-Identifier: MIT */
/* The fuzzing xenstore (fake_xs.h): libxenstore's calls over a node table. */
#include "fake_xs.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <xenstore.h>

#define MAX_NODES 1024u
#define MAX_WATCHES 256u
#define MAX_EVENTS 1024u
#define MAX_DOMS 64u

struct node {
	char *path;
	char *value;
	unsigned len;
};

struct watch {
	char *path;
	char *token;
};

struct event {
	char *path;
	char *token;
};

static struct {
	struct node nodes[MAX_NODES];
	unsigned nnodes;
	struct watch watches[MAX_WATCHES];
	unsigned nwatches;
	struct event events[MAX_EVENTS];
	unsigned ev_head, nevents;
	bool introduced[MAX_DOMS];
	int fd;
	bool open;
} xs = {.fd = -1};

/* A handle: libxenstore's type is opaque, any non-NULL pointer will do. */
static int handle;

static void fatal(const char *what)
{
	fprintf(stderr, "fake_xs: %s\n", what);
	abort();
}

static char *dup_or_die(const char *s, size_t len)
{
	char *p = malloc(len + 1);

	if (!p)
		fatal("out of memory");
	memcpy(p, s, len);
	p[len] = '\0';
	return p;
}

/* Is a equal to b or below it (b/...)? */
static bool at_or_below(const char *a, const char *b)
{
	size_t n = strlen(b);

	return strncmp(a, b, n) == 0 && (a[n] == '\0' || a[n] == '/');
}

static void queue_event(const char *path, const char *token)
{
	uint64_t one = 1;
	struct event *e;

	if (xs.nevents == MAX_EVENTS)
		return; /* a real xenstored would also drop a flooding client */
	e = &xs.events[(xs.ev_head + xs.nevents++) % MAX_EVENTS];
	e->path = dup_or_die(path, strlen(path));
	e->token = dup_or_die(token, strlen(token));
	if (write(xs.fd, &one, sizeof(one)) < 0)
		fatal("cannot signal the watch fd");
}

static void fire(const char *path)
{
	for (unsigned i = 0; i < xs.nwatches; i++)
		if (at_or_below(path, xs.watches[i].path) ||
		    at_or_below(xs.watches[i].path, path))
			queue_event(path, xs.watches[i].token);
}

static struct node *find(const char *path)
{
	for (unsigned i = 0; i < xs.nnodes; i++)
		if (strcmp(xs.nodes[i].path, path) == 0)
			return &xs.nodes[i];
	return NULL;
}

/* Create path (and its parents, as xenstored does) if missing. */
static struct node *make(const char *path)
{
	struct node *n = find(path);
	const char *slash;

	if (n)
		return n;
	slash = strrchr(path, '/');
	if (slash && slash != path) {
		char *parent = dup_or_die(path, (size_t)(slash - path));

		make(parent);
		free(parent);
	}
	if (xs.nnodes == MAX_NODES)
		return NULL;
	n = &xs.nodes[xs.nnodes++];
	n->path = dup_or_die(path, strlen(path));
	n->value = dup_or_die("", 0);
	n->len = 0;
	return n;
}

static bool set(const char *path, const void *data, unsigned len)
{
	struct node *n = make(path);

	if (!n) {
		errno = ENOSPC;
		return false;
	}
	free(n->value);
	n->value = dup_or_die(data, len);
	n->len = len;
	fire(path);
	return true;
}

static void remove_tree(const char *path)
{
	bool any = false;

	for (unsigned i = 0; i < xs.nnodes;) {
		if (at_or_below(xs.nodes[i].path, path)) {
			free(xs.nodes[i].path);
			free(xs.nodes[i].value);
			xs.nodes[i] = xs.nodes[--xs.nnodes];
			any = true;
		} else {
			i++;
		}
	}
	if (any)
		fire(path);
}

static unsigned read_failures;
static int read_error;

void fake_xs_fail_reads(unsigned n, int err)
{
	read_failures = n;
	read_error = err;
}

void fake_xs_reset(void)
{
	uint64_t v;

	read_failures = 0;
	for (unsigned i = 0; i < xs.nnodes; i++) {
		free(xs.nodes[i].path);
		free(xs.nodes[i].value);
	}
	for (unsigned i = 0; i < xs.nwatches; i++) {
		free(xs.watches[i].path);
		free(xs.watches[i].token);
	}
	for (unsigned i = 0; i < xs.nevents; i++) {
		struct event *e = &xs.events[(xs.ev_head + i) % MAX_EVENTS];

		free(e->path);
		free(e->token);
	}
	xs.nnodes = xs.nwatches = xs.nevents = xs.ev_head = 0;
	memset(xs.introduced, 0, sizeof(xs.introduced));
	if (xs.fd < 0) {
		xs.fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		if (xs.fd < 0)
			fatal("no eventfd");
	}
	if (read(xs.fd, &v, sizeof(v)) < 0)
		v = 0; /* nothing was pending */
}

void fake_xs_set(const char *path, const char *value)
{
	set(path, value, (unsigned)strlen(value));
}

void fake_xs_remove(const char *path)
{
	remove_tree(path);
}

const char *fake_xs_get(const char *path)
{
	struct node *n = find(path);

	return n ? n->value : NULL;
}

void fake_xs_domain(unsigned dom, bool introduced)
{
	if (dom < MAX_DOMS)
		xs.introduced[dom] = introduced;
	fire(introduced ? "@introduceDomain" : "@releaseDomain");
}

void fake_xs_each(void (*fn)(const char *path, const char *value, void *arg), void *arg)
{
	for (unsigned i = 0; i < xs.nnodes; i++)
		fn(xs.nodes[i].path, xs.nodes[i].value, arg);
}

/* ---- libxenstore ---- */

struct xs_handle *xs_open(unsigned long flags)
{
	(void)flags;
	if (xs.open)
		fatal("opened twice");
	xs.open = true;
	return (struct xs_handle *)(void *)&handle;
}

void xs_close(struct xs_handle *h)
{
	if (h)
		xs.open = false;
}

int xs_fileno(struct xs_handle *h)
{
	(void)h;
	return xs.fd;
}

void *xs_read(struct xs_handle *h, xs_transaction_t t, const char *path,
              unsigned int *len)
{
	struct node *n = find(path);

	(void)h;
	(void)t;
	if (read_failures) {
		read_failures--;
		errno = read_error;
		return NULL;
	}
	if (!n) {
		errno = ENOENT;
		return NULL;
	}
	if (len)
		*len = n->len;
	return dup_or_die(n->value, n->len);
}

bool xs_write(struct xs_handle *h, xs_transaction_t t, const char *path, const void *data,
              unsigned int len)
{
	(void)h;
	(void)t;
	return set(path, data, len);
}

bool xs_mkdir(struct xs_handle *h, xs_transaction_t t, const char *path)
{
	(void)h;
	(void)t;
	if (find(path))
		return true;
	return set(path, "", 0);
}

bool xs_rm(struct xs_handle *h, xs_transaction_t t, const char *path)
{
	(void)h;
	(void)t;
	remove_tree(path);
	return true;
}

char **xs_directory(struct xs_handle *h, xs_transaction_t t, const char *path,
                    unsigned int *num)
{
	size_t plen = strlen(path), bytes = 0;
	unsigned n = 0;
	char **out, *strings;

	(void)h;
	(void)t;
	if (!find(path)) {
		errno = ENOENT;
		return NULL;
	}
	/* Immediate children: nodes path/NAME with no further slash. */
	for (unsigned i = 0; i < xs.nnodes; i++) {
		const char *p = xs.nodes[i].path;

		if (strncmp(p, path, plen) == 0 && p[plen] == '/' &&
		    !strchr(p + plen + 1, '/')) {
			n++;
			bytes += strlen(p + plen + 1) + 1;
		}
	}
	out = malloc((n + 1) * sizeof(*out) + bytes);
	if (!out)
		fatal("out of memory");
	strings = (char *)(out + n + 1);
	n = 0;
	for (unsigned i = 0; i < xs.nnodes; i++) {
		const char *p = xs.nodes[i].path;

		if (strncmp(p, path, plen) == 0 && p[plen] == '/' &&
		    !strchr(p + plen + 1, '/')) {
			out[n++] = strings;
			strcpy(strings, p + plen + 1);
			strings += strlen(p + plen + 1) + 1;
		}
	}
	out[n] = NULL;
	*num = n;
	return out;
}

bool xs_set_permissions(struct xs_handle *h, xs_transaction_t t, const char *path,
                        struct xs_permissions *perms, unsigned int num_perms)
{
	(void)h;
	(void)t;
	(void)perms;
	(void)num_perms;
	if (!find(path)) {
		errno = ENOENT;
		return false;
	}
	return true;
}

bool xs_watch(struct xs_handle *h, const char *path, const char *token)
{
	(void)h;
	if (xs.nwatches == MAX_WATCHES) {
		errno = ENOSPC;
		return false;
	}
	xs.watches[xs.nwatches].path = dup_or_die(path, strlen(path));
	xs.watches[xs.nwatches].token = dup_or_die(token, strlen(token));
	xs.nwatches++;
	queue_event(path, token); /* xenstored fires a new watch once */
	return true;
}

bool xs_unwatch(struct xs_handle *h, const char *path, const char *token)
{
	(void)h;
	for (unsigned i = 0; i < xs.nwatches; i++) {
		if (strcmp(xs.watches[i].path, path) == 0 &&
		    strcmp(xs.watches[i].token, token) == 0) {
			free(xs.watches[i].path);
			free(xs.watches[i].token);
			xs.watches[i] = xs.watches[--xs.nwatches];
			return true;
		}
	}
	errno = ENOENT;
	return false;
}

char **xs_check_watch(struct xs_handle *h)
{
	struct event *e;
	size_t lp, lt;
	char **out;
	uint64_t v;

	(void)h;
	if (xs.nevents == 0) {
		if (read(xs.fd, &v, sizeof(v)) < 0)
			v = 0; /* already drained */
		errno = EAGAIN;
		return NULL;
	}
	e = &xs.events[xs.ev_head];
	xs.ev_head = (xs.ev_head + 1) % MAX_EVENTS;
	xs.nevents--;
	lp = strlen(e->path) + 1;
	lt = strlen(e->token) + 1;
	out = malloc(2 * sizeof(*out) + lp + lt);
	if (!out)
		fatal("out of memory");
	out[XS_WATCH_PATH] = (char *)(out + 2);
	out[XS_WATCH_TOKEN] = out[XS_WATCH_PATH] + lp;
	memcpy(out[XS_WATCH_PATH], e->path, lp);
	memcpy(out[XS_WATCH_TOKEN], e->token, lt);
	free(e->path);
	free(e->token);
	return out;
}

xs_transaction_t xs_transaction_start(struct xs_handle *h)
{
	(void)h;
	return 1;
}

bool xs_transaction_end(struct xs_handle *h, xs_transaction_t t, bool abort_it)
{
	(void)h;
	(void)t;
	(void)abort_it; /* writes were applied as they came: no rollback */
	return true;
}

bool xs_is_domain_introduced(struct xs_handle *h, unsigned int domid)
{
	(void)h;
	return domid < MAX_DOMS && xs.introduced[domid];
}
