/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The verify pass's half of a MirrorFile: compare a range of both sides
 * under the chunk protocol (mirror-file.c), so that no guest change lands
 * between the two reads.
 */
#define _GNU_SOURCE
#include "mirror-file-int.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

/* Read @len bytes at @pos, fewer only at the end of file. */
static ssize_t pread_full(int fd, void *buf, size_t len, off_t pos)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = pread(fd, (char *)buf + done, len - done, pos + (off_t)done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			break;
		done += n;
	}
	return (ssize_t)done;
}

/* Whether [pos, end) is a hole in @fd: no data there to read. */
static bool all_hole(int fd, off_t pos, off_t end)
{
	off_t data = lseek(fd, pos, SEEK_DATA);

	return (data < 0 && errno == ENXIO) || data >= end;
}

int64_t mirror_file_verify(MirrorFile *mf, off_t pos, size_t len, void *a, void *b, off_t *mismatch)
{
	struct stat ss, ds;
	ssize_t na = 0, nb = 0;
	off_t end;
	int64_t ret;

	*mismatch = -1;
	mirror_chunk_claim(mf, pos, pos + (off_t)len);
	if (fstat(mf->src_fd, &ss) < 0) {
		ret = -errno;
		goto out;
	}
	if (pos >= ss.st_size) {
		/* The end: the sizes, with every change above held off. */
		mirror_chunk_release(mf, -1, 0, 0);
		mirror_chunk_claim(mf, pos, MIRROR_OFF_MAX);
		ret = 0;
		if (fstat(mf->src_fd, &ss) < 0 || fstat(mf->dst_fd, &ds) < 0)
			ret = -errno;
		else if (ss.st_size != ds.st_size)
			*mismatch = MIN(ss.st_size, ds.st_size);
		else if (ss.st_size > pos)
			ret = -EAGAIN; /* it grew meanwhile: compare on */
		goto out;
	}
	end = MIN(ss.st_size, pos + (off_t)len);
	ret = end - pos;
	if (all_hole(mf->src_fd, pos, end) && all_hole(mf->dst_fd, pos, end))
		goto out;
	na = pread_full(mf->src_fd, a, end - pos, pos);
	nb = pread_full(mf->dst_fd, b, end - pos, pos);
	if (na < 0 || nb < 0) {
		ret = na < 0 ? na : nb;
		goto out;
	}
	if (na != nb || memcmp(a, b, na) != 0) {
		ssize_t i = 0;

		while (i < MIN(na, nb) && ((char *)a)[i] == ((char *)b)[i])
			i++;
		*mismatch = pos + i;
	}
out:
	mirror_chunk_release(mf, -1, 0, 0);
	return ret;
}
