#!/bin/sh
# Runs the integration suites inside the pure cgroup v2 guest
# (scripts/v2-guest.sh): the same tests as on this hybrid host, now against
# the v2 backend (CLONE_INTO_CGROUP, cgroup2 mounts and namespaces).
#     ./scripts/v2-tests.sh [SUITE...]
set -eu
cd "$(dirname "$0")/.."
. scripts/lib.sh
require_root
ensure_rust
suites=${*:-lifecycle errors process rootfs namespaces hooks terminal cgroups exec runtime_binary density rootless daemon}

# Static test executables, built on the host, run in the guest as they are
# (`daemon` is the shim's: a task through containerd-shim-skiff-v2).
test_executables --workspace > target/v2-test-executables

script=target/v2-tests.guest.sh
{
    echo 'status=0'
    for suite in $suites; do
        exe=$(awk -v s="$suite" '$1 == s {print $2}' target/v2-test-executables)
        [ -n "$exe" ] || die "no test executable for suite $suite"
        skip=""
        # Debian 12's kernel is 6.1. The guest's files live on tmpfs, which
        # only supports id-mapped mounts from Linux 6.3, and
        # vm.memfd_noexec came in 6.3 too. The guest's only tools are
        # busybox's, whose ip cannot name a veth's peer; moving network
        # devices does not depend on the cgroup version.
        case $suite in
            namespaces) skip="idmapped_bind_mounts net_devices"
                why="tmpfs id-mapped mounts need Linux 6.3; busybox ip makes no named veth peer" ;;
            runtime_binary) skip="memfd_noexec"; why="vm.memfd_noexec needs Linux 6.3" ;;
            density) skip="create_reads_no_more"; why="statmount needs Linux 6.8" ;;
        esac
        # rootless: its tests of cgroup v2 delegation, ignored on other
        # hosts; the rest need newuidmap, which the guest lacks, and ran on
        # the host.
        only=""
        [ "$suite" = rootless ] && only="--ignored"
        echo "echo '== $suite (cgroup v2 guest)'"
        if [ -n "$skip" ]; then
            echo "echo 'SKIPPED $skip in the guest: $why'"
            skip=$(for s in $skip; do printf ' --skip %s' "$s"; done)
        fi
        echo "$exe --test-threads 2 $only$skip || status=1"
    done
    echo 'exit $status'
} > "$script"
./scripts/v2-guest.sh sh "$PWD/$script"
