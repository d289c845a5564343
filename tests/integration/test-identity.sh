#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Identities, not paths (issue 17, items 13 and 14).  A migration target
# that leads into the daemon's own mount (a symlink, a bind mount, the
# mount point) or back into the source (a bind mount of one of its
# directories, of an ancestor) must be refused at once, with one line
# naming it, leaving nothing behind and the mount working: before, the
# first deadlocked the daemon and the second filled the source with
# copies of itself.  Every start is bounded in time, so that a deadlock
# fails the test instead of hanging it.
#
# One daemon per tree: a second daemon on a served source, or a migration
# to a directory another daemon serves, is refused naming the first; after
# a switch the claim is on the target (a daemon started on the old source
# follows the journal there and is refused) and no longer on the source.
# And a journal naming a missing directory is reported as such.

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
. "$(dirname "${BASH_SOURCE[0]}")/lib-migration.sh"
. "$(dirname "${BASH_SOURCE[0]}")/lib-control.sh"
require_cmd mount umount mountpoint flock

SRC="$TESTDIR/src"
MNT="$TESTDIR/mnt"
mkdir -p "$SRC/sub/deeper" "$MNT" "$TESTDIR/roads"
head -c $((1024 * 1024)) /dev/urandom >"$SRC/disk.raw"
echo conf >"$SRC/sub/vm.conf"

# listing DIR: names, types and sizes below DIR, to see that nothing changed.
listing() {
	(cd "$1" && find . -printf '%p %y %s\n' | LC_ALL=C sort)
}

mount_mfs "$SRC" "$MNT"
DAEMON="${MFS_PID[$MNT]}"
BEFORE="$(listing "$SRC")"

# deadlocked WHAT: abort the mount's FUSE connection, so that the EXIT trap
# can clean up (kill -9 does not free a daemon waiting on itself), and fail.
# A forced unmount aborts it (fuse's umount_begin) without looking at the
# path (-c), which would hang too; /sys/fs/fuse/connections if mounted.
deadlocked() {
	local minor
	minor="$(awk -v m="$MNT" '$5 == m && / - fuse\.mirrorfs / { split($3, d, ":"); print d[2] }' \
		/proc/self/mountinfo | tail -n 1)"
	umount -f -c "$MNT" 2>/dev/null ||
		{ [[ -n "$minor" && -w "/sys/fs/fuse/connections/$minor/abort" ]] &&
			echo 1 >"/sys/fs/fuse/connections/$minor/abort"; } || true
	fail "$1"
}

# bounded CMD...: run CMD for 10 s at the most.  timeout(1) is not enough:
# it waits for a child stuck in D state on a deadlocked mount, which no
# signal ends; this returns 124 and leaves it to the abort.
bounded() {
	local pid deadline=$((SECONDS + 10))
	"$@" &
	pid=$!
	track_bg "$pid"
	while pid_alive "$pid"; do
		((SECONDS < deadline)) || return 124
		sleep 0.05
	done
	wait "$pid"
}

# refused TARGET PATTERN: mirrorfsctl start TARGET must fail within a few
# seconds, on one line matching PATTERN and naming TARGET; nothing changes
# in the source and the mount still serves.
refused() {
	local target="$1" pattern="$2"
	cli "$MIRRORFSCTL" "$MNT" start "$target"
	if ((CLI_RC == 0)); then
		check_fail "start $target: accepted"
	elif [[ "$CLI_ERR" != *"$target"* || ! "$CLI_ERR" =~ $pattern ]]; then
		check_fail "start $target: exit $CLI_RC after ${CLI_TIME}s, stderr: $CLI_ERR"
	elif (($(wc -l <<<"$CLI_ERR") != 1)); then
		check_fail "start $target: more than one line: $CLI_ERR"
	fi
	# A deadlocked daemon fails here, bounded, rather than hanging the test.
	bounded ls "$MNT/sub" >/dev/null ||
		deadlocked "after start $target: the mount no longer serves (deadlock?)"
	bounded touch "$MNT/sub/created" && bounded rm "$MNT/sub/created" ||
		deadlocked "after start $target: namespace changes hang or fail (deadlock?)"
	[[ "$(listing "$SRC")" == "$BEFORE" ]] ||
		fail "after start $target: the source changed:"$'\n'"$(listing "$SRC" | head -20)"
	pid_alive "$DAEMON" || fail "after start $target: the daemon died"
}

log "a symlink into the mount"
ln -s "$MNT/sub" "$TESTDIR/roads/link-into-mount"
refused "$TESTDIR/roads/link-into-mount" "into this mirrorfs mount"
ln -s "$MNT" "$TESTDIR/roads/link-to-mountpoint"
refused "$TESTDIR/roads/link-to-mountpoint" "into this mirrorfs mount"

log "the mount point itself"
refused "$MNT" "mount"

log "a bind mount of the mount"
mkdir "$TESTDIR/roads/bind-mount"
mount --bind "$MNT" "$TESTDIR/roads/bind-mount"
track_mount "$TESTDIR/roads/bind-mount"
refused "$TESTDIR/roads/bind-mount" "into this mirrorfs mount"
umount "$TESTDIR/roads/bind-mount"

log "a bind mount of a directory of the source"
mkdir "$TESTDIR/roads/bind-sub"
mount --bind "$SRC/sub" "$TESTDIR/roads/bind-sub"
track_mount "$TESTDIR/roads/bind-sub"
refused "$TESTDIR/roads/bind-sub" "directory 'sub' of the source"
umount "$TESTDIR/roads/bind-sub"
mkdir "$TESTDIR/roads/bind-deeper"
mount --bind "$SRC/sub/deeper" "$TESTDIR/roads/bind-deeper"
track_mount "$TESTDIR/roads/bind-deeper"
refused "$TESTDIR/roads/bind-deeper" "directory 'sub/deeper' of the source"
umount "$TESTDIR/roads/bind-deeper"

log "an ancestor of the source, by its path and through a bind mount"
refused "$TESTDIR" "contains"
mkdir "$TESTDIR/roads/bind-ancestor"
mount --bind "$TESTDIR" "$TESTDIR/roads/bind-ancestor"
track_mount "$TESTDIR/roads/bind-ancestor"
refused "$TESTDIR/roads/bind-ancestor" "contains it"
umount "$TESTDIR/roads/bind-ancestor"
[[ -z "$(ls -A "$TESTDIR/roads/bind-ancestor")" ]] || fail "files left in the ancestor"
for f in disk.raw sub .mirrorfs-journal; do
	[[ ! -e "$TESTDIR/$f" ]] || fail "'$f' left in the ancestor '$TESTDIR'"
done

log "a second daemon on the source is refused, naming the first"
MNT2="$TESTDIR/mnt2"
mkdir "$MNT2"
rc=0
err="$(timeout -k 2 20 "$MIRRORFS" -f "$SRC" "$MNT2" 2>&1 </dev/null)" || rc=$?
if is_mounted "$MNT2"; then
	fusermount3 -u "$MNT2"
	check_fail "a second daemon on '$SRC' was accepted"
elif ((rc == 0 || rc == 124)) ||
	[[ "$err" != *"already served by mirrorfs (pid $DAEMON, mounted on '$MNT')"* ]]; then
	check_fail "second daemon: exit $rc, stderr: $err"
fi

log "a migration to a directory another daemon serves is refused"
OTHER="$TESTDIR/other"
OTHER_MNT="$TESTDIR/other-mnt"
mkdir "$OTHER" "$OTHER_MNT"
mount_mfs "$OTHER" "$OTHER_MNT"
refused "$OTHER" "served by mirrorfs \(pid ${MFS_PID[$OTHER_MNT]}, mounted on '$OTHER_MNT'\)"
[[ -z "$(ls -A "$OTHER")" ]] || fail "files left in '$OTHER'"
umount_mfs "$OTHER_MNT"

log "after a switch the claim is on the target, not on the source"
DST="$TESTDIR/dst"
mkdir "$DST"
ctl "$MNT" start "$DST"
wait_switched "$SRC" "$MNT"
flock -n "$SRC" true || check_fail "the source is still locked after the switch"
if flock -n "$DST" true; then
	check_fail "the target is not locked after the switch"
fi
rc=0
err="$(timeout -k 2 20 "$MIRRORFS" -f "$SRC" "$MNT2" 2>&1 </dev/null)" || rc=$?
if is_mounted "$MNT2"; then
	fusermount3 -u "$MNT2"
	check_fail "a second daemon on the old source '$SRC' was accepted after the switch"
elif ((rc == 0 || rc == 124)) ||
	[[ "$err" != *"'$DST' is already served by mirrorfs (pid $DAEMON"* ]]; then
	check_fail "second daemon after the switch: exit $rc, stderr: $err"
fi
umount_mfs "$MNT"

log "a journal that names a missing directory"
STALE="$TESTDIR/stale"
mkdir "$STALE"
printf '[migration]\nstate=switched\nsource=%s\ntarget=%s\n' "$STALE" "$TESTDIR/gone" >"$STALE/.mirrorfs-journal"
rc=0
err="$(timeout -k 2 20 "$MIRRORFS" -f "$STALE" "$MNT2" 2>&1 </dev/null)" || rc=$?
is_mounted "$MNT2" && fusermount3 -u "$MNT2"
want="mirrorfs: $STALE/.mirrorfs-journal says the files moved to $TESTDIR/gone, which is missing: No such file or directory"
[[ "$rc" != 0 && "$err" == "$want" ]] ||
	check_fail "stale journal: exit $rc, stderr: '$err', expected '$want'"

control_finish
