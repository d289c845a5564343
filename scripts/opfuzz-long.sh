#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# The long run of the operation fuzzer (tests/integration/opfuzz.py): one
# seed after another, each for SEED_SECONDS, until SECONDS_TOTAL have
# passed.  Every seed and its outcome is appended to a record, and a
# failing seed's full log is kept beside it; a failure does not stop the
# run.  Exits 1 if any seed failed.  Needs root and /dev/fuse, as the
# integration tests do.
#
# Usage: scripts/opfuzz-long.sh [BUILDDIR [SECONDS_TOTAL [OUTDIR]]]
#   BUILDDIR       default ./build (built first if need be)
#   SECONDS_TOTAL  default 3600
#   OUTDIR         default /var/tmp/opfuzz-long: record.txt and the logs
# Environment: SEED_SECONDS (300), FIRST_SEED (a new one each run),
#   OPFUZZ_DISABLE (the classes of test-opfuzz.sh's known defects).
set -euo pipefail

srcdir=$(cd "$(dirname "$0")/.." && pwd)
builddir=$(realpath "${1:-$srcdir/build}")
total=${2:-3600}
out=${3:-/var/tmp/opfuzz-long}
seed_seconds=${SEED_SECONDS:-300}
seed=${FIRST_SEED:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}
disable=${OPFUZZ_DISABLE-chk-special-times,chk-blocks}

ninja -C "$builddir" >/dev/null
# A copy of the binaries: the build may be rebuilt while this runs.
mkdir -p "$out/bin"
cp "$builddir/fuse/mirrorfs" "$builddir/tools/mirrorfsctl" "$builddir/tools/mirrorfs-status" "$out/bin/"
record="$out/record.txt"
echo "# $(date -u +%FT%TZ) $(git -C "$srcdir" rev-parse --short HEAD) ${total}s, ${seed_seconds}s a seed, off: ${disable:-none}" >>"$record"

end=$((SECONDS + total))
failed=0
while ((SECONDS < end)); do
	left=$((end - SECONDS))
	t0=$SECONDS
	rc=0
	python3 "$srcdir/tests/integration/opfuzz.py" --seed "$seed" \
		--duration "$((left < seed_seconds ? left : seed_seconds))" \
		--disable "$disable" --log-dir "$out" \
		--mirrorfs "$out/bin/mirrorfs" --ctl "$out/bin/mirrorfsctl" \
		--status "$out/bin/mirrorfs-status" >"$out/seed-$seed.out" 2>&1 || rc=$?
	verdict=pass
	((rc == 0)) || { verdict="FAIL (exit $rc, $out/seed-$seed.out)"; failed=$((failed + 1)); }
	((rc != 0)) || rm -f "$out/seed-$seed.out"
	echo "seed $seed: $((SECONDS - t0))s: $verdict" | tee -a "$record"
	seed=$(((seed + 1) % 4294967296))
done
echo "# $failed failed" >>"$record"
((failed == 0))
