#!/bin/sh
# Builds a Debian unstable (sid) root under target/sid-root with today's
# engines and peers: containerd 2.1, docker.io 28, podman 5.8 (conmon,
# passt), runc 1.3, crun 1.28 and criu 4.2. scripts/in-sid.sh runs them
# from it. The root is cached: it is rebuilt only when missing or when
# this script changed (its checksum is kept in the root).
#     ./scripts/sid-root.sh          build if needed, print the root's path
# The versions it got are in target/sid-root/versions.
#
# The peers also run on the host itself, beside Debian 12's, for the
# comparisons (conformance, validation, benchmark): peers/runc and
# peers/crun are copies that load the root's own libraries (their ELF
# interpreter and rpath point into the root), with no namespace or
# wrapper around them. runc re-executes /proc/self/exe, which stays
# runc itself. peers/criu is CRIU 4.2 the same way (Debian 12's 3.17
# fails `criu check` on 6.x kernels): skiff and runc run it by path
# (`--criu`) on the host, where it sees the host's paths and tools.
set -eu
cd "$(dirname "$0")/.."
. scripts/lib.sh
require_root

root=$PWD/target/sid-root
sum=$(sha256sum scripts/sid-root.sh | cut -d' ' -f1)
if [ "$(cat "$root/.built-by" 2>/dev/null)" = "$sum" ]; then
    echo "$root"
    exit 0
fi

# The engines, the peers, and what the end-to-end suites run inside:
# busybox-static (test images), procps (pgrep), uidmap and rootlesskit
# (the rootless suites).
packages="containerd docker.io docker-cli podman conmon passt runc crun criu \
busybox-static procps ca-certificates uidmap rootlesskit"

apt_install debootstrap patchelf
# A root left by an interrupted build may still have its /proc or /dev
# mounted by debootstrap: never delete below a mount.
for d in "$root" "$root.tmp"; do
    if grep -q " $d/" /proc/self/mounts; then
        die "$d has mounts below it; unmount them first"
    fi
    rm -rf "$d"
done
mkdir -p target
started=$(date +%s)
echo "building the sid root in $root (debootstrap)" >&2
# minbase: only what apt needs; the packages come with their dependencies
# but without recommends (no services, no desktop tools).
debootstrap --variant=minbase sid "$root.tmp" http://deb.debian.org/debian >"$PWD/target/sid-root.log" 2>&1 \
    || die "debootstrap failed: see target/sid-root.log"
# No service may start in the root: its packages are installed, never run
# there as daemons (the suites start private ones).
printf '#!/bin/sh\nexit 101\n' > "$root.tmp/usr/sbin/policy-rc.d"
chmod +x "$root.tmp/usr/sbin/policy-rc.d"
# The install runs chrooted (dpkg needs /proc); in-sid.sh runs the engines
# pivoted, never chrooted.
mount -t proc proc "$root.tmp/proc"
status=0
# shellcheck disable=SC2086
chroot "$root.tmp" sh -c "DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $packages && apt-get clean" \
    >>"$PWD/target/sid-root.log" 2>&1 || status=$?
umount "$root.tmp/proc"
[ $status = 0 ] || die "apt-get install in the sid root failed: see target/sid-root.log"
chroot "$root.tmp" dpkg-query -W -f='${Package} ${Version}\n' \
    containerd docker.io docker-cli podman conmon passt runc crun criu > "$root.tmp/versions"
mkdir "$root.tmp/peers"
for peer in usr/sbin/runc usr/bin/crun usr/sbin/criu; do
    cp "$root.tmp/$peer" "$root.tmp/peers/"
    # The paths the root will have once in place.
    patchelf --set-interpreter "$root/usr/lib64/ld-linux-x86-64.so.2" \
        --force-rpath --set-rpath "$root/usr/lib/x86_64-linux-gnu" "$root.tmp/peers/${peer##*/}"
done
echo "$sum" > "$root.tmp/.built-by"
mv "$root.tmp" "$root"
echo "sid root built in $(($(date +%s) - started)) s:" >&2
sed 's/^/    /' "$root/versions" >&2
echo "$root"
