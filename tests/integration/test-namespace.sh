#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Names and metadata through the mount: every operation is done through
# the mount point and its effect checked both through the mount and in the
# source directory underneath, so a passthrough that only fakes the result
# in the kernel's caches is caught.
#
# xattrs and renameat2 go through python3 (always there, unlike the attr
# package, and coreutils' mv --exchange is too new to count on).

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SRC="$TESTDIR/src"
MNT="$TESTDIR/mnt"
mkdir "$SRC" "$MNT"
mount_mfs "$SRC" "$MNT"

# renameat2 OLD NEW FLAGS: print "ok" or the errno name (EEXIST, ...).
renameat2() {
	run python3 - "$@" <<-'EOF'
	import ctypes, errno, sys
	libc = ctypes.CDLL(None, use_errno=True)
	AT_FDCWD = -100
	old, new, flags = sys.argv[1], sys.argv[2], int(sys.argv[3])
	ret = libc.renameat2(AT_FDCWD, old.encode(), AT_FDCWD, new.encode(), flags)
	print("ok" if ret == 0 else errno.errorcode[ctypes.get_errno()])
	EOF
}
readonly RENAME_NOREPLACE=1 RENAME_EXCHANGE=2

# both REL: the two paths of one object, through the mount and underneath.
both() {
	echo "$MNT/$1" "$SRC/$1"
}

test_mkdir_rmdir() {
	mkdir "$MNT/dir"
	[[ -d "$SRC/dir" ]] || fail "mkdir: no directory in the source"
	mkdir -p "$MNT/dir/a/b/c"
	[[ -d "$SRC/dir/a/b/c" ]] || fail "mkdir -p: no nested directories in the source"
	echo x >"$MNT/dir/a/file"
	if rmdir "$MNT/dir/a" 2>/dev/null; then
		fail "rmdir of a non-empty directory succeeded"
	fi
	rm "$MNT/dir/a/file"
	rmdir "$MNT/dir/a/b/c" "$MNT/dir/a/b" "$MNT/dir/a" "$MNT/dir"
	[[ ! -e "$MNT/dir" ]] || fail "rmdir: directory still visible through the mount"
	[[ ! -e "$SRC/dir" ]] || fail "rmdir: directory still in the source"
}

test_create_unlink() {
	echo hello >"$MNT/file"
	assert_eq hello "$(cat "$SRC/file")" "content in the source after create"
	assert_eq hello "$(cat "$MNT/file")" "content through the mount"
	rm "$MNT/file"
	[[ ! -e "$MNT/file" ]] || fail "unlink: file still visible through the mount"
	[[ ! -e "$SRC/file" ]] || fail "unlink: file still in the source"
}

test_rename() {
	mkdir "$MNT/r1" "$MNT/r2"
	echo one >"$MNT/r1/a"
	echo two >"$MNT/r1/b"

	# Plain rename, then across directories, then over an existing file.
	mv "$MNT/r1/a" "$MNT/r1/a2"
	mv "$MNT/r1/a2" "$MNT/r2/a3"
	[[ ! -e "$MNT/r1/a" && ! -e "$MNT/r1/a2" && ! -e "$SRC/r1/a2" ]] ||
		fail "rename: old name still there"
	for p in $(both r2/a3); do assert_eq one "$(cat "$p")" "renamed file $p"; done
	mv -f "$MNT/r1/b" "$MNT/r2/a3"
	for p in $(both r2/a3); do assert_eq two "$(cat "$p")" "file renamed over $p"; done

	# A directory with content.
	echo deep >"$MNT/r1/inner"
	mv "$MNT/r1" "$MNT/r2/moved"
	for p in $(both r2/moved/inner); do assert_eq deep "$(cat "$p")" "moved directory $p"; done

	# RENAME_NOREPLACE: refused onto an existing name, fine onto a new one.
	echo keep >"$MNT/nr-src"
	echo target >"$MNT/nr-dst"
	assert_eq EEXIST "$(renameat2 "$MNT/nr-src" "$MNT/nr-dst" $RENAME_NOREPLACE)" \
		"RENAME_NOREPLACE onto an existing name"
	assert_eq target "$(cat "$SRC/nr-dst")" "target after refused RENAME_NOREPLACE"
	assert_eq ok "$(renameat2 "$MNT/nr-src" "$MNT/nr-new" $RENAME_NOREPLACE)" \
		"RENAME_NOREPLACE onto a new name"
	[[ ! -e "$SRC/nr-src" ]] || fail "RENAME_NOREPLACE left the old name"
	for p in $(both nr-new); do assert_eq keep "$(cat "$p")" "RENAME_NOREPLACE result $p"; done

	# RENAME_EXCHANGE: the two names swap their files.
	echo left >"$MNT/x-left"
	echo right >"$MNT/x-right"
	assert_eq ok "$(renameat2 "$MNT/x-left" "$MNT/x-right" $RENAME_EXCHANGE)" "RENAME_EXCHANGE"
	for d in "$MNT" "$SRC"; do
		assert_eq right "$(cat "$d/x-left")" "x-left after exchange in $d"
		assert_eq left "$(cat "$d/x-right")" "x-right after exchange in $d"
	done
}

test_symlink() {
	echo target-content >"$MNT/target"
	ln -s target "$MNT/link"
	ln -s /nonexistent/dangling "$MNT/dangling"
	for p in $(both link); do assert_eq target "$(readlink "$p")" "readlink $p"; done
	assert_eq /nonexistent/dangling "$(readlink "$MNT/dangling")" "readlink of a dangling link"
	assert_eq target-content "$(cat "$MNT/link")" "reading through a symlink"
	assert_eq "symbolic link" "$(stat -c %F "$MNT/link")" "type of the symlink"
	# Operations on a link act on the link, not on its target.
	rm "$MNT/link"
	[[ -e "$SRC/target" && ! -L "$SRC/link" ]] || fail "unlink of a symlink"
}

test_hardlink() {
	echo linked >"$MNT/h1"
	mkdir "$MNT/hdir"
	ln "$MNT/h1" "$MNT/hdir/h2"
	# One file, two names: the same inode number through the mount.
	assert_eq "$(stat -c %i "$MNT/h1")" "$(stat -c %i "$MNT/hdir/h2")" "inode of hard links"
	assert_eq "$(stat -c %i "$SRC/h1")" "$(stat -c %i "$SRC/hdir/h2")" "inode in the source"
	for p in "$MNT/h1" "$MNT/hdir/h2" "$SRC/h1"; do
		assert_eq 2 "$(stat -c %h "$p")" "link count of $p"
	done
	# A write through one name shows through the other.
	echo more >>"$MNT/hdir/h2"
	assert_eq $'linked\nmore' "$(cat "$MNT/h1")" "write through the other name"
	rm "$MNT/h1"
	assert_eq 1 "$(stat -c %h "$MNT/hdir/h2")" "link count after unlinking one name"
}

test_special_files() {
	mkfifo "$MNT/fifo"
	for p in $(both fifo); do assert_eq fifo "$(stat -c %F "$p")" "type of $p"; done
	# The kernel runs a FIFO itself, but it must open through the mount.
	run bash -c 'echo through-the-fifo >"$1"' _ "$MNT/fifo" &
	local writer=$!
	track_bg "$writer"
	assert_eq through-the-fifo "$(run cat "$MNT/fifo")" "data through the FIFO"
	wait "$writer" || fail "FIFO writer failed"

	# A device node (creating it is allowed; the mount is nodev for opening).
	mknod "$MNT/null" c 1 3
	for p in $(both null); do
		assert_eq "character special file 1 3" "$(stat -c '%F %t %T' "$p")" "device node $p"
	done
}

test_attributes() {
	echo attrs >"$MNT/attr"

	chmod 0640 "$MNT/attr"
	for p in $(both attr); do assert_eq 640 "$(stat -c %a "$p")" "mode of $p"; done
	chmod u+s,g+x "$MNT/attr"
	for p in $(both attr); do assert_eq 4650 "$(stat -c %a "$p")" "setuid mode of $p"; done

	chown 1234:5678 "$MNT/attr"
	for p in $(both attr); do assert_eq 1234:5678 "$(stat -c %u:%g "$p")" "owner of $p"; done

	# utimens with nanoseconds, mtime and atime separately.
	touch -m -d '2001-02-03 04:05:06.123456789 UTC' "$MNT/attr"
	touch -a -d '2002-03-04 05:06:07.5 UTC' "$MNT/attr"
	for p in $(both attr); do
		assert_eq 981173106.123456789 "$(stat -c %.9Y "$p")" "mtime of $p"
		assert_eq 1015218367.500000000 "$(stat -c %.9X "$p")" "atime of $p"
	done
	# utimens "now" (UTIME_NOW).
	# The kernel stamps files from its coarse clock, which lags date's
	# by up to a tick: across a second's boundary the file's second is
	# one less.  "Now" here means not the 2001 time set above.
	local before
	before="$(($(date +%s) - 1))"
	touch "$MNT/attr"
	assert_le "$before" "$(stat -c %Y "$SRC/attr")" "mtime after touch (now)"

	# truncate: grow reads zeros, shrink keeps the head.
	printf 0123456789 >"$MNT/trunc"
	truncate -s 12345 "$MNT/trunc"
	for p in $(both trunc); do assert_eq 12345 "$(stat -c %s "$p")" "size of $p after grow"; done
	assert_eq 0 "$(tail -c +11 "$MNT/trunc" | tr -d '\0' | wc -c)" "non-zero bytes past the old end"
	truncate -s 4 "$MNT/trunc"
	for p in $(both trunc); do assert_eq 0123 "$(cat "$p")" "content of $p after shrink"; done
}

test_xattrs() {
	echo x >"$MNT/xattr"
	run python3 - "$MNT/xattr" "$SRC/xattr" <<-'EOF'
	import errno, os, sys

	mnt, src = sys.argv[1:3]

	def check(cond, what):
	    if not cond:
	        sys.exit(f"xattr: {what}")

	def errno_of(fn, *args):
	    try:
	        fn(*args)
	    except OSError as e:
	        return e.errno
	    return 0

	os.setxattr(mnt, "user.mirrorfs", b"value-1")
	check(os.getxattr(mnt, "user.mirrorfs") == b"value-1", "get through the mount")
	check(os.getxattr(src, "user.mirrorfs") == b"value-1", "get in the source")
	check("user.mirrorfs" in os.listxattr(mnt), "listed through the mount")

	# Larger than Python's first 128-byte guess: exercises the ERANGE retry.
	os.setxattr(mnt, "user.big", b"x" * 3000)
	check(os.getxattr(mnt, "user.big") == b"x" * 3000, "big value")

	check(errno_of(os.setxattr, mnt, "user.mirrorfs", b"v", os.XATTR_CREATE) == errno.EEXIST,
	      "XATTR_CREATE on an existing name must fail with EEXIST")
	check(errno_of(os.setxattr, mnt, "user.none", b"v", os.XATTR_REPLACE) == errno.ENODATA,
	      "XATTR_REPLACE on a missing name must fail with ENODATA")
	os.setxattr(mnt, "user.mirrorfs", b"value-2", os.XATTR_REPLACE)
	check(os.getxattr(src, "user.mirrorfs") == b"value-2", "replaced value")

	os.removexattr(mnt, "user.mirrorfs")
	check(errno_of(os.getxattr, mnt, "user.mirrorfs") == errno.ENODATA, "removed: ENODATA")
	check("user.mirrorfs" not in os.listxattr(src), "removed in the source")
	check(os.listxattr(mnt) == ["user.big"], f"list after remove: {os.listxattr(mnt)}")
	EOF
}

test_append() {
	local fd
	echo first >>"$MNT/append"
	echo second >>"$MNT/append"
	# Interleaved with a write at offset 0 from another descriptor: the
	# appends must still go to the end.
	exec {fd}<>"$MNT/append"
	printf FIRST >&"$fd"
	echo third >>"$MNT/append"
	exec {fd}>&-
	for p in $(both append); do
		assert_eq $'FIRST\nsecond\nthird' "$(cat "$p")" "O_APPEND content of $p"
	done
}

test_open_file_rename_unlink() {
	local fd
	exec {fd}>"$MNT/open.log"
	echo one >&"$fd"
	mv "$MNT/open.log" "$MNT/renamed.log"
	echo two >&"$fd"
	for p in $(both renamed.log); do
		assert_eq $'one\ntwo' "$(cat "$p")" "writes through an fd kept across rename ($p)"
	done

	rm "$MNT/renamed.log"
	[[ ! -e "$SRC/renamed.log" ]] || fail "unlinked open file still in the source"
	echo three >&"$fd" || fail "write to an open file after unlink"
	# /proc/PID/fd reopens the unlinked file through the mount.
	assert_eq $'one\ntwo\nthree' "$(cat "/proc/$$/fd/$fd")" "content of the unlinked open file"
	exec {fd}>&-
}

test_big_directory() {
	local n=2000 i
	mkdir "$MNT/many"
	# Long names: many readdir buffers, so resuming at an offset is exercised.
	(
		cd "$MNT/many"
		for ((i = 0; i < n; i++)); do
			printf 'entry-with-a-rather-long-name-to-fill-buffers-%04d\n' "$i"
		done | run xargs touch
	)
	# ls -f: unsorted, everything, straight from readdir.
	assert_eq $((n + 2)) "$(run ls -f "$MNT/many" | wc -l)" "entries listed by ls -f"
	assert_eq 0 "$(run ls -f "$MNT/many" | sort | uniq -d | wc -l)" "duplicate entries"
	diff <(run ls -f "$MNT/many" | sort) <(ls -f "$SRC/many" | sort) >/dev/null ||
		fail "names through the mount differ from those in the source"
	# ls -l: readdirplus and a stat of each.
	assert_eq "$n" "$(run ls -l "$MNT/many" | grep -c '^-')" "files listed by ls -l"
	run rm -r "$MNT/many"
	[[ ! -e "$SRC/many" ]] || fail "rm -r of the big directory"
}

test_statfs() {
	local out
	out="$(run df -P "$MNT")" || fail "df on the mount failed"
	assert_contains "$out" "$MNT" "df output"
	# Same numbers as the file system underneath (total size, block size).
	assert_eq "$(stat -f -c '%S %b %c' "$SRC")" "$(stat -f -c '%S %b %c' "$MNT")" "statfs of the mount"
}

test_mkdir_rmdir
test_create_unlink
test_rename
test_symlink
test_hardlink
test_special_files
test_attributes
test_xattrs
test_append
test_open_file_rename_unlink
test_big_directory
test_statfs

umount_mfs "$MNT"
exit 0
