#!/bin/sh
# Builds skiff and runs a demo container from a busybox-static bundle,
# showing the isolation it got. Run as root on Debian/Ubuntu:
#     ./scripts/demo.sh
set -eu
cd "$(dirname "$0")/.."
. scripts/lib.sh
require_root
apt_install busybox-static
ensure_rust

echo "building skiff (release)..."
cargo build --release -q -p skiff
skiff="$PWD/target/x86_64-unknown-linux-gnu/release/skiff"

work=$(mktemp -d /tmp/skiff-demo.XXXXXX)
trap 'rm -rf "$work"' EXIT
bundle="$work/bundle"
mkdir -p "$bundle/rootfs/bin"
cp /bin/busybox "$bundle/rootfs/bin/busybox"
for applet in $(/bin/busybox --list); do
    [ "$applet" = busybox ] || ln -s busybox "$bundle/rootfs/bin/$applet"
done

# runc's default config from `skiff spec`, with the terminal off and a
# script that reports what the process can see.
"$skiff" spec --bundle "$bundle"
script='echo "pid inside:      $$"; echo "hostname:        $(hostname)"; echo "user:            $(id)";
echo "processes:       $(ps -o pid= | tr -s " \n" " ")"; echo "network:         $(ls /sys/class/net | tr "\n" " ")";
echo "capabilities:    $(grep CapEff /proc/self/status | cut -f2)";
echo "no_new_privs:    $(grep NoNewPrivs /proc/self/status | cut -f2)";
echo "cgroup:          $(grep -m1 memory /proc/self/cgroup)";
touch /probe 2>/dev/null && echo "root fs:         writable" || echo "root fs:         read-only";
echo "/dev:            $(ls /dev | tr "\n" " ")"'
escaped=$(printf '%s' "$script" | tr '\n' ' ' | sed 's/\\/\\\\/g; s/"/\\"/g')
sed -i 's/"terminal": true/"terminal": false/' "$bundle/config.json"
script="$escaped" awk '/^[\t ]*"sh"$/ { match($0, /^[\t ]*/); print substr($0, 1, RLENGTH) "\"sh\", \"-c\", \"" ENVIRON["script"] "\""; next } { print }' \
    "$bundle/config.json" > "$bundle/config.json.new"
mv "$bundle/config.json.new" "$bundle/config.json"

echo
echo "== host =="
echo "pid of this shell: $$   hostname: $(hostname)   network: $(ls /sys/class/net | tr '\n' ' ')"
echo
echo "== skiff run --bundle $bundle demo =="
"$skiff" --root "$work/state" run --bundle "$bundle" "skiff-demo-$$"
echo
echo "container removed: $(ls "$work/state" 2>/dev/null | wc -l) left in the state directory"
