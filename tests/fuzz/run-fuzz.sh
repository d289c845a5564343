#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Build and run the libFuzzer targets of mirrorfs for a bounded time:
#
#   fuzz-size     mfs_parse_size(), against a reference parser
#   fuzz-control  control_handle_request() on a real Mfs, in a chroot
#                 sandbox (as root), every reply checked
#
# Built here with clang -fsanitize=fuzzer,address,undefined straight from
# lib/'s sources (the meson build uses gcc), into OUT.  Each target starts
# from its seeds (tests/fuzz/seeds-*) and dictionary, and runs SECONDS.
# A crash, a sanitizer report or a failed check leaves the input in
# OUT/NAME-crash-* (printed, in hex, too) and fails the run.
#
# Usage: tests/fuzz/run-fuzz.sh [--seconds N] [--out DIR] [TARGET...]
#   --seconds N   per target (default 20; CI runs this through
#                 tests/integration/test-fuzz.sh)
#   --out DIR     build and work directory (default: a new temporary one)
# Longer, opt-in runs:
#   tests/fuzz/run-fuzz.sh --seconds 3600 --out /var/tmp/mfs-fuzz
#   (the corpus grows in OUT and is reused by the next run with that OUT)
#
# fuzz-control runs as root in a sandbox, OUT/sandbox-fuzz-control: its own
# mount namespace and a chroot there (see fuzz-control.c), with its corpus
# (corpus/), dictionary and artifacts (artifacts/) inside.  Reproduce a
# finding with the same sandbox: FUZZ_SANDBOX=OUT/sandbox-fuzz-control
# OUT/fuzz-control /artifacts/crash-<sha>  (a path inside the sandbox), or
# without one (starts are then skipped): OUT/fuzz-control FILE.
#
# Needs clang and its fuzzer runtime (Debian: clang, libclang-rt-14-dev),
# pkg-config, glib-2.0 and json-glib-1.0.  Exits 77 if clang cannot build
# a fuzzer.
set -euo pipefail

srcdir="$(cd "$(dirname "$0")/../.." && pwd)"
fuzzdir="$srcdir/tests/fuzz"
seconds=20
out=
targets=()
while (($#)); do
	case "$1" in
	--seconds) seconds="$2"; shift 2 ;;
	--out) out="$2"; shift 2 ;;
	-h | --help) sed -n '3,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	-*) echo "run-fuzz: unknown option $1" >&2; exit 2 ;;
	*) targets+=("$1"); shift ;;
	esac
done
((${#targets[@]})) || targets=(fuzz-size fuzz-control)
[[ -n "$out" ]] || out="$(mktemp -d "${TMPDIR:-/tmp}/mirrorfs-fuzz.XXXXXX")"
mkdir -p "$out"
out="$(cd "$out" && pwd)"

CC="${FUZZ_CC:-clang}"
if ! command -v "$CC" >/dev/null 2>&1; then
	echo "run-fuzz: SKIP: $CC is not installed" >&2
	exit 77
fi
printf 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { return 0; }\n' >"$out/probe.c"
if ! "$CC" -fsanitize=fuzzer "$out/probe.c" -o "$out/probe" 2>"$out/probe.err"; then
	echo "run-fuzz: SKIP: $CC cannot build a libFuzzer target (libclang-rt-dev?): $(head -n 3 "$out/probe.err")" >&2
	exit 77
fi

# shellcheck disable=SC2054 # -fsanitize=a,b,c is one word
flags=(-g -O1 -std=gnu11 -D_FILE_OFFSET_BITS=64 -fno-omit-frame-pointer
	-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
	-I"$srcdir/lib")
# shellcheck disable=SC2207 # pkg-config's words
pc=($(pkg-config --cflags --libs glib-2.0 json-glib-1.0))
lib_sources=("$srcdir"/lib/*.c)

rc=0
for t in "${targets[@]}"; do
	case "$t" in
	fuzz-size) dict="$fuzzdir/size.dict" seeds="$fuzzdir/seeds-size" ;;
	fuzz-control) dict="$fuzzdir/control.dict" seeds="$fuzzdir/seeds-control" ;;
	*) echo "run-fuzz: unknown target $t" >&2; exit 2 ;;
	esac
	echo "run-fuzz: building $t"
	"$CC" "${flags[@]}" "$fuzzdir/$t.c" "${lib_sources[@]}" "${pc[@]}" -lpthread -o "$out/$t"
	env=(TMPDIR="$out")
	if [[ "$t" == fuzz-control && "$(id -u)" == 0 ]]; then
		# Paths inside the sandbox: libFuzzer opens them after the chroot.
		box="$out/sandbox-$t"
		mkdir -p "$box/corpus" "$box/seeds" "$box/artifacts"
		cp "$seeds"/* "$box/seeds/"
		cp "$dict" "$box/fuzz.dict"
		env+=(FUZZ_SANDBOX="$box")
		args=(-dict=/fuzz.dict -artifact_prefix=/artifacts/ /corpus /seeds)
		artifacts="$box/artifacts/"
	else
		mkdir -p "$out/corpus-$t" "$out/artifacts-$t"
		args=(-dict="$dict" -artifact_prefix="$out/artifacts-$t/" "$out/corpus-$t" "$seeds")
		artifacts="$out/artifacts-$t/"
	fi
	echo "run-fuzz: running $t for $seconds s"
	set +e
	(cd "$out" && env "${env[@]}" ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1}" \
		UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}" \
		"./$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
		-print_final_stats=1 "${args[@]}") >"$out/$t.log" 2>&1
	r=$?
	set -e
	grep -hE '^(stat::number_of_executed_units|stat::new_units_added|stat::peak_rss_mb)|^#[0-9]+ +DONE' \
		"$out/$t.log" | sed "s/^/run-fuzz: $t: /" || true
	if ((r != 0)) || [[ -n "$(ls -A "$artifacts")" ]]; then
		echo "run-fuzz: $t FAILED (exit $r); log $out/$t.log:" >&2
		grep -E -A30 '==ERROR|runtime error|fuzz-control:|mfs_parse_size\(|ERROR: libFuzzer' "$out/$t.log" | head -n 60 >&2 || tail -n 40 "$out/$t.log" >&2
		for a in "$artifacts"*; do
			[[ -e "$a" ]] || continue
			echo "run-fuzz: input $a (hex): $(od -An -tx1 -v "$a" | tr -d ' \n' | head -c 2000)" >&2
			echo "run-fuzz: reproduce: $out/$t $a" >&2
		done
		rc=1
	else
		echo "run-fuzz: $t: no finding in $seconds s"
	fi
done
exit "$rc"
