#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# The control socket under hostile traffic, while a migration runs and fio
# writes (with crc32c verification) to an image through the mount.
#
# fuzz-control.py throws random bytes, random-length lines, truncated JSON,
# lines over 64 KiB, NUL bytes, deeply nested JSON, valid JSON of the wrong
# types, unknown commands, silent and half-line clients and more than 64
# clients at once at the socket, and checks every answer (see its header).
# It never sends a command that would change the migration.
#
# Then: the daemon still answers, its settings are untouched, the migration
# reaches switched, fio's verification passes (during the migration, and
# again afterwards from the target, through the mount and directly), and
# the files read through the mount are those in the target directory.
#
# FUZZ_SEED=N repeats a run.

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
. "$(dirname "${BASH_SOURCE[0]}")/lib-control.sh"
require_cmd fio

MiB=$((1024 * 1024))
SRC="$TESTDIR/src"
MNT="$TESTDIR/mnt"
DST="$TESTDIR/dst"
mkdir "$SRC" "$MNT" "$DST"

# 80 MiB at 4 MiB/s: the copy lasts about 20 s, longer than the barrage.
head -c $((64 * MiB)) /dev/urandom >"$SRC/bulk.raw"
head -c $((16 * MiB)) /dev/urandom >"$SRC/disk.raw"

# A fio job that rewrites disk.raw at a bounded rate while the copy runs
# (about 10 s of writes), then verifies what it wrote.  The same options
# with --verify_only check it again later.
# shellcheck disable=SC2054 # --rate=,1536k: no read limit, 1536k for writes
FIO_JOB=(--name=fuzz-disk --size=16M --rw=randwrite --bsrange=4k-64k --ioengine=psync
	--direct=1 --verify=crc32c --verify_fatal=1 --verify_state_save=0 --rate=,1536k)

mount_mfs "$SRC" "$MNT" -o "target=$DST,speed=4M"
SOCK="$(control_socket "$MNT")"
[[ -S "$SOCK" ]] || fail "no control socket at '$SOCK'"
assert_eq copying "$(status_field "$MNT" state)" "state at the start"

(cd "$TESTDIR" && exec timeout -k 5 "$CMD_TIMEOUT" fio --filename="$MNT/disk.raw" "${FIO_JOB[@]}" \
	--do_verify=1 --output-format=json --output="$TESTDIR/fio.json") >"$TESTDIR/fio.err" 2>&1 &
FIO_PID=$!
track_bg "$FIO_PID"
sleep 1

# --- the barrage --------------------------------------------------------------

T0=$SECONDS
rc=0
timeout -k 5 180 "$PYTHON" "$CONTROL_LIB_DIR/fuzz-control.py" "$SOCK" --budget 6 \
	--status-cli "$MIRRORFS_STATUS" ${FUZZ_SEED:+--seed "$FUZZ_SEED"} >"$TESTDIR/fuzz.out" 2>&1 || rc=$?
cat "$TESTDIR/fuzz.out" >&2
((rc != 124 && rc != 137)) || fail "fuzz-control.py did not finish in 180 s"
FUZZ_RC=$rc
log "barrage: $((SECONDS - T0)) s, exit $FUZZ_RC; migration now $(status_field "$MNT" state)"

# --- the daemon and the migration after it ------------------------------------

pid_alive "${MFS_PID[$MNT]}" || fail "the daemon died:"$'\n'"$(cat "${MFS_LOG[$MNT]}")"
expect_cli "status after the barrage" 0 "mirrorfs on $MNT" "$MIRRORFS_STATUS" "$MNT"
status_json "$MNT" "$TESTDIR/s-after.json"
validate_status "$TESTDIR/s-after.json" --mountpoint "$MNT" --source "$SRC" --target "$DST"
state="$(json_field state "$TESTDIR/s-after.json")"
[[ "$state" == copying || "$state" == mirrored || "$state" == switching || "$state" == switched ]] ||
	fail "after the barrage the migration is $state"
# Nothing the fuzz sent changed the copier's limit.
assert_eq $((4 * MiB)) "$(json_field speed_bps "$TESTDIR/s-after.json")" "speed_bps after the barrage"

CLI_TIMEOUT=130 expect_cli "--wait switched" 0 "" "$MIRRORFS_STATUS" --wait switched --timeout 120 "$MNT"
log "switched $((SECONDS - T0)) s after the barrage began"
status_json "$MNT" "$TESTDIR/s-switched.json"
validate_status "$TESTDIR/s-switched.json" --state switched --served "$DST"

rc=0
wait_pid_exit "$FIO_PID" "$CMD_TIMEOUT" || fail "fio still running"
wait "$FIO_PID" || rc=$?
((rc == 0)) || fail "fio (writes during the migration, then verify) exited $rc:"$'\n'"$(cat "$TESTDIR/fio.err" "$TESTDIR/fio.json")"
"$PYTHON" - "$TESTDIR/fio.json" <<-'EOF' || fail "fio report"
import json, sys
text = open(sys.argv[1]).read()
job = json.loads(text[text.index("{"):])["jobs"][0]
if job["error"]:
    sys.exit(f"fio job error {job['error']}")
if job["write"]["io_bytes"] < 16 * 1024 * 1024:
    sys.exit(f"fio wrote only {job['write']['io_bytes']} bytes")
if job["read"]["io_bytes"] < 16 * 1024 * 1024:
    sys.exit(f"fio verified only {job['read']['io_bytes']} bytes")
EOF

# What fio wrote, verified again: through the mount (now the target) and
# straight from the target directory.
for f in "$MNT/disk.raw" "$DST/disk.raw"; do
	rc=0
	(cd "$TESTDIR" && exec timeout -k 5 "$CMD_TIMEOUT" fio --filename="$f" "${FIO_JOB[@]}" \
		--verify_only --output-format=json --output="$TESTDIR/fio-verify.json") \
		>"$TESTDIR/fio-verify.err" 2>&1 || rc=$?
	((rc == 0)) || fail "fio --verify_only on $f exited $rc:"$'\n'"$(cat "$TESTDIR/fio-verify.err" "$TESTDIR/fio-verify.json")"
done

assert_file_eq "$MNT/disk.raw" "$DST/disk.raw"
assert_file_eq "$MNT/bulk.raw" "$DST/bulk.raw"
assert_file_eq "$SRC/bulk.raw" "$DST/bulk.raw"

umount_mfs "$MNT"
((FUZZ_RC == 0)) || fail "fuzz-control.py found problems (FAIL lines above)"
! mounts_under "$TESTDIR" || fail "a mirrorfs mount was left under $TESTDIR"
exit 0
