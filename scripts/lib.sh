# Shared by demo.sh and test.sh: root check and installs on Debian/Ubuntu.

die() { echo "error: $*" >&2; exit 1; }

require_root() {
    [ "$(id -u)" = 0 ] || die "run as root (skiff creates namespaces, mounts and cgroups)"
}

# apt_install PKG...: installs the packages that are missing.
apt_install() {
    missing=""
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
    done
    [ -z "$missing" ] && return 0
    echo "installing:$missing"
    command -v apt-get >/dev/null || die "apt-get not found; install$missing by hand"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null || apt-get update -q
    # shellcheck disable=SC2086
    apt-get install -y -q --no-install-recommends $missing >/dev/null
}

# apt_install_no_start PKG...: like apt_install, for packages that ship
# daemons (containerd, docker.io): their services must not start, the
# tests run private instances. A policy-rc.d is put in place for the
# install only, when the machine has none.
apt_install_no_start() {
    policy=/usr/sbin/policy-rc.d
    ours=""
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy" && ours=1
    fi
    status=0
    apt_install "$@" || status=$?
    [ -z "$ours" ] || rm -f "$policy"
    return $status
}

# ensure_rust: a Rust toolchain new enough for the workspace (rustup).
ensure_rust() {
    [ -d "$HOME/.cargo/bin" ] && PATH="$HOME/.cargo/bin:$PATH" && export PATH
    if ! command -v cargo >/dev/null; then
        apt_install curl ca-certificates gcc libc6-dev
        echo "installing the Rust toolchain with rustup"
        curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --component rustfmt,clippy >/dev/null \
            || die "could not install Rust; install it from https://rustup.rs"
        PATH="$HOME/.cargo/bin:$PATH"
        export PATH
    fi
    command -v cc >/dev/null || apt_install gcc libc6-dev
}

# test_executables CARGO_TEST_ARGS...: builds the integration test
# executables `cargo test` would run and prints "NAME PATH" for each.
test_executables() {
    cargo test -q --no-run --message-format=json "$@" 2>/dev/null | python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["test"]:
        print(m["target"]["name"], m["executable"])
'
}
