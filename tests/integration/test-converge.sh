#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# The guest writes much faster than the copier may copy, and the migration
# converges all the same: mirroring never iterates.
#
# An 8 MiB image, the copier limited to 1 MiB/s (speed=1M, chunk=64K), and
# a guest (fio, O_DIRECT, crc32c verification) rewriting the whole image
# at random at 20 MB/s from before the start to after the switch: the guest
# rewrites the image many times over while the copier copies it once.  A
# pre-copy (dirty-block) migration would never end; this one must:
#
#   - switch after about size/speed (8 s), well within 2 x size/speed + 4 s;
#   - copy each byte once: bytes_copied is the image's size (no second
#     pass), while the guest wrote many times that during the copy;
#   - mirror the guest's writes below the cursor (mirrored_writes > 0);
#   - lose none of them: fio's verification passes (through the mount,
#     across the switch) and again from the target afterwards.
#
# The times and bytes are printed.

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
. "$(dirname "${BASH_SOURCE[0]}")/lib-migration.sh"
. "$(dirname "${BASH_SOURCE[0]}")/lib-control.sh"
. "$(dirname "${BASH_SOURCE[0]}")/lib-fault.sh"
require_cmd fio
cd "$TESTDIR"

SRC="$TESTDIR/src"
DST="$TESTDIR/dst"
MNT="$TESTDIR/mnt"
mkdir -p "$SRC" "$DST" "$MNT"
SIZE=$((8 * MiB))
SPEED=$((1 * MiB))
GUEST_BPS=$((20 * 1000 * 1000))
head -c "$SIZE" /dev/urandom >"$SRC/disk.raw"

now_ms() { date +%s%3N; }

# Enough to go on writing past the expected switch (about 9 s in): 13 s
# (io_size counts the verify pass's reads too).
FIO=(--name=fast --filename="$MNT/disk.raw" --size="$SIZE" --io_size=$((2 * 13 * GUEST_BPS))
	--rw=randwrite --bs=64k --ioengine=psync --direct=1 "--rate=,$GUEST_BPS"
	--verify=crc32c --do_verify=1 --verify_fatal=1 --verify_state_save=0 --fallocate=none
	--write_bw_log="$TESTDIR/fast" --log_avg_msec=500)

mount_mfs "$SRC" "$MNT"
T_FIO="$(now_ms)"
(cd "$TESTDIR" && exec timeout -k 5 "$CMD_TIMEOUT" fio "${FIO[@]}" --output-format=json \
	--output="$TESTDIR/fast.json") >"$TESTDIR/fast.err" 2>&1 &
FIO_PID=$!
track_bg "$FIO_PID"
sleep 1
T0="$(now_ms)"
ctl "$MNT" start "$DST" --speed 1M --chunk 64K
wait_status_state "$MNT" switched 60
T1="$(now_ms)"
status_json "$MNT" "$TESTDIR/switched.json"
pid_alive "$FIO_PID" || fail "the guest stopped writing before the switch: nothing proved"
rc=0
wait_pid_exit "$FIO_PID" "$CMD_TIMEOUT" || fail "fio still running"
wait "$FIO_PID" || rc=$?
((rc == 0)) || fail "fio (writes across the switch, then verify) exited $rc:"$'\n'"$(cat \
	"$TESTDIR/fast.err" "$TESTDIR/fast.json" | tail -n 40)"

# The guest's writes during the migration, from fio's bandwidth log
# (milliseconds since fio started, bytes/s averaged over 500 ms): summed
# between the start and the switch.
"$PYTHON" - "$TESTDIR/switched.json" "$TESTDIR/fast.json" "$TESTDIR"/fast_bw*.log \
	"$T0" "$T1" "$SIZE" "$SPEED" "$T_FIO" <<-'EOF' || fail "the migration did not converge as it must"
import json, sys
st = json.load(open(sys.argv[1]))
text = open(sys.argv[2]).read()
job = json.loads(text[text.index("{"):])["jobs"][0]
bwlog, t0, t1, size, speed, wall0 = (sys.argv[3], *map(int, sys.argv[4:9]))
secs = (t1 - t0) / 1000
copied = st["bytes_copied"]
if job["error"]:
    sys.exit(f"fio job error {job['error']}")
# fio's write bandwidth log: (ms since fio was launched, about, KiB/s
# over the last 500 ms).
samples = []
for line in open(bwlog):
    ms, kib, ddir = [int(x) for x in line.split(",")[:3]]
    if ddir == 1:
        samples.append((wall0 + ms, kib))
during = sum(k * 1024 * 0.5 for t, k in samples if t0 < t <= t1)
after = sum(k * 1024 * 0.5 for t, k in samples if t > t1 + 500)
total_w = job["write"]["io_bytes"]
rate = total_w / (job["write"]["runtime"] / 1000)
print(f"image {size} bytes, copier limit {speed} B/s")
print(f"switched {secs:.1f} s after the start (stun {st['stun_ms']} ms)")
print(f"copier: {copied} bytes copied ({copied / size:.2f} x the image) "
      f"at {copied / secs / 1e6:.2f} MB/s")
print(f"guest: {total_w} bytes written in {job['write']['runtime'] / 1000:.1f} s "
      f"({rate / 1e6:.1f} MB/s, {rate / (copied / secs):.0f} x the copier)"
      + f", {during:.0f} bytes ({during / size:.1f} x the image) during the migration, "
      f"{after:.0f} after the switch")
print(f"mirrored writes {st['mirrored_writes']}, waited on the copier "
      f"{st['waited_writes']} (longest {st['max_wait_ms']} ms)")
errors = []
limit = 2 * size / speed + 4
if secs > limit:
    errors.append(f"switched after {secs:.1f} s, more than {limit:.0f} s")
if copied > size + 64 * 1024:
    errors.append(f"copied {copied} bytes for an image of {size}: the copier went over it again")
if copied < size:
    errors.append(f"copied only {copied} of {size} bytes")
if rate < 4 * speed:
    errors.append(f"the guest wrote at {rate / 1e6:.1f} MB/s only: not faster than the copier")
if during < 4 * size:
    errors.append(f"the guest wrote only {during:.0f} bytes during the migration")
if after <= 0:
    errors.append("the guest did not write after the switch")
if st["mirrored_writes"] == 0:
    errors.append("no guest write was mirrored")
if errors:
    sys.exit("\n".join(errors))
EOF

assert_file_eq "$MNT/disk.raw" "$DST/disk.raw"
umount_mfs "$MNT"
rc=0
(cd "$TESTDIR" && exec timeout -k 5 "$CMD_TIMEOUT" fio "${FIO[@]/#--filename=*/--filename=$DST/disk.raw}" \
	--verify_only --output-format=json --output="$TESTDIR/verify.json") >"$TESTDIR/verify.err" 2>&1 || rc=$?
((rc == 0)) || fail "fio --verify_only on the target exited $rc:"$'\n'"$(cat "$TESTDIR/verify.err" | tail -n 20)"
! mounts_under "$TESTDIR" || fail "a mirrorfs mount was left under $TESTDIR"
exit 0
