/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The control socket: a Unix socket per mount, speaking a line-oriented
 * JSON protocol (version 1).  Each request is one JSON object on one
 * line; each reply is one JSON object on one line, with "ok" true or
 * false and, when false, "error".  Requests:
 *
 *   {"version":1,"command":"status"}
 *   {"command":"start","target":DIR,"speed":RATE,"chunk":SIZE,
 *    "guest_share":PCT,"switch":"auto"|"manual","delete_source":BOOL,
 *    "overwrite":BOOL}
 *   {"command":"pause"} {"command":"resume"} {"command":"switch"}
 *   {"command":"cancel"} {"command":"speed","speed":RATE}
 *   {"command":"guest_share","guest_share":PCT}
 *
 * RATE and SIZE are numbers of bytes or strings such as "50M", at most
 * 2^63 - 1 (sizes travel as signed 64-bit numbers); PCT is an integer
 * from 0 to 90 (the start request's default: 50).  Names (the start's
 * target, every path and message in replies) are escaped: each byte that
 * is not valid UTF-8, each control character's and each backslash as
 * \xHH (mfs_escape_name(), mirrorfs-status(1)).  Only root
 * and the user who mounted may use the socket (SO_PEERCRED).
 */
#ifndef MFS_CONTROL_H
#define MFS_CONTROL_H

#include "mfs.h"
#include "migration.h"

#include <glib.h>

#include <sys/types.h>

#define CONTROL_PROTOCOL_VERSION  1
#define CONTROL_MAX_REQUEST       (64 * 1024)
#define CONTROL_SYSTEM_DIR        "/run/mirrorfs"
#define CONTROL_CLIENT_TIMEOUT_MS 5000

typedef struct ControlServer ControlServer;

/*
 * Where the socket of the mount at @mountpoint (a canonical path) lives:
 * under $MIRRORFS_RUNTIME_DIR, else /run/mirrorfs for root and the user's
 * runtime directory for others.
 */
char *control_socket_path(const char *mountpoint);
/* The same, under @dir; and the directory control_socket_path() uses. */
char *control_socket_path_in(const char *dir, const char *mountpoint);
const char *control_runtime_dir(void);

/*
 * Listen on @socket_path (owner-only).  control_server_run() then serves
 * requests for @fs in a thread of its own (separate, so that a daemon can
 * fork between the two).  A silent or slow client holds up nobody.
 */
int control_server_start(Mfs *fs, const char *socket_path, const char *mountpoint,
                         ControlServer **out, char **error);
void control_server_run(ControlServer *srv);
void control_server_stop(ControlServer *srv);

/* One request line from a peer with uid @peer; returns the reply (no newline). */
char *control_handle_request(Mfs *fs, const char *mountpoint, const char *line, uid_t peer);
/*
 * The same; after an "events" request *@follow_from is the seq the peer
 * follows from (its connection then gets every later event, one line
 * each: control_event_line()), else -1.
 */
char *control_handle_request_follow(Mfs *fs, const char *mountpoint, const char *line, uid_t peer,
                                    int64_t *follow_from);
/* An event as a line of the "events" stream (no newline; see mirrorfs-status(1)). */
char *control_event_line(const MfsMigEvent *ev);
/* An error reply (no newline) saying what the format says, names escaped. */
char *control_reply_error(const char *fmt, ...) G_GNUC_PRINTF(1, 2);

/*
 * Client side: send @request (one line, no newline) to @socket_path and
 * read one reply line into *@reply, waiting @timeout_ms at the most (a
 * daemon that is stopped must not hang its clients).  On failure *@error
 * says why.
 */
int control_request(const char *socket_path, const char *request, int timeout_ms, char **reply,
                    char **error);

/*
 * Client side, following ("events"): send @request and read its reply as
 * control_request() does, then keep the connection for the lines that
 * follow.
 */
typedef struct {
	int fd;
	GString *in;
} ControlFollow;
int control_follow_open(const char *socket_path, const char *request, int timeout_ms,
                        ControlFollow *out, char **reply, char **error);
/*
 * The next line within @timeout_ms (-1: no limit): 1 with *@line, 0 on
 * timeout, -errno (-ECONNRESET: the daemon closed the connection).
 */
int control_follow_next(ControlFollow *f, int timeout_ms, char **line);
void control_follow_close(ControlFollow *f);

#endif
