#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# What a guest or an operator's shell does to an image beside plain writes,
# through a real mount, while a migration copies and once it is mirrored:
# a shell '>' and Python's open(path, 'wb') (open with O_TRUNC, which
# libfuse delivers inside OPEN or CREATE, not as a truncate), and mknod(2)
# of a regular file then written.  After the switch, the mount and the
# target directory must hold exactly what the guest wrote (issue 17,
# defects 1 and 3: the target kept the old image's tail, and a mknod'ed
# file was empty there).

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
. "$(dirname "${BASH_SOURCE[0]}")/lib-migration.sh"
. "$(dirname "${BASH_SOURCE[0]}")/lib-control.sh"

SRC="$TESTDIR/src"
DST="$TESTDIR/dst"
MNT="$TESTDIR/mnt"
EXP="$TESTDIR/expected"
mkdir "$SRC" "$DST" "$MNT" "$EXP"

# Three images; the copier is held to 1 MiB/s so that the first changes
# land while it copies, some below its cursor and some above.
for i in 1 2 3 4; do
	head -c $((3 << 20)) /dev/urandom >"$SRC/img$i"
done
mount_mfs "$SRC" "$MNT"
ctl "$MNT" start "$DST" --switch manual --speed 1M
wait_status_state "$MNT" copying

# new_image NAME SIZE: new content for NAME, remembered in EXP.
new_image() {
	head -c "$2" /dev/urandom >"$EXP/$1"
}

# --- while copying: the cursor is inside img1, or before it -----------------
new_image img1 1000
cat "$EXP/img1" >"$MNT/img1"
new_image img2 $((5 << 20))
run "$PYTHON" - "$MNT/img2" "$EXP/img2" <<-'PY'
import sys
data = open(sys.argv[2], "rb").read()
with open(sys.argv[1], "wb") as f:
    # Leave a hole where the old image had data: a target that kept the
    # old bytes differs there.
    f.seek(1 << 20)
    f.write(data[1 << 20:])
PY
"$PYTHON" - "$EXP/img2" <<-'PY'
import sys
p = sys.argv[1]
data = bytearray(open(p, "rb").read())
data[: 1 << 20] = bytes(1 << 20)
open(p, "wb").write(data)
PY
new_image made1 70000
run "$PYTHON" -c 'import os, stat, sys; os.mknod(sys.argv[1], stat.S_IFREG | 0o640)' "$MNT/made1"
cat "$EXP/made1" >>"$MNT/made1"
[[ "$(status_field "$MNT" state)" == copying ]] ||
	fail "the copy ended before the changes meant to race it"

# --- mirrored ------------------------------------------------------------------
ctl "$MNT" speed 0
run "$MIRRORFS_STATUS" --wait mirrored "$MNT" >/dev/null
new_image img3 4097
cat "$EXP/img3" >"$MNT/img3"
new_image made2 12345
run "$PYTHON" -c 'import os, stat, sys; os.mknod(sys.argv[1], stat.S_IFREG | 0o600)' "$MNT/made2"
cat "$EXP/made2" >>"$MNT/made2"
cp "$SRC/img4" "$EXP/img4"

# Before the switch the source is authoritative, and the target must match it.
for f in img1 img2 img3 img4 made1 made2; do
	cmp -s "$EXP/$f" "$MNT/$f" || fail "$f through the mount, before the switch, is not what was written"
	cmp -s "$EXP/$f" "$DST/$f" || fail "$f in the target, mirrored, is not what was written"
done
ctl "$MNT" switch
wait_switched "$SRC" "$MNT"
for f in img1 img2 img3 img4 made1 made2; do
	cmp -s "$EXP/$f" "$MNT/$f" || fail "$f through the mount, after the switch, is not what was written"
	cmp -s "$EXP/$f" "$DST/$f" || fail "$f in the target, after the switch, is not what was written"
done
assert_eq "$(status_field "$MNT" error)" null "the migration's error"
umount_mfs "$MNT"
