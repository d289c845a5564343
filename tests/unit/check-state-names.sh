#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# The states' names have one home, lib/mig-names.c; the bench, written in
# Python, names them again in bench/mfsbench/control.py.  Check that the
# two lists hold the same names, so that a state added or renamed in lib/
# is not missed by the bench's waits.
# Usage: check-state-names.sh SRCDIR
set -uo pipefail
src="${1:?usage: check-state-names.sh SRCDIR}"
lib="$(grep -o '{"[a-z-]*", MFS_MIG_' "$src/lib/mig-names.c" | cut -d'"' -f2 | sort -u)"
bench="$(grep -E '^[A-Z_]+ = "[a-z-]+"$' "$src/bench/mfsbench/control.py" | cut -d'"' -f2 | sort -u)"
if [[ -z "$lib" || "$lib" != "$bench" ]]; then
	echo "state names: lib/mig-names.c and bench/mfsbench/control.py differ:" >&2
	diff <(echo "$lib") <(echo "$bench") >&2
	exit 1
fi
echo "state names: the same $(wc -l <<<"$lib") in lib/ and bench/"
