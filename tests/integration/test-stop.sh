#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# A daemon asked to stop (SIGTERM, SIGINT, SIGHUP) while files are open
# keeps serving: ending the session would fail every I/O of the running
# VMs with ENOTCONN.  It logs how many files are open and how to detach
# the mount lazily; detached so, it goes on serving the open file and
# exits by itself when it is closed.  With no file open, the signal stops
# it as before.
#
# Under systemd (Type=notify) it says READY=1 on $NOTIFY_SOCKET once the
# mount serves, a path or an abstract name, and STOPPING=1 when it stops;
# a socket that is not there costs a warning, not the mount.

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
. "$(dirname "${BASH_SOURCE[0]}")/lib-migration.sh"

SRC="$TESTDIR/src"
MNT="$TESTDIR/mnt"
mkdir "$SRC" "$MNT"
head -c $((1024 * 1024)) /dev/urandom >"$SRC/disk.raw"

mount_mfs "$SRC" "$MNT"
PID="${MFS_PID[$MNT]}"
LOGF="$(daemon_log "$MNT")"

# A guest: the file open read-write on descriptor 3 of this shell.
exec 3<>"$MNT/disk.raw"
for sig in TERM INT HUP; do
	kill -"$sig" "$PID"
	sleep 0.5
	pid_alive "$PID" || fail "SIG$sig with a file open stopped the daemon"
	is_mounted "$MNT" || fail "SIG$sig with a file open unmounted '$MNT'"
	# The open file still works, both ways.
	printf 'after SIG%s' "$sig" | run dd of=/dev/fd/3 bs=64 seek=1 conv=notrunc status=none ||
		fail "writing the open file after SIG$sig"
	run dd if="$MNT/disk.raw" bs=64 skip=1 count=1 status=none | grep -q "after SIG$sig" ||
		fail "the write after SIG$sig is not in the file"
done
grep -q "not stopping: 1 file is open; unmount with fusermount3 -u -z $MNT" "$LOGF" ||
	fail "no message saying why the daemon goes on:"$'\n'"$(cat "$LOGF")"

log "lazily detached, it serves the open file until it is closed"
run fusermount3 -u -z "$MNT"
is_mounted "$MNT" && fail "'$MNT' still mounted after fusermount3 -u -z"
sleep 0.5
pid_alive "$PID" || fail "the daemon exited while a file was open on the detached mount"
printf 'detached' | run dd of=/dev/fd/3 bs=64 seek=2 conv=notrunc status=none ||
	fail "writing the open file on the detached mount"
exec 3>&-
wait_pid_exit "$PID" 20 || fail "the daemon did not exit when the last file was closed"
rc=0
wait "$PID" || rc=$?
unset 'MFS_PID[$MNT]'
((rc == 0)) || fail "the daemon exited $rc after the lazy detach:"$'\n'"$(cat "$LOGF")"
run dd if="$SRC/disk.raw" bs=64 skip=2 count=1 status=none | grep -q detached ||
	fail "the write on the detached mount is not in the source"

log "with no file open, SIGTERM stops it"
mount_mfs "$SRC" "$MNT"
PID="${MFS_PID[$MNT]}"
kill -TERM "$PID"
wait_pid_exit "$PID" 20 || fail "SIGTERM with no file open did not stop the daemon"
rc=0
wait "$PID" || rc=$?
unset 'MFS_PID[$MNT]'
assert_eq 0 "$rc" "the daemon's exit status after SIGTERM"
is_mounted "$MNT" && fail "'$MNT' still mounted after SIGTERM"

log "a SIGTERM that lands between the session loop's check and its wait stops it"
# The daemon's main thread, about to wait for the first time, reads a byte
# from the FIFO and raises SIGTERM: the handler ends the session there.  A
# loop that took the signal outside its wait would then wait for a worker
# that nothing wakes (nothing touches the mount from here on).
mkfifo "$TESTDIR/before-wait"
MIRRORFS_TEST_SIGNAL_BEFORE_WAIT="$TESTDIR/before-wait" mount_mfs "$SRC" "$MNT"
PID="${MFS_PID[$MNT]}"
echo >"$TESTDIR/before-wait"
wait_pid_exit "$PID" 20 || fail "a SIGTERM before the loop's wait did not stop the daemon"
rc=0
wait "$PID" || rc=$?
unset 'MFS_PID[$MNT]'
assert_eq 0 "$rc" "the daemon's exit status after the SIGTERM before the wait"
grep -q "test: SIGTERM before the wait" "$(daemon_log "$MNT")" ||
	fail "the test hook did not run"
is_mounted "$MNT" && fail "'$MNT' still mounted after SIGTERM"

# notify_listen SOCKET OUT: systemd's side, in the background: each line
# received, with whether the mount served a read at that moment.
notify_listen() {
	python3 - "$1" "$2" "$MNT" <<-'EOF' &
		import os, socket, sys
		path, out, mnt = sys.argv[1:4]
		s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
		s.bind("\0" + path[1:] if path.startswith("@") else path)
		open(out + ".bound", "w").close()
		with open(out, "w") as f:
		    while True:
		        msg = s.recv(4096).decode()
		        served = False
		        try:
		            with open(os.path.join(mnt, "disk.raw"), "rb") as img:
		                served = os.path.ismount(mnt) and len(img.read(16)) == 16
		        except OSError:
		            pass
		        for line in msg.splitlines():
		            f.write(f"{line} served={served}\n")
		        f.flush()
		        if "STOPPING=1" in msg:
		            break
	EOF
	LISTENER=$!
	track_bg "$LISTENER"
	until [[ -e "$2.bound" ]]; do sleep 0.02; done
}

for sock in "$TESTDIR/notify.sock" "@mirrorfs-test-notify-$$"; do
	log "readiness on NOTIFY_SOCKET=$sock"
	out="$TESTDIR/notify.$RANDOM"
	notify_listen "$sock" "$out"
	NOTIFY_SOCKET="$sock" mount_mfs "$SRC" "$MNT"
	deadline=$((SECONDS + 20))
	until grep -q "^READY=1" "$out" 2>/dev/null; do
		((SECONDS < deadline)) || fail "no READY=1 on $sock"
		sleep 0.05
	done
	grep -qx "READY=1 served=True" "$out" || fail "READY=1 before the mount served: $(cat "$out")"
	grep -q "^STATUS=serving $SRC on $MNT " "$out" || fail "no STATUS line: $(cat "$out")"
	grep -qx "MAINPID=${MFS_PID[$MNT]} served=True" "$out" || fail "no MAINPID line: $(cat "$out")"
	umount_mfs "$MNT"
	wait_pid_exit "$LISTENER" 20 || fail "no STOPPING=1 on $sock: $(cat "$out")"
	grep -q "^STOPPING=1" "$out" || fail "no STOPPING=1 on $sock: $(cat "$out")"
done

log "a NOTIFY_SOCKET that is not there: a warning, and the mount serves"
NOTIFY_SOCKET="$TESTDIR/nobody-listens" mount_mfs "$SRC" "$MNT"
run cmp -s "$SRC/disk.raw" "$MNT/disk.raw" || fail "the mount does not serve"
grep -q "cannot tell systemd that the mount serves (NOTIFY_SOCKET=$TESTDIR/nobody-listens): No such file or directory" \
	"$(daemon_log "$MNT")" || fail "no warning: $(cat "$(daemon_log "$MNT")")"
umount_mfs "$MNT"

if command -v systemd-analyze >/dev/null; then
	log "the shipped unit is one systemd accepts"
	unit="$TESTDIR/mirrorfs@.service"
	sed "s|/usr/local/bin/mirrorfs|$MIRRORFS|" "$(dirname "${BASH_SOURCE[0]}")/../../examples/mirrorfs@.service" >"$unit"
	out="$(systemd-analyze verify --man=no "$unit" 2>&1)" || fail "systemd-analyze verify: $out"
	[[ -z "$out" ]] || fail "systemd-analyze verify: $out"
fi
exit 0
