/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The journal: one small key file at the root of a tree, replaced
 * atomically (write, rename).
 *
 *   in a source, after a switch: state=switched, target=..., so that a
 *       restarted daemon serves the target and never the stale source.
 *       It is made durable (fsync the file before the rename, the
 *       directory after): crash safety rests on it.
 *   in a target, while copying:  state=copying, source=..., so that a
 *       restarted migration knows the partial files there are its own.
 *       It is not synced.  Each fsync is a device flush, and on a disk
 *       with a write cache a flush stalls every write in flight until
 *       the cache is written: a guest under load lost 360 ms at the
 *       start of a migration to this one.  Nothing depends on it
 *       surviving a crash: without it, a restart of the migration
 *       refuses the names it finds in the target (the overwrite option
 *       takes them), and the kernel's writeback makes it durable within
 *       about 30 seconds anyway.
 */
#define _GNU_SOURCE
#include "journal.h"
#include "mfs-int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>

#define JOURNAL_TMP MFS_JOURNAL_NAME ".tmp"

int journal_write(int dir_fd, const char *state, const char *source, const char *target,
                  bool durable)
{
	g_autoptr(GKeyFile) kf = g_key_file_new();
	g_autofree char *data = NULL;
	gsize len;
	int fd, dfd, ret = 0;

	g_key_file_set_string(kf, "migration", "state", state);
	g_key_file_set_string(kf, "migration", "source", source);
	g_key_file_set_string(kf, "migration", "target", target);
	g_key_file_set_int64(kf, "migration", "time", g_get_real_time() / G_USEC_PER_SEC);
	data = g_key_file_to_data(kf, &len, NULL);

	fd = openat(dir_fd, JOURNAL_TMP, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	errno = 0;
	if (write(fd, data, len) != (ssize_t)len || (durable && fsync(fd) < 0))
		ret = errno ? -errno : -EIO;
	close(fd);
	if (ret == 0 && renameat(dir_fd, JOURNAL_TMP, dir_fd, MFS_JOURNAL_NAME) < 0)
		ret = -errno;
	if (ret < 0) {
		unlinkat(dir_fd, JOURNAL_TMP, 0);
		return ret;
	}
	if (!durable)
		return 0;
	dfd = openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return -errno;
	if (fsync(dfd) < 0)
		ret = -errno;
	close(dfd);
	return ret;
}

int journal_read(int dir_fd, char **state, char **source, char **target)
{
	g_autoptr(GKeyFile) kf = g_key_file_new();
	g_autofree char *data = NULL;
	char buf[8192];
	ssize_t n;
	int fd;

	fd = openat(dir_fd, MFS_JOURNAL_NAME, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -errno;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n < 0)
		return -errno;
	buf[n] = '\0';
	if (!g_key_file_load_from_data(kf, buf, n, G_KEY_FILE_NONE, NULL))
		return -EBADMSG;
	*state = g_key_file_get_string(kf, "migration", "state", NULL);
	*source = g_key_file_get_string(kf, "migration", "source", NULL);
	*target = g_key_file_get_string(kf, "migration", "target", NULL);
	if (!*state || !*source || !*target) {
		g_clear_pointer(state, g_free);
		g_clear_pointer(source, g_free);
		g_clear_pointer(target, g_free);
		return -EBADMSG;
	}
	return 0;
}

char *journal_switched_target(int dir_fd)
{
	g_autofree char *state = NULL, *source = NULL;
	char *target = NULL;

	if (journal_read(dir_fd, &state, &source, &target) < 0)
		return NULL;
	if (strcmp(state, "switched") != 0)
		g_clear_pointer(&target, g_free);
	return target;
}

int journal_remove(int dir_fd)
{
	if (unlinkat(dir_fd, MFS_JOURNAL_NAME, 0) < 0 && errno != ENOENT)
		return -errno;
	return 0;
}
