#!/usr/bin/env python3
"""Splits a callgrind profile of `pipeline_replay` (made with --dump-instr=yes) into the
pipeline's stages, in instructions per packet.

    perf/callgrind_stages.py callgrind.out PACKETS [--json]
    perf/callgrind_stages.py callgrind.out PACKETS --lines 40   # + the 40 costliest source lines

Release builds inline almost everything into `Pipeline::process`, so callgrind's per-function
figures say little. Instead every executed instruction is symbolized with its *inline* stack
(`addr2line -i`: the release profile keeps line tables, which record each inlined call), and
charged to the innermost frame that names a stage below; what matches none is "pipeline
(decide, glue)". The same build that is benchmarked is profiled: no attribute or feature
changes the code for this.
"""

import collections
import json
import re
import shutil
import subprocess
import sys

# Functions of pipeline.rs that are a stage of their own wherever they are inlined.
PIPELINE_STAGES = [
    (r"^(rewrite_dst|rewrite_src|rewrite_l4|rewrite_dsr|rewrite_nat|set_reply_macs|forward_to)\b",
     "rewrite (MACs; NAT address, port, checksums)"),
    (r"^(build_rst|build_unreachable|write_ip_header|empty_pool)\b", "reply build (RST, ICMP)"),
    (r"^next_state\b", "flow state update"),
    (r"^prefetch\b", "flow table lookup/update"),
]
# Library files: the innermost frame in one of them names the stage.
FILE_STAGES = {
    "hash.rs": "flow hash",
    "vip_index.rs": "vip/service lookup (snapshot)",
    "maglev.rs": "maglev lookup",
    "snapshot.rs": "vip/service lookup (snapshot)",
    "flow.rs": None,  # split below by the flow.rs function names on the stack
}
FLOW_INSERT = r"^(insert|insert_pair|insert_keeping|insert_probed|place|put|evict|evict_among|relocate|free|free_in|remove|link|unlink|overwrite)\b"
WIRE_STAGES = {
    "ethernet.rs": "parse: ethernet",
    "ipv4.rs": "parse: ip (+ header checksum verify)",
    "ipv6.rs": "parse: ip (+ header checksum verify)",
    "checksum.rs": "parse: ip (+ header checksum verify)",
    "tcp.rs": "parse: tcp/udp",
    "udp.rs": "parse: tcp/udp",
}
GLUE = "pipeline (classify, decide, glue)"
# The fast path parses inline: charged to parsing (its snapshot and flow calls are matched
# first, by their own frames).
FAST_PARSE = r"^fast_parse\b"


# Folders of the pipeline that are a stage of their own, whatever their functions are named.
PIPELINE_FOLDERS = [
    ("pipeline/rewrite/", "rewrite (MACs; NAT address, port, checksums)"),
    ("pipeline/reply/", "reply build (RST, ICMP)"),
]


def is_flow(f):
    return f == "flow.rs" or f.startswith("flow/")


def stage_of(frames):
    """frames: [(name or None, source file relative to dataplane/src)], innermost first."""
    for name, f in frames:
        for folder, stage in PIPELINE_FOLDERS:
            if f.startswith(folder):
                return stage
        for rx, stage in PIPELINE_STAGES:
            if name and re.search(rx, name):
                return stage
    for i, (_, f) in enumerate(frames):
        if f in FILE_STAGES or is_flow(f):
            if not is_flow(f):
                return FILE_STAGES[f]
            names = [n for n, g in frames[i:] if is_flow(g) and n]
            if any(re.search(FLOW_INSERT, n) for n in names):
                return "flow table insert/evict"
            return "flow table lookup/update"
    for _, f in frames:
        if f.rsplit("/", 1)[-1] in WIRE_STAGES and f.startswith("wire/"):
            return WIRE_STAGES[f.rsplit("/", 1)[-1]]
    # Code of the fast path itself (not of what it calls): the one-pass parse.
    if (frames and frames[0][1] in ("pipeline.rs", "pipeline/parse.rs")
            and any(n and re.search(FAST_PARSE, n) for n, _ in frames[:2])):
        return "parse: one-pass fast path (eth+ip+l4)"
    return GLUE


def src_file(loc):
    """A source location's file: relative to dataplane/src when it is there, else its name."""
    path = loc.split(":")[0]
    if "/dataplane/src/" in path:
        return path.split("/dataplane/src/", 1)[1]
    return path.rsplit("/", 1)[-1]


def parse_callgrind(path):
    """Self cost per instruction address of the profiled binary's own object, and of others."""
    cost = collections.Counter()
    other = collections.Counter()
    obs = {}
    ob = None
    main_ob = None
    addr = 0
    skip_next = False
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if skip_next:
                skip_next = False
                continue
            if not line:
                continue
            if line.startswith("cob="):
                m = re.match(r"cob=\((\d+)\)(?: (.*))?", line)
                if m.group(2):
                    obs[m.group(1)] = m.group(2)  # names the object for later ob= lines
                continue
            if line.startswith("ob="):
                m = re.match(r"ob=\((\d+)\)(?: (.*))?", line)
                if m.group(2):
                    obs[m.group(1)] = m.group(2)
                ob = obs.get(m.group(1))
                if main_ob is None and ob and "pipeline_replay" in ob:
                    main_ob = ob
                continue
            if line.startswith("calls="):
                skip_next = True  # the next line is the call's inclusive cost
                continue
            c = line[0]
            if not (c.isdigit() or c in "+-*"):
                continue
            parts = line.split()
            if len(parts) < 3:
                continue
            pos = parts[0]
            if pos.startswith("0x"):
                addr = int(pos, 16)
            elif pos[0] == "+":
                addr += int(pos[1:])
            elif pos[0] == "-":
                addr -= int(pos[1:])
            elif pos != "*":
                addr = int(pos)
            ir = int(parts[2])
            if ob and "pipeline_replay" in ob:
                cost[addr] += ir
            else:
                other[ob] += ir
    return cost, other, main_ob


# addr -> ["file:line" of each inline frame, innermost first] (llvm-symbolizer only), for --lines.
LINES = collections.defaultdict(list)


def symbolize(binary, addrs):
    """addr -> [(function name or None, source file basename)], innermost first.

    Prefers llvm-symbolizer, which names every inlined frame. binutils' addr2line -i is the
    fallback: it prints each frame's location with a name shifted by one (the first name is
    the real function's), so the innermost inlined frame stays unnamed."""
    addrs = sorted(addrs)
    if shutil.which("llvm-symbolizer"):
        return _llvm_symbolize(binary, addrs)
    return _binutils_symbolize(binary, addrs)


def _llvm_symbolize(binary, addrs):
    text = subprocess.run(["llvm-symbolizer", f"--obj={binary}", "--inlining", "--demangle",
                           "--functions=short"], input="\n".join(hex(a) for a in addrs) + "\n",
                          capture_output=True, text=True, check=True).stdout
    out = {}
    blocks = text.split("\n\n")
    for a, block in zip(addrs, blocks):
        lines = [x for x in block.split("\n") if x]
        frames = []
        for i in range(0, len(lines) - 1, 2):
            base = src_file(lines[i + 1])
            frames.append((lines[i], base))
            LINES[a].append(f"{base}:{lines[i + 1].split(':')[1]}")
        out[a] = frames
    return out


def _binutils_symbolize(binary, addrs):
    out = {}
    for i in range(0, len(addrs), 2000):
        chunk = addrs[i:i + 2000]
        # A sentinel after each address so the variable-length stacks can be split apart.
        args = []
        for a in chunk:
            args += [hex(a), "0x0"]
        text = subprocess.run(["addr2line", "-f", "-i", "-C", "-e", binary] + args,
                              capture_output=True, text=True, check=True).stdout.split("\n")
        k = 0
        for a in chunk:
            frames = []
            while k + 1 < len(text):
                name, loc = text[k], text[k + 1]
                k += 2
                if name == "??" and loc.startswith("??:"):
                    break  # the sentinel's answer
                base = src_file(loc)
                frames.append((name, base))
            if len(frames) > 1:
                frames[0] = (None, frames[0][1])
            out[a] = frames
    return out


def print_lines(cost, frames, packets, n):
    """The `n` costliest source lines (the innermost inline frame's file:line), per packet,
    each with its function and the two frames it was inlined into: where to look first."""
    by_line = collections.Counter()
    for a, ir in cost.items():
        locs = LINES.get(a) or ["?"]
        names = [f[0] for f in frames.get(a, [])] or ["?"]
        by_line[(locs[0], " < ".join(names[:3]))] += ir
    for (loc, names), ir in by_line.most_common(n):
        print(f"  {ir / packets:7.1f}  {loc:<36} {names}")
    print()


def main():
    path, packets = sys.argv[1], int(sys.argv[2])
    cost, other, binary = parse_callgrind(path)
    frames = symbolize(binary, cost.keys())
    stages = collections.Counter()
    for a, ir in cost.items():
        stages[stage_of(frames.get(a, []))] += ir
    for ob, ir in other.items():
        stages[f"outside the binary ({(ob or '?').rsplit('/', 1)[-1]})"] += ir
    total = sum(stages.values())
    if "--lines" in sys.argv:
        print_lines(cost, frames, packets, int(sys.argv[sys.argv.index("--lines") + 1]))
    rows = [(s, ir / packets) for s, ir in stages.most_common()]
    if "--json" in sys.argv:
        print(json.dumps({"packets": packets, "total_per_packet": total / packets,
                          "stages": {s: round(v, 1) for s, v in rows}}))
        return
    for s, v in rows:
        print(f"  {v:8.1f}  {s}")
    print(f"  {total / packets:8.1f}  total instructions per packet")


if __name__ == "__main__":
    main()
