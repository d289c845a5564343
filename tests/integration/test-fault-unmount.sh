#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# The mount goes away in the middle of a migration: a clean stop, nothing
# lost, nothing thrown away.  A stopped migration is kept (the source
# records it, the target keeps the partial copy and its checkpoints) and
# the next mount of the source, without options, resumes it where it was
# and carries it to the switch.
#
#   fusermount     fusermount3 -u during the copy (the guest has closed its
#                  files): the daemon exits 0 by itself, the migration is
#                  stopped, not cancelled; the source holds everything the
#                  guest wrote; a remount resumes (bytes_resumed > 0, the
#                  recorded speed) and switches; the target then holds the
#                  source's data beside the operator's own names.
#   lazy           umount -l during the copy while the guest (ackwriter.py,
#                  fsync after every write) keeps its image open and
#                  writing: the guest finishes without an error; when it
#                  closes the image the daemon exits 0, stopped; every
#                  acknowledged write is in the source, and after the
#                  resumed switch in the target.
#   lazy-stunned   umount -l while the switch holds the stun
#                  (MIRRORFS_TEST_STUN_DELAY_MS): the daemon ends the switch
#                  it began and exits 0: switched, the target complete,
#                  the source's journal says so.
#   target-free    after a cancel, with the daemon still serving, the
#                  target's file system (a tmpfs) can be unmounted: the
#                  daemon holds nothing of a migration that is over.
#   sigterm        SIGTERM (systemctl stop) during the copy while a guest's
#                  write is in the daemon (held there by
#                  MIRRORFS_TEST_WRITE_HOLD_MS): the daemon does not stop
#                  with a file open (it says so), the write completes and
#                  is in the source; once the guest has closed it, a second
#                  SIGTERM unmounts, the daemon exits 0, stopped; the
#                  resumed migration switches with the write in the target.
#
# UNMOUNT_SECTIONS="lazy target-free" runs only those sections.

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
. "$(dirname "${BASH_SOURCE[0]}")/lib-migration.sh"
. "$(dirname "${BASH_SOURCE[0]}")/lib-control.sh"
. "$(dirname "${BASH_SOURCE[0]}")/lib-fault.sh"
require_cmd fio md5sum mount umount
cd "$TESTDIR"

setup() {
	SECTION_T0=$SECONDS
	log "--- $1"
	SRC="$TESTDIR/$1/src"
	MNT="$TESTDIR/$1/mnt"
	TGT="$TESTDIR/$1/tgt"
	mkdir -p "$SRC/conf" "$MNT" "$TGT"
	head -c $((32 * MiB)) /dev/urandom >"$SRC/disk.raw"
	head -c $((4 * MiB)) /dev/urandom >"$SRC/guest.raw"
	printf 'name=%s\n' "$1" >"$SRC/conf/vm.conf"
	md5sum "$SRC/disk.raw" "$SRC/conf/vm.conf" >"$TESTDIR/$1.md5"
}

# own_target: the target holds something of its own, that must stay.
own_target() {
	echo own >"$TGT/own.txt"
	mkdir -p "$TGT/own-dir"
	BEFORE_TGT="$(names_below "$TGT")"
}

# daemon_exit MOUNTPOINT: wait for the daemon to exit by itself; it must
# exit 0 without a sanitizer report.  Its log is then in DAEMON_OUT.
daemon_exit() {
	local mnt pid logf rc=0
	mnt="$(realpath "$1")"
	pid="${MFS_PID[$mnt]}"
	logf="${MFS_LOG[$mnt]}"
	wait_pid_exit "$pid" 30 || fail "the daemon still runs 30 s after the unmount"
	wait "$pid" || rc=$?
	unset 'MFS_PID[$mnt]' 'MFS_LOG[$mnt]'
	check_sanitizer_log "$logf" || fail "sanitizer report"
	((rc == 0)) || fail "the daemon exited $rc:"$'\n'"$(cat "$logf")"
	DAEMON_OUT="$(cat "$logf")"
}

# expect_stopped: the daemon that exited kept its migration for the next
# start: the source records the job, the target the copy beside its own.
expect_stopped() {
	assert_contains "$DAEMON_OUT" "stopped with the daemon; its next start resumes it" "daemon log"
	! grep -q ': cancelled' <<<"$DAEMON_OUT" || fail "the stop cancelled the migration:"$'\n'"$DAEMON_OUT"
	assert_eq migrating "$(journal_state "$SRC")" "the source's record of the job"
	assert_eq copying "$(journal_state "$TGT")" "the target's journal"
	[[ -e "$TGT/own.txt" && -d "$TGT/own-dir" ]] || fail "the target lost its own names"
	[[ -f "$TGT/disk.raw" && -f "$TGT/conf/vm.conf" ]] || fail "the stop removed the copy"
}

# resume_to_switch SPEED: a mount without options resumes the recorded job
# with its options (its speed SPEED in bytes/s), from what it copied, to the
# switch; the target then holds the source's data and its own names.
resume_to_switch() {
	local resumed
	mount_mfs "$SRC" "$MNT"
	assert_contains "$(cat "$(daemon_log "$MNT")")" "resuming the migration recorded" "daemon log"
	assert_eq "$1" "$(status_field "$MNT" speed_bps)" "the resumed job's speed"
	resumed="$(status_field "$MNT" bytes_resumed)"
	((resumed > 0)) || fail "the resumed job copies from 0 (bytes_resumed $resumed)"
	log "resumed with $resumed bytes already in the target"
	ctl "$MNT" speed 0
	wait_status_state "$MNT" switched 120
	umount_mfs "$MNT"
	is_switched "$SRC" || fail "the source's journal does not say switched"
	for f in disk.raw guest.raw conf/vm.conf; do
		assert_file_eq "$SRC/$f" "$TGT/$f"
	done
	[[ "$(cat "$TGT/own.txt")" == own && -d "$TGT/own-dir" ]] ||
		fail "the resumed migration removed the target's own names"
}

section_fusermount() {
	setup fusermount
	own_target
	mount_mfs "$SRC" "$MNT" -o "target=$TGT,speed=8M"
	GUEST_SIZE=4M GUEST_RATE=8m guest_start fm "$MNT/guest.raw" 1
	guest_finish fm
	assert_eq copying "$(status_field "$MNT" state)" "state before the unmount"
	run fusermount3 -u "$MNT" || fail "fusermount3 -u failed"
	daemon_exit "$MNT"
	expect_stopped
	guest_verify fm "$SRC/guest.raw"
	md5sum -c --quiet "$TESTDIR/fusermount.md5" || fail "the source changed"
	resume_to_switch $((8 * MiB))
	guest_verify fm "$TGT/guest.raw"
	log "--- done in $((SECONDS - SECTION_T0))s"
}

section_lazy() {
	local wpid rc=0 ackw="$CONTROL_LIB_DIR/ackwriter.py"
	setup lazy
	own_target
	# A guest that keeps its image open all along, as a VM does (fio would
	# open it again by name for its verify pass, and find the directory
	# under the detached mount): ackwriter.py, every write fsynced and
	# logged outside.
	run "$PYTHON" "$ackw" init "$SRC/guest.raw" 1024
	mount_mfs "$SRC" "$MNT" -o "target=$TGT,speed=4M"
	"$PYTHON" "$ackw" write "$MNT/guest.raw" "$TESTDIR/lazy.log" --max-seconds 3 \
		>"$TESTDIR/lazy.out" 2>&1 &
	wpid=$!
	track_bg "$wpid"
	sleep 1
	run umount -l "$MNT" || fail "umount -l failed"
	! is_mounted "$MNT" || fail "still mounted after umount -l"
	# The guest goes on writing through the detached mount.
	pid_alive "${MFS_PID[$(realpath "$MNT")]}" || fail "the daemon quit under an open file"
	wait_pid_exit "$wpid" 30 || fail "the guest is stuck"
	wait "$wpid" || rc=$?
	((rc == 0)) || fail "the guest exited $rc: $(cat "$TESTDIR/lazy.out")"
	grep -q "acknowledged writes$" "$TESTDIR/lazy.out" ||
		fail "the guest met an error after the lazy unmount: $(cat "$TESTDIR/lazy.out")"
	log "guest: $(cat "$TESTDIR/lazy.out")"
	daemon_exit "$MNT"
	expect_stopped
	run "$PYTHON" "$ackw" verify "$SRC/guest.raw" "$TESTDIR/lazy.log" >&2 ||
		fail "the guest's writes are not all in the source"
	md5sum -c --quiet "$TESTDIR/lazy.md5" || fail "the source changed"
	resume_to_switch $((4 * MiB))
	run "$PYTHON" "$ackw" verify "$TGT/guest.raw" "$TESTDIR/lazy.log" >&2 ||
		fail "the guest's writes are not all in the target after the resumed switch"
	log "--- done in $((SECONDS - SECTION_T0))s"
}

section_lazy_stunned() {
	setup lazy-stunned
	MIRRORFS_TEST_STUN_DELAY_MS=1500 mount_mfs "$SRC" "$MNT" -o "target=$TGT"
	until grep -q "test: stunned, waiting" "$(daemon_log "$MNT")"; do
		check_not_failed "$MNT"
		sleep 0.02
	done
	run umount -l "$MNT" || fail "umount -l failed"
	daemon_exit "$MNT"
	assert_contains "$DAEMON_OUT" ": switched" "daemon log"
	is_switched "$SRC" || fail "the source's journal does not say switched"
	assert_file_eq "$SRC/disk.raw" "$TGT/disk.raw"
	assert_file_eq "$SRC/guest.raw" "$TGT/guest.raw"
	assert_file_eq "$SRC/conf/vm.conf" "$TGT/conf/vm.conf"
	[[ ! -e "$TGT/.mirrorfs-journal" ]] || fail "the target kept its journal"
	# A remount follows the journal.
	mount_mfs "$SRC" "$MNT"
	assert_eq "$TGT" "$(status_field "$MNT" served)" "served after the remount"
	umount_mfs "$MNT"
	log "--- done in $((SECONDS - SECTION_T0))s"
}

section_target_free() {
	setup target-free
	mount -t tmpfs -o size=64m mirrorfs-test-unmount "$TGT" || skip "cannot mount a tmpfs"
	track_mount "$TGT"
	own_target
	mount_mfs "$SRC" "$MNT" -o "target=$TGT,speed=4M"
	sleep 0.5
	ctl "$MNT" cancel
	wait_status_state "$MNT" cancelled 30
	expect_names "$TGT" "$BEFORE_TGT" "target after the cancel"
	umount "$TGT" 2>"$TESTDIR/umount.err" ||
		fail "the target's file system cannot be unmounted after the cancel ($(cat "$TESTDIR/umount.err")); the daemon holds:"$'\n'"$(find "/proc/${MFS_PID[$(realpath "$MNT")]}/fd" -mindepth 1 -printf '%l\n' | grep -F "$TGT" || true)"
	umount_mfs "$MNT"
	log "--- done in $((SECONDS - SECTION_T0))s"
}

section_sigterm() {
	local pid wpid rc=0
	setup sigterm
	own_target
	head -c 64K /dev/urandom >"$TESTDIR/sigterm.data"
	MIRRORFS_TEST_WRITE_HOLD_MS=1500 mount_mfs "$SRC" "$MNT" -o "target=$TGT,speed=4M"
	pid="${MFS_PID[$(realpath "$MNT")]}"
	# The write must succeed, and so must the close: a daemon asked to
	# stop with a file open goes on serving it (test-stop.sh).
	"$PYTHON" - "$TESTDIR/sigterm.data" "$MNT/guest.raw" >"$TESTDIR/sigterm.err" 2>&1 <<-'PY' &
		import mmap, os, sys
		buf = mmap.mmap(-1, 65536)  # page aligned, as O_DIRECT wants
		buf.write(open(sys.argv[1], "rb").read())
		fd = os.open(sys.argv[2], os.O_WRONLY | os.O_DIRECT)
		n = os.pwrite(fd, buf, 65536)
		print(f"wrote {n}")
		try:
		    os.close(fd)
		except OSError:
		    pass
	PY
	wpid=$!
	track_bg "$wpid"
	until grep -q "test: 1 writes held" "$(daemon_log "$MNT")"; do
		check_not_failed "$MNT"
		sleep 0.02
	done
	kill -TERM "$pid"
	wait_pid_exit "$wpid" 30 || fail "the guest's write is stuck after SIGTERM"
	wait "$wpid" || rc=$?
	((rc == 0)) || fail "the guest's write failed after SIGTERM: $(cat "$TESTDIR/sigterm.err")"
	assert_eq "wrote 65536" "$(cat "$TESTDIR/sigterm.err")" "the guest's write"
	is_mounted "$MNT" || fail "the daemon stopped with a file open"
	grep -q "not stopping: 1 file is open" "$(daemon_log "$MNT")" ||
		fail "the daemon did not say why it goes on: $(cat "$(daemon_log "$MNT")")"
	# The guest's file is closed now: a stop is done once the kernel's
	# RELEASE of it, which is asynchronous, has reached the daemon.
	for _ in $(seq 20); do
		kill -TERM "$pid" 2>/dev/null || break
		! wait_pid_exit "$pid" 1 || break
	done
	daemon_exit "$MNT"
	! is_mounted "$MNT" || fail "still mounted after SIGTERM"
	expect_stopped
	run cmp -n 65536 -i 0:65536 "$TESTDIR/sigterm.data" "$SRC/guest.raw"
	md5sum -c --quiet "$TESTDIR/sigterm.md5" || fail "the source changed"
	resume_to_switch $((4 * MiB))
	run cmp -n 65536 -i 0:65536 "$TESTDIR/sigterm.data" "$TGT/guest.raw"
	log "--- done in $((SECONDS - SECTION_T0))s"
}

for s in ${UNMOUNT_SECTIONS:-fusermount lazy lazy-stunned target-free sigterm}; do
	"section_${s//-/_}"
done
! mounts_under "$TESTDIR" || fail "a mirrorfs mount was left under $TESTDIR"
exit 0
