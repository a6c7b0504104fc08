/* SPDX-License-Identifier: MIT */
/*
 * crash-writer: drives a storage plugin the way vproxyd does (plugin host,
 * libevent loop, async completions) with a random workload, and keeps a
 * journal of what it submitted and what was acknowledged, so that after
 * the process is killed (kill -9) at a random moment another run can check
 * the disk against the journal.
 *
 *   crash-writer write PLUGIN_DIR PLUGIN IMAGE JOURNAL SEED
 *       runs until killed (prints "running" once the disk is open)
 *   crash-writer verify PLUGIN_DIR PLUGIN IMAGE JOURNAL
 *       exit 0 if every block holds an allowed version, 1 if not
 *
 * Blocks are 4 KiB.  Every 512-byte sector of a written block carries the
 * block number, the version (a number unique over the run) and its sector
 * index, so a sector from the wrong place or time is caught.  Operations
 * on one block never overlap in time, which makes each block's history a
 * sequence.  After a crash, a block may hold the version of its last
 * operation acknowledged before the last completed FLUSH was submitted,
 * or of any operation after that one (in flight or not yet flushed), and
 * each sector may come from any of these (writes can tear).  DISCARD and
 * WRITE_ZEROES versions are all zeros.
 */
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "plugin_host.h"

#define BLOCK 4096u
#define SECTORS (BLOCK / 512u)
#define QD 32u
#define MAGIC 0x43585056u /* "VPXC" */

enum rec_type { R_SUBMIT = 'S', R_ACK = 'A', R_FLUSH = 'F', R_FLUSHED = 'D' };

/* One journal record; written with one write(2), so whole or absent. */
struct rec {
	uint8_t type;
	uint8_t zero; /* the version is all zeros (DISCARD/WRITE_ZEROES) */
	uint16_t nblocks;
	uint32_t block;
	uint64_t version; /* op id: unique, increasing; flush id for F/D */
};

struct slot {
	struct vp_req_owner owner; /* first, as plugin_host.h requires */
	struct vproxy_req req;
	struct iovec iov;
	uint8_t *buf;
	bool busy;
	bool is_read;
	uint64_t version; /* READ: the version expected */
	uint32_t block;
	uint16_t nblocks;
	bool zero;
};

static const struct vproxy_plugin *plugin;
static void *disk;
static uint64_t nblocks_disk;
static int journal = -1;
static struct slot slots[QD];
static uint8_t *busy;         /* per block */
static uint64_t *cur_version; /* per block: last acknowledged (0 = zeros) */
static bool *cur_zero;
static uint64_t next_version = 1, rng;
static struct event_base *base;
static int failed;

static uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static void journal_put(uint8_t type, uint32_t block, uint16_t n, uint64_t version,
                        bool zero)
{
	struct rec r = {.type = type,
	                .zero = zero,
	                .nblocks = n,
	                .block = block,
	                .version = version};

	if (write(journal, &r, sizeof(r)) != (ssize_t)sizeof(r)) {
		fprintf(stderr, "crash-writer: journal: %s\n", strerror(errno));
		exit(2);
	}
}

/* The content of one sector of (block, version). */
static void fill_sector(uint8_t *p, uint32_t block, uint64_t version, unsigned sector)
{
	uint32_t h[4] = {MAGIC, block, (uint32_t)version, sector};
	uint32_t x = block * 2654435761u ^ (uint32_t)version * 40503u ^ sector;

	memcpy(p, h, sizeof(h));
	for (unsigned i = sizeof(h); i < 512; i++) {
		x = x * 1103515245u + 12345u;
		p[i] = (uint8_t)(x >> 16);
	}
}

static bool sector_matches(const uint8_t *p, uint32_t block, unsigned sector,
                           uint64_t version, bool zero)
{
	uint8_t want[512];

	if (zero) {
		for (unsigned i = 0; i < 512; i++)
			if (p[i])
				return false;
		return true;
	}
	fill_sector(want, block, version, sector);
	return memcmp(p, want, 512) == 0;
}

static void on_done(struct vproxy_req *req, int status);

static int open_disk(const char *dir, const char *name, const char *image, int ro)
{
	struct vproxy_params *p = vp_params_new();
	struct vproxy_disk_info info;
	char err[512];
	int rc;

	plugin = vp_plugin_load(dir, name, err, sizeof(err));
	if (!plugin) {
		fprintf(stderr, "crash-writer: %s\n", err);
		return -1;
	}
	if (!p || vp_params_set(p, "file", image, 1) < 0)
		return -1;
	rc = vp_plugin_open(plugin, 0, 0, "crash-writer", p, ro, &info, &disk, err,
	                    sizeof(err));
	vp_params_free(p);
	if (rc < 0) {
		fprintf(stderr, "crash-writer: open %s: %s\n", image, err);
		return -1;
	}
	nblocks_disk = info.capacity / BLOCK;
	return 0;
}

static void run_loop_until(bool (*done)(void))
{
	time_t deadline = time(NULL) + 30;

	while (!done()) {
		struct timeval tv = {0, 50000};

		if (time(NULL) > deadline) {
			fprintf(stderr, "crash-writer: requests did not complete\n");
			exit(2);
		}
		event_base_loopexit(base, &tv);
		event_base_loop(base, EVLOOP_ONCE);
	}
}

/* ---- write mode ---- */

static void start_op(struct slot *s)
{
	uint64_t r = rnd() % 100;
	uint32_t b = (uint32_t)(rnd() % nblocks_disk);
	uint16_t n = r % 7 == 0 ? 4 : 1; /* some writes span clusters */

	memset(&s->req, 0, sizeof(s->req));
	s->req.host_priv = s;
	s->owner.complete = on_done;
	s->is_read = false;
	s->zero = false;
	if (r < 5) {
		uint64_t id = next_version++;

		s->req.op = VPROXY_REQ_FLUSH;
		s->version = id;
		s->nblocks = 0;
		s->busy = true;
		journal_put(R_FLUSH, 0, 0, id, false);
		if (plugin->submit(disk, &s->req) < 0)
			exit(2);
		return;
	}
	if (b + n > nblocks_disk)
		n = 1;
	for (unsigned i = 0; i < n; i++)
		if (busy[b + i])
			return; /* try again on the next turn */
	for (unsigned i = 0; i < n; i++)
		busy[b + i] = 1;
	s->block = b;
	s->nblocks = n;
	s->busy = true;
	s->req.offset = (uint64_t)b * BLOCK;
	s->req.len = (uint64_t)n * BLOCK;
	if (r < 25) {
		s->is_read = true;
		s->req.op = VPROXY_REQ_READ;
	} else if (r < 45) {
		s->zero = true;
		s->version = next_version++;
		s->req.op = r < 35 ? VPROXY_REQ_DISCARD : VPROXY_REQ_WRITE_ZEROES;
		if (r % 2)
			s->req.flags = VPROXY_REQ_F_UNMAP;
		journal_put(R_SUBMIT, b, n, s->version, true);
	} else {
		s->version = next_version++;
		s->req.op = VPROXY_REQ_WRITE;
		for (unsigned i = 0; i < n; i++)
			for (unsigned k = 0; k < SECTORS; k++)
				fill_sector(s->buf + i * BLOCK + k * 512, b + i,
				            s->version, k);
		journal_put(R_SUBMIT, b, n, s->version, false);
	}
	if (s->is_read || s->req.op == VPROXY_REQ_WRITE) {
		s->iov.iov_base = s->buf;
		s->iov.iov_len = s->req.len;
		s->req.iov = &s->iov;
		s->req.iovcnt = 1;
	}
	if (plugin->submit(disk, &s->req) < 0)
		exit(2);
}

static void on_done(struct vproxy_req *req, int status)
{
	struct slot *s = req->host_priv;

	s->busy = false;
	if (status < 0) {
		fprintf(stderr, "crash-writer: op %u failed: %s\n", req->op,
		        strerror(-status));
		exit(2);
	}
	if (req->op == VPROXY_REQ_FLUSH) {
		journal_put(R_FLUSHED, 0, 0, s->version, false);
		return;
	}
	for (unsigned i = 0; i < s->nblocks; i++) {
		uint32_t b = s->block + i;

		busy[b] = 0;
		if (s->is_read) {
			for (unsigned k = 0; k < SECTORS; k++)
				if (!sector_matches(s->buf + i * BLOCK + k * 512, b, k,
				                    cur_version[b], cur_zero[b])) {
					fprintf(stderr,
					        "crash-writer: live read of block %u "
					        "sector %u is not version %" PRIu64 "\n",
					        b, k, cur_version[b]);
					failed = 1;
				}
		} else {
			cur_version[b] = s->version;
			cur_zero[b] = s->zero;
		}
	}
	if (!s->is_read)
		journal_put(R_ACK, s->block, s->nblocks, s->version, s->zero);
}

static int do_write(char **argv)
{
	rng = strtoull(argv[5], NULL, 0) | 1;
	journal = open(argv[4], O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644);
	if (journal < 0 || open_disk(argv[1], argv[2], argv[3], 0) < 0)
		return 2;
	busy = calloc(nblocks_disk, 1);
	cur_version = calloc(nblocks_disk, sizeof(*cur_version));
	cur_zero = calloc(nblocks_disk, sizeof(*cur_zero));
	for (unsigned i = 0; i < QD; i++)
		slots[i].buf = malloc(4 * BLOCK);
	for (uint64_t b = 0; b < nblocks_disk; b++)
		cur_zero[b] = true;
	printf("running\n");
	fflush(stdout);
	while (!failed) {
		struct timeval tv = {0, 10000};

		for (unsigned i = 0; i < QD; i++)
			if (!slots[i].busy)
				start_op(&slots[i]);
		event_base_loopexit(base, &tv);
		event_base_loop(base, EVLOOP_ONCE);
	}
	return 1;
}

/* ---- verify mode ---- */

struct op_rec {
	uint64_t version;
	bool zero;
	size_t submitted, acked; /* journal positions; acked SIZE_MAX: never */
};

struct history {
	struct op_rec *v;
	size_t n, cap;
};

static struct slot vslot;
static bool vslot_done(void)
{
	return !vslot.busy;
}

static void on_read(struct vproxy_req *req, int status)
{
	struct slot *s = req->host_priv;

	s->busy = false;
	if (status < 0) {
		fprintf(stderr, "crash-writer: verify read failed: %s\n",
		        strerror(-status));
		exit(2);
	}
}

static int do_verify(char **argv)
{
	struct rec *recs;
	struct history *h;
	size_t nrec, flush_pos = SIZE_MAX;
	uint64_t last_flush = 0, bad = 0;
	int fd = open(argv[4], O_RDONLY);
	off_t size;

	if (fd < 0) {
		perror("crash-writer: journal");
		return 2;
	}
	size = lseek(fd, 0, SEEK_END);
	nrec = (size_t)size / sizeof(struct rec); /* a torn tail is ignored */
	recs = malloc(nrec * sizeof(*recs) + 1);
	if (pread(fd, recs, nrec * sizeof(*recs), 0) != (ssize_t)(nrec * sizeof(*recs)))
		return 2;
	close(fd);
	/* The last completed flush, and where it was submitted. */
	for (size_t i = 0; i < nrec; i++)
		if (recs[i].type == R_FLUSHED)
			last_flush = recs[i].version;
	for (size_t i = 0; i < nrec && last_flush; i++)
		if (recs[i].type == R_FLUSH && recs[i].version == last_flush)
			flush_pos = i;
	if (open_disk(argv[1], argv[2], argv[3], 0) < 0)
		return 2;
	h = calloc(nblocks_disk, sizeof(*h));
	for (size_t i = 0; i < nrec; i++) {
		const struct rec *r = &recs[i];

		for (unsigned k = 0; k < r->nblocks && r->block + k < nblocks_disk; k++) {
			struct history *hb = &h[r->block + k];

			if (r->type == R_SUBMIT) {
				if (hb->n == hb->cap) {
					hb->cap = hb->cap ? hb->cap * 2 : 4;
					hb->v = realloc(hb->v, hb->cap * sizeof(*hb->v));
				}
				hb->v[hb->n++] =
				        (struct op_rec){r->version, r->zero, i, SIZE_MAX};
			} else if (r->type == R_ACK && hb->n &&
			           hb->v[hb->n - 1].version == r->version) {
				hb->v[hb->n - 1].acked = i;
			}
		}
	}
	vslot.buf = malloc(BLOCK);
	for (uint64_t b = 0; b < nblocks_disk; b++) {
		struct history *hb = &h[b];
		size_t first =
		        0; /* index of the baseline op; hb->n = the initial zeros */
		bool from_zero = true;

		/* Baseline: the last op acknowledged before the last completed
		 * flush was submitted. */
		for (size_t k = 0; k < hb->n; k++) {
			if (flush_pos != SIZE_MAX && hb->v[k].acked < flush_pos) {
				first = k;
				from_zero = false;
			}
		}
		memset(&vslot.req, 0, sizeof(vslot.req));
		vslot.owner.complete = on_read;
		vslot.req.host_priv = &vslot;
		vslot.req.op = VPROXY_REQ_READ;
		vslot.req.offset = b * BLOCK;
		vslot.req.len = BLOCK;
		vslot.iov.iov_base = vslot.buf;
		vslot.iov.iov_len = BLOCK;
		vslot.req.iov = &vslot.iov;
		vslot.req.iovcnt = 1;
		vslot.busy = true;
		if (plugin->submit(disk, &vslot.req) < 0)
			return 2;
		run_loop_until(vslot_done);
		for (unsigned s = 0; s < SECTORS; s++) {
			const uint8_t *p = vslot.buf + s * 512;
			bool ok = false;

			if (from_zero)
				ok = sector_matches(p, (uint32_t)b, s, 0, true);
			for (size_t k = from_zero ? 0 : first; !ok && k < hb->n; k++)
				ok = sector_matches(p, (uint32_t)b, s, hb->v[k].version,
				                    hb->v[k].zero);
			if (!ok) {
				uint32_t hdr[4];

				memcpy(hdr, p, sizeof(hdr));
				fprintf(stderr,
				        "crash-writer: block %" PRIu64
				        " sector %u holds %s (block %u version %u); "
				        "allowed from version %" PRIu64
				        " on (%zu ops, baseline %s)\n",
				        b, s, hdr[0] == MAGIC ? "a version" : "garbage",
				        hdr[1], hdr[2],
				        hb->n && !from_zero ? hb->v[first].version : 0,
				        hb->n,
				        from_zero ? "zeros" : "acked before the flush");
				bad++;
			}
		}
	}
	vp_plugin_close(plugin, disk);
	for (uint64_t b = 0; b < nblocks_disk; b++)
		free(h[b].v);
	free(h);
	free(recs);
	free(vslot.buf);
	vp_plugin_unload_all();
	printf("verify: %" PRIu64
	       " blocks, %zu journal records, last completed flush %" PRIu64 ", %" PRIu64
	       " bad sectors\n",
	       nblocks_disk, nrec, last_flush, bad);
	return bad ? 1 : 0;
}

int main(int argc, char **argv)
{
	int rc;

	signal(SIGPIPE, SIG_IGN);
	base = event_base_new();
	if (!base)
		return 2;
	vp_plugin_set_event_base(base);
	if (argc == 7 && strcmp(argv[1], "write") == 0)
		rc = do_write(argv + 1);
	else if (argc == 6 && strcmp(argv[1], "verify") == 0)
		rc = do_verify(argv + 1);
	else {
		fprintf(stderr,
		        "usage: crash-writer write PLUGIN_DIR PLUGIN IMAGE JOURNAL SEED\n"
		        "       crash-writer verify PLUGIN_DIR PLUGIN IMAGE JOURNAL\n");
		return 2;
	}
	return rc;
}
