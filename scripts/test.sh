#!/bin/sh
# Installs what the tests need and runs the whole suite: formatting,
# clippy, unit tests and the integration tests that run real containers,
# on this host and again inside a pure cgroup v2 qemu guest, and the
# systemd cgroup driver's suites in a qemu guest that is a systemd host.
# Run as root on Debian/Ubuntu:
#     ./scripts/test.sh
set -eu
cd "$(dirname "$0")/.."
. scripts/lib.sh
require_root
# busybox-static: every test rootfs; file: checks it is static; runc and
# crun: the peers the benchmark and comparisons use;
# golang-github-containers-common: Podman's default seccomp profile;
# golang-go: builds the OCI runtime-tools validation;
# libseccomp-dev: the seccomp tests compare skiff's syscall tables and
# programs with libseccomp's (a helper built with gcc);
# containerd, podman + conmon, docker.io: tests/ (end to end);
# protobuf-compiler: the CRI API of tests/ (k8s-cri); debootstrap: the
# Debian sid root with today's engines (scripts/sid-root.sh); uidmap: the
# setuid newuidmap/newgidmap rootless skiff, Podman and RootlessKit map
# subordinate ids with (runtime/tests/rootless.rs, tests/*_rootless.rs);
# rootlesskit: rootless Docker (dockerd-rootless.sh); iproute2: the
# network namespace a checkpointed TCP server's peer waits in
# (runtime/tests/checkpoint.rs).
apt_install busybox-static file procps mount runc crun golang-github-containers-common \
    golang-go libseccomp-dev protobuf-compiler debootstrap uidmap rootlesskit iproute2
# The engines the end-to-end suites drive skiff with (private daemons).
apt_install_no_start containerd podman conmon docker.io
ensure_rust
# A full run writes about 8 GB under target/ (the workspace's test build,
# the sid root, runtime-tools, the guests' kernels); a full disk shows up
# much later as a confusing cargo or debootstrap error.
free_gb=$(df -Pk . | awk 'NR == 2 {print int($4 / 1048576)}')
[ "$free_gb" -ge 10 ] || echo "WARNING: only $free_gb GB free here; a full run needs about 10 GB" >&2
# The Debian sid root (mostly downloads) builds while the workspace
# compiles; cached in target/ after the first run.
mkdir -p target
./scripts/sid-root.sh > target/sid-root.out 2>&1 &
sid_root=$!

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -q -- -D warnings
echo "== skiff links the regex stand-in (third_party/regex), not the full engine"
# A dependency asking regex for a feature the stand-in lacks brings the
# real one back for every crate, with only a cargo warning.
cargo tree -q -p skiff -e normal -i regex 2>/dev/null | head -n 1 | grep -q third_party/regex \
    || die "skiff links the registry's regex: give third_party/regex the features asked for"
echo "== cargo build (every binary the tests run: skiff, skiff-checker)"
cargo build --workspace -q
# The checkpoint tests run CRIU 4.2 from the sid root (peers/criu).
wait $sid_root || { cat target/sid-root.out; die "building the sid root failed"; }
echo "== cargo test (unit + integration, as root)"
# Every prerequisite is installed above: a test that would skip fails.
SKIFF_REQUIRE_ALL=1 cargo test --workspace -q
echo "== end-to-end suites again, with Debian sid's engines (containerd 2.1, Docker 28, Podman 5.8)"
./scripts/sid-tests.sh
echo "== OCI conformance suite: skiff beside runc and crun"
./scripts/conformance.sh
echo "== OCI runtime-tools validation: skiff beside runc and crun (about 6 minutes)"
./scripts/runtime-tools.sh
echo "== integration suites again, in a pure cgroup v2 guest (qemu, TCG)"
./scripts/v2-tests.sh
echo "== a paused container checkpointed and restored, and a pre-dump then a dump, on cgroup v2 (qemu guest; skiff beside runc)"
./scripts/v2-criu.sh
echo "== systemd suites, in a guest with systemd as PID 1 (qemu, TCG; its root disk is cached in target/)"
./scripts/systemd-tests.sh
echo "== all tests passed"
