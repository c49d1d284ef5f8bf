#!/bin/sh
# Runs a command inside a throw-away qemu guest whose only cgroup hierarchy
# is cgroup v2 (this host is hybrid; pure v2 only exists in a guest).
#
#     ./scripts/v2-guest.sh COMMAND [ARG...]
#
# The workspace is shared into the guest at the same path (read-only), so
# static binaries built on the host (skiff, test executables) run there as
# they are. The command's output is printed and its exit status returned.
#
# The guest: Debian's linux-image kernel (downloaded, not installed) booted
# as an uncompressed vmlinux on qemu's microvm machine under TCG, an
# initramfs made from busybox-static that moves to a tmpfs root (so
# containers can pivot_root), `cgroup_no_v1=all`, and virtio-9p shares.
# The kernel and modules are cached in target/guest-kernel, the initramfs
# in target/v2-guest.
set -eu
cd "$(dirname "$0")/.."
. scripts/lib.sh
require_root
[ $# -ge 1 ] || die "usage: $0 COMMAND [ARG...]"

workspace=$PWD
cache="$workspace/target/v2-guest"
mkdir -p "$cache"
apt_install qemu-system-x86 busybox-static cpio

# --- kernel and modules (scripts/guest-kernel.sh) -------------------------
./scripts/guest-kernel.sh
kernel="$workspace/target/guest-kernel"

# --- initramfs ------------------------------------------------------------
if [ ! -s "$cache/initramfs.cpio" ] || [ scripts/v2-guest.sh -nt "$cache/initramfs.cpio" ] \
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
# The initramfs cannot be pivoted away from; containers need a real root.
mount -t tmpfs -o size=1536m tmpfs /newroot
mkdir -p /newroot/bin /newroot/proc /newroot/sys /newroot/dev /newroot/tmp /newroot/run /newroot/etc
cp /bin/busybox /newroot/bin/busybox
cp /stage2 /newroot/stage2
printf 'root:x:0:0:root:/root:/bin/sh\n' > /newroot/etc/passwd
exec switch_root /newroot /stage2
EOF
    cat > "$initrd/stage2" <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
# The workspace is read-only and does not change while the guest runs:
# cache=loose keeps its inodes and pages. Without it every exec of a
# binary (skiff's debug build is 40 MB) pages it in again over 9p, which
# under TCG took up to 20 s for one `skiff run`. The job share is written
# by the guest and read by the host, so it stays uncached.
for share in workspace:cache=loose job:cache=none; do
    tag=${share%%:*}
    dir=$(sed -n "s/.*skiff.$tag=\([^ ]*\).*/\1/p" /proc/cmdline)
    mkdir -p "$dir"
    mount -t 9p -o "trans=virtio,version=9p2000.L,msize=262144,${share#*:}" "$tag" "$dir"
done
job=$(sed -n 's/.*skiff.job=\([^ ]*\).*/\1/p' /proc/cmdline)
cd "$job"
sh "$job/cmd.sh" > "$job/output" 2>&1
echo $? > "$job/status"
sync
poweroff -f
EOF
    chmod +x "$initrd/init" "$initrd/stage2"
    (cd "$initrd" && find . | cpio -o -H newc --quiet > "$cache/initramfs.cpio")
    rm -rf "$initrd"
fi

# --- run ------------------------------------------------------------------
job=$(mktemp -d "$cache/job.XXXXXX")
trap 'rm -rf "$job"' EXIT
guest_job "$job" "PATH=/bin SKIFF_TEST_DIR=/tmp/skiff-tests" "$@"

khz=$(guest_tsc_khz)
echo "v2-guest: booting (TCG, cgroup_no_v1=all)"
timeout 3600 qemu-system-x86_64 \
    -machine microvm,acpi=on,pit=off,pic=off,rtc=off -accel tcg,thread=multi -cpu max -smp 2 -m 2048 \
    -nographic -no-reboot -nodefaults -serial stdio \
    -kernel "$kernel/vmlinux" -initrd "$cache/initramfs.cpio" \
    -append "console=ttyS0 quiet loglevel=3 panic=-1 cgroup_no_v1=all tsc_early_khz=$khz tsc=reliable skiff.workspace=$workspace skiff.job=$job" \
    -fsdev "local,id=ws,path=$workspace,security_model=passthrough,readonly=on" \
    -device virtio-9p-device,fsdev=ws,mount_tag=workspace \
    -fsdev "local,id=jobfs,path=$job,security_model=passthrough" \
    -device virtio-9p-device,fsdev=jobfs,mount_tag=job >"$job/console" 2>&1 || true
guest_result "$job"
