# SPDX-License-Identifier: GPL-2.0-or-later
"""The scenarios of bench/README.md, one module each.  A scenario module
has NAME, measure(bench), which runs it and returns its part of the
results (results.json's "results"[NAME]), and render(report, results),
which writes its section of the Markdown report and its targets."""

from . import idle, load, passthrough, scale, stun

# By name, in the order of the report (and of --only's default).
ALL = {m.NAME: m for m in (passthrough, idle, load, stun, scale)}
