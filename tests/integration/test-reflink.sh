#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Migrations between directories of one file system that shares blocks
# between files (XFS with reflink, on a loop device).  There the copier
# clones each data extent instead of copying it, as cp does by default;
# the guest must not see the difference:
#   1. a guest writes (fio, crc32c) through the clone, the mirrored phase
#      (every write now lands on blocks shared with the other side) and
#      the switch; its data verifies in the target, which shares the
#      source's blocks and counts them as cloned;
#   2. back over the stale source (--overwrite): a reused target gets the
#      clones too, holes punched where the source has them;
#   3. --no-clone copies every byte: nothing shared, nothing cloned;
#   4. to another file system (ext4 under TESTDIR) the clone is refused
#      and the copier copies: nothing cloned, the same bytes.

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
. "$(dirname "${BASH_SOURCE[0]}")/lib-migration.sh"
. "$(dirname "${BASH_SOURCE[0]}")/lib-control.sh"
. "$(dirname "${BASH_SOURCE[0]}")/lib-fault.sh"
require_cmd mkfs.xfs filefrag fio cmp
grep -qw xfs /proc/filesystems || modprobe xfs 2>/dev/null ||
	skip "this kernel has no XFS"

XFS="$TESTDIR/xfs"
mkdir "$XFS"
run truncate -s 2G "$TESTDIR/xfs.img"
run mkfs.xfs -q -m reflink=1 "$TESTDIR/xfs.img"
mount -o loop "$TESTDIR/xfs.img" "$XFS" 2>"$TESTDIR/mount.err" ||
	skip "cannot mount a loop device here: $(cat "$TESTDIR/mount.err")"
track_mount "$XFS"

SRC="$XFS/src" A="$XFS/a" B="$XFS/b" EXT="$TESTDIR/ext" MNT="$TESTDIR/mnt"
mkdir "$SRC" "$A" "$B" "$EXT" "$MNT"

# A 128 MiB image of data, a 512 MiB thin one with three 1 MiB extents,
# and a file whose last block is partial (the clone may refuse it alone).
run dd if=/dev/urandom of="$SRC/disk.img" bs=1M count=128 status=none
run truncate -s 512M "$SRC/thin.img"
for mib in 1 200 511; do
	run dd if=/dev/urandom of="$SRC/thin.img" bs=1M count=1 seek="$mib" conv=notrunc \
		status=none
done
run dd if=/dev/urandom of="$SRC/odd.bin" bs=1234 count=851 status=none
sync

# shared_blocks FILE: how many of FILE's blocks are shared with another file.
shared_blocks() {
	# Extent lines: "N: lstart.. lend: pstart.. pend: length: [expected:] flags".
	filefrag -v "$1" | awk '/shared/ { gsub(/\.\.|:/, " "); n += $6 } END { print n + 0 }'
}

# migrate TARGET [mirrorfsctl start options]: migrate the mount to TARGET
# and wait for the switch; prints nothing, fails on any error.
migrate() {
	local target="$1" served
	shift
	served="$(status_field "$MNT" served)"
	ctl "$MNT" start "$@" "$target"
	wait_status_state "$MNT" switched 120
	status_json "$MNT" "$TESTDIR/status.json"
	validate_status "$TESTDIR/status.json" --state switched --served "$target"
	[[ "$(json_field served "$TESTDIR/status.json")" != "$served" ]] ||
		fail "still serving $served after the switch to $target"
}

cloned() {
	json_field bytes_cloned "$TESTDIR/status.json"
}

# expect_same DIR1 DIR2: the static files hold the same bytes, and the thin
# image no more blocks on DIR2's side.
expect_same() {
	local f
	for f in thin.img odd.bin; do
		run cmp "$1/$f" "$2/$f" || fail "$f differs between $1 and $2"
	done
	assert_le "$(alloc_bytes "$2/thin.img")" "$(alloc_bytes "$1/thin.img")" \
		"blocks of thin.img in $2 against $1"
}

mount_mfs "$SRC" "$MNT"

# 1. A guest writing throughout; the switch waits for a command, so the
# mirrored phase lasts while the guest writes on shared blocks.
GUEST_SIZE=32M GUEST_RATE=8m
guest_start vm "$MNT/disk.img" 1
ctl "$MNT" start --chunk 64K --switch manual "$A"
wait_status_state "$MNT" mirrored 60
sleep 1
ctl "$MNT" switch
wait_status_state "$MNT" switched 60
guest_finish vm
guest_verify vm "$A/disk.img"
status_json "$MNT" "$TESTDIR/status.json"
validate_status "$TESTDIR/status.json" --state switched --served "$A"
total="$(json_field bytes_total "$TESTDIR/status.json")"
assert_le $((total - 1024 * 1024)) "$(cloned)" "bytes cloned of $total"
assert_le 1 "$(json_field mirrored_writes "$TESTDIR/status.json")" "mirrored writes"
assert_le $((64 * 1024 * 1024 / 4096)) "$(shared_blocks "$A/disk.img")" \
	"blocks of the target image shared with the source"
assert_le 1 "$(shared_blocks "$A/odd.bin")" "shared blocks of odd.bin"
expect_same "$SRC" "$A"
cli "$MIRRORFS_STATUS" "$MNT"
assert_contains "$CLI_OUT" "cloned"

# 2. Back over the source, whose disk.img is stale: every byte replaced.
migrate "$SRC" --overwrite
assert_le $((total - 1024 * 1024)) "$(cloned)" "bytes cloned back over the source"
run cmp "$A/disk.img" "$SRC/disk.img" || fail "disk.img differs after the clone back"
guest_verify vm "$SRC/disk.img"
expect_same "$A" "$SRC"

# 3. --no-clone: a copy of every byte.
migrate "$B" --no-clone
assert_eq 0 "$(cloned)" "bytes cloned with --no-clone"
assert_le "$total" "$(json_field bytes_copied "$TESTDIR/status.json")" "bytes copied"
for f in disk.img thin.img odd.bin; do
	assert_eq 0 "$(shared_blocks "$B/$f")" "shared blocks of $f after --no-clone"
done
guest_verify vm "$B/disk.img"
expect_same "$SRC" "$B"

# 4. Another file system: no clone possible, a plain copy.
migrate "$EXT"
assert_eq 0 "$(cloned)" "bytes cloned across file systems"
guest_verify vm "$EXT/disk.img"
expect_same "$B" "$EXT"

umount_mfs "$MNT"
exit 0
