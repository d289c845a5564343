# SPDX-License-Identifier: GPL-2.0-or-later
# shellcheck shell=bash disable=SC2034 # variables for the tests that source this
#
# Helpers for the tests that break a migration at many places in turn and
# check the one invariant every break must keep (test-syscall-faults.sh,
# test-crash-points.sh), on top of lib.sh, lib-migration.sh,
# lib-control.sh and lib-fault.sh:
#
#   either the source is still authoritative and complete (the mount
#   serves it, its journal does not say switched, every acknowledged write
#   is there, the tree is the one expected), or the switch is complete
#   (the mount serves the target, the source's journal says switched to
#   it, the same data is there); never neither; and a kill -9 and a
#   restart with the same command line serve the same side with the same
#   data.
#
# Each case runs in a subshell of its own (run_case), so that a failed
# assertion ends the case, not the test: the test runs every case and
# reports the failing ones together.  The subshell's EXIT trap stops the
# case's writer and daemons and detaches its mounts, whatever way it ends.

ACKW="$CONTROL_LIB_DIR/ackwriter.py"
IMG_BLOCKS="${IMG_BLOCKS:-1024}" # 4 MiB: several chunks

# make_tree DIR: a small image tree: an ackwriter image, a static image, a
# directory with a file, a hard link to it and a symlink, an empty
# directory.  Records its expected static listing in DIR.expected.
#
# With NO_HARDLINK=1, no hard link (see test-syscall-faults.sh's back phase).
make_tree() {
	local d="$1"
	mkdir -p "$d/conf" "$d/empty"
	run "$PYTHON" "$ACKW" init "$d/img.raw" "$IMG_BLOCKS"
	head -c $((1024 * 1024)) /dev/urandom >"$d/static.raw"
	echo "vm=$(basename "$(dirname "$d")")" >"$d/conf/vm.conf"
	[[ -n "${NO_HARDLINK:-}" ]] || ln "$d/conf/vm.conf" "$d/conf/vm.link"
	ln -s vm.conf "$d/conf/current"
	static_listing "$d" >"$d.expected"
}

# static_listing DIR: what must not change below DIR whatever happens to a
# migration: every name but the journal's, its type and link count, and
# the checksum of every regular file but the guest's image.
static_listing() {
	(cd "$1" && find . -mindepth 1 ! -name '.mirrorfs-journal*' -printf '%P %y %n\n' |
		LC_ALL=C sort &&
		find . -type f ! -name img.raw ! -name '.mirrorfs-journal*' -exec md5sum {} + |
		LC_ALL=C sort)
}

# names_no_journal DIR: the names below DIR, the journal's left out.
names_no_journal() {
	names_below "$1" | grep -v '^\.mirrorfs-journal' || true
}

# journal_field DIR KEY: a key of DIR's journal, or nothing.
journal_field() {
	local f="$1/.mirrorfs-journal"
	[[ -f "$f" ]] || return 0
	sed -n "s/^$2=//p" "$f"
}

# --- the guest --------------------------------------------------------------

WRITER_PID=
WRITER_SEED="${WRITER_SEED:-1}"
# writer_start FILE LOG: ackwriter through the mount (buffered, fsync after
# every write), until writer_stop.
writer_start() {
	timeout -k 5 "$CMD_TIMEOUT" "$PYTHON" "$ACKW" write "$1" "$2" --seed "$WRITER_SEED" \
		--max-seconds 60 >>"$2.out" 2>&1 &
	WRITER_PID=$!
	WRITER_SEED=$((WRITER_SEED + 1))
}

# writer_stop: stop the writer; what it logged as acknowledged stands.
writer_stop() {
	[[ -n "$WRITER_PID" ]] || return 0
	kill -TERM "$WRITER_PID" 2>/dev/null || true
	wait_pid_exit "$WRITER_PID" 10 || kill -KILL "$WRITER_PID" 2>/dev/null || true
	wait "$WRITER_PID" 2>/dev/null || true
	WRITER_PID=
}

# verify_data DIR LOG WHAT: every acknowledged write is in DIR/img.raw and
# the static files are the expected ones (EXPECTED, a static_listing).
verify_data() {
	local out
	out="$(run "$PYTHON" "$ACKW" verify "$1/img.raw" "$2" 2>&1)" || fail "$3: img.raw:"$'\n'"$out"
	out="$(diff <(printf '%s\n' "$EXPECTED") <(static_listing "$1"))" ||
		fail "$3: the tree differs from the expected one (< expected, > found):"$'\n'"$out"
}

# --- daemons ----------------------------------------------------------------

# kill9 MNT: SIGKILL the daemon of MNT, detach the dead mount.
kill9() {
	local mnt pid
	mnt="$(realpath "$1")"
	pid="${MFS_PID[$mnt]}"
	kill -KILL "$pid" 2>/dev/null || true
	wait_pid_exit "$pid" 10 || fail "the daemon survived SIGKILL"
	{ wait "$pid"; } 2>/dev/null || true
	check_sanitizer_log "${MFS_LOG[$mnt]}" || fail "sanitizer report before the kill"
	unset 'MFS_PID[$mnt]' 'MFS_LOG[$mnt]'
	fusermount3 -u "$mnt" 2>/dev/null || umount -l "$mnt" || fail "cannot detach the dead mount"
}

# wait_daemon_gone MNT SECONDS: the daemon of MNT died by itself (a crash
# point); detach the dead mount.  Prints the daemon's log file.
wait_daemon_gone() {
	local mnt pid logf
	mnt="$(realpath "$1")"
	pid="${MFS_PID[$mnt]}"
	logf="${MFS_LOG[$mnt]}"
	wait_pid_exit "$pid" "$2" || fail "the daemon is still alive ${2}s later:"$'\n'"$(cat "$logf")"
	wait "$pid" 2>/dev/null || true
	unset 'MFS_PID[$mnt]' 'MFS_LOG[$mnt]'
	fusermount3 -u "$mnt" 2>/dev/null || umount -l "$mnt" || fail "cannot detach the dead mount"
	printf '%s\n' "$logf"
}

# end_state MNT SECONDS: wait until the migration is over (switched,
# failed, cancelled, or idle for one never started); print the state.
end_state() {
	local mnt="$1" deadline=$((SECONDS + $2)) state
	while :; do
		pid_alive "${MFS_PID[$(realpath "$mnt")]}" ||
			fail "the daemon died:"$'\n'"$(cat "$(daemon_log "$mnt")")"
		state="$(status_field "$mnt" state)"
		case "$state" in
		switched | failed | cancelled | idle)
			printf '%s\n' "$state"
			return
			;;
		esac
		((SECONDS < deadline)) ||
			fail "migration still '$state' after ${2}s:"$'\n'"$(cat "$(daemon_log "$mnt")")"
		sleep 0.05
	done
}

# --- the invariant ----------------------------------------------------------

# check_side MNT FROM TO LOG: which side is authoritative, checked whole.
# Prints "source" or "target"; fails the case if it is neither.
#   source: the mount serves FROM, FROM's journal does not say switched,
#           the data and tree are whole through the mount and in FROM;
#   target: the mount serves TO, FROM's journal says switched to TO, the
#           data and tree are whole through the mount and in TO.
check_side() {
	local mnt="$1" from="$2" to="$3" log="$4" served jstate jtarget
	served="$(status_field "$mnt" served)"
	jstate="$(journal_state "$from")"
	jtarget="$(journal_field "$from" target)"
	if [[ "$served" == "$from" && "$jstate" != switched ]]; then
		verify_data "$mnt" "$log" "source side, through the mount"
		verify_data "$from" "$log" "source side, in the source '$from'"
		echo source
	elif [[ "$served" == "$to" && "$jstate" == switched && "$jtarget" == "$to" ]]; then
		verify_data "$mnt" "$log" "target side, through the mount"
		verify_data "$to" "$log" "target side, in the target '$to'"
		echo target
	else
		fail "neither side is authoritative: the mount serves '$served', the source's journal says '${jstate:-nothing}' (target '${jtarget}')"
	fi
}

# check_restart ROOT MNT SIDE FROM TO LOG: kill -9 the daemon, start it
# again with the same command line (mirrorfs ROOT MNT), and check that it
# serves SIDE (source: FROM, target: TO) with the same complete data.
check_restart() {
	local root="$1" mnt="$2" side="$3" from="$4" to="$5" log="$6" want served
	kill9 "$mnt"
	mount_mfs "$root" "$mnt"
	want="$from"
	[[ "$side" == source ]] || want="$to"
	served="$(status_field "$mnt" served)"
	[[ "$served" == "$want" ]] ||
		fail "after kill -9 and a restart the mount serves '$served', not the $side '$want' it served before (journals: $root: '$(journal_state "$root")', $from: '$(journal_state "$from")', $to: '$(journal_state "$to")')"
	verify_data "$mnt" "$log" "after kill -9 and a restart, through the mount"
}

# --- cases ------------------------------------------------------------------

CASE_FAILED=()
CASE_PASSED=0

# run_case NAME FUNCTION ARGS...: FUNCTION in a subshell; a failure there
# is recorded and the test goes on with the next case.
run_case() {
	local name="$1" rc=0 t0=$SECONDS
	shift
	# Not "( ... ) || rc=$?": bash ignores set -e in a tested subshell.
	set +e
	(
		# Case-local cleanup: lib.sh's EXIT trap belongs to the parent.
		trap 'case_cleanup' EXIT
		set -e
		"$@"
	) 2>"$TESTDIR/case.err"
	rc=$?
	set -e
	if ((rc == 0)); then
		CASE_PASSED=$((CASE_PASSED + 1))
		[[ -z "${CASE_VERBOSE:-}" ]] || log "case $name: ok ($((SECONDS - t0))s)"
	else
		CASE_FAILED+=("$name")
		log "case $name: FAILED ($((SECONDS - t0))s):"
		sed 's/^/    /' "$TESTDIR/case.err" | head -n "${CASE_LOG_LINES:-40}" >&2
		if [[ "${KEEP_GOING:-1}" == 0 ]]; then
			exit 1
		fi
	fi
}

case_cleanup() {
	local rc=$? mnt pid
	set +e
	cd /
	writer_stop
	while read -r mnt; do
		force_unmount "$mnt" 2>/dev/null
	done < <(mirrorfs_mounts "$TESTDIR" | sort -r)
	for mnt in "${!MFS_PID[@]}"; do
		pid="${MFS_PID[$mnt]}"
		wait_pid_exit "$pid" 5 || kill -KILL "$pid" 2>/dev/null
		wait_pid_exit "$pid" 5
		wait "$pid" 2>/dev/null
	done
	# A passed case's files are of no more use; 80 cases would fill a disk.
	if ((rc == 0)) && [[ -n "${CASE_DIR:-}" ]] && ! mounts_under "$CASE_DIR"; then
		rm -rf --one-file-system -- "$CASE_DIR"
	fi
	exit "$rc"
}

# cases_summary: the verdict of the test.
cases_summary() {
	log "${CASE_PASSED} cases passed, ${#CASE_FAILED[@]} failed${CASE_FAILED[*]:+: ${CASE_FAILED[*]}}"
	((${#CASE_FAILED[@]} == 0))
}
