/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * mirrorfs engine internals, shared by the files of lib/ and by the unit
 * tests.  Not installed, not for the daemon.
 */
#ifndef MFS_INT_H
#define MFS_INT_H

#include "mfs.h"

#include <glib.h>
#include <unistd.h>

/* Identity of a backing object: what makes two names one inode. */
typedef struct {
	dev_t dev;
	ino_t ino;
} MfsInodeKey;

struct MfsInode {
	MfsInodeKey key;  /* immutable */
	int fd;           /* O_PATH on the backing object; immutable */
	mode_t type;      /* S_IFMT bits; immutable */
	uint64_t nlookup; /* protected by Mfs.inodes_lock */
};

struct Mfs {
	int root_fd; /* the source directory, opened before any mount over it */
	MfsInode root;

	GMutex inodes_lock;
	GHashTable *inodes; /* MfsInodeKey -> MfsInode; protected by inodes_lock */
};

struct MfsFile {
	MfsInode *inode;
	int fd;
	bool direct; /* opened with O_DIRECT: buffers must be aligned */
};

struct MfsDir {
	DIR *dp;
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

#endif /* MFS_INT_H */
