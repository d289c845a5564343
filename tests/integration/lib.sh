# SPDX-License-Identifier: GPL-2.0-or-later
#
# Shared harness for the mirrorfs integration tests.  Every test does
#
#     . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#
# and then mounts with mount_mfs, checks things with the assert helpers and
# exits.  Exit codes follow the automake/meson convention: 0 pass, 1 fail,
# 77 skip.
#
# The daemon runs in the foreground (-f) as a background job of the test, so
# we know its pid without guessing from the mount table, get its exit status
# when it stops, and keep its stderr in a log.  A sanitizer build reports
# errors on that stderr and in the exit status, and both are checked: a
# test fails if the daemon it mounted misbehaved, even if every client
# operation looked right.
#
# The EXIT trap always unmounts what lies under the test's temporary
# directory, stops every daemon and helper process the test started and
# removes the directory, whatever way the test ends.

set -euo pipefail
# Also stop at the first failing command inside $(...).
shopt -s inherit_errexit

readonly SKIP=77

# Sanitized builds: stop at the first error and make it fatal, so that an
# error cannot scroll by unnoticed.  Keep what the caller (meson) set.
export ASAN_OPTIONS="${ASAN_OPTIONS:-halt_on_error=1:abort_on_error=1:print_summary=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-halt_on_error=1:abort_on_error=1:print_summary=1:print_stacktrace=1}"

# Seconds a single client command may take before it counts as hung.
CMD_TIMEOUT="${CMD_TIMEOUT:-120}"
# Seconds to wait for a mount to appear or for a daemon to exit.
MOUNT_TIMEOUT="${MOUNT_TIMEOUT:-90}"

TEST_NAME="$(basename "$0" .sh)"

# --- reporting --------------------------------------------------------------

log() {
	printf '%s: %s\n' "$TEST_NAME" "$*" >&2
}

fail() {
	printf '%s: FAIL: %s\n' "$TEST_NAME" "$*" >&2
	exit 1
}

skip() {
	printf '%s: SKIP: %s\n' "$TEST_NAME" "$*" >&2
	exit "$SKIP"
}

# assert_eq EXPECTED ACTUAL [WHAT]
assert_eq() {
	[[ "$1" == "$2" ]] || fail "${3:-value}: expected '$1', got '$2'"
}

# assert_ne UNEXPECTED ACTUAL [WHAT]
assert_ne() {
	[[ "$1" != "$2" ]] || fail "${3:-value}: did not expect '$1'"
}

# assert_le A B [WHAT]: integers, A <= B
assert_le() {
	(( $1 <= $2 )) || fail "${3:-value}: expected $1 <= $2"
}

# assert_file_eq A B: same bytes
assert_file_eq() {
	cmp -s -- "$1" "$2" || fail "files differ: '$1' and '$2'"
}

# assert_contains HAYSTACK NEEDLE [WHAT]
assert_contains() {
	[[ "$1" == *"$2"* ]] || fail "${3:-output}: '$2' not found in: $1"
}

# run CMD...: a client command, bounded in time so that a hung mount fails
# the test instead of stalling the suite.  -k: SIGKILL if SIGTERM is ignored
# (a process in D state on a dead mount ignores both, but then the mount is
# aborted by the trap and the process is released).
run() {
	timeout -k 5 "$CMD_TIMEOUT" "$@"
}

# require_cmd CMD...: skip the test if a tool it needs is not installed.
require_cmd() {
	local c
	for c in "$@"; do
		command -v "$c" >/dev/null 2>&1 || skip "'$c' is not installed"
	done
}

# --- setup ------------------------------------------------------------------

[[ "$(id -u)" == 0 ]] || skip "must run as root (mounts with mount(2) and tests chown)"
[[ -c /dev/fuse ]] || skip "/dev/fuse is missing"
require_cmd fusermount3 timeout python3
[[ -n "${MIRRORFS:-}" ]] || fail "MIRRORFS is not set: run through 'meson test'"
[[ -x "$MIRRORFS" ]] || fail "MIRRORFS='$MIRRORFS' is not executable"

# On disk rather than on a tmpfs where we have a choice: O_DIRECT, sparse
# files and SEEK_DATA must behave as under real images.
TESTDIR="$(mktemp -d "${TMPDIR:-/tmp}/mirrorfs-$TEST_NAME.XXXXXX")"
TESTDIR="$(realpath "$TESTDIR")"

# Daemons started by mount_mfs, keyed by canonical mount point.
declare -A MFS_PID=()
declare -A MFS_LOG=()
# Helper processes started with track_bg (qemu-io holding a lock, ...).
BG_PIDS=()
# Set when a daemon's log shows a sanitizer report; fails the test at exit.
SANITIZER_FAILED=0

# --- process helpers ----------------------------------------------------------

# Is @pid still running?  A child that has exited is a zombie until we wait
# for it, and kill -0 succeeds on zombies, so look at its state instead.
pid_alive() {
	local stat
	read -r stat 2>/dev/null <"/proc/$1/stat" || return 1
	stat="${stat##*) }" # the state follows "pid (comm) "
	[[ "${stat%% *}" != [ZX] ]]
}

# wait_pid_exit PID SECONDS: wait until @pid is no longer running.
wait_pid_exit() {
	local pid="$1" deadline=$((SECONDS + $2))
	while pid_alive "$pid"; do
		((SECONDS < deadline)) || return 1
		sleep 0.1
	done
}

# track_bg PID: kill this helper in the EXIT trap if it is still around.
track_bg() {
	BG_PIDS+=("$1")
}

# --- mounts -------------------------------------------------------------------

# mirrorfs_mounts [DIR]: the mount points of mirrorfs mounts (on DIR or
# below it, if given), one per line, as the kernel spells them (octal
# escapes; our paths never need any).  Tests look only under their own
# TESTDIR: other mirrorfs mounts may come and go while they run.
mirrorfs_mounts() {
	awk -v d="${1:-}" '$3 == "fuse.mirrorfs" &&
		(d == "" || $2 == d || substr($2, 1, length(d) + 1) == d "/") { print $2 }' \
		/proc/self/mounts
}

# is_mounted DIR: is a mirrorfs mounted exactly on DIR?  (One awk, no
# "| grep -q": under pipefail an early grep exit could SIGPIPE the writer
# and turn a match into a failure.)
is_mounted() {
	local mnt
	mnt="$(realpath -m "$1")"
	awk -v m="$mnt" '$3 == "fuse.mirrorfs" && $2 == m { found = 1 }
		END { exit !found }' /proc/self/mounts
}

# mounts_under DIR: is any mirrorfs mounted on DIR or below it?
mounts_under() {
	[[ -n "$(mirrorfs_mounts "$1")" ]]
}

# check_sanitizer_log LOG: a sanitizer report in a daemon log fails the test.
check_sanitizer_log() {
	local logf="$1"
	[[ -f "$logf" ]] || return 0
	if grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer)|WARNING: ThreadSanitizer|runtime error:' "$logf"; then
		printf '%s: FAIL: sanitizer report in %s:\n' "$TEST_NAME" "$logf" >&2
		cat "$logf" >&2
		SANITIZER_FAILED=1
		return 1
	fi
}

# mount_mfs SOURCE MOUNTPOINT [DAEMON OPTIONS...]: start the daemon in the
# foreground as a background job and wait until the kernel shows the mount.
# MIRRORFS_TEST_IO_URING=off|on|auto picks the transport (meson test
# --setup classic sets off); unset, the daemon's default (auto) decides.
# Fails at once if the daemon exits first, and after MOUNT_TIMEOUT seconds
# if the mount never shows up.
mount_mfs() {
	local src="$1" mnt="$2" pid logf deadline
	shift 2
	mnt="$(realpath "$mnt")"
	is_mounted "$mnt" && fail "mount_mfs: '$mnt' is already mounted"
	logf="$(mktemp "$TESTDIR/daemon.XXXXXX.log")"

	"$MIRRORFS" -f ${MIRRORFS_TEST_IO_URING:+-o "io_uring=$MIRRORFS_TEST_IO_URING"} "$@" \
		"$src" "$mnt" </dev/null >"$logf" 2>&1 &
	pid=$!
	MFS_PID[$mnt]=$pid
	MFS_LOG[$mnt]=$logf

	deadline=$((SECONDS + MOUNT_TIMEOUT))
	until is_mounted "$mnt"; do
		if ! pid_alive "$pid"; then
			local rc=0
			wait "$pid" || rc=$?
			unset 'MFS_PID[$mnt]' 'MFS_LOG[$mnt]'
			check_sanitizer_log "$logf" || fail "mirrorfs for '$mnt' reported a sanitizer error"
			cat "$logf" >&2
			fail "mirrorfs exited with status $rc before mounting '$mnt'"
		fi
		((SECONDS < deadline)) || fail "'$mnt' not mounted after ${MOUNT_TIMEOUT}s"
		sleep 0.05
	done
}

# umount_mfs MOUNTPOINT: unmount cleanly and check how the daemon ended:
# it must exit by itself with status 0 and without a sanitizer report.
umount_mfs() {
	local mnt pid logf rc=0
	mnt="$(realpath "$1")"
	pid="${MFS_PID[$mnt]:-}"
	logf="${MFS_LOG[$mnt]:-}"
	[[ -n "$pid" ]] || fail "umount_mfs: '$mnt' was not mounted by mount_mfs"

	run fusermount3 -u "$mnt" || fail "fusermount3 -u '$mnt' failed"
	wait_pid_exit "$pid" "$MOUNT_TIMEOUT" ||
		fail "mirrorfs (pid $pid) still running ${MOUNT_TIMEOUT}s after unmount of '$mnt'"
	wait "$pid" || rc=$?
	# Checked here, so not again in the EXIT trap.
	unset 'MFS_PID[$mnt]' 'MFS_LOG[$mnt]'
	check_sanitizer_log "$logf" || fail "mirrorfs for '$mnt' reported a sanitizer error"
	if ((rc != 0)); then
		cat "$logf" >&2
		fail "mirrorfs for '$mnt' exited with status $rc"
	fi
	is_mounted "$mnt" && fail "'$mnt' still mounted after umount_mfs"
	return 0
}

# strace_daemon MOUNTPOINT LOG SYSCALLS: strace every thread of the
# mount's daemon into LOG (descriptors shown with their paths, -y),
# tracing SYSCALLS (a list for strace -e trace=); returns once strace is
# attached, its pid in STRACE_PID.  strace_stop ends it.
strace_daemon() {
	local pid="${MFS_PID[$(realpath "$1")]}" deadline=$((SECONDS + 30))
	strace -f -qq -y -e "trace=$3" -o "$2" -p "$pid" 2>"$2.err" &
	STRACE_PID=$!
	track_bg "$STRACE_PID"
	# Attached once the daemon's threads show it as their tracer.
	until grep -q "^TracerPid:[[:space:]]*$STRACE_PID\$" /proc/"$pid"/task/*/status 2>/dev/null; do
		pid_alive "$STRACE_PID" || fail "strace exited: $(cat "$2.err")"
		((SECONDS < deadline)) || fail "strace did not attach in 30 s"
		sleep 0.05
	done
}

strace_stop() {
	kill "$STRACE_PID" 2>/dev/null || true
	wait "$STRACE_PID" 2>/dev/null || true
}

# requests_during MOUNTPOINT OPCODE CMD...: run CMD and print how many
# OPCODE requests (GETXATTR, ...) the mount's daemon, started with -d,
# logged meanwhile.
requests_during() {
	local logf="${MFS_LOG[$(realpath "$1")]}" op="$2" before after
	shift 2
	before="$(grep -c "opcode: $op " "$logf" || true)"
	run "$@"
	after="$(grep -c "opcode: $op " "$logf" || true)"
	echo $((after - before))
}

# Detach @mnt whatever state its daemon is in.  fusermount3 -u refuses a busy
# mount; umount -l detaches it anyway and the kernel finishes when the last
# user lets go.
force_unmount() {
	local mnt="$1"
	fusermount3 -u "$mnt" 2>/dev/null && return 0
	fusermount3 -uz "$mnt" 2>/dev/null && return 0
	umount -l "$mnt" 2>/dev/null && return 0
	# A daemon that stopped answering: abort the connection, then retry.
	local dev
	dev="$(stat -c %d "$mnt" 2>/dev/null)" || true
	if [[ -n "$dev" && -w "/sys/fs/fuse/connections/$dev/abort" ]]; then
		echo 1 >"/sys/fs/fuse/connections/$dev/abort" || true
	fi
	umount -l "$mnt"
}

# reap PID: collect its exit status if it has exited; never block on one
# that has not (a process stuck on a dead mount can take forever).
reap() {
	pid_alive "$1" || wait "$1" 2>/dev/null
}

# at_exit CMD...: run CMD in the EXIT trap, after the unmounts (to restore
# what the test changed outside its directory), in the order given.
AT_EXIT=()
at_exit() {
	AT_EXIT+=("$(printf '%q ' "$@")")
}

cleanup() {
	local rc=$? pid mnt cmd
	set +e
	trap - EXIT
	# Our working directory may be inside a mount: that would keep it busy.
	cd /

	# Helpers first: a helper holding a file open keeps the mount busy.
	# TERM first: a helper run under timeout(1) passes it on to its child.
	# One stuck in a request to a hung daemon stays until the daemon is
	# gone, so do not wait for it here.
	for pid in "${BG_PIDS[@]}"; do
		kill -TERM "$pid" 2>/dev/null
	done
	for pid in "${BG_PIDS[@]}"; do
		wait_pid_exit "$pid" 5 || kill -KILL "$pid" 2>/dev/null
	done

	# Every mirrorfs mount under our directory, deepest first, including any
	# a test did not expect (a bad command line that mounted after all).
	while read -r mnt; do
		force_unmount "$mnt" || log "cleanup: could not unmount '$mnt'"
	done < <(mirrorfs_mounts "$TESTDIR" | sort -r)

	# The daemons exit once unmounted; make sure of it.  SIGKILL works on a
	# stopped or hung daemon too, and its death aborts the FUSE connection,
	# which releases any process still waiting on it.
	for mnt in "${!MFS_PID[@]}"; do
		pid="${MFS_PID[$mnt]}"
		if ! wait_pid_exit "$pid" 5; then
			kill -TERM "$pid" 2>/dev/null
			wait_pid_exit "$pid" 5 || kill -KILL "$pid" 2>/dev/null
			wait_pid_exit "$pid" 5
		fi
		reap "$pid"
	done
	for pid in "${BG_PIDS[@]}"; do
		wait_pid_exit "$pid" 5
		reap "$pid"
	done

	for mnt in "${!MFS_LOG[@]}"; do
		check_sanitizer_log "${MFS_LOG[$mnt]}"
	done
	((SANITIZER_FAILED == 0)) || rc=1
	for cmd in "${AT_EXIT[@]}"; do
		eval "$cmd" || log "cleanup: '$cmd' failed"
	done

	# --one-file-system: never reach through a mount that failed to go away.
	if mounts_under "$TESTDIR"; then
		log "cleanup: mounts remain under '$TESTDIR'; leaving it in place"
	else
		rm -rf --one-file-system -- "$TESTDIR"
	fi
	exit "$rc"
}
trap cleanup EXIT
# Turn termination by signal (meson's timeout) into an exit, so that the
# EXIT trap runs and unmounts.
trap 'exit 143' TERM
trap 'exit 130' INT
trap 'exit 129' HUP
