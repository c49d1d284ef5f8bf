#!/bin/sh
# Runs the systemd suite (tests/tests/systemd.rs) inside the systemd guest
# (scripts/systemd-guest.sh): skiff's --systemd-cgroup beside runc's,
# directly and through containerd, Podman and Docker.
#     ./scripts/systemd-tests.sh [TEST_FILTER...]
# The test executable and skiff are built here; the guest runs them from
# the read-only workspace.
set -eu
cd "$(dirname "$0")/.."
. scripts/lib.sh
require_root
ensure_rust

cargo build -q -p skiff -p containerd-shim-skiff
exe=$(test_executables -p skiff-e2e --test systemd | awk '$1 == "systemd" {print $2}')
[ -n "$exe" ] || die "no test executable for the systemd suite"
# The suite's tests are ignored everywhere but on a systemd host; here
# they must run, and a missing prerequisite fails them.
SKIFF_REQUIRE_ALL=1 ./scripts/systemd-guest.sh timeout -k 10 1500 "$exe" --ignored --test-threads 1 --nocapture "$@"
