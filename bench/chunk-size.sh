#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# How the copier's chunk size changes an idle migration and a guest's
# write latency while it runs: the measurement behind -o chunk's default.
# Each chunk size migrates the same image REPEAT times; medians are
# reported, against `cp` + `sync` of the same file in the same run.
#
# Usage: bench/chunk-size.sh [BUILDDIR] [SIZE_MIB] [REPEAT]
# Writes bench/results-chunk.md (override with OUT=...).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
size_mib=${2:-1024}
repeat=${3:-3}
out=${OUT:-bench/results-chunk.md}
# The copier's limit (a number of MiB/s with M, or 0 for none).
SPEED=${SPEED:-200M}
# fio runs long enough to cover the migration at $SPEED, and a little more.
if [ "$SPEED" = 0 ]; then
	fio_s=10
else
	fio_s=$((size_mib / ${SPEED%M} + 4))
fi
mirrorfs=$build/fuse/mirrorfs
status=$build/tools/mirrorfs-status
ctl=$build/tools/mirrorfsctl

work=$(mktemp -d /var/tmp/mirrorfs-bench.XXXXXX)
cleanup() {
	fusermount3 -u "$work/mnt" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/src" "$work/mnt"
head -c $((size_mib << 20)) /dev/urandom >"$work/src/disk.img"
sync

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN {printf "%.2f", b - a}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }

cp_times=()
for _ in $(seq "$repeat"); do
	rm -rf "$work/cp"
	mkdir "$work/cp"
	sync
	echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
	t0=$(now)
	cp "$work/src/disk.img" "$work/cp/" && sync
	cp_times+=("$(since "$t0")")
	rm -rf "$work/cp"
done
cp_med=$(printf '%s\n' "${cp_times[@]}" | median)

rows=()
for chunk in 64K 256K 1M 4M 16M; do
	times=()
	lat=()
	for _ in $(seq "$repeat"); do
		rm -rf "$work/dst"
		mkdir "$work/dst"
		sync
		echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
		"$mirrorfs" "$work/src" "$work/mnt"
		# A guest writing 4 KiB blocks with O_DIRECT for the whole run; the
		# migration (at $SPEED, so that it lasts a few seconds) starts 1 s in.
		fio --name=g --filename="$work/mnt/disk.img" --rw=randwrite --bs=4k \
			--direct=1 --ioengine=psync --time_based --runtime="$fio_s" \
			--size=$((size_mib))M --output-format=json --output="$work/fio.json" \
			>/dev/null 2>&1 &
		fio_pid=$!
		sleep 1
		t0=$(now)
		"$ctl" "$work/mnt" start "$work/dst" --chunk "$chunk" --speed "$SPEED" >/dev/null
		"$status" --wait switched --timeout 600 "$work/mnt" >/dev/null
		times+=("$(since "$t0")")
		wait "$fio_pid"
		lat+=("$(python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print("%.2f" % (j["jobs"][0]["write"]["clat_ns"]["percentile"]["99.000000"]/1e6))' "$work/fio.json")")
		fusermount3 -u "$work/mnt"
		# The next round migrates from the same source again.
		rm -f "$work/src/.mirrorfs-journal"
	done
	t_med=$(printf '%s\n' "${times[@]}" | median)
	l_med=$(printf '%s\n' "${lat[@]}" | median)
	rows+=("| $chunk | $t_med | $(ratio "$t_med" "$cp_med") | $l_med |")
done

{
	echo "# Copier chunk size"
	echo
	echo "Run $(date -u +%Y-%m-%dT%H:%MZ) on $(nproc) cores, $(uname -r),"
	echo "$(findmnt -no FSTYPE -T /var/tmp) on $(findmnt -no SOURCE -T /var/tmp); image ${size_mib} MiB of random data;"
	echo "median of $repeat runs. Baseline: \`cp\` + \`sync\` of the same file, ${cp_med} s (same run)."
	echo "The copier's limit: $SPEED/s (0: none). fio writes 4 KiB blocks at random with O_DIRECT (psync, iodepth 1)"
	echo "through the mount for ${fio_s} s, the migration starting 1 s in; the p99 covers the whole fio run."
	echo
	echo "| chunk | time to switched (s) | × cp+sync | guest write p99 (ms) |"
	echo "| --- | --- | --- | --- |"
	printf '%s\n' "${rows[@]}"
} >"$out"
cat "$out"
