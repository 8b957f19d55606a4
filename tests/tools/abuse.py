#!/usr/bin/env python3
"""Hostile clients for Fulcrum's control socket and metrics endpoint, for a bounded time
(tests/chaos.rs). Against each endpoint, at once:

- random: random bytes (1 to 3000, half of them ending as a request would), then the write
  side shut, the answer read;
- half: 16 connections each sending a prefix of a good request and nothing more (the
  server must close them at its deadline);
- flood: 200 connections opened at once, each sending a good request (the metrics flood comes
  from 127.0.0.2, so the per-client bound evicts within the flood and not the good requests);
- valid: a good request every 200 ms.

Each connection ends `answered` (bytes came back), `refused` (refused, reset or closed with
nothing) or `timeout` (nothing within 8 s: hanging). Prints one JSON object:
{"control": {"random": {"sent": N, "answered": N, "refused": N, "timeout": N}, ...},
 "metrics": {...}}.

    abuse.py --unix /run/fulcrum/x.sock --tcp 127.0.0.1:9180 --secs 15 [--seed 1]
"""
import argparse
import json
import random
import selectors
import socket
import threading
import time

WAIT = 8.0
GOOD = {
    "control": b'{"cmd":"status"}\n',
    "metrics": b"GET /metrics HTTP/1.1\r\nHost: fulcrum\r\nConnection: close\r\n\r\n",
}


class Endpoint:
    def __init__(self, name, family, addr):
        self.name, self.family, self.addr = name, family, addr
        self.lock = threading.Lock()
        self.counts = {}

    def count(self, case, outcome):
        with self.lock:
            c = self.counts.setdefault(case, {"sent": 0, "answered": 0, "refused": 0, "timeout": 0})
            c["sent"] += 1
            c[outcome] += 1

    def connect(self, source=None):
        s = socket.socket(self.family, socket.SOCK_STREAM)
        s.settimeout(WAIT)
        if source:
            s.bind((source, 0))
        s.connect(self.addr)
        return s


def finish(socks):
    """Reads every socket until it closes or WAIT passes: outcome per socket."""
    sel = selectors.DefaultSelector()
    got = {}
    for s in socks:
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
        got[s] = 0
    out = {}
    end = time.monotonic() + WAIT
    while got and time.monotonic() < end:
        for key, _ in sel.select(timeout=max(0.0, end - time.monotonic())):
            s = key.fileobj
            try:
                data = s.recv(65536)
            except (ConnectionResetError, BrokenPipeError):
                data = b""
            except BlockingIOError:
                continue
            if data:
                got[s] += len(data)
                continue
            out[s] = "answered" if got[s] else "refused"
            sel.unregister(s)
            del got[s]
    for s, n in got.items():
        # Still open: answered if something came (the rest may follow), else hanging.
        out[s] = "answered" if n else "timeout"
    for s in socks:
        s.close()
    return [out[s] for s in socks]


def one(ep, payload, case):
    try:
        s = ep.connect()
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
    except OSError:
        ep.count(case, "refused")
        return
    ep.count(case, finish([s])[0])


def random_bytes(ep, end, rng):
    # Half of them end as a request would (so the server judges them, rather than waiting).
    ending = b"\n" if ep.name == "control" else b"\r\n\r\n"
    while time.monotonic() < end:
        data = rng.randbytes(rng.randint(1, 3000))
        one(ep, data + ending if rng.random() < 0.5 else data, "random")


def half(ep, end, rng):
    good = GOOD[ep.name]
    while time.monotonic() < end:
        socks = []
        for _ in range(16):
            try:
                s = ep.connect()
                s.sendall(good[: rng.randint(1, len(good) - 2)])
                socks.append(s)
            except OSError:
                ep.count("half", "refused")
        for outcome in finish(socks):
            ep.count("half", outcome)


def flood(ep, end, source):
    while time.monotonic() < end:
        socks = []
        for _ in range(200):
            try:
                s = ep.connect(source)
                s.sendall(GOOD[ep.name])
                socks.append(s)
            except OSError:
                ep.count("flood", "refused")
        for outcome in finish(socks):
            ep.count("flood", outcome)
        time.sleep(0.5)


def valid(ep, end):
    while time.monotonic() < end:
        one(ep, GOOD[ep.name], "valid")
        time.sleep(0.2)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--unix", required=True, help="the control socket")
    ap.add_argument("--tcp", required=True, help="the metrics endpoint, HOST:PORT")
    ap.add_argument("--secs", type=float, default=15.0)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    host, port = a.tcp.rsplit(":", 1)
    eps = [Endpoint("control", socket.AF_UNIX, a.unix),
           Endpoint("metrics", socket.AF_INET, (host, int(port)))]
    end = time.monotonic() + a.secs
    threads = []
    for i, ep in enumerate(eps):
        rng = random.Random(a.seed * 10 + i)
        source = "127.0.0.2" if ep.family == socket.AF_INET else None
        for target, args in [(random_bytes, (ep, end, rng)),
                             (half, (ep, end, random.Random(rng.random()))),
                             (flood, (ep, end, source)), (valid, (ep, end))]:
            threads.append(threading.Thread(target=target, args=args))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps({ep.name: ep.counts for ep in eps}))


if __name__ == "__main__":
    main()
