/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A QEMU Machine Protocol client for mirrorfsctl's adopt and release:
 * QEMU sends one JSON object a line (the greeting, replies, events); a
 * command's reply is the next line that is not an event.
 */
#define _GNU_SOURCE
#include "qmp.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define QMP_GREETING_TIMEOUT_MS 5000

struct Qmp {
	int fd;
	int timeout_ms;
	pid_t pid;
	int major, minor;
	char *path;
	GString *in;
};

/* The next line QEMU sends, parsed: 0 and a new object node in *@msg, or -errno. */
static int qmp_read_message(Qmp *q, JsonNode **msg, char **error)
{
	int64_t deadline = g_get_monotonic_time() / 1000 + q->timeout_ms;
	g_autoptr(JsonParser) parser = json_parser_new();
	g_autofree char *line = NULL;
	char *nl;

	while (!(nl = memchr(q->in->str, '\n', q->in->len))) {
		struct pollfd pfd = {.fd = q->fd, .events = POLLIN};
		int64_t left = deadline - g_get_monotonic_time() / 1000;
		char buf[65536];
		ssize_t n;

		if (left <= 0) {
			*error = g_strdup_printf("%s: QEMU sent no reply in %d s", q->path,
			                         q->timeout_ms / 1000);
			return -ETIMEDOUT;
		}
		if (poll(&pfd, 1, (int)left) < 0) {
			if (errno == EINTR)
				continue;
			*error = g_strdup_printf("%s: poll: %s", q->path, g_strerror(errno));
			return -errno;
		}
		if (!pfd.revents)
			continue;
		n = read(q->fd, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			*error = g_strdup_printf("%s: QEMU closed the connection", q->path);
			return n < 0 ? -errno : -ECONNRESET;
		}
		g_string_append_len(q->in, buf, n);
	}
	line = g_strndup(q->in->str, nl - q->in->str);
	g_string_erase(q->in, 0, nl - q->in->str + 1);
	if (!json_parser_load_from_data(parser, line, -1, NULL) || !json_parser_get_root(parser) ||
	    !JSON_NODE_HOLDS_OBJECT(json_parser_get_root(parser))) {
		*error = g_strdup_printf("%s: QEMU sent a line that is not a JSON object", q->path);
		return -EPROTO;
	}
	*msg = json_node_copy(json_parser_get_root(parser));
	return 0;
}

static int qmp_write_all(Qmp *q, const char *data, size_t len, char **error)
{
	while (len) {
		ssize_t n = send(q->fd, data, len, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			*error = g_strdup_printf("%s: %s", q->path, g_strerror(errno));
			return -errno;
		}
		data += n;
		len -= n;
	}
	return 0;
}

int qmp_execute(Qmp *q, const char *command, JsonNode *args, JsonNode **ret, char **error)
{
	g_autoptr(JsonBuilder) b = json_builder_new();
	g_autoptr(JsonGenerator) gen = json_generator_new();
	g_autoptr(JsonNode) req = NULL;
	g_autofree char *text = NULL;
	int r;

	json_builder_begin_object(b);
	json_builder_set_member_name(b, "execute");
	json_builder_add_string_value(b, command);
	if (args) {
		json_builder_set_member_name(b, "arguments");
		json_builder_add_value(b, json_node_copy(args));
	}
	json_builder_end_object(b);
	req = json_builder_get_root(b);
	json_generator_set_root(gen, req);
	text = json_generator_to_data(gen, NULL);
	r = qmp_write_all(q, text, strlen(text), error);
	if (r == 0)
		r = qmp_write_all(q, "\n", 1, error);
	while (r == 0) {
		g_autoptr(JsonNode) msg = NULL;
		JsonObject *o;

		r = qmp_read_message(q, &msg, error);
		if (r < 0)
			break;
		o = json_node_get_object(msg);
		if (json_object_has_member(o, "event"))
			continue;
		if (json_object_has_member(o, "error")) {
			JsonObject *e = json_object_get_object_member(o, "error");

			*error = g_strdup(e ? json_object_get_string_member_with_default(
			                          e, "desc", "QEMU refused it")
			                    : "QEMU refused it");
			return -EIO;
		}
		if (!json_object_has_member(o, "return"))
			continue; /* neither an event nor a reply: not ours */
		if (ret)
			*ret = json_node_copy(json_object_get_member(o, "return"));
		return 0;
	}
	return r;
}

static int qmp_greeting(Qmp *q, char **error)
{
	g_autoptr(JsonNode) msg = NULL;
	JsonObject *o, *v;
	int r;

	r = qmp_read_message(q, &msg, error);
	if (r < 0 && r != -ETIMEDOUT && r != -ECONNRESET && r != -EPROTO)
		return r;
	o = r < 0 ? NULL : json_node_get_object(msg);
	o = o && json_object_has_member(o, "QMP") ? json_object_get_object_member(o, "QMP") : NULL;
	v = o && json_object_has_member(o, "version") ? json_object_get_object_member(o, "version")
	                                              : NULL;
	v = v && json_object_has_member(v, "qemu") ? json_object_get_object_member(v, "qemu")
	                                           : NULL;
	if (!v) {
		g_free(*error);
		*error = g_strdup_printf("%s: no QMP greeting: is this a QEMU monitor socket "
		                         "(-qmp unix:PATH,server=on,wait=off)?",
		                         q->path);
		return -EPROTO;
	}
	q->major = (int)json_object_get_int_member_with_default(v, "major", 0);
	q->minor = (int)json_object_get_int_member_with_default(v, "minor", 0);
	return qmp_execute(q, "qmp_capabilities", NULL, NULL, error);
}

Qmp *qmp_connect(const char *path, int timeout_ms, char **error)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct ucred cred;
	socklen_t len = sizeof(cred);
	Qmp *q;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		*error = g_strdup_printf("%s: the socket's path is too long", path);
		return NULL;
	}
	strcpy(sa.sun_path, path);
	q = g_new0(Qmp, 1);
	q->path = g_strdup(path);
	q->timeout_ms = timeout_ms;
	q->in = g_string_new(NULL);
	q->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (q->fd < 0 || connect(q->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		*error = g_strdup_printf("%s: %s", path, g_strerror(errno));
		goto fail;
	}
	if (getsockopt(q->fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0)
		q->pid = cred.pid;
	/* QEMU greets at once: a socket that stays silent is someone else's. */
	q->timeout_ms = MIN(timeout_ms, QMP_GREETING_TIMEOUT_MS);
	if (qmp_greeting(q, error) < 0)
		goto fail;
	q->timeout_ms = timeout_ms;
	return q;
fail:
	qmp_close(q);
	return NULL;
}

void qmp_close(Qmp *q)
{
	if (!q)
		return;
	if (q->fd >= 0)
		close(q->fd);
	g_string_free(q->in, TRUE);
	g_free(q->path);
	g_free(q);
}

pid_t qmp_peer_pid(const Qmp *q)
{
	return q->pid;
}

void qmp_version(const Qmp *q, int *major, int *minor)
{
	*major = q->major;
	*minor = q->minor;
}
