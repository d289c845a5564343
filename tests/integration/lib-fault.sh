# SPDX-License-Identifier: GPL-2.0-or-later
# shellcheck shell=bash disable=SC2034 # variables for the tests that source this
#
# Helpers for the reliability tests (test-fault-*.sh, test-crash.sh,
# test-soak.sh, ...), on top of lib.sh, lib-migration.sh and lib-control.sh:
#
#     . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#     . "$(dirname "${BASH_SOURCE[0]}")/lib-migration.sh"
#     . "$(dirname "${BASH_SOURCE[0]}")/lib-control.sh"
#     . "$(dirname "${BASH_SOURCE[0]}")/lib-fault.sh"
#
#   - faultfs (tests/faultfs), a passthrough FUSE file system that fails on
#     purpose: mount_faultfs, faultfs_faults;
#   - a guest: fio writing through the mount with crc32c verification,
#     checked afterwards straight from the directory that must hold its
#     data (guest_start, guest_finish, guest_verify);
#   - the outcome every failed migration must have: failed with an error
#     naming the cause, nothing of it left in the target, the source
#     served and intact (expect_failed_cleanly).

# faultfs is built next to the daemon: <build>/tests/faultfs/faultfs.
FAULTFS="${FAULTFS:-$(dirname "$(dirname "$MIRRORFS")")/tests/faultfs/faultfs}"

MiB=$((1024 * 1024))

declare -A FFS_PID=()

# Chain the EXIT traps before ours (lib-migration.sh's, then lib.sh's)
# after one that detaches every file system other than mirrorfs that a test
# mounted under TESTDIR (faultfs, tmpfs), even a dead FUSE mount whose
# server was killed (mountpoint(1) fails on those, so lib-migration.sh's
# cleanup passes them over).
eval "set -- $(trap -p EXIT)"
FAULT_PREV_EXIT_TRAP="${3:-}"
set --

fault_cleanup() {
	local rc=$? m
	set +e
	cd /
	for pid in "${FFS_PID[@]}"; do
		kill -TERM "$pid" 2>/dev/null
	done
	while read -r m; do
		umount -l "$m" 2>/dev/null || log "cleanup: could not detach '$m'"
	done < <(awk -v d="$TESTDIR" '$3 != "fuse.mirrorfs" &&
		substr($2, 1, length(d) + 1) == d "/" { print $2 }' /proc/self/mounts | sort -r)
	(exit "$rc")
	eval "$FAULT_PREV_EXIT_TRAP"
	exit "$rc"
}
trap fault_cleanup EXIT

# is_mounted_type DIR TYPE: is a file system of TYPE mounted exactly on DIR?
is_mounted_type() {
	local mnt
	mnt="$(realpath -m "$1")"
	awk -v m="$mnt" -v t="$2" '$3 == t && $2 == m { found = 1 } END { exit !found }' /proc/self/mounts
}

# require_faultfs: build faultfs if "meson test" did not (it builds only
# what the tests' depends name); skip if that is not possible.
require_faultfs() {
	local builddir
	if [[ ! -x "$FAULTFS" ]]; then
		builddir="$(dirname "$(dirname "$MIRRORFS")")"
		if [[ -f "$builddir/build.ninja" ]] && command -v ninja >/dev/null 2>&1; then
			ninja -C "$builddir" tests/faultfs/faultfs >&2 || true
		fi
	fi
	[[ -x "$FAULTFS" ]] || skip "faultfs not built at '$FAULTFS' (set FAULTFS)"
}

# mount_faultfs ROOT MOUNTPOINT [FAULTFS -o OPTIONS]: a faultfs over ROOT,
# in the foreground as a background job (killed and detached in the EXIT
# trap).  Waits until the kernel shows the mount.
mount_faultfs() {
	local root="$1" mnt="$2" opts="${3:-}" pid logf deadline
	mnt="$(realpath "$mnt")"
	logf="$TESTDIR/faultfs.$(basename "$mnt").log"
	if [[ -n "$opts" ]]; then
		"$FAULTFS" -f -o "$opts" "$root" "$mnt" </dev/null >>"$logf" 2>&1 &
	else
		"$FAULTFS" -f "$root" "$mnt" </dev/null >>"$logf" 2>&1 &
	fi
	pid=$!
	track_bg "$pid"
	track_mount "$mnt"
	FFS_PID[$mnt]=$pid
	deadline=$((SECONDS + MOUNT_TIMEOUT))
	until is_mounted_type "$mnt" fuse.faultfs; do
		pid_alive "$pid" || fail "faultfs exited before mounting '$mnt': $(cat "$logf")"
		((SECONDS < deadline)) || fail "faultfs: '$mnt' not mounted after ${MOUNT_TIMEOUT}s"
		sleep 0.05
	done
}

# umount_faultfs MOUNTPOINT: unmount (lazily if busy) and wait for faultfs.
umount_faultfs() {
	local mnt pid
	mnt="$(realpath "$1")"
	pid="${FFS_PID[$mnt]:-}"
	if is_mounted_type "$mnt" fuse.faultfs; then
		fusermount3 -u "$mnt" 2>/dev/null || umount -l "$mnt" ||
			fail "cannot unmount faultfs on '$mnt'"
	fi
	if [[ -n "$pid" ]]; then
		wait_pid_exit "$pid" 10 || kill -KILL "$pid" 2>/dev/null || true
		reap "$pid" || true
		unset 'FFS_PID[$mnt]'
	fi
}

# faultfs_faults LOG: how many faults faultfs injected (lines in its fault_log).
faultfs_faults() {
	if [[ -f "$1" ]]; then
		wc -l <"$1"
	else
		echo 0
	fi
}

# --- the guest ------------------------------------------------------------

# fio options of a guest writer: random writes of 4-64 KiB, crc32c in each
# block, then a verify pass; the same options with --verify_only check the
# data again later, wherever it is.  GUEST_SIZE bytes at GUEST_RATE.
GUEST_SIZE="${GUEST_SIZE:-8M}"
GUEST_RATE="${GUEST_RATE:-2m}"
guest_opts() { # NAME [DIRECT]
	printf '%s\n' "--name=$1" --rw=randwrite --bsrange=4k-64k --ioengine=psync \
		"--direct=${2:-1}" --verify=crc32c --verify_fatal=1 --verify_state_save=0 \
		--fallocate=none "--size=${GUEST_SZ[$1]:-$GUEST_SIZE}" --randseed=4242
}

# Per guest: fio's pid, its JSON report, its file and its size.
declare -A GUEST_PID=() GUEST_OUT=() GUEST_FILE=() GUEST_SZ=()

# guest_start NAME FILE [DIRECT] [FIO OPTION...]: fio writing FILE (through
# the mount) in the background, rate-limited, verify after the writes.
guest_start() {
	local name="$1" file="$2" direct="${3:-1}" opts
	shift 3 || shift $#
	GUEST_SZ[$name]="$GUEST_SIZE"
	mapfile -t opts < <(guest_opts "$name" "$direct")
	GUEST_OUT[$name]="$TESTDIR/guest-$name.json"
	GUEST_FILE[$name]="$file"
	(cd "$TESTDIR" && exec timeout -k 5 "$CMD_TIMEOUT" fio --filename="$file" "${opts[@]}" \
		--do_verify=1 "--rate=,$GUEST_RATE" "$@" --output-format=json \
		--output="${GUEST_OUT[$name]}") >"$TESTDIR/guest-$name.err" 2>&1 &
	GUEST_PID[$name]=$!
	track_bg "${GUEST_PID[$name]}"
}

# guest_finish NAME: wait for the guest; every write and every verify
# succeeded (exit 0, no job error, all bytes written and read back).
guest_finish() {
	local name="$1" rc=0 pid="${GUEST_PID[$1]}"
	wait_pid_exit "$pid" "$CMD_TIMEOUT" || fail "guest $name: fio still running"
	wait "$pid" || rc=$?
	# fio's own messages say what failed; its JSON report, the job's error.
	((rc == 0)) || fail "guest $name: fio exited $rc (a write or a verify failed):"$'\n'"$(
		tail -n 30 "$TESTDIR/guest-$name.err" 2>/dev/null
		grep -E '"(jobname|error)"' "${GUEST_OUT[$name]}" 2>/dev/null | head -n 8)"
	"$PYTHON" - "${GUEST_OUT[$name]}" "${GUEST_SZ[$name]}" <<-'EOF' || fail "guest $name: fio report"
	import json, sys
	text = open(sys.argv[1]).read()
	size = sys.argv[2]
	mult = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
	want = int(size[:-1]) * mult[size[-1].lower()] if size[-1].isalpha() else int(size)
	for job in json.loads(text[text.index("{"):])["jobs"]:
	    if job["error"]:
	        sys.exit(f"job {job['jobname']}: error {job['error']}")
	    if job["write"]["io_bytes"] < want:
	        sys.exit(f"job {job['jobname']}: wrote {job['write']['io_bytes']} of {want} bytes")
	    if job["read"]["io_bytes"] < want:
	        sys.exit(f"job {job['jobname']}: verified {job['read']['io_bytes']} of {want} bytes")
	EOF
	unset 'GUEST_PID[$name]'
}

# guest_verify NAME FILE [DIRECT]: what guest NAME wrote, verified again in
# FILE (the source or the target, read directly).
guest_verify() {
	local name="$1" file="$2" direct="${3:-0}" rc=0 opts
	mapfile -t opts < <(guest_opts "$name" "$direct")
	(cd "$TESTDIR" && exec timeout -k 5 "$CMD_TIMEOUT" fio --filename="$file" "${opts[@]}" \
		--verify_only --output-format=json --output="$TESTDIR/verify-$name.json") \
		>"$TESTDIR/verify-$name.err" 2>&1 || rc=$?
	((rc == 0)) || fail "guest $name: its data does not verify in '$file':"$'\n'"$(cat \
		"$TESTDIR/verify-$name.err" "$TESTDIR/verify-$name.json" 2>/dev/null | tail -n 40)"
}

# --- outcomes -------------------------------------------------------------

# snapshot_tree DIR: names, types, sizes and contents of everything below
# DIR, to compare before and after.
snapshot_tree() {
	(cd "$1" && find . -mindepth 1 -printf '%P %y %s\n' | LC_ALL=C sort &&
		find . -type f -exec md5sum {} + | LC_ALL=C sort)
}

# expect_failed MOUNTPOINT PATTERN [SECONDS]: the migration ends failed
# (status and daemon log) with an error matching PATTERN (an extended
# regular expression, so "A|B" takes either); the mount still serves the
# source.  Prints the error.
expect_failed() {
	local mnt="$1" pattern="$2" secs="${3:-60}" deadline state err src
	deadline=$((SECONDS + secs))
	while :; do
		state="$(status_field "$mnt" state)"
		case "$state" in
		failed) break ;;
		switched | cancelled | idle)
			fail "migration ended '$state' where it must fail ($pattern):"$'\n'"$(cat "$(daemon_log "$mnt")")" ;;
		esac
		((SECONDS < deadline)) ||
			fail "migration still '$state' ${secs}s after the fault ($pattern):"$'\n'"$(cat "$(daemon_log "$mnt")")"
		sleep 0.1
	done
	status_json "$mnt" "$TESTDIR/failed.json"
	err="$(json_field error "$TESTDIR/failed.json")"
	[[ "$err" =~ $pattern ]] ||
		fail "the status error does not name the cause ('$pattern'): '$err'"
	src="$(json_field source "$TESTDIR/failed.json")"
	assert_eq "$src" "$(json_field served "$TESTDIR/failed.json")" "served after the failure"
	grep -qE "migration .* failed: .*($pattern)" "$(daemon_log "$mnt")" ||
		fail "no 'failed: ...$pattern' in the daemon log:"$'\n'"$(cat "$(daemon_log "$mnt")")"
	pid_alive "${MFS_PID[$(realpath "$mnt")]}" || fail "the daemon died"
	printf '%s\n' "$err"
}

# expect_names DIR EXPECTED WHAT: the names below DIR (dot files too) are
# exactly EXPECTED (names_below output): the migration left nothing there.
expect_names() {
	local got
	got="$(names_below "$1")"
	[[ "$got" == "$2" ]] ||
		fail "$3: names below '$1' differ:"$'\n'"$(diff <(printf '%s\n' "$2") <(printf '%s\n' "$got") || true)"
}

# expect_serves_source MOUNTPOINT SOURCE: a write through the mount lands in
# SOURCE, a new file too.
expect_serves_source() {
	local mnt="$1" src="$2" tag
	tag="probe-$RANDOM$RANDOM"
	echo "$tag" >"$mnt/.probe-$tag" || fail "cannot create a file through the mount after the failure"
	[[ "$(cat "$src/.probe-$tag" 2>/dev/null)" == "$tag" ]] ||
		fail "a file made through the mount is not in the source '$src'"
	rm "$mnt/.probe-$tag" || fail "cannot remove a file through the mount"
	[[ ! -e "$src/.probe-$tag" ]] || fail "removed through the mount but still in the source"
	[[ "$(journal_state "$src")" != switched ]] || fail "the source journal says switched"
}

# vm_hwm PID: the peak resident set (VmHWM) of PID, in KiB.
vm_hwm() {
	awk '$1 == "VmHWM:" { print $2 }' "/proc/$1/status"
}

vm_rss() {
	awk '$1 == "VmRSS:" { print $2 }' "/proc/$1/status"
}
