/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * mirrorfsctl adopt and release.  The mount says where things are (its
 * status: source, target, state); QEMU is told over QMP to reopen its disks
 * (qemu-disks.c); /proc/PID/fd of the QEMU process proves the result: after
 * adopt it holds no descriptor beside the mount, after release none through
 * it.
 */
#define _GNU_SOURCE
#include "adopt.h"
#include "client.h"
#include "control.h"
#include "mfs.h"
#include "qemu-disks.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* A reopen drains the disk's I/O first: allow for a slow one. */
#define QMP_TIMEOUT_MS 120000

typedef struct {
	char *mountpoint, *source, *target, *state;
	/* Entries per-VM jobs moved: release sends each file in one to its new home. */
	char **placed_from, **placed_to;
	char **placed_src; /* the same entries' stale copies in the source */
	/* Running jobs: a whole tree's (its state), or per-VM ones' entries in the source. */
	char *whole_running;
	char **busy_src;
	unsigned *busy_job; /* the job of each of busy_src */
	dev_t mount_dev;
} MountView;

static void mount_view_clear(MountView *v)
{
	g_free(v->mountpoint);
	g_free(v->source);
	g_free(v->target);
	g_strfreev(v->placed_from);
	g_strfreev(v->placed_to);
	g_strfreev(v->placed_src);
	g_free(v->state);
	g_free(v->whole_running);
	g_strfreev(v->busy_src);
	g_free(v->busy_job);
}

/* The jobs the status lists that still run: what adopt must keep away from. */
static int read_running_jobs(JsonObject *st, MountView *v)
{
	static const char *const running[] = {"copying", "paused", "error-paused", "mirrored",
	                                      "switching"};
	JsonArray *jobs =
	    json_object_has_member(st, "jobs") ? json_object_get_array_member(st, "jobs") : NULL;
	g_autoptr(GPtrArray) busy = g_ptr_array_new_with_free_func(g_free);
	g_autoptr(GArray) ids = g_array_new(FALSE, FALSE, sizeof(unsigned));

	/* A daemon without "jobs" runs one job at a time: the top is it. */
	if (!jobs) {
		if (g_strv_contains(running, v->state))
			v->whole_running = g_strdup(v->state);
		v->busy_src = g_new0(char *, 1);
		return 0;
	}
	for (guint i = 0; i < json_array_get_length(jobs); i++) {
		JsonObject *j = json_array_get_object_element(jobs, i);
		const char *state =
		    j ? json_object_get_string_member_with_default(j, "state", "") : "";
		JsonNode *only = j ? json_object_get_member(j, "only") : NULL;
		unsigned id =
		    j ? (unsigned)json_object_get_int_member_with_default(j, "job", 0) : 0;

		if (!j)
			return -EPROTO;
		if (!g_strv_contains((const char *const *)running, state))
			continue;
		if (!only || !JSON_NODE_HOLDS_ARRAY(only)) {
			v->whole_running = g_strdup(state);
			continue;
		}
		for (guint k = 0; k < json_array_get_length(json_node_get_array(only)); k++) {
			const char *text =
			    json_array_get_string_element(json_node_get_array(only), k);
			g_autofree char *name = NULL;

			if (!text || mfs_unescape_name(text, &name) < 0)
				return -EPROTO;
			g_ptr_array_add(busy, g_build_filename(v->source, name, NULL));
			g_array_append_val(ids, id);
		}
	}
	g_ptr_array_add(busy, NULL);
	v->busy_src = (char **)g_ptr_array_steal(busy, NULL);
	v->busy_job = (unsigned *)g_array_steal(ids, NULL);
	return 0;
}

static char *status_path(JsonObject *st, const char *member)
{
	const char *text = json_object_get_string_member_with_default(st, member, NULL);
	char *path = NULL;

	if (text && mfs_unescape_name(text, &path) < 0)
		return NULL;
	return path;
}

/* MOUNTPOINT/NAME -> DIR/NAME for each placement the status lists (none: NULL). */
static int read_placements(JsonObject *st, MountView *v)
{
	JsonArray *a = json_object_has_member(st, "placements")
	                   ? json_object_get_array_member(st, "placements")
	                   : NULL;
	g_autoptr(GPtrArray) from = g_ptr_array_new_with_free_func(g_free);
	g_autoptr(GPtrArray) to = g_ptr_array_new_with_free_func(g_free);
	g_autoptr(GPtrArray) src = g_ptr_array_new_with_free_func(g_free);

	for (guint i = 0; a && i < json_array_get_length(a); i++) {
		JsonObject *p = json_array_get_object_element(a, i);
		g_autofree char *name = p ? status_path(p, "name") : NULL;
		g_autofree char *dir = p ? status_path(p, "dir") : NULL;

		if (!name || !dir)
			return -EPROTO;
		g_ptr_array_add(from, g_build_filename(v->mountpoint, name, NULL));
		g_ptr_array_add(to, g_build_filename(dir, name, NULL));
		g_ptr_array_add(src, g_build_filename(v->source, name, NULL));
	}
	if (!from->len)
		return 0;
	g_ptr_array_add(from, NULL);
	g_ptr_array_add(to, NULL);
	g_ptr_array_add(src, NULL);
	v->placed_src = (char **)g_ptr_array_steal(src, NULL);
	v->placed_from = (char **)g_ptr_array_steal(from, NULL);
	v->placed_to = (char **)g_ptr_array_steal(to, NULL);
	return 0;
}

static int mount_view(const char *prog, const char *socket_path, MountView *v)
{
	g_autoptr(JsonParser) parser = NULL;
	JsonObject *st;
	struct stat sb;

	st = client_call(prog, socket_path, CLIENT_STATUS_REQUEST, CONTROL_CLIENT_TIMEOUT_MS,
	                 &parser);
	if (!st)
		return -EIO;
	v->mountpoint = status_path(st, "mountpoint");
	v->source = status_path(st, "source");
	v->target = status_path(st, "target");
	v->state = g_strdup(json_object_get_string_member_with_default(st, "state", "?"));
	if (!v->mountpoint || !v->source) {
		fprintf(stderr, "%s: the daemon's status names no mountpoint or source\n", prog);
		return -EPROTO;
	}
	if (read_placements(st, v) < 0) {
		fprintf(stderr, "%s: the daemon's status has malformed placements\n", prog);
		return -EPROTO;
	}
	if (read_running_jobs(st, v) < 0) {
		fprintf(stderr, "%s: the daemon's status has malformed jobs\n", prog);
		return -EPROTO;
	}
	if (stat(v->mountpoint, &sb) < 0) {
		fprintf(stderr, "%s: %s: %s\n", prog, v->mountpoint, g_strerror(errno));
		return -errno;
	}
	v->mount_dev = sb.st_dev;
	return 0;
}

/* Whether @path lies in an entry that a per-VM job moved (any path when none did). */
static bool placed_holds(const MountView *v, const char *path)
{
	if (!v->placed_from)
		return true;
	for (char **p = v->placed_from; *p; p++)
		if (mfs_path_within(path, *p))
			return true;
	return false;
}

/*
 * The files process @pid holds open through the mount (@through: in the
 * entries per-VM jobs moved, if any did) or, not @through, beside it: by a name in the source or
 * the mount but on another device, the source's own file beneath the mount.  Appended to @out.
 */
static void held_files(pid_t pid, const MountView *v, bool through, GPtrArray *out)
{
	g_autofree char *dir_path = g_strdup_printf("/proc/%d/fd", (int)pid);
	DIR *dir = opendir(dir_path);
	struct dirent *de;

	if (!dir)
		return;
	while ((de = readdir(dir))) {
		g_autofree char *link = g_build_filename(dir_path, de->d_name, NULL);
		g_autofree char *target = g_file_read_link(link, NULL);
		struct stat sb;

		if (de->d_name[0] == '.' || !target || stat(link, &sb) < 0 || !S_ISREG(sb.st_mode))
			continue;
		if (through ? sb.st_dev == v->mount_dev && placed_holds(v, target)
		            : sb.st_dev != v->mount_dev && (mfs_path_within(target, v->source) ||
		                                            mfs_path_within(target, v->mountpoint)))
			g_ptr_array_add(out, g_steal_pointer(&target));
	}
	closedir(dir);
}

static void print_files(const char *prog, const char *what, GPtrArray *files)
{
	fprintf(stderr, "%s: %s:\n", prog, what);
	for (guint i = 0; i < files->len; i++)
		fprintf(stderr, "  %s\n", (char *)files->pdata[i]);
}

/* Why @v's migration state forbids the command, or NULL. */
static char *refusal(const MountView *v, bool release)
{
	if (release && v->placed_from)
		return NULL; /* each placed entry is served from its home for good */
	if (release) {
		if (strcmp(v->state, "switched"))
			return g_strdup_printf(
			    "the migration is %s: release moves QEMU onto the target once it has "
			    "switched (mirrorfs-status --wait switched)",
			    v->state);
		if (!v->target)
			return g_strdup("the status names no target");
		return NULL;
	}
	if (v->whole_running)
		return g_strdup_printf("a migration is under way (%s): what QEMU wrote beside the "
		                       "mount since it started is not on the target.  Adopt before "
		                       "start: cancel it, adopt, start again",
		                       v->whole_running);
	if (!strcmp(v->state, "switched") && !v->placed_from && !v->busy_src[0])
		return g_strdup("the migration has switched: the source is no longer served; "
		                "use release");
	/*
	 * Idle, ended, or per-VM jobs only: the rest of the source is served
	 * still, and a QEMU of another VM may come onto the mount (one that
	 * holds a running job's entries is refused in adopt_one(); one of
	 * the moved entries' would hold stale files beside it).
	 */
	return NULL;
}

static int adopt_one(const char *prog, const MountView *v, const char *qmp_path, bool release,
                     bool dry_run)
{
	g_autoptr(GString) report = g_string_new(NULL);
	g_autoptr(GPtrArray) left = g_ptr_array_new_with_free_func(g_free);
	g_autofree char *error = NULL;
	char *whole_from[] = {release ? v->mountpoint : v->source, NULL};
	char *whole_to[] = {release ? v->target : v->mountpoint, NULL};
	char *const *from = release && v->placed_from ? v->placed_from : whole_from;
	char *const *to = release && v->placed_from ? v->placed_to : whole_to;
	double pause_ms = 0;
	Qmp *q;
	pid_t pid;
	int moved;

	q = qmp_connect(qmp_path, QMP_TIMEOUT_MS, &error);
	if (!q) {
		fprintf(stderr, "%s: %s\n", prog, error);
		return 1;
	}
	pid = qmp_peer_pid(q);
	/* Done already (a second adopt, or a QEMU started on the mount): leave it be. */
	if (pid > 0) {
		held_files(pid, v, release, left);
		if (!left->len) {
			qmp_close(q);
			printf("%s: QEMU (pid %d) holds no file %s the mount: nothing to %s\n",
			       qmp_path, (int)pid, release ? "through" : "beside",
			       release ? "release" : "adopt");
			return 0;
		}
		/* Beside the mount since a job of them started: its target lacks those writes. */
		for (guint i = 0; !release && i < left->len; i++)
			for (guint b = 0; v->busy_src[b]; b++)
				if (mfs_path_within(left->pdata[i], v->busy_src[b])) {
					qmp_close(q);
					fprintf(
					    stderr,
					    "%s: %s: QEMU (pid %d) holds %s, in what job %u moves: "
					    "what it wrote beside the mount since that job started "
					    "is not on its target.  Cancel job %u (mirrorfsctl "
					    "cancel --job %u), adopt, start it again\n",
					    prog, qmp_path, (int)pid, (char *)left->pdata[i],
					    v->busy_job[b], v->busy_job[b], v->busy_job[b]);
					return 1;
				}
		/* A moved entry's copy left in the source is stale: never onto the mount. */
		for (guint i = 0; !release && v->placed_src && i < left->len; i++)
			for (char **p = v->placed_src; *p; p++)
				if (mfs_path_within(left->pdata[i], *p)) {
					qmp_close(q);
					fprintf(
					    stderr,
					    "%s: %s: QEMU (pid %d) holds %s, a copy left behind by "
					    "a "
					    "per-VM job that moved it: the current one is served "
					    "through the mount; stop this QEMU\n",
					    prog, qmp_path, (int)pid, (char *)left->pdata[i]);
					return 1;
				}
		g_ptr_array_set_size(left, 0);
	}
	moved = qemu_disks_move(q, from, to, dry_run, report, &pause_ms, &error);
	qmp_close(q);
	fputs(report->str, stdout);
	if (moved < 0) {
		fprintf(stderr, "%s: %s: %s\n", prog, qmp_path, error);
		return 1;
	}
	if (dry_run)
		return 0;
	if (pid > 0)
		held_files(pid, v, release, left);
	if (left->len) {
		print_files(prog,
		            release ? "QEMU still holds files through the mount"
		                    : "QEMU still holds files beside the mount (their writes would "
		                      "not be mirrored)",
		            left);
		return 1;
	}
	if (!moved)
		printf("%s: QEMU (pid %d) has no disk file in %s: nothing to %s\n", qmp_path,
		       (int)pid, from == whole_from ? from[0] : "the moved entries",
		       release ? "release" : "adopt");
	else
		printf("%s: %s %d file%s of QEMU (pid %d) in one reopen of %.1f ms\n", qmp_path,
		       release ? "released" : "adopted", moved, moved == 1 ? "" : "s", (int)pid,
		       pause_ms);
	return 0;
}

int adopt_run(const char *prog, const char *socket_path, char **qmp_paths, bool release,
              bool dry_run)
{
	g_autofree char *why = NULL;
	MountView v = {0};
	int rc = 0;

	if (mount_view(prog, socket_path, &v) < 0) {
		rc = 1;
		goto out;
	}
	why = refusal(&v, release);
	if (why) {
		fprintf(stderr, "%s: %s: %s\n", prog, v.mountpoint, why);
		rc = 1;
		goto out;
	}
	for (char **p = qmp_paths; *p; p++)
		if (adopt_one(prog, &v, *p, release, dry_run))
			rc = 1;
out:
	mount_view_clear(&v);
	return rc;
}
