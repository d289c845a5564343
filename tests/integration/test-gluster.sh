#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# GlusterFS as the target (issue 23): Debian's glusterd on this machine, a
# volume over bricks in local directories, mounted with Gluster's own
# FUSE client, and migrations onto it while a guest (fio, O_DIRECT,
# verifying) writes through the mirrorfs mount.
#
#   switch      a replica-2 volume: the migration switches; the stun is
#               logged; the data verifies through the mount, in the
#               volume and in each brick's own file (both replicas hold
#               it); kill -9 of the daemon after the switch and a restart
#               with the same command line serve the volume.
#   flushes     the switch's flush reaches the bricks: with strace on both
#               brick servers during the switch, every regular file of the
#               target is fsync()ed by each brick.  (Gluster's FUSE
#               client gets no syncfs and does nothing with a directory's
#               fsync: only a file's fsync reaches a brick.)
#   brick-down  one brick of the replica is killed mid-copy: Gluster goes
#               on with the other, and so does the migration: it switches
#               and the data verifies.
#   volume-down both bricks are killed mid-copy: every target operation
#               fails (ENOTCONN); the migration fails, the mount serves the
#               source, the guest sees no error and its data verifies there.
#   enospc      a one-brick volume on a 40 MiB tmpfs, filled by another
#               writer mid-copy: the migration fails on ENOSPC as on a
#               local target, and the source stays authoritative.  (With
#               write-behind off: Gluster 10.3's client was seen to crash
#               in it on ENOSPC, which the mount then reports as ENOTCONN.)
#
# Uses the glusterd already running if there is one (its own volumes are
# left alone: ours are named mfstest-PID-*), else starts one and stops it
# at the end.  Volumes, mounts and brick servers are removed even when the
# test fails.  Gluster refuses a loopback address for a brick, so the
# bricks live on this host's first address (hostname -I).
#
# Suite "network": not in the integration suite, so not repeated under the
# classic transport and ThreadSanitizer.  Alone:
#
#     meson test -C build --print-errorlogs gluster
#
# NET_SECTIONS="switch enospc" runs only those sections.

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
. "$(dirname "${BASH_SOURCE[0]}")/lib-migration.sh"
. "$(dirname "${BASH_SOURCE[0]}")/lib-control.sh"
. "$(dirname "${BASH_SOURCE[0]}")/lib-fault.sh"
. "$(dirname "${BASH_SOURCE[0]}")/lib-invariant.sh"
. "$(dirname "${BASH_SOURCE[0]}")/lib-network.sh"
require_cmd glusterd gluster mount.glusterfs fio md5sum strace
cd "$TESTDIR"

HOST="$(hostname -I 2>/dev/null | awk '{ print $1 }')"
[[ -n "$HOST" ]] || skip "no network address for Gluster's bricks (it refuses loopback)"
VOL_PREFIX="mfstest-$$"
VOLUMES=()
GLUSTERD_OURS=

gl() {
	timeout -k 5 90 gluster --mode=script "$@"
}

# --- setup and teardown ---------------------------------------------------

gluster_cleanup() {
	local rc=$? v
	set +e
	cd /
	for v in "${VOLUMES[@]}"; do
		# The mounts first (lazily: a daemon may still hold files there).
		for m in $(awk -v v="$HOST:/$v" '$1 == v { print $2 }' /proc/mounts); do
			umount -l "$m"
		done
		gl volume stop "$v" force >/dev/null 2>&1
		gl volume delete "$v" >/dev/null 2>&1
		pkill -KILL -f -- "--volfile-id $v\." 2>/dev/null
	done
	if [[ -n "$GLUSTERD_OURS" ]]; then
		pkill -KILL -F "$TESTDIR/glusterd.pid" 2>/dev/null
		# Its self-heal daemon, which it started for our replica volume.
		pkill -KILL -f -- "--volfile-id shd/$VOL_PREFIX" 2>/dev/null
	fi
	(exit "$rc")
	eval "$GLUSTER_PREV_EXIT_TRAP"
	exit "$rc"
}
eval "set -- $(trap -p EXIT)"
GLUSTER_PREV_EXIT_TRAP="${3:-}"
set --
trap gluster_cleanup EXIT

if ! gluster --mode=script volume list >/dev/null 2>&1; then
	glusterd -p "$TESTDIR/glusterd.pid" --log-file="$TESTDIR/glusterd.log" ||
		skip "cannot start glusterd"
	GLUSTERD_OURS=1
	deadline=$((SECONDS + 30))
	until gluster --mode=script volume list >/dev/null 2>&1; do
		((SECONDS < deadline)) || fail "glusterd does not answer 30 s after its start"
		sleep 0.2
	done
fi
log "glusterd $(glusterd --version | head -n 1 | awk '{ print $2 }'), bricks on $HOST${GLUSTERD_OURS:+ (glusterd started by the test)}"

# volume_up NAME MOUNTPOINT [replica N] BRICKDIR...: a started volume,
# mounted.  Sets VOL to its full name.
volume_up() {
	local name="$VOL_PREFIX-$1" mnt="$2" bricks=() b
	shift 2
	local layout=()
	if [[ "$1" == replica ]]; then
		layout=(replica "$2")
		shift 2
	fi
	for b in "$@"; do
		mkdir -p "$b"
		bricks+=("$HOST:$b")
	done
	VOLUMES+=("$name")
	gl volume create "$name" "${layout[@]}" "${bricks[@]}" force >/dev/null ||
		fail "gluster volume create $name failed"
	gl volume start "$name" >/dev/null || fail "gluster volume start $name failed"
	mkdir -p "$mnt"
	timeout -k 5 60 mount -t glusterfs "$HOST:/$name" "$mnt" || fail "cannot mount $name"
	track_mount "$mnt"
	VOL="$name"
}

# brick_pid VOLUME BRICKDIR: the pid of that brick's server.
brick_pid() {
	gl volume status "$1" "$HOST:$2" --xml | sed -n 's:.*<pid>\([0-9]*\)</pid>.*:\1:p' | head -n 1
}

# --- sections -----------------------------------------------------------------

section_switch() {
	local d="$TESTDIR/gl-switch"
	volume_up switch "$d/gv" replica 2 "$d/b1" "$d/b2"
	mkdir "$d/gv/vms"
	net_switch "$d/gv/vms" "$d/b1/vms" "$d/b2/vms"
}

section_flushes() {
	local d="$TESTDIR/gl-flushes"
	volume_up flushes "$d/gv" replica 2 "$d/b1" "$d/b2"
	mkdir "$d/gv/vms"
	net_flushes "$d/gv/vms" "$(brick_pid "$VOL" "$d/b1") $(brick_pid "$VOL" "$d/b2")" \
		"$d/b1/vms" "$d/b2/vms"
}

# One brick of the replica dies mid-copy: the other carries the volume.
section_brick_down() {
	local d="$TESTDIR/gl-brick-down"
	volume_up brick-down "$d/gv" replica 2 "$d/b1" "$d/b2"
	mkdir "$d/gv/vms"
	net_sources brick-down
	mount_mfs "$SRC" "$MNT"
	guest_start brick-down "$MNT/guest.raw" 1
	ctl "$MNT" start "$d/gv/vms" --speed 8M
	wait_status_state "$MNT" copying 30
	sleep 1
	kill -KILL "$(brick_pid "$VOL" "$d/b2")"
	log "killed the brick $d/b2 at $(bytes_copied "$MNT") bytes copied"
	wait_status_state "$MNT" switched 120
	log "switched with one brick down: stun $(net_stun_ms "$MNT") ms"
	guest_finish brick-down
	net_static_verify "$d/gv/vms" "in the volume"
	net_static_verify "$d/b1/vms" "in the brick left"
	guest_verify brick-down "$d/gv/vms/guest.raw"
	umount_mfs "$MNT"
	net_done
}

section_volume_down() {
	local d="$TESTDIR/gl-volume-down"
	volume_up volume-down "$d/gv" replica 2 "$d/b1" "$d/b2"
	mkdir "$d/gv/vms"
	net_server_down "$d/gv/vms" \
		"kill -KILL $(brick_pid "$VOL" "$d/b1") $(brick_pid "$VOL" "$d/b2")" \
		"Transport endpoint is not connected|Software caused connection abort|Input/output error"
}

section_enospc() {
	local d="$TESTDIR/gl-enospc"
	mkdir -p "$d/small"
	mount -t tmpfs -o size=40m mirrorfs-test-gluster "$d/small" || skip "cannot mount a tmpfs"
	track_mount "$d/small"
	volume_up enospc "$d/gv" "$d/small/brick"
	# Gluster 10.3's FUSE client was seen to crash (SIGSEGV in write-behind)
	# on a write failing with ENOSPC: the mount then fails with ENOTCONN.
	# Without write-behind, ENOSPC is ENOSPC.
	gl volume set "$VOL" performance.write-behind off >/dev/null || fail "cannot turn write-behind off"
	mkdir "$d/gv/vms"
	net_enospc "$d/gv/vms"
}

for s in ${NET_SECTIONS:-switch flushes brick-down volume-down enospc}; do
	"section_${s//-/_}"
done
! mounts_under "$TESTDIR" || fail "a mirrorfs mount was left under $TESTDIR"
exit 0
