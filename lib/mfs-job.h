/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * What a job (a migration) may see of the served tree and do to it.  The
 * tree knows nothing of jobs: it reports its changes to an observer that
 * a job registers, and lets a job repoint it through the functions below,
 * each named for where it may be called.
 *
 * "Frozen": with mfs_freeze_namespace() held: no namespace change runs.
 * "Stunned": frozen and mfs_stun() done: no operation but reads runs, so
 * the tables of inodes and files hold still and may be read and changed.
 */
#ifndef MFS_JOB_H
#define MFS_JOB_H

#include "mfs.h"
#include "mirror-file.h"
#include "util.h"

#include <glib.h>

/*
 * The changes a job mirrors.  Each is called after the change succeeded on
 * the served tree, with the namespace frozen for everyone else, when
 * mirrors_changes() said yes as the change began.  mirror_of() is called
 * at the lookup that makes a regular file's inode, under the inode table's
 * lock: it returns the MirrorFile through which that file's data changes
 * go, or NULL.
 */
typedef struct {
	MirrorFile *(*mirror_of)(void *opaque, const MfsInodeKey *key);
	bool (*mirrors_changes)(void *opaque);
	/* A regular file made (create, mknod); @src_fd any descriptor of it. */
	void (*created)(void *opaque, MfsInode *parent, const char *name, const struct stat *st,
	                int src_fd);
	/* A directory, symlink or special file made. */
	void (*node_made)(void *opaque, MfsInode *parent, const char *name, const MfsEntry *e,
	                  const MfsNodeSpec *spec);
	void (*linked)(void *opaque, MfsInode *inode, MfsInode *newparent, const char *newname);
	/* @gone: what the name was, if other names or handles keep it; else NULL. */
	void (*removed)(void *opaque, MfsInode *parent, const char *name, bool dir,
	                const struct stat *gone);
	void (*renamed)(void *opaque, MfsInode *parent, const char *name, MfsInode *newparent,
	                const char *newname, unsigned int flags, const struct stat *replaced);
	/*
	 * Before a rename (@inode NULL) or a link of @inode (@parent and @name
	 * NULL): whether it would carry an object into or out of what the job
	 * moves.  The change is then refused (EXDEV), as across file systems.
	 * NULL: nothing crosses.
	 */
	bool (*crosses)(void *opaque, MfsInode *inode, MfsInode *parent, const char *name,
	                MfsInode *newparent, const char *newname);
	/* Owner, mode or times (MFS_SET_*, never MFS_SET_SIZE: data goes by the mirror). */
	void (*attr_changed)(void *opaque, MfsInode *inode, int to_set);
	void (*xattr_set)(void *opaque, MfsInode *inode, const char *name, const void *value,
	                  size_t size, int flags);
	void (*xattr_removed)(void *opaque, MfsInode *inode, const char *name);
} MfsObserver;

/*
 * How many jobs may observe one tree at once.  Each moves its own files
 * (mirror_of() answers for disjoint sets), so a change reaches each job
 * that mirrors it, and a file at most one job's mirror.
 */
#define MFS_MAX_JOBS 16

/* Register @obs for @opaque (a job), after those registered; stunned.  -EBUSY when full. */
int mfs_observe_stunned(Mfs *fs, const MfsObserver *obs, void *opaque);
/* Unregister @opaque's observer, if registered; stunned. */
void mfs_unobserve_stunned(Mfs *fs, void *opaque);

/*
 * The jobs kept on the tree so that their status outlasts them, oldest
 * first: a new array, the jobs not referenced (they live until
 * mfs_drop_job_stunned(), or the tree).  The tree frees those left with
 * the @job_free given to mfs_keep_job_stunned(), and never looks inside.
 * mfs_jobs() takes the namespace lock to read: not when frozen.
 */
GPtrArray *mfs_jobs(Mfs *fs);
GPtrArray *mfs_jobs_frozen(Mfs *fs);
void mfs_keep_job_stunned(Mfs *fs, void *job, void (*job_free)(void *job));
/* No longer keep @job: the caller frees it, once thawed. */
void mfs_drop_job_stunned(Mfs *fs, void *job);

/*
 * Who to tell when the job has news (an event: mig-events.c), e.g. the
 * control server: @fn(@opaque), from the job's threads, under a lock of
 * its own (once unset, @fn is not running): it must only wake its own,
 * at once.  NULL: none.
 */
void mfs_set_job_notify(Mfs *fs, void (*fn)(void *opaque), void *opaque);
void mfs_job_notify(Mfs *fs);

/* Hold off (and let go) every namespace change: the tree walk, the stuns. */
void mfs_freeze_namespace(Mfs *fs);
void mfs_thaw_namespace(Mfs *fs);
/* Frozen: wait for every operation under way, and hold off new ones but reads. */
void mfs_stun(Mfs *fs);
void mfs_unstun(Mfs *fs);

/*
 * The directory served (mfs_served_dir()) and, in *@fd, a duplicate of
 * its root descriptor (-1 if none could be made; the caller closes it),
 * read together, not frozen.
 */
char *mfs_served_dir_dup_fd(Mfs *fs, int *fd);
/* The directory served (mfs_served_dir()), frozen: the caller's to g_free(). */
char *mfs_served_dir_frozen(Mfs *fs);
/* The served root's descriptor (O_PATH), valid as long as the tree; it changes at a swap. */
int mfs_root_fd(Mfs *fs);
/* The daemon's own mount (mfs_set_mount_dev()), if known. */
bool mfs_mount_dev(Mfs *fs, dev_t *dev);
/* How many reads the mount has served, ever (the copier's measure of a busy guest). */
uint64_t mfs_reads_served(Mfs *fs);

/* Inodes.  Their fields change only stunned, so these may be read inside an operation too. */
int mfs_inode_fd(const MfsInode *inode);
MfsInodeKey mfs_inode_key(const MfsInode *inode);
mode_t mfs_inode_type(const MfsInode *inode);

/*
 * Every inode the table holds, or every open file; stunned.  The stun
 * freezes the tables (lookup, forget, open and release pass the gate), so
 * the caller may make system calls on them without any lock.
 */
GPtrArray *mfs_inodes_stunned(Mfs *fs);
GPtrArray *mfs_files_stunned(Mfs *fs);

/* Route @inode's data changes through @mf (NULL: straight to its object); stunned. */
void mfs_inode_set_mirror_stunned(MfsInode *inode, MirrorFile *mf);
MirrorFile *mfs_inode_mirror_stunned(const MfsInode *inode);

/*
 * Point inodes at other objects; stunned.  For each entry with fd >= 0
 * the inode takes fd and key, and fd gets the descriptor it had (the
 * caller closes it, outside any lock).  Mirrors stay: each job detaches
 * its own (mfs_inode_set_mirror_stunned()).
 * All in one pass: a new key may be another inode's old one.
 */
typedef struct {
	MfsInode *inode;
	int fd;
	MfsInodeKey key;
} MfsRepoint;
void mfs_repoint_inodes_stunned(Mfs *fs, MfsRepoint *r, guint n);

MfsInode *mfs_file_inode(const MfsFile *file);
/* The open(2) flags the file was opened with. */
int mfs_file_open_flags(const MfsFile *file);
/*
 * Point @file at @fd and return the descriptor it had; then retire that
 * one, closing it once no read that may hold it is under way, or at
 * release if that takes past @deadline.  Stunned.
 */
int mfs_file_swap_fd_stunned(MfsFile *file, int fd);
void mfs_file_retire_fd_stunned(MfsFile *file, int old_fd, gint64 deadline);

/*
 * Entries @names (NULL-ended) of the root now live in @dir, whose
 * descriptor is @dir_fd (duplicated): recorded durably in the root first
 * (the point of no return for them: 0), then served from there.  On an
 * error nothing changed.  Stunned; the caller flushes the root
 * (journal_sync_dir()).
 */
int mfs_place_stunned(Mfs *fs, char *const *names, const char *dir, int dir_fd);
/* Where entry @name of the root lives, if placed, else NULL.  Frozen. */
const char *mfs_placed_dir_frozen(Mfs *fs, const char *name);
/*
 * Remove a per-VM job's records left in @dir (@dir_fd), the home of
 * placed entries, by a crash in its switch, unless the source records a
 * job under way into @dir (mfs-place.c).
 */
void mfs_placement_home_settle(Mfs *fs, const char *dir, int dir_fd);
/* mfs_placements(), frozen. */
char **mfs_placements_frozen(Mfs *fs, char ***dirs);
/* A placed entry of the root, any, or NULL when none is.  Frozen. */
const char *mfs_a_placed_name_frozen(Mfs *fs);

/* The tree now lives in @dir; its claim is @lock_fd (the old one is closed).  Stunned. */
void mfs_moved_stunned(Mfs *fs, const char *dir, int lock_fd);

#endif /* MFS_JOB_H */
