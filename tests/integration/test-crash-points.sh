#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# kill -9 of the daemon at every named point of a migration, on purpose:
# the daemon runs with MIRRORFS_TEST_CRASH_AT=POINT[:N] and kills itself
# at the Nth arrival there (lib/migration.c, mfs_test_crash_point()).
# For each point, while a guest (ackwriter.py, fsync after every write)
# writes through the mount:
#
#   1. mount, start the migration, the daemon dies at POINT (it must: a
#      point never reached fails the case);
#   2. the side the source's journal names is authoritative and whole:
#      every acknowledged write and the expected tree are there, and it is
#      the side the point must leave (below);
#   3. restart with the same command line: the mount serves that side, the
#      same data through the mount; where the source records the job (a
#      kill after the walk's record, before the switch: "resumes" below),
#      the restarted daemon resumes it by itself from its checkpoints and
#      switches: the target is then the side, whole;
#   4. the guest changes the tree through the mount: a hard-linked name is
#      replaced by a file of its own, a directory and a file are removed,
#      a file is added;
#   5. a new migration completes and verifies: on the source side, to the
#      same target (reusing the partial copy when its journal says so, with
#      --overwrite when it holds names without one); on the target side,
#      to a third directory.  The target then holds exactly the tree the
#      source holds (names, types, link counts, contents) and every
#      acknowledged write.
#
# Points and the side each must leave:
#
#   walked          after the start's walk, before its reply     source
#   started         the copier thread's first step               source, resumes
#   chunk-begin:2   before the second chunk                      source, resumes
#   chunk:3         after the third chunk                        source, resumes
#   mirrored        all mirrored, before the switch              source, resumes
#   stunned         the stun closed, before the final flush      source, resumes
#   journal-renamed the switched journal renamed, the directory
#                   not yet synced                               target
#   journaled       the journal durable, before the swap         target
#   swapped         descriptors swapped, still stunned           target
#   resumed-journal-left  resumed, the target's copying journal
#                   not yet removed                              target
#   resumed         resumed, the target's journal removed        target
#   abort-detached  a cancel: mirrors detached, nothing removed  source (the
#                   cancel forgot the job first: it does not resume)
#   abort-removed   a cancel: the target's names removed, its
#                   journal not yet                              source
#   deleting-source delete_source: the first source name gone    target
#
# and one case without a crash point, back-cancel: A -> B switched, then
# B -> A (--overwrite) started and cancelled; then kill -9 and
# "mirrorfs A MNT" must serve B, whole (A's journal named B before the
# migration back; a cancelled migration must leave it naming B).
#
# Known to fail before the fixes of issue 17:
#   defect 6  every source-side point whose partial target is reused
#             (walked, started, chunk-*, mirrored, stunned, abort-*): the
#             reuse keeps the names the source no longer has (the removed
#             directory and file come back) and writes the new file
#             conf/vm.link into the old hard link, i.e. into
#             conf/vm.conf too: "the tree differs".
#   defect 12 back-cancel: the restart serves A, emptied by the cancel.
#
# CRASH_POINTS="journaled resumed" runs only those (back-cancel is one).

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
. "$(dirname "${BASH_SOURCE[0]}")/lib-migration.sh"
. "$(dirname "${BASH_SOURCE[0]}")/lib-control.sh"
. "$(dirname "${BASH_SOURCE[0]}")/lib-fault.sh"
. "$(dirname "${BASH_SOURCE[0]}")/lib-invariant.sh"
require_cmd md5sum
cd "$TESTDIR"

ALL_POINTS="walked started chunk-begin:2 chunk:3 mirrored stunned journal-renamed journaled
swapped resumed-journal-left resumed abort-detached abort-removed deleting-source back-cancel"

# Whether a kill at POINT leaves a job that the restart resumes.
expected_resume() {
	case "$1" in
	started | chunk-begin | chunk | mirrored | stunned) echo yes ;;
	*) echo no ;;
	esac
}

# The side a kill at POINT must leave authoritative.
expected_side() {
	case "$1" in
	journal-renamed | journaled | swapped | resumed* | deleting-source) echo target ;;
	*) echo source ;;
	esac
}

CASE_NO=0
case_setup() {
	CASE_DIR="$TESTDIR/case-$CASE_NO-${1//:/-}"
	SRC="$CASE_DIR/src"
	DST="$CASE_DIR/dst"
	DST2="$CASE_DIR/dst2"
	MNT="$CASE_DIR/mnt"
	LOG="$CASE_DIR/img.log"
	mkdir -p "$SRC" "$DST" "$DST2" "$MNT"
	: >"$LOG"
	make_tree "$SRC"
	EXPECTED="$(cat "$SRC.expected")"
}

# change_tree MNT: the guest's namespace changes after the restart.
change_tree() {
	rm "$1/conf/vm.link"
	echo "a file of its own" >"$1/conf/vm.link"
	rmdir "$1/empty"
	rm "$1/static.raw"
	echo "added after the crash" >"$1/added.conf"
}

point_case() {
	local point="$1" name="${1%%:*}" side want dir logf resumes
	case_setup "$point"
	MIRRORFS_TEST_CRASH_AT="$point" mount_mfs "$SRC" "$MNT"
	writer_start "$MNT/img.raw" "$LOG"
	case "$name" in
	abort-*)
		ctl "$MNT" start "$DST" --switch manual --chunk 256K
		wait_status_state "$MNT" mirrored 60
		# The daemon may die before it answers.
		cli "$MIRRORFSCTL" "$MNT" cancel
		;;
	deleting-source)
		cli "$MIRRORFSCTL" "$MNT" start "$DST" --delete-source --chunk 256K
		;;
	*)
		cli "$MIRRORFSCTL" "$MNT" start "$DST" --chunk 256K
		;;
	esac
	logf="$(wait_daemon_gone "$MNT" 60)"
	writer_stop
	grep -q "test: crash at $name" "$logf" || fail "the daemon did not die at $point:"$'\n'"$(cat "$logf")"

	# 2. The side the journal names, whole, and the one the point must leave.
	side=source dir="$SRC"
	if is_switched "$SRC"; then
		side=target dir="$DST"
		[[ "$(journal_field "$SRC" target)" == "$DST" ]] || fail "the source's journal names '$(journal_field "$SRC" target)'"
	fi
	want="$(expected_side "$name")"
	[[ "$side" == "$want" ]] || fail "killed at $point: the $side is authoritative, expected the $want"
	if [[ "$name" == deleting-source ]]; then
		verify_data "$DST" "$LOG" "the target after the kill"
	else
		verify_data "$dir" "$LOG" "the $side after the kill"
	fi

	resumes=no
	[[ "$(journal_state "$SRC")" != migrating ]] || resumes=yes
	assert_eq "$(expected_resume "$name")" "$resumes" "killed at $point: a job to resume"

	# 3. The same command line again; a recorded job resumes and switches.
	mount_mfs "$SRC" "$MNT"
	if [[ "$resumes" == yes ]]; then
		wait_status_state "$MNT" switched 60
		side=target dir="$DST"
		verify_data "$DST" "$LOG" "the target after the resumed job switched"
	fi
	assert_eq "$dir" "$(status_field "$MNT" served)" "served after the restart"
	verify_data "$MNT" "$LOG" "the mount after the restart"

	# 4, 5. The guest changes the tree; a new migration completes.
	change_tree "$MNT"
	EXPECTED="$(static_listing "$dir")"
	writer_start "$MNT/img.raw" "$LOG"
	if [[ "$side" == target ]]; then
		ctl "$MNT" start "$DST2"
		dir="$DST2"
	elif [[ "$(journal_state "$DST")" == copying ]]; then
		ctl "$MNT" start "$DST"
		dir="$DST"
	elif [[ -n "$(names_no_journal "$DST")" ]]; then
		ctl "$MNT" start "$DST" --overwrite
		dir="$DST"
	else
		ctl "$MNT" start "$DST"
		dir="$DST"
	fi
	wait_status_state "$MNT" switched 60
	writer_stop
	verify_data "$dir" "$LOG" "the new migration's target"
	verify_data "$MNT" "$LOG" "the mount after the new migration"
	umount_mfs "$MNT"
	log "$point: $side side; then migrated to $(basename "$dir"); $(grep -c '^A ' "$LOG") acknowledged writes"
}

# A -> B switched; B -> A started and cancelled; kill -9; mirrorfs A MNT.
back_cancel_case() {
	NO_HARDLINK=1 # not the subject here (see test-syscall-faults.sh, back-links)
	case_setup back-cancel
	mount_mfs "$SRC" "$MNT"
	ctl "$MNT" start "$DST"
	wait_status_state "$MNT" switched 60
	writer_start "$MNT/img.raw" "$LOG"
	ctl "$MNT" start "$SRC" --overwrite --switch manual
	wait_status_state "$MNT" mirrored 60
	ctl "$MNT" cancel
	wait_status_state "$MNT" cancelled 60
	writer_stop
	assert_eq "$DST" "$(status_field "$MNT" served)" "served after the cancel"
	verify_data "$MNT" "$LOG" "the mount after the cancel"
	check_restart "$SRC" "$MNT" source "$DST" "$SRC" "$LOG"
	umount_mfs "$MNT"
	log "back-cancel: B served after the restart"
}

T0=$SECONDS
for p in ${CRASH_POINTS:-$ALL_POINTS}; do
	CASE_NO=$((CASE_NO + 1))
	if [[ "$p" == back-cancel ]]; then
		run_case "$p" back_cancel_case
	else
		run_case "$p" point_case "$p"
	fi
done
log "done in $((SECONDS - T0))s"
! mounts_under "$TESTDIR" || fail "a mirrorfs mount was left under $TESTDIR"
cases_summary
