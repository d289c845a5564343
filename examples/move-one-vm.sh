#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Move one running VM of two to a new directory, with one command, no
# restart and no mount left behind; the other VM runs on where it is.
#
# Usage: examples/move-one-vm.sh [BUILDDIR]        (default: ./build)
#
# On a throw-away directory with one subdirectory per VM, and
# qemu-storage-daemon standing for each VM (qemu-io writes to its disk
# over NBD as the guest would):
#   1. vm1 (a qcow2 over a backing file, in vm1/) and vm2 (raw, in vm2/)
#      run with no mirrorfs;
#   2. mirrorfs is mounted over the directory, vm1 adopted onto it;
#   3. one command moves vm1/ and takes vm1 off the mount:
#      mirrorfsctl start NEW --only vm1 --release-qmp vm1's socket;
#   4. the mount is unmounted; vm1 runs on the new directory's files, vm2
#      on its old ones, never moved, and every write of both reads back.
# Needs root (or a user allowed FUSE mounts), qemu-utils and fuse3.
# Everything is undone on exit.
set -euo pipefail

builddir=${1:-build}
bin=$builddir
[ -x "$bin/fuse/mirrorfs" ] || { echo "move-one: no $bin/fuse/mirrorfs; build first: scripts/build.sh $builddir" >&2; exit 1; }
mirrorfs=$bin/fuse/mirrorfs
ctl=$bin/tools/mirrorfsctl
status=$bin/tools/mirrorfs-status
for tool in qemu-img qemu-io qemu-storage-daemon fusermount3 findmnt; do
	command -v "$tool" >/dev/null || { echo "move-one: $tool not found; run scripts/setup-deps.sh" >&2; exit 1; }
done

work=$(mktemp -d "${TMPDIR:-/var/tmp}/mirrorfs-move-one.XXXXXX")
vms=$work/vms     # the VMs' directory: source and mount point
new=$work/newdisk # where vm1 goes
mkdir -p "$vms/vm1" "$vms/vm2" "$new"
pids=()

cleanup() {
	trap - EXIT INT TERM
	for pid in "${pids[@]}"; do
		kill "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
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
		echo "move-one: FAILED: qemu-io $*" >&2
		exit 1
	fi
}
# vm NAME BLOCKDEV-JSON: a VM (qemu-storage-daemon) with its disk, QMP and NBD sockets.
vm() {
	qemu-storage-daemon \
		--chardev "socket,id=m,path=$work/$1.qmp,server=on,wait=off" --monitor chardev=m \
		--blockdev "$2" --nbd-server "addr.type=unix,addr.path=$work/$1.nbd" \
		--export "type=nbd,id=$1,node-name=$1,writable=on" &
	pids+=($!)
	until [ -S "$work/$1.nbd" ]; do sleep 0.05; done
}
# guest NAME COMMAND: a qemu-io command on a VM's disk, as its guest, over NBD.
guest() {
	io -f raw -c "$2" "nbd+unix:///$1?socket=$work/$1.nbd"
	echo "$1's guest: $2"
}

say "1. two VMs run on $vms/vm1 and $vms/vm2, no mirrorfs"
qemu-img create -q -f qcow2 "$vms/vm1/base.qcow2" 64M
io -f qcow2 -c 'write -P 0x11 0 1M' "$vms/vm1/base.qcow2"
qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 "$vms/vm1/disk.qcow2"
qemu-img create -q -f raw "$vms/vm2/disk.raw" 64M
vm vm1 '{"driver":"qcow2","node-name":"vm1","file":{"driver":"file","filename":"'"$vms"'/vm1/disk.qcow2","cache":{"direct":true}}}'
vm vm2 '{"driver":"raw","node-name":"vm2","file":{"driver":"file","filename":"'"$vms"'/vm2/disk.raw"}}'
guest vm1 'write -P 0x22 1M 1M'
guest vm2 'write -P 0x62 0 1M'

say "2. mirrorfs mounted over the directory; vm1 adopted onto it"
"$mirrorfs" "$vms" "$vms"
"$ctl" "$vms" adopt --qmp "$work/vm1.qmp"
guest vm1 'write -P 0x33 2M 1M'

say "3. one command: move vm1/ and release vm1 (vm2 writes beside the mount meanwhile)"
"$ctl" "$vms" start "$new" --only vm1 --release-qmp "$work/vm1.qmp"
guest vm1 'write -P 0x44 3M 1M'
guest vm2 'write -P 0x63 1M 1M'
"$status" "$vms" | grep -E 'mirrorfs on|placed'

say "4. unmount; vm1 runs on the new files, vm2 on its own"
fusermount3 -u "$vms"
guest vm1 'write -P 0x55 4M 1M'
guest vm2 'write -P 0x64 2M 1M'
for i in 0 1; do
	kill "${pids[$i]}"
	wait "${pids[$i]}" || true
done
pids=()
io -f qcow2 -r -c 'read -P 0x11 0 1M' -c 'read -P 0x22 1M 1M' -c 'read -P 0x33 2M 1M' \
	-c 'read -P 0x44 3M 1M' -c 'read -P 0x55 4M 1M' "$new/vm1/disk.qcow2"
io -f raw -r -c 'read -P 0x62 0 1M' -c 'read -P 0x63 1M 1M' -c 'read -P 0x64 2M 1M' \
	"$vms/vm2/disk.raw"
[ ! -e "$new/vm2" ] || { echo "move-one: FAILED: vm2 was moved" >&2; exit 1; }
echo "move-one: vm1 now runs on $new/vm1, vm2 where it was, and no mount is left"
