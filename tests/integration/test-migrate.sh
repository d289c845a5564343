#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Live migration on a real mount (-o target=DIR), with real clients running
# through it while the files are copied, mirrored and switched:
#
#   images     a 1 GiB raw image written in full, a sparse raw image and a
#              sparse qcow2 image, and small config files in a
#              subdirectory; two fio writers with crc32c verification (one
#              buffered, one O_DIRECT) write into the raw image from before
#              the switch to after it.  Then: every fio block verifies,
#              through the mount and straight from the target; the bytes
#              the copier carried are where they belong (fio headers carry
#              their offset); the mount reads what the target holds; qcow2
#              is consistent and equal to what it was; sparse files take no
#              more room on the target than on the source.
#   restart    unmounted and mounted again without target=: the mount
#              serves the target (its journal says so), new files land
#              there and not in the source.
#   holder     two qemu-io processes keep an image each open through the
#              mount (qcow2 with cache=none, raw with cache=writeback) and
#              write patterns before, during and after the switch; every
#              command succeeds, every pattern reads back, the target holds
#              them all, and writes after the switch no longer reach the
#              source.
#   namespace  create, mkdir, rename (files, directories, the file being
#              copied, over an existing name, across directories), unlink,
#              rmdir, symlink, hard link, mkfifo, chmod, chown, truncate,
#              append and xattrs during the copy: the target ends up exactly
#              like a reference directory that had the same operations.
#   delete     -o delete_source: after the switch the source holds nothing
#              but its journal.
#   manual     -o switch=manual: mirrored, and still not switched seconds
#              later; writes reach both sides; unmounting cancels and
#              removes every name it made in the target, and only those.
#   cancel     unmounting in the middle of the copy cancels the same way.
#   overwrite  -o overwrite replaces names the target already holds.

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
. "$(dirname "${BASH_SOURCE[0]}")/lib-migration.sh"
require_cmd fio qemu-img qemu-io mkfifo cmp setfattr truncate

# fio writes nothing in its working directory with --verify_state_save=0,
# but keep it out of the source tree anyway.
cd "$TESTDIR"

now_ms() {
	date +%s%3N
}

# section NAME: make $TESTDIR/NAME/{src,dst,mnt,ref} and set SRC DST MNT REF.
section() {
	SECTION_T0=$SECONDS
	log "--- $1"
	SRC="$TESTDIR/$1/src"
	DST="$TESTDIR/$1/dst"
	MNT="$TESTDIR/$1/mnt"
	REF="$TESTDIR/$1/ref"
	mkdir -p "$SRC" "$DST" "$MNT"
}

section_done() {
	log "--- done in $((SECONDS - SECTION_T0))s"
}

# random_file PATH BYTES
random_file() {
	head -c "$2" /dev/urandom >"$1"
}

# listing_without_journal DIR: tree_listing without the source's journal.
listing_without_journal() {
	tree_listing "$1" | { grep -v '^\.mirrorfs-journal ' || true; }
}

# --- fio --------------------------------------------------------------------

# The 1 GiB raw image is laid out by fio in five sequential jobs, every
# 256 KiB block with a crc32c header that names its offset.  The writers
# work in W1 and W2 later; F0, F2 and F4 stay as the copier must carry them.
IMG_SIZE=$((1024 * 1024 * 1024))
MiB=$((1024 * 1024))
W1_OFF=$((288 * MiB))
W2_OFF=$((800 * MiB))
W_SIZE=$((64 * MiB))
# Writers: W_SIZE each at W_RATE, so their write phase lasts W_SIZE/W_RATE
# seconds (16 s); the migration, limited to MIG_SPEED, must switch well
# within that (about 4 s of copying at 256 MiB/s, plus the flush).  The
# copier does not rest for them (guest_share=0): resting as long as each
# chunk took, on a loaded machine it could outlast the writers.
W_RATE=4m
MIG_SPEED=256M

fill_common=(--rw=write --bs=256k --ioengine=psync --verify=crc32c
	--verify_state_save=0 --fallocate=none)

fill_jobs() { # [JOB...]: the named fill jobs, all by default
	local j
	local -A off=([f0]=0 [f1]=$W1_OFF [f2]=$((W1_OFF + W_SIZE)) [f3]=$W2_OFF
		[f4]=$((W2_OFF + W_SIZE)))
	local -A size=([f0]=$W1_OFF [f1]=$W_SIZE [f2]=$((W2_OFF - W1_OFF - W_SIZE))
		[f3]=$W_SIZE [f4]=$((IMG_SIZE - W2_OFF - W_SIZE)))
	(($#)) || set -- f0 f1 f2 f3 f4
	for j in "$@"; do
		printf '%s\n' "--name=$j" "--offset=${off[$j]}" "--size=${size[$j]}"
	done
}

# The writers: random 4-64 KiB writes, crc32c on each, a verify pass after
# the write pass; the same options give the same offsets, sizes and seeds,
# so that a later --verify_only run checks what this one wrote.
writer_common=(--rw=randwrite --bsrange=4k-64k --verify=crc32c --do_verify=1
	--verify_fatal=1 --verify_state_save=0 --fallocate=none "--size=$W_SIZE")
writer_jobs=(--name=buffered --ioengine=psync --direct=0 "--offset=$W1_OFF"
	--name=direct --ioengine=libaio --iodepth=8 --direct=1 "--offset=$W2_OFF")

# fio_check REPORT WHAT NJOBS MIN_READ MIN_WRITE [SWITCH_MS START_MS]: every
# job ended without error, read (verified) at least MIN_READ and wrote at
# least MIN_WRITE bytes; with SWITCH_MS, the switch was seen before the
# write phase of every job ended (START_MS: when fio was started).
fio_check() {
	run python3 - "$@" <<-'EOF'
	import json, sys
	path, what, njobs, min_read, min_write = sys.argv[1:6]
	switch_ms = int(sys.argv[6]) if len(sys.argv) > 6 else None
	start_ms = int(sys.argv[7]) if len(sys.argv) > 7 else None
	with open(path) as f:
	    text = f.read()
	report = json.loads(text[text.index("{"):])
	jobs = report["jobs"]
	if len(jobs) != int(njobs):
	    sys.exit(f"{what}: expected {njobs} jobs, got {len(jobs)}")
	for job in jobs:
	    name = job["jobname"]
	    if job["error"] != 0:
	        sys.exit(f"{what}: job {name} ended with error {job['error']}")
	    if job["read"]["io_bytes"] < int(min_read):
	        sys.exit(f"{what}: job {name} read {job['read']['io_bytes']} bytes")
	    if job["write"]["io_bytes"] < int(min_write):
	        sys.exit(f"{what}: job {name} wrote {job['write']['io_bytes']} bytes")
	    if switch_ms is not None:
	        # fio starts its clock after it was started: start + runtime is
	        # no later than the real end of the write phase.
	        end = start_ms + job["write"]["runtime"]
	        if switch_ms >= end:
	            sys.exit(f"{what}: job {name} stopped writing {switch_ms - end} ms "
	                     "before the switch: the test did not write across it")
	        print(f"{what}: job {name} wrote for {end - switch_ms} ms after the switch")
	EOF
}

# --- images -----------------------------------------------------------------

test_images() {
	local fio_pid fio_start switch_ms rc=0 f alloc_src alloc_dst jobs
	section images

	# The 1 GiB raw image, written in full.
	truncate -s "$IMG_SIZE" "$SRC/disk.raw"
	mapfile -t jobs < <(fill_jobs)
	run fio --filename="$SRC/disk.raw" "${fill_common[@]}" --do_verify=0 "${jobs[@]}" \
		--output="$TESTDIR/fill.out" >/dev/null || fail "fio fill: $(cat "$TESTDIR/fill.out")"
	assert_eq "$IMG_SIZE" "$(stat -c %s "$SRC/disk.raw")" "size of disk.raw"
	assert_le $((IMG_SIZE - MiB)) "$(alloc_bytes "$SRC/disk.raw")" "allocation of disk.raw"

	# A sparse raw image: 1 GiB with 3 MiB and 64 KiB of data.
	truncate -s 1G "$SRC/sparse.raw"
	dd if=/dev/urandom of="$SRC/sparse.raw" bs=1M count=1 conv=notrunc status=none
	dd if=/dev/urandom of="$SRC/sparse.raw" bs=1M count=2 seek=700 conv=notrunc status=none
	dd if=/dev/urandom of="$SRC/sparse.raw" bs=64k count=1 seek=$((16384 - 1)) \
		conv=notrunc status=none

	# A sparse qcow2 image: 4 GiB virtual, a few MiB of data and zeroes.
	run qemu-img create -q -f qcow2 "$SRC/vm.qcow2" 4G
	run qemu-io -f qcow2 -c 'write -P 0x11 0 1M' -c 'write -P 0x22 1G 2M' \
		-c 'write -P 0x33 3G 1M' -c 'write -z 3G 64k' -c 'write -P 0x44 4095M 1M' \
		"$SRC/vm.qcow2" >/dev/null
	run qemu-img convert -f qcow2 -O raw "$SRC/vm.qcow2" "$TESTDIR/vm-before.raw"

	# Small files in a subdirectory, with modes and an xattr.
	mkdir -p "$SRC/conf/keys"
	random_file "$TESTDIR/r" 3000
	base64 "$TESTDIR/r" >"$SRC/conf/vm1.conf"
	printf 'name=vm2\ndisk=vm.qcow2\n' >"$SRC/conf/vm2.conf"
	random_file "$SRC/conf/keys/host.key" 1675
	chmod 600 "$SRC/conf/keys/host.key"
	chmod 700 "$SRC/conf/keys"
	chmod 444 "$SRC/conf/vm2.conf"
	setfattr -n user.origin -v images-test "$SRC/conf/vm1.conf"
	cp -a "$SRC/conf" "$TESTDIR/conf-ref"

	alloc_src=(
		"$(alloc_bytes "$SRC/sparse.raw")"
		"$(alloc_bytes "$SRC/vm.qcow2")"
	)

	mount_mfs "$SRC" "$MNT" -o "target=$DST,speed=$MIG_SPEED,guest_share=0"

	# The writers, from now until after the switch.
	fio_start="$(now_ms)"
	run fio --filename="$MNT/disk.raw" "${writer_common[@]}" --rate=,$W_RATE "${writer_jobs[@]}" \
		--output-format=json --output="$TESTDIR/writers.json" >/dev/null &
	fio_pid=$!
	track_bg "$fio_pid"

	# A reader too, while the copy runs: the qcow2 image as it looks now.
	run qemu-img convert -f qcow2 -O raw "$MNT/vm.qcow2" "$TESTDIR/vm-during.raw"
	[[ "$(journal_state "$SRC")" == migrating ]] ||
		fail "switched before the copy could be watched: slow the migration down"

	wait_switched "$SRC" "$MNT" 120
	switch_ms="$(now_ms)"
	log "switched $((switch_ms - fio_start)) ms after the writers started (stun $(stun_ms "$MNT") ms)"
	pid_alive "$fio_pid" || fail "fio ended before the switch"
	wait "$fio_pid" || rc=$?
	((rc == 0)) || fail "fio writers exited with status $rc:"$'\n'"$(cat "$TESTDIR/writers.json")"
	fio_check "$TESTDIR/writers.json" "fio writers" 2 "$W_SIZE" "$W_SIZE" \
		"$switch_ms" "$fio_start" || fail "fio writers report"

	# The log tells the story in order, and the stun was measured.
	assert_eq $'mirrored\nswitching\nswitched' "$(migration_states "$MNT")" "states logged"
	[[ -n "$(stun_ms "$MNT")" ]] || fail "no stun time in the log"

	# The target holds what the source had outside the writers' ranges
	# (where the source was left behind at the switch).  What the mount
	# reads is compared below, with the whole tree.
	for f in sparse.raw vm.qcow2; do
		assert_file_eq "$SRC/$f" "$DST/$f"
	done
	cmp -s -n "$W1_OFF" "$SRC/disk.raw" "$DST/disk.raw" || fail "disk.raw: F0 differs"
	cmp -s -i $((W1_OFF + W_SIZE)) -n $((W2_OFF - W1_OFF - W_SIZE)) "$SRC/disk.raw" \
		"$DST/disk.raw" || fail "disk.raw: F2 differs"
	cmp -s -i $((W2_OFF + W_SIZE)) "$SRC/disk.raw" "$DST/disk.raw" || fail "disk.raw: F4 differs"
	# Every block the copier carried is at its own offset in the target.
	mapfile -t jobs < <(fill_jobs f0 f2 f4)
	run fio --filename="$DST/disk.raw" "${fill_common[@]}" --do_verify=1 --verify_only \
		"${jobs[@]}" --output-format=json --output="$TESTDIR/fill-verify.json" >/dev/null ||
		fail "fill verify on the target:"$'\n'"$(cat "$TESTDIR/fill-verify.json")"
	fio_check "$TESTDIR/fill-verify.json" "fill verify on the target" 3 $((160 * MiB)) 0 ||
		fail "fill verify report"

	# qcow2: consistent, and the same disk as before and during the copy.
	run qemu-img check -q "$DST/vm.qcow2" || fail "qemu-img check of the target's qcow2"
	run qemu-img compare -q -f qcow2 -F raw "$DST/vm.qcow2" "$TESTDIR/vm-before.raw" ||
		fail "target's qcow2 differs from the image before the migration"
	run qemu-img compare -q -f qcow2 -F raw "$DST/vm.qcow2" "$TESTDIR/vm-during.raw" ||
		fail "target's qcow2 differs from what the mount read during the copy"
	run qemu-img compare -q -f qcow2 -F raw "$MNT/vm.qcow2" "$TESTDIR/vm-before.raw" ||
		fail "the mount's qcow2 after the switch differs from the image before"

	# Sparse stays sparse.
	alloc_dst=(
		"$(alloc_bytes "$DST/sparse.raw")"
		"$(alloc_bytes "$DST/vm.qcow2")"
	)
	log "allocation: sparse.raw ${alloc_src[0]} -> ${alloc_dst[0]}, vm.qcow2 ${alloc_src[1]} -> ${alloc_dst[1]}"
	assert_le "${alloc_dst[0]}" $((alloc_src[0] + 128 * 1024)) "sparse.raw allocation on the target"
	assert_le "${alloc_dst[1]}" $((alloc_src[1] + 128 * 1024)) "vm.qcow2 allocation on the target"
	assert_le "$(alloc_bytes "$DST/disk.raw")" $((IMG_SIZE + MiB)) "disk.raw allocation on the target"

	# Small files: identical, modes and xattrs included; the whole tree too.
	assert_trees_equal "$TESTDIR/conf-ref" "$DST/conf" "conf on the target"
	assert_trees_equal "$DST" "$MNT" "the mount after the switch"
	assert_eq "$(listing_without_journal "$SRC")" "$(tree_listing "$DST")" \
		"names on the target and the source"
	[[ ! -e "$DST/.mirrorfs-journal" ]] || fail "the target kept its journal after the switch"

	umount_mfs "$MNT"

	# What fio wrote, read straight from the target, outside the mount.
	run fio --filename="$DST/disk.raw" "${writer_common[@]}" "${writer_jobs[@]}" --verify_only \
		--output-format=json --output="$TESTDIR/writers-verify.json" >/dev/null ||
		fail "writers' verify on the target:"$'\n'"$(cat "$TESTDIR/writers-verify.json")"
	fio_check "$TESTDIR/writers-verify.json" "writers' verify on the target" 2 $((W_SIZE / 2)) 0 ||
		fail "writers' verify report"
	# The source keeps its files (no delete_source) and says where they went.
	[[ -f "$SRC/disk.raw" ]] || fail "the source lost disk.raw without delete_source"
	assert_contains "$(cat "$SRC/.mirrorfs-journal")" "target=$DST" "source journal"
	section_done
}

# --- restart ----------------------------------------------------------------

# After test_images: a daemon started on the switched source serves the target.
test_restart() {
	local logf rc=0
	SECTION_T0=$SECONDS
	log "--- restart"
	mount_mfs "$SRC" "$MNT"
	logf="$(daemon_log "$MNT")"
	assert_contains "$(cat "$logf")" "was migrated to '$DST'" "restart notice"
	assert_contains "$(cat "$logf")" "serving $DST on" "restart log"

	echo marker >"$MNT/marker"
	[[ "$(cat "$DST/marker" 2>/dev/null)" == marker ]] || fail "marker not in the target"
	[[ ! -e "$SRC/marker" ]] || fail "marker written through the restarted mount reached the source"
	mkdir "$MNT/newdir"
	[[ -d "$DST/newdir" && ! -e "$SRC/newdir" ]] || fail "mkdir after restart not on the target"
	assert_file_eq "$MNT/vm.qcow2" "$DST/vm.qcow2"
	# fio's data, read through the restarted mount, O_DIRECT and buffered.
	run fio --filename="$MNT/disk.raw" "${writer_common[@]}" "${writer_jobs[@]}" --verify_only \
		--output-format=json --output="$TESTDIR/restart-verify.json" >/dev/null || rc=$?
	((rc == 0)) || fail "verify through the restarted mount:"$'\n'"$(cat "$TESTDIR/restart-verify.json")"
	fio_check "$TESTDIR/restart-verify.json" "verify through the restarted mount" 2 \
		$((W_SIZE / 2)) 0 || fail "restart verify report"
	umount_mfs "$MNT"
	section_done
}

# --- holder -----------------------------------------------------------------

declare -A H_PID=() H_FD=() H_LOG=() H_DONE=()

# holder_start NAME FORMAT CACHE IMAGE: a qemu-io that keeps IMAGE open and
# takes its commands from a FIFO, one at a time (holder_do).
holder_start() {
	local name="$1" fmt="$2" cache="$3" img="$4" fifo="$TESTDIR/$1.fifo" fd
	mkfifo "$fifo"
	H_LOG[$name]="$TESTDIR/$name.log"
	# Made now: qemu-io's shell opens it only once the FIFO has a writer.
	: >"${H_LOG[$name]}"
	timeout -k 5 "$CMD_TIMEOUT" qemu-io -f "$fmt" -t "$cache" "$img" \
		<"$fifo" >>"${H_LOG[$name]}" 2>&1 &
	H_PID[$name]=$!
	track_bg "${H_PID[$name]}"
	exec {fd}>"$fifo"
	H_FD[$name]=$fd
	H_DONE[$name]=0
}

# holder_send NAME CMD: send a read or write command.  One at a time:
# qemu-io may leave a second line that came in the same read(2) unread
# until more input arrives.
holder_send() {
	printf '%s\n' "$2" >&"${H_FD[$1]}"
	H_DONE[$1]=$((H_DONE[$1] + 1))
}

# holder_wait NAME: wait until every command sent is done; fail on any
# error, pattern mismatch or if it hangs.
holder_wait() {
	local name="$1" n deadline=$((SECONDS + 30)) logf="${H_LOG[$1]}"
	while :; do
		if grep -qiE 'fail|error|mismatch|verification' "$logf"; then
			fail "qemu-io $name:"$'\n'"$(cat "$logf")"
		fi
		n="$(awk '/(wrote|read) [0-9]+\/[0-9]+ bytes at offset/ {
			split($0, a, /(wrote|read) /); split(a[2], b, " "); split(b[1], c, "/");
			if (c[1] == c[2]) n++ } END { print n + 0 }' "$logf")"
		((n < H_DONE[$name])) || break
		pid_alive "${H_PID[$name]}" || fail "qemu-io $name exited:"$'\n'"$(cat "$logf")"
		((SECONDS < deadline)) ||
			fail "qemu-io $name: $n of ${H_DONE[$name]} commands done after 30s:"$'\n'"$(tail -n 20 "$logf")"
		sleep 0.01
	done
}

holder_do() {
	holder_send "$1" "$2"
	holder_wait "$1"
}

holder_stop() {
	local name="$1" rc=0
	local fd="${H_FD[$name]}"
	printf 'quit\n' >&"$fd"
	exec {fd}>&-
	wait "${H_PID[$name]}" || rc=$?
	((rc == 0)) || fail "qemu-io $name exited with status $rc:"$'\n'"$(cat "${H_LOG[$name]}")"
	! grep -qiE 'fail|error|mismatch|verification' "${H_LOG[$name]}" ||
		fail "qemu-io $name:"$'\n'"$(cat "${H_LOG[$name]}")"
}

# The i-th write of each holder: a pattern of its own, at an offset of its own.
pat() { echo $(((($1 * 37) % 250) + 2)); }
q_off() { echo $(($1 * 2 * MiB + ($1 % 4) * 256 * 1024)); }
r_off() { echo $(($1 * 512 * 1024 + ($1 % 4) * 4096)); }

test_holder() {
	local i j img n_before=-1 after=0 max_before=100 n_after=20 cmds=() out
	section holder

	run qemu-img create -q -f qcow2 "$SRC/vm.qcow2" 256M
	run qemu-io -f qcow2 -c 'write -P 0x01 0 128M' "$SRC/vm.qcow2" >/dev/null
	truncate -s 64M "$SRC/vm.raw"
	run qemu-io -f raw -c 'write -P 0x01 0 64M' "$SRC/vm.raw" >/dev/null
	random_file "$SRC/other.bin" $((32 * MiB))

	# About 224 MiB at 32 MiB/s: several seconds of copying.
	mount_mfs "$SRC" "$MNT" -o "target=$DST,speed=32M"
	holder_start q qcow2 none "$MNT/vm.qcow2"
	holder_start r raw writeback "$MNT/vm.raw"

	i=0
	while :; do
		if ((n_before < 0)) && is_switched "$SRC"; then
			n_before=$i
			log "holders: switched after $i writes each (stun $(stun_ms "$MNT") ms)"
		fi
		((n_before < 0 || after < n_after)) || break
		if ((n_before >= 0)); then
			after=$((after + 1))
		elif ((i >= max_before)); then
			check_not_failed "$MNT"
			sleep 0.1
			continue
		fi
		holder_do q "write -P $(pat "$i") $(q_off "$i") 64k"
		holder_do r "write -P $(pat "$i") $(r_off "$i") 4k"
		i=$((i + 1))
		sleep 0.05
	done
	((n_before >= 10)) || fail "only $n_before writes before the switch: the copy was too quick"
	wait_switched "$SRC" "$MNT" 10

	# Every pattern, read back by the processes that wrote them; and the
	# pre-filled data between them.
	for ((j = 0; j < i; j++)); do
		holder_do q "read -P $(pat "$j") $(q_off "$j") 64k"
		holder_do r "read -P $(pat "$j") $(r_off "$j") 4k"
	done
	holder_do q "read -P 0x01 $((MiB)) 512k"
	holder_do q "read -P 0x01 $((64 * MiB + MiB)) 512k"
	holder_do r "read -P 0x01 $((63 * MiB)) 1M"
	holder_stop q
	holder_stop r
	umount_mfs "$MNT"

	# The target holds every pattern.
	for img in q r; do
		cmds=()
		for ((j = 0; j < i; j++)); do
			if [[ $img == q ]]; then
				cmds+=(-c "read -P $(pat "$j") $(q_off "$j") 64k")
			else
				cmds+=(-c "read -P $(pat "$j") $(r_off "$j") 4k")
			fi
		done
		if [[ $img == q ]]; then
			out="$(run qemu-io -r -f qcow2 "${cmds[@]}" "$DST/vm.qcow2" 2>&1)" || fail "qemu-io on the target's qcow2"
		else
			out="$(run qemu-io -r -f raw "${cmds[@]}" "$DST/vm.raw" 2>&1)" || fail "qemu-io on the target's raw image"
		fi
		! grep -qiE 'fail|error|mismatch|verification' <<<"$out" ||
			fail "patterns missing in the target's image ($img):"$'\n'"$out"
		assert_eq "$i" "$(grep -c '^read .* bytes at offset' <<<"$out")" "reads from the target ($img)"
	done
	run qemu-img check -q "$DST/vm.qcow2" || fail "qemu-img check of the target's qcow2"
	assert_file_eq "$SRC/other.bin" "$DST/other.bin"

	# After the switch the open image wrote to the target only.
	out="$(run qemu-io -r -f raw -c "read -P $(pat $((i - 1))) $(r_off $((i - 1))) 4k" "$SRC/vm.raw" 2>&1)" || true
	assert_contains "$out" "Pattern verification failed" \
		"source image after the switch (the last write must not be there)"
	out="$(run qemu-io -r -f raw -c "read -P $(pat 0) $(r_off 0) 4k" "$SRC/vm.raw" 2>&1)" || true
	[[ "$out" != *"verification failed"* ]] || fail "source image lacks a write from before the switch"
	section_done
}

# --- namespace --------------------------------------------------------------

# ns_ops ROOT: the namespace and metadata changes, applied to the mount
# during the copy and to a reference directory.
ns_ops() {
	local r="$1"
	printf 'new file\n' >"$r/new.txt"
	mkdir "$r/newdir"
	printf 'inner\n' >"$r/newdir/inner.txt"
	mkdir -p "$r/newdir/deep/er"
	printf 'deep\n' >"$r/newdir/deep/er/file"
	mv "$r/old.txt" "$r/renamed.txt"
	mv "$r/dir1" "$r/dir1-renamed"
	mv "$r/big.raw" "$r/big-renamed.raw"
	dd if="$TESTDIR/pattern" of="$r/big-renamed.raw" bs=64k seek=500 conv=notrunc status=none
	mv "$r/newdir/inner.txt" "$r/dir1-renamed/moved-inner.txt"
	rm "$r/delete-me.txt"
	rm -r "$r/deldir"
	ln -s renamed.txt "$r/link-rel"
	ln -s /nonexistent/target "$r/link-dangling"
	ln -s ../renamed.txt "$r/newdir/link-up"
	chmod 600 "$r/conf.txt"
	chmod 700 "$r/newdir"
	chmod 751 "$r/dir1-renamed"
	chmod 2755 "$r/newdir/deep"
	printf 'temp\n' >"$r/tmp.txt"
	rm "$r/tmp.txt"
	mkdir "$r/tmpdir"
	rmdir "$r/tmpdir"
	truncate -s 100 "$r/trunc.txt"
	truncate -s 1M "$r/grow.txt"
	printf 'more\n' >>"$r/append.txt"
	printf 'replacement\n' >"$r/repl-src.txt"
	mv "$r/repl-src.txt" "$r/replaced.txt"
	ln "$r/renamed.txt" "$r/hardlink.txt"
	mkfifo "$r/fifo"
	setfattr -n user.mirrorfs -v migrated "$r/xattr.txt"
	setfattr -x user.remove-me "$r/xattr.txt"
	setfattr -n user.dir -v yes "$r/newdir"
	chown 1234:5678 "$r/owned.txt"
	# Objects removed during the copy free their inode numbers, and new
	# files soon get them again: they are other files all the same.
	for i in 1 2 3 4 5 6 7 8 9 10; do
		mkdir "$r/gone-dir$i"
		rmdir "$r/gone-dir$i"
		printf 'gone %s\n' "$i" >"$r/gone-file$i"
		rm "$r/gone-file$i"
		printf 'born %s\n' "$i" >"$r/born$i.txt"
		mkdir "$r/born-dir$i"
	done
}

test_namespace() {
	local states
	section namespace

	random_file "$SRC/big.raw" $((64 * MiB))
	random_file "$TESTDIR/pattern" $((64 * 1024))
	for f in old.txt delete-me.txt conf.txt trunc.txt append.txt replaced.txt xattr.txt owned.txt grow.txt; do
		random_file "$TESTDIR/r" 4000
		base64 "$TESTDIR/r" >"$SRC/$f"
	done
	mkdir -p "$SRC/dir1/sub" "$SRC/deldir"
	echo a >"$SRC/dir1/a.txt"
	echo b >"$SRC/dir1/sub/b.txt"
	echo x >"$SRC/deldir/x.txt"
	setfattr -n user.remove-me -v 1 "$SRC/xattr.txt"
	setfattr -n user.keep -v 2 "$SRC/xattr.txt"
	# Hard links (old.txt gets a third name during the copy), a symlink and
	# a FIFO from before.
	ln "$SRC/old.txt" "$SRC/old-link.txt"
	ln "$SRC/conf.txt" "$SRC/dir1/sub/conf-link.txt"
	ln -s conf.txt "$SRC/conf-sym"
	mkfifo "$SRC/old-fifo"
	cp -a "$SRC" "$REF"

	# 64 MiB at 16 MiB/s: about 4 s of copying.
	mount_mfs "$SRC" "$MNT" -o "target=$DST,speed=16M"
	ns_ops "$MNT"
	check_not_failed "$MNT"
	states="$(migration_states "$MNT")"
	[[ -z "$states" && "$(journal_state "$SRC")" == migrating ]] ||
		fail "the copy ended before the namespace changes did (states: $states)"
	ns_ops "$REF"

	wait_switched "$SRC" "$MNT" 120
	assert_trees_equal "$REF" "$DST" "target after namespace changes during the copy"
	assert_trees_equal "$DST" "$MNT" "the mount after the switch"
	for f in old.txt dir1 big.raw delete-me.txt deldir tmp.txt tmpdir repl-src.txt newdir/inner.txt \
		gone-dir1 gone-file1 gone-dir10 gone-file10; do
		[[ ! -e "$DST/$f" && ! -L "$DST/$f" ]] || fail "'$f' was removed during the copy but is in the target"
	done
	umount_mfs "$MNT"
	# And the source, authoritative until the switch, had them all too.
	assert_eq "$(tree_listing "$REF")" "$(listing_without_journal "$SRC")" "source after the switch"
	section_done
}

# --- delete_source ----------------------------------------------------------

test_delete_source() {
	local deadline
	section delete
	random_file "$SRC/a.raw" $((16 * MiB))
	mkdir -p "$SRC/dir/empty"
	echo b >"$SRC/dir/b.txt"
	ln -s a.raw "$SRC/link"
	cp -a "$SRC" "$REF"

	mount_mfs "$SRC" "$MNT" -o "target=$DST,delete_source"
	wait_switched "$SRC" "$MNT" 120
	# The source is deleted right after the switch, in the background.
	deadline=$((SECONDS + 20))
	until [[ "$(dir_names "$SRC")" == .mirrorfs-journal ]]; do
		((SECONDS < deadline)) || fail "source still holds: $(dir_names "$SRC" | tr '\n' ' ')"
		sleep 0.1
	done
	assert_trees_equal "$REF" "$DST" "target with delete_source"
	assert_trees_equal "$DST" "$MNT" "the mount after the switch with delete_source"
	echo after >"$MNT/after.txt"
	[[ -f "$DST/after.txt" && ! -e "$SRC/after.txt" ]] || fail "write after delete_source switch"
	umount_mfs "$MNT"
	assert_eq .mirrorfs-journal "$(dir_names "$SRC")" "source after unmount"
	is_switched "$SRC" || fail "the source journal does not say switched"
	section_done
}

# --- switch=manual ----------------------------------------------------------

test_manual() {
	local before logf
	section manual
	random_file "$SRC/m.raw" $((16 * MiB))
	echo notes >"$SRC/notes.txt"
	echo unrelated >"$DST/unrelated.txt"
	before="$(tree_listing "$DST")"
	cp -a "$SRC" "$REF"

	mount_mfs "$SRC" "$MNT" -o "target=$DST,switch=manual"
	wait_state "$MNT" mirrored 120
	sleep 3
	check_not_failed "$MNT"
	assert_eq migrating "$(journal_state "$SRC")" "switch=manual: the source's record of the job"
	assert_eq mirrored "$(migration_states "$MNT")" "switch=manual: states after 3 s"

	# Mirrored: the target has the data, and new writes reach both sides.
	assert_file_eq "$SRC/m.raw" "$DST/m.raw"
	assert_file_eq "$SRC/notes.txt" "$DST/notes.txt"
	random_file "$TESTDIR/w" $((1 * MiB))
	dd if="$TESTDIR/w" of="$MNT/m.raw" bs=1M seek=4 conv=notrunc,fsync status=none
	dd if="$TESTDIR/w" of="$REF/m.raw" bs=1M seek=4 conv=notrunc status=none
	dd if="$TESTDIR/w" of="$MNT/m.raw" bs=1M seek=16 conv=notrunc,fsync status=none
	dd if="$TESTDIR/w" of="$REF/m.raw" bs=1M seek=16 conv=notrunc status=none
	echo new >"$MNT/new.txt"
	echo new >"$REF/new.txt"
	assert_file_eq "$REF/m.raw" "$SRC/m.raw"
	assert_file_eq "$REF/m.raw" "$DST/m.raw"
	assert_file_eq "$REF/new.txt" "$DST/new.txt"

	# Cancel: the target back as it was, the source complete, no record left.
	logf="$(daemon_log "$MNT")"
	"$MIRRORFSCTL" "$MNT" cancel >/dev/null || fail "switch=manual: mirrorfsctl cancel"
	wait_state "$MNT" cancelled 60
	umount_mfs "$MNT"
	[[ ! -e "$SRC/.mirrorfs-journal" ]] || fail "switch=manual: the cancelled job's record stays"
	grep -q ': cancelled' "$logf" || fail "switch=manual: no 'cancelled' in the log:"$'\n'"$(cat "$logf")"
	! grep -q ': switch' "$logf" || fail "switch=manual: switched:"$'\n'"$(cat "$logf")"
	assert_eq "$before" "$(tree_listing "$DST")" "target after cancel"
	assert_eq unrelated "$(cat "$DST/unrelated.txt")" "unrelated file in the target"
	assert_trees_equal "$REF" "$SRC" "source after cancel"
	section_done
}

# --- cancel during the copy -------------------------------------------------

test_cancel() {
	local before logf
	section cancel
	random_file "$SRC/big.raw" $((64 * MiB))
	mkdir "$SRC/dir"
	echo c >"$SRC/dir/c.txt"
	mkdir "$DST/keep"
	echo keep >"$DST/keep.txt"
	before="$(tree_listing "$DST")"
	cp -a "$SRC" "$REF"

	mount_mfs "$SRC" "$MNT" -o "target=$DST,speed=8M"
	logf="$(daemon_log "$MNT")"
	sleep 1
	[[ -e "$DST/big.raw" && -d "$DST/dir" ]] || fail "the migration made nothing in the target"
	[[ -z "$(migration_states "$MNT")" ]] || fail "copy of 64 MiB at 8 MiB/s already over"
	echo during >"$MNT/during.txt"
	echo during >"$REF/during.txt"
	"$MIRRORFSCTL" "$MNT" cancel >/dev/null || fail "mirrorfsctl cancel during the copy"
	wait_state "$MNT" cancelled 60
	umount_mfs "$MNT"
	grep -q ': cancelled' "$logf" || fail "no 'cancelled' in the log:"$'\n'"$(cat "$logf")"
	[[ ! -e "$SRC/.mirrorfs-journal" ]] || fail "the cancelled job's record stays in the source"
	assert_eq "$before" "$(tree_listing "$DST")" "target after cancel during the copy"
	assert_trees_equal "$REF" "$SRC" "source after cancel during the copy"
	section_done
}

# --- overwrite --------------------------------------------------------------

test_overwrite() {
	section overwrite
	random_file "$SRC/img.raw" $((8 * MiB))
	echo conf >"$SRC/vm.conf"
	random_file "$DST/img.raw" $((1 * MiB))
	echo old >"$DST/vm.conf"
	echo unrelated >"$DST/unrelated.txt"
	cp -a "$SRC" "$REF"
	cp -a "$DST/unrelated.txt" "$REF/"

	mount_mfs "$SRC" "$MNT" -o "target=$DST,overwrite"
	wait_switched "$SRC" "$MNT" 120
	assert_trees_equal "$REF" "$DST" "target with overwrite"
	umount_mfs "$MNT"
	section_done
}

test_images
test_restart
test_holder
test_delete_source
test_manual
test_cancel
test_overwrite
test_namespace

! mounts_under "$TESTDIR" || fail "a mirrorfs mount was left under $TESTDIR"
exit 0
