#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# QEMU's own tools on images in the mount: what mirrorfs will serve.
#   - qemu-img create/check/convert/compare on raw and qcow2;
#   - qemu-io writes and pattern-verified reads with cache=none (O_DIRECT
#     through the mount, also with Linux native AIO) and cache=writeback;
#   - QEMU's image locking (OFD locks on bytes 100.. and 200..), which keeps
#     two QEMUs from writing one image, must work through the mount.

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
require_cmd qemu-img qemu-io mkfifo

SRC="$TESTDIR/src"
MNT="$TESTDIR/mnt"
OUT="$TESTDIR/outside" # not in the mount: the reference side of comparisons
mkdir "$SRC" "$MNT" "$OUT"
mount_mfs "$SRC" "$MNT"

# qemu_io ARGS...: run qemu-io and require that every command succeeded:
# exit status 0 and none of the messages qemu-io prints for a failed
# command or a pattern mismatch.
qemu_io() {
	local out rc=0
	out="$(run qemu-io "$@" 2>&1)" || rc=$?
	((rc == 0)) || fail "qemu-io $* exited with status $rc:"$'\n'"$out"
	if grep -qiE 'fail|error|mismatch|verification' <<<"$out"; then
		fail "qemu-io $* reported a problem:"$'\n'"$out"
	fi
	printf '%s\n' "$out"
}

# qemu_rw FORMAT IMAGE QEMU-IO-OPTIONS...: write patterns in one qemu-io
# run, read them back in another (so the data went through the file, not a
# QEMU cache), and check that the reads ran and matched.
qemu_rw() {
	local fmt="$1" img="$2" out
	shift 2
	qemu_io -f "$fmt" "$@" \
		-c 'write -P 0xab 0 1M' \
		-c 'write -P 0xcd 3M 512k' \
		-c 'write -P 0x5a 7340544 4k' \
		-c 'write -z 1M 64k' \
		-c 'flush' \
		"$img" >/dev/null
	out="$(qemu_io -f "$fmt" "$@" \
		-c 'read -P 0xab 0 1M' \
		-c 'read -P 0xcd 3M 512k' \
		-c 'read -P 0x5a 7340544 4k' \
		-c 'read -P 0 1M 64k' \
		-c 'read -P 0 2M 1M' \
		"$img")"
	# All five reads done in full ("read N/N bytes"): a silently skipped
	# command or a short read is no pass.
	assert_eq 5 "$(awk '/^read [0-9]+\/[0-9]+ bytes/ {
			split($2, n, "/"); if (n[1] == n[2]) full++ } END { print full + 0 }' <<<"$out")" \
		"complete reads by qemu-io $*"
}

test_create_check() {
	local info
	run qemu-img create -q -f raw "$MNT/disk.raw" 16M
	run qemu-img create -q -f qcow2 "$MNT/disk.qcow2" 16M
	assert_eq $((16 * 1024 * 1024)) "$(stat -c %s "$SRC/disk.raw")" "size of the new raw image"
	info="$(run qemu-img info "$MNT/disk.qcow2")"
	assert_contains "$info" "file format: qcow2" "qemu-img info"
	run qemu-img check -q "$MNT/disk.qcow2" || fail "qemu-img check of a new qcow2 image"
}

test_io() {
	local fmt cache
	for fmt in raw qcow2; do
		for cache in none writeback; do
			qemu_rw "$fmt" "$MNT/disk.$fmt" -t "$cache"
		done
		# cache=none with Linux native AIO: io_submit with O_DIRECT.
		qemu_rw "$fmt" "$MNT/disk.$fmt" -t none -i native
	done
	# After all that writing the qcow2 metadata must be consistent.
	run qemu-img check -q "$MNT/disk.qcow2" || fail "qemu-img check after writes"
	# And the raw image holds the data in the source file itself.
	qemu_io -f raw -c 'read -P 0xab 0 1M' "$SRC/disk.raw" >/dev/null
}

test_convert_compare() {
	# Out of the mount, into it, and inside it, with and without O_DIRECT.
	run qemu-img convert -f qcow2 -O qcow2 "$MNT/disk.qcow2" "$OUT/copy.qcow2"
	run qemu-img convert -f qcow2 -O raw -t none -T none "$MNT/disk.qcow2" "$MNT/conv.raw"
	run qemu-img convert -f qcow2 -O qcow2 -t writeback "$OUT/copy.qcow2" "$MNT/back.qcow2"
	run qemu-img convert -f raw -O raw "$MNT/disk.raw" "$OUT/copy.raw"
	run qemu-img check -q "$MNT/back.qcow2" || fail "qemu-img check of a converted image"

	run qemu-img compare -q "$MNT/disk.qcow2" "$OUT/copy.qcow2" ||
		fail "qcow2 in the mount differs from its copy outside"
	run qemu-img compare -q -f qcow2 -F raw "$MNT/disk.qcow2" "$MNT/conv.raw" ||
		fail "qcow2 differs from its raw conversion in the mount"
	run qemu-img compare -q "$MNT/back.qcow2" "$MNT/disk.qcow2" ||
		fail "image converted back into the mount differs"
	run qemu-img compare -q -f raw -F raw "$MNT/disk.raw" "$OUT/copy.raw" ||
		fail "raw image in the mount differs from its copy outside"

	# The comparison can fail: change one sector in the mount.
	qemu_io -f raw -c 'write -P 0x01 8M 512' "$MNT/disk.raw" >/dev/null
	local rc=0
	run qemu-img compare -q -f raw -F raw "$MNT/disk.raw" "$OUT/copy.raw" || rc=$?
	assert_eq 1 "$rc" "qemu-img compare status for images that differ"
}

# start_holder FORMAT IMAGE: a qemu-io that keeps IMAGE open read-write,
# taking commands from a FIFO on fd $HOLDER_FD, until stop_holder.  Prints
# nothing; sets HOLDER_PID and HOLDER_LOG.
start_holder() {
	local fmt="$1" img="$2" deadline
	rm -f "$TESTDIR/holder.fifo"
	mkfifo "$TESTDIR/holder.fifo"
	HOLDER_LOG="$TESTDIR/holder.log"
	# Made now: qemu-io's shell opens it only once the FIFO has a writer.
	: >"$HOLDER_LOG"
	timeout -k 5 "$CMD_TIMEOUT" qemu-io -f "$fmt" "$img" \
		<"$TESTDIR/holder.fifo" >>"$HOLDER_LOG" 2>&1 &
	HOLDER_PID=$!
	track_bg "$HOLDER_PID"
	exec {HOLDER_FD}>"$TESTDIR/holder.fifo"
	# The image is open (and locked) once a command has run.
	echo 'read 0 512' >&"$HOLDER_FD"
	deadline=$((SECONDS + 30))
	until grep -q 'read 512/512 bytes' "$HOLDER_LOG"; do
		pid_alive "$HOLDER_PID" || fail "qemu-io holder exited:"$'\n'"$(cat "$HOLDER_LOG")"
		((SECONDS < deadline)) || fail "qemu-io holder did not open $img"
		sleep 0.1
	done
}

stop_holder() {
	echo quit >&"$HOLDER_FD"
	exec {HOLDER_FD}>&-
	wait "$HOLDER_PID" || fail "qemu-io holder exited with status $?:"$'\n'"$(cat "$HOLDER_LOG")"
}

# expect_locked WHAT CMD...: CMD must fail because of QEMU's image lock.
expect_locked() {
	local what="$1" out rc=0
	shift
	out="$(run "$@" 2>&1)" || rc=$?
	((rc != 0)) || fail "$what: succeeded while another process holds the image:"$'\n'"$out"
	assert_contains "$out" "lock" "$what: error"
}

test_locking() {
	run qemu-img create -q -f qcow2 "$MNT/locked.qcow2" 16M
	run qemu-img create -q -f raw "$MNT/locked.raw" 16M

	# qcow2: a writer does not share write access to its metadata, so a
	# second writer must not get the "write" lock.
	start_holder qcow2 "$MNT/locked.qcow2"
	expect_locked "second qemu-io writer on qcow2" \
		qemu-io -f qcow2 -c 'write 0 4k' "$MNT/locked.qcow2"
	expect_locked "qemu-img info on a qcow2 in use" qemu-img info "$MNT/locked.qcow2"
	# Locks are advisory and shared access is allowed when asked for (-U):
	# so the refusals above were the locks, not a broken open.
	run qemu-img info -U "$MNT/locked.qcow2" >/dev/null ||
		fail "qemu-img info -U on a qcow2 in use"
	stop_holder
	# Released when the holder exits.
	qemu_io -f qcow2 -c 'write 0 4k' "$MNT/locked.qcow2" >/dev/null

	# raw: qemu-io shares all permissions on raw images (a second qemu-io
	# writer is allowed, as it is outside the mount), but qemu-img convert
	# wants a consistent read and does not share "write": it must not read
	# an image that a writer has open.
	start_holder raw "$MNT/locked.raw"
	expect_locked "qemu-img convert from a raw image in use" \
		qemu-img convert -f raw -O raw "$MNT/locked.raw" "$OUT/locked-copy.raw"
	run qemu-img convert -U -f raw -O raw "$MNT/locked.raw" "$OUT/locked-copy.raw" ||
		fail "qemu-img convert -U from a raw image in use"
	stop_holder
	run qemu-img convert -f raw -O raw "$MNT/locked.raw" "$OUT/locked-copy.raw" ||
		fail "qemu-img convert after the holder exited"
}

test_create_check
test_io
test_convert_compare
test_locking

umount_mfs "$MNT"
exit 0
