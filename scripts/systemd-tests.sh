#!/bin/sh
# Runs the systemd suites (tests/tests/systemd.rs, systemd_rootless.rs)
# inside the systemd guest (scripts/systemd-guest.sh): skiff's
# --systemd-cgroup beside runc's, directly and through containerd, Podman
# and Docker, and as a user in its own systemd instance.
#     ./scripts/systemd-tests.sh [TEST_FILTER...]
# The test executable and skiff are built here; the guest runs them from
# the read-only workspace.
set -eu
cd "$(dirname "$0")/.."
. scripts/lib.sh
require_root
ensure_rust

cargo build -q -p skiff -p containerd-shim-skiff
exes=$(test_executables --workspace --test systemd --test systemd_rootless)
exe=$(echo "$exes" | awk '$1 == "systemd" {print $2}')
rootless=$(echo "$exes" | awk '$1 == "systemd_rootless" {print $2}')
[ -n "$exe" ] && [ -n "$rootless" ] || die "no test executable for the systemd suites"
# The suites' tests are ignored everywhere but on a systemd host; here
# they must run, and a missing prerequisite fails them. One boot runs
# both: systemd.rs, then systemd_rootless.rs (the user's instance).
# shellcheck disable=SC2016
SKIFF_REQUIRE_ALL=1 ./scripts/systemd-guest.sh timeout -k 10 1800 sh -c \
    'a=$1 b=$2; shift 2; s=0; for t in "$a" "$b"; do "$t" --ignored --test-threads 1 --nocapture "$@" || s=1; done; exit $s' \
    sh "$exe" "$rootless" "$@"
