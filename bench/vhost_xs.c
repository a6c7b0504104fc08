/* SPDX-License-Identifier: MIT */
/*
 * The in-process xenstore of the vhost-user stub platform: the frontend
 * and backend nodes the stub core reads and writes, watches, and the
 * backend's side of the xenbus handshake.
 */
#include "vhost_internal.h"

/* ---- the in-process xenstore ---- */

static struct xs_node *xs_find(struct vhu_platform *v, const char *path)
{
	for (unsigned i = 0; i < XS_NODES; i++)
		if (v->nodes[i].used && strcmp(v->nodes[i].path, path) == 0)
			return &v->nodes[i];
	return NULL;
}

static void xs_fire(struct vhu_platform *v, const char *path)
{
	for (unsigned i = 0; i < XS_WATCHES; i++) {
		struct vps_watch *w = &v->watches[i];
		size_t n = strlen(w->path);

		if (w->used && strncmp(path, w->path, n) == 0 &&
		    (path[n] == '\0' || path[n] == '/'))
			w->pending = true;
	}
}

int vhu_xs_set(struct vhu_platform *v, const char *path, const char *value)
{
	struct xs_node *n = xs_find(v, path);

	if (strlen(path) >= sizeof(n->path) || strlen(value) >= sizeof(n->value))
		return -ENAMETOOLONG;
	for (unsigned i = 0; !n && i < XS_NODES; i++)
		if (!v->nodes[i].used)
			n = &v->nodes[i];
	if (!n)
		return -ENOSPC;
	n->used = true;
	snprintf(n->path, sizeof(n->path), "%s", path);
	snprintf(n->value, sizeof(n->value), "%s", value);
	xs_fire(v, path);
	return 0;
}

void vhu_be_state(struct vhu_platform *v, int state)
{
	char path[96], val[8];

	snprintf(path, sizeof(path), "%s/state", v->be_path);
	snprintf(val, sizeof(val), "%d", state);
	vhu_xs_set(v, path, val);
}

/* Give up on the connection the way vproxyd does: error node, Closing. */
static void be_error(struct vhu_platform *v, const char *why)
{
	char path[96];

	snprintf(path, sizeof(path), "%s/error", v->be_path);
	vhu_xs_set(v, path, why);
	vhu_be_state(v, XenbusStateClosing);
}

static long fe_uint(struct vhu_platform *v, const char *leaf)
{
	char path[96];
	struct xs_node *n;
	char *end;
	long r;

	snprintf(path, sizeof(path), "%s/%s", v->fe_path, leaf);
	n = xs_find(v, path);
	if (!n)
		return -1;
	r = strtol(n->value, &end, 10);
	return *end || r < 0 ? -1 : r;
}

/* The backend half of the handshake (docs/PROTOCOL.md section 1). */
static void fe_state_changed(struct vhu_platform *v, long state)
{
	long gfn;

	switch (state) {
	case XenbusStateInitialising: vhu_be_state(v, XenbusStateInitWait); break;
	case XenbusStateInitialised:
		gfn = fe_uint(v, "ring-ref");
		if (gfn <= 0 || (size_t)gfn >= v->pages) {
			be_error(v, "bad ring-ref");
			break;
		}
		v->page = v->ram + ((size_t)gfn << PAGE_SHIFT);
		if (((struct vproxy_page_hdr *)v->page)->magic != VPROXY_PAGE_MAGIC) {
			v->page = NULL;
			be_error(v, "bad shared page magic");
			break;
		}
		BACK_RING_INIT(&v->ring, vproxy_page_sring(v->page), VPROXY_RING_BYTES);
		vhu_be_state(v, XenbusStateConnected);
		break;
	case XenbusStateClosing:
	case XenbusStateClosed:
		vhu_device_reset(v);
		v->page = NULL;
		vhu_be_state(v, XenbusStateClosed);
		break;
	default: break;
	}
}

int vhu_xs_read(void *ctx, uint32_t tx, const char *path, char *buf, size_t len)
{
	struct xs_node *n = xs_find(ctx, path);

	(void)tx;
	if (!n)
		return -ENOENT;
	if (len)
		snprintf(buf, len, "%s", n->value);
	return (int)strlen(n->value);
}

int vhu_xs_write(void *ctx, uint32_t tx, const char *path, const char *value)
{
	struct vhu_platform *v = ctx;
	char state_path[96];
	int r;

	(void)tx;
	r = vhu_xs_set(v, path, value);
	snprintf(state_path, sizeof(state_path), "%s/state", v->fe_path);
	if (r == 0 && strcmp(path, state_path) == 0)
		fe_state_changed(v, strtol(value, NULL, 10));
	return r;
}

int vhu_xs_list(void *ctx, const char *path, char *buf, size_t len)
{
	struct vhu_platform *v = ctx;
	char dir[64];

	snprintf(dir, sizeof(dir), "/local/domain/%u/device/" VPROXY_XS_TYPE,
	         v->plat.domid);
	if (strcmp(path, dir) != 0)
		return -ENOENT;
	if (len < 2)
		return -ENOSPC;
	memcpy(buf, "0", 2);
	return 1;
}

int vhu_xs_tx_begin(void *ctx, uint32_t *tx)
{
	(void)ctx;
	*tx = 1; /* one thread, no one else writes: never a conflict */
	return 0;
}

int vhu_xs_tx_end(void *ctx, uint32_t tx, int abort_tx)
{
	(void)ctx;
	(void)tx;
	(void)abort_tx;
	return 0;
}

int vhu_xs_watch(void *ctx, const char *path, struct vps_watch **out)
{
	struct vhu_platform *v = ctx;

	for (unsigned i = 0; i < XS_WATCHES; i++) {
		struct vps_watch *w = &v->watches[i];

		if (w->used)
			continue;
		if (strlen(path) >= sizeof(w->path))
			return -ENAMETOOLONG;
		w->used = true;
		w->pending = true; /* fires once right away, as xenstore does */
		snprintf(w->path, sizeof(w->path), "%s", path);
		*out = w;
		return 0;
	}
	return -ENOSPC;
}

void vhu_xs_unwatch(void *ctx, struct vps_watch *w)
{
	(void)ctx;
	if (w)
		w->used = false;
}
