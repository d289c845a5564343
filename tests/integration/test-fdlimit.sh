#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# The daemon takes the hard limit on open files for its own: every inode
# the kernel holds costs it a descriptor, and every file under migration
# two more.  Started with a soft limit of 128 (systemd starts services at
# 1024), it must serve a tree of 300 files, every one looked up at once,
# and migrate it whole.

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
. "$(dirname "${BASH_SOURCE[0]}")/lib-migration.sh"
. "$(dirname "${BASH_SOURCE[0]}")/lib-control.sh"
cd "$TESTDIR"

FILES=300
SRC="$TESTDIR/src"
DST="$TESTDIR/dst"
MNT="$TESTDIR/mnt"
mkdir -p "$SRC" "$DST" "$MNT"
hard="$(ulimit -Hn)"
[[ "$hard" == unlimited ]] || ((hard >= 4 * FILES)) ||
	skip "the hard limit on open files ($hard) leaves nothing to raise to"
for ((i = 0; i < FILES; i++)); do
	printf 'file %d\n' "$i" >"$SRC/f$i"
done
cp -a "$SRC" "$TESTDIR/ref"

ulimit -Sn 128
mount_mfs "$SRC" "$MNT"
pid="${MFS_PID[$(realpath "$MNT")]}"
soft="$(awk '/^Max open files/ { print $4 }' "/proc/$pid/limits")"
assert_eq "$hard" "$soft" "the daemon's soft limit on open files"

# Every file looked up, and held by the kernel's dentry cache.
n="$(stat -c %n "$MNT"/f* | wc -l)" || fail "stat of the $FILES files through the mount"
assert_eq "$FILES" "$n" "files stat'ed through the mount"

ctl "$MNT" start "$DST"
wait_status_state "$MNT" switched 120
assert_trees_equal "$TESTDIR/ref" "$DST" "the tree migrated"
assert_eq "file 299" "$(cat "$MNT/f299")" "f299 through the mount after the switch"
umount_mfs "$MNT"
exit 0
