#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Make the test guest of tests/guest/: a kernel and a small initramfs, from
# Debian packages installed on this machine, nothing downloaded but them.
#
# Usage: make-guest.sh [--install] WORKLOAD [CACHEDIR]
#   WORKLOAD  the static guest-workload binary (the build makes it)
#   CACHEDIR  where the results are kept (default:
#             $MIRRORFS_GUEST_CACHE or /var/tmp/mirrorfs-guest-cache)
#   --install apt-get install the packages first if any is missing:
#             linux-image-cloud-amd64 busybox-static cpio kmod
#
# Prints two lines, KERNEL=PATH and INITRD=PATH.  Exits 77 when a package
# is missing (and --install was not given or could not install it), 1 on
# any other error.
#
# The kernel is the newest Debian kernel installed (a "cloud" flavour if
# there is one: it is the smaller), copied; the initramfs holds busybox
# (static), guest-workload, /init (the file "init" beside this script) and
# the kernel's virtio modules (virtio_pci, virtio_blk and what they
# depend on, listed in /etc/modules in the order to load them).  Both are
# kept under CACHEDIR/KERNELVERSION-HASH, HASH being that of every input,
# so that a run with the same kernel, busybox, workload and init finds them
# made; entries unused for two weeks are removed.
# Set MIRRORFS_GUEST_KERNEL to a version (as in /lib/modules) to choose.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
packages=(linux-image-cloud-amd64 busybox-static cpio kmod)
modules=(virtio_pci virtio_blk)

msg() { printf 'make-guest: %s\n' "$*" >&2; }
missing() {
	msg "$*"
	msg "install the packages with: apt-get install --no-install-recommends ${packages[*]}"
	exit 77
}

install=0
if [[ "${1:-}" == --install ]]; then
	install=1
	shift
fi
[[ $# -ge 1 && $# -le 2 ]] || { msg "usage: make-guest.sh [--install] WORKLOAD [CACHEDIR]"; exit 1; }
workload="$1"
cache="${2:-${MIRRORFS_GUEST_CACHE:-/var/tmp/mirrorfs-guest-cache}}"
[[ -x "$workload" ]] || { msg "'$workload' is not an executable"; exit 1; }

# pick_kernel: the version of the kernel to boot, or nothing.
pick_kernel() {
	local v best='' best_cloud=''
	if [[ -n "${MIRRORFS_GUEST_KERNEL:-}" ]]; then
		echo "$MIRRORFS_GUEST_KERNEL"
		return
	fi
	for v in $(find /lib/modules -mindepth 1 -maxdepth 1 -printf '%f\n' 2>/dev/null | sort -V); do
		[[ -r "/boot/vmlinuz-$v" && -f "/lib/modules/$v/modules.dep" ]] || continue
		best="$v"
		[[ "$v" != *cloud* ]] || best_cloud="$v"
	done
	echo "${best_cloud:-$best}"
}

busybox_bin() {
	local b
	for b in /bin/busybox /usr/bin/busybox; do
		# Only a static one runs in an initramfs without a libc.
		if [[ -x "$b" ]] && ! LC_ALL=C ldd "$b" >/dev/null 2>&1; then
			echo "$b"
			return
		fi
	done
}

have_all() {
	[[ -n "$(pick_kernel)" && -n "$(busybox_bin)" ]] &&
		command -v cpio >/dev/null && command -v modinfo >/dev/null
}

if ! have_all && ((install)); then
	if [[ "$(id -u)" != 0 ]] || ! command -v apt-get >/dev/null; then
		missing "packages are missing and apt-get cannot install them here"
	fi
	msg "installing ${packages[*]} (once)"
	if ! { apt-get update -q && DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -q --no-install-recommends "${packages[@]}"; } >&2; then
		missing "apt-get install failed"
	fi
fi
kver="$(pick_kernel)"
[[ -n "$kver" ]] || missing "no kernel in /boot with its modules in /lib/modules"
[[ -r "/boot/vmlinuz-$kver" ]] || missing "no /boot/vmlinuz-$kver"
busybox="$(busybox_bin)"
[[ -n "$busybox" ]] || missing "no static busybox (package busybox-static)"
command -v cpio >/dev/null || missing "no cpio"
command -v modinfo >/dev/null || missing "no modinfo (package kmod)"

# The modules in load order: each after what it depends on.
declare -A seen=()
order=()
add_module() {
	local m="$1" dep deps
	[[ -z "${seen[$m]:-}" ]] || return 0
	seen[$m]=1
	# Built into the kernel: nothing to load.
	if grep -q "/$m.ko\$" "/lib/modules/$kver/modules.builtin" 2>/dev/null; then
		return 0
	fi
	deps="$(modinfo -k "$kver" -F depends "$m")" || { msg "no module $m in kernel $kver"; exit 1; }
	for dep in ${deps//,/ }; do
		add_module "$dep"
	done
	order+=("$m")
}
for m in "${modules[@]}"; do
	add_module "$m"
done
module_files=()
for m in "${order[@]}"; do
	module_files+=("$(modinfo -k "$kver" -n "$m")")
done

hash="$(cat "/boot/vmlinuz-$kver" "${module_files[@]}" "$busybox" "$workload" \
	"$here/init" "${BASH_SOURCE[0]}" | sha256sum | cut -c1-16)"
dir="$cache/$kver-$hash"
if [[ -f "$dir/initramfs.gz" && -f "$dir/vmlinuz" ]]; then
	touch "$dir" # in use: not pruned below
	printf 'KERNEL=%s\nINITRD=%s\n' "$dir/vmlinuz" "$dir/initramfs.gz"
	exit 0
fi

mkdir -p "$cache"
tmp="$(mktemp -d "$cache/.new.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
root="$tmp/root"
mkdir -p "$root"/{bin,dev,etc,lib/modules,proc,sys,tmp}
cp "$busybox" "$root/bin/busybox"
cp "$workload" "$root/bin/guest-workload"
strip "$root/bin/guest-workload" 2>/dev/null || true
install -m 0755 "$here/init" "$root/init"
for i in "${!order[@]}"; do
	f="${module_files[$i]}"
	case "$f" in
	*.ko.xz) xz -dc "$f" ;;
	*.ko.zst) zstd -qdc "$f" ;;
	*.ko.gz) gzip -dc "$f" ;;
	*.ko) cat "$f" ;;
	*) msg "unknown module file $f"; exit 1 ;;
	esac >"$root/lib/modules/${order[$i]}.ko"
done
printf '%s\n' "${order[@]}" >"$root/etc/modules"
# The kernel's own initramfs has /dev/console too; one more costs nothing.
mknod -m 0600 "$root/dev/console" c 5 1 2>/dev/null || true
(cd "$root" && find . -mindepth 1 | LC_ALL=C sort |
	cpio --quiet -o -H newc -R 0:0) | gzip -9n >"$tmp/initramfs.gz"
cp "/boot/vmlinuz-$kver" "$tmp/vmlinuz"
rm -rf "$root"
# Atomic: a concurrent run finds it whole or not at all.
chmod 0755 "$tmp"
mv -T "$tmp" "$dir" 2>/dev/null || rm -rf "$tmp"
trap - EXIT
# Guests of other kernels, builds or versions of the workload, unused for
# two weeks, go.
find "$cache" -mindepth 1 -maxdepth 1 -type d -mtime +14 -exec rm -rf {} + 2>/dev/null || true
msg "made $dir (kernel $kver, modules: ${order[*]})"
printf 'KERNEL=%s\nINITRD=%s\n' "$dir/vmlinuz" "$dir/initramfs.gz"
