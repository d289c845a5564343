#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# -o noxattr: every xattr request is answered ENOSYS, so the kernel stops
# sending them, the GETXATTR of security.capability it otherwise sends
# before writing to a file included (counted in the daemon's -d request
# log).  Data goes through as ever, and the source's own xattrs are left
# alone.  Without the option that GETXATTR comes once, at the first write
# (the daemon negotiates FUSE_HANDLE_KILLPRIV_V2, so the kernel then marks
# the inode as having nothing to clear; before, it came with every write):
# the count proves the option is what removes it.

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$TESTDIR"

SRC="$TESTDIR/src"
MNT="$TESTDIR/mnt"
mkdir -p "$SRC" "$MNT"
head -c 1M /dev/urandom >"$SRC/disk.img"
run python3 -c 'import os, sys; os.setxattr(sys.argv[1], "user.kept", b"yes")' "$SRC/disk.img"

# writes_and_getxattrs: 8 writes of 4 KiB; prints the GETXATTR count.
writes_and_getxattrs() {
	requests_during "$MNT" GETXATTR \
		dd if=/dev/urandom of="$MNT/disk.img" bs=4k count=8 conv=notrunc status=none
}

mount_mfs "$SRC" "$MNT" -d
n="$(writes_and_getxattrs)"
((n == 1)) || fail "without noxattr: $n GETXATTR for 8 writes (expected one, at the first)"
umount_mfs "$MNT"

mount_mfs "$SRC" "$MNT" -d -o noxattr
run python3 - "$MNT/disk.img" <<-'PY'
	import errno, os, sys
	path = sys.argv[1]
	for what, call in (("get", lambda: os.getxattr(path, "user.kept")),
	                   ("list", lambda: os.listxattr(path)),
	                   ("set", lambda: os.setxattr(path, "user.new", b"x")),
	                   ("remove", lambda: os.removexattr(path, "user.kept"))):
	    try:
	        call()
	    except OSError as e:
	        if e.errno != errno.EOPNOTSUPP:
	            sys.exit(f"{what}: {e}, expected EOPNOTSUPP")
	    else:
	        sys.exit(f"{what}: succeeded with -o noxattr")
PY
n="$(writes_and_getxattrs)"
((n == 0)) || fail "with noxattr: $n GETXATTR for 8 writes (expected none)"
head -c 64K /dev/urandom >"$TESTDIR/patch"
run dd if="$TESTDIR/patch" of="$MNT/disk.img" bs=64K seek=3 conv=notrunc,fsync status=none
run cmp -n 65536 -i 0:196608 "$TESTDIR/patch" "$MNT/disk.img"
umount_mfs "$MNT"

run cmp -n 65536 -i 0:196608 "$TESTDIR/patch" "$SRC/disk.img"
assert_eq "b'yes'" "$(python3 -c 'import os, sys; print(os.getxattr(sys.argv[1], "user.kept"))' "$SRC/disk.img")" \
	"the source's xattr after a noxattr mount"
exit 0
