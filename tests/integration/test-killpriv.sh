#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# setuid and setgid under FUSE_HANDLE_KILLPRIV_V2 (issue 19).  With it
# the kernel no longer asks for security.capability before each write:
# it leaves clearing the bits to us, flagging each write, truncate and
# open(O_TRUNC) whose caller may not keep them.  The daemon runs as root,
# whose writes keep them, so it must act on the flag.  Each case is run
# on a native directory and through the mount, and the modes after it
# must be the same, on the backing file and through the mount:
#  - an unprivileged owner writes, truncates, opens with O_TRUNC: cleared;
#  - root writes and truncates: kept (root has CAP_FSETID);
#  (Not checked: setgid without group execute, written by a member of the
#  file's group.  Natively the bit stays; the daemon, not in the group,
#  loses it.  The protocol says to keep it; doc/design.md "Transport".)
#  - after an unprivileged write, a root chmod g+s on the same file still
#    sets setgid (the daemon's thread got its capability back);
#  - on one serving thread (-s, /dev/fuse): an unprivileged write, then a
#    file created by that user (the daemon takes the user's fsuid for it,
#    and going back to fsuid 0 gives the thread its capabilities back),
#    then another unprivileged write: cleared.  (The kernel sends a
#    SETATTR that kills before writing to a setuid file, which sets the
#    thread's state anyway; the unit test util proves the credential
#    switch itself keeps a dropped CAP_FSETID dropped.)

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
. "$(dirname "${BASH_SOURCE[0]}")/lib-control.sh"
require_nobody

SRC="$TESTDIR/src"
MNT="$TESTDIR/mnt"
NATIVE="$TESTDIR/native"
mkdir -p "$SRC" "$MNT" "$NATIVE"
# Group execute for group; the directories must let nobody reach the files.
chmod 755 "$TESTDIR" "$SRC" "$NATIVE"

nobody() {
	"${AS_NOBODY[@]}" "$@"
}
GROUP="$(id -gn nobody)"

# The operations, run in a directory on a file named f.
op_write() { nobody dd if=/dev/zero of="$1" bs=4k count=1 conv=notrunc status=none; }
op_write_direct() { nobody dd if=/dev/zero of="$1" bs=4k count=1 conv=notrunc oflag=direct status=none; }
op_truncate() { nobody truncate -s 4096 "$1"; }
op_open_trunc() { nobody sh -c ': >"$1"' sh "$1"; }
op_root_write() { dd if=/dev/zero of="$1" bs=4k count=1 conv=notrunc status=none; }
op_root_truncate() { truncate -s 100 "$1"; }
op_write_then_chmod() { op_write "$1" && chmod 2775 "$1" && chown nobody:root "$1" && chmod 2775 "$1"; }

# case OP MODE: run OP on a fresh file of MODE, owned by nobody, natively
# and through the mount; the resulting modes must agree.
case_() {
	local op="$1" mode="$2" native mounted backing
	for dir in "$NATIVE" "$MNT"; do
		rm -f "$dir/f.$op"
		head -c 8192 /dev/urandom >"$dir/f.$op"
		chown "nobody:$GROUP" "$dir/f.$op"
		chmod "$mode" "$dir/f.$op"
		"op_$op" "$dir/f.$op" || fail "$op on $dir/f.$op failed"
	done
	native="$(stat -c %a "$NATIVE/f.$op")"
	backing="$(stat -c %a "$SRC/f.$op")"
	mounted="$(stat -c %a "$MNT/f.$op")"
	log "$op on $mode: native $native, backing $backing, through the mount $mounted"
	assert_eq "$native" "$backing" "$op on a $mode file: the backing file's mode"
	assert_eq "$native" "$mounted" "$op on a $mode file: the mode through the mount"
}

mount_mfs "$SRC" "$MNT" -o timeout=0 -o allow_other
case_ write 6775
case_ write_direct 6775
case_ truncate 6775
case_ open_trunc 6775
case_ root_write 6775
case_ root_truncate 6775
case_ write_then_chmod 0775
# And the data is what was written: the kill did not get in its way.
head -c 65536 /dev/urandom >"$TESTDIR/expect"
cp "$TESTDIR/expect" "$MNT/data"
chown "nobody:$GROUP" "$MNT/data"
chmod 6777 "$MNT/data"
nobody dd if="$TESTDIR/expect" of="$MNT/data" bs=64k conv=notrunc status=none ||
	fail "nobody cannot write data"
cmp "$TESTDIR/expect" "$SRC/data" || fail "the data written with the kill differs"
assert_eq 777 "$(stat -c %a "$SRC/data")" "mode after the data write"
umount_mfs "$MNT"

log "one serving thread: a write, a create by the same user, a write"
mount_mfs "$SRC" "$MNT" -s -o io_uring=off -o timeout=0 -o allow_other
mkdir -p "$MNT/nb"
chown "nobody:$GROUP" "$MNT/nb"
for f in first second; do
	head -c 8192 /dev/urandom >"$MNT/nb/$f"
	chown "nobody:$GROUP" "$MNT/nb/$f"
	chmod 6775 "$MNT/nb/$f"
done
# One process, so that no other request comes between: the second file is
# opened first, the create comes between the two writes.  O_DIRECT: a
# buffered write would come after a SETATTR that resets the thread anyway.
nobody /usr/bin/python3 - "$MNT/nb" <<'PY' || fail "nobody's writes and create"
import mmap, os, sys
d = sys.argv[1]
buf = mmap.mmap(-1, 4096)
second = os.open(f"{d}/second", os.O_WRONLY | os.O_DIRECT)
first = os.open(f"{d}/first", os.O_WRONLY | os.O_DIRECT)
os.pwritev(first, [buf], 0)
os.close(os.open(f"{d}/created", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644))
os.pwritev(second, [buf], 0)
PY
assert_eq 775 "$(stat -c %a "$SRC/nb/first")" "the first file after nobody's write"
assert_eq 775 "$(stat -c %a "$SRC/nb/second")" "the second file, written after a create"
umount_mfs "$MNT"
