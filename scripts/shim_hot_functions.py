"""Helper of scripts/shim-hot-functions.sh: turns callgrind profiles or
perf page-fault records of shim daemons into the order file's names.

    shim_hot_functions.py callgrind SHIM LIST CALLGRIND_FILE...
        writes LIST: the functions the daemons ran.
    shim_hot_functions.py faults SHIM LIST PERF_SCRIPT_OUTPUT
        adds to LIST the functions whose text pages the daemons faulted
        in outside the listed ones; exits 3 when there were none.

SHIM is the symbol build the data was recorded with.
"""
import bisect
import glob
import re
import subprocess
import sys


def text_symbols(shim):
    """(address, name) of the functions in SHIM, sorted."""
    out = subprocess.run(["nm", "--defined-only", "-n", shim],
                         capture_output=True, text=True, check=True).stdout
    return [(int(a, 16), n) for a, t, n in
            (l.split() for l in out.splitlines() if len(l.split()) == 3)
            if t in "tTwW"]


def text_range(shim):
    out = subprocess.run(["readelf", "-S", "-W", shim],
                         capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        m = re.search(r"\] \.text\s+\S+\s+([0-9a-f]+) [0-9a-f]+ ([0-9a-f]+)", line)
        if m:
            start = int(m.group(1), 16)
            return start, start + int(m.group(2), 16)
    sys.exit(f"{shim}: no .text section")


def write(path, names):
    with open(path, "w") as f:
        f.write("".join(n + "\n" for n in sorted(names)))


def from_callgrind(shim, out, profiles):
    known = {n for _, n in text_symbols(shim)}
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


def from_faults(shim, out, perf_script):
    symbols = text_symbols(shim)
    addresses = [a for a, _ in symbols]
    start, end = text_range(shim)
    listed = set(open(out).read().split())
    name = shim.rsplit("/", 1)[-1]
    base, parent, daemons, faults = {}, {}, set(), []
    for line in open(perf_script, errors="replace"):
        m = re.search(r"PERF_RECORD_FORK\((\d+):\d+\):\((\d+):\d+\)", line)
        if m:
            parent[int(m.group(1))] = int(m.group(2))
            continue
        if "PERF_RECORD_MMAP2" in line:
            # The first mapping of the binary (file offset 0) is its base.
            m = re.search(r"(\d+)/\d+: \[0x([0-9a-f]+)\(0x[0-9a-f]+\) @ 0 .*/" + re.escape(name) + "$",
                          line.strip())
            if m:
                base[int(m.group(1))] = int(m.group(2), 16)
            continue
        f = line.split()
        if len(f) != 3 or "PERF_RECORD_" in line:
            continue
        comm, pid, addr = f[0], int(f[1]), int(f[2], 16)
        # The daemon names itself (shim/src/server.rs, DAEMON_NAME).
        if comm == "skiff-shimd":
            daemons.add(pid)
        faults.append((pid, comm, addr))
    cold = set()
    for pid, comm, addr in faults:
        owner = pid
        # The daemon starts skiff with posix_spawn: until it execs, the
        # child runs in the daemon's memory (CLONE_VM), under the daemon's
        # name but with a pid of its own and no mapping event, and the
        # text it faults in stays mapped in the daemon.
        if pid not in base and comm == "skiff-shimd":
            owner = parent.get(pid)
        if owner not in daemons or owner not in base:
            continue
        offset = addr - base[owner]
        if start <= offset < end:
            i = bisect.bisect_right(addresses, offset) - 1
            if i >= 0 and symbols[i][1] not in listed:
                cold.add(symbols[i][1])
    if not daemons:
        sys.exit("no daemon in the page-fault record")
    print(f"{len(daemons)} daemons faulted in {len(cold)} unlisted functions: "
          + " ".join(sorted(cold))[:300])
    if not cold:
        sys.exit(3)
    write(out, listed | cold)


if __name__ == "__main__":
    mode, shim, out, *rest = sys.argv[1:]
    if mode == "callgrind":
        from_callgrind(shim, out, rest)
    elif mode == "faults":
        from_faults(shim, out, rest[0])
    else:
        sys.exit(__doc__)
