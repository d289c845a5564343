#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Data integrity under load: fio random read/write through the mount with
# crc32c verification, buffered and O_DIRECT, synchronous (psync) and
# asynchronous (libaio, several requests in flight), two jobs at a time so
# that the daemon serves requests concurrently.
#
# For each mode: one fio run writes and verifies; then, after an unmount
# and a fresh mount (so nothing comes from the mount's page cache), a
# verify-only run reads it all back and checks it again.  Finally a
# negative control: with the files scribbled over underneath, verification
# must fail -- proof that the verify passes above really checked data.

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
require_cmd fio

SRC="$TESTDIR/src"
MNT="$TESTDIR/mnt"
mkdir "$SRC" "$MNT"

# fio_run NAME OUTPUT ENGINE DIRECT [FIO OPTIONS...]: one workload, with the
# JSON report in OUTPUT.  The same NAME and options give the same offsets,
# block sizes and data (fio seeds its generators from fixed values), which
# is what lets a later --verify_only run check what this one wrote.
fio_run() {
	local name="$1" out="$2" engine="$3" direct="$4" depth=1
	shift 4
	[[ "$engine" == libaio ]] && depth=16
	# From the test directory, and without verify state files: fio would
	# otherwise leave local-*-verify.state files in the working directory.
	(cd "$TESTDIR" && run fio --name="$name" --directory="$MNT" --verify_state_save=0 \
		--ioengine="$engine" --direct="$direct" --iodepth="$depth" \
		--rw=randrw --rwmixread=50 --bsrange=4k-64k --size=32M --numjobs=2 \
		--verify=crc32c --do_verify=1 --verify_fatal=1 \
		--output-format=json --output="$out" "$@")
}

# check_report OUTPUT WHAT MIN_WRITE_BYTES: every job ended without error,
# read some data and wrote at least MIN_WRITE_BYTES.
check_report() {
	run python3 - "$@" <<-'EOF'
	import json, sys
	path, what, min_write = sys.argv[1], sys.argv[2], int(sys.argv[3])
	with open(path) as f:
	    text = f.read()
	# fio may print warnings before the JSON document.
	report = json.loads(text[text.index("{"):])
	jobs = report["jobs"]
	if len(jobs) != 2:
	    sys.exit(f"{what}: expected 2 jobs in the report, got {len(jobs)}")
	for job in jobs:
	    if job["error"] != 0:
	        sys.exit(f"{what}: job {job['jobname']} ended with error {job['error']}")
	    if job["read"]["io_bytes"] <= 0:
	        sys.exit(f"{what}: job {job['jobname']} read nothing")
	    if job["write"]["io_bytes"] < min_write:
	        sys.exit(f"{what}: job {job['jobname']} wrote {job['write']['io_bytes']} bytes")
	EOF
}

# One mode: write + verify, remount, verify again.
test_mode() {
	local engine="$1" direct="$2" name="fio-$1-direct$2" rc=0
	log "fio: ioengine=$engine direct=$direct"

	mount_mfs "$SRC" "$MNT"
	fio_run "$name" "$TESTDIR/$name.json" "$engine" "$direct" || rc=$?
	((rc == 0)) || fail "fio $name exited with status $rc:"$'\n'"$(cat "$TESTDIR/$name.json")"
	check_report "$TESTDIR/$name.json" "fio $name" 1 || fail "fio $name report"
	umount_mfs "$MNT"

	mount_mfs "$SRC" "$MNT"
	fio_run "$name" "$TESTDIR/$name-verify.json" "$engine" "$direct" --verify_only || rc=$?
	((rc == 0)) ||
		fail "fio $name --verify_only exited with status $rc:"$'\n'"$(cat "$TESTDIR/$name-verify.json")"
	check_report "$TESTDIR/$name-verify.json" "fio $name --verify_only" 0 ||
		fail "fio $name --verify_only report"
	umount_mfs "$MNT"
}

test_mode psync 0
test_mode psync 1
test_mode libaio 0
test_mode libaio 1

# Negative control: overwrite the files underneath, then verify through the
# mount must fail.
files=("$SRC"/fio-libaio-direct1.*)
assert_eq 2 "${#files[@]}" "fio files of the last mode"
for f in "${files[@]}"; do
	run dd if=/dev/urandom of="$f" bs=1M count=32 conv=notrunc status=none
done
mount_mfs "$SRC" "$MNT"
rc=0
fio_run fio-libaio-direct1 "$TESTDIR/corrupt.json" libaio 1 --verify_only 2>"$TESTDIR/corrupt.err" || rc=$?
((rc != 0)) || fail "fio verification passed on corrupted files: it does not check anything"
# ... and say why ("verify: bad magic header ...", "crc32c: verify failed ...").
assert_contains "$(cat "$TESTDIR/corrupt.err")" "verify" "fio errors on corrupted files"
umount_mfs "$MNT"
exit 0
