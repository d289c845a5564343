# SPDX-License-Identifier: GPL-2.0-or-later
"""FUSE daemons run in the foreground, so that their CPU time and memory
can be read from /proc, and unmounted whatever happens; and the mirrorfs
build under test."""

import os
import subprocess
import time

from . import control
from .util import log, mounted


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


class Mirrorfs:
    """The tools under test, from a build directory.  A mount's control
    socket is its `control` attribute, for the client (control.py)."""

    def __init__(self, build, io_uring=None):
        self.build = build
        # -o io_uring= on every mount that does not choose its own (--io-uring).
        self.io_uring = io_uring
        self.daemon = os.path.join(build, "fuse", "mirrorfs")
        for p in (self.daemon,):
            if not os.access(p, os.X_OK):
                raise SystemExit(f"bench: {p} is missing: build first (scripts/build.sh {build})")

    def mount(self, src, mnt, logdir, *opts):
        sock = os.path.join(logdir, f"ctl.{os.path.basename(mnt)}.sock")
        argv = [self.daemon, "-f", "-o", f"control={sock}"]
        if self.io_uring and not any(o.startswith("io_uring=") for o in opts):
            argv += ["-o", f"io_uring={self.io_uring}"]
        for o in opts:
            argv += ["-o", o]
        d = Daemon("mirrorfs", argv + [src, mnt], mnt, logdir).start()
        d.control = sock
        return d

    def migrate_once(self, src, mnt, dst, logdir, poll=0.01, **start):
        """Mount @src, migrate it to @dst, unmount: (seconds, final status)."""
        d = self.mount(src, mnt, logdir)
        try:
            return control.migrate(d, dst, poll=poll, **start)
        finally:
            d.stop()
            forget_migration(src)


def forget_migration(source):
    """Remove the journal a switch leaves in the source, so that the next
    mount serves the source again instead of following it to the target."""
    try:
        os.unlink(os.path.join(source, ".mirrorfs-journal"))
    except FileNotFoundError:
        pass
