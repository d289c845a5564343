#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Bad command lines: each must be refused before anything is mounted, with
# exactly one line on stderr (the daemon detaches once mounted, so that line
# is all a user or an init system ever sees), nothing on stdout and a
# non-zero exit status.  --help and --version succeed.

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# expect_refused WHAT EXPECTED_SUBSTRING ARGS...: run mirrorfs ARGS as a
# user would (no -f: if it wrongly mounts, it detaches and the EXIT trap
# unmounts) and check how it refused.
expect_refused() {
	local what="$1" expected="$2" rc=0 before after
	local -a lines
	shift 2

	before="$(mirrorfs_mounts "$TESTDIR" | sort)"
	run "$MIRRORFS" "$@" >"$TESTDIR/stdout" 2>"$TESTDIR/stderr" || rc=$?
	after="$(mirrorfs_mounts "$TESTDIR" | sort)"

	assert_eq "$before" "$after" "$what: mount table after 'mirrorfs $*'"
	((rc != 124)) || fail "$what: 'mirrorfs $*' hung"
	((rc != 0)) || fail "$what: 'mirrorfs $*' exited 0"
	[[ ! -s "$TESTDIR/stdout" ]] ||
		fail "$what: output on stdout: $(cat "$TESTDIR/stdout")"

	mapfile -t lines <"$TESTDIR/stderr"
	# One non-empty line, newline-terminated.
	if ((${#lines[@]} != 1)) || [[ -z "${lines[0]}" || -n "$(tail -c 1 "$TESTDIR/stderr")" ]]; then
		fail "$what: expected one line on stderr, got ${#lines[@]}:"$'\n'"$(cat "$TESTDIR/stderr")"
	fi
	assert_contains "${lines[0]}" "$expected" "$what: error message"
}

SRC="$TESTDIR/src"
MNT="$TESTDIR/mnt"
mkdir "$SRC" "$MNT" "$SRC/sub"
echo data >"$TESTDIR/file"

expect_refused "no arguments" "missing SOURCE"
expect_refused "MOUNTPOINT missing" "missing MOUNTPOINT" "$SRC"
expect_refused "SOURCE does not exist" "No such file or directory" "$TESTDIR/nosuch" "$MNT"
expect_refused "SOURCE is a regular file" "Not a directory" "$TESTDIR/file" "$MNT"
expect_refused "MOUNTPOINT does not exist" "No such file or directory" "$SRC" "$TESTDIR/nosuch"
expect_refused "MOUNTPOINT is a regular file" "Not a directory" "$SRC" "$TESTDIR/file"
expect_refused "MOUNTPOINT inside SOURCE" "inside" "$SRC" "$SRC/sub"
expect_refused "extra argument" "extra" "$SRC" "$MNT" extra
expect_refused "unknown -o option" "nosuchoption" -o nosuchoption "$SRC" "$MNT"
expect_refused "non-numeric timeout" "timeout=abc" -o timeout=abc "$SRC" "$MNT"
expect_refused "trailing garbage in timeout" "timeout=1x" -o timeout=1x "$SRC" "$MNT"
expect_refused "negative timeout" "timeout" -o timeout=-1 "$SRC" "$MNT"
expect_refused "timeout beyond a day" "timeout" -o timeout=86401 "$SRC" "$MNT"
expect_refused "no worker thread" "max_threads=0" -o max_threads=0 "$SRC" "$MNT"
expect_refused "too many worker threads" "max_threads=100000" -o max_threads=100000 "$SRC" "$MNT"

# A second mirrorfs on a mount point that already has one would stack a
# mount over a live one, hiding it; mounting over a mirrorfs from itself
# would loop.  Both are refused, and the first mount keeps working.
mount_mfs "$SRC" "$MNT"
mkdir "$TESTDIR/src2"
expect_refused "already mounted" "already a mirrorfs mount" "$TESTDIR/src2" "$MNT"
expect_refused "mount over a mirrorfs mount" "already a mirrorfs mount" "$MNT" "$MNT"
echo still-works >"$MNT/probe"
assert_eq still-works "$(cat "$SRC/probe")" "first mount after refused second mount"
umount_mfs "$MNT"

# --help and --version: exit 0, with the text on stdout.
for opt in --help -h; do
	out="$(run "$MIRRORFS" "$opt" 2>&1)" || fail "mirrorfs $opt exited with status $?"
	assert_contains "$out" "usage:" "mirrorfs $opt"
	assert_contains "$out" "SOURCE MOUNTPOINT" "mirrorfs $opt"
	assert_contains "$out" "timeout=" "mirrorfs $opt"
done
out="$(run "$MIRRORFS" --version 2>/dev/null)" || fail "mirrorfs --version exited with status $?"
[[ "$out" =~ (^|$'\n')mirrorfs\ [0-9]+\.[0-9]+ ]] ||
	fail "mirrorfs --version: no 'mirrorfs X.Y' line in: $out"

# Nothing from all of the above may be left mounted.
! mounts_under "$TESTDIR" || fail "a mirrorfs mount was left under $TESTDIR"
exit 0
