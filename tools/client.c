/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The control-socket client shared by mirrorfs-status and mirrorfsctl. */
#define _GNU_SOURCE
#include "client.h"
#include "control.h"
#include "mfs.h"
#include "mig-names.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

char *client_socket_path(const char *prog, const char *mountpoint, const char *explicit_path)
{
	g_autofree char *real = NULL, *system = NULL;

	if (explicit_path)
		return g_strdup(explicit_path);
	real = realpath(mountpoint, NULL);
	if (!real) {
		fprintf(stderr, "%s: '%s': %s\n", prog, mountpoint, g_strerror(errno));
		return NULL;
	}
	/* A user asking about root's mount finds its socket where root's daemon put it. */
	if (!g_getenv("MIRRORFS_RUNTIME_DIR") && geteuid() != 0) {
		system = control_socket_path_in(CONTROL_SYSTEM_DIR, real);
		if (g_file_test(system, G_FILE_TEST_EXISTS))
			return g_steal_pointer(&system);
	}
	return control_socket_path(real);
}

JsonObject *client_call(const char *prog, const char *socket_path, const char *request,
                        int timeout_ms, JsonParser **parser)
{
	g_autofree char *reply = NULL, *error = NULL;
	g_autoptr(GError) gerr = NULL;
	JsonNode *root;
	JsonObject *obj;

	if (control_request(socket_path, request, timeout_ms, &reply, &error) < 0) {
		fprintf(stderr, "%s: %s\n", prog, error);
		return NULL;
	}
	*parser = json_parser_new();
	if (!json_parser_load_from_data(*parser, reply, -1, &gerr) ||
	    !(root = json_parser_get_root(*parser)) || !JSON_NODE_HOLDS_OBJECT(root)) {
		fprintf(stderr, "%s: the daemon sent a reply that is not JSON\n", prog);
		return NULL;
	}
	obj = json_node_get_object(root);
	if (!json_object_get_boolean_member_with_default(obj, "ok", FALSE)) {
		fprintf(stderr, "%s: %s\n", prog,
		        json_object_get_string_member_with_default(obj, "error", "request failed"));
		return NULL;
	}
	return obj;
}

/* How far along a migration that goes well (paused is copying); -1 off that way. */
static int state_rank(const char *name)
{
	MfsMigState state;

	return name && mfs_mig_state_from_name(name, &state, NULL) == 0 ? mfs_mig_state_step(state)
	                                                                : -1;
}

/* Milliseconds left until @deadline (-1: none), at most @cap. */
int client_time_left_ms(gint64 deadline, int cap)
{
	if (deadline < 0)
		return cap;
	return (int)CLAMP((deadline - g_get_monotonic_time()) / 1000, 0, cap);
}

/*
 * The events, opened before the first look at the status, wake
 * the next look; a daemon that has none (older) leaves *@f closed, and
 * the status is asked for five times a second instead.
 */
static void wait_events_open(const char *socket_path, ControlFollow *f)
{
	g_autofree char *reply = NULL, *error = NULL;

	f->fd = -1;
	f->in = NULL;
	if (control_follow_open(socket_path, CLIENT_EVENTS_REQUEST, CONTROL_CLIENT_TIMEOUT_MS, f,
	                        &reply, &error) < 0)
		return;
	if (!strstr(reply, "\"ok\":true"))
		control_follow_close(f);
}

/* Until the next event, or a while (a look at the status then costs little). */
static void wait_next_event(ControlFollow *f, gint64 deadline)
{
	g_autofree char *line = NULL;

	if (f->fd < 0) {
		g_usleep(200 * 1000);
		return;
	}
	if (control_follow_next(f, client_time_left_ms(deadline, 5000), &line) < 0) {
		control_follow_close(f);
		g_usleep(200 * 1000);
	}
}

/* Nothing more will happen by itself: not begun (idle), or ended. */
static bool state_is_final(const char *name)
{
	MfsMigState state;

	return name && mfs_mig_state_from_name(name, &state, NULL) == 0 &&
	       !mfs_mig_state_running(state);
}

/* All digits: a job's number; anything else names its target directory. */
static bool job_is_number(const char *job)
{
	return *job && strspn(job, "0123456789") == strlen(job);
}

bool client_job_valid(const char *job)
{
	if (job_is_number(job))
		return g_ascii_strtoull(job, NULL, 10) > 0 && strlen(job) < 11;
	return *job && job[0] != '-';
}

char *client_job_request(const char *command, const char *job)
{
	g_autofree char *escaped = NULL;

	if (!job)
		return g_strdup_printf("{\"version\":1,\"command\":\"%s\"}", command);
	/* A number as one; a target as an absolute path, its bytes escaped (mirrorfs-status(1)). */
	if (job_is_number(job))
		return g_strdup_printf(
		    "{\"version\":1,\"command\":\"%s\",\"job\":%" G_GUINT64_FORMAT "}", command,
		    g_ascii_strtoull(job, NULL, 10));
	{
		g_autofree char *path = g_canonicalize_filename(job, NULL);
		g_autoptr(JsonBuilder) b = json_builder_new();
		g_autoptr(JsonGenerator) gen = json_generator_new();
		g_autoptr(JsonNode) root = NULL;

		escaped = mfs_escape_name(path);
		json_builder_begin_object(b);
		json_builder_set_member_name(b, "version");
		json_builder_add_int_value(b, 1);
		json_builder_set_member_name(b, "command");
		json_builder_add_string_value(b, command);
		json_builder_set_member_name(b, "job");
		json_builder_add_string_value(b, escaped);
		json_builder_end_object(b);
		root = json_builder_get_root(b);
		json_generator_set_root(gen, root);
		return json_generator_to_data(gen, NULL);
	}
}

int client_wait_state(const char *prog, const char *socket_path, const char *job, const char *want,
                      gint64 deadline)
{
	g_autofree char *request = client_job_request("status", job);
	g_autofree char *pinned = NULL;
	ControlFollow events;
	int ret = -1;

	wait_events_open(socket_path, &events);
	for (;;) {
		g_autoptr(JsonParser) parser = NULL;
		/* Never wait on the daemon past the deadline. */
		int wait_ms = deadline >= 0 ? CLAMP(client_time_left_ms(deadline, INT_MAX), 100,
		                                    CONTROL_CLIENT_TIMEOUT_MS)
		                            : CONTROL_CLIENT_TIMEOUT_MS;
		JsonObject *st = client_call(prog, socket_path, request, wait_ms, &parser);
		const char *state, *error;

		if (!st)
			break;
		/*
		 * The job first found is the one waited for: once it ends, "the
		 * one there is" may be another, switched long ago.
		 */
		if (!job && json_object_get_int_member_with_default(st, "job", 0) > 0) {
			pinned = g_strdup_printf("%" G_GINT64_FORMAT,
			                         json_object_get_int_member(st, "job"));
			job = pinned;
			g_free(request);
			request = client_job_request("status", job);
		}
		state = json_object_get_string_member_with_default(st, "state", "?");
		if (!strcmp(state, want) ||
		    (state_rank(want) >= 0 && state_rank(state) > state_rank(want))) {
			ret = 0;
			break;
		}
		/* Ended, or idle, without the state waited for: it will not come. */
		if (state_is_final(state)) {
			error = json_object_has_member(st, "error") &&
			                JSON_NODE_HOLDS_VALUE(json_object_get_member(st, "error"))
			            ? json_object_get_string_member(st, "error")
			            : NULL;
			fprintf(stderr, "%s: the migration is %s%s%s\n", prog, state,
			        error ? ": " : "", error ? error : "");
			break;
		}
		if (deadline >= 0 && g_get_monotonic_time() > deadline) {
			fprintf(stderr, "%s: timed out; the migration is %s\n", prog, state);
			break;
		}
		wait_next_event(&events, deadline);
	}
	control_follow_close(&events);
	return ret;
}

char *client_format_bytes(double bytes)
{
	static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
	unsigned u = 0;

	while (bytes >= 1024 && u + 1 < G_N_ELEMENTS(units)) {
		bytes /= 1024;
		u++;
	}
	return u ? g_strdup_printf("%.1f %s", bytes, units[u])
	         : g_strdup_printf("%.0f %s", bytes, units[u]);
}
