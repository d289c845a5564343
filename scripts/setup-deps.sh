#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Install what mirrorfs needs to build, run its tests and its examples, on
# Debian 12 (bookworm).  Does nothing when everything is already there, so
# it is safe to run again.  Uses sudo when not run as root.
#
# Usage: scripts/setup-deps.sh [--list]
#   --list   print the package names, one a line, and install nothing
set -euo pipefail

packages=(
	# build
	gcc libc6-dev meson ninja-build pkg-config
	libfuse3-dev libglib2.0-dev libjson-glib-dev liburing-dev
	python3-docutils # rst2man, for the man pages
	# run
	fuse3
	# tests and examples
	check fio qemu-utils qemu-system-x86 attr strace
	# test-reflink: a loop XFS, whose files share blocks
	xfsprogs
	# test-gluster, test-sshfs: a GlusterFS volume on this machine, and
	# sshfs from a private sshd on loopback, as the target
	glusterfs-server glusterfs-client sshfs openssh-server
	# the QEMU guest tests (tests/guest/): the guest's kernel and busybox,
	# and cpio for its initramfs
	linux-image-cloud-amd64 busybox-static cpio
	# fuzzing (tests/fuzz/run-fuzz.sh): clang and its libFuzzer runtime
	clang libclang-rt-14-dev
)

if [ "${1-}" = --list ]; then
	printf '%s\n' "${packages[@]}"
	exit 0
fi

if ! command -v dpkg-query >/dev/null || ! command -v apt-get >/dev/null; then
	echo "setup-deps: this script knows Debian and its derivatives only; install" >&2
	echo "the equivalents of these packages by hand: ${packages[*]}" >&2
	exit 1
fi

missing=()
for p in "${packages[@]}"; do
	status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
	[ "$status" = installed ] || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
	echo "setup-deps: all ${#packages[@]} packages already installed"
	exit 0
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then
	if ! command -v sudo >/dev/null; then
		echo "setup-deps: not root and no sudo; as root, run:" >&2
		echo "  apt-get install ${missing[*]}" >&2
		exit 1
	fi
	sudo=(sudo)
fi

echo "setup-deps: installing ${missing[*]}"
"${sudo[@]}" apt-get update
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
	apt-get install -y --no-install-recommends "${missing[@]}"
