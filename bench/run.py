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
"""

import argparse
import datetime
import glob
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MiB = 1 << 20
GiB = 1 << 30
PASSTHROUGH_LL_SRC = "/usr/share/doc/libfuse3-dev/examples/passthrough_ll.c"


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


# --- daemons -----------------------------------------------------------------

class Daemon:
    """A FUSE daemon run in the foreground, so that its CPU time and
    memory can be read from /proc."""

    live = []

    def __init__(self, name, argv, mountpoint, logdir):
        self.name = name
        self.argv = [str(a) for a in argv]
        self.mountpoint = mountpoint
        self.logpath = os.path.join(logdir, f"{name}.{len(Daemon.live)}.{time.time():.0f}.log")
        self.proc = None

    def start(self, timeout=60):
        self.logf = open(self.logpath, "w")
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=self.logf,
                                     stderr=subprocess.STDOUT)
        Daemon.live.append(self)
        deadline = time.monotonic() + timeout
        while not mounted(self.mountpoint):
            if self.proc.poll() is not None:
                Daemon.live.remove(self)
                raise RuntimeError(f"{self.name} exited ({self.proc.returncode}) before mounting "
                                   f"{self.mountpoint}: {self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.name}: {self.mountpoint} not mounted after {timeout}s")
            time.sleep(0.02)
        return self

    def log_tail(self):
        self.logf.flush()
        with open(self.logpath) as f:
            return " | ".join(f.read().strip().splitlines()[-5:])

    def cpu_seconds(self):
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def peak_rss(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        return None

    def unmount(self):
        subprocess.run(["fusermount3", "-u", self.mountpoint], capture_output=True)

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            if self.proc is not None and not self.logf.closed:
                self.logf.close()
            if self in Daemon.live:
                Daemon.live.remove(self)
            return
        self.unmount()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            subprocess.run(["fusermount3", "-uz", self.mountpoint], capture_output=True)
            self.proc.kill()
            self.proc.wait()
        if self.mountpoint and mounted(self.mountpoint):
            subprocess.run(["umount", "-l", self.mountpoint], capture_output=True)
        Daemon.live.remove(self)
        self.logf.close()

    @classmethod
    def stop_all(cls):
        for d in list(cls.live):
            try:
                d.stop()
            except Exception as e:  # keep going: every mount must go
                log(f"stopping {d.name}: {e}")


class QsdDaemon(Daemon):
    """qemu-storage-daemon exporting one raw image over FUSE (at
    @export_file) or, with @nbd_socket, over NBD on a Unix socket; QMP on
    @qmp_path."""

    def __init__(self, image, export_file, qmp_path, logdir, nbd_socket=None):
        argv = ["qemu-storage-daemon",
                "--blockdev", f"driver=file,node-name=src-file,filename={image},"
                              "cache.direct=on,aio=native",
                "--blockdev", "driver=raw,node-name=src,file=src-file",
                "--chardev", f"socket,id=qmp,path={qmp_path},server=on,wait=off",
                "--monitor", "chardev=qmp,mode=control"]
        if nbd_socket:
            argv += ["--nbd-server", f"addr.type=unix,addr.path={nbd_socket}",
                     "--export", "type=nbd,id=exp,node-name=src,name=disk,writable=on"]
            self.nbd_uri = f"nbd+unix:///disk?socket={nbd_socket}"
        else:
            open(export_file, "a").close()
            argv += ["--export",
                     f"type=fuse,id=exp,node-name=src,mountpoint={export_file},writable=on"]
        super().__init__("qsd", argv, export_file, logdir)
        self.qmp_path = qmp_path
        self.nbd_socket = nbd_socket

    def start(self, timeout=60):
        if not self.nbd_socket:
            return super().start(timeout)
        self.logf = open(self.logpath, "w")
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=self.logf,
                                     stderr=subprocess.STDOUT)
        Daemon.live.append(self)
        deadline = time.monotonic() + timeout
        while not os.path.exists(self.nbd_socket):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"qemu-storage-daemon: no NBD socket: {self.log_tail()}")
            time.sleep(0.02)
        return self

    def unmount(self):
        # QSD unmounts its export when it quits.
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)


class Qmp:
    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX)
        deadline = time.monotonic() + 10
        while True:
            try:
                self.sock.connect(path)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        self.f = self.sock.makefile("rw")
        self.events = []
        json.loads(self.f.readline())  # greeting
        self.cmd("qmp_capabilities")

    def cmd(self, name, **args):
        self.f.write(json.dumps({"execute": name, "arguments": args}) + "\n")
        self.f.flush()
        while True:
            msg = json.loads(self.f.readline())
            if "event" in msg:
                self.events.append((time.time(), msg))
            elif "error" in msg:
                raise RuntimeError(f"QMP {name}: {msg['error'].get('desc')}")
            else:
                return msg.get("return")

    def wait_event(self, name, timeout=3600):
        deadline = time.monotonic() + timeout
        while True:
            for i, (t, msg) in enumerate(self.events):
                if msg["event"] == name:
                    del self.events[: i + 1]
                    return t, msg
            if time.monotonic() > deadline:
                raise RuntimeError(f"QMP: no {name} after {timeout}s")
            self.sock.settimeout(max(0.1, deadline - time.monotonic()))
            line = self.f.readline()
            if not line:
                raise RuntimeError("QMP: connection closed")
            msg = json.loads(line)
            if "event" in msg:
                self.events.append((time.time(), msg))

    def close(self):
        self.sock.close()


def parse_builds(ap, specs, reserved=()):
    """--build NAME=DIR options (default: build/ as "mirrorfs") as {NAME: Mirrorfs}."""
    builds = {}
    for spec in specs or ["mirrorfs=" + os.path.join(ROOT, "build")]:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path or name in reserved:
            ap.error(f"--build {spec!r}: expected NAME=DIR"
                     + (f", NAME not {', '.join(reserved)}" if reserved else ""))
        builds[name] = Mirrorfs(os.path.abspath(path))
    return builds


def ab_parser(doc, runs):
    """The options every A/B script takes: --build NAME=DIR (repeatable), --runs."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--build", action="append", default=[], metavar="NAME=DIR",
                    help="a mirrorfs build directory, as NAME=DIR (repeatable)")
    ap.add_argument("--runs", type=int, default=runs)
    return ap


def ab_builds(ap, a, tool, reserved=()):
    """Check an A/B script's options and the machine: its builds as {NAME: Mirrorfs}.
    Exits 77 (skipped) without root or /dev/fuse."""
    builds = parse_builds(ap, a.build, reserved)
    if a.runs < 1:
        ap.error("--runs: at least 1")
    if os.geteuid() != 0 or not os.path.exists("/dev/fuse"):
        print(f"{tool}: needs root and /dev/fuse", file=sys.stderr)
        raise SystemExit(77)
    return builds


class Mirrorfs:
    """The tools under test, from a build directory."""

    def __init__(self, build):
        self.build = build
        self.daemon = os.path.join(build, "fuse", "mirrorfs")
        for p in (self.daemon,):
            if not os.access(p, os.X_OK):
                raise SystemExit(f"bench: {p} is missing: build first (scripts/build.sh {build})")

    def mount(self, src, mnt, logdir, *opts):
        sock = os.path.join(logdir, f"ctl.{os.path.basename(mnt)}.sock")
        argv = [self.daemon, "-f", "-o", f"control={sock}"]
        for o in opts:
            argv += ["-o", o]
        d = Daemon("mirrorfs", argv + [src, mnt], mnt, logdir).start()
        d.control = sock
        return d


def control(daemon, command, **args):
    req = {"version": 1, "command": command, **args}
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(30)
        s.connect(daemon.control)
        s.sendall((json.dumps(req) + "\n").encode())
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            buf += chunk
    reply = json.loads(buf)
    if not reply.get("ok"):
        raise RuntimeError(f"mirrorfs {command}: {reply.get('error')}")
    return reply


def forget_migration(source):
    """Remove the journal a switch leaves in the source, so that the next
    mount serves the source again instead of following it to the target."""
    try:
        os.unlink(os.path.join(source, ".mirrorfs-journal"))
    except FileNotFoundError:
        pass


def wait_state(daemon, want, poll=0.01, timeout=3600):
    """Poll the status every @poll seconds until the migration is in state
    @want: that status.  Raises if it ends in another state first."""
    deadline = time.monotonic() + timeout
    while True:
        st = control(daemon, "status")
        if st["state"] == want:
            return st
        if st["state"] in ("failed", "cancelled", "idle", "switched"):
            raise RuntimeError(f"waiting for {want}: the migration to {st.get('target')} "
                               f"is {st['state']}: {st.get('error')}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"migration to {st.get('target')}: not {want} after {timeout} s")
        time.sleep(poll)


def migrate(daemon, target, poll=0.01, **args):
    """Start a migration and wait for the switch: (seconds, final status).
    The time runs from the start request to the first status that shows
    the switch, polled every @poll seconds."""
    t0 = time.monotonic()
    control(daemon, "start", target=target, **args)
    st = wait_state(daemon, "switched", poll=poll)
    return time.monotonic() - t0, st


# --- fio -----------------------------------------------------------------------

def fio_json(path):
    with open(path) as f:
        text = f.read()
    return json.loads(text[text.index("{"):])  # fio may print notes first


def fio_args(filename, rw, bs, direct, iodepth, size, threads=1):
    """O_DIRECT with libaio; buffered, or several threads (QEMU's aio=threads), with psync."""
    engine = "libaio" if direct and threads == 1 else "psync"
    args = ["fio", "--name=bench", f"--filename={filename}", f"--rw={rw}", f"--bs={bs}",
            f"--direct={int(direct)}", f"--ioengine={engine}", f"--iodepth={iodepth}",
            f"--size={size}", "--randrepeat=0", "--norandommap", "--fallocate=none",
            "--output-format=json"]
    if threads > 1:
        args += ["--thread", f"--numjobs={threads}", "--group_reporting"]
    return args


def fio_run(workdir, filename, rw, bs, direct, iodepth, size, runtime, threads=1):
    out = os.path.join(workdir, "fio.json")
    p = subprocess.run(fio_args(filename, rw, bs, direct, iodepth, size, threads) +
                       ["--time_based", f"--runtime={runtime}", f"--output={out}"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if p.returncode != 0:
        errors = re.findall(r"io_u error on file .*?: ([^:]+):", p.stderr)
        why = errors[0] if errors else (p.stderr.strip().splitlines() or ["?"])[-1]
        return {"error": f"fio failed: {why}"}
    job = fio_json(out)["jobs"][0]
    ddir = "read" if "read" in rw else "write"
    r = job[ddir]
    return {"iops": r["iops"], "bw_mib": r["bw_bytes"] / MiB,
            "p99_us": r["clat_ns"]["percentile"]["99.000000"] / 1e3,
            "bytes": r["io_bytes"]}


class FioLoad:
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


# --- the scenarios -------------------------------------------------------------

LOAD_MFS = "mirrorfs"
LOAD_MFS_FLAT_OUT = "mirrorfs guest_share=0"
LOAD_QSD = "qsd write-blocking mirror (NBD)"

PASSTHROUGH_JOBS = [
    # name, rw, bs, direct, iodepth, threads
    ("4k randread direct qd1", "randread", "4k", True, 1, 1),
    ("4k randwrite direct qd1", "randwrite", "4k", True, 1, 1),
    ("4k randread direct qd16", "randread", "4k", True, 16, 1),
    ("4k randwrite direct qd16", "randwrite", "4k", True, 16, 1),
    # Synchronous writes from 4 threads on one file, as QEMU's default aio=threads.
    ("4k randwrite direct 4 threads", "randwrite", "4k", True, 1, 4),
    ("4k randread buffered", "randread", "4k", False, 1, 1),
    ("4k randwrite buffered", "randwrite", "4k", False, 1, 1),
    ("1M read direct qd4", "read", "1M", True, 4, 1),
    ("1M write direct qd4", "write", "1M", True, 4, 1),
]


class Bench:
    def __init__(self, args):
        self.a = args
        self.mfs = Mirrorfs(args.build)
        self.work = args.work
        self.logdir = os.path.join(self.work, "logs")
        os.makedirs(self.logdir, exist_ok=True)
        self.results = {}

    def dir(self, *parts):
        path = os.path.join(self.work, *parts)
        os.makedirs(path, exist_ok=True)
        return path

    def build_passthrough_ll(self):
        exe = os.path.join(self.work, "passthrough_ll")
        if not os.path.exists(exe):
            cflags = output("pkg-config", "--cflags", "--libs", "fuse3").split()
            run("cc", "-O2", "-o", exe, PASSTHROUGH_LL_SRC, *cflags)
        return exe

    def migrate_once(self, src, mnt, dst, poll=0.01, **start):
        """Mount @src, migrate it to @dst, unmount: (seconds, final status)."""
        d = self.mfs.mount(src, mnt, self.logdir)
        try:
            return migrate(d, dst, poll=poll, **start)
        finally:
            d.stop()
            forget_migration(src)

    # 1. passthrough cost
    def passthrough(self):
        a = self.a
        src = self.dir("pt", "src")
        img = os.path.join(src, "disk.img")
        log(f"passthrough: filling a {fmt_size(a.pt_size)} image")
        fill_file(img, a.pt_size)
        ptll = self.build_passthrough_ll()
        mnt = {k: self.dir("pt", k) for k in ("mirrorfs", "passthrough_ll")}
        qsd_file = os.path.join(self.work, "pt", "qsd-export")
        systems = {
            "native": lambda: (None, img),
            "mirrorfs": lambda: (self.mfs.mount(src, mnt["mirrorfs"], self.logdir),
                                 os.path.join(mnt["mirrorfs"], "disk.img")),
            "mirrorfs -o noxattr": lambda: (self.mfs.mount(src, mnt["mirrorfs"], self.logdir,
                                                           "noxattr"),
                                            os.path.join(mnt["mirrorfs"], "disk.img")),
            "passthrough_ll": lambda: (Daemon("passthrough_ll",
                                              [ptll, "-f", "-o", f"source={src}",
                                               mnt["passthrough_ll"]],
                                              mnt["passthrough_ll"], self.logdir).start(),
                                       os.path.join(mnt["passthrough_ll"], "disk.img")),
            "qsd-fuse": lambda: (QsdDaemon(img, qsd_file, os.path.join(self.work, "pt.qmp"),
                                           self.logdir).start(), qsd_file),
        }
        raw = {job[0]: {s: [] for s in systems} for job in PASSTHROUGH_JOBS}
        for r in range(a.runs):
            for sysname, up in systems.items():
                daemon, path = up()
                try:
                    for name, rw, bs, direct, qd, threads in PASSTHROUGH_JOBS:
                        log(f"passthrough run {r + 1}/{a.runs}: {sysname}: {name}")
                        drop_caches()
                        cpu0 = daemon.cpu_seconds() if daemon else None
                        res = fio_run(self.work, path, rw, bs, direct, qd, a.pt_size,
                                      a.runtime, threads)
                        if daemon and "bytes" in res:
                            res["cpu_s_per_gib"] = ((daemon.cpu_seconds() - cpu0) /
                                                    (res["bytes"] / GiB)) if res["bytes"] else None
                        raw[name][sysname].append(res)
                finally:
                    if daemon:
                        daemon.stop()
        out = {}
        for name in raw:
            out[name] = {}
            for sysname, runs in raw[name].items():
                ok = [x for x in runs if "error" not in x]
                out[name][sysname] = {
                    k: summary([x.get(k) for x in ok])
                    for k in ("iops", "bw_mib", "p99_us", "cpu_s_per_gib")}
                if len(ok) < len(runs):
                    out[name][sysname]["error"] = next(x["error"] for x in runs if "error" in x)
        self.results["passthrough"] = out

    # 2. idle migration
    def idle(self):
        a = self.a
        src, dst, mnt = self.dir("idle", "src"), self.dir("idle", "dst"), self.dir("idle", "mnt")
        img = os.path.join(src, "disk.img")
        log(f"idle: filling a {fmt_size(a.size)} image")
        fill_file(img, a.size)
        times = {"cp+sync": [], "dd bs=1M+sync": [], "mirrorfs": []}
        stun = []
        for r in range(a.runs):
            for how in rotated(times, r):
                log(f"idle run {r + 1}/{a.runs}: {how}")
                clear_dir(dst)
                drop_caches()
                settle_disk(dst)
                if how == "mirrorfs":
                    t, st = self.migrate_once(src, mnt, dst)
                    stun.append(st["stun_ms"])
                else:
                    t0 = time.monotonic()
                    if how.startswith("cp"):
                        run("cp", img, dst)
                    else:
                        run("dd", f"if={img}", f"of={dst}/disk.img", "bs=1M", "status=none")
                    os.sync()
                    t = time.monotonic() - t0
                times[how].append(t)
        clear_dir(dst)
        dense = {k: summary(v) for k, v in times.items()}
        dense["stun_ms"] = summary(stun)

        # A sparse image: its data only is copied, and stays sparse.
        sp_src, sp_dst = self.dir("idle", "sparse-src"), self.dir("idle", "sparse-dst")
        sp_img = os.path.join(sp_src, "sparse.img")
        log(f"idle: a sparse image, {fmt_size(a.sparse_size)} with "
            f"{fmt_size(a.sparse_data)} of data")
        fill_file(sp_img, a.sparse_size, a.sparse_data)
        ref_dir = self.dir("idle", "ref")
        ref = os.path.join(ref_dir, "data.img")
        fill_file(ref, a.sparse_data)
        # The control: mirrorfs on a dense image of the same data, which
        # tells the cost of sparseness from the migration's fixed costs.
        stimes = {"cp+sync of the data": [], "mirrorfs": [], "mirrorfs, the data dense": []}
        alloc = None
        for r in range(a.runs):
            for how in rotated(stimes, r):
                log(f"idle sparse run {r + 1}/{a.runs}: {how}")
                clear_dir(sp_dst)
                drop_caches()
                settle_disk(sp_dst)
                if how == "mirrorfs":
                    t, _ = self.migrate_once(sp_src, mnt, sp_dst)
                    alloc = {"source": allocated(sp_img),
                             "target": allocated(os.path.join(sp_dst, "sparse.img"))}
                elif how == "mirrorfs, the data dense":
                    t, _ = self.migrate_once(ref_dir, mnt, sp_dst)
                else:
                    t0 = time.monotonic()
                    run("cp", ref, sp_dst)
                    os.sync()
                    t = time.monotonic() - t0
                stimes[how].append(t)
        clear_dir(sp_dst)
        self.results["idle"] = {
            "size": a.size, "dense": dense,
            "sparse": {"apparent": a.sparse_size, "data": a.sparse_data,
                       "times": {k: summary(v) for k, v in stimes.items()},
                       "allocation": alloc},
            "reflink": self.idle_reflink()}

    def idle_reflink(self):
        """The dense image again, between two directories of a loop XFS
        whose files can share blocks: there cp clones by default."""
        a = self.a
        for tool in ("mkfs.xfs", "losetup"):
            if not shutil.which(tool):
                return {"skipped": f"{tool} is missing"}
        fs_img, xfs = os.path.join(self.work, "xfs.img"), self.dir("xfs")
        with open(fs_img, "wb") as f:
            f.truncate(2 * a.size + GiB)
        run("mkfs.xfs", "-q", "-m", "reflink=1", fs_img)
        if subprocess.run(["mount", "-o", "loop", fs_img, xfs]).returncode:
            return {"skipped": "a loop device cannot be mounted here"}
        try:
            src, dst = os.path.join(xfs, "src"), os.path.join(xfs, "dst")
            mnt = self.dir("idle", "mnt")
            os.makedirs(src)
            img = os.path.join(src, "disk.img")
            log(f"idle, reflinks: filling a {fmt_size(a.size)} image on a loop XFS")
            fill_file(img, a.size)
            times = {"cp+sync": [], "cp --reflink=never+sync": [], "mirrorfs": [],
                     "mirrorfs --no-clone": []}
            for r in range(a.runs):
                for how in rotated(times, r):
                    log(f"idle reflink run {r + 1}/{a.runs}: {how}")
                    clear_dir(dst)
                    drop_caches()
                    settle_disk(self.work)  # the loop device's backing disk
                    if how.startswith("mirrorfs"):
                        t, st = self.migrate_once(src, mnt, dst, poll=0.001,
                                                  clone=how == "mirrorfs")
                        if how == "mirrorfs" and st["bytes_cloned"] < st["bytes_total"]:
                            raise RuntimeError(f"cloned {st['bytes_cloned']} bytes of "
                                               f"{st['bytes_total']} on XFS")
                    else:
                        t0 = time.monotonic()
                        run("cp", *how.split("+")[0].split()[1:], img, dst)
                        os.sync()
                        t = time.monotonic() - t0
                    times[how].append(t)
            return {k: summary(v) for k, v in times.items()}
        finally:
            run("umount", xfs)

    # 3. migration under load
    def load(self):
        a = self.a
        src, dst, mnt = self.dir("load", "src"), self.dir("load", "dst"), self.dir("load", "mnt")
        img = os.path.join(src, "disk.img")
        log(f"load: filling a {fmt_size(a.size)} image")
        fill_file(img, a.size)
        systems = {
            LOAD_MFS: lambda: self.load_mirrorfs(src, dst, mnt),
            LOAD_MFS_FLAT_OUT: lambda: self.load_mirrorfs(src, dst, mnt, guest_share=0),
            LOAD_QSD: lambda: self.load_qsd(img, dst),
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
        self.results["load"] = out

    def load_mirrorfs(self, src, dst, mnt, **start_args):
        a = self.a
        d = self.mfs.mount(src, mnt, self.logdir)
        try:
            w = FioLoad(self.work, "load-mfs", [os.path.join(mnt, "disk.img")], a.size)
            w.settle(1 + a.phase)
            t0 = time.time()
            secs, st = migrate(d, dst, **start_args)
            t1 = time.time()
            time.sleep(a.phase)
            lat = w.stop()
            rss = d.peak_rss()
        finally:
            d.stop()
            forget_migration(src)
        return {"migration_s": secs, "stun_ms": st["stun_ms"], "peak_rss_mib": rss / MiB,
                "rested_s": st["rested_ms"] / 1000,
                "before": phase_stats(lat, t0 - a.phase, t0),
                "during": phase_stats(lat, t0, t1),
                "after": phase_stats(lat, t1, w.t_stop - 0.5)}

    def load_qsd(self, img, dst):
        a = self.a
        qmp_path = os.path.join(self.work, "load.qmp")
        nbd_socket = os.path.join(self.work, "load.nbd")
        target = os.path.join(dst, "disk.img")
        with open(target, "wb") as f:
            f.truncate(os.path.getsize(img))
        # Over NBD, not FUSE: a writable FUSE export takes the RESIZE
        # permission, which a mirror job refuses to share ("Permission
        # conflict ... 'resize'"), so QEMU cannot mirror a FUSE export.
        d = QsdDaemon(img, None, qmp_path, self.logdir, nbd_socket=nbd_socket).start()
        try:
            q = Qmp(qmp_path)
            w = FioLoad(self.work, "load-qsd", None, a.size, nbd_uri=d.nbd_uri)
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
                "before": phase_stats(lat, t0 - a.phase, t0),
                "during": phase_stats(lat, t0, t_ready),
                "completion": phase_stats(lat, t_ready, t1 + 0.001),
                "after": phase_stats(lat, t1, w.t_stop - 0.5)}

    # 4. stun
    def stun(self):
        a = self.a
        A, B, mnt = self.dir("stun", "a"), self.dir("stun", "b"), self.dir("stun", "mnt")
        files = [f"vm{i}.raw" for i in range(a.stun_files)]
        for fn in files:
            fill_file(os.path.join(A, fn), a.stun_file_size)
        d = self.mfs.mount(A, mnt, self.logdir)
        stuns, times = [], []
        try:
            w = FioLoad(self.work, "stun", [os.path.join(mnt, fn) for fn in files],
                        a.stun_file_size, iodepth=4)
            w.settle(2)
            t0 = time.time()
            for i in range(a.stun_cycles):
                target = B if i % 2 == 0 else A
                secs, st = migrate(d, target, overwrite=True)
                log(f"stun cycle {i + 1}/{a.stun_cycles}: {st['stun_ms']:.2f} ms")
                stuns.append(st["stun_ms"])
                times.append(secs)
            t1 = time.time()
            lat = w.stop()
        finally:
            d.stop()
        s = sorted(stuns)
        self.results["stun"] = {
            "cycles": len(stuns), "files": len(files), "file_size": a.stun_file_size,
            "stun_ms": {"p50": percentile(s, 50), "p99": percentile(s, 99), "max": s[-1],
                        "all": stuns},
            "cycle_s": summary(times), "writes": phase_stats(lat, t0, t1)}

    # 5. scale
    def scale(self):
        a = self.a
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
            src = self.dir("scale", "src")
            dst, mnt = self.dir("scale", "dst"), self.dir("scale", "mnt")
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
            d = self.mfs.mount(src, mnt, self.logdir)
            try:
                rss0 = d.peak_rss()
                secs, _ = migrate(d, dst, poll=0.05)
                rss = d.peak_rss()
            finally:
                d.stop()
            out.append({"case": name, "apparent": size * count, "data": data * count,
                        "seconds": secs, "s_per_gib_data": secs / (data * count / GiB),
                        "rss_mounted_mib": rss0 / MiB, "peak_rss_mib": rss / MiB})
            clear_dir(src)
            clear_dir(dst)
        self.results["scale"] = out


# --- the report ----------------------------------------------------------------

def machine(work):
    def first(cmd):
        try:
            return output(*cmd).splitlines()[0]
        except (OSError, subprocess.CalledProcessError, IndexError):
            return "unknown"

    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem = int(f.readline().split()[1]) * 1024
    fs = first(["findmnt", "-no", "FSTYPE,SOURCE,OPTIONS", "-T", work])
    try:
        commit = output("git", "-C", ROOT, "describe", "--always", "--dirty")
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    return {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "cores": os.cpu_count(), "cpu": cpu, "memory_gib": round(mem / GiB, 1),
            "kernel": os.uname().release, "filesystem": fs,
            "virtualization": first(["systemd-detect-virt"]),
            "fio": first(["fio", "--version"]),
            "qemu-storage-daemon": first(["qemu-storage-daemon", "--version"]),
            "libfuse": first(["pkg-config", "--modversion", "fuse3"]),
            "mirrorfs": commit}


def med(s, scale=1.0):
    return None if not s else s["median"] * scale


def num(x, digits=0):
    if x is None:
        return "–"
    return f"{x:,.{digits}f}"


def rng(s, digits=0, scale=1.0):
    if not s:
        return "–"
    if len(s["runs"]) == 1:
        return num(s["median"] * scale, digits)
    return (f"{num(s['median'] * scale, digits)} "
            f"({num(s['min'] * scale, digits)}–{num(s['max'] * scale, digits)})")


def ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


def verdict(ok):
    return "met" if ok else "**not met**"


class Report:
    def __init__(self, res, args):
        self.r = res
        self.a = args
        self.lines = []
        self.targets = []  # (target, measured, met)

    def p(self, text=""):
        self.lines.append(text)

    def target(self, what, measured, ok):
        self.targets.append((what, measured, ok))

    def table(self, head, rows):
        self.p("| " + " | ".join(head) + " |")
        self.p("|" + "|".join("---" for _ in head) + "|")
        for row in rows:
            self.p("| " + " | ".join(str(c) for c in row) + " |")
        self.p()

    def passthrough(self, pt):
        self.p("## 1. Passthrough cost, no migration")
        self.p()
        self.p(f"fio on a {fmt_size(self.a.pt_size)} file of random data, {self.a.runtime} s a "
               "run, page cache dropped before each; median (min–max) over the runs. "
               "O_DIRECT rows use libaio, buffered rows psync. The ratio is against native "
               "in the same run. CPU is the daemon's user+system time per GiB moved.")
        self.p()
        systems = [s for s in ("native", "mirrorfs", "mirrorfs -o noxattr", "passthrough_ll",
                               "qsd-fuse") if s in next(iter(pt.values()))]
        rows = []
        for job, by in pt.items():
            metric = "bw_mib" if job.startswith("1M") else "iops"
            base = med(by["native"][metric])
            for s in systems:
                x = by[s]
                if x.get("error"):
                    rows.append([job, s, x["error"], "", "", "", ""])
                    continue
                rows.append([job, s, rng(x["iops"]), rng(x["bw_mib"], 1), rng(x["p99_us"]),
                             num(ratio(med(x[metric]), base), 2) + "×",
                             num(med(x["cpu_s_per_gib"]), 2)])
        self.table(["workload", "system", "IOPS", "MiB/s", "p99 µs", "vs native", "CPU s/GiB"],
                   rows)
        for job, need in (("4k randread direct qd1", 0.85), ("4k randwrite direct qd1", 0.85),
                          ("4k randread direct qd16", 0.5), ("4k randwrite direct qd16", 0.5),
                          ("1M write direct qd4", 0.7)):
            if job not in pt:
                continue
            metric = "bw_mib" if job.startswith("1M") else "iops"
            x = ratio(med(pt[job]["mirrorfs"][metric]), med(pt[job]["native"][metric]))
            self.target(f"passthrough {job} ≥ {need}× native", f"{num(x, 2)}×",
                        x is not None and x >= need)
        behind = []
        for job, by in pt.items():
            metric = "bw_mib" if job.startswith("1M") else "iops"
            m = med(by["mirrorfs"][metric])
            for other in ("passthrough_ll", "qsd-fuse"):
                o = med(by[other][metric]) if not by[other].get("error") else None
                if o is not None and (m is None or m < o):
                    behind.append(f"{job} vs {other} ({num(ratio(m, o), 2)}×)")
        self.target("passthrough ahead of passthrough_ll and qsd-fuse on every row",
                    "behind on: " + "; ".join(behind) if behind else "ahead on every row",
                    not behind)

    def idle(self, idle):
        d = idle["dense"]
        base = med(d["cp+sync"])
        self.p("## 2. Idle migration")
        self.p()
        self.p(f"A fully written {fmt_size(idle['size'])} raw image, migrated to another "
               "directory of the same file system; page cache dropped and the disk left "
               "to go quiet before each, and the order of the copies rotated from run to "
               "run, so that each follows each other as often. mirrorfs is timed from the "
               "start request to the switch (the target is flushed before it).")
        self.p()
        rows = [[k, rng(d[k], 2), num(ratio(med(d[k]), base), 2) + "×"]
                for k in ("cp+sync", "dd bs=1M+sync", "mirrorfs")]
        self.table(["copy", "seconds", "vs cp+sync"], rows)
        x = ratio(med(d["mirrorfs"]), base)
        self.target("idle migration ≤ 1.10× cp+sync", f"{num(x, 2)}×", x is not None and x <= 1.10)
        sp = idle["sparse"]
        t = sp["times"]
        sbase = med(t["cp+sync of the data"])
        self.p(f"A sparse image of {fmt_size(sp['apparent'])} holding {fmt_size(sp['data'])} "
               "of data, against `cp`+`sync` of a dense file of that much data, and "
               "against mirrorfs migrating that dense file (the fixed costs of a "
               "migration without the sparseness); the order rotated from run to run:")
        self.p()
        self.table(["copy", "seconds", "vs copying the data"],
                   [[k, rng(v, 2), num(ratio(med(v), sbase), 2) + "×"] for k, v in t.items()])
        al = sp["allocation"]
        self.p(f"Allocated: source {num(al['source'] / MiB)} MiB, target "
               f"{num(al['target'] / MiB)} MiB.")
        self.p()
        x = ratio(med(t["mirrorfs"]), sbase)
        self.target("sparse image: time in proportion to its data (≤ 1.10× copying the data)",
                    f"{num(x, 2)}×", x is not None and x <= 1.10)
        self.target("sparse image: target allocation ≤ source's",
                    f"{num(al['target'] / MiB)} / {num(al['source'] / MiB)} MiB",
                    al["target"] <= al["source"])
        rl = idle.get("reflink") or {"skipped": "not run"}
        self.p(f"The dense image again, on a file system whose files can share blocks: "
               f"a loop XFS (`mkfs.xfs -m reflink=1`) on a file of the same disk. There "
               f"`cp` clones by default, and so does mirrorfs; `--reflink=never` and "
               f"`--no-clone` copy every byte.")
        self.p()
        if "skipped" in rl:
            self.p(f"Skipped: {rl['skipped']}.")
            self.p()
            return
        rbase = med(rl["cp+sync"])
        self.table(["copy", "seconds", "vs cp+sync"],
                   [[k, rng(v, 3), num(ratio(med(v), rbase), 2) + "×"] for k, v in rl.items()])
        x = ratio(med(rl["mirrorfs"]), rbase)
        self.target("idle migration on a reflink file system ≤ 1.10× cp+sync (both clone)",
                    f"{num(x, 2)}× ({num(med(rl['mirrorfs']) * 1000)} ms against "
                    f"{num(rbase * 1000)} ms)", x is not None and x <= 1.10)

    def load(self, load):
        self.p("## 3. Migration under load")
        self.p()
        self.p(f"fio 4 KiB random writes, O_DIRECT, libaio, iodepth 16, on a "
               f"{fmt_size(self.a.size)} image, for {self.a.phase} s before the migration, "
               f"through it, and {self.a.phase} s after. mirrorfs copies with no speed limit, "
               "twice: leaving a writing guest its default share of the time (50 %, the "
               "start request's `guest_share`), and flat out (`guest_share=0`); "
               "qemu-storage-daemon runs `blockdev-mirror` with `copy-mode=write-blocking` "
               "(cache.direct=on, aio=native on both sides) and `block-job-complete` at "
               "READY, under the same fio job through its NBD export (fio's nbd engine): "
               "QEMU refuses to mirror a node under a writable FUSE export, whose RESIZE "
               "permission the mirror job does not share. Worst 1 s window: the fewest writes "
               "completed in any whole second of the phase.")
        self.p()
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
        self.table(["system", "phase", "IOPS", "vs before", "worst 1 s window", "vs before",
                    "p99 ms", "max ms"], rows)
        m, f, q = load[LOAD_MFS], load[LOAD_MFS_FLAT_OUT], load[LOAD_QSD]
        for who, x in ((LOAD_MFS, m), (LOAD_MFS_FLAT_OUT, f)):
            self.p(f"{who}: migration {rng(x['migration_s'], 2)} s (the copier rested "
                   f"{rng(x['rested_s'], 2)} s of it), stun {rng(x['stun_ms'], 2)} ms, daemon "
                   f"peak RSS {rng(x['peak_rss_mib'], 1)} MiB.")
            self.p()
        self.p(f"qemu-storage-daemon: READY after {rng(q['ready_s'], 2)} s, completed after "
               f"{rng(q['migration_s'], 2)} s.")
        self.p()
        base = med(m["before"]["iops"])
        worst = ratio(med(m["during"]["min_window_iops"]), base)
        self.target("under load: guest IOPS during migration ≥ 0.5× before, in every second",
                    f"{num(ratio(med(m['during']['iops']), base), 2)}× on average, "
                    f"{num(worst, 2)}× in the worst second", worst is not None and worst >= 0.5)
        mt, ft, qt = med(m["migration_s"]), med(f["migration_s"]), med(q["migration_s"])
        self.target("under load: migration no later than QEMU's write-blocking mirror",
                    f"{num(ft, 2)} s flat out ({num(mt, 2)} s leaving the guest 50 %) "
                    f"vs {num(qt, 2)} s", ft <= qt)
        stall = max(med(m[ph]["max_ms"]) for ph in ("before", "during", "after"))
        self.target("under load: no guest write stalls over 50 ms", f"{num(stall, 1)} ms",
                    stall <= 50)

    def stun(self, st):
        s = st["stun_ms"]
        self.p("## 4. Stun")
        self.p()
        self.p(f"{st['cycles']} migrations back and forth between two directories of "
               f"{st['files']} images of {fmt_size(st['file_size'])}, each open and written "
               "by a 4 KiB O_DIRECT iodepth-4 fio job throughout (--overwrite: the other "
               "directory holds the copy of two cycles ago).")
        self.p()
        w = st["writes"]
        self.table(["stun p50 ms", "stun p99 ms", "stun max ms", "cycle s", "write IOPS",
                    "write p99 ms", "longest write ms"],
                   [[num(s["p50"], 2), num(s["p99"], 2), num(s["max"], 2),
                     rng(st["cycle_s"], 2), num(w["iops"]), num(w["p99_ms"], 2),
                     num(w["max_ms"], 1)]])
        self.target("stun p99 ≤ 20 ms with writers running", f"{num(s['p99'], 2)} ms",
                    s["p99"] <= 20)
        self.target("stun cycles: no write stalls over 50 ms", f"{num(w['max_ms'], 1)} ms",
                    w["max_ms"] <= 50)

    def scale(self, sc):
        self.p("## 5. Scale")
        self.p()
        self.p("One migration each, unlimited, page cache dropped before it; RSS is the "
               "daemon's VmHWM, once mounted and at the switch.")
        self.p()
        self.table(["case", "apparent", "data", "seconds", "s per GiB of data",
                    "RSS mounted MiB", "peak RSS MiB"],
                   [[c["case"], fmt_size(c["apparent"]), fmt_size(c["data"]), num(c["seconds"], 2),
                     num(c["s_per_gib_data"], 2), num(c["rss_mounted_mib"], 1),
                     num(c["peak_rss_mib"], 1)] for c in sc])
        peak = max(c["peak_rss_mib"] for c in sc)
        self.target("daemon peak RSS ≤ 64 MiB whatever the image size", f"{num(peak, 1)} MiB",
                    peak <= 64)

    def render(self, m):
        self.p("# mirrorfs benchmark results")
        self.p()
        self.p(f"Taken {m['date']} by `bench/run.py {' '.join(self.a.argv)}` on "
               f"{m['cores']} × {m['cpu']}, {m['memory_gib']} GiB, Linux {m['kernel']} "
               f"({m['virtualization']}); file system `{m['filesystem']}`; {m['fio']}, "
               f"{m['qemu-storage-daemon']}, libfuse {m['libfuse']}; mirrorfs {m['mirrorfs']}. "
               f"{self.a.runs} runs of each; the machine is shared and noisy: ranges are "
               "given, and every ratio is between figures of this same run.")
        self.p()
        body_start = len(self.lines)
        for key in ("passthrough", "idle", "load", "stun", "scale"):
            if key in self.r:
                getattr(self, key)(self.r[key])
        body = self.lines[body_start:]
        self.lines = self.lines[:body_start]
        if self.targets:
            self.p("## Targets")
            self.p()
            self.table(["target", "measured", ""],
                       [[t, m_, verdict(ok)] for t, m_, ok in self.targets])
        self.lines += body
        return "\n".join(self.lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(ROOT, "build"),
                    help="the build directory to take mirrorfs from (default: build)")
    ap.add_argument("--dir", default="/var/tmp",
                    help="where to make the work directory: the file system measured")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results"),
                    help="write OUT.md and OUT.json (default: bench/results)")
    ap.add_argument("--only", default="passthrough,idle,load,stun,scale",
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
    scenarios = [s for s in args.only.split(",") if s]
    for s in scenarios:
        if s not in ("passthrough", "idle", "load", "stun", "scale"):
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
    if "passthrough" in scenarios and not os.path.exists(PASSTHROUGH_LL_SRC):
        print(f"bench: {PASSTHROUGH_LL_SRC} is missing: install libfuse3-dev", file=sys.stderr)
        return 77

    args.work = tempfile.mkdtemp(prefix="mirrorfs-bench.", dir=args.dir)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: sys.exit(130))
    bench = Bench(args)
    m = machine(args.work)
    status = 0
    try:
        for s in scenarios:
            getattr(bench, s)()
    except Exception as e:
        traceback.print_exc()
        log(f"bench: {type(e).__name__}: {e}")
        status = 1
    finally:
        Daemon.stop_all()
        for p in glob.glob(os.path.join(args.work, "logs", "*.log")):
            with open(p) as f:
                if "ERROR" in f.read() and status:
                    log(f"daemon log {p} holds errors")
        if not args.keep:
            shutil.rmtree(args.work, ignore_errors=True)
    if status:
        return status
    results = {"machine": m, "args": args.argv, "results": bench.results}
    report = Report(bench.results, args)
    text = report.render(m)
    results["targets"] = [{"target": t, "measured": x, "met": ok} for t, x, ok in report.targets]
    with open(args.out + ".json", "w") as f:
        json.dump(results, f, indent=1)
    with open(args.out + ".md", "w") as f:
        f.write(text)
    log(f"wrote {args.out}.md and {args.out}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
