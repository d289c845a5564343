# SPDX-License-Identifier: GPL-2.0-or-later
"""mirrorfs's benchmark harness, as a package.  bench/run.py is its entry
point; the A/B scripts beside it (ab_*.py, load_split.py) use it too.

  util        sizes, logging, processes, page cache and disk, statistics, files
  daemon      FUSE daemons in the foreground; the mirrorfs build under test
  control     the one client of a mount's control socket, and the state names
  fio         fio runs, background writers, and their figures
  qsd         qemu-storage-daemon and its QMP monitor, the baseline
  report      the machine, the formatting of figures, the Markdown report
  ab          the options and checks the A/B scripts share
  bench       what the scenarios of one run share: options, build, work directory
  scenarios/  one module per scenario of bench/README.md, each with a
              measure step (-> the results' JSON) and a render step (-> Markdown)
"""
