#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# The target disappears in the middle of the copy:
#
#   server-killed  the target is a FUSE file system (faultfs) whose server
#                  is killed with SIGKILL: every target operation fails
#                  with ENOTCONN (ECONNABORTED for one the server had
#                  read and not answered when it died).  Then faultfs comes back on the same
#                  directory, and the same migration, started again, reuses
#                  what was copied (the target's journal) and switches: the
#                  target equals the source byte for byte.
#   lazy-umount    the target's file system (a tmpfs) is detached with
#                  umount -l: the daemon's descriptors still work, but the
#                  path it would switch to (and a restart would follow) is
#                  now another, empty directory.
#   rm-rf          the target directory is removed with rm -rf.
#
# Each time the migration must end "failed", never "switched" (a switch
# onto a target that is no longer at its path would send the mount, and
# every later restart, to files nobody can reach); the daemon keeps
# serving the source; the guest (fio with verification through the mount)
# sees no error and its data verifies in the source; the source's journal
# does not say switched; and the daemon holds no descriptor of the vanished
# target once the migration has failed.
#
# FAULT_SECTIONS="lazy-umount rm-rf" runs only those sections.

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
. "$(dirname "${BASH_SOURCE[0]}")/lib-migration.sh"
. "$(dirname "${BASH_SOURCE[0]}")/lib-control.sh"
. "$(dirname "${BASH_SOURCE[0]}")/lib-fault.sh"
require_cmd fio md5sum mount umount
require_faultfs
cd "$TESTDIR"

setup() {
	SECTION_T0=$SECONDS
	log "--- $1"
	SRC="$TESTDIR/$1/src"
	MNT="$TESTDIR/$1/mnt"
	TGT="$TESTDIR/$1/tgt"
	mkdir -p "$SRC/conf" "$MNT" "$TGT"
	head -c $((24 * MiB)) /dev/urandom >"$SRC/disk.raw"
	head -c $((4 * MiB)) /dev/urandom >"$SRC/guest.raw"
	printf 'name=%s\n' "$1" >"$SRC/conf/vm.conf"
	md5sum "$SRC/disk.raw" "$SRC/conf/vm.conf" >"$TESTDIR/$1.md5"
}

# no_target_fds MOUNTPOINT WHAT: once the migration is over, the daemon
# holds no descriptor of a file below TGT, nor of a deleted file.  (The
# target's root itself is checked by test-fault-unmount.sh.)
no_target_fds() {
	local pid held
	pid="${MFS_PID[$(realpath "$1")]}"
	held="$(find "/proc/$pid/fd" -mindepth 1 -printf '%l\n' 2>/dev/null |
		grep -F -e "$TGT/" -e '(deleted)' || true)"
	[[ -z "$held" ]] || fail "$2: the daemon still holds:"$'\n'"$held"
}

finish() {
	expect_serves_source "$MNT" "$SRC"
	guest_finish "$1"
	umount_mfs "$MNT"
	guest_verify "$1" "$SRC/guest.raw"
	md5sum -c --quiet "$TESTDIR/$1.md5" || fail "the source changed"
	log "--- done in $((SECONDS - SECTION_T0))s"
}

section_server_killed() {
	local FBK err
	setup server-killed
	FBK="$TESTDIR/server-killed/fbk"
	mkdir -p "$FBK"
	mount_faultfs "$FBK" "$TGT"
	mount_mfs "$SRC" "$MNT" -o "target=$TGT,speed=8M"
	guest_start server-killed "$MNT/guest.raw" 1
	sleep 1
	kill -KILL "${FFS_PID[$TGT]}"
	# The first error is ECONNABORTED when a target write was in flight.
	err="$(expect_failed "$MNT" "Transport endpoint is not connected|Software caused connection abort" 60)"
	log "failed: $err"
	[[ "$(journal_state "$SRC")" != switched ]] || fail "the source journal says switched"
	expect_serves_source "$MNT" "$SRC"
	no_target_fds "$MNT" "after the target's server died"
	guest_finish server-killed

	# The target comes back: the same migration again, reusing what is there.
	umount -l "$TGT"
	reap "${FFS_PID[$TGT]}" || true
	mount_faultfs "$FBK" "$TGT"
	log "left in the target by the failed run: $(names_below "$FBK" | tr '\n' ' ')"
	ctl "$MNT" start "$TGT"
	wait_status_state "$MNT" switched 60
	assert_eq "$TGT" "$(status_field "$MNT" served)" "served after the second run"
	assert_file_eq "$SRC/disk.raw" "$FBK/disk.raw"
	assert_file_eq "$SRC/guest.raw" "$FBK/guest.raw"
	assert_file_eq "$SRC/conf/vm.conf" "$FBK/conf/vm.conf"
	assert_trees_equal "$FBK" "$MNT" "the mount after the second run"
	umount_mfs "$MNT"
	guest_verify server-killed "$FBK/guest.raw"
	umount_faultfs "$TGT"
	log "--- done in $((SECONDS - SECTION_T0))s"
}

section_lazy_umount() {
	local err
	setup lazy-umount
	mount -t tmpfs -o size=64m mirrorfs-test-vanish "$TGT" || skip "cannot mount a tmpfs"
	track_mount "$TGT"
	mount_mfs "$SRC" "$MNT" -o "target=$TGT,speed=8M"
	guest_start lazy-umount "$MNT/guest.raw" 1
	sleep 1
	umount -l "$TGT"
	err="$(expect_failed "$MNT" "target" 60)"
	log "failed: $err"
	assert_eq "" "$(names_below "$TGT")" "the directory under the detached target"
	finish lazy-umount
}

section_rm_rf() {
	local err
	setup rm-rf
	mount_mfs "$SRC" "$MNT" -o "target=$TGT,speed=8M"
	guest_start rm-rf "$MNT/guest.raw" 1
	sleep 1
	rm -rf "$TGT"
	err="$(expect_failed "$MNT" "target" 60)"
	log "failed: $err"
	[[ ! -e "$TGT" ]] || fail "the removed target is back: $(names_below "$TGT" | tr '\n' ' ')"
	no_target_fds "$MNT" "after the target was removed"
	finish rm-rf
}

for s in ${FAULT_SECTIONS:-server-killed lazy-umount rm-rf}; do
	"section_${s//-/_}"
done
! mounts_under "$TESTDIR" || fail "a mirrorfs mount was left under $TESTDIR"
exit 0
