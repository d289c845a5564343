#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Names are bytes (issue 17, item 16): a file whose name is not UTF-8, or
# holds a backslash or a control character, must not break the status.
# The protocol carries each escaped (\xHH, see mirrorfs-status(1)),
# losslessly; the CLIs print the escaped form; a target whose name is not
# UTF-8 can be migrated to.  And the raw protocol refuses a speed that
# does not fit the 64-bit signed numbers the status reports it in,
# instead of reporting -1.

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
. "$(dirname "${BASH_SOURCE[0]}")/lib-migration.sh"
. "$(dirname "${BASH_SOURCE[0]}")/lib-control.sh"

SRC="$TESTDIR/src"
MNT="$TESTDIR/mnt"
DST="$TESTDIR/dst"
BAD_DST="$TESTDIR/dst"$'\xfe'
mkdir "$SRC" "$MNT" "$DST" "$BAD_DST"
LATIN1=$'disk\xff.raw'
head -c $((2 * 1024 * 1024)) /dev/urandom >"$SRC/$LATIN1"
echo back >"$SRC/back\\slash.img"
echo esc >"$SRC/esc"$'\x1b'"[2J.img"
echo utf8 >"$SRC/tête.img"

# request JSON: one raw request on the mount's control socket; prints the reply.
request() {
	"$PYTHON" - "$(control_socket "$MNT")" "$1" <<'EOF'
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(10)
s.connect(sys.argv[1])
s.sendall(sys.argv[2].encode() + b"\n")
buf = b""
while not buf.endswith(b"\n"):
    chunk = s.recv(65536)
    if not chunk:
        break
    buf += chunk
sys.stdout.write(buf.decode("utf-8", "surrogateescape"))
EOF
}

mount_mfs "$SRC" "$MNT"
ctl "$MNT" start "$DST" --switch manual

log "mirrorfs-status --wait and --json with names that are not UTF-8"
cli "$MIRRORFS_STATUS" --wait mirrored --timeout 60 "$MNT"
((CLI_RC == 0)) || check_fail "mirrorfs-status --wait mirrored: exit $CLI_RC: $CLI_ERR"
cli "$MIRRORFS_STATUS" --json "$MNT"
if ((CLI_RC != 0)); then
	check_fail "mirrorfs-status --json: exit $CLI_RC: $CLI_ERR"
else
	printf '%s\n' "$CLI_OUT" >"$TESTDIR/status.json"
	# Every path decodes back to the exact bytes of a name the mount shows.
	out="$("$PYTHON" - "$TESTDIR/status.json" "$MNT" <<'EOF'
import json, os, re, sys
d = json.load(open(sys.argv[1]))
def unescape(s):
    out = bytearray()
    i = 0
    while i < len(s):
        if s[i] == "\\":
            assert s[i + 1] == "x", s
            out.append(int(s[i + 2:i + 4], 16))
            i += 4
        else:
            out += s[i].encode()
            i += 1
    return bytes(out)
got = sorted(unescape(f["path"]) for f in d["files"])
want = sorted(os.listdir(os.fsencode(sys.argv[2])))
if got != want:
    print("paths %r, expected %r" % (got, want))
names = sorted(f["path"] for f in d["files"])
for n in ["disk\\xff.raw", "back\\x5cslash.img", "esc\\x1b[2J.img", "t\u00eate.img"]:
    if n not in names:
        print("%r is not among %r" % (n, names))
EOF
)"
	[[ -z "$out" ]] || check_fail "status paths: $out"
fi
cli "$MIRRORFS_STATUS" "$MNT"
if ((CLI_RC != 0)); then
	check_fail "mirrorfs-status: exit $CLI_RC: $CLI_ERR"
else
	[[ "$CLI_OUT" == *'disk\xff.raw'* && "$CLI_OUT" == *'esc\x1b[2J.img'* ]] ||
		check_fail "mirrorfs-status does not show the escaped names: $CLI_OUT"
	[[ "$CLI_OUT" != *$'\x1b'* ]] || check_fail "mirrorfs-status printed a raw escape character"
fi

log "a speed that does not fit a signed 64-bit number is refused"
for speed in '"18446744073709551615"' '"16777216T"' 18446744073709551615 -1; do
	reply="$(request "{\"command\":\"speed\",\"speed\":$speed}")"
	[[ "$reply" == *'"ok":false'* && "$reply" == *"out of range"* ]] ||
		check_fail "speed $speed: $reply"
done
speed_bps="$(status_field "$MNT" speed_bps)"
assert_eq 0 "$speed_bps" "speed_bps after the refused speeds"
reply="$(request '{"command":"speed","speed":"9223372036854775807"}')"
[[ "$reply" == *'"ok":true'* ]] || check_fail "speed 2^63 - 1: $reply"
assert_eq 9223372036854775807 "$(status_field "$MNT" speed_bps)" "speed_bps"
ctl "$MNT" cancel
wait_status_state "$MNT" cancelled

log "a target whose name is not UTF-8"
cli "$MIRRORFSCTL" "$MNT" start "$BAD_DST" --switch manual
((CLI_RC == 0)) || check_fail "start '$BAD_DST': exit $CLI_RC: $CLI_ERR"
if ((CLI_RC == 0)); then
	target="$(status_field "$MNT" target)"
	assert_eq "$TESTDIR/dst\\xfe" "$target" "status target"
	cli "$MIRRORFS_STATUS" --wait mirrored --timeout 60 "$MNT"
	cmp "$SRC/$LATIN1" "$BAD_DST/$LATIN1" || check_fail "'$LATIN1' not copied to the target"
	ctl "$MNT" cancel
	wait_status_state "$MNT" cancelled
fi
reply="$(request '{"command":"start","target":"/tmp/bad\\x4"}')"
[[ "$reply" == *'"ok":false'* && "$reply" == *"escape"* ]] ||
	check_fail "a malformed escape in the target: $reply"

umount_mfs "$MNT"
control_finish
