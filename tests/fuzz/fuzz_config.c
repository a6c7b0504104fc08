/* SPDX-License-Identifier: MIT */
/*
 * Fuzzes vproxyd's INI configuration parser (core/config.c, over inih):
 * the input is the file, parsed from memory as vp_config_load_string sees
 * it (up to the first NUL); an input that starts with a NUL byte is the
 * rest of it read from a file by vp_config_load (NUL bytes in lines).  Beyond ASan/UBSan:
 * an accepted configuration must satisfy every documented limit, a refused one must come
 * with a message naming the file.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <vproxy/proto.h>

#include "config.h"
#include "log.h"

static int fd = -1;
static char path[64];

static void fail(const char *what, const char *detail)
{
	fprintf(stderr, "fuzz_config: %s: %s\n", what, detail);
	abort();
}

static bool is_pow2(unsigned v)
{
	return v && !(v & (v - 1));
}

/* What config.h promises about a configuration it accepted. */
static void check_config(const struct vp_config *c)
{
	if (strcmp(c->hypervisor, "sim") != 0 && strcmp(c->hypervisor, "xen") != 0)
		fail("hypervisor", c->hypervisor);
	if (!c->run_dir || !c->plugin_dir)
		fail("directories", "missing");
	if (c->poll_us > VP_CONFIG_MAX_POLL_US)
		fail("poll-us", "over the limit");
	if (c->backend_domid < -1 || c->backend_domid > (int)VPROXY_DOMID_MAX)
		fail("backend-domid", "out of range");
	if (c->log_level > VPROXY_LOG_DEBUG)
		fail("log-level", "unknown");
	for (size_t i = 0; i < c->n_devices; i++) {
		const struct vp_config_device *d = &c->devices[i];

		if (!d->label || !d->guest || !d->plugin_name || !d->params)
			fail("device", "a required field is missing");
		if (d->guest_domid < -1 || d->guest_domid > (int)VPROXY_DOMID_MAX ||
		    d->guest_domid == 0)
			fail("guest", d->guest);
		if (d->id > VP_CONFIG_MAX_DEVID)
			fail("id", d->label);
		if (d->queues < 1 || d->queues > VP_CONFIG_MAX_QUEUES)
			fail("queues", d->label);
		if (!is_pow2(d->queue_size) || d->queue_size < 2 ||
		    d->queue_size > VP_CONFIG_MAX_QUEUE_SIZE)
			fail("queue-size", d->label);
		if (memchr(d->serial, '\0', sizeof(d->serial)) == NULL)
			fail("serial", "not terminated");
		for (size_t j = 0; j < i; j++)
			if (strcmp(c->devices[j].label, d->label) == 0)
				fail("label", "not unique");
	}
}

static void check_result(int rc, struct vp_config *c, const char *err, const char *name)
{
	char why[600];

	if (rc == 0) {
		if (!c)
			fail("accepted", "no configuration");
		check_config(c);
		if (vp_config_set_plugin_dir(c, "/nonexistent/vproxy-fuzz") == 0 &&
		    c->n_devices && vp_config_check_plugins(c, why, sizeof(why)) == 0)
			fail("plugins", "loaded from a directory that does not exist");
		vp_config_free(c);
		return;
	}
	if (c)
		fail("refused", "but a configuration returned");
	if (rc != -ENOMEM && strncmp(err, name, strlen(name)) != 0)
		fail("message does not name the file", err);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct vp_config *c = NULL;
	char err[512], *text;
	int rc;

	if (fd < 0) {
		vp_log_set_level(VPROXY_LOG_ERROR);
		fd = memfd_create("fuzz.ini", MFD_CLOEXEC);
		if (fd < 0)
			abort();
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	}

	/* vp_config_load allocates its 1 MiB limit per call: only for the
	 * inputs that ask for it, or every input would be slow. */
	if (size && data[0] == '\0') {
		if (ftruncate(fd, 0) < 0 ||
		    pwrite(fd, data + 1, size - 1, 0) != (ssize_t)(size - 1))
			abort();
		rc = vp_config_load(path, &c, err, sizeof(err));
		check_result(rc, c, err, path);
		return 0;
	}
	text = malloc(size + 1);
	if (!text)
		abort();
	memcpy(text, data, size);
	text[size] = '\0';
	rc = vp_config_load_string("fuzz.ini", text, &c, err, sizeof(err));
	check_result(rc, c, err, "fuzz.ini");
	free(text);
	return 0;
}
