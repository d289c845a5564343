#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# One failing system call at a time, at every place a migration makes one:
# the daemon runs under tests/faultinject (LD_PRELOAD), which fails the Nth
# call of one family (open, write, fsync, rename, ...) made by the
# migration's threads on the case's directories, once, with EIO
# (FAULT_ERRNO).  Whatever call fails, the invariant of lib-invariant.sh
# must hold, while a guest (ackwriter.py, fsync after every write) writes
# through the mount:
#
#   - either the migration failed or was refused and the SOURCE is
#     authoritative and complete: the mount serves it, its journal does
#     not say switched, every acknowledged write and the static tree are
#     there (through the mount and in the source), and the target holds
#     nothing the migration made (a fresh target is empty again, journal
#     included; a reused one holds no name it did not hold before);
#   - or the switch is complete: the mount serves the TARGET, the source's
#     journal says switched to it, and the same data is there;
#   - never neither; and after kill -9 and a restart of the daemon with
#     the same command line, the mount serves the same side with the same
#     data: the daemon never wipes the side a journal names.
#
# Phases (FAULT_PHASES, default all three):
#
#   fresh   mirrorfs SRC MNT; mirrorfsctl start DST (an empty directory).
#   reuse   a first daemon is killed at its second chunk
#           (MIRRORFS_TEST_CRASH_AT=chunk:2) leaving a partial target; the
#           daemon restarted with the fault armed resumes the job the
#           source records by itself, reusing the partial files (one that
#           cannot resume is forgotten with mirrorfsctl cancel before the
#           invariant's restart).
#   back-links  one case, no fault: the back phase on a tree with a hard
#           link.  The migration back (overwrite) must make the link in
#           SRC where the old one is, and switch; then the invariant.
#   back    SRC -> DST switched by a first daemon; then mirrorfs SRC MNT
#           (serving DST) with the fault armed; mirrorfsctl start SRC
#           --overwrite.  SRC's journal still says "switched to DST" until
#           this migration switches: a failed or cancelled migration back
#           must leave SRC's journal naming DST (or another journal a
#           restart follows to DST), so that "mirrorfs SRC MNT" after a
#           kill -9 serves DST with every write, never the stale or
#           half-removed files left in SRC.
#
# First a counting run of each phase (no fault) logs every call the
# migration's threads make (MIRRORFS_FAULT_LOG) and prints how many of
# each family the start (control thread), the copier and switch (copier
# thread) and the journal make.  Then, for each family and index chosen
# from those counts, one case: a fresh source, target and mount, the
# migration with the fault armed, the checks above.
#
# The index space is sampled, deterministically: every index of a family
# with at most FAULT_SMALL (4) calls, of fsync, fdatasync, syncfs,
# rename, unlink and link always (the journal and the switch live there),
# every call on a journal, and the first two and the last two of the
# rest (about 160 cases, 5 to 8 minutes: its own timeout is 900 s).  FAULT_SWEEP=full tries every index of every family:
#
#     FAULT_SWEEP=full meson test -C build --print-errorlogs syscall-faults
#
# Other knobs: FAULT_PHASES="fresh back", FAULT_FAMILIES="fsync rename",
# FAULT_CASES="fresh:fsync:2 back:write:1" (just those), FAULT_ERRNO=ENOSPC,
# KEEP_GOING=0 (stop at the first failing case), CASE_VERBOSE=1.
#
# Expected on a correct daemon: every case passes.  Known to fail before
# the fixes of issue 17:
#   defect 5  fresh:fsync:N where N is the directory fsync after the
#             journal's rename (and reuse:fsync:N likewise): the switch
#             fails after the journal says switched, abort deletes the
#             target's files: "neither side is authoritative".
#   defect 12 back:*:* for any fault that fails the migration back: its
#             abort removes SRC's journal, whose "switched to DST" the
#             "copying" journal had replaced; the restart serves SRC
#             (emptied by the abort) instead of DST.

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
. "$(dirname "${BASH_SOURCE[0]}")/lib-migration.sh"
. "$(dirname "${BASH_SOURCE[0]}")/lib-control.sh"
. "$(dirname "${BASH_SOURCE[0]}")/lib-fault.sh"
. "$(dirname "${BASH_SOURCE[0]}")/lib-invariant.sh"
require_cmd md5sum
# The faults are the migration's threads' own system calls, which no FUSE
# request reaches: the classic transport's pass would repeat this one.
[[ "${MIRRORFS_TEST_IO_URING:-}" != off ]] ||
	skip "the transport does not reach the migration's system calls: run once, on the default"

FAULTINJECT="${FAULTINJECT:-$(dirname "$(dirname "$MIRRORFS")")/tests/faultinject/libfaultinject.so}"
[[ -f "$FAULTINJECT" ]] || skip "faultinject not built at '$FAULTINJECT' (set FAULTINJECT)"
FAULT_ERRNO="${FAULT_ERRNO:-EIO}"
FAULT_SMALL="${FAULT_SMALL:-4}"
ALWAYS_ALL="fsync fdatasync syncfs rename unlink link"
cd "$TESTDIR"

# mount_faulty ROOT MNT: mount_mfs with the fault armed.  The variables
# reach the daemon (and the short-lived tools mount_mfs runs, which the
# shim leaves alone: their threads are not the migration's).  A sanitized
# daemon must accept a library loaded before its runtime.
FAULT_SPEC=
mount_faulty() {
	LD_PRELOAD="$FAULTINJECT" MIRRORFS_FAULT="$FAULT_SPEC" MIRRORFS_FAULT_DIR="$CASE_DIR" \
		MIRRORFS_FAULT_LOG="$CASE_DIR/fault.log" \
		ASAN_OPTIONS="${ASAN_OPTIONS}:verify_asan_link_order=0" mount_mfs "$1" "$2"
}

# case_setup PHASE: directories of a case (CASE_DIR SRC DST MNT LOG) and
# the source tree.
case_setup() {
	CASE_DIR="$TESTDIR/case-$1-$CASE_NO"
	SRC="$CASE_DIR/src"
	DST="$CASE_DIR/dst"
	MNT="$CASE_DIR/mnt"
	LOG="$CASE_DIR/img.log"
	mkdir -p "$SRC" "$DST" "$MNT"
	: >"$LOG"
	make_tree "$SRC"
	EXPECTED="$(cat "$SRC.expected")"
}

# one_case PHASE: run PHASE with FAULT_SPEC armed (or none) and check.
one_case() {
	local phase="$1" root from to before state side rc
	# The back phase's tree has no hard link: see back-links above.
	NO_HARDLINK=
	[[ "$phase" != back ]] || NO_HARDLINK=1
	case_setup "$phase"
	root="$SRC" from="$SRC" to="$DST"
	case "$phase" in
	fresh)
		before=""
		mount_faulty "$root" "$MNT"
		writer_start "$MNT/img.raw" "$LOG"
		cli "$MIRRORFSCTL" "$MNT" start "$DST"
		;;
	reuse)
		# A first daemon dies at its second chunk: a partial target.
		MIRRORFS_TEST_CRASH_AT=chunk:2 mount_mfs "$root" "$MNT"
		writer_start "$MNT/img.raw" "$LOG"
		# The kill may come before the reply: the start's status is moot.
		cli "$MIRRORFSCTL" "$MNT" start "$DST" --chunk 256K
		wait_daemon_gone "$MNT" 30 >/dev/null
		writer_stop
		[[ "$(journal_state "$DST")" == copying ]] || fail "no partial target to reuse"
		assert_eq migrating "$(journal_state "$SRC")" "the source's record of the job"
		before="$(names_no_journal "$DST")"
		# The restart resumes the recorded job by itself, faults and all;
		# one that cannot resume leaves the mount serving, idle.
		mount_faulty "$root" "$MNT"
		writer_start "$MNT/img.raw" "$LOG"
		CLI_RC=0 CLI_ERR=
		;;
	back | back-links)
		mount_mfs "$root" "$MNT"
		ctl "$MNT" start "$DST"
		wait_status_state "$MNT" switched 60
		umount_mfs "$MNT"
		from="$DST" to="$SRC"
		before="$(names_no_journal "$SRC")"
		mount_faulty "$root" "$MNT"
		assert_eq "$DST" "$(status_field "$MNT" served)" "served before the migration back"
		writer_start "$MNT/img.raw" "$LOG"
		cli "$MIRRORFSCTL" "$MNT" start "$SRC" --overwrite
		;;
	esac
	rc=$CLI_RC
	((rc == 0)) || log "$phase ${FAULT_SPEC:-counting}: the start was refused: $CLI_ERR"
	if ((rc == 0)); then
		state="$(end_state "$MNT" 60)"
	else
		# Refused: nothing may have started.
		state="$(status_field "$MNT" state)"
		[[ "$state" == idle || "$state" == failed ]] ||
			fail "the start was refused ($CLI_ERR) yet the state is '$state'"
	fi
	writer_stop
	# A recorded job that could not resume is forgotten, as an operator
	# would (mirrorfsctl cancel): else the restart below would resume it.
	if [[ "$state" == idle && "$(journal_state "$root")" == migrating ]]; then
		log "$phase ${FAULT_SPEC:-counting}: the job did not resume; cancel forgets it"
		ctl "$MNT" cancel
	fi
	side="$(check_side "$MNT" "$from" "$to" "$LOG")"
	case "$state" in
	switched) [[ "$side" == target ]] || fail "state switched, yet the source is authoritative" ;;
	*) [[ "$side" == source ]] || fail "state '$state', yet the target is authoritative" ;;
	esac
	if [[ "$side" == source && "$phase" != back ]]; then
		# Nothing the migration made stays in the target.
		local after extra
		after="$(names_no_journal "$to")"
		extra="$(comm -13 <(printf '%s\n' "$before") <(printf '%s\n' "$after"))"
		[[ -z "$extra" ]] || fail "the failed migration left in the target:"$'\n'"$extra"
		if [[ "$phase" == fresh && -e "$to/.mirrorfs-journal" ]]; then
			fail "the failed migration left its journal in the target: $(cat "$to/.mirrorfs-journal")"
		fi
	fi
	check_restart "$root" "$MNT" "$side" "$from" "$to" "$LOG"
	umount_mfs "$MNT"
	if [[ -n "$FAULT_SPEC" ]] && ! grep -q '^FAULT ' "$CASE_DIR/fault.log" 2>/dev/null; then
		log "note: $FAULT_SPEC was not reached (fewer calls than in the counting run)"
	fi
	log "$phase ${FAULT_SPEC:-counting}: $state, $side side; $(grep -c '^A ' "$LOG") acknowledged writes"
	if [[ -z "$FAULT_SPEC" ]]; then
		cp "$CASE_DIR/fault.log" "$TESTDIR/count-$phase.log"
	fi
}

# counts PHASE: "FAMILY COUNT" lines from the counting run's log.
counts() {
	awk '$1 != "FAULT" { if ($2 > n[$1]) n[$1] = $2 } END { for (f in n) print f, n[f] }' \
		"$TESTDIR/count-$1.log" | LC_ALL=C sort
}

# count_table PHASE: calls per family, by thread, and those on a journal.
count_table() {
	awk '$1 != "FAULT" {
		t = ($3 ~ /ctl/) ? "start" : (($3 ~ /copier/) ? "copier" : $3)
		n[$1 " " t]++
		if ($5 ~ /\.mirrorfs-journal/ || $6 ~ /\.mirrorfs-journal/) j[$1]++
	} END {
		for (k in n) { split(k, a, " "); printf "  %-16s %-7s %5d\n", a[1], a[2], n[k] }
		for (f in j) printf "  %-16s journal %5d\n", f, j[f]
	}' "$TESTDIR/count-$1.log" | LC_ALL=C sort
}

# indices PHASE FAMILY COUNT: the indices to try, one per line.
indices() {
	local phase="$1" fam="$2" n="$3" i
	{
		if [[ "${FAULT_SWEEP:-}" == full || $n -le $FAULT_SMALL || " $ALWAYS_ALL " == *" $fam "* ]]; then
			seq 1 "$n"
		else
			seq 1 2
			seq $((n - 1)) "$n"
			awk -v f="$fam" '$1 == f && ($5 ~ /\.mirrorfs-journal/ || $6 ~ /\.mirrorfs-journal/) { print $2 }' \
				"$TESTDIR/count-$phase.log"
		fi
	} | sort -n -u
}

CASE_NO=0
T0=$SECONDS
PHASES="${FAULT_PHASES:-fresh reuse back}"
if [[ -z "${FAULT_CASES:-}" && " $PHASES " == *" back "* ]]; then
	run_case "back-links:count" one_case back-links
fi
for phase in $PHASES; do
	CASE_NO=$((CASE_NO + 1))
	FAULT_SPEC=
	run_case "$phase:count" one_case "$phase"
	[[ -f "$TESTDIR/count-$phase.log" ]] || fail "the counting run of $phase failed"
	log "$phase: calls by family and thread in the counting run:"$'\n'"$(count_table "$phase")"
done

if [[ -n "${FAULT_CASES:-}" ]]; then
	CASES="$FAULT_CASES"
else
	CASES=
	for phase in $PHASES; do
		while read -r fam n; do
			[[ -z "${FAULT_FAMILIES:-}" || " $FAULT_FAMILIES " == *" $fam "* ]] || continue
			for i in $(indices "$phase" "$fam" "$n"); do
				CASES+=" $phase:$fam:$i"
			done
		done < <(counts "$phase")
	done
fi
log "$(wc -w <<<"$CASES") cases, errno $FAULT_ERRNO"
for c in $CASES; do
	IFS=: read -r phase fam i <<<"$c"
	CASE_NO=$((CASE_NO + 1))
	FAULT_SPEC="$fam:$i:$FAULT_ERRNO"
	run_case "$c" one_case "$phase"
done
log "done in $((SECONDS - T0))s"
! mounts_under "$TESTDIR" || fail "a mirrorfs mount was left under $TESTDIR"
cases_summary
