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
#   prealloc  a qemu-img image with preallocation=falloc, and a thin one,
#           from ext4 to XFS (loop): the target's preallocated and
#           allocated bytes are the source's, its data the same, and
#           the thin image stays thin
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
require_cmd setfattr getfattr python3 mkfifo touch

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

# tree_times DIR: path, atime and mtime (to the nanosecond) of every object
# below DIR, symlinks themselves; sorted.
tree_times() {
	(cd "$1" && find . -mindepth 1 -printf '%P %y %A@ %T@\n') | LC_ALL=C sort
}

test_times() {
	local a b
	section times
	mkdir -p "$SRC/vm1/empty" "$SRC/vm2"
	echo disk >"$SRC/vm1/disk.img"
	ln -s disk.img "$SRC/vm1/current"
	mkfifo "$SRC/vm2/monitor"
	touch -h -d '2001-09-09 01:46:40.123456789' "$SRC/vm1/current" "$SRC/vm2/monitor" \
		"$SRC/vm1/empty" "$SRC/vm1/disk.img"
	touch -d '2002-02-02 02:02:02.5' "$SRC/vm1" "$SRC/vm2"

	mount_mfs "$SRC" "$MNT" -o "target=$DST,switch=manual"
	wait_state "$MNT" mirrored 60
	# Mirrored: entries made, renamed and removed; utimens on a symlink
	# and on directories, through the mount.
	mkdir "$MNT/vm2/snapshots"
	echo new >"$MNT/vm2/new.img"
	mv "$MNT/vm2/new.img" "$MNT/vm2/snapshots/"
	ln -s ../vm1/disk.img "$MNT/vm2/link"
	touch -h -d '2003-03-03 03:03:03.25' "$MNT/vm2/link" "$MNT/vm1/empty"
	touch -d '2004-04-04 04:04:04.75' "$MNT/vm2/snapshots"
	ctl "$MNT" switch
	wait_switched "$SRC" "$MNT" 60
	umount_mfs "$MNT"
	rm "$SRC/.mirrorfs-journal"
	a="$(tree_times "$SRC")"
	b="$(tree_times "$DST")"
	[[ "$a" == "$b" ]] ||
		fail "times differ:"$'\n'"$(diff <(printf '%s\n' "$a") <(printf '%s\n' "$b") || true)"
	assert_trees_equal "$SRC" "$DST" "times"
}

# extent_bytes FILE [FLAG]: bytes of FILE in extents (with FLAG, e.g.
# unwritten), from filefrag's 4 KiB-block lengths.
extent_bytes() {
	filefrag -v -b4096 "$1" |
		awk -v f="${2:-}" '/^ *[0-9]+:/ && (f == "" || $0 ~ f) {
			gsub(/\.\.|:/, " "); n += $6 } END { print n * 4096 }'
}

test_prealloc() {
	local f xfs
	section prealloc
	require_cmd qemu-img mkfs.xfs filefrag
	grep -qw xfs /proc/filesystems || modprobe xfs 2>/dev/null || { log "no XFS: skipped"; return; }
	xfs="$TESTDIR/xfs.img"
	run truncate -s 1G "$xfs"
	run mkfs.xfs -q "$xfs"
	mount -o loop "$xfs" "$DST" || { log "cannot mount a loop device: skipped"; return; }
	track_mount "$DST"

	run qemu-img create -q -f raw -o preallocation=falloc "$SRC/falloc.img" 96M
	run truncate -s 256M "$SRC/thin.img"
	run dd if=/dev/urandom of="$SRC/thin.img" bs=1M count=1 seek=100 conv=notrunc status=none
	run dd if=/dev/urandom of="$SRC/falloc.img" bs=64K count=3 seek=70 conv=notrunc status=none
	sync
	# (qemu-img writes the first block; the rest is preallocated.)
	assert_le "$((90 * 1024 * 1024))" "$(extent_bytes "$SRC/falloc.img" unwritten)" \
		"preallocated bytes of the source (ext4)"

	mount_mfs "$SRC" "$MNT" -o "target=$DST,switch=manual"
	wait_state "$MNT" mirrored 60
	# Mirrored: a guest write into a preallocated range.
	run dd if=/dev/urandom of="$MNT/falloc.img" bs=64K count=1 seek=10 conv=notrunc,fsync \
		status=none
	ctl "$MNT" switch
	wait_switched "$SRC" "$MNT" 60
	umount_mfs "$MNT"
	for f in falloc.img thin.img; do
		run cmp "$SRC/$f" "$DST/$f" || fail "$f differs"
		assert_eq "$(extent_bytes "$SRC/$f")" "$(extent_bytes "$DST/$f")" "allocated bytes of $f"
		assert_eq "$(extent_bytes "$SRC/$f" unwritten)" "$(extent_bytes "$DST/$f" unwritten)" \
			"preallocated bytes of $f"
		log "$f: $(du --block-size=1 "$SRC/$f" | cut -f1) bytes in the source," \
			"$(du --block-size=1 "$DST/$f" | cut -f1) in the target"
	done
	assert_le "$(alloc_bytes "$DST/thin.img")" $((2 * 1024 * 1024)) "blocks of thin.img"
	assert_le $((96 * 1024 * 1024)) "$(alloc_bytes "$DST/falloc.img")" "blocks of falloc.img"
}

# faultfs_target OPTIONS: a faultfs over $DST/../backing on $DST, with
# OPTIONS; its faults armed while $ARM exists.
faultfs_target() {
	BACKING="$(dirname "$DST")/backing"
	ARM="$(dirname "$DST")/armed"
	mkdir -p "$BACKING"
	mount_faultfs "$BACKING" "$DST" "$1,arm_file=$ARM"
}

# A source with an owner other than root's and a user xattr, one
# directory down.
make_source() {
	mkdir "$SRC/sub"
	echo disk >"$SRC/sub/owned.img"
	chown 1234:5678 "$SRC/sub/owned.img"
	echo conf >"$SRC/sub/vm.conf"
	setfattr -n user.comment -v hello "$SRC/sub/vm.conf"
}

# expect_refused PATTERN...: the start onto $DST fails, one line naming
# each PATTERN, and leaves the target as it was (empty).
expect_refused() {
	local p
	cli "$MIRRORFSCTL" "$MNT" start "$DST"
	msg="$(cli_verdict "start onto $DST" 1 "$1" mirrorfsctl)" || fail "$msg"
	for p in "$@"; do
		[[ "$CLI_ERR" == *"$p"* ]] || fail "'$p' not in the refusal: $CLI_ERR"
	done
	log "refused: $CLI_ERR"
	assert_eq "" "$(ls -A "$BACKING")" "the target after the refused start"
	assert_eq idle "$(status_field "$MNT" state)" "state after the refused start"
}

test_refuse() {
	section refuse
	require_faultfs
	make_source
	mount_mfs "$SRC" "$MNT"
	faultfs_target fail_chown
	touch "$ARM"
	expect_refused "cannot hold the owner 1234:5678 of 'sub/owned.img'" \
		"Operation not permitted"
	umount_faultfs "$DST"
	faultfs_target no_xattr=user.
	touch "$ARM"
	expect_refused "cannot hold the extended attribute 'user.comment' of 'sub/vm.conf'" \
		"Operation not supported"
	umount_faultfs "$DST"
	umount_mfs "$MNT"
}

test_warn() {
	local logf
	section warn
	require_faultfs
	make_source
	mount_mfs "$SRC" "$MNT"
	faultfs_target fail_chown,no_xattr=user.
	# Armed after the start: what the walk copied is fine, what the guest
	# does later the target refuses.
	ctl "$MNT" --switch=manual start "$DST"
	wait_status_state "$MNT" mirrored 60
	touch "$ARM"
	chown 4321:4321 "$MNT/sub/owned.img"
	setfattr -n user.later -v 1 "$MNT/sub/vm.conf"
	echo new >"$MNT/sub/new.conf"
	chown 4321:4321 "$MNT/sub/new.conf"
	rm "$ARM"
	ctl "$MNT" switch
	wait_status_state "$MNT" switched 60
	logf="$(daemon_log "$MNT")"
	grep -q "the target cannot hold the owner 4321:4321 of 'sub/owned.img' (Operation not permitted)" \
		"$logf" || fail "no warning naming the refused owner:"$'\n'"$(cat "$logf")"
	grep -q "without 3 owner(s) or extended attribute(s)" "$logf" ||
		fail "no count of the losses at the switch:"$'\n'"$(cat "$logf")"
	# The walk's copy was complete: the owner and the xattr from before.
	assert_eq 1234:5678 "$(stat -c %u:%g "$BACKING/sub/owned.img")" "owner copied by the walk"
	assert_eq hello "$(getfattr --absolute-names --only-values -n user.comment "$BACKING/sub/vm.conf")" \
		"xattr copied by the walk"
	umount_mfs "$MNT"
	umount_faultfs "$DST"
}

wanted xattrs && test_xattrs
wanted times && test_times
wanted prealloc && test_prealloc
wanted refuse && test_refuse
wanted warn && test_warn

! mounts_under "$TESTDIR" || fail "a mirrorfs mount was left under $TESTDIR"
exit 0
