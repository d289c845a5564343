#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# A real VM migrated live: a Linux guest booted with qemu-system-x86_64
# (TCG) on a virtio disk that is an image inside a mirrorfs mount, writing
# all the time while the host migrates the mount to a new directory.
#
# Usage (through meson, suite 'slow'): test-guest.sh VARIANT
#
#   raw-none       raw image, cache=none (O_DIRECT) and aio=native; migrated
#                  with "mirrorfsctl start --speed", switched by itself
#   raw-writeback  raw image, cache=writeback (the host's page cache)
#   qcow2-none     qcow2 image, cache=none; the guest writes into clusters
#                  never allocated, so the image grows during the migration
#   discard        raw image, cache=none, discard=unmap; the guest also
#                  discards (BLKDISCARD) and zeroes (BLKZEROOUT) ranges all
#                  along, which must read back as zeros
#   manual-switch  raw image, cache=none; "start --switch manual", wait with
#                  "mirrorfs-status --wait mirrored", let the guest write to
#                  both sides a while, then "mirrorfsctl switch"
#   cancel         qcow2 image, cache=writeback; "mirrorfsctl cancel" halfway
#                  through the copy: the guest goes on on the source
#   adopt          qcow2 image, cache=writeback, and no mirrorfs when QEMU
#                  starts: the mount is made over the directory under the
#                  running VM, "mirrorfsctl adopt --qmp" moves its disk onto
#                  the mount, the migration switches by itself, "mirrorfsctl
#                  release --qmp" moves the disk onto the target's file, and
#                  the mount unmounts while the guest writes on; QEMU holds
#                  no file beside the mount after the adopt and none through
#                  it after the release (/proc/PID/fd); the two reopens'
#                  pauses are reported
#   adopt-only     one VM of two (issue 21): as adopt, raw, with a second
#                  VM's disk in the same directory (other.raw, written all
#                  along beside the mount by ackwriter.py, opened before
#                  the mount); the guest's disk alone moves and is released
#                  by one command (start --only --release-qmp), the mount
#                  unmounts; the other disk never
#                  moves and holds every write acknowledged to it
#   evacuate       the operator's "empty this host" (issue 23): as adopt,
#                  raw, but the target is a replica-2 GlusterFS volume
#                  made on this machine (lib-gluster.sh); after the release
#                  QEMU's own live migration moves the VM to a second QEMU
#                  (standing for another host: -incoming on loopback) that
#                  opens the same image on the volume's mount; the first
#                  QEMU quits, the guest writes on and verifies on the
#                  second, and each brick's own copy of the image holds
#                  what the guest wrote.  QEMU's migration is made with
#                  the guest paused: under TCG, QEMU 7.2's live migration
#                  of a running guest crashed the guest's kernel on the
#                  second QEMU about one run in five (an interrupt handler
#                  at 0x1: its RAM arrived damaged), mirrorfs long out of
#                  the way; with KVM an operator migrates it running
#
# Every variant:
#   1. makes the image on the host (256 MiB, qcow2 1 GiB): its first
#      192 MiB full of blocks of generation 0 (so that the copier has data
#      to copy: a few seconds at the speed limit), the rest a hole (zeros);
#   2. mounts mirrorfs over the image directory (the real use: SOURCE and
#      MOUNTPOINT the same) and boots the guest from make-guest.sh's kernel
#      and initramfs; its /init runs guest-workload on /dev/vda, which
#      writes self-verifying 4 KiB blocks (1-8 at a time) at random places
#      with O_DIRECT and an fdatasync every 200 ms, and prints its write
#      throughput every second on the serial console, which the host
#      stamps with its own clock;
#   3. after BEFORE_S seconds of writing, migrates the mount to a new
#      directory (as the variant says), and lets the guest write AFTER_S
#      seconds more once switched (or cancelled);
#   4. tells the guest to stop (a byte on its second serial port): the
#      guest reads every block of the disk back and checks it holds the
#      generation it last wrote there (the initial generation 0 for blocks
#      it never wrote, zeros for the hole and for what it discarded), then
#      prints its verdict and the digest of all the generations and powers
#      off.
# It passes only if the guest printed "MIRRORFS-GUEST-VERDICT: PASS" and
# exited 0, and QEMU exited 0, and, on the host, after the unmount:
#   - switched: the status said switched, serving the target, with a stun
#     time, and guest writes were mirrored during the copy; the image in
#     the TARGET directory (converted to raw for qcow2, after qemu-img
#     check) holds only self-consistent blocks whose generations have the
#     same digest as the guest's: exactly what the guest last wrote, every
#     block; the source's journal says switched;
#   - cancelled: the status said cancelled, serving the source; the target
#     directory is empty again; the SOURCE image has the guest's digest.
# The report (boot time, guest write throughput before, during and after
# the migration, migration time, stun time) goes to the test's output and
# to $GUEST_REPORT_DIR/report-VARIANT.txt.

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../integration/lib.sh
. "$HERE/../integration/lib.sh"
# shellcheck source=../integration/lib-control.sh
. "$HERE/../integration/lib-control.sh"
require_cmd qemu-system-x86_64 qemu-img mkfifo gzip awk

VARIANT="${1:-}"
[[ -n "${GUEST_WORKLOAD:-}" ]] ||
	skip "no guest-workload: the build found no static libc (package libc6-dev)"
[[ -x "$GUEST_WORKLOAD" ]] || fail "GUEST_WORKLOAD='$GUEST_WORKLOAD' is not executable"

# Sizes and times.  The copy of the initial data takes about
# PREFILL / SPEED seconds; TCG guests write some tens of MiB/s.
MiB=$((1024 * 1024))
DISK_MIB=256 # qcow2: 1024, so that much of it is still unallocated when
             # the migration starts, however fast the guest writes
PREFILL_MIB=192
SPEED=24M
BEFORE_S=5
AFTER_S=5
MIRRORED_S=4    # manual-switch: seconds mirrored before the switch
CANCEL_AT_MIB=64 # cancel: cancel once this much is copied
SEED=$((RANDOM * 32768 + RANDOM + 1))
BOOT_TIMEOUT=180
MIGRATION_TIMEOUT=300
GUEST_MEM=256M

FMT=raw CACHE=none DISCARD=0 MODE=auto ADOPT=0 EVACUATE=0 ONLY=0
case "$VARIANT" in
raw-none) ;;
raw-writeback) CACHE=writeback ;;
# The copier must also catch up with the clusters the guest allocates at
# the end of the file (some MiB/s): a higher limit.
qcow2-none) FMT=qcow2 DISK_MIB=1024 SPEED=64M ;;
qcow2-writeback) FMT=qcow2 DISK_MIB=1024 SPEED=64M CACHE=writeback ;;
discard) DISCARD=1 ;;
manual-switch) MODE=manual ;;
cancel) FMT=qcow2 DISK_MIB=1024 CACHE=writeback MODE=cancel SPEED=16M ;;
adopt) FMT=qcow2 DISK_MIB=1024 SPEED=64M CACHE=writeback ADOPT=1 ;;
adopt-only) SPEED=64M CACHE=writeback ADOPT=1 ONLY=1 ;;
# Raw: the copy onto the volume need not also chase a growing qcow2.
evacuate) SPEED=64M CACHE=writeback ADOPT=1 EVACUATE=1 ;;
*) fail "unknown variant '$VARIANT' (raw-none, raw-writeback, qcow2-none, qcow2-writeback, discard, manual-switch, cancel, adopt, adopt-only, evacuate)" ;;
esac
TEST_NAME="guest-$VARIANT"

IMAGES="$TESTDIR/images"   # the image directory: source and mount point
TARGET="$TESTDIR/new-disk" # where the migration moves the images
if ((EVACUATE)); then
	# The shared storage: a replica-2 Gluster volume on this machine.
	# shellcheck source=../integration/lib-gluster.sh
	. "$HERE/../integration/lib-gluster.sh"
	gluster_setup
	volume_up evacuate "$TESTDIR/gv" replica 2 "$TESTDIR/b1" "$TESTDIR/b2"
	TARGET="$TESTDIR/gv/vms"
fi
IMAGE="$IMAGES/disk.$FMT"
CONSOLE="$TESTDIR/console.log" # the guest's console, each line stamped "HOSTTIME line"
REPORT=()

# now: the host's clock, seconds with microseconds.
now() {
	printf '%s\n' "$EPOCHREALTIME"
}

# since T0 [T1]: seconds from T0 to T1 (default: now), one decimal.
since() {
	awk -v a="$1" -v b="${2:-$EPOCHREALTIME}" 'BEGIN { printf "%.1f", b - a }'
}

# journal_state DIR: the state= line of DIR's journal, or nothing.
journal_state() {
	[[ -f "$1/.mirrorfs-journal" ]] || return 0
	sed -n 's/^state=//p' "$1/.mirrorfs-journal"
}

report() {
	REPORT+=("$*")
	printf '%s: %s\n' "$TEST_NAME" "$*"
}

# --- the guest ----------------------------------------------------------------

guest_out="$("$HERE/make-guest.sh" --install "$GUEST_WORKLOAD" 2>"$TESTDIR/make-guest.log")" || {
	rc=$?
	cat "$TESTDIR/make-guest.log" >&2
	((rc != SKIP)) || skip "cannot make the guest (see above)"
	fail "make-guest.sh failed with status $rc"
}
[[ ! -s "$TESTDIR/make-guest.log" ]] || log "$(cat "$TESTDIR/make-guest.log")"
KERNEL="$(sed -n 's/^KERNEL=//p' <<<"$guest_out")"
INITRD="$(sed -n 's/^INITRD=//p' <<<"$guest_out")"
[[ -f "$KERNEL" && -f "$INITRD" ]] || fail "make-guest.sh gave no kernel and initramfs: $guest_out"
log "guest: $KERNEL, $INITRD ($(($(stat -c %s "$INITRD") / 1024)) KiB)"

# --- the image and the mount ---------------------------------------------------

mkdir "$IMAGES" "$TARGET"
blocks_prefill=$((PREFILL_MIB * MiB / 4096))
if [[ "$FMT" == raw ]]; then
	truncate -s "${DISK_MIB}M" "$IMAGE"
	"$GUEST_WORKLOAD" fill "$IMAGE" --seed "$SEED" --blocks "$blocks_prefill"
else
	truncate -s "${DISK_MIB}M" "$TESTDIR/base.raw"
	"$GUEST_WORKLOAD" fill "$TESTDIR/base.raw" --seed "$SEED" --blocks "$blocks_prefill"
	# Zero clusters are left unallocated: the guest's writes there grow it.
	run qemu-img convert -f raw -O qcow2 "$TESTDIR/base.raw" "$IMAGE"
	rm "$TESTDIR/base.raw"
fi
log "image: $IMAGE ($DISK_MIB MiB, the first $PREFILL_MIB MiB of generation 0, seed $SEED)"

# mount_images: mount over the image directory, saying which transport the
# guest's I/O takes (after a first request, which waits for INIT; the rings
# start as INIT is answered).
mount_images() {
	mount_mfs "$IMAGES" "$IMAGES"
	stat "$IMAGE" >/dev/null
	log "transport: $(status_field "$IMAGES" transport)"
}
# adopt: QEMU starts with no mirrorfs under it; the mount comes later.
((ADOPT)) || mount_images

# adopt-only: a second VM's disk in the same directory, written all along
# beside the mount (opened before it) by a writer that stands for that VM;
# the per-VM job must leave it where it is.
ACKW="$HERE/../integration/ackwriter.py"
if ((ONLY)); then
	OTHER="$IMAGES/other.raw"
	run python3 "$ACKW" init "$OTHER" 4096
	timeout -k 5 900 python3 "$ACKW" write "$OTHER" "$TESTDIR/other.log" --seed "$SEED" \
		--max-seconds 600 >"$TESTDIR/other.out" 2>&1 &
	OTHER_PID=$!
	track_bg "$OTHER_PID"
fi

# --- boot ------------------------------------------------------------------------

# Stamp every console line with the host's clock as it arrives.
stamp_lines() {
	local line
	while IFS= read -r line || [[ -n "$line" ]]; do
		printf '%s %s\n' "$EPOCHREALTIME" "${line%$'\r'}"
	done
}

mkfifo "$TESTDIR/console.fifo" "$TESTDIR/ctl.in" "$TESTDIR/ctl.out"
CTL=ctl # the chardev pipe the guest is told to stop through
# The stamper opens the console only once QEMU opens the fifo, and the
# first checks may come sooner: the file must be there for them.
: >"$CONSOLE"
stamp_lines <"$TESTDIR/console.fifo" >>"$CONSOLE" &
STAMP_PID=$!
track_bg "$STAMP_PID"

case "$CACHE" in
none) aio=native ;;
*) aio=threads ;;
esac
wl_args="--seed,$SEED,--prefill,$blocks_prefill,--ctl,/dev/ttyS1,--seconds,$((BOOT_TIMEOUT + MIGRATION_TIMEOUT))"
((DISCARD == 0)) || wl_args+=",--discard"
# qemu_args IMAGE CTL QMP [DRIVE-OPTIONS]: the VM's command line in
# qemu_cmd, its disk on IMAGE, its control port the pipe TESTDIR/CTL, its
# monitor at TESTDIR/QMP (adopt only: QEMU reopens only nodes with a name
# of their own).  The evacuation's second QEMU is the same VM on another
# image path.
qemu_args() {
	local drive="file=$1,format=$FMT,if=none,id=disk0,cache=$CACHE,aio=$aio,discard=unmap${4:+,$4}"
	local qmp=()
	if ((ADOPT)); then
		drive+=",node-name=vda"
		qmp=(-qmp "unix:$TESTDIR/$3,server=on,wait=off")
	fi
	# shellcheck disable=SC2054 # the commas are QEMU's
	qemu_cmd=(qemu-system-x86_64 -nodefaults -no-user-config -machine pc,accel=tcg
		-m "$GUEST_MEM" -smp 1 -display none -no-reboot
		-kernel "$KERNEL" -initrd "$INITRD"
		-append "console=ttyS0 quiet panic=-1 mfs_args=$wl_args"
		-serial stdio
		-chardev "pipe,id=ctl,path=$TESTDIR/$2" -serial chardev:ctl
		-drive "$drive" -device virtio-blk-pci,drive=disk0 "${qmp[@]}")
}
qemu_args "$IMAGE" ctl qmp.sock
log "qemu: ${qemu_cmd[*]}"
T_QEMU="$(now)"
timeout -k 5 $((BOOT_TIMEOUT + MIGRATION_TIMEOUT + 120)) "${qemu_cmd[@]}" \
	</dev/null >"$TESTDIR/console.fifo" 2>"$TESTDIR/qemu.err" &
QEMU_PID=$!
track_bg "$QEMU_PID"

# console_line PATTERN: the last console line matching the ERE PATTERN, or
# nothing.
console_line() {
	awk -v re="$1" '$0 ~ re { l = $0 } END { if (l != "") print l }' "$CONSOLE"
}

# check_guest: stop the test at once if the guest failed or QEMU died.
check_guest() {
	local l
	l="$(console_line 'MIRRORFS-GUEST-VERDICT: FAIL')"
	[[ -z "$l" ]] || fail "the guest failed: $l"$'\n'"$(guest_output)"
	pid_alive "$QEMU_PID" || fail "QEMU exited early:"$'\n'"$(guest_output)"
}

guest_output() {
	# All of it: the stamper ends when QEMU's output does.
	pid_alive "$QEMU_PID" || wait_pid_exit "$STAMP_PID" 5 || true
	# A guest kernel's oops says what it is in its first lines.
	if grep -qE 'BUG:|Oops|general protection|Kernel panic' "$CONSOLE"; then
		echo "--- the guest kernel's first report:"
		grep -m 1 -A 12 -E 'BUG:|Oops|general protection|Kernel panic' "$CONSOLE" || true
	fi
	echo "--- guest console (host time, line):"
	grep -v 'MIRRORFS-GUEST-TPUT' "$CONSOLE" | tail -n 40 || true
	echo "--- qemu stderr:"
	cat "$TESTDIR/qemu.err"
	if [[ -f "$TESTDIR/qemu2.err" ]]; then
		echo "--- the second qemu's stderr:"
		cat "$TESTDIR/qemu2.err"
	fi
}

# wait_console PATTERN SECONDS: until a console line matches; prints the
# host time of that line.
wait_console() {
	local deadline=$((SECONDS + $2)) l
	until l="$(console_line "$1")" && [[ -n "$l" ]]; do
		check_guest
		((SECONDS < deadline)) || fail "no '$1' from the guest after $2 s:"$'\n'"$(guest_output)"
		sleep 0.1
	done
	printf '%s\n' "${l%% *}"
}

T_BOOTED="$(wait_console '^[0-9.]+ MIRRORFS-GUEST-BOOTED' "$BOOT_TIMEOUT")"
T_START="$(wait_console '^[0-9.]+ MIRRORFS-GUEST-START' 30)"
log "$(console_line 'MIRRORFS-GUEST-BOOTED' | cut -d' ' -f2-)"
report "boot: $(since "$T_QEMU" "$T_BOOTED") s from QEMU's start to /dev/vda ready" \
	"(guest uptime $(console_line 'MIRRORFS-GUEST-BOOTED' | sed -n 's/.*uptime=\([0-9.]*\).*/\1/p') s)"

# --- the migration -------------------------------------------------------------

# sleep_until T: sleep until the host time T, watching the guest.
sleep_until() {
	while awk -v t="$1" -v n="$EPOCHREALTIME" 'BEGIN { exit !(n < t) }'; do
		check_guest
		sleep 0.2
	done
}

# wait_status STATE SECONDS: mirrorfs-status --wait, bounded.
wait_status() {
	local rc=0
	timeout -k 5 $(($2 + 10)) "$MIRRORFS_STATUS" --wait "$1" --timeout "$2" "$IMAGES" \
		>"$TESTDIR/wait.out" 2>&1 || rc=$?
	((rc == 0)) || fail "mirrorfs-status --wait $1: exit $rc: $(cat "$TESTDIR/wait.out")"$'\n'"$(cat "$(daemon_log)")"
}

daemon_log() {
	printf '%s\n' "${MFS_LOG[$(realpath "$IMAGES")]}"
}

# held_by_qemu beside|through: the regular files QEMU holds beside the
# mount (by a name in the image directory, on its own file system) or
# through it; one per line.
held_by_qemu() {
	local mdev fd path dev
	mdev="$(stat -c %d "$IMAGES")"
	for fd in /proc/"$QEMU_PROC"/fd/*; do
		path="$(readlink "$fd")" || continue
		[[ -f "$fd" ]] || continue
		dev="$(stat -L -c %d "$fd")"
		case "$1" in
		through) [[ "$dev" == "$mdev" ]] && echo "$path" ;;
		beside) [[ "$dev" != "$mdev" && "$path" == "$IMAGES"/* ]] && echo "$path" ;;
		esac
	done
	return 0
}

# reopen_ms: the pause of the last adopt or release, from its output.
reopen_ms() {
	sed -n 's/.* in one reopen of \([0-9.]*\) ms$/\1/p' <<<"$CLI_OUT"
}

# qmp SOCKET JSON: one QMP command to the monitor at SOCKET; prints its
# "return" as JSON, fails on an "error".
qmp() {
	timeout -k 5 30 python3 - "$1" "$2" <<-'EOF' || fail "QMP $2 on $1 failed"
	import json, socket, sys
	s = socket.socket(socket.AF_UNIX)
	s.connect(sys.argv[1])
	f = s.makefile("rw")
	def call(cmd):
	    f.write(json.dumps(cmd) + "\n")
	    f.flush()
	    while True:
	        r = json.loads(f.readline())
	        if "return" in r:
	            return r["return"]
	        if "error" in r:
	            sys.exit(f"QMP error: {r['error']}")
	json.loads(f.readline())  # the greeting
	call({"execute": "qmp_capabilities"})
	print(json.dumps(call(json.loads(sys.argv[2]))))
	EOF
}

# evacuate: the guest, now on the shared volume, moves to a second QEMU
# (standing for another host, on the same volume's mount) by QEMU's own
# live migration, with the guest writing all along.  The second QEMU's
# console goes to the same log; from now on QEMU_PID is it.
evacuate() {
	local port dest_pid stamp2 status mig deadline
	port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
	mkfifo "$TESTDIR/console2.fifo" "$TESTDIR/ctl2.in" "$TESTDIR/ctl2.out"
	stamp_lines <"$TESTDIR/console2.fifo" >>"$CONSOLE" &
	stamp2=$!
	track_bg "$stamp2"
	# Both "hosts" share this machine's one Gluster client: the image's lock
	# is not what this test is about (the second QEMU takes none).
	qemu_args "$TARGET/disk.$FMT" ctl2 qmp2.sock file.locking=off
	timeout -k 5 $((MIGRATION_TIMEOUT + 120)) "${qemu_cmd[@]}" -incoming "tcp:127.0.0.1:$port" \
		</dev/null >"$TESTDIR/console2.fifo" 2>"$TESTDIR/qemu2.err" &
	dest_pid=$!
	track_bg "$dest_pid"
	deadline=$((SECONDS + 30))
	until [[ -S "$TESTDIR/qmp2.sock" ]]; do
		pid_alive "$dest_pid" || fail "the second QEMU exited: $(cat "$TESTDIR/qemu2.err")"
		((SECONDS < deadline)) || fail "the second QEMU has no monitor after 30 s"
		sleep 0.1
	done
	T_EVAC="$(now)"
	# Paused (see the variant's comment above): the RAM is sent once, whole.
	qmp "$TESTDIR/qmp.sock" '{"execute": "stop"}' >/dev/null
	qmp "$TESTDIR/qmp.sock" '{"execute": "migrate", "arguments": {"uri": "tcp:127.0.0.1:'"$port"'"}}' >/dev/null
	deadline=$((SECONDS + MIGRATION_TIMEOUT))
	while :; do
		mig="$(qmp "$TESTDIR/qmp.sock" '{"execute": "query-migrate"}')"
		status="$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["status"])' "$mig")"
		[[ "$status" != completed ]] || break
		[[ "$status" != failed && "$status" != cancelled ]] || fail "QEMU's migration $status: $mig"
		((SECONDS < deadline)) || fail "QEMU's migration still $status after $MIGRATION_TIMEOUT s"
		sleep 0.2
	done
	# The second QEMU runs the guest on; the first, paused, goes.
	qmp "$TESTDIR/qmp2.sock" '{"execute": "cont"}' >/dev/null
	report "evacuate: QEMU's migration of the paused guest to a second QEMU on the Gluster volume:" \
		"$(python3 -c 'import json, sys; m = json.loads(sys.argv[1]); print("%s ms" % m["total-time"])' "$mig");" \
		"the guest paused $(since "$T_EVAC") s in all"
	qmp "$TESTDIR/qmp.sock" '{"execute": "quit"}' >/dev/null
	wait_pid_exit "$QEMU_PID" 30 || fail "the first QEMU still runs 30 s after quit"
	wait "$QEMU_PID" || fail "the first QEMU exited with status $?"
	wait_pid_exit "$STAMP_PID" 10 || true
	QEMU_PID=$dest_pid STAMP_PID=$stamp2 CTL=ctl2
	check_guest
	QEMU_PROC="$(pgrep -P "$QEMU_PID" | head -n 1)" || true
	[[ -n "$QEMU_PROC" ]] || fail "no second QEMU under timeout (pid $QEMU_PID):"$'\n'"$(cat "$TESTDIR/qemu2.err")"$'\n'"$(guest_output)"
	readlink /proc/"$QEMU_PROC"/fd/* | grep -qxF "$(realpath "$TARGET")/disk.$FMT" ||
		fail "the second QEMU does not hold the volume's image"
	check_guest
}

sleep_until "$(awk -v t="$T_START" -v d="$BEFORE_S" 'BEGIN { printf "%.6f", t + d }')"
check_guest
if ((ADOPT)); then
	# QEMU itself, under timeout(1).
	QEMU_PROC="$(pgrep -P "$QEMU_PID" | head -n 1)"
	[[ -n "$QEMU_PROC" ]] || fail "no QEMU process under timeout (pid $QEMU_PID)"
	readlink /proc/"$QEMU_PROC"/fd/* | grep -qxF "$IMAGE" || fail "QEMU holds no $IMAGE before the mount"
	mount_images
	ctl "$IMAGES" adopt --qmp "$TESTDIR/qmp.sock"
	log "adopt: $CLI_OUT"
	left="$(held_by_qemu beside)"
	[[ -z "$left" ]] || fail "QEMU still holds beside the mount after adopt: $left"
	[[ -n "$(held_by_qemu through)" ]] || fail "QEMU holds nothing through the mount after adopt"
	report "adopt: the guest's disk reopened through the mount in one pause of $(reopen_ms) ms"
fi
SIZE_MIG="$(stat -c %s "$IMAGE")"
T_MIG="$(now)"
T_MIRRORED='' T_SWITCH_CMD=''
ONLY_ARGS=()
((ONLY == 0)) || ONLY_ARGS=(--only "disk.$FMT")
case "$MODE" in
auto)
	if ((ADOPT && ONLY)); then
		# The operator's one command: move this VM's disk, then take it off the mount.
		CLI_TIMEOUT="$MIGRATION_TIMEOUT" ctl "$IMAGES" start "$TARGET" --speed "$SPEED" \
			"${ONLY_ARGS[@]}" --release-qmp "$TESTDIR/qmp.sock"
		log "mirrorfsctl start --speed $SPEED ${ONLY_ARGS[*]} --release-qmp: $CLI_OUT"
		RELEASED_OUT="$CLI_OUT"
	else
		ctl "$IMAGES" start "$TARGET" --speed "$SPEED" "${ONLY_ARGS[@]}"
		log "migration started: mirrorfsctl start --speed $SPEED ${ONLY_ARGS[*]}"
	fi
	wait_status switched "$MIGRATION_TIMEOUT"
	T_END="$(now)"
	;;
manual)
	ctl "$IMAGES" start "$TARGET" --speed "$SPEED" --switch manual
	log "migration started: mirrorfsctl start --speed $SPEED --switch manual"
	wait_status mirrored "$MIGRATION_TIMEOUT"
	T_MIRRORED="$(now)"
	assert_eq mirrored "$(status_field "$IMAGES" state)" "state after --wait mirrored"
	# Mirrored: every guest write goes to both sides until told to switch.
	sleep_until "$(awk -v t="$T_MIRRORED" -v d="$MIRRORED_S" 'BEGIN { printf "%.6f", t + d }')"
	assert_eq mirrored "$(status_field "$IMAGES" state)" "state of a manual migration, $MIRRORED_S s after mirrored"
	T_SWITCH_CMD="$(now)"
	ctl "$IMAGES" switch
	wait_status switched 60
	T_END="$(now)"
	;;
cancel)
	ctl "$IMAGES" start "$TARGET" --speed "$SPEED"
	log "migration started: mirrorfsctl start --speed $SPEED; cancel after $CANCEL_AT_MIB MiB"
	deadline=$((SECONDS + MIGRATION_TIMEOUT))
	while :; do
		status_json "$IMAGES" "$TESTDIR/status.json"
		state="$(json_field state "$TESTDIR/status.json")"
		[[ "$state" == copying ]] || fail "state '$state' before the cancel: the copy must still run"
		(($(json_field bytes_copied "$TESTDIR/status.json") < CANCEL_AT_MIB * MiB)) || break
		((SECONDS < deadline)) || fail "less than $CANCEL_AT_MIB MiB copied after $MIGRATION_TIMEOUT s"
		check_guest
		sleep 0.2
	done
	[[ -n "$(names_below "$TARGET")" ]] || fail "nothing in the target while copying"
	ctl "$IMAGES" cancel
	wait_status cancelled 60
	T_END="$(now)"
	;;
esac
status_json "$IMAGES" "$TESTDIR/status-end.json"
SIZE_END="$(stat -c %s "$IMAGE")"
state="$(json_field state "$TESTDIR/status-end.json")"
served="$(json_field served "$TESTDIR/status-end.json")"
stun="$(json_field stun_ms "$TESTDIR/status-end.json")"
mirrored_writes="$(json_field mirrored_writes "$TESTDIR/status-end.json")"
waited_writes="$(json_field waited_writes "$TESTDIR/status-end.json")"
max_wait="$(json_field max_wait_ms "$TESTDIR/status-end.json")"
copied="$(json_field bytes_copied "$TESTDIR/status-end.json")"
total="$(json_field bytes_total "$TESTDIR/status-end.json")"
if [[ "$MODE" == cancel ]]; then
	assert_eq cancelled "$state" "state after the cancel"
	assert_eq "$(realpath "$IMAGES")" "$served" "directory served after the cancel"
	assert_eq "" "$(names_below "$TARGET")" "names left in the target after the cancel"
	report "migration: cancelled $(since "$T_MIG" "$T_END") s after its start," \
		"$((copied / MiB)) of $((total / MiB)) MiB copied; target cleaned"
else
	assert_eq switched "$state" "state after the migration"
	if ((ONLY)); then
		# A per-VM job: the image is placed in the target, the rest served as before.
		assert_eq "$(realpath "$IMAGES")" "$served" "directory served after a per-VM switch"
		assert_eq "[{\"name\": \"disk.$FMT\", \"dir\": \"$(realpath "$TARGET")\"}]" \
			"$(json_field placements "$TESTDIR/status-end.json")" "the placements after the switch"
	else
		assert_eq "$(realpath "$TARGET")" "$served" "directory served after the switch"
	fi
	[[ "$stun" =~ ^[0-9.]+$ ]] || fail "no stun time in the status: $stun"
	report "migration: $(since "$T_MIG" "$T_END") s from start to switched" \
		"(${T_MIRRORED:+mirrored after $(since "$T_MIG" "$T_MIRRORED") s, switch asked after $(since "$T_MIG" "$T_SWITCH_CMD") s; }$((copied / MiB)) MiB copied of $((total / MiB)) MiB at start, speed $SPEED)"
	report "stun: $stun ms (mirrorfs-status --json stun_ms)"
fi
report "image: $FMT, $((SIZE_MIG / MiB)) MiB at the start of the migration, $((SIZE_END / MiB)) MiB at its end"
# qcow2: the guest allocated clusters, at the end of the file, meanwhile.
[[ "$FMT" != qcow2 ]] || ((SIZE_END > SIZE_MIG)) || fail "the qcow2 image did not grow during the migration"
report "guest writes during the migration: $mirrored_writes mirrored, $waited_writes waited for the copier (longest $max_wait ms)"
# The guest wrote all along: some of its writes fell below the copy cursor.
((mirrored_writes > 0)) || fail "no guest write was mirrored during the migration"

if ((ADOPT)); then
	if [[ -n "${RELEASED_OUT:-}" ]]; then
		CLI_OUT="$RELEASED_OUT" # released by the start itself (--release-qmp)
		[[ "$CLI_OUT" == *"released 1 file"* ]] || fail "start --release-qmp released nothing: $CLI_OUT"
	else
		ctl "$IMAGES" release --qmp "$TESTDIR/qmp.sock"
		log "release: $CLI_OUT"
	fi
	left="$(held_by_qemu through)"
	[[ -z "$left" ]] || fail "QEMU still holds through the mount after release: $left"
	readlink /proc/"$QEMU_PROC"/fd/* | grep -qxF "$(realpath "$TARGET")/disk.$FMT" ||
		fail "QEMU does not hold the target's image after release"
	report "release: the guest's disk reopened on the target's file in one pause of $(reopen_ms) ms"
	# Nothing holds the mount now: it goes while the guest writes on.
	umount_mfs "$IMAGES"
fi
((EVACUATE == 0)) || evacuate

# --- after: the guest writes on, then checks everything -----------------------

sleep_until "$(awk -v t="$T_END" -v d="$AFTER_S" 'BEGIN { printf "%.6f", t + d }')"
check_guest
T_STOP="$(now)"
run bash -c 'printf q >"$1"' _ "$TESTDIR/$CTL.in"
# The guest checks every block, prints its verdict and powers off: QEMU
# exits, then the stamper has the last line.
wait_pid_exit "$QEMU_PID" 300 || fail "QEMU still running 300 s after the guest was told to stop:"$'\n'"$(guest_output)"
wait_pid_exit "$STAMP_PID" 10 || fail "the console is still open 10 s after QEMU exited"
rc=0
wait "$QEMU_PID" || rc=$?
verdict="$(console_line 'MIRRORFS-GUEST-VERDICT' | cut -d' ' -f2-)"
summary="$(console_line 'MIRRORFS-GUEST-SUMMARY' | cut -d' ' -f2-)"
log "guest: $(console_line 'MIRRORFS-GUEST-STOP' | cut -d' ' -f2-)"
log "guest: $summary"
log "guest: $verdict"
[[ "$verdict" == "MIRRORFS-GUEST-VERDICT: PASS "* ]] ||
	fail "the guest did not pass (${verdict:-no verdict}):"$'\n'"$(guest_output)"
grep -q ' MIRRORFS-GUEST-EXIT rc=0$' "$CONSOLE" || fail "guest-workload did not exit 0:"$'\n'"$(guest_output)"
((rc == 0)) || fail "QEMU exited with status $rc:"$'\n'"$(guest_output)"
digest="$(sed -n 's/.* digest=\([0-9a-f]*\).*/\1/p' <<<"$summary")"
[[ -n "$digest" ]] || fail "no digest in the guest's summary: $summary"
if ((DISCARD)); then
	discards="$(console_line 'MIRRORFS-GUEST-STOP' | sed -n 's/.* discards=\([0-9]*\).*/\1/p')"
	((discards > 0)) || fail "the guest made no discards"
	report "discards: $discards ranges discarded or zeroed by the guest, all read back as zeros"
fi

# --- the host's view ---------------------------------------------------------------

((ADOPT)) || umount_mfs "$IMAGES"
if [[ "$MODE" == cancel ]]; then
	final="$IMAGE" # the source: the migration never switched
	[[ "$(journal_state "$IMAGES")" != switched ]] || fail "the source's journal says switched after a cancel"
	assert_eq "" "$(names_below "$TARGET")" "names in the target after the unmount"
else
	final="$TARGET/disk.$FMT"
	if ((ONLY)); then
		[[ -f "$IMAGES/.mirrorfs-journal.placements" ]] || fail "no placements record in the source"
	else
		assert_eq switched "$(journal_state "$IMAGES")" "the source's journal"
	fi
fi
if ((ONLY)); then
	# The other VM wrote beside the mount all along: every acknowledged
	# write is in its own file, which never moved.
	kill -TERM "$OTHER_PID" 2>/dev/null || true
	wait_pid_exit "$OTHER_PID" 10 || fail "the other VM's writer did not stop"
	[[ ! -e "$TARGET/other.raw" ]] || fail "the other VM's disk was moved to the target"
	out="$(python3 "$ACKW" verify "$OTHER" "$TESTDIR/other.log" 2>&1)" ||
		fail "the other VM's disk lost acknowledged writes:"$'\n'"$out"
	report "only: disk.$FMT moved and released; other.raw written $(grep -c '^A ' "$TESTDIR/other.log") times beside the mount all along, never moved, every write there"
fi
[[ -f "$final" ]] || fail "no image '$final'"
check_img="$final"
if [[ "$FMT" == qcow2 ]]; then
	run qemu-img check -q "$final" || fail "qemu-img check '$final'"
	run qemu-img convert -f qcow2 -O raw "$final" "$TESTDIR/final.raw"
	check_img="$TESTDIR/final.raw"
fi
out="$("$GUEST_WORKLOAD" verify "$check_img" --seed "$SEED" --digest "$digest" 2>&1)" ||
	fail "the image the guest ended on does not hold what it wrote: $final:"$'\n'"$out"
log "host: $final: $out"
if ((EVACUATE)); then
	# What the servers hold: each brick's own copy of the image.
	for b in "$TESTDIR/b1" "$TESTDIR/b2"; do
		run qemu-img convert -f "$FMT" -O raw "$b/vms/disk.$FMT" "$TESTDIR/brick.raw"
		out="$("$GUEST_WORKLOAD" verify "$TESTDIR/brick.raw" --seed "$SEED" --digest "$digest" 2>&1)" ||
			fail "the brick's copy $b/vms/disk.$FMT does not hold what the guest wrote:"$'\n'"$out"
		rm "$TESTDIR/brick.raw"
	done
	log "host: both bricks' copies hold what the guest wrote"
fi
assert_eq "${summary}" "$(grep '^MIRRORFS-GUEST-SUMMARY' <<<"$out")" "the guest's summary against the image's"

# --- the report ---------------------------------------------------------------------

# Each throughput line covers the second before the host stamped it.
tput_phase() {
	awk -v a="$2" -v b="$3" -v name="$1" '
		$2 == "MIRRORFS-GUEST-TPUT" && $1 > a && $1 <= b {
			for (i = 3; i <= NF; i++) {
				split($i, kv, "=")
				f[kv[1]] = kv[2]
			}
			bytes += f["bytes"]; dt += f["dt"]; n++
			if (f["lat_max_ms"] > lat) lat = f["lat_max_ms"]
		}
		END {
			if (dt > 0)
				printf "%-10s %6.2f MiB/s over %4.1f s (%d lines), longest write %.1f ms\n",
					name, bytes / dt / 1048576, dt, n, lat
			else
				printf "%-10s no throughput line\n", name
		}' "$CONSOLE"
}

report "guest write throughput (4-32 KiB O_DIRECT random writes, cache=$CACHE, $FMT):"
report "  $(tput_phase before "$T_START" "$T_MIG")"
if [[ -n "$T_MIRRORED" ]]; then
	report "  $(tput_phase copying "$T_MIG" "$T_MIRRORED")"
	report "  $(tput_phase mirrored "$T_MIRRORED" "$T_END")"
else
	report "  $(tput_phase "$([[ "$MODE" == cancel ]] && echo "copying" || echo during)" "$T_MIG" "$T_END")"
fi
report "  $(tput_phase after "$T_END" "$T_STOP")"
report "total: $(since "$T_QEMU") s from QEMU's start to the host's checks done; guest: $verdict"

if [[ -n "${GUEST_REPORT_DIR:-}" && -d "$GUEST_REPORT_DIR" ]]; then
	printf '%s\n' "${REPORT[@]}" >"$GUEST_REPORT_DIR/report-$VARIANT.txt"
fi
exit 0
