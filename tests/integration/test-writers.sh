#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# A start refuses while a process writes beside the mount (lib/mig-writers.c),
# and only then.  Processes that opened files under the source before the
# mount was made over it:
#   - a writer by a name since removed, the file keeping another name
#     (ln a.img b.img; exec 7>>b.img; rm b.img): refused, naming it, and
#     nothing changes (state idle, the target empty);
#   - a FIFO held open read-write (a VM's console pipe): stores nothing,
#     no refusal;
#   - a reader of an image: no refusal;
#   - a writer of a file unlinked everywhere: in no tree, no refusal;
#   - a writer in a mount namespace of its own, a copy of ours (as
#     libvirt starts each QEMU): refused too;
# and writers through the mount never are.  Once the writer beside is
# gone, the same start succeeds and switches.  Then a daemon in a PID
# namespace of its own (unshare -pf), where getpid() is not the pid /proc
# shows, does not take its own descriptors for writers beside the mount.

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
. "$(dirname "${BASH_SOURCE[0]}")/lib-migration.sh"
. "$(dirname "${BASH_SOURCE[0]}")/lib-control.sh"
require_cmd unshare
cd "$TESTDIR"

SRC="$TESTDIR/vms"
TGT="$TESTDIR/tgt"
mkdir -p "$SRC" "$TGT"
head -c 4M /dev/urandom >"$SRC/a.img"
head -c 1M /dev/urandom >"$SRC/c.img"
: >"$SRC/d.img"
: >"$SRC/gone.img"
mkfifo "$SRC/console"
ln "$SRC/a.img" "$SRC/b.img"

# holder NAME REDIRECTION: a process holding a file as REDIRECTION says
# (e.g. '7>>file'), until killed; its pid in HOLDER[NAME].
declare -A HOLDER=()
holder() {
	bash -c "exec $2; exec sleep 600" &
	HOLDER[$1]=$!
	track_bg "${HOLDER[$1]}"
}
holder writer "7>>'$SRC/b.img'"
holder fifo "8<>'$SRC/console'"
holder reader "9<'$SRC/c.img'"
holder unlinked "6>>'$SRC/gone.img'"
# A writer in a mount namespace of its own, a copy of ours (as libvirt
# starts each QEMU): its mount of the source has another id, the same view.
unshare -m --propagation slave bash -c "exec 7>>'$SRC/d.img'; exec sleep 600" &
HOLDER[ns]=$!
track_bg "${HOLDER[ns]}"
# Each holds its file before the mount is made.
for h in writer fifo reader unlinked ns; do
	deadline=$((SECONDS + 10))
	until [[ "$(cat "/proc/${HOLDER[$h]}/comm" 2>/dev/null)" == sleep ]]; do
		((SECONDS < deadline)) || fail "holder $h holds nothing"
		sleep 0.05
	done
done
rm "$SRC/b.img" "$SRC/gone.img"

mount_mfs "$SRC" "$SRC"
# A writer through the mount is a guest: never a refusal.
exec 5>>"$SRC/c.img"

log "--- refused: a writer of a.img by its removed name b.img, one in its own mount namespace"
expect_cli "start with writers beside the mount" 1 \
	"sleep (pid ${HOLDER[writer]}) holds $SRC/b.img open for writing beside the mount (and 1 more such files): their writes would never reach the target" \
	"$MIRRORFSCTL" "$SRC" start "$TGT"
assert_eq idle "$(status_field "$SRC" state)" "state after the refused start"
assert_eq "" "$(names_below "$TGT")" "the target after the refused start"
kill "${HOLDER[writer]}"
wait_pid_exit "${HOLDER[writer]}" 10 || fail "the writer did not exit"
expect_cli "start with a writer beside the mount in its own mount namespace" 1 \
	"sleep (pid ${HOLDER[ns]}) holds $SRC/d.img open for writing beside the mount: its writes" \
	"$MIRRORFSCTL" "$SRC" start "$TGT"

log "--- the writers gone, the same start switches (FIFO, reader, unlinked file held)"
kill "${HOLDER[ns]}"
wait_pid_exit "${HOLDER[ns]}" 10 || fail "the writer in its namespace did not exit"
ctl "$SRC" start "$TGT"
wait_status_state "$SRC" switched 60
assert_file_eq "$TESTDIR/tgt/a.img" "$SRC/a.img"
exec 5>&-
umount_mfs "$SRC"

log "--- a daemon in a PID namespace of its own skips its own descriptors"
SRC2="$TESTDIR/vms2" TGT2="$TESTDIR/tgt2"
mkdir -p "$SRC2" "$TGT2"
head -c 1M /dev/urandom >"$SRC2/a.img"
cat >"$TESTDIR/mirrorfs-pidns" <<EOF
#!/bin/sh
exec unshare -pf "$MIRRORFS" "\$@"
EOF
chmod +x "$TESTDIR/mirrorfs-pidns"
MIRRORFS="$TESTDIR/mirrorfs-pidns" mount_mfs "$SRC2" "$SRC2"
# The guest's file open through the mount: the daemon holds it read-write.
exec 5>>"$SRC2/a.img"
ctl "$SRC2" start "$TGT2"
wait_status_state "$SRC2" switched 60
exec 5>&-
umount_mfs "$SRC2"
for h in fifo reader unlinked; do
	kill "${HOLDER[$h]}" 2>/dev/null || true
done
! mounts_under "$TESTDIR" || fail "a mirrorfs mount was left under $TESTDIR"
exit 0
