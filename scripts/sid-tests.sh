#!/bin/sh
# Runs the end-to-end suites (crate tests/) against Debian unstable's
# engines: containerd 2.1 (skiff's shim, its runc shim calling skiff, the
# CRI plugin), Docker 28 and Podman 5.8 (rootful, and rootless as the
# test user), each beside runc 1.3 from the same root. The test
# executables are built here and run pivoted into the sid root
# (scripts/in-sid.sh) with SKIFF_ENGINES=sid.
#     ./scripts/sid-tests.sh [SUITE...]
# Fails if a suite fails or if the host's mount table changed.
set -eu
cd "$(dirname "$0")/.."
. scripts/lib.sh
require_root
ensure_rust
suites=${*:-containerd shim cri docker podman docker_rootless podman_rootless}

started=$(date +%s)
./scripts/sid-root.sh >/dev/null
echo "sid root ready in $(($(date +%s) - started)) s: $(tr '\n' ' ' < target/sid-root/versions)"
test_executables -p skiff-e2e > target/sid-test-executables

before=$(mktemp)
after=$(mktemp)
trap 'rm -f "$before" "$after"' EXIT
# The mounts the suites could leave on the host are below this tree (the
# sid root, the workspace bound into it; their /tmp and /run are tmpfs of
# their own namespace). Mounts elsewhere belong to other software on a busy
# host (another tree building its sid root, a Docker daemon).
ours() {
    awk -v tree="$PWD/" 'index($5, tree) == 1' /proc/self/mountinfo
}
ours > "$before"
status=0
for suite in $suites; do
    exe=$(awk -v s="$suite" '$1 == s {print $2}' target/sid-test-executables)
    [ -n "$exe" ] || die "no test executable for suite $suite"
    echo "== $suite (sid engines)"
    t=$(date +%s)
    SKIFF_REQUIRE_ALL=1 ./scripts/in-sid.sh "$exe" || status=1
    echo "   $suite took $(($(date +%s) - t)) s"
done
ours > "$after"
if ! cmp -s "$before" "$after"; then
    echo "the sid suites left the host's mount table changed:" >&2
    diff "$before" "$after" >&2 || true
    status=1
fi
echo "sid suites took $(($(date +%s) - started)) s in all"
exit $status
