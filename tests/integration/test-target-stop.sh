#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# on_target_error=stop (issue 22): a target that runs out of space pauses
# the migration instead of ending it; the operator grows the file system
# and resumes; nothing is copied again from the start.  The target is a
# real XFS on a loop device, grown for real (losetup -c, xfs_growfs), and
# a guest (ackwriter.py, fsync after every write) writes through the mount
# all along: it must never see an error, and every write it was told was
# done must be in the target after the switch.
#
#   copier    the copier meets ENOSPC (another tenant fills the file system
#             during the copy): error-paused, the error names the file and
#             ENOSPC; the guest goes on; a resume before the fix pauses
#             again; grown, resumed: switched, and the copy after the
#             resume is what was left, not all of it again.
#   mirrored  everything mirrored (switch=manual), the file system full,
#             the guest writes 16 MiB into a file: its mirrored writes meet
#             ENOSPC; the guest's dd succeeds; error-paused; grown,
#             resumed: mirrored again, switched by hand, the target holds
#             the guest's 16 MiB and every acknowledged write.

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
. "$(dirname "${BASH_SOURCE[0]}")/lib-migration.sh"
. "$(dirname "${BASH_SOURCE[0]}")/lib-control.sh"
. "$(dirname "${BASH_SOURCE[0]}")/lib-fault.sh"
. "$(dirname "${BASH_SOURCE[0]}")/lib-invariant.sh"
require_cmd mkfs.xfs xfs_growfs losetup cmp
grep -qw xfs /proc/filesystems || modprobe xfs 2>/dev/null || skip "this kernel has no XFS"
cd "$TESTDIR"

ENOSPC_MSG="No space left on device"

# xfs_target NAME: a 300 MiB XFS on a loop device at $TGT (the smallest
# mkfs.xfs makes); $TGT_IMG its image.
xfs_target() {
	TGT="$TESTDIR/$1/tgt" TGT_IMG="$TESTDIR/$1/tgt.img"
	mkdir -p "$TGT"
	run truncate -s 300M "$TGT_IMG"
	run mkfs.xfs -q "$TGT_IMG"
	mount -o loop "$TGT_IMG" "$TGT" 2>"$TESTDIR/mount.err" ||
		skip "cannot mount a loop device here: $(cat "$TESTDIR/mount.err")"
	track_mount "$TGT"
}

# fill_target: another tenant takes every byte left.
fill_target() {
	dd if=/dev/zero of="$TGT/tenant" bs=1M status=none 2>/dev/null || true
	log "target full: $(df --output=avail -B1 "$TGT" | tail -n 1) bytes free"
}

# grow_target: the operator's fix, as on a real host: the device grows,
# then the file system.
grow_target() {
	local dev
	dev="$(findmnt -no SOURCE "$TGT")"
	run truncate -s 1G "$TGT_IMG"
	run losetup -c "$dev"
	run xfs_growfs "$TGT" >/dev/null
	log "target grown: $(df --output=avail -B1 "$TGT" | tail -n 1) bytes free"
}

# expect_held MNT: error-paused on ENOSPC, naming a file; the error printed.
expect_held() {
	local err
	wait_status_state "$1" error-paused 60
	err="$(status_field "$1" error)"
	assert_contains "$err" "$ENOSPC_MSG" "the held error"
	assert_contains "$err" "target: " "the held error"
	grep -q "paused on a target error" "$(daemon_log "$1")" ||
		fail "the daemon did not log the pause:"$'\n'"$(cat "$(daemon_log "$1")")"
	printf '%s\n' "$err"
}

setup_case() {
	SRC="$TESTDIR/$1/src" MNT="$TESTDIR/$1/mnt" LOG="$TESTDIR/$1/img.log"
	mkdir -p "$SRC" "$MNT"
	: >"$LOG"
	IMG_BLOCKS=4096 make_tree "$SRC"
	head -c $((160 * MiB)) /dev/urandom >"$SRC/big.raw"
	EXPECTED="$(static_listing "$SRC")"
	xfs_target "$1"
}

section_copier() {
	local err copied_at_hold copied total left follower
	log "--- copier: the file system fills during the copy"
	setup_case copier
	mount_mfs "$SRC" "$MNT" -o "target=$TGT,speed=32M,on_target_error=stop"
	"$MIRRORFS_STATUS" --follow "$MNT" >"$TESTDIR/follow.out" 2>&1 </dev/null &
	follower=$!
	track_bg "$follower"
	writer_start "$MNT/img.raw" "$LOG"
	sleep 1
	fill_target
	err="$(expect_held "$MNT")"
	log "held: $err"
	copied_at_hold="$(status_field "$MNT" bytes_copied)"
	total="$(status_field "$MNT" bytes_total)"
	left=$((total - $(status_json "$MNT" | "$PYTHON" -c 'import json, sys
print(sum(min(f["cp_offset"], f["size"]) for f in json.load(sys.stdin)["files"]))')))
	# The guest goes on; a resume before the fix meets the full disk again.
	sleep 1
	ctl "$MNT" resume
	expect_held "$MNT" >/dev/null
	grow_target
	ctl "$MNT" speed 0
	ctl "$MNT" resume
	wait_status_state "$MNT" switched 120
	writer_stop
	# The events said it as it went: paused on ENOSPC, twice, then on.
	wait_pid_exit "$follower" 10 || fail "--follow still runs after the switch"
	"$PYTHON" - "$TESTDIR/follow.out" <<-'EOF' || fail "--follow: $(cat "$TESTDIR/follow.out")"
	import json, sys
	ev = [json.loads(l) for l in open(sys.argv[1])]
	held = [e for e in ev if e.get("state") == "error-paused"]
	assert len(held) == 2 and all("No space left on device" in e["error"] for e in held), held
	assert [e["state"] for e in ev if e["event"] == "state"][-1] == "switched"
	EOF
	copied="$(status_field "$MNT" bytes_copied)"
	log "copied $((copied_at_hold / MiB)) MiB before the pause, $(((copied - copied_at_hold) / MiB)) MiB after it; $((left / MiB)) MiB were left"
	((copied - copied_at_hold <= left + 16 * MiB)) ||
		fail "the resume copied $((copied - copied_at_hold)) bytes, more than the $left left"
	# The tenant's file is not the migration's: it stays, then goes.
	[[ -f "$TGT/tenant" ]] || fail "the tenant's file is gone"
	rm "$TGT/tenant"
	verify_data "$TGT" "$LOG" "the target after the switch"
	verify_data "$MNT" "$LOG" "the mount after the switch"
	umount_mfs "$MNT"
}

section_mirrored() {
	local err
	log "--- mirrored: the guest's mirrored writes meet a full file system"
	setup_case mirrored
	mount_mfs "$SRC" "$MNT" -o "target=$TGT,switch=manual,on_target_error=stop"
	wait_status_state "$MNT" mirrored 60
	# Made while there is room: a create the target refuses ends the job.
	: >"$MNT/grow.raw"
	head -c $((16 * MiB)) /dev/urandom >"$TESTDIR/grow.data"
	writer_start "$MNT/img.raw" "$LOG"
	fill_target
	run dd if="$TESTDIR/grow.data" of="$MNT/grow.raw" bs=1M conv=fsync status=none ||
		fail "the guest's write failed"
	err="$(expect_held "$MNT")"
	log "held: $err"
	cmp -s "$TESTDIR/grow.data" "$MNT/grow.raw" || fail "the guest's write is not in the mount"
	grow_target
	ctl "$MNT" resume
	wait_status_state "$MNT" mirrored 120
	writer_stop
	ctl "$MNT" switch
	wait_status_state "$MNT" switched 60
	cmp -s "$TESTDIR/grow.data" "$TGT/grow.raw" || fail "the guest's 16 MiB are not in the target"
	rm "$TGT/tenant"
	EXPECTED="$(static_listing "$SRC")"
	verify_data "$TGT" "$LOG" "the target after the switch"
	verify_data "$MNT" "$LOG" "the mount after the switch"
	umount_mfs "$MNT"
}

section_copier
section_mirrored
! mounts_under "$TESTDIR" || fail "a mirrorfs mount was left under $TESTDIR"
exit 0
