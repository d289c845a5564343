#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Migration under load onto a GlusterFS volume, beside the same onto the
# local disk, in one run (bench/ab_load.py's load scenario: fio 4 KiB
# random O_DIRECT writes at iodepth 16 through the mount, a migration in
# the middle; the two targets rotated from run to run).  The volume is
# made here: glusterd (the running one if any), replica 2 over two bricks
# in WORK on the same disk as the local target, mounted with Gluster's
# FUSE client; all of it is removed at the end.
#
#     bench/gluster.sh [BUILDDIR] [RUNS] [SIZE]      (default: build 3 1G)
#
# Writes bench/results-gluster.md and .json.  Needs root and Gluster
# (scripts/setup-deps.sh).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
build=$(realpath "${1:-build}")
runs=${2:-3}
size=${3:-1G}
work=/var/tmp/mirrorfs-bench-gluster
host=$(hostname -I | awk '{ print $1 }') # Gluster refuses loopback bricks
vol=mfs-bench-$$
our_glusterd=

cleanup() {
	umount -l "$work/gv" 2>/dev/null || true
	gluster --mode=script volume stop "$vol" force >/dev/null 2>&1 || true
	gluster --mode=script volume delete "$vol" >/dev/null 2>&1 || true
	[ -z "$our_glusterd" ] || pkill -F "$work/glusterd.pid" 2>/dev/null || true
	[ -z "$our_glusterd" ] || pkill -f -- "--volfile-id shd/$vol" 2>/dev/null || true
	rm -rf "$work/b1" "$work/b2" "$work/local"
}
trap cleanup EXIT

mkdir -p "$work/gv" "$work/local"
rm -rf "$work/b1" "$work/b2"
if ! gluster --mode=script volume list >/dev/null 2>&1; then
	glusterd -p "$work/glusterd.pid" --log-file="$work/glusterd.log"
	our_glusterd=1
	until gluster --mode=script volume list >/dev/null 2>&1; do sleep 0.2; done
fi
gluster --mode=script volume create "$vol" replica 2 "$host:$work/b1" "$host:$work/b2" force >/dev/null
gluster --mode=script volume start "$vol" >/dev/null
mount -t glusterfs "$host:/$vol" "$work/gv"

"$here/ab_load.py" --build "mirrorfs=$build" --runs "$runs" --size "$size" \
	--dir "$work/ab" --target "local=$work/local" --target "gluster=$work/gv" \
	--out "$work/results"
{
	echo "# Migration under load onto GlusterFS, beside the local disk"
	echo
	echo "bench/gluster.sh: the load scenario of bench/ab_load.py (fio 4 KiB random"
	echo "O_DIRECT writes, iodepth 16, through the mount; the migration in the middle,"
	echo "switched as soon as mirrored) with two targets in one run, rotated: a"
	echo "directory on the local disk, and a GlusterFS $(glusterfs --version | head -n 1 | awk '{ print $2 }')"
	echo "replica-2 volume whose two bricks are on the same disk, mounted with its FUSE"
	echo "client (volume defaults).  The ratios are the guest's IOPS during the"
	echo "migration against its own before it, in the same run."
	echo
	cat "$work/results.md"
} >"$here/results-gluster.md"
cp "$work/results.json" "$here/results-gluster.json"
echo "gluster: wrote $here/results-gluster.md"
