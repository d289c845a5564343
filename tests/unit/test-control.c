/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Unit tests of the control protocol and server (lib/control.c), without
 * FUSE: malformed and refused requests, the commands, and a server that a
 * silent or greedy client cannot block.
 */
#define _GNU_SOURCE
#include "control.h"
#include "mfs-int.h"
#include "migration.h"

#include <check.h>
#include <errno.h>
#include <json-glib/json-glib.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static char *top, *src, *dst;
static Mfs *fs;

static void setup(void)
{
	g_autofree char *img = NULL;

	top = g_dir_make_tmp("mfs-ctl-XXXXXX", NULL);
	src = g_build_filename(top, "src", NULL);
	dst = g_build_filename(top, "dst", NULL);
	ck_assert_int_eq(mkdir(src, 0755), 0);
	ck_assert_int_eq(mkdir(dst, 0755), 0);
	img = g_build_filename(src, "disk.img", NULL);
	{
		g_autofree char *data = g_malloc0(1 << 20);

		ck_assert(g_file_set_contents(img, data, 1 << 20, NULL));
	}
	ck_assert_int_eq(mfs_new(src, &fs), 0);
}

static void teardown(void)
{
	g_autofree char *cmd = g_strdup_printf("rm -rf '%s'", top);

	mfs_migration_shutdown(fs);
	mfs_free(fs);
	ck_assert_int_eq(system(cmd), 0);
	g_free(top);
	g_free(src);
	g_free(dst);
}

/* Send @line and return the reply as a parsed object (kept in *parser). */
static JsonObject *ask(const char *line, uid_t peer, JsonParser **parser)
{
	g_autofree char *reply = control_handle_request(fs, "/mnt", line, peer);
	JsonNode *root;

	*parser = json_parser_new();
	ck_assert_msg(json_parser_load_from_data(*parser, reply, -1, NULL), "not JSON: %s", reply);
	ck_assert_ptr_null(strchr(reply, '\n')); /* one line */
	root = json_parser_get_root(*parser);
	ck_assert(JSON_NODE_HOLDS_OBJECT(root));
	return json_node_get_object(root);
}

static void assert_error(const char *line, const char *fragment)
{
	g_autoptr(JsonParser) parser = NULL;
	JsonObject *r = ask(line, 0, &parser);
	const char *error = json_object_get_string_member_with_default(r, "error", "");

	ck_assert(!json_object_get_boolean_member(r, "ok"));
	ck_assert_msg(strstr(error, fragment), "'%s' -> '%s', wanted '%s'", line, error, fragment);
}

static void assert_ok(const char *line)
{
	g_autoptr(JsonParser) parser = NULL;
	JsonObject *r = ask(line, 0, &parser);

	ck_assert_msg(json_object_get_boolean_member(r, "ok"), "'%s' -> %s", line,
	              json_object_get_string_member_with_default(r, "error", ""));
}

static const char *state_now(void)
{
	static char state[32];
	g_autoptr(JsonParser) parser = NULL;
	JsonObject *r = ask("{\"command\":\"status\"}", 0, &parser);

	g_strlcpy(state, json_object_get_string_member(r, "state"), sizeof(state));
	return state;
}

START_TEST(test_malformed_requests)
{
	assert_error("", "malformed");
	assert_error("not json", "malformed");
	assert_error("[1,2]", "not a JSON object");
	assert_error("{}", "no \"command\"");
	assert_error("{\"command\":5}", "no \"command\"");
	assert_error("{\"command\":\"frobnicate\"}", "unknown command");
	assert_error("{\"version\":2,\"command\":\"status\"}", "unsupported protocol version");
	assert_error("{\"version\":\"1\",\"command\":\"status\"}", "unsupported protocol version");
	assert_error("{\"command\":\"status\"", "malformed");
	assert_error("\xff\xfe", "not UTF-8");
	assert_error("{\"command\":\"start\"}", "a target directory is needed");
	assert_error("{\"command\":\"start\",\"target\":5}", "a target directory is needed");
	assert_error("{\"command\":\"speed\"}", "a rate is needed");
	assert_error("{\"command\":\"speed\",\"speed\":[]}", "not a size");
	assert_error("{\"command\":\"speed\",\"speed\":-5}", "out of range");
	assert_error("{\"command\":\"speed\",\"speed\":null}", "a rate is needed");
	assert_error("{\"command\":\"status\\u0000junk\"}", "NUL in a string");
	assert_error("{\"command\":\"speed\",\"speed\":\"fast\"}", "not a size");
	assert_error("{\"command\":\"guest_share\"}", "a percentage is needed");
	assert_error("{\"command\":\"guest_share\",\"guest_share\":null}",
	             "a percentage is needed");
	assert_error("{\"command\":\"guest_share\",\"guest_share\":91}", "from 0 to 90");
	assert_error("{\"command\":\"guest_share\",\"guest_share\":-1}", "from 0 to 90");
	assert_error("{\"command\":\"guest_share\",\"guest_share\":\"50\"}", "from 0 to 90");
	assert_error("{\"command\":\"guest_share\",\"guest_share\":2.5}", "from 0 to 90");
	/* The mount is "/mnt" here: a target inside it would hang the daemon. */
	assert_error("{\"command\":\"start\",\"target\":\"/mnt/new\"}", "inside the mount");
	assert_error("{\"command\":\"start\",\"target\":\"/mnt/a/../b\"}", "inside the mount");
	assert_error("{\"command\":\"start\",\"target\":\"rel/dir\"}", "absolute path");
	{
		/* A parser message quoting a lone surrogate must still be UTF-8 JSON. */
		g_autofree char *reply = control_handle_request(fs, "/mnt", "{\"\\ud800\"\"}", 0);

		ck_assert(g_utf8_validate(reply, -1, NULL));
	}
}
END_TEST

START_TEST(test_refused_in_the_wrong_state)
{
	g_autofree char *start = NULL;

	assert_error("{\"command\":\"pause\"}", "no migration has been started");
	assert_error("{\"command\":\"switch\"}", "no migration has been started");
	assert_error("{\"command\":\"cancel\"}", "no migration has been started");
	assert_error("{\"command\":\"guest_share\",\"guest_share\":10}",
	             "no migration has been started");
	start =
	    g_strdup_printf("{\"command\":\"start\",\"target\":\"%s\",\"guest_share\":95}", dst);
	assert_error(start, "from 0 to 90");
	g_free(start);
	start = g_strdup_printf("{\"command\":\"start\",\"target\":\"%s\",\"switch\":\"sideways\"}",
	                        dst);
	assert_error(start, "switch: not auto or manual");
	g_free(start);
	start = g_strdup_printf("{\"command\":\"start\",\"target\":\"%s\",\"chunk\":0}", dst);
	assert_error(start, "power of two");
	g_free(start);
	/* The rules of lib/mig-options.c, whatever the member's type. */
	{
		static const struct {
			const char *member, *error;
		} bad[] = {
		    {"\"chunk\":\"3K\"", "start: chunk: not a power of two from 4K to 64M"},
		    {"\"chunk\":3072", "start: chunk: not a power of two from 4K to 64M"},
		    {"\"chunk\":\"128M\"", "start: chunk: not a power of two from 4K to 64M"},
		    {"\"chunk\":-4096", "start: chunk: not a power of two"},
		    {"\"chunk\":null", "start: chunk: not a power of two"},
		    {"\"switch\":null", "start: switch: not auto or manual"},
		    {"\"switch\":1", "start: switch: not auto or manual"},
		    {"\"speed\":\"fast\"", "start: speed: not a size"},
		    {"\"speed\":-1", "start: speed: out of range"},
		    {"\"speed\":\"9999999T\"", "start: speed: out of range"},
		    {"\"guest_share\":\"50\"", "start: guest_share: not a whole number"},
		    {"\"guest_share\":91", "start: guest_share: not a percentage from 0 to 90"},
		};

		for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
			g_autofree char *line = g_strdup_printf(
			    "{\"command\":\"start\",\"target\":\"%s\",%s}", dst, bad[i].member);

			assert_error(line, bad[i].error);
		}
	}
	start = g_strdup_printf("{\"command\":\"start\",\"target\":\"%s\",\"clone\":\"no\"}", dst);
	assert_error(start, "clone: must be true or false");
	g_free(start);
	start = g_strdup_printf("{\"command\":\"start\",\"target\":\"%s\"}", src);
	assert_error(start, "is the source");
	g_free(start);
	/* One byte a second: it stays copying for the rest of the test. */
	start = g_strdup_printf("{\"command\":\"start\",\"target\":\"%s\",\"speed\":1,"
	                        "\"switch\":\"manual\"}",
	                        dst);
	assert_ok(start);
	ck_assert_str_eq(state_now(), "copying");
	assert_error(start, "already running");
	assert_error("{\"command\":\"switch\"}", "not everything is copied yet");
	assert_error("{\"command\":\"resume\"}", "not possible while the migration is copying");
	assert_ok("{\"command\":\"pause\"}");
	ck_assert_str_eq(state_now(), "paused");
	assert_error("{\"command\":\"pause\"}", "already paused");
	assert_ok("{\"command\":\"resume\"}");
	assert_ok("{\"command\":\"guest_share\",\"guest_share\":0}");
	{
		MfsMigStatus st;

		mfs_migration_status(fs, NULL, &st);
		ck_assert_uint_eq(st.guest_share, 0);
		mfs_migration_status_clear(&st);
	}
	assert_ok("{\"command\":\"guest_share\",\"guest_share\":90}");
	assert_ok("{\"command\":\"speed\",\"speed\":\"0\"}");
	ck_assert_int_eq(mfs_migration_wait(fs, NULL, MFS_MIG_MIRRORED, 30000), MFS_MIG_MIRRORED);
	assert_ok("{\"version\":1,\"command\":\"switch\"}");
	ck_assert_int_eq(mfs_migration_wait(fs, NULL, MFS_MIG_SWITCHED, 30000), MFS_MIG_SWITCHED);
	assert_error("{\"command\":\"cancel\"}", "not possible while the migration is switched");
}
END_TEST

START_TEST(test_status_fields)
{
	static const char *fields[] = {
	    "version",      "state",      "source",      "target",          "bytes_total",
	    "bytes_copied", "rate_bps",   "eta_s",       "mirrored_writes", "waited_writes",
	    "max_wait_ms",  "stun_ms",    "error",       "files",           "served",
	    "speed_bps",    "mountpoint", "guest_share", "rested_ms",       "bytes_cloned",
	    "bytes_resumed"};
	g_autoptr(JsonParser) parser = NULL;
	g_autofree char *start = g_strdup_printf("{\"command\":\"start\",\"target\":\"%s\"}", dst);
	JsonObject *r = ask("{\"command\":\"status\"}", 0, &parser);

	for (size_t i = 0; i < G_N_ELEMENTS(fields); i++)
		ck_assert_msg(json_object_has_member(r, fields[i]), "no %s", fields[i]);
	ck_assert_str_eq(json_object_get_string_member(r, "state"), "idle");
	ck_assert(json_object_get_null_member(r, "target"));
	assert_ok(start);
	ck_assert_int_eq(mfs_migration_wait(fs, NULL, MFS_MIG_SWITCHED, 30000), MFS_MIG_SWITCHED);
	g_clear_object(&parser);
	r = ask("{\"command\":\"status\"}", 0, &parser);
	ck_assert_str_eq(json_object_get_string_member(r, "state"), "switched");
	ck_assert(!json_object_get_null_member(r, "stun_ms"));
	/* The start request gave no share: the daemon's default. */
	ck_assert_int_eq(json_object_get_int_member(r, "guest_share"), MFS_DEFAULT_GUEST_SHARE);
	ck_assert_int_eq(json_object_get_int_member(r, "bytes_copied"), 1 << 20);
	/* Another directory of the test's file system: ext4 or tmpfs clone nothing. */
	ck_assert_int_le(json_object_get_int_member(r, "bytes_cloned"), 1 << 20);
	{
		JsonArray *files = json_object_get_array_member(r, "files");
		JsonObject *f = json_array_get_object_element(files, 0);

		ck_assert_uint_eq(json_array_get_length(files), 1);
		ck_assert_str_eq(json_object_get_string_member(f, "path"), "disk.img");
		ck_assert_int_eq(json_object_get_int_member(f, "size"), 1 << 20);
		ck_assert_str_eq(json_object_get_string_member(f, "state"), "mirrored");
	}
}
END_TEST

/* A status request from the control thread, started while the mount is stunned. */
static gpointer status_served(gpointer unused)
{
	g_autoptr(JsonParser) parser = NULL;
	JsonObject *r = ask("{\"command\":\"status\"}", 0, &parser);

	(void)unused;
	return g_strdup(json_object_get_string_member(r, "served"));
}

static void ask_status_when_stunned(Mfs *hfs, const char *point, void *opaque)
{
	(void)hfs;
	if (strcmp(point, "stunned") == 0)
		*(GThread **)opaque = g_thread_new("status", status_served, NULL);
}

/*
 * The switch replaces the served directory while a status request may be
 * reading it: the request must see the source or the target, never freed
 * memory.  Asked during the stun, it waits for the switch to finish.
 */
START_TEST(test_status_during_the_switch)
{
	GThread *asker = NULL;
	g_autofree char *error = NULL, *served = NULL, *real_dst = realpath(dst, NULL);
	MfsMigOptions opts = {
	    .target = dst, .hook = ask_status_when_stunned, .hook_opaque = &asker};

	ck_assert_msg(mfs_migration_start(fs, &opts, &error) == 0, "%s", error);
	ck_assert_int_eq(mfs_migration_wait(fs, NULL, MFS_MIG_SWITCHED, 30000), MFS_MIG_SWITCHED);
	ck_assert_ptr_nonnull(asker);
	served = g_thread_join(asker);
	ck_assert_str_eq(served, real_dst);
}
END_TEST

START_TEST(test_permission_by_peer_uid)
{
	g_autoptr(JsonParser) parser = NULL;
	JsonObject *r;

	if (geteuid() != 0)
		return; /* as a user, the only other uid that may is root's */
	r = ask("{\"command\":\"status\"}", 65534, &parser);
	ck_assert(!json_object_get_boolean_member(r, "ok"));
	ck_assert_ptr_nonnull(
	    strstr(json_object_get_string_member(r, "error"), "permission denied: uid 65534"));
	assert_ok("{\"command\":\"status\"}");
}
END_TEST

START_TEST(test_socket_path)
{
	g_autofree char *p1 = control_socket_path("/var/lib/images");
	g_autofree char *p2 = control_socket_path("/var/lib/images2");
	g_autofree char *longname = g_strnfill(300, 'x');
	g_autofree char *lp = NULL;

	ck_assert_str_ne(p1, p2);
	ck_assert_ptr_null(strchr(strrchr(p1, '/') + 1, ' '));
	lp = control_socket_path(longname);
	ck_assert_uint_lt(strlen(lp), sizeof(((struct sockaddr_un *)0)->sun_path));
}
END_TEST

static int connect_to(const char *path)
{
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	g_strlcpy(addr.sun_path, path, sizeof(addr.sun_path));
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
	return fd;
}

START_TEST(test_server_survives_silent_and_greedy_clients)
{
	g_autofree char *sock = g_build_filename(top, "ctl.sock", NULL);
	g_autofree char *reply = NULL, *error = NULL;
	g_autofree char *huge = g_strnfill(CONTROL_MAX_REQUEST + 10, 'a');
	ControlServer *srv;
	struct stat st;
	gint64 t0;
	char buf[256];
	int silent, half, greedy;
	ssize_t n;

	ck_assert_int_eq(control_server_start(fs, sock, "/mnt", &srv, &error), 0);
	control_server_run(srv);
	ck_assert_int_eq(stat(sock, &st), 0);
	ck_assert_uint_eq(st.st_mode & 0777, 0600);
	/* A second daemon on the same socket is refused. */
	{
		ControlServer *other;
		g_autofree char *e2 = NULL;

		ck_assert_int_eq(control_server_start(fs, sock, "/mnt", &other, &e2), -EADDRINUSE);
	}
	silent = connect_to(sock);
	half = connect_to(sock);
	ck_assert_int_eq(send(half, "{\"command\":", 11, 0), 11);
	t0 = g_get_monotonic_time();
	ck_assert_int_eq(control_request(sock, "{\"command\":\"status\"}", 5000, &reply, &error),
	                 0);
	ck_assert_int_lt(g_get_monotonic_time() - t0, G_USEC_PER_SEC);
	ck_assert_ptr_nonnull(strstr(reply, "\"ok\":true"));
	/* Two requests in one packet get two replies, in order. */
	greedy = connect_to(sock);
	{
		static const char two[] = "{\"command\":\"nope\"}\n{\"command\":\"status\"}\n";

		ck_assert_int_eq(send(greedy, two, strlen(two), 0), (ssize_t)strlen(two));
	}
	n = recv(greedy, buf, sizeof(buf) - 1, MSG_WAITALL);
	buf[n > 0 ? n : 0] = '\0';
	ck_assert_ptr_nonnull(strstr(buf, "unknown command"));
	close(greedy);
	/* An endless line gets an error and the door. */
	greedy = connect_to(sock);
	send(greedy, huge, strlen(huge), MSG_NOSIGNAL);
	{
		GString *all = g_string_new(NULL);

		while ((n = recv(greedy, buf, sizeof(buf), 0)) > 0)
			g_string_append_len(all, buf, n);
		ck_assert_ptr_nonnull(strstr(all->str, "request too long"));
		g_string_free(all, TRUE);
	}
	close(greedy);
	close(half);
	close(silent);
	g_free(reply);
	reply = NULL;
	ck_assert_int_eq(control_request(sock, "{\"command\":\"status\"}", 5000, &reply, &error),
	                 0);
	control_server_stop(srv);
	ck_assert_int_ne(stat(sock, &st), 0); /* removed */
	g_free(error);
	error = NULL;
	ck_assert_int_lt(control_request(sock, "{}", 5000, &reply, &error), 0);
	ck_assert_ptr_nonnull(strstr(error, "is a mirrorfs mounted there?"));
}
END_TEST

/* "events": where it stands, the seq to follow from; each event one escaped line. */
START_TEST(test_events)
{
	g_autoptr(JsonParser) parser = NULL, p2 = NULL;
	g_autofree char *reply = NULL, *line = NULL;
	MfsMigEvent ev = {.seq = 7,
	                  .time_us = 1500000,
	                  .kind = MFS_MIG_EVENT_FILE,
	                  .state = "mirrored",
	                  .stun_ms = -1,
	                  .path = "dir/disk\xff.img"};
	JsonObject *o;
	int64_t from = -2;

	reply = control_handle_request_follow(fs, "/mnt", "{\"command\":\"events\"}", 0, &from);
	ck_assert_int_ge(from, 0);
	parser = json_parser_new();
	ck_assert(json_parser_load_from_data(parser, reply, -1, NULL));
	o = json_node_get_object(json_parser_get_root(parser));
	ck_assert(json_object_get_boolean_member(o, "ok"));
	ck_assert_str_eq(json_object_get_string_member(o, "event"), "state");
	ck_assert_str_eq(json_object_get_string_member(o, "state"), "idle");
	ck_assert_int_eq(json_object_get_int_member(o, "seq"), from);
	/* Any other request follows nothing. */
	g_free(control_handle_request_follow(fs, "/mnt", "{\"command\":\"status\"}", 0, &from));
	ck_assert_int_eq(from, -1);

	line = control_event_line(&ev);
	ck_assert_ptr_null(strchr(line, '\n'));
	p2 = json_parser_new();
	ck_assert(json_parser_load_from_data(p2, line, -1, NULL));
	o = json_node_get_object(json_parser_get_root(p2));
	ck_assert_str_eq(json_object_get_string_member(o, "event"), "file");
	ck_assert_int_eq(json_object_get_int_member(o, "seq"), 7);
	ck_assert_str_eq(json_object_get_string_member(o, "path"), "dir/disk\\xff.img");
	ck_assert(!json_object_has_member(o, "stun_ms"));
	ck_assert(!json_object_has_member(o, "error"));
}
END_TEST

static Suite *control_suite(void)
{
	Suite *s = suite_create("control");
	TCase *tc = tcase_create("protocol");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_malformed_requests);
	tcase_add_test(tc, test_refused_in_the_wrong_state);
	tcase_add_test(tc, test_status_fields);
	tcase_add_test(tc, test_events);
	tcase_add_test(tc, test_status_during_the_switch);
	tcase_add_test(tc, test_permission_by_peer_uid);
	tcase_add_test(tc, test_socket_path);
	tcase_add_test(tc, test_server_survives_silent_and_greedy_clients);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(control_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
