#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Throw malformed, hostile and awkward traffic at a mirrorfs control socket.

    fuzz-control.py SOCKET [--seed N] [--budget SECONDS] [--status-cli PATH]

Run by test-control-fuzz.sh while a migration runs.  Every round checks
the daemon's answers, not only that it survives:

  - each request line gets exactly one reply line, a JSON object with
    "ok" (a boolean), "version" 1 and, when ok is false, a non-empty
    "error"; garbage never gets ok true; replies come in order;
  - a connection that sent garbage still serves a valid request after it;
  - a line longer than 64 KiB gets "request too long" and the connection
    is closed; one just under the limit is served;
  - a silent client, and one that sent half a line, hold up nobody: while
    they are connected other clients are answered within 1 s;
  - more than 64 clients at once: the extra ones are told "too many control
    clients" and closed, the others are served.

It never sends a valid pause, resume, switch, cancel or start (nor a speed
that should be accepted), so the migration it runs against goes on as it
would have without it.  After each round it checks that the state and the
copier's limit are as they were (and sets the limit back if a round
changed it after all).  Counts and time are bounded (--budget); --seed makes a
run repeatable (the seed is printed).

Prints a summary; exits 1 if any check failed.
"""

import argparse
import json
import os
import random
import select
import socket
import subprocess
import sys
import time

MAX_REQUEST = 64 * 1024
MAX_CLIENTS = 64
REPLY_TIMEOUT = 5.0  # generous: this must not fail on a loaded machine
FAST = 1.0  # what "at once" means for the silent-client checks
NOWHERE = "/nonexistent/mirrorfs-fuzz-target"

failures = []
counts = {}


def fail(what):
    failures.append(what)
    print("FAIL: " + what, flush=True)


def count(category, n=1):
    counts[category] = counts.get(category, 0) + n


class Closed(Exception):
    pass


class Conn:
    """A client connection with a line buffer."""

    def __init__(self, path, timeout=REPLY_TIMEOUT):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        # The daemon accepts one connection a turn and its backlog is short:
        # a non-blocking connect may find it full (EAGAIN).  Retry for a while.
        self.sock.setblocking(False)
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock.connect(path)
                break
            except (BlockingIOError, InterruptedError):
                if time.monotonic() > deadline:
                    self.sock.close()
                    raise TimeoutError("connect: the listen backlog stayed full")
                time.sleep(0.005)
        self.sock.settimeout(timeout)
        self.buf = b""
        self.eof = False

    def send(self, data):
        self.sock.sendall(data)

    def readline(self, timeout=REPLY_TIMEOUT):
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            if self.eof:
                raise Closed()
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no reply in %.1f s" % timeout)
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except ConnectionResetError:
                data = b""
            if not data:
                self.eof = True
                continue
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        return line

    def at_eof(self, timeout=REPLY_TIMEOUT):
        """True if the daemon closes the connection (after what it sent)."""
        try:
            while True:
                self.readline(timeout)
        except Closed:
            return True
        except (TimeoutError, socket.timeout):
            return False

    def close(self):
        self.sock.close()


def parse_reply(line, what):
    """The reply as a dict, or None after recording what is wrong with it."""
    try:
        r = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        fail(f"{what}: reply is not JSON ({e}): {line[:200]!r}")
        return None
    if not isinstance(r, dict):
        fail(f"{what}: reply is not an object: {line[:200]!r}")
        return None
    if not isinstance(r.get("ok"), bool):
        fail(f"{what}: reply without a boolean \"ok\": {line[:200]!r}")
        return None
    if r.get("version") != 1:
        fail(f"{what}: reply without \"version\": 1: {line[:200]!r}")
    if not r["ok"] and not (isinstance(r.get("error"), str) and r["error"]):
        fail(f"{what}: error reply without an error message: {line[:200]!r}")
    return r


STATUS = b'{"version":1,"command":"status"}'


def expect_replies(conn, what, oks, contains=None):
    """Read len(oks) replies; oks[i] is True, False or None (either)."""
    replies = []
    for i, want in enumerate(oks):
        try:
            line = conn.readline()
        except Closed:
            fail(f"{what}: connection closed before reply {i + 1} of {len(oks)}")
            return replies
        except (TimeoutError, socket.timeout) as e:
            fail(f"{what}: reply {i + 1} of {len(oks)}: {e}")
            return replies
        r = parse_reply(line, what)
        replies.append(r)
        if r is None:
            continue
        if want is not None and r["ok"] != want:
            fail(f"{what}: reply {i + 1}: ok is {r['ok']}, expected {want}: {line[:300]!r}")
        if contains and not r["ok"] and contains not in r.get("error", ""):
            fail(f"{what}: error {r.get('error')!r} does not say {contains!r}")
    return replies


def one_shot(path, data, oks, what, contains=None):
    """Connect, send data, check the replies, then that a status still works."""
    try:
        c = Conn(path)
    except (OSError, TimeoutError) as e:
        fail(f"{what}: connect: {e}")
        return
    try:
        c.send(data)
        expect_replies(c, what, oks, contains)
        c.send(STATUS + b"\n")
        expect_replies(c, what + " (then a status on the same connection)", [True])
    except OSError as e:
        fail(f"{what}: {e}")
    finally:
        c.close()


def status(path):
    """The current status reply as a dict."""
    c = Conn(path)
    try:
        c.send(STATUS + b"\n")
        r = parse_reply(c.readline(), "status")
    finally:
        c.close()
    if r is None or not r["ok"]:
        raise RuntimeError(f"status refused: {r!r}")
    return r


EXPECTED = {}  # what the rounds must not change: "speed_bps"


def untouched(path, what):
    """Check that the migration is as it was; set the copier's limit back if
    it changed, so that the migration still lasts through what follows."""
    st = status(path)
    if st["state"] not in ("copying", "mirrored", "switching", "switched"):
        fail(f"after {what} the migration is {st['state']}")
    speed = EXPECTED["speed_bps"]
    if st["speed_bps"] != speed:
        fail(f"{what} changed the copier's limit from {speed} to {st['speed_bps']}")
        c = Conn(path)
        c.send(json.dumps({"version": 1, "command": "speed", "speed": speed}).encode() + b"\n")
        expect_replies(c, "setting the speed back", [True])
        c.close()


def status_latency(path):
    t = time.monotonic()
    c = Conn(path)
    try:
        c.send(STATUS + b"\n")
        line = c.readline()
    finally:
        c.close()
    r = parse_reply(line, "status")
    if r is not None and not r["ok"]:
        fail(f"status refused: {line[:200]!r}")
    return time.monotonic() - t


# --- rounds -------------------------------------------------------------------


def round_random_bytes(path, rng, deadline):
    for i in range(5000):
        if time.monotonic() > deadline:
            break
        data = bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 2000)))
        data += b"\n"
        n = data.count(b"\n")
        one_shot(path, data, [False] * n, f"random bytes #{i} (seed-determined, {len(data)} bytes)")
        count("random bytes")


def round_random_lines(path, rng, deadline):
    alphabet = bytes(range(0x20, 0x7F))
    for i in range(1000):
        if time.monotonic() > deadline:
            break
        n = rng.choice([0, 1, 10, 100, 1000, 10000, 60000])
        data = bytes(rng.choice(alphabet) for _ in range(n)) + b"\n"
        one_shot(path, data, [False], f"random line #{i} of {n} bytes")
        count("random lines")


def round_truncated(path, rng, deadline):
    templates = [
        STATUS,
        b'{"version":1,"command":"status","extra":{"a":[1,2,{"b":null}]}}',
        b'{"version":1,"command":"speed","speed":"not a rate"}',
        b'{"version":1,"command":"start","target":"' + NOWHERE.encode() + b'","speed":"5M"}',
        b'{"version":1,"command":"frobnicate","args":[1,2,3]}',
    ]
    for i in range(5000):
        if time.monotonic() > deadline:
            break
        t = rng.choice(templates)
        cut = rng.randint(1, len(t) - 1)
        one_shot(path, t[:cut] + b"\n", [False], f"truncated JSON {t[:cut]!r}")
        count("truncated JSON")


def round_huge(path):
    # Just under the limit: served.
    pad = MAX_REQUEST - 100
    line = STATUS[:-1] + b" " * pad + b"}"
    one_shot(path, line + b"\n", [True], f"a status request of {len(line)} bytes (under the limit)")
    count("huge lines")
    # Over it: "request too long", then closed.
    for size in (MAX_REQUEST + 1, MAX_REQUEST + 2000, 100 * 1024, 1024 * 1024):
        what = f"a line of {size} bytes"
        body = STATUS[:-1] + b" " * (size - len(STATUS)) + b"}"
        assert len(body) == size
        try:
            c = Conn(path)
        except (OSError, TimeoutError) as e:
            fail(f"{what}: connect: {e}")
            continue
        try:
            try:
                c.send(body + b"\n")
            except (BrokenPipeError, ConnectionResetError):
                pass  # closed on us half-way: the reply is still there to read
            expect_replies(c, what, [False], "request too long")
            if not c.at_eof(2.0):
                fail(f"{what}: the connection stayed open after 'request too long'")
        except OSError as e:
            fail(f"{what}: {e}")
        finally:
            c.close()
        count("huge lines")


def round_nul(path):
    cases = [
        (b"\0\n", [False]),
        (b"\0" * 100 + b"\n", [False]),
        (STATUS + b"\0\n", [False]),
        (b'{"version":1,"command":"sta\0tus"}\n', [False]),
        (b"\0" + STATUS + b"\n", [False]),
        (STATUS + b"\n\0\n" + STATUS + b"\n", [True, False, True]),
    ]
    for data, oks in cases:
        one_shot(path, data, oks, f"NUL bytes {data[:60]!r}", None if True in oks else "NUL")
        count("NUL bytes")


def round_nested(path):
    for depth in (100, 1000, 10000, 30000):
        inner = b"[" * depth + b"]" * depth
        one_shot(path, b'{"version":1,"command":"status","x":' + inner + b"}\n", [None],
                 f"status with an array nested {depth} deep")
        one_shot(path, inner + b"\n", [False], f"a bare array nested {depth} deep")
        count("deeply nested", 2)
    for depth in (1000, 8000):
        inner = b'{"a":' * depth + b"1" + b"}" * depth
        one_shot(path, inner + b"\n", [False], f"objects nested {depth} deep")
        count("deeply nested")
    one_shot(path, b"[" * 60000 + b"\n", [False], "60000 unclosed brackets")
    one_shot(path, b'{"a":' * 12000 + b"\n", [False], "12000 unclosed objects")
    count("deeply nested", 2)


def round_wrong_types(path):
    bad = []
    for v in ("[]", "{}", "true", "null", '"abc"', "-1", "1.5", "1e30", '"5X"', '""',
              "99999999999999999999999", '"-5M"'):
        bad.append('{"version":1,"command":"speed","speed":%s}' % v)
    bad.append('{"version":1,"command":"speed"}')
    for v in ("5", "[]", "{}", "true", "null", '""'):
        bad.append('{"version":1,"command":"start","target":%s}' % v)
    tgt = json.dumps(NOWHERE)
    for m in ('"speed":[]', '"speed":"fast"', '"chunk":{}', '"chunk":0', '"chunk":"3K"',
              '"switch":5', '"switch":"sometimes"', '"switch":null', '"delete_source":"yes"',
              '"overwrite":1', '"target":' + tgt):
        bad.append('{"version":1,"command":"start","target":%s,%s}' % (tgt, m))
    for v in ("2", "0", "-1", '"1"', "1.0", "null", "[]", "{}", "true"):
        bad.append('{"version":%s,"command":"status"}' % v)
    for v in ("5", "null", "[]", "{}", "true", '""'):
        bad.append('{"version":1,"command":%s}' % v)
    bad += ["[]", "5", '"status"', "null", "true", "{}", '{"version":1}', '[{"command":"status"}]']
    for b in bad:
        one_shot(path, b.encode() + b"\n", [False], f"wrong types {b[:100]}")
        if '"speed"' in b:
            untouched(path, f"wrong types {b[:100]}")
        count("wrong types")
    # Extra members and a missing version are fine.
    for good in ('{"command":"status"}', '{"version":1,"command":"status","extra":[1,{"x":null}]}'):
        one_shot(path, good.encode() + b"\n", [True], f"valid {good}")
        count("wrong types")


def round_unknown(path, rng):
    names = ["STATUS", "Status", "status ", " status", "stat", "statuses", "Pause", "PAUSE",
             "Cancel", "CANCEL", "cancel ", "Switch", "Start", "resume!", "pause\t",
             "cancel\n", "help", "quit", "shutdown", "unmount", "\u00e9tat", "\U0001F600",
             "x" * 10000]
    for _ in range(20):
        names.append("".join(rng.choice("abcdefghijklmnopqrstuvwxyz_-") for _ in range(rng.randint(1, 30))))
    for n in names:
        data = json.dumps({"version": 1, "command": n}).encode() + b"\n"
        c_what = f"unknown command {n[:40]!r}"
        try:
            c = Conn(path)
            c.send(data)
            r = expect_replies(c, c_what, [False], "unknown command")
            if r and r[0] and len(r[0].get("error") or "") > 200:
                fail(f"{c_what}: the error repeats the whole command ({len(r[0]['error'])} characters)")
            c.close()
        except (OSError, TimeoutError) as e:
            fail(f"{c_what}: {e}")
        count("unknown commands")
    # An escaped NUL would cut the command short in C: refused outright.
    for n in ["status\u0000junk", "cancel\u0000x"]:
        data = json.dumps({"version": 1, "command": n}).encode() + b"\n"
        try:
            c = Conn(path)
            c.send(data)
            expect_replies(c, f"command {n!r}", [False], "NUL in a string")
            c.close()
        except (OSError, TimeoutError) as e:
            fail(f"command {n!r}: {e}")
        count("unknown commands")


def round_framing(path):
    # Several requests in one write: as many replies, in order.
    one_shot(path, (STATUS + b"\n") * 200, [True] * 200, "200 pipelined status requests")
    one_shot(path, b"garbage\n" + STATUS + b"\n{\n" + STATUS + b"\n",
             [False, True, False, True], "garbage and status interleaved")
    # CRLF line ends (nc -C, socat crlf, a Windows client): the same request.
    one_shot(path, STATUS + b"\r\n", [True], "a status request ending in CRLF")
    # One byte at a time.
    try:
        c = Conn(path)
        for b in STATUS + b"\n":
            c.send(bytes([b]))
            time.sleep(0.001)
        expect_replies(c, "a request sent one byte at a time", [True])
        c.close()
    except (OSError, TimeoutError) as e:
        fail(f"a request sent one byte at a time: {e}")
    count("framing", 4)


def round_silent_and_half(path):
    """Silent and half-line clients hold up nobody."""
    held = []
    try:
        held.append(Conn(path))  # says nothing
        h = Conn(path)
        h.send(b'{"version":1,"comm')  # half a line, and stays
        held.append(h)
        time.sleep(0.2)
        worst = max(status_latency(path) for _ in range(20))
        if worst > FAST:
            fail(f"with a silent and a half-line client connected, a status took {worst:.2f} s")
        count("silent clients", 2)
        # The half-line client finishes its line: served.
        h.send(b'and":"status"}\n')
        expect_replies(h, "a request completed after a pause", [True])
    except (OSError, TimeoutError) as e:
        fail(f"silent clients: {e}")
    finally:
        for c in held:
            c.close()
    # Half a line, then gone: no harm, and nothing to answer.
    for i in range(20):
        try:
            c = Conn(path)
            c.send(b'{"version":1,"command":"sta')
            c.close()
        except OSError as e:
            fail(f"half a line then disconnect #{i}: {e}")
        count("half lines")
    # Half a line, then end of input (shutdown): the partial line is no request.
    try:
        c = Conn(path)
        c.send(b'{"version":1,"command":"status"')
        c.sock.shutdown(socket.SHUT_WR)
        try:
            line = c.readline()
            r = parse_reply(line, "half a line then EOF")
            if r is not None and r["ok"]:
                fail("half a line then EOF: served as a request")
        except Closed:
            pass
        c.close()
    except (OSError, TimeoutError) as e:
        fail(f"half a line then EOF: {e}")
    count("half lines")
    t = status_latency(path)
    if t > FAST:
        fail(f"after the half lines, a status took {t:.2f} s")


def round_crowd(path, status_cli):
    """More clients than the daemon serves at once."""
    n = MAX_CLIENTS + 16
    conns = []
    try:
        for _ in range(n):
            conns.append(Conn(path))
    except (OSError, TimeoutError) as e:
        fail(f"{n} clients: connect #{len(conns) + 1}: {e}")
    # Let the daemon accept them all; the extra ones are answered at once.
    time.sleep(1.0)
    busy, quiet = [], []
    readable, _, _ = select.select([c.sock for c in conns], [], [], 1.0)
    readable = set(readable)
    for c in conns:
        if c.sock in readable:
            try:
                line = c.readline(1.0)
                r = parse_reply(line, "crowd")
                if r is not None and not r["ok"] and "too many control clients" in r["error"]:
                    busy.append(c)
                    if not c.at_eof(2.0):
                        fail("a client told 'too many control clients' was not disconnected")
                else:
                    fail(f"crowd: unexpected message to a silent client: {line[:200]!r}")
            except (Closed, TimeoutError, socket.timeout, OSError) as e:
                fail(f"crowd: reading a refusal: {e!r}")
        else:
            quiet.append(c)
    if len(busy) != n - MAX_CLIENTS:
        fail(f"{n} clients: {len(busy)} were told 'too many control clients', "
             f"expected {n - MAX_CLIENTS}")
    # While the daemon is full, the CLI says so.
    if status_cli:
        p = subprocess.run([status_cli, "--socket", path, "/"], capture_output=True,
                           text=True, timeout=30)
        if p.returncode != 1 or "too many control clients" not in p.stderr:
            fail(f"mirrorfs-status while the daemon is full: exit {p.returncode}, "
                 f"stderr {p.stderr.strip()!r} (expected exit 1 and 'too many control clients')")
    # The ones held are served.
    served = 0
    for c in quiet:
        try:
            c.send(STATUS + b"\n")
        except OSError as e:
            fail(f"crowd: a held client cannot send: {e}")
    for c in quiet:
        try:
            r = parse_reply(c.readline(), "crowd")
            if r is not None and r["ok"]:
                served += 1
        except (Closed, TimeoutError, socket.timeout, OSError) as e:
            fail(f"crowd: a held client got no reply: {e!r}")
    if served != MAX_CLIENTS:
        fail(f"crowd: {served} of the {len(quiet)} held clients were served, expected {MAX_CLIENTS}")
    for c in conns:
        c.close()
    count("crowd clients", n)
    time.sleep(0.2)
    t = status_latency(path)
    if t > FAST:
        fail(f"after the crowd left, a status took {t:.2f} s")


def observe_non_reader(path):
    """A client that sends and never reads: how long does it hold others up?

    Informational: the daemon bounds this with a send timeout (2 s), it is
    not asserted."""
    c = Conn(path)
    c.sock.setblocking(False)
    sent = 0
    try:
        for _ in range(100000):
            c.sock.send(STATUS + b"\n")
            sent += 1
    except (BlockingIOError, OSError):
        pass
    worst = max(status_latency(path) for _ in range(5))
    c.close()
    print(f"info: a client that sent {sent} requests and read nothing held others up "
          f"for at most {worst:.2f} s", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("socket")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--budget", type=float, default=6.0,
                    help="seconds for the random rounds (the fixed ones always run)")
    ap.add_argument("--status-cli")
    args = ap.parse_args()
    seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(4), "little")
    print(f"fuzz-control: seed {seed}", flush=True)
    rng = random.Random(seed)
    path = args.socket
    t0 = time.monotonic()

    EXPECTED["speed_bps"] = status(path)["speed_bps"]
    rounds = [
        ("random bytes", lambda: round_random_bytes(path, rng, t0 + 0.4 * args.budget)),
        ("random lines", lambda: round_random_lines(path, rng, t0 + 0.7 * args.budget)),
        ("truncated JSON", lambda: round_truncated(path, rng, t0 + args.budget)),
        ("wrong types", lambda: round_wrong_types(path)),
        ("huge lines", lambda: round_huge(path)),
        ("NUL bytes", lambda: round_nul(path)),
        ("deeply nested JSON", lambda: round_nested(path)),
        ("unknown commands", lambda: round_unknown(path, rng)),
        ("framing", lambda: round_framing(path)),
        ("silent and half-line clients", lambda: round_silent_and_half(path)),
        ("crowd", lambda: round_crowd(path, args.status_cli)),
        ("non-reader", lambda: observe_non_reader(path)),
    ]
    for name, fn in rounds:
        t = time.monotonic()
        try:
            fn()
        except Exception as e:  # a round that crashed is a failed check, not a crash
            fail(f"round {name}: {type(e).__name__}: {e}")
        print(f"round {name}: {time.monotonic() - t:.2f} s", flush=True)
        # After each round the daemon still answers, and nothing the round
        # sent changed the migration.  Should a round have changed the
        # copier's limit after all, say so and set it back, so that the
        # migration still lasts through the rounds that follow.
        try:
            untouched(path, f"round {name}")
        except Exception as e:
            fail(f"after round {name}, no status: {type(e).__name__}: {e}")
            break

    total = sum(counts.values())
    print(f"fuzz-control: {total} cases in {time.monotonic() - t0:.1f} s: " +
          ", ".join(f"{k} {v}" for k, v in counts.items()), flush=True)
    if failures:
        print(f"fuzz-control: {len(failures)} failure(s) (seed {seed})", flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
