/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A copy's checkpoints: per file, a cursor below which the target already
 * holds the source's data, so that a restarted migration copies only what
 * is left (mig-resume.c decides what to trust).  A key file at the
 * target's root, beside the copying journal, replaced atomically
 * (journal_replace_file()).
 *
 * It is written with the boot id, because what it may be trusted for
 * depends on what survived: after a daemon's crash the page cache did,
 * with the mirrored writes in it and the intent log that names the
 * half-done ones; after a reboot neither did, and only files the guest
 * never changed during the copy keep their checkpoint.
 */
#define _GNU_SOURCE
#include "checkpoint.h"
#include "journal.h"
#include "mfs.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#define GROUP "checkpoints"
/* A record larger than this is not ours. */
#define CHECKPOINTS_MAX_SIZE (64u << 20)

void checkpoints_init(Checkpoints *c)
{
	memset(c, 0, sizeof(*c));
	c->files = g_array_new(FALSE, TRUE, sizeof(CheckpointFile));
}

void checkpoints_clear(Checkpoints *c)
{
	for (guint i = 0; c->files && i < c->files->len; i++)
		g_free(g_array_index(c->files, CheckpointFile, i).path);
	if (c->files)
		g_array_unref(c->files);
	g_free(c->source);
	g_free(c->boot);
	memset(c, 0, sizeof(*c));
}

static char boot_id[64];

static void read_boot_id(void)
{
	g_autofree char *text = NULL;

	if (g_file_get_contents("/proc/sys/kernel/random/boot_id", &text, NULL, NULL))
		g_strlcpy(boot_id, g_strstrip(text), sizeof(boot_id));
}

/* pthread_once, not g_once: ThreadSanitizer sees the former's ordering. */
const char *checkpoints_boot_id(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;

	pthread_once(&once, read_boot_id);
	return boot_id;
}

int checkpoints_write(int dir_fd, const Checkpoints *c, bool durable)
{
	g_autoptr(GKeyFile) kf = g_key_file_new();
	g_autofree char *source = mfs_escape_name(c->source);
	g_autofree char *data = NULL;
	gsize len;
	int ret;

	g_key_file_set_string(kf, GROUP, "source", source);
	g_key_file_set_string(kf, GROUP, "boot", c->boot ? c->boot : "");
	g_key_file_set_uint64(kf, GROUP, "gen", c->gen);
	g_key_file_set_int64(kf, GROUP, "time", g_get_real_time() / G_USEC_PER_SEC);
	for (guint i = 0; i < c->files->len; i++) {
		const CheckpointFile *f = &g_array_index(c->files, CheckpointFile, i);
		g_autofree char *group = g_strdup_printf("file %u", i);
		g_autofree char *path = mfs_escape_name(f->path);

		g_key_file_set_string(kf, group, "path", path);
		g_key_file_set_uint64(kf, group, "id", f->id);
		g_key_file_set_uint64(kf, group, "cursor", f->cursor);
		g_key_file_set_uint64(kf, group, "ino", f->src_ino);
		g_key_file_set_boolean(kf, group, "changed", f->changed);
	}
	data = g_key_file_to_data(kf, &len, NULL);
	ret = journal_replace_file(dir_fd, MFS_CHECKPOINT_NAME, data, len, durable);
	if (ret == 0 && durable)
		ret = journal_sync_dir(dir_fd);
	return ret;
}

int checkpoints_read(int dir_fd, Checkpoints *out)
{
	g_autoptr(GKeyFile) kf = g_key_file_new();
	g_autofree char *data = NULL;
	g_autofree char *source = NULL;
	g_auto(GStrv) groups = NULL;
	GError *gerr = NULL;
	size_t len = 0;
	int ret = 0;

	checkpoints_init(out);
	data = journal_read_file(dir_fd, MFS_CHECKPOINT_NAME, CHECKPOINTS_MAX_SIZE, &len, &ret);
	if (!data)
		goto fail;
	ret = -EBADMSG;
	if (!g_key_file_load_from_data(kf, data, len, G_KEY_FILE_NONE, NULL))
		goto fail;
	source = g_key_file_get_string(kf, GROUP, "source", NULL);
	out->boot = g_key_file_get_string(kf, GROUP, "boot", NULL);
	out->gen = g_key_file_get_uint64(kf, GROUP, "gen", &gerr);
	if (!source || !out->boot || gerr || mfs_unescape_name(source, &out->source) < 0)
		goto fail;
	groups = g_key_file_get_groups(kf, NULL);
	for (char **g = groups; *g; g++) {
		CheckpointFile f = {0};
		g_autofree char *path = NULL;

		if (!g_str_has_prefix(*g, "file "))
			continue;
		path = g_key_file_get_string(kf, *g, "path", NULL);
		f.id = (uint32_t)g_key_file_get_uint64(kf, *g, "id", &gerr);
		if (!gerr)
			f.cursor = g_key_file_get_uint64(kf, *g, "cursor", &gerr);
		if (!gerr)
			f.src_ino = g_key_file_get_uint64(kf, *g, "ino", &gerr);
		if (!gerr)
			f.changed = g_key_file_get_boolean(kf, *g, "changed", &gerr);
		if (!path || gerr || mfs_unescape_name(path, &f.path) < 0)
			goto fail;
		g_array_append_val(out->files, f);
	}
	return 0;
fail:
	g_clear_error(&gerr);
	checkpoints_clear(out);
	return ret;
}

void checkpoints_remove(int dir_fd)
{
	g_autofree char *tmp = g_strconcat(MFS_CHECKPOINT_NAME, MFS_JOURNAL_TMP_SUFFIX, NULL);

	unlinkat(dir_fd, MFS_CHECKPOINT_NAME, 0);
	unlinkat(dir_fd, tmp, 0);
}
