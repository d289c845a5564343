# SPDX-License-Identifier: GPL-2.0-or-later
# shellcheck shell=bash
#
# The checks every network target goes through (test-gluster.sh,
# test-sshfs.sh), on top of lib.sh, lib-migration.sh, lib-control.sh,
# lib-fault.sh and lib-invariant.sh.  A test mounts its file system at a
# target directory TGT whose files a server keeps in one or more backing
# directories (Gluster's bricks, the sftp server's directory); then:
#
#   net_switch NAME TGT BACKING...  migrate under a guest; switch; verify
#                                   through the mount, in TGT, in each
#                                   BACKING; kill -9 and restart
#   net_flushes TGT PIDS BACKING... the switch's flush reaches the
#                                   servers (PIDS): an fsync of every
#                                   file in each BACKING, seen by strace
#   net_server_down TGT KILL PATTERN  KILL (a command) stops the servers
#                                   mid-copy: the migration fails with an
#                                   error matching PATTERN, the source
#                                   serves, the guest sees nothing
#   net_enospc TGT [PATTERN [FILLER]]  TGT (on a file system of about
#                                   40 MiB) is filled mid-copy by a file
#                                   FILLER (default beside TGT): the
#                                   migration fails (ENOSPC, or PATTERN:
#                                   what the client makes of it), the
#                                   source serves
#
# Each begins with net_sources NAME, which makes SRC and MNT.

GUEST_SIZE=8M
GUEST_RATE=2m
# Whether the target holds a hard link as one file (sshfs does not: a
# source with one is refused, and the sources here then have none).
NET_HARDLINKS="${NET_HARDLINKS:-yes}"

# net_sources NAME [MiB]: a source tree (SRC) and a mount point (MNT) in
# TESTDIR/NAME: a disk of random data, a config in a subdirectory with a
# hard link beside it (if NET_HARDLINKS), a symlink, and the guest's file
# (fio writes it).
net_sources() {
	SECTION="$1"
	SECTION_T0=$SECONDS
	log "--- $1"
	SRC="$TESTDIR/$1/src"
	MNT="$TESTDIR/$1/mnt"
	mkdir -p "$SRC/conf" "$MNT"
	head -c $((${2:-24} * MiB)) /dev/urandom >"$SRC/disk.raw"
	head -c $((8 * MiB)) /dev/urandom >"$SRC/guest.raw"
	printf 'name=%s\n' "$1" >"$SRC/conf/vm.conf"
	[[ "$NET_HARDLINKS" != yes ]] || ln "$SRC/conf/vm.conf" "$SRC/conf/vm.conf.link"
	ln -s disk.raw "$SRC/disk.link"
	(cd "$SRC" && md5sum disk.raw conf/vm.conf) >"$TESTDIR/$1.md5"
}

net_done() {
	log "--- done in $((SECONDS - SECTION_T0))s"
}

# net_static_verify DIR WHAT: the files no guest writes are whole in DIR.
net_static_verify() {
	(cd "$1" && md5sum -c --quiet "$TESTDIR/$SECTION.md5") || fail "$2: the static files differ"
	assert_eq disk.raw "$(readlink "$1/disk.link")" "$2: the symlink"
	if [[ "$NET_HARDLINKS" == yes ]]; then
		[[ "$1/conf/vm.conf" -ef "$1/conf/vm.conf.link" ]] || fail "$2: the hard link is two files"
	fi
}

net_stun_ms() {
	status_field "$1" stun_ms
}

net_switch() {
	local name="$1" tgt="$2" b
	shift 2
	net_sources "$name"
	mount_mfs "$SRC" "$MNT"
	guest_start "$name" "$MNT/guest.raw" 1
	ctl "$MNT" start "$tgt" --speed 16M
	wait_status_state "$MNT" switched 120
	log "switched: stun $(net_stun_ms "$MNT") ms"
	assert_eq "$tgt" "$(status_field "$MNT" served)" "served after the switch"
	guest_finish "$name"
	net_static_verify "$MNT" "through the mount"
	net_static_verify "$tgt" "in the target"
	guest_verify "$name" "$tgt/guest.raw"
	for b in "$@"; do
		net_static_verify "$b" "in the server's directory $b"
		guest_verify "$name" "$b/guest.raw"
	done

	kill9 "$MNT"
	mount_mfs "$SRC" "$MNT"
	assert_eq "$tgt" "$(status_field "$MNT" served)" "served after kill -9 and a restart"
	net_static_verify "$MNT" "through the mount after kill -9 and a restart"
	guest_verify "$name" "$MNT/guest.raw"
	umount_mfs "$MNT"
	net_done
}

# net_flushes TGT "PID..." BACKING...: one strace per server pid, while the
# switch runs; each BACKING must see an fsync of each file, in one of them.
net_flushes() {
	local tgt="$1" pids=() tracers=() logs=() b f i deadline
	read -r -a pids <<<"$2"
	shift 2
	net_sources flushes 4
	mount_mfs "$SRC" "$MNT"
	ctl "$MNT" start "$tgt" --switch manual
	wait_status_state "$MNT" mirrored 60
	for i in "${!pids[@]}"; do
		logs+=("$TESTDIR/flushes/strace.$i")
		strace -f -y -qq -e trace=fsync,fdatasync -o "${logs[$i]}" -p "${pids[$i]}" &
		tracers+=($!)
	done
	# Attached once a probe's fsync through the target shows in each log
	# that can see it (every server of a replica; one of a set).
	deadline=$((SECONDS + 15))
	until python3 -c 'import os, sys; fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT); os.fsync(fd)' \
		"$tgt/.probe" && [[ "$(cat "${logs[@]}" 2>/dev/null | grep -c '\.probe>')" -ge "${#logs[@]}" ]]; do
		((SECONDS < deadline)) || fail "strace saw no fsync of a probe on every server"
		sleep 0.2
	done
	rm -f "$tgt/.probe"
	ctl "$MNT" switch
	wait_status_state "$MNT" switched 60
	kill "${tracers[@]}"
	wait "${tracers[@]}" 2>/dev/null || true
	log "switched with strace on the servers: stun $(net_stun_ms "$MNT") ms"
	for b in "$@"; do
		for f in disk.raw guest.raw conf/vm.conf; do
			# strace names a hard-linked file by either of its names.
			cat "${logs[@]}" | grep -qE "(fsync|fdatasync)\([0-9]+<$b/$f(\.link)?>\) += 0" ||
				fail "the switch's flush did not reach $b/$f:"$'\n'"$(cat "${logs[@]}")"
		done
		net_static_verify "$b" "in the server's directory $b"
	done
	umount_mfs "$MNT"
	net_done
}

net_server_down() {
	local tgt="$1" kill_cmd="$2" pattern="$3" err
	net_sources server-down
	mount_mfs "$SRC" "$MNT"
	guest_start server-down "$MNT/guest.raw" 1
	ctl "$MNT" start "$tgt" --speed 8M
	wait_status_state "$MNT" copying 30
	sleep 1
	eval "$kill_cmd"
	log "servers stopped at $(bytes_copied "$MNT") bytes copied"
	err="$(expect_failed "$MNT" "$pattern" 90)"
	log "failed: $err"
	expect_serves_source "$MNT" "$SRC"
	guest_finish server-down
	umount_mfs "$MNT"
	guest_verify server-down "$SRC/guest.raw"
	net_static_verify "$SRC" "in the source"
	net_done
}

net_enospc() {
	local tgt="$1" pattern="${2:-No space left on device}" filler="${3:-$1/../filler}" err
	net_sources enospc
	mount_mfs "$SRC" "$MNT"
	guest_start enospc "$MNT/guest.raw" 1
	ctl "$MNT" start "$tgt" --speed 8M
	wait_status_state "$MNT" copying 30
	# Another tenant takes the room the copy counted on.
	head -c $((40 * MiB)) /dev/zero >"$filler" 2>/dev/null || true
	err="$(expect_failed "$MNT" "$pattern" 90)"
	log "failed: $err"
	expect_serves_source "$MNT" "$SRC"
	guest_finish enospc
	umount_mfs "$MNT"
	guest_verify enospc "$SRC/guest.raw"
	net_static_verify "$SRC" "in the source"
	net_done
}
