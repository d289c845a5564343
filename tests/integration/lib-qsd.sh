# SPDX-License-Identifier: GPL-2.0-or-later
#
# qemu-storage-daemon standing for a running VM, for the adopt and release
# tests: it holds its image files as QEMU does (its QMP monitor is what
# mirrorfsctl adopt and release talk to), and exports each over NBD so
# that qemu-io writes and reads as the guest would.  Sourced after lib.sh.

declare -A QSD_PID=()
# qsd NAME FILE [FILE2]: a QEMU holding FILE (export NAME) and FILE2 (NAME-2)
qsd() {
	local name="$1" file="$2" deadline=$((SECONDS + 30)) more=()
	[[ -z "${3:-}" ]] || more=(--blockdev "driver=file,node-name=$name-2-file,filename=$3"
		--blockdev "driver=raw,node-name=$name-2,file=$name-2-file"
		--export "type=nbd,id=e-$name-2,node-name=$name-2,writable=on")
	qemu-storage-daemon --chardev "socket,id=m,path=$TESTDIR/$name.qmp,server=on,wait=off" \
		--monitor chardev=m --nbd-server "addr.type=unix,addr.path=$TESTDIR/$name.nbd" \
		--blockdev "driver=file,node-name=$name-file,filename=$file" \
		--blockdev "driver=raw,node-name=$name,file=$name-file" \
		--export "type=nbd,id=e-$name,node-name=$name,writable=on" "${more[@]}" \
		>"$TESTDIR/$name.log" 2>&1 &
	QSD_PID[$name]=$!
	track_bg "${QSD_PID[$name]}"
	until [[ -S "$TESTDIR/$name.qmp" && -S "$TESTDIR/$name.nbd" ]]; do
		pid_alive "${QSD_PID[$name]}" || fail "qemu-storage-daemon $name: $(cat "$TESTDIR/$name.log")"
		((SECONDS < deadline)) || fail "qemu-storage-daemon $name has no sockets after 30 s"
		sleep 0.05
	done
}
# io NAME COMMAND...: qemu-io on the disk of NAME, as its guest sees it
io() {
	local name="$1" out c args=()
	shift
	for c in "$@"; do args+=(-c "$c"); done
	out="$(qemu-io -f raw "${args[@]}" "nbd+unix:///$name?socket=$TESTDIR/$name.nbd" 2>&1)" ||
		fail "qemu-io $* on $name: $out"
	[[ "$out" != *rror* && "$out" != *failed* ]] || fail "qemu-io $* on $name:"$'\n'"$out"
}
holds() { ls -l /proc/"${QSD_PID[$1]}"/fd | grep -qF -- "-> $2"; }
# two_vms DIR MIB: images vmA.raw and vmB.raw of MIB MiB in DIR, each held
# by its QEMU (qsd vmA, vmB), which wrote its first MiB (0x41, 0x42).
two_vms() {
	head -c $(($2 << 20)) /dev/urandom >"$1/vmA.raw"
	head -c $(($2 << 20)) /dev/urandom >"$1/vmB.raw"
	qsd vmA "$1/vmA.raw"
	qsd vmB "$1/vmB.raw"
	io vmA 'write -P 0x41 0 1M'
	io vmB 'write -P 0x42 0 1M'
}
