/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The parts of the kernel's FUSE ABI newer than the <linux/fuse.h> we
 * build against (Debian 12: Linux 6.1, protocol 7.38), with the version
 * each comes from.  They are the kernel's ABI: the values and layouts
 * are fixed once released, so a binary built here speaks to any newer
 * kernel, and an older kernel simply never offers them.
 */
#ifndef MIRRORFS_FUSE_ABI_H
#define MIRRORFS_FUSE_ABI_H

#include <linux/fuse.h>
#include <stdint.h>

/* Protocol 7.39 (Linux 6.6): shared mmap of FOPEN_DIRECT_IO files. */
#ifndef FUSE_DIRECT_IO_ALLOW_MMAP
#define FUSE_DIRECT_IO_ALLOW_MMAP (1ULL << 36)
#endif

/* Protocol 7.42 (Linux 6.14): FUSE over io_uring. */
#ifndef FUSE_OVER_IO_URING
#define FUSE_OVER_IO_URING (1ULL << 41)

#define FUSE_URING_IN_OUT_HEADER_SZ 128
#define FUSE_URING_OP_IN_OUT_SZ     128

/* The last part of a ring entry's header, written both ways. */
struct fuse_uring_ent_in_out {
	uint64_t flags;
	uint64_t commit_id;  /* the request's unique, echoed in the commit */
	uint32_t payload_sz; /* bytes used in the payload buffer */
	uint32_t padding;
	uint64_t reserved;
};

/*
 * A ring entry's header buffer (the first of its two iovecs): the
 * request's fuse_in_header, then its first argument (the per-opcode
 * struct: fuse_write_in for a WRITE); the reply's fuse_out_header goes
 * where the in-header was.  Every other argument, both ways, is in the
 * payload buffer (the second iovec).
 */
struct fuse_uring_req_header {
	char in_out[FUSE_URING_IN_OUT_HEADER_SZ];
	char op_in[FUSE_URING_OP_IN_OUT_SZ];
	struct fuse_uring_ent_in_out ring_ent_in_out;
};

/* IORING_OP_URING_CMD's cmd_op on /dev/fuse. */
enum fuse_uring_cmd {
	FUSE_IO_URING_CMD_INVALID = 0,
	FUSE_IO_URING_CMD_REGISTER = 1,         /* register an entry, fetch a request */
	FUSE_IO_URING_CMD_COMMIT_AND_FETCH = 2, /* reply, then fetch the next */
};

/* In the SQE's command area (which needs IORING_SETUP_SQE128). */
struct fuse_uring_cmd_req {
	uint64_t flags;
	uint64_t commit_id;
	uint16_t qid;
	uint8_t padding[6];
};
#endif /* FUSE_OVER_IO_URING */

#endif
