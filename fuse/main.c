/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * mirrorfs: options, mount-over and the session loop.
 *
 * Everything that can be refused is checked before the mount, so a bad
 * command line never leaves a half-mounted directory behind: once we
 * daemonize there is nobody left to tell.
 */
#define _GNU_SOURCE
#include "mirrorfs.h"
#include "sd-notify.h"
#include "transport.h"
#include "control.h"
#include "migration.h"
#include "mig-options.h"
#include "lock.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include <glib.h>

/* Each thread has a request buffer of 1 MiB, touched when it serves a large write. */
#define MAX_THREADS 1024

typedef struct {
	char *source;
	char *timeout_text;
	double timeout;
	char *target;
	char *only;
	char *speed;
	char *chunk;
	char *guest_share;
	char *switch_mode;
	char *checkpoint;
	char *on_target_error;
	int delete_source;
	int overwrite;
	int noclone;
	int verify;
	char *control;
	int noxattr;
	char *io_uring;
} Options;

/* clang-format off */
#define MIRRORFS_OPT(t, p, v) {t, offsetof(Options, p), v}
static const struct fuse_opt option_spec[] = {
	MIRRORFS_OPT("timeout=%s", timeout_text, 0),
	MIRRORFS_OPT("target=%s", target, 0),
	MIRRORFS_OPT("only=%s", only, 0),
	MIRRORFS_OPT("speed=%s", speed, 0),
	MIRRORFS_OPT("chunk=%s", chunk, 0),
	MIRRORFS_OPT("guest_share=%s", guest_share, 0),
	MIRRORFS_OPT("switch=%s", switch_mode, 0),
	MIRRORFS_OPT("checkpoint=%s", checkpoint, 0),
	MIRRORFS_OPT("on_target_error=%s", on_target_error, 0),
	MIRRORFS_OPT("delete_source", delete_source, 1),
	MIRRORFS_OPT("overwrite", overwrite, 1),
	MIRRORFS_OPT("noclone", noclone, 1),
	MIRRORFS_OPT("verify", verify, 1),
	MIRRORFS_OPT("control=%s", control, 0),
	MIRRORFS_OPT("noxattr", noxattr, 1),
	MIRRORFS_OPT("io_uring=%s", io_uring, 0),
	FUSE_OPT_END,
};
/* clang-format on */

static void usage(const char *prog)
{
	printf("usage: %s [options] SOURCE MOUNTPOINT\n\n"
	       "Mount a passthrough view of SOURCE (a directory of VM images) on\n"
	       "MOUNTPOINT.  SOURCE and MOUNTPOINT may be the same directory.\n\n"
	       "mirrorfs options:\n"
	       "    -o timeout=SECONDS     how long the kernel caches names and\n"
	       "                           attributes (default: 1.0)\n"
	       "    -o target=DIR          start migrating SOURCE to DIR at once\n"
	       "    -o only=NAME[:NAME...] move only these entries of SOURCE's top\n"
	       "                           directory (a VM's image, its directory)\n"
	       "    -o speed=RATE          copier limit in bytes/s, with K/M/G\n"
	       "                           suffixes; 0 = unlimited (default)\n"
	       "    -o chunk=SIZE          copier chunk, a power of two from 4K\n"
	       "                           to 64M (default: 1M)\n"
	       "    -o guest_share=PCT     share of the time the copier leaves to\n"
	       "                           a busy guest, 0 to 90 (default: 50;\n"
	       "                           0 = copy flat out)\n"
	       "    -o switch=auto|manual  switch to the target as soon as all\n"
	       "                           is mirrored (auto, default), or stay\n"
	       "                           mirrored until told (manual)\n"
	       "    -o checkpoint=SIZE     data copied between two checkpoints, the\n"
	       "                           most a restart copies again (default: 256M)\n"
	       "    -o on_target_error=abort|stop  when the target fails: end the\n"
	       "                           migration (abort, default), or pause it\n"
	       "                           until mirrorfsctl resume (stop)\n"
	       "    -o delete_source       delete the source files after the switch\n"
	       "    -o overwrite           replace files of the same names in DIR\n"
	       "    -o noclone             copy every byte, even where DIR's file\n"
	       "                           system could share SOURCE's blocks\n"
	       "    -o verify              compare both sides before the switch;\n"
	       "                           a difference refuses it\n"
	       "    -o control=PATH        the control socket (default: derived from\n"
	       "                           MOUNTPOINT under /run/mirrorfs)\n"
	       "    -o noxattr             no extended attributes through the mount:\n"
	       "                           faster writes (see mirrorfs(1))\n"
	       "    -o io_uring=auto|on|off  take requests through FUSE over io_uring\n"
	       "                           where the kernel offers it (auto, default),\n"
	       "                           insist on it (on), or read /dev/fuse (off)\n\n",
	       prog);
}

/* The first non-option is SOURCE; the second is left for fuse_parse_cmdline. */
static int option_proc(void *data, const char *arg, int key, struct fuse_args *outargs)
{
	Options *opts = data;

	(void)outargs;
	if (key == FUSE_OPT_KEY_NONOPT && !opts->source) {
		opts->source = strdup(arg);
		return 0;
	}
	return 1;
}

/* Is @path (a canonical path) the mount point of a mirrorfs mount? */
static bool is_mirrorfs_mount(const char *path)
{
	return mfs_mirrorfs_mount_dev("/proc/self/mountinfo", path, NULL) == 0;
}

static int check_directory(const char *what, const char *path, char **canonical)
{
	struct stat st;

	if (stat(path, &st) < 0) {
		fprintf(stderr, "mirrorfs: %s '%s': %s\n", what, path, strerror(errno));
		return -1;
	}
	if (!S_ISDIR(st.st_mode)) {
		fprintf(stderr, "mirrorfs: %s '%s': %s\n", what, path, strerror(ENOTDIR));
		return -1;
	}
	*canonical = realpath(path, NULL);
	if (!*canonical) {
		fprintf(stderr, "mirrorfs: %s '%s': %s\n", what, path, strerror(errno));
		return -1;
	}
	if (is_mirrorfs_mount(*canonical)) {
		fprintf(stderr, "mirrorfs: %s '%s' is already a mirrorfs mount\n", what, path);
		return -1;
	}
	return 0;
}

/*
 * Turn the migration options into MfsMigOptions, each by its rule in
 * lib/mig-options.c; -1 after saying why.
 */
static int migration_options(const Options *opts, MfsMigOptions *mo)
{
	const struct {
		const char *name, *text;
	} valued[] = {
	    {"guest_share", opts->guest_share},
	    {"speed", opts->speed},
	    {"chunk", opts->chunk},
	    {"switch", opts->switch_mode},
	    {"checkpoint", opts->checkpoint},
	    {"on_target_error", opts->on_target_error},
	};

	mfs_mig_options_init(mo);
	mo->target = opts->target;
	mo->delete_source = opts->delete_source;
	mo->overwrite = opts->overwrite;
	mo->no_clone = opts->noclone;
	mo->verify = opts->verify;
	/* Names separated by ':' (a name with one in it goes by mirrorfsctl --only). */
	if (opts->only) {
		g_auto(GStrv) names = g_strsplit(opts->only, ":", -1);
		GPtrArray *only = g_ptr_array_new_with_free_func(g_free);

		for (char **n = names; *n; n++) {
			g_autofree char *why = NULL;
			char *name;

			if (mfs_mig_only_name(*n, &name, &why) < 0) {
				fprintf(stderr, "mirrorfs: only=%s: %s\n", opts->only, why);
				g_ptr_array_free(only, TRUE);
				return -1;
			}
			g_ptr_array_add(only, name);
		}
		g_ptr_array_add(only, NULL);
		mo->only = (char **)g_ptr_array_free(only, FALSE);
	}
	for (size_t i = 0; i < G_N_ELEMENTS(valued); i++) {
		g_autofree char *why = NULL;

		if (valued[i].text &&
		    mfs_mig_option_parse(mo, valued[i].name, valued[i].text, &why) < 0) {
			fprintf(stderr, "mirrorfs: %s=%s: %s\n", valued[i].name, valued[i].text,
			        why);
			return -1;
		}
	}
	if (!opts->target &&
	    (opts->speed || opts->chunk || opts->guest_share || opts->switch_mode ||
	     opts->checkpoint || opts->on_target_error || opts->delete_source || opts->overwrite ||
	     opts->noclone || opts->verify || opts->only)) {
		fprintf(stderr, "mirrorfs: only, speed, chunk, guest_share, switch, checkpoint, "
		                "on_target_error, delete_source, overwrite, noclone and verify "
		                "need -o "
		                "target=DIR\n");
		return -1;
	}
	return 0;
}

/*
 * Logging: to syslog in the background, to stderr in the foreground, each
 * line naming the mount.  Our own writer, because GLib's default one
 * formats the time with localtime(3), which is not thread-safe.
 */
static const char *log_mountpoint;
static bool log_foreground;

static GLogWriterOutput log_writer(GLogLevelFlags level, const GLogField *fields, gsize n_fields,
                                   gpointer data)
{
	const char *message = "";
	int prio = LOG_INFO;

	for (gsize i = 0; i < n_fields; i++)
		if (strcmp(fields[i].key, "MESSAGE") == 0)
			message = fields[i].value;
	if (level & (G_LOG_LEVEL_ERROR | G_LOG_LEVEL_CRITICAL))
		prio = LOG_ERR;
	else if (level & G_LOG_LEVEL_WARNING)
		prio = LOG_WARNING;
	else if (level & G_LOG_LEVEL_DEBUG)
		return G_LOG_WRITER_HANDLED;
	if (log_foreground) {
		g_autoptr(GDateTime) now = g_date_time_new_now_local();
		g_autofree char *stamp = g_date_time_format(now, "%H:%M:%S.%f");

		fprintf(stderr, "mirrorfs[%s] %s: %s\n", stamp, log_mountpoint, message);
	} else {
		syslog(prio, "%s: %s", log_mountpoint, message);
	}
	return G_LOG_WRITER_HANDLED;
}

/*
 * Is @target where a switched migration of @source already took it (the
 * entries @only, for a per-VM job)?
 */
static bool already_migrated_to(Mfs *fs, const char *source, const char *target, char *const *only)
{
	g_autofree char *real = realpath(target, NULL);
	g_autofree char *served = mfs_served_dir(fs);

	if (real && only)
		return mfs_placed_in(fs, only, real);
	return real && strcmp(source, served) != 0 && strcmp(real, served) == 0;
}

/*
 * Asked to stop (SIGTERM, SIGINT, SIGHUP) while files are open, we keep
 * serving: ending the session would pull the disks from under running
 * VMs, whose every I/O would then fail with ENOTCONN.  The operator who
 * wants the mount gone anyway detaches it lazily (fusermount3 -u -z); the
 * kernel then ends the session when the last file is closed, and we exit.
 * The handler decides on a lock-free count and leaves the logging to a
 * thread (syslog is not async-signal-safe).  It runs on the main thread
 * only: every other thread starts with these signals blocked (lock.h).
 */
static struct fuse_session *stop_session;
static Mfs *stop_fs;
static gint stop_signal; /* atomic: the handler sets it, the reporter reads it */
static sem_t stop_sem;
static gint stop_quit;

static void stop_handler(int sig)
{
	int saved_errno = errno; /* the interrupted code's */

	if (mfs_open_files(stop_fs) > 0) {
		g_atomic_int_set(&stop_signal, sig);
		sem_post(&stop_sem);
	} else {
		/* What libfuse's own handler does: the interrupted thread sees it. */
		fuse_session_exit(stop_session);
	}
	errno = saved_errno;
}

static void *stop_reporter(void *mountpoint)
{
	for (;;) {
		unsigned n;

		if (sem_wait(&stop_sem) < 0)
			continue;
		if (g_atomic_int_get(&stop_quit))
			return NULL;
		n = mfs_open_files(stop_fs);
		g_warning("%s: not stopping: %u file%s open; unmount with fusermount3 -u -z %s "
		          "to detach lazily (mirrorfs exits when the last one is closed)",
		          strsignal(g_atomic_int_get(&stop_signal)), n, n == 1 ? " is" : "s are",
		          (const char *)mountpoint);
	}
}

/* Replaces libfuse's handlers for the three; it keeps SIGPIPE ignored. */
static int set_stop_handlers(struct fuse_session *se, Mfs *fs)
{
	static const int sigs[] = {SIGTERM, SIGINT, SIGHUP};
	struct sigaction sa = {.sa_handler = stop_handler};

	stop_session = se;
	stop_fs = fs;
	sigemptyset(&sa.sa_mask);
	for (size_t i = 0; i < G_N_ELEMENTS(sigs); i++)
		if (sigaction(sigs[i], &sa, NULL) < 0)
			return -errno;
	return 0;
}

/*
 * Every inode the kernel holds costs an O_PATH descriptor, and every file
 * under migration two more (four while it is copied): the soft limit a
 * service gets by default (1024 under systemd) would cap the tree at a few
 * hundred files, and fail a migration with EMFILE half-way.  Take the
 * hard limit; nothing here uses select(2).
 */
static void raise_fd_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur >= rl.rlim_max)
		return;
	rl.rlim_cur = rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
		fprintf(stderr, "mirrorfs: cannot raise the open file limit to %llu: %s\n",
		        (unsigned long long)rl.rlim_max, strerror(errno));
}

/* Name the file system after its source: df and mount then say what is under it. */
static int add_fsname(struct fuse_args *args, const char *source)
{
	g_autofree char *opt = NULL;
	char *escaped = NULL;
	int ret;

	if (fuse_opt_add_opt_escaped(&escaped, source) < 0)
		return -1;
	opt = g_strdup_printf("-osubtype=mirrorfs,fsname=%s", escaped);
	free(escaped);
	ret = fuse_opt_add_arg(args, opt);
	return ret;
}

int main(int argc, char *argv[])
{
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
	struct fuse_cmdline_opts cmd = {0};
	struct fuse_loop_config *loop = NULL;
	Options opts = {.timeout = 1.0};
	struct fuse_session *se = NULL;
	g_autofree char *source = NULL, *mountpoint = NULL;
	MfsMigOptions mig_opts = {0};
	ControlServer *control = NULL;
	g_autofree char *control_path = NULL, *served = NULL;
	Daemon daemon = {0};
	pthread_t stop_thread;
	bool stop_thread_started = false;
	TransportUringMode uring_mode = TRANSPORT_URING_AUTO;
	Transport transport = {.stop_fd = -1};
	bool transport_ready = false;
	unsigned int threads;
	int ret = 1;

	/* The kernel has applied the caller's umask to every mode we get. */
	umask(0);
	if (fuse_opt_parse(&args, &opts, option_spec, option_proc) < 0)
		goto out_args;
	if (fuse_parse_cmdline(&args, &cmd) < 0)
		goto out_args;
	if (cmd.show_help) {
		usage(argv[0]);
		printf("FUSE options:\n");
		fuse_cmdline_help();
		fuse_lowlevel_help();
		ret = 0;
		goto out_args;
	}
	if (cmd.show_version) {
		printf("mirrorfs %s\n", MFS_VERSION);
		fuse_lowlevel_version();
		ret = 0;
		goto out_args;
	}
	if (!opts.source || !cmd.mountpoint) {
		fprintf(stderr, "mirrorfs: %s; usage: %s [options] SOURCE MOUNTPOINT\n",
		        opts.source ? "missing MOUNTPOINT" : "missing SOURCE and MOUNTPOINT",
		        argv[0]);
		goto out_args;
	}
	if (opts.timeout_text) {
		char *end;

		opts.timeout = g_ascii_strtod(opts.timeout_text, &end);
		if (end == opts.timeout_text || *end ||
		    !(opts.timeout >= 0 && opts.timeout <= 86400)) {
			fprintf(
			    stderr,
			    "mirrorfs: timeout=%s: must be a number of seconds from 0 to 86400\n",
			    opts.timeout_text);
			goto out_args;
		}
	}
	if (!cmd.singlethread && (cmd.max_threads < 1 || cmd.max_threads > MAX_THREADS)) {
		fprintf(stderr, "mirrorfs: max_threads=%u: must be from 1 to %u\n", cmd.max_threads,
		        MAX_THREADS);
		goto out_args;
	}
	threads = cmd.singlethread ? 1 : cmd.max_threads;
	if (opts.io_uring && transport_uring_mode_parse(opts.io_uring, &uring_mode) < 0) {
		fprintf(stderr, "mirrorfs: io_uring=%s: must be auto, on or off\n", opts.io_uring);
		goto out_args;
	}
	if (uring_mode == TRANSPORT_URING_ON) {
		g_autofree char *why = NULL;

		if (cmd.clone_fd) {
			fprintf(stderr, "mirrorfs: io_uring=on: not with clone_fd, which reads "
			                "/dev/fuse through libfuse's own loop\n");
			goto out_args;
		}
		if (transport_uring_available(&why) < 0) {
			fprintf(stderr, "mirrorfs: io_uring=on: %s\n", why);
			goto out_args;
		}
	}
	if (check_directory("source", opts.source, &source) < 0 ||
	    check_directory("mount point", cmd.mountpoint, &mountpoint) < 0)
		goto out_args;
	/* Below it, not on it: mounting over the source itself is the usual way. */
	if (mfs_path_within(mountpoint, source) && strcmp(mountpoint, source) != 0) {
		fprintf(stderr,
		        "mirrorfs: mount point '%s' lies inside source '%s'; the mount would "
		        "loop through itself\n",
		        cmd.mountpoint, opts.source);
		goto out_args;
	}

	raise_fd_limit();
	{
		g_autofree char *error = NULL;

		ret = mfs_new_explained(source, &daemon.fs, &error);
		if (ret < 0) {
			if (error)
				fprintf(stderr, "mirrorfs: %s\n", error);
			else
				fprintf(stderr, "mirrorfs: source '%s': %s\n", opts.source,
				        strerror(-ret));
			ret = 1;
			goto out_args;
		}
		ret = 1;
		/* One daemon per tree: a second one would miss the first's writes. */
		if (mfs_claim(daemon.fs, &error) < 0) {
			fprintf(stderr, "mirrorfs: %s\n", error);
			goto out_fs;
		}
	}
	daemon.timeout = opts.timeout;
	daemon.noxattr = opts.noxattr;
	served = mfs_served_dir(daemon.fs);
	if (strcmp(served, source) != 0)
		fprintf(stderr,
		        "mirrorfs: '%s' was migrated to '%s' (its journal says so); serving '%s'\n",
		        opts.source, served, served);
	if (migration_options(&opts, &mig_opts) < 0)
		goto out_fs;
	control_path = opts.control ? g_strdup(opts.control) : control_socket_path(mountpoint);
	{
		g_autofree char *error = NULL;

		if (control_server_start(daemon.fs, control_path, mountpoint, &control, &error) <
		    0) {
			fprintf(stderr, "mirrorfs: %s\n", error);
			goto out_fs;
		}
	}
	if (opts.target) {
		/* Under the mount point it would be hidden by the mount, or loop through it. */
		g_autofree char *real_target = realpath(opts.target, NULL);

		if (real_target && mfs_path_within(real_target, mountpoint) &&
		    strcmp(mountpoint, source) != 0) {
			fprintf(stderr,
			        "mirrorfs: cannot migrate: target '%s' lies inside the mount "
			        "point '%s'\n",
			        opts.target, cmd.mountpoint);
			goto out_fs;
		}
	}
	{
		g_autofree char *error = NULL;
		int started = mfs_migration_start_recorded(daemon.fs, opts.target, &error);

		if (started == -EBUSY) {
			fprintf(stderr, "mirrorfs: cannot migrate: %s\n", error);
			goto out_fs;
		}
		/* The VMs come first: a job that cannot resume does not stop the mount. */
		if (error) {
			g_auto(GStrv) lines = g_strsplit(error, "\n", -1);

			for (char **l = lines; *l; l++)
				fprintf(
				    stderr,
				    "mirrorfs: a migration recorded as under way cannot resume: "
				    "%s; "
				    "'%s' is served (mirrorfsctl MOUNTPOINT cancel --job TARGET "
				    "forgets it)\n",
				    *l, served);
		}
		if (started == 1)
			fprintf(stderr, "mirrorfs: resuming the migration recorded as under way\n");
		else if (started > 1)
			fprintf(stderr,
			        "mirrorfs: resuming the %d migrations recorded as under way\n",
			        started);
	}
	if (opts.target && already_migrated_to(daemon.fs, source, opts.target, mig_opts.only)) {
		/* The same command line again after a switch: nothing left to do. */
		fprintf(stderr, "mirrorfs: already migrated to '%s'; not migrating again\n",
		        opts.target);
	} else if (opts.target) {
		g_autofree char *error = NULL;

		/*
		 * Checked and prepared now, to report here; copied after the fork.
		 * Nothing is served yet: the copy may resume from its checkpoints.
		 */
		mig_opts.defer_thread = true;
		mig_opts.resume = true;
		if (mfs_migration_start(daemon.fs, &mig_opts, &error) < 0) {
			fprintf(stderr, "mirrorfs: cannot migrate: %s\n", error);
			goto out_fs;
		}
	}
	if (add_fsname(&args, source) < 0)
		goto out_fs;

	/* libfuse reports unknown options itself, on one line. */
	se = fuse_session_new(&args, &mirrorfs_ops, sizeof(mirrorfs_ops), &daemon);
	if (!se)
		goto out_fs;
	if (fuse_set_signal_handlers(se) != 0)
		goto out_session;
	if (set_stop_handlers(se, daemon.fs) < 0 || sem_init(&stop_sem, 0, 0) < 0) {
		fprintf(stderr, "mirrorfs: cannot set the signal handlers: %s\n", strerror(errno));
		goto out_signals;
	}
	if (fuse_session_mount(se, mountpoint) != 0) {
		fprintf(stderr, "mirrorfs: cannot mount on '%s'\n", cmd.mountpoint);
		goto out_signals;
	}
	{
		dev_t dev;

		/* From the mount table: a stat would send ourselves a request. */
		if (mfs_mirrorfs_mount_dev("/proc/self/mountinfo", mountpoint, &dev) == 0)
			mfs_set_mount_dev(daemon.fs, dev);
		else
			fprintf(stderr,
			        "mirrorfs: warning: '%s' is not in /proc/self/mountinfo; a target "
			        "that leads into the mount cannot be recognised\n",
			        mountpoint);
	}
	{
		int err = transport_init(&transport, se, daemon.fs,
		                         cmd.clone_fd ? TRANSPORT_URING_OFF : uring_mode, threads);

		if (err < 0) {
			fprintf(stderr, "mirrorfs: cannot set up the transport: %s\n",
			        strerror(-err));
			goto out_unmount;
		}
		daemon.transport = &transport;
		transport_ready = true;
	}
	log_mountpoint = mountpoint;
	log_foreground = cmd.foreground;
	if (!cmd.foreground)
		openlog("mirrorfs", LOG_PID, LOG_DAEMON);
	g_log_set_writer_func(log_writer, NULL, NULL);
	fuse_daemonize(cmd.foreground);
	{
		g_autofree char *error = NULL;

		/* The locks were taken by the parent, which has exited: ours now. */
		mfs_claim(daemon.fs, &error);
		mfs_migration_renew_claim(daemon.fs);
	}
	/* Threads do not survive the fork: they start here. */
	{
		int err =
		    mfs_thread_start("mirrorfs-stop", stop_reporter, mountpoint, &stop_thread);

		stop_thread_started = err == 0;
		if (err < 0)
			g_warning("cannot start the thread that reports refused stops: %s",
			          g_strerror(-err));
	}
	/* Before the control server: a start it takes launches its own copier. */
	mfs_migration_launch(daemon.fs);
	control_server_run(control);
	g_message("serving %s on %s; control socket %s", served, mountpoint, control_path);
	{
		/* Under systemd (Type=notify): units ordered after ours may start now. */
		g_autofree char *state =
		    g_strdup_printf("READY=1\nSTATUS=serving %s on %s\nMAINPID=%d", served,
		                    mountpoint, (int)getpid());
		int err = sd_notify_send(state);

		if (err < 0)
			g_warning(
			    "cannot tell systemd that the mount serves (NOTIFY_SOCKET=%s): %s",
			    getenv("NOTIFY_SOCKET"), g_strerror(-err));
	}

	if (!cmd.clone_fd) {
		ret = mirrorfs_session_loop(&transport);
		if (g_atomic_int_get(&transport.failed))
			ret = -EPROTO;
	} else {
		/* A cloned descriptor per thread is libfuse's own: so is its loop. */
		loop = fuse_loop_cfg_create();
		fuse_loop_cfg_set_clone_fd(loop, cmd.clone_fd);
		fuse_loop_cfg_set_max_threads(loop, threads);
		if (cmd.max_idle_threads != UINT_MAX) /* UINT_MAX: not given */
			fuse_loop_cfg_set_idle_threads(loop, cmd.max_idle_threads);
		ret = fuse_session_loop_mt(se, loop);
		fuse_loop_cfg_destroy(loop);
	}
	ret = ret == 0 ? 0 : 1;
	sd_notify_send("STOPPING=1");
	if (stop_thread_started) {
		g_atomic_int_set(&stop_quit, 1);
		sem_post(&stop_sem);
		pthread_join(stop_thread, NULL);
	}
out_unmount:
	fuse_session_unmount(se);
out_signals:
	fuse_remove_signal_handlers(se);
out_session:
	fuse_session_destroy(se);
	if (transport_ready)
		transport_destroy(&transport);
out_fs:
	control_server_stop(control);
	/* A migration still running stops, its copy kept for the next start. */
	mfs_migration_shutdown(daemon.fs);
	mfs_free(daemon.fs);
out_args:
	free(cmd.mountpoint);
	free(opts.source);
	free(opts.target);
	free(opts.only);
	g_strfreev(mig_opts.only);
	free(opts.speed);
	free(opts.chunk);
	free(opts.guest_share);
	free(opts.checkpoint);
	free(opts.on_target_error);
	free(opts.switch_mode);
	free(opts.control);
	free(opts.timeout_text);
	free(opts.io_uring);
	fuse_opt_free_args(&args);
	return ret;
}
