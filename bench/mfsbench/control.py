# SPDX-License-Identifier: GPL-2.0-or-later
"""The bench's one client of a mirrorfs mount's control socket, and the
one place in bench/ that names the migration's states.

It speaks the protocol of lib/control.c (one JSON request a connection,
one JSON reply: doc/mirrorfsctl.1.rst, doc/mirrorfs-status.1.rst), as
mirrorfsctl and mirrorfs-status do.  It does not run those CLIs: a
migration is timed from its start request to the first status that shows
the switch, polled every 10 ms (1 ms on a reflink file system, where it
takes milliseconds), and a process started for each poll, or
`mirrorfs-status --wait`'s 200 ms between polls, would be in the figure.

A mounted mirrorfs is anything with a `control` attribute, the path of
its socket: what daemon.Mirrorfs.mount() returns.
"""

import json
import socket
import time

# The states a status reports: the list in lib/mig-names.c, which the
# daemon and mirrorfs-status share (the unit test state-names checks that
# these are the same).  Name them from here, never as strings elsewhere
# in bench/.
IDLE = "idle"
COPYING = "copying"
PAUSED = "paused"
MIRRORED = "mirrored"
SWITCHING = "switching"
SWITCHED = "switched"
FAILED = "failed"
CANCELLED = "cancelled"
STOPPED = "stopped"
ERROR_PAUSED = "error-paused"

# What a migration does not leave by itself: none begun, or ended.
SETTLED = (FAILED, CANCELLED, STOPPED, IDLE, SWITCHED)


def request(mount, command, **args):
    """Send @command with @args: the reply.  Raises unless it is ok."""
    req = {"version": 1, "command": command, **args}
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(30)
        s.connect(mount.control)
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


def status(mount):
    return request(mount, "status")


def wait_state(mount, want, poll=0.01, timeout=3600):
    """Poll the status every @poll seconds until the migration is in state
    @want: that status.  Raises if it ends in another state first."""
    deadline = time.monotonic() + timeout
    while True:
        st = status(mount)
        if st["state"] == want:
            return st
        if st["state"] in SETTLED:
            raise RuntimeError(f"waiting for {want}: the migration to {st.get('target')} "
                               f"is {st['state']}: {st.get('error')}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"migration to {st.get('target')}: not {want} after {timeout} s")
        time.sleep(poll)


def migrate(mount, target, poll=0.01, **args):
    """Start a migration and wait for the switch: (seconds, final status).
    The time runs from the start request to the first status that shows
    the switch, polled every @poll seconds."""
    t0 = time.monotonic()
    request(mount, "start", target=target, **args)
    st = wait_state(mount, SWITCHED, poll=poll)
    return time.monotonic() - t0, st


def cancel(mount, poll=0.01):
    """Cancel the migration and wait until it is cancelled (or none is
    left, idle): that status."""
    request(mount, "cancel")
    while True:
        st = status(mount)
        if st["state"] in (CANCELLED, IDLE):
            return st
        time.sleep(poll)
