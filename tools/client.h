/* SPDX-License-Identifier: GPL-2.0-or-later */
/* What mirrorfs-status and mirrorfsctl share: finding a mount's socket and asking it. */
#ifndef MIRRORFS_CLIENT_H
#define MIRRORFS_CLIENT_H

#include <json-glib/json-glib.h>
#include <stdbool.h>

/* The socket of the mount at @mountpoint, or @explicit_path when given; NULL after saying why. */
char *client_socket_path(const char *prog, const char *mountpoint, const char *explicit_path);

/*
 * Send @request and parse the reply.  Returns the reply object (a new
 * reference on *@parser's root) when "ok" is true; otherwise prints
 * "PROG: ERROR" on stderr and returns NULL.
 */
JsonObject *client_call(const char *prog, const char *socket_path, const char *request,
                        int timeout_ms, JsonParser **parser);

/* "1.5 GiB" */
char *client_format_bytes(double bytes);

#endif
