/* SPDX-License-Identifier: MIT */
/*
 * Guest RAM for the unit tests' fake hypervisors: a memfd, so that any
 * list of its pages, in any order, maps back to back at a fresh address
 * as privcmd and gntdev map a guest's frames, and what is written through
 * a mapping is in the RAM.
 */
#ifndef VP_TEST_FAKE_RAM_H
#define VP_TEST_FAKE_RAM_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

#define FAKE_RAM_PAGE 4096u

struct fake_ram {
	int fd;
	uint8_t *base; /* the whole RAM, shared with every mapping */
	size_t pages;
};

/* False when the memfd or its mapping cannot be had. */
static inline bool fake_ram_init(struct fake_ram *r, size_t pages)
{
	r->pages = pages;
	r->fd = memfd_create("fake-ram", MFD_CLOEXEC);
	if (r->fd < 0 || ftruncate(r->fd, (off_t)(pages * FAKE_RAM_PAGE)) < 0)
		return false;
	r->base = mmap(NULL, pages * FAKE_RAM_PAGE, PROT_READ | PROT_WRITE, MAP_SHARED,
	               r->fd, 0);
	return r->base != MAP_FAILED;
}

static inline void fake_ram_free(struct fake_ram *r)
{
	munmap(r->base, r->pages * FAKE_RAM_PAGE);
	close(r->fd);
}

/* Map pages[0..n) of the RAM back to back; NULL and EFAULT when one is
 * past its end. */
static inline void *fake_ram_map(struct fake_ram *r, const uint64_t *pages, unsigned n,
                                 bool writable)
{
	int prot = PROT_READ | (writable ? PROT_WRITE : 0);
	uint8_t *at;

	for (unsigned i = 0; i < n; i++) {
		if (pages[i] >= r->pages) {
			errno = EFAULT;
			return NULL;
		}
	}
	at = mmap(NULL, (size_t)n * FAKE_RAM_PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS,
	          -1, 0);
	if (at == MAP_FAILED)
		return NULL;
	for (unsigned i = 0; i < n; i++) {
		if (mmap(at + (size_t)i * FAKE_RAM_PAGE, FAKE_RAM_PAGE, prot,
		         MAP_SHARED | MAP_FIXED, r->fd, (off_t)(pages[i] * FAKE_RAM_PAGE)) ==
		    MAP_FAILED) {
			munmap(at, (size_t)n * FAKE_RAM_PAGE);
			return NULL;
		}
	}
	return at;
}

static inline int fake_ram_unmap(void *addr, unsigned n)
{
	return munmap(addr, (size_t)n * FAKE_RAM_PAGE);
}

#endif
