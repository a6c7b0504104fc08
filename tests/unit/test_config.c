/* SPDX-License-Identifier: MIT */
/* Configuration parsing: values, defaults, and one test per kind of error,
 * each checking the exact "<file>:<line>: <key>: ..." message. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "plugin_host.h"
#include "version.h"

static char err[1024];

/* Parse text named "t.ini"; expect failure with exactly want. */
static void expect_error(const char *text, const char *want)
{
	struct vp_config *c = (struct vp_config *)1;
	int rc;

	rc = vp_config_load_string("t.ini", text, &c, err, sizeof(err));
	ck_assert_msg(rc == -EINVAL, "rc %d for:\n%s", rc, text);
	ck_assert_ptr_null(c);
	ck_assert_str_eq(err, want);
}

static struct vp_config *parse_ok(const char *text)
{
	struct vp_config *c = NULL;

	ck_assert_msg(vp_config_load_string("t.ini", text, &c, err, sizeof(err)) == 0,
		      "%s", err);
	ck_assert_ptr_nonnull(c);
	return c;
}

/* ---- good files ---- */

START_TEST(parse_all_keys)
{
	struct vp_config *c = parse_ok("\xEF\xBB\xBF; comment\r\n"
				       "[vproxyd]\r\n"
				       "hypervisor = xen\r\n"
				       "run-dir = /tmp/r\n"
				       "plugin-dir = /tmp/p ; inline comment\n"
				       "log-level = debug\n"
				       "backend-domid = 0\n"
				       "poll-us = 1000000\n"
				       "\n"
				       "[device a]\n"            /* line 10 */
				       "guest = 32751\n"
				       "id = 255\n"
				       "plugin = mem\n"
				       "read-only = TRUE\n"
				       "queues = 16\n"
				       "queue-size = 1024\n"
				       "serial = 12345678901234567890\n"
				       "request-timeout = 1500ms\n"
				       "size = 64M\n"
				       "block-size=4096\n"
				       "[device b]\n"            /* line 21 */
				       "  guest = vm-1.x\n"
				       "  id = 0\n"
				       "  plugin = other\n"
				       "  read-only = 0\n"
				       "  queue-size = 2\n"
				       "  request-timeout = 30\n");
	const struct vp_config_device *a, *b;

	ck_assert_str_eq(c->path, "t.ini");
	ck_assert_str_eq(c->hypervisor, "xen");
	ck_assert_str_eq(c->run_dir, "/tmp/r");
	ck_assert_str_eq(c->plugin_dir, "/tmp/p");
	ck_assert_int_eq(c->plugin_dir_line, 5);
	ck_assert_int_eq(c->log_level, VPROXY_LOG_DEBUG);
	ck_assert_int_eq(c->backend_domid, 0);
	ck_assert_uint_eq(c->poll_us, 1000000);
	ck_assert_uint_eq(c->n_devices, 2);

	a = &c->devices[0];
	ck_assert_str_eq(a->label, "a");
	ck_assert_int_eq(a->line, 10);
	ck_assert_str_eq(a->guest, "32751");
	ck_assert_int_eq(a->guest_domid, 32751);
	ck_assert_int_eq(a->guest_line, 11);
	ck_assert_uint_eq(a->id, 255);
	ck_assert_int_eq(a->id_line, 12);
	ck_assert_str_eq(a->plugin_name, "mem");
	ck_assert_int_eq(a->plugin_line, 13);
	ck_assert(a->read_only);
	ck_assert_uint_eq(a->queues, 16);
	ck_assert_uint_eq(a->queue_size, 1024);
	ck_assert_str_eq(a->serial, "12345678901234567890");
	ck_assert_uint_eq(a->request_timeout_ms, 1500);
	ck_assert_str_eq(vp_params_get(a->params, "size"), "64M");
	ck_assert_str_eq(vp_params_get(a->params, "block-size"), "4096");
	ck_assert_ptr_null(vp_params_get(a->params, "guest"));
	ck_assert_ptr_null(a->plugin);

	b = &c->devices[1];
	ck_assert_str_eq(b->label, "b");
	ck_assert_int_eq(b->line, 21);
	ck_assert_uint_eq(b->request_timeout_ms, 30000);
	ck_assert_str_eq(b->guest, "vm-1.x");
	ck_assert_int_eq(b->guest_domid, -1);
	ck_assert_uint_eq(b->id, 0);
	ck_assert_str_eq(b->plugin_name, "other");
	ck_assert(!b->read_only);
	ck_assert_uint_eq(b->queues, 1);
	ck_assert_uint_eq(b->queue_size, 2);
	ck_assert_str_eq(b->serial, "");
	ck_assert_ptr_null(vp_params_get(b->params, "size"));
	vp_config_free(c);
}
END_TEST

START_TEST(parse_defaults)
{
	struct vp_config *c = parse_ok("[device d]\nguest=1\nid=0\nplugin=mem\n");

	ck_assert_str_eq(c->hypervisor, "sim");
	ck_assert_str_eq(c->run_dir, "/run/vproxy");
	ck_assert_str_eq(c->plugin_dir, VPROXY_DEFAULT_PLUGIN_DIR);
	ck_assert_int_eq(c->plugin_dir_line, 0);
	ck_assert_int_eq(c->log_level, VPROXY_LOG_INFO);
	ck_assert_int_eq(c->backend_domid, -1);
	ck_assert(c->poll_auto);
	ck_assert_uint_eq(c->poll_max_us, VP_CONFIG_DEFAULT_POLL_MAX_US);
	ck_assert_uint_eq(c->n_devices, 1);
	ck_assert(!c->devices[0].read_only);
	ck_assert_uint_eq(c->devices[0].queues, 1);
	ck_assert_uint_eq(c->devices[0].queue_size, 256);
	ck_assert_str_eq(c->devices[0].serial, "");
	ck_assert_int_eq(vp_config_set_plugin_dir(c, "/elsewhere"), 0);
	ck_assert_str_eq(c->plugin_dir, "/elsewhere");
	vp_config_free(c);

	/* an empty file is a valid configuration with no devices */
	c = parse_ok("");
	ck_assert_uint_eq(c->n_devices, 0);
	ck_assert_int_eq(c->backend_domid, -1);
	vp_config_free(c);
	/* a section header after " ;" is only a comment */
	c = parse_ok("[vproxyd]\nbackend-domid = auto ; [device x]\n");
	ck_assert_int_eq(c->backend_domid, -1);
	ck_assert_uint_eq(c->n_devices, 0);
	vp_config_free(c);
	vp_config_free(NULL);
}
END_TEST

START_TEST(parse_fixture_file)
{
	const char *path = VP_TEST_SRC_DIR "/tests/unit/data/valid.ini";
	struct vp_config *c = NULL;

	ck_assert_msg(vp_config_load(path, &c, err, sizeof(err)) == 0, "%s", err);
	ck_assert_str_eq(c->path, path);
	ck_assert_str_eq(c->hypervisor, "xen");
	ck_assert_str_eq(c->run_dir, "/tmp/vproxy-test");
	ck_assert_int_eq(c->log_level, VPROXY_LOG_DEBUG);
	ck_assert_int_eq(c->backend_domid, 7);
	ck_assert(!c->poll_auto);
	ck_assert_uint_eq(c->poll_us, 50);
	ck_assert_uint_eq(c->n_devices, 2);
	ck_assert_str_eq(c->devices[0].label, "root");
	ck_assert_int_eq(c->devices[0].line, 9);
	ck_assert_int_eq(c->devices[0].guest_domid, 5);
	ck_assert_uint_eq(c->devices[0].id, 3);
	ck_assert(c->devices[0].read_only);
	ck_assert_uint_eq(c->devices[0].queues, 4);
	ck_assert_uint_eq(c->devices[0].queue_size, 128);
	/* ';' starts a comment only after whitespace */
	ck_assert_str_eq(c->devices[0].serial, "SN;0001");
	ck_assert_str_eq(c->devices[1].label, "data disk");
	ck_assert_int_eq(c->devices[1].line, 21);
	ck_assert_str_eq(c->devices[1].guest, "web-01");
	ck_assert_int_eq(c->devices[1].guest_domid, -1);

	ck_assert_int_eq(vp_config_set_plugin_dir(c, VP_TEST_PLUGIN_DIR), 0);
	ck_assert_msg(vp_config_check_plugins(c, err, sizeof(err)) == 0, "%s", err);
	ck_assert_str_eq(c->devices[0].plugin->name, "mem");
	ck_assert_ptr_eq(c->devices[1].plugin, c->devices[0].plugin);
	vp_config_free(c);
	vp_plugin_unload_all();
}
END_TEST

START_TEST(shipped_config_parses)
{
	struct vp_config *c = NULL;

	ck_assert_msg(vp_config_load(VP_TEST_SRC_DIR "/etc/vproxyd.ini", &c, err,
				     sizeof(err)) == 0,
		      "%s", err);
	ck_assert_str_eq(c->hypervisor, "sim");
	ck_assert_uint_ge(c->n_devices, 2);
	ck_assert_int_eq(vp_config_set_plugin_dir(c, VP_TEST_PLUGIN_DIR), 0);
	ck_assert_msg(vp_config_check_plugins(c, err, sizeof(err)) == 0, "%s", err);
	for (size_t i = 0; i < c->n_devices; i++)
		ck_assert_ptr_nonnull(c->devices[i].plugin);
	vp_config_free(c);
	vp_plugin_unload_all();
}
END_TEST

/* ---- errors, one test per kind ---- */

START_TEST(parse_control_and_metrics)
{
	struct vp_config *c = parse_ok("[device d]\nguest=1\nid=0\nplugin=mem\n");

	ck_assert_ptr_null(c->control_socket); /* <run-dir>/control.sock */
	ck_assert_ptr_null(c->metrics_host);   /* off */
	vp_config_free(c);
	c = parse_ok("[vproxyd]\ncontrol-socket = /tmp/x.sock\nmetrics-listen = [::1]:9477\n"
	             "[device d]\nguest=1\nid=0\nplugin=mem\n");
	ck_assert_str_eq(c->control_socket, "/tmp/x.sock");
	ck_assert_str_eq(c->metrics_host, "::1");
	ck_assert_uint_eq(c->metrics_port, 9477);
	vp_config_free(c);
	c = parse_ok("[vproxyd]\ncontrol-socket = none\nmetrics-listen = 127.0.0.1:1\n"
	             "[device d]\nguest=1\nid=0\nplugin=mem\n");
	ck_assert_str_eq(c->control_socket, "none");
	ck_assert_str_eq(c->metrics_host, "127.0.0.1");
	ck_assert_uint_eq(c->metrics_port, 1);
	vp_config_free(c);
}
END_TEST

START_TEST(parse_poll_modes)
{
	struct vp_config *c = parse_ok("[vproxyd]\npoll-us = auto\npoll-max-us = 200\n"
	                               "[device d]\nguest=1\nid=0\nplugin=mem\n");

	ck_assert(c->poll_auto);
	ck_assert_uint_eq(c->poll_max_us, 200);
	vp_config_free(c);
	c = parse_ok("[vproxyd]\npoll-us = 0\n[device d]\nguest=1\nid=0\nplugin=mem\n");
	ck_assert(!c->poll_auto);
	ck_assert_uint_eq(c->poll_us, 0);
	vp_config_free(c);
}
END_TEST

START_TEST(err_unknown_global_key)
{
	expect_error("[vproxyd]\nhypervisor = sim\ncolour = blue\n",
		     "t.ini:3: colour: unknown key in [vproxyd] (known: hypervisor, "
		     "run-dir, plugin-dir, control-socket, metrics-listen, log-level, "
		     "backend-domid, poll-us, poll-max-us)");
}
END_TEST

START_TEST(err_unknown_section)
{
	expect_error("[vproxyd]\n\n[disk a]\nx = 1\n",
		     "t.ini:3: disk a: unknown section (expected [vproxyd] or [device NAME])");
	/* an empty section is reported too, though inih never mentions it */
	expect_error("[vproxyd]\n[devices]\n",
		     "t.ini:2: devices: unknown section (expected [vproxyd] or [device NAME])");
	expect_error("[]\n", "t.ini:1: []: unknown section (expected [vproxyd] or "
			     "[device NAME])");
	expect_error("[vproxyd]\n[ device ]\n",
		     "t.ini:2: device: section needs a label: [device NAME]");
}
END_TEST

static const struct {
	const char *text;
	const char *err;
} bad_values[] = {
	{"[vproxyd]\nhypervisor = kvm\n",
	 "t.ini:2: hypervisor: \"kvm\" is not allowed (sim or xen)"},
	{"[vproxyd]\nrun-dir =\n", "t.ini:2: run-dir: must not be empty (a directory)"},
	{"[vproxyd]\nplugin-dir = ;\n",
	 "t.ini:2: plugin-dir: must not be empty (a directory)"},
	{"[vproxyd]\ncontrol-socket =\n",
	 "t.ini:2: control-socket: must not be empty (a socket path, or none)"},
	{"[vproxyd]\ncontrol-socket = /run/"
	 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n",
	 "t.ini:2: control-socket: longer than 107 bytes (a unix socket path)"},
	{"[vproxyd]\nmetrics-listen = 9477\n",
	 "t.ini:2: metrics-listen: \"9477\" is not allowed (HOST:PORT, e.g. 127.0.0.1:9477 or "
	 "[::1]:9477; port 1..65535)"},
	{"[vproxyd]\nmetrics-listen = 127.0.0.1:0\n",
	 "t.ini:2: metrics-listen: \"127.0.0.1:0\" is not allowed (HOST:PORT, e.g. "
	 "127.0.0.1:9477 or [::1]:9477; port 1..65535)"},
	{"[vproxyd]\nmetrics-listen = ::1:9477\n",
	 "t.ini:2: metrics-listen: \"::1:9477\" is not allowed (HOST:PORT, e.g. "
	 "127.0.0.1:9477 or [::1]:9477; port 1..65535)"},
	{"[vproxyd]\nmetrics-listen = :9477\n",
	 "t.ini:2: metrics-listen: \":9477\" is not allowed (HOST:PORT, e.g. "
	 "127.0.0.1:9477 or [::1]:9477; port 1..65535)"},
	{"[vproxyd]\nmetrics-listen = localhost:65536\n",
	 "t.ini:2: metrics-listen: \"localhost:65536\" is not allowed (HOST:PORT, e.g. "
	 "127.0.0.1:9477 or [::1]:9477; port 1..65535)"},
	{"[vproxyd]\nlog-level = loud\n",
	 "t.ini:2: log-level: \"loud\" is not allowed (error, warn, info or debug)"},
	{"[vproxyd]\nbackend-domid = 32752\n",
	 "t.ini:2: backend-domid: \"32752\" is not allowed (auto or 0..32751)"},
	{"[vproxyd]\nbackend-domid = -1\n",
	 "t.ini:2: backend-domid: \"-1\" is not allowed (auto or 0..32751)"},
	{"[vproxyd]\npoll-us = 1000001\n",
	 "t.ini:2: poll-us: \"1000001\" is not allowed (auto or microseconds, 0..1000000)"},
	{"[vproxyd]\npoll-us = 1.5\n",
	 "t.ini:2: poll-us: \"1.5\" is not allowed (auto or microseconds, 0..1000000)"},
	{"[vproxyd]\npoll-us = Auto\n",
	 "t.ini:2: poll-us: \"Auto\" is not allowed (auto or microseconds, 0..1000000)"},
	{"[vproxyd]\npoll-max-us = 1000001\n",
	 "t.ini:2: poll-max-us: \"1000001\" is not allowed (microseconds, 0..1000000)"},
	{"[vproxyd]\npoll-max-us = auto\n",
	 "t.ini:2: poll-max-us: \"auto\" is not allowed (microseconds, 0..1000000)"},
	{"[vproxyd]\npoll-us = 99999999999999999999999\n",
	 "t.ini:2: poll-us: \"99999999999999999999999\" is not allowed (auto or "
	 "microseconds, 0..1000000)"},
	{"[device a]\nguest = 0\n", "t.ini:2: guest: domid 0 is out of range (1..32751)"},
	{"[device a]\nguest = 32752\n",
	 "t.ini:2: guest: domid 32752 is out of range (1..32751)"},
	{"[device a]\nguest = bad name\n",
	 "t.ini:2: guest: \"bad name\" is not allowed (a domid 1..32751 or a domain name "
	 "of letters, digits, '_', '-', '.')"},
	{"[device a]\nguest = -3\n",
	 "t.ini:2: guest: \"-3\" is not allowed (a domid 1..32751 or a domain name "
	 "of letters, digits, '_', '-', '.')"},
	{"[device a]\nguest =\n",
	 "t.ini:2: guest: \"\" is not allowed (a domid 1..32751 or a domain name "
	 "of letters, digits, '_', '-', '.')"},
	{"[device a]\nid = 256\n", "t.ini:2: id: \"256\" is not allowed (0..255)"},
	{"[device a]\nid = x\n", "t.ini:2: id: \"x\" is not allowed (0..255)"},
	{"[device a]\nplugin =\n",
	 "t.ini:2: plugin: must not be empty (a plugin name, e.g. mem)"},
	{"[device a]\nread-only = maybe\n",
	 "t.ini:2: read-only: \"maybe\" is not allowed (yes, no, true, false, on, off, 1 "
	 "or 0)"},
	{"[device a]\nqueues = 0\n", "t.ini:2: queues: \"0\" is not allowed (1..16)"},
	{"[device a]\nqueues = 17\n", "t.ini:2: queues: \"17\" is not allowed (1..16)"},
	{"[device a]\nqueue-size = 1\n",
	 "t.ini:2: queue-size: \"1\" is not allowed (a power of two, 2..1024)"},
	{"[device a]\nqueue-size = 384\n",
	 "t.ini:2: queue-size: \"384\" is not allowed (a power of two, 2..1024)"},
	{"[device a]\nqueue-size = 2048\n",
	 "t.ini:2: queue-size: \"2048\" is not allowed (a power of two, 2..1024)"},
	{"[device a]\nrequest-timeout = 2h\n",
	 "t.ini:2: request-timeout: \"2h\" is not allowed (off, or seconds up to 3600: "
	 "30, 30s, 500ms)"},
	{"[device a]\nrequest-timeout = 3601s\n",
	 "t.ini:2: request-timeout: \"3601s\" is not allowed (off, or seconds up to 3600: "
	 "30, 30s, 500ms)"},
	{"[device a]\nrequest-timeout = -1\n",
	 "t.ini:2: request-timeout: \"-1\" is not allowed (off, or seconds up to 3600: "
	 "30, 30s, 500ms)"},
	{"[device a]\nserial = 123456789012345678901\n",
	 "t.ini:2: serial: is 21 bytes long (at most 20 allowed)"},
};

START_TEST(err_bad_value)
{
	expect_error(bad_values[_i].text, bad_values[_i].err);
}
END_TEST

START_TEST(err_missing_required_key)
{
	expect_error("[vproxyd]\n\n[device a]\nid = 0\nplugin = mem\n",
		     "t.ini:3: device a: missing required key \"guest\"");
	expect_error("[device a]\nguest = 1\nplugin = mem\n",
		     "t.ini:1: device a: missing required key \"id\"");
	expect_error("[device a]\nguest = 1\nid = 0\nsize = 1M\n[device b]\n",
		     "t.ini:1: device a: missing required key \"plugin\"");
	/* the first device lacking something is named */
	expect_error("[device a]\nguest = 1\nid = 0\nplugin = mem\n[device b]\n",
		     "t.ini:5: device b: missing required key \"guest\"");
}
END_TEST

START_TEST(err_missing_required_key_in_file)
{
	const char *path = VP_TEST_SRC_DIR "/tests/unit/data/missing-guest.ini";
	struct vp_config *c = NULL;

	ck_assert_int_eq(vp_config_load(path, &c, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_null(c);
	ck_assert_str_eq(err, VP_TEST_SRC_DIR
			 "/tests/unit/data/missing-guest.ini:4: device nobody: missing "
			 "required key \"guest\"");
}
END_TEST

START_TEST(err_duplicate_device)
{
	struct vp_config *c;

	expect_error("[device a]\nguest = 5\nid = 0\nplugin = mem\n\n"
		     "[device b]\nguest = 5\nid = 0\nplugin = mem\n",
		     "t.ini:6: device b: guest 5 id 0 is already used by [device a] at line 1");
	expect_error("[device a]\nguest = web\nid = 2\nplugin = mem\n"
		     "[device b]\nguest = 6\nid = 2\nplugin = mem\n"
		     "[device c]\nguest = web\nid = 2\nplugin = mem\n",
		     "t.ini:9: device c: guest web id 2 is already used by [device a] at line 1");
	/* same guest, other id; same id, other guest; a domid and a name
	 * (which cannot be compared before the guest exists) are all fine */
	c = parse_ok("[device a]\nguest = 5\nid = 0\nplugin = mem\n"
		     "[device b]\nguest = 5\nid = 1\nplugin = mem\n"
		     "[device c]\nguest = 6\nid = 0\nplugin = mem\n"
		     "[device d]\nguest = five\nid = 0\nplugin = mem\n");
	ck_assert_uint_eq(c->n_devices, 4);
	vp_config_free(c);
}
END_TEST

START_TEST(err_duplicate_key)
{
	expect_error("[device a]\nguest = 5\nid = 0\nguest = 6\n",
		     "t.ini:4: guest: duplicate key in [device a] (first set at line 2)");
	expect_error("[device a]\nguest = 5\nsize = 1M\nid = 0\nsize = 2M\n",
		     "t.ini:5: size: duplicate key in [device a] (first set at line 3)");
	expect_error("[vproxyd]\npoll-us = 1\n\npoll-us = 2\n",
		     "t.ini:4: poll-us: duplicate key in [vproxyd] (first set at line 2)");
	/* keys are per section: the same key in two sections is fine */
	vp_config_free(parse_ok("[device a]\nguest=1\nid=0\nplugin=mem\n"
				"[device b]\nguest=1\nid=1\nplugin=mem\n"));
}
END_TEST

START_TEST(err_duplicate_section)
{
	expect_error("[device a]\nguest = 5\nid = 0\nplugin = mem\n[device  a ]\n",
		     "t.ini:5: device a: duplicate section (first at line 1)");
	expect_error("[vproxyd]\n[device a]\n[vproxyd]\n",
		     "t.ini:3: vproxyd: duplicate section (first at line 1)");
}
END_TEST

START_TEST(err_file_not_found)
{
	struct vp_config *c = (struct vp_config *)1;

	ck_assert_int_eq(vp_config_load("/nonexistent/vproxyd.ini", &c, err, sizeof(err)),
			 -ENOENT);
	ck_assert_ptr_null(c);
	ck_assert_str_eq(err, "/nonexistent/vproxyd.ini: No such file or directory");
}
END_TEST

START_TEST(err_file_unreadable)
{
	struct vp_config *c = (struct vp_config *)1;

	ck_assert_int_eq(vp_config_load(VP_TEST_SRC_DIR "/tests/unit/data", &c, err,
					sizeof(err)),
			 -EISDIR);
	ck_assert_ptr_null(c);
	ck_assert_str_eq(err, VP_TEST_SRC_DIR "/tests/unit/data: Is a directory");
}
END_TEST

START_TEST(err_unknown_plugin_param)
{
	struct vp_config *c = parse_ok("[vproxyd]\n"
				       "[device a]\n"
				       "guest = 5\n"
				       "id = 0\n"
				       "plugin = mem\n"
				       "size = 1M\n"
				       "colour = blue\n");

	ck_assert_int_eq(vp_config_set_plugin_dir(c, VP_TEST_PLUGIN_DIR), 0);
	ck_assert_int_eq(vp_config_check_plugins(c, err, sizeof(err)), -EINVAL);
	ck_assert_str_eq(err, "t.ini:7: colour: unknown key: not a device setting nor a "
			      "parameter of plugin mem (which takes: size, block-size)");
	vp_config_free(c);
	vp_plugin_unload_all();
}
END_TEST

START_TEST(err_plugin_load)
{
	struct vp_config *c = parse_ok("[device a]\n"
				       "guest = 5\n"
				       "id = 0\n"
				       "plugin = mem\n"
				       "[device b]\n"
				       "guest = 5\n"
				       "id = 1\n"
				       "plugin = nosuch\n");

	ck_assert_int_eq(vp_config_set_plugin_dir(c, VP_TEST_PLUGIN_DIR), 0);
	ck_assert_int_eq(vp_config_check_plugins(c, err, sizeof(err)), -EINVAL);
	ck_assert_str_eq(err, "t.ini:8: plugin: plugin \"nosuch\": " VP_TEST_PLUGIN_DIR
			      "/nosuch.so: No such file or directory");
	vp_config_free(c);

	c = parse_ok("[device a]\nguest = 5\nid = 0\n\nplugin = ../mem\n");
	ck_assert_int_eq(vp_config_set_plugin_dir(c, VP_TEST_PLUGIN_DIR), 0);
	ck_assert_int_eq(vp_config_check_plugins(c, err, sizeof(err)), -EINVAL);
	ck_assert_str_eq(err, "t.ini:5: plugin: invalid plugin name \"../mem\" (must be "
			      "non-empty, without '/' or \"..\")");
	vp_config_free(c);
	vp_plugin_unload_all();
}
END_TEST

START_TEST(err_syntax)
{
	char longline[300];

	expect_error("[vproxyd]\nhypervisor sim\n",
		     "t.ini:2: syntax error: expected \"key = value\", a comment or a "
		     "[section]");
	expect_error("[vproxyd\nhypervisor = sim\n",
		     "t.ini:1: syntax error: section header without closing ']'");
	expect_error("[vproxyd ; comment]\n",
		     "t.ini:1: syntax error: section header without closing ']'");
	expect_error("[vproxyd] junk\n",
		     "t.ini:1: syntax error: text after the section header's ']'");
	expect_error("[vproxyd]\n = sim\n",
		     "t.ini:2: syntax error: key name missing before '='");
	expect_error("size = 1M\n[vproxyd]\n",
		     "t.ini:1: size: key outside any section (put it under [vproxyd] or "
		     "[device NAME])");
	/* inih reports syntax errors only at the end; the earliest line wins
	 * over a later error found first */
	expect_error("[vproxyd]\nno equals sign\ncolour = red\n",
		     "t.ini:2: syntax error: expected \"key = value\", a comment or a "
		     "[section]");
	/* a line longer than inih's buffer is refused, not split in two */
	memset(longline, 0, sizeof(longline));
	memcpy(longline, "[device a]\nserial = ", 20);
	memset(longline + 20, 'x', 220);
	expect_error(longline, "t.ini:2: syntax error: line too long (at most 199 characters)");
}
END_TEST

START_TEST(err_syntax_nul_byte)
{
	char path[] = "/tmp/vp_test_config_XXXXXX";
	static const char text[] = "[vproxyd]\nhyper\0visor = sim\n";
	struct vp_config *c = NULL;
	char want[128];
	int fd = mkstemp(path);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, text, sizeof(text) - 1), (ssize_t)sizeof(text) - 1);
	close(fd);
	ck_assert_int_eq(vp_config_load(path, &c, err, sizeof(err)), -EINVAL);
	unlink(path);
	ck_assert_ptr_null(c);
	snprintf(want, sizeof(want), "%s:2: syntax error: NUL byte in line", path);
	ck_assert_str_eq(err, want);
}
END_TEST

START_TEST(err_message_truncated)
{
	struct vp_config *c = NULL;
	char small[12];

	ck_assert_int_eq(vp_config_load_string("t.ini", "[vproxyd]\nx = 1\n", &c, small,
					       sizeof(small)),
			 -EINVAL);
	ck_assert_str_eq(small, "t.ini:2: x:");
}
END_TEST

static Suite *config_suite(void)
{
	Suite *s = suite_create("config");
	TCase *good = tcase_create("good");
	TCase *bad = tcase_create("errors");

	tcase_add_test(good, parse_all_keys);
	tcase_add_test(good, parse_poll_modes);
	tcase_add_test(good, parse_defaults);
	tcase_add_test(good, parse_fixture_file);
	tcase_add_test(good, shipped_config_parses);
	suite_add_tcase(s, good);

	tcase_add_test(bad, err_unknown_global_key);
	tcase_add_test(bad, parse_control_and_metrics);
	tcase_add_test(bad, err_unknown_section);
	tcase_add_loop_test(bad, err_bad_value, 0,
			    (int)(sizeof(bad_values) / sizeof(bad_values[0])));
	tcase_add_test(bad, err_missing_required_key);
	tcase_add_test(bad, err_missing_required_key_in_file);
	tcase_add_test(bad, err_duplicate_device);
	tcase_add_test(bad, err_duplicate_key);
	tcase_add_test(bad, err_duplicate_section);
	tcase_add_test(bad, err_file_not_found);
	tcase_add_test(bad, err_file_unreadable);
	tcase_add_test(bad, err_unknown_plugin_param);
	tcase_add_test(bad, err_plugin_load);
	tcase_add_test(bad, err_syntax);
	tcase_add_test(bad, err_syntax_nul_byte);
	tcase_add_test(bad, err_message_truncated);
	suite_add_tcase(s, bad);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(config_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
