#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# An O_DIRECT open goes to the kernel's direct path (mfs-file.c):
#  - its writes come without a GETXATTR of security.capability (counted
#    in the -d request log), and since FUSE_HANDLE_KILLPRIV_V2 so do
#    buffered writes after the first;
#  - synchronous writes of several threads reach the daemon together: with
#    MIRRORFS_TEST_WRITE_HOLD_MS the daemon holds each write and logs how
#    many it holds, and a second writer starts only once the first is held;
#  - privileges go at a write as natively: file capabilities, which the
#    backing file system drops at the daemon's write, and the set-user-ID
#    bit of a writer without CAP_FSETID (through allow_other), which it
#    would keep for the daemon: such a file keeps the cached path;
#  - a file opened O_DIRECT can still be mapped shared
#    (FUSE_DIRECT_IO_ALLOW_MMAP, Linux 6.6): what is stored through the
#    map reaches the backing file, and O_DIRECT reads see it.
# Each check has its control: buffered writes, which keep the cached path,
# go one write at a time, so the counts can fail.

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
. "$(dirname "${BASH_SOURCE[0]}")/lib-control.sh"
cd "$TESTDIR"

SRC="$TESTDIR/src"
MNT="$TESTDIR/mnt"
mkdir -p "$SRC" "$MNT"
head -c 1M /dev/urandom >"$SRC/disk.img"

daemon_log() {
	echo "${MFS_LOG[$(realpath "$MNT")]}"
}

# getxattrs_for_writes DD_FLAGS...: 8 writes of 4 KiB; prints the GETXATTR count.
getxattrs_for_writes() {
	requests_during "$MNT" GETXATTR \
		dd if=/dev/urandom of="$MNT/disk.img" bs=4k count=8 conv=notrunc status=none "$@"
}

mount_mfs "$SRC" "$MNT" -d
n="$(getxattrs_for_writes oflag=direct)"
((n == 0)) || fail "O_DIRECT: $n GETXATTR for 8 writes (expected none)"
# Buffered writes too, since FUSE_HANDLE_KILLPRIV_V2 (our INIT reply):
# the kernel asks once, then marks the inode as having nothing to kill.
n="$(getxattrs_for_writes)"
((n <= 1)) || fail "buffered: $n GETXATTR for 8 writes (expected one at most)"
n="$(getxattrs_for_writes)"
((n == 0)) || fail "buffered, again: $n GETXATTR for 8 writes (expected none)"
head -c 64K /dev/urandom >"$TESTDIR/patch"
run dd if="$TESTDIR/patch" of="$MNT/disk.img" bs=64K seek=3 conv=notrunc oflag=direct status=none
run cmp -n 65536 -i 0:196608 "$TESTDIR/patch" "$SRC/disk.img"

# A file capability (v2: CAP_NET_RAW permitted and effective) goes at the
# first write, as on the backing file system.
run python3 - "$SRC/disk.img" <<-'PY'
	import os, struct, sys
	os.setxattr(sys.argv[1], "security.capability", struct.pack("<5I", 0x02000001, 1 << 13, 0, 0, 0))
PY
run dd if=/dev/zero of="$MNT/disk.img" bs=4k count=1 conv=notrunc oflag=direct status=none
run python3 - "$SRC/disk.img" <<-'PY'
	import errno, os, sys
	try:
	    os.getxattr(sys.argv[1], "security.capability")
	except OSError as e:
	    if e.errno != errno.ENODATA:
	        raise
	else:
	    sys.exit("security.capability survived an O_DIRECT write")
PY
umount_mfs "$MNT"

# held_at_once DD_FLAGS...: two writers of one 4 KiB block each, the second
# started while the daemon holds the first; prints the most writes held at once.
held_at_once() {
	local logf a b deadline
	logf="$(daemon_log)"
	dd if=/dev/zero of="$MNT/disk.img" bs=4k count=1 conv=notrunc status=none "$@" &
	a=$!
	track_bg "$a"
	deadline=$((SECONDS + 30))
	until grep -q 'test: 1 writes held' "$logf"; do
		((SECONDS < deadline)) || fail "the first write never reached the daemon"
		sleep 0.05
	done
	dd if=/dev/zero of="$MNT/disk.img" bs=4k count=1 seek=1 conv=notrunc status=none "$@" &
	b=$!
	track_bg "$b"
	wait "$a" || fail "first writer ($*) failed"
	wait "$b" || fail "second writer ($*) failed"
	sed -n 's/.*test: \([0-9]*\) writes held.*/\1/p' "$logf" | sort -n | tail -n 1
	: >"$logf"
}

MIRRORFS_TEST_WRITE_HOLD_MS=1500 mount_mfs "$SRC" "$MNT"
assert_eq 2 "$(held_at_once oflag=direct)" "O_DIRECT writes held at once"
assert_eq 1 "$(held_at_once)" "buffered writes held at once"
umount_mfs "$MNT"

# Write data reaches the daemon page aligned (fuse/loop.c), so it goes to
# the O_DIRECT descriptor without a copy; the daemon logs, for each held
# write, where its data lay.  The control is libfuse's own loop, which
# mirrorfs keeps for -o clone_fd: its buffers come from malloc(), and
# the data follows the request's 80-byte header.
# placements: 1 MiB and 4 KiB O_DIRECT writes; prints each placement the
# daemon logged for them, once.
placements() {
	local logf
	logf="$(daemon_log)"
	dd if="$TESTDIR/data" of="$MNT/disk.img" bs=1M count=2 oflag=direct status=none ||
		fail "1 MiB O_DIRECT writes failed"
	dd if="$TESTDIR/data" of="$MNT/disk.img" bs=4k count=4 seek=1 oflag=direct conv=notrunc \
		status=none || fail "4 KiB O_DIRECT writes failed"
	sed -n 's/.*test: [0-9]* writes held, data \([a-z]*\).*/\1/p' "$logf" | sort -u
}
head -c 2M /dev/urandom >"$TESTDIR/data"
cp "$TESTDIR/data" "$TESTDIR/expected"
run dd if="$TESTDIR/data" of="$TESTDIR/expected" bs=4k count=4 seek=1 conv=notrunc status=none
for opts in "" "-o clone_fd"; do
	# shellcheck disable=SC2086 # the options are two words or none
	MIRRORFS_TEST_WRITE_HOLD_MS=1 mount_mfs "$SRC" "$MNT" $opts
	placed="$(placements)"
	umount_mfs "$MNT"
	assert_file_eq "$TESTDIR/expected" "$SRC/disk.img"
	if [[ -z "$opts" ]]; then
		assert_eq aligned "$placed" "where O_DIRECT write data lay"
	else
		assert_eq unaligned "$placed" "where write data lay in libfuse's loop"
	fi
done

# A writer without CAP_FSETID loses the set-user-ID bit it writes to.
require_nobody
chmod 0755 "$TESTDIR"
chmod 04666 "$SRC/disk.img"
mount_mfs "$SRC" "$MNT" -o allow_other
run "${AS_NOBODY[@]}" dd if=/dev/zero of="$MNT/disk.img" bs=4k count=1 conv=notrunc oflag=direct \
	status=none
assert_eq 666 "$(stat -c %a "$SRC/disk.img")" "mode after an O_DIRECT write by nobody"
umount_mfs "$MNT"

# A shared map of a file opened O_DIRECT (direct I/O in the kernel).
mount_mfs "$SRC" "$MNT"
"$PYTHON" - "$MNT/disk.img" <<'PY' || fail "a shared map of an O_DIRECT file"
import mmap, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_DIRECT)
m = mmap.mmap(fd, 65536, mmap.MAP_SHARED)
m[4096:8192] = b"M" * 4096
m.flush()
buf = mmap.mmap(-1, 4096)
os.preadv(fd, [buf], 4096)
assert bytes(buf) == b"M" * 4096, "an O_DIRECT read does not see the map's store"
m.close()
os.close(fd)
PY
assert_eq MMMM "$(dd if="$SRC/disk.img" bs=1 skip=4096 count=4 status=none)" \
	"the backing file after a store through the map"
umount_mfs "$MNT"
exit 0
