#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Live migration: move a directory of VM images to new storage while a
# writer keeps writing to an image, without stopping it.
#
# Usage: examples/migrate-demo.sh [BUILDDIR]        (default: ./build)
#
# It makes a throw-away image directory (a 256 MiB raw image full of data,
# a qcow2 image and a config file) and an empty "new storage" directory,
# then:
#   1. mounts mirrorfs over the image directory itself, starting the
#      migration at once:  mirrorfs -o target=NEW,speed=64M IMAGES IMAGES
#   2. runs fio through the mount, writing into the raw image with a crc32c
#      checksum in every block, from before the switch to well after it;
#   3. shows the progress every half second (how much of the data is in the
#      new storage, and the state from the daemon's log) and the stun time
#      of the switch;
#   4. checks that every byte arrived: fio reads back and verifies all it
#      wrote, through the mount and then straight from the new storage,
#      along with every block that was there before; qemu-img checks and
#      compares the qcow2 image; cmp compares the mount with the new storage;
#   5. unmounts.  The source directory then holds a journal that sends a
#      later mirrorfs to the new storage.
# Everything is undone on exit, whether the demo passes or fails.
#
# Needs /dev/fuse, fusermount3 (fuse3), fio, qemu-img and qemu-io
# (qemu-utils), and python3.  The images are made under $TMPDIR (default
# /var/tmp): a file system with O_DIRECT, which tmpfs has only since Linux 6.6.
set -euo pipefail

builddir=${1:-build}
mirrorfs=$builddir/fuse/mirrorfs

die() {
	echo "migrate-demo: $*" >&2
	exit 1
}

# Run a command quietly; on failure show it with its output and stop.
run() {
	local out
	if ! out=$("$@" 2>&1); then
		printf 'migrate-demo: FAILED: %s\n%s\n' "$*" "$out" >&2
		exit 1
	fi
}

[ -x "$mirrorfs" ] || die "no $mirrorfs; build first: scripts/build.sh $builddir"
mirrorfs=$(realpath "$mirrorfs") # the demo works in its own directory
for tool in fio qemu-img qemu-io fusermount3 findmnt python3; do
	command -v "$tool" >/dev/null || die "$tool not found; run scripts/setup-deps.sh"
done
[ -c /dev/fuse ] || die "/dev/fuse is missing: this system cannot mount FUSE file systems"

work=$(mktemp -d "${TMPDIR:-/var/tmp}/mirrorfs-migrate-demo.XXXXXX")
images=$work/images     # the image directory: source and mount point
newstore=$work/new-disk # where the images go
log=$work/mirrorfs.log
pid=
fio_pid=

mounted() {
	findmnt -rn -M "$images" -t fuse.mirrorfs >/dev/null
}

cleanup() {
	local rc=$?

	trap - EXIT INT TERM
	cd /
	if [ -n "$fio_pid" ] && kill -0 "$fio_pid" 2>/dev/null; then
		kill "$fio_pid" 2>/dev/null || true
		wait "$fio_pid" 2>/dev/null || true
	fi
	if mounted; then
		# -z (lazy) if something still holds a file open on the mount.
		fusermount3 -u "$images" 2>/dev/null || fusermount3 -u -z "$images" || true
	fi
	if [ -n "$pid" ]; then
		wait "$pid" 2>/dev/null || true
	fi
	if [ $rc -ne 0 ] && [ -s "$log" ]; then
		echo "migrate-demo: mirrorfs said:" >&2
		sed 's/^/  /' "$log" >&2
	fi
	rm -rf "$work"
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
cd "$work" # fio writes nothing here (--verify_state_save=0), but just in case

MiB=$((1024 * 1024))
# The writer's part of vm1.raw, and the parts before and after it that keep
# what was there before the migration.
w_off=$((64 * MiB))
w_size=$((48 * MiB))
img_size=$((256 * MiB))

# fill_job NAME OFFSET SIZE: one sequential part of the initial data, every
# 256 KiB block with a crc32c header that says where it belongs.
fill_job() {
	echo "--name=$1" "--offset=$2" "--size=$3"
}
fill_opts="--rw=write --bs=256k --ioengine=psync --verify=crc32c --verify_state_save=0"
fill_keep="$(fill_job head 0 $w_off) $(fill_job tail $((w_off + w_size)) $((img_size - w_off - w_size)))"
# The writer: random 4-64 KiB writes with crc32c at 4 MiB/s (12 s), cache=none
# like QEMU's (O_DIRECT), several in flight; then reads all back and verifies.
writer_opts="--name=writer --rw=randwrite --bsrange=4k-64k --ioengine=libaio --iodepth=4
	--direct=1 --offset=$w_off --size=$w_size --verify=crc32c --do_verify=1 --verify_fatal=1
	--verify_state_save=0"

# 1. An image directory, as a host has in /var/lib/images, and new storage.
mkdir "$images" "$newstore"
truncate -s $img_size "$images/vm1.raw"
# shellcheck disable=SC2086,SC2046 # the option lists are meant to be split
run fio --filename="$images/vm1.raw" $fill_opts $fill_keep \
	$(fill_job middle $w_off $w_size)
run qemu-img create -f qcow2 "$images/vm2.qcow2" 1G
run qemu-io -f qcow2 -c 'write -P 0x3c 0 8M' -c 'write -P 0xc3 512M 8M' "$images/vm2.qcow2"
run qemu-img convert -f qcow2 -O raw "$images/vm2.qcow2" "$work/vm2-before.raw"
cat >"$images/vm1.conf" <<-EOF
	name=vm1
	disk=vm1.raw,format=raw,cache=none
	disk=vm2.qcow2,format=qcow2,cache=none
EOF
total=$(du -sB1 "$images" | cut -f1)
echo "image directory: $images"
echo "                 vm1.raw (raw, 256 MiB of data), vm2.qcow2 (qcow2, 16 MiB of data), vm1.conf"
echo "new storage:     $newstore (empty)"

# 2. Mount over the image directory, migrating to the new storage at once.
# The speed limit only makes the demo last long enough to watch.
"$mirrorfs" -f -o "target=$newstore,speed=64M" "$images" "$images" 2>"$log" &
pid=$!
for _ in $(seq 100); do
	mounted && break
	kill -0 "$pid" 2>/dev/null || die "mirrorfs exited before mounting"
	sleep 0.1
done
mounted || die "mirrorfs did not mount $images within 10 seconds"
echo "mounted:         $mirrorfs -f -o target=$newstore,speed=64M $images $images"

# 3. A writer on the image through the mount, as a VM would be.
# shellcheck disable=SC2086
fio --filename="$images/vm1.raw" $writer_opts --rate=,4m \
	--output-format=json --output="$work/writer.json" >/dev/null 2>&1 &
fio_pid=$!
echo "writer:          fio, O_DIRECT random writes with crc32c into vm1.raw at 4 MiB/s"

# 4. Watch: the state is in the daemon's log, the copy in the new storage.
state() {
	local s
	s=$(sed -n 's/.*migration .* -> .*: \([a-z]*\).*/\1/p' "$log" | tail -n 1)
	echo "${s:-copying}"
}
t0=$(date +%s%N)
stun_shown=
while kill -0 "$fio_pid" 2>/dev/null; do
	t=$((($(date +%s%N) - t0) / 1000000))
	st=$(state)
	copied=$(du -sB1 "$newstore" | cut -f1)
	printf '  %3d.%ds  %-9s  new storage holds %3d of %3d MiB   writer: %s\n' \
		$((t / 1000)) $((t % 1000 / 100)) "$st" $((copied / MiB)) $((total / MiB)) \
		"$(if [ "$st" = switched ]; then echo "writing to the new storage"; else echo "writing"; fi)"
	case $st in
	failed | cancelled) die "the migration $st" ;;
	switched)
		if [ -z "$stun_shown" ]; then
			stun_shown=1
			echo "  switched: $(sed -n 's/.*: switched (stun \(.*\))/stun \1/p' "$log"): the writer was paused that long"
		fi
		;;
	esac
	sleep 0.5
done
status=0
wait "$fio_pid" || status=$?
fio_pid=
[ "$(state)" = switched ] || die "the migration has not switched (state: $(state))"
[ $status -eq 0 ] || die "fio failed (status $status): $(cat "$work/writer.json")"
python3 - "$work/writer.json" <<-'EOF' || die "fio report"
	import json, sys
	text = open(sys.argv[1]).read()
	job = json.loads(text[text.index("{"):])["jobs"][0]
	w, r = job["write"]["io_bytes"], job["read"]["io_bytes"]
	if job["error"] or not w or r < w // 2:
	    sys.exit(f"fio: error {job['error']}, wrote {w}, verified {r} bytes")
	print(f"ok  fio wrote {w / 2**20:.0f} MiB across the switch and verified every block it wrote")
EOF

# 5. Every byte arrived.
for f in vm1.raw vm2.qcow2 vm1.conf; do
	cmp "$images/$f" "$newstore/$f" || die "$f differs between the mount and the new storage"
done
echo "ok  the mount serves the new storage: cmp finds no difference"
run fusermount3 -u "$images"
status=0
wait "$pid" || status=$?
pid=
[ $status -eq 0 ] || die "mirrorfs exited with status $status after the unmount"
echo "ok  unmounted; mirrorfs exited with status 0"

# Straight from the new storage, without mirrorfs:
# shellcheck disable=SC2086
run fio --filename="$newstore/vm1.raw" $writer_opts --verify_only
# shellcheck disable=SC2086
run fio --filename="$newstore/vm1.raw" $fill_opts --do_verify=1 --verify_only $fill_keep
echo "ok  new storage: vm1.raw has every block fio wrote, and every block from before at its place"
run qemu-img check "$newstore/vm2.qcow2"
run qemu-img compare -f qcow2 -F raw "$newstore/vm2.qcow2" "$work/vm2-before.raw"
echo "ok  new storage: vm2.qcow2 passes qemu-img check and equals the image before the migration"
grep -q '^state=switched$' "$images/.mirrorfs-journal" || die "no switched journal in the source"
echo "ok  the source's journal: $(grep -E '^(state|target)=' "$images/.mirrorfs-journal" | tr '\n' ' ')"
echo "    (a later 'mirrorfs $images $images' serves $newstore)"
echo "demo passed"
