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
# The systems compared, as the results name them: mirrorfs at each guest
# share (the default first), and QEMU's two mirror modes.
DEFAULT_SHARE = 50
SHARES = (DEFAULT_SHARE, 0, 80)
QSD_BACKGROUND = "QEMU background mirror (NBD)"
QSD_BLOCKING = "QEMU write-blocking mirror (NBD)"
# Each system's phases, in order: what the guest's writes are split into.
PHASES = ("before", "copying", "switch", "after")


def converge_s(a):
    """How long QEMU's mirror may take to be READY before it counts as never converging."""
    return 10 if a.quick else 60


def mfs_name(share):
    return f"mirrorfs guest_share={share}" + (" (default)" if share == DEFAULT_SHARE else "")


def measure(bench):
    """Each system's runs (run_mirrorfs(), run_qsd()), in an order rotated
    from run to run; by system, every run and the summaries of each figure."""
    a = bench.a
    src, dst, mnt = bench.dir("load", "src"), bench.dir("load", "dst"), bench.dir("load", "mnt")
    img = os.path.join(src, "disk.img")
    log(f"load: filling a {fmt_size(a.size)} image")
    fill_file(img, a.size)
    systems = {mfs_name(sh): (lambda sh=sh: run_mirrorfs(bench, src, dst, mnt, guest_share=sh))
               for sh in SHARES}
    systems[QSD_BACKGROUND] = lambda: run_qsd(bench, img, dst, "background")
    systems[QSD_BLOCKING] = lambda: run_qsd(bench, img, dst, "write-blocking")
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


def run_mirrorfs(bench, src, dst, mnt, guest_share):
    """Mount @src, start the writers, migrate to @dst at @guest_share with a
    manual switch once they have run 1 + --phase seconds: copy to
    "mirrored", then ask for the switch at once; stop the writers --phase
    seconds after it.  The migration's figures, and the writes' in each
    phase."""
    a = bench.a
    d = bench.mfs.mount(src, mnt, bench.logdir)
    try:
        w = fio.Load(bench.work, "load-mfs", [os.path.join(mnt, "disk.img")], a.size)
        w.settle(1 + a.phase)
        t0 = time.time()
        control.request(d, "start", target=dst, guest_share=guest_share, switch="manual")
        control.wait_state(d, control.MIRRORED, poll=0.005)
        t_mirrored = time.time()
        control.request(d, "switch")
        st = control.wait_state(d, control.SWITCHED, poll=0.005)
        t1 = time.time()
        time.sleep(a.phase)
        lat = w.stop()
        rss = d.peak_rss()
    finally:
        d.stop()
        forget_migration(src)
    return {"mirrored_s": t_mirrored - t0, "switch_s": t1 - t_mirrored,
            "migration_s": t1 - t0, "stun_ms": st["stun_ms"], "peak_rss_mib": rss / MiB,
            "rested_s": st["rested_ms"] / 1000,
            "before": fio.phase_stats(lat, t0 - a.phase, t0),
            "copying": fio.phase_stats(lat, t0, t_mirrored),
            "switch": fio.phase_stats(lat, t_mirrored, t1 + 0.001),
            "after": fio.phase_stats(lat, t1, w.t_stop - 0.5)}


def run_qsd(bench, img, dst, mode):
    """The same with qemu-storage-daemon's blockdev-mirror of @img to @dst
    in copy-mode @mode (READY, then block-job-complete at once), fio
    writing through NBD."""
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
                                    "sync": "full", "copy-mode": mode})
        try:
            # A background mirror may never converge under a fast writer.
            t_ready, _ = q.wait_event("BLOCK_JOB_READY", timeout=converge_s(a))
        except RuntimeError:
            log(f"load: QEMU's {mode} mirror not READY after {converge_s(a)} s: cancelled")
            q.cmd("block-job-cancel", device="m", force=True)
            t1, _ = q.wait_event("BLOCK_JOB_CANCELLED", timeout=60)
            time.sleep(a.phase)
            lat = w.stop()
            q.close()
            return {"mirrored_s": None, "switch_s": None, "migration_s": None,
                    "converged": 0,
                    "before": fio.phase_stats(lat, t0 - a.phase, t0),
                    "copying": fio.phase_stats(lat, t0, t1),
                    "switch": None, "after": fio.phase_stats(lat, t1, w.t_stop - 0.5)}
        q.cmd("block-job-complete", device="m")
        t1, ev = q.wait_event("BLOCK_JOB_COMPLETED")
        if ev["data"].get("error"):
            raise RuntimeError(f"blockdev-mirror: {ev['data']['error']}")
        time.sleep(a.phase)
        lat = w.stop()
        q.close()
    finally:
        d.stop()
    return {"mirrored_s": t_ready - t0, "switch_s": t1 - t_ready, "migration_s": t1 - t0,
            "converged": 1,
            "before": fio.phase_stats(lat, t0 - a.phase, t0),
            "copying": fio.phase_stats(lat, t0, t_ready),
            "switch": fio.phase_stats(lat, t_ready, t1 + 0.001),
            "after": fio.phase_stats(lat, t1, w.t_stop - 0.5)}


def _worst(x, phase):
    """The guest's worst whole second of @phase over its IOPS before, or None."""
    ph = x.get(phase)
    if not ph or med(ph["min_window_iops"]) is None:
        return None
    return ratio(med(ph["min_window_iops"]), med(x["before"]["iops"]))


def _max_ms(x, phase):
    """The longest write of @phase (median over the runs), or 0 if none completed."""
    ph = x.get(phase)
    return med(ph["max_ms"]) if ph else 0


def render(report, load):
    a = report.a
    report.p("## 3. Migration under load")
    report.p()
    report.p(f"fio 4 KiB random writes, O_DIRECT, libaio, iodepth 16, on a "
             f"{fmt_size(a.size)} image, for {a.phase} s before the migration, "
             f"through it, and {a.phase} s after. mirrorfs copies with no speed limit at "
             f"guest shares {', '.join(str(s) for s in SHARES)} (the guest keeps that share "
             "of the rate it has while the copier rests; 0: flat out), with a manual switch "
             "asked for as soon as all is mirrored; qemu-storage-daemon runs "
             "`blockdev-mirror` in `copy-mode=background` and `write-blocking` "
             "(cache.direct=on, aio=native on both sides) and `block-job-complete` at "
             "READY, under the same fio job through its NBD export (fio's nbd engine): "
             "QEMU refuses to mirror a node under a writable FUSE export, whose RESIZE "
             "permission the mirror job does not share. Phases: before; copying (start to "
             "all mirrored, QEMU's READY); switch (from then to done: the request and the "
             "flush and stun, QEMU's completion); after. Worst 1 s window: the fewest writes "
             "completed in any whole second of the phase.")
    report.p()
    rows = []
    for who, x in load.items():
        base = med(x["before"]["iops"])
        for ph in PHASES:
            y = x.get(ph)
            if not y:
                continue
            rows.append([who, ph, rng(y["iops"]), num(ratio(med(y["iops"]), base), 2) + "×",
                         rng(y["min_window_iops"]),
                         num(ratio(med(y["min_window_iops"]), base), 2) + "×",
                         rng(y["p99_ms"], 2), rng(y["max_ms"], 1)])
    report.table(["system", "phase", "IOPS", "vs before", "worst 1 s window", "vs before",
                  "p99 ms", "max ms"], rows)
    rows = []
    for who, x in load.items():
        rows.append([who, rng(x["mirrored_s"], 2), rng(x["switch_s"], 2),
                     rng(x["stun_ms"], 2) if "stun_ms" in x else "–",
                     num(_worst(x, "copying"), 2) + "×",
                     num(_max_ms(x, "copying"), 1)])
    report.table(["system", "start to all mirrored s", "switch: request to done s", "stun ms",
                  "worst second copying vs before", "longest write copying ms"], rows)
    report.p("The stun's p50 and p99 over many switches under writes are the stun "
             "scenario's (section 4).")
    report.p()
    qb, qw = load[QSD_BACKGROUND], load[QSD_BLOCKING]
    for who, q in ((QSD_BACKGROUND, qb), (QSD_BLOCKING, qw)):
        never = sum(1 for r in q["runs"] if not r.get("converged", 1))
        if never:
            report.p(f"{who}: not READY after {converge_s(a)} s in {never} of {len(q['runs'])} "
                     "runs (cancelled): it never converged under the writes.")
            report.p()
    # QEMU's time to READY: the background mirror's, or the write-blocking one's if it never was.
    q_time = med(qb["mirrored_s"]) or med(qw["mirrored_s"]) or float("inf")
    q_which = ("its background mirror's" if med(qb["mirrored_s"]) else
               "its write-blocking mirror's (the background one never converged)")
    q_stall = max(_max_ms(q, ph) for q in (qb, qw) for ph in ("copying", "switch"))
    # The fastest share that leaves the guest half of its rate in every second.
    half = [(med(load[mfs_name(s)]["mirrored_s"]), s) for s in SHARES
            if (_worst(load[mfs_name(s)], "copying") or 0) >= 0.5]
    if half:
        t, s = min(half)
        report.target("under load: all mirrored no later than QEMU's background mirror, the "
                      "guest keeping ≥ 0.5× in every second",
                      f"{num(t, 2)} s at guest_share={s} vs {num(q_time, 2)} s, {q_which}",
                      t <= q_time)
    else:
        report.target("under load: all mirrored no later than QEMU's background mirror, the "
                      "guest keeping ≥ 0.5× in every second", "no share kept 0.5× in every "
                      "second", False)
    m = load[mfs_name(DEFAULT_SHARE)]
    worst, mt = _worst(m, "copying"), med(m["mirrored_s"])
    report.target("under load, default share: ≥ 0.8× in every second, copy ≤ 1.5× QEMU's",
                  f"{num(worst, 2)}×, {num(mt, 2)} s = {num(ratio(mt, q_time), 2)}× QEMU's",
                  worst is not None and worst >= 0.8 and mt <= 1.5 * q_time)
    stall = max(_max_ms(load[mfs_name(s)], ph) for s in SHARES for ph in ("copying", "switch"))
    report.target("under load: no guest write stall longer than QEMU's longest",
                  f"{num(stall, 1)} ms vs {num(q_stall, 1)} ms", stall <= q_stall)
