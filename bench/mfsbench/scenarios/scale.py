# SPDX-License-Identifier: GPL-2.0-or-later
"""5. Scale: one migration each of images of growing size (sparse past a
cap of data) and of many small files: time per GiB of data, and the
daemon's peak RSS."""

import os

from .. import control
from ..report import num
from ..util import GiB, MiB, clear_dir, drop_caches, fill_file, fmt_size, log

NAME = "scale"


def measure(bench):
    """One migration of each case, unlimited: its time and the daemon's
    VmHWM once mounted and at the switch."""
    a = bench.a
    cases = []
    for size in a.scale_sizes:
        data = min(size, a.scale_data_cap)
        cases.append((f"{fmt_size(size)} image" + (
            f" ({fmt_size(data)} of data)" if data < size else ""), size, data, 1))
    cases.append((f"{a.small_files} small files of 64K", 64 * 1024, 64 * 1024,
                  a.small_files))
    out = []
    for name, size, data, count in cases:
        log(f"scale: {name}")
        src = bench.dir("scale", "src")
        dst, mnt = bench.dir("scale", "dst"), bench.dir("scale", "mnt")
        clear_dir(src)
        clear_dir(dst)
        if count == 1:
            fill_file(os.path.join(src, "disk.img"), size, data)
        else:
            for i in range(count):
                with open(os.path.join(src, f"f{i:05d}"), "wb") as f:
                    f.write(os.urandom(size))
            os.sync()
        drop_caches()
        d = bench.mfs.mount(src, mnt, bench.logdir)
        try:
            rss0 = d.peak_rss()
            secs, _ = control.migrate(d, dst, poll=0.05)
            rss = d.peak_rss()
        finally:
            d.stop()
        out.append({"case": name, "apparent": size * count, "data": data * count,
                    "seconds": secs, "s_per_gib_data": secs / (data * count / GiB),
                    "rss_mounted_mib": rss0 / MiB, "peak_rss_mib": rss / MiB})
        clear_dir(src)
        clear_dir(dst)
    return out


def render(report, sc):
    report.p("## 5. Scale")
    report.p()
    report.p("One migration each, unlimited, page cache dropped before it; RSS is the "
             "daemon's VmHWM, once mounted and at the switch.")
    report.p()
    report.table(["case", "apparent", "data", "seconds", "s per GiB of data",
                  "RSS mounted MiB", "peak RSS MiB"],
                 [[c["case"], fmt_size(c["apparent"]), fmt_size(c["data"]), num(c["seconds"], 2),
                   num(c["s_per_gib_data"], 2), num(c["rss_mounted_mib"], 1),
                   num(c["peak_rss_mib"], 1)] for c in sc])
    peak = max(c["peak_rss_mib"] for c in sc)
    report.target("daemon peak RSS ≤ 64 MiB whatever the image size", f"{num(peak, 1)} MiB",
                  peak <= 64)
