#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# kill -9 of the daemon in the middle of a migration, then a remount with
# the same command line (as an init system would restart it): no
# acknowledged write is lost, and the right side is served.
#
# Two writers (ackwriter.py) write 4 KiB blocks at random offsets of two
# images through the mount, buffered + fsync and O_DIRECT + fdatasync, and
# log each write once its fsync returned, to a file outside the mount.
# After each crash and remount, every block of each image must be whole and
# hold its last acknowledged write or a newer one: read through the mount,
# and straight from the directory that is authoritative (the source before
# the switch, the target after).  A static image must be untouched.
#
#   copying        killed while the copier works; remounted, the mount
#                  serves the source, the migration starts over (reusing
#                  the target's partial files) and switches.
#   mirrored       killed while everything is mirrored (switch=manual);
#                  remounted, mirrored again, then switched on command.
#   stun-before    killed inside the stun, before the source's journal is
#                  written (MIRRORFS_TEST_STUN_DELAY_MS holds the stun
#                  open): the source is served and the migration completes.
#   stun-after     killed inside the stun, after the journal: the target is
#                  served (the restart must follow the journal); a new
#                  migration, to another directory, then completes.
#   after-switch   killed as soon as the switch is logged: the target is
#                  served; a new migration then completes.
#   back           A -> B switched, then B -> A (overwrite) killed during
#                  the copy: the restart (mirrorfs A MNT) must serve B, not
#                  A's partial copy.
#   random         CRASH_ROUNDS (default 4) kills at random moments of a
#                  short migration (copying, switching or switched); each
#                  remount serves the side the source's journal names, and
#                  ends switched with every acknowledged write there.
#
# After a kill -9 the FUSE mount is dead (ENOTCONN); it is detached with
# fusermount3 -u (umount -l if busy) before the remount.
#
# CRASH_SECTIONS="copying random" runs only those sections.
# CRASH_SEED=N repeats the random kill times.

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
. "$(dirname "${BASH_SOURCE[0]}")/lib-migration.sh"
. "$(dirname "${BASH_SOURCE[0]}")/lib-control.sh"
. "$(dirname "${BASH_SOURCE[0]}")/lib-fault.sh"
require_cmd md5sum
cd "$TESTDIR"

ACKW="$CONTROL_LIB_DIR/ackwriter.py"
CRASH_SEED="${CRASH_SEED:-$((RANDOM * 32768 + RANDOM))}"
RANDOM=$CRASH_SEED
log "CRASH_SEED=$CRASH_SEED"
WRITER_SEED=1

# setup NAME [IMG_BLOCKS]: a source with two ackwriter images, a static
# image and a small config tree; sets SRC DST DST2 MNT LOGS.
setup() {
	local blocks="${2:-4096}"
	SECTION_T0=$SECONDS
	log "--- $1"
	SRC="$TESTDIR/$1/src"
	DST="$TESTDIR/$1/dst"
	DST2="$TESTDIR/$1/dst2"
	MNT="$TESTDIR/$1/mnt"
	LOGS="$TESTDIR/$1/logs"
	mkdir -p "$SRC/conf" "$DST" "$DST2" "$MNT" "$LOGS"
	run "$PYTHON" "$ACKW" init "$SRC/img.raw" "$blocks"
	run "$PYTHON" "$ACKW" init "$SRC/direct.raw" $((blocks / 4))
	head -c $((blocks * 1024)) /dev/urandom >"$SRC/static.raw"
	echo "vm=$1" >"$SRC/conf/vm.conf"
	: >"$LOGS/img.log"
	: >"$LOGS/direct.log"
	(cd "$SRC" && md5sum static.raw conf/vm.conf) >"$TESTDIR/$1.md5"
}

WRITERS=()
# writers_start SECONDS: both writers, through the mount, for SECONDS at most.
writers_start() {
	local secs="$1" s1=$WRITER_SEED s2=$((WRITER_SEED + 1))
	# Each run a seed of its own, larger than the last: its sequence
	# numbers are higher than any before (counted here, not in the
	# background jobs, which are subshells).
	WRITER_SEED=$((WRITER_SEED + 2))
	timeout -k 5 "$CMD_TIMEOUT" "$PYTHON" "$ACKW" write "$MNT/img.raw" "$LOGS/img.log" \
		--seed "$s1" --max-seconds "$secs" >>"$LOGS/writers.out" 2>&1 &
	WRITERS=($!)
	timeout -k 5 "$CMD_TIMEOUT" "$PYTHON" "$ACKW" write "$MNT/direct.raw" "$LOGS/direct.log" \
		--direct --seed "$s2" --max-seconds "$secs" >>"$LOGS/writers.out" 2>&1 &
	WRITERS+=($!)
	track_bg "${WRITERS[0]}"
	track_bg "${WRITERS[1]}"
}

writers_wait() {
	local pid rc
	for pid in "${WRITERS[@]}"; do
		rc=0
		wait_pid_exit "$pid" 30 || fail "a writer is stuck:"$'\n'"$(cat "$LOGS/writers.out")"
		wait "$pid" || rc=$?
		((rc == 0)) || fail "a writer exited $rc:"$'\n'"$(cat "$LOGS/writers.out")"
	done
	WRITERS=()
}

# verify_in DIR WHAT: every acknowledged write is in DIR's images; the
# static files are as they were.
verify_in() {
	local out
	out="$(run "$PYTHON" "$ACKW" verify "$1/img.raw" "$LOGS/img.log" 2>&1)" ||
		fail "$2: img.raw:"$'\n'"$out"
	out="$(run "$PYTHON" "$ACKW" verify "$1/direct.raw" "$LOGS/direct.log" 2>&1)" ||
		fail "$2: direct.raw:"$'\n'"$out"
	(cd "$1" && md5sum -c --quiet "$TESTDIR/$SECTION.md5") || fail "$2: the static files changed"
}

acked() {
	grep -c '^A ' "$LOGS/img.log" "$LOGS/direct.log" | awk -F: '{ n += $2 } END { print n }'
}

# crash: kill -9 the daemon of MNT, let the writers stop, detach the dead mount.
crash() {
	local mnt pid
	mnt="$(realpath "$MNT")"
	pid="${MFS_PID[$mnt]}"
	kill -KILL "$pid"
	wait_pid_exit "$pid" 10 || fail "the daemon survived SIGKILL"
	wait "$pid" 2>/dev/null || true
	check_sanitizer_log "${MFS_LOG[$mnt]}" || fail "sanitizer report before the kill"
	KILLED_LOG="${MFS_LOG[$mnt]}"
	unset 'MFS_PID[$mnt]' 'MFS_LOG[$mnt]'
	writers_wait
	fusermount3 -u "$mnt" 2>/dev/null || umount -l "$mnt" || fail "cannot detach the dead mount"
	! is_mounted "$mnt" || fail "the dead mount is still there"
}

# remount: the same command line as the first mount (OPTS), without the
# test knobs (MIRRORFS_TEST_STUN_DELAY_MS).
remount() {
	mount_mfs "$SRC" "$MNT" "${OPTS[@]}"
}

# expect_served DIR: the remount served DIR when it came up (its log's
# "serving" line), and the source's journal agrees.  When the source was
# served, the status is not asked: the resumed migration may rightly have
# switched already (a restart that trusts every checkpoint copies nothing),
# and the callers checked the journal before the remount.
expect_served() {
	wait_log "$MNT" "serving " 10
	grep -qF "serving $1 on " "$(daemon_log "$MNT")" ||
		fail "the remount did not serve $1: $(grep -F 'serving ' "$(daemon_log "$MNT")")"
	if [[ "$1" == "$DST" ]]; then
		assert_eq "$1" "$(status_field "$MNT" served)" "the directory served after the remount"
		is_switched "$SRC" || fail "the target is served, yet the source's journal does not say switched"
	fi
}

# expect_not_switched: after a kill before the journal, the source's
# journal does not say switched.
expect_not_switched() {
	! is_switched "$SRC" || fail "killed before the journal, yet the source's journal says switched"
}

# expect_served_dir DIR: the mount serves DIR (no journal check).
expect_served_dir() {
	assert_eq "$1" "$(status_field "$MNT" served)" "the directory served after the remount"
}

# finish_switched: after the switch, everything is in the target, read
# directly and through the mount; then a new migration (to DST2) completes.
finish_switched() {
	verify_in "$DST" "target after the switch"
	verify_in "$MNT" "the mount after the switch"
	ctl "$MNT" start "$DST2"
	wait_status_state "$MNT" switched 60
	verify_in "$DST2" "the next migration's target"
	verify_in "$MNT" "the mount after the next migration"
	umount_mfs "$MNT"
	log "--- done in $((SECONDS - SECTION_T0))s ($(acked) acknowledged writes)"
}

section_copying() {
	SECTION=copying
	setup copying 8192
	OPTS=(-o "target=$DST,speed=8M")
	mount_mfs "$SRC" "$MNT" "${OPTS[@]}"
	writers_start 30
	sleep 1.5
	assert_eq copying "$(status_field "$MNT" state)" "state before the kill"
	crash
	expect_not_switched
	verify_in "$SRC" "source after the kill"
	remount
	expect_served "$SRC"
	verify_in "$MNT" "the mount after the remount"
	writers_start 1.5
	wait_status_state "$MNT" switched 60
	writers_wait
	finish_switched
}

section_mirrored() {
	SECTION=mirrored
	setup mirrored
	OPTS=(-o "target=$DST,switch=manual")
	mount_mfs "$SRC" "$MNT" "${OPTS[@]}"
	wait_status_state "$MNT" mirrored 60
	writers_start 30
	sleep 1
	crash
	expect_not_switched
	verify_in "$SRC" "source after the kill"
	remount
	expect_served "$SRC"
	verify_in "$MNT" "the mount after the remount"
	wait_status_state "$MNT" mirrored 60
	writers_start 1
	writers_wait
	ctl "$MNT" switch
	wait_status_state "$MNT" switched 60
	finish_switched
}

section_stun_before() {
	SECTION=stun-before
	setup stun-before
	OPTS=(-o "target=$DST,speed=32M")
	MIRRORFS_TEST_STUN_DELAY_MS=20000 mount_mfs "$SRC" "$MNT" "${OPTS[@]}"
	writers_start 30
	wait_log "$MNT" "test: stunned, waiting" 60
	sleep 0.3
	crash
	grep -q "test: journaled" "$KILLED_LOG" && fail "the kill came after the journal"
	expect_not_switched
	verify_in "$SRC" "source after the kill"
	remount
	expect_served "$SRC"
	verify_in "$MNT" "the mount after the remount"
	wait_status_state "$MNT" switched 60
	finish_switched
}

section_stun_after() {
	SECTION=stun-after
	setup stun-after
	OPTS=(-o "target=$DST,speed=32M")
	MIRRORFS_TEST_STUN_DELAY_MS=1000 mount_mfs "$SRC" "$MNT" "${OPTS[@]}"
	writers_start 30
	wait_log "$MNT" "test: journaled, waiting" 60
	crash
	is_switched "$SRC" || fail "killed after the journal, yet the source's journal does not say switched"
	verify_in "$DST" "target after the kill"
	remount
	expect_served "$DST"
	verify_in "$MNT" "the mount after the remount"
	finish_switched
}

section_after_switch() {
	SECTION=after-switch
	setup after-switch
	OPTS=(-o "target=$DST,speed=32M")
	mount_mfs "$SRC" "$MNT" "${OPTS[@]}"
	writers_start 30
	wait_log "$MNT" ": switched (stun" 60
	crash
	verify_in "$DST" "target after the kill"
	remount
	expect_served "$DST"
	verify_in "$MNT" "the mount after the remount"
	finish_switched
}

# Migrated and back: A -> B switched, then B -> A (overwrite: A still holds
# the old files and the journal that sends a restart to B) killed during
# the copy.  The mount was made without -o target (the migrations were
# started with mirrorfsctl): the restart is "mirrorfs A MNT" and must serve
# B, the authoritative copy, not A's partial one.
section_back() {
	SECTION=back
	setup back
	OPTS=()
	mount_mfs "$SRC" "$MNT"
	ctl "$MNT" start "$DST"
	writers_start 1
	wait_status_state "$MNT" switched 60
	writers_wait
	verify_in "$DST" "target after the first migration"
	writers_start 30
	ctl "$MNT" start "$SRC" --overwrite --speed 4M
	sleep 1
	assert_eq copying "$(status_field "$MNT" state)" "state of the migration back before the kill"
	crash
	verify_in "$DST" "B, the source of the migration back, after the kill"
	remount
	expect_served_dir "$DST"
	verify_in "$MNT" "the mount after the remount"
	umount_mfs "$MNT"
	log "--- done in $((SECONDS - SECTION_T0))s ($(acked) acknowledged writes)"
}

section_random() {
	local round ms state rounds="${CRASH_ROUNDS:-4}"
	for ((round = 1; round <= rounds; round++)); do
		SECTION="random$round"
		setup "random$round" 2048
		OPTS=(-o "target=$DST,speed=8M")
		mount_mfs "$SRC" "$MNT" "${OPTS[@]}"
		writers_start 30
		# The copy takes about 1.5 s: kill anywhere from the start to after it.
		ms=$((RANDOM % 2200 + 50))
		sleep "$(awk -v m="$ms" 'BEGIN { printf "%.3f", m / 1000 }')"
		state="$(migration_states "$MNT" | tail -n 1)"
		crash
		log "round $round: killed after ${ms} ms (last state logged: ${state:-copying}; source journal: $(journal_state "$SRC"))"
		if is_switched "$SRC"; then
			verify_in "$DST" "round $round: target after the kill"
			remount
			expect_served "$DST"
		else
			verify_in "$SRC" "round $round: source after the kill"
			remount
			expect_served "$SRC"
			wait_status_state "$MNT" switched 60
		fi
		verify_in "$MNT" "round $round: the mount after the remount"
		verify_in "$DST" "round $round: the target at the end"
		umount_mfs "$MNT"
	done
	log "--- random: $rounds rounds"
}

for s in ${CRASH_SECTIONS:-copying mirrored stun-before random stun-after after-switch back}; do
	"section_${s//-/_}"
done
! mounts_under "$TESTDIR" || fail "a mirrorfs mount was left under $TESTDIR"
exit 0
