# SPDX-License-Identifier: GPL-2.0-or-later
# shellcheck shell=bash
#
# A GlusterFS of the test's own on this machine, on top of lib.sh:
#
#     . "$(dirname "${BASH_SOURCE[0]}")/lib-gluster.sh"
#     gluster_setup
#     volume_up NAME MOUNTPOINT [replica N] BRICKDIR...
#
# gluster_setup uses the glusterd already running if there is one (its
# own volumes are left alone: ours are named mfstest-PID-*), else starts
# one; at exit our volumes' mounts are detached (lazily: a daemon may
# still hold files there), the volumes stopped and deleted, their brick
# servers killed, and a glusterd we started stopped, even when the test
# fails.  Gluster refuses a loopback address for a brick, so the bricks
# live on this host's first address (hostname -I); none: skip.

HOST="$(hostname -I 2>/dev/null | awk '{ print $1 }')"
VOL_PREFIX="mfstest-$$"
VOLUMES=()
GLUSTERD_OURS=

gl() {
	timeout -k 5 90 gluster --mode=script "$@"
}

# --- setup and teardown ---------------------------------------------------

gluster_cleanup() {
	local rc=$? v
	set +e
	cd /
	for v in "${VOLUMES[@]}"; do
		# The mounts first (lazily: a daemon may still hold files there).
		for m in $(awk -v v="$HOST:/$v" '$1 == v { print $2 }' /proc/mounts); do
			umount -l "$m"
		done
		gl volume stop "$v" force >/dev/null 2>&1
		gl volume delete "$v" >/dev/null 2>&1
		pkill -KILL -f -- "--volfile-id $v\." 2>/dev/null
	done
	if [[ -n "$GLUSTERD_OURS" ]]; then
		pkill -KILL -F "$TESTDIR/glusterd.pid" 2>/dev/null
		# Its self-heal daemon, which it started for our replica volume.
		pkill -KILL -f -- "--volfile-id shd/$VOL_PREFIX" 2>/dev/null
	fi
	(exit "$rc")
	eval "$GLUSTER_PREV_EXIT_TRAP"
	exit "$rc"
}

# gluster_setup: a glusterd to ask, and the cleanup at exit.
gluster_setup() {
	local deadline
	require_cmd glusterd gluster mount.glusterfs
	[[ -n "$HOST" ]] || skip "no network address for Gluster's bricks (it refuses loopback)"
	eval "set -- $(trap -p EXIT)"
	GLUSTER_PREV_EXIT_TRAP="${3:-}"
	set --
	trap gluster_cleanup EXIT
	if gluster --mode=script volume list >/dev/null 2>&1; then
		log "glusterd $(glusterd --version | head -n 1 | awk '{ print $2 }') (running), bricks on $HOST"
		return 0
	fi
	glusterd -p "$TESTDIR/glusterd.pid" --log-file="$TESTDIR/glusterd.log" ||
		skip "cannot start glusterd"
	GLUSTERD_OURS=1
	deadline=$((SECONDS + 30))
	until gluster --mode=script volume list >/dev/null 2>&1; do
		((SECONDS < deadline)) || fail "glusterd does not answer 30 s after its start"
		sleep 0.2
	done
	log "glusterd $(glusterd --version | head -n 1 | awk '{ print $2 }') (started by the test), bricks on $HOST"
}

# volume_up NAME MOUNTPOINT [replica N] BRICKDIR... [--group-virt]: a
# started volume, mounted; --group-virt gives it gluster's "virt" group of
# options first.  Sets VOL to its full name.
volume_up() {
	local name="$VOL_PREFIX-$1" mnt="$2" bricks=() b virt=
	shift 2
	local layout=()
	if [[ "$1" == replica ]]; then
		layout=(replica "$2")
		shift 2
	fi
	for b in "$@"; do
		if [[ "$b" == --group-virt ]]; then
			virt=1
			continue
		fi
		mkdir -p "$b"
		bricks+=("$HOST:$b")
	done
	VOLUMES+=("$name")
	gl volume create "$name" "${layout[@]}" "${bricks[@]}" force >/dev/null ||
		fail "gluster volume create $name failed"
	[[ -z "$virt" ]] || gl volume set "$name" group virt >/dev/null ||
		fail "gluster volume set $name group virt failed"
	gl volume start "$name" >/dev/null || fail "gluster volume start $name failed"
	mkdir -p "$mnt"
	timeout -k 5 60 mount -t glusterfs "$HOST:/$name" "$mnt" || fail "cannot mount $name"
	VOL="$name"
}

# brick_pid VOLUME BRICKDIR: the pid of that brick's server.
brick_pid() {
	gl volume status "$1" "$HOST:$2" --xml | sed -n 's:.*<pid>\([0-9]*\)</pid>.*:\1:p' | head -n 1
}

