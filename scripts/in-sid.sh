#!/bin/sh
# Runs a command from the Debian sid root (scripts/sid-root.sh), pivoted
# into it (pivot_root, not chroot: CRIU refuses a chroot) inside a private
# mount namespace:
#     ./scripts/in-sid.sh CMD [ARG...]
# The namespace gets a fresh /proc, the host's /sys (with its cgroup
# mounts) and /dev, a tmpfs on /run and /tmp, and this workspace at the
# same path, so binaries built here run there by their usual paths. Every
# mount is made in the private namespace and goes with it: the host's
# mount table is untouched. Engines started inside share the host's pid,
# network and cgroup trees, as a daemon on the host would.
set -eu
cd "$(dirname "$0")/.."
. scripts/lib.sh
require_root
[ $# -gt 0 ] || die "usage: $0 CMD [ARG...]"
root=$(./scripts/sid-root.sh)
workspace=$PWD
mkdir -p "$root$workspace"

# The setup runs in the new namespace; "$@" is passed through untouched.
# shellcheck disable=SC2016
exec unshare --mount --propagation private sh -euc '
root=$1 workspace=$2
shift 2
# pivot_root wants the new root to be a mount point.
mount --bind "$root" "$root"
mount -t proc proc "$root/proc"
mount --rbind /sys "$root/sys"
mount --rbind /dev "$root/dev"
mount -t tmpfs -o mode=755 tmpfs "$root/run"
mount -t tmpfs -o mode=1777 tmpfs "$root/tmp"
mount --bind "$workspace" "$root$workspace"
cd "$root"
mkdir -p .old-root
pivot_root . .old-root
# The host root stays reachable from nowhere in the namespace.
umount -l /.old-root
rmdir /.old-root
cd "$workspace"
exec env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HOME=/root TERM="${TERM:-dumb}" SKIFF_ENGINES=sid \
    ${SKIFF_REQUIRE_ALL:+SKIFF_REQUIRE_ALL=1} ${SKIFF_BIN:+SKIFF_BIN=$SKIFF_BIN} \
    ${RUST_BACKTRACE:+RUST_BACKTRACE=$RUST_BACKTRACE} "$@"
' in-sid "$root" "$workspace" "$@"
