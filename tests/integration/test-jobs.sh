#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Several per-VM jobs at once on one mount (issue 21): each moves its own
# entries into its own target, and each is paused, throttled, switched or
# cancelled alone, named by its number or its target (--job).
#
#   refused   with two jobs running: a third on an entry the first moves,
#             a third into the first's target or inside it, a job of the
#             whole tree; a request that names no job while two run, one
#             that names a job that is not there: one line each, nothing
#             changes
#   alone     pausing job 1 leaves job 2 copying; job 2 switches (by
#             hand) while job 1 is paused: vm2 is served from its target,
#             vm1 still mirrored (a write reaches both sides), vm3 never
#             moves; a rename from vm1/ into vm2/ is refused (EXDEV) while
#             job 1 runs; job 1, resumed and switched, lands in its own
#             target; each job's writes made all along read back
#   cancel    job 3 cancelled while job 4 copies: job 3's target is
#             emptied, vm3 stays on the source, job 4 switches
#   restart   two jobs stopped with the daemon (unmount) each leave their
#             own record in the source; the next mount resumes both, and
#             both switch, each into its target
#   adopt     two VMs running before the mount (qemu-storage-daemons):
#             vmA adopted and its job started (switch=manual); vmB,
#             beside the mount all along, adopted while vmA's job runs,
#             then moved by a second job that releases it by itself
#             (start --release-qmp waits for its own job's switch, not
#             vmA's); vmA's job switched and released; the mount
#             unmounts with both QEMUs on their targets, every write read
#             back
#   status    every status read along the way holds the specification
#             (status-schema.py), with "jobs" listing each job; --job
#             picks one in mirrorfs-status; --follow --job prints that
#             job's events only

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
. "$(dirname "${BASH_SOURCE[0]}")/lib-migration.sh"
. "$(dirname "${BASH_SOURCE[0]}")/lib-control.sh"
. "$(dirname "${BASH_SOURCE[0]}")/lib-qsd.sh"
require_cmd md5sum qemu-storage-daemon qemu-io

SRC="$TESTDIR/src"
T1="$TESTDIR/t1"
T2="$TESTDIR/t2"
T3="$TESTDIR/t3"
MNT="$TESTDIR/mnt"
mkdir "$SRC" "$T1" "$T2" "$T3" "$MNT" "$SRC/vm1" "$SRC/vm2"
head -c $((16 << 20)) /dev/urandom >"$SRC/vm1.raw"
head -c $((16 << 20)) /dev/urandom >"$SRC/vm2.raw"
head -c $((4 << 20)) /dev/urandom >"$SRC/vm3.raw"
echo one >"$SRC/vm1/conf"
echo two >"$SRC/vm2/conf"

# job_field MNT JOB FIELD: a member of job JOB's status (mirrorfs-status --job).
job_field() {
	local f="$TESTDIR/job-field.json"
	cli "$MIRRORFS_STATUS" --json --job "$2" "$1"
	((CLI_RC == 0)) || fail "mirrorfs-status --json --job $2: exit $CLI_RC: $CLI_ERR"
	printf '%s\n' "$CLI_OUT" >"$f"
	json_field "$3" "$f"
}
wait_job_state() {
	local deadline=$((SECONDS + ${4:-60})) state
	while :; do
		state="$(job_field "$1" "$2" state)"
		[[ "$state" != "$3" ]] || return 0
		((SECONDS < deadline)) || fail "job $2: state '$state' after ${4:-60}s, expected '$3'"
		sleep 0.1
	done
}
check_status() {
	status_json "$MNT" "$TESTDIR/st.json"
	validate_status "$TESTDIR/st.json"
}
jobs_listed() {
	status_json "$MNT" "$TESTDIR/st.json"
	"$PYTHON" -c 'import json, sys
st = json.load(open(sys.argv[1]))
print(" ".join("%d:%s" % (j["job"], j["state"]) for j in st["jobs"]))' "$TESTDIR/st.json"
}

log "two jobs start, each on its entries, into its own target"
mount_mfs "$SRC" "$MNT"
expect_cli "start job 1" 0 "migration started: job 1" \
	"$MIRRORFSCTL" "$MNT" start "$T1" --only vm1.raw --only vm1 --speed 2M --switch manual
# Known to the mount (open, and looked up) before job 2 starts: job 2's
# start must leave this file's mirror, job 1's, in place.
exec 7<>"$MNT/vm1.raw"
write_at "$MNT/vm1.raw" 8192 "vm1-before-2"
expect_cli "start job 2" 0 "migration started: job 2" \
	"$MIRRORFSCTL" "$MNT" start "$T2" --only vm2.raw --only vm2 --speed 2M --switch manual
check_status
assert_eq "1:copying 2:copying" "$(jobs_listed)" "the jobs listed"
assert_eq '["vm1.raw", "vm1"]' "$(job_field "$MNT" 1 only)" "job 1's entries"
assert_eq "$T2" "$(job_field "$MNT" "$T2" target)" "job 2 named by its target"

log "refused: what would share an entry or a target, a whole-tree job, a request naming no job"
expect_cli "an entry job 1 moves" 1 "'vm1.raw' is being moved already, by job 1 (to '$T1')" \
	"$MIRRORFSCTL" "$MNT" start "$T3" --only vm3.raw --only vm1.raw
expect_cli "job 1's target" 1 "job 1 moves into '$T1': each job needs a target of its own" \
	"$MIRRORFSCTL" "$MNT" start "$T1" --only vm3.raw
mkdir "$T1/inner"
expect_cli "inside job 1's target" 1 "each job needs a target of its own" \
	"$MIRRORFSCTL" "$MNT" start "$T1/inner" --only vm3.raw
rmdir "$T1/inner"
expect_cli "a whole-tree job" 1 "is already running (job 1): a migration of the whole tree runs alone; several run at once only with 'only'" \
	"$MIRRORFSCTL" "$MNT" start "$T3"
expect_cli "pause naming no job" 1 "several migrations run (job 1 to '$T1', job 2 to '$T2'): name one with --job" \
	"$MIRRORFSCTL" "$MNT" pause
expect_cli "a job that is not there" 1 "no job '7'" "$MIRRORFSCTL" "$MNT" pause --job 7
expect_cli "--job with start" 2 "--job goes with" "$MIRRORFSCTL" "$MNT" start "$T3" --job 1
expect_cli "--job -1" 2 "--job: '-1' is neither a job's number" "$MIRRORFSCTL" "$MNT" pause --job -1
expect_cli "--job 0" 2 "--job: '0' is neither a job's number" "$MIRRORFSCTL" "$MNT" pause --job 0
mkdir "$TESTDIR/bind"
mount --bind "$TESTDIR" "$TESTDIR/bind"
track_mount "$TESTDIR/bind"
expect_cli "a bind mount above job 1's target" 1 "job 1 moves into '$T1': each job needs a target of its own" \
	"$MIRRORFSCTL" "$MNT" start "$TESTDIR/bind" --only vm3.raw
umount "$TESTDIR/bind"
[[ -z "$(ls -A "$T3")" ]] || fail "a refused start left something in $T3: $(ls -A "$T3")"
assert_eq "1:copying 2:copying" "$(jobs_listed)" "the jobs after the refusals"

log "numbers: refused starts take none; an ended job keeps its own and is followed to its end"
expect_cli "start after the refusals" 0 "migration started: job 3" \
	"$MIRRORFSCTL" "$MNT" start "$T3" --only vm3.raw --speed 1M
ctl "$MNT" cancel --job 3
wait_job_state "$MNT" 3 cancelled 60
cli "$MIRRORFS_STATUS" --follow --job 3 --timeout 20 "$MNT"
assert_eq 1 "$CLI_RC" "mirrorfs-status --follow --job of a cancelled job: its exit status"
[[ "$CLI_ERR" != *"timed out"* ]] || fail "--follow --job of an ended job waited for more: $CLI_ERR"
assert_contains "$CLI_OUT" '"job":3' "the follower's line"
assert_contains "$CLI_OUT" '"state":"cancelled"' "the follower's line"
assert_eq "1:copying 2:copying 3:cancelled" "$(jobs_listed)" "the jobs after job 3's cancel"

log "alone: job 1 paused, job 2 copies on and switches; vm1 stays mirrored"
ctl "$MNT" pause --job 1
assert_eq paused "$(job_field "$MNT" 1 state)" "job 1 after its pause"
ctl "$MNT" speed 0 --job "$T2"
assert_eq 0 "$(job_field "$MNT" 2 speed_bps)" "job 2's speed, set by its target"
assert_eq 2097152 "$(job_field "$MNT" 1 speed_bps)" "job 1's speed, unchanged"
write_at "$MNT/vm1.raw" 0 "vm1-early"
write_at "$MNT/vm2.raw" 0 "vm2-early"
wait_job_state "$MNT" 2 mirrored 60
assert_eq paused "$(job_field "$MNT" 1 state)" "job 1 while job 2 is mirrored"
expect_errno "a rename from vm1/ into vm2/" "Errno 18" \
	"$PYTHON" -c 'import os, sys; os.rename(sys.argv[1], sys.argv[2])' "$MNT/vm1/conf" "$MNT/vm2/conf1"
check_status
ctl "$MNT" switch --job 2
wait_job_state "$MNT" 2 switched 60
check_status
write_at "$MNT/vm2.raw" 4096 "vm2-after"
assert_eq vm2-after "$(read_at "$T2/vm2.raw" 4096 9)" "a write to vm2 after its switch, in its target"
[[ "$(read_at "$SRC/vm2.raw" 4096 9)" != vm2-after ]] || fail "a write to vm2 after its switch reached the source"
write_at "$MNT/vm1.raw" 0 "vm1-later"
assert_eq vm1-later "$(read_at "$SRC/vm1.raw" 0 9)" "a write to vm1 while job 1 is paused, in the source"
assert_eq vm1-later "$(read_at "$T1/vm1.raw" 0 9)" "a write to vm1 below job 1's cursor, in its target"
assert_eq paused "$(job_field "$MNT" 1 state)" "job 1 after job 2's switch"
ctl "$MNT" resume --job "$T1"
ctl "$MNT" speed 0 --job 1
wait_job_state "$MNT" 1 mirrored 60
ctl "$MNT" switch
wait_job_state "$MNT" 1 switched 60
check_status
assert_eq "$(md5 "$MNT/vm1.raw")" "$(md5 "$T1/vm1.raw")" "vm1.raw served from its target"
assert_eq "$(md5 "$MNT/vm2.raw")" "$(md5 "$T2/vm2.raw")" "vm2.raw served from its target"
assert_eq vm1-later "$(read_at "$MNT/vm1.raw" 0 9)" "vm1's writes"
assert_eq vm2-early "$(read_at "$MNT/vm2.raw" 0 9)" "vm2's writes"
[[ ! -e "$T1/vm2.raw" && ! -e "$T2/vm1.raw" && ! -e "$T1/vm3.raw" && ! -e "$T2/vm3.raw" ]] ||
	fail "a job moved another's entry: t1: $(ls "$T1"), t2: $(ls "$T2")"
assert_eq one "$(cat "$T1/vm1/conf")" "vm1/conf in job 1's target"
assert_eq two "$(cat "$T2/vm2/conf")" "vm2/conf in job 2's target"
assert_eq vm1-before-2 "$(read_at "$T1/vm1.raw" 8192 12)" "a write to vm1 before job 2 started"
exec 7<&-
umount_mfs "$MNT"

log "cancel: job 3 cancelled while job 4 copies"
mkdir "$SRC/vm4"
head -c $((8 << 20)) /dev/urandom >"$SRC/vm4/disk.raw"
T4="$TESTDIR/t4"
mkdir "$T4"
mount_mfs "$SRC" "$MNT"
expect_cli "start job 3" 0 "migration started: job 1" \
	"$MIRRORFSCTL" "$MNT" start "$T3" --only vm3.raw --speed 1M
expect_cli "start job 4" 0 "migration started: job 2" \
	"$MIRRORFSCTL" "$MNT" start "$T4" --only vm4 --speed 1M
exec 7<>"$MNT/vm4/disk.raw"
wait_field_above() { # until job 2 has copied something: a write at 0 is then below its cursor
	local deadline=$((SECONDS + 30))
	until (($(job_field "$MNT" 2 bytes_copied) > 0)); do
		((SECONDS < deadline)) || fail "job 2 copied nothing in 30 s"
		sleep 0.1
	done
}
wait_field_above
ctl "$MNT" cancel --job "$T3"
wait_job_state "$MNT" 1 cancelled 60
# Job 3's detach must leave job 4's mirrors: this write is below job 4's cursor.
write_at "$MNT/vm4/disk.raw" 0 "vm4-after-cancel"
exec 7<&-
[[ -z "$(ls -A "$T3")" ]] || fail "job 3's target after its cancel: $(ls -A "$T3")"
assert_eq copying "$(job_field "$MNT" 2 state)" "job 4 after job 3's cancel"
ctl "$MNT" speed 0
wait_job_state "$MNT" 2 switched 60
assert_eq "$(md5 "$SRC/vm4/disk.raw")" "$(md5 "$T4/vm4/disk.raw")" "vm4 in its target"
check_status
umount_mfs "$MNT"

log "restart: two jobs stopped with the daemon resume, both"
T5="$TESTDIR/t5"
T6="$TESTDIR/t6"
mkdir "$T5" "$T6" "$SRC/vm5" "$SRC/vm6"
head -c $((8 << 20)) /dev/urandom >"$SRC/vm5/disk.raw"
head -c $((8 << 20)) /dev/urandom >"$SRC/vm6/disk.raw"
SUM5="$(md5 "$SRC/vm5/disk.raw")"
SUM6="$(md5 "$SRC/vm6/disk.raw")"
mount_mfs "$SRC" "$MNT"
ctl "$MNT" start "$T5" --only vm5 --speed 1M --checkpoint 1M
ctl "$MNT" start "$T6" --only vm6 --speed 1M --checkpoint 1M
umount_mfs "$MNT"
assert_eq migrating "$(job_state "$SRC" "$T5")" "job 5's record after the stop"
assert_eq migrating "$(job_state "$SRC" "$T6")" "job 6's record after the stop"
mount_mfs "$SRC" "$MNT"
grep -q "resuming the 2 migrations recorded as under way" "$(daemon_log "$MNT")" ||
	fail "the restart did not say it resumes both: $(cat "$(daemon_log "$MNT")")"
ctl "$MNT" speed 0 --job "$T5"
ctl "$MNT" speed 0 --job "$T6"
wait_job_state "$MNT" "$T5" switched 60
wait_job_state "$MNT" "$T6" switched 60
assert_eq "$SUM5" "$(md5 "$MNT/vm5/disk.raw")" "vm5 after the resumed job"
assert_eq "$SUM6" "$(md5 "$T6/vm6/disk.raw")" "vm6 in its target after the resumed job"
[[ ! -e "$(job_record "$SRC" "$T5")" && ! -e "$(job_record "$SRC" "$T6")" ]] ||
	fail "a switched job's record is left: $(ls -a "$SRC")"

log "stale: a job that did not resume holds its entries until it is forgotten, and never stops the mount"
T9="$TESTDIR/t9"
mkdir "$T9" "$SRC/vm9"
head -c $((4 << 20)) /dev/urandom >"$SRC/vm9/disk.raw"
ctl "$MNT" start "$T9" --only vm9 --speed 1M
umount_mfs "$MNT"
mv "$T9" "$T9.away"
mount_mfs "$SRC" "$MNT"
grep -q "cannot resume: the migration to '$T9'" "$(daemon_log "$MNT")" ||
	fail "the restart did not name the job that cannot resume: $(cat "$(daemon_log "$MNT")")"
expect_cli "a start on the entries of a job that did not resume" 1 \
	"'vm9' is recorded as moving to '$T9', by a migration that did not resume (the daemon said why at its start): make it resume, or forget it first (mirrorfsctl MOUNTPOINT cancel --job $T9)" \
	"$MIRRORFSCTL" "$MNT" start "$T9.b" --only vm9
umount_mfs "$MNT"
# Two records of the same entries (a crash between two daemons could leave
# them): one resumes, the other is said, and the mount serves.
mv "$T9.away" "$T9"
mkdir "$T9.b"
sed "s|^target=.*|target=$T9.b|" "$(job_record "$SRC" "$T9")" >"$(job_record "$SRC" "$T9.b")"
mount_mfs "$SRC" "$MNT"
grep -q "is being moved already" "$(daemon_log "$MNT")" ||
	fail "the restart did not say which record stays: $(cat "$(daemon_log "$MNT")")"
assert_eq two "$(cat "$MNT/vm2/conf")" "the mount serves beside two records of one entry"
running="$(status_path "$MNT" target)" # which record resumed is readdir's choice
case "$running" in
"$T9") left="$T9.b" ;;
"$T9.b") left="$T9" ;;
*) fail "neither record of vm9 resumed: the status's target is '$running'" ;;
esac
ctl "$MNT" cancel --job "$left"
assert_contains "$CLI_OUT" "the recorded migration that did not resume is forgotten" "cancel --job of the record left"
[[ ! -e "$(job_record "$SRC" "$left")" ]] || fail "the record forgotten is still there"
ctl "$MNT" speed 0 --job "$running"
wait_job_state "$MNT" "$running" switched 60

log "wait: the job first found is the one waited for, whatever runs after it"
# A daemon that answers as the real one would once job 1 is cancelled
# and job 2 (switched long ago) is the newest: the wait must end in
# failure, not in job 2's switch.
"$PYTHON" - "$TESTDIR/fake.sock" <<-'PY' &
	import json, socket, sys
	s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
	s.bind(sys.argv[1])
	s.listen(8)
	first = True
	while True:
	    c, _ = s.accept()
	    req = json.loads(c.makefile().readline())
	    if req["command"] != "status":
	        rep = {"version": 1, "ok": False, "error": "not here"}
	    elif first:
	        rep = {"version": 1, "ok": True, "job": 1, "state": "copying", "error": None}
	        first = False
	    elif req.get("job") == 1:
	        rep = {"version": 1, "ok": True, "job": 1, "state": "cancelled", "error": None}
	    else:
	        rep = {"version": 1, "ok": True, "job": 2, "state": "switched", "error": None}
	    c.sendall((json.dumps(rep) + "\n").encode())
	    c.close()
PY
track_bg $!
for _ in $(seq 100); do [[ -S "$TESTDIR/fake.sock" ]] && break; sleep 0.05; done
cli "$MIRRORFS_STATUS" --socket "$TESTDIR/fake.sock" --wait switched --timeout 10 "$MNT"
assert_eq 1 "$CLI_RC" "--wait switched when the job found first is cancelled: exit status ($CLI_ERR)"
assert_contains "$CLI_ERR" "cancelled" "--wait's message"

log "status: --follow --job prints that job's events only"
T7="$TESTDIR/t7"
T8="$TESTDIR/t8"
mkdir "$T7" "$T8"
echo seven >"$SRC/vm7.raw"
echo eight >"$SRC/vm8.raw"
ctl "$MNT" start "$T7" --only vm7.raw --switch manual
ctl "$MNT" start "$T8" --only vm8.raw --switch manual
wait_job_state "$MNT" "$T7" mirrored 60
wait_job_state "$MNT" "$T8" mirrored 60
id7="$(job_field "$MNT" "$T7" job)"
"$MIRRORFS_STATUS" --follow --job "$T7" --timeout 60 "$MNT" >"$TESTDIR/follow.out" 2>&1 &
follower=$!
# The follower's first line says it follows: then the two switches.
deadline=$((SECONDS + 30))
until [[ -s "$TESTDIR/follow.out" ]]; do
	((SECONDS < deadline)) || fail "mirrorfs-status --follow printed nothing"
	sleep 0.05
done
ctl "$MNT" switch --job "$T8"
wait_job_state "$MNT" "$T8" switched 60
ctl "$MNT" switch --job "$T7"
wait "$follower" || fail "mirrorfs-status --follow --job: exit $?: $(cat "$TESTDIR/follow.out")"
"$PYTHON" - "$TESTDIR/follow.out" "$id7" <<'EOF' || fail "the events followed: $(cat "$TESTDIR/follow.out")"
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
want = int(sys.argv[2])
others = [e for e in lines[1:] if e.get("job") != want]
assert not others, "another job's events: %r" % others
assert lines[-1]["state"] == "switched", lines[-1]
EOF
check_status
umount_mfs "$MNT"

log "adopt: one VM adopted and moved while another's job runs"
DIR="$TESTDIR/vms"
TA="$TESTDIR/ta"
TB="$TESTDIR/tb"
mkdir "$DIR" "$TA" "$TB"
two_vms "$DIR" 8
mount_mfs "$DIR" "$DIR"
expect_cli "adopt vmA" 0 "adopted 1 file" "$MIRRORFSCTL" "$DIR" adopt --qmp "$TESTDIR/vmA.qmp"
ctl "$DIR" start "$TA" --only vmA.raw --switch manual
io vmA 'write -P 0x51 1M 1M'
io vmB 'write -P 0x52 1M 1M'
expect_cli "adopt vmB while vmA's job runs" 0 "adopted 1 file" \
	"$MIRRORFSCTL" "$DIR" adopt --qmp "$TESTDIR/vmB.qmp"
io vmB 'write -P 0x62 2M 1M'
ctl "$DIR" start "$TB" --only vmB.raw --release-qmp "$TESTDIR/vmB.qmp"
assert_contains "$CLI_OUT" "released 1 file of QEMU (pid ${QSD_PID[vmB]})" "start --only --release-qmp of vmB"
holds vmB "$TB/vmB.raw" || fail "vmB's QEMU does not hold $TB/vmB.raw: $(ls -l /proc/"${QSD_PID[vmB]}"/fd)"
assert_eq mirrored "$(job_field "$DIR" "$TA" state)" "vmA's job after vmB's moved"
io vmA 'write -P 0x61 2M 1M'
ctl "$DIR" switch --job "$TA"
wait_job_state "$DIR" "$TA" switched 60
expect_cli "release vmA" 0 "released 1 file" "$MIRRORFSCTL" "$DIR" release --qmp "$TESTDIR/vmA.qmp"
holds vmA "$TA/vmA.raw" || fail "vmA's QEMU does not hold $TA/vmA.raw: $(ls -l /proc/"${QSD_PID[vmA]}"/fd)"
umount_mfs "$DIR"
io vmA 'write -P 0x71 3M 1M'
io vmA 'read -P 0x41 0 1M' 'read -P 0x51 1M 1M' 'read -P 0x61 2M 1M' 'read -P 0x71 3M 1M'
io vmB 'read -P 0x42 0 1M' 'read -P 0x52 1M 1M' 'read -P 0x62 2M 1M'
out="$(qemu-io -f raw -r -c 'read -P 0x62 2M 1M' "$TB/vmB.raw" 2>&1)"
[[ "$out" != *failed* ]] || fail "the target's vmB.raw:"$'\n'"$out"
for vm in vmA vmB; do
	kill "${QSD_PID[$vm]}"
	wait_pid_exit "${QSD_PID[$vm]}" 30 || fail "qemu-storage-daemon $vm did not stop"
done
log "ok"
