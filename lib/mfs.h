/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * mirrorfs engine: the public interface of lib/.
 *
 * An Mfs is a passthrough view of one source directory, addressed the way
 * the FUSE low-level API addresses it: by inode objects that the caller
 * keeps a lookup count on, and by open file and directory handles.  Every
 * function returns 0, a count, or -errno, and tells its caller, not the
 * log, what failed.  They log (through GLib, which the daemon sends to
 * syslog or stderr) only what no caller asked about: mfs_claim() warns
 * when it cannot re-take a claim after a fork; while a job observes
 * them (mfs-job.h), the namespace and attribute changes (create, mknod,
 * mkdir, symlink, link, unlink, rmdir, rename, setattr, setxattr) warn the
 * first time the target cannot hold an owner, an extended attribute or the
 * times (the job's mig_metadata_lost(), mig-tree.c); and the test hooks that
 * MIRRORFS_TEST_* variables turn on log.  (The migration, migration.h,
 * and the control server, control.h, log their state changes, commands
 * and failures.)  Nothing here depends on libfuse, so the engine is unit
 * tested without a mount.
 *
 * Unless a function says otherwise it may block on I/O and takes no lock
 * that the caller must know about.
 */
#ifndef MFS_H
#define MFS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/types.h>

#define MFS_VERSION "0.1.0"

typedef struct Mfs Mfs;
typedef struct MfsInode MfsInode;
typedef struct MfsFile MfsFile;
typedef struct MfsDir MfsDir;

/* Who asked: new objects are created as this caller. */
typedef struct {
	uid_t uid;
	gid_t gid;
} MfsCred;

/* The result of lookup, create, mkdir, ...: one lookup count on inode. */
typedef struct {
	MfsInode *inode;
	struct stat st;
} MfsEntry;

/* Which fields mfs_setattr() changes; the caller maps its own flags. */
enum {
	MFS_SET_MODE = 1 << 0,
	MFS_SET_UID = 1 << 1,
	MFS_SET_GID = 1 << 2,
	MFS_SET_SIZE = 1 << 3,
	MFS_SET_ATIME = 1 << 4,
	MFS_SET_MTIME = 1 << 5,
	MFS_SET_ATIME_NOW = 1 << 6,
	MFS_SET_MTIME_NOW = 1 << 7,
};

/*
 * Open @source_dir and make the passthrough over it.  The directory is
 * opened here, so a caller that mounts on top of it afterwards still sees
 * what lies beneath.
 */
int mfs_new(const char *source_dir, Mfs **out);
/*
 * The same; on a failure in a directory that a journal led to, *@error
 * (if not NULL) says which journal and which directory, else it stays NULL.
 */
int mfs_new_explained(const char *source_dir, Mfs **out, char **error);
/*
 * Claim the directory served, so that no second daemon serves it at the
 * same time: an exclusive flock(2) on a descriptor of its own, which a
 * switch moves to the target.  -EWOULDBLOCK when another process holds
 * it; *@error then names it (pid, and mount point when found).  Called
 * again (after a fork) it re-takes the claims for the calling process,
 * so that /proc/locks names the process that holds them.
 */
int mfs_claim(Mfs *fs, char **error);
/*
 * The device number of the daemon's own mount, learnt after mounting
 * (without sending it a request): a migration target on it would send
 * the daemon's writes back to itself.  Set before any thread starts.
 */
void mfs_set_mount_dev(Mfs *fs, dev_t dev);
/*
 * The transport the daemon serves requests through, for mirrorfs-status:
 * one of these names.  The daemon sets it as it changes; lock free.
 */
#define MFS_TRANSPORT_DEV_FUSE "/dev/fuse"
#define MFS_TRANSPORT_IO_URING "io_uring"
void mfs_set_transport(Mfs *fs, const char *name);
const char *mfs_transport(Mfs *fs);
/* Regular files the kernel holds open through the mount.  Lock free: a
 * signal handler may call it. */
unsigned mfs_open_files(Mfs *fs);
/*
 * Whether @mountinfo (a /proc/PID/mountinfo) lists a mirrorfs mount on
 * @mountpoint (canonical): 0 and its device in *@dev (may be NULL, the
 * topmost if several), -ENOENT if none, -EIO if it cannot be read.
 */
int mfs_mirrorfs_mount_dev(const char *mountinfo, const char *mountpoint, dev_t *dev);
/*
 * The directory served: the source, or where a switched migration moved it.
 * A copy, to g_free(): a switch may replace it at any time.
 */
char *mfs_served_dir(Mfs *fs);
/*
 * The entries of the root that per-VM jobs moved, each served from its
 * own directory: their names, NULL-ended, and in *@dirs (if not NULL)
 * where each lives.  g_strfreev() both.
 */
char **mfs_placements(Mfs *fs, char ***dirs);
/* Whether every one of @names (NULL-ended) is placed in @dir (canonical). */
bool mfs_placed_in(Mfs *fs, char *const *names, const char *dir);
void mfs_free(Mfs *fs);
MfsInode *mfs_root(Mfs *fs);
/* Inodes known to the table, the root included: for tests and status. */
unsigned mfs_inode_count(Mfs *fs);

int mfs_lookup(Mfs *fs, MfsInode *parent, const char *name, MfsEntry *out);
/*
 * Drop @nlookup lookup counts; the inode is freed when none remain.  Waits
 * while a switch is stunned, as release does.
 */
void mfs_forget(Mfs *fs, MfsInode *inode, uint64_t nlookup);

/* @file may be NULL; when given its descriptor is used (fstat on open file). */
int mfs_getattr(Mfs *fs, MfsInode *inode, MfsFile *file, struct stat *out);
int mfs_setattr(Mfs *fs, MfsInode *inode, MfsFile *file, const struct stat *attr, int to_set,
                struct stat *out);
int mfs_access(Mfs *fs, MfsInode *inode, int mask, const MfsCred *cred, const gid_t *groups,
               int ngroups);
int mfs_readlink(Mfs *fs, MfsInode *inode, char *buf, size_t size);
int mfs_statfs(Mfs *fs, MfsInode *inode, struct statvfs *out);

int mfs_mknod(Mfs *fs, MfsInode *parent, const char *name, mode_t mode, dev_t rdev,
              const MfsCred *cred, MfsEntry *out);
int mfs_mkdir(Mfs *fs, MfsInode *parent, const char *name, mode_t mode, const MfsCred *cred,
              MfsEntry *out);
int mfs_symlink(Mfs *fs, const char *target, MfsInode *parent, const char *name,
                const MfsCred *cred, MfsEntry *out);
int mfs_link(Mfs *fs, MfsInode *inode, MfsInode *newparent, const char *newname, MfsEntry *out);
int mfs_unlink(Mfs *fs, MfsInode *parent, const char *name);
int mfs_rmdir(Mfs *fs, MfsInode *parent, const char *name);
int mfs_rename(Mfs *fs, MfsInode *parent, const char *name, MfsInode *newparent,
               const char *newname, unsigned int flags);

/* Extended attributes: get and list return the size, as getxattr(2) does. */
int mfs_getxattr(Mfs *fs, MfsInode *inode, const char *name, void *buf, size_t size);
int mfs_listxattr(Mfs *fs, MfsInode *inode, char *buf, size_t size);
int mfs_setxattr(Mfs *fs, MfsInode *inode, const char *name, const void *value, size_t size,
                 int flags);
int mfs_removexattr(Mfs *fs, MfsInode *inode, const char *name);

/* Open files.  @flags are open(2) flags; O_DIRECT is honoured. */
int mfs_open(Mfs *fs, MfsInode *inode, int flags, MfsFile **out);
int mfs_create(Mfs *fs, MfsInode *parent, const char *name, mode_t mode, int flags,
               const MfsCred *cred, MfsEntry *entry, MfsFile **out);
void mfs_release(Mfs *fs, MfsFile *file);
bool mfs_file_is_direct(const MfsFile *file);
/*
 * Whether the kernel may hand this open's reads and writes straight to
 * us, past its page cache (FUSE's FOPEN_DIRECT_IO): the guest opened it
 * with O_DIRECT, and writing the file drops no privileges.  See
 * mfs-file.c.
 */
bool mfs_file_direct_io(const MfsFile *file);

/*
 * Read up to @size bytes at @off into a buffer owned by the calling thread
 * (aligned for O_DIRECT, valid until this thread's next read); *@data
 * points at it.  Returns the byte count.
 */
ssize_t mfs_file_read(MfsFile *file, size_t size, off_t off, const void **data);
/* The same into @buf, which must suit O_DIRECT (MFS_DIRECT_ALIGN) on a direct-I/O file. */
ssize_t mfs_file_read_into(MfsFile *file, void *buf, size_t size, off_t off);
/* @buf may be unaligned; O_DIRECT files bounce it through an aligned buffer. */
ssize_t mfs_file_write(Mfs *fs, MfsFile *file, const void *buf, size_t size, off_t off);
int mfs_file_flush(Mfs *fs, MfsFile *file);
int mfs_file_fsync(Mfs *fs, MfsFile *file, bool datasync);
int mfs_file_fallocate(Mfs *fs, MfsFile *file, int mode, off_t off, off_t len);
off_t mfs_file_lseek(Mfs *fs, MfsFile *file, off_t off, int whence);
ssize_t mfs_file_copy_range(Mfs *fs, MfsFile *in, off_t off_in, MfsFile *out, off_t off_out,
                            size_t len, unsigned int flags);

/* Directories. */
int mfs_opendir(Mfs *fs, MfsInode *inode, MfsDir **out);
void mfs_releasedir(Mfs *fs, MfsDir *dir);
int mfs_fsyncdir(Mfs *fs, MfsDir *dir, bool datasync);
/*
 * Position @dir at @off (0, or an offset returned by an earlier entry) and
 * return the next entry, with the offset of the one after it in *@next_off.
 * Returns 1 with an entry, 0 at the end, -errno on error.
 */
int mfs_readdir(MfsDir *dir, off_t off, const char **name, ino_t *ino, unsigned char *type,
                off_t *next_off);

/* Utilities shared by the daemon, the CLIs and the tests. */

/*
 * The largest size or rate: every one travels as a signed 64-bit JSON
 * number (the control protocol, the status).
 */
#define MFS_MAX_SIZE ((uint64_t)INT64_MAX)
/*
 * Parse "4096", "64K", "1M", "2G", "1T" (powers of 1024) into bytes;
 * -ERANGE over MFS_MAX_SIZE.
 */
int mfs_parse_size(const char *text, uint64_t *out);
/*
 * File names are bytes, JSON strings UTF-8: the control protocol carries
 * a name escaped, each byte that is not valid UTF-8, a control character
 * (C0, DEL, C1) or a backslash written \xHH (lowercase hex).  Lossless:
 * mfs_unescape_name() gives the bytes back (-EINVAL on a malformed
 * escape or one of a NUL byte).  Both return a string to g_free().
 */
char *mfs_escape_name(const char *name);
int mfs_unescape_name(const char *text, char **out);
/* Parse "50" or "50%", a whole percentage from 0 to @max. */
int mfs_parse_percent(const char *text, unsigned max, unsigned *out);
/*
 * Path containment, the one rule for every check of it: is @inner the
 * path @outer itself or a path below it?  Returns NULL if neither, else
 * @inner's path relative to @outer, a pointer into @inner: "" when the
 * two are the same path, "b/c" for "/a/b/c" within "/a".  So a caller that
 * wants "strictly below" tests for a non-empty result.  "/" holds every
 * absolute path; "/a" does not hold "/ab".
 *
 * Both must be absolute and canonical, as realpath(3) or
 * g_canonicalize_filename() make them: no "." or ".." components, no
 * repeated or trailing slash (but "/" itself).  Lexical only: it looks at
 * the strings, never at the file system, so it knows nothing of symlinks
 * or bind mounts (compare identities, st_dev and st_ino, for those).
 */
const char *mfs_path_within(const char *inner, const char *outer);

#endif /* MFS_H */
