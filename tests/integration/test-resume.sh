#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# A restarted migration resumes from its checkpoints (issue 22), through
# real mounts, with a guest (ackwriter.py, fsync after every write)
# writing through the mount all along:
#
#   half    the daemon kills itself half-way through a mirrored write
#           (MIRRORFS_TEST_CRASH_AT=mirror-half: on the source, not yet
#           on the target) while all is mirrored and checkpointed.  The
#           restart (same command line) must copy that range again, as the
#           intent log says, and nothing else: source and target are then
#           identical.  Fails without the intent log's recopy: the target
#           keeps the older block.
#   kills   kill -9 at four random points of a speed-limited copy of
#           ~190 MiB; each restart resumes from the checkpoints, and the
#           final copy is identical to the source and holds every
#           acknowledged write, before and after the switch.  Before two
#           of the kills the copier is paused (the guest writes on), so
#           that what it had copied is known exactly: the restart must
#           copy again at most one checkpoint interval and a chunk of it,
#           and keep the operator's pause (the same command line starts
#           the job paused, until resumed).  Prints what each restart
#           copied again.
#   job     a migration started over the control socket (mirrorfsctl start
#           --speed --switch manual --checkpoint), its speed changed by
#           the operator, then kill -9 during the copy: the daemon started
#           again without any migration option resumes it by itself, from
#           its checkpoints, with the operator's last speed, the manual
#           switch (it stays mirrored until asked) and the pause made just
#           before the kill; resumed, a switch then completes and holds
#           every acknowledged write.  Without the source's
#           record of the job the restart would serve and copy nothing.

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
. "$(dirname "${BASH_SOURCE[0]}")/lib-migration.sh"
. "$(dirname "${BASH_SOURCE[0]}")/lib-control.sh"
. "$(dirname "${BASH_SOURCE[0]}")/lib-fault.sh"
. "$(dirname "${BASH_SOURCE[0]}")/lib-invariant.sh"
require_cmd cmp
cd "$TESTDIR"

MiB=$((1024 * 1024))

# progress MNT [KEY]: the bytes below every file's cursor (KEY: their sizes), summed.
progress() {
	status_json "$1" | "$PYTHON" -c 'import json, sys
print(sum(f[sys.argv[1]] for f in json.load(sys.stdin)["files"]))' "${2:-cp_offset}"
}

# same_trees A B WHAT: every regular file of A is byte for byte in B.
same_trees() {
	local f
	while IFS= read -r -d '' f; do
		cmp -s -- "$1/$f" "$2/$f" || fail "$3: '$f' differs between '$1' and '$2'"
	done < <(cd "$1" && find . -type f ! -name '.mirrorfs-journal*' -printf '%P\0')
}

setup_case() {
	CASE_DIR="$TESTDIR/$1"
	SRC="$CASE_DIR/src" DST="$CASE_DIR/dst" MNT="$CASE_DIR/mnt" LOG="$CASE_DIR/img.log"
	mkdir -p "$SRC" "$DST" "$MNT"
	: >"$LOG"
	IMG_BLOCKS="$2" make_tree "$SRC"
	if (($3)); then
		head -c $(($3 * MiB)) /dev/urandom >"$SRC/big.raw"
	fi
	EXPECTED="$(static_listing "$SRC")"
}

section_half() {
	local opts logf copied resumed size
	setup_case half 4096 0
	opts="target=$DST,switch=manual,checkpoint=1M"
	MIRRORFS_TEST_CRASH_AT=mirror-half:40 mount_mfs "$SRC" "$MNT" -o "$opts"
	wait_status_state "$MNT" mirrored 60
	writer_start "$MNT/img.raw" "$LOG"
	logf="$(wait_daemon_gone "$MNT" 60)"
	writer_stop
	grep -q "test: crash at mirror-half" "$logf" ||
		fail "the daemon did not die half-way through a mirrored write:"$'\n'"$(cat "$logf")"
	# What the kill left: the source has the write, the target not yet.
	! cmp -s "$SRC/img.raw" "$DST/img.raw" ||
		fail "source and target are the same after the kill: no write was cut in half"

	mount_mfs "$SRC" "$MNT" -o "$opts"
	wait_status_state "$MNT" mirrored 60
	resumed="$(status_field "$MNT" bytes_resumed)"
	copied="$(status_field "$MNT" bytes_copied)"
	size="$(($(stat -c %s "$SRC/img.raw") + $(stat -c %s "$SRC/static.raw") + $(stat -c %s "$SRC/conf/vm.conf")))"
	log "half: resumed ${resumed} of ${size} bytes, copied ${copied} again"
	assert_eq "$size" "$resumed" "bytes resumed: every file was mirrored and checkpointed"
	((copied <= 64 * 1024)) || fail "the restart copied $copied bytes again, not just the write in flight"
	same_trees "$SRC" "$DST" "after the restart, mirrored"
	verify_data "$DST" "$LOG" "the target after the restart"
	ctl "$MNT" switch
	wait_switched "$SRC" "$MNT" 60
	verify_data "$MNT" "$LOG" "after the switch, through the mount"
	umount_mfs "$MNT"
}

section_kills() {
	local interval=8 chunk=12 opts i p want got before again total report=()
	setup_case kills 8192 160
	opts="target=$DST,switch=manual,checkpoint=${interval}M,speed=24M"
	mount_mfs "$SRC" "$MNT" -o "$opts"
	writer_start "$MNT/img.raw" "$LOG"
	total="$(progress "$MNT" size)"
	for i in 1 2 3 4; do
		# A point of the copy, at random: 10 % to 40 % of what is left.
		p=$((10 + RANDOM % 31))
		want=$(($(progress "$MNT") + (total - $(progress "$MNT")) * p / 100))
		# The copy may end between a look and the pause (the copier keeps
		# several chunks in flight): later kills then have nothing to
		# resume, and are skipped; the first one never is.
		until (($(progress "$MNT") >= want)); do
			[[ "$(status_field "$MNT" state)" == copying ]] || break
			sleep 0.05
		done
		if [[ "$(status_field "$MNT" state)" != copying ]]; then
			((i > 1)) || fail "the copy ended before the first kill at ${p}%"
			log "the copy ended before kill $i; kills $i to 4 skipped"
			break
		fi
		if ((i % 2 == 0)); then
			# Paused: the copier stands still, what it copied is known.
			cli "$MIRRORFSCTL" "$MNT" pause
			if ((CLI_RC != 0)) && [[ "$CLI_ERR" == *"while the migration is mirrored"* ]]; then
				log "the copy ended before the pause of kill $i; kills $i to 4 skipped"
				break
			fi
			((CLI_RC == 0)) || fail "mirrorfsctl pause: exit $CLI_RC: $CLI_ERR"
			before=-1
			until [[ "$before" == "$(progress "$MNT")" ]]; do
				before="$(progress "$MNT")"
				sleep 0.2
			done
		fi
		before="$(progress "$MNT")"
		kill9 "$MNT"
		writer_stop
		mount_mfs "$SRC" "$MNT" -o "$opts"
		writer_start "$MNT/img.raw" "$LOG"
		if ((i % 2 == 0)); then
			# The pause was the operator's: the restart keeps it.
			assert_eq paused "$(status_field "$MNT" state)" "kill $i: the job paused before it"
			ctl "$MNT" resume
		fi
		got="$(status_field "$MNT" bytes_resumed)"
		((got > 0)) || fail "kill $i: the restart resumed nothing"
		again=$((before > got ? before - got : 0))
		report+=("kill $i at $((before / MiB)) MiB$( ((i % 2)) || echo ", paused"): resumed $((got / MiB)) MiB, $((again / 1024)) KiB copied again")
		((again <= (interval + chunk) * MiB)) ||
			fail "kill $i: the restart copies $again bytes again, more than a checkpoint interval and a chunk"
	done
	wait_status_state "$MNT" mirrored 120
	writer_stop
	printf '  %s\n' "${report[@]}" >&2
	same_trees "$SRC" "$DST" "mirrored after the kills"
	verify_data "$SRC" "$LOG" "the source"
	verify_data "$DST" "$LOG" "the target"
	ctl "$MNT" switch
	wait_switched "$SRC" "$MNT" 60
	verify_data "$MNT" "$LOG" "after the switch, through the mount"
	[[ ! -e "$DST/.mirrorfs-journal.checkpoints" && ! -e "$DST/.mirrorfs-journal.intents" ]] ||
		fail "the switch left the copy's checkpoints in the target"
	umount_mfs "$MNT"
}

section_job() {
	local resumed
	setup_case job 8192 64
	mount_mfs "$SRC" "$MNT"
	writer_start "$MNT/img.raw" "$LOG"
	ctl "$MNT" start "$DST" --speed 16M --switch manual --checkpoint 4M
	ctl "$MNT" speed 12M
	until (($(progress "$MNT") >= 24 * MiB)); do
		[[ "$(status_field "$MNT" state)" == copying ]] || fail "the copy ended before the kill"
		sleep 0.05
	done
	ctl "$MNT" pause
	kill9 "$MNT"
	writer_stop
	assert_eq migrating "$(journal_state "$SRC")" "the source's record of the job"

	mount_mfs "$SRC" "$MNT"
	writer_start "$MNT/img.raw" "$LOG"
	assert_contains "$(cat "$(daemon_log "$MNT")")" "resuming the migration recorded" "daemon log"
	assert_eq "$DST" "$(status_path "$MNT" target)" "the resumed job's target"
	assert_eq $((12 * MiB)) "$(status_field "$MNT" speed_bps)" "the resumed job's speed"
	assert_eq paused "$(status_field "$MNT" state)" "the resumed job, paused before the kill"
	assert_contains "$(cat "$(daemon_log "$MNT")")" "paused, as it was left" "daemon log"
	resumed="$(status_field "$MNT" bytes_resumed)"
	((resumed >= 16 * MiB)) || fail "the resumed job trusts only $resumed bytes of its copy"
	log "job: resumed with $((resumed / MiB)) MiB of the copy trusted"
	ctl "$MNT" resume
	ctl "$MNT" speed 0
	wait_status_state "$MNT" mirrored 120
	# switch=manual came back with the job: it waits for the operator.
	sleep 1
	assert_eq mirrored "$(status_field "$MNT" state)" "the resumed manual-switch job, unasked"
	writer_stop
	same_trees "$SRC" "$DST" "the resumed job, mirrored"
	ctl "$MNT" switch
	wait_switched "$SRC" "$MNT" 60
	verify_data "$MNT" "$LOG" "after the resumed job's switch, through the mount"
	verify_data "$DST" "$LOG" "the target after the resumed job's switch"
	umount_mfs "$MNT"
}

section_half
section_kills
section_job
log "ok"
