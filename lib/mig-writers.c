/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Writers beside the mount.  mirrorfs is mounted over the source, so a
 * process that opened an image before the mount still reaches the file
 * beneath it, and nothing it writes there is mirrored: a migration
 * started under it would switch to a target without those writes.  The
 * start refuses while one exists (adopt moves a QEMU's disks onto the
 * mount first).
 *
 * /proc is read first: each descriptor's link (its path) and its fdinfo
 * (the mount it was opened on and its open flags).  A descriptor opened
 * through the mount has the mount's mnt_id, one opened beneath it the
 * mnt_id of the source's own root descriptor, which this daemon opened
 * before mounting.  Only such a one is then looked at (fstat() of the
 * /proc link, opened O_PATH): it lives on the source's file system, so
 * that sends no request to this daemon.  A FIFO or a device stores
 * nothing, and a file with no name left is in no tree: neither counts.
 * A file held by a name since removed counts if it has another.
 *
 * A process in another mount namespace (QEMU under libvirt has its own,
 * a copy of the host's) numbers its mounts apart: its descriptor counts
 * when its mount shows the same view as ours (mount_view()), so that
 * the same path means the same file.
 *
 * Not seen (doc/design.md): a writer through another bind mount, or a
 * namespace that mounts the source's file system elsewhere; a file the
 * kernel holds with no descriptor (a loop device's backing file); a
 * file mapped but no longer open.
 */
#define _GNU_SOURCE
#include "migration-int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The mnt_id and open flags of descriptor @fd of /proc/@pid; 0 or -errno. */
static int fd_mount_and_flags(const char *pid, const char *fd, int *mnt_id, unsigned *flags)
{
	g_autofree char *path = g_strdup_printf("/proc/%s/fdinfo/%s", pid, fd);
	g_autofree char *text = NULL;
	bool have_mnt = false, have_flags = false;

	if (!g_file_get_contents(path, &text, NULL, NULL))
		return -ENOENT;
	for (char *line = text; line && *line;
	     line = strchr(line, '\n'), line = line ? line + 1 : NULL) {
		if (sscanf(line, "mnt_id: %d", mnt_id) == 1)
			have_mnt = true;
		else if (sscanf(line, "flags: %o", flags) == 1)
			have_flags = true;
	}
	return have_mnt && have_flags ? 0 : -ENODATA;
}

/* The name a process runs as: its argv[0]'s last component, else its comm. */
static char *process_name(const char *pid)
{
	g_autofree char *path = g_strdup_printf("/proc/%s/cmdline", pid);
	g_autofree char *args = NULL;
	gsize len = 0;

	g_autofree char *comm = NULL;

	if (g_file_get_contents(path, &args, &len, NULL) && len > 0 && args[0])
		return g_path_get_basename(args);
	g_free(path);
	path = g_strdup_printf("/proc/%s/comm", pid);
	if (g_file_get_contents(path, &comm, NULL, NULL))
		return g_strdup(g_strchomp(comm));
	return g_strdup("a process");
}

/*
 * Mount @mnt_id of /proc/@pid/mountinfo as "MAJ:MIN ROOT MOUNTPOINT": the
 * file system, the directory of it mounted, and where.  Two mounts with
 * the same view in two mount namespaces (a copy, as libvirt makes for
 * each QEMU) have different ids and the same view.  NULL if none.
 */
static char *mount_view(const char *pid, int mnt_id)
{
	g_autofree char *path = g_strdup_printf("/proc/%s/mountinfo", pid);
	g_autofree char *text = NULL;

	if (!g_file_get_contents(path, &text, NULL, NULL))
		return NULL;
	for (char *line = text, *next; line && *line; line = next) {
		char dev[32], root[PATH_MAX], point[PATH_MAX];
		int id;

		next = strchr(line, '\n');
		if (next)
			*next++ = '\0';
		if (sscanf(line, "%d %*d %31s %4095s %4095s", &id, dev, root, point) == 4 &&
		    id == mnt_id)
			return g_strdup_printf("%s %s %s", dev, root, point);
	}
	return NULL;
}

typedef struct {
	const char *source; /* canonical, no trailing slash */
	char **only;        /* a per-VM job's entries: writers elsewhere do not count */
	int mnt_id;         /* of the source beneath the mount */
	char *view;         /* that mount's mount_view(), or NULL */
	unsigned found;
	char *first; /* "NAME (pid P) holds PATH" */
} WriterScan;

/*
 * Whether mount @mnt_id of process @pid is the one the source lies on
 * (beneath the mount), in our mount namespace or as a copy in its own.
 */
static bool on_source_mount(WriterScan *w, const char *pid, int mnt_id)
{
	g_autofree char *view = NULL;

	if (mnt_id == w->mnt_id)
		return true;
	view = w->view ? mount_view(pid, mnt_id) : NULL;
	return view && !strcmp(view, w->view);
}

static void scan_process(WriterScan *w, const char *pid)
{
	g_autofree char *dir = g_strdup_printf("/proc/%s/fd", pid);
	DIR *dp = opendir(dir);
	struct dirent *de;

	if (!dp)
		return; /* gone, or not ours to look at */
	while ((de = readdir(dp))) {
		static const char deleted[] = " (deleted)";
		char link[PATH_MAX];
		const char *rel;
		struct stat st;
		unsigned flags;
		ssize_t n;
		int mnt_id, fd, ret;

		if (de->d_name[0] == '.')
			continue;
		n = readlinkat(dirfd(dp), de->d_name, link, sizeof(link) - 1);
		if (n <= 0)
			continue;
		link[n] = '\0';
		/* The name the file was opened by, for the prefix test below. */
		if (g_str_has_suffix(link, deleted))
			link[n - strlen(deleted)] = '\0';
		/* A path (not a socket or pipe) under the source. */
		rel = link[0] == '/' ? mfs_path_within(link, w->source) : NULL;
		if (!rel || !*rel || !mig_only_holds(w->only, rel))
			continue;
		if (fd_mount_and_flags(pid, de->d_name, &mnt_id, &flags) < 0 ||
		    (flags & O_ACCMODE) == O_RDONLY || !on_source_mount(w, pid, mnt_id))
			continue;
		fd = openat(dirfd(dp), de->d_name, O_PATH | O_CLOEXEC);
		if (fd < 0)
			continue;
		ret = fstat(fd, &st);
		close(fd);
		if (ret < 0 || !S_ISREG(st.st_mode) || st.st_nlink == 0)
			continue;
		if (w->found++ == 0) {
			g_autofree char *name = process_name(pid);

			w->first = g_strdup_printf("%s (pid %s) holds %s", name, pid, link);
		}
	}
	closedir(dp);
}

int mig_check_writers(const char *source, int root_fd, char **only, char **error)
{
	/* Our pid as this /proc numbers it, which may not be getpid()'s namespace. */
	g_autofree char *self = g_file_read_link("/proc/self", NULL);
	g_autofree char *fdstr = g_strdup_printf("%d", root_fd);
	WriterScan w = {.source = source, .only = only};
	unsigned flags;
	struct dirent *de;
	DIR *proc;

	/* No /proc, no fdinfo mnt_id (before Linux 3.15): nothing to look with. */
	if (fd_mount_and_flags("self", fdstr, &w.mnt_id, &flags) < 0)
		return 0;
	proc = opendir("/proc");
	if (!proc)
		return 0;
	w.view = mount_view("self", w.mnt_id);
	while ((de = readdir(proc))) {
		if (de->d_name[0] < '1' || de->d_name[0] > '9' ||
		    (self && !strcmp(de->d_name, self)))
			continue;
		scan_process(&w, de->d_name);
	}
	closedir(proc);
	g_free(w.view);
	if (!w.found)
		return 0;
	if (w.found > 1)
		*error =
		    g_strdup_printf("%s open for writing beside the mount (and %u more such "
		                    "files): their writes would never reach the target.  Adopt "
		                    "its disks first (mirrorfsctl MOUNTPOINT adopt --qmp SOCKET) "
		                    "or stop it",
		                    w.first, w.found - 1);
	else
		*error =
		    g_strdup_printf("%s open for writing beside the mount: its writes would never "
		                    "reach the target.  Adopt its disks first (mirrorfsctl "
		                    "MOUNTPOINT adopt --qmp SOCKET) or stop it",
		                    w.first);
	g_free(w.first);
	return -EBUSY;
}
