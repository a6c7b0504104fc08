/* SPDX-License-Identifier: MIT */
/*
 * Fuzzes the vproxy-img commands (plugins/sparse/vproxy-img.c, compiled
 * into this harness with its main renamed and its exit() turned into a
 * jump back here) on an image file built from the input (fuzz_sparse.h):
 * info and map (text and JSON), check, check --repair, and convert to raw
 * and to sparse.  Beyond ASan/UBSan: every image convert writes must pass
 * check, and a raw disk converted to sparse and back must come back byte
 * for byte (zero-padded to whole sectors).
 *
 * Input: flags u8 (bit 0 keep the checksum, bits 1-3 which command,
 * bits 4-7 the cluster size for convert -O sparse), hole pages u16, file.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz_sparse.h"

/* The raw round trip compares whole files: only for small disks. */
#define MAX_ROUND_TRIP_BYTES (4ull << 20)

int vproxy_img_main(int argc, char **argv);
void vproxy_img_exit(int status) __attribute__((noreturn));

static jmp_buf back;
static char dir[64], img[96], out[96], out2[96];
static int first_free_fd;

void vproxy_img_exit(int status)
{
	longjmp(back, 256 + (status & 0xff));
}

static void fail(const char *what)
{
	fprintf(stderr, "fuzz_img: %s\n", what);
	abort();
}

static void cleanup(void)
{
	unlink(img);
	unlink(out);
	unlink(out2);
	rmdir(dir);
}

/* Run vproxy-img with args; its exit status. */
static int run(int argc, const char **argv)
{
	volatile int rc;
	int j;

	optind = 0; /* getopt starts over */
	j = setjmp(back);
	if (j == 0)
		rc = vproxy_img_main(argc, (char **)argv);
	else
		rc = j - 256;
	fflush(stdout);
	/* An exit() leaves the command's descriptors open: close them. */
	for (int fd = first_free_fd; fd < first_free_fd + 16; fd++)
		close(fd);
	return rc;
}

/* The virtual size vproxy-img would give img (0 when it is not an
 * image it reads). */
static uint64_t virtual_size(void)
{
	struct sparse_image si;
	char why[200];
	uint64_t v = 0;
	struct stat st;
	int fd = open(img, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return 0;
	if (sparse_open(&si, fd, why, sizeof(why)) == 0) {
		v = si.h.virtual_size;
		sparse_close(&si);
	} else if (fstat(fd, &st) == 0) {
		char magic[8];

		if (pread(fd, magic, 8, 0) != 8 || memcmp(magic, SPARSE_MAGIC, 8) != 0)
			v = (uint64_t)st.st_size;
	}
	close(fd);
	return v;
}

static bool same_padded(const char *a, const char *b)
{
	static uint8_t ba[65536], bb[65536];
	FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
	bool same = fa && fb;

	while (same) {
		size_t na = fread(ba, 1, sizeof(ba), fa);
		size_t nb = fread(bb, 1, sizeof(bb), fb);

		/* The raw copy is padded to a whole sector with zeros. */
		if (na < nb)
			memset(ba + na, 0, nb - na);
		same = na <= nb && memcmp(ba, bb, nb) == 0;
		if (nb == 0)
			break;
	}
	if (fa)
		fclose(fa);
	if (fb)
		fclose(fb);
	return same;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char csize[16];
	int fd, flags, rc;

	if (!dir[0]) {
		int null = open("/dev/null", O_WRONLY | O_CLOEXEC);

		snprintf(dir, sizeof(dir), "/dev/shm/vproxy-fuzz-img-XXXXXX");
		if (!mkdtemp(dir) || null < 0 || dup2(null, STDOUT_FILENO) < 0)
			abort();
		close(null);
		snprintf(img, sizeof(img), "%s/in.img", dir);
		snprintf(out, sizeof(out), "%s/out.img", dir);
		snprintf(out2, sizeof(out2), "%s/back.raw", dir);
		atexit(cleanup);
		first_free_fd = dup(0);
		close(first_free_fd);
	}
	unlink(out);
	unlink(out2);
	fd = open(img, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		fail("cannot create the image");
	flags = fuzz_sparse_build(fd, data, size);
	close(fd);
	if (flags < 0)
		fail("cannot write the image");
	snprintf(csize, sizeof(csize), "%uK", 4u << ((flags >> 4) % 10));

	switch ((flags >> 1) & 7) {
	case 0: {
		const char *a[] = {"vproxy-img", "info", img};
		const char *b[] = {"vproxy-img", "info", "--json", img};

		run(3, a);
		run(4, b);
		break;
	}
	case 1: {
		const char *a[] = {"vproxy-img", "map", img};
		const char *b[] = {"vproxy-img", "map", "--json", img};

		run(3, a);
		run(4, b);
		break;
	}
	case 2: {
		const char *a[] = {"vproxy-img", "check", img};

		run(3, a);
		break;
	}
	case 3: {
		const char *a[] = {"vproxy-img", "check", "--repair", img};
		const char *b[] = {"vproxy-img", "check", img};

		/* Repaired, or corrupt beyond repair: never worse after. */
		rc = run(4, a);
		if (rc == 0 && run(3, b) != 0)
			fail("check fails after a successful repair");
		break;
	}
	case 4:
	case 5: {
		const char *a[] = {"vproxy-img", "convert", "-q", "-O", "sparse",
		                   "-c",         csize,     img,  out};
		const char *b[] = {"vproxy-img", "check", out};
		const char *c[] = {"vproxy-img", "convert", "-q", "-O", "raw", out, out2};
		uint64_t v = virtual_size();

		if (!v)
			break;
		if (run(9, a) != 0)
			break;
		if (run(3, b) != 0)
			fail("convert -O sparse wrote an image that fails check");
		if ((flags >> 1 & 7) == 5 && v <= MAX_ROUND_TRIP_BYTES &&
		    run(7, c) == 0) {
			char magic[8] = {0};
			int in = open(img, O_RDONLY | O_CLOEXEC);

			if (in >= 0 && pread(in, magic, 8, 0) >= 0 &&
			    memcmp(magic, SPARSE_MAGIC, 8) != 0 &&
			    !same_padded(img, out2))
				fail("raw -> sparse -> raw changed the data");
			if (in >= 0)
				close(in);
		}
		break;
	}
	default: {
		const char *a[] = {"vproxy-img", "convert", "-q", "-O", "raw", img, out};

		if (virtual_size())
			run(7, a);
		break;
	}
	}
	return 0;
}
