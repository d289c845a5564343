/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Claims on directories, one daemon per tree; and the identity of a
 * mirrorfs mount, from mountinfo.
 *
 * Two daemons serving one directory each mirror only their own writes, so
 * a write through the second is missing from the first's target after its
 * switch.  A daemon therefore holds an exclusive flock(2) on the directory
 * it serves, and a migration on its target from the start (a second
 * daemon started on the old source follows the journal there and finds it
 * taken).  The lock lives on a descriptor of its own, opened O_RDONLY
 * (flock needs a real open, not O_PATH), so that a switch can drop the
 * source's claim without touching the descriptors that serve the tree.
 *
 * flock is chosen over POSIX locks because closing any other descriptor
 * of the directory would drop a POSIX lock; /proc/locks names the holder's
 * pid, which the refusal reports.
 */
#define _GNU_SOURCE
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

int mfs_dir_claim(int dir_fd, int *lock_fd)
{
	int fd = openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int ret;

	if (fd < 0)
		return -errno;
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		ret = errno == EWOULDBLOCK ? -EWOULDBLOCK : -errno;
		close(fd);
		return ret;
	}
	*lock_fd = fd;
	return 0;
}

/*
 * A lock taken before fork(2) is shared with the child, but /proc/locks
 * goes on naming the parent, which exits: convert it twice, so that the
 * calling process is recorded.  Shared in between, never released, so no
 * second daemon can slip in.
 */
void mfs_dir_claim_renew(int lock_fd)
{
	if (lock_fd < 0)
		return;
	if (flock(lock_fd, LOCK_SH | LOCK_NB) < 0 || flock(lock_fd, LOCK_EX | LOCK_NB) < 0)
		g_warning("renewing the lock on the directory served: %s", g_strerror(errno));
}

/* The pid holding a flock on the object of @fd, from /proc/locks; 0 if none is found. */
static pid_t flock_holder(int fd)
{
	g_autofree char *text = NULL;
	g_auto(GStrv) lines = NULL;
	struct stat st;

	if (fstat(fd, &st) < 0 || !g_file_get_contents("/proc/locks", &text, NULL, NULL))
		return 0;
	lines = g_strsplit(text, "\n", -1);
	for (char **l = lines; *l; l++) {
		unsigned maj, min;
		unsigned long ino;
		int pid;

		/* "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF"; "->" lines wait. */
		if (strstr(*l, "->") ||
		    sscanf(*l, "%*d: FLOCK %*s %*s %d %x:%x:%lu", &pid, &maj, &min, &ino) != 4)
			continue;
		if (makedev(maj, min) == st.st_dev && ino == st.st_ino && pid > 0)
			return pid;
	}
	return 0;
}

int mfs_mirrorfs_mount_dev(const char *mountinfo, const char *mountpoint, dev_t *dev)
{
	g_autofree char *text = NULL;
	g_auto(GStrv) lines = NULL;
	int ret = -ENOENT;

	if (!g_file_get_contents(mountinfo, &text, NULL, NULL))
		return -EIO;
	lines = g_strsplit(text, "\n", -1);
	for (char **l = lines; *l; l++) {
		g_auto(GStrv) f = g_strsplit(*l, " ", -1);
		g_autofree char *mnt = NULL;
		unsigned maj, min;
		char **sep;

		/* "36 35 0:52 / /mnt rw,... shared:1 - fuse.mirrorfs /src rw,..." */
		if (g_strv_length(f) < 7)
			continue;
		for (sep = f + 6; *sep && strcmp(*sep, "-") != 0; sep++)
			;
		if (!*sep || !sep[1] || strcmp(sep[1], "fuse.mirrorfs") != 0)
			continue;
		mnt = g_strcompress(f[4]); /* mountinfo escapes space as \040 */
		if (strcmp(mnt, mountpoint) != 0 || sscanf(f[2], "%u:%u", &maj, &min) != 2)
			continue;
		/* Mounts are listed in order: the last one is on top. */
		if (dev)
			*dev = makedev(maj, min);
		ret = 0;
	}
	return ret;
}

/* The mount point a mirrorfs process was given: its second non-option argument. */
static char *mirrorfs_mountpoint(pid_t pid)
{
	g_autofree char *path = g_strdup_printf("/proc/%d/cmdline", (int)pid);
	g_autofree char *comm_path = g_strdup_printf("/proc/%d/comm", (int)pid);
	g_autofree char *cwd_path = g_strdup_printf("/proc/%d/cwd", (int)pid);
	g_autofree char *args = NULL, *comm = NULL, *cwd = NULL, *canon = NULL;
	const char *mnt = NULL;
	gsize len;
	int nonopt = 0;

	if (!g_file_get_contents(comm_path, &comm, NULL, NULL) ||
	    strcmp(g_strchomp(comm), "mirrorfs"))
		return NULL;
	if (!g_file_get_contents(path, &args, &len, NULL))
		return NULL;
	for (const char *a = args + strlen(args) + 1; a < args + len; a += strlen(a) + 1) {
		if (!strcmp(a, "-o")) {
			a += strlen(a) + 1;
			continue;
		}
		if (a[0] == '-')
			continue;
		if (++nonopt == 2)
			mnt = a;
	}
	if (!mnt)
		return NULL;
	if (!g_path_is_absolute(mnt)) {
		/* Relative to where it runs: right in the foreground, checked below. */
		cwd = g_file_read_link(cwd_path, NULL);
		if (!cwd)
			return NULL;
	}
	/* Lexically: looking at the path could send a request to a hung mount. */
	canon = g_canonicalize_filename(mnt, cwd);
	g_free(path);
	path = g_strdup_printf("/proc/%d/mountinfo", (int)pid);
	/* Named only if it is one of its mounts indeed. */
	if (mfs_mirrorfs_mount_dev(path, canon, NULL) < 0)
		return NULL;
	return g_steal_pointer(&canon);
}

char *mfs_dir_claim_holder(int dir_fd)
{
	pid_t pid = flock_holder(dir_fd);
	g_autofree char *mnt = NULL;

	if (!pid)
		return g_strdup("another process");
	mnt = mirrorfs_mountpoint(pid);
	if (mnt)
		return g_strdup_printf("mirrorfs (pid %d, mounted on '%s')", (int)pid, mnt);
	return g_strdup_printf("another process (pid %d)", (int)pid);
}
