#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Migrations that must not start: a target that is the source, lies inside
# it or contains it, is no directory, cannot be written, already holds the
# source's names or has no room for its data; and option values that make
# no sense.  Each is refused before anything is mounted, with exactly one
# line on stderr ("mirrorfs: ..."), nothing on stdout and a non-zero exit
# status; and neither the target nor the source changes at all, not even a
# journal written and removed again (the listings compared include the
# modification times).

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
. "$(dirname "${BASH_SOURCE[0]}")/lib-migration.sh"
require_cmd mount umount mountpoint md5sum

SRC="$TESTDIR/src"
MNT="$TESTDIR/mnt"
DST="$TESTDIR/dst"
mkdir "$SRC" "$MNT" "$DST" "$SRC/sub"
head -c $((4 * 1024 * 1024)) /dev/urandom >"$SRC/disk.raw"
echo conf >"$SRC/vm.conf"
echo keep >"$DST/other-file"

# snapshot DIR...: everything a failed start might have touched: names,
# types, modes, sizes, modification times (of the directories too) and
# contents.
snapshot() {
	local d
	for d in "$@"; do
		[[ -e "$d" ]] || { echo "$d: absent"; continue; }
		if [[ ! -d "$d" ]]; then
			stat -c '%n %F %a %s %y' "$d" && md5sum "$d"
			continue
		fi
		(cd "$d" && find . -printf '%p %y %m %s %T@\n' | LC_ALL=C sort &&
			find . -type f -exec md5sum {} + | LC_ALL=C sort)
	done
}

# expect_refused WHAT EXPECTED_SUBSTRING ARGS...: run mirrorfs ARGS as a
# user would (no -f: if it wrongly mounts, it detaches and the EXIT trap
# unmounts) and check how it refused, and that nothing changed in the
# directories named in $WATCH.
WATCH=("$SRC" "$DST")
expect_refused() {
	local what="$1" expected="$2" rc=0 before after mounts_before mounts_after
	local -a lines
	shift 2

	before="$(snapshot "${WATCH[@]}")"
	mounts_before="$(mirrorfs_mounts "$TESTDIR" | sort)"
	run "$MIRRORFS" "$@" >"$TESTDIR/stdout" 2>"$TESTDIR/stderr" || rc=$?
	mounts_after="$(mirrorfs_mounts "$TESTDIR" | sort)"
	after="$(snapshot "${WATCH[@]}")"

	assert_eq "$mounts_before" "$mounts_after" "$what: mount table after 'mirrorfs $*'"
	((rc != 124)) || fail "$what: 'mirrorfs $*' hung"
	((rc != 0)) || fail "$what: 'mirrorfs $*' exited 0"
	[[ ! -s "$TESTDIR/stdout" ]] ||
		fail "$what: output on stdout: $(cat "$TESTDIR/stdout")"
	mapfile -t lines <"$TESTDIR/stderr"
	((${#lines[@]} == 1)) && [[ -n "${lines[0]}" && -z "$(tail -c 1 "$TESTDIR/stderr")" ]] ||
		fail "$what: expected one line on stderr, got ${#lines[@]}:"$'\n'"$(cat "$TESTDIR/stderr")"
	[[ "${lines[0]}" == "mirrorfs: "* ]] || fail "$what: message does not start with 'mirrorfs: ': ${lines[0]}"
	assert_contains "${lines[0]}" "$expected" "$what: error message"
	[[ "$before" == "$after" ]] ||
		fail "$what: 'mirrorfs $*' changed the directories:"$'\n'"$(diff <(echo "$before") \
			<(echo "$after") || true)"
	log "ok: $what: ${lines[0]}"
}

# --- the target -------------------------------------------------------------

expect_refused "target is the source" "cannot migrate: target '$SRC' is the source" \
	-o "target=$SRC" "$SRC" "$MNT"
ln -s src "$TESTDIR/src-link"
expect_refused "target is the source by a symlink" "is the source" \
	-o "target=$TESTDIR/src-link" "$SRC" "$MNT"
expect_refused "target is the source, mounted over itself" "is the source" \
	-o "target=$SRC" "$SRC" "$SRC"
expect_refused "target inside the source" "cannot migrate: target '$SRC/sub' lies inside the source" \
	-o "target=$SRC/sub" "$SRC" "$MNT"
mkdir -p "$DST/nested/src"
echo n >"$DST/nested/src/n.conf"
expect_refused "target contains the source" "contains the source" \
	-o "target=$DST" "$DST/nested/src" "$MNT"
rm -r "$DST/nested"

expect_refused "target does not exist" "cannot migrate: target '$TESTDIR/nosuch'" \
	-o "target=$TESTDIR/nosuch" "$SRC" "$MNT"
[[ ! -e "$TESTDIR/nosuch" ]] || fail "a refused migration made its target"
echo file >"$TESTDIR/target-file"
WATCH=("$SRC" "$DST" "$TESTDIR/target-file")
expect_refused "target is a regular file" "is not a directory" \
	-o "target=$TESTDIR/target-file" "$SRC" "$MNT"
WATCH=("$SRC" "$DST")

# Not writable: root may write anywhere its mode bits say no, but not on a
# read-only file system.
mkdir "$TESTDIR/ro"
mount -t tmpfs -o size=16m,mode=0755 mirrorfs-test-ro "$TESTDIR/ro" ||
	skip "cannot mount a tmpfs (needed for a read-only and a full target)"
track_mount "$TESTDIR/ro"
echo stays >"$TESTDIR/ro/stays"
mount -o remount,ro "$TESTDIR/ro"
WATCH=("$SRC" "$DST" "$TESTDIR/ro")
expect_refused "target on a read-only file system" "not writable" \
	-o "target=$TESTDIR/ro" "$SRC" "$MNT"
umount "$TESTDIR/ro"

# Names of the source already in the target, at its root.
echo other >"$DST/vm.conf"
WATCH=("$SRC" "$DST")
expect_refused "target holds a file of the same name" "already holds 'vm.conf'" \
	-o "target=$DST" "$SRC" "$MNT"
rm "$DST/vm.conf"
mkdir "$DST/sub"
expect_refused "target holds a directory of the same name" "already holds 'sub'" \
	-o "target=$DST" "$SRC" "$MNT"
rmdir "$DST/sub"
ln -s /nonexistent "$DST/disk.raw"
expect_refused "target holds a symlink of the same name" "already holds 'disk.raw'" \
	-o "target=$DST" "$SRC" "$MNT"
rm "$DST/disk.raw"

# No room: the source holds 4 MiB of data, the target 1 MiB of space.
mkdir "$TESTDIR/small"
mount -t tmpfs -o size=1m mirrorfs-test-small "$TESTDIR/small"
track_mount "$TESTDIR/small"
echo small >"$TESTDIR/small/existing"
WATCH=("$SRC" "$DST" "$TESTDIR/small")
expect_refused "target without room for the data" "bytes free" \
	-o "target=$TESTDIR/small" "$SRC" "$MNT"
umount "$TESTDIR/small"
WATCH=("$SRC" "$DST")

# --- option values ------------------------------------------------------------

expect_refused "chunk=0" "chunk=0" -o "target=$DST,chunk=0" "$SRC" "$MNT"
expect_refused "chunk not a power of two" "power of two" -o "target=$DST,chunk=3000" "$SRC" "$MNT"
expect_refused "chunk too large" "power of two" -o "target=$DST,chunk=1G" "$SRC" "$MNT"
expect_refused "chunk too small" "power of two" -o "target=$DST,chunk=1K" "$SRC" "$MNT"
expect_refused "chunk not a size" "chunk=abc" -o "target=$DST,chunk=abc" "$SRC" "$MNT"
expect_refused "speed not a rate" "speed=abc" -o "target=$DST,speed=abc" "$SRC" "$MNT"
expect_refused "speed negative" "speed=-5M" -o "target=$DST,speed=-5M" "$SRC" "$MNT"
expect_refused "guest_share over 90" "guest_share=95: not a percentage from 0 to 90" -o "target=$DST,guest_share=95" "$SRC" "$MNT"
expect_refused "guest_share not a number" "guest_share=half" -o "target=$DST,guest_share=half" "$SRC" "$MNT"
expect_refused "guest_share without target" "need -o target=DIR" -o guest_share=10 "$SRC" "$MNT"
expect_refused "switch=sometimes" "switch=sometimes" -o "target=$DST,switch=sometimes" "$SRC" "$MNT"
expect_refused "speed without target" "target" -o speed=10M "$SRC" "$MNT"
expect_refused "empty speed without target" "speed" -o speed= "$SRC" "$MNT"
expect_refused "chunk without target" "target" -o chunk=1M "$SRC" "$MNT"
expect_refused "switch without target" "target" -o switch=manual "$SRC" "$MNT"
expect_refused "delete_source without target" "target" -o delete_source "$SRC" "$MNT"
expect_refused "noclone without target" "need -o target=DIR" -o noclone "$SRC" "$MNT"
expect_refused "overwrite without target" "target" -o overwrite "$SRC" "$MNT"
expect_refused "empty target" "target" -o target= "$SRC" "$MNT"

# A valid command line still works after all that, and a later mount of the
# source is a plain passthrough: no refused attempt left a journal behind.
[[ ! -e "$SRC/.mirrorfs-journal" && ! -e "$DST/.mirrorfs-journal" ]] ||
	fail "a refused migration left a journal"
mount_mfs "$SRC" "$MNT" -o "target=$DST,switch=manual"
wait_state "$MNT" mirrored 60
cmp -s "$SRC/disk.raw" "$DST/disk.raw" || fail "the valid migration after the refused ones"
# An unmount stops the job and keeps it; the next mount resumes it, and a
# cancel undoes it, down to the source's record.
umount_mfs "$MNT"
assert_eq migrating "$(journal_state "$SRC")" "the source's record of the stopped job"
mount_mfs "$SRC" "$MNT"
wait_state "$MNT" mirrored 60
"$MIRRORFSCTL" "$MNT" cancel >/dev/null || fail "mirrorfsctl cancel after the resume"
wait_state "$MNT" cancelled 60
umount_mfs "$MNT"
assert_eq other-file "$(dir_names "$DST")" "target after the cancelled valid migration"
[[ ! -e "$SRC/.mirrorfs-journal" ]] || fail "the cancelled job's record is still in the source"

! mounts_under "$TESTDIR" || fail "a mirrorfs mount was left under $TESTDIR"
exit 0
