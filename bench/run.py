#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""The mirrorfs benchmark harness.

One command runs every scenario of bench/README.md several times, side by
side with its baselines (native I/O, libfuse's example passthrough_ll,
qemu-storage-daemon's FUSE export and its blockdev-mirror), and writes a
Markdown and a JSON table of medians, ranges and ratios, with the machine
they were taken on.  Ratios always compare figures taken in the same run.

    bench/run.py                  # everything, bench/results.{md,json}
    bench/run.py --quick          # the CI smoke version: small and short
    bench/run.py --only stun,idle --runs 5

Needs root (FUSE mounts, drop_caches), fio, qemu-storage-daemon and
libfuse3-dev's examples: scripts/setup-deps.sh installs them all.

This is the entry point: the options, the checks, the run and the files
written.  The harness is the package beside it, bench/mfsbench (see its
__init__.py), with one module a scenario in mfsbench/scenarios/.
"""

import argparse
import glob
import json
import os
import shutil
import signal
import sys
import tempfile
import traceback

from mfsbench import scenarios
from mfsbench.bench import Bench
from mfsbench.daemon import Daemon
from mfsbench.report import Report, machine
from mfsbench.scenarios.passthrough import PASSTHROUGH_LL_SRC
from mfsbench.util import GiB, MiB, ROOT, log, parse_size


URING_PARAM = "/sys/module/fuse/parameters/enable_uring"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(ROOT, "build"),
                    help="the build directory to take mirrorfs from (default: build)")
    ap.add_argument("--dir", default="/var/tmp",
                    help="where to make the work directory: the file system measured")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results"),
                    help="write OUT.md and OUT.json (default: bench/results)")
    ap.add_argument("--only", default=",".join(scenarios.ALL),
                    help="the scenarios to run, comma-separated")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--size", type=parse_size, default=2 * GiB,
                    help="the image of the idle and load scenarios (default 2G)")
    ap.add_argument("--pt-size", type=parse_size, default=1 * GiB)
    ap.add_argument("--runtime", type=int, default=10, help="seconds per fio run")
    ap.add_argument("--phase", type=int, default=5,
                    help="seconds of load before and after a migration")
    ap.add_argument("--stun-cycles", type=int, default=30)
    ap.add_argument("--quick", action="store_true",
                    help="the smoke version: tiny sizes, one short run of each")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--io-uring", choices=("auto", "on", "off"),
                    help="mirrorfs's -o io_uring= for every mount that does not pick its "
                         "own (default: the daemon's, auto)")
    args = ap.parse_args()
    args.argv = sys.argv[1:]
    args.sparse_size, args.sparse_data = 8 * GiB, 1 * GiB
    args.stun_files, args.stun_file_size = 4, 64 * MiB
    args.scale_sizes, args.scale_data_cap, args.small_files = [GiB, 4 * GiB, 16 * GiB], 4 * GiB, 1000
    if args.quick:
        args.runs, args.size, args.pt_size, args.runtime, args.phase = 1, 64 * MiB, 64 * MiB, 1, 1
        args.sparse_size, args.sparse_data = 256 * MiB, 64 * MiB
        args.stun_cycles, args.stun_file_size = 3, 16 * MiB
        args.scale_sizes, args.scale_data_cap, args.small_files = [16 * MiB, 256 * MiB], 64 * MiB, 50
    only = [s for s in args.only.split(",") if s]
    for s in only:
        if s not in scenarios.ALL:
            ap.error(f"unknown scenario {s!r}")
    # 77: what meson takes for a skipped test.
    if os.geteuid() != 0 or not os.path.exists("/dev/fuse"):
        print("bench: needs root and /dev/fuse: it mounts FUSE file systems and drops caches",
              file=sys.stderr)
        return 77
    for tool in ("fio", "qemu-storage-daemon", "fusermount3", "cc", "pkg-config"):
        if not shutil.which(tool):
            print(f"bench: {tool} is missing: run scripts/setup-deps.sh", file=sys.stderr)
            return 77
    if "passthrough" in only and not os.path.exists(PASSTHROUGH_LL_SRC):
        print(f"bench: {PASSTHROUGH_LL_SRC} is missing: install libfuse3-dev", file=sys.stderr)
        return 77

    # FUSE over io_uring is the administrator's switch, off by default: on
    # for the run (mirrorfs's default transport then takes it), put back after.
    uring_was = None
    if os.access(URING_PARAM, os.W_OK):
        with open(URING_PARAM) as f:
            uring_was = f.read().strip()
        with open(URING_PARAM, "w") as f:
            f.write("Y")
    args.work = tempfile.mkdtemp(prefix="mirrorfs-bench.", dir=args.dir)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: sys.exit(130))
    bench = Bench(args)
    m = machine(args.work)
    results = {}
    status = 0
    try:
        for s in only:
            results[s] = scenarios.ALL[s].measure(bench)
    except Exception as e:
        traceback.print_exc()
        log(f"bench: {type(e).__name__}: {e}")
        status = 1
    finally:
        Daemon.stop_all()
        if uring_was is not None:
            with open(URING_PARAM, "w") as f:
                f.write(uring_was)
        for p in glob.glob(os.path.join(args.work, "logs", "*.log")):
            with open(p) as f:
                if "ERROR" in f.read() and status:
                    log(f"daemon log {p} holds errors")
        if not args.keep:
            shutil.rmtree(args.work, ignore_errors=True)
    if status:
        return status
    report = Report(results, args)
    text = report.render(m, scenarios.ALL)
    doc = {"machine": m, "args": args.argv, "results": results,
           "targets": [{"target": t, "measured": x, "met": ok} for t, x, ok in report.targets]}
    with open(args.out + ".json", "w") as f:
        json.dump(doc, f, indent=1)
    with open(args.out + ".md", "w") as f:
        f.write(text)
    log(f"wrote {args.out}.md and {args.out}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
