/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The start options of a migration (MfsMigOptions): each one's rule,
 * written once, for every way of giving them -- the mount options
 * (fuse/main.c), the control socket's start, speed and guest_share
 * requests (control.c), mirrorfsctl's flags and arguments
 * (tools/mirrorfsctl.c) -- and for mfs_migration_start() itself, which
 * checks the whole.
 *
 * Pure: these functions read and write only the MfsMigOptions they are
 * given and the messages they return; no I/O, no lock, no logging.  So a
 * client checks an option with the daemon's own rule before it sends it.
 *
 * The valued options are speed, chunk, guest_share, switch, checkpoint and
 * on_target_error, named as
 * the mount options and the start request name them; each front end
 * spells them its own way to its user (-o guest_share=, --guest-share,
 * "guest_share") and prefixes the messages here with that.  The flags
 * (delete_source, overwrite, no_clone) have no value to check: each front
 * end sets them in the MfsMigOptions itself.
 */
#ifndef MFS_MIG_OPTIONS_H
#define MFS_MIG_OPTIONS_H

#include "migration.h"

/* The copier's chunk: a power of two from 4 KiB to 64 MiB (0: MFS_DEFAULT_CHUNK). */
#define MFS_MIN_CHUNK (4u << 10)
#define MFS_MAX_CHUNK (64u << 20)

typedef enum {
	MFS_MIG_OPT_SIZE,    /* bytes or bytes/s: a number, or text such as "50M" */
	MFS_MIG_OPT_PERCENT, /* a whole percentage: a number, or text such as "50" or "50%" */
	MFS_MIG_OPT_WORD,    /* one of a few words: text only */
} MfsMigOptKind;

typedef struct {
	const char *name; /* "guest_share" */
	MfsMigOptKind kind;
	const char *rule; /* what a value must be: "a percentage from 0 to 90" */
} MfsMigOptSpec;

/* The valued option @name, or NULL when there is none of that name. */
const MfsMigOptSpec *mfs_mig_option_spec(const char *name);

/* No target, and every option at its default (guest_share 50, the rest 0). */
void mfs_mig_options_init(MfsMigOptions *opts);

/*
 * Set the option @name in @opts from its text: "50M" (speed, chunk: see
 * mfs_parse_size()), "50" or "50%" (guest_share), "auto" or "manual"
 * (switch), "abort" or "stop" (on_target_error).  Returns 0, or -EINVAL (not a value the rule
 * allows; an unknown @name too) or -ERANGE (a size over MFS_MAX_SIZE), with *@error saying why in a
 * phrase about the value, to g_free(), for the caller to prefix with the option as its user wrote
 * it: "not a power of two from 4K to 64M".  @opts is left as it was on failure.
 */
int mfs_mig_option_parse(MfsMigOptions *opts, const char *name, const char *text, char **error);
/* The word option @name's value in @opts ("manual"), or NULL if it is none. */
const char *mfs_mig_option_word(const MfsMigOptions *opts, const char *name);
/* The same from a number (the protocol's integers): bytes, or a percentage. */
int mfs_mig_option_set_number(MfsMigOptions *opts, const char *name, int64_t value, char **error);

/*
 * The options as a job's record keeps them (Journal.job: "name=value", the
 * valued options by their names above, the flags delete_source,
 * overwrite, no_clone, verify and paused, and a per-VM job's "only"), and
 * back.
 * from_job() parses each by its rule and refuses what is not one of
 * them; @opts keeps its target, and its "only" is the caller's to
 * g_strfreev().
 */
char **mfs_mig_options_to_job(const MfsMigOptions *opts);
int mfs_mig_options_from_job(MfsMigOptions *opts, char *const *job, char **error);

/*
 * What mfs_migration_start() checks of the whole: a target, and each
 * value within its rule; *@chunk is the chunk to use (the default for 0).
 * 0, or -EINVAL / -ERANGE with *@error a sentence, to g_free().
 */
int mfs_mig_options_check(const MfsMigOptions *opts, uint64_t *chunk, char **error);

/*
 * A per-VM job's entry (MfsMigOptions.only): a name of the root, as
 * "vm1.qcow2" or "vm1" ("vm1/" is taken as "vm1").  0 and the name in
 * *@out (g_free()), or -EINVAL and *@error says why.
 */
int mfs_mig_only_name(const char *text, char **out, char **error);

#endif /* MFS_MIG_OPTIONS_H */
