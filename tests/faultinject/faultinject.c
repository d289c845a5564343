/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * faultinject: an LD_PRELOAD shim that makes the Nth call of a chosen
 * family of libc system call wrappers fail once with a chosen errno, for
 * tests/integration/test-syscall-faults.sh.  faultfs (tests/faultfs)
 * fails what reaches a file system; this fails what the daemon asks of
 * the kernel, wherever it lands: the source's journal, a directory fsync,
 * a rename, a link made by the walk.
 *
 *   MIRRORFS_FAULT=FAMILY:N:ERRNO[,FAMILY:N:ERRNO...]
 *       fail the Nth counted call (from 1) of FAMILY with ERRNO (a name
 *       such as EIO, or a number), without calling the real function.
 *       Families: open (open, openat, their 64 and fortified forms),
 *       read (read, pread, preadv), write (write, pwrite, pwritev),
 *       fsync, fdatasync, syncfs, sync_file_range, rename (rename,
 *       renameat, renameat2), unlink (unlink, unlinkat, rmdir), link
 *       (link, linkat), mkdir (mkdir, mkdirat), mknod (mknodat), symlink
 *       (symlink, symlinkat), ftruncate, fallocate, chown (fchown,
 *       fchownat), chmod (chmod, fchmod, fchmodat), setxattr (setxattr,
 *       lsetxattr, fsetxattr), utimens (utimensat, futimens).
 *   MIRRORFS_FAULT_THREADS=PREFIX[,PREFIX...]
 *       count only calls made by threads whose name (PR_GET_NAME) starts
 *       with one of these; "*" counts every thread.  Default:
 *       "mirrorfs-copier,mirrorfs-ctl", the migration's threads, so
 *       that libfuse's and the guest's passthrough I/O is left alone.
 *   MIRRORFS_FAULT_DIR=DIR
 *       count only calls on objects at or below DIR (by path, or by what
 *       /proc/self/fd says of a descriptor).  Unset: every object.
 *   MIRRORFS_FAULT_LOG=FILE
 *       append one line per counted call, "FAMILY N THREAD FUNC PATH",
 *       and "FAULT FAMILY N ERRNO FUNC PATH" when one is failed: the
 *       counting run of a test reads the first, every run the second.
 *
 * Async-signal and thread safe: the real functions are resolved with
 * dlsym(RTLD_NEXT) in the constructor (before the daemon has threads),
 * the environment is parsed there too, counters are atomics, and a
 * wrapper calls nothing but system calls and its own string code (no
 * malloc, no stdio, no locks).  The log is written with raw write(2)
 * system calls on a descriptor opened in the constructor.
 */
#define _GNU_SOURCE
/*
 * The project builds with 64-bit offsets, which renames open() to open64()
 * and so on in the headers; this file defines both names itself.
 */
#undef _FILE_OFFSET_BITS
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/xattr.h>
#include <unistd.h>

enum family {
	F_OPEN,
	F_READ,
	F_WRITE,
	F_FSYNC,
	F_FDATASYNC,
	F_SYNCFS,
	F_SYNC_FILE_RANGE,
	F_RENAME,
	F_UNLINK,
	F_LINK,
	F_MKDIR,
	F_MKNOD,
	F_SYMLINK,
	F_FTRUNCATE,
	F_FALLOCATE,
	F_CHOWN,
	F_CHMOD,
	F_SETXATTR,
	F_UTIMENS,
	F_COUNT
};

static const char *const family_names[F_COUNT] = {
    "open",      "read",   "write", "fsync",    "fdatasync", "syncfs",  "sync_file_range",
    "rename",    "unlink", "link",  "mkdir",    "mknod",     "symlink", "ftruncate",
    "fallocate", "chown",  "chmod", "setxattr", "utimens",
};

#define MAX_FAULTS  16
#define MAX_THREADS 8

static struct {
	int family;
	long nth;
	int err;
} faults[MAX_FAULTS];
static int n_faults;
static long counters[F_COUNT]; /* atomic */

static char thread_prefixes[MAX_THREADS][16];
static int n_threads = -1; /* -1: every thread */
static char scope_dir[PATH_MAX];
static size_t scope_len;
static int log_fd = -1;

static const struct {
	const char *name;
	int err;
} errno_names[] = {
    {"EIO", EIO},       {"ENOSPC", ENOSPC},         {"EDQUOT", EDQUOT},
    {"EROFS", EROFS},   {"EACCES", EACCES},         {"EPERM", EPERM},
    {"ENOENT", ENOENT}, {"EEXIST", EEXIST},         {"EINTR", EINTR},
    {"EAGAIN", EAGAIN}, {"ENOMEM", ENOMEM},         {"EMFILE", EMFILE},
    {"ENFILE", ENFILE}, {"EBADF", EBADF},           {"EINVAL", EINVAL},
    {"EXDEV", EXDEV},   {"ENOTDIR", ENOTDIR},       {"EISDIR", EISDIR},
    {"ELOOP", ELOOP},   {"ESTALE", ESTALE},         {"ENOTCONN", ENOTCONN},
    {"EFBIG", EFBIG},   {"EOPNOTSUPP", EOPNOTSUPP}, {"ENOTSUP", ENOTSUP},
    {"ENODEV", ENODEV}, {"EBUSY", EBUSY},           {"ENAMETOOLONG", ENAMETOOLONG},
};

/* glibc's fortified opens, which its headers do not declare. */
int __open_2(const char *path, int flags);
int __open64_2(const char *path, int flags);
int __openat_2(int dirfd, const char *path, int flags);
int __openat64_2(int dirfd, const char *path, int flags);

/* --- the real functions ------------------------------------------------ */

#define REAL(ret, name, ...) static ret (*real_##name)(__VA_ARGS__)
REAL(int, open, const char *, int, ...);
REAL(int, open64, const char *, int, ...);
REAL(int, openat, int, const char *, int, ...);
REAL(int, openat64, int, const char *, int, ...);
REAL(int, __open_2, const char *, int);
REAL(int, __open64_2, const char *, int);
REAL(int, __openat_2, int, const char *, int);
REAL(int, __openat64_2, int, const char *, int);
REAL(ssize_t, read, int, void *, size_t);
REAL(ssize_t, pread, int, void *, size_t, off_t);
REAL(ssize_t, pread64, int, void *, size_t, off_t);
REAL(ssize_t, preadv, int, const struct iovec *, int, off_t);
REAL(ssize_t, write, int, const void *, size_t);
REAL(ssize_t, pwrite, int, const void *, size_t, off_t);
REAL(ssize_t, pwrite64, int, const void *, size_t, off_t);
REAL(ssize_t, pwritev, int, const struct iovec *, int, off_t);
REAL(ssize_t, pwritev2, int, const struct iovec *, int, off_t, int);
REAL(int, fsync, int);
REAL(int, fdatasync, int);
REAL(int, syncfs, int);
REAL(int, sync_file_range, int, off_t, off_t, unsigned int);
REAL(int, rename, const char *, const char *);
REAL(int, renameat, int, const char *, int, const char *);
REAL(int, renameat2, int, const char *, int, const char *, unsigned int);
REAL(int, unlink, const char *);
REAL(int, unlinkat, int, const char *, int);
REAL(int, rmdir, const char *);
REAL(int, link, const char *, const char *);
REAL(int, linkat, int, const char *, int, const char *, int);
REAL(int, mkdir, const char *, mode_t);
REAL(int, mkdirat, int, const char *, mode_t);
REAL(int, mknodat, int, const char *, mode_t, dev_t);
REAL(int, symlink, const char *, const char *);
REAL(int, symlinkat, const char *, int, const char *);
REAL(int, ftruncate, int, off_t);
REAL(int, ftruncate64, int, off_t);
REAL(int, fallocate, int, int, off_t, off_t);
REAL(int, fallocate64, int, int, off_t, off_t);
REAL(int, fchown, int, uid_t, gid_t);
REAL(int, fchownat, int, const char *, uid_t, gid_t, int);
REAL(int, chmod, const char *, mode_t);
REAL(int, fchmod, int, mode_t);
REAL(int, fchmodat, int, const char *, mode_t, int);
REAL(int, setxattr, const char *, const char *, const void *, size_t, int);
REAL(int, lsetxattr, const char *, const char *, const void *, size_t, int);
REAL(int, fsetxattr, int, const char *, const void *, size_t, int);
REAL(int, utimensat, int, const char *, const struct timespec *, int);
REAL(int, futimens, int, const struct timespec *);

/*
 * Resolved in the constructor; a call that comes earlier (another
 * library's constructor) resolves its own function then, before any
 * thread or signal handler can exist.
 */
#define RESOLVE(name)                                                                              \
	do {                                                                                       \
		if (!real_##name)                                                                  \
			real_##name = (__typeof__(real_##name))dlsym(RTLD_NEXT, #name);            \
	} while (0)

static void resolve_all(void)
{
	RESOLVE(open);
	RESOLVE(open64);
	RESOLVE(openat);
	RESOLVE(openat64);
	RESOLVE(__open_2);
	RESOLVE(__open64_2);
	RESOLVE(__openat_2);
	RESOLVE(__openat64_2);
	RESOLVE(read);
	RESOLVE(pread);
	RESOLVE(pread64);
	RESOLVE(preadv);
	RESOLVE(write);
	RESOLVE(pwrite);
	RESOLVE(pwrite64);
	RESOLVE(pwritev);
	RESOLVE(pwritev2);
	RESOLVE(fsync);
	RESOLVE(fdatasync);
	RESOLVE(syncfs);
	RESOLVE(sync_file_range);
	RESOLVE(rename);
	RESOLVE(renameat);
	RESOLVE(renameat2);
	RESOLVE(unlink);
	RESOLVE(unlinkat);
	RESOLVE(rmdir);
	RESOLVE(link);
	RESOLVE(linkat);
	RESOLVE(mkdir);
	RESOLVE(mkdirat);
	RESOLVE(mknodat);
	RESOLVE(symlink);
	RESOLVE(symlinkat);
	RESOLVE(ftruncate);
	RESOLVE(ftruncate64);
	RESOLVE(fallocate);
	RESOLVE(fallocate64);
	RESOLVE(fchown);
	RESOLVE(fchownat);
	RESOLVE(chmod);
	RESOLVE(fchmod);
	RESOLVE(fchmodat);
	RESOLVE(setxattr);
	RESOLVE(lsetxattr);
	RESOLVE(fsetxattr);
	RESOLVE(utimensat);
	RESOLVE(futimens);
}

/* --- async-signal-safe string helpers -------------------------------- */

/* Append @s to @buf (of @size, NUL-terminated, at @*len), truncating. */
static void append(char *buf, size_t size, size_t *len, const char *s)
{
	while (*s && *len + 1 < size)
		buf[(*len)++] = *s++;
	buf[*len] = '\0';
}

static void append_long(char *buf, size_t size, size_t *len, long v)
{
	char digits[24];
	int i = sizeof(digits) - 1;
	unsigned long u = v < 0 ? -(unsigned long)v : (unsigned long)v;

	digits[i] = '\0';
	do {
		digits[--i] = (char)('0' + u % 10);
		u /= 10;
	} while (u && i > 1);
	if (v < 0)
		digits[--i] = '-';
	append(buf, size, len, digits + i);
}

/* The target of /proc/self/fd/FD (or of the cwd for AT_FDCWD) into @buf. */
static bool fd_path(int fd, char *buf, size_t size)
{
	char link[40];
	size_t len = 0;
	ssize_t n;

	if (fd == AT_FDCWD) {
		append(link, sizeof(link), &len, "/proc/self/cwd");
	} else {
		append(link, sizeof(link), &len, "/proc/self/fd/");
		append_long(link, sizeof(link), &len, fd);
	}
	n = syscall(SYS_readlinkat, AT_FDCWD, link, buf, size - 1);
	if (n < 0)
		return false;
	buf[n] = '\0';
	return true;
}

/*
 * The path that @dirfd and @path name, as well as can be said without
 * resolving symlinks: /proc/self/fd/N names (which the daemon uses to
 * reach an object it holds) are read, relative names joined to their
 * directory's.
 */
static void at_path(int dirfd, const char *path, char *buf, size_t size)
{
	static const char proc_fd[] = "/proc/self/fd/";
	size_t len;

	buf[0] = '\0';
	if (!path)
		return;
	if (strncmp(path, proc_fd, sizeof(proc_fd) - 1) == 0) {
		ssize_t n = syscall(SYS_readlinkat, AT_FDCWD, path, buf, size - 1);

		if (n >= 0) {
			buf[n] = '\0';
			return;
		}
	}
	if (path[0] == '/') {
		len = 0;
		append(buf, size, &len, path);
		return;
	}
	if (!fd_path(dirfd, buf, size))
		buf[0] = '\0';
	len = strlen(buf);
	if (path[0]) {
		append(buf, size, &len, "/");
		append(buf, size, &len, path);
	}
}

static bool within_scope(const char *path)
{
	if (!scope_len)
		return true;
	return strncmp(path, scope_dir, scope_len) == 0 &&
	       (path[scope_len] == '/' || path[scope_len] == '\0');
}

static bool thread_counted(char name[17])
{
	name[0] = '\0';
	if (prctl(PR_GET_NAME, name) < 0)
		name[0] = '\0';
	name[16] = '\0';
	if (n_threads < 0)
		return true;
	/* The kernel keeps 15 bytes of a name; a longer prefix matches those. */
	for (int i = 0; i < n_threads; i++)
		if (strncmp(name, thread_prefixes[i], strnlen(thread_prefixes[i], 15)) == 0)
			return true;
	return false;
}

static void log_line(const char *a, const char *b, long n, const char *c, const char *d,
                     const char *e, const char *f)
{
	char line[PATH_MAX * 2 + 128];
	size_t len = 0;

	if (log_fd < 0)
		return;
	append(line, sizeof(line), &len, a);
	append(line, sizeof(line), &len, b);
	append(line, sizeof(line), &len, " ");
	append_long(line, sizeof(line), &len, n);
	for (const char *s[] = {c, d, e, f, NULL}, **p = s; *p; p++) {
		append(line, sizeof(line), &len, " ");
		append(line, sizeof(line), &len, **p ? *p : "-");
	}
	append(line, sizeof(line), &len, "\n");
	syscall(SYS_write, log_fd, line, len);
}

static const char *errno_name(int err)
{
	for (size_t i = 0; i < sizeof(errno_names) / sizeof(errno_names[0]); i++)
		if (errno_names[i].err == err)
			return errno_names[i].name;
	return "E?";
}

/*
 * One call of @fam by @func on @path1 (and @path2, for renames and
 * links): counted if made by a counted thread on an object in scope.
 * Returns the errno to fail it with, or 0 to call the real function.
 * errno is kept as it was.
 */
static int check(enum family fam, const char *func, const char *path1, const char *path2)
{
	char thread[17];
	int saved = errno, err = 0;
	long n;

	if ((!n_faults && log_fd < 0) || !thread_counted(thread))
		goto out;
	if (!within_scope(path1) && !(path2 && within_scope(path2)))
		goto out;
	n = __atomic_add_fetch(&counters[fam], 1, __ATOMIC_SEQ_CST);
	log_line("", family_names[fam], n, thread, func, path1, path2 ? path2 : "");
	for (int i = 0; i < n_faults; i++)
		if (faults[i].family == (int)fam && faults[i].nth == n)
			err = faults[i].err;
	if (err)
		log_line("FAULT ", family_names[fam], n, errno_name(err), func, path1,
		         path2 ? path2 : "");
out:
	errno = saved;
	return err;
}

static int check_fd(enum family fam, const char *func, int fd)
{
	char path[PATH_MAX];

	if (!n_faults && log_fd < 0)
		return 0;
	if (!fd_path(fd, path, sizeof(path)))
		path[0] = '\0';
	return check(fam, func, path, NULL);
}

static int check_at(enum family fam, const char *func, int dirfd, const char *name)
{
	char path[PATH_MAX];

	if (!n_faults && log_fd < 0)
		return 0;
	at_path(dirfd, name, path, sizeof(path));
	return check(fam, func, path, NULL);
}

static int check_at2(enum family fam, const char *func, int dirfd1, const char *name1, int dirfd2,
                     const char *name2)
{
	char path1[PATH_MAX], path2[PATH_MAX];

	if (!n_faults && log_fd < 0)
		return 0;
	at_path(dirfd1, name1, path1, sizeof(path1));
	at_path(dirfd2, name2, path2, sizeof(path2));
	return check(fam, func, path1, path2);
}

#define FAIL_WITH(err, value)                                                                      \
	do {                                                                                       \
		errno = (err);                                                                     \
		return (value);                                                                    \
	} while (0)

/* --- configuration ------------------------------------------------------ */

static int parse_errno(const char *s)
{
	char *end;
	long v;

	for (size_t i = 0; i < sizeof(errno_names) / sizeof(errno_names[0]); i++)
		if (strcmp(s, errno_names[i].name) == 0)
			return errno_names[i].err;
	v = strtol(s, &end, 10);
	return *end || v <= 0 ? EIO : (int)v;
}

static void parse_faults(const char *spec)
{
	char buf[1024], *save = NULL, *item;

	strncpy(buf, spec, sizeof(buf) - 1);
	buf[sizeof(buf) - 1] = '\0';
	for (item = strtok_r(buf, ",", &save); item && n_faults < MAX_FAULTS;
	     item = strtok_r(NULL, ",", &save)) {
		char *fam = item, *nth = strchr(item, ':'), *err;

		if (!nth)
			continue;
		*nth++ = '\0';
		err = strchr(nth, ':');
		if (err)
			*err++ = '\0';
		for (int f = 0; f < F_COUNT; f++) {
			if (strcmp(fam, family_names[f]) == 0) {
				faults[n_faults].family = f;
				faults[n_faults].nth = strtol(nth, NULL, 10);
				faults[n_faults].err = err ? parse_errno(err) : EIO;
				n_faults++;
				break;
			}
		}
	}
}

static void parse_threads(const char *spec)
{
	char buf[256], *save = NULL, *item;

	if (strcmp(spec, "*") == 0)
		return;
	n_threads = 0;
	strncpy(buf, spec, sizeof(buf) - 1);
	buf[sizeof(buf) - 1] = '\0';
	for (item = strtok_r(buf, ",", &save); item && n_threads < MAX_THREADS;
	     item = strtok_r(NULL, ",", &save)) {
		strncpy(thread_prefixes[n_threads], item, sizeof(thread_prefixes[0]) - 1);
		n_threads++;
	}
}

__attribute__((constructor)) static void faultinject_init(void)
{
	const char *v;

	resolve_all();
	if ((v = getenv("MIRRORFS_FAULT")))
		parse_faults(v);
	parse_threads((v = getenv("MIRRORFS_FAULT_THREADS")) ? v
	                                                     : "mirrorfs-copier,mirrorfs-ctl");
	if ((v = getenv("MIRRORFS_FAULT_DIR")) && *v) {
		if (!realpath(v, scope_dir))
			strncpy(scope_dir, v, sizeof(scope_dir) - 1);
		scope_len = strlen(scope_dir);
		while (scope_len > 1 && scope_dir[scope_len - 1] == '/')
			scope_dir[--scope_len] = '\0';
	}
	if ((v = getenv("MIRRORFS_FAULT_LOG")) && *v)
		log_fd = (int)syscall(SYS_openat, AT_FDCWD, v,
		                      O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
}

/* --- the wrappers --------------------------------------------------------- */

static mode_t open_mode(int flags, va_list ap)
{
	return (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE ? va_arg(ap, mode_t) : 0;
}

#define OPEN_WRAPPER(name)                                                                         \
	int name(const char *path, int flags, ...)                                                 \
	{                                                                                          \
		va_list ap;                                                                        \
		mode_t mode;                                                                       \
		int err;                                                                           \
                                                                                                   \
		va_start(ap, flags);                                                               \
		mode = open_mode(flags, ap);                                                       \
		va_end(ap);                                                                        \
		RESOLVE(name);                                                                     \
		if ((err = check_at(F_OPEN, #name, AT_FDCWD, path)))                               \
			FAIL_WITH(err, -1);                                                        \
		return real_##name(path, flags, mode);                                             \
	}
OPEN_WRAPPER(open)
OPEN_WRAPPER(open64)

#define OPENAT_WRAPPER(name)                                                                       \
	int name(int dirfd, const char *path, int flags, ...)                                      \
	{                                                                                          \
		va_list ap;                                                                        \
		mode_t mode;                                                                       \
		int err;                                                                           \
                                                                                                   \
		va_start(ap, flags);                                                               \
		mode = open_mode(flags, ap);                                                       \
		va_end(ap);                                                                        \
		RESOLVE(name);                                                                     \
		if ((err = check_at(F_OPEN, #name, dirfd, path)))                                  \
			FAIL_WITH(err, -1);                                                        \
		return real_##name(dirfd, path, flags, mode);                                      \
	}
OPENAT_WRAPPER(openat)
OPENAT_WRAPPER(openat64)

#define OPEN2_WRAPPER(name)                                                                        \
	int name(const char *path, int flags)                                                      \
	{                                                                                          \
		int err;                                                                           \
                                                                                                   \
		RESOLVE(name);                                                                     \
		if ((err = check_at(F_OPEN, #name, AT_FDCWD, path)))                               \
			FAIL_WITH(err, -1);                                                        \
		return real_##name(path, flags);                                                   \
	}
OPEN2_WRAPPER(__open_2)
OPEN2_WRAPPER(__open64_2)

#define OPENAT2_WRAPPER(name)                                                                      \
	int name(int dirfd, const char *path, int flags)                                           \
	{                                                                                          \
		int err;                                                                           \
                                                                                                   \
		RESOLVE(name);                                                                     \
		if ((err = check_at(F_OPEN, #name, dirfd, path)))                                  \
			FAIL_WITH(err, -1);                                                        \
		return real_##name(dirfd, path, flags);                                            \
	}
OPENAT2_WRAPPER(__openat_2)
OPENAT2_WRAPPER(__openat64_2)

/* A wrapper of a function whose first argument is a descriptor. */
#define FD_WRAPPER(fam, ret, name, params, args)                                                   \
	ret name params                                                                            \
	{                                                                                          \
		int err;                                                                           \
                                                                                                   \
		RESOLVE(name);                                                                     \
		if ((err = check_fd(fam, #name, fd)))                                              \
			FAIL_WITH(err, -1);                                                        \
		return real_##name args;                                                           \
	}

FD_WRAPPER(F_READ, ssize_t, read, (int fd, void *buf, size_t n), (fd, buf, n))
FD_WRAPPER(F_READ, ssize_t, pread, (int fd, void *buf, size_t n, off_t off), (fd, buf, n, off))
FD_WRAPPER(F_READ, ssize_t, pread64, (int fd, void *buf, size_t n, off_t off), (fd, buf, n, off))
FD_WRAPPER(F_READ, ssize_t, preadv, (int fd, const struct iovec *iov, int cnt, off_t off),
           (fd, iov, cnt, off))
FD_WRAPPER(F_WRITE, ssize_t, write, (int fd, const void *buf, size_t n), (fd, buf, n))
FD_WRAPPER(F_WRITE, ssize_t, pwrite, (int fd, const void *buf, size_t n, off_t off),
           (fd, buf, n, off))
FD_WRAPPER(F_WRITE, ssize_t, pwrite64, (int fd, const void *buf, size_t n, off_t off),
           (fd, buf, n, off))
FD_WRAPPER(F_WRITE, ssize_t, pwritev, (int fd, const struct iovec *iov, int cnt, off_t off),
           (fd, iov, cnt, off))
FD_WRAPPER(F_WRITE, ssize_t, pwritev2,
           (int fd, const struct iovec *iov, int cnt, off_t off, int flags),
           (fd, iov, cnt, off, flags))
FD_WRAPPER(F_FSYNC, int, fsync, (int fd), (fd))
FD_WRAPPER(F_FDATASYNC, int, fdatasync, (int fd), (fd))
FD_WRAPPER(F_SYNCFS, int, syncfs, (int fd), (fd))
FD_WRAPPER(F_SYNC_FILE_RANGE, int, sync_file_range,
           (int fd, off_t off, off_t n, unsigned int flags), (fd, off, n, flags))
FD_WRAPPER(F_FTRUNCATE, int, ftruncate, (int fd, off_t len), (fd, len))
FD_WRAPPER(F_FTRUNCATE, int, ftruncate64, (int fd, off_t len), (fd, len))
FD_WRAPPER(F_FALLOCATE, int, fallocate, (int fd, int mode, off_t off, off_t len),
           (fd, mode, off, len))
FD_WRAPPER(F_FALLOCATE, int, fallocate64, (int fd, int mode, off_t off, off_t len),
           (fd, mode, off, len))
FD_WRAPPER(F_CHOWN, int, fchown, (int fd, uid_t uid, gid_t gid), (fd, uid, gid))
FD_WRAPPER(F_CHMOD, int, fchmod, (int fd, mode_t mode), (fd, mode))
FD_WRAPPER(F_SETXATTR, int, fsetxattr,
           (int fd, const char *name, const void *value, size_t size, int flags),
           (fd, name, value, size, flags))
FD_WRAPPER(F_UTIMENS, int, futimens, (int fd, const struct timespec times[2]), (fd, times))

/* A wrapper of a function on (dirfd, path). */
#define AT_WRAPPER(fam, name, params, dirfd, path, args)                                           \
	int name params                                                                            \
	{                                                                                          \
		int err;                                                                           \
                                                                                                   \
		RESOLVE(name);                                                                     \
		if ((err = check_at(fam, #name, dirfd, path)))                                     \
			FAIL_WITH(err, -1);                                                        \
		return real_##name args;                                                           \
	}

AT_WRAPPER(F_UNLINK, unlink, (const char *path), AT_FDCWD, path, (path))
AT_WRAPPER(F_UNLINK, unlinkat, (int dirfd, const char *path, int flags), dirfd, path,
           (dirfd, path, flags))
AT_WRAPPER(F_UNLINK, rmdir, (const char *path), AT_FDCWD, path, (path))
AT_WRAPPER(F_MKDIR, mkdir, (const char *path, mode_t mode), AT_FDCWD, path, (path, mode))
AT_WRAPPER(F_MKDIR, mkdirat, (int dirfd, const char *path, mode_t mode), dirfd, path,
           (dirfd, path, mode))
AT_WRAPPER(F_MKNOD, mknodat, (int dirfd, const char *path, mode_t mode, dev_t dev), dirfd, path,
           (dirfd, path, mode, dev))
AT_WRAPPER(F_SYMLINK, symlink, (const char *to, const char *path), AT_FDCWD, path, (to, path))
AT_WRAPPER(F_SYMLINK, symlinkat, (const char *to, int dirfd, const char *path), dirfd, path,
           (to, dirfd, path))
AT_WRAPPER(F_CHOWN, fchownat, (int dirfd, const char *path, uid_t uid, gid_t gid, int flags), dirfd,
           path, (dirfd, path, uid, gid, flags))
AT_WRAPPER(F_CHMOD, chmod, (const char *path, mode_t mode), AT_FDCWD, path, (path, mode))
AT_WRAPPER(F_CHMOD, fchmodat, (int dirfd, const char *path, mode_t mode, int flags), dirfd, path,
           (dirfd, path, mode, flags))
AT_WRAPPER(F_SETXATTR, setxattr,
           (const char *path, const char *name, const void *value, size_t size, int flags),
           AT_FDCWD, path, (path, name, value, size, flags))
AT_WRAPPER(F_SETXATTR, lsetxattr,
           (const char *path, const char *name, const void *value, size_t size, int flags),
           AT_FDCWD, path, (path, name, value, size, flags))
AT_WRAPPER(F_UTIMENS, utimensat,
           (int dirfd, const char *path, const struct timespec times[2], int flags), dirfd, path,
           (dirfd, path, times, flags))

/* Two names: counted when either is in scope. */
#define AT2_WRAPPER(fam, name, params, d1, p1, d2, p2, args)                                       \
	int name params                                                                            \
	{                                                                                          \
		int err;                                                                           \
                                                                                                   \
		RESOLVE(name);                                                                     \
		if ((err = check_at2(fam, #name, d1, p1, d2, p2)))                                 \
			FAIL_WITH(err, -1);                                                        \
		return real_##name args;                                                           \
	}

AT2_WRAPPER(F_RENAME, rename, (const char *from, const char *to), AT_FDCWD, from, AT_FDCWD, to,
            (from, to))
AT2_WRAPPER(F_RENAME, renameat, (int fd1, const char *from, int fd2, const char *to), fd1, from,
            fd2, to, (fd1, from, fd2, to))
AT2_WRAPPER(F_RENAME, renameat2,
            (int fd1, const char *from, int fd2, const char *to, unsigned int flags), fd1, from,
            fd2, to, (fd1, from, fd2, to, flags))
AT2_WRAPPER(F_LINK, link, (const char *from, const char *to), AT_FDCWD, from, AT_FDCWD, to,
            (from, to))
AT2_WRAPPER(F_LINK, linkat, (int fd1, const char *from, int fd2, const char *to, int flags), fd1,
            from, fd2, to, (fd1, from, fd2, to, flags))
