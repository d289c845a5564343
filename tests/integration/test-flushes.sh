#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# A migration flushes the disk where crash safety needs it and nowhere
# else.  On a disk with a write cache each flush stalls every guest write
# in flight until the cache is written (360 ms seen at a migration's
# start under load, bench/results.md), so:
#  - starting a migration and copying make no fsync or fdatasync: the
#    target's "copying" journal is not synced (lib/journal.c);
#  - the switch does: the target's data, then the source's "switched"
#    journal, which is also the control that strace sees the daemon's
#    flushes at all.
# strace follows every thread of the daemon from before the start request.

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
. "$(dirname "${BASH_SOURCE[0]}")/lib-control.sh"
require_cmd strace
cd "$TESTDIR"

SRC="$TESTDIR/src"
DST="$TESTDIR/dst"
MNT="$TESTDIR/mnt"
mkdir -p "$SRC/conf" "$DST" "$MNT"
head -c 8M /dev/urandom >"$SRC/disk.img"
echo "name=vm" >"$SRC/conf/vm.conf"

# flushes: the fsync and fdatasync calls strace has logged so far.
flushes() {
	grep -cE '(fsync|fdatasync)\(' "$TESTDIR/strace.log" || true
}

mount_mfs "$SRC" "$MNT"
strace_daemon "$MNT" "$TESTDIR/strace.log" fsync,fdatasync,syncfs,sync

ctl --speed=4M "$MNT" start "$DST"
wait_status_state "$MNT" copying 30
sleep 1
assert_eq copying "$(status_field "$MNT" state)" "state after 1 s at 4 MiB/s"
assert_eq 0 "$(flushes)" "flushes from the start request through 1 s of copying"
[[ -s "$DST/.mirrorfs-journal" ]] || fail "the target has no journal while copying"

ctl "$MNT" speed 0
wait_status_state "$MNT" switched 60
n="$(flushes)"
((n >= 2)) || fail "$n flushes at the switch (expected the target's data and the journal)"
grep -q "state=switched" "$SRC/.mirrorfs-journal" || fail "the source's journal is not switched"

strace_stop
umount_mfs "$MNT"
assert_file_eq "$SRC/disk.img" "$DST/disk.img"
assert_file_eq "$SRC/conf/vm.conf" "$DST/conf/vm.conf"
exit 0
