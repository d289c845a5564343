# SPDX-License-Identifier: GPL-2.0-or-later
# shellcheck shell=bash disable=SC2034 # variables for the tests that source this
#
# Helpers for the tests of the control socket and its two CLIs, on top of
# lib.sh:
#
#     . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#     . "$(dirname "${BASH_SOURCE[0]}")/lib-control.sh"
#
# The daemons and the CLIs of a test share a runtime directory of the
# test's own ($MIRRORFS_RUNTIME_DIR, under TESTDIR), so that the CLIs find
# the sockets from the mount points, exactly as in real use, without the
# test touching /run/mirrorfs; and so that a test may open the way to a
# socket for another user.
#
# Checks come in two strengths: fail (lib.sh) stops the test at once, for
# what the rest depends on; check_fail records a failure and lets the test
# go on, so that one run reports every independent problem.  A test that
# uses check_fail ends with control_finish.

[[ -n "${MIRRORFS_STATUS:-}" ]] || fail "MIRRORFS_STATUS is not set: run through 'meson test'"
[[ -x "$MIRRORFS_STATUS" ]] || fail "MIRRORFS_STATUS='$MIRRORFS_STATUS' is not executable"
[[ -n "${MIRRORFSCTL:-}" ]] || fail "MIRRORFSCTL is not set: run through 'meson test'"
[[ -x "$MIRRORFSCTL" ]] || fail "MIRRORFSCTL='$MIRRORFSCTL' is not executable"

CONTROL_LIB_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
STATUS_SCHEMA="$CONTROL_LIB_DIR/status-schema.py"

# The interpreter itself, not a version manager's shim in front of it: the
# tests call it often, and a shim can cost half a second a call.
PYTHON="$(python3 -c 'import sys; print(sys.executable)')"

# Seconds a CLI call may take.  Every command is answered at once, so this
# only catches hangs.
CLI_TIMEOUT="${CLI_TIMEOUT:-20}"

export MIRRORFS_RUNTIME_DIR="$TESTDIR/run"
mkdir -m 0700 "$MIRRORFS_RUNTIME_DIR"

SOFT_FAILURES=0

# check_fail MESSAGE: record a failure and go on (returns 0, so that it
# can end an if or a function under set -e).
check_fail() {
	printf '%s: FAIL: %s\n' "$TEST_NAME" "$*" >&2
	SOFT_FAILURES=$((SOFT_FAILURES + 1))
}

# control_finish: end the test, failed if any check_fail was recorded.
control_finish() {
	((SOFT_FAILURES == 0)) || fail "$SOFT_FAILURES check(s) failed (see FAIL lines above)"
	exit 0
}

# cli CMD...: run a CLI, bounded; sets CLI_RC, CLI_OUT, CLI_ERR, CLI_TIME
# (seconds, as a decimal).  Never fails by itself.
cli() {
	local t0 t1
	CLI_RC=0
	t0="$(date +%s.%N)"
	timeout -k 2 "$CLI_TIMEOUT" "$@" >"$TESTDIR/cli.out" 2>"$TESTDIR/cli.err" </dev/null ||
		CLI_RC=$?
	t1="$(date +%s.%N)"
	CLI_TIME="$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')"
	CLI_OUT="$(cat "$TESTDIR/cli.out")"
	CLI_ERR="$(cat "$TESTDIR/cli.err")"
}

# cli_verdict WHAT RC PATTERN: is the last cli call as expected?  Prints
# what is wrong and returns 1 if not.
#   RC 0: stderr empty; PATTERN (if any) in stdout.
#   RC non-zero: stdout empty; stderr exactly one non-empty line,
#   "PROG: ...", containing PATTERN.
# A timeout (124/137) is a hang, a status above 128 a crash, whatever RC.
cli_verdict() {
	local what="$1" rc="$2" pattern="$3" prog="$4" nlines
	if ((CLI_RC == 124 || CLI_RC == 137)); then
		echo "$what: hung (no answer in ${CLI_TIMEOUT}s)"
		return 1
	fi
	if ((CLI_RC > 128)); then
		echo "$what: killed by signal $((CLI_RC - 128)); stderr: $CLI_ERR"
		return 1
	fi
	if [[ "$CLI_RC" != "$rc" ]]; then
		echo "$what: exit status $CLI_RC, expected $rc; stdout: '$CLI_OUT'; stderr: '$CLI_ERR'"
		return 1
	fi
	if ((rc == 0)); then
		[[ -z "$CLI_ERR" ]] || { echo "$what: unexpected stderr: $CLI_ERR"; return 1; }
		[[ "$CLI_OUT" == *"$pattern"* ]] ||
			{ echo "$what: '$pattern' not in stdout: $CLI_OUT"; return 1; }
		return 0
	fi
	[[ -z "$CLI_OUT" ]] || { echo "$what: unexpected stdout: $CLI_OUT"; return 1; }
	nlines="$(wc -l <"$TESTDIR/cli.err")"
	if [[ "$nlines" != 1 || -z "$CLI_ERR" || -n "$(tail -c 1 "$TESTDIR/cli.err")" ]]; then
		echo "$what: expected one line on stderr, got $nlines: $CLI_ERR"
		return 1
	fi
	[[ "$CLI_ERR" == "$prog: "* ]] ||
		{ echo "$what: the error does not start with '$prog: ': $CLI_ERR"; return 1; }
	[[ "$CLI_ERR" == *"$pattern"* ]] ||
		{ echo "$what: '$pattern' not in the error: $CLI_ERR"; return 1; }
	return 0
}

# expect_cli WHAT RC PATTERN CMD...: run CMD (a CLI, by path) and stop the
# test unless it behaves as cli_verdict says.  check_cli: the same, but
# records the failure and goes on.
expect_cli() {
	local what="$1" rc="$2" pattern="$3" msg
	shift 3
	cli "$@"
	msg="$(cli_verdict "$what" "$rc" "$pattern" "$(cli_prog "$@")")" || fail "$msg"
}

check_cli() {
	local what="$1" rc="$2" pattern="$3" msg
	shift 3
	cli "$@"
	msg="$(cli_verdict "$what" "$rc" "$pattern" "$(cli_prog "$@")")" || check_fail "$msg"
}

# cli_prog CMD...: the name of the CLI in a command line (which may start
# with a wrapper such as setpriv).
cli_prog() {
	local a
	for a in "$@"; do
		case "$(basename -- "$a")" in
		mirrorfs-status | mirrorfsctl)
			basename -- "$a"
			return
			;;
		esac
	done
	basename -- "$1"
}

# ctl ARGS...: mirrorfsctl that must succeed (stops the test otherwise).
ctl() {
	expect_cli "mirrorfsctl $*" 0 "" "$MIRRORFSCTL" "$@"
}

# status_json MOUNTPOINT [FILE]: the --json status; into FILE if given,
# else on stdout.  Stops the test if the CLI fails.
status_json() {
	local mnt="$1" out="${2:-}"
	cli "$MIRRORFS_STATUS" --json "$mnt"
	((CLI_RC == 0)) || fail "mirrorfs-status --json $mnt: exit $CLI_RC: $CLI_ERR"
	if [[ -n "$out" ]]; then
		printf '%s\n' "$CLI_OUT" >"$out"
	else
		printf '%s\n' "$CLI_OUT"
	fi
}

# json_field FIELD [FILE]: a top-level member of a status document (stdin
# by default); null prints as "null", numbers as JSON spells them.
json_field() {
	"$PYTHON" -c 'import json, sys
d = json.load(open(sys.argv[2]) if len(sys.argv) > 2 else sys.stdin)
v = d[sys.argv[1]]
print(v if isinstance(v, str) else json.dumps(v))' "$@"
}

# status_field MOUNTPOINT FIELD: one member of the current status.
status_field() {
	local f="$TESTDIR/status-field.json"
	status_json "$1" "$f"
	json_field "$2" "$f"
}

# status_path MOUNTPOINT FIELD: a path member of the current status (target,
# served, ...) as the bytes it names: the protocol escapes a name's bytes
# that are not printable UTF-8, and the backslash, as \xHH
# (mirrorfs-status(1)).
status_path() {
	status_field "$1" "$2" | "$PYTHON" -c 'import re, sys
text = sys.stdin.buffer.read().rstrip(b"\n")
sys.stdout.buffer.write(re.sub(rb"\\x([0-9a-fA-F]{2})", lambda m: bytes([int(m[1], 16)]), text))'
}

# wait_status_state MOUNTPOINT STATE [SECONDS]: poll until the status says
# STATE; stop the test on timeout.
wait_status_state() {
	local mnt="$1" want="$2" deadline=$((SECONDS + ${3:-60})) state
	while :; do
		state="$(status_field "$mnt" state)"
		[[ "$state" != "$want" ]] || return 0
		((SECONDS < deadline)) || fail "state '$state' after ${3:-60}s, expected '$want'"
		sleep 0.1
	done
}

# validate_status FILE [status-schema.py options...]: check a --json
# document against the specification; records a failure if it does not
# hold.
validate_status() {
	local file="$1" out rc=0
	shift
	out="$("$PYTHON" "$STATUS_SCHEMA" "$@" "$file" 2>&1)" || rc=$?
	((rc == 0)) || check_fail "status $(basename "$file") does not match the specification:"$'\n'"$out"$'\n'"$(cat "$file")"
}

# require_nobody: set AS_NOBODY, a prefix that runs a command as the
# unprivileged user nobody without root's supplementary groups (for cli,
# check_cli, ...), and NOBODY_UID; skip the test if that is not possible.
require_nobody() {
	NOBODY_UID="$(id -u nobody 2>/dev/null)" || skip "there is no user 'nobody'"
	local group
	group="$(id -gn nobody)"
	if command -v setpriv >/dev/null 2>&1; then
		AS_NOBODY=(setpriv --reuid=nobody --regid="$group" --clear-groups --)
	elif command -v runuser >/dev/null 2>&1; then
		AS_NOBODY=(runuser -u nobody -g "$group" --)
	else
		skip "neither setpriv nor runuser is installed"
	fi
}

# control_socket MOUNTPOINT: the path of the mount's control socket, as the
# daemon logged it ("... control socket PATH").
control_socket() {
	local mnt logf deadline=$((SECONDS + 10))
	mnt="$(realpath "$1")"
	logf="${MFS_LOG[$mnt]:-}"
	[[ -n "$logf" ]] || fail "control_socket: '$mnt' was not mounted by mount_mfs"
	# The daemon says it just after the mount shows: a slow one (TSan) may not yet have.
	until grep -q '; control socket ' "$logf" || ((SECONDS >= deadline)); do
		sleep 0.05
	done
	sed -n 's/.*; control socket \(.*\)$/\1/p' "$logf" | tail -n 1
}

# names_below DIR: every name below DIR (dot files included), one per line,
# sorted.
names_below() {
	(cd "$1" && find . -mindepth 1 -printf '%P\n') | LC_ALL=C sort
}

# bytes_copied MOUNTPOINT: the status's bytes_copied.
bytes_copied() {
	status_field "$1" bytes_copied
}
