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

# --- the qemu guests (scripts/v2-guest.sh, scripts/systemd-guest.sh) ------

# guest_job DIR ENV ARG...: writes DIR/cmd.sh, what a guest runs: ARG...
# from the workspace (shared at the same path), with the variables ENV
# sets ("A=1 B=2") and this environment's own settings of the variables
# the suites read.
guest_job() {
    dir=$1 env=$2
    shift 2
    {
        echo "cd '$PWD'"
        printf 'export %s' "$env"
        for var in RUST_BACKTRACE SKIFF_REQUIRE_ALL; do
            eval "val=\${$var:-}"
            [ -n "$val" ] && printf ' %s=%s' "$var" "$val"
        done
        echo
        printf 'exec'
        for arg in "$@"; do printf " '%s'" "$(printf '%s' "$arg" | sed "s/'/'\\\\''/g")"; done
        echo
    } > "$dir/cmd.sh"
}

# guest_tsc_khz: the host's TSC frequency in kHz. Under TCG a guest hangs
# calibrating its timers unless told it (tsc_early_khz=, tsc=reliable).
guest_tsc_khz() {
    khz=$(dmesg 2>/dev/null | sed -n 's/.*tsc: Detected \([0-9]*\)\.\([0-9]\{3\}\) MHz.*/\1\2/p' | head -1)
    [ -n "$khz" ] || khz=$(awk -F: '/cpu MHz/ {printf "%d", $2 * 1000; exit}' /proc/cpuinfo)
    echo "$khz"
}

# guest_result DIR: prints the job's output and exits with its status; the
# guest's console instead when the job did not run to its end.
guest_result() {
    cat "$1/output" 2>/dev/null || { cat "$1/console"; die "the guest did not run the command"; }
    [ -s "$1/status" ] || { cat "$1/console"; die "the guest stopped before the command finished"; }
    exit "$(cat "$1/status")"
}
