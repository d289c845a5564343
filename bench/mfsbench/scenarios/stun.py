# SPDX-License-Identifier: GPL-2.0-or-later
"""4. Stun: migrations back and forth of a few images, each kept open and
written by fio throughout; the daemon's own measure of each stun."""

import os
import time

from .. import control, fio
from ..report import num, rng
from ..util import fill_file, fmt_size, log, percentile, summary

NAME = "stun"


def measure(bench):
    """--stun-cycles migrations of one mount between two directories, its
    images written all along: the stuns, the cycles' times, the writes."""
    a = bench.a
    A, B, mnt = bench.dir("stun", "a"), bench.dir("stun", "b"), bench.dir("stun", "mnt")
    files = [f"vm{i}.raw" for i in range(a.stun_files)]
    for fn in files:
        fill_file(os.path.join(A, fn), a.stun_file_size)
    d = bench.mfs.mount(A, mnt, bench.logdir)
    stuns, times = [], []
    try:
        w = fio.Load(bench.work, "stun", [os.path.join(mnt, fn) for fn in files],
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
    return {
        "cycles": len(stuns), "files": len(files), "file_size": a.stun_file_size,
        "stun_ms": {"p50": percentile(s, 50), "p99": percentile(s, 99), "max": s[-1],
                    "all": stuns},
        "cycle_s": summary(times), "writes": fio.phase_stats(lat, t0, t1)}


def render(report, st):
    s = st["stun_ms"]
    report.p("## 4. Stun")
    report.p()
    report.p(f"{st['cycles']} migrations back and forth between two directories of "
             f"{st['files']} images of {fmt_size(st['file_size'])}, each open and written "
             "by a 4 KiB O_DIRECT iodepth-4 fio job throughout (--overwrite: the other "
             "directory holds the copy of two cycles ago).")
    report.p()
    w = st["writes"]
    report.table(["stun p50 ms", "stun p99 ms", "stun max ms", "cycle s", "write IOPS",
                  "write p99 ms", "longest write ms"],
                 [[num(s["p50"], 2), num(s["p99"], 2), num(s["max"], 2),
                   rng(st["cycle_s"], 2), num(w["iops"]), num(w["p99_ms"], 2),
                   num(w["max_ms"], 1)]])
    report.target("stun p99 ≤ 20 ms with writers running", f"{num(s['p99'], 2)} ms",
                  s["p99"] <= 20)
    report.target("stun cycles: no write stalls over 50 ms", f"{num(w['max_ms'], 1)} ms",
                  w["max_ms"] <= 50)
