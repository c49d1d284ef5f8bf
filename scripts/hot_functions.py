"""Helper of scripts/hot-functions.sh: turns what a binary ran into the
names of its order file (hot-functions.txt, see
build-support/hot_functions.rs).

MAP is the link map of the release build the data was recorded with
(hot-functions.map in its build script's OUT_DIR): the addresses of every
function, whether or not the binary keeps its symbols.

    hot_functions.py callgrind MAP LIST CALLGRIND_FILE...
        writes LIST: the functions shim daemons ran under callgrind.
    hot_functions.py faults MAP BINARY LIST PERF_SCRIPT_OUTPUT [COMM]
        adds to LIST the functions whose text pages processes of BINARY
        (only those named COMM, when given) faulted in outside the listed
        ones; exits 3 when there were none.
    hot_functions.py uprobes MAP BINARY GROUP
        prints uprobe_events lines: one probe on each function's entry.
    hot_functions.py hits MAP LIST UPROBE_PROFILE TRACE
        writes LIST: the functions whose probe fired, in the order they
        first fired in TRACE (the probes' trace), then the rest.
    hot_functions.py rename MAP LIST
        renames the names of LIST that MAP lacks to MAP's names of the
        same function (the same demangled name but for the crate hashes),
        for a list recorded before a crate's hash changed.
"""
import re
import subprocess
import sys

MAP_LINE = re.compile(r"^\s*([0-9a-f]+)\s+[0-9a-f]+\s+[0-9a-f]+\s+\d+( +)(\S+)$")


def text_symbols(map_path):
    """(address, name) of the functions in the .text of MAP, sorted."""
    symbols, in_text = [], False
    for line in open(map_path, errors="replace"):
        m = MAP_LINE.match(line.rstrip("\n"))
        if not m:
            continue
        # An lld map indents output sections by one column, their input
        # sections by 9 and symbols by 17.
        indent, name = len(m.group(2)), m.group(3)
        if indent == 1:
            in_text = name == ".text"
        elif in_text and indent > 9:
            symbols.append((int(m.group(1), 16), name))
    if len(symbols) < 100:
        sys.exit(f"{map_path}: only {len(symbols)} functions in .text: not an lld map?")
    return sorted(symbols)


def text_range(map_path):
    for line in open(map_path, errors="replace"):
        f = line.split()
        if len(f) == 5 and f[4] == ".text":
            start = int(f[0], 16)
            return start, start + int(f[2], 16)
    sys.exit(f"{map_path}: no .text section")


def write(path, names, ordered=False):
    with open(path, "w") as f:
        f.write("".join(n + "\n" for n in (names if ordered else sorted(names))))


def from_callgrind(map_path, out, profiles):
    known = {n for _, n in text_symbols(map_path)}
    # Every IRELATIVE resolver runs at startup, before valgrind sees it.
    hot = {n for n in known if n.endswith("_ifunc")} | {"_start"}
    daemons = 0
    for path in profiles:
        lines = open(path, errors="replace").read().splitlines()
        cmd = next((l for l in lines if l.startswith("cmd:")), "")
        # A daemon is started with `-socket unix://...` and no action.
        if "-socket" not in cmd or cmd.split()[-1] in ("start", "delete"):
            continue
        daemons += 1
        for line in lines:
            m = re.match(r"^c?fn=\(\d+\) (\S+)$", line)
            if m and m.group(1) in known:
                hot.add(m.group(1))
    if daemons == 0 or len(hot) < 100:
        sys.exit(f"{daemons} daemon profiles, {len(hot)} functions: did the daemons run?")
    write(out, hot)
    print(f"{out}: {len(hot)} functions run by {daemons} daemons under callgrind")


def from_faults(map_path, binary, out, perf_script, daemon=None):
    """Adds to OUT the functions whose text pages processes running
    BINARY faulted in outside the listed ones (only those named DAEMON,
    when given); exits 3 when there were none."""
    import bisect
    import os
    symbols = text_symbols(map_path)
    addresses = [a for a, _ in symbols]
    start, end = text_range(map_path)
    listed = open(out).read().split()
    known = set(listed)
    # Mappings are told apart by inode: the runtime re-executes itself
    # from an overlayfs view of its binary, under another path.
    inode = os.stat(binary).st_ino
    # pid -> where BINARY's first byte is mapped in its memory, None once
    # it executed something else. Read in time order, as the faults are.
    base, seen, cold = {}, set(), set()
    for line in open(perf_script, errors="replace"):
        m = re.search(r"PERF_RECORD_FORK\((\d+):\d+\):\((\d+):\d+\)", line)
        if m:
            # A child has its parent's mappings (the shim's posix_spawn
            # child even shares the daemon's memory until it executes).
            base[int(m.group(1))] = base.get(int(m.group(2)))
            continue
        m = re.search(r"PERF_RECORD_COMM exec: .*:(\d+)/\d+", line)
        if m:
            base[int(m.group(1))] = None
            continue
        if "PERF_RECORD_MMAP2" in line:
            m = re.search(r"(\d+)/\d+: \[0x([0-9a-f]+)\(0x[0-9a-f]+\) @ 0 \S+ (\d+) ", line)
            if m and int(m.group(3)) == inode:
                base[int(m.group(1))] = int(m.group(2), 16)
            continue
        f = line.split()
        if len(f) != 3 or "PERF_RECORD_" in line:
            continue
        comm, pid, addr = f[0], int(f[1]), int(f[2], 16)
        # The shim's daemon names itself (shim/src/server.rs, DAEMON_NAME).
        if base.get(pid) is None or (daemon and comm != daemon):
            continue
        seen.add(pid)
        offset = addr - base[pid]
        if start <= offset < end:
            i = bisect.bisect_right(addresses, offset) - 1
            if i >= 0 and symbols[i][1] not in known:
                cold.add(symbols[i][1])
    if not seen:
        sys.exit("no process of the binary in the page-fault record")
    print(f"{len(seen)} processes faulted in {len(cold)} unlisted functions: "
          + " ".join(sorted(cold))[:300])
    if not cold:
        sys.exit(3)
    write(out, listed + sorted(cold), ordered=True)


def entries(map_path):
    """The distinct function entries of MAP: address -> its names (glibc
    has aliases: one function under several names)."""
    by_address = {}
    for address, name in text_symbols(map_path):
        by_address.setdefault(address, []).append(name)
    return sorted(by_address.items())


def file_offsets(binary):
    """(vaddr, end, offset) of BINARY's loaded segments."""
    out = subprocess.run(["readelf", "-lW", binary],
                         capture_output=True, text=True, check=True).stdout
    segments = []
    for line in out.splitlines():
        f = line.split()
        if f and f[0] == "LOAD":
            offset, vaddr, size = int(f[1], 16), int(f[2], 16), int(f[4], 16)
            segments.append((vaddr, vaddr + size, offset))
    return segments


def print_uprobes(map_path, binary, group):
    segments = file_offsets(binary)
    for i, (address, _) in enumerate(entries(map_path)):
        offset = next((address - v + o for v, e, o in segments if v <= address < e), None)
        if offset is None:
            sys.exit(f"{binary}: no loaded segment holds 0x{address:x} of {map_path}")
        print(f"p:{group}/f{i} {binary}:0x{offset:x}")


def from_hits(map_path, out, profile, trace):
    functions = entries(map_path)
    fired, probes = set(), 0
    for line in open(profile):
        f = line.split()
        if len(f) != 3 or not re.fullmatch(r"f\d+", f[1]):
            continue
        probes += 1
        if int(f[2]) > 0:
            fired.add(int(f[1][1:]))
    if probes != len(functions) or len(fired) < 100:
        sys.exit(f"{profile}: {probes} probes of {len(functions)} functions, "
                 f"{len(fired)} fired: did the workload run the probed binary?")
    # A trace line: "  comm-pid  [cpu] flags  time: fN: (address)".
    order = {}
    for line in open(trace, errors="replace"):
        m = re.search(r" f(\d+): \(", line)
        if m:
            order.setdefault(int(m.group(1)), len(order))
    # What the trace dropped (it keeps the first hits) goes last, in
    # address order.
    ranked = sorted(fired, key=lambda i: (order.get(i, len(order)), i))
    write(out, [n for i in ranked for n in functions[i][1]], ordered=True)
    print(f"{out}: {len(fired)} of {len(functions)} functions ran, "
          f"{len(order)} of them in the trace's order")


def demangled(names):
    """Each name demangled, without the hashes that name a crate's build
    (legacy names end in ::h<16 hex>, v0 names carry crate[<hex>]) and
    without the number LTO gives a local copy (name.NNN), which a change
    anywhere in the program can renumber."""
    bare = [re.sub(r"\.\d+$", "", n) for n in names]
    out = subprocess.run(["c++filt"], input="\n".join(bare) + "\n",
                         capture_output=True, text=True, check=True).stdout
    return [re.sub(r"\[[0-9a-f]+\]|::h[0-9a-f]{16}$", "", d) for d in out.splitlines()]


def rename(map_path, out):
    names = [n for _, n in text_symbols(map_path)]
    known = set(names)
    listed = open(out).read().split()
    gone = [n for n in listed if n not in known]
    by_key = {}
    for name, key in zip(names, demangled(names)):
        by_key.setdefault(key, []).append(name)
    renamed, lost = set(), []
    for name, key in zip(gone, demangled(gone)):
        # Instances of one generic function under legacy mangling differ
        # only in the hash: all of them are taken.
        if key in by_key:
            renamed.update(by_key[key])
        else:
            lost.append(name)
    write(out, (set(listed) - set(gone)) | renamed)
    print(f"{out}: {len(gone)} names renamed to {len(renamed)}, {len(lost)} gone: "
          + " ".join(lost)[:300])


if __name__ == "__main__":
    mode, map_file, *rest = sys.argv[1:]
    if mode == "callgrind":
        from_callgrind(map_file, rest[0], rest[1:])
    elif mode == "faults":
        from_faults(map_file, *rest[:4])
    elif mode == "uprobes":
        print_uprobes(map_file, *rest[:2])
    elif mode == "hits":
        from_hits(map_file, *rest[:3])
    elif mode == "rename":
        rename(map_file, rest[0])
    else:
        sys.exit(__doc__)
