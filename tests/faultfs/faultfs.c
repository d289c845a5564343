/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * faultfs: a passthrough FUSE file system of a directory that fails on
 * purpose, for the reliability tests of mirrorfs.  Mounted as a migration
 * target it makes writes, fsyncs or opens fail with a real errno the
 * daemon gets from the kernel; mounted as a source it makes reads of a
 * range fail.  Nothing is mocked: mirrorfs sees a file system that
 * misbehaves.
 *
 *     faultfs [-f] [-o OPTIONS] ROOT MOUNTPOINT
 *
 *   -o fail_write_after=BYTES  once BYTES bytes have been written, every
 *                              write fails (a write that would cross the
 *                              mark fails whole)
 *   -o fail_nth_write=N        the N-th write fails (1 = the first), only it
 *   -o fail_fsync              every fsync and fdatasync fails
 *   -o fail_open_after=N       after N successful opens (and creates),
 *                              every open fails
 *   -o fail_read=OFF+LEN       reads that touch [OFF, OFF+LEN) fail (sizes
 *                              in bytes, K/M/G suffixes allowed)
 *   -o fail_chown              a chown that would change an owner fails with
 *                              EPERM, as on a root-squashing NFS or a FUSE
 *                              server not run by root
 *   -o no_xattr=PREFIX         setting an xattr whose name starts with
 *                              PREFIX ("user.", "security.") fails with
 *                              EOPNOTSUPP, as where that namespace is not
 *                              supported
 *   -o fail_errno=E            the errno: a number or EIO, ENOSPC, EROFS,
 *                              EDQUOT, ENOMEM (default EIO)
 *   -o only=GLOB               faults only in files whose path below ROOT
 *                              matches GLOB (fnmatch, '*' matches '/' too);
 *                              counts only them too
 *   -o arm_file=PATH           faults only while PATH exists (checked on
 *                              every operation); counting starts when armed
 *   -o fault_log=PATH          append a line for each fault injected:
 *                              "OP PATH OFFSET LENGTH ERRNO"
 *
 * Counts are over the whole mount and all threads.  Caching is off (entry
 * and attribute timeouts 0) and removal is immediate (hard_remove), so
 * that a file removed through the mount leaves nothing behind in ROOT.
 */
#define _GNU_SOURCE
#define FUSE_USE_VERSION 314

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <fuse.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/time.h>
#include <sys/xattr.h>
#include <unistd.h>

typedef struct {
	char *root_arg;
	char *fail_write_after;
	char *fail_nth_write;
	int fail_fsync;
	int fail_chown;
	char *no_xattr;
	char *fail_open_after;
	char *fail_read;
	char *fail_errno;
	char *only;
	char *arm_file;
	char *fault_log;
} Options;

#define OPT(t, p, v)                                                                               \
	{                                                                                          \
		t, offsetof(Options, p), v                                                         \
	}
static const struct fuse_opt option_spec[] = {
    OPT("fail_write_after=%s", fail_write_after, 0),
    OPT("fail_nth_write=%s", fail_nth_write, 0),
    OPT("fail_fsync", fail_fsync, 1),
    OPT("fail_chown", fail_chown, 1),
    OPT("no_xattr=%s", no_xattr, 0),
    OPT("fail_open_after=%s", fail_open_after, 0),
    OPT("fail_read=%s", fail_read, 0),
    OPT("fail_errno=%s", fail_errno, 0),
    OPT("only=%s", only, 0),
    OPT("arm_file=%s", arm_file, 0),
    OPT("fault_log=%s", fault_log, 0),
    FUSE_OPT_END,
};

static struct {
	int root_fd;
	char *root;
	int err;
	bool write_after_set, nth_write_set, open_after_set, read_set, fsync, chown;
	const char *no_xattr;
	uint64_t write_after, nth_write, open_after, read_off, read_len;
	const char *only;
	const char *arm_file;
	FILE *log;
	pthread_mutex_t log_lock;
	/* Counters, while armed. */
	uint64_t written, writes, opens;
} F = {.root_fd = -1, .err = EIO, .log_lock = PTHREAD_MUTEX_INITIALIZER};

static int parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;
	uint64_t mult = 1;

	if (!s || !*s || *s == '-')
		return -1;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s)
		return -1;
	switch (*end) {
	case '\0':
		break;
	case 'k':
	case 'K':
		mult = 1ULL << 10;
		end++;
		break;
	case 'm':
	case 'M':
		mult = 1ULL << 20;
		end++;
		break;
	case 'g':
	case 'G':
		mult = 1ULL << 30;
		end++;
		break;
	default:
		return -1;
	}
	if (*end)
		return -1;
	*out = v * mult;
	return 0;
}

static int parse_errno(const char *s)
{
	static const struct {
		const char *name;
		int value;
	} names[] = {{"EIO", EIO},       {"ENOSPC", ENOSPC}, {"EROFS", EROFS},
	             {"EDQUOT", EDQUOT}, {"ENOMEM", ENOMEM}, {"EPERM", EPERM}};
	uint64_t v;

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strcmp(s, names[i].name) == 0)
			return names[i].value;
	if (parse_size(s, &v) == 0 && v > 0 && v < 4096)
		return (int)v;
	return -1;
}

/* The path below the root for *at() calls: "." for the root itself. */
static const char *rel(const char *path)
{
	while (*path == '/')
		path++;
	return *path ? path : ".";
}

/* The full path in ROOT, for the calls that have no *at() form. */
static char *full(const char *path)
{
	char *p;

	if (asprintf(&p, "%s/%s", F.root, rel(path)) < 0)
		return NULL;
	return p;
}

static bool armed(void)
{
	return !F.arm_file || access(F.arm_file, F_OK) == 0;
}

/* Are faults on for @path now?  (Armed and matching only=.) */
static bool targeted(const char *path)
{
	if (!armed())
		return false;
	if (F.only && path && fnmatch(F.only, rel(path), 0) != 0)
		return false;
	return true;
}

/* A fault with errno @err, logged. */
static int inject_errno(const char *op, const char *path, uint64_t off, uint64_t len, int err)
{
	if (F.log) {
		pthread_mutex_lock(&F.log_lock);
		fprintf(F.log, "%s %s %llu %llu %d\n", op, path ? rel(path) : "?",
		        (unsigned long long)off, (unsigned long long)len, err);
		fflush(F.log);
		pthread_mutex_unlock(&F.log_lock);
	}
	return -err;
}

static int inject(const char *op, const char *path, uint64_t off, uint64_t len)
{
	return inject_errno(op, path, off, len, F.err);
}

/* --- operations --------------------------------------------------------- */

static void *ffs_init(struct fuse_conn_info *conn, struct fuse_config *cfg)
{
	(void)conn;
	cfg->use_ino = 1;
	cfg->hard_remove = 1;
	cfg->entry_timeout = 0;
	cfg->attr_timeout = 0;
	cfg->negative_timeout = 0;
	return NULL;
}

static int ffs_getattr(const char *path, struct stat *st, struct fuse_file_info *fi)
{
	int r =
	    fi ? fstat((int)fi->fh, st) : fstatat(F.root_fd, rel(path), st, AT_SYMLINK_NOFOLLOW);

	return r < 0 ? -errno : 0;
}

static int ffs_access(const char *path, int mask)
{
	return faccessat(F.root_fd, rel(path), mask, 0) < 0 ? -errno : 0;
}

static int ffs_readlink(const char *path, char *buf, size_t size)
{
	ssize_t n = readlinkat(F.root_fd, rel(path), buf, size - 1);

	if (n < 0)
		return -errno;
	buf[n] = '\0';
	return 0;
}

static int ffs_mknod(const char *path, mode_t mode, dev_t rdev)
{
	return mknodat(F.root_fd, rel(path), mode, rdev) < 0 ? -errno : 0;
}

static int ffs_mkdir(const char *path, mode_t mode)
{
	return mkdirat(F.root_fd, rel(path), mode) < 0 ? -errno : 0;
}

static int ffs_unlink(const char *path)
{
	return unlinkat(F.root_fd, rel(path), 0) < 0 ? -errno : 0;
}

static int ffs_rmdir(const char *path)
{
	return unlinkat(F.root_fd, rel(path), AT_REMOVEDIR) < 0 ? -errno : 0;
}

static int ffs_symlink(const char *target, const char *path)
{
	return symlinkat(target, F.root_fd, rel(path)) < 0 ? -errno : 0;
}

static int ffs_rename(const char *from, const char *to, unsigned int flags)
{
	return renameat2(F.root_fd, rel(from), F.root_fd, rel(to), flags) < 0 ? -errno : 0;
}

static int ffs_link(const char *from, const char *to)
{
	return linkat(F.root_fd, rel(from), F.root_fd, rel(to), 0) < 0 ? -errno : 0;
}

static int ffs_chmod(const char *path, mode_t mode, struct fuse_file_info *fi)
{
	int r = fi ? fchmod((int)fi->fh, mode) : fchmodat(F.root_fd, rel(path), mode, 0);

	return r < 0 ? -errno : 0;
}

static int ffs_chown(const char *path, uid_t uid, gid_t gid, struct fuse_file_info *fi)
{
	struct stat st;
	int r;

	if (F.chown && targeted(path) && ffs_getattr(path, &st, fi) == 0 &&
	    ((uid != (uid_t)-1 && uid != st.st_uid) || (gid != (gid_t)-1 && gid != st.st_gid)))
		return inject_errno("chown", path, uid, gid, EPERM);
	r = fi ? fchown((int)fi->fh, uid, gid)
	       : fchownat(F.root_fd, rel(path), uid, gid, AT_SYMLINK_NOFOLLOW);

	return r < 0 ? -errno : 0;
}

static int ffs_truncate(const char *path, off_t size, struct fuse_file_info *fi)
{
	int fd, r;

	if (fi)
		return ftruncate((int)fi->fh, size) < 0 ? -errno : 0;
	fd = openat(F.root_fd, rel(path), O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -errno;
	r = ftruncate(fd, size) < 0 ? -errno : 0;
	close(fd);
	return r;
}

static int ffs_utimens(const char *path, const struct timespec tv[2], struct fuse_file_info *fi)
{
	int r = fi ? futimens((int)fi->fh, tv)
	           : utimensat(F.root_fd, rel(path), tv, AT_SYMLINK_NOFOLLOW);

	return r < 0 ? -errno : 0;
}

static int open_fault(const char *path)
{
	uint64_t n;

	if (!F.open_after_set || !targeted(path))
		return 0;
	n = __atomic_add_fetch(&F.opens, 1, __ATOMIC_SEQ_CST);
	if (n > F.open_after)
		return inject("open", path, 0, 0);
	return 0;
}

static int ffs_open(const char *path, struct fuse_file_info *fi)
{
	int r = open_fault(path), fd;

	if (r < 0)
		return r;
	fd = openat(F.root_fd, rel(path), (fi->flags & ~O_DIRECT) | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -errno;
	fi->fh = (uint64_t)fd;
	return 0;
}

static int ffs_create(const char *path, mode_t mode, struct fuse_file_info *fi)
{
	int r = open_fault(path), fd;

	if (r < 0)
		return r;
	fd = openat(F.root_fd, rel(path),
	            (fi->flags & ~O_DIRECT) | O_CREAT | O_CLOEXEC | O_NOFOLLOW, mode);
	if (fd < 0)
		return -errno;
	fi->fh = (uint64_t)fd;
	return 0;
}

static int ffs_read(const char *path, char *buf, size_t size, off_t off, struct fuse_file_info *fi)
{
	ssize_t n;

	if (F.read_set && size && (uint64_t)off < F.read_off + F.read_len &&
	    F.read_off < (uint64_t)off + size && targeted(path))
		return inject("read", path, (uint64_t)off, size);
	n = pread((int)fi->fh, buf, size, off);
	return n < 0 ? -errno : (int)n;
}

static int ffs_write(const char *path, const char *buf, size_t size, off_t off,
                     struct fuse_file_info *fi)
{
	ssize_t n;

	if ((F.write_after_set || F.nth_write_set) && targeted(path)) {
		uint64_t nth = __atomic_add_fetch(&F.writes, 1, __ATOMIC_SEQ_CST);
		uint64_t total = __atomic_add_fetch(&F.written, size, __ATOMIC_SEQ_CST);

		if (F.nth_write_set && nth == F.nth_write)
			return inject("write", path, (uint64_t)off, size);
		if (F.write_after_set && total > F.write_after)
			return inject("write", path, (uint64_t)off, size);
	}
	n = pwrite((int)fi->fh, buf, size, off);
	return n < 0 ? -errno : (int)n;
}

static int ffs_statfs(const char *path, struct statvfs *st)
{
	(void)path;
	return fstatvfs(F.root_fd, st) < 0 ? -errno : 0;
}

static int ffs_flush(const char *path, struct fuse_file_info *fi)
{
	(void)path;
	(void)fi;
	return 0;
}

static int ffs_release(const char *path, struct fuse_file_info *fi)
{
	(void)path;
	close((int)fi->fh);
	return 0;
}

static int ffs_fsync(const char *path, int datasync, struct fuse_file_info *fi)
{
	if (F.fsync && targeted(path))
		return inject(datasync ? "fdatasync" : "fsync", path, 0, 0);
	return (datasync ? fdatasync((int)fi->fh) : fsync((int)fi->fh)) < 0 ? -errno : 0;
}

static int ffs_fallocate(const char *path, int mode, off_t off, off_t len,
                         struct fuse_file_info *fi)
{
	(void)path;
	return fallocate((int)fi->fh, mode, off, len) < 0 ? -errno : 0;
}

static off_t ffs_lseek(const char *path, off_t off, int whence, struct fuse_file_info *fi)
{
	off_t r;

	(void)path;
	r = lseek((int)fi->fh, off, whence);
	return r < 0 ? -errno : r;
}

static int ffs_setxattr(const char *path, const char *name, const char *value, size_t size,
                        int flags)
{
	char *p;
	int r;

	if (F.no_xattr && targeted(path) && strncmp(name, F.no_xattr, strlen(F.no_xattr)) == 0)
		return inject_errno("setxattr", path, 0, size, EOPNOTSUPP);
	p = full(path);
	if (!p)
		return -ENOMEM;
	r = lsetxattr(p, name, value, size, flags) < 0 ? -errno : 0;
	free(p);
	return r;
}

static int ffs_getxattr(const char *path, const char *name, char *value, size_t size)
{
	char *p = full(path);
	ssize_t r;

	if (!p)
		return -ENOMEM;
	r = lgetxattr(p, name, value, size);
	r = r < 0 ? -errno : r;
	free(p);
	return (int)r;
}

static int ffs_listxattr(const char *path, char *list, size_t size)
{
	char *p = full(path);
	ssize_t r;

	if (!p)
		return -ENOMEM;
	r = llistxattr(p, list, size);
	r = r < 0 ? -errno : r;
	free(p);
	return (int)r;
}

static int ffs_removexattr(const char *path, const char *name)
{
	char *p = full(path);
	int r;

	if (!p)
		return -ENOMEM;
	r = lremovexattr(p, name) < 0 ? -errno : 0;
	free(p);
	return r;
}

static int ffs_opendir(const char *path, struct fuse_file_info *fi)
{
	int fd = openat(F.root_fd, rel(path), O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	fi->fh = (uint64_t)fd;
	return 0;
}

/* The whole directory in one go (offset 0 for every entry). */
static int ffs_readdir(const char *path, void *buf, fuse_fill_dir_t filler, off_t off,
                       struct fuse_file_info *fi, enum fuse_readdir_flags flags)
{
	int fd = dup((int)fi->fh);
	DIR *dp;
	struct dirent *de;

	(void)path;
	(void)off;
	(void)flags;
	if (fd < 0)
		return -errno;
	dp = fdopendir(fd);
	if (!dp) {
		close(fd);
		return -errno;
	}
	rewinddir(dp);
	while ((errno = 0, de = readdir(dp))) {
		struct stat st = {.st_ino = de->d_ino, .st_mode = (mode_t)DTTOIF(de->d_type)};

		if (filler(buf, de->d_name, &st, 0, 0))
			break;
	}
	closedir(dp);
	return 0;
}

static int ffs_releasedir(const char *path, struct fuse_file_info *fi)
{
	(void)path;
	close((int)fi->fh);
	return 0;
}

static int ffs_flock(const char *path, struct fuse_file_info *fi, int op)
{
	(void)path;
	return flock((int)fi->fh, op) < 0 ? -errno : 0;
}

static const struct fuse_operations ffs_ops = {
    .init = ffs_init,
    .getattr = ffs_getattr,
    .access = ffs_access,
    .readlink = ffs_readlink,
    .mknod = ffs_mknod,
    .mkdir = ffs_mkdir,
    .unlink = ffs_unlink,
    .rmdir = ffs_rmdir,
    .symlink = ffs_symlink,
    .rename = ffs_rename,
    .link = ffs_link,
    .chmod = ffs_chmod,
    .chown = ffs_chown,
    .truncate = ffs_truncate,
    .utimens = ffs_utimens,
    .open = ffs_open,
    .create = ffs_create,
    .read = ffs_read,
    .write = ffs_write,
    .statfs = ffs_statfs,
    .flush = ffs_flush,
    .release = ffs_release,
    .fsync = ffs_fsync,
    .fallocate = ffs_fallocate,
    .lseek = ffs_lseek,
    .setxattr = ffs_setxattr,
    .getxattr = ffs_getxattr,
    .listxattr = ffs_listxattr,
    .removexattr = ffs_removexattr,
    .opendir = ffs_opendir,
    .readdir = ffs_readdir,
    .releasedir = ffs_releasedir,
    .flock = ffs_flock,
};

/* --- options -------------------------------------------------------------- */

static int option_proc(void *data, const char *arg, int key, struct fuse_args *outargs)
{
	Options *o = data;

	(void)outargs;
	if (key == FUSE_OPT_KEY_NONOPT && !o->root_arg) {
		o->root_arg = strdup(arg);
		return 0;
	}
	if (key == FUSE_OPT_KEY_OPT && (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0)) {
		printf(
		    "usage: faultfs [-f] [-o fail_write_after=BYTES,fail_nth_write=N,fail_fsync,\n"
		    "       "
		    "fail_chown,no_xattr=PREFIX,fail_open_after=N,fail_read=OFF+LEN,fail_errno=E,"
		    "only=GLOB,\n"
		    "       arm_file=PATH,fault_log=PATH] ROOT MOUNTPOINT\n");
		exit(0);
	}
	return 1;
}

static void die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "faultfs: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

int main(int argc, char *argv[])
{
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
	Options o = {0};
	int ret;

	umask(0);
	if (fuse_opt_parse(&args, &o, option_spec, option_proc) < 0)
		die("bad options");
	if (!o.root_arg)
		die("missing ROOT; usage: faultfs [-o OPTIONS] ROOT MOUNTPOINT");
	F.root = realpath(o.root_arg, NULL);
	if (!F.root)
		die("%s: %s", o.root_arg, strerror(errno));
	F.root_fd = open(F.root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (F.root_fd < 0)
		die("%s: %s", F.root, strerror(errno));
	if (o.fail_write_after) {
		if (parse_size(o.fail_write_after, &F.write_after) < 0)
			die("fail_write_after=%s: not a size", o.fail_write_after);
		F.write_after_set = true;
	}
	if (o.fail_nth_write) {
		if (parse_size(o.fail_nth_write, &F.nth_write) < 0 || F.nth_write == 0)
			die("fail_nth_write=%s: not a count from 1", o.fail_nth_write);
		F.nth_write_set = true;
	}
	if (o.fail_open_after) {
		if (parse_size(o.fail_open_after, &F.open_after) < 0)
			die("fail_open_after=%s: not a count", o.fail_open_after);
		F.open_after_set = true;
	}
	if (o.fail_read) {
		char *plus = strchr(o.fail_read, '+');

		if (!plus)
			die("fail_read=%s: expected OFF+LEN", o.fail_read);
		*plus = '\0';
		if (parse_size(o.fail_read, &F.read_off) < 0 ||
		    parse_size(plus + 1, &F.read_len) < 0)
			die("fail_read: expected OFF+LEN");
		F.read_set = true;
	}
	F.fsync = o.fail_fsync;
	F.chown = o.fail_chown;
	F.no_xattr = o.no_xattr;
	if (o.fail_errno && (F.err = parse_errno(o.fail_errno)) < 0)
		die("fail_errno=%s: not an errno", o.fail_errno);
	F.only = o.only;
	F.arm_file = o.arm_file;
	if (o.fault_log) {
		F.log = fopen(o.fault_log, "ae");
		if (!F.log)
			die("%s: %s", o.fault_log, strerror(errno));
	}
	/*
	 * Our own name in the mount table; and nodes never forgotten: libfuse
	 * 3.14's high-level node table can answer a lookup that races with a
	 * forget of the same name (drop_caches sends many) with ENOENT.
	 */
	fuse_opt_add_arg(&args, "-osubtype=faultfs,fsname=faultfs,noforget");
	ret = fuse_main(args.argc, args.argv, &ffs_ops, NULL);
	fuse_opt_free_args(&args);
	return ret;
}
