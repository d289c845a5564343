#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# The source fails: faultfs (tests/faultfs) as the SOURCE under mirrorfs,
# failing every read that touches [8 MiB, 8 MiB + 64 KiB) of disk.raw with
# EIO, as a disk with a bad patch would.
#
#   1. Without a migration, the guest sees exactly what it would see
#      without mirrorfs: the same sequence of reads (buffered and O_DIRECT,
#      inside, across and around the bad range, then a sequential read of
#      the whole file) gives the same bytes and the same errors through
#      mirrorfs as on faultfs directly.  Not only the errno of each read
#      matters: a read that comes back short must not make the kernel take
#      the file for shorter than it is (later reads past the bad range still
#      return data).
#   2. A migration started then fails when its copier meets the bad range,
#      with an error that names the source and the I/O error; nothing is left
#      in the target; the guest writing another image through the mount (fio
#      with verification) sees no error; the reads above still behave as
#      without mirrorfs.

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
. "$(dirname "${BASH_SOURCE[0]}")/lib-migration.sh"
. "$(dirname "${BASH_SOURCE[0]}")/lib-control.sh"
. "$(dirname "${BASH_SOURCE[0]}")/lib-fault.sh"
require_cmd fio
require_faultfs
cd "$TESTDIR"

SBK="$TESTDIR/sbk"   # the directory under faultfs
SFS="$TESTDIR/sfs"   # faultfs: mirrorfs's source
MNT="$TESTDIR/mnt"
DST="$TESTDIR/dst"
FLOG="$TESTDIR/faults.log"
mkdir -p "$SBK" "$SFS" "$MNT" "$DST"
head -c $((16 * MiB)) /dev/urandom >"$SBK/disk.raw"
head -c $((4 * MiB)) /dev/urandom >"$SBK/guest.raw"
echo conf >"$SBK/vm.conf"

# probe FILE SPEC...: each SPEC is OFF:LEN:MODE (MODE buf or direct, or
# seq: read LEN-byte blocks from OFF to the end or the first error).  Prints
# one line each: the bytes read and their digest, or the errno.  The page
# cache of the file, through mirrorfs and on faultfs, is dropped first
# (POSIX_FADV_DONTNEED; not drop_caches, whose flood of forgets a FUSE
# file system has to race with), so that each run starts from the disk.
PROBES=(
	0x7ff000:0x2000:buf     # across the start of the bad range
	0x810000:0x1000:buf     # just past it
	0x800000:0x1000:buf     # inside
	0x800000:0x10000:direct # the whole range, O_DIRECT
	0x7f0000:0x20000:direct # across, O_DIRECT
	0x80f000:0x2000:buf     # across its end
	0x900000:0x1000:direct  # past it, O_DIRECT
	0xfff000:0x1000:buf     # the last page
	0x700000:0x100000:buf   # the MiB before it
	0:0x100000:seq          # everything, 1 MiB at a time
	0x810000:0x100000:seq   # everything after it
)
probe() {
	run "$PYTHON" - "$@" <<-'EOF'
	import hashlib, mmap, os, sys
	path = sys.argv[1]
	for p in (os.environ["SFS_FILE"], os.environ["MNT_FILE"]):
	    fd = os.open(p, os.O_RDONLY)
	    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
	    os.close(fd)
	for spec in sys.argv[2:]:
	    off, ln, mode = spec.split(":")
	    off, ln = int(off, 0), int(ln, 0)
	    flags = os.O_RDONLY | (os.O_DIRECT if mode == "direct" else 0)
	    fd = os.open(path, flags)
	    got, err = b"", None
	    try:
	        if mode == "direct":
	            buf = mmap.mmap(-1, ln)
	            got = bytes(buf[:os.preadv(fd, [buf], off)])
	        elif mode == "buf":
	            got = os.pread(fd, ln, off)
	        else:
	            while True:
	                b = os.pread(fd, ln, off + len(got))
	                if not b:
	                    break
	                got += b
	    except OSError as e:
	        err = e.errno
	    finally:
	        os.close(fd)
	    print(f"{spec}: {len(got)} bytes {hashlib.sha256(got).hexdigest()[:16]} "
	          f"errno {err}")
	EOF
}

# compare WHAT: the probes through the mount and on faultfs directly agree.
compare() {
	local direct mine
	direct="$(probe "$SFS/disk.raw" "${PROBES[@]}")"
	mine="$(probe "$MNT/disk.raw" "${PROBES[@]}")"
	[[ "$direct" == "$mine" ]] ||
		fail "$1: reads through mirrorfs differ from reads without it (< faultfs, > mirrorfs):"$'\n'"$(diff \
			<(printf '%s\n' "$direct") <(printf '%s\n' "$mine") || true)"
	# And the answers are the ones a bad patch gives: an error inside it.
	grep -q '^0x800000:0x1000:buf: 0 bytes .* errno 5$' <<<"$direct" ||
		fail "faultfs did not fail the bad range: $direct"
	log "$1: $(wc -l <<<"$mine") reads agree"
}

mount_faultfs "$SBK" "$SFS" "fail_read=8M+64K,only=disk.raw,fault_log=$FLOG"
export SFS_FILE="$SFS/disk.raw" MNT_FILE="$MNT/disk.raw"
mount_mfs "$SFS" "$MNT"

log "--- 1. reads without a migration"
compare "before the migration"

log "--- 2. a migration meets the bad range"
guest_start src "$MNT/guest.raw" 1
sleep 0.5
ctl "$MNT" start "$DST"
err="$(expect_failed "$MNT" "Input/output error" 60)"
log "failed: $err"
assert_eq "" "$(names_below "$DST")" "target after the failure"
guest_finish src
compare "after the failed migration"
expect_serves_source "$MNT" "$SFS"
umount_mfs "$MNT"
guest_verify src "$SBK/guest.raw"
# Last, as it is only about the message: the error blames the source.
[[ "$err" == *source* ]] || fail "the error blames the wrong side (a read of the source failed): '$err'"
umount_faultfs "$SFS"
! mounts_under "$TESTDIR" || fail "a mirrorfs mount was left under $TESTDIR"
exit 0
