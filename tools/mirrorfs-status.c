/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * mirrorfs-status: show, watch or wait for the migration of a mirrorfs
 * mount.  A thin client of the control socket: the daemon computes the
 * status, this renders it.
 */
#define _GNU_SOURCE
#include "client.h"
#include "control.h"
#include "mig-names.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PROG           "mirrorfs-status"

enum { EXIT_OK = 0, EXIT_FAILED = 1, EXIT_USAGE = 2 };

static gboolean opt_json, opt_follow;
static double opt_watch = -1;
static char *opt_wait;
static char *opt_socket;
static char *opt_job;
static double opt_timeout = -1;

static gboolean parse_watch(const char *name, const char *value, gpointer data, GError **error)
{
	char *end;

	opt_watch = 1.0;
	if (!value)
		return TRUE;
	opt_watch = g_ascii_strtod(value, &end);
	if (*end || !(opt_watch >= 0.05 && opt_watch <= 3600)) {
		g_set_error(error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
		            "--watch %s: an interval from 0.05 to 3600 seconds", value);
		return FALSE;
	}
	return TRUE;
}

static const GOptionEntry entries[] = {
    {"json", 'j', 0, G_OPTION_ARG_NONE, &opt_json, "Print the status as one JSON object", NULL},
    {"watch", 'w', G_OPTION_FLAG_OPTIONAL_ARG, G_OPTION_ARG_CALLBACK, parse_watch,
     "Redraw the progress every SECONDS (default 1) until the migration ends", "SECONDS"},
    {"wait", 0, 0, G_OPTION_ARG_STRING, &opt_wait,
     "Wait until the migration reaches STATE; fail at once if it fails or is cancelled", "STATE"},
    {"follow", 'f', 0, G_OPTION_ARG_NONE, &opt_follow,
     "Print every event (state change, file done, switch) as one JSON object a line, until "
     "the migration ends",
     NULL},
    {"timeout", 't', 0, G_OPTION_ARG_DOUBLE, &opt_timeout, "Give up waiting after SECONDS",
     "SECONDS"},
    {"job", 0, 0, G_OPTION_ARG_FILENAME, &opt_job,
     "The migration to show, wait for or follow, by its number or its target (default: "
     "the one running, or the last)",
     "N|TARGET"},
    {"socket", 's', 0, G_OPTION_ARG_FILENAME, &opt_socket,
     "The control socket (default: found from MOUNTPOINT)", "PATH"},
    {NULL},
};

static const char *str(JsonObject *o, const char *name)
{
	JsonNode *n = json_object_get_member(o, name);

	return n && JSON_NODE_HOLDS_VALUE(n) ? json_node_get_string(n) : NULL;
}

static double num(JsonObject *o, const char *name)
{
	JsonNode *n = json_object_get_member(o, name);

	return n && JSON_NODE_HOLDS_VALUE(n) ? json_node_get_double(n) : NAN;
}

/* The state a status names (lib/mig-names.c); false for a name it does not know. */
static bool parse_state(const char *name, MfsMigState *state)
{
	return name && mfs_mig_state_from_name(name, state, NULL) == 0;
}

static double percent(JsonObject *st)
{
	double total = num(st, "bytes_total"), copied = num(st, "bytes_copied");
	MfsMigState state;

	if (parse_state(str(st, "state"), &state) && mfs_mig_state_mirrored(state))
		return 100.0;
	if (!(total > 0))
		return 0.0;
	return MIN(100.0, 100.0 * copied / total);
}

/* Nothing more will happen by itself: not begun (idle), or ended. */
static bool state_is_final(const char *name)
{
	MfsMigState state;

	return parse_state(name, &state) && !mfs_mig_state_running(state);
}

/* Ended without a switch: failed, cancelled, or stopped with its daemon. */
static bool state_is_failure(const char *name)
{
	MfsMigState state;

	return parse_state(name, &state) && mfs_mig_state_terminal(state) &&
	       state != MFS_MIG_SWITCHED;
}

/* A per-VM job's entries, and the entries earlier ones moved (names as the JSON escapes them). */
static void print_placements(JsonObject *st)
{
	JsonNode *only = json_object_get_member(st, "only");
	JsonNode *placed = json_object_get_member(st, "placements");

	if (only && JSON_NODE_HOLDS_ARRAY(only)) {
		JsonArray *a = json_node_get_array(only);

		printf("  only    ");
		for (guint i = 0; i < json_array_get_length(a); i++)
			printf(" %s", json_array_get_string_element(a, i));
		printf("\n");
	}
	if (placed && JSON_NODE_HOLDS_ARRAY(placed)) {
		JsonArray *a = json_node_get_array(placed);

		for (guint i = 0; i < json_array_get_length(a); i++) {
			JsonObject *p = json_array_get_object_element(a, i);

			printf("  placed   %s in %s\n", json_object_get_string_member(p, "name"),
			       json_object_get_string_member(p, "dir"));
		}
	}
}

/* With several jobs kept: one line each, and which one the rest of the summary is about. */
static void print_jobs(JsonObject *st)
{
	JsonArray *jobs =
	    json_object_has_member(st, "jobs") ? json_object_get_array_member(st, "jobs") : NULL;

	if (!jobs || json_array_get_length(jobs) < 2)
		return;
	for (guint i = 0; i < json_array_get_length(jobs); i++) {
		JsonObject *j = json_array_get_object_element(jobs, i);
		g_autofree char *copied = client_format_bytes(num(j, "bytes_copied"));
		g_autofree char *total = client_format_bytes(num(j, "bytes_total"));

		printf("  job %-4.0f %-12s %9s of %-9s -> %s%s\n", num(j, "job"), str(j, "state"),
		       copied, total, str(j, "target"),
		       num(j, "job") == num(st, "job") ? "   (shown below)" : "");
	}
}

static void print_summary(JsonObject *st)
{
	g_autofree char *copied = client_format_bytes(num(st, "bytes_copied"));
	g_autofree char *total = client_format_bytes(num(st, "bytes_total"));
	g_autofree char *rate = client_format_bytes(num(st, "rate_bps"));
	const char *state = str(st, "state");
	JsonArray *files = json_object_get_array_member(st, "files");
	double eta = num(st, "eta_s");
	MfsMigState parsed;

	printf("mirrorfs on %s: %s\n", str(st, "mountpoint"), state);
	print_jobs(st);
	printf("  source   %s\n", str(st, "source"));
	if (str(st, "target"))
		printf("  target   %s\n", str(st, "target"));
	printf("  serving  %s\n", str(st, "served"));
	print_placements(st);
	if (str(st, "transport"))
		printf("  through  %s\n", str(st, "transport"));
	if (parse_state(state, &parsed) && parsed == MFS_MIG_IDLE) {
		printf("  no migration has been started\n");
		return;
	}
	printf("  copied   %s of %s (%.1f%%)", copied, total, percent(st));
	if (num(st, "rate_bps") > 0)
		printf(", %s/s", rate);
	if (!isnan(eta))
		printf(", ETA %.0f s", eta);
	if (num(st, "speed_bps") > 0) {
		g_autofree char *limit = client_format_bytes(num(st, "speed_bps"));

		printf(" (limit %s/s)", limit);
	}
	if (num(st, "bytes_cloned") > 0) {
		g_autofree char *cloned = client_format_bytes(num(st, "bytes_cloned"));

		printf("\n  cloned   %s of it: blocks shared with the source, not copied", cloned);
	}
	if (num(st, "bytes_resumed") > 0) {
		g_autofree char *resumed = client_format_bytes(num(st, "bytes_resumed"));

		printf("\n  resumed  %s not copied again: below the checkpoints of an earlier run",
		       resumed);
	}
	if (json_object_has_member(st, "verify") && !json_object_get_null_member(st, "verify")) {
		JsonObject *v = json_object_get_object_member(st, "verify");
		g_autofree char *compared = client_format_bytes(num(v, "bytes_compared"));

		printf("\n  verify   %s, %s compared", str(v, "state"), compared);
		if (num(v, "differences") > 0)
			printf("; %.0f difference(s), the first %s", num(v, "differences"),
			       str(v, "first"));
	}
	printf("\n  writes   %.0f mirrored, %.0f waited on the copier (longest %.1f ms)\n",
	       num(st, "mirrored_writes"), num(st, "waited_writes"), num(st, "max_wait_ms"));
	if (num(st, "guest_share") > 0)
		printf("  guest    %.0f%% of the time left to it; the copier rested %.1f s\n",
		       num(st, "guest_share"), num(st, "rested_ms") / 1000);
	else
		printf("  guest    none of the time set aside: the copier goes flat out\n");
	if (!isnan(num(st, "stun_ms")))
		printf("  stun     %.3f ms\n", num(st, "stun_ms"));
	if (str(st, "error"))
		printf("  error    %s\n", str(st, "error"));
	if (files && json_array_get_length(files)) {
		printf("\n  %-40s %10s %8s  %s\n", "FILE", "SIZE", "COPIED", "STATE");
		for (guint i = 0; i < json_array_get_length(files); i++) {
			JsonObject *f = json_array_get_object_element(files, i);
			g_autofree char *size = client_format_bytes(num(f, "size"));
			double sz = num(f, "size"), cp = num(f, "cp_offset");
			const char *fstate = str(f, "state");

			printf("  %-40s %10s %7.1f%%  %s\n", str(f, "path"), size,
			       !strcmp(fstate, "mirrored") || sz <= 0 ? 100.0 : 100.0 * cp / sz,
			       fstate);
		}
	}
}

static void print_progress_line(JsonObject *st, bool tty)
{
	g_autofree char *copied = client_format_bytes(num(st, "bytes_copied"));
	g_autofree char *total = client_format_bytes(num(st, "bytes_total"));
	g_autofree char *rate = client_format_bytes(num(st, "rate_bps"));
	double pct = percent(st), eta = num(st, "eta_s");
	char bar[31], eta_text[32] = "-";
	int filled = (int)(pct * 30 / 100);

	for (int i = 0; i < 30; i++)
		bar[i] = i < filled ? '#' : '.';
	bar[30] = '\0';
	if (!isnan(eta))
		snprintf(eta_text, sizeof(eta_text), "%.0fs", eta);
	printf("%s[%s] %5.1f%%  %s / %s  %s/s  ETA %s  %s%s", tty ? "\r" : "", bar, pct, copied,
	       total, rate, eta_text, str(st, "state"), tty ? "\033[K" : "\n");
	fflush(stdout);
}

/* "idle, copying, ...": every name a status may report. */
static char *state_list(void)
{
	GString *s = g_string_new(NULL);
	const char *name;

	for (unsigned i = 0; (name = mfs_mig_status_name_at(i)); i++)
		g_string_append_printf(s, "%s%s", i ? ", " : "", name);
	return g_string_free(s, FALSE);
}

/* A line of the event stream: its object, or NULL (said why) if it is none. */
static JsonObject *parse_event(const char *line, JsonParser **parser)
{
	JsonNode *root;

	*parser = json_parser_new();
	if (!json_parser_load_from_data(*parser, line, -1, NULL) ||
	    !(root = json_parser_get_root(*parser)) || !JSON_NODE_HOLDS_OBJECT(root)) {
		fprintf(stderr, "%s: the daemon sent an event that is not JSON\n", PROG);
		return NULL;
	}
	return json_node_get_object(root);
}

/*
 * --follow: the daemon's events, one JSON object a line, as they come;
 * the first is where the migration stands.  Ends when a migration ends
 * while followed (one that ended before goes on to the next): 0 when it
 * switched, 1 when it failed, was cancelled or stopped.
 */
static int follow(const char *socket_path, gint64 deadline)
{
	g_autofree char *error = NULL;
	ControlFollow f;
	char *line = NULL;
	gint64 job = 0; /* --job: its number; else any job's events */
	g_autofree char *events_request = NULL;
	int ret;

	if (opt_job) {
		g_autoptr(JsonParser) parser = NULL;
		g_autofree char *request = client_job_request("status", opt_job);
		JsonObject *st =
		    client_call(PROG, socket_path, request, CONTROL_CLIENT_TIMEOUT_MS, &parser);

		if (!st)
			return EXIT_FAILED;
		job = json_object_get_int_member_with_default(st, "job", 0);
	}
	events_request = client_job_request("events", opt_job);
	if (control_follow_open(socket_path, events_request, CONTROL_CLIENT_TIMEOUT_MS, &f, &line,
	                        &error) < 0) {
		fprintf(stderr, "%s: %s\n", PROG, error);
		return EXIT_FAILED;
	}
	for (bool first = true;; first = false) {
		g_autoptr(JsonParser) parser = NULL;
		g_autofree char *text = line;
		JsonObject *ev = parse_event(text, &parser);
		const char *state;

		if (!ev)
			break;
		if (first && !json_object_get_boolean_member_with_default(ev, "ok", FALSE)) {
			fprintf(stderr, "%s: %s\n", PROG,
			        str(ev, "error") ? str(ev, "error") : "refused");
			break;
		}
		if (!first && job && json_object_get_int_member_with_default(ev, "job", 0) != job) {
			/* Another job's. */
		} else if (first) {
			g_autoptr(JsonGenerator) gen = json_generator_new();
			g_autofree char *out = NULL;

			json_object_remove_member(ev, "ok");
			json_generator_set_root(gen, json_parser_get_root(parser));
			out = json_generator_to_data(gen, NULL);
			printf("%s\n", out);
		} else {
			printf("%s\n", text);
		}
		fflush(stdout);
		state = str(ev, "state");
		/*
		 * Ended while followed; one that had ended before is where it
		 * starts, but for the job named, which has no more to say.
		 */
		if ((!first || job) &&
		    (!job || json_object_get_int_member_with_default(ev, "job", 0) == job) &&
		    !g_strcmp0(str(ev, "event"), "state") && state && state_is_final(state) &&
		    strcmp(state, "idle") != 0) {
			control_follow_close(&f);
			return state_is_failure(state) ? EXIT_FAILED : EXIT_OK;
		}
		line = NULL;
		ret = control_follow_next(&f, deadline >= 0 ? client_time_left_ms(deadline, INT_MAX) : -1,
		                          &line);
		if (ret == 0) {
			fprintf(stderr, "%s: timed out\n", PROG);
			break;
		}
		if (ret < 0) {
			fprintf(stderr, "%s: the daemon closed the event stream: %s\n", PROG,
			        g_strerror(-ret));
			break;
		}
	}
	control_follow_close(&f);
	return EXIT_FAILED;
}

int main(int argc, char *argv[])
{
	g_autoptr(GOptionContext) ctx = g_option_context_new("MOUNTPOINT");
	g_autoptr(GError) gerr = NULL;
	g_autofree char *socket_path = NULL;
	g_autofree char *status_request = NULL;
	gint64 deadline;
	bool tty = isatty(STDOUT_FILENO);

	/*
	 * GOption would take the word after a bare --watch as its value, even
	 * the mount point: give it its default unless that word is a number.
	 */
	for (int i = 1; i < argc; i++) {
		char *end;

		if ((!strcmp(argv[i], "--watch") || !strcmp(argv[i], "-w")) &&
		    (i + 1 >= argc || (g_ascii_strtod(argv[i + 1], &end), *end != '\0') ||
		     end == argv[i + 1]))
			argv[i] = (char *)"--watch=1";
	}
	g_option_context_set_summary(ctx, "Show the migration of a mirrorfs mount.");
	g_option_context_add_main_entries(ctx, entries, NULL);
	if (!g_option_context_parse(ctx, &argc, &argv, &gerr)) {
		fprintf(stderr, "%s: %s\n", PROG, gerr->message);
		return EXIT_USAGE;
	}
	if (argc != 2) {
		fprintf(stderr,
		        "%s: %s; usage: %s [--json] [--watch [SECONDS]] [--wait STATE] "
		        "MOUNTPOINT\n",
		        PROG, argc < 2 ? "no MOUNTPOINT given" : "one MOUNTPOINT only", PROG);
		return EXIT_USAGE;
	}
	if (opt_job && !client_job_valid(opt_job)) {
		fprintf(stderr,
		        "%s: --job: '%s' is neither a job's number (1, 2, ...) nor its target "
		        "directory\n",
		        PROG, opt_job);
		return EXIT_USAGE;
	}
	if (opt_wait && mfs_mig_state_from_name(opt_wait, NULL, NULL) < 0) {
		g_autofree char *states = state_list();

		fprintf(stderr, "%s: --wait %s: not a state (%s)\n", PROG, opt_wait, states);
		return EXIT_USAGE;
	}
	if (opt_wait && opt_watch >= 0) {
		fprintf(stderr, "%s: --wait and --watch do not go together\n", PROG);
		return EXIT_USAGE;
	}
	if (opt_follow && (opt_wait || opt_watch >= 0 || opt_json)) {
		fprintf(stderr, "%s: --follow goes with none of --wait, --watch and --json\n",
		        PROG);
		return EXIT_USAGE;
	}
	socket_path = client_socket_path(PROG, argv[1], opt_socket);
	if (!socket_path)
		return EXIT_FAILED;
	status_request = client_job_request("status", opt_job);
	deadline = opt_timeout >= 0 ? g_get_monotonic_time() + (gint64)(opt_timeout * 1e6) : -1;
	if (opt_follow)
		return follow(socket_path, deadline);
	if (opt_wait)
		return client_wait_state(PROG, socket_path, opt_job, opt_wait, deadline) == 0
		           ? EXIT_OK
		           : EXIT_FAILED;

	for (;;) {
		g_autoptr(JsonParser) parser = NULL;
		/* Never wait on the daemon past --timeout. */
		int wait_ms = CONTROL_CLIENT_TIMEOUT_MS;
		JsonObject *st;

		if (deadline >= 0)
			wait_ms = (int)CLAMP((deadline - g_get_monotonic_time()) / 1000, 100,
			                     CONTROL_CLIENT_TIMEOUT_MS);
		st = client_call(PROG, socket_path, status_request, wait_ms, &parser);
		const char *state;

		if (!st)
			return EXIT_FAILED;
		state = str(st, "state");
		if (opt_watch < 0) {
			if (opt_json) {
				g_autoptr(JsonGenerator) gen = json_generator_new();
				g_autofree char *text = NULL;

				json_object_remove_member(st, "ok");
				json_generator_set_root(gen, json_parser_get_root(parser));
				json_generator_set_pretty(gen, TRUE);
				text = json_generator_to_data(gen, NULL);
				printf("%s\n", text);
			} else {
				print_summary(st);
			}
			return EXIT_OK;
		} else {
			if (!state_is_final(state)) {
				print_progress_line(st, tty);
			} else {
				if (tty)
					printf("\r\033[K");
				print_summary(st);
				return state_is_failure(state) ? EXIT_FAILED : EXIT_OK;
			}
		}
		if (deadline >= 0 && g_get_monotonic_time() > deadline) {
			if (tty && opt_watch >= 0)
				printf("\n");
			fprintf(stderr, "%s: timed out; the migration is %s\n", PROG, state);
			return EXIT_FAILED;
		}
		g_usleep((gulong)((opt_watch >= 0 ? opt_watch : 0.2) * G_USEC_PER_SEC));
	}
}
