#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Empty a host: take a running VM off its local disk onto shared storage
# (GlusterFS), then move the VM itself to another host with QEMU's own
# live migration.  mirrorfs does the storage half, live, with no restart;
# QEMU does the rest, as it always does between hosts sharing storage.
#
# On throw-away directories of this machine, with a GlusterFS volume made
# here (glusterd and two bricks; the glusterd already running is used if
# there is one) and two QEMU processes standing for the two hosts (no
# guest OS: qemu-io writes to the VM's disk over an NBD export of QEMU's
# own, as its guest would):
#   1. the shared volume; a VM running on local/vm.raw, no mirrorfs;
#   2. mirrorfs mounted over local/; mirrorfsctl adopt --qmp: QEMU reopens
#      its disk through the mount;
#   3. mirrorfsctl start SHARED/vms --release-qmp: the disk is copied,
#      mirrored, switched, and QEMU reopened on the volume's file; the
#      mount goes;
#   4. a second QEMU ("the other host") waits with -incoming; the first
#      migrates to it over TCP (QMP migrate) and quits;
#   5. what the guest wrote in every phase reads back on the second, and
#      the first host holds nothing of the VM.
# Needs root, qemu-system-x86 and qemu-utils, fuse3, glusterfs-server and
# glusterfs-client (scripts/setup-deps.sh installs them).  Everything it
# made is undone on exit.
#
#     examples/evacuate-to-gluster.sh [BUILDDIR]
set -euo pipefail

builddir=${1:-build}
bin=$builddir
[ -x "$bin/fuse/mirrorfs" ] || { echo "evacuate: no $bin/fuse/mirrorfs; build first: scripts/build.sh $builddir" >&2; exit 1; }
mirrorfs=$bin/fuse/mirrorfs
ctl=$bin/tools/mirrorfsctl
for tool in qemu-system-x86_64 qemu-img qemu-io glusterd gluster fusermount3 findmnt python3; do
	command -v "$tool" >/dev/null || { echo "evacuate: $tool not found; run scripts/setup-deps.sh" >&2; exit 1; }
done
host=$(hostname -I | awk '{ print $1 }') # Gluster refuses loopback bricks
[ -n "$host" ] || { echo "evacuate: no network address for the bricks" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/var/tmp}/mirrorfs-evacuate.XXXXXX")
local_dir=$work/local # the VM's directory on this host's disk
shared=$work/shared   # the Gluster volume, mounted
vol=mfs-example-$$
mkdir "$local_dir" "$shared"
qemu1= qemu2= our_glusterd=

cleanup() {
	trap - EXIT INT TERM
	for p in $qemu1 $qemu2; do kill "$p" 2>/dev/null || true; done
	if findmnt -rn -M "$local_dir" >/dev/null; then
		fusermount3 -u "$local_dir" 2>/dev/null || fusermount3 -uz "$local_dir" || true
	fi
	umount -l "$shared" 2>/dev/null || true
	gluster --mode=script volume stop "$vol" force >/dev/null 2>&1 || true
	gluster --mode=script volume delete "$vol" >/dev/null 2>&1 || true
	[ -z "$our_glusterd" ] || pkill -F "$work/glusterd.pid" 2>/dev/null || true
	[ -z "$our_glusterd" ] || pkill -f -- "--volfile-id shd/$vol" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { printf '\n== %s\n' "$*"; }
# qmp SOCKET JSON: one command to a QEMU monitor; prints its return value.
qmp() {
	python3 - "$1" "$2" <<-'EOF'
	import json, socket, sys
	f = socket.socket(socket.AF_UNIX)
	f.connect(sys.argv[1])
	f = f.makefile("rw")
	def call(cmd):
	    f.write(json.dumps(cmd) + "\n")
	    f.flush()
	    while True:
	        r = json.loads(f.readline())
	        if "error" in r:
	            sys.exit("evacuate: QMP: " + r["error"]["desc"])
	        if "return" in r:
	            return r["return"]
	f.readline()
	call({"execute": "qmp_capabilities"})
	print(json.dumps(call(json.loads(sys.argv[2]))))
	EOF
}
# guest N COMMAND: a qemu-io command on the disk of QEMU N (1 or 2), as the
# guest, through an NBD export of that QEMU.
guest() {
	qemu-io -f raw -c "$2" "nbd+unix:///vm?socket=$work/nbd$1.sock" >"$work/io.out" 2>&1
	! grep -q 'failed\|rror' "$work/io.out" || { cat "$work/io.out" >&2; exit 1; }
	echo "guest on QEMU $1: $2"
}
# export_disk N: QEMU N serves its disk over NBD, for guest().
export_disk() {
	qmp "$work/qmp$1.sock" '{"execute": "nbd-server-start", "arguments": {"addr": {"type": "unix", "data": {"path": "'"$work/nbd$1.sock"'"}}}}' >/dev/null
	qmp "$work/qmp$1.sock" '{"execute": "block-export-add", "arguments": {"type": "nbd", "id": "vm", "node-name": "vm", "writable": true}}' >/dev/null
}
# vm N IMAGE [ARG...]: start QEMU N, the VM with its disk on IMAGE.
vm() {
	local n=$1 image=$2
	shift 2
	qemu-system-x86_64 -machine pc,accel=tcg -nodefaults -display none -m 64M \
		-qmp "unix:$work/qmp$n.sock,server=on,wait=off" \
		-blockdev '{"driver": "raw", "node-name": "vm", "file": {"driver": "file", "filename": "'"$image"'"}}' \
		-device virtio-blk-pci,drive=vm,share-rw=on "$@" &
	eval "qemu$n=$!"
	until [ -S "$work/qmp$n.sock" ]; do sleep 0.05; done
}

say "1. shared storage: a replica-2 GlusterFS volume; a VM on this host's disk"
if ! gluster --mode=script volume list >/dev/null 2>&1; then
	glusterd -p "$work/glusterd.pid" --log-file="$work/glusterd.log"
	our_glusterd=1
	until gluster --mode=script volume list >/dev/null 2>&1; do sleep 0.2; done
fi
gluster --mode=script volume create "$vol" replica 2 "$host:$work/brick1" "$host:$work/brick2" force >/dev/null
gluster --mode=script volume start "$vol" >/dev/null
mount -t glusterfs "$host:/$vol" "$shared"
mkdir "$shared/vms"
qemu-img create -q -f raw "$local_dir/vm.raw" 64M
vm 1 "$local_dir/vm.raw"
export_disk 1
guest 1 'write -P 0x11 0 1M'

say "2. mirrorfs over the VM's directory; QEMU adopted onto it"
"$mirrorfs" "$local_dir" "$local_dir"
"$ctl" "$local_dir" adopt --qmp "$work/qmp1.sock"
guest 1 'write -P 0x22 1M 1M'

say "3. the disk moves onto the volume, and QEMU onto the volume's file"
"$ctl" "$local_dir" start "$shared/vms" --release-qmp "$work/qmp1.sock"
fusermount3 -u "$local_dir"
guest 1 'write -P 0x33 2M 1M'

say "4. QEMU's live migration to the other host (a second QEMU on the volume)"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
vm 2 "$shared/vms/vm.raw" -incoming "tcp:127.0.0.1:$port"
# The export holds the disk: it goes before QEMU hands the disk over.
qmp "$work/qmp1.sock" '{"execute": "block-export-del", "arguments": {"id": "vm"}}' >/dev/null
qmp "$work/qmp1.sock" '{"execute": "migrate", "arguments": {"uri": "tcp:127.0.0.1:'"$port"'"}}' >/dev/null
until qmp "$work/qmp1.sock" '{"execute": "query-migrate"}' | grep -q '"status": "completed"'; do
	! qmp "$work/qmp1.sock" '{"execute": "query-migrate"}' | grep -q '"status": "failed"' ||
		{ echo "evacuate: QEMU's migration failed" >&2; exit 1; }
	sleep 0.2
done
qmp "$work/qmp1.sock" '{"execute": "query-migrate"}' |
	python3 -c 'import json, sys; m = json.load(sys.stdin); print("migrated in %s ms, downtime %s ms" % (m["total-time"], m["downtime"]))'
qmp "$work/qmp1.sock" '{"execute": "quit"}' >/dev/null || true
wait "$qemu1" || true
qemu1=
export_disk 2
guest 2 'write -P 0x44 3M 1M'

say "5. every write of every phase, read by the VM on the other host"
guest 2 'read -P 0x11 0 1M'
guest 2 'read -P 0x22 1M 1M'
guest 2 'read -P 0x33 2M 1M'
guest 2 'read -P 0x44 3M 1M'
echo "evacuate: the VM runs on the other host, on $shared/vms/vm.raw; nothing of it is left here"
