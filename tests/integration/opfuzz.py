#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""A model-based operation fuzzer for mirrorfs, in the spirit of fsx/fsstress.

    opfuzz.py --mirrorfs BIN --ctl BIN --status BIN [--seed N] [--epochs N]
              [--duration S] [--workers N] [--ops-per-epoch N]
              [--disable CLASS,...] [--enable CLASS,...] [--workdir DIR]
              [--log-dir DIR] [--keep]
    opfuzz.py --replay LOGFILE [--mirrorfs BIN ...]
    opfuzz.py --list-classes

It mounts mirrorfs over a fresh source directory and runs WORKERS processes
at once through the mount.  Each worker owns a subtree (wN/) of the mount
and a subtree of the same name in a plain "shadow" directory on the normal
disk, and applies every operation to both: the shadow is the model.  As the
subtrees are disjoint and each worker's choices come from its own seeded
random generator and the results of its own operations, what the served
tree must hold is fully determined by the seed, however the workers
interleave.  Any operation whose outcome (return value, errno, bytes read)
differs between the mount and the shadow fails the run at once.

Meanwhile a controller (this process) drives migrations with mirrorfsctl at
moments fixed by the workers' progress (the total count of operations done,
drawn from the seed): start to a fresh directory or back to the one served
before (--overwrite), small chunks and speed limits so that operations race
the copier, pause, resume, speed changes, cancel, live switches, automatic
switches, and remounts (a restarted daemon must serve the right directory).

The run is cut into epochs.  At the end of each one every worker stops at a
barrier (its files stay open), and the controller checks:

  - model: the served tree (through the mount) equals the shadow: names,
    types, modes, owners, sizes, bytes, link counts and which names share
    an inode, symlink targets, user.* xattrs, device numbers;
  - the raw served directory equals the mount, including mtime, ctime and
    allocated blocks (atime aside: the checks themselves read);
  - every file a worker holds open (unlinked ones included) reads the same
    bytes through its mount descriptor as through its shadow descriptor.

A switch made with the writers quiesced is also checked across: the mount's
metadata (lstat only, no reads in between) just before and just after the
switch must have the same times, owners, modes, sizes and link counts, and
no file may use more blocks after than before (sparse stays sparse).

On failure it prints the seed, what differs, the tail of the operation log,
writes the whole log (with the options, so that --replay repeats the run)
to --log-dir, and exits 1.  Exit 77 if the environment cannot run it.
"""

import argparse
import ctypes
import errno
import hashlib
import json
import mmap
import multiprocessing
import multiprocessing.connection
import os
import random
import shlex
import signal
import stat
import subprocess
import sys
import time
import traceback

MiB = 1024 * 1024
BLOCK = 4096  # the alignment O_DIRECT and the shift fallocate modes want
MAX_FILE = 3 * MiB  # keeps the data small: the copies must fit in a CI run
MAX_OPEN = 8  # descriptor pairs a worker keeps open at once
JOURNAL = ".mirrorfs-journal"
SKIP = 77

FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02
FALLOC_FL_COLLAPSE_RANGE = 0x08
FALLOC_FL_ZERO_RANGE = 0x10
FALLOC_FL_INSERT_RANGE = 0x20
RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2
AT_FDCWD = -100

libc = ctypes.CDLL(None, use_errno=True)
libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]
libc.renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                           ctypes.c_uint]

# Operation classes a worker can run, and classes of controller actions.
# --disable turns some off (a known-broken class while its fix lands).
WORKER_CLASSES = {
    "open": "open an existing file, read-only, write-only or read-write",
    "otrunc": "open(O_TRUNC) of an existing file (also create over one)",
    "oappend": "open(O_APPEND), writes then go to the end",
    "oexcl": "open(O_CREAT|O_EXCL)",
    "odirect": "open(O_DIRECT), aligned buffers, offsets and lengths",
    "create": "open(O_CREAT) of a new name",
    "mknod": "mknod of a regular file",
    "fifo": "mknod of a FIFO",
    "mkdir": "mkdir and rmdir",
    "write": "write/pwrite of odd sizes at odd offsets, beyond EOF too",
    "pwritev": "pwritev of several buffers",
    "read": "pread, compared at once",
    "mmap": "writes through a shared mapping, msync",
    "truncate": "truncate and ftruncate, up and down",
    "fallocate": "fallocate: allocate, keep-size, punch-hole, zero-range",
    "fshift": "fallocate collapse-range and insert-range",
    "copyrange": "copy_file_range between open files",
    "rename": "rename of files and symlinks, over existing names, across directories",
    "renamedir": "rename of directories",
    "renameat2": "renameat2 RENAME_EXCHANGE and RENAME_NOREPLACE",
    "link": "hard links",
    "unlink": "unlink of names no descriptor holds the last link of",
    "unlinkopen": "unlink (or rename over) a file that is open; keep using it",
    "symlink": "symlinks",
    "chmod": "chmod",
    "chown": "chown and lchown",
    "utime": "utimensat with explicit times",
    "xattr": "setxattr, removexattr of user.* attributes",
    "fsync": "fsync, fdatasync, fsync of a directory",
}
CTL_CLASSES = {
    "ctl-pause": "pause and resume the copier",
    "ctl-speed": "change the speed limit while copying",
    "ctl-cancel": "cancel a migration",
    "ctl-liveswitch": "switch (manual) while the workers run",
    "ctl-back": "migrate back to the directory served before (--overwrite)",
    "ctl-delsrc": "start with --delete-source",
    "ctl-remount": "unmount and mount again with the first command line",
}
# Checks that can be turned off like a class, while a known defect is fixed.
CHECK_CLASSES = {
    "chk-special-times": "a switch keeps the times of symlinks, FIFOs and devices",
    "chk-blocks": "a switch never makes a file take more blocks",
}
ALL_CLASSES = {**WORKER_CLASSES, **CTL_CLASSES, **CHECK_CLASSES}


class Divergence(Exception):
    """The mount and the model disagree: the run fails."""


def errname(e):
    return errno.errorcode.get(e, str(e))


def outcome(fn):
    """('ok', value) or ('err', 'ENAME'): what an operation did, comparable."""
    try:
        return ("ok", fn())
    except OSError as e:
        return ("err", errname(e.errno))


def c_fallocate(fd, mode, off, length):
    if libc.fallocate(fd, mode, off, length) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return 0


def c_renameat2(old, new, flags):
    if libc.renameat2(AT_FDCWD, os.fsencode(old), AT_FDCWD, os.fsencode(new), flags) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return 0


def digest(data):
    return hashlib.sha256(data).hexdigest()[:16]


def read_whole(path_or_fd):
    """All bytes of a file, through a fresh read-only descriptor."""
    # No O_NOFOLLOW: callers pass regular files, or /proc/self/fd links.
    fd = os.open(path_or_fd, os.O_RDONLY) if isinstance(path_or_fd, str) else path_or_fd
    try:
        chunks = []
        off = 0
        while True:
            b = os.pread(fd, MiB, off)
            if not b:
                break
            chunks.append(b)
            off += len(b)
        return b"".join(chunks)
    finally:
        if isinstance(path_or_fd, str):
            os.close(fd)


# --- the worker ---------------------------------------------------------------

class Pair:
    """One file open on both sides: the mount's descriptor and the shadow's."""

    def __init__(self, m, s, flags, ino, path):
        self.m, self.s, self.flags, self.ino, self.path = m, s, flags, ino, path
        self.direct = bool(flags & os.O_DIRECT)
        acc = flags & os.O_ACCMODE
        self.readable = acc in (os.O_RDONLY, os.O_RDWR)
        self.writable = acc in (os.O_WRONLY, os.O_RDWR)
        self.append = bool(flags & os.O_APPEND)


class Worker:
    """Runs seeded operations on its subtree of the mount and of the shadow."""

    def __init__(self, wid, seed, mnt, shadow, classes, logpath, counter):
        self.wid = wid
        self.rng = random.Random(f"{seed}/worker/{wid}")
        self.mroot = os.path.join(mnt, f"w{wid}")
        self.sroot = os.path.join(shadow, f"w{wid}")
        self.classes = classes
        self.pairs = []
        self.nops = 0
        self.log = open(logpath, "a", buffering=1)
        self.counter = counter
        self.ops = [(name, w) for name, w in self.weights() if name in classes]

    @staticmethod
    def weights():
        return [("open", 8), ("otrunc", 3), ("oappend", 2), ("oexcl", 2), ("odirect", 3),
                ("create", 4), ("mknod", 2), ("fifo", 1), ("mkdir", 3), ("write", 20),
                ("pwritev", 6), ("read", 6), ("mmap", 3), ("truncate", 5), ("fallocate", 5),
                ("fshift", 2), ("copyrange", 4), ("rename", 4), ("renamedir", 1),
                ("renameat2", 3), ("link", 3), ("unlink", 3), ("unlinkopen", 2),
                ("symlink", 2), ("chmod", 2), ("chown", 2), ("utime", 2), ("xattr", 4),
                ("fsync", 4)]

    def note(self, text):
        self.log.write(f"{time.monotonic():.6f} w{self.wid} #{self.nops} {text}\n")

    # Paths are relative to the worker's root; m() and s() make them absolute.
    def m(self, rel):
        return os.path.join(self.mroot, rel) if rel else self.mroot

    def s(self, rel):
        return os.path.join(self.sroot, rel) if rel else self.sroot

    def both(self, what, fn):
        """Run fn(side_path_function) on the mount, then on the shadow."""
        r_m = outcome(lambda: fn(self.m))
        r_s = outcome(lambda: fn(self.s))
        self.note(f"{what} -> {r_s[1] if r_s[0] == 'err' else 'ok'}")
        if r_m != r_s:
            raise Divergence(f"w{self.wid}: {what}: mount gave {r_m}, model {r_s}")
        return r_s

    def both_fd(self, what, pair, fn):
        """Run fn(fd) on the pair's mount descriptor, then on its shadow one."""
        r_m = outcome(lambda: fn(pair.m))
        r_s = outcome(lambda: fn(pair.s))
        res = r_s[1] if r_s[0] == "err" else ("ok" if r_s[1] is None else
                                              (r_s[1] if isinstance(r_s[1], int) else "ok"))
        self.note(f"{what} [fd {pair.path}] -> {res}")
        if r_m != r_s:
            raise Divergence(f"w{self.wid}: {what} on fd of '{pair.path}': mount gave "
                             f"{r_m if not isinstance(r_m[1], bytes) else ('ok', digest(r_m[1]))}"
                             f", model "
                             f"{r_s if not isinstance(r_s[1], bytes) else ('ok', digest(r_s[1]))}")
        return r_s

    # --- the model's tree, to choose names from ---------------------------------
    def entries(self):
        """(rel, lstat) of everything in the shadow subtree."""
        out = []
        for root, dirs, files in os.walk(self.sroot):
            for n in dirs + files:
                p = os.path.join(root, n)
                out.append((os.path.relpath(p, self.sroot), os.lstat(p)))
        out.sort()
        return out

    def pick(self, kind=None):
        """An existing path of the subtree (of a type: 'f', 'd', 'l', 'p'), or None."""
        want = {"f": stat.S_ISREG, "d": stat.S_ISDIR, "l": stat.S_ISLNK,
                "p": stat.S_ISFIFO}.get(kind)
        cands = [r for r, st in self.entries() if want is None or want(st.st_mode)]
        return self.rng.choice(cands) if cands else None

    def dirs(self):
        return [""] + [r for r, st in self.entries() if stat.S_ISDIR(st.st_mode)]

    def new_name(self, prefix="f"):
        """A name in the pool, in an existing directory: it may exist already."""
        parent = self.rng.choice(self.dirs())
        return os.path.join(parent, f"{prefix}{self.rng.randrange(6)}")

    def shadow_stat(self, rel):
        try:
            return os.lstat(self.s(rel))
        except OSError:
            return None

    # --- sizes and offsets that hit the interesting cases -------------------------
    def size(self):
        r = self.rng.random()
        if r < 0.1:
            return 0
        if r < 0.2:
            return 1
        if r < 0.35:
            return self.rng.choice([BLOCK, 64 * 1024, MiB, MiB - 1, MiB + 1])
        if r < 0.8:
            return self.rng.randrange(1, 12000)
        return self.rng.randrange(1, 600 * 1024)

    def offset(self, cur_size):
        r = self.rng.random()
        if r < 0.15:
            return 0
        if r < 0.3:
            return cur_size  # append
        if r < 0.45:
            return self.rng.choice([MiB, 2 * MiB, MiB - 1, MiB + 1, BLOCK, BLOCK - 1])
        if r < 0.55:
            return cur_size + self.rng.randrange(1, 512 * 1024)  # beyond EOF: a hole
        return self.rng.randrange(0, max(1, cur_size + 1))

    def aligned(self, limit):
        return self.rng.randrange(0, max(1, limit // BLOCK)) * BLOCK

    def fsize(self, pair):
        return os.fstat(pair.s).st_size

    # --- descriptor pairs ---------------------------------------------------------
    def close_pair(self, pair, why="close"):
        self.note(f"{why} fd {pair.path}")
        self.pairs.remove(pair)
        r_m = outcome(lambda: os.close(pair.m))
        r_s = outcome(lambda: os.close(pair.s))
        if r_m != r_s:
            raise Divergence(f"w{self.wid}: close of '{pair.path}': mount gave {r_m}, "
                             f"model {r_s}")

    def close_all(self):
        for p in list(self.pairs):
            self.close_pair(p)

    def fd_pick(self, want=None):
        cands = [p for p in self.pairs if want is None or want(p)]
        return self.rng.choice(cands) if cands else None

    def spare_last_link(self, rel):
        """Before a name goes: unless unlinkopen is on, close what holds its inode."""
        if "unlinkopen" in self.classes:
            return
        st = self.shadow_stat(rel)
        if st is None or not stat.S_ISREG(st.st_mode) or st.st_nlink > 1:
            return
        for p in [p for p in self.pairs if p.ino == st.st_ino]:
            self.close_pair(p, "close (last link goes)")

    def do_open(self, rel, flags, mode=0o644):
        if len(self.pairs) >= MAX_OPEN:
            self.close_pair(self.rng.choice(self.pairs))
        try:
            # Followed: a symlink to a FIFO blocks the open as well.
            st = os.stat(self.s(rel))
        except OSError:
            st = None
        if st is not None and stat.S_ISFIFO(st.st_mode):
            return  # a FIFO open would block
        what = f"open {rel} {flags_text(flags)} {mode:o}"
        r_m = outcome(lambda: os.open(self.m(rel), flags, mode))
        r_s = outcome(lambda: os.open(self.s(rel), flags, mode))
        self.note(f"{what} -> {r_s[1] if r_s[0] == 'err' else 'ok'}")
        if r_m[0] != r_s[0] or (r_m[0] == "err" and r_m != r_s):
            for r in (r_m, r_s):
                if r[0] == "ok":
                    os.close(r[1])
            raise Divergence(f"w{self.wid}: {what}: mount gave {r_m}, model {r_s}")
        if r_s[0] == "ok" and stat.S_ISDIR(os.fstat(r_s[1]).st_mode):
            # A read-only open of a directory succeeds: both sides must
            # agree it is one, and it is no file to read and write.
            m_dir = stat.S_ISDIR(os.fstat(r_m[1]).st_mode)
            os.close(r_m[1])
            os.close(r_s[1])
            if not m_dir:
                raise Divergence(f"w{self.wid}: {what}: the model opened a directory, the "
                                 f"mount something else")
            return
        if r_s[0] == "ok":
            self.pairs.append(Pair(r_m[1], r_s[1], flags, os.fstat(r_s[1]).st_ino, rel))

    # --- the operations ------------------------------------------------------------
    def op_open(self):
        rel = self.pick("f") or self.new_name()
        self.do_open(rel, self.rng.choice([os.O_RDONLY, os.O_WRONLY, os.O_RDWR]))

    def op_otrunc(self):
        rel = self.pick("f")
        if rel:
            self.do_open(rel, self.rng.choice([os.O_WRONLY, os.O_RDWR]) | os.O_TRUNC)

    def op_oappend(self):
        rel = self.pick("f") or self.new_name()
        flags = self.rng.choice([os.O_WRONLY, os.O_RDWR]) | os.O_APPEND
        if self.rng.random() < 0.3:
            flags |= os.O_CREAT
        self.do_open(rel, flags)

    def op_oexcl(self):
        rel = self.new_name() if self.rng.random() < 0.7 else (self.pick() or self.new_name())
        self.do_open(rel, os.O_RDWR | os.O_CREAT | os.O_EXCL,
                     self.rng.choice([0o600, 0o644, 0o640]))

    def op_odirect(self):
        rel = self.pick("f") or self.new_name()
        flags = self.rng.choice([os.O_RDONLY, os.O_WRONLY, os.O_RDWR]) | os.O_DIRECT
        if self.rng.random() < 0.3:
            flags |= os.O_CREAT
        self.do_open(rel, flags)

    def op_create(self):
        rel = self.new_name()
        flags = os.O_CREAT | self.rng.choice([os.O_WRONLY, os.O_RDWR])
        if "otrunc" in self.classes and self.rng.random() < 0.5:
            flags |= os.O_TRUNC
        self.do_open(rel, flags, self.rng.choice([0o600, 0o644, 0o755, 0o640]))
        if self.pairs and self.rng.random() < 0.5:
            self.close_pair(self.pairs[-1])

    def op_mknod(self):
        rel = self.new_name()
        mode = stat.S_IFREG | self.rng.choice([0o600, 0o644])
        self.both(f"mknod {rel} {mode:o}", lambda p: os.mknod(p(rel), mode))

    def op_fifo(self):
        rel = self.new_name("p")
        self.both(f"mkfifo {rel}", lambda p: os.mknod(p(rel), stat.S_IFIFO | 0o640))

    def op_mkdir(self):
        if self.rng.random() < 0.7:
            parent = self.rng.choice([d for d in self.dirs() if d.count("/") < 2])
            rel = os.path.join(parent, f"d{self.rng.randrange(3)}")
            self.both(f"mkdir {rel}", lambda p: os.mkdir(p(rel), 0o755))
        else:
            rel = self.pick("d")
            if rel:
                self.both(f"rmdir {rel}", lambda p: os.rmdir(p(rel)))

    def data(self, n):
        return self.rng.randbytes(n)

    def direct_buffer(self, n):
        """An anonymous mapping is page aligned, as O_DIRECT needs."""
        buf = mmap.mmap(-1, n)
        buf.write(self.data(n))
        return buf

    def op_write(self):
        pair = self.fd_pick(lambda p: p.writable)
        if not pair:
            return self.op_open()
        cur = self.fsize(pair)
        if pair.direct:
            n = self.rng.choice([1, 1, 2, 16, 256]) * BLOCK
            off = self.aligned(min(cur + MiB, MAX_FILE))
            buf = self.direct_buffer(n)
            self.both_fd(f"pwrite direct off={off} len={n}", pair,
                         lambda fd: os.pwrite(fd, buf, off))
            buf.close()
            return
        n = self.size()
        off = self.offset(cur)
        if off + n > MAX_FILE:
            off = max(0, MAX_FILE - n)
        data = self.data(n)
        if self.rng.random() < 0.3:
            # At the descriptor's own position: seek both sides there first.
            self.both_fd(f"lseek {off}", pair, lambda fd: os.lseek(fd, off, os.SEEK_SET))
            self.both_fd(f"write len={n} {digest(data)}", pair, lambda fd: os.write(fd, data))
        else:
            self.both_fd(f"pwrite off={off} len={n} {digest(data)}", pair,
                         lambda fd: os.pwrite(fd, data, off))

    def op_pwritev(self):
        pair = self.fd_pick(lambda p: p.writable)
        if not pair:
            return
        cur = self.fsize(pair)
        if pair.direct:
            bufs = [self.direct_buffer(self.rng.choice([1, 2, 8]) * BLOCK)
                    for _ in range(self.rng.randrange(1, 4))]
            off = self.aligned(min(cur + MiB, MAX_FILE))
        else:
            bufs = [self.data(self.size() % 70000) for _ in range(self.rng.randrange(1, 5))]
            off = min(self.offset(cur), MAX_FILE - 300000)
        total = sum(len(b) for b in bufs)
        self.both_fd(f"pwritev off={off} lens={[len(b) for b in bufs]}", pair,
                     lambda fd: os.pwritev(fd, bufs, off))
        for b in bufs:
            if isinstance(b, mmap.mmap):
                b.close()
        del total

    def op_read(self):
        pair = self.fd_pick(lambda p: p.readable)
        if not pair:
            return
        cur = self.fsize(pair)
        if pair.direct:
            n = self.rng.choice([1, 4, 64]) * BLOCK
            off = self.aligned(cur + BLOCK)
            bm, bs = mmap.mmap(-1, n), mmap.mmap(-1, n)

            def rd(fd):
                buf = bm if fd == pair.m else bs
                k = os.preadv(fd, [buf], off)
                return bytes(buf[:k])
            self.both_fd(f"pread direct off={off} len={n}", pair, rd)
            bm.close()
            bs.close()
        else:
            n = self.size() or 1
            off = self.offset(cur)
            self.both_fd(f"pread off={off} len={n}", pair, lambda fd: os.pread(fd, n, off))

    def op_mmap(self):
        rel = self.pick("f")
        if not rel:
            return
        st = self.shadow_stat(rel)
        if st.st_size == 0:
            return
        off = self.rng.randrange(0, st.st_size)
        n = min(self.size() or 1, st.st_size - off)
        data = self.data(n)
        start = off - off % mmap.ALLOCATIONGRANULARITY

        def mwrite(p):
            fd = os.open(p(rel), os.O_RDWR)
            try:
                mm = mmap.mmap(fd, off + n - start, mmap.MAP_SHARED,
                               mmap.PROT_READ | mmap.PROT_WRITE, offset=start)
                mm[off - start:off - start + n] = data
                mm.flush()
                mm.close()
            finally:
                os.close(fd)
        self.both(f"mmap-write {rel} off={off} len={n} {digest(data)}", mwrite)

    def trunc_size(self, cur):
        return self.rng.choice([0, 1, cur // 2, max(0, cur - 1), cur + 1, cur + 70000, MiB,
                                2 * MiB, MiB + 4096, self.rng.randrange(0, MAX_FILE)])

    def op_truncate(self):
        if self.rng.random() < 0.5:
            rel = self.pick("f")
            if rel:
                size = self.trunc_size(self.shadow_stat(rel).st_size)
                self.both(f"truncate {rel} {size}", lambda p: os.truncate(p(rel), size))
        else:
            pair = self.fd_pick(lambda p: p.writable)
            if pair:
                size = self.trunc_size(self.fsize(pair))
                self.both_fd(f"ftruncate {size}", pair, lambda fd: os.ftruncate(fd, size))

    def op_fallocate(self):
        pair = self.fd_pick(lambda p: p.writable)
        if not pair:
            return
        cur = self.fsize(pair)
        mode = self.rng.choice([0, FALLOC_FL_KEEP_SIZE,
                                FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                                FALLOC_FL_ZERO_RANGE, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE])
        if mode not in self.classes.get("fallocate-modes", set()):
            return
        off = self.offset(cur) if self.rng.random() < 0.6 else self.aligned(cur + MiB)
        n = self.rng.choice([1, 4096, 5000, 65536, MiB, self.rng.randrange(1, 300000)])
        if off + n > MAX_FILE:
            off = max(0, MAX_FILE - n)
        self.both_fd(f"fallocate mode={mode:#x} off={off} len={n}", pair,
                     lambda fd: c_fallocate(fd, mode, off, n))

    def op_fshift(self):
        pair = self.fd_pick(lambda p: p.writable)
        if not pair:
            return
        cur = self.fsize(pair)
        mode = self.rng.choice(sorted(self.classes.get("fshift-modes", set())) or [None])
        if mode is None:
            return
        off = self.aligned(cur)
        n = self.rng.choice([1, 2, 16, 256]) * BLOCK
        if mode == FALLOC_FL_INSERT_RANGE and cur + n > MAX_FILE:
            return
        self.both_fd(f"fallocate mode={mode:#x} off={off} len={n}", pair,
                     lambda fd: c_fallocate(fd, mode, off, n))

    def op_copyrange(self):
        # Not O_DIRECT descriptors: unaligned, the disk refuses (EINVAL)
        # where mirrorfs aligns for the caller, a difference by design.
        src = self.fd_pick(lambda p: p.readable and not p.direct)
        dst = self.fd_pick(lambda p: p.writable and not p.direct)
        if not src or not dst:
            return
        off_in = self.offset(self.fsize(src))
        off_out = self.offset(self.fsize(dst))
        n = self.size() or 1
        if off_out + n > MAX_FILE:
            off_out = max(0, MAX_FILE - n)

        def copy(which):
            fin, fout = getattr(src, which), getattr(dst, which)
            done = 0
            # A copy may be short; a client loops until done or the input ends.
            while done < n:
                k = os.copy_file_range(fin, fout, n - done, off_in + done, off_out + done)
                if k == 0:
                    break
                done += k
            return done
        what = f"copy_file_range {src.path}@{off_in} -> {dst.path}@{off_out} len={n}"
        r_m = outcome(lambda: copy("m"))
        r_s = outcome(lambda: copy("s"))
        self.note(f"{what} -> {r_s[1]}")
        if r_m != r_s:
            raise Divergence(f"w{self.wid}: {what}: mount gave {r_m}, model {r_s}")

    def op_rename(self, want=None, flags=0):
        old = self.pick(want)
        if not old:
            return
        if want != "d" and self.rng.random() < 0.5:
            new = self.pick() or self.new_name()  # very likely over an existing name
        else:
            new = self.new_name(self.rng.choice("fgd"))
        if flags != RENAME_EXCHANGE:
            self.spare_last_link(new)
        if flags:
            self.both(f"renameat2 {old} {new} flags={flags}",
                      lambda p: c_renameat2(p(old), p(new), flags))
        else:
            self.both(f"rename {old} {new}", lambda p: os.rename(p(old), p(new)))

    def op_renamedir(self):
        self.op_rename("d")

    def op_renameat2(self):
        self.op_rename(None, self.rng.choice([RENAME_EXCHANGE, RENAME_NOREPLACE]))

    def op_link(self):
        old = self.pick("f")
        if old:
            new = self.new_name("g")
            self.both(f"link {old} {new}", lambda p: os.link(p(old), p(new)))

    def op_unlink(self):
        rel = self.pick()
        if not rel:
            return
        self.spare_last_link(rel)
        self.both(f"unlink {rel}", lambda p: os.unlink(p(rel)))

    def op_unlinkopen(self):
        pair = self.fd_pick()
        if not pair:
            return
        # Whatever name the open file has now: find one in the shadow.
        names = [r for r, st in self.entries() if st.st_ino == pair.ino]
        if names:
            rel = self.rng.choice(names)
            self.both(f"unlink {rel} (open)", lambda p: os.unlink(p(rel)))

    def op_symlink(self):
        rel = self.new_name("l")
        target = self.rng.choice(["f0", "../f1", "d0/f2", "/nonexistent/x", "d1", "l0",
                                  "a" * self.rng.randrange(1, 200)])
        self.both(f"symlink {target} {rel}", lambda p: os.symlink(target, p(rel)))

    def op_chmod(self):
        rel = self.pick()
        if not rel or stat.S_ISLNK(self.shadow_stat(rel).st_mode):
            return
        mode = self.rng.choice([0o600, 0o644, 0o755, 0o000, 0o777, 0o640, 0o4755, 0o2755, 0o1777])
        self.both(f"chmod {rel} {mode:o}", lambda p: os.chmod(p(rel), mode))

    def op_chown(self):
        rel = self.pick()
        if rel is None:
            return
        uid = self.rng.choice([0, 1000, 1001, 65534, -1])
        gid = self.rng.choice([0, 100, 1001, 65534, -1])
        self.both(f"lchown {rel} {uid}:{gid}",
                  lambda p: os.chown(p(rel), uid, gid, follow_symlinks=False))

    def op_utime(self):
        rel = self.pick()
        if rel is None:
            return
        ns = (self.rng.randrange(10**18, 2 * 10**18), self.rng.randrange(10**18, 2 * 10**18))
        self.both(f"utime {rel} {ns}", lambda p: os.utime(p(rel), ns=ns, follow_symlinks=False))

    def op_xattr(self):
        rel = self.pick() or ""
        name = f"user.a{self.rng.randrange(4)}"
        if self.rng.random() < 0.7:
            value = self.data(self.rng.choice([0, 1, 17, 300]))
            self.both(f"setxattr {rel} {name} {len(value)}",
                      lambda p: os.setxattr(p(rel), name, value, follow_symlinks=False))
        else:
            self.both(f"removexattr {rel} {name}",
                      lambda p: os.removexattr(p(rel), name, follow_symlinks=False))

    def op_fsync(self):
        r = self.rng.random()
        if r < 0.3:
            rel = self.rng.choice(self.dirs())

            def dsync(p):
                fd = os.open(p(rel), os.O_RDONLY | os.O_DIRECTORY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            self.both(f"fsync dir {rel or '.'}", dsync)
            return
        pair = self.fd_pick()
        if pair:
            fn = os.fsync if r < 0.65 else os.fdatasync
            self.both_fd(fn.__name__, pair, fn)

    def step(self):
        name = self.rng.choices([n for n, _ in self.ops], [w for _, w in self.ops])[0]
        self.nops += 1
        getattr(self, "op_" + name)()

    def verify_open(self):
        """Every open file reads the same through the mount and the model."""
        for p in self.pairs:
            # A new read-only descriptor on the same open file: works for
            # write-only, O_DIRECT and unlinked files alike.
            dm = read_whole(f"/proc/self/fd/{p.m}")
            ds = read_whole(f"/proc/self/fd/{p.s}")
            if dm != ds:
                raise Divergence(f"w{self.wid}: open file '{p.path}' (shadow inode {p.ino}): "
                                 f"mount reads {len(dm)} bytes {digest(dm)}, model {len(ds)} "
                                 f"bytes {digest(ds)}; first difference at "
                                 f"{first_diff(dm, ds)}")
            self.note(f"verified fd {p.path}: {len(ds)} bytes")


def first_diff(a, b):
    for i in range(min(len(a), len(b))):
        if a[i] != b[i]:
            return i
    return min(len(a), len(b))


def flags_text(flags):
    acc = {os.O_RDONLY: "O_RDONLY", os.O_WRONLY: "O_WRONLY", os.O_RDWR: "O_RDWR"}[
        flags & os.O_ACCMODE]
    extra = [n for n in ("O_CREAT", "O_EXCL", "O_TRUNC", "O_APPEND", "O_DIRECT")
             if flags & getattr(os, n)]
    return "|".join([acc] + extra)


def worker_main(wid, args, classes, conn, counter):
    """The worker process: run epochs of operations on command."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    w = Worker(wid, args.seed, args.mnt, args.shadow, classes,
               os.path.join(args.logs, f"w{wid}.log"), counter)
    while True:
        cmd = conn.recv()
        try:
            if cmd[0] == "run":
                for _ in range(cmd[1]):
                    w.step()
                    counter.value += 1
                conn.send(("done", w.nops))
            elif cmd[0] == "verify":
                w.verify_open()
                conn.send(("done", w.nops))
            elif cmd[0] == "closeall":
                w.close_all()
                conn.send(("done", w.nops))
            elif cmd[0] == "quit":
                w.close_all()
                conn.send(("done", w.nops))
                return
        except Divergence as e:
            w.note(f"FAILED: {e}")
            conn.send(("fail", str(e)))
            return
        except Exception:  # a bug of the fuzzer itself, or an unexpected error
            tb = traceback.format_exc()
            w.note(f"FAILED: {tb}")
            conn.send(("fail", f"w{wid}: unexpected error:\n{tb}"))
            return


# --- snapshots and comparisons of trees ---------------------------------------------

def snapshot(root, subtrees, read_data=True):
    """Everything the model predicts about each object, keyed by path."""
    snap = {}
    inodes = {}
    for sub in subtrees:
        top = os.path.join(root, sub)
        if not os.path.lexists(top):
            continue
        paths = [top]
        for r, dirs, files in os.walk(top):
            paths += [os.path.join(r, n) for n in dirs + files]
        for p in paths:
            rel = os.path.relpath(p, root)
            st = os.lstat(p)
            e = {"type": stat.S_IFMT(st.st_mode), "mode": oct(stat.S_IMODE(st.st_mode)),
                 "uid": st.st_uid, "gid": st.st_gid, "nlink": st.st_nlink}
            if stat.S_ISREG(st.st_mode):
                e["size"] = st.st_size
                inodes.setdefault(st.st_ino, []).append(rel)
                e["_ino"] = st.st_ino
                if read_data:
                    e["data"] = digest(read_whole(p))
            elif stat.S_ISLNK(st.st_mode):
                e["target"] = os.readlink(p)
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                e["rdev"] = st.st_rdev
            if not stat.S_ISLNK(st.st_mode) and not stat.S_ISFIFO(st.st_mode):
                e["xattrs"] = {a: digest(os.getxattr(p, a, follow_symlinks=False))
                               for a in sorted(os.listxattr(p, follow_symlinks=False))
                               if a.startswith("user.")}
            snap[rel] = e
    for rel, e in snap.items():
        if "_ino" in e:
            e["names"] = sorted(inodes[e.pop("_ino")])
    return snap


def meta_snapshot(root, subtrees):
    """lstat of everything, nothing read: what a switch must preserve."""
    snap = {}
    for sub in subtrees:
        top = os.path.join(root, sub)
        if not os.path.lexists(top):
            continue
        paths = [top]
        for r, dirs, files in os.walk(top):
            paths += [os.path.join(r, n) for n in dirs + files]
        for p in paths:
            st = os.lstat(p)
            snap[os.path.relpath(p, root)] = st
    return snap


def diff_snapshots(a, b, label_a, label_b):
    """Lines saying what differs between two snapshots."""
    out = []
    for rel in sorted(set(a) | set(b)):
        if rel not in a:
            out.append(f"{rel}: only in {label_b}: {b[rel]}")
        elif rel not in b:
            out.append(f"{rel}: only in {label_a}: {a[rel]}")
        else:
            for k in sorted(set(a[rel]) | set(b[rel])):
                if a[rel].get(k) != b[rel].get(k):
                    out.append(f"{rel}: {k}: {label_a} {a[rel].get(k)!r}, "
                               f"{label_b} {b[rel].get(k)!r}")
    return out


def raw_vs_mount(raw, mnt, subtrees, target=None):
    """The served directory read directly against the mount: the same inodes.

    With a migration running, a difference also shows the target's value:
    the mount must never serve the target's attributes before the switch.
    """
    out = []
    # ext4 counts delayed allocations in st_blocks and adds the extent tree's
    # blocks at writeback: write everything back first, so that the count
    # holds still while both sides are read.
    os.sync()
    ra, ma = meta_snapshot(raw, subtrees), meta_snapshot(mnt, subtrees)
    for rel in sorted(set(ra) | set(ma)):
        if rel not in ra or rel not in ma:
            out.append(f"{rel}: only in {'the mount' if rel in ma else 'the raw directory'}")
            continue
        r, m = ra[rel], ma[rel]
        for k in ("st_mode", "st_uid", "st_gid", "st_nlink", "st_size", "st_mtime_ns",
                  "st_ctime_ns", "st_blocks", "st_rdev"):
            if getattr(r, k) != getattr(m, k):
                t = ""
                if target:
                    try:
                        t = f", target {getattr(os.lstat(os.path.join(target, rel)), k)}"
                    except OSError as e:
                        t = f", target: {errname(e.errno)}"
                out.append(f"{rel}: {k}: raw {getattr(r, k)}, mount {getattr(m, k)}{t}")
    if out:
        # Say whether the raw directory was still changing (nobody writes).
        again = meta_snapshot(raw, subtrees)
        moved = [f"{rel}: the raw directory changed while nothing was written: ctime "
                 f"{ra[rel].st_ctime_ns} -> {again[rel].st_ctime_ns}, mtime "
                 f"{ra[rel].st_mtime_ns} -> {again[rel].st_mtime_ns}"
                 for rel in sorted(set(ra) & set(again))
                 if (ra[rel].st_ctime_ns, ra[rel].st_mtime_ns) !=
                 (again[rel].st_ctime_ns, again[rel].st_mtime_ns)]
        return out + moved
    return diff_snapshots(snapshot(raw, subtrees), snapshot(mnt, subtrees), "raw", "mount")


def switch_diff(before, after, classes):
    """What a switch must not change (writers quiesced, nothing read between)."""
    out = []
    for rel in sorted(set(before) | set(after)):
        if rel not in before or rel not in after:
            out.append(f"{rel}: {'appeared' if rel in after else 'vanished'} at the switch")
            continue
        a, b = before[rel], after[rel]
        keys = ["st_mode", "st_uid", "st_gid", "st_nlink", "st_rdev"]
        if not stat.S_ISDIR(a.st_mode):
            # Directory sizes depend on their history; directory times are
            # those of the copy (doc/design.md, known issues).
            keys.append("st_size")
            if stat.S_ISREG(a.st_mode) or "chk-special-times" in classes:
                keys += ["st_mtime_ns", "st_atime_ns"]
        for k in keys:
            if getattr(a, k) != getattr(b, k):
                out.append(f"{rel}: {k}: before the switch {getattr(a, k)}, "
                           f"after {getattr(b, k)}")
        if stat.S_ISREG(a.st_mode) and b.st_blocks > a.st_blocks and "chk-blocks" in classes:
            out.append(f"{rel}: st_blocks: before the switch {a.st_blocks}, after "
                       f"{b.st_blocks} (size {a.st_size}): the target takes more space")
    return out


# --- the controller ---------------------------------------------------------------

class Failure(Exception):
    pass


class Controller:
    def __init__(self, args, classes):
        self.args = args
        self.classes = classes
        self.rng = random.Random(f"{args.seed}/controller")
        self.work = args.workdir
        self.src = os.path.join(self.work, "src")
        self.mnt = args.mnt
        self.shadow = args.shadow
        self.env = dict(os.environ, MIRRORFS_RUNTIME_DIR=os.path.join(self.work, "run"))
        self.daemon = None
        self.daemon_logs = []
        self.ntargets = 0
        self.served_before = []  # directories served before, newest last
        self.migration = None  # dict: target, switch, started_epoch
        self.log = open(os.path.join(args.logs, "ctl.log"), "a", buffering=1)
        self.subtrees = [f"w{i}" for i in range(args.workers)]
        self.stats = {"switches": 0, "quiesced_switches": 0, "cancels": 0, "remounts": 0,
                      "starts": 0, "back": 0, "checks": 0}

    def note(self, text):
        self.log.write(f"{time.monotonic():.6f} ctl {text}\n")

    # --- the daemon ---
    def mounted(self):
        with open("/proc/self/mounts") as f:
            return any(line.split()[1] == self.mnt and line.split()[2] == "fuse.mirrorfs"
                       for line in f)

    def mount(self):
        logf = os.path.join(self.args.logs, f"daemon.{len(self.daemon_logs)}.log")
        self.daemon_logs.append(logf)
        cmd = [self.args.mirrorfs, "-f", "-o", "timeout=0", self.src, self.mnt]
        self.note("mount: " + shlex.join(cmd))
        with open(logf, "w") as out:
            self.daemon = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out,
                                           stderr=subprocess.STDOUT, env=self.env)
        deadline = time.monotonic() + 60
        while not self.mounted():
            if self.daemon.poll() is not None:
                raise Failure(f"mirrorfs exited {self.daemon.returncode} before mounting:\n"
                              + open(logf).read())
            if time.monotonic() > deadline:
                raise Failure("mirrorfs did not mount in 60 s")
            time.sleep(0.02)

    def unmount(self):
        self.note("unmount")
        r = subprocess.run(["fusermount3", "-u", self.mnt], capture_output=True, text=True,
                           timeout=60)
        if r.returncode != 0:
            raise Failure(f"fusermount3 -u failed: {r.stderr.strip()}")
        try:
            rc = self.daemon.wait(60)
        except subprocess.TimeoutExpired:
            raise Failure("mirrorfs still running 60 s after the unmount")
        self.daemon = None
        if rc != 0:
            raise Failure(f"mirrorfs exited {rc} after the unmount")
        self.check_daemon_logs()

    def check_daemon_logs(self):
        for logf in self.daemon_logs:
            text = open(logf, errors="replace").read()
            for pat in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                        "WARNING: ThreadSanitizer"):
                if pat in text:
                    raise Failure(f"sanitizer report in {logf}:\n{text[-6000:]}")

    def daemon_alive(self):
        if self.daemon is None or self.daemon.poll() is not None:
            raise Failure("mirrorfs died: exit " +
                          str(self.daemon.returncode if self.daemon else "?") + "\n" +
                          open(self.daemon_logs[-1], errors="replace").read()[-4000:])

    # --- the CLIs ---
    def ctl(self, *argv, must=False):
        cmd = [self.args.ctl, self.mnt] + [str(a) for a in argv]
        r = subprocess.run(cmd, capture_output=True, text=True, env=self.env, timeout=30)
        self.note(f"mirrorfsctl {' '.join(map(str, argv))} -> {r.returncode} "
                  f"{(r.stdout + r.stderr).strip()}")
        if must and r.returncode != 0:
            raise Failure(f"mirrorfsctl {' '.join(map(str, argv))} failed: {r.stderr.strip()}")
        return r.returncode == 0

    def status(self):
        r = subprocess.run([self.args.status, "--json", self.mnt], capture_output=True,
                           text=True, env=self.env, timeout=30)
        if r.returncode != 0:
            self.daemon_alive()
            raise Failure(f"mirrorfs-status --json failed: {r.stderr.strip()}")
        return json.loads(r.stdout)

    def wait_state(self, state, timeout=120):
        r = subprocess.run([self.args.status, "--wait", state, "--timeout", str(timeout),
                            self.mnt], capture_output=True, text=True, env=self.env,
                           timeout=timeout + 30)
        self.note(f"wait {state} -> {r.returncode} {r.stderr.strip()}")
        return r.returncode == 0

    # --- migrations ---
    def active(self):
        return self.migration is not None

    def start(self, epoch):
        st = self.status()
        back = bool("ctl-back" in self.classes and self.served_before) and self.rng.random() < 0.35
        chunk = self.rng.choice(["4K", "16K", "64K", "256K", "1M"])
        speed = self.rng.choice(["0", "2M", "8M", "32M"])
        manual = self.rng.random() < 0.6
        delsrc = "ctl-delsrc" in self.classes and self.rng.random() < 0.2
        if back:
            target = self.served_before[-1]
        else:
            self.ntargets += 1
            target = os.path.join(self.work, f"t{self.ntargets}")
            os.mkdir(target)
        argv = ["start", "--chunk", chunk, "--speed", speed,
                "--switch", "manual" if manual else "auto"]
        if back:
            argv.append("--overwrite")
        if delsrc:
            argv.append("--delete-source")
        if self.ctl(*argv, target, must=True):
            self.migration = {"target": target, "source": st["served"], "manual": manual,
                              "epoch": epoch, "back": back}
            self.stats["starts"] += 1
            self.stats["back"] += back

    def after_end(self, state):
        """The migration ended (switched, cancelled): keep track of directories."""
        m = self.migration
        self.migration = None
        if state == "switched":
            self.stats["switches"] += 1
            if m["source"] in self.served_before:
                self.served_before.remove(m["source"])
            self.served_before.append(m["source"])
            if m["target"] in self.served_before:
                self.served_before.remove(m["target"])

    def live_action(self, epoch):
        """One action while the workers run, drawn from the seed."""
        self.daemon_alive()
        if not self.active():
            if self.rng.random() < 0.8:
                self.start(epoch)
            return
        r = self.rng.random()
        if r < 0.2 and "ctl-pause" in self.classes:
            self.ctl("pause")
        elif r < 0.4 and "ctl-pause" in self.classes:
            self.ctl("resume")
        elif r < 0.55 and "ctl-speed" in self.classes:
            self.ctl("speed", self.rng.choice(["0", "1M", "4M", "64M"]))
        elif r < 0.65 and "ctl-cancel" in self.classes:
            if self.ctl("cancel"):
                self.stats["cancels"] += 1
        elif r < 0.85 and "ctl-liveswitch" in self.classes and self.migration["manual"]:
            self.ctl("switch")
        self.reap_migration()

    def reap_migration(self):
        """Notice a migration that ended by itself (auto switch, cancel, failure)."""
        if not self.active():
            return
        st = self.status()
        if st["state"] == "failed":
            raise Failure(f"the migration to {self.migration['target']} failed: {st['error']}")
        if st["state"] in ("switched", "cancelled"):
            left = sorted(os.listdir(self.migration["target"]))
            if st["state"] == "cancelled" and not self.migration["back"] and left:
                raise Failure(f"cancelled, and the fresh target {self.migration['target']} "
                              f"still holds {left}")
            self.note(f"migration ended: {st['state']}, served {st['served']}")
            self.after_end(st["state"])

    def finish(self, epoch, workers):
        """At the barrier: maybe take the migration to its switch, quiesced."""
        if not self.active():
            return
        st = self.status()
        # Take it to the end now and then, and always after two epochs.
        if epoch - self.migration["epoch"] < 2 and self.rng.random() < 0.5:
            return
        if st["state"] == "paused":
            self.ctl("resume")
        self.ctl("speed", "0")
        if self.migration["manual"]:
            if not self.wait_state("mirrored"):
                self.reap_migration()
                if self.active():
                    raise Failure(f"not mirrored in 120 s: {self.status()}")
                return
            if self.status()["state"] != "mirrored":
                return self.reap_migration()
            os.sync()  # st_blocks settles at writeback (see raw_vs_mount)
            before = meta_snapshot(self.mnt, self.subtrees)
            self.ctl("switch", must=True)
            if not self.wait_state("switched"):
                raise Failure(f"the switch did not complete: {self.status()}")
            os.sync()
            after = meta_snapshot(self.mnt, self.subtrees)
            self.reap_migration()
            self.stats["quiesced_switches"] += 1
            diffs = switch_diff(before, after, self.classes)
            if diffs:
                raise Failure("the switch changed what the mount serves:\n  " +
                              "\n  ".join(diffs[:40]))
        else:
            if not self.wait_state("switched"):
                self.reap_migration()
                if self.active():
                    raise Failure(f"not switched in 120 s: {self.status()}")
            self.reap_migration()

    def check(self, why, workers):
        """The model check at a barrier.

        The workers are quiesced, but a migration with --switch auto may
        switch (and --delete-source empty the old directory) while the trees
        are walked: the mount then serves one directory at the start of the
        walk and another at its end.  A check that saw the served directory
        or the state change is made again rather than trusted.
        """
        self.daemon_alive()
        self.stats["checks"] += 1
        for attempt in range(5):
            self.reap_migration()
            st = self.status()
            try:
                problem = self.check_once(why, st)
            except OSError as e:  # an object vanished under the walk
                problem = f"check ({why}): {e}"
            st2 = self.status()
            if (st2["state"], st2["served"]) == (st["state"], st["served"]):
                break
            self.note(f"check ({why}): the migration moved on during the check "
                      f"({st['state']} -> {st2['state']}): again")
        if problem:
            raise Failure(problem)
        workers.command("verify")

    def check_once(self, why, st):
        served = st["served"]
        self.note(f"check ({why}): state {st['state']}, served {served}")
        diffs = diff_snapshots(snapshot(self.shadow, self.subtrees),
                               snapshot(self.mnt, self.subtrees), "model", "mount")
        if diffs:
            return (f"check ({why}): the mount differs from the model:\n  " +
                    "\n  ".join(diffs[:40]) + "\n" + self.inode_hint(diffs, st))
        other = st["target"] if st["target"] and st["target"] != served else None
        diffs = raw_vs_mount(served, self.mnt, self.subtrees, other)
        if diffs:
            return (f"check ({why}): the served directory {served} differs from the "
                    f"mount:\n  " + "\n  ".join(diffs[:40]))
        return None

    def inode_hint(self, diffs, st):
        """Which objects the differing paths are, through the mount and directly."""
        out = []
        for rel in sorted({d.split(":", 1)[0] for d in diffs})[:10]:
            line = f"  {rel}: st_ino"
            for label, root in (("mount", self.mnt), ("served", st["served"]),
                                ("target", st["target"])):
                if root:
                    try:
                        line += f" {label} {os.lstat(os.path.join(root, rel)).st_ino}"
                    except OSError as e:
                        line += f" {label} {errname(e.errno)}"
            out.append(line)
        return "\n".join(out)

    def remount(self, workers):
        """The same command line again: the journal must lead to the served tree."""
        if self.active():
            return
        before = self.status()["served"]
        workers.command("closeall")
        self.unmount()
        self.mount()
        after = self.status()["served"]
        self.stats["remounts"] += 1
        if os.path.realpath(after) != os.path.realpath(before):
            raise Failure(f"after a remount the mount serves {after}, before it served "
                          f"{before} (the journals lead elsewhere)")
        self.check("after a remount", workers)


class Workers:
    """The worker processes and the barrier protocol."""

    def __init__(self, args, classes):
        ctx = multiprocessing.get_context("fork")
        self.procs, self.conns, self.counters = [], [], []
        for wid in range(args.workers):
            parent, child = ctx.Pipe()
            counter = ctx.Value("q", 0, lock=False)
            p = ctx.Process(target=worker_main, args=(wid, args, classes, child, counter),
                            daemon=True)
            p.start()
            child.close()
            self.procs.append(p)
            self.conns.append(parent)
            self.counters.append(counter)
        self.timeout = args.hang_timeout

    def total(self):
        return sum(c.value for c in self.counters)

    def send(self, *cmd):
        for c in self.conns:
            c.send(cmd)

    def collect(self, on_tick=None):
        """Wait for every worker's answer; call on_tick meanwhile."""
        pending = set(range(len(self.conns)))
        deadline = time.monotonic() + self.timeout
        while pending:
            ready = multiprocessing.connection.wait([self.conns[i] for i in pending], 0.005)
            for c in ready:
                i = self.conns.index(c)
                try:
                    msg = c.recv()
                except EOFError:
                    raise Failure(f"worker w{i} died (exit {self.procs[i].exitcode})")
                pending.discard(i)
                if msg[0] == "fail":
                    raise Failure(msg[1])
            if on_tick:
                on_tick()
            if pending and time.monotonic() > deadline:
                raise Failure(f"workers {sorted(pending)} did not reach the barrier in "
                              f"{self.timeout} s: a hang in the mount?")

    def command(self, *cmd):
        self.send(*cmd)
        self.collect()

    def kill(self):
        for p in self.procs:
            if p.is_alive():
                p.kill()
        for p in self.procs:
            p.join(5)


# --- setup, probes, the run -------------------------------------------------------

def probe_fallocate(mnt, shadow):
    """The fallocate modes both the mount and the shadow's file system take."""
    ok = set()
    for mode in (0, FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                 FALLOC_FL_ZERO_RANGE, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE,
                 FALLOC_FL_COLLAPSE_RANGE, FALLOC_FL_INSERT_RANGE):
        good = True
        for d in (mnt, shadow):
            p = os.path.join(d, ".probe")
            fd = os.open(p, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.pwrite(fd, b"x" * 4 * BLOCK, 0)
                c_fallocate(fd, mode, BLOCK, BLOCK)
            except OSError:
                good = False
            finally:
                os.close(fd)
                os.unlink(p)
        if good:
            ok.add(mode)
    return ok


def merged_log(logs):
    lines = []
    for name in sorted(os.listdir(logs)):
        if name.endswith(".log") and not name.startswith("daemon"):
            with open(os.path.join(logs, name), errors="replace") as f:
                lines += f.readlines()

    def key(line):
        try:
            return float(line.split(" ", 1)[0])
        except ValueError:
            return 0.0
    lines.sort(key=key)
    return lines


def command_line(args):
    """A command line that repeats this run."""
    argv = [sys.argv[0], "--seed", str(args.seed), "--workers", str(args.workers),
            "--ops-per-epoch", str(args.ops_per_epoch), "--epochs", str(args.epochs_run)]
    if args.disable:
        argv += ["--disable", args.disable]
    if args.enable:
        argv += ["--enable", args.enable]
    argv += ["--mirrorfs", args.mirrorfs, "--ctl", args.ctl, "--status", args.status]
    return shlex.join(argv)


def run(args, classes):
    ctl = Controller(args, classes)
    workers = None
    t0 = time.monotonic()
    try:
        os.makedirs(ctl.src)
        os.makedirs(args.mnt)
        os.makedirs(args.shadow)
        os.makedirs(os.path.join(args.workdir, "run"), mode=0o700)
        ctl.mount()
        modes = probe_fallocate(args.mnt, args.shadow)
        classes["fallocate-modes"] = {m for m in modes
                                      if m not in (FALLOC_FL_COLLAPSE_RANGE,
                                                   FALLOC_FL_INSERT_RANGE)}
        classes["fshift-modes"] = modes & {FALLOC_FL_COLLAPSE_RANGE, FALLOC_FL_INSERT_RANGE}
        ctl.note(f"fallocate modes through the mount: {sorted(modes)}")
        if "fshift" in classes and not classes["fshift-modes"]:
            print("opfuzz: collapse/insert-range not supported through the mount: "
                  "fshift does nothing", flush=True)
        for sub in ctl.subtrees:
            os.mkdir(os.path.join(args.mnt, sub))
            os.mkdir(os.path.join(args.shadow, sub))
        workers = Workers(args, classes)
        epoch = 0
        while epoch < args.epochs and time.monotonic() - t0 < args.duration:
            epoch += 1
            args.epochs_run = epoch
            ctl.note(f"epoch {epoch}")
            base = workers.total()
            span = args.ops_per_epoch * args.workers
            # Controller actions at points of the workers' progress.
            plan = sorted(base + ctl.rng.randrange(span) for _ in range(ctl.rng.randrange(0, 4)))

            def tick():
                while plan and workers.total() >= plan[0]:
                    plan.pop(0)
                    ctl.live_action(epoch)
            workers.send("run", args.ops_per_epoch)
            workers.collect(tick)
            while plan:  # points the last operations did not reach
                plan.pop(0)
                ctl.live_action(epoch)
            ctl.check(f"barrier {epoch}", workers)
            switches = ctl.stats["switches"]
            ctl.finish(epoch, workers)
            if ctl.stats["switches"] != switches:
                ctl.check(f"after the switch of epoch {epoch}", workers)
            if "ctl-remount" in classes and ctl.rng.random() < 0.1:
                ctl.remount(workers)
        # The end: take a migration still running to its end, check again.
        if ctl.active():
            ctl.migration["epoch"] = -10
            ctl.finish(epoch + 1, workers)
        ctl.check("at the end", workers)
        workers.command("quit")
        ops = workers.total()
        workers.kill()
        workers = None
        ctl.unmount()
        s = ctl.stats
        print(f"opfuzz: seed {args.seed}: passed: {epoch} epochs, {ops} operations, "
              f"{s['starts']} migrations ({s['back']} back), {s['switches']} switches "
              f"({s['quiesced_switches']} quiesced), {s['cancels']} cancels, "
              f"{s['remounts']} remounts, {s['checks']} checks, "
              f"{time.monotonic() - t0:.0f} s", flush=True)
        return 0
    except Failure as e:
        report(args, ctl, str(e))
        return 1
    except Exception:  # the fuzzer's own bug: still say how to repeat it
        report(args, ctl, "unexpected error in the controller:\n" + traceback.format_exc())
        return 1
    finally:
        if workers:
            workers.kill()
        teardown(ctl)


def report(args, ctl, what):
    lines = merged_log(args.logs)
    path = os.path.join(args.log_dir, f"opfuzz-{args.seed}-{os.getpid()}.log")
    with open(path, "w") as f:
        f.write("# opfuzz options: " + json.dumps(dict(args.saved, epochs=args.epochs_run))
                + "\n")
        f.write(f"# failure: {what}\n")
        f.writelines(lines)
        for logf in ctl.daemon_logs:
            f.write(f"# daemon log {logf}:\n")
            f.write(open(logf, errors="replace").read())
    tail = "".join(lines[-args.tail:])
    print(f"opfuzz: FAIL: seed {args.seed}, epoch {args.epochs_run}\n{what}\n"
          f"--- the last {args.tail} operations ---\n{tail}"
          f"--- full log: {path}\n"
          f"--- repeat with: {command_line(args)}\n"
          f"---          or: {sys.argv[0]} --replay {path}", flush=True)


def teardown(ctl):
    """Unmount whatever state the daemon is in, and stop it."""
    if ctl.daemon is not None:
        for cmd in (["fusermount3", "-u", ctl.mnt], ["fusermount3", "-uz", ctl.mnt],
                    ["umount", "-l", ctl.mnt]):
            if not ctl.mounted():
                break
            subprocess.run(cmd, capture_output=True)
        try:
            ctl.daemon.wait(20)
        except subprocess.TimeoutExpired:
            ctl.daemon.kill()
            ctl.daemon.wait()
        try:
            ctl.check_daemon_logs()
        except Failure as e:
            print(f"opfuzz: {e}", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int)
    ap.add_argument("--epochs", type=int, default=1000000)
    ap.add_argument("--duration", type=float, default=60, help="seconds (default 60)")
    ap.add_argument("--workers", type=int, default=3)
    ap.add_argument("--ops-per-epoch", type=int, default=150, help="per worker")
    ap.add_argument("--disable", default="", help="comma-separated classes to turn off")
    ap.add_argument("--enable", default="", help="only these classes (default: all)")
    ap.add_argument("--mirrorfs", default=os.environ.get("MIRRORFS"))
    ap.add_argument("--ctl", default=os.environ.get("MIRRORFSCTL"))
    ap.add_argument("--status", default=os.environ.get("MIRRORFS_STATUS"))
    ap.add_argument("--workdir", help="an empty directory to work in (default: a new one "
                    "under $TMPDIR)")
    ap.add_argument("--log-dir", default=".", help="where a failure's log goes")
    ap.add_argument("--tail", type=int, default=40, help="operations shown on failure")
    ap.add_argument("--hang-timeout", type=float, default=120)
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--replay", metavar="LOGFILE", help="repeat the run a log records")
    ap.add_argument("--list-classes", action="store_true")
    args = ap.parse_args()

    if args.list_classes:
        for k, v in ALL_CLASSES.items():
            print(f"{k:16} {v}")
        return 0
    if args.replay:
        with open(args.replay) as f:
            first = f.readline()
        if not first.startswith("# opfuzz options: "):
            ap.error(f"{args.replay} is not an opfuzz log")
        saved = json.loads(first[len("# opfuzz options: "):])
        for k in ("seed", "epochs", "workers", "ops_per_epoch", "disable", "enable"):
            setattr(args, k, saved[k])
        args.duration = 1e9
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1, 10**9)
    for k in ("mirrorfs", "ctl", "status"):
        if not getattr(args, k) or not os.access(getattr(args, k), os.X_OK):
            ap.error(f"--{k}: no such program (or set MIRRORFS, MIRRORFSCTL, MIRRORFS_STATUS)")
        setattr(args, k, os.path.abspath(getattr(args, k)))
    if os.geteuid() != 0 or not os.path.exists("/dev/fuse"):
        print("opfuzz: SKIP: needs root and /dev/fuse", flush=True)
        return SKIP

    names = set(ALL_CLASSES)
    if args.enable:
        names = set(args.enable.split(","))
    names -= set(filter(None, args.disable.split(",")))
    unknown = names - set(ALL_CLASSES) | set(filter(None, args.disable.split(","))) - \
        set(ALL_CLASSES)
    if unknown:
        ap.error(f"unknown classes: {', '.join(sorted(unknown))} (see --list-classes)")
    classes = {n: True for n in names}
    args.epochs_run = 0

    made = args.workdir is None
    if made:
        import tempfile
        args.workdir = tempfile.mkdtemp(prefix="opfuzz.", dir=os.environ.get("TMPDIR", "/tmp"))
    args.workdir = os.path.realpath(args.workdir)
    args.log_dir = os.path.realpath(args.log_dir)
    args.mnt = os.path.join(args.workdir, "mnt")
    args.shadow = os.path.join(args.workdir, "shadow")
    args.logs = os.path.join(args.workdir, "logs")
    os.makedirs(args.logs)
    args.saved = {k: getattr(args, k) for k in ("seed", "epochs", "workers", "ops_per_epoch",
                                                 "disable", "enable")}
    print(f"opfuzz: seed {args.seed}, {args.workers} workers, {args.ops_per_epoch} "
          f"operations each per epoch, classes off: "
          f"{','.join(sorted(set(ALL_CLASSES) - names)) or 'none'}", flush=True)
    # SIGTERM (meson's timeout, the test's trap) becomes an exception, so
    # that the finally clauses unmount.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    rc = run(args, classes)
    if not args.keep:
        if not subprocess.run(["findmnt", "-R", args.workdir], capture_output=True).stdout:
            subprocess.run(["rm", "-rf", "--one-file-system", args.workdir])
    return rc


if __name__ == "__main__":
    sys.exit(main())
