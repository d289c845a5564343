# SPDX-License-Identifier: GPL-2.0-or-later
"""What every part of the bench uses: sizes, logging, processes, the page
cache and the disk, statistics over runs, and the files measured."""

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import time

# The top of the source tree.
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MiB = 1 << 20
GiB = 1 << 30


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def parse_size(text):
    m = re.fullmatch(r"(\d+)([KMGT]?)", text.strip().upper())
    if not m:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 512M, 2G)")
    return int(m.group(1)) << {"": 0, "K": 10, "M": 20, "G": 30, "T": 40}[m.group(2)]


def fmt_size(n):
    for unit, shift in (("G", 30), ("M", 20), ("K", 10)):
        if n >= 1 << shift and n % (1 << shift) == 0:
            return f"{n >> shift}{unit}"
    return str(n)


def run(*argv, **kw):
    return subprocess.run([str(a) for a in argv], check=True, **kw)


def output(*argv):
    return subprocess.run([str(a) for a in argv], check=True, capture_output=True,
                          text=True).stdout.strip()


def drop_caches():
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
    except OSError:
        pass


def settle_disk(path, quiet=2.0, timeout=60.0):
    """Wait until the disk under @path has completed no I/O for @quiet
    seconds: a copy timed right after another one's writeback pays for it
    (a migration run after `dd`+sync took 1.3x, run after itself 0.9x)."""
    st = os.stat(path)
    stat = f"/sys/dev/block/{os.major(st.st_dev)}:{os.minor(st.st_dev)}/stat"
    if not os.path.exists(stat):
        time.sleep(quiet)
        return
    deadline = time.monotonic() + timeout
    with open(stat) as f:
        last, since = f.read(), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.25)
        with open(stat) as f:
            now = f.read()
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return


def rotated(items, r):
    """@items in the order of run @r: each follows each other equally often."""
    items = list(items)
    k = r % len(items)
    return items[k:] + items[:k]


def mounted(path):
    path = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4].replace("\\040", " ")
            if point == path:
                return True
    return False


def median(xs):
    return statistics.median(xs) if xs else None


def percentile(sorted_xs, p):
    if not sorted_xs:
        return None
    k = min(len(sorted_xs) - 1, max(0, int(round(p / 100.0 * len(sorted_xs) + 0.5)) - 1))
    return sorted_xs[k]


def summary(xs):
    """Median and range of one figure over the runs."""
    xs = [x for x in xs if x is not None]
    if not xs:
        return None
    return {"median": median(xs), "min": min(xs), "max": max(xs), "runs": xs}


def fill_file(path, size, data=None, extent=64 * MiB, stride=None):
    """Write @size bytes of random data, or only @data bytes of it in
    extents of @extent spread evenly (a sparse file of apparent @size)."""
    data = size if data is None else data
    n_ext = max(1, data // extent)
    stride = size // n_ext
    with open(path, "wb") as f:
        for i in range(n_ext):
            f.seek(i * stride)
            left = min(extent, data - i * extent)
            while left > 0:
                step = min(left, 4 * MiB)
                f.write(os.urandom(step))
                left -= step
        f.truncate(size)
    os.sync()


def allocated(path):
    if os.path.isdir(path):
        return sum(os.lstat(os.path.join(d, n)).st_blocks * 512
                   for d, _, names in os.walk(path) for n in names)
    return os.stat(path).st_blocks * 512


def image_workdir(workdir, size):
    """src, dst, mnt and logs under @workdir, made if missing, and the
    image src/disk.img of @size, filled unless it is already that size
    (kept from an earlier run): (src, dst, mnt, logs, image)."""
    dirs = [os.path.join(workdir, d) for d in ("src", "dst", "mnt", "logs")]
    for d in dirs:
        os.makedirs(d, exist_ok=True)
    img = os.path.join(dirs[0], "disk.img")
    if not os.path.exists(img) or os.path.getsize(img) != size:
        log(f"filling a {fmt_size(size)} image")
        fill_file(img, size)
    return (*dirs, img)


def clear_dir(path):
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
