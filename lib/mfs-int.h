/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * mirrorfs engine internals, shared by the files of lib/ and by the unit
 * tests.  Not installed, not for the daemon.
 */
#ifndef MFS_INT_H
#define MFS_INT_H

#include "gate.h"
#include "journal.h"
#include "migration.h"
#include "mirror-file.h"

#include <dirent.h>
#include <glib.h>
#include <unistd.h>

typedef struct Migration Migration;

/* Identity of a backing object: what makes two names one inode. */
typedef struct {
	dev_t dev;
	ino_t ino;
} MfsInodeKey;

/* A directory, symlink or special file to make: mkdir, symlink and mknod in one. */
typedef struct {
	mode_t mode; /* with the S_IFMT type bits */
	dev_t rdev;
	const char *link;
} MfsNodeSpec;
int mfs_make_node_at(int dir_fd, const char *name, const MfsNodeSpec *spec);

/*
 * Fields marked "stun" change only while the gate is closed (the switch,
 * or attaching mirrors at the start and detaching them at the end): an
 * operation inside the gate may read them without a lock.
 */
struct MfsInode {
	MfsInodeKey key;    /* stun; protected by Mfs.inodes_lock */
	int fd;             /* O_PATH on the backing object; stun */
	mode_t type;        /* S_IFMT bits; immutable */
	uint64_t nlookup;   /* protected by Mfs.inodes_lock */
	MirrorFile *mirror; /* stun, or set at creation under inodes_lock */
};

struct Mfs {
	char *dir;     /* the directory served: the source, or where it moved */
	MfsInode root; /* root.fd opened before any mount over the source */
	MfsGate gate;  /* every operation but read passes it */

	/*
	 * Namespace changes take it shared, or exclusive while a migration
	 * mirrors them (both sides must see them in one order); the tree walk
	 * and the switch take it exclusive.  Taken before the gate, never
	 * after.
	 */
	MfsRwLock ns_lock;
	Migration *mig; /* changes with ns_lock exclusive and the gate closed */

	MfsMutex inodes_lock;
	GHashTable *inodes; /* MfsInodeKey -> MfsInode; protected by inodes_lock */

	MfsMutex files_lock;
	GHashTable *files;     /* open MfsFiles, repointed at the switch; protected by files_lock */
	uint64_t reads_closed; /* reads served by released files; protected by files_lock */

	int lock_fd;     /* claims the directory served (claim.c); moves at a switch */
	dev_t mount_dev; /* the daemon's own mount, when mount_dev_set */
	bool mount_dev_set;
	gint open_files; /* regular files open; atomic, read from a signal handler */

	gulong test_write_hold_us; /* MIRRORFS_TEST_WRITE_HOLD_MS: see test_hold_write() */
	gint test_writes_held;     /* atomic */
};

struct MfsFile {
	MfsInode *inode;
	int fd;          /* read without the gate: g_atomic_int_get; set at the stun */
	GArray *parked;  /* source descriptors a read still used at a switch, or NULL; stun */
	gint epoch;      /* atomic: bumped by each swap of fd */
	gint readers[2]; /* atomic: reads under way, by the parity of the epoch they began in */
	int flags;       /* open(2) flags of the backing open */
	bool direct;     /* opened with O_DIRECT: buffers must be aligned */
	bool direct_io;  /* the kernel may pass its I/O straight: mfs_file_direct_io() */
	guint reads;     /* reads served, for the copier (mfs_reads_served); atomic */
};

struct MfsDir {
	DIR *dp;
	MfsInode *inode;      /* the kernel holds a lookup count while the handle is open */
	bool root;            /* hide the journal */
	off_t offset;         /* where dp stands */
	struct dirent *entry; /* read but not yet returned, or NULL */
};

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
} MfsCredSaved;
void mfs_cred_enter(const MfsCred *cred, MfsCredSaved *saved);
void mfs_cred_leave(const MfsCredSaved *saved);

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
/* The migration's claim on its target: renewed with the daemon's. */
void migration_claim_renew(Migration *mig);

/* lib/migration.c, called by the passthrough with ns_lock held and the
 * gate entered, after the operation succeeded on the source. */
bool migration_active(Migration *mig);
void migration_free(Migration *mig);
MirrorFile *migration_find_mirror(Migration *mig, const MfsInodeKey *key);
void migration_mirror_create(Mfs *fs, MfsInode *parent, const char *name, const struct stat *st,
                             int src_fd);
void migration_mirror_node(Mfs *fs, MfsInode *parent, const char *name, MfsEntry *e,
                           const MfsNodeSpec *spec);
void migration_mirror_link(Mfs *fs, MfsInode *inode, MfsInode *newparent, const char *newname);
void migration_mirror_unlink(Mfs *fs, MfsInode *parent, const char *name, bool dir,
                             const struct stat *gone);
void migration_mirror_rename(Mfs *fs, MfsInode *parent, const char *name, MfsInode *newparent,
                             const char *newname, unsigned int flags, const struct stat *replaced);
void migration_mirror_setattr(Mfs *fs, MfsInode *inode, const struct stat *attr, int to_set);
void migration_mirror_setxattr(Mfs *fs, MfsInode *inode, const char *name, const void *value,
                               size_t size, int flags);
void migration_mirror_removexattr(Mfs *fs, MfsInode *inode, const char *name);

/*
 * The switch, stunned: point @file at @fd and return the descriptor it
 * had; then retire that one, closing it once no read that may hold it is
 * under way, or at release if that takes past @deadline.
 */
int mfs_file_swap_fd_stunned(MfsFile *file, int fd);
void mfs_file_retire_fd_stunned(MfsFile *file, int old_fd, gint64 deadline);
/* Close a released (or never released) file's descriptors and free it. */
void mfs_file_free(MfsFile *file);

/*
 * Every inode the table holds.  Only while stunned: the stun freezes the
 * table (lookup and forget pass the gate), so the caller may then make
 * system calls on them without the table's lock.
 */
GPtrArray *mfs_inodes_stunned(Mfs *fs);

/* Lookup and forget for callers already inside the gate. */
int mfs_lookup_inside(Mfs *fs, MfsInode *parent, const char *name, MfsEntry *out);
void mfs_forget_inside(Mfs *fs, MfsInode *inode, uint64_t nlookup);
/*
 * Truncate a regular file, inside the gate: through its mirror when it has
 * one.  @fd is open for writing, or -1 to open the inode's path for it.
 */
int mfs_truncate_inside(MfsInode *inode, int fd, off_t size);
/*
 * Enter a namespace change: ns_lock, then the gate.  Returns whether the
 * change must be mirrored (then ns_lock is held exclusive).
 */
bool mfs_ns_begin(Mfs *fs);
void mfs_ns_end(Mfs *fs, bool mirrored);

/*
 * How many reads the mount has served, ever: the guest's reads pass no
 * lock and no MirrorFile, and the copier counts them here to know whether
 * the guest used the disk while it copied a chunk.
 */
uint64_t mfs_reads_served(Mfs *fs);

/* The journal's name is not part of the tree at its root. */
bool mfs_is_journal(Mfs *fs, MfsInode *parent, const char *name);

#endif /* MFS_INT_H */
