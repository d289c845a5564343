#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Move the disk image of a running QEMU VM to new storage, live.
#
# Usage: examples/migrate-running-vm.sh [OPTION...] IMAGE TARGET-DIR [-- QEMU-ARG...]
#
#   IMAGE        a raw or qcow2 disk image; the directory it is in is the one
#                that mirrorfs is mounted over and that is migrated, every
#                file in it (so put the VM's files in a directory of their own)
#   TARGET-DIR   the directory on the new storage that the images move to:
#                an existing directory with none of the names of IMAGE's
#                directory in it
#   QEMU-ARG     more arguments for qemu-system-x86_64, after a "--": how to
#                boot the guest (-kernel/-initrd/-append, -cdrom, ...), a
#                network (-nic user), a display (-vnc :1), ...
#
# Options:
#   -b, --builddir DIR   take mirrorfs, mirrorfsctl and mirrorfs-status from
#                        this build directory (default: ./build if it has
#                        them, else $PATH)
#   -s, --speed RATE     the copier's limit in bytes/s, K/M/G suffixes, 0 for
#                        none (default 100M); guest writes are never limited
#   --switch auto|manual auto (default): switch as soon as all is copied;
#                        manual: wait until all is mirrored, then ask before
#                        switching (press Enter)
#   --cache none|writeback   QEMU's cache mode for the disk (default none:
#                        O_DIRECT with aio=native, as libvirt's cache='none'
#                        io='native')
#   -m, --memory SIZE    the guest's memory (default 1G)
#   --delay SECONDS      let the VM run this long before migrating (default 10)
#   --detach             leave the VM and the mount running after the switch
#                        (default: wait for the VM to exit, then unmount)
#   -h, --help           print this and exit
#
# What it does:
#   1. mounts mirrorfs over IMAGE's directory (mirrorfs DIR DIR), unless a
#      mirrorfs is already mounted there (mirrorfs@.service, say): then it
#      uses that one.  No process may have the image open yet: start VMs
#      only after mounting.
#   2. starts QEMU in the background on IMAGE through the mount (virtio
#      disk, KVM if /dev/kvm is usable, else TCG), its serial console in a
#      log file;
#   3. after --delay seconds, starts the migration:
#          mirrorfsctl DIR start TARGET-DIR --speed RATE --switch MODE
#   4. shows the progress, until the switch, with
#          mirrorfs-status --watch DIR
#      (--switch manual: until all is mirrored; then it asks, and runs
#      "mirrorfsctl DIR switch");
#   5. prints the stun time (mirrorfs-status --json: stun_ms): how long the
#      VM's I/O was held at the switch.  From then on the VM's disk is the
#      image in TARGET-DIR;
#   6. waits for the VM to exit (shut it down from inside, or kill QEMU),
#      then unmounts (with --detach, it leaves both running and says how to
#      unmount later).
# Interrupted (Ctrl-C) before the switch, it cancels the migration: the VM
# goes on from the source, and the target is cleaned up.  The VM and the
# mount are left running then; it says how to stop them.
#
# Once switched, IMAGE's directory holds a journal that sends every later
# mirrorfs mounted over it to TARGET-DIR: mount it again before the next
# start of the VM, or point the VM at TARGET-DIR directly.
#
# Example (root, the image of a VM that boots from its disk by itself):
#   examples/migrate-running-vm.sh --speed 200M /var/lib/images/vm1.qcow2 \
#       /srv/newdisk/images -- -smp 2 -nic user -vnc :1
set -euo pipefail

prog=migrate-running-vm
die() {
	echo "$prog: $*" >&2
	exit 1
}
usage() {
	if [ "${1:-0}" = 0 ]; then
		sed -n '4,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"
		exit 0
	fi
	echo "usage: $0 [OPTION...] IMAGE TARGET-DIR [-- QEMU-ARG...]  (--help: more)" >&2
	exit "$1"
}

builddir=
speed=100M
switch_mode=auto
cache=none
memory=1G
delay=10
detach=0
while [ $# -gt 0 ]; do
	case "$1" in
	-b | --builddir) builddir=${2:?}; shift 2 ;;
	-s | --speed) speed=${2:?}; shift 2 ;;
	--switch) switch_mode=${2:?}; shift 2 ;;
	--cache) cache=${2:?}; shift 2 ;;
	-m | --memory) memory=${2:?}; shift 2 ;;
	--delay) delay=${2:?}; shift 2 ;;
	--detach) detach=1; shift ;;
	-h | --help) usage 0 ;;
	--) break ;;
	-*) echo "$prog: unknown option $1" >&2; usage 2 ;;
	*) break ;;
	esac
done
[ $# -ge 2 ] || usage 2
image_arg=$1
target=$2
shift 2
if [ $# -gt 0 ]; then
	[ "$1" = -- ] || die "QEMU arguments go after '--'"
	shift
fi
qemu_extra=("$@")

case "$switch_mode" in auto | manual) ;; *) die "--switch: auto or manual" ;; esac
case "$cache" in
none) aio=native ;;
writeback) aio=threads ;;
*) die "--cache: none or writeback" ;;
esac
case "$delay" in '' | *[!0-9]*) die "--delay: a number of seconds" ;; esac

# The tools: from the build directory, or installed.
if [ -z "$builddir" ] && [ -x build/fuse/mirrorfs ]; then
	builddir=build
fi
if [ -n "$builddir" ]; then
	mirrorfs=$(realpath "$builddir/fuse/mirrorfs")
	mirrorfsctl=$(realpath "$builddir/tools/mirrorfsctl")
	mirrorfs_status=$(realpath "$builddir/tools/mirrorfs-status")
else
	mirrorfs=$(command -v mirrorfs) || die "no mirrorfs in \$PATH; give --builddir"
	mirrorfsctl=$(command -v mirrorfsctl) || die "no mirrorfsctl in \$PATH"
	mirrorfs_status=$(command -v mirrorfs-status) || die "no mirrorfs-status in \$PATH"
fi
for t in "$mirrorfs" "$mirrorfsctl" "$mirrorfs_status"; do
	[ -x "$t" ] || die "$t is not there; build first: scripts/build.sh ${builddir:-build}"
done
for t in qemu-system-x86_64 qemu-img fusermount3 findmnt python3; do
	command -v "$t" >/dev/null || die "$t not found; run scripts/setup-deps.sh"
done

[ -f "$image_arg" ] || die "no image '$image_arg'"
image=$(realpath "$image_arg")
dir=$(dirname "$image")
[ -d "$target" ] || die "no directory '$target' (make it first, on the new storage)"
target=$(realpath "$target")

is_mirrorfs() {
	findmnt -rn -M "$dir" -t fuse.mirrorfs >/dev/null
}

# The format, asked without taking QEMU's lock (-U): the image is not ours yet.
format=$(qemu-img info -U "$image" | sed -n 's/^file format: //p')
case "$format" in
raw | qcow2) ;;
*) die "$image: format '$format'; this example knows raw and qcow2" ;;
esac

run=$(mktemp -d "${TMPDIR:-/tmp}/$prog.XXXXXX")
console=$run/console.log
qemu_pid=
watch_pid=
mounted_here=0
migrating=0

# status_field FIELD: one member of the migration's status.
status_field() {
	"$mirrorfs_status" --json "$dir" |
		python3 -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"
}

# Ctrl-C or an error while migrating: cancel, so that the target is cleaned
# up and the VM goes on from the source.  The VM and the mount stay.
on_exit() {
	local rc=$?
	trap - EXIT INT TERM
	if [ -n "$watch_pid" ]; then
		kill "$watch_pid" 2>/dev/null || true
	fi
	if [ "$migrating" = 1 ]; then
		echo "$prog: cancelling the migration; the VM goes on from $dir" >&2
		"$mirrorfsctl" "$dir" cancel >&2 || true
		"$mirrorfs_status" --wait cancelled --timeout 60 "$dir" >&2 || true
	fi
	if [ -n "$qemu_pid" ] && kill -0 "$qemu_pid" 2>/dev/null; then
		echo "$prog: the VM (QEMU pid $qemu_pid) is still running; console: $console" >&2
		[ "$mounted_here" = 0 ] ||
			echo "$prog: once it is stopped, unmount with: fusermount3 -u $dir" >&2
	elif [ -s "$console" ]; then
		echo "$prog: the VM's console output is in $console" >&2
	else
		rm -rf "$run"
	fi
	exit $rc
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# 1. The mount, over the image directory itself.
if is_mirrorfs; then
	echo "== $dir: mirrorfs is already mounted there; using it"
else
	echo "== mounting: mirrorfs $dir $dir"
	# It goes to the background once mounted; its log goes to syslog.
	"$mirrorfs" "$dir" "$dir"
	is_mirrorfs || die "$dir is not mounted"
	mounted_here=1
fi

# 2. The VM.
accel=tcg
if [ -w /dev/kvm ]; then
	accel=kvm
fi
qemu=(qemu-system-x86_64 -machine "accel=$accel" -m "$memory" -display none
	-drive "file=$image,format=$format,if=virtio,cache=$cache,aio=$aio,discard=unmap"
	-serial "file:$console" -pidfile "$run/qemu.pid" -daemonize
	"${qemu_extra[@]}")
echo "== starting the VM: ${qemu[*]}"
"${qemu[@]}"
qemu_pid=$(cat "$run/qemu.pid")
echo "   QEMU pid $qemu_pid, serial console in $console"

if [ "$delay" -gt 0 ]; then
	echo "== letting the VM run for $delay s"
	sleep "$delay"
fi
kill -0 "$qemu_pid" 2>/dev/null || die "the VM has exited already; console: $console"

# 3. The migration.
echo "== migrating: mirrorfsctl $dir start $target --speed $speed --switch $switch_mode"
migrating=1
"$mirrorfsctl" "$dir" start "$target" --speed "$speed" --switch "$switch_mode"

# 4. Progress, until the switch.  The CLIs run in the background and the
# script waits for them, so that a signal to the script alone (kill PID)
# cancels at once, as Ctrl-C does.
"$mirrorfs_status" --watch "$dir" &
watch_pid=$!
if [ "$switch_mode" = manual ]; then
	"$mirrorfs_status" --wait mirrored "$dir" &
	wait $! || die "the migration did not get to mirrored"
	kill "$watch_pid" 2>/dev/null || true
	wait "$watch_pid" 2>/dev/null || true
	echo
	echo "== all is copied, and every write of the VM goes to both sides."
	read -r -p "   Press Enter to switch to $target (Ctrl-C cancels) " _
	"$mirrorfsctl" "$dir" switch
	"$mirrorfs_status" --watch "$dir" &
	watch_pid=$!
fi
wait "$watch_pid" || true
watch_pid=
state=$(status_field state)
[ "$state" = switched ] || die "the migration ended $state: $("$mirrorfs_status" "$dir" 2>&1)"
migrating=0

# 5. The stun.
stun=$(status_field stun_ms)
echo "== switched: the VM's disk is now $target/$(basename "$image")"
echo "   stun: $stun ms (the VM's I/O was held that long)"

# 6. Until the VM exits.
if [ "$detach" = 1 ]; then
	echo "== leaving the VM (QEMU pid $qemu_pid) and the mount running"
	[ "$mounted_here" = 0 ] || echo "   after the VM stops: fusermount3 -u $dir"
	qemu_pid=
	exit 0
fi
echo "== waiting for the VM to exit (shut it down, or kill $qemu_pid)"
while kill -0 "$qemu_pid" 2>/dev/null; do
	sleep 1
done
qemu_pid=
echo "== the VM has exited"
if [ "$mounted_here" = 1 ]; then
	fusermount3 -u "$dir"
	echo "== unmounted $dir; its journal sends a later mirrorfs over it to $target"
fi
