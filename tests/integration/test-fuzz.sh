#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# The libFuzzer targets (tests/fuzz), FUZZ_SECONDS each (default 20):
#
#   fuzz-size     mfs_parse_size() against a reference parser of its grammar;
#   fuzz-control  control_handle_request() on a real Mfs in a sandbox
#                 (mount namespace and chroot), every reply checked: one
#                 JSON object, "ok", "version" 1, an error when refused,
#                 other users refused.
#
# Built with clang (-fsanitize=fuzzer,address,undefined) by
# tests/fuzz/run-fuzz.sh, which is also the way to longer runs:
#   tests/fuzz/run-fuzz.sh --seconds 3600 --out /var/tmp/mfs-fuzz
# Skipped when clang cannot build a fuzzer (Debian: clang,
# libclang-rt-14-dev; scripts/setup-deps.sh installs them), and in a
# sanitized build of the daemon unless FUZZ_SECONDS is set (the fuzzers do
# not use the build: running them once is enough).

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
require_cmd pkg-config

# The fuzzers are built by clang from the sources, the same whichever
# build runs the suite: once per CI run is enough, in the plain build.
if ldd "$MIRRORFS" 2>/dev/null | grep -qE 'lib[at]san' && [[ -z "${FUZZ_SECONDS:-}" ]]; then
	skip "run in the plain build only (FUZZ_SECONDS=N runs it here too)"
fi
FUZZ_SECONDS="${FUZZ_SECONDS:-20}"
rc=0
"$(dirname "${BASH_SOURCE[0]}")/../fuzz/run-fuzz.sh" --seconds "$FUZZ_SECONDS" --out "$TESTDIR/fuzz" \
	>"$TESTDIR/fuzz.out" 2>&1 || rc=$?
grep -v -e 'warning: ' -e '^ *\^' -e 'note: ' -e 'warnings\? generated' -e '^#define' "$TESTDIR/fuzz.out" >&2 || true
((rc != SKIP)) || skip "clang cannot build a libFuzzer target"
((rc == 0)) || fail "a fuzz target found a problem (see above)"
exit 0
