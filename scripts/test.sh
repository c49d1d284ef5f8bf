#!/bin/sh
# Installs what the tests need and runs the whole suite: formatting,
# clippy, unit tests and the integration tests that run real containers,
# on this host and again inside a pure cgroup v2 qemu guest.
# Run as root on Debian/Ubuntu:
#     ./scripts/test.sh
set -eu
cd "$(dirname "$0")/.."
. scripts/lib.sh
require_root
# busybox-static: every test rootfs; file: checks it is static; runc and
# crun: the peers the benchmark and comparisons use.
apt_install busybox-static file runc crun
ensure_rust

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -q -- -D warnings
echo "== cargo test (unit + integration, as root)"
cargo test --workspace -q 2>&1 | tee /tmp/skiff-test.log
if grep -q "^SKIPPED" /tmp/skiff-test.log; then
    die "tests were skipped; the suite must run complete here"
fi
echo "== integration suites again, in a pure cgroup v2 guest (qemu, TCG)"
./scripts/v2-tests.sh
echo "== all tests passed"
