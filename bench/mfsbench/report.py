# SPDX-License-Identifier: GPL-2.0-or-later
"""The report: the machine a run was taken on, the formatting of figures,
and the Markdown document that the scenarios' render steps fill."""

import datetime
import os
import subprocess

from .util import GiB, ROOT, output


def machine(work):
    """What a run was taken on, @work being on the file system measured."""
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
            "fuse enable_uring": first(["cat", "/sys/module/fuse/parameters/enable_uring"]),
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
    """The Markdown report of a run's results @res, taken with the options
    @args: the machine, the targets met or not, then a section a scenario."""

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

    def render(self, m, scenarios):
        """The document, for the machine @m; @scenarios: {name: module}
        (scenarios.ALL), whose render() writes the section of each result."""
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
        for name, scenario in scenarios.items():
            if name in self.r:
                scenario.render(self, self.r[name])
        body = self.lines[body_start:]
        self.lines = self.lines[:body_start]
        if self.targets:
            self.p("## Targets")
            self.p()
            self.table(["target", "measured", ""],
                       [[t, m_, verdict(ok)] for t, m_, ok in self.targets])
        self.lines += body
        return "\n".join(self.lines) + "\n"
