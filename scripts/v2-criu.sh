#!/bin/sh
# Checkpoint and restore of a paused container on pure cgroup v2, in the
# qemu guest (scripts/v2-guest.sh): CRIU 4.2.1 and runc 1.3.6 from the sid
# root (scripts/sid-root.sh), skiff's debug build, the same bundle.
#     ./scripts/v2-criu.sh
# The story, for skiff and then runc: run a counter, pause it, checkpoint
# with --leave-running (CRIU freezes through cgroup.freeze and puts the
# frozen state back), check it is still paused and did not count, restore
# the image into a new id (running, counting on), then checkpoint the
# paused container for good (it is gone). Then a pre-dump chain (the
# guest's kernel tracks soft-dirty pages; this host's does not): pre-dump
# a counter, dump it on top with --parent-path, check that the dump
# wrote only what changed, and restore it into a new id.
#
# What the guest lacks for CRIU is added for this run only: the modules
# its feature detection opens (target/guest-kernel/criu-modules), lo up,
# a devpts with /dev/ptmx, GNU tar (CRIU dumps tmpfs contents with it:
# the sid root's, through its loader), and no network lock (no iptables;
# /etc/criu/runc.conf, read by runc and skiff alike). CRIU runs pivoted
# into a tmpfs root (it refuses switch_root's chroot). The bundle has no
# network namespace of its own: CRIU 4.2.1's dump of a new netns's links
# fails on the guest's 6.1 kernel ("-22 reported by netlink"), for runc
# as for skiff, which is why runtime/tests/checkpoint.rs runs on the host.
set -eu
cd "$(dirname "$0")/.."
. scripts/lib.sh
require_root
ensure_rust
./scripts/sid-root.sh >/dev/null
./scripts/guest-kernel.sh
cargo build -q -p skiff
ws=$PWD
skiff=$ws/target/x86_64-unknown-linux-gnu/debug/skiff
[ -x "$skiff" ] || die "no skiff debug build at $skiff"

# The bundle's config: runc's default with a counter, no network
# namespace, a writable rootfs the guest makes at /tmp/b/rootfs.
mkdir -p target/v2-criu
rm -f target/v2-criu/config.json
"$skiff" spec --bundle target/v2-criu
python3 - target/v2-criu/config.json <<'PY'
import json, sys
spec = json.load(open(sys.argv[1]))
spec["process"]["terminal"] = False
# x: 1 MiB the counter never writes again, which a dump on top of a
# pre-dump finds in its parent instead of writing it anew.
spec["process"]["args"] = ["sh", "-c", "x=$(printf %1048576s .); i=0; while true; do i=$((i+1)); echo $i > /tmp/count; sleep 0.2; done"]
spec["root"] = {"path": "/tmp/b/rootfs", "readonly": False}
spec["linux"]["namespaces"] = [n for n in spec["linux"]["namespaces"] if n["type"] != "network"]
json.dump(spec, open(sys.argv[1], "w"), indent=1)
PY

cat > target/v2-criu/guest.sh <<EOF
W=$ws
P=\$W/target/sid-root/peers
SKIFF=$skiff
EOF
cat >> target/v2-criu/guest.sh <<'EOF'
while read -r m; do insmod "$W/target/guest-kernel/criu-modules/$m"; done < "$W/target/guest-kernel/criu-modules.order"
ip link set lo up
mkdir -p /dev/pts
mount -t devpts -o newinstance,ptmxmode=0666 devpts /dev/pts
ln -sf pts/ptmx /dev/ptmx
mkdir -p /nr
mount -t tmpfs -o size=1g tmpfs /nr
mkdir -p /nr/bin /nr/proc /nr/sys /nr/dev /nr/tmp /nr/run /nr/etc/criu /nr/old "/nr$W"
cp /bin/busybox /nr/bin/busybox
cp /etc/passwd /etc/group /nr/etc/
S=$W/target/sid-root
printf '#!/bin/busybox sh\nexec %s/usr/lib64/ld-linux-x86-64.so.2 --library-path %s/usr/lib/x86_64-linux-gnu %s/usr/bin/tar "$@"\n' \
    "$S" "$S" "$S" > /nr/bin/tar
chmod +x /nr/bin/tar
echo "network-lock skip" > /nr/etc/criu/runc.conf
cat > /nr/story.sh <<'STORY'
set -u
failed=0
check() { if [ "$2" = "$3" ]; then echo "ok   $1: $2"; else echo "FAIL $1: got '$2', want '$3'"; failed=1; fi; }
B=/tmp/b
mkdir -p $B/rootfs/bin $B/rootfs/proc $B/rootfs/dev $B/rootfs/sys $B/rootfs/tmp
cp /bin/busybox $B/rootfs/bin/
for a in sh sleep; do ln -s busybox $B/rootfs/bin/$a; done
cp $W/target/v2-criu/config.json $B/
status() { $R state "$1" 2>/dev/null | sed -n 's/.*"status": "\(.*\)".*/\1/p'; }
check "soft-dirty page tracking (what a pre-dump needs)" \
    "$(criu check --feature mem_dirty_track >/dev/null 2>&1 && echo yes)" yes
for rt in skiff runc; do
    echo "== $rt"
    if [ $rt = skiff ]; then R="$SKIFF --criu $P/criu --root /run/skiff"; else R="$P/runc --root /run/runc"; fi
    $R run -d --bundle $B c1 </dev/null >/dev/null 2>&1
    sleep 2
    $R pause c1
    check "paused" "$(status c1)" paused
    at=$(cat $B/rootfs/tmp/count)
    $R checkpoint --leave-running --image-path /tmp/img-$rt c1
    check "CRIU froze through the cgroup2 freezer" "$(grep -c 'Detected cgroup V2 freezer' /tmp/img-$rt/dump.log)" 1
    check "still paused after the dump" "$(status c1)" paused
    sleep 1
    check "did not count while paused" "$(cat $B/rootfs/tmp/count)" "$at"
    $R restore -d --bundle $B --image-path /tmp/img-$rt c2 </dev/null >/dev/null 2>&1
    check "restored running" "$(status c2)" running
    sleep 1
    now=$(cat $B/rootfs/tmp/count)
    check "counts on from where it paused" "$([ "$now" -gt "$at" ] && echo yes)" yes
    $R delete -f c2
    $R checkpoint --image-path /tmp/img2-$rt c1
    check "a paused container dumped for good is gone" "$(status c1)" ""
    $R delete -f c1 2>/dev/null
    rm -rf $B/rootfs/tmp/count

    # Pre-dump, then a dump on top of it (--parent-path is relative to
    # the new image directory): the dump writes only the pages dirtied
    # since, its image links the pre-dump, and the restore reads both.
    t0=$(date +%s)
    $R run -d --bundle $B p1 </dev/null >/dev/null 2>&1
    # Counting means x is made: under TCG its 1 MiB can take seconds, and
    # a pre-dump taken before would leave it for the dump to write.
    n=0
    until [ "$(cat $B/rootfs/tmp/count 2>/dev/null)" -ge 2 ] 2>/dev/null || [ $n -ge 100 ]; do
        sleep 0.2; n=$((n + 1))
    done
    check "a pre-dump prints nothing" "$($R checkpoint --pre-dump --image-path /tmp/pre-$rt/P1 p1 2>&1)" ""
    check "pre-dump leaves it running" "$(status p1)" running
    sleep 1
    $R checkpoint --parent-path ../P1 --image-path /tmp/pre-$rt/P2 p1
    at=$(cat $B/rootfs/tmp/count)
    check "the dump links its parent" "$(readlink /tmp/pre-$rt/P2/parent)" ../P1
    # The counter's shell only: pages-1.img holds the first task dumped,
    # the container's init. Its sleep children come and go, and one
    # caught between fork and exec still maps x: a new pid has no pages
    # in the parent, so counting them would make the check flaky.
    p1=$(wc -c < /tmp/pre-$rt/P1/pages-1.img)
    p2=$(wc -c < /tmp/pre-$rt/P2/pages-1.img)
    echo "     the shell's pages written: pre-dump $p1 bytes, dump $p2 bytes"
    check "the dump wrote under half the pre-dump's pages" "$([ $((p2 * 2)) -lt "$p1" ] && echo yes)" yes
    $R restore -d --bundle $B --image-path /tmp/pre-$rt/P2 p2 </dev/null >/dev/null 2>&1
    check "restored from the dump and its parent" "$(status p2)" running
    sleep 1
    now=$(cat $B/rootfs/tmp/count)
    check "counts on from the dump" "$([ "$now" -gt "$at" ] && echo yes)" yes
    $R delete -f p2
    rm -rf $B/rootfs/tmp/count
    echo "     pre-dump chain: $(($(date +%s) - t0))s"
done
exit $failed
STORY
unshare -m sh -c "
mount --make-rprivate /
mount -o rbind /sys /nr/sys
mount -o rbind /dev /nr/dev
mount -t proc proc /nr/proc
mount -o bind $W /nr$W
cd /nr
pivot_root . old
/old/bin/busybox umount -l /old
/bin/busybox --install -s /bin 2>/dev/null
PATH=$P:/bin W=$W P=$P SKIFF=$SKIFF sh /story.sh
"
EOF
./scripts/v2-guest.sh sh "$ws/target/v2-criu/guest.sh"
