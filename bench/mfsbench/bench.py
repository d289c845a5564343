# SPDX-License-Identifier: GPL-2.0-or-later
"""What the scenarios of one run share: its options, the mirrorfs build
under test, and the work directory, with the daemons' logs in it."""

import os

from .daemon import Mirrorfs


class Bench:
    """@args: the options (bench/run.py's), with at least build and work."""

    def __init__(self, args):
        self.a = args
        self.mfs = Mirrorfs(args.build, getattr(args, "io_uring", None))
        self.work = args.work
        self.logdir = os.path.join(self.work, "logs")
        os.makedirs(self.logdir, exist_ok=True)

    def dir(self, *parts):
        """The directory @parts under the work directory, made if missing."""
        path = os.path.join(self.work, *parts)
        os.makedirs(path, exist_ok=True)
        return path
