# SPDX-License-Identifier: GPL-2.0-or-later
"""2. Idle: migrating a fully written image, timed against cp+sync and dd;
a sparse image against copying its data; and the dense image on a loop
XFS with reflinks, where cp and mirrorfs clone."""

import os
import shutil
import subprocess
import time

from ..report import med, num, ratio, rng
from ..util import (GiB, MiB, allocated, clear_dir, drop_caches, fill_file, fmt_size, log,
                    rotated, run, settle_disk, summary)

NAME = "idle"


def measure(bench):
    """The dense image's copies and migrations, the sparse image's, and
    reflink()'s, --runs times each, in an order rotated from run to run."""
    a = bench.a
    src, dst, mnt = bench.dir("idle", "src"), bench.dir("idle", "dst"), bench.dir("idle", "mnt")
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
                t, st = bench.mfs.migrate_once(src, mnt, dst, bench.logdir)
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
    sp_src, sp_dst = bench.dir("idle", "sparse-src"), bench.dir("idle", "sparse-dst")
    sp_img = os.path.join(sp_src, "sparse.img")
    log(f"idle: a sparse image, {fmt_size(a.sparse_size)} with "
        f"{fmt_size(a.sparse_data)} of data")
    fill_file(sp_img, a.sparse_size, a.sparse_data)
    ref_dir = bench.dir("idle", "ref")
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
                t, _ = bench.mfs.migrate_once(sp_src, mnt, sp_dst, bench.logdir)
                alloc = {"source": allocated(sp_img),
                         "target": allocated(os.path.join(sp_dst, "sparse.img"))}
            elif how == "mirrorfs, the data dense":
                t, _ = bench.mfs.migrate_once(ref_dir, mnt, sp_dst, bench.logdir)
            else:
                t0 = time.monotonic()
                run("cp", ref, sp_dst)
                os.sync()
                t = time.monotonic() - t0
            stimes[how].append(t)
    clear_dir(sp_dst)
    return {
        "size": a.size, "dense": dense,
        "sparse": {"apparent": a.sparse_size, "data": a.sparse_data,
                   "times": {k: summary(v) for k, v in stimes.items()},
                   "allocation": alloc},
        "reflink": reflink(bench)}


def reflink(bench):
    """The dense image again, between two directories of a loop XFS
    whose files can share blocks: there cp clones by default."""
    a = bench.a
    for tool in ("mkfs.xfs", "losetup"):
        if not shutil.which(tool):
            return {"skipped": f"{tool} is missing"}
    fs_img, xfs = os.path.join(bench.work, "xfs.img"), bench.dir("xfs")
    with open(fs_img, "wb") as f:
        f.truncate(2 * a.size + GiB)
    run("mkfs.xfs", "-q", "-m", "reflink=1", fs_img)
    if subprocess.run(["mount", "-o", "loop", fs_img, xfs]).returncode:
        return {"skipped": "a loop device cannot be mounted here"}
    try:
        src, dst = os.path.join(xfs, "src"), os.path.join(xfs, "dst")
        mnt = bench.dir("idle", "mnt")
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
                settle_disk(bench.work)  # the loop device's backing disk
                if how.startswith("mirrorfs"):
                    t, st = bench.mfs.migrate_once(src, mnt, dst, bench.logdir, poll=0.001,
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


def render(report, idle):
    d = idle["dense"]
    base = med(d["cp+sync"])
    report.p("## 2. Idle migration")
    report.p()
    report.p(f"A fully written {fmt_size(idle['size'])} raw image, migrated to another "
             "directory of the same file system; page cache dropped and the disk left "
             "to go quiet before each, and the order of the copies rotated from run to "
             "run, so that each follows each other as often. mirrorfs is timed from the "
             "start request to the switch (the target is flushed before it).")
    report.p()
    rows = [[k, rng(d[k], 2), num(ratio(med(d[k]), base), 2) + "×"]
            for k in ("cp+sync", "dd bs=1M+sync", "mirrorfs")]
    report.table(["copy", "seconds", "vs cp+sync"], rows)
    x = ratio(med(d["mirrorfs"]), base)
    report.target("idle migration ≤ 1.10× cp+sync", f"{num(x, 2)}×", x is not None and x <= 1.10)
    sp = idle["sparse"]
    t = sp["times"]
    sbase = med(t["cp+sync of the data"])
    report.p(f"A sparse image of {fmt_size(sp['apparent'])} holding {fmt_size(sp['data'])} "
             "of data, against `cp`+`sync` of a dense file of that much data, and "
             "against mirrorfs migrating that dense file (the fixed costs of a "
             "migration without the sparseness); the order rotated from run to run:")
    report.p()
    report.table(["copy", "seconds", "vs copying the data"],
                 [[k, rng(v, 2), num(ratio(med(v), sbase), 2) + "×"] for k, v in t.items()])
    al = sp["allocation"]
    report.p(f"Allocated: source {num(al['source'] / MiB)} MiB, target "
             f"{num(al['target'] / MiB)} MiB.")
    report.p()
    x = ratio(med(t["mirrorfs"]), sbase)
    report.target("sparse image: time in proportion to its data (≤ 1.10× copying the data)",
                  f"{num(x, 2)}×", x is not None and x <= 1.10)
    report.target("sparse image: target allocation ≤ source's",
                  f"{num(al['target'] / MiB)} / {num(al['source'] / MiB)} MiB",
                  al["target"] <= al["source"])
    rl = idle.get("reflink") or {"skipped": "not run"}
    report.p("The dense image again, on a file system whose files can share blocks: "
             "a loop XFS (`mkfs.xfs -m reflink=1`) on a file of the same disk. There "
             "`cp` clones by default, and so does mirrorfs; `--reflink=never` and "
             "`--no-clone` copy every byte.")
    report.p()
    if "skipped" in rl:
        report.p(f"Skipped: {rl['skipped']}.")
        report.p()
        return
    rbase = med(rl["cp+sync"])
    report.table(["copy", "seconds", "vs cp+sync"],
                 [[k, rng(v, 3), num(ratio(med(v), rbase), 2) + "×"] for k, v in rl.items()])
    x = ratio(med(rl["mirrorfs"]), rbase)
    report.target("idle migration on a reflink file system ≤ 1.10× cp+sync (both clone)",
                  f"{num(x, 2)}× ({num(med(rl['mirrorfs']) * 1000)} ms against "
                  f"{num(rbase * 1000)} ms)", x is not None and x <= 1.10)
