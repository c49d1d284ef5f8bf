#!/bin/sh
# Runs a command inside a throw-away qemu guest that is a real systemd host:
# systemd as PID 1 on pure cgroup v2, with D-Bus and Debian sid's engines
# (containerd, Docker, Podman + conmon, runc, crun). This host's PID 1 is
# not systemd and its cgroups are hybrid: the systemd cgroup driver can
# only be proven in such a guest.
#
#     ./scripts/systemd-guest.sh COMMAND [ARG...]
#     ./scripts/systemd-guest.sh --prepare     build what the guest needs
#
# The workspace is shared into the guest at the same path (read-only), so
# static binaries built on the host (skiff, test executables) run there as
# they are. The command runs as a service once the system is up
# (`systemctl is-system-running --wait`), from the workspace, with
# SKIFF_ENGINES=sid; its output is printed and its exit status returned.
#
# The guest: the kernel of scripts/guest-kernel.sh on qemu's microvm machine
# under TCG (no usable KVM here), an initramfs that mounts the root disk and
# the shares and hands over to systemd, and a root disk made from a copy of
# the Debian sid root (scripts/sid-root.sh, debootstrap) with systemd-sysv
# and dbus added: an ext4 image, opened with snapshot=on so that every boot
# starts from the same disk and writes nothing back. The root image and the
# initramfs are cached in target/systemd-guest, rebuilt when missing or
# when the part of this script that builds them (or the sid root) changed.
# A boot takes about 40 s under TCG here (17 s kernel, 23 s userspace).
set -eu
cd "$(dirname "$0")/.."
. scripts/lib.sh
require_root
[ $# -ge 1 ] || die "usage: $0 COMMAND [ARG...] | --prepare"

workspace=$PWD
cache="$workspace/target/systemd-guest"
mkdir -p "$cache"
apt_install qemu-system-x86 busybox-static cpio e2fsprogs

./scripts/guest-kernel.sh
kernel="$workspace/target/guest-kernel"

# --- the root disk ----------------------------------------------------------
sid=$(./scripts/sid-root.sh)
# Rebuilt when this section of the script or the sid root changed.
sum=$( (sed -n '/^# --- the root disk/,/^# --- initramfs/p' scripts/systemd-guest.sh; cat "$sid/.built-by") \
    | sha256sum | cut -d' ' -f1)
if [ "$(cat "$cache/root.built-by" 2>/dev/null)" != "$sum" ] || [ ! -s "$cache/root.img" ]; then
    root="$cache/root"
    # A root left by an interrupted build may still have /proc mounted:
    # never delete below a mount.
    if grep -q " $root/" /proc/self/mounts; then
        die "$root has mounts below it; unmount them first"
    fi
    rm -rf "$root" "$cache/root.img" "$cache/root.built-by"
    started=$(date +%s)
    echo "systemd-guest: building the root disk from $sid" >&2
    cp -a "$sid" "$root"
    # What sid-root.sh adds for its own use (its peers, its stamp).
    rm -rf "$root/peers" "$root/versions" "$root/.built-by"
    # systemd as init, and the system bus runc, Podman and Docker reach
    # systemd through. The package lists of the sid root may be older than
    # the mirror: read them again, taking a Release file past its
    # Valid-Until (this machine's clock may run ahead of the mirror's).
    # Services stay stopped during the install (the sid root's policy-rc.d).
    mount -t proc proc "$root/proc"
    status=0
    chroot "$root" sh -c "apt-get update -q -o Acquire::Check-Valid-Until=false && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
        --no-install-recommends systemd-sysv dbus && apt-get clean && rm -rf /var/lib/apt/lists/*" \
        >"$cache/root.log" 2>&1 || status=$?
    umount "$root/proc"
    [ $status = 0 ] || die "apt-get install in the guest root failed: see $cache/root.log"
    rm -f "$root/usr/sbin/policy-rc.d"
    # A fixed machine id: no first-boot units, the same host every boot.
    echo 5ce1f0c0a1b2c3d4e5f60718293a4b5c > "$root/etc/machine-id"
    echo skiff-systemd-guest > "$root/etc/hostname"
    echo '# / is mounted by the initramfs; nothing else.' > "$root/etc/fstab"
    mkdir -p "$root/etc/systemd/journald.conf.d" "$root/skiff-job"
    printf '[Journal]\nStorage=volatile\n' > "$root/etc/systemd/journald.conf.d/skiff.conf"
    # What would slow the boot under TCG or cannot work here: logins,
    # timers, first-boot and update checks, mounts nobody uses, /tmp on
    # tmpfs (the engines' storage lives under /tmp: keep it on the disk,
    # out of the guest's memory). The engines' own services stay off too:
    # the suites start private daemons.
    rm -f "$root"/etc/systemd/system/timers.target.wants/* \
        "$root"/etc/systemd/system/getty.target.wants/* \
        "$root"/etc/systemd/system/default.target.wants/* \
        "$root"/etc/systemd/system/sockets.target.wants/docker.socket \
        "$root"/etc/systemd/system/sockets.target.wants/netavark-dhcp-proxy.socket \
        "$root"/etc/systemd/system/multi-user.target.wants/containerd.service \
        "$root"/etc/systemd/system/multi-user.target.wants/docker.service
    for unit in getty.target serial-getty@ttyS0.service console-getty.service systemd-logind.service \
        systemd-pstore.service ldconfig.service systemd-hwdb-update.service systemd-update-done.service \
        systemd-firstboot.service systemd-machine-id-commit.service systemd-random-seed.service \
        systemd-update-utmp.service systemd-update-utmp-runlevel.service e2scrub_reap.service \
        tmp.mount sys-kernel-debug.mount sys-kernel-tracing.mount sys-kernel-config.mount \
        sys-fs-fuse-connections.mount dev-hugepages.mount proc-sys-fs-binfmt_misc.automount \
        systemd-binfmt.service systemd-modules-load.service kmod-static-nodes.service; do
        ln -sf /dev/null "$root/etc/systemd/system/$unit"
    done
    # The job: a service started once multi-user.target is reached.
    cat > "$root/etc/systemd/system/skiff-job.service" <<'EOF'
[Unit]
Description=The command of scripts/systemd-guest.sh
After=multi-user.target

[Service]
Type=simple
ExecStart=/usr/local/sbin/skiff-job
EOF
    ln -sf ../skiff-job.service "$root/etc/systemd/system/multi-user.target.wants/skiff-job.service"
    cat > "$root/usr/local/sbin/skiff-job" <<'EOF'
#!/bin/sh
# Runs the job the initramfs mounted at /skiff-job once systemd is up, and
# powers off. The state the system reached and how long it took are kept
# beside the output.
job=/skiff-job
systemctl is-system-running --wait > "$job/system-state" 2>&1
systemd-analyze time > "$job/boot-time" 2>&1
systemctl list-units --failed --plain --no-legend > "$job/failed-units" 2>&1
sh "$job/cmd.sh" > "$job/output" 2>&1
echo $? > "$job/status"
sync
systemctl poweroff --force --force
EOF
    chmod +x "$root/usr/local/sbin/skiff-job"
    # ext4 without a journal (the disk is thrown away after each boot) and
    # without metadata checksums (crc32c would be one more module).
    mkfs.ext4 -q -F -L skiff-root -O ^has_journal,^metadata_csum -d "$root" "$cache/root.img" 4G \
        || die "mkfs.ext4 of the guest root failed"
    rm -rf "$root"
    echo "$sum" > "$cache/root.built-by"
    echo "systemd-guest: root disk built in $(($(date +%s) - started)) s" >&2
fi

# --- initramfs --------------------------------------------------------------
if [ ! -s "$cache/initramfs.cpio" ] || [ scripts/systemd-guest.sh -nt "$cache/initramfs.cpio" ] \
    || [ "$kernel/.built-by" -nt "$cache/initramfs.cpio" ]; then
    initrd="$cache/initrd"
    rm -rf "$initrd" && mkdir -p "$initrd/bin" "$initrd/modules" "$initrd/newroot"
    cp /bin/busybox "$initrd/bin/busybox"
    cp "$kernel"/modules/* "$initrd/modules/"
    cp "$kernel/modules.order" "$initrd/modules.order"
    cat > "$initrd/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mkdir -p /proc /sys /dev
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in $(cat /modules.order); do insmod "/modules/$m"; done
# virtio-blk probes asynchronously: the disk may appear after insmod.
tries=0
while [ ! -b /dev/vda ] && [ $tries -lt 100 ]; do sleep 0.1; tries=$((tries + 1)); done
mount -t ext4 -o rw /dev/vda /newroot || { echo "initramfs: no root disk"; dmesg | tail -20; poweroff -f; }
# The workspace is read-only and does not change while the guest runs:
# cache=loose keeps its inodes and pages (an exec of a 40 MB debug binary
# over uncached 9p takes seconds under TCG). The job share is written by
# the guest and read by the host: uncached.
workspace=$(sed -n 's/.*skiff\.workspace=\([^ ]*\).*/\1/p' /proc/cmdline)
mkdir -p "/newroot$workspace"
opts=trans=virtio,version=9p2000.L,msize=262144
mount -t 9p -o "$opts,cache=loose" workspace "/newroot$workspace"
mount -t 9p -o "$opts,cache=none" job /newroot/skiff-job
umount /proc /sys /dev
exec switch_root /newroot /sbin/init
EOF
    chmod +x "$initrd/init"
    (cd "$initrd" && find . | cpio -o -H newc --quiet > "$cache/initramfs.cpio")
    rm -rf "$initrd"
fi
[ "$1" = --prepare ] && exit 0

# --- run --------------------------------------------------------------------
job=$(mktemp -d "$cache/job.XXXXXX")
trap 'rm -rf "$job"' EXIT
guest_job "$job" "SKIFF_ENGINES=sid SKIFF_TEST_DIR=/tmp/skiff-tests" "$@"

khz=$(guest_tsc_khz)
echo "systemd-guest: booting (TCG, systemd, cgroup v2 only)"
started=$(date +%s)
timeout 3600 qemu-system-x86_64 \
    -machine microvm,acpi=on,pit=off,pic=off,rtc=off -accel tcg,thread=multi -cpu max -smp 2 -m 2048 \
    -nographic -no-reboot -nodefaults -serial stdio \
    -kernel "$kernel/vmlinux" -initrd "$cache/initramfs.cpio" \
    -append "console=ttyS0 quiet loglevel=3 panic=-1 cgroup_no_v1=all systemd.unified_cgroup_hierarchy=1 \
systemd.show_status=error tsc_early_khz=$khz tsc=reliable skiff.workspace=$workspace" \
    -drive "id=root,file=$cache/root.img,format=raw,if=none,snapshot=on" \
    -device virtio-blk-device,drive=root \
    -fsdev "local,id=ws,path=$workspace,security_model=passthrough,readonly=on" \
    -device virtio-9p-device,fsdev=ws,mount_tag=workspace \
    -fsdev "local,id=jobfs,path=$job,security_model=passthrough" \
    -device virtio-9p-device,fsdev=jobfs,mount_tag=job >"$job/console" 2>&1 || true
echo "systemd-guest: $(cat "$job/system-state" 2>/dev/null || echo 'never came up'), \
$(sed -n 's/^Startup finished in /startup /p' "$job/boot-time" 2>/dev/null), $(($(date +%s) - started)) s in all"
if [ -s "$job/failed-units" ]; then
    echo "systemd-guest: failed units:" && sed 's/^/    /' "$job/failed-units"
fi
guest_result "$job"
