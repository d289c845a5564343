#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# The engine's layering, as doc/design.md draws it, checked on the source:
#   - the served tree (mfs*.c, mfs-int.h) includes nothing of the job and
#     calls none of its functions: it reaches a job through mfs-job.h's
#     observer only;
#   - the job (migration.c, mig-*.c) reaches the tree through mfs-job.h,
#     never through mfs-int.h (Mfs's fields);
#   - below both (mirror-*, gate, journal, claim, util, lock.h) knows neither;
#   - every file of lib/ opens with a comment on what it is, and stays
#     under LIMIT lines (a file past it is doing two jobs).
# Usage: check-layering.sh SRCDIR
set -uo pipefail
cd "${1:?usage: check-layering.sh SRCDIR}/lib" || exit 1
LIMIT=750
fail=0
bad() {
	echo "layering: $*" >&2
	fail=1
}

tree=(mfs.c mfs-ns.c mfs-file.c mfs-dir.c mfs-place.c mfs-job.c mfs-int.h mfs-job.h)
job=(migration.c mig-*.c migration-int.h mig-state.h)
below=(mirror-*.c mirror-*.h gate.c gate.h journal.c journal.h claim.c util.c util.h lock.h)

for f in "${tree[@]}"; do
	grep -Hn '#include "\(migration\|migration-int\|mig-state\|control\)\.h"' "$f" &&
		bad "$f: the served tree includes the job"
	grep -Hn '\bmig_[a-z_]*(\|\bmigration_[a-z_]*(\|\bmfs_migration_[a-z_]*(' "$f" &&
		bad "$f: the served tree calls into the job"
done
for f in "${job[@]}"; do
	grep -Hn '#include "mfs-int\.h"' "$f" && bad "$f: the job reaches into the tree's insides"
done
for f in "${below[@]}"; do
	grep -Hn '#include "\(mfs-int\|mfs-job\|migration\|migration-int\|mig-state\)\.h"' "$f" &&
		bad "$f: below the tree and the job, it includes them"
done
for f in *.c *.h; do
	n=$(wc -l <"$f")
	((n <= LIMIT)) || bad "$f: $n lines, over $LIMIT"
	sed -n 2p "$f" | grep -q '^/\*' || bad "$f: does not open with a comment on what it is"
done
exit $fail
