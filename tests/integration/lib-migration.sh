# SPDX-License-Identifier: GPL-2.0-or-later
# shellcheck shell=bash
#
# Helpers for the migration integration tests, on top of lib.sh:
#
#     . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#     . "$(dirname "${BASH_SOURCE[0]}")/lib-migration.sh"
#
# There is no status tool yet, so the state of a migration is read from
# what the daemon leaves behind: the source's journal (state=switched once
# the target is authoritative) and the daemon's log, where every state
# change is a line "migration SRC -> DST: STATE" (the switch adds the stun
# time: "switched (stun N ms)").

# Mounts a test makes besides mirrorfs (a small tmpfs as a target, ...):
# detached in the EXIT trap, before lib.sh's own cleanup runs (which removes
# the test directory only across one file system).
EXTRA_MOUNTS=()

# track_mount DIR: detach DIR in the EXIT trap if it is still mounted.
track_mount() {
	EXTRA_MOUNTS+=("$1")
}

# Chain lib.sh's EXIT trap, whatever it is called, after ours.
eval "set -- $(trap -p EXIT)"
MIG_PREV_EXIT_TRAP="${3:-}"
set --

mig_cleanup() {
	local rc=$? m
	set +e
	cd /
	for m in "${EXTRA_MOUNTS[@]}"; do
		if mountpoint -q "$m"; then
			# Lazy: a daemon that wrongly kept a file open there must not
			# keep the test directory from being removed.
			umount -l "$m" || log "cleanup: could not unmount '$m'"
		fi
	done
	(exit "$rc")
	eval "$MIG_PREV_EXIT_TRAP"
	exit "$rc"
}
trap mig_cleanup EXIT

# daemon_log MOUNTPOINT: the log file of the daemon mount_mfs started there.
daemon_log() {
	local mnt
	mnt="$(realpath "$1")"
	[[ -n "${MFS_LOG[$mnt]:-}" ]] || fail "daemon_log: '$mnt' was not mounted by mount_mfs"
	printf '%s\n' "${MFS_LOG[$mnt]}"
}

# wait_log MNT PATTERN SECONDS: until the daemon logs a line matching PATTERN.
wait_log() {
	local deadline=$((SECONDS + $3))
	until grep -q -- "$2" "$(daemon_log "$1")"; do
		pid_alive "${MFS_PID[$(realpath "$1")]}" || fail "the daemon died"
		((SECONDS < deadline)) || fail "no '$2' in the log after $3 s:"$'\n'"$(cat "$(daemon_log "$1")")"
		sleep 0.02
	done
}

# journal_state DIR: the state= line of DIR's journal, or nothing.
journal_state() {
	local f="$1/.mirrorfs-journal"
	[[ -f "$f" ]] || return 0
	sed -n 's/^state=//p' "$f"
}

# job_record SRC TARGET: the file in which SRC records a per-VM job into TARGET
# (lib/journal.c: journal_job_record_name(), of TARGET's real path).
job_record() {
	local real
	real="$(realpath "$2")"
	printf '%s/.mirrorfs-journal.job-%s' "$1" "$(printf %s "$real" | sha256sum | cut -c1-16)"
}

# job_state SRC TARGET: the state= line of that record, or nothing.
job_state() {
	local f
	f="$(job_record "$1" "$2")"
	[[ -f "$f" ]] || return 0
	sed -n 's/^state=//p' "$f"
}

is_switched() {
	[[ "$(journal_state "$1")" == switched ]]
}

# migration_states MOUNTPOINT: the states the daemon has logged so far, one
# per line, in order ("mirrored", "switching", "switched", ...).
migration_states() {
	sed -n 's/.*migration .* -> .*: \([a-z]*\).*/\1/p' "$(daemon_log "$1")"
}

# check_not_failed MOUNTPOINT: fail at once, with the log, if the daemon
# died or its migration failed or was cancelled.
check_not_failed() {
	local mnt logf pid
	mnt="$(realpath "$1")"
	logf="$(daemon_log "$mnt")"
	pid="${MFS_PID[$mnt]}"
	pid_alive "$pid" || fail "mirrorfs for '$mnt' died:"$'\n'"$(cat "$logf")"
	if grep -qE 'migration .*(: failed|: cancelled| failed:)' "$logf"; then
		fail "the migration under '$mnt' failed:"$'\n'"$(cat "$logf")"
	fi
}

# wait_switched SOURCE MOUNTPOINT [SECONDS]: wait until SOURCE's journal says
# the migration switched (and the daemon logged it).  Fails on timeout, or
# at once if the migration failed.
wait_switched() {
	local src="$1" mnt="$2" deadline=$((SECONDS + ${3:-120}))
	until is_switched "$src" && migration_states "$mnt" | grep -qx switched; do
		check_not_failed "$mnt"
		((SECONDS < deadline)) ||
			fail "not switched after ${3:-120}s:"$'\n'"$(cat "$(daemon_log "$mnt")")"
		sleep 0.1
	done
}

# wait_state MOUNTPOINT STATE [SECONDS]: wait until the daemon logs STATE.
wait_state() {
	local mnt="$1" state="$2" deadline=$((SECONDS + ${3:-120}))
	until migration_states "$mnt" | grep -qx "$state"; do
		[[ "$state" == cancelled || "$state" == failed ]] || check_not_failed "$mnt"
		((SECONDS < deadline)) ||
			fail "no '$state' after ${3:-120}s:"$'\n'"$(cat "$(daemon_log "$mnt")")"
		sleep 0.1
	done
}

# stun_ms MOUNTPOINT: the stun time the daemon logged at the switch.
stun_ms() {
	sed -n 's/.*: switched (stun \([0-9.]*\) ms).*/\1/p' "$(daemon_log "$1")" | tail -n 1
}

# tree_listing DIR: every object below DIR, one line each: path, type,
# mode, owner, and for regular files size and link count, for symlinks the
# target.  Sorted; the same for two trees that hold the same things.
tree_listing() {
	(cd "$1" && find . -mindepth 1 \
		\( -type f -printf '%P f %m %u:%g size=%s links=%n\n' \) -o \
		\( -type l -printf '%P l %u:%g -> %l\n' \) -o \
		-printf '%P %y %m %u:%g\n') | LC_ALL=C sort
}

# tree_xattrs DIR: the user.* extended attributes below DIR (of the
# objects themselves, never followed through symlinks), sorted.
tree_xattrs() {
	python3 - "$1" <<-'EOF'
	import os, sys
	top = sys.argv[1]
	out = []
	for root, dirs, files in os.walk(top):
	    for name in dirs + files:
	        path = os.path.join(root, name)
	        if os.path.islink(path):
	            continue
	        rel = os.path.relpath(path, top)
	        for attr in os.listxattr(path, follow_symlinks=False):
	            if attr.startswith("user."):
	                value = os.getxattr(path, attr, follow_symlinks=False)
	                out.append(f"{rel} {attr}={value.hex()}")
	print("\n".join(sorted(out)))
	EOF
}

# assert_trees_equal EXPECTED ACTUAL WHAT: the same names, types, modes,
# owners, sizes, link counts, symlink targets, bytes and user xattrs.
assert_trees_equal() {
	local a="$1" b="$2" what="$3" la lb f
	la="$(tree_listing "$a")"
	lb="$(tree_listing "$b")"
	[[ "$la" == "$lb" ]] ||
		fail "$what: trees differ ('$a' vs '$b'):"$'\n'"$(diff <(printf '%s\n' "$la") \
			<(printf '%s\n' "$lb") || true)"
	while IFS= read -r -d '' f; do
		cmp -s -- "$a/$f" "$b/$f" || fail "$what: '$f' differs between '$a' and '$b'"
	done < <(cd "$a" && find . -type f -printf '%P\0')
	la="$(tree_xattrs "$a")"
	lb="$(tree_xattrs "$b")"
	[[ "$la" == "$lb" ]] ||
		fail "$what: xattrs differ:"$'\n'"$(diff <(printf '%s\n' "$la") \
			<(printf '%s\n' "$lb") || true)"
	return 0
}

# alloc_bytes FILE: the space FILE takes on disk.
alloc_bytes() {
	local b
	b="$(stat -c '%b*%B' "$1")"
	echo $((b))
}

# dir_names DIR: the names in DIR (not below it), sorted, one per line.
dir_names() {
	(cd "$1" && find . -mindepth 1 -maxdepth 1 -printf '%P\n') | LC_ALL=C sort
}

# md5 FILE: its digest alone.
md5() { md5sum <"$1" | cut -d' ' -f1; }
# write_at FILE OFFSET TEXT: a guest write in place
write_at() {
	printf '%s' "$3" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none ||
		fail "writing '$3' at $2 of $1"
}
# read_at FILE OFFSET COUNT
read_at() {
	dd if="$1" bs=1 skip="$2" count="$3" status=none
}
# expect_errno WHAT TEXT COMMAND...: COMMAND fails, saying TEXT
expect_errno() {
	local what="$1" want="$2" out
	shift 2
	out="$("$@" 2>&1)" && fail "$what: succeeded, expected $want"
	[[ "$out" == *"$want"* ]] || fail "$what: '$out', expected $want"
}
