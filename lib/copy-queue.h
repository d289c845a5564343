/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The copier's queue: a few threads that each run one copy job at a
 * time, so that several chunks are read and written at once.  A job
 * brings its own function; the thread lends it a page-aligned buffer
 * (O_DIRECT wants one) that it keeps from job to job.  Which chunk, in
 * what order, and when the cursor moves, is the MirrorFile's business
 * (mirror-file.c); the queue only runs the jobs.
 */
#ifndef MFS_COPY_QUEUE_H
#define MFS_COPY_QUEUE_H

#include <stdbool.h>
#include <stddef.h>

/* The most jobs a queue runs at once. */
#define COPY_QUEUE_MAX 8
/* A thread's buffer grows to a job's size, up to this; a larger job loops. */
#define COPY_QUEUE_BUF_MAX (4u << 20)

typedef struct CopyQueue CopyQueue;
typedef struct CopyJob CopyJob;

struct CopyJob {
	/* Runs on a queue thread, with @buf of @len bytes (0 and NULL if none could be had). */
	void (*run)(CopyJob *job, void *buf, size_t len);
	size_t buf_len; /* the buffer the job would like */
	bool done;      /* protected by the queue's lock */
	CopyJob *next;  /* protected by the queue's lock */
};

/* Start @threads threads (1 to COPY_QUEUE_MAX); NULL and errno if none could start. */
CopyQueue *copy_queue_new(unsigned threads);
/* Wait for the jobs queued, stop the threads, free their buffers. */
void copy_queue_free(CopyQueue *q);
unsigned copy_queue_threads(CopyQueue *q);
/* Queue @job: job->run() runs on the first thread free. */
void copy_queue_submit(CopyQueue *q, CopyJob *job);
/* Wait until @job has run. */
void copy_queue_wait(CopyQueue *q, CopyJob *job);
/* Let the buffers go once the threads are idle (a file done: memory back). */
void copy_queue_trim(CopyQueue *q);

#endif /* MFS_COPY_QUEUE_H */
