# SPDX-License-Identifier: GPL-2.0-or-later
"""fio: one timed run and its figures, writers (or readers) left running
in the background with every request's latency logged, and the figures
of a phase of such a log."""

import glob
import json
import os
import re
import signal
import subprocess
import time

from .util import MiB, percentile


def read_json(path):
    with open(path) as f:
        text = f.read()
    return json.loads(text[text.index("{"):])  # fio may print notes first


def job_argv(filename, rw, bs, direct, iodepth, size, threads=1):
    """O_DIRECT with libaio; buffered, or several threads (QEMU's aio=threads), with psync."""
    engine = "libaio" if direct and threads == 1 else "psync"
    args = ["fio", "--name=bench", f"--filename={filename}", f"--rw={rw}", f"--bs={bs}",
            f"--direct={int(direct)}", f"--ioengine={engine}", f"--iodepth={iodepth}",
            f"--size={size}", "--randrepeat=0", "--norandommap", "--fallocate=none",
            "--output-format=json"]
    if threads > 1:
        args += ["--thread", f"--numjobs={threads}", "--group_reporting"]
    return args


def run(workdir, filename, rw, bs, direct, iodepth, size, runtime, threads=1):
    """One fio job of @runtime seconds on @filename: its IOPS, MiB/s, p99
    completion latency (µs) and bytes moved, or {"error": why} if it failed."""
    out = os.path.join(workdir, "fio.json")
    p = subprocess.run(job_argv(filename, rw, bs, direct, iodepth, size, threads) +
                       ["--time_based", f"--runtime={runtime}", f"--output={out}"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if p.returncode != 0:
        errors = re.findall(r"io_u error on file .*?: ([^:]+):", p.stderr)
        why = errors[0] if errors else (p.stderr.strip().splitlines() or ["?"])[-1]
        return {"error": f"fio failed: {why}"}
    job = read_json(out)["jobs"][0]
    ddir = "read" if "read" in rw else "write"
    r = job[ddir]
    return {"iops": r["iops"], "bw_mib": r["bw_bytes"] / MiB,
            "p99_us": r["clat_ns"]["percentile"]["99.000000"] / 1e3,
            "bytes": r["io_bytes"]}


class Load:
    """Guest writers (or readers: @rw) left running in the background, one
    job a file, each logging every request's completion time (Unix epoch,
    ms) and latency.  fio writes its logs when SIGTERM stops it."""

    def __init__(self, workdir, name, filenames, size, iodepth=16, bs="4k", nbd_uri=None,
                 rw="randwrite"):
        self.prefix = os.path.join(workdir, name)
        argv = ["fio", "--output-format=json", f"--output={self.prefix}.json",
                f"--rw={rw}", f"--bs={bs}", f"--iodepth={iodepth}", f"--size={size}",
                "--randrepeat=0", "--norandommap", "--fallocate=none", "--time_based",
                "--runtime=86400", "--log_avg_msec=0", "--log_unix_epoch=1",
                "--disable_slat=1", "--disable_lat=1"]
        if nbd_uri:
            # fio's NBD client (libnbd): QEMU's own I/O path, no kernel in between.
            argv += ["--ioengine=nbd", f"--uri={nbd_uri}"]
            filenames = [None]
        else:
            argv += ["--ioengine=libaio", "--direct=1"]
        for i, fn in enumerate(filenames):
            argv += [f"--name=w{i}", f"--write_lat_log={self.prefix}.{i}"]
            argv += [f"--filename={fn}"] if fn else []
        self.n = len(filenames)
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.t_start = time.time()

    def settle(self, seconds):
        """Let the writers run (laid out, warmed up) for @seconds."""
        time.sleep(seconds)
        if self.proc.poll() is not None:
            raise RuntimeError(f"fio exited ({self.proc.returncode}) at its start")

    def stop(self):
        """Stop the writers: their (completion epoch ms, latency ns), sorted."""
        self.t_stop = time.time()
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=300)
        lat = []
        for i in range(self.n):
            for path in sorted(glob.glob(f"{self.prefix}.{i}_clat.*.log")):
                with open(path) as f:
                    for line in f:
                        t, v = line.split(",", 2)[:2]
                        lat.append((int(t), int(v)))
        if not lat:
            raise RuntimeError(f"fio: no write completed ({self.prefix})")
        lat.sort()
        return lat


def phase_stats(lat, t0, t1, window_ms=1000):
    """The writes completed in [t0, t1) (epoch seconds): their IOPS, p99 and
    worst latency, and the IOPS of the worst whole window in the phase."""
    a, b = int(t0 * 1000), int(t1 * 1000)
    phase = [(t, v) for t, v in lat if a <= t < b]
    if not phase or b <= a:
        return None
    sel = sorted(v for _, v in phase)
    worst_t, worst = max(phase, key=lambda x: x[1])
    n_win = (b - a) // window_ms
    counts = [0] * n_win
    for t, _ in phase:
        if t < a + n_win * window_ms:
            counts[(t - a) // window_ms] += 1
    return {"seconds": (b - a) / 1000, "iops": len(sel) / ((b - a) / 1000),
            "p99_ms": percentile(sel, 99) / 1e6, "max_ms": worst / 1e6,
            # when the longest write began, in seconds from the phase's start
            "max_at_s": (worst_t - a) / 1000 - worst / 1e9,
            "min_window_iops": min(counts) * 1000 / window_ms if counts else None,
            "window_iops": [c * 1000 / window_ms for c in counts]}
