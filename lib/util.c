/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Small helpers of the engine (util.h, and mfs.h's utilities): size
 * parsing, escaping names for JSON, per-thread aligned buffers, /proc/self/fd
 * paths, running a creation as the caller, object identities, making a
 * node, path containment (mfs_path_within()), starting threads (lock.h),
 * and the crash tests' hook.  Nothing here knows of the tree or jobs.
 */
#define _GNU_SOURCE
#include "util.h"
#include "lock.h"

#include <errno.h>
#include <linux/capability.h>
#include <sys/syscall.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fsuid.h>
#include <sys/stat.h>

int mfs_parse_size(const char *text, uint64_t *out)
{
	const char *p = text;
	char *end;
	unsigned shift = 0;
	uint64_t value;

	if (!text || !*text)
		return -EINVAL;
	/* strtoull accepts a sign and leading space; sizes have neither. */
	if (!g_ascii_isdigit(*p))
		return -EINVAL;
	errno = 0;
	value = g_ascii_strtoull(p, &end, 10);
	if (errno)
		return -errno;
	switch (g_ascii_toupper(*end)) {
	case '\0':
		break;
	case 'K':
		shift = 10;
		break;
	case 'M':
		shift = 20;
		break;
	case 'G':
		shift = 30;
		break;
	case 'T':
		shift = 40;
		break;
	default:
		return -EINVAL;
	}
	if (*end) {
		end++;
		/* "64K", "64KiB" and "64KB" all mean 65536. */
		if (*end == 'i' || *end == 'I')
			end++;
		if (*end == 'B' || *end == 'b')
			end++;
		if (*end)
			return -EINVAL;
	}
	/*
	 * Every size travels as a signed 64-bit JSON number (the status, the
	 * control protocol): one that does not fit would come back negative.
	 */
	if (value > (MFS_MAX_SIZE >> shift))
		return -ERANGE;
	*out = value << shift;
	return 0;
}

/*
 * Names are bytes; JSON strings are UTF-8.  Every byte that is not part of
 * a valid UTF-8 sequence, each byte of a control character (C0, DEL and C1:
 * a terminal would act on them) and the backslash itself become \xHH, so
 * that the escaped text is valid UTF-8, readable, and decodes to exactly
 * the bytes it came from.
 */
char *mfs_escape_name(const char *name)
{
	GString *s = g_string_sized_new(strlen(name) + 8);

	for (const char *p = name; *p;) {
		gunichar u = g_utf8_get_char_validated(p, -1);

		/* C1 controls (U+0080 to U+009F) are terminal commands too. */
		if (u == (gunichar)-1 || u == (gunichar)-2 || u < 0x20 || u == '\\' ||
		    (u >= 0x7f && u < 0xa0)) {
			g_string_append_printf(s, "\\x%02x", (unsigned char)*p);
			p++;
		} else {
			const char *next = g_utf8_next_char(p);

			g_string_append_len(s, p, next - p);
			p = next;
		}
	}
	return g_string_free(s, FALSE);
}

int mfs_unescape_name(const char *text, char **out)
{
	GString *s = g_string_sized_new(strlen(text));

	for (const char *p = text; *p; p++) {
		int hi, lo;

		if (*p != '\\') {
			g_string_append_c(s, *p);
			continue;
		}
		if (p[1] != 'x' || (hi = g_ascii_xdigit_value(p[2])) < 0 ||
		    (lo = g_ascii_xdigit_value(p[3])) < 0 || (hi == 0 && lo == 0)) {
			g_string_free(s, TRUE);
			return -EINVAL;
		}
		g_string_append_c(s, (char)(hi << 4 | lo));
		p += 3;
	}
	*out = g_string_free(s, FALSE);
	return 0;
}

int mfs_parse_percent(const char *text, unsigned max, unsigned *out)
{
	g_autofree char *digits = NULL;
	guint64 value;
	size_t n;

	if (!text || !*text)
		return -EINVAL;
	digits = g_strdup(text);
	n = strlen(digits);
	if (digits[n - 1] == '%')
		digits[n - 1] = '\0';
	/* It takes no sign, but would take a leading space: refuse one. */
	if (!g_ascii_isdigit(digits[0]) ||
	    !g_ascii_string_to_unsigned(digits, 10, 0, max, &value, NULL))
		return -EINVAL;
	*out = (unsigned)value;
	return 0;
}

const char *mfs_path_within(const char *inner, const char *outer)
{
	size_t n = strlen(outer);

	if (strcmp(outer, "/") == 0)
		return inner + 1;
	if (strncmp(inner, outer, n) != 0)
		return NULL;
	if (inner[n] == '\0')
		return inner + n;
	return inner[n] == '/' ? inner + n + 1 : NULL;
}

typedef struct {
	size_t size;
	void *data;
} ThreadBuffer;

static void thread_buffer_free(gpointer p)
{
	ThreadBuffer *tb = p;

	free(tb->data);
	g_free(tb);
}

static GPrivate thread_buffer_key = G_PRIVATE_INIT(thread_buffer_free);

void *mfs_thread_buffer(size_t size)
{
	ThreadBuffer *tb = g_private_get(&thread_buffer_key);

	if (!tb) {
		tb = g_new0(ThreadBuffer, 1);
		g_private_set(&thread_buffer_key, tb);
	}
	if (tb->size < size) {
		void *data;
		/* Grow in whole MiB so a thread settles after a few requests. */
		size_t want = (size + (1 << 20) - 1) & ~(size_t)((1 << 20) - 1);

		if (posix_memalign(&data, MFS_DIRECT_ALIGN, want))
			return NULL;
		free(tb->data);
		tb->data = data;
		tb->size = want;
	}
	return tb->data;
}

void mfs_proc_fd_path(int fd, char buf[MFS_PROC_FD_LEN])
{
	snprintf(buf, MFS_PROC_FD_LEN, "/proc/self/fd/%d", fd);
}

static int cap_data(struct __user_cap_header_struct *h, struct __user_cap_data_struct d[2])
{
	*h = (struct __user_cap_header_struct){.version = _LINUX_CAPABILITY_VERSION_3};
	return syscall(SYS_capget, h, d) < 0 ? -errno : 0;
}

int mfs_cap_fsetid(void)
{
	struct __user_cap_header_struct h;
	struct __user_cap_data_struct d[2];
	int ret = cap_data(&h, d);

	return ret < 0 ? ret : !!(d[0].effective & (1u << CAP_FSETID));
}

int mfs_cap_fsetid_set(bool effective)
{
	struct __user_cap_header_struct h;
	struct __user_cap_data_struct d[2];
	int ret = cap_data(&h, d);

	if (ret < 0)
		return ret;
	if (effective && !(d[0].permitted & (1u << CAP_FSETID)))
		return -EPERM;
	if (effective)
		d[0].effective |= 1u << CAP_FSETID;
	else
		d[0].effective &= ~(1u << CAP_FSETID);
	return syscall(SYS_capset, &h, d) < 0 ? -errno : 0;
}

void mfs_cred_enter(const MfsCred *cred, MfsCredSaved *saved)
{
	saved->switched = false;
	if (!cred || geteuid() != 0 || (cred->uid == 0 && cred->gid == 0))
		return;
	/*
	 * Going back to fsuid 0 puts the file system capabilities back in
	 * the effective set (capabilities(7)): a CAP_FSETID the thread had
	 * dropped for its request is dropped again at leave.
	 */
	saved->fsetid_dropped = mfs_cap_fsetid() == 0;
	/* setfsuid/setfsgid act on the calling thread only, as wanted here. */
	saved->gid = setfsgid(cred->gid);
	saved->uid = setfsuid(cred->uid);
	saved->switched = true;
}

void mfs_cred_leave(const MfsCredSaved *saved)
{
	if (!saved->switched)
		return;
	setfsuid(saved->uid);
	setfsgid(saved->gid);
	if (saved->fsetid_dropped)
		mfs_cap_fsetid_set(false);
}

guint mfs_inode_key_hash(gconstpointer p)
{
	const MfsInodeKey *k = p;

	return (guint)(k->ino ^ (k->ino >> 32) ^ (k->dev * 0x9e3779b1u));
}

gboolean mfs_inode_key_equal(gconstpointer a, gconstpointer b)
{
	const MfsInodeKey *x = a, *y = b;

	return x->ino == y->ino && x->dev == y->dev;
}

int mfs_make_node_at(int dir_fd, const char *name, const MfsNodeSpec *spec)
{
	int ret;

	switch (spec->mode & S_IFMT) {
	case S_IFDIR:
		ret = mkdirat(dir_fd, name, spec->mode & 07777);
		break;
	case S_IFLNK:
		ret = symlinkat(spec->link, dir_fd, name);
		break;
	default:
		ret = mknodat(dir_fd, name, spec->mode, spec->rdev);
		break;
	}
	return ret < 0 ? -errno : 0;
}

/*
 * For crash tests: with MIRRORFS_TEST_CRASH_AT=POINT[:N] (N defaults to 1)
 * the daemon kills itself with SIGKILL at the Nth arrival at POINT, so
 * that a test crashes it at an exact place of a migration instead of at a
 * moment it hopes for.  The points are the hooks' (started, chunk-begin,
 * chunk, mirrored, stunned, journaled) and a few more named where they
 * are reached (walked, journal-renamed, swapped, resumed-journal-left,
 * abort-detached, abort-removed, deleting-source, and mirror-half: a
 * mirrored write on the source, not yet on the target).  The line logged first
 * tells the test the kill came from here.
 */
void mfs_test_crash_point(const char *point)
{
	static gint arrivals;
	static const char *cached;
	static int read_once;
	const char *spec;
	size_t len;
	long n = 1;

	/*
	 * Read once: some points lie on the guest's write path.  Atomics of
	 * our own, not g_once: its release is in uninstrumented GLib, where
	 * ThreadSanitizer does not see it.  Two first readers read the same.
	 */
	if (__atomic_load_n(&read_once, __ATOMIC_ACQUIRE)) {
		spec = __atomic_load_n(&cached, __ATOMIC_RELAXED);
	} else {
		spec = g_getenv("MIRRORFS_TEST_CRASH_AT");
		__atomic_store_n(&cached, spec, __ATOMIC_RELAXED);
		__atomic_store_n(&read_once, 1, __ATOMIC_RELEASE);
	}
	if (G_LIKELY(!spec))
		return;
	len = strcspn(spec, ":");
	if (len != strlen(point) || strncmp(spec, point, len) != 0)
		return;
	if (spec[len] == ':')
		n = strtol(spec + len + 1, NULL, 10);
	if (g_atomic_int_add(&arrivals, 1) + 1 != n)
		return;
	g_message("test: crash at %s:%ld", point, n);
	kill(getpid(), SIGKILL);
}

/*
 * Block every signal but those a fault of the calling thread raises
 * (lock.h); a thread started meanwhile inherits the mask.  *@old gets the
 * mask to restore.
 */
static void block_signals(sigset_t *old)
{
	static const int faults[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGSYS};
	sigset_t set;

	sigfillset(&set);
	for (size_t i = 0; i < G_N_ELEMENTS(faults); i++)
		sigdelset(&set, faults[i]);
	pthread_sigmask(SIG_SETMASK, &set, old);
}

#define THREAD_NAME_MAX 16 /* with the NUL: what Linux keeps of a thread's name */

typedef struct {
	char name[THREAD_NAME_MAX];
	void *(*fn)(void *);
	void *arg;
} ThreadStart;

/*
 * The thread names itself before it does anything else, so that nothing
 * it does goes by the process's name.  Uninstrumented by AddressSanitizer:
 * the session loop's workers are cancelled with this frame on their stack
 * (fuse/loop.c, CANCELLABLE).
 */
static __attribute__((no_sanitize_address)) void *thread_run(void *p)
{
	ThreadStart *start = p;
	void *(*fn)(void *) = start->fn;
	void *arg = start->arg;

	pthread_setname_np(pthread_self(), start->name);
	g_free(start);
	return fn(arg);
}

int mfs_thread_start(const char *name, void *(*fn)(void *), void *arg, pthread_t *out)
{
	ThreadStart *start;
	sigset_t old;
	int err;

	if (strlen(name) >= THREAD_NAME_MAX)
		return -ERANGE;
	start = g_new0(ThreadStart, 1);
	g_strlcpy(start->name, name, sizeof(start->name));
	start->fn = fn;
	start->arg = arg;
	block_signals(&old);
	err = pthread_create(out, NULL, thread_run, start);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (err) {
		g_free(start);
		return -err;
	}
	return 0;
}

GThread *mfs_thread_new(const char *name, GThreadFunc fn, gpointer arg)
{
	GThread *thread;
	sigset_t old;

	/* GLib names the thread itself, and drops a name too long without a word. */
	g_assert(strlen(name) < THREAD_NAME_MAX);
	block_signals(&old);
	thread = g_thread_new(name, fn, arg);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return thread;
}

GPtrArray *mfs_table_keys(GHashTable *table, MfsMutex *lock)
{
	GHashTableIter it;
	gpointer key;
	GPtrArray *out;

	mfs_mutex_lock(lock);
	out = g_ptr_array_sized_new(g_hash_table_size(table));
	g_hash_table_iter_init(&it, table);
	while (g_hash_table_iter_next(&it, &key, NULL))
		g_ptr_array_add(out, key);
	mfs_mutex_unlock(lock);
	return out;
}
