# SPDX-License-Identifier: GPL-2.0-or-later
"""1. Passthrough: fio on one file through mirrorfs (on FUSE over io_uring
and on /dev/fuse), natively, through libfuse's passthrough_ll and through
qemu-storage-daemon's FUSE export; no migration."""

import os

from .. import fio
from ..daemon import Daemon
from ..qsd import QsdDaemon
from ..report import med, num, ratio, rng
from ..util import GiB, drop_caches, fill_file, fmt_size, log, output, run, summary

NAME = "passthrough"
PASSTHROUGH_LL_SRC = "/usr/share/doc/libfuse3-dev/examples/passthrough_ll.c"

JOBS = [
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


def build_passthrough_ll(bench):
    """libfuse's example, compiled into the work directory."""
    exe = os.path.join(bench.work, "passthrough_ll")
    if not os.path.exists(exe):
        cflags = output("pkg-config", "--cflags", "--libs", "fuse3").split()
        run("cc", "-O2", "-o", exe, PASSTHROUGH_LL_SRC, *cflags)
    return exe


def measure(bench):
    """Every job on every system, --runs times: by job and system, the
    summaries of IOPS, MiB/s, p99 µs and daemon CPU s/GiB (or an error)."""
    a = bench.a
    src = bench.dir("pt", "src")
    img = os.path.join(src, "disk.img")
    log(f"passthrough: filling a {fmt_size(a.pt_size)} image")
    fill_file(img, a.pt_size)
    ptll = build_passthrough_ll(bench)
    mnt = {k: bench.dir("pt", k) for k in ("mirrorfs", "passthrough_ll")}
    qsd_file = os.path.join(bench.work, "pt", "qsd-export")
    systems = {
        "native": lambda: (None, img),
        "mirrorfs": lambda: (bench.mfs.mount(src, mnt["mirrorfs"], bench.logdir),
                             os.path.join(mnt["mirrorfs"], "disk.img")),
        "mirrorfs /dev/fuse": lambda: (bench.mfs.mount(src, mnt["mirrorfs"], bench.logdir,
                                                       "io_uring=off"),
                                       os.path.join(mnt["mirrorfs"], "disk.img")),
        "passthrough_ll": lambda: (Daemon("passthrough_ll",
                                          [ptll, "-f", "-o", f"source={src}",
                                           mnt["passthrough_ll"]],
                                          mnt["passthrough_ll"], bench.logdir).start(),
                                   os.path.join(mnt["passthrough_ll"], "disk.img")),
        "qsd-fuse": lambda: (QsdDaemon(img, qsd_file, os.path.join(bench.work, "pt.qmp"),
                                       bench.logdir).start(), qsd_file),
    }
    raw = {job[0]: {s: [] for s in systems} for job in JOBS}
    for r in range(a.runs):
        for sysname, up in systems.items():
            daemon, path = up()
            try:
                for name, rw, bs, direct, qd, threads in JOBS:
                    log(f"passthrough run {r + 1}/{a.runs}: {sysname}: {name}")
                    drop_caches()
                    cpu0 = daemon.cpu_seconds() if daemon else None
                    res = fio.run(bench.work, path, rw, bs, direct, qd, a.pt_size,
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
    return out


def render(report, pt):
    a = report.a
    report.p("## 1. Passthrough cost, no migration")
    report.p()
    report.p(f"fio on a {fmt_size(a.pt_size)} file of random data, {a.runtime} s a "
             "run, page cache dropped before each; median (min–max) over the runs. "
             "O_DIRECT rows use libaio, buffered rows psync. The ratio is against native "
             "in the same run. CPU is the daemon's user+system time per GiB moved. "
             "\"mirrorfs\" is the default transport, FUSE over io_uring where the kernel "
             "offers it (the harness turns the kernel's `enable_uring` on for the run); "
             "\"mirrorfs /dev/fuse\" is `-o io_uring=off`, the classic transport.")
    report.p()
    systems = [s for s in ("native", "mirrorfs", "mirrorfs /dev/fuse", "passthrough_ll",
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
    report.table(["workload", "system", "IOPS", "MiB/s", "p99 µs", "vs native", "CPU s/GiB"],
                 rows)
    for job, need in (("4k randread direct qd1", 0.85), ("4k randwrite direct qd1", 0.85),
                      ("4k randread direct qd16", 0.6), ("4k randwrite direct qd16", 0.6),
                      ("4k randwrite direct 4 threads", 0.8),
                      ("1M read direct qd4", 0.9), ("1M write direct qd4", 0.9)):
        if job not in pt:
            continue
        metric = "bw_mib" if job.startswith("1M") else "iops"
        x = ratio(med(pt[job]["mirrorfs"][metric]), med(pt[job]["native"][metric]))
        report.target(f"passthrough {job} ≥ {need}× native", f"{num(x, 2)}×",
                      x is not None and x >= need)
    job = "4k randwrite buffered"
    if job in pt and not pt[job]["passthrough_ll"].get("error"):
        x = ratio(med(pt[job]["mirrorfs"]["iops"]), med(pt[job]["passthrough_ll"]["iops"]))
        report.target(f"passthrough {job} level with passthrough_ll (≥ 0.95×)",
                      f"{num(x, 2)}×", x is not None and x >= 0.95)
    behind = []
    for job, by in pt.items():
        metric = "bw_mib" if job.startswith("1M") else "iops"
        m = med(by["mirrorfs"][metric])
        for other in ("passthrough_ll", "qsd-fuse"):
            o = med(by[other][metric]) if not by[other].get("error") else None
            if o is not None and (m is None or m < o):
                behind.append(f"{job} vs {other} ({num(ratio(m, o), 2)}×)")
    report.target("passthrough ahead of passthrough_ll and qsd-fuse on every row",
                  "behind on: " + "; ".join(behind) if behind else "ahead on every row",
                  not behind)
