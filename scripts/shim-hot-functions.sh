#!/bin/sh
# Records which functions a shim daemon runs and writes them to
# shim/hot-functions.txt, the order file shim/build.rs links first (see
# there for why). Run it again when the shim or its dependencies change
# much; a stale list only costs memory.
#
#     ./scripts/shim-hot-functions.sh
#
# The workload is skiff-bench-shim's (ctr run --rm, containers left running
# and then stopped). Only the daemons count: `start` and `delete` are
# short-lived processes.
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
set -eu
cd "$(dirname "$0")/.."
. scripts/lib.sh
require_root
ensure_rust
apt_install valgrind linux-perf python3
apt_install_no_start containerd runc

list=shim/hot-functions.txt
release=target/x86_64-unknown-linux-gnu/release
work=$(mktemp -d /tmp/skiff-hot.XXXXXX)
mkdir "$work/vg" "$work/perf"
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
trap 'remove_leftovers; rm -rf "$work"' EXIT

# build DIR: a release build with symbols, copied to DIR.
build() {
    SKIFF_SHIM_KEEP_SYMBOLS=1 cargo build -q --release \
        -p containerd-shim-skiff -p skiff -p skiff-bench
    cp "$release/skiff" "$release/skiff-bench-shim" "$1/"
    cp "$release/containerd-shim-skiff-v2" "$1/shim"
}

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
python3 scripts/shim_hot_functions.py callgrind "$work/vg/shim" "$list" "$work"/vg/callgrind.*

# The rounds run the binaries where the linker wrote them: the page cache
# holds a file the linker wrote in single pages, but a copied file in large
# folios, and a fault maps its whole folio, which hides the faults counted
# here.
round=1
while [ $round -le 5 ]; do
    SKIFF_SHIM_KEEP_SYMBOLS=1 cargo build -q --release \
        -p containerd-shim-skiff -p skiff -p skiff-bench
    perf record -q -c 1 -m 4096 -e page-faults -d -a -o "$work/perf/perf.data" -- \
        "$release/skiff-bench-shim" --in-place --runs 3 --containers 12 >/dev/null
    perf script -i "$work/perf/perf.data" --show-mmap-events --show-task-events -F comm,pid,addr \
        > "$work/perf/faults" 2>/dev/null
    set +e
    python3 scripts/shim_hot_functions.py faults "$release/containerd-shim-skiff-v2" "$list" \
        "$work/perf/faults"
    status=$?
    set -e
    [ $status = 3 ] && break
    [ $status = 0 ] || die "reading the page faults failed"
    round=$((round + 1))
done
# The release build again, stripped, with the final list.
cargo build -q --release -p containerd-shim-skiff
