# SPDX-License-Identifier: GPL-2.0-or-later
"""3. Load: fio 4 KiB random O_DIRECT writes on the image before, through
and after a migration: mirrorfs with its default guest share and flat out,
and qemu-storage-daemon's write-blocking blockdev-mirror (through NBD)."""

import os
import time

from .. import control, fio
from ..daemon import forget_migration
from ..qsd import Qmp, QsdDaemon
from ..report import med, num, ratio, rng
from ..util import (MiB, clear_dir, drop_caches, fill_file, fmt_size, log, rotated, settle_disk,
                    summary)

NAME = "load"
# The systems compared, as the results name them.
MFS = "mirrorfs"
MFS_FLAT_OUT = "mirrorfs guest_share=0"
QSD = "qsd write-blocking mirror (NBD)"


def measure(bench):
    """Each system's runs (run_mirrorfs(), run_qsd()), in an order rotated
    from run to run; by system, every run and the summaries of each figure."""
    a = bench.a
    src, dst, mnt = bench.dir("load", "src"), bench.dir("load", "dst"), bench.dir("load", "mnt")
    img = os.path.join(src, "disk.img")
    log(f"load: filling a {fmt_size(a.size)} image")
    fill_file(img, a.size)
    systems = {
        MFS: lambda: run_mirrorfs(bench, src, dst, mnt),
        MFS_FLAT_OUT: lambda: run_mirrorfs(bench, src, dst, mnt, guest_share=0),
        QSD: lambda: run_qsd(bench, img, dst),
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
    return out


def run_mirrorfs(bench, src, dst, mnt, **start_args):
    """Mount @src, start the writers, migrate to @dst with @start_args
    once they have run 1 + --phase seconds, stop them --phase seconds after the
    switch: the migration's figures, and the writes' in each phase."""
    a = bench.a
    d = bench.mfs.mount(src, mnt, bench.logdir)
    try:
        w = fio.Load(bench.work, "load-mfs", [os.path.join(mnt, "disk.img")], a.size)
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


def run_qsd(bench, img, dst):
    """The same with qemu-storage-daemon's write-blocking mirror of @img
    to @dst (READY, then block-job-complete), fio writing through NBD."""
    a = bench.a
    qmp_path = os.path.join(bench.work, "load.qmp")
    nbd_socket = os.path.join(bench.work, "load.nbd")
    target = os.path.join(dst, "disk.img")
    with open(target, "wb") as f:
        f.truncate(os.path.getsize(img))
    # Over NBD, not FUSE: a writable FUSE export takes the RESIZE
    # permission, which a mirror job refuses to share ("Permission
    # conflict ... 'resize'"), so QEMU cannot mirror a FUSE export.
    d = QsdDaemon(img, None, qmp_path, bench.logdir, nbd_socket=nbd_socket).start()
    try:
        q = Qmp(qmp_path)
        w = fio.Load(bench.work, "load-qsd", None, a.size, nbd_uri=d.nbd_uri)
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


def render(report, load):
    a = report.a
    report.p("## 3. Migration under load")
    report.p()
    report.p(f"fio 4 KiB random writes, O_DIRECT, libaio, iodepth 16, on a "
             f"{fmt_size(a.size)} image, for {a.phase} s before the migration, "
             f"through it, and {a.phase} s after. mirrorfs copies with no speed limit, "
             "twice: leaving a writing guest its default share of the time (50 %, the "
             "start request's `guest_share`), and flat out (`guest_share=0`); "
             "qemu-storage-daemon runs `blockdev-mirror` with `copy-mode=write-blocking` "
             "(cache.direct=on, aio=native on both sides) and `block-job-complete` at "
             "READY, under the same fio job through its NBD export (fio's nbd engine): "
             "QEMU refuses to mirror a node under a writable FUSE export, whose RESIZE "
             "permission the mirror job does not share. Worst 1 s window: the fewest writes "
             "completed in any whole second of the phase.")
    report.p()
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
    report.table(["system", "phase", "IOPS", "vs before", "worst 1 s window", "vs before",
                  "p99 ms", "max ms"], rows)
    m, f, q = load[MFS], load[MFS_FLAT_OUT], load[QSD]
    for who, x in ((MFS, m), (MFS_FLAT_OUT, f)):
        report.p(f"{who}: migration {rng(x['migration_s'], 2)} s (the copier rested "
                 f"{rng(x['rested_s'], 2)} s of it), stun {rng(x['stun_ms'], 2)} ms, daemon "
                 f"peak RSS {rng(x['peak_rss_mib'], 1)} MiB.")
        report.p()
    report.p(f"qemu-storage-daemon: READY after {rng(q['ready_s'], 2)} s, completed after "
             f"{rng(q['migration_s'], 2)} s.")
    report.p()
    base = med(m["before"]["iops"])
    worst = ratio(med(m["during"]["min_window_iops"]), base)
    report.target("under load: guest IOPS during migration ≥ 0.5× before, in every second",
                  f"{num(ratio(med(m['during']['iops']), base), 2)}× on average, "
                  f"{num(worst, 2)}× in the worst second", worst is not None and worst >= 0.5)
    mt, ft, qt = med(m["migration_s"]), med(f["migration_s"]), med(q["migration_s"])
    report.target("under load: migration no later than QEMU's write-blocking mirror",
                  f"{num(ft, 2)} s flat out ({num(mt, 2)} s leaving the guest 50 %) "
                  f"vs {num(qt, 2)} s", ft <= qt)
    stall = max(med(m[ph]["max_ms"]) for ph in ("before", "during", "after"))
    report.target("under load: no guest write stalls over 50 ms", f"{num(stall, 1)} ms",
                  stall <= 50)
