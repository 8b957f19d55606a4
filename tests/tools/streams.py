#!/usr/bin/env python3
"""Many long-lived HTTP streams at once, for the restart tests: for each --target
VIP:PORT:SOURCE, --count connections from SOURCE (kernel-chosen ports) each reading
`GET /stream?secs=S` (tests/tools/backend.py: one line `backend=NAME tick=I` every 100 ms, then
the chunked terminator). Writes --ready FILE once every connection has its first line; prints
one JSON object when all are done: how many completed intact, the broken ones and why (and
when: `at`, Unix time), and the longest silence each stream saw (the forwarding gap of a
restart shows up there).

    streams.py --target 10.77.0.100:80:10.77.0.101 --count 200 --secs 20 --ready /tmp/r
"""
import argparse
import json
import socket
import threading
import time


def stream(host, port, src, secs, result, first_line):
    rec = {"target": f"{host}:{port}", "src": src, "sport": None, "error": None,
           "lines": 0, "max_gap_ms": 0.0}
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(secs + 60)
    try:
        s.bind((src, 0))
        rec["sport"] = s.getsockname()[1]
        s.connect((host, port))
        s.sendall(f"GET /stream?secs={secs} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        buf = b""
        last = None
        backend = None
        done = False
        while not done:
            chunk = s.recv(65536)
            if not chunk:
                break
            now = time.monotonic()
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                line = line.rstrip(b"\r").decode(errors="replace")
                if not line.startswith("backend="):
                    if line == "0" and rec["lines"] == secs * 10:
                        done = True
                    continue
                name, tick = line.split()
                if backend is None:
                    backend = name
                    first_line.set()
                if name != backend or tick != f"tick={rec['lines']}":
                    rec["error"] = f"line {rec['lines']}: {line!r} (from {backend})"
                    raise StopIteration
                if last is not None:
                    rec["max_gap_ms"] = max(rec["max_gap_ms"], (now - last) * 1000)
                last = now
                rec["lines"] += 1
        if not done and rec["error"] is None:
            rec["error"] = f"closed after {rec['lines']} of {secs * 10} lines"
    except StopIteration:
        pass
    except socket.timeout:
        rec["error"] = f"timeout after {rec['lines']} lines"
    except ConnectionResetError:
        rec["error"] = f"reset after {rec['lines']} lines"
    except OSError as e:
        rec["error"] = f"{e.__class__.__name__}: {e} after {rec['lines']} lines"
    finally:
        s.close()
        first_line.set()
        if rec["error"]:
            rec["at"] = round(time.time(), 3)
    result.append(rec)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", action="append", required=True, help="VIP:PORT:SOURCE")
    ap.add_argument("--count", type=int, default=200, help="streams per target")
    ap.add_argument("--secs", type=int, default=20)
    ap.add_argument("--ready", help="file written once every stream has its first line")
    a = ap.parse_args()
    result, threads, firsts = [], [], []
    for t in a.target:
        host, port, src = t.split(":")
        for _ in range(a.count):
            ev = threading.Event()
            th = threading.Thread(target=stream,
                                  args=(host, int(port), src, a.secs, result, ev), daemon=True)
            th.start()
            threads.append(th)
            firsts.append(ev)
            time.sleep(0.002)
    for ev in firsts:
        ev.wait(a.secs + 60)
    if a.ready:
        with open(a.ready, "w") as f:
            f.write("ready\n")
    for th in threads:
        th.join(a.secs + 90)
    broken = [r for r in result if r["error"]]
    gaps = sorted(r["max_gap_ms"] for r in result)
    print(json.dumps({
        "streams": len(threads),
        "finished": len(result),
        "intact": len(result) - len(broken),
        "broken": broken[:20],
        "broken_count": len(broken) + len(threads) - len(result),
        "max_gap_ms": round(gaps[-1], 1) if gaps else None,
        "median_max_gap_ms": round(gaps[len(gaps) // 2], 1) if gaps else None,
        "by_target": {t: sum(1 for r in result if r["target"] == ":".join(t.split(":")[:2])
                             and not r["error"]) for t in a.target},
    }))


if __name__ == "__main__":
    main()
