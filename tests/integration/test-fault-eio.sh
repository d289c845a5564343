#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# The target fails with EIO: faultfs (tests/faultfs), a passthrough FUSE
# file system that fails on purpose, as the migration target.  A real
# errno from a real file system, in each place the daemon touches the
# target:
#
#   copier-write   writes fail once 3 MiB are written (the copier's);
#   mirrored-write every file mirrored (switch=manual), then the first
#                  target write after arming fails: a guest write that was
#                  mirrored;
#   guest-fsync    mirrored, then every target fsync fails: the guest's
#                  fsyncs, mirrored;
#   switch-fsync   every fsync of the image files fails from the start: the
#                  switch's flush of the target;
#   open-start     the third open fails: the start's walk (mirrorfsctl
#                  start on a live mount) is refused;
#   open-create    opens fail once armed: the guest creates files during
#                  the copy, their target counterparts cannot be made.
#
# Each time: state failed with "Input/output error" in the status and the
# log; nothing of the migration left in the target (through faultfs and in
# the directory below it); the guest (fio with crc32c verification through
# the mount, with fsyncs) saw no error and its data verifies in the source;
# the source's other files are untouched; the mount still serves the source;
# and faultfs really injected the fault (its log says where).

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
. "$(dirname "${BASH_SOURCE[0]}")/lib-migration.sh"
. "$(dirname "${BASH_SOURCE[0]}")/lib-control.sh"
. "$(dirname "${BASH_SOURCE[0]}")/lib-fault.sh"
require_cmd fio md5sum
require_faultfs
cd "$TESTDIR"
# Each guest writes 4 MiB at 2 MiB/s: long enough to write across the fault.
GUEST_SIZE=4M

EIO_MSG="Input/output error"

# setup NAME: $TESTDIR/NAME/{src,mnt,fbk,ftgt}: a source with images, an
# empty mount point, faultfs's backing directory (with a file of its own)
# and faultfs's mount point.  Sets SRC MNT FBK FTGT ARM FLOG.
setup() {
	SECTION_T0=$SECONDS
	log "--- $1"
	SRC="$TESTDIR/$1/src"
	MNT="$TESTDIR/$1/mnt"
	FBK="$TESTDIR/$1/fbk"
	FTGT="$TESTDIR/$1/ftgt"
	ARM="$TESTDIR/$1/arm"
	FLOG="$TESTDIR/$1/faults.log"
	mkdir -p "$SRC/conf" "$MNT" "$FBK" "$FTGT"
	head -c $((12 * MiB)) /dev/urandom >"$SRC/disk.raw"
	head -c $((8 * MiB)) /dev/urandom >"$SRC/guest.raw"
	printf 'name=%s\n' "$1" >"$SRC/conf/vm.conf"
	echo own >"$FBK/own.txt"
	md5sum "$SRC/disk.raw" "$SRC/conf/vm.conf" >"$TESTDIR/$1.md5"
	BEFORE_TGT="$(names_below "$FBK")"
}

# finish NAME: the common checks after the failure.
finish() {
	local n
	expect_names "$FTGT" "$BEFORE_TGT" "target (through faultfs)"
	expect_names "$FBK" "$BEFORE_TGT" "target (faultfs's backing directory)"
	expect_serves_source "$MNT" "$SRC"
	n="$(faultfs_faults "$FLOG")"
	((n > 0)) || fail "faultfs injected no fault: the test tested nothing"
	log "faultfs injected $n fault(s), the first: $(head -n 1 "$FLOG")"
	umount_mfs "$MNT"
	md5sum -c --quiet "$TESTDIR/$1.md5" || fail "the source changed"
	umount_faultfs "$FTGT"
	log "--- done in $((SECONDS - SECTION_T0))s"
}

section_copier_write() {
	setup copier-write
	mount_faultfs "$FBK" "$FTGT" "fail_write_after=3M,fault_log=$FLOG"
	mount_mfs "$SRC" "$MNT" -o "target=$FTGT,speed=8M"
	guest_start cw "$MNT/guest.raw" 1 --fsync=8
	log "$(expect_failed "$MNT" "$EIO_MSG" 60)"
	guest_finish cw
	guest_verify cw "$SRC/guest.raw"
	finish copier-write
}

section_mirrored_write() {
	setup mirrored-write
	mount_faultfs "$FBK" "$FTGT" "fail_nth_write=1,only=guest.raw,arm_file=$ARM,fault_log=$FLOG"
	mount_mfs "$SRC" "$MNT" -o "target=$FTGT,switch=manual"
	wait_status_state "$MNT" mirrored 60
	touch "$ARM"
	guest_start mw "$MNT/guest.raw" 0
	log "$(expect_failed "$MNT" "$EIO_MSG" 60)"
	guest_finish mw
	guest_verify mw "$SRC/guest.raw"
	finish mirrored-write
}

section_guest_fsync() {
	setup guest-fsync
	mount_faultfs "$FBK" "$FTGT" "fail_fsync,arm_file=$ARM,fault_log=$FLOG"
	mount_mfs "$SRC" "$MNT" -o "target=$FTGT,switch=manual"
	wait_status_state "$MNT" mirrored 60
	touch "$ARM"
	guest_start gf "$MNT/guest.raw" 1 --fsync=4
	log "$(expect_failed "$MNT" "$EIO_MSG" 60)"
	guest_finish gf
	guest_verify gf "$SRC/guest.raw"
	finish guest-fsync
}

section_switch_fsync() {
	setup switch-fsync
	# The images only: the target's journal must be written for the start.
	mount_faultfs "$FBK" "$FTGT" "fail_fsync,only=*.raw,fault_log=$FLOG"
	mount_mfs "$SRC" "$MNT" -o "target=$FTGT"
	guest_start sf "$MNT/guest.raw" 1
	log "$(expect_failed "$MNT" "$EIO_MSG" 60)"
	! migration_states "$MNT" | grep -qx switched || fail "switched although the flush failed"
	guest_finish sf
	guest_verify sf "$SRC/guest.raw"
	finish switch-fsync
}

section_open_start() {
	setup open-start
	mount_faultfs "$FBK" "$FTGT" "fail_open_after=2,fault_log=$FLOG"
	mount_mfs "$SRC" "$MNT"
	guest_start os "$MNT/guest.raw" 1
	sleep 0.5
	# The journal and one file open; the next fails: refused, one line.
	cli "$MIRRORFSCTL" "$MNT" start "$FTGT"
	msg="$(cli_verdict "start onto a target whose opens fail" 1 "$EIO_MSG" mirrorfsctl)" || fail "$msg"
	log "refused: $CLI_ERR"
	assert_eq idle "$(status_field "$MNT" state)" "state after the refused start"
	guest_finish os
	guest_verify os "$SRC/guest.raw"
	finish open-start
}

section_open_create() {
	local i
	setup open-create
	mount_faultfs "$FBK" "$FTGT" "fail_open_after=0,arm_file=$ARM,fault_log=$FLOG"
	mount_mfs "$SRC" "$MNT" -o "target=$FTGT,speed=4M"
	guest_start oc "$MNT/guest.raw" 1
	touch "$ARM"
	for i in 1 2 3; do
		printf 'new %s\n' "$i" >"$MNT/new$i.txt" || fail "the guest could not create new$i.txt"
	done
	log "$(expect_failed "$MNT" "$EIO_MSG" 60)"
	for i in 1 2 3; do
		assert_eq "new $i" "$(cat "$SRC/new$i.txt")" "new$i.txt in the source"
		assert_eq "new $i" "$(cat "$MNT/new$i.txt")" "new$i.txt through the mount"
		rm "$SRC/new$i.txt"
	done
	guest_finish oc
	guest_verify oc "$SRC/guest.raw"
	finish open-create
}

section_copier_write
section_mirrored_write
section_guest_fsync
section_switch_fsync
section_open_start
section_open_create
! mounts_under "$TESTDIR" || fail "a mirrorfs mount was left under $TESTDIR"
exit 0
