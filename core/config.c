/* SPDX-License-Identifier: MIT */
/* Configuration file parsing on top of inih.
 *
 * inih numbers lines only in builds with INI_HANDLER_LINENO, which
 * Debian's is not, and never reports section headers to the handler.  So
 * the reader we hand to ini_parse_stream() does both: it is called once
 * per line, counts lines, and recognises section headers itself before
 * inih sees them.  The handler then knows the current line and section.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <ini.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <vproxy/proto.h>

#include "log.h"
#include "plugin_host.h"
#include "version.h"

#define DEFAULT_RUN_DIR "/run/vproxy"
#define DEFAULT_QUEUE_SIZE 256u
#define MAX_FILE_BYTES (1u << 20)
/* Longest line we accept; section names and messages fit buffers of 256. */
#define MAX_LINE 200

/* A key already set in the current section, for duplicate detection. */
struct seen_key {
	char *key;
	int line;
};

enum section_kind { SEC_NONE, SEC_GLOBAL, SEC_DEVICE };

struct parser {
	const char *file;
	const char *text;
	size_t len;
	size_t pos;
	int line;             /* line the reader handed out last */
	struct vp_config *c;
	enum section_kind sec;
	char section[256];    /* current section name for messages */
	int global_line;      /* line of [vproxyd], 0 before it */
	struct seen_key *seen;
	size_t n_seen;
	size_t cap_seen;
	char *err;
	size_t errlen;
	int rc;               /* first error, 0 while there is none */
	int err_line;
};

static void seen_clear(struct parser *p)
{
	for (size_t i = 0; i < p->n_seen; i++)
		free(p->seen[i].key);
	p->n_seen = 0;
}

static void nomem(struct parser *p)
{
	snprintf(p->err, p->errlen, "%s: %s", p->file, strerror(ENOMEM));
	p->rc = -ENOMEM;
	p->err_line = 0;
}

/* Record "<file>:<line>: <what>: <message>" unless an error on an earlier
 * line is already recorded (inih's syntax errors are learned only at the
 * end, after errors on later lines). */
static void fail(struct parser *p, int line, const char *what, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void fail(struct parser *p, int line, const char *what, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (p->rc == -ENOMEM || (p->rc && p->err_line <= line))
		return;
	p->rc = -EINVAL;
	p->err_line = line;
	n = snprintf(p->err, p->errlen, "%s:%d: %s: ", p->file, line, what);
	if (n < 0 || (size_t)n >= p->errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(p->err + n, p->errlen - (size_t)n, fmt, ap);
	va_end(ap);
}

/* ---- values ---- */

/* Decimal digits only, value <= max. */
static int parse_uint(const char *s, unsigned long max, unsigned long *out);

/* "off" (0), or a number of seconds with an optional "s", or of
 * milliseconds with "ms"; at most max_ms.  0 or -EINVAL. */
static int parse_duration_ms(const char *s, unsigned long max_ms, unsigned long *out)
{
	char num[24];
	size_t len = strlen(s), digits = 0;
	unsigned long n, scale = 1000;

	if (strcmp(s, "off") == 0) {
		*out = 0;
		return 0;
	}
	while (digits < len && s[digits] >= '0' && s[digits] <= '9')
		digits++;
	if (digits == 0 || digits >= sizeof(num))
		return -EINVAL;
	if (strcmp(s + digits, "ms") == 0)
		scale = 1;
	else if (s[digits] != '\0' && strcmp(s + digits, "s") != 0)
		return -EINVAL;
	memcpy(num, s, digits);
	num[digits] = '\0';
	if (parse_uint(num, max_ms / scale, &n) < 0)
		return -EINVAL;
	*out = n * scale;
	return 0;
}

/* "HOST:PORT" or "[IPV6]:PORT": *host (malloc'd, brackets removed) and
 * *port 1..65535.  0, -EINVAL, or -ENOMEM. */
static int parse_listen(const char *v, char **host, unsigned *port)
{
	const char *colon = strrchr(v, ':');
	const char *h = v;
	size_t hlen;
	unsigned long n;
	char *copy;

	if (!colon || parse_uint(colon + 1, 65535, &n) < 0 || n == 0)
		return -EINVAL;
	hlen = (size_t)(colon - v);
	if (hlen >= 2 && v[0] == '[' && v[hlen - 1] == ']') {
		h = v + 1;
		hlen -= 2;
	} else if (memchr(v, ':', hlen) || memchr(v, '[', hlen) || memchr(v, ']', hlen)) {
		return -EINVAL; /* an IPv6 address needs its brackets */
	}
	if (hlen == 0)
		return -EINVAL;
	for (size_t i = 0; i < hlen; i++)
		if (h[i] == ' ' || h[i] == '\t' || h[i] == '/')
			return -EINVAL;
	copy = strndup(h, hlen);
	if (!copy)
		return -ENOMEM;
	free(*host);
	*host = copy;
	*port = (unsigned)n;
	return 0;
}

static int parse_uint(const char *s, unsigned long max, unsigned long *out)
{
	unsigned long v = 0;

	if (!isdigit((unsigned char)*s))
		return -EINVAL;
	for (; isdigit((unsigned char)*s); s++) {
		v = v * 10 + (unsigned long)(*s - '0');
		if (v > max)
			return -ERANGE;
	}
	if (*s != '\0')
		return -EINVAL;
	*out = v;
	return 0;
}

static int parse_bool(const char *s, bool *out)
{
	static const char *const yes[] = {"yes", "true", "on", "1"};
	static const char *const no[] = {"no", "false", "off", "0"};

	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		if (strcasecmp(s, yes[i]) == 0) {
			*out = true;
			return 0;
		}
		if (strcasecmp(s, no[i]) == 0) {
			*out = false;
			return 0;
		}
	}
	return -EINVAL;
}

/* Letters, digits, '_', '-', '.'; not starting with '-' or '.'. */
static bool domain_name_ok(const char *s)
{
	if (*s == '\0' || *s == '-' || *s == '.')
		return false;
	for (; *s; s++) {
		if (!isalnum((unsigned char)*s) && *s != '_' && *s != '-' && *s != '.')
			return false;
	}
	return true;
}

static bool all_digits(const char *s)
{
	if (*s == '\0')
		return false;
	for (; *s; s++) {
		if (!isdigit((unsigned char)*s))
			return false;
	}
	return true;
}

static int replace_str(char **dst, const char *value)
{
	char *v = strdup(value);

	if (!v)
		return -ENOMEM;
	free(*dst);
	*dst = v;
	return 0;
}

/* ---- [vproxyd] ---- */

static int global_key(struct parser *p, const char *key, const char *value)
{
	struct vp_config *c = p->c;
	unsigned long n;

	if (strcmp(key, "hypervisor") == 0) {
		if (strcmp(value, "sim") == 0)
			c->hypervisor = "sim";
		else if (strcmp(value, "xen") == 0)
			c->hypervisor = "xen";
		else
			fail(p, p->line, key, "\"%s\" is not allowed (sim or xen)", value);
	} else if (strcmp(key, "run-dir") == 0 || strcmp(key, "plugin-dir") == 0) {
		bool run = key[0] == 'r';

		if (value[0] == '\0') {
			fail(p, p->line, key, "must not be empty (a directory)");
			return 0;
		}
		if (replace_str(run ? &c->run_dir : &c->plugin_dir, value) < 0)
			return -ENOMEM;
		if (!run)
			c->plugin_dir_line = p->line;
	} else if (strcmp(key, "control-socket") == 0) {
		if (value[0] == '\0') {
			fail(p, p->line, key, "must not be empty (a socket path, or none)");
			return 0;
		}
		if (strlen(value) > VP_CONFIG_MAX_SOCKET_PATH) {
			fail(p, p->line, key, "longer than %d bytes (a unix socket path)",
			     VP_CONFIG_MAX_SOCKET_PATH);
			return 0;
		}
		if (replace_str(&c->control_socket, value) < 0)
			return -ENOMEM;
	} else if (strcmp(key, "metrics-listen") == 0) {
		if (parse_listen(value, &c->metrics_host, &c->metrics_port) < 0) {
			fail(p, p->line, key,
			     "\"%s\" is not allowed (HOST:PORT, e.g. 127.0.0.1:9477 or "
			     "[::1]:9477; port 1..65535)",
			     value);
			return 0;
		}
	} else if (strcmp(key, "log-level") == 0) {
		if (vp_log_parse_level(value, &c->log_level) < 0)
			fail(p, p->line, key,
			     "\"%s\" is not allowed (error, warn, info or debug)", value);
	} else if (strcmp(key, "backend-domid") == 0) {
		if (strcmp(value, "auto") == 0)
			c->backend_domid = -1;
		else if (parse_uint(value, VPROXY_DOMID_MAX, &n) == 0)
			c->backend_domid = (int)n;
		else
			fail(p, p->line, key, "\"%s\" is not allowed (auto or 0..%u)", value,
			     VPROXY_DOMID_MAX);
	} else if (strcmp(key, "poll-us") == 0) {
		if (strcmp(value, "auto") == 0) {
			c->poll_auto = true;
		} else if (parse_uint(value, VP_CONFIG_MAX_POLL_US, &n) == 0) {
			c->poll_auto = false;
			c->poll_us = (unsigned)n;
		} else {
			fail(p, p->line, key,
			     "\"%s\" is not allowed (auto or microseconds, 0..%d)", value,
			     VP_CONFIG_MAX_POLL_US);
		}
	} else if (strcmp(key, "poll-max-us") == 0) {
		if (parse_uint(value, VP_CONFIG_MAX_POLL_US, &n) == 0)
			c->poll_max_us = (unsigned)n;
		else
			fail(p, p->line, key,
			     "\"%s\" is not allowed (microseconds, 0..%d)", value,
			     VP_CONFIG_MAX_POLL_US);
	} else {
		fail(p, p->line, key,
		     "unknown key in [vproxyd] (known: hypervisor, run-dir, plugin-dir, "
		     "control-socket, metrics-listen, log-level, backend-domid, poll-us, "
		     "poll-max-us)");
	}
	return 0;
}

/* ---- [device NAME] ---- */

static int device_key(struct parser *p, const char *key, const char *value)
{
	struct vp_config_device *d = &p->c->devices[p->c->n_devices - 1];
	unsigned long n;

	if (strcmp(key, "guest") == 0) {
		if (all_digits(value)) {
			if (parse_uint(value, VPROXY_DOMID_MAX, &n) < 0 || n < 1) {
				fail(p, p->line, key, "domid %s is out of range (1..%u)",
				     value, VPROXY_DOMID_MAX);
				return 0;
			}
			d->guest_domid = (int)n;
		} else if (domain_name_ok(value)) {
			d->guest_domid = -1;
		} else {
			fail(p, p->line, key,
			     "\"%s\" is not allowed (a domid 1..%u or a domain name of "
			     "letters, digits, '_', '-', '.')",
			     value, VPROXY_DOMID_MAX);
			return 0;
		}
		if (replace_str(&d->guest, value) < 0)
			return -ENOMEM;
		d->guest_line = p->line;
	} else if (strcmp(key, "id") == 0) {
		if (parse_uint(value, VP_CONFIG_MAX_DEVID, &n) < 0) {
			fail(p, p->line, key, "\"%s\" is not allowed (0..%d)", value,
			     VP_CONFIG_MAX_DEVID);
			return 0;
		}
		d->id = (unsigned)n;
		d->id_line = p->line;
	} else if (strcmp(key, "plugin") == 0) {
		if (value[0] == '\0') {
			fail(p, p->line, key, "must not be empty (a plugin name, e.g. mem)");
			return 0;
		}
		if (replace_str(&d->plugin_name, value) < 0)
			return -ENOMEM;
		d->plugin_line = p->line;
	} else if (strcmp(key, "read-only") == 0) {
		if (parse_bool(value, &d->read_only) < 0)
			fail(p, p->line, key,
			     "\"%s\" is not allowed (yes, no, true, false, on, off, 1 or 0)",
			     value);
	} else if (strcmp(key, "queues") == 0) {
		if (parse_uint(value, VP_CONFIG_MAX_QUEUES, &n) < 0 || n < 1) {
			fail(p, p->line, key, "\"%s\" is not allowed (1..%d)", value,
			     VP_CONFIG_MAX_QUEUES);
			return 0;
		}
		d->queues = (unsigned)n;
	} else if (strcmp(key, "queue-size") == 0) {
		if (parse_uint(value, VP_CONFIG_MAX_QUEUE_SIZE, &n) < 0 || n < 2 ||
		    (n & (n - 1)) != 0) {
			fail(p, p->line, key,
			     "\"%s\" is not allowed (a power of two, 2..%d)", value,
			     VP_CONFIG_MAX_QUEUE_SIZE);
			return 0;
		}
		d->queue_size = (unsigned)n;
	} else if (strcmp(key, "request-timeout") == 0) {
		if (parse_duration_ms(value, VP_CONFIG_MAX_TIMEOUT_MS, &n) < 0) {
			fail(p, p->line, key,
			     "\"%s\" is not allowed (off, or seconds up to %d: 30, 30s, "
			     "500ms)",
			     value, VP_CONFIG_MAX_TIMEOUT_MS / 1000);
			return 0;
		}
		d->request_timeout_ms = (unsigned)n;
	} else if (strcmp(key, "serial") == 0) {
		size_t len = strlen(value);

		if (len > VP_CONFIG_SERIAL_MAX) {
			fail(p, p->line, key, "is %zu bytes long (at most %d allowed)", len,
			     VP_CONFIG_SERIAL_MAX);
			return 0;
		}
		memcpy(d->serial, value, len + 1);
	} else {
		return vp_params_set(d->params, key, value, p->line);
	}
	return 0;
}

static int on_key(void *user, const char *section, const char *key, const char *value)
{
	struct parser *p = user;

	(void)section; /* the reader tracks sections, with their lines */
	if (p->rc)
		return 0;
	if (key[0] == '\0') {
		fail(p, p->line, "syntax error", "key name missing before '='");
		return 0;
	}
	if (p->sec == SEC_NONE) {
		fail(p, p->line, key,
		     "key outside any section (put it under [vproxyd] or [device NAME])");
		return 0;
	}
	for (size_t i = 0; i < p->n_seen; i++) {
		if (strcmp(p->seen[i].key, key) == 0) {
			fail(p, p->line, key, "duplicate key in [%s] (first set at line %d)",
			     p->section, p->seen[i].line);
			return 0;
		}
	}
	if (p->n_seen == p->cap_seen) {
		size_t cap = p->cap_seen ? 2 * p->cap_seen : 16;
		struct seen_key *ns = realloc(p->seen, cap * sizeof(*ns));

		if (!ns)
			goto nomem;
		p->seen = ns;
		p->cap_seen = cap;
	}
	p->seen[p->n_seen].key = strdup(key);
	if (!p->seen[p->n_seen].key)
		goto nomem;
	p->seen[p->n_seen++].line = p->line;

	if ((p->sec == SEC_GLOBAL ? global_key(p, key, value) : device_key(p, key, value)) < 0)
		goto nomem;
	return p->rc == 0;
nomem:
	nomem(p);
	return 0;
}

/* ---- sections ---- */

static int new_device(struct parser *p, const char *label)
{
	struct vp_config *c = p->c;
	struct vp_config_device *nd, *d;

	nd = realloc(c->devices, (c->n_devices + 1) * sizeof(*nd));
	if (!nd)
		return -ENOMEM;
	c->devices = nd;
	d = &nd[c->n_devices];
	memset(d, 0, sizeof(*d));
	d->line = p->line;
	d->guest_domid = -1;
	d->queues = 1;
	d->queue_size = DEFAULT_QUEUE_SIZE;
	d->label = strdup(label);
	d->params = vp_params_new();
	c->n_devices++; /* counted now so vp_config_free releases it */
	if (!d->label || !d->params)
		return -ENOMEM;
	return 0;
}

/* hdr is a whole line starting with '['.  Mirrors inih's rule for where
 * the header ends: the first ']', unless a ';' after whitespace (an inline
 * comment) comes first. Returns 0, or -1 once an error is recorded. */
static int on_section(struct parser *p, const char *hdr)
{
	const char *s = hdr + 1, *end, *name, *rest;
	char buf[256];
	size_t len;

	for (end = s; *end && *end != ']'; end++) {
		if (*end == ';' && end > s && isspace((unsigned char)end[-1]))
			break;
	}
	if (*end != ']') {
		fail(p, p->line, "syntax error", "section header without closing ']'");
		return -1;
	}
	for (rest = end + 1; isspace((unsigned char)*rest); rest++)
		;
	if (*rest != '\0' && *rest != ';' && *rest != '#') {
		fail(p, p->line, "syntax error", "text after the section header's ']'");
		return -1;
	}
	while (s < end && isspace((unsigned char)*s))
		s++;
	while (end > s && isspace((unsigned char)end[-1]))
		end--;
	len = (size_t)(end - s); /* < MAX_LINE < sizeof(buf) */
	memcpy(buf, s, len);
	buf[len] = '\0';

	seen_clear(p);
	snprintf(p->section, sizeof(p->section), "%s", buf);
	if (strcmp(buf, "vproxyd") == 0) {
		if (p->global_line) {
			fail(p, p->line, buf, "duplicate section (first at line %d)",
			     p->global_line);
			return -1;
		}
		p->global_line = p->line;
		p->sec = SEC_GLOBAL;
		return 0;
	}
	if (strncmp(buf, "device", 6) != 0 || (buf[6] != '\0' && !isspace((unsigned char)buf[6]))) {
		fail(p, p->line, buf[0] ? buf : "[]",
		     "unknown section (expected [vproxyd] or [device NAME])");
		return -1;
	}
	for (name = buf + 6; isspace((unsigned char)*name); name++)
		;
	if (*name == '\0') {
		fail(p, p->line, buf, "section needs a label: [device NAME]");
		return -1;
	}
	snprintf(p->section, sizeof(p->section), "device %s", name);
	for (size_t i = 0; i < p->c->n_devices; i++) {
		if (strcmp(p->c->devices[i].label, name) == 0) {
			fail(p, p->line, p->section, "duplicate section (first at line %d)",
			     p->c->devices[i].line);
			return -1;
		}
	}
	if (new_device(p, name) < 0) {
		nomem(p);
		return -1;
	}
	p->sec = SEC_DEVICE;
	return 0;
}

/* ---- the reader ---- */

/* inih's ini_reader: hands out exactly one line per call, without the
 * newline and leading whitespace.  Stripping leading whitespace keeps
 * inih's multi-line values (indented continuation lines) from turning an
 * indented "key = value" into part of the previous value. */
static char *read_line(char *str, int num, void *stream)
{
	struct parser *p = stream;
	const char *start, *nl, *end;
	size_t len;
	int max;

	if (p->rc || p->pos >= p->len)
		return NULL;
	start = p->text + p->pos;
	nl = memchr(start, '\n', p->len - p->pos);
	end = nl ? nl : p->text + p->len;
	p->pos = (size_t)(end - p->text) + (nl ? 1 : 0);
	p->line++;

	if (memchr(start, '\0', (size_t)(end - start))) {
		fail(p, p->line, "syntax error", "NUL byte in line");
		return NULL;
	}
	if (p->line == 1 && end - start >= 3 && memcmp(start, "\xEF\xBB\xBF", 3) == 0)
		start += 3;
	while (start < end && isspace((unsigned char)*start))
		start++;
	while (end > start && isspace((unsigned char)end[-1]))
		end--;
	len = (size_t)(end - start);
	max = num - 1 < MAX_LINE ? num - 1 : MAX_LINE;
	if (len > (size_t)max) {
		fail(p, p->line, "syntax error", "line too long (at most %d characters)",
		     max);
		return NULL;
	}
	memcpy(str, start, len);
	str[len] = '\0';
	if (str[0] == '[' && on_section(p, str) < 0)
		return NULL;
	return str;
}

/* ---- checks that need the whole file ---- */

static bool same_guest(const struct vp_config_device *a, const struct vp_config_device *b)
{
	if (a->guest_domid >= 0 || b->guest_domid >= 0)
		return a->guest_domid == b->guest_domid;
	return strcmp(a->guest, b->guest) == 0;
}

static void check_devices(struct parser *p)
{
	const struct vp_config *c = p->c;
	char what[256];

	for (size_t i = 0; i < c->n_devices && !p->rc; i++) {
		const struct vp_config_device *d = &c->devices[i];
		const char *missing = !d->guest ? "guest" : !d->id_line ? "id"
				      : !d->plugin_name ? "plugin" : NULL;

		snprintf(what, sizeof(what), "device %s", d->label);
		if (missing) {
			fail(p, d->line, what, "missing required key \"%s\"", missing);
			return;
		}
		for (size_t j = 0; j < i; j++) {
			const struct vp_config_device *o = &c->devices[j];

			if (o->id == d->id && same_guest(o, d)) {
				fail(p, d->line, what,
				     "guest %s id %u is already used by [device %s] at line %d",
				     d->guest, d->id, o->label, o->line);
				return;
			}
		}
	}
}

/* ---- API ---- */

static struct vp_config *config_new(const char *file)
{
	struct vp_config *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->hypervisor = "sim";
	c->log_level = VPROXY_LOG_INFO;
	c->backend_domid = -1;
	c->poll_auto = true;
	c->poll_max_us = VP_CONFIG_DEFAULT_POLL_MAX_US;
	c->path = strdup(file);
	c->run_dir = strdup(DEFAULT_RUN_DIR);
	c->plugin_dir = strdup(VPROXY_DEFAULT_PLUGIN_DIR);
	if (!c->path || !c->run_dir || !c->plugin_dir) {
		vp_config_free(c);
		return NULL;
	}
	return c;
}

static int parse_text(const char *file, const char *text, size_t len,
		      struct vp_config **out, char *err, size_t errlen)
{
	struct parser p = {
		.file = file, .text = text, .len = len, .err = err, .errlen = errlen,
	};
	int ret;

	*out = NULL;
	if (errlen)
		err[0] = '\0';
	p.c = config_new(file);
	if (!p.c) {
		nomem(&p);
		return p.rc;
	}
	ret = ini_parse_stream(read_line, &p, on_key, &p);
	if (ret > 0)
		fail(&p, ret, "syntax error",
		     "expected \"key = value\", a comment or a [section]");
	else if (ret < 0 && !p.rc)
		nomem(&p);
	if (!p.rc)
		check_devices(&p);
	seen_clear(&p);
	free(p.seen);
	if (p.rc) {
		vp_config_free(p.c);
		return p.rc;
	}
	*out = p.c;
	return 0;
}

int vp_config_load_string(const char *name, const char *text,
			  struct vp_config **out, char *err, size_t errlen)
{
	return parse_text(name ? name : "<string>", text, strlen(text), out, err,
			  errlen);
}

int vp_config_load(const char *path, struct vp_config **out, char *err,
		   size_t errlen)
{
	char *buf = NULL;
	size_t len = 0;
	struct stat st;
	int fd, rc;

	*out = NULL;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		rc = -errno;
		goto fail;
	}
	if (fstat(fd, &st) < 0) {
		rc = -errno;
		goto fail;
	}
	if (S_ISDIR(st.st_mode)) {
		rc = -EISDIR;
		goto fail;
	}
	buf = malloc(MAX_FILE_BYTES + 1);
	if (!buf) {
		rc = -ENOMEM;
		goto fail;
	}
	for (;;) {
		ssize_t n = read(fd, buf + len, MAX_FILE_BYTES + 1 - len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = -errno;
			goto fail;
		}
		if (n == 0)
			break;
		len += (size_t)n;
		if (len > MAX_FILE_BYTES) {
			rc = -EFBIG;
			goto fail;
		}
	}
	close(fd);
	rc = parse_text(path, buf, len, out, err, errlen);
	free(buf);
	return rc;
fail:
	snprintf(err, errlen, "%s: %s", path, strerror(-rc));
	if (fd >= 0)
		close(fd);
	free(buf);
	return rc;
}

int vp_config_set_plugin_dir(struct vp_config *c, const char *dir)
{
	return replace_str(&c->plugin_dir, dir);
}

int vp_config_check_plugins(struct vp_config *c, char *err, size_t errlen)
{
	for (size_t i = 0; i < c->n_devices; i++) {
		struct vp_config_device *d = &c->devices[i];
		const struct vproxy_plugin *plugin;
		const char *bad_key;
		char why[512];
		char keys[256];
		size_t off = 0;
		int bad_line;

		plugin = vp_plugin_load(c->plugin_dir, d->plugin_name, why, sizeof(why));
		if (!plugin) {
			snprintf(err, errlen, "%s:%d: plugin: %s", c->path, d->plugin_line,
				 why);
			return -EINVAL;
		}
		d->plugin = plugin;
		if (vp_params_check(d->params, plugin, &bad_key, &bad_line) == 0)
			continue;
		keys[0] = '\0';
		for (const char *const *k = plugin->param_keys; k && *k; k++) {
			int n = snprintf(keys + off, sizeof(keys) - off, "%s%s",
					 off ? ", " : "", *k);

			if (n < 0 || (size_t)n >= sizeof(keys) - off)
				break;
			off += (size_t)n;
		}
		snprintf(err, errlen,
			 "%s:%d: %s: unknown key: not a device setting nor a parameter "
			 "of plugin %s (which takes: %s)",
			 c->path, bad_line, bad_key, plugin->name, off ? keys : "none");
		return -EINVAL;
	}
	return 0;
}

void vp_config_free(struct vp_config *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->n_devices; i++) {
		struct vp_config_device *d = &c->devices[i];

		free(d->label);
		free(d->guest);
		free(d->plugin_name);
		vp_params_free(d->params);
	}
	free(c->devices);
	free(c->path);
	free(c->run_dir);
	free(c->control_socket);
	free(c->metrics_host);
	free(c->plugin_dir);
	free(c);
}
