/* SPDX-License-Identifier: MIT */
/* The sparse image format code (plugins/sparse/sparse_format.c): header
 * encoding and every validation rule, layouts up to and past 2 TiB, map
 * entries at the boundaries (first and last cluster, end of file), the
 * scan's corruption findings, and leak counting and repair. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../plugins/sparse/sparse_format.c"

#define KiB 1024ull
#define MiB (1024ull * KiB)
#define TiB (1024ull * 1024ull * MiB)

static char dir[64], path[128];

static void setup(void)
{
	snprintf(dir, sizeof(dir), "/tmp/vproxy-test-fmt.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/x.img", dir);
}

static void teardown(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf -- '%s'", dir);
	ck_assert_int_eq(system(cmd), 0);
}

START_TEST(crc32c_known_value)
{
	/* The standard check value of CRC-32C. */
	ck_assert_uint_eq(sparse_crc32c(0, "123456789", 9), 0xe3069283u);
	ck_assert_uint_eq(sparse_crc32c(sparse_crc32c(0, "1234", 4), "56789", 5),
	                  0xe3069283u);
}
END_TEST

START_TEST(header_round_trip_and_layout)
{
	struct sparse_header h, back;
	uint8_t buf[SPARSE_HEADER_SIZE];
	char why[200];

	ck_assert_int_eq(sparse_layout(1 * MiB + 512, 64 * KiB, &h, why, sizeof(why)), 0);
	ck_assert_uint_eq(h.map_entries, 17);
	ck_assert_uint_eq(h.map_offset, 4096);
	ck_assert_uint_eq(h.data_offset, 64 * KiB);
	sparse_header_encode(&h, buf);
	ck_assert_int_eq(memcmp(buf, "VPXSPARS", 8), 0);
	ck_assert_int_eq(sparse_header_decode(buf, sizeof(buf), &back, why, sizeof(why)),
	                 0);
	ck_assert_int_eq(memcmp(&h, &back, sizeof(h)), 0);
}
END_TEST

START_TEST(layout_beyond_2tib)
{
	struct sparse_header h;
	char why[200];

	/* 4 TiB in 64 KiB clusters: 2^26 entries, 512 MiB of map. */
	ck_assert_int_eq(sparse_layout(4 * TiB, 64 * KiB, &h, why, sizeof(why)), 0);
	ck_assert_uint_eq(h.map_entries, 1ull << 26);
	ck_assert_uint_eq(h.data_offset, 4096 + (1ull << 29) - 4096 + 64 * KiB);
	/* 4 TiB in 4 KiB clusters: more than 2^32 bytes of map offsets. */
	ck_assert_int_eq(sparse_layout(4 * TiB + 512, 4 * KiB, &h, why, sizeof(why)), 0);
	ck_assert_uint_eq(h.map_entries, (1ull << 30) + 1);
	ck_assert_uint_gt(h.data_offset, 1ull << 33);
	/* Limits. */
	ck_assert_int_eq(sparse_layout(1ull << 57, 64 * KiB, &h, why, sizeof(why)),
	                 -EINVAL);
	ck_assert_int_eq(sparse_layout(1000, 64 * KiB, &h, why, sizeof(why)), -EINVAL);
	ck_assert_int_eq(sparse_layout(0, 64 * KiB, &h, why, sizeof(why)), -EINVAL);
	ck_assert_int_eq(sparse_layout(1 * MiB, 2 * KiB, &h, why, sizeof(why)), -EINVAL);
	ck_assert_int_eq(sparse_layout(1 * MiB, 4 * MiB, &h, why, sizeof(why)), -EINVAL);
	ck_assert_int_eq(sparse_layout(1 * MiB, 48 * KiB, &h, why, sizeof(why)), -EINVAL);
}
END_TEST

/* Encode a valid header, let mutate() break it, expect rc and needle. */
static void expect_bad(void (*mutate)(uint8_t *buf), int rc, const char *needle)
{
	struct sparse_header h;
	uint8_t buf[SPARSE_HEADER_SIZE];
	char why[200];

	ck_assert_int_eq(sparse_layout(16 * MiB, 64 * KiB, &h, why, sizeof(why)), 0);
	sparse_header_encode(&h, buf);
	mutate(buf);
	ck_assert_int_eq(sparse_header_decode(buf, sizeof(buf), &h, why, sizeof(why)),
	                 rc);
	ck_assert_msg(strstr(why, needle) != NULL, "\"%s\" lacks \"%s\"", why, needle);
}

/* Rewrite a field and fix the checksum, so only the field is wrong. */
static void set32(uint8_t *buf, unsigned off, uint32_t v)
{
	put32(buf + off, v);
	put32(buf + OFF_CRC, sparse_crc32c(0, buf, OFF_CRC));
}

static void set64(uint8_t *buf, unsigned off, uint64_t v)
{
	put64(buf + off, v);
	put32(buf + OFF_CRC, sparse_crc32c(0, buf, OFF_CRC));
}

static void m_magic(uint8_t *b)
{
	b[0] = 'Q';
}
static void m_flip(uint8_t *b)
{
	b[17] ^= 1;
}
static void m_version(uint8_t *b)
{
	set32(b, OFF_VERSION, 2);
}
static void m_incompat(uint8_t *b)
{
	set32(b, OFF_INCOMPAT, 4);
}
static void m_bits(uint8_t *b)
{
	set32(b, OFF_CLUSTER_BITS, 30);
}
static void m_entries(uint8_t *b)
{
	set64(b, OFF_MAP_ENTRIES, 255);
}
static void m_vsize(uint8_t *b)
{
	set64(b, OFF_VIRTUAL_SIZE, 16 * MiB + 1);
}
static void m_data(uint8_t *b)
{
	set64(b, OFF_DATA_OFFSET, 4096);
}
static void m_mapoff(uint8_t *b)
{
	set64(b, OFF_MAP_OFFSET, 13);
}
static void m_hsize(uint8_t *b)
{
	set32(b, OFF_HEADER_SIZE, 64);
}
static void m_compat(uint8_t *b)
{
	set32(b, OFF_COMPAT, 0xffff);
}

START_TEST(header_validation)
{
	struct sparse_header h;
	uint8_t buf[SPARSE_HEADER_SIZE];
	char why[200];

	expect_bad(m_magic, -EINVAL, "not a vproxy sparse image");
	expect_bad(m_flip, -EINVAL, "checksum");
	expect_bad(m_version, -ENOTSUP, "version 2");
	expect_bad(m_incompat, -ENOTSUP, "incompatible");
	expect_bad(m_bits, -EINVAL, "cluster size");
	expect_bad(m_entries, -EINVAL, "entries");
	expect_bad(m_vsize, -EINVAL, "virtual size");
	expect_bad(m_data, -EINVAL, "data offset");
	expect_bad(m_mapoff, -EINVAL, "map offset");
	expect_bad(m_hsize, -EINVAL, "checksum");
	/* Unknown compatible flags are fine. */
	ck_assert_int_eq(sparse_layout(16 * MiB, 64 * KiB, &h, why, sizeof(why)), 0);
	sparse_header_encode(&h, buf);
	m_compat(buf);
	ck_assert_int_eq(sparse_header_decode(buf, sizeof(buf), &h, why, sizeof(why)), 0);
	/* Too short to hold a header. */
	ck_assert_int_eq(sparse_header_decode(buf, 60, &h, why, sizeof(why)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(why, "truncated"));
}
END_TEST

static int open_image(struct sparse_image *img, int flags)
{
	char why[300];
	int fd = open(path, flags);

	ck_assert_int_ge(fd, 0);
	ck_assert_msg(sparse_open(img, fd, why, sizeof(why)) == 0, "%s", why);
	return fd;
}

static uint64_t get_entry(const struct sparse_image *img, uint64_t vc)
{
	uint64_t e = ~0ull;

	ck_assert_int_eq(sparse_map_read(img, vc, 1, &e), 0);
	return e;
}

static void put_entry(int fd, const struct sparse_image *img, uint64_t vc, uint64_t e)
{
	uint64_t le = htole64(e);

	ck_assert_int_eq(pwrite(fd, &le, 8, (off_t)(img->h.map_offset + vc * 8)), 8);
}

START_TEST(create_open_and_map_boundaries)
{
	struct sparse_image img;
	struct sparse_scan s;
	char why[300];
	int fd;

	ck_assert_int_eq(
	        sparse_create(path, 1 * MiB + 512, 64 * KiB, false, why, sizeof(why)), 0);
	/* No overwrite unless asked. */
	ck_assert_int_eq(sparse_create(path, 1 * MiB, 64 * KiB, false, why, sizeof(why)),
	                 -EEXIST);
	fd = open_image(&img, O_RDWR);
	ck_assert_uint_eq(img.file_size, 64 * KiB);
	for (uint64_t vc = 0; vc < img.h.map_entries; vc++)
		ck_assert_uint_eq(get_entry(&img, vc), 0);
	/* First and last entries, each pointing at a real cluster. */
	ck_assert_int_eq(ftruncate(fd, (off_t)(64 * KiB * 3)), 0);
	put_entry(fd, &img, 0, 2 * 64 * KiB);
	put_entry(fd, &img, 16, 1 * 64 * KiB);
	ck_assert_uint_eq(get_entry(&img, 16), 64 * KiB); /* read, not cached */
	img.file_size = 3 * 64 * KiB;
	ck_assert_int_eq(sparse_scan(&img, &s), 0);
	ck_assert_uint_eq(s.allocated, 2);
	ck_assert_uint_eq(s.alloc_end, 2);
	ck_assert_uint_eq(sparse_entry_index(&img, 2 * 64 * KiB), 1);
	ck_assert_uint_eq(sparse_index_offset(&img, 1), 2 * 64 * KiB);
	sparse_scan_free(&s);
	sparse_close(&img);
	close(fd);
}
END_TEST

START_TEST(entry_problems)
{
	struct sparse_image img;
	char why[300];
	int fd;
	uint64_t cs = 64 * KiB, fsz = 10 * cs;

	ck_assert_int_eq(sparse_create(path, 16 * MiB, cs, true, why, sizeof(why)), 0);
	fd = open_image(&img, O_RDONLY);
	ck_assert_ptr_null(sparse_entry_problem(&img, img.h.data_offset, fsz));
	/* The last whole cluster of the file is fine, one past it is not. */
	ck_assert_ptr_null(sparse_entry_problem(&img, fsz - cs, fsz));
	ck_assert_str_eq(sparse_entry_problem(&img, fsz, fsz),
	                 "points beyond the end of the file");
	ck_assert_str_eq(sparse_entry_problem(&img, fsz - cs, fsz - 512),
	                 "points beyond the end of the file");
	ck_assert_str_eq(sparse_entry_problem(&img, img.h.data_offset + 4096, fsz),
	                 "not cluster-aligned");
	ck_assert_str_eq(sparse_entry_problem(&img, img.h.data_offset - cs, fsz),
	                 "points into the header or map");
	ck_assert_str_eq(
	        sparse_entry_problem(&img, (1ull << 60) | img.h.data_offset, fsz),
	        "reserved bits set");
	sparse_close(&img);
	close(fd);
}
END_TEST

START_TEST(scan_finds_corruption)
{
	struct sparse_image img;
	struct sparse_scan s;
	char why[300];
	int fd;
	uint64_t cs = 64 * KiB;

	ck_assert_int_eq(sparse_create(path, 16 * MiB, cs, true, why, sizeof(why)), 0);
	fd = open_image(&img, O_RDWR);
	ck_assert_int_eq(ftruncate(fd, (off_t)(img.h.data_offset + 4 * cs)), 0);
	img.file_size = img.h.data_offset + 4 * cs;
	put_entry(fd, &img, 1, img.h.data_offset);
	put_entry(fd, &img, 7, img.h.data_offset);            /* twice */
	put_entry(fd, &img, 9, img.h.data_offset + 100 * cs); /* beyond */
	put_entry(fd, &img, 255, img.h.data_offset + 3 * cs); /* last entry, fine */
	ck_assert_int_eq(sparse_scan(&img, &s), 1);
	ck_assert_uint_eq(s.problems, 2);
	ck_assert_uint_eq(s.allocated, 2);
	ck_assert_ptr_nonnull(strstr(s.report, "map entry 7"));
	ck_assert_ptr_nonnull(strstr(s.report, "used by another entry"));
	ck_assert_ptr_nonnull(strstr(s.report, "map entry 9"));
	sparse_scan_free(&s);
	sparse_close(&img);
	close(fd);
}
END_TEST

START_TEST(leaks_counted_and_repaired)
{
	struct sparse_image img;
	struct sparse_scan s;
	char why[300];
	uint8_t junk[4096];
	uint64_t cs = 64 * KiB, leaked, tail, freed;
	int fd;

	memset(junk, 0x77, sizeof(junk));
	ck_assert_int_eq(sparse_create(path, 16 * MiB, cs, true, why, sizeof(why)), 0);
	fd = open_image(&img, O_RDWR);
	/* Clusters 0 and 2 used; 1 and 4 hold data nobody references; 3 is
	 * a hole (free, not a leak). */
	for (unsigned i = 0; i < 5; i++)
		if (i != 3)
			ck_assert_int_eq(pwrite(fd, junk, sizeof(junk),
			                        (off_t)(img.h.data_offset + i * cs)),
			                 (ssize_t)sizeof(junk));
	ck_assert_int_eq(ftruncate(fd, (off_t)(img.h.data_offset + 6 * cs)), 0);
	sparse_close(&img);
	close(fd);
	fd = open_image(&img, O_RDWR);
	put_entry(fd, &img, 10, img.h.data_offset);
	put_entry(fd, &img, 11, img.h.data_offset + 2 * cs);
	ck_assert_int_eq(sparse_scan(&img, &s), 0);
	ck_assert_int_eq(sparse_count_leaks(&img, &s, &leaked, &tail), 0);
	ck_assert_uint_eq(leaked, 2);
	ck_assert_uint_eq(tail, 3 * cs);
	ck_assert_int_eq(sparse_repair(&img, &s, &freed, why, sizeof(why)), 0);
	ck_assert_uint_eq(freed, 2);
	ck_assert_uint_eq(img.file_size, img.h.data_offset + 3 * cs);
	sparse_scan_free(&s);
	sparse_close(&img);
	close(fd);
	/* Clean afterwards, and the referenced data is intact. */
	fd = open_image(&img, O_RDONLY);
	ck_assert_int_eq(sparse_scan(&img, &s), 0);
	ck_assert_int_eq(sparse_count_leaks(&img, &s, &leaked, &tail), 0);
	ck_assert_uint_eq(leaked, 0);
	ck_assert_uint_eq(tail, 0);
	{
		uint8_t back[4096];

		ck_assert_int_eq(pread(fd, back, sizeof(back),
		                       (off_t)(img.h.data_offset + 2 * cs)),
		                 (ssize_t)sizeof(back));
		ck_assert_int_eq(memcmp(back, junk, sizeof(back)), 0);
	}
	sparse_scan_free(&s);
	sparse_close(&img);
	close(fd);
}
END_TEST

START_TEST(truncated_file_refused)
{
	struct sparse_image img;
	char why[300];
	int fd;

	ck_assert_int_eq(sparse_create(path, 1 * TiB, 4 * KiB, true, why, sizeof(why)),
	                 0);
	ck_assert_int_eq(truncate(path, 1 * MiB), 0);
	fd = open(path, O_RDONLY);
	ck_assert_int_eq(sparse_open(&img, fd, why, sizeof(why)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(why, "truncated"));
	close(fd);
	ck_assert_int_eq(truncate(path, 100), 0);
	fd = open(path, O_RDONLY);
	ck_assert_int_eq(sparse_open(&img, fd, why, sizeof(why)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(why, "truncated"));
	close(fd);
}
END_TEST

static Suite *format_suite(void)
{
	Suite *s = suite_create("sparse_format");
	TCase *tc = tcase_create("format");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, crc32c_known_value);
	tcase_add_test(tc, header_round_trip_and_layout);
	tcase_add_test(tc, layout_beyond_2tib);
	tcase_add_test(tc, header_validation);
	tcase_add_test(tc, create_open_and_map_boundaries);
	tcase_add_test(tc, entry_problems);
	tcase_add_test(tc, scan_finds_corruption);
	tcase_add_test(tc, leaks_counted_and_repaired);
	tcase_add_test(tc, truncated_file_refused);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(format_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
