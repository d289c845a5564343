#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Check the output of `mirrorfs-status --json` against its specification.

    status-schema.py [--state S[,S...]] [--mountpoint P] [--source P]
                     [--target P|null] [--served P] [--static]
                     [--sizes-from DIR] FILE|-

Two layers:

1. The schema: every documented top-level member is present, with its
   type (an integer is a JSON number without a fraction and never a
   boolean; "number" is an integer or a fraction), the enumerations hold,
   the nullable members are null exactly when the specification says.

2. Consistency that must hold whatever the guests do:
   - idle: no target, no files, nothing counted;
   - a file is "pending" iff nothing of it is copied (cp_offset 0), and
     "copying" only with cp_offset > 0;
   - once the migration is mirrored (mirrored, switching, switched) every
     file is mirrored, with cp_offset == size;
   - stun_ms is a number exactly when switched; error is a string exactly
     when failed;
   - the mount serves the source until the switch and the target after;
   - bytes_cloned is part of bytes_copied.

   With --static (nothing writes to the files while the migration runs,
   so no file grows or shrinks): bytes_copied <= bytes_total, every
   cp_offset <= size, and once mirrored bytes_copied == bytes_total.
   bytes_total counts the data present at the start; guest writes past
   the old end may legitimately push bytes_copied above it, which is why
   this is not checked without --static.

   With --sizes-from DIR (also static): each file's "size" is the size
   of DIR/path, the real size of the file being migrated.

Prints one line per violation and exits 1 if there is any; exits 0 and
prints nothing otherwise.
"""

import argparse
import json
import os
import sys

STATES = ("idle", "copying", "paused", "mirrored", "switching", "switched",
          "failed", "cancelled", "stopped", "error-paused")
FILE_STATES = ("pending", "copying", "mirrored")
MIRRORED_STATES = ("mirrored", "switching", "switched")


def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v):
    return (is_int(v) or isinstance(v, float)) and v == v  # not NaN


def is_str(v):
    return isinstance(v, str)


def is_null(v):
    return v is None


def nonneg_int(v):
    return is_int(v) and v >= 0


def nonneg_number(v):
    return is_number(v) and v >= 0


def abs_path(v):
    return is_str(v) and v.startswith("/")


# member: (predicate, description).  Every one is required.
TOP = {
    "version": (lambda v: is_int(v) and v == 1, "the integer 1"),
    "mountpoint": (abs_path, "an absolute path"),
    "state": (lambda v: v in STATES, "one of " + " ".join(STATES)),
    "source": (abs_path, "an absolute path"),
    "target": (lambda v: is_null(v) or abs_path(v), "null or an absolute path"),
    "only": (lambda v: is_null(v) or (isinstance(v, list) and len(v) > 0
             and all(is_str(n) and n != "" and "/" not in n for n in v)),
             "null or a non-empty list of names"),
    "served": (abs_path, "an absolute path"),
    "placements": (lambda v: isinstance(v, list) and all(
                   isinstance(p, dict) and is_str(p.get("name")) and abs_path(p.get("dir"))
                   for p in v), "a list of {name, dir}"),
    "transport": (lambda v: v in ("/dev/fuse", "io_uring"), "/dev/fuse or io_uring"),
    "bytes_total": (nonneg_int, "an integer >= 0"),
    "bytes_copied": (nonneg_int, "an integer >= 0"),
    "bytes_cloned": (nonneg_int, "an integer >= 0"),
    "bytes_resumed": (nonneg_int, "an integer >= 0"),
    "verify": (lambda v: is_null(v) or (isinstance(v, dict)
               and v.get("state") in ("pending", "running", "passed", "failed")
               and nonneg_int(v.get("bytes_compared")) and nonneg_int(v.get("differences"))
               and (is_null(v.get("first")) or is_str(v.get("first")))),
               "null or {state, bytes_compared, differences, first}"),
    "rate_bps": (nonneg_int, "an integer >= 0"),
    "eta_s": (lambda v: is_null(v) or nonneg_number(v), "null or a number >= 0"),
    "speed_bps": (nonneg_int, "an integer >= 0"),
    "guest_share": (lambda v: is_int(v) and 0 <= v <= 90, "an integer from 0 to 90"),
    "rested_ms": (nonneg_number, "a number >= 0"),
    "mirrored_writes": (nonneg_int, "an integer >= 0"),
    "waited_writes": (nonneg_int, "an integer >= 0"),
    "max_wait_ms": (nonneg_number, "a number >= 0"),
    "stun_ms": (lambda v: is_null(v) or nonneg_number(v), "null or a number >= 0"),
    "error": (lambda v: is_null(v) or (is_str(v) and v != ""), "null or a non-empty string"),
    "files": (lambda v: isinstance(v, list), "a list"),
    "job": (lambda v: is_null(v) or (is_int(v) and v >= 1), "null or an integer >= 1"),
    "jobs": (lambda v: isinstance(v, list) and all(isinstance(j, dict) for j in v),
             "a list of objects"),
}

# What the status says of each job: at the top for the one shown, in "jobs" for each.
MOUNT_MEMBERS = ("version", "mountpoint", "served", "placements", "transport", "jobs")
JOB = {k: v for k, v in TOP.items() if k not in MOUNT_MEMBERS}

FILE = {
    "path": (lambda v: is_str(v) and v != "" and not v.startswith("/")
             and ".." not in v.split("/"), "a relative path without '..'"),
    "size": (nonneg_int, "an integer >= 0"),
    "cp_offset": (nonneg_int, "an integer >= 0"),
    "state": (lambda v: v in FILE_STATES, "one of " + " ".join(FILE_STATES)),
}


def check(st, args):
    errors = []

    def err(msg):
        errors.append(msg)

    if not isinstance(st, dict):
        return ["the status is not a JSON object"]
    if "ok" in st:
        err('"ok" belongs to the protocol reply, not to the --json status')
    for name, (pred, what) in TOP.items():
        if name not in st:
            err(f"missing member {name!r}")
        elif not pred(st[name]):
            err(f"{name}: {st[name]!r} is not {what}")
    if errors:
        return errors  # the rest relies on the types

    ids = []
    for i, j in enumerate(st["jobs"]):
        for name, (pred, what) in JOB.items():
            if name not in j:
                err(f"jobs[{i}]: missing member {name!r}")
            elif not pred(j[name]):
                err(f"jobs[{i}].{name}: {j[name]!r} is not {what}")
        if not errors:
            if not is_int(j["job"]):
                err(f"jobs[{i}]: no number")
            ids.append(j["job"])
            if (j["stun_ms"] is not None) != (j["state"] == "switched"):
                err(f"jobs[{i}]: stun_ms {j['stun_ms']!r} in state {j['state']}")
            if (j["error"] is not None) != (j["state"] in ("failed", "error-paused")):
                err(f"jobs[{i}]: error {j['error']!r} in state {j['state']}")
    if errors:
        return errors
    if ids != sorted(set(ids)):
        err(f"jobs: numbers {ids} not rising, or repeated")
    if (st["job"] is None) != (st["state"] == "idle"):
        err(f"job is {st['job']!r} in state {st['state']} (null exactly when idle)")
    if st["job"] is not None and st["job"] not in ids:
        err(f"job {st['job']} is not in jobs {ids}")
    elif st["job"] is not None:
        shown = next(j for j in st["jobs"] if j["job"] == st["job"])
        for name in ("target", "only"):  # the state may move between the two reads
            if shown[name] != st[name]:
                err(f"the job shown, {st['job']}: {name} {st[name]!r}, "
                    f"but {shown[name]!r} in jobs")

    state = st["state"]
    files = st["files"]
    for i, f in enumerate(files):
        if not isinstance(f, dict):
            err(f"files[{i}] is not an object")
            continue
        for name, (pred, what) in FILE.items():
            if name not in f:
                err(f"files[{i}]: missing member {name!r}")
            elif not pred(f[name]):
                err(f"files[{i}].{name}: {f[name]!r} is not {what}")
    if errors:
        return errors
    paths = [f["path"] for f in files]
    if len(set(paths)) != len(paths):
        err(f"files: a path appears twice: {sorted(paths)}")

    # --- consistency -------------------------------------------------------
    if state == "idle":
        if st["target"] is not None:
            err(f"idle but target is {st['target']!r}")
        if files or st["bytes_total"] or st["bytes_copied"]:
            err("idle but files or bytes are counted")
    elif st["target"] is None:
        err(f"state {state} but no target")
    if (st["stun_ms"] is not None) != (state == "switched"):
        err(f"stun_ms is {st['stun_ms']!r} in state {state} (a number exactly when switched)")
    if (st["error"] is not None) != (state in ("failed", "error-paused")):
        err(f"error is {st['error']!r} in state {state} (a string exactly when failed or error-paused)")
    if state == "switched" and st["only"] is not None:
        # A per-VM job: its entries are placed in the target, the rest served as before.
        placed = {p["name"]: p["dir"] for p in st["placements"]}
        for n in st["only"]:
            if placed.get(n) != st["target"]:
                err(f"switched per-VM job, but {n!r} is placed in {placed.get(n)!r}, not the target")
        if st["served"] != st["source"]:
            err(f"switched per-VM job, but serving {st['served']!r}, not the source {st['source']!r}")
    elif state == "switched":
        if st["served"] != st["target"]:
            err(f"switched but serving {st['served']!r}, not the target {st['target']!r}")
    elif state != "switching" and st["served"] != st["source"]:
        err(f"state {state} but serving {st['served']!r}, not the source {st['source']!r}")
    for f in files:
        where = f"file {f['path']!r}"
        if f["state"] == "pending" and f["cp_offset"] != 0:
            err(f"{where}: pending with cp_offset {f['cp_offset']}")
        if f["state"] == "copying" and f["cp_offset"] == 0:
            err(f"{where}: copying with cp_offset 0")
        if f["state"] == "mirrored" and f["cp_offset"] != f["size"]:
            err(f"{where}: mirrored with cp_offset {f['cp_offset']} != size {f['size']}")
        if state in MIRRORED_STATES and f["state"] != "mirrored":
            err(f"{where}: {f['state']} while the migration is {state}")
        if args.static and f["cp_offset"] > f["size"]:
            err(f"{where}: cp_offset {f['cp_offset']} > size {f['size']}")
    if st["bytes_cloned"] > st["bytes_copied"]:
        err(f"bytes_cloned {st['bytes_cloned']} > bytes_copied {st['bytes_copied']}")
    if args.static:
        if st["bytes_copied"] > st["bytes_total"]:
            err(f"bytes_copied {st['bytes_copied']} > bytes_total {st['bytes_total']}")
        if state in MIRRORED_STATES and st["bytes_copied"] != st["bytes_total"]:
            err(f"{state} but bytes_copied {st['bytes_copied']} != bytes_total {st['bytes_total']}")
    if args.sizes_from:
        for f in files:
            p = os.path.join(args.sizes_from, f["path"])
            try:
                real = os.stat(p, follow_symlinks=False).st_size
            except OSError as e:
                err(f"file {f['path']!r}: {e}")
                continue
            if f["size"] != real:
                err(f"file {f['path']!r} ({f['state']}): size {f['size']}, "
                    f"but {p} holds {real} bytes")

    # --- what the caller expects --------------------------------------------
    if args.state and state not in args.state.split(","):
        err(f"state {state!r}, expected {args.state}")
    for name in ("mountpoint", "source", "served"):
        want = getattr(args, name)
        if want is not None and st[name] != want:
            err(f"{name} {st[name]!r}, expected {want!r}")
    if args.target is not None:
        want = None if args.target == "null" else args.target
        if st["target"] != want:
            err(f"target {st['target']!r}, expected {want!r}")
    return errors


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--state")
    ap.add_argument("--mountpoint")
    ap.add_argument("--source")
    ap.add_argument("--target")
    ap.add_argument("--served")
    ap.add_argument("--static", action="store_true")
    ap.add_argument("--sizes-from")
    ap.add_argument("file")
    args = ap.parse_args()
    if args.sizes_from:
        args.static = True
    try:
        if args.file == "-":
            text = sys.stdin.read()
        else:
            with open(args.file) as f:
                text = f.read()
        st = json.loads(text)
    except (OSError, ValueError) as e:
        print(f"not JSON: {e}")
        return 1
    errors = check(st, args)
    for e in errors:
        print(e)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
