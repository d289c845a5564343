#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""A/B of migration under load: mirrorfs builds, order rotated.

Runs bench/run.py's load scenario for mirrorfs only (fio 4 KiB random
O_DIRECT writes at iodepth 16 through the mount, a migration in the
middle) with each build given, in an order rotated from run to run, and
prints per run and as medians: the guest's IOPS before, its IOPS and worst
second during the migration as ratios to before, its longest write and
when that write began, the IOPS of the migration's first second, and the
migration's time.

  bench/ab_load.py --build old=/tmp/old-build --build new=build --runs 4

With --target NAME=DIR (repeatable) each build migrates to each of those
directories in turn (rotated too), e.g. a local disk and a network file
system's mount: bench/gluster.sh does that for GlusterFS.

Needs root and /dev/fuse.
"""

import json
import os
import shutil
import statistics
import sys
import types

from mfsbench import ab, daemon, report, util
from mfsbench.bench import Bench
from mfsbench.scenarios import load

COLUMNS = [("IOPS before", "before_iops", "{:,.0f}"),
           ("during vs before", "during_ratio", "{:.2f}×"),
           ("worst second vs before", "worst_ratio", "{:.2f}×"),
           ("first second vs before", "first_ratio", "{:.2f}×"),
           ("longest write ms", "max_ms", "{:.0f}"),
           ("it began at s", "max_at_s", "{:.2f}"),
           ("migration s", "migration_s", "{:.2f}"),
           ("stun ms", "stun_ms", "{:.1f}")]


def digest(run):
    # "during": the copy (the scenario's "copying" phase); a copy shorter
    # than a second has no whole window: its own rate stands for them.
    before, during = run["before"], run["copying"]
    worst = during["min_window_iops"]
    first = during["window_iops"][0] if during["window_iops"] else during["iops"]
    return {"before_iops": before["iops"],
            "during_ratio": during["iops"] / before["iops"],
            "worst_ratio": (during["iops"] if worst is None else worst) / before["iops"],
            "first_ratio": first / before["iops"],
            "max_ms": during["max_ms"], "max_at_s": during["max_at_s"],
            "migration_s": run["migration_s"], "stun_ms": run["stun_ms"]}


def render(rows, builds):
    head = "| build | " + " | ".join(c[0] for c in COLUMNS) + " |"
    lines = [head, "|" + "---|" * (1 + len(COLUMNS))]
    for b in builds:
        cells = []
        for _, key, fmt in COLUMNS:
            xs = [r[key] for r in rows[b]]
            cells.append(fmt.format(statistics.median(xs)) + " (" + fmt.format(min(xs))
                         + "–" + fmt.format(max(xs)) + ")")
        lines.append(f"| {b} | " + " | ".join(cells) + " |")  # b: a build, or build → target
    return "\n".join(lines)


def main():
    ap = ab.parser(__doc__, runs=4)
    ap.add_argument("--size", type=util.parse_size, default=2 * util.GiB)
    ap.add_argument("--phase", type=int, default=5,
                    help="seconds of load before and after the migration")
    ap.add_argument("--guest-share", type=int, default=50)
    ap.add_argument("--dir", default="/var/tmp/mirrorfs-ab-load",
                    help="work directory (kept, so that the image is filled once)")
    ap.add_argument("--target", action="append", default=[], metavar="NAME=DIR",
                    help="migrate to DIR (repeatable; default: DIR/dst of --dir)")
    ap.add_argument("--out", help="write OUT.md and OUT.json")
    a = ap.parse_args()
    builds = ab.checked_builds(ap, a, "ab_load")
    targets = {}
    for t in a.target:
        name, sep, path = t.partition("=")
        if not sep or not name or not os.path.isdir(path):
            ap.error(f"--target {t}: NAME=DIR, DIR an existing directory")
        targets[name] = os.path.join(path, "ab-load-dst")

    bench = Bench(types.SimpleNamespace(build=next(iter(builds.values())).build,
                                        work=a.dir, size=a.size, phase=a.phase))
    src, mnt = bench.dir("src"), bench.dir("mnt")
    if not targets:
        targets = {"": bench.dir("dst")}
    # One row per build and target: "build" alone when there is one target.
    cases = {(b if len(targets) == 1 else f"{b} → {t}"): (b, t) for b in builds for t in targets}
    img = os.path.join(src, "disk.img")
    if not os.path.exists(img) or os.path.getsize(img) != a.size:
        util.fill_file(img, a.size)
    rows = {c: [] for c in cases}
    raw = {c: [] for c in cases}
    try:
        for r in range(a.runs):
            for c in util.rotated(list(cases), r):
                b, t = cases[c]
                dst = targets[t]
                util.clear_dir(dst)
                util.drop_caches()
                util.settle_disk(dst)
                bench.mfs = builds[b]
                run = load.run_mirrorfs(bench, src, dst, mnt, guest_share=a.guest_share)
                raw[c].append(run)
                rows[c].append(digest(run))
                print(f"run {r + 1}: {c}: " + ", ".join(
                    f"{name} " + fmt.format(rows[c][-1][key]) for name, key, fmt in COLUMNS),
                    flush=True)
    finally:
        daemon.Daemon.stop_all()
        for dst in targets.values():
            shutil.rmtree(dst, ignore_errors=True)
    table = render(rows, list(cases))
    print(table)
    if a.out:
        m = report.machine(a.dir)
        with open(a.out + ".json", "w") as f:
            json.dump({"machine": m, "runs": a.runs, "size": a.size, "phase": a.phase,
                       "guest_share": a.guest_share,
                       "builds": {b: builds[b].build for b in builds},
                       "targets": {t: os.path.dirname(d) for t, d in targets.items()},
                       "results": raw}, f,
                      indent=1)
        with open(a.out + ".md", "w") as f:
            f.write(f"Taken {m['date']} on {m['cores']} × {m['cpu']}, Linux {m['kernel']}; "
                    f"file system `{m['filesystem']}`; {m['fio']}, libfuse {m['libfuse']}; "
                    f"mirrorfs {m['mirrorfs']}.  A {util.fmt_size(a.size)} image, {a.phase} s of "
                    f"load before and after the migration, guest_share {a.guest_share}; "
                    f"median (min–max) of {a.runs} runs, the order rotated from run to "
                    f"run.\n\n{table}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
