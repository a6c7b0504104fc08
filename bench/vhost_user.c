/* SPDX-License-Identifier: MIT */
/*
 * Front-end side of the vhost-user protocol (QEMU docs/interop/vhost-user):
 * only what a virtio-blk driver needs -- features, owner, protocol
 * features (REPLY_ACK, MQ, CONFIG), one memory region, vring setup and
 * teardown, config space.  Messages and replies; the platform
 * (vhost_platform.c) negotiates, the register model (vhost_mmio.c) sets
 * up the vrings.
 */
#include "vhost_internal.h"

/* ---- vhost-user messages ---- */

int vhu_send(struct vhu_platform *v, uint32_t req, uint32_t flags,
                    const void *payload, uint32_t size, const int *fds, unsigned nfds)
{
	struct vhu_hdr h = {
	        .request = req, .flags = VHU_HDR_VERSION | flags, .size = size};
	struct iovec iov[2] = {{.iov_base = &h, .iov_len = sizeof(h)},
	                       {.iov_base = (void *)payload, .iov_len = size}};
	union {
		char buf[CMSG_SPACE(sizeof(int) * 8)];
		struct cmsghdr align;
	} ctl;
	struct msghdr mh = {.msg_iov = iov, .msg_iovlen = size ? 2 : 1};
	ssize_t n;

	if (nfds) {
		struct cmsghdr *cm;

		memset(&ctl, 0, sizeof(ctl));
		mh.msg_control = ctl.buf;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
		cm = CMSG_FIRSTHDR(&mh);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
		memcpy(CMSG_DATA(cm), fds, sizeof(int) * nfds);
	}
	do
		n = sendmsg(v->sock, &mh, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	return (size_t)n == sizeof(h) + size ? 0 : -EIO;
}

/* Read exactly len bytes, waiting at most VHU_REPLY_TIMEOUT_MS in all. */
static int vhu_read_full(struct vhu_platform *v, void *buf, size_t len)
{
	uint8_t *p = buf;

	while (len) {
		struct pollfd pfd = {.fd = v->sock, .events = POLLIN};
		ssize_t n;
		int r = poll(&pfd, 1, VHU_REPLY_TIMEOUT_MS);

		if (r == 0)
			return -ETIMEDOUT;
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		n = recv(v->sock, p, len, 0);
		if (n == 0)
			return -ECONNRESET;
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Wait for the reply to req; its payload (at most len bytes) into out.
 * Returns the payload size or -errno. */
int vhu_reply(struct vhu_platform *v, uint32_t req, void *out, size_t len)
{
	struct vhu_hdr h;
	uint8_t junk[64];
	int r;

	r = vhu_read_full(v, &h, sizeof(h));
	if (r < 0)
		return r;
	if (h.request != req || !(h.flags & VHU_FLAG_REPLY) || h.size > 4096) {
		snprintf(v->err, sizeof(v->err),
		         "vhost-user: bad reply (request %u flags %#x size %u) to %u",
		         h.request, h.flags, h.size, req);
		return -EPROTO;
	}
	if (h.size <= len)
		return vhu_read_full(v, out, h.size) < 0 ? -EIO : (int)h.size;
	/* Longer than we want: keep the start, drop the rest. */
	r = vhu_read_full(v, out, len);
	for (uint32_t left = h.size - (uint32_t)len; r == 0 && left;) {
		uint32_t n = left < sizeof(junk) ? left : (uint32_t)sizeof(junk);

		r = vhu_read_full(v, junk, n);
		left -= n;
	}
	return r < 0 ? r : (int)len;
}

int vhu_get_u64(struct vhu_platform *v, uint32_t req, uint64_t *out)
{
	int r = vhu_send(v, req, 0, NULL, 0, NULL, 0);

	if (r == 0)
		r = vhu_reply(v, req, out, sizeof(*out));
	if (r >= 0 && r != (int)sizeof(*out))
		r = -EPROTO;
	return r < 0 ? r : 0;
}

/* A message without an answer of its own; with REPLY_ACK we ask for one,
 * so every setup step is known to be done before the next. */
int vhu_set(struct vhu_platform *v, uint32_t req, const void *payload,
                   uint32_t size, const int *fds, unsigned nfds)
{
	bool ack = v->proto & (1ull << VHU_PF_REPLY_ACK);
	uint64_t status = 0;
	int r;

	r = vhu_send(v, req, ack ? VHU_FLAG_NEED_REPLY : 0, payload, size, fds, nfds);
	if (r < 0 || !ack)
		return r;
	r = vhu_reply(v, req, &status, sizeof(status));
	if (r < 0)
		return r;
	return status ? -EIO : 0;
}

int vhu_set_u64(struct vhu_platform *v, uint32_t req, uint64_t val)
{
	return vhu_set(v, req, &val, sizeof(val), NULL, 0);
}

int vhu_set_state(struct vhu_platform *v, uint32_t req, uint32_t index,
                         uint32_t num)
{
	struct vhu_vring_state s = {.index = index, .num = num};

	return vhu_set(v, req, &s, sizeof(s), NULL, 0);
}
