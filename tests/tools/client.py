#!/usr/bin/env python3
"""A bounded HTTP load client for the end-to-end tests: N requests, each on a NEW TCP
connection from one of several source addresses (ports chosen by the kernel), to HOST:PORT
(IPv4 or IPv6: the family follows HOST; sources must be of the same family).
For each it records the source address and port, the backend that answered (`backend=NAME`),
or how it failed (refused = the connection got a RST; timeout; other) and how long it took.
Prints one JSON object: a summary and the list of requests.

    client.py --host 10.77.0.100 --port 80 --count 1000 --source 10.77.0.101 --source 10.77.0.102
"""
import argparse
import json
import socket
import sys
import time
from concurrent.futures import ThreadPoolExecutor


def one(host, port, src, timeout, path):
    t0 = time.monotonic()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(timeout)
    rec = {"src": src, "sport": None, "backend": None, "error": None}
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
    a = ap.parse_args()
    t_end = time.monotonic() + a.deadline
    recs = []
    with ThreadPoolExecutor(max_workers=a.concurrency) as ex:
        futs = []
        for i in range(a.count):
            if time.monotonic() > t_end:
                break
            futs.append(ex.submit(one, a.host, a.port, a.source[i % len(a.source)], a.timeout, a.path))
        recs = [f.result() for f in futs]
    per = {}
    errors = {}
    for r in recs:
        if r["error"]:
            errors[r["error"]] = errors.get(r["error"], 0) + 1
        else:
            per[r["backend"]] = per.get(r["backend"], 0) + 1
    ms = sorted(r["ms"] for r in recs) or [0]
    out = {
        "requests": len(recs),
        "ok": sum(per.values()),
        "per_backend": per,
        "errors": errors,
        "ms_p50": ms[len(ms) // 2],
        "ms_max": ms[-1],
        "records": recs,
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
