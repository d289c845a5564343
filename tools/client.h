/* SPDX-License-Identifier: GPL-2.0-or-later */
/* What mirrorfs-status and mirrorfsctl share: finding a mount's socket and asking it. */
#ifndef MIRRORFS_CLIENT_H
#define MIRRORFS_CLIENT_H

#include <json-glib/json-glib.h>
#include <stdbool.h>

#define CLIENT_STATUS_REQUEST "{\"version\":1,\"command\":\"status\"}"
#define CLIENT_EVENTS_REQUEST "{\"version\":1,\"command\":\"events\"}"

/* The socket of the mount at @mountpoint, or @explicit_path when given; NULL after saying why. */
char *client_socket_path(const char *prog, const char *mountpoint, const char *explicit_path);

/*
 * Send @request and parse the reply.  Returns the reply object (a new
 * reference on *@parser's root) when "ok" is true; otherwise prints
 * "PROG: ERROR" on stderr and returns NULL.
 */
JsonObject *client_call(const char *prog, const char *socket_path, const char *request,
                        int timeout_ms, JsonParser **parser);

/* Milliseconds left until @deadline (monotonic µs; -1: none), at most @cap. */
int client_time_left_ms(gint64 deadline, int cap);

/*
 * Wait until the migration (@job, or the one there is) reaches @state or a later one on the way to
 * a switch, or @deadline (monotonic µs; -1: none) passes: woken by the daemon's events, or asking
 * five times a second a daemon that has none. Returns 0, or -1 after saying why on stderr ("PROG:
 * the migration is cancelled", "PROG: timed out; ...") when it ended otherwise or the daemon could
 * not be asked.
 */
int client_wait_state(const char *prog, const char *socket_path, const char *job, const char *state,
                      gint64 deadline);
/*
 * A request for the migration @job (--job: its number, or its target
 * directory), or NULL for the one there is: @command's, with "job" set.
 */
char *client_job_request(const char *command, const char *job);
/* Whether --job @job may name a job: a number from 1, or a directory (not "-1"). */
bool client_job_valid(const char *job);

/* "1.5 GiB" */
char *client_format_bytes(double bytes);

#endif
