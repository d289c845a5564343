#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# The transport (issue 19): -o io_uring=auto|on|off against the kernel's
# switch for it (/sys/module/fuse/parameters/enable_uring, restored at
# exit), what the log and mirrorfs-status say, real I/O through the ring,
# and a request that waits in the engine not holding up the others of its
# queue.
#
#  - A bad value, and io_uring=on where the kernel does not offer it, are
#    refused before the mount with one line naming what to do.
#  - auto falls back to /dev/fuse where the kernel does not offer it, and
#    says so in the log and in the status; where it does, the ring serves.
#  - Through the ring: fio with --verify, 4 KiB to 1 MiB, O_DIRECT and
#    buffered; the data on the source is what was written.
#  - Rings that cannot be set up (kernel.io_uring_disabled=2) are found
#    before INIT grants io_uring (after it, the kernel would hold every
#    request until each queue has an entry): auto serves through
#    /dev/fuse and says why; on is refused before the mount.
#  - A write held in the engine (MIRRORFS_TEST_WRITE_HOLD_MS) occupies one
#    thread of its CPU's queue: reads made from that same CPU (taskset)
#    are served while it is held.

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
. "$(dirname "${BASH_SOURCE[0]}")/lib-control.sh"
. "$(dirname "${BASH_SOURCE[0]}")/lib-migration.sh"
require_cmd fio taskset

PARAM=/sys/module/fuse/parameters/enable_uring
[[ -w "$PARAM" ]] || skip "this kernel has no FUSE over io_uring ($PARAM)"
# This test picks the transport itself.
unset MIRRORFS_TEST_IO_URING
at_exit eval "echo $(cat "$PARAM") >$PARAM"

SRC="$TESTDIR/src"
MNT="$TESTDIR/mnt"
mkdir -p "$SRC" "$MNT"
head -c $((8 << 20)) /dev/urandom >"$SRC/disk.raw"

# refused EXPECTED-ERE OPTION...: the daemon must exit non-zero at once
# with one line on stderr matching EXPECTED-ERE, and mount nothing.
refused() {
	local want="$1" err rc=0
	shift
	err="$(timeout 20 "$MIRRORFS" -f "$@" "$SRC" "$MNT" 2>&1 </dev/null)" || rc=$?
	((rc != 0 && rc != 124)) || fail "mirrorfs $* exited with $rc; want a refusal"
	[[ "$(printf '%s\n' "$err" | wc -l)" == 1 ]] || fail "mirrorfs $*: not one line: $err"
	[[ "$err" =~ $want ]] || fail "mirrorfs $*: '$err' does not match '$want'"
	is_mounted "$MNT" && fail "mirrorfs $* mounted after all"
	log "refused $*: $err"
}

# transport_is NAME: the status and the daemon's log both say NAME.
transport_is() {
	local name="$1" logf
	logf="$(daemon_log "$MNT")"
	# The rings start after the kernel's INIT, a moment after the mount
	# appears; until then requests come through /dev/fuse, and say so.
	[[ "$name" != io_uring ]] || wait_log "$MNT" "transport: FUSE over io_uring" 10
	assert_eq "$name" "$(status_field "$MNT" transport)" "mirrorfs-status transport"
	if [[ "$name" == io_uring ]]; then
		grep -q "transport: FUSE over io_uring" "$logf" || fail "the log does not name io_uring"
	else
		grep -q "transport: /dev/fuse" "$logf" || fail "the log does not name /dev/fuse"
	fi
}

log "bad values"
refused 'io_uring=sometimes: must be auto, on or off' -o io_uring=sometimes

log "the kernel does not offer it"
echo N >"$PARAM"
refused "io_uring=on: .*enable_uring is N.*echo Y" -o io_uring=on
mount_mfs "$SRC" "$MNT"
transport_is /dev/fuse
grep -q "transport: /dev/fuse (the kernel does not offer" "$(daemon_log "$MNT")" ||
	fail "auto does not say why it fell back"
cmp "$SRC/disk.raw" "$MNT/disk.raw" || fail "reading through /dev/fuse"
umount_mfs "$MNT"

log "the kernel offers it"
echo Y >"$PARAM"
refused 'io_uring=on: not with clone_fd' -o io_uring=on -o clone_fd
mount_mfs "$SRC" "$MNT" -o io_uring=off
transport_is /dev/fuse
umount_mfs "$MNT"
mount_mfs "$SRC" "$MNT"
transport_is io_uring
cmp "$SRC/disk.raw" "$MNT/disk.raw" || fail "reading through io_uring"

log "fio --verify through the ring"
for spec in "4k 1 randwrite" "64k 4 randrw" "1m 4 write"; do
	read -r bs depth rw <<<"$spec"
	run fio --name=ring --filename="$MNT/fio.$bs" --size=16m --bs="$bs" --rw="$rw" \
		--iodepth="$depth" --ioengine=libaio --direct=1 --verify=crc32c \
		--verify_fatal=1 --do_verify=1 --randrepeat=0 --output=/dev/null ||
		fail "fio $rw bs=$bs iodepth=$depth with --verify through io_uring"
done
run fio --name=buffered --filename="$MNT/fio.buffered" --size=8m --bs=4k --rw=randwrite \
	--ioengine=psync --verify=crc32c --verify_fatal=1 --randrepeat=0 --output=/dev/null ||
	fail "buffered fio with --verify through io_uring"
cmp "$MNT/fio.1m" "$SRC/fio.1m" || fail "the source differs from what was written"
umount_mfs "$MNT"

log "rings that cannot be set up"
DISABLED=/proc/sys/kernel/io_uring_disabled
if [[ -w "$DISABLED" ]]; then
	disabled_was="$(cat "$DISABLED")"
	at_exit eval "echo $disabled_was >$DISABLED"
	echo 2 >"$DISABLED"
	mount_mfs "$SRC" "$MNT"
	timeout 20 cmp "$SRC/disk.raw" "$MNT/disk.raw" || fail "reading with io_uring disabled"
	transport_is /dev/fuse
	grep -q "transport: /dev/fuse (cannot set up [0-9]* rings: Operation not permitted)" \
		"$(daemon_log "$MNT")" || fail "auto does not say why the rings failed"
	umount_mfs "$MNT"
	refused "io_uring=on: cannot make an io_uring: Operation not permitted" -o io_uring=on
	echo "$disabled_was" >"$DISABLED"
else
	log "no $DISABLED: skipped"
fi

log "a write held in the engine does not hold its queue"
MIRRORFS_TEST_WRITE_HOLD_MS=4000 mount_mfs "$SRC" "$MNT"
taskset -c 0 dd if=/dev/zero of="$MNT/held" bs=4k count=1 oflag=direct status=none &
writer=$!
track_bg "$writer"
wait_log "$MNT" "test: 1 writes held" 10
for i in 1 2 3 4; do
	taskset -c 0 dd if="$MNT/disk.raw" of=/dev/null bs=4k count=1 skip=$((i * 7)) \
		iflag=direct status=none || fail "read $i on CPU 0 failed"
done
taskset -c 0 stat "$MNT/disk.raw" >/dev/null
pid_alive "$writer" || fail "the held write ended before the reads: nothing was proven"
wait "$writer" || fail "the held write failed"
umount_mfs "$MNT"
