#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Mount mirrorfs over a directory of VM images and use it the way a
# hypervisor does.
#
# Usage: examples/demo.sh [BUILDDIR]        (default: ./build)
#
# It makes a throw-away image directory (a raw image, a qcow2 image and a
# small config file), mounts mirrorfs over that same directory, writes a
# pattern into each image with qemu-io in cache=none mode (O_DIRECT, as
# QEMU opens disks with cache=none) and reads it back verified, checks the
# qcow2 image with qemu-img, unmounts, and reads the patterns again from
# the files underneath.  The mount is always undone on exit, failure or not.
#
# Needs /dev/fuse, fusermount3 (package fuse3) and qemu-io and qemu-img
# (package qemu-utils).  Root is not required where FUSE mounts are allowed.
# The images are made under $TMPDIR (default /var/tmp): it must be a file
# system that supports O_DIRECT, which tmpfs does only since Linux 6.6.
set -euo pipefail

builddir=${1:-build}
mirrorfs=$builddir/fuse/mirrorfs

die() {
	echo "demo: $*" >&2
	exit 1
}

# Run a command quietly; on failure show it with its output and stop.
run() {
	local out
	if ! out=$("$@" 2>&1); then
		printf 'demo: FAILED: %s\n%s\n' "$*" "$out" >&2
		exit 1
	fi
}

[ -x "$mirrorfs" ] || die "no $mirrorfs; build first: scripts/build.sh $builddir"
for tool in qemu-img qemu-io fusermount3 findmnt; do
	command -v "$tool" >/dev/null || die "$tool not found; run scripts/setup-deps.sh"
done
[ -c /dev/fuse ] || die "/dev/fuse is missing: this system cannot mount FUSE file systems"

work=$(mktemp -d "${TMPDIR:-/var/tmp}/mirrorfs-demo.XXXXXX")
images=$work/images
log=$work/mirrorfs.log
pid=

mounted() {
	findmnt -rn -M "$images" -t fuse.mirrorfs >/dev/null
}

cleanup() {
	local rc=$?

	trap - EXIT INT TERM
	if mounted; then
		# -z (lazy) if something still holds a file open on the mount.
		fusermount3 -u "$images" 2>/dev/null || fusermount3 -u -z "$images" || true
	fi
	if [ -n "$pid" ]; then
		wait "$pid" 2>/dev/null || true
	fi
	if [ $rc -ne 0 ] && [ -s "$log" ]; then
		echo "demo: mirrorfs said:" >&2
		sed 's/^/  /' "$log" >&2
	fi
	rm -rf "$work"
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# 1. An image directory, as a host has in /var/lib/images.
mkdir "$images"
run qemu-img create -f raw "$images/vm1.raw" 64M
run qemu-img create -f qcow2 "$images/vm2.qcow2" 64M
cat >"$images/vm1.conf" <<-EOF
	# a config file lives next to the images and passes through too
	name=vm1
	disk=vm1.raw,format=raw,cache=none
	disk=vm2.qcow2,format=qcow2,cache=none
EOF
echo "image directory: $images  (vm1.raw: raw 64 MiB, vm2.qcow2: qcow2 64 MiB, vm1.conf)"

# 2. Mount mirrorfs over it: SOURCE and MOUNTPOINT are the same directory.
# Without -f mirrorfs would go to the background once mounted; here it
# stays a child of this script so that its exit status can be checked.
"$mirrorfs" -f "$images" "$images" 2>"$log" &
pid=$!
for _ in $(seq 100); do
	mounted && break
	kill -0 "$pid" 2>/dev/null || die "mirrorfs exited before mounting"
	sleep 0.1
done
mounted || die "mirrorfs did not mount $images within 10 seconds"
echo "mounted:         $mirrorfs -f $images $images  (pid $pid)"

# 3. Clients on the mount: the same paths, now served by mirrorfs.
grep -q '^name=vm1$' "$images/vm1.conf" || die "vm1.conf does not read back through the mount"
run qemu-io -t none -f raw \
	-c 'write -P 0xa5 0 4M' -c 'write -P 0x5a 60M 4M' \
	-c 'read -P 0xa5 0 4M' -c 'read -P 0x5a 60M 4M' "$images/vm1.raw"
echo "ok  vm1.raw:   qemu-io -t none (O_DIRECT) wrote 0xa5 at 0 and 0x5a at 60M, read both back"
run qemu-io -t none -f qcow2 \
	-c 'write -P 0x3c 0 2M' -c 'write -z 2M 1M' -c 'write -P 0xc3 32M 512' \
	-c 'read -P 0x3c 0 2M' -c 'read -P 0 2M 1M' -c 'read -P 0xc3 32M 512' "$images/vm2.qcow2"
echo "ok  vm2.qcow2: qemu-io -t none wrote data, zeroes and a 512-byte sector, read all back"
run qemu-img check "$images/vm2.qcow2"
echo "ok  vm2.qcow2: qemu-img check found no errors"

# 4. Unmount; the daemon then exits by itself.
run fusermount3 -u "$images"
status=0
wait "$pid" || status=$?
pid=
[ $status -eq 0 ] || die "mirrorfs exited with status $status after the unmount"
echo "ok  unmounted: fusermount3 -u $images; mirrorfs exited with status 0"

# 5. The data is in the files underneath, read now without mirrorfs.
! mounted || die "$images is still mounted"
run qemu-io -r -f raw -c 'read -P 0xa5 0 4M' -c 'read -P 0x5a 60M 4M' "$images/vm1.raw"
run qemu-io -r -f qcow2 -c 'read -P 0x3c 0 2M' -c 'read -P 0 2M 1M' \
	-c 'read -P 0xc3 32M 512' "$images/vm2.qcow2"
run qemu-img check "$images/vm2.qcow2"
echo "ok  underneath: both images hold every pattern, qemu-img check is clean"
echo "demo passed"
