/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Helpers that the served tree (mfs*.c) and the migration job (the mig-*
 * files) share, below both of them: object identities, making a node,
 * /proc/self/fd paths, per-thread buffers, running a creation as the
 * caller, claims on directories (claim.c) and the crash tests' hook.
 * Nothing here knows of inodes, files or jobs.
 */
#ifndef MFS_UTIL_H
#define MFS_UTIL_H

#include "lock.h"
#include "mfs.h"

#include <glib.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <unistd.h>

/* Identity of a backing object: what makes two names one inode. */
typedef struct {
	dev_t dev;
	ino_t ino;
} MfsInodeKey;

static inline MfsInodeKey mfs_key_of(const struct stat *st)
{
	return (MfsInodeKey){st->st_dev, st->st_ino};
}

/* GHashTable functions for MfsInodeKey keys. */
guint mfs_inode_key_hash(gconstpointer key);
gboolean mfs_inode_key_equal(gconstpointer a, gconstpointer b);

/* A directory, symlink or special file to make: mkdir, symlink and mknod in one. */
typedef struct {
	mode_t mode; /* with the S_IFMT type bits */
	dev_t rdev;
	const char *link;
} MfsNodeSpec;
int mfs_make_node_at(int dir_fd, const char *name, const MfsNodeSpec *spec);

/*
 * Alignment that O_DIRECT needs of buffers.  4096 covers every logical
 * block size the backing devices of a VM host use.
 */
#define MFS_DIRECT_ALIGN 4096

/* A per-thread buffer of at least @size bytes aligned for O_DIRECT. */
void *mfs_thread_buffer(size_t size);

/* "/proc/self/fd/N" for an O_PATH descriptor, to reach the object itself. */
#define MFS_PROC_FD_LEN 32
void mfs_proc_fd_path(int fd, char buf[MFS_PROC_FD_LEN]);

/* Crash tests: SIGKILL at the Nth arrival at @point (MIRRORFS_TEST_CRASH_AT). */
void mfs_test_crash_point(const char *point);

/* Run the creation of a new object as the caller (fsuid/fsgid), when root. */
typedef struct {
	int uid;
	int gid;
	bool switched;
	bool fsetid_dropped; /* the thread had dropped CAP_FSETID: dropped again at leave */
} MfsCredSaved;
void mfs_cred_enter(const MfsCred *cred, MfsCredSaved *saved);
void mfs_cred_leave(const MfsCredSaved *saved);

/*
 * CAP_FSETID in the calling thread's effective set (capabilities are per
 * thread).  The daemon drops it to let the backing file system clear
 * setuid/setgid on a write as it would for the caller (fuse/transport.c).
 * Returns 1 if it is effective, 0 if not, -errno; setting it returns 0 or
 * -errno (-EPERM: not in the permitted set, as for a daemon not run as root).
 */
int mfs_cap_fsetid(void);
int mfs_cap_fsetid_set(bool effective);

/* The keys of @table, taken under @lock: a snapshot the caller frees. */
GPtrArray *mfs_table_keys(GHashTable *table, MfsMutex *lock);

/* cleanup_close int fd: closed (when >= 0) as it goes out of scope, after a return's value. */
static inline void mfs_close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
}
#define cleanup_close __attribute__((cleanup(mfs_close_fd)))

/*
 * lib/claim.c.  Take an exclusive flock on the directory @dir_fd (any
 * descriptor, O_PATH too) through a descriptor of its own, *@lock_fd:
 * -EWOULDBLOCK when another process holds it.  renew: record the calling
 * process as its holder (after a fork).  holder: who holds the lock on
 * @dir_fd, for a message ("mirrorfs (pid 12, mounted on '/x')").
 */
int mfs_dir_claim(int dir_fd, int *lock_fd);
void mfs_dir_claim_renew(int lock_fd);
char *mfs_dir_claim_holder(int dir_fd);

#endif /* MFS_UTIL_H */
