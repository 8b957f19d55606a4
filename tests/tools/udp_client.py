#!/usr/bin/env python3
"""A bounded UDP request/response client for the end-to-end tests: N exchanges, each from a
new socket (a new source port chosen by the kernel) bound to one of several source addresses
in turn, to HOST:PORT. Each sends one datagram `req N from SRC:SPORT` and waits for the answer
(tests/tools/backend.py --udp-port: `backend=NAME peer=ADDR:PORT echo=DATAGRAM`), sending it
again after --timeout, at most --tries times in all. It records the source address and port,
the backend, the peer that backend saw, the tries, or the failure (timeout: no answer to any
try; bad_echo: an answer that does not carry the request). Prints one JSON object like
client.py's: a summary and the list of exchanges.

    udp_client.py --host 10.66.0.100 --port 80 --count 200 --source 10.68.0.101
"""
import argparse
import json
import socket
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from client import tally  # tests/tools/client.py, beside this file


def exchange(host, port, src, n, timeout, tries):
    t0 = time.monotonic()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    rec = {"src": src, "sport": None, "backend": None, "peer": None, "error": None, "tries": 0}
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.settimeout(timeout)
    try:
        s.bind((src, 0))
        rec["sport"] = s.getsockname()[1]
        req = f"req {n} from {src}:{rec['sport']}"
        rec["error"] = "timeout"
        while rec["tries"] < tries and rec["error"] == "timeout":
            rec["tries"] += 1
            s.sendto(req.encode(), (host, port))
            try:
                data, _ = s.recvfrom(2048)
            except (socket.timeout, TimeoutError):
                continue
            fields = dict(f.split("=", 1) for f in data.decode(errors="replace").split(" ", 2)
                          if "=" in f)
            rec["backend"] = fields.get("backend")
            rec["peer"] = fields.get("peer")
            rec["error"] = None if fields.get("echo", "").strip() == req else "bad_echo"
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
    ap.add_argument("--timeout", type=float, default=1.0, help="seconds before a resend")
    ap.add_argument("--tries", type=int, default=3)
    a = ap.parse_args()
    with ThreadPoolExecutor(max_workers=a.concurrency) as ex:
        futs = [ex.submit(exchange, a.host, a.port, a.source[i % len(a.source)], i, a.timeout,
                          a.tries) for i in range(a.count)]
        recs = [f.result() for f in futs]
    per, errors = tally(recs)
    json.dump({
        "requests": len(recs),
        "ok": sum(per.values()),
        "per_backend": per,
        "errors": errors,
        "resent": sum(r["tries"] - 1 for r in recs if r["tries"] > 1),
        "records": recs,
    }, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
