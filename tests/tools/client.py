#!/usr/bin/env python3
"""A bounded HTTP load client for the end-to-end tests: N requests, each on a NEW TCP
connection from one of several source addresses (ports chosen by the kernel), to HOST:PORT
(IPv4 or IPv6: the family follows HOST; sources must be of the same family).
For each it records the source address and port, the backend that answered (`backend=NAME`)
and the peer it saw (its `X-Peer` header, when it sends one), or how it failed (refused = the
connection got a RST; timeout; other) and how long it took.
Prints one JSON object: a summary and the list of requests.

With `--duration SECS` it is a request loop instead: `--concurrency` workers each make
requests one after the other until SECS have passed (or `--count` in all). With `--streams N`
it also holds N long streams (`GET /stream?secs=S` on HTTP/1.1, tests/tools/backend.py: ten
numbered lines a second) open meanwhile, each from a source in turn; a stream is broken unless
every line came, in order, from one backend, and the chunked body ended. They are listed
under "streams" (src, sport, backend, lines, error), their failures counted in
"streams_broken".

    client.py --host 10.77.0.100 --port 80 --count 1000 --source 10.77.0.101 --source 10.77.0.102
    client.py --host 10.77.0.100 --duration 30 --streams 20 --stream-secs 30 --source 10.77.0.101
"""
import argparse
import http.client
import json
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor


def one(host, port, src, timeout, path):
    t0 = time.monotonic()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(timeout)
    # "at": wall-clock start, to place a failure in time against an event a test caused.
    rec = {"src": src, "sport": None, "backend": None, "peer": None, "error": None,
           "at": time.time()}
    try:
        s.bind((src, 0))
        rec["sport"] = s.getsockname()[1]
        s.connect((host, port))
        s.sendall(f"GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        text = data.decode(errors="replace")
        if " 200 " not in text.split("\r\n", 1)[0]:
            rec["error"] = "bad_status"
        for line in text.splitlines():
            if line.lower().startswith("x-peer:"):
                rec["peer"] = line.split(":", 1)[1].strip()
            if line.startswith("backend="):
                rec["backend"] = line.split("=", 1)[1].split()[0]
                break
        if rec["backend"] is None and rec["error"] is None:
            rec["error"] = "no_backend_line"
    except ConnectionRefusedError:
        rec["error"] = "refused"
    except (socket.timeout, TimeoutError):
        rec["error"] = "timeout"
    except OSError as e:
        rec["error"] = f"oserror:{e.errno}"
    finally:
        s.close()
    rec["ms"] = round((time.monotonic() - t0) * 1000, 2)
    return rec


def stream(host, port, src, secs, timeout):
    """One long stream: every line `backend=NAME tick=I` for I = 0, 1, ... secs*10 - 1."""
    rec = {"src": src, "sport": None, "backend": None, "lines": 0, "error": None}
    conn = http.client.HTTPConnection(host, port, timeout=timeout, source_address=(src, 0))
    try:
        conn.connect()
        rec["sport"] = conn.sock.getsockname()[1]
        conn.request("GET", f"/stream?secs={secs}")
        resp = conn.getresponse()
        if resp.status != 200:
            rec["error"] = f"status {resp.status}"
            return rec
        while True:
            line = resp.readline()
            if not line:
                break
            name, _, tick = line.decode(errors="replace").strip().partition(" tick=")
            name = name.removeprefix("backend=")
            if rec["backend"] is None:
                rec["backend"] = name
            if name != rec["backend"] or tick != str(rec["lines"]):
                rec["error"] = f"line {rec['lines']}: {line!r}"
                return rec
            rec["lines"] += 1
        if rec["lines"] != int(secs * 10):
            rec["error"] = f"{rec['lines']} lines of {int(secs * 10)}"
    except ConnectionRefusedError:
        rec["error"] = "refused"
    except (socket.timeout, TimeoutError):
        rec["error"] = "timeout"
    except (OSError, http.client.HTTPException) as e:
        rec["error"] = f"{type(e).__name__}: {e}"
    finally:
        conn.close()
    return rec


def request_loop(a):
    """`--concurrency` workers, each one request after the other until the duration ends."""
    end = time.monotonic() + a.duration
    recs, lock, n = [], threading.Lock(), [0]

    def worker(w):
        while time.monotonic() < end:
            with lock:
                if n[0] >= a.count:
                    return
                i = n[0]
                n[0] += 1
            r = one(a.host, a.port, a.source[i % len(a.source)], a.timeout, a.path)
            with lock:
                recs.append(r)

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(a.concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return recs


def tally(recs):
    """Answers per backend, and failures per kind (also tests/tools/udp_client.py's)."""
    per, errors = {}, {}
    for r in recs:
        if r["error"]:
            errors[r["error"]] = errors.get(r["error"], 0) + 1
        else:
            per[r["backend"]] = per.get(r["backend"], 0) + 1
    return per, errors


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", required=True)
    ap.add_argument("--port", type=int, default=80)
    ap.add_argument("--count", type=int, default=100)
    ap.add_argument("--source", action="append", required=True)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--timeout", type=float, default=3.0)
    ap.add_argument("--path", default="/")
    ap.add_argument("--deadline", type=float, default=120.0, help="stop starting requests after this many seconds")
    ap.add_argument("--human", action="store_true", help="print a readable summary instead of JSON")
    ap.add_argument("--duration", type=float, help="a request loop of this many seconds (at most --count requests)")
    ap.add_argument("--streams", type=int, default=0, help="long streams held open meanwhile")
    ap.add_argument("--stream-secs", type=float, default=10.0)
    a = ap.parse_args()
    streams = []
    with ThreadPoolExecutor(max_workers=max(a.streams, 1)) as sx:
        sfuts = [sx.submit(stream, a.host, a.port, a.source[i % len(a.source)], a.stream_secs,
                           max(a.timeout, 5.0)) for i in range(a.streams)]
        if a.duration is not None:
            recs = request_loop(a)
        else:
            t_end = time.monotonic() + a.deadline
            with ThreadPoolExecutor(max_workers=a.concurrency) as ex:
                futs = []
                for i in range(a.count):
                    if time.monotonic() > t_end:
                        break
                    futs.append(ex.submit(one, a.host, a.port, a.source[i % len(a.source)], a.timeout, a.path))
                recs = [f.result() for f in futs]
        streams = [f.result() for f in sfuts]
    per, errors = tally(recs)
    ms = sorted(r["ms"] for r in recs) or [0]
    out = {
        "requests": len(recs),
        "ok": sum(per.values()),
        "per_backend": per,
        "errors": errors,
        "ms_p50": ms[len(ms) // 2],
        "ms_max": ms[-1],
        "records": recs,
        "streams": streams,
        "streams_broken": sum(1 for r in streams if r["error"]),
    }
    if a.human:
        n = out["requests"]
        print(f"  {n} connections, {out['ok']} answered, p50 {out['ms_p50']} ms, slowest {out['ms_max']} ms")
        for b, c in sorted(per.items()):
            print(f"  {b:>4}: {c:4d} ({100 * c / n:5.1f}%) " + "#" * round(50 * c / n))
        for e, c in sorted(errors.items()):
            print(f"  {e}: {c}")
        return
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
