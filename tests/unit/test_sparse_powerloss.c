/* SPDX-License-Identifier: MIT */
/*
 * Power loss, not only a killed process (int.sparse_crash keeps the page
 * cache; a power cut does not).  The sparse plugin serves a random guest
 * workload (writes, discards, write-zeroes, reads, flushes, eight at a
 * time) while the test engine (vpio_test_sys.h) records, in the order they
 * reached the file, every write, punch, size change and fdatasync the
 * plugin made, and the guest's submissions and acknowledgements.
 *
 * Then the image is rebuilt as it could be on disk after a power cut at
 * every point of that log: everything before the last fdatasync that
 * returned, plus a subset of what came after it (every subset when there
 * are few, random ones otherwise, from a fixed seed), writes and punches
 * split into 4 KiB pages that persist independently.  Each image must pass the
 * checks of `vproxy-img check` (no corruption; leaks are allowed and
 * repaired), and every block must read back as one of the versions the
 * guest may see: the one it wrote last before submitting its last
 * acknowledged FLUSH, or a later one; never another block's data.  A
 * sample also goes through the vproxy-img binary (check, check --repair)
 * and is read back through the plugin.
 *
 * The same with 64 KiB clusters, and with direct=on (data through
 * O_DIRECT, the map buffered) and 4 KiB clusters.
 * Last, calls fail at random (EIO, ENOSPC) during the workload.
 * VPROXY_POWERLOSS_SEED changes the seed of the first and the last
 * workload; VPROXY_POWERLOSS_FAULT_PCT the share of calls that fail (4).
 */
#include <check.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "vpio_test_sys.h"
#include "plugin_test_util.h"

/* The plugin itself, compiled in, so the test engine reaches it. */
#include "../../plugins/sparse/sparse.c"

#define BLK 4096u
#define MAX_CLUSTER (64u * 1024u)
#define DISK (1u << 20) /* 256 blocks in 64 clusters */
#define NBLK (DISK / BLK)
#define QD 8u
#define GUEST_OPS 120u
#define PIECE 4096u   /* what persists independently */
#define EXHAUSTIVE 6u /* pieces after the barrier: all subsets up to this */
#define RANDOM_SUBSETS 12u

enum mark { M_SUBMIT = 1, M_ACK, M_FLUSH_SUBMIT, M_FLUSH_ACK };

/* One guest request on blocks (READs are not kept). */
struct gop {
	uint32_t block, n;
	bool zero;
	size_t submit_at, ack_at; /* log indices; ack_at SIZE_MAX: not acked */
};

struct gflush {
	size_t submit_at, ack_at;
};

static struct gop gops[GUEST_OPS + 1];
static unsigned ngops, ops_limit = GUEST_OPS;
static uint32_t cluster = 16 * 1024; /* the image's cluster size */
static struct gflush gflushes[GUEST_OPS + 1];
static unsigned nflushes;
static uint64_t rng;

static uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

/* The content of block b as written by op id (1-based; 0: zeros). */
static void fill_block(uint8_t *p, uint32_t b, unsigned id)
{
	for (unsigned i = 0; i < BLK / 8; i++) {
		uint64_t v = ((uint64_t)id << 40) ^ ((uint64_t)b << 20) ^ i ^
		             0x5a5a000000000000ull;

		memcpy(p + i * 8, &v, 8);
	}
}

static bool all_zero(const uint8_t *p)
{
	return p[0] == 0 && memcmp(p, p + 1, BLK - 1) == 0;
}

static bool block_is(const uint8_t *p, uint32_t b, unsigned id, bool zero)
{
	uint8_t want[BLK];

	if (zero)
		return all_zero(p);
	fill_block(want, b, id);
	return memcmp(p, want, BLK) == 0;
}

/* ---- the live run ---- */

struct pslot {
	struct vp_req_owner owner; /* first, as plugin_host.h requires */
	struct vproxy_req req;
	struct iovec iov;
	uint8_t buf[3 * BLK];
	bool busy;
	bool is_read;
	unsigned gop;       /* index + 1 into gops, or flush index + 1 */
	unsigned expect[3]; /* READ: op id each block must hold (0 zeros) */
	bool expect_zero[3];
};

static struct pslot slots[QD];
static uint8_t busy_blk[NBLK]; /* requests in flight on the block */
static bool tainted[NBLK];     /* overlapping requests met here */
static unsigned cur_id[NBLK];  /* last acknowledged op on the block */
static bool cur_zero[NBLK];
static unsigned live_failures; /* wrong data read, or a request failed */
static bool faults_on;         /* calls fail at random: requests may fail */
static unsigned failed_reqs;   /* ...and these did */

static void start(void *disk, struct treq *t, uint32_t op, uint32_t flags,
                  uint64_t offset, uint64_t len, void *buf)
{
	memset(t, 0, sizeof(*t));
	t->owner.complete = treq_complete;
	t->req.op = op;
	t->req.flags = flags;
	t->req.offset = offset;
	t->req.len = len;
	t->req.host_priv = t;
	if (buf) {
		t->iov[0].iov_base = buf;
		t->iov[0].iov_len = (size_t)len;
		t->req.iov = t->iov;
		t->req.iovcnt = 1;
	}
	ck_assert_int_eq(plugin->submit(disk, &t->req), 0);
}

static void slot_done(struct vproxy_req *req, int status)
{
	struct pslot *s = req->host_priv;

	s->busy = false;
	if (status != 0 && !faults_on)
		live_failures++;
	if (status != 0) {
		/* Not acknowledged: whatever it did to its blocks, they now
		 * hold one of their versions, which one is unknown. */
		failed_reqs++;
		for (unsigned i = 0; i < req->len / BLK; i++) {
			tainted[req->offset / BLK + i] = true;
			busy_blk[req->offset / BLK + i]--;
		}
		return;
	}
	if (req->op == VPROXY_REQ_FLUSH) {
		gflushes[s->gop - 1].ack_at = tsys_mark(M_FLUSH_ACK, s->gop - 1, 0);
		return;
	}
	if (!s->is_read)
		gops[s->gop - 1].ack_at = tsys_mark(M_ACK, s->gop - 1, 0);
	for (unsigned i = 0; i < req->len / BLK; i++) {
		uint32_t b = (uint32_t)(req->offset / BLK) + i;

		busy_blk[b]--;
		if (s->is_read && !tainted[b]) {
			if (!block_is(s->buf + i * BLK, b, s->expect[i],
			              s->expect_zero[i]))
				live_failures++;
		} else if (!s->is_read) {
			cur_id[b] = s->gop;
			cur_zero[b] = gops[s->gop - 1].zero;
		}
	}
}

/* Start op on blocks [b, b+n) in slot s (FLUSH: b, n unused), with
 * the markers.  overlap: even over requests in flight on those blocks
 * (which taints them); otherwise false if one is busy. */
static bool slot_issue(void *disk, struct pslot *s, uint32_t op, uint32_t flags,
                       uint32_t b, uint32_t n, bool overlap)
{
	bool tainted_any = false;

	memset(&s->req, 0, sizeof(s->req));
	s->owner.complete = slot_done;
	s->req.host_priv = s;
	s->req.op = op;
	s->req.flags = flags;
	s->is_read = op == VPROXY_REQ_READ;
	if (op == VPROXY_REQ_FLUSH) {
		s->gop = ++nflushes;
		gflushes[nflushes - 1].ack_at = SIZE_MAX;
		gflushes[nflushes - 1].submit_at =
		        tsys_mark(M_FLUSH_SUBMIT, nflushes - 1, 0);
		s->busy = true;
		ck_assert_int_eq(plugin->submit(disk, &s->req), 0);
		return true;
	}
	for (unsigned i = 0; i < n; i++) {
		if (busy_blk[b + i] && !overlap)
			return false;
		if (busy_blk[b + i])
			tainted_any = true;
	}
	/* A DISCARD is a hint: when its punch fails it still succeeds. */
	if (faults_on && op == VPROXY_REQ_DISCARD)
		tainted_any = true;
	for (unsigned i = 0; i < n; i++) {
		if (tainted_any)
			tainted[b + i] = true;
		busy_blk[b + i]++;
	}
	s->req.offset = (uint64_t)b * BLK;
	s->req.len = (uint64_t)n * BLK;
	s->busy = true;
	if (s->is_read) {
		for (unsigned i = 0; i < n; i++) {
			s->expect[i] = cur_id[b + i];
			s->expect_zero[i] = cur_id[b + i] == 0 || cur_zero[b + i];
		}
	} else {
		struct gop *g = &gops[ngops];

		g->block = b;
		g->n = n;
		g->zero = op != VPROXY_REQ_WRITE;
		g->ack_at = SIZE_MAX;
		s->gop = ++ngops;
		if (op == VPROXY_REQ_WRITE)
			for (unsigned i = 0; i < n; i++)
				fill_block(s->buf + i * BLK, b + i, s->gop);
		g->submit_at = tsys_mark(M_SUBMIT, s->gop - 1, 0);
	}
	if (s->req.op == VPROXY_REQ_READ || s->req.op == VPROXY_REQ_WRITE) {
		s->iov.iov_base = s->buf;
		s->iov.iov_len = (size_t)s->req.len;
		s->req.iov = &s->iov;
		s->req.iovcnt = 1;
	}
	ck_assert_int_eq(plugin->submit(disk, &s->req), 0);
	return true;
}

/* Start one random request in slot s; false if its blocks are busy. */
static bool slot_start(void *disk, struct pslot *s, unsigned flushes_out)
{
	unsigned r = (unsigned)(rnd() % 100);
	uint32_t b = (uint32_t)(rnd() % NBLK), n = 1 + (uint32_t)(rnd() % 3);
	uint32_t op, flags = 0;
	bool overlap = false;

	if (r >= 88)
		return flushes_out < 2 &&
		       slot_issue(disk, s, VPROXY_REQ_FLUSH, 0, 0, 0, false);
	if (r >= 50 && r < 62 && rnd() % 2) {
		b -= b % (cluster / BLK); /* whole clusters: they are freed */
		n = cluster / BLK;
		/* Now and then over a write in flight, as a guest may: the
		 * freed cluster can then hold data after it was punched. */
		overlap = rnd() % 3 == 0;
	}
	if (b + n > NBLK)
		n = NBLK - b;
	if (r < 50) {
		op = VPROXY_REQ_WRITE;
	} else if (r < 76) {
		op = r < 62 ? VPROXY_REQ_DISCARD : VPROXY_REQ_WRITE_ZEROES;
		if (r < 62 || rnd() % 2)
			flags = VPROXY_REQ_F_UNMAP;
	} else {
		op = VPROXY_REQ_READ;
	}
	return slot_issue(disk, s, op, flags, b, n, overlap);
}

/* Drive the workload to its end; the disk is closed (its last sync is in
 * the log). */
static void live_run(void *disk)
{
	time_t deadline = time(NULL) + 30;
	unsigned flushes_out = 0;

	for (;;) {
		struct timeval tv = {0, 20000};
		bool any = false;

		flushes_out = 0;
		for (unsigned i = 0; i < QD; i++)
			if (slots[i].busy && slots[i].req.op == VPROXY_REQ_FLUSH)
				flushes_out++;
		for (unsigned i = 0; i < QD; i++) {
			if (!slots[i].busy && ngops < ops_limit &&
			    slot_start(disk, &slots[i], flushes_out) &&
			    slots[i].req.op == VPROXY_REQ_FLUSH)
				flushes_out++;
			any |= slots[i].busy;
		}
		if (!any)
			break;
		ck_assert_msg(time(NULL) < deadline, "the workload did not finish");
		event_base_loopexit(base, &tv);
		event_base_loop(base, EVLOOP_ONCE);
	}
	ck_assert_uint_eq(live_failures, 0);
	vp_plugin_close(plugin, disk);
}

/* ---- replay ---- */

/* A piece of a record that persists on its own. */
struct piece {
	size_t rec;
	uint64_t off, len;
	const uint8_t *data; /* TREC_WRITE */
};

static struct piece *pieces;
static size_t npieces;
static size_t *first_piece; /* per record, and one past the end */

static void split_pieces(void)
{
	size_t cap = 1024;

	pieces = malloc(cap * sizeof(*pieces));
	first_piece = malloc((tsys_n + 1) * sizeof(*first_piece));
	ck_assert(pieces && first_piece);
	for (size_t i = 0; i < tsys_n; i++) {
		const struct trec *r = &tsys_log[i];
		uint64_t pos = r->off, end = r->off + r->len;

		first_piece[i] = npieces;
		if (r->kind == TREC_SYNC || r->kind == TREC_MARK)
			continue;
		do {
			/* A size change is one; writes and punches go by page. */
			uint64_t stop =
			        r->kind != TREC_TRUNC ? (pos / PIECE + 1) * PIECE : end;

			if (stop > end)
				stop = end;
			if (npieces == cap) {
				cap *= 2;
				pieces = realloc(pieces, cap * sizeof(*pieces));
				ck_assert_ptr_nonnull(pieces);
			}
			pieces[npieces].rec = i;
			pieces[npieces].off = pos;
			pieces[npieces].len = stop - pos;
			pieces[npieces].data =
			        r->kind == TREC_WRITE ? r->data + (pos - r->off) : NULL;
			npieces++;
			pos = stop;
		} while (pos < end);
	}
	first_piece[tsys_n] = npieces;
}

/* Undo information for one applied piece. */
struct undo {
	uint64_t off, len, size; /* size: the file's before */
	uint8_t *old;
};

static void apply(int fd, const struct piece *p, struct undo *u)
{
	const struct trec *r = &tsys_log[p->rec];
	struct stat st;

	if (u) {
		ck_assert_int_eq(fstat(fd, &st), 0);
		u->size = (uint64_t)st.st_size;
		u->off = r->kind == TREC_TRUNC ? 0 : p->off;
		u->len = r->kind == TREC_TRUNC ? 0 : p->len;
		u->old = NULL;
		if (u->len) {
			ssize_t got;

			u->old = calloc(1, (size_t)u->len);
			ck_assert_ptr_nonnull(u->old);
			got = pread(fd, u->old, (size_t)u->len, (off_t)u->off);
			ck_assert_int_ge(got, 0);
		}
	}
	switch (r->kind) {
	case TREC_WRITE:
		ck_assert_int_eq(pwrite(fd, p->data, (size_t)p->len, (off_t)p->off),
		                 (ssize_t)p->len);
		break;
	case TREC_ZERO:
		ck_assert_int_eq(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
		                           (off_t)p->off, (off_t)p->len),
		                 0);
		break;
	case TREC_TRUNC: ck_assert_int_eq(ftruncate(fd, (off_t)p->off), 0); break;
	default: break;
	}
}

static void undo(int fd, struct undo *u)
{
	if (u->len) {
		/* Only what was inside the file then can have held bytes. */
		uint64_t keep = u->off >= u->size           ? 0
		                : u->size - u->off < u->len ? u->size - u->off
		                                            : u->len;

		if (keep)
			ck_assert_int_eq(pwrite(fd, u->old, (size_t)keep, (off_t)u->off),
			                 (ssize_t)keep);
	}
	ck_assert_int_eq(ftruncate(fd, (off_t)u->size), 0);
	free(u->old);
}

/* What the guest may find in each block after a cut at log index k:
 * op ids (0: zeros) per block; bit set = allowed. */
struct allowed {
	size_t n[NBLK];
	unsigned id[NBLK][GUEST_OPS + 1];
};

static void allowed_at(size_t k, struct allowed *a)
{
	size_t limit = 0; /* acknowledged before this: durable */

	for (unsigned f = 0; f < nflushes; f++)
		if (gflushes[f].ack_at < k && gflushes[f].submit_at > limit)
			limit = gflushes[f].submit_at;
	for (uint32_t b = 0; b < NBLK; b++) {
		int base = -1;

		a->n[b] = 0;
		/* Where requests overlapped, their order is the device's:
		 * anything written there (but only there) may be found. */
		for (unsigned g = 0; g < ngops && !tainted[b]; g++)
			if (b >= gops[g].block && b < gops[g].block + gops[g].n &&
			    gops[g].ack_at < limit)
				base = (int)g;
		if (base < 0)
			a->id[b][a->n[b]++] = 0;
		for (unsigned g = base < 0 ? 0 : (unsigned)base; g < ngops; g++)
			if (b >= gops[g].block && b < gops[g].block + gops[g].n &&
			    gops[g].submit_at < k)
				a->id[b][a->n[b]++] = g + 1;
	}
}

static bool block_allowed(const struct allowed *a, uint32_t b, const uint8_t *p)
{
	bool zero = all_zero(p);
	uint64_t w;
	unsigned cand;

	/* Data names its op in its first word: compare with that one only. */
	memcpy(&w, p, sizeof(w));
	cand = (unsigned)((w ^ 0x5a5a000000000000ull) >> 40);
	for (size_t i = 0; i < a->n[b]; i++) {
		unsigned id = a->id[b][i];
		bool zero_op = id == 0 || gops[id - 1].zero;

		if (zero_op ? zero : (id == cand && block_is(p, b, id, false)))
			return true;
	}
	return false;
}

static char fail_msg[4096];

/* The checks of vproxy-img check, in process, and the guest's view read
 * straight from the file.  NULL, or what is wrong (in fail_msg). */
static const char *check_state(int fd, const struct allowed *a)
{
	struct sparse_image img;
	struct sparse_scan scan;
	char why[300];
	uint64_t map[DISK / BLK];
	static uint8_t cl[MAX_CLUSTER];
	int r;

	if (sparse_open(&img, fd, why, sizeof(why)) < 0) {
		snprintf(fail_msg, sizeof(fail_msg), "does not open: %s", why);
		return fail_msg;
	}
	r = sparse_scan(&img, &scan);
	if (r != 0) {
		snprintf(fail_msg, sizeof(fail_msg), "check: corrupt (%d): %s", r,
		         scan.report);
		sparse_scan_free(&scan);
		return fail_msg;
	}
	sparse_scan_free(&scan);
	ck_assert_int_eq(sparse_map_read(&img, 0, DISK / cluster, map), 0);
	for (uint32_t c = 0; c < DISK / cluster; c++) {
		if (map[c])
			ck_assert_int_eq(pread(fd, cl, cluster, (off_t)map[c]), cluster);
		else
			memset(cl, 0, cluster);
		for (uint32_t i = 0; i < cluster / BLK; i++) {
			uint32_t b = c * (cluster / BLK) + i;

			if (!block_allowed(a, b, cl + i * BLK)) {
				int len = snprintf(
				        fail_msg, sizeof(fail_msg),
				        "block %u (cluster %u at %#llx) holds none "
				        "of the allowed ops:",
				        b, c, (unsigned long long)map[c]);

				for (size_t j = 0; j < a->n[b] && len < 3000; j++)
					len += snprintf(fail_msg + len,
					                sizeof(fail_msg) - (size_t)len,
					                " %u", a->id[b][j]);
				for (unsigned g = 0; g < ngops && len < 3800; g++)
					if (block_is(cl + i * BLK, gops[g].block, g + 1,
					             false) ||
					    (b != gops[g].block + 1 && gops[g].n > 1 &&
					     block_is(cl + i * BLK, gops[g].block + 1,
					              g + 1, false)))
						len += snprintf(fail_msg + len,
						                sizeof(fail_msg) -
						                        (size_t)len,
						                "; holds op %u's data "
						                "for block %u",
						                g + 1, gops[g].block);
				sparse_close(&img);
				return fail_msg;
			}
		}
	}
	sparse_close(&img);
	return NULL;
}

static int tool(const char *args, const char *file)
{
	char cmd[512];
	int st;

	snprintf(cmd, sizeof(cmd),
	         "timeout 30 %s/plugins/sparse/vproxy-img %s '%s' >/dev/null 2>&1",
	         VP_TEST_BIN_DIR, args, file);
	st = system(cmd);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* The deep check of a sample: the vproxy-img binary agrees, repairs,
 * and the plugin reads every block as allowed after opening it. */
static void deep_check(int fd, const struct allowed *a)
{
	char copy[200];
	struct vproxy_disk_info info;
	void *disk = NULL;
	static uint8_t buf[DISK];
	struct stat st;
	int out;

	snprintf(copy, sizeof(copy), "%s/deep.img", dir);
	out = open(copy, O_RDWR | O_CREAT | O_TRUNC, 0644);
	ck_assert_int_ge(out, 0);
	ck_assert_int_eq(fstat(fd, &st), 0);
	ck_assert_int_eq(copy_file_range(fd, &(loff_t){0}, out, &(loff_t){0},
	                                 (size_t)st.st_size, 0),
	                 st.st_size);
	close(out);
	ck_assert_int_eq(tool("check", copy), 0);
	ck_assert_int_eq(tool("check --repair", copy), 0);
	ck_assert_msg(open_disk(copy, NULL, NULL, 0, &info, &disk) == 0, "%s", err);
	ck_assert_int_eq(run(disk, VPROXY_REQ_READ, 0, 0, DISK, buf), 0);
	vp_plugin_close(plugin, disk);
	for (uint32_t b = 0; b < NBLK; b++)
		ck_assert_msg(block_allowed(a, b, buf + b * BLK),
		              "block %u read through the plugin", b);
}

/* Rebuild the image at every cut point of the log and check each. */
static void replay_all(uint64_t seed, const uint8_t *initial, size_t initial_len)
{
	static struct allowed allow;
	char state_path[200];
	struct undo *undos;
	size_t f = 0, applied_to = 0, states = 0, deep = 0;
	int fd;

	split_pieces();
	fprintf(stderr,
	        "power loss: seed %#llx, %u guest requests, %u flushes, %zu records, "
	        "%zu pieces\n",
	        (unsigned long long)seed, ngops, nflushes, tsys_n, npieces);
	/* The durable base: the initial image, then every record before the
	 * last completed fdatasync, applied as the cut point moves on. */
	snprintf(state_path, sizeof(state_path), "%s/state.img", dir);
	fd = open(state_path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(pwrite(fd, initial, initial_len, 0), (ssize_t)initial_len);
	undos = calloc(npieces + 1, sizeof(*undos));
	ck_assert_ptr_nonnull(undos);
	for (size_t k = 0; k <= tsys_n; k++) {
		size_t lo, hi, n, subsets;

		if (k > 0 && tsys_log[k - 1].kind == TREC_SYNC)
			f = k - 1;
		/* Records before f are durable: into the base for good. */
		for (; applied_to < f; applied_to++)
			for (size_t p = first_piece[applied_to];
			     p < first_piece[applied_to + 1]; p++)
				apply(fd, &pieces[p], NULL);
		/* A marker adds nothing to the file; only a flush's ack
		 * changes what the guest was promised. */
		if (k > 0 && k < tsys_n && tsys_log[k - 1].kind == TREC_MARK &&
		    tsys_log[k - 1].mark != M_FLUSH_ACK)
			continue;
		/* Pieces after the barrier: each may or may not have made it. */
		lo = first_piece[f < k ? f : k];
		hi = first_piece[k];
		n = hi - lo;
		allowed_at(k, &allow);
		subsets = n <= EXHAUSTIVE ? (size_t)1 << n : RANDOM_SUBSETS + 2;
		for (size_t sub = 0; sub < subsets; sub++) {
			const char *bad;
			size_t nu = 0;

			for (size_t p = lo; p < hi; p++) {
				bool take = n <= EXHAUSTIVE ? (sub >> (p - lo)) & 1
				            : sub == 0      ? false
				            : sub == 1      ? true
				                            : rnd() % 2;

				if (take)
					apply(fd, &pieces[p], &undos[nu++]);
			}
			bad = check_state(fd, &allow);
			ck_assert_msg(!bad,
			              "cut at record %zu of %zu (last sync at %zu, %zu "
			              "pieces after it, subset %zu, seed %#llx): %s",
			              k, tsys_n, f, n, sub, (unsigned long long)seed,
			              bad);
			if (states % 2048 == 0) {
				deep_check(fd, &allow);
				deep++;
			}
			states++;
			while (nu)
				undo(fd, &undos[--nu]);
		}
	}
	fprintf(stderr,
	        "power loss: %zu images checked, %zu through vproxy-img and the "
	        "plugin\n",
	        states, deep);
	close(fd);
	free(undos);
}

/* Open the image through the test engine (direct: "on" or NULL);
 * *initial gets what is on disk when recording starts (open syncs
 * whatever it changes). */
static void *open_recorded(const char *direct, uint8_t **initial, size_t *len)
{
	struct vproxy_disk_info info;
	void *disk = NULL;
	char why[300];
	struct stat st;
	int fd;

	ck_assert_msg(sparse_create(path, DISK, cluster, true, why, sizeof(why)) == 0,
	              "%s", why);
	tsys_install();
	ck_assert_msg(open_disk(path, direct, NULL, 0, &info, &disk) == 0, "%s", err);
	fd = open(path, O_RDONLY);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(fstat(fd, &st), 0);
	*len = (size_t)st.st_size;
	*initial = calloc(1, *len);
	ck_assert_ptr_nonnull(*initial);
	ck_assert_int_eq(pread(fd, *initial, *len, 0), st.st_size);
	close(fd);
	tsys_record(true);
	return disk;
}

START_TEST(power_cut_anywhere_keeps_flushed_data)
{
	const char *seed_env = getenv("VPROXY_POWERLOSS_SEED");
	uint64_t seed = seed_env ? strtoull(seed_env, NULL, 0) : 0x5eed0011ull;
	uint8_t *initial;
	size_t len;
	void *disk;

	rng = seed | 1;
	disk = open_recorded(NULL, &initial, &len);
	live_run(disk);
	tsys_record(false);
	replay_all(seed, initial, len);
	free(initial);
}
END_TEST

/* With 64 KiB clusters: sixteen blocks to a cluster, few allocations. */
START_TEST(power_cut_with_large_clusters)
{
	uint8_t *initial;
	size_t len;
	void *disk;

	rng = 0x64c1;
	cluster = 64 * 1024;
	ops_limit = GUEST_OPS / 2;
	disk = open_recorded(NULL, &initial, &len);
	live_run(disk);
	tsys_record(false);
	replay_all(0x64c1, initial, len);
	free(initial);
}
END_TEST

/* The same with direct=on: data through an O_DIRECT descriptor, the map
 * through the page cache; one fdatasync covers both (one inode).  And
 * with 4 KiB clusters: one block each, a map entry per write. */
START_TEST(power_cut_with_direct_io)
{
	uint8_t *initial;
	size_t len;
	void *disk;
	int probe;

	/* tmpfs takes O_DIRECT from Linux 6.6 on. */
	snprintf(path, sizeof(path), "%s/direct-probe", dir);
	probe = open(path, O_RDWR | O_CREAT | O_DIRECT, 0644);
	if (probe < 0) {
		fprintf(stderr, "direct test skipped: %s refuses O_DIRECT: %s\n", dir,
		        strerror(errno));
		return;
	}
	close(probe);
	unlink(path);
	snprintf(path, sizeof(path), "%s/disk.img", dir);
	rng = 0xd1ec7;
	cluster = 4096;
	ops_limit = GUEST_OPS / 2;
	disk = open_recorded("on", &initial, &len);
	live_run(disk);
	tsys_record(false);
	replay_all(0xd1ec7, initial, len);
	free(initial);
}
END_TEST

/* Calls fail now and then (from their own seed, under the engine's
 * lock); rare enough that most requests get through. */
static uint64_t fault_rng = 0xfa17;
static unsigned fault_pct = 4;

static int random_fault(enum tsys_call call, int fd, uint64_t off, uint64_t len)
{
	(void)fd;
	(void)off;
	(void)len;
	fault_rng ^= fault_rng << 13;
	fault_rng ^= fault_rng >> 7;
	fault_rng ^= fault_rng << 17;
	if (fault_rng % 100 >= fault_pct)
		return 0;
	return call == TSYS_TRUNCATE ? ENOSPC : EIO;
}

/* Requests failing on injected EIO and ENOSPC all along, then a power
 * cut: what failed holds one of its block's versions (never another
 * block's data), the rest is held to the usual promise. */
START_TEST(power_cut_after_injected_faults)
{
	uint8_t *initial;
	size_t len;
	void *disk;

	const char *seed_env = getenv("VPROXY_POWERLOSS_SEED");
	const char *pct_env = getenv("VPROXY_POWERLOSS_FAULT_PCT");
	uint64_t seed = seed_env ? strtoull(seed_env, NULL, 0) : 0xbadd15cull;

	rng = seed | 1;
	fault_rng = seed * 31 + 7;
	if (pct_env)
		fault_pct = (unsigned)strtoul(pct_env, NULL, 0);
	ops_limit = GUEST_OPS / 2;
	disk = open_recorded(NULL, &initial, &len);
	faults_on = true;
	tsys_set_fault(random_fault);
	live_run(disk);
	tsys_set_fault(NULL);
	tsys_record(false);
	fprintf(stderr, "power loss: %u calls failed, %u requests with them\n",
	        tsys_faults, failed_reqs);
	ck_assert_uint_gt(failed_reqs, 0);
	replay_all(seed, initial, len);
	free(initial);
}
END_TEST

/* Run the loop until slot s is idle (10 s at most). */
static void wait_slot(struct pslot *s)
{
	time_t deadline = time(NULL) + 10;

	while (s->busy) {
		struct timeval tv = {0, 20000};

		ck_assert_msg(time(NULL) < deadline, "request did not complete");
		event_base_loopexit(base, &tv);
		event_base_loop(base, EVLOOP_ONCE);
	}
}

/* The order that once let a power cut show one block's data in another:
 * a guest discards a cluster while its write into it is still running,
 * the write lands after the discard punched the cluster, a flush, the
 * cluster is zeroed again and handed to another block before a flush
 * made that zeroing durable. */
START_TEST(cluster_freed_under_a_write_is_reused_only_once_zeroed)
{
	struct pslot *a = &slots[0], *d = &slots[1], *f = &slots[2];
	uint8_t *initial;
	uint64_t c_off;
	size_t len;
	void *disk;
	time_t deadline;

	rng = 7;
	disk = open_recorded(NULL, &initial, &len);
	/* Blocks 0-3 (cluster 0) written and flushed. */
	ck_assert(slot_issue(disk, a, VPROXY_REQ_WRITE, 0, 0, 3, false));
	wait_slot(a);
	ck_assert(slot_issue(disk, a, VPROXY_REQ_WRITE, 0, 3, 1, false));
	wait_slot(a);
	ck_assert(slot_issue(disk, f, VPROXY_REQ_FLUSH, 0, 0, 0, false));
	wait_slot(f);
	c_off = ((struct sparse_disk *)disk)->img.h.data_offset;
	/* An overwrite of block 1, held back in its worker... */
	tsys_hold_write(c_off + BLK);
	ck_assert(slot_issue(disk, a, VPROXY_REQ_WRITE, 0, 1, 2, false));
	deadline = time(NULL) + 10;
	while (!tsys_write_held()) {
		ck_assert_msg(time(NULL) < deadline, "the write never started");
		usleep(1000);
	}
	/* ...while the guest discards the whole cluster under it. */
	ck_assert(
	        slot_issue(disk, d, VPROXY_REQ_DISCARD, VPROXY_REQ_F_UNMAP, 0, 4, true));
	wait_slot(d);
	tsys_release_write();
	wait_slot(a);
	/* A flush; then the freed cluster may be zeroed and reused. */
	ck_assert(slot_issue(disk, f, VPROXY_REQ_FLUSH, 0, 0, 0, false));
	wait_slot(f);
	for (unsigned i = 0; i < 20; i++) {
		struct timeval tv = {0, 5000};

		event_base_loopexit(base, &tv);
		event_base_loop(base, EVLOOP_ONCE);
	}
	/* Block 8 alone in cluster 2: the lowest free cluster is cluster 0's. */
	ck_assert(slot_issue(disk, a, VPROXY_REQ_WRITE, 0, 8, 1, false));
	wait_slot(a);
	ck_assert(slot_issue(disk, f, VPROXY_REQ_FLUSH, 0, 0, 0, false));
	wait_slot(f);
	vp_plugin_close(plugin, disk);
	tsys_record(false);
	ck_assert_uint_eq(live_failures, 0);
	replay_all(0, initial, len);
	free(initial);
}
END_TEST

static void setup(void)
{
	base = event_base_new();
	ck_assert_ptr_nonnull(base);
	vp_plugin_set_event_base(base);
	plugin = VPROXY_PLUGIN_INIT_FN(vp_plugin_host());
	ck_assert_ptr_nonnull(plugin);
	snprintf(path, sizeof(path), "%s/disk.img", dir);
}

/* dir itself is main()'s: removed there even when a test failed. */
static void powerloss_teardown(void)
{
	tsys_uninstall();
	vp_plugin_set_event_base(NULL);
	event_base_free(base);
}

int main(void)
{
	Suite *s = suite_create("sparse_powerloss");
	TCase *tc = tcase_create("core");
	SRunner *sr;
	char cmd[128];
	int failed;

	/* tmpfs where there is one: fdatasync costs nothing there. */
	snprintf(dir, sizeof(dir), "%s/vproxy-test-powerloss.XXXXXX",
	         access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return EXIT_FAILURE;
	}

	tcase_add_checked_fixture(tc, setup, powerloss_teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, power_cut_anywhere_keeps_flushed_data);
	tcase_add_test(tc, cluster_freed_under_a_write_is_reused_only_once_zeroed);
	tcase_add_test(tc, power_cut_with_large_clusters);
	tcase_add_test(tc, power_cut_with_direct_io);
	tcase_add_test(tc, power_cut_after_injected_faults);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	snprintf(cmd, sizeof(cmd), "rm -rf -- '%s'", dir);
	if (system(cmd) != 0)
		failed++;
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
