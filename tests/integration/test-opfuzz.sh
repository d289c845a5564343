#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# A bounded run of the model-based operation fuzzer (opfuzz.py): three
# workers run seeded random operations through the mount and on a shadow
# directory while migrations start, pause, cancel and switch under them;
# after each switch and at the end the mount must equal the shadow, and the
# raw served directory the mount (see opfuzz.py's header).
#
#   OPFUZZ_SEED=N        the seed (default 1: CI runs the same sequences every
#                        time; the long run, opfuzz.py itself, draws new ones)
#   OPFUZZ_SECONDS=N     its length (default 60; 25 in a sanitized build)
#   OPFUZZ_DISABLE=a,b   the classes to leave out (default: OPFUZZ_KNOWN_BROKEN)
#   OPFUZZ_LOG_DIR=DIR   where a failure's full log goes (default /tmp)
#
# Checks left out by default, for known limits (doc/reliability.md,
# "Operation fuzzer"):
#   chk-special-times  the access time of a symlink, FIFO or directory read
#               after the copy is not carried to the target (regular files'
#               are, at the switch)
#   chk-blocks  a file laid out chunk by chunk on ext4 may take one more
#               extent-tree block (4 KiB) than the source
# The long run: tests/integration/opfuzz.py --duration 3600 (doc/reliability.md).

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
. "$(dirname "${BASH_SOURCE[0]}")/lib-control.sh"

OPFUZZ_KNOWN_BROKEN="chk-special-times,chk-blocks"
if ldd "$MIRRORFS" 2>/dev/null | grep -qE 'lib[at]san'; then
	# Sanitized daemons are 2-10 times slower: fewer operations, same checks.
	seconds="${OPFUZZ_SECONDS:-25}"
else
	seconds="${OPFUZZ_SECONDS:-60}"
fi
args=(--duration "$seconds" --workers 3 --disable "${OPFUZZ_DISABLE-$OPFUZZ_KNOWN_BROKEN}"
	--workdir "$TESTDIR/fuzz" --log-dir "${OPFUZZ_LOG_DIR:-/tmp}"
	--mirrorfs "$MIRRORFS" --ctl "$MIRRORFSCTL" --status "$MIRRORFS_STATUS"
	--hang-timeout 100)
args+=(--seed "${OPFUZZ_SEED:-1}")

# In the background and tracked, so that the EXIT trap stops it (it
# unmounts on SIGTERM) before lib.sh's cleanup detaches what is left.
"$PYTHON" "$(dirname "${BASH_SOURCE[0]}")/opfuzz.py" "${args[@]}" &
pid=$!
track_bg "$pid"
rc=0
wait "$pid" || rc=$?
((rc != SKIP)) || skip "opfuzz cannot run here"
((rc == 0)) || fail "opfuzz found a difference (see above; repeat with OPFUZZ_SEED)"
exit 0
