#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Build mirrorfs three times and run the test suites on each:
#   build/       the default debugoptimized build
#   build-asan/  the same with AddressSanitizer and UndefinedBehaviorSanitizer
#   build-tsan/  ThreadSanitizer, for the engine's locking
#
# Both transports: the kernel's switch for FUSE over io_uring
# (/sys/module/fuse/parameters/enable_uring, off by default) is turned on
# for the run and put back at exit, so the daemon's default (auto) takes
# io_uring; "meson test --setup classic" runs tests again on /dev/fuse.
# On a kernel without it, both passes run on /dev/fuse.
#
# What runs where (the suites are tagged in tests/*/meson.build):
#   build/       every suite on the default transport: unit, integration
#                (with the minutes-long engine stress of 'long'), network
#                (GlusterFS and sshfs targets), slow (QEMU guests), bench;
#                then on the classic transport every guest variant
#                ('slow'), the network targets, the engine stress of
#                'long' and 'core' (the data path and the job's threads)
#   build-asan/  unit and integration but 'long', on both transports
#   build-tsan/  unit, and 'core' on both transports
# So every suite passes on both transports.  That is what CI runs
# (.ci/run), a little over an hour on two vCPUs.  With --full, every
# pass runs everything it can: ASan adds 'long' and 'network', TSan the
# whole integration suite, the classic transport in build/ all of it
# (about three hours; before a release, and after a change to the
# engine's locking or to the session loop).
#
# Both builds use -Dwerror=true.  Stops at the first failure and exits
# non-zero.
#
# Integration tests mount FUSE file systems: they need root and /dev/fuse,
# and are skipped (meson reports SKIP) without them.  Run from anywhere:
# the build directories are made in the top of the source tree.
#
# Usage: scripts/test.sh [--full] [MESON-TEST-OPTION...]
#   e.g. scripts/test.sh --suite unit   (those tests, in each build)
set -euo pipefail

srcdir=$(cd "$(dirname "$0")/.." && pwd)
cd "$srcdir"

full=0
if [ "${1:-}" = --full ]; then
	full=1
	shift
fi

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
	step "build/: the classic transport"
	if [ $full = 1 ]; then
		meson test -C build --print-errorlogs --setup classic --suite integration --suite slow \
			--suite network
	else
		meson test -C build --print-errorlogs --setup classic --suite core --suite long \
			--suite slow --suite network
	fi
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
asan_skip=(--no-suite slow --no-suite bench)
[ $full = 1 ] || asan_skip+=(--no-suite long --no-suite network)
meson test -C build-asan --print-errorlogs --timeout-multiplier 3 "${asan_skip[@]}" "$@"
if [ -z "${*:-}" ]; then
	step "build-asan/: the classic transport"
	meson test -C build-asan --print-errorlogs --timeout-multiplier 3 --setup classic \
		--suite integration --no-suite long
fi

# The engine's locking under ThreadSanitizer: the unit suite, then
# integration tests against a TSan daemon (libfuse is not instrumented, but
# the daemon's threads meet in lib/: the control thread, the copier, the
# request workers).  The first race aborts the daemon, and fails the test.
# GLib 2.74's slice allocator hands memory between threads under futex
# locks TSan cannot see: plain malloc instead.
if [ -z "${*:-}" ] || [[ " $* " == *" unit "* ]]; then
	step "build-tsan/: ThreadSanitizer"
	scripts/build.sh build-tsan -Db_sanitize=thread -Db_lundef=false -Dwerror=true
	# unit does not mount: the classic pass needs only the rest.
	if [ $full = 1 ]; then
		tsan_mounting=(--suite integration)
	else
		tsan_mounting=(--suite core)
	fi
	export G_SLICE=always-malloc
	export TSAN_OPTIONS="halt_on_error=1 abort_on_error=1 second_deadlock_stack=1 suppressions=$srcdir/tests/tsan.supp"
	meson test -C build-tsan --print-errorlogs --timeout-multiplier 4 --suite unit \
		"${tsan_mounting[@]}" --no-suite slow --no-suite bench
	if [ -z "${*:-}" ]; then
		step "build-tsan/: the classic transport"
		meson test -C build-tsan --print-errorlogs --timeout-multiplier 4 --setup classic \
			"${tsan_mounting[@]}" --no-suite slow --no-suite bench
	fi
fi

step "all tests passed in build/, build-asan/ and build-tsan/"
