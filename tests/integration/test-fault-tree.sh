#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# The guest changes the tree under the copier's feet.  Each change is made
# through the mount when the copier is on the file it concerns (the
# status's per-file cursor says where it is), and to a reference copy of the
# source:
#
#   truncate-down   the file being copied is cut below the cursor, then
#                   written again past its new end;
#   truncate-up     the file being copied grows (a sparse tail) and gets
#                   data far out;
#   delete          the file being copied is removed;
#   rename          the file being copied is renamed, in its directory;
#   rename-dir      the directory of the file being copied is renamed, and
#                   the file moved on into another directory;
#   replace         another file is renamed over the file being copied;
#   delete-recreate the file being copied is removed and a file of the same
#                   name made at once.
#
# Meanwhile a guest (fio with verification) writes another image.  Then
# the migration must complete (switch=manual: mirrored, compared, switched)
# and the target equals, byte for byte, what the mount showed before the
# switch and the reference: names, modes, sizes, contents.

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
. "$(dirname "${BASH_SOURCE[0]}")/lib-migration.sh"
. "$(dirname "${BASH_SOURCE[0]}")/lib-control.sh"
. "$(dirname "${BASH_SOURCE[0]}")/lib-fault.sh"
require_cmd fio truncate
cd "$TESTDIR"

SRC="$TESTDIR/src"
DST="$TESTDIR/dst"
MNT="$TESTDIR/mnt"
REF="$TESTDIR/ref"
mkdir -p "$SRC/d1/sub" "$SRC/d2" "$SRC/d3" "$SRC/d4" "$DST" "$MNT"
# Nine files the copier meets in turn, for seven changes (the walk is
# breadth first; which comes first does not matter: each change waits for
# the copier to be on a file no change has used yet, and a slow run may
# miss one or two).
for f in f1 f2 f3 d1/f4 d2/f5 d3/f6 d1/sub/f7 d4/f8 d4/f9; do
	head -c $((12 * MiB)) /dev/urandom >"$SRC/$f.raw"
done
head -c $((1 * MiB)) /dev/urandom >"$SRC/spare.raw"
head -c $((4 * MiB)) /dev/urandom >"$SRC/guest.raw"
head -c $((64 * 1024)) /dev/urandom >"$TESTDIR/patch"
cp -a "$SRC" "$REF"

USED=()
# copier_on: sets f to the path (target-relative) of a file the copier is
# in the middle of and no change has used yet (under any of its names);
# waits for one.
copier_on() {
	local deadline=$((SECONDS + 60))
	while :; do
		status_json "$MNT" "$TESTDIR/st.json"
		f="$("$PYTHON" - "$TESTDIR/st.json" "${USED[@]}" <<-'EOF'
		import json, os, re, sys
		st = json.load(open(sys.argv[1]))
		used = set(sys.argv[2:])
		for f in st["files"]:
		    # f1 ... f7, whatever they are called by now.
		    m = re.match(r"(f[0-9]+)", os.path.basename(f["path"]))
		    if (m and m.group(1) not in used and f["state"] == "copying"
		            and 0 < f["cp_offset"] < f["size"]):
		        print(m.group(1), f["path"])
		        break
		EOF
		)"
		if [[ -n "$f" ]]; then
			USED+=("${f%% *}")
			f="${f#* }"
			return
		fi
		[[ "$(json_field state "$TESTDIR/st.json")" == copying ]] ||
			fail "the copy ended before every change was made"
		((SECONDS < deadline)) || fail "the copier is on no file"
		sleep 0.05
	done
}

# both CMD...: run CMD with ROOT set to the mount, then to the reference.
both() {
	local ROOT
	for ROOT in "$MNT" "$REF"; do
		eval "$*" || fail "'$*' failed on $ROOT"
	done
}

mount_mfs "$SRC" "$MNT" -o "target=$DST,speed=8M,switch=manual"
guest_start tree "$MNT/guest.raw" 1

copier_on
log "truncate-down: $f"
both 'truncate -s 1M "$ROOT/$f" && dd if="$TESTDIR/patch" of="$ROOT/$f" bs=64k seek=40 conv=notrunc status=none'

copier_on
log "truncate-up: $f"
both 'truncate -s 64M "$ROOT/$f" && dd if="$TESTDIR/patch" of="$ROOT/$f" bs=64k seek=900 conv=notrunc status=none'

copier_on
log "delete: $f"
both 'rm "$ROOT/$f"'

copier_on
log "rename: $f"
both 'mv "$ROOT/$f" "$ROOT/${f%.raw}-renamed.raw"'

copier_on
log "rename-dir: $f"
d="$(dirname "$f")"
if [[ "$d" == . ]]; then
	# A file at the root: move it into a directory, and rename that.
	both 'mkdir -p "$ROOT/moved" && mv "$ROOT/$f" "$ROOT/moved/" && mv "$ROOT/moved" "$ROOT/moved-renamed"'
else
	both 'mv "$ROOT/$d" "$ROOT/$d-renamed" && mkdir -p "$ROOT/other" && mv "$ROOT/$d-renamed/$(basename "$f")" "$ROOT/other/"'
fi

copier_on
log "replace: $f"
both 'mv "$ROOT/spare.raw" "$ROOT/$f"'

copier_on
log "delete-recreate: $f"
both 'rm "$ROOT/$f" && head -c 100000 "$TESTDIR/patch" >"$ROOT/$f"'

check_not_failed "$MNT"
wait_status_state "$MNT" mirrored 120
guest_finish tree
# The guest's data belongs in the reference too.
cp "$SRC/guest.raw" "$REF/guest.raw"
assert_trees_equal "$REF" "$MNT" "the mount, mirrored"
ctl "$MNT" switch
wait_status_state "$MNT" switched 60
assert_trees_equal "$REF" "$DST" "the target after the switch"
assert_trees_equal "$DST" "$MNT" "the mount after the switch"
guest_verify tree "$DST/guest.raw"
umount_mfs "$MNT"
! mounts_under "$TESTDIR" || fail "a mirrorfs mount was left under $TESTDIR"
exit 0
