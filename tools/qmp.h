/* SPDX-License-Identifier: GPL-2.0-or-later */
/* A QEMU Machine Protocol client: one synchronous command at a time over a unix socket. */
#ifndef MIRRORFS_QMP_H
#define MIRRORFS_QMP_H

#include <json-glib/json-glib.h>
#include <sys/types.h>

typedef struct Qmp Qmp;

/*
 * Connect to the QMP socket at @path and leave capability negotiation.
 * Returns NULL with *@error set ("PATH: why") when that fails.
 */
Qmp *qmp_connect(const char *path, int timeout_ms, char **error);
void qmp_close(Qmp *q);

/* The QEMU process at the other end (SO_PEERCRED), and its version from the greeting. */
pid_t qmp_peer_pid(const Qmp *q);
void qmp_version(const Qmp *q, int *major, int *minor);

/*
 * Run @command with the arguments object @args (NULL: none), skipping the
 * events QEMU sends meanwhile.  Returns 0 and the command's return value in
 * *@ret (a new node; pass NULL to drop it), or -errno with *@error set: QEMU's
 * own description when it refused (-EIO), else what broke.
 */
int qmp_execute(Qmp *q, const char *command, JsonNode *args, JsonNode **ret, char **error);

#endif
