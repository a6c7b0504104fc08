/* SPDX-License-Identifier: MIT */
/*
 * Allocation failure injection for the unit tests linked with
 * VP_ALLOC_FAIL_LINK_OPTIONS (tests/unit/CMakeLists.txt):
 *
 *   -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=strdup,
 *   --wrap=strndup,--wrap=asprintf,--wrap=posix_memalign
 *
 * Every call to those functions from an object linked statically into the
 * test (the core libraries, a plugin's source compiled in, the test
 * itself) goes through the wrappers below; while alloc_armed, the
 * alloc_fail_at'th of them fails as the real function would (NULL, -1 or
 * ENOMEM) and alloc_failed says it happened.  glibc's strdup, strndup and
 * asprintf allocate inside libc, past a wrapped malloc, so they are
 * wrapped themselves; core and the plugins use no vasprintf, getline or
 * open_memstream.
 *
 * Not reached: allocations inside shared libraries (libevent, libxenstore,
 * liburing, inih, libc's own, a plugin loaded with dlopen), since --wrap
 * rewrites only references resolved when the test is linked.  Arm only
 * around calls into the code under test: Check allocates in its
 * assertions.
 */
#ifndef VP_TEST_ALLOC_FAIL_H
#define VP_TEST_ALLOC_FAIL_H

#include <errno.h>
#include <execinfo.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#endif

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
char *__real_strdup(const char *s);
char *__real_strndup(const char *s, size_t n);
int __real_posix_memalign(void **p, size_t align, size_t n);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t n);
char *__wrap_strdup(const char *s);
char *__wrap_strndup(const char *s, size_t n);
int __wrap_asprintf(char **out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int __wrap_posix_memalign(void **p, size_t align, size_t n);

/* The call to fail (1 = the first while armed; 0 = none), calls counted
 * while armed, whether the chosen one came. */
static unsigned alloc_fail_at, alloc_calls;
static bool alloc_failed, alloc_armed;

/* With VP_ALLOC_FAIL_TRACE set in the environment, the stack of each
 * failed call is printed (to find which allocation a failing run lost). */
static bool alloc_should_fail(void)
{
	if (!alloc_armed)
		return false;
	/* Atomic: the raw plugin's worker threads may allocate too. */
	if (__atomic_add_fetch(&alloc_calls, 1, __ATOMIC_RELAXED) != alloc_fail_at)
		return false;
	alloc_failed = true;
	if (getenv("VP_ALLOC_FAIL_TRACE")) {
		void *frames[32];
		int n = backtrace(frames, 32);

		fprintf(stderr, "allocation %u fails here:\n", alloc_fail_at);
		backtrace_symbols_fd(frames, n, 2);
	}
	return true;
}

void *__wrap_malloc(size_t n)
{
	if (alloc_should_fail()) {
		errno = ENOMEM;
		return NULL;
	}
	return __real_malloc(n);
}

void *__wrap_calloc(size_t n, size_t size)
{
	if (alloc_should_fail()) {
		errno = ENOMEM;
		return NULL;
	}
	return __real_calloc(n, size);
}

void *__wrap_realloc(void *p, size_t n)
{
	if (alloc_should_fail()) {
		errno = ENOMEM;
		return NULL;
	}
	return __real_realloc(p, n);
}

char *__wrap_strdup(const char *s)
{
	if (alloc_should_fail()) {
		errno = ENOMEM;
		return NULL;
	}
	return __real_strdup(s);
}

char *__wrap_strndup(const char *s, size_t n)
{
	if (alloc_should_fail()) {
		errno = ENOMEM;
		return NULL;
	}
	return __real_strndup(s, n);
}

int __wrap_asprintf(char **out, const char *fmt, ...)
{
	va_list ap;
	int n;

	/* On failure *out is undefined, as glibc documents: poison it. */
	if (alloc_should_fail()) {
		*out = (char *)(void *)&alloc_fail_at;
		errno = ENOMEM;
		return -1;
	}
	va_start(ap, fmt);
	n = vasprintf(out, fmt, ap);
	va_end(ap);
	return n;
}

int __wrap_posix_memalign(void **p, size_t align, size_t n)
{
	if (alloc_should_fail())
		return ENOMEM;
	return __real_posix_memalign(p, align, n);
}

/* Start run n: fail the n'th allocation once armed. */
static inline void alloc_run_start(unsigned n)
{
	alloc_calls = 0;
	alloc_failed = false;
	alloc_fail_at = n;
	alloc_armed = false;
}

static inline void alloc_arm(bool on)
{
	alloc_armed = on;
}

/* Ask LeakSanitizer now, so that a leak names the run that caused it;
 * true if it found one (it printed the report).  Without ASan: false, and
 * nothing else checks. */
static inline bool alloc_leaked(void)
{
#if defined(__SANITIZE_ADDRESS__)
	return __lsan_do_recoverable_leak_check() != 0;
#else
	return false;
#endif
}

#endif
