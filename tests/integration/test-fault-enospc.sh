#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# The target runs out of space in the middle of a migration: a real,
# size-limited tmpfs as the target, that passes the start's check for room
# and fills up afterwards.
#
#   filled   another tenant fills the target's file system while the
#            copier works;
#   grown    the guest makes the source grow past the target's room while
#            every file is mirrored (switch=manual): the mirrored writes,
#            not the copier, meet ENOSPC.
#
# Each time: the migration ends "failed" with an error naming ENOSPC (in
# mirrorfs-status --json and the daemon's log); nothing it made is left in
# the target; the guest (fio with crc32c verification, through the mount,
# O_DIRECT and buffered) saw no error at all, and its data verifies in the
# source; the other files of the source are untouched; the mount goes on
# serving the source.

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
. "$(dirname "${BASH_SOURCE[0]}")/lib-migration.sh"
. "$(dirname "${BASH_SOURCE[0]}")/lib-control.sh"
. "$(dirname "${BASH_SOURCE[0]}")/lib-fault.sh"
require_cmd fio mount umount md5sum
cd "$TESTDIR"

ENOSPC_MSG="No space left on device"

# tmpfs_target DIR SIZE: a tmpfs of SIZE on DIR, with a file of its own.
tmpfs_target() {
	mkdir -p "$1"
	mount -t tmpfs -o "size=$2" mirrorfs-test-enospc "$1" ||
		skip "cannot mount a tmpfs"
	track_mount "$1"
	echo "tenant" >"$1/tenant.txt"
}

# --- filled ---------------------------------------------------------------

section_filled() {
	local SRC="$TESTDIR/filled/src" MNT="$TESTDIR/filled/mnt" TGT="$TESTDIR/filled/tgt"
	local before_tgt err t0
	log "--- filled: the target's file system fills up during the copy"
	mkdir -p "$SRC/conf" "$MNT"
	head -c $((16 * MiB)) /dev/urandom >"$SRC/disk.raw"
	head -c $((8 * MiB)) /dev/urandom >"$SRC/guest.raw"
	echo "vm1" >"$SRC/conf/vm1.conf"
	# 24 MiB of data, 32 MiB of room: the start's check passes.
	tmpfs_target "$TGT" 32m
	before_tgt="$(names_below "$TGT")"
	md5sum "$SRC/disk.raw" "$SRC/conf/vm1.conf" >"$TESTDIR/filled.md5"

	t0=$SECONDS
	mount_mfs "$SRC" "$MNT" -o "target=$TGT,speed=4M"
	assert_eq copying "$(status_field "$MNT" state)" "state after the start"
	guest_start filled-direct "$MNT/guest.raw" 1
	sleep 1
	# Another tenant takes every byte left.
	dd if=/dev/zero of="$TGT/filler" bs=1M status=none 2>/dev/null || true
	log "target full: $(df --output=avail -B1 "$TGT" | tail -n 1) bytes free"
	err="$(expect_failed "$MNT" "$ENOSPC_MSG" 60)"
	log "failed after $((SECONDS - t0))s: $err"
	rm "$TGT/filler"
	expect_names "$TGT" "$before_tgt" "target after the failure"
	guest_finish filled-direct
	expect_serves_source "$MNT" "$SRC"
	umount_mfs "$MNT"
	guest_verify filled-direct "$SRC/guest.raw"
	md5sum -c --quiet "$TESTDIR/filled.md5" || fail "the source changed"
	expect_names "$TGT" "$before_tgt" "target after unmount"
	umount "$TGT"
}

# --- grown ----------------------------------------------------------------

section_grown() {
	local SRC="$TESTDIR/grown/src" MNT="$TESTDIR/grown/mnt" TGT="$TESTDIR/grown/tgt"
	local before_tgt err
	log "--- grown: the guest grows the source past the target's room while mirrored"
	mkdir -p "$SRC" "$MNT"
	head -c $((8 * MiB)) /dev/urandom >"$SRC/disk.raw"
	truncate -s $((4 * MiB)) "$SRC/grow.raw"
	echo notes >"$SRC/notes.txt"
	tmpfs_target "$TGT" 24m
	before_tgt="$(names_below "$TGT")"
	md5sum "$SRC/disk.raw" "$SRC/notes.txt" >"$TESTDIR/grown.md5"

	mount_mfs "$SRC" "$MNT" -o "target=$TGT,switch=manual"
	wait_status_state "$MNT" mirrored 60
	# 32 MiB written through the mount, to a sparse file that grows and to a
	# new one: 40 MiB with the rest, 24 MiB of room.  Buffered and O_DIRECT.
	GUEST_SIZE=16M GUEST_RATE=16m guest_start grow-buffered "$MNT/grow.raw" 0
	GUEST_SIZE=16M GUEST_RATE=16m guest_start grow-new "$MNT/new.raw" 1
	err="$(expect_failed "$MNT" "$ENOSPC_MSG" 60)"
	log "failed: $err"
	guest_finish grow-buffered
	guest_finish grow-new
	expect_names "$TGT" "$before_tgt" "target after the failure"
	expect_serves_source "$MNT" "$SRC"
	umount_mfs "$MNT"
	guest_verify grow-buffered "$SRC/grow.raw"
	guest_verify grow-new "$SRC/new.raw"
	md5sum -c --quiet "$TESTDIR/grown.md5" || fail "the source changed"
	umount "$TGT"
}

section_filled
section_grown
! mounts_under "$TESTDIR" || fail "a mirrorfs mount was left under $TESTDIR"
exit 0
