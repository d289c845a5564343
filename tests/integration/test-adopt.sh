#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Adopt and release (issue 21): QEMUs started before the mount, with their
# images open in the directory, move onto the mount and later off it onto
# the target, with no restart and no error their clients see.
#
# Two qemu-storage-daemons stand for two VMs (the quickest QEMU to start);
# their disks are written and read over NBD by qemu-io, as a guest would:
#   vm1  a qcow2 over a qcow2 backing file, cache=none, and a raw second
#        disk with writeback;
#   vm2  one raw disk.
# Then:
#   - the mount is made over the directory;
#   - a start is refused while the QEMUs write beside the mount, naming the
#     first and counting the others, and changes nothing (a read-only
#     descriptor beside the mount, held by this shell, is no refusal);
#   - adopt --dry-run changes nothing; adopt moves every file node onto the
#     mount while vm1's client writes, and vm1's client sees no error; the
#     QEMUs then hold no descriptor beside the mount (/proc/PID/fd); a
#     second adopt has nothing to do;
#   - the migration runs while the client writes, started with
#     --release-qmp for vm2; release before the switch is refused; after
#     it vm2 is released by that start command, vm1 by release, both QEMUs
#     end holding only the target's files, and the mount unmounts;
#   - every pattern written in every phase reads back, through QEMU and
#     from the target's files; the reopens' pauses are logged;
#   - what cannot be adopted is refused, changing nothing: a -drive with no
#     node-name, a file node with no format node above it, a socket that is
#     not QEMU's.

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
. "$(dirname "${BASH_SOURCE[0]}")/lib-control.sh"
require_cmd qemu-storage-daemon qemu-img qemu-io qemu-system-x86_64
cd "$TESTDIR"

DIR="$TESTDIR/vms"
TGT="$TESTDIR/tgt"
mkdir -p "$DIR" "$TGT"

# qsd NAME ARGS...: a qemu-storage-daemon with its QMP socket at NAME.qmp and
# an NBD server at NAME.nbd; its pid in QSD_PID[NAME].
declare -A QSD_PID=()
qsd() {
	local name="$1" deadline=$((SECONDS + 30))
	shift
	qemu-storage-daemon --chardev "socket,id=m,path=$TESTDIR/$name.qmp,server=on,wait=off" \
		--monitor chardev=m --nbd-server "addr.type=unix,addr.path=$TESTDIR/$name.nbd" \
		"$@" >"$TESTDIR/$name.log" 2>&1 &
	QSD_PID[$name]=$!
	track_bg $!
	until [[ -S "$TESTDIR/$name.nbd" ]]; do
		pid_alive "${QSD_PID[$name]}" || fail "$name exited:"$'\n'"$(cat "$TESTDIR/$name.log")"
		((SECONDS < deadline)) || fail "$name did not start"
		sleep 0.05
	done
}

# nbd NAME EXPORT: the NBD address of one disk.
nbd() {
	printf 'nbd+unix:///%s?socket=%s/%s.nbd' "$2" "$TESTDIR" "$1"
}

# io NAME EXPORT COMMAND...: qemu-io commands on a disk as its guest sees it;
# fails on any error qemu-io reports.
io() {
	local addr out rc=0 c args=()
	addr="$(nbd "$1" "$2")"
	shift 2
	for c in "$@"; do args+=(-c "$c"); done
	out="$(run qemu-io -f raw "${args[@]}" "$addr" 2>&1)" || rc=$?
	((rc == 0)) || fail "qemu-io $* on $addr: status $rc:"$'\n'"$out"
	[[ "$out" != *rror* && "$out" != *failed* ]] || fail "qemu-io $* on $addr:"$'\n'"$out"
}

# held PID beside|through: the regular files PID holds beside the mount
# (same names, the directory's own file system) or through it.
held() {
	local pid="$1" how="$2" mdev fd path dev
	mdev="$(stat -c %d "$DIR")"
	for fd in /proc/"$pid"/fd/*; do
		path="$(readlink "$fd")" || continue
		[[ -f "$fd" ]] || continue
		dev="$(stat -L -c %d "$fd")"
		if [[ "$how" == through ]]; then
			[[ "$dev" == "$mdev" ]] && echo "$path"
		else
			[[ "$dev" != "$mdev" && "$path" == "$DIR"/* ]] && echo "$path"
		fi
	done
	return 0
}

# writes NAME EXPORT FROM COUNT PATTERN: COUNT 64 KiB writes from FROM MiB on.
write_batch() {
	local cmds=() i
	for ((i = 0; i < $4; i++)); do
		cmds+=("write -P $5 $(($3 * 1048576 + i * 65536)) 64k")
	done
	io "$1" "$2" "${cmds[@]}"
}

log "--- images, and two QEMUs holding them before any mount"
run qemu-img create -q -f qcow2 "$DIR/base.qcow2" 64M
run qemu-io -f qcow2 -c 'write -P 0x11 0 1M' "$DIR/base.qcow2" >/dev/null
run qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 "$DIR/vm1.qcow2"
run qemu-img create -q -f raw "$DIR/vm1-data.raw" 32M
# Data for the copier: some seconds at the test's speed limit.
head -c $((48 * 1048576)) /dev/urandom >"$DIR/vm2.raw"
qsd vm1 --blockdev '{"driver":"qcow2","node-name":"vm1","file":{"driver":"file","filename":"'"$DIR"'/vm1.qcow2","cache":{"direct":true}}}' \
	--blockdev "driver=file,node-name=vm1-data-file,filename=$DIR/vm1-data.raw" \
	--blockdev driver=raw,node-name=vm1-data,file=vm1-data-file \
	--export type=nbd,id=e1,node-name=vm1,writable=on \
	--export type=nbd,id=e2,node-name=vm1-data,writable=on
qsd vm2 --blockdev "driver=file,node-name=vm2-file,filename=$DIR/vm2.raw" \
	--blockdev driver=raw,node-name=vm2,file=vm2-file \
	--export type=nbd,id=e3,node-name=vm2,writable=on
write_batch vm1 vm1 1 16 0x21
write_batch vm1 vm1-data 0 16 0x31
write_batch vm2 vm2 0 16 0x41

log "--- mount over the directory"
# A reader beside the mount (this shell, read-only): it does not stop a start.
exec 8<"$DIR/vm2.raw"
mount_mfs "$DIR" "$DIR"
[[ -n "$(held "${QSD_PID[vm1]}" beside)" ]] || fail "vm1's QEMU holds nothing beside the mount before adopt"

log "--- start refused while the QEMUs write beside the mount, changing nothing"
expect_cli "start with writers beside the mount" 1 \
	"qemu-storage-daemon (pid ${QSD_PID[vm1]}) holds $DIR/vm1.qcow2 open for writing beside the mount (and 2 more such files)" \
	"$MIRRORFSCTL" "$DIR" start "$TGT"
assert_contains "$CLI_ERR" "mirrorfsctl MOUNTPOINT adopt --qmp SOCKET" "the refusal's advice"
assert_eq idle "$(status_field "$DIR" state)" "state after the refused start"
assert_eq "" "$(ls -A "$TGT")" "the target after the refused start"

log "--- adopt: refused without --qmp, or on a socket that is not QEMU's; dry run changes nothing"
expect_cli "adopt without --qmp" 2 "adopt needs --qmp SOCKET" "$MIRRORFSCTL" "$DIR" adopt
expect_cli "--release-qmp with another command" 2 "go with start, not pause" \
	"$MIRRORFSCTL" "$DIR" pause --release-qmp "$TESTDIR/vm1.qmp"
expect_cli "--qmp with start" 2 "go with adopt and release, not start" \
	"$MIRRORFSCTL" "$DIR" start "$TGT" --qmp "$TESTDIR/vm1.qmp"
expect_cli "adopt on a missing socket" 1 "$TESTDIR/none.qmp" \
	"$MIRRORFSCTL" "$DIR" adopt --qmp "$TESTDIR/none.qmp"
expect_cli "adopt on mirrorfs's own socket" 1 "no QMP greeting" \
	"$MIRRORFSCTL" "$DIR" adopt --qmp "$(control_socket "$DIR")"
before="$(held "${QSD_PID[vm1]}" beside | sort)"
expect_cli "adopt --dry-run" 0 "would move $DIR/base.qcow2 -> $DIR/base.qcow2" \
	"$MIRRORFSCTL" "$DIR" adopt --dry-run --qmp "$TESTDIR/vm1.qmp"
assert_eq "$before" "$(held "${QSD_PID[vm1]}" beside | sort)" "vm1's files after a dry run"

log "--- adopt both while vm1's guest writes"
write_batch vm1 vm1 2 128 0x22 &
writer=$!
expect_cli "adopt" 0 "adopted 3 files" \
	"$MIRRORFSCTL" "$DIR" adopt --qmp "$TESTDIR/vm1.qmp" --qmp "$TESTDIR/vm2.qmp"
log "adopt: $(grep -o 'adopted.*' <<<"$CLI_OUT" | tr '\n' ';')"
wait "$writer" || fail "vm1's guest saw an error while it was adopted"
for vm in vm1 vm2; do
	left="$(held "${QSD_PID[$vm]}" beside)"
	[[ -z "$left" ]] || fail "$vm's QEMU still holds beside the mount: $left"
	[[ -n "$(held "${QSD_PID[$vm]}" through)" ]] || fail "$vm's QEMU holds nothing through the mount"
done
expect_cli "a second adopt" 0 "nothing to adopt" \
	"$MIRRORFSCTL" "$DIR" adopt --qmp "$TESTDIR/vm1.qmp"
expect_cli "release before the switch" 1 "release moves QEMU onto the target once it has switched" \
	"$MIRRORFSCTL" "$DIR" release --qmp "$TESTDIR/vm1.qmp"

log "--- migrate while the guests write; release after the switch"
timeout -k 5 300 "$MIRRORFSCTL" "$DIR" start "$TGT" --switch manual --speed 16M \
	--release-qmp "$TESTDIR/vm2.qmp" >"$TESTDIR/start.out" 2>&1 &
starter=$!
track_bg "$starter"
deadline=$((SECONDS + 30))
until [[ "$(status_field "$DIR" state)" == copying ]]; do
	((SECONDS < deadline)) || fail "the migration is not copying 30 s after its start"
	sleep 0.05
done
exec 8<&-
write_batch vm1 vm1 10 64 0x23
write_batch vm1 vm1-data 1 64 0x32
write_batch vm2 vm2 1 64 0x42
wait_status_state "$DIR" mirrored 120
ctl "$DIR" switch
wait_status_state "$DIR" switched 60
expect_cli "adopt after the switch" 1 "use release" \
	"$MIRRORFSCTL" "$DIR" adopt --qmp "$TESTDIR/vm1.qmp"
write_batch vm1 vm1 14 128 0x24 &
writer=$!
expect_cli "release" 0 "released 3 files" \
	"$MIRRORFSCTL" "$DIR" release --qmp "$TESTDIR/vm1.qmp"
log "release: $(grep -o 'released.*' <<<"$CLI_OUT" | tr '\n' ';')"
wait "$writer" || fail "vm1's guest saw an error while it was released"
rc=0
wait "$starter" || rc=$?
((rc == 0)) || fail "start --release-qmp: exit $rc: $(cat "$TESTDIR/start.out")"
grep -q "released 1 file of QEMU (pid ${QSD_PID[vm2]})" "$TESTDIR/start.out" ||
	fail "start --release-qmp did not release vm2: $(cat "$TESTDIR/start.out")"
log "start --release-qmp: $(grep -o 'released.*' "$TESTDIR/start.out")"
for vm in vm1 vm2; do
	left="$(held "${QSD_PID[$vm]}" through)"
	[[ -z "$left" ]] || fail "$vm's QEMU still holds through the mount: $left"
done
for f in "$TGT/vm1.qcow2" "$TGT/base.qcow2" "$TGT/vm1-data.raw"; do
	ls -l /proc/"${QSD_PID[vm1]}"/fd | grep -qF -- "-> $f" || fail "vm1's QEMU does not hold $f"
done
expect_cli "a second release" 0 "nothing to release" \
	"$MIRRORFSCTL" "$DIR" release --qmp "$TESTDIR/vm2.qmp"
umount_mfs "$DIR"

log "--- every write of every phase, through QEMU and in the target's files"
write_batch vm1 vm1 22 16 0x25
io vm1 vm1 'read -P 0x11 0 1M' 'read -P 0x21 1M 1M' 'read -P 0x22 2M 8M' \
	'read -P 0x23 10M 4M' 'read -P 0x24 14M 8M' 'read -P 0x25 22M 1M'
io vm1 vm1-data 'read -P 0x31 0 1M' 'read -P 0x32 1M 4M'
io vm2 vm2 'read -P 0x41 0 1M' 'read -P 0x42 1M 4M'
for vm in vm1 vm2; do
	kill "${QSD_PID[$vm]}"
	wait_pid_exit "${QSD_PID[$vm]}" 30 || fail "$vm's QEMU did not stop"
done
run qemu-img check -q "$TGT/vm1.qcow2" || fail "qemu-img check of the released image"
out="$(run qemu-io -f qcow2 -r -c 'read -P 0x11 0 1M' -c 'read -P 0x21 1M 1M' \
	-c 'read -P 0x22 2M 8M' -c 'read -P 0x23 10M 4M' -c 'read -P 0x24 14M 8M' \
	-c 'read -P 0x25 22M 1M' "$TGT/vm1.qcow2")"
[[ "$out" != *failed* ]] || fail "the target's vm1.qcow2:"$'\n'"$out"
out="$(run qemu-io -f raw -r -c 'read -P 0x32 1M 4M' "$TGT/vm1-data.raw") $(
	run qemu-io -f raw -r -c 'read -P 0x42 1M 4M' "$TGT/vm2.raw")"
[[ "$out" != *failed* ]] || fail "the target's raw disks:"$'\n'"$out"

log "--- what cannot be adopted is refused, changing nothing"
mkdir -p "$TESTDIR/r"
run qemu-img create -q -f qcow2 "$TESTDIR/r/d.qcow2" 16M
run qemu-img create -q -f raw "$TESTDIR/r/p.raw" 16M
qemu-system-x86_64 -machine none -nodefaults -display none \
	-qmp "unix:$TESTDIR/drive.qmp,server=on,wait=off" \
	-drive "file=$TESTDIR/r/d.qcow2,if=none,id=d0,format=qcow2" >"$TESTDIR/drive.log" 2>&1 &
drive_pid=$!
track_bg "$drive_pid"
qsd raw --blockdev "driver=file,node-name=p,filename=$TESTDIR/r/p.raw" \
	--export type=nbd,id=e9,node-name=p,writable=on
deadline=$((SECONDS + 30))
until [[ -S "$TESTDIR/drive.qmp" ]]; do
	((SECONDS < deadline)) || fail "qemu-system did not start:"$'\n'"$(cat "$TESTDIR/drive.log")"
	sleep 0.05
done
mount_mfs "$TESTDIR/r" "$TESTDIR/r"
expect_cli "adopt a -drive with no node-name" 1 "has no node name of its own" \
	"$MIRRORFSCTL" "$TESTDIR/r" adopt --qmp "$TESTDIR/drive.qmp"
expect_cli "adopt a file node with no format node" 1 "with no format node between" \
	"$MIRRORFSCTL" "$TESTDIR/r" adopt --qmp "$TESTDIR/raw.qmp"
DIR="$TESTDIR/r"
[[ -n "$(held "$drive_pid" beside)" ]] || fail "the refused -drive QEMU no longer holds its file"
[[ -n "$(held "${QSD_PID[raw]}" beside)" ]] || fail "the refused QEMU no longer holds its file"
kill "$drive_pid" "${QSD_PID[raw]}"
wait_pid_exit "$drive_pid" 30
wait_pid_exit "${QSD_PID[raw]}" 30
umount_mfs "$TESTDIR/r"
log "PASS"
