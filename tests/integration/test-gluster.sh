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
#   virt        the same onto a volume with gluster's "virt" group of
#               options (what oVirt sets for VM images: sharding, client
#               quorum, strict O_DIRECT), checked through the volume.
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
# The volumes come and go with lib-gluster.sh.
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
. "$(dirname "${BASH_SOURCE[0]}")/lib-gluster.sh"
require_cmd fio md5sum strace
cd "$TESTDIR"

gluster_setup

# --- sections -----------------------------------------------------------------

section_switch() {
	local d="$TESTDIR/gl-switch"
	volume_up switch "$d/gv" replica 2 "$d/b1" "$d/b2"
	mkdir "$d/gv/vms"
	net_switch switch "$d/gv/vms" "$d/b1/vms" "$d/b2/vms"
}

# The options oVirt and RHV give a volume of VM images (gluster's "virt"
# group: sharding in 64 MiB pieces, client quorum, strict O_DIRECT...):
# the bricks hold shards, so the data is checked through the volume.
section_virt() {
	local d="$TESTDIR/gl-virt"
	volume_up virt "$d/gv" replica 2 "$d/b1" "$d/b2" --group-virt
	mkdir "$d/gv/vms"
	net_switch virt "$d/gv/vms"
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

for s in ${NET_SECTIONS:-switch virt flushes brick-down volume-down enospc}; do
	"section_${s//-/_}"
done
! mounts_under "$TESTDIR" || fail "a mirrorfs mount was left under $TESTDIR"
exit 0
