#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# The control socket, driven through the real CLIs against a real mount:
#
#   - every command in every state where it makes sense, and the refusals
#     where it does not, with their exit status and one-line messages: idle,
#     start, copying, pause (and again), resume, speed, mirrored, switch,
#     switched, cancel (during the copy, while paused, after the switch),
#     start while running, and a new migration after a cancel;
#   - the --json status against its specification (status-schema.py), in
#     each state;
#   - mirrorfs-status --wait (reached, cancelled while waiting, a state that
#     does not exist, --timeout) and --watch (plain lines when stdout is a
#     file or pipe, redrawn in place on a terminal);
#   - who may use the socket: the socket file keeps other users out, and
#     when it is opened up the daemon's own check (SO_PEERCRED) refuses them,
#     changing nothing;
#   - bad command lines: refused with one line and exit 2 (usage) or 1,
#     never a hang or a crash.
#
# Independent checks record their failure and let the test go on
# (check_fail), so that one run lists every problem; what later steps
# depend on stops the test at once (fail).

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
. "$(dirname "${BASH_SOURCE[0]}")/lib-control.sh"
require_nobody

MiB=$((1024 * 1024))
SRC="$TESTDIR/src"
MNT="$TESTDIR/mnt"
DST="$TESTDIR/dst"
mkdir "$SRC" "$MNT" "$DST" "$TESTDIR/plain" "$TESTDIR/dst2"
# nobody must be able to reach the runtime directory (but not list it) for
# the permission checks.
chmod 0711 "$TESTDIR" "$MIRRORFS_RUNTIME_DIR"

# 64 MiB at 5 MiB/s: about 13 s of copying, more than any step needs.
head -c $((64 * MiB)) /dev/urandom >"$SRC/big.raw"
echo "small file" >"$SRC/small.txt"
mkdir "$SRC/sub"
head -c $((1 * MiB)) /dev/urandom >"$SRC/sub/nested.bin"
: >"$SRC/empty"
# Things in the target that are not the migration's: a cancel must leave them.
echo keep >"$DST/keep.txt"
mkdir "$DST/keepdir"
echo inner >"$DST/keepdir/inner"
echo data >"$TESTDIR/regular-file"

ST="$MIRRORFS_STATUS"
CTL="$MIRRORFSCTL"

# sample_growth MOUNTPOINT SECONDS: bytes_copied before and after SECONDS,
# as "A B".
sample_growth() {
	local a b
	a="$(bytes_copied "$1")"
	sleep "$2"
	b="$(bytes_copied "$1")"
	echo "$a $b"
}

# --- idle -------------------------------------------------------------------

section_idle() {
	local c
	log "--- idle"
	SOCK="$(control_socket "$MNT")"
	[[ -n "$SOCK" && -S "$SOCK" ]] || fail "no control socket (daemon log says '$SOCK')"
	[[ "$SOCK" == "$MIRRORFS_RUNTIME_DIR/"* ]] ||
		check_fail "socket '$SOCK' is not under MIRRORFS_RUNTIME_DIR=$MIRRORFS_RUNTIME_DIR"
	assert_eq "600 root" "$(stat -c '%a %U' "$SOCK")" "mode and owner of the control socket"

	expect_cli "status when idle" 0 "mirrorfs on $MNT: idle" "$ST" "$MNT"
	assert_contains "$CLI_OUT" "no migration has been started" "status when idle"
	assert_contains "$CLI_OUT" "serving  $SRC" "status when idle"
	# The same, with the socket named instead of found.
	check_cli "status --socket" 0 "mirrorfs on $MNT: idle" "$ST" --socket "$SOCK" "$MNT"

	status_json "$MNT" "$TESTDIR/s-idle.json"
	validate_status "$TESTDIR/s-idle.json" --state idle --mountpoint "$MNT" --source "$SRC" \
		--target null --served "$SRC" --static

	for c in pause resume switch cancel; do
		check_cli "$c when idle" 1 "$c: no migration has been started" "$CTL" "$MNT" "$c"
	done
	check_cli "speed when idle" 1 "speed: no migration has been started" "$CTL" "$MNT" speed 1M

	check_cli "--wait idle when idle" 0 "" "$ST" --wait idle "$MNT"
	# Waiting for a state an idle mount will never reach by itself: at once.
	check_cli "--wait switched when idle" 1 "the migration is idle" "$ST" --wait switched "$MNT"
	awk -v t="$CLI_TIME" 'BEGIN { exit !(t < 3) }' ||
		check_fail "--wait switched when idle took ${CLI_TIME}s"
	# --watch of an idle mount: the summary, at once.
	check_cli "--watch when idle" 0 "mirrorfs on $MNT: idle" "$ST" --watch 0.2 "$MNT"
	# The interval is optional: --watch MOUNTPOINT watches at the default one.
	check_cli "--watch MOUNTPOINT (no interval)" 0 "mirrorfs on $MNT: idle" "$ST" --watch "$MNT"
	check_cli "MOUNTPOINT --watch" 0 "mirrorfs on $MNT: idle" "$ST" "$MNT" --watch
}

# --- bad input --------------------------------------------------------------

section_bad_input() {
	log "--- bad input"
	# Usage errors: exit 2, before anything is sent.
	check_cli "ctl: no arguments" 2 "no MOUNTPOINT" "$CTL"
	check_cli "ctl: no command" 2 "no COMMAND" "$CTL" "$MNT"
	check_cli "ctl: unknown command" 2 "unknown command 'frobnicate'" "$CTL" "$MNT" frobnicate
	check_cli "ctl: status is not a mirrorfsctl command" 2 "unknown command" "$CTL" "$MNT" status
	check_cli "ctl: start without TARGET" 2 "start needs one TARGET" "$CTL" "$MNT" start
	check_cli "ctl: start with two TARGETs" 2 "start needs one TARGET" "$CTL" "$MNT" start "$DST" "$TESTDIR/dst2"
	check_cli "ctl: speed without RATE" 2 "speed needs one RATE" "$CTL" "$MNT" speed
	check_cli "ctl: speed abc" 2 "'abc' is not a size" "$CTL" "$MNT" speed abc
	check_cli "ctl: speed -5M" 2 "" "$CTL" "$MNT" speed -- -5M
	check_cli "ctl: speed with two RATEs" 2 "speed needs one RATE" "$CTL" "$MNT" speed 1M 2M
	check_cli "ctl: guest-share without PCT" 2 "guest-share needs one PCT" "$CTL" "$MNT" guest-share
	check_cli "ctl: guest-share 91" 2 "'91' is not a percentage from 0 to 90" "$CTL" "$MNT" guest-share 91
	check_cli "ctl: guest-share half" 2 "'half' is not a percentage" "$CTL" "$MNT" guest-share half
	check_cli "ctl: --guest-share 95% on start" 2 "'95%' is not a percentage" "$CTL" "$MNT" start "$DST" --guest-share 95%
	check_cli "ctl: --guest-share on speed" 2 "go with start, not speed" "$CTL" "$MNT" speed 1M --guest-share 10
	check_cli "ctl: pause with an argument" 2 "pause takes no argument" "$CTL" "$MNT" pause now
	check_cli "ctl: cancel with an argument" 2 "cancel takes no argument" "$CTL" "$MNT" cancel x
	check_cli "ctl: --switch sometimes" 2 "--switch: 'sometimes' is not auto or manual" "$CTL" "$MNT" start "$DST" --switch sometimes
	# The daemon's own rule (lib/mig-options.c), checked before sending.
	check_cli "ctl: --chunk 3K" 2 "--chunk: '3K' is not a power of two from 4K to 64M" "$CTL" "$MNT" start "$DST" --chunk 3K
	check_cli "ctl: --chunk 128M" 2 "not a power of two from 4K to 64M" "$CTL" "$MNT" start "$DST" --chunk 128M
	check_cli "ctl: --speed abc on start" 2 "'abc' is not a size" "$CTL" "$MNT" start "$DST" --speed abc
	check_cli "ctl: --chunk on pause" 2 "go with start, not pause" "$CTL" "$MNT" pause --chunk 1M
	check_cli "ctl: --no-clone on resume" 2 "go with start, not resume" "$CTL" "$MNT" resume --no-clone
	check_cli "ctl: --speed on speed" 2 "go with start, not speed" "$CTL" "$MNT" speed 1M --speed 2M
	check_cli "ctl: unknown option" 2 "--bogus" "$CTL" "$MNT" pause --bogus
	check_cli "st: no arguments" 2 "no MOUNTPOINT" "$ST"
	check_cli "st: two mount points" 2 "one MOUNTPOINT only" "$ST" "$MNT" "$MNT"
	check_cli "st: --wait with a bad state" 2 "--wait bogus: not a state" "$ST" --wait bogus "$MNT"
	check_cli "st: --wait Switched (states are lower case)" 2 "not a state" "$ST" --wait Switched "$MNT"
	check_cli "st: --watch abc" 2 "--watch abc" "$ST" --watch=abc "$MNT"
	check_cli "st: --watch 0" 2 "--watch 0" "$ST" --watch=0 "$MNT"
	check_cli "st: --wait and --watch" 2 "do not go together" "$ST" --wait switched --watch=1 "$MNT"
	check_cli "st: --timeout abc" 2 "" "$ST" --timeout abc --wait switched "$MNT"
	check_cli "st: unknown option" 2 "--bogus" "$ST" --bogus "$MNT"

	# No daemon to ask: exit 1, saying where it looked and why.
	check_cli "ctl: nonexistent mount point" 1 "No such file or directory" "$CTL" "$TESTDIR/nosuch" pause
	check_cli "st: nonexistent mount point" 1 "No such file or directory" "$ST" "$TESTDIR/nosuch"
	check_cli "ctl: not a mirrorfs mount" 1 "is a mirrorfs mounted there?" "$CTL" "$TESTDIR/plain" pause
	check_cli "st: not a mirrorfs mount" 1 "is a mirrorfs mounted there?" "$ST" "$TESTDIR/plain"
	check_cli "st: --wait on a directory that is not a mount" 1 "is a mirrorfs mounted there?" \
		"$ST" --wait switched --timeout 2 "$TESTDIR/plain"
	check_cli "st: --socket is a regular file" 1 "Connection refused" \
		"$ST" --socket "$TESTDIR/regular-file" "$MNT"
	check_cli "ctl: --socket does not exist" 1 "No such file or directory" \
		"$CTL" --socket "$TESTDIR/nosuch.sock" "$MNT" pause

	# Refused by the daemon: exit 1 with its reason; nothing starts.
	check_cli "ctl: start to a missing directory" 1 "start: target" "$CTL" "$MNT" start "$TESTDIR/nosuch"
	check_cli "ctl: start to a regular file" 1 "is not a directory" "$CTL" "$MNT" start "$TESTDIR/regular-file"
	check_cli "ctl: start to the source" 1 "is the source" "$CTL" "$MNT" start "$SRC"
	assert_eq idle "$(status_field "$MNT" state)" "state after the refused starts"
	assert_eq "keep.txt keepdir keepdir/inner" "$(names_below "$DST" | tr '\n' ' ' | sed 's/ $//')" \
		"target after the refused starts"
}

# --- permissions ----------------------------------------------------------

# While migration 1 copies: other users are kept out, first by the socket
# file's mode, then, with the file opened up, by the daemon itself.
section_permissions() {
	local denied="permission denied: uid $NOBODY_UID may not control this mount" g
	log "--- permissions"
	check_cli "status as nobody" 1 "Permission denied" "${AS_NOBODY[@]}" "$ST" "$MNT"
	check_cli "status --socket as nobody" 1 "cannot reach the control socket '$SOCK': Permission denied" \
		"${AS_NOBODY[@]}" "$ST" --socket "$SOCK" "$MNT"
	check_cli "pause as nobody" 1 "Permission denied" "${AS_NOBODY[@]}" "$CTL" "$MNT" pause

	chmod 0666 "$SOCK"
	check_cli "status as nobody, socket 0666" 1 "$denied" "${AS_NOBODY[@]}" "$ST" "$MNT"
	check_cli "status --json as nobody, socket 0666" 1 "$denied" "${AS_NOBODY[@]}" "$ST" --json "$MNT"
	check_cli "--wait as nobody, socket 0666" 1 "$denied" "${AS_NOBODY[@]}" "$ST" --wait switched --timeout 5 "$MNT"
	check_cli "pause as nobody, socket 0666" 1 "$denied" "${AS_NOBODY[@]}" "$CTL" "$MNT" pause
	check_cli "speed as nobody, socket 0666" 1 "$denied" "${AS_NOBODY[@]}" "$CTL" "$MNT" speed 1K
	check_cli "cancel as nobody, socket 0666" 1 "$denied" "${AS_NOBODY[@]}" "$CTL" "$MNT" cancel
	check_cli "start as nobody, socket 0666" 1 "$denied" "${AS_NOBODY[@]}" "$CTL" "$MNT" start "$TESTDIR/dst2"
	chmod 0600 "$SOCK"

	# Nothing changed: still copying, at the same speed, and moving.
	assert_eq copying "$(status_field "$MNT" state)" "state after nobody's commands"
	assert_eq $((1 * MiB)) "$(status_field "$MNT" speed_bps)" "speed after nobody's speed 1K"
	# At 1 MiB/s one chunk lands a second: wait for more than two.
	read -r -a g <<<"$(sample_growth "$MNT" 2.5)"
	((g[1] > g[0])) || check_fail "no progress after nobody's pause: bytes_copied ${g[0]} -> ${g[1]}"
}

# --- migration 1: cancelled -------------------------------------------------

section_migration1() {
	local before wpid rc=0 t0 t1
	log "--- migration 1: start, refusals, --wait, cancel"
	before="$(names_below "$DST")"

	expect_cli "start" 0 "$MNT: migration started" "$CTL" "$MNT" start "$DST" --speed 1M --switch manual
	assert_eq copying "$(status_field "$MNT" state)" "state after start"
	status_json "$MNT" "$TESTDIR/s-copying1.json"
	validate_status "$TESTDIR/s-copying1.json" --state copying --mountpoint "$MNT" --source "$SRC" \
		--target "$DST" --served "$SRC" --static
	[[ -e "$DST/big.raw" ]] || fail "the migration made nothing in the target"

	check_cli "start while one runs" 1 "already running" "$CTL" "$MNT" start "$TESTDIR/dst2"
	[[ -z "$(names_below "$TESTDIR/dst2")" ]] || check_fail "the refused start wrote to its target"
	check_cli "switch while copying" 1 "switch: not everything is copied yet" "$CTL" "$MNT" switch
	check_cli "resume while not paused" 1 "resume:" "$CTL" "$MNT" resume

	# --timeout: gives up, exit 1, after about the time given.
	check_cli "--wait mirrored --timeout 1" 1 "timed out; the migration is copying" \
		"$ST" --wait mirrored --timeout 1 "$MNT"
	awk -v t="$CLI_TIME" 'BEGIN { exit !(t >= 0.9 && t < 5) }' ||
		check_fail "--wait --timeout 1 took ${CLI_TIME}s"

	section_permissions

	# Cancel while paused, with a --wait waiting for the switch.
	expect_cli "pause" 0 "$MNT: paused" "$CTL" "$MNT" pause
	"$ST" --wait switched "$MNT" >"$TESTDIR/wait.out" 2>"$TESTDIR/wait.err" &
	wpid=$!
	track_bg "$wpid"
	sleep 1
	pid_alive "$wpid" || fail "--wait switched returned while the migration was paused: $(cat "$TESTDIR/wait.err")"
	t0=$SECONDS
	expect_cli "cancel" 0 "$MNT: cancelling" "$CTL" "$MNT" cancel
	wait_pid_exit "$wpid" 5 || fail "--wait switched still waiting 5 s after the cancel"
	t1=$SECONDS
	wait "$wpid" || rc=$?
	((rc == 1)) || check_fail "--wait switched after a cancel: exit $rc, expected 1"
	((t1 - t0 <= 3)) || check_fail "--wait switched took $((t1 - t0)) s to notice the cancel"
	[[ ! -s "$TESTDIR/wait.out" ]] || check_fail "--wait printed on stdout: $(cat "$TESTDIR/wait.out")"
	assert_eq "mirrorfs-status: the migration is cancelled" "$(cat "$TESTDIR/wait.err")" "--wait after a cancel"

	wait_status_state "$MNT" cancelled 30
	status_json "$MNT" "$TESTDIR/s-cancelled.json"
	validate_status "$TESTDIR/s-cancelled.json" --state cancelled --target "$DST" --served "$SRC" --static
	# Everything the migration made in the target is gone, journal included;
	# what was there before stays.
	assert_eq "$before" "$(names_below "$DST")" "names in the target after the cancel"
	assert_eq keep "$(cat "$DST/keep.txt")" "a file of the target's own"

	check_cli "cancel again" 1 "cancel: already cancelled" "$CTL" "$MNT" cancel
	check_cli "pause when cancelled" 1 "pause: not possible while the migration is cancelled" "$CTL" "$MNT" pause
	check_cli "switch when cancelled" 1 "switch: not possible while the migration is cancelled" "$CTL" "$MNT" switch
	check_cli "--wait copying when cancelled" 1 "the migration is cancelled" "$ST" --wait copying "$MNT"
	check_cli "--wait cancelled when cancelled" 0 "" "$ST" --wait cancelled "$MNT"
	check_cli "status when cancelled" 0 "mirrorfs on $MNT: cancelled" "$ST" "$MNT"
}

# --- migration 2: switched --------------------------------------------------

WATCH_PID=
TTY_PID=
FOLLOW_PID=

start_watchers() {
	"$ST" --watch 0.2 "$MNT" >"$TESTDIR/watch.out" 2>"$TESTDIR/watch.err" </dev/null &
	WATCH_PID=$!
	track_bg "$WATCH_PID"
	if command -v script >/dev/null 2>&1; then
		# script(1) gives the CLI a pseudo-terminal for stdout; -e: its exit
		# status; -f: flush at once.
		script -qefc "$ST --watch 0.2 $MNT" /dev/null >"$TESTDIR/watch-tty.out" 2>&1 </dev/null &
		TTY_PID=$!
		track_bg "$TTY_PID"
	fi
}

check_watchers() {
	local rc=0 out progress n
	log "--- --watch output"
	wait_pid_exit "$WATCH_PID" 10 || fail "--watch still running 10 s after the switch"
	wait "$WATCH_PID" || rc=$?
	((rc == 0)) || check_fail "--watch exited with status $rc: $(cat "$TESTDIR/watch.err")"
	[[ ! -s "$TESTDIR/watch.err" ]] || check_fail "--watch wrote to stderr: $(cat "$TESTDIR/watch.err")"
	out="$(cat "$TESTDIR/watch.out")"
	[[ "$out" != *$'\r'* && "$out" != *$'\e'* ]] ||
		check_fail "--watch to a file wrote terminal controls: $(cat -A "$TESTDIR/watch.out" | head -5)"
	# Plain lines: "[####.....]  12.5%  8.0 MiB / 65.0 MiB  5.0 MiB/s  ETA 11s  copying"
	progress="$(grep -E '^\[[#.]{30}\] +[0-9]+\.[0-9]%  .*  (copying|paused|mirrored|switching)$' \
		"$TESTDIR/watch.out" || true)"
	n="$(grep -c . <<<"$progress" || true)"
	((n >= 3)) || check_fail "--watch printed $n progress lines:"$'\n'"$out"
	grep -q ' copying$' <<<"$progress" || check_fail "--watch never showed copying:"$'\n'"$out"
	# The percentages never go back.
	sed -E 's/^\[[#.]+\] +([0-9.]+)%.*/\1/' <<<"$progress" |
		awk 'NR > 1 && $1 < prev { bad = 1 } { prev = $1 } END { exit bad }' ||
		check_fail "--watch progress went backwards:"$'\n'"$progress"
	# Every line is a progress line until the summary, which ends it.
	[[ "$(grep -n "^mirrorfs on $MNT: switched\$" "$TESTDIR/watch.out" | cut -d: -f1)" == \
		"$(($(grep -c . <<<"$progress") + 1))" ]] ||
		check_fail "--watch: not progress lines then the summary:"$'\n'"$out"
	assert_contains "$out" "  stun     " "--watch summary"

	if [[ -z "$TTY_PID" ]]; then
		log "SKIP: script(1) is not installed: --watch on a terminal not checked"
		return 0
	fi
	rc=0
	wait_pid_exit "$TTY_PID" 10 || fail "--watch on a terminal still running 10 s after the switch"
	wait "$TTY_PID" || rc=$?
	((rc == 0)) || check_fail "--watch on a terminal exited with status $rc"
	"$PYTHON" - "$TESTDIR/watch-tty.out" "$MNT" <<-'EOF' || check_fail "--watch on a terminal"
	import re, sys
	raw = open(sys.argv[1], "rb").read().decode("utf-8", "replace")
	mnt = sys.argv[2]
	summary = "\r\x1b[Kmirrorfs on %s: switched" % mnt
	problems = []
	at = raw.rfind(summary)
	if at < 0:
	    problems.append("no summary, after clearing the line, at the end")
	else:
	    bars = raw[:at]
	    redraws = re.findall(r"\r\[[#.]{30}\] +[0-9.]+%[^\r\n]*\x1b\[K", bars)
	    if len(redraws) < 3:
	        problems.append("%d redraws (\\r ... ESC[K) before the summary" % len(redraws))
	    if "\n" in bars:
	        problems.append("a new line before the summary: the progress is not redrawn in place")
	    tail = raw[at:]
	    if "stun" not in tail or not tail.rstrip(" \r\n").endswith("mirrored"):
	        problems.append("the output does not end with the summary and its file list")
	if problems:
	    print("\n".join(problems) + "\n" + repr(raw[-3000:]))
	    sys.exit(1)
	EOF
}

# check_follower: mirrorfs-status --follow printed every event of migration
# 2 in order, one JSON object a line, and ended with the switch.
check_follower() {
	local rc=0
	log "--- --follow output"
	wait_pid_exit "$FOLLOW_PID" 10 || fail "--follow still running 10 s after the switch"
	wait "$FOLLOW_PID" || rc=$?
	((rc == 0)) || check_fail "--follow exited with status $rc: $(cat "$TESTDIR/follow.err")"
	"$PYTHON" - "$TESTDIR/follow.out" <<-'EOF' || check_fail "--follow output"
	import json, sys
	lines = open(sys.argv[1]).read().splitlines()
	events = [json.loads(l) for l in lines]
	problems = []
	if events[0].get("state") != "cancelled":
	    problems.append("the first line is not where it stood (cancelled): %r" % events[0])
	seqs = [e["seq"] for e in events]
	if seqs != sorted(set(seqs)):
	    problems.append("seq does not rise: %r" % seqs)
	states = [e["state"] for e in events[1:] if e["event"] == "state"]
	if states != ["copying", "paused", "copying", "mirrored", "switching", "switched"]:
	    problems.append("states %r" % states)
	files = sorted(e["path"] for e in events if e["event"] == "file")
	for want in ("big.raw", "sub/nested.bin"):
	    if want not in files:
	        problems.append("no file event for %s: %r" % (want, files))
	last = events[-1]
	if not (last.get("state") == "switched" and last.get("stun_ms", -1) >= 0):
	    problems.append("the last event is not the switch with its stun: %r" % last)
	if problems:
	    print("\n".join(problems) + "\n" + "\n".join(lines))
	    sys.exit(1)
	EOF
}

section_migration2() {
	local g a b deadline
	log "--- migration 2: after a cancel, pause/resume, speed, manual switch"
	"$ST" --follow "$MNT" >"$TESTDIR/follow.out" 2>"$TESTDIR/follow.err" </dev/null &
	FOLLOW_PID=$!
	track_bg "$FOLLOW_PID"
	# Followed from here: the event stream answers with where it stands.
	for _ in $(seq 100); do [[ -s "$TESTDIR/follow.out" ]] && break; sleep 0.05; done
	expect_cli "start after a cancel" 0 "$MNT: migration started" "$CTL" "$MNT" start "$DST" --speed 1M --switch manual
	assert_eq copying "$(status_field "$MNT" state)" "state after the second start"
	sleep 0.5
	status_json "$MNT" "$TESTDIR/s-copying2.json"
	validate_status "$TESTDIR/s-copying2.json" --state copying --target "$DST" --served "$SRC" --static
	check_cli "switch while copying" 1 "switch: not everything is copied yet" "$CTL" "$MNT" switch
	check_cli "start while one runs" 1 "already running" "$CTL" "$MNT" start "$TESTDIR/dst2"

	# pause: the state says so and the copier stops.  The chunk under way
	# may still land, so wait until two samples agree, then sample 1 s apart.
	expect_cli "pause" 0 "$MNT: paused" "$CTL" "$MNT" pause
	assert_eq paused "$(status_field "$MNT" state)" "state after pause"
	deadline=$((SECONDS + 5))
	a="$(bytes_copied "$MNT")"
	while :; do
		sleep 0.5
		b="$(bytes_copied "$MNT")"
		[[ "$a" != "$b" ]] || break
		((SECONDS < deadline)) || break
		a="$b"
	done
	read -r -a g <<<"$(sample_growth "$MNT" 1)"
	((g[0] == g[1])) || check_fail "bytes_copied grew while paused: ${g[0]} -> ${g[1]}"
	((g[0] < 64 * MiB)) || fail "the copy was over before the pause: no pause tested"
	status_json "$MNT" "$TESTDIR/s-paused.json"
	validate_status "$TESTDIR/s-paused.json" --state paused --target "$DST" --served "$SRC" --static
	check_cli "pause again" 1 "pause: already paused" "$CTL" "$MNT" pause
	check_cli "switch while paused" 1 "switch: not everything is copied yet" "$CTL" "$MNT" switch
	check_cli "status while paused" 0 "mirrorfs on $MNT: paused" "$ST" "$MNT"

	expect_cli "resume" 0 "$MNT: resumed" "$CTL" "$MNT" resume
	assert_eq copying "$(status_field "$MNT" state)" "state after resume"
	# At 1 MiB/s one chunk lands a second: wait for more than two.
	read -r -a g <<<"$(sample_growth "$MNT" 2.5)"
	((g[1] > g[0])) || check_fail "no progress after resume: bytes_copied ${g[0]} -> ${g[1]}"
	check_cli "resume again" 1 "resume:" "$CTL" "$MNT" resume

	start_watchers
	sleep 1.5
	expect_cli "speed 2M" 0 "$MNT: speed set" "$CTL" "$MNT" speed 2M
	assert_eq $((2 * MiB)) "$(status_field "$MNT" speed_bps)" "speed_bps after speed 2M"
	assert_eq 50 "$(status_field "$MNT" guest_share)" "guest_share by default"
	expect_cli "guest-share 20%" 0 "$MNT: guest share set" "$CTL" "$MNT" guest-share 20%
	assert_eq 20 "$(status_field "$MNT" guest_share)" "guest_share after guest-share 20%"
	expect_cli "guest-share 0" 0 "$MNT: copier no longer rests for the guest" "$CTL" "$MNT" guest-share 0
	assert_eq 0 "$(status_field "$MNT" guest_share)" "guest_share after guest-share 0"
	expect_cli "speed 0" 0 "$MNT: speed unlimited" "$CTL" "$MNT" speed 0
	expect_cli "--wait mirrored" 0 "" "$ST" --wait mirrored --timeout 60 "$MNT"
	status_json "$MNT" "$TESTDIR/s-mirrored.json"
	validate_status "$TESTDIR/s-mirrored.json" --state mirrored --target "$DST" --served "$SRC" --static
	assert_eq 0 "$(json_field speed_bps "$TESTDIR/s-mirrored.json")" "speed_bps after speed 0"

	# switch=manual: it waits for the word.
	sleep 1
	assert_eq mirrored "$(status_field "$MNT" state)" "a manual migration, 1 s after mirrored"
	check_cli "start while mirrored" 1 "already running" "$CTL" "$MNT" start "$TESTDIR/dst2"
	check_cli "pause while mirrored" 1 "pause: not possible while the migration is mirrored" "$CTL" "$MNT" pause
	check_cli "--wait copying when mirrored" 0 "" "$ST" --wait copying "$MNT"

	expect_cli "switch" 0 "$MNT: switching" "$CTL" "$MNT" switch
	expect_cli "--wait switched" 0 "" "$ST" --wait switched --timeout 60 "$MNT"
	status_json "$MNT" "$TESTDIR/s-switched.json"
	validate_status "$TESTDIR/s-switched.json" --state switched --mountpoint "$MNT" --source "$SRC" \
		--target "$DST" --served "$DST" --static
	"$PYTHON" -c 'import json, sys; v = json.load(open(sys.argv[1]))["stun_ms"]; sys.exit(not (isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0))' \
		"$TESTDIR/s-switched.json" || check_fail "stun_ms is not a number after the switch"
	check_cli "status when switched" 0 "mirrorfs on $MNT: switched" "$ST" "$MNT"
	assert_contains "$CLI_OUT" "serving  $DST" "status when switched"
	assert_contains "$CLI_OUT" "  stun     " "status when switched"

	check_cli "cancel when switched" 1 "cancel: not possible while the migration is switched" "$CTL" "$MNT" cancel
	check_cli "switch when switched" 1 "switch: not possible while the migration is switched" "$CTL" "$MNT" switch
	check_cli "pause when switched" 1 "pause: not possible while the migration is switched" "$CTL" "$MNT" pause
	check_cli "speed when switched" 1 "speed: not possible while the migration is switched" "$CTL" "$MNT" speed 1M
	check_cli "--wait mirrored when switched" 0 "" "$ST" --wait mirrored "$MNT"

	check_watchers
	check_follower

	assert_file_eq "$SRC/big.raw" "$DST/big.raw"
	assert_file_eq "$SRC/sub/nested.bin" "$DST/sub/nested.bin"
	assert_file_eq "$MNT/big.raw" "$DST/big.raw"
	assert_eq keep "$(cat "$DST/keep.txt")" "a file of the target's own, after the switch"
}

# --- known rough edges ------------------------------------------------------

# Checked last, so that a failure here hides nothing above.
section_last() {
	local lpid msg
	log "--- file sizes, relative target, final states, silent socket"

	# The size of a file the copier has not reached yet is its size, not 0.
	validate_status "$TESTDIR/s-copying1.json" --sizes-from "$SRC"

	# A relative TARGET is the CLI's, not the daemon's working directory.
	mkdir "$TESTDIR/src3" "$TESTDIR/rel-dst"
	echo three >"$TESTDIR/src3/three.txt"
	mount_mfs "$TESTDIR/src3" "$MNT"
	cd "$TESTDIR" || fail "cd $TESTDIR"
	cli "$CTL" "$MNT" start rel-dst --switch manual
	cd /
	if msg="$(cli_verdict "start with a relative target" 0 "migration started" mirrorfsctl)"; then
		assert_eq "$TESTDIR/rel-dst" "$(status_field "$MNT" target)" "target of a relative start"
		ctl "$MNT" cancel
		wait_status_state "$MNT" cancelled 30
	else
		check_fail "$msg"
	fi

	# Waiting for a state that can no longer come: at once, not forever.
	mkdir "$TESTDIR/dst3"
	ctl "$MNT" start "$TESTDIR/dst3"
	wait_status_state "$MNT" switched 60
	CLI_TIMEOUT=5 check_cli "--wait cancelled when switched" 1 "the migration is switched" \
		"$ST" --wait cancelled "$MNT"
	CLI_TIMEOUT=5 check_cli "--wait failed when switched" 1 "the migration is switched" \
		"$ST" --wait failed "$MNT"
	umount_mfs "$MNT"

	# A socket that accepts and never answers (a stopped or wedged daemon):
	# the CLIs give up instead of hanging, at the latest when --timeout says.
	"$PYTHON" - "$TESTDIR/silent.sock" <<-'EOF' &
	import socket, sys, time
	s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
	s.bind(sys.argv[1])
	s.listen(16)
	held = []
	s.settimeout(0.5)
	end = time.monotonic() + 60
	while time.monotonic() < end:
	    try:
	        held.append(s.accept())
	    except socket.timeout:
	        pass
	EOF
	lpid=$!
	track_bg "$lpid"
	for _ in $(seq 50); do [[ -S "$TESTDIR/silent.sock" ]] && break; sleep 0.1; done
	CLI_TIMEOUT=8 check_cli "--wait --timeout 2 on a socket that never answers" 1 "" \
		"$ST" --socket "$TESTDIR/silent.sock" --wait switched --timeout 2 "$MNT"
	CLI_TIMEOUT=8 check_cli "pause on a socket that never answers" 1 "" \
		"$CTL" --socket "$TESTDIR/silent.sock" "$MNT" pause
	kill "$lpid" 2>/dev/null || true
}

mount_mfs "$SRC" "$MNT"
T0=$SECONDS
section_idle
section_bad_input
section_migration1
section_migration2
umount_mfs "$MNT"
log "main sections took $((SECONDS - T0)) s"
section_last
! mounts_under "$TESTDIR" || fail "a mirrorfs mount was left under $TESTDIR"
control_finish
