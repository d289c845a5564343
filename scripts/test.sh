#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Build mirrorfs three times and run every test suite (unit, integration) on each:
#   build/       the default debugoptimized build
#   build-asan/  the same with AddressSanitizer and UndefinedBehaviorSanitizer
#   build-tsan/  ThreadSanitizer, for the engine's locking: unit and integration
#
# Both transports: the kernel's switch for FUSE over io_uring
# (/sys/module/fuse/parameters/enable_uring, off by default) is turned on
# for the run and put back at exit, so the daemon's default (auto) takes
# io_uring; then "meson test --setup classic" runs the integration and
# guest suites again on /dev/fuse (in build-asan/ without the minutes-long
# engine stress of the suite "long").  On a kernel without it, both passes
# run on /dev/fuse.  The suite "network" (a GlusterFS volume as the target)
# runs in build/ and build-asan/ on the default transport only.
# Both are built with -Dwerror=true.  Stops at the first failure and exits
# non-zero.  This is what CI runs (.ci/run).
#
# Integration tests mount FUSE file systems: they need root and /dev/fuse,
# and are skipped (meson reports SKIP) without them.  Run from anywhere:
# the build directories are made in the top of the source tree.
#
# Usage: scripts/test.sh [MESON-TEST-OPTION...]
#   e.g. scripts/test.sh --suite unit
set -euo pipefail

srcdir=$(cd "$(dirname "$0")/.." && pwd)
cd "$srcdir"

step() { printf '\n=== %s\n' "$*"; }

uring_param=/sys/module/fuse/parameters/enable_uring
if [ -w "$uring_param" ]; then
	uring_was=$(cat "$uring_param")
	trap 'echo "$uring_was" >"$uring_param"' EXIT
	echo Y >"$uring_param"
fi

# "meson test" passes when it has nothing to run: a build that lost its
# tests must not pass as well.
require_tests() {
	local builddir=$1
	shift
	if ! meson test -C "$builddir" --no-rebuild --list "$@" >/dev/null 2>&1; then
		echo "test.sh: no tests to run in $builddir${*:+ for $*}" >&2
		exit 1
	fi
}

step "build/: debugoptimized"
scripts/build.sh build -Dwerror=true
step "build/: tests"
require_tests build "$@"
meson test -C build --print-errorlogs "$@"
if [ -z "${*:-}" ]; then
	step "build/: integration and guest suites on the classic transport"
	meson test -C build --print-errorlogs --setup classic --suite integration --suite slow
fi

step "build-asan/: AddressSanitizer + UndefinedBehaviorSanitizer"
scripts/build.sh build-asan -Db_sanitize=address,undefined -Db_lundef=false -Dwerror=true
step "build-asan/: tests"
# Sanitized code runs a few times slower; meson test already makes
# ASan and UBSan reports fatal.
require_tests build-asan "$@"
# The QEMU guest suite (slow) and the benchmark harness's smoke run (bench)
# run in build/ only: the guest and the harness are the same, and the
# sanitized daemon is covered by every other suite.
meson test -C build-asan --print-errorlogs --timeout-multiplier 3 --no-suite slow \
	--no-suite bench "$@"
if [ -z "${*:-}" ]; then
	step "build-asan/: integration suite on the classic transport"
	meson test -C build-asan --print-errorlogs --timeout-multiplier 3 --setup classic \
		--suite integration --no-suite long
fi

# The engine's locking under ThreadSanitizer: the unit suite, then the
# integration suite against a TSan daemon (libfuse is not instrumented, but
# the daemon's threads meet in lib/: the control thread, the copier, the
# request workers).  The first race aborts the daemon, and fails the test.
# GLib 2.74's slice allocator hands memory between threads under futex
# locks TSan cannot see: plain malloc instead.
if [ -z "${*:-}" ] || [[ " $* " == *" unit "* ]]; then
	step "build-tsan/: ThreadSanitizer, unit and integration suites"
	scripts/build.sh build-tsan -Db_sanitize=thread -Db_lundef=false -Dwerror=true
	G_SLICE=always-malloc \
	TSAN_OPTIONS="halt_on_error=1 abort_on_error=1 second_deadlock_stack=1 suppressions=$srcdir/tests/tsan.supp" \
		meson test -C build-tsan --print-errorlogs --timeout-multiplier 4 --suite unit \
		--suite integration --no-suite slow --no-suite bench
fi

step "all tests passed in build/, build-asan/ and build-tsan/"
