#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Per-VM jobs (issue 21): "mirrorfsctl MNT start TARGET --only NAME" moves
# just those entries of the mount's top directory, a VM's image or its
# directory, and leaves the rest served from where it is.
#
#   mirrored  while vm1's entries are mirrored (switch=manual), guest
#             writes reach both sides for vm1 and the source only for vm2;
#             names made inside vm1/ are mirrored, names made elsewhere
#             are not; a rename or a link that would carry an object into
#             or out of the job's entries fails with EXDEV (as across file
#             systems), one inside them works
#   switched  the status names the job's entries and the placements, the
#             mount serves vm1's entries from the target (writes land
#             there) and vm2's from the source; the root lists each name
#             once, and its fsync flushes the target's directory too; the
#             target holds vm1's entries and nothing of vm2
#   restart   a daemon started again serves the same: the placements
#             record in the source says where each entry went
#   second    a second job moves vm2.raw elsewhere and deletes it from
#             the source (still listed, from its new home); a whole-tree start,
#             an entry moved already, a missing one, a path, are refused
#             with one line each and change nothing
#   option    the mount option only=NAME:NAME does the same; the same
#             command line after the switch has nothing left to do
#   crash     kill -9 in the copy of an --only job: the restart resumes
#             it, with its entries, and it switches
#   links     a file with a hard link outside the entries refuses the
#             start (moved, its other name would serve a stale copy); links
#             inside them move as links
#   writers   a process writing beside the mount stops only a job whose
#             entries hold its file
#   review    found by review, each failed before its fix: a resumed job
#             pruned an entry another job had moved into the same target; a
#             crash at the placements record left the target's records for
#             a later job to take as its own; a target inside a moved entry
#             was accepted; rewinddir of the top directory did not list it
#             again
#   example   examples/move-one-vm.sh runs
#   adopt     two qemu-storage-daemons (two VMs) hold their images in a
#             directory before it is mounted over; vmA is adopted, moved
#             with --only and released by the same start (--release-qmp)
#             while vmB writes beside the mount all along; vmA ends on the
#             target's file, vmB on its own, untouched, and the mount
#             unmounts; every write reads back; mounted again, vmB may be
#             adopted (the rest of the source is served still) and its
#             release has nothing to do; a QEMU on a moved entry's stale
#             copy in the source is refused; release moves a QEMU's disk
#             that a per-VM job moved and leaves its other disk on the mount

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
. "$(dirname "${BASH_SOURCE[0]}")/lib-migration.sh"
. "$(dirname "${BASH_SOURCE[0]}")/lib-control.sh"
. "$(dirname "${BASH_SOURCE[0]}")/lib-invariant.sh"
. "$(dirname "${BASH_SOURCE[0]}")/lib-qsd.sh"
require_cmd md5sum

SRC="$TESTDIR/src"
TGT="$TESTDIR/tgt"
TGT2="$TESTDIR/tgt2"
MNT="$TESTDIR/mnt"
mkdir "$SRC" "$TGT" "$TGT2" "$MNT" "$SRC/vm1" "$SRC/vm2"
head -c $((8 << 20)) /dev/urandom >"$SRC/vm1.raw"
head -c $((8 << 20)) /dev/urandom >"$SRC/vm2.raw"
head -c $((1 << 20)) /dev/urandom >"$SRC/vm1/disk.qcow2"
head -c $((1 << 20)) /dev/urandom >"$SRC/vm2/disk.qcow2"
echo kept >"$TGT/operator-file"

log "mirrored: vm1.raw and vm1/ move, vm2 stays"
mount_mfs "$SRC" "$MNT"
ctl "$MNT" start "$TGT" --only vm1.raw --only vm1/ --switch manual
wait_status_state "$MNT" mirrored 60
assert_eq '["vm1.raw", "vm1"]' "$(status_field "$MNT" only)" "the job's entries"
write_at "$MNT/vm1.raw" 4096 "vm1-mirrored"
write_at "$MNT/vm2.raw" 4096 "vm2-mirrored"
assert_eq vm1-mirrored "$(read_at "$TGT/vm1.raw" 4096 12)" "a mirrored write to vm1 in the target"
assert_eq "$(md5 "$SRC/vm1.raw")" "$(md5 "$TGT/vm1.raw")" "vm1.raw on both sides"
echo new >"$MNT/vm1/new" || fail "creating vm1/new"
echo other >"$MNT/vm2/new" || fail "creating vm2/new"
echo top >"$MNT/top.txt" || fail "creating top.txt"
[[ -f "$TGT/vm1/new" ]] || fail "vm1/new, made while mirrored, is not in the target"
[[ ! -e "$TGT/vm2" && ! -e "$TGT/top.txt" && ! -e "$TGT/vm2.raw" ]] ||
	fail "the target holds what the job does not move: $(ls "$TGT")"
run mv "$MNT/vm1/new" "$MNT/vm1/renamed" || fail "a rename inside vm1/"
[[ -f "$TGT/vm1/renamed" && ! -e "$TGT/vm1/new" ]] || fail "the rename inside vm1/ was not mirrored"
expect_errno "rename out of vm1/" "cross-device" python3 -c 'import os, sys; os.rename(sys.argv[1], sys.argv[2])' "$MNT/vm1/renamed" "$MNT/vm2/renamed"
expect_errno "rename into vm1/" "cross-device" python3 -c 'import os, sys; os.rename(sys.argv[1], sys.argv[2])' "$MNT/vm2/new" "$MNT/vm1/stolen"
expect_errno "rename of vm1.raw at the top" "cross-device" python3 -c 'import os, sys; os.rename(sys.argv[1], sys.argv[2])' "$MNT/vm1.raw" "$MNT/old.raw"
expect_errno "link into vm1/" "cross-device" python3 -c 'import os, sys; os.link(sys.argv[1], sys.argv[2])' "$MNT/top.txt" "$MNT/vm1/top-link"
[[ -f "$MNT/vm1/renamed" && -f "$MNT/vm2/new" && -f "$MNT/vm1.raw" ]] ||
	fail "a refused rename moved something"
validate_status "$(status_json "$MNT" "$TESTDIR/mirrored.json"; echo "$TESTDIR/mirrored.json")"

log "switched: vm1's entries served from the target, the rest from the source"
ctl "$MNT" switch
wait_status_state "$MNT" switched 60
status_json "$MNT" "$TESTDIR/switched.json"
validate_status "$TESTDIR/switched.json"
assert_eq "$SRC" "$(json_field served "$TESTDIR/switched.json")" "served after a per-VM switch"
assert_eq "[{\"name\": \"vm1.raw\", \"dir\": \"$TGT\"}, {\"name\": \"vm1\", \"dir\": \"$TGT\"}]" \
	"$(python3 -c 'import json, sys; p = json.load(open(sys.argv[1]))["placements"]; print(json.dumps(sorted(p, key=lambda e: e["name"], reverse=True)))' "$TESTDIR/switched.json")" \
	"the placements"
write_at "$MNT/vm1.raw" 8192 "vm1-after"
write_at "$MNT/vm2.raw" 8192 "vm2-after"
assert_eq vm1-after "$(read_at "$TGT/vm1.raw" 8192 9)" "a write to vm1.raw after the switch, in the target"
assert_ne vm1-after "$(read_at "$SRC/vm1.raw" 8192 9)" "a write to vm1.raw after the switch, in the source"
assert_eq vm2-after "$(read_at "$SRC/vm2.raw" 8192 9)" "a write to vm2.raw after the switch, in the source"
echo after >"$MNT/vm1/after" || fail "creating vm1/after"
[[ -f "$TGT/vm1/after" && ! -e "$SRC/vm1/after" ]] || fail "vm1/after was not made in the target"
assert_eq "top.txt vm1 vm1.raw vm2 vm2.raw" "$(ls "$MNT" | tr '\n' ' ' | sed 's/ $//')" "the mount's top directory"
assert_eq "operator-file vm1 vm1.raw" "$(ls "$TGT" | tr '\n' ' ' | sed 's/ $//')" "the target's top directory"
# fsync of the top directory flushes the placed entries' home too: its
# names (vm1.raw made again there, say) are the top directory's as well.
if command -v strace >/dev/null; then
	strace_daemon "$MNT" "$TESTDIR/strace.log" fsync,fdatasync
	python3 -c 'import os, sys; fd = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECTORY); os.fsync(fd)' "$MNT" ||
		fail "fsync of the top directory"
	strace_stop
	grep -qF "<$TGT>" "$TESTDIR/strace.log" ||
		fail "fsync of the top directory did not flush $TGT:"$'\n'"$(cat "$TESTDIR/strace.log")"
	grep -qF "<$SRC>" "$TESTDIR/strace.log" ||
		fail "fsync of the top directory did not flush $SRC:"$'\n'"$(cat "$TESTDIR/strace.log")"
fi
SUM_VM1="$(md5 "$MNT/vm1.raw")"
SUM_VM2="$(md5 "$MNT/vm2.raw")"
assert_eq "$SUM_VM1" "$(md5 "$TGT/vm1.raw")" "vm1.raw through the mount and in the target"

log "restart: the placements record sends vm1's entries to the target"
umount_mfs "$MNT"
mount_mfs "$SRC" "$MNT"
assert_eq "$SUM_VM1" "$(md5 "$MNT/vm1.raw")" "vm1.raw after a restart"
assert_eq "$SUM_VM2" "$(md5 "$MNT/vm2.raw")" "vm2.raw after a restart"
[[ -f "$MNT/vm1/after" ]] || fail "vm1/after is gone after a restart"
assert_eq "top.txt vm1 vm1.raw vm2 vm2.raw" "$(ls "$MNT" | tr '\n' ' ' | sed 's/ $//')" "the top directory after a restart"

log "refusals: one line each, nothing changed"
expect_cli "whole tree with placements" 1 "moved by per-VM jobs" "$MIRRORFSCTL" "$MNT" start "$TGT2"
expect_cli "an entry moved already" 1 "'vm1.raw' was moved to $TGT already" "$MIRRORFSCTL" "$MNT" start "$TGT2" --only vm1.raw
expect_cli "a missing entry" 1 "'vm9.raw': No such file or directory" "$MIRRORFSCTL" "$MNT" start "$TGT2" --only vm9.raw
expect_cli "a path" 2 "is not an entry of the mount's top directory" "$MIRRORFSCTL" "$MNT" start "$TGT2" --only vm2/disk.qcow2
expect_cli "a dot" 2 "is not an entry of the mount's top directory" "$MIRRORFSCTL" "$MNT" start "$TGT2" --only ..
expect_cli "only without start" 2 "go with start" "$MIRRORFSCTL" "$MNT" pause --only vm2.raw
[[ -z "$(ls "$TGT2")" ]] || fail "a refused start left files in $TGT2: $(ls "$TGT2")"

log "second: vm2.raw to another target"
ctl "$MNT" start "$TGT2" --only vm2.raw --delete-source
wait_status_state "$MNT" switched 60
assert_eq "$SUM_VM2" "$(md5 "$TGT2/vm2.raw")" "vm2.raw in the second target"
[[ ! -e "$SRC/vm2.raw" && -f "$SRC/vm2/disk.qcow2" && -f "$SRC/top.txt" ]] ||
	fail "--delete-source of vm2.raw: the source holds $(ls "$SRC")"
assert_eq "top.txt vm1 vm1.raw vm2 vm2.raw" "$(ls "$MNT" | tr '\n' ' ' | sed 's/ $//')" "the top directory with vm2.raw in the second target only"
write_at "$MNT/vm2.raw" 12288 "vm2-second"
assert_eq vm2-second "$(read_at "$TGT2/vm2.raw" 12288 10)" "a write to vm2.raw after its switch"
status_json "$MNT" "$TESTDIR/second.json"
validate_status "$TESTDIR/second.json"
assert_eq 3 "$(python3 -c 'import json, sys; print(len(json.load(open(sys.argv[1]))["placements"]))' "$TESTDIR/second.json")" "placements after two jobs"
umount_mfs "$MNT"

log "crash: kill -9 in the copy of an --only job, the restart resumes it"
SRC="$TESTDIR/src3"
TGT="$TESTDIR/tgt3"
mkdir "$SRC" "$TGT"
head -c $((32 << 20)) /dev/urandom >"$SRC/a.raw"
head -c $((4 << 20)) /dev/urandom >"$SRC/b.raw"
SUM_A="$(md5 "$SRC/a.raw")"
MIRRORFS_TEST_CRASH_AT=chunk:4 mount_mfs "$SRC" "$MNT"
cli "$MIRRORFSCTL" "$MNT" start "$TGT" --only a.raw --chunk 1M
wait_daemon_gone "$MNT" 30 >/dev/null
assert_eq migrating "$(job_state "$SRC" "$TGT")" "the source's record of the job"
mount_mfs "$SRC" "$MNT"
wait_status_state "$MNT" switched 60
assert_eq '["a.raw"]' "$(status_field "$MNT" only)" "the resumed job's entries"
assert_eq "$SUM_A" "$(md5 "$MNT/a.raw")" "a.raw after the resumed job"
assert_eq "$SUM_A" "$(md5 "$TGT/a.raw")" "a.raw in the target"
[[ ! -e "$TGT/b.raw" ]] || fail "b.raw was moved by a job of a.raw"
[[ ! -e "$(job_record "$SRC" "$TGT")" ]] || fail "the switched job's record is left: $(cat "$(job_record "$SRC" "$TGT")")"
umount_mfs "$MNT"

log "crash between the placements record and the job's: the restart finds the job done"
SRC="$TESTDIR/src6"
TGT="$TESTDIR/tgt6"
mkdir "$SRC" "$TGT"
head -c $((2 << 20)) /dev/urandom >"$SRC/a.raw"
echo b >"$SRC/b.raw"
SUM_A="$(md5 "$SRC/a.raw")"
MIRRORFS_TEST_CRASH_AT=placed mount_mfs "$SRC" "$MNT"
cli "$MIRRORFSCTL" "$MNT" start "$TGT" --only a.raw
wait_daemon_gone "$MNT" 30 >/dev/null
assert_eq migrating "$(job_state "$SRC" "$TGT")" "the job's record, left by the crash"
[[ -f "$SRC/.mirrorfs-journal.placements" ]] || fail "no placements record after the crash"
mount_mfs "$SRC" "$MNT"
assert_eq idle "$(status_field "$MNT" state)" "the state after the restart"
[[ ! -e "$(job_record "$SRC" "$TGT")" ]] || fail "the done job's record is left: $(cat "$(job_record "$SRC" "$TGT")")"
write_at "$MNT/a.raw" 0 "after-crash"
assert_eq after-crash "$(read_at "$TGT/a.raw" 0 11)" "a write to a.raw after the restart, in the target"
assert_eq b "$(cat "$MNT/b.raw")" "b.raw after the restart"
umount_mfs "$MNT"

log "writers: a process writing beside the mount stops only a job that holds its file"
SRC="$TESTDIR/src4"
mkdir "$SRC" "$TESTDIR/tgt4" "$TESTDIR/tgt5"
echo a >"$SRC/busy.raw"
echo b >"$SRC/free.raw"
mount_mfs "$SRC" "$MNT"
exec 4>>"$SRC/busy.raw"
expect_cli "a writer on busy.raw" 1 "holds $SRC/busy.raw open for writing beside the mount" \
	"$MIRRORFSCTL" "$MNT" start "$TESTDIR/tgt4" --only busy.raw
ctl "$MNT" start "$TESTDIR/tgt5" --only free.raw
wait_status_state "$MNT" switched 60
exec 4>&-
umount_mfs "$MNT"
log "the mount option: -o target=DIR,only=NAME:NAME, and the same command line again after the switch"
SRC="$TESTDIR/src9"
TGT="$TESTDIR/tgt9"
mkdir -p "$SRC/d" "$TGT"
head -c $((1 << 20)) /dev/urandom >"$SRC/x.raw"
echo y >"$SRC/d/y"
echo z >"$SRC/z.raw"
mount_mfs "$SRC" "$MNT" -o "target=$TGT,only=x.raw:d/"
wait_status_state "$MNT" switched 60
assert_eq '["x.raw", "d"]' "$(status_field "$MNT" only)" "the mount option's entries"
[[ -f "$TGT/x.raw" && -f "$TGT/d/y" && ! -e "$TGT/z.raw" ]] || fail "the mount option's job moved: $(ls "$TGT")"
umount_mfs "$MNT"
mount_mfs "$SRC" "$MNT" -o "target=$TGT,only=x.raw:d/"
assert_contains "$(cat "${MFS_LOG[$(realpath "$MNT")]}")" "already migrated to '$TGT'" "the same command line after the switch"
echo more >>"$MNT/d/y"
assert_eq "$(printf 'y\nmore')" "$(cat "$TGT/d/y")" "a write after the restart, in the target"
umount_mfs "$MNT"
expect_cli "only= without target=" 1 "need -o target=DIR" "$MIRRORFS" -f -o only=x.raw "$SRC" "$MNT"
expect_cli "only= with a path" 1 "is not an entry of the mount's top directory" "$MIRRORFS" -f -o "target=$TGT,only=d/y" "$SRC" "$MNT"

log "hard links: one inside the entries moves, one across them refuses the start"
SRC="$TESTDIR/src8"
TGT="$TESTDIR/tgt8"
mkdir -p "$SRC/a" "$SRC/b" "$TGT"
echo x >"$SRC/a/x"
ln "$SRC/a/x" "$SRC/b/y"
echo inside >"$SRC/a/p"
ln "$SRC/a/p" "$SRC/a/q"
mount_mfs "$SRC" "$MNT"
expect_cli "a hard link across the entries" 1 "'a/x' has 2 hard links, 1 of them outside the entries to move" \
	"$MIRRORFSCTL" "$MNT" start "$TGT" --only a
assert_eq "" "$(ls -A "$TGT")" "the target after the refused start"
rm "$MNT/b/y"
ctl "$MNT" start "$TGT" --only a
wait_status_state "$MNT" switched 60
assert_eq "$(stat -c %i "$TGT/a/p")" "$(stat -c %i "$TGT/a/q")" "a link inside the entries, in the target"
echo more >>"$MNT/a/p"
assert_eq "$(printf 'inside\nmore')" "$(cat "$MNT/a/q")" "the other name of a linked file after the switch"
umount_mfs "$MNT"

log "review: a resumed per-VM job prunes only its own entries from a shared target"
SRC="$TESTDIR/src10"
TGT="$TESTDIR/tgt10"
mkdir -p "$SRC/vm1" "$TGT"
echo one >"$SRC/vm1/disk"
head -c $((8 << 20)) /dev/urandom >"$SRC/vm2.raw"
mount_mfs "$SRC" "$MNT"
ctl "$MNT" start "$TGT" --only vm1 --delete-source
wait_status_state "$MNT" switched 60
rm -rf "$MNT/vm1"
ctl "$MNT" start "$TGT" --only vm2.raw --switch manual
wait_status_state "$MNT" mirrored 60
mkdir "$MNT/vm1"
echo precious >"$MNT/vm1/disk"
kill -9 "${MFS_PID[$(realpath "$MNT")]}"
wait_daemon_gone "$MNT" 30 >/dev/null
mount_mfs "$SRC" "$MNT"
wait_status_state "$MNT" mirrored 60
assert_eq precious "$(cat "$MNT/vm1/disk" 2>&1)" "vm1/disk, made in the first job's home, after the second job resumed"
assert_eq precious "$(cat "$TGT/vm1/disk" 2>&1)" "vm1/disk in the shared target after the resume"
ctl "$MNT" cancel
wait_status_state "$MNT" cancelled 60
umount_mfs "$MNT"

log "review: a crash at the placements record leaves no records in the target for a later job to take as its own"
SRC="$TESTDIR/src11"
TGT="$TESTDIR/tgt11"
mkdir -p "$SRC" "$TGT"
echo aaa >"$SRC/a.raw"
echo bbb >"$SRC/b.raw"
MIRRORFS_TEST_CRASH_AT=placed mount_mfs "$SRC" "$MNT" -o "target=$TGT,only=a.raw"
wait_daemon_gone "$MNT" 30 >/dev/null
[[ -e "$TGT/.mirrorfs-journal" ]] || fail "the crash left no copying journal in the target (the test's premise)"
# The same command line again: the job is done, its records go.
mount_mfs "$SRC" "$MNT" -o "target=$TGT,only=a.raw"
[[ ! -e "$(job_record "$SRC" "$TGT")" ]] || fail "the done job's record is left: $(cat "$(job_record "$SRC" "$TGT")")"
[[ ! -e "$TGT/.mirrorfs-journal" && ! -e "$TGT/.mirrorfs-journal.checkpoints" ]] ||
	fail "the done job's records are left in the target: $(ls -A "$TGT")"
echo after >>"$MNT/a.raw"
rm "$SRC/a.raw" # the operator removes the stale copy
ctl "$MNT" start "$TGT" --only b.raw
wait_status_state "$MNT" switched 60
umount_mfs "$MNT"
mount_mfs "$SRC" "$MNT"
assert_eq "$(printf 'aaa\nafter')" "$(cat "$MNT/a.raw" 2>&1)" "a.raw after a second job into its home and a restart"
umount_mfs "$MNT"

log "review: a target inside a moved entry is refused"
SRC="$TESTDIR/src12"
TGT="$TESTDIR/tgt12"
mkdir -p "$SRC/vm1/sub" "$TGT"
echo one >"$SRC/vm1/disk"
echo two >"$SRC/vm2.raw"
mount_mfs "$SRC" "$MNT"
ctl "$MNT" start "$TGT" --only vm1
wait_status_state "$MNT" switched 60
expect_cli "a target that is a moved entry" 1 "lies inside 'vm1', which the mount serves from $TGT" \
	"$MIRRORFSCTL" "$MNT" start "$TGT/vm1" --only vm2.raw
expect_cli "a target inside a moved entry" 1 "lies inside 'vm1', which the mount serves from $TGT" \
	"$MIRRORFSCTL" "$MNT" start "$TGT/vm1/sub" --only vm2.raw
[[ ! -e "$TGT/vm1/vm2.raw" && ! -e "$TGT/vm1/sub/vm2.raw" ]] || fail "a refused start copied vm2.raw"

log "review: rewinddir of the top directory lists it again"
cat >"$TESTDIR/rewind.py" <<-'PY'
	import ctypes, os, sys
	libc = ctypes.CDLL("libc.so.6", use_errno=True)
	class Dirent(ctypes.Structure):
	    _fields_ = [("d_ino", ctypes.c_ulong), ("d_off", ctypes.c_long),
	                ("d_reclen", ctypes.c_ushort), ("d_type", ctypes.c_ubyte),
	                ("d_name", ctypes.c_char * 256)]
	libc.opendir.restype = ctypes.c_void_p
	libc.opendir.argtypes = [ctypes.c_char_p]
	libc.readdir.restype = ctypes.POINTER(Dirent)
	libc.readdir.argtypes = [ctypes.c_void_p]
	libc.rewinddir.argtypes = [ctypes.c_void_p]
	d = libc.opendir(sys.argv[1].encode())
	def names():
	    out = []
	    while True:
	        e = libc.readdir(d)
	        if not e:
	            break
	        out.append(e.contents.d_name.decode())
	    return " ".join(sorted(n for n in out if n not in (".", "..")))
	names()
	open(os.path.join(sys.argv[1], "new.txt"), "w").write("x")
	os.unlink(os.path.join(sys.argv[1], sys.argv[2]))
	libc.rewinddir(d)
	print(names())
	PY
assert_eq "vm1 new.txt" "$(python3 "$TESTDIR/rewind.py" "$MNT" vm2.raw | tr ' ' '\n' | sort -r | tr '\n' ' ' | sed 's/ $//')" \
	"the top directory after a create, an unlink and rewinddir"
umount_mfs "$MNT"

log "adopt and release one VM of two, the other running beside the mount all along"
require_cmd qemu-storage-daemon qemu-io
DIR="$TESTDIR/vms"
TGT="$TESTDIR/vms-tgt"
mkdir "$DIR" "$TGT"
two_vms "$DIR" 16
mount_mfs "$DIR" "$DIR"
expect_cli "--only vmA.raw while vmA writes beside the mount" 1 "holds $DIR/vmA.raw open for writing beside the mount" \
	"$MIRRORFSCTL" "$DIR" start "$TGT" --only vmA.raw
expect_cli "adopt vmA" 0 "adopted 1 file" "$MIRRORFSCTL" "$DIR" adopt --qmp "$TESTDIR/vmA.qmp"
io vmA 'write -P 0x51 1M 1M'
# vmB goes on writing beside the mount: not this job's business.
ctl "$DIR" start "$TGT" --only vmA.raw --release-qmp "$TESTDIR/vmA.qmp"
assert_contains "$CLI_OUT" "released 1 file of QEMU (pid ${QSD_PID[vmA]})" "start --only --release-qmp"
io vmA 'write -P 0x61 2M 1M'
io vmB 'write -P 0x62 2M 1M'
holds vmA "$TGT/vmA.raw" || fail "vmA's QEMU does not hold $TGT/vmA.raw: $(ls -l /proc/"${QSD_PID[vmA]}"/fd)"
holds vmB "$DIR/vmB.raw" || fail "vmB's QEMU lost $DIR/vmB.raw"
[[ ! -e "$TGT/vmB.raw" ]] || fail "vmB.raw was moved"
# The mount unmounts with vmA released and vmB never on it.
umount_mfs "$DIR"
io vmA 'read -P 0x41 0 1M' 'read -P 0x51 1M 1M' 'read -P 0x61 2M 1M'
io vmB 'read -P 0x42 0 1M' 'read -P 0x62 2M 1M'
out="$(qemu-io -f raw -r -c 'read -P 0x51 1M 1M' -c 'read -P 0x61 2M 1M' "$TGT/vmA.raw" 2>&1)"
[[ "$out" != *failed* ]] || fail "the target's vmA.raw:"$'\n'"$out"
kill "${QSD_PID[vmA]}"
wait_pid_exit "${QSD_PID[vmA]}" 30 || fail "qemu-storage-daemon vmA did not stop"
# Mounted again, the other VM may still be adopted, and has nothing to release.
mount_mfs "$DIR" "$DIR"
expect_cli "adopt after a per-VM switch" 0 "adopted 1 file" \
	"$MIRRORFSCTL" "$DIR" adopt --qmp "$TESTDIR/vmB.qmp"
io vmB 'write -P 0x72 3M 1M'
expect_cli "release of a QEMU with nothing moved" 0 "nothing to release" \
	"$MIRRORFSCTL" "$DIR" release --qmp "$TESTDIR/vmB.qmp"
holds vmB "$DIR/vmB.raw" || fail "vmB's QEMU lost $DIR/vmB.raw"
io vmB 'read -P 0x42 0 1M' 'read -P 0x62 2M 1M' 'read -P 0x72 3M 1M'
kill "${QSD_PID[vmB]}"
wait_pid_exit "${QSD_PID[vmB]}" 30 || fail "qemu-storage-daemon vmB did not stop"
umount_mfs "$DIR"

log "a QEMU on a moved entry's stale copy in the source is not adopted"
SRC="$TESTDIR/src7"
TGT="$TESTDIR/tgt7"
mkdir "$SRC" "$TGT"
head -c $((1 << 20)) /dev/urandom >"$SRC/vmC.raw"
mount_mfs "$SRC" "$MNT"
ctl "$MNT" start "$TGT" --only vmC.raw
wait_status_state "$MNT" switched 60
qsd vmC "$SRC/vmC.raw"
expect_cli "adopt of a stale copy" 1 "a copy left behind by a per-VM job" \
	"$MIRRORFSCTL" "$MNT" adopt --qmp "$TESTDIR/vmC.qmp"
kill "${QSD_PID[vmC]}"
wait_pid_exit "${QSD_PID[vmC]}" 30 || fail "qemu-storage-daemon vmC did not stop"

log "release moves only what the per-VM job moved: a QEMU with a disk in and a disk out"
head -c $((1 << 20)) /dev/urandom >"$SRC/d1.raw"
head -c $((1 << 20)) /dev/urandom >"$SRC/d2.raw"
qsd vmD "$MNT/d1.raw" "$MNT/d2.raw"
ctl "$MNT" start "$TGT" --only d1.raw
wait_status_state "$MNT" switched 60
expect_cli "release of one disk of two" 0 "released 1 file" \
	"$MIRRORFSCTL" "$MNT" release --qmp "$TESTDIR/vmD.qmp"
holds vmD "$TGT/d1.raw" || fail "vmD's QEMU does not hold $TGT/d1.raw"
holds vmD "$MNT/d2.raw" || fail "vmD's QEMU no longer holds $MNT/d2.raw"
kill "${QSD_PID[vmD]}"
wait_pid_exit "${QSD_PID[vmD]}" 30 || fail "qemu-storage-daemon vmD did not stop"
umount_mfs "$MNT"
log "examples/move-one-vm.sh, as the README shows it"
out="$(TMPDIR="$TESTDIR" "$(dirname "${BASH_SOURCE[0]}")/../../examples/move-one-vm.sh" \
	"$(dirname "$(dirname "$MIRRORFS")")" 2>&1)" || fail "examples/move-one-vm.sh failed:"$'\n'"$out"
assert_contains "$out" "vm1 now runs on" "the example's last line"
log "done"
