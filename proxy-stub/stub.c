/* SPDX-License-Identifier: MIT */
/*
 * The proxy stub: xenbus handshake, then virtio-mmio register accesses as
 * vproxy ring messages.  Reads wait for their answer; writes are posted and
 * their answers consumed whenever the stub looks at the ring.  Nothing here
 * allocates or calls the OS: see platform.h.
 */
#include "stub.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <xen/io/xenbus.h>

#define NSEC_PER_SEC 1000000000ull
#define TX_RETRIES 16
/* How long a backend asked to start over may stay Closed with an error. */
#define RESTART_GRACE_NS (2 * NSEC_PER_SEC)
/* Posted-write refusals logged in full before only every 1024th is. */
#define WRITE_ERROR_LOG_FIRST 8

/* A request id is the low 16 bits of its ring index, so the answer to the
 * oldest outstanding request always carries a known id. */
#define REQ_ID(idx) ((uint16_t)(idx))

static void dev_log(const struct vps_frontend *dev, enum vps_log_level level, const char *fmt,
                    ...) __attribute__((format(printf, 3, 4)));

static void dev_log(const struct vps_frontend *dev, enum vps_log_level level, const char *fmt,
                    ...)
{
	char msg[256];
	va_list ap;
	int n;

	n = snprintf(msg, sizeof(msg), "dom %u dev %u: ", (unsigned)dev->p->domid,
	             dev->devid);
	if (n < 0 || (size_t)n >= sizeof(msg))
		n = 0;
	va_start(ap, fmt);
	vsnprintf(msg + n, sizeof(msg) - (size_t)n, fmt, ap);
	va_end(ap);
	dev->p->log(dev->p->ctx, level, msg);
}

static uint64_t deadline_after(const struct vps_frontend *dev, uint64_t timeout_ns)
{
	uint64_t now = dev->p->now_ns(dev->p->ctx);

	return timeout_ns > UINT64_MAX - now ? UINT64_MAX : now + timeout_ns;
}

/* Decimal only, as xenstore nodes hold them; rejects junk and overflow. */
static int parse_uint(const char *s, uint64_t *out)
{
	uint64_t v = 0;

	if (*s == '\0')
		return -EINVAL;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return -EINVAL;
		if (v > (UINT64_MAX - (uint64_t)(*s - '0')) / 10)
			return -ERANGE;
		v = v * 10 + (uint64_t)(*s - '0');
	}
	*out = v;
	return 0;
}

static int read_node(const struct vps_frontend *dev, uint32_t tx, const char *dir,
                     const char *leaf, char *buf, size_t len)
{
	char path[192];
	int n;

	n = snprintf(path, sizeof(path), "%s/%s", dir, leaf);
	if (n < 0 || (size_t)n >= sizeof(path))
		return -ENAMETOOLONG;
	return dev->p->xs_read(dev->p->ctx, tx, path, buf, len);
}

static int read_uint_node(const struct vps_frontend *dev, const char *dir, const char *leaf,
                          uint64_t *v)
{
	char buf[32];
	int r;

	r = read_node(dev, 0, dir, leaf, buf, sizeof(buf));
	if (r < 0)
		return r;
	return parse_uint(buf, v);
}

static int write_node(const struct vps_frontend *dev, uint32_t tx, const char *dir,
                      const char *leaf, const char *value)
{
	char path[192];
	int n;

	n = snprintf(path, sizeof(path), "%s/%s", dir, leaf);
	if (n < 0 || (size_t)n >= sizeof(path))
		return -ENAMETOOLONG;
	return dev->p->xs_write(dev->p->ctx, tx, path, value);
}

static int write_uint_node(const struct vps_frontend *dev, uint32_t tx, const char *dir,
                           const char *leaf, uint64_t v)
{
	char buf[24];

	snprintf(buf, sizeof(buf), "%llu", (unsigned long long)v);
	return write_node(dev, tx, dir, leaf, buf);
}

/* The first reason sticks: later failures are usually its consequences. */
static void set_error(struct vps_frontend *dev, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));

static void set_error(struct vps_frontend *dev, const char *fmt, ...)
{
	va_list ap;

	if (dev->error[0])
		return;
	va_start(ap, fmt);
	vsnprintf(dev->error, sizeof(dev->error), fmt, ap);
	va_end(ap);
}

/* The backend's own explanation if it left one, else fallback. */
static void take_backend_error(struct vps_frontend *dev, const char *fallback)
{
	char text[sizeof(dev->error)];

	if (read_node(dev, 0, dev->be_path, "error", text, sizeof(text)) > 0)
		set_error(dev, "%s", text);
	else
		set_error(dev, "%s", fallback);
}

static void mark_gone(struct vps_frontend *dev)
{
	if (!dev->gone)
		dev_log(dev, VPS_LOG_WARN, "backend gone: %s", dev->error);
	dev->gone = true;
}

static void protocol_error(struct vps_frontend *dev, const char *what, unsigned a, unsigned b)
{
	set_error(dev, "protocol error: %s (%u, %u)", what, a, b);
	mark_gone(dev);
}

/* Frontend state, written only while the toolstack's frontend directory
 * exists, so a late write never recreates a removed device. */
static int write_fe_state(struct vps_frontend *dev, enum xenbus_state state)
{
	char buf[256];
	uint32_t tx;
	int r = -EAGAIN;

	for (int i = 0; i < TX_RETRIES && r == -EAGAIN; i++) {
		r = dev->p->xs_tx_begin(dev->p->ctx, &tx);
		if (r < 0)
			return r;
		r = read_node(dev, tx, dev->fe_path, "backend", buf, sizeof(buf));
		if (r >= 0)
			r = write_uint_node(dev, tx, dev->fe_path, "state",
			                    (uint64_t)state);
		if (r < 0) {
			dev->p->xs_tx_end(dev->p->ctx, tx, 1);
			return r;
		}
		r = dev->p->xs_tx_end(dev->p->ctx, tx, 0);
	}
	return r;
}

/* Sleep on the event channel and the backend watch; a watch event means
 * the backend's directory changed, so look at its state. */
static int sleep_once(struct vps_frontend *dev, uint64_t timeout_ns)
{
	int w;

	dev->stats.sleeps++;
	w = dev->p->wait(dev->p->ctx, dev->port, dev->be_watch, timeout_ns);
	if (w < 0)
		return w;
	if (w & VPS_WAKE_WATCH)
		vps_check_backend(dev);
	return 0;
}

static uint64_t access_mask(unsigned size)
{
	return size >= 8 ? UINT64_MAX : (1ull << (size * 8)) - 1;
}

/* Take every answer the backend has produced. */
static void consume(struct vps_frontend *dev)
{
	struct vproxy_front_ring *ring = &dev->ring;
	RING_IDX prod, cons;

	if (dev->gone || dev->poisoned)
		return;
	prod = __atomic_load_n(&ring->sring->rsp_prod, __ATOMIC_ACQUIRE);
	if (prod - ring->rsp_cons > ring->req_prod_pvt - ring->rsp_cons) {
		protocol_error(dev, "rsp_prod beyond requests", prod, ring->req_prod_pvt);
		return;
	}
	for (cons = ring->rsp_cons; cons != prod; cons++) {
		struct vproxy_mmio_rsp rsp;
		uint32_t shadow = dev->shadow[cons % VPS_RING_ENTRIES];

		RING_COPY_RESPONSE(ring, cons, &rsp);
		if (rsp.id != REQ_ID(cons)) {
			protocol_error(dev, "answer id out of order", rsp.id,
			               REQ_ID(cons));
			return;
		}
		if (dev->awaiting && cons == dev->await_idx) {
			dev->await_done = true;
			dev->await_status = rsp.status;
			dev->await_value = rsp.value;
		} else if (rsp.status != VPROXY_ST_OK &&
		           (shadow >> 16) == VPROXY_OP_WRITE) {
			dev->stats.write_errors++;
			if (dev->stats.write_errors <= WRITE_ERROR_LOG_FIRST ||
			    dev->stats.write_errors % 1024 == 0)
				dev_log(dev, VPS_LOG_WARN,
				        "write to 0x%03x refused (status %u, %llu so "
				        "far)",
				        (unsigned)(shadow & 0xffff), (unsigned)rsp.status,
				        (unsigned long long)dev->stats.write_errors);
		}
	}
	ring->rsp_cons = prod;
}

/* The ring is full: ask for a notification on the next answer and sleep
 * until a slot frees. */
static int wait_slot(struct vps_frontend *dev)
{
	uint64_t deadline = deadline_after(dev, dev->opts.read_timeout_ns);
	int r;

	dev->stats.ring_full++;
	for (;;) {
		uint64_t now;

		consume(dev);
		if (dev->gone)
			return -ENODEV;
		if (!RING_FULL(&dev->ring))
			return 0;
		dev->ring.sring->rsp_event = dev->ring.rsp_cons + 1;
		xen_mb();
		if (RING_HAS_UNCONSUMED_RESPONSES(&dev->ring))
			continue;
		now = dev->p->now_ns(dev->p->ctx);
		if (now >= deadline) {
			dev_log(dev, VPS_LOG_WARN, "ring full and no answer for %llu ms",
			        (unsigned long long)(dev->opts.read_timeout_ns /
			                             1000000));
			return -ETIMEDOUT;
		}
		r = sleep_once(dev, deadline - now);
		if (r < 0)
			return r;
	}
}

static int push(struct vps_frontend *dev, uint8_t op, uint32_t offset, unsigned size,
                uint64_t value, RING_IDX *idx)
{
	struct vproxy_front_ring *ring = &dev->ring;
	struct vproxy_mmio_req *req;
	RING_IDX i;
	int notify, r;

	if (!dev->attached)
		return -ENODEV;
	if (dev->poisoned)
		return -EPIPE;
	if (dev->gone)
		return -ENODEV;
	if (RING_FULL(ring)) {
		consume(dev);
		if (RING_FULL(ring)) {
			r = wait_slot(dev);
			if (r < 0)
				return r;
		}
	}
	i = ring->req_prod_pvt;
	req = RING_GET_REQUEST(ring, i);
	req->op = op;
	req->size = (uint8_t)size;
	req->id = REQ_ID(i);
	req->offset = offset;
	req->value = value;
	dev->shadow[i % VPS_RING_ENTRIES] = (uint32_t)op << 16 | offset;
	ring->req_prod_pvt = i + 1;
	RING_PUSH_REQUESTS_AND_CHECK_NOTIFY(ring, notify);
	if (notify) {
		dev->stats.notifies++;
		r = dev->p->evtchn_notify(dev->p->ctx, dev->port);
		if (r < 0)
			dev_log(dev, VPS_LOG_WARN, "event channel notify failed: %d", r);
	}
	*idx = i;
	return 0;
}

/* Wait for the answer to request dev->await_idx. */
static int await_answer(struct vps_frontend *dev)
{
	uint64_t spin_until = deadline_after(dev, dev->opts.spin_ns);
	uint64_t deadline = deadline_after(dev, dev->opts.read_timeout_ns);
	int r;

	for (;;) {
		uint64_t now;

		consume(dev);
		if (dev->await_done)
			return 0;
		if (dev->gone)
			return -ENODEV;
		now = dev->p->now_ns(dev->p->ctx);
		if (now < spin_until)
			continue;
		/* Be notified for this answer only, not for the posted writes'
		 * answers before it. */
		dev->ring.sring->rsp_event = dev->await_idx + 1;
		xen_mb();
		if (RING_HAS_UNCONSUMED_RESPONSES(&dev->ring))
			continue;
		if (now >= deadline) {
			dev->stats.read_timeouts++;
			dev_log(dev, VPS_LOG_WARN,
			        "no answer to read of 0x%03x in %llu ms",
			        (unsigned)(dev->shadow[dev->await_idx %
			                               VPS_RING_ENTRIES] &
			                   0xffff),
			        (unsigned long long)(dev->opts.read_timeout_ns /
			                             1000000));
			return -ETIMEDOUT;
		}
		r = sleep_once(dev, deadline - now);
		if (r < 0)
			return r;
	}
}

static bool access_ok(uint32_t offset, unsigned size)
{
	if (size != 1 && size != 2 && size != 4 && size != 8)
		return false;
	return offset < VPROXY_PAGE_SIZE && offset + size <= VPROXY_PAGE_SIZE;
}

static struct vproxy_page_hdr *page_hdr(const struct vps_frontend *dev)
{
	return (struct vproxy_page_hdr *)dev->page;
}

int vps_read(struct vps_frontend *dev, uint32_t offset, unsigned size, uint64_t *val)
{
	RING_IDX idx;
	int r;

	*val = access_mask(size);
	if (!access_ok(offset, size))
		return -EINVAL;
	if (!dev->attached)
		return -ENODEV;
	if (offset == VPS_REG_INTERRUPT_STATUS && size == 4) {
		dev->stats.local_reads++;
		*val = __atomic_load_n(&page_hdr(dev)->irq_status, __ATOMIC_ACQUIRE);
		return 0;
	}
	r = push(dev, VPROXY_OP_READ, offset, size, 0, &idx);
	if (r < 0)
		return r;
	dev->stats.reads++;
	dev->awaiting = true;
	dev->await_done = false;
	dev->await_idx = idx;
	r = await_answer(dev);
	dev->awaiting = false;
	if (r < 0)
		return r;
	if (dev->await_status != VPROXY_ST_OK) {
		dev_log(dev, VPS_LOG_DEBUG, "read of 0x%03x size %u refused (status %u)",
		        (unsigned)offset, size, (unsigned)dev->await_status);
		return -EIO;
	}
	*val = dev->await_value & access_mask(size);
	return 0;
}

int vps_write(struct vps_frontend *dev, uint32_t offset, unsigned size, uint64_t val)
{
	RING_IDX idx;
	int r;

	if (!access_ok(offset, size))
		return -EINVAL;
	if (!dev->attached)
		return -ENODEV;
	if (offset == VPS_REG_INTERRUPT_ACK && size == 4) {
		dev->stats.local_acks++;
		__atomic_fetch_and(&page_hdr(dev)->irq_status, ~(uint32_t)val,
		                   __ATOMIC_ACQ_REL);
		return 0;
	}
	r = push(dev, VPROXY_OP_WRITE, offset, size, val & access_mask(size), &idx);
	if (r < 0)
		return r;
	dev->stats.writes++;
	return 0;
}

void vps_set_spin_ns(struct vps_frontend *dev, uint64_t spin_ns)
{
	dev->opts.spin_ns = spin_ns;
}

void vps_set_irq_handler(struct vps_frontend *dev, vps_irq_fn fn, void *arg)
{
	dev->irq_fn = fn;
	dev->irq_arg = arg;
}

int vps_poll(struct vps_frontend *dev)
{
	if (!dev->attached)
		return -ENODEV;
	consume(dev);
	if (dev->gone)
		return -ENODEV;
	if (__atomic_load_n(&page_hdr(dev)->irq_status, __ATOMIC_ACQUIRE) == 0)
		return 0;
	if (dev->irq_fn) {
		dev->stats.irq_calls++;
		dev->irq_fn(dev->irq_arg);
	}
	return 1;
}

int vps_wait(struct vps_frontend *dev, uint64_t timeout_ns)
{
	uint64_t spin_until = deadline_after(dev, dev->opts.spin_ns);
	uint64_t deadline = deadline_after(dev, timeout_ns);
	bool slept = false;
	int r;

	if (spin_until > deadline)
		spin_until = deadline;
	for (;;) {
		uint64_t now;

		r = vps_poll(dev);
		if (r != 0)
			return r;
		now = dev->p->now_ns(dev->p->ctx);
		if (now < spin_until)
			continue;
		if (now >= deadline && slept)
			return 0;
		r = sleep_once(dev, now >= deadline ? 0 : deadline - now);
		if (r < 0)
			return r;
		slept = true;
	}
}

int vps_check_backend(struct vps_frontend *dev)
{
	uint64_t state = 0;
	int r;

	if (dev->gone)
		return -ENODEV;
	r = read_uint_node(dev, dev->be_path, "state", &state);
	if (r == -ENOENT) {
		take_backend_error(dev, "backend removed");
		mark_gone(dev);
	} else if (r == 0 &&
	           (state == XenbusStateClosing || state == XenbusStateClosed)) {
		take_backend_error(dev, state == XenbusStateClosing ? "backend closing"
		                                                    : "backend closed");
		mark_gone(dev);
	}
	return dev->gone ? -ENODEV : 0;
}

bool vps_is_gone(const struct vps_frontend *dev)
{
	return dev->gone;
}

const char *vps_error(const struct vps_frontend *dev)
{
	return dev->error;
}

uint16_t vps_backend_id(const struct vps_frontend *dev)
{
	return dev->be;
}

const struct vps_platform *vps_platform_of(const struct vps_frontend *dev)
{
	return dev->p;
}

void vps_get_stats(const struct vps_frontend *dev, struct vps_stats *st)
{
	*st = dev->stats;
}

void vps_opts_default(struct vps_opts *o)
{
	o->attach_timeout_ns = 10 * NSEC_PER_SEC;
	o->close_timeout_ns = 5 * NSEC_PER_SEC;
	o->read_timeout_ns = 5 * NSEC_PER_SEC;
	o->spin_ns = 0;
	o->expect_backend = -1;
}

int vps_list(const struct vps_platform *p, unsigned *ids, unsigned max)
{
	char path[64], names[1024];
	unsigned found = 0;
	const char *s;
	int n;

	snprintf(path, sizeof(path), "/local/domain/%u/device/" VPROXY_XS_TYPE,
	         (unsigned)p->domid);
	n = p->xs_list(p->ctx, path, names, sizeof(names));
	if (n == -ENOENT)
		return 0;
	if (n < 0)
		return n;
	s = names;
	for (int i = 0; i < n; i++) {
		uint64_t id;

		if (parse_uint(s, &id) == 0 && id <= UINT32_MAX) {
			if (found < max)
				ids[found] = (unsigned)id;
			found++;
		}
		s += strlen(s) + 1;
	}
	return (int)found;
}

/* Handshake step 1a: the toolstack's frontend directory with its pointer
 * to the backend. */
static int wait_frontend(struct vps_frontend *dev, uint64_t deadline)
{
	struct vps_watch *watch = NULL;
	char idbuf[16];
	uint64_t be;
	int r;

	r = dev->p->xs_watch(dev->p->ctx, dev->fe_path, &watch);
	if (r < 0)
		return r;
	for (;;) {
		uint64_t now;

		r = read_node(dev, 0, dev->fe_path, "backend", dev->be_path,
		              sizeof(dev->be_path));
		if (r >= 0)
			r = read_node(dev, 0, dev->fe_path, "backend-id", idbuf,
			              sizeof(idbuf));
		if (r >= 0) {
			if ((size_t)r >= sizeof(idbuf) || parse_uint(idbuf, &be) < 0 ||
			    be > VPROXY_DOMID_MAX || dev->be_path[0] != '/') {
				set_error(dev, "bad backend/backend-id in %s",
				          dev->fe_path);
				r = -EINVAL;
			} else {
				dev->be = (uint16_t)be;
				r = 0;
			}
			break;
		}
		if (r != -ENOENT)
			break;
		now = dev->p->now_ns(dev->p->ctx);
		if (now >= deadline) {
			set_error(dev, "timed out waiting for %s", dev->fe_path);
			r = -ETIMEDOUT;
			break;
		}
		r = dev->p->wait(dev->p->ctx, -1, watch, deadline - now);
		if (r < 0)
			break;
	}
	dev->p->xs_unwatch(dev->p->ctx, watch);
	return r;
}

/* Wait until the backend reaches want.  An error node or Closing/Closed
 * fails the handshake with the backend's text, but only after grace_until:
 * a backend asked to start over needs a moment to leave Closed and drop
 * its old error. */
static int wait_backend(struct vps_frontend *dev, enum xenbus_state want, uint64_t deadline,
                        uint64_t grace_until)
{
	char text[sizeof(dev->error)];
	uint64_t state = 0;
	int r;

	for (;;) {
		uint64_t now = dev->p->now_ns(dev->p->ctx);
		bool fatal_ok = now >= grace_until;

		r = read_uint_node(dev, dev->be_path, "state", &state);
		if (r == 0 && state == want)
			return 0;
		if (fatal_ok &&
		    read_node(dev, 0, dev->be_path, "error", text, sizeof(text)) > 0) {
			set_error(dev, "%s", text);
			return -ENODEV;
		}
		if (fatal_ok && r == 0 &&
		    (state == XenbusStateClosing || state == XenbusStateClosed)) {
			set_error(dev, "backend state %llu while connecting",
			          (unsigned long long)state);
			return -ENODEV;
		}
		if (r < 0 && r != -ENOENT && r != -EINVAL)
			return r;
		if (now >= deadline) {
			set_error(dev,
			          "timed out waiting for backend state %d (it is %lld)",
			          (int)want, r == 0 ? (long long)state : -1ll);
			return -ETIMEDOUT;
		}
		r = dev->p->wait(dev->p->ctx, -1, dev->be_watch,
		                 (fatal_ok ? deadline : grace_until) - now);
		if (r < 0)
			return r;
	}
}

/* Wait for the backend to be Closed or gone; 0 or -ETIMEDOUT. */
static int wait_backend_closed(struct vps_frontend *dev, uint64_t deadline)
{
	uint64_t state = 0;
	int r;

	for (;;) {
		uint64_t now;

		r = read_uint_node(dev, dev->be_path, "state", &state);
		if (r == -ENOENT || (r == 0 && state == XenbusStateClosed))
			return 0;
		now = dev->p->now_ns(dev->p->ctx);
		if (now >= deadline)
			return -ETIMEDOUT;
		r = dev->p->wait(dev->p->ctx, -1, dev->be_watch, deadline - now);
		if (r < 0)
			return r;
	}
}

/* Handshake step 1b: bring the backend to InitWait.  A frontend starting
 * over (after our own earlier session, or a crashed one) says Initialising;
 * a backend still Connected to a dead session is first taken through
 * Closing/Closed, as Linux's xenbus_reset_state() does. */
static int start_over(struct vps_frontend *dev)
{
	uint64_t deadline = deadline_after(dev, dev->opts.attach_timeout_ns);
	uint64_t fe_state = XenbusStateUnknown, be_state = XenbusStateUnknown;
	uint64_t grace = 0;
	int r;

	read_uint_node(dev, dev->fe_path, "state", &fe_state);
	read_uint_node(dev, dev->be_path, "state", &be_state);
	if (be_state == XenbusStateInitialised || be_state == XenbusStateConnected) {
		dev_log(dev, VPS_LOG_INFO, "backend still in state %llu: resetting it",
		        (unsigned long long)be_state);
		r = write_fe_state(dev, XenbusStateClosing);
		if (r < 0)
			return r;
		fe_state = XenbusStateClosing;
		r = wait_backend_closed(dev,
		                        deadline_after(dev, dev->opts.close_timeout_ns));
		if (r < 0) {
			set_error(dev, "backend did not close a stale connection");
			return r;
		}
	}
	if (fe_state != XenbusStateInitialising) {
		r = write_fe_state(dev, XenbusStateInitialising);
		if (r < 0)
			return r;
		grace = deadline_after(dev, RESTART_GRACE_NS);
		if (grace > deadline)
			grace = deadline;
	}
	return wait_backend(dev, XenbusStateInitWait, deadline, grace);
}

/* Handshake step 3: everything the backend needs, then Initialised, in one
 * transaction. */
static int publish(struct vps_frontend *dev)
{
	/* ring-ref is the gfn or the grant ref: the page number in either
	 * address encoding. */
	uint64_t ring_ref = (dev->page_addr & ~VPROXY_GRANT_ADDR_FLAG) >> 12;
	const char *mode = dev->p->addr_mode == VPS_ADDR_GRANT ? "grant" : "gfn";
	uint32_t tx;
	int r = -EAGAIN;

	for (int i = 0; i < TX_RETRIES && r == -EAGAIN; i++) {
		r = dev->p->xs_tx_begin(dev->p->ctx, &tx);
		if (r < 0)
			return r;
		r = write_uint_node(dev, tx, dev->fe_path, "ring-ref", ring_ref);
		if (r == 0)
			r = write_uint_node(dev, tx, dev->fe_path, "event-channel",
			                    (uint64_t)dev->port);
		if (r == 0)
			r = write_node(dev, tx, dev->fe_path, "addr-mode", mode);
		if (r == 0)
			r = write_uint_node(dev, tx, dev->fe_path, "protocol-version",
			                    VPROXY_PROTO_VERSION);
		if (r == 0)
			r = write_uint_node(dev, tx, dev->fe_path, "state",
			                    XenbusStateInitialised);
		if (r < 0) {
			dev->p->xs_tx_end(dev->p->ctx, tx, 1);
			return r;
		}
		r = dev->p->xs_tx_end(dev->p->ctx, tx, 0);
	}
	return r;
}

/* Closing, wait for the backend to be Closed (or removed), Closed. */
static int close_handshake(struct vps_frontend *dev)
{
	int r, ret;

	r = write_fe_state(dev, XenbusStateClosing);
	if (r == -ENOENT)
		return 0; /* the toolstack removed the device already */
	if (r < 0)
		dev_log(dev, VPS_LOG_WARN, "cannot write state Closing: %d", r);
	ret = wait_backend_closed(dev, deadline_after(dev, dev->opts.close_timeout_ns));
	if (ret == -ETIMEDOUT)
		dev_log(dev, VPS_LOG_WARN, "backend did not close in %llu ms",
		        (unsigned long long)(dev->opts.close_timeout_ns / 1000000));
	r = write_fe_state(dev, XenbusStateClosed);
	if (r < 0 && r != -ENOENT)
		dev_log(dev, VPS_LOG_WARN, "cannot write state Closed: %d", r);
	return ret;
}

static void release(struct vps_frontend *dev)
{
	if (dev->port >= 0)
		dev->p->evtchn_close(dev->p->ctx, dev->port);
	dev->port = -1;
	if (dev->page)
		dev->p->dma_free(dev->p->ctx, dev->page, VPROXY_PAGE_SIZE);
	dev->page = NULL;
	if (dev->be_watch)
		dev->p->xs_unwatch(dev->p->ctx, dev->be_watch);
	dev->be_watch = NULL;
	dev->attached = false;
}

int vps_attach(struct vps_frontend *dev, const struct vps_platform *p, unsigned devid,
               const struct vps_opts *opts)
{
	struct vproxy_page_hdr *hdr;
	struct vproxy_sring *sring;
	int r;

	memset(dev, 0, sizeof(*dev));
	dev->p = p;
	dev->devid = devid;
	dev->port = -1;
	if (opts)
		dev->opts = *opts;
	else
		vps_opts_default(&dev->opts);
	snprintf(dev->fe_path, sizeof(dev->fe_path),
	         "/local/domain/%u/device/" VPROXY_XS_TYPE "/%u", (unsigned)p->domid,
	         devid);

	r = wait_frontend(dev, deadline_after(dev, dev->opts.attach_timeout_ns));
	if (r < 0)
		goto fail;
	if (dev->opts.expect_backend >= 0 &&
	    dev->be != (unsigned)dev->opts.expect_backend) {
		set_error(dev, "backend is domain %u, expected %d", (unsigned)dev->be,
		          dev->opts.expect_backend);
		r = -EINVAL;
		goto fail;
	}
	r = p->xs_watch(p->ctx, dev->be_path, &dev->be_watch);
	if (r < 0)
		goto fail;
	r = start_over(dev);
	if (r < 0)
		goto fail;

	dev->page = p->dma_alloc(p->ctx, dev->be, VPROXY_PAGE_SIZE, &dev->page_addr);
	if (!dev->page) {
		set_error(dev, "no memory for the ring page");
		r = -ENOMEM;
		goto fail;
	}
	hdr = page_hdr(dev);
	memset(hdr, 0, sizeof(*hdr));
	hdr->magic = VPROXY_PAGE_MAGIC;
	hdr->version = VPROXY_PROTO_VERSION;
	sring = vproxy_page_sring(dev->page);
	SHARED_RING_INIT(sring);
	FRONT_RING_INIT(&dev->ring, sring, VPROXY_RING_BYTES);
	xen_wmb(); /* the page is complete before anyone reads ring-ref */

	r = p->evtchn_alloc(p->ctx, dev->be);
	if (r < 0) {
		set_error(dev, "cannot allocate an event channel (%d)", r);
		goto fail;
	}
	dev->port = r;
	dev->attached = true;

	r = publish(dev);
	if (r < 0) {
		set_error(dev, "cannot publish ring-ref/event-channel (%d)", r);
		goto fail;
	}
	r = wait_backend(dev, XenbusStateConnected,
	                 deadline_after(dev, dev->opts.attach_timeout_ns), 0);
	if (r < 0)
		goto fail_published;
	r = write_fe_state(dev, XenbusStateConnected);
	if (r < 0) {
		set_error(dev, "cannot write state Connected (%d)", r);
		goto fail_published;
	}
	dev_log(dev, VPS_LOG_DEBUG, "connected to %s (ring-ref addr 0x%llx, port %d)",
	        dev->be_path, (unsigned long long)dev->page_addr, dev->port);
	return 0;

fail_published:
	/* The backend may have mapped the page: let it let go first. */
	close_handshake(dev);
fail:
	dev_log(dev, VPS_LOG_WARN, "attach failed: %s (%d)",
	        dev->error[0] ? dev->error : "?", r);
	release(dev);
	return r;
}

int vps_detach(struct vps_frontend *dev)
{
	int r;

	if (!dev->attached)
		return 0;
	r = close_handshake(dev);
	if (r == -ETIMEDOUT && dev->page) {
		/* The backend may still map the page and write to it: giving
		 * it back would let that land in whatever reuses it. */
		dev_log(dev, VPS_LOG_WARN, "backend still attached: its shared page is "
		                           "left allocated");
		dev->page = NULL;
	}
	release(dev);
	return r;
}

void vps_debug_overflow_ring(struct vps_frontend *dev)
{
	if (!dev->attached || dev->gone)
		return;
	dev->poisoned = true;
	xen_wmb();
	dev->ring.sring->req_prod =
	        dev->ring.req_prod_pvt + 3 * RING_SIZE(&dev->ring) + 1;
	xen_mb();
	dev->stats.notifies++;
	dev->p->evtchn_notify(dev->p->ctx, dev->port);
}
