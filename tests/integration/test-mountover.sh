#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Mount over: SOURCE == MOUNTPOINT.  This is how mirrorfs is meant to be put
# under running VMs: the images keep their paths.  The daemon opens the
# directory before mounting on it, so it still reaches what lies beneath.
# Files that were there must be readable and writable through the mount,
# new files must land in the directory underneath, and after unmount the
# directory must hold everything that was written.

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DIR="$TESTDIR/images"
REF="$TESTDIR/ref" # what DIR should contain, kept outside of it
mkdir -p "$DIR/sub" "$REF/sub"

# Pre-existing content, with a copy outside to compare against.
head -c 4M /dev/urandom >"$REF/disk.img"
echo "in a subdirectory" >"$REF/sub/notes.txt"
cp "$REF/disk.img" "$DIR/disk.img"
cp "$REF/sub/notes.txt" "$DIR/sub/notes.txt"
dev_before="$(stat -c %d "$DIR")"

mount_mfs "$DIR" "$DIR"

# The directory is now served by mirrorfs, not by the file system below.
assert_ne "$dev_before" "$(stat -c %d "$DIR")" "st_dev of the directory after mount over"
assert_eq "disk.img sub" "$(cd "$DIR" && echo *)" "names through the mount"

# Old files are visible with their content.
assert_file_eq "$REF/disk.img" "$DIR/disk.img"
assert_file_eq "$REF/sub/notes.txt" "$DIR/sub/notes.txt"

# ... and writable in place: overwrite 64 KiB in the middle, and append.
head -c 64K /dev/urandom >"$TESTDIR/patch"
for f in "$REF/disk.img" "$DIR/disk.img"; do
	run dd if="$TESTDIR/patch" of="$f" bs=64K seek=17 conv=notrunc,fsync status=none
done
echo "appended" | tee -a "$REF/sub/notes.txt" >>"$DIR/sub/notes.txt"
assert_file_eq "$REF/disk.img" "$DIR/disk.img"
assert_file_eq "$REF/sub/notes.txt" "$DIR/sub/notes.txt"

# New files and directories.
head -c 3M /dev/urandom >"$REF/new.img"
run cp "$REF/new.img" "$DIR/new.img"
mkdir "$DIR/newdir"
echo "created through the mount" >"$DIR/newdir/file"
assert_file_eq "$REF/new.img" "$DIR/new.img"

umount_mfs "$DIR"

# Everything is in the directory itself now that nothing is over it.
assert_eq "$dev_before" "$(stat -c %d "$DIR")" "st_dev of the directory after unmount"
assert_file_eq "$REF/disk.img" "$DIR/disk.img"
assert_file_eq "$REF/sub/notes.txt" "$DIR/sub/notes.txt"
assert_file_eq "$REF/new.img" "$DIR/new.img"
assert_eq "created through the mount" "$(cat "$DIR/newdir/file")" "new file after unmount"

# Mounting over again shows the same data: nothing was left only in a cache.
mount_mfs "$DIR" "$DIR"
assert_ne "$dev_before" "$(stat -c %d "$DIR")" "st_dev after the second mount over"
assert_file_eq "$REF/disk.img" "$DIR/disk.img"
assert_file_eq "$REF/new.img" "$DIR/new.img"
assert_eq "created through the mount" "$(cat "$DIR/newdir/file")" "new file, second mount"
umount_mfs "$DIR"
exit 0
