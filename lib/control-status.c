/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The control protocol's replies that describe the migrations: the status
 * of the mount and of each job, and the events sent to followers
 * (mirrorfs-status(1) documents both).  control.c answers the requests.
 */
#define _GNU_SOURCE
#include "control-int.h"
#include "control.h"
#include "mig-names.h"
#include "migration.h"
#include "util.h"

#include <errno.h>
#include <json-glib/json-glib.h>

static const char *file_state(const MfsMigFileStatus *f)
{
	if (f->mirrored)
		return "mirrored";
	return f->cp_offset ? "copying" : "pending";
}

/* A name, or any text that may hold one: its bytes escaped (mfs_escape_name()). */
void control_add_name(JsonBuilder *b, const char *name)
{
	g_autofree char *escaped = mfs_escape_name(name);

	json_builder_add_string_value(b, escaped);
}

/* A name, or null when there is none. */
static void add_name_or_null(JsonBuilder *b, const char *name)
{
	if (name)
		control_add_name(b, name);
	else
		json_builder_add_null_value(b);
}

void control_add_job_id(JsonBuilder *b, unsigned id)
{
	if (id)
		json_builder_add_int_value(b, id);
	else
		json_builder_add_null_value(b);
}

/* The verify pass: null when not asked for (mirrorfs-status(1)). */
static void add_verify(JsonBuilder *b, const MfsMigStatus *st)
{
	static const char *const states[] = {
	    [MFS_MIG_VERIFY_PENDING] = "pending",
	    [MFS_MIG_VERIFY_RUNNING] = "running",
	    [MFS_MIG_VERIFY_PASSED] = "passed",
	    [MFS_MIG_VERIFY_FAILED] = "failed",
	};

	if (st->verify == MFS_MIG_VERIFY_NONE) {
		json_builder_add_null_value(b);
		return;
	}
	json_builder_begin_object(b);
	json_builder_set_member_name(b, "state");
	json_builder_add_string_value(b, states[st->verify]);
	json_builder_set_member_name(b, "bytes_compared");
	json_builder_add_int_value(b, (gint64)st->verify_bytes);
	json_builder_set_member_name(b, "differences");
	json_builder_add_int_value(b, st->mismatches);
	json_builder_set_member_name(b, "first");
	add_name_or_null(b, st->mismatch);
	json_builder_end_object(b);
}

#define MEMBER(name) json_builder_set_member_name(b, name)

/* What the status says of a job (mirrorfs-status(1)): at the top for one, in "jobs" for each. */
static void add_job_members(JsonBuilder *b, const MfsMigStatus *st)
{
	MEMBER("job");
	control_add_job_id(b, st->id);
	MEMBER("state");
	json_builder_add_string_value(b, mfs_mig_status_name(st->state, st->paused, st->held));
	MEMBER("source");
	control_add_name(b, st->source);
	MEMBER("target");
	add_name_or_null(b, st->target);
	MEMBER("only");
	if (st->only) {
		json_builder_begin_array(b);
		for (char **n = st->only; *n; n++)
			control_add_name(b, *n);
		json_builder_end_array(b);
	} else {
		json_builder_add_null_value(b);
	}
	MEMBER("bytes_total");
	json_builder_add_int_value(b, (gint64)st->bytes_total);
	MEMBER("bytes_copied");
	json_builder_add_int_value(b, (gint64)st->bytes_copied);
	MEMBER("bytes_cloned");
	json_builder_add_int_value(b, (gint64)st->bytes_cloned);
	MEMBER("bytes_resumed");
	json_builder_add_int_value(b, (gint64)st->bytes_resumed);
	MEMBER("verify");
	add_verify(b, st);
	MEMBER("rate_bps");
	json_builder_add_int_value(b, (gint64)st->rate_bps);
	MEMBER("eta_s");
	if (st->eta_s >= 0)
		json_builder_add_double_value(b, st->eta_s);
	else
		json_builder_add_null_value(b);
	MEMBER("speed_bps");
	json_builder_add_int_value(b, (gint64)st->speed_bps);
	MEMBER("guest_share");
	json_builder_add_int_value(b, st->guest_share);
	MEMBER("rested_ms");
	json_builder_add_double_value(b, st->rested_ns / 1e6);
	MEMBER("mirrored_writes");
	json_builder_add_int_value(b, (gint64)st->mirrored_writes);
	MEMBER("waited_writes");
	json_builder_add_int_value(b, (gint64)st->waited_writes);
	MEMBER("max_wait_ms");
	json_builder_add_double_value(b, st->max_wait_ns / 1e6);
	MEMBER("stun_ms");
	if (st->state == MFS_MIG_SWITCHED)
		json_builder_add_double_value(b, st->stun_ns / 1e6);
	else
		json_builder_add_null_value(b);
	MEMBER("error");
	add_name_or_null(b, st->error);
	MEMBER("files");
	json_builder_begin_array(b);
	for (unsigned i = 0; i < st->n_files; i++) {
		json_builder_begin_object(b);
		MEMBER("path");
		control_add_name(b, st->files[i].path);
		MEMBER("size");
		json_builder_add_int_value(b, (gint64)st->files[i].size);
		MEMBER("cp_offset");
		json_builder_add_int_value(b, (gint64)st->files[i].cp_offset);
		MEMBER("state");
		json_builder_add_string_value(b, file_state(&st->files[i]));
		json_builder_end_object(b);
	}
	json_builder_end_array(b);
}

/*
 * The mount's status: what it serves, and the job @job names (NULL: the
 * one running, or the newest; then every kept job in "jobs").
 */
int control_add_status_members(JsonBuilder *b, Mfs *fs, const char *mountpoint, const char *job)
{
	g_autofree char *served = mfs_served_dir(fs);
	g_autofree unsigned *ids = NULL;
	unsigned n_ids = mfs_migration_job_ids(fs, &ids);
	MfsMigStatus st;
	int ret;

	ret = mfs_migration_status(fs, job, &st);
	if (ret == -ESRCH) {
		mfs_migration_status_clear(&st);
		return ret;
	}
	MEMBER("mountpoint");
	control_add_name(b, mountpoint);
	MEMBER("served");
	control_add_name(b, served);
	/* Entries that per-VM jobs moved, each served from its own directory. */
	MEMBER("placements");
	json_builder_begin_array(b);
	{
		g_auto(GStrv) dirs = NULL;
		g_auto(GStrv) names = mfs_placements(fs, &dirs);

		for (guint i = 0; names[i]; i++) {
			json_builder_begin_object(b);
			MEMBER("name");
			control_add_name(b, names[i]);
			MEMBER("dir");
			control_add_name(b, dirs[i]);
			json_builder_end_object(b);
		}
	}
	json_builder_end_array(b);
	MEMBER("transport");
	json_builder_add_string_value(b, mfs_transport(fs));
	add_job_members(b, &st);
	mfs_migration_status_clear(&st);
	MEMBER("jobs");
	json_builder_begin_array(b);
	for (unsigned i = 0; i < n_ids; i++) {
		char id[16];

		g_snprintf(id, sizeof(id), "%u", ids[i]);
		if (mfs_migration_status(fs, id, &st) == 0) {
			json_builder_begin_object(b);
			add_job_members(b, &st);
			json_builder_end_object(b);
		}
		mfs_migration_status_clear(&st);
	}
	json_builder_end_array(b);
	return 0;
}
#undef MEMBER

char *control_event_line(const MfsMigEvent *ev)
{
	g_autoptr(JsonBuilder) b = json_builder_new();
	g_autoptr(JsonGenerator) gen = json_generator_new();
	g_autoptr(JsonNode) root = NULL;

	json_builder_begin_object(b);
	json_builder_set_member_name(b, "event");
	json_builder_add_string_value(b, ev->kind == MFS_MIG_EVENT_FILE     ? "file"
	                                 : ev->kind == MFS_MIG_EVENT_VERIFY ? "verify"
	                                                                    : "state");
	json_builder_set_member_name(b, "seq");
	json_builder_add_int_value(b, (gint64)ev->seq);
	json_builder_set_member_name(b, "job");
	json_builder_add_int_value(b, ev->job);
	json_builder_set_member_name(b, "time");
	json_builder_add_double_value(b, ev->time_us / 1e6);
	if (ev->state) {
		json_builder_set_member_name(b, "state");
		json_builder_add_string_value(b, ev->state);
	}
	if (ev->path) {
		json_builder_set_member_name(b, "path");
		control_add_name(b, ev->path);
	}
	if (ev->error) {
		json_builder_set_member_name(b, "error");
		control_add_name(b, ev->error);
	}
	if (ev->stun_ms >= 0) {
		json_builder_set_member_name(b, "stun_ms");
		json_builder_add_double_value(b, ev->stun_ms);
	}
	json_builder_end_object(b);
	root = json_builder_get_root(b);
	json_generator_set_root(gen, root);
	return json_generator_to_data(gen, NULL);
}
