# SPDX-License-Identifier: GPL-2.0-or-later
"""qemu-storage-daemon, the baseline: a FUSE or NBD export of a raw
image, and its QMP monitor (blockdev-mirror)."""

import json
import os
import select
import signal
import socket
import subprocess
import time

from .daemon import Daemon


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
        self.buf = b""
        self.events = []
        json.loads(self._line())  # greeting
        self.cmd("qmp_capabilities")

    def _line(self, deadline=None):
        """The next line QEMU sends; None if none came by @deadline (monotonic)."""
        while b"\n" not in self.buf:
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([self.sock], [], [], left)[0]:
                    return None
            data = self.sock.recv(65536)
            if not data:
                raise RuntimeError("QMP: connection closed")
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode()

    def cmd(self, name, **args):
        self.sock.sendall((json.dumps({"execute": name, "arguments": args}) + "\n").encode())
        while True:
            msg = json.loads(self._line())
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
            line = self._line(deadline)
            if line is None:
                continue  # the deadline decides
            msg = json.loads(line)
            if "event" in msg:
                self.events.append((time.time(), msg))

    def close(self):
        self.sock.close()
