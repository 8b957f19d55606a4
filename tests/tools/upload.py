#!/usr/bin/env python3
"""A large TCP upload and its sink, for path-MTU tests (testkit's `Net::sink`/`Net::upload`).

    upload.py serve --port P             # each connection: read to EOF, answer "BYTES SHA256"
    upload.py send --host H --port P --bytes N [--timeout S]
                                         # send N bytes (a seeded pattern), half-close, read the
                                         # answer; print JSON {sent, sha256, answer, ms, mss}

The sender uses the kernel's TCP with its defaults: full-size segments (DF set, path-MTU
discovery on), so a hop that cannot carry them must answer with ICMP for the upload to finish.
"""
import argparse
import hashlib
import json
import random
import socket
import socketserver
import sys
import time


class Sink(socketserver.BaseRequestHandler):
    def handle(self):
        h, n = hashlib.sha256(), 0
        while True:
            b = self.request.recv(65536)
            if not b:
                break
            h.update(b)
            n += len(b)
        self.request.sendall(f"{n} {h.hexdigest()}\n".encode())


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


def send(host, port, total, timeout):
    rng = random.Random(total)
    h = hashlib.sha256()
    t0 = time.monotonic()
    s = socket.create_connection((host, port), timeout=timeout)
    s.settimeout(timeout)
    sent = 0
    while sent < total:
        chunk = rng.randbytes(min(65536, total - sent))
        s.sendall(chunk)
        h.update(chunk)
        sent += len(chunk)
    mss = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG)
    s.shutdown(socket.SHUT_WR)
    answer = b""
    while not answer.endswith(b"\n"):
        b = s.recv(256)
        if not b:
            break
        answer += b
    s.close()
    return {
        "sent": sent,
        "sha256": h.hexdigest(),
        "answer": answer.decode().strip(),
        "ms": round((time.monotonic() - t0) * 1000, 1),
        "mss": mss,
    }


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    sv = sub.add_parser("serve")
    sv.add_argument("--port", type=int, required=True)
    sd = sub.add_parser("send")
    sd.add_argument("--host", required=True)
    sd.add_argument("--port", type=int, required=True)
    sd.add_argument("--bytes", type=int, required=True)
    sd.add_argument("--timeout", type=float, default=10.0)
    a = ap.parse_args()
    if a.cmd == "serve":
        with Server(("0.0.0.0", a.port), Sink) as srv:
            srv.serve_forever()
    else:
        try:
            out = send(a.host, a.port, a.bytes, a.timeout)
        except OSError as e:
            out = {"error": str(e)}
        json.dump(out, sys.stdout)
        sys.stdout.write("\n")


if __name__ == "__main__":
    main()
