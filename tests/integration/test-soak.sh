#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Soak: migrations back and forth between two directories, A -> B -> A ...,
# under several writers per image, for SOAK_SECONDS (default 120).
#
# Three images, two fio writers on each (one O_DIRECT with libaio and
# random 4-128 KiB blocks, one buffered with a mix of 4, 16 and 64 KiB
# blocks and an fsync every 8 writes), each in its own half of its image,
# with crc32c verification of what they wrote as they go
# (verify_backlog) for the whole run.  Every cycle:
#
#   1. mirrorfsctl start OTHER --overwrite --switch manual (OTHER holds the
#      files of two cycles ago: --overwrite replaces them);
#   2. mirrored: the writers are stopped (SIGSTOP) and the two directories
#      compared byte for byte (names, modes, sizes, every byte);
#   3. switch; the mount now serves OTHER and reads the same bytes;
#   4. the writers go on (SIGCONT).
#
# The daemon's memory (VmRSS, VmHWM) and descriptors are sampled after each
# cycle: the peak must stay under 64 MiB and neither may grow from the
# second cycle to the last by more than 8 MiB or 4 descriptors (with a
# sanitizer, AddressSanitizer's quarantine made small: no bound on the
# peak, 32 MiB of growth).  Both allow for the request buffers on top:
# every thread that serves requests (the /dev/fuse loop's workers, the
# io_uring transport's ring threads) owns one of up to 1 MiB, touched
# when a large write first lands in it, so the peak climbs over the
# first few dozen cycles as the threads take their turns, then stays.
# Every cycle is a job, and the daemon keeps the newest 16 ended ones
# for their status: they must hold no descriptor (a directory they held
# could not be unmounted).  The writers must end without a verification
# error.
#
# SOAK_SECONDS=N for a longer run (opt-in, e.g. 3600).

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
. "$(dirname "${BASH_SOURCE[0]}")/lib-migration.sh"
. "$(dirname "${BASH_SOURCE[0]}")/lib-control.sh"
. "$(dirname "${BASH_SOURCE[0]}")/lib-fault.sh"
require_cmd fio cmp
cd "$TESTDIR"

SOAK_SECONDS="${SOAK_SECONDS:-120}"
((SOAK_SECONDS >= 30)) || fail "SOAK_SECONDS=$SOAK_SECONDS: at least 30"
A="$TESTDIR/a"
B="$TESTDIR/b"
MNT="$TESTDIR/mnt"
mkdir -p "$A/conf" "$B" "$MNT"
for i in 1 2 3; do
	head -c $(((i == 3 ? 16 : 32) * MiB)) /dev/urandom >"$A/vm$i.raw"
	printf 'name=vm%s\ndisk=vm%s.raw\n' "$i" "$i" >"$A/conf/vm$i.conf"
done
chmod 600 "$A/conf/vm1.conf"

# A sanitized daemon keeps freed memory in quarantine (256 MiB by default)
# and would seem to grow until it is full.  What fills it here are small
# allocations made per FUSE request (one size class, 192 bytes): with 16 MiB
# of quarantine that was some 35 MiB of resident memory before it levelled
# off, 20 cycles in.  A small one, so that growth means a leak.
export ASAN_OPTIONS="${ASAN_OPTIONS:-}${ASAN_OPTIONS:+:}quarantine_size_mb=4"
mount_mfs "$A" "$MNT"
DPID="${MFS_PID[$(realpath "$MNT")]}"

# The writers: one fio, six jobs, for the whole run.
jobs=()
for i in 1 2 3; do
	common=(--filename="$MNT/vm$i.raw" --rw=randwrite --verify=crc32c --verify_backlog=32
		--verify_fatal=1 --verify_state_save=0 --fallocate=none --time_based
		"--runtime=$SOAK_SECONDS" "--rate=,3m" --size=50%)
	jobs+=(--name="vm$i-direct" "${common[@]}" --offset=0 --ioengine=libaio --iodepth=4
		--direct=1 --bsrange=4k-128k)
	jobs+=(--name="vm$i-buffered" "${common[@]}" --offset=50% --ioengine=psync --direct=0
		--bssplit=4k/50:16k/30:64k/20 --fsync=8)
done
(cd "$TESTDIR" && exec timeout -k 5 $((SOAK_SECONDS + 120)) fio "${jobs[@]}" \
	--output-format=json --output="$TESTDIR/soak.json") >"$TESTDIR/soak.err" 2>&1 &
FIO_PID=$!
track_bg "$FIO_PID"
sleep 2

# fio_pids: fio and its job processes.
fio_pids() {
	local p
	echo "$FIO_PID"
	for p in $(ps -o pid= --ppid "$FIO_PID" 2>/dev/null); do
		echo "$p"
		ps -o pid= --ppid "$p" 2>/dev/null || true
	done
}

writers_stop() {
	local p state deadline=$((SECONDS + 10))
	mapfile -t STOPPED < <(fio_pids)
	kill -STOP "${STOPPED[@]}" 2>/dev/null || true
	for p in "${STOPPED[@]}"; do
		while read -r state 2>/dev/null <"/proc/$p/stat"; do
			state="${state##*) }"
			[[ "${state%% *}" == [TtZX] ]] && break
			((SECONDS < deadline)) || fail "fio process $p does not stop"
			sleep 0.01
		done
	done
	# Let requests already in the daemon finish.
	sleep 0.3
}

writers_cont() {
	kill -CONT "${STOPPED[@]}" 2>/dev/null || true
}

# same_trees X Y WHAT: the same names, modes and sizes, and every byte.
same_trees() {
	local lx ly f
	lx="$(tree_listing "$1" | { grep -v '^\.mirrorfs-journal' || true; })"
	ly="$(tree_listing "$2" | { grep -v '^\.mirrorfs-journal' || true; })"
	[[ "$lx" == "$ly" ]] ||
		fail "$3: trees differ:"$'\n'"$(diff <(printf '%s\n' "$lx") <(printf '%s\n' "$ly") || true)"
	while IFS= read -r -d '' f; do
		[[ "$f" == .mirrorfs-journal ]] && continue
		cmp -s -- "$1/$f" "$2/$f" || fail "$3: '$f' differs: $(cmp -- "$1/$f" "$2/$f" 2>&1 | head -n 1)"
	done < <(cd "$1" && find . -type f -printf '%P\0')
}

T0=$SECONDS
cycle=0
served="$A"
declare -a RSS=() HWM=() FDS=()
# The daemon's threads that read requests into buffers of their own
# (fuse/loop.c, fuse/uring.c name them).
serving_threads() {
	grep -lxE 'mirrorfs-(fuse|uring)' /proc/"$1"/task/*/comm 2>/dev/null | wc -l
}
while ((SECONDS - T0 < SOAK_SECONDS - 15)); do
	cycle=$((cycle + 1))
	tc=$SECONDS
	if [[ "$served" == "$A" ]]; then other="$B"; else other="$A"; fi
	pid_alive "$FIO_PID" || fail "the writers ended early:"$'\n'"$(tail -n 30 "$TESTDIR/soak.err")"
	ctl "$MNT" start "$other" --overwrite --switch manual
	wait_status_state "$MNT" mirrored 120
	writers_stop
	same_trees "$served" "$other" "cycle $cycle: source and target, mirrored"
	ctl "$MNT" switch
	wait_status_state "$MNT" switched 60
	assert_eq "$other" "$(status_field "$MNT" served)" "cycle $cycle: served after the switch"
	stun="$(status_field "$MNT" stun_ms)"
	same_trees "$other" "$MNT" "cycle $cycle: the mount after the switch"
	writers_cont
	served="$other"
	RSS+=("$(vm_rss "$DPID")")
	HWM+=("$(vm_hwm "$DPID")")
	FDS+=("$(find "/proc/$DPID/fd" -mindepth 1 | wc -l)")
	log "cycle $cycle: -> $(basename "$other") in $((SECONDS - tc)) s, stun $stun ms;" \
		"daemon RSS ${RSS[-1]} KiB, peak ${HWM[-1]} KiB, ${FDS[-1]} fds"
done
((cycle >= 2)) || fail "only $cycle cycle(s) in $SOAK_SECONDS s"

rc=0
wait_pid_exit "$FIO_PID" $((SOAK_SECONDS + 60)) || fail "the writers do not end"
wait "$FIO_PID" || rc=$?
((rc == 0)) || fail "the writers exited $rc (a verification failed?):"$'\n'"$(tail -n 40 "$TESTDIR/soak.err")"
"$PYTHON" - "$TESTDIR/soak.json" <<-'EOF' || fail "the writers' report"
import json, sys
text = open(sys.argv[1]).read()
jobs = json.loads(text[text.index("{"):])["jobs"]
for job in jobs:
    if job["error"]:
        sys.exit(f"{job['jobname']}: error {job['error']}")
    if job["write"]["io_bytes"] == 0 or job["read"]["io_bytes"] == 0:
        sys.exit(f"{job['jobname']}: wrote {job['write']['io_bytes']}, verified {job['read']['io_bytes']}")
w = sum(j["write"]["io_bytes"] for j in jobs)
r = sum(j["read"]["io_bytes"] for j in jobs)
print(f"writers: {len(jobs)} jobs, {w / 2**20:.0f} MiB written, {r / 2**20:.0f} MiB verified")
EOF
same_trees "$served" "$MNT" "at the end"
# Counted once, the daemon still up: the loop's workers and the rings' threads start with the mount.
SERVING="$(serving_threads "$DPID")"
umount_mfs "$MNT"

log "$cycle cycles in $((SECONDS - T0)) s; daemon RSS ${RSS[1]} -> ${RSS[-1]} KiB, peak ${HWM[-1]} KiB, fds ${FDS[1]} -> ${FDS[-1]}"
# A sanitized daemon (the sanitizers' shadow memory, AddressSanitizer's
# quarantine) is held to its growth only.
if ldd "$MIRRORFS" 2>/dev/null | grep -qE 'lib[at]san'; then
	log "sanitizer build: the 64 MiB bound on the peak is not checked"
	GROWTH_KIB=$((32 * 1024))
else
	((HWM[-1] < 64 * 1024)) || fail "the daemon's peak RSS is ${HWM[-1]} KiB, over 64 MiB"
	GROWTH_KIB=$((8 * 1024))
fi
# A request buffer, 1 MiB, for each thread that serves requests.
((SERVING > 0)) || fail "no thread of the daemon serves requests (mirrorfs-fuse, mirrorfs-uring)"
GROWTH_KIB=$((GROWTH_KIB + SERVING * 1024))
log "$SERVING threads serve requests; growth allowed: $GROWTH_KIB KiB"
((RSS[-1] - RSS[1] < GROWTH_KIB)) ||
	fail "the daemon's RSS grew by $((RSS[-1] - RSS[1])) KiB from cycle 2 to cycle $cycle: ${RSS[*]}"
((HWM[-1] - HWM[1] < GROWTH_KIB)) ||
	fail "the daemon's peak RSS grew by $((HWM[-1] - HWM[1])) KiB from cycle 2 to cycle $cycle: ${HWM[*]}"
((FDS[-1] - FDS[1] < 4)) || fail "the daemon's descriptors grew from ${FDS[1]} to ${FDS[-1]}: ${FDS[*]}"
! mounts_under "$TESTDIR" || fail "a mirrorfs mount was left under $TESTDIR"
exit 0
