/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * mirrorfs engine internals, shared by the files of lib/ and by the unit
 * tests.  Not installed, not for the daemon.
 */
#ifndef MFS_INT_H
#define MFS_INT_H

#include "gate.h"
#include "journal.h"
#include "mfs-job.h"
#include "mirror-file.h"
#include "util.h"

#include <dirent.h>
#include <glib.h>
#include <unistd.h>

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

	MfsRwLock ns_lock; /* namespace changes; who takes it how, and when: lock.h */
	/* The jobs' observers (mfs-job.h), in the order registered; change stunned. */
	struct {
		const MfsObserver *obs;
		void *opaque;
	} observers[MFS_MAX_JOBS];
	unsigned n_observers;
	/* The jobs kept for their status (mfs_jobs()), oldest first; change stunned. */
	GPtrArray *jobs;
	void (*job_free)(void *job);
	/* Who hears of the job's news (mfs_job_notify()). */
	MfsMutex job_notify_lock;            /* held while one is told: a leaf */
	void (*job_notify_fn)(void *opaque); /* protected by job_notify_lock */
	void *job_notify_opaque;             /* protected by job_notify_lock */

	/* Entries of the root served from elsewhere (mfs-place.c), or NULL; stun. */
	GHashTable *placed;

	MfsMutex inodes_lock;
	GHashTable *inodes; /* MfsInodeKey -> MfsInode; protected by inodes_lock */

	MfsMutex files_lock;
	GHashTable *files;     /* open MfsFiles, repointed at the switch; protected by files_lock */
	uint64_t reads_closed; /* reads served by released files; protected by files_lock */

	int lock_fd;     /* claims the directory served (claim.c); moves at a switch */
	dev_t mount_dev; /* the daemon's own mount, when mount_dev_set */
	bool mount_dev_set;
	const char *transport; /* atomic: one of the MFS_TRANSPORT_ names, or NULL */
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

/* An entry of a listing made at opendir (mfs_root_listing_inside()). */
typedef struct {
	char *name;
	ino_t ino;
	unsigned char type;
} MfsListed;

struct MfsDir {
	DIR *dp;
	GArray *listing;      /* of MfsListed: the root's, when it has placements; else NULL */
	Mfs *fs;              /* to list the root again at a rewind */
	bool listed;          /* an entry of the listing was returned: a rewind lists again */
	MfsInode *inode;      /* the kernel holds a lookup count while the handle is open */
	bool root;            /* hide the journal */
	off_t offset;         /* where dp stands */
	struct dirent *entry; /* read but not yet returned, or NULL */
};

/* Close a released (or never released) file's descriptors and free it. */
void mfs_file_free(MfsFile *file);

/* Getattr inside the gate: through @file's descriptor when given. */
int mfs_getattr_inside(MfsInode *inode, MfsFile *file, struct stat *out);
/* Lookup and forget for callers already inside the gate. */
int mfs_lookup_inside(Mfs *fs, MfsInode *parent, const char *name, MfsEntry *out);
void mfs_forget_inside(Mfs *fs, MfsInode *inode, uint64_t nlookup);
/*
 * Truncate a regular file, inside the gate: through its mirror when it has
 * one.  @fd is open for writing, or -1 to open the inode's path for it.
 */
int mfs_truncate_inside(MfsInode *inode, int fd, off_t size);
/*
 * The observers a namespace change is reported to: bit i for observers[i],
 * taken as the change begins.  Observers come and go only frozen, so the
 * bits hold for the change.
 */
typedef uint32_t MfsObserved;
/*
 * Enter a namespace change: ns_lock, then the gate.  Returns the observers
 * that mirror it (then ns_lock is held exclusive), 0 when none does.
 */
MfsObserved mfs_ns_begin(Mfs *fs);
void mfs_ns_end(Mfs *fs, MfsObserved mirrored);
/*
 * Report a change to each observer in @mirrored (mfs_ns_begin()), under
 * ns_lock exclusive, which keeps them in place: @event(opaque, ...).
 */
#define MFS_OBSERVE(fs, mirrored, event, ...)                                                      \
	do {                                                                                       \
		for (unsigned obs_i_ = 0; obs_i_ < (fs)->n_observers; obs_i_++)                    \
			if ((mirrored) & (1u << obs_i_))                                           \
				(fs)->observers[obs_i_].obs->event((fs)->observers[obs_i_].opaque, \
				                                   __VA_ARGS__);                   \
	} while (0)

/* Placements (mfs-place.c): read at mfs_new(), freed with the tree. */
int mfs_placements_load(Mfs *fs, char **error);
void mfs_placements_free(Mfs *fs);
/*
 * The directory that holds @parent's entry @name: @parent's own, but for
 * a placed entry of the root.  Inside the gate.
 */
int mfs_entry_dir_fd(Mfs *fs, MfsInode *parent, const char *name);
/*
 * The root's entries when some are placed, read at once from @dp (the
 * source root's) and from each placed entry's home; the offset of entry
 * i is i + 1.  NULL when nothing is placed, or on an error (*@err).
 * Inside the gate.
 */
GArray *mfs_root_listing_inside(Mfs *fs, DIR *dp, int *err);
/* Flush the directories placed entries live in (the root's fsyncdir); inside the gate. */
int mfs_placements_sync_inside(Mfs *fs, bool datasync);

/* The journal's name is not part of the tree at its root. */
bool mfs_is_journal(Mfs *fs, MfsInode *parent, const char *name);

#endif /* MFS_INT_H */
