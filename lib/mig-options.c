/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The start options of a migration: the one table of their rules, and
 * their parsing and checking (mig-options.h).  Pure: it touches nothing
 * but the MfsMigOptions it is given, so the daemon, the control server,
 * the CLI and mfs_migration_start() all use it.
 */
#include "mig-options.h"
#include "journal.h"

#include <errno.h>
#include <glib.h>
#include <string.h>

enum { OPT_SPEED, OPT_CHUNK, OPT_GUEST_SHARE, OPT_SWITCH, OPT_CHECKPOINT, OPT_ON_TARGET_ERROR };

/* Each rule, once: the range of a number, or the two words that say it. */
static const struct {
	MfsMigOptSpec spec;
	uint64_t min, max; /* sizes and percentages */
	bool power_of_two;
	const char *words[2]; /* a word option's: the default, then the one that sets its flag */
} options[] = {
    [OPT_SPEED] = {{"speed", MFS_MIG_OPT_SIZE, "a size in bytes/s, e.g. 50M (0 = unlimited)"},
                   0,
                   MFS_MAX_SIZE,
                   false},
    [OPT_CHUNK] = {{"chunk", MFS_MIG_OPT_SIZE, "a power of two from 4K to 64M"},
                   MFS_MIN_CHUNK,
                   MFS_MAX_CHUNK,
                   true},
    [OPT_GUEST_SHARE] = {{"guest_share", MFS_MIG_OPT_PERCENT,
                          "a percentage from 0 to " G_STRINGIFY(MFS_MAX_GUEST_SHARE)},
                         0,
                         MFS_MAX_GUEST_SHARE,
                         false},
    [OPT_SWITCH] =
        {{"switch", MFS_MIG_OPT_WORD, "auto or manual"}, 0, 0, false, {"auto", "manual"}},
    [OPT_ON_TARGET_ERROR] =
        {{"on_target_error", MFS_MIG_OPT_WORD, "abort or stop"}, 0, 0, false, {"abort", "stop"}},
    [OPT_CHECKPOINT] = {{"checkpoint", MFS_MIG_OPT_SIZE, "a size of at least 1M, e.g. 256M"},
                        MFS_MIN_CHECKPOINT,
                        MFS_MAX_SIZE,
                        false},
};

/* Sizes travel as signed 64-bit JSON numbers (mfs.h, MFS_MAX_SIZE). */
#define OUT_OF_RANGE "out of range (0 to 2^63 - 1 bytes)"

static int find(const char *name)
{
	for (int i = 0; i < (int)G_N_ELEMENTS(options); i++)
		if (strcmp(options[i].spec.name, name) == 0)
			return i;
	return -1;
}

const MfsMigOptSpec *mfs_mig_option_spec(const char *name)
{
	int i = find(name);

	return i < 0 ? NULL : &options[i].spec;
}

void mfs_mig_options_init(MfsMigOptions *opts)
{
	memset(opts, 0, sizeof(*opts));
	opts->guest_share = MFS_DEFAULT_GUEST_SHARE;
}

/* Why @i refuses a value: a plain size only by its range, the others by their rule. */
static int refuse(int i, int err, char **error)
{
	if (err == -ERANGE && i == OPT_SPEED)
		*error = g_strdup(OUT_OF_RANGE);
	else
		*error = g_strdup_printf("not %s", options[i].spec.rule);
	return err;
}

static int check_number(int i, uint64_t value, char **error)
{
	if (value < options[i].min || value > options[i].max)
		return refuse(i, options[i].spec.kind == MFS_MIG_OPT_SIZE ? -ERANGE : -EINVAL,
		              error);
	if (options[i].power_of_two && (value & (value - 1)))
		return refuse(i, -EINVAL, error);
	return 0;
}

static void store(MfsMigOptions *opts, int i, uint64_t value)
{
	switch (i) {
	case OPT_SPEED:
		opts->speed_bps = value;
		break;
	case OPT_CHUNK:
		opts->chunk_size = value;
		break;
	case OPT_GUEST_SHARE:
		opts->guest_share = (unsigned)value;
		break;
	case OPT_CHECKPOINT:
		opts->checkpoint_bytes = value;
		break;
	}
}

/* The flag a word option sets. */
static bool *word_flag(MfsMigOptions *opts, int i)
{
	return i == OPT_SWITCH ? &opts->manual_switch : &opts->stop_on_target_error;
}

const char *mfs_mig_option_word(const MfsMigOptions *opts, const char *name)
{
	int i = find(name);

	if (i < 0 || options[i].spec.kind != MFS_MIG_OPT_WORD)
		return NULL;
	return options[i].words[*word_flag((MfsMigOptions *)opts, i)];
}

int mfs_mig_option_parse(MfsMigOptions *opts, const char *name, const char *text, char **error)
{
	int i = find(name), ret;
	uint64_t value;
	unsigned percent;

	if (i < 0) {
		*error = g_strdup_printf("%s: not a start option", name);
		return -EINVAL;
	}
	switch (options[i].spec.kind) {
	case MFS_MIG_OPT_SIZE:
		ret = mfs_parse_size(text, &value);
		if (ret < 0)
			return refuse(i, ret, error);
		break;
	case MFS_MIG_OPT_PERCENT:
		if (mfs_parse_percent(text, (unsigned)options[i].max, &percent) < 0)
			return refuse(i, -EINVAL, error);
		value = percent;
		break;
	case MFS_MIG_OPT_WORD:
	default:
		if (!text || (strcmp(text, options[i].words[0]) != 0 &&
		              strcmp(text, options[i].words[1]) != 0))
			return refuse(i, -EINVAL, error);
		*word_flag(opts, i) = strcmp(text, options[i].words[1]) == 0;
		return 0;
	}
	ret = check_number(i, value, error);
	if (ret == 0)
		store(opts, i, value);
	return ret;
}

int mfs_mig_option_set_number(MfsMigOptions *opts, const char *name, int64_t value, char **error)
{
	int i = find(name), ret;

	if (i < 0 || options[i].spec.kind == MFS_MIG_OPT_WORD) {
		*error = g_strdup_printf("%s: not a start option with a number", name);
		return -EINVAL;
	}
	if (value < 0)
		return refuse(i, options[i].spec.kind == MFS_MIG_OPT_SIZE ? -ERANGE : -EINVAL,
		              error);
	ret = check_number(i, (uint64_t)value, error);
	if (ret == 0)
		store(opts, i, (uint64_t)value);
	return ret;
}

static const char *const job_flags[] = {"delete_source", "overwrite", "no_clone", "verify",
                                        "paused"};

static bool *job_flag(MfsMigOptions *opts, size_t i)
{
	bool *flags[] = {&opts->delete_source, &opts->overwrite, &opts->no_clone, &opts->verify,
	                 &opts->paused};

	return flags[i];
}

char **mfs_mig_options_to_job(const MfsMigOptions *opts)
{
	GPtrArray *job = g_ptr_array_new();

	g_ptr_array_add(job, g_strdup_printf("speed=%" G_GUINT64_FORMAT, opts->speed_bps));
	g_ptr_array_add(job, g_strdup_printf("guest_share=%u", opts->guest_share));
	g_ptr_array_add(job, g_strdup_printf("switch=%s", mfs_mig_option_word(opts, "switch")));
	g_ptr_array_add(job, g_strdup_printf("on_target_error=%s",
	                                     mfs_mig_option_word(opts, "on_target_error")));
	if (opts->chunk_size)
		g_ptr_array_add(job, g_strdup_printf("chunk=%" G_GUINT64_FORMAT, opts->chunk_size));
	if (opts->checkpoint_bytes)
		g_ptr_array_add(
		    job, g_strdup_printf("checkpoint=%" G_GUINT64_FORMAT, opts->checkpoint_bytes));
	for (size_t i = 0; i < G_N_ELEMENTS(job_flags); i++)
		if (*job_flag((MfsMigOptions *)opts, i))
			g_ptr_array_add(job, g_strdup_printf("%s=1", job_flags[i]));
	/* A name holds no '/': the names joined by it, escaped as the journal's paths are. */
	if (opts->only) {
		g_autofree char *joined = g_strjoinv("/", opts->only);
		g_autofree char *escaped = mfs_escape_name(joined);

		g_ptr_array_add(job, g_strdup_printf("only=%s", escaped));
	}
	g_ptr_array_add(job, NULL);
	return (char **)g_ptr_array_free(job, FALSE);
}

int mfs_mig_options_from_job(MfsMigOptions *opts, char *const *job, char **error)
{
	MfsMigOptions parsed;

	mfs_mig_options_init(&parsed);
	parsed.target = opts->target;
	for (char *const *o = job; o && *o; o++) {
		g_autofree char *name = g_strndup(*o, strcspn(*o, "="));
		const char *value = *o + strlen(name) + (strchr(*o, '=') ? 1 : 0);
		g_autofree char *why = NULL;
		size_t i;

		for (i = 0; i < G_N_ELEMENTS(job_flags); i++)
			if (strcmp(name, job_flags[i]) == 0)
				break;
		if (i < G_N_ELEMENTS(job_flags)) {
			*job_flag(&parsed, i) = strcmp(value, "1") == 0;
			continue;
		}
		if (strcmp(name, "only") == 0) {
			g_autofree char *joined = NULL;

			g_strfreev(parsed.only);
			parsed.only = NULL;
			if (mfs_unescape_name(value, &joined) < 0 || !*joined) {
				*error = g_strdup_printf("only=%s: not a list of names", value);
				return -EINVAL;
			}
			parsed.only = g_strsplit(joined, "/", -1);
			continue;
		}
		if (mfs_mig_option_parse(&parsed, name, value, &why) < 0) {
			*error = g_strdup_printf("%s=%s: %s", name, value, why);
			g_strfreev(parsed.only);
			return -EINVAL;
		}
	}
	*opts = parsed;
	return 0;
}

int mfs_mig_options_check(const MfsMigOptions *opts, uint64_t *chunk, char **error)
{
	g_autofree char *why = NULL;
	int ret;

	*chunk = opts->chunk_size ? opts->chunk_size : MFS_DEFAULT_CHUNK;
	if (check_number(OPT_CHUNK, *chunk, &why) < 0) {
		*error = g_strdup_printf("chunk size %" G_GUINT64_FORMAT ": %s", *chunk, why);
		return -EINVAL;
	}
	if (!opts->target || !*opts->target) {
		*error = g_strdup("no target directory given");
		return -EINVAL;
	}
	if (check_number(OPT_GUEST_SHARE, opts->guest_share, &why) < 0) {
		*error = g_strdup_printf("guest share %u%%: %s", opts->guest_share, why);
		return -EINVAL;
	}
	if (opts->checkpoint_bytes &&
	    check_number(OPT_CHECKPOINT, opts->checkpoint_bytes, &why) < 0) {
		*error = g_strdup_printf("checkpoint interval %" G_GUINT64_FORMAT " bytes: %s",
		                         opts->checkpoint_bytes, why);
		return -EINVAL;
	}
	ret = check_number(OPT_SPEED, opts->speed_bps, &why);
	if (ret < 0) {
		*error = g_strdup_printf("speed %" G_GUINT64_FORMAT " bytes/s: %s", opts->speed_bps,
		                         why);
		return ret;
	}
	return 0;
}

int mfs_mig_only_name(const char *text, char **out, char **error)
{
	g_autofree char *name = g_strdup(text);
	size_t n = strlen(name);

	/* "vm1/", as a shell completes a directory. */
	while (n > 1 && name[n - 1] == '/')
		name[--n] = '\0';
	if (!*name || strchr(name, '/') || !strcmp(name, ".") || !strcmp(name, "..") ||
	    journal_is_reserved_name(name)) {
		*error = g_strdup_printf("'%s' is not an entry of the mount's top directory "
		                         "(a file or directory name, e.g. vm1.qcow2 or vm1/)",
		                         text);
		return -EINVAL;
	}
	*out = g_steal_pointer(&name);
	return 0;
}
