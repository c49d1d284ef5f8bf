#!/bin/sh
# Fetches the kernel the qemu guests boot (scripts/v2-guest.sh,
# scripts/systemd-guest.sh) and the modules they load from their initramfs,
# into target/guest-kernel:
#     vmlinux        Debian's linux-image kernel (downloaded, not installed),
#                    uncompressed: the microvm machine boots it by its PVH entry
#     modules/*.ko   the modules below, with their dependencies
#     modules.order  their file names, dependencies first
#     criu-modules/*.ko, criu-modules.order  what CRIU needs beyond them
# Cached: fetched again only when missing or when this script changed.
set -eu
cd "$(dirname "$0")/.."
. scripts/lib.sh

cache=$PWD/target/guest-kernel
sum=$(sha256sum scripts/guest-kernel.sh | cut -d' ' -f1)
[ "$(cat "$cache/.built-by" 2>/dev/null)" = "$sum" ] && [ -s "$cache/vmlinux" ] && exit 0
apt_install python3
pkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
[ -n "$pkg" ] || die "no linux-image package found in apt"
echo "guest-kernel: fetching $pkg"
rm -rf "$cache" && mkdir -p "$cache/kernel"
(cd "$cache/kernel" && apt-get download -q "$pkg" >/dev/null 2>&1 && dpkg -x ./*.deb x)
python3 - "$cache" <<'PY'
import glob, lzma, os, shutil, sys
cache = sys.argv[1]
root = os.path.join(cache, "kernel", "x")
# vmlinuz is a bzImage whose payload is xz: the uncompressed vmlinux (an
# ELF with a PVH entry) is what the microvm machine boots.
image = open(glob.glob(os.path.join(root, "boot", "vmlinuz-*"))[0], "rb").read()
start = image.find(b"\xfd7zXZ\x00")
if start < 0:
    sys.exit("vmlinuz: no xz payload")
vmlinux = lzma.LZMADecompressor().decompress(image[start:])
open(os.path.join(cache, "vmlinux"), "wb").write(vmlinux)
# virtio-mmio and 9p (the shares), virtio-blk, ext4 and the crc32c it
# loads at every mount (the systemd guest's root disk), loop (block devices for the io throttling tests)
# and overlay (skiff runs from a read-only overlay of its own binary; the
# engines' snapshots), dependencies first (the package has no
# modules.dep: read each module's own "depends=" from .modinfo).
moddir = glob.glob(os.path.join(root, "lib", "modules", "*"))[0]
def name(path):
    return os.path.basename(path).split(".ko")[0].replace("-", "_")
by_name = {}
for dirpath, _, files in os.walk(moddir):
    for f in files:
        if ".ko" in f:
            by_name[name(f)] = os.path.join(dirpath, f)
def depends(path):
    data = open(path, "rb").read()
    i = data.find(b"\0depends=")
    if i < 0:
        return []
    value = data[i + 9:data.index(b"\0", i + 1)].decode()
    return [d.replace("-", "_") for d in value.split(",") if d]
order = []
def visit(mod):
    for d in depends(mod):
        visit(by_name[d])
    if mod not in order:
        order.append(mod)
for wanted in ["virtio_mmio", "9pnet_virtio", "9p", "loop", "overlay", "virtio_blk", "crc32c_generic", "ext4"]:
    visit(by_name[wanted])
def save(mods, subdir, listing):
    out = os.path.join(cache, subdir)
    os.makedirs(out)
    with open(os.path.join(cache, listing), "w") as f:
        for mod in mods:
            shutil.copy(os.path.join(moddir, mod), out)
            f.write(os.path.basename(mod) + "\n")
save(order, "modules", "modules.order")
# What CRIU's feature detection opens (scripts/v2-criu.sh loads them; no
# guest boots with them): nftables, the socket diag modules, tun, veth.
boot = list(order)
for wanted in ["nf_tables", "unix_diag", "inet_diag", "tcp_diag", "udp_diag", "raw_diag",
               "netlink_diag", "af_packet_diag", "tun", "veth"]:
    visit(by_name[wanted])
save([m for m in order if m not in boot], "criu-modules", "criu-modules.order")
PY
rm -rf "$cache/kernel"
echo "$sum" > "$cache/.built-by"
