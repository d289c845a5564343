/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The control socket's I/O (control.h): the server thread and the client.
 * What a request means is control.c's.
 *
 * The server is one thread polling the listening socket and every client.
 * Every command is quick (none waits for the migration: clients follow
 * its events, or poll its status), so one thread serves all, and a client that connects
 * and says nothing, or sends half a line, only holds its own slot until
 * its idle time runs out.  Requests longer than CONTROL_MAX_REQUEST get
 * an error reply.  Replies are written with a send timeout of 1 s: a
 * client that sends requests and never reads the replies delays the
 * others by that much for each reply that does not fit its socket buffer,
 * and is then dropped.
 *
 * A client that asked for "events" follows the migration: the job wakes
 * the server (mfs_job_notify(), an eventfd) as it queues each event, and
 * the server sends the new ones to every follower, one line each.  A
 * follower is never dropped for being idle.
 */
#define _GNU_SOURCE
#include "control.h"
#include "lock.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define MAX_CLIENTS    64
#define CLIENT_IDLE_US (30 * G_USEC_PER_SEC)

/* --- server -------------------------------------------------------------- */

typedef struct {
	int fd;
	uid_t uid;
	GString *in;
	gint64 last;
	bool follows;   /* asked for "events" */
	uint64_t after; /* a follower's: the last event it has */
} Client;

struct ControlServer {
	Mfs *fs;
	char *path, *mountpoint;
	int listen_fd, wake_fd;
	int event_fd; /* the job has news for the followers */
	GThread *thread;
	Client clients[MAX_CLIENTS]; /* the server thread's only */
	unsigned n_clients;
};

static void client_close(ControlServer *srv, unsigned i)
{
	close(srv->clients[i].fd);
	g_string_free(srv->clients[i].in, TRUE);
	srv->clients[i] = srv->clients[--srv->n_clients];
}

static int send_line(int fd, const char *text)
{
	g_autofree char *line = g_strconcat(text, "\n", NULL);
	size_t len = strlen(line), off = 0;

	while (off < len) {
		ssize_t n = send(fd, line + off, len - off, MSG_NOSIGNAL);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		off += n;
	}
	return 0;
}

static void server_accept(ControlServer *srv)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);
	struct timeval tv = {1, 0};
	int fd = accept4(srv->listen_fd, NULL, NULL, SOCK_CLOEXEC);

	if (fd < 0)
		return;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
		close(fd);
		return;
	}
	/* A client that does not read its replies holds us 1 s at the most a reply. */
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (srv->n_clients == MAX_CLIENTS) {
		g_autofree char *busy = control_reply_error("too many control clients; try again");

		send_line(fd, busy);
		close(fd);
		return;
	}
	srv->clients[srv->n_clients++] = (Client){
	    .fd = fd, .uid = cred.uid, .in = g_string_new(NULL), .last = g_get_monotonic_time()};
}

/* The events a follower has not had yet; false when it must be closed. */
static bool send_events(ControlServer *srv, Client *c)
{
	MfsMigEvent *events = NULL;
	uint64_t last;
	unsigned n = mfs_migration_events(srv->fs, c->after, &events, &last);
	bool ok = true;

	for (unsigned i = 0; i < n && ok; i++) {
		g_autofree char *line = control_event_line(&events[i]);

		ok = send_line(c->fd, line) == 0;
		c->after = events[i].seq;
	}
	mfs_migration_events_free(events, n);
	return ok;
}

/* The job's news (mfs_migration_set_event_notify()): wake the server thread. */
static void event_notify(void *opaque)
{
	ControlServer *srv = opaque;
	uint64_t one = 1;

	/* Nonblocking: a counter already high enough to wake it is as good. */
	if (write(srv->event_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		g_warning("control: cannot wake the server for an event: %s", g_strerror(errno));
}

/* Serve the complete lines a client sent; false when it must be closed. */
static bool client_serve(ControlServer *srv, Client *c)
{
	char buf[4096];
	ssize_t n = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);
	char *nl;

	if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
		return false;
	if (n < 0)
		return true;
	c->last = g_get_monotonic_time();
	g_string_append_len(c->in, buf, n);
	while ((nl = memchr(c->in->str, '\n', c->in->len))) {
		g_autofree char *reply = NULL;
		size_t len = nl - c->in->str, text_len = len;

		if (text_len && c->in->str[text_len - 1] == '\r')
			text_len--;
		if (len > CONTROL_MAX_REQUEST)
			break;
		int64_t follow_from = -1;

		c->in->str[text_len] = '\0';
		if (memchr(c->in->str, '\0', text_len))
			reply = control_reply_error("malformed request: NUL byte");
		else
			reply = control_handle_request_follow(srv->fs, srv->mountpoint, c->in->str,
			                                      c->uid, &follow_from);
		g_string_erase(c->in, 0, len + 1);
		if (send_line(c->fd, reply) < 0)
			return false;
		if (follow_from >= 0) {
			c->follows = true;
			c->after = (uint64_t)follow_from;
			/* Any that came between the reply's seq and now. */
			if (!send_events(srv, c))
				return false;
		}
	}
	/* A line is too long once it passes the limit, ended or not. */
	nl = memchr(c->in->str, '\n', c->in->len);
	if ((nl ? (size_t)(nl - c->in->str) : c->in->len) > CONTROL_MAX_REQUEST) {
		g_autofree char *reply =
		    control_reply_error("request too long (at most %d bytes)", CONTROL_MAX_REQUEST);

		send_line(c->fd, reply);
		return false;
	}
	return true;
}

static gpointer server_thread(gpointer data)
{
	ControlServer *srv = data;
	struct pollfd pfd[MAX_CLIENTS + 3];
	enum { LISTEN, WAKE, EVENT, CLIENTS };

	for (;;) {
		bool news = false;
		uint64_t count;
		gint64 now;
		int n;

		pfd[LISTEN] = (struct pollfd){srv->listen_fd, POLLIN, 0};
		pfd[WAKE] = (struct pollfd){srv->wake_fd, POLLIN, 0};
		pfd[EVENT] = (struct pollfd){srv->event_fd, POLLIN, 0};
		for (unsigned i = 0; i < srv->n_clients; i++)
			pfd[i + CLIENTS] = (struct pollfd){srv->clients[i].fd, POLLIN, 0};
		n = poll(pfd, srv->n_clients + CLIENTS, 1000);
		if (n < 0 && errno != EINTR)
			break;
		if (pfd[WAKE].revents)
			break;
		if (pfd[EVENT].revents & POLLIN)
			news = read(srv->event_fd, &count, sizeof(count)) == sizeof(count);
		now = g_get_monotonic_time();
		/* Clients first, from the end, so that closing one moves no unseen one. */
		for (unsigned i = srv->n_clients; i-- > 0;) {
			Client *c = &srv->clients[i];
			bool keep = true;

			if (pfd[i + CLIENTS].revents & (POLLIN | POLLHUP | POLLERR))
				keep = client_serve(srv, c);
			else if (now - c->last > CLIENT_IDLE_US && !c->follows)
				keep = false;
			if (keep && news && c->follows)
				keep = send_events(srv, c);
			if (!keep)
				client_close(srv, i);
		}
		if (pfd[LISTEN].revents & POLLIN)
			server_accept(srv);
	}
	while (srv->n_clients)
		client_close(srv, srv->n_clients - 1);
	return NULL;
}

int control_server_start(Mfs *fs, const char *socket_path, const char *mountpoint,
                         ControlServer **out, char **error)
{
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	g_autofree char *dir = g_path_get_dirname(socket_path);
	ControlServer *srv;
	mode_t old_umask;
	int fd, ret;

	if (strlen(socket_path) >= sizeof(addr.sun_path)) {
		*error = g_strdup_printf("control socket path '%s' is too long", socket_path);
		return -ENAMETOOLONG;
	}
	strcpy(addr.sun_path, socket_path);
	if (g_mkdir_with_parents(dir, 0700) < 0) {
		ret = -errno;
		*error =
		    g_strdup_printf("control socket directory '%s': %s", dir, g_strerror(errno));
		return ret;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		ret = -errno;
		*error = g_strdup_printf("control socket: %s", g_strerror(errno));
		return ret;
	}
	/* A socket nobody answers on is a leftover of a daemon that died. */
	if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0) {
		close(fd);
		*error =
		    g_strdup_printf("control socket '%s' is in use by another daemon", socket_path);
		return -EADDRINUSE;
	}
	unlink(socket_path);
	old_umask = umask(0077);
	ret = bind(fd, (struct sockaddr *)&addr, sizeof(addr));
	umask(old_umask);
	if (ret < 0 || chmod(socket_path, 0600) < 0 || listen(fd, 16) < 0) {
		ret = -errno;
		*error = g_strdup_printf("control socket '%s': %s", socket_path, g_strerror(errno));
		close(fd);
		return ret;
	}
	srv = g_new0(ControlServer, 1);
	srv->fs = fs;
	srv->path = g_strdup(socket_path);
	srv->mountpoint = g_strdup(mountpoint);
	srv->listen_fd = fd;
	srv->wake_fd = eventfd(0, EFD_CLOEXEC);
	srv->event_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	*out = srv;
	return 0;
}

void control_server_run(ControlServer *srv)
{
	mfs_migration_set_event_notify(srv->fs, event_notify, srv);
	/* Not "mirrorfs-control": a thread's name has 15 bytes at most (lock.h). */
	srv->thread = mfs_thread_new("mirrorfs-ctl", server_thread, srv);
}

void control_server_stop(ControlServer *srv)
{
	uint64_t one = 1;

	if (!srv)
		return;
	if (srv->thread) {
		mfs_migration_set_event_notify(srv->fs, NULL, NULL);
		if (write(srv->wake_fd, &one, sizeof(one)) < 0)
			g_warning("control: cannot stop the server thread: %s", g_strerror(errno));
		g_thread_join(srv->thread);
	}
	close(srv->listen_fd);
	close(srv->wake_fd);
	close(srv->event_fd);
	unlink(srv->path);
	g_free(srv->path);
	g_free(srv->mountpoint);
	g_free(srv);
}

/* --- client -------------------------------------------------------------- */

/* Connect to @socket_path; on failure *@error says why. */
static int client_connect(const char *socket_path, int timeout_ms, int *out, char **error)
{
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	int fd;

	if (strlen(socket_path) >= sizeof(addr.sun_path)) {
		*error = g_strdup_printf("control socket path '%s' is too long", socket_path);
		return -ENAMETOOLONG;
	}
	strcpy(addr.sun_path, socket_path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
		int ret = -errno;

		*error = g_strdup_printf("cannot reach the control socket '%s': %s%s", socket_path,
		                         g_strerror(errno),
		                         errno == ENOENT ? " (is a mirrorfs mounted there?)" : "");
		if (fd >= 0)
			close(fd);
		return ret;
	}
	{
		/* A daemon that accepts and never answers must not hang its clients. */
		struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};

		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	}
	*out = fd;
	return 0;
}

/*
 * The next line from @fd, buffered in @in, within @timeout_ms (-1: no
 * limit): 1 with *@line (no newline), 0 on timeout, or -errno
 * (-ECONNRESET when the daemon closed the connection).
 */
static int read_line(int fd, GString *in, int timeout_ms, char **line)
{
	gint64 deadline = g_get_monotonic_time() + (gint64)timeout_ms * 1000;
	char buf[4096];
	char *nl;

	while (!(nl = memchr(in->str, '\n', in->len))) {
		struct pollfd pfd = {fd, POLLIN, 0};
		int wait_ms = -1;
		ssize_t n;

		if (timeout_ms >= 0) {
			wait_ms = (int)MAX(0, (deadline - g_get_monotonic_time()) / 1000);
			if (wait_ms == 0)
				return 0;
		}
		n = poll(&pfd, 1, wait_ms);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return 0;
		n = recv(fd, buf, sizeof(buf), 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -ECONNRESET;
		g_string_append_len(in, buf, n);
	}
	*line = g_strndup(in->str, nl - in->str);
	g_string_erase(in, 0, nl - in->str + 1);
	return 1;
}

int control_follow_open(const char *socket_path, const char *request, int timeout_ms,
                        ControlFollow *out, char **reply, char **error)
{
	int ret = client_connect(socket_path, timeout_ms, &out->fd, error);

	if (ret < 0)
		return ret;
	out->in = g_string_new(NULL);
	/* A daemon that refuses us says why before it closes: read that anyway. */
	ret = send_line(out->fd, request);
	if (ret == -EPIPE || ret == -ECONNRESET)
		ret = 0;
	if (ret == 0)
		ret = read_line(out->fd, out->in, timeout_ms, reply);
	if (ret == 0) {
		*error = g_strdup_printf("control socket '%s': no answer within %.1f s (is the "
		                         "daemon stopped?)",
		                         socket_path, timeout_ms / 1000.0);
		ret = -ETIMEDOUT;
	} else if (ret < 0) {
		*error = g_strdup_printf("control socket '%s': %s", socket_path, g_strerror(-ret));
	}
	if (ret < 0) {
		control_follow_close(out);
		return ret;
	}
	return 0;
}

int control_follow_next(ControlFollow *f, int timeout_ms, char **line)
{
	return read_line(f->fd, f->in, timeout_ms, line);
}

void control_follow_close(ControlFollow *f)
{
	if (f->fd >= 0)
		close(f->fd);
	f->fd = -1;
	if (f->in)
		g_string_free(f->in, TRUE);
	f->in = NULL;
}

int control_request(const char *socket_path, const char *request, int timeout_ms, char **reply,
                    char **error)
{
	ControlFollow f;
	int ret = control_follow_open(socket_path, request, timeout_ms, &f, reply, error);

	if (ret == 0)
		control_follow_close(&f);
	return ret;
}
