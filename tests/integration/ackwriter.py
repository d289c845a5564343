#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Acknowledged writes, logged outside the file system under test.

    ackwriter.py init FILE BLOCKS            write every block as sequence 0
    ackwriter.py write FILE LOG [--direct] [--seed N] [--max-seconds S]
    ackwriter.py verify FILE LOG [LOG...]

A block is 4 KiB: a header (magic, its own offset, a sequence number) and
a body that follows from offset and sequence, so that any block read back
says which write it is and whether it is whole.

write: picks random blocks of FILE and writes each with the next sequence
number, fsync (fdatasync with --direct, which also opens O_DIRECT) after
every write, and only once that returned appends "A SEQ OFFSET" to LOG
(which must lie outside the file system under test; it is flushed at
once).  "I SEQ OFFSET" goes to LOG before each write is issued.  It stops
at the first error (the daemon was killed: ENOTCONN) or after S seconds,
prints how many writes were acknowledged and exits 0.

verify: every block of FILE must be whole, at its own offset, of a write
that was issued (or the initial sequence 0), and not older than the last
acknowledged write to it in any LOG: an acknowledged write is never lost.
A newer, unacknowledged write may have landed.  Exits 1 with the reasons
if not.
"""

import mmap
import os
import random
import struct
import sys
import time

BLOCK = 4096
MAGIC = b"MFSACKW1"
HEADER = struct.Struct("<8sQQ")  # magic, offset, sequence


def body(offset, seq):
    return random.Random(offset * 1000003 + seq).randbytes(BLOCK - HEADER.size)


def block(offset, seq):
    return HEADER.pack(MAGIC, offset, seq) + body(offset, seq)


def init(path, blocks):
    with open(path, "wb") as f:
        for i in range(blocks):
            f.write(block(i * BLOCK, 0))
        f.flush()
        os.fsync(f.fileno())


def write(path, log, direct, seed, max_seconds):
    rng = random.Random(seed)
    # Sequence numbers unique across writers and runs: seed in the high bits.
    seq = (seed << 32) + 1
    flags = os.O_RDWR | (os.O_DIRECT if direct else 0)
    logf = open(log, "a", buffering=1)
    buf = mmap.mmap(-1, BLOCK)
    acked = 0
    deadline = time.monotonic() + max_seconds
    try:
        fd = os.open(path, flags)
        blocks = os.fstat(fd).st_size // BLOCK
        while time.monotonic() < deadline:
            off = rng.randrange(blocks) * BLOCK
            buf[:] = block(off, seq)
            logf.write(f"I {seq} {off}\n")
            logf.flush()
            if os.pwritev(fd, [buf], off) != BLOCK:
                raise OSError("short write")
            if direct:
                os.fdatasync(fd)
            else:
                os.fsync(fd)
            logf.write(f"A {seq} {off}\n")
            logf.flush()
            acked += 1
            seq += 1
    except OSError as e:
        print(f"ackwriter: stopped after {acked} acknowledged writes: {e}")
        return 0
    print(f"ackwriter: {acked} acknowledged writes")
    return 0


def verify(path, logs):
    issued, last_acked = set(), {}
    n_acked = 0
    for log in logs:
        with open(log) as f:
            for line in f:
                parts = line.split()
                if len(parts) != 3:
                    continue  # a line cut by the end of the run
                kind, seq, off = parts[0], int(parts[1]), int(parts[2])
                issued.add((seq, off))
                if kind == "A":
                    n_acked += 1
                    last_acked[off] = max(last_acked.get(off, 0), seq)
    errors = []
    with open(path, "rb") as f:
        data = f.read()
    if len(data) % BLOCK:
        errors.append(f"size {len(data)} is not a whole number of blocks")
    for i in range(len(data) // BLOCK):
        off = i * BLOCK
        b = data[off : off + BLOCK]
        magic, hoff, seq = HEADER.unpack_from(b)
        if magic != MAGIC or hoff != off:
            errors.append(f"block at {off}: not one of ours (magic {magic!r}, offset {hoff})")
        elif b[HEADER.size :] != body(off, seq):
            errors.append(f"block at {off}: torn (sequence {seq})")
        elif seq != 0 and (seq, off) not in issued:
            errors.append(f"block at {off}: sequence {seq} was never written there")
        elif seq < last_acked.get(off, 0):
            errors.append(f"block at {off}: LOST acknowledged write {last_acked[off]} "
                          f"(holds {seq})")
        if len(errors) > 20:
            break
    missing = [off for off in last_acked if off + BLOCK > len(data)]
    if missing:
        errors.append(f"{len(missing)} acknowledged blocks lie past the end of the file")
    if errors:
        print(f"ackwriter: {path}: {len(errors)} problem(s):")
        for e in errors:
            print("  " + e)
        return 1
    print(f"ackwriter: {path}: {n_acked} acknowledged writes, all there")
    return 0


def main(argv):
    if len(argv) >= 3 and argv[1] == "init":
        init(argv[2], int(argv[3]))
        return 0
    if len(argv) >= 4 and argv[1] == "write":
        args = argv[4:]
        direct = "--direct" in args
        seed = int(args[args.index("--seed") + 1]) if "--seed" in args else 1
        secs = float(args[args.index("--max-seconds") + 1]) if "--max-seconds" in args else 60
        return write(argv[2], argv[3], direct, seed, secs)
    if len(argv) >= 4 and argv[1] == "verify":
        return verify(argv[2], argv[3:])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
