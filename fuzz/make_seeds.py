#!/usr/bin/env python3
"""Writes the fuzz targets' seed corpus from the golden packet cases.

Every input and expected output frame of dataplane/tests/golden/cases.json becomes a seed of
the `pipeline` and `ethernet` targets; its ARP / IPv4 / IPv6 / TCP / UDP / ICMP part a seed of
that view's target; runs of cases become sequences for `pipeline_seq` (format in
fuzz/src/lib.rs `records`). Seeds are named by content, so running this again is idempotent.

    python3 fuzz/make_seeds.py      # writes fuzz/corpus/seed/<target>/
"""
import hashlib
import json
import pathlib
import struct

ROOT = pathlib.Path(__file__).resolve().parent
CASES = ROOT.parent / "dataplane/tests/golden/cases.json"
OUT = ROOT / "corpus/seed"
TARGETS = ["ethernet", "arp", "ipv4", "ipv6", "tcp", "udp", "icmpv4", "icmpv6", "checksum",
           "pipeline", "pipeline_seq"]


def layers(frame):
    """(target, bytes) for each layer a plain reading of the frame finds."""
    out = [("ethernet", frame), ("pipeline", frame)]
    if len(frame) < 14:
        return out
    off, et = 14, struct.unpack("!H", frame[12:14])[0]
    depth = 0
    while et in (0x8100, 0x88a8) and depth < 2 and len(frame) >= off + 4:
        et = struct.unpack("!H", frame[off + 2:off + 4])[0]
        off += 4
        depth += 1
    l3 = frame[off:]
    if et == 0x0806:
        out.append(("arp", l3))
    elif et == 0x0800 and len(l3) >= 20:
        out.append(("ipv4", l3))
        hl = (l3[0] & 15) * 4
        out.append(("checksum", bytes([5, 4]) + l3[:max(hl, 20)]))
        total = struct.unpack("!H", l3[2:4])[0]
        proto = l3[9]
        seg = l3[hl:total]
        name = {6: "tcp", 17: "udp", 1: "icmpv4"}.get(proto)
        if name and seg:
            out.append((name, seg))
            out.append(("checksum", bytes([1, 2]) + seg))
    elif et == 0x86dd and len(l3) >= 40:
        out.append(("ipv6", l3))
        plen = struct.unpack("!H", l3[4:6])[0]
        nh, pos = l3[6], 40
        end = 40 + plen
        # Hop-by-hop, routing, destination options, fragment (first only).
        while nh in (0, 43, 60, 44) and pos + 8 <= len(l3):
            if nh == 44:
                if struct.unpack("!H", l3[pos + 2:pos + 4])[0] & 0xfff8:
                    nh = None
                    break
                nh, pos = l3[pos], pos + 8
            else:
                nh, pos = l3[pos], pos + (l3[pos + 1] + 1) * 8
        name = {6: "tcp", 17: "udp", 58: "icmpv6"}.get(nh)
        seg = l3[pos:end]
        if name and seg:
            out.append((name, seg))
    return out


def records(frames, ctl=0):
    return b"".join(bytes([ctl]) + struct.pack("!H", len(f)) + f for f in frames)


def main():
    cases = json.loads(CASES.read_text())
    seeds = {t: set() for t in TARGETS}
    inputs = []
    for i, c in enumerate(cases):
        frames = [bytes.fromhex(c["input"])]
        inputs.append(frames[0])
        if c["what"].startswith("flags ") and i % 17:
            # The 512 flag combinations differ in one byte: a sample is seed enough.
            continue
        if c["output"]:
            frames.append(bytes.fromhex(c["output"]))
        for f in frames:
            for target, data in layers(f):
                seeds[target].add(data)
    # Sequences: runs of 16 cases in table order, on worker 0 as they are, and again on
    # alternating workers with checksums fixed and the clock moving.
    for i in range(0, len(inputs), 16):
        run = inputs[i:i + 16]
        seeds["pipeline_seq"].add(records(run))
        seeds["pipeline_seq"].add(b"".join(records([f], ctl=(j % 2) | 2 | (j % 4) << 2)
                                           for j, f in enumerate(run)))
    total = 0
    for target, datas in seeds.items():
        d = OUT / target
        d.mkdir(parents=True, exist_ok=True)
        for old in d.iterdir():
            old.unlink()
        for data in datas:
            (d / hashlib.sha1(data).hexdigest()).write_bytes(data)
        total += len(datas)
        print(f"{target:<13} {len(datas):>5} seeds")
    print(f"{'total':<13} {total:>5}")


if __name__ == "__main__":
    main()
