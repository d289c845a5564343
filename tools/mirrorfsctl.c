/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * mirrorfsctl: start, throttle, pause, resume, switch or cancel the
 * migration of a mirrorfs mount.  A thin client of the control socket;
 * the daemon decides what makes sense in its current state.
 */
#define _GNU_SOURCE
#include "adopt.h"
#include "client.h"
#include "control.h"
#include "mfs.h"
#include "migration.h"
#include "mig-options.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PROG "mirrorfsctl"

enum { EXIT_OK = 0, EXIT_FAILED = 1, EXIT_USAGE = 2 };

static char *opt_speed, *opt_chunk, *opt_switch, *opt_guest_share, *opt_checkpoint,
    *opt_on_target_error, *opt_socket, *opt_job;
static char **opt_qmp, **opt_release_qmp, **opt_only;
static gboolean opt_delete_source, opt_overwrite, opt_no_clone, opt_verify, opt_dry_run;

static const GOptionEntry entries[] = {
    {"speed", 0, 0, G_OPTION_ARG_STRING, &opt_speed,
     "start: copier limit in bytes/s (K/M/G suffixes; 0 = unlimited)", "RATE"},
    {"chunk", 0, 0, G_OPTION_ARG_STRING, &opt_chunk,
     "start: copier chunk, a power of two from 4K to 64M", "SIZE"},
    {"guest-share", 0, 0, G_OPTION_ARG_STRING, &opt_guest_share,
     "start: share of the time the copier leaves to a busy guest (default 50%)", "PCT"},
    {"switch", 0, 0, G_OPTION_ARG_STRING, &opt_switch,
     "start: switch when all is mirrored (auto) or when told (manual)", "auto|manual"},
    {"checkpoint", 0, 0, G_OPTION_ARG_STRING, &opt_checkpoint,
     "start: data copied between two checkpoints, the most a restart copies again (default "
     "256M)",
     "SIZE"},
    {"on-target-error", 0, 0, G_OPTION_ARG_STRING, &opt_on_target_error,
     "start: when the target fails, end the migration (abort, default) or pause it until "
     "resume (stop)",
     "abort|stop"},
    {"only", 0, 0, G_OPTION_ARG_FILENAME_ARRAY, &opt_only,
     "start: move only this entry of the mount's top directory (a VM's image or its "
     "directory); repeat for several.  The rest stays where it is",
     "NAME"},
    {"delete-source", 0, 0, G_OPTION_ARG_NONE, &opt_delete_source,
     "start: delete the source files after the switch", NULL},
    {"overwrite", 0, 0, G_OPTION_ARG_NONE, &opt_overwrite,
     "start: replace files of the same names in TARGET", NULL},
    {"verify", 0, 0, G_OPTION_ARG_NONE, &opt_verify,
     "start: compare both sides before the switch; a difference refuses it", NULL},
    {"no-clone", 0, 0, G_OPTION_ARG_NONE, &opt_no_clone,
     "start: copy every byte, even where TARGET's file system could share the source's "
     "blocks",
     NULL},
    {"release-qmp", 0, 0, G_OPTION_ARG_FILENAME_ARRAY, &opt_release_qmp,
     "start: wait for the switch, then release the QEMU at PATH (as release --qmp PATH)", "PATH"},
    {"qmp", 0, 0, G_OPTION_ARG_FILENAME_ARRAY, &opt_qmp,
     "adopt, release: a QEMU's QMP socket (-qmp unix:PATH,server); repeat for several", "PATH"},
    {"dry-run", 0, 0, G_OPTION_ARG_NONE, &opt_dry_run,
     "adopt, release: say which disks would move, change nothing", NULL},
    {"job", 'j', 0, G_OPTION_ARG_FILENAME, &opt_job,
     "pause, resume, speed, guest-share, switch, cancel: the migration to act on, by its "
     "number or its target (needed when several run; mirrorfs-status lists them)",
     "N|TARGET"},
    {"socket", 's', 0, G_OPTION_ARG_FILENAME, &opt_socket,
     "The control socket (default: found from MOUNTPOINT)", "PATH"},
    {NULL},
};

static const char description[] =
    "Commands:\n"
    "  start TARGET   migrate the mount's files to the directory TARGET\n"
    "  pause          stop the copier (mirroring goes on)\n"
    "  resume         start it again\n"
    "  speed RATE     set the copier's limit, e.g. 50M (0 = unlimited)\n"
    "  guest-share PCT  set the share of the time the copier leaves to a\n"
    "                 busy guest, 0 to 90 (0 = copy flat out)\n"
    "  switch         switch a manual-switch migration that is mirrored\n"
    "  cancel         stop, remove what was written to the target, stay on the source\n"
    "  adopt --qmp SOCKET\n"
    "                 reopen a running QEMU's disks in the source directory\n"
    "                 through the mount (before start)\n"
    "  release --qmp SOCKET\n"
    "                 after the switch, reopen them on the target's own files,\n"
    "                 so that the mount can go\n"
    "  start --release-qmp SOCKET TARGET\n"
    "                 start, wait for the switch, then release\n";

static int usage_error(const char *fmt, ...) G_GNUC_PRINTF(1, 2);
static int usage_error(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", PROG);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "; see %s --help\n", PROG);
	return EXIT_USAGE;
}

/*
 * Check a start option's @text by the daemon's own rule (lib/mig-options.c)
 * into @opts, so that a bad one is a usage error, found without a daemon.
 * @flag is how the user gave it ("--chunk"), or NULL for a command's
 * argument.
 */
static int check_option(MfsMigOptions *opts, const char *name, const char *flag, const char *text)
{
	g_autofree char *why = NULL;

	if (mfs_mig_option_parse(opts, name, text, &why) == 0)
		return EXIT_OK;
	if (flag)
		return usage_error("%s: '%s' is %s", flag, text, why);
	return usage_error("'%s' is %s", text, why);
}

int main(int argc, char *argv[])
{
	g_autoptr(GOptionContext) ctx = g_option_context_new("MOUNTPOINT COMMAND [ARG]");
	g_autoptr(JsonBuilder) b = json_builder_new();
	g_autoptr(JsonGenerator) gen = json_generator_new();
	g_autoptr(JsonParser) parser = NULL;
	g_autoptr(JsonNode) root = NULL;
	g_autoptr(GError) gerr = NULL;
	g_autofree char *socket_path = NULL, *request = NULL;
	MfsMigOptions opts;
	const char *cmd;
	JsonObject *reply;
	int nargs;

	g_option_context_set_summary(ctx, "Control the migration of a mirrorfs mount.");
	g_option_context_set_description(ctx, description);
	g_option_context_add_main_entries(ctx, entries, NULL);
	if (!g_option_context_parse(ctx, &argc, &argv, &gerr)) {
		fprintf(stderr, "%s: %s\n", PROG, gerr->message);
		return EXIT_USAGE;
	}
	if (argc < 3)
		return usage_error("%s", argc < 2 ? "no MOUNTPOINT and COMMAND given"
		                                  : "no COMMAND given");
	cmd = argv[2];
	nargs = argc - 3;
	mfs_mig_options_init(&opts);
	json_builder_begin_object(b);
	json_builder_set_member_name(b, "version");
	json_builder_add_int_value(b, 1);
	json_builder_set_member_name(b, "command");
	/* The protocol spells it as the start request's member. */
	json_builder_add_string_value(b, strcmp(cmd, "guest-share") ? cmd : "guest_share");
	if (strcmp(cmd, "start") &&
	    (opt_speed || opt_chunk || opt_guest_share || opt_switch || opt_checkpoint ||
	     opt_on_target_error || opt_delete_source || opt_overwrite || opt_no_clone ||
	     opt_verify || opt_release_qmp || opt_only))
		return usage_error(
		    "--speed, --chunk, --guest-share, --switch, --checkpoint, --on-target-error, "
		    "--only, --delete-source, --overwrite, --no-clone, --verify and --release-qmp "
		    "go with start, not %s",
		    cmd);
	if (!strcmp(cmd, "adopt") || !strcmp(cmd, "release")) {
		if (opt_job)
			return usage_error("--job does not go with %s: it acts on the disks, not a "
			                   "migration",
			                   cmd);
		if (nargs != 0)
			return usage_error("%s takes no argument but --qmp SOCKET", cmd);
		if (!opt_qmp || !opt_qmp[0])
			return usage_error("%s needs --qmp SOCKET, QEMU's QMP socket", cmd);
		socket_path = client_socket_path(PROG, argv[1], opt_socket);
		if (!socket_path)
			return EXIT_FAILED;
		return adopt_run(PROG, socket_path, opt_qmp, !strcmp(cmd, "release"), opt_dry_run);
	}
	if (opt_qmp || opt_dry_run)
		return usage_error("--qmp and --dry-run go with adopt and release, not %s", cmd);
	if (opt_job && !strcmp(cmd, "start"))
		return usage_error("%s",
		                   "--job goes with the commands for a running migration, not "
		                   "start (which makes a new one)");
	if (opt_job) {
		/* As client_job_request() sends it: a number, or a target's absolute path. */
		g_autofree char *job = NULL;
		g_autoptr(JsonParser) p = json_parser_new();

		if (!client_job_valid(opt_job))
			return usage_error(
			    "--job: '%s' is neither a job's number (1, 2, ...) nor its "
			    "target directory",
			    opt_job);
		job = client_job_request(cmd, opt_job);
		if (!json_parser_load_from_data(p, job, -1, NULL))
			return usage_error("--job: '%s' cannot be sent", opt_job);
		json_builder_set_member_name(b, "job");
		json_builder_add_value(b,
		                       json_node_copy(json_object_get_member(
		                           json_node_get_object(json_parser_get_root(p)), "job")));
	}
	if (!strcmp(cmd, "start")) {
		if (nargs != 1)
			return usage_error("%s", "start needs one TARGET directory");
		/* The daemon has another working directory: send an absolute path. */
		g_autofree char *target = g_canonicalize_filename(argv[3], NULL);
		/* Names are bytes: escaped as the protocol says (mfs_escape_name()). */
		g_autofree char *escaped = mfs_escape_name(target);

		json_builder_set_member_name(b, "target");
		json_builder_add_string_value(b, escaped);
		if ((opt_speed && check_option(&opts, "speed", "--speed", opt_speed)) ||
		    (opt_chunk && check_option(&opts, "chunk", "--chunk", opt_chunk)) ||
		    (opt_guest_share &&
		     check_option(&opts, "guest_share", "--guest-share", opt_guest_share)) ||
		    (opt_switch && check_option(&opts, "switch", "--switch", opt_switch)) ||
		    (opt_checkpoint &&
		     check_option(&opts, "checkpoint", "--checkpoint", opt_checkpoint)) ||
		    (opt_on_target_error && check_option(&opts, "on_target_error",
		                                         "--on-target-error", opt_on_target_error)))
			return EXIT_USAGE;
		/* Sizes and shares go as numbers, as the daemon reads them. */
		if (opt_speed) {
			json_builder_set_member_name(b, "speed");
			json_builder_add_int_value(b, (gint64)opts.speed_bps);
		}
		if (opt_chunk) {
			json_builder_set_member_name(b, "chunk");
			json_builder_add_int_value(b, (gint64)opts.chunk_size);
		}
		if (opt_guest_share) {
			json_builder_set_member_name(b, "guest_share");
			json_builder_add_int_value(b, opts.guest_share);
		}
		if (opt_checkpoint) {
			json_builder_set_member_name(b, "checkpoint");
			json_builder_add_int_value(b, (gint64)opts.checkpoint_bytes);
		}
		if (opt_switch) {
			json_builder_set_member_name(b, "switch");
			json_builder_add_string_value(b, mfs_mig_option_word(&opts, "switch"));
		}
		if (opt_on_target_error) {
			json_builder_set_member_name(b, "on_target_error");
			json_builder_add_string_value(
			    b, mfs_mig_option_word(&opts, "on_target_error"));
		}
		if (opt_only) {
			json_builder_set_member_name(b, "only");
			json_builder_begin_array(b);
			for (char **o = opt_only; *o; o++) {
				g_autofree char *name = NULL, *why = NULL, *escaped_name = NULL;

				if (mfs_mig_only_name(*o, &name, &why) < 0)
					return usage_error("--only: %s", why);
				escaped_name = mfs_escape_name(name);
				json_builder_add_string_value(b, escaped_name);
			}
			json_builder_end_array(b);
		}
		json_builder_set_member_name(b, "delete_source");
		json_builder_add_boolean_value(b, opt_delete_source);
		json_builder_set_member_name(b, "overwrite");
		json_builder_add_boolean_value(b, opt_overwrite);
		json_builder_set_member_name(b, "clone");
		json_builder_add_boolean_value(b, !opt_no_clone);
		json_builder_set_member_name(b, "verify");
		json_builder_add_boolean_value(b, opt_verify);
	} else if (!strcmp(cmd, "speed")) {
		if (nargs != 1)
			return usage_error("%s", "speed needs one RATE (e.g. 50M; 0 = unlimited)");
		if (check_option(&opts, "speed", NULL, argv[3]) != EXIT_OK)
			return EXIT_USAGE;
		json_builder_set_member_name(b, "speed");
		json_builder_add_int_value(b, (gint64)opts.speed_bps);
	} else if (!strcmp(cmd, "guest-share")) {
		if (nargs != 1)
			return usage_error("guest-share needs one PCT, 0 to %u (0 = copy flat out)",
			                   MFS_MAX_GUEST_SHARE);
		if (check_option(&opts, "guest_share", NULL, argv[3]) != EXIT_OK)
			return EXIT_USAGE;
		json_builder_set_member_name(b, "guest_share");
		json_builder_add_int_value(b, opts.guest_share);
	} else if (!strcmp(cmd, "pause") || !strcmp(cmd, "resume") || !strcmp(cmd, "switch") ||
	           !strcmp(cmd, "cancel")) {
		if (nargs != 0)
			return usage_error("%s takes no argument", cmd);
	} else {
		return usage_error("unknown command '%s'", cmd);
	}
	json_builder_end_object(b);
	root = json_builder_get_root(b);
	json_generator_set_root(gen, root);
	request = json_generator_to_data(gen, NULL);

	socket_path = client_socket_path(PROG, argv[1], opt_socket);
	if (!socket_path)
		return EXIT_FAILED;
	reply = client_call(PROG, socket_path, request, CONTROL_CLIENT_TIMEOUT_MS, &parser);
	if (!reply)
		return EXIT_FAILED;
	printf("%s: %s\n", argv[1],
	       json_object_get_string_member_with_default(reply, "message", "ok"));
	if (!opt_release_qmp)
		return EXIT_OK;
	/* start --release-qmp: one command moves the disks and takes them off the mount. */
	fflush(stdout);
	{
		/* This job's switch, whatever else runs: the reply gives its number. */
		g_autofree char *job = g_strdup_printf(
		    "%" G_GINT64_FORMAT, json_object_get_int_member_with_default(reply, "job", 0));

		if (client_wait_state(PROG, socket_path, strcmp(job, "0") ? job : NULL, "switched",
		                      -1) < 0)
			return EXIT_FAILED;
	}
	return adopt_run(PROG, socket_path, opt_release_qmp, true, false);
}
