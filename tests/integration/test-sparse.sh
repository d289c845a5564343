#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Sparse images through the mount.  VM images are mostly holes; a
# passthrough that fills them (writing zeros instead of skipping, or
# answering SEEK_DATA/SEEK_HOLE as "all data") turns a 1 GiB thin image into
# 1 GiB on disk and makes every copy tool read all of it.  So: holes stay
# holes, SEEK_DATA/SEEK_HOLE see the real layout, and punching holes and
# zeroing ranges work and read back as zeros.

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
require_cmd fallocate truncate du

SRC="$TESTDIR/src"
MNT="$TESTDIR/mnt"
mkdir "$SRC" "$MNT"
mount_mfs "$SRC" "$MNT"

readonly K=1024 M=$((1024 * 1024)) G=$((1024 * 1024 * 1024))
readonly CHUNK=$((64 * K))
# Where the data goes: near the start, in the middle, and the very end.
readonly OFFSETS=($((1 * M)) $((300 * M)) $((G - CHUNK)))

# seek_map FILE: the data extents as found by SEEK_DATA/SEEK_HOLE,
# "start-end" (end exclusive) separated by spaces.
seek_map() {
	run python3 - "$1" <<-'EOF'
	import errno, os, sys
	fd = os.open(sys.argv[1], os.O_RDONLY)
	size, off, extents = os.fstat(fd).st_size, 0, []
	while off < size:
	    try:
	        start = os.lseek(fd, off, os.SEEK_DATA)
	    except OSError as e:
	        if e.errno != errno.ENXIO:  # ENXIO: no data after off
	            raise
	        break
	    end = os.lseek(fd, start, os.SEEK_HOLE)
	    extents.append(f"{start}-{end}")
	    off = end
	print(" ".join(extents))
	EOF
}

# nonzero_bytes FILE OFFSET LENGTH: how many bytes of the range are not
# zero; fails if the range cannot be read in full.
nonzero_bytes() {
	run python3 - "$@" <<-'EOF'
	import os, sys
	path, off, length = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
	with open(path, "rb", buffering=0) as f:
	    data = os.pread(f.fileno(), length, off)
	if len(data) != length:
	    sys.exit(f"short read: {len(data)} of {length} bytes at {off}")
	print(length - data.count(0))
	EOF
}

# disk_usage FILE: bytes allocated (st_blocks * 512).
disk_usage() {
	echo $(($(stat -c '%b * %B' "$1")))
}

# read_range FILE OFFSET LENGTH: the bytes, on stdout.
read_range() {
	run dd if="$1" bs="$CHUNK" skip="$2" count="$3" iflag=skip_bytes,count_bytes status=none
}

# A 1 GiB thin file with three 64 KiB extents of data, all through the mount.
truncate -s 1G "$MNT/thin.img"
for off in "${OFFSETS[@]}"; do
	head -c "$CHUNK" /dev/urandom >"$TESTDIR/chunk-$off"
	run dd if="$TESTDIR/chunk-$off" of="$MNT/thin.img" bs="$CHUNK" seek="$off" \
		oflag=seek_bytes conv=notrunc,fsync status=none
done

for p in "$MNT/thin.img" "$SRC/thin.img"; do
	assert_eq "$G" "$(stat -c %s "$p")" "apparent size of $p"
	# Three chunks plus file system metadata, far from 1 GiB.
	assert_le "$(disk_usage "$p")" $((2 * M)) "allocated bytes of $p"
	assert_le "$(du -B1 "$p" | cut -f1)" $((2 * M)) "du of $p"
done
assert_eq "$(disk_usage "$SRC/thin.img")" "$(disk_usage "$MNT/thin.img")" \
	"st_blocks through the mount and in the source"

# The data reads back, and the holes read as zeros.
for off in "${OFFSETS[@]}"; do
	read_range "$MNT/thin.img" "$off" "$CHUNK" | cmp -s - "$TESTDIR/chunk-$off" ||
		fail "data at offset $off reads back wrong"
done
assert_eq 0 "$(nonzero_bytes "$MNT/thin.img" 0 "$M")" "hole before the first extent"
assert_eq 0 "$(nonzero_bytes "$MNT/thin.img" $((1 * M + CHUNK)) "$M")" "hole after the first extent"

# SEEK_DATA/SEEK_HOLE through the mount find exactly the extents written.
expected=""
for off in "${OFFSETS[@]}"; do
	expected+="${expected:+ }$off-$((off + CHUNK))"
done
assert_eq "$expected" "$(seek_map "$MNT/thin.img")" "SEEK_DATA/SEEK_HOLE map through the mount"
assert_eq "$expected" "$(seek_map "$SRC/thin.img")" "SEEK_DATA/SEEK_HOLE map in the source"

# Punch a hole over the first extent: zeros, blocks freed, extent gone.
used_before="$(disk_usage "$SRC/thin.img")"
run fallocate --punch-hole --offset "${OFFSETS[0]}" --length "$CHUNK" "$MNT/thin.img"
assert_eq 0 "$(nonzero_bytes "$MNT/thin.img" "${OFFSETS[0]}" "$CHUNK")" "punched range through the mount"
assert_eq 0 "$(nonzero_bytes "$SRC/thin.img" "${OFFSETS[0]}" "$CHUNK")" "punched range in the source"
assert_eq "$G" "$(stat -c %s "$MNT/thin.img")" "size after punching a hole"
assert_le $(($(disk_usage "$SRC/thin.img") + CHUNK)) "$used_before" "allocated bytes after punching"
expected="${OFFSETS[1]}-$((OFFSETS[1] + CHUNK)) ${OFFSETS[2]}-$G"
assert_eq "$expected" "$(seek_map "$MNT/thin.img")" "SEEK_DATA/SEEK_HOLE map after punching"

# Zero the middle extent: zeros, size unchanged.  (Whether zeroed blocks
# count as data for SEEK_DATA is up to the file system below, so only
# require the mount to report what the source reports.)
run fallocate --zero-range --offset "${OFFSETS[1]}" --length "$CHUNK" "$MNT/thin.img"
assert_eq 0 "$(nonzero_bytes "$MNT/thin.img" "${OFFSETS[1]}" "$CHUNK")" "zeroed range through the mount"
assert_eq 0 "$(nonzero_bytes "$SRC/thin.img" "${OFFSETS[1]}" "$CHUNK")" "zeroed range in the source"
assert_eq "$G" "$(stat -c %s "$MNT/thin.img")" "size after zeroing a range"
assert_eq "$(seek_map "$SRC/thin.img")" "$(seek_map "$MNT/thin.img")" "SEEK_DATA/SEEK_HOLE map after zeroing"
# The last extent was not touched by either.
read_range "$MNT/thin.img" "${OFFSETS[2]}" "$CHUNK" | cmp -s - "$TESTDIR/chunk-${OFFSETS[2]}" ||
	fail "data of the last extent changed"

# Preallocation: fallocate extends the file and allocates; --keep-size
# allocates without changing the size.
run fallocate --offset "$G" --length "$M" "$MNT/thin.img"
assert_eq $((G + M)) "$(stat -c %s "$SRC/thin.img")" "size after fallocate"
assert_le "$M" "$(disk_usage "$SRC/thin.img")" "allocated bytes after fallocate"
run fallocate --keep-size --offset $((G + M)) --length "$M" "$MNT/thin.img"
assert_eq $((G + M)) "$(stat -c %s "$MNT/thin.img")" "size after fallocate --keep-size"

# A sparse-aware copy inside the mount (SEEK_DATA, copy_file_range) keeps
# the copy thin and identical.
run cp --sparse=always "$MNT/thin.img" "$MNT/copy.img"
assert_le "$(disk_usage "$SRC/copy.img")" $((3 * M)) "allocated bytes of a sparse copy"
run cmp "$MNT/thin.img" "$MNT/copy.img" || fail "sparse copy differs from the original"

umount_mfs "$MNT"
exit 0
