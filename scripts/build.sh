#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Configure (or reconfigure) a meson build directory and build it.  Meson
# refuses "setup" on a directory it has configured already and
# "setup --reconfigure" on one it has not; this does whichever applies, so
# it can be run again and again.  A reconfigure also picks up tools
# installed since the last one (rst2man, for instance).
#
# Usage: scripts/build.sh [BUILDDIR [MESON-OPTION...]]
#   BUILDDIR defaults to ./build; options such as -Dwerror=true are passed
#   to meson setup and, as meson does, kept for later builds.
set -euo pipefail

srcdir=$(cd "$(dirname "$0")/.." && pwd)
builddir=${1:-build}
if [ $# -gt 0 ]; then shift; fi

if [ -e "$builddir/meson-private/coredata.dat" ]; then
	meson setup --reconfigure "$@" "$builddir" "$srcdir"
else
	meson setup "$@" "$builddir" "$srcdir"
fi
ninja -C "$builddir"
