/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The control protocol (control.h): where a mount's socket lives, and one
 * request line turned into one reply line (control_handle_request()).
 * Malformed JSON, unknown commands and bad arguments get an error reply.
 * The socket's I/O, the server thread and the client, is control-socket.c.
 */
#define _GNU_SOURCE
#include "control.h"
#include "control-int.h"
#include "mig-names.h"
#include "mig-options.h"
#include "migration.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <json-glib/json-glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

char *control_socket_path_in(const char *dir, const char *mountpoint)
{
	g_autofree char *name = NULL;
	GString *s = g_string_new(NULL);

	/* Readable where it fits a sun_path; a digest of the path where not. */
	for (const char *p = mountpoint; *p; p++) {
		if (g_ascii_isalnum(*p) || *p == '.' || *p == '_')
			g_string_append_c(s, *p);
		else
			g_string_append_printf(s, "-%02x", (unsigned char)*p);
	}
	name = g_string_free(s, FALSE);
	if (strlen(dir) + strlen(name) + 16 > sizeof(((struct sockaddr_un *)0)->sun_path)) {
		g_free(name);
		name = g_compute_checksum_for_string(G_CHECKSUM_SHA256, mountpoint, -1);
		name[32] = '\0';
	}
	return g_strdup_printf("%s/%s.sock", dir, name);
}

const char *control_runtime_dir(void)
{
	const char *dir = g_getenv("MIRRORFS_RUNTIME_DIR");

	if (dir)
		return dir;
	return geteuid() == 0 ? CONTROL_SYSTEM_DIR : g_get_user_runtime_dir();
}

char *control_socket_path(const char *mountpoint)
{
	return control_socket_path_in(control_runtime_dir(), mountpoint);
}

/* --- protocol ------------------------------------------------------------ */

/* Every reply is an object that starts with the version and "ok". */
static JsonBuilder *reply_begin(bool ok)
{
	JsonBuilder *b = json_builder_new();

	json_builder_begin_object(b);
	json_builder_set_member_name(b, "version");
	json_builder_add_int_value(b, CONTROL_PROTOCOL_VERSION);
	json_builder_set_member_name(b, "ok");
	json_builder_add_boolean_value(b, ok);
	return b;
}

/* End the reply and make it one line of text. */
static char *reply_end(JsonBuilder *b)
{
	g_autoptr(JsonGenerator) gen = json_generator_new();
	g_autoptr(JsonNode) root = NULL;

	json_builder_end_object(b);
	root = json_builder_get_root(b);
	g_object_unref(b);
	json_generator_set_root(gen, root);
	return json_generator_to_data(gen, NULL);
}

char *control_reply_error(const char *fmt, ...)
{
	JsonBuilder *b = reply_begin(false);
	g_autofree char *msg = NULL, *valid = NULL;
	va_list ap;

	va_start(ap, fmt);
	msg = g_strdup_vprintf(fmt, ap);
	va_end(ap);
	/* Messages quote names and requests, which may not be valid UTF-8. */
	valid = mfs_escape_name(msg);
	json_builder_set_member_name(b, "error");
	json_builder_add_string_value(b, valid);
	return reply_end(b);
}

static char *reply_ok(const char *message)
{
	JsonBuilder *b = reply_begin(true);

	json_builder_set_member_name(b, "message");
	json_builder_add_string_value(b, message);
	return reply_end(b);
}

static char *reply_status(Mfs *fs, const char *mountpoint, const char *job)
{
	JsonBuilder *b = reply_begin(true);

	if (control_add_status_members(b, fs, mountpoint, job) < 0) {
		g_free(reply_end(b));
		return control_reply_error("status: no job '%s' (give its number or its target, "
		                           "as mirrorfs-status lists them)",
		                           job);
	}
	return reply_end(b);
}

/*
 * "job": which job a request is for (migration.h): its number, or its
 * target (escaped as the status escapes names); absent or null: the one
 * there is.
 */
static int member_job(JsonObject *req, char **out, char **error)
{
	JsonNode *node = json_object_get_member(req, "job");
	GType type;

	*out = NULL;
	if (!node || JSON_NODE_HOLDS_NULL(node))
		return 0;
	type = JSON_NODE_HOLDS_VALUE(node) ? json_node_get_value_type(node) : G_TYPE_INVALID;
	if (type == G_TYPE_INT64 && json_node_get_int(node) > 0 &&
	    json_node_get_int(node) <= G_MAXUINT) {
		*out = g_strdup_printf("%" G_GINT64_FORMAT, json_node_get_int(node));
		return 0;
	}
	if (type == G_TYPE_STRING && *json_node_get_string(node) &&
	    mfs_unescape_name(json_node_get_string(node), out) == 0)
		return 0;
	*error = g_strdup("job: not a job's number nor its target directory");
	return -EINVAL;
}

/*
 * A start option's member, checked by its rule (mig-options.c) into
 * @opts: a size is a whole number or a string such as "50M", a
 * percentage a whole number, a word a string.
 */
static int member_option(JsonObject *obj, const char *name, MfsMigOptions *opts, char **error)
{
	const MfsMigOptSpec *spec = mfs_mig_option_spec(name);
	JsonNode *node = json_object_get_member(obj, name);
	g_autofree char *why = NULL;
	GType type;
	int ret;

	if (!node || JSON_NODE_HOLDS_NULL(node))
		return 0;
	type = JSON_NODE_HOLDS_VALUE(node) ? json_node_get_value_type(node) : G_TYPE_INVALID;
	if (type == G_TYPE_INT64 && spec->kind != MFS_MIG_OPT_WORD) {
		ret = mfs_mig_option_set_number(opts, name, json_node_get_int(node), &why);
	} else if (type == G_TYPE_STRING && spec->kind != MFS_MIG_OPT_PERCENT) {
		ret = mfs_mig_option_parse(opts, name, json_node_get_string(node), &why);
	} else {
		if (spec->kind == MFS_MIG_OPT_SIZE)
			why =
			    g_strdup("not a size (a number of bytes, or a string such as \"50M\")");
		else if (spec->kind == MFS_MIG_OPT_PERCENT)
			why = g_strdup_printf("not a whole number (%s)", spec->rule);
		else
			why = g_strdup_printf("not %s", spec->rule);
		ret = -EINVAL;
	}
	if (ret < 0)
		*error = g_strdup_printf("%s: %s", name, why);
	return ret;
}

static int member_bool(JsonObject *obj, const char *name, bool *out, char **error)
{
	JsonNode *node = json_object_get_member(obj, name);

	if (!node || JSON_NODE_HOLDS_NULL(node))
		return 0;
	if (!JSON_NODE_HOLDS_VALUE(node) || json_node_get_value_type(node) != G_TYPE_BOOLEAN) {
		*error = g_strdup_printf("%s: must be true or false", name);
		return -EINVAL;
	}
	*out = json_node_get_boolean(node);
	return 0;
}

static const char *member_string(JsonObject *obj, const char *name)
{
	JsonNode *node = json_object_get_member(obj, name);

	if (!node || !JSON_NODE_HOLDS_VALUE(node) ||
	    json_node_get_value_type(node) != G_TYPE_STRING)
		return NULL;
	return json_node_get_string(node);
}

/*
 * "only": a per-VM job's entries of the root, an array of names escaped
 * as the status escapes them (absent or null: the whole tree).
 */
static int member_only(JsonObject *req, char ***out, char **error)
{
	JsonNode *node = json_object_get_member(req, "only");
	g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func(g_free);
	JsonArray *array;

	*out = NULL;
	if (!node || JSON_NODE_HOLDS_NULL(node))
		return 0;
	if (!JSON_NODE_HOLDS_ARRAY(node)) {
		*error = g_strdup("not an array of names");
		return -EINVAL;
	}
	array = json_node_get_array(node);
	for (guint i = 0; i < json_array_get_length(array); i++) {
		JsonNode *e = json_array_get_element(array, i);
		g_autofree char *raw = NULL;
		char *name;

		if (!JSON_NODE_HOLDS_VALUE(e) || json_node_get_value_type(e) != G_TYPE_STRING) {
			*error = g_strdup("not an array of names");
			return -EINVAL;
		}
		if (mfs_unescape_name(json_node_get_string(e), &raw) < 0) {
			*error = g_strdup("a malformed \\x escape (see mirrorfs-status(1))");
			return -EINVAL;
		}
		if (mfs_mig_only_name(raw, &name, error) < 0)
			return -EINVAL;
		g_ptr_array_add(names, name);
	}
	if (names->len == 0) {
		*error = g_strdup("an empty list (leave it out to move the whole tree)");
		return -EINVAL;
	}
	g_ptr_array_add(names, NULL);
	*out = (char **)g_ptr_array_steal(names, NULL);
	return 0;
}

static char *do_start(Mfs *fs, const char *mountpoint, JsonObject *req)
{
	static const char *const valued[] = {"speed",  "chunk",      "guest_share",
	                                     "switch", "checkpoint", "on_target_error"};
	MfsMigOptions opts;
	g_autofree char *error = NULL, *target = NULL;
	g_auto(GStrv) only = NULL;
	const char *text = member_string(req, "target");
	bool clone = true;

	mfs_mig_options_init(&opts);
	/* Escaped as the status escapes names: any bytes may name it. */
	if (!text)
		return control_reply_error("start: a target directory is needed");
	if (mfs_unescape_name(text, &target) < 0)
		return control_reply_error(
		    "start: target: a malformed \\x escape (see mirrorfs-status(1))");
	opts.target = target;
	if (!*opts.target)
		return control_reply_error("start: a target directory is needed");
	if (!g_path_is_absolute(opts.target))
		return control_reply_error("start: the target must be an absolute path");
	/*
	 * Checked on the path alone, before anything looks at it: a target
	 * inside this very mount would send the daemon's own file system
	 * calls back to itself, and hang it.
	 */
	{
		g_autofree char *lexical = g_canonicalize_filename(opts.target, NULL);

		if (mfs_path_within(lexical, mountpoint))
			return control_reply_error(
			    "start: the target '%s' lies inside the mount '%s' itself", opts.target,
			    mountpoint);
	}
	for (size_t i = 0; i < G_N_ELEMENTS(valued); i++) {
		JsonNode *node = json_object_get_member(req, valued[i]);

		/* A null speed or guest share is not given; a null of the others is refused. */
		if (node && JSON_NODE_HOLDS_NULL(node) && strcmp(valued[i], "speed") != 0 &&
		    strcmp(valued[i], "guest_share") != 0)
			return control_reply_error("start: %s: not %s", valued[i],
			                           mfs_mig_option_spec(valued[i])->rule);
		if (member_option(req, valued[i], &opts, &error) < 0)
			return control_reply_error("start: %s", error);
	}
	if (member_bool(req, "delete_source", &opts.delete_source, &error) < 0 ||
	    member_bool(req, "overwrite", &opts.overwrite, &error) < 0 ||
	    member_bool(req, "verify", &opts.verify, &error) < 0 ||
	    member_bool(req, "clone", &clone, &error) < 0)
		return control_reply_error("start: %s", error);
	opts.no_clone = !clone;
	if (member_only(req, &only, &error) < 0)
		return control_reply_error("start: only: %s", error);
	opts.only = only;
	if (mfs_migration_start(fs, &opts, &error) < 0)
		return control_reply_error("start: %s", error);
	{
		g_autofree char *done = NULL;
		MfsMigStatus st;

		/* Its number, by which later requests may name it. */
		mfs_migration_status(fs, opts.target, &st);
		JsonBuilder *b = reply_begin(true);

		done = g_strdup_printf("migration started: job %u", st.id);
		g_message("control: %s, to %s", done, member_string(req, "target"));
		json_builder_set_member_name(b, "message");
		json_builder_add_string_value(b, done);
		json_builder_set_member_name(b, "job");
		json_builder_add_int_value(b, st.id);
		mfs_migration_status_clear(&st);
		return reply_end(b);
	}
}

static const char *current_state(Mfs *fs, const char *job)
{
	MfsMigStatus st;
	MfsMigState state;

	mfs_migration_status(fs, job, &st);
	state = st.state;
	mfs_migration_status_clear(&st);
	return mfs_mig_state_name(state);
}

/* For the log: which job a request acted on, "job 2 (to '/srv/b')". */
static char *job_label(Mfs *fs, const char *job)
{
	MfsMigStatus st;
	char *label;

	mfs_migration_status(fs, job, &st);
	label = g_strdup_printf("job %u (to '%s')", st.id, st.target ? st.target : "");
	mfs_migration_status_clear(&st);
	return label;
}

/* The jobs running, for a request that must name one: "1 to 'A', 2 to 'B'". */
static char *running_jobs(Mfs *fs)
{
	g_autofree unsigned *ids = NULL;
	unsigned n_ids = mfs_migration_job_ids(fs, &ids);
	GString *s = g_string_new(NULL);

	for (unsigned i = 0; i < n_ids; i++) {
		char id[16];
		MfsMigStatus st;

		g_snprintf(id, sizeof(id), "%u", ids[i]);
		mfs_migration_status(fs, id, &st);
		if (st.state == MFS_MIG_COPYING || st.state == MFS_MIG_MIRRORED ||
		    st.state == MFS_MIG_SWITCHING)
			g_string_append_printf(s, "%sjob %u to '%s'", s->len ? ", " : "", st.id,
			                       st.target);
		mfs_migration_status_clear(&st);
	}
	return g_string_free(s, FALSE);
}

/* Say why a control call was refused, in the words of the current state. */
static char *reply_refused(Mfs *fs, const char *what, const char *job, int err)
{
	switch (err) {
	case -ENOENT:
		return control_reply_error("%s: no migration has been started", what);
	case -ESRCH:
		return control_reply_error("%s: no job '%s' (give its number or its target, as "
		                           "mirrorfs-status lists them)",
		                           what, job);
	case -ENOTUNIQ: {
		g_autofree char *running = running_jobs(fs);

		return control_reply_error("%s: several migrations run (%s): name one with --job",
		                           what, running);
	}
	case -EALREADY:
		if (!strcmp(what, "switch"))
			return control_reply_error(
			    "switch: this migration switches by itself (switch=auto)");
		return control_reply_error("%s: already %s", what,
		                           !strcmp(what, "pause") ? "paused"
		                                                  : current_state(fs, job));
	case -EBUSY:
		return control_reply_error("%s: not everything is copied yet (state copying)",
		                           what);
	case -ERANGE:
		return control_reply_error("%s: out of range", what);
	case -EINPROGRESS:
		return control_reply_error("%s: the verify pass is under way (see the status)",
		                           what);
	case -EBADMSG:
		return control_reply_error(
		    "%s: the verify pass found differences (see the status): "
		    "cancel, then start again",
		    what);
	case -ECANCELED:
		return control_reply_error(
		    "%s: the migration is stopping (cancelled, or it failed: "
		    "see its status)",
		    what);
	default:
		return control_reply_error("%s: not possible while the migration is %s", what,
		                           current_state(fs, job));
	}
}

/* A cancel with nothing running: the recorded job that could not resume goes. */
static bool forget_recorded_job(Mfs *fs, const char *job)
{
	g_autofree char *target = NULL;

	if (mfs_migration_forget_recorded(fs, job, &target) < 0)
		return false;
	g_message("control: cancel: the recorded migration to %s is forgotten", target);
	return true;
}

/*
 * "events": where the migration stands now, as a state event with the
 * newest seq; control-socket.c then sends every event after it.
 */
static char *reply_events(Mfs *fs, const char *job, int64_t *follow_from)
{
	JsonBuilder *b;
	MfsMigEvent *none = NULL;
	MfsMigStatus st;
	uint64_t last;

	mfs_migration_events_free(none, mfs_migration_events(fs, UINT64_MAX, &none, &last));
	/* Where the job asked for stands (its follower ends when it ends). */
	if (mfs_migration_status(fs, job, &st) == -ESRCH) {
		mfs_migration_status_clear(&st);
		return control_reply_error("events: no job '%s' (give its number or its target, as "
		                           "mirrorfs-status lists them)",
		                           job);
	}
	b = reply_begin(true);
	json_builder_set_member_name(b, "event");
	json_builder_add_string_value(b, "state");
	json_builder_set_member_name(b, "seq");
	json_builder_add_int_value(b, (gint64)last);
	json_builder_set_member_name(b, "job");
	control_add_job_id(b, st.id);
	json_builder_set_member_name(b, "time");
	json_builder_add_double_value(b, g_get_real_time() / 1e6);
	json_builder_set_member_name(b, "state");
	json_builder_add_string_value(b, mfs_mig_status_name(st.state, st.paused, st.held));
	if (st.error) {
		json_builder_set_member_name(b, "error");
		control_add_name(b, st.error);
	}
	mfs_migration_status_clear(&st);
	*follow_from = (int64_t)last;
	return reply_end(b);
}

char *control_handle_request(Mfs *fs, const char *mountpoint, const char *line, uid_t peer)
{
	int64_t follow_from;

	return control_handle_request_follow(fs, mountpoint, line, peer, &follow_from);
}

char *control_handle_request_follow(Mfs *fs, const char *mountpoint, const char *line, uid_t peer,
                                    int64_t *follow_from)
{
	g_autoptr(JsonParser) parser = json_parser_new();
	g_autoptr(GError) gerr = NULL;
	JsonNode *root;
	JsonObject *req;
	JsonNode *version;
	g_autofree char *job = NULL, *who = NULL;
	const char *cmd;
	int ret;

	*follow_from = -1;
	if (peer != 0 && peer != geteuid())
		return control_reply_error("permission denied: uid %u may not control this mount",
		                           (unsigned)peer);
	if (!g_utf8_validate(line, -1, NULL))
		return control_reply_error("malformed request: not UTF-8");
	/* Strings are C strings here: an escaped NUL would cut one short. */
	if (strcasestr(line, "\\u0000"))
		return control_reply_error("malformed request: NUL in a string");
	if (!json_parser_load_from_data(parser, line, -1, &gerr))
		return control_reply_error("malformed request: %s", gerr->message);
	root = json_parser_get_root(parser);
	if (!root || !JSON_NODE_HOLDS_OBJECT(root))
		return control_reply_error("malformed request: not a JSON object");
	req = json_node_get_object(root);
	version = json_object_get_member(req, "version");
	if (version &&
	    (!JSON_NODE_HOLDS_VALUE(version) || json_node_get_value_type(version) != G_TYPE_INT64 ||
	     json_node_get_int(version) != CONTROL_PROTOCOL_VERSION))
		return control_reply_error("unsupported protocol version (this daemon speaks %d)",
		                           CONTROL_PROTOCOL_VERSION);
	cmd = member_string(req, "command");
	if (!cmd)
		return control_reply_error("malformed request: no \"command\"");
	{
		g_autofree char *error = NULL;

		if (member_job(req, &job, &error) < 0)
			return control_reply_error("%s: %s", cmd, error);
	}
	if (!strcmp(cmd, "status"))
		return reply_status(fs, mountpoint, job);
	if (!strcmp(cmd, "events"))
		return reply_events(fs, job, follow_from);
	if (!strcmp(cmd, "start"))
		return do_start(fs, mountpoint, req);
	if (!strcmp(cmd, "speed")) {
		MfsMigOptions checked;
		g_autofree char *error = NULL;
		uint64_t speed;

		if (!json_object_has_member(req, "speed") ||
		    JSON_NODE_HOLDS_NULL(json_object_get_member(req, "speed")))
			return control_reply_error(
			    "speed: a rate is needed (bytes/s, 0 = unlimited)");
		/* By the start option's rule. */
		mfs_mig_options_init(&checked);
		if (member_option(req, "speed", &checked, &error) < 0)
			return control_reply_error("%s", error);
		speed = checked.speed_bps;
		who = job_label(fs, job);
		ret = mfs_migration_set_speed(fs, job, speed);
		if (ret < 0)
			return reply_refused(fs, "speed", job, ret);
		g_message("control: %s: copier speed set to %" G_GUINT64_FORMAT " bytes/s", who,
		          speed);
		return reply_ok(speed ? "speed set" : "speed unlimited");
	}
	if (!strcmp(cmd, "guest_share")) {
		MfsMigOptions checked;
		g_autofree char *error = NULL;
		unsigned share;

		if (!json_object_has_member(req, "guest_share") ||
		    JSON_NODE_HOLDS_NULL(json_object_get_member(req, "guest_share")))
			return control_reply_error("guest_share: a percentage is needed (0 to %u)",
			                           MFS_MAX_GUEST_SHARE);
		/* By the start option's rule. */
		mfs_mig_options_init(&checked);
		if (member_option(req, "guest_share", &checked, &error) < 0)
			return control_reply_error("%s", error);
		share = checked.guest_share;
		who = job_label(fs, job);
		ret = mfs_migration_set_guest_share(fs, job, share);
		if (ret < 0)
			return reply_refused(fs, "guest_share", job, ret);
		g_message("control: %s: guest share set to %u%%", who, share);
		return reply_ok(share ? "guest share set" : "copier no longer rests for the guest");
	}
	{
		static const struct {
			const char *name;
			int (*fn)(Mfs *, const char *);
			const char *done;
		} simple[] = {
		    {"pause", mfs_migration_pause, "paused"},
		    {"resume", mfs_migration_resume, "resumed"},
		    {"switch", mfs_migration_switch, "switching"},
		    {"cancel", mfs_migration_cancel, "cancelling"},
		};

		for (size_t i = 0; i < G_N_ELEMENTS(simple); i++) {
			if (strcmp(cmd, simple[i].name) != 0)
				continue;
			/* Before: a cancelled job is no longer the one a NULL job names. */
			who = job_label(fs, job);
			ret = simple[i].fn(fs, job);
			if (ret < 0 && ret != -ENOTUNIQ && !strcmp(cmd, "cancel") &&
			    forget_recorded_job(fs, job))
				return reply_ok(
				    "the recorded migration that did not resume is forgotten");
			if (ret < 0)
				return reply_refused(fs, cmd, job, ret);
			g_message("control: %s: %s", who, cmd);
			return reply_ok(simple[i].done);
		}
	}
	return control_reply_error("unknown command \"%.64s\"", cmd);
}
