/* SPDX-License-Identifier: MIT */
/* Logging for vproxyd: levels, stderr/syslog-free, rate limiting for
 * messages a guest can provoke. */
#ifndef VP_LOG_H
#define VP_LOG_H

#include <stdint.h>
#include <vproxy/plugin.h>

/* Set the most verbose level printed (default INFO). */
void vp_log_set_level(enum vproxy_log_level level);
/* The level set now, and a level's name ("error" ... "debug"). */
enum vproxy_log_level vp_log_get_level(void);
const char *vp_log_level_name(enum vproxy_log_level level);
/* Parse "error|warn|info|debug"; returns 0 or -EINVAL. */
int vp_log_parse_level(const char *text, enum vproxy_log_level *out);
/* Print one line: "vproxyd[pid]: LEVEL: message". */
void vp_log(enum vproxy_log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Same, for messages about one guest device, prefixed "dom D dev N: ";
 * rate-limited per device (see struct vp_ratelimit). */
struct vp_ratelimit {
	uint64_t window_start_ns; /* start of the current 1 s window */
	unsigned printed;         /* lines printed in this window */
	unsigned suppressed;      /* lines dropped in this window */
};
/* Log about (dom, dev) through rl: at most 10 lines a second, then one
 * "N messages suppressed" line when the window ends. rl may be NULL. */
void vp_log_dev(struct vp_ratelimit *rl, enum vproxy_log_level level,
		unsigned dom, unsigned dev, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));
/* The rate limiter's clock in nanoseconds (NULL: CLOCK_MONOTONIC); tests
 * set their own. */
void vp_log_set_clock(uint64_t (*now_ns)(void));

#define vp_err(...) vp_log(VPROXY_LOG_ERROR, __VA_ARGS__)
#define vp_warn(...) vp_log(VPROXY_LOG_WARN, __VA_ARGS__)
#define vp_info(...) vp_log(VPROXY_LOG_INFO, __VA_ARGS__)
#define vp_debug(...) vp_log(VPROXY_LOG_DEBUG, __VA_ARGS__)

#endif
