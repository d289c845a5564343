#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# The copier rests for a busy guest, through the real mount: after each
# chunk copied while the guest read or changed a file, it rests for the
# guest's share of the time.  A 64 MiB image, 1 MiB chunks; each
# migration (manual switch) is watched to "mirrored", its rested_ms read,
# then cancelled:
#
#   - an idle guest, share 50 %: no rest;
#   - a guest that only reads (fio, O_DIRECT random reads), 50 %: rests;
#     reads pass no MirrorFile, so they are counted apart;
#   - the same reader at a share of 0: no rest;
#   - a guest that writes, 50 %: rests.

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
. "$(dirname "${BASH_SOURCE[0]}")/lib-migration.sh"
. "$(dirname "${BASH_SOURCE[0]}")/lib-control.sh"
require_cmd fio
cd "$TESTDIR"

SRC="$TESTDIR/src"
MNT="$TESTDIR/mnt"
mkdir -p "$SRC" "$MNT"
head -c $((64 * 1024 * 1024)) /dev/urandom >"$SRC/disk.raw"
mount_mfs "$SRC" "$MNT"

# guest_start RW: fio doing 4 KiB O_DIRECT RW (randread, randwrite) on the
# image through the mount until guest_stop; sets GUEST_PID.
guest_start() {
	(exec timeout -k 5 "$CMD_TIMEOUT" fio --name=guest --filename="$MNT/disk.raw" --rw="$1" \
		--bs=4k --direct=1 --ioengine=psync --size=64M --time_based --runtime=600 \
		--output="$TESTDIR/guest-$1.out") >/dev/null 2>&1 &
	GUEST_PID=$!
	track_bg "$GUEST_PID"
	sleep 1
	pid_alive "$GUEST_PID" || fail "fio $1 did not start: $(cat "$TESTDIR/guest-$1.out")"
}

guest_stop() {
	kill "$GUEST_PID" 2>/dev/null
	wait_pid_exit "$GUEST_PID" 30 || fail "fio still running after SIGTERM"
	wait "$GUEST_PID" 2>/dev/null || true
}

# migrate_and_check NAME SHARE WANT: migrate to a fresh target at guest
# share SHARE, and once mirrored check that the copier rested ("some") or
# did not ("none"); then cancel.
migrate_and_check() {
	local dst="$TESTDIR/dst-$1" rested
	mkdir "$dst"
	ctl "$MNT" start "$dst" --chunk 1M --switch manual --guest-share "$2"
	wait_status_state "$MNT" mirrored 120
	status_json "$MNT" "$TESTDIR/status-$1.json"
	assert_eq "$2" "$(json_field guest_share "$TESTDIR/status-$1.json")" "guest_share of $1"
	rested="$(json_field rested_ms "$TESTDIR/status-$1.json")"
	log "$1: guest share $2 %, the copier rested $rested ms"
	"$PYTHON" -c 'import sys; r = float(sys.argv[1]); sys.exit(not (r == 0 if sys.argv[2] == "none" else r > 0))' \
		"$rested" "$3" || fail "$1: the copier rested $rested ms, expected $3"
	ctl "$MNT" cancel
	wait_status_state "$MNT" cancelled 60
}

migrate_and_check idle 50 none

guest_start randread
migrate_and_check reader 50 some
migrate_and_check reader-share0 0 none
guest_stop

guest_start randwrite
migrate_and_check writer 50 some
guest_stop

umount_mfs "$MNT"
exit 0
