#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""The mirrorfs benchmark harness.

One command runs every scenario of bench/README.md several times, side by
side with its baselines (native I/O, libfuse's example passthrough_ll,
qemu-storage-daemon's FUSE export and its blockdev-mirror), and writes a
Markdown and a JSON table of medians, ranges and ratios, with the machine
they were taken on.  Ratios always compare figures taken in the same run.

    bench/run.py                  # everything, bench/results.{md,json}
    bench/run.py --quick          # the CI smoke version: small and short
    bench/run.py --only stun,idle --runs 5

Needs root (FUSE mounts, drop_caches), fio, qemu-storage-daemon and
libfuse3-dev's examples: scripts/setup-deps.sh installs them all.
"""

import argparse
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback

from mfsbench import control, fio
from mfsbench.daemon import Daemon, Mirrorfs, forget_migration
from mfsbench.qsd import Qmp, QsdDaemon
from mfsbench.report import machine, med, num, ratio, rng, verdict
from mfsbench.util import (GiB, MiB, ROOT, allocated, clear_dir, drop_caches, fill_file,
                           fmt_size, log, output, parse_size, percentile, rotated, run,
                           settle_disk, summary)

PASSTHROUGH_LL_SRC = "/usr/share/doc/libfuse3-dev/examples/passthrough_ll.c"


# --- the scenarios -------------------------------------------------------------

LOAD_MFS = "mirrorfs"
LOAD_MFS_FLAT_OUT = "mirrorfs guest_share=0"
LOAD_QSD = "qsd write-blocking mirror (NBD)"

PASSTHROUGH_JOBS = [
    # name, rw, bs, direct, iodepth, threads
    ("4k randread direct qd1", "randread", "4k", True, 1, 1),
    ("4k randwrite direct qd1", "randwrite", "4k", True, 1, 1),
    ("4k randread direct qd16", "randread", "4k", True, 16, 1),
    ("4k randwrite direct qd16", "randwrite", "4k", True, 16, 1),
    # Synchronous writes from 4 threads on one file, as QEMU's default aio=threads.
    ("4k randwrite direct 4 threads", "randwrite", "4k", True, 1, 4),
    ("4k randread buffered", "randread", "4k", False, 1, 1),
    ("4k randwrite buffered", "randwrite", "4k", False, 1, 1),
    ("1M read direct qd4", "read", "1M", True, 4, 1),
    ("1M write direct qd4", "write", "1M", True, 4, 1),
]


class Bench:
    def __init__(self, args):
        self.a = args
        self.mfs = Mirrorfs(args.build)
        self.work = args.work
        self.logdir = os.path.join(self.work, "logs")
        os.makedirs(self.logdir, exist_ok=True)
        self.results = {}

    def dir(self, *parts):
        path = os.path.join(self.work, *parts)
        os.makedirs(path, exist_ok=True)
        return path

    def build_passthrough_ll(self):
        exe = os.path.join(self.work, "passthrough_ll")
        if not os.path.exists(exe):
            cflags = output("pkg-config", "--cflags", "--libs", "fuse3").split()
            run("cc", "-O2", "-o", exe, PASSTHROUGH_LL_SRC, *cflags)
        return exe

    def migrate_once(self, src, mnt, dst, poll=0.01, **start):
        """Mount @src, migrate it to @dst, unmount: (seconds, final status)."""
        d = self.mfs.mount(src, mnt, self.logdir)
        try:
            return control.migrate(d, dst, poll=poll, **start)
        finally:
            d.stop()
            forget_migration(src)

    # 1. passthrough cost
    def passthrough(self):
        a = self.a
        src = self.dir("pt", "src")
        img = os.path.join(src, "disk.img")
        log(f"passthrough: filling a {fmt_size(a.pt_size)} image")
        fill_file(img, a.pt_size)
        ptll = self.build_passthrough_ll()
        mnt = {k: self.dir("pt", k) for k in ("mirrorfs", "passthrough_ll")}
        qsd_file = os.path.join(self.work, "pt", "qsd-export")
        systems = {
            "native": lambda: (None, img),
            "mirrorfs": lambda: (self.mfs.mount(src, mnt["mirrorfs"], self.logdir),
                                 os.path.join(mnt["mirrorfs"], "disk.img")),
            "mirrorfs -o noxattr": lambda: (self.mfs.mount(src, mnt["mirrorfs"], self.logdir,
                                                           "noxattr"),
                                            os.path.join(mnt["mirrorfs"], "disk.img")),
            "passthrough_ll": lambda: (Daemon("passthrough_ll",
                                              [ptll, "-f", "-o", f"source={src}",
                                               mnt["passthrough_ll"]],
                                              mnt["passthrough_ll"], self.logdir).start(),
                                       os.path.join(mnt["passthrough_ll"], "disk.img")),
            "qsd-fuse": lambda: (QsdDaemon(img, qsd_file, os.path.join(self.work, "pt.qmp"),
                                           self.logdir).start(), qsd_file),
        }
        raw = {job[0]: {s: [] for s in systems} for job in PASSTHROUGH_JOBS}
        for r in range(a.runs):
            for sysname, up in systems.items():
                daemon, path = up()
                try:
                    for name, rw, bs, direct, qd, threads in PASSTHROUGH_JOBS:
                        log(f"passthrough run {r + 1}/{a.runs}: {sysname}: {name}")
                        drop_caches()
                        cpu0 = daemon.cpu_seconds() if daemon else None
                        res = fio.run(self.work, path, rw, bs, direct, qd, a.pt_size,
                                      a.runtime, threads)
                        if daemon and "bytes" in res:
                            res["cpu_s_per_gib"] = ((daemon.cpu_seconds() - cpu0) /
                                                    (res["bytes"] / GiB)) if res["bytes"] else None
                        raw[name][sysname].append(res)
                finally:
                    if daemon:
                        daemon.stop()
        out = {}
        for name in raw:
            out[name] = {}
            for sysname, runs in raw[name].items():
                ok = [x for x in runs if "error" not in x]
                out[name][sysname] = {
                    k: summary([x.get(k) for x in ok])
                    for k in ("iops", "bw_mib", "p99_us", "cpu_s_per_gib")}
                if len(ok) < len(runs):
                    out[name][sysname]["error"] = next(x["error"] for x in runs if "error" in x)
        self.results["passthrough"] = out

    # 2. idle migration
    def idle(self):
        a = self.a
        src, dst, mnt = self.dir("idle", "src"), self.dir("idle", "dst"), self.dir("idle", "mnt")
        img = os.path.join(src, "disk.img")
        log(f"idle: filling a {fmt_size(a.size)} image")
        fill_file(img, a.size)
        times = {"cp+sync": [], "dd bs=1M+sync": [], "mirrorfs": []}
        stun = []
        for r in range(a.runs):
            for how in rotated(times, r):
                log(f"idle run {r + 1}/{a.runs}: {how}")
                clear_dir(dst)
                drop_caches()
                settle_disk(dst)
                if how == "mirrorfs":
                    t, st = self.migrate_once(src, mnt, dst)
                    stun.append(st["stun_ms"])
                else:
                    t0 = time.monotonic()
                    if how.startswith("cp"):
                        run("cp", img, dst)
                    else:
                        run("dd", f"if={img}", f"of={dst}/disk.img", "bs=1M", "status=none")
                    os.sync()
                    t = time.monotonic() - t0
                times[how].append(t)
        clear_dir(dst)
        dense = {k: summary(v) for k, v in times.items()}
        dense["stun_ms"] = summary(stun)

        # A sparse image: its data only is copied, and stays sparse.
        sp_src, sp_dst = self.dir("idle", "sparse-src"), self.dir("idle", "sparse-dst")
        sp_img = os.path.join(sp_src, "sparse.img")
        log(f"idle: a sparse image, {fmt_size(a.sparse_size)} with "
            f"{fmt_size(a.sparse_data)} of data")
        fill_file(sp_img, a.sparse_size, a.sparse_data)
        ref_dir = self.dir("idle", "ref")
        ref = os.path.join(ref_dir, "data.img")
        fill_file(ref, a.sparse_data)
        # The control: mirrorfs on a dense image of the same data, which
        # tells the cost of sparseness from the migration's fixed costs.
        stimes = {"cp+sync of the data": [], "mirrorfs": [], "mirrorfs, the data dense": []}
        alloc = None
        for r in range(a.runs):
            for how in rotated(stimes, r):
                log(f"idle sparse run {r + 1}/{a.runs}: {how}")
                clear_dir(sp_dst)
                drop_caches()
                settle_disk(sp_dst)
                if how == "mirrorfs":
                    t, _ = self.migrate_once(sp_src, mnt, sp_dst)
                    alloc = {"source": allocated(sp_img),
                             "target": allocated(os.path.join(sp_dst, "sparse.img"))}
                elif how == "mirrorfs, the data dense":
                    t, _ = self.migrate_once(ref_dir, mnt, sp_dst)
                else:
                    t0 = time.monotonic()
                    run("cp", ref, sp_dst)
                    os.sync()
                    t = time.monotonic() - t0
                stimes[how].append(t)
        clear_dir(sp_dst)
        self.results["idle"] = {
            "size": a.size, "dense": dense,
            "sparse": {"apparent": a.sparse_size, "data": a.sparse_data,
                       "times": {k: summary(v) for k, v in stimes.items()},
                       "allocation": alloc},
            "reflink": self.idle_reflink()}

    def idle_reflink(self):
        """The dense image again, between two directories of a loop XFS
        whose files can share blocks: there cp clones by default."""
        a = self.a
        for tool in ("mkfs.xfs", "losetup"):
            if not shutil.which(tool):
                return {"skipped": f"{tool} is missing"}
        fs_img, xfs = os.path.join(self.work, "xfs.img"), self.dir("xfs")
        with open(fs_img, "wb") as f:
            f.truncate(2 * a.size + GiB)
        run("mkfs.xfs", "-q", "-m", "reflink=1", fs_img)
        if subprocess.run(["mount", "-o", "loop", fs_img, xfs]).returncode:
            return {"skipped": "a loop device cannot be mounted here"}
        try:
            src, dst = os.path.join(xfs, "src"), os.path.join(xfs, "dst")
            mnt = self.dir("idle", "mnt")
            os.makedirs(src)
            img = os.path.join(src, "disk.img")
            log(f"idle, reflinks: filling a {fmt_size(a.size)} image on a loop XFS")
            fill_file(img, a.size)
            times = {"cp+sync": [], "cp --reflink=never+sync": [], "mirrorfs": [],
                     "mirrorfs --no-clone": []}
            for r in range(a.runs):
                for how in rotated(times, r):
                    log(f"idle reflink run {r + 1}/{a.runs}: {how}")
                    clear_dir(dst)
                    drop_caches()
                    settle_disk(self.work)  # the loop device's backing disk
                    if how.startswith("mirrorfs"):
                        t, st = self.migrate_once(src, mnt, dst, poll=0.001,
                                                  clone=how == "mirrorfs")
                        if how == "mirrorfs" and st["bytes_cloned"] < st["bytes_total"]:
                            raise RuntimeError(f"cloned {st['bytes_cloned']} bytes of "
                                               f"{st['bytes_total']} on XFS")
                    else:
                        t0 = time.monotonic()
                        run("cp", *how.split("+")[0].split()[1:], img, dst)
                        os.sync()
                        t = time.monotonic() - t0
                    times[how].append(t)
            return {k: summary(v) for k, v in times.items()}
        finally:
            run("umount", xfs)

    # 3. migration under load
    def load(self):
        a = self.a
        src, dst, mnt = self.dir("load", "src"), self.dir("load", "dst"), self.dir("load", "mnt")
        img = os.path.join(src, "disk.img")
        log(f"load: filling a {fmt_size(a.size)} image")
        fill_file(img, a.size)
        systems = {
            LOAD_MFS: lambda: self.load_mirrorfs(src, dst, mnt),
            LOAD_MFS_FLAT_OUT: lambda: self.load_mirrorfs(src, dst, mnt, guest_share=0),
            LOAD_QSD: lambda: self.load_qsd(img, dst),
        }
        runs = {who: [] for who in systems}
        for r in range(a.runs):
            for who in rotated(list(systems), r):
                log(f"load run {r + 1}/{a.runs}: {who}")
                clear_dir(dst)
                drop_caches()
                settle_disk(dst)
                runs[who].append(systems[who]())
        clear_dir(dst)
        out = {}
        for who, rs in runs.items():
            out[who] = {"runs": rs}
            for key in rs[0]:
                phases = [x[key] for x in rs if isinstance(x[key], dict)]
                if phases:
                    out[who][key] = {k: summary([ph[k] for ph in phases])
                                     for k, v in phases[0].items() if not isinstance(v, list)}
                elif all(x[key] is None or isinstance(x[key], (int, float)) for x in rs):
                    out[who][key] = summary([x[key] for x in rs])
        self.results["load"] = out

    def load_mirrorfs(self, src, dst, mnt, **start_args):
        a = self.a
        d = self.mfs.mount(src, mnt, self.logdir)
        try:
            w = fio.Load(self.work, "load-mfs", [os.path.join(mnt, "disk.img")], a.size)
            w.settle(1 + a.phase)
            t0 = time.time()
            secs, st = control.migrate(d, dst, **start_args)
            t1 = time.time()
            time.sleep(a.phase)
            lat = w.stop()
            rss = d.peak_rss()
        finally:
            d.stop()
            forget_migration(src)
        return {"migration_s": secs, "stun_ms": st["stun_ms"], "peak_rss_mib": rss / MiB,
                "rested_s": st["rested_ms"] / 1000,
                "before": fio.phase_stats(lat, t0 - a.phase, t0),
                "during": fio.phase_stats(lat, t0, t1),
                "after": fio.phase_stats(lat, t1, w.t_stop - 0.5)}

    def load_qsd(self, img, dst):
        a = self.a
        qmp_path = os.path.join(self.work, "load.qmp")
        nbd_socket = os.path.join(self.work, "load.nbd")
        target = os.path.join(dst, "disk.img")
        with open(target, "wb") as f:
            f.truncate(os.path.getsize(img))
        # Over NBD, not FUSE: a writable FUSE export takes the RESIZE
        # permission, which a mirror job refuses to share ("Permission
        # conflict ... 'resize'"), so QEMU cannot mirror a FUSE export.
        d = QsdDaemon(img, None, qmp_path, self.logdir, nbd_socket=nbd_socket).start()
        try:
            q = Qmp(qmp_path)
            w = fio.Load(self.work, "load-qsd", None, a.size, nbd_uri=d.nbd_uri)
            w.settle(1 + a.phase)
            q.cmd("blockdev-add", **{"driver": "file", "node-name": "tgt-file",
                                     "filename": target, "cache": {"direct": True},
                                     "aio": "native"})
            q.cmd("blockdev-add", **{"driver": "raw", "node-name": "tgt", "file": "tgt-file"})
            t0 = time.time()
            q.cmd("blockdev-mirror", **{"job-id": "m", "device": "src", "target": "tgt",
                                        "sync": "full", "copy-mode": "write-blocking"})
            t_ready, _ = q.wait_event("BLOCK_JOB_READY")
            q.cmd("block-job-complete", device="m")
            t1, ev = q.wait_event("BLOCK_JOB_COMPLETED")
            if ev["data"].get("error"):
                raise RuntimeError(f"blockdev-mirror: {ev['data']['error']}")
            time.sleep(a.phase)
            lat = w.stop()
            q.close()
        finally:
            d.stop()
        return {"ready_s": t_ready - t0, "migration_s": t1 - t0,
                "before": fio.phase_stats(lat, t0 - a.phase, t0),
                "during": fio.phase_stats(lat, t0, t_ready),
                "completion": fio.phase_stats(lat, t_ready, t1 + 0.001),
                "after": fio.phase_stats(lat, t1, w.t_stop - 0.5)}

    # 4. stun
    def stun(self):
        a = self.a
        A, B, mnt = self.dir("stun", "a"), self.dir("stun", "b"), self.dir("stun", "mnt")
        files = [f"vm{i}.raw" for i in range(a.stun_files)]
        for fn in files:
            fill_file(os.path.join(A, fn), a.stun_file_size)
        d = self.mfs.mount(A, mnt, self.logdir)
        stuns, times = [], []
        try:
            w = fio.Load(self.work, "stun", [os.path.join(mnt, fn) for fn in files],
                        a.stun_file_size, iodepth=4)
            w.settle(2)
            t0 = time.time()
            for i in range(a.stun_cycles):
                target = B if i % 2 == 0 else A
                secs, st = control.migrate(d, target, overwrite=True)
                log(f"stun cycle {i + 1}/{a.stun_cycles}: {st['stun_ms']:.2f} ms")
                stuns.append(st["stun_ms"])
                times.append(secs)
            t1 = time.time()
            lat = w.stop()
        finally:
            d.stop()
        s = sorted(stuns)
        self.results["stun"] = {
            "cycles": len(stuns), "files": len(files), "file_size": a.stun_file_size,
            "stun_ms": {"p50": percentile(s, 50), "p99": percentile(s, 99), "max": s[-1],
                        "all": stuns},
            "cycle_s": summary(times), "writes": fio.phase_stats(lat, t0, t1)}

    # 5. scale
    def scale(self):
        a = self.a
        cases = []
        for size in a.scale_sizes:
            data = min(size, a.scale_data_cap)
            cases.append((f"{fmt_size(size)} image" + (
                f" ({fmt_size(data)} of data)" if data < size else ""), size, data, 1))
        cases.append((f"{a.small_files} small files of 64K", 64 * 1024, 64 * 1024,
                      a.small_files))
        out = []
        for name, size, data, count in cases:
            log(f"scale: {name}")
            src = self.dir("scale", "src")
            dst, mnt = self.dir("scale", "dst"), self.dir("scale", "mnt")
            clear_dir(src)
            clear_dir(dst)
            if count == 1:
                fill_file(os.path.join(src, "disk.img"), size, data)
            else:
                for i in range(count):
                    with open(os.path.join(src, f"f{i:05d}"), "wb") as f:
                        f.write(os.urandom(size))
                os.sync()
            drop_caches()
            d = self.mfs.mount(src, mnt, self.logdir)
            try:
                rss0 = d.peak_rss()
                secs, _ = control.migrate(d, dst, poll=0.05)
                rss = d.peak_rss()
            finally:
                d.stop()
            out.append({"case": name, "apparent": size * count, "data": data * count,
                        "seconds": secs, "s_per_gib_data": secs / (data * count / GiB),
                        "rss_mounted_mib": rss0 / MiB, "peak_rss_mib": rss / MiB})
            clear_dir(src)
            clear_dir(dst)
        self.results["scale"] = out


# --- the report ----------------------------------------------------------------

class Report:
    def __init__(self, res, args):
        self.r = res
        self.a = args
        self.lines = []
        self.targets = []  # (target, measured, met)

    def p(self, text=""):
        self.lines.append(text)

    def target(self, what, measured, ok):
        self.targets.append((what, measured, ok))

    def table(self, head, rows):
        self.p("| " + " | ".join(head) + " |")
        self.p("|" + "|".join("---" for _ in head) + "|")
        for row in rows:
            self.p("| " + " | ".join(str(c) for c in row) + " |")
        self.p()

    def passthrough(self, pt):
        self.p("## 1. Passthrough cost, no migration")
        self.p()
        self.p(f"fio on a {fmt_size(self.a.pt_size)} file of random data, {self.a.runtime} s a "
               "run, page cache dropped before each; median (min–max) over the runs. "
               "O_DIRECT rows use libaio, buffered rows psync. The ratio is against native "
               "in the same run. CPU is the daemon's user+system time per GiB moved.")
        self.p()
        systems = [s for s in ("native", "mirrorfs", "mirrorfs -o noxattr", "passthrough_ll",
                               "qsd-fuse") if s in next(iter(pt.values()))]
        rows = []
        for job, by in pt.items():
            metric = "bw_mib" if job.startswith("1M") else "iops"
            base = med(by["native"][metric])
            for s in systems:
                x = by[s]
                if x.get("error"):
                    rows.append([job, s, x["error"], "", "", "", ""])
                    continue
                rows.append([job, s, rng(x["iops"]), rng(x["bw_mib"], 1), rng(x["p99_us"]),
                             num(ratio(med(x[metric]), base), 2) + "×",
                             num(med(x["cpu_s_per_gib"]), 2)])
        self.table(["workload", "system", "IOPS", "MiB/s", "p99 µs", "vs native", "CPU s/GiB"],
                   rows)
        for job, need in (("4k randread direct qd1", 0.85), ("4k randwrite direct qd1", 0.85),
                          ("4k randread direct qd16", 0.5), ("4k randwrite direct qd16", 0.5),
                          ("1M write direct qd4", 0.7)):
            if job not in pt:
                continue
            metric = "bw_mib" if job.startswith("1M") else "iops"
            x = ratio(med(pt[job]["mirrorfs"][metric]), med(pt[job]["native"][metric]))
            self.target(f"passthrough {job} ≥ {need}× native", f"{num(x, 2)}×",
                        x is not None and x >= need)
        behind = []
        for job, by in pt.items():
            metric = "bw_mib" if job.startswith("1M") else "iops"
            m = med(by["mirrorfs"][metric])
            for other in ("passthrough_ll", "qsd-fuse"):
                o = med(by[other][metric]) if not by[other].get("error") else None
                if o is not None and (m is None or m < o):
                    behind.append(f"{job} vs {other} ({num(ratio(m, o), 2)}×)")
        self.target("passthrough ahead of passthrough_ll and qsd-fuse on every row",
                    "behind on: " + "; ".join(behind) if behind else "ahead on every row",
                    not behind)

    def idle(self, idle):
        d = idle["dense"]
        base = med(d["cp+sync"])
        self.p("## 2. Idle migration")
        self.p()
        self.p(f"A fully written {fmt_size(idle['size'])} raw image, migrated to another "
               "directory of the same file system; page cache dropped and the disk left "
               "to go quiet before each, and the order of the copies rotated from run to "
               "run, so that each follows each other as often. mirrorfs is timed from the "
               "start request to the switch (the target is flushed before it).")
        self.p()
        rows = [[k, rng(d[k], 2), num(ratio(med(d[k]), base), 2) + "×"]
                for k in ("cp+sync", "dd bs=1M+sync", "mirrorfs")]
        self.table(["copy", "seconds", "vs cp+sync"], rows)
        x = ratio(med(d["mirrorfs"]), base)
        self.target("idle migration ≤ 1.10× cp+sync", f"{num(x, 2)}×", x is not None and x <= 1.10)
        sp = idle["sparse"]
        t = sp["times"]
        sbase = med(t["cp+sync of the data"])
        self.p(f"A sparse image of {fmt_size(sp['apparent'])} holding {fmt_size(sp['data'])} "
               "of data, against `cp`+`sync` of a dense file of that much data, and "
               "against mirrorfs migrating that dense file (the fixed costs of a "
               "migration without the sparseness); the order rotated from run to run:")
        self.p()
        self.table(["copy", "seconds", "vs copying the data"],
                   [[k, rng(v, 2), num(ratio(med(v), sbase), 2) + "×"] for k, v in t.items()])
        al = sp["allocation"]
        self.p(f"Allocated: source {num(al['source'] / MiB)} MiB, target "
               f"{num(al['target'] / MiB)} MiB.")
        self.p()
        x = ratio(med(t["mirrorfs"]), sbase)
        self.target("sparse image: time in proportion to its data (≤ 1.10× copying the data)",
                    f"{num(x, 2)}×", x is not None and x <= 1.10)
        self.target("sparse image: target allocation ≤ source's",
                    f"{num(al['target'] / MiB)} / {num(al['source'] / MiB)} MiB",
                    al["target"] <= al["source"])
        rl = idle.get("reflink") or {"skipped": "not run"}
        self.p(f"The dense image again, on a file system whose files can share blocks: "
               f"a loop XFS (`mkfs.xfs -m reflink=1`) on a file of the same disk. There "
               f"`cp` clones by default, and so does mirrorfs; `--reflink=never` and "
               f"`--no-clone` copy every byte.")
        self.p()
        if "skipped" in rl:
            self.p(f"Skipped: {rl['skipped']}.")
            self.p()
            return
        rbase = med(rl["cp+sync"])
        self.table(["copy", "seconds", "vs cp+sync"],
                   [[k, rng(v, 3), num(ratio(med(v), rbase), 2) + "×"] for k, v in rl.items()])
        x = ratio(med(rl["mirrorfs"]), rbase)
        self.target("idle migration on a reflink file system ≤ 1.10× cp+sync (both clone)",
                    f"{num(x, 2)}× ({num(med(rl['mirrorfs']) * 1000)} ms against "
                    f"{num(rbase * 1000)} ms)", x is not None and x <= 1.10)

    def load(self, load):
        self.p("## 3. Migration under load")
        self.p()
        self.p(f"fio 4 KiB random writes, O_DIRECT, libaio, iodepth 16, on a "
               f"{fmt_size(self.a.size)} image, for {self.a.phase} s before the migration, "
               f"through it, and {self.a.phase} s after. mirrorfs copies with no speed limit, "
               "twice: leaving a writing guest its default share of the time (50 %, the "
               "start request's `guest_share`), and flat out (`guest_share=0`); "
               "qemu-storage-daemon runs `blockdev-mirror` with `copy-mode=write-blocking` "
               "(cache.direct=on, aio=native on both sides) and `block-job-complete` at "
               "READY, under the same fio job through its NBD export (fio's nbd engine): "
               "QEMU refuses to mirror a node under a writable FUSE export, whose RESIZE "
               "permission the mirror job does not share. Worst 1 s window: the fewest writes "
               "completed in any whole second of the phase.")
        self.p()
        rows = []
        for who, x in load.items():
            base = med(x["before"]["iops"])
            x = {k: v for k, v in x.items() if k != "runs"}
            for ph in ("before", "during", "completion", "after"):
                if not x.get(ph):
                    continue
                y = x[ph]
                rows.append([who, ph, rng(y["iops"]), num(ratio(med(y["iops"]), base), 2) + "×",
                             rng(y["min_window_iops"]),
                             num(ratio(med(y["min_window_iops"]), base), 2) + "×",
                             rng(y["p99_ms"], 2), rng(y["max_ms"], 1)])
        self.table(["system", "phase", "IOPS", "vs before", "worst 1 s window", "vs before",
                    "p99 ms", "max ms"], rows)
        m, f, q = load[LOAD_MFS], load[LOAD_MFS_FLAT_OUT], load[LOAD_QSD]
        for who, x in ((LOAD_MFS, m), (LOAD_MFS_FLAT_OUT, f)):
            self.p(f"{who}: migration {rng(x['migration_s'], 2)} s (the copier rested "
                   f"{rng(x['rested_s'], 2)} s of it), stun {rng(x['stun_ms'], 2)} ms, daemon "
                   f"peak RSS {rng(x['peak_rss_mib'], 1)} MiB.")
            self.p()
        self.p(f"qemu-storage-daemon: READY after {rng(q['ready_s'], 2)} s, completed after "
               f"{rng(q['migration_s'], 2)} s.")
        self.p()
        base = med(m["before"]["iops"])
        worst = ratio(med(m["during"]["min_window_iops"]), base)
        self.target("under load: guest IOPS during migration ≥ 0.5× before, in every second",
                    f"{num(ratio(med(m['during']['iops']), base), 2)}× on average, "
                    f"{num(worst, 2)}× in the worst second", worst is not None and worst >= 0.5)
        mt, ft, qt = med(m["migration_s"]), med(f["migration_s"]), med(q["migration_s"])
        self.target("under load: migration no later than QEMU's write-blocking mirror",
                    f"{num(ft, 2)} s flat out ({num(mt, 2)} s leaving the guest 50 %) "
                    f"vs {num(qt, 2)} s", ft <= qt)
        stall = max(med(m[ph]["max_ms"]) for ph in ("before", "during", "after"))
        self.target("under load: no guest write stalls over 50 ms", f"{num(stall, 1)} ms",
                    stall <= 50)

    def stun(self, st):
        s = st["stun_ms"]
        self.p("## 4. Stun")
        self.p()
        self.p(f"{st['cycles']} migrations back and forth between two directories of "
               f"{st['files']} images of {fmt_size(st['file_size'])}, each open and written "
               "by a 4 KiB O_DIRECT iodepth-4 fio job throughout (--overwrite: the other "
               "directory holds the copy of two cycles ago).")
        self.p()
        w = st["writes"]
        self.table(["stun p50 ms", "stun p99 ms", "stun max ms", "cycle s", "write IOPS",
                    "write p99 ms", "longest write ms"],
                   [[num(s["p50"], 2), num(s["p99"], 2), num(s["max"], 2),
                     rng(st["cycle_s"], 2), num(w["iops"]), num(w["p99_ms"], 2),
                     num(w["max_ms"], 1)]])
        self.target("stun p99 ≤ 20 ms with writers running", f"{num(s['p99'], 2)} ms",
                    s["p99"] <= 20)
        self.target("stun cycles: no write stalls over 50 ms", f"{num(w['max_ms'], 1)} ms",
                    w["max_ms"] <= 50)

    def scale(self, sc):
        self.p("## 5. Scale")
        self.p()
        self.p("One migration each, unlimited, page cache dropped before it; RSS is the "
               "daemon's VmHWM, once mounted and at the switch.")
        self.p()
        self.table(["case", "apparent", "data", "seconds", "s per GiB of data",
                    "RSS mounted MiB", "peak RSS MiB"],
                   [[c["case"], fmt_size(c["apparent"]), fmt_size(c["data"]), num(c["seconds"], 2),
                     num(c["s_per_gib_data"], 2), num(c["rss_mounted_mib"], 1),
                     num(c["peak_rss_mib"], 1)] for c in sc])
        peak = max(c["peak_rss_mib"] for c in sc)
        self.target("daemon peak RSS ≤ 64 MiB whatever the image size", f"{num(peak, 1)} MiB",
                    peak <= 64)

    def render(self, m):
        self.p("# mirrorfs benchmark results")
        self.p()
        self.p(f"Taken {m['date']} by `bench/run.py {' '.join(self.a.argv)}` on "
               f"{m['cores']} × {m['cpu']}, {m['memory_gib']} GiB, Linux {m['kernel']} "
               f"({m['virtualization']}); file system `{m['filesystem']}`; {m['fio']}, "
               f"{m['qemu-storage-daemon']}, libfuse {m['libfuse']}; mirrorfs {m['mirrorfs']}. "
               f"{self.a.runs} runs of each; the machine is shared and noisy: ranges are "
               "given, and every ratio is between figures of this same run.")
        self.p()
        body_start = len(self.lines)
        for key in ("passthrough", "idle", "load", "stun", "scale"):
            if key in self.r:
                getattr(self, key)(self.r[key])
        body = self.lines[body_start:]
        self.lines = self.lines[:body_start]
        if self.targets:
            self.p("## Targets")
            self.p()
            self.table(["target", "measured", ""],
                       [[t, m_, verdict(ok)] for t, m_, ok in self.targets])
        self.lines += body
        return "\n".join(self.lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(ROOT, "build"),
                    help="the build directory to take mirrorfs from (default: build)")
    ap.add_argument("--dir", default="/var/tmp",
                    help="where to make the work directory: the file system measured")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results"),
                    help="write OUT.md and OUT.json (default: bench/results)")
    ap.add_argument("--only", default="passthrough,idle,load,stun,scale",
                    help="the scenarios to run, comma-separated")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--size", type=parse_size, default=2 * GiB,
                    help="the image of the idle and load scenarios (default 2G)")
    ap.add_argument("--pt-size", type=parse_size, default=1 * GiB)
    ap.add_argument("--runtime", type=int, default=10, help="seconds per fio run")
    ap.add_argument("--phase", type=int, default=5,
                    help="seconds of load before and after a migration")
    ap.add_argument("--stun-cycles", type=int, default=30)
    ap.add_argument("--quick", action="store_true",
                    help="the smoke version: tiny sizes, one short run of each")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args()
    args.argv = sys.argv[1:]
    args.sparse_size, args.sparse_data = 8 * GiB, 1 * GiB
    args.stun_files, args.stun_file_size = 4, 64 * MiB
    args.scale_sizes, args.scale_data_cap, args.small_files = [GiB, 4 * GiB, 16 * GiB], 4 * GiB, 1000
    if args.quick:
        args.runs, args.size, args.pt_size, args.runtime, args.phase = 1, 64 * MiB, 64 * MiB, 1, 1
        args.sparse_size, args.sparse_data = 256 * MiB, 64 * MiB
        args.stun_cycles, args.stun_file_size = 3, 16 * MiB
        args.scale_sizes, args.scale_data_cap, args.small_files = [16 * MiB, 256 * MiB], 64 * MiB, 50
    scenarios = [s for s in args.only.split(",") if s]
    for s in scenarios:
        if s not in ("passthrough", "idle", "load", "stun", "scale"):
            ap.error(f"unknown scenario {s!r}")
    # 77: what meson takes for a skipped test.
    if os.geteuid() != 0 or not os.path.exists("/dev/fuse"):
        print("bench: needs root and /dev/fuse: it mounts FUSE file systems and drops caches",
              file=sys.stderr)
        return 77
    for tool in ("fio", "qemu-storage-daemon", "fusermount3", "cc", "pkg-config"):
        if not shutil.which(tool):
            print(f"bench: {tool} is missing: run scripts/setup-deps.sh", file=sys.stderr)
            return 77
    if "passthrough" in scenarios and not os.path.exists(PASSTHROUGH_LL_SRC):
        print(f"bench: {PASSTHROUGH_LL_SRC} is missing: install libfuse3-dev", file=sys.stderr)
        return 77

    args.work = tempfile.mkdtemp(prefix="mirrorfs-bench.", dir=args.dir)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: sys.exit(130))
    bench = Bench(args)
    m = machine(args.work)
    status = 0
    try:
        for s in scenarios:
            getattr(bench, s)()
    except Exception as e:
        traceback.print_exc()
        log(f"bench: {type(e).__name__}: {e}")
        status = 1
    finally:
        Daemon.stop_all()
        for p in glob.glob(os.path.join(args.work, "logs", "*.log")):
            with open(p) as f:
                if "ERROR" in f.read() and status:
                    log(f"daemon log {p} holds errors")
        if not args.keep:
            shutil.rmtree(args.work, ignore_errors=True)
    if status:
        return status
    results = {"machine": m, "args": args.argv, "results": bench.results}
    report = Report(bench.results, args)
    text = report.render(m)
    results["targets"] = [{"target": t, "measured": x, "met": ok} for t, x, ok in report.targets]
    with open(args.out + ".json", "w") as f:
        json.dump(results, f, indent=1)
    with open(args.out + ".md", "w") as f:
        f.write(text)
    log(f"wrote {args.out}.md and {args.out}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
