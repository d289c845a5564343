#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# sshfs over loopback as the target (issue 23): another FUSE client with
# another consistency model (the sftp protocol, no server-side locking),
# against a private sshd of the test's own (its host key, a client key
# and its config in the test directory, 127.0.0.1 on a free port, the
# sftp server inside sshd), with the checks of lib-network.sh:
#
#   switch       the migration switches under a guest; the data verifies
#                through the mount, in the sshfs mount and in the server's
#                directory; kill -9 and a restart serve the target.
#   flushes      with strace on the sftp server during the switch, every
#                regular file is fsync()ed there (sshfs passes a file's
#                fsync on as fsync@openssh.com; a directory's, and syncfs,
#                reach nothing).
#   server-down  the ssh session (and its sftp server) is killed
#                mid-copy: sshfs fails every operation; the migration
#                fails, the source serves, the guest sees nothing.
#   hardlink     a source with a hard link is refused (sshfs makes each
#                name a file of its own, with its own cached size); a link
#                the guest makes while mirrored fails the migration.
#   enospc       the server's directory is a 40 MiB tmpfs, filled on the
#                server's side mid-copy: the migration fails (on EIO: the
#                SFTP protocol has no "no space" status).
#
# Nothing of the system's ssh setup is used or changed; every process
# the test started is killed at the end.
#
#     meson test -C build --print-errorlogs sshfs
#
# NET_SECTIONS="switch enospc" runs only those sections.

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
. "$(dirname "${BASH_SOURCE[0]}")/lib-migration.sh"
. "$(dirname "${BASH_SOURCE[0]}")/lib-control.sh"
. "$(dirname "${BASH_SOURCE[0]}")/lib-fault.sh"
. "$(dirname "${BASH_SOURCE[0]}")/lib-invariant.sh"
. "$(dirname "${BASH_SOURCE[0]}")/lib-network.sh"
require_cmd sshfs ssh-keygen fio md5sum strace
SSHD=/usr/sbin/sshd
[[ -x "$SSHD" ]] || skip "no $SSHD (Debian: openssh-server)"
cd "$TESTDIR"

SSH_DIR="$TESTDIR/ssh"
# sshfs gives each name its own inode: a hard link shows as two files.
NET_HARDLINKS=no
SSHD_PID=

# descendants PID: PID's children, theirs, and so on.
descendants() {
	local c
	for c in $(pgrep -P "$1"); do
		echo "$c"
		descendants "$c"
	done
}

# Every sshd this test started, sessions included (an sshd's sessions
# outlive it): never anything else.
sshd_stop() {
	[[ -n "$SSHD_PID" ]] || return 0
	kill -KILL $(descendants "$SSHD_PID") "$SSHD_PID" 2>/dev/null
	SSHD_PID=
}

sshfs_cleanup() {
	local rc=$?
	set +e
	cd /
	for m in $(awk -v d="$TESTDIR/" '$3 == "fuse.sshfs" && index($2, d) == 1 { print $2 }' /proc/mounts); do
		umount -l "$m"
	done
	sshd_stop
	(exit "$rc")
	eval "$SSHFS_PREV_EXIT_TRAP"
	exit "$rc"
}
eval "set -- $(trap -p EXIT)"
SSHFS_PREV_EXIT_TRAP="${3:-}"
set --
trap sshfs_cleanup EXIT

# A private sshd on 127.0.0.1: root by key only, the sftp server built in.
mkdir -p "$SSH_DIR" /run/sshd
ssh-keygen -q -t ed25519 -N '' -f "$SSH_DIR/host_key"
ssh-keygen -q -t ed25519 -N '' -f "$SSH_DIR/client_key"
cp "$SSH_DIR/client_key.pub" "$SSH_DIR/authorized_keys"
PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
cat >"$SSH_DIR/sshd_config" <<EOF
ListenAddress 127.0.0.1:$PORT
HostKey $SSH_DIR/host_key
AuthorizedKeysFile $SSH_DIR/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
Subsystem sftp internal-sftp
EOF
"$SSHD" -D -e -f "$SSH_DIR/sshd_config" 2>"$SSH_DIR/sshd.log" &
SSHD_PID=$!
deadline=$((SECONDS + 15))
until grep -q "Server listening" "$SSH_DIR/sshd.log"; do
	pid_alive "$SSHD_PID" || skip "sshd does not start: $(cat "$SSH_DIR/sshd.log")"
	((SECONDS < deadline)) || fail "sshd not listening 15 s after its start"
	sleep 0.1
done
log "$("$SSHD" -V 2>&1 | head -n 1), $(sshfs --version 2>&1 | head -n 1), port $PORT"

# sshfs_up DIR MOUNTPOINT: DIR of the sshd's host mounted with sshfs.
sshfs_up() {
	mkdir -p "$1" "$2"
	timeout -k 5 30 sshfs -p "$PORT" \
		-o "IdentityFile=$SSH_DIR/client_key,StrictHostKeyChecking=no,UserKnownHostsFile=/dev/null,BatchMode=yes,LogLevel=ERROR" \
		"root@127.0.0.1:$1" "$2" || fail "sshfs cannot mount $1"
	track_mount "$2"
}

# The sftp server of the session that serves MOUNTPOINT's sshfs: the
# newest internal-sftp process under our sshd.
sftp_server_pid() {
	local p
	for p in $(descendants "$SSHD_PID"); do
		[[ "$(cat "/proc/$p/cmdline" 2>/dev/null | tr '\0' ' ')" == *internal-sftp* ]] && echo "$p"
	done | sort -n | tail -n 1
}

section_switch() {
	local d="$TESTDIR/ss-switch"
	sshfs_up "$d/server" "$d/tgt"
	net_switch switch "$d/tgt" "$d/server"
}

section_flushes() {
	local d="$TESTDIR/ss-flushes"
	sshfs_up "$d/server" "$d/tgt"
	net_flushes "$d/tgt" "$(sftp_server_pid)" "$d/server"
}

section_server_down() {
	local d="$TESTDIR/ss-server-down" session
	sshfs_up "$d/server" "$d/tgt"
	session="$(descendants "$SSHD_PID" | tr '\n' ' ')"
	[[ -n "$session" ]] || fail "no ssh session under the test's sshd"
	net_server_down "$d/tgt" "kill -KILL $session" \
		"Transport endpoint is not connected|Software caused connection abort|Input/output error|Connection reset"
}

# sshfs makes each name of a hard link a file of its own, with its own
# cached size: after the switch, a write through one name would leave the
# other reading stale bytes.  A source with one is refused, changing
# nothing; a link the guest makes while the migration mirrors fails it,
# and the source stays authoritative.
section_hardlink() {
	local d="$TESTDIR/ss-hardlink" err
	sshfs_up "$d/server" "$d/tgt"
	net_sources hardlink 1
	ln "$SRC/disk.raw" "$SRC/disk.raw.link"
	mount_mfs "$SRC" "$MNT"
	expect_cli "start with a hard link in the source" 1 \
		"target '$d/tgt' cannot hold a hard link (the target makes each name a file of its own) of 'disk.raw'" \
		"$MIRRORFSCTL" "$MNT" start "$d/tgt"
	assert_eq idle "$(status_field "$MNT" state)" "state after the refused start"
	assert_eq "" "$(names_below "$d/server")" "the server's directory after the refused start"

	rm "$MNT/disk.raw.link"
	ctl "$MNT" start "$d/tgt" --switch manual
	wait_status_state "$MNT" mirrored 60
	ln "$MNT/conf/vm.conf" "$MNT/conf/vm.conf.link"
	err="$(expect_failed "$MNT" "link 'vm.conf.link': the target cannot hold a hard link" 30)"
	log "failed: $err"
	expect_serves_source "$MNT" "$SRC"
	[[ "$SRC/conf/vm.conf" -ef "$SRC/conf/vm.conf.link" ]] || fail "the guest's link is not in the source"
	umount_mfs "$MNT"
	net_done
}

section_enospc() {
	local d="$TESTDIR/ss-enospc"
	mkdir -p "$d/server"
	mount -t tmpfs -o size=40m mirrorfs-test-sshfs "$d/server" || skip "cannot mount a tmpfs"
	track_mount "$d/server"
	mkdir "$d/server/vms"
	sshfs_up "$d/server" "$d/tgt"
	# SFTP v3 has no "no space" status: sshfs reports EIO.  The disk
	# fills on the server's side: 40 MiB written through this sshfs would
	# queue on its one connection ahead of the migration's writes (and
	# OpenSSH's sftp server takes minutes over such a backlog).
	net_enospc "$d/tgt/vms" "Input/output error" "$d/server/filler"
}

for s in ${NET_SECTIONS:-switch flushes server-down hardlink enospc}; do
	"section_${s//-/_}"
done
! mounts_under "$TESTDIR" || fail "a mirrorfs mount was left under $TESTDIR"
exit 0
