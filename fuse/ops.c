/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * FUSE low-level callbacks.  Each one decodes the request, calls the
 * engine in lib/ and replies; none of them holds a lock across a reply.
 * Node ids are MfsInode pointers, and file handles MfsFile or MfsDir
 * pointers, as in libfuse's passthrough_ll.
 */
#define _GNU_SOURCE
#include "mirrorfs.h"
#include "transport.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include <glib.h>
#include <linux/fuse.h>

static Daemon *daemon_of(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

static MfsInode *inode_of(fuse_req_t req, fuse_ino_t ino)
{
	if (ino == FUSE_ROOT_ID)
		return mfs_root(daemon_of(req)->fs);
	return (MfsInode *)(uintptr_t)ino;
}

static fuse_ino_t ino_of(Daemon *d, MfsInode *inode)
{
	return inode == mfs_root(d->fs) ? FUSE_ROOT_ID : (fuse_ino_t)(uintptr_t)inode;
}

static MfsFile *file_of(struct fuse_file_info *fi)
{
	return fi ? (MfsFile *)(uintptr_t)fi->fh : NULL;
}

static MfsCred cred_of(fuse_req_t req)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);

	return (MfsCred){.uid = ctx->uid, .gid = ctx->gid};
}

static struct fuse_entry_param entry_param(Daemon *d, const MfsEntry *e)
{
	return (struct fuse_entry_param){
	    .ino = ino_of(d, e->inode),
	    .attr = e->st,
	    .attr_timeout = d->timeout,
	    .entry_timeout = d->timeout,
	};
}

/* Reply with a new entry; if the kernel is gone, drop the count we took. */
static void reply_entry(fuse_req_t req, int ret, const MfsEntry *e)
{
	Daemon *d = daemon_of(req);
	struct fuse_entry_param p;

	if (ret < 0) {
		fuse_reply_err(req, -ret);
		return;
	}
	p = entry_param(d, e);
	if (fuse_reply_entry(req, &p) < 0)
		mfs_forget(d->fs, e->inode, 1);
}

static void reply_status(fuse_req_t req, int ret)
{
	fuse_reply_err(req, ret < 0 ? -ret : 0);
}

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
	(void)userdata;
	/* Requests of up to 1 MiB: the size libfuse 3.14's buffers allow. */
	conn->max_write = 1 << 20;
	conn->max_readahead = 1 << 20;
	/*
	 * The kernel clears setuid bits itself on write; our writes come from
	 * root, whom the backing file system would let keep them.
	 */
	conn->want &= ~FUSE_CAP_HANDLE_KILLPRIV;
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	Daemon *d = daemon_of(req);
	MfsEntry e;
	int ret = mfs_lookup(d->fs, inode_of(req, parent), name, &e);

	if (ret == -ENOENT) {
		/* Cache the miss: QEMU and others probe names that are not there. */
		struct fuse_entry_param p = {.ino = 0, .entry_timeout = d->timeout};

		fuse_reply_entry(req, &p);
		return;
	}
	reply_entry(req, ret, &e);
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	mfs_forget(daemon_of(req)->fs, inode_of(req, ino), nlookup);
	fuse_reply_none(req);
}

static void op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
	for (size_t i = 0; i < count; i++)
		mfs_forget(daemon_of(req)->fs, inode_of(req, forgets[i].ino), forgets[i].nlookup);
	fuse_reply_none(req);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	Daemon *d = daemon_of(req);
	struct stat st;
	int ret = mfs_getattr(d->fs, inode_of(req, ino), file_of(fi), &st);

	if (ret < 0)
		fuse_reply_err(req, -ret);
	else
		fuse_reply_attr(req, &st, d->timeout);
}

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int valid,
                       struct fuse_file_info *fi)
{
	static const struct {
		int fuse, mfs;
	} map[] = {
	    {FUSE_SET_ATTR_MODE, MFS_SET_MODE},
	    {FUSE_SET_ATTR_UID, MFS_SET_UID},
	    {FUSE_SET_ATTR_GID, MFS_SET_GID},
	    {FUSE_SET_ATTR_SIZE, MFS_SET_SIZE},
	    {FUSE_SET_ATTR_ATIME, MFS_SET_ATIME},
	    {FUSE_SET_ATTR_MTIME, MFS_SET_MTIME},
	    {FUSE_SET_ATTR_ATIME_NOW, MFS_SET_ATIME_NOW},
	    {FUSE_SET_ATTR_MTIME_NOW, MFS_SET_MTIME_NOW},
	};
	Daemon *d = daemon_of(req);
	struct stat st;
	int to_set = 0, ret;

	for (size_t i = 0; i < G_N_ELEMENTS(map); i++)
		if (valid & map[i].fuse)
			to_set |= map[i].mfs;
	ret = mfs_setattr(d->fs, inode_of(req, ino), file_of(fi), attr, to_set, &st);
	if (ret < 0)
		fuse_reply_err(req, -ret);
	else
		fuse_reply_attr(req, &st, d->timeout);
}

static void op_access(fuse_req_t req, fuse_ino_t ino, int mask)
{
	MfsCred cred = cred_of(req);
	gid_t groups[64];
	int n = fuse_req_getgroups(req, G_N_ELEMENTS(groups), groups);

	if (n < 0 || n > (int)G_N_ELEMENTS(groups))
		n = 0;
	reply_status(req,
	             mfs_access(daemon_of(req)->fs, inode_of(req, ino), mask, &cred, groups, n));
}

static void op_readlink(fuse_req_t req, fuse_ino_t ino)
{
	char buf[PATH_MAX + 1];
	int ret = mfs_readlink(daemon_of(req)->fs, inode_of(req, ino), buf, sizeof(buf));

	if (ret < 0)
		fuse_reply_err(req, -ret);
	else
		fuse_reply_readlink(req, buf);
}

static void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
	MfsCred cred = cred_of(req);
	MfsEntry e;

	reply_entry(
	    req, mfs_mknod(daemon_of(req)->fs, inode_of(req, parent), name, mode, rdev, &cred, &e),
	    &e);
}

static void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	MfsCred cred = cred_of(req);
	MfsEntry e;

	reply_entry(
	    req, mfs_mkdir(daemon_of(req)->fs, inode_of(req, parent), name, mode, &cred, &e), &e);
}

static void op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
	MfsCred cred = cred_of(req);
	MfsEntry e;

	reply_entry(
	    req, mfs_symlink(daemon_of(req)->fs, link, inode_of(req, parent), name, &cred, &e), &e);
}

static void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
	MfsEntry e;

	reply_entry(
	    req,
	    mfs_link(daemon_of(req)->fs, inode_of(req, ino), inode_of(req, newparent), newname, &e),
	    &e);
}

static void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	reply_status(req, mfs_unlink(daemon_of(req)->fs, inode_of(req, parent), name));
}

static void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	reply_status(req, mfs_rmdir(daemon_of(req)->fs, inode_of(req, parent), name));
}

static void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
                      const char *newname, unsigned int flags)
{
	reply_status(req, mfs_rename(daemon_of(req)->fs, inode_of(req, parent), name,
	                             inode_of(req, newparent), newname, flags));
}

/*
 * A direct-I/O open (mfs_file_direct_io) also lets the kernel send its
 * writes in parallel (FOPEN_PARALLEL_DIRECT_WRITES, Linux 6.2; older
 * kernels ignore it), as a local file system runs O_DIRECT writes: else
 * it holds the inode's lock across each one.  libfuse 3.14 has no field
 * for that flag, so the reply is written out here; its layout is the
 * kernel's ABI, and the same as fuse_reply_open() sends.
 */
static int reply_open(fuse_req_t req, struct fuse_file_info *fi, const MfsFile *file)
{
	struct fuse_open_out out = {.fh = fi->fh};
	struct iovec iov = {.iov_base = &out, .iov_len = sizeof(out)};

	if (!mfs_file_direct_io(file))
		return fuse_reply_open(req, fi);
	out.open_flags = FOPEN_DIRECT_IO | FOPEN_PARALLEL_DIRECT_WRITES;
	return fuse_reply_iov(req, &iov, 1);
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	MfsFile *file;
	int ret = mfs_open(daemon_of(req)->fs, inode_of(req, ino), fi->flags, &file);

	if (ret < 0) {
		fuse_reply_err(req, -ret);
		return;
	}
	fi->fh = (uintptr_t)file;
	if (reply_open(req, fi, file) < 0)
		mfs_release(daemon_of(req)->fs, file);
}

static void op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                      struct fuse_file_info *fi)
{
	Daemon *d = daemon_of(req);
	MfsCred cred = cred_of(req);
	struct fuse_entry_param p;
	MfsFile *file;
	MfsEntry e;
	int ret = mfs_create(d->fs, inode_of(req, parent), name, mode, fi->flags, &cred, &e, &file);

	if (ret < 0) {
		fuse_reply_err(req, -ret);
		return;
	}
	fi->fh = (uintptr_t)file;
	/* libfuse writes this reply: direct I/O, without parallel writes. */
	fi->direct_io = mfs_file_direct_io(file);
	p = entry_param(d, &e);
	if (fuse_reply_create(req, &p, fi) < 0) {
		mfs_release(d->fs, file);
		mfs_forget(d->fs, e.inode, 1);
	}
}

/* Through io_uring, read straight into the ring entry that carries the reply. */
static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                    struct fuse_file_info *fi)
{
	const void *data = transport_reply_buffer(size);
	ssize_t n = data ? mfs_file_read_into(file_of(fi), (void *)data, size, off)
	                 : mfs_file_read(file_of(fi), size, off, &data);

	(void)ino;
	if (n < 0)
		fuse_reply_err(req, (int)-n);
	else
		fuse_reply_buf(req, data, n);
}

static void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
                     struct fuse_file_info *fi)
{
	ssize_t n = mfs_file_write(daemon_of(req)->fs, file_of(fi), buf, size, off);

	(void)ino;
	if (n < 0)
		fuse_reply_err(req, (int)-n);
	else
		fuse_reply_write(req, n);
}

static void op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	reply_status(req, mfs_file_flush(daemon_of(req)->fs, file_of(fi)));
}

static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	mfs_release(daemon_of(req)->fs, file_of(fi));
	fuse_reply_err(req, 0);
}

static void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	(void)ino;
	reply_status(req, mfs_file_fsync(daemon_of(req)->fs, file_of(fi), datasync));
}

static void op_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off, off_t len,
                         struct fuse_file_info *fi)
{
	(void)ino;
	reply_status(req, mfs_file_fallocate(daemon_of(req)->fs, file_of(fi), mode, off, len));
}

static void op_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence,
                     struct fuse_file_info *fi)
{
	off_t res = mfs_file_lseek(daemon_of(req)->fs, file_of(fi), off, whence);

	(void)ino;
	if (res < 0)
		fuse_reply_err(req, (int)-res);
	else
		fuse_reply_lseek(req, res);
}

static void op_copy_file_range(fuse_req_t req, fuse_ino_t ino_in, off_t off_in,
                               struct fuse_file_info *fi_in, fuse_ino_t ino_out, off_t off_out,
                               struct fuse_file_info *fi_out, size_t len, int flags)
{
	ssize_t n = mfs_file_copy_range(daemon_of(req)->fs, file_of(fi_in), off_in, file_of(fi_out),
	                                off_out, len, (unsigned int)flags);

	(void)ino_in;
	(void)ino_out;
	if (n < 0)
		fuse_reply_err(req, (int)-n);
	else
		fuse_reply_write(req, n);
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct statvfs st;
	int ret = mfs_statfs(daemon_of(req)->fs, inode_of(req, ino), &st);

	if (ret < 0)
		fuse_reply_err(req, -ret);
	else
		fuse_reply_statfs(req, &st);
}

static void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	MfsDir *dir;
	int ret = mfs_opendir(daemon_of(req)->fs, inode_of(req, ino), &dir);

	if (ret < 0) {
		fuse_reply_err(req, -ret);
		return;
	}
	fi->fh = (uintptr_t)dir;
	if (fuse_reply_open(req, fi) < 0)
		mfs_releasedir(daemon_of(req)->fs, dir);
}

static bool is_dot_or_dotdot(const char *name)
{
	return name[0] == '.' && (name[1] == '\0' || (name[1] == '.' && name[2] == '\0'));
}

static void readdir_common(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                           struct fuse_file_info *fi, bool plus)
{
	Daemon *d = daemon_of(req);
	MfsDir *dir = (MfsDir *)(uintptr_t)fi->fh;
	g_autofree char *buf = g_malloc(size);
	size_t used = 0;
	int ret;

	for (;;) {
		const char *name;
		unsigned char type;
		off_t next;
		ino_t dino;
		size_t len;

		ret = mfs_readdir(dir, off, &name, &dino, &type, &next);
		if (ret <= 0)
			break;
		if (plus && !is_dot_or_dotdot(name)) {
			struct fuse_entry_param p;
			MfsEntry e;

			ret = mfs_lookup(d->fs, inode_of(req, ino), name, &e);
			if (ret == -ENOENT) {
				/* Gone since readdir saw it: skip it, as a new readdir would. */
				off = next;
				continue;
			}
			if (ret < 0)
				break;
			p = entry_param(d, &e);
			len = fuse_add_direntry_plus(req, buf + used, size - used, name, &p, next);
			if (len > size - used) {
				mfs_forget(d->fs, e.inode, 1);
				break;
			}
		} else if (plus) {
			struct fuse_entry_param p = {.attr.st_ino = dino,
			                             .attr.st_mode = type << 12};

			len = fuse_add_direntry_plus(req, buf + used, size - used, name, &p, next);
			if (len > size - used)
				break;
		} else {
			struct stat st = {.st_ino = dino, .st_mode = type << 12};

			len = fuse_add_direntry(req, buf + used, size - used, name, &st, next);
			if (len > size - used)
				break;
		}
		used += len;
		off = next;
	}
	/* An error after some entries: return those; the next call reports it. */
	if (ret < 0 && used == 0)
		fuse_reply_err(req, -ret);
	else
		fuse_reply_buf(req, buf, used);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                       struct fuse_file_info *fi)
{
	readdir_common(req, ino, size, off, fi, false);
}

static void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                           struct fuse_file_info *fi)
{
	readdir_common(req, ino, size, off, fi, true);
}

static void op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	mfs_releasedir(daemon_of(req)->fs, (MfsDir *)(uintptr_t)fi->fh);
	fuse_reply_err(req, 0);
}

static void op_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	(void)ino;
	reply_status(req, mfs_fsyncdir(daemon_of(req)->fs, (MfsDir *)(uintptr_t)fi->fh, datasync));
}

/*
 * With -o noxattr, ENOSYS: the kernel then stops sending xattr requests
 * at all.  Otherwise it asks for security.capability before every write
 * (file_remove_privs(): FUSE can only skip that with
 * FUSE_HANDLE_KILLPRIV_V2, which libfuse 3.14 cannot negotiate), one
 * more round trip per write: 4 KiB O_DIRECT writes went from 14.5k to
 * 25k IOPS at iodepth 16 without it.
 */
static bool no_xattrs(fuse_req_t req)
{
	if (!daemon_of(req)->noxattr)
		return false;
	fuse_reply_err(req, ENOSYS);
	return true;
}

static void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
                        size_t size, int flags)
{
	if (no_xattrs(req))
		return;
	reply_status(
	    req, mfs_setxattr(daemon_of(req)->fs, inode_of(req, ino), name, value, size, flags));
}

/* getxattr and listxattr share the size-probe protocol of xattr(7). */
static void reply_xattr(fuse_req_t req, int ret, const char *buf, size_t size)
{
	if (ret < 0)
		fuse_reply_err(req, -ret);
	else if (size == 0)
		fuse_reply_xattr(req, ret);
	else
		fuse_reply_buf(req, buf, ret);
}

static void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	g_autofree char *buf = NULL;

	if (no_xattrs(req))
		return;
	buf = size ? g_malloc(size) : NULL;
	reply_xattr(req, mfs_getxattr(daemon_of(req)->fs, inode_of(req, ino), name, buf, size), buf,
	            size);
}

static void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	g_autofree char *buf = NULL;

	if (no_xattrs(req))
		return;
	buf = size ? g_malloc(size) : NULL;
	reply_xattr(req, mfs_listxattr(daemon_of(req)->fs, inode_of(req, ino), buf, size), buf,
	            size);
}

static void op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	if (no_xattrs(req))
		return;
	reply_status(req, mfs_removexattr(daemon_of(req)->fs, inode_of(req, ino), name));
}

/*
 * No getlk/setlk/flock: the kernel then keeps POSIX, OFD and flock locks
 * on the FUSE inode itself, which is right for a mount that every user of
 * the images goes through (QEMU's OFD image locks included).
 */
const struct fuse_lowlevel_ops mirrorfs_ops = {
    .init = op_init,
    .lookup = op_lookup,
    .forget = op_forget,
    .forget_multi = op_forget_multi,
    .getattr = op_getattr,
    .setattr = op_setattr,
    .access = op_access,
    .readlink = op_readlink,
    .mknod = op_mknod,
    .mkdir = op_mkdir,
    .symlink = op_symlink,
    .link = op_link,
    .unlink = op_unlink,
    .rmdir = op_rmdir,
    .rename = op_rename,
    .open = op_open,
    .create = op_create,
    .read = op_read,
    .write = op_write,
    .flush = op_flush,
    .release = op_release,
    .fsync = op_fsync,
    .fallocate = op_fallocate,
    .lseek = op_lseek,
    .copy_file_range = op_copy_file_range,
    .statfs = op_statfs,
    .opendir = op_opendir,
    .readdir = op_readdir,
    .readdirplus = op_readdirplus,
    .releasedir = op_releasedir,
    .fsyncdir = op_fsyncdir,
    .setxattr = op_setxattr,
    .getxattr = op_getxattr,
    .listxattr = op_listxattr,
    .removexattr = op_removexattr,
};
