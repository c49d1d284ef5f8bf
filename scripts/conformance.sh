#!/bin/sh
# Runs the OCI conformance suite against skiff, runc and crun side by side
# (Debian 12's, and Debian sid's as runc-sid and crun-sid, from
# scripts/sid-root.sh) and checks skiff's result: no failure, and a pass
# on every case either runc passes on this host. crun runs through
# scripts/crun-without-unified.sh
# (it refuses hybrid cgroup hosts); cases where that wrapper itself changes
# what is observed (the runtime's mount namespace, propagation) are noted
# in README.md.
#     ./scripts/conformance.sh [--release]
set -eu
cd "$(dirname "$0")/.."
. scripts/lib.sh
require_root
apt_install busybox-static runc crun
ensure_rust

profile=debug
flag=""
if [ "${1:-}" = --release ]; then profile=release; flag=--release; fi
cargo build -q $flag -p skiff -p skiff-conformance
bin=target/x86_64-unknown-linux-gnu/$profile
tsv=target/conformance.tsv
set -- --runtime "skiff=$PWD/$bin/skiff" --runtime "runc=$(command -v runc)"
if command -v crun >/dev/null; then
    set -- "$@" --runtime "crun=$PWD/scripts/crun-without-unified.sh"
fi
sid=$(./scripts/sid-root.sh)
set -- "$@" --runtime "runc-sid=$sid/peers/runc" --runtime "crun-sid=$PWD/scripts/sid-crun.sh"
status=0
"$bin/skiff-conformance" "$@" --tsv "$tsv" > target/conformance.txt || status=$?
grep -E '^[a-z-]+: [0-9]+ passed' target/conformance.txt
# Cases either runc passes that skiff does not pass.
missing=$(awk -F'\t' '
    ($2 == "runc" || $2 == "runc-sid") && $3 == "pass" { runc[$1] = 1 }
    $2 == "skiff" { skiff[$1] = $3 }
    END { for (c in runc) if (skiff[c] != "pass") print c }' "$tsv")
if [ -n "$missing" ]; then
    echo "skiff does not pass what runc passes:" $missing
    status=1
fi
[ "$status" -eq 0 ] || die "conformance failed; see target/conformance.txt"
echo "conformance: skiff fails nothing and passes every case runc passes"
