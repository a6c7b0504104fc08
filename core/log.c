/* SPDX-License-Identifier: MIT */
/* Logging: one line per message on stderr, guest-provoked lines
 * rate-limited per device. */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define RATELIMIT_LINES 10u
#define RATELIMIT_WINDOW_NS 1000000000ull

static enum vproxy_log_level max_level = VPROXY_LOG_INFO;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void vp_log_set_level(enum vproxy_log_level level)
{
	max_level = level;
}

enum vproxy_log_level vp_log_get_level(void)
{
	return max_level;
}

const char *vp_log_level_name(enum vproxy_log_level level)
{
	return (unsigned)level < sizeof(level_names) / sizeof(level_names[0]) ? level_names[level]
	                                                                      : "?";
}

int vp_log_parse_level(const char *text, enum vproxy_log_level *out)
{
	for (unsigned i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
		if (strcmp(text, level_names[i]) == 0) {
			*out = (enum vproxy_log_level)i;
			return 0;
		}
	}
	return -EINVAL;
}

static void vlog(enum vproxy_log_level level, const char *prefix, const char *fmt,
                 va_list ap)
{
	char line[1024];
	int n;

	n = snprintf(line, sizeof(line), "vproxyd[%d]: %s: %s", (int)getpid(),
	             level_names[level], prefix);
	if (n < 0 || (size_t)n >= sizeof(line))
		n = 0;
	vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
	/* One fprintf per line keeps lines whole when several processes
	 * share the terminal. */
	fprintf(stderr, "%s\n", line);
}

void vp_log(enum vproxy_log_level level, const char *fmt, ...)
{
	va_list ap;

	if (level > max_level)
		return;
	va_start(ap, fmt);
	vlog(level, "", fmt, ap);
	va_end(ap);
}

static uint64_t monotonic_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t (*now_ns)(void) = monotonic_ns;

void vp_log_set_clock(uint64_t (*clock)(void))
{
	now_ns = clock ? clock : monotonic_ns;
}

void vp_log_dev(struct vp_ratelimit *rl, enum vproxy_log_level level, unsigned dom,
                unsigned dev, const char *fmt, ...)
{
	char prefix[48];
	va_list ap;

	if (level > max_level)
		return;
	snprintf(prefix, sizeof(prefix), "dom %u dev %u: ", dom, dev);
	if (rl) {
		uint64_t now = now_ns();

		if (now - rl->window_start_ns >= RATELIMIT_WINDOW_NS) {
			if (rl->suppressed)
				vp_log(level, "%s%u similar messages suppressed", prefix,
				       rl->suppressed);
			rl->window_start_ns = now;
			rl->printed = 0;
			rl->suppressed = 0;
		}
		if (rl->printed >= RATELIMIT_LINES) {
			rl->suppressed++;
			return;
		}
		rl->printed++;
	}
	va_start(ap, fmt);
	vlog(level, prefix, fmt, ap);
	va_end(ap);
}
