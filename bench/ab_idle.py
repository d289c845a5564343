#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""A/B of idle migration: mirrorfs builds against cp+sync, order rotated.

Migrates one fully written image to another directory of the same file
system with each mirrorfs build given, and copies it with cp (and dd)
for a baseline, in an order rotated from run to run so that each method
follows each other equally often: on a virtual disk, a copy run straight
after another one pays for its predecessor's writeback.  Prints each
time and the medians, as ratios to cp+sync.

  bench/ab_idle.py --build new=build --build old=/tmp/old-build --runs 6

Uses the harness's package, bench/mfsbench (fill, drop caches, mount,
migrate).  Needs root and /dev/fuse.
"""

import os
import statistics
import subprocess
import sys
import time

from mfsbench import ab, daemon, util


def copy_with(how, img, dst):
    t0 = time.monotonic()
    if how == "dd":
        subprocess.run(["dd", f"if={img}", f"of={dst}/disk.img", "bs=1M", "status=none"],
                       check=True)
    else:
        subprocess.run(["cp", img, dst], check=True)
    os.sync()
    return time.monotonic() - t0


def main():
    ap = ab.parser(__doc__, runs=6)
    ap.add_argument("--dd", action="store_true", help="time dd bs=1M+sync too")
    ap.add_argument("--size", type=util.parse_size, default=2 * util.GiB)
    ap.add_argument("--dir", default="/var/tmp/mirrorfs-ab-idle",
                    help="work directory (kept, so that the image is filled once)")
    a = ap.parse_args()
    builds = ab.checked_builds(ap, a, "ab_idle", reserved=("cp+sync", "dd"))

    src, dst, mnt, logs, img = util.image_workdir(a.dir, a.size)
    order = ["cp+sync"] + (["dd"] if a.dd else []) + list(builds)
    times = {how: [] for how in order}
    try:
        for r in range(a.runs):
            for how in util.rotated(order, r):
                util.clear_dir(dst)
                util.drop_caches()
                util.settle_disk(dst)
                if how in builds:
                    t, _ = builds[how].migrate_once(src, mnt, dst, logs)
                else:
                    t = copy_with(how, img, dst)
                times[how].append(t)
                print(f"run {r + 1}: {how}: {t:.2f} s", flush=True)
    finally:
        daemon.Daemon.stop_all()
        util.clear_dir(dst)
    base = statistics.median(times["cp+sync"])
    for how, ts in times.items():
        m = statistics.median(ts)
        print(f"{how}: median {m:.2f} s ({min(ts):.2f}-{max(ts):.2f}), {m / base:.2f}x cp+sync")
    return 0


if __name__ == "__main__":
    sys.exit(main())
