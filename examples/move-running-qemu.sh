#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Move the disks of a QEMU that was started before any mirrorfs to a new
# directory, with no restart and no mount left behind.
#
# Usage: examples/move-running-qemu.sh [BUILDDIR]        (default: ./build)
#
# On a throw-away directory, with qemu-storage-daemon standing for the VM
# (the quickest QEMU to start; a qemu-system-x86_64 with -qmp does the
# same) and qemu-io writing to its disk over NBD as the guest would:
#   1. QEMU opens vm.qcow2 (over a backing file) with no mirrorfs;
#   2. mirrorfs is mounted over the directory (QEMU still writes beside it,
#      so a start is refused);
#   3. mirrorfsctl adopt --qmp: QEMU reopens its disk through the mount;
#   4. mirrorfsctl start: the migration copies, mirrors and switches;
#   5. mirrorfsctl release --qmp: QEMU reopens its disk on the target's
#      files, and the mount is unmounted while QEMU runs on;
#   6. what the guest wrote in every phase reads back, and QEMU holds only
#      the new files.
# Needs root (or a user allowed FUSE mounts), qemu-utils (qemu-img,
# qemu-io, qemu-storage-daemon) and fuse3.  Everything is undone on exit.
set -euo pipefail

builddir=${1:-build}
bin=$builddir
[ -x "$bin/fuse/mirrorfs" ] || { echo "move: no $bin/fuse/mirrorfs; build first: scripts/build.sh $builddir" >&2; exit 1; }
mirrorfs=$bin/fuse/mirrorfs
ctl=$bin/tools/mirrorfsctl
status=$bin/tools/mirrorfs-status
for tool in qemu-img qemu-io qemu-storage-daemon fusermount3 findmnt; do
	command -v "$tool" >/dev/null || { echo "move: $tool not found; run scripts/setup-deps.sh" >&2; exit 1; }
done

work=$(mktemp -d "${TMPDIR:-/var/tmp}/mirrorfs-move.XXXXXX")
vms=$work/vms     # the VM's directory: source and mount point
new=$work/newdisk # where its disks go
mkdir "$vms" "$new"
qsd_pid=

cleanup() {
	trap - EXIT INT TERM
	[ -z "$qsd_pid" ] || kill "$qsd_pid" 2>/dev/null || true
	[ -z "$qsd_pid" ] || wait "$qsd_pid" 2>/dev/null || true
	if findmnt -rn -M "$vms" >/dev/null; then
		fusermount3 -u "$vms" 2>/dev/null || fusermount3 -uz "$vms" || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { printf '\n== %s\n' "$*"; }
# io ARGS...: qemu-io, stopping the script on any error it reports.
io() {
	if ! qemu-io "$@" >"$work/io.out" 2>&1 || grep -q 'failed\|rror' "$work/io.out"; then
		cat "$work/io.out" >&2
		echo "move: FAILED: qemu-io $*" >&2
		exit 1
	fi
}
# guest COMMAND: a qemu-io command on the VM's disk, as its guest, over NBD.
guest() {
	io -f raw -c "$1" "nbd+unix:///vm?socket=$work/nbd.sock"
	echo "guest: $1"
}

say "1. a VM (qemu-storage-daemon) runs on $vms/vm.qcow2, no mirrorfs"
qemu-img create -q -f qcow2 "$vms/base.qcow2" 64M
io -f qcow2 -c 'write -P 0x11 0 1M' "$vms/base.qcow2"
qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 "$vms/vm.qcow2"
qemu-storage-daemon \
	--chardev "socket,id=m,path=$work/qmp.sock,server=on,wait=off" --monitor chardev=m \
	--blockdev '{"driver":"qcow2","node-name":"vm","file":{"driver":"file","filename":"'"$vms"'/vm.qcow2","cache":{"direct":true}}}' \
	--nbd-server "addr.type=unix,addr.path=$work/nbd.sock" \
	--export type=nbd,id=vm,node-name=vm,writable=on &
qsd_pid=$!
until [ -S "$work/nbd.sock" ]; do sleep 0.05; done
guest 'write -P 0x22 1M 1M'
ls -l "/proc/$qsd_pid/fd" | grep -o "$vms/.*"

say "2. mirrorfs mounted over the running VM's directory"
"$mirrorfs" "$vms" "$vms"
# QEMU still writes beside the mount: a start now would lose those writes.
! "$ctl" "$vms" start "$new"

say "3. adopt: QEMU reopens its disk through the mount"
"$ctl" "$vms" adopt --qmp "$work/qmp.sock"
guest 'write -P 0x33 2M 1M'

say "4. migrate"
"$ctl" "$vms" start "$new"
"$status" --wait switched --timeout 60 "$vms" >/dev/null
"$status" "$vms" | head -3
guest 'write -P 0x44 3M 1M'

say "5. release: QEMU reopens its disk on the new files; unmount"
"$ctl" "$vms" release --qmp "$work/qmp.sock"
fusermount3 -u "$vms"
guest 'write -P 0x55 4M 1M'
ls -l "/proc/$qsd_pid/fd" | grep -o "$work/.*" || true

say "6. every write of every phase, in the new files"
kill "$qsd_pid"
wait "$qsd_pid" || true
qsd_pid=
io -f qcow2 -r -c 'read -P 0x11 0 1M' -c 'read -P 0x22 1M 1M' -c 'read -P 0x33 2M 1M' \
	-c 'read -P 0x44 3M 1M' -c 'read -P 0x55 4M 1M' "$new/vm.qcow2"
echo "move: the VM now runs on $new, and no mount is left"
