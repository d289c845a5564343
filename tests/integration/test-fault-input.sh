#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Awkward input a migration must take in its stride (doc/reliability.md
# lists these with the rest):
#
#   names      SOURCE and TARGET paths with spaces, a newline and non-ASCII
#              letters, and a tree whose names have spaces, newlines, tabs,
#              quotes, backslashes, a leading dash, non-ASCII letters and
#              255 bytes: migrated (-o target=, and mirrorfsctl start with a
#              comma in the path), the target equals the source, and a
#              restart follows the journal to the right directory.
#   special    FIFOs, a socket, character and block devices, hard links
#              across directories, symlinks out of the tree (absolute and
#              relative), dangling and looping, mode 000, setuid and sticky
#              bits, a foreign owner: the same in the target, device numbers
#              and link groups included.
#   locked     qemu-io holds a qcow2 image (its locks) through the mount
#              during the migration: another qemu-io cannot open it for
#              writing before, during or after the switch; the holder's
#              writes before and after are all in the target.
#   control    a second start while one runs (to the same target and to
#              another), two cancels at once, a cancel after the cancel,
#              and clients that hang up in the middle: half a request, a
#              request and no wait for the answer (the daemon must not die
#              of SIGPIPE), nothing at all.
#   self       a target inside the mount itself (the daemon would write to
#              its own file system): refused at once; the daemon goes on
#              serving.
#
# INPUT_SECTIONS="names special" runs only those sections.

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
. "$(dirname "${BASH_SOURCE[0]}")/lib-migration.sh"
. "$(dirname "${BASH_SOURCE[0]}")/lib-control.sh"
. "$(dirname "${BASH_SOURCE[0]}")/lib-fault.sh"
require_cmd qemu-img qemu-io mkfifo mknod stat
cd "$TESTDIR"

MNT="$TESTDIR/mnt"
mkdir -p "$MNT"

# ref_copy SRC REF: a reference copy of SRC, everything kept.
ref_copy() {
	cp -a -- "$1" "$2"
}

section_names() {
	local SRC DST DST2 REF long
	log "--- names"
	SRC="$TESTDIR/source dir ü"$'\n'"line"
	DST="$TESTDIR/target dir ✓"$'\t'"tab"$'\n'"x"
	DST2="$TESTDIR/second, with a comma"
	REF="$TESTDIR/names-ref"
	mkdir -p "$SRC/dir with space/sub dir" "$SRC/日本語" "$DST" "$DST2"
	long="$(printf 'L%.0s' {1..251})"
	for f in "a b.raw" $'new\nline.raw' $'tab\tname.raw' "ü-日本.raw" "-dash.raw" 'back\slash.raw' \
		"quote\"s'.raw" "star*.raw" ".hidden.raw" "$long.raw" "dir with space/sub dir/deep file.raw" \
		"日本語/ファイル.raw"; do
		head -c $((RANDOM * 16 + 1)) /dev/urandom >"$SRC/$f"
	done
	head -c $((4 * MiB)) /dev/urandom >"$SRC/big ü.raw"
	ref_copy "$SRC" "$REF"

	mount_mfs "$SRC" "$MNT" -o "target=$DST"
	wait_status_state "$MNT" switched 60
	assert_eq "$DST" "$(status_path "$MNT" target)" "target in the status"
	assert_eq "$DST" "$(status_path "$MNT" served)" "served in the status"
	assert_trees_equal "$REF" "$DST" "the target"
	assert_trees_equal "$DST" "$MNT" "the mount"
	umount_mfs "$MNT"
	# A restart reads the journal, paths and all.
	mount_mfs "$SRC" "$MNT"
	assert_eq "$DST" "$(status_path "$MNT" served)" "served after a restart"
	# And on, with mirrorfsctl, to a path with a comma (which -o would split).
	ctl "$MNT" start "$DST2"
	wait_status_state "$MNT" switched 60
	assert_eq "$DST2" "$(status_path "$MNT" served)" "served after the second migration"
	assert_trees_equal "$REF" "$DST2" "the second target"
	umount_mfs "$MNT"
}

section_special() {
	local SRC="$TESTDIR/special/src" DST="$TESTDIR/special/dst" REF="$TESTDIR/special/ref" f
	log "--- special"
	mkdir -p "$SRC/a/b" "$SRC/c" "$SRC/sticky" "$DST" "$TESTDIR/special/outside"
	echo outside >"$TESTDIR/special/outside/file"
	head -c $((2 * MiB)) /dev/urandom >"$SRC/disk.raw"
	mkfifo "$SRC/fifo" "$SRC/a/fifo2"
	"$PYTHON" -c 'import socket, sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])' "$SRC/sock"
	mknod "$SRC/null-like" c 1 3
	mknod "$SRC/a/blockdev" b 7 200
	echo linked >"$SRC/a/b/hard"
	ln "$SRC/a/b/hard" "$SRC/c/hard2"
	ln "$SRC/a/b/hard" "$SRC/hard3"
	ln -s /etc/hostname "$SRC/abs-out"
	ln -s ../outside/file "$SRC/rel-out"
	ln -s /nonexistent/nowhere "$SRC/dangling"
	ln -s loop2 "$SRC/loop1"
	ln -s loop1 "$SRC/loop2"
	ln -s a "$SRC/dir-link"
	echo secret >"$SRC/mode000"
	chmod 000 "$SRC/mode000"
	echo suid >"$SRC/suid"
	chmod 4755 "$SRC/suid"
	chmod 1777 "$SRC/sticky"
	echo foreign >"$SRC/foreign"
	chown 12345:54321 "$SRC/foreign"
	ref_copy "$SRC" "$REF"

	mount_mfs "$SRC" "$MNT" -o "target=$DST"
	wait_status_state "$MNT" switched 60
	assert_trees_equal "$REF" "$DST" "the target"
	assert_trees_equal "$DST" "$MNT" "the mount"
	for f in null-like a/blockdev; do
		assert_eq "$(stat -c '%F %t:%T' "$REF/$f")" "$(stat -c '%F %t:%T' "$DST/$f")" "device $f"
	done
	assert_eq socket "$(stat -c %F "$DST/sock")" "the socket"
	assert_eq "$(stat -c %i "$DST/a/b/hard")" "$(stat -c %i "$DST/c/hard2")" "hard link group"
	assert_eq "$(stat -c %i "$DST/a/b/hard")" "$(stat -c %i "$DST/hard3")" "hard link group"
	assert_eq 3 "$(stat -c %h "$DST/hard3")" "link count"
	assert_eq outside "$(cat "$DST/rel-out" 2>/dev/null || true)" "a relative link out of the tree, in the target"
	umount_mfs "$MNT"
}

section_locked() {
	local SRC="$TESTDIR/locked/src" DST="$TESTDIR/locked/dst" fifo fd hpid out i
	log "--- locked"
	mkdir -p "$SRC" "$DST"
	run qemu-img create -q -f qcow2 "$SRC/vm.qcow2" 64M
	run qemu-io -f qcow2 -c 'write -P 0x01 0 48M' "$SRC/vm.qcow2" >/dev/null
	head -c $((24 * MiB)) /dev/urandom >"$SRC/other.raw"

	mount_mfs "$SRC" "$MNT"
	fifo="$TESTDIR/holder.fifo"
	mkfifo "$fifo"
	timeout -k 5 "$CMD_TIMEOUT" qemu-io -f qcow2 -t none "$MNT/vm.qcow2" <"$fifo" \
		>"$TESTDIR/holder.log" 2>&1 &
	hpid=$!
	track_bg "$hpid"
	exec {fd}>"$fifo"
	# holder CMD: one command, and wait for it to be done.
	holder() {
		local n0 deadline=$((SECONDS + 30))
		n0="$(grep -c 'bytes at offset' "$TESTDIR/holder.log" || true)"
		printf '%s\n' "$1" >&"$fd"
		until (($(grep -c 'bytes at offset' "$TESTDIR/holder.log" || true) > n0)); do
			pid_alive "$hpid" || fail "qemu-io holder exited: $(cat "$TESTDIR/holder.log")"
			((SECONDS < deadline)) || fail "qemu-io holder: '$1' not done: $(cat "$TESTDIR/holder.log")"
			sleep 0.05
		done
	}
	# locked WHEN: a second writer is refused the image.
	locked() {
		out="$(run qemu-io -f qcow2 -c 'read 0 4k' "$MNT/vm.qcow2" 2>&1)" &&
			fail "$1: a second qemu-io opened the image the holder holds: $out"
		assert_contains "$out" "lock" "$1: the second qemu-io's error"
	}
	holder "write -P 0x11 0 1M"
	locked "before the migration"
	ctl "$MNT" start "$DST" --speed 16M
	holder "write -P 0x22 1M 1M"
	locked "during the copy"
	wait_status_state "$MNT" switched 60
	holder "write -P 0x33 2M 1M"
	locked "after the switch"
	for i in 11:0 22:1M 33:2M; do
		holder "read -P 0x${i%%:*} ${i#*:} 1M"
	done
	! grep -qiE 'fail|error|mismatch' "$TESTDIR/holder.log" || fail "the holder: $(cat "$TESTDIR/holder.log")"
	printf 'quit\n' >&"$fd"
	exec {fd}>&-
	wait_pid_exit "$hpid" 20 || fail "the holder does not quit"
	umount_mfs "$MNT"
	run qemu-img check -q "$DST/vm.qcow2" || fail "qemu-img check of the target"
	out="$(run qemu-io -r -f qcow2 -c 'read -P 0x11 0 1M' -c 'read -P 0x22 1M 1M' \
		-c 'read -P 0x33 2M 1M' -c 'read -P 0x01 3M 45M' "$DST/vm.qcow2" 2>&1)" || fail "qemu-io on the target: $out"
	! grep -qiE 'fail|error|mismatch' <<<"$out" || fail "the target's image: $out"
	assert_file_eq "$SRC/other.raw" "$DST/other.raw"
}

# send_and_hang_up SOCKET DATA: connect, send DATA (printf format), close
# at once without reading.
send_and_hang_up() {
	"$PYTHON" - "$1" "$2" <<-'EOF'
	import socket, sys
	s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
	s.connect(sys.argv[1])
	if sys.argv[2]:
	    s.sendall(sys.argv[2].encode().decode("unicode_escape").encode())
	s.close()
	EOF
}

section_control() {
	local SRC="$TESTDIR/control/src" DST="$TESTDIR/control/dst" DST2="$TESTDIR/control/dst2"
	local sock p1 p2 r1 r2 before
	log "--- control"
	mkdir -p "$SRC" "$DST" "$DST2"
	head -c $((32 * MiB)) /dev/urandom >"$SRC/disk.raw"
	echo keep >"$DST/keep"
	before="$(names_below "$DST")"
	mount_mfs "$SRC" "$MNT"
	sock="$(control_socket "$MNT")"

	# Hang-ups: nothing happens for half a request or for nothing.
	send_and_hang_up "$sock" ""
	send_and_hang_up "$sock" "{\"command\":\"start\",\"target\":\"$DST\""
	send_and_hang_up "$sock" '{"command":"sta'
	sleep 0.5
	assert_eq idle "$(status_field "$MNT" state)" "state after hung-up half requests"
	assert_eq "$before" "$(names_below "$DST")" "target after hung-up half requests"
	# A whole request whose sender does not wait for the answer is a request;
	# writing the answer to nobody must not kill the daemon (SIGPIPE).
	send_and_hang_up "$sock" "{\"command\":\"start\",\"target\":\"$DST\",\"speed\":\"4M\"}\\n"
	sleep 0.5
	pid_alive "${MFS_PID[$(realpath "$MNT")]}" || fail "the daemon died when a client hung up"
	assert_eq copying "$(status_field "$MNT" state)" "state after a start whose client hung up"

	check_cli "second start, same target" 1 "already running" "$MIRRORFSCTL" "$MNT" start "$DST"
	check_cli "second start, other target" 1 "already running" "$MIRRORFSCTL" "$MNT" start "$DST2"
	assert_eq "" "$(names_below "$DST2")" "the other target after the refused start"

	# Two cancels at once: one does it, the other finds it done (or doing).
	timeout 20 "$MIRRORFSCTL" "$MNT" cancel >"$TESTDIR/c1.out" 2>&1 &
	p1=$!
	timeout 20 "$MIRRORFSCTL" "$MNT" cancel >"$TESTDIR/c2.out" 2>&1 &
	p2=$!
	r1=0 r2=0
	wait "$p1" || r1=$?
	wait "$p2" || r2=$?
	((r1 == 0 || r2 == 0)) || fail "neither cancel succeeded: $(cat "$TESTDIR/c1.out" "$TESTDIR/c2.out")"
	((r1 <= 1 && r2 <= 1)) || fail "a cancel hung or crashed ($r1, $r2): $(cat "$TESTDIR/c1.out" "$TESTDIR/c2.out")"
	log "two cancels: $r1 '$(cat "$TESTDIR/c1.out")', $r2 '$(cat "$TESTDIR/c2.out")'"
	wait_status_state "$MNT" cancelled 30
	check_cli "cancel after the cancel" 1 "already cancelled" "$MIRRORFSCTL" "$MNT" cancel
	send_and_hang_up "$sock" '{"command":"cancel"}\n'
	assert_eq "$before" "$(names_below "$DST")" "target after the cancel"
	# And a new one still works.
	ctl "$MNT" start "$DST2"
	wait_status_state "$MNT" switched 60
	assert_file_eq "$SRC/disk.raw" "$DST2/disk.raw"
	umount_mfs "$MNT"
	((SOFT_FAILURES == 0)) || fail "$SOFT_FAILURES check(s) failed"
}

# abort_fuse MOUNTPOINT: abort the FUSE connection of a daemon that no
# longer answers (a thread of it waits on its own mount: not even SIGKILL
# ends it then), so that the test can end and clean up.
abort_fuse() {
	local mm
	mountpoint -q /sys/fs/fuse/connections ||
		mount -t fusectl none /sys/fs/fuse/connections 2>/dev/null || true
	mm="$(awk -v m="$(realpath "$1")" '$5 == m { print $3 }' /proc/self/mountinfo | tail -n 1)"
	[[ -n "$mm" && -w "/sys/fs/fuse/connections/${mm#*:}/abort" ]] &&
		echo 1 >"/sys/fs/fuse/connections/${mm#*:}/abort"
	return 0
}

# refused_at_once WHAT TARGET: mirrorfsctl start TARGET is refused by the
# daemon (an answer, not a time-out), and the daemon still answers.
refused_at_once() {
	CLI_TIMEOUT=15 cli "$MIRRORFSCTL" "$MNT" start "$2"
	if [[ "$CLI_ERR" == *"no answer"* ]] || ((CLI_RC == 124 || CLI_RC == 137)); then
		abort_fuse "$MNT"
		fail "$1: the daemon stopped answering (it writes to its own mount?): $CLI_ERR"
	fi
	msg="$(cli_verdict "$1" 1 "" mirrorfsctl)" || fail "$msg"
	log "$1: refused: $CLI_ERR"
	CLI_TIMEOUT=10 cli "$MIRRORFS_STATUS" "$MNT"
	if ((CLI_RC != 0)); then
		abort_fuse "$MNT"
		fail "$1: the daemon no longer answers: $CLI_ERR"
	fi
}

section_self() {
	local SRC="$TESTDIR/self/src"
	log "--- self"
	mkdir -p "$SRC/sub"
	head -c $((4 * MiB)) /dev/urandom >"$SRC/disk.raw"
	mount_mfs "$SRC" "$MNT"
	mkdir "$MNT/inside"
	refused_at_once "start to a directory inside the mount" "$MNT/inside"
	refused_at_once "start to the mount point itself" "$MNT"
	run sh -c 'echo alive >"$1"' - "$MNT/probe" || { abort_fuse "$MNT"; fail "the mount hangs"; }
	assert_eq alive "$(cat "$SRC/probe")" "a write through the mount after the refusals"
	umount_mfs "$MNT"
}

for s in ${INPUT_SECTIONS:-names special locked control self}; do
	"section_$s"
done
! mounts_under "$TESTDIR" || fail "a mirrorfs mount was left under $TESTDIR"
exit 0
