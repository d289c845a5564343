#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# A target that already holds names, through a real mount (issue 17,
# defects 6 and 10): after the switch the target must equal the source
# exactly (names, types, bytes, and which names are links of which file),
# whatever the target held before.
#
#   restart   kill -9 of the daemon while it copies (speed limited);
#             meanwhile the source changes as an operator may change it
#             while the daemon is down: an image deleted, one file made a
#             hard link of another, a file replaced by a directory, a
#             directory removed.  The remount (same command line) starts
#             the migration again, reusing the partial target; the
#             target's stale names must not come back, nor a link be
#             served with another file's partial content.
#   back      A -> B switched, names deleted and a link broken through
#             the mount on B, then B -> A with --overwrite: A's stale
#             names must not reappear, and A's old links must not join
#             files that are distinct now.

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
. "$(dirname "${BASH_SOURCE[0]}")/lib-migration.sh"
. "$(dirname "${BASH_SOURCE[0]}")/lib-control.sh"
cd "$TESTDIR"

# listing DIR: tree_listing without the journal at the top, and the names
# of each regular file below DIR, one file a line ("a b" for a file with
# the names a and b).
listing() {
	tree_listing "$1" | grep -v '^\.mirrorfs-journal ' || true
	echo "links:"
	(cd "$1" && find . -type f ! -path ./.mirrorfs-journal -printf '%i %P\n') |
		LC_ALL=C sort -k1,1n -k2 |
		awk '$1 != last { if (NR > 1) print line; line = $2; last = $1; next }
		     { line = line " " $2 } END { if (NR) print line }' | LC_ALL=C sort
}

# assert_same EXPECTED ACTUAL WHAT: the same names, types, modes, sizes,
# symlink targets, bytes, and the same names linked together.
assert_same() {
	local la lb f
	la="$(listing "$1")"
	lb="$(listing "$2")"
	[[ "$la" == "$lb" ]] ||
		fail "$3: trees differ ('$1' vs '$2'):"$'\n'"$(diff <(printf '%s\n' "$la") \
			<(printf '%s\n' "$lb") || true)"
	while IFS= read -r -d '' f; do
		cmp -s -- "$1/$f" "$2/$f" || fail "$3: '$f' differs between '$1' and '$2'"
	done < <(cd "$1" && find . -type f ! -path ./.mirrorfs-journal -printf '%P\0')
}

# crash MNT: kill -9 its daemon, detach the dead mount.
crash() {
	local mnt pid
	mnt="$(realpath "$1")"
	pid="${MFS_PID[$mnt]}"
	kill -KILL "$pid"
	wait_pid_exit "$pid" 10 || fail "the daemon survived SIGKILL"
	wait "$pid" 2>/dev/null || true
	unset 'MFS_PID[$mnt]' 'MFS_LOG[$mnt]'
	fusermount3 -u "$mnt" 2>/dev/null || umount -l "$mnt" || fail "cannot detach the dead mount"
	! is_mounted "$mnt" || fail "the dead mount is still there"
}

# fill DIR: images (random data), links, a symlink and a config tree.
fill() {
	mkdir -p "$1/sub" "$1/old" "$1/conf"
	head -c $((3 << 20)) /dev/urandom >"$1/a.img"
	head -c $((3 << 20)) /dev/urandom >"$1/b.img"
	head -c $((2 << 20)) /dev/urandom >"$1/gone.img"
	head -c $((1 << 20)) /dev/urandom >"$1/sub/c.img"
	head -c 100000 /dev/urandom >"$1/sub/d.img"
	head -c 5000 /dev/urandom >"$1/old/notes"
	ln "$1/a.img" "$1/sub/a-alias.img"
	echo "vm=x" >"$1/conf/vm.conf"
	ln -s conf/vm.conf "$1/vm.conf"
}

section_restart() {
	local src="$TESTDIR/restart/src" dst="$TESTDIR/restart/dst" mnt="$TESTDIR/restart/mnt"
	log "--- restart"
	mkdir -p "$src" "$dst" "$mnt"
	fill "$src"
	mount_mfs "$src" "$mnt" -o "target=$dst,speed=2M"
	sleep 1.5
	assert_eq copying "$(status_field "$mnt" state)" "state before the kill"
	crash "$mnt"
	assert_eq copying "$(journal_state "$dst")" "the target's journal after the kill"
	[[ -e "$dst/gone.img" && -e "$dst/sub/d.img" ]] || fail "the walk left no partial target"
	# While the daemon is down: the operator changes the source.
	rm "$src/gone.img"
	rm "$src/sub/d.img"
	ln "$src/b.img" "$src/sub/d.img"
	rm "$src/sub/c.img"
	mkdir "$src/sub/c.img"
	echo "inside" >"$src/sub/c.img/file"
	rm -r "$src/old"
	mount_mfs "$src" "$mnt" -o "target=$dst,speed=2M"
	ctl "$mnt" speed 0
	wait_status_state "$mnt" switched 60
	is_switched "$src" || fail "the source's journal does not say switched"
	assert_same "$src" "$dst" "restart: the target after the switch"
	assert_same "$src" "$mnt" "restart: the mount after the switch"
	umount_mfs "$mnt"
}

section_back() {
	local a="$TESTDIR/back/a" b="$TESTDIR/back/b" mnt="$TESTDIR/back/mnt"
	log "--- back"
	mkdir -p "$a" "$b" "$mnt"
	fill "$a"
	mount_mfs "$a" "$mnt"
	ctl "$mnt" start "$b"
	wait_status_state "$mnt" switched 60
	# On B, through the mount: names deleted, a link broken.
	rm "$mnt/gone.img" "$mnt/sub/a-alias.img"
	cp "$mnt/a.img" "$mnt/sub/a-alias.img"
	rm -r "$mnt/old"
	[[ -e "$a/gone.img" ]] || fail "A lost its stale files before the migration back"
	ctl "$mnt" start "$a" --overwrite
	wait_status_state "$mnt" switched 60
	assert_eq "$a" "$(status_field "$mnt" served)" "the directory served after the migration back"
	[[ ! -e "$a/gone.img" && ! -e "$a/old" ]] || fail "back: names deleted on B reappeared in A"
	assert_same "$b" "$a" "back: A after the migration back"
	assert_same "$b" "$mnt" "back: the mount after the migration back"
	umount_mfs "$mnt"
}

for s in ${REUSE_SECTIONS:-restart back}; do
	"section_$s"
done
! mounts_under "$TESTDIR" || fail "a mirrorfs mount was left under $TESTDIR"
exit 0
