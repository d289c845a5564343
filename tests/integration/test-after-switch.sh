#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# What a guest holds across the switch, through a real mount (issue 17,
# defects 7, 9 and 15):
#
#   - a directory handle opened before the switch and fsync'ed after it
#     must flush the target's directory (strace shows which one the
#     daemon flushed), or a rename made durable after the switch is not;
#   - a file unlinked while open, a removed directory a process sits in,
#     do not make the switch fail, and keep working;
#   - once switched, the daemon holds nothing of the source, even with
#     files still open through the mount: the old disk (a tmpfs here)
#     unmounts, and those files go on, on the target;
#   - moved on again, to a third disk, the daemon holds nothing of the
#     second either: the interim disk (a tmpfs too) unmounts, though the
#     job that moved onto it is kept for its status.

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
. "$(dirname "${BASH_SOURCE[0]}")/lib-migration.sh"
. "$(dirname "${BASH_SOURCE[0]}")/lib-control.sh"

require_cmd strace

SRC="$TESTDIR/src"
DST="$TESTDIR/dst"
MNT="$TESTDIR/mnt"
NEXT="$TESTDIR/next"
mkdir "$SRC" "$DST" "$MNT" "$NEXT"
# The old disk, to be retired at the end, and the interim one.
mount -t tmpfs -o size=64m tmpfs "$SRC" || skip "cannot mount a tmpfs"
track_mount "$SRC"
mount -t tmpfs -o size=64m tmpfs "$DST" || skip "cannot mount a tmpfs"
track_mount "$DST"
mkdir "$SRC/sub"
head -c $((2 << 20)) /dev/urandom >"$SRC/img1"
echo a >"$SRC/sub/a"
mount_mfs "$SRC" "$MNT"

# The test's own descriptors into the mount go before lib.sh's cleanup
# unmounts it, however the test ends.
eval "set -- $(trap -p EXIT)"
AFTER_PREV_EXIT_TRAP="${3:-}"
set --
close_held() {
	local rc=$?
	set +e
	exec 3>&- 4>&-
	(exit "$rc")
	eval "$AFTER_PREV_EXIT_TRAP"
}
trap close_held EXIT

# Held across the switch: an image open read-write (fd 3), a directory
# handle (in the Python helper), an unlinked scratch file (fd 4), and a
# shell sitting in a directory that is then removed.
exec 3<>"$MNT/img1"
echo scratch >"$MNT/scratch"
exec 4<>"$MNT/scratch"
rm "$MNT/scratch"
mkdir "$MNT/gone"
(cd "$MNT/gone" && exec sleep 600) &
CWD_PID=$!
track_bg "$CWD_PID"
rmdir "$MNT/gone"

# fsyncdir: the helper opens sub/ now, says so, and after the switch
# renames in it and fsyncs the handle, when told to; through FIFOs.
mkfifo "$TESTDIR/ready" "$TESTDIR/go"
"$PYTHON" - "$MNT/sub" "$TESTDIR/ready" "$TESTDIR/go" <<-'PY' &
import os, sys
d = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECTORY)
open(sys.argv[2], "w").write("ready\n")
open(sys.argv[3]).read()
os.rename(os.path.join(sys.argv[1], "a"), os.path.join(sys.argv[1], "b"))
os.fsync(d)
os.close(d)
PY
HELPER_PID=$!
track_bg "$HELPER_PID"
assert_eq ready "$(cat "$TESTDIR/ready")" "the directory handle's helper"

ctl "$MNT" start "$DST"
wait_switched "$SRC" "$MNT"
assert_eq "$(status_field "$MNT" error)" null "the migration's error"

# fsyncdir after the switch flushes the target's directory.
strace_daemon "$MNT" "$TESTDIR/strace.log" fsync,fdatasync
echo go >"$TESTDIR/go"
wait "$HELPER_PID" || fail "the directory handle's rename and fsync failed"
strace_stop
grep -E 'fsync\([0-9]+<[^>]*>\)' "$TESTDIR/strace.log" >"$TESTDIR/fsyncs" ||
	fail "the daemon flushed no directory:"$'\n'"$(cat "$TESTDIR/strace.log")"
grep -q "<$(realpath "$DST")/sub>" "$TESTDIR/fsyncs" ||
	fail "fsyncdir flushed another directory than the target's:"$'\n'"$(cat "$TESTDIR/fsyncs")"
[[ -e "$DST/sub/b" && ! -e "$DST/sub/a" ]] || fail "the rename after the switch is not in the target"

# The unlinked scratch file still reads and writes.
assert_eq scratch "$(head -n 1 /proc/self/fd/4)" "the unlinked file, after the switch"
echo more >&4

# The old disk unmounts with the image still open through the mount.
umount "$SRC" || fail "the old disk is still busy after the switch: $(fuser -vm "$SRC" 2>&1)"
printf 'NEW' >&3
exec 3>&-
assert_eq NEW "$(head -c 3 "$DST/img1")" "a write through the open image, after the old disk went"
exec 4>&-
kill "$CWD_PID" 2>/dev/null || true

# On to a third disk, the image open through the mount all along: the
# interim disk unmounts too.
exec 3<>"$MNT/img1"
ctl "$MNT" start "$NEXT"
wait_switched "$DST" "$MNT"
umount "$DST" || fail "the interim disk is still busy after the second switch: $(fuser -vm "$DST" 2>&1)"
printf 'NEXT' >&3
exec 3>&-
assert_eq NEXT "$(head -c 4 "$NEXT/img1")" "a write through the open image, after the interim disk went"
umount_mfs "$MNT"
