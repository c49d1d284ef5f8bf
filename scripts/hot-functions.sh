#!/bin/sh
# Records which functions a binary runs and writes them to its order file,
# the hot-functions.txt beside its Cargo.toml that its build script links
# first (see build-support/hot_functions.rs for why). Run it again when the
# binary or its dependencies change much; a stale list only costs memory
# (the packages' hot_functions tests say when names went stale).
#
#     ./scripts/hot-functions.sh shim      # the shim daemon
#     ./scripts/hot-functions.sh runtime   # skiff run, create/start/delete, exec
#
# shim: the workload is skiff-bench-shim's (ctr run --rm, containers left
# running and then stopped). Only the daemons count: `start` and `delete`
# are short-lived processes.
#  1. Every shim process runs under callgrind, which names each function
#     run (skiff runs natively: valgrind has no clone3).
#  2. callgrind misses what valgrind changes: glibc picks other string
#     functions for valgrind's CPU, and valgrind has no pidfd_send_signal,
#     so a daemon under it fails every kill. So the list is refined with
#     the kernel's view: relink with it, run the workload natively under
#     `perf record -e page-faults`, and add every function whose page a
#     daemon faulted in outside the listed ones, until no such fault is
#     left (or a few rounds). A fault maps the 64 KiB around it, so a
#     function shows up only once no other fault maps its page first: that
#     is why it takes rounds.
#
# runtime: the workload is skiff-bench's (run, create/start/delete, exec,
# and the init and exec children, which are clones of the runtime). The
# runtime cannot run under valgrind, and page faults name one function per
# 64 KiB (this VM does not let debugfs's fault_around_bytes change), so
# the kernel counts calls instead: a uprobe on the entry of every function
# of the release binary (addresses from the link map), each process that
# maps the binary runs them, the sealed re-executed copy too (it is the
# same inode through overlayfs), and the functions whose probe fired are
# the list. One workload, exact, and no relinking until the list is done.
set -eu
cd "$(dirname "$0")/.."
. scripts/lib.sh
require_root
ensure_rust

release=target/x86_64-unknown-linux-gnu/release
work=$(mktemp -d /tmp/skiff-hot.XXXXXX)

# map_of PACKAGE: the link map of the package's last release link.
map_of() {
    ls -t "$release"/build/"$1"-*/out/hot-functions.map | head -1
}

# A daemon under valgrind cannot kill its container, so the bench's
# teardown leaves those containers and their daemons: removed here.
remove_leftovers() {
    pkill -KILL -f "callgrind-out-file=$work/" 2>/dev/null || true
    states=/run/containerd/skiff/skiff-bench
    for id in $(ls "$states" 2>/dev/null); do
        "$work/vg/skiff" --root "$states" delete --force "$id" || true
    done
    rmdir "$states" 2>/dev/null || true
    # A delete whose kill failed under valgrind still removed the state:
    # what runs on is found by its cgroup, named as skiff-bench-shim names
    # its containers (b<way>-<run>, rss-...): skiff-bench-engines, run at
    # the same time, puts its own (b<run>-<runtime>) beside them.
    for procs in /sys/fs/cgroup/*/skiff-bench/b[0-9]*-[0-9]*/cgroup.procs \
        /sys/fs/cgroup/*/skiff-bench/rss-*/cgroup.procs \
        /sys/fs/cgroup/skiff-bench/b[0-9]*-[0-9]*/cgroup.procs /sys/fs/cgroup/skiff-bench/rss-*/cgroup.procs; do
        [ -f "$procs" ] && xargs -r kill -KILL < "$procs" 2>/dev/null || true
    done
    sleep 0.2
    rmdir /sys/fs/cgroup/*/skiff-bench/b[0-9]*-[0-9]* /sys/fs/cgroup/*/skiff-bench/rss-* \
        /sys/fs/cgroup/skiff-bench/b[0-9]*-[0-9]* /sys/fs/cgroup/skiff-bench/rss-* 2>/dev/null || true
    rmdir /sys/fs/cgroup/*/skiff-bench /sys/fs/cgroup/skiff-bench 2>/dev/null || true
    # Killed daemons write no profile to name their sockets: remove every
    # shim socket made since this run began that nothing listens on.
    find /run/containerd/s -type s -newer "$work" 2>/dev/null | while read -r sock; do
        python3 -c 'import socket, sys; socket.socket(socket.AF_UNIX).connect(sys.argv[1])' \
            "$sock" 2>/dev/null || rm -f "$sock"
    done
}

# build DIR: a release build with symbols, copied to DIR.
build() {
    SKIFF_SHIM_KEEP_SYMBOLS=1 cargo build -q --release \
        -p containerd-shim-skiff -p skiff -p skiff-bench
    cp "$release/skiff" "$release/skiff-bench-shim" "$1/"
    cp "$release/containerd-shim-skiff-v2" "$1/shim"
}

# fault_rounds PACKAGE BINARY COMM WORKLOAD...: relinks PACKAGE with its
# list, runs WORKLOAD natively under `perf record -e page-faults`, and adds
# every function whose page a process of BINARY (named COMM, if not empty)
# faulted in outside the listed ones, until no such fault is left (or a
# few rounds). A fault maps the 64 KiB around it, so a function shows up
# only once no other fault maps its page first: that is why it takes
# rounds. They run the binaries where the linker wrote them: the page
# cache holds a file the linker wrote in single pages, but a copied file
# in large folios, and a fault maps its whole folio, which hides the
# faults counted here.
fault_rounds() {
    package=$1 binary=$2 comm=$3
    shift 3
    round=1
    while [ $round -le 5 ]; do
        cargo build -q --release -p "$package" -p skiff -p skiff-bench
        perf record -q -c 1 -m 4096 -e page-faults -d -a -o "$work/perf.data" -- "$@" >/dev/null
        perf script -i "$work/perf.data" --show-mmap-events --show-task-events -F comm,pid,addr \
            > "$work/faults" 2>/dev/null
        set +e
        python3 scripts/hot_functions.py faults "$(map_of "$package")" "$binary" "$list" \
            "$work/faults" $comm
        status=$?
        set -e
        [ $status = 3 ] && break
        [ $status = 0 ] || die "reading the page faults failed"
        round=$((round + 1))
    done
}

record_shim() {
    list=shim/hot-functions.txt
    apt_install valgrind linux-perf python3
    apt_install_no_start containerd runc
    mkdir "$work/vg"
    build "$work/vg"
    # containerd runs containerd-shim-skiff-v2 from the bench's directory.
    cat > "$work/vg/containerd-shim-skiff-v2" <<EOF
#!/bin/sh
exec valgrind -q --tool=callgrind --demangle=no --trace-children=yes \
    --trace-children-skip='*/skiff' --callgrind-out-file=$work/vg/callgrind.%p \
    $work/vg/shim "\$@"
EOF
    chmod +x "$work/vg/containerd-shim-skiff-v2"
    "$work/vg/skiff-bench-shim" --runs 3 --containers 3 >/dev/null
    remove_leftovers
    python3 scripts/hot_functions.py callgrind "$(map_of containerd-shim-skiff)" "$list" \
        "$work"/vg/callgrind.*

    fault_rounds containerd-shim-skiff "$release/containerd-shim-skiff-v2" skiff-shimd \
        "$release/skiff-bench-shim" --in-place --runs 3 --containers 12
    # The release build again, stripped, with the final list.
    cargo build -q --release -p containerd-shim-skiff
}

# in_tracefs COMMAND: runs the shell COMMAND in the kernel's tracing
# directory, mounted in a private mount namespace (nothing is left
# mounted; the probes themselves are the kernel's, removed by the trap).
in_tracefs() {
    unshare -m sh -c "lines() { while IFS= read -r l; do echo \"\$l\"; done; }
        mount -t tracefs tracefs /sys/kernel/tracing && cd /sys/kernel/tracing && $1"
}

record_runtime() {
    list=runtime/hot-functions.txt
    apt_install python3 binutils linux-perf
    cargo build -q --release -p skiff -p skiff-bench
    python3 scripts/hot_functions.py uprobes "$(map_of skiff)" "$PWD/$release/skiff" skiffhot \
        > "$work/probes"
    sed 's|^p:\([^ ]*\) .*|-:\1|' "$work/probes" > "$work/unprobes"
    # The probes fire into a trace instance of their own, which keeps the
    # first 32 MiB of hits per CPU and drops the rest: the order in which
    # functions first ran is the order they are linked in, so that each
    # process's code (the parent's start, the init's, the parent's wait
    # and cleanup) lies together, not only the whole workload's.
    # One write per line to uprobe_events: the kernel splits a longer
    # write into pages and refuses a line cut in two.
    trace=instances/skiffhot
    trap 'in_tracefs "echo 0 > $trace/events/skiffhot/enable; lines < $work/unprobes >> uprobe_events;
        rmdir $trace" 2>/dev/null || true; rm -rf "$work"' EXIT
    in_tracefs "mkdir $trace && echo 0 > $trace/options/overwrite && echo 32768 > $trace/buffer_size_kb &&
        lines < $work/probes >> uprobe_events && echo 1 > $trace/events/skiffhot/enable"
    "$release/skiff-bench" --runs 3 >/dev/null
    in_tracefs "echo 0 > $trace/tracing_on && cat uprobe_profile" > "$work/profile"
    in_tracefs "cat $trace/trace" > "$work/trace"
    python3 scripts/hot_functions.py hits "$(map_of skiff)" "$list" "$work/profile" "$work/trace"
    # A probe fires on a function's entry only: glibc's string functions
    # jump into each other's code, which the faults find.
    fault_rounds skiff "$release/skiff" "" "$release/skiff-bench" --runs 1
    cargo build -q --release -p skiff
}

case "${1:-}" in
shim)
    trap 'remove_leftovers; rm -rf "$work"' EXIT
    record_shim
    ;;
runtime) record_runtime ;;
*) die "usage: $0 shim|runtime" ;;
esac
