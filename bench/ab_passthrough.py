#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""A/B of the passthrough: mirrorfs builds against native I/O, order rotated.

Runs bench/run.py's passthrough workloads (all, or those named with --jobs)
on one file natively and through each mirrorfs build given, in an order
rotated from run to run, and prints each figure and the medians, as ratios
to native and to the first build (the baseline) in the same run, and
each build's daemon CPU time (user + system) per GiB moved.  Writes
Markdown and JSON with --out.

  bench/ab_passthrough.py --build old=/tmp/old-build --build new=build --runs 5

Needs root and /dev/fuse.
"""

import json
import os
import statistics
import sys

from mfsbench import ab, daemon, fio, report, util
from mfsbench.scenarios import passthrough


def render_cpu(cpu, builds):
    """A Markdown table of daemon CPU seconds per GiB: medians and ranges."""
    first, others = builds[0], builds[1:]
    lines = ["| workload | " + " | ".join(f"{b} CPU s/GiB" for b in builds)
             + "".join(f" | {b} vs {first}" for b in others) + " |",
             "|" + "---|" * (1 + len(builds) + len(others))]
    for name, per in cpu.items():
        med = {b: statistics.median(per[b]) for b in builds}
        cells = [f"{med[b]:.2f} ({min(per[b]):.2f}–{max(per[b]):.2f})" for b in builds]
        cells += [f"{med[b] / med[first]:.2f}×" for b in others]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def render(iops, builds):
    """A Markdown table: medians and ranges, ratios to native and to the first build."""
    first, others = builds[0], builds[1:]
    order = ["native"] + builds
    lines = ["| workload | " + " | ".join(order) + " | "
             + " | ".join(f"{b} vs native" for b in builds)
             + "".join(f" | {b} vs {first}" for b in others) + " |",
             "|" + "---|" * (1 + len(order) + len(builds) + len(others))]
    for name, per in iops.items():
        med = {how: statistics.median(per[how]) for how in order}
        cells = [f"{med[h]:,.0f} ({min(per[h]):,.0f}–{max(per[h]):,.0f})" for h in order]
        cells += [f"{med[b] / med['native']:.2f}×" for b in builds]
        cells += [f"{med[b] / med[first]:.2f}×" for b in others]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main():
    ap = ab.parser(__doc__, runs=5)
    ap.add_argument("--jobs", help="comma-separated workload names (default: all)")
    ap.add_argument("--runtime", type=int, default=6, help="seconds per fio run")
    ap.add_argument("--size", type=util.parse_size, default=1 * util.GiB)
    ap.add_argument("--dir", default="/var/tmp/mirrorfs-ab-passthrough",
                    help="work directory (kept, so that the file is filled once)")
    ap.add_argument("--out", help="write OUT.md and OUT.json")
    a = ap.parse_args()
    jobs = passthrough.JOBS
    if a.jobs:
        names = a.jobs.split(",")
        unknown = set(names) - {j[0] for j in jobs}
        if unknown:
            ap.error(f"--jobs: unknown {', '.join(sorted(unknown))}; known: "
                     + ", ".join(j[0] for j in jobs))
        jobs = [j for j in jobs if j[0] in names]
    builds = ab.checked_builds(ap, a, "ab_passthrough", reserved=("native",))

    src, mnt, logs = (os.path.join(a.dir, d) for d in ("src", "mnt", "logs"))
    for d in (src, mnt, logs):
        os.makedirs(d, exist_ok=True)
    img = os.path.join(src, "disk.img")
    if not os.path.exists(img) or os.path.getsize(img) != a.size:
        util.fill_file(img, a.size)
    order = ["native"] + list(builds)
    iops = {j[0]: {how: [] for how in order} for j in jobs}
    cpu = {j[0]: {b: [] for b in builds} for j in jobs}
    try:
        for r in range(a.runs):
            for how in util.rotated(order, r):
                d = builds[how].mount(src, mnt, logs) if how in builds else None
                path = os.path.join(mnt if d else src, "disk.img")
                try:
                    for name, rw, bs, direct, qd, threads in jobs:
                        util.drop_caches()
                        cpu0 = d.cpu_seconds() if d else None
                        res = fio.run(a.dir, path, rw, bs, direct, qd, a.size, a.runtime,
                                      threads)
                        if "error" in res:
                            raise SystemExit(f"ab_passthrough: {how}: {name}: {res['error']}")
                        iops[name][how].append(res["iops"])
                        if d and res["bytes"]:
                            cpu[name][how].append((d.cpu_seconds() - cpu0)
                                                  / (res["bytes"] / util.GiB))
                        print(f"run {r + 1}: {how}: {name}: {res['iops']:,.0f} IOPS", flush=True)
                finally:
                    if d:
                        d.stop()
    finally:
        daemon.Daemon.stop_all()
    table = render(iops, list(builds)) + "\n\n" + render_cpu(cpu, list(builds))
    print(table)
    if a.out:
        m = report.machine(a.dir)
        with open(a.out + ".json", "w") as f:
            json.dump({"machine": m, "runs": a.runs, "runtime": a.runtime,
                       "builds": {b: builds[b].build for b in builds}, "iops": iops,
                       "cpu_s_per_gib": cpu}, f,
                      indent=1)
        with open(a.out + ".md", "w") as f:
            f.write(f"Taken {m['date']} on {m['cores']} × {m['cpu']}, Linux {m['kernel']}; "
                    f"file system `{m['filesystem']}`; {m['fio']}, libfuse {m['libfuse']}; "
                    f"mirrorfs {m['mirrorfs']}.  IOPS, median (min–max) of {a.runs} runs of "
                    f"{a.runtime} s each, the order rotated from run to run; then the "
                    f"daemon's CPU time per GiB moved.\n\n{table}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
