/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Open files: data I/O on the backing descriptor.
 *
 * O_DIRECT is kept on the backing open: a guest started with cache=none
 * asked for no host page cache, and the passthrough should not silently
 * add one.  O_DIRECT needs aligned memory: reads land in a per-thread
 * aligned buffer.  The daemon's loop hands us write data page aligned;
 * data that is not (libfuse's own loop) is bounced through an aligned
 * buffer, once: a mirrored write sends the same memory to both sides.
 * Offsets and lengths are passed on unchanged: a misaligned
 * O_DIRECT request fails with EINVAL exactly as it would natively.
 *
 * O_APPEND is dropped from the backing open: the kernel has already put
 * an appending write at the end of the file and tells us the offset, and
 * pwrite(2) on an O_APPEND descriptor would ignore it.
 *
 * Reads take no lock and do not pass the gate: they load the descriptor
 * atomically, and a switch swaps it while no write can run, when source
 * and target hold the same bytes.  Everything else passes the gate.  A
 * read counts itself in its file, so that a migration's copier knows the
 * guest is using the disk (mfs_reads_served).
 *
 * An O_DIRECT open is offered to the kernel as a direct-I/O file (FUSE's
 * FOPEN_DIRECT_IO): the guest asked for no page cache, so it changes
 * nothing it sees, and the kernel's direct path skips two costs of its
 * cached path.  That path sends a GETXATTR of security.capability before
 * every write (to drop file capabilities), one more round trip each; and
 * it holds the inode's lock exclusively for a whole synchronous write,
 * so that a guest's I/O threads (QEMU's aio=threads) write one at a
 * time.  The direct path also leaves dropping privileges on write to the
 * daemon.  File capabilities go anyway: the backing file system drops
 * them when we write.  The set-user-ID and set-group-ID bits it keeps,
 * for us, root; the kernel asks us to drop them through a flag libfuse
 * 3.14 does not pass on.  A file with either bit keeps the cached path,
 * where the kernel drops them itself.  (A bit set later, while the file
 * is open, is not dropped by that open's writes.)
 */
#define _GNU_SOURCE
#include "mfs-int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Whether a guest's write to @fd may drop bits that ours would keep (see above). */
static bool writes_drop_mode_bits(int fd)
{
	struct stat st;

	/* Unknown: keep the kernel's checks. */
	return fstat(fd, &st) < 0 || (st.st_mode & (S_ISUID | S_ISGID));
}

static MfsFile *file_new(Mfs *fs, MfsInode *inode, int fd, int flags)
{
	MfsFile *file = g_new0(MfsFile, 1);

	file->inode = inode;
	file->fd = fd;
	file->flags = flags;
	file->direct = flags & O_DIRECT;
	file->direct_io = file->direct && !writes_drop_mode_bits(fd);
	mfs_mutex_lock(&fs->files_lock);
	g_hash_table_add(fs->files, file);
	g_atomic_int_inc(&fs->open_files);
	mfs_mutex_unlock(&fs->files_lock);
	return file;
}

static int backing_flags(int flags)
{
	return (flags & ~(O_NOFOLLOW | O_APPEND | O_CREAT | O_EXCL)) | O_CLOEXEC;
}

/*
 * O_TRUNC of a mirrored file goes through its mirror, as a truncate does:
 * the open itself would truncate the source alone.  @fd is the new
 * descriptor; one open only for reading cannot truncate, so then the
 * inode's own path is opened for it.
 */
static int truncate_at_open(MfsInode *inode, int fd, int flags)
{
	return mfs_truncate_inside(inode, (flags & O_ACCMODE) == O_RDONLY ? -1 : fd, 0);
}

int mfs_open(Mfs *fs, MfsInode *inode, int flags, MfsFile **out)
{
	char path[MFS_PROC_FD_LEN];
	bool trunc_mirrored;
	int fd, ret = 0;

	gate_enter(&fs->gate);
	trunc_mirrored = (flags & O_TRUNC) && inode->mirror;
	mfs_proc_fd_path(inode->fd, path);
	fd = open(path, backing_flags(flags) & ~(trunc_mirrored ? O_TRUNC : 0));
	if (fd < 0)
		ret = -errno;
	else if (trunc_mirrored)
		ret = truncate_at_open(inode, fd, flags);
	if (ret == 0)
		*out = file_new(fs, inode, fd, flags);
	else if (fd >= 0)
		close(fd);
	gate_leave(&fs->gate);
	return ret;
}

int mfs_create(Mfs *fs, MfsInode *parent, const char *name, mode_t mode, int flags,
               const MfsCred *cred, MfsEntry *entry, MfsFile **out)
{
	MfsCredSaved saved;
	MfsObserved mirrored;
	int fd, ret;

	if (mfs_is_journal(fs, parent, name))
		return -EPERM;
	mirrored = mfs_ns_begin(fs);
	mfs_cred_enter(cred, &saved);
	/* An existing name's O_TRUNC is the mirror's to do, below. */
	fd = openat(mfs_entry_dir_fd(fs, parent, name), name,
	            (backing_flags(flags) & ~(mirrored ? O_TRUNC : 0)) | O_CREAT | (flags & O_EXCL),
	            mode);
	ret = fd < 0 ? -errno : 0;
	mfs_cred_leave(&saved);
	if (ret == 0 && mirrored) {
		/* Before the lookup, so that the new inode finds its mirror at birth. */
		struct stat st;

		if (fstat(fd, &st) == 0)
			MFS_OBSERVE(fs, mirrored, created, parent, name, &st, fd);
	}
	if (ret == 0)
		ret = mfs_lookup_inside(fs, parent, name, entry);
	if (ret == 0 && mirrored && (flags & O_TRUNC)) {
		ret = truncate_at_open(entry->inode, fd, flags);
		if (ret < 0)
			mfs_forget_inside(fs, entry->inode, 1);
	}
	if (ret == 0) {
		*out = file_new(fs, entry->inode, fd, flags);
	} else if (fd >= 0) {
		close(fd);
	}
	mfs_ns_end(fs, mirrored);
	return ret;
}

void mfs_release(Mfs *fs, MfsFile *file)
{
	if (!file)
		return;
	/* The switch holds every open file from its preparation to the swap. */
	gate_enter(&fs->gate);
	mfs_mutex_lock(&fs->files_lock);
	g_hash_table_remove(fs->files, file);
	g_atomic_int_dec_and_test(&fs->open_files);
	fs->reads_closed += (guint)g_atomic_int_get(&file->reads);
	mfs_mutex_unlock(&fs->files_lock);
	gate_leave(&fs->gate);
	mfs_file_free(file);
}

void mfs_file_free(MfsFile *file)
{
	close(file->fd);
	if (file->parked) {
		for (guint i = 0; i < file->parked->len; i++)
			close(g_array_index(file->parked, int, i));
		g_array_free(file->parked, TRUE);
	}
	g_free(file);
}

GPtrArray *mfs_files_stunned(Mfs *fs)
{
	return mfs_table_keys(fs->files, &fs->files_lock);
}

MfsInode *mfs_file_inode(const MfsFile *file)
{
	return file->inode;
}

int mfs_file_open_flags(const MfsFile *file)
{
	return file->flags;
}

uint64_t mfs_reads_served(Mfs *fs)
{
	GHashTableIter it;
	gpointer file;
	uint64_t reads;

	mfs_mutex_lock(&fs->files_lock);
	reads = fs->reads_closed;
	g_hash_table_iter_init(&it, fs->files);
	while (g_hash_table_iter_next(&it, &file, NULL))
		reads += (guint)g_atomic_int_get(&((MfsFile *)file)->reads);
	mfs_mutex_unlock(&fs->files_lock);
	return reads;
}

bool mfs_file_is_direct(const MfsFile *file)
{
	return file->direct;
}

bool mfs_file_direct_io(const MfsFile *file)
{
	return file->direct_io;
}

/*
 * For tests: with MIRRORFS_TEST_WRITE_HOLD_MS set, every write says how
 * many writes are held with it and waits that long, so that a test sees
 * whether the kernel lets a second write in while one is under way.  It
 * also says whether its data came aligned, or must be copied to reach an
 * O_DIRECT descriptor.
 */
static void test_hold_write(Mfs *fs, const void *buf)
{
	gint held = g_atomic_int_add(&fs->test_writes_held, 1) + 1;

	g_message("test: %d writes held, data %s", held,
	          (uintptr_t)buf % MFS_DIRECT_ALIGN ? "unaligned" : "aligned");
	g_usleep(fs->test_write_hold_us);
	g_atomic_int_add(&fs->test_writes_held, -1);
}

static ssize_t read_full(int fd, char *buf, size_t size, off_t off)
{
	size_t done = 0;

	/*
	 * The kernel takes a short read for the end of the file: fill the
	 * request, and let an error mid-way fail all of it (the kernel then
	 * retries page by page, and gets the data that can be read).
	 */
	while (done < size) {
		ssize_t n = pread(fd, buf + done, size - done, off + (off_t)done);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			break;
		done += n;
	}
	return (ssize_t)done;
}

ssize_t mfs_file_read_into(MfsFile *file, void *buf, size_t size, off_t off)
{
	ssize_t ret;
	gint epoch;
	int fd;

	/* Counted in the epoch it began in: see mfs_file_swap_fd_stunned(). */
	epoch = g_atomic_int_get(&file->epoch) & 1;
	g_atomic_int_inc(&file->readers[epoch]);
	fd = g_atomic_int_get(&file->fd);
	ret = read_full(fd, buf, size, off);
	g_atomic_int_add(&file->readers[epoch], -1);
	if (ret < 0)
		return ret;
	/* Atomic, not locked: one open image is read by many threads at once. */
	g_atomic_int_inc((gint *)&file->reads);
	return ret;
}

ssize_t mfs_file_read(MfsFile *file, size_t size, off_t off, const void **data)
{
	char *buf = mfs_thread_buffer(size);

	if (!buf)
		return -ENOMEM;
	*data = buf;
	return mfs_file_read_into(file, buf, size, off);
}

/*
 * The switch repoints an open file while reads may be under way on the
 * old descriptor: they pass no gate.  Each read counts itself in the
 * epoch it loaded before the descriptor; the swap stores the new
 * descriptor, then starts a new epoch, so a read counted in the old one
 * may hold the old descriptor and one counted in the new one cannot.
 * When the old epoch's count falls to zero, the old descriptor is free.
 */
int mfs_file_swap_fd_stunned(MfsFile *file, int fd)
{
	int old = file->fd;

	g_atomic_int_set(&file->fd, fd);
	g_atomic_int_inc(&file->epoch);
	return old;
}

void mfs_file_retire_fd_stunned(MfsFile *file, int old_fd, gint64 deadline)
{
	gint *readers = &file->readers[(g_atomic_int_get(&file->epoch) - 1) & 1];

	while (g_atomic_int_get(readers) > 0 && g_get_monotonic_time() < deadline)
		g_usleep(50);
	if (g_atomic_int_get(readers) == 0) {
		close(old_fd);
		return;
	}
	/*
	 * A read still runs on it (a slow source disk): the release closes it.
	 * One parked at an earlier switch stays parked too: its readers, if
	 * any are left, now count in the same parity as the new epoch's.
	 */
	if (!file->parked)
		file->parked = g_array_new(FALSE, FALSE, sizeof(int));
	g_array_append_val(file->parked, old_fd);
}

ssize_t mfs_file_write(Mfs *fs, MfsFile *file, const void *buf, size_t size, off_t off)
{
	MirrorFile *mirror;
	ssize_t n;

	if (G_UNLIKELY(fs->test_write_hold_us))
		test_hold_write(fs, buf);
	if (file->direct && ((uintptr_t)buf % MFS_DIRECT_ALIGN)) {
		void *bounce = mfs_thread_buffer(size);

		if (!bounce)
			return -ENOMEM;
		memcpy(bounce, buf, size);
		buf = bounce;
	}
	gate_enter(&fs->gate);
	mirror = file->inode->mirror;
	if (mirror) {
		n = mirror_file_write(mirror, file->fd, buf, size, off);
	} else {
		n = pwrite(file->fd, buf, size, off);
		n = n < 0 ? -errno : n;
	}
	gate_leave(&fs->gate);
	return n;
}

int mfs_file_flush(Mfs *fs, MfsFile *file)
{
	int fd, ret;

	/*
	 * close(2) of a duplicate reports what the backing file system defers
	 * to close (NFS write-back errors, for one) without closing ours.
	 */
	gate_enter(&fs->gate);
	fd = dup(file->fd);
	ret = fd < 0 || close(fd) < 0 ? -errno : 0;
	gate_leave(&fs->gate);
	return ret;
}

int mfs_file_fsync(Mfs *fs, MfsFile *file, bool datasync)
{
	int ret;

	gate_enter(&fs->gate);
	if (file->inode->mirror)
		ret = mirror_file_fsync(file->inode->mirror, file->fd, datasync);
	else
		ret = (datasync ? fdatasync(file->fd) : fsync(file->fd)) < 0 ? -errno : 0;
	gate_leave(&fs->gate);
	return ret;
}

int mfs_file_fallocate(Mfs *fs, MfsFile *file, int mode, off_t off, off_t len)
{
	int ret;

	gate_enter(&fs->gate);
	if (file->inode->mirror)
		ret = mirror_file_fallocate(file->inode->mirror, file->fd, mode, off, len);
	else
		ret = fallocate(file->fd, mode, off, len) < 0 ? -errno : 0;
	gate_leave(&fs->gate);
	return ret;
}

off_t mfs_file_lseek(Mfs *fs, MfsFile *file, off_t off, int whence)
{
	off_t res;

	gate_enter(&fs->gate);
	res = lseek(file->fd, off, whence);
	res = res < 0 ? -errno : res;
	gate_leave(&fs->gate);
	return res;
}

ssize_t mfs_file_copy_range(Mfs *fs, MfsFile *in, off_t off_in, MfsFile *out, off_t off_out,
                            size_t len, unsigned int flags)
{
	ssize_t n;

	gate_enter(&fs->gate);
	/*
	 * Into a mirrored file the copy must pass the mirror: EXDEV makes the
	 * kernel fall back to reads and writes through us.
	 */
	if (out->inode->mirror) {
		n = -EXDEV;
	} else {
		n = copy_file_range(in->fd, &off_in, out->fd, &off_out, len, flags);
		n = n < 0 ? -errno : n;
	}
	gate_leave(&fs->gate);
	return n;
}
