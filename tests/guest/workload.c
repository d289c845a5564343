// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * The guest workload of the QEMU end-to-end test (tests/guest/), and its
 * host-side checker.  Built static, so that it runs as is in the guest's
 * busybox initramfs.
 *
 * Every 4 KiB block it writes is self-verifying: a header holding a magic
 * number, the block's own number, a generation and a seed, then bytes that
 * follow from those three alone, and a checksum of the whole block.  A
 * block still all zeros was never written (or was discarded); a block of
 * generation 0 is the initial content the host put in before boot.
 *
 *   guest-workload run DEVICE [OPTIONS]
 *       In the guest: write blocks at random places of DEVICE (a block
 *       device or a file) with O_DIRECT, flushing often, until told to
 *       stop; keep in memory the generation each block must have; then read
 *       every block back and check it.  Prints on stdout (the console):
 *         MIRRORFS-GUEST-START ...          once writing
 *         MIRRORFS-GUEST-TPUT t=... ...     every --report-ms
 *         MIRRORFS-GUEST-STOP ...           when told to stop
 *         MIRRORFS-GUEST-SUMMARY blocks=N ... digest=HEX
 *         MIRRORFS-GUEST-VERDICT: PASS blocks=N ...  (or FAIL ...)
 *       Exit status 0 on PASS, 1 on FAIL, 2 on a usage or system error.
 *
 *   guest-workload fill FILE --seed S --blocks N
 *       On the host, before boot: write generation 0 into blocks [0, N).
 *
 *   guest-workload verify FILE --seed S [--digest HEX]
 *       On the host, after the run: every block of FILE must be all zeros
 *       or a self-consistent block of seed S at its own place; prints the
 *       same SUMMARY line as the guest, computed from what the file holds,
 *       and with --digest fails unless the digests match, that is unless
 *       the file holds exactly the generation the guest last wrote into
 *       every block.
 *
 * Options of run:
 *   --seed S          seed of the contents and of the random offsets
 *   --prefill N       blocks [0, N) hold generation 0 at the start (fill)
 *   --ctl TTY         stop when the byte 'q' arrives on TTY (a serial port
 *                     the host writes to)
 *   --seconds N       stop after N seconds (default 600); with --ctl, a
 *                     time limit: reaching it fails the run
 *   --discard         also discard (BLKDISCARD) and zero (BLKZEROOUT)
 *                     ranges now and then; they must then read as zeros
 *   --report-ms N     throughput line interval (default 1000)
 *   --flush-ms N      fdatasync interval (default 200)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define BLOCK        4096u
#define WORDS        (BLOCK / 8)
#define MAGIC        0x54534555475346ffULL /* "\xffFSGUEST", little-endian */
#define GEN_ZERO     UINT32_MAX            /* the block must read as zeros */
#define GEN_BAD      (UINT32_MAX - 1)      /* classify(): neither zeros nor valid */
#define MAX_RUN      8                     /* blocks per write, at most */
#define DISCARD_UNIT 16                    /* blocks: discards are 64 KiB aligned */
#define VERIFY_CHUNK (1024u * 1024u)

static const char *prog = "guest-workload";
static bool in_run; /* die() also prints a verdict for the host to see */

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fprintf(stderr, "%s: ", prog);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	if (in_run) {
		/* The host looks for a verdict on the console: give one. */
		printf("MIRRORFS-GUEST-VERDICT: FAIL error\n");
		fflush(stdout);
	}
	exit(2);
}

static uint64_t splitmix64(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* The checksum of a block, its word 3 (the checksum itself) taken as 0. */
static uint64_t block_sum(const uint64_t *w)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	for (unsigned i = 0; i < WORDS; i++) {
		h ^= i == 3 ? 0 : w[i];
		h *= 0x100000001b3ULL;
		h ^= h >> 29;
	}
	return h;
}

/* The one content block @block may have at generation @gen. */
static void make_block(uint64_t *w, uint32_t seed, uint64_t block, uint32_t gen)
{
	uint64_t s = seed * 0xd1342543de82ef95ULL ^ block * 0x9e3779b97f4a7c15ULL ^
	             (uint64_t)gen * 0xbf58476d1ce4e5b9ULL;

	w[0] = MAGIC;
	w[1] = block;
	w[2] = (uint64_t)gen << 32 | seed;
	w[3] = 0;
	for (unsigned i = 4; i < WORDS; i++)
		w[i] = splitmix64(&s);
	w[3] = block_sum(w);
}

static bool all_zero(const uint64_t *w)
{
	for (unsigned i = 0; i < WORDS; i++)
		if (w[i])
			return false;
	return true;
}

/*
 * What a block read from place @block holds: GEN_ZERO, its generation if it
 * is exactly the block make_block() makes for it, or GEN_BAD (and why).
 */
static uint32_t classify(const uint64_t *w, uint32_t seed, uint64_t block, const char **why)
{
	static uint64_t expect[WORDS];
	uint32_t gen;

	*why = "";
	if (all_zero(w))
		return GEN_ZERO;
	if (w[0] != MAGIC) {
		*why = "no header";
		return GEN_BAD;
	}
	if (w[3] != block_sum(w)) {
		*why = "bad checksum";
		return GEN_BAD;
	}
	if (w[1] != block) {
		*why = "block number of another place";
		return GEN_BAD;
	}
	if ((uint32_t)w[2] != seed) {
		*why = "another seed";
		return GEN_BAD;
	}
	gen = (uint32_t)(w[2] >> 32);
	if (gen >= GEN_BAD) {
		*why = "impossible generation";
		return GEN_BAD;
	}
	make_block(expect, seed, block, gen);
	if (memcmp(expect, w, BLOCK) != 0) {
		*why = "contents do not follow from the header";
		return GEN_BAD;
	}
	return gen;
}

/* The digest of the generations of every block: what the guest expects,
 * or what an image holds. */
static uint64_t digest(const uint32_t *gens, uint64_t n)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	for (uint64_t b = 0; b < n; b++)
		for (unsigned i = 0; i < 4; i++) {
			h ^= (gens[b] >> (8 * i)) & 0xff;
			h *= 0x100000001b3ULL;
		}
	return h;
}

static void print_summary(const uint32_t *gens, uint64_t n)
{
	uint64_t zero = 0, initial = 0, written = 0;

	for (uint64_t b = 0; b < n; b++) {
		if (gens[b] == GEN_ZERO)
			zero++;
		else if (gens[b] == 0)
			initial++;
		else
			written++;
	}
	printf("MIRRORFS-GUEST-SUMMARY blocks=%" PRIu64 " written=%" PRIu64 " initial=%" PRIu64
	       " zero=%" PRIu64 " digest=%016" PRIx64 "\n",
	       n, written, initial, zero, digest(gens, n));
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void *aligned_buf(size_t size)
{
	void *p;

	if (posix_memalign(&p, BLOCK, size) != 0)
		die("out of memory");
	memset(p, 0, size);
	return p;
}

static void pwrite_all(int fd, const void *buf, size_t len, off_t off)
{
	while (len) {
		ssize_t n = pwrite(fd, buf, len, off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			die("write of %zu bytes at %lld: %s", len, (long long)off,
			    n < 0 ? strerror(errno) : "wrote nothing");
		buf = (const char *)buf + n;
		len -= (size_t)n;
		off += n;
	}
}

/* Reads exactly @len bytes, or fewer only at the end of the file. */
static size_t pread_full(int fd, void *buf, size_t len, off_t off)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = pread(fd, (char *)buf + done, len - done, off + (off_t)done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			die("read of %zu bytes at %lld: %s", len - done, (long long)(off + done),
			    strerror(errno));
		if (n == 0)
			break;
		done += (size_t)n;
	}
	return done;
}

static uint64_t dev_blocks(int fd, const char *path)
{
	struct stat st;
	uint64_t bytes;

	if (fstat(fd, &st) != 0)
		die("stat %s: %s", path, strerror(errno));
	if (S_ISBLK(st.st_mode)) {
		if (ioctl(fd, BLKGETSIZE64, &bytes) != 0)
			die("BLKGETSIZE64 %s: %s", path, strerror(errno));
	} else {
		bytes = (uint64_t)st.st_size;
	}
	if (bytes < BLOCK * DISCARD_UNIT * 4)
		die("%s: %" PRIu64 " bytes is too small", path, bytes);
	return bytes / BLOCK;
}

struct opts {
	uint32_t seed;
	uint64_t prefill;
	bool prefill_set;
	const char *ctl;
	double seconds;
	bool discard;
	unsigned report_ms;
	unsigned flush_ms;
	const char *digest;
};

static uint64_t parse_u64(const char *opt, const char *s)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || end == s || *end || *s == '-')
		die("%s: not a number: '%s'", opt, s);
	return v;
}

static void usage(void) __attribute__((noreturn));

static void usage(void)
{
	fprintf(stderr,
	        "usage: %s run DEVICE [--seed S] [--prefill N] [--ctl TTY] [--seconds N]\n"
	        "                     [--discard] [--report-ms N] [--flush-ms N]\n"
	        "       %s fill FILE --seed S --blocks N\n"
	        "       %s verify FILE --seed S [--digest HEX]\n",
	        prog, prog, prog);
	exit(2);
}

static void parse_opts(int argc, char **argv, struct opts *o)
{
	o->seed = 1;
	o->prefill = 0;
	o->prefill_set = false;
	o->ctl = NULL;
	o->seconds = 600;
	o->discard = false;
	o->report_ms = 1000;
	o->flush_ms = 200;
	o->digest = NULL;
	for (int i = 0; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (strcmp(a, "--discard") == 0) {
			o->discard = true;
			continue;
		}
		if (!v)
			usage();
		i++;
		if (strcmp(a, "--seed") == 0)
			o->seed = (uint32_t)parse_u64(a, v);
		else if (strcmp(a, "--prefill") == 0 || strcmp(a, "--blocks") == 0) {
			o->prefill = parse_u64(a, v);
			o->prefill_set = true;
		} else if (strcmp(a, "--ctl") == 0)
			o->ctl = v;
		else if (strcmp(a, "--seconds") == 0)
			o->seconds = (double)parse_u64(a, v);
		else if (strcmp(a, "--report-ms") == 0)
			o->report_ms = (unsigned)parse_u64(a, v);
		else if (strcmp(a, "--flush-ms") == 0)
			o->flush_ms = (unsigned)parse_u64(a, v);
		else if (strcmp(a, "--digest") == 0)
			o->digest = v;
		else
			usage();
	}
	if (o->report_ms == 0)
		o->report_ms = 1000;
}

/* --- fill --------------------------------------------------------------- */

static int cmd_fill(const char *path, const struct opts *o)
{
	int fd = open(path, O_WRONLY | O_CREAT, 0644);
	const uint64_t per = 256;
	uint64_t *buf = aligned_buf(per * BLOCK);

	if (fd < 0)
		die("open %s: %s", path, strerror(errno));
	if (!o->prefill_set)
		usage();
	for (uint64_t b = 0; b < o->prefill; b += per) {
		uint64_t n = o->prefill - b < per ? o->prefill - b : per;

		for (uint64_t i = 0; i < n; i++)
			make_block(buf + i * WORDS, o->seed, b + i, 0);
		pwrite_all(fd, buf, n * BLOCK, (off_t)(b * BLOCK));
	}
	if (fsync(fd) != 0 || close(fd) != 0)
		die("fsync %s: %s", path, strerror(errno));
	free(buf);
	return 0;
}

/* --- verify (host) -------------------------------------------------------- */

static int cmd_verify(const char *path, const struct opts *o)
{
	int fd = open(path, O_RDONLY);
	uint64_t nblocks, bad = 0;
	uint32_t *gens;
	uint64_t *buf = aligned_buf(VERIFY_CHUNK);
	char want[32];

	if (fd < 0)
		die("open %s: %s", path, strerror(errno));
	nblocks = dev_blocks(fd, path);
	gens = calloc(nblocks, sizeof(*gens));
	if (!gens)
		die("out of memory");
	for (uint64_t b = 0; b < nblocks; b += VERIFY_CHUNK / BLOCK) {
		uint64_t n =
		    nblocks - b < VERIFY_CHUNK / BLOCK ? nblocks - b : VERIFY_CHUNK / BLOCK;

		if (pread_full(fd, buf, n * BLOCK, (off_t)(b * BLOCK)) != n * BLOCK)
			die("%s: short read at block %" PRIu64, path, b);
		for (uint64_t i = 0; i < n; i++) {
			const char *why;

			gens[b + i] = classify(buf + i * WORDS, o->seed, b + i, &why);
			if (gens[b + i] == GEN_BAD && bad++ < 10)
				printf("bad block %" PRIu64 ": %s\n", b + i, why);
		}
	}
	close(fd);
	print_summary(gens, nblocks);
	if (bad) {
		printf("%s: %" PRIu64 " bad blocks\n", path, bad);
		return 1;
	}
	if (o->digest) {
		snprintf(want, sizeof(want), "%016" PRIx64, digest(gens, nblocks));
		if (strcmp(want, o->digest) != 0) {
			printf("%s: digest %s, expected %s: some block holds another generation "
			       "than the guest last wrote\n",
			       path, want, o->digest);
			return 1;
		}
	}
	return 0;
}

/* --- run (guest) ---------------------------------------------------------- */

struct stats {
	uint64_t bytes, writes, flushes, discards;
	double lat_max;
};

static int open_ctl(const char *path)
{
	struct termios t;
	int fd;

	if (!path)
		return -1;
	fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY);
	if (fd < 0)
		die("open %s: %s", path, strerror(errno));
	if (isatty(fd)) {
		if (tcgetattr(fd, &t) != 0)
			die("tcgetattr %s: %s", path, strerror(errno));
		cfmakeraw(&t);
		if (tcsetattr(fd, TCSANOW, &t) != 0)
			die("tcsetattr %s: %s", path, strerror(errno));
		tcflush(fd, TCIFLUSH);
	}
	return fd;
}

/* Has the host said stop? */
static bool ctl_stop(int fd)
{
	char c[16];
	ssize_t n;

	if (fd < 0)
		return false;
	n = read(fd, c, sizeof(c));
	return n > 0 && memchr(c, 'q', (size_t)n);
}

/* Discard (even calls) or zero (odd calls) @n blocks at @b. */
static void discard_range(int fd, bool blkdev, uint64_t b, uint64_t n, uint64_t count)
{
	uint64_t range[2] = {b * BLOCK, n * BLOCK};

	if (blkdev) {
		unsigned long req = count % 2 ? BLKZEROOUT : BLKDISCARD;

		if (ioctl(fd, req, range) != 0)
			die("%s of %" PRIu64 " blocks at %" PRIu64 ": %s",
			    req == BLKDISCARD ? "BLKDISCARD" : "BLKZEROOUT", n, b, strerror(errno));
	} else {
		int mode =
		    count % 2 ? FALLOC_FL_ZERO_RANGE : FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;

		if (fallocate(fd, mode, (off_t)range[0], (off_t)range[1]) != 0)
			die("fallocate of %" PRIu64 " blocks at %" PRIu64 ": %s", n, b,
			    strerror(errno));
	}
}

static int cmd_run(const char *path, const struct opts *o)
{
	int fd = open(path, O_RDWR | O_DIRECT);
	int ctl = open_ctl(o->ctl);
	struct stat st;
	uint64_t nblocks, rng, bad = 0;
	uint32_t *gens, seq = 0;
	uint64_t *buf =
	    aligned_buf(VERIFY_CHUNK > MAX_RUN * BLOCK ? VERIFY_CHUNK : MAX_RUN * BLOCK);
	struct stats total = {0}, iv = {0};
	double t0, t_last_report, t_last_flush, t;
	bool blkdev, timed_out = false;

	if (fd < 0)
		die("open %s: %s", path, strerror(errno));
	if (fstat(fd, &st) != 0)
		die("stat %s: %s", path, strerror(errno));
	blkdev = S_ISBLK(st.st_mode);
	nblocks = dev_blocks(fd, path);
	if (o->prefill > nblocks)
		die("--prefill %" PRIu64 " is more than the %" PRIu64 " blocks", o->prefill,
		    nblocks);
	gens = malloc(nblocks * sizeof(*gens));
	if (!gens)
		die("out of memory");
	for (uint64_t b = 0; b < nblocks; b++)
		gens[b] = b < o->prefill ? 0 : GEN_ZERO;
	rng = o->seed ^ 0x5eed5eed5eedULL;

	printf("MIRRORFS-GUEST-START blocks=%" PRIu64 " prefill=%" PRIu64 " seed=%u discard=%d\n",
	       nblocks, o->prefill, o->seed, o->discard);
	t = t0 = t_last_report = t_last_flush = now_s();
	for (;;) {
		uint64_t r = splitmix64(&rng);
		double w0;

		t = now_s();
		if (ctl_stop(ctl))
			break;
		if (t - t0 >= o->seconds) {
			/* With a control port, only the host says when to stop. */
			timed_out = ctl >= 0;
			break;
		}
		if (o->discard && r % 24 == 0) {
			uint64_t units = nblocks / DISCARD_UNIT;
			uint64_t b = (r >> 8) % units * DISCARD_UNIT;
			uint64_t n = DISCARD_UNIT * (1 + (r >> 40) % 4);

			if (b + n > nblocks)
				n = nblocks - b;
			discard_range(fd, blkdev, b, n, total.discards);
			for (uint64_t i = 0; i < n; i++)
				gens[b + i] = GEN_ZERO;
			total.discards++;
			iv.discards++;
		} else {
			uint64_t b = (r >> 8) % nblocks;
			uint64_t n = 1 + (r >> 48) % MAX_RUN;

			if (b + n > nblocks)
				n = nblocks - b;
			if (++seq >= GEN_BAD)
				die("too many writes");
			for (uint64_t i = 0; i < n; i++)
				make_block(buf + i * WORDS, o->seed, b + i, seq);
			w0 = now_s();
			pwrite_all(fd, buf, n * BLOCK, (off_t)(b * BLOCK));
			t = now_s();
			if (t - w0 > iv.lat_max)
				iv.lat_max = t - w0;
			for (uint64_t i = 0; i < n; i++)
				gens[b + i] = seq;
			iv.bytes += n * BLOCK;
			iv.writes++;
		}
		if ((t - t_last_flush) * 1000 >= o->flush_ms) {
			if (fdatasync(fd) != 0)
				die("fdatasync %s: %s", path, strerror(errno));
			t_last_flush = t = now_s();
			iv.flushes++;
		}
		if ((t - t_last_report) * 1000 >= o->report_ms) {
			double dt = t - t_last_report;

			printf("MIRRORFS-GUEST-TPUT t=%.2f dt=%.3f bytes=%" PRIu64
			       " writes=%" PRIu64 " flushes=%" PRIu64 " discards=%" PRIu64
			       " lat_max_ms=%.1f MiB/s=%.2f\n",
			       t - t0, dt, iv.bytes, iv.writes, iv.flushes, iv.discards,
			       iv.lat_max * 1000, iv.bytes / dt / 1048576);
			fflush(stdout);
			total.bytes += iv.bytes;
			total.writes += iv.writes;
			total.flushes += iv.flushes;
			if (iv.lat_max > total.lat_max)
				total.lat_max = iv.lat_max;
			iv = (struct stats){0};
			t_last_report = t;
		}
	}
	total.bytes += iv.bytes;
	total.writes += iv.writes;
	total.flushes += iv.flushes;
	if (iv.lat_max > total.lat_max)
		total.lat_max = iv.lat_max;
	if (fdatasync(fd) != 0)
		die("fdatasync %s: %s", path, strerror(errno));
	printf("MIRRORFS-GUEST-STOP seconds=%.2f writes=%" PRIu64 " bytes=%" PRIu64
	       " flushes=%" PRIu64 " discards=%" PRIu64 " lat_max_ms=%.1f%s\n",
	       t - t0, total.writes, total.bytes, total.flushes, total.discards,
	       total.lat_max * 1000, timed_out ? " (time limit: the host never said stop)" : "");
	fflush(stdout);

	/* Read everything back, O_DIRECT: from the image, not a guest cache. */
	for (uint64_t b = 0; b < nblocks; b += VERIFY_CHUNK / BLOCK) {
		uint64_t n =
		    nblocks - b < VERIFY_CHUNK / BLOCK ? nblocks - b : VERIFY_CHUNK / BLOCK;

		if (pread_full(fd, buf, n * BLOCK, (off_t)(b * BLOCK)) != n * BLOCK)
			die("%s: short read at block %" PRIu64, path, b);
		for (uint64_t i = 0; i < n; i++) {
			const char *why;
			uint32_t got = classify(buf + i * WORDS, o->seed, b + i, &why);

			if (got == gens[b + i])
				continue;
			if (bad++ < 20) {
				char exp[24], found[64];

				if (gens[b + i] == GEN_ZERO)
					snprintf(exp, sizeof(exp), "zeros");
				else
					snprintf(exp, sizeof(exp), "generation %u", gens[b + i]);
				if (got == GEN_ZERO)
					snprintf(found, sizeof(found), "zeros");
				else if (got == GEN_BAD)
					snprintf(found, sizeof(found), "garbage (%s)", why);
				else
					snprintf(found, sizeof(found), "generation %u", got);
				printf("MIRRORFS-GUEST-BAD block=%" PRIu64
				       " expected %s, found %s\n",
				       b + i, exp, found);
			}
		}
	}
	close(fd);
	print_summary(gens, nblocks);
	if (bad || timed_out)
		printf("MIRRORFS-GUEST-VERDICT: FAIL blocks=%" PRIu64 " bad=%" PRIu64 "%s\n",
		       nblocks, bad, timed_out ? " timed-out" : "");
	else
		printf("MIRRORFS-GUEST-VERDICT: PASS blocks=%" PRIu64 " writes=%" PRIu64 "\n",
		       nblocks, total.writes);
	fflush(stdout);
	free(gens);
	free(buf);
	return bad || timed_out ? 1 : 0;
}

int main(int argc, char **argv)
{
	struct opts o;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc < 3)
		usage();
	parse_opts(argc - 3, argv + 3, &o);
	if (strcmp(argv[1], "run") == 0) {
		in_run = true;
		return cmd_run(argv[2], &o);
	}
	if (strcmp(argv[1], "fill") == 0)
		return cmd_fill(argv[2], &o);
	if (strcmp(argv[1], "verify") == 0)
		return cmd_verify(argv[2], &o);
	usage();
}
