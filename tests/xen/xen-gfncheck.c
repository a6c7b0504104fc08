/* SPDX-License-Identifier: MIT */
/*
 * gfn mode on a real Xen, for tests/xen: the domU side fills a page with a
 * pattern and prints its frame; the dom0 side maps that frame through
 * vproxyd's own hypervisor layer and gmem cache (the path a gfn-mode
 * frontend's virtqueues take) and checks the pattern, the cache and that
 * freeing the gmem leaves no foreign mapping behind.
 *
 *   xen-gfncheck publish PATTERN       (domU) prints "gfn-page pfn 0x..."
 *                                      and keeps the page until killed
 *   xen-gfncheck map DOM PATTERN MFN [MFN...]
 *                                      (dom0) MFN holds the pattern; the
 *                                      others only fill the cache
 *
 * A PV guest's frames, as the backend names them in foreign mappings, are
 * machine frames: the domU prints its pseudo-physical frame and dom0 looks
 * it up with xen-mfndump dump-p2m.  Exit 0 when every check holds.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "gmem.h"
#include "hv.h"

#define PAGE 4096u
#define CACHE_BYTES (4u << 20) /* two 2 MiB chunks */

static int parse_u64(const char *s, uint64_t *out)
{
	char *end;

	errno = 0;
	*out = strtoull(s, &end, 0);
	return errno || end == s || *end ? -EINVAL : 0;
}

static void fill(uint64_t *w, uint64_t pattern)
{
	for (unsigned i = 0; i < PAGE / 8; i++)
		w[i] = pattern ^ ((uint64_t)i * 0x9e3779b97f4a7c15ull);
}

static int publish(uint64_t pattern)
{
	uint64_t *page, entry;
	int fd;

	page = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
	            0);
	if (page == MAP_FAILED || mlock(page, PAGE) < 0) {
		perror("xen-gfncheck: page");
		return 1;
	}
	fill(page, pattern);
	/* The kernel's pagemap: bit 63 present, bits 0-54 the frame. */
	fd = open("/proc/self/pagemap", O_RDONLY);
	if (fd < 0 ||
	    pread(fd, &entry, sizeof(entry),
	          (off_t)((uintptr_t)page / PAGE * sizeof(entry))) !=
	            (ssize_t)sizeof(entry) ||
	    !(entry >> 63)) {
		perror("xen-gfncheck: pagemap");
		return 1;
	}
	close(fd);
	printf("gfn-page pfn 0x%" PRIx64 "\n", entry & ((UINT64_C(1) << 55) - 1));
	fflush(stdout);
	for (;;)
		pause();
}

/* Mappings of /dev/xen/privcmd in our address space. */
static int privcmd_maps(void)
{
	char line[512];
	int n = 0;
	FILE *f = fopen("/proc/self/maps", "r");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		n += strstr(line, "/dev/xen/privcmd") != NULL;
	fclose(f);
	return n;
}

static int map_check(uint16_t dom, uint64_t pattern, const uint64_t *mfns, int n)
{
	struct vp_hv *hv = vp_hv_xen_open();
	struct vp_gmem *gm;
	struct vp_gmem_ref ref, again;
	struct vp_gmem_stats st;
	uint64_t want[PAGE / 8];
	size_t cached_max = 0;
	const uint8_t *p;
	void *direct;
	int fails = 0, left;

	if (!hv)
		return 1;
	gm = vp_gmem_new(hv, dom, VP_ADDR_GFN, CACHE_BYTES);
	if (!gm)
		return 1;
	fill(want, pattern);
	p = vp_gmem_map(gm, mfns[0] * PAGE, PAGE, false, &ref);
	if (!p) {
		printf("gfncheck: cannot map mfn 0x%" PRIx64 ": %s\n", mfns[0],
		       strerror(errno));
		return 1;
	}
	if (memcmp(p, want, PAGE) != 0) {
		printf("gfncheck: pattern MISMATCH in mfn 0x%" PRIx64 "\n", mfns[0]);
		fails++;
	} else {
		printf("gfncheck: pattern OK in mfn 0x%" PRIx64 "\n", mfns[0]);
	}
	/* The same frame again: from the cache when its chunk mapped whole. */
	if (!vp_gmem_map(gm, mfns[0] * PAGE + 64, 64, true, &again)) {
		printf("gfncheck: second map failed: %s\n", strerror(errno));
		fails++;
	} else {
		vp_gmem_unmap(gm, &again);
	}
	/* A separate hypervisor mapping sees the same bytes. */
	direct = hv->ops->map_gfns(hv, dom, &mfns[0], 1, 0);
	if (!direct || memcmp(direct, p, PAGE) != 0) {
		printf("gfncheck: direct mapping %s\n", direct ? "differs" : "failed");
		fails++;
	}
	if (direct)
		hv->ops->unmap_gfns(hv, direct, 1);
	vp_gmem_unmap(gm, &ref);
	for (int i = 1; i < n; i++) {
		if (!vp_gmem_map(gm, mfns[i] * PAGE, 8, false, &ref)) {
			printf("gfncheck: cannot map mfn 0x%" PRIx64 ": %s\n", mfns[i],
			       strerror(errno));
			fails++;
			continue;
		}
		vp_gmem_unmap(gm, &ref);
		vp_gmem_get_stats(gm, &st);
		if (st.cached_bytes > cached_max)
			cached_max = st.cached_bytes;
	}
	vp_gmem_get_stats(gm, &st);
	printf("gfncheck: maps %" PRIu64 " hv-maps %" PRIu64 " cache-hits %" PRIu64
	       " cached-max %zu bound %u\n",
	       st.maps, st.hv_maps, st.cache_hits, cached_max, CACHE_BYTES);
	if (cached_max > CACHE_BYTES) {
		printf("gfncheck: cache above its bound\n");
		fails++;
	}
	vp_gmem_free(gm);
	left = privcmd_maps();
	printf("gfncheck: privcmd mappings after free %d\n", left);
	fails += left != 0;
	hv->ops->close(hv);
	printf("gfncheck: %s\n", fails ? "FAILED" : "OK");
	return fails ? 1 : 0;
}

int main(int argc, char **argv)
{
	uint64_t pattern, dom, mfns[16];
	int n = 0;

	if (argc == 3 && strcmp(argv[1], "publish") == 0 &&
	    parse_u64(argv[2], &pattern) == 0)
		return publish(pattern);
	if (argc >= 5 && argc - 4 <= 16 && strcmp(argv[1], "map") == 0 &&
	    parse_u64(argv[2], &dom) == 0 && dom > 0 && dom < 0x7ff0 &&
	    parse_u64(argv[3], &pattern) == 0) {
		for (int i = 4; i < argc; i++)
			if (parse_u64(argv[i], &mfns[n++]) < 0)
				goto usage;
		return map_check((uint16_t)dom, pattern, mfns, n);
	}
usage:
	fprintf(stderr, "usage: xen-gfncheck publish PATTERN\n"
	                "       xen-gfncheck map DOMID PATTERN MFN [MFN...]\n");
	return 2;
}
