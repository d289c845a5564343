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
 *   in the old home of a migration back, while copying: state=copying
 *       and home=true.  It replaced a "switched" record that sent
 *       daemons to this copy's source; abandoning the copy writes that
 *       record back, durably, instead of leaving no journal (which would
 *       have the directory, emptied, served as the authoritative tree).
 *
 * The journal's names are reserved at the root of a served tree: a guest
 * can neither make nor see them.
 */
#define _GNU_SOURCE
#include "journal.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>

/* A journal is a few lines and the operator's names (Journal.keep). */
#define JOURNAL_MAX_SIZE (16u << 20)

static const char *const reserved_names[] = {MFS_JOURNAL_NAME, MFS_CHECKPOINT_NAME,
                                             MFS_INTENT_LOG_NAME, MFS_PLACEMENTS_NAME};

char *journal_job_record_name(const char *target)
{
	g_autofree char *digest = g_compute_checksum_for_string(G_CHECKSUM_SHA256, target, -1);

	digest[16] = '\0';
	return g_strconcat(MFS_JOB_RECORD_PREFIX, digest, NULL);
}

bool journal_is_job_record_name(const char *name)
{
	size_t n = strlen(MFS_JOB_RECORD_PREFIX);

	return strncmp(name, MFS_JOB_RECORD_PREFIX, n) == 0 && strlen(name + n) == 16 &&
	       strspn(name + n, "0123456789abcdef") == 16;
}

bool journal_is_reserved_name(const char *name)
{
	/* A guest may make none, nor their temporary names. */
	if (strncmp(name, MFS_JOB_RECORD_PREFIX, strlen(MFS_JOB_RECORD_PREFIX)) == 0)
		return true;
	for (size_t i = 0; i < G_N_ELEMENTS(reserved_names); i++) {
		size_t n = strlen(reserved_names[i]);

		if (strncmp(name, reserved_names[i], n) == 0 &&
		    (name[n] == '\0' || strcmp(name + n, MFS_JOURNAL_TMP_SUFFIX) == 0))
			return true;
	}
	return false;
}

/*
 * The temporary file is made anew, never opened through what is there:
 * the directory may be writable by others (a target, a guest's image
 * directory), and a symlink planted at its name would have root write
 * wherever it points.
 */
static int create_tmp(int dir_fd, const char *tmp)
{
	int fd;

	if (unlinkat(dir_fd, tmp, 0) < 0 && errno != ENOENT)
		return -errno;
	fd = openat(dir_fd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	return fd < 0 ? -errno : fd;
}

int journal_replace_file(int dir_fd, const char *name, const void *data, size_t len, bool durable)
{
	g_autofree char *tmp = g_strconcat(name, MFS_JOURNAL_TMP_SUFFIX, NULL);
	int fd, ret = 0;

	fd = create_tmp(dir_fd, tmp);
	if (fd < 0)
		return fd;
	errno = 0;
	if (write(fd, data, len) != (ssize_t)len || (durable && fsync(fd) < 0))
		ret = errno ? -errno : -EIO;
	close(fd);
	if (ret == 0 && renameat(dir_fd, tmp, dir_fd, name) < 0)
		ret = -errno;
	if (ret < 0)
		unlinkat(dir_fd, tmp, 0);
	return ret;
}

int journal_write_named(int dir_fd, const char *name, const Journal *j, bool durable)
{
	g_autoptr(GKeyFile) kf = g_key_file_new();
	g_autofree char *source = mfs_escape_name(j->source);
	g_autofree char *target = mfs_escape_name(j->target);
	g_autofree char *data = NULL;
	gsize len;

	g_key_file_set_string(kf, "migration", "state", j->state);
	/* Paths are bytes, a key file's strings UTF-8: escaped (mfs_escape_name()). */
	g_key_file_set_string(kf, "migration", "source", source);
	g_key_file_set_string(kf, "migration", "target", target);
	g_key_file_set_boolean(kf, "migration", "escaped", TRUE);
	if (j->home)
		g_key_file_set_boolean(kf, "migration", "home", TRUE);
	if (j->keep) {
		g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func(g_free);

		for (char **k = j->keep; *k; k++)
			g_ptr_array_add(names, mfs_escape_name(*k));
		g_key_file_set_string_list(kf, "migration", "keep",
		                           (const char *const *)names->pdata, names->len);
	}
	for (char **o = j->job; o && *o; o++) {
		g_autofree char *key = g_strndup(*o, strcspn(*o, "="));
		const char *value = *o + strlen(key);

		g_key_file_set_string(kf, "job", key, *value ? value + 1 : "");
	}
	g_key_file_set_int64(kf, "migration", "time", g_get_real_time() / G_USEC_PER_SEC);
	data = g_key_file_to_data(kf, &len, NULL);
	return journal_replace_file(dir_fd, name, data, len, durable);
}

int journal_write(int dir_fd, const Journal *j, bool durable)
{
	return journal_write_named(dir_fd, MFS_JOURNAL_NAME, j, durable);
}

char *journal_read_file(int dir_fd, const char *name, size_t max, size_t *len, int *err)
{
	cleanup_close int fd = openat(dir_fd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	GString *s;
	char buf[65536];
	ssize_t n;

	if (fd < 0) {
		*err = -errno;
		return NULL;
	}
	s = g_string_new(NULL);
	while ((n = read(fd, buf, sizeof(buf))) > 0 && s->len <= max)
		g_string_append_len(s, buf, n);
	if (n != 0 || s->len > max) {
		*err = n < 0 ? -errno : -EFBIG;
		g_string_free(s, TRUE);
		return NULL;
	}
	*len = s->len;
	return g_string_free(s, FALSE);
}

int journal_sync_dir(int dir_fd)
{
	cleanup_close int dfd = openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (dfd < 0)
		return -errno;
	return fsync(dfd) < 0 ? -errno : 0;
}

void journal_clear(Journal *j)
{
	g_clear_pointer(&j->state, g_free);
	g_clear_pointer(&j->source, g_free);
	g_clear_pointer(&j->target, g_free);
	g_clear_pointer(&j->job, g_strfreev);
	g_clear_pointer(&j->keep, g_strfreev);
	j->home = false;
}

static int unescape_in_place(char **text)
{
	char *bytes;
	int ret = mfs_unescape_name(*text, &bytes);

	if (ret < 0)
		return ret;
	g_free(*text);
	*text = bytes;
	return 0;
}

int journal_read(int dir_fd, Journal *out)
{
	return journal_read_named(dir_fd, MFS_JOURNAL_NAME, out);
}

int journal_read_named(int dir_fd, const char *name, Journal *out)
{
	g_autoptr(GKeyFile) kf = g_key_file_new();
	g_autofree char *data = NULL;
	size_t len = 0;
	int ret = 0;

	memset(out, 0, sizeof(*out));
	data = journal_read_file(dir_fd, name, JOURNAL_MAX_SIZE, &len, &ret);
	if (!data)
		return ret;
	if (!g_key_file_load_from_data(kf, data, len, G_KEY_FILE_NONE, NULL))
		return -EBADMSG;
	out->state = g_key_file_get_string(kf, "migration", "state", NULL);
	out->source = g_key_file_get_string(kf, "migration", "source", NULL);
	out->target = g_key_file_get_string(kf, "migration", "target", NULL);
	out->home = g_key_file_get_boolean(kf, "migration", "home", NULL);
	if (g_key_file_has_group(kf, "job")) {
		g_auto(GStrv) keys = g_key_file_get_keys(kf, "job", NULL, NULL);
		GPtrArray *job = g_ptr_array_new();

		for (char **k = keys; k && *k; k++) {
			g_autofree char *v = g_key_file_get_string(kf, "job", *k, NULL);

			g_ptr_array_add(job, g_strdup_printf("%s=%s", *k, v ? v : ""));
		}
		g_ptr_array_add(job, NULL);
		out->job = (char **)g_ptr_array_free(job, FALSE);
	}
	if (g_key_file_has_key(kf, "migration", "keep", NULL)) {
		out->keep = g_key_file_get_string_list(kf, "migration", "keep", NULL, NULL);
		if (!out->keep)
			out->keep = g_new0(char *, 1); /* an empty list */
		for (char **k = out->keep; ret == 0 && *k; k++)
			ret = unescape_in_place(k);
	}
	if (ret < 0 || !out->state || !out->source || !out->target ||
	    (g_key_file_get_boolean(kf, "migration", "escaped", NULL) &&
	     (unescape_in_place(&out->source) < 0 || unescape_in_place(&out->target) < 0))) {
		journal_clear(out);
		return -EBADMSG;
	}
	return 0;
}

char *journal_switched_target(int dir_fd)
{
	Journal j;
	char *target = NULL;

	if (journal_read(dir_fd, &j) < 0)
		return NULL;
	if (strcmp(j.state, "switched") == 0)
		target = g_steal_pointer(&j.target);
	journal_clear(&j);
	return target;
}

int journal_remove(int dir_fd)
{
	return journal_remove_named(dir_fd, MFS_JOURNAL_NAME);
}

int journal_remove_named(int dir_fd, const char *name)
{
	if (unlinkat(dir_fd, name, 0) < 0 && errno != ENOENT)
		return -errno;
	return 0;
}

/* Names and paths are bytes, a key file's strings UTF-8: escaped (mfs_escape_name()). */
static void set_escaped_list(GKeyFile *kf, const char *key, char *const *list)
{
	g_autoptr(GPtrArray) escaped = g_ptr_array_new_with_free_func(g_free);

	for (char *const *l = list; *l; l++)
		g_ptr_array_add(escaped, mfs_escape_name(*l));
	g_key_file_set_string_list(kf, "placements", key, (const char *const *)escaped->pdata,
	                           escaped->len);
}

int placements_write(int dir_fd, char *const *names, char *const *dirs)
{
	g_autoptr(GKeyFile) kf = g_key_file_new();
	g_autofree char *data = NULL;
	gsize len;

	set_escaped_list(kf, "names", names);
	set_escaped_list(kf, "dirs", dirs);
	data = g_key_file_to_data(kf, &len, NULL);
	return journal_replace_file(dir_fd, MFS_PLACEMENTS_NAME, data, len, true);
}

static char **get_escaped_list(GKeyFile *kf, const char *key, gsize *n)
{
	char **list = g_key_file_get_string_list(kf, "placements", key, n, NULL);

	if (!list)
		list = g_new0(char *, 1), *n = 0;
	for (char **l = list; *l; l++)
		if (unescape_in_place(l) < 0) {
			g_strfreev(list);
			return NULL;
		}
	return list;
}

int placements_read(int dir_fd, char ***names, char ***dirs)
{
	g_autoptr(GKeyFile) kf = g_key_file_new();
	g_autofree char *data = NULL;
	gsize n_names = 0, n_dirs = 0;
	size_t len = 0;
	int ret = 0;

	data = journal_read_file(dir_fd, MFS_PLACEMENTS_NAME, JOURNAL_MAX_SIZE, &len, &ret);
	if (!data)
		return ret;
	if (!g_key_file_load_from_data(kf, data, len, G_KEY_FILE_NONE, NULL))
		return -EBADMSG;
	*names = get_escaped_list(kf, "names", &n_names);
	*dirs = get_escaped_list(kf, "dirs", &n_dirs);
	if (!*names || !*dirs || n_names != n_dirs) {
		g_clear_pointer(names, g_strfreev);
		g_clear_pointer(dirs, g_strfreev);
		return -EBADMSG;
	}
	return 0;
}
