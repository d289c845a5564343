# SPDX-License-Identifier: GPL-2.0-or-later
"""The options and checks every A/B script of bench/ shares: --build
NAME=DIR (repeatable), --runs, and root with /dev/fuse."""

import argparse
import os
import sys

from .daemon import Mirrorfs
from .util import ROOT


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


def parser(doc, runs):
    """The options every A/B script takes: --build NAME=DIR (repeatable), --runs."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--build", action="append", default=[], metavar="NAME=DIR",
                    help="a mirrorfs build directory, as NAME=DIR (repeatable)")
    ap.add_argument("--runs", type=int, default=runs)
    return ap


def checked_builds(ap, a, tool, reserved=()):
    """Check an A/B script's options and the machine: its builds as {NAME: Mirrorfs}.
    Exits 77 (skipped) without root or /dev/fuse."""
    builds = parse_builds(ap, a.build, reserved)
    if a.runs < 1:
        ap.error("--runs: at least 1")
    if os.geteuid() != 0 or not os.path.exists("/dev/fuse"):
        print(f"{tool}: needs root and /dev/fuse", file=sys.stderr)
        raise SystemExit(77)
    return builds
