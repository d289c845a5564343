#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Where a busy guest's IOPS go during a migration, phase by phase.

One 4 KiB random O_DIRECT writer (iodepth 16, as in the harness's load
scenario; a reader with --rw randread) runs on an image through the
mount for the whole run, while migrations with a manual switch come and
go under it.  Each migration is timed to "mirrored" with one copier
setting, then left mirrored with the copier done, then cancelled (the
source is served alone again), so one run measures the guest:

  - alone: no migration;
  - mirrored, copier done: each write lands twice, nothing else;
  - while copying, with each copier setting given: double writes below
    the cursor, plus the copier's own reads and writes.

A setting is SPEED:SHARE[:CHUNK], the copier's speed limit (0: none),
the share of the time it leaves to a busy guest (the start request's
"guest_share", in percent; 0: none) and its chunk size (default: the
daemon's).  The settings are taken in an order
rotated from run to run.  Prints, for each phase, the guest's IOPS and
their ratio to "alone" in the same run, and the time each setting took
to copy the image; then the medians.

  bench/load_split.py --size 1G --settings 0:0,0:50,100M:0 --runs 3 --out /tmp/split

Uses the harness's package, bench/mfsbench.  Needs root and /dev/fuse.
"""

import argparse
import json
import os
import statistics
import sys
import time

from mfsbench import control, daemon, fio, report, util


def label(setting):
    speed, share, chunk = setting
    return (f"speed {util.fmt_size(speed) + '/s' if speed else 'unlimited'}, guest share {share}%"
            + (f", chunk {util.fmt_size(chunk)}" if chunk else ""))


def one_run(mfs, a, src, dst, mnt, logs, settings, r):
    d = mfs.mount(src, mnt, logs)
    marks = []  # (phase, t0, t1, setting, copy seconds)
    try:
        w = fio.Load(a.dir, f"split{r}", [os.path.join(mnt, "disk.img")], a.size, rw=a.rw)
        w.settle(2)
        t = time.time()
        time.sleep(a.phase)
        marks.append(("alone", t, time.time(), None, None))
        for speed, share, chunk in settings:
            util.clear_dir(dst)
            t0 = time.time()
            control.request(d, "start", target=dst, switch="manual", overwrite=True,
                            speed=speed, guest_share=share, **({"chunk": chunk} if chunk else {}))
            control.wait_state(d, control.MIRRORED)
            t1 = time.time()
            marks.append(("copying", t0, t1, (speed, share, chunk), t1 - t0))
            time.sleep(a.phase)
            marks.append(("mirrored", t1, time.time(), (speed, share, chunk), None))
            control.cancel(d)
            t = time.time()
            time.sleep(a.phase)
            marks.append(("alone", t, time.time(), None, None))
        lat = w.stop()
    finally:
        d.stop()
        daemon.forget_migration(src)
        util.clear_dir(dst)
    out = []
    for name, t0, t1, setting, secs in marks:
        # Leave out the start of each phase (half a second, or half of a
        # short copy): the writes still in flight belong to the one before.
        ph = fio.phase_stats(lat, t0 + min(0.5, (t1 - t0) / 2), t1)
        out.append({"phase": name, "setting": setting, "copy_s": secs,
                    "iops": ph["iops"] if ph else 0,
                    "min_window_iops": ph["min_window_iops"] if ph else None})
    return out


def alone_iops(phases):
    return statistics.median(p["iops"] for p in phases if p["phase"] == "alone")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default=os.path.join(util.ROOT, "build"))
    ap.add_argument("--size", type=util.parse_size, default=util.GiB)
    ap.add_argument("--settings", default="0:0,0:50,100M:0",
                    help="copier settings to try, SPEED:SHARE, comma-separated")
    ap.add_argument("--phase", type=float, default=8.0,
                    help="seconds of each phase that is not a copy")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--rw", choices=("randwrite", "randread"), default="randwrite",
                    help="what the guest does: 4 KiB random writes (default) or reads")
    ap.add_argument("--dir", default="/var/tmp/mirrorfs-load-split")
    ap.add_argument("--out", metavar="PREFIX",
                    help="write PREFIX.md (medians, with the machine) and PREFIX.json (every "
                         "phase of every run)")
    a = ap.parse_args()
    settings = []
    for spec in a.settings.split(","):
        f = spec.split(":")
        try:
            if len(f) not in (2, 3):
                raise ValueError(spec)
            settings.append((util.parse_size(f[0]), int(f[1]),
                             util.parse_size(f[2]) if len(f) == 3 else 0))
        except (ValueError, argparse.ArgumentTypeError):
            ap.error(f"--settings: {spec!r}: expected SPEED:SHARE[:CHUNK], as 100M:0 or 0:50:4M")
    if a.runs < 1:
        ap.error("--runs: at least 1")
    if os.geteuid() != 0 or not os.path.exists("/dev/fuse"):
        print("load_split: needs root and /dev/fuse", file=sys.stderr)
        return 77
    mfs = daemon.Mirrorfs(os.path.abspath(a.build))
    src, dst, mnt, logs, _ = util.image_workdir(a.dir, a.size)

    runs = []
    try:
        for r in range(a.runs):
            util.drop_caches()
            util.settle_disk(src)
            phases = one_run(mfs, a, src, dst, mnt, logs, util.rotated(settings, r), r)
            runs.append(phases)
            alone = alone_iops(phases)
            for p in phases:
                what = p["phase"] + ("" if p["setting"] is None else ", " + label(p["setting"]))
                secs = f", copied in {p['copy_s']:.1f} s" if p["copy_s"] else ""
                worst = p["min_window_iops"]
                worst = f"{worst / alone:.2f}x" if worst is not None else "-"
                print(f"run {r + 1}: {what}: {p['iops']:.0f} IOPS ({p['iops'] / alone:.2f}x "
                      f"alone, worst second {worst}){secs}", flush=True)
    finally:
        daemon.Daemon.stop_all()
    def ratios(name, setting, key="iops"):
        return [p[key] / alone_iops(phases) for phases in runs for p in phases
                if p["phase"] == name and p["setting"] == setting and p[key] is not None]

    def rng(xs):
        if not xs:
            return "-"
        return f"{statistics.median(xs):.2f}x ({min(xs):.2f}-{max(xs):.2f})"

    alone = statistics.median(alone_iops(ph) for ph in runs)
    rows = []
    for setting in settings:
        secs = [p["copy_s"] for phases in runs for p in phases
                if p["phase"] == "copying" and p["setting"] == setting]
        rows.append([label(setting), f"{statistics.median(secs):.1f} ({min(secs):.1f}-{max(secs):.1f})",
                     rng(ratios("copying", setting)),
                     rng(ratios("copying", setting, "min_window_iops")),
                     rng(ratios("mirrored", setting))])
    head = ["copier", "copy s", "guest while copying", "worst second", "mirrored, copier done"]
    print(f"alone: median {alone:.0f} IOPS")
    for row in rows:
        print("; ".join(f"{h}: {v}" for h, v in zip(head, row)))
    if a.out:
        m = report.machine(a.dir)
        with open(a.out + ".json", "w") as f:
            json.dump({"machine": m, "argv": sys.argv[1:], "runs": runs}, f, indent=1)
        with open(a.out + ".md", "w") as f:
            f.write(f"# Where a busy guest's IOPS go during a migration\n\n"
                    f"Taken {m['date']} by `bench/load_split.py {' '.join(sys.argv[1:])}` on "
                    f"{m['cores']} × {m['cpu']}, Linux {m['kernel']} ({m['virtualization']}); "
                    f"file system `{m['filesystem']}`; {m['fio']}; mirrorfs {m['mirrorfs']}. "
                    f"{a.runs} runs; ratios are to the guest alone in the same run (median "
                    f"{alone:.0f} IOPS of 4 KiB random O_DIRECT "
                    f"{'reads' if a.rw == 'randread' else 'writes'} at iodepth 16 on a "
                    f"{util.fmt_size(a.size)} image), as median (min-max).\n\n")
            f.write("| " + " | ".join(head) + " |\n|" + "---|" * len(head) + "\n")
            for row in rows:
                f.write("| " + " | ".join(row) + " |\n")
        util.log(f"wrote {a.out}.md and {a.out}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
