#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# What checkpoints cost an idle migration, and what they save a restart
# (issue 22): the measurement behind -o checkpoint's default.
#
#   cost    the same image migrated with checkpoint=16M, 64M, 256M (the
#           default) and 1T (never, in effect), REPEAT times each, in
#           turn; the median time from the start to the switch, against
#           1T in the same run.
#   resume  at the default interval, kill -9 of the daemon when half of
#           the image is copied; the same command line again: what it
#           trusts (bytes_resumed), what it copies again (the copied
#           bytes at the kill minus those), and how long the rest takes.
#           The first run is limited to RESUME_SPEED (400M) so that the
#           kill lands at half; the restart is not.
#
# Usage: bench/checkpoint.sh [BUILDDIR] [SIZE_MIB] [REPEAT]
# Writes bench/results-checkpoint.md (override with OUT=...).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
size_mib=${2:-4096}
repeat=${3:-3}
out=${OUT:-bench/results-checkpoint.md}
mirrorfs=$build/fuse/mirrorfs
status=$build/tools/mirrorfs-status

work=$(mktemp -d /var/tmp/mirrorfs-bench.XXXXXX)
pid=
cleanup() {
	[[ -z "$pid" ]] || kill -9 "$pid" 2>/dev/null || true
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
# field NAME: a number of the mount's status.
field() {
	"$status" --json "$work/mnt" | python3 -c 'import json, sys
print(json.load(sys.stdin)[sys.argv[1]])' "$1"
}

# mount OPTIONS: mirrorfs in the foreground, in the background; $pid.
mount_it() {
	"$mirrorfs" -f -o "$1" "$work/src" "$work/mnt" 2>>"$work/log" &
	pid=$!
	until mountpoint -q "$work/mnt"; do sleep 0.05; done
}
# wait_switched: until the daemon has switched, then unmount.
wait_switched() {
	"$status" --wait switched --timeout 3600 "$work/mnt" >/dev/null
	fusermount3 -u "$work/mnt"
	wait "$pid"
	pid=
}
# fresh: the source as new, the target empty.
fresh() {
	rm -rf "$work/dst"
	rm -f "$work/src/.mirrorfs-journal"
	mkdir "$work/dst"
	sync
	echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
}

declare -A times
intervals="16M 64M 256M 1T"
for _ in $(seq "$repeat"); do
	for ck in $intervals; do
		fresh
		t0=$(now)
		mount_it "target=$work/dst,noclone,checkpoint=$ck"
		wait_switched
		times[$ck]+="$(since "$t0") "
	done
done

# resume: kill -9 at half of the copy, then the same command line (but
# for the speed limit, there only so that the kill falls at half: from the
# page cache the copy may run faster than the status can be polled).
fresh
opts="target=$work/dst,noclone"
mount_it "$opts,speed=${RESUME_SPEED:-400M}"
half=$(((size_mib << 20) / 2))
until (($(field bytes_copied) >= half)); do sleep 0.02; done
at_kill=$(field bytes_copied)
kill -9 "$pid"
wait "$pid" 2>/dev/null || true
pid=
fusermount3 -u "$work/mnt"
t0=$(now)
mount_it "$opts"
resumed=$(field bytes_resumed)
wait_switched
rest_s=$(since "$t0")
cmp "$work/src/disk.img" "$work/dst/disk.img"
again=$((at_kill > resumed ? at_kill - resumed : 0))

{
	echo "# Checkpoints: their cost, and what a restart copies again"
	echo
	echo "\`bench/checkpoint.sh $build $size_mib $repeat\` on $(date -u +%Y-%m-%d), $(nproc) vCPU,"
	echo "$(uname -r); source and target directories on one $(findmnt -no FSTYPE --target "$work") file system, \`noclone\`;"
	echo "a ${size_mib} MiB image of random data, page cache dropped before each run."
	echo
	echo "## Cost: an idle migration, start to switch (median of $repeat, in turn)"
	echo
	echo "| checkpoint | seconds | vs 1T (none) | runs |"
	echo "| --- | --- | --- | --- |"
	base=$(printf '%s\n' ${times[1T]} | median)
	for ck in $intervals; do
		m=$(printf '%s\n' ${times[$ck]} | median)
		echo "| $ck | $m | $(ratio "$m" "$base") | ${times[$ck]}|"
	done
	echo
	echo "## Resume: kill -9 at half of the copy, default interval (256M)"
	echo
	echo "| copied at the kill | trusted by the restart (bytes_resumed) | copied again | the rest took |"
	echo "| --- | --- | --- | --- |"
	echo "| $((at_kill >> 20)) MiB | $((resumed >> 20)) MiB | $((again >> 20)) MiB ($(ratio "$again" $((256 << 20))) of an interval) | ${rest_s} s |"
	echo
	echo "The target is byte for byte the source after the resumed switch (cmp)."
} >"$out"
cat "$out"
