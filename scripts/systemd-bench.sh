#!/bin/sh
# Runs the systemd driver's benchmark (`skiff-bench --systemd`,
# bench/src/systemd.rs) inside the systemd guest (scripts/systemd-guest.sh):
# `run` of /bin/true with skiff's --systemd-cgroup beside its cgroupfs
# driver, runc's --systemd-cgroup and crun's --cgroup-manager=systemd,
# interleaved.
#     ./scripts/systemd-bench.sh [--runs N]
# Release builds, made here; the guest runs them from the read-only
# workspace. Under TCG only the ratios mean anything.
set -eu
cd "$(dirname "$0")/.."
. scripts/lib.sh
require_root
ensure_rust

cargo build -q --release -p skiff -p skiff-bench
./scripts/systemd-guest.sh target/x86_64-unknown-linux-gnu/release/skiff-bench --systemd "$@"
