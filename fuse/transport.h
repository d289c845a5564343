/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The transport: how requests reach the daemon and replies leave it.
 *
 * Two carry requests: the classic one, threads reading /dev/fuse
 * (loop.c), and FUSE over io_uring (uring.c, Linux 6.14), where each
 * thread owns a ring entry the kernel fills with a request and takes the
 * reply from.  Both hand each request to transport_serve(), which runs
 * libfuse's dispatch on it.  libfuse writes every reply through
 * transport_writev(): a reply to a ring request goes into its entry,
 * everything else to /dev/fuse.  The same hook settles what libfuse 3.14
 * cannot negotiate in the INIT reply (FUSE_OVER_IO_URING,
 * FUSE_HANDLE_KILLPRIV_V2, FUSE_DIRECT_IO_ALLOW_MMAP).
 */
#ifndef MIRRORFS_TRANSPORT_H
#define MIRRORFS_TRANSPORT_H

#include "mirrorfs.h"
#include "lock.h"

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

/* -o io_uring=: the one home of its values. */
typedef enum {
	TRANSPORT_URING_OFF,
	TRANSPORT_URING_AUTO,
	TRANSPORT_URING_ON,
} TransportUringMode;

/* 0 and *mode, or -EINVAL for a value that is none of off, auto, on. */
int transport_uring_mode_parse(const char *text, TransportUringMode *mode);

/*
 * Before the mount: can the kernel carry FUSE over io_uring?  0, or
 * -errno with *why saying what is missing and how to get it.
 */
int transport_uring_available(char **why);

typedef struct Uring Uring;

typedef struct Transport {
	struct fuse_session *se;
	Mfs *fs;
	TransportUringMode uring_mode;
	unsigned int threads; /* classic readers; also sizes the ring */
	int stop_fd;          /* eventfd: written when the session ends */
	/* Settled by the thread that serves INIT, before any other request. */
	uint64_t kernel_flags; /* what the kernel offered in INIT (flags | flags2 << 32) */
	uint64_t granted;      /* what our INIT reply added: transport_granted() */
	MfsMutex lock;         /* uring_started and stopping */
	Uring *uring;          /* prepared while INIT is answered, then started */
	bool uring_started;
	bool stopping;
	char *uring_why; /* why the rings could not be set up, if they could not */
	gint failed;     /* io_uring=on and the ring could not start */
} Transport;

/*
 * A request being served, in the thread that serves it.  For one that
 * came through the ring, the entry's buffers: the reply goes there.
 */
typedef struct {
	uint64_t unique;
	uint32_t opcode;
	bool kill_suidgid; /* the kernel asks us to clear setuid/setgid (KILLPRIV_V2) */
	struct fuse_uring_req_header *ring_header;
	char *payload;
	size_t payload_max;
	bool replied;
} TransportRequest;

/* Installs the reply hook on a mounted session: 0 or -errno. */
int transport_init(Transport *t, struct fuse_session *se, Mfs *fs, TransportUringMode mode,
                   unsigned int threads);
void transport_destroy(Transport *t);

/* Runs libfuse's dispatch on @buf, a whole request in the classic layout. */
void transport_serve(Transport *t, TransportRequest *r, char *buf, size_t size);

/* The flags our INIT reply added to libfuse's (0 before INIT). */
uint64_t transport_granted(Transport *t);

/* Ends every ring thread; the session is over. */
void transport_stop(Transport *t);

/*
 * For a request served from a ring entry: where its reply's data may be
 * built in place (size bytes, page aligned), or NULL.
 */
void *transport_reply_buffer(size_t size);

/* uring.c */
/* Can this process make a ring at all?  0, or -errno and *why. */
int uring_probe(char **why);
/* Sets up every ring, before INIT grants io_uring: NULL and *why if it cannot. */
Uring *uring_prepare(Transport *t, char **why);
void uring_discard(Uring *u);
/* Starts the prepared rings' threads; a failure ends the session. */
void uring_start(Transport *t);
/* Joins the threads (ended through stop_fd) and frees it all. */
void uring_stop(Uring *u);
ssize_t uring_reply(TransportRequest *r, const struct iovec *iov, int count);

#endif
